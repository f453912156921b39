//! `udp_listen` in `vserv serve`: the UDP socket bound with the TCP listener (so a bad
//! address fails before anything is created), the service given its datagram key, the
//! runtime's datagram loop started, and the counters added to the SIGUSR1 status line.

use std::net::UdpSocket;
use std::sync::Arc;

use anyhow::Context;
use vserv_core::ServerIdentity;
use vserv_service::Service;
use vserv_service::datagram::DatagramSettings;

use crate::config::Runtime;

/// Binds `addr`, if one is configured.
pub fn bind(addr: Option<&str>) -> anyhow::Result<Option<UdpSocket>> {
    addr.map(|a| UdpSocket::bind(a).with_context(|| format!("listening for UDP on {a}")))
        .transpose()
}

/// `service` answering datagrams for `identity` when a socket is bound.
pub fn with_datagrams(
    service: Service,
    identity: &Arc<ServerIdentity>,
    udp: Option<&UdpSocket>,
) -> Service {
    match udp {
        Some(_) => service.with_datagrams(identity, DatagramSettings::default()),
        None => service,
    }
}

/// A running datagram loop; dropping it stops the loop.
#[derive(Debug)]
pub enum Running {
    /// On the blocking runtime.
    Blocking(vserv_blocking::UdpHandle),
    /// On the smol runtime.
    Smol(vserv_smol::UdpHandle),
}

impl Running {
    /// Stops reading datagrams and waits for the loop to end.
    pub fn shutdown(self) {
        match self {
            Running::Blocking(handle) => handle.shutdown(),
            Running::Smol(handle) => handle.shutdown(),
        }
    }
}

/// Starts answering datagrams on `udp` (if bound) with `service`, on `runtime`.
pub fn spawn(
    udp: Option<UdpSocket>,
    service: &Service,
    runtime: Runtime,
) -> anyhow::Result<Option<Running>> {
    let Some(socket) = udp else {
        return Ok(None);
    };
    let addr = socket.local_addr()?;
    let running = match runtime {
        Runtime::Blocking => Running::Blocking(vserv_blocking::spawn_udp(
            socket,
            service.clone(),
            Arc::new(vserv_blocking::WorkPool::default()),
        )?),
        Runtime::Smol => Running::Smol(vserv_smol::spawn_udp(socket, service.clone())?),
    };
    println!("vserv answering sealed UDP queries on {addr}");
    Ok(Some(running))
}

/// `line` followed by the datagram counters, when the service answers datagrams.
pub fn with_stats(line: String, service: &Service) -> String {
    match service.datagram_stats() {
        Some(stats) => format!("{line}; {}", stats.summary()),
        None => line,
    }
}
