//! The replication bench's servers as separate `vserv serve` processes on 127.0.0.1 (the
//! default mode): each data directory is prepared in this process first (its identity, the
//! bench user, and for the catch-up A's backlog appended through an in-process ledger), then
//! closed and served by a child process whose configuration lists its `[[peers]]`. The
//! children are killed when their [`Member`] is dropped, on every exit path.
//!
//! Nothing in the servers is instrumented: when an entry became durable on a server is
//! learnt from outside by a client session polling `rhead ORIGIN` on it (`watch.rs`).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use vserv_blocking::Client;
use vserv_core::commands::UserRole;
use vserv_core::{Fingerprint, ServerKey};
use vserv_service::Node;
use vserv_store::FjallStore;

use super::Throughput;
use super::cluster::{PASSWORD, USER, log_in};
use super::observer::CommitLog;
use super::watch::Watcher;
use crate::bench::server::ServerProcess;
use crate::config::Runtime;

/// How the server processes are started.
#[derive(Debug, Clone)]
pub(super) struct Launch {
    /// The `vserv` binary run as `serve` (this one, or an older build to compare).
    pub(super) exe: PathBuf,
    /// The runtime each server runs.
    pub(super) runtime: Runtime,
}

/// A data directory prepared for a server, not served yet.
pub(super) struct Prepared {
    dir: tempfile::TempDir,
    key: ServerKey,
}

