//! The bytes of sealed datagrams (spec/datagrams.md §2), without any crypto. Decoders check
//! only shape: sizes first, then the kind byte, then the fixed fields; they never panic and
//! never allocate more than the input.

use super::{
    DatagramError, KIND_REQUEST, KIND_RESPONSE, MAX_DATAGRAM, MIN_BODY, NONCE_LEN,
    REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN,
};
use crate::wire::{IV_LEN, POINT_LEN, TAG_LEN};

/// A sealed request as it travels: `0xd1 || ephemeral[33] || nonce[16] || time:u64 || body`,
/// where `body` is one record body (`IV || CBC || tag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestDatagram {
    /// The client's fresh ECDH public key (SEC1 compressed; checked when used).
    pub ephemeral: [u8; POINT_LEN],
    /// Fresh random bytes naming this request (the replay cache's key, with `time`).
    pub nonce: [u8; NONCE_LEN],
    /// The client's clock, Unix seconds.
    pub time: u64,
    /// The sealed record body.
    pub body: Vec<u8>,
}

/// A sealed response: `0xd2 || nonce[16] || body`, the nonce echoing the request's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseDatagram {
    /// The nonce of the request answered.
    pub nonce: [u8; NONCE_LEN],
    /// The sealed record body.
    pub body: Vec<u8>,
}

/// Whether `len` is a possible record body length: at least one block, whole blocks.
fn body_shape_ok(len: usize) -> bool {
    len >= MIN_BODY && (len - IV_LEN - TAG_LEN).is_multiple_of(16)
}

impl RequestDatagram {
    /// The header bytes the key schedule hashes: kind, ephemeral key, nonce, time.
    pub fn header(&self) -> [u8; REQUEST_HEADER_LEN] {
        let mut out = [0u8; REQUEST_HEADER_LEN];
        out[0] = KIND_REQUEST;
        out[1..1 + POINT_LEN].copy_from_slice(&self.ephemeral);
        out[1 + POINT_LEN..1 + POINT_LEN + NONCE_LEN].copy_from_slice(&self.nonce);
        out[1 + POINT_LEN + NONCE_LEN..].copy_from_slice(&self.time.to_be_bytes());
        out
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_HEADER_LEN + self.body.len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes a request datagram, checking in this order: at most [`MAX_DATAGRAM`] bytes
    /// (`TooLarge`), not empty (`Truncated`), the kind byte (`BadVersion`), the fixed fields
    /// and a body of whole blocks (`Truncated`), the ephemeral key's prefix (`BadPoint`).
    pub fn decode(data: &[u8]) -> Result<RequestDatagram, DatagramError> {
        if data.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLarge);
        }
        let (&kind, rest) = data.split_first().ok_or(DatagramError::Truncated)?;
        if kind != KIND_REQUEST {
            return Err(DatagramError::BadVersion);
        }
        let (ephemeral, rest) = rest
            .split_first_chunk::<POINT_LEN>()
            .ok_or(DatagramError::Truncated)?;
        let (nonce, rest) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(DatagramError::Truncated)?;
        let (time, body) = rest
            .split_first_chunk::<8>()
            .ok_or(DatagramError::Truncated)?;
        if !body_shape_ok(body.len()) {
            return Err(DatagramError::Truncated);
        }
        if !matches!(ephemeral[0], 0x02 | 0x03) {
            return Err(DatagramError::BadPoint);
        }
        Ok(RequestDatagram {
            ephemeral: *ephemeral,
            nonce: *nonce,
            time: u64::from_be_bytes(*time),
            body: body.to_vec(),
        })
    }
}

impl ResponseDatagram {
    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RESPONSE_HEADER_LEN + self.body.len());
        out.push(KIND_RESPONSE);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes a response datagram: size (`TooLarge`), kind (`BadVersion`), then the nonce
    /// and a body of whole blocks (`Truncated`).
    pub fn decode(data: &[u8]) -> Result<ResponseDatagram, DatagramError> {
        if data.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLarge);
        }
        let (&kind, rest) = data.split_first().ok_or(DatagramError::Truncated)?;
        if kind != KIND_RESPONSE {
            return Err(DatagramError::BadVersion);
        }
        let (nonce, body) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(DatagramError::Truncated)?;
        if !body_shape_ok(body.len()) {
            return Err(DatagramError::Truncated);
        }
        Ok(ResponseDatagram {
            nonce: *nonce,
            body: body.to_vec(),
        })
    }
}
