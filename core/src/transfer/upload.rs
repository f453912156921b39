//! Upload machines: [`UploadSender`] (client) and [`UploadReceiver`] (server).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::refeed::{Refeed, digest_so_far, end_of};
use super::{FdoneArgs, FdoneReply, FileHasher, FputArgs, MAX_FPUT_DATA, TransferError};

/// The next chunk a sender wants to send: the driver reads `len` bytes at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Offset in the file.
    pub offset: u64,
    /// Number of bytes (at least 1).
    pub len: usize,
}

/// Where the driver writes the bytes of an accepted chunk (the partial file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAt {
    /// Offset in the file.
    pub offset: u64,
    /// Number of bytes.
    pub len: usize,
}

/// How far a transfer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes the peer confirmed (upload) or delivered in order (download).
    pub done: u64,
    /// The file size.
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Active,
    Done,
    Failed,
}

fn check_setup(window: usize, chunk: usize, max: usize) -> Result<(), TransferError> {
    if window == 0 {
        return Err(TransferError::ZeroWindow);
    }
    if chunk == 0 || chunk > max {
        return Err(TransferError::BadChunkSize { len: chunk, max });
    }
    Ok(())
}

/// Client side of an upload: yields `fput` chunks while the window has room, consumes
/// acknowledgements, and hashes the bytes it sends so that `fdone` can carry the SHA-256.
///
/// It never holds file data: the driver reads the bytes of each [`ChunkPlan`] and passes
/// them to [`send`](Self::send). It remembers at most `window` outstanding offsets.
#[derive(Debug, Clone)]
pub struct UploadSender {
    id: u32,
    size: u64,
    chunk: usize,
    window: usize,
    next: u64,
    acked: u64,
    outstanding: BTreeMap<u64, usize>,
    /// The hash of the bytes sent; `None` once handed to the driver.
    hasher: Option<Sha256>,
    /// The SHA-256 `fdone` carries, once [`UploadSender::finish_with`] computed it.
    claimed: Option<[u8; 32]>,
    phase: Phase,
}

impl UploadSender {
    /// A sender for transfer `id` (from `fopen`) of a `size`-byte file starting at offset 0,
    /// keeping at most `window` chunks of `chunk` bytes (1 to [`MAX_FPUT_DATA`]) in flight.
    pub fn new(id: u32, size: u64, window: usize, chunk: usize) -> Result<Self, TransferError> {
        check_setup(window, chunk, MAX_FPUT_DATA)?;
        Ok(UploadSender {
            id,
            size,
            chunk,
            window,
            next: 0,
            acked: 0,
            outstanding: BTreeMap::new(),
            hasher: Some(Sha256::new()),
            claimed: None,
            phase: Phase::Active,
        })
    }

    /// A sender that continues at the `offset` and `prefix_sha256` of an `fopen` reply. The
    /// driver re-feeds its file's bytes `0..offset` into the returned restore, which checks
    /// them against the server's prefix hash.
    pub fn resume(
        id: u32,
        size: u64,
        window: usize,
        chunk: usize,
        offset: u64,
        prefix_sha256: [u8; 32],
    ) -> Result<UploadSenderRestore, TransferError> {
        let sender = UploadSender::new(id, size, window, chunk)?;
        if offset > size {
            return Err(TransferError::PastEnd {
                offset,
                len: 0,
                size,
            });
        }
        Ok(UploadSenderRestore {
            sender,
            refeed: Refeed::new(offset),
            prefix_sha256,
        })
    }

    /// The transfer id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next chunk to read and send, if the window has room and bytes are left.
    pub fn next_chunk(&self) -> Option<ChunkPlan> {
        if self.phase != Phase::Active
            || self.next >= self.size
            || self.outstanding.len() >= self.window
        {
            return None;
        }
        let left = self.size - self.next;
        let len = usize::try_from(left).map_or(self.chunk, |l| l.min(self.chunk));
        Some(ChunkPlan {
            offset: self.next,
            len,
        })
    }

