//! Serving uploads and downloads (spec/files.md): the streaming file primitives a
//! [`FileTree`] offers them, the server-wide per-path upload lock, and [`Transfers`], the
//! open transfers of one connection (the core's [`ServerTransfers`] machines plus the open
//! files they write and read).
//!
//! - An upload writes a hidden **partial file** of the target's home (never visible under a
//!   client path) at the offsets the machine accepts, and keeps its saved [`UploadState`]
//!   beside it. The state is rewritten, after the partial file is made durable, at `fopen`,
//!   every [`CHECKPOINT_BYTES`], on `fclose` and when the connection ends, so
//!   `fopen ... resume` continues after a dropped connection or a server restart.
//! - `fdone` with the right hash makes the partial file visible atomically (one rename over
//!   the target, whose old content becomes a kept version); a hash mismatch deletes the
//!   partial file. The target is never touched otherwise.
//! - A download reads at offsets from the file opened by `fget`: a later upload to the same
//!   path does not change what it returns, and no file is ever read whole into memory (the
//!   disk tree; the memory tree shares its in-memory copy).
//! - `fget` reports the SHA-256 recorded when the file's upload was checked; a file without
//!   one (written by `mv` over it from an older server, or planted on disk) is hashed once
//!   at `fget` and the result cached, so `stat` reports it from then on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vserv_core::transfer::{
    DownloadSender, FdoneArgs, FdoneReply, FgetReply, FileHasher, FopenReply, FputArgs, FreadArgs,
    FreadReply, ServerTransfer, ServerTransfers, TransferError, UploadReceiver, UploadState,
};

use super::{FileError, FileTree, UserPath};
use crate::accounts::UserName;

/// An upload's state is saved (after an fsync of its partial file) at least every this many
/// accepted bytes, so a crash loses at most this much of an upload.
pub const CHECKPOINT_BYTES: u64 = 64 << 20;

/// Bytes read at a time when a partial file is re-hashed (resume) or a stored file hashed.
pub const READ_CHUNK: usize = 64 * 1024;

/// An upload's partial file, open for reading and writing at offsets.
pub trait PartialFile: Send + std::fmt::Debug {
    /// Writes all of `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FileError>;

    /// Reads up to `buf.len()` bytes at `offset`; 0 at the end of the file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FileError>;

    /// Truncates (or extends with zeros) the partial file to `len` bytes.
    fn set_len(&mut self, len: u64) -> Result<(), FileError>;

    /// Makes the bytes written so far durable.
    fn sync(&mut self) -> Result<(), FileError>;

    /// Makes the bytes durable, then saves `state` beside the partial file (replacing the
    /// previous state atomically).
    fn checkpoint(&mut self, state: &UploadState) -> Result<(), FileError>;

    /// [`checkpoint`](Self::checkpoint), possibly done later but before any operation
    /// after it (a file written behind its caller's back queues it after the writes before
    /// it; a failure is then reported by a later call).
    fn checkpoint_soon(&mut self, state: &UploadState) -> Result<(), FileError> {
        self.checkpoint(state)
    }

    /// Whether the file can take over the upload's hashing ([`hash_behind`](Self::hash_behind)),
    /// so the bytes are hashed off the caller's thread.
    fn can_hash_behind(&self) -> bool {
        false
    }

    /// Takes over the hashing of an upload of `size` bytes: `hasher` has seen bytes
    /// `0..offset`, and every later write must continue exactly where the bytes hashed end
    /// (a write that does not fails the file, as a failed write does). Only for a file
    /// that [`can_hash_behind`](Self::can_hash_behind).
    fn hash_behind(&mut self, hasher: FileHasher, size: u64, offset: u64) -> Result<(), FileError> {
        let _ = (hasher, size, offset);
        Err(not_hashing())
    }

