//! The connection's byte stream (content type 0x18, protocol.md §7.3): once the server opened
//! it, both ends send bytes that the other receives whole and in order however the records
//! and the flights are cut; a client's stream record before the server opened it, an empty
//! one, or a stream record on a client session, is refused.

mod support;

use proptest::prelude::*;
use support::pair::{Pair, Split};
use vserv_core::wire::MAX_PAYLOAD;
use vserv_core::{Config, Error, Event, Role};

/// The stream bytes `events` delivered, concatenated.
fn received(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Stream(bytes) => Some(bytes.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A connected pair whose server opened the stream.
fn opened() -> Pair {
    let mut pair = Pair::connected(Config::default());
    pair.server.open_stream().expect("open the stream");
    pair
}

#[test]
fn both_ends_receive_the_others_bytes_in_order() {
    let mut pair = opened();
    let up = payload(3 * MAX_PAYLOAD + 17, 1);
    let down = payload(MAX_PAYLOAD + 1, 2);
    pair.client.send_stream(&up).expect("client sends");
    pair.server.send_stream(&down).expect("server sends");
    pair.drive().expect("drive");
    assert_eq!(received(&pair.server_events), up);
    assert_eq!(received(&pair.client_events), down);
    // No piece is larger than a record.
    assert!(pair.server_events.iter().all(|e| match e {
        Event::Stream(b) => !b.is_empty() && b.len() <= MAX_PAYLOAD,
        _ => true,
    }));
}

#[test]
fn nothing_is_sent_for_empty_bytes() {
    let mut pair = opened();
    pair.client.send_stream(&[]).expect("empty is fine");
    let mut out = Vec::new();
    pair.client.poll_transmit(&mut out);
    assert!(out.is_empty());
}

#[test]
fn a_client_stream_before_the_server_opened_it_is_a_protocol_error() {
    let mut pair = Pair::connected(Config::default());
    pair.client
        .send_stream(b"too early")
        .expect("a client may send");
    let driven = pair.drive();
    assert!(driven.is_err());
    assert_eq!(
        pair.server_error,
        Some(Error::Malformed(
            "stream record before the stream was opened"
        ))
    );
    assert!(pair.server.is_closed());
}

#[test]
fn a_server_cannot_send_before_it_opened_the_stream() {
    let mut pair = Pair::connected(Config::default());
    assert!(!pair.server.can_stream());
    assert!(pair.server.send_stream(b"x").is_err());
    assert!(pair.client.can_stream());
}

#[test]
fn nobody_streams_before_the_handshake_ends() {
    let mut pair = Pair::new(Config::default());
    assert!(pair.client.send_stream(b"x").is_err());
    assert!(pair.server.open_stream().is_err());
    assert!(!pair.server.can_stream());
    // The pair still connects normally afterwards.
    pair.drive().expect("drive");
    assert!(pair.client.is_connected() && pair.server.is_connected());
}

#[test]
fn a_client_cannot_open_the_stream() {
    let mut pair = Pair::connected(Config::default());
    assert!(pair.client.open_stream().is_err());
}

#[test]
fn the_stream_survives_key_updates() {
    let config = Config {
        rekey_after: 3,
        ..Config::default()
    };
    let mut pair = Pair::connected(config);
    pair.server.open_stream().expect("open");
    let up = payload(10 * MAX_PAYLOAD, 9);
    pair.client.send_stream(&up).expect("send");
    pair.drive().expect("drive");
    assert_eq!(received(&pair.server_events), up);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the flights are cut, each side gets exactly the bytes sent, in order, over
    /// several rounds of sending both ways.
    #[test]
    fn any_cut_of_the_flights_keeps_the_bytes(
        rounds in proptest::collection::vec((0usize..40_000, 0usize..40_000), 1..4),
        cuts in proptest::collection::vec(0usize..200_000, 0..12),
    ) {
        let mut pair = opened();
        pair.set_split(Split::At(cuts));
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for (i, (u, d)) in rounds.into_iter().enumerate() {
            let (a, b) = (payload(u, i as u8), payload(d, 100 + i as u8));
            pair.client.send_stream(&a).expect("client sends");
            pair.server.send_stream(&b).expect("server sends");
            pair.drive().expect("drive");
            up.extend_from_slice(&a);
            down.extend_from_slice(&b);
        }
        prop_assert_eq!(received(&pair.server_events), up);
        prop_assert_eq!(received(&pair.client_events), down);
        prop_assert!(pair.side(Role::Server).is_connected());
    }
}
