//! The transit token's text form (spec/transit.md §2):
//!
//! ```text
//! vserv:v1:NAME:VERSION:BASE64URL(IV[16] || CIPHERTEXT || TAG[32])
//! ```
//!
//! `vserv:v1:` names the format; NAME is the key's name (the user-name rules of
//! [`crate::names`], in normal form: lower case); VERSION is the key version in decimal (1 to
//! [`MAX_TOKEN_VERSION`](super::MAX_TOKEN_VERSION), no leading zero); the last part is
//! unpadded base64url (RFC 4648 §5) of the IV, the ciphertext (a non-empty multiple of 16
//! bytes) and the tag. Every token has exactly one spelling: [`Token::parse`] accepts only
//! what [`Token::encode`] writes, so the header the tag covers is the header as sent.

use base64ct::{Base64UrlUnpadded, Encoding};

use super::{
    MAX_KEY_NAME, MAX_SEAL_DATA, MAX_TOKEN_LEN, TOKEN_PREFIX, TransitError, ciphertext_len,
};
use crate::names::UserName;
use crate::wire::{IV_LEN, TAG_LEN};

/// A decoded token: which key version sealed it, and the sealed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The key's name (normal form).
    pub name: String,
    /// The key version, from 1.
    pub version: u32,
    /// The AES-256-CBC IV.
    pub iv: [u8; IV_LEN],
    /// The ciphertext: a non-empty multiple of 16 bytes.
    pub ciphertext: Vec<u8>,
    /// HMAC-SHA256 over the header text, the IV and the ciphertext.
    pub tag: [u8; TAG_LEN],
}

/// Checks a key name: the user-name rules (1 to 32 of `a-z 0-9 . _ -`, starting with a
/// letter or digit) in normal form. Returns the reason it is refused.
pub fn check_key_name(name: &str) -> Result<(), &'static str> {
    match UserName::parse(name) {
        Ok(normal) if normal.as_str() == name => Ok(()),
        Ok(_) => Err("a key name is written in lower case"),
        Err(_) => Err(
            "a key name has 1 to 32 characters from a-z, 0-9, '.', '_' and '-', starting with a \
             letter or a digit",
        ),
    }
}

/// Parses a version as a token writes it: 1 to 10 digits, no leading zero, not 0, a `u32`.
fn parse_version(text: &str) -> Option<u32> {
    if text.is_empty()
        || text.len() > 10
        || text.starts_with('0')
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    text.parse().ok()
}

impl Token {
    /// The header text of a token of key `name`, version `version`:
    /// `vserv:v1:NAME:VERSION:`, what the tag covers first.
    pub fn header_for(name: &str, version: u32) -> Result<String, TransitError> {
        check_key_name(name).map_err(|_| TransitError::Malformed("key name"))?;
        if version == 0 {
            return Err(TransitError::Malformed("key version 0"));
        }
        Ok(format!("{TOKEN_PREFIX}{name}:{version}:"))
    }

    /// The token's text.
    pub fn encode(&self) -> String {
        let mut body = Vec::with_capacity(IV_LEN + self.ciphertext.len() + TAG_LEN);
        body.extend_from_slice(&self.iv);
        body.extend_from_slice(&self.ciphertext);
        body.extend_from_slice(&self.tag);
        format!(
            "{TOKEN_PREFIX}{}:{}:{}",
            self.name,
            self.version,
            Base64UrlUnpadded::encode_string(&body)
        )
    }

    /// Decodes a token's text (trailing spaces, a newline or any other byte make it
    /// malformed). Checks the shape only: whether it authenticates is for
    /// [`open`](super::open) with the key version it names.
    pub fn parse(raw: &[u8]) -> Result<Token, TransitError> {
        let bad = TransitError::Malformed;
        if raw.len() > MAX_TOKEN_LEN {
            return Err(bad("too long"));
        }
        let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
        let rest = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(bad("not a vserv:v1: token"))?;
        let mut parts = rest.splitn(3, ':');
        let (Some(name), Some(version), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("missing parts"));
        };
        if name.len() > MAX_KEY_NAME || check_key_name(name).is_err() {
            return Err(bad("key name"));
        }
        let version = parse_version(version).ok_or(bad("key version"))?;
        let bytes = Base64UrlUnpadded::decode_vec(body).map_err(|_| bad("base64url"))?;
        // One spelling only: the encoder writes no other text for these bytes.
        if Base64UrlUnpadded::encode_string(&bytes) != body {
            return Err(bad("base64url"));
        }
        let ct_len = bytes
            .len()
            .checked_sub(IV_LEN + TAG_LEN)
            .ok_or(bad("truncated"))?;
        if ct_len == 0 || !ct_len.is_multiple_of(16) || ct_len > ciphertext_len(MAX_SEAL_DATA) {
            return Err(bad("ciphertext length"));
        }
        let (iv, rest) = bytes.split_at(IV_LEN);
        let (ciphertext, tag) = rest.split_at(ct_len);
        Ok(Token {
            name: name.to_owned(),
            version,
            iv: iv.try_into().map_err(|_| bad("truncated"))?,
            ciphertext: ciphertext.to_vec(),
            tag: tag.try_into().map_err(|_| bad("truncated"))?,
        })
    }
}
