//! An in-memory filter of the own feed's record ids, so that appending a new id (nearly
//! every append) costs no store read, nor does looking up an id the feed does not have
//! (which would otherwise ask every index span).
//!
//! Every append checks that its record id is not stored yet. In the store that is a point
//! read that misses: lookups in fjall's in-memory tables (skiplists of random keys) and a
//! filter probe per on-disk table, about a tenth of the process's CPU per durable append at
//! 1M entries, more as the feed grows. This filter answers "surely absent" for almost every
//! new id from memory; only a "maybe" (an id that is stored, or a false positive, about 1%
//! per generation) goes to the store.
//!
//! The filter holds every id of every commit prepared by this process (added when its record
//! is submitted, before the commit can be prepared) and, once [`IdFilter::mark_ready`] is called,
//! every id stored before: the builder ([`crate::ledger::Ledger::id_filter_build`]) scans the
//! index after the ledger, and so this filter, was made. Until then it answers "maybe" to
//! everything and appends read the store as before. An id of a commit that failed stays in
//! the filter: a false positive, answered by the store.
//!
//! Bloom filters cannot grow, so the filter is a list of generations: ids go into the last,
//! and when it holds its capacity a new one four times larger follows. A lookup asks every
//! generation (a few at most: the first is sized for twice the feed the process started
//! with). Memory: about 1.2 bytes per id of capacity, 25 MiB for a feed that grew from
//! nothing to 10M entries in one run, 24 MiB for one of 10M when the server starts.
//!
//! Beside it, per group of index spans (`ledger_layout.rs`; 2^20 entries, 16 of the own
//! feed's spans), masks of which of its spans each stored id and each stored hash may be in
//! (`ledger_span_masks.rs`), so that a lookup asks the store only the spans that may hold
//! its key instead of every span (153 at 10M entries): it reads one block of memory per
//! group and asks about one span. The builder adds each span's stored ids and hashes, and
//! each index bulk adds its own before the tail forgets them, so that a lookup that missed
//! in the tail finds every stored key's span among those it asks. A group of several spans
//! also keeps a Bloom filter of all its keys, asked first: a key is in one group, and
//! testing the sixteen spans of each of the others in their masks cost more than the rest
//! of the lookup (see [`GroupKeys`]). About 6.2 bytes per entry more (25 bits per id and per
//! hash; 15 for feeds whose spans are groups of their own).

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use fastbloom::AtomicBloomFilter;
use vserv_store::kv::Store;

use crate::ledger_index_tail::IndexTail;
use crate::ledger_layout::{
    FeedError, FeedKeys, SPAN_HASH_TAG, SPAN_ID_TAG, present_spans, stored_head,
};
use crate::ledger_span_masks::SpanMasks;

/// The false positive rate each generation is sized for, when full.
const FALSE_POSITIVE_RATE: f64 = 0.01;

/// log2 of the entries whose stored ids and hashes share a group's masks (see
/// [`IdFilter::add_stored`]).
const GROUP_SEQ_BITS: u32 = 20;

/// log2 of the most spans in a group (feeds with spans of fewer than 2^16 entries have
/// smaller groups).
const MAX_SLOT_BITS: u32 = 4;

/// The least capacity of the first generation (1.2 MiB of filter).
const MIN_CAPACITY: usize = 1 << 20;

/// The most capacity of the first generation (77 MiB of filter), however large the stored
/// head says the feed is: a damaged head cannot make the server allocate without bound.
/// A larger feed's filter grows by generations as its ids are read.
const MAX_FIRST_CAPACITY: usize = 1 << 26;

/// How much larger each generation is than the one before.
const GROWTH: usize = 4;

/// Index keys read per store page by [`fill_id_filter`].
const SCAN_PAGE: usize = 4096;

