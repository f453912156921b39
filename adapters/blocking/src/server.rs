//! Blocking server: an accept thread and one thread per connection, bounded in number.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use vserv_core::wire::RefusedLimit;
use vserv_core::{CloseCode, Connection, ServerIdentity};
use vserv_service::limits::{BUSY_RETRY_SECS, busy_refusal};
use vserv_service::system::os_rng;
use vserv_service::work::WakeSet;
use vserv_service::{ConnectionLimiter, Dial, ServerOptions, Service, Session};

use crate::idle::IdleThreads;
use crate::live::LiveThreads;
use crate::pool::WorkPool;
use crate::read_buf::ReadBuf;
use crate::wake::{self, PipeWake};

/// A peer that accepts none of our bytes for this long is dropped, so a client that stops
/// reading cannot hold a thread (and a connection slot) forever or stall shutdown.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    identity: Arc<ServerIdentity>,
    service: Service,
    options: ServerOptions,
    shutdown: AtomicBool,
    active: AtomicUsize,
    /// The wakers of the connections being served, by number, to wake them for a
    /// shutdown. Each is removed when its connection ends, so nothing of a finished
    /// connection stays allocated (a small leftover would pin its heap page).
    wakers: WakeSet<PipeWake>,
}

/// A running server; dropping it without `shutdown` leaves it running until process exit.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the listening socket. The service's blocking work (commits, password hashes,
    /// file I/O, deliveries and their hooks) runs on a [`WorkPool`], off the connection
    /// threads: a `send` whose hook takes long holds no other request.
    pub fn bind(
        addr: impl ToSocketAddrs,
        identity: Arc<ServerIdentity>,
        service: Service,
        options: ServerOptions,
    ) -> io::Result<Server> {
        Self::with_listener(TcpListener::bind(addr)?, identity, service, options)
    }

    /// Like [`Server::bind`] on a listener the caller bound already (so that it can bind
    /// before creating anything, and fail early on an address it cannot use).
    pub fn with_listener(
        listener: TcpListener,
        identity: Arc<ServerIdentity>,
        service: Service,
        options: ServerOptions,
    ) -> io::Result<Server> {
        let shared = Shared {
            identity,
            service: service.with_runner(Arc::new(WorkPool::default())),
            options,
            shutdown: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            wakers: WakeSet::default(),
        };
        Ok(Server {
            listener,
            shared: Arc::new(shared),
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs the accept loop on a background thread.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let addr = self.local_addr()?;
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("vserv-accept".into())
            .spawn(move || self.run())?;
        Ok(ServerHandle {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// Runs the accept loop on this thread until shutdown; waits for its connections to end.
    pub fn run(self) {
        let pool: Arc<IdleThreads<TcpStream>> = Arc::default();
        let live = LiveThreads::default();
        // Replication link threads, joined at shutdown (connection threads are counted in
        // `live` instead).
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        // Per-IP connection rate limit (owned by this loop; see `vserv_service::limits`).
        let mut limiter = self
            .shared
            .service
            .policy()
            .connection_rate
            .map(ConnectionLimiter::new);
        let service = &self.shared.service;
        let duty_waker = match PipeWake::new() {
            Ok(waker) => Arc::new(waker),
            Err(e) => {
                tracing::error!(error = %e, "no waker for the accept loop; not serving");
                return;
            }
        };
        service.set_duty_waker(duty_waker.clone());
        let _watched = self.shared.wakers.watch(&duty_waker);
        loop {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            // The node's timed duties (the partial-upload sweep) go to the work pool when
            // due; between them this thread waits for connections only.
            let now = Instant::now();
            let due = service.next_duty(now);
            if due.is_some_and(|at| at <= now) {
                service.run_due_duties(now, SystemTime::now());
                while let Some(dial) = service.poll_dial(now) {
                    if let Some(worker) = self.start_dial(dial) {
                        workers.push(worker);
                    }
                }
                continue;
            }
            match wake::wait_accept(&self.listener, &duty_waker, due) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "waiting for connections failed; stopping");
                    break;
                }
            }
            let stream = self.listener.accept().map(|(stream, _)| stream);
            if self.shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            workers.retain(|w| !w.is_finished());
            match stream {
                Ok(stream) => {
                    if let Some(limiter) = limiter.as_mut()
                        && let Ok(peer) = stream.peer_addr()
                        && let Err(wait) =
                            limiter.admit_or_wait(peer.ip(), vserv_service::unix_now())
                    {
                        let refused = busy_refusal(RefusedLimit::ConnectionRate, wait);
                        refuse(stream, "connection rate limit exceeded", peer, &refused);
                        continue;
                    }
                    self.accept(stream, &pool, &live);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // Idle workers leave at once; busy ones finish their connection.
        pool.close();
        for worker in workers {
            let _ = worker.join();
        }
        live.wait_all();
    }

    /// Starts a thread that dials a peer and drives the link (returned, to be joined at
    /// shutdown); `None` if no thread could start (the dial is handed back).
    fn start_dial(&self, peer: Dial) -> Option<JoinHandle<()>> {
        let shared = self.shared.clone();
        let handed_back = peer.clone();
        let spawned = std::thread::Builder::new()
            .name("vserv-link".into())
            .spawn(move || {
                if let Err(e) = dial(&peer, &shared) {
                    tracing::debug!(address = %peer.address, error = %e, "replication link ended");
                }
            });
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "could not start a link thread");
                self.shared.service.dial_failed(&handed_back);
                None
            }
        }
    }

    /// Admits one connection: refuses it at the limit, else hands it to an idle worker or
    /// starts a new one (detached, counted in `live`: a shutdown waits for it).
    fn accept(
        &self,
        mut stream: TcpStream,
        pool: &Arc<IdleThreads<TcpStream>>,
        live: &LiveThreads,
    ) {
        let peer = stream.peer_addr().ok();
        let shared = &self.shared;
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.options.max_connections {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(?peer, "connection limit reached; refusing");
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
            let _ = stream.write_all(&busy_refusal(RefusedLimit::MaxConnections, BUSY_RETRY_SECS));
            return;
        }
        match pool.hand(stream) {
            Ok(()) => return,
            Err(returned) => stream = returned,
        }
        let shared = shared.clone();
        let pool = pool.clone();
        let token = live.enter();
        let spawned = std::thread::Builder::new()
            .name("vserv-conn".into())
            .spawn(move || {
                let _token = token;
                worker(stream, &shared, &pool);
            });
        // Dropping the handle detaches the thread, so its stack is freed when it ends.
        if let Err(e) = spawned {
            self.shared.active.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "could not start a connection thread");
        }
    }
}