    /// For a file hashing behind: [`checkpoint`](Self::checkpoint) (or, with `soon`,
    /// [`checkpoint_soon`](Self::checkpoint_soon)) of the bytes `0..offset`, with the prefix
    /// hash of the file's hasher. Fails if the bytes hashed do not end at `offset`.
    fn checkpoint_behind(&mut self, offset: u64, soon: bool) -> Result<(), FileError> {
        let _ = (offset, soon);
        Err(not_hashing())
    }

    /// For a file hashing behind: waits for every queued write, then gives the hasher back
    /// (hashing behind ends).
    fn take_hasher(&mut self) -> Result<FileHasher, FileError> {
        Err(not_hashing())
    }
}

/// What a file that does not hash behind says when asked to.
fn not_hashing() -> FileError {
    FileError::Io {
        path: String::new(),
        source: std::io::Error::other("this partial file does not hash what it writes"),
    }
}

/// A file opened for download.
pub trait FileReader: Send + std::fmt::Debug {
    /// Fills `buf` with the bytes at `offset` (all of them, or an error).
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FileError>;

    /// The `len` bytes at `offset` (all of them, or an error). A reader that can fill a
    /// vector without zero-filling it first says so by overriding this.
    fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>, FileError> {
        let mut data = vec![0; len];
        self.read_exact_at(offset, &mut data)?;
        Ok(data)
    }
}

/// [`FileTree::open_partial`]'s result.
#[derive(Debug)]
pub struct OpenedPartial {
    /// The partial file.
    pub file: Box<dyn PartialFile>,
    /// Its saved state, when a resume was asked for and a state of the same size was found;
    /// the partial file is then to be re-hashed up to the state's offset. `None`: the
    /// partial file is empty.
    pub saved: Option<UploadState>,
}

/// [`FileTree::open_read`]'s result.
#[derive(Debug)]
pub struct OpenedFile {
    /// The open file.
    pub reader: Box<dyn FileReader>,
    /// Its size.
    pub size: u64,
    /// Its SHA-256 (recorded by its upload, or computed and cached).
    pub sha256: [u8; 32],
}

/// The paths being uploaded to, server-wide (spec/files.md §3.4). Clones share the set.
#[derive(Debug, Default, Clone)]
pub struct UploadLocks(Arc<Mutex<BTreeSet<(UserName, UserPath)>>>);

impl UploadLocks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks `owner`'s `path` for one upload; `None` while another upload holds it.
    pub fn acquire(&self, owner: &UserName, path: &UserPath) -> Option<UploadLock> {
        let key = (owner.clone(), path.clone());
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.insert(key.clone()).then(|| UploadLock {
            locks: self.clone(),
            key,
        })
    }

    /// Whether `owner`'s `path` is locked now.
    pub fn is_locked(&self, owner: &UserName, path: &UserPath) -> bool {
        let set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.contains(&(owner.clone(), path.clone()))
    }
}

/// One path locked for an upload; dropping it unlocks the path.
#[derive(Debug)]
pub struct UploadLock {
    locks: UploadLocks,
    key: (UserName, UserPath),
}

impl Drop for UploadLock {
    fn drop(&mut self) {
        let mut set = self.locks.0.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.key);
    }
}

/// Why a transfer command failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferFailure {
    /// The machine refused the step.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// The file tree failed (the transfer is over for a failed write, read or commit).
    #[error(transparent)]
    File(#[from] FileError),
    /// Another upload to the same path is open.
    #[error("an upload to {0} is in progress")]
    Busy(String),
}

/// An open upload's file side.
#[derive(Debug)]
struct OpenUpload {
    owner: UserName,
    path: UserPath,
    file: Box<dyn PartialFile>,
    /// Accepted bytes not yet covered by a saved state.
    unsaved: u64,
    /// Whether the file hashes the bytes (off the connection's thread) rather than the
    /// machine ([`PartialFile::hash_behind`]).
    hashed_behind: bool,
    /// Held until the upload is finished, closed or dropped.
    _lock: UploadLock,
    /// Counts it in the server's open transfers while it is open.
    _counted: GaugeTicket,
}

