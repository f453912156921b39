//! [`Replicas`]: the feeds of other servers this server holds, beside its own, in
//! [`Table::Replicas`] and their entries in [`Table::ReplicaEntries`] (layout in `layout.rs`
//! and `ledger_layout.rs`), and what replication
//! needs of storage: the clock of every held feed, the hash held at a seq, segments read at
//! stored signed heads (`read.rs`), atomic appends of accepted segments, fork quarantine, and
//! the store epoch (`epoch.rs`).
//!
//! Every held feed, the own one included, is read through a [`Feed`] ([`Replicas::feed`],
//! [`Replicas::feed_of`]), so every ledger query works on a replica as on the own feed.
//!
//! Only [`Replicas::persist`] writes a replica, and only under this value's lock: use one
//! `Replicas` per store (the node's). The own feed is written only by the ledger's commits.

mod epoch;
pub mod layout;
mod migrate;
mod read;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use vserv_core::ledger::{ChainVerifier, Entry, Head, LedgerError, SignedHead};
use vserv_core::replication::Segment as CheckedSegment;
use vserv_core::wire::POINT_LEN;
use vserv_core::{Fingerprint, ServerKey};
use vserv_store::kv::{Op, Store, StoreError, Table};

pub use epoch::{ensure_epoch, epoch};
pub use read::Segment;

use crate::ledger::{Feed, FeedError, FeedKeys, MAX_SEGMENT_ENTRIES};
use crate::ledger_layout::{
    FeedNumber, add_to_kind_runs, commit_value, kind_runs_value, own_feed_keys, seq_value,
    stored_head,
};
use layout::{
    FEED_COUNT_KEY, FORK_PREFIX, ORIGIN_INDEX_PREFIX, fingerprint_key, fork_key, origin_index_key,
};

/// Why a replica operation failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// Only the server's own commits (`rput`) append to its own feed.
    #[error("the server's own feed is not replicated into: only rput appends to it")]
    OwnOrigin,
    /// A fork proof is held for the origin: nothing more is accepted from it.
    #[error("origin {0} is quarantined (a fork proof is held): nothing more is accepted from it")]
    Quarantined(Fingerprint),
    /// A segment without entries.
    #[error("a segment must hold at least one entry")]
    EmptySegment,
    /// Every feed number was given: the store holds 2^32 - 1 replicas already.
    #[error("no feed number left for another replica")]
    TooManyFeeds,
    /// A segment with more entries than one commit of a feed may make.
    #[error("a segment of {0} entries is over the limit of {MAX_SEGMENT_ENTRIES}")]
    SegmentTooLarge(usize),
    /// The segment does not continue the stored feed (gap, wrong prev or origin, an entry
    /// that does not decode) or its signed head is invalid or does not sign its last entry.
    #[error("the segment does not continue the stored feed: {0}")]
    Rejected(LedgerError),
    /// Reading the stored feed failed or found it corrupt.
    #[error(transparent)]
    Feed(#[from] FeedError),
}

impl From<StoreError> for ReplicaError {
    fn from(e: StoreError) -> Self {
        ReplicaError::Feed(FeedError::Store(e))
    }
}

