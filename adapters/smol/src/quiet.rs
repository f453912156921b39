//! Each executor thread (and the datagram thread) gives its allocator cache back once it
//! has been quiet for a moment after some work (see `vserv_pool::thread_cache`): the blocks
//! a burst of connections left cached on the thread would pin the burst's pages for as long
//! as the server stays idle.
//!
//! Tasks run [`marked`], which notes on the polling thread that it worked;
//! [`release_when_quiet`] runs beside the executor on each of its threads, waits (without a
//! timer) until that thread works, then until [`QUIET`] passes without work, and empties
//! the thread's cache. An idle server wakes for none of it.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::task::{Poll, Waker};

use async_io::Timer;
use vserv_pool::thread_cache::{self, QUIET};

/// This thread's record: whether it polled a task since [`release_when_quiet`] last looked,
/// and that future's waker while it waits for the first one.
struct Worked {
    since_look: Cell<bool>,
    waiting: Cell<Option<Waker>>,
}

thread_local! {
    static WORKED: Worked = const {
        Worked {
            since_look: Cell::new(false),
            waiting: Cell::new(None),
        }
    };
}

/// Notes that this thread is working (waking its [`release_when_quiet`] if it waits).
fn note_work() {
    WORKED.with(|w| {
        if !w.since_look.replace(true)
            && let Some(waker) = w.waiting.take()
        {
            waker.wake();
        }
    });
}

/// Takes this thread's note (whether it worked since the last look).
fn take_note() -> bool {
    WORKED.with(|w| w.since_look.replace(false))
}

/// `task`, noting on each poll that the polling thread works.
pub(crate) fn marked<F: Future + Send + 'static>(
    task: F,
) -> impl Future<Output = F::Output> + Send + 'static {
    let mut task = Box::pin(task);
    poll_fn(move |cx| {
        note_work();
        task.as_mut().poll(cx)
    })
}

/// Runs forever on the calling executor thread: after each stretch of work followed by
/// [`QUIET`] without any, empties the thread's allocator cache (once per stretch).
pub(crate) async fn release_when_quiet() {
    loop {
        poll_fn(|cx| {
            if take_note() {
                return Poll::Ready(());
            }
            WORKED.with(|w| w.waiting.set(Some(cx.waker().clone())));
            Poll::Pending
        })
        .await;
        loop {
            Timer::after(QUIET).await;
            if !take_note() {
                break;
            }
        }
        thread_cache::release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;
    use std::sync::Mutex;
    use std::thread::ThreadId;
    use std::time::Duration;

    /// The threads that emptied their allocator cache (this test binary's release hook).
    static RELEASED_BY: Mutex<Vec<ThreadId>> = Mutex::new(Vec::new());

    fn record_release() {
        RELEASED_BY
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(std::thread::current().id());
    }

    fn released(by: ThreadId) -> usize {
        let all = RELEASED_BY.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().filter(|&&t| t == by).count()
    }

    #[test]
    fn an_executor_thread_gives_its_cache_back_once_quiet_after_work() {
        thread_cache::set_release(record_release);
        let me = std::thread::current().id();
        let ex = smol::Executor::new();
        let settle = Duration::from_millis(300);
        let test = async {
            Timer::after(QUIET + settle).await;
            assert_eq!(released(me), 0, "no work yet: nothing to give back");
            ex.spawn(marked(async {})).await;
            Timer::after(QUIET + settle).await;
            assert_eq!(released(me), 1);
            Timer::after(QUIET + settle).await;
            assert_eq!(released(me), 1, "once per stretch of work");
        };
        smol::block_on(ex.run(future::or(test, release_when_quiet())));
    }
}
