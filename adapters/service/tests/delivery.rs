//! Deliveries (protocol.md §13.5) served by the service over a disk tree in a temp dir:
//! metadata and content, the allow list, the `on_meta` hook (refusal, timeout, metadata on
//! its input), hooks disabled by default, `on_received`, the recipient's quota, and the
//! inbox listing with its states and pages.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vserv_core::commands::{Command, Delivery, DeliveryState, ListPage, Reply, SendArgs, UserRole};
use vserv_core::transfer::FgetArgs;
use vserv_core::{ErrorCode, ErrorReply};
use vserv_service::Service;
use vserv_service::accounts::UserName;
use vserv_service::files::delivery::HooksConfig;
use vserv_service::files::{DiskTree, FileTree, FilesConfig, UserPath};

use common::{TestSession, path, sha, user};

struct Env {
    dir: tempfile::TempDir,
    tree: Arc<dyn FileTree>,
    service: Service,
    /// Sessions are driven like a runtime drives them, deliveries off the test thread.
    background: bool,
}

impl Env {
    /// Users alice, bob, carol and admin root; hooks as given (`None`: the default).
    fn new(config: FilesConfig, hooks: Option<HooksConfig>) -> Env {
        Env::in_mode(false, config, hooks)
    }

    /// [`Env::new`], with the blocking work (each `send`'s delivery among it) on threads of
    /// a test runner and sessions driven over connections when `background` (as the
    /// runtimes run them).
    fn in_mode(background: bool, config: FilesConfig, hooks: Option<HooksConfig>) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree: Arc<dyn FileTree> =
            Arc::new(DiskTree::open(dir.path(), config).expect("disk tree"));
        let mut settings = vserv_service::NodeSettings::insecure_fast("delivery");
        if let Some(mut hooks) = hooks {
            // The tests' hook scripts live in the temp dir.
            hooks
                .programs_dir
                .get_or_insert_with(|| dir.path().to_path_buf());
            settings.hooks = hooks;
        }
        let node = common::node_with(settings, 5)
            .files(tree.clone())
            .build()
            .expect("node");
        for (name, role) in [
            ("alice", UserRole::User),
            ("bob", UserRole::User),
            ("carol", UserRole::User),
            ("root", UserRole::Admin),
        ] {
            node.accounts()
                .create(name, role, b"password-1", 0)
                .expect("user");
        }
        let mut service = node.service();
        if background {
            service = service.with_runner(Arc::new(common::driven::ThreadRunner));
        }
        Env {
            dir,
            tree,
            service,
            background,
        }
    }

    fn session(&self, user: &str) -> TestSession {
        TestSession::logged_in(&self.service, user, self.background)
    }

    fn run(&self, session: &mut TestSession, cmd: &Command) -> Result<Reply, ErrorReply> {
        session.run(&self.service, cmd, 7_000)
    }

    /// `owner`'s file `p` with `data` (directories on the way created).
    fn put(&self, owner: &str, p: &str, data: &[u8]) {
        let o = user(owner);
        let full = path(p);
        let names = full.names();
        for i in 1..names.len() {
            let dir = UserPath::from_names(names[..i].to_vec()).expect("dir");
            if self.tree.stat(&o, &dir).is_err() {
                self.tree.mkdir(&o, &dir).expect("mkdir");
            }
        }
        self.tree.replace_file(&o, &full, data).expect("write");
    }

    /// Bob's inbox folder `default` with this `folder.toml`.
    fn folder(&self, toml: &str) {
        self.put("bob", "inbox/default/folder.toml", toml.as_bytes());
    }

    /// An executable script in the temp dir (run directly, no shell in the server).
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
        let perms = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
        std::fs::set_permissions(&p, perms).expect("chmod");
        p
    }

    fn send(
        &self,
        session: &mut TestSession,
        file: &str,
        note: Option<&str>,
    ) -> Result<String, ErrorReply> {
        let cmd = Command::Send(SendArgs {
            to: "bob".into(),
            path: file.into(),
            folder: None,
            note: note.map(str::to_owned),
        });
        match self.run(session, &cmd)? {
            Reply::Delivered(name) => Ok(name),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    fn inbox(&self, session: &mut TestSession, page: ListPage) -> (Vec<Delivery>, Option<String>) {
        match self.run(session, &Command::Inbox(page)) {
            Ok(Reply::Deliveries { entries, next }) => (entries, next),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// The names in bob's inbox folder `default` (files a client sees).
    fn inbox_files(&self) -> Vec<String> {
        self.tree
            .list(&user("bob"), &path("inbox/default"))
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect()
    }
}

fn hooks(timeout_secs: u64) -> Option<HooksConfig> {
    Some(HooksConfig {
        enabled: true,
        timeout: Duration::from_secs(timeout_secs),
        programs_dir: None,
    })
}

fn toml_path(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").replace('\\', "\\\\")
}

fn delivery_is_received_with_its_metadata(background: bool) {
    let env = Env::in_mode(background, FilesConfig::default(), None);
    env.folder("allow = [\"alice\"]\n");
    let data = b"quarterly numbers\n".repeat(5000);
    env.put("alice", "out/report.txt", &data);
    let mut alice = env.session("alice");
    let name = env.send(&mut alice, "out/report.txt", Some("for your eyes"));
    assert_eq!(name.as_deref(), Ok("report.txt"));
    // A second delivery of the same name gets a fresh one.
    assert_eq!(
        env.send(&mut alice, "out/report.txt", None).as_deref(),
        Ok("2-report.txt")
    );
    let bob_name = user("bob");
    assert_eq!(
        env.tree
            .read_file(&bob_name, &path("inbox/default/report.txt"))
            .ok(),
        Some(data.clone())
    );
    let mut bob = env.session("bob");
    let (entries, next) = env.inbox(&mut bob, ListPage::default());
    assert_eq!(next, None);
    assert_eq!(
        entries,
        vec![
            Delivery {
                name: "2-report.txt".into(),
                state: DeliveryState::Received,
                from: "alice".into(),
                time: 7,
                size: data.len() as u64,
                sha256: sha(&data),
                note: String::new(),
                reason: String::new(),
            },
            Delivery {
                name: "report.txt".into(),
                state: DeliveryState::Received,
                from: "alice".into(),
                time: 7,
                size: data.len() as u64,
                sha256: sha(&data),
                note: "for your eyes".into(),
                reason: String::new(),
            },
        ]
    );
    // The recipient fetches it with the transfer commands; the hash is the sender's.
    let fget = Command::Fget(FgetArgs {
        path: "inbox/default/report.txt".into(),
    });
    match env.run(&mut bob, &fget) {
        Ok(Reply::Download(d)) => assert_eq!(d.sha256, sha(&data)),
        other => panic!("fget: {other:?}"),
    }
    // Pages of one entry.
    let (first, next) = env.inbox(
        &mut bob,
        ListPage {
            dir: None,
            from: None,
            limit: Some(1),
        },
    );
    assert_eq!(first.len(), 1);
    assert_eq!(next.as_deref(), Some("report.txt"));
    // Records are hidden: the folder shows the config and the files only.
    assert_eq!(
        env.inbox_files(),
        ["2-report.txt", "folder.toml", "report.txt"]
    );
    // Only the owner's own inbox is listed.
    let err = env.run(&mut alice, &Command::Inbox(ListPage::default()));
    assert_eq!(err.map_err(|e| e.code), Err(ErrorCode::NotFound));
}

fn the_allow_list_decides_and_refusals_leave_no_record(background: bool) {
    let env = Env::in_mode(background, FilesConfig::default(), None);
    env.put("alice", "f.txt", b"hello");
    let mut alice = env.session("alice");
    // No folder config: refused, naming what is missing.
    let err = env.send(&mut alice, "f.txt", None).expect_err("no folder");
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(err.message.contains("no inbox folder 'default'"), "{err:?}");
    env.folder("allow = [\"carol\"]\n");
    let err = env
        .send(&mut alice, "f.txt", None)
        .expect_err("not allowed");
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert!(
        err.message
            .contains("does not accept deliveries from alice")
    );
    let mut bob = env.session("bob");
    assert_eq!(env.inbox(&mut bob, ListPage::default()).0, Vec::new());
    assert_eq!(env.inbox_files(), ["folder.toml"]);
    // An invalid config refuses too.
    env.folder("allow = alice\n");
    let err = env.send(&mut alice, "f.txt", None).expect_err("bad config");
    assert_eq!(err.code, ErrorCode::Conflict);
    // `*` lets every user deliver; an unknown recipient is not found.
    env.folder("allow = [\"*\"]\n");
    assert!(env.send(&mut alice, "f.txt", None).is_ok());
    let cmd = Command::Send(SendArgs {
        to: "nobody".into(),
        path: "f.txt".into(),
        folder: None,
        note: None,
    });
    assert_eq!(
        env.run(&mut alice, &cmd).map_err(|e| e.code),
        Err(ErrorCode::NotFound)
    );
}

fn on_meta_refusal_reaches_the_sender_and_nothing_lands(background: bool) {
    let env = Env::in_mode(background, FilesConfig::default(), hooks(10));
    let hook = env.script("refuse.sh", "echo no way >&2; exit 3");
    env.folder(&format!(
        "allow = [\"alice\"]\non_meta = [\"{}\"]\n",
        toml_path(&hook)
    ));
    env.put("alice", "f.txt", b"payload");
    let mut alice = env.session("alice");
    let err = env
        .send(&mut alice, "f.txt", Some("hi"))
        .expect_err("refused");
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert_eq!(err.message, "delivery refused: no way");
    assert_eq!(env.inbox_files(), ["folder.toml"]);
    let mut bob = env.session("bob");
    let (entries, _) = env.inbox(&mut bob, ListPage::default());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, DeliveryState::Refused);
    assert_eq!(entries[0].reason, "no way");
    assert_eq!(entries[0].note, "hi");
}

fn on_meta_reads_the_metadata_and_on_received_runs_after_the_store(background: bool) {
    let env = Env::in_mode(background, FilesConfig::default(), hooks(10));
    let meta = env.dir.path().join("meta.json");
    let received = env.dir.path().join("received.json");
    let accept = env.script("accept.sh", &format!("cat > '{}'", meta.display()));
    let after = env.script("after.sh", "cat > \"$1\"");
    env.folder(&format!(
        "allow = [\"alice\"]\non_meta = [\"{}\"]\non_received = [\"{}\", \"{}\"]\n",
        toml_path(&accept),
        toml_path(&after),
        toml_path(&received)
    ));
    env.put("alice", "f.txt", b"payload");
    let mut alice = env.session("alice");
    assert_eq!(
        env.send(&mut alice, "f.txt", Some("a \"quoted\" note"))
            .as_deref(),
        Ok("f.txt")
    );
    let json = std::fs::read_to_string(&meta).expect("on_meta ran");
    let expected = format!(
        "{{\"from\":\"alice\",\"to\":\"bob\",\"folder\":\"default\",\"name\":\"f.txt\",\"time\":7,\"size\":7,\"sha256\":\"{}\",\"note\":\"a \\\"quoted\\\" note\",\"state\":\"pending\"}}\n",
        hex::encode(sha(b"payload"))
    );
    assert_eq!(json, expected);
    let after_json = std::fs::read_to_string(&received).expect("on_received ran");
    assert!(
        after_json.contains("\"state\":\"received\""),
        "{after_json}"
    );
}

fn a_hanging_hook_is_killed_at_the_timeout_and_refuses(background: bool) {
    let env = Env::in_mode(background, FilesConfig::default(), hooks(1));
    let hook = env.script("hang.sh", "exec sleep 30");
    env.folder(&format!(
        "allow = [\"alice\"]\non_meta = [\"{}\"]\n",
        toml_path(&hook)
    ));
    env.put("alice", "f.txt", b"payload");
    let mut alice = env.session("alice");
    let start = Instant::now();
    let err = env.send(&mut alice, "f.txt", None).expect_err("timed out");
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(err.code, ErrorCode::Forbidden);
    assert!(err.message.contains("did not finish within 1 s"), "{err:?}");
    assert_eq!(env.inbox_files(), ["folder.toml"]);
    let mut bob = env.session("bob");
    let (entries, _) = env.inbox(&mut bob, ListPage::default());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].state, DeliveryState::Refused);
}

