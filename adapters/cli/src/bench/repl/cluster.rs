//! The replication bench's servers with `--in-process`: blocking [`Server`]s of this process
//! on 127.0.0.1 port 0, each over its own [`Node`] with a fjall store in a temporary
//! directory (observed by a [`CommitLog`], which gives the exact instant of every commit)
//! and its replication peers configured, as `vserv serve` builds them. Also the bench
//! user's login, shared with the process mode.

use std::sync::Arc;

use anyhow::Context;
use rand::SeedableRng;
use vserv_blocking::{Client, Server, ServerHandle, ServerOptions};
use vserv_core::commands::{Command, Credential, SecretBytes, UserRole};
use vserv_core::{Fingerprint, ServerIdentity, ServerKey};
use vserv_service::client::ClientOptions;
use vserv_service::{Node, NodeSettings, PeerConfig};
use vserv_store::FjallStore;
use vserv_store::kv::Store;

use super::observer::{CommitLog, Observed};

/// The user every bench client logs in as.
pub(super) const USER: &str = "bench";
/// Its password.
pub(super) const PASSWORD: &str = "bench-password-1";

/// A throwaway server identity (the bench's keys protect nothing).
pub(super) fn identity(seed: u64) -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(seed),
    ))
}

/// A peer this member accepts links from, and dials when `address` is set.
pub(super) fn peer(identity: &ServerIdentity, address: Option<String>) -> PeerConfig {
    PeerConfig {
        fingerprint: identity.public_key().fingerprint(),
        address,
    }
}

/// One server of the bench. Dropping it stops the server, then removes its store.
pub(super) struct Member {
    node: Node,
    /// When each replica head was committed on this member.
    pub(super) log: Arc<CommitLog>,
    server: Option<ServerHandle>,
    /// The address it listens on.
    pub(super) address: String,
    dir: tempfile::TempDir,
}

impl Member {
    /// Opens a node of `identity` with `peers` over a new fjall store (with the bench user),
    /// not serving yet.
    pub(super) fn open(
        identity: &Arc<ServerIdentity>,
        peers: Vec<PeerConfig>,
    ) -> anyhow::Result<Member> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let fjall = FjallStore::open(&dir.path().join("data")).context("opening a fjall store")?;
        let log = Arc::new(CommitLog::default());
        let store: Arc<dyn Store> = Arc::new(Observed::new(Arc::new(fjall), log.clone()));
        let settings = NodeSettings {
            partial_expiry: None,
            peers,
            ..super::super::node_settings()
        };
        let node = Node::builder(identity.clone(), settings)
            .store(store)
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
        Ok(Member {
            node,
            log,
            server: None,
            address: String::new(),
            dir,
        })
    }

    /// Starts serving (and dialing its peers) on 127.0.0.1, port 0.
    pub(super) fn serve(&mut self) -> anyhow::Result<()> {
        let server = Server::bind(
            "127.0.0.1:0",
            self.node.identity().clone(),
            self.node.service(),
            ServerOptions::default(),
        )
        .context("starting a server on 127.0.0.1")?
        .spawn()
        .context("starting the accept thread")?;
        self.address = server.local_addr().to_string();
        self.server = Some(server);
        Ok(())
    }

    /// The node (its ledger, to append a backlog).
    pub(super) fn node(&self) -> &Node {
        &self.node
    }

    /// This member's key (the origin of its feed).
    pub(super) fn key(&self) -> ServerKey {
        self.node.identity().public_key()
    }

    fn fingerprint(&self) -> Fingerprint {
        self.key().fingerprint()
    }

    /// A client session on this member, logged in as the bench user.
    pub(super) fn client(&self) -> anyhow::Result<Client> {
        log_in(
            &self.address,
            self.fingerprint(),
            &self.dir.path().join("known_servers"),
        )
    }
}

/// A client session on the server at `address` (pinned to `fingerprint`), logged in as the
/// bench user.
pub(super) fn log_in(
    address: &str,
    fingerprint: Fingerprint,
    known_servers: &std::path::Path,
) -> anyhow::Result<Client> {
    let mut options = ClientOptions::new(known_servers.to_owned());
    options.pinned = Some(fingerprint);
    let mut client =
        Client::connect(address, &options).with_context(|| format!("connecting to {address}"))?;
    let login = Command::Login {
        user: USER.into(),
        credential: Credential::Password(SecretBytes::new(PASSWORD.as_bytes().to_vec())),
    };
    client.call(&login).context("logging in")?;
    Ok(client)
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// `count` members in a line, each dialing the one before it (the first only listens),
/// all serving.
pub(super) fn line(count: usize, seed: u64) -> anyhow::Result<Vec<Member>> {
    let ids: Vec<_> = (0..count as u64).map(|i| identity(seed + i)).collect();
    let mut members: Vec<Member> = Vec::with_capacity(count);
    for (i, id) in ids.iter().enumerate() {
        let mut peers = Vec::new();
        if let Some(before) = members.last() {
            peers.push(peer(&ids[i - 1], Some(before.address.clone())));
        }
        if let Some(after) = ids.get(i + 1) {
            peers.push(peer(after, None));
        }
        let mut member = Member::open(id, peers)?;
        member.serve()?;
        members.push(member);
    }
    Ok(members)
}
