//! `vserv tables` and `vserv query` end to end through the binary against a real `vserv
//! serve` with `[[tables]]` in its configuration: anonymous and logged-in access, aligned
//! fields and `--json`, prefix pages, a file replaced on disk answered at once, a broken file
//! keeping the last good rows (its error in `tables`), and external handlers (a good one and
//! one that hangs) with the server serving on.

mod common;

use std::path::Path;

use common::{Run, Server};

const ALICE_PW: &str = "alice-password-1";

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[cfg(unix)]
fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[cfg(unix)]
#[test]
fn tables_and_queries_through_the_binary() {
    let env = common::Env::new();
    let things = env.path("things.csv");
    replace(
        &things,
        "item,place\nkettle,kitchen\nkeys,hook by the door\naxe,shed\n",
    );
    let secret = env.path("secret.csv");
    replace(&secret, "code,value\nsafe,1234\n");
    let handlers = env
        .dir()
        .canonicalize()
        .expect("canonical")
        .join("handlers");
    std::fs::create_dir(&handlers).expect("mkdir");
    script(
        &handlers.join("hello"),
        r#"cat >/dev/null; echo '{"rows":[{"greeting":"hello from a handler"}]}'"#,
    );
    script(&handlers.join("hang"), "sleep 30");
    let config = env.path("serve.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[files]
min_free_bytes = 0

[hooks]
dir = "{handlers}"
timeout_secs = 1

[[tables]]
name = "things"
file = "{things}"
key = "item"
access = "anyone"

[[tables]]
name = "secret"
file = "{secret}"

[[tables]]
name = "greet"
file = "{things}"
access = "anyone"
handler = "hello"

[[tables]]
name = "stuck"
file = "{things}"
access = "anyone"
handler = "hang"
"#,
            handlers = handlers.display(),
            things = things.display(),
            secret = secret.display(),
        ),
    )
    .expect("config");
    env.add_user("alice", true, ALICE_PW);
    let server = Server::start_with(&env.data(), Some(&config), None);
    let anon = |args: &[&str]| env.client(&server, args, &[]);
    let alice = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--user", "alice"]);
        env.client(&server, &all, &[("VSERV_PASSWORD", ALICE_PW)])
    };

    // Anonymous: only the tables open to anyone.
    let listed = anon(&["tables", "--json"]).ok().text();
    let json: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let names: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["greet", "stuck", "things"]);
    let things_info = &json[2];
    assert_eq!(things_info["rows"], 3);
    assert_eq!(things_info["columns"], serde_json::json!(["item", "place"]));
    assert!(things_info["error"].is_null());

    assert_eq!(
        anon(&["query", "things", "keys"]).ok().text(),
        "item:  keys\nplace: hook by the door\n"
    );
    assert_eq!(
        anon(&["query", "things", "keys", "--json"])
            .ok()
            .text()
            .trim(),
        r#"{"item":"keys","place":"hook by the door"}"#
    );
    assert_eq!(
        anon(&["query", "things", "--prefix", "k", "--limit", "1", "--json"])
            .ok()
            .text()
            .trim(),
        r#"[{"item":"kettle","place":"kitchen"}]"#
    );
    let all = anon(&["query", "things", "--prefix", ""]).ok().text();
    assert_eq!(all.matches("item:").count(), 3, "{all}");
    let why = anon(&["query", "things", "spoon"]).fails();
    assert!(why.contains("no row"), "{why}");
    let why = anon(&["query", "secret", "safe"]).fails();
    assert!(why.contains("log in"), "{why}");

    // Logged in: the users' table too.
    assert_eq!(
        alice(&["query", "secret", "safe"]).ok().text(),
        "code:  safe\nvalue: 1234\n"
    );
    assert!(alice(&["tables"]).ok().text().contains("table:   secret"));

    // Replaced on disk: the next query answers from the new file.
    replace(&things, "item,place\nkeys,pocket\n");
    assert_eq!(
        anon(&["query", "things", "keys", "--json"])
            .ok()
            .text()
            .trim(),
        r#"{"item":"keys","place":"pocket"}"#
    );
    // Broken: the last good rows serve, `tables` says why.
    replace(&things, "item,place\n\"keys,drawer\n");
    assert_eq!(
        anon(&["query", "things", "keys", "--json"])
            .ok()
            .text()
            .trim(),
        r#"{"item":"keys","place":"pocket"}"#
    );
    let shown = anon(&["tables"]).ok().text();
    assert!(shown.contains("error:") && shown.contains("CSV"), "{shown}");

    // External handlers: one answers, one hangs and is cut off; the server serves on.
    assert_eq!(
        anon(&["query", "greet", "anything"]).ok().text(),
        "greeting: hello from a handler\n"
    );
    let why = anon(&["query", "stuck", "keys"]).fails();
    assert!(why.contains("did not finish"), "{why}");
    assert_eq!(
        anon(&["query", "greet", "again", "--json"])
            .ok()
            .text()
            .trim(),
        r#"{"greeting":"hello from a handler"}"#
    );
    let _: Run = anon(&["ping"]).ok();
    server.stop();
}

#[test]
fn a_bad_tables_configuration_is_refused_at_start() {
    let env = common::Env::new();
    let config = env.path("serve.toml");
    std::fs::write(
        &config,
        "[[tables]]\nname = \"t\"\nfile = \"/t.csv\"\n[[tables]]\nname = \"t\"\nfile = \"/u.csv\"\n",
    )
    .expect("config");
    let why = env
        .vserv(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data",
                &env.data_arg(),
                "--config",
                config.to_str().expect("utf-8"),
            ],
            &[],
        )
        .fails();
    assert!(why.contains("used twice"), "{why}");
}
