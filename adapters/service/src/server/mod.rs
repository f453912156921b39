//! The server side of the protocol above the core: per-connection sessions, the commands,
//! and how their blocking parts reach the runtime.
//!
//! The contract with a runtime (blocking, smol and the simulator all follow it):
//!
//! 1. The runtime builds the [`Service`] once with its [`Runner`] ([`Service::with_runner`])
//!    and, per connection, a [`Session`] with its [`Wake`] ([`Session::with_waker`]).
//! 2. After feeding the connection input or a timeout, and whenever the session's waker
//!    fired, it calls [`Service::drive`], then drains `poll_transmit` and re-reads
//!    `poll_timeout`. `drive` never waits: requests whose work blocks (a commit, a password
//!    hash, file I/O, a delivery) are handed to the runner, and their answers come back
//!    through the session's mailbox, which wakes the runtime.
//! 3. While [`Session::wants_input`] is false the runtime need not read the socket (the
//!    session will not take another request until a completion arrives); it waits for the
//!    waker or a timeout instead.
//!
//! One file per concern: `session.rs` (the per-connection state), `drive.rs` (the loop
//! above), `dispatch.rs` (parsing, access, inline or blocking), `errors.rs` (error replies),
//! and one file per command domain (`accounts.rs`, `ledger.rs`, `files.rs`, `delivery.rs`);
//! `duties.rs` for the node's timed work no session asks for (the runtime keeps its timer).

mod accounts;
mod datagram;
mod delivery;
mod dispatch;
mod drive;
pub mod duties;
mod errors;
mod files;
mod ledger;
pub(crate) mod link;
mod messages;
mod notices;
mod peer_admin;
mod peer_status;
pub(crate) mod peer_table;
pub mod peers;
mod registry;
mod session;
pub(crate) mod status;
mod tables;
mod transit;

use std::sync::Arc;

use vserv_core::Fingerprint;

use crate::accounts::Accounts;
use crate::files::delivery::HooksConfig;
use crate::files::{FileTree, UploadLocks};
use crate::ledger::Ledger;
use crate::limits::{LoginLimiter, Policy, UnauthenticatedSlot, UnauthenticatedSlots};
use crate::replicas::Replicas;
use crate::work::{Inline, Runner};

pub use session::Session;

/// At most this many consecutive `rput`s of one connection go to the ledger as one group:
/// a pipelining client's next group is then decoded while the one before is committed.
pub const MAX_RPUT_GROUP: usize = 128;

/// How long before its idle timeout the `vserv serve` server tells a session so
/// ([`Service::with_idle_notice`]).
pub const DEFAULT_IDLE_NOTICE_MARGIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Failed logins after which a connection is closed. Logins refused by the backoff (see
/// [`crate::limits`]) count too.
pub const MAX_FAILED_LOGINS: u32 = 3;

/// What the server says about itself.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Human-readable server name (reported by `hello` and `id`).
    pub name: String,
    /// Fingerprint of the server identity key.
    pub fingerprint: Fingerprint,
}

/// The server's command handler; one instance (cheap to clone: one `Arc`) serves every
/// connection. Clones share everything: login backoff, upload locks, sessions registry.
#[derive(Clone)]
pub struct Service {
    shared: Arc<Shared>,
}