impl Prepared {
    /// Creates a data directory with a new identity and the bench user; when `backlog` is
    /// `Some((entries, body))`, appends that many entries to the own feed (in big batches,
    /// through an in-process ledger) and reports how fast.
    pub(super) fn new(
        backlog: Option<(u64, u64)>,
    ) -> anyhow::Result<(Prepared, Option<Throughput>)> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let data = dir.path().join("data");
        let mut rng = vserv_service::system::os_rng().context("no OS randomness")?;
        let loaded = vserv_store::identity::load_or_create(&data, &mut *rng)
            .context("creating a server identity")?;
        let key = loaded.identity.public_key();
        let store = FjallStore::open(&data).context("opening a fjall store")?;
        let node = Node::builder(Arc::new(loaded.identity), super::super::node_settings())
            .store(Arc::new(store))
            .build()
            .context("building the node")?;
        node.accounts()
            .create(
                USER,
                UserRole::User,
                PASSWORD.as_bytes(),
                vserv_service::unix_now(),
            )
            .context("creating the benchmark user")?;
        let appended = match backlog {
            Some((n, body)) => {
                let start = Instant::now();
                let bytes = super::append_backlog(node.ledger(), n, body)?;
                Some(Throughput::new(n, bytes, start.elapsed()))
            }
            None => None,
        };
        // Closes the store (and releases its lock) for the server process.
        drop(node);
        Ok((Prepared { dir, key }, appended))
    }

    /// The key of the identity created for it.
    pub(super) fn key(&self) -> ServerKey {
        self.key
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

/// A peer of a server: the key it proves, and its address if the server dials it.
pub(super) struct PeerOf {
    pub(super) fingerprint: Fingerprint,
    pub(super) address: Option<String>,
}

/// The `serve` configuration: `runtime`, no limit on connections from one address (every
/// client is 127.0.0.1), no free-space reserve, and `peers`.
fn config_text(runtime: Runtime, peers: &[PeerOf]) -> String {
    let runtime = match runtime {
        Runtime::Blocking => "blocking",
        Runtime::Smol => "smol",
    };
    let mut text = format!(
        "runtime = \"{runtime}\"\nmax_unauthenticated_per_ip = 0\n\
         [rate_limit]\nconnections = 0\n[files]\nmin_free_bytes = 0\n"
    );
    for peer in peers {
        let _ = writeln!(text, "[[peers]]\nfingerprint = \"{}\"", peer.fingerprint);
        if let Some(address) = &peer.address {
            let _ = writeln!(text, "address = \"{address}\"");
        }
    }
    text
}

/// One `vserv serve` process of the bench. Dropping it stops its watchers, kills the
/// process (and waits for it), then removes its data directory.
pub(super) struct Member {
    watchers: Vec<Watcher>,
    server: ServerProcess,
    key: ServerKey,
    /// When each watched feed's head was first seen on this member.
    log: Arc<CommitLog>,
    prepared: Prepared,
}

impl Member {
    /// Serves `prepared` in a child process of `launch` on 127.0.0.1 (port chosen by the
    /// OS), with `peers`.
    pub(super) fn start(
        launch: &Launch,
        prepared: Prepared,
        peers: &[PeerOf],
    ) -> anyhow::Result<Member> {
        let config = prepared.dir.path().join("serve.toml");
        std::fs::write(&config, config_text(launch.runtime, peers))
            .context("writing a server configuration")?;
        let data = prepared.data();
        let server = ServerProcess::start(
            &launch.exe,
            &[
                OsStr::new("--config"),
                config.as_os_str(),
                OsStr::new("--data"),
                data.as_os_str(),
            ],
        )?;
        if server.key()? != prepared.key.fingerprint() {
            anyhow::bail!("the server process serves another key than the one prepared");
        }
        Ok(Member {
            watchers: Vec::new(),
            server,
            key: prepared.key,
            log: Arc::new(CommitLog::default()),
            prepared,
        })
    }

    /// The CPU time (user and system) the process used so far, from `/proc` (`None` where
    /// it cannot be read).
    pub(super) fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.server.pid())).ok()?;
        // Fields after the command name (which may hold spaces, inside parentheses):
        // state is field 3, utime 14 and stime 15, in clock ticks of 1/100 s (USER_HZ).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks.saturating_mul(10)))
    }

    /// The address it listens on.
    pub(super) fn address(&self) -> &str {
        &self.server.addr
    }

    /// Its key (the origin of its feed).
    pub(super) fn key(&self) -> ServerKey {
        self.key
    }

    /// What its watchers saw.
    pub(super) fn log(&self) -> &Arc<CommitLog> {
        &self.log
    }

    /// A client session on it, logged in as the bench user.
    pub(super) fn client(&self) -> anyhow::Result<Client> {
        log_in(
            self.address(),
            self.key.fingerprint(),
            &self.known_servers(),
        )
    }

    fn known_servers(&self) -> PathBuf {
        known_servers_in(self.prepared.dir.path())
    }

    /// Starts polling `rhead ORIGIN` on a session of its own, every `interval` (zero: as
    /// fast as the round trips go), into [`Member::log`].
    pub(super) fn watch(&mut self, origin: ServerKey, interval: Duration) -> anyhow::Result<()> {
        let client = self.client()?;
        self.watchers
            .push(Watcher::start(client, origin, interval, self.log.clone())?);
        Ok(())
    }

    /// The median round trip of its watchers' polls since the last call (the resolution of
    /// the commit instants they report; the largest if several watch), if any poll was made.
    pub(super) fn take_poll_round_trip(&self) -> Option<Duration> {
        self.watchers
            .iter()
            .filter_map(Watcher::take_median_round_trip)
            .max()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Watchers first, so none sees its server vanish; the server process is killed when
        // `server` is dropped right after.
        self.watchers.clear();
    }
}

fn known_servers_in(dir: &Path) -> PathBuf {
    dir.join("known_servers")
}

/// `count` server processes in a line, each dialing the one before it (the first only
/// listens), all serving.
pub(super) fn line(launch: &Launch, count: usize) -> anyhow::Result<Vec<Member>> {
    let mut prepared = Vec::with_capacity(count);
    for _ in 0..count {
        prepared.push(Prepared::new(None)?.0);
    }
    let keys: Vec<ServerKey> = prepared.iter().map(Prepared::key).collect();
    let mut members: Vec<Member> = Vec::with_capacity(count);
    for (i, p) in prepared.into_iter().enumerate() {
        let mut peers = Vec::new();
        if let Some(before) = members.last() {
            peers.push(PeerOf {
                fingerprint: before.key().fingerprint(),
                address: Some(before.address().to_owned()),
            });
        }
        if let Some(after) = keys.get(i + 1) {
            peers.push(PeerOf {
                fingerprint: after.fingerprint(),
                address: None,
            });
        }
        members.push(Member::start(launch, p, &peers)?);
    }
    Ok(members)
}
