//! The own feed's indexes trail its commits.
//!
//! A group commit stores its entries, but neither their `h:` hash index keys nor their
//! `id:` record id keys: it stores one record of its entries' hashes ([`HASH_RUN_PREFIX`]:
//! `hh:` + the seq of its first entry -> their 32-byte hashes in seq order) and one of their
//! record ids ([`ID_RUN_PREFIX`]: `hi:` + the same seq -> each id as one length byte and its
//! bytes, in seq order), both in the commit table. Once the commit is durable each
//! `(hash, seq)` and `(id, seq)` joins the [`IndexTail`], an in-memory map that the feed's
//! lookups by hash and by record id, and the appends' duplicate checks, ask first. When the
//! tail holds [`TAIL_BULK`] entries, the commit that filled it seals them (lookups go on
//! seeing them; later commits join a new part of the tail) and hands the runtime a bulk
//! that stores all their keys, sorted, as one [`Store::commit_bulk`] (the fjall store
//! writes it straight into a new on-disk table of the index table), then deletes their
//! records in a commit, and then drops them from the tail. The writing run goes on with
//! the next commits meanwhile (on the [`Inline`](crate::work::Inline) runner of tools and
//! tests, it runs the bulk itself first). One bulk at a time: one that failed, or was
//! dropped unrun, is retried by the next commit.
//!
//! Why: hashes are random, and so are record ids in real use (UUIDs, content hashes), so
//! each commit's few hundred keys landed all over the index table's in-memory skiplist, a
//! cache miss per level each, inside the writer's store commit, which bounds the append
//! rate (fjall inserts every batch under its journal lock, so no other thread could take
//! them over). `vserv bench ledger` appended 1.45x faster without the hash keys, and a model
//! of the store appended 1.46x faster with random ids stored in bulk than with each commit.
//! Inserted sorted, tens of thousands at once, consecutive keys walk nearly the same path;
//! ingested, they skip the journal and the skiplist altogether: `vserv bench ledger`
//! appended 1.15x faster with 10% less CPU and 20% less RSS than with the bulk committed as
//! a batch. One record per commit and index has an ascending key. The records are in the
//! commit table because an ingestion first flushes the index table's in-memory table,
//! which they would otherwise fill (on a model of the store, 1.18x instead of 1.47x over
//! the batch).
//!
//! A bulk stores the entries up to the last span end (`ledger_layout.rs`) among those the
//! tail holds, when they reach past it, and leaves the rest to the next; the records of a
//! commit with entries on both sides are deleted by the next bulk. Since a commit takes no
//! more records than its span has left (`ledger_commit.rs`), each bulk of a feed in spans
//! of 2^16 entries (one bulk) stores exactly one span, in a table that overlaps no other.
//!
//! A crash between the bulk and the deletes leaves keys and records both stored: the
//! reopened tail holds them again and the next bulk stores the same keys again.
//!
//! When the feed is opened again (after a stop or a crash) the tail is rebuilt from the
//! records left (at most one bulk and a commit's worth): the hashes as recorded at append
//! time, so the check still names an entry changed on disk since (`ledger_query.rs`). A store
//! without `hh:` records has every `h:` key stored, and one without `hi:` records every `id:`
//! key (older builds stored them with each commit; store schema 3 trailed hashes only);
//! stores of schema 3 and 4 keep the records in the index table, where they are read
//! until the next bulk deletes them. A
//! record that cannot be read is rebuilt from its commit's entries when the commit's other
//! record can be (it says how many); otherwise the keys it names are unknown: the ledger
//! then refuses every append (a record id could be appended twice) and lookups that miss
//! say they cannot tell, with the error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::ledger::{Entry, MAX_RECORD_ID};
use vserv_store::kv::{Op, Store, Table};

use crate::ledger_layout::{FeedError, FeedKeys};

/// Entries the tail holds before the writing run stores their index keys.
pub(crate) const TAIL_BULK: usize = 65_536;

/// Prefix of the own feed's per-commit records of the hashes whose `h:` keys are not stored
/// yet (in [`FeedKeys::commit_table`]): `hh:` + the seq (`u64` big-endian) of the commit's
/// first entry -> the 32-byte hashes of its entries, in seq order.
pub const HASH_RUN_PREFIX: &[u8] = b"hh:";

/// Prefix of the own feed's per-commit records of the record ids whose `id:` keys are not
/// stored yet (in [`FeedKeys::commit_table`]): `hi:` + the seq (`u64` big-endian) of the
/// commit's first entry -> for each of its entries in seq order, the record id's length (one
/// byte, 1 to [`MAX_RECORD_ID`]) and its bytes.
pub const ID_RUN_PREFIX: &[u8] = b"hi:";

/// Records read per page when the tail is rebuilt.
const LOAD_PAGE: usize = 256;

/// The own feed's entries whose index keys are not stored yet (see the module docs).
/// Shared by the ledger's commits and its feed's lookups.
#[derive(Debug)]
pub(crate) struct IndexTail {
    state: Mutex<TailState>,
    /// Why the tail could not be rebuilt at open, if it could not: then neither index can
    /// tell that a key is absent, so a lookup that misses returns this error and every
    /// append is refused with it (a record id could be appended twice).
    broken: Option<FeedError>,
    /// Entries held before their keys are stored.
    bulk: usize,
    /// The own feed's keys (a bulk stores whole spans of them when it can).
    keys: FeedKeys,
}

/// The tail: the entries new commits join, and those handed to a bulk being stored, which
/// lookups see until it is durable.
#[derive(Debug, Default)]
struct TailState {
    live: TailPart,
    sealed: Option<Sealed>,
}

/// Entries handed to a bulk ([`IndexTail::take_due`]).
#[derive(Debug)]
struct Sealed {
    part: Arc<TailPart>,
    /// A bulk is storing them (cleared when it failed, so that the next one retries).
    storing: bool,
}

/// Durable entries whose index keys are not stored, and their commits' records.
#[derive(Debug, Default)]
pub(crate) struct TailPart {
    /// Hash -> seq of durable entries whose `h:` key is not stored.
    hashes: HashMap<[u8; 32], u64>,
    /// Record id -> seq of durable entries whose `id:` key is not stored.
    ids: HashMap<Arc<[u8]>, u64>,
    /// The first seqs of the records of `hashes` and `ids`, ascending.
    runs: Vec<u64>,
    /// The first seqs of those of them whose records are in the index table, where a
    /// store of schema 3 or 4 keeps them.
    legacy_runs: Vec<u64>,
}

/// What stores a tail part's keys (see [`TailPart::bulk`]).
#[derive(Debug)]
pub(crate) struct IndexBulk {
    /// The tail's `h:` and `id:` keys, in strictly increasing key order in the index
    /// table: one bulk ([`Store::commit_bulk`]).
    pub(crate) keys: Vec<Op>,
    /// The deletes of their commits' `hh:` and `hi:` records, to commit once `keys` are
    /// durable.
    pub(crate) records: Vec<Op>,
}

