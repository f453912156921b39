//! The ledger's group commit: every record submitted since the last commit is written as
//! one atomic, durable store batch with one newly signed head.
//!
//! Callers [`submit`](crate::ledger::Ledger::submit) records with a callback for their
//! results and return at once. No thread of its own: when no commit is under way, the
//! submitter gets the commit run back as a [`Work`] for its runtime to run; everything
//! submitted while that run writes joins its next commit. So concurrent writers, and one
//! connection's successive pipelined groups, share fsyncs and head signatures, and the store
//! work overlaps with the connections' decoding and encryption.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::ServerIdentity;
use vserv_core::ledger::{Entry, EntryFields, Head, SignedHead, ZERO_HASH, check_append};
use vserv_store::kv::{Op, Store, Table};

use crate::work::Work;

use crate::ledger_layout::{
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

/// Where a submission's results go once its commit is durable (or failed). Called exactly
/// once, on whichever thread ran the commit.
pub type AppendDone = Box<dyn FnOnce(AppendResults) + Send>;

/// One submission waiting for a commit: records that passed the checks the submitter could
/// make (field rules, record id not stored), or why they did not.
struct Job {
    records: Vec<Result<NewRecord, FeedError>>,
    /// The number of commits made when the submitter checked the record ids against the
    /// store: the commit checks them against the commits made since.
    checked_at: u64,
    done: AppendDone,
}

impl Job {
    /// Tells the submitter that every record failed with `error`.
    fn fail(self, error: &FeedError) {
        let n = self.records.len();
        (self.done)((0..n).map(|_| Err(error.clone())).collect());
    }
}

/// How many recent commits' record ids the committer remembers (for checking submissions
/// against commits made after their submitter looked at the store).
const RECENT_COMMITS: usize = 1024;

/// The submissions waiting for the next commit, and whether a commit run is under way.
#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    running: bool,
}

/// The ledger's group commit: submissions queue here; at most one commit run is under way
/// at a time, handed to the runtime as a [`Work`], and it writes everything queued since
/// the commit before as one store batch.
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    committer: Mutex<Committer>,
}

