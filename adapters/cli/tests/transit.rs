//! `vserv tkey`, `seal`, `unseal`, `rewrap` and `gk` end to end through the binary against a
//! real server: a key made and listed (`--json`), a file larger than one request sealed
//! through stdin into token lines and unsealed back byte for byte, rotation and rewrap,
//! retirement, refusals with one-line reasons, `gk` in hex and base64, and a restart of the
//! server keeping the keys (and `master.key`, mode 0600) so old tokens still open.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Run, Server};

const ALICE_PW: &str = "alice-password-1";

struct Env {
    /// Declared first: the server is stopped before its directory is removed.
    server: Option<Server>,
    scratch: common::Env,
}

impl Env {
    fn new() -> Env {
        let scratch = common::Env::new();
        scratch.add_user("alice", true, ALICE_PW);
        let server = Some(Server::start(&scratch.data()));
        Env { server, scratch }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("a running server")
    }

    fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
        self.server = Some(Server::start(&self.scratch.data()));
    }

    /// `vserv ARGS --user alice` with `stdin`.
    fn alice(&self, args: &[&str], stdin: &[u8]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--user", "alice"]);
        self.scratch
            .client_with_input(self.server(), &all, &[("VSERV_PASSWORD", ALICE_PW)], stdin)
    }
}

/// Some bytes of every value, longer than two seal pieces.
fn file_bytes() -> Vec<u8> {
    (0..30_001u32).map(|i| (i * 7 + i / 256) as u8).collect()
}

#[test]
fn a_file_round_trips_through_seal_and_unseal_and_survives_a_restart() {
    let mut env = Env::new();
    assert_eq!(
        env.alice(&["tkey", "new", "files"], b"").ok().text(),
        "version 1\n"
    );
    let file = file_bytes();
    let sealed = env.alice(&["seal", "files", "-"], &file).ok().text();
    let lines: Vec<&str> = sealed.lines().collect();
    // 30001 bytes in pieces of 12000: three tokens, in order.
    assert_eq!(lines.len(), 3, "{sealed}");
    assert!(lines.iter().all(|l| l.starts_with("vserv:v1:files:1:")));
    let back = env.alice(&["unseal", "files"], sealed.as_bytes()).ok();
    assert!(back.stdout == file, "the file did not round-trip");

    // An argument instead of stdin, and a token argument back.
    let token = env.alice(&["seal", "files", "hello"], b"").ok().text();
    let hello = env.alice(&["unseal", "files", token.trim()], b"").ok();
    assert_eq!(hello.stdout, b"hello");

    // Rotate; old tokens still open; rewrap moves them to version 2.
    assert_eq!(
        env.alice(&["tkey", "rotate", "files"], b"").ok().text(),
        "version 2\n"
    );
    let moved = env
        .alice(&["rewrap", "files", "-"], sealed.as_bytes())
        .ok()
        .text();
    assert_eq!(moved.lines().count(), 3);
    assert!(
        moved.lines().all(|l| l.starts_with("vserv:v1:files:2:")),
        "{moved}"
    );
    let json = env.alice(&["tkey", "list", "--json"], b"").ok().text();
    let keys: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(keys[0]["name"], "files");
    assert_eq!(keys[0]["latest"], 2);
    assert_eq!(keys[0]["min_version"], 1);

    // The master key is private, and a restart keeps every key.
    let master = env.scratch.data().join("master.key");
    let mode = std::fs::metadata(&master)
        .expect("master.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    env.restart();
    assert!(
        env.alice(&["unseal", "files"], sealed.as_bytes())
            .ok()
            .stdout
            == file
    );
    assert!(
        env.alice(&["unseal", "files"], moved.as_bytes())
            .ok()
            .stdout
            == file
    );

    // Retire version 1: the old lines are refused with one line, the rewrapped ones open.
    env.alice(&["tkey", "min", "alice", "files", "2"], b"").ok();
    let why = env.alice(&["unseal", "files"], sealed.as_bytes()).fails();
    assert!(why.contains("retired"), "{why}");
    assert!(
        env.alice(&["unseal", "files"], moved.as_bytes())
            .ok()
            .stdout
            == file
    );

    // Deleted: gone.
    env.alice(&["tkey", "del", "files"], b"").ok();
    let why = env.alice(&["unseal", "files"], moved.as_bytes()).fails();
    assert!(why.contains("no transit key"), "{why}");
}

#[test]
fn refusals_are_one_line_and_gk_prints_hex_or_base64() {
    let env = Env::new();
    let why = env.alice(&["seal", "nope", "x"], b"").fails();
    assert!(why.contains("no transit key 'nope'"), "{why}");
    env.alice(&["tkey", "new", "k"], b"").ok();
    env.alice(&["tkey", "new", "other"], b"").ok();
    let token = env.alice(&["seal", "k", "x"], b"").ok().text();
    let why = env.alice(&["unseal", "other", token.trim()], b"").fails();
    assert!(why.contains("made with key 'k'"), "{why}");
    let why = env
        .alice(&["unseal", "k", "vserv:v1:k:1:AAAA"], b"")
        .fails();
    assert!(why.contains("not a transit token"), "{why}");
    let big = "x".repeat(12_001);
    let why = env.alice(&["seal", "k", &big], b"").fails();
    assert!(why.contains("stdin"), "{why}");
    let text = env.alice(&["tkey", "list"], b"").ok().text();
    assert!(text.starts_with("k latest 1 min 1 created "), "{text}");

    let hex = env.alice(&["gk"], b"").ok().text();
    assert_eq!(hex.trim().len(), 64);
    assert!(hex.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    let b64 = env.alice(&["gk", "48", "--base64"], b"").ok().text();
    assert_eq!(b64.trim().len(), 64);
    let why = env.alice(&["gk", "5000"], b"").fails();
    assert!(why.contains("1 to 1024"), "{why}");
}
