//! Replication between real `vserv serve` processes over loopback (issue 13, "Real
//! processes"): three servers in a line A - B - C (B on the smol runtime, A and C on the
//! blocking one), configured with `[[peers]]`; entries
//! appended on each; B killed with SIGKILL while A's entries stream to it and restarted on
//! the same data directory; all three converge (watched with `vserv peer status`) and, once
//! stopped, hold the same feeds, each replica byte for byte its origin's, and
//! `vserv chain verify` passes on each.
//!
//! Also: peers added and removed at runtime with `vserv peer add|del`, shown by `vserv peer
//! list`, kept across a restart.
//!
//! Addresses: each server is first started alone on port 0 (which also creates its
//! identity), to learn its port and fingerprint, and stopped; the peers' configurations then
//! name those ports, and every restart listens on the same one. Every process the test starts
//! is held by a guard that kills it when dropped, also when an assertion fails.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vserv_blocking::Client;
use vserv_core::commands::{Command as Request, Credential, Reply, SecretBytes};
use vserv_core::{Fingerprint, ServerKey};
use vserv_service::client::ClientOptions;
use vserv_service::replicas::Replicas;
use vserv_store::db::FjallStore;

use common::{BIN, Env};

const ADMIN_PW: &str = "admin-password-1";

/// How long the servers get to converge after the last append.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);

/// A running `vserv serve`, killed (and waited for) when dropped.
struct Proc {
    child: Child,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server of the test: its files, and its process while it runs.
struct Node {
    name: &'static str,
    data: PathBuf,
    config: PathBuf,
    log: PathBuf,
    /// `blocking` or `smol`.
    runtime: &'static str,
    addr: String,
    fingerprint: String,
    proc: Option<Proc>,
}

impl Node {
    /// Creates the admin offline, then starts the server alone on port 0 to learn its
    /// address and fingerprint, and stops it.
    fn create(env: &Env, name: &'static str, runtime: &'static str) -> Node {
        let data = env.path(name);
        env.vserv_with_input(
            &[
                "user",
                "add",
                "admin",
                "--admin",
                "--data",
                data.to_str().expect("utf-8 path"),
            ],
            &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
            b"",
        )
        .ok();
        let mut node = Node {
            name,
            config: env.path(&format!("{name}.toml")),
            log: env.path(&format!("{name}.log")),
            data,
            runtime,
            addr: "127.0.0.1:0".into(),
            fingerprint: String::new(),
            proc: None,
        };
        node.write_config(&[]);
        node.start();
        node.stop();
        node
    }

    /// Writes the configuration: this node's address, no connection rate limit, no
    /// free-space reserve, and `peers`
    /// (`(fingerprint, address to dial)`).
    fn write_config(&self, peers: &[(&str, Option<&str>)]) {
        // Every poll of `vserv peer status` is a new loopback connection: no rate limit.
        let mut text = format!(
            "listen = \"{}\"\nruntime = \"{}\"\n[rate_limit]\nconnections = 0\n\
             [files]\nmin_free_bytes = 0\n",
            self.addr, self.runtime
        );
        for (fingerprint, address) in peers {
            text.push_str(&format!("[[peers]]\nfingerprint = \"{fingerprint}\"\n"));
            if let Some(address) = address {
                text.push_str(&format!("address = \"{address}\"\n"));
            }
        }
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Starts `vserv serve --config` and reads the address and fingerprint it prints.
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log");
        let mut child = Command::new(BIN)
            .args(["-vv", "serve", "--config"])
            .arg(&self.config)
            .arg("--data")
            .arg(&self.data)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn vserv serve");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut proc = Proc {
            child,
            _stdout: stdout,
        };
        let mut line = String::new();
        proc._stdout.read_line(&mut line).expect("serve output");
        let addr = line
            .strip_prefix("vserv listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("{}: unexpected first line {line:?}", self.name))
            .to_owned();
        line.clear();
        proc._stdout.read_line(&mut line).expect("serve output");
        let fingerprint = line
            .strip_prefix("server key fingerprint: ")
            .unwrap_or_else(|| panic!("{}: unexpected second line {line:?}", self.name))
            .trim()
            .to_owned();
        self.addr = addr;
        self.fingerprint = fingerprint;
        self.proc = Some(proc);
    }

    /// SIGKILL, and wait until the process is gone.
    fn stop(&mut self) {
        self.proc = None;
    }

    /// A logged-in admin session on this server, its key pinned.
    fn client(&self, env: &Env) -> Client {
        let mut options = ClientOptions::new(env.path("known_servers"));
        options.pinned = Some(self.fingerprint.parse().expect("fingerprint"));
        let mut client = Client::connect(&self.addr, &options).expect("connect");
        let reply = client
            .call(&Request::Login {
                user: "admin".into(),
                credential: Credential::Password(SecretBytes::new(ADMIN_PW.as_bytes().to_vec())),
            })
            .expect("login");
        assert!(matches!(reply, Reply::User { .. }), "{reply:?}");
        client
    }

