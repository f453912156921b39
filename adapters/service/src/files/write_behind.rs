//! An upload's partial file written behind the connection, so that the connection thread
//! (opening records), the upload's hashing and the file system work on the cores at once.
//!
//! Two threads per upload, one after the other: the first hashes the bytes written, when
//! the upload handed it its hasher ([`PartialFile::hash_behind`]), and passes every
//! operation on; the second runs them on the file. Hashing thus never waits for the disk.
//!
//! Order is kept: every operation goes through the same two queues, so a checkpoint's sync
//! and saved state come after every write queued before it, and a read, `set_len` or `sync`
//! waits for all of them. The first failure is sticky: every later operation fails with it,
//! so a partial file that missed a write can never be checkpointed past it or committed. A
//! write or a queued checkpoint returns before it is done; its failure is reported by the
//! next operation (the next `fput`, or `fdone`'s sync). Contiguous writes are gathered into
//! batches, so the threads wake once per batch rather than per chunk.

use std::fmt;
use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use vserv_core::transfer::{FileHasher, UploadState};

use super::FileError;
use super::transfer::PartialFile;

/// Contiguous writes are gathered into one job of up to this many bytes: one wake-up of
/// each thread and one system call per batch instead of per 16 KiB chunk.
const BATCH: usize = 256 * 1024;

/// Jobs queued at most before each of the two threads. An upload then holds at most
/// [`HELD_BYTES`] of data (1.75 MiB: a batch being gathered, two queued, one being hashed,
/// two queued, one being written), 112 MiB for a connection's 64 open uploads when the disk
/// stalls (the server's transfer budget bounds it further); the connection waits when the
/// disk is slower than the network.
const QUEUE_JOBS: usize = 2;

/// The most data an upload written behind holds: a batch gathered, the queued ones, and
/// the ones being hashed and written.
pub const HELD_BYTES: usize = BATCH * (2 * QUEUE_JOBS + 3);

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
    /// For the hashing thread: hash the writes from here on (see `Hashing`).
    HashFrom(Hashing),
    /// For the hashing thread: a checkpoint of bytes `0..offset` with its prefix hash.
    CheckpointHashed {
        offset: u64,
        wait: bool,
    },
    /// For the hashing thread: give the hasher back.
    TakeHasher,
    /// The hasher given back, answered once the writes before it are done.
    Hasher(Option<FileHasher>),
    /// The hashing thread refused an operation: the upload fails with `error` (or with an
    /// earlier failure), in its place in the queue.
    Fail {
        error: FileError,
        wait: bool,
    },
}

/// What a waited-for job answers.
enum Answer {
    Done,
    Read(Vec<u8>),
    Hasher(FileHasher),
}

/// The hashing thread's hasher: it has seen bytes `0..hashed` of an upload of `size` bytes.
struct Hashing {
    hasher: FileHasher,
    size: u64,
    hashed: u64,
}

/// The first failure, kept as kind and message (an `io::Error` cannot be cloned).
type Failure = Arc<Mutex<Option<(io::ErrorKind, String, String)>>>;

/// A [`PartialFile`] whose operations run, in order, on threads of their own.
pub struct WriteBehind {
    /// Writes gathered for the next job, and the offset of their first byte.
    batch: Vec<u8>,
    batch_offset: u64,
    jobs: Option<SyncSender<Job>>,
    answers: Receiver<Result<Answer, FileError>>,
    /// Written batches come back to be filled again: no fresh pages to fault in per batch
    /// on the connection's thread. A buffer is allocated only when every one is in use, so
    /// the upload never holds more than [`HELD_BYTES`].
    spares: Receiver<Vec<u8>>,
    failure: Failure,
    threads: Vec<JoinHandle<()>>,
    /// Whether the hashing thread has the upload's hasher.
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
    /// Moves `inner` to new threads; `path` names the upload's target in errors.
    pub fn spawn(inner: Box<dyn PartialFile>, path: String) -> Result<WriteBehind, FileError> {
        let (jobs, to_hash) = sync_channel(QUEUE_JOBS);
        let (hashed, to_write) = sync_channel(QUEUE_JOBS);
        let (answer, answers) = sync_channel(1);
        let (spare, spares) = sync_channel(HELD_BYTES / BATCH);
        let failure = Failure::default();
        let spawn_failed = |source| FileError::Io {
            path: path.clone(),
            source,
        };
        let shared = failure.clone();
        let writer = thread::Builder::new()
            .name("vserv-upload".into())
            .spawn(move || write(inner, to_write, answer, spare, shared))
            .map_err(spawn_failed)?;
        let hasher = thread::Builder::new()
            .name("vserv-upload-hash".into())
            .spawn(move || hash(to_hash, hashed))
            .map_err(spawn_failed)?;
        Ok(WriteBehind {
            batch: Vec::new(),
            batch_offset: 0,
            jobs: Some(jobs),
            answers,
            spares,
            failure,
            threads: vec![hasher, writer],
            hashing: false,
            path,
        })
    }

