//! The keys of [`Table::Replicas`](vserv_store::kv::Table::Replicas) that are not a feed's
//! own (those are [`FeedKeys::replica`](crate::ledger::FeedKeys::replica)'s), and the store
//! epoch's key in [`Table::Meta`](vserv_store::kv::Table::Meta).
//!
//! | key | value |
//! |---|---|
//! | origin (33 bytes) + a feed key of `ledger_layout.rs` | as in the own feed |
//! | `fp:` + fingerprint (32 bytes) | the origin (33 bytes) with that fingerprint |
//! | `fork:` + origin (33 bytes) | the fork proof that quarantined the origin |
//!
//! An origin is a compressed point, so its first byte is `0x02` or `0x03`: no feed key can
//! begin like `fp:` or `fork:`, and the feeds held are found by walking the keys that begin
//! with `0x02` or `0x03`, one origin at a time.

use vserv_core::wire::POINT_LEN;
use vserv_core::{Fingerprint, ServerKey};

/// Prefix of the fingerprint index.
pub const FINGERPRINT_PREFIX: &[u8] = b"fp:";

/// Prefix of the fork proofs of quarantined origins.
pub const FORK_PREFIX: &[u8] = b"fork:";

/// The key of the store epoch in [`Table::Meta`](vserv_store::kv::Table::Meta): 16 random
/// bytes made once per data directory.
pub const EPOCH_KEY: &[u8] = b"epoch";

/// The first bytes of every origin: a compressed point's tag.
pub(crate) const ORIGIN_LEADS: [u8; 2] = [0x02, 0x03];

/// The fingerprint index key of `fingerprint`.
pub fn fingerprint_key(fingerprint: &Fingerprint) -> Vec<u8> {
    [FINGERPRINT_PREFIX, fingerprint.0.as_slice()].concat()
}

/// The key of `origin`'s fork proof.
pub fn fork_key(origin: &ServerKey) -> Vec<u8> {
    [FORK_PREFIX, origin.as_bytes().as_slice()].concat()
}

/// The smallest 33 bytes above every key that starts with `origin`, or `None` past the last.
pub(crate) fn after_origin(origin: &[u8; POINT_LEN]) -> Option<Vec<u8>> {
    let mut next = origin.to_vec();
    for byte in next.iter_mut().rev() {
        if *byte == u8::MAX {
            *byte = 0;
        } else {
            *byte += 1;
            return Some(next);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_origin_carries_and_ends() {
        let mut a = [0u8; POINT_LEN];
        a[0] = 2;
        a[32] = 0xff;
        a[31] = 7;
        let next = after_origin(&a).unwrap();
        assert_eq!((next[31], next[32], next[0]), (8, 0, 2));
        assert!(next.as_slice() > a.as_slice());
        assert_eq!(after_origin(&[0xff; POINT_LEN]), None);
    }
}
