//! Segments and the accept rule (pure).
//!
//! A sender cuts a feed into *segments*: consecutive, linked entries of one origin ending in
//! a head signed by the origin that signs exactly the last entry. [`SegmentBuilder`]
//! assembles one from Entries messages and checks everything that does not depend on what
//! the receiver holds (origin, consecutive seqs, links, bounds, the head's signature).
//! [`accept`] then decides, from the receiver's held signed head alone, what to do with it.

use super::fork::ForkProof;
use super::message::Entries;
use super::{MAX_SEGMENT_BYTES, MAX_SEGMENT_ENTRIES, ReplicationError};
use crate::ServerKey;
use crate::ledger::{Entry, Head, LedgerError, SignedHead, check_append};

/// A complete segment: entries `first_seq ..= head.seq` of one origin, linked, within the
/// bounds, and a head with a valid signature that signs the last one. (Whether it fits the
/// receiver's feed is [`accept`]'s question.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    entries: Vec<Entry>,
    hashes: Vec<[u8; 32]>,
    head: SignedHead,
}

impl Segment {
    /// Checks and builds a segment from entries and the head that ends them (the same checks
    /// as [`SegmentBuilder`]).
    pub fn new(entries: Vec<Entry>, head: SignedHead) -> Result<Self, ReplicationError> {
        let mut b = SegmentBuilder::new(head.head.origin);
        for e in entries {
            b.push(e)?;
        }
        b.finish(head)
    }

    /// The origin of the feed.
    pub fn origin(&self) -> ServerKey {
        self.head.head.origin
    }

    /// The seq of the first entry.
    pub fn first_seq(&self) -> u64 {
        // Entries s..=head.seq, at least one, s >= 1: never underflows (nor overflows at
        // seq u64::MAX, as head.seq + 1 would).
        self.head.head.seq - (self.entries.len() as u64 - 1)
    }

    /// The seq of the last entry (the head's seq).
    pub fn last_seq(&self) -> u64 {
        self.head.head.seq
    }

    /// The entries, in seq order (never empty).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The hash of each entry, in the same order.
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }

    /// The signed head that ends the segment.
    pub fn head(&self) -> &SignedHead {
        &self.head
    }

    /// Total bytes of the entries' encodings (what the window counts).
    pub fn encoded_len(&self) -> usize {
        self.entries.iter().map(Entry::encoded_len).sum()
    }

    /// Gives the entries and the head back.
    pub fn into_parts(self) -> (Vec<Entry>, SignedHead) {
        (self.entries, self.head)
    }
}

/// Assembles one segment of `origin` from entries as they arrive, checking each at once, so
/// a bad segment is refused at its first bad entry and never buffered beyond the bounds.
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    origin: ServerKey,
    entries: Vec<Entry>,
    hashes: Vec<[u8; 32]>,
    bytes: usize,
}

impl SegmentBuilder {
    /// An empty segment of `origin`.
    pub fn new(origin: ServerKey) -> Self {
        SegmentBuilder {
            origin,
            entries: Vec::new(),
            hashes: Vec::new(),
            bytes: 0,
        }
    }

    /// The origin of the segment.
    pub fn origin(&self) -> ServerKey {
        self.origin
    }

    /// Entries received so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True before the first entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of entry encodings received so far.
    pub fn encoded_len(&self) -> usize {
        self.bytes
    }

    /// Adds the entries of one Entries message; its origin must be the segment's
    /// ([`ReplicationError::Interleaved`] otherwise).
    pub fn push_entries(&mut self, message: Entries) -> Result<(), ReplicationError> {
        if *message.origin() != self.origin {
            return Err(ReplicationError::Interleaved);
        }
        for e in message.into_entries() {
            self.push(e)?;
        }
        Ok(())
    }

    /// Adds one entry: it must have the origin, follow the previous entry (next seq, prev =
    /// its hash; seq 1 must have a zero prev) and keep the segment within
    /// [`MAX_SEGMENT_ENTRIES`] and [`MAX_SEGMENT_BYTES`]. A refused entry changes nothing.
    pub fn push(&mut self, entry: Entry) -> Result<(), ReplicationError> {
        if entry.origin() != self.origin {
            return Err(LedgerError::WrongOrigin { seq: entry.seq() }.into());
        }
        let bytes = self.bytes + entry.encoded_len();
        if self.entries.len() >= MAX_SEGMENT_ENTRIES || bytes > MAX_SEGMENT_BYTES {
            return Err(ReplicationError::SegmentTooLarge);
        }
        match (self.entries.last(), self.hashes.last()) {
            (Some(last), Some(hash)) => check_append(
                Some(&Head {
                    origin: self.origin,
                    seq: last.seq(),
                    hash: *hash,
                }),
                &entry,
            )?,
            _ if entry.seq() == 1 => check_append(None, &entry)?,
            _ => {}
        }
        self.hashes.push(entry.hash());
        self.entries.push(entry);
        self.bytes = bytes;
        Ok(())
    }

