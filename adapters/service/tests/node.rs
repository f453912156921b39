//! [`Node`]: one data directory opens to the same server every time, in-memory nodes are
//! assembled the same way, and the start-up policy runs before anything is served.

use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::ServerIdentity;
use vserv_core::commands::UserRole;
use vserv_service::accounts::UserName;
use vserv_service::files::{FilesConfig, UserPath};
use vserv_service::{Node, NodeError, NodeSettings};

fn rng(seed: u64) -> Box<rand::rngs::StdRng> {
    Box::new(rand::rngs::StdRng::seed_from_u64(seed))
}

fn identity(seed: u64) -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(&mut *rng(seed)))
}

/// The first open creates the identity; the second finds it, with the accounts and the
/// ledger kept. A second node on a directory in use is refused.
#[test]
fn a_data_directory_reopens_to_the_same_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let settings = NodeSettings::insecure_fast("node-test");
    let fingerprint = {
        let node = Node::open(&data, &settings).expect("first open");
        let created = node.startup().identity_created.clone();
        assert_eq!(created.as_deref().map(|p| p.starts_with(&data)), Some(true));
        assert_eq!(node.startup().data_loss, None);
        node.accounts()
            .create("alice", UserRole::User, b"password-1", 0)
            .expect("user");
        let service = node.service();
        assert_eq!(service.info().name, "node-test");
        assert_eq!(service.info().fingerprint, node.info().fingerprint);
        assert!(service.ledger().is_some());
        assert!(matches!(
            Node::open(&data, &settings),
            Err(NodeError::Store { .. })
        ));
        node.info().fingerprint
    };
    let node = Node::open(&data, &settings).expect("second open");
    assert_eq!(node.startup().identity_created, None);
    assert_eq!(node.info().fingerprint, fingerprint);
    let alice = UserName::parse("alice").expect("name");
    assert!(node.accounts().get(&alice).expect("lookup").is_some());
}

/// An in-memory node has homes (with the settings' quota), a ledger signed by its identity,
/// and the settings' policy; the same seed gives the same node.
#[test]
fn an_in_memory_node_is_a_whole_server() {
    let settings = NodeSettings {
        files: FilesConfig {
            quota: Some(10),
            ..FilesConfig::default()
        },
        ..NodeSettings::insecure_fast("memory")
    };
    let node = Node::in_memory(identity(1), settings.clone(), rng(2)).expect("node");
    assert_eq!(node.settings(), &settings);
    assert_eq!(node.startup().settled.map(|s| s.settled()), Some(0));
    assert_eq!(node.startup().swept.map(|s| s.removed), Some(0));
    let alice = UserName::parse("alice").expect("name");
    let path = UserPath::from_names(vec!["f".into()]).expect("path");
    assert!(
        node.files()
            .replace_file(&alice, &path, b"0123456789ab")
            .is_err()
    );
    node.files()
        .replace_file(&alice, &path, b"0123")
        .expect("within quota");
    assert!(
        node.ledger().head().expect("head").is_none(),
        "an empty ledger"
    );
    assert!(
        Arc::ptr_eq(
            node.service().unauthenticated(),
            node.service().unauthenticated()
        ),
        "every service handed out is the node's one service"
    );
    let again = Node::in_memory(identity(1), settings, rng(2)).expect("node");
    assert_eq!(again.info().fingerprint, node.info().fingerprint);
    assert_eq!(again.info().name, "memory");
}

/// With expiry disabled, neither the start nor a later call sweeps.
#[test]
fn disabled_expiry_never_sweeps() {
    let settings = NodeSettings {
        partial_expiry: None,
        ..NodeSettings::insecure_fast("no-expiry")
    };
    let node = Node::in_memory(identity(3), settings, rng(4)).expect("node");
    assert_eq!(node.startup().swept, None);
    assert_eq!(node.sweep_partials(std::time::SystemTime::now()), None);
}
