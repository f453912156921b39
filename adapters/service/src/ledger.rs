//! The server's own ledger feed over the [`Store`]: appends (`ledger_commit.rs`), and its
//! reads, which are those of any held feed ([`Feed`]: lookups in `ledger_feed.rs`, queries by
//! position, kind and range and re-verification in `ledger_query.rs`).
//!
//! Its keys (entries in [`Table::Ledger`], indexes and per-commit keys beside it) are
//! described in `ledger_layout.rs`. Appends are
//! group-committed ([`Ledger::submit`], `ledger_commit.rs`): every record submitted while a
//! commit is in progress joins the next one, so concurrent writers (and a connection's
//! pipelined `rput`s) share one store batch, one fsync and one head signature. Only heads
//! are signed (`vserv_core::ledger` explains why that authenticates every entry).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use vserv_core::ServerIdentity;
use vserv_core::ledger::{
    Entry, SignedHead, check_author, check_body, check_kind, check_record_id,
};
use vserv_store::kv::{Store, StoreError};

pub use crate::ledger_commit::{
    AppendDone, AppendResults, Appended, CommitListener, MAX_SEGMENT_ENTRIES, NewRecord,
};
pub use crate::ledger_feed::Feed;
pub use crate::ledger_index_tail::{HASH_RUN_PREFIX, ID_RUN_PREFIX};
pub use crate::ledger_layout::{
    ENTRY_PREFIX, FeedError, FeedKeys, FeedNumber, HASH_PREFIX, HEAD_KEY, ID_PREFIX,
    KIND_COUNT_PREFIX, KIND_PREFIX, REPLICA_FEED_LEAD, SIGNED_HEAD_PREFIX, SPAN_HASH_TAG,
    SPAN_ID_TAG, SPAN_LEAD, SPAN_SEQ_BITS, SPANS_KEY, WIDE_SPAN_SEQ_BITS, entry_key, hash_key,
    id_key, kind_count_key, kind_key, kind_prefix, kind_runs, kind_runs_value, signed_head_key,
};
pub use crate::ledger_query::{CHECK_PAGE, EntryPages, Page};

use crate::ledger_commit::GroupCommit;
use crate::ledger_ids::{IdFilter, IdLookup, fill_id_filter};
use crate::ledger_index_tail::IndexTail;
pub(crate) use crate::ledger_index_tail::TAIL_BULK;
use crate::ledger_layout::{
    OwnFeedKeys, Spans, own_feed_keys, seq_of_id, spans_up_to_head, stored_head,
};
use crate::work::{Runner, Work};

/// The result of [`Ledger::check`] and [`Ledger::check_range`] (in `ledger_query.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckReport {
    /// Every entry checked (`1..=seq` for the whole feed) verified, and the stored signed
    /// head is valid and covers entry `seq`.
    Ok {
        /// The verified head's seq (0 for an empty ledger).
        seq: u64,
    },
    /// The first fault found.
    Bad {
        /// The first bad seq, when the fault is about an entry.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
}

/// The server's feed. Share it with an `Arc`; every method is safe to call from many
/// threads.
pub struct Ledger {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) identity: Arc<ServerIdentity>,
    /// The submissions and the commit state.
    group: Arc<GroupCommit>,
    /// Successful commits so far (see [`Ledger::submit`]).
    commits: Arc<AtomicU64>,
    /// The own feed's keys for its lookups and the record id checks of appends: its spans'
    /// size, and without the lookups of the older layouts' index keys when the store had
    /// none when this was made (nothing writes one since, so a new id then costs one store
    /// read per span asked).
    own_keys: FeedKeys,
    /// The record ids of the feed, so that a new id costs no store read once built
    /// (`ledger_ids.rs`, [`Ledger::id_filter_build`]).
    ids: Arc<IdFilter>,
    /// The filter's build has been handed out.
    ids_build_taken: AtomicBool,
    /// The entries whose index keys are not stored yet (`ledger_index_tail.rs`).
    pub(crate) index_tail: Arc<IndexTail>,
}

