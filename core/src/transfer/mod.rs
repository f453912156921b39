//! File transfer machines (`put` / `get`), sans-IO: no files, no sockets, no clock.
//!
//! Transfers ride the command layer (spec/files.md): every chunk is one request or one
//! response, so each fits one record, and the flow-control window is the connection's limit
//! on outstanding requests. The machines here decide *what* to send, *where* bytes go and
//! whether the SHA-256 of the whole file matches; the driver moves the bytes between the
//! file system and the connection.
//!
//! | side | upload (`put`) | download (`get`) |
//! |---|---|---|
//! | client | [`UploadSender`] | [`DownloadReceiver`] |
//! | server | [`UploadReceiver`] (in [`ServerTransfers`]) | [`DownloadSender`] (in [`ServerTransfers`]) |
//!
//! Memory is bounded whatever the file size: the senders hold no data, the upload receiver
//! holds none either (each chunk is hashed and handed to the driver to write), and the
//! download receiver buffers at most `window` chunks while it reorders replies. Offsets and
//! sizes are `u64` everywhere.
//!
//! Resume: [`UploadReceiver::checkpoint`] gives an [`UploadState`] (bytes via
//! [`UploadState::encode`]) that the server stores beside the partial file once that file is
//! durable up to the state's offset. SHA-256 state is not serialisable, so a restore
//! ([`UploadReceiver::restore`]) re-hashes the partial file: the driver feeds its bytes back
//! and the machine checks them against the prefix hash kept in the state. Clients resume the
//! same way ([`UploadSender::resume`], [`DownloadReceiver::resume`]).

mod codec;
mod download;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzz;
mod refeed;
mod table;
mod upload;

pub use codec::{
    FcloseArgs, FdoneArgs, FdoneReply, FgetArgs, FgetReply, FopenArgs, FopenReply, FputArgs,
    FreadArgs, FreadReply, ack_fields, parse_ack,
};
pub use download::{DownloadReceiver, DownloadRestore, DownloadSender, ReadAt};
pub use error::{INTEGRITY_ERROR_CODE, TransferError};
pub use table::{DEFAULT_MAX_TRANSFERS, ServerTransfer, ServerTransfers};
pub use upload::{
    ChunkPlan, Progress, ResumeOutcome, UploadReceiver, UploadRestore, UploadSender,
    UploadSenderRestore, UploadState, WriteAt,
};

use sha2::{Digest, Sha256};

use crate::wire::MAX_PAYLOAD;

/// Incremental SHA-256 of a file's bytes, for drivers that hash a stored file (a server
/// computing the hash `fget` reports for a file whose upload did not record one).
#[derive(Debug, Clone, Default)]
pub struct FileHasher(Sha256);

impl FileHasher {
    /// A hasher that has seen nothing (its digest is [`EMPTY_SHA256`]).
    pub fn new() -> Self {
        FileHasher(Sha256::new())
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The SHA-256 of every byte fed.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }

    /// The SHA-256 of the bytes fed so far; hashing can go on after it.
    pub fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// Bytes of an `fput` request other than its data: request header (type 1, id 4, name
/// length 1, `"fput"` 4, argc 2), then `ID` (4 + 4), `OFFSET` (4 + 8) and the data's length
/// prefix (4).
pub const FPUT_OVERHEAD: usize = 1 + 4 + 1 + 4 + 2 + (4 + 4) + (4 + 8) + 4;

/// Largest `fput` data: the request is then exactly [`MAX_PAYLOAD`] bytes (16348).
pub const MAX_FPUT_DATA: usize = MAX_PAYLOAD - FPUT_OVERHEAD;

/// Bytes of a successful `fread` response other than its data: type 1, id 4, status 1,
/// fieldc 2, the data's length prefix 4.
pub const FREAD_REPLY_OVERHEAD: usize = 1 + 4 + 1 + 2 + 4;

/// Largest `fread` length: the response is then exactly [`MAX_PAYLOAD`] bytes (16372).
pub const MAX_FREAD_LEN: usize = MAX_PAYLOAD - FREAD_REPLY_OVERHEAD;

/// Longest `PATH` argument of `fopen` and `fget`, in bytes.
pub const MAX_PATH: usize = 4096;

/// Largest `SIZE` an `fopen` accepts (2^63 − 1): the largest file offset a file system can
/// hold (a POSIX `off_t` is signed 64-bit). A larger `SIZE` is a bad argument (error 2).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// SHA-256 of the empty string: the prefix hash at offset 0.
pub const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];
