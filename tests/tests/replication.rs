//! Replication over loopback on the blocking and smol runtimes: three servers in a line,
//! each dialing the one before it, converge on backlogs and live appends; a server that
//! stops and comes back is caught up again (the dialer reconnects with backoff). Peers
//! added at runtime (`padd`) link and replicate at once; a removed one (`pdel`) has its
//! link closed and is dialed no more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use vserv_core::ServerIdentity;
use vserv_service::ledger::{CheckReport, NewRecord};
use vserv_service::replicas::Replicas;
use vserv_service::{Node, NodeSettings, PeerConfig};
use vserv_store::kv::Store;
use vserv_store::memory::MemoryStore;
use vserv_tests::tcp::{Blocking, Smol, Tcp};

fn identity(seed: u64) -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(seed),
    ))
}

/// A node over `store` with `peers`.
fn node(identity: &Arc<ServerIdentity>, store: &Arc<dyn Store>, peers: Vec<PeerConfig>) -> Node {
    node_with(identity, store, peers, false)
}

/// A node over `store` with `peers`, replicating even without any when `replicate`.
fn node_with(
    identity: &Arc<ServerIdentity>,
    store: &Arc<dyn Store>,
    peers: Vec<PeerConfig>,
    replicate: bool,
) -> Node {
    let settings = NodeSettings {
        partial_expiry: None,
        peers,
        replicate,
        ..NodeSettings::insecure_fast("repl")
    };
    Node::builder(identity.clone(), settings)
        .store(store.clone())
        .build()
        .expect("node")
}

fn append(node: &Node, tag: &str, from: usize, n: usize) {
    let records = (from..from + n)
        .map(|i| NewRecord {
            author: "alice".into(),
            kind: "note".into(),
            record_id: format!("{tag}-{i}").into_bytes(),
            body: format!("record {i} of {tag}").into_bytes(),
            timestamp: 1_700_000_000_000,
        })
        .collect();
    let results = node.ledger().append_batch(records);
    assert!(results.iter().all(Result::is_ok), "appends");
}

/// Every held feed's (origin, seq), sorted.
fn holdings(store: &Arc<dyn Store>, own: &Arc<ServerIdentity>) -> Vec<(String, u64)> {
    let replicas = Replicas::new(store.clone(), own.public_key());
    let mut held: Vec<(String, u64)> = replicas
        .clock()
        .expect("clock")
        .into_iter()
        .map(|h| (h.origin.fingerprint().to_string(), h.seq))
        .collect();
    held.sort();
    held
}

