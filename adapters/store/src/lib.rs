//! On-disk state of vserv: the server identity key file and the client's known_servers file.
//!
//! - [`identity`]: the server's `identity.key` (created once, mode 0600, never regenerated).
//! - [`known_servers`]: the client's pinned server keys, like ssh's `known_hosts`.
//! - [`trust`]: the client's trust-on-first-use / pinning decision over [`known_servers`].
//! - [`master_key`]: the server's `master.key`, which encrypts the secrets kept at rest.
//! - [`keyfile`]: the strict secret key file format, reusable for user keys.
//! - [`kv`]: the key-value [`Store`] interface the service builds on, implemented by
//!   [`db::FjallStore`] (fjall on disk) and [`memory::MemoryStore`] (in memory, with a crash
//!   model, for the deterministic simulator).
//! - [`flat_entries`]: the fjall store's flat copy of the ledger's entries, read by seq with
//!   one positional read.
//!
//! Every file write is atomic (temporary file, fsync, rename, directory fsync); every
//! [`Store::commit`] is atomic and durable. The flat copy of the entries is the exception:
//! derived from the store, written without fsync, checked and repaired when opened.

mod atomic;
pub mod db;
pub mod flat_entries;
pub mod identity;
pub mod keyfile;
pub mod known_servers;
pub mod master_key;
// `Store::scan` returns `Vec<(Vec<u8>, Vec<u8>)>` on purpose: plain owned pairs.
#[allow(clippy::type_complexity)]
pub mod kv;
pub mod mark;
pub mod memory;
mod rng;
pub mod trust;

pub use db::{DEFAULT_CACHE_BYTES, FjallStore, OLDEST_SCHEMA_VERSION, OpenOptions, SCHEMA_VERSION};
pub use identity::{IdentityError, LoadedIdentity, load, load_or_create};
pub use keyfile::{KeyFileError, read_secret_key_file, write_secret_key_file};
pub use known_servers::{KnownServers, KnownServersError, LineError, ParseError, default_path};
pub use kv::{Op, Store, StoreError, Table};
pub use memory::MemoryStore;
pub use trust::{TrustDecision, TrustError, decide};

/// The longest key any [`Store`] in this crate accepts, in bytes (fjall's limit). Longer keys
/// make [`Store::commit`] fail with [`StoreError::Backend`] before anything is written.
pub const MAX_KEY_LEN: usize = 65_535;

/// The longest value any [`Store`] in this crate accepts, in bytes (fjall's limit).
pub const MAX_VALUE_LEN: u64 = u32::MAX as u64;

/// Checks every op of a batch against the limits both implementations share (non-empty keys
/// of at most [`MAX_KEY_LEN`] bytes, values of at most [`MAX_VALUE_LEN`] bytes), so that an
/// invalid batch is rejected as a whole before anything is applied, identically everywhere.
pub(crate) fn validate_ops(ops: &[Op]) -> Result<(), StoreError> {
    for (i, op) in ops.iter().enumerate() {
        let (table, key, value_len) = match op {
            Op::Put { table, key, value } => (*table, key, Some(value.len())),
            Op::Delete { table, key } => (*table, key, None),
        };
        if key.is_empty() {
            return Err(StoreError::Backend(format!(
                "invalid batch: op {i} on table {} has an empty key",
                table.name()
            )));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(StoreError::Backend(format!(
                "invalid batch: op {i} on table {} has a {}-byte key (at most {MAX_KEY_LEN})",
                table.name(),
                key.len()
            )));
        }
        if table == Table::Ledger
            && key.starts_with(flat_entries::ENTRY_KEY_PREFIX)
            && flat_entries::entry_seq(table, key).is_none()
        {
            return Err(StoreError::Backend(format!(
                "invalid batch: op {i} writes a key of table {} that starts with `e:` but is \
                 not an entry key (`e:` and 8 bytes)",
                table.name()
            )));
        }
        if let Some(len) = value_len
            && u64::try_from(len).map_or(true, |l| l > MAX_VALUE_LEN)
        {
            return Err(StoreError::Backend(format!(
                "invalid batch: op {i} on table {} has a {len}-byte value (at most {MAX_VALUE_LEN})",
                table.name()
            )));
        }
    }
    Ok(())
}

/// Whether `key` could ever be stored (see [`validate_ops`]); reads of other keys are answered
/// "absent" without asking the backend.
pub(crate) fn storable_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN
}