/// The index records of one durable commit: its first entry's seq, and its entries' hashes
/// and record ids in seq order.
#[derive(Debug, Default)]
pub(crate) struct IndexRun {
    pub(crate) first: u64,
    pub(crate) hashes: Vec<[u8; 32]>,
    pub(crate) ids: Vec<Arc<[u8]>>,
}

impl IndexRun {
    /// The commit's `hh:` and `hi:` records, as store ops on the own feed's commit table.
    pub(crate) fn records(&self) -> [Op; 2] {
        let table = FeedKeys::OWN.commit_table();
        let mut ids = Vec::with_capacity(self.ids.iter().map(|id| id.len() + 1).sum());
        for id in &self.ids {
            // A record id is 1 to `MAX_RECORD_ID` (64) bytes: its length fits a byte.
            ids.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
            ids.extend_from_slice(id);
        }
        [
            Op::Put {
                table,
                key: run_key(HASH_RUN_PREFIX, self.first),
                value: self.hashes.concat(),
            },
            Op::Put {
                table,
                key: run_key(ID_RUN_PREFIX, self.first),
                value: ids,
            },
        ]
    }
}

/// The key of the record under `prefix` whose first entry is `first`.
pub(crate) fn run_key(prefix: &[u8], first: u64) -> Vec<u8> {
    [prefix, &first.to_be_bytes()].concat()
}

impl IndexTail {
    /// The tail of the own feed in `store`, rebuilt from its `hh:` and `hi:` records (see
    /// [`load`]). A store that cannot be read, or a commit whose records cannot be, leaves
    /// a broken tail (see [`IndexTail::broken`]).
    /// `keys` are the own feed's in `store`, or the error met reading which they are, which
    /// breaks the tail the same way.
    pub(crate) fn open(
        store: &dyn Store,
        bulk: usize,
        keys: Result<FeedKeys, FeedError>,
    ) -> IndexTail {
        let (keys, loaded) = match keys {
            Ok(keys) => (keys, load(store)),
            Err(e) => (FeedKeys::OWN, Err(e)),
        };
        let (live, broken) = match loaded {
            Ok(live) => (live, None),
            Err(e) => {
                tracing::error!(error = %e, "could not rebuild the ledger's index tail; appends are refused");
                (TailPart::default(), Some(e))
            }
        };
        IndexTail {
            state: Mutex::new(TailState { live, sealed: None }),
            broken,
            bulk: bulk.max(1),
            keys,
        }
    }

    fn state(&self) -> MutexGuard<'_, TailState> {
        // Every change under this lock is one call that cannot panic half-way.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The own feed's keys, whose index keys the tail's bulks store.
    pub(crate) fn keys(&self) -> &FeedKeys {
        &self.keys
    }

    /// The seq of the durable entry with `hash`, if the tail holds it.
    pub(crate) fn seq_of_hash(&self, hash: &[u8; 32]) -> Option<u64> {
        self.state()
            .parts()
            .find_map(|part| part.hashes.get(hash).copied())
    }

    /// The seq of the durable entry with `record_id`, if the tail holds it.
    pub(crate) fn seq_of_id(&self, record_id: &[u8]) -> Option<u64> {
        self.state()
            .parts()
            .find_map(|part| part.ids.get(record_id).copied())
    }

    /// The record ids the tail holds.
    pub(crate) fn ids(&self) -> Vec<Arc<[u8]>> {
        let state = self.state();
        state
            .parts()
            .flat_map(|part| part.ids.keys().cloned())
            .collect()
    }

    /// Why a lookup that missed in the tail and in the store may still name a stored
    /// entry, if it may: the tail could not be rebuilt. Appends are refused with it.
    pub(crate) fn incomplete(&self) -> Option<FeedError> {
        self.broken.clone()
    }

    /// The commit of `run` is durable.
    pub(crate) fn committed(&self, run: &IndexRun) {
        let mut state = self.state();
        state.live.add(run.first, &run.hashes, &run.ids);
    }

    /// The entries whose keys a bulk should store now, if any: once the tail holds a bulk
    /// and no bulk is storing, the entries it holds (which lookups go on seeing; new
    /// commits join a tail of their own), or those of a bulk that failed. Call
    /// [`IndexTail::stored`] once their keys and the deletes of their records are durable
    /// ([`TailPart::bulk`]), or [`IndexTail::unstored`] if they failed.
    pub(crate) fn take_due(&self) -> Option<Arc<TailPart>> {
        let mut state = self.state();
        if self.broken.is_some() {
            return None;
        }
        if let Some(sealed) = &mut state.sealed {
            if sealed.storing {
                return None;
            }
            sealed.storing = true;
            return Some(Arc::clone(&sealed.part));
        }
        if state.live.hashes.len().max(state.live.ids.len()) < self.bulk {
            return None;
        }
        let mut part = std::mem::take(&mut state.live);
        if let Some(later) = part.split_at_span_end(self.keys.span_len()) {
            state.live = later;
        }
        let part = Arc::new(part);
        state.sealed = Some(Sealed {
            part: Arc::clone(&part),
            storing: true,
        });
        Some(part)
    }

    /// The keys of the entries [`IndexTail::take_due`] gave are stored and their records
    /// deleted: the tail forgets them.
    pub(crate) fn stored(&self) {
        self.state().sealed = None;
    }

    /// Storing the entries [`IndexTail::take_due`] gave failed: the next call gives them
    /// again.
    pub(crate) fn unstored(&self) {
        if let Some(sealed) = &mut self.state().sealed {
            sealed.storing = false;
        }
    }

    /// Entries held (hashes, record ids).
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        let state = self.state();
        state.parts().fold((0, 0), |(h, i), part| {
            (h + part.hashes.len(), i + part.ids.len())
        })
    }
}

impl TailState {
    /// The live part, then the sealed one if any.
    fn parts(&self) -> impl Iterator<Item = &TailPart> {
        std::iter::once(&self.live).chain(self.sealed.as_ref().map(|s| s.part.as_ref()))
    }
}

