//! The datagram service's state, shared by every datagram of one server: the identity's
//! datagram key, the replay guard and the rate limiter (each behind its own lock, held only
//! for the check, never during crypto), and the counters.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

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
        }
    }
}
