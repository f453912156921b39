//! End-to-end tests of the ledger commands and the chain tools: the real `vserv` binary
//! against a server it starts on a loopback port, and offline on the data directory.

mod common;

use std::sync::Arc;

use vserv_core::ServerIdentity;
use vserv_core::ledger::{Entry, EntryFields};
use vserv_service::ledger::{Ledger, NewRecord, entry_key};
use vserv_service::replicas::Replicas;
use vserv_store::MemoryStore;
use vserv_store::db::FjallStore;
use vserv_store::kv::{Op, Store, Table};

use common::{Env, Run, Server};

const ADMIN_PW: &str = "admin-password-1";

/// The ledger commands' shorthand on the shared [`Env`].
trait Admin {
    /// Runs `vserv ARGS --user admin` connected to `server`, with `stdin` as its input.
    fn admin(&self, server: &Server, args: &[&str], stdin: &[u8]) -> Run;

    /// Creates the first admin offline (and so the data directory and its identity).
    fn init(&self);

    /// Creates the first admin offline, then starts a server on the data directory.
    fn start(&self) -> Server;

    /// Writes `bytes` to a file in the scratch directory and returns its path.
    fn file(&self, name: &str, bytes: &[u8]) -> String;
}

impl Admin for Env {
    fn admin(&self, server: &Server, args: &[&str], stdin: &[u8]) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--user", "admin"]);
        self.client_with_input(server, &all, &[("VSERV_PASSWORD", ADMIN_PW)], stdin)
    }

    fn init(&self) {
        self.vserv_with_input(
            &[
                "user",
                "add",
                "admin",
                "--admin",
                "--data",
                &self.data_arg(),
            ],
            &[("VSERV_NEW_PASSWORD", ADMIN_PW)],
            b"",
        )
        .ok();
    }

    fn start(&self) -> Server {
        self.init();
        Server::start(&self.data())
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write file");
        path.to_str().expect("utf-8 path").to_owned()
    }
}

/// The value after `name: ` on the line starting with it.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// `seq N hash HEX` from `rput`'s output.
fn appended(run: &Run) -> (u64, String) {
    let text = run.text();
    let words: Vec<&str> = text.lines().next().unwrap_or("").split(' ').collect();
    match words.as_slice() {
        ["seq", seq, "hash", hash] => (seq.parse().expect("seq"), (*hash).to_owned()),
        _ => panic!("unexpected rput output: {text:?}"),
    }
}

