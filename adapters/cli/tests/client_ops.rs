//! End to end: the client's operational edges. A refused connection names the limit and
//! the delay and is retried once; `VSERV_SERVER` and `~/.vserv/config.toml` set the default
//! server; `known-servers list|forget`; `--server-key` over a different recorded key;
//! `vserv help` without a server and `help --server` in CLI syntax.

mod common;

use common::{Env, Server};

/// A server allowing 2 new connections per address per 3 s.
fn rate_limited_server(env: &Env) -> Server {
    let config = env.path("server.toml");
    std::fs::write(
        &config,
        "[files]\nmin_free_bytes = 0\n[rate_limit]\nconnections = 2\nwindow_secs = 3\n",
    )
    .expect("server config");
    Server::start_with(&env.data(), Some(&config), None)
}

#[test]
fn a_refused_connection_names_the_limit_and_is_retried_once_after_the_hint() {
    let env = Env::new();
    let server = rate_limited_server(&env);
    let ping = |extra: &[&str]| {
        let mut args = vec!["ping", "x", "--server", &server.addr, "--server-key"];
        args.push(&server.fingerprint);
        args.extend_from_slice(extra);
        env.vserv(&args, &[])
    };
    ping(&[]).ok();
    ping(&[]).ok();
    let refused = ping(&["--no-retry"]).fails();
    assert!(refused.contains("connection rate limit"), "{refused}");
    assert!(refused.contains("retry in"), "{refused}");
    // By default the client waits the hinted delay and tries once more.
    let retried = ping(&[]).ok();
    assert!(retried.stderr.contains("retrying in"), "{}", retried.stderr);
    assert_eq!(retried.text(), "x\n");
}

#[test]
fn the_default_server_comes_from_the_environment_then_the_config_file() {
    let env = Env::new();
    let server = Server::start(&env.data());
    // Nothing listens on the built-in default here, so success proves where it went.
    std::fs::create_dir_all(env.path(".vserv")).expect("mkdir");
    std::fs::write(
        env.path(".vserv/config.toml"),
        format!("server = \"{}\"\n", server.addr),
    )
    .expect("client config");
    let pin = ["--server-key", server.fingerprint.as_str()];
    let by_file = env.vserv(&["ping", "f", pin[0], pin[1]], &[]).ok();
    assert_eq!(by_file.text(), "f\n");
    // The environment wins over the file; a flag wins over both.
    let wrong = "127.0.0.1:1";
    env.vserv(&["ping", "e", pin[0], pin[1]], &[("VSERV_SERVER", wrong)])
        .fails();
    let by_flag = env
        .vserv(
            &["ping", "g", "--server", &server.addr, pin[0], pin[1]],
            &[("VSERV_SERVER", wrong)],
        )
        .ok();
    assert_eq!(by_flag.text(), "g\n");
    // A typo in the file is reported, not ignored.
    std::fs::write(env.path(".vserv/config.toml"), "sever = \"x\"\n").expect("client config");
    let err = env.vserv(&["ping", "--server", &server.addr], &[]).fails();
    assert!(err.contains("config.toml"), "{err}");
}

#[test]
fn known_servers_list_forget_and_an_explicit_pin_over_a_changed_record() {
    let env = Env::new();
    let server = Server::start(&env.data());
    // First contact records the key.
    env.vserv(&["hello", "--server", &server.addr], &[]).ok();
    let listed = env.vserv(&["known-servers", "list"], &[]).ok().text();
    assert_eq!(listed, format!("{} {}\n", server.addr, server.fingerprint));
    let json = env
        .vserv(&["known-servers", "list", "--json"], &[])
        .ok()
        .text();
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(parsed[0]["host"], server.addr.as_str());
    assert_eq!(parsed[0]["fingerprint"], server.fingerprint.as_str());

    // Record another key for the address: plain connections are refused...
    let known = env.path(".vserv/known_servers");
    let key_file = env.path("other.key");
    let made = env
        .vserv(&["keygen", "--out", key_file.to_str().expect("utf-8")], &[])
        .ok()
        .text();
    let other_key = made
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .expect("public key line")
        .to_owned();
    let line = format!("{} {other_key}\n", server.addr);
    std::fs::write(&known, &line).expect("forge record");
    let changed = env.vserv(&["hello", "--server", &server.addr], &[]);
    assert_eq!(changed.code, Some(1));
    assert!(changed.stderr.contains("has changed"), "{}", changed.stderr);
    // ...an explicit pin is trusted for the command, says so, and keeps the record...
    let pinned = env
        .vserv(
            &[
                "hello",
                "--server",
                &server.addr,
                "--server-key",
                &server.fingerprint,
            ],
            &[],
        )
        .ok();
    assert!(pinned.stderr.contains("differs"), "{}", pinned.stderr);
    assert_eq!(std::fs::read_to_string(&known).expect("read"), line);
    // ...unless --update-known.
    env.vserv(
        &[
            "hello",
            "--server",
            &server.addr,
            "--server-key",
            &server.fingerprint,
            "--update-known",
        ],
        &[],
    )
    .ok();
    env.vserv(&["hello", "--server", &server.addr], &[]).ok();

    // forget: gone from the list; forgetting again fails.
    let forgot = env
        .vserv(&["known-servers", "forget", &server.addr], &[])
        .ok()
        .text();
    assert!(forgot.starts_with("forgot "), "{forgot}");
    assert_eq!(env.vserv(&["known-servers", "list"], &[]).ok().text(), "");
    env.vserv(&["known-servers", "forget", &server.addr], &[])
        .fails();
}

