//! Logins refused because every password-check slot is busy and the queue is full: answered
//! `LoginFailed` saying so, alike for existing and unknown users, counted neither toward the
//! backoff nor toward the connection's failed logins; and account changes that hash a
//! password are refused the same way, changing nothing.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, mpsc};

use vserv_core::commands::{Command, Credential, SecretBytes, UserRole};
use vserv_core::{ErrorCode, Request};
use vserv_service::accounts::{AccountError, Accounts, CheckLimits, UserName};
use vserv_service::limits::user_key;
use vserv_service::{Node, NodeSettings, Service, Session};
use vserv_store::kv::{Store, Table};
use vserv_store::memory::MemoryStore;

const T0: u64 = 1_700_000_000;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
const PASSWORD: &str = "alice-password";

/// Accounts with alice and a single check slot, no queue.
fn one_slot(store: &MemoryStore) -> Node {
    let settings = NodeSettings {
        password_checks: CheckLimits {
            max_concurrent: 1,
            max_queued: 0,
        },
        ..NodeSettings::insecure_fast("busy")
    };
    let node = common::node_with(settings, 21)
        .store(Arc::new(store.clone()))
        .build()
        .unwrap();
    node.accounts()
        .create("alice", UserRole::User, PASSWORD.as_bytes(), T0)
        .unwrap();
    node
}

/// Occupies the only slot on another thread until the returned sender is dropped.
fn occupy(accounts: &Arc<Accounts>) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let accounts = accounts.clone();
    let holder = std::thread::spawn(move || {
        accounts
            .password_checks()
            .run(|_| {
                held_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
            .unwrap();
    });
    held_rx.recv().unwrap();
    (release_tx, holder)
}

/// One login's outcome: `Ok(())` or the `LoginFailed` message, and whether the connection
/// is being closed.
fn login(svc: &Service, s: &mut Session, user: &str, password: &str) -> (Result<(), String>, bool) {
    let cmd = Command::Login {
        user: user.into(),
        credential: Credential::Password(SecretBytes::new(password.as_bytes().to_vec())),
    };
    let request = Request {
        id: 1,
        name: cmd.name().into(),
        args: cmd.args(),
    };
    let (response, close) = svc.answer(s, &request, T0 * 1000);
    let result = response.result.map(|_| ()).map_err(|e| {
        assert_eq!(e.code, ErrorCode::LoginFailed, "{}", e.message);
        e.message
    });
    (result, close.is_some())
}

#[test]
fn busy_logins_count_nowhere_and_do_not_reveal_the_user() {
    let store = MemoryStore::new();
    let node = one_slot(&store);
    let accounts = node.accounts().clone();
    let svc = node.service();
    let (release, holder) = occupy(&accounts);

    let mut s = Session::new(Some(PEER));
    let mut answers = Vec::new();
    // More than the three failures that close a connection, and than one backoff step.
    for user in ["alice", "nobody", "alice", "nobody", "alice"] {
        let (result, closed) = login(&svc, &mut s, user, "wrong-password");
        assert!(!closed, "a busy refusal closed the connection");
        answers.push(result.unwrap_err());
    }
    assert!(answers[0].contains("busy"), "{}", answers[0]);
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    let alice = UserName::parse("alice").unwrap();
    assert!(
        store
            .get(Table::Limits, &user_key(&alice))
            .unwrap()
            .is_none()
    );

    drop(release);
    holder.join().unwrap();
    // No backoff was started: the right password works at once, on the same connection.
    assert_eq!(login(&svc, &mut s, "alice", PASSWORD).0, Ok(()));
}

#[test]
fn busy_password_changes_change_nothing() {
    let store = MemoryStore::new();
    let accounts = one_slot(&store).accounts().clone();
    let (release, holder) = occupy(&accounts);
    assert!(matches!(
        accounts.create("bob", UserRole::User, b"bob-password", T0),
        Err(AccountError::Busy(_))
    ));
    assert!(matches!(
        accounts.set_password("alice", Some(PASSWORD.as_bytes()), b"new-password"),
        Err(AccountError::Busy(_))
    ));
    assert!(matches!(
        accounts.check_password("alice", PASSWORD.as_bytes()),
        Err(AccountError::Busy(_))
    ));
    drop(release);
    holder.join().unwrap();
    assert!(
        accounts
            .get(&UserName::parse("bob").unwrap())
            .unwrap()
            .is_none()
    );
    assert!(
        accounts
            .check_password("alice", PASSWORD.as_bytes())
            .unwrap()
            .is_some()
    );
}