#[test]
fn rput_rget_and_exports_over_the_protocol_and_offline() {
    let env = Env::new();
    let server = env.start();

    // Fields.
    let put = env
        .admin(
            &server,
            &["rput", "note", "name=alice", "score=42", "--id", "r1"],
            b"",
        )
        .ok();
    let (seq, hash) = appended(&put);
    assert_eq!(seq, 1);
    assert_eq!(hash.len(), 64);
    assert!(put.text().contains("record r1"), "{}", put.text());
    // A file's bytes (not UTF-8: shown as hex), and standard input with a generated id.
    let binary = [0u8, 0xff, 0x10, b'x'];
    let path = env.file("body.bin", &binary);
    let put = env
        .admin(&server, &["rput", "blob", &format!("@{path}")], b"")
        .ok();
    assert_eq!(appended(&put).0, 2);
    let put = env
        .admin(&server, &["rput", "memo", "@-"], b"hello\nworld\n")
        .ok();
    assert_eq!(appended(&put).0, 3);
    let generated = put.text();
    let generated = generated
        .lines()
        .find_map(|l| l.strip_prefix("record "))
        .expect("a record line");
    assert_eq!(generated.len(), 32, "{generated}");

    // rget by seq, by id and by hash show the same entry, with its fields.
    for selector in ["1".to_owned(), "id:r1".to_owned(), format!("hash:{hash}")] {
        let got = env.admin(&server, &["rget", &selector], b"").ok().text();
        assert_eq!(field(&got, "seq"), Some("1"), "{got}");
        assert_eq!(field(&got, "kind"), Some("note"));
        assert_eq!(field(&got, "author"), Some("admin"));
        assert_eq!(field(&got, "record"), Some("r1"));
        assert_eq!(field(&got, "hash"), Some(hash.as_str()));
        assert_eq!(field(&got, "body"), Some("2 fields"));
        assert!(got.contains("\n  name = alice\n  score = 42\n"), "{got}");
        let time = field(&got, "time").expect("time");
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");
    }
    let got = env.admin(&server, &["rget", "2"], b"").ok().text();
    assert_eq!(field(&got, "body"), Some("hex, 4 bytes"), "{got}");
    assert!(got.contains("  00ff1078\n"), "{got}");
    let raw = env.admin(&server, &["rget", "2", "--raw"], b"").ok();
    assert_eq!(raw.stdout, binary);
    let got = env
        .admin(&server, &["rget", &format!("id:{generated}")], b"")
        .ok()
        .text();
    assert_eq!(field(&got, "body"), Some("text, 12 bytes"), "{got}");
    assert!(got.contains("  hello\n  world\n"), "{got}");
    let missing = env.admin(&server, &["rget", "9"], b"").fails();
    assert!(missing.contains("no entry"), "{missing}");

    assert_eq!(env.admin(&server, &["rsize"], b"").ok().text().trim(), "3");
    let head = env.admin(&server, &["rhead"], b"").ok().text();
    assert!(head.starts_with("seq 3 hash "), "{head}");
    assert!(head.contains(&server.fingerprint), "{head}");
    let check = env.admin(&server, &["rcheck"], b"").ok().text();
    assert!(check.contains("ok") && check.contains('3'), "{check}");

    // Export over the protocol; it verifies with only the fingerprint, from a file and
    // from standard input.
    let exported = env.admin(&server, &["chain", "export"], b"").ok().stdout;
    let feed = env.file("feed.jsonl", &exported);
    let verified = env
        .vserv(
            &[
                "chain",
                "verify-export",
                &feed,
                "--key",
                &server.fingerprint,
            ],
            &[],
        )
        .ok()
        .text();
    assert!(verified.starts_with("ok: entries 1..=3"), "{verified}");
    env.vserv_with_input(
        &["chain", "verify-export", "-", "--key", &server.fingerprint],
        &[],
        &exported,
    )
    .ok();
    let partial = env
        .admin(&server, &["chain", "export", "--from", "2"], b"")
        .ok()
        .stdout;
    let verified = env
        .vserv_with_input(
            &["chain", "verify-export", "-", "--key", &server.fingerprint],
            &[],
            &partial,
        )
        .ok()
        .text();
    assert!(verified.starts_with("ok: entries 2..=3"), "{verified}");

    // While the server runs, the offline tools refuse its data directory.
    let busy = env
        .vserv(&["chain", "verify", "--data", &env.data_arg()], &[])
        .fails();
    assert!(busy.contains("running server"), "{busy}");
    server.stop();

    // Offline: the same bytes, and the store verifies.
    let offline = env
        .vserv(&["chain", "export", "--data", &env.data_arg()], &[])
        .ok()
        .stdout;
    assert_eq!(offline, exported);
    let verified = env
        .vserv(&["chain", "verify", "--data", &env.data_arg()], &[])
        .ok()
        .text();
    assert_eq!(verified.trim(), "ok: 3 entries verified");
}

#[test]
fn verify_export_refuses_a_wrong_key_and_a_forged_head() {
    let env = Env::new();
    let server = env.start();
    for i in 0..2 {
        env.admin(&server, &["rput", "note", &format!("n={i}")], b"")
            .ok();
    }
    let fingerprint = server.fingerprint.clone();
    server.stop();
    let exported = env
        .vserv(&["chain", "export", "--data", &env.data_arg()], &[])
        .ok()
        .stdout;
    let feed = env.file("feed.jsonl", &exported);

    // Another key's fingerprint.
    let other = format!("SHA256:{}", "ab".repeat(32));
    let wrong = env
        .vserv(&["chain", "verify-export", &feed, "--key", &other], &[])
        .fails();
    assert!(
        wrong.contains("line 1") && wrong.contains(&other),
        "{wrong}"
    );

    // One hex digit of the head's signature changed (the last line, before `"}`).
    let mut forged = exported.clone();
    let at = forged.len() - 4;
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let forged_feed = env.file("forged.jsonl", &forged);
    let refused = env
        .vserv(
            &[
                "chain",
                "verify-export",
                &forged_feed,
                "--key",
                &fingerprint,
            ],
            &[],
        )
        .fails();
    assert!(
        refused.contains("line 4") && refused.contains("seq 2"),
        "{refused}"
    );
    assert!(refused.contains("signature"), "{refused}");
    // The untouched export verifies with the right key.
    env.vserv(
        &["chain", "verify-export", &feed, "--key", &fingerprint],
        &[],
    )
    .ok();
}