/// The feeds this server holds (its own and its replicas) over one store. Every method is
/// safe to call from many threads; appends to replicas are serialised.
pub struct Replicas {
    store: Arc<dyn Store>,
    own: ServerKey,
    /// Held while a replica is appended to or an origin quarantined, so that each checks
    /// and writes against the same stored state.
    writer: Mutex<()>,
    /// The feed numbers of origins held, as read from (or committed to) the store's `o:`
    /// keys, which stay authoritative: an origin missing here is looked up there.
    numbers: RwLock<HashMap<[u8; POINT_LEN], FeedNumber>>,
    /// The origins found by fingerprint (a held feed stays held), so that a client's
    /// `rhead ORIGIN` decodes no point to find the feed.
    by_fingerprint: RwLock<HashMap<Fingerprint, ServerKey>>,
    /// The own feed's keys, read from the store when first asked (`ledger_layout.rs`).
    own_keys: OnceLock<FeedKeys>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicas")
            .field("own", &self.own.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Replicas {
    /// The feeds held in `store` by the server whose key is `own`, for a store in the
    /// current layout ([`Replicas::open`] first moves replicas kept in the older one).
    pub fn new(store: Arc<dyn Store>, own: ServerKey) -> Replicas {
        Replicas {
            store,
            own,
            writer: Mutex::new(()),
            numbers: RwLock::new(HashMap::new()),
            by_fingerprint: RwLock::new(HashMap::new()),
            own_keys: OnceLock::new(),
        }
    }

    /// [`Replicas::new`], after moving every replica still kept in an older layout (under
    /// its origin's 33 bytes, before feed numbers; its entries beside its indexes, before
    /// [`Table::ReplicaEntries`]) to the current one, in atomic steps that a crash can
    /// interrupt and the next open finishes. Returns the feeds and how many keys moved.
    pub fn open(store: Arc<dyn Store>, own: ServerKey) -> Result<(Replicas, u64), ReplicaError> {
        let replicas = Replicas::new(store, own);
        let renumbered = migrate::to_feed_numbers(&replicas)?;
        let entries = migrate::entries_to_their_table(&replicas)?;
        Ok((replicas, renumbered + entries))
    }

    /// The server's own key (its feed is [`Replicas::feed`] of it).
    pub fn own(&self) -> ServerKey {
        self.own
    }

    /// The feed of `origin` as held here: the own feed for the own key, else the replica
    /// (empty when none is held; such a view stays empty: ask again once it is held).
    pub fn feed(&self, origin: ServerKey) -> Result<Feed, ReplicaError> {
        if origin == self.own {
            let keys = match self.own_keys.get() {
                Some(keys) => *keys,
                None => {
                    let keys = own_feed_keys(self.store.as_ref())?.keys;
                    *self.own_keys.get_or_init(|| keys)
                }
            };
            return Ok(Feed::own(self.store.clone(), origin, keys));
        }
        let number = self.number(&origin)?.unwrap_or(0);
        Ok(Feed::replica(self.store.clone(), origin, number))
    }

    /// The feed number of `origin`, if the store gave it one.
    fn number(&self, origin: &ServerKey) -> Result<Option<FeedNumber>, ReplicaError> {
        let cached = self
            .numbers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin.as_bytes())
            .copied();
        if cached.is_some() {
            return Ok(cached);
        }
        let Some(bytes) = self.store.get(Table::Replicas, &origin_index_key(origin))? else {
            return Ok(None);
        };
        let number = number_value(&bytes, "feed number")?;
        self.remember(origin, number);
        Ok(Some(number))
    }

    /// Caches `origin`'s feed number, once it is stored.
    fn remember(&self, origin: &ServerKey, number: FeedNumber) {
        self.numbers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*origin.as_bytes(), number);
    }

    /// The next feed number to give, counting from the stored count the first time
    /// (`given` carries the count between calls of one batch).
    fn next_number(&self, given: &mut Option<FeedNumber>) -> Result<FeedNumber, ReplicaError> {
        let count = match *given {
            Some(count) => count,
            None => match self.store.get(Table::Replicas, FEED_COUNT_KEY)? {
                Some(bytes) => number_value(&bytes, "feed count")?,
                None => 0,
            },
        };
        let next = count
            .checked_add(1)
            .filter(|n| *n < FeedNumber::MAX)
            .ok_or(ReplicaError::TooManyFeeds)?;
        *given = Some(next);
        Ok(next)
    }

