//! Replicas over the in-memory store: feeds made by other identities' ledgers, cut into
//! segments at their signed heads, persisted, read back through every query, refused when
//! they do not continue what is held, and kept all-or-nothing across crashes.

use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::ServerIdentity;
use vserv_core::ledger::{Entry, EntryFields, Head, LedgerError, SignedHead};
use vserv_store::kv::{Op, Store, StoreError, Table};
use vserv_store::memory::MemoryStore;

use super::{ReplicaError, Replicas, Segment, ensure_epoch, epoch};
use crate::ledger::{
    CheckReport, FeedError, Ledger, MAX_SEGMENT_ENTRIES, NewRecord, SIGNED_HEAD_PREFIX,
};

fn identity(seed: u64) -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(seed),
    ))
}

fn record(i: u64) -> NewRecord {
    NewRecord {
        author: "alice".to_owned(),
        kind: if i.is_multiple_of(3) { "third" } else { "note" }.to_owned(),
        record_id: format!("r{i}").into_bytes(),
        body: vec![b'x'; 100],
        timestamp: 1000 + i,
    }
}

/// The own feed of a server with identity `seed`, holding `commits` commits of `per_commit`
/// records each; with the store it is in and that server's view of its feeds.
struct Origin {
    id: Arc<ServerIdentity>,
    ledger: Ledger,
    replicas: Replicas,
}

fn origin(seed: u64, commits: u64, per_commit: u64) -> Origin {
    let id = identity(seed);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let ledger = Ledger::new(store.clone(), id.clone());
    let replicas = Replicas::new(store, id.public_key());
    for c in 0..commits {
        let first = c * per_commit + 1;
        let results = ledger.append_batch((first..first + per_commit).map(record).collect());
        assert!(results.iter().all(Result::is_ok));
    }
    Origin {
        id,
        ledger,
        replicas,
    }
}

impl Origin {
    /// Every segment of the feed, read `max_bytes` at a time.
    fn segments(&self, max_bytes: usize) -> Vec<Segment> {
        let key = self.id.public_key();
        let mut out = Vec::new();
        let mut from = 1;
        while let Some(segment) = self.replicas.read_segment(&key, from, max_bytes).unwrap() {
            from = segment.head.head.seq + 1;
            out.push(segment);
        }
        out
    }
}

/// A server with identity 1 holding only its own (empty) feed.
fn holder() -> (Replicas, MemoryStore) {
    let store = MemoryStore::new();
    let replicas = Replicas::new(Arc::new(store.clone()), identity(1).public_key());
    (replicas, store)
}

/// Every key and value of the replicas' two tables in `store`.
fn replica_keys(store: &MemoryStore) -> [Vec<(Vec<u8>, Vec<u8>)>; 2] {
    [Table::Replicas, Table::ReplicaEntries].map(|table| store.scan(table, b"").unwrap())
}

fn persist(replicas: &Replicas, segment: &Segment) -> Result<Head, ReplicaError> {
    replicas.persist(&segment.head.head.origin, &segment.entries, &segment.head)
}

