//! Homes on disk under `<data dir>/homes/<user>/`.
//!
//! Symlinks are never followed: before any operation every component from `homes` down to
//! the target is checked with `symlink_metadata`, and a symlink anywhere (the `homes`
//! directory, a home, a directory on the way or the target itself) refuses the operation,
//! whether it points outside the home or inside it. Clients cannot create symlinks, so one
//! only exists if someone with access to the server's machine planted it; the check and
//! the use are not atomic against such a local attacker racing the server.
//!
//! Kept versions live in a hidden sibling directory: file `dir/name` keeps version `n`
//! (1 the newest) at `dir/.vserv-versions/name/n`. Uploads are written to a hidden
//! temporary file (`.vserv-tmp-...`) in the target's directory and renamed into place.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use vserv_core::commands::{DirEntry, FileKind, FileStat};

use super::path::{check_name, is_reserved};
use super::{FileError, FileTree, FilesConfig, UserPath, check_quota};
use crate::accounts::UserName;

/// The hidden directory holding a directory's kept versions.
const VERSIONS_DIR: &str = ".vserv-versions";

/// Prefix of the temporary files of uploads.
const TMP_PREFIX: &str = ".vserv-tmp-";

/// Homes under `<data dir>/homes/`, created (mode 0700) on first use.
#[derive(Debug)]
pub struct DiskTree {
    homes: PathBuf,
    config: FilesConfig,
    tmp_counter: AtomicU64,
}

fn io_error(path: &UserPath) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_string(),
        source,
    }
}

