//! Blocking server: an accept thread and one thread per connection, bounded in number.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vserv_core::session::refusal;
use vserv_core::{CloseCode, Connection, ServerIdentity};
use vserv_service::{ServerOptions, Service};
use vserv_store::rng::os_rng;

/// How often an idle connection thread checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
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
    /// Binds the listening socket.
    pub fn bind(
        addr: impl ToSocketAddrs,
        identity: Arc<ServerIdentity>,
        service: Service,
        options: ServerOptions,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let shared = Shared {
            identity,
            service,
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
        let mut workers: Vec<JoinHandle<()>> = Vec::new();
        for stream in self.listener.incoming() {
            if self.shared.shutdown.load(Ordering::SeqCst) {
                break;
            }
            workers.retain(|w| !w.is_finished());
            match stream {
                Ok(stream) => {
                    if let Some(worker) = self.accept(stream) {
                        workers.push(worker);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        for worker in workers {
            let _ = worker.join();
        }
    }

    fn accept(&self, mut stream: TcpStream) -> Option<JoinHandle<()>> {
        let peer = stream.peer_addr().ok();
        let shared = &self.shared;
        if shared.active.fetch_add(1, Ordering::SeqCst) >= shared.options.max_connections {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(?peer, "connection limit reached; refusing");
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
            let _ = stream.write_all(&refusal(CloseCode::Busy));
            return None;
        }
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("vserv-conn".into())
            .spawn(move || {
                match serve(stream, &shared) {
                    Ok(()) => tracing::debug!(?peer, "connection finished"),
                    Err(e) => tracing::debug!(?peer, error = %e, "connection ended with an error"),
                }
                shared.active.fetch_sub(1, Ordering::SeqCst);
            });
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

/// Drives one server connection to its end. Protocol errors end the connection (after its
/// close record is flushed) and are returned for logging.
fn serve(mut stream: TcpStream, shared: &Shared) -> Result<(), Box<dyn std::error::Error>> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let rng = os_rng()?;
    let mut conn = Connection::server(
        shared.options.config.clone(),
        shared.identity.clone(),
        rng,
        Instant::now(),
    );
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    let mut failure = None;
    loop {
        if let Err(e) = shared.service.drive(&mut conn) {
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
            conn.close(CloseCode::Shutdown, "server shutting down");
            continue;
        }
        let result = crate::feed::read_into(&mut stream, &mut conn, &mut buf, Some(SHUTDOWN_POLL))?;
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
