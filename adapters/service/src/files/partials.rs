//! Partial uploads and their expiry, once for every backend (part of [`Tree`]'s policy).
//!
//! Streamed uploads (`fopen`/`fput`/`fdone`) write a partial file in the home's hidden
//! `.vserv-partial/` directory, named by the hex SHA-256 of the target's path, with its
//! saved upload state (spec/files.md §5.1) as `<name>.state`. A partial file counts toward
//! the quota at its upload's declared size from `fopen` until it is committed, discarded
//! or swept; `fdone` makes the old file the newest version (a second name of it) and
//! renames the partial file over it (one atomic rename).
//!
//! [`FileTree::sweep_partials`](super::FileTree::sweep_partials) deletes, in every home's
//! partial directory, the partial uploads (partial file and state, judged by the newer of
//! their modification times), the orphaned halves of such pairs, and the leftover
//! temporary files, once none was modified within the expiry. It reads the homes without
//! creating any and never removes anything but regular files with those names there.
//! Partial files held open by an upload are registered in the tree (by `open_partial`,
//! before it touches them, until the upload's handle is dropped); the sweep decides and
//! deletes each entry under the same registry lock, so an upload's partial file is never
//! deleted while the upload has it open, and an upload opened just after an expired
//! partial file was deleted simply starts at 0.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use vserv_core::transfer::{FileHasher, UploadState};

use super::store::{Fault, HomeStore, Loc, PartialOpen, Removal, StoreError};
use super::transfer::{OpenedPartial, PartialFile};
use super::tree::{TMP_PREFIX, Tree};
use super::usage::Usage;
use super::{FileError, PartialSweep, UserPath, check_quota};
use crate::accounts::UserName;

/// The home's hidden directory of partial uploads.
pub(super) const PARTIAL_DIR: &str = ".vserv-partial";

/// Suffix of a partial file's saved upload state, beside it.
const STATE_SUFFIX: &str = ".state";

/// The file name of the partial upload to `path`: the hex SHA-256 of the path.
fn partial_name(path: &UserPath) -> String {
    let mut hasher = FileHasher::new();
    hasher.update(path.to_string().as_bytes());
    hex::encode(hasher.finish())
}

/// Whether `name` is a partial file's name: 64 lower-case hex digits.
pub(super) fn is_partial_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The files of the partial-directory entry `name` belongs to, which the sweep judges and
/// removes together: a partial file and its state, or a temporary file alone. `None` for a
/// name the server does not make there (left alone).
fn sweep_group(name: &str) -> Option<Vec<String>> {
    let base = name.strip_suffix(STATE_SUFFIX).unwrap_or(name);
    if is_partial_name(base) {
        Some(vec![base.to_owned(), format!("{base}{STATE_SUFFIX}")])
    } else if name.starts_with(TMP_PREFIX) {
        Some(vec![name.to_owned()])
    } else {
        None
    }
}

/// The partial files an upload has open (location → number of open handles), shared by a
/// tree and the handles it gave out.
pub(super) type InUse = Arc<Mutex<BTreeMap<Loc, usize>>>;

fn lock_in_use(in_use: &InUse) -> MutexGuard<'_, BTreeMap<Loc, usize>> {
    in_use.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks a partial file as open by an upload until dropped: the sweep leaves it alone.
#[derive(Debug)]
pub struct PartialClaim {
    in_use: InUse,
    partial: Loc,
}

impl PartialClaim {
    fn new(in_use: &InUse, partial: &Loc) -> PartialClaim {
        *lock_in_use(in_use).entry(partial.clone()).or_insert(0) += 1;
        PartialClaim {
            in_use: in_use.clone(),
            partial: partial.clone(),
        }
    }
}

impl Drop for PartialClaim {
    fn drop(&mut self) {
        let mut in_use = lock_in_use(&self.in_use);
        if let Some(n) = in_use.get_mut(&self.partial) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                in_use.remove(&self.partial);
            }
        }
    }
}

