//! The store mark: `<data_dir>/store.mark`, the data directory's own record of which store it
//! holds and how many commits that store has made durable.
//!
//! fjall recovers a damaged journal by dropping everything from the first bad batch on, and a
//! deleted journal or keyspace directory opens as an empty database, both without an error.
//! The mark lives outside the database so that such a store is recognised when it is opened
//! (its generation is behind the mark, or it is gone) instead of coming up as if it were new.
//!
//! # Layout
//!
//! Two slots of [`SLOT_LEN`] bytes; generation `g` is written to slot `g % 2`, so a write torn
//! by a crash damages only one slot and the other still holds `g - 1`:
//!
//! ```text
//! magic "vserv-mark-v1\0\0\0" (16) | store id (16) | generation u64 BE (8) | zero (8)
//!   | SHA-256 of the preceding 48 bytes, first 16 bytes (16)
//! ```
//!
//! The mark is written after the commit it records is durable (never ahead of the store), in
//! place and without an fsync of its own: after a power loss it may lag the store, never lead
//! it, so a lagging mark only weakens the check, it never refuses a good store.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::atomic::{self, Existing};

/// The mark's file name inside the data directory.
pub const MARK_FILE: &str = "store.mark";

/// Bytes of one slot.
pub const SLOT_LEN: usize = 64;

const MAGIC: &[u8; 16] = b"vserv-mark-v1\0\0\0";

/// What a mark records: the store it belongs to and the last generation known durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The store id (`meta/store-id`) of the store this data directory holds.
    pub store_id: [u8; 16],
    /// The number of commits the store had made durable when the mark was written.
    pub generation: u64,
}

impl Mark {
    fn encode(self) -> [u8; SLOT_LEN] {
        let mut slot = [0u8; SLOT_LEN];
        slot[..16].copy_from_slice(MAGIC);
        slot[16..32].copy_from_slice(&self.store_id);
        slot[32..40].copy_from_slice(&self.generation.to_be_bytes());
        let digest = Sha256::digest(&slot[..48]);
        slot[48..].copy_from_slice(&digest[..16]);
        slot
    }

    fn decode(slot: &[u8]) -> Option<Mark> {
        if slot.len() != SLOT_LEN || &slot[..16] != MAGIC || slot[40..48] != [0; 8] {
            return None;
        }
        let digest = Sha256::digest(&slot[..48]);
        if slot[48..] != digest[..16] {
            return None;
        }
        Some(Mark {
            store_id: slot[16..32].try_into().ok()?,
            generation: u64::from_be_bytes(slot[32..40].try_into().ok()?),
        })
    }
}

/// What reading the mark found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadMark {
    /// No mark file: a new data directory, or one from before marks existed.
    Absent,
    /// The newest valid slot.
    Found(Mark),
    /// The file exists but no slot is valid (it was damaged or replaced).
    Damaged(String),
}

/// The mark's path inside `data_dir`.
pub fn mark_path(data_dir: &Path) -> PathBuf {
    data_dir.join(MARK_FILE)
}

/// Reads the mark of `data_dir`, modifying nothing.
///
/// # Errors
///
/// I/O failures other than the file being absent.
pub fn read(data_dir: &Path) -> io::Result<ReadMark> {
    let path = mark_path(data_dir);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ReadMark::Absent),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::with_capacity(2 * SLOT_LEN);
    file.take(2 * SLOT_LEN as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() != 2 * SLOT_LEN {
        return Ok(ReadMark::Damaged(format!(
            "{} has {} bytes, expected {}",
            path.display(),
            bytes.len(),
            2 * SLOT_LEN
        )));
    }
    let newest = bytes
        .chunks_exact(SLOT_LEN)
        .filter_map(Mark::decode)
        .max_by_key(|m| m.generation);
    Ok(match newest {
        Some(mark) => ReadMark::Found(mark),
        None => ReadMark::Damaged(format!("{} holds no valid record", path.display())),
    })
}

/// The open mark file of a store, updated after each durable commit.
#[derive(Debug)]
pub struct MarkWriter {
    file: File,
}

impl MarkWriter {
    /// Replaces the mark of `data_dir` with `mark` in both slots (atomically and durably) and
    /// opens it for [`MarkWriter::record`].
    ///
    /// # Errors
    ///
    /// I/O failures; the previous mark (if any) is then unchanged.
    pub fn create(data_dir: &Path, mark: Mark) -> io::Result<MarkWriter> {
        let path = mark_path(data_dir);
        let previous = Mark {
            generation: mark.generation.wrapping_sub(1),
            ..mark
        };
        let (first, second) = if mark.generation.is_multiple_of(2) {
            (mark, previous)
        } else {
            (previous, mark)
        };
        let mut contents = Vec::with_capacity(2 * SLOT_LEN);
        contents.extend_from_slice(&first.encode());
        contents.extend_from_slice(&second.encode());
        atomic::write_file(&path, &contents, 0o600, Existing::Replace)?;
        let file = OpenOptions::new().write(true).open(&path)?;
        Ok(MarkWriter { file })
    }

    /// Records `mark` in its slot (no fsync: see the module docs).
    ///
    /// # Errors
    ///
    /// I/O failures; the mark then lags the store, which only weakens the check.
    pub fn record(&self, mark: Mark) -> io::Result<()> {
        let offset = (mark.generation % 2) * SLOT_LEN as u64;
        self.file.write_all_at(&mark.encode(), offset)
    }

    /// Makes the recorded mark durable.
    ///
    /// # Errors
    ///
    /// I/O failures.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_reject_damage() {
        let mark = Mark {
            store_id: [7; 16],
            generation: 12_345,
        };
        let slot = mark.encode();
        assert_eq!(Mark::decode(&slot), Some(mark));
        for i in 0..SLOT_LEN {
            let mut bad = slot;
            bad[i] ^= 0x01;
            assert_eq!(Mark::decode(&bad), None, "byte {i}");
        }
    }

    #[test]
    fn the_newest_valid_slot_wins_and_a_torn_slot_falls_back() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(read(dir.path())?, ReadMark::Absent);
        let id = [3; 16];
        let writer = MarkWriter::create(
            dir.path(),
            Mark {
                store_id: id,
                generation: 1,
            },
        )?;
        for generation in 2..=5 {
            writer.record(Mark {
                store_id: id,
                generation,
            })?;
        }
        let found = |g| {
            ReadMark::Found(Mark {
                store_id: id,
                generation: g,
            })
        };
        assert_eq!(read(dir.path())?, found(5));
        // Generation 5 lives in slot 1: tearing it leaves generation 4.
        writer.file.write_all_at(&[0xff; 8], SLOT_LEN as u64 + 20)?;
        assert_eq!(read(dir.path())?, found(4));
        writer.file.write_all_at(&[0xff; 8], 20)?;
        assert!(matches!(read(dir.path())?, ReadMark::Damaged(_)));
        writer.file.set_len(10)?;
        assert!(matches!(read(dir.path())?, ReadMark::Damaged(_)));
        Ok(())
    }
}
