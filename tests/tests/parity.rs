//! Runtime parity: the same cases on the blocking server, the smol server and the
//! simulator, for what depends on how a runtime runs the service's blocking work.
//!
//! - `rput`s pipelined by four connections land in fewer commits than records (the group
//!   commit works across connections and pipelines, whoever runs the commit);
//! - a `send` whose `on_meta` hook is held holds no other request, on its connection or
//!   another;
//! - pings are answered while logins wait to be hashed (smol's two executor threads are
//!   never the ones that hash);
//! - a server that stops waits for the blocking work its connections started.
//!
//! The TCP servers are driven by the blocking client (its `send_raw`/`wait_raw` pipeline);
//! the simulator by its world, where "held" work is work whose turn the test holds back.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use vserv_blocking::Client;
use vserv_core::commands::{
    Command, Credential, DeliveryState, ListPage, Reply, SecretBytes, SendArgs, UserRole,
};
use vserv_core::transfer::FputArgs;
use vserv_service::accounts::checks::CheckLimits;
use vserv_service::accounts::{Accounts, PasswordParams, UserName};
use vserv_service::files::delivery::HooksConfig;
use vserv_service::files::{
    DiskTree, FileTree, FilesConfig, MemoryTree, Transfers, UploadLocks, UserPath,
};
use vserv_service::ledger::Ledger;
use vserv_service::{Service, ServiceInfo};
use vserv_store::kv::{Op, Store, StoreError, Table};
use vserv_store::memory::MemoryStore;
use vserv_tests::Fixture;
use vserv_tests::tcp::{Blocking, Smol, Tcp};

/// A store that counts its commits (its bulks among them), and whose bulks take
/// `bulk_delay` each, counting those that ended.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    commits: Arc<AtomicUsize>,
    bulk_delay: Duration,
    bulks_ended: Arc<AtomicUsize>,
}

impl Store for Counting {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan(table, prefix)
    }
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan_from(table, prefix, start, limit)
    }
    fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(ops)
    }
    fn commit_bulk(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        std::thread::sleep(self.bulk_delay);
        let stored = self.commit(ops);
        self.bulks_ended.fetch_add(1, Ordering::SeqCst);
        stored
    }
}

fn login(client: &mut Client, user: &str) {
    let login = Command::Login {
        user: user.into(),
        credential: Credential::Password(SecretBytes::new(b"password-1".to_vec())),
    };
    assert!(
        matches!(client.call(&login), Ok(Reply::User { .. })),
        "login {user}"
    );
}

fn rput(i: usize) -> Command {
    Command::Rput {
        kind: "note".into(),
        record_id: format!("c-{i}").into_bytes(),
        body: b"v=1\n".to_vec(),
    }
}

/// The fixture's service with user `alice`, its ledger in a store counting commits.
fn counted_service(fx: &Fixture) -> (Service, Arc<AtomicUsize>) {
    let service = fx.service();
    service
        .accounts()
        .create("alice", UserRole::User, b"password-1", 0)
        .expect("alice");
    let store = Counting::default();
    let commits = store.commits.clone();
    let ledger = Arc::new(Ledger::new(Arc::new(store), fx.identity.clone()));
    (service.with_ledger(ledger), commits)
}

const CONNECTIONS: usize = 4;
const RPUTS: usize = 50;

