//! The ledger's layout in the store, shared by the writers (`ledger_commit.rs`, and
//! `replicas.rs` for the feeds of other servers) and the readers (`ledger.rs`,
//! `ledger_query.rs`): the keys, the reads of the head and of the indexes, and the error of
//! every ledger operation.
//!
//! # Layout of a feed
//!
//! The server's own feed's keys are as below, without a prefix, in three tables: the entries
//! in [`Table::Ledger`], the `id:` and `h:` indexes in [`Table::LedgerIndex`], and the keys
//! each commit writes once (`head`, `sh:`, `k:`, `kc:`, and the own feed's `hh:` and `hi:`
//! records) in [`Table::LedgerCommits`]. A
//! replica of another server's feed has the same keys, each preceded by the replica's
//! 5-byte feed prefix, its entries in [`Table::ReplicaEntries`] and all its other keys in
//! [`Table::Replicas`]. The prefix is `0x00` and the feed number this store gave
//! the origin (`u32` big-endian, from 1; `replicas/layout.rs` keeps origin -> number).
//! [`FeedKeys`] says which. A short prefix keeps the keys, and so every store insert and
//! lookup of a replica, about as cheap as the own feed's.
//!
//! | key | value |
//! |---|---|
//! | `e:` + seq (`u64` big-endian) | the entry's canonical encoding (`spec/ledger.md` §1) |
//! | `x` + span + `i` + record id | seq (`u64` big-endian) of the entry with that record id (index table; the own feed's trail its commits, `ledger_index_tail.rs`) |
//! | `x` + span + `h` + entry hash (32 bytes) | seq (`u64` big-endian) of the entry with that hash (index table; the own feed's trail its commits) |
//! | `id:` + record id, `h:` + entry hash | the same, as stores of schema 6 and older wrote them (read, never written) |
//! | `hh:` + seq (`u64` big-endian) | own feed: the 32-byte hashes of the entries of the commit whose first entry is seq, while their hash keys are not stored (commit table; index table in stores of schema 3 and 4; `ledger_index_tail.rs`) |
//! | `hi:` + seq (`u64` big-endian) | own feed: the record ids (each a length byte and its bytes) of the entries of the commit whose first entry is seq, while their record id keys are not stored (commit table; index table in stores of schema 4) |
//! | `k:` + kind + `0x00` + seq (`u64` big-endian) | the kind index: empty, or [`kind_runs_value`] |
//! | `kc:` + kind | number of entries of that kind (`u64` big-endian) |
//! | `head` | the [`SignedHead`] encoding of the last entry |
//! | `sh:` + seq (`u64` big-endian) | the [`SignedHead`] of entry seq, made by the commit it ended |
//! | `spans` | own feed: its span size, [`SPAN_SEQ_BITS`] or [`WIDE_SPAN_SEQ_BITS`] as one byte (commit table; [`own_feed_keys`]) |
//!
//! The span of entry `seq` is `(seq - 1) >> b` as a `u32` big-endian ([`FeedKeys::span_at`]):
//! the index keys of the entries `1..=2^b` are in span 0, the next `2^b` in span 1, and so
//! on. `b` is [`SPAN_SEQ_BITS`] (16) for the own feed, [`WIDE_SPAN_SEQ_BITS`] (20) for the
//! replicas and for an own feed that a build of store schema 7 grew past 2^16 entries.
//! (Kinds never contain `0x00`, so `k:` + kind + `0x00` is a prefix of exactly that kind's
//! index keys.) A kind index key names the entries of that kind of one commit: its seq is the
//! last of them, and its value lists them as runs of consecutive seqs (`first`, `last`, each
//! `u64` big-endian, ascending), or is empty when the key's seq is the only one. So a group
//! commit writes one kind index record per kind instead of one per entry, and so does a
//! replica's persist batch. Feeds written before this (by 59d7ca6 and earlier) have one key
//! with an empty value per entry, which reads the same way ([`kind_runs`]). Every commit
//! writes all these keys in one atomic, durable batch, so a crash
//! leaves either the whole commit (entries, indexes or the own feed's `hh:` and `hi:`
//! records, and the new signed head) or nothing. The
//! stored head is authoritative for the feed's size. A commit's `sh:` key is what lets
//! replication cut a feed into segments that each end at a signed head; feeds written before
//! those keys existed have only `head`.
//!
//! # The index and commit tables
//!
//! The own feed's entries' table holds nothing but `e:` keys, which each commit appends in
//! ascending order, so the tables fjall flushes hold disjoint runs of keys and its
//! compactions move them down the levels without rewriting them. The record id and hash
//! keys ([`FeedKeys::index_table`]) are random: in the entries' table every flush would
//! overlap every other.
//!
//! In the index table they are random within their span only. New entries' keys all land in
//! the last span, so an on-disk table of new keys overlaps only the tables of that span,
//! and fjall's compactions move the tables of every older span down the levels without
//! rewriting them. Without spans every merge from the first level on rewrote tables
//! spanning the whole index, a cost that grew with the feed: `vserv bench --compare OLD
//! --rounds 1 ledger --records 10000000` appended 1.16x faster on 4 connections and 1.12x
//! on one, with 16% less CPU per append. The own feed's spans of 2^16 entries are each
//! stored by exactly one index bulk (`ledger_index_tail.rs`), so no two of its tables
//! overlap at all and nothing is ever merged; with spans of 2^20 the 16 bulks of a span
//! overlapped, and their merges took 12% of the process's CPU at 10M entries. A lookup by
//! record id or hash, which cannot know the span, asks the spans the ledger's in-memory
//! masks name (about one, `ledger_ids.rs`), or without them each span from the last down
//! in one view of the store (the tables that cannot hold the key answer from their
//! in-memory filters), then the keys of an older layout. The ledger's view answers an id
//! its record id filter rules out without asking.
//!
//! The per-commit keys ([`FeedKeys::commit_table`]) sort after `e:`, so in the
//! entries' table every flushed table's key range would reach from its first entry to
//! `sh:` and overlap the newest table of every level: compaction would rewrite (and from
//! its second level, compress) every entry again at each level. Keeping them apart (with
//! the entries' table compressed from its first level, as moved tables are never rewritten)
//! made `vserv bench ledger --records 10000000` append 13% faster on 4 connections and 8%
//! on one, with 12% and 7% less CPU per append (5% and 1% faster at 1M entries).
//!
//! Feeds written before these tables existed keep their older keys in [`Table::Ledger`]:
//! index keys from before the index table (c989e6d and earlier), per-commit keys from
//! before the commit table (store schema version 1). New commits write theirs to the new
//! tables; a lookup tries the new table, then the legacy one
//! ([`FeedKeys::legacy_index_table`], [`FeedKeys::legacy_commit_table`]), and a scan of a
//! per-commit prefix reads both ([`scan_commit_keys`]). A record id, hash, `sh:` or `k:` key
//! is in one of the two, never both; `head` and a kind's `kc:` may be in both once the
//! feed has grown, and the new table's value is the current one. A replica keeps its
//! entries in [`Table::ReplicaEntries`] for the same reason (stores of schema 5 and older
//! kept them in [`Table::Replicas`]; `replicas/migrate.rs` moves them when the node opens)
//! and all its other keys in [`Table::Replicas`].

