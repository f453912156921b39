//! Homes kept in memory, for simulations and tests: the [`HomeStore`] of a
//! [`MemoryTree`], a small file system of directories and files (with hard links) under
//! the same policy as the disk tree. There are no symlinks to refuse.
//!
//! Times are the tree's [`Clock`] (Unix seconds; a simulation's virtual time). Files keep
//! their length apart from their bytes, so a partial file takes its upload's declared size
//! at once without holding it (sparse, zeros until written). Upload states are kept beside
//! the files, not as files: they weigh nothing and are never listed. A download reads the
//! file it opened: a later upload to the same path renames a new file over the name and
//! leaves it unchanged.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use vserv_core::transfer::UploadState;

use super::partials::PartialClaim;
use super::store::{
    Fault, HomeStore, Homes, Kind, Loc, Meta, PartialOpen, Removal, StoreError, StoredFile,
};
use super::transfer::{FileReader, PartialFile};
use super::tree::{TMP_PREFIX, Tree};
use super::{FileError, FilesConfig};
use crate::accounts::UserName;

/// Where a [`MemoryTree`] reads the time (Unix seconds) it stamps on changes.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The file tree of homes kept in memory.
pub type MemoryTree = Tree<MemoryHomes>;

impl Tree<MemoryHomes> {
    /// An empty tree stamping changes with the wall clock.
    pub fn new(config: FilesConfig) -> MemoryTree {
        Self::with_clock(config, Arc::new(crate::unix_now))
    }

    /// An empty tree stamping changes with `clock` (a simulation's virtual time).
    pub fn with_clock(config: FilesConfig, clock: Clock) -> MemoryTree {
        Tree::with_store(
            MemoryHomes {
                shared: Arc::new(Shared {
                    homes: Mutex::new(BTreeMap::new()),
                    clock,
                    inodes: AtomicU64::new(1),
                }),
            },
            config,
        )
    }
}

/// A file's content and times, shared by its names and the handles open on it.
#[derive(Debug)]
struct Inode {
    /// The bytes written; beyond them, up to `len`, the file reads as zeros.
    data: Vec<u8>,
    len: u64,
    ino: u64,
    created: u64,
    modified: u64,
}

impl Inode {
    fn meta(&self) -> Meta {
        Meta {
            kind: Kind::File,
            len: self.len,
            allocated: self.data.len() as u64,
            ino: self.ino,
            modified: Some(at_secs(self.modified)),
            created: Some(at_secs(self.created)),
        }
    }

    /// Fills `buf` from `offset`; `false` if that reads past the end.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> bool {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return false;
        }
        buf.fill(0);
        if let Ok(start) = usize::try_from(offset)
            && let Some(held) = self.data.get(start..)
        {
            let n = held.len().min(buf.len());
            buf[..n].copy_from_slice(&held[..n]);
        }
        true
    }
}

type SharedInode = Arc<Mutex<Inode>>;

#[derive(Debug, Clone)]
enum Node {
    Dir { created: u64, modified: u64 },
    File(SharedInode),
}

#[derive(Debug)]
struct Home {
    created: u64,
    /// Every directory and file below the root, by names from the root.
    nodes: BTreeMap<Vec<String>, Node>,
    /// Saved upload states, by the names they were saved as.
    states: BTreeMap<Vec<String>, Vec<u8>>,
}

impl Home {
    /// Checks that every directory on the way to `names` is one.
    fn check_way(&self, names: &[String]) -> Result<(), StoreError> {
        for depth in 1..names.len() {
            match self.nodes.get(&names[..depth]) {
                Some(Node::Dir { .. }) => {}
                Some(Node::File(_)) => return Err(walk(depth, Fault::NotADirectory)),
                None => return Err(walk(depth, Fault::Missing)),
            }
        }
        Ok(())
    }

    /// Whether `names` is a directory (the root is).
    fn is_dir(&self, names: &[String]) -> bool {
        names.is_empty() || matches!(self.nodes.get(names), Some(Node::Dir { .. }))
    }

    /// The names strictly below `names`, in order.
    fn below(&self, names: &[String]) -> Vec<Vec<String>> {
        self.nodes
            .range(names.to_vec()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(names))
            .filter(|k| k.len() > names.len())
            .cloned()
            .collect()
    }
}

struct Shared {
    homes: Mutex<BTreeMap<String, Home>>,
    clock: Clock,
    inodes: AtomicU64,
}

/// Homes in memory, shared with the partial files they opened.
pub struct MemoryHomes {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryHomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHomes").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn walk(depth: usize, fault: Fault) -> StoreError {
    StoreError::Walk { depth, fault }
}