impl GroupCommit {
    /// The group commit of the feed of `identity` in `store`; `commits` counts the
    /// successful commits (read by submitters before they check).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        identity: Arc<ServerIdentity>,
        commits: Arc<AtomicU64>,
    ) -> GroupCommit {
        GroupCommit {
            queue: Mutex::new(Queue::default()),
            committer: Mutex::new(Committer {
                store,
                identity,
                head: None,
                recent: Recent::default(),
                commits,
            }),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Only whole jobs are pushed and taken under this lock: a panic elsewhere leaves
        // it consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `records`, checked against the store as of `checked_at` commits; `done`
    /// gets their results. Returns the commit run to hand to the runtime if none is under
    /// way (the caller must run it or drop it; dropped unrun, it fails what it would
    /// have committed).
    pub(crate) fn submit(
        self: &Arc<Self>,
        records: Vec<Result<NewRecord, FeedError>>,
        checked_at: u64,
        done: AppendDone,
    ) -> Option<Work> {
        let mut queue = self.queue();
        queue.jobs.push(Job {
            records,
            checked_at,
            done,
        });
        if queue.running {
            return None;
        }
        queue.running = true;
        let run = CommitRun {
            group: Arc::clone(self),
            ran: false,
        };
        Some(Work::new("ledger commit", move || run.run()))
    }

    /// Commits what is queued, again and again, until nothing is (whatever is submitted
    /// while a commit is written joins the next one).
    fn run_until_empty(&self) {
        loop {
            let jobs = {
                let mut queue = self.queue();
                if queue.jobs.is_empty() {
                    queue.running = false;
                    return;
                }
                std::mem::take(&mut queue.jobs)
            };
            let (records, done): (Vec<_>, Vec<_>) = jobs
                .into_iter()
                .map(|j| ((j.records, j.checked_at), j.done))
                .unzip();
            let out = self
                .committer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .commit(records);
            for (results, done) in out.into_iter().zip(done) {
                done(results);
            }
        }
    }

    /// Fails every queued submission (its commit run was dropped unrun).
    fn abandon(&self) {
        let jobs = {
            let mut queue = self.queue();
            queue.running = false;
            std::mem::take(&mut queue.jobs)
        };
        let error = FeedError::Corrupt("the ledger's commit was never run".to_owned());
        for job in jobs {
            job.fail(&error);
        }
    }
}

/// One commit run handed to the runtime; dropped without running, it fails the queue.
struct CommitRun {
    group: Arc<GroupCommit>,
    ran: bool,
}

impl CommitRun {
    fn run(mut self) {
        self.ran = true;
        self.group.run_until_empty();
    }
}

impl Drop for CommitRun {
    fn drop(&mut self) {
        if !self.ran {
            self.group.abandon();
        }
    }
}

/// The state a commit works on (the last head, recent ids).
struct Committer {
    store: Arc<dyn Store>,
    identity: Arc<ServerIdentity>,
    /// The head as of the last commit: `None` = not known (read it from the store),
    /// `Some(None)` = empty feed.
    head: Option<Option<Head>>,
    /// Record ids of the last commits.
    recent: Recent,
    /// Successful commits so far (this ledger's).
    commits: Arc<AtomicU64>,
}

/// The record ids of the last [`RECENT_COMMITS`] commits, by commit number (from 1).
#[derive(Default)]
struct Recent {
    /// Record id -> (commit number, seq).
    ids: BTreeMap<Vec<u8>, (u64, u64)>,
    /// Commit number and record ids of each remembered commit, oldest first.
    order: VecDeque<(u64, Vec<Vec<u8>>)>,
    /// Every commit numbered above this is remembered.
    forgotten: u64,
}

impl Recent {
    /// Where `id` was stored by a commit numbered above `after`: `Ok(Some(seq))`;
    /// `Ok(None)` if by none; `Err(())` if such commits are no longer remembered.
    fn stored_after(&self, id: &[u8], after: u64) -> Result<Option<u64>, ()> {
        if after < self.forgotten {
            return Err(());
        }
        Ok(match self.ids.get(id) {
            Some(&(commit, seq)) if commit > after => Some(seq),
            _ => None,
        })
    }

    fn remember(&mut self, commit: u64, ids: Vec<(Vec<u8>, u64)>) {
        let mut names = Vec::with_capacity(ids.len());
        for (id, seq) in ids {
            self.ids.insert(id.clone(), (commit, seq));
            names.push(id);
        }
        self.order.push_back((commit, names));
        while self.order.len() > RECENT_COMMITS {
            let Some((old, names)) = self.order.pop_front() else {
                break;
            };
            for id in names {
                if self.ids.get(&id).is_some_and(|&(c, _)| c == old) {
                    self.ids.remove(&id);
                }
            }
            self.forgotten = old;
        }
    }
}

/// The store ops and results of one group commit being built.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    results: Vec<AppendResults>,
    kind_counts: BTreeMap<String, u64>,
    /// Record id -> seq of every record accepted into this batch.
    ids: BTreeMap<Vec<u8>, u64>,
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
    fn commit(
        &mut self,
        jobs: Vec<(Vec<Result<NewRecord, FeedError>>, u64)>,
    ) -> Vec<AppendResults> {
        let sizes: Vec<usize> = jobs.iter().map(|(records, _)| records.len()).collect();
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
                // Published after the commit: a submitter that reads `n` and then the
                // store sees every commit up to `n`; later ones are in `recent`.
                let commit = self.commits.load(Ordering::Relaxed).saturating_add(1);
                self.recent
                    .remember(commit, std::mem::take(&mut batch.ids).into_iter().collect());
                self.commits.store(commit, Ordering::Release);
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
    fn prepare(
        &mut self,
        jobs: Vec<(Vec<Result<NewRecord, FeedError>>, u64)>,
    ) -> Result<Batch, FeedError> {
        let mut head = match self.head {
            Some(head) => head,
            None => stored_head(self.store.as_ref())?.map(|h| h.head),
        };
        self.head = Some(head);
        let mut batch = Batch::default();
        for (job, checked_at) in jobs {
            let mut results = Vec::with_capacity(job.len());
            for record in job {
                results.push(
                    record.and_then(|r| self.prepare_one(r, checked_at, &mut head, &mut batch)),
                );
            }
            batch.results.push(results);
        }
        if head != self.head.flatten() {
            batch.last_head = head;
        }
        Ok(batch)
    }

    /// Adds one record to `batch` on top of `head`, or refuses it.
    /// The submitter found `record`'s id absent from the store after `checked_at` commits.
    fn prepare_one(
        &self,
        record: NewRecord,
        checked_at: u64,
        head: &mut Option<Head>,
        batch: &mut Batch,
    ) -> Result<Appended, FeedError> {
        let id = record.record_id.as_slice();
        let stored = match batch.ids.get(id) {
            Some(&seq) => Some(seq),
            None => match self.recent.stored_after(id, checked_at) {
                Ok(seq) => seq,
                // Too long ago to tell from memory: ask the store.
                Err(()) => seq_of_id(self.store.as_ref(), id)?,
            },
        };
        if let Some(seq) = stored {
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
        batch.ids.insert(entry.record_id().to_vec(), seq);
        *head = Some(Head::of(&entry));
        Ok(Appended { seq, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_answer_for_commits_after_the_check_and_forget_old_ones() {
        let mut recent = Recent::default();
        recent.remember(1, vec![(b"a".to_vec(), 1)]);
        recent.remember(2, vec![(b"b".to_vec(), 2), (b"c".to_vec(), 3)]);
        // Checked the store after commit 1: `a` was visible then, `b` was not.
        assert_eq!(recent.stored_after(b"a", 1), Ok(None));
        assert_eq!(recent.stored_after(b"b", 1), Ok(Some(2)));
        assert_eq!(recent.stored_after(b"a", 0), Ok(Some(1)));
        assert_eq!(recent.stored_after(b"z", 0), Ok(None));
        for commit in 3..=(RECENT_COMMITS as u64 + 2) {
            recent.remember(commit, vec![(format!("x{commit}").into_bytes(), commit)]);
        }
        // Commits 1 and 2 are forgotten: a check made before them cannot be answered.
        assert_eq!(recent.stored_after(b"b", 1), Err(()));
        assert_eq!(recent.stored_after(b"b", 2), Ok(None));
        assert_eq!(recent.stored_after(b"x5", 2), Ok(Some(5)));
        assert_eq!(recent.ids.len(), RECENT_COMMITS);
    }
}
