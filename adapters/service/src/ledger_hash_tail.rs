//! The own feed's hash index trails its commits.
//!
//! A group commit stores its entries and their record id keys, but not their `h:` hash index
//! keys: it stores one record with all its entries' hashes instead (`hh:` + the seq of its
//! first entry -> their 32-byte hashes in seq order, [`HASH_RUN_PREFIX`], in the index
//! table, whose in-memory table is the smaller), and once it is durable each `(hash, seq)` joins the [`HashTail`], an in-memory
//! map the feed's lookups by hash ask first. When the tail holds [`HASH_TAIL_BULK`] entries,
//! the writing run stores all their `h:` keys, sorted, in one commit that also deletes their
//! `hh:` records, and drops them from the tail.
//!
//! Why: the hash keys are random, so each commit's few hundred of them landed all over the
//! index table's in-memory skiplist, a cache miss per level each, inside the writer's
//! store commit, which bounds the append rate (fjall inserts every batch under its journal
//! lock, so no other thread could take them over). `vserv bench ledger` appended 1.45x
//! faster without them; inserted sorted, tens of thousands at once, consecutive keys walk
//! nearly the same path. One `hh:` record per commit has an ascending key.
//!
//! When the feed is opened again (after a stop or a crash) the tail is rebuilt from the
//! `hh:` records left (at most one bulk and a commit's worth): the hashes as recorded at append time, so the check
//! still names an entry changed on disk since (`ledger_query.rs`). A store without `hh:`
//! records has every `h:` key stored (older builds stored them with each commit).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use vserv_store::kv::{Op, Store};

use crate::ledger_layout::{FeedError, FeedKeys, hash_key};

/// Entries the tail holds before the writing run stores their hash keys.
pub(crate) const HASH_TAIL_BULK: usize = 65_536;

/// Prefix of the own feed's per-commit records of the hashes whose `h:` keys are not stored
/// yet (in [`FeedKeys::index_table`]): `hh:` + the seq (`u64` big-endian) of the commit's
/// first entry -> the 32-byte hashes of its entries, in seq order.
pub const HASH_RUN_PREFIX: &[u8] = b"hh:";

/// `hh:` records read per page when the tail is rebuilt.
const LOAD_PAGE: usize = 256;

/// The own feed's entries whose hash keys are not stored yet (see the module docs). Shared
/// by the ledger's commits and its feed's lookups.
#[derive(Debug)]
pub(crate) struct HashTail {
    state: Mutex<TailState>,
    /// Entries held before their keys are stored.
    bulk: usize,
}

#[derive(Debug, Default)]
struct TailState {
    /// Hash -> seq of durable entries whose `h:` key is not stored.
    pending: HashMap<[u8; 32], u64>,
    /// The first seqs of the `hh:` records of `pending`.
    runs: Vec<u64>,
    /// Why the tail could not be rebuilt at open, if it could not: then commits store their
    /// hash keys themselves, and a lookup that misses says the index is incomplete.
    broken: Option<FeedError>,
}

/// How a commit indexes its entries' hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashIndexing {
    /// One `hh:` record in the commit, and the tail once durable.
    Trailing,
    /// An `h:` key per entry in the commit (the tail could not be rebuilt).
    Inline,
}

/// The key of the `hh:` record whose first entry is `first`.
pub(crate) fn hash_run_key(first: u64) -> Vec<u8> {
    [HASH_RUN_PREFIX, &first.to_be_bytes()].concat()
}

