//! Async driver on smol + async-io: the vserv server and client.
//!
//! One task per connection, multiplexed on a [`smol::Executor`] run by one background
//! thread by default ([`Server::threads`]). Each task follows the core's drain rule: let the
//! service answer pending events, flush `poll_transmit`, then wait for the socket to be
//! readable, an [`async_io::Timer`] armed from `poll_timeout`, or the session's waker
//! (which a shutdown also fires). All protocol and application logic lives in `vserv-core`
//! and `vserv-service`, so this driver behaves exactly like the blocking reference runtime.
//! The client's file transfers ([`transfer`]) drive the same runtime-free scheduler as the
//! blocking client. The server's blocking work and the clients' file work run on a
//! [`WorkPool`] (`vserv-pool`), whose threads end when idle; smol's own blocking pool
//! (`smol::unblock`) keeps every thread it started below its 500-thread cap.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod quiet;
mod server;
pub mod transfer;
mod udp;

pub use client::Client;
pub use server::{DEFAULT_THREADS, Server, ServerHandle};
pub use udp::{UdpHandle, spawn_udp};
pub use vserv_pool::{DEFAULT_MAX_WORKERS, WorkPool};
pub use vserv_service::ServerOptions;

/// Runs a future to completion on the current thread, driving the async-io reactor
/// (re-exported from smol so synchronous callers need no direct dependency on it).
pub use smol::block_on;