/// Sends the plaintext `refused` frame (best effort, bounded in time) and drops `stream`.
fn refuse(mut stream: TcpStream, why: &str, peer: SocketAddr, refused: &[u8]) {
    tracing::warn!(%peer, "{why}; refusing");
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(refused);
}

/// How long a finished connection thread waits for another connection before exiting.
/// Starting a thread per connection cost about a tenth of the CPU of a whole session
/// (measured by `vserv bench handshake --breakdown`), so threads are reused; each idle one
/// leaves on its own clock ([`IdleThreads`]), so a burst's threads are gone this long after
/// it.
const WORKER_KEEP: Duration = Duration::from_secs(5);

/// Serves `stream`, then further connections handed over by the accept loop, until none
/// comes for [`WORKER_KEEP`] or the server shuts down.
fn worker(mut stream: TcpStream, shared: &Shared, pool: &IdleThreads<TcpStream>) {
    loop {
        let peer = stream.peer_addr().ok();
        match serve(stream, shared) {
            Ok(()) => tracing::debug!(?peer, "connection finished"),
            Err(e) => tracing::debug!(?peer, error = %e, "connection ended with an error"),
        }
        shared.active.fetch_sub(1, Ordering::SeqCst);
        match pool.park(WORKER_KEEP) {
            Some(next) => stream = next,
            None => return,
        }
    }
}