impl TailPart {
    /// The store ops that index this part: its hash and record id keys, then the deletes of
    /// its records.
    pub(crate) fn bulk(&self, own: &FeedKeys) -> IndexBulk {
        let table = own.index_table();
        let put = |key: Vec<u8>, seq: u64| Op::Put {
            table,
            key,
            value: seq.to_be_bytes().to_vec(),
        };
        // In key order (strictly increasing, as a bulk the store ingests must be): span by
        // span, a span's hash keys before its record id keys, each sorted.
        let mut hashes: Vec<(u32, &[u8; 32], u64)> = self
            .hashes
            .iter()
            .map(|(h, &seq)| (own.span_at(seq), h, seq))
            .collect();
        hashes.sort_unstable();
        let mut ids: Vec<(u32, &Arc<[u8]>, u64)> = self
            .ids
            .iter()
            .map(|(id, &seq)| (own.span_at(seq), id, seq))
            .collect();
        ids.sort_unstable();
        let mut keys = Vec::with_capacity(hashes.len().saturating_add(ids.len()));
        let (mut hashes, mut ids) = (hashes.into_iter().peekable(), ids.into_iter().peekable());
        while let Some(span) = [hashes.peek().map(|h| h.0), ids.peek().map(|i| i.0)]
            .into_iter()
            .flatten()
            .min()
        {
            while let Some((_, hash, seq)) = hashes.next_if(|h| h.0 == span) {
                keys.push(put(own.hash_at(seq, hash), seq));
            }
            while let Some((_, id, seq)) = ids.next_if(|i| i.0 == span) {
                keys.push(put(own.id_at(seq, id), seq));
            }
        }
        let mut records = Vec::new();
        for (table, runs) in [
            (FeedKeys::OWN.commit_table(), &self.runs),
            (table, &self.legacy_runs),
        ] {
            for prefix in [HASH_RUN_PREFIX, ID_RUN_PREFIX] {
                records.extend(runs.iter().map(|&first| Op::Delete {
                    table,
                    key: run_key(prefix, first),
                }));
            }
        }
        IndexBulk { keys, records }
    }

    /// The part's record ids by the span their keys are stored in.
    pub(crate) fn ids_by_span(&self, own: &FeedKeys) -> BTreeMap<u32, Vec<&[u8]>> {
        by_span(own, &self.ids)
    }

    /// The part's hashes by the span their keys are stored in.
    pub(crate) fn hashes_by_span(&self, own: &FeedKeys) -> BTreeMap<u32, Vec<&[u8]>> {
        by_span(own, &self.hashes)
    }

    /// Splits off the entries after the last multiple of `span` (a span's end) up to which
    /// this part holds any, if it holds entries beyond it too: they are returned, with the
    /// records of every commit holding any of them (one may hold entries of both parts:
    /// its records are deleted only with the later part). So a bulk stores whole spans
    /// when it can, and its on-disk table overlaps no other (`ledger_layout.rs`).
    fn split_at_span_end(&mut self, span: u64) -> Option<TailPart> {
        let seqs = || self.hashes.values().chain(self.ids.values()).copied();
        let (first, last) = (seqs().min()?, seqs().max()?);
        let end = last / span.max(1) * span.max(1);
        if end < first || end >= last {
            return None;
        }
        let later_hashes: HashMap<[u8; 32], u64> =
            self.hashes.extract_if(|_, seq| *seq > end).collect();
        let later_ids: HashMap<Arc<[u8]>, u64> = self.ids.extract_if(|_, seq| *seq > end).collect();
        // The commit holding the later part's first entry starts at or before it.
        let later_first = later_hashes
            .values()
            .chain(later_ids.values())
            .copied()
            .min()
            .unwrap_or(end.saturating_add(1));
        let from = self
            .runs
            .iter()
            .chain(&self.legacy_runs)
            .copied()
            .filter(|&first| first <= later_first)
            .max()
            .unwrap_or(later_first);
        let split = |runs: &mut Vec<u64>| runs.split_off(runs.partition_point(|&f| f < from));
        Some(TailPart {
            hashes: later_hashes,
            ids: later_ids,
            runs: split(&mut self.runs),
            legacy_runs: split(&mut self.legacy_runs),
        })
    }

    /// Adds a commit's hashes and ids (either may be empty: a store of schema 3 has no
    /// `hi:` records) whose first entry is `first`.
    fn add(&mut self, first: u64, hashes: &[[u8; 32]], ids: &[Arc<[u8]>]) {
        if hashes.is_empty() && ids.is_empty() {
            return;
        }
        if self.runs.last().is_none_or(|&last| last < first) {
            self.runs.push(first);
        } else if let Err(at) = self.runs.binary_search(&first) {
            self.runs.insert(at, first);
        }
        self.hashes
            .extend(hashes.iter().zip(first..).map(|(h, seq)| (*h, seq)));
        self.ids
            .extend(ids.iter().zip(first..).map(|(id, seq)| (id.clone(), seq)));
    }
}

/// The keys of `seqs` (key -> seq) by the span of their seq in the feed at `own`.
fn by_span<'a, K: AsRef<[u8]>>(
    own: &FeedKeys,
    seqs: &'a HashMap<K, u64>,
) -> BTreeMap<u32, Vec<&'a [u8]>> {
    let mut spans: BTreeMap<u32, Vec<&[u8]>> = BTreeMap::new();
    for (key, &seq) in seqs {
        spans
            .entry(own.span_at(seq))
            .or_default()
            .push(key.as_ref());
    }
    spans
}

/// A commit's index records as read: absent (`None`), garbled (`Some(None)`), or read.
type Read<T> = Option<Option<Vec<T>>>;

/// A commit's `hh:` and `hi:` records as read.
type CommitRecords = (Read<[u8; 32]>, Read<Arc<[u8]>>);

/// The tail of the own feed in `store`, from its `hh:` and `hi:` records. A commit whose
/// record of one index is garbled while the other's is read gets the garbled one's keys
/// from its entries (the other record says how many), as does one whose record of one
/// index is missing (except a schema 3 store's `hh:` record alone: its ids are stored); a
/// commit with no readable record cannot be rebuilt.
fn load(store: &dyn Store) -> Result<TailPart, FeedError> {
    let mut commits: BTreeMap<u64, CommitRecords> = BTreeMap::new();
    let mut legacy_runs = BTreeSet::new();
    let keys = FeedKeys::OWN;
    for table in [keys.commit_table(), keys.index_table()] {
        let mut seen = |first| {
            if table == keys.index_table() {
                legacy_runs.insert(first);
            }
        };
        for_each_record(store, table, HASH_RUN_PREFIX, |first, value| {
            let (hashes, rest) = value.as_chunks::<32>();
            let read = (rest.is_empty() && check_run(first, hashes.len()).is_ok())
                .then(|| hashes.to_vec());
            commits.entry(first).or_default().0 = Some(read);
            seen(first);
            Ok(())
        })?;
        for_each_record(store, table, ID_RUN_PREFIX, |first, value| {
            let read = decode_ids(value)
                .ok()
                .filter(|ids| check_run(first, ids.len()).is_ok());
            commits.entry(first).or_default().1 = Some(read);
            seen(first);
            Ok(())
        })?;
    }
    let mut state = TailPart {
        legacy_runs: legacy_runs.into_iter().collect(),
        ..TailPart::default()
    };
    for (first, records) in commits {
        let legacy = state.legacy_runs.binary_search(&first).is_ok();
        let (hashes, ids) = match records {
            (Some(Some(hashes)), Some(Some(ids))) if hashes.len() == ids.len() => (hashes, ids),
            // A store of schema 3 stored the ids with each commit (and its `hh:` records in
            // the index table).
            (Some(Some(hashes)), None) if legacy => (hashes, Vec::new()),
            // Otherwise both records go in one batch, and out in another: the other one was
            // lost or garbled.
            (None | Some(None), Some(Some(ids))) => {
                let hashes = from_entries(store, first, ids.len(), Entry::hash)?;
                (hashes, ids)
            }
            (Some(Some(hashes)), None | Some(None)) => {
                let ids = from_entries(store, first, hashes.len(), |e| Arc::from(e.record_id()))?;
                (hashes, ids)
            }
            _ => return Err(garbled()),
        };
        state.add(first, &hashes, &ids);
    }
    Ok(state)
}

