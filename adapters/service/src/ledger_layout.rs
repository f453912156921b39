//! The ledger's layout in the store, shared by the writer (`ledger_commit.rs`) and the
//! readers (`ledger.rs`, `ledger_query.rs`): the keys, the reads of the head and of the
//! indexes, and the error of every ledger operation.
//!
//! # Layout in [`Table::Ledger`]
//!
//! | key | value |
//! |---|---|
//! | `e:` + seq (`u64` big-endian) | the entry's canonical encoding (`spec/ledger.md` §1) |
//! | `id:` + record id | seq (`u64` big-endian) of the entry with that record id |
//! | `h:` + entry hash (32 bytes) | seq (`u64` big-endian) of the entry with that hash |
//! | `k:` + kind + `0x00` + seq (`u64` big-endian) | empty: the kind index |
//! | `kc:` + kind | number of entries of that kind (`u64` big-endian) |
//! | `head` | the [`SignedHead`] encoding of the last entry |
//!
//! (Kinds never contain `0x00`, so `k:` + kind + `0x00` is a prefix of exactly that kind's
//! index keys.) Every append writes all these keys in one atomic, durable commit, so a crash leaves either
//! the whole entry (with its indexes and the new signed head) or nothing. The stored head is
//! authoritative for the feed's size.
//!

use vserv_core::ledger::{LedgerError, SignedHead};
use vserv_store::kv::{Store, StoreError, Table};

/// Key of the signed head.
pub const HEAD_KEY: &[u8] = b"head";
/// Prefix of entry keys (followed by the seq, `u64` big-endian).
pub const ENTRY_PREFIX: &[u8] = b"e:";
/// Prefix of the record id index.
pub const ID_PREFIX: &[u8] = b"id:";
/// Prefix of the entry hash index.
pub const HASH_PREFIX: &[u8] = b"h:";

/// Prefix of the kind index.
pub const KIND_PREFIX: &[u8] = b"k:";
/// Prefix of the per-kind entry counters.
pub const KIND_COUNT_PREFIX: &[u8] = b"kc:";

/// The prefix of every kind index key of `kind` (followed by the seq, `u64` big-endian).
pub fn kind_prefix(kind: &str) -> Vec<u8> {
    [KIND_PREFIX, kind.as_bytes(), &[0]].concat()
}

/// The kind index key of entry `seq` of `kind`.
pub fn kind_key(kind: &str, seq: u64) -> Vec<u8> {
    [KIND_PREFIX, kind.as_bytes(), &[0], &seq.to_be_bytes()].concat()
}

/// The store key of the entry counter of `kind`.
pub fn kind_count_key(kind: &str) -> Vec<u8> {
    [KIND_COUNT_PREFIX, kind.as_bytes()].concat()
}

/// The store key of entry `seq`.
pub fn entry_key(seq: u64) -> Vec<u8> {
    [ENTRY_PREFIX, &seq.to_be_bytes()].concat()
}

/// The store key of the record id index entry for `record_id`.
pub fn id_key(record_id: &[u8]) -> Vec<u8> {
    [ID_PREFIX, record_id].concat()
}

/// The store key of the hash index entry for `hash`.
pub fn hash_key(hash: &[u8; 32]) -> Vec<u8> {
    [HASH_PREFIX, hash.as_slice()].concat()
}

/// Why a ledger operation failed. Nothing was changed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The entry breaks a field rule (kind, record id, author, body size).
    #[error(transparent)]
    Invalid(LedgerError),
    /// A record with this id is already in the feed, at `seq`; it was not stored again.
    #[error("duplicate record id: already stored at seq {seq}")]
    Duplicate {
        /// Where the record with that id is.
        seq: u64,
    },
    /// The seq counter would overflow.
    #[error("the ledger is full (seq overflow)")]
    Full,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored ledger data could not be decoded.
    #[error("stored ledger data is corrupt: {0}")]
    Corrupt(String),
}

/// The signed head stored in `store`, or `None` for an empty feed.
pub(crate) fn stored_head(store: &dyn Store) -> Result<Option<SignedHead>, FeedError> {
    match store.get(Table::Ledger, HEAD_KEY)? {
        Some(bytes) => SignedHead::decode(&bytes)
            .map(Some)
            .map_err(|e| FeedError::Corrupt(format!("head: {e}"))),
        None => Ok(None),
    }
}

/// The seq of the entry with `record_id` in `store`, if stored.
pub(crate) fn seq_of_id(store: &dyn Store, record_id: &[u8]) -> Result<Option<u64>, FeedError> {
    store
        .get(Table::Ledger, &id_key(record_id))?
        .map(|v| seq_value(&v, "record id"))
        .transpose()
}

pub(crate) fn seq_value(bytes: &[u8], what: &str) -> Result<u64, FeedError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| FeedError::Corrupt(format!("{what} index value is not a seq")))
}
