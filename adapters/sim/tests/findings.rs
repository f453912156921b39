//! Problems the harness found in the crates it drives, kept as regression tests.

use std::time::Duration;

use vserv_core::Config;
use vserv_sim::{LinkConfig, LinkSpec, Scenario};

/// `Connection` once computed deadlines with `Instant + Duration`, which panics on overflow:
/// a `Config` with a huge timeout (e.g. `Duration::MAX` meaning "never") panicked. Now an
/// unrepresentable deadline means no timer.
#[test]
fn huge_timeouts_do_not_panic() {
    let mut scenario = Scenario::new(1, 2, LinkSpec::symmetric(LinkConfig::ideal()));
    scenario.client_config = Config {
        handshake_timeout: Duration::MAX,
        idle_timeout: Duration::MAX,
        ..Config::default()
    };
    scenario.server_config = scenario.client_config.clone();
    let (world, _, _) = scenario.run(1).unwrap();
    world.check().unwrap();
}