/// Waits until every store holds the feeds of `ids` at `sizes`.
fn wait_converged(stores: &[Arc<dyn Store>], ids: &[Arc<ServerIdentity>], sizes: &[u64]) {
    let mut want: Vec<(String, u64)> = ids
        .iter()
        .zip(sizes)
        .map(|(id, s)| (id.public_key().fingerprint().to_string(), *s))
        .collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let held: Vec<_> = stores
            .iter()
            .zip(ids)
            .map(|(s, id)| holdings(s, id))
            .collect();
        if held.iter().all(|h| *h == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence on {want:?}: {held:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn a_line_of_three_converges_and_heals<R: Tcp>() {
    let ids: Vec<_> = (0..3).map(|i| identity(900 + i)).collect();
    let stores: Vec<Arc<dyn Store>> = (0..3)
        .map(|_| Arc::new(MemoryStore::new()) as Arc<dyn Store>)
        .collect();
    let fp = |i: usize| ids[i].public_key().fingerprint();
    // A listens; B dials A; C dials B.
    let a = node(
        &ids[0],
        &stores[0],
        vec![PeerConfig {
            fingerprint: fp(1),
            address: None,
        }],
    );
    append(&a, "a", 0, 500);
    let server_a = R::start(ids[0].clone(), a.service());
    let b_peers = |c_address: Option<String>| {
        vec![
            PeerConfig {
                fingerprint: fp(0),
                address: Some(R::address(&server_a)),
            },
            PeerConfig {
                fingerprint: fp(2),
                address: c_address,
            },
        ]
    };
    let b = node(&ids[1], &stores[1], b_peers(None));
    append(&b, "b", 0, 30);
    let server_b = R::start(ids[1].clone(), b.service());
    let c = node(
        &ids[2],
        &stores[2],
        vec![PeerConfig {
            fingerprint: fp(1),
            address: Some(R::address(&server_b)),
        }],
    );
    append(&c, "c", 0, 3);
    let server_c = R::start(ids[2].clone(), c.service());
    wait_converged(&stores, &ids, &[500, 30, 3]);
    // Live appends travel the line both ways.
    append(&c, "c", 3, 4);
    append(&a, "a", 500, 2);
    wait_converged(&stores, &ids, &[502, 30, 7]);
    // A stops; appends meanwhile; A comes back on its store at its address, and B (which
    // dials it) reconnects with backoff: everything converges again.
    let a_address = R::address(&server_a);
    R::stop(server_a);
    drop(a);
    append(&b, "b", 30, 5);
    append(&c, "c", 7, 1);
    let a = node(
        &ids[0],
        &stores[0],
        vec![PeerConfig {
            fingerprint: fp(1),
            address: None,
        }],
    );
    append(&a, "a", 502, 3);
    let server_a = R::start_at(ids[0].clone(), a.service(), &a_address);
    wait_converged(&stores, &ids, &[505, 35, 8]);
    // Every replica verifies against its origin's chain and signed head.
    for (store, own) in stores.iter().zip(&ids) {
        let replicas = Replicas::new(store.clone(), own.public_key());
        for head in replicas.clock().expect("clock") {
            let report = replicas.feed(head.origin).unwrap().check().expect("check");
            assert!(
                matches!(report, CheckReport::Ok { seq } if seq == head.seq),
                "{report:?}"
            );
        }
    }
    R::stop(server_c);
    R::stop(server_b);
    R::stop(server_a);
}

#[test]
fn blocking_a_line_of_three_converges_and_heals() {
    a_line_of_three_converges_and_heals::<Blocking>();
}

#[test]
fn smol_a_line_of_three_converges_and_heals() {
    a_line_of_three_converges_and_heals::<Smol>();
}

/// Whether `node` reports a link up with `peer`.
fn linked(node: &Node, peer: &ServerIdentity) -> bool {
    let status = node.service().peer_status(0).expect("status");
    status
        .peers
        .iter()
        .any(|p| p.fingerprint == peer.public_key().fingerprint() && p.connected)
}

/// Waits until `cond` holds (or fails after 30 s).
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn runtime_peers_link_at_once_and_a_removed_one_is_dropped<R: Tcp>() {
    let ids: Vec<_> = (0..2).map(|i| identity(950 + i)).collect();
    let stores: Vec<Arc<dyn Store>> = (0..2)
        .map(|_| Arc::new(MemoryStore::new()) as Arc<dyn Store>)
        .collect();
    let fp = |i: usize| ids[i].public_key().fingerprint();
    // Neither has a configured peer.
    let a = node_with(&ids[0], &stores[0], Vec::new(), true);
    let b = node_with(&ids[1], &stores[1], Vec::new(), true);
    append(&a, "a", 0, 40);
    append(&b, "b", 0, 3);
    let server_a = R::start(ids[0].clone(), a.service());
    let server_b = R::start(ids[1].clone(), b.service());
    // A accepts B's links; B dials A: added while both serve, they link and replicate.
    a.service()
        .add_peer(PeerConfig {
            fingerprint: fp(1),
            address: None,
        })
        .expect("add on a");
    b.service()
        .add_peer(PeerConfig {
            fingerprint: fp(0),
            address: Some(R::address(&server_a)),
        })
        .expect("add on b");
    wait_converged(&stores, &ids, &[40, 3]);
    wait_for("the link on both sides", || {
        linked(&a, &ids[1]) && linked(&b, &ids[0])
    });
    append(&a, "a", 40, 2);
    wait_converged(&stores, &ids, &[42, 3]);
    // B removes A: the link closes on both sides, B no longer dials A and lists it no more.
    b.service().remove_peer(&fp(0)).expect("remove on b");
    wait_for("the link to close", || {
        !linked(&a, &ids[1]) && !linked(&b, &ids[0])
    });
    assert!(b.service().peer_status(0).expect("status").peers.is_empty());
    let closed = a.service().peer_status(0).expect("status");
    let why = closed.peers[0].last_error.clone().unwrap_or_default();
    assert!(why.contains("removed you as a peer"), "{why}");
    // Past several of the shortest backoffs, nothing was dialed: no link, and A's appends
    // stay on A.
    append(&a, "a", 42, 1);
    std::thread::sleep(DIAL_WAIT);
    assert!(!linked(&a, &ids[1]), "B dialed A after removing it");
    assert_eq!(holdings(&stores[1], &ids[1]), {
        let mut want = vec![(fp(0).to_string(), 42), (fp(1).to_string(), 3)];
        want.sort();
        want
    });
    R::stop(server_b);
    R::stop(server_a);
}

/// How long a removed peer is watched for a redial: four of the shortest backoffs.
const DIAL_WAIT: Duration = vserv_service::DIAL_BACKOFF_MIN.saturating_mul(4);

#[test]
fn blocking_runtime_peers_link_at_once_and_a_removed_one_is_dropped() {
    runtime_peers_link_at_once_and_a_removed_one_is_dropped::<Blocking>();
}

#[test]
fn smol_runtime_peers_link_at_once_and_a_removed_one_is_dropped() {
    runtime_peers_link_at_once_and_a_removed_one_is_dropped::<Smol>();
}
