//! Replay protection for sealed requests (spec/datagrams.md §5): a request's time must be
//! within [`REPLAY_WINDOW_SECS`] of the server's clock, and its `(time, nonce)` must not be
//! among those remembered. The memory is bounded: when it is full the oldest entry is
//! forgotten, and from then on nothing at or before the time of any forgotten entry is
//! accepted (the *floor*), so a replay can never slip through an eviction. Entries that fell
//! out of the window are forgotten the same way. Pure: the caller passes the time.

use std::collections::BTreeSet;

use super::{DatagramError, NONCE_LEN};

/// How far a request's time may be from the server's clock, either way, in seconds.
pub const REPLAY_WINDOW_SECS: u64 = 30;

/// The default number of nonces remembered.
pub const DEFAULT_REPLAY_CAPACITY: usize = 65_536;

/// The timestamp window and the bounded cache of recent nonces.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    seen: BTreeSet<(u64, [u8; NONCE_LEN])>,
    capacity: usize,
    window: u64,
    /// Every forgotten entry's time is at most this; such times are refused.
    floor: Option<u64>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_REPLAY_CAPACITY, REPLAY_WINDOW_SECS)
    }
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` (at least 1) nonces, accepting times within
    /// `window` seconds of the clock.
    pub fn new(capacity: usize, window: u64) -> ReplayGuard {
        ReplayGuard {
            seen: BTreeSet::new(),
            capacity: capacity.max(1),
            window,
            floor: None,
        }
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Checks without remembering (cheap, before any crypto): `Stale` outside the window,
    /// `Replay` at or before the floor or when the nonce is remembered.
    pub fn check(&self, time: u64, nonce: &[u8; NONCE_LEN], now: u64) -> Result<(), DatagramError> {
        if time.abs_diff(now) > self.window {
            return Err(DatagramError::Stale);
        }
        if self.floor.is_some_and(|floor| time <= floor) || self.seen.contains(&(time, *nonce)) {
            return Err(DatagramError::Replay);
        }
        Ok(())
    }

    /// Checks as [`Self::check`] and, if accepted, remembers the nonce (call only once the
    /// request is authenticated, so forgeries cannot fill the cache). Forgets the entries
    /// older than the window and, past the capacity, the oldest; both raise the floor.
    pub fn accept(
        &mut self,
        time: u64,
        nonce: &[u8; NONCE_LEN],
        now: u64,
    ) -> Result<(), DatagramError> {
        self.check(time, nonce, now)?;
        self.seen.insert((time, *nonce));
        let expired_before = now.saturating_sub(self.window);
        while let Some(&(oldest, _)) = self.seen.first() {
            if oldest >= expired_before && self.seen.len() <= self.capacity {
                break;
            }
            self.seen.pop_first();
            self.floor = Some(self.floor.map_or(oldest, |f| f.max(oldest)));
        }
        Ok(())
    }
}
