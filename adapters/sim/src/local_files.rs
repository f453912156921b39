//! [`MemoryFiles`]: the simulated client machine's local files, in memory, for the client
//! transfer scheduler's [`LocalFiles`] seam. Deterministic: no threads, no clock, no OS
//! randomness; paths are kept in order. Each file's bytes live in a shared cell (like an
//! inode), so a file opened before a rename or a truncation sees what the disk would.
//! Clones share the same files, so a test keeps one to put sources in and inspect results.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::transfer::FileHasher;
use vserv_service::client::transfers::{FileKind, LocalFiles, ReadBatch};

/// Chunks handed over per batch by a [`MemoryReader`] (as many as the std reader's).
const CHUNKS_PER_BATCH: usize = 32;

/// One file's bytes, shared by every open handle of it.
type Cell = Arc<Mutex<Vec<u8>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

/// Local files in memory, keyed by path (compared as given, no normalisation). Clones share
/// the same files.
#[derive(Debug, Clone, Default)]
pub struct MemoryFiles {
    files: Arc<Mutex<BTreeMap<PathBuf, Cell>>>,
}

/// An open file: a handle on its bytes.
#[derive(Debug)]
pub struct MemoryFile {
    cell: Cell,
}

/// An upload's source read in batches from an offset up to a size, hashing as it goes.
#[derive(Debug)]
pub struct MemoryReader {
    cell: Cell,
    at: u64,
    end: u64,
    chunk: usize,
    hasher: FileHasher,
    /// Set once a short batch was handed over: nothing more follows.
    stopped: bool,
}

/// A partial copy written from an offset on, hashing as it goes.
#[derive(Debug)]
pub struct MemoryWriter {
    cell: Cell,
    at: usize,
    hasher: FileHasher,
}

impl MemoryFiles {
    /// No files.
    pub fn new() -> MemoryFiles {
        MemoryFiles::default()
    }

    /// Creates or replaces the file at `path` with `bytes`.
    pub fn insert(&self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) {
        lock(&self.files).insert(path.into(), Arc::new(Mutex::new(bytes.into())));
    }

    /// A copy of the bytes of the file at `path`, if there is one.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let cell = lock(&self.files).get(path).cloned()?;
        let bytes = lock(&cell).clone();
        Some(bytes)
    }

    /// Whether a file exists at `path`.
    pub fn exists(&self, path: &Path) -> bool {
        lock(&self.files).contains_key(path)
    }

    /// Every path holding a file, in order.
    pub fn paths(&self) -> Vec<PathBuf> {
        lock(&self.files).keys().cloned().collect()
    }

    fn cell(&self, path: &Path) -> io::Result<Cell> {
        lock(&self.files)
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))
    }

    /// The file at `path`, emptied, or a new empty one.
    fn create_empty(&self, path: &Path) -> Cell {
        let mut files = lock(&self.files);
        let cell = files.entry(path.to_owned()).or_default().clone();
        drop(files);
        lock(&cell).clear();
        cell
    }
}

