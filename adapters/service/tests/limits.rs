//! Abuse limits through the service's own entry point (`Service::answer`, explicit `now`):
//! login backoff per user and per address, its survival across a restart, and the `tout`
//! bounds. (The audit log is checked in `tests/audit.rs`.)

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use vserv_core::commands::{Command, Credential, SecretBytes, UserRole};
use vserv_core::{CloseCode, ErrorCode, Request, Response};
use vserv_service::accounts::{Accounts, PasswordParams, UserName};
use vserv_service::limits::{Counter, user_key};
use vserv_service::{MAX_FAILED_LOGINS, Policy, Service, Session};
use vserv_store::kv::{Store, Table};
use vserv_store::memory::MemoryStore;

const T0: u64 = 1_700_000_000;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
const PASSWORD: &str = "alice-password";

/// A fresh service (a "process") over `store`, which survives it.
fn service(store: &MemoryStore) -> Service {
    common::node("limits", 5)
        .store(Arc::new(store.clone()))
        .build()
        .unwrap()
        .service()
}

fn with_alice() -> MemoryStore {
    let store = MemoryStore::new();
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(6));
    let accounts =
        Accounts::new(Arc::new(store.clone()), PasswordParams::INSECURE_FAST, rng).unwrap();
    accounts
        .create("alice", UserRole::User, PASSWORD.as_bytes(), T0)
        .unwrap();
    store
}

fn run(
    service: &Service,
    session: &mut Session,
    cmd: &Command,
    now: u64,
) -> (Response, Option<(CloseCode, &'static str)>) {
    let request = Request {
        id: 1,
        name: cmd.name().into(),
        args: cmd.args(),
    };
    service.answer(session, &request, now * 1000)
}

fn login(user: &str, password: &str) -> Command {
    Command::Login {
        user: user.into(),
        credential: Credential::Password(SecretBytes::new(password.as_bytes().to_vec())),
    }
}

/// The outcome of one login on `session`: `Ok(())`, or the error message.
fn try_login(
    service: &Service,
    session: &mut Session,
    user: &str,
    password: &str,
    now: u64,
) -> (Result<(), String>, bool) {
    let (response, close) = run(service, session, &login(user, password), now);
    let result = match response.result {
        Ok(_) => Ok(()),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::LoginFailed, "{}", e.message);
            Err(e.message)
        }
    };
    (result, close.is_some())
}

fn refused_by_backoff(r: &Result<(), String>) -> bool {
    matches!(r, Err(m) if m.contains("too many failed attempts"))
}

#[test]
fn brute_force_is_closed_after_three_and_the_fourth_is_refused_even_when_right() {
    let store = with_alice();
    let svc = service(&store);
    let mut s = Session::new(Some(PEER));
    let (first, closed) = try_login(&svc, &mut s, "alice", "guess-one", T0);
    assert!(first.is_err() && !refused_by_backoff(&first) && !closed);
    // Within the 1 s backoff: refused without a check, still counted on the connection.
    let (second, closed) = try_login(&svc, &mut s, "alice", PASSWORD, T0);
    assert!(refused_by_backoff(&second) && !closed, "{second:?}");
    let (third, closed) = try_login(&svc, &mut s, "alice", "guess-three", T0);
    assert!(third.is_err() && closed, "closed after {MAX_FAILED_LOGINS}");
    // A new connection, even with the right password, within the backoff: refused.
    let mut again = Session::new(Some(PEER));
    let (fourth, _) = try_login(&svc, &mut again, "alice", PASSWORD, T0);
    assert!(refused_by_backoff(&fourth), "{fourth:?}");
    // After the backoff, the right password works and resets the counter.
    let (ok, _) = try_login(&svc, &mut again, "alice", PASSWORD, T0 + 1);
    assert_eq!(ok, Ok(()));
    assert!(
        store
            .get(Table::Limits, &user_key(&UserName::parse("alice").unwrap()))
            .unwrap()
            .is_none()
    );
}

