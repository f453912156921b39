//! Ledger entries, their canonical encoding and their hash.

use sha2::{Digest, Sha256};

use super::LedgerError;
use crate::ServerKey;
use crate::wire::POINT_LEN;
use crate::wire::codec::Reader;

/// The version byte that starts every entry encoding.
pub const ENTRY_VERSION: u8 = 1;
/// Domain-separation context of the entry hash (followed by one zero byte, then the encoding).
pub const ENTRY_HASH_CONTEXT: &[u8] = b"vserv/1 ledger entry";
/// Bytes before the first variable-length field: version, origin, seq, prev, timestamp.
pub const ENTRY_HEADER_LEN: usize = 1 + POINT_LEN + 8 + 32 + 8;
/// Maximum author length in bytes.
pub const MAX_AUTHOR: usize = 32;
/// Maximum kind length in bytes.
pub const MAX_KIND: usize = 64;
/// Maximum record id length in bytes.
pub const MAX_RECORD_ID: usize = 64;
/// Maximum body length in bytes: small enough that a whole entry, or an `rput` carrying the
/// body, fits one command record (`wire::MAX_PAYLOAD` is 16 KiB).
pub const MAX_BODY: usize = 16000;
/// The largest possible entry encoding.
pub const MAX_ENCODED_ENTRY: usize =
    ENTRY_HEADER_LEN + 1 + MAX_AUTHOR + 1 + MAX_KIND + 1 + MAX_RECORD_ID + 2 + MAX_BODY;
/// The prev of entry 1 and the hash of an empty feed's head.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// The parts of a new entry, checked by [`Entry::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFields {
    /// The feed's server key.
    pub origin: ServerKey,
    /// Position in the feed, from 1.
    pub seq: u64,
    /// Hash of entry `seq - 1`; [`ZERO_HASH`] for seq 1.
    pub prev: [u8; 32],
    /// Unix time in milliseconds, as the appending server saw it (not checked for order).
    pub timestamp: u64,
    /// The user who appended the entry: 1-32 bytes of printable ASCII.
    pub author: String,
    /// The entry's kind (topic): see [`check_kind`].
    pub kind: String,
    /// The client's unique record id: 1-64 arbitrary bytes.
    pub record_id: Vec<u8>,
    /// Arbitrary bytes, at most [`MAX_BODY`] (often in the field form of
    /// [`super::fields_to_body`]).
    pub body: Vec<u8>,
}

/// One ledger entry. Every value of this type satisfies the field rules of [`Entry::new`],
/// so it always has exactly one canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry(EntryFields);

/// Checks an author: 1-[`MAX_AUTHOR`] bytes, each printable ASCII (0x21-0x7e).
pub fn check_author(author: &[u8]) -> Result<(), LedgerError> {
    if (1..=MAX_AUTHOR).contains(&author.len()) && author.iter().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(LedgerError::InvalidAuthor)
    }
}

/// Checks a kind: 1-[`MAX_KIND`] bytes of `[a-z0-9._-]`, the first one `[a-z0-9]` (so a kind
/// is never mistaken for a command-line option or a hidden file name).
pub fn check_kind(kind: &[u8]) -> Result<(), LedgerError> {
    let ok = match kind.first() {
        Some(first) => {
            kind.len() <= MAX_KIND
                && (first.is_ascii_lowercase() || first.is_ascii_digit())
                && kind
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(LedgerError::InvalidKind)
    }
}

/// Checks a record id: 1-[`MAX_RECORD_ID`] bytes.
pub fn check_record_id(id: &[u8]) -> Result<(), LedgerError> {
    if (1..=MAX_RECORD_ID).contains(&id.len()) {
        Ok(())
    } else {
        Err(LedgerError::InvalidRecordId)
    }
}

/// Checks a body: at most [`MAX_BODY`] bytes.
pub fn check_body(body: &[u8]) -> Result<(), LedgerError> {
    if body.len() <= MAX_BODY {
        Ok(())
    } else {
        Err(LedgerError::BodyTooLarge {
            len: body.len(),
            max: MAX_BODY,
        })
    }
}

/// SHA-256(`ENTRY_HASH_CONTEXT` || 0x00 || `encoding`): the hash of an entry given its
/// encoding. Does not check that `encoding` is valid; for a valid one it equals
/// [`Entry::hash`].
pub fn hash_encoded(encoding: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENTRY_HASH_CONTEXT);
    h.update([0u8]);
    h.update(encoding);
    h.finalize().into()
}

