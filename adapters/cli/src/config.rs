//! The `vserv serve --config FILE` file: TOML, every key optional, unknown keys an error.
//! Command-line flags override the file; the file overrides the defaults.
//!
//! ```toml
//! listen = "127.0.0.1:7117"        # address to listen on
//! data = "./vserv-data"            # data directory (identity key, accounts, backoff state)
//! name = "vserv"                   # server name reported by `hello` and `id`
//! runtime = "blocking"             # "blocking" or "smol"
//! max_connections = 1024           # connections served at once; more are refused as busy
//! handshake_timeout_secs = 10      # the handshake must finish within this (1..=600)
//! idle_timeout_secs = 300          # a session idle this long is closed (within the tout bounds)
//! idle_timeout_min_secs = 10       # shortest idle timeout `tout` accepts (>= 1)
//! idle_timeout_max_secs = 3600     # longest idle timeout `tout` accepts (<= 604800)
//! login_grace_secs = 60            # a connection not logged in this long after connecting is closed (0..=3600; 0: never)
//! max_unauthenticated_per_ip = 10  # connections per peer IP not (yet) logged in; more are refused as busy (0: no limit)
//! # follow = ["SHA256:..."]        # replicate only these origins; unset: every origin peers offer
//! # udp_listen = "127.0.0.1:7117"  # also answer sealed UDP queries here (spec/datagrams.md); unset: off
//!
//! [rate_limit]                     # new connections per peer IP
//! connections = 30                 # per window; 0 turns the limit off
//! window_secs = 10                 # window length (1..=86400)
//!
//! [login_backoff]                  # after failed logins (per user, and per IP after 10)
//! base_secs = 1                    # first wait, doubling per further failure (1..=3600)
//! cap_secs = 900                   # longest wait (base_secs..=86400)
//!
//! [argon2]                         # argon2id parameters for new password hashes
//! memory_kib = 19456               # >= 8 * lanes, <= 4194304 (4 GiB)
//! iterations = 2                   # 1..=64
//! lanes = 1                        # 1..=16
//! max_concurrent = 0               # password checks hashing at once, each in its own memory_kib (0..=1024; 0: one per CPU)
//! max_queued = 64                  # checks waiting for one; more are refused as busy (0..=65536)
//!
//! [files]                          # the users' homes, in <data>/homes/<user>
//! versions = 3                     # previous versions kept on overwrite (0..=100; 0: none)
//! quota_bytes = 0                  # per-user bytes of files, versions and partial uploads; 0: unlimited
//! partial_expiry_days = 7          # partial uploads unwritten this long are deleted (0..=3650; 0: never)
//! min_free_bytes = 1073741824      # uploads never leave less free on the disk (1 GiB; 0: no reserve)
//!
//! [store]                          # the store in <data>/db
//! cache_mib = 32                   # MiB of its file blocks kept in memory (1..=1048576)
//!
//! [hooks]                          # inbox folder hooks (protocol.md §13.5)
//! enabled = false                  # run on_meta/on_received (as the server's user); off: allow lists only
//! timeout_secs = 10                # a hook still running after this is killed (1..=600)
//! # dir = "/etc/vserv/hooks"      # hooks run only programs directly in this absolute directory; unset: none
//!
//! # [[peers]]                      # a replication peer (spec/replication.md); one table per peer
//! # fingerprint = "SHA256:..."     # its server key's fingerprint (`vserv fingerprint`); required
//! # address = "10.0.0.2:7117"      # where to dial it (host:port); unset: only accept its links
//! ```
//!
//! The values shown are the defaults. Existing password hashes keep the parameters they
//! were made with (they are stored in the hash), so changing `[argon2]` affects new and
//! changed passwords only; `max_concurrent` and `max_queued` bound every check (see
//! `vserv_service::accounts::checks`).
//!
//! Query tables (spec/tables.md) are `[[tables]]` entries, none by default:
//!
//! ```text
//! [[tables]]
//! name = "things"                  # what `vserv query` names (1..=64 bytes)
//! file = "/srv/things.csv"         # the CSV file, re-read when it changes
//! header = true                    # the first row names the columns (default true)
//! key = "item"                     # key column: a header name, or a 0-based index (default 0)
//! access = "users"                 # "anyone", "users" (default) or a list of user names
//! # handler = "lookup"             # answer with the program `lookup` in the [hooks] dir instead
//! ```
//!
//! An external handler runs with the `[hooks]` timeout, and only from the `[hooks]` `dir`
//! (it need not enable the inbox hooks). Duplicate names, a key named on a table without a
//! header, or a handler without a directory are refused at start.
//!
//! No peer is configured by default: the server then replicates with the peers an admin
//! adds at runtime (`vserv peer add`), none at first. Each `[[peers]]` entry lets the server with that key open a replication link; with an `address` this
//! server also dials it (reconnecting with backoff). A fingerprint listed twice, or the
//! server's own ([`check_own_fingerprint`], at start), is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vserv_core::Fingerprint;
use vserv_service::accounts::checks::{MAX_CONCURRENT_LIMIT, MAX_QUEUED_LIMIT};
use vserv_service::accounts::{CheckLimits, PasswordParams};
use vserv_service::files::delivery::HooksConfig;
use vserv_service::files::{DEFAULT_MIN_FREE_BYTES, DEFAULT_PARTIAL_EXPIRY, FilesConfig};
use vserv_service::tables::{
    KeyColumn, TableAccess, TableConfig, TableConfigError, TablesSettings,
};
use vserv_service::{LoginBackoff, NodeSettings, PeerConfig, Policy, RateLimit};

