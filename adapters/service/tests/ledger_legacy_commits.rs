//! Feeds whose per-commit keys (`head`, `sh:`, `k:`, `kc:`) sit in the entries' table, as
//! builds before the commit table wrote them (`ledger_layout.rs`, "The commit table"): a
//! ledger over such a store answers every query as it did, cuts the same replication
//! segments, and appends on top with the new commits' keys in [`Table::LedgerCommits`]; a
//! new feed writes nothing but its entries to [`Table::Ledger`].

mod common;

use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::ServerIdentity;
use vserv_service::ledger::{
    ENTRY_PREFIX, FeedError, HEAD_KEY, KIND_COUNT_PREFIX, KIND_PREFIX, Ledger, NewRecord,
    SIGNED_HEAD_PREFIX,
};
use vserv_service::replicas::Replicas;
use vserv_store::kv::{Store, Table};
use vserv_store::memory::MemoryStore;

fn identity() -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(17),
    ))
}

fn record(i: u64) -> NewRecord {
    let kind = match i % 3 {
        0 => "third",
        1 => "odd",
        _ => "even",
    };
    NewRecord {
        author: "alice".to_owned(),
        kind: kind.to_owned(),
        record_id: format!("r{i}").into_bytes(),
        body: format!("v={i}\n").into_bytes(),
        timestamp: i,
    }
}

/// Appends `first..=last` as one commit.
fn commit(ledger: &Ledger, first: u64, last: u64) {
    let results = ledger.append_batch((first..=last).map(record).collect());
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// Every key of `table` under `prefix`.
fn count(store: &MemoryStore, table: Table, prefix: &[u8]) -> usize {
    store.scan(table, prefix).unwrap().len()
}

/// The prefixes of the per-commit keys that builds before the commit table kept in the
/// entries' table.
const PER_COMMIT: [&[u8]; 4] = [HEAD_KEY, SIGNED_HEAD_PREFIX, KIND_PREFIX, KIND_COUNT_PREFIX];

/// Moves every per-commit key from the commit table to the entries' table: the store as
/// a build before the commit table left it (the records of the index keys that trail,
/// which the commit table holds too, are another matter: `ledger_legacy_index.rs`).
fn to_legacy_layout(store: &MemoryStore) {
    common::move_keys(store, Table::LedgerCommits, Table::Ledger, &PER_COMMIT);
}

/// Every per-commit key of `table`.
fn per_commit(store: &MemoryStore, table: Table) -> usize {
    PER_COMMIT.iter().map(|p| count(store, table, p)).sum()
}

/// What the feed answers: its head, sizes, check, kind counts and pages over every range,
/// whole listings, and the replication segments it is cut into (one per stored signed head
/// with a 1-byte budget, and with a large one).
fn answers(ledger: &Ledger, replicas: &Replicas) -> Vec<String> {
    let size = ledger.size().unwrap();
    let mut out = vec![
        format!("{:?}", ledger.head().unwrap()),
        format!("{size}"),
        format!("{:?}", ledger.check().unwrap()),
        format!("{:?}", ledger.list(None, 1, size, 1000).unwrap()),
    ];
    for kind in ["odd", "even", "third", "none"] {
        out.push(format!("{kind} {:?}", ledger.size_of_kind(kind)));
        for from in 0..=size + 1 {
            for to in from..=size + 1 {
                out.push(format!(
                    "{kind} {from} {to} {:?}",
                    ledger.count(kind, from, to)
                ));
                out.push(format!(
                    "{kind} {from} {to} {:?}",
                    ledger.list(Some(kind), from, to, 2)
                ));
            }
        }
    }
    let own = replicas.own();
    for budget in [1, 1 << 20] {
        let mut from = 1;
        while let Some(segment) = replicas.read_segment(&own, from, budget).unwrap() {
            out.push(format!("segment {from} {budget} {:?}", segment.head));
            from = segment.head.head.seq + 1;
        }
    }
    out
}

#[test]
fn a_new_feed_writes_only_entries_to_the_entries_table() {
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    commit(&ledger, 1, 5);
    commit(&ledger, 6, 9);
    let all = count(&store, Table::Ledger, b"");
    assert_eq!(all, 9);
    assert_eq!(count(&store, Table::Ledger, ENTRY_PREFIX), all);
    assert_eq!(count(&store, Table::LedgerCommits, HEAD_KEY), 1);
    assert_eq!(count(&store, Table::LedgerCommits, SIGNED_HEAD_PREFIX), 2);
    // Three kinds, each counted once and indexed once per commit.
    assert_eq!(count(&store, Table::LedgerCommits, KIND_COUNT_PREFIX), 3);
    assert_eq!(count(&store, Table::LedgerCommits, KIND_PREFIX), 6);
}

#[test]
fn a_feed_in_the_legacy_layout_answers_alike_and_appends_in_the_commit_table() {
    // The same feed twice: one keeps the current layout throughout, the other is moved to
    // the legacy layout after three commits, as an upgraded store would hold it.
    let (current, legacy) = (MemoryStore::new(), MemoryStore::new());
    for store in [&current, &legacy] {
        let ledger = Ledger::new(Arc::new(store.clone()), identity());
        commit(&ledger, 1, 5);
        commit(&ledger, 6, 6);
        commit(&ledger, 7, 12);
    }
    to_legacy_layout(&legacy);
    assert_eq!(per_commit(&legacy, Table::LedgerCommits), 0);
    let legacy_keys = count(&legacy, Table::Ledger, b"");

    // Processes started over each.
    let open = |store: &MemoryStore| {
        let ledger = Ledger::new(Arc::new(store.clone()), identity());
        let replicas = Replicas::new(Arc::new(store.clone()), identity().public_key());
        (ledger, replicas)
    };
    let (a, a_replicas) = open(&current);
    let (b, b_replicas) = open(&legacy);
    let before = answers(&b, &b_replicas);
    assert_eq!(before, answers(&a, &a_replicas));
    assert_eq!(b.size().unwrap(), 12);

    // Appends on top: old ids are refused, kind counts go on from the legacy ones, and the
    // new commits' keys go to the commit table only.
    assert!(matches!(
        b.append("alice", "odd", b"r4", b"v=4\n", 13),
        Err(FeedError::Duplicate { seq: 4 })
    ));
    for ledger in [&a, &b] {
        commit(ledger, 13, 14);
        commit(ledger, 15, 20);
    }
    assert_eq!(count(&legacy, Table::Ledger, b""), legacy_keys + 8);
    assert_eq!(count(&legacy, Table::Ledger, ENTRY_PREFIX), 20);
    assert_eq!(count(&legacy, Table::LedgerCommits, SIGNED_HEAD_PREFIX), 2);
    assert_eq!(count(&legacy, Table::LedgerCommits, HEAD_KEY), 1);
    // The legacy table's head is the one it was moved with: shadowed, never read.
    assert_ne!(
        legacy.get(Table::Ledger, HEAD_KEY).unwrap(),
        legacy.get(Table::LedgerCommits, HEAD_KEY).unwrap()
    );
    let after = answers(&b, &b_replicas);
    assert_eq!(after, answers(&a, &a_replicas));
    assert_ne!(before, after);
    assert_eq!(b.size().unwrap(), 20);
    assert_eq!(b.size_of_kind("odd").unwrap(), 7);

    // A process started over the mixed feed sees the same.
    let (again, again_replicas) = open(&legacy);
    assert_eq!(answers(&again, &again_replicas), after);
    assert_eq!(again.sign_segment_heads().unwrap(), 0);
}
