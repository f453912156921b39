//! Blocking server: an accept thread, connection threads (`workers.rs`) that serve
//! connections while they are busy, and one watcher thread (`watcher.rs`) holding the idle
//! ones.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use vserv_core::wire::RefusedLimit;
use vserv_core::{Connection, ServerIdentity};
use vserv_pool::thread_cache::QuietRelease;
use vserv_service::limits::{BUSY_RETRY_SECS, busy_refusal};
use vserv_service::system::os_rng;
use vserv_service::work::WakeSet;
use vserv_service::{ConnectionLimiter, Dial, ServerOptions, Service};

use crate::WorkPool;
use crate::connection::{self, Served};
use crate::live::LiveThreads;
use crate::wake::{self, PipeWake};
use crate::watcher::Watcher;
use crate::workers::{Job, Threads};

/// A peer that accepts none of our bytes for this long is dropped, so a client that stops
/// reading cannot hold a thread (and a connection slot) forever or stall shutdown.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

/// What the accept loop, the connection threads and the handle share.
pub(crate) struct Shared {
    pub(crate) identity: Arc<ServerIdentity>,
    pub(crate) service: Service,
    pub(crate) options: ServerOptions,
    pub(crate) shutdown: AtomicBool,
    /// Connections admitted and not yet ended (parked ones included).
    pub(crate) active: AtomicUsize,
    /// The wakers of the connections being served, by number, to wake them for a
    /// shutdown. Each is removed when its connection ends, so nothing of a finished
    /// connection stays allocated (a small leftover would pin its heap page).
    pub(crate) wakers: WakeSet<PipeWake>,
    /// The service's runner, waited for once every connection ended.
    pool: WorkPool,
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
        let pool = WorkPool::default();
        let shared = Shared {
            identity,
            service: service.with_runner(Arc::new(pool.clone())),
            pool,
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

    /// Runs the accept loop on this thread until shutdown; waits for its connections, and
    /// the blocking work they started, to end.
    pub fn run(self) {
        let live = LiveThreads::default();
        let threads = Arc::new(Threads::new(self.shared.clone(), live.clone()));
        // One thread watches the idle connections, so they hold no thread of their own.
        let watcher = {
            let threads = threads.clone();
            Watcher::start(move |served, ready| threads.dispatch(Job::Resume(served, ready)))
        };
        let watcher = match watcher {
            Ok(watcher) => {
                threads.park_with(watcher.parker());
                Some(watcher)
            }
            Err(e) => {
                tracing::warn!(error = %e, "idle connections keep their threads");
                None
            }
        };
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
        // Gives this thread's allocator cache back when accepts stop for a moment.
        let mut quiet = QuietRelease::default();
        loop {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            // The node's timed duties (the partial-upload sweep) go to the work pool when
            // due; between them this thread waits for connections only.
            let now = Instant::now();
            let due = service.next_duty(now);
            if due.is_some_and(|at| at <= now) {
                quiet.round(true, now);
                service.run_due_duties(now, SystemTime::now());
                while let Some(dial) = service.poll_dial(now) {
                    if let Some(worker) = self.start_dial(dial) {
                        workers.push(worker);
                    }
                }
                continue;
            }
            match wake::wait_accept(
                &self.listener,
                &duty_waker,
                due.into_iter().chain(quiet.due()).min(),
            ) {
                Ok(true) => quiet.round(true, Instant::now()),
                Ok(false) => {
                    quiet.round(false, Instant::now());
                    continue;
                }
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
                    self.accept(stream, &threads);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // Parked connections go back to threads (and see the shutdown); then idle threads
        // leave at once, and busy ones finish their connection.
        if let Some(watcher) = watcher {
            watcher.close();
        }
        threads.close();
        for worker in workers {
            let _ = worker.join();
        }
        live.wait_all();
        // What the connections handed to the runner (a commit's index bulk, a delivery)
        // ends before the server counts as stopped.
        self.shared.pool.wait_idle();
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

    /// Admits one connection: refuses it at the limit, else hands it to a connection
    /// thread.
    fn accept(&self, mut stream: TcpStream, threads: &Arc<Threads>) {
        let peer = stream.peer_addr().ok();
        let shared = &self.shared;
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.options.max_connections {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(?peer, "connection limit reached; refusing");
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
            let _ = stream.write_all(&busy_refusal(RefusedLimit::MaxConnections, BUSY_RETRY_SECS));
            return;
        }
        threads.dispatch(Job::New(stream));
    }
}

/// Sends the plaintext `refused` frame (best effort, bounded in time) and drops `stream`.
pub(crate) fn refuse(mut stream: TcpStream, why: &str, peer: SocketAddr, refused: &[u8]) {
    tracing::warn!(%peer, "{why}; refusing");
    let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(refused);
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
    let served = Box::new(Served {
        stream,
        conn,
        session,
        waker,
    });
    // A link's thread is joined at shutdown: it keeps its connection to the end.
    connection::run(served, None, shared, None)?;
    Ok(())
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
    /// waits for all threads, and the blocking work the connections started, to finish.
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
