//! End to end with a real server process: `serve --log-file` gets the startup line (version,
//! address, fingerprint) without ANSI colours; SIGUSR1 logs a status summary and the server
//! lives on; SIGHUP after the log file was moved away creates a new one.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Env};

/// Sends `signal` (a `kill -s` name) to `child`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal}");
}

/// Waits up to 20 s until `path` holds `needle`; returns its text.
fn wait_for(path: &Path, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{needle:?} never appeared in {}: {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_log_file_has_the_startup_line_a_status_on_sigusr1_and_is_reopened_on_sighup() {
    let env = Env::new();
    let log = env.path("vserv.log");
    let config = env.path("server.toml");
    std::fs::write(&config, "[files]\nmin_free_bytes = 0\n").expect("config");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(env.data())
        .arg("--log-file")
        .arg(&log)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vserv serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let server = Killed(child);
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read");
    let addr = first
        .strip_prefix("vserv listening on ")
        .and_then(|r| r.split_whitespace().next())
        .expect("address line")
        .to_owned();
    let mut second = String::new();
    stdout.read_line(&mut second).expect("read");
    let fingerprint = second
        .strip_prefix("server key fingerprint: ")
        .expect("fingerprint line")
        .trim()
        .to_owned();

    let text = wait_for(&log, "started");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains(&addr), "{text}");
    assert!(text.contains(&fingerprint), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file: {text:?}"
    );

    signal(&server.0, "USR1");
    let text = wait_for(&log, "status: ");
    assert!(text.contains("connections"), "{text}");
    assert!(text.contains("ledger head seq"), "{text}");
    assert!(text.contains("0 transfers open"), "{text}");
    // Still serving.
    let pong = env
        .vserv(
            &[
                "ping",
                "alive",
                "--server",
                &addr,
                "--server-key",
                &fingerprint,
            ],
            &[],
        )
        .ok();
    assert_eq!(pong.text(), "alive\n");

    // Rotate: move the file away, SIGHUP, and a new one appears at the path.
    let rotated = env.path("vserv.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    signal(&server.0, "HUP");
    let fresh = wait_for(&log, "re-opened");
    assert!(
        !fresh.contains("started"),
        "the old content moved away: {fresh}"
    );
    signal(&server.0, "USR1");
    wait_for(&log, "status: ");
    assert!(
        !std::fs::read_to_string(&rotated)
            .expect("rotated")
            .contains("re-opened")
    );
}