fn hooks_are_disabled_by_default_and_the_allow_list_decides(background: bool) {
    let env = Env::in_mode(background, FilesConfig::default(), None);
    let marker = env.dir.path().join("marker");
    let hook = env.script(
        "refuse.sh",
        &format!("touch '{}'; echo no >&2; exit 1", marker.display()),
    );
    env.folder(&format!(
        "allow = [\"alice\"]\non_meta = [\"{0}\"]\non_received = [\"{0}\"]\n",
        toml_path(&hook)
    ));
    env.put("alice", "f.txt", b"payload");
    let mut alice = env.session("alice");
    assert_eq!(env.send(&mut alice, "f.txt", None).as_deref(), Ok("f.txt"));
    assert!(!marker.exists(), "a hook ran although hooks are disabled");
    // The same folder with hooks enabled: the hook runs (so the marker test can fail).
    let enabled = Env::in_mode(
        background,
        FilesConfig::default(),
        hooks(10).map(|h| HooksConfig {
            programs_dir: Some(env.dir.path().to_path_buf()),
            ..h
        }),
    );
    enabled.folder(&format!(
        "allow = [\"alice\"]\non_meta = [\"{}\"]\n",
        toml_path(&hook)
    ));
    enabled.put("alice", "f.txt", b"payload");
    let mut alice = enabled.session("alice");
    assert!(enabled.send(&mut alice, "f.txt", None).is_err());
    assert!(marker.exists());
}

