//! The application logic every runtime shares, kept free of I/O so the blocking, smol and
//! simulated drivers behave identically:
//!
//! - [`Service`]: the server side — answers typed commands on a [`vserv_core::Connection`].
//! - [`client::ClientSession`]: the client side — trust decisions against `known_servers`,
//!   request/response matching and typed replies.
#![forbid(unsafe_code)]

pub mod client;
mod server;

pub use server::{Service, ServiceInfo};

/// Tunables of a server, whichever runtime drives it.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once; further ones are refused with `Busy`.
    pub max_connections: usize,
    /// Per-connection protocol tunables.
    pub config: vserv_core::Config,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            config: vserv_core::Config::default(),
        }
    }
}
