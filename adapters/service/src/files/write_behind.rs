//! An upload's partial file written behind the connection, so that the connection (opening
//! records), the upload's hashing and the file system work on the cores at once.
//!
//! No thread of its own: the operations go through two queues, each drained by at most
//! one run at a time that the file hands to its runtime's [`Runner`] as a [`Work`] when
//! something is queued and no run is under way (as the ledger's group commit does). The
//! first stage hashes the bytes written, when the upload handed it its hasher
//! ([`PartialFile::hash_behind`]), and passes every operation on; the second runs them on
//! the file. Hashing thus never waits for the disk, and no run ever waits for anything
//! but the disk: a run ends when its queue is empty, and hands itself back to the runner
//! after [`RUN_JOBS`] jobs, so a busy upload holds no pool thread for long. With the
//! [`Inline`](crate::work::Inline) runner every operation is done before it returns (the
//! file is written through).
//!
//! Order is kept: every operation goes through the same two queues, so a checkpoint's sync
//! and saved state come after every write queued before it, and a read, `set_len` or `sync`
//! waits for all of them. The first failure is sticky: every later operation fails with it,
//! so a partial file that missed a write can never be checkpointed past it or committed. A
//! write or a queued checkpoint returns before it is done; its failure is reported by the
//! next operation (the next `fput`, or `fdone`'s sync). Contiguous writes are gathered into
//! batches, so the runs are handed over once per batch rather than per chunk. The
//! connection waits only for work already handed to the runner: an answer, or room when
//! [`IN_FLIGHT`] batches are on their way.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use vserv_core::transfer::{FileHasher, UploadState};

use super::FileError;
use super::transfer::PartialFile;
use crate::work::{Runner, Work};

/// Contiguous writes are gathered into one job of up to this many bytes: one hand-over of
/// each stage and one system call per batch instead of per 16 KiB chunk.
const BATCH: usize = 256 * 1024;

/// Jobs queued at most before each of the two stages. An upload then holds at most
/// [`HELD_BYTES`] of data (1.75 MiB: a batch being gathered, two queued, one being hashed,
/// two queued, one being written), 112 MiB for a connection's 64 open uploads when the disk
/// stalls (the server's transfer budget bounds it further); the connection waits when the
/// disk is slower than the network.
const QUEUE_JOBS: usize = 2;

/// The most data an upload written behind holds: a batch gathered, the queued ones, and
/// the ones being hashed and written.
pub const HELD_BYTES: usize = Buffering::SERVER.held_bytes();

/// Batches handed over and not yet written (queued, being hashed or being written) at
/// most: with the one being gathered, [`HELD_BYTES`].
const IN_FLIGHT: usize = 2 * QUEUE_JOBS + 2;

/// How much a [`WriteBehind`] gathers and holds: the server's [`Buffering::SERVER`] keeps
/// many uploads within its transfer budget, a client writing one large download can hold
/// more to ride out the disk's stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffering {
    /// Contiguous writes are gathered into one job of up to this many bytes (at least 1).
    pub batch: usize,
    /// Batches handed over and not yet written (queued, being hashed or being written) at
    /// most (at least 1); the caller waits for room beyond.
    pub in_flight: usize,
}

impl Buffering {
    /// The server's: 256 KiB batches, [`HELD_BYTES`] held.
    pub const SERVER: Buffering = Buffering {
        batch: BATCH,
        in_flight: IN_FLIGHT,
    };

    /// The most data a write-behind with this buffering holds: the batches in flight and
    /// the one being gathered.
    pub const fn held_bytes(self) -> usize {
        (self.in_flight + 1) * self.batch
    }
}

/// Jobs one run takes before it hands a fresh run to the runner and ends, so that uploads
/// share a bounded pool's threads.
const RUN_JOBS: usize = 8;