fn pipelined_rputs_share_commits<R: Tcp>() {
    let fx = Fixture::new(61);
    let (service, commits) = counted_service(&fx);
    let server = R::start(fx.identity.clone(), service);
    let addr = R::address(&server);
    let mut clients: Vec<Client> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = Client::connect(&addr, &fx.options()).expect("connect");
            login(&mut c, "alice");
            c
        })
        .collect();
    let mut ids = Vec::new();
    for i in 0..RPUTS {
        for (c, client) in clients.iter_mut().enumerate() {
            let cmd = rput(i * CONNECTIONS + c);
            ids.push((
                c,
                cmd.clone(),
                client.send_raw(cmd.name(), cmd.args()).expect("send"),
            ));
        }
    }
    let mut seqs = Vec::new();
    for (c, cmd, id) in ids {
        let fields = clients[c].wait_raw(id).expect("rput answered");
        match Reply::from_fields(&cmd, &fields).expect("decodes") {
            Reply::Appended { seq, .. } => seqs.push(seq),
            other => panic!("{other:?}"),
        }
    }
    seqs.sort_unstable();
    let records = CONNECTIONS * RPUTS;
    assert_eq!(seqs, (1..=records as u64).collect::<Vec<_>>());
    let made = commits.load(Ordering::SeqCst);
    assert!(made < records, "{made} commits for {records} records");
    for client in clients {
        client.quit().expect("quit");
    }
    R::stop(server);
}

/// A server that stops waits for the blocking work its connections started (here the
/// ledger's index bulk, due after 8 entries), so nothing it started still runs, or holds
/// its store, once `stop` returns.
fn stopping_waits_for_the_work_connections_started<R: Tcp>() {
    let fx = Fixture::new(65);
    let store = Counting {
        bulk_delay: Duration::from_millis(300),
        ..Counting::default()
    };
    let ended = store.bulks_ended.clone();
    let node = fx
        .node(vserv_tests::settings())
        .store(Arc::new(store))
        .build()
        .expect("node");
    let service = node.service();
    drop(node);
    service
        .accounts()
        .create("alice", UserRole::User, b"password-1", 0)
        .expect("alice");
    let server = R::start(fx.identity.clone(), service);
    let mut client = Client::connect(&R::address(&server), &fx.options()).expect("connect");
    login(&mut client, "alice");
    for i in 0..vserv_tests::SUITE_INDEX_BULK {
        assert!(matches!(client.call(&rput(i)), Ok(Reply::Appended { .. })));
    }
    client.quit().expect("quit");
    R::stop(server);
    assert_eq!(
        ended.load(Ordering::SeqCst),
        1,
        "the bulk of the first entries ended before the server counted as stopped"
    );
}

/// An executable script in `dir` (the server runs it directly).
fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
    let perms = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755);
    std::fs::set_permissions(&p, perms).expect("chmod");
    p.to_str().expect("utf-8 temp path").to_owned()
}

fn path(p: &str) -> UserPath {
    UserPath::from_names(p.split('/').map(str::to_owned).collect()).expect("path")
}

/// A server of runtime `R` with users alice and bob, bob's inbox folder `default` accepting
/// alice with the `on_meta` hook `hook_body` (a shell script in the server's hook
/// directory), and alice's file `a.txt`.
fn delivery_server<R: Tcp>(fx: &Fixture, hook_body: &str) -> (R::Handle, Arc<dyn FileTree>) {
    let homes = fx.dir().join("homes");
    std::fs::create_dir(&homes).expect("homes");
    let tree: Arc<dyn FileTree> =
        Arc::new(DiskTree::open(&homes, FilesConfig::default()).expect("disk tree"));
    let hooks_dir = fx.dir().join("hooks");
    std::fs::create_dir(&hooks_dir).expect("hooks dir");
    let hook = script(&hooks_dir, "hook.sh", hook_body);
    let service = fx
        .service()
        .with_files(tree.clone())
        .with_hooks(HooksConfig {
            enabled: true,
            timeout: Duration::from_secs(30),
            programs_dir: Some(hooks_dir),
        });
    for name in ["alice", "bob"] {
        service
            .accounts()
            .create(name, UserRole::User, b"password-1", 0)
            .expect("user");
    }
    let (alice, bob) = (
        UserName::parse("alice").expect("name"),
        UserName::parse("bob").expect("name"),
    );
    for dir in ["inbox", "inbox/default"] {
        tree.mkdir(&bob, &path(dir)).expect("mkdir");
    }
    tree.replace_file(
        &bob,
        &path("inbox/default/folder.toml"),
        format!("allow = [\"alice\"]\non_meta = [\"{hook}\"]\n").as_bytes(),
    )
    .expect("folder.toml");
    tree.replace_file(&alice, &path("a.txt"), b"payload")
        .expect("source");
    (R::start(fx.identity.clone(), service), tree)
}