impl<S: HomeStore> Tree<S> {
    /// The partial file and saved-state locations of the upload to `owner`'s `path` (the
    /// partial directory created if missing).
    fn partial_locs(&self, owner: &UserName, path: &UserPath) -> Result<(Loc, Loc), FileError> {
        let (home, _) = self.locate(owner, &UserPath::root())?;
        let dir = home.child(PARTIAL_DIR);
        self.ensure_private_dir(&dir, path)?;
        let name = partial_name(path);
        Ok((
            dir.child(&name),
            dir.child(&format!("{name}{STATE_SUFFIX}")),
        ))
    }

    /// [`FileTree::open_partial`](super::FileTree::open_partial), `owner`'s count held: the
    /// partial file takes the upload's declared size at once and is counted at it from
    /// here on.
    pub(super) fn open_partial_counted(
        &self,
        usage: &mut Usage,
        owner: &UserName,
        path: &UserPath,
        size: u64,
        resume: bool,
    ) -> Result<OpenedPartial, FileError> {
        let (_, _, freed) = self.replacing(owner, path)?;
        let (partial, state) = self.partial_locs(owner, path)?;
        // Registered before the files are touched: the sweep leaves them alone from here on.
        let claim = PartialClaim::new(&self.in_use, &partial);
        // The old partial file (counted at its length) is replaced by `size` bytes; once
        // done the upload frees what its overwrite drops.
        let old = self
            .store
            .metadata(&partial)
            .map_err(self.fail(&partial, path))?;
        let old_len = old.as_ref().map_or(0, |m| m.len);
        self.store
            .metadata(&state)
            .map_err(self.fail(&state, path))?;
        check_quota(
            self.config,
            usage.used(),
            freed.saturating_add(old_len),
            size,
        )?;
        // On the medium: what the old partial file does not already hold.
        let allocated = old.as_ref().map_or(0, |m| m.allocated);
        self.check_free(size.saturating_sub(allocated), path)?;
        let saved = if resume {
            self.store
                .read_state(&state)
                .ok()
                .flatten()
                .and_then(|b| UploadState::decode(&b).ok())
                .filter(|s| s.size == size)
        } else {
            None
        };
        if saved.is_none() {
            self.store
                .remove_state(&state)
                .map_err(self.fail(&state, path))?;
        }
        let file = self
            .store
            .open_partial(PartialOpen {
                file: &partial,
                state: &state,
                size,
                fresh: saved.is_none(),
                claim,
                shown: path.to_string(),
            })
            .map_err(self.fail(&partial, path))?;
        usage.change(size, old_len);
        Ok(OpenedPartial { file, saved })
    }

    /// [`FileTree::commit_partial`](super::FileTree::commit_partial).
    pub(super) fn commit_partial_file(
        &self,
        owner: &UserName,
        path: &UserPath,
        file: &mut dyn PartialFile,
        sha256: &[u8; 32],
    ) -> Result<(), FileError> {
        if path.is_root() {
            return Err(FileError::Root);
        }
        file.sync()?;
        // No quota check: the partial file was counted at its full size since `fopen`, so
        // making it the file only frees (the versions that fall off).
        let (at, state) = self.counted(owner, |usage| {
            let (at, meta, freed) = self.replacing(owner, path)?;
            let (partial, state) = self.partial_locs(owner, path)?;
            if self
                .store
                .metadata(&partial)
                .map_err(self.fail(&partial, path))?
                .is_none()
            {
                return Err(FileError::NotFound(format!("the partial upload of {path}")));
            }
            if meta.is_some() {
                self.rotate(&at, path, true)?;
            }
            self.store
                .rename(&partial, &at)
                .map_err(self.fail(&at, path))?;
            usage.change(0, freed);
            Ok((at, state))
        })?;
        // The count is right from the rename on: the rest runs without the user's lock, so
        // the user's other uploads do not wait for this sync.
        self.store
            .remove_state(&state)
            .map_err(self.fail(&state, path))?;
        if let Some(dir) = at.parent() {
            self.store.sync_dir(&dir).map_err(self.fail(&at, path))?;
        }
        let recorded = match self.store.metadata(&at) {
            Ok(Some(meta)) => self.write_sidecar(&at, &meta, sha256, path),
            Ok(None) => Err(FileError::NotFound(path.to_string())),
            Err(e) => Err(self.fail(&at, path)(e)),
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record an uploaded file's SHA-256");
        }
        Ok(())
    }

