//! Counts the connection threads still running, so a shutdown can wait for them without
//! holding their `JoinHandle`s: a thread nobody joins or detaches keeps its stack mapped
//! (and its touched pages resident) after it ends, so the server detaches every connection
//! thread at once and waits on this count instead.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The number of running threads that hold a [`Live`] (clones share the count).
#[derive(Debug, Clone, Default)]
pub(crate) struct LiveThreads {
    shared: Arc<(Mutex<usize>, Condvar)>,
}

/// Held by one running thread; dropping it (the thread ending, even by a panic) counts
/// the thread out.
#[derive(Debug)]
pub(crate) struct Live {
    threads: LiveThreads,
}

impl LiveThreads {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.shared.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one more thread; move the returned [`Live`] into it.
    pub(crate) fn enter(&self) -> Live {
        *self.lock() += 1;
        Live {
            threads: self.clone(),
        }
    }

    /// Waits until every [`Live`] has been dropped.
    pub(crate) fn wait_all(&self) {
        let mut count = self.lock();
        while *count > 0 {
            count = self.shared.1.wait(count).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut count = self.threads.lock();
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.threads.shared.1.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wait_all_returns_once_every_thread_has_ended() {
        let live = LiveThreads::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..4 {
            let token = live.enter();
            let rx = rx.clone();
            // Detached: nobody holds the handle.
            drop(std::thread::spawn(move || {
                let _token = token;
                let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(30));
            }));
        }
        assert_eq!(*live.lock(), 4);
        drop(tx);
        live.wait_all();
        assert_eq!(*live.lock(), 0);
    }

    #[test]
    fn a_panicking_thread_is_counted_out() {
        let live = LiveThreads::default();
        let token = live.enter();
        let ended = std::thread::spawn(move || {
            let _token = token;
            panic!("the connection thread failed");
        })
        .join();
        assert!(ended.is_err());
        live.wait_all();
    }
}
