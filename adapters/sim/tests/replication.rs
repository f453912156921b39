//! Replication in the simulator: servers that list each other as peers dial, link and
//! exchange their feeds over the world's links, with the dials, the links' work and their
//! timers in the seed's schedule. A line of three servers converges (backlogs and live
//! appends), and the same seed gives the same trace. Peers added at runtime by an admin over
//! the protocol (`padd`, none configured) link and replicate under faulty links, and a
//! removed one (`pdel`) stops receiving.

mod replication_common;

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use replication_common::{Topology, records};
use vserv_core::commands::{Command, Credential, Reply, SecretBytes, UserRole};
use vserv_core::{Config, Fingerprint, ServerIdentity};
use vserv_service::replicas::Replicas;
use vserv_service::{Node, NodeSettings, PeerConfig};
use vserv_sim::{
    ClientSpec, Finish, LinkConfig, LinkSpec, ServerId, ServerSpec, World, for_each_seed,
};

const LIMIT: Duration = Duration::from_secs(600);

/// The world with `n` servers in a line, each dialing the one before it; their nodes.
fn line(seed: u64, n: usize) -> (World, Vec<Node>) {
    linked(
        seed,
        n,
        Topology::Line,
        LinkSpec::symmetric(LinkConfig::benign(16 * 1024)),
    )
}

/// The world with `n` servers linked as `topology` says, over dial links `links`; their
/// nodes.
fn linked(seed: u64, n: usize, topology: Topology, links: LinkSpec) -> (World, Vec<Node>) {
    linked_with(seed, n, topology, links, Config::default(), &|_, _, _| {})
}

/// What a test changes in server `i`'s settings, knowing every server's identity.
type Tweak = dyn Fn(usize, &mut NodeSettings, &[Arc<ServerIdentity>]);

