//! The blocking server's parked connections: a session quiet for a moment gives its thread
//! back and waits on the server's one watcher thread. These cases idle past that moment and
//! check that a parked session still answers at once, hears what is pushed to it, meets
//! its timers, and sees a shutdown.

use std::time::{Duration, Instant};

use vserv_blocking::{Client, Server, ServerHandle, ServerOptions};
use vserv_core::commands::{Command, Notice, Reply};
use vserv_core::{CloseCode, Config};
use vserv_service::Service;
use vserv_service::client::ClientError;
use vserv_tests::{Fixture, ROOT_PASSWORD, login_cmd, secret};

/// Longer than the server waits before it parks a quiet connection (100 ms).
const PARKED: Duration = Duration::from_millis(400);

fn start(fx: &Fixture, service: Service, config: Config) -> ServerHandle {
    let options = ServerOptions {
        max_connections: 64,
        config,
    };
    Server::bind("127.0.0.1:0", fx.identity.clone(), service, options)
        .expect("bind")
        .spawn()
        .expect("spawn")
}

fn connect(server: &ServerHandle, fx: &Fixture) -> Client {
    Client::connect(&server.local_addr().to_string(), &fx.options()).expect("connect")
}

/// `root` (created) and `bob` (added by root), both logged in.
fn root_and_bob(server: &ServerHandle, fx: &Fixture) -> (Client, Client) {
    let mut root = connect(server, fx);
    root.call(&Command::Uini {
        user: "root".into(),
        password: secret(ROOT_PASSWORD),
    })
    .expect("uini");
    root.call(&login_cmd("root", ROOT_PASSWORD))
        .expect("root login");
    root.call(&Command::Uadd {
        user: "bob".into(),
        password: secret("bob-password"),
    })
    .expect("uadd");
    let mut bob = connect(server, fx);
    bob.call(&login_cmd("bob", "bob-password"))
        .expect("bob login");
    (root, bob)
}

fn ping(client: &mut Client, payload: &[u8]) {
    assert_eq!(
        client
            .call(&Command::Ping {
                payload: payload.to_vec(),
            })
            .expect("ping"),
        Reply::Pong(payload.to_vec())
    );
}

#[test]
fn a_parked_session_answers_again_and_again() {
    let fx = Fixture::new(161);
    let server = start(&fx, fx.service(), Config::default());
    let (mut root, _bob) = root_and_bob(&server, &fx);
    for round in 0u8..5 {
        std::thread::sleep(PARKED);
        let started = Instant::now();
        ping(&mut root, &[round; 100]);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round {round}: {:?}",
            started.elapsed()
        );
    }
    root.quit().expect("quit");
    server.shutdown();
}

#[test]
fn a_parked_session_hears_at_once_that_its_account_was_deleted() {
    let fx = Fixture::new(162);
    let server = start(&fx, fx.service(), Config::default());
    let (mut root, mut bob) = root_and_bob(&server, &fx);
    std::thread::sleep(PARKED);
    // The deletion is pushed to bob's session through its waker, which the watcher hears.
    root.call(&Command::Udel { user: "bob".into() })
        .expect("udel");
    let pushed = Instant::now();
    let ended = loop {
        match bob.poll_notices(Duration::from_secs(5)) {
            Ok(notices) if notices.is_empty() => panic!("bob's session was not closed"),
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        pushed.elapsed() < Duration::from_secs(3),
        "{:?}",
        pushed.elapsed()
    );
    match ended {
        ClientError::ClosedByServer { code, reason } => {
            assert_eq!(code, CloseCode::Normal);
            assert!(reason.contains("deleted"), "{reason}");
        }
        other => panic!("not the deletion's close: {other}"),
    }
    root.quit().expect("quit");
    server.shutdown();
}

#[test]
fn a_parked_session_gets_its_idle_notice_and_its_timeout_on_time() {
    let fx = Fixture::new(163);
    let service = fx.service().with_idle_notice(Some(Duration::from_secs(1)));
    let config = Config {
        idle_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let server = start(&fx, service, config);
    let (_root, mut bob) = root_and_bob(&server, &fx);
    let idle_from = Instant::now();
    let notices = bob.poll_notices(Duration::from_secs(5)).expect("notice");
    let noticed = idle_from.elapsed();
    assert!(
        matches!(notices.as_slice(), [Notice::IdleSoon { seconds_left: 1 }]),
        "{notices:?}"
    );
    assert!(
        noticed >= Duration::from_millis(900) && noticed < Duration::from_secs(2),
        "{noticed:?}"
    );
    let ended = bob
        .poll_notices(Duration::from_secs(5))
        .expect_err("closed at the idle timeout");
    let closed = idle_from.elapsed();
    assert!(
        closed >= Duration::from_millis(1900) && closed < Duration::from_secs(4),
        "{closed:?}"
    );
    assert!(
        matches!(
            ended,
            ClientError::ClosedByServer {
                code: CloseCode::Timeout,
                ..
            }
        ),
        "{ended}"
    );
    server.shutdown();
}

#[test]
fn a_shutdown_closes_every_parked_session() {
    let fx = Fixture::new(164);
    let server = start(&fx, fx.service(), Config::default());
    let (root, bob) = root_and_bob(&server, &fx);
    let mut clients = vec![root, bob];
    for _ in 0..20 {
        let mut client = connect(&server, &fx);
        client
            .call(&login_cmd("bob", "bob-password"))
            .expect("bob login");
        clients.push(client);
    }
    std::thread::sleep(PARKED);
    assert_eq!(server.active_connections(), clients.len());
    let stopping = Instant::now();
    server.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    for mut client in clients {
        match client.poll_notices(Duration::from_secs(5)) {
            Err(ClientError::ClosedByServer {
                code: CloseCode::Shutdown,
                ..
            }) => {}
            other => panic!("not closed for the shutdown: {other:?}"),
        }
    }
}
