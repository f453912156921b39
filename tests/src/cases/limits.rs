//! Abuse limits: the connection limit, the login grace, the per-address cap on anonymous
//! sessions, the login backoff, and `tout` bounds.

use vserv_core::commands::{Command, Reply};
use vserv_core::{Config, ErrorCode};
use vserv_service::client::ClientError;

use crate::clients::*;
use crate::fixture::*;
use crate::{Fixture, Runtime, TestClient, TestServer};

/// Beyond the connection limit, clients get a clean `Busy` refusal.
pub fn connection_limit_refuses_busy<R: Runtime>() {
    let fx = Fixture::new(8);
    let server = R::start(fx.identity.clone(), fx.service(), 2, Config::default());
    let a = R::connect(&server, &fx.options()).expect("a");
    let b = R::connect(&server, &fx.options()).expect("b");
    match R::connect(&server, &fx.options()) {
        Err(ClientError::Protocol(vserv_core::Error::RefusedRetry(hint)))
            if hint.limit == vserv_core::wire::RefusedLimit::MaxConnections => {}
        Err(e) => panic!("expected a Busy refusal at the connection limit, got {e}"),
        Ok(_) => panic!("connected beyond the limit"),
    }
    a.quit().expect("quit a");
    b.quit().expect("quit b");
    server.shutdown();
}

/// A session that does not log in is closed once the login grace time has passed, even
/// while it keeps sending `ping`s; a logged-in session is not.
pub fn anonymous_sessions_end_after_the_login_grace<R: Runtime>() {
    let fx = Fixture::new(9);
    let config = Config {
        login_grace: Some(std::time::Duration::from_secs(2)),
        ..Config::default()
    };
    let server = R::start(fx.identity.clone(), fx.service(), 8, config);
    let mut root = root_client::<R>(&server, &fx);
    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    // Only a guard against hanging: the idle timeout (300 s) is far beyond it.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut pings = 0u64;
    let ended = loop {
        match anonymous.call(&Command::Ping {
            payload: b"still here".to_vec(),
        }) {
            Ok(reply) => assert_eq!(reply, Reply::Pong(b"still here".to_vec())),
            Err(e) => break e,
        }
        pings += 1;
        assert!(
            std::time::Instant::now() < guard,
            "an anonymous session pinged for 120 s ({pings} pings) without being closed"
        );
    };
    assert!(pings > 0, "closed before its first ping");
    match &ended {
        ClientError::ClosedByServer { code, reason } => {
            assert_eq!(*code, vserv_core::CloseCode::Timeout, "{reason}");
            assert!(reason.contains("login grace"), "{reason}");
        }
        ClientError::Server(e) => panic!("answered instead of closed: {e}"),
        // The close record may be lost to a reset racing the last ping.
        _ => {}
    }
    root.call(&Command::Ping { payload: vec![1] })
        .expect("a logged-in session outlives the grace");
    root.quit().expect("quit");
    server.shutdown();
}

/// At most `max_unauthenticated_per_ip` sessions from one address may be not logged in:
/// one more is refused as busy while the others are served, and a session that logs in
/// (or ends) frees its slot.
pub fn unauthenticated_sessions_are_capped_per_address<R: Runtime>() {
    let fx = Fixture::new(10);
    let policy = vserv_service::Policy {
        max_unauthenticated_per_ip: Some(2),
        connection_rate: None,
        ..vserv_service::Policy::default()
    };
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let refused = |what: &str| match R::connect(&server, &fx.options()) {
        Err(ClientError::Protocol(vserv_core::Error::RefusedRetry(hint)))
            if hint.limit == vserv_core::wire::RefusedLimit::Unauthenticated => {}
        Err(e) => panic!("{what}: expected a Busy refusal at the unauthenticated limit, got {e}"),
        Ok(_) => panic!("{what}: a third unauthenticated session was accepted"),
    };
    let mut a = R::connect(&server, &fx.options()).expect("a");
    let mut b = R::connect(&server, &fx.options()).expect("b");
    refused("with a and b anonymous");
    b.call(&Command::Ping { payload: vec![2] })
        .expect("b is still served");
    a.call(&Command::Uini {
        user: "root".into(),
        password: secret(ROOT_PASSWORD),
    })
    .expect("uini");
    refused("uini is no login");
    a.call(&login_cmd("root", ROOT_PASSWORD)).expect("login");
    let mut c = R::connect(&server, &fx.options()).expect("a's login freed its slot");
    c.call(&Command::Ping { payload: vec![3] }).expect("c");
    refused("with b and c anonymous");
    b.quit().expect("quit b");
    let d = R::connect(&server, &fx.options()).expect("b's end freed its slot");
    a.call(&Command::Ping { payload: vec![1] })
        .expect("the logged-in session is served");
    for client in [a, c, d] {
        client.quit().expect("quit");
    }
    server.shutdown();
}

