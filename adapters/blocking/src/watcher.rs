//! The one thread that watches every parked connection, so an idle connection holds no
//! thread (and no thread stack) of its own.
//!
//! A connection thread whose connection has gone quiet [`Parker::park`]s it: the watcher
//! registers its socket and its waker with one `epoll` instance and keeps its next deadline.
//! When the socket becomes readable, the waker fires (a completion, a pushed notice) or the
//! deadline passes, the watcher takes both descriptors out again and hands the connection
//! to the `resume` callback given at [`Watcher::start`] (which puts it back on a pool
//! thread), saying which of the three happened. [`Watcher::close`] hands every parked
//! connection back at once and refuses later parks, so a shutdown reaches them all.
//!
//! Parked items are kept by value in one vector of slots that stays dense: after each round
//! of events the last items move into the slots that emptied (their `epoll` keys and
//! deadlines follow them) and the vector shrinks when it is mostly empty. So the memory of
//! a burst of parked connections is one block that goes back to the system when they
//! leave, not pieces scattered over the heap arenas of the threads that served them
//! (glibc returns an arena's free memory only from its top, so pieces below anything
//! still in use stay resident). Once the watcher has been quiet for a moment after some
//! work, it empties its allocator's cache for its thread too (`vserv_pool::thread_cache`):
//! the blocks a burst's parks and resumes left there would pin the burst's pages.
//!
//! Linux only (`epoll`); elsewhere [`Watcher::start`] fails and connections keep their
//! threads while idle.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vserv_pool::thread_cache::QuietRelease;
use vserv_service::work::Wake;

use crate::wake::{PipeWake, Ready};

/// What the watcher waits on for a parked item.
pub(crate) trait Watchable: Send + 'static {
    /// The socket: readable means input (or its end, or an error) to read.
    fn socket(&self) -> BorrowedFd<'_>;
    /// The item's waker; drained by the watcher when it fired.
    fn waker(&self) -> &PipeWake;
}

/// The longest single wait: `epoll_wait` takes milliseconds in an `int` on older kernels,
/// so a far deadline is waited for in steps.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// The watcher thread's state shared with the parkers.
struct Inner<T> {
    #[cfg(target_os = "linux")]
    epoll: std::os::fd::OwnedFd,
    /// Wakes the watcher thread for new items and for [`Watcher::close`].
    wake: PipeWake,
    inbox: Mutex<Inbox<T>>,
}

