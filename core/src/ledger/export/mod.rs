//! Ledger exports: a feed as JSON Lines that a third party verifies with nothing but the
//! server key's fingerprint (`spec/ledger.md` §7, "Export format").
//!
//! A file is a header line, the entry lines of seqs `from..=n` in order, and signed head
//! lines, each directly after the entry it covers; the last line is a head covering the last
//! entry:
//!
//! ```text
//! {"vserv_export":1,"origin":"<66 hex digits>","from":1}
//! {"seq":1,"entry":"<hex canonical entry encoding>"}
//! {"seq":2,"entry":"..."}
//! {"head":"<hex signed head encoding>"}
//! ```
//!
//! Every line has exactly one accepted spelling (lower-case hex, no spaces, fixed field
//! order, no other fields), so any changed byte is refused. [`ExportEncoder`] writes the
//! lines into a caller-owned buffer; [`ExportVerifier`] checks a file fed to it in chunks of
//! any size, buffering at most one line; [`verify_export`] checks one that is all in memory.
//! Nothing here reads or writes files: the caller moves the bytes.

mod encode;
mod line;
mod verify;

pub use encode::{EncodeError, ExportEncoder};
pub use verify::{ExportVerifier, verify_export};

use crate::ledger::{Head, LedgerError, MAX_ENCODED_ENTRY};
use crate::{Fingerprint, ServerKey};

/// The format version written in the header line.
pub const EXPORT_VERSION: u64 = 1;

/// The longest line a valid export holds, without its newline: an entry line with a 20-digit
/// seq and the largest entry. Longer lines are refused before they are buffered.
pub const MAX_LINE: usize = line::ENTRY_PREFIX.len()
    + 20
    + line::ENTRY_FIELD.len()
    + 2 * MAX_ENCODED_ENTRY
    + line::STRING_END.len();

/// What a successfully verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The feed's server key (its fingerprint is the one the caller gave).
    pub origin: ServerKey,
    /// The first seq the export covers (the header's `from`).
    pub from: u64,
    /// How many entries it holds (seqs `from..from + entries`).
    pub entries: u64,
    /// The last signed head: it covers the last entry. `None` for an export without entries.
    pub head: Option<Head>,
}

/// What is wrong with an export, found by [`ExportVerifier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportFault {
    /// The file is empty: it has no header line.
    #[error("the file is empty (no header line)")]
    Empty,
    /// The last line does not end with a newline (a truncated file).
    #[error("the line does not end with a newline (truncated file?)")]
    Unterminated,
    /// A line is longer than [`MAX_LINE`] bytes.
    #[error("the line is longer than {MAX_LINE} bytes")]
    TooLong,
    /// A line is not the exact canonical spelling of the line it should be.
    #[error("not a canonical {0} line")]
    NotCanonical(&'static str),
    /// The header names a format version this implementation does not know.
    #[error("unsupported export version {0}")]
    UnsupportedVersion(u64),
    /// The header's `from` is 0 (seqs start at 1).
    #[error("the header's from must be at least 1")]
    ZeroFrom,
    /// The header's origin is not a valid server key.
    #[error("the header's origin is not a valid server key")]
    BadOrigin,
    /// The feed belongs to another key than the one the caller trusts.
    #[error("the feed's key is {found}, not the expected {expected}")]
    WrongKey {
        /// The fingerprint the caller gave.
        expected: Fingerprint,
        /// The fingerprint of the header's origin.
        found: Fingerprint,
    },
    /// An entry line's `seq` field disagrees with the seq the line must have.
    #[error("the seq field says {got}, expected {expected}")]
    SeqField {
        /// The seq this line must carry.
        expected: u64,
        /// The seq field's value.
        got: u64,
    },
    /// A head line that does not directly follow an entry line.
    #[error("a head line must directly follow the entry line it covers")]
    HeadNotAfterEntry,
    /// A head line for another seq than the entry line before it.
    #[error("the head is for seq {head}, but the entry before it is seq {entry}")]
    HeadSeq {
        /// The head's seq.
        head: u64,
        /// The preceding entry's seq.
        entry: u64,
    },
    /// A head line's bytes are not a signed head encoding.
    #[error("undecodable signed head: {0}")]
    BadHeadEncoding(LedgerError),
    /// The chain or a signature does not verify (`spec/ledger.md` §4).
    #[error(transparent)]
    Chain(LedgerError),
}

/// Why an export failed verification: the line (1-based; one past the last line for a fault
/// found at the end of the file), the first bad seq when there is one, and the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExportError {
    /// The 1-based line number.
    pub line: u64,
    /// The first seq that could not be verified, when the fault concerns an entry.
    pub seq: Option<u64>,
    /// What is wrong.
    #[source]
    pub fault: ExportFault,
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (first bad seq {seq})")?;
        }
        write!(f, ": {}", self.fault)
    }
}
