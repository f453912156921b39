//! `vserv msg` end to end through the binary against a real server: two users, a sealed
//! message sent by one and opened and verified by the other (first contact, then verified);
//! a recipient whose message key changed is a hard error for the sender, naming the file.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Run, Server};

const ALICE_PW: &str = "alice-password-1";
const BOB_PW: &str = "bob-password-1";

struct Env {
    /// Declared first: the server is stopped before its directory is removed.
    server: Server,
    scratch: common::Env,
}

impl Env {
    fn new() -> Env {
        let scratch = common::Env::new();
        scratch.add_user("alice", true, ALICE_PW);
        let server = Server::start(&scratch.data());
        let env = Env { server, scratch };
        let mut add = env.command_as("alice", ALICE_PW, &["user", "add", "bob"]);
        add.env("VSERV_NEW_PASSWORD", BOB_PW);
        Run::from_output(add.output().expect("run vserv")).ok();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    fn command_as(&self, user: &str, password: &str, args: &[&str]) -> Command {
        let mut all = self.scratch.client_args(&self.server, args);
        all.extend(["--user".to_owned(), user.to_owned()]);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.scratch.command(&all, &[("VSERV_PASSWORD", password)])
    }

    /// `vserv ARGS` as `user`, with that user's own message key and known_users files (the
    /// two users share the scratch HOME).
    fn msg_as(&self, user: &str, args: &[&str]) -> Run {
        let password = if user == "alice" { ALICE_PW } else { BOB_PW };
        let key = self.path(&format!("{user}.mkey"));
        let known = self.path(&format!("{user}.known_users"));
        let mut all: Vec<&str> = args.to_vec();
        let (key, known) = (key.to_str().unwrap(), known.to_str().unwrap());
        all.extend(["--message-key", key, "--known-users", known]);
        Run::from_output(
            self.command_as(user, password, &all)
                .output()
                .expect("run vserv"),
        )
    }
}

#[test]
fn a_message_is_sealed_sent_opened_and_verified() {
    let env = Env::new();
    // Bob publishes his key (made on first use) by listing his empty mailbox.
    let empty = env.msg_as("bob", &["msgs"]).ok();
    assert!(empty.text().trim().is_empty(), "{}", empty.text());
    env.msg_as("alice", &["msg", "send", "bob", "hello bob"])
        .ok();
    let list = env.msg_as("bob", &["msgs", "--json"]).ok().text();
    assert!(list.contains("\"from\":\"alice\""), "{list}");
    assert!(list.contains("\"read\":false"), "{list}");
    let first = env.msg_as("bob", &["msg", "read", "1"]).ok().text();
    assert!(
        first.contains("from: alice (key recorded on first contact"),
        "{first}"
    );
    assert!(first.contains("hello bob"), "{first}");
    let again = env.msg_as("bob", &["msg", "read", "1"]).ok().text();
    assert!(again.contains("from: alice (verified)"), "{again}");
    env.msg_as("bob", &["msg", "del", "1"]).ok();
    env.msg_as("bob", &["msg", "read", "1"]).fails();
    // `msg USER TEXT` is short for `msg send USER TEXT`.
    env.msg_as("alice", &["msg", "bob", "short form"]).ok();
    let second = env.msg_as("bob", &["msg", "read", "2"]).ok().text();
    assert!(second.contains("short form"), "{second}");
}

#[test]
fn a_changed_recipient_key_is_a_hard_error() {
    let env = Env::new();
    env.msg_as("bob", &["msgs"]).ok();
    env.msg_as("alice", &["msg", "send", "bob", "one"]).ok();
    // Bob loses his key: a new one is made and published.
    std::fs::remove_file(env.path("bob.mkey")).expect("remove bob's key");
    env.msg_as("bob", &["msgs"]).ok();
    let err = env.msg_as("alice", &["msg", "send", "bob", "two"]).fails();
    assert!(err.contains("message key of user bob has changed"), "{err}");
    assert!(err.contains("alice.known_users"), "{err}");
    // Nothing was sent.
    let list = env.msg_as("bob", &["msgs"]).ok().text();
    assert_eq!(list.lines().count(), 1, "{list}");
}