fn the_recipients_quota_is_enforced_before_any_copy(background: bool) {
    let config = FilesConfig {
        versions: 0,
        quota: Some(1000),
    };
    let env = Env::in_mode(background, config, None);
    env.folder("allow = [\"alice\"]\n");
    env.put("bob", "mine.bin", &[1; 700]);
    env.put("alice", "big.bin", &[2; 400]);
    env.put("alice", "small.bin", &[3; 100]);
    let mut alice = env.session("alice");
    let err = env
        .send(&mut alice, "big.bin", None)
        .expect_err("over quota");
    assert_eq!(err.code, ErrorCode::TooLarge);
    assert!(err.message.contains("quota"), "{err:?}");
    assert_eq!(env.inbox_files(), ["folder.toml"]);
    assert_eq!(
        env.send(&mut alice, "small.bin", None).as_deref(),
        Ok("small.bin")
    );
    let mut bob = env.session("bob");
    let (entries, _) = env.inbox(&mut bob, ListPage::default());
    let states: Vec<(&str, DeliveryState)> =
        entries.iter().map(|e| (e.name.as_str(), e.state)).collect();
    assert_eq!(
        states,
        [
            ("big.bin", DeliveryState::Refused),
            ("small.bin", DeliveryState::Received)
        ]
    );
}