/// Adds every record id of the own feed (those of `tail`, then its index table's record id
/// keys in `store` at `keys`, in each span up to the head's that holds any, then those of an
/// older layout in its index table and its legacy index table if it has one) to `filter`,
/// each stored one also to its span's filter, then marks the filter ready. Returns how many
/// ids it read. Safe while the feed is appended to: the commits it does not see add their
/// own ids, and an id the tail no longer held when it was read had been stored (and added to
/// its span's filter by its bulk), so the scan after finds it.
pub(crate) fn fill_id_filter(
    filter: &IdFilter,
    store: &dyn Store,
    keys: &FeedKeys,
    tail: &IndexTail,
) -> Result<u64, FeedError> {
    let trailing = tail.ids();
    filter.add(trailing.iter().map(|id| &**id));
    let mut count = u64::try_from(trailing.len()).unwrap_or(u64::MAX);
    // Read after the tail: an id that had left it was stored by then, in a span up to the
    // head's.
    if let Some(head) = stored_head(store, keys)? {
        count = count.saturating_add(fill_spans(
            filter,
            store,
            keys,
            keys.span_at(head.head.seq),
        )?);
    }
    let older = keys.id(&[]);
    let tables = [Some(keys.index_table()), keys.legacy_index_table()];
    for table in tables
        .into_iter()
        .flatten()
        .filter(|_| keys.has_unspanned_index())
    {
        let read = scan_pages(store, table, &older, |ids, _| filter.add(ids))?;
        count = count.saturating_add(read);
    }
    filter.mark_ready();
    Ok(count)
}

/// Adds the record ids of each span up to `last` that holds any index key ([`present_spans`]:
/// a damaged head's seq cannot make it walk billions of empty spans) to `filter`, and its
/// ids and hashes to the masks of its group. Returns how many ids it read.
fn fill_spans(
    filter: &IdFilter,
    store: &dyn Store,
    keys: &FeedKeys,
    last: u32,
) -> Result<u64, FeedError> {
    let mut count = 0u64;
    for span in present_spans(store, keys, last)? {
        for (tag, what) in [(SPAN_ID_TAG, Stored::Ids), (SPAN_HASH_TAG, Stored::Hashes)] {
            let prefix = keys.span(span, tag);
            let read = scan_pages(
                store,
                keys.index_table(),
                &prefix,
                |items, first_page_full| {
                    // Every span but the last holds a span's worth of keys in a sound feed:
                    // one that does not fill a page is sized for what it holds.
                    let expected = if span == last || first_page_full {
                        span_capacity(keys)
                    } else {
                        SCAN_PAGE
                    };
                    let items: Vec<&[u8]> = items.collect();
                    if what == Stored::Ids {
                        filter.add(items.iter().copied());
                    }
                    filter.add_stored(span, expected, what, items);
                },
            )?;
            if what == Stored::Ids {
                count = count.saturating_add(read);
            }
        }
    }
    Ok(count)
}

/// Which index keys of a span [`IdFilter::add_stored`] is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Record ids.
    Ids,
    /// Entry hashes (32 bytes each).
    Hashes,
}

/// The keys of each kind a span of the feed at `keys` holds: its entries.
pub(crate) fn span_capacity(keys: &FeedKeys) -> usize {
    usize::try_from(keys.span_len()).unwrap_or(usize::MAX)
}

/// Calls `add` with the key suffixes after `prefix` of each page of `table`'s keys under
/// `prefix`, and whether the first page was full. Returns how many keys it read.
fn scan_pages(
    store: &dyn Store,
    table: vserv_store::kv::Table,
    prefix: &[u8],
    mut add: impl FnMut(&mut dyn Iterator<Item = &[u8]>, bool),
) -> Result<u64, FeedError> {
    let mut start = prefix.to_vec();
    let mut count = 0u64;
    let mut first_page_full = None;
    loop {
        let rows = store.scan_from(table, prefix, &start, SCAN_PAGE)?;
        let full = rows.len() == SCAN_PAGE;
        let first_full = *first_page_full.get_or_insert(full);
        add(
            &mut rows.iter().filter_map(|(key, _)| key.get(prefix.len()..)),
            first_full,
        );
        count = count.saturating_add(rows.len() as u64);
        match rows.last() {
            Some((key, _)) if full => start = [key.as_slice(), &[0]].concat(),
            _ => break,
        }
    }
    Ok(count)
}

/// The record ids of the own feed, as a growable, concurrent Bloom filter. Every method is
/// safe to call from many threads.
pub(crate) struct IdFilter {
    /// The hasher of every generation (random keys, so ids cannot be chosen to collide).
    hasher: RandomState,
    generations: RwLock<Vec<Generation>>,
    /// Ids added to the last generation.
    in_last: AtomicUsize,
    /// Every id stored before the filter was made has been added.
    ready: AtomicBool,
    /// The ids and hashes whose keys are stored in the index spans, by group of spans (same
    /// hasher).
    groups: RwLock<BTreeMap<u32, SpanGroup>>,
    /// log2 of the spans per group: 0 when a span holds a group's entries (or more).
    spans_per_group_bits: u32,
}

