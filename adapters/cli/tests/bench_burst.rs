//! `vserv bench burst --runtimes`, shrunk: one round against each runtime's server process,
//! reported side by side with the ratio smol/blocking.

mod common;

use common::Env;

#[test]
fn the_runtimes_comparison_runs_both_servers_and_reports_their_ratio() {
    let scratch = Env::new();
    let tmp = scratch.dir().to_str().expect("utf-8 path");
    let run = scratch
        .vserv(
            &[
                "bench",
                "burst",
                "--runtimes",
                "--runtime",
                "smol",
                "--rounds",
                "1",
                "--sessions",
                "20",
                "--watch",
                "1",
                "--pings",
                "50",
                "--json",
            ],
            &[("TMPDIR", tmp)],
        )
        .ok();
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON report");
    assert_eq!(report["old"]["label"], "blocking");
    assert_eq!(report["new"]["label"], "smol");
    assert_eq!(report["old"]["extra_args"][1], "blocking");
    assert_eq!(report["new"]["extra_args"][1], "smol");
    // The sides set the runtime; the one given is not passed on.
    let args: Vec<&str> = report["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(
        args,
        ["burst", "--sessions", "20", "--watch", "1", "--pings", "50"]
    );
    let figures = report["figures"].as_array().expect("figures");
    let figure = |name: &str| {
        figures
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no figure {name} in {report}"))
    };
    let samples = figure("rtt_idle.samples");
    assert_eq!(samples["old"], 50.0);
    assert_eq!(samples["new"], 50.0);
    let p50 = figure("rtt_held.p50_us");
    let (blocking, smol) = (
        p50["old"].as_f64().expect("blocking p50"),
        p50["new"].as_f64().expect("smol p50"),
    );
    assert!(blocking > 0.0 && smol > 0.0, "{p50}");
    let ratio = p50["ratio"].as_f64().expect("ratio");
    assert!((ratio - smol / blocking).abs() < 1e-9, "{p50}");
    assert_eq!(figure("sessions")["new"], 20.0);
}
