//! The ledger's pure core: entries, signed heads, the accept rule and chain verification.
//!
//! Each server writes its own feed: a hash chain of [`Entry`] values (seq 1, 2, 3, ...), each
//! naming the hash of the entry before it. The exact bytes are specified in `spec/ledger.md`.
//!
//! # Why heads, not entries, are signed
//!
//! A k256 ECDSA signature costs tens of microseconds, which would cap appends at roughly
//! 30,000 per second per core if every entry were signed. Instead the server signs its feed
//! *head* — `(origin, seq, hash of entry seq)` — once per group commit ([`SignedHead`]).
//! Because every entry's hash covers the hash of the entry before it, a signed head at seq `n`
//! authenticates every entry `1..=n`: an entry is authenticated by any signed head at or after
//! it plus the hash links in between. Entries after the newest signed head are not yet
//! authenticated; [`ChainVerifier::finish_signed`] reports them.
//!
//! [`export`] is the JSON Lines export format and its streaming verifier.
//!
//! Nothing here performs I/O or reads a clock: timestamps are supplied by the caller.

mod entry;
pub mod export;
mod fields;
mod head;
mod origin_memo;
mod verify;

pub use entry::{
    ENTRY_HASH_CONTEXT, ENTRY_HEADER_LEN, ENTRY_VERSION, Entry, EntryFields, MAX_AUTHOR, MAX_BODY,
    MAX_ENCODED_ENTRY, MAX_KIND, MAX_RECORD_ID, ZERO_HASH, check_author, check_body, check_kind,
    check_record_id, hash_encoded,
};
pub use fields::{MAX_FIELD_KEY, body_to_fields, fields_to_body};
pub use head::{HEAD_SIGNING_CONTEXT, HEAD_VERSION, Head, SIGNED_HEAD_LEN, SignedHead};
pub(crate) use origin_memo::checked_origin;
pub use verify::{ChainVerifier, MAX_PENDING_HEADS, check_append};

/// Everything that can go wrong when building, decoding or verifying ledger data.
///
/// Chain errors carry the sequence number they are about, so a verifier can name the first
/// bad entry; [`LedgerError::seq`] extracts it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    // --- encoding ---
    /// The bytes are not a canonical encoding (short, trailing bytes, bad length prefix).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The version byte is not one this implementation knows.
    #[error("unsupported ledger encoding version {0}")]
    UnsupportedVersion(u8),
    /// The origin is not a valid compressed secp256k1 point.
    #[error("origin is not a valid server key")]
    BadOrigin,
    /// An entry's seq is 0 (entries are numbered from 1).
    #[error("entry seq must be at least 1")]
    ZeroSeq,
    /// The author is empty, longer than `MAX_AUTHOR` bytes, or not printable ASCII.
    #[error("author must be 1-32 bytes of printable ASCII (0x21-0x7e)")]
    InvalidAuthor,
    /// The kind breaks the kind rules (see [`check_kind`]).
    #[error("kind must be 1-64 bytes of [a-z0-9._-] starting with [a-z0-9]")]
    InvalidKind,
    /// The record id is empty or longer than `MAX_RECORD_ID` bytes.
    #[error("record id must be 1-64 bytes")]
    InvalidRecordId,
    /// The body is longer than [`MAX_BODY`].
    #[error("body of {len} bytes exceeds the limit of {max}")]
    BodyTooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        max: usize,
    },

    // --- field form ---
    /// A field-form body is not UTF-8.
    #[error("field body is not UTF-8")]
    FieldNotUtf8,
    /// A field line has no `=` or the body does not end with a newline.
    #[error("field line {line}: expected key=value terminated by a newline")]
    BadFieldLine {
        /// 1-based line number.
        line: usize,
    },
    /// A field key is empty, too long or not `[a-z0-9_]+`.
    #[error("field line {line}: key must be 1-32 bytes of [a-z0-9_]")]
    BadFieldKey {
        /// 1-based line number.
        line: usize,
    },
    /// A field value contains a control character other than tab.
    #[error("field line {line}: value contains a control character")]
    BadFieldValue {
        /// 1-based line number.
        line: usize,
    },
    /// A field key appears twice.
    #[error("field line {line}: duplicate key {key:?}")]
    DuplicateField {
        /// 1-based line number of the second occurrence.
        line: usize,
        /// The repeated key.
        key: String,
    },

    // --- chain ---
    /// The entry at this position could not be decoded.
    #[error("entry {seq}: {error}")]
    Undecodable {
        /// The seq expected at this position.
        seq: u64,
        /// Why decoding failed.
        error: Box<LedgerError>,
    },
    /// An entry's seq is not the next one.
    #[error("expected seq {expected}, got {got}")]
    Gap {
        /// The seq that should come next.
        expected: u64,
        /// The seq that came.
        got: u64,
    },
    /// Entry `seq`'s prev is not the hash of entry `seq - 1` (or not zero for seq 1).
    #[error("entry {seq}: prev does not match the hash of the entry before it")]
    BadLink {
        /// The entry whose prev is wrong.
        seq: u64,
    },
    /// An entry or head names a different origin than the feed being verified.
    #[error("seq {seq}: wrong origin")]
    WrongOrigin {
        /// The entry or head seq.
        seq: u64,
    },
    /// A signed head's hash does not match the chain at its seq.
    #[error("signed head at seq {seq} does not match the chain")]
    BadHead {
        /// The head's seq.
        seq: u64,
    },
    /// A signed head's signature does not verify under its origin.
    #[error("signed head at seq {seq}: bad signature")]
    BadSignature {
        /// The head's seq.
        seq: u64,
    },
    /// A signed head arrived after the verifier had already passed its seq.
    #[error("signed head at seq {seq} arrived after entry {at}")]
    HeadOutOfOrder {
        /// The head's seq.
        seq: u64,
        /// The last seq already verified.
        at: u64,
    },
    /// More than [`MAX_PENDING_HEADS`] signed heads wait for entries not yet seen.
    #[error("too many signed heads ahead of the chain")]
    TooManyPendingHeads,
    /// The chain ends before a signed head's seq: entry `seq` is missing.
    #[error("entry {seq} is missing (a signed head covers it)")]
    MissingEntry {
        /// The first missing seq.
        seq: u64,
    },
    /// Entries from `seq` on are not covered by any signed head.
    #[error("entries from seq {seq} on are not covered by a signed head")]
    Unsigned {
        /// The first unauthenticated seq.
        seq: u64,
    },
    /// The seq counter would overflow.
    #[error("seq overflow")]
    SeqOverflow,
}

impl LedgerError {
    /// The sequence number a chain error is about (the first bad seq), if any.
    /// For [`LedgerError::Gap`] it is the expected seq.
    pub fn seq(&self) -> Option<u64> {
        match self {
            LedgerError::Undecodable { seq, .. }
            | LedgerError::BadLink { seq }
            | LedgerError::WrongOrigin { seq }
            | LedgerError::BadHead { seq }
            | LedgerError::BadSignature { seq }
            | LedgerError::HeadOutOfOrder { seq, .. }
            | LedgerError::MissingEntry { seq }
            | LedgerError::Unsigned { seq } => Some(*seq),
            LedgerError::Gap { expected, .. } => Some(*expected),
            _ => None,
        }
    }
}