/// Items handed over and not yet registered.
struct Inbox<T> {
    new: Vec<(T, Option<Instant>)>,
    /// Set by [`Watcher::close`]: nothing parks any more.
    closed: bool,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, Inbox<T>> {
        // A push or a take leaves the inbox consistent even after a panic.
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The watcher thread (see the module docs); [`Watcher::close`] ends it.
pub(crate) struct Watcher<T> {
    inner: Arc<Inner<T>>,
    thread: Option<JoinHandle<()>>,
}

/// A handle connection threads park their connections with (clones share the watcher).
pub(crate) struct Parker<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Parker<T> {
    fn clone(&self) -> Self {
        Parker {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Watchable> Parker<T> {
    /// Hands `item` to the watcher until its socket is readable, its waker fires or
    /// `deadline` passes (no deadline: no limit); gives it back if the watcher is closed.
    pub(crate) fn park(&self, item: T, deadline: Option<Instant>) -> Result<(), T> {
        {
            let mut inbox = self.inner.lock();
            if inbox.closed {
                return Err(item);
            }
            inbox.new.push((item, deadline));
        }
        self.inner.wake.wake();
        Ok(())
    }
}

impl<T: Watchable> Watcher<T> {
    /// Starts the watcher thread; `resume` gets each parked item back (on that thread) with
    /// what woke it. Fails where there is no `epoll`, or when no thread can start.
    #[cfg(target_os = "linux")]
    pub(crate) fn start(resume: impl FnMut(T, Ready) + Send + 'static) -> io::Result<Self> {
        use rustix::event::epoll;
        let inner = Arc::new(Inner {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            wake: PipeWake::new()?,
            inbox: Mutex::new(Inbox {
                new: Vec::new(),
                closed: false,
            }),
        });
        epoll::add(
            &inner.epoll,
            inner.wake.readable(),
            epoll::EventData::new_u64(WATCHER_KEY),
            epoll::EventFlags::IN,
        )?;
        let watched = inner.clone();
        let thread = std::thread::Builder::new()
            .name("vserv-watch".into())
            .spawn(move || Watch::new(&watched).run(resume))?;
        Ok(Watcher {
            inner,
            thread: Some(thread),
        })
    }

    /// Starts the watcher thread: not on this system (no `epoll`).
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn start(_resume: impl FnMut(T, Ready) + Send + 'static) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "parking idle connections needs epoll",
        ))
    }

    /// A handle to park items with.
    pub(crate) fn parker(&self) -> Parker<T> {
        Parker {
            inner: self.inner.clone(),
        }
    }

    /// Hands every parked item back (to `resume`), refuses later parks, and waits for the
    /// watcher thread to end.
    pub(crate) fn close(mut self) {
        self.inner.lock().closed = true;
        self.inner.wake.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<T> Drop for Watcher<T> {
    fn drop(&mut self) {
        // Dropped without `close` (an early return): the thread still hands everything
        // back and ends.
        self.inner.lock().closed = true;
        self.inner.wake.wake();
    }
}

/// The `epoll` key of the watcher's own waker; an item in slot `n` has keys `2n` (socket)
/// and `2n + 1` (waker).
const WATCHER_KEY: u64 = u64::MAX;

/// Slots kept however empty the vector gets (a few connections park and leave all the time).
const MIN_SLOTS: usize = 64;

/// The `epoll` key of `slot`'s socket (its waker's is one more).
fn socket_key(slot: usize) -> u64 {
    u64::try_from(slot).unwrap_or(u64::MAX / 2) * 2
}

/// The watcher thread's own bookkeeping.
#[cfg(target_os = "linux")]
struct Watch<'a, T> {
    inner: &'a Inner<T>,
    /// Parked items by slot, with their deadlines; dense between rounds (see the module
    /// docs).
    slots: Vec<Option<(T, Option<Instant>)>>,
    /// Slots emptied in this round, filled from the end by [`Watch::compact`].
    holes: Vec<usize>,
    /// Deadlines in order, with their slots.
    timers: BTreeSet<(Instant, usize)>,
    /// Gives the thread's allocator cache back once it has been quiet for a moment (a
    /// burst's parks and resumes leave blocks there, each holding a page of its memory).
    quiet: QuietRelease,
}

#[cfg(target_os = "linux")]
impl<'a, T: Watchable> Watch<'a, T> {
    fn new(inner: &'a Inner<T>) -> Self {
        Watch {
            inner,
            slots: Vec::new(),
            holes: Vec::new(),
            timers: BTreeSet::new(),
            quiet: QuietRelease::default(),
        }
    }

    fn run(mut self, mut resume: impl FnMut(T, Ready)) {
        use rustix::event::epoll;
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        loop {
            let (new, closed) = {
                let mut inbox = self.inner.lock();
                (std::mem::take(&mut inbox.new), inbox.closed)
            };
            let mut worked = !new.is_empty();
            for (item, deadline) in new {
                if let Err((item, e)) = self.add(item, deadline) {
                    tracing::warn!(error = %e, "could not watch an idle connection; resuming it");
                    resume(item, Ready::default());
                }
            }
            if closed {
                break;
            }
            let timeout = self
                .timers
                .first()
                .map(|(at, _)| *at)
                .into_iter()
                .chain(self.quiet.due())
                .min()
                .map(|at| crate::wake::timeout_until(at.min(Instant::now() + MAX_WAIT)));
            events.clear();
            match epoll::wait(
                &self.inner.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    tracing::error!(error = %e, "watching idle connections failed; resuming them all");
                    self.inner.lock().closed = true;
                    break;
                }
            }
            worked |= !events.is_empty();
            for event in events.drain(..) {
                let key = event.data.u64();
                if key == WATCHER_KEY {
                    self.inner.wake.drain();
                    continue;
                }
                let slot = usize::try_from(key / 2).unwrap_or(usize::MAX);
                let ready = if key % 2 == 0 {
                    Ready {
                        socket: true,
                        woken: false,
                    }
                } else {
                    Ready {
                        socket: false,
                        woken: true,
                    }
                };
                // A second event of an item already resumed in this round finds no item:
                // its thread sees that descriptor ready itself.
                if let Some(item) = self.take(slot, ready.woken) {
                    resume(item, ready);
                }
            }
            let now = Instant::now();
            while let Some(&(at, slot)) = self.timers.first()
                && at <= now
            {
                if let Some(item) = self.take(slot, false) {
                    resume(item, Ready::default());
                    worked = true;
                } else {
                    self.timers.pop_first();
                }
            }
            self.compact(&mut resume);
            self.quiet.round(worked, now);
        }
        // Closed: everything parked goes back, and whatever was handed over meanwhile.
        for slot in 0..self.slots.len() {
            if let Some(item) = self.take(slot, false) {
                resume(item, Ready::default());
            }
        }
        let late = std::mem::take(&mut self.inner.lock().new);
        for (item, _) in late {
            resume(item, Ready::default());
        }
    }

    /// Registers `item`'s socket and waker and its deadline; on failure, gives it back.
    fn add(&mut self, item: T, deadline: Option<Instant>) -> Result<(), (T, io::Error)> {
        use rustix::event::epoll;
        // Dense between rounds, so a new item goes at the end.
        let slot = self.slots.len();
        let key = socket_key(slot);
        if let Err(e) = epoll::add(
            &self.inner.epoll,
            item.socket(),
            epoll::EventData::new_u64(key),
            epoll::EventFlags::IN,
        ) {
            return Err((item, e.into()));
        }
        if let Err(e) = epoll::add(
            &self.inner.epoll,
            item.waker().readable(),
            epoll::EventData::new_u64(key + 1),
            epoll::EventFlags::IN,
        ) {
            let _ = epoll::delete(&self.inner.epoll, item.socket());
            return Err((item, e.into()));
        }
        if let Some(at) = deadline {
            self.timers.insert((at, slot));
        }
        self.slots.push(Some((item, deadline)));
        Ok(())
    }

    /// Moves the last items into the slots emptied this round (re-keying their descriptors
    /// and deadlines), drops the empty tail and shrinks the vector when it is mostly empty,
    /// so the slots stay dense and their memory follows the number parked. An item that
    /// cannot be re-keyed is resumed instead.
    fn compact(&mut self, resume: &mut impl FnMut(T, Ready)) {
        use rustix::event::epoll;
        let mut holes = std::mem::take(&mut self.holes);
        holes.sort_unstable();
        holes.dedup();
        let mut next = 0;
        while let Some(&hole) = holes.get(next) {
            while matches!(self.slots.last(), Some(None)) {
                self.slots.pop();
            }
            let last = self.slots.len().saturating_sub(1);
            // At or past the last item (the empty tail was dropped): nothing to move.
            if hole >= last {
                next += 1;
                continue;
            }
            let Some(Some((item, deadline))) = self.slots.pop() else {
                next += 1;
                continue;
            };
            if let Some(at) = deadline {
                self.timers.remove(&(at, last));
            }
            let key = socket_key(hole);
            let rekeyed = epoll::modify(
                &self.inner.epoll,
                item.socket(),
                epoll::EventData::new_u64(key),
                epoll::EventFlags::IN,
            )
            .and_then(|()| {
                epoll::modify(
                    &self.inner.epoll,
                    item.waker().readable(),
                    epoll::EventData::new_u64(key + 1),
                    epoll::EventFlags::IN,
                )
            });
            if let Err(e) = rekeyed {
                tracing::warn!(error = %e, "could not move an idle connection's watch; resuming it");
                let _ = epoll::delete(&self.inner.epoll, item.socket());
                let _ = epoll::delete(&self.inner.epoll, item.waker().readable());
                resume(item, Ready::default());
                // The same hole is filled from the new end.
                continue;
            }
            if let Some(at) = deadline {
                self.timers.insert((at, hole));
            }
            if let Some(place) = self.slots.get_mut(hole) {
                *place = Some((item, deadline));
            }
            next += 1;
        }
        holes.clear();
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        self.holes = holes;
        if self.slots.is_empty() {
            // Nothing parked: give all of it back (a burst's worth).
            self.slots = Vec::new();
            self.holes = Vec::new();
        } else if self.slots.capacity() > MIN_SLOTS && self.slots.len() < self.slots.capacity() / 4
        {
            self.slots.shrink_to((self.slots.len() * 2).max(MIN_SLOTS));
        }
    }

    /// Takes the item in `slot` out of the watch (its descriptors, its deadline), draining
    /// its waker if that is what fired; `None` if the slot is empty.
    fn take(&mut self, slot: usize, woken: bool) -> Option<T> {
        use rustix::event::epoll;
        let (item, deadline) = self.slots.get_mut(slot)?.take()?;
        let _ = epoll::delete(&self.inner.epoll, item.socket());
        let _ = epoll::delete(&self.inner.epoll, item.waker().readable());
        if let Some(at) = deadline {
            self.timers.remove(&(at, slot));
        }
        if woken {
            item.waker().drain();
        }
        self.holes.push(slot);
        Some(item)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::sync::mpsc;
    use vserv_pool::thread_cache;

    struct Item {
        name: &'static str,
        stream: TcpStream,
        waker: Arc<PipeWake>,
    }

    impl Watchable for Item {
        fn socket(&self) -> BorrowedFd<'_> {
            self.stream.as_fd()
        }
        fn waker(&self) -> &PipeWake {
            &self.waker
        }
    }

    /// A connected pair: the item's end and the peer's.
    fn item(listener: &TcpListener, name: &'static str) -> (Item, TcpStream) {
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let waker = Arc::new(PipeWake::new().unwrap());
        (
            Item {
                name,
                stream,
                waker,
            },
            peer,
        )
    }

    fn start() -> (Watcher<Item>, mpsc::Receiver<(&'static str, bool, bool)>) {
        let (tx, rx) = mpsc::channel();
        let watcher = Watcher::start(move |item: Item, ready: Ready| {
            let _ = tx.send((item.name, ready.socket, ready.woken));
        })
        .unwrap();
        (watcher, rx)
    }

    const LONG: Duration = Duration::from_secs(5);

    #[test]
    fn an_item_comes_back_for_input_for_its_waker_and_at_its_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (watcher, back) = start();
        let parker = watcher.parker();
        let (reading, mut reading_peer) = item(&listener, "input");
        let (woken, _woken_peer) = item(&listener, "waker");
        let (timed, _timed_peer) = item(&listener, "deadline");
        let woken_waker = woken.waker.clone();
        let far = Some(Instant::now() + Duration::from_secs(60));
        parker.park(reading, far).map_err(|_| "closed").unwrap();
        parker.park(woken, None).map_err(|_| "closed").unwrap();
        let start = Instant::now();
        parker
            .park(timed, Some(start + Duration::from_millis(50)))
            .map_err(|_| "closed")
            .unwrap();
        // Nothing happened yet: nothing comes back before the deadline.
        assert!(back.recv_timeout(Duration::from_millis(20)).is_err());
        assert_eq!(back.recv_timeout(LONG).unwrap(), ("deadline", false, false));
        assert!(start.elapsed() >= Duration::from_millis(50));
        reading_peer.write_all(b"x").unwrap();
        assert_eq!(back.recv_timeout(LONG).unwrap(), ("input", true, false));
        woken_waker.wake();
        assert_eq!(back.recv_timeout(LONG).unwrap(), ("waker", false, true));
        // The watcher drained the waker it reported.
        let probe = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let quiet = crate::wake::wait(
            &probe,
            false,
            &woken_waker,
            Some(Instant::now() + Duration::from_millis(10)),
        )
        .unwrap();
        assert!(!quiet.woken);
        watcher.close();
    }

    #[test]
    fn close_hands_everything_back_and_refuses_later_parks() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (watcher, back) = start();
        let parker = watcher.parker();
        let mut peers = Vec::new();
        for name in ["a", "b", "c"] {
            let (item, peer) = item(&listener, name);
            peers.push(peer);
            parker.park(item, None).map_err(|_| "closed").unwrap();
        }
        watcher.close();
        let mut names: Vec<_> = back.try_iter().map(|(name, _, _)| name).collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b", "c"]);
        let (late, _peer) = item(&listener, "late");
        let refused = parker.park(late, None).err().map(|item| item.name);
        assert_eq!(refused, Some("late"));
    }

    /// The threads that emptied their allocator cache (this test binary's release hook).
    static RELEASED_BY: Mutex<Vec<std::thread::ThreadId>> = Mutex::new(Vec::new());

    fn record_release() {
        RELEASED_BY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::thread::current().id());
    }

    #[test]
    fn the_watcher_gives_its_allocator_cache_back_once_quiet_after_work() {
        vserv_pool::thread_cache::set_release(record_release);
        let released = |id| {
            RELEASED_BY
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|&&t| t == id)
                .count()
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (watcher, back) = start();
        let id = watcher.thread.as_ref().map(|t| t.thread().id()).unwrap();
        let (it, mut peer) = item(&listener, "a");
        let parked = Instant::now();
        watcher
            .parker()
            .park(it, None)
            .map_err(|_| "closed")
            .unwrap();
        peer.write_all(b"x").unwrap();
        assert_eq!(back.recv_timeout(LONG).unwrap(), ("a", true, false));
        let until = Instant::now() + LONG;
        while released(id) == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(released(id), 1);
        assert!(parked.elapsed() >= thread_cache::QUIET);
        // Once, until there is work again.
        std::thread::sleep(thread_cache::QUIET + Duration::from_millis(300));
        assert_eq!(released(id), 1);
        watcher.close();
    }

    /// A watch driven by hand on the test's thread (no watcher thread), to see its slots.
    fn bare_inner() -> Inner<Item> {
        Inner {
            epoll: rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)
                .unwrap(),
            wake: PipeWake::new().unwrap(),
            inbox: Mutex::new(Inbox {
                new: Vec::new(),
                closed: false,
            }),
        }
    }