fn at_secs(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn dir_meta(created: u64, modified: u64) -> Meta {
    Meta {
        kind: Kind::Dir,
        len: 0,
        allocated: 0,
        ino: 0,
        modified: Some(at_secs(modified)),
        created: Some(at_secs(created)),
    }
}

impl Shared {
    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Runs `f` on home `home`, which must exist.
    fn with_home<T>(
        &self,
        home: &str,
        f: impl FnOnce(&mut Home) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut homes = lock(&self.homes);
        let home = homes.get_mut(home).ok_or(walk(0, Fault::Missing))?;
        f(home)
    }

    /// Runs `f` on the home of `at` with `at`'s way checked (a root location refused).
    fn with_entry<T>(
        &self,
        at: &Loc,
        f: impl FnOnce(&mut Home) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if at.names.is_empty() {
            return Err(ErrorKind::InvalidInput.into());
        }
        self.with_home(&at.home, |home| {
            home.check_way(&at.names)?;
            f(home)
        })
    }

    fn new_inode(&self, data: Vec<u8>) -> SharedInode {
        let now = self.now();
        Arc::new(Mutex::new(Inode {
            len: data.len() as u64,
            data,
            ino: self.inodes.fetch_add(1, Ordering::Relaxed),
            created: now,
            modified: now,
        }))
    }
}

impl HomeStore for MemoryHomes {
    fn homes(&self) -> Result<Homes, StoreError> {
        Ok(Homes {
            names: lock(&self.shared.homes).keys().cloned().collect(),
            unreadable: 0,
        })
    }

    fn open_home(&self, home: &str) -> Result<(), StoreError> {
        let now = self.shared.now();
        lock(&self.shared.homes)
            .entry(home.to_owned())
            .or_insert_with(|| Home {
                created: now,
                nodes: BTreeMap::new(),
                states: BTreeMap::new(),
            });
        Ok(())
    }

    fn archive_home(&self, home: &UserName, _tag: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.shared.homes).remove(home.as_str()).is_some())
    }

    fn metadata(&self, at: &Loc) -> Result<Option<Meta>, StoreError> {
        self.shared.with_home(&at.home, |home| {
            if at.names.is_empty() {
                return Ok(Some(dir_meta(home.created, home.created)));
            }
            home.check_way(&at.names)?;
            Ok(home.nodes.get(&at.names).map(|node| match node {
                Node::Dir { created, modified } => dir_meta(*created, *modified),
                Node::File(inode) => lock(inode).meta(),
            }))
        })
    }

    fn list(&self, at: &Loc) -> Result<Vec<(String, Meta)>, StoreError> {
        self.shared.with_home(&at.home, |home| {
            home.check_way(&at.names)?;
            if !home.is_dir(&at.names) {
                return Err(match home.nodes.get(&at.names) {
                    Some(_) => walk(at.names.len(), Fault::NotADirectory),
                    None => ErrorKind::NotFound.into(),
                });
            }
            let depth = at.names.len() + 1;
            Ok(home
                .below(&at.names)
                .into_iter()
                .filter(|k| k.len() == depth)
                .filter_map(|k| {
                    let meta = match home.nodes.get(&k)? {
                        Node::Dir { created, modified } => dir_meta(*created, *modified),
                        Node::File(inode) => lock(inode).meta(),
                    };
                    Some((k.last()?.clone(), meta))
                })
                .collect())
        })
    }

    fn create_dir(&self, at: &Loc) -> Result<(), StoreError> {
        let now = self.shared.now();
        self.shared.with_entry(at, |home| {
            if home.nodes.contains_key(&at.names) {
                return Err(ErrorKind::AlreadyExists.into());
            }
            home.nodes.insert(
                at.names.clone(),
                Node::Dir {
                    created: now,
                    modified: now,
                },
            );
            Ok(())
        })
    }

    fn remove(&self, at: &Loc, how: Removal) -> Result<(), StoreError> {
        self.shared.with_entry(at, |home| {
            let below = home.below(&at.names);
            match (home.nodes.get(&at.names), how) {
                (None, _) => return Err(ErrorKind::NotFound.into()),
                (Some(Node::Dir { .. }), Removal::File) => {
                    return Err(ErrorKind::IsADirectory.into());
                }
                (Some(Node::File(_)), Removal::EmptyDir) => {
                    return Err(ErrorKind::NotADirectory.into());
                }
                (Some(Node::Dir { .. }), Removal::EmptyDir) if !below.is_empty() => {
                    return Err(ErrorKind::DirectoryNotEmpty.into());
                }
                _ => {}
            }
            for k in below {
                home.nodes.remove(&k);
            }
            home.nodes.remove(&at.names);
            home.states.retain(|k, _| !k.starts_with(&at.names));
            Ok(())
        })
    }

    fn rename(&self, from: &Loc, to: &Loc) -> Result<(), StoreError> {
        if from.home != to.home {
            return Err(ErrorKind::CrossesDevices.into());
        }
        self.shared.with_entry(from, |home| {
            home.check_way(&to.names)?;
            if to.names.is_empty() {
                return Err(ErrorKind::InvalidInput.into());
            }
            let moved_dir = match home.nodes.get(&from.names) {
                None => return Err(ErrorKind::NotFound.into()),
                Some(Node::Dir { .. }) => true,
                Some(Node::File(_)) => false,
            };
            if from.names == to.names {
                return Ok(());
            }
            if to.names.starts_with(&from.names) {
                return Err(ErrorKind::InvalidInput.into());
            }
            match home.nodes.get(&to.names) {
                None => {}
                Some(Node::File(_)) if !moved_dir => {}
                Some(Node::File(_)) => return Err(ErrorKind::NotADirectory.into()),
                Some(Node::Dir { .. }) => return Err(ErrorKind::AlreadyExists.into()),
            }
            let mut keys = home.below(&from.names);
            keys.insert(0, from.names.clone());
            let rebase = |k: &[String]| {
                let mut names = to.names.clone();
                names.extend_from_slice(&k[from.names.len()..]);
                names
            };
            for k in keys {
                if let Some(node) = home.nodes.remove(&k) {
                    home.nodes.insert(rebase(&k), node);
                }
            }
            let states: Vec<Vec<String>> = home
                .states
                .keys()
                .filter(|k| k.starts_with(&from.names))
                .cloned()
                .collect();
            for k in states {
                if let Some(state) = home.states.remove(&k) {
                    home.states.insert(rebase(&k), state);
                }
            }
            Ok(())
        })
    }

    fn hard_link(&self, from: &Loc, to: &Loc) -> Result<(), StoreError> {
        if from.home != to.home {
            return Err(ErrorKind::CrossesDevices.into());
        }
        self.shared.with_entry(from, |home| {
            home.check_way(&to.names)?;
            if to.names.is_empty() || home.nodes.contains_key(&to.names) {
                return Err(ErrorKind::AlreadyExists.into());
            }
            match home.nodes.get(&from.names) {
                Some(Node::File(inode)) => {
                    let linked = Node::File(inode.clone());
                    home.nodes.insert(to.names.clone(), linked);
                    Ok(())
                }
                Some(Node::Dir { .. }) => Err(ErrorKind::IsADirectory.into()),
                None => Err(ErrorKind::NotFound.into()),
            }
        })
    }

    fn read(&self, at: &Loc) -> Result<Vec<u8>, StoreError> {
        self.shared
            .with_entry(at, |home| match home.nodes.get(&at.names) {
                Some(Node::File(inode)) => {
                    let inode = lock(inode);
                    let mut data = inode.data.clone();
                    let len = usize::try_from(inode.len).map_err(|_| ErrorKind::OutOfMemory)?;
                    data.resize(len, 0);
                    Ok(data)
                }
                Some(Node::Dir { .. }) => Err(ErrorKind::IsADirectory.into()),
                None => Err(ErrorKind::NotFound.into()),
            })
    }

    fn write_temp(&self, dir: &Loc, data: &[u8], _durable: bool) -> Result<String, StoreError> {
        let inode = self.shared.new_inode(data.to_vec());
        self.shared.with_home(&dir.home, |home| {
            home.check_way(&dir.names)?;
            if !home.is_dir(&dir.names) {
                return Err(ErrorKind::NotFound.into());
            }
            for _ in 0..64 {
                let n = self.shared.inodes.fetch_add(1, Ordering::Relaxed);
                let name = format!("{TMP_PREFIX}0-{n}");
                let mut names = dir.names.clone();
                names.push(name.clone());
                if let Entry::Vacant(slot) = home.nodes.entry(names) {
                    slot.insert(Node::File(inode));
                    return Ok(name);
                }
            }
            Err(ErrorKind::AlreadyExists.into())
        })
    }

    fn sync_dir(&self, at: &Loc) -> Result<(), StoreError> {
        self.shared
            .with_home(&at.home, |home| home.check_way(&at.names))
    }

    fn free_space(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    fn open_partial(&self, p: PartialOpen<'_>) -> Result<Box<dyn PartialFile>, StoreError> {
        let fresh = self.shared.new_inode(Vec::new());
        let inode = self
            .shared
            .with_entry(p.file, |home| match home.nodes.get(&p.file.names) {
                Some(Node::File(inode)) => Ok(inode.clone()),
                Some(Node::Dir { .. }) => Err(ErrorKind::IsADirectory.into()),
                None => {
                    home.nodes
                        .insert(p.file.names.clone(), Node::File(fresh.clone()));
                    Ok(fresh)
                }
            })?;
        {
            let mut file = lock(&inode);
            if p.fresh {
                file.data.clear();
            }
            file.data
                .truncate(usize::try_from(p.size).unwrap_or(usize::MAX));
            file.len = p.size;
            file.modified = self.shared.now();
        }
        Ok(Box::new(MemPartial {
            inode,
            shared: self.shared.clone(),
            state: p.state.clone(),
            _claim: p.claim,
            shown: p.shown,
        }))
    }

    fn read_state(&self, state: &Loc) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.with_home(&state.home, |home| {
            Ok(home.states.get(&state.names).cloned())
        })
    }

    fn remove_state(&self, state: &Loc) -> Result<(), StoreError> {
        self.shared.with_home(&state.home, |home| {
            home.states.remove(&state.names);
            Ok(())
        })
    }

    fn open_read(&self, at: &Loc) -> Result<Box<dyn StoredFile>, StoreError> {
        self.shared
            .with_entry(at, |home| match home.nodes.get(&at.names) {
                Some(Node::File(inode)) => {
                    let meta = lock(inode).meta();
                    Ok(Box::new(MemFile {
                        inode: inode.clone(),
                        meta,
                    }) as Box<dyn StoredFile>)
                }
                Some(Node::Dir { .. }) => Err(ErrorKind::IsADirectory.into()),
                None => Err(ErrorKind::NotFound.into()),
            })
    }
}

