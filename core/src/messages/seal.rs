//! Sealing and opening a message (spec/messages.md §3, §4): an ephemeral ECDH to the
//! recipient's message key, HKDF-SHA256 bound to the whole header (both public keys, both
//! names, the nonce, the time), one record of the record layer (AES-256-CBC + HMAC-SHA256,
//! [`RecordKeys`]) holding the text, and the sender's ECDSA signature over header and
//! ciphertext. Opening verifies in a fixed order and returns the text only when every check
//! passed.

use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    MAX_MESSAGE_NAME, MAX_MESSAGE_TEXT, MessageError, MessageHeader, MessageKey, SIGNATURE_CONTEXT,
    SealedMessage,
};
use crate::secure::keys::{self, Secret};
use crate::secure::{RecordKeys, ServerKey};
use crate::wire::IV_LEN;

/// HKDF-Extract salt of the message key schedule.
pub const LABEL_MESSAGE_EXTRACT: &[u8] = b"vserv/1 message";
/// HKDF-Expand label of the message's record secret.
pub const LABEL_MESSAGE_SECRET: &[u8] = b"vserv/1 message secret";
/// The record content type the text is sealed under.
pub const CONTENT_MESSAGE_TEXT: u8 = 0x4d;

/// A message that opened: who sent it (the key that signed it, which the caller compares
/// with the key it pinned for `from`), to whom, when, and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's user name, as the sender sealed it.
    pub from: String,
    /// The recipient's user name.
    pub to: String,
    /// The sender's time, Unix seconds.
    pub time: u64,
    /// The key whose signature verified.
    pub sender_key: ServerKey,
    /// The text.
    pub text: Vec<u8>,
}

/// The record secret of a message: `HKDF-Expand(HKDF-Extract(salt, shared),
/// LABEL_MESSAGE_SECRET || SHA-256(header))`.
fn message_secret(shared: &[u8; 32], header: &MessageHeader) -> Secret {
    let mut encoded = Vec::new();
    header.encode(&mut encoded);
    let context: [u8; 32] = Sha256::digest(&encoded).into();
    let (prk, _) = Hkdf::<Sha256>::extract(Some(LABEL_MESSAGE_EXTRACT), shared);
    let mut prk_bytes = Zeroizing::new([0u8; 32]);
    prk_bytes.copy_from_slice(&prk);
    keys::expand(&prk_bytes, LABEL_MESSAGE_SECRET, &context)
}

fn signed_message(sealed: &SealedMessage) -> Vec<u8> {
    [SIGNATURE_CONTEXT, &sealed.signed_part()].concat()
}

fn check_name(name: &str) -> Result<(), MessageError> {
    if name.is_empty() || name.len() > MAX_MESSAGE_NAME {
        return Err(MessageError::TooLarge("user name (1 to 64 bytes)"));
    }
    Ok(())
}

/// Seals `text` from `from` (holding `sender`) to `to` (whose message key is `recipient`),
/// at `time`, with randomness from `rng` (ephemeral key, nonce, IV).
pub fn seal<R: CryptoRng + ?Sized>(
    sender: &MessageKey,
    from: &str,
    recipient: &ServerKey,
    to: &str,
    time: u64,
    text: &[u8],
    rng: &mut R,
) -> Result<SealedMessage, MessageError> {
    if text.len() > MAX_MESSAGE_TEXT {
        return Err(MessageError::TooLarge("text"));
    }
    check_name(from)?;
    check_name(to)?;
    let ephemeral = keys::random_scalar(rng);
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let header = MessageHeader {
        ephemeral: keys::public_point(&ephemeral),
        sender_key: sender.public(),
        recipient_key: *recipient,
        nonce,
        time,
        from: from.to_owned(),
        to: to.to_owned(),
    };
    let shared = keys::ecdh(&ephemeral, recipient.as_bytes()).map_err(|_| MessageError::BadKey)?;
    let mut record = RecordKeys::from_secret(message_secret(&shared, &header));
    let mut frame = Vec::new();
    record
        .seal(CONTENT_MESSAGE_TEXT, text, iv, &mut frame)
        .map_err(|_| MessageError::TooLarge("text"))?;
    // `seal` writes one whole frame: its 4-byte length, then the record body.
    let ciphertext = frame.get(4..).unwrap_or_default().to_vec();
    let mut sealed = SealedMessage {
        header,
        ciphertext,
        signature: [0u8; crate::wire::SIGNATURE_LEN],
    };
    sealed.signature = sender.sign(&signed_message(&sealed));
    Ok(sealed)
}

/// Opens `data` as `me` (holding `key`), in this order: decode the shape; check that it is
/// sealed to `key` and to the name `me`; verify the signature with the sender key it names;
/// derive the record secret and open the record (tag checked before decryption); check the
/// content type. The first failure is returned; the text only when all passed.
pub fn open(key: &MessageKey, me: &str, data: &[u8]) -> Result<Opened, MessageError> {
    let sealed = SealedMessage::decode(data)?;
    let header = &sealed.header;
    if header.recipient_key != key.public() || header.to != me {
        return Err(MessageError::NotForMe);
    }
    header
        .sender_key
        .verify(&signed_message(&sealed), &sealed.signature)
        .map_err(|_| MessageError::BadSignature)?;
    let shared = key.ecdh(&header.ephemeral)?;
    let mut record = RecordKeys::from_secret(message_secret(&shared, header));
    let mut body = sealed.ciphertext.clone();
    let (content_type, text) = record
        .open(&mut body)
        .map_err(|_| MessageError::BadCiphertext)?;
    if content_type != CONTENT_MESSAGE_TEXT || text.len() > MAX_MESSAGE_TEXT {
        return Err(MessageError::BadCiphertext);
    }
    Ok(Opened {
        from: header.from.clone(),
        to: header.to.clone(),
        time: header.time,
        sender_key: header.sender_key,
        text: text.to_vec(),
    })
}
