//! The runtimes' [`Runner`]: a bounded pool of worker threads that runs the service's
//! blocking work (commits, password hashes, file I/O, deliveries and their hooks) off the
//! threads that serve connections (the blocking runtime's connection threads, smol's
//! executor). Threads start on demand up to the bound and end after a few idle seconds, so
//! a burst's threads are gone soon after it; work beyond the bound queues in order.
#![forbid(unsafe_code)]

pub mod thread_cache;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use vserv_service::work::{Runner, Work};

/// How long an idle worker waits for work before it ends.
const WORKER_KEEP: Duration = Duration::from_secs(5);

/// The most worker threads by default. Some work waits on something other than a core: a
/// hook (up to its timeout), a login queued for a password-check slot (up to 64 queue, see
/// `vserv_service::accounts::checks`). The bound leaves room for all of those and for the
/// commits and file work that must not queue behind them; threads start only when needed
/// and end after a few idle seconds, so an idle server holds none.
pub const DEFAULT_MAX_WORKERS: usize = 256;

/// A bounded worker pool (see the module docs). Clones share the pool.
#[derive(Clone)]
pub struct WorkPool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    /// Notified when the last running work ends with nothing queued.
    drained: Condvar,
    max: usize,
    /// How long an idle worker waits for work before it ends ([`WORKER_KEEP`]).
    keep: Duration,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Work>,
    threads: usize,
    idle: usize,
    /// Works taken from the queue and not yet ended.
    running: usize,
    /// Callers of [`WorkPool::wait_idle`] waiting now (a condvar's notify is a system call
    /// even with nobody waiting, too dear for every work).
    drain_waiters: usize,
}

impl State {
    fn drained(&self) -> bool {
        self.queue.is_empty() && self.running == 0
    }

    /// Whether a caller of [`WorkPool::wait_idle`] is to be woken now.
    fn wake_drain_waiters(&self) -> bool {
        self.drain_waiters > 0 && self.drained()
    }
}

impl std::fmt::Debug for WorkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkPool")
            .field("max", &self.shared.max)
            .finish_non_exhaustive()
    }
}

impl WorkPool {
    /// A pool of at most `max` threads (at least 1).
    pub fn new(max: usize) -> WorkPool {
        WorkPool::with_keep(max, WORKER_KEEP)
    }

    /// A pool of at most `max` threads whose idle workers end after `keep`.
    fn with_keep(max: usize, keep: Duration) -> WorkPool {
        WorkPool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                ready: Condvar::new(),
                drained: Condvar::new(),
                max: max.max(1),
                keep,
            }),
        }
    }

    /// Waits until every work handed to the pool so far, and every work those hand to it
    /// while they run, has ended. A server calls it as it stops, after its connections
    /// ended, so that nothing it started (an index bulk, a commit, a delivery) still runs,
    /// or holds its store open, once it has stopped. Never call it from the pool's own work:
    /// that work would wait for itself.
    pub fn wait_idle(&self) {
        let mut state = self.shared.lock();
        state.drain_waiters += 1;
        while !state.drained() {
            state = self
                .shared
                .drained
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.drain_waiters -= 1;
    }
}

impl Default for WorkPool {
    fn default() -> Self {
        WorkPool::new(DEFAULT_MAX_WORKERS)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn work(self: Arc<Self>) {
        let mut state = self.lock();
        loop {
            if let Some(work) = state.queue.pop_front() {
                state.running += 1;
                drop(state);
                let unwinding = Unwinding(&self);
                work.run();
                drop(unwinding);
                state = self.lock();
                state.running -= 1;
                if state.wake_drain_waiters() {
                    self.drained.notify_all();
                }
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .ready
                .wait_timeout(state, self.keep)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

/// Keeps a worker's counts right if its work panics: the work no longer runs, and the
/// thread ends.
struct Unwinding<'a>(&'a Shared);

impl Drop for Unwinding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.lock();
            state.running -= 1;
            state.threads -= 1;
            if state.wake_drain_waiters() {
                self.0.drained.notify_all();
            }
        }
    }
}

/// The pool every client in this process shares for its transfers' file work (read-ahead,
/// write-behind and re-hash runs), on either runtime. Made on first use; like every
/// [`WorkPool`], its threads start on demand and end after a few idle seconds.
pub fn client_pool() -> WorkPool {
    static POOL: OnceLock<WorkPool> = OnceLock::new();
    POOL.get_or_init(WorkPool::default).clone()
}

impl Runner for WorkPool {
    fn run(&self, work: Work) {
        let mut state = self.shared.lock();
        state.queue.push_back(work);
        if state.idle > 0 || state.threads >= self.shared.max {
            drop(state);
            self.shared.ready.notify_one();
            return;
        }
        state.threads += 1;
        drop(state);
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name("vserv-work".into())
            .spawn(move || shared.work());
        if let Err(e) = started {
            tracing::error!(error = %e, "could not start a worker thread");
            let mut state = self.shared.lock();
            state.threads -= 1;
            if state.threads == 0 {
                // Nobody would ever run it: run it here rather than lose it.
                let queued: Vec<Work> = state.queue.drain(..).collect();
                state.running += queued.len();
                drop(state);
                for work in queued {
                    work.run();
                    let mut state = self.shared.lock();
                    state.running -= 1;
                    if state.wake_drain_waiters() {
                        self.shared.drained.notify_all();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn idle_workers_end_and_the_pool_starts_new_ones_for_later_work() {
        let pool = WorkPool::with_keep(8, Duration::from_millis(50));
        let threads = || pool.shared.lock().threads;
        for round in 0..2 {
            let (tx, rx) = mpsc::channel();
            for i in 0..8 {
                let tx = tx.clone();
                pool.run(Work::new("test", move || {
                    std::thread::sleep(Duration::from_millis(20));
                    let _ = tx.send(i);
                }));
            }
            let mut done: Vec<i32> = (0..8).map(|_| rx.recv().unwrap()).collect();
            done.sort_unstable();
            assert_eq!(done, (0..8).collect::<Vec<_>>(), "round {round}");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while threads() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(threads(), 0, "round {round}: every idle worker ended");
        }
    }

    #[test]
    fn wait_idle_returns_once_all_work_and_the_work_it_started_has_ended() {
        let pool = WorkPool::new(2);
        pool.wait_idle();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..4 {
            let (inner_pool, done) = (pool.clone(), done.clone());
            pool.run(Work::new("test", move || {
                std::thread::sleep(Duration::from_millis(30));
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Work handed on while running is waited for too.
                inner_pool.run(Work::new("test", move || {
                    std::thread::sleep(Duration::from_millis(30));
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }));
            }));
        }
        pool.wait_idle();
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 8);
        let state = pool.shared.lock();
        assert!(state.drained());
    }

    #[test]
    fn runs_everything_off_the_calling_thread_within_the_bound() {
        let pool = WorkPool::new(2);
        let (tx, rx) = mpsc::channel();
        let caller = std::thread::current().id();
        for i in 0..10 {
            let tx = tx.clone();
            pool.run(Work::new("test", move || {
                let _ = tx.send((i, std::thread::current().id()));
            }));
        }
        let mut seen: Vec<_> = (0..10).map(|_| rx.recv().unwrap()).collect();
        assert!(seen.iter().all(|(_, t)| *t != caller));
        let threads: std::collections::BTreeSet<_> =
            seen.iter().map(|(_, t)| format!("{t:?}")).collect();
        assert!(threads.len() <= 2, "{threads:?}");
        seen.sort_by_key(|(i, _)| *i);
        assert_eq!(
            seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
    }
}
