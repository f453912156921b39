//! The file tree's policy, written once over a [`HomeStore`]: [`Tree`] implements
//! [`FileTree`] for the disk and the memory backends alike.
//!
//! Layout inside a home (every hidden name starts with [`super::path::RESERVED_PREFIX`], so
//! clients can neither see nor address it):
//!
//! - Kept versions of file `dir/name`: `dir/.vserv-versions/name/n` (1 the newest).
//! - The verified SHA-256 of file `dir/name`: `dir/.vserv-sha256/name`, with the file's
//!   size, inode and modification time; believed only while they still match
//!   ([`sidecar`]).
//! - Partial uploads: `.vserv-partial/<hex SHA-256 of the target path>` with the saved
//!   upload state as `<name>.state` (where the backend keeps states as files).
//! - Hidden records of store `S` of directory `dir`: `dir/S/NAME`.
//! - Whole-file writes go through a temporary file (`.vserv-tmp-<digits>-<digits>`) in the
//!   target's directory, renamed into place.
//!
//! Usage: each home's count of files, kept versions and partial files (a partial file
//! takes its upload's declared size at `fopen`) is kept in memory by [`super::usage`],
//! built by one walk of the home at its first use and changed under the home's lock by
//! every operation that changes them. Partial uploads and their expiry are in
//! [`super::partials`].

use std::time::{Duration, SystemTime};

use vserv_core::commands::{DirEntry, FileKind, FileStat};
use vserv_core::transfer::FileHasher;

use super::partials::InUse;
use super::path::{check_name, is_reserved};
use super::store::{Fault, HomeStore, Loc, Meta, Removal, StoreError};
use super::transfer::{OpenedFile, OpenedPartial, PartialFile, READ_CHUNK};
use super::usage::{Usage, UsageCounters};
use super::{
    FileError, FileTree, FilesConfig, PartialSweep, UserPath, check_quota, check_record_names,
};
use crate::accounts::UserName;

/// The hidden directory holding a directory's kept versions.
pub(super) const VERSIONS_DIR: &str = ".vserv-versions";

/// Prefix of the temporary files of whole-file writes.
pub(super) const TMP_PREFIX: &str = ".vserv-tmp-";

/// The hidden directory holding a directory's recorded SHA-256 sidecars.
const SHA_DIR: &str = ".vserv-sha256";

/// Length of a SHA-256 sidecar: the hash, then size, inode, mtime seconds and nanoseconds
/// of the file it describes (8 bytes each, big-endian).
const SIDECAR_LEN: usize = 32 + 4 * 8;

