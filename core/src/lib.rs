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
//! - [`commands`]: the typed command set; [`ledger`]: the record ledger's entries and chain.
//! - [`names`], [`paths`]: user names and client paths, parsed and validated (pure strings).
//!
//! The run loop every driver follows is documented below.
#![doc = include_str!("../docs/run-loop.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod commands;
pub mod datagram;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod ledger;
pub mod messages;
pub mod names;
pub mod paths;
pub mod replication;
pub mod secure;
pub mod session;
pub mod transfer;
pub mod transit;
pub mod wire;

pub use error::{Error, ErrorKind};
pub use secure::{Fingerprint, ServerIdentity, ServerKey};
pub use session::{Config, Connection, Event, Role};
pub use wire::{Close, CloseCode, ErrorCode, ErrorReply, Request, Response};

/// The software version reported by `ver`.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
