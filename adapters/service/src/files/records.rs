//! Hidden records, part of [`Tree`]'s policy: record `NAME` of store `S` of directory `dir`
//! is the file `dir/S/NAME`, never visible to clients, written atomically and durably
//! through a temporary file, gone with its directory, moved with it, and not counted
//! toward the quota.

use super::path::check_name;
use super::store::{HomeStore, Loc, Removal};
use super::tree::{Tree, is_tmp_name};
use super::{FileError, UserPath, check_record_names};
use crate::accounts::UserName;

impl<S: HomeStore> Tree<S> {
    /// The location of the hidden record store `store` of directory `dir` (which must
    /// exist and be a directory).
    pub(super) fn record_store(
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

    pub(super) fn read_record_in(
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

    pub(super) fn write_record_in(
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

    pub(super) fn list_records_in(
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

    pub(super) fn sweep_record_temps_in(
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
}