/// How many transfers (uploads and downloads) are open on every connection of a server,
/// for its status summary. Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct TransferGauge(Arc<AtomicUsize>);

impl TransferGauge {
    /// The transfers open now.
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one more open transfer until the ticket is dropped.
    fn ticket(&self) -> GaugeTicket {
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeTicket(self.0.clone())
    }
}

/// One transfer counted by a [`TransferGauge`]; dropping it uncounts it.
#[derive(Debug)]
struct GaugeTicket(Arc<AtomicUsize>);

impl Drop for GaugeTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl OpenUpload {
    /// Saves the state of `receiver`'s upload for a resume, after the bytes it accepted;
    /// with `soon`, queued behind the writes ([`PartialFile::checkpoint_soon`]).
    fn save(&mut self, receiver: &UploadReceiver, soon: bool) -> Result<(), TransferFailure> {
        if self.hashed_behind {
            return Ok(self.file.checkpoint_behind(receiver.offset(), soon)?);
        }
        let state = receiver.checkpoint()?;
        let saved = if soon {
            self.file.checkpoint_soon(&state)
        } else {
            self.file.checkpoint(&state)
        };
        Ok(saved?)
    }
}

/// The transfers open on one connection. Dropping it (the connection ended) saves every
/// open upload's state for a later resume and releases its path lock.
#[derive(Debug, Default)]
pub struct Transfers {
    table: ServerTransfers,
    uploads: BTreeMap<u32, OpenUpload>,
    downloads: BTreeMap<u32, (Box<dyn FileReader>, GaugeTicket)>,
    /// Where the open transfers are counted (a gauge of its own until [`Transfers::attach`]).
    gauge: TransferGauge,
}

impl Transfers {
    /// No open transfer, at most [`vserv_core::transfer::DEFAULT_MAX_TRANSFERS`] at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the transfers opened from now on in `gauge` (the server's).
    pub fn attach(&mut self, gauge: &TransferGauge) {
        self.gauge = gauge.clone();
    }

    /// Number of open transfers.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no transfer is open.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// `fopen`: locks `owner`'s `path` (`shown` names it in errors), opens its partial file
    /// (quota and free space checked there, once for the whole upload), re-hashes the saved part on a resume, and registers the
    /// upload.
    #[allow(clippy::too_many_arguments)]
    pub fn fopen(
        &mut self,
        tree: &dyn FileTree,
        locks: &UploadLocks,
        owner: &UserName,
        path: &UserPath,
        shown: &str,
        size: u64,
        resume: bool,
    ) -> Result<FopenReply, TransferFailure> {
        if self.table.is_full() {
            return Err(TransferError::TooManyTransfers(self.table.limit()).into());
        }
        let lock = locks
            .acquire(owner, path)
            .ok_or_else(|| TransferFailure::Busy(shown.to_owned()))?;
        let OpenedPartial { mut file, saved } = tree.open_partial(owner, path, size, resume)?;
        let receiver = match saved {
            Some(state) => refeed(file.as_mut(), &state)?,
            None => UploadReceiver::new(size),
        };
        // The partial file takes the upload's full size at once (sparse on disk until
        // written; bytes past the verified offset are written again). The tree counts the
        // whole upload toward the quota from `open_partial` on, so a concurrent upload that
        // would not fit beside it is refused at its fopen, before any data.
        file.set_len(size)?;
        file.checkpoint(&receiver.checkpoint()?)?;
        let (offset, prefix_sha256) = (receiver.offset(), receiver.prefix_sha256()?);
        let mut receiver = receiver;
        let mut hashed_behind = false;
        if file.can_hash_behind()
            && let Some(hasher) = receiver.take_hasher()
        {
            file.hash_behind(hasher, size, offset)?;
            hashed_behind = true;
        }
        let id = self.table.open(ServerTransfer::Upload(receiver))?;
        self.uploads.insert(
            id,
            OpenUpload {
                owner: owner.clone(),
                path: path.clone(),
                file,
                unsaved: 0,
                hashed_behind,
                _lock: lock,
                _counted: self.gauge.ticket(),
            },
        );
        tracing::debug!(user = %owner, path = %path, id, size, offset, "upload opened");
        Ok(FopenReply {
            id,
            offset,
            prefix_sha256,
        })
    }

