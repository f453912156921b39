//! Download machines: [`DownloadSender`] (server) and [`DownloadReceiver`] (client).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::refeed::{Refeed, end_of};
use super::upload::Progress;
use super::{FileHasher, FreadArgs, MAX_FREAD_LEN, TransferError};

/// Where the server reads the bytes of an accepted `fread` (reply with exactly these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAt {
    /// Offset in the file.
    pub offset: u64,
    /// Number of bytes (1 to [`MAX_FREAD_LEN`]).
    pub len: usize,
}

/// Server side of a download: validates each `fread` against the file's size. Reads are
/// independent (any order, repeats allowed), so it keeps no per-read state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadSender {
    size: u64,
    sha256: [u8; 32],
}

impl DownloadSender {
    /// A sender for one version of a file: its size and its recorded SHA-256.
    pub fn new(size: u64, sha256: [u8; 32]) -> Self {
        DownloadSender { size, sha256 }
    }

    /// The file size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's SHA-256.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Validates a read of `len` bytes at `offset`: 1 to [`MAX_FREAD_LEN`] bytes, all within
    /// the file.
    pub fn read(&self, offset: u64, len: usize) -> Result<ReadAt, TransferError> {
        if len == 0 {
            return Err(TransferError::EmptyChunk);
        }
        if len > MAX_FREAD_LEN {
            return Err(TransferError::ChunkTooLarge {
                len: len as u64,
                max: MAX_FREAD_LEN,
            });
        }
        if end_of(offset, len) > self.size {
            return Err(TransferError::PastEnd {
                offset,
                len: len as u64,
                size: self.size,
            });
        }
        Ok(ReadAt { offset, len })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Active,
    Done,
    Failed,
}

/// Client side of a download: keeps up to `window` `fread` requests in flight, takes the
/// replies in any order, releases the data strictly in file order (so the local file is
/// always a contiguous prefix), hashes it, and checks the SHA-256 at the end.
///
/// Memory: at most `window` chunks are outstanding or buffered together.
#[derive(Debug, Clone)]
pub struct DownloadReceiver {
    id: u32,
    size: u64,
    sha256: [u8; 32],
    chunk: usize,
    window: usize,
    /// Next offset to request.
    next: u64,
    /// Bytes released in order (and hashed).
    delivered: u64,
    /// Requested chunks by offset: `None` while in flight, `Some` once arrived out of order.
    slots: BTreeMap<u64, Option<Vec<u8>>>,
    /// The hash of the released bytes; `None` once handed to the driver.
    hasher: Option<Sha256>,
    phase: Phase,
}

impl DownloadReceiver {
    /// A receiver for transfer `id` (from `fget`) of a file of `size` bytes with SHA-256
    /// `sha256`, starting at offset 0, with at most `window` chunks of `chunk` bytes (1 to
    /// [`MAX_FREAD_LEN`]) requested or buffered.
    pub fn new(
        id: u32,
        size: u64,
        sha256: [u8; 32],
        window: usize,
        chunk: usize,
    ) -> Result<Self, TransferError> {
        if window == 0 {
            return Err(TransferError::ZeroWindow);
        }
        if chunk == 0 || chunk > MAX_FREAD_LEN {
            return Err(TransferError::BadChunkSize {
                len: chunk,
                max: MAX_FREAD_LEN,
            });
        }
        Ok(DownloadReceiver {
            id,
            size,
            sha256,
            chunk,
            window,
            next: 0,
            delivered: 0,
            slots: BTreeMap::new(),
            hasher: Some(Sha256::new()),
            phase: Phase::Active,
        })
    }

    /// A receiver that continues a partial local copy: feed its bytes from offset 0 into the
    /// returned restore (at most `size`), and the download continues where they end. A
    /// partial copy of another version of the file fails the final hash check.
    pub fn resume(
        id: u32,
        size: u64,
        sha256: [u8; 32],
        window: usize,
        chunk: usize,
    ) -> Result<DownloadRestore, TransferError> {
        Ok(DownloadRestore {
            receiver: DownloadReceiver::new(id, size, sha256, window, chunk)?,
            refeed: Refeed::new(size),
        })
    }

    /// The transfer id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next `fread` to send, if the window has room and bytes are left to request. The
    /// request is then in flight.
    pub fn next_request(&mut self) -> Option<FreadArgs> {
        if self.phase != Phase::Active || self.next >= self.size || self.slots.len() >= self.window
        {
            return None;
        }
        let left = self.size - self.next;
        let len = usize::try_from(left).map_or(self.chunk, |l| l.min(self.chunk));
        let offset = self.next;
        self.slots.insert(offset, None);
        self.next = end_of(offset, len);
        Some(FreadArgs {
            id: self.id,
            offset,
            len: u32::try_from(len).unwrap_or(u32::MAX),
        })
    }

    fn expected_len(&self, offset: u64) -> u64 {
        (self.size - offset).min(self.chunk as u64)
    }

