//! Feeds whose record id and hash indexes sit in the entries' table, as c989e6d and earlier
//! wrote them (`ledger_layout.rs`, "The index table"): a ledger over such a store verifies,
//! answers by id and by hash, refuses their ids again, and appends on top with the new
//! entries' indexes in [`Table::LedgerIndex`]; a new feed writes no index key to
//! [`Table::Ledger`] at all.

mod common;

use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::ServerIdentity;
use vserv_core::ledger::Entry;
use vserv_service::ledger::{
    CheckReport, FeedError, HASH_PREFIX, HASH_RUN_PREFIX, ID_PREFIX, ID_RUN_PREFIX, Ledger,
    NewRecord, entry_key, hash_key, id_key,
};
use vserv_store::kv::{Op, Store, Table};
use vserv_store::memory::MemoryStore;

fn identity() -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(16),
    ))
}

fn record(i: u64) -> NewRecord {
    NewRecord {
        author: "alice".to_owned(),
        kind: if i.is_multiple_of(2) { "even" } else { "odd" }.to_owned(),
        record_id: format!("r{i}").into_bytes(),
        body: format!("v={i}\n").into_bytes(),
        timestamp: i,
    }
}

/// Every key of `table` under `prefix`.
fn keys(store: &MemoryStore, table: Table, prefix: &[u8]) -> Vec<Vec<u8>> {
    store
        .scan(table, prefix)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Moves every index key from the index table to the entries' table: the store as the
/// layout before the index table had it.
fn to_legacy_layout(store: &MemoryStore) {
    common::move_keys(
        store,
        Table::LedgerIndex,
        Table::Ledger,
        &[ID_PREFIX, HASH_PREFIX],
    );
    // Builds of that layout stored each entry's index keys with its commit: the hashes and
    // ids still waiting in `hh:` and `hi:` records become `h:` and `id:` keys there.
    let mut ops = Vec::new();
    let first_of = |key: &[u8]| u64::from_be_bytes(key[3..].try_into().unwrap());
    for (key, hashes) in store.scan(Table::LedgerCommits, HASH_RUN_PREFIX).unwrap() {
        for (seq, hash) in (first_of(&key)..).zip(hashes.chunks_exact(32)) {
            ops.push(Op::Put {
                table: Table::Ledger,
                key: hash_key(hash.try_into().unwrap()),
                value: seq.to_be_bytes().to_vec(),
            });
        }
        ops.push(Op::Delete {
            table: Table::LedgerCommits,
            key,
        });
    }
    for (key, ids) in store.scan(Table::LedgerCommits, ID_RUN_PREFIX).unwrap() {
        let mut rest = ids.as_slice();
        for seq in first_of(&key).. {
            let Some((&len, after)) = rest.split_first() else {
                break;
            };
            let (id, after) = after.split_at(usize::from(len));
            ops.push(Op::Put {
                table: Table::Ledger,
                key: id_key(id),
                value: seq.to_be_bytes().to_vec(),
            });
            rest = after;
        }
        ops.push(Op::Delete {
            table: Table::LedgerCommits,
            key,
        });
    }
    store.commit(ops).unwrap();
}

fn entry(store: &MemoryStore, seq: u64) -> Entry {
    Entry::decode(&store.get(Table::Ledger, &entry_key(seq)).unwrap().unwrap()).unwrap()
}

/// Checks that every entry `1..=n` is found by its id and by its hash.
fn assert_indexed(ledger: &Ledger, store: &MemoryStore, n: u64) {
    for seq in 1..=n {
        let e = entry(store, seq);
        assert_eq!(ledger.seq_of_id(e.record_id()).unwrap(), Some(seq));
        assert_eq!(ledger.seq_of_hash(&e.hash()).unwrap(), Some(seq));
        assert_eq!(ledger.by_id(e.record_id()).unwrap(), Some(e.clone()));
        assert_eq!(ledger.by_hash(&e.hash()).unwrap(), Some(e));
    }
}

#[test]
fn a_new_feed_keeps_its_indexes_in_the_index_table_only() {
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    ledger.append_batch((1..=10).map(record).collect());
    for prefix in [ID_PREFIX, HASH_PREFIX, HASH_RUN_PREFIX, ID_RUN_PREFIX] {
        assert!(keys(&store, Table::Ledger, prefix).is_empty());
    }
    // The index keys trail: for now one record of the commit's ten hashes and one of its
    // ten record ids, in the commit table.
    assert!(keys(&store, Table::LedgerIndex, b"").is_empty());
    assert_eq!(keys(&store, Table::LedgerCommits, HASH_RUN_PREFIX).len(), 1);
    assert_eq!(keys(&store, Table::LedgerCommits, ID_RUN_PREFIX).len(), 1);
    assert_indexed(&ledger, &store, 10);
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 10 });
}

