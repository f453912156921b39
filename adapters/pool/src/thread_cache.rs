//! Giving back the memory an allocator caches for a thread that has gone quiet.
//!
//! An allocator with per-thread caches (jemalloc, the `vserv` binary's) keeps blocks a
//! thread freed for that thread's next allocations. A long-lived runtime thread that goes
//! quiet after a burst (the blocking runtime's watcher, once a burst of sessions has parked
//! and left) keeps them for as long as it stays quiet, and each one holds on to the page it
//! is on, so the pages the burst emptied around them never go back to the system. The
//! binary, which chose the allocator, says how its caches are emptied
//! ([`set_release`]); a runtime's long-lived thread calls [`release`] once it has had
//! nothing to do for [`QUIET`] after some work (a blocking loop keeps a [`QuietRelease`];
//! smol's executor threads run a future of their own).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a thread has had nothing to do before it gives its cache back: long enough
/// that a busy thread never does it, short next to the allocator's own return of freed
/// pages to the system (seconds).
pub const QUIET: Duration = Duration::from_secs(1);

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Sets what [`release`] does for this process: empty the calling thread's allocator
/// cache. Only the first call counts (`false` for a later one).
pub fn set_release(empty_thread_cache: fn()) -> bool {
    RELEASE.set(empty_thread_cache).is_ok()
}

/// Empties the calling thread's allocator cache, as set with [`set_release`]; nothing if
/// none was set (the system allocator).
pub fn release() {
    if let Some(empty_thread_cache) = RELEASE.get() {
        empty_thread_cache();
    }
}

/// When a long-lived thread last had something to do, until it gives its allocator cache
/// back: it wakes at [`QuietRelease::due`] (besides its other deadlines) and reports each
/// round to [`QuietRelease::round`].
#[derive(Debug, Default)]
pub struct QuietRelease {
    busy_at: Option<Instant>,
}

impl QuietRelease {
    /// When the thread should wake to give its cache back if nothing comes before; `None`
    /// when it has nothing to give (no work since the last release).
    pub fn due(&self) -> Option<Instant> {
        self.busy_at.map(|at| at + QUIET)
    }

    /// After a round of the thread's loop at `now`: a round that `worked` keeps the cache
    /// (and pushes the release [`QUIET`] later); a round without work once [`QuietRelease::due`]
    /// has passed empties it with [`release`].
    pub fn round(&mut self, worked: bool, now: Instant) {
        self.round_with(worked, now, release);
    }

    fn round_with(&mut self, worked: bool, now: Instant, release: impl FnOnce()) {
        if worked {
            self.busy_at = Some(now);
        } else if self.due().is_some_and(|at| at <= now) {
            release();
            self.busy_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_goes_back_once_after_a_quiet_period_that_follows_work() {
        let start = Instant::now();
        let mut quiet = QuietRelease::default();
        let mut released = 0;
        quiet.round_with(false, start, || released += 1);
        assert_eq!(
            (quiet.due(), released),
            (None, 0),
            "nothing to give before any work"
        );
        quiet.round_with(true, start, || released += 1);
        assert_eq!(quiet.due(), Some(start + QUIET));
        let later = start + QUIET / 2;
        quiet.round_with(true, later, || released += 1);
        assert_eq!(
            quiet.due(),
            Some(later + QUIET),
            "work pushes the release back"
        );
        quiet.round_with(false, later + QUIET / 2, || released += 1);
        assert_eq!(released, 0, "not quiet long enough yet");
        quiet.round_with(false, later + QUIET, || released += 1);
        assert_eq!((quiet.due(), released), (None, 1));
        quiet.round_with(false, later + QUIET * 5, || released += 1);
        assert_eq!(released, 1, "released once per quiet period");
    }
}
