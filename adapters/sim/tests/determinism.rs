//! Run-twice check: the same seed gives the same trace; another seed gives another.

use vserv_sim::{Adversary, LinkConfig, LinkSpec, Scenario, World, for_each_seed};

fn scenario() -> Scenario {
    let link = LinkSpec {
        to_server: LinkConfig::benign(9).with_adversary(Adversary::moderate()),
        to_client: LinkConfig::benign(33).with_reset(0.002),
    };
    Scenario::new(4, 10, link)
}

fn trace(seed: u64) -> Vec<String> {
    let (world, _, _): (World, _, _) = scenario().run(seed).expect("scenario");
    world.trace().to_vec()
}

#[test]
fn same_seed_same_trace() {
    for_each_seed([7, 8], |seed| {
        let first = trace(seed);
        let second = trace(seed);
        if first.len() < 100 {
            return Err(format!("trivial scenario: {} trace lines", first.len()));
        }
        if let Some(i) = (0..first.len().max(second.len())).find(|&i| first.get(i) != second.get(i))
        {
            return Err(format!(
                "traces differ at line {i}:\n  {:?}\n  {:?}",
                first.get(i),
                second.get(i)
            ));
        }
        Ok(())
    })
    .unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn different_seed_different_trace() {
    assert_ne!(trace(7), trace(8));
}