/// What every connection of a [`Service`] shares.
#[derive(Clone)]
struct Shared {
    info: ServiceInfo,
    accounts: Arc<Accounts>,
    policy: Policy,
    limiter: Arc<LoginLimiter>,
    /// The sessions not logged in, per peer address.
    unauthenticated: Arc<UnauthenticatedSlots>,
    /// The server's feed; `None` answers the ledger commands with an error.
    ledger: Option<Arc<Ledger>>,
    /// The users' homes; `None` answers the file commands with an error.
    files: Option<Arc<dyn FileTree>>,
    /// The paths being uploaded to, across connections (spec/files.md §3.4).
    upload_locks: UploadLocks,
    /// The file transfers open on every session.
    transfers: crate::files::TransferGauge,
    /// Whether and how the hooks of inbox folders run (protocol.md §13.5).
    hooks: HooksConfig,
    /// Where blocking work goes.
    runner: Arc<dyn Runner>,
    /// The logged-in sessions by account, to push to them.
    sessions: Arc<registry::Sessions>,
    /// The partial-upload sweep's schedule, if the service sweeps (`duties.rs`).
    pub(crate) sweep: Option<Arc<duties::SweepSchedule>>,
    /// The replication peers and links, if the service replicates (`peers.rs`, `link.rs`).
    peers: Option<Arc<peers::Peers>>,
    /// The feeds held beside the own one, which the reads' ORIGIN selects; `None` holds none.
    replicas: Option<Arc<Replicas>>,
    /// How long before its idle timeout a session is told it will idle out; `None`: never.
    idle_notice: Option<std::time::Duration>,
    /// The users' message keys and mailboxes (kept in the accounts' store).
    mailboxes: Arc<crate::messages::Mailboxes>,
    /// Sealed UDP datagrams' key, replay guard and rate limiter (`datagram.rs`); `None`
    /// answers none.
    datagrams: Option<Arc<crate::datagram::DatagramState>>,
    /// The query tables; `None` serves none.
    tables: Option<Arc<crate::tables::Tables>>,
    /// The users' transit keys (spec/transit.md); `None` answers the transit commands with
    /// an error.
    transit: Option<Arc<crate::transit::TransitKeys>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("info", &self.shared.info)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service describing itself with `info`, keeping users in `accounts`, with the
    /// default [`Policy`], running blocking work [`Inline`] until given a runner.
    pub fn new(info: ServiceInfo, accounts: Arc<Accounts>) -> Self {
        Self::with_policy(info, accounts, Policy::default())
    }

    /// Like [`Service::new`] with the given abuse limits and `tout` bounds. The per-user
    /// login backoff is kept in the accounts' store (see [`crate::limits`]).
    pub fn with_policy(info: ServiceInfo, accounts: Arc<Accounts>, policy: Policy) -> Self {
        let limiter = LoginLimiter::new(accounts.store(), policy.login);
        let mailboxes = Arc::new(crate::messages::Mailboxes::new(
            accounts.store(),
            crate::limits::MessageLimits::default(),
        ));
        Service {
            shared: Arc::new(Shared {
                info,
                accounts,
                unauthenticated: UnauthenticatedSlots::new(policy.max_unauthenticated_per_ip),
                policy,
                limiter,
                ledger: None,
                files: None,
                upload_locks: UploadLocks::new(),
                transfers: crate::files::TransferGauge::default(),
                hooks: HooksConfig::default(),
                runner: Arc::new(Inline),
                sessions: Arc::new(registry::Sessions::default()),
                sweep: None,
                peers: None,
                replicas: None,
                idle_notice: None,
                mailboxes,
                datagrams: None,
                tables: None,
                transit: None,
            }),
        }
    }

    fn configure(mut self, change: impl FnOnce(&mut Shared)) -> Self {
        change(Arc::make_mut(&mut self.shared));
        self
    }

    /// This service telling each command session `margin` before its idle timeout that it
    /// is about to idle out (a [`vserv_core::commands::Notice::IdleSoon`], once per idle
    /// period; half-way through timeouts shorter than twice the margin). `None` or a zero
    /// margin sends none, which is the default; the `vserv serve` server uses
    /// [`DEFAULT_IDLE_NOTICE_MARGIN`].
    pub fn with_idle_notice(self, margin: Option<std::time::Duration>) -> Self {
        let margin = margin.filter(|m| !m.is_zero());
        self.configure(|s| s.idle_notice = margin)
    }

    /// This service enforcing `limits` on sealed messages (size, mailbox quota, sender
    /// rate; spec/messages.md §5) instead of [`crate::limits::MessageLimits::default`].
    pub fn with_message_limits(self, limits: crate::limits::MessageLimits) -> Self {
        let store = self.shared.accounts.store();
        self.configure(|s| s.mailboxes = Arc::new(crate::messages::Mailboxes::new(store, limits)))
    }

    /// This service keeping the users' transit keys in `transit` (the `tkey`, `seal`,
    /// `unseal`, `rewrap` and `gk` commands). Without them, those commands are answered with
    /// [`vserv_core::ErrorCode::Internal`] "this server keeps no transit keys".
    pub fn with_transit(self, transit: Arc<crate::transit::TransitKeys>) -> Self {
        self.configure(|s| s.transit = Some(transit))
    }

