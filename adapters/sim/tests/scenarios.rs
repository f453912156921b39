//! Many seeds of whole scenarios: benign links answer everything correctly; resetting and
//! adversarial links never deliver forged plaintext and never leave a connection hanging.

use std::time::Duration;

use vserv_core::Config;
use vserv_sim::{
    Adversary, LinkConfig, LinkSpec, RunEnd, Scenario, SeedFailure, World, for_each_seed,
};

fn must(result: Result<usize, SeedFailure>) -> usize {
    result.unwrap_or_else(|failure| panic!("{failure}"))
}

/// Runs `scenario` for `seed` and checks the world's invariants; the error names the seed.
fn run_checked(scenario: &Scenario, seed: u64) -> Result<World, String> {
    let (world, _clients, end) = scenario.run(seed).map_err(|e| e.to_string())?;
    if end != RunEnd::Quiescent {
        return Err(format!("run ended with {end:?}, not quiescent"));
    }
    world.check().map_err(|v| v.to_string())?;
    Ok(world)
}

/// Chunk sizes from single bytes to whole writes.
const CHUNKS: [usize; 6] = [1, 3, 17, 64, 700, 0];

#[test]
fn benign_links_answer_every_request() {
    let n = must(for_each_seed(0..100, |seed| {
        let chunk = CHUNKS[(seed % CHUNKS.len() as u64) as usize];
        let link = LinkSpec::symmetric(LinkConfig::benign(chunk));
        run_checked(&Scenario::new(3, 8, link), seed).map(|_| ())
    }));
    assert!(n >= 1);
}

#[test]
fn asymmetric_benign_links_with_long_stalls() {
    must(for_each_seed(100..130, |seed| {
        let mut to_server = LinkConfig::benign(5);
        to_server.stall = 0.3;
        to_server.max_stall = Duration::from_secs(1);
        let link = LinkSpec {
            to_server,
            to_client: LinkConfig::benign(0),
        };
        run_checked(&Scenario::new(2, 6, link), seed).map(|_| ())
    }));
}

#[test]
fn resetting_links_end_every_connection() {
    let mut errored = 0;
    must(for_each_seed(200..260, |seed| {
        let link = LinkSpec::symmetric(LinkConfig::benign(64).with_reset(0.01));
        let world = run_checked(&Scenario::new(3, 8, link), seed)?;
        errored += world
            .trace()
            .iter()
            .filter(|l| l.ends_with("reset"))
            .count();
        Ok::<(), String>(())
    }));
    if vserv_sim::env_seed().ok().flatten().is_none() {
        assert!(
            errored > 0,
            "no link was ever reset: the test tests nothing"
        );
    }
}

#[test]
fn adversarial_links_never_deliver_forged_plaintext() {
    let mut tampered = 0usize;
    let mut completed = 0usize;
    must(for_each_seed(300..450, |seed| {
        let chunk = [1, 16, 200, 0][(seed % 4) as usize];
        let link =
            LinkSpec::symmetric(LinkConfig::benign(chunk).with_adversary(Adversary::moderate()));
        let scenario = Scenario::new(3, 8, link);
        let (world, clients, end) = scenario.run(seed).map_err(|e| e.to_string())?;
        if end != RunEnd::Quiescent {
            return Err(format!("run ended with {end:?}"));
        }
        world.check().map_err(|v| v.to_string())?;
        for c in clients {
            let (a, b) = world.tampered(c);
            if a.is_some() || b.is_some() {
                tampered += 1;
            } else if world
                .client_report(c)
                .is_some_and(|r| r.outcome.is_some_and(|o| o.error.is_none()))
            {
                completed += 1;
            }
        }
        Ok(())
    }));
    if vserv_sim::env_seed().ok().flatten().is_none() {
        assert!(tampered > 20, "only {tampered} links were tampered with");
        assert!(
            completed > 5,
            "only {completed} untampered sessions completed"
        );
    }
}

#[test]
fn heavy_tampering_in_the_handshake() {
    must(for_each_seed(1000..1100, |seed| {
        let adversary = Adversary {
            flip: 0.1,
            truncate: 0.02,
            inject: 0.05,
            replay: 0.05,
        };
        let link = LinkSpec::symmetric(LinkConfig::benign(40).with_adversary(adversary));
        run_checked(&Scenario::new(2, 3, link), seed).map(|_| ())
    }));
}

#[test]
fn key_updates_through_rechunking_links() {
    must(for_each_seed(500..512, |seed| {
        let link = LinkSpec::symmetric(LinkConfig::benign(7));
        let mut scenario = Scenario::new(2, 30, link);
        scenario.max_pipeline = 3;
        let plain = run_checked(&scenario, seed)?;
        let tiny = Config {
            rekey_after: 1,
            ..scenario.client_config.clone()
        };
        scenario.client_config = tiny.clone();
        scenario.server_config = tiny;
        let (rekeyed, clients, end) = scenario.run(seed).map_err(|e| e.to_string())?;
        if end != RunEnd::Quiescent {
            return Err(format!("run ended with {end:?}"));
        }
        rekeyed.check().map_err(|v| v.to_string())?;
        // Same scripts (same seed), so the extra bytes are the KeyUpdate records.
        let total = |w: &World| -> u64 {
            clients
                .iter()
                .map(|&c| w.bytes_written(c) + w.peer(c).map_or(0, |s| w.bytes_written(s)))
                .sum()
        };
        let (before, after) = (total(&plain), total(&rekeyed));
        let requests: usize = clients
            .iter()
            .filter_map(|&c| rekeyed.client_report(c))
            .map(|r| r.sent)
            .sum();
        if requests > 2 && after <= before {
            return Err(format!(
                "rekey_after = 1 sent {after} bytes, default {before}: no key update happened"
            ));
        }
        Ok(())
    }));
}

#[test]
fn connection_limit_under_load() {
    must(for_each_seed(600..620, |seed| {
        let mut scenario = Scenario::new(7, 4, LinkSpec::symmetric(LinkConfig::benign(50)));
        scenario.max_connections = 3;
        let (world, clients, end) = scenario.run(seed).map_err(|e| e.to_string())?;
        if end != RunEnd::Quiescent {
            return Err(format!("run ended with {end:?}"));
        }
        world.check().map_err(|v| v.to_string())?;
        // All connect at time zero: the first three are served, the rest refused.
        let busy = vserv_service::client::ClientError::from(vserv_core::Error::RefusedRetry(
            vserv_core::wire::RetryHint {
                limit: vserv_core::wire::RefusedLimit::MaxConnections,
                retry_after_secs: 2,
            },
        ))
        .to_string();
        let refused = clients
            .iter()
            .filter(|&&c| world.outcome(c).and_then(|o| o.error.as_deref()) == Some(&busy))
            .count();
        if refused != 4 {
            return Err(format!("{refused} clients refused, expected 4"));
        }
        Ok(())
    }));
}