    /// The feed whose origin has `fingerprint`: the own feed (always), a held replica, or
    /// `None` when no feed of that fingerprint is held. This is how a client's `origin`
    /// argument selects the feed a query reads.
    pub fn feed_of(&self, fingerprint: &Fingerprint) -> Result<Option<Feed>, ReplicaError> {
        if *fingerprint == self.own.fingerprint() {
            return Ok(Some(self.feed(self.own)?));
        }
        let cached = self
            .by_fingerprint
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(fingerprint)
            .copied();
        if let Some(origin) = cached {
            return Ok(Some(self.feed(origin)?));
        }
        let Some(bytes) = self
            .store
            .get(Table::Replicas, &fingerprint_key(fingerprint))?
        else {
            return Ok(None);
        };
        let origin = ServerKey::from_bytes(&bytes).map_err(|_| {
            FeedError::Corrupt(format!(
                "the fingerprint index of {fingerprint} is not a key"
            ))
        })?;
        self.by_fingerprint
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*fingerprint, origin);
        Ok(Some(self.feed(origin)?))
    }

    /// Every held, non-empty feed's head `(origin, seq, hash)`, the own feed included,
    /// ascending by origin bytes (each origin once). Quarantined origins are listed with what
    /// is held of them.
    pub fn clock(&self) -> Result<Vec<Head>, ReplicaError> {
        let mut heads = BTreeMap::new();
        if let Some(own) = stored_head(self.store.as_ref(), &FeedKeys::OWN)? {
            heads.insert(*own.head.origin.as_bytes(), own.head);
        }
        for (key, value) in self.store.scan(Table::Replicas, ORIGIN_INDEX_PREFIX)? {
            let origin = key
                .get(ORIGIN_INDEX_PREFIX.len()..)
                .and_then(|b| ServerKey::from_bytes(b).ok())
                .ok_or_else(|| {
                    FeedError::Corrupt("an origin index key does not hold an origin".into())
                })?;
            let number = number_value(&value, "feed number")?;
            if let Some(signed) = stored_head(self.store.as_ref(), &FeedKeys::replica(number))? {
                if signed.head.origin != origin {
                    return Err(FeedError::Corrupt(format!(
                        "the head of the replica of {} has another origin",
                        origin.fingerprint()
                    ))
                    .into());
                }
                heads.insert(*origin.as_bytes(), signed.head);
            }
        }
        Ok(heads.into_values().collect())
    }

    /// Appends an accepted segment of `origin`'s feed (`entries`, consecutive, ending at the
    /// entry `signed` signs) as ONE atomic, durable store batch: the entries, every index,
    /// the kind counters, the new head and the segment's signed head (kept under its seq),
    /// and on the first segment of an origin its feed number and fingerprint index. Returns
    /// the new head.
    ///
    /// Checked again inside, against what is stored (defence in depth: the accept rule ran
    /// before): the origin is not the own one ([`ReplicaError::OwnOrigin`]) and not
    /// quarantined ([`ReplicaError::Quarantined`]); the segment holds 1 to
    /// [`MAX_SEGMENT_ENTRIES`] entries; they continue the stored head (seq and prev), carry
    /// the origin, and `signed` is validly signed by the origin and covers the last one
    /// ([`ReplicaError::Rejected`]). A segment overlapping what is held is refused too:
    /// dropping the held part is the accept rule's job. On any error nothing is written.
    pub fn persist(
        &self,
        origin: &ServerKey,
        entries: &[Entry],
        signed: &SignedHead,
    ) -> Result<Head, ReplicaError> {
        let heads = self.persist_many(&[(*origin, entries, signed)])?;
        heads.into_iter().next().ok_or(ReplicaError::EmptySegment)
    }

    /// [`Replicas::persist`] of several segments, in order, as ONE atomic, durable store
    /// batch (one fsync for all: a link's queued segments): each is checked as `persist`
    /// checks it, against the stored head or the segment of its origin before it in
    /// `segments`. Returns each segment's new head, in order. On any error nothing is
    /// written.
    pub fn persist_many(
        &self,
        segments: &[(ServerKey, &[Entry], &SignedHead)],
    ) -> Result<Vec<Head>, ReplicaError> {
        let pieces: Vec<Piece<'_>> = segments
            .iter()
            .map(|&(origin, entries, signed)| Piece::Unchecked(origin, entries, signed))
            .collect();
        self.persist_pieces(&pieces)
    }

    /// [`Replicas::persist_many`] of segments that the core's [`CheckedSegment`] type has
    /// checked already (every entry's hash computed, the entries linked, the head's
    /// signature verified and its hash the last entry's): only how each continues the
    /// stored feed (or the segment of its origin before it) is checked here, so nothing is
    /// hashed or verified twice. The same atomic, durable batch; on any error nothing is
    /// written.
    pub fn persist_segments(
        &self,
        segments: &[&CheckedSegment],
    ) -> Result<Vec<Head>, ReplicaError> {
        let pieces: Vec<Piece<'_>> = segments.iter().map(|s| Piece::Checked(s)).collect();
        self.persist_pieces(&pieces)
    }

    fn persist_pieces(&self, segments: &[Piece<'_>]) -> Result<Vec<Head>, ReplicaError> {
        let _writer = self.writer();
        let mut batches: BTreeMap<[u8; POINT_LEN], OriginBatch> = BTreeMap::new();
        let mut ops = Vec::new();
        let mut heads = Vec::with_capacity(segments.len());
        let mut given = None;
        for piece in segments {
            let (origin, entries) = (piece.origin(), piece.entries());
            if origin == self.own {
                return Err(ReplicaError::OwnOrigin);
            }
            if entries.is_empty() {
                return Err(ReplicaError::EmptySegment);
            }
            if entries.len() > MAX_SEGMENT_ENTRIES {
                return Err(ReplicaError::SegmentTooLarge(entries.len()));
            }
            let batch = match batches.entry(*origin.as_bytes()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    if self.quarantined(&origin)?.is_some() {
                        return Err(ReplicaError::Quarantined(origin.fingerprint()));
                    }
                    let (number, new_number) = match self.number(&origin)? {
                        Some(number) => (number, false),
                        None => (self.next_number(&mut given)?, true),
                    };
                    let keys = FeedKeys::replica(number);
                    let stored = stored_head(self.store.as_ref(), &keys)?;
                    e.insert(OriginBatch {
                        origin,
                        number,
                        new_number,
                        verifier: ChainVerifier::resume(
                            stored.map_or(Head::empty(origin), |s| s.head),
                        ),
                        keys,
                        counts: BTreeMap::new(),
                        kind_runs: BTreeMap::new(),
                        first: stored.is_none(),
                        last: None,
                    })
                }
            };
            heads.push(match piece {
                Piece::Unchecked(_, entries, signed) => {
                    self.add_segment(batch, entries, signed, &mut ops)?
                }
                Piece::Checked(segment) => self.add_checked(batch, segment, &mut ops)?,
            });
        }
        if let Some(count) = given {
            ops.push(Op::Put {
                table: Table::Replicas,
                key: FEED_COUNT_KEY.to_vec(),
                value: count.to_be_bytes().to_vec(),
            });
        }
        let mut numbered = Vec::new();
        for batch in batches.into_values() {
            if batch.new_number {
                ops.push(Op::Put {
                    table: Table::Replicas,
                    key: origin_index_key(&batch.origin),
                    value: batch.number.to_be_bytes().to_vec(),
                });
                numbered.push((batch.origin, batch.number));
            }
            let table = batch.keys.commit_table();
            let put = |key: Vec<u8>, value: Vec<u8>| Op::Put { table, key, value };
            for (kind, count) in &batch.counts {
                ops.push(put(
                    batch.keys.kind_count(kind),
                    count.to_be_bytes().to_vec(),
                ));
            }
            for (kind, runs) in &batch.kind_runs {
                if let Some(&(_, last)) = runs.last() {
                    ops.push(put(batch.keys.kind(kind, last), kind_runs_value(runs)));
                }
            }
            if let Some(last) = batch.last {
                ops.push(put(batch.keys.head(), last.to_bytes().to_vec()));
            }
            if batch.first {
                ops.push(Op::Put {
                    table: Table::Replicas,
                    key: fingerprint_key(&batch.origin.fingerprint()),
                    value: batch.origin.as_bytes().to_vec(),
                });
            }
        }
        self.store.commit(ops)?;
        for (origin, number) in numbered {
            self.remember(&origin, number);
        }
        Ok(heads)
    }

    /// Adds one checked segment to `ops` after checking that it continues `batch` (its
    /// origin's chain so far): the next seq, the prev of its first entry; returns its head.
    fn add_checked(
        &self,
        batch: &mut OriginBatch,
        segment: &CheckedSegment,
        ops: &mut Vec<Op>,
    ) -> Result<Head, ReplicaError> {
        let tip = batch.verifier.head();
        let expected = tip.seq.saturating_add(1);
        if segment.first_seq() != expected {
            return Err(ReplicaError::Rejected(LedgerError::Gap {
                expected,
                got: segment.first_seq(),
            }));
        }
        let first_prev = segment.entries().first().map(Entry::prev);
        if first_prev != Some(&tip.hash) {
            return Err(ReplicaError::Rejected(LedgerError::BadLink {
                seq: expected,
            }));
        }
        for (entry, hash) in segment.entries().iter().zip(segment.hashes()) {
            self.add_entry(batch, entry, entry.to_bytes(), hash, ops)?;
        }
        let signed = segment.head();
        batch.verifier = ChainVerifier::resume(signed.head);
        let keys = &batch.keys;
        ops.push(Op::Put {
            table: keys.commit_table(),
            key: keys.signed_head(signed.head.seq),
            value: signed.to_bytes().to_vec(),
        });
        batch.last = Some(*signed);
        Ok(signed.head)
    }

    /// Adds one entry of `batch` (its encoding and hash) to `ops`: the entry, its id and
    /// hash indexes; and to `batch`, its kind's run and count.
    fn add_entry(
        &self,
        batch: &mut OriginBatch,
        entry: &Entry,
        encoded: Vec<u8>,
        hash: &[u8; 32],
        ops: &mut Vec<Op>,
    ) -> Result<(), ReplicaError> {
        let keys = &batch.keys;
        let put = |table: Table, key: Vec<u8>, value: Vec<u8>| Op::Put { table, key, value };
        let seq = entry.seq();
        let seq_bytes = seq.to_be_bytes().to_vec();
        ops.push(put(keys.entry_table(), keys.entry(seq), encoded));
        let index = keys.index_table();
        ops.push(put(
            index,
            keys.id_at(seq, entry.record_id()),
            seq_bytes.clone(),
        ));
        ops.push(put(index, keys.hash_at(seq, hash), seq_bytes));
        match batch.kind_runs.get_mut(entry.kind()) {
            Some(runs) => add_to_kind_runs(runs, seq),
            None => {
                batch
                    .kind_runs
                    .insert(entry.kind().to_owned(), vec![(seq, seq)]);
            }
        }
        let count = match batch.counts.get_mut(entry.kind()) {
            Some(count) => count,
            None => {
                let held = match commit_value(
                    self.store.as_ref(),
                    keys,
                    &keys.kind_count(entry.kind()),
                )? {
                    Some(v) => seq_value(&v, "kind count")?,
                    None => 0,
                };
                batch.counts.entry(entry.kind().to_owned()).or_insert(held)
            }
        };
        *count = count.saturating_add(1);
        Ok(())
    }

    /// Checks one segment against `batch` (its origin's chain so far) and adds its entries,
    /// indexes and signed head to `ops`; returns its head.
    fn add_segment(
        &self,
        batch: &mut OriginBatch,
        entries: &[Entry],
        signed: &SignedHead,
        ops: &mut Vec<Op>,
    ) -> Result<Head, ReplicaError> {
        // Each entry is encoded and hashed once: for the check and for the batch.
        for entry in entries {
            let encoded = entry.to_bytes();
            let hash = batch
                .verifier
                .push_encoded(&encoded)
                .map_err(ReplicaError::Rejected)?;
            self.add_entry(batch, entry, encoded, &hash, ops)?;
        }
        let keys = &batch.keys;
        batch
            .verifier
            .push_head(signed)
            .map_err(ReplicaError::Rejected)?;
        let head = batch.verifier.head();
        if batch.verifier.signed_seq() < head.seq {
            return Err(ReplicaError::Rejected(LedgerError::Unsigned {
                seq: batch.verifier.signed_seq().saturating_add(1),
            }));
        }
        ops.push(Op::Put {
            table: keys.commit_table(),
            key: keys.signed_head(head.seq),
            value: signed.to_bytes().to_vec(),
        });
        batch.last = Some(*signed);
        Ok(head)
    }

    /// Quarantines `origin`: keeps `proof` (a fork proof the caller verified) so that
    /// nothing more of the origin is accepted. Returns `false`, keeping the proof held
    /// before, if the origin was already quarantined. Durable when it returns.
    pub fn quarantine(&self, origin: &ServerKey, proof: &[u8]) -> Result<bool, ReplicaError> {
        let _writer = self.writer();
        if self.quarantined(origin)?.is_some() {
            return Ok(false);
        }
        self.store.commit(vec![Op::Put {
            table: Table::Replicas,
            key: fork_key(origin),
            value: proof.to_vec(),
        }])?;
        Ok(true)
    }

    /// The fork proof that quarantined `origin`, if it is quarantined.
    pub fn quarantined(&self, origin: &ServerKey) -> Result<Option<Vec<u8>>, ReplicaError> {
        Ok(self.store.get(Table::Replicas, &fork_key(origin))?)
    }

    /// Every quarantined origin with its fork proof, ascending by origin bytes.
    pub fn forks(&self) -> Result<Vec<(ServerKey, Vec<u8>)>, ReplicaError> {
        self.store
            .scan(Table::Replicas, FORK_PREFIX)?
            .into_iter()
            .map(|(key, proof)| {
                let bytes = key.get(FORK_PREFIX.len()..).unwrap_or_default();
                let origin = ServerKey::from_bytes(bytes).map_err(|_| {
                    FeedError::Corrupt("a fork proof is kept under a key that is not one".into())
                })?;
                Ok((origin, proof))
            })
            .collect()
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        // Guards no data: a panic while it was held leaves nothing inconsistent.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One segment handed to a persist: to be checked whole, or checked by the core already.
enum Piece<'a> {
    Unchecked(ServerKey, &'a [Entry], &'a SignedHead),
    Checked(&'a CheckedSegment),
}

impl Piece<'_> {
    fn origin(&self) -> ServerKey {
        match self {
            Piece::Unchecked(origin, ..) => *origin,
            Piece::Checked(segment) => segment.origin(),
        }
    }

    fn entries(&self) -> &[Entry] {
        match self {
            Piece::Unchecked(_, entries, _) => entries,
            Piece::Checked(segment) => segment.entries(),
        }
    }
}

/// What [`Replicas::persist_many`] gathers for one origin.
struct OriginBatch {
    origin: ServerKey,
    /// The origin's feed number, and whether this batch gives it (writing `o:`).
    number: FeedNumber,
    new_number: bool,
    keys: FeedKeys,
    /// The chain so far: the stored head, then the segments added.
    verifier: ChainVerifier,
    /// Each kind's entry count after the segments added.
    counts: BTreeMap<String, u64>,
    /// Each kind's runs of seqs among the segments added: one kind index record per kind
    /// for the whole batch, as the own feed's group commit writes (ledger_layout.rs).
    kind_runs: BTreeMap<String, Vec<(u64, u64)>>,
    /// No head was stored: the fingerprint index is written too.
    first: bool,
    /// The signed head of the last segment added.
    last: Option<SignedHead>,
}

/// A stored feed number or count (`u32` big-endian).
fn number_value(bytes: &[u8], what: &str) -> Result<FeedNumber, ReplicaError> {
    let array: [u8; 4] = bytes
        .try_into()
        .map_err(|_| FeedError::Corrupt(format!("a stored {what} is not 4 bytes")))?;
    Ok(FeedNumber::from_be_bytes(array))
}
