//! End to end with a real server process: `serve --log-file` gets the startup line (version,
//! address, fingerprint) without ANSI colours; SIGUSR1 logs a status summary and the server
//! lives on; SIGHUP after the log file was moved away creates a new one.

mod common;

use common::{Env, Server, wait_for_text as wait_for};

#[test]
fn the_log_file_has_the_startup_line_a_status_on_sigusr1_and_is_reopened_on_sighup() {
    let env = Env::new();
    let log = env.path("vserv.log");
    let config = env.path("server.toml");
    std::fs::write(&config, "[files]\nmin_free_bytes = 0\n").expect("config");
    let server = Server::start_logging(&env.data(), &config, &log);
    let (addr, fingerprint) = (server.addr.clone(), server.fingerprint.clone());

    let text = wait_for(&log, "started");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains(&addr), "{text}");
    assert!(text.contains(&fingerprint), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes in a log file: {text:?}"
    );

    server.signal("USR1");
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
    server.signal("HUP");
    let fresh = wait_for(&log, "re-opened");
    assert!(
        !fresh.contains("started"),
        "the old content moved away: {fresh}"
    );
    server.signal("USR1");
    wait_for(&log, "status: ");
    assert!(
        !std::fs::read_to_string(&rotated)
            .expect("rotated")
            .contains("re-opened")
    );
}