#[test]
fn segments_end_at_the_signed_heads_of_commits() {
    let o = origin(2, 4, 10);
    let key = o.id.public_key();
    // A budget of 1 byte cuts at every commit.
    let tiny = o.segments(1);
    let ends: Vec<u64> = tiny.iter().map(|s| s.head.head.seq).collect();
    assert_eq!(ends, [10, 20, 30, 40]);
    // Reaching the budget inside a commit runs to that commit's end.
    let entry_len = o.ledger.by_seq(1).unwrap().unwrap().encoded_len();
    let mid = o.segments(12 * entry_len);
    let ends: Vec<u64> = mid.iter().map(|s| s.head.head.seq).collect();
    assert_eq!(ends, [20, 40]);
    // A budget never reached runs to the head; from a seq inside a commit too.
    let all = o
        .replicas
        .read_segment(&key, 5, usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(all.entries.first().map(Entry::seq), Some(5));
    assert_eq!(all.head, o.ledger.head().unwrap().unwrap());
    for segment in tiny.iter().chain(&mid).chain([&all]) {
        segment.head.verify().unwrap();
        let seqs: Vec<u64> = segment.entries.iter().map(Entry::seq).collect();
        let first = seqs[0];
        assert_eq!(seqs, (first..=segment.head.head.seq).collect::<Vec<_>>());
        assert_eq!(
            segment.entries.last().map(Entry::hash),
            Some(segment.head.head.hash)
        );
    }
    // From 0 counts as 1; past the head, and an unknown origin, give nothing.
    assert_eq!(
        o.replicas.read_segment(&key, 0, 1).unwrap(),
        Some(tiny[0].clone())
    );
    assert_eq!(o.replicas.read_segment(&key, 41, 1).unwrap(), None);
    assert_eq!(
        o.replicas
            .read_segment(&identity(9).public_key(), 1, 1)
            .unwrap(),
        None
    );
}

#[test]
fn a_budget_reached_in_a_commit_that_ends_past_the_cap_cuts_at_the_head_before() {
    let o = origin(2, 2, 3000);
    let entry_len = o.ledger.by_seq(1).unwrap().unwrap().encoded_len();
    // The budget is reached at about entry 3500, in the commit that ends at 6000: more
    // than the cap from seq 1, so the segment ends at the commit before.
    let ends: Vec<u64> = o
        .segments(3500 * entry_len)
        .iter()
        .map(|s| s.head.head.seq)
        .collect();
    assert_eq!(ends, [3000, 6000]);
}

#[test]
fn a_feed_without_per_commit_heads_is_one_segment_to_its_head() {
    let o = origin(2, 3, 5);
    let store = o.replicas.store.clone();
    let table = crate::ledger::FeedKeys::OWN.commit_table();
    let keys = store.scan(table, SIGNED_HEAD_PREFIX).unwrap();
    assert_eq!(keys.len(), 3);
    store
        .commit(
            keys.into_iter()
                .map(|(key, _)| Op::Delete { table, key })
                .collect(),
        )
        .unwrap();
    let ends: Vec<u64> = o.segments(1).iter().map(|s| s.head.head.seq).collect();
    assert_eq!(ends, [15]);
}

#[test]
fn persisted_segments_are_read_by_every_query_like_the_origins_feed() {
    let o = origin(2, 5, 7);
    let (replicas, _store) = holder();
    let key = o.id.public_key();
    for segment in o.segments(1) {
        let head = persist(&replicas, &segment).unwrap();
        assert_eq!(head, segment.head.head);
    }
    let mine = o.ledger.feed();
    let copy = replicas.feed(key).unwrap();
    assert_eq!(copy.head().unwrap(), mine.head().unwrap());
    assert_eq!(copy.size().unwrap(), 35);
    assert_eq!(copy.check().unwrap(), CheckReport::Ok { seq: 35 });
    assert_eq!(
        copy.check_range(3, 20, &mut |_| {}).unwrap(),
        CheckReport::Ok { seq: 35 }
    );
    for seq in [1, 7, 8, 35] {
        assert_eq!(copy.by_seq(seq).unwrap(), mine.by_seq(seq).unwrap());
        let hash = mine.by_seq(seq).unwrap().unwrap().hash();
        assert_eq!(replicas.held_hash(&key, seq).unwrap(), Some(hash));
        assert_eq!(copy.by_hash(&hash).unwrap(), mine.by_seq(seq).unwrap());
    }
    assert_eq!(replicas.held_hash(&key, 36).unwrap(), None);
    assert_eq!(copy.by_id(b"r9").unwrap(), mine.by_id(b"r9").unwrap());
    assert_eq!(copy.by_position(-1).unwrap(), mine.by_position(-1).unwrap());
    for kind in ["third", "note", "none"] {
        assert_eq!(
            copy.size_of_kind(kind).unwrap(),
            mine.size_of_kind(kind).unwrap()
        );
        assert_eq!(
            copy.count(kind, 4, 30).unwrap(),
            mine.count(kind, 4, 30).unwrap()
        );
        assert_eq!(
            copy.list(Some(kind), 2, 33, 5).unwrap(),
            mine.list(Some(kind), 2, 33, 5).unwrap()
        );
    }
    assert_eq!(
        copy.list(None, 1, u64::MAX, 100).unwrap(),
        mine.list(None, 1, u64::MAX, 100).unwrap()
    );
    // The replica is cut at the same signed heads as the origin's feed.
    let from_copy: Vec<Segment> = {
        let mut out = Vec::new();
        let mut from = 1;
        while let Some(s) = replicas.read_segment(&key, from, 1).unwrap() {
            from = s.head.head.seq + 1;
            out.push(s);
        }
        out
    };
    assert_eq!(from_copy, o.segments(1));
    // The own feed of the holder stays empty and apart.
    assert_eq!(replicas.feed(replicas.own()).unwrap().size().unwrap(), 0);
}

#[test]
fn the_clock_lists_every_held_non_empty_feed_by_origin_bytes() {
    let (replicas, store) = holder();
    assert_eq!(replicas.clock().unwrap(), Vec::new());
    let origins: Vec<Origin> = (2..7).map(|seed| origin(seed, 2, seed)).collect();
    for o in &origins {
        for segment in o.segments(1) {
            persist(&replicas, &segment).unwrap();
        }
    }
    let mut expected: Vec<Head> = origins
        .iter()
        .map(|o| o.ledger.head().unwrap().unwrap().head)
        .collect();
    expected.sort_by(|a, b| a.origin.as_bytes().cmp(b.origin.as_bytes()));
    assert_eq!(replicas.clock().unwrap(), expected);
    // The own feed, once it holds entries, is listed in its place.
    let own = Ledger::new(Arc::new(store.clone()), identity(1));
    own.append_batch(vec![record(1)]);
    expected.push(own.head().unwrap().unwrap().head);
    expected.sort_by(|a, b| a.origin.as_bytes().cmp(b.origin.as_bytes()));
    assert_eq!(replicas.clock().unwrap(), expected);
    // Fork proofs and the fingerprint index are not feeds.
    replicas
        .quarantine(&origins[0].id.public_key(), b"proof")
        .unwrap();
    assert_eq!(replicas.clock().unwrap(), expected);
}

#[test]
fn feeds_are_found_by_fingerprint() {
    let (replicas, _store) = holder();
    let o = origin(2, 1, 3);
    let key = o.id.public_key();
    assert!(replicas.feed_of(&key.fingerprint()).unwrap().is_none());
    persist(&replicas, &o.segments(1)[0]).unwrap();
    let feed = replicas.feed_of(&key.fingerprint()).unwrap().unwrap();
    assert_eq!((feed.origin(), feed.size().unwrap()), (key, 3));
    let own = replicas
        .feed_of(&replicas.own().fingerprint())
        .unwrap()
        .unwrap();
    assert_eq!(own.origin(), replicas.own());
    assert_eq!(own.keys(), crate::ledger::FeedKeys::OWN.spanned_only());
}

/// A copy of `entry` with some fields changed (unsigned: only heads are signed).
fn altered(entry: &Entry, change: impl FnOnce(&mut EntryFields)) -> Entry {
    let mut fields = entry.fields().clone();
    change(&mut fields);
    Entry::new(fields).unwrap()
}

#[test]
fn segments_that_do_not_continue_the_held_head_are_refused_and_change_nothing() {
    let o = origin(2, 3, 4);
    let other = origin(3, 1, 4);
    let (replicas, store) = holder();
    let key = o.id.public_key();
    let segments = o.segments(1);
    persist(&replicas, &segments[0]).unwrap();
    let before = store.contents().unwrap();
    let refused = |entries: &[Entry], head: &SignedHead| {
        let result = replicas.persist(&key, entries, head);
        assert_eq!(store.contents().unwrap(), before, "{result:?}");
        result.unwrap_err()
    };
    let s = &segments[1];
    // The same segment again (what is held is the accept rule's to drop), and a gap.
    assert!(matches!(
        refused(&segments[0].entries, &segments[0].head),
        ReplicaError::Rejected(LedgerError::Gap {
            expected: 5,
            got: 1
        })
    ));
    assert!(matches!(
        refused(&segments[2].entries, &segments[2].head),
        ReplicaError::Rejected(LedgerError::Gap {
            expected: 5,
            got: 9
        })
    ));
    // A first entry that does not link to the held head.
    let mut unlinked = s.entries.clone();
    unlinked[0] = altered(&unlinked[0], |f| f.prev = [7; 32]);
    assert!(matches!(
        refused(&unlinked, &s.head),
        ReplicaError::Rejected(LedgerError::BadLink { seq: 5 })
    ));
    // A changed entry: its head no longer signs the chain.
    let mut changed = s.entries.clone();
    let last = changed.len() - 1;
    changed[last] = altered(&changed[last], |f| f.body = b"forged".to_vec());
    assert!(matches!(
        refused(&changed, &s.head),
        ReplicaError::Rejected(LedgerError::BadHead { seq: 8 })
    ));
    // A head signed by another key, a head of another origin, a head before the end.
    let mut forged = s.head;
    forged.signature = SignedHead::sign(&other.id, s.head.head).signature;
    assert!(matches!(
        refused(&s.entries, &forged),
        ReplicaError::Rejected(LedgerError::BadSignature { seq: 8 })
    ));
    let foreign = other.ledger.head().unwrap().unwrap();
    assert!(matches!(
        refused(&s.entries, &foreign),
        ReplicaError::Rejected(LedgerError::WrongOrigin { .. })
    ));
    let early = o.ledger.by_seq(6).unwrap().unwrap();
    let early = SignedHead::sign(&o.id, Head::of(&early));
    assert!(matches!(
        refused(&s.entries, &early),
        ReplicaError::Rejected(LedgerError::HeadOutOfOrder { .. })
    ));
    // Entries of another origin under this origin.
    assert!(matches!(
        refused(&other.segments(1)[0].entries, &s.head),
        ReplicaError::Rejected(LedgerError::WrongOrigin { .. })
    ));
    assert!(matches!(refused(&[], &s.head), ReplicaError::EmptySegment));
    // The own origin is never replicated into.
    assert!(matches!(
        replicas.persist(&replicas.own(), &s.entries, &s.head),
        Err(ReplicaError::OwnOrigin)
    ));
    assert_eq!(store.contents().unwrap(), before);
    // The genuine next segment still goes in.
    assert_eq!(persist(&replicas, s).unwrap(), s.head.head);
}

#[test]
fn a_segment_over_the_commit_cap_is_refused() {
    let o = origin(2, 0, 0);
    let n = MAX_SEGMENT_ENTRIES as u64 + 1;
    assert!(
        o.ledger
            .append_batch((1..=n).map(record).collect())
            .iter()
            .all(Result::is_ok)
    );
    let key = o.id.public_key();
    let entries: Vec<Entry> = (1..=n)
        .map(|seq| o.ledger.by_seq(seq).unwrap().unwrap())
        .collect();
    let (replicas, _store) = holder();
    let head = o.ledger.head().unwrap().unwrap();
    assert!(matches!(
        replicas.persist(&key, &entries, &head),
        Err(ReplicaError::SegmentTooLarge(len)) if len as u64 == n
    ));
    // Its segments end at its commits, whatever the budget: never more than the cap.
    for budget in [0, 1, usize::MAX] {
        let ends: Vec<u64> = o.segments(budget).iter().map(|s| s.head.head.seq).collect();
        assert_eq!(ends, [MAX_SEGMENT_ENTRIES as u64, n], "budget {budget}");
    }
    for segment in o.segments(1) {
        persist(&replicas, &segment).unwrap();
    }
    assert_eq!(
        replicas.feed(key).unwrap().check().unwrap(),
        CheckReport::Ok { seq: n }
    );
}

#[test]
fn a_quarantined_origin_keeps_its_first_proof_and_accepts_nothing() {
    let o = origin(2, 2, 3);
    let (replicas, _store) = holder();
    let key = o.id.public_key();
    let segments = o.segments(1);
    persist(&replicas, &segments[0]).unwrap();
    assert_eq!(replicas.quarantined(&key).unwrap(), None);
    assert_eq!(replicas.forks().unwrap(), Vec::new());
    assert!(replicas.quarantine(&key, b"first proof").unwrap());
    assert!(!replicas.quarantine(&key, b"second proof").unwrap());
    assert_eq!(
        replicas.quarantined(&key).unwrap(),
        Some(b"first proof".to_vec())
    );
    assert_eq!(
        replicas.forks().unwrap(),
        vec![(key, b"first proof".to_vec())]
    );
    assert!(matches!(
        persist(&replicas, &segments[1]),
        Err(ReplicaError::Quarantined(f)) if f == key.fingerprint()
    ));
    // What was held before stays readable.
    assert_eq!(replicas.feed(key).unwrap().size().unwrap(), 3);
}

#[test]
fn a_crash_during_persist_keeps_all_or_nothing_and_the_same_clock() {
    let o = origin(2, 4, 5);
    let segments = o.segments(1);
    for crash_at in 0..segments.len() {
        let (replicas, store) = holder();
        for segment in &segments[..crash_at] {
            persist(&replicas, segment).unwrap();
        }
        let clock = replicas.clock().unwrap();
        let contents = store.contents().unwrap();
        store.crash_after_commits(0);
        assert!(matches!(
            persist(&replicas, &segments[crash_at]),
            Err(ReplicaError::Feed(FeedError::Store(StoreError::Crashed)))
        ));
        assert_eq!(store.contents().unwrap(), contents);
        store.restart();
        // The process restarts: a new view over what the store kept.
        let reopened = Replicas::new(Arc::new(store.clone()), identity(1).public_key());
        assert_eq!(
            reopened.clock().unwrap(),
            clock,
            "crash at segment {crash_at}"
        );
        let next = segments[crash_at].entries[0].seq();
        assert_eq!(reopened.held_hash(&o.id.public_key(), next).unwrap(), None);
        for segment in &segments[crash_at..] {
            persist(&reopened, segment).unwrap();
        }
        assert_eq!(
            reopened.feed(o.id.public_key()).unwrap().check().unwrap(),
            CheckReport::Ok { seq: 20 }
        );
    }
}

#[test]
fn the_epoch_is_made_once_from_the_callers_rng() {
    let store = MemoryStore::new();
    assert_eq!(epoch(&store).unwrap(), None);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let made = ensure_epoch(&store, &mut rng).unwrap();
    assert_ne!(made, [0; 16]);
    let mut other = rand::rngs::StdRng::seed_from_u64(6);
    assert_eq!(ensure_epoch(&store, &mut other).unwrap(), made);
    store.crash_now();
    store.restart();
    assert_eq!(epoch(&store).unwrap(), Some(made));
    // Another store gets another epoch; a failed commit stores none.
    let second = MemoryStore::new();
    second.crash_after_commits(0);
    assert!(ensure_epoch(&second, &mut rng).is_err());
    second.restart();
    assert_eq!(epoch(&second).unwrap(), None);
    assert_ne!(ensure_epoch(&second, &mut rng).unwrap(), made);
    store
        .commit(vec![Op::Put {
            table: Table::Meta,
            key: super::layout::EPOCH_KEY.to_vec(),
            value: b"short".to_vec(),
        }])
        .unwrap();
    assert!(epoch(&store).is_err());
}

#[test]
fn replicas_on_disk_survive_a_reopen_with_the_same_clock_and_epoch() {
    let o = origin(2, 3, 4);
    let dir = tempfile::tempdir().unwrap();
    let own = identity(1).public_key();
    let (clock, made) = {
        let store: Arc<dyn Store> = Arc::new(vserv_store::FjallStore::open(dir.path()).unwrap());
        let made = ensure_epoch(store.as_ref(), &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
        let replicas = Replicas::new(store, own);
        for segment in o.segments(1) {
            persist(&replicas, &segment).unwrap();
        }
        (replicas.clock().unwrap(), made)
    };
    assert_eq!(clock, vec![o.ledger.head().unwrap().unwrap().head]);
    let store: Arc<dyn Store> = Arc::new(vserv_store::FjallStore::open(dir.path()).unwrap());
    assert_eq!(epoch(store.as_ref()).unwrap(), Some(made));
    let replicas = Replicas::new(store, own);
    assert_eq!(replicas.clock().unwrap(), clock);
    let key = o.id.public_key();
    assert_eq!(
        replicas.feed(key).unwrap().check().unwrap(),
        CheckReport::Ok { seq: 12 }
    );
    assert_eq!(
        replicas
            .feed_of(&key.fingerprint())
            .unwrap()
            .map(|f| f.origin()),
        Some(key)
    );
}

#[test]
fn several_segments_of_several_origins_are_one_batch_with_the_counts_of_each_chain() {
    let (a, b) = (origin(2, 3, 7), origin(3, 2, 4));
    let (sa, sb) = (a.segments(1), b.segments(1));
    let (replicas, store) = holder();
    let items: Vec<_> = [&sa[0], &sb[0], &sa[1], &sb[1], &sa[2]]
        .iter()
        .map(|s| (s.head.head.origin, s.entries.as_slice(), &s.head))
        .collect();
    let commits = store.commit_count();
    let heads = replicas.persist_many(&items).unwrap();
    assert_eq!(store.commit_count(), commits + 1, "one store batch");
    let seqs: Vec<u64> = heads.iter().map(|h| h.seq).collect();
    assert_eq!(seqs, [7, 4, 14, 8, 21]);
    for o in [&a, &b] {
        let key = o.id.public_key();
        let (copy, mine) = (replicas.feed(key).unwrap(), o.ledger.feed());
        assert_eq!(copy.head().unwrap(), mine.head().unwrap());
        for kind in ["note", "third"] {
            assert_eq!(
                copy.size_of_kind(kind).unwrap(),
                mine.size_of_kind(kind).unwrap(),
                "{kind}: counts carry across the segments of one batch"
            );
        }
        assert!(matches!(copy.check().unwrap(), CheckReport::Ok { .. }));
    }
    // A batch whose later segment does not continue the one before writes nothing.
    let (replicas, store) = holder();
    let items: Vec<_> = [&sa[0], &sb[0], &sa[2]]
        .iter()
        .map(|s| (s.head.head.origin, s.entries.as_slice(), &s.head))
        .collect();
    let before = replica_keys(&store);
    assert!(matches!(
        replicas.persist_many(&items),
        Err(ReplicaError::Rejected(LedgerError::Gap { .. }))
    ));
    assert_eq!(replica_keys(&store), before);
}

/// Segments the core already checked are stored exactly as [`Replicas::persist_many`] stores
/// them (same keys and values, one batch), and one that does not continue the stored feed
/// (a gap, another prev) is refused with nothing written.
#[test]
fn checked_segments_are_stored_as_persist_many_stores_them_and_refused_off_the_chain() {
    let (a, b) = (origin(2, 3, 7), origin(3, 2, 4));
    let (sa, sb) = (a.segments(1), b.segments(1));
    let order = [&sa[0], &sb[0], &sa[1], &sb[1], &sa[2]];
    let checked: Vec<vserv_core::replication::Segment> = order
        .iter()
        .map(|s| vserv_core::replication::Segment::new(s.entries.clone(), s.head).unwrap())
        .collect();
    let (plain, plain_store) = holder();
    let items: Vec<_> = order
        .iter()
        .map(|s| (s.head.head.origin, s.entries.as_slice(), &s.head))
        .collect();
    let want = plain.persist_many(&items).unwrap();
    let (replicas, store) = holder();
    let commits = store.commit_count();
    let refs: Vec<_> = checked.iter().collect();
    assert_eq!(replicas.persist_segments(&refs).unwrap(), want);
    assert_eq!(store.commit_count(), commits + 1, "one store batch");
    assert_eq!(replica_keys(&store), replica_keys(&plain_store));
    // Off the chain: a gap (sa[2] right after sa[0]); a segment at the next seq whose
    // first entry links to another entry than the held one.
    let (replicas, store) = holder();
    let before = replica_keys(&store);
    assert!(matches!(
        replicas.persist_segments(&[&checked[0], &checked[4]]),
        Err(ReplicaError::Rejected(LedgerError::Gap { .. }))
    ));
    assert_eq!(replica_keys(&store), before);
    replicas.persist_segments(&[&checked[0]]).unwrap();
    let held = replica_keys(&store);
    let stray = altered(&sa[1].entries[0], |f| f.prev = [9; 32]);
    let signed = SignedHead::sign(&a.id, Head::of(&stray));
    let stray = vserv_core::replication::Segment::new(vec![stray], signed).unwrap();
    assert!(matches!(
        replicas.persist_segments(&[&stray]),
        Err(ReplicaError::Rejected(LedgerError::BadLink { seq: 8 }))
    ));
    assert_eq!(replica_keys(&store), held);
}

/// A store holding the replicas of `origins` as a node of schema 5 left it (their entries
/// in [`Table::Replicas`], beside their indexes); with the clock it held and the store
/// they make in the current layout.
fn schema_5_store(origins: &[&Origin]) -> (MemoryStore, Vec<Head>, MemoryStore) {
    let (replicas, store) = holder();
    for o in origins {
        for segment in o.segments(4096) {
            persist(&replicas, &segment).unwrap();
        }
    }
    let current = store.snapshot().unwrap();
    let mut ops = Vec::new();
    for (key, value) in store.scan(Table::ReplicaEntries, b"").unwrap() {
        ops.push(Op::Put {
            table: Table::Replicas,
            key: key.clone(),
            value,
        });
        ops.push(Op::Delete {
            table: Table::ReplicaEntries,
            key,
        });
    }
    store.commit(ops).unwrap();
    (store, replicas.clock().unwrap(), current)
}

/// A store holding the replicas of `origins` in the layout before feed numbers (each
/// replica key after the origin's 33 bytes, no `o:` keys nor feed count), as a node of that
/// version left it; with the clock it held.
fn old_layout_store(origins: &[&Origin]) -> (MemoryStore, Vec<Head>) {
    let (store, clock, _) = schema_5_store(origins);
    let replicas = Replicas::new(Arc::new(store.clone()), identity(1).public_key());
    let mut ops = Vec::new();
    for o in origins {
        let number = replicas.number(&o.id.public_key()).unwrap().unwrap();
        let prefix = crate::ledger::FeedKeys::replica(number).prefix().to_vec();
        for (key, value) in store.scan(Table::Replicas, &prefix).unwrap() {
            let rest = &key[prefix.len()..];
            let old = [o.id.public_key().as_bytes().as_slice(), rest].concat();
            ops.push(Op::Put {
                table: Table::Replicas,
                key: old,
                value,
            });
            ops.push(Op::Delete {
                table: Table::Replicas,
                key,
            });
        }
        let index = super::layout::origin_index_key(&o.id.public_key());
        ops.push(Op::Delete {
            table: Table::Replicas,
            key: index,
        });
    }
    ops.push(Op::Delete {
        table: Table::Replicas,
        key: super::layout::FEED_COUNT_KEY.to_vec(),
    });
    store.commit(ops).unwrap();
    (store, clock)
}

/// Opens `pristine` (holding `a` with 21 entries and `b` with 10 in an older layout, and
/// `clock`) with a crash after each of its moves' commits in turn, then again: every feed
/// reads whole and checks, nothing is left in the older layout, and a third open moves
/// nothing. Returns the last store, opened without a crash, and how many commits it took.
fn moves_to_the_current_layout_across_crashes(
    pristine: &MemoryStore,
    clock: &[Head],
    a: &Origin,
    b: &Origin,
) -> (MemoryStore, u64) {
    // Without the move, the old keys are not read: the replicas look absent or empty.
    let unmoved = Replicas::new(Arc::new(pristine.clone()), identity(1).public_key());
    for o in [a, b] {
        let feed = unmoved.feed(o.id.public_key()).unwrap();
        assert_eq!(feed.by_seq(1).unwrap(), None);
    }
    let mut crash_at = 0;
    loop {
        let store = pristine.snapshot().unwrap();
        store.crash_after_commits(crash_at);
        let first = Replicas::open(Arc::new(store.clone()), identity(1).public_key());
        store.restart();
        let (replicas, _) = Replicas::open(Arc::new(store.clone()), identity(1).public_key())
            .unwrap_or_else(|e| panic!("reopen after a crash at commit {crash_at}: {e}"));
        assert_eq!(
            replicas.clock().unwrap(),
            clock,
            "crash at commit {crash_at}"
        );
        for (o, seq) in [(a, 21), (b, 10)] {
            let feed = replicas.feed(o.id.public_key()).unwrap();
            assert_eq!(feed.check().unwrap(), CheckReport::Ok { seq });
            for at in 1..=seq {
                assert_eq!(
                    feed.by_seq(at).unwrap(),
                    o.ledger.feed().by_seq(at).unwrap()
                );
            }
            assert_eq!(
                feed.size_of_kind("third").unwrap(),
                o.ledger.feed().size_of_kind("third").unwrap()
            );
        }
        // Nothing is left under the old keys, no entry beside the indexes, and a third
        // open moves nothing.
        let contents = store.contents().unwrap();
        let left = |key: &&Vec<u8>| {
            matches!(key.first(), Some(2 | 3))
                || key.get(5..).is_some_and(|rest| rest.starts_with(b"e:"))
        };
        assert_eq!(contents[&Table::Replicas].keys().filter(left).count(), 0);
        assert_eq!(contents[&Table::ReplicaEntries].len(), 31);
        assert_eq!(
            Replicas::open(Arc::new(store.clone()), identity(1).public_key())
                .unwrap()
                .1,
            0
        );
        if first.is_ok() {
            return (store, crash_at);
        }
        crash_at += 1;
    }
}

#[test]
fn replicas_in_the_old_layout_move_under_feed_numbers_and_survive_a_crash_at_every_step() {
    let (a, b) = (origin(2, 3, 7), origin(3, 2, 5));
    let (pristine, clock) = old_layout_store(&[&a, &b]);
    // Without the move, no feed number is given: the replicas look absent.
    let unmoved = Replicas::new(Arc::new(pristine.clone()), identity(1).public_key());
    assert_eq!(unmoved.clock().unwrap().len(), 0);
    let (_, commits) = moves_to_the_current_layout_across_crashes(&pristine, &clock, &a, &b);
    assert!(commits >= 5, "the moves took {commits} commits");
}

#[test]
fn replica_entries_of_a_schema_5_store_move_to_their_table_and_survive_a_crash_at_every_step() {
    let (a, b) = (origin(2, 3, 7), origin(3, 2, 5));
    let (pristine, clock, current) = schema_5_store(&[&a, &b]);
    let (store, commits) = moves_to_the_current_layout_across_crashes(&pristine, &clock, &a, &b);
    assert!(commits >= 2, "the move took {commits} commits");
    // The very store the current layout makes.
    let (moved, want) = (store.contents().unwrap(), current.contents().unwrap());
    for table in [Table::Replicas, Table::ReplicaEntries] {
        assert_eq!(moved[&table], want[&table], "{}", table.name());
    }
}
