//! The server's own ledger feed over the [`Store`]: appends and lookups (queries by position,
//! kind and range, and re-verification, are in `ledger_query.rs`).
//!
//! # Layout in [`Table::Ledger`]
//!
//! | key | value |
//! |---|---|
//! | `e:` + seq (`u64` big-endian) | the entry's canonical encoding (`spec/ledger.md` §1) |
//! | `id:` + record id | seq (`u64` big-endian) of the entry with that record id |
//! | `h:` + entry hash (32 bytes) | seq (`u64` big-endian) of the entry with that hash |
//! | `k:` + kind + `0x00` + seq (`u64` big-endian) | empty: the kind index |
//! | `kc:` + kind | number of entries of that kind (`u64` big-endian) |
//! | `head` | the [`SignedHead`] encoding of the last entry |
//!
//! (Kinds never contain `0x00`, so `k:` + kind + `0x00` is a prefix of exactly that kind's
//! index keys.) Every append writes all these keys in one atomic, durable commit, so a crash leaves either
//! the whole entry (with its indexes and the new signed head) or nothing. The stored head is
//! authoritative for the feed's size.
//!
//! Appends are group-committed ([`Ledger::append_batch`]): every record submitted while a
//! commit is in progress joins the next one, so concurrent writers (and a connection's
//! pipelined `rput`s) share one store batch, one fsync and one head signature. Only heads
//! are signed (`vserv_core::ledger` explains why that authenticates every entry).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use vserv_core::ServerIdentity;
use vserv_core::ledger::{
    Entry, EntryFields, Head, LedgerError, SignedHead, ZERO_HASH, check_append,
};
use vserv_store::kv::{Op, Store, StoreError, Table};

pub use crate::ledger_query::{CHECK_PAGE, Page};

/// Key of the signed head.
pub const HEAD_KEY: &[u8] = b"head";
/// Prefix of entry keys (followed by the seq, `u64` big-endian).
pub const ENTRY_PREFIX: &[u8] = b"e:";
/// Prefix of the record id index.
pub const ID_PREFIX: &[u8] = b"id:";
/// Prefix of the entry hash index.
pub const HASH_PREFIX: &[u8] = b"h:";

/// Prefix of the kind index.
pub const KIND_PREFIX: &[u8] = b"k:";
/// Prefix of the per-kind entry counters.
pub const KIND_COUNT_PREFIX: &[u8] = b"kc:";

/// The prefix of every kind index key of `kind` (followed by the seq, `u64` big-endian).
pub fn kind_prefix(kind: &str) -> Vec<u8> {
    [KIND_PREFIX, kind.as_bytes(), &[0]].concat()
}

/// The kind index key of entry `seq` of `kind`.
pub fn kind_key(kind: &str, seq: u64) -> Vec<u8> {
    [kind_prefix(kind).as_slice(), &seq.to_be_bytes()].concat()
}

/// The store key of the entry counter of `kind`.
pub fn kind_count_key(kind: &str) -> Vec<u8> {
    [KIND_COUNT_PREFIX, kind.as_bytes()].concat()
}

/// The store key of entry `seq`.
pub fn entry_key(seq: u64) -> Vec<u8> {
    [ENTRY_PREFIX, &seq.to_be_bytes()].concat()
}

/// The store key of the record id index entry for `record_id`.
pub fn id_key(record_id: &[u8]) -> Vec<u8> {
    [ID_PREFIX, record_id].concat()
}

/// The store key of the hash index entry for `hash`.
pub fn hash_key(hash: &[u8; 32]) -> Vec<u8> {
    [HASH_PREFIX, hash.as_slice()].concat()
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

/// A record to append with [`Ledger::append_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// The user appending it.
    pub author: String,
    /// The entry's kind.
    pub kind: String,
    /// The client's unique record id.
    pub record_id: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
    /// Unix time in milliseconds.
    pub timestamp: u64,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its seq.
    pub seq: u64,
    /// Its entry hash.
    pub hash: [u8; 32],
}

/// One caller's records waiting for a group commit.
struct Job {
    ticket: u64,
    records: Vec<NewRecord>,
}

/// The group commit's meeting point.
#[derive(Default)]
struct Group {
    /// Jobs for the next commit.
    queue: Vec<Job>,
    /// A leader is committing (new jobs wait for the next commit).
    committing: bool,
    /// Results of committed jobs whose callers have not collected them yet.
    done: BTreeMap<u64, Vec<Result<Appended, FeedError>>>,
    next_ticket: u64,
}

