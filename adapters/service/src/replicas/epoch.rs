//! The store epoch: 16 random bytes made once per data directory and kept in
//! [`Table::Meta`] under [`EPOCH_KEY`]. A replication peer sends it with its clock, so a
//! peer whose data directory was wiped (a new epoch) is recognised and what was known of it
//! is not trusted. The randomness comes from the caller: the store has none of its own.

use rand_core::CryptoRng;
use vserv_store::kv::{Op, Store, StoreError, Table};

use super::layout::EPOCH_KEY;

/// The store's epoch, or `None` if it has none yet.
///
/// # Errors
///
/// A store failure, or a stored epoch that is not 16 bytes ([`StoreError::Backend`]).
pub fn epoch(store: &dyn Store) -> Result<Option<[u8; 16]>, StoreError> {
    store
        .get(Table::Meta, EPOCH_KEY)?
        .map(|bytes| {
            <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| {
                StoreError::Backend(format!(
                    "the store epoch (meta/epoch) is garbled ({} bytes, expected 16)",
                    bytes.len()
                ))
            })
        })
        .transpose()
}

/// The store's epoch, made from `rng` and stored durably first if the store has none: made
/// once, then the same for as long as the store lives. Call it once at start-up, before
/// anything reads the epoch (two concurrent first calls could each make one).
///
/// # Errors
///
/// As [`epoch`], or the commit failed (no epoch was stored).
pub fn ensure_epoch<R: CryptoRng + ?Sized>(
    store: &dyn Store,
    rng: &mut R,
) -> Result<[u8; 16], StoreError> {
    if let Some(epoch) = epoch(store)? {
        return Ok(epoch);
    }
    let mut epoch = [0u8; 16];
    rng.fill_bytes(&mut epoch);
    store.commit(vec![Op::Put {
        table: Table::Meta,
        key: EPOCH_KEY.to_vec(),
        value: epoch.to_vec(),
    }])?;
    Ok(epoch)
}
