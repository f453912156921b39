//! The file tree's policy, written once over a [`HomeStore`]: [`Tree`] implements
//! [`FileTree`] for the disk and the memory backends alike.
//!
//! Layout inside a home (every hidden name starts with [`super::path::RESERVED_PREFIX`], so
//! clients can neither see nor address it), each part of the policy in a module of its own:
//!
//! - [`super::versions`]: kept versions, `dir/.vserv-versions/name/n`.
//! - [`super::sidecar`]: recorded SHA-256 hashes, `dir/.vserv-sha256/name`.
//! - [`super::partials`]: partial uploads in `.vserv-partial/` and their expiry.
//! - [`super::records`]: hidden records, `dir/.vserv-records-*/NAME`.
//! - [`super::usage`]: the bytes each home counts toward its quota.
//! - Whole-file writes go through a temporary file (`.vserv-tmp-<digits>-<digits>`) in the
//!   target's directory, renamed into place.
//!
//! Here: the tree itself, resolving client paths to storage locations (and storage
//! failures to client errors), the free-space reserve, and the directory and file
//! operations.

use std::time::{Duration, SystemTime};

use vserv_core::commands::{DirEntry, FileKind, FileStat, VersionInfo};

use super::partials::InUse;
use super::path::{check_name, is_reserved};
use super::store::{Fault, HomeStore, Loc, Meta, Removal, StoreError};
use super::transfer::{OpenedFile, OpenedPartial, PartialFile};
use super::usage::Counted;
use super::usage::{Usage, UsageCounters};
use super::versions::VERSIONS_DIR;
use super::{FileError, FileTree, FilesConfig, PartialSweep, UserPath, check_quota};
use crate::accounts::UserName;

/// Prefix of the temporary files of whole-file writes.
pub(super) const TMP_PREFIX: &str = ".vserv-tmp-";

/// Whether `name` is exactly a temporary file's name as the backends form it:
/// [`TMP_PREFIX`], decimal digits (a process id), `-`, decimal digits (a counter).
pub fn is_tmp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix(TMP_PREFIX)
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Unix seconds of `time`, if known and not before 1970.
pub(super) fn unix_secs(time: Option<SystemTime>) -> Option<u64> {
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
    pub(super) fn existing(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<(Loc, Meta), FileError> {
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
    pub(super) fn write_atomic(
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

/// The error of `fault` at the entry a client sees as `shown`.
fn fault_error(fault: Fault, shown: String) -> FileError {
    match fault {
        Fault::Missing => FileError::NotFound(shown),
        Fault::NotADirectory => FileError::NotADirectory(shown),
        Fault::Symlink => FileError::Symlink(shown),
    }
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

    fn mkdir_all(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        let names = path.names();
        for depth in 1..=names.len() {
            let step = UserPath::from_names(names[..depth].to_vec())?;
            match self.locate(owner, &step)? {
                (_, Some(m)) if m.is_dir() => {}
                (_, Some(_)) => return Err(FileError::NotADirectory(step.to_string())),
                (at, None) => match self.store.create_dir(&at) {
                    Ok(()) => {}
                    // Made meanwhile: the next step (or the check below) sees what it is.
                    Err(e) if e.is_io(std::io::ErrorKind::AlreadyExists) => {}
                    Err(e) => return Err(self.fail(&at, &step)(e)),
                },
            }
        }
        match self.locate(owner, path)? {
            (_, Some(m)) if m.is_dir() => Ok(()),
            (_, Some(_)) => Err(FileError::NotADirectory(path.to_string())),
            (_, None) => Err(FileError::NotFound(path.to_string())),
        }
    }

    fn versions(&self, owner: &UserName, path: &UserPath) -> Result<Vec<VersionInfo>, FileError> {
        self.counted(owner, |_| self.version_list(owner, path))
    }

    fn restore(&self, owner: &UserName, path: &UserPath, n: u32) -> Result<(), FileError> {
        if path.is_root() {
            return Err(FileError::Root);
        }
        self.counted(owner, |usage| self.restore_counted(usage, owner, path, n))
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
        self.read_record_in(owner, dir, store, name)
    }

    fn write_record(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
        name: &str,
        data: &[u8],
    ) -> Result<(), FileError> {
        self.write_record_in(owner, dir, store, name, data)
    }

    fn list_records(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<Vec<String>, FileError> {
        self.list_records_in(owner, dir, store)
    }

    fn sweep_record_temps(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<u64, FileError> {
        self.sweep_record_temps_in(owner, dir, store)
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
                let sha =
                    super::sidecar::hash_file(file.as_ref(), size).map_err(self.fail(&at, path))?;
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
