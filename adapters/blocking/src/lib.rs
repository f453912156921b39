//! The reference runtime: one std thread per connection, blocking sockets with read
//! timeouts driving the core's timers. Same behaviour as every other driver because all
//! protocol and application logic lives in `vserv-core` and `vserv-service`.
#![forbid(unsafe_code)]

mod client;
mod feed;
mod local_files;
mod read_ahead;
mod server;
#[cfg(test)]
mod test_fake;
pub mod transfer;
mod write_behind;

pub use client::Client;
pub use server::{Server, ServerHandle, WRITE_TIMEOUT};
pub use vserv_service::ServerOptions;