/// The stored ids and hashes of one group of index spans (2^[`GROUP_SEQ_BITS`] entries),
/// each span a slot of the group's masks (`ledger_span_masks.rs`).
struct SpanGroup {
    /// The slots of the spans that hold stored keys, one bit each.
    present: AtomicU64,
    /// The stored ids.
    ids: GroupKeys,
    /// The stored hashes.
    hashes: GroupKeys,
}

impl SpanGroup {
    fn keys(&self, what: Stored) -> &GroupKeys {
        match what {
            Stored::Ids => &self.ids,
            Stored::Hashes => &self.hashes,
        }
    }
}

/// The keys of one kind stored in a group's spans: which span each may be in, and, for a
/// group of several spans, whether it may be in the group at all. A lookup by id at 10M
/// entries tested the 16 spans of each of the ten groups in their masks, 15.7% of its CPU
/// (153 slot tests, each hashing the key with the slot, and about 0.4 spans asked of the
/// store in vain); the group's filter, one test of one block, leaves about one group to
/// test span by span. A scratch timing over ten full groups (a build running beside it):
/// 1.1-1.3 µs per lookup of a stored key against 5.0-6.2 µs.
struct GroupKeys {
    /// Every key of the group, when it has several spans (`None`: the masks of its one span
    /// answer as well).
    any: Option<AtomicBloomFilter<RandomState>>,
    /// The spans each key may be in.
    spans: SpanMasks,
}

impl GroupKeys {
    /// For `capacity` keys in `slots` spans.
    fn new(capacity: usize, slots: usize, hasher: &RandomState) -> GroupKeys {
        GroupKeys {
            any: (slots > 1).then(|| bloom_filter(capacity, hasher)),
            spans: SpanMasks::new(capacity),
        }
    }

    /// Adds the key of `hash` to `slot`.
    fn insert(&self, hash: u64, slot: u32) {
        if let Some(any) = &self.any {
            any.insert_hash(hash);
        }
        self.spans.insert(hash, slot);
    }

    /// The slots among `present` (bit `s` for slot `s`) that may hold the key of `hash`,
    /// highest first.
    fn slots_maybe_holding(&self, hash: u64, present: u64) -> impl Iterator<Item = u32> {
        let in_group = self.any.as_ref().is_none_or(|any| any.contains_hash(hash));
        let mut rest = if in_group { present } else { 0 };
        let block = self.spans.block(hash);
        std::iter::from_fn(move || {
            let slot = u64::BITS.checked_sub(rest.leading_zeros() + 1)?;
            rest &= !(1 << slot);
            Some(slot)
        })
        .filter(move |&slot| block.may_hold(slot))
    }

    /// Memory in bytes.
    fn bytes(&self) -> usize {
        self.any.as_ref().map_or(0, |any| any.num_bits() / 8) + self.spans.bytes()
    }
}

/// One Bloom filter of the list, with the number of ids it was sized for.
struct Generation {
    filter: AtomicBloomFilter<RandomState>,
    capacity: usize,
}

impl Generation {
    fn new(capacity: usize, hasher: &RandomState) -> Generation {
        Generation {
            filter: bloom_filter(capacity, hasher),
            capacity,
        }
    }
}

/// A Bloom filter for `capacity` ids at [`FALSE_POSITIVE_RATE`], hashing with `hasher`.
fn bloom_filter(capacity: usize, hasher: &RandomState) -> AtomicBloomFilter<RandomState> {
    AtomicBloomFilter::with_false_pos(FALSE_POSITIVE_RATE)
        .hasher(hasher.clone())
        .expected_items(capacity.max(1))
}

impl IdFilter {
    /// An empty filter, not ready, whose first generation holds `expected` ids (at least
    /// [`MIN_CAPACITY`], at most [`MAX_FIRST_CAPACITY`]), for a feed whose index spans
    /// hold 2^`span_bits` entries.
    pub(crate) fn new(expected: usize, span_bits: u32) -> IdFilter {
        IdFilter::with_first_capacity(expected.clamp(MIN_CAPACITY, MAX_FIRST_CAPACITY), span_bits)
    }