#[test]
fn backoff_grows_with_each_failure() {
    let store = with_alice();
    let svc = service(&store);
    let mut now = T0;
    for expected in [1u64, 2, 4, 8, 16, 32] {
        let mut s = Session::new(None);
        let (r, _) = try_login(&svc, &mut s, "alice", "wrong-password", now);
        assert!(r.is_err() && !refused_by_backoff(&r), "at {now}: {r:?}");
        let (early, _) = try_login(&svc, &mut s, "alice", PASSWORD, now + expected - 1);
        assert!(
            matches!(&early, Err(m) if m.contains("retry in 1 s")),
            "one second before the {expected} s backoff ends: {early:?}"
        );
        let (waiting, _) = try_login(&svc, &mut Session::new(None), "alice", PASSWORD, now);
        assert!(
            matches!(&waiting, Err(m) if m.contains(&format!("retry in {expected} s"))),
            "{waiting:?}"
        );
        now += expected;
    }
}

#[test]
fn the_user_backoff_survives_a_restart() {
    let store = with_alice();
    let before = service(&store);
    for t in [T0, T0 + 1, T0 + 3, T0 + 7] {
        let (r, _) = try_login(
            &before,
            &mut Session::new(None),
            "alice",
            "wrong-password",
            t,
        );
        assert!(r.is_err() && !refused_by_backoff(&r));
    }
    let key = user_key(&UserName::parse("alice").unwrap());
    let stored = store
        .get(Table::Limits, &key)
        .unwrap()
        .and_then(|v| Counter::decode(&v));
    assert_eq!(
        stored,
        Some(Counter {
            failures: 4,
            last: T0 + 7
        })
    );
    drop(before);
    // A crash and restart of the store, and a new process over it.
    store.crash_now();
    store.restart();
    let after = service(&store);
    let (r, _) = try_login(&after, &mut Session::new(None), "alice", PASSWORD, T0 + 10);
    assert!(
        matches!(&r, Err(m) if m.contains("retry in 5 s")),
        "8 s backoff from T0+7: {r:?}"
    );
    let (ok, _) = try_login(&after, &mut Session::new(None), "alice", PASSWORD, T0 + 15);
    assert_eq!(ok, Ok(()));
}

#[test]
fn unknown_and_known_users_fail_alike_and_store_nothing_for_junk() {
    let store = with_alice();
    let svc = service(&store);
    let (unknown, _) = try_login(&svc, &mut Session::new(None), "nobody", "whatever-pw", T0);
    let (wrong, _) = try_login(&svc, &mut Session::new(None), "alice", "wrong-pw", T0);
    assert_eq!(unknown, wrong);
    // Both are in backoff now, and say so alike.
    let (u2, _) = try_login(&svc, &mut Session::new(None), "nobody", "whatever-pw", T0);
    let (w2, _) = try_login(&svc, &mut Session::new(None), "alice", "wrong-pw", T0);
    assert_eq!(u2, w2);
    assert!(refused_by_backoff(&u2));
    // Only the existing user's counter is on disk.
    let limits = store.scan(Table::Limits, b"").unwrap();
    let keys: Vec<_> = limits.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [b"u:alice".as_slice()]);
}

#[test]
fn one_address_spraying_many_users_is_slowed_down() {
    let store = with_alice();
    let svc = service(&store);
    let free = svc.policy().login.ip_free_failures;
    for i in 0..free {
        let (r, _) = try_login(
            &svc,
            &mut Session::new(Some(PEER)),
            &format!("user{i}"),
            "pw-guess-1",
            T0,
        );
        assert!(r.is_err() && !refused_by_backoff(&r));
    }
    let (r, _) = try_login(
        &svc,
        &mut Session::new(Some(PEER)),
        "another",
        "pw-guess-1",
        T0,
    );
    assert!(
        r.is_err() && !refused_by_backoff(&r),
        "the last free failure"
    );
    let (r, _) = try_login(&svc, &mut Session::new(Some(PEER)), "alice", PASSWORD, T0);
    assert!(refused_by_backoff(&r), "{r:?}");
    let other = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let (r, _) = try_login(&svc, &mut Session::new(Some(other)), "alice", PASSWORD, T0);
    assert_eq!(r, Ok(()), "other addresses are unaffected");
}