use vserv_core::ledger::{LedgerError, SignedHead};
use vserv_store::kv::{Store, StoreError, Table};

/// Key of the signed head.
pub const HEAD_KEY: &[u8] = b"head";
/// Prefix of entry keys (followed by the seq, `u64` big-endian); the fjall store keeps a flat
/// copy of the own feed's (`vserv_store::flat_entries`).
pub const ENTRY_PREFIX: &[u8] = vserv_store::flat_entries::ENTRY_KEY_PREFIX;
/// Prefix of the record id index of stores of schema 6 and older.
pub const ID_PREFIX: &[u8] = b"id:";
/// Prefix of the entry hash index of stores of schema 6 and older.
pub const HASH_PREFIX: &[u8] = b"h:";
/// The first byte of every index key: `x`, the span (`u32` big-endian), then
/// [`SPAN_ID_TAG`] and the record id, or [`SPAN_HASH_TAG`] and the entry hash.
pub const SPAN_LEAD: u8 = b'x';
/// Marks a record id key within a span.
pub const SPAN_ID_TAG: u8 = b'i';
/// Marks a hash key within a span.
pub const SPAN_HASH_TAG: u8 = b'h';
/// log2 of the entries whose index keys share a span in the own feed of a store this build
/// made (or that held at most one such span when this build first wrote it): one index bulk
/// (`ledger_index_tail.rs`) stores exactly one span.
pub const SPAN_SEQ_BITS: u32 = 16;

/// log2 of the entries per span of the replicas, and of the own feed of a store that an
/// older build grew past 2^16 entries (store schema 7).
pub const WIDE_SPAN_SEQ_BITS: u32 = 20;

/// Key of the own feed's span size, in its commit table: one byte, [`SPAN_SEQ_BITS`] or
/// [`WIDE_SPAN_SEQ_BITS`], written with the first commit of a build that knows it.
pub const SPANS_KEY: &[u8] = b"spans";

/// `x` + `span` + `tag` + `key`, in one allocation.
fn span_key(span: u32, tag: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + key.len());
    out.push(SPAN_LEAD);
    out.extend_from_slice(&span.to_be_bytes());
    out.push(tag);
    out.extend_from_slice(key);
    out
}

/// Prefix of the kind index.
pub const KIND_PREFIX: &[u8] = b"k:";
/// Prefix of the per-kind entry counters.
pub const KIND_COUNT_PREFIX: &[u8] = b"kc:";
/// Prefix of the signed heads kept per commit (followed by the seq, `u64` big-endian).
pub const SIGNED_HEAD_PREFIX: &[u8] = b"sh:";

/// The store key of the signed head of entry `seq`, kept by the commit that ended at `seq`.
pub fn signed_head_key(seq: u64) -> Vec<u8> {
    [SIGNED_HEAD_PREFIX, &seq.to_be_bytes()].concat()
}

/// The prefix of every kind index key of `kind` (followed by the seq, `u64` big-endian).
pub fn kind_prefix(kind: &str) -> Vec<u8> {
    [KIND_PREFIX, kind.as_bytes(), &[0]].concat()
}

/// The kind index key of entry `seq` of `kind`.
pub fn kind_key(kind: &str, seq: u64) -> Vec<u8> {
    [KIND_PREFIX, kind.as_bytes(), &[0], &seq.to_be_bytes()].concat()
}

/// Bytes of one run in a kind index value: its first and last seq.
const KIND_RUN_LEN: usize = 16;

/// The value of the kind index key of one commit's entries of a kind, given as ascending runs
/// `(first, last)` of consecutive seqs (the key's seq is the last run's `last`): empty when
/// that is the only entry, else every run.
pub fn kind_runs_value(runs: &[(u64, u64)]) -> Vec<u8> {
    match runs {
        [(first, last)] if first == last => Vec::new(),
        _ => runs
            .iter()
            .flat_map(|(first, last)| [first.to_be_bytes(), last.to_be_bytes()])
            .flatten()
            .collect(),
    }
}

/// Adds entry `seq` (above every seq in `runs`) to one commit's runs of a kind.
pub fn add_to_kind_runs(runs: &mut Vec<(u64, u64)>, seq: u64) {
    match runs.last_mut() {
        Some((_, last)) if last.checked_add(1) == Some(seq) => *last = seq,
        _ => runs.push((seq, seq)),
    }
}

/// The runs of seqs a kind index record names, ascending: `(key_seq, key_seq)` for an empty
/// value, else the runs of the value, which must be ascending, disjoint and end at
/// `key_seq` ([`FeedError::Corrupt`] otherwise).
pub fn kind_runs(key_seq: u64, value: &[u8]) -> Result<Vec<(u64, u64)>, FeedError> {
    if value.is_empty() {
        return Ok(vec![(key_seq, key_seq)]);
    }
    let corrupt =
        || FeedError::Corrupt(format!("the kind index record at seq {key_seq} is garbled"));
    if !value.len().is_multiple_of(KIND_RUN_LEN) {
        return Err(corrupt());
    }
    let mut runs = Vec::with_capacity(value.len() / KIND_RUN_LEN);
    let mut floor = 0u64;
    for run in value.chunks_exact(KIND_RUN_LEN) {
        let (a, b) = run.split_at(8);
        let first = u64::from_be_bytes(a.try_into().map_err(|_| corrupt())?);
        let last = u64::from_be_bytes(b.try_into().map_err(|_| corrupt())?);
        if first <= floor || last < first {
            return Err(corrupt());
        }
        floor = last;
        runs.push((first, last));
    }
    if floor != key_seq {
        return Err(corrupt());
    }
    Ok(runs)
}

