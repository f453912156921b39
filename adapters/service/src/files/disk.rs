//! Homes on disk under `<data dir>/homes/<user>/`: the [`HomeStore`] of a [`DiskTree`].
//!
//! Symlinks are never followed: before any operation every component from `homes` down to
//! the target is checked with `symlink_metadata`, and a symlink anywhere (the `homes`
//! directory, a home, a directory on the way or the target itself) refuses the operation,
//! whether it points outside the home or inside it. Clients cannot create symlinks, so one
//! only exists if someone with access to the server's machine planted it; the check and
//! the use are not atomic against such a local attacker racing the server. Directories are
//! created mode 0700 and files mode 0600.
//!
//! Whole-file writes go to a hidden temporary file (`.vserv-tmp-<pid>-<n>`) in the target's
//! directory and are renamed into place. An upload's partial file is written in large
//! blocks bypassing the page cache where the file system allows ([`DirectWriter`]), behind
//! the connection on threads of its own ([`WriteBehind`]) while the server's transfer
//! buffer budget has room; a download is read ahead ([`ReadAhead`]) likewise. Upload
//! states are files beside their partial files, replaced atomically and durably.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vserv_core::transfer::UploadState;

use super::budget::{
    BufferBudget, DEFAULT_TRANSFER_BUFFERS, DOWNLOAD_BUFFERS, Reservation, UPLOAD_BUFFERS,
};
use super::direct::{DirectWriter, ReadAhead};
use super::partials::PartialClaim;
use super::store::{
    Fault, HomeStore, Homes, Kind, Loc, Meta, PartialOpen, Removal, StoreError, StoredFile,
};
use super::transfer::{FileReader, PartialFile};
use super::tree::{TMP_PREFIX, Tree};
use super::write_behind::WriteBehind;
use super::{FileError, FilesConfig};
use crate::accounts::UserName;
use crate::work::{Inline, Runner};

/// Numbers the temporary files of atomic small writes.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The free space the server keeps on its homes' file system unless configured otherwise
/// (`[files] min_free_bytes`, applied with [`Tree::with_min_free_bytes`]): 1 GiB, room
/// for the store (its journal, compactions and the ledger) to go on working and for the
/// uploads already accepted to finish, however full the homes get.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 1 << 30;

/// The file tree of homes under `<data dir>/homes/`.
pub type DiskTree = Tree<DiskHomes>;

/// The homes directory on disk, and the transfer-buffer budget of the streams it opens.
#[derive(Debug)]
pub struct DiskHomes {
    homes: PathBuf,
    /// Buffers of uploads written behind and downloads read ahead, server-wide.
    buffers: BufferBudget,
    /// Runs uploads' writes and downloads' reads ahead, behind the connections.
    runner: Arc<dyn Runner>,
}

impl Tree<DiskHomes> {
    /// Homes under `<data_dir>/homes/` (created, mode 0700, if missing). Refused if
    /// `homes` is a symlink or not a directory.
    pub fn open(data_dir: &Path, config: FilesConfig) -> Result<DiskTree, FileError> {
        let homes = data_dir.join("homes");
        let io = |source| FileError::Io {
            path: "/".into(),
            source,
        };
        match create_private_dir(&homes) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let store = DiskHomes {
            homes,
            buffers: BufferBudget::new(DEFAULT_TRANSFER_BUFFERS),
            runner: Arc::new(Inline),
        };
        match store.check_homes() {
            Ok(()) => {}
            Err(StoreError::Homes(Fault::Symlink)) => {
                return Err(FileError::Symlink("the homes directory".into()));
            }
            Err(StoreError::Homes(_)) => {
                return Err(FileError::NotADirectory("the homes directory".into()));
            }
            Err(StoreError::Io(e)) => return Err(io(e)),
            Err(StoreError::File(e)) => return Err(e),
            Err(e @ StoreError::Walk { .. }) => return Err(io(std::io::Error::other(e))),
        }
        Ok(Tree::with_store(store, config))
    }

