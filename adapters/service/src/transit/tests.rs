//! [`TransitKeys`] over the crash-modelling [`MemoryStore`]: every operation and every
//! refusal, rotation then unsealing old tokens, retirement by `min`, rewrap, deletion, the
//! limits, a crash in the middle of each change, and a restart over the same store and master
//! key keeping every key.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vserv_core::transit::{MasterKey, Token};
use vserv_store::MemoryStore;
use vserv_store::kv::{Store, StoreError, Table};
use zeroize::Zeroizing;

use super::*;

fn master() -> MasterKey {
    MasterKey::from_bytes(Zeroizing::new([5; 32]))
}

fn keys_over(store: Arc<MemoryStore>, seed: u64, limits: TransitLimits) -> TransitKeys {
    TransitKeys::new(
        store,
        master(),
        Box::new(StdRng::seed_from_u64(seed)),
        limits,
    )
}

fn setup() -> (Arc<MemoryStore>, TransitKeys) {
    let store = Arc::new(MemoryStore::new());
    let keys = keys_over(store.clone(), 1, TransitLimits::default());
    (store, keys)
}

fn user(name: &str) -> UserName {
    UserName::parse(name).expect("user name")
}

#[test]
fn seal_unseal_rotate_rewrap_and_retire() {
    let (_, keys) = setup();
    let alice = user("alice");
    assert_eq!(keys.create(&alice, "payroll", 100).expect("new"), 1);
    let t1 = keys.seal(&alice, "payroll", b"salary").expect("seal");
    assert!(t1.starts_with("vserv:v1:payroll:1:"), "{t1}");
    assert_eq!(
        keys.unseal(&alice, "payroll", t1.as_bytes())
            .expect("unseal")
            .as_slice(),
        b"salary"
    );
    // Two seals of the same data differ (fresh IVs).
    assert_ne!(keys.seal(&alice, "payroll", b"salary").expect("seal"), t1);

    assert_eq!(keys.rotate(&alice, "payroll").expect("rotate"), 2);
    let t2 = keys.seal(&alice, "payroll", b"bonus").expect("seal");
    assert!(t2.starts_with("vserv:v1:payroll:2:"), "{t2}");
    // The old version still unseals.
    assert_eq!(
        keys.unseal(&alice, "payroll", t1.as_bytes())
            .expect("old")
            .as_slice(),
        b"salary"
    );
    // Rewrap moves a token to the newest version, the data the same.
    let moved = keys
        .rewrap(&alice, "payroll", t1.as_bytes())
        .expect("rewrap");
    assert!(moved.starts_with("vserv:v1:payroll:2:"), "{moved}");
    assert_eq!(
        keys.unseal(&alice, "payroll", moved.as_bytes())
            .expect("moved")
            .as_slice(),
        b"salary"
    );

    keys.set_min(&alice, "payroll", 2).expect("min");
    assert!(matches!(
        keys.unseal(&alice, "payroll", t1.as_bytes()),
        Err(TransitKeysError::Retired {
            version: 1,
            min_version: 2,
            ..
        })
    ));
    assert!(matches!(
        keys.rewrap(&alice, "payroll", t1.as_bytes()),
        Err(TransitKeysError::Retired { .. })
    ));
    assert_eq!(
        keys.unseal(&alice, "payroll", t2.as_bytes())
            .expect("v2")
            .as_slice(),
        b"bonus"
    );
    // Lowering the minimum again brings version 1 back: its material was kept.
    keys.set_min(&alice, "payroll", 1).expect("min");
    assert!(keys.unseal(&alice, "payroll", t1.as_bytes()).is_ok());
    assert!(matches!(
        keys.set_min(&alice, "payroll", 3),
        Err(TransitKeysError::BadMinimum { latest: 2, .. })
    ));
    assert!(matches!(
        keys.set_min(&alice, "payroll", 0),
        Err(TransitKeysError::BadMinimum { .. })
    ));

    let list = keys.list(&alice).expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].name.as_str(),
            list[0].latest,
            list[0].min_version,
            list[0].created
        ),
        ("payroll", 2, 1, 100)
    );
}