    /// The sticky failure, if a thread has met one.
    fn failed(&self) -> Result<(), FileError> {
        match &*self.failure.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(failure) => Err(replay(failure)),
            None => Ok(()),
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

    fn send(&self, job: Job) -> Result<(), FileError> {
        self.failed()?;
        let sent = self.jobs.as_ref().is_some_and(|q| q.send(job).is_ok());
        if sent { Ok(()) } else { Err(self.stopped()) }
    }

    fn ask(&mut self, job: Job) -> Result<Answer, FileError> {
        self.queue(job)?;
        self.answers.recv().map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> FileError {
        self.failed().err().unwrap_or_else(|| FileError::Io {
            path: self.path.clone(),
            source: io::Error::other("the upload's writer thread stopped"),
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
            self.failed()?;
            self.batch_offset = offset;
            if let Ok(spare) = self.spares.try_recv() {
                self.batch = spare;
            }
            self.batch.reserve(BATCH);
        }
        self.batch.extend_from_slice(data);
        if self.batch.len() >= BATCH {
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
    /// Writes what was gathered and waits for the queued operations to finish, so the file
    /// is quiet once dropped.
    fn drop(&mut self) {
        if let Err(e) = self.send_batch() {
            tracing::warn!(path = %self.path, error = %e, "an upload's last writes failed");
        }
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn replay((kind, path, message): &(io::ErrorKind, String, String)) -> FileError {
    FileError::Io {
        path: path.clone(),
        source: io::Error::new(*kind, message.clone()),
    }
}

fn remember(failure: &Failure, e: &FileError) {
    let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
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

/// The first thread: hashes writes while it has the hasher, turns hashed checkpoints into
/// ordinary ones, and passes everything on in order. Its refusals fail the upload at their
/// place in the queue, so the operations before them still run.
fn hash(jobs: Receiver<Job>, next: SyncSender<Job>) {
    let mut hashing: Option<Hashing> = None;
    let out_of_step = |what: &str, at: u64, hashed: u64| FileError::Io {
        path: String::new(),
        source: io::Error::other(format!(
            "upload {what} at {at} does not continue the bytes hashed (0..{hashed})"
        )),
    };
    for job in jobs {
        let job = match (job, hashing.as_mut()) {
            (Job::Write { offset, data }, Some(h)) => {
                if offset == h.hashed {
                    h.hasher.update(&data);
                    h.hashed += data.len() as u64;
                    Job::Write { offset, data }
                } else {
                    // Never written unhashed: the upload fails instead, and hashes no more.
                    let error = out_of_step("write", offset, h.hashed);
                    hashing = None;
                    Job::Fail { error, wait: false }
                }
            }
            (Job::HashFrom(h), _) => {
                hashing = Some(h);
                continue;
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
                hashing = None;
                Job::Fail { error, wait }
            }
            (Job::TakeHasher, _) => Job::Hasher(hashing.take().map(|h| h.hasher)),
            (job, _) => job,
        };
        if next.send(job).is_err() {
            return;
        }
    }
}

/// The second thread: runs the operations on the file and answers those waited for.
fn write(
    mut file: Box<dyn PartialFile>,
    queue: Receiver<Job>,
    answer: SyncSender<Result<Answer, FileError>>,
    spares: SyncSender<Vec<u8>>,
    failure: Failure,
) {
    for job in queue {
        let failed = failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(replay);
        let (result, wait) = match (failed, job) {
            // Writes after a failure are dropped: the failure is reported instead.
            (Some(_), Job::Write { .. }) => continue,
            (Some(e), Job::Checkpoint { wait, .. } | Job::Fail { wait, .. }) => (Err(e), wait),
            (Some(e), _) => (Err(e), true),
            (None, Job::Write { offset, mut data }) => {
                let written = file.write_at(offset, &data).map(|()| Answer::Done);
                data.clear();
                // Never blocks: at most HELD_BYTES / BATCH buffers exist.
                let _ = spares.try_send(data);
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
            // The hashing thread keeps the jobs meant for it, and gives a hasher back
            // only if it had one.
            (None, _) => (Err(not_passed_on()), true),
        };
        if let Err(e) = &result {
            remember(&failure, e);
        }
        if wait && answer.send(result).is_err() {
            return;
        }
    }
}

fn not_passed_on() -> FileError {
    FileError::Io {
        path: String::new(),
        source: io::Error::other("an upload's hashing job reached its writer"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A partial file in memory that logs its operations and fails its `fail_at`-th write.
    #[derive(Debug, Default)]
    struct Logged {
        bytes: Vec<u8>,
        log: Arc<Mutex<Vec<String>>>,
        writes: Arc<AtomicUsize>,
        fail_at: Option<usize>,
        states: Arc<Mutex<Vec<UploadState>>>,
    }

    impl PartialFile for Logged {
        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError> {
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
        let log = Arc::new(Mutex::new(Vec::new()));
        let inner = Logged {
            log: log.clone(),
            ..Logged::default()
        };
        let mut file = WriteBehind::spawn(Box::new(inner), "f".into()).unwrap();
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

    #[test]
    fn a_failed_write_fails_every_later_operation_and_no_checkpoint_follows_it() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let inner = Logged {
            log: log.clone(),
            fail_at: Some(5),
            ..Logged::default()
        };
        let mut file = WriteBehind::spawn(Box::new(inner), "f".into()).unwrap();
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

    fn sha(bytes: &[u8]) -> [u8; 32] {
        let mut h = FileHasher::new();
        h.update(bytes);
        h.finish()
    }

    #[test]
    fn a_file_hashing_behind_hashes_in_order_and_saves_its_own_prefix_hashes() {
        let states = Arc::new(Mutex::new(Vec::new()));
        let inner = Logged {
            states: states.clone(),
            ..Logged::default()
        };
        let mut file = WriteBehind::spawn(Box::new(inner), "f".into()).unwrap();
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

    #[test]
    fn a_write_or_checkpoint_out_of_step_with_the_hash_fails_the_upload() {
        for checkpoint in [false, true] {
            let log = Arc::new(Mutex::new(Vec::new()));
            let inner = Logged {
                log: log.clone(),
                ..Logged::default()
            };
            let mut file = WriteBehind::spawn(Box::new(inner), "f".into()).unwrap();
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