/// The spans a submission's record id checks ask when the record id filter cannot name
/// them ([`spans_up_to_head`]), read at most once per submission: read after the
/// submission's commit count, the head covers every commit the checks must see
/// (`Ledger::submit`).
#[derive(Default)]
struct HeadSpans(Option<Vec<u32>>);

impl HeadSpans {
    /// The spans up to the own feed's stored head's, newest first (none: the feed is empty).
    fn get(&mut self, store: &dyn Store, keys: &FeedKeys) -> Result<&[u32], FeedError> {
        if self.0.is_none() {
            self.0 = Some(spans_up_to_head(store, keys)?);
        }
        Ok(self.0.as_deref().unwrap_or_default())
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.identity.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// The feed of `identity` (the server key, which signs heads) kept in `store`.
    ///
    /// Opening reads back the hashes and record ids of the entries whose index keys were
    /// not stored yet (their `hh:` and `hi:` records: at most tens of thousands of entries)
    /// into the in-memory tail (`ledger_index_tail.rs`).
    pub fn new(store: Arc<dyn Store>, identity: Arc<ServerIdentity>) -> Ledger {
        Ledger::with_tail_bulk(store, identity, TAIL_BULK)
    }

    /// [`Ledger::new`], storing index keys once `bulk` entries await them.
    pub(crate) fn with_tail_bulk(
        store: Arc<dyn Store>,
        identity: Arc<ServerIdentity>,
        bulk: usize,
    ) -> Ledger {
        // A store that cannot tell where its index keys are breaks the tail: appends are
        // refused and lookups that miss say they cannot tell.
        let own = own_feed_keys(store.as_ref());
        let index_tail = Arc::new(IndexTail::open(
            store.as_ref(),
            bulk,
            own.as_ref().map(|own| own.keys).map_err(Clone::clone),
        ));
        let own = own.unwrap_or(OwnFeedKeys {
            keys: FeedKeys::OWN,
            recorded: false,
        });
        let own_keys = own.keys;
        let commits = Arc::new(AtomicU64::new(0));
        // Sized for twice the feed as it is: a feed that doubles still needs one filter.
        let size = stored_head(store.as_ref(), &FeedKeys::OWN)
            .ok()
            .flatten()
            .map_or(0, |h| h.head.seq);
        let ids = Arc::new(IdFilter::new(
            usize::try_from(size.saturating_mul(2)).unwrap_or(usize::MAX),
            own_keys.span_bits(),
        ));
        let group = Arc::new(GroupCommit::new(
            store.clone(),
            identity.clone(),
            commits.clone(),
            own,
            index_tail.clone(),
            ids.clone(),
        ));
        Ledger {
            store,
            identity,
            group,
            commits,
            own_keys,
            ids,
            ids_build_taken: AtomicBool::new(false),
            index_tail,
        }
    }

    /// The build of the record id filter, the first time this is called (`None` after):
    /// it reads every record id of the feed from the store (seconds for millions of
    /// entries), after which appends of new ids read nothing from the store. Until it has
    /// run, appends check every id in the store. Hand it to the runtime as blocking work.
    pub fn id_filter_build(&self) -> Option<Work> {
        if self.ids_build_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        let (store, keys, ids) = (self.store.clone(), self.own_keys, self.ids.clone());
        let tail = self.index_tail.clone();
        Some(Work::new("ledger id filter", move || match fill_id_filter(
            &ids,
            store.as_ref(),
            &keys,
            &tail,
        ) {
            Ok(count) => tracing::info!(
                record_ids = count,
                filter_bytes = ids.bytes(),
                "built the ledger's record id filter"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "could not build the ledger's record id filter; appends check ids in the store"
            ),
        }))
    }

    /// Whether the record id filter's build is yet to be handed out
    /// ([`Ledger::id_filter_build`]).
    pub fn id_filter_build_due(&self) -> bool {
        !self.ids_build_taken.load(Ordering::Acquire)
    }

    /// The stored signed head, or `None` for an empty feed.
    pub fn head(&self) -> Result<Option<SignedHead>, FeedError> {
        self.feed().head()
    }

    /// How many entries the feed holds (the seq of its head).
    pub fn size(&self) -> Result<u64, FeedError> {
        Ok(self.head()?.map_or(0, |h| h.head.seq))
    }

    /// Appends a record by `author` and returns its seq and entry hash. The entry, the
    /// records of its record id and hash (`ledger_index_tail.rs`) and the new signed
    /// head are one atomic, durable commit, shared with any
    /// appends other threads make at the same time (see [`Ledger::append_batch`]).
    ///
    /// # Errors
    ///
    /// [`FeedError::Duplicate`] if `record_id` is already stored (nothing is written),
    /// [`FeedError::Invalid`] if a field breaks its rule, [`FeedError::Store`] if the commit
    /// failed (nothing was written).
    pub fn append(
        &self,
        author: &str,
        kind: &str,
        record_id: &[u8],
        body: &[u8],
        now_ms: u64,
    ) -> Result<Appended, FeedError> {
        let record = NewRecord {
            author: author.to_owned(),
            kind: kind.to_owned(),
            record_id: record_id.to_vec(),
            body: body.to_vec(),
            timestamp: now_ms,
        };
        self.append_batch(vec![record])
            .pop()
            .unwrap_or(Err(FeedError::Corrupt("append lost its result".to_owned())))
    }

    /// Appends `records` in order and returns one result per record, in the same order,
    /// once they are durable: the synchronous way in, for tools and tests. It waits: on
    /// its own commit run, or on another caller's run that took its records.
    pub fn append_batch(&self, records: Vec<NewRecord>) -> AppendResults {
        let n = records.len();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let done: AppendDone = Box::new(move |results| {
            // The receiver waits below; it cannot be gone.
            let _ = tx.send(results);
        });
        if let Some(run) = self.submit(records, done) {
            run.run();
        }
        rx.recv().unwrap_or_else(|_| {
            let error = FeedError::Corrupt("the ledger's commit was lost".to_owned());
            (0..n).map(|_| Err(error.clone())).collect()
        })
    }

    /// Registers `listener`, told the signed head of every durable commit of this feed from
    /// now on (replication pushes new entries to its links with it). One listener: a later
    /// call replaces it.
    pub fn on_commit(&self, listener: CommitListener) {
        self.group.on_commit(listener);
    }

    /// Stores the trailing index keys (`ledger_index_tail.rs`) on `runner` from now on, as
    /// work of its own beside the commits; until then each bulk runs on the commit run that
    /// filled the tail, which meanwhile writes no commit. A [`Service`](crate::Service)
    /// given this ledger and a runtime's runner calls it.
    pub fn run_bulks_on(&self, runner: Arc<dyn Runner>) {
        self.group.run_bulks_on(runner);
    }

    /// Queues `records` for the next group commit and returns at once; `done` gets one
    /// result per record, in order, once they are durable (or failed). When no commit is
    /// under way the caller gets it back as a [`Work`] and must hand it to its runtime.
    ///
    /// Group commit: a commit run writes every record submitted since the commit before, by
    /// any caller, as one atomic, durable store commit with one newly signed head, so
    /// concurrent writers share fsyncs and head signatures and a crash keeps a whole commit
    /// or none of it. Submissions are committed in the order they were made. A record
    /// refused by a field rule or as a duplicate (also of an earlier record of the same
    /// commit) fails alone; a store failure fails every record of the commit.
    ///
    /// The calling thread checks each record's fields and that its id is not stored yet
    /// (in the record id filter once it is built, [`Ledger::id_filter_build`]; in the index
    /// tail and the store when the filter cannot rule the id out); the commit then only checks the ids against
    /// the commits made since, which it remembers.
    pub fn submit(&self, records: Vec<NewRecord>, done: AppendDone) -> Option<Work> {
        // Every id of commit n was added to the filter before n was prepared (when it was
        // submitted): read after the count, it holds every commit up to `checked_at`.
        let checked_at = self.commits.load(Ordering::Acquire);
        let ids = self.ids.lookup();
        let mut head_spans = HeadSpans::default();
        let checked: Vec<Result<NewRecord, FeedError>> = records
            .into_iter()
            .map(|r| self.precheck(r, ids.as_ref(), &mut head_spans))
            .collect();
        drop(ids);
        // Here, on the submitter's thread, rather than on the commit run, which every
        // append waits for.
        self.ids.add(
            checked
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|r| r.record_id.as_slice()),
        );
        self.group.submit(checked, checked_at, done)
    }

