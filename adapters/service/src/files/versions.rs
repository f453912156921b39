//! Kept versions, part of [`Tree`]'s policy: file `dir/name` keeps version `n` (1 the
//! newest) at `dir/.vserv-versions/name/n`. Overwriting a file (an upload, a whole-file
//! write or `mv` over it) makes its previous content the newest version and drops those
//! beyond [`FilesConfig::versions`](super::FilesConfig::versions); deleting or moving a
//! file drops its own.

use super::store::{Fault, HomeStore, Loc, Meta, Removal, StoreError};
use super::tree::Tree;
use super::{FileError, UserPath};
use crate::accounts::UserName;

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
}