/// Whether `name` is exactly a temporary file's name as the backends form it:
/// [`TMP_PREFIX`], decimal digits (a process id), `-`, decimal digits (a counter).
pub fn is_tmp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix(TMP_PREFIX)
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Unix seconds of `time`, if known and not before 1970.
fn unix_secs(time: Option<SystemTime>) -> Option<u64> {
    time?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// A home's file tree: the policy (quota, versions, records, sidecars, partial uploads and
/// their expiry, usage) over the storage `S`.
#[derive(Debug)]
pub struct Tree<S> {
    pub(super) store: S,
    pub(super) config: FilesConfig,
    /// Partial files open by uploads (see [`FileTree::sweep_partials`]).
    pub(super) in_use: InUse,
    /// Each home's bytes counted toward its quota, and the per-user lock of its changes.
    pub(super) usage: UsageCounters,
    /// Free space on the homes' medium that uploads never take.
    pub(super) min_free: u64,
}

impl<S: HomeStore> Tree<S> {
    /// A tree of `config` over `store`, keeping no free-space reserve.
    pub fn with_store(store: S, config: FilesConfig) -> Tree<S> {
        Tree {
            store,
            config,
            in_use: InUse::default(),
            usage: UsageCounters::default(),
            min_free: 0,
        }
    }

    /// The same tree keeping `bytes` free on the homes' medium (a tree keeps none until
    /// this is called; the server's default is [`super::DEFAULT_MIN_FREE_BYTES`]; 0 turns
    /// the reserve off): an upload (or whole-file write) of `n` bytes is refused with
    /// [`FileError::DiskFull`] before any of its data is accepted when less than
    /// `n + bytes` are free. A backend without a bound on its space (memory) never refuses.
    pub fn with_min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }

    /// How many times a home was walked to count its usage since the tree opened: once per
    /// home at its first use, again only after a change failed half-way. Quota checks and
    /// changes never walk.
    pub fn usage_walks(&self) -> u64 {
        self.usage.walks()
    }

    /// The storage under the policy.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Maps a storage failure at `at` to the error of an operation on client path `path`:
    /// a fault on the way is reported at the client's path up to it when `at` is on the
    /// client's path there, as one of `path`'s hidden files otherwise.
    pub(super) fn fail<'a>(
        &self,
        at: &'a Loc,
        path: &'a UserPath,
    ) -> impl FnOnce(StoreError) -> FileError + 'a {
        move |e| match e {
            StoreError::Homes(fault) => fault_error(fault, "the homes directory".into()),
            StoreError::Walk { depth, fault } => {
                let names = path.names();
                let shown = if depth == 0 {
                    format!("~{}", at.home)
                } else if depth <= names.len() && at.names.get(..depth) == names.get(..depth) {
                    UserPath::from_names(names[..depth].to_vec())
                        .map_or_else(|_| path.to_string(), |p| p.to_string())
                } else {
                    format!("the hidden files of {path}")
                };
                fault_error(fault, shown)
            }
            StoreError::Io(source) => FileError::Io {
                path: path.to_string(),
                source,
            },
            StoreError::File(e) => e,
        }
    }

    /// `owner`'s home's root, the home created on first use.
    fn home(&self, owner: &UserName) -> Result<Loc, FileError> {
        let root = Loc::new(owner.as_str(), Vec::new());
        self.store
            .open_home(owner.as_str())
            .map_err(self.fail(&root, &UserPath::root()))?;
        Ok(root)
    }

    /// The location of `path` in `owner`'s home and its metadata (`None` if nothing is
    /// there). Every directory on the way must exist and be a directory; nothing on the
    /// way (the backend refusing it) may be a symlink.
    pub(super) fn locate(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<(Loc, Option<Meta>), FileError> {
        let mut at = self.home(owner)?;
        at.names = path.names().to_vec();
        let meta = self.store.metadata(&at).map_err(self.fail(&at, path))?;
        Ok((at, meta))
    }

    /// Like [`Tree::locate`], but something must be there.
    fn existing(&self, owner: &UserName, path: &UserPath) -> Result<(Loc, Meta), FileError> {
        match self.locate(owner, path)? {
            (at, Some(meta)) => Ok((at, meta)),
            (_, None) => Err(FileError::NotFound(path.to_string())),
        }
    }

    /// Runs `f` with `owner`'s usage count under the home's lock (see [`UsageCounters`]).
    pub(super) fn counted<T>(
        &self,
        owner: &UserName,
        f: impl FnOnce(&mut Usage) -> Result<T, FileError>,
    ) -> Result<T, FileError> {
        let home = self.home(owner)?;
        self.usage.with(owner, || self.count_home(&home), f)
    }

    /// The bytes the home at `home` counts toward its quota: every file of the client's
    /// directories, every kept version and every partial upload; the server's hidden files
    /// (sidecars, saved upload states, records, temporary files) are not counted. Entries
    /// that vanish during the walk are skipped; symlinks are never followed.
    fn count_home(&self, home: &Loc) -> Result<u64, FileError> {
        self.count_dir(home, Counted::Root)
            .map_err(self.fail(home, &UserPath::root()))
    }

    /// [`Tree::count_home`] from directory `dir`, of kind `kind`.
    pub(super) fn count_dir(&self, dir: &Loc, kind: Counted) -> Result<u64, StoreError> {
        let gone = StoreError::is_missing;
        let mut total = 0u64;
        let mut stack = vec![(dir.clone(), kind)];
        while let Some((dir, kind)) = stack.pop() {
            let entries = match self.store.list(&dir) {
                Ok(entries) => entries,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            for (name, meta) in entries {
                let hidden = is_reserved(&name);
                let inner = match kind {
                    Counted::Versions => Some(Counted::Versions),
                    Counted::Partial => None,
                    Counted::Root | Counted::Plain if !hidden => Some(Counted::Plain),
                    Counted::Root if name == super::partials::PARTIAL_DIR => Some(Counted::Partial),
                    Counted::Root | Counted::Plain if name == VERSIONS_DIR => {
                        Some(Counted::Versions)
                    }
                    Counted::Root | Counted::Plain => continue,
                };
                if meta.is_dir() {
                    if let Some(inner) = inner {
                        stack.push((dir.child(&name), inner));
                    }
                } else if meta.is_file()
                    && (kind != Counted::Partial || super::partials::is_partial_name(&name))
                {
                    total = total.saturating_add(meta.len);
                }
            }
        }
        Ok(total)
    }

    /// Refuses writing `needed` bytes when that would leave less than the reserve free on
    /// the homes' medium.
    pub(super) fn check_free(&self, needed: u64, path: &UserPath) -> Result<(), FileError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let root = Loc::new("", Vec::new());
        let Some(free) = self.store.free_space().map_err(self.fail(&root, path))? else {
            return Ok(());
        };
        if free < needed.saturating_add(self.min_free) {
            return Err(FileError::DiskFull {
                needed,
                free,
                reserve: self.min_free,
            });
        }
        Ok(())
    }

    /// Makes sure hidden directory `dir` is a directory (created if missing).
    pub(super) fn ensure_private_dir(&self, dir: &Loc, path: &UserPath) -> Result<(), FileError> {
        let hidden = || format!("the hidden files of {path}");
        match self.store.metadata(dir) {
            Ok(Some(m)) if m.is_dir() => Ok(()),
            Ok(Some(_)) => Err(FileError::NotADirectory(hidden())),
            Ok(None) => match self.store.create_dir(dir) {
                Ok(()) => Ok(()),
                Err(e) if e.is_io(std::io::ErrorKind::AlreadyExists) => Ok(()),
                Err(e) => Err(self.fail(dir, path)(e)),
            },
            Err(e) => Err(self.fail(dir, path)(e)),
        }
    }

    /// Writes `data` to `at` through a temporary file in the same directory and a rename;
    /// with `durable`, made durable first.
    fn write_atomic(
        &self,
        at: &Loc,
        data: &[u8],
        durable: bool,
        path: &UserPath,
    ) -> Result<(), FileError> {
        let dir = at
            .parent()
            .ok_or_else(|| FileError::NotFound(path.to_string()))?;
        let tmp = self
            .store
            .write_temp(&dir, data, durable)
            .map_err(self.fail(at, path))?;
        let tmp = dir.child(&tmp);
        self.store.rename(&tmp, at).map_err(|e| {
            let _ = self.store.remove(&tmp, Removal::File);
            self.fail(at, path)(e)
        })
    }

    /// The versions directory of file `at` (`dir/.vserv-versions/name`), and the
    /// directory's versions root (`dir/.vserv-versions`).
    fn versions_dir(at: &Loc) -> Option<(Loc, Loc)> {
        let name = at.file_name()?;
        let root = at.sibling(VERSIONS_DIR)?;
        Some((root.child(name), root))
    }

    /// The kept versions of file `at` as (number, location, size), any order.
    fn versions_of(&self, at: &Loc, path: &UserPath) -> Result<Vec<(u32, Loc, u64)>, FileError> {
        let Some((dir, root)) = Self::versions_dir(at) else {
            return Ok(Vec::new());
        };
        let odd = || FileError::Symlink(format!("the versions of {path}"));
        for d in [&root, &dir] {
            match self.store.metadata(d) {
                Ok(Some(m)) if m.is_dir() => {}
                Ok(Some(_)) => return Err(odd()),
                Ok(None) => return Ok(Vec::new()),
                Err(StoreError::Walk {
                    fault: Fault::Symlink,
                    ..
                }) => return Err(odd()),
                Err(e) => return Err(self.fail(d, path)(e)),
            }
        }
        let entries = self.store.list(&dir).map_err(self.fail(&dir, path))?;
        Ok(entries
            .into_iter()
            .filter(|(_, meta)| meta.is_file())
            .filter_map(|(name, meta)| {
                Some((name.parse::<u32>().ok()?, dir.child(&name), meta.len))
            })
            .collect())
    }

    /// The bytes of file `at`'s kept versions.
    fn versions_bytes(&self, at: &Loc, path: &UserPath) -> Result<u64, FileError> {
        Ok(self
            .versions_of(at, path)?
            .iter()
            .fold(0u64, |sum, v| sum.saturating_add(v.2)))
    }

    /// Bytes the next rotation of `at`'s versions frees: the versions that fall off.
    fn rotation_frees(&self, at: &Loc, path: &UserPath, current: u64) -> Result<u64, FileError> {
        let keep = self.config.versions;
        if keep == 0 {
            return Ok(current);
        }
        Ok(self
            .versions_of(at, path)?
            .iter()
            .filter(|(n, _, _)| *n >= keep)
            .map(|(_, _, size)| size)
            .sum())
    }

    /// The file a write of `owner`'s `path` replaces: its location, its metadata (`None`
    /// when absent) and the bytes the replacement frees ([`Tree::rotation_frees`]); a
    /// directory there is refused.
    pub(super) fn replacing(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<(Loc, Option<Meta>, u64), FileError> {
        let (at, meta) = self.locate(owner, path)?;
        let freed = match &meta {
            Some(m) if m.is_dir() => return Err(FileError::IsADirectory(path.to_string())),
            Some(m) => self.rotation_frees(&at, path, m.len)?,
            None => 0,
        };
        Ok((at, meta, freed))
    }

    /// Moves the current file `at` into its versions (dropping those beyond the configured
    /// number), or deletes it when none are kept. With `link` the current file stays where
    /// it is and its newest version is a second name of it (nothing happens when no
    /// versions are kept): a rename over `at` then replaces it atomically.
    pub(super) fn rotate(&self, at: &Loc, path: &UserPath, link: bool) -> Result<(), FileError> {
        let keep = self.config.versions;
        if keep == 0 && link {
            return Ok(());
        }
        if keep == 0 {
            return self
                .store
                .remove(at, Removal::File)
                .map_err(self.fail(at, path));
        }
        let Some((dir, root)) = Self::versions_dir(at) else {
            return Ok(());
        };
        let mut versions = self.versions_of(at, path)?;
        for d in [&root, &dir] {
            match self.store.create_dir(d) {
                Ok(()) => {}
                Err(e) if e.is_io(std::io::ErrorKind::AlreadyExists) => {}
                Err(e) => return Err(self.fail(d, path)(e)),
            }
        }
        // Oldest first, so each rename goes to a free number.
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        for (n, file, _) in versions {
            let done = if n >= keep {
                self.store.remove(&file, Removal::File)
            } else {
                self.store.rename(&file, &dir.child(&(n + 1).to_string()))
            };
            done.map_err(self.fail(&file, path))?;
        }
        let newest = dir.child("1");
        let done = if link {
            self.store.hard_link(at, &newest)
        } else {
            self.store.rename(at, &newest)
        };
        done.map_err(self.fail(at, path))
    }

    /// Removes the kept versions of file `at` (and the versions root if that empties it).
    fn drop_versions(&self, at: &Loc, path: &UserPath) -> Result<(), FileError> {
        let Some((dir, root)) = Self::versions_dir(at) else {
            return Ok(());
        };
        match self.store.remove(&dir, Removal::All) {
            Ok(()) => {}
            Err(e) if e.is_missing() => {}
            Err(e) => return Err(self.fail(&dir, path)(e)),
        }
        // Only succeeds when no other file's versions are left.
        let _ = self.store.remove(&root, Removal::EmptyDir);
        Ok(())
    }

    /// Where file `at`'s SHA-256 sidecar lives.
    fn sidecar(at: &Loc) -> Option<Loc> {
        Some(at.sibling(SHA_DIR)?.child(at.file_name()?))
    }

    /// The recorded SHA-256 of file `at` (with metadata `meta`), if a sidecar still
    /// matches it.
    fn read_sidecar(&self, at: &Loc, meta: &Meta) -> Option<[u8; 32]> {
        let p = Self::sidecar(at)?;
        if !self.store.metadata(&p.parent()?).ok()??.is_dir()
            || !self.store.metadata(&p).ok()??.is_file()
        {
            return None;
        }
        let bytes = self.store.read(&p).ok()?;
        let (sha, identity) = bytes.split_first_chunk::<32>()?;
        (identity == file_identity(meta)).then_some(*sha)
    }

    /// Records `sha256` as the hash of file `at` (with metadata `meta`).
    pub(super) fn write_sidecar(
        &self,
        at: &Loc,
        meta: &Meta,
        sha256: &[u8; 32],
        path: &UserPath,
    ) -> Result<(), FileError> {
        let p = Self::sidecar(at).ok_or_else(|| FileError::NotFound(path.to_string()))?;
        if let Some(dir) = p.parent() {
            self.ensure_private_dir(&dir, path)?;
        }
        self.store.metadata(&p).map_err(self.fail(&p, path))?;
        let mut bytes = [0u8; SIDECAR_LEN];
        bytes[..32].copy_from_slice(sha256);
        bytes[32..].copy_from_slice(&file_identity(meta));
        self.write_atomic(&p, &bytes, false, path)
    }

    /// Drops file `at`'s sidecar, if any (and the sidecar directory if that empties it).
    fn remove_sidecar(&self, at: &Loc) {
        if let Some(p) = Self::sidecar(at) {
            let _ = self.store.remove(&p, Removal::File);
            if let Some(dir) = p.parent() {
                let _ = self.store.remove(&dir, Removal::EmptyDir);
            }
        }
    }

    /// Moves file `from`'s sidecar to file `to` (which replaced whatever was there).
    fn move_sidecar(&self, from: &Loc, to: &Loc, path: &UserPath) {
        let (Some(src), Some(dst)) = (Self::sidecar(from), Self::sidecar(to)) else {
            return;
        };
        let moved = match self.store.metadata(&src) {
            Ok(Some(m)) if m.is_file() => dst
                .parent()
                .map(|d| self.ensure_private_dir(&d, path))
                .transpose()
                .is_ok_and(|_| self.store.rename(&src, &dst).is_ok()),
            _ => false,
        };
        if !moved {
            let _ = self.store.remove(&dst, Removal::File);
        }
        if let Some(dir) = src.parent() {
            let _ = self.store.remove(&dir, Removal::EmptyDir);
        }
    }

    /// The location of the hidden record store `store` of directory `dir` (which must
    /// exist and be a directory).
    fn record_store(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<Loc, FileError> {
        let (at, meta) = self.existing(owner, dir)?;
        if !meta.is_dir() {
            return Err(FileError::NotADirectory(dir.to_string()));
        }
        Ok(at.child(store))
    }

    /// [`FileTree::replace_file`] of `added` bytes, `owner`'s count held.
    fn replace_counted(
        &self,
        usage: &mut Usage,
        owner: &UserName,
        path: &UserPath,
        data: &[u8],
        added: u64,
    ) -> Result<(), FileError> {
        let (at, meta, freed) = self.replacing(owner, path)?;
        check_quota(self.config, usage.used(), freed, added)?;
        let dir = at
            .parent()
            .ok_or_else(|| FileError::NotFound(path.to_string()))?;
        let tmp = self
            .store
            .write_temp(&dir, data, true)
            .map_err(self.fail(&at, path))?;
        let tmp = dir.child(&tmp);
        if meta.is_some()
            && let Err(e) = self.rotate(&at, path, false)
        {
            let _ = self.store.remove(&tmp, Removal::File);
            return Err(e);
        }
        self.store.rename(&tmp, &at).map_err(self.fail(&at, path))?;
        usage.change(added, freed);
        self.remove_sidecar(&at);
        Ok(())
    }
}

/// Which of a home's directories [`Tree::count_dir`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// The home's root: like `Plain`, and its partial uploads count.
    Root,
    /// A client's directory: its files count, its hidden entries do not (but versions).
    Plain,
    /// Under a `.vserv-versions` directory: every regular file counts.
    Versions,
    /// The home's partial directory: partial files count (at their length, their upload's
    /// declared size), saved states and temporary files do not.
    Partial,
}

/// The error of `fault` at the entry a client sees as `shown`.
fn fault_error(fault: Fault, shown: String) -> FileError {
    match fault {
        Fault::Missing => FileError::NotFound(shown),
        Fault::NotADirectory => FileError::NotADirectory(shown),
        Fault::Symlink => FileError::Symlink(shown),
    }
}

/// What a sidecar records of the file besides its hash: size, inode, modification time
/// (seconds and nanoseconds since 1970, as the file system keeps them).
fn file_identity(meta: &Meta) -> [u8; SIDECAR_LEN - 32] {
    let (secs, nanos) = match meta.modified {
        None => (0i64, 0i64),
        Some(t) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                i64::from(d.subsec_nanos()),
            ),
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => (-secs, 0),
                    n => (-secs - 1, 1_000_000_000 - i64::from(n)),
                }
            }
        },
    };
    let mut out = [0u8; SIDECAR_LEN - 32];
    out[..8].copy_from_slice(&meta.len.to_be_bytes());
    out[8..16].copy_from_slice(&meta.ino.to_be_bytes());
    out[16..24].copy_from_slice(&secs.to_be_bytes());
    out[24..].copy_from_slice(&nanos.to_be_bytes());
    out
}

