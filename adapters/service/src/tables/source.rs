//! Where table files are read from: a [`TableSource`] reads a file's bytes with its
//! [`FileStamp`], and tells a file's stamp alone (cheap: one `stat`), so a table is re-read
//! only when its stamp changed. [`StdFiles`] reads the real file system; [`MemoryFiles`]
//! holds files in memory, for the simulator and tests (replacing one changes its stamp).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What identifies one version of a file: its length, modification time (nanoseconds) and,
/// on Unix, its inode. Any change of content through a rename, a rewrite or a truncation
/// changes at least one of them (short of a rewrite of the same length within the file
/// system's time resolution, which Linux file systems keep to nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the Unix epoch (negative before it).
    pub modified_ns: i128,
    /// The inode (0 where there is none).
    pub inode: u64,
}

/// Why a table file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file system refused (missing, unreadable).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than a table may be.
    #[error("{} is larger than {max} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
}

/// Reads table files. Both calls may block (they touch storage): the service calls them
/// from blocking work only.
pub trait TableSource: Send + Sync {
    /// The stamp of the file at `path` now.
    fn stamp(&self, path: &Path) -> Result<FileStamp, SourceError>;

    /// The file's bytes (at most `max` of them, else [`SourceError::TooLarge`]) and the
    /// stamp of the very version read.
    fn read(&self, path: &Path, max: u64) -> Result<(Vec<u8>, FileStamp), SourceError>;
}

impl std::fmt::Debug for dyn TableSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableSource")
    }
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFiles;

fn stamp_of(meta: &std::fs::Metadata) -> FileStamp {
    let modified_ns = meta
        .modified()
        .ok()
        .map(|t| match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
            Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
        })
        .unwrap_or_default();
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    FileStamp {
        len: meta.len(),
        modified_ns,
        inode,
    }
}

impl TableSource for StdFiles {
    fn stamp(&self, path: &Path) -> Result<FileStamp, SourceError> {
        std::fs::metadata(path)
            .map(|m| stamp_of(&m))
            .map_err(|source| SourceError::Io {
                path: path.to_owned(),
                source,
            })
    }

    fn read(&self, path: &Path, max: u64) -> Result<(Vec<u8>, FileStamp), SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_owned(),
            source,
        };
        // The stamp is the open file's: a rename over the path while reading leaves what is
        // read and its stamp in agreement, and the next query sees the new file's stamp.
        let file = std::fs::File::open(path).map_err(io)?;
        let stamp = stamp_of(&file.metadata().map_err(io)?);
        if stamp.len > max {
            return Err(SourceError::TooLarge {
                path: path.to_owned(),
                max,
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(stamp.len).unwrap_or(0));
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
            return Err(SourceError::TooLarge {
                path: path.to_owned(),
                max,
            });
        }
        Ok((bytes, stamp))
    }
}

/// Files kept in memory: each [`MemoryFiles::put`] is a new version with a new stamp.
#[derive(Debug, Default)]
pub struct MemoryFiles {
    files: Mutex<BTreeMap<PathBuf, (Vec<u8>, FileStamp)>>,
    versions: Mutex<u64>,
}

impl MemoryFiles {
    /// No files.
    pub fn new() -> MemoryFiles {
        MemoryFiles::default()
    }

    /// Writes (or replaces) the file at `path`; its stamp changes.
    pub fn put(&self, path: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) {
        let bytes = bytes.into();
        let version = {
            let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            *v += 1;
            *v
        };
        let stamp = FileStamp {
            len: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            modified_ns: i128::from(version),
            inode: version,
        };
        self.lock().insert(path.into(), (bytes, stamp));
    }

    /// Removes the file at `path`.
    pub fn remove(&self, path: &Path) {
        self.lock().remove(path);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, (Vec<u8>, FileStamp)>> {
        // Inserts and removals only: consistent after a panic elsewhere.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn missing(path: &Path) -> SourceError {
        SourceError::Io {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
    }
}

impl TableSource for MemoryFiles {
    fn stamp(&self, path: &Path) -> Result<FileStamp, SourceError> {
        self.lock()
            .get(path)
            .map(|(_, s)| *s)
            .ok_or_else(|| Self::missing(path))
    }

    fn read(&self, path: &Path, max: u64) -> Result<(Vec<u8>, FileStamp), SourceError> {
        let files = self.lock();
        let (bytes, stamp) = files.get(path).ok_or_else(|| Self::missing(path))?;
        if stamp.len > max {
            return Err(SourceError::TooLarge {
                path: path.to_owned(),
                max,
            });
        }
        Ok((bytes.clone(), *stamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_files_change_stamp_on_every_put() {
        let files = MemoryFiles::new();
        let p = Path::new("/t.csv");
        assert!(files.stamp(p).is_err());
        files.put(p, "a\n");
        let one = files.stamp(p).unwrap();
        files.put(p, "b\n");
        let two = files.stamp(p).unwrap();
        assert_ne!(one, two);
        assert_eq!(files.read(p, 10).unwrap(), (b"b\n".to_vec(), two));
        assert!(matches!(
            files.read(p, 1),
            Err(SourceError::TooLarge { .. })
        ));
        files.remove(p);
        assert!(files.read(p, 10).is_err());
    }

    #[test]
    fn std_files_stamp_what_they_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, "a,b\n").unwrap();
        let (bytes, stamp) = StdFiles.read(&p, 100).unwrap();
        assert_eq!(bytes, b"a,b\n");
        assert_eq!(StdFiles.stamp(&p).unwrap(), stamp);
        // Replaced by a rename: a new inode at least.
        let q = dir.path().join("new.csv");
        std::fs::write(&q, "a,b\n").unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert_ne!(StdFiles.stamp(&p).unwrap(), stamp);
        assert!(matches!(
            StdFiles.read(&p, 2),
            Err(SourceError::TooLarge { .. })
        ));
        assert!(StdFiles.stamp(&dir.path().join("none")).is_err());
    }
}