    /// The same tree with a budget of `bytes` for transfer buffers (default
    /// [`DEFAULT_TRANSFER_BUFFERS`]): transfers opened once it is spent run unbuffered.
    pub fn with_buffer_budget(mut self, bytes: usize) -> Self {
        self.store.buffers = BufferBudget::new(bytes);
        self
    }

    /// The same tree running its uploads' writes and downloads' reads ahead through
    /// `runner` (default [`Inline`]: written through, read on demand), so that they
    /// overlap the connections.
    pub fn with_runner(mut self, runner: Arc<dyn Runner>) -> Self {
        self.store.runner = runner;
        self
    }

    /// Bytes of the transfer-buffer budget reserved by open transfers now.
    pub fn buffers_in_use(&self) -> usize {
        self.store.buffers.used()
    }

    /// Where the homes are.
    pub fn homes(&self) -> &Path {
        &self.store.homes
    }
}

/// Creates a new temporary file (mode 0600) in `dir`, named as
/// [`super::tree::is_tmp_name`] accepts. A name already taken (left by a crashed process
/// whose id this one reuses, as pid 1 in a container does) is passed over for the next
/// number, never removed or written.
fn create_temp(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let mut taken = None;
    for _ in 0..64 {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => taken = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(taken.unwrap_or_else(|| ErrorKind::AlreadyExists.into()))
}

/// Writes `bytes` as a new temporary file in `dir`; with `durable`, fsynced. Returns its
/// path; nothing is left behind on failure.
fn write_temp(dir: &Path, bytes: &[u8], durable: bool) -> std::io::Result<PathBuf> {
    let (tmp, mut file) = create_temp(dir)?;
    let written = (|| {
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        Ok(())
    })();
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes `bytes` to `target` through a temporary file in the same directory and a rename;
/// with `durable`, fsynced first.
fn write_atomic(target: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = target.parent().ok_or(ErrorKind::NotFound)?;
    let tmp = write_temp(dir, bytes, durable)?;
    let renamed = fs::rename(&tmp, target);
    if renamed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    renamed
}

/// Creates directory `dir` (mode 0700).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The [`Meta`] of `meta` (never of what a symlink points to).
fn meta_of(meta: &fs::Metadata) -> Meta {
    let kind = if meta.file_type().is_symlink() {
        Kind::Other
    } else if meta.is_dir() {
        Kind::Dir
    } else if meta.is_file() {
        Kind::File
    } else {
        Kind::Other
    };
    Meta {
        kind,
        len: meta.len(),
        allocated: meta.blocks().saturating_mul(512),
        ino: meta.ino(),
        modified: meta.modified().ok(),
        created: meta.created().ok(),
    }
}

/// Whether `name` is one plain name (no separator, not empty, `.` or `..`).
fn plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl DiskHomes {
    fn check_homes(&self) -> Result<(), StoreError> {
        match fs::symlink_metadata(&self.homes) {
            Ok(m) if m.file_type().is_symlink() => Err(StoreError::Homes(Fault::Symlink)),
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::Homes(Fault::NotADirectory)),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::Homes(Fault::Missing)),
            Err(e) => Err(e.into()),
        }
    }

    /// The real path of `at`'s parent directory, checked all the way down: the homes
    /// directory, the home and every directory on the way exist, are directories and are
    /// no symlinks. For the home's root: the home itself.
    fn parent_dir(&self, at: &Loc) -> Result<PathBuf, StoreError> {
        self.check_homes()?;
        if !plain(&at.home) || !at.names.iter().all(|n| plain(n)) {
            return Err(ErrorKind::InvalidInput.into());
        }
        let mut real = self.homes.join(&at.home);
        match fs::symlink_metadata(&real) {
            Ok(m) if m.file_type().is_symlink() => return Err(walk(0, Fault::Symlink)),
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(walk(0, Fault::NotADirectory)),
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(walk(0, Fault::Missing)),
            Err(e) => return Err(e.into()),
        }
        let Some((_, on_the_way)) = at.names.split_last() else {
            return Ok(real);
        };
        for (i, name) in on_the_way.iter().enumerate() {
            real.push(name);
            match fs::symlink_metadata(&real) {
                Ok(m) if m.file_type().is_symlink() => return Err(walk(i + 1, Fault::Symlink)),
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(walk(i + 1, Fault::NotADirectory)),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(walk(i + 1, Fault::Missing));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(real)
    }

    /// The real path of `at` (its parent checked as [`DiskHomes::parent_dir`] says) and
    /// its metadata, `None` when nothing is there; a symlink there is refused.
    fn resolve(&self, at: &Loc) -> Result<(PathBuf, Option<fs::Metadata>), StoreError> {
        let parent = self.parent_dir(at)?;
        let Some(name) = at.file_name() else {
            let meta = fs::symlink_metadata(&parent)?;
            return Ok((parent, Some(meta)));
        };
        let real = parent.join(name);
        match fs::symlink_metadata(&real) {
            Ok(m) if m.file_type().is_symlink() => Err(walk(at.names.len(), Fault::Symlink)),
            Ok(m) => Ok((real, Some(m))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok((real, None)),
            Err(e) => Err(e.into()),
        }
    }

    /// The real path of `at`, whose parent is checked; `at` itself is not looked at.
    fn path_of(&self, at: &Loc) -> Result<PathBuf, StoreError> {
        let parent = self.parent_dir(at)?;
        match at.file_name() {
            Some(name) => Ok(parent.join(name)),
            // The home's root is never removed, renamed or written as an entry.
            None => Err(ErrorKind::InvalidInput.into()),
        }
    }

    /// The real path of `at`, which must be there (a symlink refused).
    fn existing(&self, at: &Loc) -> Result<(PathBuf, fs::Metadata), StoreError> {
        match self.resolve(at)? {
            (real, Some(meta)) => Ok((real, meta)),
            (_, None) => Err(ErrorKind::NotFound.into()),
        }
    }
}

fn walk(depth: usize, fault: Fault) -> StoreError {
    StoreError::Walk { depth, fault }
}

impl HomeStore for DiskHomes {
    fn homes(&self) -> Result<Homes, StoreError> {
        self.check_homes()?;
        let mut homes = Homes::default();
        for entry in fs::read_dir(&self.homes)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the homes directory");
                    homes.unreadable += 1;
                    continue;
                }
            };
            // `DirEntry::file_type` does not follow symlinks; a symlinked home is never used.
            match entry.file_type() {
                Ok(t) if t.is_dir() => {}
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(home = %entry.path().display(), error = %e,
                        "could not examine a home");
                    homes.unreadable += 1;
                    continue;
                }
            }
            if let Ok(name) = entry.file_name().into_string() {
                homes.names.push(name);
            }
        }
        Ok(homes)
    }

    fn open_home(&self, home: &str) -> Result<(), StoreError> {
        let root = Loc::new(home, Vec::new());
        match self.parent_dir(&root) {
            Err(StoreError::Walk {
                depth: 0,
                fault: Fault::Missing,
            }) => {}
            other => return other.map(|_| ()),
        }
        match create_private_dir(&self.homes.join(home)) {
            Ok(()) => {
                tracing::info!(user = %home, "created home");
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn archive_home(&self, owner: &UserName, tag: &str) -> Result<bool, StoreError> {
        self.check_homes()?;
        Ok(super::archive::archive_home(&self.homes, owner, tag)?.is_some())
    }

    fn metadata(&self, at: &Loc) -> Result<Option<Meta>, StoreError> {
        Ok(self.resolve(at)?.1.as_ref().map(meta_of))
    }

    fn list(&self, at: &Loc) -> Result<Vec<(String, Meta)>, StoreError> {
        let (real, meta) = self.existing(at)?;
        if !meta.is_dir() {
            return Err(walk(at.names.len(), Fault::NotADirectory));
        }
        let gone = |e: &std::io::Error| e.kind() == ErrorKind::NotFound;
        let mut entries = Vec::new();
        for entry in fs::read_dir(&real)? {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // `DirEntry::metadata` does not follow symlinks.
            match entry.metadata() {
                Ok(meta) => entries.push((name, meta_of(&meta))),
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(entries)
    }

    fn create_dir(&self, at: &Loc) -> Result<(), StoreError> {
        Ok(create_private_dir(&self.path_of(at)?)?)
    }

    fn remove(&self, at: &Loc, how: Removal) -> Result<(), StoreError> {
        let real = self.path_of(at)?;
        match how {
            Removal::File => fs::remove_file(&real)?,
            Removal::EmptyDir => fs::remove_dir(&real)?,
            // `remove_dir_all` does not follow symlinks.
            Removal::All => match fs::symlink_metadata(&real)? {
                m if m.is_dir() => fs::remove_dir_all(&real)?,
                _ => fs::remove_file(&real)?,
            },
        }
        Ok(())
    }

    fn rename(&self, from: &Loc, to: &Loc) -> Result<(), StoreError> {
        Ok(fs::rename(self.path_of(from)?, self.path_of(to)?)?)
    }

    fn hard_link(&self, from: &Loc, to: &Loc) -> Result<(), StoreError> {
        Ok(fs::hard_link(self.path_of(from)?, self.path_of(to)?)?)
    }

    fn read(&self, at: &Loc) -> Result<Vec<u8>, StoreError> {
        let (real, _) = self.existing(at)?;
        Ok(fs::read(real)?)
    }

    fn write_temp(&self, dir: &Loc, data: &[u8], durable: bool) -> Result<String, StoreError> {
        let (real, meta) = self.existing(dir)?;
        if !meta.is_dir() {
            return Err(walk(dir.names.len(), Fault::NotADirectory));
        }
        let tmp = write_temp(&real, data, durable)?;
        tmp.file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| ErrorKind::InvalidData.into())
    }

    fn sync_dir(&self, at: &Loc) -> Result<(), StoreError> {
        let (real, _) = self.existing(at)?;
        Ok(fs::File::open(real).and_then(|d| d.sync_all())?)
    }

    fn free_space(&self) -> Result<Option<u64>, StoreError> {
        let stat = rustix::fs::statvfs(&self.homes).map_err(std::io::Error::from)?;
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }

    fn open_partial(&self, p: PartialOpen<'_>) -> Result<Box<dyn PartialFile>, StoreError> {
        let real = self.path_of(p.file)?;
        let state = self.path_of(p.state)?;
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&real)?;
        if p.fresh {
            file.set_len(0)?;
        }
        file.set_len(p.size)?;
        let buffers = self.buffers.try_reserve(UPLOAD_BUFFERS);
        let buffered = buffers.is_some();
        let partial = DiskPartial {
            file: if buffered {
                DirectWriter::new(file, &real)
            } else {
                DirectWriter::unbuffered(file)
            },
            _claim: p.claim,
            _buffers: buffers,
            state,
            shown: p.shown.clone(),
        };
        Ok(if buffered {
            // Written behind, through the runner: the connection goes on with the next chunks.
            Box::new(WriteBehind::new(
                Box::new(partial),
                p.shown,
                self.runner.clone(),
            ))
        } else {
            Box::new(partial)
        })
    }

    fn read_state(&self, state: &Loc) -> Result<Option<Vec<u8>>, StoreError> {
        match self.resolve(state) {
            Ok((real, Some(_))) => Ok(Some(fs::read(real)?)),
            Ok((_, None)) => Ok(None),
            Err(e) if e.is_missing() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remove_state(&self, state: &Loc) -> Result<(), StoreError> {
        let real = match self.resolve(state) {
            Ok((real, Some(_))) => real,
            Ok((_, None)) => return Ok(()),
            Err(e) if e.is_missing() => return Ok(()),
            Err(e) => return Err(e),
        };
        match fs::remove_file(real) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn open_read(&self, at: &Loc) -> Result<Box<dyn StoredFile>, StoreError> {
        let (real, meta) = self.existing(at)?;
        let file = fs::File::open(&real)?;
        let opened = file.metadata()?;
        // Something was swapped in between the check and the open.
        if !opened.is_file() || opened.ino() != meta.ino() || opened.dev() != meta.dev() {
            return Err(walk(at.names.len(), Fault::Symlink));
        }
        Ok(Box::new(DiskFile {
            meta: meta_of(&opened),
            file,
            buffers: self.buffers.clone(),
            runner: self.runner.clone(),
        }))
    }
}

/// An upload's partial file on disk.
#[derive(Debug)]
struct DiskPartial {
    /// Written in large blocks bypassing the page cache where the file system allows.
    file: DirectWriter,
    /// Keeps the sweep away while the upload has the file open.
    _claim: PartialClaim,
    /// Its share of the transfer-buffer budget, if it got one.
    _buffers: Option<Reservation>,
    /// Where its saved state goes.
    state: PathBuf,
    /// The target, for messages.
    shown: String,
}

impl DiskPartial {
    fn io(&self) -> impl FnOnce(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: self.shown.clone(),
            source,
        }
    }
}

impl PartialFile for DiskPartial {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError> {
        let written = self.file.write_at(offset, data);
        written.map_err(self.io())
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => return other.map_err(self.io()),
            }
        }
    }

    fn set_len(&mut self, len: u64) -> Result<(), FileError> {
        let done = self.file.set_len(len);
        done.map_err(self.io())
    }

    fn sync(&mut self) -> Result<(), FileError> {
        let done = self.file.sync_data();
        done.map_err(self.io())
    }

    fn checkpoint(&mut self, state: &UploadState) -> Result<(), FileError> {
        self.sync()?;
        if fs::symlink_metadata(&self.state).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(FileError::Symlink(format!(
                "a hidden file of {}",
                self.shown
            )));
        }
        write_atomic(&self.state, &state.encode(), true).map_err(self.io())
    }
}

/// A file opened for download, not yet read ahead.
#[derive(Debug)]
struct DiskFile {
    file: fs::File,
    meta: Meta,
    buffers: BufferBudget,
    runner: Arc<dyn Runner>,
}

impl StoredFile for DiskFile {
    fn meta(&self) -> Meta {
        self.meta
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        Ok(self.file.read_exact_at(buf, offset)?)
    }

    fn into_reader(self: Box<Self>, shown: String) -> Box<dyn FileReader> {
        let buffers = self.buffers.try_reserve(DOWNLOAD_BUFFERS);
        Box::new(DiskReader {
            file: if buffers.is_some() {
                ReadAhead::new(self.file, self.runner)
            } else {
                ReadAhead::unbuffered(self.file)
            },
            _buffers: buffers,
            shown,
        })
    }
}

/// A file open for download.
#[derive(Debug)]
struct DiskReader {
    /// Read ahead on a thread of its own, past the page cache where possible.
    file: ReadAhead,
    /// Its share of the transfer-buffer budget, if it got one.
    _buffers: Option<Reservation>,
    shown: String,
}

impl FileReader for DiskReader {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FileError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| FileError::Io {
                path: self.shown.clone(),
                source,
            })
    }

    fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>, FileError> {
        let mut data = Vec::with_capacity(len);
        self.file
            .read_append(&mut data, offset, len)
            .map_err(|source| FileError::Io {
                path: self.shown.clone(),
                source,
            })?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_name_left_by_an_earlier_process_is_passed_over_not_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let next = TMP_SEQ.load(Ordering::Relaxed);
        let planted: Vec<PathBuf> = (next..next + 20)
            .map(|n| {
                let path = dir
                    .path()
                    .join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
                fs::write(&path, b"left by a crash").expect("plant");
                path
            })
            .collect();
        let target = dir.path().join("state");
        write_atomic(&target, b"new", true).expect("written despite the leftovers");
        assert_eq!(fs::read(&target).expect("read"), b"new");
        for path in planted {
            assert_eq!(fs::read(&path).expect("kept"), b"left by a crash");
        }
    }
}