/// Which runtime drives the server (`runtime` in the file, `--runtime` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// One std thread per connection (the reference).
    Blocking,
    /// smol + async-io tasks.
    Smol,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A value out of its allowed range.
    #[error("{key}: {why}")]
    Invalid {
        /// The key, as written in the file.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A `[[peers]]` entry's fingerprint is not `SHA256:` and 64 hex digits.
    #[error("peers[{index}].fingerprint: {value:?} is not 'SHA256:' followed by 64 hex digits")]
    PeerFingerprint {
        /// The entry's position in the file, from 0.
        index: usize,
        /// The value as written.
        value: String,
    },
    /// A `[[peers]]` entry's address is not `host:port`.
    #[error("peers[{index}].address: {value:?} is not host:port")]
    PeerAddress {
        /// The entry's position in the file, from 0.
        index: usize,
        /// The value as written.
        value: String,
    },
    /// A `follow` entry is not a key fingerprint.
    #[error("follow[{index}]: {value:?} is not 'SHA256:' followed by 64 hex digits")]
    FollowFingerprint {
        /// The entry's position in the list.
        index: usize,
        /// What was written.
        value: String,
    },
    /// Two `[[peers]]` entries name the same fingerprint.
    #[error("peers[{index}].fingerprint: {fingerprint} is listed twice")]
    DuplicatePeer {
        /// The position of the second entry, from 0.
        index: usize,
        /// The repeated fingerprint.
        fingerprint: Fingerprint,
    },
    /// A `[[peers]]` entry names this server's own key.
    #[error("peers: {fingerprint} is this server's own key, not a peer")]
    OwnPeer {
        /// The server's fingerprint.
        fingerprint: Fingerprint,
    },
    /// The `[[tables]]` entries are refused.
    #[error("{0}")]
    Tables(#[from] TableConfigError),
    /// A `[[tables]]` entry's `access` is none of the allowed forms.
    #[error(
        "tables[{index}].access: {value:?} is not \"anyone\", \"users\" or a list of user names"
    )]
    TableAccess {
        /// The entry's position in the file, from 0.
        index: usize,
        /// The value as written.
        value: String,
    },
}

/// The file's contents; every key optional (see the [module docs](self)).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Server name.
    pub name: Option<String>,
    /// Runtime.
    pub runtime: Option<Runtime>,
    /// Connections served at once.
    pub max_connections: Option<usize>,
    /// Handshake timeout, seconds.
    pub handshake_timeout_secs: Option<u64>,
    /// Default idle timeout, seconds.
    pub idle_timeout_secs: Option<u64>,
    /// Shortest `tout`, seconds.
    pub idle_timeout_min_secs: Option<u64>,
    /// Longest `tout`, seconds.
    pub idle_timeout_max_secs: Option<u64>,
    /// Login grace time, seconds (0: none).
    pub login_grace_secs: Option<u64>,
    /// Connections per peer IP not logged in (0: no limit).
    pub max_unauthenticated_per_ip: Option<usize>,
    /// Per-IP connection rate limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// Login backoff.
    pub login_backoff: Option<BackoffConfig>,
    /// argon2id parameters.
    pub argon2: Option<Argon2Config>,
    /// The users' file homes.
    pub files: Option<FilesSection>,
    /// The hooks of inbox folders.
    pub hooks: Option<HooksSection>,
    /// The store.
    pub store: Option<StoreSection>,
    /// Replication peers (`[[peers]]`), in file order.
    #[serde(default)]
    pub peers: Vec<PeerSection>,
    /// The origins replicated (fingerprints); unset: every origin the peers offer.
    pub follow: Option<Vec<String>>,
    /// Where to answer sealed UDP queries; unset: not at all.
    pub udp_listen: Option<String>,
    /// Query tables (`[[tables]]`), in file order.
    #[serde(default)]
    pub tables: Vec<TableSection>,
}

/// One `[[tables]]` entry, as written (checked by [`resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// The table's name.
    pub name: String,
    /// The CSV file.
    pub file: PathBuf,
    /// Whether the first row names the columns (default true).
    pub header: Option<bool>,
    /// The key column: a header name or a 0-based index (default 0).
    pub key: Option<KeySpec>,
    /// `"anyone"`, `"users"` (default) or a list of user names.
    pub access: Option<AccessSpec>,
    /// A program in the `[hooks]` dir answering the table's queries.
    pub handler: Option<String>,
}

/// A `[[tables]]` key as written: a column name or an index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum KeySpec {
    /// A 0-based column index.
    Index(usize),
    /// A header name.
    Name(String),
}

/// A `[[tables]]` access as written: a word or a list of user names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AccessSpec {
    /// `"anyone"` or `"users"`.
    Word(String),
    /// The only users who may query.
    Users(Vec<String>),
}