impl HashTail {
    /// The tail of the own feed in `store`, rebuilt from its `hh:` records. A store that
    /// cannot be read, or holds a garbled record, leaves a broken tail (see
    /// [`TailState::broken`]).
    pub(crate) fn open(store: &dyn Store, bulk: usize) -> HashTail {
        let state = load(store).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not rebuild the ledger's hash index tail; commits index hashes inline");
            TailState {
                broken: Some(e),
                ..TailState::default()
            }
        });
        HashTail {
            state: Mutex::new(state),
            bulk: bulk.max(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, TailState> {
        // Every change under this lock is one call that cannot panic half-way.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How the commit being prepared indexes its hashes.
    pub(crate) fn indexing(&self) -> HashIndexing {
        match self.state().broken {
            Some(_) => HashIndexing::Inline,
            None => HashIndexing::Trailing,
        }
    }

    /// The seq of the durable entry with `hash`, if the tail holds it.
    pub(crate) fn seq_of(&self, hash: &[u8; 32]) -> Option<u64> {
        self.state().pending.get(hash).copied()
    }

    /// Why a lookup that missed in the tail and in the store may still name a stored
    /// entry, if it may: the tail could not be rebuilt.
    pub(crate) fn incomplete(&self) -> Option<FeedError> {
        self.state().broken.clone()
    }

    /// The commit whose `hh:` record starts at `first` and holds `hashes` is durable.
    pub(crate) fn committed(&self, first: u64, hashes: &[[u8; 32]]) {
        if hashes.is_empty() {
            return;
        }
        let mut state = self.state();
        state.runs.push(first);
        state
            .pending
            .extend(hashes.iter().zip(first..).map(|(h, seq)| (*h, seq)));
    }

    /// The store ops that index the whole tail (its `h:` keys sorted, its `hh:` records
    /// deleted), once it holds a bulk; `None` before. Call [`HashTail::stored`] once they
    /// are durable, with no commit in between.
    pub(crate) fn due(&self) -> Option<Vec<Op>> {
        let state = self.state();
        if state.broken.is_some() || state.pending.len() < self.bulk {
            return None;
        }
        let mut keys: Vec<(&[u8; 32], &u64)> = state.pending.iter().collect();
        keys.sort_unstable();
        let index = FeedKeys::OWN.index_table();
        let puts = keys.into_iter().map(|(hash, seq)| Op::Put {
            table: index,
            key: hash_key(hash),
            value: seq.to_be_bytes().to_vec(),
        });
        let deletes = state.runs.iter().map(|&first| Op::Delete {
            table: index,
            key: hash_run_key(first),
        });
        Some(puts.chain(deletes).collect())
    }

    /// The ops [`HashTail::due`] gave are durable: the tail is empty.
    pub(crate) fn stored(&self) {
        let mut state = self.state();
        state.pending.clear();
        state.runs.clear();
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().pending.len()
    }
}

/// The tail of the own feed in `store`, from its `hh:` records.
fn load(store: &dyn Store) -> Result<TailState, FeedError> {
    let table = FeedKeys::OWN.index_table();
    let mut state = TailState::default();
    let mut start = HASH_RUN_PREFIX.to_vec();
    loop {
        let rows = store.scan_from(table, HASH_RUN_PREFIX, &start, LOAD_PAGE)?;
        for (key, value) in &rows {
            let garbled =
                || FeedError::Corrupt("a pending hash index record is garbled".to_owned());
            let first = key
                .get(HASH_RUN_PREFIX.len()..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(garbled)?;
            let (hashes, rest) = value.as_chunks::<32>();
            // Seqs start at 1, and the record's last one must be a seq too.
            let fits = u64::try_from(hashes.len())
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|more| first.checked_add(more))
                .is_some();
            if hashes.is_empty() || !rest.is_empty() || first == 0 || !fits {
                return Err(garbled());
            }
            state.runs.push(first);
            state
                .pending
                .extend(hashes.iter().zip(first..).map(|(h, seq)| (*h, seq)));
        }
        match rows.last() {
            Some((last, _)) if rows.len() == LOAD_PAGE => {
                start = [last.as_slice(), &[0]].concat();
            }
            _ => return Ok(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;
    use vserv_core::ServerIdentity;
    use vserv_core::ledger::Entry;
    use vserv_store::kv::Table;
    use vserv_store::memory::MemoryStore;

    use super::*;
    use crate::ledger::{CheckReport, Ledger, NewRecord};
    use crate::ledger_layout::{HASH_PREFIX, entry_key};

    fn identity() -> Arc<ServerIdentity> {
        Arc::new(ServerIdentity::generate(
            &mut rand::rngs::StdRng::seed_from_u64(7),
        ))
    }

    fn open(store: &MemoryStore, bulk: usize) -> Ledger {
        Ledger::with_hash_bulk(Arc::new(store.clone()), identity(), bulk)
    }

    fn append(ledger: &Ledger, i: u64) -> Entry {
        let record = NewRecord {
            author: "alice".to_owned(),
            kind: "note".to_owned(),
            record_id: format!("r{i}").into_bytes(),
            body: b"x".to_vec(),
            timestamp: 1,
        };
        let appended = ledger.append_batch(vec![record]).remove(0).unwrap();
        ledger.by_seq(appended.seq).unwrap().unwrap()
    }

    /// The seqs the store's hash index holds, ascending.
    fn stored_hash_keys(store: &MemoryStore) -> Vec<u64> {
        let mut seqs: Vec<u64> = store
            .scan(Table::LedgerIndex, HASH_PREFIX)
            .unwrap()
            .into_iter()
            .map(|(_, v)| u64::from_be_bytes(v.try_into().unwrap()))
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// The first seqs of the stored `hh:` records.
    fn hash_runs(store: &MemoryStore) -> Vec<u64> {
        store
            .scan(FeedKeys::OWN.index_table(), HASH_RUN_PREFIX)
            .unwrap()
            .into_iter()
            .map(|(k, _)| u64::from_be_bytes(k[HASH_RUN_PREFIX.len()..].try_into().unwrap()))
            .collect()
    }

    fn every_entry_is_found_by_hash(ledger: &Ledger, entries: &[Entry]) {
        for e in entries {
            assert_eq!(ledger.seq_of_hash(&e.hash()).unwrap(), Some(e.seq()));
            assert_eq!(ledger.by_hash(&e.hash()).unwrap().as_ref(), Some(e));
        }
        assert_eq!(ledger.seq_of_hash(&[7; 32]).unwrap(), None);
    }

    /// Rewrites entry `seq` in place with a valid encoding of other content, as a disk
    /// fault or an intruder would.
    fn change_entry(store: &MemoryStore, seq: u64) {
        let bytes = store.get(Table::Ledger, &entry_key(seq)).unwrap().unwrap();
        let mut fields = Entry::decode(&bytes).unwrap().into_fields();
        fields.body = b"changed".to_vec();
        store
            .commit(vec![Op::Put {
                table: Table::Ledger,
                key: entry_key(seq),
                value: Entry::new(fields).unwrap().to_bytes(),
            }])
            .unwrap();
    }

    #[test]
    fn entries_are_found_by_hash_before_and_after_their_keys_are_stored() {
        let store = MemoryStore::new();
        let ledger = open(&store, 4);
        let mut entries = Vec::new();
        for i in 1..=10 {
            entries.push(append(&ledger, i));
            every_entry_is_found_by_hash(&ledger, &entries);
            // The commit that fills the tail stores the keys of all four at once and
            // deletes their per-commit records.
            let stored = i - i % 4;
            assert_eq!(stored_hash_keys(&store), (1..=stored).collect::<Vec<_>>());
            assert_eq!(hash_runs(&store), (stored + 1..=i).collect::<Vec<_>>());
            assert_eq!(ledger.hash_tail.len() as u64, i % 4);
            assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: i });
        }
    }

    #[test]
    fn a_ledger_reopened_after_a_crash_rebuilds_its_tail() {
        let store = MemoryStore::new();
        let first = open(&store, 100);
        let mut entries: Vec<Entry> = (1..=3).map(|i| append(&first, i)).collect();
        // One commit of two: one record of both hashes.
        let both = first.append_batch(vec![
            NewRecord {
                author: "alice".to_owned(),
                kind: "note".to_owned(),
                record_id: b"r4".to_vec(),
                body: b"x".to_vec(),
                timestamp: 1,
            },
            NewRecord {
                author: "alice".to_owned(),
                kind: "note".to_owned(),
                record_id: b"r5".to_vec(),
                body: b"x".to_vec(),
                timestamp: 1,
            },
        ]);
        for appended in both {
            entries.push(first.by_seq(appended.unwrap().seq).unwrap().unwrap());
        }
        assert!(stored_hash_keys(&store).is_empty());
        assert_eq!(hash_runs(&store), [1, 2, 3, 4]);
        // A crash: the process and its tail are gone, nothing more was stored.
        std::mem::forget(first);
        let reopened = open(&store, 7);
        assert_eq!(reopened.hash_tail.len(), 5);
        every_entry_is_found_by_hash(&reopened, &entries);
        assert_eq!(reopened.check().unwrap(), CheckReport::Ok { seq: 5 });
        // Two more fill the tail: all seven keys are stored.
        entries.extend((6..=7).map(|i| append(&reopened, i)));
        assert_eq!(stored_hash_keys(&store), (1..=7).collect::<Vec<_>>());
        assert!(hash_runs(&store).is_empty());
        every_entry_is_found_by_hash(&reopened, &entries);
    }

    #[test]
    fn a_store_with_every_hash_key_stored_opens_with_an_empty_tail() {
        let store = MemoryStore::new();
        let first = open(&store, 1);
        let entries: Vec<Entry> = (1..=3).map(|i| append(&first, i)).collect();
        assert_eq!(stored_hash_keys(&store), [1, 2, 3]);
        std::mem::forget(first);
        let reopened = open(&store, 100);
        assert_eq!(reopened.hash_tail.len(), 0);
        every_entry_is_found_by_hash(&reopened, &entries);
        assert_eq!(reopened.check().unwrap(), CheckReport::Ok { seq: 3 });
    }

    #[test]
    fn an_entry_changed_after_a_crash_is_still_named_by_the_check() {
        let store = MemoryStore::new();
        let first = open(&store, 100);
        for i in 1..=4 {
            append(&first, i);
        }
        std::mem::forget(first);
        change_entry(&store, 2);
        // The tail holds the hashes recorded at append time, not the stored entries'.
        let reopened = open(&store, 100);
        match reopened.check().unwrap() {
            CheckReport::Bad { seq, .. } => assert_eq!(seq, Some(2)),
            ok => panic!("a changed entry passed the check: {ok:?}"),
        }
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// Whatever bytes an `hh:` record's key and value hold, opening reads them back
        /// exactly or refuses them as corrupt, without a panic.
        #[test]
        fn any_pending_record_is_read_back_or_refused(
            suffix in proptest::prop_oneof![
                proptest::collection::vec(proptest::prelude::any::<u8>(), 8),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            ],
            value in proptest::prop_oneof![
                (1usize..4).prop_flat_map(|n| {
                    proptest::collection::vec(proptest::prelude::any::<u8>(), n * 32)
                }),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
            ],
        ) {
            let store = MemoryStore::new();
            store
                .commit(vec![Op::Put {
                    table: FeedKeys::OWN.index_table(),
                    key: [HASH_RUN_PREFIX, &suffix].concat(),
                    value: value.clone(),
                }])
                .unwrap();
            let tail = HashTail::open(&store, 10);
            let first = <[u8; 8]>::try_from(suffix.as_slice()).map(u64::from_be_bytes);
            let n = value.len() as u64 / 32;
            let well_formed = !value.is_empty()
                && value.len() % 32 == 0
                && first.is_ok_and(|f| f >= 1 && f.checked_add(n.saturating_sub(1)).is_some());
            proptest::prop_assert_eq!(tail.incomplete().is_none(), well_formed);
            if let (true, Ok(first)) = (well_formed, first) {
                for hash in value.chunks_exact(32) {
                    let hash: [u8; 32] = hash.try_into().unwrap();
                    // A hash given twice keeps its last seq.
                    let last = value.chunks_exact(32).rposition(|h| h == hash).unwrap();
                    proptest::prop_assert_eq!(tail.seq_of(&hash), Some(first + last as u64));
                }
            }
        }
    }

    #[test]
    fn a_garbled_pending_record_makes_commits_index_their_hashes_themselves() {
        let store = MemoryStore::new();
        store
            .commit(vec![Op::Put {
                table: FeedKeys::OWN.index_table(),
                key: hash_run_key(1),
                value: vec![0; 5],
            }])
            .unwrap();
        let ledger = open(&store, 100);
        let entry = append(&ledger, 1);
        // Stored with the commit, not left to the tail.
        assert_eq!(stored_hash_keys(&store), [1]);
        assert_eq!(ledger.seq_of_hash(&entry.hash()).unwrap(), Some(1));
        // A miss cannot be trusted: it says so.
        assert!(matches!(
            ledger.seq_of_hash(&[7; 32]),
            Err(FeedError::Corrupt(_))
        ));
    }
}