enum Job {
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    Checkpoint {
        state: UploadState,
        wait: bool,
    },
    Read {
        offset: u64,
        len: usize,
    },
    SetLen(u64),
    Sync,
    /// For the hashing stage: hash the writes from here on (see `Hashing`).
    HashFrom(Hashing),
    /// For the hashing stage: a checkpoint of bytes `0..offset` with its prefix hash.
    CheckpointHashed {
        offset: u64,
        wait: bool,
    },
    /// For the hashing stage: give the hasher back.
    TakeHasher,
    /// The hasher given back, answered once the writes before it are done.
    Hasher(Option<FileHasher>),
    /// The hashing stage refused an operation: the upload fails with `error` (or with an
    /// earlier failure), in its place in the queue.
    Fail {
        error: FileError,
        wait: bool,
    },
}

impl Job {
    fn is_write(&self) -> bool {
        matches!(self, Job::Write { .. })
    }
}

/// What a waited-for job answers.
enum Answer {
    Done,
    Read(Vec<u8>),
    Hasher(FileHasher),
}

/// The hashing stage's hasher: it has seen bytes `0..hashed` of an upload of `size` bytes.
struct Hashing {
    hasher: FileHasher,
    size: u64,
    hashed: u64,
}

/// The first failure, kept as kind and message (an `io::Error` cannot be cloned).
type Failure = Option<(io::ErrorKind, String, String)>;

/// The two stages, in the order every job goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Hash,
    Write,
}

/// What the connection and the runs share, under one lock.
#[derive(Default)]
struct State {
    to_hash: VecDeque<Job>,
    to_write: VecDeque<Job>,
    /// Whether a run of each stage is handed over and not ended.
    hash_run: bool,
    write_run: bool,
    /// Write jobs handed over and not yet written (or dropped).
    in_flight: usize,
    /// Answers to the waited-for jobs, in order.
    answers: VecDeque<Result<Answer, FileError>>,
    /// Written batches, back to be filled again: no fresh pages to fault in per batch on
    /// the connection's side. A buffer is allocated only when every one is in use, so the
    /// upload never holds more than [`HELD_BYTES`].
    spares: Vec<Vec<u8>>,
    failure: Failure,
    /// A run was dropped unrun (the runtime is shutting down): nothing more is answered.
    lost: bool,
}

impl State {
    fn queue(&mut self, stage: Stage) -> (&mut VecDeque<Job>, &mut bool) {
        match stage {
            Stage::Hash => (&mut self.to_hash, &mut self.hash_run),
            Stage::Write => (&mut self.to_write, &mut self.write_run),
        }
    }

    /// Queues `job` for `stage`; `true` if a run must be handed over for it.
    fn push(&mut self, stage: Stage, job: Job) -> bool {
        let (queue, running) = self.queue(stage);
        queue.push_back(job);
        !std::mem::replace(running, true)
    }