    /// Takes the reply to the `fread` at `offset`. It must be in flight and carry exactly the
    /// bytes asked for; a refused reply changes nothing.
    pub fn on_data(&mut self, offset: u64, data: Vec<u8>) -> Result<(), TransferError> {
        if self.phase != Phase::Active {
            return Err(TransferError::Finished);
        }
        let expected = self.expected_len(offset.min(self.size));
        match self.slots.get_mut(&offset) {
            Some(slot @ None) => {
                if data.len() as u64 != expected {
                    return Err(TransferError::WrongLength {
                        offset,
                        got: data.len() as u64,
                        expected,
                    });
                }
                *slot = Some(data);
                Ok(())
            }
            _ => Err(TransferError::NotOutstanding(offset)),
        }
    }

    /// The next chunk in file order, if it has arrived: the driver appends it to the local
    /// file at the returned offset. Call until `None` after every [`on_data`](Self::on_data).
    pub fn pop_ready(&mut self) -> Option<(u64, Vec<u8>)> {
        let first = self.slots.first_entry()?;
        if *first.key() != self.delivered || first.get().is_none() {
            return None;
        }
        let data = first.remove()?;
        let offset = self.delivered;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&data);
        }
        self.delivered = end_of(offset, data.len());
        Some((offset, data))
    }

    /// A request failed (error reply, dropped connection): the transfer is over; resume it
    /// with a new `fget` and [`resume`](Self::resume).
    pub fn fail(&mut self) {
        self.phase = Phase::Failed;
        self.slots.clear();
    }

    /// Requests in flight plus replies buffered out of order (never more than the window).
    pub fn in_use(&self) -> usize {
        self.slots.len()
    }

    /// Replies buffered out of order.
    pub fn buffered(&self) -> usize {
        self.slots.values().filter(|s| s.is_some()).count()
    }

    /// Bytes released in order.
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.delivered,
            size: self.size,
        }
    }

    /// Whether every byte was released, so [`finish`](Self::finish) can check the hash.
    pub fn is_complete(&self) -> bool {
        self.phase == Phase::Active && self.delivered == self.size
    }

    /// Hands the hash of the bytes released so far to the driver, which from then on feeds
    /// it every chunk [`pop_ready`](Self::pop_ready) releases, in that order (for instance
    /// on the thread that writes the file, so hashing runs beside the connection), and
    /// gives it back to [`finish_with`](Self::finish_with). `pop_ready` stops hashing;
    /// `None` if the hasher was already taken.
    pub fn take_hasher(&mut self) -> Option<FileHasher> {
        self.hasher.take().map(FileHasher)
    }

    /// Checks the SHA-256 of the whole file; on success the driver makes the local file
    /// visible under its name. A mismatch ends the transfer (start again from 0).
    pub fn finish(&mut self) -> Result<[u8; 32], TransferError> {
        self.ready()?;
        let hasher = self.hasher.take().ok_or(TransferError::HasherTaken)?;
        self.check(hasher)
    }

    /// [`finish`](Self::finish) for a driver that took the hasher: `hasher` must have been
    /// fed every released byte after [`take_hasher`](Self::take_hasher), in order.
    pub fn finish_with(&mut self, hasher: FileHasher) -> Result<[u8; 32], TransferError> {
        self.ready()?;
        if self.hasher.is_some() {
            return Err(TransferError::BadState);
        }
        self.check(hasher.0)
    }

    fn ready(&self) -> Result<(), TransferError> {
        if self.phase != Phase::Active {
            return Err(TransferError::Finished);
        }
        if self.delivered != self.size {
            return Err(TransferError::Incomplete {
                have: self.delivered,
                size: self.size,
            });
        }
        Ok(())
    }

    fn check(&mut self, hasher: Sha256) -> Result<[u8; 32], TransferError> {
        let got: [u8; 32] = hasher.finalize().into();
        if got != self.sha256 {
            self.phase = Phase::Failed;
            return Err(TransferError::HashMismatch);
        }
        self.phase = Phase::Done;
        Ok(got)
    }
}

/// A [`DownloadReceiver`] being restored from a partial local copy.
#[derive(Debug, Clone)]
pub struct DownloadRestore {
    receiver: DownloadReceiver,
    refeed: Refeed,
}

impl DownloadRestore {
    /// Feeds the partial copy's next bytes (in order, from offset 0, at most the size).
    pub fn feed(&mut self, data: &[u8]) -> Result<(), TransferError> {
        self.refeed.feed(data)
    }

    /// Bytes fed so far: where the download continues.
    pub fn fed(&self) -> u64 {
        self.refeed.fed
    }

    /// The receiver, continuing after the bytes fed.
    pub fn finish(self) -> DownloadReceiver {
        let Refeed { hasher, fed, .. } = self.refeed;
        DownloadReceiver {
            next: fed,
            delivered: fed,
            hasher: Some(hasher),
            ..self.receiver
        }
    }
}