/// One `[[peers]]` entry, as written (checked by [`resolve`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// The peer's server key fingerprint, `SHA256:` and 64 hex digits.
    pub fingerprint: String,
    /// Where to dial it, `host:port`; `None`: only accept its links.
    pub address: Option<String>,
}

/// `[hooks]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksSection {
    /// Whether inbox folder hooks run.
    pub enabled: Option<bool>,
    /// A hook's time limit, seconds.
    pub timeout_secs: Option<u64>,
    /// The directory of the programs hooks may run (absolute).
    pub dir: Option<PathBuf>,
}

/// `[store]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// MiB of the store's file blocks kept in memory.
    pub cache_mib: Option<u64>,
}

/// `[files]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    /// Previous versions kept when a file is overwritten; 0 keeps none.
    pub versions: Option<u32>,
    /// Per-user limit on the bytes of files, kept versions and partial uploads; 0 =
    /// unlimited.
    pub quota_bytes: Option<u64>,
    /// Days a partial upload may go unwritten before it is deleted; 0 = never.
    pub partial_expiry_days: Option<u64>,
    /// Free bytes uploads never take from the homes' file system; 0 = no reserve.
    pub min_free_bytes: Option<u64>,
}

/// `[rate_limit]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// New connections per IP per window; 0 = no limit.
    pub connections: Option<u32>,
    /// Window length, seconds.
    pub window_secs: Option<u64>,
}

/// `[login_backoff]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// First wait, seconds.
    pub base_secs: Option<u64>,
    /// Longest wait, seconds.
    pub cap_secs: Option<u64>,
}

/// `[argon2]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Config {
    /// Memory, KiB.
    pub memory_kib: Option<u32>,
    /// Passes.
    pub iterations: Option<u32>,
    /// Lanes.
    pub lanes: Option<u32>,
    /// Password checks hashing at once; 0: one per CPU.
    pub max_concurrent: Option<usize>,
    /// Password checks waiting for a slot.
    pub max_queued: Option<usize>,
}

/// Everything `vserv serve` runs with, after flags, file and defaults are combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Data directory.
    pub data: PathBuf,
    /// Runtime.
    pub runtime: Runtime,
    /// Connections served at once.
    pub max_connections: usize,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
    /// Default idle timeout.
    pub idle_timeout: Duration,
    /// Login grace time; `None`: sessions may stay anonymous until their idle timeout.
    pub login_grace: Option<Duration>,
    /// What the node in `data` is opened with: name, abuse limits, argon2, homes, hooks,
    /// data-loss policy.
    pub node: NodeSettings,
    /// Where to answer sealed UDP queries (spec/datagrams.md); `None`: off.
    pub udp_listen: Option<String>,
}

/// Values given on the command line; each overrides the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--name`.
    pub name: Option<String>,
    /// `--runtime`.
    pub runtime: Option<Runtime>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
    /// `--accept-data-loss`.
    pub accept_data_loss: bool,
}

impl FileConfig {
    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string().trim_end().to_owned()))
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }
}

fn check<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Invalid {
            key,
            why: format!("{value} is out of range (allowed: {min}..={max})"),
        });
    }
    Ok(value)
}

/// The login grace time when the file sets none, seconds.
pub const DEFAULT_LOGIN_GRACE_SECS: u64 = 60;

/// Longest idle timeout accepted anywhere: a week.
const MAX_IDLE_SECS: u64 = 7 * 86_400;

/// Largest store cache accepted, MiB (1 TiB).
const MAX_CACHE_MIB: u64 = 1 << 20;

/// Longest partial upload expiry accepted: about ten years.
const MAX_PARTIAL_EXPIRY_DAYS: u64 = 3_650;

