//! [`Tcp`]: the real runtimes' servers on loopback, for the cases that drive them directly
//! rather than through [`crate::Runtime`] (the parity and replication cases): start on an
//! address (port 0 by default), read the address, stop.

use std::sync::Arc;

use vserv_core::ServerIdentity;
use vserv_service::{ServerOptions, Service};

/// A TCP server runtime under test.
pub trait Tcp {
    /// A running server.
    type Handle;
    /// Starts `service` on 127.0.0.1, port 0.
    fn start(identity: Arc<ServerIdentity>, service: Service) -> Self::Handle {
        Self::start_at(identity, service, "127.0.0.1:0")
    }
    /// Starts `service` on `addr` (a server coming back at its old address).
    fn start_at(identity: Arc<ServerIdentity>, service: Service, addr: &str) -> Self::Handle;
    /// Where the server listens.
    fn address(handle: &Self::Handle) -> String;
    /// Stops the server and waits for its connections to end.
    fn stop(handle: Self::Handle);
}

/// The blocking runtime.
pub struct Blocking;

/// The smol runtime.
pub struct Smol;

impl Tcp for Blocking {
    type Handle = vserv_blocking::ServerHandle;
    fn start_at(identity: Arc<ServerIdentity>, service: Service, addr: &str) -> Self::Handle {
        vserv_blocking::Server::bind(addr, identity, service, ServerOptions::default())
            .expect("bind")
            .spawn()
            .expect("spawn")
    }
    fn address(handle: &Self::Handle) -> String {
        handle.local_addr().to_string()
    }
    fn stop(handle: Self::Handle) {
        handle.shutdown();
    }
}

impl Tcp for Smol {
    type Handle = vserv_smol::ServerHandle;
    fn start_at(identity: Arc<ServerIdentity>, service: Service, addr: &str) -> Self::Handle {
        vserv_smol::Server::bind(addr, identity, service, ServerOptions::default())
            .expect("bind")
            .spawn()
            .expect("spawn")
    }
    fn address(handle: &Self::Handle) -> String {
        handle.local_addr().to_string()
    }
    fn stop(handle: Self::Handle) {
        handle.shutdown();
    }
}
