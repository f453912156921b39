//! Server-pushed notices (content type 0x19, protocol.md §12.4): a server's notice reaches the
//! client as a typed event between replies without disturbing them; a client may not send
//! one; and the idle notice goes out once per idle period, the margin before the deadline.

mod support;

use std::time::Duration;

use support::pair::Pair;
use vserv_core::commands::Notice;
use vserv_core::{Config, Error, Event, Response};

fn notices(events: &[Event]) -> Vec<Notice> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Notice(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn config(idle_secs: u64) -> Config {
    Config {
        idle_timeout: Duration::from_secs(idle_secs),
        ..Config::default()
    }
}

#[test]
fn a_notice_reaches_the_client_between_replies() {
    let mut pair = Pair::connected(Config::default());
    // The test answers, after the notice.
    pair.auto.answer = None;
    let id = pair
        .client
        .send_request("ping", vec![b"x".to_vec()])
        .unwrap();
    pair.drive().unwrap();
    let arrived = Notice::Message {
        from: "alice".into(),
        id: 3,
        time: 1_700_000_000,
    };
    pair.server.send_notice(&arrived).unwrap();
    pair.server
        .respond(&Response {
            id,
            result: Ok(vec![b"x".to_vec()]),
        })
        .unwrap();
    pair.drive().unwrap();
    assert_eq!(notices(&pair.client_events), vec![arrived]);
    assert_eq!(pair.responses().len(), 1);
    assert!(pair.client.is_connected() && pair.server.is_connected());
}

#[test]
fn clients_cannot_send_notices_nor_set_idle_notices() {
    let mut pair = Pair::connected(Config::default());
    let n = Notice::IdleSoon { seconds_left: 1 };
    assert!(matches!(
        pair.client.send_notice(&n),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        pair.client.set_idle_notice(Some(Duration::from_secs(1))),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        pair.server.set_idle_notice(Some(Duration::ZERO)),
        Err(Error::InvalidState(_))
    ));
}

#[test]
fn the_idle_notice_goes_once_per_idle_period_then_the_timeout_ends_the_session() {
    let mut pair = Pair::connected(config(100));
    let t0 = pair.now;
    pair.server
        .set_idle_notice(Some(Duration::from_secs(30)))
        .unwrap();
    let last = pair.server.poll_timeout().unwrap();
    assert_eq!(last, t0 + Duration::from_secs(70));
    // The notice fires at exactly the polled instant and is not an error.
    assert_eq!(pair.jump(), Some(last));
    assert_eq!(pair.server_error, None);
    pair.drive().unwrap();
    assert_eq!(
        notices(&pair.client_events),
        vec![Notice::IdleSoon { seconds_left: 30 }]
    );
    // Once: the next wake-up is the idle deadline itself.
    assert_eq!(
        pair.server.poll_timeout(),
        Some(t0 + Duration::from_secs(100))
    );
    // Input starts a new idle period, with its own notice.
    pair.now = t0 + Duration::from_secs(80);
    pair.client.send_request("ping", vec![]).unwrap();
    pair.drive().unwrap();
    assert_eq!(
        pair.server.poll_timeout(),
        Some(t0 + Duration::from_secs(150))
    );
}

#[test]
fn a_short_idle_timeout_is_announced_half_way() {
    let mut pair = Pair::connected(config(10));
    let t0 = pair.now;
    pair.server
        .set_idle_notice(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(pair.jump(), Some(t0 + Duration::from_secs(5)));
    pair.drive().unwrap();
    assert_eq!(
        notices(&pair.client_events),
        vec![Notice::IdleSoon { seconds_left: 5 }]
    );
    assert_eq!(pair.jump(), Some(t0 + Duration::from_secs(10)));
    assert_eq!(pair.server_error, Some(Error::IdleTimeout));
}
