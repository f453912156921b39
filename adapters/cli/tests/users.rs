//! End-to-end tests of the account commands: the real `vserv` binary against a server it
//! starts itself on a loopback port, and offline on the data directory.

mod common;

use std::path::Path;

use common::{Env, Run, Server};

/// The account commands' shorthand on the shared [`Env`].
trait Login {
    /// `vserv login --user USER` with password `password`: whoami's answer.
    fn login(&self, server: &Server, user: &str, password: &str) -> Run;
}

impl Login for Env {
    fn login(&self, server: &Server, user: &str, password: &str) -> Run {
        self.client(
            server,
            &["login", "--user", user],
            &[("VSERV_PASSWORD", password)],
        )
    }
}

const ADMIN_PW: &str = "admin-password-1";
const BOB_PW: &str = "bob-password-1";
const CAROL_PW: &str = "carol-password-1";

/// The words of an optional line.
fn words(line: Option<&str>) -> Option<Vec<&str>> {
    line.map(|l| l.split_whitespace().collect())
}

/// The `user list` line of `name`, if listed.
fn listed<'a>(stdout: &'a str, name: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
}

// The server backs off logins of a user after a failure (seconds), so each test orders
// its steps to never need a successful login of a user right after a failed one.

#[test]
fn init_login_and_user_management_over_the_protocol() {
    let env = Env::new();
    let server = Server::start(&env.data());
    let as_admin = [("VSERV_PASSWORD", ADMIN_PW)];

    // First admin, from loopback; only once.
    let run = env
        .client(
            &server,
            &["user", "init", "admin"],
            &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
        )
        .ok();
    assert_eq!(run.text().trim(), "ok");
    let again = env
        .client(
            &server,
            &["user", "init", "other"],
            &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
        )
        .fails();
    assert!(again.contains("already exists"), "{again}");

    // Password login via VSERV_PASSWORD.
    let run = env.login(&server, "admin", ADMIN_PW).ok();
    assert_eq!(run.text().trim(), "admin (admin)");

    // Neither VSERV_PASSWORD nor a terminal: refused, naming the variable.
    let no_secret = env
        .client(&server, &["login", "--user", "admin"], &[])
        .fails();
    assert!(no_secret.contains("VSERV_PASSWORD"), "{no_secret}");
    // Administration needs a login.
    let anonymous = env.client(&server, &["user", "list"], &[]).fails();
    assert!(anonymous.contains("--user"), "{anonymous}");

    for (name, password) in [("bob", BOB_PW), ("carol", CAROL_PW)] {
        let run = env
            .client(
                &server,
                &["user", "add", name, "--user", "admin"],
                &[
                    ("VSERV_PASSWORD", ADMIN_PW),
                    ("VSERV_NEW_PASSWORD", password),
                ],
            )
            .ok();
        assert_eq!(run.text().trim(), "ok");
    }
    let list = env
        .client(&server, &["user", "list", "--user", "admin"], &as_admin)
        .ok();
    assert_eq!(
        words(listed(&list.text(), "bob")),
        Some(vec!["bob", "user", "enabled"])
    );
    assert_eq!(
        words(listed(&list.text(), "admin")),
        Some(vec!["admin", "admin", "enabled"])
    );
    assert!(listed(&list.text(), "carol").is_some(), "{}", list.text());
    let json = env
        .client(
            &server,
            &["user", "list", "--json", "--user", "admin"],
            &as_admin,
        )
        .ok();
    let users: serde_json::Value = serde_json::from_str(&json.text()).unwrap();
    let bob = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "bob")
        .unwrap();
    assert_eq!(
        (&bob["role"], &bob["enabled"]),
        (&"user".into(), &true.into())
    );
    let filtered = env
        .client(
            &server,
            &["user", "list", "bo", "--user", "admin"],
            &as_admin,
        )
        .ok();
    assert!(listed(&filtered.text(), "admin").is_none());
    assert!(listed(&filtered.text(), "bob").is_some());

    // A plain user logs in but may not administer.
    assert_eq!(
        env.login(&server, "bob", BOB_PW).ok().text().trim(),
        "bob (user)"
    );
    let not_admin = env
        .client(
            &server,
            &["user", "list", "--user", "bob"],
            &[("VSERV_PASSWORD", BOB_PW)],
        )
        .fails();
    assert!(not_admin.contains("needs an admin"), "{not_admin}");

    // Disable (login refused), enable again.
    env.client(
        &server,
        &["user", "disable", "bob", "--user", "admin"],
        &as_admin,
    )
    .ok();
    let list = env
        .client(&server, &["user", "list", "--user", "admin"], &as_admin)
        .ok();
    assert_eq!(
        words(listed(&list.text(), "bob")),
        Some(vec!["bob", "user", "disabled"])
    );
    env.login(&server, "bob", BOB_PW).fails();
    env.client(
        &server,
        &["user", "enable", "bob", "--user", "admin"],
        &as_admin,
    )
    .ok();
    let list = env
        .client(&server, &["user", "list", "--user", "admin"], &as_admin)
        .ok();
    assert_eq!(
        words(listed(&list.text(), "bob")),
        Some(vec!["bob", "user", "enabled"])
    );

    // Delete: gone from the list, cannot log in.
    assert_eq!(
        env.login(&server, "carol", CAROL_PW).ok().text().trim(),
        "carol (user)"
    );
    env.client(
        &server,
        &["user", "del", "carol", "--user", "admin"],
        &as_admin,
    )
    .ok();
    let list = env
        .client(&server, &["user", "list", "--user", "admin"], &as_admin)
        .ok();
    assert!(listed(&list.text(), "carol").is_none(), "{}", list.text());
    env.login(&server, "carol", CAROL_PW).fails();

    // Own password change (the login password is the current one); then the old password
    // is a wrong password: exit 1 with a one-line reason.
    let new_pw = "admin-password-2";
    env.client(
        &server,
        &["user", "passwd", "--user", "admin"],
        &[("VSERV_PASSWORD", ADMIN_PW), ("VSERV_NEW_PASSWORD", new_pw)],
    )
    .ok();
    env.login(&server, "admin", new_pw).ok();
    let wrong = env.login(&server, "admin", ADMIN_PW).fails();
    assert!(wrong.contains("cannot log in as 'admin'"), "{wrong}");
    assert!(wrong.contains("login failed"), "{wrong}");
    server.stop();
}