    /// `vserv peer status` on this server.
    fn status(&self, env: &Env) -> String {
        self.peer(env, &["status"]).ok().text()
    }

    /// `vserv peer ARGS...` on this server as its admin.
    fn peer(&self, env: &Env, args: &[&str]) -> common::Run {
        let known = env.path("known_servers");
        let mut all = vec!["peer"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[
            "--user",
            "admin",
            "--server",
            &self.addr,
            "--server-key",
            &self.fingerprint,
            "--known-servers",
            known.to_str().expect("utf-8 path"),
        ]);
        env.vserv(&all, &[("VSERV_PASSWORD", ADMIN_PW)])
    }
}

/// Appends `count` records on `node` in pipelined batches of `batch`; returns how many were
/// acknowledged.
fn append(client: &mut Client, tag: &str, from: usize, count: usize, batch: usize) -> u64 {
    let mut acked = 0;
    for start in (from..from + count).step_by(batch) {
        let commands: Vec<Request> = (start..(start + batch).min(from + count))
            .map(|i| Request::Rput {
                kind: "note".into(),
                record_id: format!("{tag}-{i}").into_bytes(),
                body: vec![b'x'; 100],
            })
            .collect();
        for reply in client.call_pipelined(&commands, 64).expect("rput batch") {
            assert!(matches!(reply, Ok(Reply::Appended { .. })), "{reply:?}");
            acked += 1;
        }
    }
    acked
}

/// From `vserv peer status`: the seq held here of each origin, and whether every peer is
/// up and neither behind nor ahead on any feed.
fn parse_status(text: &str) -> (BTreeMap<String, u64>, bool) {
    let mut held = BTreeMap::new();
    let mut settled = true;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            // `peer FPR ADDRESS|(accepts its links) up|down ...`
            ["peer", ..] => settled &= words.contains(&"up"),
            [
                "origin",
                origin,
                "held",
                n,
                "peer",
                _,
                "behind",
                behind,
                "ahead",
                ahead,
            ] => {
                held.insert((*origin).to_owned(), n.parse().expect("held seq"));
                settled &= *behind == "0" && *ahead == "0";
            }
            _ => {}
        }
    }
    (held, settled)
}

/// Each held feed's head `(seq, hash)`, by origin.
type Heads = BTreeMap<Fingerprint, (u64, [u8; 32])>;

/// The server key, the feeds and their heads of a stopped server's data directory.
fn stored_clock(data: &Path) -> (ServerKey, Replicas, Heads) {
    let own = vserv_store::identity::load(data)
        .expect("identity")
        .identity
        .public_key();
    let store = FjallStore::open(data).expect("open the store");
    let replicas = Replicas::new(Arc::new(store), own);
    let clock = replicas
        .clock()
        .expect("clock")
        .into_iter()
        .map(|h| (h.origin.fingerprint(), (h.seq, h.hash)))
        .collect();
    (own, replicas, clock)
}

