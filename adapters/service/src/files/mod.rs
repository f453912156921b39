//! Per-user file trees (protocol.md §13.4): every user has a home, and every path a client
//! sends is resolved inside it.
//!
//! - [`path`]: client paths, parsed and validated without touching a file system.
//! - [`FileTree`]: what the service needs of a store of homes, implemented once by
//!   [`Tree`], the policy (quota, versions, records, SHA-256 sidecars, partial uploads and
//!   their expiry, usage counts), over a [`store::HomeStore`]: the narrow storage seam of
//!   primitive operations inside the homes. Two backends implement it: [`DiskTree`] under
//!   `<data dir>/homes/<user>/`, which never follows a symlink, and [`MemoryTree`] for
//!   simulations and tests.
//!
//! Overwriting a file keeps its previous contents as versions (the newest
//! [`FilesConfig::versions`]), hidden from clients; a per-user quota
//! ([`FilesConfig::quota`]) counts files, versions and partial uploads (each at its declared
//! size, from `fopen` until it is committed, discarded or swept). An upload is checked
//! once, at `fopen`, against what it will add once done (its size, less what its overwrite
//! drops and the partial upload it replaces); `fdone` only frees, so it is never refused for
//! the quota.
//!
//! Uploads and downloads ([`transfer`]) stream through [`FileTree::open_partial`],
//! [`FileTree::commit_partial`] and [`FileTree::open_read`]: no file is held whole in memory
//! (by the disk tree).
//!
//! Partial uploads left unclaimed are deleted by [`FileTree::sweep_partials`] once nothing
//! has written them for [`DEFAULT_PARTIAL_EXPIRY`] (or the configured expiry); the server
//! runs it at start and periodically.

mod archive;
pub mod budget;
pub mod delivery;
pub mod direct;
mod disk;
pub mod folder_setup;
mod memory;
mod partials;
pub mod path;
mod records;
mod sidecar;
pub mod store;
pub mod transfer;
mod tree;
mod usage;
mod versions;
pub(crate) mod write_behind;

pub use archive::DELETED_HOMES;
pub use disk::{DEFAULT_MIN_FREE_BYTES, DiskHomes, DiskTree};
pub use memory::{Clock, MemoryHomes, MemoryTree};
pub use path::{PathError, Target, UserPath};
pub use transfer::{
    FileReader, OpenedFile, OpenedPartial, PartialFile, TransferFailure, TransferGauge, Transfers,
    UploadLocks,
};
pub use tree::Tree;

use std::time::{Duration, SystemTime};

use vserv_core::commands::{DirEntry, FileStat, VersionInfo};

use crate::accounts::UserName;

/// How many previous versions an overwritten file keeps unless configured otherwise (as
/// PyvServ did).
pub const DEFAULT_VERSIONS: u32 = 3;

/// How long a partial upload may go unwritten before [`FileTree::sweep_partials`] deletes
/// it unless configured otherwise: 7 days.
pub const DEFAULT_PARTIAL_EXPIRY: Duration = Duration::from_secs(7 * 86_400);

/// What one [`FileTree::sweep_partials`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PartialSweep {
    /// Partial uploads removed: a partial file with its saved state, or either one alone
    /// (an orphan).
    pub removed: u64,
    /// The bytes those files held (their lengths, as the quota counts them).
    pub bytes: u64,
    /// Expired partial uploads kept because an upload has them open.
    pub in_use: u64,
    /// Homes or entries that could not be examined or removed (each logged); the sweep went
    /// on with the others.
    pub failed: u64,
}

/// Tunables of a file tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesConfig {
    /// Previous versions kept when a file is overwritten (by an upload or by `mv`); 0 keeps
    /// none.
    pub versions: u32,
    /// Per-user limit on the bytes of files, kept versions and partial uploads; `None` is
    /// unlimited.
    pub quota: Option<u64>,
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            versions: DEFAULT_VERSIONS,
            quota: None,
        }
    }
}

