//! The six messages of a replication link, their codec, and the reader that reassembles
//! them from stream fragments.
//!
//! Frame: `len:u32be || type:u8 || body`, where `len` counts the type byte and the body and
//! is at most [`MAX_MESSAGE`] ([`MAX_FORK_MESSAGE`] for a Fork). Every decoder accepts
//! exactly the bytes its encoder produces: unknown types, bad lengths, trailing bytes,
//! invalid points or entries are typed errors.

use super::fork::ForkProof;
use super::{
    EPOCH_LEN, Epoch, MAX_FORK_MESSAGE, MAX_MESSAGE, MAX_ORIGINS, MAX_SEGMENT_BYTES,
    MAX_SEGMENT_ENTRIES, ReplicationError,
};
use crate::ledger::{Entry, SignedHead};
use crate::wire::POINT_LEN;
use crate::wire::codec::Reader;
use crate::{Fingerprint, ServerKey};

/// Bytes of the frame header before the type byte (the u32 length).
pub const FRAME_HEADER_LEN: usize = 4;
/// Encoded size of one clock entry: origin, seq, hash.
pub const CLOCK_ENTRY_LEN: usize = POINT_LEN + 8 + 32;
/// Bytes an Entries frame (type byte included) takes before its first entry.
pub const ENTRIES_OVERHEAD: usize = 1 + POINT_LEN + 4;

/// The type byte of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageType {
    /// 0x01: what the sender holds, and its store epoch.
    Clock = 0x01,
    /// 0x02: consecutive entries of one origin (part of a segment).
    Entries = 0x02,
    /// 0x03: the signed head that ends a segment.
    Head = 0x03,
    /// 0x04: the receiver persisted a segment.
    Ack = 0x04,
    /// 0x05: a fork proof.
    Fork = 0x05,
    /// 0x06: the only origins the sender takes from this peer.
    Wants = 0x06,
}

impl MessageType {
    /// The type of a type byte, or [`ReplicationError::UnknownType`].
    pub fn from_byte(b: u8) -> Result<Self, ReplicationError> {
        Ok(match b {
            0x01 => MessageType::Clock,
            0x02 => MessageType::Entries,
            0x03 => MessageType::Head,
            0x04 => MessageType::Ack,
            0x05 => MessageType::Fork,
            0x06 => MessageType::Wants,
            other => return Err(ReplicationError::UnknownType(other)),
        })
    }

    /// The largest frame length (type byte + body) allowed for this type.
    pub fn max_len(self) -> usize {
        match self {
            MessageType::Fork => MAX_FORK_MESSAGE,
            _ => MAX_MESSAGE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MessageType::Clock => "clock",
            MessageType::Entries => "entries",
            MessageType::Head => "head",
            MessageType::Ack => "ack",
            MessageType::Fork => "fork",
            MessageType::Wants => "wants",
        }
    }
}

/// One line of a clock: "I hold feed `origin` up to entry `seq`, whose hash is `hash`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockEntry {
    /// The feed's server key.
    pub origin: ServerKey,
    /// The seq of the held head (at least 1: only non-empty feeds are listed).
    pub seq: u64,
    /// The hash of entry `seq`.
    pub hash: [u8; 32],
}

/// What a server holds: its store epoch and, for each non-empty feed, its head. Every value
/// satisfies the wire rules: at most [`MAX_ORIGINS`] feeds, distinct, in ascending origin
/// order, each with seq at least 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    epoch: Epoch,
    feeds: Vec<ClockEntry>,
}

impl Clock {
    /// A clock of `feeds` in any order: sorts them, and refuses more than [`MAX_ORIGINS`]
    /// ([`ReplicationError::TooManyOrigins`]), a repeated origin or a seq of 0
    /// ([`ReplicationError::BadClock`]).
    pub fn new(epoch: Epoch, mut feeds: Vec<ClockEntry>) -> Result<Self, ReplicationError> {
        if feeds.len() > MAX_ORIGINS {
            return Err(ReplicationError::TooManyOrigins(feeds.len()));
        }
        feeds.sort_by(|a, b| a.origin.as_bytes().cmp(b.origin.as_bytes()));
        check_clock(&feeds)?;
        Ok(Clock { epoch, feeds })
    }

