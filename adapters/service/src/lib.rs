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