#[test]
fn a_tampered_stored_entry_is_named_by_chain_verify() {
    let env = Env::new();
    let server = env.start();
    for i in 1..=4 {
        env.admin(&server, &["rput", "note", &format!("n={i}")], b"")
            .ok();
    }
    let fingerprint = server.fingerprint.clone();
    server.stop();

    // Change entry 2's body through the Store API, keeping a valid encoding.
    {
        let store = FjallStore::open(&env.data()).expect("open the store");
        let bytes = store
            .get(Table::Ledger, &entry_key(2))
            .expect("read")
            .expect("entry 2 stored");
        let mut fields: EntryFields = Entry::decode(&bytes).expect("decodes").into_fields();
        fields.body = b"n=22\n".to_vec();
        let forged = Entry::new(fields).expect("valid entry");
        store
            .commit(vec![Op::Put {
                table: Table::Ledger,
                key: entry_key(2),
                value: forged.to_bytes(),
            }])
            .expect("commit");
    }

    let refused = env
        .vserv(&["chain", "verify", "--data", &env.data_arg()], &[])
        .fails();
    assert!(refused.contains("seq 2"), "{refused}");

    // Its export does not verify either: entry 3 no longer links to the changed entry 2.
    let exported = env
        .vserv(&["chain", "export", "--data", &env.data_arg()], &[])
        .ok()
        .stdout;
    let refused = env
        .vserv_with_input(
            &["chain", "verify-export", "-", "--key", &fingerprint],
            &[],
            &exported,
        )
        .fails();
    assert!(
        refused.contains("line 4") && refused.contains("seq 3"),
        "{refused}"
    );
}

#[test]
fn rabs_rcount_rlist_and_a_range_rcheck_from_the_cli() {
    let env = Env::new();
    let server = env.start();
    for i in 1..=5 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        let id = format!("p{i}");
        env.admin(
            &server,
            &["rput", kind, &format!("i={i}"), "--id", &id],
            b"",
        )
        .ok();
    }
    let last = env.admin(&server, &["rabs", "-1"], b"").ok();
    assert_eq!(field(&last.text(), "seq"), Some("5"), "{}", last.text());
    let first = env.admin(&server, &["rabs", "1"], b"").ok();
    assert_eq!(field(&first.text(), "seq"), Some("1"), "{}", first.text());
    let count = env.admin(&server, &["rcount", "odd", "2", "5"], b"").ok();
    assert_eq!(count.text().trim(), "2");
    let odd = env.admin(&server, &["rlist", "odd"], b"").ok();
    let text = odd.text();
    let seqs: Vec<&str> = text
        .lines()
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(seqs, ["1", "3", "5"]);
    // --json: one object per entry and line, with the same entries and readable times.
    let json = env.admin(&server, &["rlist", "odd", "--json"], b"").ok();
    let objects: Vec<serde_json::Value> = json
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let json_seqs: Vec<u64> = objects.iter().map(|o| o["seq"].as_u64().unwrap()).collect();
    assert_eq!(json_seqs, [1, 3, 5]);
    assert!(
        objects.iter().all(|o| o["kind"] == "odd"),
        "{}",
        json.text()
    );
    let time = objects[0]["time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");
    let all = env
        .admin(&server, &["rlist", "*", "--from", "2", "--max", "2"], b"")
        .ok();
    assert_eq!(all.text().lines().count(), 2, "{}", all.text());
    assert!(all.text().starts_with("2 "), "{}", all.text());
    env.admin(&server, &["rcheck", "2", "4"], b"").ok();
    env.admin(&server, &["rcheck", "4", "2"], b"").fails();
}

/// Stores in the stopped server's data directory a replica of a three-entry feed of another
/// server (as a replication link would), and returns that server's fingerprint.
fn hold_replica(env: &Env) -> String {
    let other = Arc::new(ServerIdentity::from_secret_bytes(&[0x42; 32]).expect("identity"));
    let theirs = Ledger::new(Arc::new(MemoryStore::new()), other.clone());
    let records = (1..=3)
        .map(|i| NewRecord {
            author: "bob".into(),
            kind: "note".into(),
            record_id: format!("theirs-{i}").into_bytes(),
            body: format!("n={i}\n").into_bytes(),
            timestamp: 1_000 + i,
        })
        .collect();
    for result in theirs.append_batch(records) {
        result.expect("append to the other feed");
    }
    let feed = theirs.feed();
    let entries: Vec<Entry> = (1..=3)
        .map(|seq| feed.by_seq(seq).expect("read").expect("stored"))
        .collect();
    let signed = feed.head().expect("read").expect("a head");
    let own = vserv_store::identity::load(&env.data())
        .expect("the server identity")
        .identity
        .public_key();
    let store = FjallStore::open(&env.data()).expect("open the store");
    Replicas::new(Arc::new(store), own)
        .persist(&other.public_key(), &entries, &signed)
        .expect("persist the replica");
    other.public_key().fingerprint().to_string()
}

