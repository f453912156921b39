//! [`StdFiles`]: [`LocalFiles`] over `std::fs` on the calling thread, with no helper
//! threads: each read or write runs where the driver runs the work (smol's blocking pool,
//! or the blocking runtime's helpers, which delegate their plain operations here).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use vserv_core::transfer::FileHasher;

use super::local::{FileKind, LocalFiles, ReadBatch};

/// Chunks read per batch by a [`StdReader`].
const CHUNKS_PER_BATCH: usize = 32;

/// Local files over `std::fs`, every operation done inline by whoever runs the work.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFiles;

/// An upload's source read sequentially, hashing as it goes.
#[derive(Debug)]
pub struct StdReader {
    file: File,
    left: u64,
    chunk: usize,
    hasher: FileHasher,
    /// Set once the reader handed over a short or failed batch: nothing more follows.
    stopped: bool,
}

/// A partial copy written sequentially, hashing as it goes.
#[derive(Debug)]
pub struct StdWriter {
    file: File,
    hasher: FileHasher,
    error: Option<io::Error>,
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

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl LocalFiles for StdFiles {
    type File = File;
    type Reader = StdReader;
    type Writer = StdWriter;

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
        file.seek(SeekFrom::Start(offset))?;
        read_some(file, buf)
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
        mut file: File,
        start: u64,
        size: u64,
        chunk: usize,
        hasher: FileHasher,
    ) -> io::Result<StdReader> {
        file.seek(SeekFrom::Start(start))?;
        Ok(StdReader {
            file,
            left: size.saturating_sub(start),
            chunk: chunk.max(1),
            hasher,
            stopped: false,
        })
    }

    fn next_batch(&self, reader: &mut StdReader) -> Option<ReadBatch> {
        if reader.left == 0 || reader.stopped {
            return None;
        }
        let batch_len = reader.chunk.saturating_mul(CHUNKS_PER_BATCH);
        let want = usize::try_from(reader.left).map_or(batch_len, |l| l.min(batch_len));
        let mut batch = vec![0u8; want];
        match reader.file.read_exact(&mut batch) {
            Ok(()) => {
                reader.hasher.update(&batch);
                reader.left -= want as u64;
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

    fn finish_reading(&self, reader: StdReader) -> Option<FileHasher> {
        Some(reader.hasher)
    }

    fn start_writing(
        &self,
        mut file: File,
        _path: &Path,
        start: u64,
        hasher: FileHasher,
    ) -> io::Result<StdWriter> {
        file.seek(SeekFrom::Start(start))?;
        Ok(StdWriter {
            file,
            hasher,
            error: None,
        })
    }

    fn write(&self, writer: &mut StdWriter, data: &[u8]) -> bool {
        if writer.error.is_some() {
            return false;
        }
        writer.hasher.update(data);
        match writer.file.write_all(data) {
            Ok(()) => true,
            Err(e) => {
                writer.error = Some(e);
                false
            }
        }
    }

    fn finish_writing(&self, writer: StdWriter, sync: bool) -> io::Result<FileHasher> {
        let StdWriter {
            mut file,
            hasher,
            error,
        } = writer;
        if let Some(e) = error {
            return Err(e);
        }
        file.flush()?;
        if sync {
            file.sync_all()?;
        }
        Ok(hasher)
    }
}