#[test]
fn key_login_with_a_keygen_user_key() {
    let env = Env::new();
    let server = Server::start(&env.data());
    env.client(
        &server,
        &["user", "init", "admin"],
        &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
    )
    .ok();

    let keygen = |file: &str| {
        let path = env.path(file);
        let made = env
            .vserv(
                &["keygen", "--user", "--out", path.to_str().expect("utf-8")],
                &[],
            )
            .ok();
        let field = |name: &str| {
            made.text()
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name:?} in {:?}", made.text()))
                .to_owned()
        };
        (path, field("public key: "), field("fingerprint: "))
    };
    let (key1, public1, fingerprint1) = keygen("one.key");
    let (key2, _, fingerprint2) = keygen("two.key");
    let key1 = key1.to_str().expect("utf-8");
    let key2 = key2.to_str().expect("utf-8");
    assert_eq!(public1.len(), 66);
    let text = std::fs::read_to_string(key1).unwrap();
    assert_eq!(text.lines().next(), Some("vserv-user-key-v1"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key1).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // keygen never overwrites a key.
    env.vserv(&["keygen", "--user", "--out", key1], &[]).fails();

    // Register one key by its hex, the other by its file (only the public half is sent).
    env.client(
        &server,
        &["user", "key", "add", &public1, "--user", "admin"],
        &[("VSERV_PASSWORD", ADMIN_PW)],
    )
    .ok();
    env.client(
        &server,
        &["user", "key", "add", "--file", key2, "--user", "admin"],
        &[("VSERV_PASSWORD", ADMIN_PW)],
    )
    .ok();

    // No password anywhere: the key alone logs in.
    let run = env
        .client(&server, &["login", "--user", "admin", "--key", key1], &[])
        .ok();
    assert_eq!(run.text().trim(), "admin (admin)");
    let keys = env
        .client(
            &server,
            &["user", "key", "list", "--user", "admin", "--key", key2],
            &[],
        )
        .ok();
    let keys = keys.text();
    let mut listed_keys: Vec<&str> = keys.lines().collect();
    listed_keys.sort_unstable();
    let mut expected = vec![fingerprint1.as_str(), fingerprint2.as_str()];
    expected.sort_unstable();
    assert_eq!(listed_keys, expected);
    let json = env
        .client(
            &server,
            &[
                "user", "key", "list", "--json", "--user", "admin", "--key", key2,
            ],
            &[],
        )
        .ok();
    let keys: Vec<String> = serde_json::from_str(&json.text()).unwrap();
    let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, expected);

    // The signature names the account: the same key does not log in as someone else.
    let other = env
        .client(&server, &["login", "--user", "root", "--key", key1], &[])
        .fails();
    assert!(other.contains("login failed"), "{other}");

    // A removed key no longer logs in.
    env.client(
        &server,
        &[
            "user",
            "key",
            "del",
            &fingerprint1,
            "--user",
            "admin",
            "--key",
            key2,
        ],
        &[],
    )
    .ok();
    let removed = env
        .client(&server, &["login", "--user", "admin", "--key", key1], &[])
        .fails();
    assert!(removed.contains("cannot log in as 'admin'"), "{removed}");
    server.stop();
}

