//! The keys of [`Table::Replicas`](vserv_store::kv::Table::Replicas) that are not a feed's
//! own (those are [`FeedKeys::replica`](crate::ledger::FeedKeys::replica)'s), and the store
//! epoch's key in [`Table::Meta`](vserv_store::kv::Table::Meta).
//!
//! | key | value |
//! |---|---|
//! | `0x00` + feed number (`u32` BE) + a feed key of `ledger_layout.rs` | as in the own feed (its `e:` keys in [`Table::ReplicaEntries`](vserv_store::kv::Table::ReplicaEntries)) |
//! | `o:` + origin (33 bytes) | the origin's feed number (`u32` BE, from 1) |
//! | `feeds` | how many feed numbers were given (`u32` BE) |
//! | `fp:` + fingerprint (32 bytes) | the origin (33 bytes) with that fingerprint |
//! | `fork:` + origin (33 bytes) | the fork proof that quarantined the origin |
//!
//! The feeds held are the `o:` keys. Stores written before feed numbers kept each replica's
//! keys after the origin's 33 bytes (a compressed point, so beginning `0x02` or `0x03`);
//! `migrate.rs` moves such keys under a feed number when the node opens.

use vserv_core::{Fingerprint, ServerKey};

/// Prefix of the fingerprint index.
pub const FINGERPRINT_PREFIX: &[u8] = b"fp:";

/// Prefix of the origin -> feed number index.
pub const ORIGIN_INDEX_PREFIX: &[u8] = b"o:";

/// Key of the number of feed numbers given so far.
pub const FEED_COUNT_KEY: &[u8] = b"feeds";

/// Prefix of the fork proofs of quarantined origins.
pub const FORK_PREFIX: &[u8] = b"fork:";

/// The key of the store epoch in [`Table::Meta`](vserv_store::kv::Table::Meta): 16 random
/// bytes made once per data directory.
pub const EPOCH_KEY: &[u8] = b"epoch";

/// The origin index key of `origin`.
pub fn origin_index_key(origin: &ServerKey) -> Vec<u8> {
    [ORIGIN_INDEX_PREFIX, origin.as_bytes().as_slice()].concat()
}

/// The first bytes of every origin: a compressed point's tag (and so of every replica key
/// of the layout before feed numbers).
pub(crate) const ORIGIN_LEADS: [u8; 2] = [0x02, 0x03];

/// The fingerprint index key of `fingerprint`.
pub fn fingerprint_key(fingerprint: &Fingerprint) -> Vec<u8> {
    [FINGERPRINT_PREFIX, fingerprint.0.as_slice()].concat()
}

/// The key of `origin`'s fork proof.
pub fn fork_key(origin: &ServerKey) -> Vec<u8> {
    [FORK_PREFIX, origin.as_bytes().as_slice()].concat()
}
