//! Fork proofs: two heads validly signed by one origin that cannot both be true.
//!
//! Encoding (the body of a Fork message, also the form a node stores):
//! `a: SignedHead[138] || b: SignedHead[138] || count:u32be || count x (len:u32be || entry)`.
//! A proof is valid when both heads have the same origin and valid signatures,
//! `1 <= a.seq <= b.seq`, and either
//! - `count == 0`, `a.seq == b.seq` and `a.hash != b.hash` (two heads for one seq), or
//! - the entries are seqs `a.seq + 1 ..= b.seq` of `b`'s chain (each of the origin, linked,
//!   the last one's hash is `b.hash`) and the first one's `prev` is not `a.hash`: `b`'s chain
//!   passes through seq `a.seq` with another hash than the one `a` signs.
//!
//! [`ForkProof::verify`] checks all of it from the proof alone, so anyone holding the
//! origin's key (or its fingerprint) can check a proof.

use super::message::{put_entry_list, read_entry_list};
use super::{MAX_SEGMENT_BYTES, MAX_SEGMENT_ENTRIES, ReplicationError};
use crate::ServerKey;
use crate::ledger::{ChainVerifier, Entry, Head, SIGNED_HEAD_LEN, SignedHead};
use crate::wire::codec::Reader;

const WHAT: &str = "fork";

/// A fork proof. Every value is within the size bounds ([`MAX_SEGMENT_ENTRIES`] entries,
/// [`MAX_SEGMENT_BYTES`] bytes, all of `a`'s origin); it is *valid* only if
/// [`ForkProof::verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkProof {
    a: SignedHead,
    b: SignedHead,
    entries: Vec<Entry>,
}

fn bad(why: &'static str) -> ReplicationError {
    ReplicationError::BadForkProof(why)
}

impl ForkProof {
    /// Builds a proof and checks it with [`ForkProof::verify`]: only valid proofs are built.
    pub fn new(
        a: SignedHead,
        b: SignedHead,
        entries: Vec<Entry>,
    ) -> Result<Self, ReplicationError> {
        let proof = Self::unchecked(a, b, entries)?;
        proof.verify()?;
        Ok(proof)
    }

    /// Builds a proof without checking it, only its size bounds and that every entry has
    /// `a`'s origin (for tests and tools that need invalid proofs).
    pub fn unchecked(
        a: SignedHead,
        b: SignedHead,
        entries: Vec<Entry>,
    ) -> Result<Self, ReplicationError> {
        let bytes: usize = entries.iter().map(Entry::encoded_len).sum();
        if entries.len() > MAX_SEGMENT_ENTRIES || bytes > MAX_SEGMENT_BYTES {
            return Err(ReplicationError::SegmentTooLarge);
        }
        if let Some(e) = entries.iter().find(|e| e.origin() != a.head.origin) {
            return Err(crate::ledger::LedgerError::WrongOrigin { seq: e.seq() }.into());
        }
        Ok(ForkProof { a, b, entries })
    }

    /// The origin the proof is about (check it against the key you expect).
    pub fn origin(&self) -> ServerKey {
        self.a.head.origin
    }

    /// The head with the lower (or equal) seq.
    pub fn a(&self) -> &SignedHead {
        &self.a
    }

    /// The head whose chain contradicts `a`.
    pub fn b(&self) -> &SignedHead {
        &self.b
    }

    /// Entries `a.seq + 1 ..= b.seq` of `b`'s chain (empty when the seqs are equal).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Checks every rule of the module documentation. `Ok` means the origin signed two
    /// heads that no single chain can have (up to a SHA-256 collision).
    pub fn verify(&self) -> Result<(), ReplicationError> {
        let (a, b) = (&self.a.head, &self.b.head);
        if a.origin != b.origin {
            return Err(bad("the heads have different origins"));
        }
        if a.seq == 0 {
            return Err(bad("head a is at seq 0"));
        }
        if a.seq > b.seq {
            return Err(bad("head a is after head b"));
        }
        if self.entries.len() as u64 != b.seq - a.seq {
            return Err(bad("the entries must be seqs a.seq+1 ..= b.seq"));
        }
        match self.entries.first() {
            None => {
                if a.hash == b.hash {
                    return Err(bad("the heads agree"));
                }
            }
            Some(first) => {
                if *first.prev() == a.hash {
                    return Err(bad("the entries extend head a"));
                }
                let mut chain = ChainVerifier::resume(Head {
                    origin: a.origin,
                    seq: a.seq,
                    hash: *first.prev(),
                });
                for e in &self.entries {
                    chain.push_entry(e)?;
                }
                if chain.head().hash != b.hash {
                    return Err(bad("the entries do not lead to head b"));
                }
            }
        }
        self.a.verify()?;
        self.b.verify()?;
        Ok(())
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.a.to_bytes());
        out.extend_from_slice(&self.b.to_bytes());
        put_entry_list(out, &self.entries);
    }

    /// The encoding (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_body(&mut out);
        out
    }

    /// Decodes exactly the bytes [`ForkProof::to_bytes`] produces. Checks the form (lengths,
    /// points, entry encodings of `a`'s origin, size bounds), not validity: call
    /// [`ForkProof::verify`].
    pub fn decode(buf: &[u8]) -> Result<Self, ReplicationError> {
        Self::decode_body(buf)
    }

    pub(crate) fn decode_body(body: &[u8]) -> Result<Self, ReplicationError> {
        let mut r = Reader::new(body, WHAT);
        fn head(r: &mut Reader<'_>) -> Result<SignedHead, ReplicationError> {
            let bytes = r
                .take(SIGNED_HEAD_LEN)
                .map_err(|_| ReplicationError::Malformed(WHAT))?;
            SignedHead::decode(bytes).map_err(Into::into)
        }
        let a = head(&mut r)?;
        let b = head(&mut r)?;
        let entries = read_entry_list(&mut r, &a.head.origin, WHAT)?;
        r.finish().map_err(|_| ReplicationError::Malformed(WHAT))?;
        Ok(ForkProof { a, b, entries })
    }
}
