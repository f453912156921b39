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
//! (1 the newest) at `dir/.vserv-versions/name/n`. Whole-file writes go to a hidden
//! temporary file (`.vserv-tmp-...`) in the target's directory and are renamed into place.
//!
//! Streamed uploads (`fopen`/`fput`/`fdone`) write a partial file in the home's hidden
//! `.vserv-partial/` directory, named by the hex SHA-256 of the target's path, with its
//! saved upload state (spec/files.md §5.1) in `<name>.state`; `fdone` hard-links the old
//! file into its versions and renames the partial file over it (one atomic rename). The
//! verified SHA-256 of an uploaded file is kept in `dir/.vserv-sha256/name` together with
//! the file's size, inode and modification time, and is believed only while they still
//! match (so a file replaced by other means never reports a stale hash); `mv` carries it
//! along, and `fget` of a file without one hashes the file and records it. These hidden
//! files do not count toward the quota, nor do saved states and temporary files.
//!
//! Usage: each home's count of files, kept versions and partial files (a partial file takes
//! its upload's declared size at `fopen`, sparse until written) is kept in memory by
//! [`super::usage`], built by one walk of the home at its first use, and changed under the
//! home's lock by every operation that changes them; quota checks read it in O(1). The
//! walk skips entries that vanish under it. A crash between a change and its count is
//! harmless: the next start counts again from the disk.
//!
//! Free space: an upload (or whole-file write) is refused with [`FileError::DiskFull`]
//! when the homes' file system would be left with less than the reserve
//! ([`DiskTree::with_min_free_bytes`]) free, before any of its data is accepted.
//!
//! [`FileTree::sweep_partials`] deletes, in every home's `.vserv-partial/`, the partial
//! uploads (partial file and state, judged by the newer of their modification times), the
//! orphaned halves of such pairs, and the leftover temporary files of state writes, once
//! none was modified within the expiry. It reads the homes without creating any, never
//! follows a symlink and never removes anything but regular files with those names in that
//! directory. Partial files held open by an upload are registered in the tree (by
//! [`FileTree::open_partial`], before it touches them, until the upload's handle is
//! dropped); the sweep decides and deletes each entry under the same registry lock, so an
//! upload's partial file is never deleted while the upload has it open, and an upload
//! opened just after an expired partial file was deleted simply starts at 0.
//!
//! Hidden records ([`FileTree::read_record`]) of store `S` of directory `dir` are the
//! files `dir/S/NAME`; they do not count toward the quota either.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use vserv_core::commands::{DirEntry, FileKind, FileStat};
use vserv_core::transfer::{FileHasher, UploadState};

use super::budget::{
    BufferBudget, DEFAULT_TRANSFER_BUFFERS, DOWNLOAD_BUFFERS, Reservation, UPLOAD_BUFFERS,
};
use super::direct::{DirectWriter, ReadAhead};
use super::path::{check_name, is_reserved};
use super::transfer::{FileReader, OpenedFile, OpenedPartial, PartialFile, READ_CHUNK};
use super::usage::{Usage, UsageCounters};
use super::write_behind::WriteBehind;
use super::{
    FileError, FileTree, FilesConfig, PartialSweep, UserPath, check_quota, check_record_names,
};
use crate::accounts::UserName;
use crate::work::{Inline, Runner};

/// The hidden directory holding a directory's kept versions.
const VERSIONS_DIR: &str = ".vserv-versions";

/// Prefix of the temporary files of uploads.
const TMP_PREFIX: &str = ".vserv-tmp-";

/// The home's hidden directory of partial uploads.
const PARTIAL_DIR: &str = ".vserv-partial";

/// The hidden directory holding a directory's recorded SHA-256 sidecars.
const SHA_DIR: &str = ".vserv-sha256";

/// Length of a SHA-256 sidecar: the hash, then size, inode, mtime seconds and nanoseconds
/// of the file it describes (8 bytes each, big-endian).
const SIDECAR_LEN: usize = 32 + 4 * 8;

/// Numbers the temporary files of atomic small writes.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Whether `name` is exactly a temporary file's name as [`write_atomic`] forms it:
/// [`TMP_PREFIX`], decimal digits (a process id), `-`, decimal digits (a counter).
fn is_tmp_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix(TMP_PREFIX)
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Creates a new temporary file (mode 0600) in `dir`, named as [`is_tmp_name`] says. A name
/// already taken (left by a crashed process whose id this one reuses, as pid 1 in a container
/// does) is passed over for the next number, never removed or written.
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