/// The store key of the entry counter of `kind`.
pub fn kind_count_key(kind: &str) -> Vec<u8> {
    [KIND_COUNT_PREFIX, kind.as_bytes()].concat()
}

/// The store key of entry `seq`.
pub fn entry_key(seq: u64) -> Vec<u8> {
    vserv_store::flat_entries::entry_key(seq)
}

/// The record id index key of `record_id` in stores of schema 6 and older.
pub fn id_key(record_id: &[u8]) -> Vec<u8> {
    [ID_PREFIX, record_id].concat()
}

/// The hash index key of `hash` in stores of schema 6 and older.
pub fn hash_key(hash: &[u8; 32]) -> Vec<u8> {
    [HASH_PREFIX, hash.as_slice()].concat()
}

/// The lead byte of every replica feed key (before the feed number).
pub const REPLICA_FEED_LEAD: u8 = 0x00;

/// The number a store gives a replica's origin (from 1; 0 is never given: a [`FeedKeys`] of
/// number 0 holds nothing, which is how an origin not held reads as empty).
pub type FeedNumber = u32;

/// Where one feed's keys are: the table, and the prefix before every key of the layout
/// (none for the server's own feed, [`REPLICA_FEED_LEAD`] and the feed number for a
/// replica). Every reader
/// and writer of a feed builds its keys through this, so the own feed and the replicas share
/// one layout and one set of queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedKeys {
    /// The table of the `e:` keys.
    entry_table: Table,
    /// The table of the `id:` and `h:` keys.
    index_table: Table,
    /// Where a feed written before the index table existed has its older `id:` and `h:`
    /// keys.
    legacy_index_table: Option<Table>,
    /// The table of the per-commit keys: `head`, `sh:`, `k:` and `kc:`.
    commit_table: Table,
    /// Where a feed written before the commit table existed has its older per-commit keys.
    legacy_commit_table: Option<Table>,
    prefix: Option<[u8; 5]>,
    /// Lookups missing in the spans also ask the `id:` and `h:` keys that stores of schema 6
    /// and older wrote.
    unspanned_index: bool,
    /// log2 of the entries per index span.
    span_bits: u32,
}

impl FeedKeys {
    /// The server's own feed: keys without a prefix, its entries in [`Table::Ledger`], its
    /// indexes in [`Table::LedgerIndex`] and its per-commit keys in
    /// [`Table::LedgerCommits`] (older ones of both in [`Table::Ledger`]).
    pub const OWN: FeedKeys = FeedKeys {
        entry_table: Table::Ledger,
        index_table: Table::LedgerIndex,
        legacy_index_table: Some(Table::Ledger),
        commit_table: Table::LedgerCommits,
        legacy_commit_table: Some(Table::Ledger),
        prefix: None,
        unspanned_index: true,
        span_bits: SPAN_SEQ_BITS,
    };

    /// The replica feed numbered `number` in this store: its entries in
    /// [`Table::ReplicaEntries`], every other key in [`Table::Replicas`], each after
    /// [`REPLICA_FEED_LEAD`] and the number (`u32` big-endian).
    pub fn replica(number: FeedNumber) -> FeedKeys {
        let [a, b, c, d] = number.to_be_bytes();
        FeedKeys {
            entry_table: Table::ReplicaEntries,
            index_table: Table::Replicas,
            legacy_index_table: None,
            commit_table: Table::Replicas,
            legacy_commit_table: None,
            prefix: Some([REPLICA_FEED_LEAD, a, b, c, d]),
            unspanned_index: true,
            span_bits: WIDE_SPAN_SEQ_BITS,
        }
    }

    /// The table holding the feed's entries (the `e:` keys).
    pub fn entry_table(&self) -> Table {
        self.entry_table
    }

    /// The table the feed's `id:` and `h:` index keys are written to.
    pub fn index_table(&self) -> Table {
        self.index_table
    }

    /// The table holding the `id:` and `h:` keys written before [`FeedKeys::index_table`]
    /// existed, if the feed may have any: lookups missing in the index table look there.
    pub fn legacy_index_table(&self) -> Option<Table> {
        self.legacy_index_table
    }

    /// The table the feed's per-commit keys (`head`, `sh:`, `k:`, `kc:`) are written to.
    pub fn commit_table(&self) -> Table {
        self.commit_table
    }

    /// The table holding the per-commit keys written before [`FeedKeys::commit_table`]
    /// existed, if the feed may have any: a lookup missing in the commit table looks there,
    /// and a scan of a per-commit prefix reads both ([`scan_commit_keys`]).
    pub fn legacy_commit_table(&self) -> Option<Table> {
        self.legacy_commit_table
    }

    /// The same feed, its lookups asking its spans only: for a feed known to have no index
    /// key of an older layout (`id:` or `h:`, in either table; nothing writes one since
    /// store schema 7).
    pub fn spanned_only(self) -> FeedKeys {
        FeedKeys {
            legacy_index_table: None,
            unspanned_index: false,
            ..self
        }
    }

    /// The same feed with spans of 2^`bits` entries (the own feed of a store of schema 7
    /// has [`WIDE_SPAN_SEQ_BITS`]; see [`own_feed_keys`]).
    pub fn with_span_bits(self, bits: u32) -> FeedKeys {
        FeedKeys {
            span_bits: bits,
            ..self
        }
    }

    /// log2 of the entries per index span.
    pub fn span_bits(&self) -> u32 {
        self.span_bits
    }

    /// The entries per index span.
    pub fn span_len(&self) -> u64 {
        1 << self.span_bits
    }

    /// The index span of entry `seq` (from 1): `(seq - 1) >> span bits`, the last span
    /// holding every entry beyond `u32::MAX` spans.
    pub fn span_at(&self, seq: u64) -> u32 {
        u32::try_from(seq.saturating_sub(1) >> self.span_bits).unwrap_or(u32::MAX)
    }

    /// Whether lookups ask the index keys of an older layout (see [`FeedKeys::spanned_only`]).
    pub fn has_unspanned_index(&self) -> bool {
        self.unspanned_index
    }

    /// The bytes before every key of the feed (empty for the own feed).
    pub fn prefix(&self) -> &[u8] {
        self.prefix.as_ref().map_or(&[], |p| p.as_slice())
    }

