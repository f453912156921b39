//! Homes kept in memory, for simulations and tests. Same rules as [`super::DiskTree`]
//! (there are no symlinks to refuse).
//!
//! Partial uploads live beside the homes, keyed by owner and path, stamped with the time
//! they were last written; like the disk tree's, each counts toward its owner's quota at its
//! declared size from `fopen` until it is committed, discarded or swept (the home keeps
//! that size by path); [`FileTree::sweep_partials`]
//! drops those not written within the expiry unless an upload holds them open. A download
//! reads from a copy of the file taken at `fget` (everything is in memory here anyway).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use vserv_core::commands::{DirEntry, FileKind, FileStat};
use vserv_core::transfer::{FileHasher, UploadState};

use super::transfer::{FileReader, OpenedFile, OpenedPartial, PartialFile};
use super::{
    FileError, FileTree, FilesConfig, PartialSweep, UserPath, check_quota, check_record_names,
};
use crate::accounts::UserName;

/// Where a [`MemoryTree`] reads the time (Unix seconds) it stamps on changes.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

#[derive(Debug, Clone)]
enum Node {
    Dir {
        modified: u64,
        created: u64,
    },
    File {
        data: Vec<u8>,
        modified: u64,
        created: u64,
        /// Recorded by an upload, or computed by the first download.
        sha256: Option<[u8; 32]>,
    },
}

#[derive(Debug, Default)]
struct Home {
    /// Every file and directory but the root, by path.
    nodes: BTreeMap<UserPath, Node>,
    /// Kept versions by file path, newest first.
    versions: BTreeMap<UserPath, VecDeque<Vec<u8>>>,
    /// Hidden records by directory, store and name (see [`FileTree::read_record`]).
    records: BTreeMap<(UserPath, String, String), Vec<u8>>,
    /// The declared sizes of the partial uploads, by target path, counted by the quota.
    partials: BTreeMap<UserPath, u64>,
}

impl Home {
    /// The node at `path` (`None` if nothing is there); every directory on the way must
    /// exist.
    fn locate(&self, path: &UserPath) -> Result<Option<&Node>, FileError> {
        let names = path.names();
        for i in 1..names.len() {
            let prefix = UserPath::from_names(names[..i].to_vec())?;
            match self.nodes.get(&prefix) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File { .. }) => {
                    return Err(FileError::NotADirectory(prefix.to_string()));
                }
                None => return Err(FileError::NotFound(prefix.to_string())),
            }
        }
        Ok(self.nodes.get(path))
    }

    fn is_dir(&self, path: &UserPath) -> Result<bool, FileError> {
        if path.is_root() {
            return Ok(true);
        }
        match self.locate(path)? {
            Some(Node::Dir { .. }) => Ok(true),
            Some(Node::File { .. }) => Ok(false),
            None => Err(FileError::NotFound(path.to_string())),
        }
    }

    /// Paths strictly inside `dir`.
    fn descendants<'a>(&'a self, dir: &'a UserPath) -> impl Iterator<Item = &'a UserPath> + 'a {
        self.nodes
            .range(dir.clone()..)
            .map(|(p, _)| p)
            .take_while(move |p| p.starts_with(dir))
            .filter(move |p| *p != dir)
    }

    fn usage(&self) -> u64 {
        let files = self.nodes.values().map(|n| match n {
            Node::File { data, .. } => data.len() as u64,
            Node::Dir { .. } => 0,
        });
        let versions = self.versions.values().flatten().map(|v| v.len() as u64);
        let partials = self.partials.values().copied();
        files
            .chain(versions)
            .chain(partials)
            .fold(0u64, u64::saturating_add)
    }

    /// Keeps the current content of `path` as its newest version (or drops it).
    fn rotate(&mut self, path: &UserPath, data: Vec<u8>, keep: u32) {
        if keep == 0 {
            return;
        }
        let versions = self.versions.entry(path.clone()).or_default();
        versions.push_front(data);
        versions.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
    }

    fn rotation_frees(&self, path: &UserPath, current: u64, keep: u32) -> u64 {
        if keep == 0 {
            return current;
        }
        self.versions.get(path).map_or(0, |v| {
            v.iter()
                .skip(
                    usize::try_from(keep)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(1),
                )
                .map(|d| d.len() as u64)
                .sum()
        })
    }
}