/// Writes `bytes` to `target` through a temporary file in the same directory and a rename;
/// with `durable`, fsynced first.
fn write_atomic(target: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = target.parent().ok_or(ErrorKind::NotFound)?;
    let (tmp, mut file) = create_temp(dir)?;
    let written = (|| {
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&tmp, target)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Makes sure `dir` is a directory (created, mode 0700, if missing), never a symlink.
fn ensure_private_dir(dir: &Path, path: &UserPath) -> Result<(), FileError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => {
            Err(FileError::Symlink(format!("the hidden files of {path}")))
        }
        Ok(_) => Err(FileError::NotADirectory(format!(
            "the hidden files of {path}"
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound => match create_private_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_error(path)(e)),
        },
        Err(e) => Err(io_error(path)(e)),
    }
}

/// The metadata of `p` if something is there; a symlink is refused.
fn no_symlink(p: &Path, path: &UserPath) -> Result<Option<fs::Metadata>, FileError> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => {
            Err(FileError::Symlink(format!("a hidden file of {path}")))
        }
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Removes file `p`; nothing there is fine.
fn remove_if_there(p: &Path, path: &UserPath) -> Result<(), FileError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Where file `real`'s SHA-256 sidecar lives.
fn sidecar_path(real: &Path) -> Option<PathBuf> {
    Some(real.parent()?.join(SHA_DIR).join(real.file_name()?))
}

/// What a sidecar records of the file besides its hash.
fn file_identity(meta: &fs::Metadata) -> [u8; SIDECAR_LEN - 32] {
    let mut out = [0u8; SIDECAR_LEN - 32];
    out[..8].copy_from_slice(&meta.size().to_be_bytes());
    out[8..16].copy_from_slice(&meta.ino().to_be_bytes());
    out[16..24].copy_from_slice(&meta.mtime().to_be_bytes());
    out[24..].copy_from_slice(&meta.mtime_nsec().to_be_bytes());
    out
}

/// The recorded SHA-256 of file `real` (with metadata `meta`), if a sidecar still matches it.
fn read_sidecar(real: &Path, meta: &fs::Metadata) -> Option<[u8; 32]> {
    let p = sidecar_path(real)?;
    if !fs::symlink_metadata(p.parent()?).ok()?.is_dir()
        || !fs::symlink_metadata(&p).ok()?.is_file()
    {
        return None;
    }
    let bytes = fs::read(&p).ok()?;
    let (sha, identity) = bytes.split_first_chunk::<32>()?;
    (identity == file_identity(meta)).then_some(*sha)
}

/// Records `sha256` as the hash of file `real` (with metadata `meta`).
fn write_sidecar(
    real: &Path,
    meta: &fs::Metadata,
    sha256: &[u8; 32],
    path: &UserPath,
) -> Result<(), FileError> {
    let p = sidecar_path(real).ok_or_else(|| FileError::NotFound(path.to_string()))?;
    if let Some(dir) = p.parent() {
        ensure_private_dir(dir, path)?;
    }
    no_symlink(&p, path)?;
    let mut bytes = [0u8; SIDECAR_LEN];
    bytes[..32].copy_from_slice(sha256);
    bytes[32..].copy_from_slice(&file_identity(meta));
    write_atomic(&p, &bytes, false).map_err(io_error(path))
}

/// Drops file `real`'s sidecar, if any (and the sidecar directory if that empties it).
fn remove_sidecar(real: &Path) {
    if let Some(p) = sidecar_path(real) {
        let _ = fs::remove_file(&p);
        if let Some(dir) = p.parent() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Moves file `from`'s sidecar to file `to` (which replaced whatever was there).
fn move_sidecar(from: &Path, to: &Path, path: &UserPath) {
    let (Some(src), Some(dst)) = (sidecar_path(from), sidecar_path(to)) else {
        return;
    };
    let moved = match fs::symlink_metadata(&src) {
        Ok(m) if m.is_file() => dst
            .parent()
            .map(|d| ensure_private_dir(d, path))
            .transpose()
            .is_ok_and(|_| fs::rename(&src, &dst).is_ok()),
        _ => false,
    };
    if !moved {
        let _ = fs::remove_file(&dst);
    }
    if let Some(dir) = src.parent() {
        let _ = fs::remove_dir(dir);
    }
}

/// The file name of the partial upload to `path`: the hex SHA-256 of the path.
fn partial_name(path: &UserPath) -> String {
    let mut hasher = FileHasher::new();
    hasher.update(path.to_string().as_bytes());
    hex::encode(hasher.finish())
}

/// The partial files an upload has open (real path → number of open handles), shared by
/// a tree and the handles it gave out.
type InUse = Arc<Mutex<BTreeMap<PathBuf, usize>>>;

fn lock_in_use(in_use: &InUse) -> MutexGuard<'_, BTreeMap<PathBuf, usize>> {
    in_use.lock().unwrap_or_else(|e| e.into_inner())
}

/// Marks a partial file as open by an upload until dropped: the sweep leaves it alone.
#[derive(Debug)]
struct PartialClaim {
    in_use: InUse,
    partial: PathBuf,
}

impl PartialClaim {
    fn new(in_use: &InUse, partial: &Path) -> PartialClaim {
        *lock_in_use(in_use).entry(partial.to_owned()).or_insert(0) += 1;
        PartialClaim {
            in_use: in_use.clone(),
            partial: partial.to_owned(),
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

/// Whether `name` is a partial file's name: 64 lower-case hex digits.
fn is_partial_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The files of the partial-directory entry `name` belongs to, which the sweep judges and
/// removes together: a partial file and its state, or a temporary file alone. `None` for a
/// name the server does not make there (left alone).
fn sweep_group(name: &str) -> Option<Vec<String>> {
    let base = name.strip_suffix(".state").unwrap_or(name);
    if is_partial_name(base) {
        Some(vec![base.to_owned(), format!("{base}.state")])
    } else if name.starts_with(TMP_PREFIX) {
        Some(vec![name.to_owned()])
    } else {
        None
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
    path: UserPath,
}

impl PartialFile for DiskPartial {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError> {
        self.file
            .write_at(offset, data)
            .map_err(io_error(&self.path))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                other => return other.map_err(io_error(&self.path)),
            }
        }
    }

    fn set_len(&mut self, len: u64) -> Result<(), FileError> {
        self.file.set_len(len).map_err(io_error(&self.path))
    }

    fn sync(&mut self) -> Result<(), FileError> {
        self.file.sync_data().map_err(io_error(&self.path))
    }

    fn checkpoint(&mut self, state: &UploadState) -> Result<(), FileError> {
        self.sync()?;
        no_symlink(&self.state, &self.path)?;
        write_atomic(&self.state, &state.encode(), true).map_err(io_error(&self.path))
    }
}

/// A file open for download.
#[derive(Debug)]
struct DiskReader {
    /// Read ahead through the tree's runner, past the page cache where possible.
    file: ReadAhead,
    /// Its share of the transfer-buffer budget, if it got one.
    _buffers: Option<Reservation>,
    path: UserPath,
}

impl FileReader for DiskReader {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FileError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(io_error(&self.path))
    }
}

/// SHA-256 of the `size` bytes of `file`, read in [`READ_CHUNK`]s.
fn hash_file(file: &fs::File, size: u64, path: &UserPath) -> Result<[u8; 32], FileError> {
    let mut hasher = FileHasher::new();
    let mut buf = vec![0; READ_CHUNK];
    let mut at = 0u64;
    while at < size {
        let want = usize::try_from(size - at).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        file.read_exact_at(&mut buf[..want], at)
            .map_err(io_error(path))?;
        hasher.update(&buf[..want]);
        at += want as u64;
    }
    Ok(hasher.finish())
}

/// The free space the server keeps on its homes' file system unless configured otherwise
/// (`[files] min_free_bytes`, applied with [`DiskTree::with_min_free_bytes`]): 1 GiB, room
/// for the store (its journal, compactions and the ledger) to go on working and for the
/// uploads already accepted to finish, however full the homes get.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 1 << 30;

/// Homes under `<data dir>/homes/`, created (mode 0700) on first use.
#[derive(Debug)]
pub struct DiskTree {
    homes: PathBuf,
    config: FilesConfig,
    /// Partial files open by uploads (see [`FileTree::sweep_partials`]).
    in_use: InUse,
    /// Buffers of uploads written behind and downloads read ahead, server-wide.
    buffers: BufferBudget,
    /// Each home's bytes counted toward its quota, and the per-user lock of its changes.
    usage: UsageCounters,
    /// Free space on the homes' file system that uploads never take.
    min_free: u64,
    /// Runs uploads' writes and downloads' reads ahead, behind the connections.
    runner: Arc<dyn Runner>,
}

/// Which of a home's directories [`count_home`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// The home's root: like `Plain`, and its partial uploads count.
    Root,
    /// A client's directory: its files count, its hidden entries do not (but versions).
    Plain,
    /// Under a `.vserv-versions` directory: every regular file counts.
    Versions,
    /// The home's `.vserv-partial`: partial files count (at their length, their upload's
    /// declared size), saved states and temporary files do not.
    Partial,
}

/// The bytes the home at `home` counts toward its quota: every file of the client's
/// directories, every kept version and every partial upload; the server's hidden files
/// (SHA-256 sidecars, saved upload states, records, temporary files) are not counted.
/// Entries that vanish during the walk (a temporary file renamed into place) are skipped;
/// symlinks are never followed.
fn count_home(home: &Path) -> std::io::Result<u64> {
    count_dir(home, Counted::Root)
}

/// [`count_home`] from directory `dir`, of kind `kind`.
fn count_dir(dir: &Path, kind: Counted) -> std::io::Result<u64> {
    let gone = |e: &std::io::Error| e.kind() == ErrorKind::NotFound;
    let mut total = 0u64;
    let mut stack = vec![(dir.to_owned(), kind)];
    while let Some((dir, kind)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            let name = entry.file_name();
            let name = name.to_str();
            // `DirEntry::metadata` does not follow symlinks.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            let hidden = name.is_none_or(is_reserved);
            let inner = match kind {
                Counted::Versions => Some(Counted::Versions),
                Counted::Partial => None,
                Counted::Root | Counted::Plain if !hidden => Some(Counted::Plain),
                Counted::Root if name == Some(PARTIAL_DIR) => Some(Counted::Partial),
                Counted::Root | Counted::Plain if name == Some(VERSIONS_DIR) => {
                    Some(Counted::Versions)
                }
                Counted::Root | Counted::Plain => continue,
            };
            if meta.is_dir() {
                if let Some(inner) = inner {
                    stack.push((entry.path(), inner));
                }
            } else if meta.is_file()
                && (kind != Counted::Partial || name.is_some_and(is_partial_name))
            {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
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
            in_use: InUse::default(),
            buffers: BufferBudget::new(DEFAULT_TRANSFER_BUFFERS),
            usage: UsageCounters::default(),
            min_free: 0,
            runner: Arc::new(Inline),
        };
        tree.check_homes()?;
        Ok(tree)
    }

    /// The same tree with a budget of `bytes` for transfer buffers (default
    /// [`DEFAULT_TRANSFER_BUFFERS`]): transfers opened once it is spent run unbuffered.
    pub fn with_buffer_budget(mut self, bytes: usize) -> Self {
        self.buffers = BufferBudget::new(bytes);
        self
    }

    /// The same tree running its uploads' writes and downloads' reads ahead through
    /// `runner` (default [`Inline`]: written through, read on demand), so that they
    /// overlap the connections.
    pub fn with_runner(mut self, runner: Arc<dyn Runner>) -> Self {
        self.runner = runner;
        self
    }

    /// The same tree keeping `bytes` free on the homes' file system (a tree keeps none until
    /// this is called; the server's default is [`DEFAULT_MIN_FREE_BYTES`]; 0 turns the
    /// reserve off): an upload (or whole-file write)
    /// of `n` bytes is refused with [`FileError::DiskFull`] before any of its data is
    /// accepted when less than `n + bytes` are free.
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

    /// Runs `f` with `owner`'s usage count under the home's lock (see [`UsageCounters`]).
    fn counted<T>(
        &self,
        owner: &UserName,
        f: impl FnOnce(&mut Usage) -> Result<T, FileError>,
    ) -> Result<T, FileError> {
        let home = self.home(owner)?;
        self.usage.with(
            owner,
            || count_home(&home).map_err(io_error(&UserPath::root())),
            f,
        )
    }

    /// Refuses writing `needed` bytes when that would leave less than the reserve free on
    /// the homes' file system (blocks available to unprivileged users).
    fn check_free(&self, needed: u64, path: &UserPath) -> Result<(), FileError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let stat = rustix::fs::statvfs(&self.homes)
            .map_err(|e| io_error(path)(std::io::Error::from(e)))?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < needed.saturating_add(self.min_free) {
            return Err(FileError::DiskFull {
                needed,
                free,
                reserve: self.min_free,
            });
        }
        Ok(())
    }

    /// Bytes of the transfer-buffer budget reserved by open transfers now.
    pub fn buffers_in_use(&self) -> usize {
        self.buffers.used()
    }

    /// A download's reader: read ahead if the buffer budget has room for it.
    fn reader(&self, file: fs::File, path: &UserPath) -> DiskReader {
        let buffers = self.buffers.try_reserve(DOWNLOAD_BUFFERS);
        DiskReader {
            file: if buffers.is_some() {
                ReadAhead::new(file, self.runner.clone())
            } else {
                ReadAhead::unbuffered(file)
            },
            _buffers: buffers,
            path: path.clone(),
        }
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

    /// The real path of the hidden record store `store` of directory `dir` (which must
    /// exist and be a directory).
    fn record_store(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<PathBuf, FileError> {
        let (real, meta) = self.existing(owner, dir)?;
        if !meta.is_dir() {
            return Err(FileError::NotADirectory(dir.to_string()));
        }
        Ok(real.join(store))
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

    /// The file a write of `owner`'s `path` replaces: its real path, its metadata (`None` when
    /// absent) and the bytes the replacement frees ([`DiskTree::rotation_frees`]); a
    /// directory there is refused.
    fn replacing(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<(PathBuf, Option<fs::Metadata>, u64), FileError> {
        let (real, meta) = self.locate(owner, path)?;
        let freed = match &meta {
            Some(m) if m.is_dir() => return Err(FileError::IsADirectory(path.to_string())),
            Some(m) => self.rotation_frees(&real, path, m.len())?,
            None => 0,
        };
        Ok((real, meta, freed))
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
        self.rotate_with(real, path, false)
    }

    /// Like [`DiskTree::rotate`], but with `link` the current file stays where it is and
    /// its newest version is a hard link to it (nothing happens when no versions are
    /// kept): a rename over `real` then replaces it atomically.
    fn rotate_with(&self, real: &Path, path: &UserPath, link: bool) -> Result<(), FileError> {
        let keep = self.config.versions;
        if keep == 0 && link {
            return Ok(());
        }
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
        if link {
            fs::hard_link(real, dir.join("1")).map_err(io_error(path))
        } else {
            fs::rename(real, dir.join("1")).map_err(io_error(path))
        }
    }

    /// The partial file and saved-state paths of the upload to `owner`'s `path` (the
    /// partial directory created if missing).
    fn partial_paths(
        &self,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<(PathBuf, PathBuf), FileError> {
        let dir = self.home(owner)?.join(PARTIAL_DIR);
        ensure_private_dir(&dir, path)?;
        let name = partial_name(path);
        Ok((dir.join(&name), dir.join(format!("{name}.state"))))
    }

    /// [`DiskTree::sweep_home`] of the home `entry` under its owner's lock, the count (if
    /// the home has one yet: the sweep never walks a home) lowered by the partial files
    /// removed. A directory not named by a user name in its normal form has no count: it
    /// is swept alone.
    fn sweep_counted(&self, entry: &fs::DirEntry, cutoff: SystemTime, report: &mut PartialSweep) {
        let home = entry.path();
        let owner = entry
            .file_name()
            .to_str()
            .and_then(|name| UserName::parse(name).ok().filter(|o| o.as_str() == name));
        let Some(owner) = owner else {
            self.sweep_home(&home, cutoff, report);
            return;
        };
        self.usage
            .with_freeing(&owner, || ((), self.sweep_home(&home, cutoff, report)));
    }

    /// Sweeps the partial directory of `home` (see [`FileTree::sweep_partials`]): every
    /// group of files not modified since `cutoff` and not open by an upload is removed.
    /// The bytes of the partial files removed (what the quota counted of them).
    fn sweep_home(&self, home: &Path, cutoff: SystemTime, report: &mut PartialSweep) -> u64 {
        let dir = home.join(PARTIAL_DIR);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                tracing::warn!(dir = %dir.display(),
                    "partial sweep: not a directory (or a symlink), left alone");
                report.failed += 1;
                return 0;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return 0,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "partial sweep: cannot examine");
                report.failed += 1;
                return 0;
            }
        }
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "partial sweep: cannot list");
                report.failed += 1;
                return 0;
            }
        };
        let mut groups = BTreeSet::new();
        for entry in entries {
            match entry {
                Ok(entry) => match entry.file_name().to_str().and_then(sweep_group) {
                    Some(group) => {
                        groups.insert(group);
                    }
                    None => tracing::debug!(entry = %entry.path().display(),
                        "partial sweep: unknown entry left alone"),
                },
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "partial sweep: cannot list");
                    report.failed += 1;
                }
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
        dir: &Path,
        names: &[String],
        cutoff: SystemTime,
        report: &mut PartialSweep,
    ) -> u64 {
        let in_use = lock_in_use(&self.in_use);
        let mut found = Vec::new();
        let mut newest: Option<SystemTime> = None;
        for name in names {
            let file = dir.join(name);
            let meta = match fs::symlink_metadata(&file) {
                Ok(m) if m.is_file() => m,
                Ok(_) => {
                    tracing::warn!(entry = %file.display(),
                        "partial sweep: not a regular file (or a symlink), left alone");
                    report.failed += 1;
                    return 0;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(entry = %file.display(), error = %e,
                        "partial sweep: cannot examine");
                    report.failed += 1;
                    return 0;
                }
            };
            let modified = match meta.modified() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(entry = %file.display(), error = %e,
                        "partial sweep: no modification time");
                    report.failed += 1;
                    return 0;
                }
            };
            newest = Some(newest.map_or(modified, |n| n.max(modified)));
            found.push((file, meta.len()));
        }
        let Some(newest) = newest else {
            return 0;
        };
        if newest >= cutoff {
            return 0;
        }
        if names
            .first()
            .is_some_and(|partial| in_use.contains_key(&dir.join(partial)))
        {
            tracing::debug!(dir = %dir.display(), name = ?names.first(),
                "partial sweep: an expired partial upload is open, kept");
            report.in_use += 1;
            return 0;
        }
        // The state first, so a partial file never looks resumable without it.
        found.reverse();
        let mut removed = false;
        let mut freed = 0u64;
        for (file, len) in found {
            match fs::remove_file(&file) {
                Ok(()) => {
                    removed = true;
                    report.bytes = report.bytes.saturating_add(len);
                    if file
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(is_partial_name)
                    {
                        freed = freed.saturating_add(len);
                    }
                    tracing::debug!(entry = %file.display(), bytes = len,
                        "partial sweep: removed an expired partial upload file");
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(entry = %file.display(), error = %e,
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

    /// The bytes of file `real`'s kept versions.
    fn versions_bytes(real: &Path, path: &UserPath) -> Result<u64, FileError> {
        Ok(Self::versions_of(real, path)?
            .iter()
            .fold(0u64, |sum, v| sum.saturating_add(v.2)))
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
        let (real, meta, freed) = self.replacing(owner, path)?;
        check_quota(self.config, usage.used(), freed, added)?;
        let dir = real
            .parent()
            .ok_or_else(|| FileError::NotFound(path.to_string()))?;
        let (tmp, mut file) = create_temp(dir).map_err(io_error(path))?;
        let written = (|| {
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
        fs::rename(&tmp, &real).map_err(io_error(path))?;
        usage.change(added, freed);
        remove_sidecar(&real);
        Ok(())
    }

    /// [`FileTree::open_partial`], `owner`'s count held: the partial file takes the upload's
    /// declared size at once (sparse until written) and is counted at it from here on.
    fn open_partial_counted(
        &self,
        usage: &mut Usage,
        owner: &UserName,
        path: &UserPath,
        size: u64,
        resume: bool,
    ) -> Result<OpenedPartial, FileError> {
        let (_, _, freed) = self.replacing(owner, path)?;
        let (partial, state) = self.partial_paths(owner, path)?;
        // Registered before the files are touched: the sweep leaves them alone from here on.
        let claim = PartialClaim::new(&self.in_use, &partial);
        // The old partial file (counted at its length) is replaced by `size` bytes; once
        // done the upload frees what its overwrite drops.
        let old = no_symlink(&partial, path)?;
        let old_len = old.as_ref().map_or(0, |m| m.len());
        no_symlink(&state, path)?;
        check_quota(
            self.config,
            usage.used(),
            freed.saturating_add(old_len),
            size,
        )?;
        // On the disk: what the old partial file does not already hold.
        let allocated = old.as_ref().map_or(0, |m| m.blocks().saturating_mul(512));
        self.check_free(size.saturating_sub(allocated), path)?;
        let saved = if resume {
            fs::read(&state)
                .ok()
                .and_then(|b| UploadState::decode(&b).ok())
                .filter(|s| s.size == size)
        } else {
            None
        };
        if saved.is_none() {
            remove_if_there(&state, path)?;
        }
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&partial).map_err(io_error(path))?;
        if saved.is_none() {
            file.set_len(0).map_err(io_error(path))?;
        }
        file.set_len(size).map_err(io_error(path))?;
        usage.change(size, old_len);
        let buffers = self.buffers.try_reserve(UPLOAD_BUFFERS);
        let buffered = buffers.is_some();
        let partial = DiskPartial {
            file: if buffered {
                DirectWriter::new(file, &partial)
            } else {
                DirectWriter::unbuffered(file)
            },
            _claim: claim,
            _buffers: buffers,
            state,
            path: path.clone(),
        };
        let file: Box<dyn PartialFile> = if buffered {
            // Written behind, through the runner: the connection goes on with the next chunks.
            Box::new(WriteBehind::new(
                Box::new(partial),
                path.to_string(),
                self.runner.clone(),
            ))
        } else {
            Box::new(partial)
        };
        Ok(OpenedPartial { file, saved })
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
        let (real, meta) = self.existing(owner, path)?;
        let dir = meta.is_dir();
        Ok(FileStat {
            kind: if dir { FileKind::Dir } else { FileKind::File },
            size: if dir { 0 } else { meta.len() },
            modified: unix_secs(meta.modified()).unwrap_or(0),
            created: unix_secs(meta.created()),
            sha256: if dir {
                None
            } else {
                read_sidecar(&real, &meta)
            },
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
        self.counted(owner, |usage| {
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
            // Versions left without their file are counted: they go with the directory.
            let mut freed = 0u64;
            for h in &hidden {
                if h.file_name().is_some_and(|n| n == VERSIONS_DIR)
                    && fs::symlink_metadata(h).is_ok_and(|m| m.is_dir())
                {
                    let bytes = count_dir(h, Counted::Versions).map_err(io_error(path))?;
                    freed = freed.saturating_add(bytes);
                }
            }
            for h in hidden {
                // `remove_dir_all` does not follow symlinks.
                let removed = match fs::symlink_metadata(&h) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&h),
                    _ => fs::remove_file(&h),
                };
                removed.map_err(io_error(path))?;
            }
            // Once the hidden entries are gone the count changes, whatever comes next.
            usage.change(0, freed);
            fs::remove_dir(&real).map_err(|e| match e.kind() {
                ErrorKind::DirectoryNotEmpty => FileError::NotEmpty(path.to_string()),
                _ => io_error(path)(e),
            })
        })
    }

    fn delete_file(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        self.counted(owner, |usage| {
            let (real, meta) = self.existing(owner, path)?;
            if meta.is_dir() {
                return Err(FileError::IsADirectory(path.to_string()));
            }
            let versions = Self::versions_bytes(&real, path)?;
            fs::remove_file(&real).map_err(io_error(path))?;
            remove_sidecar(&real);
            Self::drop_versions(&real, path)?;
            usage.change(0, meta.len().saturating_add(versions));
            Ok(())
        })
    }

    fn rename(&self, owner: &UserName, from: &UserPath, to: &UserPath) -> Result<(), FileError> {
        if from.is_root() || to.is_root() {
            return Err(FileError::Root);
        }
        self.counted(owner, |usage| {
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
            // Never grows the usage: the replaced file becomes a version (its oldest ones
            // falling off), and the moved file's own versions are dropped.
            let mut freed = match to_meta {
                None => 0,
                Some(_) if from_meta.is_dir() => return Err(FileError::Exists(to.to_string())),
                Some(m) if m.is_dir() => return Err(FileError::IsADirectory(to.to_string())),
                Some(m) => {
                    let frees = self.rotation_frees(&to_real, to, m.len())?;
                    self.rotate(&to_real, to)?;
                    frees
                }
            };
            if from_meta.is_file() {
                freed = freed.saturating_add(Self::versions_bytes(&from_real, from)?);
            }
            fs::rename(&from_real, &to_real).map_err(io_error(from))?;
            if from_meta.is_file() {
                move_sidecar(&from_real, &to_real, to);
                Self::drop_versions(&from_real, from)?;
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
        if path.is_root() {
            return Err(FileError::Root);
        }
        file.sync()?;
        // No quota check: the partial file was counted at its full size since `fopen`, so
        // making it the file only frees (the versions that fall off).
        let (real, state) = self.counted(owner, |usage| {
            let (real, meta, freed) = self.replacing(owner, path)?;
            let (partial, state) = self.partial_paths(owner, path)?;
            if no_symlink(&partial, path)?.is_none() {
                return Err(FileError::NotFound(format!("the partial upload of {path}")));
            }
            if meta.is_some() {
                self.rotate_with(&real, path, true)?;
            }
            fs::rename(&partial, &real).map_err(io_error(path))?;
            usage.change(0, freed);
            Ok((real, state))
        })?;
        // The count is right from the rename on: the rest runs without the user's lock, so
        // the user's other uploads do not wait for this fsync.
        remove_if_there(&state, path)?;
        if let Some(dir) = real.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error(path))?;
        }
        let recorded = fs::symlink_metadata(&real)
            .map_err(io_error(path))
            .and_then(|m| write_sidecar(&real, &m, sha256, path));
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record an uploaded file's SHA-256");
        }
        Ok(())
    }

    fn discard_partial(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError> {
        self.counted(owner, |usage| {
            let (partial, state) = self.partial_paths(owner, path)?;
            let len = no_symlink(&partial, path)?.map_or(0, |m| m.len());
            remove_if_there(&state, path)?;
            remove_if_there(&partial, path)?;
            usage.change(0, len);
            Ok(())
        })
    }
    fn sweep_partials(&self, now: SystemTime, expiry: Duration) -> Result<PartialSweep, FileError> {
        let mut report = PartialSweep::default();
        if expiry.is_zero() {
            return Ok(report);
        }
        let Some(cutoff) = now.checked_sub(expiry) else {
            return Ok(report);
        };
        self.check_homes()?;
        let entries = fs::read_dir(&self.homes).map_err(io_error(&UserPath::root()))?;
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, "partial sweep: could not read the homes directory");
                    report.failed += 1;
                    continue;
                }
            };
            // `DirEntry::file_type` does not follow symlinks; a symlinked home is never used.
            match entry.file_type() {
                Ok(t) if t.is_dir() => self.sweep_counted(&entry, cutoff, &mut report),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(home = %entry.path().display(), error = %e,
                        "partial sweep: could not examine a home");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    fn archive_home(&self, owner: &UserName, tag: &str) -> Result<bool, FileError> {
        self.check_homes()?;
        let archived = self.usage.with_home_moved(owner, || {
            super::archive::archive_home(&self.homes, owner, tag)
        })?;
        Ok(archived.is_some())
    }

    fn owners(&self) -> Result<Vec<UserName>, FileError> {
        self.check_homes()?;
        let entries = fs::read_dir(&self.homes).map_err(io_error(&UserPath::root()))?;
        let mut owners = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the homes directory");
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
                    continue;
                }
            }
            // Only names `home` would have created: a user name in its normal form.
            if let Some(owner) = entry
                .file_name()
                .to_str()
                .and_then(|name| UserName::parse(name).ok().filter(|o| o.as_str() == name))
            {
                owners.push(owner);
            }
        }
        owners.sort();
        Ok(owners)
    }

    fn read_record(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, FileError> {
        check_record_names(store, Some(name))?;
        let store_dir = self.record_store(owner, dir, store)?;
        if no_symlink(&store_dir, dir)?.is_none() {
            return Ok(None);
        }
        let record = store_dir.join(name);
        match no_symlink(&record, dir)? {
            None => Ok(None),
            Some(_) => fs::read(&record).map(Some).map_err(io_error(dir)),
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
        let store_dir = self.record_store(owner, dir, store)?;
        ensure_private_dir(&store_dir, dir)?;
        let record = store_dir.join(name);
        no_symlink(&record, dir)?;
        write_atomic(&record, data, true).map_err(io_error(dir))
    }

    fn list_records(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<Vec<String>, FileError> {
        check_record_names(store, None)?;
        let store_dir = self.record_store(owner, dir, store)?;
        if no_symlink(&store_dir, dir)?.is_none() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&store_dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            if let Some((name, meta)) = listed(&entry)
                && meta.is_file()
            {
                names.push(name);
            }
        }
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
        let store_dir = self.record_store(owner, dir, store)?;
        if no_symlink(&store_dir, dir)?.is_none() {
            return Ok(0);
        }
        let mut deleted = 0;
        for entry in fs::read_dir(&store_dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let is_tmp = entry.file_name().to_str().is_some_and(is_tmp_name);
            // `DirEntry::file_type` does not follow symlinks: only a regular file goes.
            if is_tmp && entry.file_type().map_err(io_error(dir))?.is_file() {
                remove_if_there(&entry.path(), dir)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn open_read(&self, owner: &UserName, path: &UserPath) -> Result<OpenedFile, FileError> {
        let (real, meta) = self.existing(owner, path)?;
        if meta.is_dir() {
            return Err(FileError::IsADirectory(path.to_string()));
        }
        let file = fs::File::open(&real).map_err(io_error(path))?;
        let opened = file.metadata().map_err(io_error(path))?;
        // Something was swapped in between the check and the open.
        if !opened.is_file() || opened.ino() != meta.ino() || opened.dev() != meta.dev() {
            return Err(FileError::Symlink(path.to_string()));
        }
        let size = opened.len();
        let sha256 = match read_sidecar(&real, &opened) {
            Some(sha) => sha,
            None => {
                let sha = hash_file(&file, size, path)?;
                if let Err(e) = write_sidecar(&real, &opened, &sha, path) {
                    tracing::warn!(error = %e, "could not record a file's SHA-256");
                }
                sha
            }
        };
        Ok(OpenedFile {
            reader: Box::new(self.reader(file, path)),
            size,
            sha256,
        })
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