    /// `key` of the layout, placed in this feed.
    fn place(&self, key: Vec<u8>) -> Vec<u8> {
        match &self.prefix {
            None => key,
            Some(p) => [p.as_slice(), &key].concat(),
        }
    }

    /// The key of entry `seq`.
    pub fn entry(&self, seq: u64) -> Vec<u8> {
        self.place(entry_key(seq))
    }

    /// The prefix of every entry key.
    pub fn entries(&self) -> Vec<u8> {
        self.place(ENTRY_PREFIX.to_vec())
    }

    /// The record id index key of `record_id` as stores of schema 6 and older wrote it.
    pub fn id(&self, record_id: &[u8]) -> Vec<u8> {
        self.place(id_key(record_id))
    }

    /// The hash index key of `hash` as stores of schema 6 and older wrote it.
    pub fn hash(&self, hash: &[u8; 32]) -> Vec<u8> {
        self.place(hash_key(hash))
    }

    /// The record id index key of entry `seq`, `record_id`.
    pub fn id_at(&self, seq: u64, record_id: &[u8]) -> Vec<u8> {
        self.place(span_key(self.span_at(seq), SPAN_ID_TAG, record_id))
    }

    /// The hash index key of entry `seq`, of hash `hash`.
    pub fn hash_at(&self, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        self.place(span_key(self.span_at(seq), SPAN_HASH_TAG, hash))
    }

    /// The prefix of the index keys of one kind (`tag`: [`SPAN_ID_TAG`] or
    /// [`SPAN_HASH_TAG`]) in `span`.
    pub fn span(&self, span: u32, tag: u8) -> Vec<u8> {
        self.place(span_key(span, tag, &[]))
    }

    /// The prefix of every index key in a span.
    pub fn spans(&self) -> Vec<u8> {
        self.place(vec![SPAN_LEAD])
    }

    /// The span and tag of `key`, if it is an index key in a span of this feed.
    pub fn span_of(&self, key: &[u8]) -> Option<(u32, u8)> {
        let rest = key
            .strip_prefix(self.prefix())?
            .strip_prefix(&[SPAN_LEAD])?;
        let span = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        Some((span, *rest.get(4)?))
    }

    /// The kind index key of entry `seq` of `kind`.
    pub fn kind(&self, kind: &str, seq: u64) -> Vec<u8> {
        self.place(kind_key(kind, seq))
    }

    /// The prefix of every kind index key of `kind`.
    pub fn kind_prefix(&self, kind: &str) -> Vec<u8> {
        self.place(kind_prefix(kind))
    }

    /// The key of the entry counter of `kind`.
    pub fn kind_count(&self, kind: &str) -> Vec<u8> {
        self.place(kind_count_key(kind))
    }

    /// The key of the feed's signed head.
    pub fn head(&self) -> Vec<u8> {
        self.place(HEAD_KEY.to_vec())
    }

    /// The key of the signed head of entry `seq`.
    pub fn signed_head(&self, seq: u64) -> Vec<u8> {
        self.place(signed_head_key(seq))
    }

    /// The prefix of every per-commit signed head key.
    pub fn signed_heads(&self) -> Vec<u8> {
        self.place(SIGNED_HEAD_PREFIX.to_vec())
    }
}

/// Why a ledger operation failed. Nothing was changed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The entry breaks a field rule (kind, record id, author, body size).
    #[error(transparent)]
    Invalid(LedgerError),
    /// A record with this id is already in the feed, at `seq`; it was not stored again.
    #[error("duplicate record id: already stored at seq {seq}")]
    Duplicate {
        /// Where the record with that id is.
        seq: u64,
    },
    /// The seq counter would overflow.
    #[error("the ledger is full (seq overflow)")]
    Full,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored ledger data could not be decoded.
    #[error("stored ledger data is corrupt: {0}")]
    Corrupt(String),
}

/// The signed head of the feed at `keys` in `store`, or `None` for an empty feed.
pub(crate) fn stored_head(
    store: &dyn Store,
    keys: &FeedKeys,
) -> Result<Option<SignedHead>, FeedError> {
    match commit_value(store, keys, &keys.head())? {
        Some(bytes) => SignedHead::decode(&bytes)
            .map(Some)
            .map_err(|e| FeedError::Corrupt(format!("head: {e}"))),
        None => Ok(None),
    }
}

/// Which index spans a lookup asks, newest first.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spans<'a> {
    /// Those [`spans_up_to_head`] names (the lookup reads the head).
    UpToHead,
    /// Only these, newest first: every span the key may be in (`ledger_ids.rs`), or those
    /// [`spans_up_to_head`] named when the caller read it.
    Only(&'a [u32]),
}

/// The seq of the entry with `record_id` in the feed at `keys`, if stored: asked in
/// `spans`, then under the older layout.
pub(crate) fn seq_of_id(
    store: &dyn Store,
    keys: &FeedKeys,
    record_id: &[u8],
    spans: Spans<'_>,
) -> Result<Option<u64>, FeedError> {
    indexed_seq(
        store,
        keys,
        SPAN_ID_TAG,
        record_id,
        &keys.id(record_id),
        "record id",
        spans,
    )
}

/// The seq of the entry with hash `hash` in the feed at `keys`, if stored: asked in
/// `spans`, then under the older layout.
pub(crate) fn seq_of_hash(
    store: &dyn Store,
    keys: &FeedKeys,
    hash: &[u8; 32],
    spans: Spans<'_>,
) -> Result<Option<u64>, FeedError> {
    indexed_seq(
        store,
        keys,
        SPAN_HASH_TAG,
        hash,
        &keys.hash(hash),
        "hash",
        spans,
    )
}

/// Spans a lookup asks in one [`Store::get_first`].
const SPANS_PER_READ: usize = 256;

/// The most spans a lookup asks without knowing that they hold keys (a 268M-entry feed's):
/// a feed with more asks only those that do ([`present_spans`]).
const BLIND_SPANS: usize = 4096;

/// The spans up to `last` that hold any index key of the feed at `keys`, ascending: one
/// one-key scan per span found (it names the next span holding a key), so the time is
/// bounded by what is stored, not by what a (possibly damaged) head says.
pub(crate) fn present_spans(
    store: &dyn Store,
    keys: &FeedKeys,
    last: u32,
) -> Result<Vec<u32>, FeedError> {
    let lead = keys.spans();
    let mut spans = Vec::new();
    let mut next = Some(0u32);
    while let Some(span) = next.filter(|&s| s <= last) {
        let first = store.scan_from(keys.index_table(), &lead, &keys.span(span, 0), 1)?;
        let Some((key, _)) = first.first() else {
            break;
        };
        // A key the layout does not know could hide the spans after it.
        let (at, _) = keys
            .span_of(key)
            .ok_or_else(|| FeedError::Corrupt("an index key outside the span layout".into()))?;
        if at > last {
            break;
        }
        spans.push(at);
        next = at.max(span).checked_add(1);
    }
    Ok(spans)
}