#[test]
fn records_are_hidden_move_with_their_directory_and_go_with_it() {
    use vserv_service::files::MemoryTree;
    let disk_dir = tempfile::tempdir().expect("tempdir");
    let trees: [Arc<dyn FileTree>; 2] = [
        Arc::new(MemoryTree::new(FilesConfig::default())),
        Arc::new(DiskTree::open(disk_dir.path(), FilesConfig::default()).expect("disk tree")),
    ];
    let store = vserv_service::files::delivery::RECORD_STORE;
    for tree in trees {
        let bob = user("bob");
        tree.mkdir(&bob, &path("a")).expect("mkdir");
        tree.write_record(&bob, &path("a"), store, "x", b"one")
            .expect("write");
        tree.write_record(&bob, &path("a"), store, "w", b"two")
            .expect("write");
        assert_eq!(
            tree.list_records(&bob, &path("a"), store).expect("list"),
            ["w", "x"]
        );
        assert_eq!(tree.list(&bob, &path("a")).expect("ls"), Vec::new());
        // Not counted by the quota.
        assert_eq!(tree.usage(&bob).expect("usage"), 0);
        // Only record stores, and only valid names.
        assert!(
            tree.write_record(&bob, &path("a"), ".vserv-x", "x", b"")
                .is_err()
        );
        assert!(
            tree.write_record(&bob, &path("a"), "plain", "x", b"")
                .is_err()
        );
        assert!(
            tree.write_record(&bob, &path("a"), store, "../x", b"")
                .is_err()
        );
        tree.rename(&bob, &path("a"), &path("b")).expect("mv");
        assert_eq!(
            tree.read_record(&bob, &path("b"), store, "x")
                .expect("read"),
            Some(b"one".to_vec())
        );
        tree.rmdir(&bob, &path("b")).expect("rmdir");
        tree.mkdir(&bob, &path("b")).expect("mkdir again");
        assert_eq!(
            tree.list_records(&bob, &path("b"), store).expect("list"),
            Vec::<String>::new()
        );
    }
}