#[test]
fn every_refusal_is_typed() {
    let (_, keys) = setup();
    let (alice, bob) = (user("alice"), user("bob"));
    keys.create(&alice, "k", 0).expect("new");
    keys.create(&alice, "other", 0).expect("new");
    keys.create(&bob, "k", 0).expect("bob's own k");
    let token = keys.seal(&alice, "k", b"data").expect("seal");

    assert!(matches!(
        keys.create(&alice, "k", 0),
        Err(TransitKeysError::KeyExists(_))
    ));
    assert!(matches!(
        keys.seal(&alice, "nope", b""),
        Err(TransitKeysError::NoSuchKey(_))
    ));
    assert!(matches!(
        keys.rotate(&alice, "nope"),
        Err(TransitKeysError::NoSuchKey(_))
    ));
    assert!(matches!(
        keys.delete(&alice, "nope"),
        Err(TransitKeysError::NoSuchKey(_))
    ));
    assert!(matches!(
        keys.set_min(&alice, "nope", 1),
        Err(TransitKeysError::NoSuchKey(_))
    ));
    assert!(matches!(
        keys.seal(
            &alice,
            "k",
            &vec![0; vserv_core::transit::MAX_SEAL_DATA + 1]
        ),
        Err(TransitKeysError::TooLarge)
    ));
    // Another key's token.
    assert!(matches!(
        keys.unseal(&alice, "other", token.as_bytes()),
        Err(TransitKeysError::WrongKey { .. })
    ));
    // A version the key never had.
    let mut parsed = Token::parse(token.as_bytes()).expect("parse");
    parsed.version = 9;
    assert!(matches!(
        keys.unseal(&alice, "k", parsed.encode().as_bytes()),
        Err(TransitKeysError::UnknownVersion {
            version: 9,
            latest: 1,
            ..
        })
    ));
    // Forged: an altered ciphertext, an altered tag.
    let mut forged = Token::parse(token.as_bytes()).expect("parse");
    forged.ciphertext[0] ^= 1;
    assert!(matches!(
        keys.unseal(&alice, "k", forged.encode().as_bytes()),
        Err(TransitKeysError::Forged(_))
    ));
    let mut forged = Token::parse(token.as_bytes()).expect("parse");
    forged.tag[31] ^= 1;
    assert!(matches!(
        keys.rewrap(&alice, "k", forged.encode().as_bytes()),
        Err(TransitKeysError::Forged(_))
    ));
    // Truncated text: malformed.
    assert!(matches!(
        keys.unseal(&alice, "k", &token.as_bytes()[..token.len() - 3]),
        Err(TransitKeysError::Malformed(_))
    ));
    assert!(matches!(
        keys.unseal(&alice, "k", b"vault:v1:abc"),
        Err(TransitKeysError::Malformed(_))
    ));
    // Another user's key: bob's key of the same name does not open alice's token, and a
    // user with no such key is told so.
    assert!(matches!(
        keys.unseal(&bob, "k", token.as_bytes()),
        Err(TransitKeysError::Forged(_))
    ));
    assert!(matches!(
        keys.unseal(&user("carol"), "k", token.as_bytes()),
        Err(TransitKeysError::NoSuchKey(_))
    ));
    assert!(keys.list(&user("carol")).expect("list").is_empty());
}

#[test]
fn deletion_removes_every_version_and_the_name_is_free_again() {
    let (store, keys) = setup();
    let alice = user("alice");
    keys.create(&alice, "k", 0).expect("new");
    keys.create(&alice, "k2", 0).expect("new");
    keys.rotate(&alice, "k").expect("rotate");
    let token = keys.seal(&alice, "k", b"x").expect("seal");
    keys.delete(&alice, "k").expect("del");
    assert!(matches!(
        keys.unseal(&alice, "k", token.as_bytes()),
        Err(TransitKeysError::NoSuchKey(_))
    ));
    // Only k2's two records are left.
    assert_eq!(store.scan(Table::Transit, b"").expect("scan").len(), 2);
    // A new key of the same name is new material: the old token does not open.
    keys.create(&alice, "k", 0).expect("new again");
    assert!(matches!(
        keys.unseal(&alice, "k", token.as_bytes()),
        Err(TransitKeysError::UnknownVersion {
            version: 2,
            latest: 1,
            ..
        })
    ));
    keys.rotate(&alice, "k").expect("rotate");
    assert!(matches!(
        keys.unseal(&alice, "k", token.as_bytes()),
        Err(TransitKeysError::Forged(_))
    ));
}