    /// The sender's store epoch.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The held feeds, in ascending origin order.
    pub fn feeds(&self) -> &[ClockEntry] {
        &self.feeds
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.epoch);
        // At most MAX_ORIGINS: the cast is exact.
        out.extend_from_slice(&(self.feeds.len() as u32).to_be_bytes());
        for f in &self.feeds {
            out.extend_from_slice(f.origin.as_bytes());
            out.extend_from_slice(&f.seq.to_be_bytes());
            out.extend_from_slice(&f.hash);
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, ReplicationError> {
        let bad = |_| ReplicationError::Malformed("clock");
        let mut r = Reader::new(body, "clock");
        let epoch: [u8; EPOCH_LEN] = r.array().map_err(bad)?;
        let count = r.u32().map_err(bad)? as usize;
        if count > MAX_ORIGINS {
            return Err(ReplicationError::TooManyOrigins(count));
        }
        let mut feeds = Vec::with_capacity(count);
        for _ in 0..count {
            let origin = read_origin(&mut r, "clock")?;
            let seq = u64::from_be_bytes(r.array().map_err(bad)?);
            let hash = r.array().map_err(bad)?;
            feeds.push(ClockEntry { origin, seq, hash });
        }
        r.finish().map_err(bad)?;
        check_clock(&feeds)?;
        Ok(Clock { epoch, feeds })
    }
}

fn check_clock(feeds: &[ClockEntry]) -> Result<(), ReplicationError> {
    let ascending = feeds
        .windows(2)
        .all(|w| w[0].origin.as_bytes() < w[1].origin.as_bytes());
    if !ascending || feeds.iter().any(|f| f.seq == 0) {
        return Err(ReplicationError::BadClock);
    }
    Ok(())
}

/// Consecutive entries of one origin: part of a segment. Every value holds at least one
/// entry, every entry has `origin`, and the frame fits [`MAX_MESSAGE`]. (That the seqs are
/// consecutive and linked is the receiver's check: see [`super::SegmentBuilder`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entries {
    origin: ServerKey,
    entries: Vec<Entry>,
}

impl Entries {
    /// Entries of `origin`; refuses an empty list ([`ReplicationError::NoEntries`]), more than
    /// [`MAX_SEGMENT_ENTRIES`] ([`ReplicationError::SegmentTooLarge`]), an entry of another
    /// origin, or more than fits one frame ([`ReplicationError::FrameTooLarge`]).
    pub fn new(origin: ServerKey, entries: Vec<Entry>) -> Result<Self, ReplicationError> {
        if entries.is_empty() {
            return Err(ReplicationError::NoEntries);
        }
        if entries.len() > MAX_SEGMENT_ENTRIES {
            return Err(ReplicationError::SegmentTooLarge);
        }
        if let Some(e) = entries.iter().find(|e| e.origin() != origin) {
            return Err(crate::ledger::LedgerError::WrongOrigin { seq: e.seq() }.into());
        }
        let len = ENTRIES_OVERHEAD + entries.iter().map(|e| 4 + e.encoded_len()).sum::<usize>();
        if len > MAX_MESSAGE {
            return Err(ReplicationError::FrameTooLarge {
                len,
                max: MAX_MESSAGE,
            });
        }
        Ok(Entries { origin, entries })
    }

    /// The origin of every entry.
    pub fn origin(&self) -> &ServerKey {
        &self.origin
    }

    /// The entries, in the order sent.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Gives the entries back.
    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }

    fn decode_body(body: &[u8]) -> Result<Self, ReplicationError> {
        let mut r = Reader::new(body, "entries");
        let origin = read_origin(&mut r, "entries")?;
        let entries = read_entry_list(&mut r, &origin, "entries")?;
        r.finish()
            .map_err(|_| ReplicationError::Malformed("entries"))?;
        if entries.is_empty() {
            return Err(ReplicationError::NoEntries);
        }
        Ok(Entries { origin, entries })
    }
}

/// "From you I take the feeds of these origins only": a server that follows a configured
/// list of origins says so before its Clock, and the peer then never sends it a segment of
/// any other origin. The origins are named by their fingerprints (SHA-256 of the key, as an
/// operator configures them). Every value lists at most [`MAX_ORIGINS`] distinct
/// fingerprints in ascending order (possibly none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wants {
    origins: Vec<Fingerprint>,
}