/// Drives one server connection to its end. Protocol errors end the connection (after its
/// close record is flushed) and are returned for logging.
fn serve(stream: TcpStream, shared: &Shared) -> Result<(), Box<dyn std::error::Error>> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let peer = stream.peer_addr().ok();
    let slot = match peer {
        Some(peer) => match shared.service.admit_unauthenticated(peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                refuse(
                    stream,
                    "too many unauthenticated connections from this address",
                    peer,
                    &busy_refusal(RefusedLimit::Unauthenticated, BUSY_RETRY_SECS),
                );
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
    let waker = Arc::new(PipeWake::new()?);
    let mut session = Session::with_waker(peer.map(|a| a.ip()), waker.clone());
    if let Some(slot) = slot {
        session.hold_unauthenticated(slot);
    }
    run(stream, conn, session, waker, shared)
}

/// Connects to a peer for `dial` and drives the replication link to its end; a connection
/// that cannot be made is handed back to the service (which dials again later).
fn dial(dial: &Dial, shared: &Shared) -> Result<(), Box<dyn std::error::Error>> {
    let connected = dial
        .address
        .to_socket_addrs()
        .and_then(|mut addrs| {
            addrs
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
        })
        .and_then(|addr| TcpStream::connect_timeout(&addr, DIAL_TIMEOUT));
    let stream = match connected {
        Ok(stream) => stream,
        Err(e) => {
            shared.service.dial_failed(dial);
            return Err(e.into());
        }
    };
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let conn = Connection::client(shared.options.config.clone(), os_rng()?, Instant::now());
    let waker = Arc::new(PipeWake::new()?);
    let session = shared.service.dial_session(dial, waker.clone());
    run(stream, conn, session, waker, shared)
}

/// Drives `conn` over `stream` with `session` (woken through `waker`) until it closes.
fn run(
    mut stream: TcpStream,
    mut conn: Connection,
    mut session: Session,
    waker: Arc<PipeWake>,
    shared: &Shared,
) -> Result<(), Box<dyn std::error::Error>> {
    let _watched = shared.wakers.watch(&waker);
    let mut buf = ReadBuf::default();
    let mut out = Vec::new();
    let mut failure = None;
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            session.close_when_settled(CloseCode::Shutdown, "server shutting down");
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
            stream.write_all(&out)?;
        }
        if conn.is_closed() {
            break;
        }
        let deadline = earliest(conn.poll_timeout(), session.poll_timeout());
        let want_input = session.wants_input();
        let mut ready = None;
        if buf.is_held() || out.capacity() > 0 {
            // Still busy: wait briefly with the buffers; once idle, give them back.
            let soon = Instant::now() + IDLE_AFTER;
            if deadline.is_some_and(|d| d <= soon) {
                ready = Some(wake::wait(&stream, want_input, &waker, deadline)?);
            } else {
                let first = wake::wait(&stream, want_input, &waker, Some(soon))?;
                // Woken at (or just after) `soon` is still a wake-up: the waker is
                // drained, so it must be acted on now or it is lost.
                if first.socket || first.woken || Instant::now() < soon {
                    ready = Some(first);
                } else {
                    buf.release();
                    out = Vec::new();
                }
            }
        }
        let ready = match ready {
            Some(ready) => ready,
            None => wake::wait(&stream, want_input, &waker, deadline)?,
        };
        let fed = if ready.socket {
            match stream.read(buf.space()) {
                Ok(0) => conn.handle_eof(Instant::now()),
                Ok(n) => conn.handle_input(Instant::now(), buf.filled(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                Err(e) => return Err(e.into()),
            }
        } else if conn.poll_timeout().is_some_and(|d| d <= Instant::now()) {
            conn.handle_timeout(Instant::now())
        } else {
            Ok(())
        };
        if let Err(e) = fed {
            failure.get_or_insert(e);
        }
    }
    crate::linger::close(&stream);
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// How long a connection waits for more input with its buffers before it counts as idle
/// and gives them back (an idle session then holds its thread, its state and no buffers).
const IDLE_AFTER: Duration = Duration::from_millis(100);

/// The earlier of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long a dial waits for the peer to accept the connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// waits for all threads to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wakers.wake_all();
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
