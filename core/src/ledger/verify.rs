//! The accept rule and streaming chain verification.

use std::collections::BTreeMap;

use super::entry::EntryView;
use super::{Entry, Head, LedgerError, SignedHead, ZERO_HASH, hash_encoded};
use crate::ServerKey;

/// At most this many verified signed heads may wait for entries the verifier has not seen.
pub const MAX_PENDING_HEADS: usize = 1024;

/// The accept rule (design §4): may `entry` be appended to a feed whose head is `head`?
///
/// `None` (or a head with seq 0) is an empty feed: the entry must have seq 1 and prev
/// [`ZERO_HASH`]. Otherwise the entry must have `head.origin`, seq `head.seq + 1` and prev
/// `head.hash`. With `None` the origin is not checked: the caller compares it with the feed's
/// key. Checks, in order: origin ([`LedgerError::WrongOrigin`]), seq ([`LedgerError::Gap`]),
/// prev ([`LedgerError::BadLink`]).
pub fn check_append(head: Option<&Head>, entry: &Entry) -> Result<(), LedgerError> {
    let (expected, prev) = match head {
        None => (1, ZERO_HASH),
        Some(h) => {
            if h.origin != entry.origin() {
                return Err(LedgerError::WrongOrigin { seq: entry.seq() });
            }
            let next = h.seq.checked_add(1).ok_or(LedgerError::SeqOverflow)?;
            (next, if h.seq == 0 { ZERO_HASH } else { h.hash })
        }
    };
    if entry.seq() != expected {
        return Err(LedgerError::Gap {
            expected,
            got: entry.seq(),
        });
    }
    if *entry.prev() != prev {
        return Err(LedgerError::BadLink { seq: entry.seq() });
    }
    Ok(())
}

/// Verifies one feed streamed in order from seq 1, optionally with signed heads.
///
/// Feed entries with [`push_entry`](Self::push_entry) or, faster (no allocation, no point
/// decompression), their encodings with [`push_encoded`](Self::push_encoded). Feed a signed
/// head any time *before* the entry after its seq (typically right after its entry, or at the
/// end for the newest head): it is checked against the chain at its seq as soon as the chain
/// reaches it. The first error names the first bad seq; a failed call leaves the verifier
/// unchanged, but callers should stop at the first error.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    origin: ServerKey,
    seq: u64,
    hash: [u8; 32],
    /// Highest seq covered by a signed head that matched the chain (0 = none).
    signed: u64,
    /// Verified signed heads ahead of the chain: seq -> hash.
    pending: BTreeMap<u64, [u8; 32]>,
}

impl ChainVerifier {
    /// A verifier for the feed of `origin`, before its first entry.
    pub fn new(origin: ServerKey) -> Self {
        ChainVerifier {
            origin,
            seq: 0,
            hash: ZERO_HASH,
            signed: 0,
            pending: BTreeMap::new(),
        }
    }

    /// A verifier that continues the feed of `head.origin` after entry `head.seq`, whose
    /// hash the caller vouches for (it checked the entries up to there, or it only wants a
    /// range checked): the next entry must have seq `head.seq + 1` and prev `head.hash`.
    /// Signed heads at or before `head.seq` are refused as out of order.
    pub fn resume(head: Head) -> Self {
        ChainVerifier {
            origin: head.origin,
            seq: head.seq,
            hash: if head.seq == 0 { ZERO_HASH } else { head.hash },
            signed: 0,
            pending: BTreeMap::new(),
        }
    }

    /// The head of the chain verified so far ([`Head::empty`] before the first entry).
    pub fn head(&self) -> Head {
        Head {
            origin: self.origin,
            seq: self.seq,
            hash: self.hash,
        }
    }

    /// The highest seq authenticated by a matching signed head (0 if none yet).
    pub fn signed_seq(&self) -> u64 {
        self.signed
    }

    fn next_seq(&self) -> Result<u64, LedgerError> {
        self.seq.checked_add(1).ok_or(LedgerError::SeqOverflow)
    }

