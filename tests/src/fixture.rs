//! Per-test scratch state and the servers the cases start: in-memory nodes, or a node whose
//! homes are on disk in the fixture's directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vserv_core::{Config, ServerIdentity};
use vserv_service::client::ClientOptions;
use vserv_service::{Node, NodeBuilder, NodeSettings, Service};

use crate::Runtime;

/// Per-test scratch state: a data dir and a known_servers path.
pub struct Fixture {
    _dir: tempfile::TempDir,
    /// known_servers file for clients.
    pub known_servers: PathBuf,
    /// The server identity.
    pub identity: Arc<ServerIdentity>,
}

impl Fixture {
    /// A fresh fixture with an identity derived from `seed`.
    pub fn new(seed: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let known_servers = dir.path().join("known_servers");
        Fixture {
            identity: Arc::new(identity(seed)),
            known_servers,
            _dir: dir,
        }
    }

    /// Client options using this fixture's known_servers.
    pub fn options(&self) -> ClientOptions {
        ClientOptions::new(&self.known_servers)
    }

    /// The service for this fixture's identity.
    pub fn service(&self) -> Service {
        service(&self.identity)
    }

    /// A builder of this fixture's node with `settings` (see [`node`]).
    pub fn node(&self, settings: NodeSettings) -> NodeBuilder {
        node(&self.identity, settings)
    }

    /// Where the fixture's files live.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// A deterministic identity for tests.
pub fn identity(seed: u64) -> ServerIdentity {
    use rand::SeedableRng;
    ServerIdentity::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
}

/// The settings of the suite's servers: named `test-server`, the cheapest argon2, the
/// ledger's index keys stored every 8 entries (so that every runtime runs bulks beside its
/// commits in the ledger cases), every other setting a default server's.
pub fn settings() -> NodeSettings {
    NodeSettings {
        ledger_index_bulk: SUITE_INDEX_BULK,
        ..NodeSettings::insecure_fast("test-server")
    }
}

/// [`NodeSettings::ledger_index_bulk`] of the suite's servers.
pub const SUITE_INDEX_BULK: usize = 8;

/// A builder of the in-memory node of `identity` with `settings`, its accounts salted by a
/// fixed seed (pieces such as a tree on disk can still be chosen).
pub fn node(identity: &Arc<ServerIdentity>, settings: NodeSettings) -> NodeBuilder {
    use rand::SeedableRng;
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(7));
    Node::builder(identity.clone(), settings).rng(rng)
}

/// The service of an in-memory node for `identity` (accounts, ledger and homes in memory).
pub fn service(identity: &Arc<ServerIdentity>) -> Service {
    service_with_policy(identity, vserv_service::Policy::default())
}

/// Like [`service`], with the given abuse limits and `tout` bounds.
pub fn service_with_policy(
    identity: &Arc<ServerIdentity>,
    policy: vserv_service::Policy,
) -> Service {
    node(
        identity,
        NodeSettings {
            policy,
            ..settings()
        },
    )
    .build()
    .expect("in-memory node")
    .service()
}

/// Starts a default server for `fx`.
pub fn start<R: Runtime>(fx: &Fixture) -> R::Server {
    R::start(fx.identity.clone(), fx.service(), 64, Config::default())
}

/// A server for `fx` keeping homes on disk in the fixture's directory.
pub fn start_with_files<R: Runtime>(fx: &Fixture) -> R::Server {
    let tree = vserv_service::files::DiskTree::open(
        fx.dir(),
        vserv_service::files::FilesConfig::default(),
    )
    .expect("file tree");
    let service = fx
        .node(settings())
        .files(Arc::new(tree))
        .build()
        .expect("node")
        .service();
    R::start(fx.identity.clone(), service, 64, Config::default())
}