    /// Records that the bytes of the current [`ChunkPlan`] are being sent and returns the
    /// `fput` arguments. `offset` and `data.len()` must match [`next_chunk`](Self::next_chunk).
    pub fn send<'d>(&mut self, offset: u64, data: &'d [u8]) -> Result<FputArgs<'d>, TransferError> {
        if self.phase != Phase::Active {
            return Err(TransferError::Finished);
        }
        let plan = self.next_chunk().ok_or(TransferError::WindowFull)?;
        if offset != plan.offset {
            return Err(TransferError::OutOfOrder {
                expected: plan.offset,
                got: offset,
            });
        }
        if data.len() != plan.len {
            return Err(TransferError::WrongLength {
                offset,
                got: data.len() as u64,
                expected: plan.len as u64,
            });
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(data);
        }
        self.next = end_of(offset, data.len());
        self.outstanding.insert(offset, data.len());
        Ok(FputArgs {
            id: self.id,
            offset,
            data,
        })
    }

    /// Consumes the acknowledgement of the chunk sent at `offset`.
    pub fn on_ack(&mut self, offset: u64) -> Result<Progress, TransferError> {
        if self.phase != Phase::Active {
            return Err(TransferError::Finished);
        }
        let len = self
            .outstanding
            .remove(&offset)
            .ok_or(TransferError::NotOutstanding(offset))?;
        self.acked = end_of(self.acked, len);
        Ok(self.progress())
    }

    /// The server refused a chunk (or the connection failed): the transfer is over; resume
    /// it with a new `fopen ... resume`.
    pub fn fail(&mut self) {
        self.phase = Phase::Failed;
        self.outstanding.clear();
    }

    /// Acknowledged bytes so far.
    pub fn progress(&self) -> Progress {
        Progress {
            done: self.acked,
            size: self.size,
        }
    }

    /// Chunks sent and not yet acknowledged (never more than the window).
    pub fn in_flight(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether every byte was sent and acknowledged, so `fdone` may be sent.
    pub fn is_complete(&self) -> bool {
        self.phase == Phase::Active && self.next == self.size && self.outstanding.is_empty()
    }

    /// Hands the hash of the bytes sent so far to the driver, which from then on feeds it
    /// the bytes of every chunk it sends, in order (for instance on the thread that reads
    /// the file, so hashing runs beside the connection), and gives it back to
    /// [`finish_with`](Self::finish_with). `send` stops hashing; `None` if already taken.
    pub fn take_hasher(&mut self) -> Option<FileHasher> {
        self.hasher.take().map(FileHasher)
    }

    /// The `fdone` arguments, carrying the SHA-256 of every byte sent.
    pub fn finish(&self) -> Result<FdoneArgs, TransferError> {
        self.ready()?;
        if let Some(sha256) = self.claimed {
            return Ok(FdoneArgs {
                id: self.id,
                sha256,
            });
        }
        let hasher = self.hasher.as_ref().ok_or(TransferError::HasherTaken)?;
        Ok(FdoneArgs {
            id: self.id,
            sha256: digest_so_far(hasher),
        })
    }

    /// [`finish`](Self::finish) for a driver that took the hasher: `hasher` must have been
    /// fed the bytes of every chunk sent after [`take_hasher`](Self::take_hasher), in
    /// order. (A wrong hash is caught by the server at `fdone`.)
    pub fn finish_with(&mut self, hasher: FileHasher) -> Result<FdoneArgs, TransferError> {
        self.ready()?;
        if self.hasher.is_some() {
            return Err(TransferError::BadState);
        }
        let sha256 = hasher.finish();
        self.claimed = Some(sha256);
        Ok(FdoneArgs {
            id: self.id,
            sha256,
        })
    }

    fn ready(&self) -> Result<(), TransferError> {
        if self.phase != Phase::Active {
            return Err(TransferError::Finished);
        }
        if !self.is_complete() {
            return Err(TransferError::Incomplete {
                have: self.acked,
                size: self.size,
            });
        }
        Ok(())
    }

    /// Checks the server's `fdone` reply against what was sent; the upload is then over.
    pub fn on_done(&mut self, reply: &FdoneReply) -> Result<(), TransferError> {
        let ours = self.finish()?;
        if reply.size != self.size || reply.sha256 != ours.sha256 {
            self.phase = Phase::Failed;
            return Err(TransferError::ReportMismatch { size: reply.size });
        }
        self.phase = Phase::Done;
        Ok(())
    }
}

/// An [`UploadSender`] waiting for the local file's bytes before the resume offset.
#[derive(Debug, Clone)]
pub struct UploadSenderRestore {
    sender: UploadSender,
    refeed: Refeed,
    prefix_sha256: [u8; 32],
}

impl UploadSenderRestore {
    /// Feeds the next bytes of the local file (in order, from offset 0).
    pub fn feed(&mut self, data: &[u8]) -> Result<(), TransferError> {
        self.refeed.feed(data)
    }

    /// Bytes still to feed.
    pub fn remaining(&self) -> u64 {
        self.refeed.limit - self.refeed.fed
    }

