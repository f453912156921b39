//! Wire formats: framing and the codec of every message. No cryptography here.
//!
//! Every encoder has a decoder that rejects anything it would not have produced, so
//! `decode(encode(m)) == m` and decoders never panic (both are property-tested and fuzzed).

pub mod codec;
pub mod command;
pub mod frame;
pub mod handshake;

pub use command::{ErrorCode, ErrorReply, Request, Response};
pub use frame::Deframer;
pub use handshake::{ClientFinished, ClientHello, ServerAuth, ServerHello};

use codec::Reader;

use crate::Error;

/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Magic bytes opening a ClientHello.
pub const MAGIC: [u8; 4] = *b"VSRV";
/// Largest record payload (after the content type byte), in bytes.
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Size of a record's IV.
pub const IV_LEN: usize = 16;
/// Size of a record's HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Smallest legal encrypted frame body: IV, one cipher block, tag.
pub const MIN_RECORD_BODY: usize = IV_LEN + 16 + TAG_LEN;
/// Largest legal frame body: IV, padded (type + MAX_PAYLOAD), tag.
pub const MAX_FRAME_BODY: usize = IV_LEN + ((1 + MAX_PAYLOAD) / 16 + 1) * 16 + TAG_LEN;
/// Size of a compressed SEC1 secp256k1 point.
pub const POINT_LEN: usize = 33;
/// Size of a fixed-width (r || s) ECDSA signature.
pub const SIGNATURE_LEN: usize = 64;

/// Plaintext frame type: ClientHello.
pub const TYPE_CLIENT_HELLO: u8 = 0x01;
/// Plaintext frame type: ServerHello.
pub const TYPE_SERVER_HELLO: u8 = 0x02;
/// Plaintext frame type: the server refuses before any keys exist.
pub const TYPE_REFUSE: u8 = 0x15;
/// Record content type: ServerAuth (handshake keys).
pub const CONTENT_SERVER_AUTH: u8 = 0x03;
/// Record content type: ClientFinished (handshake keys).
pub const CONTENT_CLIENT_FINISHED: u8 = 0x04;
/// Record content type: the sender switches its sending keys after this record.
pub const CONTENT_KEY_UPDATE: u8 = 0x10;
/// Record content type: authenticated close.
pub const CONTENT_CLOSE: u8 = 0x11;
/// Record content type: command-layer message.
pub const CONTENT_APP: u8 = 0x17;
/// Record content type: a piece of the connection's byte stream, which both ends may send
/// once the server opened it (a replication link: spec/replication.md).
pub const CONTENT_STREAM: u8 = 0x18;
/// Record content type: a server-pushed notice on a command session, server to client only
/// (one [`Notice`](crate::commands::Notice) per record, protocol.md §12.4).
pub const CONTENT_NOTICE: u8 = 0x19;

/// Why a connection was closed or refused, carried in Close records and Refuse frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// Orderly close.
    Normal,
    /// The peer violated the protocol.
    ProtocolError,
    /// A handshake or idle timer expired.
    Timeout,
    /// The server is at its connection limit.
    Busy,
    /// The server is shutting down.
    Shutdown,
    /// The protocol version is not supported.
    UnsupportedVersion,
    /// A code this implementation does not know.
    Other(u16),
}

impl CloseCode {
    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::ProtocolError => 1,
            CloseCode::Timeout => 2,
            CloseCode::Busy => 3,
            CloseCode::Shutdown => 4,
            CloseCode::UnsupportedVersion => 5,
            CloseCode::Other(n) => n,
        }
    }

    /// The code for a wire number; unknown numbers are kept as [`CloseCode::Other`].
    pub fn from_u16(n: u16) -> Self {
        match n {
            0 => CloseCode::Normal,
            1 => CloseCode::ProtocolError,
            2 => CloseCode::Timeout,
            3 => CloseCode::Busy,
            4 => CloseCode::Shutdown,
            5 => CloseCode::UnsupportedVersion,
            n => CloseCode::Other(n),
        }
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseCode::Normal => f.write_str("normal close"),
            CloseCode::ProtocolError => f.write_str("protocol error"),
            CloseCode::Timeout => f.write_str("timeout"),
            CloseCode::Busy => f.write_str("server busy"),
            CloseCode::Shutdown => f.write_str("server shutting down"),
            CloseCode::UnsupportedVersion => f.write_str("unsupported protocol version"),
            CloseCode::Other(n) => write!(f, "close code {n}"),
        }
    }
}

/// Body of a Close record: a code and a human-readable reason (at most 1024 bytes of UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Why.
    pub code: CloseCode,
    /// Free text for humans.
    pub reason: String,
}

/// Longest reason a Close record carries.
pub const MAX_CLOSE_REASON: usize = 1024;

