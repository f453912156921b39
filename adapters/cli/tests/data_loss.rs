//! End-to-end: a data directory whose store lost data is refused by `vserv serve` and the
//! offline tools (never taken for a new store), `--accept-data-loss` goes on knowingly, and
//! `serve` on an address it cannot bind creates nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::{Env, Server};

const ADMIN_PW: &str = "admin-password-1";

/// An admin and 20 records, written through a real server, which is then stopped.
fn populated(env: &Env) {
    let data = env.data_arg();
    env.vserv(
        &["user", "add", "admin", "--admin", "--data", &data],
        &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
    )
    .ok();
    let server = Server::start(&env.data());
    for i in 0..20 {
        env.client(
            &server,
            &["rput", "note", &format!("n={i}"), "--user", "admin"],
            &[("VSERV_PASSWORD", ADMIN_PW)],
        )
        .ok();
    }
    server.stop();
}

/// Flips one byte near the start of the journal, as the hostile tester did.
fn damage_journal(data: &Path) {
    let jnl = data.join("db/0.jnl");
    let mut bytes = std::fs::read(&jnl).expect("journal");
    bytes[100] ^= 0xff;
    std::fs::write(&jnl, &bytes).expect("write journal");
}

#[test]
fn a_damaged_store_is_refused_until_the_loss_is_accepted() {
    let env = Env::new();
    populated(&env);
    damage_journal(&env.data());
    let data = env.data_arg();

    let refused = env
        .vserv(&["serve", "--listen", "127.0.0.1:0", "--data", &data], &[])
        .fails();
    assert!(refused.contains("data loss"), "{refused}");
    assert!(refused.contains("--accept-data-loss"), "{refused}");
    assert!(refused.contains("backup"), "{refused}");
    // Refused again: the first refusal did not turn it into a new store.
    let again = env
        .vserv(&["serve", "--listen", "127.0.0.1:0", "--data", &data], &[])
        .fails();
    assert!(again.contains("data loss"), "{again}");
    // The offline tools refuse it too, instead of "ok: 0 entries verified".
    let verify = env.vserv(&["chain", "verify", "--data", &data], &[]);
    assert_eq!(verify.code, Some(1), "{}", verify.text());
    assert!(verify.stderr.contains("data loss"), "{}", verify.stderr);
    let add = env
        .vserv(
            &["user", "add", "admin", "--admin", "--data", &data],
            &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
        )
        .fails();
    assert!(add.contains("data loss"), "{add}");

    // Accepted knowingly: the server starts and warns.
    let mut child = env
        .command(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
                &data,
                "--accept-data-loss",
            ],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    assert!(line.starts_with("vserv listening on"), "{line:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("data loss"), "{stderr}");

    // From then on the store is what it is, and starts normally.
    let server = Server::start(&env.data());
    server.stop();
}

#[test]
fn serve_on_an_unusable_address_creates_nothing() {
    let env = Env::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let data = env.data_arg();
    let refused = env
        .vserv(&["serve", "--listen", &addr, "--data", &data], &[])
        .fails();
    assert!(refused.contains("listening on"), "{refused}");
    assert!(!env.data().exists(), "the data directory was created");
}