/// Combines command-line `flags`, the `file` and the defaults, checking every value.
pub fn resolve(file: FileConfig, flags: Overrides) -> Result<Settings, ConfigError> {
    let policy_default = Policy::default();
    let core_default = vserv_core::Config::default();

    let max_connections = check(
        "max_connections",
        flags
            .max_connections
            .or(file.max_connections)
            .unwrap_or(1024),
        1,
        1_000_000,
    )?;
    let handshake = check(
        "handshake_timeout_secs",
        file.handshake_timeout_secs
            .unwrap_or(core_default.handshake_timeout.as_secs()),
        1,
        600,
    )?;
    let idle_min = check(
        "idle_timeout_min_secs",
        file.idle_timeout_min_secs
            .unwrap_or(policy_default.idle_timeout_min.as_secs()),
        1,
        MAX_IDLE_SECS,
    )?;
    let idle_max = check(
        "idle_timeout_max_secs",
        file.idle_timeout_max_secs
            .unwrap_or(policy_default.idle_timeout_max.as_secs()),
        idle_min,
        MAX_IDLE_SECS,
    )?;
    let idle = check(
        "idle_timeout_secs",
        file.idle_timeout_secs
            .unwrap_or(core_default.idle_timeout.as_secs()),
        idle_min,
        idle_max,
    )?;

    let grace = check(
        "login_grace_secs",
        file.login_grace_secs.unwrap_or(DEFAULT_LOGIN_GRACE_SECS),
        0,
        3_600,
    )?;
    let max_unauthenticated = check(
        "max_unauthenticated_per_ip",
        file.max_unauthenticated_per_ip.unwrap_or(
            policy_default
                .max_unauthenticated_per_ip
                .unwrap_or_default(),
        ),
        0,
        1_000_000,
    )?;

    let rate = file.rate_limit.unwrap_or_default();
    let default_rate = RateLimit::DEFAULT;
    let connections = rate.connections.unwrap_or(default_rate.connections);
    let window_secs = check(
        "rate_limit.window_secs",
        rate.window_secs.unwrap_or(default_rate.window_secs),
        1,
        86_400,
    )?;
    let connection_rate = (connections > 0).then_some(RateLimit {
        connections,
        window_secs,
    });

    let backoff = file.login_backoff.unwrap_or_default();
    let base_secs = check(
        "login_backoff.base_secs",
        backoff.base_secs.unwrap_or(LoginBackoff::DEFAULT.base_secs),
        1,
        3_600,
    )?;
    let cap_secs = check(
        "login_backoff.cap_secs",
        backoff.cap_secs.unwrap_or(LoginBackoff::DEFAULT.cap_secs),
        base_secs,
        86_400,
    )?;

    let argon2 = file.argon2.unwrap_or_default();
    let lanes = check(
        "argon2.lanes",
        argon2.lanes.unwrap_or(PasswordParams::DEFAULT.p_cost),
        1,
        16,
    )?;
    let password = PasswordParams {
        m_cost_kib: check(
            "argon2.memory_kib",
            argon2
                .memory_kib
                .unwrap_or(PasswordParams::DEFAULT.m_cost_kib),
            8 * lanes,
            4 * 1024 * 1024,
        )?,
        t_cost: check(
            "argon2.iterations",
            argon2.iterations.unwrap_or(PasswordParams::DEFAULT.t_cost),
            1,
            64,
        )?,
        p_cost: lanes,
    };
    let from_cpus = CheckLimits::from_cpus();
    let password_checks = CheckLimits {
        max_concurrent: match check(
            "argon2.max_concurrent",
            argon2.max_concurrent.unwrap_or(0),
            0,
            MAX_CONCURRENT_LIMIT,
        )? {
            0 => from_cpus.max_concurrent,
            n => n,
        },
        max_queued: check(
            "argon2.max_queued",
            argon2.max_queued.unwrap_or(from_cpus.max_queued),
            0,
            MAX_QUEUED_LIMIT,
        )?,
    };

    let files = file.files.unwrap_or_default();
    let expiry_days = check(
        "files.partial_expiry_days",
        files
            .partial_expiry_days
            .unwrap_or(DEFAULT_PARTIAL_EXPIRY.as_secs() / 86_400),
        0,
        MAX_PARTIAL_EXPIRY_DAYS,
    )?;
    let partial_expiry = (expiry_days > 0).then(|| Duration::from_secs(expiry_days * 86_400));
    let min_free_bytes = files.min_free_bytes.unwrap_or(DEFAULT_MIN_FREE_BYTES);
    let files = FilesConfig {
        versions: check(
            "files.versions",
            files.versions.unwrap_or(FilesConfig::default().versions),
            0,
            100,
        )?,
        quota: files.quota_bytes.filter(|&q| q > 0),
    };

    let cache_mib = check(
        "store.cache_mib",
        file.store
            .unwrap_or_default()
            .cache_mib
            .unwrap_or(vserv_store::DEFAULT_CACHE_BYTES >> 20),
        1,
        MAX_CACHE_MIB,
    )?;

    let hooks = file.hooks.unwrap_or_default();
    let hooks = HooksConfig {
        enabled: hooks.enabled.unwrap_or(HooksConfig::default().enabled),
        timeout: Duration::from_secs(check(
            "hooks.timeout_secs",
            hooks
                .timeout_secs
                .unwrap_or(HooksConfig::default().timeout.as_secs()),
            1,
            600,
        )?),
        programs_dir: match hooks.dir {
            Some(dir) if !dir.is_absolute() => {
                return Err(ConfigError::Invalid {
                    key: "hooks.dir",
                    why: "must be an absolute path".into(),
                });
            }
            dir => dir,
        },
    };

    let tables = tables(&file.tables, &hooks)?;
    let peers = peers(&file.peers)?;
    let follow = file.follow.as_deref().map(follow_list).transpose()?;

    let name = flags
        .name
        .or(file.name)
        .unwrap_or_else(|| "vserv".to_owned());
    if name.is_empty() || name.len() > 256 {
        return Err(ConfigError::Invalid {
            key: "name",
            why: "must be 1 to 256 bytes".into(),
        });
    }

    Ok(Settings {
        listen: flags
            .listen
            .or(file.listen)
            .unwrap_or_else(|| crate::DEFAULT_LISTEN.to_owned()),
        data: flags
            .data
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from("./vserv-data")),
        runtime: flags.runtime.or(file.runtime).unwrap_or(Runtime::Blocking),
        max_connections,
        handshake_timeout: Duration::from_secs(handshake),
        idle_timeout: Duration::from_secs(idle),
        login_grace: (grace > 0).then(|| Duration::from_secs(grace)),
        node: NodeSettings {
            name,
            policy: Policy {
                login: LoginBackoff {
                    base_secs,
                    cap_secs,
                    ..LoginBackoff::DEFAULT
                },
                connection_rate,
                idle_timeout_min: Duration::from_secs(idle_min),
                idle_timeout_max: Duration::from_secs(idle_max),
                max_unauthenticated_per_ip: (max_unauthenticated > 0)
                    .then_some(max_unauthenticated),
            },
            password,
            password_checks,
            files,
            partial_expiry,
            sweep_interval: vserv_service::DEFAULT_SWEEP_INTERVAL,
            min_free_bytes,
            hooks,
            accept_data_loss: flags.accept_data_loss,
            store_cache_bytes: cache_mib << 20,
            peers,
            // An admin may add peers at runtime (`vserv peer add`).
            replicate: true,
            follow,
            tables,
            ..NodeSettings::default()
        },
        udp_listen: file.udp_listen,
    })
}