/// The spans a lookup that knows nothing else asks, newest first: each up to the stored
/// head's, or past 4096 of them only those holding any index key ([`present_spans`]), so
/// that a damaged head's seq sizes neither an allocation nor the time taken. None for an
/// empty feed.
pub(crate) fn spans_up_to_head(store: &dyn Store, keys: &FeedKeys) -> Result<Vec<u32>, FeedError> {
    let Some(head) = stored_head(store, keys)? else {
        return Ok(Vec::new());
    };
    let last = keys.span_at(head.head.seq);
    if (last as usize) < BLIND_SPANS {
        return Ok((0..=last).rev().collect());
    }
    let mut spans = present_spans(store, keys, last)?;
    spans.reverse();
    Ok(spans)
}

/// The seq the index of `tag` holds for `key` in the feed at `keys`: in `spans`, then under
/// the older layout's key `unspanned`.
fn indexed_seq(
    store: &dyn Store,
    keys: &FeedKeys,
    tag: u8,
    key: &[u8],
    unspanned: &[u8],
    what: &str,
    spans: Spans<'_>,
) -> Result<Option<u64>, FeedError> {
    let read;
    let spans = match spans {
        Spans::Only(spans) => spans,
        Spans::UpToHead => {
            read = spans_up_to_head(store, keys)?;
            &read
        }
    };
    for group in spans.chunks(SPANS_PER_READ) {
        let spanned: Vec<Vec<u8>> = group
            .iter()
            .map(|&span| [keys.span(span, tag).as_slice(), key].concat())
            .collect();
        if let Some(v) = store.get_first(keys.index_table(), &spanned)? {
            return seq_value(&v, what).map(Some);
        }
    }
    index_value(store, keys, unspanned)?
        .map(|v| seq_value(&v, what))
        .transpose()
}

/// The value the hash index holds for entry `seq`'s hash `hash`, in its span or under the
/// older layout's key (`None`: neither holds it).
pub(crate) fn hash_index_value(
    store: &dyn Store,
    keys: &FeedKeys,
    seq: u64,
    hash: &[u8; 32],
) -> Result<Option<Vec<u8>>, StoreError> {
    match store.get(keys.index_table(), &keys.hash_at(seq, hash))? {
        Some(v) => Ok(Some(v)),
        None => index_value(store, keys, &keys.hash(hash)),
    }
}

/// The value of the index `key` (an `id:` or `h:` key of the feed at `keys`, as stores of
/// schema 6 and older wrote them): in the index table, else in the legacy index table;
/// `None` without asking for keys that are [`FeedKeys::spanned_only`].
fn index_value(
    store: &dyn Store,
    keys: &FeedKeys,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    if !keys.unspanned_index {
        return Ok(None);
    }
    value_in(store, keys.index_table(), keys.legacy_index_table(), key)
}

/// The value of the per-commit `key` (a `head`, `sh:`, `k:` or `kc:` key of the feed at
/// `keys`): in the commit table, else in the legacy commit table. A key written to the
/// commit table shadows an older value of it in the legacy one (the head and the kind
/// counts of a feed written before the commit table, once it has grown).
pub(crate) fn commit_value(
    store: &dyn Store,
    keys: &FeedKeys,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    value_in(store, keys.commit_table(), keys.legacy_commit_table(), key)
}

/// The value of `key` in `table`, else in `legacy`.
fn value_in(
    store: &dyn Store,
    table: Table,
    legacy: Option<Table>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    match store.get(table, key)? {
        Some(v) => Ok(Some(v)),
        None => match legacy {
            Some(legacy) => store.get(legacy, key),
            None => Ok(None),
        },
    }
}

/// `(key, value)` pairs of one store page.
pub(crate) type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Up to `limit` per-commit keys of the feed at `keys` under `prefix`, from `start` on, in
/// key order, with their values, as [`Store::scan_from`] reads one table: those of the
/// commit table and of the legacy commit table merged. The keys a scan walks (`sh:` and
/// `k:`) each name the commit that wrote them, so none is in both tables; if one were, the
/// commit table's value is kept.
pub(crate) fn scan_commit_keys(
    store: &dyn Store,
    keys: &FeedKeys,
    prefix: &[u8],
    start: &[u8],
    limit: usize,
) -> Result<Rows, StoreError> {
    let current = store.scan_from(keys.commit_table(), prefix, start, limit)?;
    let Some(legacy) = keys.legacy_commit_table() else {
        return Ok(current);
    };
    let older = store.scan_from(legacy, prefix, start, limit)?;
    if older.is_empty() {
        return Ok(current);
    }
    let mut merged = Vec::with_capacity(limit.min(current.len() + older.len()));
    let (mut current, mut older) = (current.into_iter().peekable(), older.into_iter().peekable());
    while merged.len() < limit {
        let next = match (current.peek(), older.peek()) {
            (Some((a, _)), Some((b, _))) if b < a => older.next(),
            (Some((a, _)), Some((b, _))) if b == a => {
                older.next();
                current.next()
            }
            (Some(_), _) => current.next(),
            (None, _) => older.next(),
        };
        match next {
            Some(row) => merged.push(row),
            None => break,
        }
    }
    Ok(merged)
}

