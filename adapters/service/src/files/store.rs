//! The narrow storage seam under the file tree's policy ([`super::tree::Tree`]): the
//! primitive operations on the entries of the homes, which the disk ([`super::DiskTree`])
//! and memory ([`super::MemoryTree`]) backends implement and nothing else.
//!
//! A backend knows nothing of quotas, versions, records, sidecars or expiry: it stores
//! directories and files at [`Loc`]ations (a home and the names below it, the server's
//! hidden names included), reports their [`Meta`]data, and opens the streams of uploads and
//! downloads. Every operation resolves its location from the homes down and refuses
//! (with a [`StoreError`]) a location that would leave its home: a missing directory on
//! the way, something on the way that is not a directory, or (the disk) a symlink anywhere.

use std::time::SystemTime;

use super::FileError;
pub use super::partials::PartialClaim;
use super::transfer::{FileReader, PartialFile};
use crate::accounts::UserName;

/// A location inside one home: the home's name and the names from its root (none for the
/// root itself). The names are plain names (never empty, `.`, `..` or containing `/`);
/// unlike a client path they may be the server's hidden names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    /// The home's directory name (a user name in its normal form, or a directory found
    /// under the homes by a sweep).
    pub home: String,
    /// The names from the home's root.
    pub names: Vec<String>,
}

impl Loc {
    /// `names` in `home`.
    pub fn new(home: &str, names: Vec<String>) -> Loc {
        Loc {
            home: home.to_owned(),
            names,
        }
    }

    /// This location with `name` appended.
    pub fn child(&self, name: &str) -> Loc {
        let mut names = self.names.clone();
        names.push(name.to_owned());
        Loc {
            home: self.home.clone(),
            names,
        }
    }

    /// The directory holding this location (`None` for the home's root).
    pub fn parent(&self) -> Option<Loc> {
        let (_, parent) = self.names.split_last()?;
        Some(Loc {
            home: self.home.clone(),
            names: parent.to_vec(),
        })
    }

    /// The last name (`None` for the home's root).
    pub fn file_name(&self) -> Option<&str> {
        self.names.last().map(String::as_str)
    }

    /// The entry named `name` in the same directory (`None` for the home's root).
    pub fn sibling(&self, name: &str) -> Option<Loc> {
        Some(self.parent()?.child(name))
    }
}

/// What an entry is. Symlinks and special files are only ever seen in listings: an
/// operation on a location that is one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink, device, socket or pipe: never followed, read or written.
    Other,
}

/// An entry's metadata, never following a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// What it is.
    pub kind: Kind,
    /// Its length in bytes (a partial file: its upload's declared size).
    pub len: u64,
    /// The bytes it takes on the medium (less than `len` while a file is sparse).
    pub allocated: u64,
    /// Identifies the file's content holder (an inode): equal for two names of one file.
    pub ino: u64,
    /// When it was last modified, if known.
    pub modified: Option<SystemTime>,
    /// When it was created, if known.
    pub created: Option<SystemTime>,
}

impl Meta {
    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// Why a location could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing is there.
    Missing,
    /// It is not a directory, but a directory was needed.
    NotADirectory,
    /// It is a symlink (never followed, wherever it points).
    Symlink,
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory of the homes itself cannot be used.
    #[error("the homes directory: {0:?}")]
    Homes(Fault),
    /// The entry at `depth` names from the home's root (0: the home itself) cannot be
    /// passed: a directory on the way, or the location itself where it must exist or must
    /// not be a symlink.
    #[error("at depth {depth}: {fault:?}")]
    Walk {
        /// How many names lead to the entry at fault.
        depth: usize,
        /// What is wrong there.
        fault: Fault,
    },
    /// The operation itself failed (its kind says how: `NotFound`, `AlreadyExists`,
    /// `DirectoryNotEmpty`, ...).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A failure the backend already words for the client (the archive of a home, the
    /// start of an upload's writer).
    #[error(transparent)]
    File(#[from] FileError),
}

impl From<std::io::ErrorKind> for StoreError {
    fn from(kind: std::io::ErrorKind) -> Self {
        StoreError::Io(kind.into())
    }
}

impl StoreError {
    /// Whether nothing is there: the entry itself (`NotFound`) or a directory on the way.
    pub fn is_missing(&self) -> bool {
        self.is_io(std::io::ErrorKind::NotFound)
            || matches!(
                self,
                StoreError::Walk {
                    fault: Fault::Missing,
                    ..
                }
            )
    }

    /// Whether this is an I/O failure of kind `kind`.
    pub fn is_io(&self, kind: std::io::ErrorKind) -> bool {
        matches!(self, StoreError::Io(e) if e.kind() == kind)
    }
}

/// What [`HomeStore::remove`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// A regular file (`NotFound` when nothing is there).
    File,
    /// An empty directory (`DirectoryNotEmpty` when it has entries).
    EmptyDir,
    /// A directory and everything in it, or a single file; a symlink is removed itself,
    /// never what it points to.
    All,
}