fn unix_secs(time: std::io::Result<std::time::SystemTime>) -> Option<u64> {
    time.ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Creates directory `dir` (mode 0700 on Unix).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Whether a directory entry is kept: a file or directory (not a symlink or anything
/// else) whose name a client could address.
fn listed(entry: &fs::DirEntry) -> Option<(String, fs::Metadata)> {
    let name = entry.file_name().into_string().ok()?;
    check_name(&name).ok()?;
    // `DirEntry::metadata` does not traverse symlinks.
    let meta = entry.metadata().ok()?;
    (meta.is_file() || meta.is_dir()).then_some((name, meta))
}

impl DiskTree {
    /// Homes under `<data_dir>/homes/` (created, mode 0700, if missing). Refused if
    /// `homes` is a symlink or not a directory.
    pub fn open(data_dir: &Path, config: FilesConfig) -> Result<DiskTree, FileError> {
        let homes = data_dir.join("homes");
        let root = UserPath::root();
        match create_private_dir(&homes) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&root)(e)),
        }
        let tree = DiskTree {
            homes,
            config,
            tmp_counter: AtomicU64::new(0),
        };
        tree.check_homes()?;
        Ok(tree)
    }

    /// Where the homes are.
    pub fn homes(&self) -> &Path {
        &self.homes
    }

    fn check_homes(&self) -> Result<(), FileError> {
        let meta = fs::symlink_metadata(&self.homes).map_err(io_error(&UserPath::root()))?;
        if meta.file_type().is_symlink() {
            return Err(FileError::Symlink("the homes directory".into()));
        }
        if !meta.is_dir() {
            return Err(FileError::NotADirectory("the homes directory".into()));
        }
        Ok(())
    }

    /// `owner`'s home, created on first use; refused if it is a symlink.
    fn home(&self, owner: &UserName) -> Result<PathBuf, FileError> {
        self.check_homes()?;
        let home = self.homes.join(owner.as_str());
        let root = UserPath::root();
        match fs::symlink_metadata(&home) {
            Ok(m) if m.file_type().is_symlink() => Err(FileError::Symlink(format!("~{owner}"))),
            Ok(m) if m.is_dir() => Ok(home),
            Ok(_) => Err(FileError::NotADirectory(format!("~{owner}"))),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match create_private_dir(&home) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_error(&root)(e)),
                }
                tracing::info!(user = %owner, "created home");
                Ok(home)
            }
            Err(e) => Err(io_error(&root)(e)),
        }
    }

    /// The real path of `path` and its metadata (`None` if nothing is there). Every
    /// directory on the way must exist and be a directory; no component may be a symlink.
    fn locate(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<(PathBuf, Option<fs::Metadata>), FileError> {
        let mut real = self.home(owner)?;
        let names = path.names();
        if names.is_empty() {
            let meta = fs::symlink_metadata(&real).map_err(io_error(path))?;
            return Ok((real, Some(meta)));
        }
        for (i, name) in names.iter().enumerate() {
            real.push(name);
            let shown = || {
                UserPath::from_names(names[..=i].to_vec())
                    .map_or_else(|_| path.to_string(), |p| p.to_string())
            };
            let last = i + 1 == names.len();
            match fs::symlink_metadata(&real) {
                Ok(m) if m.file_type().is_symlink() => return Err(FileError::Symlink(shown())),
                Ok(m) if last => return Ok((real, Some(m))),
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(FileError::NotADirectory(shown())),
                Err(e) if e.kind() == ErrorKind::NotFound && last => return Ok((real, None)),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(FileError::NotFound(shown()));
                }
                Err(e) => return Err(io_error(path)(e)),
            }
        }
        Ok((real, None))
    }

    /// Like [`DiskTree::locate`], but something must be there.
    fn existing(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<(PathBuf, fs::Metadata), FileError> {
        match self.locate(owner, path)? {
            (real, Some(meta)) => Ok((real, meta)),
            (_, None) => Err(FileError::NotFound(path.to_string())),
        }
    }

    /// The versions directory of file `real` (`dir/.vserv-versions/name`), and the
    /// directory's versions root (`dir/.vserv-versions`).
    fn versions_dir(real: &Path) -> Option<(PathBuf, PathBuf)> {
        let name = real.file_name()?;
        let root = real.parent()?.join(VERSIONS_DIR);
        Some((root.join(name), root))
    }

    /// The kept versions of file `real` as (number, real path, size), any order.
    fn versions_of(real: &Path, path: &UserPath) -> Result<Vec<(u32, PathBuf, u64)>, FileError> {
        let Some((dir, root)) = Self::versions_dir(real) else {
            return Ok(Vec::new());
        };
        for d in [&root, &dir] {
            match fs::symlink_metadata(d) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(FileError::Symlink(format!("the versions of {path}"))),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_error(path)(e)),
            }
        }
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_error(path))? {
            let entry = entry.map_err(io_error(path))?;
            let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let meta = entry.metadata().map_err(io_error(path))?;
            if meta.is_file() {
                out.push((n, entry.path(), meta.len()));
            }
        }
        Ok(out)
    }

    /// Bytes the next rotation of `real`'s versions frees: the versions that fall off.
    fn rotation_frees(&self, real: &Path, path: &UserPath, current: u64) -> Result<u64, FileError> {
        let keep = self.config.versions;
        if keep == 0 {
            return Ok(current);
        }
        Ok(Self::versions_of(real, path)?
            .iter()
            .filter(|(n, _, _)| *n >= keep)
            .map(|(_, _, size)| size)
            .sum())
    }

    /// Moves the current file `real` into its versions (dropping those beyond the
    /// configured number), or deletes it when none are kept.
    fn rotate(&self, real: &Path, path: &UserPath) -> Result<(), FileError> {
        let keep = self.config.versions;
        if keep == 0 {
            return fs::remove_file(real).map_err(io_error(path));
        }
        let Some((dir, root)) = Self::versions_dir(real) else {
            return Ok(());
        };
        let mut versions = Self::versions_of(real, path)?;
        for d in [&root, &dir] {
            match create_private_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error(path)(e)),
            }
        }
        // Oldest first, so each rename goes to a free number.
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        for (n, file, _) in versions {
            if n >= keep {
                fs::remove_file(&file).map_err(io_error(path))?;
            } else {
                fs::rename(&file, dir.join((n + 1).to_string())).map_err(io_error(path))?;
            }
        }
        fs::rename(real, dir.join("1")).map_err(io_error(path))
    }

    /// Removes the kept versions of file `real` (and the versions root if that empties it).
    fn drop_versions(real: &Path, path: &UserPath) -> Result<(), FileError> {
        let Some((dir, root)) = Self::versions_dir(real) else {
            return Ok(());
        };
        // `remove_dir_all` removes a symlink itself, never what it points to.
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path)(e)),
        }
        // Only succeeds when no other file's versions are left.
        let _ = fs::remove_dir(&root);
        Ok(())
    }
}

impl FileTree for DiskTree {
    fn config(&self) -> FilesConfig {
        self.config
    }

