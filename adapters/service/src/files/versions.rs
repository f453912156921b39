//! Kept versions, part of [`Tree`]'s policy: file `dir/name` keeps version `n` (1 the
//! newest) at `dir/.vserv-versions/name/n`. Overwriting a file (an upload, a whole-file
//! write or `mv` over it) makes its previous content the newest version and drops those
//! beyond [`FilesConfig::versions`](super::FilesConfig::versions); deleting or moving a
//! file drops its own. `versions` lists them and `restore` brings one back, the content it
//! replaces becoming the newest version in turn (so a restore is itself undoable).

use vserv_core::commands::VersionInfo;

use super::store::{Fault, HomeStore, Loc, Meta, Removal, StoreError};
use super::tree::{Tree, unix_secs};
use super::usage::Usage;
use super::{FileError, UserPath, check_quota};
use crate::accounts::UserName;

/// The name of the second link a restore makes of a version before the rotation: a
/// temporary file's name ([`super::tree::is_tmp_name`]) no write ever picks (process id 0).
const RESTORE_TMP: &str = ".vserv-tmp-0-0";

/// The hidden directory holding a directory's kept versions.
pub(super) const VERSIONS_DIR: &str = ".vserv-versions";

impl<S: HomeStore> Tree<S> {
    /// The versions directory of file `at` (`dir/.vserv-versions/name`), and the
    /// directory's versions root (`dir/.vserv-versions`).
    pub(super) fn versions_dir(at: &Loc) -> Option<(Loc, Loc)> {
        let name = at.file_name()?;
        let root = at.sibling(VERSIONS_DIR)?;
        Some((root.child(name), root))
    }

    /// The kept versions of file `at` as (number, location, size), any order.
    pub(super) fn versions_of(
        &self,
        at: &Loc,
        path: &UserPath,
    ) -> Result<Vec<(u32, Loc, u64)>, FileError> {
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
    pub(super) fn versions_bytes(&self, at: &Loc, path: &UserPath) -> Result<u64, FileError> {
        Ok(self
            .versions_of(at, path)?
            .iter()
            .fold(0u64, |sum, v| sum.saturating_add(v.2)))
    }

    /// Bytes the next rotation of `at`'s versions frees: the versions that fall off.
    pub(super) fn rotation_frees(
        &self,
        at: &Loc,
        path: &UserPath,
        current: u64,
    ) -> Result<u64, FileError> {
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
    pub(super) fn drop_versions(&self, at: &Loc, path: &UserPath) -> Result<(), FileError> {
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

    /// The kept versions of file `owner`'s `path`, newest first, each hashed (their SHA-256
    /// is not recorded). A directory is refused.
    pub(super) fn version_list(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<Vec<VersionInfo>, FileError> {
        let (at, meta) = self.existing(owner, path)?;
        if meta.is_dir() {
            return Err(FileError::IsADirectory(path.to_string()));
        }
        let mut versions = self.versions_of(&at, path)?;
        versions.sort_by_key(|v| v.0);
        versions
            .into_iter()
            .map(|(number, loc, _)| {
                let file = self.store.open_read(&loc).map_err(self.fail(&loc, path))?;
                let meta = file.meta();
                let sha256 = super::sidecar::hash_file(file.as_ref(), meta.len)
                    .map_err(self.fail(&loc, path))?;
                Ok(VersionInfo {
                    number,
                    size: meta.len,
                    modified: unix_secs(meta.modified).unwrap_or(0),
                    sha256,
                })
            })
            .collect()
    }

    /// Makes kept version `n` of file `path` its content, `owner`'s count held: the
    /// version is linked under a temporary name, the current content rotated into the
    /// versions (so it becomes version 1, and version `n` moves to `n + 1` or falls off),
    /// then the link renamed over the file. Refused, changing nothing, for a directory, a
    /// version that is not kept, or a result over the quota.
    pub(super) fn restore_counted(
        &self,
        usage: &mut Usage,
        owner: &UserName,
        path: &UserPath,
        n: u32,
    ) -> Result<(), FileError> {
        let (at, meta) = self.existing(owner, path)?;
        if meta.is_dir() {
            return Err(FileError::IsADirectory(path.to_string()));
        }
        let (_, version, size) = self
            .versions_of(&at, path)?
            .into_iter()
            .find(|v| v.0 == n)
            .ok_or_else(|| FileError::NoVersion {
                path: path.to_string(),
                version: n,
            })?;
        let freed = self.rotation_frees(&at, path, meta.len)?;
        check_quota(self.config, usage.used(), freed, size)?;
        let tmp = at
            .sibling(RESTORE_TMP)
            .ok_or_else(|| FileError::NotFound(path.to_string()))?;
        // A link left by a restore cut short by a crash.
        let _ = self.store.remove(&tmp, Removal::File);
        self.store
            .hard_link(&version, &tmp)
            .map_err(self.fail(&tmp, path))?;
        if let Err(e) = self.rotate(&at, path, false) {
            let _ = self.store.remove(&tmp, Removal::File);
            return Err(e);
        }
        self.store.rename(&tmp, &at).map_err(self.fail(&at, path))?;
        usage.change(size, freed);
        self.remove_sidecar(&at);
        Ok(())
    }
}