/// An upload's partial file in memory.
#[derive(Debug, Default)]
struct MemPartial {
    data: Vec<u8>,
    state: Option<UploadState>,
    /// When the data or the state was last written (Unix seconds of the tree's clock).
    modified: u64,
}

/// A partial upload, shared by the tree and the upload's handle.
type SharedPartial = Arc<Mutex<MemPartial>>;

/// The handle an upload writes through. While one exists the partial upload is open (the
/// sweep sees a second reference to it and leaves it alone).
struct MemPartialFile {
    partial: SharedPartial,
    /// Stamps the writes.
    clock: Clock,
}

impl std::fmt::Debug for MemPartialFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemPartialFile")
            .field("partial", &self.partial)
            .finish_non_exhaustive()
    }
}

impl MemPartialFile {
    /// The partial upload, stamped as written now.
    fn written(&self) -> MutexGuard<'_, MemPartial> {
        let mut p = lock(&self.partial);
        p.modified = (self.clock)();
        p
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `offset..offset + len` as memory indices.
fn span(offset: u64, len: usize) -> Result<(usize, usize), FileError> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| Some((start, start.checked_add(len)?)))
        .ok_or_else(|| FileError::Io {
            path: "a partial upload".into(),
            source: std::io::Error::other("offset beyond memory"),
        })
}

impl PartialFile for MemPartialFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError> {
        let (start, end) = span(offset, data.len())?;
        let mut p = self.written();
        if p.data.len() < end {
            p.data.resize(end, 0);
        }
        p.data[start..end].copy_from_slice(data);
        Ok(())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        let p = lock(&self.partial);
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = p.data.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn set_len(&mut self, len: u64) -> Result<(), FileError> {
        let (_, end) = span(len, 0)?;
        self.written().data.resize(end, 0);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), FileError> {
        Ok(())
    }

    fn checkpoint(&mut self, state: &UploadState) -> Result<(), FileError> {
        self.written().state = Some(*state);
        Ok(())
    }
}

/// A download's copy of the file.
#[derive(Debug)]
struct MemReader {
    data: Vec<u8>,
    path: UserPath,
}

