//! [`StdFiles`]: the one [`LocalFiles`] over `std::fs`, for every runtime's client. The
//! plain operations are `std::fs` calls made by whoever runs the work; an upload's source is
//! read ahead (through the page cache) and hashed, and a download's partial copy hashed and
//! written behind (in large direct writes), by the server's own [`ReadAhead`] and
//! [`WriteBehind`] with the client's sizes, whose runs go to the runtime's
//! [`Runner`] (a worker pool, smol's blocking pool, or [`Inline`] for a driver that runs
//! everything itself). So a transfer keeps the disk and the hasher busy beside its
//! connection without a thread of its own.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use vserv_core::transfer::{FileHasher, UploadState};

use super::local::{FileKind, LocalFiles, ReadBatch};
use crate::files::FileError;
use crate::files::direct::{DirectWriter, ReadAhead};
use crate::files::transfer::PartialFile;
use crate::files::write_behind::{Buffering, WriteBehind};
use crate::work::{Inline, Runner};

/// Chunks read per batch by a [`SourceReader`]: the connection is handed the file once per
/// batch (512 KiB with 16 KiB chunks).
const CHUNKS_PER_BATCH: usize = 32;

/// Bytes a download's partial copy gathers before each direct write: fewer, larger writes
/// cost the disk less.
const COPY_BUFFER: usize = 1024 * 1024;

/// A download's write-behind: 512 KiB batches, 5.5 MiB held at most, so the hashing and
/// the connection ride out a disk that stalls on a large direct write.
const COPY_BUFFERING: Buffering = Buffering {
    batch: 512 * 1024,
    in_flight: 10,
};

/// Local files over `std::fs`, reading ahead and writing behind through a [`Runner`].
/// Clones share the runner.
#[derive(Clone)]
pub struct StdFiles {
    runner: Arc<dyn Runner>,
}

impl fmt::Debug for StdFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdFiles").finish_non_exhaustive()
    }
}

impl StdFiles {
    /// Local files whose read-ahead and write-behind runs go to `runner` (the runtime's
    /// way of running blocking work, never a thread that serves connections).
    pub fn new(runner: Arc<dyn Runner>) -> StdFiles {
        StdFiles { runner }
    }

    /// Local files doing everything on the calling thread ([`Inline`]): a batch is read
    /// and hashed when asked for, a write is done before it returns.
    pub fn inline() -> StdFiles {
        StdFiles::new(Arc::new(Inline))
    }
}

/// An upload's source being read ahead and hashed from an offset on.
#[derive(Debug)]
pub struct SourceReader {
    ahead: ReadAhead,
    /// Offset of the next batch.
    next: u64,
    size: u64,
    chunk: usize,
    /// Set once the reader handed over a short or failed batch: nothing more follows.
    stopped: bool,
}

/// A download's partial copy being hashed and written behind from an offset on.
#[derive(Debug)]
pub struct CopyWriter {
    behind: WriteBehind,
    /// Offset of the next write.
    next: u64,
    /// The first failure: no more writes are taken.
    error: Option<io::Error>,
}

/// A local partial copy as the write-behind sees it: a file written in large direct
/// blocks. It keeps no upload state: [`PartialFile::checkpoint`] is refused.
#[derive(Debug)]
struct LocalCopy {
    file: DirectWriter,
    /// The local path, for messages.
    path: String,
}

impl LocalCopy {
    fn failed(&self) -> impl FnOnce(io::Error) -> FileError + '_ {
        |source| FileError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl PartialFile for LocalCopy {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError> {
        let written = self.file.write_at(offset, data);
        written.map_err(self.failed())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        let read = self.file.read_at(buf, offset);
        read.map_err(self.failed())
    }

    fn set_len(&mut self, len: u64) -> Result<(), FileError> {
        let set = self.file.set_len(len);
        set.map_err(self.failed())
    }

    fn sync(&mut self) -> Result<(), FileError> {
        let synced = self.file.sync_all();
        synced.map_err(self.failed())
    }

    /// Refused with an [`io::ErrorKind::Unsupported`] error: a download's progress is the
    /// copy's length and its info file, not a saved upload state.
    fn checkpoint(&mut self, _state: &UploadState) -> Result<(), FileError> {
        Err(self.failed()(io::Error::new(
            io::ErrorKind::Unsupported,
            "a local partial copy keeps no upload state",
        )))
    }
}

/// A [`FileError`] as the [`LocalFiles`] seam reports it: a file system error as it was
/// (its kind kept), anything else as an [`io::ErrorKind::Other`] error with its message.
impl From<FileError> for io::Error {
    fn from(e: FileError) -> io::Error {
        match e {
            FileError::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        }
    }
}

/// What a file type is, in words, for a refusal.
pub(crate) fn kind_of(file_type: std::fs::FileType) -> FileKind {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return FileKind::Other("FIFO");
        }
        if file_type.is_char_device() {
            return FileKind::Other("character device");
        }
        if file_type.is_block_device() {
            return FileKind::Other("block device");
        }
        if file_type.is_socket() {
            return FileKind::Other("socket");
        }
    }
    if file_type.is_symlink() {
        FileKind::Other("symbolic link")
    } else if file_type.is_dir() {
        FileKind::Other("directory")
    } else if file_type.is_file() {
        FileKind::Regular
    } else {
        FileKind::Other("special file")
    }
}

