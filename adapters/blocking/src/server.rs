//! Blocking server: an accept thread and one thread per connection, bounded in number.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vserv_core::session::refusal;
use vserv_core::{CloseCode, Connection, ServerIdentity};
use vserv_service::{ConnectionLimiter, ServerOptions, Service, Session};
use vserv_store::rng::os_rng;

/// How often an idle connection thread checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// How often a connection waiting for input checks whether a delivery of its session
/// ended (its answer then leaves): the longest a finished `send` waits for its answer.
const DELIVERY_POLL: Duration = Duration::from_millis(5);
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
}

/// A running server; dropping it without `shutdown` leaves it running until process exit.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the listening socket. Deliveries run on threads of their own
    /// ([`Service::with_background_deliveries`]): a `send` whose hook or copy takes long
    /// does not hold its connection's other requests.
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
            service: service.with_background_deliveries(),
            options,
            shutdown: AtomicBool::new(false),
            active: AtomicUsize::new(0),
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
        let (handoff, inbox) = mpsc::channel::<TcpStream>();
        let pool = Arc::new(Pool {
            inbox: Mutex::new(inbox),
            idle: AtomicUsize::new(0),
        });
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        // Per-IP connection rate limit (owned by this loop; see `vserv_service::limits`).
        let mut limiter = self
            .shared
            .service
            .policy()
            .connection_rate
            .map(ConnectionLimiter::new);
        for stream in self.listener.incoming() {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            workers.retain(|w| !w.is_finished());
            match stream {
                Ok(stream) => {
                    if let Some(limiter) = limiter.as_mut()
                        && let Ok(peer) = stream.peer_addr()
                        && !limiter.admit(peer.ip(), vserv_service::unix_now())
                    {
                        refuse(stream, "connection rate limit exceeded", peer);
                        continue;
                    }
                    if let Some(worker) = self.accept(stream, &pool, &handoff) {
                        workers.push(worker);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // Idle workers see the channel close and exit; busy ones finish their connection.
        drop(handoff);
        for worker in workers {
            let _ = worker.join();
        }
    }

    /// Admits one connection: refuses it at the limit, else hands it to an idle worker or
    /// starts a new one (returned, to be joined at shutdown).
    fn accept(
        &self,
        mut stream: TcpStream,
        pool: &Arc<Pool>,
        handoff: &Sender<TcpStream>,
    ) -> Option<JoinHandle<()>> {
        let peer = stream.peer_addr().ok();
        let shared = &self.shared;
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.options.max_connections {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(?peer, "connection limit reached; refusing");
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
            let _ = stream.write_all(&refusal(CloseCode::Busy));
            return None;
        }
        // Claiming an idle worker commits it to take the next stream from the channel.
        if pool
            .idle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            match handoff.send(stream) {
                Ok(()) => return None,
                Err(mpsc::SendError(returned)) => stream = returned,
            }
        }
        let shared = shared.clone();
        let pool = pool.clone();
        let spawned = std::thread::Builder::new()
            .name("vserv-conn".into())
            .spawn(move || worker(stream, &shared, &pool));
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                self.shared.active.fetch_sub(1, Ordering::SeqCst);
                tracing::error!(error = %e, "could not start a connection thread");
                None
            }
        }
    }
}

/// Sends the plaintext `Busy` refusal (best effort, bounded in time) and drops `stream`.
fn refuse(mut stream: TcpStream, why: &str, peer: SocketAddr) {
    tracing::warn!(%peer, "{why}; refusing");
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(&refusal(CloseCode::Busy));
}

/// Connection threads kept for reuse: starting a thread per connection cost about a tenth of
/// the CPU of a whole session (measured by `vserv bench handshake --breakdown`).
struct Pool {
    inbox: Mutex<Receiver<TcpStream>>,
    /// Workers waiting for a connection and not yet claimed by the accept loop.
    idle: AtomicUsize,
}

/// How long a connection waiting for its `rput`s' commit waits before it looks for new
/// input again.
const COMMIT_POLL: Duration = Duration::from_micros(200);

/// How long a finished worker waits for another connection before exiting.
const WORKER_KEEP: Duration = Duration::from_secs(5);

/// Serves `stream`, then further connections handed over by the accept loop, until none
/// comes for [`WORKER_KEEP`] or the server shuts down.
fn worker(mut stream: TcpStream, shared: &Shared, pool: &Pool) {
    loop {
        let peer = stream.peer_addr().ok();
        match serve(stream, shared) {
            Ok(()) => tracing::debug!(?peer, "connection finished"),
            Err(e) => tracing::debug!(?peer, error = %e, "connection ended with an error"),
        }
        shared.active.fetch_sub(1, Ordering::SeqCst);
        pool.idle.fetch_add(1, Ordering::SeqCst);
        stream = loop {
            let next = match pool.inbox.lock() {
                Ok(inbox) => inbox.recv_timeout(WORKER_KEEP),
                Err(_) => return,
            };
            match next {
                Ok(next) => break next,
                Err(RecvTimeoutError::Timeout) => {
                    // Leave only if the accept loop has not claimed us meanwhile; if it has,
                    // a stream is on its way and this worker must take it.
                    if pool
                        .idle
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
    }
}

/// Drives one server connection to its end. Protocol errors end the connection (after its
/// close record is flushed) and are returned for logging.
fn serve(mut stream: TcpStream, shared: &Shared) -> Result<(), Box<dyn std::error::Error>> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let peer = stream.peer_addr().ok();
    // The address's unauthenticated sessions are capped (`Policy::max_unauthenticated_per_ip`);
    // the slot is the session's until it logs in.
    let slot = match peer {
        Some(peer) => match shared.service.admit_unauthenticated(peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                refuse(
                    stream,
                    "too many unauthenticated connections from this address",
                    peer,
                );
                return Ok(());
            }
        },
        None => None,
    };
    let rng = os_rng()?;
    let mut conn = Connection::server(
        shared.options.config.clone(),
        shared.identity.clone(),
        rng,
        Instant::now(),
    );
    let mut session = Session::new(peer.map(|a| a.ip()));
    if let Some(slot) = slot {
        session.hold_unauthenticated(slot);
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut failure = None;
    loop {
        if let Err(e) =
            shared
                .service
                .drive_pipelined(&mut session, &mut conn, vserv_service::unix_now_ms())
        {
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
        if shared.shutdown.load(Ordering::SeqCst) {
            if let Err(e) = shared.service.finish_pending(&mut session, &mut conn) {
                failure.get_or_insert(e);
            }
            conn.close(CloseCode::Shutdown, "server shutting down");
            continue;
        }
        if session.has_pending() {
            // rputs are being committed: decode the next input meanwhile (its rputs join a
            // later commit) as soon as it arrives, polling between short waits for the
            // commit, so the ledger's committer is never idle while input waits.
            let result = match crate::feed::read_ready(&mut stream, &mut conn, &mut buf)? {
                Some(result) => result,
                None => shared
                    .service
                    .complete_within(&mut session, &mut conn, COMMIT_POLL)
                    .map(|_| ()),
            };
            if let Err(e) = result {
                failure.get_or_insert(e);
            }
            continue;
        }
        let poll = if session.delivering() {
            DELIVERY_POLL
        } else {
            SHUTDOWN_POLL
        };
        let (_, result) = crate::feed::read_into(&mut stream, &mut conn, &mut buf, Some(poll))?;
        if let Err(e) = result {
            failure.get_or_insert(e);
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
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
    /// waits for all threads to finish.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
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
