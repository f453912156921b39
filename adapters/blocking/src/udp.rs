//! Sealed UDP datagrams on the blocking runtime: one thread reads a std [`UdpSocket`], hands
//! each datagram to [`Service::datagram`] and sends what it says at once; a command that
//! blocks runs on a [`Runner`] (the runtime's pool), which sends its answer when done. The
//! thread wakes every [`POLL_INTERVAL`] to notice a shutdown.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vserv_core::datagram::MAX_DATAGRAM;
use vserv_pool::thread_cache::QuietRelease;
use vserv_service::Service;
use vserv_service::datagram::{DatagramOutcome, IvSource};
use vserv_service::work::Runner;

/// How often the reading thread checks for a shutdown while no datagram arrives.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A running datagram server; [`UdpHandle::shutdown`] stops it (dropping it does too).
#[derive(Debug)]
pub struct UdpHandle {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpHandle {
    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops reading and waits for the thread (work already handed out still answers).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for UdpHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Serves `service`'s datagrams on `socket` from a new thread, blocking work on `runner`.
pub fn spawn_udp(
    socket: UdpSocket,
    service: Service,
    runner: Arc<dyn Runner>,
) -> std::io::Result<UdpHandle> {
    let local = socket.local_addr()?;
    socket.set_read_timeout(Some(POLL_INTERVAL))?;
    let mut ivs = IvSource::os()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let socket = Arc::new(socket);
    let thread = std::thread::Builder::new()
        .name("vserv-udp".into())
        .spawn(move || {
            let mut buf = vec![0u8; MAX_DATAGRAM + 1];
            // Gives this thread's allocator cache back when datagrams stop for a moment.
            let mut quiet = QuietRelease::default();
            while !stopping.load(Ordering::SeqCst) {
                let received = socket.recv_from(&mut buf);
                quiet.round(received.is_ok(), Instant::now());
                let (n, from) = match received {
                    Ok(got) => got,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                                | std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "udp socket failed; no more datagrams");
                        break;
                    }
                };
                let iv = ivs.next_iv();
                let now_ms = vserv_service::unix_now_ms();
                match service.datagram(&buf[..n], from, now_ms, iv) {
                    DatagramOutcome::Drop(_) => {}
                    DatagramOutcome::Answer(bytes) => send(&socket, &bytes, from),
                    DatagramOutcome::Run(pending) => {
                        let socket = socket.clone();
                        runner.run(pending.into_work(move |bytes| send(&socket, &bytes, from)));
                    }
                }
            }
        })?;
    Ok(UdpHandle {
        local,
        stop,
        thread: Some(thread),
    })
}

fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, to) {
        tracing::debug!(%to, error = %e, "udp answer not sent");
    }
}