/// The own feed's keys in `store`: spans of the size its commit table records
/// ([`SPANS_KEY`]), or with none recorded, [`SPAN_SEQ_BITS`] for a feed of at most one such
/// span (its index keys are in span 0 at either size) and [`WIDE_SPAN_SEQ_BITS`] for a
/// larger one (an older build's); lookups skip the older layout's `id:` and `h:` keys when
/// the store holds none ([`FeedKeys::spanned_only`]).
pub(crate) fn own_feed_keys(store: &dyn Store) -> Result<OwnFeedKeys, FeedError> {
    let own = FeedKeys::OWN;
    let (bits, recorded) = match store.get(own.commit_table(), SPANS_KEY)? {
        Some(value) => match value.as_slice() {
            [bits] if [SPAN_SEQ_BITS, WIDE_SPAN_SEQ_BITS].contains(&u32::from(*bits)) => {
                (u32::from(*bits), true)
            }
            _ => {
                return Err(FeedError::Corrupt(
                    "the record of the ledger's index span size is garbled".to_owned(),
                ));
            }
        },
        None => {
            let size = stored_head(store, &own)?.map_or(0, |h| h.head.seq);
            let bits = if size <= own.span_len() {
                SPAN_SEQ_BITS
            } else {
                WIDE_SPAN_SEQ_BITS
            };
            (bits, false)
        }
    };
    let keys = own.with_span_bits(bits);
    let keys = if has_unspanned_index(store, &keys)? {
        keys
    } else {
        keys.spanned_only()
    };
    Ok(OwnFeedKeys { keys, recorded })
}

/// The own feed's keys in a store ([`own_feed_keys`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnFeedKeys {
    pub(crate) keys: FeedKeys,
    /// The span size is in the store (else the next commit records it).
    pub(crate) recorded: bool,
}