#[test]
fn offline_administration_on_the_data_directory() {
    let env = Env::new();
    let data = env.data_arg();

    // Bootstrap without uini: the first user of an empty store must be an admin.
    let plain = env
        .vserv(
            &["user", "add", "carol", "--data", &data],
            &[("VSERV_NEW_PASSWORD", CAROL_PW)],
        )
        .fails();
    assert!(plain.contains("--admin"), "{plain}");
    env.vserv(
        &["user", "add", "root", "--admin", "--data", &data],
        &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
    )
    .ok();
    env.vserv(
        &["user", "add", "carol", "--data", &data],
        &[("VSERV_NEW_PASSWORD", CAROL_PW)],
    )
    .ok();
    let list = env.vserv(&["user", "list", "--data", &data], &[]).ok();
    let json = env
        .vserv(&["user", "list", "--json", "--data", &data], &[])
        .ok();
    let users: serde_json::Value = serde_json::from_str(&json.text()).unwrap();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["name"] == "root" && u["role"] == "admin"),
        "{}",
        json.text()
    );
    assert_eq!(
        listed(&list.text(), "root").map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["root", "admin", "enabled"])
    );
    assert!(listed(&list.text(), "carol").is_some(), "{}", list.text());

    // The server sees what was written offline; offline access is refused while it runs.
    let server = Server::start(&env.data());
    assert_eq!(
        env.login(&server, "carol", CAROL_PW).ok().text().trim(),
        "carol (user)"
    );
    assert_eq!(
        env.login(&server, "root", ADMIN_PW).ok().text().trim(),
        "root (admin)"
    );
    let busy = env.vserv(&["user", "list", "--data", &data], &[]).fails();
    assert!(busy.contains("in use"), "{busy}");
    let busy = env
        .vserv(
            &["user", "add", "dave", "--data", &data],
            &[("VSERV_NEW_PASSWORD", BOB_PW)],
        )
        .fails();
    assert!(busy.contains("in use"), "{busy}");
    server.stop();

    // Stopped again: delete and set a password offline, then check over the protocol.
    // The deleted user's home is archived whole, as the server's `udel` does.
    let home = env.data().join("homes/carol");
    std::fs::create_dir_all(home.join("docs")).unwrap();
    std::fs::write(home.join("docs/a.txt"), b"carol's").unwrap();
    env.vserv(&["user", "del", "carol", "--data", &data], &[])
        .ok();
    assert!(
        !home.exists(),
        "the home of a deleted user stayed in homes/"
    );
    let archived: Vec<_> = std::fs::read_dir(env.data().join("deleted-homes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(
        std::fs::read(archived[0].join("docs/a.txt")).unwrap(),
        b"carol's"
    );
    let new_pw = "root-password-2";
    env.vserv(
        &["user", "passwd", "root", "--data", &data],
        &[("VSERV_NEW_PASSWORD", new_pw)],
    )
    .ok();
    let server = Server::start(&env.data());
    assert_eq!(
        env.login(&server, "root", new_pw).ok().text().trim(),
        "root (admin)"
    );
    env.login(&server, "root", ADMIN_PW).fails();
    env.login(&server, "carol", CAROL_PW).fails();
    server.stop();
}

#[test]
fn offline_commands_refuse_a_missing_data_directory() {
    let env = Env::new();
    let missing = env.path("nowhere");
    let missing = missing.to_str().expect("utf-8 path");
    let line = env.vserv(&["user", "list", "--data", missing], &[]).fails();
    assert!(line.contains("no data directory"), "{line}");
    assert!(!Path::new(missing).exists());
}

/// `vserv bench login` runs its server as a separate process and reports that process's
/// memory; many sessions logging in at once (spread over source addresses, so the per-address
/// limit lets them all run) leave it within the password-check pool: one 19 MiB slot per
/// check allowed at once (one per CPU), plus slack.
#[cfg(target_os = "linux")]
#[test]
fn the_login_bench_reports_the_server_memory_which_stays_within_the_check_pool() {
    let threads = 12u64;
    let out = std::process::Command::new(common::BIN)
        .args([
            "bench",
            "login",
            "--json",
            "--threads",
            "12",
            "--sources",
            "2",
        ])
        .args(["--logins", "36", "--warmup", "0.1", "--seconds", "600"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run the bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["sources"], 2);
    assert!(report["completed"].as_u64().expect("completed") >= 36);
    let kib = |key: &str| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {report}"))
    };
    let (start, peak, end) = (
        kib("server_rss_start_kib"),
        kib("server_peak_rss_kib"),
        kib("server_rss_end_kib"),
    );
    assert!(start > 0 && peak >= end && peak >= start, "{report}");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let bound = (cpus.min(threads) + 2) * 19 * 1024;
    assert!(
        peak - start < bound,
        "the server grew {} KiB under {threads} concurrent logins (allowed {bound}): {report}",
        peak - start
    );
}
