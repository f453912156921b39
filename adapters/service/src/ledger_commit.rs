//! The ledger's group commit: every record submitted since the last commit is written as
//! one atomic, durable store batch with one newly signed head.
//!
//! Callers [`submit`](crate::ledger::Ledger::submit) records with a callback for their
//! results and return at once. No thread of its own: when no commit run is under way, the
//! submitter gets one back as a [`Work`] for its runtime to run; everything submitted while
//! a commit is written joins the next one. So concurrent writers, and one connection's
//! successive pipelined groups, share fsyncs and head signatures, and the store work
//! overlaps with the connections' decoding and encryption. The next commit is prepared
//! (entries hashed, head signed) while one is written, by a second run, and written only
//! once the one before is durable.
//!
//! A commit takes at most [`MAX_SEGMENT_ENTRIES`] records, in submission order (a submission
//! with more is split across commits, and its callback runs once, after the last); the rest
//! stays queued for the next commit. Every commit also stores the head it signed under
//! `sh:` + seq, so replication can cut the feed into segments that end at signed heads and
//! that a receiver can hold whole.
//!
//! # What bounds the rate
//!
//! One commit is written at a time, so the writing run bounds durable appends. `vserv bench
//! ledger` times its store commits: at 1M entries and 4 connections on 2 CPUs, the writer
//! was busy 89% of the phase, and a commit of about 390 entries took 4.4 ms: 2.0 on a CPU
//! (mostly fjall's in-memory table inserts of the random index keys, under fjall's journal
//! lock), 1.0 waiting for a CPU, 1.4 blocked in the fsync. Larger commits would not help
//! (the cost is per entry, not per commit), and a smaller index memtable (4 MiB) moved CPU
//! from the writer to flushes and compactions without a faster phase. So the writing run
//! does little besides the store commit: the record ids of a durable commit are remembered
//! by moving the map it was prepared with ([`Recent`]).
//!
//! Tried and not kept, as the two CPUs are the limit: the index inserts in a second fjall
//! database beside the journal of record, written concurrently without an fsync (a model
//! of the store workload alone ran about a fifth faster; in the bench the writer's CPU per
//! commit fell from 2.0 to 0.8 ms, but the process spent a fifth more CPU per append and
//! appended 4-5% fewer per second), and the two indexes in tables of their own under bare
//! keys (9-14% less store CPU in the model; in the bench 1-5% more appends, within the
//! noise, and 20-50 MiB more memory).
//!

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::ServerIdentity;
use vserv_core::ledger::{Entry, EntryFields, Head, SignedHead, ZERO_HASH, check_append};
use vserv_store::kv::{Op, Store};

use crate::work::{Inline, Runner, Work};

use crate::ledger_ids::{IdFilter, Stored, span_capacity};
use crate::ledger_index_tail::{IndexBulk, IndexRun, IndexTail, TailPart};
use crate::ledger_layout::{
    FeedError, FeedKeys, HEAD_KEY, OwnFeedKeys, SPANS_KEY, Spans, add_to_kind_runs, commit_value,
    entry_key, kind_count_key, kind_key, kind_runs_value, seq_of_id, seq_value, signed_head_key,
    stored_head,
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

/// The results of a job's records committed so far: shared by the job and the pieces of it
/// on their way through commits, so each commit adds its records' results in order.
type Earlier = Arc<Mutex<AppendResults>>;

fn lock_results(earlier: &Earlier) -> MutexGuard<'_, AppendResults> {
    // Only whole result lists are appended under this lock.
    earlier.lock().unwrap_or_else(|p| p.into_inner())
}

/// One submission waiting for a commit: records that passed the checks the submitter could
/// make (field rules, record id not stored), or why they did not.
struct Job {
    /// The records not taken by a commit yet.
    records: Vec<Result<NewRecord, FeedError>>,
    /// The number of commits made when the submitter checked the record ids against the
    /// store: the commit checks them against the commits made since.
    checked_at: u64,
    done: AppendDone,
    /// The results of the job's first records, when the cap of a commit split it.
    earlier: Earlier,
}

impl Job {
    /// Tells the submitter the results of the records committed so far, and that every
    /// other record failed with `error`.
    fn fail(self, error: &FeedError) {
        let mut results = mem::take(&mut *lock_results(&self.earlier));
        results.extend(self.records.iter().map(|_| Err(error.clone())));
        (self.done)(results);
    }
}

/// Where the results of one piece of a job go.
struct Owner {
    earlier: Earlier,
    /// The job's callback, when the piece holds its last records.
    done: Option<AppendDone>,
}

impl Owner {
    /// Adds the piece's `results`; answers the submitter after the job's last piece.
    fn deliver(self, results: AppendResults) {
        let mut earlier = lock_results(&self.earlier);
        earlier.extend(results);
        if let Some(done) = self.done {
            let all = mem::take(&mut *earlier);
            drop(earlier);
            done(all);
        }
    }
}

