//! The reference runtime: a std thread per busy connection, each waiting in `poll(2)` on
//! its socket, its session's waker and its timers (`wake.rs`); idle connections parked on
//! one watcher thread (`watcher.rs`) until they have something to do; and a bounded pool
//! of worker threads for the service's blocking work (`vserv-pool`). Same behaviour as every
//! other driver because all protocol and application logic lives in `vserv-core` and
//! `vserv-service`.
#![forbid(unsafe_code)]

mod client;
mod connection;
mod feed;
mod idle;
mod linger;
mod live;
mod read_buf;
mod server;
#[cfg(test)]
mod test_fake;
pub mod transfer;
mod udp;
mod wake;
mod watcher;
mod workers;

pub use client::Client;
pub use server::{Server, ServerHandle, WRITE_TIMEOUT};
pub use udp::{UdpHandle, spawn_udp};
pub use vserv_pool::{DEFAULT_MAX_WORKERS, WorkPool};
pub use vserv_service::ServerOptions;
