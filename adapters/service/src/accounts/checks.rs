//! The password-check pool: at most `max_concurrent` argon2 runs at once, each in the
//! reusable blocks of one of the pool's slots; up to `max_queued` more wait their turn in
//! arrival order; beyond that a check is refused at once with [`Busy`].
//!
//! An argon2id check with the default parameters needs 19 MiB. Allocating it per check
//! (what `argon2`'s own hashing does) leaves that memory in the allocator's per-thread
//! arenas of every thread that ever checked a password, and nothing bounded how many ran at
//! once, so logins could grow a server's memory without limit. Here the memory of the whole
//! process's password checks is at most `max_concurrent` slots, each as large as the largest
//! check it has run (the stored hashes' and the configured `m` cost), allocated once and
//! reused; a slot's blocks are wiped after every check.

use std::sync::{Condvar, Mutex, MutexGuard};

use argon2::Block;
use zeroize::Zeroize;

/// Default for [`CheckLimits::max_queued`].
pub const DEFAULT_MAX_QUEUED: usize = 64;
/// Largest [`CheckLimits::max_concurrent`] accepted.
pub const MAX_CONCURRENT_LIMIT: usize = 1024;
/// Largest [`CheckLimits::max_queued`] accepted.
pub const MAX_QUEUED_LIMIT: usize = 65_536;

/// How many password checks may run and wait at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckLimits {
    /// Checks hashing at the same time (each holding one slot's memory), at least 1.
    pub max_concurrent: usize,
    /// Checks waiting for a slot; a check arriving when this many wait is refused.
    pub max_queued: usize,
}

impl CheckLimits {
    /// One slot per available CPU (hashing is CPU-bound: more would only add memory) and
    /// [`DEFAULT_MAX_QUEUED`] waiting.
    pub fn from_cpus() -> CheckLimits {
        CheckLimits {
            max_concurrent: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_queued: DEFAULT_MAX_QUEUED,
        }
    }

    /// These limits with `max_concurrent` raised to 1 and both clamped to their largest
    /// accepted values, so a pool built from them always makes progress.
    fn sane(self) -> CheckLimits {
        CheckLimits {
            max_concurrent: self.max_concurrent.clamp(1, MAX_CONCURRENT_LIMIT),
            max_queued: self.max_queued.min(MAX_QUEUED_LIMIT),
        }
    }
}

impl Default for CheckLimits {
    /// [`CheckLimits::from_cpus`].
    fn default() -> Self {
        CheckLimits::from_cpus()
    }
}

/// A password check refused because the pool's slots are all in use and its queue is full.
/// Nothing was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy checking other passwords; retry in a moment")]
pub struct Busy;

/// Why a slot's memory could not hold a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("could not allocate {kib} KiB for a password check")]
pub struct NoMemory {
    /// The blocks needed, KiB.
    pub kib: usize,
}

/// One slot's argon2 blocks, grown on demand and kept between checks.
#[derive(Default)]
pub struct CheckMemory {
    blocks: Vec<Block>,
    /// Blocks written by the current check (wiped when the slot is returned).
    used: usize,
}

impl CheckMemory {
    /// At least `count` blocks for one check, growing this slot's memory if it has never
    /// needed that many (the growth is kept for later checks).
    pub fn blocks(&mut self, count: usize) -> Result<&mut [Block], NoMemory> {
        if self.blocks.len() < count {
            let more = count - self.blocks.len();
            self.blocks
                .try_reserve_exact(more)
                .map_err(|_| NoMemory { kib: count })?;
            self.blocks.resize(count, Block::new());
        }
        self.used = self.used.max(count);
        Ok(&mut self.blocks[..count])
    }

    /// Blocks this slot holds (its memory in KiB).
    pub fn capacity(&self) -> usize {
        self.blocks.len()
    }

    fn wipe(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.blocks[..used].iter_mut().zeroize();
    }
}

struct State {
    free: Vec<CheckMemory>,
    /// Checks waiting for a slot.
    waiting: usize,
    /// The ticket the next waiter gets, and the ticket whose turn it is.
    next_ticket: u64,
    serving: u64,
}

/// The process-wide pool of password-check slots (see the [module docs](self)).
pub struct CheckPool {
    limits: CheckLimits,
    state: Mutex<State>,
    freed: Condvar,
}