    /// The sticky failure, if there is one.
    fn failed(&self) -> Result<(), FileError> {
        match &self.failure {
            Some(failure) => Err(replay(failure)),
            None => Ok(()),
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is done, an answer is posted or a run ends.
    changed: Condvar,
    runner: Arc<dyn Runner>,
    /// The hashing stage's hasher, used by its run only.
    hashing: Mutex<Option<Hashing>>,
    /// The file, used by the writing stage's run only, until the upload is dropped.
    file: Mutex<Option<Box<dyn PartialFile>>>,
    buffering: Buffering,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under this lock is whole (push, pop, flag): a panic elsewhere
        // leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(state).unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a run of `stage` to the runner (the caller set its flag).
    fn start(self: &Arc<Self>, stage: Stage) {
        let run = Run {
            shared: self.clone(),
            stage,
            ended: false,
        };
        let label = match stage {
            Stage::Hash => "upload hashing",
            Stage::Write => "upload writing",
        };
        self.runner.run(Work::new(label, move || run.run()));
    }

    /// The next job of `stage`, or `None` (the run then ends) when its queue is empty.
    fn next(&self, stage: Stage) -> Option<(Job, Option<FileError>)> {
        let mut state = self.lock();
        let failed = state.failed().err();
        let (queue, running) = state.queue(stage);
        let job = queue.pop_front();
        if job.is_none() {
            *running = false;
            drop(state);
            self.changed.notify_all();
        }
        job.map(|job| (job, failed))
    }

    /// Called by a run that took [`RUN_JOBS`] jobs: `true` (and a fresh run is handed over)
    /// if more are queued, else the run ends.
    fn go_on(self: &Arc<Self>, stage: Stage) -> bool {
        let mut state = self.lock();
        let (queue, running) = state.queue(stage);
        if queue.is_empty() {
            *running = false;
            drop(state);
            self.changed.notify_all();
            return false;
        }
        drop(state);
        self.start(stage);
        true
    }

    /// The hashing stage: hashes writes while it has the hasher, turns hashed checkpoints
    /// into ordinary ones, and passes everything on in order. Its refusals fail the upload
    /// at their place in the queue, so the operations before them still run.
    fn hash_jobs(self: &Arc<Self>) {
        let mut hashing = self.hashing.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..RUN_JOBS {
            let Some((job, _)) = self.next(Stage::Hash) else {
                return;
            };
            let was_write = job.is_write();
            let out = hash(&mut hashing, job);
            let mut state = self.lock();
            if was_write && !out.as_ref().is_some_and(Job::is_write) {
                // Its data was dropped with its refusal.
                state.in_flight -= 1;
            }
            let start = out.is_some_and(|job| state.push(Stage::Write, job));
            drop(state);
            if start {
                self.start(Stage::Write);
            }
        }
        drop(hashing);
        self.go_on(Stage::Hash);
    }

    /// The writing stage: runs the operations on the file and answers those waited for.
    fn write_jobs(self: &Arc<Self>) {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..RUN_JOBS {
            let Some((job, failed)) = self.next(Stage::Write) else {
                return;
            };
            let was_write = job.is_write();
            let written = match file.as_mut() {
                Some(file) => write(file.as_mut(), job, failed),
                // Closed: only a lost run's successor could get here.
                None => Some(Written {
                    result: Err(lost()),
                    wait: true,
                    spare: None,
                }),
            };
            let mut state = self.lock();
            if was_write {
                state.in_flight -= 1;
            }
            if let Some(Written {
                result,
                wait,
                spare,
            }) = written
            {
                let keep = self.buffering.in_flight + 1;
                if let Some(spare) = spare.filter(|_| state.spares.len() < keep) {
                    state.spares.push(spare);
                }
                if let Err(e) = &result {
                    remember(&mut state.failure, e);
                }
                if wait {
                    state.answers.push_back(result);
                }
            }
            drop(state);
            self.changed.notify_all();
        }
        drop(file);
        self.go_on(Stage::Write);
    }
}

/// One run of a stage, as handed to the runner. Dropped unrun (the runtime shutting down),
/// it fails the upload and ends its stage, so nobody waits for it.
struct Run {
    shared: Arc<Shared>,
    stage: Stage,
    ended: bool,
}

impl Run {
    fn run(mut self) {
        match self.stage {
            Stage::Hash => self.shared.hash_jobs(),
            Stage::Write => self.shared.write_jobs(),
        }
        self.ended = true;
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut state = self.shared.lock();
        state.lost = true;
        *state.queue(self.stage).1 = false;
        remember(&mut state.failure, &lost());
        drop(state);
        self.shared.changed.notify_all();
    }
}

/// A [`PartialFile`] whose operations run, in order, behind the caller (see the module
/// docs).
pub struct WriteBehind {
    /// Writes gathered for the next job, and the offset of their first byte.
    batch: Vec<u8>,
    batch_offset: u64,
    shared: Arc<Shared>,
    /// Whether the hashing stage has the upload's hasher.
    hashing: bool,
    /// The target, for messages.
    path: String,
}

impl fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WriteBehind {
    /// Writes `inner` behind the caller through `runner` with the server's buffering;
    /// `path` names the upload's target in errors.
    pub fn new(inner: Box<dyn PartialFile>, path: String, runner: Arc<dyn Runner>) -> WriteBehind {
        WriteBehind::with_buffering(inner, path, runner, Buffering::SERVER)
    }

    /// [`new`](Self::new) gathering and holding as `buffering` says.
    pub fn with_buffering(
        inner: Box<dyn PartialFile>,
        path: String,
        runner: Arc<dyn Runner>,
        buffering: Buffering,
    ) -> WriteBehind {
        let buffering = Buffering {
            batch: buffering.batch.max(1),
            in_flight: buffering.in_flight.max(1),
        };
        WriteBehind {
            batch: Vec::new(),
            batch_offset: 0,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                runner,
                hashing: Mutex::new(None),
                file: Mutex::new(Some(inner)),
                buffering,
            }),
            hashing: false,
            path,
        }
    }

