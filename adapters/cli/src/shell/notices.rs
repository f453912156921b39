//! Notices shown above the prompt without breaking the line being typed (rustyline's
//! external printer), or on standard error when there is no prompt: today the shell's own
//! "about to idle out" and "idled out" notices, from a watcher thread following the
//! session's idle clock. Server-pushed notices are to go through the same [`NoticeSink`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// When the session was last used and how long the server lets it idle.
#[derive(Debug)]
pub struct IdleClock {
    /// The session's idle timeout, when known.
    pub idle: Option<Duration>,
    /// When the last command ended (or the session opened).
    pub last_used: Instant,
    /// A command is running (traffic keeps the session alive meanwhile).
    pub busy: bool,
}

impl IdleClock {
    /// A clock started now, timeout unknown.
    pub fn new() -> IdleClock {
        IdleClock {
            idle: None,
            last_used: Instant::now(),
            busy: false,
        }
    }
}

/// A shared idle clock, locked even if a holder panicked (it holds plain values).
pub fn lock(clock: &Mutex<IdleClock>) -> std::sync::MutexGuard<'_, IdleClock> {
    clock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long before the idle timeout the "about to idle out" notice comes: a quarter of the
/// timeout, at most a minute.
fn warn_before(idle: Duration) -> Duration {
    (idle / 4).min(Duration::from_secs(60))
}

/// The notice due for a session idle `elapsed` of `idle`, given the last one shown
/// (0: none, 1: about to idle out, 2: idled out); the new stage with its text.
fn due(idle: Duration, elapsed: Duration, shown: u8) -> Option<(u8, String)> {
    if elapsed >= idle && shown < 2 {
        return Some((
            2,
            format!(
                "vserv: the server has closed this session, idle for {} s; the next command \
                 reconnects and logs in again",
                idle.as_secs()
            ),
        ));
    }
    let left = idle.saturating_sub(elapsed);
    if left <= warn_before(idle) && shown < 1 && elapsed < idle {
        return Some((
            1,
            format!(
                "vserv: this session idles out in {} s (run a command to keep it)",
                left.as_secs().max(1)
            ),
        ));
    }
    None
}

/// A thread showing the idle notices of `clock` on `sink` until dropped.
pub struct IdleWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IdleWatcher {
    /// Starts watching.
    pub fn start(clock: Arc<Mutex<IdleClock>>, mut sink: Box<dyn NoticeSink>) -> IdleWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut shown = 0u8;
            let mut since = None;
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let (idle, last_used) = {
                    let c = lock(&clock);
                    (c.idle.filter(|_| !c.busy), c.last_used)
                };
                if since != Some(last_used) {
                    since = Some(last_used);
                    shown = 0;
                }
                if let Some(idle) = idle
                    && let Some((stage, text)) = due(idle, last_used.elapsed(), shown)
                {
                    shown = stage;
                    sink.show(&text);
                }
            }
        });
        IdleWatcher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for IdleWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::debug!("the idle watcher panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_come_once_each_in_order() {
        let idle = Duration::from_secs(300);
        assert_eq!(due(idle, Duration::from_secs(10), 0), None);
        let (stage, text) = due(idle, Duration::from_secs(250), 0).unwrap();
        assert_eq!(stage, 1);
        assert!(text.contains("idles out in 50 s"), "{text}");
        assert_eq!(due(idle, Duration::from_secs(251), 1), None);
        let (stage, text) = due(idle, Duration::from_secs(300), 1).unwrap();
        assert_eq!(stage, 2);
        assert!(text.contains("has closed this session"), "{text}");
        assert_eq!(due(idle, Duration::from_secs(900), 2), None);
        // Found already past the timeout: only the second notice.
        assert_eq!(due(idle, Duration::from_secs(400), 0).map(|d| d.0), Some(2));
    }
}