#[test]
fn three_processes_in_a_line_converge_across_a_sigkill() {
    let started = Instant::now();
    let env = Env::new();
    // B, in the middle, runs on smol; A and C on the blocking runtime.
    let mut a = Node::create(&env, "a", "blocking");
    let mut b = Node::create(&env, "b", "smol");
    let mut c = Node::create(&env, "c", "blocking");
    // The line A - B - C: A dials B, B dials C; C only accepts B's links, B accepts A's.
    a.write_config(&[(&b.fingerprint, Some(&b.addr))]);
    b.write_config(&[(&a.fingerprint, None), (&c.fingerprint, Some(&c.addr))]);
    c.write_config(&[(&b.fingerprint, None)]);
    for node in [&mut a, &mut b, &mut c] {
        node.start();
    }

    // Entries on every server; A's stream to B (and on to C) while B is killed.
    let mut on_c = c.client(&env);
    let mut total_c = append(&mut on_c, "c", 0, 100, 50);
    let mut on_a = a.client(&env);
    let mut total_a = append(&mut on_a, "a", 0, 500, 100);
    // B dies while A keeps appending, so A's entries are on their way to B (and on to C).
    total_a += std::thread::scope(|scope| {
        let appending = scope.spawn(|| append(&mut on_a, "a", 500, 1500, 100));
        std::thread::sleep(Duration::from_millis(100));
        b.proc
            .as_mut()
            .expect("b runs")
            .child
            .kill()
            .expect("SIGKILL b");
        b.stop();
        appending.join().expect("appending on A")
    });
    total_c += append(&mut on_c, "c", 100, 100, 50);
    b.start();
    let mut on_b = b.client(&env);
    let total_b = append(&mut on_b, "b", 0, 300, 100);
    total_a += append(&mut on_a, "a", 2000, 200, 100);
    for client in [on_a, on_b, on_c] {
        client.quit().expect("quit");
    }
    let expected: BTreeMap<String, u64> = [
        (a.fingerprint.clone(), total_a),
        (b.fingerprint.clone(), total_b),
        (c.fingerprint.clone(), total_c),
    ]
    .into();
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let statuses: Vec<String> = [&a, &b, &c].iter().map(|n| n.status(&env)).collect();
        let done = statuses.iter().all(|text| {
            let (held, settled) = parse_status(text);
            held == expected && settled
        });
        if done {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = [&a, &b, &c]
                .iter()
                .map(|n| std::fs::read_to_string(&n.log).unwrap_or_default())
                .map(|log| log.lines().rev().take(20).collect::<Vec<_>>().join("\n"))
                .collect();
            panic!(
                "no convergence to {expected:?} within {CONVERGE_WITHIN:?}:\nA:\n{}\nB:\n{}\nC:\n{}\n\
                 logs (last lines, newest first):\n{}",
                statuses[0],
                statuses[1],
                statuses[2],
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let status_b = b.status(&env);
    assert!(
        status_b.contains(&format!("peer {} (accepts its links) up", a.fingerprint)),
        "{status_b}"
    );
    assert!(
        status_b.contains(&format!("peer {} {} up", c.fingerprint, c.addr)),
        "{status_b}"
    );

    for node in [&mut a, &mut b, &mut c] {
        node.stop();
    }
    for node in [&a, &b, &c] {
        let verified = env.vserv(
            &["chain", "verify", "--data", node.data.to_str().unwrap()],
            &[],
        );
        assert!(verified.ok().text().starts_with("ok: "), "{}", node.name);
    }
    // Offline: the same heads everywhere, and every replica is its origin's feed.
    let stores: Vec<_> = [&a, &b, &c].iter().map(|n| stored_clock(&n.data)).collect();
    for (_, _, clock) in &stores {
        assert_eq!(clock, &stores[0].2, "every server holds the same heads");
        let seqs: BTreeMap<String, u64> = clock
            .iter()
            .map(|(origin, (seq, _))| (origin.to_string(), *seq))
            .collect();
        assert_eq!(seqs, expected);
    }
    for (own, origin_replicas, _) in &stores {
        let theirs = origin_replicas.feed(*own).unwrap();
        for (holder, replicas, _) in &stores {
            if holder == own {
                continue;
            }
            let held = replicas.feed(*own).unwrap();
            let head = held.head().expect("head").expect("a replica");
            head.verify().expect("the replica's signed head verifies");
            assert_eq!(Some(head), theirs.head().expect("head"));
            for seq in 1..=head.head.seq {
                assert_eq!(
                    held.by_seq(seq).expect("read"),
                    theirs.by_seq(seq).expect("read"),
                    "seq {seq} of {}",
                    own.fingerprint()
                );
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_listing_itself_as_a_peer_does_not_start() {
    let env = Env::new();
    let node = Node::create(&env, "a", "blocking");
    node.write_config(&[(&node.fingerprint, None)]);
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&node.config)
        .arg("--data")
        .arg(&node.data)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vserv serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vserv serve started with its own key as a peer");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is this server's own key", node.fingerprint)),
        "{stderr}"
    );
}

#[test]
fn peers_added_with_the_cli_link_are_listed_kept_and_removed() {
    let env = Env::new();
    let mut a = Node::create(&env, "a", "blocking");
    let mut b = Node::create(&env, "b", "smol");
    a.start();
    b.start();
    // A accepts B's links, B dials A: neither has a [[peers]] entry.
    let added = a.peer(&env, &["add", &b.fingerprint]).ok().text();
    assert!(added.contains("added"), "{added}");
    b.peer(&env, &["add", &a.fingerprint, &a.addr]).ok();
    let deadline = Instant::now() + CONVERGE_WITHIN;
    loop {
        let listed = b.peer(&env, &["list"]).ok().text();
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("peer {} {}", a.fingerprint, a.addr)))
            .unwrap_or_else(|| panic!("A is not listed: {listed}"));
        assert!(line.ends_with("added at runtime"), "{line}");
        if line.contains(" up") {
            break;
        }
        assert!(Instant::now() < deadline, "no link: {listed}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Typed refusals reach the CLI.
    let unknown = format!("SHA256:{}", "0".repeat(64));
    let err = b.peer(&env, &["del", &unknown]).fails();
    assert!(err.contains("no peer"), "{err}");
    let err = b.peer(&env, &["add", &a.fingerprint, "no-port"]).fails();
    assert!(err.contains("bad peer address"), "{err}");
    // Kept across a restart.
    b.stop();
    b.start();
    let listed = b.status(&env);
    assert!(
        listed.contains(&format!("peer {} {}", a.fingerprint, a.addr))
            && listed.contains("added at runtime"),
        "{listed}"
    );
    let removed = b.peer(&env, &["del", &a.fingerprint]).ok().text();
    assert!(removed.contains("removed"), "{removed}");
    assert_eq!(b.status(&env), "no peers configured\n");
}