    /// `fput`: the machine checks the chunk, then it is hashed and written. A failed write
    /// ends the upload (its last saved state stays for a resume).
    pub fn fput(&mut self, args: &FputArgs<'_>) -> Result<(), TransferFailure> {
        let at = self.table.put(args)?;
        let Some(upload) = self.uploads.get_mut(&args.id) else {
            return Err(TransferError::UnknownTransfer(args.id).into());
        };
        let mut written = upload
            .file
            .write_at(at.offset, args.data)
            .map_err(Into::into);
        if written.is_ok() {
            upload.unsaved = upload.unsaved.saturating_add(at.len as u64);
            if upload.unsaved >= CHECKPOINT_BYTES {
                // The state (its prefix hash finalised) only when it is saved.
                written = upload.save(self.table.upload(args.id)?, true);
                upload.unsaved = 0;
            }
        }
        if let Err(e) = written {
            self.abandon(args.id);
            return Err(e);
        }
        Ok(())
    }

    /// `fdone`: on a matching hash the partial file replaces the target; on a mismatch it
    /// is deleted. Either way the upload is over; an incomplete one stays open.
    pub fn fdone(
        &mut self,
        tree: &dyn FileTree,
        args: &FdoneArgs,
    ) -> Result<FdoneReply, TransferFailure> {
        let result = if self.uploads.get(&args.id).is_some_and(|u| u.hashed_behind) {
            // The file gives the hasher back (after every queued write) only once every
            // byte is in: an incomplete upload stays open, hashing.
            self.table.upload(args.id)?.ready_to_finish()?;
            match self.uploads.get_mut(&args.id).map(|u| u.file.take_hasher()) {
                Some(Ok(hasher)) => self.table.done_with(args, hasher),
                Some(Err(e)) => {
                    self.abandon(args.id);
                    return Err(e.into());
                }
                None => Err(TransferError::UnknownTransfer(args.id)),
            }
        } else {
            self.table.done(args)
        };
        if matches!(
            result,
            Err(TransferError::Incomplete { .. } | TransferError::UnknownTransfer(_))
        ) {
            return result.map_err(Into::into);
        }
        let Some(mut upload) = self.uploads.remove(&args.id) else {
            return Err(TransferError::UnknownTransfer(args.id).into());
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(e) => {
                if let Err(d) = tree.discard_partial(&upload.owner, &upload.path) {
                    tracing::warn!(error = %d, "could not delete a failed upload's partial file");
                }
                return Err(e.into());
            }
        };
        let file = &mut upload.file;
        let checked = super::folder_setup::check_upload(&upload.path, reply.size, || {
            read_partial(file.as_mut(), reply.size)
        });
        let committed = checked.and_then(|()| {
            tree.commit_partial(
                &upload.owner,
                &upload.path,
                upload.file.as_mut(),
                &reply.sha256,
            )
        });
        match committed {
            Ok(()) => {
                tracing::debug!(user = %upload.owner, path = %upload.path, size = reply.size, "upload finished");
                Ok(reply)
            }
            Err(e @ (FileError::QuotaExceeded { .. } | FileError::BadFolderConfig { .. })) => {
                if let Err(d) = tree.discard_partial(&upload.owner, &upload.path) {
                    tracing::warn!(error = %d, "could not delete a refused upload's partial file");
                }
                Err(e.into())
            }
            Err(e) => {
                // Keep the complete partial file: a resume re-hashes it and needs only fdone.
                let state = UploadState {
                    size: reply.size,
                    offset: reply.size,
                    prefix_sha256: reply.sha256,
                };
                if let Err(c) = upload.file.checkpoint(&state) {
                    tracing::warn!(error = %c, "could not save a finished upload's state");
                }
                Err(e.into())
            }
        }
    }

