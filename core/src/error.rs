//! The one error type of the core.

use crate::wire::{CloseCode, RetryHint};

/// Which party is at fault for an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The peer sent bytes that break the protocol (or the link was cut).
    Peer,
    /// A cryptographic identity or integrity check failed.
    Auth,
    /// The caller used the API wrongly (wrong state, oversized payload).
    Api,
}

/// Everything that can go wrong in the core. Peer and authentication errors are fatal for
/// the connection; API misuse leaves the connection unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- peer misbehaviour ---
    /// A message could not be decoded.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A message arrived that is not legal in the current state.
    #[error("unexpected message type {kind:#04x} while {state}")]
    UnexpectedMessage {
        /// The message or content type byte.
        kind: u8,
        /// The state the connection was in.
        state: &'static str,
    },
    /// A frame announced a length beyond the protocol limit; nothing was allocated for it.
    #[error("frame length {len} is outside the allowed range (max {max})")]
    BadFrameLength {
        /// The announced length.
        len: u32,
        /// The maximum allowed.
        max: u32,
    },
    /// The peer speaks a protocol version this implementation does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// The server refused the connection before the handshake (busy, version...).
    #[error("server refused the connection: {0}")]
    Refused(CloseCode),
    /// The server refused the connection at one of its limits and said when to retry.
    #[error("server refused the connection: {}; retry in {} s", .0.limit, .0.retry_after_secs)]
    RefusedRetry(RetryHint),
    /// The peer closed the transport without an authenticated close record.
    #[error("connection closed by peer without a close record (truncation)")]
    UnexpectedEof,
    /// The handshake did not complete in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing was received for longer than the idle timeout.
    #[error("connection idle for too long")]
    IdleTimeout,
    /// Server: the session did not log in within the login grace time.
    #[error("no login within the login grace time")]
    LoginGraceTimeout,
    /// A response named a request id that is not outstanding.
    #[error("response to unknown request id {0}")]
    UnknownRequestId(u32),

    // --- authentication failures ---
    /// A record failed authentication or decryption (deliberately one generic error).
    #[error("record failed authentication")]
    BadRecord,
    /// A public key is not a valid point.
    #[error("invalid public key")]
    BadPublicKey,
    /// The server's transcript signature does not verify.
    #[error("server signature does not verify")]
    BadSignature,
    /// A Finished MAC does not match the transcript.
    #[error("handshake Finished MAC mismatch")]
    BadFinished,
    /// The driver rejected the server's identity key.
    #[error("server key rejected")]
    ServerKeyRejected,

    // --- API misuse ---
    /// The call is not valid in the connection's current state.
    #[error("invalid call while {0}")]
    InvalidState(&'static str),
    /// The payload does not fit in one record / message.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Offered size.
        len: usize,
        /// Allowed size.
        max: usize,
    },
    /// `respond` named a request that is not awaiting a response.
    #[error("no outstanding request with id {0}")]
    NoSuchRequest(u32),
    /// The connection is closed or failed; nothing more can be done with it.
    #[error("connection is closed")]
    Closed,
}

impl Error {
    /// Classifies the error by who is at fault.
    pub fn kind(&self) -> ErrorKind {
        use Error::*;
        match self {
            Malformed(_)
            | UnexpectedMessage { .. }
            | BadFrameLength { .. }
            | UnsupportedVersion(_)
            | Refused(_)
            | RefusedRetry(_)
            | UnexpectedEof
            | HandshakeTimeout
            | IdleTimeout
            | LoginGraceTimeout
            | UnknownRequestId(_) => ErrorKind::Peer,
            BadRecord | BadPublicKey | BadSignature | BadFinished | ServerKeyRejected => {
                ErrorKind::Auth
            }
            InvalidState(_) | PayloadTooLarge { .. } | NoSuchRequest(_) | Closed => ErrorKind::Api,
        }
    }

    /// The close code reported to the peer when this error ends a connection.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::HandshakeTimeout | Error::IdleTimeout | Error::LoginGraceTimeout => {
                CloseCode::Timeout
            }
            Error::UnsupportedVersion(_) => CloseCode::UnsupportedVersion,
            Error::ServerKeyRejected => CloseCode::Normal,
            _ => CloseCode::ProtocolError,
        }
    }
}