/// Brute force: three failures close the connection, and the user's backoff outlives it —
/// a new connection's attempt is refused even with the right password — while other users
/// (from the same address) are unaffected. The backoff base is 60 s here so that real
/// clocks cannot step past it during the test.
pub fn login_backoff_outlasts_the_connection<R: Runtime>() {
    let fx = Fixture::new(30);
    let mut policy = vserv_service::Policy::default();
    policy.login.base_secs = 60;
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "alice".into(),
        password: secret("alice-pass"),
    })
    .expect("uadd");
    let mut c = R::connect(&server, &fx.options()).expect("connect");
    let first = c.call(&login_cmd("root", "guess-1"));
    match &first {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::LoginFailed);
            assert!(!e.message.contains("too many"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    for guess in ["guess-2", "guess-3"] {
        match c.call(&login_cmd("root", guess)) {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::LoginFailed);
                assert!(
                    e.message.contains("too many failed attempts"),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
    }
    match c.call(&Command::Ping { payload: vec![] }) {
        Err(ClientError::ClosedByServer { .. } | ClientError::ConnectionClosed) => {}
        other => panic!("connection still open after 3 failures: {other:?}"),
    }
    // The 4th attempt, on a new connection and with the right password: refused.
    let mut d = R::connect(&server, &fx.options()).expect("connect");
    match d.call(&login_cmd("root", ROOT_PASSWORD)) {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::LoginFailed);
            assert!(e.message.contains("retry in"), "{}", e.message);
        }
        other => panic!("4th attempt not refused: {other:?}"),
    }
    // Another user from the same address logs in; the session logged in before is intact.
    d.call(&login_cmd("alice", "alice-pass"))
        .expect("alice unaffected");
    assert!(matches!(
        root.call(&Command::Whoami).expect("whoami"),
        Reply::User { .. }
    ));
    d.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// `tout`: logged-in sessions read and set their idle timeout within the server's bounds;
/// anonymous ones may not; out-of-bounds values are refused and change nothing.
pub fn tout_within_bounds<R: Runtime>() {
    let fx = Fixture::new(31);
    let server = start::<R>(&fx);
    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(
        code_of(anonymous.call(&Command::Tout { seconds: Some(60) })),
        Some(ErrorCode::Forbidden)
    );
    let mut root = root_client::<R>(&server, &fx);
    let policy = vserv_service::Policy::default();
    let (min, max) = (
        policy.idle_timeout_min.as_secs(),
        policy.idle_timeout_max.as_secs(),
    );
    assert_eq!(
        root.call(&Command::Tout { seconds: None }).expect("tout"),
        Reply::IdleTimeout(Config::default().idle_timeout.as_secs())
    );
    for bad in [0, min - 1, max + 1] {
        assert_eq!(
            code_of(root.call(&Command::Tout { seconds: Some(bad) })),
            Some(ErrorCode::BadArguments),
            "{bad}"
        );
    }
    for good in [max, min, 120] {
        assert_eq!(
            root.call(&Command::Tout {
                seconds: Some(good)
            })
            .expect("tout"),
            Reply::IdleTimeout(good)
        );
    }
    assert_eq!(
        root.call(&Command::Tout { seconds: None }).expect("tout"),
        Reply::IdleTimeout(120)
    );
    root.call(&Command::Ping { payload: vec![1] })
        .expect("still connected");
    anonymous.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}
