//! Peers added and removed at runtime (`padd`/`pdel`, spec/replication.md §2.2) at the
//! node level: kept in the store across a restart of the crash-modelling in-memory store
//! (a crash after the commit keeps it, one before it keeps nothing), merged with the config
//! file's peers, and every refusal typed.

use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::commands::{MAX_PEERS, PeerSource};
use vserv_core::{Fingerprint, ServerIdentity};
use vserv_service::{Node, NodeSettings, PeerAdminError, PeerConfig};
use vserv_store::kv::Store;
use vserv_store::memory::MemoryStore;

fn identity(seed: u64) -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(seed),
    ))
}

fn node(
    identity: &Arc<ServerIdentity>,
    store: &Arc<MemoryStore>,
    peers: Vec<PeerConfig>,
    replicate: bool,
) -> Node {
    let settings = NodeSettings {
        partial_expiry: None,
        peers,
        replicate,
        ..NodeSettings::insecure_fast("peers")
    };
    Node::builder(identity.clone(), settings)
        .store(store.clone() as Arc<dyn Store>)
        .build()
        .expect("node")
}

/// (fingerprint, address, source) of every peer the node reports.
fn listed(node: &Node) -> Vec<(Fingerprint, Option<String>, PeerSource)> {
    node.service()
        .peer_status(0)
        .expect("status")
        .peers
        .into_iter()
        .map(|p| (p.fingerprint, p.address, p.source))
        .collect()
}

fn peer(n: u8, address: Option<&str>) -> PeerConfig {
    PeerConfig {
        fingerprint: Fingerprint([n; 32]),
        address: address.map(str::to_owned),
    }
}

#[test]
fn a_runtime_peer_survives_a_restart_and_a_removed_one_stays_removed() {
    let id = identity(1);
    let store = Arc::new(MemoryStore::new());
    let first = node(&id, &store, Vec::new(), true);
    first
        .service()
        .add_peer(peer(5, Some("a.example:7118")))
        .unwrap();
    first.service().add_peer(peer(6, None)).unwrap();
    // Adding again changes the address.
    first
        .service()
        .add_peer(peer(5, Some("b.example:7118")))
        .unwrap();
    drop(first);
    store.crash_now();
    store.restart();
    // Reopened without `replicate` and without config peers: the stored peers turn
    // replication on.
    let second = node(&id, &store, Vec::new(), false);
    assert_eq!(
        listed(&second),
        vec![
            (
                Fingerprint([5; 32]),
                Some("b.example:7118".into()),
                PeerSource::Runtime
            ),
            (Fingerprint([6; 32]), None, PeerSource::Runtime),
        ]
    );
    second.service().remove_peer(&Fingerprint([6; 32])).unwrap();
    // A removal that crashes before its commit changes nothing.
    store.crash_after_commits(0);
    assert!(matches!(
        second.service().remove_peer(&Fingerprint([5; 32])),
        Err(PeerAdminError::Store(_))
    ));
    drop(second);
    store.restart();
    let third = node(&id, &store, Vec::new(), false);
    assert_eq!(
        listed(&third),
        vec![(
            Fingerprint([5; 32]),
            Some("b.example:7118".into()),
            PeerSource::Runtime
        )]
    );
}

#[test]
fn config_peers_win_and_every_refusal_is_typed() {
    let id = identity(2);
    let store = Arc::new(MemoryStore::new());
    let own = id.public_key().fingerprint();
    let plain = node(&id, &Arc::new(MemoryStore::new()), Vec::new(), false);
    assert!(matches!(
        plain.service().add_peer(peer(5, None)),
        Err(PeerAdminError::NotReplicating)
    ));
    let first = node(&id, &store, Vec::new(), true);
    // Stored as a runtime peer, then configured in the file: the file's entry wins.
    first
        .service()
        .add_peer(peer(7, Some("old.example:1")))
        .unwrap();
    drop(first);
    let node = node(&id, &store, vec![peer(7, Some("file.example:1"))], false);
    assert_eq!(
        listed(&node),
        vec![(
            Fingerprint([7; 32]),
            Some("file.example:1".into()),
            PeerSource::Config
        )]
    );
    let service = node.service();
    assert!(matches!(
        service.remove_peer(&Fingerprint([7; 32])),
        Err(PeerAdminError::InConfig(f)) if f == Fingerprint([7; 32])
    ));
    assert!(matches!(
        service.add_peer(peer(7, None)),
        Err(PeerAdminError::InConfig(_))
    ));
    assert!(matches!(
        service.remove_peer(&Fingerprint([8; 32])),
        Err(PeerAdminError::Unknown(_))
    ));
    assert!(matches!(
        service.add_peer(PeerConfig {
            fingerprint: own,
            address: None
        }),
        Err(PeerAdminError::OwnKey(_))
    ));
    for bad in ["no-port", "h:0", "h: 1", ":1"] {
        assert!(
            matches!(
                service.add_peer(peer(9, Some(bad))),
                Err(PeerAdminError::BadAddress(_))
            ),
            "{bad}"
        );
    }
    // One config peer: MAX_PEERS - 1 more fit, then no more.
    for n in 0..MAX_PEERS - 1 {
        let mut fingerprint = [0x40; 32];
        fingerprint[..8].copy_from_slice(&(n as u64).to_be_bytes());
        service
            .add_peer(PeerConfig {
                fingerprint: Fingerprint(fingerprint),
                address: None,
            })
            .unwrap();
    }
    assert!(matches!(
        service.add_peer(peer(9, None)),
        Err(PeerAdminError::TooMany)
    ));
    assert_eq!(listed(&node).len(), MAX_PEERS);
}
