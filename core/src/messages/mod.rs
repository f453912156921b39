//! End-to-end sealed messages between users (spec/messages.md): a user's k256 message key
//! ([`MessageKey`]), the sealed message's wire form ([`SealedMessage`], whose decoder is
//! fuzzed), and sealing and opening ([`seal`], [`open`], in `seal.rs`). Pure: time and
//! randomness are passed in. The server only stores and forwards the sealed bytes; it reads
//! the header's names, time and size, never the text.

mod seal;

pub use seal::{Opened, open, seal};

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::secure::keys::{self, SecretScalar};
use crate::secure::{ServerIdentity, ServerKey};
use crate::wire::codec::Reader;
use crate::wire::{POINT_LEN, SIGNATURE_LEN};

/// What the sender's signature covers first: domain separation from every other signature
/// a k256 key makes in vserv.
pub const SIGNATURE_CONTEXT: &[u8] = b"vserv/1 message signature";

/// The format version byte that opens every sealed message.
pub const MESSAGE_VERSION: u8 = 1;

/// Longest message text (the plaintext), in bytes.
pub const MAX_MESSAGE_TEXT: usize = 8 * 1024;

/// Longest user name a sealed message carries, in bytes.
pub const MAX_MESSAGE_NAME: usize = 64;

/// Longest encoded sealed message: the header with two longest names, the record body of
/// the longest text, the signature.
pub const MAX_SEALED_MESSAGE: usize = HEADER_FIXED
    + 2 * MAX_MESSAGE_NAME
    + 4
    + crate::secure::record::record_body_len(MAX_MESSAGE_TEXT)
    + SIGNATURE_LEN;

/// The header's bytes besides the two names: version, three keys, nonce, time, two name
/// lengths.
const HEADER_FIXED: usize = 1 + 3 * POINT_LEN + 32 + 8 + 2;

/// Why a sealed message was refused. Every variant is a refusal: nothing of the text is
/// returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The bytes are not a sealed message of this version.
    #[error("malformed sealed message: {0}")]
    Malformed(&'static str),
    /// The message is sealed to another key or another user name.
    #[error("the message is not addressed to this key and user")]
    NotForMe,
    /// The sender's signature does not verify under the sender key it names.
    #[error("the sender's signature does not verify")]
    BadSignature,
    /// The ciphertext fails authentication (or its padding or content type is wrong).
    #[error("the message fails authentication")]
    BadCiphertext,
    /// The text, or a name, is longer than the format allows.
    #[error("message too large: {0}")]
    TooLarge(&'static str),
    /// A key is not a valid secp256k1 key.
    #[error("not a valid message key")]
    BadKey,
}

/// A user's message key pair: ECDSA k256 for signing what they send, and the same scalar
/// for the ECDH that opens what they receive. The secret is zeroized on drop.
pub struct MessageKey {
    scalar: SecretScalar,
    signing: ServerIdentity,
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageKey")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

impl MessageKey {
    /// A fresh key pair drawn from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> MessageKey {
        let scalar = keys::random_scalar(rng);
        let bytes = Zeroizing::new(<[u8; 32]>::from(scalar.as_scalar().to_bytes()));
        match Self::from_secret_bytes(&bytes) {
            Ok(key) => key,
            // A scalar in [1, n) always re-encodes to one.
            Err(_) => unreachable!("a drawn scalar is a valid secret key"),
        }
    }

    /// The key pair whose secret scalar is `bytes` (big-endian, as stored).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Result<MessageKey, MessageError> {
        let scalar = keys::scalar_from_bytes(bytes).map_err(|_| MessageError::BadKey)?;
        let signing = ServerIdentity::from_secret_bytes(bytes).map_err(|_| MessageError::BadKey)?;
        Ok(MessageKey { scalar, signing })
    }

    /// The 32-byte secret scalar, for storing the key.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.signing.secret_bytes()
    }

    /// The public key others seal to and verify with (a validated compressed point).
    pub fn public(&self) -> ServerKey {
        self.signing.public_key()
    }

    fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(msg)
    }

    fn ecdh(&self, peer: &[u8; POINT_LEN]) -> Result<keys::Secret, MessageError> {
        keys::ecdh(&self.scalar, peer).map_err(|_| MessageError::BadKey)
    }
}