#[test]
fn help_works_without_a_server_and_translates_the_servers_catalogue() {
    let env = Env::new();
    // Nothing listens on the default address in this test.
    let own = env
        .vserv(&["help"], &[("VSERV_SERVER", "127.0.0.1:1")])
        .ok()
        .text();
    assert!(own.contains("known-servers"), "{own}");
    assert!(own.contains("Usage: vserv"), "{own}");
    let sub = env.vserv(&["help", "ls"], &[]).ok().text();
    assert!(sub.contains("vserv ls"), "{sub}");
    env.vserv(&["help", "no-such-command"], &[]).fails();

    let server = Server::start(&env.data());
    let at = format!("--server={}", server.addr);
    let pin = [at.as_str(), "--server-key", server.fingerprint.as_str()];
    let mut args = vec!["help"];
    args.extend_from_slice(&pin);
    let catalogue = env.vserv(&args, &[]).ok().text();
    assert!(catalogue.contains("cli: vserv ls [DIR]"), "{catalogue}");
    assert!(catalogue.contains("shell only"), "{catalogue}");
    // `--server` alone asks the default server.
    let env_server = [("VSERV_SERVER", server.addr.as_str())];
    let args = [
        "help",
        "--server",
        "del",
        "--server-key",
        &server.fingerprint,
    ];
    let one = env.vserv(&args, &env_server).ok().text();
    assert!(one.contains("usage: del PATH"), "{one}");
    assert!(one.contains("cli: vserv rm PATH"), "{one}");
}

#[test]
fn listings_show_rfc3339_times_and_ls_has_a_stable_json_shape() {
    let env = Env::new();
    env.add_user("alice", true, "alice password 1");
    let server = Server::start(&env.data());
    let as_alice = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--server",
            &server.addr,
            "--server-key",
            &server.fingerprint,
            "--user",
            "alice",
        ]);
        env.vserv(
            &all,
            &[("VSERV_PASSWORD", "alice password 1"), ("TZ", "UTC")],
        )
    };
    as_alice(&["mkdir", "docs"]).ok();
    let ls = as_alice(&["ls"]).ok().text();
    // Not a terminal: no header; `d 0 TIME docs` with an RFC 3339 time.
    let fields: Vec<&str> = ls.trim_end().splitn(4, ' ').collect();
    assert_eq!(fields.len(), 4, "{ls}");
    assert_eq!(
        (fields[0], fields[1], fields[3]),
        ("d", "0", "docs"),
        "{ls}"
    );
    let time = fields[2];
    assert_eq!(time.len(), "2026-12-05T06:00:00+00:00".len(), "{time}");
    assert!(time.contains('T') && time.ends_with("+00:00"), "{time}");

    let json = as_alice(&["ls", "--json"]).ok().text();
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("json");
    let entry = &parsed[0];
    assert_eq!(entry["kind"], "d");
    assert_eq!(entry["size"], 0);
    assert_eq!(entry["name"], "docs");
    assert_eq!(entry["modified_local"], time);
    assert!(entry["modified"].as_u64().is_some(), "{json}");

    let stat = as_alice(&["stat", "docs"]).ok().text();
    assert!(stat.contains(&format!("modified {time}")), "{stat}");
}
