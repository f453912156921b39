//! Recorded SHA-256 hashes, part of [`Tree`]'s policy: the verified hash of file
//! `dir/name` is kept in `dir/.vserv-sha256/name` together with the file's size, inode and
//! modification time, and believed only while they still match (so a file replaced by
//! other means never reports a stale hash); `mv` carries it along, and a download of a file
//! without one hashes the file and records it. Sidecars do not count toward the quota.

use std::time::SystemTime;

use vserv_core::transfer::FileHasher;

use super::store::{HomeStore, Loc, Meta, Removal, StoreError, StoredFile};
use super::transfer::READ_CHUNK;
use super::tree::Tree;
use super::{FileError, UserPath};

/// The hidden directory holding a directory's recorded SHA-256 sidecars.
const SHA_DIR: &str = ".vserv-sha256";

/// Length of a SHA-256 sidecar: the hash, then size, inode, mtime seconds and nanoseconds
/// of the file it describes (8 bytes each, big-endian).
const SIDECAR_LEN: usize = 32 + 4 * 8;

impl<S: HomeStore> Tree<S> {
    /// Where file `at`'s SHA-256 sidecar lives.
    pub(super) fn sidecar(at: &Loc) -> Option<Loc> {
        Some(at.sibling(SHA_DIR)?.child(at.file_name()?))
    }

    /// The recorded SHA-256 of file `at` (with metadata `meta`), if a sidecar still
    /// matches it.
    pub(super) fn read_sidecar(&self, at: &Loc, meta: &Meta) -> Option<[u8; 32]> {
        let p = Self::sidecar(at)?;
        if !self.store.metadata(&p.parent()?).ok()??.is_dir()
            || !self.store.metadata(&p).ok()??.is_file()
        {
            return None;
        }
        let bytes = self.store.read(&p).ok()?;
        let (sha, identity) = bytes.split_first_chunk::<32>()?;
        (identity == file_identity(meta)).then_some(*sha)
    }

    /// Records `sha256` as the hash of file `at` (with metadata `meta`).
    pub(super) fn write_sidecar(
        &self,
        at: &Loc,
        meta: &Meta,
        sha256: &[u8; 32],
        path: &UserPath,
    ) -> Result<(), FileError> {
        let p = Self::sidecar(at).ok_or_else(|| FileError::NotFound(path.to_string()))?;
        if let Some(dir) = p.parent() {
            self.ensure_private_dir(&dir, path)?;
        }
        self.store.metadata(&p).map_err(self.fail(&p, path))?;
        let mut bytes = [0u8; SIDECAR_LEN];
        bytes[..32].copy_from_slice(sha256);
        bytes[32..].copy_from_slice(&file_identity(meta));
        self.write_atomic(&p, &bytes, false, path)
    }

    /// Drops file `at`'s sidecar, if any (and the sidecar directory if that empties it).
    pub(super) fn remove_sidecar(&self, at: &Loc) {
        if let Some(p) = Self::sidecar(at) {
            let _ = self.store.remove(&p, Removal::File);
            if let Some(dir) = p.parent() {
                let _ = self.store.remove(&dir, Removal::EmptyDir);
            }
        }
    }

    /// Moves file `from`'s sidecar to file `to` (which replaced whatever was there).
    pub(super) fn move_sidecar(&self, from: &Loc, to: &Loc, path: &UserPath) {
        let (Some(src), Some(dst)) = (Self::sidecar(from), Self::sidecar(to)) else {
            return;
        };
        let moved = match self.store.metadata(&src) {
            Ok(Some(m)) if m.is_file() => dst
                .parent()
                .map(|d| self.ensure_private_dir(&d, path))
                .transpose()
                .is_ok_and(|_| self.store.rename(&src, &dst).is_ok()),
            _ => false,
        };
        if !moved {
            let _ = self.store.remove(&dst, Removal::File);
        }
        if let Some(dir) = src.parent() {
            let _ = self.store.remove(&dir, Removal::EmptyDir);
        }
    }
}

/// What a sidecar records of the file besides its hash: size, inode, modification time
/// (seconds and nanoseconds since 1970, as the file system keeps them).
fn file_identity(meta: &Meta) -> [u8; SIDECAR_LEN - 32] {
    let (secs, nanos) = match meta.modified {
        None => (0i64, 0i64),
        Some(t) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                i64::from(d.subsec_nanos()),
            ),
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => (-secs, 0),
                    n => (-secs - 1, 1_000_000_000 - i64::from(n)),
                }
            }
        },
    };
    let mut out = [0u8; SIDECAR_LEN - 32];
    out[..8].copy_from_slice(&meta.len.to_be_bytes());
    out[8..16].copy_from_slice(&meta.ino.to_be_bytes());
    out[16..24].copy_from_slice(&secs.to_be_bytes());
    out[24..].copy_from_slice(&nanos.to_be_bytes());
    out
}

/// SHA-256 of the `size` bytes of `file`, read in [`READ_CHUNK`]s.
pub(super) fn hash_file(file: &dyn StoredFile, size: u64) -> Result<[u8; 32], StoreError> {
    let mut hasher = FileHasher::new();
    let mut buf = vec![0; READ_CHUNK];
    let mut at = 0u64;
    while at < size {
        let want = usize::try_from(size - at).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
        file.read_exact_at(at, &mut buf[..want])?;
        hasher.update(&buf[..want]);
        at += want as u64;
    }
    Ok(hasher.finish())
}