    /// Queues `job` after the gathered writes.
    fn queue(&mut self, job: Job) -> Result<(), FileError> {
        self.send_batch()?;
        self.send(job)
    }

    fn send_batch(&mut self) -> Result<(), FileError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.batch);
        self.send(Job::Write {
            offset: self.batch_offset,
            data,
        })
    }

    /// Hands `job` over, after waiting for room if it is a write.
    fn send(&self, job: Job) -> Result<(), FileError> {
        let mut state = self.shared.lock();
        if job.is_write() {
            // The batches in flight are queued, so their runs are handed over already.
            while state.in_flight >= self.shared.buffering.in_flight && state.failure.is_none() {
                state = self.shared.wait(state);
            }
            state.in_flight += 1;
        }
        let refused = state.failed();
        if refused.is_err() {
            state.in_flight -= usize::from(job.is_write());
            return refused;
        }
        let start = state.push(Stage::Hash, job);
        drop(state);
        if start {
            self.shared.start(Stage::Hash);
        }
        Ok(())
    }

    fn ask(&mut self, job: Job) -> Result<Answer, FileError> {
        self.queue(job)?;
        let mut state = self.shared.lock();
        loop {
            if let Some(answer) = state.answers.pop_front() {
                return answer;
            }
            if state.lost {
                return Err(self.stopped(&state));
            }
            // The job asked is queued, so a run that will answer it is handed over.
            state = self.shared.wait(state);
        }
    }

    fn stopped(&self, state: &State) -> FileError {
        state.failed().err().unwrap_or_else(|| FileError::Io {
            path: self.path.clone(),
            source: io::Error::other("the upload's file work stopped"),
        })
    }

    fn not_hashing(&self) -> FileError {
        FileError::Io {
            path: self.path.clone(),
            source: io::Error::other("the upload's hasher is not with its writer"),
        }
    }
}

impl PartialFile for WriteBehind {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError> {
        let batch_end = self.batch_offset.saturating_add(self.batch.len() as u64);
        if !self.batch.is_empty() && offset != batch_end {
            self.send_batch()?;
        }
        if self.batch.is_empty() {
            let mut state = self.shared.lock();
            state.failed()?;
            self.batch_offset = offset;
            if let Some(spare) = state.spares.pop() {
                self.batch = spare;
            }
            drop(state);
            self.batch.reserve(self.shared.buffering.batch);
        }
        self.batch.extend_from_slice(data);
        if self.batch.len() >= self.shared.buffering.batch {
            self.send_batch()?;
        }
        Ok(())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        match self.ask(Job::Read {
            offset,
            len: buf.len(),
        })? {
            Answer::Read(data) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok(n)
            }
            _ => Ok(0),
        }
    }

    fn set_len(&mut self, len: u64) -> Result<(), FileError> {
        self.ask(Job::SetLen(len)).map(|_| ())
    }

    fn sync(&mut self) -> Result<(), FileError> {
        self.ask(Job::Sync).map(|_| ())
    }

    fn checkpoint(&mut self, state: &UploadState) -> Result<(), FileError> {
        self.ask(Job::Checkpoint {
            state: *state,
            wait: true,
        })
        .map(|_| ())
    }

    fn checkpoint_soon(&mut self, state: &UploadState) -> Result<(), FileError> {
        self.queue(Job::Checkpoint {
            state: *state,
            wait: false,
        })
    }

    fn can_hash_behind(&self) -> bool {
        !self.hashing
    }

    fn hash_behind(&mut self, hasher: FileHasher, size: u64, offset: u64) -> Result<(), FileError> {
        if self.hashing {
            return Err(self.not_hashing());
        }
        self.queue(Job::HashFrom(Hashing {
            hasher,
            size,
            hashed: offset,
        }))?;
        self.hashing = true;
        Ok(())
    }

    fn checkpoint_behind(&mut self, offset: u64, soon: bool) -> Result<(), FileError> {
        if !self.hashing {
            return Err(self.not_hashing());
        }
        let job = Job::CheckpointHashed {
            offset,
            wait: !soon,
        };
        if soon {
            self.queue(job)
        } else {
            self.ask(job).map(|_| ())
        }
    }

    fn take_hasher(&mut self) -> Result<FileHasher, FileError> {
        if !self.hashing {
            return Err(self.not_hashing());
        }
        self.hashing = false;
        match self.ask(Job::TakeHasher)? {
            Answer::Hasher(hasher) => Ok(hasher),
            _ => Err(self.not_hashing()),
        }
    }
}