impl LocalFiles for StdFiles {
    type File = File;
    type Reader = SourceReader;
    type Writer = CopyWriter;

    fn open_source(&self, path: &Path) -> io::Result<(File, u64)> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok((file, meta.len()))
    }

    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => Ok(Some(kind_of(meta.file_type()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open_part(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(path)
    }

    fn create_part(&self, path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    fn read_at(&self, file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn truncate(&self, file: &mut File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn read_text(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write_text(&self, path: &Path, text: &str) -> io::Result<()> {
        std::fs::write(path, text)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn start_reading(
        &self,
        file: File,
        start: u64,
        size: u64,
        chunk: usize,
        hasher: FileHasher,
    ) -> io::Result<SourceReader> {
        Ok(SourceReader {
            ahead: ReadAhead::hashing(file, self.runner.clone(), hasher, start, size)
                .through_page_cache(),
            next: start,
            size,
            chunk: chunk.max(1),
            stopped: false,
        })
    }

    fn next_batch(&self, reader: &mut SourceReader) -> Option<ReadBatch> {
        let left = reader.size.saturating_sub(reader.next);
        if left == 0 || reader.stopped {
            return None;
        }
        let batch_len = reader.chunk.saturating_mul(CHUNKS_PER_BATCH);
        let want = usize::try_from(left).map_or(batch_len, |l| l.min(batch_len));
        // Appended to, not zero-filled first: every byte is about to be overwritten.
        let mut batch = Vec::with_capacity(want);
        match reader.ahead.read_append(&mut batch, reader.next, want) {
            Ok(()) => {
                reader.next += want as u64;
                Some(ReadBatch::Data(batch))
            }
            Err(e) => {
                reader.stopped = true;
                Some(if e.kind() == io::ErrorKind::UnexpectedEof {
                    ReadBatch::Short
                } else {
                    ReadBatch::Failed(e)
                })
            }
        }
    }

    fn finish_reading(&self, reader: SourceReader) -> Option<FileHasher> {
        reader.ahead.take_hasher()
    }

    fn start_writing(
        &self,
        file: File,
        path: &Path,
        start: u64,
        hasher: FileHasher,
    ) -> io::Result<CopyWriter> {
        let name = path.display().to_string();
        let copy = LocalCopy {
            file: DirectWriter::with_buffer(file, path, COPY_BUFFER),
            path: name.clone(),
        };
        let mut behind =
            WriteBehind::with_buffering(Box::new(copy), name, self.runner.clone(), COPY_BUFFERING);
        // The size only names a checkpoint's upload state, which a local copy never saves.
        behind.hash_behind(hasher, u64::MAX, start)?;
        Ok(CopyWriter {
            behind,
            next: start,
            error: None,
        })
    }

    fn write(&self, writer: &mut CopyWriter, data: &[u8]) -> bool {
        if writer.error.is_some() {
            return false;
        }
        match writer.behind.write_at(writer.next, data) {
            Ok(()) => {
                writer.next += data.len() as u64;
                true
            }
            Err(e) => {
                writer.error = Some(e.into());
                false
            }
        }
    }

    fn finish_writing(&self, writer: CopyWriter, sync: bool) -> io::Result<FileHasher> {
        let CopyWriter {
            mut behind,
            next,
            error,
        } = writer;
        if let Some(e) = error {
            return Err(e);
        }
        // Waits for every write queued, and reports the first failure.
        let hasher = behind.take_hasher()?;
        if sync {
            behind.sync()?;
        } else {
            // The copy ends at the bytes written; cutting it there writes out what is
            // gathered, so a failure is reported here rather than lost when it closes.
            behind.set_len(next)?;
        }
        Ok(hasher)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::work::ThreadPerWork;

    /// Every test runs with the read-ahead and write-behind on threads of their own, and
    /// inline.
    fn all_files() -> [StdFiles; 2] {
        [StdFiles::new(Arc::new(ThreadPerWork)), StdFiles::inline()]
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        let mut h = FileHasher::new();
        h.update(bytes);
        h.finish()
    }

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
        for files in all_files() {
            let (_dir, file) = file_with(&bytes);
            let mut prefix = FileHasher::new();
            prefix.update(&bytes[..1000]);
            let mut reader = files
                .start_reading(file, 1000, 99_000, 300, prefix)
                .unwrap();
            let mut got = Vec::new();
            while let Some(batch) = files.next_batch(&mut reader) {
                match batch {
                    ReadBatch::Data(data) => {
                        assert!(data.len() % 300 == 0 || got.len() + data.len() == 98_000);
                        got.extend_from_slice(&data);
                    }
                    ReadBatch::Short | ReadBatch::Failed(_) => panic!("unexpected end"),
                }
            }
            assert_eq!(got, &bytes[1000..99_000]);
            let hash = files.finish_reading(reader).unwrap().finish();
            assert_eq!(hash, sha(&bytes[..99_000]));
        }
    }

    #[test]
    fn a_file_shorter_than_the_upload_is_reported() {
        for files in all_files() {
            let (_dir, file) = file_with(&[1u8; 5000]);
            let mut reader = files
                .start_reading(file, 0, 6000, 1000, FileHasher::new())
                .unwrap();
            let mut short = false;
            while let Some(batch) = files.next_batch(&mut reader) {
                short |= matches!(batch, ReadBatch::Short);
            }
            assert!(short);
            assert!(files.finish_reading(reader).is_none());
        }
    }

    #[test]
    fn a_reader_dropped_early_stops_its_read_ahead() {
        for files in all_files() {
            let (_dir, file) = file_with(&vec![3u8; 4 << 20]);
            let mut reader = files
                .start_reading(file, 0, 4 << 20, 100, FileHasher::new())
                .unwrap();
            assert!(matches!(
                files.next_batch(&mut reader),
                Some(ReadBatch::Data(_))
            ));
            // Not every byte was read: no hash of them all.
            assert!(files.finish_reading(reader).is_none());
        }
    }

    #[test]
    fn chunks_are_written_and_hashed_in_order_after_the_prefix() {
        for (sync, files) in [true, false].into_iter().zip(all_files()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let mut file = files.create_part(&path).unwrap();
            file.write_all(b"prefix-").unwrap();
            let mut hasher = FileHasher::new();
            hasher.update(b"prefix-");
            let mut writer = files.start_writing(file, &path, 7, hasher).unwrap();
            let mut expected = b"prefix-".to_vec();
            for i in 0..500u32 {
                let chunk: Vec<u8> = (0..(i % 97) * 13).map(|j| (i + j) as u8).collect();
                expected.extend_from_slice(&chunk);
                assert!(files.write(&mut writer, &chunk));
            }
            let hasher = files.finish_writing(writer, sync).unwrap();
            assert_eq!(hasher.finish(), sha(&expected));
            assert_eq!(std::fs::read(&path).unwrap(), expected, "sync: {sync}");
        }
    }

    #[test]
    fn a_write_error_stops_the_writer_and_is_reported() {
        for files in all_files() {
            // Every write to /dev/full fails (no space left on device).
            let path = Path::new("/dev/full");
            let file = files.open_part(path).unwrap();
            let mut writer = files
                .start_writing(file, path, 0, FileHasher::new())
                .unwrap();
            let mut refused = false;
            for _ in 0..1000 {
                if !files.write(&mut writer, &[7u8; 16 * 1024]) {
                    refused = true;
                    break;
                }
            }
            assert!(refused, "the writer kept accepting chunks after failing");
            let error = files.finish_writing(writer, true).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
        }
    }

    #[test]
    fn a_local_copy_refuses_an_upload_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = StdFiles::inline().create_part(&path).unwrap();
        let mut copy = LocalCopy {
            file: DirectWriter::new(file, &path),
            path: "f".into(),
        };
        let state = UploadState {
            size: 1,
            offset: 0,
            prefix_sha256: [0; 32],
        };
        let refused = copy.checkpoint(&state).unwrap_err();
        let io: io::Error = refused.into();
        assert_eq!(io.kind(), io::ErrorKind::Unsupported);
    }
}