    /// `record` if its fields are valid and its id is not in the feed (surely absent from
    /// `ids`, or found neither in the index tail nor in the store, asked in that order: an
    /// id the tail no longer holds is stored; in the spans `ids` names, else in those
    /// `head_spans` names). Refused with the tail's error if the tail could not be rebuilt
    /// at open.
    fn precheck(
        &self,
        record: NewRecord,
        ids: Option<&IdLookup<'_>>,
        head_spans: &mut HeadSpans,
    ) -> Result<NewRecord, FeedError> {
        check_author(record.author.as_bytes())
            .and_then(|()| check_kind(record.kind.as_bytes()))
            .and_then(|()| check_record_id(&record.record_id))
            .and_then(|()| check_body(&record.body))
            .map_err(FeedError::Invalid)?;
        // The ids of an index record that could not be read are unknown: no id is surely new.
        if let Some(unsure) = self.index_tail.incomplete() {
            return Err(unsure);
        }
        if ids.is_some_and(|ids| ids.surely_absent(&record.record_id)) {
            return Ok(record);
        }
        if let Some(seq) = self.index_tail.seq_of_id(&record.record_id) {
            return Err(FeedError::Duplicate { seq });
        }
        // Asked after the tail missed: every span the id's key may be in.
        let named = ids.map(|ids| ids.spans_maybe_holding(&record.record_id));
        let spans = match &named {
            Some(named) => named.as_slice(),
            None => head_spans.get(self.store.as_ref(), &self.own_keys)?,
        };
        match seq_of_id(
            self.store.as_ref(),
            &self.own_keys,
            &record.record_id,
            Spans::Only(spans),
        )? {
            Some(seq) => Err(FeedError::Duplicate { seq }),
            None => Ok(record),
        }
    }

