//! The ledger's group commit: every record submitted since the last commit is written as
//! one atomic, durable store batch with one newly signed head.
//!
//! Callers [`submit`](crate::ledger::Ledger::submit) records with a callback for their
//! results and return at once. No thread of its own: when no commit is under way, the
//! submitter gets the commit run back as a [`Work`] for its runtime to run; everything
//! submitted while that run writes joins its next commit. So concurrent writers, and one
//! connection's successive pipelined groups, share fsyncs and head signatures, and the store
//! work overlaps with the connections' decoding and encryption.
//!
//! A commit takes at most [`MAX_SEGMENT_ENTRIES`] records, in submission order (a submission
//! with more is split across commits, and its callback runs once, after the last); the rest
//! stays queued for the next commit. Every commit also stores the head it signed under
//! `sh:` + seq, so replication can cut the feed into segments that end at signed heads and
//! that a receiver can hold whole.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::ServerIdentity;
use vserv_core::ledger::{Entry, EntryFields, Head, SignedHead, ZERO_HASH, check_append};
use vserv_store::kv::{Op, Store, Table};

use crate::work::Work;

use crate::ledger_layout::{
    FeedError, FeedKeys, HEAD_KEY, add_to_kind_runs, entry_key, hash_key, id_key, kind_count_key,
    kind_key, kind_runs_value, seq_of_id, seq_value, signed_head_key, stored_head,
};

/// The most records one commit of the feed takes, so that the entries between two stored
/// signed heads (a replication segment) never exceed it. (Core's replication module will own
/// this limit, which receivers enforce; this is its value until the two are unified.)
pub const MAX_SEGMENT_ENTRIES: usize = 4096;

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
    /// The records not committed yet.
    records: Vec<Result<NewRecord, FeedError>>,
    /// The number of commits made when the submitter checked the record ids against the
    /// store: the commit checks them against the commits made since.
    checked_at: u64,
    done: AppendDone,
    /// The results of the job's first records, when the cap of a commit split it.
    earlier: AppendResults,
}

impl Job {
    /// Tells the submitter the results of the records committed so far, and that every
    /// other record failed with `error`.
    fn fail(mut self, error: &FeedError) {
        let rest = self.records.len();
        self.earlier.extend((0..rest).map(|_| Err(error.clone())));
        (self.done)(self.earlier);
    }
}

/// The records of one job that go into one commit.
struct Piece {
    records: Vec<Result<NewRecord, FeedError>>,
    checked_at: u64,
    /// The job, when this piece holds its last records; `None` when the job's remaining
    /// records stay first in the queue for the next commit.
    owner: Option<Job>,
}

/// Takes the records of the next commit from the front of `jobs`: whole jobs while they fit
/// in [`MAX_SEGMENT_ENTRIES`] records, then the first records of the job that does not fit
/// (the rest of it stays first in the queue).
fn take_commit(jobs: &mut VecDeque<Job>) -> Vec<Piece> {
    let mut room = MAX_SEGMENT_ENTRIES;
    let mut pieces = Vec::new();
    while room > 0 {
        let Some(front) = jobs.front_mut() else {
            break;
        };
        if front.records.len() <= room {
            room -= front.records.len();
            if let Some(mut job) = jobs.pop_front() {
                pieces.push(Piece {
                    records: mem::take(&mut job.records),
                    checked_at: job.checked_at,
                    owner: Some(job),
                });
            }
        } else {
            let rest = front.records.split_off(room);
            pieces.push(Piece {
                records: mem::replace(&mut front.records, rest),
                checked_at: front.checked_at,
                owner: None,
            });
            room = 0;
        }
    }
    pieces
}

/// How many recent commits' record ids the committer remembers (for checking submissions
/// against commits made after their submitter looked at the store).
const RECENT_COMMITS: usize = 1024;

/// The most record ids the committer remembers: older commits are forgotten whole once the
/// remembered ones hold more (a submission checked before a forgotten commit has its ids
/// looked up in the store instead). This bounds the committer's memory (about 10 MiB)
/// whatever the size of the commits; a submission waits a few commits at most, and 16 full
/// commits fit.
const RECENT_IDS: usize = 16 * MAX_SEGMENT_ENTRIES;

