//! `vserv bench transfer --vs-ssh` with a tiny file against a real loopback OpenSSH server:
//! every OpenSSH client and cipher reports both ways with CPU figures, vserv's ratios are
//! given, and no sshd outlives the bench. Skipped, saying why, where /usr/sbin/sshd is not
//! installed.

mod common;

use std::path::Path;
use std::process::Command;

use common::{BIN, Env, processes_under};

#[test]
fn the_transfer_bench_compares_with_a_loopback_sshd() {
    if !Path::new("/usr/sbin/sshd").is_file() {
        println!("skipped: /usr/sbin/sshd is not installed (openssh-server)");
        return;
    }
    let scratch = Env::new();
    let out = Command::new(BIN)
        .args([
            "bench",
            "transfer",
            "--size",
            "1MiB",
            "--runs",
            "1",
            "--vs-ssh",
            "--ssh-fsync",
            "--json",
            "--dir",
        ])
        .arg(scratch.dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("run the bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let ssh = &report["vs_ssh"];
    let cases = ssh["cases"].as_array().expect("cases");
    // scp and sftp, each with three ciphers.
    assert_eq!(cases.len(), 6, "{ssh}");
    for case in cases {
        for direction in ["upload", "download"] {
            let d = &case[direction];
            assert!(d["mb_per_s"].as_f64().expect("a rate") > 0.0, "{case}");
            assert_eq!(
                d["runs_mb_per_s"].as_array().map(Vec::len),
                Some(1),
                "{case}"
            );
            assert!(d["cpu_s_per_gib"].as_f64().expect("CPU") >= 0.0, "{case}");
        }
    }
    for direction in ["upload", "download"] {
        let best = &ssh[direction];
        let fastest = cases
            .iter()
            .filter_map(|c| c[direction]["mb_per_s"].as_f64())
            .fold(0.0, f64::max);
        assert_eq!(best["mb_per_s"].as_f64(), Some(fastest), "{best}");
        let ratio = report[direction]["mb_per_s"].as_f64().expect("vserv") / fastest;
        assert!((best["ratio"].as_f64().expect("ratio") - ratio).abs() < 1e-9);
        assert!(report[direction]["cpu_s_per_gib"].as_f64().is_some());
    }
    assert!(
        ssh["fsync"].as_str().expect("fsync").contains("sync FILE"),
        "{ssh}"
    );
    // sshd is gone and the bench cleaned up after itself.
    assert!(processes_under(scratch.dir()).is_empty());
    let left: Vec<_> = std::fs::read_dir(scratch.dir())
        .expect("scratch")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