    /// The feed as a [`Feed`]: every read and query of it, as of the store now.
    pub fn feed(&self) -> Feed {
        Feed::own(
            self.store.clone(),
            self.identity.public_key(),
            self.own_keys,
        )
        .with_index_tail(self.index_tail.clone(), self.ids.clone())
    }

    /// The seq of the entry with `record_id`, if stored.
    pub fn seq_of_id(&self, record_id: &[u8]) -> Result<Option<u64>, FeedError> {
        self.feed().seq_of_id(record_id)
    }

    /// The seq of the entry with hash `hash`, if stored.
    pub fn seq_of_hash(&self, hash: &[u8; 32]) -> Result<Option<u64>, FeedError> {
        self.feed().seq_of_hash(hash)
    }

    /// Entry `seq`, if stored.
    pub fn by_seq(&self, seq: u64) -> Result<Option<Entry>, FeedError> {
        self.feed().by_seq(seq)
    }

    /// The entry with `record_id`, if stored.
    pub fn by_id(&self, record_id: &[u8]) -> Result<Option<Entry>, FeedError> {
        self.feed().by_id(record_id)
    }

    /// The entry with hash `hash`, if stored.
    pub fn by_hash(&self, hash: &[u8; 32]) -> Result<Option<Entry>, FeedError> {
        self.feed().by_hash(hash)
    }

    /// See [`Feed::by_position`].
    pub fn by_position(&self, pos: i64) -> Result<Option<Entry>, FeedError> {
        self.feed().by_position(pos)
    }

    /// See [`Feed::size_of_kind`].
    pub fn size_of_kind(&self, kind: &str) -> Result<u64, FeedError> {
        self.feed().size_of_kind(kind)
    }

    /// See [`Feed::count`].
    pub fn count(&self, kind: &str, from: u64, to: u64) -> Result<u64, FeedError> {
        self.feed().count(kind, from, to)
    }

    /// See [`Feed::list`].
    pub fn list(
        &self,
        kind: Option<&str>,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Page, FeedError> {
        self.feed().list(kind, from, to, limit)
    }

    /// See [`Feed::check`].
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        self.feed().check()
    }

    /// See [`Feed::check_range`].
    pub fn check_range(
        &self,
        from: u64,
        to: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CheckReport, StoreError> {
        self.feed().check_range(from, to, progress)
    }
}
