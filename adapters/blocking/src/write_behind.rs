//! A download's file writer: the connection thread opens records while one thread hashes
//! the released chunks and another writes them, so hashing never waits for the disk and a
//! download uses both cores.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::{self, JoinHandle};

use vserv_core::transfer::FileHasher;
use vserv_service::files::direct::DirectWriter;

/// Chunks are gathered into batches of this many bytes: the threads wake, hash and write
/// once per batch instead of once per 16 KiB chunk.
const BATCH: usize = 512 * 1024;

/// Batches queued for each of the two threads at most (with the one being gathered, the one
/// being hashed and the one being written, 5.5 MiB): memory stays bounded, the connection
/// waits when the disk is slower than the network, and the queues absorb the moments when
/// a thread waits for a core.
const QUEUE_BATCHES: usize = 4;

/// Bytes gathered before each direct write: fewer, larger writes cost the disk less.
const WRITE_BUFFER: usize = 1024 * 1024;

/// Appends chunks to a file and feeds them to a hasher, in order, on two separate threads.
pub(crate) struct WriteBehind {
    batch: Vec<u8>,
    queue: Option<SyncSender<Vec<u8>>>,
    /// Written batches come back to be filled again: no fresh pages to fault in per batch.
    spares: Receiver<Vec<u8>>,
    hashing: JoinHandle<FileHasher>,
    writing: JoinHandle<io::Result<DirectWriter>>,
}

impl WriteBehind {
    /// Starts the writer of `file` (open for reading and writing at `path`): the chunks go
    /// from offset `start` on, and `hasher` has seen every byte before it. The file is
    /// written in large blocks bypassing the page cache where the file system allows.
    pub(crate) fn spawn(
        file: File,
        path: &Path,
        start: u64,
        hasher: FileHasher,
    ) -> io::Result<WriteBehind> {
        let (queue, to_hash) = sync_channel(QUEUE_BATCHES);
        let (hashed, to_write) = sync_channel(QUEUE_BATCHES);
        let (spare, spares) = sync_channel(2 * QUEUE_BATCHES + 3);
        let writer = DirectWriter::with_buffer(file, path, WRITE_BUFFER);
        let writing = thread::Builder::new()
            .name("vserv-write".into())
            .spawn(move || write_all(writer, start, to_write, spare))?;
        let hashing = thread::Builder::new()
            .name("vserv-hash".into())
            .spawn(move || hash_all(hasher, to_hash, hashed))?;
        Ok(WriteBehind {
            batch: Vec::with_capacity(BATCH),
            queue: Some(queue),
            spares,
            hashing,
            writing,
        })
    }

    /// Queues the next chunk. `false` if the writer has stopped on an error, which
    /// [`finish`](Self::finish) then returns.
    pub(crate) fn write(&mut self, chunk: &[u8]) -> bool {
        self.batch.extend_from_slice(chunk);
        self.batch.len() < BATCH || self.send_batch()
    }

    fn send_batch(&mut self) -> bool {
        let spare = self.spares.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batch, spare);
        self.batch.reserve(BATCH);
        batch.is_empty() || self.queue.as_ref().is_some_and(|q| q.send(batch).is_ok())
    }

    /// Waits until every queued chunk is written; returns the file's writer (to sync) and
    /// the hash of every byte, or the first write error.
    pub(crate) fn finish(mut self) -> io::Result<(DirectWriter, FileHasher)> {
        // A refused batch means the writer stopped on the error returned below.
        self.send_batch();
        self.queue = None;
        let hasher = self.hashing.join();
        let writer = self
            .writing
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the file writer thread panicked")))?;
        let hasher = hasher.map_err(|_| io::Error::other("the file hasher thread panicked"))?;
        Ok((writer, hasher))
    }
}

/// Hashes each batch, then passes it on to the writer; stops early if the writer stopped.
fn hash_all(
    mut hasher: FileHasher,
    batches: Receiver<Vec<u8>>,
    hashed: SyncSender<Vec<u8>>,
) -> FileHasher {
    for batch in batches {
        hasher.update(&batch);
        if hashed.send(batch).is_err() {
            break;
        }
    }
    hasher
}

fn write_all(
    mut file: DirectWriter,
    start: u64,
    batches: Receiver<Vec<u8>>,
    spares: SyncSender<Vec<u8>>,
) -> io::Result<DirectWriter> {
    let mut at = start;
    for mut batch in batches {
        file.write_at(at, &batch)?;
        at += batch.len() as u64;
        batch.clear();
        if let Err(TrySendError::Disconnected(_)) = spares.try_send(batch) {
            // The connection side is gone; finish the queued writes anyway.
        }
    }
    file.flush()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn chunks_are_written_and_hashed_in_order_after_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all(b"prefix-").unwrap();
        let mut hasher = FileHasher::new();
        hasher.update(b"prefix-");
        let mut writer = WriteBehind::spawn(file, &path, 7, hasher).unwrap();
        let mut expected = b"prefix-".to_vec();
        for i in 0..500u32 {
            let chunk: Vec<u8> = (0..(i % 97) * 13).map(|j| (i + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            assert!(writer.write(&chunk));
        }
        let (mut file, hasher) = writer.finish().unwrap();
        file.sync_all().unwrap();
        drop(file);
        assert_eq!(hasher.finish(), <[u8; 32]>::from(Sha256::digest(&expected)));
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn a_write_error_stops_the_writer_and_is_reported() {
        // Every write to /dev/full fails (no space left on device).
        let path = Path::new("/dev/full");
        let file = File::options().read(true).write(true).open(path).unwrap();
        let mut writer = WriteBehind::spawn(file, path, 0, FileHasher::new()).unwrap();
        let mut refused = false;
        for _ in 0..1000 {
            if !writer.write(&[7u8; 16 * 1024]) {
                refused = true;
                break;
            }
        }
        assert!(refused, "the writer kept accepting chunks after failing");
        assert!(writer.finish().is_err());
    }
}
