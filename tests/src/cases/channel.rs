//! The secure channel and the session around it: every command answers, errors are typed,
//! server keys are recorded, recognised and pinned, bad input hurts no one, many clients
//! are served at once.

use vserv_core::commands::{Command, Reply};
use vserv_core::{Config, ErrorCode, Fingerprint};
use vserv_service::client::ClientError;
use vserv_store::trust::{TrustDecision, TrustError};

use crate::fixture::*;
use crate::{Fixture, Runtime, TestClient, TestServer};

/// Every v1 command answers with its typed reply.
pub fn every_command_works<R: Runtime>() {
    let fx = Fixture::new(1);
    let server = start::<R>(&fx);
    let mut client = R::connect(&server, &fx.options()).expect("connect");
    let fpr = fx.identity.public_key().fingerprint();
    match client.call(&Command::Hello).expect("hello") {
        Reply::Greeting(g) => assert!(g.contains("test-server"), "{g}"),
        other => panic!("hello gave {other:?}"),
    }
    assert!(matches!(
        client.call(&Command::Ver).expect("ver"),
        Reply::Version { protocol: 1, .. }
    ));
    assert_eq!(
        client.call(&Command::Id).expect("id"),
        Reply::Identity {
            name: "test-server".into(),
            fingerprint: fpr
        }
    );
    match client.call(&Command::Help { topic: None }).expect("help") {
        Reply::Help(text) => assert!(
            ["hello", "ver", "id", "help", "ping", "quit"]
                .iter()
                .all(|c| text.contains(c))
        ),
        other => panic!("help gave {other:?}"),
    }
    match client
        .call(&Command::Help {
            topic: Some("ping".into()),
        })
        .expect("help ping")
    {
        Reply::Help(text) => assert!(text.contains("usage: ping")),
        other => panic!("help ping gave {other:?}"),
    }
    let payload: Vec<u8> = (0..=255u8).cycle().take(16000).collect();
    assert_eq!(
        client
            .call(&Command::Ping {
                payload: payload.clone()
            })
            .expect("ping"),
        Reply::Pong(payload)
    );
    assert_eq!(
        client
            .call(&Command::Ping { payload: vec![] })
            .expect("empty ping"),
        Reply::Pong(vec![])
    );
    client.quit().expect("quit");
    server.shutdown();
}

/// Errors are typed answers; the session keeps working after them.
pub fn errors_are_typed_and_not_fatal<R: Runtime>() {
    let fx = Fixture::new(2);
    let server = start::<R>(&fx);
    let mut client = R::connect(&server, &fx.options()).expect("connect");
    match client.call(&Command::Help {
        topic: Some("nosuch".into()),
    }) {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::UnknownCommand),
        other => panic!("expected UnknownCommand, got {other:?}"),
    }
    assert_eq!(
        client
            .call(&Command::Ping {
                payload: b"still".to_vec()
            })
            .expect("ping"),
        Reply::Pong(b"still".to_vec())
    );
    client.quit().expect("quit");
    server.shutdown();
}

/// First contact records the key; the next connection finds it known.
pub fn tofu_records_then_recognises<R: Runtime>() {
    let fx = Fixture::new(3);
    let server = start::<R>(&fx);
    let first = R::connect(&server, &fx.options()).expect("first connect");
    let fpr = fx.identity.public_key().fingerprint();
    assert_eq!(
        first.trust(),
        Some(TrustDecision::FirstContact { fingerprint: fpr })
    );
    first.quit().expect("quit");
    let text = std::fs::read_to_string(&fx.known_servers).expect("known_servers written");
    assert!(text.contains(&server.address().to_lowercase()), "{text}");
    let second = R::connect(&server, &fx.options()).expect("second connect");
    assert_eq!(second.trust(), Some(TrustDecision::Known));
    second.quit().expect("quit");
    server.shutdown();
}

/// A server presenting a different key than the one recorded is a hard error, and the
/// record is not overwritten.
pub fn changed_key_is_refused<R: Runtime>() {
    let fx = Fixture::new(4);
    let server = start::<R>(&fx);
    // Record another identity's key for this server's address.
    let other = identity(40);
    let mut known =
        vserv_store::known_servers::KnownServers::load(&fx.known_servers).expect("load");
    known
        .record(&server.address(), &other.public_key())
        .expect("record");
    let before = std::fs::read(&fx.known_servers).expect("read");
    match R::connect(&server, &fx.options()) {
        Err(ClientError::Trust(TrustError::KeyChanged {
            known, presented, ..
        })) => {
            assert_eq!(known, other.public_key().fingerprint());
            assert_eq!(presented, fx.identity.public_key().fingerprint());
        }
        Err(e) => panic!("expected KeyChanged, got {e}"),
        Ok(_) => panic!("connected despite a changed key"),
    }
    assert_eq!(
        std::fs::read(&fx.known_servers).expect("read"),
        before,
        "known_servers modified"
    );
    server.shutdown();
}

/// `--server-key` pins: the right fingerprint connects, a wrong one is refused.
pub fn pinned_key<R: Runtime>() {
    let fx = Fixture::new(5);
    let server = start::<R>(&fx);
    let mut options = fx.options();
    options.pinned = Some(Fingerprint([7; 32]));
    assert!(matches!(
        R::connect(&server, &options),
        Err(ClientError::Trust(TrustError::PinMismatch { .. }))
    ));
    options.pinned = Some(fx.identity.public_key().fingerprint());
    let client = R::connect(&server, &options).expect("pinned connect");
    assert_eq!(client.trust(), Some(TrustDecision::Pinned));
    client.quit().expect("quit");
    server.shutdown();
}

/// Garbage and truncated handshakes are refused cleanly and the server keeps serving.
pub fn bad_input_does_not_hurt_others<R: Runtime>() {
    let fx = Fixture::new(6);
    let server = start::<R>(&fx);
    let mut client = R::connect(&server, &fx.options()).expect("connect");
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 8],
        &[0, 0, 0, 5, 1, 2, 3, 4, 5],
        &[],
    ] {
        let reply = server.raw_exchange(junk);
        // Whatever came back is at most a refusal or a close: never a ServerHello to junk.
        assert!(
            reply.len() < 128,
            "server answered junk with {} bytes",
            reply.len()
        );
    }
    assert_eq!(
        client
            .call(&Command::Ping {
                payload: b"ok".to_vec()
            })
            .expect("ping"),
        Reply::Pong(b"ok".to_vec())
    );
    client.quit().expect("quit");
    server.shutdown();
}

/// Many clients at once all get their answers.
pub fn many_clients<R: Runtime>() {
    let fx = Fixture::new(7);
    // Sixteen anonymous sessions from one address: more than the default cap on those.
    let policy = vserv_service::Policy {
        max_unauthenticated_per_ip: None,
        ..vserv_service::Policy::default()
    };
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let mut clients: Vec<R::Client> = (0..16)
        .map(|_| R::connect(&server, &fx.options()).expect("connect"))
        .collect();
    for round in 0..5u8 {
        for (i, c) in clients.iter_mut().enumerate() {
            let payload = vec![round, i as u8];
            assert_eq!(
                c.call(&Command::Ping {
                    payload: payload.clone()
                })
                .expect("ping"),
                Reply::Pong(payload)
            );
        }
    }
    for c in clients {
        c.quit().expect("quit");
    }
    server.shutdown();
}
