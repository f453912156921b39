//! The seam between the transfer scheduler and the local file system: [`LocalFiles`] is
//! every local operation a transfer needs, so the scheduler itself does no I/O. Every
//! runtime uses [`StdFiles`](super::StdFiles) over `std::fs`, given its own way of running
//! blocking work; a simulation can implement it in memory.

use std::io;
use std::path::Path;

use vserv_core::transfer::FileHasher;

/// What is at a local path (not following a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// Anything else (a symlink, directory, device, FIFO, socket), named in words for a
    /// refusal.
    Other(&'static str),
}

/// What an upload's reader hands over next.
#[derive(Debug)]
pub enum ReadBatch {
    /// The next bytes of the file: whole chunks back to back (only the file's last chunk may
    /// be short).
    Data(Vec<u8>),
    /// The file ended before the size the upload was opened with.
    Short,
    /// Reading failed.
    Failed(io::Error),
}

/// The local file operations of uploads and downloads. Every method may block on the disk;
/// the scheduler never calls them itself but hands them to its driver inside a
/// [`LocalWork`](super::LocalWork), so they run where the runtime chooses.
pub trait LocalFiles {
    /// An open local file (an upload's source, or a download's partial copy).
    type File: Send + 'static;
    /// An upload's source being read (and hashed) from an offset on.
    type Reader: Send + 'static;
    /// A download's partial copy being written (and hashed) from an offset on.
    type Writer: Send + 'static;

    /// Opens an upload's local file for reading: the file and its size. Anything but a
    /// regular file is an [`io::ErrorKind::InvalidInput`] error.
    fn open_source(&self, path: &Path) -> io::Result<(Self::File, u64)>;

    /// What is at `path`, not following a symlink; `None` if nothing is.
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>>;

    /// Opens an existing partial copy for reading and writing.
    fn open_part(&self, path: &Path) -> io::Result<Self::File>;

    /// Creates a partial copy (or empties an existing one), open for reading and writing.
    fn create_part(&self, path: &Path) -> io::Result<Self::File>;

    /// Reads into `buf` at `offset`: the bytes read, 0 at the end of the file.
    fn read_at(&self, file: &mut Self::File, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Cuts `file` to `len` bytes.
    fn truncate(&self, file: &mut Self::File, len: u64) -> io::Result<()>;

    /// Reads a small text file whole (a partial copy's info file).
    fn read_text(&self, path: &Path) -> io::Result<String>;

    /// Writes a small text file, creating or replacing it.
    fn write_text(&self, path: &Path, text: &str) -> io::Result<()>;

    /// Renames `from` to `to`, replacing `to` atomically.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Starts reading `file` at `start` up to `size`, in batches of whole `chunk`-byte
    /// chunks; `hasher` has seen the bytes before `start` and sees every byte read.
    fn start_reading(
        &self,
        file: Self::File,
        start: u64,
        size: u64,
        chunk: usize,
        hasher: FileHasher,
    ) -> io::Result<Self::Reader>;

    /// The next batch; `None` once every byte up to `size` was handed over.
    fn next_batch(&self, reader: &mut Self::Reader) -> Option<ReadBatch>;

    /// Ends the reading: the hash of every byte read, if the reader ended cleanly.
    fn finish_reading(&self, reader: Self::Reader) -> Option<FileHasher>;

    /// Starts writing the partial copy `file` (at `path`) from offset `start` on; `hasher`
    /// has seen every byte before `start` and sees every byte written.
    fn start_writing(
        &self,
        file: Self::File,
        path: &Path,
        start: u64,
        hasher: FileHasher,
    ) -> io::Result<Self::Writer>;

    /// Appends `data`. `false` once the writer has stopped on an error, which
    /// [`finish_writing`](Self::finish_writing) then returns.
    fn write(&self, writer: &mut Self::Writer, data: &[u8]) -> bool;

    /// Waits until every byte is written (and with `sync`, durable) and closes the file:
    /// the hash of every byte, or the first error.
    fn finish_writing(&self, writer: Self::Writer, sync: bool) -> io::Result<FileHasher>;
}
