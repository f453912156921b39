//! The client's file transfers (spec/files.md), written once for every runtime: a
//! [`Scheduler`] runs one or many uploads or downloads on one connection, sharing its window,
//! and does no I/O itself. It queues requests through [`Requests`] (the session's
//! non-blocking send and take), asks its driver to wait for a reply
//! ([`Step::AwaitReply`]), and hands every local file operation to the driver as a unit of
//! blocking work ([`LocalWork`]) run over a [`LocalFiles`] implementation, whose result
//! comes back with [`Scheduler::on_work_done`]. The blocking runtime runs that work on its
//! connection thread (the long re-hashes on its worker pool), smol on its blocking pool, a
//! simulation wherever its seed says. [`StdFiles`] is the one implementation over
//! `std::fs`: it reads ahead and writes behind with the server's own code, through the
//! runtime's [`Runner`](crate::work::Runner).
//!
//! Guarantees of every transfer: an upload's SHA-256 is computed while sending and checked by
//! the server at `fdone`; a download is written to `<name>.vserv-part` (its expected size and
//! hash in `<name>.vserv-part.info`) and renamed to `<name>` only after its SHA-256 matched;
//! with `resume`, an upload continues the server's partial upload after its prefix hash
//! matched the local file, a download continues its partial copy after re-hashing it. A
//! failed upload is parked with `fclose` while the connection works, for a resume.

mod download;
mod job;
mod local;
mod scheduler;
mod std_files;
mod upload;
mod wire;
mod work;

use std::io;
use std::path::{Path, PathBuf};

use vserv_core::transfer::TransferError;

use super::ClientError;

pub use local::{FileKind, LocalFiles, ReadBatch};
pub use scheduler::{Scheduler, Step};
pub use std_files::{CopyWriter, SourceReader, StdFiles};
pub use wire::Requests;
pub use work::{LocalDone, LocalWork, WorkTicket};

/// Chunk requests kept in flight on a connection unless told otherwise (transfers run
/// together share them).
pub const DEFAULT_WINDOW: usize = 128;

/// Transfers open at once unless told otherwise.
pub const DEFAULT_PARALLEL: usize = 4;

/// The most transfers open at once: the server's limit per connection
/// (`DEFAULT_MAX_TRANSFERS`, spec/files.md §6).
pub const MAX_PARALLEL: usize = 64;

/// Suffix of a download's partial copy, next to its final name.
pub const PART_SUFFIX: &str = ".vserv-part";

/// Suffix of the file recording the size and SHA-256 a partial copy is downloading.
pub const PART_INFO_SUFFIX: &str = ".vserv-part.info";

/// How a transfer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOptions {
    /// Continue a partial transfer (the server's partial upload, or the local partial copy).
    pub resume: bool,
    /// Requests kept in flight on the connection (clamped to 1..=the connection's limit),
    /// shared by the transfers of one batch.
    pub window: usize,
    /// A download may replace an existing regular file at its local path (uploads ignore
    /// it). Without it such a download fails with [`TransferFailure::TargetExists`] before
    /// anything is fetched. Nothing that is not a regular file is ever replaced.
    pub overwrite: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            resume: false,
            window: DEFAULT_WINDOW,
            overwrite: false,
        }
    }
}

/// What a finished transfer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOutcome {
    /// The file's size.
    pub size: u64,
    /// Its SHA-256, checked end to end.
    pub sha256: [u8; 32],
    /// Where this run started: 0, or the offset a resume continued from.
    pub resumed_from: u64,
}

/// One upload of a batch: a local file and the server path it is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The local file to read.
    pub local: PathBuf,
    /// Where it goes on the server.
    pub remote: String,
}

/// One download of a batch: a server file and the local path it is written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The file on the server.
    pub remote: String,
    /// Where it is written (visible only once its SHA-256 matched).
    pub local: PathBuf,
}

/// What each file's result is.
pub type FileResult = Result<TransferOutcome, TransferFailure>;

/// The result of a one-file batch (what every client's `put_with`/`get_with` returns); a
/// batch that somehow answered for no file is a state error, never a panic.
pub fn single_result(results: Vec<FileResult>) -> FileResult {
    results
        .into_iter()
        .next()
        .unwrap_or(Err(TransferFailure::Machine(TransferError::BadState)))
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferFailure {
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Local {
        /// The local file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The connection failed or the server refused a request.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The transfer machine refused a step (a reply that does not fit the transfer).
    #[error("transfer failed: {0}")]
    Machine(#[from] TransferError),
    /// The local file became shorter while it was being uploaded.
    #[error("{} changed while it was being uploaded", path.display())]
    LocalChanged {
        /// The local file.
        path: PathBuf,
    },
    /// The downloaded bytes do not hash to the server's SHA-256; the partial copy was
    /// discarded.
    #[error("the downloaded data does not match the server's SHA-256; the copy was discarded")]
    Integrity,
    /// The connection failed while this transfer was open or waiting to start (the
    /// transfer whose request met the failure reports it as [`TransferFailure::Client`]).
    /// An upload keeps its partial upload on the server and a download its partial copy,
    /// for a resume.
    #[error("interrupted: the connection failed ({reason})")]
    Interrupted {
        /// The connection's failure.
        reason: String,
    },
    /// The download's local path holds a regular file and replacing it was not allowed
    /// ([`TransferOptions::overwrite`]); nothing was fetched or changed.
    #[error("{} already exists; not replaced (get --force replaces a regular file)", path.display())]
    TargetExists {
        /// The local path.
        path: PathBuf,
    },
    /// The download's local path (or its partial copy's) is not a regular file (a symlink,
    /// directory, device, FIFO or socket); it is never replaced, whatever the options.
    #[error("{} is a {kind}, not a regular file; a download never replaces it", path.display())]
    TargetNotRegular {
        /// The local path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Another download of the same batch writes the same local file, so this one was not
    /// started.
    #[error("{} is also the target of another download; not downloaded", path.display())]
    DuplicateTarget {
        /// The local file.
        path: PathBuf,
    },
}

/// Wraps an I/O error on `path` as a [`TransferFailure::Local`].
pub(crate) fn local(path: &Path) -> impl FnOnce(io::Error) -> TransferFailure + '_ {
    move |source| TransferFailure::Local {
        path: path.to_owned(),
        source,
    }
}

/// The partial copy of a download to `local_path`.
pub fn part_path(local_path: &Path) -> PathBuf {
    with_suffix(local_path, PART_SUFFIX)
}

/// The file recording what the partial copy of `local_path` is downloading.
pub fn part_info_path(local_path: &Path) -> PathBuf {
    with_suffix(local_path, PART_INFO_SUFFIX)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
