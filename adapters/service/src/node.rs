//! A node: everything one vserv server is made of, assembled in one place.
//!
//! [`Node::open`] opens a data directory (the identity, created on first start; the store,
//! under the data-loss policy of [`NodeSettings::accept_data_loss`]; the accounts with their
//! argon2 limits; the ledger; the homes with their quota and free-space reserve) and runs the
//! start-up policy before anything is served: deliveries a crash or restart left pending are
//! settled, expired partial uploads are swept. [`Node::in_memory`] and [`Node::builder`] give
//! the same assembly over a [`MemoryStore`] and a [`MemoryTree`] (or pieces a test chooses:
//! a faulty store, a tree on disk), for tests, benches and the simulator.
//!
//! A node starts no thread and listens on nothing: [`Node::service`] hands out the
//! [`Service`] a runtime drives, and the admin tools take the identity, ledger and accounts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand_core::CryptoRng;
use vserv_core::ServerIdentity;
use vserv_core::transit::{KEY_LEN, MasterKey};
use vserv_store::{IdentityError, KeyFileError, MemoryStore, Store, StoreError};
use zeroize::Zeroizing;

use crate::accounts::{AccountError, Accounts, CheckLimits, PasswordParams};
use crate::files::delivery::{self, HooksConfig, InterruptedSettle};
use crate::files::{
    DEFAULT_MIN_FREE_BYTES, DEFAULT_PARTIAL_EXPIRY, DiskTree, FileError, FileTree, FilesConfig,
    MemoryTree, PartialSweep,
};
use crate::ledger::Ledger;
use crate::{Policy, Service, ServiceInfo};

/// What a node is opened with. [`Default`] gives the settings of `vserv serve` without a
/// configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// The server name reported by `hello` and `id`.
    pub name: String,
    /// Abuse limits and `tout` bounds.
    pub policy: Policy,
    /// argon2id parameters for new password hashes.
    pub password: PasswordParams,
    /// Password checks running and waiting at once.
    pub password_checks: CheckLimits,
    /// Versions kept and per-user quota of the homes.
    pub files: FilesConfig,
    /// Free bytes uploads never take from the homes' file system (0: no reserve; a data
    /// directory only, the in-memory tree has no file system).
    pub min_free_bytes: u64,
    /// How long a partial upload may go unwritten before it is swept; `None`: never.
    pub partial_expiry: Option<Duration>,
    /// Time between sweeps of expired partial uploads while the node serves (one runs at
    /// start); the runtime keeps the timer ([`Service::next_duty`]).
    pub sweep_interval: Duration,
    /// Whether and how inbox folder hooks run.
    pub hooks: HooksConfig,
    /// Open a store that lost data it had acknowledged (logging the loss) instead of
    /// refusing it.
    pub accept_data_loss: bool,
    /// The bytes of the store's file blocks kept in memory, decompressed (a data directory
    /// only; [`vserv_store::DEFAULT_CACHE_BYTES`] by default): a read that finds its block
    /// there skips a file read and its decompression.
    pub store_cache_bytes: u64,
    /// The replication peers (spec/replication.md): links are accepted from their keys and
    /// dialed to those with an address. Empty, no peer added at runtime in the store and
    /// [`NodeSettings::replicate`] off: the node does not replicate.
    pub peers: Vec<crate::PeerConfig>,
    /// Replicate even with no peer configured or stored, so that an admin can add peers at
    /// runtime (`padd`). Off by default; `vserv serve` turns it on.
    pub replicate: bool,
    /// The origins whose feeds the node keeps replicas of: `None` (the default) every origin
    /// its peers offer, else only these (by key fingerprint). Its own feed is always kept.
    pub follow: Option<Vec<vserv_core::Fingerprint>>,
    /// The query tables served (spec/tables.md); none by default.
    pub tables: crate::tables::TablesSettings,
    /// Entries of the ledger's own feed whose index keys wait in memory before one bulk
    /// stores them (`ledger_index_tail.rs`); tests make it small so that bulks run often.
    pub ledger_index_bulk: usize,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            name: "vserv".to_owned(),
            policy: Policy::default(),
            password: PasswordParams::DEFAULT,
            password_checks: CheckLimits::from_cpus(),
            files: FilesConfig::default(),
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            partial_expiry: Some(DEFAULT_PARTIAL_EXPIRY),
            sweep_interval: crate::server::duties::DEFAULT_SWEEP_INTERVAL,
            hooks: HooksConfig::default(),
            accept_data_loss: false,
            store_cache_bytes: vserv_store::DEFAULT_CACHE_BYTES,
            peers: Vec::new(),
            replicate: false,
            follow: None,
            tables: crate::tables::TablesSettings::default(),
            ledger_index_bulk: crate::ledger::TAIL_BULK,
        }
    }
}