    fn list(&self, owner: &UserName, dir: &UserPath) -> Result<Vec<DirEntry>, FileError> {
        let (real, meta) = self.existing(owner, dir)?;
        if !meta.is_dir() {
            return Err(FileError::NotADirectory(dir.to_string()));
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(&real).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let Some((name, meta)) = listed(&entry) else {
                continue;
            };
            let kind = if meta.is_dir() {
                FileKind::Dir
            } else {
                FileKind::File
            };
            entries.push(DirEntry {
                name,
                kind,
                size: if meta.is_dir() { 0 } else { meta.len() },
                modified: unix_secs(meta.modified()).unwrap_or(0),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn stat(&self, owner: &UserName, path: &UserPath) -> Result<FileStat, FileError> {
        let (_, meta) = self.existing(owner, path)?;
        let dir = meta.is_dir();
        Ok(FileStat {
            kind: if dir { FileKind::Dir } else { FileKind::File },
            size: if dir { 0 } else { meta.len() },
            modified: unix_secs(meta.modified()).unwrap_or(0),
            created: unix_secs(meta.created()),
            sha256: None,
        })
    }

    fn mkdir(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        match self.locate(owner, path)? {
            (_, Some(_)) => Err(FileError::Exists(path.to_string())),
            (real, None) => create_private_dir(&real).map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists => FileError::Exists(path.to_string()),
                _ => io_error(path)(e),
            }),
        }
    }

    fn rmdir(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        if path.is_root() {
            return Err(FileError::Root);
        }
        let (real, meta) = self.existing(owner, path)?;
        if !meta.is_dir() {
            return Err(FileError::NotADirectory(path.to_string()));
        }
        let mut hidden = Vec::new();
        for entry in fs::read_dir(&real).map_err(io_error(path))? {
            let entry = entry.map_err(io_error(path))?;
            let reserved = entry.file_name().to_str().is_some_and(is_reserved);
            if !reserved {
                return Err(FileError::NotEmpty(path.to_string()));
            }
            hidden.push(entry.path());
        }
        for h in hidden {
            // `remove_dir_all` does not follow symlinks.
            let removed = match fs::symlink_metadata(&h) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&h),
                _ => fs::remove_file(&h),
            };
            removed.map_err(io_error(path))?;
        }
        fs::remove_dir(&real).map_err(|e| match e.kind() {
            ErrorKind::DirectoryNotEmpty => FileError::NotEmpty(path.to_string()),
            _ => io_error(path)(e),
        })
    }

    fn delete_file(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        let (real, meta) = self.existing(owner, path)?;
        if meta.is_dir() {
            return Err(FileError::IsADirectory(path.to_string()));
        }
        fs::remove_file(&real).map_err(io_error(path))?;
        Self::drop_versions(&real, path)
    }

    fn rename(&self, owner: &UserName, from: &UserPath, to: &UserPath) -> Result<(), FileError> {
        if from.is_root() || to.is_root() {
            return Err(FileError::Root);
        }
        let (from_real, from_meta) = self.existing(owner, from)?;
        if from == to {
            return Ok(());
        }
        if from_meta.is_dir() && to.starts_with(from) {
            return Err(FileError::IntoItself {
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        let (to_real, to_meta) = self.locate(owner, to)?;
        match to_meta {
            None => {}
            Some(_) if from_meta.is_dir() => return Err(FileError::Exists(to.to_string())),
            Some(m) if m.is_dir() => return Err(FileError::IsADirectory(to.to_string())),
            Some(_) => self.rotate(&to_real, to)?,
        }
        fs::rename(&from_real, &to_real).map_err(io_error(from))?;
        if from_meta.is_file() {
            Self::drop_versions(&from_real, from)?;
        }
        Ok(())
    }

    fn usage(&self, owner: &UserName) -> Result<u64, FileError> {
        let root = UserPath::root();
        let mut total = 0u64;
        let mut stack = vec![self.home(owner)?];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).map_err(io_error(&root))? {
                let entry = entry.map_err(io_error(&root))?;
                let meta = entry.metadata().map_err(io_error(&root))?;
                if meta.is_dir() {
                    stack.push(entry.path());
                } else if meta.is_file() {
                    total = total.saturating_add(meta.len());
                }
            }
        }
        Ok(total)
    }

    fn replace_file(
        &self,
        owner: &UserName,
        path: &UserPath,
        data: &[u8],
    ) -> Result<(), FileError> {
        if path.is_root() {
            return Err(FileError::Root);
        }
        let (real, meta) = self.locate(owner, path)?;
        let freed = match &meta {
            Some(m) if m.is_dir() => return Err(FileError::IsADirectory(path.to_string())),
            Some(m) => self.rotation_frees(&real, path, m.len())?,
            None => 0,
        };
        let added = u64::try_from(data.len()).unwrap_or(u64::MAX);
        check_quota(self.config, self.usage(owner)?, freed, added)?;
        let dir = real
            .parent()
            .ok_or_else(|| FileError::NotFound(path.to_string()))?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let written = (|| {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(data)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(path)(e));
        }
        if meta.is_some()
            && let Err(e) = self.rotate(&real, path)
        {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &real).map_err(io_error(path))
    }

    fn read_file(&self, owner: &UserName, path: &UserPath) -> Result<Vec<u8>, FileError> {
        let (real, meta) = self.existing(owner, path)?;
        if meta.is_dir() {
            return Err(FileError::IsADirectory(path.to_string()));
        }
        fs::read(&real).map_err(io_error(path))
    }

    fn read_version(
        &self,
        owner: &UserName,
        path: &UserPath,
        n: u32,
    ) -> Result<Vec<u8>, FileError> {
        let (real, _) = self.locate(owner, path)?;
        let version = Self::versions_of(&real, path)?
            .into_iter()
            .find(|(k, _, _)| *k == n)
            .ok_or_else(|| FileError::NotFound(format!("version {n} of {path}")))?;
        fs::read(&version.1).map_err(io_error(path))
    }
}
