//! End-to-end two-factor login: the real `vserv` binary against a server it starts.
//! `2fa enable` draws the QR code and prints the recovery codes (with no terminal to ask
//! for a code, the secret stays pending), `2fa confirm` activates it with a code computed
//! here from the URI's secret, logins then need `--otp` / `VSERV_OTP`, a recovery code works
//! once, `2fa disable`, and an admin's `user 2fa-reset`.

mod common;

use common::{Env, Server};
use totp_rs::{Builder, Secret};

const ADMIN_PW: &str = "admin-password-1";
const ALICE_PW: &str = "alice-password-1";

/// The authenticator's code at Unix second `t` for the secret in `uri`.
fn code_at(uri: &str, t: u64) -> String {
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("secret in the URI");
    Builder::new()
        .with_secret(Secret::try_from_base32(secret).expect("base32"))
        .build()
        .expect("totp")
        .generate(t)
        .to_string()
}

/// The wall clock the server reads too (same machine).
#[allow(clippy::disallowed_methods)] // the real server's clock is the test's subject
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// `vserv 2fa enable` as alice with no terminal: the URI and recovery codes it printed.
fn enable(env: &Env, server: &Server) -> (String, Vec<String>) {
    let run = env.client(
        server,
        &["2fa", "enable", "--user", "alice"],
        &[("VSERV_PASSWORD", ALICE_PW)],
    );
    let out = run.text();
    // No terminal to ask for the code: it fails after showing everything.
    let reason = run.fails();
    assert!(reason.contains("code"), "{reason}");
    assert!(
        out.contains('█') || out.contains('▀') || out.contains('▄'),
        "a QR code: {out}"
    );
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://totp/vserv:alice?secret="))
        .expect("the URI")
        .to_owned();
    let recovery: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|c| c.len() == 19 && c.matches('-').count() == 3)
        .map(str::to_owned)
        .collect();
    assert_eq!(recovery.len(), 10, "{out}");
    (uri, recovery)
}

#[test]
fn enable_confirm_login_with_a_code_disable_and_admin_reset() {
    let env = Env::new();
    let server = Server::start(&env.data());
    env.client(
        &server,
        &["user", "init", "admin"],
        &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
    )
    .ok();
    let as_admin = [
        ("VSERV_PASSWORD", ADMIN_PW),
        ("VSERV_NEW_PASSWORD", ALICE_PW),
    ];
    env.client(
        &server,
        &["user", "add", "alice", "--user", "admin"],
        &as_admin,
    )
    .ok();
    let as_alice = [("VSERV_PASSWORD", ALICE_PW)];

    let (uri, _) = enable(&env, &server);
    // Pending: a login needs no code yet.
    let run = env
        .client(&server, &["login", "--user", "alice"], &as_alice)
        .ok();
    assert_eq!(run.text().trim(), "alice (user)");
    let t = now();
    let confirm = code_at(&uri, t);
    env.client(
        &server,
        &["2fa", "confirm", &confirm, "--user", "alice"],
        &as_alice,
    )
    .ok();

    // Active: without a code (and no terminal) the login fails, asking for one.
    let no_code = env
        .client(&server, &["login", "--user", "alice"], &as_alice)
        .fails();
    assert!(no_code.contains("--otp"), "{no_code}");
    // With the next step's code it works; the same code again is refused.
    let next = code_at(&uri, t + 30);
    let run = env
        .client(
            &server,
            &["login", "--user", "alice", "--otp", &next],
            &as_alice,
        )
        .ok();
    assert_eq!(run.text().trim(), "alice (user)");
    let reused = env
        .client(
            &server,
            &["login", "--user", "alice", "--otp", &next],
            &as_alice,
        )
        .fails();
    assert!(reused.contains("already used"), "{reused}");

    // The admin resets alice's second factor: her logins need no code again.
    env.client(
        &server,
        &["user", "2fa-reset", "alice", "--user", "admin"],
        &as_admin,
    )
    .ok();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the reused code's backoff
    let run = env
        .client(&server, &["login", "--user", "alice"], &as_alice)
        .ok();
    assert_eq!(run.text().trim(), "alice (user)");

    // Enabled again; a recovery code (VSERV_OTP) logs in to disable it with another.
    let (uri, recovery) = enable(&env, &server);
    let confirm = code_at(&uri, now());
    env.client(
        &server,
        &["2fa", "confirm", &confirm, "--user", "alice"],
        &as_alice,
    )
    .ok();
    let with_recovery = [
        ("VSERV_PASSWORD", ALICE_PW),
        ("VSERV_OTP", recovery[0].as_str()),
    ];
    env.client(
        &server,
        &["2fa", "disable", &recovery[1], "--user", "alice"],
        &with_recovery,
    )
    .ok();
    let run = env
        .client(&server, &["login", "--user", "alice"], &as_alice)
        .ok();
    assert_eq!(run.text().trim(), "alice (user)");
    server.stop();
}
