//! End-to-end tests of the account commands: the real `vserv` binary against a server it
//! starts itself on a loopback port, and offline on the data directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vserv");

/// A `vserv serve` child process, killed when dropped (also when a test panics).
struct Server {
    child: Child,
    /// Kept open so the server never writes to a closed pipe.
    stdout: BufReader<ChildStdout>,
    addr: String,
    /// The server key fingerprint, pinned by every client (no first-contact notes).
    fingerprint: String,
}

impl Server {
    /// Starts a server on 127.0.0.1, port chosen by the OS, keeping its state in `data`.
    fn start(data: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vserv serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut server = Server {
            child,
            stdout: BufReader::new(stdout),
            addr: String::new(),
            fingerprint: String::new(),
        };
        let mut line = String::new();
        server
            .stdout
            .read_line(&mut line)
            .expect("read serve output");
        let addr = line
            .strip_prefix("vserv listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line from vserv serve: {line:?}"));
        server.addr = addr.to_owned();
        let mut line = String::new();
        server
            .stdout
            .read_line(&mut line)
            .expect("read serve output");
        server.fingerprint = line
            .strip_prefix("server key fingerprint: ")
            .unwrap_or_else(|| panic!("unexpected second line from vserv serve: {line:?}"))
            .trim()
            .to_owned();
        server
    }

    /// Stops the server and waits until it has exited (so its data directory is free).
    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The outcome of one `vserv` run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "expected success; stdout: {} stderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts exit status 1 with exactly one line on stderr, and returns that line.
    fn fails(self) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "expected failure; stdout: {} stderr: {}",
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one-line reason expected: {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with("vserv: "), "{:?}", lines[0]);
        lines[0].to_owned()
    }
}

/// A scratch directory, and the `vserv` invocations of one test.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    fn data_arg(&self) -> String {
        self.data().to_str().expect("utf-8 path").to_owned()
    }

    /// Runs `vserv ARGS` with a clean environment plus `env`, no terminal on stdin.
    fn vserv(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("VSERV_PASSWORD")
            .env_remove("VSERV_NEW_PASSWORD")
            .env_remove("RUST_LOG")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("run vserv");
        Run {
            code: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Runs `vserv ARGS --server ADDR --known-servers FILE --server-key FPR`.
    fn client(&self, server: &Server, args: &[&str], env: &[(&str, &str)]) -> Run {
        let known = self.path("known_servers");
        let known = known.to_str().expect("utf-8 path");
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--server",
            &server.addr,
            "--known-servers",
            known,
            "--server-key",
            &server.fingerprint,
        ]);
        self.vserv(&all, env)
    }

    /// `vserv login --user USER` with password `password`: whoami's answer.
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
    assert_eq!(run.stdout.trim(), "ok");
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
    assert_eq!(run.stdout.trim(), "admin (admin)");

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
        assert_eq!(run.stdout.trim(), "ok");
    }
    let list = env
        .client(&server, &["user", "list", "--user", "admin"], &as_admin)
        .ok();
    assert_eq!(
        words(listed(&list.stdout, "bob")),
        Some(vec!["bob", "user", "enabled"])
    );
    assert_eq!(
        words(listed(&list.stdout, "admin")),
        Some(vec!["admin", "admin", "enabled"])
    );
    assert!(listed(&list.stdout, "carol").is_some(), "{}", list.stdout);
    let filtered = env
        .client(
            &server,
            &["user", "list", "bo", "--user", "admin"],
            &as_admin,
        )
        .ok();
    assert!(listed(&filtered.stdout, "admin").is_none());
    assert!(listed(&filtered.stdout, "bob").is_some());

    // A plain user logs in but may not administer.
    assert_eq!(
        env.login(&server, "bob", BOB_PW).ok().stdout.trim(),
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
        words(listed(&list.stdout, "bob")),
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
        words(listed(&list.stdout, "bob")),
        Some(vec!["bob", "user", "enabled"])
    );

    // Delete: gone from the list, cannot log in.
    assert_eq!(
        env.login(&server, "carol", CAROL_PW).ok().stdout.trim(),
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
    assert!(listed(&list.stdout, "carol").is_none(), "{}", list.stdout);
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
            made.stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name:?} in {:?}", made.stdout))
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
    assert_eq!(run.stdout.trim(), "admin (admin)");
    let keys = env
        .client(
            &server,
            &["user", "key", "list", "--user", "admin", "--key", key2],
            &[],
        )
        .ok();
    let mut listed_keys: Vec<&str> = keys.stdout.lines().collect();
    listed_keys.sort_unstable();
    let mut expected = vec![fingerprint1.as_str(), fingerprint2.as_str()];
    expected.sort_unstable();
    assert_eq!(listed_keys, expected);

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
    assert_eq!(
        listed(&list.stdout, "root").map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["root", "admin", "enabled"])
    );
    assert!(listed(&list.stdout, "carol").is_some(), "{}", list.stdout);

    // The server sees what was written offline; offline access is refused while it runs.
    let server = Server::start(&env.data());
    assert_eq!(
        env.login(&server, "carol", CAROL_PW).ok().stdout.trim(),
        "carol (user)"
    );
    assert_eq!(
        env.login(&server, "root", ADMIN_PW).ok().stdout.trim(),
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
    env.vserv(&["user", "del", "carol", "--data", &data], &[])
        .ok();
    let new_pw = "root-password-2";
    env.vserv(
        &["user", "passwd", "root", "--data", &data],
        &[("VSERV_NEW_PASSWORD", new_pw)],
    )
    .ok();
    let server = Server::start(&env.data());
    assert_eq!(
        env.login(&server, "root", new_pw).ok().stdout.trim(),
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
