//! # vserv-core: the sans-IO protocol of vserv
//!
//! Pure state machines: bytes and typed calls in, bytes and events out. No sockets, files,
//! threads, clock reads or OS randomness: the driver passes `now` into every call that needs
//! time and gives each connection its RNG. This makes the protocol drivable from any executor,
//! fuzzable and deterministic under test.
//!
//! - [`wire`]: framing and the codec of every message (no crypto).
//! - [`secure`]: identities, key schedule, record protection.
//! - [`session`]: the [`Connection`] state machine (handshake, records, commands, timers).
//!
//! ## The run loop (the drain rule)
//!
//! After **every** input — `handle_input`, `handle_timeout`, `handle_eof`, or an application
//! call such as `send_request` — drain all outputs: write everything `poll_transmit` appends,
//! handle every `poll_event` until `None`, then re-arm your timer from `poll_timeout`.
//! A complete blocking client, as the `vserv-blocking` adapter does it:
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::time::Instant;
//! use vserv_core::{Config, Connection, Event};
//!
//! fn run(mut sock: std::net::TcpStream, rng: Box<dyn rand_core::CryptoRng + Send>)
//!     -> Result<(), Box<dyn std::error::Error>> {
//!     let mut conn = Connection::client(Config::default(), rng, Instant::now());
//!     let mut out = Vec::new();
//!     let mut buf = vec![0u8; 64 * 1024];
//!     let mut asked = false;
//!     loop {
//!         // 1. drain events
//!         while let Some(event) = conn.poll_event() {
//!             match event {
//!                 // check the key against known_servers before accepting
//!                 Event::ServerKey(_key) => conn.accept_server_key(Instant::now())?,
//!                 Event::Connected { .. } if !asked => {
//!                     conn.send_request("ping", vec![b"hi".to_vec()])?;
//!                     asked = true;
//!                 }
//!                 Event::Response(r) => {
//!                     println!("{:?}", r.result);
//!                     conn.close(vserv_core::CloseCode::Normal, "done");
//!                 }
//!                 _ => {}
//!             }
//!         }
//!         // 2. drain transmit
//!         out.clear();
//!         conn.poll_transmit(&mut out);
//!         sock.write_all(&out)?;
//!         if conn.is_closed() {
//!             return Ok(());
//!         }
//!         // 3. wait for input or the timer
//!         let now = Instant::now();
//!         let deadline = conn.poll_timeout();
//!         sock.set_read_timeout(deadline.map(|d| d.saturating_duration_since(now).max(
//!             std::time::Duration::from_millis(1))))?;
//!         match sock.read(&mut buf) {
//!             Ok(0) => conn.handle_eof(Instant::now())?,
//!             Ok(n) => conn.handle_input(Instant::now(), &buf[..n])?,
//!             Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
//!                 conn.handle_timeout(Instant::now())?,
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//! }
//! ```
//!
//! Errors returned by `handle_*` are fatal: the connection is then closed, and one
//! authenticated close record may still be waiting in `poll_transmit` — flush it, then drop
//! the socket. API misuse returns an error and changes nothing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod commands;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod ledger;
pub mod secure;
pub mod session;
pub mod wire;

pub use error::{Error, ErrorKind};
pub use secure::{Fingerprint, ServerIdentity, ServerKey};
pub use session::{Config, Connection, Event, Role};
pub use wire::{Close, CloseCode, ErrorCode, ErrorReply, Request, Response};

/// The software version reported by `ver`.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
