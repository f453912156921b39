//! The server's own ledger feed over the [`Store`]: appends and lookups (queries by position,
//! kind and range, and re-verification, are in `ledger_query.rs`).
//!
//! Its keys in [`Table::Ledger`] are described in `ledger_layout.rs`. Appends are
//! group-committed by a committer thread ([`Ledger::submit`]): every record submitted while
//! a commit is in progress joins the next one, so concurrent writers (and a connection's
//! pipelined `rput`s) share one store batch, one fsync and one head signature. Only heads
//! are signed (`vserv_core::ledger` explains why that authenticates every entry).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vserv_core::ServerIdentity;
use vserv_core::ledger::{
    Entry, SignedHead, check_author, check_body, check_kind, check_record_id,
};
use vserv_store::kv::{Store, Table};

pub use crate::ledger_commit::{AppendResults, Appended, NewRecord, PendingAppend};
pub use crate::ledger_layout::{
    ENTRY_PREFIX, FeedError, HASH_PREFIX, HEAD_KEY, ID_PREFIX, KIND_COUNT_PREFIX, KIND_PREFIX,
    entry_key, hash_key, id_key, kind_count_key, kind_key, kind_prefix,
};
pub use crate::ledger_query::{CHECK_PAGE, Page};

use crate::ledger_commit::{self, Queue};
use crate::ledger_layout::{seq_of_id, seq_value, stored_head};

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
    /// The committer thread's queue (`None` if the thread could not be started: every
    /// append then fails with [`FeedError::Corrupt`]).
    queue: Option<Queue>,
    /// Successful commits so far (see [`Ledger::submit`]).
    commits: Arc<AtomicU64>,
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
    /// Starts its committer thread (`vserv-ledger`), which ends when the ledger is dropped.
    pub fn new(store: Arc<dyn Store>, identity: Arc<ServerIdentity>) -> Ledger {
        let commits = Arc::new(AtomicU64::new(0));
        let queue = match ledger_commit::start(store.clone(), identity.clone(), commits.clone()) {
            Ok(queue) => Some(queue),
            Err(e) => {
                tracing::error!(error = %e, "could not start the ledger's committer thread");
                None
            }
        };
        Ledger {
            store,
            identity,
            queue,
            commits,
        }
    }

    /// The stored signed head, or `None` for an empty feed.
    pub fn head(&self) -> Result<Option<SignedHead>, FeedError> {
        stored_head(self.store.as_ref())
    }

    /// How many entries the feed holds (the seq of its head).
    pub fn size(&self) -> Result<u64, FeedError> {
        Ok(self.head()?.map_or(0, |h| h.head.seq))
    }

    /// Appends a record by `author` and returns its seq and entry hash. The entry, its
    /// index keys and the new signed head are one atomic, durable commit, shared with any
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

    /// Appends `records` in order and returns one result per record, in the same order:
    /// [`Ledger::submit`], then [`PendingAppend::wait`].
    pub fn append_batch(&self, records: Vec<NewRecord>) -> AppendResults {
        self.submit(records).wait()
    }

    /// Hands `records` to the committer and returns at once; [`PendingAppend::wait`] gives
    /// one result per record, in order, once they are durable.
    ///
    /// Group commit: the committer writes every record submitted since its last commit, by
    /// any caller, as one atomic, durable store commit with one newly signed head, so
    /// concurrent writers share fsyncs and head signatures and a crash keeps a whole commit
    /// or none of it. Submissions are committed in the order they were made. A record
    /// refused by a field rule or as a duplicate (also of an earlier record of the same
    /// commit) fails alone; a store failure fails every record of the commit.
    ///
    /// The calling thread checks each record's fields and that its id is not stored yet
    /// (in parallel with the committer); the committer then only checks the ids against the
    /// commits made since, which it remembers.
    pub fn submit(&self, records: Vec<NewRecord>) -> PendingAppend {
        let Some(queue) = &self.queue else {
            return PendingAppend::stopped(records.len());
        };
        let checked_at = self.commits.load(Ordering::Acquire);
        let checked = records.into_iter().map(|r| self.precheck(r)).collect();
        ledger_commit::submit(queue, checked, checked_at)
    }

    /// `record` if its fields are valid and its id is not in the store.
    fn precheck(&self, record: NewRecord) -> Result<NewRecord, FeedError> {
        check_author(record.author.as_bytes())
            .and_then(|()| check_kind(record.kind.as_bytes()))
            .and_then(|()| check_record_id(&record.record_id))
            .and_then(|()| check_body(&record.body))
            .map_err(FeedError::Invalid)?;
        match self.seq_of_id(&record.record_id)? {
            Some(seq) => Err(FeedError::Duplicate { seq }),
            None => Ok(record),
        }
    }

    /// The seq of the entry with `record_id`, if stored.
    pub fn seq_of_id(&self, record_id: &[u8]) -> Result<Option<u64>, FeedError> {
        seq_of_id(self.store.as_ref(), record_id)
    }

    /// The seq of the entry with hash `hash`, if stored.
    pub fn seq_of_hash(&self, hash: &[u8; 32]) -> Result<Option<u64>, FeedError> {
        self.store
            .get(Table::Ledger, &hash_key(hash))?
            .map(|v| seq_value(&v, "hash"))
            .transpose()
    }

    /// Entry `seq`, if stored.
    pub fn by_seq(&self, seq: u64) -> Result<Option<Entry>, FeedError> {
        match self.store.get(Table::Ledger, &entry_key(seq))? {
            Some(bytes) => Entry::decode_from(&bytes, &self.identity.public_key())
                .map(Some)
                .map_err(|e| FeedError::Corrupt(format!("entry {seq}: {e}"))),
            None => Ok(None),
        }
    }

    /// The entry with `record_id`, if stored.
    pub fn by_id(&self, record_id: &[u8]) -> Result<Option<Entry>, FeedError> {
        match self.seq_of_id(record_id)? {
            Some(seq) => self.by_seq(seq),
            None => Ok(None),
        }
    }

    /// The entry with hash `hash`, if stored.
    pub fn by_hash(&self, hash: &[u8; 32]) -> Result<Option<Entry>, FeedError> {
        match self.seq_of_hash(hash)? {
            Some(seq) => self.by_seq(seq),
            None => Ok(None),
        }
    }
}
