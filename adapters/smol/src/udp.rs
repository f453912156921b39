//! Sealed UDP datagrams on the smol runtime: one task on a thread of its own reads an async
//! UDP socket, hands each datagram to [`Service::datagram`] and sends what it says at once;
//! a command that blocks runs on a [`WorkPool`] and sends its answer when done. The task ends when the handle is shut down or dropped.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_io::Async;
use vserv_core::datagram::MAX_DATAGRAM;
use vserv_pool::WorkPool;
use vserv_service::Service;
use vserv_service::datagram::{DatagramOutcome, IvSource};
use vserv_service::work::Runner;

use crate::quiet;

/// A running datagram server; [`UdpHandle::shutdown`] stops it (dropping it does too).
#[derive(Debug)]
pub struct UdpHandle {
    local: SocketAddr,
    stop: Option<smol::channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl UdpHandle {
    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops reading and waits for the task (work already handed out still answers).
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        // Closing the channel wakes the task.
        self.stop.take();
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

/// Serves `service`'s datagrams on `socket` from a task on a new thread.
pub fn spawn_udp(socket: UdpSocket, service: Service) -> std::io::Result<UdpHandle> {
    let local = socket.local_addr()?;
    let socket = Arc::new(Async::new(socket)?);
    let mut ivs = IvSource::os()?;
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let pool = WorkPool::default();
    let thread = std::thread::Builder::new()
        .name("vserv-udp".into())
        .spawn(move || {
            let serve = async move {
                let mut buf = vec![0u8; MAX_DATAGRAM + 1];
                loop {
                    let received =
                        smol::future::or(async { Some(socket.recv_from(&mut buf).await) }, async {
                            let _ = stopped.recv().await;
                            None
                        })
                        .await;
                    let (n, from) = match received {
                        None => break,
                        Some(Ok(got)) => got,
                        Some(Err(e)) if is_transient(&e) => continue,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "udp socket failed; no more datagrams");
                            break;
                        }
                    };
                    let iv = ivs.next_iv();
                    let now_ms = vserv_service::unix_now_ms();
                    match service.datagram(&buf[..n], from, now_ms, iv) {
                        DatagramOutcome::Drop(_) => {}
                        DatagramOutcome::Answer(bytes) => {
                            if let Err(e) = socket.send_to(&bytes, from).await {
                                tracing::debug!(%from, error = %e, "udp answer not sent");
                            }
                        }
                        DatagramOutcome::Run(pending) => {
                            let socket = socket.clone();
                            let work = pending.into_work(move |bytes| {
                                if let Err(e) = socket.get_ref().send_to(&bytes, from) {
                                    tracing::debug!(%from, error = %e, "udp answer not sent");
                                }
                            });
                            pool.run(work);
                        }
                    }
                }
            };
            smol::block_on(smol::future::or(
                quiet::marked(serve),
                quiet::release_when_quiet(),
            ))
        })?;
    Ok(UdpHandle {
        local,
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
    )
}