impl Drop for WriteBehind {
    /// Writes what was gathered and waits for the queued operations to finish (their runs
    /// are handed over), then closes the file here, so it is quiet once dropped.
    fn drop(&mut self) {
        if let Err(e) = self.send_batch() {
            tracing::warn!(path = %self.path, error = %e, "an upload's last writes failed");
        }
        let mut state = self.shared.lock();
        while state.hash_run || state.write_run {
            state = self.shared.wait(state);
        }
        drop(state);
        let file = self
            .shared
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(file);
    }
}

fn replay((kind, path, message): &(io::ErrorKind, String, String)) -> FileError {
    FileError::Io {
        path: path.clone(),
        source: io::Error::new(*kind, message.clone()),
    }
}

fn remember(slot: &mut Failure, e: &FileError) {
    if slot.is_none() {
        let (kind, path) = match e {
            FileError::Io { path, source } => (source.kind(), path.clone()),
            _ => (io::ErrorKind::Other, String::new()),
        };
        let message = match e {
            FileError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        };
        *slot = Some((kind, path, message));
    }
}

/// The hashing stage's step for one job: what it passes on to the writing stage, if
/// anything.
fn hash(hashing: &mut Option<Hashing>, job: Job) -> Option<Job> {
    let out_of_step = |what: &str, at: u64, hashed: u64| FileError::Io {
        path: String::new(),
        source: io::Error::other(format!(
            "upload {what} at {at} does not continue the bytes hashed (0..{hashed})"
        )),
    };
    let job = match (job, hashing.as_mut()) {
        (Job::Write { offset, data }, Some(h)) => {
            if offset == h.hashed {
                h.hasher.update(&data);
                h.hashed += data.len() as u64;
                Job::Write { offset, data }
            } else {
                // Never written unhashed: the upload fails instead, and hashes no more.
                let error = out_of_step("write", offset, h.hashed);
                *hashing = None;
                Job::Fail { error, wait: false }
            }
        }
        (Job::HashFrom(h), _) => {
            *hashing = Some(h);
            return None;
        }
        (Job::CheckpointHashed { offset, wait }, Some(h)) if offset == h.hashed => {
            Job::Checkpoint {
                state: UploadState {
                    size: h.size,
                    offset,
                    prefix_sha256: h.hasher.digest(),
                },
                wait,
            }
        }
        (Job::CheckpointHashed { offset, wait }, h) => {
            let hashed = h.map_or(0, |h| h.hashed);
            let error = out_of_step("checkpoint", offset, hashed);
            *hashing = None;
            Job::Fail { error, wait }
        }
        (Job::TakeHasher, _) => Job::Hasher(hashing.take().map(|h| h.hasher)),
        (job, _) => job,
    };
    Some(job)
}

/// What the writing stage did with one job.
struct Written {
    /// Its result: a failure is remembered, and answered if `wait`.
    result: Result<Answer, FileError>,
    wait: bool,
    /// A written batch's buffer, to fill again.
    spare: Option<Vec<u8>>,
}

