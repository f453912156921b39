//! An upload's file reader on its own thread: it reads the local file ahead and hashes it
//! while the connection thread seals and sends the chunks, so an upload uses two cores.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

use vserv_core::transfer::FileHasher;

/// Chunks read per batch: the reader wakes the connection thread once per batch.
const CHUNKS_PER_BATCH: usize = 32;

/// Batches read ahead at most (with 16 KiB chunks, about 2 MiB): memory stays bounded.
const QUEUE_BATCHES: usize = 4;

/// What the reader hands over: whole chunks back to back (only the file's last chunk may be
/// short), or the reason it stopped.
pub(crate) enum Batch {
    /// The next bytes of the file.
    Data(Vec<u8>),
    /// The file ended before the size the upload was opened with.
    Short,
    /// Reading failed.
    Failed(io::Error),
}

/// Reads `size - start` bytes of a file from `start`, hashing them, ahead of the sender.
pub(crate) struct ReadAhead {
    batches: Receiver<Batch>,
    thread: JoinHandle<FileHasher>,
}

impl ReadAhead {
    /// Starts reading `file` at `start` in batches of whole `chunk`-byte chunks, up to
    /// `size`; `hasher` has seen the bytes before `start`.
    pub(crate) fn spawn(
        mut file: File,
        start: u64,
        size: u64,
        chunk: usize,
        hasher: FileHasher,
    ) -> io::Result<ReadAhead> {
        file.seek(SeekFrom::Start(start))?;
        let (queue, batches) = sync_channel(QUEUE_BATCHES);
        let thread = thread::Builder::new()
            .name("vserv-read".into())
            .spawn(move || read_all(file, size.saturating_sub(start), chunk, hasher, queue))?;
        Ok(ReadAhead { batches, thread })
    }

    /// The next batch; `None` once every byte was handed over.
    pub(crate) fn next(&self) -> Option<Batch> {
        self.batches.recv().ok()
    }

    /// Waits for the reader; the hash of every byte up to `size`, if it read them all.
    pub(crate) fn finish(self) -> Option<FileHasher> {
        drop(self.batches);
        self.thread.join().ok()
    }
}

fn read_all(
    mut file: File,
    mut left: u64,
    chunk: usize,
    mut hasher: FileHasher,
    queue: SyncSender<Batch>,
) -> FileHasher {
    let batch_len = chunk.max(1).saturating_mul(CHUNKS_PER_BATCH);
    while left > 0 {
        let want = usize::try_from(left).map_or(batch_len, |l| l.min(batch_len));
        let mut batch = vec![0u8; want];
        let sent = match file.read_exact(&mut batch) {
            Ok(()) => {
                hasher.update(&batch);
                left -= want as u64;
                queue.send(Batch::Data(batch))
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let _ = queue.send(Batch::Short);
                break;
            }
            Err(e) => {
                let _ = queue.send(Batch::Failed(e));
                break;
            }
        };
        if sent.is_err() {
            // The upload stopped: nobody wants more.
            break;
        }
    }
    hasher
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use sha2::{Digest, Sha256};

    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        let file = File::open(&path).unwrap();
        (dir, file)
    }

    #[test]
    fn batches_hold_whole_chunks_and_the_hash_covers_the_prefix() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let (_dir, file) = file_with(&bytes);
        let mut prefix = FileHasher::new();
        prefix.update(&bytes[..1000]);
        let reader = ReadAhead::spawn(file, 1000, 99_000, 300, prefix).unwrap();
        let mut got = Vec::new();
        while let Some(batch) = reader.next() {
            match batch {
                Batch::Data(data) => {
                    assert!(data.len() % 300 == 0 || got.len() + data.len() == 98_000);
                    got.extend_from_slice(&data);
                }
                Batch::Short | Batch::Failed(_) => panic!("unexpected end"),
            }
        }
        assert_eq!(got, &bytes[1000..99_000]);
        let hash = reader.finish().unwrap().finish();
        assert_eq!(hash, <[u8; 32]>::from(Sha256::digest(&bytes[..99_000])));
    }

    #[test]
    fn a_file_shorter_than_the_upload_is_reported() {
        let (_dir, file) = file_with(&[1u8; 5000]);
        let reader = ReadAhead::spawn(file, 0, 6000, 1000, FileHasher::new()).unwrap();
        let mut short = false;
        while let Some(batch) = reader.next() {
            short |= matches!(batch, Batch::Short);
        }
        assert!(short);
    }

    #[test]
    fn dropping_the_reader_early_stops_the_thread() {
        let (_dir, file) = file_with(&vec![3u8; 1 << 20]);
        let reader = ReadAhead::spawn(file, 0, 1 << 20, 100, FileHasher::new()).unwrap();
        assert!(matches!(reader.next(), Some(Batch::Data(_))));
        assert!(reader.finish().is_some());
    }
}