/// A folder name is one name: `send --folder ../../alice/x` cannot reach outside the
/// recipient's inbox (here: into a folder of the sender's own home that allows her).
#[test]
fn a_folder_name_with_a_separator_is_refused() {
    let env = Env::new(FilesConfig::default(), None);
    env.put("alice", "f.txt", b"alice's");
    env.put("alice", "mine/folder.toml", b"allow = [\"alice\"]\n");
    let mut alice = env.session("alice");
    for folder in ["../../alice/mine", "../x", "a/b"] {
        let cmd = Command::Send(SendArgs {
            to: "bob".into(),
            path: "f.txt".into(),
            folder: Some(folder.into()),
            note: None,
        });
        let err = env.run(&mut alice, &cmd).expect_err(folder);
        assert_eq!(
            err.code,
            ErrorCode::BadArguments,
            "{folder}: {}",
            err.message
        );
    }
    assert_eq!(
        env.tree
            .list(&user("alice"), &path("mine"))
            .expect("list")
            .len(),
        1,
        "nothing was delivered into alice's own folder"
    );
}

fn only_files_of_the_senders_own_home_are_sent(background: bool) {
    let env = Env::in_mode(background, FilesConfig::default(), None);
    env.folder("allow = [\"root\", \"alice\"]\n");
    env.put("alice", "f.txt", b"alice's");
    let mut root = env.session("root");
    let err = env
        .send(&mut root, "~alice/f.txt", None)
        .expect_err("not own");
    assert_eq!(err.code, ErrorCode::Forbidden);
    let mut alice = env.session("alice");
    let err = env
        .send(&mut alice, "missing.txt", None)
        .expect_err("missing");
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(env.inbox_files(), ["folder.toml"]);
}

#[test]
fn a_hook_outside_the_servers_hook_directory_never_runs() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let env = Env::new(
        FilesConfig::default(),
        Some(HooksConfig {
            enabled: true,
            timeout: Duration::from_secs(10),
            programs_dir: Some(elsewhere.path().to_path_buf()),
        }),
    );
    let marker = env.dir.path().join("marker");
    let hook = env.script("accept.sh", &format!("touch '{}'", marker.display()));
    env.folder(&format!(
        "allow = [\"alice\"]\non_meta = [\"{}\"]\n",
        toml_path(&hook)
    ));
    env.put("alice", "f.txt", b"data");
    let mut alice = env.session("alice");
    let err = env.send(&mut alice, "f.txt", None).expect_err("refused");
    assert!(err.message.contains("hook programs"), "{}", err.message);
    assert!(!marker.exists(), "the hook ran");
    assert!(env.inbox_files().iter().all(|n| n != "f.txt"));
}

/// A delivery record of `name` from alice in `state` (with `reason`), for `data`.
fn record(name: &str, state: DeliveryState, data: &[u8], reason: &str) -> Delivery {
    Delivery {
        name: name.into(),
        state,
        from: "alice".into(),
        time: 42,
        size: data.len() as u64,
        sha256: sha(data),
        note: "a note".into(),
        reason: reason.into(),
    }
}