/// A borrowed, validated view of an encoded entry (no allocation, origin not yet checked to
/// be a valid point).
pub(crate) struct EntryView<'a> {
    pub(crate) origin: &'a [u8],
    pub(crate) seq: u64,
    pub(crate) prev: [u8; 32],
    pub(crate) timestamp: u64,
    pub(crate) author: &'a [u8],
    pub(crate) kind: &'a [u8],
    pub(crate) record_id: &'a [u8],
    pub(crate) body: &'a [u8],
}

const WHAT: &str = "ledger entry";

fn malformed(_: crate::Error) -> LedgerError {
    LedgerError::Malformed(WHAT)
}

impl<'a> EntryView<'a> {
    /// Parses and checks every field rule except the validity of the origin point.
    pub(crate) fn parse(buf: &'a [u8]) -> Result<Self, LedgerError> {
        let mut r = Reader::new(buf, WHAT);
        let version = r.u8().map_err(malformed)?;
        if version != ENTRY_VERSION {
            return Err(LedgerError::UnsupportedVersion(version));
        }
        let origin = r.take(POINT_LEN).map_err(malformed)?;
        let seq = u64::from_be_bytes(r.array().map_err(malformed)?);
        if seq == 0 {
            return Err(LedgerError::ZeroSeq);
        }
        let prev = r.array().map_err(malformed)?;
        let timestamp = u64::from_be_bytes(r.array().map_err(malformed)?);
        let author = r.bytes8().map_err(malformed)?;
        check_author(author)?;
        let kind = r.bytes8().map_err(malformed)?;
        check_kind(kind)?;
        let record_id = r.bytes8().map_err(malformed)?;
        check_record_id(record_id)?;
        let body = r.bytes16().map_err(malformed)?;
        check_body(body)?;
        r.finish().map_err(malformed)?;
        Ok(EntryView {
            origin,
            seq,
            prev,
            timestamp,
            author,
            kind,
            record_id,
            body,
        })
    }
}

fn ascii_string(b: &[u8]) -> Result<String, LedgerError> {
    String::from_utf8(b.to_vec()).map_err(|_| LedgerError::Malformed(WHAT))
}

impl Entry {
    /// Builds an entry, checking every field rule: seq ≥ 1, [`check_author`], [`check_kind`],
    /// [`check_record_id`], body ≤ [`MAX_BODY`]. Chain rules (seq and prev relative to the
    /// feed) are [`super::check_append`]'s job.
    pub fn new(fields: EntryFields) -> Result<Self, LedgerError> {
        if fields.seq == 0 {
            return Err(LedgerError::ZeroSeq);
        }
        check_author(fields.author.as_bytes())?;
        check_kind(fields.kind.as_bytes())?;
        check_record_id(&fields.record_id)?;
        check_body(&fields.body)?;
        Ok(Entry(fields))
    }

    /// Decodes a canonical encoding. Accepts exactly the bytes [`Entry::encode`] produces:
    /// any other version, length, trailing byte, invalid origin point or field is refused.
    pub fn decode(buf: &[u8]) -> Result<Self, LedgerError> {
        let v = EntryView::parse(buf)?;
        let origin = super::origin_memo::checked_origin(v.origin)?;
        Self::from_view(&v, origin)
    }

