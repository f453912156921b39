//! The ledger's record id filter (`ledger_ids.rs`): once built, appending a new id, or
//! looking up an id never stored, reads nothing from the index, and every stored id is still refused with its seq, whether it
//! was stored before the process started, before the build, while it ran or after.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use rand::SeedableRng;
use vserv_core::ServerIdentity;
use vserv_service::ledger::{FeedError, Ledger, NewRecord};
use vserv_store::kv::{Store, Table};
use vserv_store::memory::MemoryStore;

use common::hooked_store::HookedStore;

/// A memory store over `inner` that counts the point reads of the ledger's index table,
/// and the count.
fn counting_store(inner: &MemoryStore) -> (Arc<dyn Store>, Arc<AtomicU64>) {
    let index_gets = Arc::new(AtomicU64::new(0));
    let counted = index_gets.clone();
    let store = HookedStore {
        inner: inner.clone(),
        before_commit: || Ok(()),
        on_get: move |table| {
            if table == Table::LedgerIndex {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        },
    };
    (Arc::new(store), index_gets)
}

fn identity() -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(21),
    ))
}

fn record(i: u64) -> NewRecord {
    NewRecord {
        author: "alice".to_owned(),
        kind: "note".to_owned(),
        record_id: format!("r{i}").into_bytes(),
        body: format!("v={i}\n").into_bytes(),
        timestamp: i,
    }
}

/// Appends records `ids` (each new) and checks they got the next seqs.
fn append_new(ledger: &Ledger, ids: std::ops::Range<u64>) {
    let first = ledger.size().unwrap() + 1;
    let results = ledger.append_batch(ids.clone().map(record).collect());
    for (offset, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().unwrap().seq, first + offset as u64);
    }
}

fn build(ledger: &Ledger) {
    ledger.id_filter_build().expect("the first build").run();
    assert!(
        ledger.id_filter_build().is_none(),
        "the build is handed out once"
    );
    assert!(!ledger.id_filter_build_due());
}

/// Every id `r{i}` for `i` in `ids` is refused as stored at seq `i + 1`.
fn assert_refused(ledger: &Ledger, ids: impl Iterator<Item = u64>) {
    let ids: Vec<u64> = ids.collect();
    let results = ledger.append_batch(ids.iter().map(|&i| record(i)).collect());
    for (i, result) in ids.iter().zip(results) {
        match result {
            Err(FeedError::Duplicate { seq }) => assert_eq!(seq, i + 1, "r{i}"),
            other => panic!("r{i} was not refused: {other:?}"),
        }
    }
}

#[test]
fn after_the_build_new_ids_read_no_index_and_stored_ids_are_still_refused() {
    let memory = MemoryStore::new();
    append_new(&Ledger::new(Arc::new(memory.clone()), identity()), 0..100);

    // A new process: before the build, every new id is looked up in the index.
    let (store, index_gets) = counting_store(&memory);
    let gets = || index_gets.load(Ordering::SeqCst);
    let ledger = Ledger::new(store, identity());
    assert!(ledger.id_filter_build_due());
    append_new(&ledger, 100..110);
    assert!(gets() >= 10);

    build(&ledger);
    let before = gets();
    append_new(&ledger, 110..160);
    // At most a false positive or two of the filter reads the index.
    assert!(
        gets() - before <= 3,
        "{} index reads for 50 new ids",
        gets() - before
    );
    // Stored before the process, before the build and after it.
    assert_refused(&ledger, [0, 50, 99, 100, 105, 110, 159].into_iter());
    assert_eq!(ledger.size().unwrap(), 160);
}

#[test]
fn before_the_build_a_batch_of_new_ids_reads_the_head_once_and_one_span_each() {
    let memory = MemoryStore::new();
    append_new(&Ledger::new(Arc::new(memory.clone()), identity()), 0..100);
    let gets: Arc<[AtomicU64; 2]> = Arc::default();
    let counted = gets.clone();
    let store = HookedStore {
        inner: memory,
        before_commit: || Ok(()),
        on_get: move |table| match table {
            Table::LedgerIndex => _ = counted[0].fetch_add(1, Ordering::SeqCst),
            Table::LedgerCommits => _ = counted[1].fetch_add(1, Ordering::SeqCst),
            _ => {}
        },
    };
    let ledger = Ledger::new(Arc::new(store), identity());
    let read = || gets.each_ref().map(|g| g.load(Ordering::SeqCst));
    let [index_before, commits_before] = read();
    let checked = ledger.append_batch((100..150).map(record).collect());
    assert!(checked.iter().all(Result::is_ok));
    let [index, commits] = read();
    // One index read per id (the one span up to the head's, then the older layout's key,
    // which this store never had: not asked), and the head read once for the batch (the
    // commit reads what it writes over).
    assert_eq!(index - index_before, 50);
    assert!(
        commits - commits_before <= 5,
        "{} commit table reads for a batch of 50",
        commits - commits_before
    );
}

