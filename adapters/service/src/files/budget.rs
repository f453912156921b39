//! The server-wide budget for transfer buffers.
//!
//! An upload written behind its connection and a download read ahead each hold buffers
//! (about 2 MiB and 2.5 MiB). A tree reserves them from one budget when the transfer
//! opens and returns them when it ends; a transfer that finds the budget spent runs
//! without them (written and read in place, slower but the same bytes), so however many
//! transfers are open, their buffers never exceed the budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The budget of the reference server: room for about thirty buffered transfers.
pub const DEFAULT_TRANSFER_BUFFERS: usize = 64 << 20;

/// What an upload written behind reserves: its batches and its direct-write buffer.
pub const UPLOAD_BUFFERS: usize =
    super::write_behind::HELD_BYTES + super::direct::WRITER_HELD_BYTES;

/// What a download read ahead reserves.
pub const DOWNLOAD_BUFFERS: usize = super::direct::READER_HELD_BYTES;

/// Bytes of transfer buffers in use, against a limit. Clones share the count.
#[derive(Debug, Clone)]
pub struct BufferBudget {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl BufferBudget {
    /// A budget of `limit` bytes, none in use.
    pub fn new(limit: usize) -> Self {
        BufferBudget {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Reserves `bytes` if they fit in what is left; released when the reservation drops.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()
            .map(|_| Reservation {
                used: self.used.clone(),
                bytes,
            })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes taken from a [`BufferBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    used: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_limit_and_come_back_when_dropped() {
        let budget = BufferBudget::new(10);
        let a = budget.try_reserve(4);
        let b = budget.try_reserve(6);
        assert!(a.is_some() && b.is_some());
        assert!(budget.try_reserve(1).is_none());
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 6);
        assert!(budget.try_reserve(5).is_none());
        let c = budget.try_reserve(4);
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(budget.used(), 0);
        assert!(budget.try_reserve(usize::MAX).is_none());
        assert_eq!(budget.used(), 0);
    }
}