    /// `fget`: opens `owner`'s file `path` and registers the download.
    pub fn fget(
        &mut self,
        tree: &dyn FileTree,
        owner: &UserName,
        path: &UserPath,
    ) -> Result<FgetReply, TransferFailure> {
        if self.table.is_full() {
            return Err(TransferError::TooManyTransfers(self.table.limit()).into());
        }
        let OpenedFile {
            reader,
            size,
            sha256,
        } = tree.open_read(owner, path)?;
        let id = self
            .table
            .open(ServerTransfer::Download(DownloadSender::new(size, sha256)))?;
        self.downloads.insert(id, (reader, self.gauge.ticket()));
        Ok(FgetReply { id, size, sha256 })
    }

    /// `fread`: exactly the bytes asked for, read at their offset.
    pub fn fread(&self, args: &FreadArgs) -> Result<FreadReply, TransferFailure> {
        let at = self.table.read(args)?;
        let (reader, _) = self
            .downloads
            .get(&args.id)
            .ok_or(TransferError::UnknownTransfer(args.id))?;
        let data = reader.read_vec(at.offset, at.len)?;
        Ok(FreadReply { data })
    }

    /// `fclose`: ends a download, or parks an upload (its state saved for a resume).
    pub fn fclose(&mut self, id: u32) -> Result<(), TransferFailure> {
        match self.table.close(id)? {
            ServerTransfer::Upload(receiver) => {
                if let Some(mut upload) = self.uploads.remove(&id) {
                    upload.save(&receiver, false)?;
                }
            }
            ServerTransfer::Download(_) => {
                self.downloads.remove(&id);
            }
        }
        Ok(())
    }

    /// Ends every transfer without saving any upload's state: their account was deleted (its
    /// home archived with the partial files), and nothing may be written by name into a new
    /// account of the same name.
    pub fn abandon_all(mut self) {
        for (id, _) in self.table.drain() {
            self.uploads.remove(&id);
        }
        self.uploads.clear();
        self.downloads.clear();
    }

    /// Ends upload `id` without saving its state (its file failed).
    fn abandon(&mut self, id: u32) {
        let _ = self.table.close(id);
        self.uploads.remove(&id);
    }
}

impl Drop for Transfers {
    fn drop(&mut self) {
        for (id, transfer) in self.table.drain() {
            if let ServerTransfer::Upload(receiver) = transfer
                && let Some(mut upload) = self.uploads.remove(&id)
                && let Err(e) = upload.save(&receiver, false)
            {
                tracing::warn!(user = %upload.owner, path = %upload.path, error = %e,
                    "could not save an upload's state at the end of its connection");
            }
        }
    }
}

/// Re-hashes the partial file's bytes `0..state.offset` in [`READ_CHUNK`]s (spec/files.md
/// §5.1): the receiver continues there, or at 0 if the bytes are short or differ.
fn refeed(file: &mut dyn PartialFile, state: &UploadState) -> Result<UploadReceiver, FileError> {
    let mut restore = UploadReceiver::restore(state);
    let mut buf = vec![0; READ_CHUNK];
    let mut at = 0u64;
    while restore.remaining() > 0 {
        let want = usize::try_from(restore.remaining()).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        let n = file.read_at(at, &mut buf[..want])?;
        // `want` is within what is left, so the machine takes it.
        if n == 0 || restore.feed(&buf[..n]).is_err() {
            break;
        }
        at = at.saturating_add(n as u64);
    }
    Ok(restore.finish().0)
}

/// The whole content of a complete partial file of `size` bytes (a small one: the caller
/// bounds `size`).
fn read_partial(file: &mut dyn PartialFile, size: u64) -> Result<Vec<u8>, FileError> {
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    let mut out = vec![0; len];
    let mut at = 0;
    while at < len {
        let n = file.read_at(u64::try_from(at).unwrap_or(u64::MAX), &mut out[at..])?;
        if n == 0 {
            out.truncate(at);
            break;
        }
        at += n;
    }
    Ok(out)
}
