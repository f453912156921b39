//! The datagram service's state, shared by every datagram of one server: the identity's
//! datagram key, the replay guard and the rate limiter (each behind its own lock, held only
//! for the check, never during crypto), the count of blocking requests in flight, and the
//! counters.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::ServerIdentity;
use vserv_core::datagram::{DatagramKey, RateLimiter, ReplayGuard};

use super::{DatagramSettings, DatagramStats};

/// What answering datagrams needs beside the service.
#[derive(Debug)]
pub struct DatagramState {
    pub(crate) key: DatagramKey,
    pub(crate) replay: Mutex<ReplayGuard>,
    pub(crate) limiter: Mutex<RateLimiter<IpAddr>>,
    pub(crate) stats: DatagramStats,
    work_in_flight: AtomicUsize,
    max_work: usize,
}

/// One blocking request's place among [`DatagramSettings::max_work`]; given back when
/// dropped, whether its work ran or the runtime dropped it unrun.
pub(crate) struct WorkSlot(Arc<DatagramState>);

impl Drop for WorkSlot {
    fn drop(&mut self) {
        self.0.work_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Locks `m`; a panic while it was held leaves these pure structures consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DatagramState {
    /// The state for `identity`'s server with `settings`.
    pub fn new(identity: &ServerIdentity, settings: DatagramSettings) -> DatagramState {
        DatagramState {
            key: DatagramKey::from_identity(identity),
            replay: Mutex::new(ReplayGuard::new(
                settings.replay_capacity,
                settings.window_secs,
            )),
            limiter: Mutex::new(RateLimiter::new(settings.rate)),
            stats: DatagramStats::default(),
            work_in_flight: AtomicUsize::new(0),
            max_work: settings.max_work,
        }
    }

    /// A place for one more blocking request, or `None` when `max_work` are in flight.
    pub(crate) fn work_slot(self: &Arc<Self>) -> Option<WorkSlot> {
        self.work_in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_work).then_some(n + 1)
            })
            .ok()
            .map(|_| WorkSlot(self.clone()))
    }
}
