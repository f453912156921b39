//! Threads kept for reuse, each waiting on a channel of its own with its own timeout.
//!
//! A thread with nothing to do [`IdleThreads::park`]s: it registers a one-slot channel and
//! waits on it until a job is handed to it or its keep time passes, then leaves. Every
//! waiting thread times out on its own clock, so after a burst all of them leave about
//! `keep` after their last job (a shared mutex-guarded receiver lets only the thread holding
//! the lock time out, so a burst's threads would leave one per `keep`). The most recently
//! parked thread is handed the next job, so a steady load reuses a few warm threads and the
//! rest time out.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The waiting threads of one pool (see the module docs).
#[derive(Debug)]
pub(crate) struct IdleThreads<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    /// Waiting threads by ticket, most recently parked last.
    waiting: Vec<(u64, SyncSender<T>)>,
    next_ticket: u64,
    /// Set by [`IdleThreads::close`]: nobody parks any more.
    closed: bool,
}

impl<T> Default for IdleThreads<T> {
    fn default() -> Self {
        IdleThreads {
            state: Mutex::new(State {
                waiting: Vec::new(),
                next_ticket: 0,
                closed: false,
            }),
        }
    }
}

impl<T> IdleThreads<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits (on the calling thread) up to `keep` for a job handed over with
    /// [`IdleThreads::hand`]; `None` means the thread should end: its time passed with
    /// nothing handed to it, or the pool closed.
    pub(crate) fn park(&self, keep: Duration) -> Option<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let ticket = {
            let mut state = self.lock();
            if state.closed {
                return None;
            }
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiting.push((ticket, tx));
            ticket
        };
        match rx.recv_timeout(keep) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => self.leave(ticket, &rx),
        }
    }

    /// After a timeout: leaves if still registered; if a [`IdleThreads::hand`] claimed this
    /// thread meanwhile, its job is on the way and must be taken.
    fn leave(&self, ticket: u64, rx: &Receiver<T>) -> Option<T> {
        {
            let mut state = self.lock();
            if let Some(at) = state.waiting.iter().position(|(t, _)| *t == ticket) {
                state.waiting.remove(at);
                return None;
            }
        }
        rx.recv().ok()
    }

    /// Hands `job` to the most recently parked thread; gives it back when none waits.
    pub(crate) fn hand(&self, mut job: T) -> Result<(), T> {
        loop {
            let Some((_, tx)) = self.lock().waiting.pop() else {
                return Err(job);
            };
            // The slot is free (each channel carries one job); a thread that is gone (it
            // panicked) gives the job back for the next one.
            match tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => job = back,
            }
        }
    }

    /// Wakes every waiting thread to leave, and makes later [`IdleThreads::park`] calls
    /// return `None` at once.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.waiting.clear();
    }

    /// Threads waiting now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn every_parked_thread_leaves_after_its_own_keep_time() {
        let idle = Arc::new(IdleThreads::<u32>::default());
        let keep = Duration::from_millis(200);
        let start = Instant::now();
        let threads: Vec<_> = (0..50)
            .map(|_| {
                let idle = idle.clone();
                std::thread::spawn(move || idle.park(keep))
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), None);
        }
        // One keep time for all of them, not one per thread (50 in turn would take 10 s);
        // the bound leaves room for a loaded machine's scheduling.
        assert!(start.elapsed() < keep * 20, "{:?}", start.elapsed());
        assert_eq!(idle.waiting(), 0);
    }

    #[test]
    fn a_job_goes_to_the_most_recently_parked_thread() {
        let idle = Arc::new(IdleThreads::<u32>::default());
        let first = {
            let idle = idle.clone();
            std::thread::spawn(move || idle.park(Duration::from_secs(30)))
        };
        while idle.waiting() < 1 {
            std::thread::yield_now();
        }
        let second = {
            let idle = idle.clone();
            std::thread::spawn(move || idle.park(Duration::from_secs(30)))
        };
        while idle.waiting() < 2 {
            std::thread::yield_now();
        }
        assert_eq!(idle.hand(7), Ok(()));
        assert_eq!(second.join().unwrap(), Some(7));
        idle.close();
        assert_eq!(first.join().unwrap(), None);
        assert_eq!(idle.hand(8), Err(8));
        assert_eq!(idle.park(Duration::from_secs(30)), None);
    }

    #[test]
    fn hand_gives_the_job_back_when_nobody_waits() {
        let idle = IdleThreads::<&str>::default();
        assert_eq!(idle.hand("job"), Err("job"));
    }

    #[test]
    fn a_thread_claimed_as_its_time_runs_out_still_takes_its_job() {
        // Many rounds of a hand racing a timeout: the job is never lost.
        for round in 0..200u32 {
            let idle = Arc::new(IdleThreads::<u32>::default());
            let parked = {
                let idle = idle.clone();
                std::thread::spawn(move || idle.park(Duration::from_micros(50)))
            };
            while idle.waiting() < 1 && !parked.is_finished() {
                std::thread::yield_now();
            }
            let handed = idle.hand(round);
            let got = parked.join().unwrap();
            match handed {
                Ok(()) => assert_eq!(got, Some(round)),
                Err(back) => {
                    assert_eq!(back, round);
                    assert_eq!(got, None);
                }
            }
        }
    }
}
