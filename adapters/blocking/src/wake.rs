//! How a blocking connection thread waits: for its socket to be readable (only when the
//! session wants input), for its session's waker, or for the connection's next timer,
//! whichever comes first, in one `poll(2)`. The waker signals an eventfd, so a completion
//! from a worker thread (or a shutdown) wakes the thread at once: no polling interval
//! anywhere.

use std::io;
#[cfg(not(target_os = "linux"))]
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
#[cfg(not(target_os = "linux"))]
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use vserv_service::work::Wake;

/// A session's waker: an eventfd (on Linux; a socket pair elsewhere) the connection
/// thread polls with its socket. One system call to make, one to wake, one to drain.
#[derive(Debug)]
pub(crate) struct PipeWake {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    #[cfg(not(target_os = "linux"))]
    tx: UnixStream,
    #[cfg(not(target_os = "linux"))]
    rx: UnixStream,
}

impl PipeWake {
    /// A fresh waker (non-blocking).
    #[cfg(target_os = "linux")]
    pub(crate) fn new() -> io::Result<PipeWake> {
        use rustix::event::{EventfdFlags, eventfd};
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(PipeWake { fd })
    }

    /// A fresh waker (both ends non-blocking).
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn new() -> io::Result<PipeWake> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(PipeWake { tx, rx })
    }

    /// What the connection thread (or the watcher, while the connection is parked) polls.
    pub(crate) fn readable(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        #[cfg(target_os = "linux")]
        let fd = self.fd.as_fd();
        #[cfg(not(target_os = "linux"))]
        let fd = self.rx.as_fd();
        fd
    }

    /// Empties it (the wake-ups so far are being handled).
    pub(crate) fn drain(&self) {
        #[cfg(target_os = "linux")]
        {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(&self.fd, &mut count);
        }
        #[cfg(not(target_os = "linux"))]
        {
            let mut buf = [0u8; 64];
            while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

impl Wake for PipeWake {
    fn wake(&self) {
        // A counter at its limit, or a full pipe, already holds a wake-up: nothing is lost.
        #[cfg(target_os = "linux")]
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        #[cfg(not(target_os = "linux"))]
        let _ = (&self.tx).write(&[1]);
    }
}

/// What ended a [`wait`] (or a parked connection's stay with the watcher).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Ready {
    /// The socket has input (or an end of stream, or an error) to read.
    pub(crate) socket: bool,
    /// The waker fired (and was drained: the caller must act on it now).
    pub(crate) woken: bool,
}

/// Waits until the socket is readable (if `want_input`), the waker fires, or `deadline`
/// passes (no deadline: no limit).
pub(crate) fn wait(
    stream: &TcpStream,
    want_input: bool,
    waker: &PipeWake,
    deadline: Option<Instant>,
) -> io::Result<Ready> {
    let timeout = deadline.map(timeout_until);
    let socket_events = if want_input {
        PollFlags::IN
    } else {
        PollFlags::empty()
    };
    let mut fds = [
        PollFd::new(stream, socket_events),
        PollFd::from_borrowed_fd(waker.readable(), PollFlags::IN),
    ];
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(Ready::default()),
        Err(e) => return Err(e.into()),
    }
    let socket = want_input && !fds[0].revents().is_empty();
    let woken = !fds[1].revents().is_empty();
    if woken {
        waker.drain();
    }
    Ok(Ready { socket, woken })
}

/// The time left until `deadline`, for `poll` (and the watcher's `epoll_wait`).
pub(crate) fn timeout_until(deadline: Instant) -> Timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    // Round up: waking a little late beats spinning on a sub-millisecond remainder.
    let left = left.max(Duration::from_millis(1));
    Timespec {
        tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(left.subsec_nanos()),
    }
}

/// Waits until `listener` has a connection to accept (`true`), or `waker` fired or
/// `deadline` passed (`false`; also on a signal's interruption).
pub(crate) fn wait_accept(
    listener: &TcpListener,
    waker: &PipeWake,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    let timeout = deadline.map(timeout_until);
    let mut fds = [
        PollFd::new(listener, PollFlags::IN),
        PollFd::from_borrowed_fd(waker.readable(), PollFlags::IN),
    ];
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    if !fds[1].revents().is_empty() {
        waker.drain();
    }
    Ok(!fds[0].revents().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    #[test]
    fn a_wait_says_whether_the_waker_fired_and_consumes_it() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let waker = PipeWake::new().expect("waker");
        let soon = || Some(Instant::now() + Duration::from_millis(20));
        let quiet = wait(&stream, true, &waker, soon()).expect("wait");
        assert!(!quiet.woken && !quiet.socket, "{quiet:?}");
        waker.wake();
        let woken = wait(&stream, true, &waker, soon()).expect("wait");
        assert!(woken.woken && !woken.socket, "{woken:?}");
        // Drained: the caller that got `woken` is the only one told.
        let after = wait(&stream, true, &waker, soon()).expect("wait");
        assert!(!after.woken, "{after:?}");
    }
}