/// The writing stage's step for one job, after the sticky failure `failed` if any; `None`
/// for a write dropped after a failure.
fn write(file: &mut dyn PartialFile, job: Job, failed: Option<FileError>) -> Option<Written> {
    let mut spare = None;
    let (result, wait) = match (failed, job) {
        // Writes after a failure are dropped: the failure is reported instead.
        (Some(_), Job::Write { .. }) => return None,
        (Some(e), Job::Checkpoint { wait, .. } | Job::Fail { wait, .. }) => (Err(e), wait),
        (Some(e), _) => (Err(e), true),
        (None, Job::Write { offset, mut data }) => {
            let written = file.write_at(offset, &data).map(|()| Answer::Done);
            data.clear();
            spare = Some(data);
            (written, false)
        }
        (None, Job::Checkpoint { state, wait }) => {
            (file.checkpoint(&state).map(|()| Answer::Done), wait)
        }
        (None, Job::Read { offset, len }) => {
            let mut buf = vec![0; len];
            let read = file.read_at(offset, &mut buf).map(|n| {
                buf.truncate(n);
                Answer::Read(buf)
            });
            (read, true)
        }
        (None, Job::SetLen(len)) => (file.set_len(len).map(|()| Answer::Done), true),
        (None, Job::Sync) => (file.sync().map(|()| Answer::Done), true),
        (None, Job::Fail { error, wait }) => (Err(error), wait),
        (None, Job::Hasher(Some(hasher))) => (Ok(Answer::Hasher(hasher)), true),
        // The hashing stage keeps the jobs meant for it, and gives a hasher back only if
        // it had one.
        (None, _) => (Err(not_passed_on()), true),
    };
    Some(Written {
        result,
        wait,
        spare,
    })
}

fn not_passed_on() -> FileError {
    FileError::Io {
        path: String::new(),
        source: io::Error::other("an upload's hashing job reached its writer"),
    }
}