/// Saves `d` in `owner`'s inbox folder `folder`, as `deliver` does (`inbox/FOLDER` created
/// if missing).
fn save_record(tree: &dyn FileTree, owner: &str, folder: &str, d: &Delivery) {
    let o = user(owner);
    for dir in ["inbox".to_owned(), format!("inbox/{folder}")] {
        if tree.stat(&o, &path(&dir)).is_err() {
            tree.mkdir(&o, &path(&dir)).expect("mkdir");
        }
    }
    let store = vserv_service::files::delivery::RECORD_STORE;
    tree.write_record(
        &o,
        &path(&format!("inbox/{folder}")),
        store,
        &d.name,
        &d.to_field(),
    )
    .expect("record");
}

/// The delivery records of `owner`'s inbox folder `folder`, as `inbox` lists them.
fn records(tree: &dyn FileTree, owner: &str, folder: &str) -> Vec<Delivery> {
    vserv_service::files::delivery::inbox(tree, &user(owner), folder).expect("inbox")
}

#[test]
fn interrupted_deliveries_are_settled_at_start_in_every_inbox() {
    use vserv_service::files::MemoryTree;
    use vserv_service::files::delivery::{INTERRUPTED_REASON, InterruptedSettle, RECORD_STORE};
    let disk_dir = tempfile::tempdir().expect("tempdir");
    let trees: [(&str, Arc<dyn FileTree>); 2] = [
        ("memory", Arc::new(MemoryTree::new(FilesConfig::default()))),
        (
            "disk",
            Arc::new(DiskTree::open(disk_dir.path(), FilesConfig::default()).expect("disk tree")),
        ),
    ];
    for (kind, tree) in trees {
        let tree = tree.as_ref();
        let data = b"the delivered bytes".to_vec();
        // Bob's folder `default`: one of each settled state, an interrupted copy (no file),
        // one interrupted after its file was stored, and one whose name holds another file.
        let settled = [
            record("b.txt", DeliveryState::Received, &data, ""),
            record("c.txt", DeliveryState::Refused, &data, "the hook said no"),
            record("d.txt", DeliveryState::Failed, &data, "the copy failed"),
        ];
        for d in &settled {
            save_record(tree, "bob", "default", d);
        }
        save_record(
            tree,
            "bob",
            "default",
            &record("a.txt", DeliveryState::Pending, &data, ""),
        );
        save_record(
            tree,
            "bob",
            "default",
            &record("e.txt", DeliveryState::Pending, &data, ""),
        );
        tree.replace_file(&user("bob"), &path("inbox/default/e.txt"), &data)
            .expect("stored file");
        save_record(
            tree,
            "bob",
            "default",
            &record("f.txt", DeliveryState::Pending, &data, ""),
        );
        tree.replace_file(&user("bob"), &path("inbox/default/f.txt"), b"bob's own")
            .expect("other file");
        // A damaged record is left as it is.
        tree.write_record(
            &user("bob"),
            &path("inbox/default"),
            RECORD_STORE,
            "junk",
            b"not a record",
        )
        .expect("junk");
        // Carol's folder `other`: an interrupted copy that left a partial file.
        save_record(
            tree,
            "carol",
            "other",
            &record("g.txt", DeliveryState::Pending, &data, ""),
        );
        let carol = user("carol");
        let g = path("inbox/other/g.txt");
        {
            let mut opened = tree
                .open_partial(&carol, &g, data.len() as u64, false)
                .expect("partial");
            opened.file.write_at(0, &data[..5]).expect("write");
            opened
                .file
                .checkpoint(&vserv_core::transfer::UploadState {
                    size: data.len() as u64,
                    offset: 5,
                    prefix_sha256: sha(&data[..5]),
                })
                .expect("checkpoint");
        }
        let resumable = |tree: &dyn FileTree| {
            tree.open_partial(&carol, &g, data.len() as u64, true)
                .expect("reopen")
                .saved
                .is_some()
        };
        assert!(resumable(tree), "{kind}: the partial file is there");
        // Alice has no inbox; dave's `inbox` is a file: neither is an error.
        tree.replace_file(&user("alice"), &path("f.txt"), b"x")
            .expect("alice");
        tree.replace_file(&user("dave"), &path("inbox"), b"x")
            .expect("dave");

        let report = vserv_service::files::delivery::settle_interrupted(tree).expect("settle");
        assert_eq!(
            report,
            InterruptedSettle {
                failed: 3,
                received: 1,
                ..InterruptedSettle::default()
            },
            "{kind}"
        );
        assert_eq!(report.settled(), 4);
        let failed = |name: &str| record(name, DeliveryState::Failed, &data, INTERRUPTED_REASON);
        let bob_after = records(tree, "bob", "default");
        assert_eq!(
            bob_after,
            [
                failed("a.txt"),
                settled[0].clone(),
                settled[1].clone(),
                settled[2].clone(),
                record("e.txt", DeliveryState::Received, &data, ""),
                failed("f.txt"),
            ],
            "{kind}"
        );
        assert_eq!(records(tree, "carol", "other"), [failed("g.txt")], "{kind}");
        assert_eq!(
            tree.read_record(&user("bob"), &path("inbox/default"), RECORD_STORE, "junk")
                .expect("junk"),
            Some(b"not a record".to_vec())
        );
        // Nothing half-copied: the interrupted copy's partial file is gone, no file took
        // its name, and the files that were there are untouched.
        assert!(!resumable(tree), "{kind}: the partial file was kept");
        assert!(matches!(
            tree.stat(&carol, &g),
            Err(vserv_service::files::FileError::NotFound(_))
        ));
        assert_eq!(
            tree.read_file(&user("bob"), &path("inbox/default/f.txt"))
                .expect("f"),
            b"bob's own"
        );

        // A second run finds nothing pending and changes nothing.
        let again = vserv_service::files::delivery::settle_interrupted(tree).expect("again");
        assert_eq!(again, InterruptedSettle::default(), "{kind}");
        assert_eq!(records(tree, "bob", "default"), bob_after, "{kind}");
        assert_eq!(records(tree, "carol", "other"), [failed("g.txt")], "{kind}");
    }
}