    /// Ends the segment with its signed head: it must have the origin
    /// ([`ReplicationError::Interleaved`]), follow at least one entry
    /// ([`ReplicationError::HeadWithoutEntries`]), sign the last entry's seq and hash
    /// ([`ReplicationError::HeadMismatch`]) and carry a valid signature.
    pub fn finish(self, head: SignedHead) -> Result<Segment, ReplicationError> {
        if head.head.origin != self.origin {
            return Err(ReplicationError::Interleaved);
        }
        let (Some(last), Some(hash)) = (self.entries.last(), self.hashes.last()) else {
            return Err(ReplicationError::HeadWithoutEntries);
        };
        if head.head.seq != last.seq() || head.head.hash != *hash {
            return Err(ReplicationError::HeadMismatch { seq: head.head.seq });
        }
        head.verify()?;
        Ok(Segment {
            entries: self.entries,
            hashes: self.hashes,
            head,
        })
    }
}

/// What a receiver does with a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Append this segment (the received one, or its part after what is already held) and
    /// make its head the held head.
    Append(Segment),
    /// Everything in the segment is at or below the held head: nothing to store.
    Ignore,
    /// The segment contradicts the held feed: store this proof and quarantine the origin.
    Fork(ForkProof),
    /// The origin is quarantined (a fork proof is held): nothing is accepted from it.
    Quarantined,
}

/// The accept rule (it takes the segment and gives back what is to be appended). `held` is the receiver's signed head of the segment's origin (`None`
/// for a feed it does not hold; it must be of the same origin, else
/// [`ReplicationError::Misuse`]); `quarantined` says whether it holds a fork proof for it.
/// With `s` the segment's first seq, `n` its last and `h` the held seq:
///
/// - quarantined: [`Verdict::Quarantined`];
/// - `s > h + 1`: a gap, [`LedgerError::Gap`];
/// - `s == h + 1`: if the first entry's prev is the held hash, [`Verdict::Append`]; else a
///   [`Verdict::Fork`] (held head, segment head, every entry);
/// - `s <= h <= n`: if the segment's entry `h` has the held hash, the entries up to `h` are
///   the held ones (each hash covers the chain before it): [`Verdict::Ignore`] if `n == h`,
///   else [`Verdict::Append`] of entries `h + 1 ..= n`; if not, a [`Verdict::Fork`] (held
///   head, segment head, entries `h + 1 ..= n`);
/// - `n < h`: [`Verdict::Ignore`]. Entries below the held head cannot be compared with the
///   head alone; a contradiction there shows when clocks are compared (`spec/replication.md`).
///
/// Any error means the segment is invalid: the link is closed and nothing held changes.
pub fn accept(
    held: Option<&SignedHead>,
    quarantined: bool,
    mut segment: Segment,
) -> Result<Verdict, ReplicationError> {
    if held.is_some_and(|h| h.head.origin != segment.origin()) {
        return Err(ReplicationError::Misuse("held head of another origin"));
    }
    if quarantined {
        return Ok(Verdict::Quarantined);
    }
    let (s, n) = (segment.first_seq(), segment.last_seq());
    let Some(held) = held.filter(|h| h.head.seq > 0) else {
        // An empty feed: the segment must start at seq 1 (whose zero prev the builder checked).
        if s != 1 {
            return Err(LedgerError::Gap {
                expected: 1,
                got: s,
            }
            .into());
        }
        return Ok(Verdict::Append(segment));
    };
    let h = held.head.seq;
    if s > h.saturating_add(1) {
        return Err(LedgerError::Gap {
            expected: h + 1,
            got: s,
        }
        .into());
    }
    if n < h {
        return Ok(Verdict::Ignore);
    }
    // Here s <= h + 1 and n >= h. `at` is the index of the first entry after the held head.
    let at = (h - (s - 1)) as usize;
    let agrees = match at.checked_sub(1) {
        // s == h + 1: the first entry's prev must be the held hash.
        None => segment.entries[0].prev() == &held.head.hash,
        Some(i) => segment.hashes[i] == held.head.hash,
    };
    if !agrees {
        let proof = ForkProof::new(*held, segment.head, segment.entries.split_off(at))?;
        return Ok(Verdict::Fork(proof));
    }
    if at == segment.entries.len() {
        return Ok(Verdict::Ignore);
    }
    segment.entries.drain(..at);
    segment.hashes.drain(..at);
    Ok(Verdict::Append(segment))
}