/// [`linked`], every server's connections configured with `config` and its node settings
/// changed by `tweak`.
fn linked_with(
    seed: u64,
    n: usize,
    topology: Topology,
    links: LinkSpec,
    config: Config,
    tweak: &Tweak,
) -> (World, Vec<Node>) {
    let mut world = World::new(seed);
    world.set_dial_links(links);
    let identities: Vec<Arc<ServerIdentity>> = (0..n)
        .map(|_| Arc::new(ServerIdentity::generate(&mut world.fork_rng())))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let peers = (0..n)
            .filter(|&j| topology.dials(i, j, n) || topology.dials(j, i, n))
            .map(|j| PeerConfig {
                fingerprint: identities[j].public_key().fingerprint(),
                address: topology.dials(i, j, n).then(|| World::server_address(j)),
            })
            .collect();
        let mut settings = NodeSettings {
            partial_expiry: None,
            peers,
            ..NodeSettings::insecure_fast(&format!("n{i}"))
        };
        tweak(i, &mut settings, &identities);
        let node = Node::builder(identities[i].clone(), settings)
            .rng(Box::new(world.fork_rng()))
            .build()
            .expect("node");
        world.add_server(ServerSpec {
            identity: identities[i].clone(),
            service: node.service(),
            max_connections: 16,
            config: config.clone(),
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
    let mut want: Vec<(String, u64)> = nodes
        .iter()
        .zip(sizes)
        .filter(|(_, s)| **s > 0)
        .map(|(n, s)| (n.identity().public_key().fingerprint().to_string(), *s))
        .collect();
    want.sort();
    nodes.iter().all(|node| holdings(node) == want)
}

/// Every feed every node holds verifies against its origin's chain and signed head.
fn all_verify(nodes: &[Node]) -> Result<(), String> {
    for node in nodes {
        let replicas = Replicas::new(node.store().clone(), node.identity().public_key());
        for head in replicas.clock().map_err(|e| e.to_string())? {
            let report = replicas
                .feed(head.origin)
                .unwrap()
                .check()
                .map_err(|e| e.to_string())?;
            if !matches!(report, vserv_service::ledger::CheckReport::Ok { seq } if seq == head.seq)
            {
                return Err(format!("a feed does not verify: {report:?}"));
            }
        }
    }
    Ok(())
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
    all_verify(&nodes).expect("every feed verifies");
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

/// One seed of the sweep: 3 to 5 servers in a line, a ring or a mesh, over links that
/// re-chunk, delay, stall and now and then reset (so links drop and are dialed again);
/// appends on random servers at random times while they run. Once the appends stop, every
/// server must hold every feed at its final size, and every stored feed must verify.
fn sweep_one(seed: u64) -> Result<(), String> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5eed);
    let n = rng.random_range(3..=5usize);
    let topology = match seed % 3 {
        0 => Topology::Line,
        1 => Topology::Ring,
        _ => Topology::Mesh,
    };
    let link = LinkConfig::benign(rng.random_range(64..=16 * 1024)).with_reset(0.002);
    let (mut world, nodes) = linked(seed, n, topology, LinkSpec::symmetric(link));
    let mut sizes = vec![0u64; n];
    for round in 0..6 {
        let at = rng.random_range(0..n);
        let count = rng.random_range(1..=120usize);
        let from = usize::try_from(sizes[at]).map_err(|e| e.to_string())?;
        append(&nodes[at], &format!("s{at}"), from, count);
        sizes[at] += count as u64;
        let pause = Duration::from_millis(rng.random_range(0..3_000));
        world.run(world.now() + pause);
        let _ = round;
    }
    world.run_until(world.now() + LIMIT, |_| converged(&nodes, &sizes));
    if !converged(&nodes, &sizes) {
        return Err(format!(
            "{topology:?} of {n}: no convergence on {sizes:?}: {:?}",
            nodes.iter().map(holdings).collect::<Vec<_>>()
        ));
    }
    all_verify(&nodes)
}

#[test]
fn every_topology_converges_under_faulty_links_across_seeds() {
    if let Err(failure) = for_each_seed(0..24, sweep_one) {
        panic!("{failure}");
    }
}

#[test]
#[ignore = "soak: 1,000 seeds"]
fn soak_replication() {
    if let Err(failure) = for_each_seed(1_000..2_000, sweep_one) {
        panic!("{failure}");
    }
}

/// A link outlives an idle timeout shorter than its clock interval: its connections keep at
/// least four clock intervals, so idle links are not torn down and dialed again.
#[test]
fn links_outlive_a_short_idle_timeout() {
    let config = Config {
        idle_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let links = LinkSpec::symmetric(LinkConfig::benign(16 * 1024));
    let (mut world, nodes) = linked_with(21, 2, Topology::Line, links, config, &|_, _, _| {});
    append(&nodes[0], "a", 0, 10);
    world.run_until(LIMIT, |_| converged(&nodes, &[10, 0]));
    assert!(converged(&nodes, &[10, 0]), "converged");
    let accepted = |w: &World| w.trace().iter().filter(|l| l.contains("accepted")).count();
    let before = accepted(&world);
    world.run(world.now() + Duration::from_secs(300));
    assert_eq!(accepted(&world), before, "the link was dialed again");
    append(&nodes[0], "a", 10, 1);
    world.run_until(world.now() + LIMIT, |_| converged(&nodes, &[11, 0]));
    assert!(converged(&nodes, &[11, 0]), "live after the idle time");
}

/// A server that follows only some origins keeps replicas of those alone, and passes on
/// nothing else: in the line A-B-C where B follows only A, A's feed reaches C through B and
/// C's never reaches A.
#[test]
fn a_server_replicates_only_the_origins_it_follows() {
    let links = LinkSpec::symmetric(LinkConfig::benign(16 * 1024));
    let follow_a: &Tweak = &|i, settings, ids| {
        if i == 1 {
            settings.follow = Some(vec![ids[0].public_key().fingerprint()]);
        }
    };
    let (mut world, nodes) = linked_with(22, 3, Topology::Line, links, Config::default(), follow_a);
    append(&nodes[0], "a", 0, 40);
    append(&nodes[1], "b", 0, 4);
    append(&nodes[2], "c", 0, 9);
    let fp = |i: usize| nodes[i].identity().public_key().fingerprint().to_string();
    let expect = |pairs: &[(usize, u64)]| {
        let mut v: Vec<(String, u64)> = pairs.iter().map(|&(i, s)| (fp(i), s)).collect();
        v.sort();
        v
    };
    let done = |_: &World| {
        holdings(&nodes[0]) == expect(&[(0, 40), (1, 4)])
            && holdings(&nodes[1]) == expect(&[(0, 40), (1, 4)])
            && holdings(&nodes[2]) == expect(&[(0, 40), (1, 4), (2, 9)])
    };
    world.run_until(LIMIT, done);
    // Then a while longer: C's feed must still not show up on A or B.
    world.run(world.now() + Duration::from_secs(90));
    assert!(
        done(&world),
        "holdings: {:?}",
        nodes.iter().map(holdings).collect::<Vec<_>>()
    );
    // B's Wants leaves C's feed out: C never sent B one entry of it (spec/replication.md
    // §3.6), while B relayed all of A's feed to C (so the count sees what is sent).
    let key = |i: usize| nodes[i].identity().public_key().fingerprint();
    let to_b = nodes[2].service().entries_sent(&key(1));
    assert_eq!(
        to_b.get(&key(2)),
        None,
        "C streamed its feed to B: {to_b:?}"
    );
    let to_c = nodes[1].service().entries_sent(&key(2));
    assert!(to_c.get(&key(0)).is_some_and(|n| *n >= 40), "{to_c:?}");
}

const ADMIN: &str = "root";
const ADMIN_PASSWORD: &[u8] = b"root-password-1";

/// Runs `commands` as the admin of server `server` on a new session over a benign link,
/// each once the previous one's reply arrived; their replies. Refused, or no reply within a
/// minute of virtual time: an error.
fn as_admin(world: &mut World, server: usize, commands: &[Command]) -> Result<Vec<Reply>, String> {
    let options = world
        .client_options(Config::default())
        .map_err(|e| e.to_string())?;
    let client = world
        .add_client(
            ServerId(server),
            ClientSpec {
                options,
                link: LinkSpec::symmetric(LinkConfig::benign(16 * 1024)),
                script: Vec::new(),
                pipeline: 1,
                finish: Finish::Stay,
            },
        )
        .map_err(|e| e.to_string())?;
    let minute = Duration::from_secs(60);
    world.run_until(world.now() + minute, |w| w.is_connected(client));
    let login = Command::Login {
        user: ADMIN.into(),
        credential: Credential::Password(SecretBytes::new(ADMIN_PASSWORD.to_vec())),
    };
    let mut replies = Vec::new();
    for command in std::iter::once(&login).chain(commands) {
        let id = world.send(client, command).map_err(|e| e.to_string())?;
        world.run_until(world.now() + minute, |w| w.has_reply(client, id));
        match world.take_reply(client, id) {
            Some(Ok(reply)) => replies.push(reply),
            Some(Err(e)) => return Err(format!("{} on server {server}: {e}", command.name())),
            None => return Err(format!("{} on server {server}: no reply", command.name())),
        }
    }
    world.close_client(client);
    Ok(replies.split_off(1))
}

/// `padd FINGERPRINT [ADDRESS]`.
fn padd(fingerprint: Fingerprint, address: Option<String>) -> Command {
    Command::Padd {
        fingerprint,
        address,
    }
}

/// One seed of the runtime-peers case: three replicating servers with no peer configured and
/// backlogs of their own, over dial links that re-chunk, delay and now and then reset. An
/// admin adds the peers of a line A - B - C over the protocol (B dials A, C dials B): every
/// feed reaches every server, and live appends follow. Then C's admin removes B and B's
/// removes C: A's next appends reach B, and C, watched well past the redial backoffs, holds
/// A's feed as it was.
fn runtime_peers_one(seed: u64) -> Result<(), String> {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0xadd);
    let link = LinkConfig::benign(rng.random_range(64..=16 * 1024)).with_reset(0.002);
    let no_peers: &Tweak = &|_, settings, _| {
        settings.peers.clear();
        settings.replicate = true;
    };
    let (mut world, nodes) = linked_with(
        seed,
        3,
        Topology::Line,
        LinkSpec::symmetric(link),
        Config::default(),
        no_peers,
    );
    for node in &nodes {
        node.accounts()
            .create(ADMIN, UserRole::Admin, ADMIN_PASSWORD, 1_700_000_000)
            .map_err(|e| e.to_string())?;
    }
    let fp = |i: usize| nodes[i].identity().public_key().fingerprint();
    append(&nodes[0], "a", 0, 60);
    append(&nodes[1], "b", 0, 4);
    append(&nodes[2], "c", 0, 7);
    // Nothing links before the admins act.
    world.run(world.now() + Duration::from_secs(5));
    if nodes.iter().any(|n| holdings(n).len() != 1) {
        return Err("replicated before any peer was added".into());
    }
    as_admin(&mut world, 0, &[padd(fp(1), None)])?;
    as_admin(
        &mut world,
        1,
        &[
            padd(fp(0), Some(World::server_address(0))),
            padd(fp(2), None),
        ],
    )?;
    as_admin(
        &mut world,
        2,
        &[padd(fp(1), Some(World::server_address(1)))],
    )?;
    let sizes = [60, 4, 7];
    world.run_until(world.now() + LIMIT, |_| converged(&nodes, &sizes));
    if !converged(&nodes, &sizes) {
        return Err(format!(
            "no convergence after padd: {:?}",
            nodes.iter().map(holdings).collect::<Vec<_>>()
        ));
    }
    append(&nodes[0], "a", 60, 5);
    let sizes = [65, 4, 7];
    world.run_until(world.now() + LIMIT, |_| converged(&nodes, &sizes));
    if !converged(&nodes, &sizes) {
        return Err(format!(
            "live appends did not follow: {:?}",
            nodes.iter().map(holdings).collect::<Vec<_>>()
        ));
    }
    // C drops B, and B drops C: the link between them ends for good.
    let removed = as_admin(&mut world, 2, &[Command::Pdel { fingerprint: fp(1) }])?;
    as_admin(&mut world, 1, &[Command::Pdel { fingerprint: fp(2) }])?;
    if removed != [Reply::Done] {
        return Err(format!("pdel gave {removed:?}"));
    }
    let c_before = holdings(&nodes[2]);
    append(&nodes[0], "a", 65, 9);
    let on_b = |nodes: &[Node]| holdings(&nodes[1]).contains(&(fp(0).to_string(), 74));
    world.run_until(world.now() + LIMIT, |_| on_b(&nodes));
    if !on_b(&nodes) {
        return Err(format!("B stopped receiving A: {:?}", holdings(&nodes[1])));
    }
    // Well past the longest redial backoff.
    world.run(world.now() + vserv_service::DIAL_BACKOFF_MAX.saturating_mul(3));
    if holdings(&nodes[2]) != c_before {
        return Err(format!(
            "C still receives after pdel: {:?} (was {c_before:?})",
            holdings(&nodes[2])
        ));
    }
    all_verify(&nodes)
}

#[test]
fn runtime_peers_replicate_under_faulty_links_and_pdel_stops_it() {
    if let Err(failure) = for_each_seed(0..8, runtime_peers_one) {
        panic!("{failure}");
    }
}
