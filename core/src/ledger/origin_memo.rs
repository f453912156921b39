//! A per-thread memo of the origin keys checked last. Checking that 33 bytes are a valid
//! curve point costs a field square root (several microseconds, more than the rest of
//! decoding an entry), and the entries, heads and replication messages a thread decodes
//! nearly always name the same few origins: a repeat is a byte comparison instead. A valid
//! key has one encoding, so the memo is a pure function's cache and changes no result.

use std::cell::RefCell;

use super::LedgerError;
use crate::ServerKey;

/// How many origins each thread remembers (the latest first to stay).
const REMEMBERED: usize = 8;

thread_local! {
    static RECENT: RefCell<Vec<ServerKey>> = const { RefCell::new(Vec::new()) };
}

/// `bytes` as a valid server key ([`LedgerError::BadOrigin`] if they are not one).
pub(crate) fn checked_origin(bytes: &[u8]) -> Result<ServerKey, LedgerError> {
    let known = RECENT.with(|recent| {
        recent
            .borrow()
            .iter()
            .find(|k| k.as_bytes().as_slice() == bytes)
            .copied()
    });
    if let Some(key) = known {
        return Ok(key);
    }
    let key = ServerKey::from_bytes(bytes).map_err(|_| LedgerError::BadOrigin)?;
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent.len() == REMEMBERED {
            recent.remove(0);
        }
        recent.push(key);
    });
    Ok(key)
}