/// The cleartext header of a sealed message: what the server may see, and what the key
/// derivation and the signature bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader {
    /// The sender's ephemeral ECDH key.
    pub ephemeral: [u8; POINT_LEN],
    /// The sender's message key (verifies the signature).
    pub sender_key: ServerKey,
    /// The recipient's message key (the message is sealed to it).
    pub recipient_key: ServerKey,
    /// A fresh random nonce.
    pub nonce: [u8; 32],
    /// When the sender sealed it, Unix seconds.
    pub time: u64,
    /// The sender's user name.
    pub from: String,
    /// The recipient's user name.
    pub to: String,
}

impl MessageHeader {
    /// The header's encoding (what the HKDF context hashes and the signature covers).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(MESSAGE_VERSION);
        out.extend_from_slice(&self.ephemeral);
        out.extend_from_slice(self.sender_key.as_bytes());
        out.extend_from_slice(self.recipient_key.as_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.time.to_be_bytes());
        for name in [&self.from, &self.to] {
            let n = name.len().min(MAX_MESSAGE_NAME);
            out.push(n as u8);
            out.extend_from_slice(&name.as_bytes()[..n]);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<MessageHeader, MessageError> {
        let bad = |_| MessageError::Malformed("header");
        if r.u8().map_err(bad)? != MESSAGE_VERSION {
            return Err(MessageError::Malformed("unknown version"));
        }
        let ephemeral: [u8; POINT_LEN] = r.array().map_err(bad)?;
        let sender_key = ServerKey::from_bytes(r.take(POINT_LEN).map_err(bad)?)
            .map_err(|_| MessageError::BadKey)?;
        let recipient_key = ServerKey::from_bytes(r.take(POINT_LEN).map_err(bad)?)
            .map_err(|_| MessageError::BadKey)?;
        let nonce = r.array().map_err(bad)?;
        let time = u64::from_be_bytes(r.array().map_err(bad)?);
        let mut names = [String::new(), String::new()];
        for name in &mut names {
            let bytes = r.bytes8().map_err(bad)?;
            if bytes.is_empty() || bytes.len() > MAX_MESSAGE_NAME {
                return Err(MessageError::Malformed("user name length"));
            }
            *name = std::str::from_utf8(bytes)
                .map_err(|_| MessageError::Malformed("user name"))?
                .to_owned();
        }
        let [from, to] = names;
        Ok(MessageHeader {
            ephemeral,
            sender_key,
            recipient_key,
            nonce,
            time,
            from,
            to,
        })
    }
}

/// A sealed message as stored and sent: `header || ciphertext_len:u32 || ciphertext ||
/// signature[64]`, where the ciphertext is one record body of the record layer
/// (`IV || AES-256-CBC || HMAC tag`) and the signature covers everything before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedMessage {
    /// The cleartext header.
    pub header: MessageHeader,
    /// The record body holding the text.
    pub ciphertext: Vec<u8>,
    /// The sender's ECDSA signature over the signed part.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SealedMessage {
    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_part();
        out.extend_from_slice(&self.signature);
        out
    }

    /// The encoded header, ciphertext length and ciphertext (the signature covers
    /// [`SIGNATURE_CONTEXT`] followed by these).
    fn signed_part(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_FIXED + 2 * MAX_MESSAGE_NAME + 4);
        self.header.encode(&mut out);
        out.extend_from_slice(&(self.ciphertext.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Decodes a sealed message, checking only its shape (lengths, version, that the keys
    /// are valid points); nothing is verified or decrypted. Never panics.
    pub fn decode(data: &[u8]) -> Result<SealedMessage, MessageError> {
        if data.len() > MAX_SEALED_MESSAGE {
            return Err(MessageError::TooLarge("sealed message"));
        }
        let mut r = Reader::new(data, "sealed message");
        let header = MessageHeader::decode(&mut r)?;
        let bad = |_| MessageError::Malformed("ciphertext");
        let ciphertext = r.bytes32().map_err(bad)?.to_vec();
        let signature = r
            .array()
            .map_err(|_| MessageError::Malformed("signature"))?;
        r.finish()
            .map_err(|_| MessageError::Malformed("trailing bytes"))?;
        Ok(SealedMessage {
            header,
            ciphertext,
            signature,
        })
    }
}

#[cfg(test)]
mod tests;

// spec/messages.md §2 states this number.
const _: () = assert!(MAX_SEALED_MESSAGE == 8594);