    /// An empty filter, not ready, whose first generation holds `capacity` ids.
    fn with_first_capacity(capacity: usize, span_bits: u32) -> IdFilter {
        let hasher = RandomState::new();
        let first = Generation::new(capacity.max(1), &hasher);
        IdFilter {
            hasher,
            generations: RwLock::new(vec![first]),
            in_last: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            groups: RwLock::new(BTreeMap::new()),
            spans_per_group_bits: GROUP_SEQ_BITS.saturating_sub(span_bits).min(MAX_SLOT_BITS),
        }
    }

    fn read_groups(&self) -> RwLockReadGuard<'_, BTreeMap<u32, SpanGroup>> {
        // Filters are only inserted whole: a panic elsewhere leaves the map consistent.
        self.groups.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `items`, ids or hashes whose index keys are stored in `span`, to the masks of
    /// the span's group (made for `expected` keys per span, at most a span's entries, if the
    /// group has none yet). Call it before the keys' entries leave the index tail: a lookup
    /// that misses in the tail then asks their span ([`IdLookup::spans_maybe_holding`],
    /// [`IdLookup::spans_maybe_holding_hash`]). A lookup reads one block of each group's
    /// filter (ten groups at 10M entries), and the block of the masks of the groups that may
    /// hold the key (about one) to learn which of its spans may.
    pub(crate) fn add_stored<'a>(
        &self,
        span: u32,
        expected: usize,
        what: Stored,
        items: impl IntoIterator<Item = &'a [u8]>,
    ) {
        let shift = self.spans_per_group_bits;
        let (group, slot) = (span >> shift, span & ((1 << shift) - 1));
        if !self.read_groups().contains_key(&group) {
            let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
            let capacity = expected.saturating_mul(1 << shift);
            let slots = 1 << shift;
            groups.entry(group).or_insert_with(|| SpanGroup {
                present: AtomicU64::new(0),
                ids: GroupKeys::new(capacity, slots, &self.hasher),
                hashes: GroupKeys::new(capacity, slots, &self.hasher),
            });
        }
        let groups = self.read_groups();
        let Some(filters) = groups.get(&group) else {
            return;
        };
        let keys = filters.keys(what);
        for item in items {
            keys.insert(self.hasher.hash_one(item), slot);
        }
        filters.present.fetch_or(1 << slot, Ordering::Release);
    }

    fn read(&self) -> RwLockReadGuard<'_, Vec<Generation>> {
        // Generations are only pushed whole: a panic elsewhere leaves the list consistent.
        self.generations.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `ids`. Each is in the filter (for every [`IdFilter::lookup`] that starts after
    /// this returns, and for any that a happens-before edge orders after it) from then on.
    pub(crate) fn add<'a>(&self, ids: impl IntoIterator<Item = &'a [u8]>) {
        let full = {
            let generations = self.read();
            let Some(last) = generations.last() else {
                return;
            };
            let mut added = 0usize;
            for id in ids {
                last.filter.insert(id);
                added = added.saturating_add(1);
            }
            let now = self.in_last.fetch_add(added, Ordering::Relaxed);
            now.saturating_add(added) >= last.capacity
        };
        if full {
            self.grow();
        }
    }

    /// Starts a new generation if the last holds its capacity (checked again under the
    /// write lock, so two callers grow it once).
    fn grow(&self) {
        let mut generations = self.generations.write().unwrap_or_else(|p| p.into_inner());
        let Some(capacity) = generations.last().map(|g| g.capacity) else {
            return;
        };
        if self.in_last.load(Ordering::Relaxed) < capacity {
            return;
        }
        generations.push(Generation::new(
            capacity.saturating_mul(GROWTH),
            &self.hasher,
        ));
        self.in_last.store(0, Ordering::Relaxed);
    }

    /// Records that every id stored before this filter was made has been added: from now
    /// on a "surely absent" answer is trusted.
    pub(crate) fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the filter answers lookups (see [`IdFilter::mark_ready`]).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A view for looking up many ids under one lock: `None` while the filter is not ready.
    pub(crate) fn lookup(&self) -> Option<IdLookup<'_>> {
        self.is_ready().then(|| IdLookup {
            filter: self,
            generations: self.read(),
        })
    }

    /// The filter's size in bytes, its groups' masks included.
    pub(crate) fn bytes(&self) -> usize {
        let generations: usize = self.read().iter().map(|g| g.filter.num_bits() / 8).sum();
        let spans: usize = self
            .read_groups()
            .values()
            .map(|g| g.ids.bytes() + g.hashes.bytes())
            .sum();
        generations.saturating_add(spans)
    }
}