/// `key` of each of the `n` stored entries from seq `first` on.
fn from_entries<T>(
    store: &dyn Store,
    first: u64,
    n: usize,
    key: impl Fn(&Entry) -> T,
) -> Result<Vec<T>, FeedError> {
    let keys = FeedKeys::OWN;
    (first..)
        .take(n)
        .map(|seq| {
            let bytes = store
                .get(keys.entry_table(), &keys.entry(seq))?
                .ok_or_else(garbled)?;
            Entry::decode(&bytes)
                .map(|e| key(&e))
                .map_err(|_| garbled())
        })
        .collect()
}

fn garbled() -> FeedError {
    FeedError::Corrupt("a pending index record is garbled".to_owned())
}

/// Refuses a record of `n` entries from `first` that names no entry or a seq past the
/// last (seqs start at 1).
fn check_run(first: u64, n: usize) -> Result<(), FeedError> {
    let fits = u64::try_from(n)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|more| first.checked_add(more))
        .is_some();
    if first == 0 || !fits {
        return Err(garbled());
    }
    Ok(())
}

/// The record ids of an `hi:` record's value.
fn decode_ids(mut value: &[u8]) -> Result<Vec<Arc<[u8]>>, FeedError> {
    let mut ids = Vec::new();
    while let Some((&len, rest)) = value.split_first() {
        let len = usize::from(len);
        if !(1..=MAX_RECORD_ID).contains(&len) {
            return Err(garbled());
        }
        let (id, rest) = rest.split_at_checked(len).ok_or_else(garbled)?;
        ids.push(Arc::from(id));
        value = rest;
    }
    Ok(ids)
}