/// The records of one job that go into one commit.
struct Piece {
    records: Vec<Result<NewRecord, FeedError>>,
    checked_at: u64,
    owner: Owner,
}

/// Takes the records of the next commit from the front of `jobs`: whole jobs while they fit
/// in `room` records, then the first records of the job that does not fit (the rest of it
/// stays first in the queue).
fn take_commit(jobs: &mut VecDeque<Job>, mut room: usize) -> Vec<Piece> {
    let mut pieces = Vec::new();
    while room > 0 {
        let Some(front) = jobs.front_mut() else {
            break;
        };
        if front.records.len() <= room {
            room -= front.records.len();
            if let Some(job) = jobs.pop_front() {
                pieces.push(Piece {
                    records: job.records,
                    checked_at: job.checked_at,
                    owner: Owner {
                        earlier: job.earlier,
                        done: Some(job.done),
                    },
                });
            }
        } else {
            let rest = front.records.split_off(room);
            pieces.push(Piece {
                records: mem::replace(&mut front.records, rest),
                checked_at: front.checked_at,
                owner: Owner {
                    earlier: Arc::clone(&front.earlier),
                    done: None,
                },
            });
            room = 0;
        }
    }
    pieces
}

/// The most records a commit after entry `prepared` takes with spans of `span` entries:
/// [`MAX_SEGMENT_ENTRIES`], and no more than the span has left.
fn commit_room(prepared: u64, span: u64) -> usize {
    let left = span.max(1) - prepared % span.max(1);
    usize::try_from(left).map_or(MAX_SEGMENT_ENTRIES, |left| left.min(MAX_SEGMENT_ENTRIES))
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

/// The submissions waiting for a commit and the state of the commit runs.
///
/// A commit goes through two stages: prepared (entries built and hashed, head signed, from
/// the state the commits before it leave) and written (one durable store batch, then the
/// submitters are answered). At most one commit is prepared and at most one written at a
/// time, so commit N+1 is prepared while commit N is written: its CPU work overlaps N's
/// fsync. Commits are written in the order they were prepared, and nothing of commit N+1
/// reaches the store before commit N is durable; if N fails, N+1 (prepared on top of it)
/// fails too.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Commit runs handed to the runtime and not finished (at most two: a writer and a
    /// preparer).
    runs: u8,
    /// A run is preparing a commit.
    preparing: bool,
    /// A run is writing a commit.
    writing: bool,
    /// A prepared commit waiting for the writer (set only while one writes).
    ready: Option<Prepared>,
}

impl Queue {
    /// Whether a new run is needed: none exists, or the only one is writing and could be
    /// joined by a preparer.
    fn needs_run(&self) -> bool {
        self.runs == 0
            || (self.runs == 1 && self.writing && !self.preparing && self.ready.is_none())
    }
}

/// The ledger's group commit: submissions queue here; commit runs, handed to the runtime
/// as [`Work`], prepare and write everything queued, one commit after another, each as one
/// store batch.
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    /// The preparing stage's state; locked for the whole of one prepare.
    preparer: Mutex<Preparer>,
    /// Which record ids and kind counts earlier commits hold; locked briefly.
    known: Mutex<Known>,
    store: Arc<dyn Store>,
    /// Successful commits so far (this ledger's).
    commits: Arc<AtomicU64>,
    /// Told the signed head of every durable commit (replication pushes it to its links).
    on_commit: Mutex<Option<CommitListener>>,
    /// The own feed's entries whose index keys are not stored yet (`ledger_index_tail.rs`).
    tail: Arc<IndexTail>,
    /// Where the bulks that store the tail's keys run: [`Inline`] (on the writing run,
    /// after its commit) until [`GroupCommit::run_bulks_on`] gives the runtime's.
    bulk_runner: Mutex<Arc<dyn Runner>>,
    /// The record id filter, whose span filters each bulk adds its ids to.
    ids: Arc<IdFilter>,
    /// The seq of the last prepared entry, as far as the preparer knows (see
    /// [`GroupCommit::room`]).
    prepared: Arc<AtomicU64>,
    /// The own feed's span size is in the store (else each commit records it until one
    /// is durable).
    spans_recorded: Arc<AtomicBool>,
}