/// `len` as an index into memory, or an error if it cannot be one.
fn index(len: u64) -> io::Result<usize> {
    usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

impl LocalFiles for MemoryFiles {
    type File = MemoryFile;
    type Reader = MemoryReader;
    type Writer = MemoryWriter;

    fn open_source(&self, path: &Path) -> io::Result<(MemoryFile, u64)> {
        let cell = self.cell(path)?;
        let len = lock(&cell).len() as u64;
        Ok((MemoryFile { cell }, len))
    }

    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        Ok(self.exists(path).then_some(FileKind::Regular))
    }

    fn open_part(&self, path: &Path) -> io::Result<MemoryFile> {
        Ok(MemoryFile {
            cell: self.cell(path)?,
        })
    }

    fn create_part(&self, path: &Path) -> io::Result<MemoryFile> {
        Ok(MemoryFile {
            cell: self.create_empty(path),
        })
    }

    fn read_at(&self, file: &mut MemoryFile, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let bytes = lock(&file.cell);
        let start = index(offset)?.min(bytes.len());
        let rest = bytes.get(start..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn truncate(&self, file: &mut MemoryFile, len: u64) -> io::Result<()> {
        let len = index(len)?;
        lock(&file.cell).resize(len, 0);
        Ok(())
    }

    fn read_text(&self, path: &Path) -> io::Result<String> {
        let cell = self.cell(path)?;
        let bytes = lock(&cell).clone();
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn write_text(&self, path: &Path, text: &str) -> io::Result<()> {
        let cell = self.create_empty(path);
        lock(&cell).extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut files = lock(&self.files);
        let cell = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_owned(), cell);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        lock(&self.files)
            .remove(path)
            .map(drop)
            .ok_or_else(|| not_found(path))
    }

    fn start_reading(
        &self,
        file: MemoryFile,
        start: u64,
        size: u64,
        chunk: usize,
        hasher: FileHasher,
    ) -> io::Result<MemoryReader> {
        Ok(MemoryReader {
            cell: file.cell,
            at: start,
            end: size,
            chunk: chunk.max(1),
            hasher,
            stopped: false,
        })
    }

    fn next_batch(&self, reader: &mut MemoryReader) -> Option<ReadBatch> {
        if reader.at >= reader.end || reader.stopped {
            return None;
        }
        let batch_len = reader.chunk.saturating_mul(CHUNKS_PER_BATCH);
        let left = reader.end - reader.at;
        let want = usize::try_from(left).map_or(batch_len, |l| l.min(batch_len));
        let bytes = lock(&reader.cell);
        let batch = usize::try_from(reader.at)
            .ok()
            .and_then(|from| bytes.get(from..from.checked_add(want)?));
        match batch {
            Some(batch) => {
                let batch = batch.to_vec();
                drop(bytes);
                reader.hasher.update(&batch);
                reader.at += want as u64;
                Some(ReadBatch::Data(batch))
            }
            None => {
                reader.stopped = true;
                Some(ReadBatch::Short)
            }
        }
    }

    fn finish_reading(&self, reader: MemoryReader) -> Option<FileHasher> {
        Some(reader.hasher)
    }

    fn start_writing(
        &self,
        file: MemoryFile,
        _path: &Path,
        start: u64,
        hasher: FileHasher,
    ) -> io::Result<MemoryWriter> {
        Ok(MemoryWriter {
            cell: file.cell,
            at: index(start)?,
            hasher,
        })
    }

    fn write(&self, writer: &mut MemoryWriter, data: &[u8]) -> bool {
        writer.hasher.update(data);
        let mut bytes = lock(&writer.cell);
        let end = writer.at.saturating_add(data.len());
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[writer.at..end].copy_from_slice(data);
        writer.at = end;
        true
    }

    fn finish_writing(&self, writer: MemoryWriter, _sync: bool) -> io::Result<FileHasher> {
        Ok(writer.hasher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_copy_is_written_renamed_and_read_back() {
        let files = MemoryFiles::new();
        let part = Path::new("/d/x.vserv-part");
        let file = files.create_part(part).unwrap();
        let mut w = files
            .start_writing(file, part, 0, FileHasher::new())
            .unwrap();
        assert!(files.write(&mut w, b"hello "));
        assert!(files.write(&mut w, b"world"));
        files.finish_writing(w, true).unwrap();
        files.rename(part, Path::new("/d/x")).unwrap();
        assert!(!files.exists(part));
        assert_eq!(files.read(Path::new("/d/x")).unwrap(), b"hello world");
        let mut f = files.open_part(Path::new("/d/x")).unwrap();
        files.truncate(&mut f, 5).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(files.read_at(&mut f, 1, &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"ello");
        assert!(files.kind(Path::new("/nothing")).unwrap().is_none());
        assert_eq!(
            files.remove(Path::new("/nothing")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_reader_hands_over_whole_batches_and_notices_a_shrunk_file() {
        let files = MemoryFiles::new();
        let path = Path::new("src");
        files.insert(path, vec![7u8; 100]);
        let (file, size) = files.open_source(path).unwrap();
        assert_eq!(size, 100);
        let mut r = files
            .start_reading(file, 10, size, 1, FileHasher::new())
            .unwrap();
        let Some(ReadBatch::Data(first)) = files.next_batch(&mut r) else {
            panic!("no batch");
        };
        assert_eq!(first.len(), CHUNKS_PER_BATCH);
        files.insert(path, vec![7u8; 50]);
        // The reader holds the old bytes (a replaced file is a new inode).
        let mut total = first.len();
        while let Some(batch) = files.next_batch(&mut r) {
            let ReadBatch::Data(b) = batch else {
                panic!("short");
            };
            total += b.len();
        }
        assert_eq!(total, 90);
        // Shrinking the same file under a reader is a short read.
        let (file, size) = files.open_source(path).unwrap();
        let mut r = files
            .start_reading(file, 0, size, 1, FileHasher::new())
            .unwrap();
        let mut f = files.open_part(path).unwrap();
        files.truncate(&mut f, 3).unwrap();
        assert!(matches!(files.next_batch(&mut r), Some(ReadBatch::Short)));
        assert!(files.next_batch(&mut r).is_none());
    }
}