    /// This service with `files` as the users' homes (the file commands). Without one,
    /// those commands are answered with [`vserv_core::ErrorCode::Internal`] "no file tree".
    pub fn with_files(self, files: Arc<dyn FileTree>) -> Self {
        self.configure(|s| s.files = Some(files))
    }

    /// This service running the hooks of inbox folders as `hooks` says (by default they
    /// are disabled: the allow lists alone decide deliveries).
    pub fn with_hooks(self, hooks: HooksConfig) -> Self {
        self.configure(|s| s.hooks = hooks)
    }

    /// This service with `ledger` as the server's feed (the `r*` commands). Without one,
    /// those commands are answered with [`vserv_core::ErrorCode::Internal`] "no ledger".
    pub fn with_ledger(self, ledger: Arc<Ledger>) -> Self {
        self.configure(|s| s.ledger = Some(ledger))
            .with_ledger_bulks()
    }

    /// This service reading the feeds held in `replicas` when a ledger read names an ORIGIN
    /// (protocol.md §13.3). Without them only the server's own fingerprint names a feed (its
    /// own); any other origin is [`vserv_core::ErrorCode::NotFound`].
    pub fn with_replicas(self, replicas: Arc<Replicas>) -> Self {
        self.configure(|s| s.replicas = Some(replicas))
    }

    /// This service answering `tables` and `query` from `tables` (spec/tables.md). Without
    /// them, `tables` lists none and every `query` finds no table.
    pub fn with_tables(self, tables: Arc<crate::tables::Tables>) -> Self {
        self.configure(|s| s.tables = Some(tables))
    }

    /// This service handing its blocking work to `runner` (the runtime's). The default,
    /// [`Inline`], runs it inside [`Service::drive`], which then waits.
    pub fn with_runner(self, runner: Arc<dyn Runner>) -> Self {
        self.configure(|s| s.runner = runner).with_ledger_bulks()
    }

    /// The ledger's bulks of index keys go to this service's runner.
    fn with_ledger_bulks(self) -> Self {
        if let Some(ledger) = &self.shared.ledger {
            ledger.run_bulks_on(Arc::clone(&self.shared.runner));
        }
        self
    }

    /// This service replicating with `peers` (links accepted from their keys, and dialed to
    /// those with an address).
    pub(crate) fn with_peers(self, peers: Arc<peers::Peers>) -> Self {
        self.configure(|s| s.peers = Some(peers))
    }

    /// The server's feed, if it keeps one.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.shared.ledger.as_ref()
    }

    /// The abuse limits and bounds in force (the accept loops read the connection rate
    /// limit here).
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// A slot for one more session from `peer` that has not logged in, or `None` when
    /// that address holds [`Policy::max_unauthenticated_per_ip`] already: the runtime then
    /// refuses the connection as busy. A runtime takes it when it accepts a connection and
    /// gives it to the session ([`Session::hold_unauthenticated`]), which frees it at login.
    pub fn admit_unauthenticated(&self, peer: std::net::IpAddr) -> Option<UnauthenticatedSlot> {
        self.shared.unauthenticated.take(peer)
    }

    /// The unauthenticated sessions of every address.
    pub fn unauthenticated(&self) -> &Arc<UnauthenticatedSlots> {
        &self.shared.unauthenticated
    }

    /// The login backoff state.
    pub fn login_limiter(&self) -> &Arc<LoginLimiter> {
        &self.shared.limiter
    }

    /// What this server reports about itself.
    pub fn info(&self) -> &ServiceInfo {
        &self.shared.info
    }

    /// The accounts this service uses.
    pub fn accounts(&self) -> &Accounts {
        &self.shared.accounts
    }

    /// A snapshot of what the service is doing (for an operator's status summary): the
    /// logged-in sessions per user, the sessions not logged in, the ledger's head. Reading
    /// it changes nothing; values read at slightly different instants.
    pub fn status(&self) -> status::ServiceStatus {
        status::ServiceStatus::gather(self)
    }
}