fn tout(seconds: Option<u64>) -> Command {
    Command::Tout { seconds }
}

#[test]
fn tout_needs_a_login_and_stays_within_bounds() {
    let store = with_alice();
    let svc = service(&store);
    let policy = Policy::default();
    let mut s = Session::new(None);
    let (r, _) = run(&svc, &mut s, &tout(Some(60)), T0);
    assert_eq!(r.result.unwrap_err().code, ErrorCode::Forbidden);
    assert_eq!(try_login(&svc, &mut s, "alice", PASSWORD, T0).0, Ok(()));
    let (r, _) = run(&svc, &mut s, &tout(None), T0);
    assert_eq!(r.result.unwrap(), vec![b"300".to_vec()]);
    let min = policy.idle_timeout_min.as_secs();
    let max = policy.idle_timeout_max.as_secs();
    for ok in [min, 60, max] {
        let (r, _) = run(&svc, &mut s, &tout(Some(ok)), T0);
        assert_eq!(r.result.unwrap(), vec![ok.to_string().into_bytes()]);
        assert_eq!(s.idle_timeout(), Duration::from_secs(ok));
    }
    for bad in [0, min - 1, max + 1, u64::MAX] {
        let (r, _) = run(&svc, &mut s, &tout(Some(bad)), T0);
        let e = r.result.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadArguments, "{bad}");
        assert!(e.message.contains(&format!("between {min} and {max}")));
        assert_eq!(s.idle_timeout(), Duration::from_secs(max), "unchanged");
    }
}

/// `drive` applies a `tout` to the connection: `poll_timeout` moves to the new deadline.
#[test]
#[allow(clippy::disallowed_methods)] // one real instant as the epoch of a virtual clock
fn drive_applies_tout_to_the_connection() {
    use std::time::Instant;
    use vserv_core::{Config, Connection, Event, ServerIdentity};
    let rng = |seed| -> Box<dyn rand_core::CryptoRng + Send> {
        Box::new(rand::rngs::StdRng::seed_from_u64(seed))
    };
    let store = with_alice();
    let svc = service(&store);
    let identity = Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(1),
    ));
    let t = Instant::now();
    let mut client = Connection::client(Config::default(), rng(2), t);
    let mut server = Connection::server(Config::default(), identity, rng(3), t);
    let mut session = Session::new(None);
    let mut sent = false;
    for _ in 0..20 {
        let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
        client.poll_transmit(&mut c2s);
        if !c2s.is_empty() {
            server.handle_input(t, &c2s).unwrap();
        }
        svc.drive(
            &mut session,
            &mut server,
            std::time::Instant::now(),
            T0 * 1000,
        )
        .unwrap();
        server.poll_transmit(&mut s2c);
        if !s2c.is_empty() {
            client.handle_input(t, &s2c).unwrap();
        }
        while let Some(e) = client.poll_event() {
            if let Event::ServerKey(_) = e {
                client.accept_server_key(t).unwrap();
            }
        }
        if client.is_connected() && !sent {
            let l = login("alice", PASSWORD);
            client.send_request(l.name(), l.args()).unwrap();
            let tout = tout(Some(42));
            client.send_request(tout.name(), tout.args()).unwrap();
            sent = true;
        }
    }
    assert!(sent);
    assert_eq!(server.idle_timeout(), Duration::from_secs(42));
    // Idle notices are off by default in `Service`: the next wake-up is the new deadline.
    assert_eq!(server.poll_timeout(), Some(t + Duration::from_secs(42)));
}