/// Held by the leader of a group commit: when dropped (also if the commit panicked) the
/// next caller may lead, and every waiter looks for its results.
struct Leading<'a>(&'a Ledger);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        lock(&self.0.group).committing = false;
        self.0.group_done.notify_all();
    }
}

/// What the committing thread keeps between commits.
#[derive(Default)]
struct WriterState {
    /// The head as of the last commit: `None` = not known (read it from the store),
    /// `Some(None)` = empty feed.
    head: Option<Option<Head>>,
}

/// The store ops and results of one group commit being built.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    results: Vec<Vec<Result<Appended, FeedError>>>,
    kind_counts: BTreeMap<String, u64>,
    /// The new head, if any record was accepted.
    last_head: Option<Head>,
}

fn put(key: Vec<u8>, value: Vec<u8>) -> Op {
    Op::Put {
        table: Table::Ledger,
        key,
        value,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `error` as the result of every record in `jobs`.
fn fail_all(jobs: &[Job], error: &FeedError) -> Vec<Vec<Result<Appended, FeedError>>> {
    jobs.iter()
        .map(|job| job.records.iter().map(|_| Err(error.clone())).collect())
        .collect()
}

/// The server's feed. Share it with an `Arc`; every method is safe to call from many
/// threads.
pub struct Ledger {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) identity: Arc<ServerIdentity>,
    /// Jobs waiting for a group commit, and results waiting for their callers.
    group: Mutex<Group>,
    /// Signalled when a group commit ends.
    group_done: Condvar,
    /// Held by the thread committing a group.
    write: Mutex<WriterState>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.identity.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

pub(crate) fn seq_value(bytes: &[u8], what: &str) -> Result<u64, FeedError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| FeedError::Corrupt(format!("{what} index value is not a seq")))
}

impl Ledger {
    /// The feed of `identity` (the server key, which signs heads) kept in `store`.
    pub fn new(store: Arc<dyn Store>, identity: Arc<ServerIdentity>) -> Ledger {
        Ledger {
            store,
            identity,
            group: Mutex::new(Group::default()),
            group_done: Condvar::new(),
            write: Mutex::new(WriterState::default()),
        }
    }

