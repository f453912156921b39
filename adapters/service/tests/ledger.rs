//! The server's ledger feed over the in-memory store: tampering with a stored entry through
//! the `Store` API is found by `rcheck` (and `Ledger::check`) at that entry's seq, and a
//! crashed append leaves nothing behind.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::commands::{Command, Credential, Reply, SecretBytes, UserRole};
use vserv_core::ledger::{Entry, EntryFields, SignedHead};
use vserv_core::{Request, ServerIdentity};
use vserv_service::ledger::{
    Appended, CheckReport, FeedError, FeedKeys, HEAD_KEY, Ledger, entry_key, id_key,
};
use vserv_service::{Node, NodeSettings, Session};
use vserv_store::kv::{Op, Store, StoreError, Table};
use vserv_store::memory::MemoryStore;

const T0: u64 = 1_700_000_000;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

fn identity() -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(9),
    ))
}

fn ledger(store: &MemoryStore) -> Ledger {
    Ledger::new(Arc::new(store.clone()), identity())
}

/// A ledger holding `n` entries `r1..=rn` by alice.
fn filled(n: u64) -> (MemoryStore, Ledger) {
    let store = MemoryStore::new();
    let ledger = ledger(&store);
    for i in 1..=n {
        let seq = ledger
            .append("alice", "note", format!("r{i}").as_bytes(), b"v=1\n", i)
            .unwrap()
            .seq;
        assert_eq!(seq, i);
    }
    (store, ledger)
}

fn put(key: Vec<u8>, value: Vec<u8>) -> Op {
    Op::Put {
        table: Table::Ledger,
        key,
        value,
    }
}

/// Replaces entry `seq`'s body through the store API, keeping it a valid encoding.
fn tamper_body(store: &MemoryStore, seq: u64) {
    let bytes = store.get(Table::Ledger, &entry_key(seq)).unwrap().unwrap();
    let mut fields: EntryFields = Entry::decode(&bytes).unwrap().into_fields();
    fields.body = b"v=2\n".to_vec();
    let forged = Entry::new(fields).unwrap();
    store
        .commit(vec![put(entry_key(seq), forged.to_bytes())])
        .unwrap();
}

fn bad_seq(report: CheckReport) -> Option<u64> {
    match report {
        CheckReport::Bad { seq, .. } => seq,
        CheckReport::Ok { seq } => panic!("the check passed at seq {seq}"),
    }
}

#[test]
fn an_intact_feed_checks_ok() {
    let (_store, ledger) = filled(5);
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 5 });
    let (_store, empty) = filled(0);
    assert_eq!(empty.check().unwrap(), CheckReport::Ok { seq: 0 });
}

#[test]
fn a_changed_entry_is_named_by_its_seq() {
    for target in [1, 3, 5] {
        let (store, ledger) = filled(5);
        tamper_body(&store, target);
        assert_eq!(bad_seq(ledger.check().unwrap()), Some(target), "{target}");
    }
}

#[test]
fn a_changed_entry_whose_hash_index_is_forged_too_is_still_found() {
    // The forger also indexes the new hash: the next entry's prev no longer matches (or,
    // for the last entry, the signed head does not).
    for (target, named) in [(2, 3), (5, 5)] {
        let (store, ledger) = filled(5);
        tamper_body(&store, target);
        let bytes = store
            .get(Table::Ledger, &entry_key(target))
            .unwrap()
            .unwrap();
        let hash = Entry::decode(&bytes).unwrap().hash();
        store
            .commit(vec![Op::Put {
                table: Table::LedgerIndex,
                key: FeedKeys::OWN.hash_at(target, &hash),
                value: target.to_be_bytes().to_vec(),
            }])
            .unwrap();
        assert_eq!(bad_seq(ledger.check().unwrap()), Some(named), "{target}");
    }
}

#[test]
fn garbage_bytes_missing_entries_and_forged_heads_are_found() {
    let (store, ledger) = filled(4);
    store
        .commit(vec![put(entry_key(2), b"garbage".to_vec())])
        .unwrap();
    assert_eq!(bad_seq(ledger.check().unwrap()), Some(2));

    let (store, ledger) = filled(4);
    store
        .commit(vec![Op::Delete {
            table: Table::Ledger,
            key: entry_key(3),
        }])
        .unwrap();
    assert_eq!(bad_seq(ledger.check().unwrap()), Some(3));

    // A head whose signature no longer verifies.
    let (store, ledger) = filled(2);
    let mut head = ledger.head().unwrap().unwrap();
    head.signature[10] ^= 1;
    store
        .commit(vec![Op::Put {
            table: FeedKeys::OWN.commit_table(),
            key: HEAD_KEY.to_vec(),
            value: head.to_bytes().to_vec(),
        }])
        .unwrap();
    assert_eq!(bad_seq(ledger.check().unwrap()), Some(2));
}

