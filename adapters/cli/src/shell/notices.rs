//! Server notices (a message or a delivery arrived, the session about to idle out, and the
//! session ended) shown above the prompt without breaking the line being typed: a thread
//! polls the shell's connection while the prompt waits and prints through rustyline's
//! external printer. Notices that arrive during a command are shown after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::shell::session::Session;

/// How long one poll holds the connection: a line typed meanwhile waits at most this.
const POLL_WAIT: Duration = Duration::from_millis(50);

/// The pause between polls.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// Where a notice is shown.
pub trait NoticeSink: Send {
    /// Shows one notice (a line, without its newline).
    fn show(&mut self, text: &str);
}

/// Above the prompt of a rustyline editor.
pub struct AbovePrompt<P>(pub P);

impl<P: rustyline::ExternalPrinter + Send> NoticeSink for AbovePrompt<P> {
    fn show(&mut self, text: &str) {
        if let Err(e) = self.0.print(format!("{text}\n")) {
            tracing::debug!(error = %e, "notice not shown");
        }
    }
}

/// The shared session, locked even if a holder panicked.
pub fn lock(session: &Mutex<Session>) -> MutexGuard<'_, Session> {
    session
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A thread showing the notices of the session's connection on a sink until dropped.
pub struct NoticePoller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NoticePoller {
    /// Starts polling `session` (skipping a round whenever a command holds it).
    pub fn start(session: Arc<Mutex<Session>>, mut sink: Box<dyn NoticeSink>) -> NoticePoller {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let lines = match session.try_lock() {
                    Ok(mut s) => s.poll_notices(POLL_WAIT),
                    Err(TryLockError::Poisoned(p)) => p.into_inner().poll_notices(POLL_WAIT),
                    Err(TryLockError::WouldBlock) => Vec::new(),
                };
                for line in lines {
                    sink.show(&line);
                }
                std::thread::sleep(POLL_EVERY);
            }
        });
        NoticePoller {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for NoticePoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::debug!("the notice poller panicked");
        }
    }
}