impl Wants {
    /// The wants of the origins with fingerprints `origins`, in any order: sorts them, and
    /// refuses more than [`MAX_ORIGINS`] ([`ReplicationError::TooManyOrigins`]) or a
    /// repeated one ([`ReplicationError::BadWants`]).
    pub fn new(mut origins: Vec<Fingerprint>) -> Result<Self, ReplicationError> {
        if origins.len() > MAX_ORIGINS {
            return Err(ReplicationError::TooManyOrigins(origins.len()));
        }
        origins.sort();
        check_wants(&origins)?;
        Ok(Wants { origins })
    }

    /// The fingerprints of the origins wanted, ascending.
    pub fn origins(&self) -> &[Fingerprint] {
        &self.origins
    }

    /// Whether `origin`'s feed is wanted.
    pub fn contains(&self, origin: &ServerKey) -> bool {
        self.origins.binary_search(&origin.fingerprint()).is_ok()
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        // At most MAX_ORIGINS: the cast is exact.
        out.extend_from_slice(&(self.origins.len() as u32).to_be_bytes());
        for o in &self.origins {
            out.extend_from_slice(&o.0);
        }
    }

    fn decode_body(body: &[u8]) -> Result<Self, ReplicationError> {
        let bad = |_| ReplicationError::Malformed("wants");
        let mut r = Reader::new(body, "wants");
        let count = r.u32().map_err(bad)? as usize;
        if count > MAX_ORIGINS {
            return Err(ReplicationError::TooManyOrigins(count));
        }
        let mut origins = Vec::with_capacity(count);
        for _ in 0..count {
            origins.push(Fingerprint(r.array().map_err(bad)?));
        }
        r.finish().map_err(bad)?;
        check_wants(&origins)?;
        Ok(Wants { origins })
    }
}

fn check_wants(origins: &[Fingerprint]) -> Result<(), ReplicationError> {
    if origins.windows(2).all(|w| w[0] < w[1]) {
        Ok(())
    } else {
        Err(ReplicationError::BadWants)
    }
}

/// "I persisted feed `origin` up to `seq`": acknowledges one received segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The segment's origin.
    pub origin: ServerKey,
    /// The seq of the segment's head.
    pub seq: u64,
}

/// One replication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 0x01 Clock.
    Clock(Clock),
    /// 0x02 Entries.
    Entries(Entries),
    /// 0x03 Head: ends a segment.
    Head(SignedHead),
    /// 0x04 Ack.
    Ack(Ack),
    /// 0x05 Fork.
    Fork(ForkProof),
    /// 0x06 Wants: sent, if at all, as the first message of a link.
    Wants(Wants),
}

impl Message {
    /// The message's type.
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Clock(_) => MessageType::Clock,
            Message::Entries(_) => MessageType::Entries,
            Message::Head(_) => MessageType::Head,
            Message::Ack(_) => MessageType::Ack,
            Message::Fork(_) => MessageType::Fork,
            Message::Wants(_) => MessageType::Wants,
        }
    }

    /// Appends the whole frame (`len || type || body`) to `out`. Every value's frame is
    /// within its type's limit.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        out.push(self.kind() as u8);
        match self {
            Message::Clock(c) => c.encode_body(out),
            Message::Entries(e) => {
                out.extend_from_slice(e.origin.as_bytes());
                put_entry_list(out, &e.entries);
            }
            Message::Head(h) => out.extend_from_slice(&h.to_bytes()),
            Message::Ack(a) => {
                out.extend_from_slice(a.origin.as_bytes());
                out.extend_from_slice(&a.seq.to_be_bytes());
            }
            Message::Fork(p) => p.encode_body(out),
            Message::Wants(w) => w.encode_body(out),
        }
        // Every value is within its limit (at most MAX_FORK_MESSAGE < 2^32): the cast is exact.
        let len = (out.len() - at - FRAME_HEADER_LEN) as u32;
        out[at..at + FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    }

    /// The whole frame as a new vector.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes a frame's content (the type byte and the body, without the length).
    pub fn decode(frame: &[u8]) -> Result<Self, ReplicationError> {
        let (&ty, body) = frame.split_first().ok_or(ReplicationError::EmptyFrame)?;
        let ty = MessageType::from_byte(ty)?;
        if frame.len() > ty.max_len() {
            return Err(ReplicationError::FrameTooLarge {
                len: frame.len(),
                max: ty.max_len(),
            });
        }
        Ok(match ty {
            MessageType::Clock => Message::Clock(Clock::decode_body(body)?),
            MessageType::Entries => Message::Entries(Entries::decode_body(body)?),
            MessageType::Head => Message::Head(SignedHead::decode(body).map_err(|e| match e {
                crate::ledger::LedgerError::Malformed(_) => ReplicationError::Malformed(ty.name()),
                other => other.into(),
            })?),
            MessageType::Ack => {
                let bad = |_| ReplicationError::Malformed("ack");
                let mut r = Reader::new(body, "ack");
                let origin = read_origin(&mut r, "ack")?;
                let seq = u64::from_be_bytes(r.array().map_err(bad)?);
                r.finish().map_err(bad)?;
                Message::Ack(Ack { origin, seq })
            }
            MessageType::Fork => Message::Fork(ForkProof::decode_body(body)?),
            MessageType::Wants => Message::Wants(Wants::decode_body(body)?),
        })
    }
}