    /// The stored signed head, or `None` for an empty feed.
    pub fn head(&self) -> Result<Option<SignedHead>, FeedError> {
        match self.store.get(Table::Ledger, HEAD_KEY)? {
            Some(bytes) => SignedHead::decode(&bytes)
                .map(Some)
                .map_err(|e| FeedError::Corrupt(format!("head: {e}"))),
            None => Ok(None),
        }
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

    /// Appends `records` in order and returns one result per record, in the same order.
    ///
    /// Group commit: the records join every batch other threads submit meanwhile; one
    /// thread (the leader) writes all of them as one atomic, durable store commit with one
    /// new signed head, while the others wait for it. So concurrent writers share fsyncs
    /// and head signatures, and a crash keeps either a whole commit or none of it. Every
    /// result is final when this returns: an `Ok` is durable. A record refused by a field
    /// rule or as a duplicate (also of an earlier record in the same batch) fails alone; a
    /// store failure fails every record of the commit.
    pub fn append_batch(&self, records: Vec<NewRecord>) -> Vec<Result<Appended, FeedError>> {
        let mut group = lock(&self.group);
        let ticket = group.next_ticket;
        group.next_ticket = group.next_ticket.wrapping_add(1);
        group.queue.push(Job { ticket, records });
        loop {
            if let Some(results) = group.done.remove(&ticket) {
                // A leader committed this job while we waited.
                return results;
            }
            if !group.committing {
                break;
            }
            group = self
                .group_done
                .wait(group)
                .unwrap_or_else(|p| p.into_inner());
        }
        // Lead: commit everything queued so far, this job included.
        group.committing = true;
        let jobs = std::mem::take(&mut group.queue);
        drop(group);
        let leading = Leading(self);
        let outcome = self.commit_jobs(&mut lock(&self.write), &jobs);
        let mut mine = Vec::new();
        let mut group = lock(&self.group);
        for (job, results) in jobs.into_iter().zip(outcome) {
            if job.ticket == ticket {
                mine = results;
            } else {
                group.done.insert(job.ticket, results);
            }
        }
        drop(group);
        drop(leading);
        mine
    }

    /// Writes every record of `jobs` in one commit; one result list per job. Runs with the
    /// writer lock held.
    fn commit_jobs(
        &self,
        writer: &mut WriterState,
        jobs: &[Job],
    ) -> Vec<Vec<Result<Appended, FeedError>>> {
        let mut batch = match self.prepare(writer, jobs) {
            Ok(batch) => batch,
            Err(e) => return fail_all(jobs, &e),
        };
        let Some(last) = batch.last_head else {
            // Nothing to write: every record was refused.
            return batch.results;
        };
        let signed = SignedHead::sign(&self.identity, last);
        batch
            .ops
            .push(put(HEAD_KEY.to_vec(), signed.to_bytes().to_vec()));
        for (kind, count) in &batch.kind_counts {
            batch
                .ops
                .push(put(kind_count_key(kind), count.to_be_bytes().to_vec()));
        }
        match self.store.commit(batch.ops) {
            Ok(()) => {
                writer.head = Some(Some(last));
                batch.results
            }
            Err(e) => {
                // Reload the head next time: the failed commit may have left anything.
                writer.head = None;
                fail_all(jobs, &FeedError::Store(e))
            }
        }
    }

    /// Builds the entries and store ops of one group commit (nothing written yet).
    fn prepare(&self, writer: &mut WriterState, jobs: &[Job]) -> Result<Batch, FeedError> {
        let mut head = match &writer.head {
            Some(head) => *head,
            None => self.head()?.map(|h| h.head),
        };
        writer.head = Some(head);
        let mut batch = Batch::default();
        let mut ids: BTreeMap<&[u8], u64> = BTreeMap::new();
        for job in jobs {
            let mut results = Vec::with_capacity(job.records.len());
            for record in &job.records {
                let result = self.prepare_one(record, &mut head, &mut ids, &mut batch);
                results.push(result);
            }
            batch.results.push(results);
        }
        if head.as_ref() != writer.head.as_ref().and_then(|h| h.as_ref()) {
            batch.last_head = head;
        }
        Ok(batch)
    }

    /// Adds one record to `batch` on top of `head`, or refuses it.
    fn prepare_one<'a>(
        &self,
        record: &'a NewRecord,
        head: &mut Option<Head>,
        ids: &mut BTreeMap<&'a [u8], u64>,
        batch: &mut Batch,
    ) -> Result<Appended, FeedError> {
        if let Some(&seq) = ids.get(record.record_id.as_slice()) {
            return Err(FeedError::Duplicate { seq });
        }
        if let Some(seq) = self.seq_of_id(&record.record_id)? {
            return Err(FeedError::Duplicate { seq });
        }
        let (seq, prev) = match head.as_ref() {
            Some(h) => (h.seq.checked_add(1).ok_or(FeedError::Full)?, h.hash),
            None => (1, ZERO_HASH),
        };
        let entry = Entry::new(EntryFields {
            origin: self.identity.public_key(),
            seq,
            prev,
            timestamp: record.timestamp,
            author: record.author.clone(),
            kind: record.kind.clone(),
            record_id: record.record_id.clone(),
            body: record.body.clone(),
        })
        .map_err(FeedError::Invalid)?;
        check_append(head.as_ref(), &entry)
            .map_err(|e| FeedError::Corrupt(format!("stored head refuses the next entry: {e}")))?;
        let count = match batch.kind_counts.get(&record.kind) {
            Some(count) => *count,
            None => match self
                .store
                .get(Table::Ledger, &kind_count_key(&record.kind))?
            {
                Some(v) => seq_value(&v, "kind count")?,
                None => 0,
            },
        };
        let hash = entry.hash();
        let seq_bytes = seq.to_be_bytes().to_vec();
        batch.ops.extend([
            put(entry_key(seq), entry.to_bytes()),
            put(id_key(&record.record_id), seq_bytes.clone()),
            put(hash_key(&hash), seq_bytes),
            put(kind_key(&record.kind, seq), Vec::new()),
        ]);
        batch
            .kind_counts
            .insert(record.kind.clone(), count.saturating_add(1));
        ids.insert(&record.record_id, seq);
        *head = Some(Head::of(&entry));
        Ok(Appended { seq, hash })
    }

    /// The seq of the entry with `record_id`, if stored.
    pub fn seq_of_id(&self, record_id: &[u8]) -> Result<Option<u64>, FeedError> {
        self.store
            .get(Table::Ledger, &id_key(record_id))?
            .map(|v| seq_value(&v, "record id"))
            .transpose()
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