#[test]
fn a_feed_in_the_legacy_layout_verifies_serves_and_appends() {
    let store = MemoryStore::new();
    Ledger::new(Arc::new(store.clone()), identity()).append_batch((1..=6).map(record).collect());
    to_legacy_layout(&store);
    assert!(keys(&store, Table::LedgerIndex, b"").is_empty());

    // A process started over the old layout.
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 6 });
    assert_indexed(&ledger, &store, 6);
    // Old ids are refused again, by a lone append and within a batch.
    assert!(matches!(
        ledger.append("alice", "odd", b"r3", b"v=3\n", 7),
        Err(FeedError::Duplicate { seq: 3 })
    ));
    let results = ledger.append_batch(vec![record(7), record(5), record(8)]);
    assert_eq!(results[0].as_ref().unwrap().seq, 7);
    assert!(matches!(results[1], Err(FeedError::Duplicate { seq: 5 })));
    assert_eq!(results[2].as_ref().unwrap().seq, 8);

    // The new entries' indexes wait as the commit's records (in the commit table, their
    // keys go to the index table); the old ones stay where they were.
    assert_eq!(keys(&store, Table::Ledger, ID_PREFIX).len(), 6);
    assert_eq!(keys(&store, Table::LedgerCommits, HASH_RUN_PREFIX).len(), 1);
    assert_eq!(keys(&store, Table::LedgerCommits, ID_RUN_PREFIX).len(), 1);
    assert_indexed(&ledger, &store, 8);
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 8 });
    assert_eq!(ledger.count("odd", 1, 8).unwrap(), 4);

    // And a process started over the mixed feed sees both, also through its record id
    // filter (built from both tables).
    let again = Ledger::new(Arc::new(store.clone()), identity());
    again
        .id_filter_build()
        .expect("the first build of this ledger")
        .run();
    assert_indexed(&again, &store, 8);
    assert!(matches!(
        again.append("alice", "odd", b"r1", b"v=1\n", 9),
        Err(FeedError::Duplicate { seq: 1 })
    ));
    assert!(matches!(
        again.append("alice", "even", b"r8", b"v=8\n", 9),
        Err(FeedError::Duplicate { seq: 8 })
    ));
    assert_eq!(again.check().unwrap(), CheckReport::Ok { seq: 8 });
}

#[test]
fn a_changed_entry_reindexed_in_the_index_table_is_still_found() {
    // As `a_changed_entry_whose_hash_index_is_forged_too_is_still_found` in `ledger.rs`,
    // with the forger writing the index key where stores of schema 6 kept it (a store that
    // had none when the ledger opened is not read there: the forged key is not seen, and
    // the changed entry is named by its own seq).
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    ledger.append_batch((1..=5).map(record).collect());
    let mut fields = entry(&store, 2).into_fields();
    fields.body = b"v=forged\n".to_vec();
    let forged = Entry::new(fields).unwrap();
    store
        .commit(vec![
            Op::Put {
                table: Table::Ledger,
                key: entry_key(2),
                value: forged.to_bytes(),
            },
            Op::Put {
                table: Table::LedgerIndex,
                key: hash_key(&forged.hash()),
                value: 2u64.to_be_bytes().to_vec(),
            },
        ])
        .unwrap();
    match ledger.check().unwrap() {
        CheckReport::Bad { seq, .. } => assert_eq!(seq, Some(2)),
        ok => panic!("the forged entry passed: {ok:?}"),
    }
}