/// An upload's partial file in memory: the file it opened, whatever its name becomes.
struct MemPartial {
    inode: SharedInode,
    shared: Arc<Shared>,
    /// Where its checkpoints save the upload state.
    state: Loc,
    /// Keeps the sweep away while the upload has the file open.
    _claim: PartialClaim,
    shown: String,
}

impl std::fmt::Debug for MemPartial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemPartial")
            .field("shown", &self.shown)
            .finish_non_exhaustive()
    }
}

impl MemPartial {
    /// The file, stamped as written now.
    fn written(&self) -> MutexGuard<'_, Inode> {
        let mut inode = lock(&self.inode);
        inode.modified = self.shared.now();
        inode
    }

    fn too_far(&self) -> FileError {
        FileError::Io {
            path: self.shown.clone(),
            source: std::io::Error::other("offset beyond memory"),
        }
    }
}

impl PartialFile for MemPartial {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError> {
        let start = usize::try_from(offset).map_err(|_| self.too_far())?;
        let end = start
            .checked_add(data.len())
            .ok_or_else(|| self.too_far())?;
        let mut inode = self.written();
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[start..end].copy_from_slice(data);
        inode.len = inode.len.max(end as u64);
        Ok(())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        let inode = lock(&self.inode);
        let n = usize::try_from(inode.len.saturating_sub(offset))
            .map_or(buf.len(), |left| left.min(buf.len()));
        if !inode.read_exact_at(offset, &mut buf[..n]) {
            return Ok(0);
        }
        Ok(n)
    }