impl std::fmt::Debug for CheckPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckPool")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl CheckPool {
    /// A pool with `limits` (`max_concurrent` at least 1). Slots allocate their memory on
    /// first use.
    pub fn new(limits: CheckLimits) -> CheckPool {
        let limits = limits.sane();
        CheckPool {
            limits,
            state: Mutex::new(State {
                free: (0..limits.max_concurrent)
                    .map(|_| CheckMemory::default())
                    .collect(),
                waiting: 0,
                next_ticket: 0,
                serving: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> CheckLimits {
        self.limits
    }

    /// How many checks are waiting for a slot right now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `check` with a slot's memory: at once if a slot is free and nobody waits, else
    /// after the checks queued before it; [`Busy`] without running it if `max_queued`
    /// checks already wait. The slot's used blocks are wiped afterwards, even if `check`
    /// panics.
    pub fn run<R>(&self, check: impl FnOnce(&mut CheckMemory) -> R) -> Result<R, Busy> {
        let mut lease = Lease {
            pool: self,
            memory: Some(self.acquire()?),
        };
        let memory = lease.memory.get_or_insert_with(CheckMemory::default);
        Ok(check(memory))
    }

    fn acquire(&self) -> Result<CheckMemory, Busy> {
        let mut state = self.lock();
        if state.waiting == 0
            && let Some(memory) = state.free.pop()
        {
            return Ok(memory);
        }
        if state.waiting >= self.limits.max_queued {
            return Err(Busy);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting += 1;
        loop {
            if ticket == state.serving
                && let Some(memory) = state.free.pop()
            {
                state.serving += 1;
                state.waiting -= 1;
                // The next ticket may find another free slot.
                self.freed.notify_all();
                return Ok(memory);
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn release(&self, mut memory: CheckMemory) {
        memory.wipe();
        self.lock().free.push(memory);
        self.freed.notify_all();
    }
}

/// A slot taken from the pool; returned (wiped) when dropped.
struct Lease<'a> {
    pool: &'a CheckPool,
    memory: Option<CheckMemory>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(memory) = self.memory.take() {
            self.pool.release(memory);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    fn pool(max_concurrent: usize, max_queued: usize) -> Arc<CheckPool> {
        Arc::new(CheckPool::new(CheckLimits {
            max_concurrent,
            max_queued,
        }))
    }

    /// Holds a slot on another thread until the returned sender is dropped or sent to.
    fn hold(pool: &Arc<CheckPool>) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (held_tx, held_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let pool = pool.clone();
        let handle = std::thread::spawn(move || {
            pool.run(|_| {
                held_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
            .unwrap();
        });
        held_rx.recv().unwrap();
        (release_tx, handle)
    }

    #[test]
    fn beyond_the_slots_and_the_queue_a_check_is_refused() {
        let pool = pool(1, 0);
        let (release, holder) = hold(&pool);
        assert_eq!(pool.run(|_| ()), Err(Busy));
        drop(release);
        holder.join().unwrap();
        assert_eq!(pool.run(|_| 7), Ok(7));
    }

    #[test]
    fn queued_checks_run_in_arrival_order_once_a_slot_frees() {
        let pool = pool(1, 2);
        let (release, holder) = hold(&pool);
        let (order_tx, order_rx) = mpsc::channel();
        let mut waiters = Vec::new();
        for i in 0..2 {
            let (p, order_tx) = (pool.clone(), order_tx.clone());
            waiters.push(std::thread::spawn(move || {
                p.run(|_| order_tx.send(i).unwrap()).unwrap();
            }));
            // Wait until this one is queued before starting the next.
            while pool.lock().waiting < i + 1 {
                std::thread::yield_now();
            }
        }
        // Two wait: a third is refused.
        assert_eq!(pool.run(|_| ()), Err(Busy));
        drop(release);
        holder.join().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
        let order: Vec<usize> = order_rx.try_iter().collect();
        assert_eq!(order, vec![0, 1]);
    }

    #[test]
    fn a_slot_keeps_its_memory_and_is_wiped_between_checks() {
        let pool = pool(1, 0);
        pool.run(|m| {
            let blocks = m.blocks(16).unwrap();
            blocks[3].as_mut()[0] = 0xdead_beef;
        })
        .unwrap();
        pool.run(|m| {
            assert_eq!(m.capacity(), 16);
            let blocks = m.blocks(8).unwrap();
            assert!(blocks.iter().all(|b| b.as_ref().iter().all(|&w| w == 0)));
            assert_eq!(m.blocks(16).unwrap()[3].as_ref()[0], 0);
        })
        .unwrap();
    }

    #[test]
    fn a_panicking_check_returns_its_slot() {
        let pool = pool(1, 0);
        let p = pool.clone();
        let result = std::thread::spawn(move || p.run(|_| panic!("check failed"))).join();
        assert!(result.is_err());
        assert_eq!(pool.run(|_| 1), Ok(1));
    }

    #[test]
    fn zero_slots_are_raised_to_one() {
        let pool = pool(0, 0);
        assert_eq!(pool.limits().max_concurrent, 1);
        assert_eq!(pool.run(|_| ()), Ok(()));
    }
}