    /// Decodes a canonical encoding of an entry of `origin`'s feed: like [`Entry::decode`],
    /// but the origin must be exactly `origin` ([`LedgerError::WrongOrigin`] otherwise), which
    /// is a byte comparison instead of a point decompression (several times faster: use it
    /// for entries of a feed whose key is known).
    pub fn decode_from(buf: &[u8], origin: &ServerKey) -> Result<Self, LedgerError> {
        let v = EntryView::parse(buf)?;
        if v.origin != origin.as_bytes() {
            return Err(LedgerError::WrongOrigin { seq: v.seq });
        }
        Self::from_view(&v, *origin)
    }

    fn from_view(v: &EntryView<'_>, origin: ServerKey) -> Result<Self, LedgerError> {
        Ok(Entry(EntryFields {
            origin,
            seq: v.seq,
            prev: v.prev,
            timestamp: v.timestamp,
            author: ascii_string(v.author)?,
            kind: ascii_string(v.kind)?,
            record_id: v.record_id.to_vec(),
            body: v.body.to_vec(),
        }))
    }

    /// Feeds the canonical encoding, piece by piece, to `put` (the one definition of the
    /// encoding, shared by [`Entry::encode`] and [`Entry::hash`]).
    fn write_parts(&self, mut put: impl FnMut(&[u8])) {
        let f = &self.0;
        put(&[ENTRY_VERSION]);
        put(f.origin.as_bytes());
        put(&f.seq.to_be_bytes());
        put(&f.prev);
        put(&f.timestamp.to_be_bytes());
        // Lengths are bounded by the checks in `new`/`decode`, so the casts are exact.
        put(&[f.author.len() as u8]);
        put(f.author.as_bytes());
        put(&[f.kind.len() as u8]);
        put(f.kind.as_bytes());
        put(&[f.record_id.len() as u8]);
        put(&f.record_id);
        put(&(f.body.len() as u16).to_be_bytes());
        put(&f.body);
    }

    /// Appends the canonical encoding (see `spec/ledger.md`) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        self.write_parts(|b| out.extend_from_slice(b));
    }

    /// The canonical encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Length of the canonical encoding (at most [`MAX_ENCODED_ENTRY`]).
    pub fn encoded_len(&self) -> usize {
        let f = &self.0;
        ENTRY_HEADER_LEN
            + 1
            + f.author.len()
            + 1
            + f.kind.len()
            + 1
            + f.record_id.len()
            + 2
            + f.body.len()
    }

    /// SHA-256(`ENTRY_HASH_CONTEXT` || 0x00 || canonical encoding), computed without
    /// building the encoding.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(ENTRY_HASH_CONTEXT);
        h.update([0u8]);
        self.write_parts(|b| h.update(b));
        h.finalize().into()
    }

    /// The entry's fields.
    pub fn fields(&self) -> &EntryFields {
        &self.0
    }

    /// Gives the fields back.
    pub fn into_fields(self) -> EntryFields {
        self.0
    }

    /// The feed's server key.
    pub fn origin(&self) -> ServerKey {
        self.0.origin
    }

    /// Position in the feed (≥ 1).
    pub fn seq(&self) -> u64 {
        self.0.seq
    }

    /// Hash of the previous entry ([`ZERO_HASH`] for a first entry).
    pub fn prev(&self) -> &[u8; 32] {
        &self.0.prev
    }

    /// Unix time in milliseconds given by the appending server.
    pub fn timestamp(&self) -> u64 {
        self.0.timestamp
    }

    /// The author (printable ASCII, 1-32 bytes).
    pub fn author(&self) -> &str {
        &self.0.author
    }

    /// The kind (satisfies [`check_kind`]).
    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The client's record id (1-64 bytes).
    pub fn record_id(&self) -> &[u8] {
        &self.0.record_id
    }

    /// The body (≤ [`MAX_BODY`] bytes).
    pub fn body(&self) -> &[u8] {
        &self.0.body
    }
}
