//! The key schedule: ECDH, HKDF-SHA256 with the protocol's labels, transcript hashing and
//! Finished MACs. Labels are listed in spec/protocol.md §6.2.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use k256::elliptic_curve::sec1::ToSec1Point;
use k256::{NonZeroScalar, PublicKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::provider::{Active, Provider as _};
use crate::Error;
use crate::wire::POINT_LEN;

/// HKDF-Extract salt of the handshake secret.
pub const LABEL_EXTRACT: &[u8] = b"vserv/1 handshake";
/// Client handshake traffic secret.
pub const LABEL_CLIENT_HS: &[u8] = b"vserv/1 c hs";
/// Server handshake traffic secret.
pub const LABEL_SERVER_HS: &[u8] = b"vserv/1 s hs";
/// Client application traffic secret.
pub const LABEL_CLIENT_AP: &[u8] = b"vserv/1 c ap";
/// Server application traffic secret.
pub const LABEL_SERVER_AP: &[u8] = b"vserv/1 s ap";
/// Exported session id.
pub const LABEL_SESSION_ID: &[u8] = b"vserv/1 session id";
/// AES-256 key of a traffic secret.
pub const LABEL_KEY: &[u8] = b"vserv/1 key";
/// HMAC-SHA256 key of a traffic secret.
pub const LABEL_MAC: &[u8] = b"vserv/1 mac";
/// Finished key of a handshake traffic secret.
pub const LABEL_FINISHED: &[u8] = b"vserv/1 finished";
/// Next-generation traffic secret after a KeyUpdate.
pub const LABEL_KEY_UPDATE: &[u8] = b"vserv/1 key update";
/// Context prefix of the server's transcript signature (followed by one zero byte).
pub const SIGNATURE_CONTEXT: &[u8] = b"vserv/1 server signature";

/// A 32-byte secret that is zeroized on drop.
pub type Secret = Zeroizing<[u8; 32]>;

/// A secret secp256k1 scalar (an ephemeral ECDH key, or a signing key being created),
/// zeroized on drop.
pub struct SecretScalar(NonZeroScalar);

impl SecretScalar {
    /// The scalar, for building a long-term key from it.
    pub fn as_scalar(&self) -> &NonZeroScalar {
        &self.0
    }
}

impl Drop for SecretScalar {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Draws a secp256k1 scalar: 32 bytes from `rng`, redrawn until they encode a scalar in
/// `[1, n)` (so a replayed byte stream reproduces the same key, which the vectors rely on).
pub fn random_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> SecretScalar {
    loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        if let Some(s) = Option::<NonZeroScalar>::from(NonZeroScalar::from_repr((*bytes).into())) {
            return SecretScalar(s);
        }
    }
}

/// The scalar whose big-endian encoding is `bytes` (a stored secret key), or
/// [`Error::BadPublicKey`] for zero or a value not below the group order.
pub fn scalar_from_bytes(bytes: &[u8; 32]) -> Result<SecretScalar, Error> {
    Option::<NonZeroScalar>::from(NonZeroScalar::from_repr((*bytes).into()))
        .map(SecretScalar)
        .ok_or(Error::BadPublicKey)
}

/// The SEC1 compressed public point of a scalar.
pub fn public_point(secret: &SecretScalar) -> [u8; POINT_LEN] {
    let pk = PublicKey::from_secret_scalar(&secret.0);
    let mut out = [0u8; POINT_LEN];
    out.copy_from_slice(pk.to_sec1_point(true).as_bytes());
    out
}

/// Accepts only the canonical SEC1 compressed encoding (tag 0x02 or 0x03), so every key has
/// exactly one encoding and one fingerprint (k256 also parses the 0x05 "compact" form).
pub fn check_compressed(point: &[u8; POINT_LEN]) -> Result<(), Error> {
    match point[0] {
        0x02 | 0x03 => Ok(()),
        _ => Err(Error::BadPublicKey),
    }
}

/// ECDH: the x-coordinate of `secret · peer`. Fails if `peer` is not a canonically encoded
/// valid point.
pub fn ecdh(secret: &SecretScalar, peer: &[u8; POINT_LEN]) -> Result<Secret, Error> {
    check_compressed(peer)?;
    let peer = PublicKey::from_sec1_bytes(peer).map_err(|_| Error::BadPublicKey)?;
    let shared = k256::elliptic_curve::ecdh::diffie_hellman(secret.0, peer.as_affine());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(shared.raw_secret_bytes());
    Ok(out)
}

/// HKDF-Extract(salt = [`LABEL_EXTRACT`], ikm = shared secret).
pub fn extract(shared: &[u8; 32]) -> Secret {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(LABEL_EXTRACT), shared);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&prk);
    out
}

/// HKDF-Expand(prk, info = label || context, 32 bytes).
pub fn expand(prk: &[u8; 32], label: &[u8], context: &[u8]) -> Secret {
    let mut out = Zeroizing::new([0u8; 32]);
    // A 32-byte PRK is always long enough and 32 bytes of output are always allowed.
    if let Ok(hk) = Hkdf::<Sha256>::from_prk(prk) {
        let _ = hk.expand_multi_info(&[label, context], out.as_mut());
    }
    out
}

/// A keyed HMAC-SHA256 state (HMAC accepts keys of any length, so this cannot fail).
pub fn hmac_key(key: &[u8]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    if key.len() <= 64 {
        block[..key.len()].copy_from_slice(key);
    } else {
        block[..32].copy_from_slice(&Sha256::digest(key));
    }
    // A key of exactly the block size is used as-is by HMAC, equivalent to the shorter key
    // zero-padded (RFC 2104 §2), so this is HMAC under `key`.
    <Hmac<Sha256> as KeyInit>::new(&(*block).into())
}

/// HMAC-SHA256(key, data).
pub fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut mac = hmac_key(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Constant-time check that `tag == HMAC(key, data)`.
pub fn verify_hmac(key: &[u8; 32], data: &[u8], tag: &[u8]) -> bool {
    let mut mac = hmac_key(key);
    mac.update(data);
    Active::verify_mac(mac, tag)
}

/// The Finished value for a handshake traffic secret over a transcript hash.
pub fn finished(hs_secret: &[u8; 32], transcript_hash: &[u8; 32]) -> [u8; 32] {
    hmac(&expand(hs_secret, LABEL_FINISHED, &[]), transcript_hash)
}

/// Checks a peer's Finished value in constant time.
pub fn verify_finished(hs_secret: &[u8; 32], transcript_hash: &[u8; 32], tag: &[u8; 32]) -> bool {
    verify_hmac(
        &expand(hs_secret, LABEL_FINISHED, &[]),
        transcript_hash,
        tag,
    )
}

/// The message the server signs: context, a zero byte, the transcript hash.
pub fn signed_message(transcript_hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 33);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.push(0);
    m.extend_from_slice(transcript_hash);
    m
}

/// Running SHA-256 over the handshake messages.
#[derive(Clone, Default)]
pub struct Transcript(Sha256);

impl Transcript {
    /// Absorbs bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything absorbed so far (the transcript continues).
    pub fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}
