//! Blocking work in the simulated world: the service hands its work (commits, password
//! hashes, file I/O, deliveries) to a [`SimRunner`], which only queues it; the world then
//! gives each item a due time drawn from its seeded RNG and runs it, on the world's own
//! thread, when the virtual clock gets there. Completions wake their sessions through
//! [`SimWake`], and the world drives those sessions right after. So commit boundaries and
//! completion order are part of the seed's schedule and its trace, and no OS thread runs
//! anywhere.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_service::work::{Runner, Wake, Work};

/// What the service's runners and wakers left for the world to pick up.
#[derive(Default)]
pub(crate) struct Hub {
    /// Work handed over since the world last looked, in order, with the server it is for.
    queued: Mutex<Vec<(usize, Work)>>,
    /// Endpoints whose sessions were woken.
    woken: Mutex<BTreeSet<usize>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// The work queued since the last call, oldest first.
    pub(crate) fn take_queued(&self) -> Vec<(usize, Work)> {
        std::mem::take(&mut *lock(&self.queued))
    }

    /// The endpoints woken since the last call, in endpoint order.
    pub(crate) fn take_woken(&self) -> BTreeSet<usize> {
        std::mem::take(&mut *lock(&self.woken))
    }
}

/// The runner of one simulated server: queues work for the world.
pub(crate) struct SimRunner {
    pub(crate) server: usize,
    pub(crate) hub: Arc<Hub>,
}

impl Runner for SimRunner {
    fn run(&self, work: Work) {
        lock(&self.hub.queued).push((self.server, work));
    }
}

/// The waker of one simulated server connection.
pub(crate) struct SimWake {
    pub(crate) endpoint: usize,
    pub(crate) hub: Arc<Hub>,
}

impl Wake for SimWake {
    fn wake(&self) {
        lock(&self.hub.woken).insert(self.endpoint);
    }
}