/// The `[[tables]]` entries as the node's settings, checked
/// ([`TablesSettings::validate`]); handlers run from the `[hooks]` directory with its
/// timeout.
fn tables(entries: &[TableSection], hooks: &HooksConfig) -> Result<TablesSettings, ConfigError> {
    let tables = entries
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let access = match &t.access {
                None => TableAccess::Users,
                Some(AccessSpec::Word(w)) if w == "anyone" => TableAccess::Anyone,
                Some(AccessSpec::Word(w)) if w == "users" => TableAccess::Users,
                Some(AccessSpec::Word(w)) => {
                    return Err(ConfigError::TableAccess {
                        index,
                        value: w.clone(),
                    });
                }
                Some(AccessSpec::Users(names)) => TableAccess::Only(names.clone()),
            };
            Ok(TableConfig {
                name: t.name.clone(),
                file: t.file.clone(),
                header: t.header.unwrap_or(true),
                key: match &t.key {
                    None => KeyColumn::Index(0),
                    Some(KeySpec::Index(i)) => KeyColumn::Index(*i),
                    Some(KeySpec::Name(n)) => KeyColumn::Name(n.clone()),
                },
                access,
                handler: t.handler.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let settings = TablesSettings {
        tables,
        programs_dir: hooks.programs_dir.clone(),
        handler_timeout: hooks.timeout,
        ..TablesSettings::default()
    };
    settings.validate()?;
    Ok(settings)
}

/// The `[[peers]]` entries checked: each fingerprint well-formed and listed once, each
/// address `host:port` with a numeric port.
fn peers(entries: &[PeerSection]) -> Result<Vec<PeerConfig>, ConfigError> {
    let mut peers: Vec<PeerConfig> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let fingerprint = entry
            .fingerprint
            .trim()
            .parse::<Fingerprint>()
            .ok()
            .filter(|_| entry.fingerprint.trim().starts_with("SHA256:"))
            .ok_or_else(|| ConfigError::PeerFingerprint {
                index,
                value: entry.fingerprint.clone(),
            })?;
        if peers.iter().any(|p| p.fingerprint == fingerprint) {
            return Err(ConfigError::DuplicatePeer { index, fingerprint });
        }
        if let Some(address) = &entry.address {
            let well_formed = address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !well_formed {
                return Err(ConfigError::PeerAddress {
                    index,
                    value: address.clone(),
                });
            }
        }
        peers.push(PeerConfig {
            fingerprint,
            address: entry.address.clone(),
        });
    }
    Ok(peers)
}

/// The `follow` list checked: each entry a key fingerprint.
fn follow_list(entries: &[String]) -> Result<Vec<Fingerprint>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(index, value)| {
            value
                .trim()
                .parse::<Fingerprint>()
                .ok()
                .filter(|_| value.trim().starts_with("SHA256:"))
                .ok_or_else(|| ConfigError::FollowFingerprint {
                    index,
                    value: value.clone(),
                })
        })
        .collect()
}