fn lost() -> FileError {
    FileError::Io {
        path: String::new(),
        source: io::Error::other("the upload's file work was dropped unrun"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::work::{Inline, ThreadPerWork};

    /// Every test runs with each stage on threads of its own, and written through.
    fn runners() -> [Arc<dyn Runner>; 2] {
        [Arc::new(ThreadPerWork), Arc::new(Inline)]
    }

    /// A partial file in memory that logs its operations and fails its `fail_at`-th write.
    #[derive(Debug, Default)]
    struct Logged {
        bytes: Vec<u8>,
        log: Arc<Mutex<Vec<String>>>,
        writes: Arc<AtomicUsize>,
        fail_at: Option<usize>,
        states: Arc<Mutex<Vec<UploadState>>>,
        /// If set, every write first waits for a token from it (a stalled disk).
        gate: Option<mpsc::Receiver<()>>,
    }

    impl PartialFile for Logged {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError> {
            if let Some(gate) = &self.gate {
                gate.recv().unwrap();
            }
            let n = self.writes.fetch_add(1, Ordering::SeqCst);
            if Some(n) == self.fail_at {
                return Err(FileError::Io {
                    path: "f".into(),
                    source: io::Error::new(io::ErrorKind::StorageFull, "disk full"),
                });
            }
            let end = offset as usize + data.len();
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
            }
            self.bytes[offset as usize..end].copy_from_slice(data);
            self.log
                .lock()
                .unwrap()
                .push(format!("w{offset}+{}", data.len()));
            Ok(())
        }

        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
            let start = (offset as usize).min(self.bytes.len());
            let n = buf.len().min(self.bytes.len() - start);
            buf[..n].copy_from_slice(&self.bytes[start..start + n]);
            Ok(n)
        }

        fn set_len(&mut self, len: u64) -> Result<(), FileError> {
            self.bytes.resize(len as usize, 0);
            Ok(())
        }

        fn sync(&mut self) -> Result<(), FileError> {
            self.log.lock().unwrap().push("sync".into());
            Ok(())
        }

        fn checkpoint(&mut self, state: &UploadState) -> Result<(), FileError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("state{}", state.offset));
            self.states.lock().unwrap().push(*state);
            Ok(())
        }
    }

    fn state(offset: u64) -> UploadState {
        UploadState {
            size: 1 << 20,
            offset,
            prefix_sha256: [0; 32],
        }
    }

    #[test]
    fn operations_run_in_queue_order_and_reads_see_every_write() {
        for runner in runners() {
            let log = Arc::new(Mutex::new(Vec::new()));
            let inner = Logged {
                log: log.clone(),
                ..Logged::default()
            };
            let mut file = WriteBehind::new(Box::new(inner), "f".into(), runner.clone());
            for i in 0..200u64 {
                file.write_at(i * 10, &[i as u8; 10]).unwrap();
                if i % 50 == 49 {
                    file.checkpoint_soon(&state((i + 1) * 10)).unwrap();
                }
            }
            let mut buf = [0u8; 10];
            assert_eq!(file.read_at(1990, &mut buf).unwrap(), 10);
            assert_eq!(buf, [199; 10]);
            file.sync().unwrap();
            drop(file);
            let log = log.lock().unwrap();
            // Contiguous writes were gathered, and every checkpoint comes after exactly the
            // writes queued before it: the bytes written so far end at its offset.
            let mut written_to = 0u64;
            let mut states = 0;
            for entry in log.iter() {
                if let Some(w) = entry.strip_prefix('w') {
                    let (at, len) = w.split_once('+').unwrap();
                    assert_eq!(at.parse::<u64>().unwrap(), written_to, "{log:?}");
                    written_to += len.parse::<u64>().unwrap();
                } else if let Some(at) = entry.strip_prefix("state") {
                    assert_eq!(at.parse::<u64>().unwrap(), written_to, "{log:?}");
                    states += 1;
                }
            }
            assert_eq!((written_to, states), (2000, 4));
            assert!(log.len() < 200, "writes were not gathered: {log:?}");
            assert_eq!(log.last().map(String::as_str), Some("sync"));
        }
    }

    #[test]
    fn a_failed_write_fails_every_later_operation_and_no_checkpoint_follows_it() {
        for runner in runners() {
            let log = Arc::new(Mutex::new(Vec::new()));
            let inner = Logged {
                log: log.clone(),
                fail_at: Some(5),
                ..Logged::default()
            };
            let mut file = WriteBehind::new(Box::new(inner), "f".into(), runner.clone());
            let mut refused = None;
            for i in 0..100u64 {
                let r = file
                    .write_at(i, &[1])
                    .and_then(|()| file.checkpoint_soon(&state(i + 1)));
                if let Err(e) = r {
                    refused = Some(e);
                    break;
                }
            }
            // Reported at a later call at the latest; then sync and checkpoint fail too.
            let sync = file.sync();
            assert!(refused.is_some() || sync.is_err());
            assert!(
                matches!(sync, Err(FileError::Io { source, .. }) if source.kind() == io::ErrorKind::StorageFull)
            );
            assert!(file.checkpoint(&state(100)).is_err());
            assert!(file.write_at(200, &[1]).is_err());
            drop(file);
            let log = log.lock().unwrap();
            // Writes 0..5 and their checkpoints; nothing after the failed sixth write.
            assert_eq!(log.last().map(String::as_str), Some("state5"), "{log:?}");
        }
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        let mut h = FileHasher::new();
        h.update(bytes);
        h.finish()
    }

    #[test]
    fn a_file_hashing_behind_hashes_in_order_and_saves_its_own_prefix_hashes() {
        for runner in runners() {
            let states = Arc::new(Mutex::new(Vec::new()));
            let inner = Logged {
                states: states.clone(),
                ..Logged::default()
            };
            let mut file = WriteBehind::new(Box::new(inner), "f".into(), runner.clone());
            let bytes: Vec<u8> = (0..700_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
            // The upload's first 1000 bytes were hashed before the file took over.
            let mut hasher = FileHasher::new();
            hasher.update(&bytes[..1000]);
            assert!(file.can_hash_behind());
            file.hash_behind(hasher, bytes.len() as u64, 1000).unwrap();
            assert!(!file.can_hash_behind());
            let mut at = 1000;
            for (i, chunk) in bytes[1000..].chunks(16_348).enumerate() {
                file.write_at(at as u64, chunk).unwrap();
                at += chunk.len();
                if i % 10 == 9 {
                    file.checkpoint_behind(at as u64, true).unwrap();
                }
            }
            file.checkpoint_behind(at as u64, false).unwrap();
            let hasher = file.take_hasher().unwrap();
            assert_eq!(hasher.finish(), sha(&bytes));
            // Hashing behind is over; the file is an ordinary one again.
            assert!(file.can_hash_behind());
            assert!(file.checkpoint_behind(at as u64, false).is_err());
            drop(file);
            let states = states.lock().unwrap();
            assert_eq!(states.len(), 5);
            for state in states.iter() {
                assert_eq!(state.size, bytes.len() as u64);
                let end = state.offset as usize;
                assert_eq!(state.prefix_sha256, sha(&bytes[..end]), "at {end}");
            }
            assert_eq!(states.last().map(|s| s.offset), Some(bytes.len() as u64));
        }
    }

    #[test]
    fn a_write_or_checkpoint_out_of_step_with_the_hash_fails_the_upload() {
        for runner in runners() {
            for checkpoint in [false, true] {
                let log = Arc::new(Mutex::new(Vec::new()));
                let inner = Logged {
                    log: log.clone(),
                    ..Logged::default()
                };
                let mut file = WriteBehind::new(Box::new(inner), "f".into(), runner.clone());
                file.hash_behind(FileHasher::new(), 100, 0).unwrap();
                file.write_at(0, &[1; 10]).unwrap();
                if checkpoint {
                    // Bytes 0..10 were hashed, not 0..20.
                    assert!(file.checkpoint_behind(20, false).is_err());
                } else {
                    // A gap: never written unhashed.
                    file.write_at(50, &[2; 10]).unwrap();
                }
                assert!(file.sync().is_err());
                assert!(file.take_hasher().is_err());
                drop(file);
                let log = log.lock().unwrap();
                assert_eq!(log.as_slice(), ["w0+10"], "{log:?}");
            }
        }
    }

    #[test]
    fn a_stalled_disk_lets_the_caller_run_ahead_by_the_memory_bound_and_no_further() {
        let other = Buffering {
            batch: 100_000,
            in_flight: 3,
        };
        for buffering in [Buffering::SERVER, other] {
            stalled_disk_bound(buffering);
        }
    }

    /// With the disk holding every write, the caller hands over `buffering.in_flight`
    /// batches and then waits, one more for each one written.
    fn stalled_disk_bound(buffering: Buffering) {
        let Buffering { batch, in_flight } = buffering;
        let (go, gate) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let inner = Logged {
            log: log.clone(),
            gate: Some(gate),
            ..Logged::default()
        };
        let batches = in_flight + 2;
        let (done, returned) = mpsc::channel();
        let caller = std::thread::spawn(move || {
            let mut file = WriteBehind::with_buffering(
                Box::new(inner),
                "f".into(),
                Arc::new(ThreadPerWork),
                buffering,
            );
            for i in 0..batches {
                file.write_at((i * batch) as u64, &vec![i as u8; batch])
                    .unwrap();
                done.send(i).unwrap();
            }
            file.sync().unwrap();
        });
        // The disk holds the first batch: the caller goes on until `in_flight` are held...
        for i in 0..in_flight {
            assert_eq!(returned.recv_timeout(Duration::from_secs(10)), Ok(i));
        }
        assert!(returned.recv_timeout(Duration::from_millis(200)).is_err());
        // ...and one more goes for each one written.
        go.send(()).unwrap();
        assert_eq!(
            returned.recv_timeout(Duration::from_secs(10)),
            Ok(in_flight)
        );
        assert!(returned.recv_timeout(Duration::from_millis(200)).is_err());
        for _ in 1..batches {
            go.send(()).unwrap();
        }
        caller.join().unwrap();
        assert_eq!(returned.try_iter().collect::<Vec<_>>(), vec![batches - 1]);
        let log = log.lock().unwrap();
        assert_eq!(log.len(), batches + 1, "{log:?}");
        assert_eq!(log.last().map(String::as_str), Some("sync"));
    }
}