    /// [`FileTree::discard_partial`](super::FileTree::discard_partial).
    pub(super) fn discard_partial_file(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<(), FileError> {
        self.counted(owner, |usage| {
            let (partial, state) = self.partial_locs(owner, path)?;
            let len = self
                .store
                .metadata(&partial)
                .map_err(self.fail(&partial, path))?
                .map_or(0, |m| m.len);
            self.store
                .remove_state(&state)
                .map_err(self.fail(&state, path))?;
            match self.store.remove(&partial, Removal::File) {
                Ok(()) => {}
                Err(e) if e.is_missing() => {}
                Err(e) => return Err(self.fail(&partial, path)(e)),
            }
            usage.change(0, len);
            Ok(())
        })
    }

    /// [`FileTree::sweep_partials`](super::FileTree::sweep_partials).
    pub(super) fn sweep(
        &self,
        now: SystemTime,
        expiry: Duration,
    ) -> Result<PartialSweep, FileError> {
        let mut report = PartialSweep::default();
        if expiry.is_zero() {
            return Ok(report);
        }
        let Some(cutoff) = now.checked_sub(expiry) else {
            return Ok(report);
        };
        let root = Loc::new("", Vec::new());
        let mut homes = self
            .store
            .homes()
            .map_err(self.fail(&root, &UserPath::root()))?;
        report.failed += homes.unreadable;
        homes.names.sort();
        for home in &homes.names {
            self.sweep_counted(home, cutoff, &mut report);
        }
        Ok(report)
    }

    /// [`Tree::sweep_home`] of home `home` under its owner's lock, the count (if the home
    /// has one yet: the sweep never walks a home) lowered by the partial files removed. A
    /// directory not named by a user name in its normal form has no count: it is swept
    /// alone.
    fn sweep_counted(&self, home: &str, cutoff: SystemTime, report: &mut PartialSweep) {
        let owner = UserName::parse(home).ok().filter(|o| o.as_str() == home);
        let Some(owner) = owner else {
            self.sweep_home(home, cutoff, report);
            return;
        };
        self.usage
            .with_freeing(&owner, || ((), self.sweep_home(home, cutoff, report)));
    }

    /// Sweeps the partial directory of `home`: every group of files not modified since
    /// `cutoff` and not open by an upload is removed. The bytes of the partial files
    /// removed (what the quota counted of them).
    fn sweep_home(&self, home: &str, cutoff: SystemTime, report: &mut PartialSweep) -> u64 {
        let dir = Loc::new(home, vec![PARTIAL_DIR.to_owned()]);
        let shown = format!("~{home}/{PARTIAL_DIR}");
        match self.store.metadata(&dir) {
            Ok(Some(m)) if m.is_dir() => {}
            Ok(None) => return 0,
            Ok(Some(_))
            | Err(StoreError::Walk {
                fault: Fault::Symlink,
                ..
            }) => {
                tracing::warn!(dir = %shown,
                    "partial sweep: not a directory (or a symlink), left alone");
                report.failed += 1;
                return 0;
            }
            Err(e) => {
                tracing::warn!(dir = %shown, error = %e, "partial sweep: cannot examine");
                report.failed += 1;
                return 0;
            }
        }
        let entries = match self.store.list(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %shown, error = %e, "partial sweep: cannot list");
                report.failed += 1;
                return 0;
            }
        };
        let mut groups = BTreeSet::new();
        for (name, _) in entries {
            match sweep_group(&name) {
                Some(group) => {
                    groups.insert(group);
                }
                None => tracing::debug!(dir = %shown, entry = %name,
                    "partial sweep: unknown entry left alone"),
            }
        }
        groups.iter().fold(0u64, |freed, group| {
            freed.saturating_add(self.sweep_one(&dir, group, cutoff, report))
        })
    }

    /// Removes the files `names` of partial directory `dir` (those that exist) if none was
    /// modified since `cutoff` and the first (the partial file) is not open by an upload.
    /// The registry of open partial files stays locked throughout, so no upload opens them
    /// between the decision and the removal. The bytes of the partial file removed, if it
    /// was.
    fn sweep_one(
        &self,
        dir: &Loc,
        names: &[String],
        cutoff: SystemTime,
        report: &mut PartialSweep,
    ) -> u64 {
        let in_use = lock_in_use(&self.in_use);
        let mut found = Vec::new();
        let mut newest: Option<SystemTime> = None;
        for name in names {
            let file = dir.child(name);
            let meta = match self.store.metadata(&file) {
                Ok(Some(m)) if m.is_file() => m,
                Ok(None) => continue,
                Ok(Some(_))
                | Err(StoreError::Walk {
                    fault: Fault::Symlink,
                    ..
                }) => {
                    tracing::warn!(home = %dir.home, entry = %name,
                        "partial sweep: not a regular file (or a symlink), left alone");
                    report.failed += 1;
                    return 0;
                }
                Err(e) => {
                    tracing::warn!(home = %dir.home, entry = %name, error = %e,
                        "partial sweep: cannot examine");
                    report.failed += 1;
                    return 0;
                }
            };
            let Some(modified) = meta.modified else {
                tracing::warn!(home = %dir.home, entry = %name,
                    "partial sweep: no modification time");
                report.failed += 1;
                return 0;
            };
            newest = Some(newest.map_or(modified, |n| n.max(modified)));
            found.push((file, name, meta.len));
        }
        let Some(newest) = newest else {
            return 0;
        };
        if newest >= cutoff {
            return 0;
        }
        if names
            .first()
            .is_some_and(|partial| in_use.contains_key(&dir.child(partial)))
        {
            tracing::debug!(home = %dir.home, name = ?names.first(),
                "partial sweep: an expired partial upload is open, kept");
            report.in_use += 1;
            return 0;
        }
        // The state first, so a partial file never looks resumable without it. A backend
        // keeping states beside its files (not as files) drops the state here too.
        let state = names.get(1).filter(|n| n.ends_with(STATE_SUFFIX));
        let mut removed = false;
        let mut freed = 0u64;
        if let Some(state) = state
            && !found.iter().any(|(_, name, _)| *name == state)
            && let Err(e) = self.store.remove_state(&dir.child(state))
        {
            tracing::warn!(home = %dir.home, entry = %state, error = %e,
                "partial sweep: could not remove");
            report.failed += 1;
        }
        found.reverse();
        for (file, name, len) in found {
            let done = if Some(name) == state {
                self.store.remove_state(&file)
            } else {
                self.store.remove(&file, Removal::File)
            };
            match done {
                Ok(()) => {
                    removed = true;
                    report.bytes = report.bytes.saturating_add(len);
                    if is_partial_name(name) {
                        freed = freed.saturating_add(len);
                    }
                    tracing::debug!(home = %dir.home, entry = %name, bytes = len,
                        "partial sweep: removed an expired partial upload file");
                }
                Err(e) if e.is_missing() => {}
                Err(e) => {
                    tracing::warn!(home = %dir.home, entry = %name, error = %e,
                        "partial sweep: could not remove");
                    report.failed += 1;
                }
            }
        }
        if removed {
            report.removed += 1;
        }
        drop(in_use);
        freed
    }
}