/// Calls `each` with the first seq and value of every record under `prefix` in `table`, in
/// key order.
fn for_each_record(
    store: &dyn Store,
    table: Table,
    prefix: &[u8],
    mut each: impl FnMut(u64, &[u8]) -> Result<(), FeedError>,
) -> Result<(), FeedError> {
    let mut start = prefix.to_vec();
    loop {
        let rows = store.scan_from(table, prefix, &start, LOAD_PAGE)?;
        for (key, value) in &rows {
            let first = key
                .get(prefix.len()..)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(garbled)?;
            each(first, value)?;
        }
        match rows.last() {
            Some((last, _)) if rows.len() == LOAD_PAGE => {
                start = [last.as_slice(), &[0]].concat();
            }
            _ => return Ok(()),
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
    use crate::ledger_layout::{
        HASH_PREFIX, ID_PREFIX, SPAN_HASH_TAG, SPAN_ID_TAG, SPAN_SEQ_BITS, SPANS_KEY,
        WIDE_SPAN_SEQ_BITS, entry_key, id_key,
    };

    fn identity() -> Arc<ServerIdentity> {
        Arc::new(ServerIdentity::generate(
            &mut rand::rngs::StdRng::seed_from_u64(7),
        ))
    }

    fn open(store: &MemoryStore, bulk: usize) -> Ledger {
        Ledger::with_tail_bulk(Arc::new(store.clone()), identity(), bulk)
    }

    fn record(i: u64) -> NewRecord {
        NewRecord {
            author: "alice".to_owned(),
            kind: "note".to_owned(),
            record_id: format!("r{i}").into_bytes(),
            body: b"x".to_vec(),
            timestamp: 1,
        }
    }

    fn append(ledger: &Ledger, i: u64) -> Entry {
        let appended = ledger.append_batch(vec![record(i)]).remove(0).unwrap();
        ledger.by_seq(appended.seq).unwrap().unwrap()
    }

    /// The seqs the store's index of `tag` ([`SPAN_HASH_TAG`] or [`SPAN_ID_TAG`]) holds,
    /// ascending: its keys in the first span (every test's entries are in it) and under the
    /// older layout's prefix (`h:` or `id:`). A key in its span names an entry of the span.
    fn stored_keys(store: &MemoryStore, tag: u8) -> Vec<u64> {
        let older = if tag == SPAN_HASH_TAG {
            HASH_PREFIX
        } else {
            ID_PREFIX
        };
        let seq = |v: Vec<u8>| u64::from_be_bytes(v.try_into().unwrap());
        let spanned = store
            .scan(Table::LedgerIndex, &FeedKeys::OWN.span(0, tag))
            .unwrap();
        for (key, value) in &spanned {
            let at = seq(value.clone());
            let expected = match tag {
                SPAN_HASH_TAG => FeedKeys::OWN.hash_at(at, key[6..].try_into().unwrap()),
                _ => FeedKeys::OWN.id_at(at, &key[6..]),
            };
            assert_eq!(key, &expected);
        }
        let unspanned = store.scan(Table::LedgerIndex, older).unwrap();
        let mut seqs: Vec<u64> = spanned
            .into_iter()
            .chain(unspanned)
            .map(|(_, v)| seq(v))
            .collect();
        seqs.sort_unstable();
        seqs
    }

    /// The first seqs of the stored records under `prefix` (`hh:` or `hi:`).
    fn runs(store: &MemoryStore, prefix: &[u8]) -> Vec<u64> {
        store
            .scan(FeedKeys::OWN.commit_table(), prefix)
            .unwrap()
            .into_iter()
            .map(|(k, _)| u64::from_be_bytes(k[prefix.len()..].try_into().unwrap()))
            .collect()
    }

    /// Every entry is found by its hash and its record id, and each id is refused again.
    fn every_entry_is_found(ledger: &Ledger, entries: &[Entry]) {
        for e in entries {
            assert_eq!(ledger.seq_of_hash(&e.hash()).unwrap(), Some(e.seq()));
            assert_eq!(ledger.by_hash(&e.hash()).unwrap().as_ref(), Some(e));
            assert_eq!(ledger.seq_of_id(e.record_id()).unwrap(), Some(e.seq()));
            assert_eq!(ledger.by_id(e.record_id()).unwrap().as_ref(), Some(e));
            let again = NewRecord {
                record_id: e.record_id().to_vec(),
                ..record(0)
            };
            assert!(matches!(
                ledger.append_batch(vec![again]).remove(0),
                Err(FeedError::Duplicate { seq }) if seq == e.seq()
            ));
        }
        assert_eq!(ledger.seq_of_hash(&[7; 32]).unwrap(), None);
        assert_eq!(ledger.seq_of_id(b"never").unwrap(), None);
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
    fn a_bulk_across_a_span_boundary_is_in_key_order_each_key_in_its_seqs_span() {
        let mut part = TailPart::default();
        // Seqs 2^16 - 2 ..= 2^16 + 1: three in span 0, one in span 1; hashes and ids that
        // sort against the seqs.
        let first = (1 << SPAN_SEQ_BITS) - 2;
        let hashes: Vec<[u8; 32]> = (0..4u8).map(|i| [200 - 50 * i; 32]).collect();
        let ids: Vec<Arc<[u8]>> = ["d", "c", "b", "a"]
            .into_iter()
            .map(|s| Arc::from(s.as_bytes()))
            .collect();
        part.add(first, &hashes, &ids);
        let puts: Vec<(Vec<u8>, u64)> = part
            .bulk(&FeedKeys::OWN)
            .keys
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => (key, u64::from_be_bytes(value.try_into().unwrap())),
                Op::Delete { .. } => panic!("a delete among the keys"),
            })
            .collect();
        assert_eq!(puts.len(), 8);
        assert!(puts.windows(2).all(|w| w[0].0 < w[1].0));
        for (key, seq) in &puts {
            assert_eq!(key[1..5], FeedKeys::OWN.span_at(*seq).to_be_bytes());
        }
        let seqs: Vec<u64> = puts.iter().map(|(_, seq)| seq - first).collect();
        // Span 0: hashes (ascending: seqs 2, 1, 0), ids ("b", "c", "d"); then span 1.
        assert_eq!(seqs, [2, 1, 0, 2, 1, 0, 3, 3]);
    }

    #[test]
    fn entries_are_found_before_and_after_their_keys_are_stored() {
        let store = MemoryStore::new();
        let ledger = open(&store, 4);
        let mut entries = Vec::new();
        for i in 1..=10 {
            entries.push(append(&ledger, i));
            every_entry_is_found(&ledger, &entries);
            // The commit that fills the tail stores the keys of all four at once and
            // deletes their per-commit records.
            let stored = i - i % 4;
            let held = usize::try_from(i % 4).unwrap();
            for (keys, records) in [
                (SPAN_HASH_TAG, HASH_RUN_PREFIX),
                (SPAN_ID_TAG, ID_RUN_PREFIX),
            ] {
                assert_eq!(stored_keys(&store, keys), (1..=stored).collect::<Vec<_>>());
                assert_eq!(runs(&store, records), (stored + 1..=i).collect::<Vec<_>>());
            }
            assert_eq!(ledger.index_tail.len(), (held, held));
            assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: i });
        }
    }

    #[test]
    fn bulks_ingested_on_disk_serve_lookups_also_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = Vec::new();
        for (round, seqs) in [(0, 1..=10), (1, 11..=14)] {
            let store = Arc::new(vserv_store::FjallStore::open(dir.path()).unwrap());
            let ledger = Ledger::with_tail_bulk(store.clone(), identity(), 4);
            if round == 1 {
                // The tail rebuilt from the records of 9 and 10 (8 filled the last bulk).
                assert_eq!(ledger.index_tail.len(), (2, 2));
                every_entry_is_found(&ledger, &entries);
            }
            for i in seqs {
                entries.push(append(&ledger, i));
                every_entry_is_found(&ledger, &entries);
            }
            let indexed = |tag| {
                store
                    .scan(Table::LedgerIndex, &FeedKeys::OWN.span(0, tag))
                    .unwrap()
                    .len()
            };
            assert_eq!(indexed(SPAN_HASH_TAG), [8, 12][round]);
            assert_eq!(indexed(SPAN_ID_TAG), [8, 12][round]);
            let records = store.scan(Table::LedgerCommits, HASH_RUN_PREFIX).unwrap();
            assert_eq!(records.len(), 2);
            assert_eq!(
                ledger.check().unwrap(),
                CheckReport::Ok {
                    seq: [10, 14][round]
                }
            );
        }
    }

    /// A runner that keeps the work handed to it, to run (or drop) later.
    #[derive(Default)]
    struct Deferred(Mutex<Vec<crate::work::Work>>);

    impl crate::work::Runner for Deferred {
        fn run(&self, work: crate::work::Work) {
            self.0.lock().unwrap().push(work);
        }
    }

    impl Deferred {
        fn take(&self) -> Vec<crate::work::Work> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    #[test]
    fn a_bulk_stored_beside_the_commits_keeps_every_entry_found() {
        let store = MemoryStore::new();
        let ledger = open(&store, 4);
        let runner = Arc::new(Deferred::default());
        ledger.run_bulks_on(runner.clone());
        let mut entries: Vec<Entry> = (1..=4).map(|i| append(&ledger, i)).collect();
        // The fourth commit filled the tail and handed its bulk over; nothing is stored.
        let mut bulks = runner.take();
        assert_eq!(bulks.len(), 1);
        assert!(stored_keys(&store, SPAN_HASH_TAG).is_empty());
        // Commits go on into a tail of their own, and hand over no bulk while one is out.
        for i in 5..=9 {
            entries.push(append(&ledger, i));
            every_entry_is_found(&ledger, &entries);
        }
        assert!(runner.take().is_empty());
        assert_eq!(ledger.index_tail.len(), (9, 9));
        bulks.remove(0).run();
        for tag in [SPAN_HASH_TAG, SPAN_ID_TAG] {
            assert_eq!(stored_keys(&store, tag), [1, 2, 3, 4]);
        }
        assert_eq!(runs(&store, HASH_RUN_PREFIX), [5, 6, 7, 8, 9]);
        assert_eq!(ledger.index_tail.len(), (5, 5));
        // A bulk dropped unrun (a runtime that stops) leaves its entries to the next one,
        // which any commit run hands over (here that of an append the check refuses).
        entries.push(append(&ledger, 10));
        drop(runner.take());
        assert_eq!(ledger.index_tail.len(), (6, 6));
        every_entry_is_found(&ledger, &entries);
        for bulk in runner.take() {
            bulk.run();
        }
        entries.push(append(&ledger, 11));
        for tag in [SPAN_HASH_TAG, SPAN_ID_TAG] {
            assert_eq!(stored_keys(&store, tag), (1..=10).collect::<Vec<_>>());
        }
        assert_eq!(runs(&store, HASH_RUN_PREFIX), [11]);
        assert_eq!(ledger.index_tail.len(), (1, 1));
        every_entry_is_found(&ledger, &entries);
        assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 11 });
    }

    /// The seqs of a tail part's hashes and of its ids, each sorted.
    fn seqs_of(part: &TailPart) -> (Vec<u64>, Vec<u64>) {
        let mut hashes: Vec<u64> = part.hashes.values().copied().collect();
        let mut ids: Vec<u64> = part.ids.values().copied().collect();
        hashes.sort_unstable();
        ids.sort_unstable();
        (hashes, ids)
    }

    /// Tells `tail` of a durable commit of `n` entries from `first` (distinct hashes and
    /// ids per seq).
    fn commit_run(tail: &IndexTail, first: u64, n: u64) {
        tail.committed(&IndexRun {
            first,
            hashes: (first..first + n)
                .map(|s| [u8::try_from(s).unwrap(); 32])
                .collect(),
            ids: (first..first + n)
                .map(|s| Arc::from(format!("r{s}").as_bytes()))
                .collect(),
        });
    }

    /// The own feed's span size the store records, if any.
    fn recorded_span_bits(store: &MemoryStore) -> Option<Vec<u8>> {
        store.get(Table::LedgerCommits, SPANS_KEY).unwrap()
    }

    #[test]
    fn the_first_commit_records_the_span_size_and_a_reopened_ledger_reads_it() {
        let store = MemoryStore::new();
        let ledger = open(&store, 2);
        assert_eq!(recorded_span_bits(&store), None);
        let entries = vec![append(&ledger, 1), append(&ledger, 2), append(&ledger, 3)];
        assert_eq!(recorded_span_bits(&store), Some(vec![16]));
        drop(ledger);
        let ledger = open(&store, 2);
        assert_eq!(ledger.feed().keys().span_bits(), SPAN_SEQ_BITS);
        every_entry_is_found(&ledger, &entries);
        // A garbled record breaks the tail: no append, and a lookup that misses says so.
        store
            .commit(vec![Op::Put {
                table: Table::LedgerCommits,
                key: SPANS_KEY.to_vec(),
                value: vec![17],
            }])
            .unwrap();
        let ledger = open(&store, 2);
        let refused = ledger.append_batch(vec![record(4)]).remove(0);
        assert!(matches!(refused, Err(FeedError::Corrupt(_))), "{refused:?}");
        assert!(matches!(
            ledger.seq_of_id(b"r9"),
            Err(FeedError::Corrupt(_))
        ));
    }

    #[test]
    fn a_feed_an_older_build_grew_past_one_span_keeps_its_wide_spans() {
        // A store of schema 7 whose head is at 2^16 + 5 (its index keys in spans of 2^20),
        // with no span size recorded.
        let store = MemoryStore::new();
        let last = (1 << SPAN_SEQ_BITS) + 5;
        let head = vserv_core::ledger::Head {
            origin: identity().public_key(),
            seq: last,
            hash: [3; 32],
        };
        store
            .commit(vec![Op::Put {
                table: Table::LedgerCommits,
                key: FeedKeys::OWN.head(),
                value: vserv_core::ledger::SignedHead::sign(&identity(), head)
                    .to_bytes()
                    .to_vec(),
            }])
            .unwrap();
        let ledger = open(&store, 1);
        assert_eq!(ledger.feed().keys().span_bits(), WIDE_SPAN_SEQ_BITS);
        let entry = append(&ledger, 1);
        assert_eq!(entry.seq(), last + 1);
        assert_eq!(recorded_span_bits(&store), Some(vec![20]));
        // Its keys went to span 0 of 2^20 entries, where a reopened ledger looks.
        let wide = FeedKeys::OWN.with_span_bits(WIDE_SPAN_SEQ_BITS);
        assert!(
            store
                .get(Table::LedgerIndex, &wide.id_at(last + 1, b"r1"))
                .unwrap()
                .is_some()
        );
        let ledger = open(&store, 1);
        assert_eq!(ledger.seq_of_id(b"r1").unwrap(), Some(last + 1));
        assert_eq!(ledger.seq_of_hash(&entry.hash()).unwrap(), Some(last + 1));
    }

    #[test]
    fn a_bulk_stores_whole_spans_and_leaves_a_commit_across_the_spans_end_to_the_next() {
        // Spans of 4 entries, a bulk due at 6: commits 1-3, 4-5, 6-9 (across the end of
        // span 1, at 8) and 10.
        let keys = FeedKeys::OWN.with_span_bits(2);
        let tail = IndexTail::open(&MemoryStore::new(), 6, Ok(keys));
        for (first, n) in [(1, 3), (4, 2), (6, 4)] {
            commit_run(&tail, first, n);
        }
        let part = tail.take_due().expect("a bulk is due");
        // Spans 0 and 1 whole; the records of the commits wholly in them.
        assert_eq!(seqs_of(&part), ((1..=8).collect(), (1..=8).collect()));
        assert_eq!(part.runs, [1, 4]);
        assert_eq!(part.bulk(&keys).records.len(), 2 * 2);
        // Seq 9 stays in the tail with its commit's records, which the next bulk deletes.
        commit_run(&tail, 10, 1);
        tail.stored();
        assert_eq!(tail.len(), (2, 2));
        assert_eq!(tail.seq_of_id(b"r9"), Some(9));
        assert_eq!(tail.seq_of_hash(&[6; 32]), None);
        {
            let state = tail.state();
            assert_eq!(state.live.runs, [6, 10]);
        }
        for first in 11..=15 {
            commit_run(&tail, first, 1);
        }
        // 9 ..= 15 held: spans 2 and 3 up to 12, and 13-15 stay.
        let part = tail.take_due().expect("a bulk is due");
        assert_eq!(seqs_of(&part).0, (9..=12).collect::<Vec<_>>());
        assert_eq!(part.runs, [6, 10, 11, 12]);
        assert_eq!(tail.len(), (7, 7));
    }

    #[test]
    fn a_part_within_one_span_or_ending_at_its_end_is_stored_whole() {
        // Spans of 2^16: a test's small bulk holds part of one span.
        let tail = IndexTail::open(&MemoryStore::new(), 3, Ok(FeedKeys::OWN));
        commit_run(&tail, 5, 3);
        assert_eq!(seqs_of(&tail.take_due().expect("due")).0, [5, 6, 7]);
        tail.stored();
        // Spans of 4: entries 9-12 end at the span's end.
        let tail = IndexTail::open(&MemoryStore::new(), 3, Ok(FeedKeys::OWN.with_span_bits(2)));
        commit_run(&tail, 9, 4);
        assert_eq!(seqs_of(&tail.take_due().expect("due")).0, [9, 10, 11, 12]);
        assert_eq!(tail.len(), (4, 4));
    }

    #[test]
    fn the_bulk_is_handed_to_the_store_in_key_order() {
        let tail = IndexTail::open(&MemoryStore::new(), 6, Ok(FeedKeys::OWN));
        for (first, ids) in [
            (1, ["zz", "a", "m"].as_slice()),
            (4, &["b"]),
            (5, &["y", "c"]),
        ] {
            let ids: Vec<Arc<[u8]>> = ids.iter().map(|id| Arc::from(id.as_bytes())).collect();
            let hashes = (first..)
                .take(ids.len())
                .map(|s| [u8::try_from(99 - s).unwrap(); 32]);
            tail.committed(&IndexRun {
                first,
                hashes: hashes.collect(),
                ids,
            });
        }
        let bulk = tail.take_due().expect("a bulk is due").bulk(&FeedKeys::OWN);
        // 6 hash and 6 id puts, strictly increasing in one table (a bulk the store can
        // ingest); then the hh: and hi: records of 3 commits deleted.
        assert_eq!(bulk.keys.len(), 6 + 6);
        assert!(vserv_store::kv::sorted_in_one_table(&bulk.keys));
        assert_eq!(bulk.records.len(), 2 * 3);
    }

    #[test]
    fn a_ledger_reopened_after_a_crash_rebuilds_its_tail() {
        let store = MemoryStore::new();
        let first = open(&store, 100);
        let mut entries: Vec<Entry> = (1..=3).map(|i| append(&first, i)).collect();
        // One commit of two: one record of both hashes, one of both ids.
        for appended in first.append_batch(vec![record(4), record(5)]) {
            entries.push(first.by_seq(appended.unwrap().seq).unwrap().unwrap());
        }
        assert!(stored_keys(&store, SPAN_HASH_TAG).is_empty());
        assert!(stored_keys(&store, SPAN_ID_TAG).is_empty());
        assert_eq!(runs(&store, HASH_RUN_PREFIX), [1, 2, 3, 4]);
        assert_eq!(runs(&store, ID_RUN_PREFIX), [1, 2, 3, 4]);
        // A crash: the process and its tail are gone, nothing more was stored.
        std::mem::forget(first);
        let reopened = open(&store, 7);
        assert_eq!(reopened.index_tail.len(), (5, 5));
        every_entry_is_found(&reopened, &entries);
        assert_eq!(reopened.check().unwrap(), CheckReport::Ok { seq: 5 });
        // The record id filter, built now, holds the ids only the tail has.
        reopened.id_filter_build().expect("first build").run();
        every_entry_is_found(&reopened, &entries);
        // Two more fill the tail: all seven keys of each index are stored.
        entries.extend((6..=7).map(|i| append(&reopened, i)));
        assert_eq!(
            stored_keys(&store, SPAN_HASH_TAG),
            (1..=7).collect::<Vec<_>>()
        );
        assert_eq!(
            stored_keys(&store, SPAN_ID_TAG),
            (1..=7).collect::<Vec<_>>()
        );
        assert!(runs(&store, HASH_RUN_PREFIX).is_empty());
        assert!(runs(&store, ID_RUN_PREFIX).is_empty());
        every_entry_is_found(&reopened, &entries);
    }

    #[test]
    fn a_store_with_every_key_stored_opens_with_an_empty_tail() {
        let store = MemoryStore::new();
        let first = open(&store, 1);
        let entries: Vec<Entry> = (1..=3).map(|i| append(&first, i)).collect();
        assert_eq!(stored_keys(&store, SPAN_HASH_TAG), [1, 2, 3]);
        assert_eq!(stored_keys(&store, SPAN_ID_TAG), [1, 2, 3]);
        std::mem::forget(first);
        let reopened = open(&store, 100);
        assert_eq!(reopened.index_tail.len(), (0, 0));
        every_entry_is_found(&reopened, &entries);
        assert_eq!(reopened.check().unwrap(), CheckReport::Ok { seq: 3 });
    }

    /// A store of schema 4 and its entries: three entries appended by a ledger that stops
    /// without storing their index keys, their `hh:` and `hi:` records in the index table
    /// (where stores of schema 3 and 4 keep them).
    fn a_schema_4_store() -> (MemoryStore, Vec<Entry>) {
        let store = MemoryStore::new();
        let first = open(&store, 100);
        let entries: Vec<Entry> = (1..=3).map(|i| append(&first, i)).collect();
        std::mem::forget(first);
        let mut ops = Vec::new();
        for prefix in [HASH_RUN_PREFIX, ID_RUN_PREFIX] {
            for (key, value) in store.scan(FeedKeys::OWN.commit_table(), prefix).unwrap() {
                ops.push(Op::Put {
                    table: FeedKeys::OWN.index_table(),
                    key: key.clone(),
                    value,
                });
                ops.push(Op::Delete {
                    table: FeedKeys::OWN.commit_table(),
                    key,
                });
            }
        }
        store.commit(ops).unwrap();
        (store, entries)
    }

    #[test]
    fn a_store_with_its_records_in_the_index_table_opens_and_goes_on() {
        // Store schema 4.
        let (store, mut entries) = a_schema_4_store();
        let reopened = open(&store, 5);
        assert_eq!(reopened.index_tail.len(), (3, 3));
        every_entry_is_found(&reopened, &entries);
        // A new commit's records go to the commit table; the bulk deletes both tables'.
        entries.push(append(&reopened, 4));
        assert_eq!(runs(&store, HASH_RUN_PREFIX), [4]);
        entries.push(append(&reopened, 5));
        for prefix in [HASH_RUN_PREFIX, ID_RUN_PREFIX] {
            assert_eq!(runs(&store, prefix), Vec::<u64>::new());
            assert!(
                store
                    .scan(FeedKeys::OWN.index_table(), prefix)
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(
            stored_keys(&store, SPAN_HASH_TAG),
            (1..=5).collect::<Vec<_>>()
        );
        assert_eq!(
            stored_keys(&store, SPAN_ID_TAG),
            (1..=5).collect::<Vec<_>>()
        );
        assert_eq!(reopened.index_tail.len(), (0, 0));
        every_entry_is_found(&reopened, &entries);
        assert_eq!(reopened.check().unwrap(), CheckReport::Ok { seq: 5 });
    }

    #[test]
    fn a_store_that_trailed_only_hashes_opens_and_goes_on() {
        // Store schema 3: commits stored their `id:` keys and an `hh:` record, no `hi:`.
        let (store, mut entries) = a_schema_4_store();
        let mut ops = Vec::new();
        for (key, value) in store.scan(Table::LedgerIndex, ID_RUN_PREFIX).unwrap() {
            let first = u64::from_be_bytes(key[ID_RUN_PREFIX.len()..].try_into().unwrap());
            for (id, seq) in decode_ids(&value).unwrap().into_iter().zip(first..) {
                ops.push(Op::Put {
                    table: Table::LedgerIndex,
                    key: id_key(&id),
                    value: seq.to_be_bytes().to_vec(),
                });
            }
            ops.push(Op::Delete {
                table: Table::LedgerIndex,
                key,
            });
        }
        store.commit(ops).unwrap();
        let reopened = open(&store, 5);
        assert_eq!(reopened.index_tail.len(), (3, 0));
        every_entry_is_found(&reopened, &entries);
        entries.extend((4..=5).map(|i| append(&reopened, i)));
        assert_eq!(
            stored_keys(&store, SPAN_HASH_TAG),
            (1..=5).collect::<Vec<_>>()
        );
        assert_eq!(
            stored_keys(&store, SPAN_ID_TAG),
            (1..=5).collect::<Vec<_>>()
        );
        every_entry_is_found(&reopened, &entries);
        assert_eq!(reopened.check().unwrap(), CheckReport::Ok { seq: 5 });
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

    /// A record to store: table, prefix, the suffix after it, value.
    type RawRecord<'a> = (Table, &'a [u8], &'a [u8], &'a [u8]);

    /// Stores each record and opens a tail over them.
    fn tail_over(records: &[RawRecord<'_>]) -> IndexTail {
        let store = MemoryStore::new();
        let ops = records
            .iter()
            .map(|&(table, prefix, suffix, value)| Op::Put {
                table,
                key: [prefix, suffix].concat(),
                value: value.to_vec(),
            });
        store.commit(ops.collect()).unwrap();
        IndexTail::open(&store, 10, Ok(FeedKeys::OWN))
    }

    /// Whether a record of `n` entries from the seq in `suffix` names only seqs.
    fn names_seqs(suffix: &[u8], n: usize) -> Option<u64> {
        let first = u64::from_be_bytes(<[u8; 8]>::try_from(suffix).ok()?);
        let last = first.checked_add(u64::try_from(n).ok()?.checked_sub(1)?)?;
        (first >= 1 && last >= first).then_some(first)
    }

    fn any_suffix() -> impl Strategy<Value = Vec<u8>> {
        proptest::prop_oneof![
            proptest::collection::vec(proptest::prelude::any::<u8>(), 8),
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
        ]
    }

    proptest::proptest! {
        /// Whatever bytes an `hh:` record's key and value hold, opening reads them back
        /// exactly or refuses them as corrupt, without a panic.
        #[test]
        fn any_hash_record_is_read_back_or_refused(
            suffix in any_suffix(),
            value in proptest::prop_oneof![
                (1usize..4).prop_flat_map(|n| {
                    proptest::collection::vec(proptest::prelude::any::<u8>(), n * 32)
                }),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
            ],
        ) {
            // Alone, as a store of schema 3 kept it (in the index table, its ids stored).
            let tail = tail_over(&[(Table::LedgerIndex, HASH_RUN_PREFIX, &suffix, &value)]);
            let first = names_seqs(&suffix, value.len() / 32)
                .filter(|_| value.len() % 32 == 0);
            proptest::prop_assert_eq!(tail.incomplete().is_none(), first.is_some());
            if let Some(first) = first {
                for hash in value.chunks_exact(32) {
                    let hash: [u8; 32] = hash.try_into().unwrap();
                    // A hash given twice keeps its last seq.
                    let last = value.chunks_exact(32).rposition(|h| h == hash).unwrap();
                    proptest::prop_assert_eq!(tail.seq_of_hash(&hash), Some(first + last as u64));
                }
            }
        }

        /// Whatever bytes an `hi:` record's key and value hold (beside an `hh:` record),
        /// opening reads its ids back exactly or refuses it as corrupt, without a panic.
        #[test]
        fn any_id_record_is_read_back_or_refused(
            suffix in any_suffix(),
            ids in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 1..=MAX_RECORD_ID),
                0..4,
            ),
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            garble in proptest::prelude::any::<bool>(),
        ) {
            let value: Vec<u8> = if garble {
                garbage
            } else {
                ids.iter()
                    .flat_map(|id| std::iter::once(id.len() as u8).chain(id.iter().copied()))
                    .collect()
            };
            let decoded = decode_ids(&value).ok();
            // Its partner: as many hashes as it decodes to (the store holds no entries to
            // rebuild either record from).
            let hashes = vec![0; 32 * decoded.as_ref().map_or(ids.len(), Vec::len)];
            let table = Table::LedgerCommits;
            let tail = tail_over(&[
                (table, HASH_RUN_PREFIX, &suffix, &hashes),
                (table, ID_RUN_PREFIX, &suffix, &value),
            ]);
            let first = decoded
                .as_ref()
                .and_then(|ids| names_seqs(&suffix, ids.len()));
            proptest::prop_assert_eq!(tail.incomplete().is_none(), first.is_some());
            if !garble {
                proptest::prop_assert_eq!(decoded.map(|d| d.len()), Some(ids.len()));
            }
            if let (Some(first), Some(decoded)) = (first, decode_ids(&value).ok()) {
                for id in &decoded {
                    let last = decoded.iter().rposition(|i| i == id).unwrap();
                    proptest::prop_assert_eq!(tail.seq_of_id(id), Some(first + last as u64));
                }
            }
        }
    }

    #[test]
    fn a_garbled_or_lost_record_beside_a_readable_one_is_rebuilt_from_the_entries() {
        let table = FeedKeys::OWN.commit_table();
        for prefix in [HASH_RUN_PREFIX, ID_RUN_PREFIX] {
            let garbled = Op::Put {
                table,
                key: run_key(prefix, 2),
                value: vec![0; 5],
            };
            let lost = Op::Delete {
                table,
                key: run_key(prefix, 2),
            };
            for damage in [garbled, lost] {
                let store = MemoryStore::new();
                let first = open(&store, 100);
                let mut entries: Vec<Entry> = (1..=3).map(|i| append(&first, i)).collect();
                std::mem::forget(first);
                store.commit(vec![damage]).unwrap();
                let reopened = open(&store, 100);
                assert!(reopened.index_tail.incomplete().is_none());
                assert_eq!(reopened.index_tail.len(), (3, 3));
                every_entry_is_found(&reopened, &entries);
                entries.push(append(&reopened, 4));
                every_entry_is_found(&reopened, &entries);
                assert_eq!(reopened.check().unwrap(), CheckReport::Ok { seq: 4 });
            }
        }
    }

    #[test]
    fn a_commit_with_no_readable_record_refuses_appends_and_unsure_lookups() {
        // Only the garbled record names commit 2 (as if its partner were lost too).
        for (prefix, value) in [(HASH_RUN_PREFIX, vec![0; 5]), (ID_RUN_PREFIX, vec![0; 3])] {
            let store = MemoryStore::new();
            let first = open(&store, 100);
            let entry = append(&first, 1);
            std::mem::forget(first);
            store
                .commit(vec![Op::Put {
                    table: FeedKeys::OWN.commit_table(),
                    key: run_key(prefix, 2),
                    value,
                }])
                .unwrap();
            let ledger = open(&store, 100);
            // The ids of the garbled record are unknown: a new one might repeat one.
            assert!(matches!(
                ledger.append_batch(vec![record(2)]).remove(0),
                Err(FeedError::Corrupt(_))
            ));
            assert_eq!(ledger.size().unwrap(), 1);
            // Entries are read by seq as ever; a lookup the store's keys do not answer
            // cannot be trusted (the tail's entries are not indexed) and says so.
            assert_eq!(ledger.by_seq(1).unwrap(), Some(entry.clone()));
            for missed in [
                ledger.seq_of_hash(&entry.hash()),
                ledger.seq_of_hash(&[7; 32]),
                ledger.seq_of_id(b"r1"),
                ledger.seq_of_id(b"never"),
            ] {
                assert!(matches!(missed, Err(FeedError::Corrupt(_))), "{missed:?}");
            }
            assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 1 });
        }
    }
}
