//! The ledger's group commit: one committer thread per [`Ledger`](crate::ledger::Ledger)
//! writes every record submitted since its last commit as one atomic, durable store batch
//! with one newly signed head.
//!
//! Callers [`submit`](crate::ledger::Ledger::submit) records and get a [`PendingAppend`]
//! back at once; they may do other work (a connection decodes its next requests) while the
//! committer writes, then [`PendingAppend::wait`] for the results. So concurrent writers,
//! and one connection's successive pipelined groups, share fsyncs and head signatures, and
//! the store work overlaps with the connections' decoding and encryption.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

use vserv_core::ServerIdentity;
use vserv_core::ledger::{Entry, EntryFields, Head, SignedHead, ZERO_HASH, check_append};
use vserv_store::kv::{Op, Store, Table};

use crate::ledger::{
    FeedError, HEAD_KEY, entry_key, hash_key, id_key, kind_count_key, kind_key, seq_of_id,
    seq_value, stored_head,
};

/// A record to append with [`Ledger::submit`](crate::ledger::Ledger::submit).
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

/// The result of each record of one submission, in submission order.
pub type AppendResults = Vec<Result<Appended, FeedError>>;

/// One submission waiting for the committer.
pub(crate) struct Job {
    records: Vec<NewRecord>,
    done: SyncSender<AppendResults>,
}

/// Records submitted to the committer; their results arrive when their commit is durable.
#[derive(Debug)]
pub struct PendingAppend {
    records: usize,
    done: Option<Receiver<AppendResults>>,
}

impl PendingAppend {
    /// A submission made as `records` records (`done` is `None` when the committer could
    /// not take it).
    fn new(records: usize, done: Option<Receiver<AppendResults>>) -> Self {
        PendingAppend { records, done }
    }

    /// Waits for the commit and returns one result per record, in submission order. An
    /// `Ok` is durable.
    pub fn wait(self) -> AppendResults {
        match self.done.as_ref().map(Receiver::recv) {
            Some(Ok(results)) => results,
            _ => self.failed(),
        }
    }

    /// The results if the commit has finished, else `Err(self)` to wait on later.
    pub fn try_take(self) -> Result<AppendResults, PendingAppend> {
        match self.done.as_ref().map(Receiver::try_recv) {
            Some(Ok(results)) => Ok(results),
            Some(Err(TryRecvError::Empty)) => Err(self),
            _ => Ok(self.failed()),
        }
    }

    /// Like [`PendingAppend::try_take`], waiting at most `timeout` for the commit.
    pub fn wait_timeout(self, timeout: Duration) -> Result<AppendResults, PendingAppend> {
        match self.done.as_ref().map(|r| r.recv_timeout(timeout)) {
            Some(Ok(results)) => Ok(results),
            Some(Err(RecvTimeoutError::Timeout)) => Err(self),
            _ => Ok(self.failed()),
        }
    }

    /// How many records this submission holds.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether this submission holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// A submission the committer could not take: every record fails.
    pub(crate) fn stopped(records: usize) -> PendingAppend {
        PendingAppend::new(records, None)
    }

    fn failed(&self) -> AppendResults {
        let error = FeedError::Corrupt("the ledger's committer stopped".to_owned());
        (0..self.records).map(|_| Err(error.clone())).collect()
    }
}

/// The sending side of the committer's queue.
pub(crate) type Queue = std::sync::mpsc::Sender<Job>;

/// Queues `records` on `queue`.
pub(crate) fn submit(queue: &Queue, records: Vec<NewRecord>) -> PendingAppend {
    let n = records.len();
    let (done, results) = sync_channel(1);
    match queue.send(Job { records, done }) {
        Ok(()) => PendingAppend::new(n, Some(results)),
        Err(_) => PendingAppend::stopped(n),
    }
}

/// Starts the committer thread of the feed of `identity` in `store`. It ends when every
/// sender of the returned queue is dropped (with its ledger).
pub(crate) fn start(
    store: Arc<dyn Store>,
    identity: Arc<ServerIdentity>,
) -> std::io::Result<Queue> {
    let (queue, jobs) = std::sync::mpsc::channel::<Job>();
    let mut committer = Committer {
        store,
        identity,
        head: None,
    };
    std::thread::Builder::new()
        .name("vserv-ledger".into())
        .spawn(move || {
            while let Ok(first) = jobs.recv() {
                let mut group = vec![first];
                group.extend(jobs.try_iter());
                let (records, done): (Vec<_>, Vec<_>) =
                    group.into_iter().map(|j| (j.records, j.done)).unzip();
                let out = committer.commit(records);
                for (results, done) in out.into_iter().zip(done) {
                    // A caller that stopped waiting no longer needs its results.
                    let _ = done.send(results);
                }
            }
        })?;
    Ok(queue)
}

