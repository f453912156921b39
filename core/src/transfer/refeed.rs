//! Re-hashing bytes already held (a partial file) when a transfer resumes.

use sha2::{Digest, Sha256};

use super::TransferError;

/// Hashes bytes fed back in order, up to a limit.
#[derive(Debug, Clone)]
pub(crate) struct Refeed {
    pub(crate) hasher: Sha256,
    pub(crate) fed: u64,
    pub(crate) limit: u64,
}

impl Refeed {
    pub(crate) fn new(limit: u64) -> Self {
        Refeed {
            hasher: Sha256::new(),
            fed: 0,
            limit,
        }
    }

    /// Feeds the next bytes; refuses (changing nothing) bytes past the limit.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<(), TransferError> {
        let end = end_of(self.fed, data.len());
        if end > self.limit {
            return Err(TransferError::RefeedOverrun {
                got: end,
                limit: self.limit,
            });
        }
        self.hasher.update(data);
        self.fed = end;
        Ok(())
    }
}

/// `offset + len`, saturating (a saturated end is always past any size).
pub(crate) fn end_of(offset: u64, len: usize) -> u64 {
    offset.saturating_add(u64::try_from(len).unwrap_or(u64::MAX))
}

/// SHA-256 of what a hasher has seen so far, without consuming it.
pub(crate) fn digest_so_far(h: &Sha256) -> [u8; 32] {
    h.clone().finalize().into()
}