impl NodeSettings {
    /// The defaults with the cheapest argon2 parameters and the name `name`: for tests,
    /// benches and simulations, never for a real server.
    pub fn insecure_fast(name: &str) -> NodeSettings {
        NodeSettings {
            name: name.to_owned(),
            password: PasswordParams::INSECURE_FAST,
            ..NodeSettings::default()
        }
    }
}

/// Why a node could not be opened. Nothing is served; what was created (a new identity, an
/// empty store or homes directory) stays for the next attempt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The identity key could not be read, or created on first start.
    #[error("cannot load or create the server identity in {}", dir.display())]
    Identity {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: IdentityError,
    },
    /// The master key (`master.key`, spec/transit.md §4) could not be read, or created on
    /// first start.
    #[error("cannot load or create the master key in {}", dir.display())]
    MasterKey {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: KeyFileError,
    },
    /// The store could not be opened (in use, damaged, or lost data without
    /// [`NodeSettings::accept_data_loss`]).
    #[error("cannot open the store in {}", dir.display())]
    Store {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The homes could not be opened.
    #[error("cannot open the homes in {}", dir.display())]
    Files {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: FileError,
    },
    /// The accounts could not be set up over the store.
    #[error("cannot set up the accounts")]
    Accounts(#[source] AccountError),
    /// The operating system gave no randomness.
    #[error("no randomness from the operating system")]
    Rng(#[source] std::io::Error),
    /// Replication could not be set up over the store (its epoch, or the per-segment signed
    /// heads of the own feed).
    #[error("cannot set up replication: {0}")]
    Replication(String),
    /// The query tables' configuration is refused.
    #[error("query tables: {0}")]
    Tables(#[from] crate::tables::TableConfigError),
}

/// What opening a node did before it could serve. Failures of the start-up chores are
/// logged, never fatal: the node serves without them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Startup {
    /// Where a new identity was written, when this start created one.
    pub identity_created: Option<PathBuf>,
    /// Where a new master key was written, when this start created one.
    pub master_key_created: Option<PathBuf>,
    /// The data the store lost and was accepted to lose
    /// ([`NodeSettings::accept_data_loss`]).
    pub data_loss: Option<String>,
    /// The deliveries a stop left pending, now settled (`None`: settling failed).
    pub settled: Option<InterruptedSettle>,
    /// The expired partial uploads swept (`None`: expiry disabled, or the sweep failed).
    pub swept: Option<PartialSweep>,
}

/// One server's pieces, assembled and started up; see the module docs.
pub struct Node {
    identity: Arc<ServerIdentity>,
    store: Arc<dyn Store>,
    accounts: Arc<Accounts>,
    ledger: Arc<Ledger>,
    files: Arc<dyn FileTree>,
    /// The query tables, if any are configured.
    tables: Option<Arc<crate::tables::Tables>>,
    /// Built once, so every clone handed out shares its limits and upload locks.
    service: Service,
    settings: NodeSettings,
    startup: Startup,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("fingerprint", &self.identity.public_key().fingerprint())
            .field("settings", &self.settings)
            .field("startup", &self.startup)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the node kept in `dir` (created with mode 0700 if absent): the identity
    /// (created on first start), the store (refused after a data loss unless
    /// `settings.accept_data_loss`), the accounts, the ledger and the homes; then settles the
    /// deliveries a stop left pending and sweeps the expired partial uploads. Fails if the
    /// store is in use by another process. The homes are written through and read on
    /// demand ([`Node::open_with_file_runner`] lets them work behind the connections).
    pub fn open(dir: &Path, settings: &NodeSettings) -> Result<Node, NodeError> {
        Self::open_with_file_runner(dir, settings, Arc::new(crate::work::Inline))
    }

    /// Like [`Node::open`], the homes writing uploads behind and reading downloads ahead
    /// through `file_runner` (the runtime's, and apart from the service's runner: the
    /// service's file work waits for these runs, which wait only for the disk).
    pub fn open_with_file_runner(
        dir: &Path,
        settings: &NodeSettings,
        file_runner: Arc<dyn crate::work::Runner>,
    ) -> Result<Node, NodeError> {
        let loaded =
            vserv_store::identity::load_or_create(dir, &mut *os_rng()?).map_err(|source| {
                NodeError::Identity {
                    dir: dir.to_owned(),
                    source,
                }
            })?;
        if loaded.created {
            tracing::info!(path = %loaded.path.display(), "created a new server identity");
        }
        let master =
            vserv_store::master_key::load_or_create(dir, &mut *os_rng()?).map_err(|source| {
                NodeError::MasterKey {
                    dir: dir.to_owned(),
                    source,
                }
            })?;
        if master.created {
            tracing::info!(path = %master.path.display(), "created a new master key");
        }
        let options = vserv_store::OpenOptions {
            accept_data_loss: settings.accept_data_loss,
            cache_bytes: Some(settings.store_cache_bytes),
        };
        let store = vserv_store::FjallStore::open_with(dir, options).map_err(|source| {
            NodeError::Store {
                dir: dir.to_owned(),
                source,
            }
        })?;
        let data_loss = store.data_loss_accepted().map(str::to_owned);
        if let Some(lost) = &data_loss {
            tracing::error!(data = %dir.display(), "starting after data loss: {lost}");
        }
        let tree = DiskTree::open(dir, settings.files)
            .map_err(|source| NodeError::Files {
                dir: dir.to_owned(),
                source,
            })?
            .with_min_free_bytes(settings.min_free_bytes)
            .with_runner(file_runner);
        let mut node = Node::builder(Arc::new(loaded.identity), settings.clone())
            .store(Arc::new(store))
            .files(Arc::new(tree))
            .master_key(master.key)
            .build()?;
        // Tables over real files are read at start, so a bad file is logged before serving;
        // later reads reload what changed.
        if let Some(tables) = &node.tables {
            tables.load_all(crate::unix_now());
        }
        node.startup.identity_created = loaded.created.then_some(loaded.path);
        node.startup.master_key_created = master.created.then_some(master.path);
        node.startup.data_loss = data_loss;
        Ok(node)
    }

    /// A node for `identity` entirely in memory (a [`MemoryStore`] and a [`MemoryTree`]),
    /// its accounts salted from `rng`, so a seeded `rng` makes it reproducible.
    pub fn in_memory(
        identity: Arc<ServerIdentity>,
        settings: NodeSettings,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Result<Node, NodeError> {
        Node::builder(identity, settings).rng(rng).build()
    }

    /// A builder for a node of `identity` whose pieces default to [`Node::in_memory`]'s and
    /// may be replaced one by one.
    pub fn builder(identity: Arc<ServerIdentity>, settings: NodeSettings) -> NodeBuilder {
        NodeBuilder {
            identity,
            settings,
            store: None,
            files: None,
            rng: None,
            table_source: None,
            handlers: Vec::new(),
            master_key: None,
        }
    }

    /// The [`Service`] over this node's accounts, ledger and homes, with its policy and
    /// hooks. Every call returns a clone of the one service: all share its login backoff,
    /// per-address slots and upload locks, as the connections of one server must.
    pub fn service(&self) -> Service {
        self.service.clone()
    }

    /// How the node describes itself: its name and its key's fingerprint.
    pub fn info(&self) -> &ServiceInfo {
        self.service.info()
    }

    /// The server's signing key.
    pub fn identity(&self) -> &Arc<ServerIdentity> {
        &self.identity
    }

    /// The store holding the accounts, the ledger and the limits.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The user accounts.
    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    /// The server's ledger, signed by [`Node::identity`].
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// The users' homes.
    pub fn files(&self) -> &Arc<dyn FileTree> {
        &self.files
    }

    /// The query tables served, if any are configured.
    pub fn tables(&self) -> Option<&Arc<crate::tables::Tables>> {
        self.tables.as_ref()
    }

    /// The settings the node was opened with.
    pub fn settings(&self) -> &NodeSettings {
        &self.settings
    }

    /// What the start-up did.
    pub fn startup(&self) -> &Startup {
        &self.startup
    }

    /// Deletes the partial uploads unwritten since `now - partial_expiry`, logging what was
    /// done. `None`: expiry is disabled, or the homes could not be reached (logged). Safe
    /// while the node serves: uploads in progress keep their partial files.
    pub fn sweep_partials(&self, now: SystemTime) -> Option<PartialSweep> {
        let expiry = self.settings.partial_expiry?;
        crate::server::duties::sweep_and_log(self.files.as_ref(), now, expiry)
    }

    /// The start-up chores, run before any session exists: settle interrupted deliveries
    /// (none can be running), then sweep expired partial uploads.
    fn start_up(&mut self) {
        self.startup.settled = match delivery::settle_interrupted(self.files.as_ref()) {
            Ok(report) => {
                tracing::info!(
                    settled = report.settled(),
                    failed = report.failed,
                    received = report.received,
                    errors = report.errors,
                    temp_files = report.temp_files,
                    "settled deliveries interrupted by a server stop"
                );
                Some(report)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not settle interrupted deliveries");
                None
            }
        };
        if self.settings.partial_expiry.is_none() {
            tracing::info!("partial upload expiry disabled");
        }
        self.startup.swept = self.sweep_partials(SystemTime::now());
    }
}

/// Builds a [`Node`] from chosen pieces; see [`Node::builder`].
pub struct NodeBuilder {
    identity: Arc<ServerIdentity>,
    settings: NodeSettings,
    store: Option<Arc<dyn Store>>,
    files: Option<Arc<dyn FileTree>>,
    rng: Option<Box<dyn CryptoRng + Send>>,
    table_source: Option<Arc<dyn crate::tables::TableSource>>,
    handlers: Vec<(String, Arc<dyn crate::tables::QueryHandler>)>,
    master_key: Option<MasterKey>,
}

impl NodeBuilder {
    /// Reads the query tables' files through `source` (default: the file system,
    /// [`crate::tables::StdFiles`]); the simulator and tests use
    /// [`crate::tables::MemoryFiles`].
    pub fn table_source(mut self, source: Arc<dyn crate::tables::TableSource>) -> Self {
        self.table_source = Some(source);
        self
    }

    /// Answers the queries of table `table` with `handler` instead of the key lookup (or
    /// the table's external handler). [`NodeBuilder::build`] fails if the settings
    /// configure no such table.
    pub fn handler(
        mut self,
        table: impl Into<String>,
        handler: Box<dyn crate::tables::QueryHandler>,
    ) -> Self {
        self.handlers.push((table.into(), Arc::from(handler)));
        self
    }

    /// Encrypts the secrets kept at rest under `key` (default: 32 bytes drawn from the
    /// node's rng, which [`Node::open`] replaces with the data directory's `master.key`).
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.master_key = Some(key);
        self
    }

    /// Keeps the accounts, ledger and limits in `store` (default: a new [`MemoryStore`]).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Keeps the homes in `files` (default: a new [`MemoryTree`] with the settings' files
    /// configuration); the settings' `files` and `min_free_bytes` are then `files`' own.
    pub fn files(mut self, files: Arc<dyn FileTree>) -> Self {
        self.files = Some(files);
        self
    }

    /// Salts the accounts from `rng` (default: the operating system's).
    pub fn rng(mut self, rng: Box<dyn CryptoRng + Send>) -> Self {
        self.rng = Some(rng);
        self
    }

    /// Assembles the node and runs its start-up (see [`Node::open`]).
    pub fn build(self) -> Result<Node, NodeError> {
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn Store>);
        let files = self
            .files
            .unwrap_or_else(|| Arc::new(MemoryTree::new(self.settings.files)));
        let seeded = self.rng.is_some();
        let tables = if self.settings.tables.tables.is_empty() && self.handlers.is_empty() {
            None
        } else {
            let source = self
                .table_source
                .unwrap_or_else(|| Arc::new(crate::tables::StdFiles));
            let mut tables = crate::tables::Tables::new(&self.settings.tables, source)?;
            for (name, handler) in self.handlers {
                tables = tables.with_handler(&name, handler)?;
            }
            Some(Arc::new(tables))
        };
        let mut rng = match self.rng {
            Some(rng) => rng,
            None => os_rng()?,
        };
        let runtime_peers = crate::server::peer_table::load(store.as_ref())
            .map_err(|e| NodeError::Replication(e.to_string()))?;
        let peers_setup = if self.settings.peers.is_empty()
            && runtime_peers.is_empty()
            && !self.settings.replicate
        {
            None
        } else {
            let epoch = crate::replicas::ensure_epoch(store.as_ref(), &mut *rng)
                .map_err(|e| NodeError::Replication(e.to_string()))?;
            Some((epoch, rng.next_u64()))
        };
        let master = self.master_key.unwrap_or_else(|| {
            let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
            rng.fill_bytes(bytes.as_mut());
            MasterKey::from_bytes(bytes)
        });
        let transit = transit_keys(store.clone(), master.clone(), &mut *rng, seeded)?;
        let accounts = Accounts::with_limits(
            store.clone(),
            self.settings.password,
            self.settings.password_checks,
            rng,
        )
        .map_err(NodeError::Accounts)?
        .with_master_key(master);
        let accounts = Arc::new(accounts);
        let ledger = Arc::new(Ledger::with_tail_bulk(
            store.clone(),
            self.identity.clone(),
            self.settings.ledger_index_bulk,
        ));
        let info = ServiceInfo {
            name: self.settings.name.clone(),
            fingerprint: self.identity.public_key().fingerprint(),
        };
        // One `Replicas` per store: the reads' ORIGIN selects its feeds, and the links (if
        // any) write them.
        let (replicas, _moved) =
            crate::replicas::Replicas::open(store.clone(), self.identity.public_key())
                .map_err(|e| NodeError::Replication(e.to_string()))?;
        let replicas = Arc::new(replicas);
        let service = Service::with_policy(info, accounts.clone(), self.settings.policy.clone())
            .with_ledger(ledger.clone())
            .with_replicas(replicas.clone())
            .with_files(files.clone())
            .with_hooks(self.settings.hooks.clone())
            .with_transit(transit);
        let service = match &tables {
            Some(tables) => service.with_tables(tables.clone()),
            None => service,
        };
        let service = match peers_setup {
            None => service,
            Some((epoch, jitter_seed)) => {
                // A feed written before per-commit signed heads gets them, so that it can be
                // sent in segments a receiver may hold.
                ledger
                    .sign_segment_heads()
                    .map_err(|e| NodeError::Replication(e.to_string()))?;
                let peers = Arc::new(
                    crate::server::peers::Peers::new(
                        replicas,
                        self.identity.clone(),
                        epoch,
                        (&self.settings.peers, &runtime_peers),
                        store.clone(),
                        jitter_seed,
                    )
                    .following(self.settings.follow.clone()),
                );
                let told = Arc::downgrade(&peers);
                ledger.on_commit(Arc::new(move |head| {
                    if let Some(peers) = told.upgrade() {
                        peers.tell_commit(head);
                    }
                }));
                service.with_peers(peers)
            }
        };
        let service = match self.settings.partial_expiry {
            Some(expiry) => service.with_partial_sweep(expiry, self.settings.sweep_interval),
            None => service,
        };
        let mut node = Node {
            identity: self.identity,
            store,
            accounts,
            ledger,
            files,
            tables,
            service,
            settings: self.settings,
            startup: Startup::default(),
        };
        node.start_up();
        Ok(node)
    }
}

/// The transit keys over `store`, under `master`. A node given its rng (tests, the simulator) seeds the keys' own generator from it,
/// so a seeded node stays reproducible; any other draws from the operating system.
fn transit_keys(
    store: Arc<dyn Store>,
    master: MasterKey,
    rng: &mut dyn CryptoRng,
    seeded: bool,
) -> Result<Arc<crate::transit::TransitKeys>, NodeError> {
    let keys_rng: Box<dyn CryptoRng + Send> = if seeded {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Box::new(<rand::rngs::StdRng as rand::SeedableRng>::from_seed(*seed))
    } else {
        os_rng()?
    };
    Ok(Arc::new(crate::transit::TransitKeys::new(
        store,
        master,
        keys_rng,
        crate::transit::TransitLimits::default(),
    )))
}

/// The operating system's randomness, the one source of a node opened without a chosen one.
fn os_rng() -> Result<Box<dyn CryptoRng + Send>, NodeError> {
    crate::system::os_rng().map_err(NodeError::Rng)
}