#[test]
fn reads_and_exports_of_a_held_replica_verify_against_its_origin() {
    let env = Env::new();
    // A first start makes the server's identity; the replica is stored while it is stopped.
    env.start().stop();
    let origin = hold_replica(&env);
    let server = Server::start(&env.data());
    env.admin(&server, &["rput", "mine", "a=1"], b"").ok();

    // The reads with --origin answer from the replica.
    let head = env
        .admin(&server, &["rhead", "--origin", &origin], b"")
        .ok()
        .text();
    assert!(
        head.starts_with("seq 3 hash ") && head.contains(&format!("signed by {origin}")),
        "{head}"
    );
    let size = env
        .admin(&server, &["rsize", "--origin", &origin], b"")
        .ok();
    assert_eq!(size.text().trim(), "3");
    let got = env
        .admin(&server, &["rget", "id:theirs-2", "--origin", &origin], b"")
        .ok()
        .text();
    assert_eq!(field(&got, "seq"), Some("2"), "{got}");
    assert_eq!(field(&got, "author"), Some("bob"), "{got}");
    let listed = env
        .admin(&server, &["rlist", "*", "--origin", &origin], b"")
        .ok()
        .text();
    assert_eq!(listed.lines().count(), 3, "{listed}");
    let last = env
        .admin(&server, &["rabs", "-1", "--origin", &origin], b"")
        .ok()
        .text();
    assert_eq!(field(&last, "record"), Some("theirs-3"), "{last}");
    let counted = env
        .admin(
            &server,
            &["rcount", "note", "1", "3", "--origin", &origin],
            b"",
        )
        .ok();
    assert_eq!(counted.text().trim(), "3");
    let check = env
        .admin(&server, &["rcheck", "--origin", &origin], b"")
        .ok()
        .text();
    assert!(check.contains("ok: 3 entries"), "{check}");
    // Without --origin: the own feed, as before.
    assert_eq!(env.admin(&server, &["rsize"], b"").ok().text().trim(), "1");

    // The export of the replica verifies against the origin's fingerprint alone, and not
    // against the holding server's.
    let exported = env
        .admin(&server, &["chain", "export", "--origin", &origin], b"")
        .ok()
        .stdout;
    let feed = env.file("replica.jsonl", &exported);
    let verified = env
        .vserv(&["chain", "verify-export", &feed, "--key", &origin], &[])
        .ok()
        .text();
    assert!(verified.starts_with("ok: entries 1..=3"), "{verified}");
    let wrong = env
        .vserv(
            &[
                "chain",
                "verify-export",
                &feed,
                "--key",
                &server.fingerprint,
            ],
            &[],
        )
        .fails();
    assert!(wrong.contains("line 1"), "{wrong}");

    // A feed the server does not hold.
    let unknown = format!("SHA256:{}", "cd".repeat(32));
    let refused = env
        .admin(&server, &["chain", "export", "--origin", &unknown], b"")
        .fails();
    assert!(refused.contains("no feed"), "{refused}");
    let refused = env
        .admin(&server, &["rhead", "--origin", &unknown], b"")
        .fails();
    assert!(refused.contains("no feed"), "{refused}");
    let own_fingerprint = server.fingerprint.clone();
    server.stop();

    // Offline: the same bytes; the own fingerprint exports the own feed.
    let data = env.data_arg();
    let offline = env
        .vserv(
            &["chain", "export", "--data", &data, "--origin", &origin],
            &[],
        )
        .ok()
        .stdout;
    assert_eq!(offline, exported);
    let own = env
        .vserv(
            &[
                "chain",
                "export",
                "--data",
                &data,
                "--origin",
                &own_fingerprint,
            ],
            &[],
        )
        .ok()
        .stdout;
    let plain = env.vserv(&["chain", "export", "--data", &data], &[]).ok();
    assert_eq!(own, plain.stdout);
    let refused = env
        .vserv(
            &["chain", "export", "--data", &data, "--origin", &unknown],
            &[],
        )
        .fails();
    assert!(refused.contains("no feed"), "{refused}");
}
