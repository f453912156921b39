//! Account invariants under crashes and concurrency, over the crash-modelling memory store.

use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::commands::UserRole;
use vserv_service::accounts::{AccountError, Accounts, PasswordParams, UserName};
use vserv_store::kv::StoreError;
use vserv_store::memory::MemoryStore;

fn accounts(store: &MemoryStore) -> Accounts {
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(3));
    Accounts::new(Arc::new(store.clone()), PasswordParams::INSECURE_FAST, rng).unwrap()
}

fn name(n: &str) -> UserName {
    UserName::parse(n).unwrap()
}

#[test]
fn a_crash_between_two_writes_keeps_the_first_and_no_half_user() {
    let store = MemoryStore::new();
    let accounts = accounts(&store);
    accounts
        .create("first", UserRole::Admin, b"password-1", 1)
        .unwrap();
    store.crash_after_commits(0);
    assert!(matches!(
        accounts.create("second", UserRole::User, b"password-2", 2),
        Err(AccountError::Store(StoreError::Crashed))
    ));
    store.restart();
    // A fresh service over what survived: the first user whole, no trace of the second.
    let after = accounts_after_restart(&store);
    let first = after.get(&name("first")).unwrap().unwrap();
    assert_eq!(
        (first.role, first.enabled, first.created),
        (UserRole::Admin, true, 1)
    );
    assert!(
        after
            .check_password("first", b"password-1")
            .unwrap()
            .is_some()
    );
    assert!(after.get(&name("second")).unwrap().is_none());
    after
        .create("second", UserRole::User, b"password-2", 3)
        .unwrap();
}

fn accounts_after_restart(store: &MemoryStore) -> Accounts {
    accounts(store)
}

#[test]
fn a_crash_during_a_change_leaves_the_old_record_intact() {
    let store = MemoryStore::new();
    let accounts = accounts(&store);
    accounts
        .create("admin", UserRole::Admin, b"password-1", 1)
        .unwrap();
    accounts
        .create("user", UserRole::User, b"password-2", 1)
        .unwrap();
    store.crash_after_commits(0);
    assert!(accounts.set_password("user", None, b"password-3").is_err());
    store.restart();
    let after = accounts_after_restart(&store);
    assert!(
        after
            .check_password("user", b"password-2")
            .unwrap()
            .is_some()
    );
    assert!(
        after
            .check_password("user", b"password-3")
            .unwrap()
            .is_none()
    );
}

#[test]
fn concurrent_admins_changing_one_user_leave_a_consistent_record() {
    let store = MemoryStore::new();
    let accounts = Arc::new(accounts(&store));
    accounts
        .create("root", UserRole::Admin, b"password-0", 1)
        .unwrap();
    accounts
        .create("target", UserRole::User, b"password-0", 1)
        .unwrap();
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let accounts = accounts.clone();
            std::thread::spawn(move || {
                for round in 0..5 {
                    accounts
                        .set_enabled("target", (i + round) % 2 == 0)
                        .unwrap();
                    accounts
                        .set_password("target", None, format!("password-{i}-{round}").as_bytes())
                        .unwrap();
                    accounts
                        .add_key("target", &vserv_tests_key(i, round))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let user = accounts.get(&name("target")).unwrap().unwrap();
    // Every thread's key additions survived: no change was lost to another.
    assert_eq!(user.keys.len(), 3 * 5);
    // The password is exactly one of those written.
    accounts.set_enabled("target", true).unwrap();
    let matching = (0..3)
        .flat_map(|i| (0..5).map(move |r| format!("password-{i}-{r}")))
        .filter(|p| {
            accounts
                .check_password("target", p.as_bytes())
                .unwrap()
                .is_some()
        })
        .count();
    assert_eq!(matching, 1);
}

/// A distinct valid public key per (thread, round).
fn vserv_tests_key(i: u64, round: u64) -> [u8; 33] {
    let identity = vserv_core::ServerIdentity::generate(&mut rand::rngs::StdRng::seed_from_u64(
        100 + i * 10 + round,
    ));
    *identity.public_key().as_bytes()
}

#[test]
fn concurrent_creation_of_one_name_succeeds_once() {
    let store = MemoryStore::new();
    let accounts = Arc::new(accounts(&store));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let accounts = accounts.clone();
            std::thread::spawn(move || {
                accounts.create(
                    "Same",
                    UserRole::User,
                    format!("password-{i}").as_bytes(),
                    1,
                )
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(AccountError::Exists(_))))
    );
}

#[test]
fn a_login_in_the_same_second_writes_nothing_and_a_later_one_updates_the_time() {
    let store = MemoryStore::new();
    let accounts = accounts(&store);
    accounts
        .create("first", UserRole::Admin, b"password-1", 1)
        .unwrap();
    let before = store.commit_count();
    accounts.record_login(&name("first"), 100);
    assert_eq!(store.commit_count(), before + 1);
    assert_eq!(
        accounts.get(&name("first")).unwrap().unwrap().last_login,
        Some(100)
    );
    // The same second again: the record would not change, so no commit.
    for _ in 0..50 {
        accounts.record_login(&name("first"), 100);
    }
    assert_eq!(store.commit_count(), before + 1);
    accounts.record_login(&name("first"), 101);
    assert_eq!(store.commit_count(), before + 2);
    assert_eq!(
        accounts.get(&name("first")).unwrap().unwrap().last_login,
        Some(101)
    );
}