impl GroupCommit {
    /// The group commit of the feed of `identity` in `store`; `commits` counts the
    /// successful commits (read by submitters before they check).
    /// `own` are the own feed's keys (with or without the legacy index lookups, see
    /// `ledger_layout.rs`).
    pub(crate) fn new(
        store: Arc<dyn Store>,
        identity: Arc<ServerIdentity>,
        commits: Arc<AtomicU64>,
        own: OwnFeedKeys,
        tail: Arc<IndexTail>,
        ids: Arc<IdFilter>,
    ) -> GroupCommit {
        let prepared = Arc::new(AtomicU64::new(0));
        let spans_recorded = Arc::new(AtomicBool::new(own.recorded));
        GroupCommit {
            queue: Mutex::new(Queue::default()),
            preparer: Mutex::new(Preparer {
                store: Arc::clone(&store),
                identity,
                keys: own.keys,
                tail: Arc::clone(&tail),
                head: None,
                epoch: 0,
                prepared: Arc::clone(&prepared),
                spans_recorded: Arc::clone(&spans_recorded),
            }),
            known: Mutex::new(Known::default()),
            store,
            commits,
            on_commit: Mutex::new(None),
            tail,
            bulk_runner: Mutex::new(Arc::new(Inline)),
            ids,
            prepared,
            spans_recorded,
        }
    }

    /// Runs the bulks that store the index tail's keys on `runner` from now on, beside the
    /// commits instead of on the writing run between them.
    pub(crate) fn run_bulks_on(&self, runner: Arc<dyn Runner>) {
        *self.bulk_runner.lock().unwrap_or_else(|p| p.into_inner()) = runner;
    }

    /// Registers the listener told of every durable commit (replacing any before).
    pub(crate) fn on_commit(&self, listener: CommitListener) {
        *self.on_commit.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Only whole jobs and flags are changed under this lock: a panic elsewhere leaves
        // it consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known(&self) -> MutexGuard<'_, Known> {
        // Each change under this lock is one call that cannot panic half-way.
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `records`, checked against the store as of `checked_at` commits; `done`
    /// gets their results. Returns a commit run to hand to the runtime if one is needed
    /// (the caller must run it or drop it; dropped unrun, it fails what it would have
    /// committed, unless another run takes that over).
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
            earlier: Earlier::default(),
        });
        if !queue.needs_run() {
            return None;
        }
        queue.runs += 1;
        let run = CommitRun {
            group: Arc::clone(self),
            ran: false,
        };
        Some(Work::new("ledger commit", move || run.run()))
    }

    /// Prepares and writes commits until there is nothing this run can do: nothing queued,
    /// or the other run is already on it. At most [`MAX_SEGMENT_ENTRIES`] records per
    /// commit.
    fn run(&self) {
        let mut queue = self.queue();
        loop {
            if !queue.writing
                && let Some(prepared) = queue.ready.take()
            {
                queue.writing = true;
                drop(queue);
                self.write(prepared);
                queue = self.queue();
                queue.writing = false;
                continue;
            }
            if queue.preparing || queue.ready.is_some() || queue.jobs.is_empty() {
                queue.runs = queue.runs.saturating_sub(1);
                return;
            }
            queue.preparing = true;
            let pieces = take_commit(&mut queue.jobs, self.room());
            drop(queue);
            let prepared = self.prepare(pieces);
            queue = self.queue();
            queue.preparing = false;
            if queue.writing {
                // The writer takes it next, before anything prepared later.
                queue.ready = Some(prepared);
                continue;
            }
            queue.writing = true;
            drop(queue);
            self.write(prepared);
            queue = self.queue();
            queue.writing = false;
        }
    }

    /// The most records the next commit takes: [`MAX_SEGMENT_ENTRIES`], and no more than
    /// the entries left in the index span of the last prepared one, so that a commit's
    /// entries never straddle two spans and a bulk can store exactly one
    /// (`ledger_index_tail.rs`). (After a failed commit the count may be stale: a commit
    /// then straddles two spans at worst, which costs a merge, not a wrong key.)
    fn room(&self) -> usize {
        commit_room(
            self.prepared.load(Ordering::Relaxed),
            self.tail.keys().span_len(),
        )
    }

    /// A run was dropped unrun: if it was the last, fails every queued submission.
    fn abandon(&self) {
        let jobs = {
            let mut queue = self.queue();
            queue.runs = queue.runs.saturating_sub(1);
            if queue.runs > 0 {
                return;
            }
            mem::take(&mut queue.jobs)
        };
        let error = FeedError::Corrupt("the ledger's commit was never run".to_owned());
        for job in jobs {
            job.fail(&error);
        }
    }

    /// Builds the next commit from `pieces` on top of the commits prepared before it.
    fn prepare(&self, pieces: Vec<Piece>) -> Prepared {
        let mut preparer = self.preparer.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = self.known().epoch;
        if preparer.epoch != epoch {
            // A commit failed since the last prepare: the head it built on may not be
            // stored; read it back.
            preparer.epoch = epoch;
            preparer.head = None;
        }
        let mut jobs = Vec::with_capacity(pieces.len());
        let mut owners = Vec::with_capacity(pieces.len());
        for piece in pieces {
            jobs.push((piece.records, piece.checked_at));
            owners.push(piece.owner);
        }
        let sizes: Vec<usize> = jobs.iter().map(|(records, _)| records.len()).collect();
        let (results, write) = match preparer.prepare(jobs, &self.known) {
            Err(e) => (fail_all(&sizes, &e), None),
            Ok(batch) => {
                let (results, sealed) = preparer.seal(batch);
                let write = sealed.map(|sealed| {
                    let mut known = self.known();
                    if known.epoch == epoch {
                        known.pending.push_back(sealed.pending);
                    }
                    Write {
                        ops: sealed.ops,
                        signed_head: sealed.signed_head,
                        sizes,
                        run: sealed.run,
                    }
                });
                (results, write)
            }
        };
        drop(preparer);
        Prepared {
            owners,
            epoch,
            results,
            write,
        }
    }

    /// Writes a prepared commit (unless a commit before it failed since it was prepared)
    /// and answers its submitters.
    fn write(&self, prepared: Prepared) {
        let Prepared {
            owners,
            epoch,
            results,
            write,
        } = prepared;
        let results = match write {
            None => results,
            Some(Write {
                ops,
                signed_head,
                sizes,
                run,
            }) => {
                let stale = {
                    let known = self.known();
                    (known.epoch != epoch).then(|| known.failure.clone())
                };
                match stale {
                    Some(failure) => fail_all(&sizes, &failure.unwrap_or_else(earlier_failed)),
                    None => match self.store.commit(ops) {
                        Ok(()) => {
                            self.spans_recorded.store(true, Ordering::Relaxed);
                            if let Some(run) = &run {
                                self.tail.committed(run);
                            }
                            self.published(signed_head);
                            results
                        }
                        Err(e) => {
                            let error = FeedError::Store(e);
                            let mut known = self.known();
                            known.epoch = known.epoch.wrapping_add(1);
                            known.pending.clear();
                            known.failure = Some(error.clone());
                            drop(known);
                            fail_all(&sizes, &error)
                        }
                    },
                }
            }
        };
        for (owner, results) in owners.into_iter().zip(results) {
            owner.deliver(results);
        }
        self.index_tail();
    }

    /// Once the index tail holds a bulk (`ledger_index_tail.rs`), hands the storing of its
    /// keys to the bulk runner: the writing run goes on with the next commit meanwhile.
    fn index_tail(&self) {
        let Some(part) = self.tail.take_due() else {
            return;
        };
        let bulk = Bulk {
            store: Arc::clone(&self.store),
            tail: Arc::clone(&self.tail),
            ids: Arc::clone(&self.ids),
            part,
            stored: false,
        };
        let runner = Arc::clone(&self.bulk_runner.lock().unwrap_or_else(|p| p.into_inner()));
        runner.run(Work::new("ledger index bulk", move || bulk.store()));
    }

    /// Makes the commit just written known: its record ids move from pending to recent,
    /// the commit count goes up, and the listener hears of its signed head.
    fn published(&self, signed_head: SignedHead) {
        {
            let mut known = self.known();
            // Published after the commit: a submitter that reads `n` and then the store
            // sees every commit up to `n`; later ones are in `recent` or `pending`.
            let commit = self.commits.load(Ordering::Relaxed).saturating_add(1);
            if let Some(pending) = known.pending.pop_front() {
                known.recent.remember(commit, pending.ids);
            }
            self.commits.store(commit, Ordering::Release);
        }
        let listener = self
            .on_commit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(listener) = listener {
            listener(signed_head);
        }
    }
}