/// The submissions waiting for the next commit, and whether a commit run is under way.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
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
    /// `keys` are the own feed's, with or without the legacy index lookups (see
    /// `ledger_layout.rs`).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        identity: Arc<ServerIdentity>,
        commits: Arc<AtomicU64>,
        keys: FeedKeys,
    ) -> GroupCommit {
        GroupCommit {
            queue: Mutex::new(Queue::default()),
            committer: Mutex::new(Committer {
                store,
                identity,
                keys,
                head: None,
                recent: Recent::default(),
                commits,
                on_commit: None,
            }),
        }
    }

    /// Registers the listener told of every durable commit (replacing any before).
    pub(crate) fn on_commit(&self, listener: CommitListener) {
        self.committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_commit = Some(listener);
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
        queue.jobs.push_back(Job {
            records,
            checked_at,
            done,
            earlier: Vec::new(),
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
    /// while a commit is written joins the next one), at most [`MAX_SEGMENT_ENTRIES`]
    /// records per commit.
    fn run_until_empty(&self) {
        loop {
            let pieces = {
                let mut queue = self.queue();
                if queue.jobs.is_empty() {
                    queue.running = false;
                    return;
                }
                take_commit(&mut queue.jobs)
            };
            let (records, owners): (Vec<_>, Vec<_>) = pieces
                .into_iter()
                .map(|p| ((p.records, p.checked_at), p.owner))
                .unzip();
            let out = self
                .committer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .commit(records);
            for (results, owner) in out.into_iter().zip(owners) {
                match owner {
                    Some(mut job) => {
                        job.earlier.extend(results);
                        (job.done)(job.earlier);
                    }
                    // The split job is still first in the queue: only this run takes jobs
                    // out of it, and submissions join at the back.
                    None => {
                        if let Some(front) = self.queue().jobs.front_mut() {
                            front.earlier.extend(results);
                        }
                    }
                }
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
    /// The own feed's keys (the record id lookups of old commits go through them).
    keys: FeedKeys,
    /// The head as of the last commit: `None` = not known (read it from the store),
    /// `Some(None)` = empty feed.
    head: Option<Option<Head>>,
    /// Record ids of the last commits.
    recent: Recent,
    /// Successful commits so far (this ledger's).
    commits: Arc<AtomicU64>,
    /// Told the signed head of every durable commit (replication pushes it to its links).
    on_commit: Option<CommitListener>,
}

/// What [`crate::ledger::Ledger::on_commit`] registers: called with the signed head of each
/// durable commit, on the commit run's thread, after the store batch is durable and before
/// the submitters are answered.
pub type CommitListener = Arc<dyn Fn(SignedHead) + Send + Sync>;

/// The record ids of the last [`RECENT_COMMITS`] commits (fewer when they hold more than
/// [`RECENT_IDS`] ids), by commit number (from 1).
#[derive(Default)]
struct Recent {
    /// Record id -> (commit number, seq). (A hash map: up to [`RECENT_IDS`] random ids, each
    /// looked up and inserted once per record, in no particular order.)
    /// Each id is stored once, shared with `order`.
    ids: HashMap<Arc<[u8]>, (u64, u64)>,
    /// Commit number and record ids of each remembered commit, oldest first.
    order: VecDeque<(u64, Vec<Arc<[u8]>>)>,
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

    fn remember(&mut self, commit: u64, ids: Vec<(impl Into<Arc<[u8]>>, u64)>) {
        let mut names = Vec::with_capacity(ids.len());
        for (id, seq) in ids {
            let id: Arc<[u8]> = id.into();
            self.ids.insert(Arc::clone(&id), (commit, seq));
            names.push(id);
        }
        self.order.push_back((commit, names));
        while self.order.len() > RECENT_COMMITS
            || (self.ids.len() > RECENT_IDS && self.order.len() > 1)
        {
            let Some((old, names)) = self.order.pop_front() else {
                break;
            };
            for id in names {
                if self.ids.get(&*id).is_some_and(|&(c, _)| c == old) {
                    self.ids.remove(&*id);
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
    /// Kind -> the seqs of this batch's entries of that kind, as ascending runs `(first,
    /// last)`: one kind index record each (`ledger_layout.rs`).
    kind_runs: BTreeMap<String, Vec<(u64, u64)>>,
    /// Record id -> seq of every record accepted into this batch.
    ids: HashMap<Arc<[u8]>, u64>,
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

/// A write of an `id:` or `h:` key of the own feed, to its index table.
fn put_index(key: Vec<u8>, value: Vec<u8>) -> Op {
    Op::Put {
        table: FeedKeys::OWN.index_table(),
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
        let signed_head = SignedHead::sign(&self.identity, last);
        let signed = signed_head.to_bytes().to_vec();
        batch
            .ops
            .push(put(signed_head_key(last.seq), signed.clone()));
        batch.ops.push(put(HEAD_KEY.to_vec(), signed));
        for (kind, count) in &batch.kind_counts {
            batch
                .ops
                .push(put(kind_count_key(kind), count.to_be_bytes().to_vec()));
        }
        for (kind, runs) in &batch.kind_runs {
            if let Some(&(_, last)) = runs.last() {
                batch
                    .ops
                    .push(put(kind_key(kind, last), kind_runs_value(runs)));
            }
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
                if let Some(listener) = &self.on_commit {
                    listener(signed_head);
                }
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
            None => stored_head(self.store.as_ref(), &FeedKeys::OWN)?.map(|h| h.head),
        };
        self.head = Some(head);
        let records: usize = jobs.iter().map(|(job, _)| job.len()).sum();
        let mut batch = Batch {
            // Three records per entry, and a few per commit (heads, kind counts and runs):
            // sized once, so a large commit does not regrow it.
            ops: Vec::with_capacity(3 * records + 16),
            ..Batch::default()
        };
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
                Err(()) => seq_of_id(self.store.as_ref(), &self.keys, id)?,
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
        let runs = match batch.kind_runs.get_mut(kind) {
            Some(runs) => runs,
            None => batch.kind_runs.entry(kind.to_owned()).or_default(),
        };
        add_to_kind_runs(runs, seq);
        let hash = entry.hash();
        let seq_bytes = seq.to_be_bytes().to_vec();
        batch.ops.extend([
            put(entry_key(seq), entry.to_bytes()),
            put_index(id_key(entry.record_id()), seq_bytes.clone()),
            put_index(hash_key(&hash), seq_bytes),
        ]);
        batch.ids.insert(Arc::from(entry.record_id()), seq);
        *head = Some(Head::of(&entry));
        Ok(Appended { seq, hash })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use rand::SeedableRng;
    use vserv_store::memory::MemoryStore;

    use super::*;
    use crate::ledger::Ledger;
    use crate::ledger_layout::SIGNED_HEAD_PREFIX;

    fn ledger() -> (Ledger, MemoryStore) {
        let store = MemoryStore::new();
        let identity = ServerIdentity::generate(&mut rand::rngs::StdRng::seed_from_u64(3));
        (
            Ledger::new(Arc::new(store.clone()), Arc::new(identity)),
            store,
        )
    }

    fn record(id: &str) -> NewRecord {
        NewRecord {
            author: "alice".to_owned(),
            kind: "note".to_owned(),
            record_id: id.as_bytes().to_vec(),
            body: b"x".to_vec(),
            timestamp: 1,
        }
    }

    fn records(ids: impl Iterator<Item = u64>) -> Vec<NewRecord> {
        ids.map(|i| record(&format!("r{i}"))).collect()
    }

    /// The stored `sh:` keys: seq -> signed head, each checked to decode, verify and match
    /// the entry it names.
    fn signed_heads(ledger: &Ledger, store: &MemoryStore) -> BTreeMap<u64, SignedHead> {
        let mut out = BTreeMap::new();
        for (key, value) in store.scan(Table::Ledger, SIGNED_HEAD_PREFIX).unwrap() {
            let seq = u64::from_be_bytes(key[SIGNED_HEAD_PREFIX.len()..].try_into().unwrap());
            let signed = SignedHead::decode(&value).unwrap();
            signed.verify().unwrap();
            assert_eq!(signed.head.seq, seq);
            let entry = ledger.by_seq(seq).unwrap().unwrap();
            assert_eq!(signed.head, Head::of(&entry));
            out.insert(seq, signed);
        }
        out
    }

    fn seqs(results: &[Result<Appended, FeedError>]) -> Vec<u64> {
        results.iter().map(|r| r.as_ref().unwrap().seq).collect()
    }

    #[test]
    fn every_commit_keeps_the_head_it_signed() {
        let (ledger, store) = ledger();
        assert!(signed_heads(&ledger, &store).is_empty());
        for i in 1..=3 {
            ledger.append_batch(records(i..=i));
        }
        ledger.append_batch(records(4..=5));
        // A commit whose every record is refused writes nothing, and no head.
        assert!(ledger.append_batch(records(5..=5))[0].is_err());
        let heads = signed_heads(&ledger, &store);
        assert_eq!(heads.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 5]);
        assert_eq!(heads.get(&5), ledger.head().unwrap().as_ref());
    }

    #[test]
    fn a_batch_over_the_cap_is_split_across_commits_with_one_callback() {
        let (ledger, store) = ledger();
        let n = MAX_SEGMENT_ENTRIES as u64 + 904;
        let before = store.commit_count();
        let results = ledger.append_batch(records(1..=n));
        assert_eq!(seqs(&results), (1..=n).collect::<Vec<_>>());
        assert_eq!(store.commit_count() - before, 2);
        let heads = signed_heads(&ledger, &store);
        assert_eq!(
            heads.keys().copied().collect::<Vec<_>>(),
            [MAX_SEGMENT_ENTRIES as u64, n]
        );
        assert_eq!(
            ledger.check().unwrap(),
            crate::ledger::CheckReport::Ok { seq: n }
        );
    }

    #[test]
    fn queued_submissions_fill_commits_up_to_the_cap_in_order() {
        let (ledger, store) = ledger();
        let (tx, rx) = mpsc::channel();
        let submit = |job: usize, records: Vec<NewRecord>| {
            let tx = tx.clone();
            ledger.submit(
                records,
                Box::new(move |results| {
                    let _ = tx.send((job, results));
                }),
            )
        };
        let run = submit(0, records(1..=3000)).expect("the first submission gets the run");
        // Job 1's last record repeats its first id, in the commit after: refused there.
        let mut second = records(3001..=5999);
        second.push(record("r3001"));
        assert!(submit(1, second).is_none());
        assert!(submit(2, records(6001..=9000)).is_none());
        let before = store.commit_count();
        run.run();
        assert_eq!(store.commit_count() - before, 3);
        let mut done: Vec<(usize, AppendResults)> = rx.try_iter().collect();
        done.sort_by_key(|(job, _)| *job);
        assert_eq!(done.len(), 3, "one callback per submission");
        assert_eq!(seqs(&done[0].1), (1..=3000).collect::<Vec<_>>());
        let (appended, refused) = done[1].1.split_at(2999);
        assert_eq!(seqs(appended), (3001..=5999).collect::<Vec<_>>());
        assert!(matches!(refused, [Err(FeedError::Duplicate { seq: 3001 })]));
        assert_eq!(seqs(&done[2].1), (6000..=8999).collect::<Vec<_>>());
        // Commits of 4096 records: 3000 + 1096 of job 1; its other 1904 (one refused) and
        // 2192 of job 2; the last 808 of job 2.
        let heads = signed_heads(&ledger, &store);
        assert_eq!(
            heads.keys().copied().collect::<Vec<_>>(),
            [4096, 8191, 8999]
        );
        assert_eq!(
            ledger.check().unwrap(),
            crate::ledger::CheckReport::Ok { seq: 8999 }
        );
    }

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

    #[test]
    fn recent_ids_stay_bounded_however_large_the_commits() {
        let mut recent = Recent::default();
        let per_commit = MAX_SEGMENT_ENTRIES as u64;
        let mut seq = 0;
        for commit in 1..=40u64 {
            let ids = (0..per_commit)
                .map(|_| {
                    seq += 1;
                    (format!("r{seq}").into_bytes(), seq)
                })
                .collect();
            recent.remember(commit, ids);
            assert!(recent.ids.len() <= RECENT_IDS);
        }
        // The last 16 commits are remembered; a check made before them asks the store.
        assert_eq!(recent.ids.len(), RECENT_IDS);
        assert_eq!(recent.stored_after(b"r1", 0), Err(()));
        assert_eq!(recent.stored_after(b"r1", 23), Err(()));
        assert_eq!(recent.stored_after(b"r163840", 24), Ok(Some(163_840)));
        assert_eq!(recent.stored_after(b"r98305", 24), Ok(Some(98_305)));
        assert_eq!(recent.stored_after(b"r98304", 24), Ok(None));
    }
}
