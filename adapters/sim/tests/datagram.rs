//! Sealed UDP queries over the simulated datagram network: with loss, duplication and
//! reordering, a client that retries (a fresh seal per attempt) gets every answer; an on-path
//! attacker replaying what it sees (from its own address and spoofing a victim's) and forging
//! copies gets nothing sent to either address; the server counts the replays and forgeries.
//! Same seed, same outcome.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vserv_core::datagram::{Answer, DatagramError, seal_request};
use vserv_core::{Request, Response, ServerIdentity};
use vserv_service::datagram::{DatagramSettings, DropReason};
use vserv_service::{Node, NodeSettings};
use vserv_sim::{DatagramAttacker, DatagramNet, NetConfig};

const EPOCH_MS: u64 = 1_800_000_000_000;

/// Runs 20 pings with retries; returns (answered, victim bytes, attacker bytes, replays
/// dropped, forgeries dropped).
fn run(seed: u64) -> (usize, usize, usize, u64, u64) {
    let identity = Arc::new(ServerIdentity::generate(&mut StdRng::seed_from_u64(seed)));
    let node = Node::in_memory(
        identity.clone(),
        NodeSettings::insecure_fast("sim-udp"),
        Box::new(StdRng::seed_from_u64(seed + 1)),
    )
    .expect("node");
    let service = node
        .service()
        .with_datagrams(&identity, DatagramSettings::default());
    let config = NetConfig {
        loss_per_mille: 200,
        duplicate_per_mille: 200,
        delay_ms: 10,
        jitter_ms: 300,
    };
    let client: SocketAddr = "10.0.0.2:5000".parse().expect("address");
    let attacker = DatagramAttacker {
        address: "10.0.0.66:6666".parse().expect("address"),
        victim: "10.0.0.99:53".parse().expect("address"),
        replays: 4,
        forge: true,
    };
    let mut net = DatagramNet::new(seed, service.clone(), config, EPOCH_MS).with_attacker(attacker);
    let mut rng = StdRng::seed_from_u64(seed + 2);
    let mut answered = 0;
    for id in 1..=20u32 {
        let request = Request {
            id,
            name: "ping".into(),
            args: vec![id.to_be_bytes().to_vec()],
        };
        let mut pending = Vec::new();
        'attempts: for _ in 0..8 {
            let (bytes, waiting) = seal_request(
                &identity.public_key(),
                &request,
                0,
                net.now_ms() / 1000,
                &mut rng,
            )
            .expect("seal");
            pending.push(waiting);
            net.send(client, &bytes);
            net.run_for(700);
            for datagram in net.take_inbox(client) {
                if let Some(answer) = pending.iter().find_map(|p| p.open_response(&datagram).ok()) {
                    assert_eq!(
                        answer,
                        Answer::Response(Response {
                            id,
                            result: Ok(vec![id.to_be_bytes().to_vec()]),
                        })
                    );
                    answered += 1;
                    break 'attempts;
                }
            }
        }
    }
    net.run_for(10_000);
    let stats = service.datagram_stats().expect("stats");
    (
        answered,
        net.bytes_received(attacker.victim),
        net.bytes_received(attacker.address),
        stats.dropped_for(DropReason::Refused(DatagramError::Replay)),
        stats.dropped_for(DropReason::Refused(DatagramError::BadMac))
            + stats.dropped_for(DropReason::Refused(DatagramError::BadPoint))
            + stats.dropped_for(DropReason::Refused(DatagramError::Truncated))
            + stats.dropped_for(DropReason::Refused(DatagramError::BadVersion))
            + stats.dropped_for(DropReason::Refused(DatagramError::Malformed(""))),
    )
}

#[test]
fn retries_get_answers_and_replays_and_forgeries_get_nothing() {
    let seed = vserv_sim::env_seed()
        .expect("VSERV_SIM_SEED")
        .unwrap_or(0x0d47);
    let outcome = run(seed);
    let (answered, victim, attacker, replays, forgeries) = outcome;
    assert_eq!(answered, 20, "VSERV_SIM_SEED={seed}: {outcome:?}");
    assert_eq!(
        victim, 0,
        "VSERV_SIM_SEED={seed}: the victim was sent answers"
    );
    assert_eq!(
        attacker, 0,
        "VSERV_SIM_SEED={seed}: the attacker was sent answers"
    );
    assert!(replays > 0, "VSERV_SIM_SEED={seed}: {outcome:?}");
    assert!(forgeries > 0, "VSERV_SIM_SEED={seed}: {outcome:?}");
    assert_eq!(
        run(seed),
        outcome,
        "VSERV_SIM_SEED={seed}: not deterministic"
    );
}