/// SHA-256 of the `size` bytes of `file`, read in [`READ_CHUNK`]s.
fn hash_file(file: &dyn super::store::StoredFile, size: u64) -> Result<[u8; 32], StoreError> {
    let mut hasher = FileHasher::new();
    let mut buf = vec![0; READ_CHUNK];
    let mut at = 0u64;
    while at < size {
        let want = usize::try_from(size - at).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        file.read_exact_at(at, &mut buf[..want])?;
        hasher.update(&buf[..want]);
        at += want as u64;
    }
    Ok(hasher.finish())
}

impl<S: HomeStore> FileTree for Tree<S> {
    fn config(&self) -> FilesConfig {
        self.config
    }

    fn list(&self, owner: &UserName, dir: &UserPath) -> Result<Vec<DirEntry>, FileError> {
        let (at, meta) = self.existing(owner, dir)?;
        if !meta.is_dir() {
            return Err(FileError::NotADirectory(dir.to_string()));
        }
        let listed = self.store.list(&at).map_err(self.fail(&at, dir))?;
        let mut entries: Vec<DirEntry> = listed
            .into_iter()
            .filter(|(name, meta)| check_name(name).is_ok() && (meta.is_file() || meta.is_dir()))
            .map(|(name, meta)| DirEntry {
                name,
                kind: if meta.is_dir() {
                    FileKind::Dir
                } else {
                    FileKind::File
                },
                size: if meta.is_dir() { 0 } else { meta.len },
                modified: unix_secs(meta.modified).unwrap_or(0),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn stat(&self, owner: &UserName, path: &UserPath) -> Result<FileStat, FileError> {
        let (at, meta) = self.existing(owner, path)?;
        let dir = meta.is_dir();
        Ok(FileStat {
            kind: if dir { FileKind::Dir } else { FileKind::File },
            size: if dir { 0 } else { meta.len },
            modified: unix_secs(meta.modified).unwrap_or(0),
            created: unix_secs(meta.created),
            sha256: if dir {
                None
            } else {
                self.read_sidecar(&at, &meta)
            },
        })
    }

    fn mkdir(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        match self.locate(owner, path)? {
            (_, Some(_)) => Err(FileError::Exists(path.to_string())),
            (at, None) => self.store.create_dir(&at).map_err(|e| {
                if e.is_io(std::io::ErrorKind::AlreadyExists) {
                    FileError::Exists(path.to_string())
                } else {
                    self.fail(&at, path)(e)
                }
            }),
        }
    }

    fn rmdir(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        if path.is_root() {
            return Err(FileError::Root);
        }
        self.counted(owner, |usage| {
            let (at, meta) = self.existing(owner, path)?;
            if !meta.is_dir() {
                return Err(FileError::NotADirectory(path.to_string()));
            }
            let mut hidden = Vec::new();
            for (name, meta) in self.store.list(&at).map_err(self.fail(&at, path))? {
                if !is_reserved(&name) {
                    return Err(FileError::NotEmpty(path.to_string()));
                }
                hidden.push((at.child(&name), name, meta));
            }
            // Versions left without their file are counted: they go with the directory.
            let mut freed = 0u64;
            for (h, name, meta) in &hidden {
                if name == VERSIONS_DIR && meta.is_dir() {
                    let bytes = self
                        .count_dir(h, Counted::Versions)
                        .map_err(self.fail(h, path))?;
                    freed = freed.saturating_add(bytes);
                }
            }
            for (h, _, _) in &hidden {
                // Never follows a symlink: one is removed itself.
                self.store
                    .remove(h, Removal::All)
                    .map_err(self.fail(h, path))?;
            }
            // Once the hidden entries are gone the count changes, whatever comes next.
            usage.change(0, freed);
            self.store.remove(&at, Removal::EmptyDir).map_err(|e| {
                if e.is_io(std::io::ErrorKind::DirectoryNotEmpty) {
                    FileError::NotEmpty(path.to_string())
                } else {
                    self.fail(&at, path)(e)
                }
            })
        })
    }

    fn delete_file(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        self.counted(owner, |usage| {
            let (at, meta) = self.existing(owner, path)?;
            if meta.is_dir() {
                return Err(FileError::IsADirectory(path.to_string()));
            }
            let versions = self.versions_bytes(&at, path)?;
            self.store
                .remove(&at, Removal::File)
                .map_err(self.fail(&at, path))?;
            self.remove_sidecar(&at);
            self.drop_versions(&at, path)?;
            usage.change(0, meta.len.saturating_add(versions));
            Ok(())
        })
    }

    fn rename(&self, owner: &UserName, from: &UserPath, to: &UserPath) -> Result<(), FileError> {
        if from.is_root() || to.is_root() {
            return Err(FileError::Root);
        }
        self.counted(owner, |usage| {
            let (from_at, from_meta) = self.existing(owner, from)?;
            if from == to {
                return Ok(());
            }
            if from_meta.is_dir() && to.starts_with(from) {
                return Err(FileError::IntoItself {
                    from: from.to_string(),
                    to: to.to_string(),
                });
            }
            let (to_at, to_meta) = self.locate(owner, to)?;
            // Never grows the usage: the replaced file becomes a version (its oldest ones
            // falling off), and the moved file's own versions are dropped.
            let mut freed = match to_meta {
                None => 0,
                Some(_) if from_meta.is_dir() => return Err(FileError::Exists(to.to_string())),
                Some(m) if m.is_dir() => return Err(FileError::IsADirectory(to.to_string())),
                Some(m) => {
                    let frees = self.rotation_frees(&to_at, to, m.len)?;
                    self.rotate(&to_at, to, false)?;
                    frees
                }
            };
            if from_meta.is_file() {
                freed = freed.saturating_add(self.versions_bytes(&from_at, from)?);
            }
            self.store
                .rename(&from_at, &to_at)
                .map_err(self.fail(&from_at, from))?;
            if from_meta.is_file() {
                self.move_sidecar(&from_at, &to_at, to);
                self.drop_versions(&from_at, from)?;
            }
            usage.change(0, freed);
            Ok(())
        })
    }

    fn usage(&self, owner: &UserName) -> Result<u64, FileError> {
        self.counted(owner, |usage| Ok(usage.used()))
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
        let added = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.check_free(added, path)?;
        self.counted(owner, |usage| {
            self.replace_counted(usage, owner, path, data, added)
        })
    }

    fn read_file(&self, owner: &UserName, path: &UserPath) -> Result<Vec<u8>, FileError> {
        let (at, meta) = self.existing(owner, path)?;
        if meta.is_dir() {
            return Err(FileError::IsADirectory(path.to_string()));
        }
        self.store.read(&at).map_err(self.fail(&at, path))
    }

    fn read_version(
        &self,
        owner: &UserName,
        path: &UserPath,
        n: u32,
    ) -> Result<Vec<u8>, FileError> {
        let (at, _) = self.locate(owner, path)?;
        let version = self
            .versions_of(&at, path)?
            .into_iter()
            .find(|(k, _, _)| *k == n)
            .ok_or_else(|| FileError::NotFound(format!("version {n} of {path}")))?;
        self.store
            .read(&version.1)
            .map_err(self.fail(&version.1, path))
    }

    fn open_partial(
        &self,
        owner: &UserName,
        path: &UserPath,
        size: u64,
        resume: bool,
    ) -> Result<OpenedPartial, FileError> {
        if path.is_root() {
            return Err(FileError::Root);
        }
        self.counted(owner, |usage| {
            self.open_partial_counted(usage, owner, path, size, resume)
        })
    }

    fn commit_partial(
        &self,
        owner: &UserName,
        path: &UserPath,
        file: &mut dyn PartialFile,
        sha256: &[u8; 32],
    ) -> Result<(), FileError> {
        self.commit_partial_file(owner, path, file, sha256)
    }

    fn discard_partial(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        self.discard_partial_file(owner, path)
    }

    fn sweep_partials(&self, now: SystemTime, expiry: Duration) -> Result<PartialSweep, FileError> {
        self.sweep(now, expiry)
    }

    fn owners(&self) -> Result<Vec<UserName>, FileError> {
        let root = Loc::new("", Vec::new());
        let homes = self
            .store
            .homes()
            .map_err(self.fail(&root, &UserPath::root()))?;
        let mut owners: Vec<UserName> = homes
            .names
            .iter()
            .filter_map(|name| UserName::parse(name).ok().filter(|o| o.as_str() == name))
            .collect();
        owners.sort();
        Ok(owners)
    }

    fn archive_home(&self, owner: &UserName, tag: &str) -> Result<bool, FileError> {
        let root = Loc::new(owner.as_str(), Vec::new());
        self.usage.with_home_moved(owner, || {
            self.store
                .archive_home(owner, tag)
                .map_err(self.fail(&root, &UserPath::root()))
        })
    }

    fn read_record(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, FileError> {
        check_record_names(store, Some(name))?;
        let store_at = self.record_store(owner, dir, store)?;
        if self
            .store
            .metadata(&store_at)
            .map_err(self.fail(&store_at, dir))?
            .is_none()
        {
            return Ok(None);
        }
        let record = store_at.child(name);
        match self
            .store
            .metadata(&record)
            .map_err(self.fail(&record, dir))?
        {
            None => Ok(None),
            Some(_) => self
                .store
                .read(&record)
                .map(Some)
                .map_err(self.fail(&record, dir)),
        }
    }

    fn write_record(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
        name: &str,
        data: &[u8],
    ) -> Result<(), FileError> {
        check_record_names(store, Some(name))?;
        let store_at = self.record_store(owner, dir, store)?;
        self.ensure_private_dir(&store_at, dir)?;
        let record = store_at.child(name);
        self.store
            .metadata(&record)
            .map_err(self.fail(&record, dir))?;
        self.write_atomic(&record, data, true, dir)
    }

    fn list_records(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<Vec<String>, FileError> {
        check_record_names(store, None)?;
        let store_at = self.record_store(owner, dir, store)?;
        if self
            .store
            .metadata(&store_at)
            .map_err(self.fail(&store_at, dir))?
            .is_none()
        {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = self
            .store
            .list(&store_at)
            .map_err(self.fail(&store_at, dir))?
            .into_iter()
            .filter(|(name, meta)| meta.is_file() && check_name(name).is_ok())
            .map(|(name, _)| name)
            .collect();
        names.sort();
        Ok(names)
    }

    fn sweep_record_temps(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<u64, FileError> {
        check_record_names(store, None)?;
        let store_at = self.record_store(owner, dir, store)?;
        if self
            .store
            .metadata(&store_at)
            .map_err(self.fail(&store_at, dir))?
            .is_none()
        {
            return Ok(0);
        }
        let mut deleted = 0;
        for (name, meta) in self
            .store
            .list(&store_at)
            .map_err(self.fail(&store_at, dir))?
        {
            // Only a regular file goes, never what a symlink points to.
            if is_tmp_name(&name) && meta.is_file() {
                let tmp = store_at.child(&name);
                match self.store.remove(&tmp, Removal::File) {
                    Ok(()) => {}
                    Err(e) if e.is_missing() => {}
                    Err(e) => return Err(self.fail(&tmp, dir)(e)),
                }
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn open_read(&self, owner: &UserName, path: &UserPath) -> Result<OpenedFile, FileError> {
        let (at, meta) = self.existing(owner, path)?;
        if meta.is_dir() {
            return Err(FileError::IsADirectory(path.to_string()));
        }
        let file = self.store.open_read(&at).map_err(self.fail(&at, path))?;
        let opened = file.meta();
        let size = opened.len;
        let sha256 = match self.read_sidecar(&at, &opened) {
            Some(sha) => sha,
            None => {
                let sha = hash_file(file.as_ref(), size).map_err(self.fail(&at, path))?;
                if let Err(e) = self.write_sidecar(&at, &opened, &sha, path) {
                    tracing::warn!(error = %e, "could not record a file's SHA-256");
                }
                sha
            }
        };
        Ok(OpenedFile {
            reader: file.into_reader(path.to_string()),
            size,
            sha256,
        })
    }
}