/// Lookups in a ready [`IdFilter`].
pub(crate) struct IdLookup<'a> {
    filter: &'a IdFilter,
    generations: RwLockReadGuard<'a, Vec<Generation>>,
}

impl IdLookup<'_> {
    fn hash(&self, id: &[u8]) -> u64 {
        std::hash::BuildHasher::hash_one(&self.filter.hasher, id)
    }

    /// `true` only if `id` was never added: not in the feed as of the filter's readiness or
    /// any commit prepared since.
    pub(crate) fn surely_absent(&self, id: &[u8]) -> bool {
        // Every generation shares the hasher: one hash serves them all.
        let hash = self.hash(id);
        !self
            .generations
            .iter()
            .any(|g| g.filter.contains_hash(hash))
    }

    /// The index spans whose keys may include `id`'s, newest first: every span its key may
    /// be stored in, for an id whose entry is not in the index tail when this is called
    /// (see [`IdFilter::add_stored`]).
    pub(crate) fn spans_maybe_holding(&self, id: &[u8]) -> Vec<u32> {
        self.spans_maybe(self.hash(id), Stored::Ids)
    }

    /// The index spans whose keys may include `hash`'s, newest first, as
    /// [`IdLookup::spans_maybe_holding`] for ids.
    pub(crate) fn spans_maybe_holding_hash(&self, hash: &[u8; 32]) -> Vec<u32> {
        self.spans_maybe(self.hash(hash), Stored::Hashes)
    }

    /// The spans, newest first, whose masks of `what` may hold the key of `hash`.
    fn spans_maybe(&self, hash: u64, what: Stored) -> Vec<u32> {
        let shift = self.filter.spans_per_group_bits;
        let mut spans = Vec::new();
        for (&group, filters) in self.filter.read_groups().iter().rev() {
            let present = filters.present.load(Ordering::Acquire);
            if present == 0 {
                continue;
            }
            let slots = filters.keys(what).slots_maybe_holding(hash, present);
            spans.extend(slots.map(|slot| (group << shift) | slot));
        }
        spans
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger_layout::{SPAN_SEQ_BITS, WIDE_SPAN_SEQ_BITS};

    fn id(i: u64) -> Vec<u8> {
        format!("record-{i}").into_bytes()
    }

    #[test]
    fn a_stored_id_is_sent_to_its_span_through_its_group() {
        // Spans of 2^16 entries, 16 to a group: spans 0 and 5 share group 0; 17 is in
        // group 1, 40 in group 2.
        let filter = IdFilter::new(0, SPAN_SEQ_BITS);
        let spans = [0u32, 5, 17, 40];
        for &span in &spans {
            let ids: Vec<Vec<u8>> = (0..2_000)
                .map(|i| id(u64::from(span) * 10_000 + i))
                .collect();
            filter.add_stored(span, 1 << 16, Stored::Ids, ids.iter().map(Vec::as_slice));
        }
        filter.mark_ready();
        let lookup = filter.lookup().expect("ready");
        let mut asked = 0;
        for &span in &spans {
            for i in 0..2_000 {
                let named = lookup.spans_maybe_holding(&id(u64::from(span) * 10_000 + i));
                assert!(named.contains(&span), "{span}: {named:?}");
                assert!(named.is_sorted_by(|a, b| a > b), "{named:?}");
                asked += named.len();
            }
        }
        // About one span each (1% false positives per filter).
        assert!(asked <= 8_400, "{asked}");
        let absent = (0..2_000)
            .map(|i| lookup.spans_maybe_holding(&id(900_000 + i)).len())
            .sum::<usize>();
        assert!(absent <= 200, "{absent}");
        // Groups and spans both count in the filter's size.
        assert!(filter.bytes() > IdFilter::new(0, SPAN_SEQ_BITS).bytes());
    }

    #[test]
    fn a_lookup_tests_the_spans_of_no_group_that_never_held_its_key() {
        // Two full groups of 16 spans, 1,000 ids each.
        let filter = IdFilter::new(0, SPAN_SEQ_BITS);
        for span in 0..32u32 {
            let ids: Vec<Vec<u8>> = (0..1_000)
                .map(|i| id(u64::from(span) * 10_000 + i))
                .collect();
            filter.add_stored(span, 1_000, Stored::Ids, ids.iter().map(Vec::as_slice));
        }
        filter.mark_ready();
        let lookup = filter.lookup().expect("ready");
        let mut in_other_group = 0;
        for span in 0..32u32 {
            for i in 0..1_000 {
                let named = lookup.spans_maybe_holding(&id(u64::from(span) * 10_000 + i));
                assert!(named.contains(&span), "{span}: {named:?}");
                in_other_group += named.iter().filter(|s| **s / 16 != span / 16).count();
            }
        }
        // Without the groups' own filters, the other group's 16 full span masks (0.3% false
        // positives each) name one of its spans for about 5% of the 32,000 lookups (~1,500).
        assert!(in_other_group <= 160, "{in_other_group}");
    }

    #[test]
    fn spans_as_large_as_a_group_are_their_own_group() {
        let filter = IdFilter::new(0, WIDE_SPAN_SEQ_BITS);
        filter.add_stored(3, 4_096, Stored::Ids, [id(1).as_slice()]);
        filter.add_stored(7, 4_096, Stored::Ids, [id(2).as_slice()]);
        filter.mark_ready();
        let lookup = filter.lookup().expect("ready");
        assert_eq!(lookup.spans_maybe_holding(&id(1)), [3]);
        assert_eq!(lookup.spans_maybe_holding(&id(2)), [7]);
    }

    #[test]
    fn a_filter_not_ready_answers_nothing() {
        let filter = IdFilter::with_first_capacity(100, SPAN_SEQ_BITS);
        filter.add([b"a".as_slice()]);
        assert!(filter.lookup().is_none());
        filter.mark_ready();
        let lookup = filter.lookup().expect("ready");
        assert!(!lookup.surely_absent(b"a"));
    }

    #[test]
    fn every_id_added_stays_in_as_generations_grow() {
        let filter = IdFilter::with_first_capacity(1_000, SPAN_SEQ_BITS);
        filter.mark_ready();
        let one = filter.bytes();
        let n = 10_000;
        let ids: Vec<Vec<u8>> = (0..n).map(id).collect();
        for chunk in ids.chunks(300) {
            filter.add(chunk.iter().map(Vec::as_slice));
        }
        // Generations of 1,000, 4,000 and 16,000 ids hold the 10,000.
        assert_eq!(filter.read().len(), 3);
        let bytes = filter.bytes();
        assert!(
            bytes >= 20 * one && bytes <= 22 * one,
            "{bytes} bytes, first {one}"
        );
        let lookup = filter.lookup().expect("ready");
        assert!(ids.iter().all(|i| !lookup.surely_absent(i)));
        // Ids never added are mostly answered absent (each generation about 1% false
        // positives when full, two are full here).
        let absent = (n..n + 10_000)
            .filter(|&i| lookup.surely_absent(&id(i)))
            .count();
        assert!(
            absent > 9_500,
            "only {absent} of 10000 new ids surely absent"
        );
    }

    #[test]
    fn the_first_generation_is_sized_for_the_expected_ids() {
        let small = IdFilter::new(0, SPAN_SEQ_BITS).bytes();
        let large = IdFilter::new(8 * MIN_CAPACITY, SPAN_SEQ_BITS).bytes();
        assert!(
            large >= 7 * small,
            "{large} bytes for 8M ids, {small} for 1M"
        );
    }

    proptest! {
        /// Whatever was added is never answered absent, across concurrent adds.
        #[test]
        fn added_ids_are_never_absent(ids in proptest::collection::vec(any::<Vec<u8>>(), 0..200)) {
            let filter = IdFilter::with_first_capacity(16, SPAN_SEQ_BITS);
            filter.mark_ready();
            let (a, b) = ids.split_at(ids.len() / 2);
            std::thread::scope(|s| {
                s.spawn(|| filter.add(a.iter().map(Vec::as_slice)));
                s.spawn(|| filter.add(b.iter().map(Vec::as_slice)));
            });
            let lookup = filter.lookup().expect("ready");
            prop_assert!(ids.iter().all(|i| !lookup.surely_absent(i)));
        }
    }
}