    fn set_len(&mut self, len: u64) -> Result<(), FileError> {
        let mut inode = self.written();
        inode
            .data
            .truncate(usize::try_from(len).unwrap_or(usize::MAX));
        inode.len = len;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), FileError> {
        Ok(())
    }

    fn checkpoint(&mut self, state: &UploadState) -> Result<(), FileError> {
        drop(self.written());
        self.shared
            .with_home(&self.state.home, |home| {
                home.states
                    .insert(self.state.names.clone(), state.encode().to_vec());
                Ok(())
            })
            .map_err(|_| FileError::NotFound(format!("the partial upload of {}", self.shown)))
    }
}

/// A file opened for download.
#[derive(Debug)]
struct MemFile {
    inode: SharedInode,
    meta: Meta,
}

impl StoredFile for MemFile {
    fn meta(&self) -> Meta {
        self.meta
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        if lock(&self.inode).read_exact_at(offset, buf) {
            Ok(())
        } else {
            Err(ErrorKind::UnexpectedEof.into())
        }
    }

    fn into_reader(self: Box<Self>, shown: String) -> Box<dyn FileReader> {
        Box::new(MemReader {
            inode: self.inode,
            shown,
        })
    }
}

/// A download's reader of the file it opened.
#[derive(Debug)]
struct MemReader {
    inode: SharedInode,
    shown: String,
}

impl FileReader for MemReader {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FileError> {
        if lock(&self.inode).read_exact_at(offset, buf) {
            Ok(())
        } else {
            Err(FileError::Io {
                path: self.shown.clone(),
                source: ErrorKind::UnexpectedEof.into(),
            })
        }
    }
}