/// Reads a 33-byte origin that must be a valid point (checked once per thread and origin:
/// `ledger::checked_origin`).
fn read_origin(r: &mut Reader<'_>, what: &'static str) -> Result<ServerKey, ReplicationError> {
    let bytes = r
        .take(POINT_LEN)
        .map_err(|_| ReplicationError::Malformed(what))?;
    Ok(crate::ledger::checked_origin(bytes)?)
}

/// Appends `count:u32be || count x (len:u32be || entry)`.
pub(crate) fn put_entry_list(out: &mut Vec<u8>, entries: &[Entry]) {
    // Bounded by MAX_SEGMENT_ENTRIES and MAX_ENCODED_ENTRY: the casts are exact.
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&(e.encoded_len() as u32).to_be_bytes());
        e.encode(out);
    }
}

/// Reads `count:u32be || count x (len:u32be || entry)`, every entry of `origin`, at most
/// [`MAX_SEGMENT_ENTRIES`] entries and [`MAX_SEGMENT_BYTES`] bytes of encodings.
pub(crate) fn read_entry_list(
    r: &mut Reader<'_>,
    origin: &ServerKey,
    what: &'static str,
) -> Result<Vec<Entry>, ReplicationError> {
    let bad = |_| ReplicationError::Malformed(what);
    let count = r.u32().map_err(bad)? as usize;
    if count > MAX_SEGMENT_ENTRIES {
        return Err(ReplicationError::SegmentTooLarge);
    }
    // Never trust `count` for the allocation: each entry takes at least 4 bytes.
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    for _ in 0..count {
        let encoding = r.bytes32().map_err(bad)?;
        bytes += encoding.len();
        if bytes > MAX_SEGMENT_BYTES {
            return Err(ReplicationError::SegmentTooLarge);
        }
        entries.push(Entry::decode_from(encoding, origin)?);
    }
    Ok(entries)
}

/// Reassembles messages from stream fragments split anywhere. A frame whose announced length
/// is 0 or beyond its type's limit, or whose type is unknown, is an error as soon as its
/// first five bytes are in; the reader never buffers more than one frame's worth beyond what
/// it was given.
#[derive(Debug, Default, Clone)]
pub struct MessageReader {
    buf: Vec<u8>,
    start: usize,
}

impl MessageReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received stream bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet returned as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, `None` if more bytes are needed, or the error that makes
    /// the stream unusable (returned again on every later call).
    pub fn next_message(&mut self) -> Result<Option<Message>, ReplicationError> {
        let pending = &self.buf[self.start..];
        let Some(header) = pending.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len == 0 {
            return Err(ReplicationError::EmptyFrame);
        }
        if len > MAX_FORK_MESSAGE {
            return Err(ReplicationError::FrameTooLarge {
                len,
                max: MAX_FORK_MESSAGE,
            });
        }
        let Some(&ty) = pending.get(FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let ty = MessageType::from_byte(ty)?;
        if len > ty.max_len() {
            return Err(ReplicationError::FrameTooLarge {
                len,
                max: ty.max_len(),
            });
        }
        let Some(frame) = pending.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(None);
        };
        let message = Message::decode(frame)?;
        self.start += FRAME_HEADER_LEN + len;
        Ok(Some(message))
    }
}