impl FileReader for MemReader {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FileError> {
        let (start, end) = span(offset, buf.len())?;
        let src = self.data.get(start..end).ok_or_else(|| FileError::Io {
            path: self.path.to_string(),
            source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Homes in memory.
pub struct MemoryTree {
    homes: Mutex<BTreeMap<UserName, Home>>,
    partials: Mutex<BTreeMap<(UserName, UserPath), SharedPartial>>,
    config: FilesConfig,
    clock: Clock,
}

impl std::fmt::Debug for MemoryTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTree")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MemoryTree {
    /// An empty tree stamping changes with the wall clock.
    pub fn new(config: FilesConfig) -> MemoryTree {
        Self::with_clock(config, Arc::new(crate::unix_now))
    }

    /// An empty tree stamping changes with `clock` (a simulation's virtual time).
    pub fn with_clock(config: FilesConfig, clock: Clock) -> MemoryTree {
        MemoryTree {
            homes: Mutex::new(BTreeMap::new()),
            partials: Mutex::new(BTreeMap::new()),
            config,
            clock,
        }
    }

    /// Runs `f` on `owner`'s home (created on first use).
    fn with_home<T>(&self, owner: &UserName, f: impl FnOnce(&mut Home) -> T) -> T {
        let mut homes = lock(&self.homes);
        f(homes.entry(owner.clone()).or_default())
    }
}

impl FileTree for MemoryTree {
    fn config(&self) -> FilesConfig {
        self.config
    }

    fn list(&self, owner: &UserName, dir: &UserPath) -> Result<Vec<DirEntry>, FileError> {
        self.with_home(owner, |home| {
            if !home.is_dir(dir)? {
                return Err(FileError::NotADirectory(dir.to_string()));
            }
            let depth = dir.names().len() + 1;
            let mut entries: Vec<DirEntry> = home
                .descendants(dir)
                .filter(|p| p.names().len() == depth)
                .filter_map(|p| {
                    let name = p.file_name()?.to_owned();
                    Some(match home.nodes.get(p)? {
                        Node::Dir { modified, .. } => DirEntry {
                            name,
                            kind: FileKind::Dir,
                            size: 0,
                            modified: *modified,
                        },
                        Node::File { data, modified, .. } => DirEntry {
                            name,
                            kind: FileKind::File,
                            size: data.len() as u64,
                            modified: *modified,
                        },
                    })
                })
                .collect();
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
    }

    fn stat(&self, owner: &UserName, path: &UserPath) -> Result<FileStat, FileError> {
        self.with_home(owner, |home| {
            if path.is_root() {
                return Ok(FileStat {
                    kind: FileKind::Dir,
                    size: 0,
                    modified: 0,
                    created: None,
                    sha256: None,
                });
            }
            match home.locate(path)? {
                Some(Node::Dir { modified, created }) => Ok(FileStat {
                    kind: FileKind::Dir,
                    size: 0,
                    modified: *modified,
                    created: Some(*created),
                    sha256: None,
                }),
                Some(Node::File {
                    data,
                    modified,
                    created,
                    sha256,
                }) => Ok(FileStat {
                    kind: FileKind::File,
                    size: data.len() as u64,
                    modified: *modified,
                    created: Some(*created),
                    sha256: *sha256,
                }),
                None => Err(FileError::NotFound(path.to_string())),
            }
        })
    }

    fn mkdir(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        let now = (self.clock)();
        self.with_home(owner, |home| {
            if path.is_root() || home.locate(path)?.is_some() {
                return Err(FileError::Exists(path.to_string()));
            }
            home.nodes.insert(
                path.clone(),
                Node::Dir {
                    modified: now,
                    created: now,
                },
            );
            Ok(())
        })
    }

    fn rmdir(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        if path.is_root() {
            return Err(FileError::Root);
        }
        self.with_home(owner, |home| {
            if !home.is_dir(path)? {
                return Err(FileError::NotADirectory(path.to_string()));
            }
            if home.descendants(path).next().is_some() {
                return Err(FileError::NotEmpty(path.to_string()));
            }
            home.nodes.remove(path);
            home.records.retain(|(dir, _, _), _| dir != path);
            Ok(())
        })
    }

    fn delete_file(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        self.with_home(owner, |home| {
            if home.is_dir(path)? {
                return Err(FileError::IsADirectory(path.to_string()));
            }
            home.nodes.remove(path);
            home.versions.remove(path);
            Ok(())
        })
    }

    fn rename(&self, owner: &UserName, from: &UserPath, to: &UserPath) -> Result<(), FileError> {
        if from.is_root() || to.is_root() {
            return Err(FileError::Root);
        }
        let keep = self.config.versions;
        self.with_home(owner, |home| {
            let from_dir = home.is_dir(from)?;
            if from == to {
                return Ok(());
            }
            if from_dir && to.starts_with(from) {
                return Err(FileError::IntoItself {
                    from: from.to_string(),
                    to: to.to_string(),
                });
            }
            match home.locate(to)? {
                None => {}
                Some(_) if from_dir => return Err(FileError::Exists(to.to_string())),
                Some(Node::Dir { .. }) => return Err(FileError::IsADirectory(to.to_string())),
                Some(Node::File { data, .. }) => {
                    let data = data.clone();
                    home.rotate(to, data, keep);
                }
            }
            // The node and everything below it, with their versions.
            let moved: Vec<UserPath> = std::iter::once(from.clone())
                .chain(home.descendants(from).cloned())
                .collect();
            let mut renamed = Vec::with_capacity(moved.len());
            for old in &moved {
                let mut names = to.names().to_vec();
                names.extend_from_slice(&old.names()[from.names().len()..]);
                renamed.push(UserPath::from_names(names)?);
            }
            for (old, new) in moved.iter().zip(renamed) {
                if let Some(node) = home.nodes.remove(old) {
                    home.nodes.insert(new.clone(), node);
                }
                let versions = home.versions.remove(old);
                if from_dir && let Some(v) = versions {
                    home.versions.insert(new.clone(), v);
                }
                // A directory's hidden records move with it.
                let records: Vec<_> = home
                    .records
                    .keys()
                    .filter(|(d, _, _)| d == old)
                    .cloned()
                    .collect();
                for key in records {
                    if let Some(data) = home.records.remove(&key) {
                        home.records.insert((new.clone(), key.1, key.2), data);
                    }
                }
            }
            Ok(())
        })
    }

    fn usage(&self, owner: &UserName) -> Result<u64, FileError> {
        Ok(self.with_home(owner, |home| home.usage()))
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
        let now = (self.clock)();
        let config = self.config;
        self.with_home(owner, |home| {
            let (freed, old, created) = match home.locate(path)? {
                Some(Node::Dir { .. }) => return Err(FileError::IsADirectory(path.to_string())),
                Some(Node::File { data, created, .. }) => (
                    home.rotation_frees(path, data.len() as u64, config.versions),
                    Some(data.clone()),
                    *created,
                ),
                None => (0, None, now),
            };
            check_quota(config, home.usage(), freed, data.len() as u64)?;
            if let Some(old) = old {
                home.rotate(path, old, config.versions);
            }
            home.nodes.insert(
                path.clone(),
                Node::File {
                    data: data.to_vec(),
                    modified: now,
                    created,
                    sha256: None,
                },
            );
            Ok(())
        })
    }

    fn read_file(&self, owner: &UserName, path: &UserPath) -> Result<Vec<u8>, FileError> {
        self.with_home(owner, |home| match home.locate(path)? {
            Some(Node::File { data, .. }) => Ok(data.clone()),
            Some(Node::Dir { .. }) => Err(FileError::IsADirectory(path.to_string())),
            None => Err(FileError::NotFound(path.to_string())),
        })
    }

    fn read_version(
        &self,
        owner: &UserName,
        path: &UserPath,
        n: u32,
    ) -> Result<Vec<u8>, FileError> {
        self.with_home(owner, |home| {
            home.locate(path)?;
            let index = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
            home.versions
                .get(path)
                .zip(index)
                .and_then(|(v, i)| v.get(i))
                .cloned()
                .ok_or_else(|| FileError::NotFound(format!("version {n} of {path}")))
        })
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
        let config = self.config;
        // The map stays locked until the handle is taken: the sweep cannot drop the partial
        // upload (and its count) between the two.
        let mut partials = lock(&self.partials);
        self.with_home(owner, |home| {
            let freed = match home.locate(path)? {
                Some(Node::Dir { .. }) => return Err(FileError::IsADirectory(path.to_string())),
                Some(Node::File { data, .. }) => {
                    home.rotation_frees(path, data.len() as u64, config.versions)
                }
                None => 0,
            };
            // The partial upload there before is replaced by this one.
            let old = home.partials.get(path).copied().unwrap_or(0);
            check_quota(config, home.usage(), freed.saturating_add(old), size)?;
            home.partials.insert(path.clone(), size);
            Ok(())
        })?;
        let partial = partials
            .entry((owner.clone(), path.clone()))
            .or_default()
            .clone();
        drop(partials);
        let saved = {
            let mut p = lock(&partial);
            p.modified = (self.clock)();
            let saved = p.state.filter(|s| resume && s.size == size);
            if saved.is_none() {
                p.data.clear();
                p.state = None;
            }
            saved
        };
        Ok(OpenedPartial {
            file: Box::new(MemPartialFile {
                partial,
                clock: self.clock.clone(),
            }),
            saved,
        })
    }

    fn commit_partial(
        &self,
        owner: &UserName,
        path: &UserPath,
        _file: &mut dyn PartialFile,
        sha256: &[u8; 32],
    ) -> Result<(), FileError> {
        if path.is_root() {
            return Err(FileError::Root);
        }
        let key = (owner.clone(), path.clone());
        let partial = lock(&self.partials)
            .get(&key)
            .cloned()
            .ok_or_else(|| FileError::NotFound(format!("the partial upload of {path}")))?;
        let mut p = lock(&partial);
        let now = (self.clock)();
        let config = self.config;
        // No quota check: the partial upload was counted at its full size since `fopen`, so
        // making it the file only frees (the versions that fall off).
        self.with_home(owner, |home| {
            let (old, created) = match home.locate(path)? {
                Some(Node::Dir { .. }) => return Err(FileError::IsADirectory(path.to_string())),
                Some(Node::File { data, created, .. }) => (Some(data.clone()), *created),
                None => (None, now),
            };
            home.partials.remove(path);
            if let Some(old) = old {
                home.rotate(path, old, config.versions);
            }
            home.nodes.insert(
                path.clone(),
                Node::File {
                    data: std::mem::take(&mut p.data),
                    modified: now,
                    created,
                    sha256: Some(*sha256),
                },
            );
            Ok(())
        })?;
        drop(p);
        lock(&self.partials).remove(&key);
        Ok(())
    }

    fn discard_partial(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        let mut partials = lock(&self.partials);
        partials.remove(&(owner.clone(), path.clone()));
        self.with_home(owner, |home| home.partials.remove(path));
        drop(partials);
        Ok(())
    }

    fn sweep_partials(&self, now: SystemTime, expiry: Duration) -> Result<PartialSweep, FileError> {
        let mut report = PartialSweep::default();
        if expiry.is_zero() {
            return Ok(report);
        }
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // The map stays locked: `open_partial` takes its handle under the same lock, so the
        // reference count below cannot rise between the check and the removal.
        let mut partials = lock(&self.partials);
        let mut removed = Vec::new();
        partials.retain(|(owner, path), partial| {
            let p = lock(partial);
            if Duration::from_secs(now.saturating_sub(p.modified)) <= expiry {
                return true;
            }
            // The map holds one reference; every other one is an upload's open handle.
            if Arc::strong_count(partial) > 1 {
                tracing::debug!(user = %owner, path = %path,
                    "partial sweep: an expired partial upload is open, kept");
                report.in_use += 1;
                return true;
            }
            report.removed += 1;
            report.bytes = report.bytes.saturating_add(p.data.len() as u64);
            tracing::debug!(user = %owner, path = %path, "partial sweep: removed an expired partial upload");
            removed.push((owner.clone(), path.clone()));
            false
        });
        // Still under the map's lock: no upload reopens them before they stop counting.
        for (owner, path) in removed {
            self.with_home(&owner, |home| home.partials.remove(&path));
        }
        drop(partials);
        Ok(report)
    }

    fn owners(&self) -> Result<Vec<UserName>, FileError> {
        Ok(lock(&self.homes).keys().cloned().collect())
    }

    fn archive_home(&self, owner: &UserName, _tag: &str) -> Result<bool, FileError> {
        lock(&self.partials).retain(|(o, _), _| o != owner);
        Ok(lock(&self.homes).remove(owner).is_some())
    }

    fn read_record(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, FileError> {
        check_record_names(store, Some(name))?;
        self.with_home(owner, |home| {
            if !home.is_dir(dir)? {
                return Err(FileError::NotADirectory(dir.to_string()));
            }
            let key = (dir.clone(), store.to_owned(), name.to_owned());
            Ok(home.records.get(&key).cloned())
        })
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
        self.with_home(owner, |home| {
            if !home.is_dir(dir)? {
                return Err(FileError::NotADirectory(dir.to_string()));
            }
            let key = (dir.clone(), store.to_owned(), name.to_owned());
            home.records.insert(key, data.to_vec());
            Ok(())
        })
    }

    fn list_records(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<Vec<String>, FileError> {
        check_record_names(store, None)?;
        self.with_home(owner, |home| {
            if !home.is_dir(dir)? {
                return Err(FileError::NotADirectory(dir.to_string()));
            }
            Ok(home
                .records
                .keys()
                .filter(|(d, st, _)| d == dir && st == store)
                .map(|(_, _, name)| name.clone())
                .collect())
        })
    }

    fn open_read(&self, owner: &UserName, path: &UserPath) -> Result<OpenedFile, FileError> {
        self.with_home(owner, |home| {
            home.locate(path)?;
            match home.nodes.get_mut(path) {
                Some(Node::File { data, sha256, .. }) => {
                    let sha = *sha256.get_or_insert_with(|| {
                        let mut hasher = FileHasher::new();
                        hasher.update(data);
                        hasher.finish()
                    });
                    Ok(OpenedFile {
                        size: data.len() as u64,
                        sha256: sha,
                        reader: Box::new(MemReader {
                            data: data.clone(),
                            path: path.clone(),
                        }),
                    })
                }
                Some(Node::Dir { .. }) => Err(FileError::IsADirectory(path.to_string())),
                None if path.is_root() => Err(FileError::IsADirectory(path.to_string())),
                None => Err(FileError::NotFound(path.to_string())),
            }
        })
    }
}