/// The committer thread's state.
struct Committer {
    store: Arc<dyn Store>,
    identity: Arc<ServerIdentity>,
    /// The head as of the last commit: `None` = not known (read it from the store),
    /// `Some(None)` = empty feed.
    head: Option<Option<Head>>,
}

/// The store ops and results of one group commit being built.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    results: Vec<AppendResults>,
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

/// `error` as the result of every record of jobs of `sizes` records.
fn fail_all(sizes: &[usize], error: &FeedError) -> Vec<AppendResults> {
    sizes
        .iter()
        .map(|&n| (0..n).map(|_| Err(error.clone())).collect())
        .collect()
}

impl Committer {
    /// Writes every record of `jobs` in one commit; one result list per job. A record
    /// refused by a field rule or as a duplicate (also of an earlier record of the group)
    /// fails alone; a store failure fails every record.
    fn commit(&mut self, jobs: Vec<Vec<NewRecord>>) -> Vec<AppendResults> {
        let sizes: Vec<usize> = jobs.iter().map(Vec::len).collect();
        let mut batch = match self.prepare(jobs) {
            Ok(batch) => batch,
            Err(e) => return fail_all(&sizes, &e),
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
                self.head = Some(Some(last));
                batch.results
            }
            Err(e) => {
                // Reload the head next time: the failed commit may have left anything.
                self.head = None;
                fail_all(&sizes, &FeedError::Store(e))
            }
        }
    }

    /// Builds the entries and store ops of one group commit (nothing written yet).
    fn prepare(&mut self, jobs: Vec<Vec<NewRecord>>) -> Result<Batch, FeedError> {
        let mut head = match self.head {
            Some(head) => head,
            None => stored_head(self.store.as_ref())?.map(|h| h.head),
        };
        self.head = Some(head);
        let mut batch = Batch::default();
        let mut ids: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for job in jobs {
            let mut results = Vec::with_capacity(job.len());
            for record in job {
                results.push(self.prepare_one(record, &mut head, &mut ids, &mut batch));
            }
            batch.results.push(results);
        }
        if head != self.head.flatten() {
            batch.last_head = head;
        }
        Ok(batch)
    }

    /// Adds one record to `batch` on top of `head`, or refuses it.
    fn prepare_one(
        &self,
        record: NewRecord,
        head: &mut Option<Head>,
        ids: &mut BTreeMap<Vec<u8>, u64>,
        batch: &mut Batch,
    ) -> Result<Appended, FeedError> {
        if let Some(&seq) = ids.get(record.record_id.as_slice()) {
            return Err(FeedError::Duplicate { seq });
        }
        if let Some(seq) = seq_of_id(self.store.as_ref(), &record.record_id)? {
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
            author: record.author,
            kind: record.kind,
            record_id: record.record_id,
            body: record.body,
        })
        .map_err(FeedError::Invalid)?;
        check_append(head.as_ref(), &entry)
            .map_err(|e| FeedError::Corrupt(format!("stored head refuses the next entry: {e}")))?;
        let kind = entry.kind();
        let count = match batch.kind_counts.get_mut(kind) {
            Some(count) => count,
            None => {
                let stored = match self.store.get(Table::Ledger, &kind_count_key(kind))? {
                    Some(v) => seq_value(&v, "kind count")?,
                    None => 0,
                };
                batch.kind_counts.entry(kind.to_owned()).or_insert(stored)
            }
        };
        *count = count.saturating_add(1);
        let hash = entry.hash();
        let seq_bytes = seq.to_be_bytes().to_vec();
        batch.ops.extend([
            put(entry_key(seq), entry.to_bytes()),
            put(id_key(entry.record_id()), seq_bytes.clone()),
            put(hash_key(&hash), seq_bytes),
            put(kind_key(kind, seq), Vec::new()),
        ]);
        ids.insert(entry.record_id().to_vec(), seq);
        *head = Some(Head::of(&entry));
        Ok(Appended { seq, hash })
    }
}