    /// The items parked in `watch`, slot by slot (`None`: an empty slot).
    fn names(watch: &Watch<'_, Item>) -> Vec<Option<&'static str>> {
        watch
            .slots
            .iter()
            .map(|s| s.as_ref().map(|(item, _)| item.name))
            .collect()
    }

    #[test]
    fn emptied_slots_are_filled_from_the_end_with_keys_and_deadlines_moved() {
        use rustix::event::epoll;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inner = bare_inner();
        let mut watch = Watch::new(&inner);
        let mut peers = Vec::new();
        let soon = Instant::now() + Duration::from_secs(60);
        const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
        for (i, name) in NAMES.into_iter().enumerate() {
            let (it, peer) = item(&listener, name);
            peers.push(peer);
            let deadline = (i % 2 == 0).then_some(soon + Duration::from_secs(i as u64));
            assert!(watch.add(it, deadline).is_ok());
        }
        let mut resumed = Vec::new();
        let mut resume = |it: Item, _: Ready| resumed.push(it.name);
        // "a" (slot 0) and "c" (slot 2) leave: "f" and "e" move into their slots.
        assert_eq!(watch.take(0, false).map(|i| i.name), Some("a"));
        assert_eq!(watch.take(2, false).map(|i| i.name), Some("c"));
        watch.compact(&mut resume);
        assert!(resumed.is_empty());
        assert_eq!(names(&watch), [Some("f"), Some("b"), Some("e"), Some("d")]);
        // "e" kept its deadline, now under its new slot; "f" has none.
        let e_at = soon + Duration::from_secs(4);
        assert!(watch.timers.contains(&(e_at, 2)));
        assert_eq!(watch.timers.len(), 1);
        // Their descriptors report under the new slots' keys.
        peers[4].write_all(b"x").unwrap();
        watch.slots[0].as_ref().unwrap().0.waker.wake();
        let mut events: Vec<epoll::Event> = Vec::with_capacity(8);
        let mut keys = std::collections::BTreeSet::new();
        let until = Instant::now() + LONG;
        while keys.len() < 2 && Instant::now() < until {
            events.clear();
            epoll::wait(
                &inner.epoll,
                rustix::buffer::spare_capacity(&mut events),
                Some(&crate::wake::timeout_until(
                    Instant::now() + Duration::from_millis(100),
                )),
            )
            .unwrap();
            keys.extend(events.iter().map(|e| e.data.u64()));
        }
        // "e" (slot 2): its socket, key 4; "f" (slot 0): its waker, key 1.
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), [1, 4]);
    }

    #[test]
    fn the_slots_shrink_when_most_items_leave_and_are_freed_when_all_do() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let inner = bare_inner();
        let mut watch = Watch::new(&inner);
        let mut peers = Vec::new();
        for _ in 0..300 {
            let (it, peer) = item(&listener, "many");
            peers.push(peer);
            assert!(watch.add(it, None).is_ok());
        }
        let mut resume = |_: Item, _: Ready| {};
        let full = watch.slots.capacity();
        assert!(full >= 300);
        // All but the last ten leave; the survivors move down and the vector shrinks.
        for slot in 0..290 {
            assert!(watch.take(slot, false).is_some());
        }
        watch.compact(&mut resume);
        assert_eq!(watch.slots.len(), 10);
        assert!(watch.slots.iter().all(Option::is_some));
        assert!(
            watch.slots.capacity() <= MIN_SLOTS,
            "{}",
            watch.slots.capacity()
        );
        for slot in 0..10 {
            assert!(watch.take(slot, false).is_some());
        }
        watch.compact(&mut resume);
        assert_eq!(watch.slots.capacity(), 0);
    }

    #[test]
    fn slots_are_reused_and_a_stale_deadline_wakes_nobody_else() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let (watcher, back) = start();
        let parker = watcher.parker();
        // Parked with a near deadline, resumed early by input: its deadline must not
        // resume the next item parked in the same slot.
        let (first, mut first_peer) = item(&listener, "first");
        parker
            .park(first, Some(Instant::now() + Duration::from_millis(80)))
            .map_err(|_| "closed")
            .unwrap();
        first_peer.write_all(b"x").unwrap();
        assert_eq!(back.recv_timeout(LONG).unwrap(), ("first", true, false));
        let (second, _second_peer) = item(&listener, "second");
        parker.park(second, None).map_err(|_| "closed").unwrap();
        assert!(back.recv_timeout(Duration::from_millis(200)).is_err());
        watcher.close();
        assert_eq!(back.recv_timeout(LONG).unwrap(), ("second", false, false));
    }
}
