//! Blocking work and its completions: how the service hands everything that waits to the
//! runtime, and how the answer comes back.
//!
//! The service decides; the runtime waits. Whatever would block the caller (a durable
//! ledger commit, hashing a password, reading or writing files, a delivery and its hooks)
//! becomes a [`Work`]: a closure the runtime runs through its [`Runner`] when and where it
//! likes (a worker pool, an async runtime's blocking pool, or the simulator at a point its
//! seed chooses). A work item reports its result by posting a completion to the mailbox of
//! the session that asked and waking that session through the runtime's [`Wake`]; the
//! runtime then drives the session again ([`crate::Service::drive`]), which turns the
//! completion into responses. The same mailbox carries what other sessions push (an account
//! deleted by an admin ends its sessions at once), so a session hears of it without reading
//! anything from its peer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// One unit of blocking work: run it once, on any thread. Dropping it unrun is allowed
/// (a runtime shutting down): whoever waits for it is then told it was lost.
pub struct Work {
    label: &'static str,
    job: Box<dyn FnOnce() + Send>,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work").field("label", &self.label).finish()
    }
}

impl Work {
    /// Work named `label` (for logs and the simulator's trace) that runs `job`.
    pub fn new(label: &'static str, job: impl FnOnce() + Send + 'static) -> Work {
        Work {
            label,
            job: Box::new(job),
        }
    }

    /// What this work is (`"ledger commit"`, `"login"`, `"files"`, `"delivery"`...).
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// Runs the work on the calling thread; it may block for as long as the work takes.
    pub fn run(self) {
        (self.job)()
    }
}

/// How a runtime runs blocking work. [`Runner::run`] must not run the work on a thread
/// that serves connections (it would stall them) unless the runtime waits anyway
/// ([`Inline`]); it may run it at once, later, or (shutting down) never.
pub trait Runner: Send + Sync {
    /// Takes `work` to run.
    fn run(&self, work: Work);
}

impl std::fmt::Debug for dyn Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Runner")
    }
}

/// Runs each work item at once on the calling thread: for tools and tests that drive the
/// service synchronously. A runtime serving many connections uses its own [`Runner`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Inline;

impl Runner for Inline {
    fn run(&self, work: Work) {
        work.run();
    }
}

/// How a runtime is told that a session has completions waiting: it then drives that
/// session's connection again soon. Called from any thread, possibly while the runtime is
/// driving that very session (it must then drive it once more afterwards).
pub trait Wake: Send + Sync {
    /// The session has something to do.
    fn wake(&self);
}

/// A [`Wake`] that does nothing: for sessions driven synchronously (whatever completes
/// is picked up by the same call).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

/// A session's inbox of completions and pushed events, shared with the work it started
/// and the sessions that may push to it.
pub(crate) struct Mailbox<T> {
    items: Mutex<VecDeque<T>>,
    waker: Arc<dyn Wake>,
}

impl<T> Mailbox<T> {
    /// An empty mailbox whose posts call `waker`.
    pub(crate) fn new(waker: Arc<dyn Wake>) -> Mailbox<T> {
        Mailbox {
            items: Mutex::new(VecDeque::new()),
            waker,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A panic while holding this lock leaves the queue consistent (push/pop only).
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `item` and wakes the session.
    pub(crate) fn post(&self, item: T) {
        self.lock().push_back(item);
        self.waker.wake();
    }

    /// Whether nothing is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Everything posted so far, oldest first.
    pub(crate) fn take_all(&self) -> VecDeque<T> {
        std::mem::take(&mut *self.lock())
    }
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("waiting", &self.lock().len())
            .finish()
    }
}

/// The wakers of the sessions a runtime is serving, so that one event (its shutdown) can
/// wake them all. Each stays in the set only while the guard [`WakeSet::watch`] returned
/// lives, so nothing of a finished session stays allocated.
pub struct WakeSet<W: Wake> {
    inner: Mutex<(u64, std::collections::HashMap<u64, Arc<W>>)>,
}

impl<W: Wake> Default for WakeSet<W> {
    fn default() -> Self {
        WakeSet {
            inner: Mutex::new((0, std::collections::HashMap::new())),
        }
    }
}

impl<W: Wake> std::fmt::Debug for WakeSet<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeSet")
            .field("watched", &self.lock().1.len())
            .finish()
    }
}

impl<W: Wake> WakeSet<W> {
    fn lock(&self) -> MutexGuard<'_, (u64, std::collections::HashMap<u64, Arc<W>>)> {
        // Inserts and removals leave the map consistent even after a panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `waker` in the set until the returned guard is dropped.
    pub fn watch(&self, waker: &Arc<W>) -> Watched<'_, W> {
        let mut inner = self.lock();
        let number = inner.0;
        inner.0 += 1;
        inner.1.insert(number, waker.clone());
        Watched { set: self, number }
    }

    /// Wakes every waker in the set.
    pub fn wake_all(&self) {
        for waker in self.lock().1.values() {
            waker.wake();
        }
    }
}

/// A waker's place in a [`WakeSet`]; dropping it takes the waker out.
pub struct Watched<'a, W: Wake> {
    set: &'a WakeSet<W>,
    number: u64,
}

impl<W: Wake> Drop for Watched<'_, W> {
    fn drop(&mut self) {
        self.set.lock().1.remove(&self.number);
    }
}

/// A [`Runner`] for unit tests that runs each work item on a thread of its own, at once:
/// work handed over overlaps its caller as it would on a runtime's pool.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ThreadPerWork;

#[cfg(test)]
impl Runner for ThreadPerWork {
    fn run(&self, work: Work) {
        std::thread::Builder::new()
            .name(work.label().into())
            .spawn(move || work.run())
            .expect("a test thread starts");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn posts_wake_and_are_taken_in_order() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let mailbox = Mailbox::new(count.clone());
        mailbox.post(1);
        mailbox.post(2);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(Vec::from(mailbox.take_all()), vec![1, 2]);
        assert!(mailbox.take_all().is_empty());
    }

    #[test]
    fn inline_runs_at_once() {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        Inline.run(Work::new("test", move || {
            r.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}

#[cfg(test)]
mod wake_set_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_the_watched_and_forgets_the_dropped() {
        let set = WakeSet::default();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let watched_a = set.watch(&a);
        let watched_b = set.watch(&b);
        set.wake_all();
        drop(watched_b);
        set.wake_all();
        assert_eq!(a.0.load(Ordering::SeqCst), 2);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        drop(watched_a);
        assert!(set.lock().1.is_empty());
        assert_eq!(Arc::strong_count(&a), 1, "the set still holds a waker");
    }
}
