//! Sealed UDP datagrams (spec/datagrams.md): one request sealed to the server's identity key
//! and its answer sealed back, with no connection. Pure: time and randomness are passed in.
//!
//! - `format.rs`: the datagrams' bytes (no crypto); every decoder is fuzzed and never panics.
//! - `seal.rs`: the key schedule (ephemeral ECDH with the server's identity key, HKDF-SHA256
//!   bound to both public keys, the nonce and the time) and the record layer's AES-256-CBC +
//!   HMAC-SHA256; client side [`seal_request`] / [`PendingRequest::open_response`], server
//!   side [`open_request`] / [`OpenedRequest::seal_response`].
//! - `replay.rs`: the timestamp window and the bounded cache of recent nonces.
//! - `rate.rs`: the per-address token buckets, in a bounded table.
//! - `key_query.rs`: the unsealed "key?" datagram and its answer (key discovery).
//! - `fuzz.rs` (the `fuzzing` feature): the `datagram` fuzz target's body.

mod format;
#[cfg(feature = "fuzzing")]
pub mod fuzz;
mod key_query;
mod rate;
mod replay;
mod seal;

#[cfg(test)]
mod tests;

pub use format::{RequestDatagram, ResponseDatagram};
pub use key_query::{
    KEY_ANSWER_LEN, KEY_QUERY_LEN, check_key_query, decode_key_answer, encode_key_answer, key_query,
};
pub use rate::{RateLimiter, RateSettings};
pub use replay::{DEFAULT_REPLAY_CAPACITY, REPLAY_WINDOW_SECS, ReplayGuard};
pub use seal::{
    Answer, CONTENT_DATAGRAM_REQUEST, CONTENT_DATAGRAM_RESPONSE, CONTENT_DATAGRAM_TOO_LARGE,
    DatagramKey, LABEL_DATAGRAM_EXTRACT, LABEL_DATAGRAM_REQUEST, LABEL_DATAGRAM_RESPONSE,
    OpenedRequest, PendingRequest, SealedAnswer, open_request, seal_request,
};

use crate::wire::{IV_LEN, POINT_LEN, TAG_LEN};

/// First byte of an unsealed key query (client to server).
pub const KIND_KEY_QUERY: u8 = 0xd0;
/// First byte of a sealed request of format version 1 (client to server).
pub const KIND_REQUEST: u8 = 0xd1;
/// First byte of a sealed response of format version 1 (server to client).
pub const KIND_RESPONSE: u8 = 0xd2;
/// First byte of a key answer (server to client).
pub const KIND_KEY_ANSWER: u8 = 0xd3;

/// Length of the request nonce.
pub const NONCE_LEN: usize = 16;

/// The largest datagram either side sends or accepts, in bytes.
pub const MAX_DATAGRAM: usize = 8192;

/// An answer is never larger than this many times the request datagram it answers.
pub const AMPLIFICATION_FACTOR: usize = 3;

/// Bytes of a sealed request before its record body: kind, ephemeral key, nonce, time.
pub const REQUEST_HEADER_LEN: usize = 1 + POINT_LEN + NONCE_LEN + 8;

/// Bytes of a sealed response before its record body: kind, nonce.
pub const RESPONSE_HEADER_LEN: usize = 1 + NONCE_LEN;

/// The smallest record body (an empty payload): IV, one block, tag.
pub const MIN_BODY: usize = IV_LEN + 16 + TAG_LEN;

/// The smallest sealed request.
pub const MIN_REQUEST: usize = REQUEST_HEADER_LEN + MIN_BODY;

/// Why a datagram was refused. The server answers none of these (it drops the datagram and
/// counts the reason); the client reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// Shorter than its fixed fields, or a record body of an impossible length.
    #[error("truncated datagram")]
    Truncated,
    /// The first byte is not a kind of this format version.
    #[error("unknown datagram kind or version")]
    BadVersion,
    /// The ephemeral key is not a valid compressed secp256k1 point.
    #[error("not a valid public key")]
    BadPoint,
    /// The record failed authentication (tag, padding or content type).
    #[error("the datagram failed authentication")]
    BadMac,
    /// The time is outside the server's window.
    #[error("the datagram's time is outside the accepted window")]
    Stale,
    /// The nonce was seen already (or is older than the oldest one remembered).
    #[error("replayed datagram")]
    Replay,
    /// Larger than [`MAX_DATAGRAM`], or a payload that cannot fit in one.
    #[error("datagram too large")]
    TooLarge,
    /// Authentic, but its sealed content is not what the format says.
    #[error("malformed sealed content: {0}")]
    Malformed(&'static str),
}

/// The record body length that carries `payload_len` bytes (protocol.md §7.1).
pub const fn body_len(payload_len: usize) -> usize {
    crate::secure::record::record_body_len(payload_len)
}

// The smallest request and the "too large" answer (spec/datagrams.md §6) must keep the
// factor: 81 <= 3 * 122.
const _: () = assert!(MIN_REQUEST == 122);
const _: () = assert!(RESPONSE_HEADER_LEN + MIN_BODY <= AMPLIFICATION_FACTOR * MIN_REQUEST);
