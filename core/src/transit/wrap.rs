//! The key hierarchy below the server's master key (spec/transit.md §4): a secret kept at
//! rest (a key version's material, a TOTP secret) is encrypted under keys derived from the
//! master key for that secret's context alone, so no two stored secrets share keys and a
//! record copied to another user, key or version does not open there.
//!
//! `PRK = HKDF-Extract(salt = "vserv/1 master", master key)`; for a context `info`
//! ([`WrapContext::info`]), `enc = HKDF-Expand(PRK, "vserv/1 wrap enc" || info)` and
//! `mac = HKDF-Expand(PRK, "vserv/1 wrap mac" || info)`; the stored bytes are
//! `IV[16] || AES-256-CBC(secret) || HMAC-SHA256(mac, info || IV || ciphertext)`.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::cipher::DataKeys;
use super::{KEY_LEN, TransitError};
use crate::secure::keys::expand;
use crate::wire::{IV_LEN, TAG_LEN};

/// HKDF-Extract salt of the master key.
pub const LABEL_MASTER_EXTRACT: &[u8] = b"vserv/1 master";
/// HKDF-Expand label of a wrapping encryption key.
pub const LABEL_WRAP_ENC: &[u8] = b"vserv/1 wrap enc";
/// HKDF-Expand label of a wrapping MAC key.
pub const LABEL_WRAP_MAC: &[u8] = b"vserv/1 wrap mac";

/// The server's master key: 32 random bytes, zeroized on drop, never printed.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// The master key with these bytes.
    pub fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> MasterKey {
        MasterKey(bytes)
    }

    /// The wrapping keys of `context`.
    fn keys(&self, context: &WrapContext<'_>) -> DataKeys {
        let (prk, _) = Hkdf::<Sha256>::extract(Some(LABEL_MASTER_EXTRACT), self.0.as_ref());
        let mut prk_bytes = Zeroizing::new([0u8; 32]);
        prk_bytes.copy_from_slice(&prk);
        let info = context.info();
        DataKeys::from_parts(
            expand(&prk_bytes, LABEL_WRAP_ENC, &info),
            expand(&prk_bytes, LABEL_WRAP_MAC, &info),
        )
    }
}

/// What a wrapped secret is, which only its own record may claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapContext<'a> {
    /// Version `version` of the transit key `name` of user `user`.
    TransitKey {
        /// The owner (normal form).
        user: &'a str,
        /// The key's name.
        name: &'a str,
        /// The version.
        version: u32,
    },
    /// The TOTP secret of user `user`.
    TotpSecret {
        /// The user (normal form).
        user: &'a str,
    },
}

impl WrapContext<'_> {
    /// The HKDF info: `"transit" 0x00 USER 0x00 NAME 0x00 VERSION:u32be` or
    /// `"totp" 0x00 USER` (names never contain NUL).
    pub fn info(&self) -> Vec<u8> {
        match self {
            WrapContext::TransitKey {
                user,
                name,
                version,
            } => [
                b"transit\0".as_slice(),
                user.as_bytes(),
                b"\0",
                name.as_bytes(),
                b"\0",
                &version.to_be_bytes(),
            ]
            .concat(),
            WrapContext::TotpSecret { user } => [b"totp\0".as_slice(), user.as_bytes()].concat(),
        }
    }
}

/// `secret` encrypted under the master key for `context`, with the IV `iv` (fresh random
/// bytes): `IV || ciphertext || tag`.
pub fn wrap(
    master: &MasterKey,
    context: &WrapContext<'_>,
    iv: [u8; IV_LEN],
    secret: &[u8],
) -> Vec<u8> {
    let (ciphertext, tag) = master.keys(context).encrypt(&context.info(), &iv, secret);
    [iv.as_slice(), &ciphertext, &tag].concat()
}

/// The secret [`wrap`] stored for `context`, or [`TransitError::BadWrap`] if the bytes were
/// changed, belong to another context or another master key.
pub fn unwrap(
    master: &MasterKey,
    context: &WrapContext<'_>,
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>, TransitError> {
    let bad = TransitError::BadWrap;
    if stored.len() < IV_LEN + 16 + TAG_LEN {
        return Err(bad);
    }
    let (iv, rest) = stored.split_at(IV_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| bad)?;
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| bad)?;
    master
        .keys(context)
        .decrypt(&context.info(), &iv, ciphertext, &tag)
        .map_err(|_| bad)
}