/// Why a file operation failed. Paths in messages are the client's view of them (from the
/// home's root), never the server's real paths.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The client path breaks the path rules.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Nothing at that path (or a directory on the way is missing).
    #[error("no such file or directory: {0}")]
    NotFound(String),
    /// Something is at that path already.
    #[error("already exists: {0}")]
    Exists(String),
    /// `rmdir` of a directory with entries.
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    /// A directory was needed.
    #[error("not a directory: {0}")]
    NotADirectory(String),
    /// A file was needed.
    #[error("is a directory: {0}")]
    IsADirectory(String),
    /// A symlink on the way: symlinks are never followed, wherever they point.
    #[error("refused: {0} is a symbolic link (symlinks are never followed)")]
    Symlink(String),
    /// `mv` of a directory into itself.
    #[error("cannot move {from} into itself ({to})")]
    IntoItself {
        /// The directory moved.
        from: String,
        /// The target inside it.
        to: String,
    },
    /// An uploaded (or moved) inbox folder `folder.toml` that deliveries could not use
    /// (see [`folder_setup::check_upload`]); nothing was changed.
    #[error("refused: {path} is not a valid folder.toml: {reason}")]
    BadFolderConfig {
        /// The file.
        path: String,
        /// What is wrong, with its line.
        reason: String,
    },
    /// `restore` of a version the file does not keep.
    #[error("no such version: {path} keeps no version {version} (see `versions {path}`)")]
    NoVersion {
        /// The file.
        path: String,
        /// The version asked for.
        version: u32,
    },
    /// The home's root cannot be removed, moved or replaced.
    #[error("the home directory itself cannot be removed or moved")]
    Root,
    /// The operation would take the user over their quota: `usage + needed > quota`.
    #[error(
        "quota exceeded: {needed} more bytes needed, {usage} of {quota} bytes in use ({} free)",
        .quota.saturating_sub(*.usage)
    )]
    QuotaExceeded {
        /// Bytes the operation adds once done, net of what it frees (an overwrite's
        /// versions falling off, the partial upload it replaces).
        needed: u64,
        /// Bytes counted toward the quota now (files, kept versions, partial uploads).
        usage: u64,
        /// The user's quota.
        quota: u64,
    },
    /// The server's disk would be left with less free space than its reserve
    /// ([`Tree::with_min_free_bytes`]): `free < needed + reserve`.
    #[error(
        "not enough free disk space on the server: {needed} bytes needed, {free} bytes free, \
         {reserve} bytes kept in reserve"
    )]
    DiskFull {
        /// Bytes the operation writes.
        needed: u64,
        /// Bytes free on the file system of the homes (for unprivileged users).
        free: u64,
        /// The reserve the server keeps free.
        reserve: u64,
    },
    /// The file system failed.
    #[error("file system error on {path}: {source}")]
    Io {
        /// The client path concerned.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A store of per-user homes. Every method takes the home's owner and a validated path
/// from that home's root; a home is created on first use. Implementations never reach
/// outside the owner's home.
pub trait FileTree: Send + Sync {
    /// The versions and quota in force.
    fn config(&self) -> FilesConfig;

    /// The entries of directory `dir` (files and directories only; the server's hidden
    /// names, and names a client could not address, left out), in byte order of their names.
    fn list(&self, owner: &UserName, dir: &UserPath) -> Result<Vec<DirEntry>, FileError>;

    /// Kind, size and times of a file or directory.
    fn stat(&self, owner: &UserName, path: &UserPath) -> Result<FileStat, FileError>;

    /// Creates directory `path`; its parent must exist.
    fn mkdir(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError>;

    /// Creates directory `path` and every missing directory on the way (`mkdir -p`); a
    /// directory already there is fine, anything else there or on the way is refused with
    /// [`FileError::NotADirectory`] naming it.
    fn mkdir_all(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError>;

    /// The kept versions of file `path`, newest (1) first, with their size, modification
    /// time and SHA-256. A directory is refused.
    fn versions(&self, owner: &UserName, path: &UserPath) -> Result<Vec<VersionInfo>, FileError>;

    /// Makes kept version `n` of file `path` its content; the replaced content becomes the
    /// newest kept version (and the others move down one, the oldest falling off as with
    /// any overwrite), so a restore can be undone. Refused, changing nothing, with
    /// [`FileError::NoVersion`], [`FileError::IsADirectory`] or
    /// [`FileError::QuotaExceeded`].
    fn restore(&self, owner: &UserName, path: &UserPath, n: u32) -> Result<(), FileError>;

    /// Removes the empty directory `path` (hidden server files in it go with it).
    fn rmdir(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError>;

    /// Deletes file `path` and its kept versions.
    fn delete_file(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError>;

    /// Moves `from` to `to` (whose parent must exist). A directory may not be moved into
    /// itself nor onto anything that exists; a file may replace a file, whose previous
    /// content is then kept as a version. The moved file's own versions are dropped.
    fn rename(&self, owner: &UserName, from: &UserPath, to: &UserPath) -> Result<(), FileError>;

    /// Bytes counted toward `owner`'s quota: files, kept versions and partial uploads (at
    /// their declared sizes). The disk tree answers from a count kept with the files (no
    /// walk of the home, but the first use's).
    fn usage(&self, owner: &UserName) -> Result<u64, FileError>;

    /// Whether `extra` more bytes fit `owner`'s quota (always, without one), as a new file's
    /// [`FileTree::open_partial`] would judge them. Deliveries ask before their copy.
    fn fits(&self, owner: &UserName, extra: u64) -> Result<bool, FileError> {
        match self.config().quota {
            None => Ok(true),
            Some(quota) => Ok(self
                .usage(owner)?
                .checked_add(extra)
                .is_some_and(|total| total <= quota)),
        }
    }

    /// Writes `data` as file `path` (its parent must exist), replacing the file there,
    /// whose previous content becomes the newest kept version. Refused, changing nothing,
    /// when the result would exceed the quota, or (the disk tree) eat into the free-space
    /// reserve.
    fn replace_file(&self, owner: &UserName, path: &UserPath, data: &[u8])
    -> Result<(), FileError>;

    /// The content of file `path`.
    fn read_file(&self, owner: &UserName, path: &UserPath) -> Result<Vec<u8>, FileError>;

    /// Kept version `n` of file `path` (1 is the newest previous content).
    fn read_version(&self, owner: &UserName, path: &UserPath, n: u32)
    -> Result<Vec<u8>, FileError>;

    /// Opens the hidden partial file of an upload of `size` bytes to file `path` (whose
    /// parent must exist; not a directory). With `resume`, a saved state of the same size is
    /// returned with the partial file as it is; otherwise (or when none matches) the old
    /// partial file and state are discarded and the partial file is empty. The partial
    /// upload counts toward the quota at `size` from here on. Refused with
    /// [`FileError::QuotaExceeded`] unless the upload, once committed, fits the quota
    /// (`size`, less what replacing the current file and the old partial upload frees),
    /// and by the disk tree with [`FileError::DiskFull`] when the disk has too little free
    /// space. The caller holds the path's upload lock.
    fn open_partial(
        &self,
        owner: &UserName,
        path: &UserPath,
        size: u64,
        resume: bool,
    ) -> Result<OpenedPartial, FileError>;

    /// Makes the (complete, verified) partial file of the upload to `path` visible under
    /// `path` atomically: durable first, then renamed over the target, whose previous
    /// content becomes the newest kept version; records `sha256` with the file and removes
    /// the saved state. Never refused for the quota (the partial upload was counted at its
    /// full size since [`FileTree::open_partial`]); refused, changing nothing visible, when
    /// the target cannot take it.
    fn commit_partial(
        &self,
        owner: &UserName,
        path: &UserPath,
        file: &mut dyn PartialFile,
        sha256: &[u8; 32],
    ) -> Result<(), FileError>;

    /// Deletes the partial file and saved state of the upload to `path` (none is fine).
    fn discard_partial(&self, owner: &UserName, path: &UserPath) -> Result<(), FileError>;

    /// Opens file `path` for download: a reader of this version of the file, its size and
    /// SHA-256 (computed and recorded if the file has none).
    fn open_read(&self, owner: &UserName, path: &UserPath) -> Result<OpenedFile, FileError>;

    /// Deletes, in every home, the partial uploads nobody has written for longer than
    /// `expiry` before `now`: the partial file and its saved state, judged by the newer of
    /// their modification times, and a state or partial file left without the other. An
    /// upload that has its partial file open (from `fopen` until it ends) is never touched,
    /// however old. `expiry` zero disables the sweep (nothing is deleted). A failure on one
    /// home or entry is logged and counted, and the sweep goes on; an error is returned
    /// only when the homes cannot be reached at all.
    fn sweep_partials(&self, now: SystemTime, expiry: Duration) -> Result<PartialSweep, FileError>;

    /// The owners of the homes that exist, in byte order, without creating any (the disk
    /// tree: the directories directly under `homes/` named by a user name in its normal
    /// form; symlinks and anything else are skipped, an entry that cannot be read is
    /// logged and skipped). An error only when the homes cannot be reached at all.
    fn owners(&self) -> Result<Vec<UserName>, FileError>;

    /// Takes `owner`'s home out of use, for a deleted account: afterwards `owner` has no
    /// home (the next use creates an empty one). The disk tree moves it whole to
    /// `<data>/deleted-homes/<owner>-<tag>` (see [`DELETED_HOMES`]); the in-memory tree
    /// drops it. Returns whether there was a home. `tag` is a plain name (an account id).
    fn archive_home(&self, owner: &UserName, tag: &str) -> Result<bool, FileError>;

    /// Record `name` (a name [`path::check_name`] accepts) of the server's hidden record
    /// store `store` (a name starting with [`RECORD_STORE_PREFIX`]) of directory `dir`;
    /// `None` if there is none. Records are never visible to clients, go with their
    /// directory when it is removed, and do not count toward the quota.
    fn read_record(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, FileError>;

    /// Writes (durably, replacing atomically) record `name` of store `store` of directory
    /// `dir` (see [`FileTree::read_record`]).
    fn write_record(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
        name: &str,
        data: &[u8],
    ) -> Result<(), FileError>;

    /// The names of the records of store `store` of directory `dir`, in byte order (none
    /// when the store does not exist).
    fn list_records(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<Vec<String>, FileError>;

    /// Deletes the temporary files that record writes cut short by a crash left in store
    /// `store` of directory `dir`, and returns how many: regular files named exactly
    /// `.vserv-tmp-<digits>-<digits>`, never anything else (none when the store does not
    /// exist). Call it only while no record of the store can be written (the server does at
    /// start). A tree whose record writes leave no temporary file behind (the memory tree)
    /// has none to delete, which is what this default says.
    fn sweep_record_temps(
        &self,
        owner: &UserName,
        dir: &UserPath,
        store: &str,
    ) -> Result<u64, FileError> {
        check_record_names(store, None)?;
        let _ = (owner, dir);
        Ok(0)
    }
}

/// Every record store's name (see [`FileTree::read_record`]) starts with this (a
/// reserved name).
pub const RECORD_STORE_PREFIX: &str = ".vserv-records-";

/// Checks the names of a record (see [`FileTree::read_record`]): `store` must start with
/// [`RECORD_STORE_PREFIX`] and otherwise be a valid name, `name` a valid client name.
fn check_record_names(store: &str, name: Option<&str>) -> Result<(), FileError> {
    let plain = store
        .strip_prefix(RECORD_STORE_PREFIX)
        .ok_or(PathError::Reserved)?;
    path::check_name(&format!("x{plain}"))?;
    if let Some(name) = name {
        path::check_name(name)?;
    }
    if store.contains('/') || name.is_some_and(|n| n.contains('/')) {
        return Err(PathError::Separator.into());
    }
    Ok(())
}

/// The quota check shared by the implementations, of an operation that adds `added` bytes
/// and frees `freed` with `usage` counted now. An operation that frees at least what it
/// adds is always allowed (it never grows the usage, even over a lowered quota); any
/// other is refused unless `usage + added - freed` fits, with the net growth as `needed`
/// (so the message's numbers add up: `usage + needed > quota`).
fn check_quota(config: FilesConfig, usage: u64, freed: u64, added: u64) -> Result<(), FileError> {
    let Some(quota) = config.quota else {
        return Ok(());
    };
    let Some(needed) = added.checked_sub(freed).filter(|&n| n > 0) else {
        return Ok(());
    };
    if usage.saturating_add(needed) > quota {
        return Err(FileError::QuotaExceeded {
            needed,
            usage,
            quota,
        });
    }
    Ok(())
}