#[test]
fn rcheck_names_the_changed_seq_through_the_service() {
    let store = MemoryStore::new();
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(5));
    let node = Node::builder(identity(), NodeSettings::insecure_fast("ledger"))
        .store(Arc::new(store.clone()))
        .rng(rng)
        .build()
        .unwrap();
    node.accounts()
        .create("root", UserRole::Admin, b"root-password", T0)
        .unwrap();
    let service = node.service();
    let mut session = Session::new(Some(PEER));
    let mut call = |cmd: &Command| {
        let request = Request {
            id: 1,
            name: cmd.name().into(),
            args: cmd.args(),
        };
        let (response, _) = service.answer(&mut session, &request, T0 * 1000);
        response
            .result
            .map(|fields| Reply::from_fields(cmd, &fields).unwrap())
    };
    call(&Command::Login {
        user: "root".into(),
        credential: Credential::Password(SecretBytes::new(b"root-password".to_vec())),
    })
    .unwrap();
    for i in 0..4 {
        let cmd = Command::Rput {
            kind: "k".into(),
            record_id: format!("r{i}").into_bytes(),
            body: Vec::new(),
        };
        assert!(matches!(call(&cmd), Ok(Reply::Appended { .. })));
    }
    assert_eq!(
        call(&Command::Rcheck {
            range: None,
            origin: None
        }),
        Ok(Reply::ChainOk { seq: 4 })
    );
    tamper_body(&store, 2);
    match call(&Command::Rcheck {
        range: None,
        origin: None,
    }) {
        Ok(Reply::ChainBad {
            seq: Some(2),
            reason,
        }) => assert!(reason.contains('2'), "{reason}"),
        other => panic!("rcheck gave {other:?}"),
    }
}

#[test]
fn a_duplicate_record_id_is_typed_and_not_stored() {
    let (store, ledger) = filled(2);
    let before = store.contents().unwrap();
    match ledger.append("bob", "other", b"r1", b"", 9) {
        Err(FeedError::Duplicate { seq: 1 }) => {}
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(store.contents().unwrap(), before);
}

#[test]
fn a_crashed_append_leaves_nothing_and_the_next_one_continues() {
    let (store, ledger) = filled(3);
    let old_head: SignedHead = ledger.head().unwrap().unwrap();
    let before = store.contents().unwrap();
    store.crash_after_commits(0);
    match ledger.append("alice", "note", b"lost", b"", 10) {
        Err(FeedError::Store(StoreError::Crashed)) => {}
        other => panic!("expected a crash, got {other:?}"),
    }
    store.restart();
    assert_eq!(store.contents().unwrap(), before);
    assert_eq!(store.get(Table::Ledger, &entry_key(4)).unwrap(), None);
    assert_eq!(store.get(Table::Ledger, &id_key(b"lost")).unwrap(), None);
    assert_eq!(
        store.get(Table::LedgerIndex, &id_key(b"lost")).unwrap(),
        None
    );
    assert_eq!(
        store
            .get(Table::LedgerIndex, &FeedKeys::OWN.id_at(4, b"lost"))
            .unwrap(),
        None
    );
    assert_eq!(ledger.head().unwrap(), Some(old_head));
    assert_eq!(ledger.size().unwrap(), 3);
    assert_eq!(ledger.seq_of_id(b"lost").unwrap(), None);

    // A restarted process over the same store continues at the next seq.
    let restarted = self::ledger(&store);
    let Appended { seq, hash } = restarted.append("alice", "note", b"lost", b"", 11).unwrap();
    assert_eq!(seq, 4);
    assert_eq!(restarted.by_hash(&hash).unwrap().unwrap().seq(), 4);
    assert_eq!(
        restarted.by_seq(4).unwrap().unwrap().prev(),
        &old_head.head.hash
    );
    assert_eq!(restarted.check().unwrap(), CheckReport::Ok { seq: 4 });
}

#[test]
fn bad_fields_are_refused_without_writing() {
    let (store, ledger) = filled(1);
    let before = store.contents().unwrap();
    assert!(matches!(
        ledger.append("alice", "Bad Kind", b"x", b"", 1),
        Err(FeedError::Invalid(_))
    ));
    assert!(matches!(
        ledger.append("alice", "k", b"", b"", 1),
        Err(FeedError::Invalid(_))
    ));
    assert!(matches!(
        ledger.append("alice", "k", b"y", &vec![0; 16001], 1),
        Err(FeedError::Invalid(_))
    ));
    assert_eq!(store.contents().unwrap(), before);
}
