//! Async server: an accept task and one task per connection, bounded in number, on a
//! `smol::Executor` driven by background threads.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use async_net::{TcpListener, TcpStream};
use futures_lite::AsyncWriteExt;
use futures_lite::future;
use smol::Executor;
use smol::channel::{Receiver, Sender};
use vserv_core::wire::RefusedLimit;
use vserv_core::{CloseCode, Connection, ServerIdentity};
use vserv_pool::WorkPool;
use vserv_service::limits::{BUSY_RETRY_SECS, busy_refusal};
use vserv_service::system::os_rng;
use vserv_service::work::{Wake, WakeSet};
use vserv_service::{ConnectionLimiter, Dial, ServerOptions, Service, Session};

use crate::quiet;

/// How long a closing connection may take to flush its final close record.
const CLOSE_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// How long writing a `Busy` refusal to a connection beyond the limit may take.
const REFUSAL_WRITE_LIMIT: Duration = Duration::from_millis(500);

/// Executor threads a server runs unless [`Server::threads`] says otherwise. One: the
/// thread that waits in the reactor then runs the task it wakes itself, so a request costs
/// no wake-up of another thread (with two, each request paid one or two cross-thread
/// wake-ups: 45 µs round trips against 18 µs on the blocking runtime here).
pub const DEFAULT_THREADS: usize = 1;

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    threads: usize,
}

/// State every task of one server shares.
struct Shared {
    identity: Arc<ServerIdentity>,
    service: Service,
    options: ServerOptions,
    active: AtomicUsize,
    /// Set when the server stops (before every connection's waker is woken).
    stopping: AtomicBool,
    /// The wakers of the connections being served, by number, to wake them for a
    /// shutdown: a waiting connection then watches only its socket, its timer and its own
    /// waker. Each is removed when its connection ends, so nothing of a finished connection
    /// stays allocated.
    wakers: WakeSet<ChannelWake>,
    /// The service's runner, waited for once every connection ended.
    pool: WorkPool,
}

impl Shared {
    /// Marks the server as stopping and wakes every connection being served.
    fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wakers.wake_all();
    }
}

/// A running server. [`ServerHandle::shutdown`] (or dropping the handle) stops it: no new
/// connections are accepted, every connection is closed with an authenticated `Shutdown`
/// close, and the call returns once all connection tasks and executor threads, and the
/// blocking work they started, have ended.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Closed to ask the accept loop and every connection to stop.
    shutdown: Sender<()>,
    /// Closed to release the helper executor threads once the driver thread is done.
    release: Sender<()>,
    /// Runs the accept task; ends when it and every connection task have finished.
    driver: Option<JoinHandle<()>>,
    /// Extra threads running the executor.
    helpers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds the listening socket. The service's blocking work (commits, password hashes,
    /// file I/O, deliveries and their hooks) runs on a [`WorkPool`], never on the executor
    /// threads that serve connections.
    pub fn bind(
        addr: impl ToSocketAddrs,
        identity: Arc<ServerIdentity>,
        service: Service,
        options: ServerOptions,
    ) -> io::Result<Server> {
        Self::with_listener(
            std::net::TcpListener::bind(addr)?,
            identity,
            service,
            options,
        )
    }

    /// Like [`Server::bind`] on a listener the caller bound already (so that it can bind
    /// before creating anything, and fail early on an address it cannot use).
    pub fn with_listener(
        listener: std::net::TcpListener,
        identity: Arc<ServerIdentity>,
        service: Service,
        options: ServerOptions,
    ) -> io::Result<Server> {
        let listener = TcpListener::try_from(listener)?;
        let pool = WorkPool::default();
        let shared = Shared {
            identity,
            service: service.with_runner(Arc::new(pool.clone())),
            pool,
            options,
            active: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            wakers: WakeSet::default(),
        };
        Ok(Server {
            listener,
            shared: Arc::new(shared),
            threads: DEFAULT_THREADS,
        })
    }

    /// Runs the executor on `threads` threads (at least 1; default [`DEFAULT_THREADS`]).
    /// More threads spread CPU-heavy handshakes over cores at the price of a cross-thread
    /// wake-up on most requests (higher latency).
    pub fn threads(mut self, threads: usize) -> Server {
        self.threads = threads.max(1);
        self
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs the server on a new executor driven by background threads (see
    /// [`Server::threads`]).
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let addr = self.local_addr()?;
        let shared = self.shared.clone();
        let executor = Arc::new(Executor::new());
        let (shutdown, shutdown_rx) = smol::channel::bounded::<()>(1);
        let (release, release_rx) = smol::channel::bounded::<()>(1);
        let accept = executor.spawn(quiet::marked(accept_loop(
            self.listener,
            self.shared,
            executor.clone(),
            shutdown_rx,
        )));
        let threads = self.threads;
        let mut handle = ServerHandle {
            addr,
            shared,
            shutdown,
            release,
            driver: None,
            helpers: Vec::new(),
        };
        let ex = executor.clone();
        handle.driver = Some(
            std::thread::Builder::new()
                .name("vserv-smol".into())
                .spawn(move || {
                    smol::block_on(ex.run(future::or(accept, quiet::release_when_quiet())))
                })?,
        );
        for _ in 1..threads {
            let ex = executor.clone();
            let release = release_rx.clone();
            let spawned = std::thread::Builder::new()
                .name("vserv-smol".into())
                .spawn(move || {
                    let released = async move {
                        let _ = release.recv().await;
                    };
                    smol::block_on(ex.run(future::or(released, quiet::release_when_quiet())))
                });
            match spawned {
                Ok(thread) => handle.helpers.push(thread),
                // One thread is enough to serve; run without the helper.
                Err(e) => tracing::warn!(error = %e, "could not start a helper executor thread"),
            }
        }
        Ok(handle)
    }
}