impl Close {
    /// Appends the encoding (the reason is cut to [`MAX_CLOSE_REASON`] on a char boundary).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.to_u16().to_be_bytes());
        let mut end = self.reason.len().min(MAX_CLOSE_REASON);
        while !self.reason.is_char_boundary(end) {
            end -= 1;
        }
        codec::put_bytes16(out, &self.reason.as_bytes()[..end]);
    }

    /// Decodes a Close body.
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf, "close");
        let code = CloseCode::from_u16(r.u16()?);
        let reason = r.str16()?;
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::Malformed("close"));
        }
        let reason = reason.to_owned();
        r.finish()?;
        Ok(Close { code, reason })
    }
}

/// Body of a Refuse frame (plaintext, server to client, instead of a ServerHello): its close
/// code only; a retry hint, if the body has one, is checked and dropped ([`Refusal::decode`]
/// keeps it).
pub fn decode_refuse(buf: &[u8]) -> Result<CloseCode, Error> {
    Refusal::decode(buf).map(|r| r.code)
}

/// Which server limit refused a connection (the `limit` byte of a Refuse retry hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedLimit {
    /// Too many new connections from this address in the current window.
    ConnectionRate,
    /// The server serves as many connections as it allows.
    MaxConnections,
    /// Too many connections from this address that have not logged in.
    Unauthenticated,
    /// A limit this implementation does not know.
    Other(u8),
}

impl RefusedLimit {
    /// The limit's number on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            RefusedLimit::ConnectionRate => 1,
            RefusedLimit::MaxConnections => 2,
            RefusedLimit::Unauthenticated => 3,
            RefusedLimit::Other(n) => n,
        }
    }

    /// The limit for a wire number; unknown numbers are kept as [`RefusedLimit::Other`].
    pub fn from_u8(n: u8) -> Self {
        match n {
            1 => RefusedLimit::ConnectionRate,
            2 => RefusedLimit::MaxConnections,
            3 => RefusedLimit::Unauthenticated,
            n => RefusedLimit::Other(n),
        }
    }
}

impl std::fmt::Display for RefusedLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefusedLimit::ConnectionRate => {
                f.write_str("too many new connections from this address (connection rate limit)")
            }
            RefusedLimit::MaxConnections => {
                f.write_str("the server is at its connection limit (max connections)")
            }
            RefusedLimit::Unauthenticated => {
                f.write_str("too many connections from this address that have not logged in")
            }
            RefusedLimit::Other(n) => write!(f, "server limit {n}"),
        }
    }
}

/// A Refuse frame's retry hint: which limit refused, and after how many seconds a new
/// connection may be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryHint {
    /// The limit that refused.
    pub limit: RefusedLimit,
    /// Seconds to wait before connecting again (the server's estimate).
    pub retry_after_secs: u32,
}

/// A whole Refuse body: the close code and, from servers that give one, a retry hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Why, as a close code.
    pub code: CloseCode,
    /// Which limit and when to retry, if the server said.
    pub hint: Option<RetryHint>,
}

impl Refusal {
    /// Appends the body after the type byte: `code` (u16), then, with a hint, `limit` (u8)
    /// and `retry_after_secs` (u32), big-endian.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.to_u16().to_be_bytes());
        if let Some(hint) = self.hint {
            out.push(hint.limit.to_u8());
            out.extend_from_slice(&hint.retry_after_secs.to_be_bytes());
        }
    }

    /// Decodes a Refuse body (after the type byte): 2 bytes, or 7 with a hint; any other
    /// length is malformed.
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf, "refuse");
        let code = CloseCode::from_u16(r.u16()?);
        let hint = if buf.len() > 2 {
            let limit = RefusedLimit::from_u8(r.u8()?);
            let retry_after_secs = r.u32()?;
            Some(RetryHint {
                limit,
                retry_after_secs,
            })
        } else {
            None
        };
        r.finish()?;
        Ok(Refusal { code, hint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_with_a_hint_round_trips_and_old_bodies_still_parse() {
        let hinted = Refusal {
            code: CloseCode::Busy,
            hint: Some(RetryHint {
                limit: RefusedLimit::ConnectionRate,
                retry_after_secs: 7,
            }),
        };
        let mut body = Vec::new();
        hinted.encode(&mut body);
        assert_eq!(body, [0, 3, 1, 0, 0, 0, 7]);
        assert_eq!(Refusal::decode(&body), Ok(hinted));
        assert_eq!(decode_refuse(&body), Ok(CloseCode::Busy));
        // The body of servers without hints.
        assert_eq!(
            Refusal::decode(&[0, 3]),
            Ok(Refusal {
                code: CloseCode::Busy,
                hint: None
            })
        );
        // A cut hint, or bytes beyond it, are malformed.
        for bad in [
            &[0, 3, 1][..],
            &[0, 3, 1, 0, 0, 0],
            &[0, 3, 1, 0, 0, 0, 7, 0],
        ] {
            assert!(Refusal::decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(RefusedLimit::from_u8(9), RefusedLimit::Other(9));
        for limit in [
            RefusedLimit::ConnectionRate,
            RefusedLimit::MaxConnections,
            RefusedLimit::Unauthenticated,
        ] {
            assert_eq!(RefusedLimit::from_u8(limit.to_u8()), limit);
        }
    }
}
