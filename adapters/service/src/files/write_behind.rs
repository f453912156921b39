//! An upload's partial file written on a thread of its own, so that the connection thread
//! (opening records, hashing the chunks) and the file system (copying them into the page
//! cache, syncing at checkpoints) work on two cores at once.
//!
//! Order is kept: every operation goes through one queue, so a checkpoint's sync and saved
//! state come after every write queued before it, and a read, `set_len` or `sync` waits for
//! all of them. The first failure is sticky: every later operation fails with it, so a
//! partial file that missed a write can never be checkpointed past it or committed. A write
//! or a queued checkpoint returns before it is done; its failure is reported by the next
//! operation (the next `fput`, or `fdone`'s sync). Contiguous writes are gathered into
//! batches, so the writer wakes and writes once per batch rather than per chunk.

use std::fmt;
use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use vserv_core::transfer::UploadState;

use super::FileError;
use super::transfer::PartialFile;

/// Contiguous writes are gathered into one job of up to this many bytes: one wake-up of the
/// writer and one system call per batch instead of per 16 KiB chunk.
const BATCH: usize = 256 * 1024;

/// Jobs queued at most. An upload then holds at most 1 MiB of data (a batch being gathered,
/// two queued, one being written), 64 MiB for a connection's 64 open uploads when the disk
/// stalls; the connection waits when the disk is slower than the network.
const QUEUE_JOBS: usize = 2;

/// The most data an upload written behind holds: a batch gathered, the queued ones, and
/// the one being written.
pub const HELD_BYTES: usize = BATCH * (QUEUE_JOBS + 2);

enum Job {
    Write { offset: u64, data: Vec<u8> },
    Checkpoint { state: UploadState, wait: bool },
    Read { offset: u64, len: usize },
    SetLen(u64),
    Sync,
}

/// What a waited-for job answers.
enum Answer {
    Done,
    Read(Vec<u8>),
}

/// The first failure, kept as kind and message (an `io::Error` cannot be cloned).
type Failure = Arc<Mutex<Option<(io::ErrorKind, String, String)>>>;

/// A [`PartialFile`] whose operations run, in order, on a thread of its own.
pub struct WriteBehind {
    /// Writes gathered for the next job, and the offset of their first byte.
    batch: Vec<u8>,
    batch_offset: u64,
    jobs: Option<SyncSender<Job>>,
    answers: Receiver<Result<Answer, FileError>>,
    failure: Failure,
    thread: Option<JoinHandle<()>>,
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
    /// Moves `inner` to a new thread; `path` names the upload's target in errors.
    pub fn spawn(inner: Box<dyn PartialFile>, path: String) -> Result<WriteBehind, FileError> {
        let (jobs, queue) = sync_channel(QUEUE_JOBS);
        let (answer, answers) = sync_channel(1);
        let failure = Failure::default();
        let shared = failure.clone();
        let thread = thread::Builder::new()
            .name("vserv-upload".into())
            .spawn(move || work(inner, queue, answer, shared))
            .map_err(|source| FileError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(WriteBehind {
            batch: Vec::new(),
            batch_offset: 0,
            jobs: Some(jobs),
            answers,
            failure,
            thread: Some(thread),
            path,
        })
    }

    /// The sticky failure, if the thread has met one.
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
        // An idle upload keeps no buffer.
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
            Answer::Done => Ok(0),
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
}

impl Drop for WriteBehind {
    /// Writes what was gathered and waits for the queued operations to finish, so the file
    /// is quiet once dropped.
    fn drop(&mut self) {
        if let Err(e) = self.send_batch() {
            tracing::warn!(path = %self.path, error = %e, "an upload's last writes failed");
        }
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
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

fn work(
    mut file: Box<dyn PartialFile>,
    queue: Receiver<Job>,
    answer: SyncSender<Result<Answer, FileError>>,
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
            (Some(e), Job::Checkpoint { wait, .. }) => (Err(e), wait),
            (Some(e), _) => (Err(e), true),
            (None, Job::Write { offset, data }) => {
                (file.write_at(offset, &data).map(|()| Answer::Done), false)
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
        };
        if let Err(e) = &result {
            remember(&failure, e);
        }
        if wait && answer.send(result).is_err() {
            return;
        }
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
}