/// A crash in the middle of a record write leaves its temporary file
/// (`.vserv-tmp-<pid>-<n>`) in the folder's record store; settling at start deletes exactly
/// those (regular files of that exact pattern) and nothing else, and the records are intact.
#[test]
fn leftover_record_temp_files_are_deleted_at_settle_and_nothing_else() {
    use vserv_service::files::delivery::{InterruptedSettle, RECORD_STORE};
    let data_dir = tempfile::tempdir().expect("tempdir");
    let tree = DiskTree::open(data_dir.path(), FilesConfig::default()).expect("disk tree");
    let received = record("a.txt", DeliveryState::Received, b"bytes", "");
    save_record(&tree, "bob", "default", &received);
    let store = data_dir
        .path()
        .join("homes/bob/inbox/default")
        .join(RECORD_STORE);
    let leftovers = [
        ".vserv-tmp-123-0",
        ".vserv-tmp-4194304-18446744073709551615",
    ];
    for name in leftovers {
        std::fs::write(store.join(name), b"half a record").expect("leftover");
    }
    let kept_files = [
        ".vserv-tmp-",
        ".vserv-tmp-12",
        ".vserv-tmp-12-",
        ".vserv-tmp--3",
        ".vserv-tmp-1-2-3",
        ".vserv-tmp-1-x",
        ".vserv-tmp-+1-2",
        ".vserv-tmpx-1-2",
        "x.vserv-tmp-1-2",
        ".vserv-tmp-1-2.bak",
    ];
    for name in kept_files {
        std::fs::write(store.join(name), b"not a temp file").expect("other file");
    }
    // A directory and a symlink with the pattern's name are not temp files either.
    std::fs::create_dir(store.join(".vserv-tmp-5-5")).expect("dir");
    let outside = data_dir.path().join("outside");
    std::fs::write(&outside, b"outside").expect("outside");
    std::os::unix::fs::symlink(&outside, store.join(".vserv-tmp-6-6")).expect("symlink");

    let report = vserv_service::files::delivery::settle_interrupted(&tree).expect("settle");
    assert_eq!(
        report,
        InterruptedSettle {
            temp_files: 2,
            ..InterruptedSettle::default()
        }
    );
    let mut left: Vec<String> = std::fs::read_dir(&store)
        .expect("store")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    left.sort();
    let mut expected: Vec<String> = kept_files
        .iter()
        .chain(&[".vserv-tmp-5-5", ".vserv-tmp-6-6", "a.txt"])
        .map(|n| (*n).to_owned())
        .collect();
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(std::fs::read(&outside).expect("outside"), b"outside");
    assert_eq!(records(&tree, "bob", "default"), [received]);
    // Nothing left to delete the second time.
    let again = vserv_service::files::delivery::settle_interrupted(&tree).expect("again");
    assert_eq!(again, InterruptedSettle::default());
}

