//! Long-term server identities (k256 ECDSA keys) and their fingerprints.

use k256::ecdsa::signature::Signer;
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::provider::{Active, Provider as _};
use crate::Error;
use crate::wire::{POINT_LEN, SIGNATURE_LEN};

/// A server's long-term signing key. The secret scalar is zeroized on drop.
pub struct ServerIdentity {
    signing: SigningKey,
    public: ServerKey,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// Generates a fresh identity from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_signing(SigningKey::from(
            *crate::secure::keys::random_scalar(rng).as_scalar(),
        ))
    }

    /// Restores an identity from its 32-byte secret scalar.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let signing = SigningKey::from_slice(bytes).map_err(|_| Error::BadPublicKey)?;
        Ok(Self::from_signing(signing))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let point = signing.verifying_key().to_sec1_point(true);
        let mut public = [0u8; POINT_LEN];
        public.copy_from_slice(point.as_bytes());
        ServerIdentity {
            signing,
            public: ServerKey(public),
        }
    }

    /// The 32-byte secret scalar, for storing the identity.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.signing.to_bytes());
        out
    }

    /// The public key clients pin.
    pub fn public_key(&self) -> ServerKey {
        self.public
    }

    /// Deterministic (RFC 6979) ECDSA-SHA256 signature, fixed-width r || s, low-S.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let sig: Signature = self.signing.sign(msg);
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(&sig.to_bytes());
        out
    }
}

/// A server's public identity key: a SEC1 compressed secp256k1 point known to be valid.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerKey([u8; POINT_LEN]);

impl ServerKey {
    /// Validates a compressed point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; POINT_LEN] = bytes.try_into().map_err(|_| Error::BadPublicKey)?;
        crate::secure::keys::check_compressed(&arr)?;
        VerifyingKey::from_sec1_bytes(&arr).map_err(|_| Error::BadPublicKey)?;
        Ok(ServerKey(arr))
    }

    /// The 33 encoded bytes.
    pub fn as_bytes(&self) -> &[u8; POINT_LEN] {
        &self.0
    }

    /// SHA-256 of the encoded key: the value users compare and pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(Sha256::digest(self.0).into())
    }

    /// Verifies an ECDSA-SHA256 signature made by this key.
    pub fn verify(&self, msg: &[u8], signature: &[u8; SIGNATURE_LEN]) -> Result<(), Error> {
        Active::verify_signature(&self.0, msg, signature)
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", self.fingerprint())
    }
}

/// SHA-256 of a [`ServerKey`], shown as `SHA256:` followed by 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

/// Text prefix of a displayed fingerprint.
pub const FINGERPRINT_PREFIX: &str = "SHA256:";

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(FINGERPRINT_PREFIX)?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A fingerprint string that is not `SHA256:` plus 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fingerprint must be 'SHA256:' followed by 64 hex digits")]
pub struct BadFingerprint;

impl std::str::FromStr for Fingerprint {
    type Err = BadFingerprint;
    fn from_str(s: &str) -> Result<Self, BadFingerprint> {
        let hex = s.strip_prefix(FINGERPRINT_PREFIX).unwrap_or(s).as_bytes();
        if hex.len() != 64 {
            return Err(BadFingerprint);
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(BadFingerprint);
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(Fingerprint(out))
    }
}
