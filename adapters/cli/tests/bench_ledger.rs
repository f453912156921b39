//! `vserv bench ledger`, shrunk to a second: every phase runs, and the store commits each
//! `rput` phase reports are the ones that wrote its entries.

mod common;

use std::process::Command;

use common::{BIN, Env};

#[test]
fn every_phase_runs_and_the_rput_phases_report_their_store_commits() {
    let scratch = Env::new();
    let out = Command::new(BIN)
        .args([
            "bench",
            "ledger",
            "--json",
            "--records",
            "2000",
            "--window",
            "16",
        ])
        .env("TMPDIR", scratch.dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("run the bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["entries"], 2000);
    // The store with the ledger's keys writes one entry per rput of a phase.
    assert_eq!(report["store_indexed"]["operations"], 2000);
    assert!(report["store_indexed"]["per_s"].as_f64().expect("rate") > 0.0);
    let ratio = report["rput_vs_store_indexed"].as_f64().expect("ratio");
    assert!(ratio > 0.0 && ratio.is_finite(), "{ratio}");
    for (phase, commits) in [
        ("rput_one", "rput_one_commits"),
        ("rput_many", "rput_many_commits"),
    ] {
        assert_eq!(report[phase]["operations"], 2000, "{phase}");
        let c = &report[commits];
        let n = c["commits"].as_u64().expect("commits");
        let per = c["records_per_commit"]
            .as_f64()
            .expect("records per commit");
        // 2,000 entries with at most 16 in flight per connection take several group
        // commits, each with its entries (their index keys trail in bulk) and at least its
        // head, signed head and index records: every commit is counted.
        assert!(n >= 2, "{phase}: {c}");
        let records = per * n as f64;
        assert!(records >= 2000.0 + 4.0 * n as f64, "{phase}: {c}");
        let busy = c["writer_busy"].as_f64().expect("writer busy");
        assert!(busy > 0.0 && busy <= 1.05, "{phase}: {c}");
        let each = c["ms_each"].as_f64().expect("ms each");
        assert!(each > 0.0, "{phase}: {c}");
        if cfg!(target_os = "linux") {
            let parts: f64 = ["on_cpu_ms_each", "waiting_ms_each", "blocked_ms_each"]
                .iter()
                .map(|k| c[*k].as_f64().expect("a measured part"))
                .sum();
            assert!((parts - each).abs() <= each * 0.05 + 0.01, "{phase}: {c}");
        }
    }
}