/// Whether the feed at `keys` has any index key of an older layout (`id:` or `h:`) in its
/// index table or its legacy index table.
pub(crate) fn has_unspanned_index(store: &dyn Store, keys: &FeedKeys) -> Result<bool, StoreError> {
    let tables = [Some(keys.index_table()), keys.legacy_index_table()];
    for table in tables.into_iter().flatten() {
        for prefix in [
            keys.place(ID_PREFIX.to_vec()),
            keys.place(HASH_PREFIX.to_vec()),
        ] {
            if !store.scan_from(table, &prefix, &prefix, 1)?.is_empty() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

pub(crate) fn seq_value(bytes: &[u8], what: &str) -> Result<u64, FeedError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| FeedError::Corrupt(format!("{what} index value is not a seq")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use vserv_core::ServerIdentity;
    use vserv_core::ledger::Head;
    use vserv_store::kv::Op;
    use vserv_store::memory::MemoryStore;

    use super::*;
    use crate::ledger_ids::{IdFilter, fill_id_filter};
    use crate::ledger_index_tail::IndexTail;

    /// The last seq of the feeds [`spanned_feed`] stores: in span 3.
    const LAST: u64 = (3 << SPAN_SEQ_BITS) + 5;

    /// The seqs [`spanned_feed`] indexes in spans: each span's first and last entry where
    /// the feed has them.
    const SPANNED: [u64; 6] = [
        1,
        1 << SPAN_SEQ_BITS,
        (1 << SPAN_SEQ_BITS) + 1,
        2 << SPAN_SEQ_BITS,
        (2 << SPAN_SEQ_BITS) + 7,
        LAST,
    ];

    fn record_id(seq: u64) -> Vec<u8> {
        format!("r{seq}").into_bytes()
    }

    fn hash(seq: u64) -> [u8; 32] {
        let mut hash = [0xab; 32];
        hash[..8].copy_from_slice(&seq.to_be_bytes());
        hash
    }

    /// The own feed and replica 3, both in spans of 2^[`SPAN_SEQ_BITS`] entries (a replica
    /// has wider ones: the lookups are the same).
    fn feeds() -> [FeedKeys; 2] {
        [
            FeedKeys::OWN,
            FeedKeys::replica(3).with_span_bits(SPAN_SEQ_BITS),
        ]
    }

    /// A store holding, for both [`feeds`], a signed head at [`LAST`], the record id and
    /// hash keys of the [`SPANNED`] entries in their spans, of entry 9 under the older
    /// layout in the index table, and of entry 8 (own feed only) in the legacy index table.
    /// Besides, a key of entry `LAST + 2^16` in its span, past the head's.
    fn spanned_feed() -> MemoryStore {
        let store = MemoryStore::new();
        let identity = ServerIdentity::generate(&mut StdRng::seed_from_u64(1));
        let head = Head {
            origin: identity.public_key(),
            seq: LAST,
            hash: [1; 32],
        };
        let seq_value = |seq: u64| seq.to_be_bytes().to_vec();
        let mut ops = Vec::new();
        for keys in feeds() {
            let mut put = |table: Table, key: Vec<u8>, seq: u64| {
                ops.push(Op::Put {
                    table,
                    key,
                    value: seq_value(seq),
                });
            };
            let index = keys.index_table();
            for seq in SPANNED.into_iter().chain([LAST + (1 << SPAN_SEQ_BITS)]) {
                put(index, keys.id_at(seq, &record_id(seq)), seq);
                put(index, keys.hash_at(seq, &hash(seq)), seq);
            }
            put(index, keys.id(&record_id(9)), 9);
            put(index, keys.hash(&hash(9)), 9);
            if let Some(legacy) = keys.legacy_index_table() {
                put(legacy, keys.id(&record_id(8)), 8);
                put(legacy, keys.hash(&hash(8)), 8);
            }
            ops.push(Op::Put {
                table: keys.commit_table(),
                key: keys.head(),
                value: SignedHead::sign(&identity, head).to_bytes().to_vec(),
            });
        }
        store.commit(ops).unwrap();
        store
    }

    #[test]
    fn an_entrys_span_is_its_seq_less_one_shifted_by_the_feeds_span_bits() {
        let own = FeedKeys::OWN;
        assert_eq!(own.span_at(0), 0);
        assert_eq!(own.span_at(1), 0);
        assert_eq!(own.span_at(1 << SPAN_SEQ_BITS), 0);
        assert_eq!(own.span_at((1 << SPAN_SEQ_BITS) + 1), 1);
        assert_eq!(own.span_at(LAST), 3);
        assert_eq!(own.span_at(u64::MAX), u32::MAX);
        let wide = FeedKeys::replica(2);
        assert_eq!(wide.span_bits(), WIDE_SPAN_SEQ_BITS);
        assert_eq!(wide.span_at(1 << WIDE_SPAN_SEQ_BITS), 0);
        assert_eq!(wide.span_at((1 << WIDE_SPAN_SEQ_BITS) + 1), 1);
        assert_eq!(own.with_span_bits(WIDE_SPAN_SEQ_BITS).span_at(LAST), 0);
        assert_eq!(
            FeedKeys::OWN.id_at(LAST, b"r"),
            [b"x".as_slice(), &[0, 0, 0, 3], b"ir"].concat()
        );
        assert_eq!(
            FeedKeys::replica(2).hash_at(1, &[7; 32])[..11],
            [0, 0, 0, 0, 2, b'x', 0, 0, 0, 0, b'h']
        );
    }

    #[test]
    fn lookups_find_keys_in_every_span_up_to_the_heads_and_in_the_older_layouts() {
        let store = spanned_feed();
        for keys in feeds() {
            let mut found: Vec<u64> = SPANNED.to_vec();
            found.push(9);
            if keys.legacy_index_table().is_some() {
                found.push(8);
            }
            for seq in found {
                assert_eq!(
                    seq_of_id(&store, &keys, &record_id(seq), Spans::UpToHead).unwrap(),
                    Some(seq)
                );
                assert_eq!(
                    seq_of_hash(&store, &keys, &hash(seq), Spans::UpToHead).unwrap(),
                    Some(seq)
                );
                assert_eq!(
                    hash_index_value(&store, &keys, seq, &hash(seq)).unwrap(),
                    Some(seq.to_be_bytes().to_vec())
                );
            }
            // Past the head's span, never indexed, or in another span than the seq's.
            for seq in [LAST + (1 << SPAN_SEQ_BITS), 2, 7] {
                assert_eq!(
                    seq_of_id(&store, &keys, &record_id(seq), Spans::UpToHead).unwrap(),
                    None
                );
                assert_eq!(
                    seq_of_hash(&store, &keys, &hash(seq), Spans::UpToHead).unwrap(),
                    None
                );
            }
            assert_eq!(
                hash_index_value(&store, &keys, LAST, &hash(1)).unwrap(),
                None
            );
        }
        // A feed without a head holds nothing.
        let none = FeedKeys::replica(4);
        assert_eq!(
            seq_of_id(&store, &none, &record_id(1), Spans::UpToHead).unwrap(),
            None
        );
    }

    #[test]
    fn a_lookup_asks_the_spans_of_a_long_feed_a_few_at_a_time_down_to_the_first() {
        let store = MemoryStore::new();
        let identity = ServerIdentity::generate(&mut StdRng::seed_from_u64(2));
        let keys = FeedKeys::replica(5);
        let last = (3 * SPANS_PER_READ as u64) << keys.span_bits();
        let middle = (SPANS_PER_READ as u64 + 7) << keys.span_bits();
        let head = Head {
            origin: identity.public_key(),
            seq: last,
            hash: [1; 32],
        };
        let mut ops = vec![Op::Put {
            table: keys.commit_table(),
            key: keys.head(),
            value: SignedHead::sign(&identity, head).to_bytes().to_vec(),
        }];
        for seq in [1, middle, last] {
            ops.push(Op::Put {
                table: keys.index_table(),
                key: keys.id_at(seq, &record_id(seq)),
                value: seq.to_be_bytes().to_vec(),
            });
        }
        store.commit(ops).unwrap();
        for seq in [1, middle, last] {
            assert_eq!(
                seq_of_id(&store, &keys, &record_id(seq), Spans::UpToHead).unwrap(),
                Some(seq)
            );
        }
        assert_eq!(
            seq_of_id(&store, &keys, &record_id(2), Spans::UpToHead).unwrap(),
            None
        );
    }

    #[test]
    fn the_id_filter_reads_the_ids_of_every_span_up_to_the_heads_and_the_older_layouts() {
        let store = spanned_feed();
        let filter = IdFilter::new(0, FeedKeys::OWN.span_bits());
        let tail = IndexTail::open(&store, 4, Ok(FeedKeys::OWN));
        // Every id the feed has (the one past the head's span is not the feed's).
        let read = fill_id_filter(&filter, &store, &FeedKeys::OWN, &tail).unwrap();
        assert_eq!(read, 8);
        let lookup = filter.lookup().expect("ready");
        for seq in SPANNED.into_iter().chain([8, 9]) {
            assert!(!lookup.surely_absent(&record_id(seq)), "{seq}");
        }
        // Each spanned id is in its span's filter, and found asking only the spans whose
        // filter may hold it; the older layout's are found under their keys after those.
        for seq in SPANNED.into_iter().chain([8, 9]) {
            let spans = lookup.spans_maybe_holding(&record_id(seq));
            if SPANNED.contains(&seq) {
                assert!(
                    spans.contains(&FeedKeys::OWN.span_at(seq)),
                    "{seq}: {spans:?}"
                );
            }
            assert!(spans.iter().all(|&span| span <= 3), "{seq}: {spans:?}");
            assert_eq!(
                seq_of_id(&store, &FeedKeys::OWN, &record_id(seq), Spans::Only(&spans)).unwrap(),
                Some(seq)
            );
        }
    }

    /// A store over a [`MemoryStore`] that counts its scans.
    struct CountedScans {
        inner: MemoryStore,
        scans: std::sync::atomic::AtomicU64,
    }

    impl Store for CountedScans {
        fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(table, key)
        }
        fn scan(&self, table: Table, prefix: &[u8]) -> Result<Rows, StoreError> {
            self.scans
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.scan(table, prefix)
        }
        fn scan_from(
            &self,
            table: Table,
            prefix: &[u8],
            start: &[u8],
            limit: usize,
        ) -> Result<Rows, StoreError> {
            self.scans
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.scan_from(table, prefix, start, limit)
        }
        fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
            self.inner.commit(ops)
        }
    }

    #[test]
    fn the_id_filter_reads_only_the_spans_holding_keys_whatever_the_head_says() {
        let store = CountedScans {
            inner: spanned_feed(),
            scans: Default::default(),
        };
        // A head at the last seq there is: 2^32 spans, four of which hold ids.
        let identity = ServerIdentity::generate(&mut StdRng::seed_from_u64(1));
        let head = Head {
            origin: identity.public_key(),
            seq: u64::MAX,
            hash: [1; 32],
        };
        let keys = FeedKeys::OWN;
        store
            .commit(vec![Op::Put {
                table: keys.commit_table(),
                key: keys.head(),
                value: SignedHead::sign(&identity, head).to_bytes().to_vec(),
            }])
            .unwrap();
        let filter = IdFilter::new(0, FeedKeys::OWN.span_bits());
        let tail = IndexTail::open(&store, 4, Ok(FeedKeys::OWN));
        let read = fill_id_filter(&filter, &store, &keys, &tail).unwrap();
        // The six spanned ids, the one past the old head's span, and the two unspanned.
        assert_eq!(read, 9);
        let scans = || store.scans.load(std::sync::atomic::Ordering::Relaxed);
        // One to find each span, one for its ids and one for its hashes, a few for the
        // older layouts.
        assert!(scans() <= 25, "{} scans for five spans", scans());
        // Lookups without the filter likewise ask only the spans holding keys.
        let before = scans();
        for seq in SPANNED.into_iter().chain([9, 8]) {
            assert_eq!(
                seq_of_id(&store, &keys, &record_id(seq), Spans::UpToHead).unwrap(),
                Some(seq)
            );
            assert_eq!(
                seq_of_hash(&store, &keys, &hash(seq), Spans::UpToHead).unwrap(),
                Some(seq)
            );
        }
        assert_eq!(
            seq_of_id(&store, &keys, &record_id(2), Spans::UpToHead).unwrap(),
            None
        );
        let per_lookup = (scans() - before) / 17;
        assert!(per_lookup <= 6, "{per_lookup} scans per lookup");
    }

    #[test]
    fn a_built_filter_sends_a_lookup_by_id_or_by_hash_to_about_one_span() {
        // 2,000 entries in each of spans 0, 1, 16 and 17 (two groups of 16 spans), the last
        // span's up to the head's seq.
        let store = MemoryStore::new();
        let identity = ServerIdentity::generate(&mut StdRng::seed_from_u64(3));
        let keys = FeedKeys::OWN;
        let seqs: Vec<u64> = [0u64, 1, 16, 17]
            .into_iter()
            .flat_map(|span| (1..=2_000).map(move |i| (span << SPAN_SEQ_BITS) + i))
            .collect();
        let last = seqs.last().copied().unwrap();
        let head = Head {
            origin: identity.public_key(),
            seq: last,
            hash: [1; 32],
        };
        let put = |key: Vec<u8>, seq: u64| Op::Put {
            table: keys.index_table(),
            key,
            value: seq.to_be_bytes().to_vec(),
        };
        let mut ops: Vec<Op> = seqs
            .iter()
            .flat_map(|&seq| {
                [
                    put(keys.id_at(seq, &record_id(seq)), seq),
                    put(keys.hash_at(seq, &hash(seq)), seq),
                ]
            })
            .collect();
        ops.push(Op::Put {
            table: keys.commit_table(),
            key: keys.head(),
            value: SignedHead::sign(&identity, head).to_bytes().to_vec(),
        });
        store.commit(ops).unwrap();
        let filter = IdFilter::new(0, FeedKeys::OWN.span_bits());
        let tail = IndexTail::open(&store, 4, Ok(FeedKeys::OWN));
        assert_eq!(
            fill_id_filter(&filter, &store, &keys, &tail).unwrap(),
            8_000
        );
        let lookup = filter.lookup().expect("ready");
        let (mut by_id, mut by_hash) = (0, 0);
        for &seq in &seqs {
            let span = FeedKeys::OWN.span_at(seq);
            let spans = lookup.spans_maybe_holding(&record_id(seq));
            assert!(spans.contains(&span), "{seq}: {spans:?}");
            by_id += spans.len();
            let spans = lookup.spans_maybe_holding_hash(&hash(seq));
            assert!(spans.contains(&span), "{seq}: {spans:?}");
            assert!(spans.is_sorted_by(|a, b| a > b), "{spans:?}");
            by_hash += spans.len();
            assert_eq!(
                seq_of_hash(&store, &keys, &hash(seq), Spans::Only(&spans)).unwrap(),
                Some(seq)
            );
        }
        // Each of the three other spans answers "maybe" well under 1% of the time.
        assert!(by_id <= 8_240, "{by_id} spans asked for 8,000 ids");
        assert!(by_hash <= 8_240, "{by_hash} spans asked for 8,000 hashes");
        assert!(lookup.spans_maybe_holding_hash(&[9; 32]).len() <= 1);
    }

    proptest! {
        /// Every key in a span reads back as its span and tag; any other bytes read as a
        /// span key only if they have the layout's shape, and never panic.
        #[test]
        fn span_of_reads_back_span_keys_and_never_panics(
            span in any::<u32>(),
            tag in any::<u8>(),
            rest in proptest::collection::vec(any::<u8>(), 0..40),
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            feed in 0u32..4,
        ) {
            let keys = if feed == 0 { FeedKeys::OWN } else { FeedKeys::replica(feed) };
            let key = [keys.span(span, tag).as_slice(), &rest].concat();
            prop_assert_eq!(keys.span_of(&key), Some((span, tag)));
            prop_assert!(key.starts_with(&keys.spans()));
            if let Some((at, t)) = keys.span_of(&bytes) {
                prop_assert!(bytes.starts_with(&keys.span(at, t)));
            }
        }

        /// Paging through a per-commit prefix with [`scan_commit_keys`] reads the keys of
        /// both tables once each, in key order, the commit table's value winning a key held
        /// in both; keys outside the prefix are never read.
        #[test]
        fn scan_commit_keys_pages_through_both_tables(
            current in proptest::collection::btree_map(0u8..40, any::<u8>(), 0..20),
            older in proptest::collection::btree_map(0u8..40, any::<u8>(), 0..20),
            page in 1usize..6,
        ) {
            let store = MemoryStore::new();
            let keys = FeedKeys::OWN;
            let key = |k: u8| [SIGNED_HEAD_PREFIX, &[k]].concat();
            let mut ops = vec![
                Op::Put { table: keys.commit_table(), key: b"sg".to_vec(), value: vec![] },
                Op::Put { table: Table::Ledger, key: b"t".to_vec(), value: vec![] },
            ];
            let mut expected = BTreeMap::new();
            for (table, rows) in [(Table::Ledger, &older), (keys.commit_table(), &current)] {
                for (&k, &v) in rows {
                    ops.push(Op::Put { table, key: key(k), value: vec![v] });
                    expected.insert(key(k), vec![v]);
                }
            }
            store.commit(ops).unwrap();
            let mut read = Vec::new();
            let mut start = Vec::new();
            loop {
                let rows =
                    scan_commit_keys(&store, &keys, SIGNED_HEAD_PREFIX, &start, page).unwrap();
                prop_assert!(rows.len() <= page);
                let full = rows.len() == page;
                if let Some((last, _)) = rows.last() {
                    start = [last.as_slice(), &[0]].concat();
                }
                read.extend(rows);
                if !full {
                    break;
                }
            }
            prop_assert_eq!(read, expected.into_iter().collect::<Vec<_>>());
        }
    }
}