fn a_held_hook_holds_no_other_request<R: Tcp>() {
    let fx = Fixture::new(62);
    let marker = fx.dir().join("marker");
    let (server, tree) = delivery_server::<R>(
        &fx,
        &format!("while [ ! -e '{}' ]; do sleep 0.01; done", marker.display()),
    );
    let bob = UserName::parse("bob").expect("name");
    let addr = R::address(&server);
    let mut sender = Client::connect(&addr, &fx.options()).expect("connect");
    login(&mut sender, "alice");
    let send = Command::Send(SendArgs {
        to: "bob".into(),
        path: "a.txt".into(),
        folder: None,
        note: None,
    });
    let send_id = sender.send_raw(send.name(), send.args()).expect("send");
    let ping = Command::Ping {
        payload: b"same".to_vec(),
    };
    let ping_id = sender.send_raw(ping.name(), ping.args()).expect("ping");
    assert_eq!(
        sender.wait_raw(ping_id).expect("pong"),
        vec![b"same".to_vec()]
    );
    // Another connection is served meanwhile too.
    let mut other = Client::connect(&addr, &fx.options()).expect("connect");
    assert_eq!(
        other
            .call(&Command::Ping {
                payload: b"other".to_vec()
            })
            .expect("pong"),
        Reply::Pong(b"other".to_vec())
    );
    // A command that goes through the work runner too is served on the same connection.
    assert!(matches!(
        sender.call(&Command::Whoami),
        Ok(Reply::User { .. })
    ));
    assert!(
        sender.take_raw(send_id).is_none(),
        "the send was answered while its hook was held"
    );
    std::fs::write(&marker, b"go").expect("marker");
    let fields = sender.wait_raw(send_id).expect("send answered");
    assert_eq!(
        Reply::from_fields(&send, &fields).expect("decodes"),
        Reply::Delivered("a.txt".into())
    );
    assert_eq!(
        tree.read_file(&bob, &path("inbox/default/a.txt")).ok(),
        Some(b"payload".to_vec())
    );
    other.quit().expect("quit");
    sender.quit().expect("quit");
    let mut recipient = Client::connect(&addr, &fx.options()).expect("connect");
    login(&mut recipient, "bob");
    match recipient.call(&Command::Inbox(ListPage::default())) {
        Ok(Reply::Deliveries { entries, .. }) => {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].state, DeliveryState::Received);
        }
        other => panic!("unexpected inbox reply {other:?}"),
    }
    recipient.quit().expect("quit");
    R::stop(server);
}

/// Every request is answered before the server closes: after a `quit` pipelined behind a
/// `send` whose hook takes a while, the close waits for the delivery, whose answer comes
/// before it.
fn quit_after_a_send_waits_for_its_answer<R: Tcp>() {
    let fx = Fixture::new(64);
    let (server, _tree) = delivery_server::<R>(&fx, "sleep 0.3");
    let mut client = Client::connect(&R::address(&server), &fx.options()).expect("connect");
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
    let fields = client
        .wait_raw(send_id)
        .expect("send answered before the close");
    assert_eq!(
        Reply::from_fields(&send, &fields).expect("decodes"),
        Reply::Delivered("a.txt".into())
    );
    assert!(client.wait_raw(quit_id).is_ok());
    R::stop(server);
}

