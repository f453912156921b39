//! `vserv bench repl` over real `vserv serve` processes, shrunk to a few seconds: every phase
//! reports what it measured (the catch-up's whole backlog, one latency per acknowledged
//! `rput`, the polls' round trips, four fan-out hops), and no server process outlives the
//! bench, whether it succeeds or fails.

mod common;

use std::process::Command;

use common::{BIN, Env, processes_under};

/// Runs `vserv bench repl ARGS --json` with its temporary directories in `scratch`.
fn bench(scratch: &Env, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["bench", "repl", "--json"])
        .args(args)
        .env("TMPDIR", scratch.dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("run the bench")
}

#[test]
fn every_phase_runs_over_server_processes_and_none_outlives_the_bench() {
    let scratch = Env::new();
    let out = bench(
        &scratch,
        &[
            "--entries",
            "3000",
            "--seconds",
            "0.5",
            "--rate",
            "200",
            "--connections",
            "2",
            "--window",
            "8",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let servers = report["servers"].as_str().expect("servers");
    assert!(servers.contains("serve` processes"), "{servers}");
    assert_eq!(report["poll_interval_us"], 200);
    let catch_up = &report["catch_up"];
    assert_eq!(catch_up["backlog_append"]["entries"], 3000);
    assert_eq!(catch_up["catch_up"]["entries"], 3000);
    assert!(
        catch_up["catch_up"]["entries_per_s"]
            .as_f64()
            .expect("rate")
            > 0.0
    );
    for phase in ["live_steady", "live_saturating"] {
        let live = &report[phase];
        let rputs = live["rputs"].as_u64().expect("rputs");
        assert!(rputs > 0, "{phase}: {live}");
        assert_eq!(live["latency"]["samples"].as_u64(), Some(rputs), "{phase}");
        assert!(
            live["b_commits"].as_u64().expect("heads seen") > 0,
            "{phase}"
        );
        assert!(
            live["poll_round_trip_us"]
                .as_f64()
                .expect("poll round trip")
                > 0.0,
            "{phase}: {live}"
        );
        // A's commits are counted in-process only.
        assert!(live["a_commits"].is_null(), "{phase}");
    }
    let hops = report["fanout"]["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 4);
    let rputs = report["fanout"]["rputs"].as_u64().expect("rputs");
    for hop in hops {
        assert_eq!(hop["samples"].as_u64(), Some(rputs));
    }
    assert_eq!(processes_under(scratch.dir()), Vec::<String>::new());
}

#[test]
fn a_bench_that_fails_after_starting_a_server_leaves_no_server_process() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Env::new();
    // A "server binary" that runs the real one the first time and fails every time after:
    // the live phase's A is up when B cannot start.
    let count = scratch.dir().join("starts");
    let wrapper = scratch.dir().join("first-only.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh
n=$(cat '{count}' 2>/dev/null || echo 0)
echo $((n + 1)) > '{count}'
\
             [ \"$n\" -ge 1 ] && exit 3
exec '{BIN}' \"$@\"
",
            count = count.display()
        ),
    )
    .expect("write the wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("make the wrapper executable");
    let out = bench(
        &scratch,
        &[
            "--phases",
            "live",
            "--seconds",
            "0.2",
            "--server-exe",
            wrapper.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&count).expect("starts").trim(),
        "2",
        "A started, B failed"
    );
    assert_eq!(processes_under(scratch.dir()), Vec::<String>::new());
}
