//! The typed failures of the transfer machines.

use crate::wire::{ErrorCode, ErrorReply};

/// Wire error code of an integrity failure (SHA-256 mismatch at `fdone`): the upload is
/// discarded and must start again from offset 0: [`ErrorCode::Integrity`]'s wire number.
pub const INTEGRITY_ERROR_CODE: u16 = 9;

/// Why a transfer step was refused. A refused step leaves the machine unchanged unless the
/// variant says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// A window of zero chunks can never make progress.
    #[error("the transfer window must be at least 1 chunk")]
    ZeroWindow,
    /// A chunk size outside `1..=max`.
    #[error("chunk size {len} is outside 1..={max}")]
    BadChunkSize {
        /// Requested size.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// No open transfer of the needed direction has this id.
    #[error("no open transfer with id {0}")]
    UnknownTransfer(u32),
    /// The connection already has the maximum number of open transfers.
    #[error("too many open transfers on this connection (limit {0})")]
    TooManyTransfers(usize),
    /// An upload chunk does not start where the previous one ended (a gap or a repeat).
    #[error("chunk at offset {got} is out of order: the next offset is {expected}")]
    OutOfOrder {
        /// The offset the receiver needs next.
        expected: u64,
        /// The offset offered.
        got: u64,
    },
    /// The chunk or read reaches past the end of the file.
    #[error("{len} bytes at offset {offset} reach past the end of the {size}-byte file")]
    PastEnd {
        /// Start of the chunk.
        offset: u64,
        /// Its length.
        len: u64,
        /// The file size.
        size: u64,
    },
    /// A chunk or read of zero bytes.
    #[error("empty chunk")]
    EmptyChunk,
    /// A chunk larger than one record can carry.
    #[error("chunk of {len} bytes exceeds the limit of {max}")]
    ChunkTooLarge {
        /// Offered size.
        len: u64,
        /// Largest allowed.
        max: usize,
    },
    /// The transfer was finished before all its bytes arrived.
    #[error("transfer incomplete: {have} of {size} bytes")]
    Incomplete {
        /// Bytes received in order.
        have: u64,
        /// The file size.
        size: u64,
    },
    /// The bytes received do not hash to the expected SHA-256. The transfer is over.
    #[error("SHA-256 mismatch: the data does not hash to the expected value")]
    HashMismatch,
    /// The peer's final report (size or hash) disagrees with this side's.
    #[error("the peer reports {size} bytes with a different SHA-256 than sent")]
    ReportMismatch {
        /// The size the peer reported.
        size: u64,
    },
    /// A chunk was offered while the window is full or every byte was already sent.
    #[error("no chunk may be sent now: the window is full or all bytes were sent")]
    WindowFull,
    /// An acknowledgement or reply for an offset with no request outstanding.
    #[error("no request outstanding at offset {0}")]
    NotOutstanding(u64),
    /// A chunk handed to the sender or a reply from the server with the wrong length.
    #[error("chunk at offset {offset} has {got} bytes, expected {expected}")]
    WrongLength {
        /// Start of the chunk.
        offset: u64,
        /// Bytes offered.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The transfer already finished or failed; nothing more can be done with it.
    #[error("the transfer is over")]
    Finished,
    /// Re-fed bytes reach past the resume point or the file size.
    #[error("re-fed bytes reach offset {got}, past the limit {limit}")]
    RefeedOverrun {
        /// Where the bytes would end.
        got: u64,
        /// The limit.
        limit: u64,
    },
    /// Fewer bytes were re-fed than the resume point needs.
    #[error("re-fed {have} bytes but resuming at offset {need} needs all of them")]
    RefeedShort {
        /// Bytes re-fed.
        have: u64,
        /// The resume offset.
        need: u64,
    },
    /// The local file's first bytes differ from what the peer holds: start again at 0.
    #[error("the first {0} bytes differ from the peer's partial copy")]
    PrefixMismatch(u64),
    /// The receiver's hasher was handed to the driver: finish with the driver's hash.
    #[error("the hash is computed by the driver: finish with its hasher")]
    HasherTaken,
    /// A saved [`UploadState`](super::UploadState) does not decode.
    #[error("malformed saved transfer state")]
    BadState,
}

impl TransferError {
    /// The error reply a server sends when a request fails with this error.
    pub fn to_reply(&self) -> ErrorReply {
        let code = match self {
            TransferError::UnknownTransfer(_) => ErrorCode::NotFound,
            TransferError::TooManyTransfers(_) => ErrorCode::Conflict,
            TransferError::ChunkTooLarge { .. } => ErrorCode::TooLarge,
            TransferError::HashMismatch => ErrorCode::Integrity,
            TransferError::BadState => ErrorCode::Internal,
            _ => ErrorCode::BadArguments,
        };
        ErrorReply::new(code, self.to_string())
    }
}
