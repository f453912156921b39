//! How a blocking connection thread waits: for its socket to be readable (only when the
//! session wants input), for its session's waker, or for the connection's next timer,
//! whichever comes first, in one `poll(2)`. The waker writes a byte to a socket pair, so a
//! completion from a worker thread (or a shutdown) wakes the thread at once: no polling
//! interval anywhere.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use vserv_service::work::Wake;

/// A session's waker: one end of a socket pair the connection thread polls.
#[derive(Debug)]
pub(crate) struct PipeWake {
    tx: UnixStream,
    rx: UnixStream,
}

impl PipeWake {
    /// A fresh waker (both ends non-blocking).
    pub(crate) fn new() -> io::Result<PipeWake> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(PipeWake { tx, rx })
    }

    /// Empties the pipe (the wake-ups so far are being handled).
    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl Wake for PipeWake {
    fn wake(&self) {
        // A full pipe already holds a wake-up: nothing is lost.
        let _ = (&self.tx).write(&[1]);
    }
}

/// What ended a [`wait`].
#[derive(Debug, Default)]
pub(crate) struct Ready {
    /// The socket has input (or an end of stream, or an error) to read.
    pub(crate) socket: bool,
}

/// Waits until the socket is readable (if `want_input`), the waker fires, or `deadline`
/// passes (no deadline: no limit).
pub(crate) fn wait(
    stream: &TcpStream,
    want_input: bool,
    waker: &PipeWake,
    deadline: Option<Instant>,
) -> io::Result<Ready> {
    let timeout = deadline.map(|d| {
        let left = d.saturating_duration_since(Instant::now());
        // Round up: waking a little late beats spinning on a sub-millisecond remainder.
        let left = left.max(Duration::from_millis(1));
        Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        }
    });
    let socket_events = if want_input {
        PollFlags::IN
    } else {
        PollFlags::empty()
    };
    let mut fds = [
        PollFd::new(stream, socket_events),
        PollFd::new(&waker.rx, PollFlags::IN),
    ];
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok(Ready::default()),
        Err(e) => return Err(e.into()),
    }
    let socket = want_input && !fds[0].revents().is_empty();
    if !fds[1].revents().is_empty() {
        waker.drain();
    }
    Ok(Ready { socket })
}