    /// The sender, positioned at the resume offset, if the re-fed bytes hash to the server's
    /// prefix hash. [`TransferError::PrefixMismatch`] means the local file differs from the
    /// server's partial copy: open again without `resume`.
    pub fn finish(self) -> Result<UploadSender, TransferError> {
        let Refeed { hasher, fed, limit } = self.refeed;
        if fed != limit {
            return Err(TransferError::RefeedShort {
                have: fed,
                need: limit,
            });
        }
        if digest_so_far(&hasher) != self.prefix_sha256 {
            return Err(TransferError::PrefixMismatch(limit));
        }
        Ok(UploadSender {
            next: limit,
            acked: limit,
            hasher: Some(hasher),
            ..self.sender
        })
    }
}

/// Server side of an upload: accepts chunks strictly in order and within the size, hashes
/// them (or lets the driver hash them, [`take_hasher`](Self::take_hasher)), tells the
/// driver where to write them, and checks the whole file's SHA-256 at `fdone`. It holds no
/// file data.
#[derive(Debug, Clone)]
pub struct UploadReceiver {
    size: u64,
    offset: u64,
    /// `None` once the driver took it.
    hasher: Option<Sha256>,
    phase: Phase,
}

/// The resumable state of an upload, saved by the server beside its partial file.
///
/// Encoding (49 bytes): `0x01 | size:u64 | offset:u64 | prefix_sha256[32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadState {
    /// Size of the file being uploaded.
    pub size: u64,
    /// Bytes of the partial file known durable and hashed.
    pub offset: u64,
    /// SHA-256 of the partial file's bytes `0..offset`.
    pub prefix_sha256: [u8; 32],
}

const STATE_VERSION: u8 = 1;

impl UploadState {
    /// Length of the encoding.
    pub const LEN: usize = 1 + 8 + 8 + 32;

    /// The encoding.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[0] = STATE_VERSION;
        out[1..9].copy_from_slice(&self.size.to_be_bytes());
        out[9..17].copy_from_slice(&self.offset.to_be_bytes());
        out[17..].copy_from_slice(&self.prefix_sha256);
        out
    }

    /// Decodes an encoding; refuses other lengths, versions, and an offset past the size.
    pub fn decode(bytes: &[u8]) -> Result<Self, TransferError> {
        let b: &[u8; Self::LEN] = bytes.try_into().map_err(|_| TransferError::BadState)?;
        let mut size = [0u8; 8];
        let mut offset = [0u8; 8];
        let mut prefix_sha256 = [0u8; 32];
        size.copy_from_slice(&b[1..9]);
        offset.copy_from_slice(&b[9..17]);
        prefix_sha256.copy_from_slice(&b[17..]);
        let state = UploadState {
            size: u64::from_be_bytes(size),
            offset: u64::from_be_bytes(offset),
            prefix_sha256,
        };
        if b[0] != STATE_VERSION || state.offset > state.size {
            return Err(TransferError::BadState);
        }
        Ok(state)
    }
}

/// How a restored upload continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// The partial file checked out: continue at this offset.
    Resumed(u64),
    /// The partial file was shorter than the saved offset or hashed differently: truncate it
    /// and start again at 0.
    Restarted,
}

impl UploadReceiver {
    /// A receiver for a new upload of `size` bytes.
    pub fn new(size: u64) -> Self {
        UploadReceiver {
            size,
            offset: 0,
            hasher: Some(Sha256::new()),
            phase: Phase::Active,
        }
    }

    /// Starts restoring a saved upload: feed the partial file's bytes `0..state.offset`,
    /// then [`UploadRestore::finish`].
    pub fn restore(state: &UploadState) -> UploadRestore {
        UploadRestore {
            size: state.size,
            refeed: Refeed::new(state.offset.min(state.size)),
            prefix_sha256: state.prefix_sha256,
        }
    }

    /// The next offset needed (= bytes accepted).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// SHA-256 of the bytes accepted so far (the `fopen` reply's prefix hash);
    /// [`TransferError::HasherTaken`] once the driver hashes.
    pub fn prefix_sha256(&self) -> Result<[u8; 32], TransferError> {
        self.hasher
            .as_ref()
            .map(digest_so_far)
            .ok_or(TransferError::HasherTaken)
    }

    /// The state to save once the partial file is durable up to [`offset`](Self::offset);
    /// [`TransferError::HasherTaken`] once the driver hashes (its hasher then gives the
    /// prefix hash of the same bytes).
    pub fn checkpoint(&self) -> Result<UploadState, TransferError> {
        Ok(UploadState {
            size: self.size,
            offset: self.offset,
            prefix_sha256: self.prefix_sha256()?,
        })
    }

    /// Hands the hashing to the driver, which can then hash on another thread: the
    /// returned hasher has seen bytes `0..offset`, and the driver feeds it every chunk this
    /// receiver accepts from now on, in order, then gives it to
    /// [`finish_with`](Self::finish_with). `None` if it was already taken.
    pub fn take_hasher(&mut self) -> Option<FileHasher> {
        self.hasher.take().map(FileHasher)
    }

