//! Replication in the simulator: servers that list each other as peers dial, link and
//! exchange their feeds over the world's links, with the dials, the links' work and their
//! timers in the seed's schedule. A line of three servers converges (backlogs and live
//! appends), and the same seed gives the same trace.

use std::sync::Arc;
use std::time::Duration;

use vserv_core::{Config, ServerIdentity};
use vserv_service::ledger::NewRecord;
use vserv_service::replicas::Replicas;
use vserv_service::{Node, NodeSettings, PeerConfig};
use vserv_sim::{ServerSpec, World};

const LIMIT: Duration = Duration::from_secs(600);

/// `n` records for a feed, with ids unique to `tag`.
fn records(tag: &str, from: usize, n: usize) -> Vec<NewRecord> {
    (from..from + n)
        .map(|i| NewRecord {
            author: "alice".into(),
            kind: "note".into(),
            record_id: format!("{tag}-{i}").into_bytes(),
            body: format!("record {i} of {tag}").into_bytes(),
            timestamp: 1_700_000_000_000,
        })
        .collect()
}

/// The world with `n` servers in a line, each dialing the one before it; their nodes.
fn line(seed: u64, n: usize) -> (World, Vec<Node>) {
    let mut world = World::new(seed);
    let identities: Vec<Arc<ServerIdentity>> = (0..n)
        .map(|_| Arc::new(ServerIdentity::generate(&mut world.fork_rng())))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut peers = Vec::new();
        if i > 0 {
            peers.push(PeerConfig {
                fingerprint: identities[i - 1].public_key().fingerprint(),
                address: Some(World::server_address(i - 1)),
            });
        }
        if i + 1 < n {
            peers.push(PeerConfig {
                fingerprint: identities[i + 1].public_key().fingerprint(),
                address: None,
            });
        }
        let settings = NodeSettings {
            partial_expiry: None,
            peers,
            ..NodeSettings::insecure_fast(&format!("n{i}"))
        };
        let node = Node::builder(identities[i].clone(), settings)
            .rng(Box::new(world.fork_rng()))
            .build()
            .expect("node");
        world.add_server(ServerSpec {
            identity: identities[i].clone(),
            service: node.service(),
            max_connections: 16,
            config: Config::default(),
        });
        nodes.push(node);
    }
    (world, nodes)
}

/// What `node` holds: (origin fingerprint, seq) of every feed, sorted.
fn holdings(node: &Node) -> Vec<(String, u64)> {
    let replicas = Replicas::new(node.store().clone(), node.identity().public_key());
    let mut held: Vec<(String, u64)> = replicas
        .clock()
        .expect("clock")
        .into_iter()
        .map(|h| (h.origin.fingerprint().to_string(), h.seq))
        .collect();
    held.sort();
    held
}

/// Whether every node holds every feed at the given sizes.
fn converged(nodes: &[Node], sizes: &[u64]) -> bool {
    let want: Vec<u64> = sizes.to_vec();
    nodes.iter().all(|node| {
        let held = holdings(node);
        held.len() == nodes.len() && {
            let mut seqs: Vec<(String, u64)> = nodes
                .iter()
                .zip(&want)
                .map(|(n, s)| (n.identity().public_key().fingerprint().to_string(), *s))
                .collect();
            seqs.sort();
            held == seqs
        }
    })
}

fn append(node: &Node, tag: &str, from: usize, n: usize) {
    let results = node.ledger().append_batch(records(tag, from, n));
    assert!(results.iter().all(Result::is_ok), "appends");
}

#[test]
fn a_line_of_three_converges_on_backlogs_and_live_appends() {
    let (mut world, nodes) = line(7, 3);
    // Backlogs before any link is up.
    append(&nodes[0], "a", 0, 300);
    append(&nodes[1], "b", 0, 20);
    append(&nodes[2], "c", 0, 5);
    world.run_until(LIMIT, |_| converged(&nodes, &[300, 20, 5]));
    assert!(
        converged(&nodes, &[300, 20, 5]),
        "holdings: {:?}",
        nodes.iter().map(holdings).collect::<Vec<_>>()
    );
    // Live: appends while the links are up travel the line both ways.
    append(&nodes[2], "c", 5, 7);
    append(&nodes[0], "a", 300, 1);
    world.run_until(LIMIT, |_| converged(&nodes, &[301, 20, 12]));
    assert!(
        converged(&nodes, &[301, 20, 12]),
        "holdings: {:?}",
        nodes.iter().map(holdings).collect::<Vec<_>>()
    );
    // Every replica verifies against its origin's chain and signed head.
    for node in &nodes {
        let replicas = Replicas::new(node.store().clone(), node.identity().public_key());
        for head in replicas.clock().expect("clock") {
            let report = replicas.feed(head.origin).check().expect("check");
            assert!(
                matches!(report, vserv_service::ledger::CheckReport::Ok { seq } if seq == head.seq),
                "{report:?}"
            );
        }
    }
}

#[test]
fn the_same_seed_replays_the_same_replication() {
    let run = |seed| {
        let (mut world, nodes) = line(seed, 3);
        append(&nodes[0], "a", 0, 50);
        append(&nodes[2], "c", 0, 9);
        append(&nodes[1], "b", 0, 1);
        world.run_until(LIMIT, |_| converged(&nodes, &[50, 1, 9]));
        assert!(converged(&nodes, &[50, 1, 9]), "converged");
        world.run(world.now() + Duration::from_secs(45));
        world.trace().to_vec()
    };
    assert_eq!(run(11), run(11));
}
