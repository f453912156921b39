//! The application logic every runtime shares, kept free of I/O so the blocking, smol and
//! simulated drivers behave identically:
//!
//! - [`Service`]: the server side — answers typed commands on a [`vserv_core::Connection`].
//! - [`Node`]: one server's pieces (identity, store, accounts, ledger, homes) assembled from
//!   a data directory or in memory, with the start-up policy; it hands out the [`Service`].
//! - [`replicas::Replicas`]: the feeds of other servers a server holds beside its own, and
//!   what replication needs of storage (clock, segments, atomic appends, quarantine, epoch).
//! - [`tables::Tables`]: the query tables a node serves (CSV files by key, reloaded when
//!   they change) and the [`tables::QueryHandler`] trait for answers of one's own.
//! - [`client::ClientSession`]: the client side — trust decisions against `known_servers`,
//!   request/response matching and typed replies.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod client;
pub mod datagram;
pub mod files;
pub mod ledger;
mod ledger_backfill;
mod ledger_commit;
pub mod ledger_export;
mod ledger_feed;
mod ledger_ids;
mod ledger_index_tail;
mod ledger_layout;
mod ledger_query;
mod ledger_span_masks;
pub mod limits;
pub mod messages;
pub mod node;
pub mod programs;
pub mod replicas;
mod server;
pub mod system;
pub mod tables;
pub mod transit;
pub mod work;

pub use limits::{
    ConnectionLimiter, LoginBackoff, MessageLimits, Policy, RateLimit, UnauthenticatedSlot,
    UnauthenticatedSlots,
};
pub use node::{Node, NodeBuilder, NodeError, NodeSettings, Startup};
pub use server::duties::DEFAULT_SWEEP_INTERVAL;
pub use server::link::ReplicationStatus;
pub use server::peers::{DIAL_BACKOFF_MAX, DIAL_BACKOFF_MIN, Dial, PeerAdminError, PeerConfig};
pub use server::status::ServiceStatus;
pub use server::{
    DEFAULT_IDLE_NOTICE_MARGIN, MAX_FAILED_LOGINS, MAX_RPUT_GROUP, Service, ServiceInfo, Session,
};
pub use system::{unix_now, unix_now_ms};

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
