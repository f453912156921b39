//! Feed heads and the server's signature over them.

use super::origin_memo::checked_origin;
use super::{Entry, LedgerError, ZERO_HASH};
use crate::wire::codec::Reader;
use crate::wire::{POINT_LEN, SIGNATURE_LEN};
use crate::{ServerIdentity, ServerKey};

/// Domain-separation context of the head signing message (followed by one zero byte).
pub const HEAD_SIGNING_CONTEXT: &[u8] = b"vserv/1 ledger head";
/// The version byte that starts a [`SignedHead`] encoding.
pub const HEAD_VERSION: u8 = 1;
/// Length of an encoded [`SignedHead`]: version, origin, seq, hash, signature.
pub const SIGNED_HEAD_LEN: usize = 1 + POINT_LEN + 8 + 32 + SIGNATURE_LEN;
const MESSAGE_LEN: usize = HEAD_SIGNING_CONTEXT.len() + 1 + POINT_LEN + 8 + 32;

/// The state of a feed: its origin, the seq of its last entry and that entry's hash.
/// An empty feed's head is `seq = 0`, `hash = ZERO_HASH` ([`Head::empty`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The feed's server key.
    pub origin: ServerKey,
    /// Seq of the last entry (0 for an empty feed).
    pub seq: u64,
    /// Hash of the last entry ([`ZERO_HASH`] for an empty feed).
    pub hash: [u8; 32],
}

impl Head {
    /// The head of an empty feed of `origin`.
    pub fn empty(origin: ServerKey) -> Self {
        Head {
            origin,
            seq: 0,
            hash: ZERO_HASH,
        }
    }

    /// The head of a feed whose last entry is `entry`.
    pub fn of(entry: &Entry) -> Self {
        Head {
            origin: entry.origin(),
            seq: entry.seq(),
            hash: entry.hash(),
        }
    }

    /// The exact bytes the server signs:
    /// `HEAD_SIGNING_CONTEXT || 0x00 || origin[33] || seq:u64be || hash[32]` (93 bytes).
    pub fn signing_message(&self) -> [u8; MESSAGE_LEN] {
        let mut m = [0u8; MESSAGE_LEN];
        let c = HEAD_SIGNING_CONTEXT.len();
        m[..c].copy_from_slice(HEAD_SIGNING_CONTEXT);
        // m[c] stays 0: the separator.
        m[c + 1..c + 1 + POINT_LEN].copy_from_slice(self.origin.as_bytes());
        m[c + 1 + POINT_LEN..c + 9 + POINT_LEN].copy_from_slice(&self.seq.to_be_bytes());
        m[c + 9 + POINT_LEN..].copy_from_slice(&self.hash);
        m
    }
}

/// A head signed by its origin's identity key. Holding a `SignedHead` does not mean it is
/// valid: call [`SignedHead::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedHead {
    /// The signed head.
    pub head: Head,
    /// ECDSA-SHA256 (RFC 6979, fixed-width r || s) over [`Head::signing_message`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedHead {
    /// Signs `head` with `identity`. The result verifies only if `head.origin` is
    /// `identity`'s public key.
    pub fn sign(identity: &ServerIdentity, head: Head) -> Self {
        SignedHead {
            head,
            signature: identity.sign(&head.signing_message()),
        }
    }

    /// Checks the signature under `head.origin`; fails with
    /// [`LedgerError::BadSignature`] naming the head's seq.
    pub fn verify(&self) -> Result<(), LedgerError> {
        self.head
            .origin
            .verify(&self.head.signing_message(), &self.signature)
            .map_err(|_| LedgerError::BadSignature { seq: self.head.seq })
    }

    /// The encoding: `version=1 || origin[33] || seq:u64be || hash[32] || signature[64]`
    /// ([`SIGNED_HEAD_LEN`] bytes).
    pub fn to_bytes(&self) -> [u8; SIGNED_HEAD_LEN] {
        let mut out = [0u8; SIGNED_HEAD_LEN];
        out[0] = HEAD_VERSION;
        out[1..1 + POINT_LEN].copy_from_slice(self.head.origin.as_bytes());
        out[1 + POINT_LEN..9 + POINT_LEN].copy_from_slice(&self.head.seq.to_be_bytes());
        out[9 + POINT_LEN..41 + POINT_LEN].copy_from_slice(&self.head.hash);
        out[41 + POINT_LEN..].copy_from_slice(&self.signature);
        out
    }

    /// Decodes exactly the bytes [`SignedHead::to_bytes`] produces (any other length or
    /// version, or an invalid origin point, is refused). Does not check the signature.
    pub fn decode(buf: &[u8]) -> Result<Self, LedgerError> {
        const WHAT: &str = "signed head";
        let bad = |_| LedgerError::Malformed(WHAT);
        let mut r = Reader::new(buf, WHAT);
        let version = r.u8().map_err(bad)?;
        if version != HEAD_VERSION {
            return Err(LedgerError::UnsupportedVersion(version));
        }
        let origin = checked_origin(r.take(POINT_LEN).map_err(bad)?)?;
        let seq = u64::from_be_bytes(r.array().map_err(bad)?);
        let hash = r.array().map_err(bad)?;
        let signature = r.array().map_err(bad)?;
        r.finish().map_err(bad)?;
        Ok(SignedHead {
            head: Head { origin, seq, hash },
            signature,
        })
    }
}