/// The storing of one part of the index tail.
struct Bulk {
    store: Arc<dyn Store>,
    tail: Arc<IndexTail>,
    ids: Arc<IdFilter>,
    part: Arc<TailPart>,
    stored: bool,
}

impl Bulk {
    /// Stores the part's keys as one bulk, then deletes their records (each step durable
    /// before the next), and adds the ids to their spans' filters before the tail forgets
    /// them. A failure leaves them to a later bulk (keys stored twice are the same keys).
    fn store(mut self) {
        let own = *self.tail.keys();
        let IndexBulk { keys, records } = self.part.bulk(&own);
        match self
            .store
            .commit_bulk(keys)
            .and_then(|()| self.store.commit(records))
        {
            Ok(()) => {
                let capacity = span_capacity(&own);
                for (span, ids) in self.part.ids_by_span(&own) {
                    self.ids.add_stored(span, capacity, Stored::Ids, ids);
                }
                for (span, hashes) in self.part.hashes_by_span(&own) {
                    self.ids.add_stored(span, capacity, Stored::Hashes, hashes);
                }
                self.tail.stored();
                self.stored = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not store the ledger's index keys; will retry")
            }
        }
    }
}

impl Drop for Bulk {
    /// A bulk that did not store its part (it failed, or was dropped unrun) gives it back
    /// for the next one to retry.
    fn drop(&mut self) {
        if !self.stored {
            self.tail.unstored();
        }
    }
}

