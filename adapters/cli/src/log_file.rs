//! The server's log destination: stderr, or a file given by `serve --log-file` that SIGHUP
//! re-opens (so a rotated log file is replaced by a new one at the same path).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;

/// A log file that can be re-opened at its path; clones share the open file.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    /// Opens (creating, appending to) the file at `path`.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(open(path)?)),
        })
    }

    fn file(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the path again and writes there from now on (the old file, perhaps renamed by
    /// a log rotation, is closed). On error the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open(&self.path)?;
        *self.file() = fresh;
        Ok(())
    }
}

/// One log event's writer: the shared file, locked per write.
pub struct LogFileWriter<'a>(&'a LogFile);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.file().flush()
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_the_path_after_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vserv.log");
        let log = LogFile::open(&path).unwrap();
        log.make_writer().write_all(b"one\n").unwrap();
        let rotated = dir.path().join("vserv.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.make_writer().write_all(b"two\n").unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }
}
