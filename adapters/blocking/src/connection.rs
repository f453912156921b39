//! One server connection's loop, on whichever thread holds it: read or time out, drive the
//! session, write, wait. A connection that stays quiet for [`IDLE_AFTER`] (no input, nothing
//! written, nothing in flight) gives its buffers back and, when it may, is parked with the
//! watcher (`watcher.rs`): its thread is free for other connections, and the connection
//! comes back to a pool thread, with everything it was, when its socket is readable, its
//! waker fires or its timer is due.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vserv_core::{CloseCode, Connection};
use vserv_service::Session;

use crate::read_buf::ReadBuf;
use crate::server::Shared;
use crate::wake::{self, PipeWake, Ready};
use crate::watcher::{Parker, Watchable};

/// How long a connection waits for more input with its buffers before it counts as idle,
/// gives them back and (when it may) is parked.
pub(crate) const IDLE_AFTER: Duration = Duration::from_millis(100);

/// A connection between two steps of its loop: all it needs, movable between threads (its
/// buffers are not part of it: a parked connection holds none). A busy connection is boxed
/// on its thread; a parked one is kept by value in the watcher's slots (`watcher.rs`), so
/// the bulk of every parked connection lives in one block that shrinks when they leave,
/// not in whichever thread's heap arena its handshake ran on.
pub(crate) struct Served {
    pub(crate) stream: TcpStream,
    pub(crate) conn: Connection,
    pub(crate) session: Session,
    pub(crate) waker: Arc<PipeWake>,
}

impl Watchable for Served {
    fn socket(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    fn waker(&self) -> &PipeWake {
        &self.waker
    }
}

/// Where idle connections go, if anywhere.
pub(crate) type Parking<'a> = Option<&'a Parker<Served>>;

/// How a [`run`] left its connection.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Closed (after its close record was flushed and the client drained for a moment).
    Ended,
    /// Parked with the watcher: it goes on on another thread later.
    Parked,
}

/// Drives `c` (first acting on `ready`, what woke it while parked) until it closes or is
/// parked. Protocol errors end the connection (after its close record is flushed) and are
/// returned for logging, as are socket failures.
pub(crate) fn run(
    mut c: Box<Served>,
    mut ready: Option<Ready>,
    shared: &Shared,
    parking: Parking<'_>,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let mut watched = Some(shared.wakers.watch(&c.waker));
    let mut buf = ReadBuf::default();
    let mut out = Vec::new();
    let mut failure = None;
    loop {
        if let Some(ready) = ready.take()
            && let Err(e) = feed(&mut c, ready, &mut buf)?
        {
            failure.get_or_insert(e);
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            c.session
                .close_when_settled(CloseCode::Shutdown, "server shutting down");
        }
        if let Err(e) = shared.service.drive(
            &mut c.session,
            &mut c.conn,
            Instant::now(),
            vserv_service::unix_now_ms(),
        ) {
            failure.get_or_insert(e);
            c.conn.close(CloseCode::ProtocolError, "internal error");
        }
        out.clear();
        c.conn.poll_transmit(&mut out);
        if !out.is_empty() {
            c.stream.write_all(&out)?;
        }
        if c.conn.is_closed() {
            break;
        }
        let deadline = earliest(c.conn.poll_timeout(), c.session.poll_timeout());
        let want_input = c.session.wants_input();
        // Busy: wait briefly with the buffers.
        let soon = Instant::now() + IDLE_AFTER;
        if deadline.is_some_and(|d| d <= soon) {
            ready = Some(wake::wait(&c.stream, want_input, &c.waker, deadline)?);
            continue;
        }
        let first = wake::wait(&c.stream, want_input, &c.waker, Some(soon))?;
        // Woken at (or just after) `soon` is still a wake-up: the waker is drained, so it
        // must be acted on now or it is lost.
        if first.socket || first.woken || Instant::now() < soon {
            ready = Some(first);
            continue;
        }
        // Idle: give the buffers back (ours and the connection's), and the thread too when
        // it may be parked.
        buf.release();
        out = Vec::new();
        c.conn.release_buffers();
        if let Some(parker) = parking
            && failure.is_none()
            && want_input
            && !c.session.in_flight()
        {
            // While parked the watcher, not this waker, hears of a shutdown (the server
            // closes the watcher, which hands every parked connection back).
            drop(watched.take());
            match parker.park(*c, deadline) {
                Ok(()) => return Ok(Outcome::Parked),
                Err(back) => {
                    *c = back;
                    watched = Some(shared.wakers.watch(&c.waker));
                }
            }
        }
        ready = Some(wake::wait(&c.stream, want_input, &c.waker, deadline)?);
    }
    crate::linger::close(&c.stream);
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(Outcome::Ended),
    }
}

/// Feeds what a wait found to the connection: input or its end, or an expired timer. The
/// outer error is the socket's; the inner one the connection's verdict.
fn feed(
    c: &mut Served,
    ready: Ready,
    buf: &mut ReadBuf,
) -> io::Result<Result<(), vserv_core::Error>> {
    Ok(if ready.socket {
        match c.stream.read(buf.space()) {
            Ok(0) => c.conn.handle_eof(Instant::now()),
            Ok(n) => c.conn.handle_input(Instant::now(), buf.filled(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => return Err(e),
        }
    } else if c.conn.poll_timeout().is_some_and(|d| d <= Instant::now()) {
        c.conn.handle_timeout(Instant::now())
    } else {
        Ok(())
    })
}

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
