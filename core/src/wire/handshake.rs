//! The four handshake messages. Each `encode` writes the message *with* its type byte,
//! exactly the bytes that enter the transcript hash.

use super::codec::Reader;
use super::{
    CONTENT_CLIENT_FINISHED, CONTENT_SERVER_AUTH, MAGIC, POINT_LEN, SIGNATURE_LEN,
    TYPE_CLIENT_HELLO, TYPE_SERVER_HELLO,
};
use crate::Error;

/// C->S, plaintext: `0x01 | "VSRV" | version:u16 | client_random[32] | ephemeral[33]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// Protocol version the client speaks.
    pub version: u16,
    /// Fresh client randomness.
    pub random: [u8; 32],
    /// Client ephemeral public key, SEC1 compressed (not yet validated as a point).
    pub ephemeral: [u8; POINT_LEN],
}

impl ClientHello {
    /// Encoded size including the type byte.
    pub const LEN: usize = 1 + 4 + 2 + 32 + POINT_LEN;

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(TYPE_CLIENT_HELLO);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.random);
        out.extend_from_slice(&self.ephemeral);
    }

    /// Decodes a frame body (type byte included).
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf, "ClientHello");
        if r.u8()? != TYPE_CLIENT_HELLO || r.array::<4>()? != MAGIC {
            return Err(Error::Malformed("ClientHello"));
        }
        let version = r.u16()?;
        let random = r.array()?;
        let ephemeral = r.array()?;
        r.finish()?;
        Ok(ClientHello {
            version,
            random,
            ephemeral,
        })
    }
}

/// S->C, plaintext: `0x02 | version:u16 | server_random[32] | ephemeral[33]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// Protocol version chosen by the server.
    pub version: u16,
    /// Fresh server randomness.
    pub random: [u8; 32],
    /// Server ephemeral public key, SEC1 compressed.
    pub ephemeral: [u8; POINT_LEN],
}

impl ServerHello {
    /// Encoded size including the type byte.
    pub const LEN: usize = 1 + 2 + 32 + POINT_LEN;

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(TYPE_SERVER_HELLO);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.random);
        out.extend_from_slice(&self.ephemeral);
    }

    /// Decodes a frame body (type byte included).
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf, "ServerHello");
        if r.u8()? != TYPE_SERVER_HELLO {
            return Err(Error::Malformed("ServerHello"));
        }
        let version = r.u16()?;
        let random = r.array()?;
        let ephemeral = r.array()?;
        r.finish()?;
        Ok(ServerHello {
            version,
            random,
            ephemeral,
        })
    }
}

/// S->C under the server handshake keys:
/// `0x03 | static_key[33] | signature[64] | finished[32]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAuth {
    /// The server's long-term identity key, SEC1 compressed.
    pub static_key: [u8; POINT_LEN],
    /// ECDSA-SHA256 (r || s) over the signature context and transcript hash.
    pub signature: [u8; SIGNATURE_LEN],
    /// HMAC-SHA256 Finished value.
    pub finished: [u8; 32],
}

impl ServerAuth {
    /// Encoded size including the type byte.
    pub const LEN: usize = 1 + POINT_LEN + SIGNATURE_LEN + 32;

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(CONTENT_SERVER_AUTH);
        out.extend_from_slice(&self.static_key);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.finished);
    }

    /// Decodes a record plaintext (content type included).
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf, "ServerAuth");
        if r.u8()? != CONTENT_SERVER_AUTH {
            return Err(Error::Malformed("ServerAuth"));
        }
        let static_key = r.array()?;
        let signature = r.array()?;
        let finished = r.array()?;
        r.finish()?;
        Ok(ServerAuth {
            static_key,
            signature,
            finished,
        })
    }
}

/// C->S under the client handshake keys: `0x04 | finished[32]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFinished {
    /// HMAC-SHA256 Finished value.
    pub finished: [u8; 32],
}

impl ClientFinished {
    /// Encoded size including the type byte.
    pub const LEN: usize = 1 + 32;

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(CONTENT_CLIENT_FINISHED);
        out.extend_from_slice(&self.finished);
    }

    /// Decodes a record plaintext (content type included).
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf, "ClientFinished");
        if r.u8()? != CONTENT_CLIENT_FINISHED {
            return Err(Error::Malformed("ClientFinished"));
        }
        let finished = r.array()?;
        r.finish()?;
        Ok(ClientFinished { finished })
    }
}