#[test]
fn limits_refuse_before_writing() {
    let store = Arc::new(MemoryStore::new());
    let keys = keys_over(
        store.clone(),
        1,
        TransitLimits {
            keys_per_user: 2,
            versions_per_key: 2,
        },
    );
    let alice = user("alice");
    keys.create(&alice, "a", 0).expect("new");
    keys.create(&alice, "b", 0).expect("new");
    let commits = store.commit_count();
    assert!(matches!(
        keys.create(&alice, "c", 0),
        Err(TransitKeysError::TooManyKeys { max: 2 })
    ));
    keys.create(&user("bob"), "c", 0)
        .expect("bob has his own quota");
    assert_eq!(keys.rotate(&alice, "a").expect("rotate"), 2);
    assert!(matches!(
        keys.rotate(&alice, "a"),
        Err(TransitKeysError::TooManyVersions { max: 2, .. })
    ));
    assert_eq!(store.commit_count(), commits + 2);
}

#[test]
fn random_bytes_are_fresh() {
    let (_, keys) = setup();
    let a = keys.random(32);
    let b = keys.random(32);
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    assert_eq!(keys.random(1024).len(), 1024);
}

#[test]
fn restart_keeps_keys_and_a_crash_keeps_each_change_whole() {
    let store = Arc::new(MemoryStore::new());
    let alice = user("alice");
    let keys = keys_over(store.clone(), 1, TransitLimits::default());
    keys.create(&alice, "k", 0).expect("new");
    let t1 = keys.seal(&alice, "k", b"one").expect("seal");

    // A crash during rotate: version 2 and the new state are both absent after restart.
    store.crash_after_commits(0);
    assert!(matches!(
        keys.rotate(&alice, "k"),
        Err(TransitKeysError::Store(StoreError::Crashed))
    ));
    store.restart();
    let keys = keys_over(store.clone(), 2, TransitLimits::default());
    assert_eq!(keys.list(&alice).expect("list")[0].latest, 1);
    assert_eq!(store.scan(Table::Transit, b"v/").expect("scan").len(), 1);
    assert_eq!(
        keys.unseal(&alice, "k", t1.as_bytes())
            .expect("unseal")
            .as_slice(),
        b"one"
    );

    // A crash during delete: everything is still there.
    assert_eq!(keys.rotate(&alice, "k").expect("rotate"), 2);
    store.crash_after_commits(0);
    assert!(keys.delete(&alice, "k").is_err());
    store.restart();
    let keys = keys_over(store.clone(), 3, TransitLimits::default());
    assert_eq!(keys.list(&alice).expect("list")[0].latest, 2);
    assert!(keys.unseal(&alice, "k", t1.as_bytes()).is_ok());

    // A crash during new: no half key.
    store.crash_after_commits(0);
    assert!(keys.create(&alice, "n", 0).is_err());
    store.restart();
    assert!(matches!(
        keys.seal(&alice, "n", b""),
        Err(TransitKeysError::NoSuchKey(_))
    ));
    assert_eq!(keys.list(&alice).expect("list").len(), 1);

    // Another master key cannot use the stored material (a replaced master.key).
    let wrong = TransitKeys::new(
        store.clone(),
        MasterKey::from_bytes(Zeroizing::new([6; 32])),
        Box::new(StdRng::seed_from_u64(4)),
        TransitLimits::default(),
    );
    assert!(matches!(
        wrong.unseal(&alice, "k", t1.as_bytes()),
        Err(TransitKeysError::Corrupt(_))
    ));
}

#[test]
fn stored_material_is_encrypted() {
    let (store, keys) = setup();
    let alice = user("alice");
    keys.create(&alice, "k", 0).expect("new");
    let records = store.scan(Table::Transit, b"v/").expect("scan");
    assert_eq!(records.len(), 1);
    let wrapped = &records[0].1;
    assert_eq!(wrapped.len(), 16 + 48 + 32);
    // The material the record wraps seals the token: unwrapping with the master key for
    // this user, key and version gives it, and any other context fails.
    let context = WrapContext::TransitKey {
        user: "alice",
        name: "k",
        version: 1,
    };
    let material = unwrap(&master(), &context, wrapped).expect("unwrap");
    assert!(
        !wrapped
            .windows(8)
            .any(|w| material.windows(8).any(|m| m == w))
    );
    let bob = WrapContext::TransitKey {
        user: "bob",
        name: "k",
        version: 1,
    };
    assert!(unwrap(&master(), &bob, wrapped).is_err());
}