#[test]
fn a_lookup_of_an_id_the_built_filter_rules_out_reads_no_index() {
    let memory = MemoryStore::new();
    let (store, index_gets) = counting_store(&memory);
    let ledger = Ledger::new(store, identity());
    append_new(&ledger, 0..50);
    let absent = |ledger: &Ledger| {
        let before = index_gets.load(Ordering::SeqCst);
        for i in 1000..1100 {
            assert_eq!(ledger.seq_of_id(&record(i).record_id).unwrap(), None);
        }
        index_gets.load(Ordering::SeqCst) - before
    };
    // Before the build, every miss asks the index.
    assert!(absent(&ledger) >= 100);
    build(&ledger);
    // After it, only the filter's false positives (about 1%) do.
    let asked = absent(&ledger);
    assert!(asked <= 10, "{asked} of 100 absent ids asked the index");
    for i in 0..50 {
        assert_eq!(ledger.seq_of_id(&record(i).record_id).unwrap(), Some(i + 1));
    }
}

#[test]
fn ids_appended_while_the_filter_is_built_are_refused() {
    let memory = MemoryStore::new();
    let first = Ledger::new(Arc::new(memory.clone()), identity());
    for start in (0..20_000).step_by(1_000) {
        append_new(&first, start..start + 1_000);
    }
    let ledger = Ledger::new(Arc::new(memory), identity());
    let build = ledger.id_filter_build().expect("the first build");
    std::thread::scope(|s| {
        s.spawn(|| build.run());
        s.spawn(|| {
            for start in (20_000..22_000).step_by(10) {
                append_new(&ledger, start..start + 10);
            }
        });
    });
    assert_refused(&ledger, (0..22_000).step_by(7));
    append_new(&ledger, 22_000..22_010);
}

/// One step of the model below.
#[derive(Debug, Clone)]
enum Step {
    /// Appends these ids (from a small space, so that many are taken).
    Append(Vec<u8>),
    /// Builds the running ledger's filter (if not built yet).
    Build,
    /// Starts a new ledger over the same store.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::collection::vec(0u8..40, 1..8).prop_map(Step::Append),
        1 => Just(Step::Build),
        1 => Just(Step::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whenever the filter is built and however the process restarts, each append gets
    /// exactly what a map of the ids taken says: the next seq, or a duplicate's seq.
    #[test]
    fn appends_match_a_model_of_the_ids_taken(steps in proptest::collection::vec(step(), 1..40)) {
        let memory = MemoryStore::new();
        let mut ledger = Ledger::new(Arc::new(memory.clone()), identity());
        let mut taken: HashMap<Vec<u8>, u64> = HashMap::new();
        let mut size = 0u64;
        for step in steps {
            match step {
                Step::Build => {
                    if let Some(build) = ledger.id_filter_build() {
                        build.run();
                    }
                }
                Step::Restart => ledger = Ledger::new(Arc::new(memory.clone()), identity()),
                Step::Append(ids) => {
                    let records: Vec<NewRecord> = ids
                        .iter()
                        .map(|&i| NewRecord { record_id: vec![b'r', i], ..record(u64::from(i)) })
                        .collect();
                    let results = ledger.append_batch(records);
                    for (i, result) in ids.iter().zip(results) {
                        let id = vec![b'r', *i];
                        match (taken.get(&id), result) {
                            (Some(&seq), Err(FeedError::Duplicate { seq: got })) => {
                                prop_assert_eq!(got, seq);
                            }
                            (None, Ok(appended)) => {
                                size += 1;
                                prop_assert_eq!(appended.seq, size);
                                taken.insert(id, size);
                            }
                            (expected, got) => {
                                prop_assert!(false, "id {i}: model {expected:?}, ledger {got:?}");
                            }
                        }
                    }
                }
            }
        }
    }
}
