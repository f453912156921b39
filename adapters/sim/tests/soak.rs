//! Long soaks, ignored by default (`cargo test -p vserv-sim --test soak -- --ignored`):
//! thousands of seeds over harsher links and tunables than the regular scenarios.
//! `VSERV_SIM_SEED` narrows a soak to one seed.

use std::time::Duration;

use vserv_core::Config;
use vserv_sim::{Adversary, LinkConfig, LinkSpec, RunEnd, Scenario, for_each_seed};

fn tight(rekey_after: u64) -> Config {
    Config {
        rekey_after,
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

#[test]
#[ignore = "soak: ~20 s"]
fn soak_adversarial() {
    for_each_seed(10_000..12_000, |seed| {
        let adversary = match seed % 4 {
            0 => Adversary::moderate(),
            1 => Adversary {
                flip: 0.2,
                ..Adversary::none()
            },
            2 => Adversary {
                replay: 0.2,
                ..Adversary::none()
            },
            _ => Adversary {
                truncate: 0.05,
                inject: 0.2,
                ..Adversary::none()
            },
        };
        let chunk = [1, 5, 64, 0][(seed / 4 % 4) as usize];
        let mut link = LinkSpec::symmetric(LinkConfig::benign(chunk).with_adversary(adversary));
        if seed % 3 == 0 {
            link.to_client.adversary = Adversary::none();
        }
        if seed % 5 == 0 {
            link.to_server.reset = 0.01;
        }
        let mut scenario = Scenario::new(2, 6, link);
        if seed % 2 == 0 {
            scenario.client_config = tight(1 + seed % 3);
            scenario.server_config = tight(1 + seed % 3);
        }
        let (world, _, end) = scenario.run(seed).map_err(|e| e.to_string())?;
        if end != RunEnd::Quiescent {
            return Err(format!("run ended with {end:?}"));
        }
        world.check().map_err(|v| v.to_string())
    })
    .unwrap_or_else(|f| panic!("{f}"));
}

#[test]
#[ignore = "soak: ~20 s"]
fn soak_benign_rekeying() {
    for_each_seed(20_000..20_600, |seed| {
        let chunk = [1, 2, 9, 100, 0][(seed % 5) as usize];
        let mut scenario = Scenario::new(3, 10, LinkSpec::symmetric(LinkConfig::benign(chunk)));
        scenario.client_config = tight(1 + seed % 4);
        scenario.server_config = tight(1 + seed % 4);
        scenario.max_pipeline = 8;
        let (world, _, end) = scenario.run(seed).map_err(|e| e.to_string())?;
        if end != RunEnd::Quiescent {
            return Err(format!("run ended with {end:?}"));
        }
        world.check().map_err(|v| v.to_string())
    })
    .unwrap_or_else(|f| panic!("{f}"));
}
