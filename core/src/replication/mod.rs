//! Replication between servers: the messages of a replication link, the accept rule for
//! segments of a replicated feed, fork proofs, the link authentication and the sans-IO link
//! machine ([`link`]). The exact bytes are specified in `spec/replication.md`.
//!
//! A replication link is an ordinary vserv connection on which the dialing server proved its
//! own key with the `peer` command ([`auth`]); from then on both directions carry a byte
//! stream of framed [`Message`]s ([`message`]). Each side announces what it holds (a
//! [`Clock`]), then sends the other the entries it lacks in *segments* (Entries messages
//! ending in a signed Head). A receiver checks every segment with the pure accept rule
//! ([`accept`]): it appends, ignores what it already holds (so replication never loops),
//! proves a fork ([`ForkProof`]) or refuses the segment and closes the link.
//!
//! Nothing here performs I/O, reads a clock or draws randomness.

pub mod accept;
pub mod auth;
pub mod fork;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod link;
pub mod message;

use std::time::Duration;

pub use accept::{Segment, SegmentBuilder, Verdict, accept};
pub use auth::{PEER_LINK_CONTEXT, peer_link_message, sign_peer_link, verify_peer_link};
pub use fork::ForkProof;
pub use link::{Link, LinkConfig, LinkEvent, NodeRequest};
pub use message::{Ack, Clock, ClockEntry, Entries, Message, MessageReader, MessageType, Wants};

use crate::ledger::LedgerError;

/// Length of a store epoch: the random id of a server's data directory.
pub const EPOCH_LEN: usize = 16;
/// Largest frame (type byte + body) of every message but Fork: 1 MiB.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Most feeds one [`Clock`] lists.
pub const MAX_ORIGINS: usize = 4096;
/// Most entries in one segment (and in a fork proof): the ledger's group-commit cap.
pub const MAX_SEGMENT_ENTRIES: usize = 4096;
/// Most bytes of entry encodings in one segment (and in a fork proof): 64 MiB.
pub const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// Largest Fork frame (type byte + body): two signed heads and a whole segment with its
/// length prefixes. A fork proof may need every entry of one segment, which can be bigger
/// than [`MAX_MESSAGE`].
pub const MAX_FORK_MESSAGE: usize =
    1 + 2 * crate::ledger::SIGNED_HEAD_LEN + 4 + 4 * MAX_SEGMENT_ENTRIES + MAX_SEGMENT_BYTES;
/// Most bytes of entry encodings a sender may have sent and not yet seen acknowledged
/// (4 MiB); a lone segment bigger than this may still be sent when nothing else is in flight.
pub const WINDOW: usize = 4 << 20;
/// How often each side sends its clock again, so that anything missed heals.
pub const CLOCK_INTERVAL: Duration = Duration::from_secs(30);

/// A store epoch: 16 random bytes made when a data directory is created.
pub type Epoch = [u8; EPOCH_LEN];

/// Everything that can go wrong on a replication link. Every error returned by a link is
/// fatal to it: the caller closes the connection (nothing the node already stored is
/// touched). [`ReplicationError::Misuse`] reports a caller mistake and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    // --- framing and decoding ---
    /// A message body is short, has trailing bytes or a bad length prefix.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// A frame announces a length of 0.
    #[error("empty replication frame")]
    EmptyFrame,
    /// A frame announces more bytes than its type allows.
    #[error("replication frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length (type byte + body).
        len: usize,
        /// The limit for that type.
        max: usize,
    },
    /// The type byte is not one of the six message types.
    #[error("unknown replication message type {0:#04x}")]
    UnknownType(u8),
    /// A Clock lists more than [`MAX_ORIGINS`] feeds.
    #[error("clock lists {0} feeds, more than the limit of 4096")]
    TooManyOrigins(usize),
    /// A Clock's origins are not strictly ascending, or one has seq 0.
    #[error("clock entries must be distinct held feeds in ascending origin order")]
    BadClock,
    /// A Wants message repeats an origin or does not list them in ascending order.
    #[error("wants must list distinct origins in ascending order")]
    BadWants,
    /// An Entries message carries no entry.
    #[error("entries message without entries")]
    NoEntries,
    /// A ledger rule failed (entry encoding, origin, chain link, signature...).
    #[error(transparent)]
    Ledger(#[from] LedgerError),

    // --- segments ---
    /// A segment has more than [`MAX_SEGMENT_ENTRIES`] entries or [`MAX_SEGMENT_BYTES`] bytes.
    #[error("segment exceeds 4096 entries or 64 MiB")]
    SegmentTooLarge,
    /// A Head message ends a segment but does not sign its last entry (seq or hash differ).
    #[error("the head at seq {seq} does not sign the segment's last entry")]
    HeadMismatch {
        /// The head's seq.
        seq: u64,
    },
    /// Entries or a Head for another origin arrived while a segment was open.
    #[error("segments of different origins are interleaved")]
    Interleaved,
    /// A Head message arrived with no segment open.
    #[error("head message without entries")]
    HeadWithoutEntries,

    // --- fork proofs ---
    /// A fork proof does not prove a fork (the reason is given).
    #[error("invalid fork proof: {0}")]
    BadForkProof(&'static str),

    // --- link authentication ---
    /// The `peer` command's signature does not verify under the claimed server key.
    #[error("the peer link signature does not verify")]
    BadPeerSignature,

    // --- the link ---
    /// A message that the state machine does not allow now (the reason is given).
    #[error("unexpected replication message: {0}")]
    Unexpected(&'static str),
    /// An Ack that does not acknowledge the oldest unacknowledged segment of its origin.
    #[error("ack of seq {seq} matches no segment sent")]
    UnsolicitedAck {
        /// The acknowledged seq.
        seq: u64,
    },
    /// The peer sent a segment of an origin this side's Wants did not list.
    #[error("the peer sent a feed this server does not take from it")]
    Unwanted,
    /// The peer sent more than the window allows before acknowledging.
    #[error("the peer exceeded the replication window")]
    WindowExceeded,
    /// The peer's store epoch is this server's own: the link loops back to itself.
    #[error("the peer has this server's own store epoch (a link to itself)")]
    SelfLink,
    /// The peer changed its store epoch within one link.
    #[error("the peer's store epoch changed within one link")]
    EpochChanged,
    /// The link already failed; it accepts nothing more.
    #[error("the replication link is closed")]
    Closed,
    /// The caller broke the API contract (the reason is given); nothing changed.
    #[error("replication API misuse: {0}")]
    Misuse(&'static str),
}
