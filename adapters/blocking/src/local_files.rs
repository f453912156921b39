//! [`ThreadedFiles`]: the blocking runtime's local files for transfers. The plain operations
//! are `std::fs` calls ([`StdFiles`]); an upload's source is read ahead and hashed on a
//! thread of its own ([`ReadAhead`]) and a download's partial copy hashed and written
//! behind on two ([`WriteBehind`]), so a transfer uses more than the connection's core.

use std::fs::File;
use std::io;
use std::path::Path;

use vserv_core::transfer::FileHasher;
use vserv_service::client::transfers::{FileKind, LocalFiles, ReadBatch, StdFiles};

use crate::read_ahead::{Batch, ReadAhead};
use crate::write_behind::WriteBehind;

/// Local files over `std::fs` with read-ahead and write-behind threads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ThreadedFiles;

impl LocalFiles for ThreadedFiles {
    type File = File;
    type Reader = ReadAhead;
    type Writer = WriteBehind;

    fn open_source(&self, path: &Path) -> io::Result<(File, u64)> {
        StdFiles.open_source(path)
    }

    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        StdFiles.kind(path)
    }

    fn open_part(&self, path: &Path) -> io::Result<File> {
        StdFiles.open_part(path)
    }

    fn create_part(&self, path: &Path) -> io::Result<File> {
        StdFiles.create_part(path)
    }

    fn read_at(&self, file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        StdFiles.read_at(file, offset, buf)
    }

    fn truncate(&self, file: &mut File, len: u64) -> io::Result<()> {
        StdFiles.truncate(file, len)
    }

    fn read_text(&self, path: &Path) -> io::Result<String> {
        StdFiles.read_text(path)
    }

    fn write_text(&self, path: &Path, text: &str) -> io::Result<()> {
        StdFiles.write_text(path, text)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFiles.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFiles.remove(path)
    }

    fn start_reading(
        &self,
        file: File,
        start: u64,
        size: u64,
        chunk: usize,
        hasher: FileHasher,
    ) -> io::Result<ReadAhead> {
        ReadAhead::spawn(file, start, size, chunk, hasher)
    }

    fn next_batch(&self, reader: &mut ReadAhead) -> Option<ReadBatch> {
        reader.next().map(|batch| match batch {
            Batch::Data(data) => ReadBatch::Data(data),
            Batch::Short => ReadBatch::Short,
            Batch::Failed(e) => ReadBatch::Failed(e),
        })
    }

    fn finish_reading(&self, reader: ReadAhead) -> Option<FileHasher> {
        reader.finish()
    }

    fn start_writing(
        &self,
        file: File,
        path: &Path,
        start: u64,
        hasher: FileHasher,
    ) -> io::Result<WriteBehind> {
        WriteBehind::spawn(file, path, start, hasher)
    }

    fn write(&self, writer: &mut WriteBehind, data: &[u8]) -> bool {
        writer.write(data)
    }

    fn finish_writing(&self, writer: WriteBehind, sync: bool) -> io::Result<FileHasher> {
        let (mut file, hasher) = writer.finish()?;
        if sync {
            file.sync_all()?;
        }
        Ok(hasher)
    }
}