/// Logins that cannot hash (every password-check slot held by the test) hold no executor
/// thread: a new connection's handshake and ping are served meanwhile.
fn pings_are_answered_while_logins_wait_to_hash<R: Tcp>() {
    use rand::SeedableRng;
    let fx = Fixture::new(63);
    let limits = CheckLimits {
        max_concurrent: 2,
        max_queued: 64,
    };
    let accounts = Arc::new(
        Accounts::with_limits(
            Arc::new(MemoryStore::new()),
            PasswordParams::INSECURE_FAST,
            limits,
            Box::new(rand::rngs::StdRng::seed_from_u64(8)),
        )
        .expect("accounts"),
    );
    accounts
        .create("alice", UserRole::User, b"password-1", 0)
        .expect("alice");
    let info = ServiceInfo {
        name: "parity".into(),
        fingerprint: fx.identity.public_key().fingerprint(),
    };
    let service = Service::new(info, accounts.clone());
    let server = R::start(fx.identity.clone(), service);
    let addr = R::address(&server);
    // The test holds both slots: every login waits in the queue until released.
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(std::sync::Mutex::new(released));
    let (held, holding) = mpsc::channel::<()>();
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (accounts, released, held) = (accounts.clone(), released.clone(), held.clone());
            std::thread::spawn(move || {
                accounts
                    .password_checks()
                    .run(|_| {
                        let _ = held.send(());
                        let _ = released.lock().map(|r| r.recv());
                    })
                    .expect("slot");
            })
        })
        .collect();
    for _ in 0..2 {
        holding.recv().expect("slot held");
    }
    let login = Command::Login {
        user: "alice".into(),
        credential: Credential::Password(SecretBytes::new(b"password-1".to_vec())),
    };
    let mut waiting: Vec<(Client, u32)> = (0..4)
        .map(|_| {
            let mut c = Client::connect(&addr, &fx.options()).expect("connect");
            let id = c.send_raw(login.name(), login.args()).expect("login");
            c.flush_requests().expect("flush");
            (c, id)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while accounts.password_checks().waiting() < 4 {
        assert!(
            Instant::now() < deadline,
            "the logins never reached the checks"
        );
        std::thread::yield_now();
    }
    let mut pinger = Client::connect(&addr, &fx.options()).expect("connect while hashing");
    assert_eq!(
        pinger
            .call(&Command::Ping {
                payload: b"alive".to_vec()
            })
            .expect("pong while hashing"),
        Reply::Pong(b"alive".to_vec())
    );
    assert_eq!(
        accounts.password_checks().waiting(),
        4,
        "logins still waiting"
    );
    for _ in 0..2 {
        release.send(()).expect("release");
    }
    for holder in holders {
        holder.join().expect("holder");
    }
    for (client, id) in &mut waiting {
        let fields = client.wait_raw(*id).expect("login answered");
        assert!(matches!(
            Reply::from_fields(&login, &fields),
            Ok(Reply::User { .. })
        ));
    }
    pinger.quit().expect("quit");
    R::stop(server);
}

/// How long a partial upload may go unwritten in the sweep cases.
const DAY: Duration = Duration::from_secs(86_400);

/// A memory tree whose clock says 2001: alice's upload of 3000 of 5000 bytes to
/// `part.bin`, parked for a later resume, is long expired at any wall time after.
fn tree_with_an_old_partial() -> Arc<MemoryTree> {
    let clock: vserv_service::files::Clock = Arc::new(|| 1_000_000_000);
    let tree = Arc::new(MemoryTree::with_clock(FilesConfig::default(), clock));
    let (locks, mut transfers) = (UploadLocks::new(), Transfers::new());
    let alice = UserName::parse("alice").expect("name");
    let opened = transfers
        .fopen(
            &*tree,
            &locks,
            &alice,
            &path("part.bin"),
            "part.bin",
            5000,
            false,
        )
        .expect("fopen");
    transfers
        .fput(&FputArgs {
            id: opened.id,
            offset: 0,
            data: &[7u8; 3000],
        })
        .expect("fput");
    transfers.fclose(opened.id).expect("fclose");
    tree
}

/// Where a resumed upload of alice's `part.bin` would continue (0 once its partial is gone).
fn resume_offset(tree: &dyn FileTree) -> u64 {
    let (locks, mut transfers) = (UploadLocks::new(), Transfers::new());
    let alice = UserName::parse("alice").expect("name");
    let opened = transfers
        .fopen(
            tree,
            &locks,
            &alice,
            &path("part.bin"),
            "part.bin",
            5000,
            true,
        )
        .expect("fopen resume");
    transfers.fclose(opened.id).expect("fclose");
    opened.offset
}

/// The node's timed duty: while the server runs, its runtime sweeps the expired partial
/// upload when the sweep is due (every 100 ms here), with nobody connected.
fn partial_uploads_are_swept_while_serving<R: Tcp>() {
    let fx = Fixture::new(64);
    let tree = tree_with_an_old_partial();
    assert_eq!(resume_offset(&*tree), 3000, "the partial upload is kept");
    let service = fx
        .service()
        .with_files(tree.clone())
        .with_partial_sweep(DAY, Duration::from_millis(100));
    let server = R::start(fx.identity.clone(), service);
    let deadline = Instant::now() + Duration::from_secs(30);
    while resume_offset(&*tree) != 0 {
        assert!(Instant::now() < deadline, "the sweep never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    R::stop(server);
}

macro_rules! parity {
    ($($rt:ident: $name:ident),* $(,)?) => {
        $(mod $name {
            #[test]
            fn pipelined_rputs_from_four_connections_share_commits() {
                super::pipelined_rputs_share_commits::<super::$rt>();
            }
            #[test]
            fn a_held_hook_holds_no_other_request() {
                super::a_held_hook_holds_no_other_request::<super::$rt>();
            }
            #[test]
            fn stopping_waits_for_the_work_connections_started() {
                super::stopping_waits_for_the_work_connections_started::<super::$rt>();
            }
            #[test]
            fn quit_after_a_send_waits_for_its_answer() {
                super::quit_after_a_send_waits_for_its_answer::<super::$rt>();
            }
            #[test]
            fn pings_are_answered_while_logins_wait_to_hash() {
                super::pings_are_answered_while_logins_wait_to_hash::<super::$rt>();
            }
            #[test]
            fn partial_uploads_are_swept_while_serving() {
                super::partial_uploads_are_swept_while_serving::<super::$rt>();
            }
        })*
    };
}

parity!(Blocking: blocking, Smol: smol);

/// The same cases in the simulator: its world runs the blocking work at seed-chosen
/// virtual times, and "held" work is work the test keeps from running.
mod sim {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use vserv_core::commands::{Command, Credential, Reply, SecretBytes, SendArgs, UserRole};
    use vserv_core::{Config, ServerIdentity};
    use vserv_service::Service;
    use vserv_service::accounts::UserName;
    use vserv_service::files::{FileTree, FilesConfig, MemoryTree};
    use vserv_service::ledger::Ledger;
    use vserv_sim::{ClientSpec, EndpointId, Finish, LinkConfig, LinkSpec, ServerSpec, World};

    use super::{CONNECTIONS, Counting, RPUTS, path, rput};

    const LIMIT: Duration = Duration::from_secs(600);

    /// A world whose server has users alice and bob, a file tree (alice's `a.txt`, bob's
    /// inbox accepting alice) and a ledger counting its commits.
    fn world(seed: u64) -> (World, vserv_sim::ServerId, Arc<AtomicUsize>) {
        let mut world = World::new(seed);
        let identity = Arc::new(ServerIdentity::generate(&mut world.fork_rng()));
        let service: Service = world.service("parity", &identity).expect("service");
        for name in ["alice", "bob"] {
            service
                .accounts()
                .create(name, UserRole::User, b"password-1", 0)
                .expect("user");
        }
        let tree = Arc::new(MemoryTree::new(FilesConfig::default()));
        let (alice, bob) = (
            UserName::parse("alice").expect("name"),
            UserName::parse("bob").expect("name"),
        );
        tree.replace_file(&alice, &path("a.txt"), b"payload")
            .expect("a.txt");
        for dir in ["inbox", "inbox/default"] {
            tree.mkdir(&bob, &path(dir)).expect("mkdir");
        }
        tree.replace_file(
            &bob,
            &path("inbox/default/folder.toml"),
            b"allow = [\"alice\"]\n",
        )
        .expect("folder.toml");
        let store = Counting::default();
        let commits = store.commits.clone();
        let ledger = Arc::new(Ledger::new(Arc::new(store), identity.clone()));
        let server = world.add_server(ServerSpec {
            identity,
            service: service.with_files(tree).with_ledger(ledger),
            max_connections: 64,
            config: Config::default(),
        });
        (world, server, commits)
    }

    /// A client the test drives, connected.
    fn client(world: &mut World, server: vserv_sim::ServerId) -> EndpointId {
        let options = world.client_options(Config::default()).expect("options");
        let c = world
            .add_client(
                server,
                ClientSpec {
                    options,
                    link: LinkSpec::symmetric(LinkConfig::benign(700)),
                    script: Vec::new(),
                    pipeline: 1,
                    finish: Finish::Stay,
                },
            )
            .expect("client");
        world.run_until(LIMIT, |w| w.is_connected(c));
        assert!(world.is_connected(c), "connected");
        c
    }

    fn login_command() -> Command {
        Command::Login {
            user: "alice".into(),
            credential: Credential::Password(SecretBytes::new(b"password-1".to_vec())),
        }
    }

    fn call(world: &mut World, c: EndpointId, cmd: &Command) -> Reply {
        let id = world.send(c, cmd).expect("send");
        world.run_until(LIMIT, |w| w.has_reply(c, id));
        world
            .take_reply(c, id)
            .expect("answered")
            .expect("reply ok")
    }

    /// Four clients pipelining `rput`s; the world's trace and the commit count.
    fn pipelined(seed: u64) -> (Vec<String>, usize) {
        let (mut world, server, commits) = world(seed);
        let clients: Vec<EndpointId> = (0..CONNECTIONS)
            .map(|_| client(&mut world, server))
            .collect();
        for &c in &clients {
            assert!(matches!(
                call(&mut world, c, &login_command()),
                Reply::User { .. }
            ));
        }
        let mut sent = Vec::new();
        for i in 0..RPUTS {
            for (n, &c) in clients.iter().enumerate() {
                sent.push((c, world.send(c, &rput(i * CONNECTIONS + n)).expect("send")));
            }
        }
        world.run_until(LIMIT, |w| sent.iter().all(|&(c, id)| w.has_reply(c, id)));
        let mut seqs = Vec::new();
        for (c, id) in sent {
            match world.take_reply(c, id) {
                Some(Ok(Reply::Appended { seq, .. })) => seqs.push(seq),
                other => panic!("{other:?}"),
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=(CONNECTIONS * RPUTS) as u64).collect::<Vec<_>>());
        (world.trace().to_vec(), commits.load(Ordering::SeqCst))
    }

    #[test]
    fn pipelined_rputs_from_four_connections_share_commits() {
        let (trace, commits) = pipelined(71);
        let records = CONNECTIONS * RPUTS;
        assert!(commits < records, "{commits} commits for {records} records");
        let runs = trace
            .iter()
            .filter(|l| l.contains("(ledger commit) runs"))
            .count();
        assert!(
            runs > 0 && runs <= commits,
            "{runs} commit runs in the trace"
        );
    }

    /// The schedule of blocking work is part of the seed: same seed, same trace, commit
    /// boundaries included; another seed, another schedule.
    #[test]
    fn the_seed_decides_when_work_runs() {
        let (first, commits) = pipelined(72);
        let (second, again) = pipelined(72);
        assert_eq!(commits, again);
        if let Some(i) = (0..first.len().max(second.len())).find(|&i| first.get(i) != second.get(i))
        {
            panic!(
                "traces differ at line {i}:\n  {:?}\n  {:?}",
                first.get(i),
                second.get(i)
            );
        }
        assert!(first.iter().any(|l| l.contains("(login) due at")));
        let (other, _) = pipelined(73);
        assert_ne!(first, other);
    }

    #[test]
    fn a_held_delivery_holds_no_other_request() {
        let (mut world, server, _) = world(74);
        let sender = client(&mut world, server);
        let other = client(&mut world, server);
        assert!(matches!(
            call(&mut world, sender, &login_command()),
            Reply::User { .. }
        ));
        world.hold_work("delivery");
        let send = Command::Send(SendArgs {
            to: "bob".into(),
            path: "a.txt".into(),
            folder: None,
            note: None,
        });
        let send_id = world.send(sender, &send).expect("send");
        let ping = Command::Ping {
            payload: b"same".to_vec(),
        };
        assert_eq!(
            call(&mut world, sender, &ping),
            Reply::Pong(b"same".to_vec())
        );
        assert_eq!(
            call(&mut world, other, &ping),
            Reply::Pong(b"same".to_vec())
        );
        assert_eq!(world.pending_work("delivery"), 1, "the delivery is held");
        assert!(!world.has_reply(sender, send_id), "answered while held");
        world.release_work("delivery");
        world.run_until(LIMIT, |w| w.has_reply(sender, send_id));
        assert_eq!(
            world
                .take_reply(sender, send_id)
                .expect("answered")
                .expect("ok"),
            Reply::Delivered("a.txt".into())
        );
    }

    #[test]
    fn pings_are_answered_while_logins_wait_to_hash() {
        let (mut world, server, _) = world(75);
        world.hold_work("login");
        let logins: Vec<(EndpointId, u32)> = (0..4)
            .map(|_| {
                let c = client(&mut world, server);
                (c, world.send(c, &login_command()).expect("login"))
            })
            .collect();
        let pinger = client(&mut world, server);
        let ping = Command::Ping {
            payload: b"alive".to_vec(),
        };
        assert_eq!(
            call(&mut world, pinger, &ping),
            Reply::Pong(b"alive".to_vec())
        );
        assert_eq!(world.pending_work("login"), 4, "the logins are held");
        world.release_work("login");
        world.run_until(LIMIT, |w| logins.iter().all(|&(c, id)| w.has_reply(c, id)));
        for (c, id) in logins {
            assert!(matches!(
                world.take_reply(c, id),
                Some(Ok(Reply::User { .. }))
            ));
        }
    }

    #[test]
    fn partial_uploads_are_swept_while_serving() {
        let mut world = World::new(76);
        let identity = Arc::new(ServerIdentity::generate(&mut world.fork_rng()));
        let tree = super::tree_with_an_old_partial();
        assert_eq!(
            super::resume_offset(&*tree),
            3000,
            "the partial upload is kept"
        );
        let service: Service = world.service("parity", &identity).expect("service");
        let every = Duration::from_secs(60);
        world.add_server(ServerSpec {
            identity,
            service: service
                .with_files(tree.clone())
                .with_partial_sweep(super::DAY, every),
            max_connections: 4,
            config: Config::default(),
        });
        // Nothing but the server's duty happens: the world runs it at its virtual time.
        world.run_until(LIMIT, |_| super::resume_offset(&*tree) == 0);
        assert_eq!(super::resume_offset(&*tree), 0, "the sweep ran");
        assert!(world.now() >= every, "not before it was due");
        assert!(
            world
                .trace()
                .iter()
                .any(|line| line.contains("work") && line.contains("partial sweep")),
            "the sweep is work in the world's schedule"
        );
    }
}
