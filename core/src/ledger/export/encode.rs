//! [`ExportEncoder`]: writes an export's lines into a caller-owned buffer, enforcing the
//! format's order rules.

use super::line;
use crate::ServerKey;
use crate::ledger::{Entry, SignedHead};

/// Why [`ExportEncoder`] refused a line. Nothing is appended to the buffer on an error; what
/// was appended before is not a valid export unless more lines make it one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// `from` is 0.
    #[error("an export starts at seq 1 or later")]
    ZeroFrom,
    /// An entry of another feed.
    #[error("entry {seq} belongs to another feed")]
    WrongOrigin {
        /// The entry's seq.
        seq: u64,
    },
    /// An entry out of order.
    #[error("expected entry {expected}, got {got}")]
    OutOfOrder {
        /// The seq that must come next.
        expected: u64,
        /// The seq given.
        got: u64,
    },
    /// A signed head that does not cover the entry written just before it.
    #[error("the signed head at seq {seq} does not cover the entry written before it")]
    HeadMismatch {
        /// The head's seq.
        seq: u64,
    },
    /// The export has entries but does not end with a head covering the last one.
    #[error("the export does not end with a signed head covering entry {seq}")]
    Unsigned {
        /// The last entry's seq.
        seq: u64,
    },
}

/// Encodes an export line by line, enforcing the format's order rules (not its cryptography:
/// a tampered feed is encoded as it is and refused by the verifier).
#[derive(Debug, Clone)]
pub struct ExportEncoder {
    origin: ServerKey,
    /// The seq the next entry must have.
    next: u64,
    /// The entry on the line just written, if the last line is an entry line.
    last_entry: Option<(u64, [u8; 32])>,
    entries: u64,
}

impl ExportEncoder {
    /// Starts an export of the feed of `origin` whose first entry will be `from`, appending
    /// the header line to `out`.
    pub fn new(origin: ServerKey, from: u64, out: &mut Vec<u8>) -> Result<Self, EncodeError> {
        if from == 0 {
            return Err(EncodeError::ZeroFrom);
        }
        line::write_header(out, &origin, from);
        Ok(ExportEncoder {
            origin,
            next: from,
            last_entry: None,
            entries: 0,
        })
    }

    /// Appends the next entry's line. It must be of this feed and have the next seq.
    pub fn entry(&mut self, entry: &Entry, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let seq = entry.seq();
        if entry.origin() != self.origin {
            return Err(EncodeError::WrongOrigin { seq });
        }
        if seq != self.next {
            return Err(EncodeError::OutOfOrder {
                expected: self.next,
                got: seq,
            });
        }
        line::write_entry(out, seq, &entry.to_bytes());
        self.next = seq.saturating_add(1);
        self.last_entry = Some((seq, entry.hash()));
        self.entries += 1;
        Ok(())
    }

    /// Appends a signed head's line. It must cover the entry written just before it.
    pub fn head(&mut self, signed: &SignedHead, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let head = &signed.head;
        if self.last_entry != Some((head.seq, head.hash)) || head.origin != self.origin {
            return Err(EncodeError::HeadMismatch { seq: head.seq });
        }
        line::write_head(out, &signed.to_bytes());
        self.last_entry = None;
        Ok(())
    }

    /// How many entries were written.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Ends the export: an export with entries must end with a head line. Returns how many
    /// entries it holds.
    pub fn finish(self) -> Result<u64, EncodeError> {
        match self.last_entry {
            Some((seq, _)) => Err(EncodeError::Unsigned { seq }),
            None => Ok(self.entries),
        }
    }
}
