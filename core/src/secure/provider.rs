//! The one seam between the secure channel and the checks and ciphers that protect it.
//!
//! Every record sealed or opened, every Finished MAC and every signature checked goes through
//! [`Active`], which is [`Real`] in every build but the fuzzing one. Under the `fuzzing`
//! feature it is [`Null`]: records are sealed with a null cipher (PKCS#7 padding, zero tag)
//! and opened without checking their tag, MACs and signatures always verify, so fuzzers get
//! past them into the code behind the handshake (as rustls plugs its fuzzing provider in
//! through the same trait as the real one). This module is the only place where the feature
//! changes the channel.

use hmac::{Hmac, Mac};
use k256::ecdsa::signature::Verifier;
use k256::ecdsa::{Signature, VerifyingKey};
use sha2::Sha256;

use super::record::RecordKeys;
use crate::Error;
use crate::wire::{POINT_LEN, SIGNATURE_LEN};

/// What the channel asks of its cryptography beyond deriving keys.
pub(crate) trait Provider {
    /// Encrypts and tags, in place, every record framed in `keys` and not yet sealed.
    fn seal_framed(keys: &mut RecordKeys);

    /// Checks the tag of one record body (`iv || ciphertext`, then `tag`) under `keys`' next
    /// sequence number, then decrypts it in place; returns the plaintext (content type and
    /// payload). Every failure is [`Error::BadRecord`].
    fn open<'a>(keys: &RecordKeys, iv_ct: &'a mut [u8], tag: &[u8]) -> Result<&'a [u8], Error>;

    /// Checks an ECDSA-SHA256 `signature` of `msg` by the SEC1 compressed `key`.
    fn verify_signature(
        key: &[u8; POINT_LEN],
        msg: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), Error>;

    /// Checks, in constant time, that `tag` is what `mac` (already fed its data) computes.
    fn verify_mac(mac: Hmac<Sha256>, tag: &[u8]) -> bool;
}

/// The provider the channel uses: [`Real`], or [`Null`] under the `fuzzing` feature.
#[cfg(not(feature = "fuzzing"))]
pub(crate) type Active = Real;
/// The provider the channel uses: [`Real`], or [`Null`] under the `fuzzing` feature.
#[cfg(feature = "fuzzing")]
pub(crate) type Active = Null;

/// AES-256-CBC with HMAC-SHA256 records, ECDSA-SHA256 signatures, HMAC Finished values.
/// (Unused, but still compiled and linted, in the fuzzing build.)
#[cfg_attr(feature = "fuzzing", allow(dead_code))]
pub(crate) enum Real {}

impl Provider for Real {
    fn seal_framed(keys: &mut RecordKeys) {
        keys.encrypt_framed();
        keys.tag_framed();
    }

    fn open<'a>(keys: &RecordKeys, iv_ct: &'a mut [u8], tag: &[u8]) -> Result<&'a [u8], Error> {
        keys.authenticate_and_decrypt(iv_ct, tag)
    }

    fn verify_signature(
        key: &[u8; POINT_LEN],
        msg: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), Error> {
        let key = VerifyingKey::from_sec1_bytes(key).map_err(|_| Error::BadPublicKey)?;
        let sig = Signature::from_slice(signature).map_err(|_| Error::BadSignature)?;
        key.verify(msg, &sig).map_err(|_| Error::BadSignature)
    }

    fn verify_mac(mac: Hmac<Sha256>, tag: &[u8]) -> bool {
        mac.verify_slice(tag).is_ok()
    }
}

/// The fuzzing build's provider: a null cipher, and checks that always pass.
#[cfg(feature = "fuzzing")]
pub(crate) enum Null {}

#[cfg(feature = "fuzzing")]
impl Provider for Null {
    fn seal_framed(_: &mut RecordKeys) {
        // The framed records already hold their plaintext, padding and a zero tag.
    }

    fn open<'a>(_: &RecordKeys, iv_ct: &'a mut [u8], _: &[u8]) -> Result<&'a [u8], Error> {
        let ct = iv_ct.get(crate::wire::IV_LEN..).ok_or(Error::BadRecord)?;
        let pad = *ct.last().ok_or(Error::BadRecord)? as usize;
        if pad == 0
            || pad > 16
            || pad > ct.len()
            || ct[ct.len() - pad..].iter().any(|&b| b as usize != pad)
        {
            return Err(Error::BadRecord);
        }
        Ok(&ct[..ct.len() - pad])
    }

    fn verify_signature(
        _: &[u8; POINT_LEN],
        _: &[u8],
        _: &[u8; SIGNATURE_LEN],
    ) -> Result<(), Error> {
        Ok(())
    }

    fn verify_mac(_: Hmac<Sha256>, _: &[u8]) -> bool {
        true
    }
}
