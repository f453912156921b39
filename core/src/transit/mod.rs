//! Encryption as a service, the pure part (spec/transit.md): the transit token's text form
//! ([`Token`], whose decoder is fuzzed), sealing and opening data under one version of a
//! user's named key ([`seal`], [`open`]), and the key hierarchy below the server's master key
//! that keeps each version's key material encrypted at rest ([`wrap`], [`unwrap`]).
//!
//! Every construction is the record layer's: AES-256-CBC with PKCS#7 padding, then
//! HMAC-SHA256 over what must not change (encrypt-then-MAC), the tag checked in constant time
//! before anything is decrypted. Keys for encryption and for the MAC are derived separately
//! with HKDF-SHA256. Randomness (IVs, key material) is passed in: nothing here reads the OS.

mod cipher;
mod token;
mod wrap;

pub use cipher::{DataKeys, open, seal};
pub use token::{Token, check_key_name};
pub use wrap::{MasterKey, WrapContext, unwrap, wrap};

use crate::wire::{IV_LEN, MAX_PAYLOAD, TAG_LEN};

/// Bytes of one version's key material (and of the master key).
pub const KEY_LEN: usize = 32;

/// What every token starts with: the format (`vserv`) and its version (`v1`). The key's
/// version follows the key name, after this prefix.
pub const TOKEN_PREFIX: &str = "vserv:v1:";

/// The most plaintext bytes one `seal` takes, so that the token of the largest `seal`
/// still fits one `unseal` or `rewrap` request in one record (checked below).
pub const MAX_SEAL_DATA: usize = 12_000;

/// The highest key version a token may name (a `u32`, at most 10 decimal digits).
pub const MAX_TOKEN_VERSION: u32 = u32::MAX;

/// Longest key name (the user-name rules of [`crate::names`]).
pub const MAX_KEY_NAME: usize = crate::names::MAX_NAME_LEN;

/// Bytes of ciphertext for `len` bytes of plaintext (PKCS#7 always adds 1 to 16 bytes).
pub const fn ciphertext_len(len: usize) -> usize {
    (len / 16 + 1) * 16
}

/// Characters of the unpadded base64url text of `n` bytes.
pub const fn base64_len(n: usize) -> usize {
    n / 3 * 4 + [0, 2, 3][n % 3]
}

/// Longest token text: the prefix, the longest name, a 10-digit version, two colons, and
/// the base64url of IV, the ciphertext of [`MAX_SEAL_DATA`] bytes and the tag.
pub const MAX_TOKEN_LEN: usize = TOKEN_PREFIX.len()
    + MAX_KEY_NAME
    + 1
    + 10
    + 1
    + base64_len(IV_LEN + ciphertext_len(MAX_SEAL_DATA) + TAG_LEN);

/// The largest request that carries a token: `0x01 | id:u32 | name:u8 "unseal" | argc:u16 |
/// (len:u32 NAME) | (len:u32 TOKEN)` (`rewrap` is as long).
const MAX_TOKEN_REQUEST: usize = 1 + 4 + 1 + 6 + 2 + 4 + MAX_KEY_NAME + 4 + MAX_TOKEN_LEN;

// The largest unseal and rewrap requests, and the largest seal reply (shorter), fit one
// record.
const _: () = assert!(MAX_TOKEN_REQUEST <= MAX_PAYLOAD);

/// Why a token or a wrapped key was refused. Nothing of the plaintext is returned with any
/// of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitError {
    /// The text is not a token of this format (prefix, name, version, base64url, lengths).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The tag does not verify (a forged, altered or truncated token, or the wrong key), or
    /// the padding is wrong after it did.
    #[error("the token does not authenticate under this key")]
    BadTag,
    /// The plaintext is longer than [`MAX_SEAL_DATA`].
    #[error("at most {MAX_SEAL_DATA} bytes can be sealed at once")]
    TooLarge,
    /// A wrapped key does not authenticate under the master key and its context.
    #[error("a stored key does not authenticate under the master key")]
    BadWrap,
}

#[cfg(test)]
mod tests;