    /// Accepts the next entry after checking origin, seq and prev (see [`check_append`]),
    /// then any pending signed head at its seq.
    pub fn push_entry(&mut self, entry: &Entry) -> Result<[u8; 32], LedgerError> {
        let expected = self.next_seq()?;
        if entry.origin() != self.origin {
            return Err(LedgerError::WrongOrigin { seq: expected });
        }
        check_append(Some(&self.head()), entry)?;
        self.advance(expected, entry.hash())
    }

    /// Accepts the next entry given as its canonical encoding. An encoding that does not
    /// decode fails with [`LedgerError::Undecodable`] at the expected seq. Returns the
    /// entry's hash.
    pub fn push_encoded(&mut self, encoding: &[u8]) -> Result<[u8; 32], LedgerError> {
        let expected = self.next_seq()?;
        let view = EntryView::parse(encoding).map_err(|e| LedgerError::Undecodable {
            seq: expected,
            error: Box::new(e),
        })?;
        // Equal bytes to a known-valid key: no need to decompress the point.
        if view.origin != self.origin.as_bytes() {
            return Err(LedgerError::WrongOrigin { seq: expected });
        }
        if view.seq != expected {
            return Err(LedgerError::Gap {
                expected,
                got: view.seq,
            });
        }
        if view.prev != self.hash {
            return Err(LedgerError::BadLink { seq: expected });
        }
        self.advance(expected, hash_encoded(encoding))
    }

    fn advance(&mut self, seq: u64, hash: [u8; 32]) -> Result<[u8; 32], LedgerError> {
        if let Some(signed) = self.pending.get(&seq) {
            if *signed != hash {
                return Err(LedgerError::BadHead { seq });
            }
            self.pending.remove(&seq);
            self.signed = seq;
        }
        self.seq = seq;
        self.hash = hash;
        Ok(hash)
    }

    /// Checks a signed head: its origin ([`LedgerError::WrongOrigin`]), its signature
    /// ([`LedgerError::BadSignature`]), and its hash against the chain at its seq
    /// ([`LedgerError::BadHead`]) — now if the chain is at that seq, or when it gets there.
    /// A head for a seq already passed fails with [`LedgerError::HeadOutOfOrder`].
    pub fn push_head(&mut self, signed: &SignedHead) -> Result<(), LedgerError> {
        let head = &signed.head;
        if head.origin != self.origin {
            return Err(LedgerError::WrongOrigin { seq: head.seq });
        }
        signed.verify()?;
        if head.seq < self.seq {
            return Err(LedgerError::HeadOutOfOrder {
                seq: head.seq,
                at: self.seq,
            });
        }
        if head.seq == self.seq {
            if head.hash != self.hash {
                return Err(LedgerError::BadHead { seq: head.seq });
            }
            self.signed = self.seq;
            return Ok(());
        }
        match self.pending.get(&head.seq) {
            // Two validly signed, different heads at one seq: a fork.
            Some(h) if *h != head.hash => Err(LedgerError::BadHead { seq: head.seq }),
            Some(_) => Ok(()),
            None if self.pending.len() >= MAX_PENDING_HEADS => {
                Err(LedgerError::TooManyPendingHeads)
            }
            None => {
                self.pending.insert(head.seq, head.hash);
                Ok(())
            }
        }
    }

    /// Ends the stream. Fails with [`LedgerError::MissingEntry`] if a signed head covers
    /// entries that never came; otherwise returns the final head. Entries after
    /// [`signed_seq`](Self::signed_seq) are hash-consistent but not authenticated.
    pub fn finish(self) -> Result<Head, LedgerError> {
        if !self.pending.is_empty() {
            return Err(LedgerError::MissingEntry {
                seq: self.seq.saturating_add(1),
            });
        }
        Ok(self.head())
    }

    /// Like [`finish`](Self::finish), and also requires that a signed head covers the last
    /// entry, so every entry is authenticated; fails with [`LedgerError::Unsigned`] naming
    /// the first unauthenticated seq otherwise.
    pub fn finish_signed(self) -> Result<Head, LedgerError> {
        let signed = self.signed;
        let head = self.finish()?;
        if signed < head.seq {
            return Err(LedgerError::Unsigned { seq: signed + 1 });
        }
        Ok(head)
    }
}