/// The error of a commit prepared on top of one that failed.
fn earlier_failed() -> FeedError {
    FeedError::Corrupt("the commit before this one failed".to_owned())
}

/// One commit run handed to the runtime; dropped without running, it fails the queue
/// (unless another run is under way).
struct CommitRun {
    group: Arc<GroupCommit>,
    ran: bool,
}

impl CommitRun {
    fn run(mut self) {
        self.ran = true;
        self.group.run();
    }
}

impl Drop for CommitRun {
    fn drop(&mut self) {
        if !self.ran {
            self.group.abandon();
        }
    }
}

/// A commit ready to write, or already answered.
struct Prepared {
    /// Where each piece's results go, in the order of `results`.
    owners: Vec<Owner>,
    /// [`Known::epoch`] when it was prepared.
    epoch: u64,
    /// Each piece's results: final without `write`, else once it is durable.
    results: Vec<AppendResults>,
    /// The store batch, unless every record was refused or the prepare failed.
    write: Option<Write>,
}

/// The store batch of a prepared commit.
struct Write {
    ops: Vec<Op>,
    signed_head: SignedHead,
    /// The pieces' record counts (to fail them all if the batch is not stored).
    sizes: Vec<usize>,
    /// The entries' index records for the tail, when their `h:` and `id:` keys are not in
    /// `ops` (its `hh:` and `hi:` records are).
    run: Option<IndexRun>,
}

/// One commit's record ids, each with its entry's seq.
type CommitIds = HashMap<Arc<[u8]>, u64>;

/// What commits prepared but not yet durable hold, for the prepares after them.
struct Pending {
    /// Record id -> seq.
    ids: CommitIds,
    /// Kind -> its count once the commit is stored.
    kind_counts: BTreeMap<String, u64>,
}

/// What the commits before the one being prepared hold, beyond what the store showed the
/// submitters.
#[derive(Default)]
struct Known {
    /// Record ids of the last durable commits.
    recent: Recent,
    /// The commits prepared and not yet durable, oldest first (at most two: one being
    /// written, one waiting).
    pending: VecDeque<Pending>,
    /// Counts the failed commits: a commit prepared at an older epoch was built on one
    /// that failed, and is failed unwritten.
    epoch: u64,
    /// The last failure.
    failure: Option<FeedError>,
}

impl Known {
    /// Where `id` is stored by a commit after `checked_at` or a pending one: `Ok(Some(seq))`;
    /// `Ok(None)` if by none; `Err(())` if such commits are no longer remembered.
    fn stored_after(&self, id: &[u8], checked_at: u64) -> Result<Option<u64>, ()> {
        for pending in self.pending.iter().rev() {
            if let Some(&seq) = pending.ids.get(id) {
                return Ok(Some(seq));
            }
        }
        self.recent.stored_after(id, checked_at)
    }

    /// The count of `kind` as of the last pending commit that changes it, if any does.
    fn kind_count(&self, kind: &str) -> Option<u64> {
        self.pending
            .iter()
            .rev()
            .find_map(|pending| pending.kind_counts.get(kind).copied())
    }
}

/// The preparing stage's state: the head the next commit builds on.
struct Preparer {
    store: Arc<dyn Store>,
    identity: Arc<ServerIdentity>,
    /// The own feed's keys (the record id lookups of old commits go through them).
    keys: FeedKeys,
    /// The entries whose index keys are not stored yet (the record id lookups of old
    /// commits ask it first).
    tail: Arc<IndexTail>,
    /// The head as of the last prepared commit: `None` = not known (read it from the
    /// store), `Some(None)` = empty feed.
    head: Option<Option<Head>>,
    /// [`Known::epoch`] as of the last prepare.
    epoch: u64,
    /// Told the seq of the last prepared entry ([`GroupCommit::room`]).
    prepared: Arc<AtomicU64>,
    /// Whether commits need not record the span size ([`GroupCommit`]'s).
    spans_recorded: Arc<AtomicBool>,
}

/// What [`crate::ledger::Ledger::on_commit`] registers: called with the signed head of each
/// durable commit, on the commit run's thread, after the store batch is durable and before
/// the submitters are answered.
pub type CommitListener = Arc<dyn Fn(SignedHead) + Send + Sync>;

/// The most commits' maps one lookup in [`Recent`] asks: a submission checked before more
/// commits than this has its ids looked up in the store instead, so a record costs at most a
/// few dozen map probes however many small commits went by since its check.
const RECENT_PROBES: usize = 32;

