//! The blocking server runs a `send`'s delivery on a thread of its own: a request pipelined
//! after a `send` whose `on_meta` hook is still running is answered first, and the `send`
//! is answered when its delivery ends.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vserv_blocking::{Client, Server, ServerHandle, ServerOptions};
use vserv_core::commands::{
    Command, Credential, DeliveryState, ListPage, Reply, SecretBytes, SendArgs, UserRole,
};
use vserv_service::NodeSettings;
use vserv_service::accounts::UserName;
use vserv_service::files::delivery::HooksConfig;
use vserv_service::files::{DiskTree, FileTree, FilesConfig, UserPath};
use vserv_tests::Fixture;

fn path(p: &str) -> UserPath {
    UserPath::from_names(p.split('/').map(str::to_owned).collect()).expect("path")
}

fn login(client: &mut Client, user: &str) {
    let login = Command::Login {
        user: user.into(),
        credential: Credential::Password(SecretBytes::new(b"password-1".to_vec())),
    };
    client.call(&login).expect("login");
}

/// An executable script in `dir` (the server runs it directly, no shell of its own).
fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
    let perms = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&p, perms).expect("chmod");
    p.to_str().expect("utf-8 temp path").to_owned()
}

/// A blocking server with users alice and bob, bob's inbox folder `default` accepting
/// alice with the `on_meta` hook `hook_body` (a shell script in the server's hook
/// directory), and alice's file `source` holding `data`. The server, and the file tree.
fn delivery_server(
    fx: &Fixture,
    hook_body: &str,
    source: &str,
    data: &[u8],
) -> (ServerHandle, Arc<dyn FileTree>) {
    let homes = fx.dir().join("homes");
    std::fs::create_dir(&homes).expect("homes");
    let tree: Arc<dyn FileTree> =
        Arc::new(DiskTree::open(&homes, FilesConfig::default()).expect("disk tree"));
    let hooks_dir = fx.dir().join("hooks");
    std::fs::create_dir(&hooks_dir).expect("hooks dir");
    let hook = script(&hooks_dir, "hook.sh", hook_body);
    let settings = NodeSettings {
        hooks: HooksConfig {
            enabled: true,
            timeout: Duration::from_secs(20),
            programs_dir: Some(hooks_dir),
        },
        ..vserv_tests::settings()
    };
    let node = fx.node(settings).files(tree.clone()).build().expect("node");
    for name in ["alice", "bob"] {
        node.accounts()
            .create(name, UserRole::User, b"password-1", 0)
            .expect("user");
    }
    let service = node.service();
    let bob = UserName::parse("bob").expect("name");
    for dir in ["inbox", "inbox/default"] {
        tree.mkdir(&bob, &path(dir)).expect("mkdir");
    }
    tree.replace_file(
        &bob,
        &path("inbox/default/folder.toml"),
        format!("allow = [\"alice\"]\non_meta = [\"{hook}\"]\n").as_bytes(),
    )
    .expect("folder.toml");
    let alice = UserName::parse("alice").expect("name");
    tree.replace_file(&alice, &path(source), data)
        .expect("source");
    let server = Server::bind(
        "127.0.0.1:0",
        fx.identity.clone(),
        service,
        ServerOptions::default(),
    )
    .expect("bind")
    .spawn()
    .expect("spawn");
    (server, tree)
}

#[test]
fn a_request_after_a_slow_send_is_answered_before_it() {
    let fx = Fixture::new(41);
    // The hook waits for a marker the test creates only once the later request was
    // answered: if the delivery held the connection, that answer could not come and the
    // hook would be killed at its timeout (refusing the delivery).
    let marker = fx.dir().join("marker");
    let data = b"the report\n".repeat(1000);
    let (server, tree) = delivery_server(
        &fx,
        &format!("while [ ! -e '{}' ]; do sleep 0.01; done", marker.display()),
        "report.txt",
        &data,
    );
    let bob = UserName::parse("bob").expect("name");
    let addr = server.local_addr().to_string();
    let mut client = Client::connect(&addr, &fx.options()).expect("connect");
    login(&mut client, "alice");
    let send = Command::Send(SendArgs {
        to: "bob".into(),
        path: "report.txt".into(),
        folder: None,
        note: None,
    });
    let send_id = client.send_raw(send.name(), send.args()).expect("send");
    let ping = Command::Ping {
        payload: b"still here".to_vec(),
    };
    let ping_id = client.send_raw(ping.name(), ping.args()).expect("ping");
    let started = Instant::now();
    let pong = client.wait_raw(ping_id).expect("ping answered");
    assert_eq!(pong, vec![b"still here".to_vec()]);
    assert!(
        client.take_raw(send_id).is_none(),
        "the send was answered while its hook was still waiting"
    );
    // Another command on the same connection is served too, while the delivery waits.
    assert!(matches!(
        client.call(&Command::Whoami),
        Ok(Reply::User { .. })
    ));
    std::fs::write(&marker, b"go").expect("marker");
    let fields = client.wait_raw(send_id).expect("send answered");
    assert_eq!(
        Reply::from_fields(&send, &fields).expect("reply decodes"),
        Reply::Delivered("report.txt".into())
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        tree.read_file(&bob, &path("inbox/default/report.txt")).ok(),
        Some(data)
    );
    client.quit().expect("quit");

    let mut client = Client::connect(&addr, &fx.options()).expect("connect");
    login(&mut client, "bob");
    match client.call(&Command::Inbox(ListPage::default())) {
        Ok(Reply::Deliveries { entries, .. }) => {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].state, DeliveryState::Received);
        }
        other => panic!("unexpected inbox reply {other:?}"),
    }
    client.quit().expect("quit");
    server.shutdown();
}

#[test]
fn quit_after_a_send_waits_for_its_answer() {
    let fx = Fixture::new(42);
    let (server, _tree) = delivery_server(&fx, "sleep 0.3", "a.txt", b"payload");
    let mut client =
        Client::connect(&server.local_addr().to_string(), &fx.options()).expect("connect");
    login(&mut client, "alice");
    let send = Command::Send(SendArgs {
        to: "bob".into(),
        path: "a.txt".into(),
        folder: None,
        note: None,
    });
    let send_id = client.send_raw(send.name(), send.args()).expect("send");
    let quit_id = client
        .send_raw(Command::Quit.name(), Command::Quit.args())
        .expect("quit");
    // Every request is answered before the server closes: after the quit's answer the
    // close waits for the delivery, whose answer comes before it.
    let fields = client
        .wait_raw(send_id)
        .expect("send answered before the close");
    assert_eq!(
        Reply::from_fields(&send, &fields).expect("reply decodes"),
        Reply::Delivered("a.txt".into())
    );
    assert!(client.wait_raw(quit_id).is_ok());
    server.shutdown();
}