/// What the accept loop woke for.
enum Accepted {
    Stream(io::Result<(TcpStream, SocketAddr)>),
    Shutdown,
    DutyDue,
}

/// Accepts connections until shutdown, then waits for every connection task to end.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    executor: Arc<Executor<'static>>,
    shutdown: Receiver<()>,
) {
    // Every connection task holds a clone of `done`; `all_done` reports when none is left.
    let (done, all_done) = smol::channel::bounded::<()>(1);
    // Per-IP connection rate limit (owned by this task; see `vserv_service::limits`).
    let mut limiter = shared
        .service
        .policy()
        .connection_rate
        .map(ConnectionLimiter::new);
    // Woken when a replication dial ended, to take the next one when it is due.
    let (duty_wake, duty_woken) = smol::channel::bounded(1);
    // A sender kept here: a service that drops its waker (it has no duties) must not
    // close the channel, whose `recv` would then return at once, over and over, and keep
    // this task spinning (on one executor thread, starving every connection).
    let _kept = duty_wake.clone();
    shared
        .service
        .set_duty_waker(Arc::new(ChannelWake(duty_wake)));
    loop {
        if shutdown.is_closed() {
            break;
        }
        // The node's timed duties (the partial-upload sweep, the replication dials) when
        // due; the timer races the accept.
        let now = Instant::now();
        let due = shared.service.next_duty(now);
        if due.is_some_and(|at| at <= now) {
            shared
                .service
                .run_due_duties(now, std::time::SystemTime::now());
            while let Some(peer) = shared.service.poll_dial(now) {
                let (shared, shutdown, done) = (shared.clone(), shutdown.clone(), done.clone());
                executor
                    .spawn(quiet::marked(async move {
                        if let Err(e) = dial(&peer, &shared, &shutdown).await {
                            tracing::debug!(address = %peer.address, error = %e, "replication link ended");
                        }
                        drop(done);
                    }))
                    .detach();
            }
            continue;
        }
        let accepted = future::or(
            async { Accepted::Stream(listener.accept().await) },
            future::or(
                async {
                    let _ = shutdown.recv().await;
                    Accepted::Shutdown
                },
                async {
                    future::or(sleep_until_opt(due), async {
                        let _ = duty_woken.recv().await;
                    })
                    .await;
                    Accepted::DutyDue
                },
            ),
        )
        .await;
        match accepted {
            Accepted::Shutdown => break,
            Accepted::DutyDue => continue,
            Accepted::Stream(Ok((mut stream, peer))) => {
                if let Some(limiter) = limiter.as_mut()
                    && let Err(wait) = limiter.admit_or_wait(peer.ip(), vserv_service::unix_now())
                {
                    tracing::warn!(%peer, "connection rate limit exceeded; refusing");
                    let refused = busy_refusal(RefusedLimit::ConnectionRate, wait);
                    let _ = write_until(&mut stream, &refused, sleep(REFUSAL_WRITE_LIMIT)).await;
                    continue;
                }
                accept(stream, peer, &shared, &executor, &shutdown, &done).await;
            }
            Accepted::Stream(Err(e)) => {
                tracing::warn!(error = %e, "accept failed");
                Timer::after(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    drop(done);
    // Fails (closed) once every connection task has dropped its `done` sender.
    let _ = all_done.recv().await;
}

/// Starts a task for `stream`, or refuses it with `Busy` beyond the connection limit.
async fn accept(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    executor: &Executor<'static>,
    shutdown: &Receiver<()>,
    done: &Sender<()>,
) {
    if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.options.max_connections {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(%peer, "connection limit reached; refusing");
        let refused = busy_refusal(RefusedLimit::MaxConnections, BUSY_RETRY_SECS);
        let _ = write_until(&mut stream, &refused, sleep(REFUSAL_WRITE_LIMIT)).await;
        return;
    }
    // From here on the guard gives the slot back, whatever happens to the task.
    let guard = Slot {
        shared: shared.clone(),
        _done: done.clone(),
    };
    let shutdown = shutdown.clone();
    executor
        .spawn(quiet::marked(async move {
            match serve(stream, &guard.shared, &shutdown).await {
                Ok(()) => tracing::debug!(%peer, "connection finished"),
                Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
            }
            drop(guard);
        }))
        .detach();
}

/// One connection slot: releases the count (and the accept loop's wait) when dropped.
struct Slot {
    shared: Arc<Shared>,
    _done: Sender<()>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a connection task ended early; logged, never propagated beyond the connection.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(#[from] vserv_core::Error),
    #[error("the peer stopped reading; write abandoned")]
    WriteStalled,
}

/// What ended a wait for input.
enum Woken {
    /// The socket has input (or an end of stream, or an error) to read.
    Readable(io::Result<()>),
    Timer,
    /// The session's waker fired: completions wait in its mailbox (or the server stops).
    Session,
}

/// A session's waker: a one-slot channel its connection task waits on.
struct ChannelWake(Sender<()>);

impl Wake for ChannelWake {
    fn wake(&self) {
        // A full channel already holds a wake-up.
        let _ = self.0.try_send(());
    }
}

/// Drives one server connection to its end. Protocol errors end the connection (after its
/// close record is flushed) and are returned for logging.
async fn serve(
    mut stream: TcpStream,
    shared: &Shared,
    shutdown: &Receiver<()>,
) -> Result<(), ConnError> {
    stream.set_nodelay(true)?;
    let peer = stream.peer_addr().ok();
    // The address's unauthenticated sessions are capped (`Policy::max_unauthenticated_per_ip`);
    // the slot is the session's until it logs in.
    let slot = match peer {
        Some(peer) => match shared.service.admit_unauthenticated(peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                tracing::warn!(%peer, "too many unauthenticated connections from this address; refusing");
                let refused = busy_refusal(RefusedLimit::Unauthenticated, BUSY_RETRY_SECS);
                let _ = write_until(&mut stream, &refused, sleep(REFUSAL_WRITE_LIMIT)).await;
                return Ok(());
            }
        },
        None => None,
    };
    let rng = os_rng()?;
    let conn = Connection::server(
        shared.options.config.clone(),
        shared.identity.clone(),
        rng,
        Instant::now(),
    );
    let (wake, woken) = smol::channel::bounded(1);
    let waker = Arc::new(ChannelWake(wake));
    let _watched = shared.wakers.watch(&waker);
    let mut session = Session::with_waker(peer.map(|a| a.ip()), waker);
    if let Some(slot) = slot {
        session.hold_unauthenticated(slot);
    }
    run(stream, conn, session, woken, shared, shutdown).await
}

/// Connects to a peer for `dial` and drives the replication link to its end; a connection
/// that cannot be made is handed back to the service (which dials again later).
async fn dial(dial: &Dial, shared: &Shared, shutdown: &Receiver<()>) -> Result<(), ConnError> {
    let connect = async {
        let addr = smol::net::resolve(dial.address.as_str())
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        TcpStream::connect(addr).await
    };
    let timeout = async {
        sleep(DIAL_TIMEOUT).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "dial timed out"))
    };
    let stream = match future::or(connect, timeout).await {
        Ok(stream) => stream,
        Err(e) => {
            shared.service.dial_failed(dial);
            return Err(e.into());
        }
    };
    stream.set_nodelay(true)?;
    let conn = Connection::client(shared.options.config.clone(), os_rng()?, Instant::now());
    let (wake, woken) = smol::channel::bounded(1);
    let waker = Arc::new(ChannelWake(wake));
    let _watched = shared.wakers.watch(&waker);
    let session = shared.service.dial_session(dial, waker);
    run(stream, conn, session, woken, shared, shutdown).await
}

/// How long a dial waits for the peer to accept the connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A deadline this much later than the armed timer re-arms it; a smaller move lets the
/// timer fire early (see [`run`]).
const REARM_LATER: Duration = Duration::from_secs(1);

/// Drives `conn` over `stream` with `session` (whose waker feeds `woken`) until it closes.
///
/// A wait re-arms the connection's one [`Timer`] only when its deadline moves earlier than
/// the one armed, or more than [`REARM_LATER`] later: the idle deadline moves later with
/// every request, and arming a timer costs the reactor a wake-up, so a slightly later
/// deadline lets the armed timer fire early (a spurious wake the loop absorbs) instead.
async fn run(
    mut stream: TcpStream,
    mut conn: Connection,
    mut session: Session,
    woken: Receiver<()>,
    shared: &Shared,
    shutdown: &Receiver<()>,
) -> Result<(), ConnError> {
    let io: Arc<Async<std::net::TcpStream>> = stream.clone().into();
    let mut out = Vec::new();
    let mut failure = None;
    let mut timer = Timer::never();
    let mut armed: Option<Instant> = None;
    // Whether the session was asked to close for a shutdown.
    let mut closing = false;
    loop {
        if !closing && shared.stopping.load(Ordering::SeqCst) {
            // The session closes the connection once everything in flight is answered.
            session.close_when_settled(CloseCode::Shutdown, "server shutting down");
            closing = true;
        }
        if let Err(e) = shared.service.drive(
            &mut session,
            &mut conn,
            Instant::now(),
            vserv_service::unix_now_ms(),
        ) {
            failure.get_or_insert(e);
            conn.close(CloseCode::ProtocolError, "internal error");
        }
        out.clear();
        conn.poll_transmit(&mut out);
        if !out.is_empty() {
            // A write may not outlive the connection's own deadline nor a shutdown; the
            // final close record gets a short grace period.
            let written = match conn.poll_timeout() {
                Some(deadline) => {
                    let stop = future::or(sleep_until(deadline), stopped(shutdown));
                    write_until(&mut stream, &out, stop).await
                }
                None => write_until(&mut stream, &out, sleep(CLOSE_FLUSH_GRACE)).await,
            };
            written?;
            if out.capacity() > OUT_KEEP {
                out = Vec::new();
            }
        }
        if conn.is_closed() {
            break;
        }
        if let Some(deadline) = earliest(conn.poll_timeout(), session.poll_timeout())
            && armed.is_none_or(|at| deadline < at || deadline > at + REARM_LATER)
        {
            timer.set_at(deadline);
            armed = Some(deadline);
        }
        let want_input = session.wants_input();
        // Read before waiting: a readiness wait reports only events after it starts, so
        // input that came in meanwhile must be taken first.
        if want_input && let Some(fed) = read_once(&io, &mut conn)? {
            if let Err(e) = fed {
                failure.get_or_insert(e);
            }
            continue;
        }
        let read = async {
            if want_input {
                Woken::Readable(io.readable().await)
            } else {
                future::pending().await
            }
        };
        let woken = future::or(
            read,
            future::or(
                async {
                    if armed.is_some() {
                        (&mut timer).await;
                    } else {
                        future::pending::<()>().await;
                    }
                    Woken::Timer
                },
                async {
                    let _ = woken.recv().await;
                    Woken::Session
                },
            ),
        )
        .await;
        let result = match woken {
            Woken::Readable(Ok(())) => read_once(&io, &mut conn)?.unwrap_or(Ok(())),
            Woken::Readable(Err(e)) => return Err(e.into()),
            Woken::Timer => {
                armed = None;
                if conn.poll_timeout().is_some_and(|d| d <= Instant::now()) {
                    conn.handle_timeout(Instant::now())
                } else {
                    // The session's own timer (the next drive takes it), or a deadline
                    // that has moved later since the timer was armed.
                    Ok(())
                }
            }
            // Completions wait in the session's mailbox, or the server is stopping: the
            // next turn of the loop takes them.
            Woken::Session => Ok(()),
        };
        if let Err(e) = result {
            failure.get_or_insert(e);
        }
    }
    linger_close(&mut stream).await;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The most a connection reads at once, into its executor thread's buffer.
const READ_CHUNK: usize = 64 * 1024;

/// An output buffer that grew beyond this (a bulk download's records) is given back once
/// written; smaller ones are kept for the next reply.
const OUT_KEEP: usize = 64 * 1024;

thread_local! {
    /// The executor thread's read buffer: a connection reads into it and hands the bytes to
    /// its `Connection` at once, so no connection holds a read buffer while it waits.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads once from `io` without blocking and feeds what came to `conn` (bytes, or the end
/// of the stream). `None`: nothing to read yet. The outer error is the socket's, the inner
/// one the connection's verdict.
fn read_once(
    io: &Async<std::net::TcpStream>,
    conn: &mut Connection,
) -> io::Result<Option<Result<(), vserv_core::Error>>> {
    READ_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < READ_CHUNK {
            buf.resize(READ_CHUNK, 0);
        }
        match (&mut io.get_ref()).read(&mut buf[..]) {
            Ok(0) => Ok(Some(conn.handle_eof(Instant::now()))),
            Ok(n) => {
                Ok(Some(buf.get(..n).map_or(Ok(()), |data| {
                    conn.handle_input(Instant::now(), data)
                })))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    })
}

/// Writes all of `data` unless `stop` completes first.
async fn write_until(
    stream: &mut TcpStream,
    data: &[u8],
    stop: impl Future<Output = ()>,
) -> Result<(), ConnError> {
    future::or(
        async { stream.write_all(data).await.map_err(ConnError::Io) },
        async {
            stop.await;
            Err(ConnError::WriteStalled)
        },
    )
    .await
}

/// How long a closed connection keeps draining its client's input.
const LINGER: Duration = Duration::from_millis(200);
/// The most bytes drained before giving up (a client still streaming gets its reset).
const MAX_DRAIN: usize = 256 * 1024;

/// Closes the connection so that its last record arrives: FIN first, then the client's
/// input read and discarded until it closes too (or [`LINGER`] passes, or [`MAX_DRAIN`]
/// bytes came), then the socket shut down. Dropping a socket with unread input makes the
/// kernel reset the connection, and the client's next write then fails with a broken pipe
/// instead of it reading the close (as the blocking server's `linger.rs`, which tests it).
async fn linger_close(stream: &mut TcpStream) {
    use futures_lite::AsyncReadExt;
    if stream.shutdown(std::net::Shutdown::Write).is_ok() {
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut drained = 0;
            while drained < MAX_DRAIN {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        };
        future::or(drain, sleep(LINGER)).await;
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Completes once the shutdown channel is closed.
async fn stopped(shutdown: &Receiver<()>) {
    // Nothing is ever sent: `recv` only returns when the channel closes.
    let _ = shutdown.recv().await;
}

/// Completes after `duration`.
async fn sleep(duration: Duration) {
    Timer::after(duration).await;
}

/// Completes at `deadline`.
async fn sleep_until(deadline: Instant) {
    Timer::at(deadline).await;
}

/// Completes at `deadline`, or never without one.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => Timer::at(deadline).await,
        None => Timer::never().await,
    };
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of connections being served right now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes every connection with an authenticated `Shutdown` close, and
    /// waits for all tasks and executor threads, and the blocking work they started, to
    /// finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop_all();
        self.shutdown.close();
        if let Some(driver) = self.driver.take()
            && driver.join().is_err()
        {
            tracing::error!("the server executor thread panicked");
        }
        self.release.close();
        for helper in self.helpers.drain(..) {
            if helper.join().is_err() {
                tracing::error!("a server executor thread panicked");
            }
        }
        // What the connections handed to the runner (a commit's index bulk, a delivery)
        // ends before the server counts as stopped.
        self.shared.pool.wait_idle();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