/// The record ids of the last [`RECENT_COMMITS`] commits (fewer when they hold more than
/// [`RECENT_IDS`] ids), by commit number (from 1).
///
/// Each commit keeps the map of its ids that it had while pending, so remembering a commit
/// moves one map instead of inserting every id again: that ran on the writing run, which
/// bounds the append rate, and cost about a tenth of its time. A lookup only asks the commits
/// after its submitter's check, a few at most.
#[derive(Default)]
struct Recent {
    /// Each remembered commit's number and record ids (id -> seq), oldest first.
    commits: VecDeque<(u64, CommitIds)>,
    /// The number of ids in `commits`.
    ids: usize,
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
        for (probed, (commit, ids)) in self.commits.iter().rev().enumerate() {
            if *commit <= after {
                break;
            }
            if probed == RECENT_PROBES {
                // The store holds every remembered commit: one read there is cheaper.
                return Err(());
            }
            if let Some(&seq) = ids.get(id) {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// Remembers the `ids` of commit number `commit` (above every one remembered), and
    /// forgets the oldest commits beyond the bounds.
    fn remember(&mut self, commit: u64, ids: CommitIds) {
        self.ids = self.ids.saturating_add(ids.len());
        self.commits.push_back((commit, ids));
        while self.commits.len() > RECENT_COMMITS
            || (self.ids > RECENT_IDS && self.commits.len() > 1)
        {
            let Some((old, ids)) = self.commits.pop_front() else {
                break;
            };
            self.ids = self.ids.saturating_sub(ids.len());
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
    ids: CommitIds,
    /// The hashes and record ids of the batch's entries, in seq order, whose keys it leaves
    /// to the tail (its `first` is set when the batch is sealed).
    run: IndexRun,
    /// The new head, if any record was accepted.
    last_head: Option<Head>,
}

/// A write of an `e:` key of the own feed, to its entries' table.
fn put_entry(key: Vec<u8>, value: Vec<u8>) -> Op {
    Op::Put {
        table: FeedKeys::OWN.entry_table(),
        key,
        value,
    }
}

/// A write of a per-commit key of the own feed (`head`, `sh:`, `k:`, `kc:`), to its commit
/// table.
fn put_commit(key: Vec<u8>, value: Vec<u8>) -> Op {
    Op::Put {
        table: FeedKeys::OWN.commit_table(),
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

/// A prepared batch with its head signed: the store ops of the commit.
struct Sealed {
    ops: Vec<Op>,
    signed_head: SignedHead,
    pending: Pending,
    /// See [`Write::run`].
    run: Option<IndexRun>,
}

impl Preparer {
    /// Builds the entries and store ops of one group commit (nothing written yet) on top
    /// of the last prepared head. A record refused by a field rule or as a duplicate (also
    /// of an earlier record of the group) fails alone.
    fn prepare(
        &mut self,
        jobs: Vec<(Vec<Result<NewRecord, FeedError>>, u64)>,
        known: &Mutex<Known>,
    ) -> Result<Batch, FeedError> {
        let mut head = match self.head {
            Some(head) => head,
            None => stored_head(self.store.as_ref(), &FeedKeys::OWN)?.map(|h| h.head),
        };
        self.head = Some(head);
        self.prepared
            .store(head.map_or(0, |h| h.seq), Ordering::Relaxed);
        let records: usize = jobs.iter().map(|(job, _)| job.len()).sum();
        let mut batch = Batch {
            // One record per entry, and a few per commit (heads, kind counts and runs,
            // index records): sized once, so a large commit does not regrow it; so is its
            // map of ids, which the commit keeps once durable (`Recent`).
            ops: Vec::with_capacity(records + 16),
            ids: CommitIds::with_capacity(records),
            run: IndexRun {
                first: 0,
                hashes: Vec::with_capacity(records),
                ids: Vec::with_capacity(records),
            },
            ..Batch::default()
        };
        for (job, checked_at) in jobs {
            let mut results = Vec::with_capacity(job.len());
            for record in job {
                results.push(
                    record.and_then(|r| {
                        self.prepare_one(r, checked_at, &mut head, &mut batch, known)
                    }),
                );
            }
            batch.results.push(results);
        }
        if head != self.head.flatten() {
            batch.last_head = head;
        }
        Ok(batch)
    }

    /// Signs the new head of `batch` and adds the commit's own records (signed head, kind
    /// counts and runs); the next prepare builds on that head. Returns the records'
    /// results and, unless every record was refused, the commit to write.
    fn seal(&mut self, mut batch: Batch) -> (Vec<AppendResults>, Option<Sealed>) {
        let Some(last) = batch.last_head else {
            return (batch.results, None);
        };
        let signed_head = SignedHead::sign(&self.identity, last);
        let signed = signed_head.to_bytes().to_vec();
        // After the entries (ascending `e:` keys), the commit table's keys in key order
        // (`head` < `hh:` < `hi:` < `k:` < `kc:` < `sh:`; kinds never hold 0x00, so the
        // kind keys sort as the kinds do): the store then takes the batch as it is instead
        // of sorting a copy (`the_commit_is_handed_to_the_store_in_key_order`).
        batch
            .ops
            .push(put_commit(HEAD_KEY.to_vec(), signed.clone()));
        // The commit's entries are last.seq + 1 - n ..= last.seq.
        let run = (!batch.run.hashes.is_empty()).then(|| {
            let n = u64::try_from(batch.run.hashes.len()).unwrap_or(u64::MAX);
            batch.run.first = last.seq.saturating_sub(n).saturating_add(1);
            batch.ops.extend(batch.run.records());
            batch.run
        });
        for (kind, runs) in &batch.kind_runs {
            if let Some(&(_, last)) = runs.last() {
                batch
                    .ops
                    .push(put_commit(kind_key(kind, last), kind_runs_value(runs)));
            }
        }
        for (kind, count) in &batch.kind_counts {
            batch.ops.push(put_commit(
                kind_count_key(kind),
                count.to_be_bytes().to_vec(),
            ));
        }
        batch
            .ops
            .push(put_commit(signed_head_key(last.seq), signed));
        if !self.spans_recorded.load(Ordering::Relaxed) {
            // `sh:` < `spans`.
            let bits = u8::try_from(self.keys.span_bits()).unwrap_or(u8::MAX);
            batch.ops.push(put_commit(SPANS_KEY.to_vec(), vec![bits]));
        }
        self.head = Some(Some(last));
        self.prepared.store(last.seq, Ordering::Relaxed);
        let sealed = Sealed {
            ops: batch.ops,
            signed_head,
            pending: Pending {
                ids: batch.ids,
                kind_counts: batch.kind_counts,
            },
            run,
        };
        (batch.results, Some(sealed))
    }

    /// Adds one record to `batch` on top of `head`, or refuses it.
    /// The submitter found `record`'s id absent from the store after `checked_at` commits.
    fn prepare_one(
        &self,
        record: NewRecord,
        checked_at: u64,
        head: &mut Option<Head>,
        batch: &mut Batch,
        known: &Mutex<Known>,
    ) -> Result<Appended, FeedError> {
        let id = record.record_id.as_slice();
        let stored = match batch.ids.get(id) {
            Some(&seq) => Some(seq),
            None => {
                let remembered = known
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .stored_after(id, checked_at);
                match remembered {
                    Ok(seq) => seq,
                    // Too long ago to tell from memory: ask the tail, then the store.
                    Err(()) => match self.tail.seq_of_id(id) {
                        Some(seq) => Some(seq),
                        None => seq_of_id(self.store.as_ref(), &self.keys, id, Spans::UpToHead)?,
                    },
                }
            }
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
                // A pending commit's count is newer than the store's (it is stored before
                // it stops being pending).
                let pending = known
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .kind_count(kind);
                let stored = match pending {
                    Some(count) => count,
                    None => commit_value(self.store.as_ref(), &self.keys, &kind_count_key(kind))?
                        .map(|v| seq_value(&v, "kind count"))
                        .transpose()?
                        .unwrap_or(0),
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
        batch.ops.push(put_entry(entry_key(seq), entry.to_bytes()));
        let id: Arc<[u8]> = Arc::from(entry.record_id());
        batch.run.hashes.push(hash);
        batch.run.ids.push(Arc::clone(&id));
        batch.ids.insert(id, seq);
        // Not `Head::of`, which would hash the entry a second time.
        *head = Some(Head {
            origin: entry.origin(),
            seq,
            hash,
        });
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
    use vserv_store::kv::Table;

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
        for (key, value) in store
            .scan(Table::LedgerCommits, SIGNED_HEAD_PREFIX)
            .unwrap()
        {
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
    fn the_commit_is_handed_to_the_store_in_key_order() {
        let store = MemoryStore::new();
        let identity = ServerIdentity::generate(&mut rand::rngs::StdRng::seed_from_u64(3));
        let mut preparer = Preparer {
            store: Arc::new(store.clone()),
            identity: Arc::new(identity),
            keys: FeedKeys::OWN,
            tail: Arc::new(IndexTail::open(&store, 100, Ok(FeedKeys::OWN))),
            head: None,
            epoch: 0,
            prepared: Arc::new(AtomicU64::new(0)),
            spans_recorded: Arc::new(AtomicBool::new(false)),
        };
        let kinds = ["b", "a", "ab", "note", "a"];
        let records = (0..40u64)
            .map(|i| {
                Ok(NewRecord {
                    kind: kinds[i as usize % kinds.len()].to_owned(),
                    ..record(&format!("r{i}"))
                })
            })
            .collect();
        let batch = preparer
            .prepare(vec![(records, 0)], &Mutex::new(Known::default()))
            .unwrap();
        let (_, sealed) = preparer.seal(batch);
        let ops = sealed.expect("a commit to write").ops;
        // Strictly increasing (table, key): taken by the store as it is.
        assert!(ops.is_sorted_by(|a, b| a.table_key() < b.table_key()));
        // Entries, the head, 2 index records, 4 kind runs and counts, the signed head, the
        // span size.
        assert_eq!(ops.len(), 40 + 1 + 2 + 4 + 4 + 1 + 1);
        assert_eq!(preparer.prepared.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn a_commit_takes_no_more_than_its_span_has_left() {
        let span = 1 << 16;
        assert_eq!(commit_room(0, span), MAX_SEGMENT_ENTRIES);
        assert_eq!(commit_room(span - 100, span), 100);
        assert_eq!(commit_room(span - 1, span), 1);
        assert_eq!(commit_room(span, span), MAX_SEGMENT_ENTRIES);
        assert_eq!(commit_room(3 * span - 5000, span), MAX_SEGMENT_ENTRIES);
        assert_eq!(commit_room(u64::MAX, span), 1);
        assert_eq!(commit_room(7, 4), 1);
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

    fn ids(ids: Vec<(Vec<u8>, u64)>) -> CommitIds {
        ids.into_iter()
            .map(|(id, seq)| (Arc::from(id), seq))
            .collect()
    }

    #[test]
    fn recent_ids_answer_for_commits_after_the_check_and_forget_old_ones() {
        let mut recent = Recent::default();
        recent.remember(1, ids(vec![(b"a".to_vec(), 1)]));
        recent.remember(2, ids(vec![(b"b".to_vec(), 2), (b"c".to_vec(), 3)]));
        // Checked the store after commit 1: `a` was visible then, `b` was not.
        assert_eq!(recent.stored_after(b"a", 1), Ok(None));
        assert_eq!(recent.stored_after(b"b", 1), Ok(Some(2)));
        assert_eq!(recent.stored_after(b"a", 0), Ok(Some(1)));
        assert_eq!(recent.stored_after(b"z", 0), Ok(None));
        for commit in 3..=(RECENT_COMMITS as u64 + 2) {
            recent.remember(
                commit,
                ids(vec![(format!("x{commit}").into_bytes(), commit)]),
            );
        }
        // Commits 1 and 2 are forgotten: a check made before them cannot be answered.
        assert_eq!(recent.stored_after(b"b", 1), Err(()));
        let last = RECENT_COMMITS as u64 + 2;
        assert_eq!(recent.stored_after(b"b", last - 1), Ok(None));
        assert_eq!(
            recent.stored_after(format!("x{last}").as_bytes(), last - 1),
            Ok(Some(last))
        );
        assert_eq!(recent.ids, RECENT_COMMITS);
    }

    #[test]
    fn a_check_made_before_many_commits_is_sent_to_the_store() {
        let mut recent = Recent::default();
        let commits = 3 * RECENT_PROBES as u64;
        for commit in 1..=commits {
            recent.remember(
                commit,
                ids(vec![(format!("x{commit}").into_bytes(), commit)]),
            );
        }
        // Checked after commit 0: more commits than one lookup asks went by since.
        assert_eq!(recent.stored_after(b"x1", 0), Err(()));
        assert_eq!(recent.stored_after(b"nothing", 0), Err(()));
        // Checked recently enough: answered from memory, whatever the answer.
        let recent_check = commits - RECENT_PROBES as u64;
        assert_eq!(
            recent.stored_after(format!("x{commits}").as_bytes(), recent_check),
            Ok(Some(commits))
        );
        assert_eq!(
            recent.stored_after(format!("x{}", recent_check + 1).as_bytes(), recent_check),
            Ok(Some(recent_check + 1))
        );
        assert_eq!(
            recent.stored_after(format!("x{recent_check}").as_bytes(), recent_check),
            Ok(None)
        );
        assert_eq!(recent.stored_after(b"nothing", recent_check), Ok(None));
    }

    #[test]
    fn recent_ids_stay_bounded_however_large_the_commits() {
        let mut recent = Recent::default();
        let per_commit = MAX_SEGMENT_ENTRIES as u64;
        let mut seq = 0;
        for commit in 1..=40u64 {
            let batch = (0..per_commit)
                .map(|_| {
                    seq += 1;
                    (format!("r{seq}").into_bytes(), seq)
                })
                .collect();
            recent.remember(commit, ids(batch));
            assert!(recent.ids <= RECENT_IDS);
        }
        // The last 16 commits are remembered; a check made before them asks the store.
        assert_eq!(recent.ids, RECENT_IDS);
        assert_eq!(recent.stored_after(b"r1", 0), Err(()));
        assert_eq!(recent.stored_after(b"r1", 23), Err(()));
        assert_eq!(recent.stored_after(b"r163840", 24), Ok(Some(163_840)));
        assert_eq!(recent.stored_after(b"r98305", 24), Ok(Some(98_305)));
        assert_eq!(recent.stored_after(b"r98304", 24), Ok(None));
    }
}