/// The homes found under the homes' directory by [`HomeStore::homes`].
#[derive(Debug, Default)]
pub struct Homes {
    /// The names of the directories directly under it (symlinks and other entries left
    /// out), in no particular order.
    pub names: Vec<String>,
    /// Entries that could not be read or examined (each logged by the backend).
    pub unreadable: u64,
}

/// What [`HomeStore::open_partial`] opens.
#[derive(Debug)]
pub struct PartialOpen<'a> {
    /// The partial file, created (private to the server) if missing.
    pub file: &'a Loc,
    /// Where its checkpoints save the upload state (see [`HomeStore::read_state`]).
    pub state: &'a Loc,
    /// The upload's declared size: the file is this long once opened (sparse where the
    /// medium allows).
    pub size: u64,
    /// Whether the file is emptied first (a new upload, not a resume).
    pub fresh: bool,
    /// Held by the returned file until it is dropped (keeps the sweep away).
    pub claim: PartialClaim,
    /// The upload's target as the client names it, for messages.
    pub shown: String,
}

/// A file opened for download by [`HomeStore::open_read`].
pub trait StoredFile: Send + std::fmt::Debug {
    /// The metadata of the file opened (of the open file itself, not of the name).
    fn meta(&self) -> Meta;

    /// Fills `buf` with the bytes at `offset`, read directly (no read-ahead).
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError>;

    /// The download's reader of this file (read ahead where the backend can).
    fn into_reader(self: Box<Self>, shown: String) -> Box<dyn FileReader>;
}

/// The primitive operations on the homes that the file tree's policy needs. Every
/// location is resolved from the homes down as the module documentation says; none
/// creates a home but [`HomeStore::open_home`].
pub trait HomeStore: Send + Sync + std::fmt::Debug {
    /// The homes that exist, without creating any. An error only when the homes'
    /// directory cannot be read at all.
    fn homes(&self) -> Result<Homes, StoreError>;

    /// Makes sure home `home` exists (created, private to the server, if missing).
    fn open_home(&self, home: &str) -> Result<(), StoreError>;

    /// Takes home `home` out of use whole: the disk moves it to the archive of deleted
    /// homes under `tag`, memory drops it. Whether there was one.
    fn archive_home(&self, home: &UserName, tag: &str) -> Result<bool, StoreError>;

    /// The metadata of the entry at `at`, `None` when nothing is there (every directory on
    /// the way must exist). A symlink there is refused.
    fn metadata(&self, at: &Loc) -> Result<Option<Meta>, StoreError>;

    /// The entries of directory `at` with their metadata, in no particular order (names
    /// that are not UTF-8 and entries vanishing meanwhile left out).
    fn list(&self, at: &Loc) -> Result<Vec<(String, Meta)>, StoreError>;

    /// Creates directory `at` (private to the server); `AlreadyExists` if something is
    /// there.
    fn create_dir(&self, at: &Loc) -> Result<(), StoreError>;

    /// Removes the entry at `at` as `how` says.
    fn remove(&self, at: &Loc, how: Removal) -> Result<(), StoreError>;

    /// Renames `from` to `to`, replacing a file at `to` atomically.
    fn rename(&self, from: &Loc, to: &Loc) -> Result<(), StoreError>;

    /// Makes `to` (which must not exist) a second name of file `from`.
    fn hard_link(&self, from: &Loc, to: &Loc) -> Result<(), StoreError>;

    /// The whole content of file `at`.
    fn read(&self, at: &Loc) -> Result<Vec<u8>, StoreError>;

    /// Writes `data` as a new temporary file in directory `dir` (with `durable`, made
    /// durable) and returns its name, one that [`super::tree::is_tmp_name`] accepts and
    /// that no other entry had. Nothing is left behind on failure.
    fn write_temp(&self, dir: &Loc, data: &[u8], durable: bool) -> Result<String, StoreError>;

    /// Makes the entries of directory `at` (renames into it) durable.
    fn sync_dir(&self, at: &Loc) -> Result<(), StoreError>;

    /// Bytes free for the server on the medium of the homes; `None` when unbounded.
    fn free_space(&self) -> Result<Option<u64>, StoreError>;

    /// Opens the partial file of an upload as `partial` says (see [`PartialOpen`]).
    fn open_partial(&self, partial: PartialOpen<'_>) -> Result<Box<dyn PartialFile>, StoreError>;

    /// The upload state saved as `state` by a partial file's checkpoint, if any. The disk
    /// keeps it as the file `state`; memory keeps it beside its files (it is then neither
    /// listed nor has metadata).
    fn read_state(&self, state: &Loc) -> Result<Option<Vec<u8>>, StoreError>;

    /// Deletes the upload state `state` (none is fine).
    fn remove_state(&self, state: &Loc) -> Result<(), StoreError>;

    /// Opens file `at` for download.
    fn open_read(&self, at: &Loc) -> Result<Box<dyn StoredFile>, StoreError>;
}