#[test]
fn the_disk_tree_enumerates_only_real_homes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = DiskTree::open(dir.path(), FilesConfig::default()).expect("disk tree");
    assert_eq!(tree.owners().expect("none yet"), Vec::<UserName>::new());
    // Reading a home creates it.
    tree.list(&user("bob"), &UserPath::root()).expect("bob");
    tree.list(&user("alice"), &UserPath::root()).expect("alice");
    let homes = dir.path().join("homes");
    std::fs::create_dir(homes.join("Upper")).expect("not a normal name");
    std::fs::create_dir(homes.join("no space")).expect("not a user name");
    std::fs::write(homes.join("carol"), b"a file").expect("file");
    std::os::unix::fs::symlink(homes.join("bob"), homes.join("dave")).expect("symlink");
    assert_eq!(tree.owners().expect("owners"), [user("alice"), user("bob")]);
}

#[test]
fn a_restart_lists_an_interrupted_delivery_as_failed() {
    let env = Env::new(FilesConfig::default(), None);
    env.folder("allow = [\"alice\"]\n");
    let data = b"report".to_vec();
    env.put("alice", "report.txt", &data);
    let mut alice = env.session("alice");
    assert_eq!(
        env.send(&mut alice, "report.txt", None).as_deref(),
        Ok("report.txt")
    );
    // The server stopped in the middle of a second delivery: its name reserved, the
    // record pending, the copy never renamed into place.
    save_record(
        env.tree.as_ref(),
        "bob",
        "default",
        &record("2-report.txt", DeliveryState::Pending, &data, ""),
    );
    let mut bob = env.session("bob");
    let states = |env: &Env, bob: &mut TestSession| -> Vec<(String, DeliveryState, String)> {
        env.inbox(bob, ListPage::default())
            .0
            .into_iter()
            .map(|d| (d.name, d.state, d.reason))
            .collect()
    };
    assert_eq!(states(&env, &mut bob)[0].1, DeliveryState::Pending);
    let report =
        vserv_service::files::delivery::settle_interrupted(env.tree.as_ref()).expect("settle");
    assert_eq!((report.failed, report.received), (1, 0));
    assert_eq!(
        states(&env, &mut bob),
        [
            (
                "2-report.txt".to_owned(),
                DeliveryState::Failed,
                vserv_service::files::delivery::INTERRUPTED_REASON.to_owned()
            ),
            (
                "report.txt".to_owned(),
                DeliveryState::Received,
                String::new()
            ),
        ]
    );
    assert_eq!(env.inbox_files(), ["folder.toml", "report.txt"]);
}

/// Each case both ways: deliveries inside the request (the simulator's way) and on a
/// thread of their own (the blocking server's); the outcomes must not differ.
macro_rules! both_modes {
    ($($case:ident),* $(,)?) => {
        mod inline {
            $(#[test]
            fn $case() {
                super::$case(false)
            })*
        }
        mod background {
            $(#[test]
            fn $case() {
                super::$case(true)
            })*
        }
    };
}

both_modes!(
    delivery_is_received_with_its_metadata,
    the_allow_list_decides_and_refusals_leave_no_record,
    on_meta_refusal_reaches_the_sender_and_nothing_lands,
    on_meta_reads_the_metadata_and_on_received_runs_after_the_store,
    a_hanging_hook_is_killed_at_the_timeout_and_refuses,
    hooks_are_disabled_by_default_and_the_allow_list_decides,
    the_recipients_quota_is_enforced_before_any_copy,
    only_files_of_the_senders_own_home_are_sent,
);