    /// Accepts the chunk `data` at `offset`: it must start exactly at [`offset`](Self::offset),
    /// hold 1 to [`MAX_FPUT_DATA`] bytes and end within the size. On success the driver
    /// writes `data` where [`WriteAt`] says; a refused chunk changes nothing.
    pub fn accept(&mut self, offset: u64, data: &[u8]) -> Result<WriteAt, TransferError> {
        if self.phase != Phase::Active {
            return Err(TransferError::Finished);
        }
        if data.is_empty() {
            return Err(TransferError::EmptyChunk);
        }
        if data.len() > MAX_FPUT_DATA {
            return Err(TransferError::ChunkTooLarge {
                len: data.len() as u64,
                max: MAX_FPUT_DATA,
            });
        }
        if offset != self.offset {
            return Err(TransferError::OutOfOrder {
                expected: self.offset,
                got: offset,
            });
        }
        let end = end_of(offset, data.len());
        if end > self.size {
            return Err(TransferError::PastEnd {
                offset,
                len: data.len() as u64,
                size: self.size,
            });
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(data);
        }
        self.offset = end;
        Ok(WriteAt {
            offset,
            len: data.len(),
        })
    }

    /// `fdone`: all bytes must have arrived ([`TransferError::Incomplete`] changes nothing);
    /// then the SHA-256 of the whole file must equal `claimed`. On success the driver makes
    /// the partial file visible under its name (fsync, atomic rename); on
    /// [`TransferError::HashMismatch`] the upload is over and the partial file is discarded.
    pub fn finish(&mut self, claimed: &[u8; 32]) -> Result<FdoneReply, TransferError> {
        self.ready_to_finish()?;
        let hasher = self.hasher.as_ref().ok_or(TransferError::HasherTaken)?;
        let sha256 = digest_so_far(hasher);
        self.check(claimed, sha256)
    }

    /// [`finish`](Self::finish) for a driver that took the hasher: `hasher` must have been
    /// fed every chunk accepted after [`take_hasher`](Self::take_hasher), in order.
    pub fn finish_with(
        &mut self,
        claimed: &[u8; 32],
        hasher: FileHasher,
    ) -> Result<FdoneReply, TransferError> {
        self.ready_to_finish()?;
        if self.hasher.is_some() {
            return Err(TransferError::BadState);
        }
        self.check(claimed, hasher.finish())
    }

    /// Whether `fdone` can check the hash now: [`TransferError::Finished`] after a
    /// finish, [`TransferError::Incomplete`] before every byte arrived.
    pub fn ready_to_finish(&self) -> Result<(), TransferError> {
        if self.phase != Phase::Active {
            return Err(TransferError::Finished);
        }
        if self.offset != self.size {
            return Err(TransferError::Incomplete {
                have: self.offset,
                size: self.size,
            });
        }
        Ok(())
    }

    fn check(&mut self, claimed: &[u8; 32], sha256: [u8; 32]) -> Result<FdoneReply, TransferError> {
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&sha256[..], &claimed[..])) {
            self.phase = Phase::Failed;
            return Err(TransferError::HashMismatch);
        }
        self.phase = Phase::Done;
        Ok(FdoneReply {
            size: self.size,
            sha256,
        })
    }

    /// Whether `fdone` succeeded.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// An [`UploadReceiver`] being restored from an [`UploadState`]: the driver feeds back the
/// partial file's bytes from offset 0.
#[derive(Debug, Clone)]
pub struct UploadRestore {
    size: u64,
    refeed: Refeed,
    prefix_sha256: [u8; 32],
}

impl UploadRestore {
    /// Feeds the partial file's next bytes; bytes past the saved offset are refused.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), TransferError> {
        self.refeed.feed(data)
    }

    /// Bytes still to feed.
    pub fn remaining(&self) -> u64 {
        self.refeed.limit - self.refeed.fed
    }

    /// The receiver and where it continues. If the partial file was shorter than the saved
    /// offset or its bytes do not hash to the saved prefix hash, the receiver starts again at
    /// 0 ([`ResumeOutcome::Restarted`]); the driver truncates the partial file to the
    /// receiver's offset either way.
    pub fn finish(self) -> (UploadReceiver, ResumeOutcome) {
        let Refeed { hasher, fed, limit } = self.refeed;
        if fed == limit && digest_so_far(&hasher) == self.prefix_sha256 {
            let receiver = UploadReceiver {
                size: self.size,
                offset: fed,
                hasher: Some(hasher),
                phase: Phase::Active,
            };
            (receiver, ResumeOutcome::Resumed(fed))
        } else {
            (UploadReceiver::new(self.size), ResumeOutcome::Restarted)
        }
    }
}