/// Refuses a configuration that lists the server's own key (`own`, known once the data
/// directory's identity is loaded) as a peer.
pub fn check_own_fingerprint(settings: &Settings, own: &Fingerprint) -> Result<(), ConfigError> {
    if settings.node.peers.iter().any(|p| &p.fingerprint == own) {
        return Err(ConfigError::OwnPeer { fingerprint: *own });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample of the module docs (and the README), comments and all.
    fn sample() -> String {
        let docs = include_str!("config.rs");
        let start = docs.find("//! ```toml\n").map(|i| i + 12).unwrap_or(0);
        let end = docs[start..].find("//! ```").map_or(start, |i| start + i);
        docs[start..end]
            .lines()
            .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_documented_sample_parses_to_the_defaults() {
        let text = sample();
        assert!(text.contains("[argon2]"), "{text}");
        let file = FileConfig::parse(&text).unwrap();
        assert_eq!(file.max_connections, Some(1024));
        let from_sample = resolve(file, Overrides::default()).unwrap();
        let defaults = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(from_sample, defaults);
        assert_eq!(defaults.node.password, PasswordParams::DEFAULT);
        assert_eq!(defaults.node.password_checks, CheckLimits::from_cpus());
        assert_eq!(defaults.node.policy, Policy::default());
        // `vserv serve` replicates from the start so an admin can add peers at runtime
        // (`vserv peer add`); in every other setting it opens the node with its defaults.
        assert_eq!(
            defaults.node,
            NodeSettings {
                // `vserv serve` is ready for peers added at runtime; a bare node is not.
                replicate: true,
                ..NodeSettings::default()
            },
            "no configuration opens the node with its own defaults"
        );
        assert_eq!(
            defaults.idle_timeout,
            vserv_core::Config::default().idle_timeout
        );
    }

    #[test]
    fn the_readme_sample_is_the_same() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("```toml\n").map(|i| i + 8).unwrap_or(0);
        let end = readme[start..].find("```").map_or(start, |i| start + i);
        let text = &readme[start..end];
        assert_eq!(
            text.trim(),
            sample().trim(),
            "README and config.rs docs differ"
        );
        FileConfig::parse(text).unwrap();
    }

    #[test]
    fn values_and_flags_combine() {
        let file = FileConfig::parse(
            r#"
            listen = "0.0.0.0:9000"
            name = "from-file"
            runtime = "smol"
            idle_timeout_secs = 60
            login_grace_secs = 0
            max_unauthenticated_per_ip = 3
            [rate_limit]
            connections = 0
            [login_backoff]
            base_secs = 2
            cap_secs = 60
            [argon2]
            memory_kib = 65536
            iterations = 3
            lanes = 2
            max_concurrent = 3
            max_queued = 0
            "#,
        )
        .unwrap();
        let flags = Overrides {
            name: Some("from-flag".into()),
            ..Overrides::default()
        };
        let s = resolve(file, flags).unwrap();
        assert_eq!(s.listen, "0.0.0.0:9000");
        assert_eq!(s.node.name, "from-flag", "flags override the file");
        assert_eq!(s.runtime, Runtime::Smol);
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.node.policy.connection_rate, None);
        assert_eq!(s.login_grace, None, "0 turns the login grace off");
        assert_eq!(s.node.policy.max_unauthenticated_per_ip, Some(3));
        let defaults = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(defaults.login_grace, Some(Duration::from_secs(60)));
        assert_eq!(defaults.node.policy.max_unauthenticated_per_ip, Some(10));
        let off = resolve(
            FileConfig::parse("max_unauthenticated_per_ip = 0").unwrap(),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(off.node.policy.max_unauthenticated_per_ip, None);
        assert_eq!(
            (s.node.policy.login.base_secs, s.node.policy.login.cap_secs),
            (2, 60)
        );
        assert_eq!(
            s.node.password,
            PasswordParams {
                m_cost_kib: 65536,
                t_cost: 3,
                p_cost: 2
            }
        );
        assert_eq!(
            s.node.password_checks,
            CheckLimits {
                max_concurrent: 3,
                max_queued: 0
            }
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        for text in [
            "listen_addr = \"x\"",
            "[rate_limit]\nconnection = 5",
            "[argon2]\nmemory = 5",
            "[files]\nquota = 5",
            "[nosuch]\n",
        ] {
            let err = FileConfig::parse(text).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{text}: {err}");
            assert!(err.to_string().contains("unknown"), "{text}: {err}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for text in [
            "runtime = \"threads\"",
            "max_connections = -1",
            "max_connections = \"many\"",
            "idle_timeout_secs = 1.5",
            "listen = 7117",
            "not toml at all",
        ] {
            assert!(
                matches!(FileConfig::parse(text), Err(ConfigError::Parse(_))),
                "{text}"
            );
        }
        for (text, key) in [
            ("max_connections = 0", "max_connections"),
            ("handshake_timeout_secs = 0", "handshake_timeout_secs"),
            ("login_grace_secs = 3601", "login_grace_secs"),
            (
                "max_unauthenticated_per_ip = 1000001",
                "max_unauthenticated_per_ip",
            ),
            ("idle_timeout_secs = 5", "idle_timeout_secs"),
            ("idle_timeout_min_secs = 0", "idle_timeout_min_secs"),
            (
                "idle_timeout_min_secs = 100\nidle_timeout_max_secs = 50",
                "idle_timeout_max_secs",
            ),
            ("[rate_limit]\nwindow_secs = 0", "rate_limit.window_secs"),
            ("[login_backoff]\nbase_secs = 0", "login_backoff.base_secs"),
            (
                "[login_backoff]\nbase_secs = 10\ncap_secs = 5",
                "login_backoff.cap_secs",
            ),
            ("[argon2]\nmemory_kib = 7", "argon2.memory_kib"),
            ("[argon2]\niterations = 0", "argon2.iterations"),
            ("[argon2]\nlanes = 0", "argon2.lanes"),
            ("[argon2]\nmax_concurrent = 1025", "argon2.max_concurrent"),
            ("[argon2]\nmax_queued = 65537", "argon2.max_queued"),
            ("[files]\nversions = 101", "files.versions"),
            (
                "[files]\npartial_expiry_days = 3651",
                "files.partial_expiry_days",
            ),
            ("name = \"\"", "name"),
        ] {
            let file = FileConfig::parse(text).unwrap();
            match resolve(file, Overrides::default()) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn tables_are_read_and_checked() {
        let text = r#"
            [hooks]
            dir = "/etc/vserv/hooks"
            timeout_secs = 3

            [[tables]]
            name = "things"
            file = "/srv/things.csv"
            key = "item"
            access = "anyone"

            [[tables]]
            name = "raw"
            file = "raw.csv"
            header = false
            key = 2
            access = ["alice", "bob"]
            handler = "lookup"
        "#;
        let s = resolve(FileConfig::parse(text).unwrap(), Overrides::default()).unwrap();
        let t = &s.node.tables;
        assert_eq!(t.programs_dir, Some(PathBuf::from("/etc/vserv/hooks")));
        assert_eq!(t.handler_timeout, Duration::from_secs(3));
        assert_eq!(
            t.tables,
            vec![
                TableConfig {
                    key: KeyColumn::Name("item".into()),
                    access: TableAccess::Anyone,
                    ..TableConfig::new("things", "/srv/things.csv")
                },
                TableConfig {
                    header: false,
                    key: KeyColumn::Index(2),
                    access: TableAccess::Only(vec!["alice".into(), "bob".into()]),
                    handler: Some("lookup".into()),
                    ..TableConfig::new("raw", "raw.csv")
                },
            ]
        );
        let entry = |extra: &str| format!("[[tables]]\nname = \"t\"\nfile = \"/t.csv\"\n{extra}");
        for (extra, says) in [
            ("access = \"everyone\"", "tables[0].access"),
            ("handler = \"lookup\"", "handlers' directory"),
            ("header = false\nkey = \"item\"", "by index"),
            ("[[tables]]\nname = \"t\"\nfile = \"/u.csv\"", "used twice"),
        ] {
            let err = FileConfig::parse(&entry(extra))
                .and_then(|f| resolve(f, Overrides::default()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{extra}: {err}");
        }
        assert!(FileConfig::parse(&entry("shell = true")).is_err());
    }

    #[test]
    fn hooks_are_off_by_default_and_checked() {
        let defaults = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert!(!defaults.node.hooks.enabled);
        assert_eq!(defaults.node.hooks.timeout, Duration::from_secs(10));
        let file = FileConfig::parse(
            "[hooks]\nenabled = true\ntimeout_secs = 2\ndir = \"/etc/vserv/hooks\"",
        )
        .unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            s.node.hooks,
            HooksConfig {
                enabled: true,
                timeout: Duration::from_secs(2),
                programs_dir: Some(PathBuf::from("/etc/vserv/hooks")),
            }
        );
        let file = FileConfig::parse("[hooks]\ndir = \"hooks\"").unwrap();
        let err = resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("hooks.dir"), "{err}");
        for bad in ["[hooks]\ntimeout_secs = 0", "[hooks]\ntimeout_secs = 601"] {
            let file = FileConfig::parse(bad).unwrap();
            let err = resolve(file, Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("hooks.timeout_secs"), "{err}");
        }
        assert!(FileConfig::parse("[hooks]\nshell = true").is_err());
    }

    #[test]
    fn files_versions_and_quota() {
        let file = FileConfig::parse("[files]\nversions = 0\nquota_bytes = 1048576").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(s.node.files.versions, 0);
        assert_eq!(s.node.files.quota, Some(1_048_576));
        let file = FileConfig::parse("[files]\nquota_bytes = 0").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(s.node.files.quota, None, "0 is unlimited");
        assert_eq!(s.node.files.versions, 3);
    }

    #[test]
    fn store_cache_mib() {
        let defaults = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(defaults.node.store_cache_bytes, 32 << 20);
        let file = FileConfig::parse("[store]\ncache_mib = 2048").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(s.node.store_cache_bytes, 2048 << 20);
        for bad in ["[store]\ncache_mib = 0", "[store]\ncache_mib = 1048577"] {
            let file = FileConfig::parse(bad).unwrap();
            let err = resolve(file, Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("store.cache_mib"), "{err}");
        }
        assert!(FileConfig::parse("[store]\ncache_mib = -1").is_err());
        assert!(FileConfig::parse("[store]\ncache = 1").is_err());
    }

    #[test]
    fn min_free_bytes() {
        let defaults = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(defaults.node.min_free_bytes, 1 << 30);
        let file = FileConfig::parse("[files]\nmin_free_bytes = 0").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(s.node.min_free_bytes, 0, "0 keeps no reserve");
        let file = FileConfig::parse("[files]\nmin_free_bytes = 5000000000").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(s.node.min_free_bytes, 5_000_000_000);
        assert!(FileConfig::parse("[files]\nmin_free_bytes = -1").is_err());
    }

    #[test]
    fn partial_expiry_days() {
        let defaults = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(defaults.node.partial_expiry, Some(DEFAULT_PARTIAL_EXPIRY));
        assert_eq!(DEFAULT_PARTIAL_EXPIRY, Duration::from_secs(7 * 86_400));
        let file = FileConfig::parse("[files]\npartial_expiry_days = 30").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            s.node.partial_expiry,
            Some(Duration::from_secs(30 * 86_400))
        );
        let file = FileConfig::parse("[files]\npartial_expiry_days = 0").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(s.node.partial_expiry, None, "0 never deletes");
        let file = FileConfig::parse("[files]\npartial_expiry_days = 3650").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            s.node.partial_expiry,
            Some(Duration::from_secs(3650 * 86_400))
        );
        let file = FileConfig::parse("[files]\npartial_expiry_days = 3651").unwrap();
        let err = resolve(file, Overrides::default()).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "files.partial_expiry_days",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("0..=3650"), "{err}");
        for bad in ["-1", "1.5", "\"7d\"", "99999999999999999999"] {
            let err =
                FileConfig::parse(&format!("[files]\npartial_expiry_days = {bad}")).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{bad}: {err}");
            assert!(
                err.to_string().contains("partial_expiry_days"),
                "{bad}: {err}"
            );
        }
    }

    const FPR_A: &str = "SHA256:0101010101010101010101010101010101010101010101010101010101010101";
    const FPR_B: &str = "SHA256:02020202020202020202020202020202020202020202020202020202020202ab";

    #[test]
    fn peers_are_read_in_order_with_optional_addresses() {
        let defaults = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert!(defaults.node.peers.is_empty(), "no peer by default");
        let file = FileConfig::parse(&format!(
            "[[peers]]\nfingerprint = \"{FPR_A}\"\naddress = \"127.0.0.1:7118\"\n\
             [[peers]]\nfingerprint = \"{FPR_B}\"\n"
        ))
        .unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            s.node.peers,
            vec![
                PeerConfig {
                    fingerprint: FPR_A.parse().unwrap(),
                    address: Some("127.0.0.1:7118".into()),
                },
                PeerConfig {
                    fingerprint: FPR_B.parse().unwrap(),
                    address: None,
                },
            ]
        );
        let own: Fingerprint = FPR_B.parse().unwrap();
        match check_own_fingerprint(&s, &own) {
            Err(ConfigError::OwnPeer { fingerprint }) => assert_eq!(fingerprint, own),
            other => panic!("{other:?}"),
        }
        let other: Fingerprint = FPR_B.replace("ab", "cd").parse().unwrap();
        check_own_fingerprint(&s, &other).unwrap();
    }

    #[test]
    fn follow_lists_the_origins_replicated() {
        let defaults = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(defaults.node.follow, None, "every origin by default");
        let file = FileConfig::parse(&format!("follow = [\"{FPR_A}\", \" {FPR_B} \"]\n")).unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            s.node.follow,
            Some(vec![FPR_A.parse().unwrap(), FPR_B.parse().unwrap()])
        );
        let file = FileConfig::parse("follow = []\n").unwrap();
        let s = resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            s.node.follow,
            Some(Vec::new()),
            "an empty list follows none"
        );
        let file = FileConfig::parse(&format!("follow = [\"{FPR_A}\", \"SHA256:00\"]\n")).unwrap();
        match resolve(file, Overrides::default()) {
            Err(ConfigError::FollowFingerprint { index, value }) => {
                assert_eq!((index, value.as_str()), (1, "SHA256:00"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_peers_are_refused() {
        for (text, index) in [
            ("fingerprint = \"SHA256:0102\"".to_owned(), 0),
            (format!("fingerprint = \"{}\"", &FPR_A[7..]), 0),
            (format!("fingerprint = \"{}\"", FPR_A.replace('1', "g")), 0),
            ("fingerprint = \"\"".to_owned(), 0),
        ] {
            let file = FileConfig::parse(&format!("[[peers]]\n{text}")).unwrap();
            match resolve(file, Overrides::default()) {
                Err(ConfigError::PeerFingerprint { index: i, .. }) => {
                    assert_eq!(i, index, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for address in ["nohost", ":7117", "host:", "host:99999", "host:port", ""] {
            let file = FileConfig::parse(&format!(
                "[[peers]]\nfingerprint = \"{FPR_A}\"\naddress = \"{address}\""
            ))
            .unwrap();
            let err = resolve(file, Overrides::default()).unwrap_err();
            assert!(
                matches!(&err, ConfigError::PeerAddress { index: 0, value } if value == address),
                "{address}: {err}"
            );
        }
        let file = FileConfig::parse(&format!(
            "[[peers]]\nfingerprint = \"{FPR_A}\"\n[[peers]]\nfingerprint = \"{FPR_B}\"\n\
             [[peers]]\nfingerprint = \"{}\"\naddress = \"h:1\"",
            FPR_B.to_uppercase()
        ))
        .unwrap();
        match resolve(file, Overrides::default()) {
            Err(ConfigError::DuplicatePeer { index, fingerprint }) => {
                assert_eq!(index, 2);
                assert_eq!(fingerprint.to_string(), FPR_B, "hex digits in either case");
            }
            other => panic!("{other:?}"),
        }
        for text in [
            "[[peers]]\naddress = \"h:1\"",
            "[[peers]]\nfingerprint = \"x\"\nport = 1",
            "peers = 5",
        ] {
            assert!(
                matches!(FileConfig::parse(text), Err(ConfigError::Parse(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let err = FileConfig::load(Path::new("/nonexistent/vserv.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }
}
