//! The integration suite every runtime must pass. A runtime implements [`Runtime`]; the
//! [`suite!`] macro instantiates every case for it as ordinary `#[test]`s.
//!
//! Real runtimes (blocking, smol) run over loopback sockets on 127.0.0.1 port 0; the sim
//! runtime runs the same cases in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vserv_core::commands::{Command, ListPage, RecordSelector, Reply, SeqRange};
use vserv_core::{Config, ErrorCode, Fingerprint, ServerIdentity};
use vserv_service::client::{ClientError, ClientOptions};
use vserv_service::{Service, ServiceInfo};
use vserv_store::trust::{TrustDecision, TrustError};

/// A runtime under test.
pub trait Runtime {
    /// A running server; dropping it stops it.
    type Server: TestServer;
    /// A connected client.
    type Client: TestClient;
    /// Starts a server with `identity`, serving at most `max_connections` at once.
    fn start(
        identity: Arc<ServerIdentity>,
        service: Service,
        max_connections: usize,
        config: Config,
    ) -> Self::Server;
    /// Connects a client to `server` and completes the handshake.
    fn connect(server: &Self::Server, options: &ClientOptions)
    -> Result<Self::Client, ClientError>;
}

/// What the suite needs of a running server.
pub trait TestServer {
    /// The `HOST:PORT` clients use (and known_servers records).
    fn address(&self) -> String;
    /// Sends raw bytes as a fresh connection and returns everything the server sent back
    /// before closing (or until a short timeout).
    fn raw_exchange(&self, bytes: &[u8]) -> Vec<u8>;
    /// Stops the server, closing its connections.
    fn shutdown(self);
}

/// What the suite needs of a connected client.
pub trait TestClient {
    /// Runs one command.
    fn call(&mut self, command: &Command) -> Result<Reply, ClientError>;
    /// How the server key was trusted.
    fn trust(&self) -> Option<TrustDecision>;
    /// The session id, once connected.
    fn session_id(&self) -> Option<[u8; 32]>;
    /// `quit` and wait for the server's close.
    fn quit(self) -> Result<(), ClientError>;
}

/// Per-test scratch state: a data dir and a known_servers path.
pub struct Fixture {
    _dir: tempfile::TempDir,
    /// known_servers file for clients.
    pub known_servers: PathBuf,
    /// The server identity.
    pub identity: Arc<ServerIdentity>,
}

impl Fixture {
    /// A fresh fixture with an identity derived from `seed`.
    pub fn new(seed: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let known_servers = dir.path().join("known_servers");
        Fixture {
            identity: Arc::new(identity(seed)),
            known_servers,
            _dir: dir,
        }
    }

    /// Client options using this fixture's known_servers.
    pub fn options(&self) -> ClientOptions {
        ClientOptions::new(&self.known_servers)
    }

    /// The service for this fixture's identity.
    pub fn service(&self) -> Service {
        service(&self.identity)
    }

    /// Where the fixture's files live.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// A deterministic identity for tests.
pub fn identity(seed: u64) -> ServerIdentity {
    use rand::SeedableRng;
    ServerIdentity::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
}

/// The service describing `identity`, with a ledger in its in-memory store.
pub fn service(identity: &Arc<ServerIdentity>) -> Service {
    service_with_policy(identity, vserv_service::Policy::default())
}

/// The service describing `identity`, with the given abuse limits and `tout` bounds, and a
/// ledger in its in-memory store.
pub fn service_with_policy(
    identity: &Arc<ServerIdentity>,
    policy: vserv_service::Policy,
) -> Service {
    use rand::SeedableRng;
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(7));
    let accounts = vserv_service::ephemeral_accounts(rng).expect("in-memory accounts");
    let info = ServiceInfo {
        name: "test-server".into(),
        fingerprint: identity.public_key().fingerprint(),
    };
    let ledger = Arc::new(vserv_service::ledger::Ledger::new(
        accounts.store(),
        identity.clone(),
    ));
    Service::with_policy(info, accounts, policy).with_ledger(ledger)
}

/// Starts a default server for `fx`.
pub fn start<R: Runtime>(fx: &Fixture) -> R::Server {
    R::start(fx.identity.clone(), fx.service(), 64, Config::default())
}

// ----- the cases -----

/// Every v1 command answers with its typed reply.
pub fn every_command_works<R: Runtime>() {
    let fx = Fixture::new(1);
    let server = start::<R>(&fx);
    let mut client = R::connect(&server, &fx.options()).expect("connect");
    let fpr = fx.identity.public_key().fingerprint();
    match client.call(&Command::Hello).expect("hello") {
        Reply::Greeting(g) => assert!(g.contains("test-server"), "{g}"),
        other => panic!("hello gave {other:?}"),
    }
    assert!(matches!(
        client.call(&Command::Ver).expect("ver"),
        Reply::Version { protocol: 1, .. }
    ));
    assert_eq!(
        client.call(&Command::Id).expect("id"),
        Reply::Identity {
            name: "test-server".into(),
            fingerprint: fpr
        }
    );
    match client.call(&Command::Help { topic: None }).expect("help") {
        Reply::Help(text) => assert!(
            ["hello", "ver", "id", "help", "ping", "quit"]
                .iter()
                .all(|c| text.contains(c))
        ),
        other => panic!("help gave {other:?}"),
    }
    match client
        .call(&Command::Help {
            topic: Some("ping".into()),
        })
        .expect("help ping")
    {
        Reply::Help(text) => assert!(text.contains("usage: ping")),
        other => panic!("help ping gave {other:?}"),
    }
    let payload: Vec<u8> = (0..=255u8).cycle().take(16000).collect();
    assert_eq!(
        client
            .call(&Command::Ping {
                payload: payload.clone()
            })
            .expect("ping"),
        Reply::Pong(payload)
    );
    assert_eq!(
        client
            .call(&Command::Ping { payload: vec![] })
            .expect("empty ping"),
        Reply::Pong(vec![])
    );
    client.quit().expect("quit");
    server.shutdown();
}

/// Errors are typed answers; the session keeps working after them.
pub fn errors_are_typed_and_not_fatal<R: Runtime>() {
    let fx = Fixture::new(2);
    let server = start::<R>(&fx);
    let mut client = R::connect(&server, &fx.options()).expect("connect");
    match client.call(&Command::Help {
        topic: Some("nosuch".into()),
    }) {
        Err(ClientError::Server(e)) => assert_eq!(e.code, ErrorCode::UnknownCommand),
        other => panic!("expected UnknownCommand, got {other:?}"),
    }
    assert_eq!(
        client
            .call(&Command::Ping {
                payload: b"still".to_vec()
            })
            .expect("ping"),
        Reply::Pong(b"still".to_vec())
    );
    client.quit().expect("quit");
    server.shutdown();
}

/// First contact records the key; the next connection finds it known.
pub fn tofu_records_then_recognises<R: Runtime>() {
    let fx = Fixture::new(3);
    let server = start::<R>(&fx);
    let first = R::connect(&server, &fx.options()).expect("first connect");
    let fpr = fx.identity.public_key().fingerprint();
    assert_eq!(
        first.trust(),
        Some(TrustDecision::FirstContact { fingerprint: fpr })
    );
    first.quit().expect("quit");
    let text = std::fs::read_to_string(&fx.known_servers).expect("known_servers written");
    assert!(text.contains(&server.address().to_lowercase()), "{text}");
    let second = R::connect(&server, &fx.options()).expect("second connect");
    assert_eq!(second.trust(), Some(TrustDecision::Known));
    second.quit().expect("quit");
    server.shutdown();
}

/// A server presenting a different key than the one recorded is a hard error, and the
/// record is not overwritten.
pub fn changed_key_is_refused<R: Runtime>() {
    let fx = Fixture::new(4);
    let server = start::<R>(&fx);
    // Record another identity's key for this server's address.
    let other = identity(40);
    let mut known =
        vserv_store::known_servers::KnownServers::load(&fx.known_servers).expect("load");
    known
        .record(&server.address(), &other.public_key())
        .expect("record");
    let before = std::fs::read(&fx.known_servers).expect("read");
    match R::connect(&server, &fx.options()) {
        Err(ClientError::Trust(TrustError::KeyChanged {
            known, presented, ..
        })) => {
            assert_eq!(known, other.public_key().fingerprint());
            assert_eq!(presented, fx.identity.public_key().fingerprint());
        }
        Err(e) => panic!("expected KeyChanged, got {e}"),
        Ok(_) => panic!("connected despite a changed key"),
    }
    assert_eq!(
        std::fs::read(&fx.known_servers).expect("read"),
        before,
        "known_servers modified"
    );
    server.shutdown();
}

/// `--server-key` pins: the right fingerprint connects, a wrong one is refused.
pub fn pinned_key<R: Runtime>() {
    let fx = Fixture::new(5);
    let server = start::<R>(&fx);
    let mut options = fx.options();
    options.pinned = Some(Fingerprint([7; 32]));
    assert!(matches!(
        R::connect(&server, &options),
        Err(ClientError::Trust(TrustError::PinMismatch { .. }))
    ));
    options.pinned = Some(fx.identity.public_key().fingerprint());
    let client = R::connect(&server, &options).expect("pinned connect");
    assert_eq!(client.trust(), Some(TrustDecision::Pinned));
    client.quit().expect("quit");
    server.shutdown();
}

/// Garbage and truncated handshakes are refused cleanly and the server keeps serving.
pub fn bad_input_does_not_hurt_others<R: Runtime>() {
    let fx = Fixture::new(6);
    let server = start::<R>(&fx);
    let mut client = R::connect(&server, &fx.options()).expect("connect");
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0xff; 8],
        &[0, 0, 0, 5, 1, 2, 3, 4, 5],
        &[],
    ] {
        let reply = server.raw_exchange(junk);
        // Whatever came back is at most a refusal or a close: never a ServerHello to junk.
        assert!(
            reply.len() < 128,
            "server answered junk with {} bytes",
            reply.len()
        );
    }
    assert_eq!(
        client
            .call(&Command::Ping {
                payload: b"ok".to_vec()
            })
            .expect("ping"),
        Reply::Pong(b"ok".to_vec())
    );
    client.quit().expect("quit");
    server.shutdown();
}

/// Many clients at once all get their answers.
pub fn many_clients<R: Runtime>() {
    let fx = Fixture::new(7);
    // Sixteen anonymous sessions from one address: more than the default cap on those.
    let policy = vserv_service::Policy {
        max_unauthenticated_per_ip: None,
        ..vserv_service::Policy::default()
    };
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let mut clients: Vec<R::Client> = (0..16)
        .map(|_| R::connect(&server, &fx.options()).expect("connect"))
        .collect();
    for round in 0..5u8 {
        for (i, c) in clients.iter_mut().enumerate() {
            let payload = vec![round, i as u8];
            assert_eq!(
                c.call(&Command::Ping {
                    payload: payload.clone()
                })
                .expect("ping"),
                Reply::Pong(payload)
            );
        }
    }
    for c in clients {
        c.quit().expect("quit");
    }
    server.shutdown();
}

/// Beyond the connection limit, clients get a clean `Busy` refusal.
pub fn connection_limit_refuses_busy<R: Runtime>() {
    let fx = Fixture::new(8);
    let server = R::start(fx.identity.clone(), fx.service(), 2, Config::default());
    let a = R::connect(&server, &fx.options()).expect("a");
    let b = R::connect(&server, &fx.options()).expect("b");
    match R::connect(&server, &fx.options()) {
        Err(ClientError::Protocol(vserv_core::Error::Refused(vserv_core::CloseCode::Busy))) => {}
        Err(e) => panic!("expected a Busy refusal, got {e}"),
        Ok(_) => panic!("connected beyond the limit"),
    }
    a.quit().expect("quit a");
    b.quit().expect("quit b");
    server.shutdown();
}

/// A session that does not log in is closed once the login grace time has passed, even
/// while it keeps sending `ping`s; a logged-in session is not.
pub fn anonymous_sessions_end_after_the_login_grace<R: Runtime>() {
    let fx = Fixture::new(9);
    let config = Config {
        login_grace: Some(std::time::Duration::from_secs(2)),
        ..Config::default()
    };
    let server = R::start(fx.identity.clone(), fx.service(), 8, config);
    let mut root = root_client::<R>(&server, &fx);
    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    // Only a guard against hanging: the idle timeout (300 s) is far beyond it.
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut pings = 0u64;
    let ended = loop {
        match anonymous.call(&Command::Ping {
            payload: b"still here".to_vec(),
        }) {
            Ok(reply) => assert_eq!(reply, Reply::Pong(b"still here".to_vec())),
            Err(e) => break e,
        }
        pings += 1;
        assert!(
            std::time::Instant::now() < guard,
            "an anonymous session pinged for 120 s ({pings} pings) without being closed"
        );
    };
    assert!(pings > 0, "closed before its first ping");
    match &ended {
        ClientError::ClosedByServer { code, reason } => {
            assert_eq!(*code, vserv_core::CloseCode::Timeout, "{reason}");
            assert!(reason.contains("login grace"), "{reason}");
        }
        ClientError::Server(e) => panic!("answered instead of closed: {e}"),
        // The close record may be lost to a reset racing the last ping.
        _ => {}
    }
    root.call(&Command::Ping { payload: vec![1] })
        .expect("a logged-in session outlives the grace");
    root.quit().expect("quit");
    server.shutdown();
}

/// At most `max_unauthenticated_per_ip` sessions from one address may be not logged in:
/// one more is refused as busy while the others are served, and a session that logs in
/// (or ends) frees its slot.
pub fn unauthenticated_sessions_are_capped_per_address<R: Runtime>() {
    let fx = Fixture::new(10);
    let policy = vserv_service::Policy {
        max_unauthenticated_per_ip: Some(2),
        connection_rate: None,
        ..vserv_service::Policy::default()
    };
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let refused = |what: &str| match R::connect(&server, &fx.options()) {
        Err(ClientError::Protocol(vserv_core::Error::Refused(vserv_core::CloseCode::Busy))) => {}
        Err(e) => panic!("{what}: expected a Busy refusal, got {e}"),
        Ok(_) => panic!("{what}: a third unauthenticated session was accepted"),
    };
    let mut a = R::connect(&server, &fx.options()).expect("a");
    let mut b = R::connect(&server, &fx.options()).expect("b");
    refused("with a and b anonymous");
    b.call(&Command::Ping { payload: vec![2] })
        .expect("b is still served");
    a.call(&Command::Uini {
        user: "root".into(),
        password: secret(ROOT_PASSWORD),
    })
    .expect("uini");
    refused("uini is no login");
    a.call(&login_cmd("root", ROOT_PASSWORD)).expect("login");
    let mut c = R::connect(&server, &fx.options()).expect("a's login freed its slot");
    c.call(&Command::Ping { payload: vec![3] }).expect("c");
    refused("with b and c anonymous");
    b.quit().expect("quit b");
    let d = R::connect(&server, &fx.options()).expect("b's end freed its slot");
    a.call(&Command::Ping { payload: vec![1] })
        .expect("the logged-in session is served");
    for client in [a, c, d] {
        client.quit().expect("quit");
    }
    server.shutdown();
}

// ----- accounts -----

const ROOT_PASSWORD: &str = "root-password";

fn secret(s: &str) -> vserv_core::commands::SecretBytes {
    vserv_core::commands::SecretBytes::new(s.as_bytes().to_vec())
}

fn login_cmd(user: &str, password: &str) -> Command {
    Command::Login {
        user: user.into(),
        credential: vserv_core::commands::Credential::Password(secret(password)),
    }
}

fn code_of(result: Result<Reply, ClientError>) -> Option<ErrorCode> {
    match result {
        Err(ClientError::Server(e)) => Some(e.code),
        _ => None,
    }
}

/// Creates the first admin `root` (from loopback) and returns a client logged in as it.
fn root_client<R: Runtime>(server: &R::Server, fx: &Fixture) -> R::Client {
    let mut c = R::connect(server, &fx.options()).expect("connect");
    c.call(&Command::Uini {
        user: "root".into(),
        password: secret(ROOT_PASSWORD),
    })
    .expect("uini");
    c.call(&login_cmd("root", ROOT_PASSWORD))
        .expect("root login");
    c
}

fn logged_in<R: Runtime>(
    server: &R::Server,
    fx: &Fixture,
    user: &str,
    password: &str,
) -> R::Client {
    let mut c = R::connect(server, &fx.options()).expect("connect");
    c.call(&login_cmd(user, password)).expect("login");
    c
}

/// `uini` creates the first admin once; admins add users; `whoami`/`logout` track the login.
pub fn accounts_first_admin_then_users<R: Runtime>() {
    let fx = Fixture::new(20);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    assert_eq!(
        code_of(root.call(&Command::Uini {
            user: "other".into(),
            password: secret("password-2")
        })),
        Some(ErrorCode::Forbidden)
    );
    root.call(&Command::Uadd {
        user: "Alice".into(),
        password: secret("alice-pass"),
    })
    .expect("uadd");
    root.call(&Command::Aadd {
        user: "bob".into(),
        password: secret("bob-password"),
    })
    .expect("aadd");
    assert_eq!(
        code_of(root.call(&Command::Uadd {
            user: "ALICE".into(),
            password: secret("whatever-1")
        })),
        Some(ErrorCode::Conflict),
        "names are case-insensitive"
    );
    let Reply::Users(users) = root.call(&Command::Ulist { filter: None }).expect("ulist") else {
        panic!()
    };
    let names: Vec<_> = users
        .iter()
        .map(|u| (u.name.as_str(), u.role, u.enabled))
        .collect();
    use vserv_core::commands::UserRole::{Admin, User};
    assert_eq!(
        names,
        [
            ("alice", User, true),
            ("bob", Admin, true),
            ("root", Admin, true)
        ]
    );
    let Reply::Users(filtered) = root
        .call(&Command::Ulist {
            filter: Some("b".into()),
        })
        .expect("ulist b")
    else {
        panic!()
    };
    assert_eq!(filtered.len(), 1);

    let mut alice = logged_in::<R>(&server, &fx, "alice", "alice-pass");
    assert_eq!(
        alice.call(&Command::Whoami).expect("whoami"),
        Reply::User {
            name: "alice".into(),
            role: User
        }
    );
    alice.call(&Command::Logout).expect("logout");
    assert_eq!(
        alice.call(&Command::Whoami).expect("whoami"),
        Reply::Anonymous
    );
    alice.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// Every command against {anonymous, user, disabled user, admin}: allowed or refused exactly
/// as its declared access says.
pub fn permission_matrix<R: Runtime>() {
    use vserv_core::commands::{Access, KeyAction};
    let fx = Fixture::new(21);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "user".into(),
        password: secret("user-password"),
    })
    .expect("uadd");
    root.call(&Command::Uadd {
        user: "off".into(),
        password: secret("off-password"),
    })
    .expect("uadd");
    root.call(&Command::Uena {
        user: "off".into(),
        enabled: false,
    })
    .expect("disable");

    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    let mut user = logged_in::<R>(&server, &fx, "user", "user-password");
    let mut disabled = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(
        code_of(disabled.call(&login_cmd("off", "off-password"))),
        Some(ErrorCode::LoginFailed)
    );

    // Commands whose effect, when allowed, leaves the matrix intact (targets do not exist,
    // or a new, unique name is created).
    let commands = |who: &str| {
        vec![
            Command::Hello,
            Command::Ver,
            Command::Id,
            Command::Help { topic: None },
            Command::Ping { payload: vec![1] },
            Command::Whoami,
            Command::Uadd {
                user: format!("u-{who}"),
                password: secret("password-x"),
            },
            Command::Aadd {
                user: format!("a-{who}"),
                password: secret("password-x"),
            },
            Command::Udel {
                user: "ghost".into(),
            },
            Command::Uena {
                user: "ghost".into(),
                enabled: true,
            },
            Command::Ulist { filter: None },
            Command::Chpass {
                target: None,
                old: Some(secret("wrong-old-pw")),
                new: secret("new-password"),
            },
            Command::Chpass {
                target: Some("ghost".into()),
                old: None,
                new: secret("new-password"),
            },
            Command::Ukey(KeyAction::List),
            Command::Ukey(KeyAction::Del(Fingerprint([0; 32]))),
            Command::Tout { seconds: None },
            Command::Rput {
                kind: "perm".into(),
                record_id: format!("perm-{who}").into_bytes(),
                body: b"x=1\n".to_vec(),
            },
            Command::Rget(vserv_core::commands::RecordSelector::Seq(1)),
            Command::Rhave {
                record_id: b"perm-user".to_vec(),
            },
            Command::Rabs { pos: -1 },
            Command::Rsize { kind: None },
            Command::Rsize {
                kind: Some("perm".into()),
            },
            Command::Rcount {
                kind: "perm".into(),
                range: SeqRange { from: 1, to: 9 },
            },
            Command::Rlist {
                kind: None,
                range: SeqRange { from: 1, to: 9 },
                limit: None,
            },
            Command::Rhead,
            Command::Rcheck { range: None },
            Command::Rcheck {
                range: Some(SeqRange { from: 1, to: 2 }),
            },
            Command::Logout,
        ]
    };
    let principals: [(&str, &mut R::Client, Access); 4] = [
        ("anonymous", &mut anonymous, Access::Anyone),
        ("disabled", &mut disabled, Access::Anyone),
        ("user", &mut user, Access::User),
        ("admin", &mut root, Access::Admin),
    ];
    for (who, client, level) in principals {
        for cmd in commands(who) {
            let needed = cmd.access();
            let result = client.call(&cmd);
            let refused = matches!(&result, Err(ClientError::Server(e))
                if e.code == ErrorCode::Forbidden && (e.message.contains("log in first") || e.message.contains("needs an admin")));
            assert_eq!(
                refused,
                needed > level,
                "{who} running {}: {result:?}",
                cmd.name()
            );
        }
    }
    server.shutdown();
}

/// Three failed logins close the connection; unknown users and wrong passwords fail alike.
pub fn failed_logins_close_the_connection<R: Runtime>() {
    let fx = Fixture::new(22);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    let mut c = R::connect(&server, &fx.options()).expect("connect");
    let unknown = c.call(&login_cmd("nobody", "whatever-pw"));
    let wrong = c.call(&login_cmd("root", "wrong-password"));
    match (&unknown, &wrong) {
        (Err(ClientError::Server(a)), Err(ClientError::Server(b))) => {
            assert_eq!(
                a, b,
                "unknown user and wrong password must be indistinguishable"
            );
            assert_eq!(a.code, ErrorCode::LoginFailed);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code_of(c.call(&login_cmd("root", "wrong-again"))),
        Some(ErrorCode::LoginFailed)
    );
    match c.call(&Command::Ping { payload: vec![] }) {
        Err(ClientError::ClosedByServer { .. } | ClientError::ConnectionClosed) => {}
        other => panic!("connection still open after 3 failures: {other:?}"),
    }
    // Others are unaffected.
    assert_eq!(
        root.call(&Command::Whoami).expect("whoami"),
        Reply::User {
            name: "root".into(),
            role: vserv_core::commands::UserRole::Admin
        }
    );
    root.quit().expect("quit");
    server.shutdown();
}

/// The last enabled admin can be neither deleted nor disabled.
pub fn last_admin_is_protected<R: Runtime>() {
    let fx = Fixture::new(23);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    assert_eq!(
        code_of(root.call(&Command::Udel {
            user: "root".into()
        })),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code_of(root.call(&Command::Uena {
            user: "root".into(),
            enabled: false
        })),
        Some(ErrorCode::Forbidden)
    );
    root.call(&Command::Aadd {
        user: "second".into(),
        password: secret("second-pw"),
    })
    .expect("aadd");
    root.call(&Command::Uena {
        user: "second".into(),
        enabled: false,
    })
    .expect("disable second");
    assert_eq!(
        code_of(root.call(&Command::Udel {
            user: "root".into()
        })),
        Some(ErrorCode::Forbidden)
    );
    root.call(&Command::Uena {
        user: "second".into(),
        enabled: true,
    })
    .expect("enable second");
    root.call(&Command::Udel {
        user: "root".into(),
    })
    .expect("now root may go");
    root.quit().expect("quit");
    server.shutdown();
}

/// Key login: the registered key signing this session's id logs in; another key, or a
/// signature over another session's id, does not.
pub fn key_login<R: Runtime>() {
    use vserv_core::commands::{Credential, KeyAction, login_signature_message};
    let fx = Fixture::new(24);
    // No login backoff: this case checks each credential, one right after another.
    let mut policy = vserv_service::Policy::default();
    policy.login.base_secs = 0;
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "kate".into(),
        password: secret("kate-password"),
    })
    .expect("uadd");
    let key = identity(240);
    let other = identity(241);
    let mut kate = logged_in::<R>(&server, &fx, "kate", "kate-password");
    kate.call(&Command::Ukey(KeyAction::Add(*key.public_key().as_bytes())))
        .expect("ukey add");
    assert_eq!(
        code_of(kate.call(&Command::Ukey(KeyAction::Add(*key.public_key().as_bytes())))),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        kate.call(&Command::Ukey(KeyAction::List)).expect("list"),
        Reply::Keys(vec![key.public_key().fingerprint()])
    );
    let stale_sid = kate.session_id().expect("session id");
    kate.quit().expect("quit");

    let key_login =
        |signer: &ServerIdentity, public: &ServerIdentity, sid: [u8; 32]| Command::Login {
            user: "kate".into(),
            credential: Credential::Key {
                public: *public.public_key().as_bytes(),
                signature: signer.sign(&login_signature_message(&sid, "kate")),
            },
        };
    let mut c = R::connect(&server, &fx.options()).expect("connect");
    let sid = c.session_id().expect("session id");
    assert_ne!(sid, stale_sid);
    assert_eq!(
        code_of(c.call(&key_login(&other, &other, sid))),
        Some(ErrorCode::LoginFailed),
        "unregistered key"
    );
    assert_eq!(
        code_of(c.call(&key_login(&key, &key, stale_sid))),
        Some(ErrorCode::LoginFailed),
        "replayed signature"
    );
    assert!(
        matches!(c.call(&key_login(&key, &key, sid)), Ok(Reply::User { .. })),
        "the right key"
    );
    c.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// Bad user names are refused with a typed error and create nothing.
pub fn bad_user_names_are_refused<R: Runtime>() {
    let fx = Fixture::new(25);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    let long = "x".repeat(300);
    for bad in [
        "",
        long.as_str(),
        "../x",
        "a/b",
        "nul\0name",
        "al\u{202e}ice",
        "é",
        ".hidden",
    ] {
        assert_eq!(
            code_of(root.call(&Command::Uadd {
                user: bad.into(),
                password: secret("password-1")
            })),
            Some(ErrorCode::BadArguments),
            "{bad:?}"
        );
    }
    assert_eq!(
        code_of(root.call(&Command::Uadd {
            user: "shortpw".into(),
            password: secret("short")
        })),
        Some(ErrorCode::BadArguments)
    );
    let Reply::Users(users) = root.call(&Command::Ulist { filter: None }).expect("ulist") else {
        panic!()
    };
    assert_eq!(users.len(), 1);
    root.quit().expect("quit");
    server.shutdown();
}

/// Disabling or deleting a logged-in user takes effect on their very next command.
pub fn disabled_user_loses_access_at_once<R: Runtime>() {
    let fx = Fixture::new(26);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "dan".into(),
        password: secret("dan-password"),
    })
    .expect("uadd");
    let mut dan = logged_in::<R>(&server, &fx, "dan", "dan-password");
    assert!(
        dan.call(&Command::Ukey(vserv_core::commands::KeyAction::List))
            .is_ok()
    );
    root.call(&Command::Uena {
        user: "dan".into(),
        enabled: false,
    })
    .expect("disable");
    assert_eq!(
        code_of(dan.call(&Command::Ukey(vserv_core::commands::KeyAction::List))),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        dan.call(&Command::Whoami).expect("whoami"),
        Reply::Anonymous
    );
    dan.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// A session is bound to the account it logged into, not to its name: `udel carol` ends
/// the old carol's session at once (the server closes it, "account deleted", without
/// waiting for its next command), so after `uadd carol` it never sees the new carol's files; the new carol starts with an empty home,
/// and the old home is archived whole under `<data>/deleted-homes/carol-<account id>`.
pub fn deleted_account_sessions_end_and_homes_are_archived<R: Runtime>() {
    let fx = Fixture::new(32);
    let server = start_with_files::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    let add_carol = |root: &mut R::Client, password: &str| {
        root.call(&Command::Uadd {
            user: "carol".into(),
            password: secret(password),
        })
        .expect("uadd carol")
    };
    add_carol(&mut root, "old-carol-password");
    let mut old = logged_in::<R>(&server, &fx, "carol", "old-carol-password");
    done(
        &mut old,
        Command::Mkdir {
            path: "old-secrets".into(),
        },
    );
    // An upload left open across the deletion must not park its state into the new account.
    let open = match old.call(&Command::Fopen(vserv_core::transfer::FopenArgs {
        path: "old-secrets/draft.bin".into(),
        size: 1000,
        resume: false,
    })) {
        Ok(Reply::Opened(o)) => o,
        other => panic!("fopen gave {other:?}"),
    };
    done(
        &mut old,
        Command::Fput {
            id: open.id,
            offset: 0,
            data: vec![7; 100],
        },
    );
    done(
        &mut root,
        Command::Udel {
            user: "carol".into(),
        },
    );
    add_carol(&mut root, "new-carol-password");
    let mut new = logged_in::<R>(&server, &fx, "carol", "new-carol-password");
    let (entries, _) = listing(&mut new, Command::Ls(ListPage::default()));
    assert!(entries.is_empty(), "the new carol inherited {entries:?}");
    done(
        &mut new,
        Command::Mkdir {
            path: "new-secrets".into(),
        },
    );
    done(
        &mut new,
        Command::Mkdir {
            path: "old-secrets".into(),
        },
    );
    // The new carol's own upload, so that her home has a partial-upload directory.
    match new.call(&Command::Fopen(vserv_core::transfer::FopenArgs {
        path: "mine.bin".into(),
        size: 10,
        resume: false,
    })) {
        Ok(Reply::Opened(_)) => {}
        other => panic!("fopen gave {other:?}"),
    }
    let partials = fx.dir().join("homes/carol/.vserv-partial");
    let listed = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let new_partials = listed(&partials);
    match old.call(&Command::Ls(ListPage::default())) {
        Err(ClientError::ClosedByServer { code, reason }) => {
            assert_eq!(code, vserv_core::CloseCode::Normal);
            assert_eq!(reason, "account deleted");
        }
        other => panic!("the old carol's session went on: {other:?}"),
    }
    assert!(
        old.call(&Command::Whoami).is_err(),
        "the old carol's session was not closed"
    );
    drop(old);
    let (entries, _) = listing(
        &mut new,
        Command::Ls(ListPage {
            dir: Some("old-secrets".into()),
            ..ListPage::default()
        }),
    );
    assert!(
        entries.is_empty(),
        "the old upload reached the new carol: {entries:?}"
    );
    assert_eq!(
        listed(&partials),
        new_partials,
        "the old upload parked its state in the new home"
    );
    let archive = fx.dir().join("deleted-homes");
    let archived: Vec<String> = std::fs::read_dir(&archive)
        .expect("deleted-homes exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert!(archived[0].starts_with("carol-"), "{archived:?}");
    assert!(archive.join(&archived[0]).join("old-secrets").is_dir());
    assert!(!archive.join(&archived[0]).join("new-secrets").exists());
    new.call(&Command::Whoami).expect("the new carol goes on");
    new.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// `chpass`: own change needs the old password; admins set others'.
pub fn password_changes<R: Runtime>() {
    let fx = Fixture::new(27);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "eve".into(),
        password: secret("eve-password"),
    })
    .expect("uadd");
    let mut eve = logged_in::<R>(&server, &fx, "eve", "eve-password");
    let change = |old: &str, new: &str| Command::Chpass {
        target: None,
        old: Some(secret(old)),
        new: secret(new),
    };
    assert_eq!(
        code_of(eve.call(&change("not-my-password", "eve-password-2"))),
        Some(ErrorCode::LoginFailed)
    );
    eve.call(&change("eve-password", "eve-password-2"))
        .expect("own change");
    let for_root = Command::Chpass {
        target: Some("root".into()),
        old: None,
        new: secret("hijacked-pw"),
    };
    assert_eq!(code_of(eve.call(&for_root)), Some(ErrorCode::Forbidden));
    eve.quit().expect("quit");
    drop(logged_in::<R>(&server, &fx, "eve", "eve-password-2"));
    root.call(&Command::Chpass {
        target: Some("eve".into()),
        old: None,
        new: secret("reset-by-root"),
    })
    .expect("reset");
    let mut again = logged_in::<R>(&server, &fx, "eve", "reset-by-root");
    again.call(&Command::Whoami).expect("whoami");
    again.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

// ----- abuse limits -----

/// Brute force: three failures close the connection, and the user's backoff outlives it —
/// a new connection's attempt is refused even with the right password — while other users
/// (from the same address) are unaffected. The backoff base is 60 s here so that real
/// clocks cannot step past it during the test.
pub fn login_backoff_outlasts_the_connection<R: Runtime>() {
    let fx = Fixture::new(30);
    let mut policy = vserv_service::Policy::default();
    policy.login.base_secs = 60;
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "alice".into(),
        password: secret("alice-pass"),
    })
    .expect("uadd");
    let mut c = R::connect(&server, &fx.options()).expect("connect");
    let first = c.call(&login_cmd("root", "guess-1"));
    match &first {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::LoginFailed);
            assert!(!e.message.contains("too many"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    for guess in ["guess-2", "guess-3"] {
        match c.call(&login_cmd("root", guess)) {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.code, ErrorCode::LoginFailed);
                assert!(
                    e.message.contains("too many failed attempts"),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
    }
    match c.call(&Command::Ping { payload: vec![] }) {
        Err(ClientError::ClosedByServer { .. } | ClientError::ConnectionClosed) => {}
        other => panic!("connection still open after 3 failures: {other:?}"),
    }
    // The 4th attempt, on a new connection and with the right password: refused.
    let mut d = R::connect(&server, &fx.options()).expect("connect");
    match d.call(&login_cmd("root", ROOT_PASSWORD)) {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::LoginFailed);
            assert!(e.message.contains("retry in"), "{}", e.message);
        }
        other => panic!("4th attempt not refused: {other:?}"),
    }
    // Another user from the same address logs in; the session logged in before is intact.
    d.call(&login_cmd("alice", "alice-pass"))
        .expect("alice unaffected");
    assert!(matches!(
        root.call(&Command::Whoami).expect("whoami"),
        Reply::User { .. }
    ));
    d.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// `tout`: logged-in sessions read and set their idle timeout within the server's bounds;
/// anonymous ones may not; out-of-bounds values are refused and change nothing.
pub fn tout_within_bounds<R: Runtime>() {
    let fx = Fixture::new(31);
    let server = start::<R>(&fx);
    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(
        code_of(anonymous.call(&Command::Tout { seconds: Some(60) })),
        Some(ErrorCode::Forbidden)
    );
    let mut root = root_client::<R>(&server, &fx);
    let policy = vserv_service::Policy::default();
    let (min, max) = (
        policy.idle_timeout_min.as_secs(),
        policy.idle_timeout_max.as_secs(),
    );
    assert_eq!(
        root.call(&Command::Tout { seconds: None }).expect("tout"),
        Reply::IdleTimeout(Config::default().idle_timeout.as_secs())
    );
    for bad in [0, min - 1, max + 1] {
        assert_eq!(
            code_of(root.call(&Command::Tout { seconds: Some(bad) })),
            Some(ErrorCode::BadArguments),
            "{bad}"
        );
    }
    for good in [max, min, 120] {
        assert_eq!(
            root.call(&Command::Tout {
                seconds: Some(good)
            })
            .expect("tout"),
            Reply::IdleTimeout(good)
        );
    }
    assert_eq!(
        root.call(&Command::Tout { seconds: None }).expect("tout"),
        Reply::IdleTimeout(120)
    );
    root.call(&Command::Ping { payload: vec![1] })
        .expect("still connected");
    anonymous.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

// ----- the ledger -----

fn rput(kind: &str, record_id: &str, body: &[u8]) -> Command {
    Command::Rput {
        kind: kind.into(),
        record_id: record_id.as_bytes().to_vec(),
        body: body.to_vec(),
    }
}

/// `rput` by `client`, returning the seq and hash it replied with.
fn appended<C: TestClient>(client: &mut C, command: &Command) -> (u64, [u8; 32]) {
    match client.call(command).expect("rput") {
        Reply::Appended { seq, hash } => (seq, hash),
        other => panic!("rput gave {other:?}"),
    }
}

fn record<C: TestClient>(
    client: &mut C,
    selector: vserv_core::commands::RecordSelector,
) -> vserv_core::ledger::Entry {
    match client.call(&Command::Rget(selector)).expect("rget") {
        Reply::Record(entry) => entry,
        other => panic!("rget gave {other:?}"),
    }
}

/// A server with the admin `root` and the user `alice`: (root, alice).
fn ledger_users<R: Runtime>(server: &R::Server, fx: &Fixture) -> (R::Client, R::Client) {
    let mut root = root_client::<R>(server, fx);
    root.call(&Command::Uadd {
        user: "alice".into(),
        password: secret("alice-password"),
    })
    .expect("uadd");
    let alice = logged_in::<R>(server, fx, "alice", "alice-password");
    (root, alice)
}

/// `rput` then `rget` by seq, id and hash: the entry decodes, hashes to the hash `rput`
/// replied, and carries the origin, author, kind, record id and body.
pub fn ledger_put_then_get<R: Runtime>() {
    let fx = Fixture::new(40);
    let server = start::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    let body = b"name=alice\nscore=42\n";
    let (seq, hash) = appended(&mut alice, &rput("score", "rec-1", body));
    assert_eq!(seq, 1);
    let by_seq = record(&mut alice, RecordSelector::Seq(1));
    let by_id = record(&mut alice, RecordSelector::Id(b"rec-1".to_vec()));
    let by_hash = record(&mut alice, RecordSelector::Hash(hash));
    for entry in [&by_seq, &by_id, &by_hash] {
        assert_eq!(entry.hash(), hash);
        assert_eq!(entry.seq(), 1);
        assert_eq!(entry.origin(), fx.identity.public_key());
        assert_eq!(entry.prev(), &vserv_core::ledger::ZERO_HASH);
        assert_eq!(entry.author(), "alice");
        assert_eq!(entry.kind(), "score");
        assert_eq!(entry.record_id(), b"rec-1");
        assert_eq!(entry.body(), body);
    }
    let (seq2, hash2) = appended(&mut alice, &rput("score", "rec-2", b""));
    assert_eq!(seq2, 2);
    let second = record(&mut alice, RecordSelector::Seq(2));
    assert_eq!(second.hash(), hash2);
    assert_eq!(second.prev(), &hash, "entry 2 links to entry 1");
    assert_eq!(
        alice
            .call(&Command::Rhave {
                record_id: b"rec-1".to_vec()
            })
            .expect("call"),
        (Reply::Have(true))
    );
    assert_eq!(
        alice
            .call(&Command::Rhave {
                record_id: b"rec-9".to_vec()
            })
            .expect("call"),
        (Reply::Have(false))
    );
    for missing in [
        RecordSelector::Seq(3),
        RecordSelector::Seq(0),
        RecordSelector::Id(b"rec-9".to_vec()),
        RecordSelector::Hash([0; 32]),
    ] {
        assert_eq!(
            code_of(alice.call(&Command::Rget(missing))),
            Some(ErrorCode::NotFound)
        );
    }
    // A kind outside the rules is refused before it reaches the ledger.
    assert_eq!(
        code_of(alice.call(&rput("Bad Kind", "rec-3", b""))),
        Some(ErrorCode::BadArguments)
    );
    assert_eq!(
        alice.call(&Command::Rsize { kind: None }).expect("call"),
        (Reply::Count(2))
    );
    server.shutdown();
}

/// A repeated record id is a `Conflict` and is not stored twice.
pub fn ledger_duplicate_record_id_is_refused<R: Runtime>() {
    let fx = Fixture::new(41);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    appended(&mut alice, &rput("k", "same", b"first"));
    assert_eq!(
        code_of(alice.call(&rput("k", "same", b"second"))),
        Some(ErrorCode::Conflict)
    );
    // Another user with the same id: still a duplicate (ids are unique per feed).
    assert_eq!(
        code_of(root.call(&rput("other", "same", b"third"))),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        alice.call(&Command::Rsize { kind: None }).expect("call"),
        (Reply::Count(1))
    );
    let stored = record(&mut alice, RecordSelector::Id(b"same".to_vec()));
    assert_eq!(stored.body(), b"first");
    assert_eq!(
        code_of(alice.call(&Command::Rget(RecordSelector::Seq(2)))),
        Some(ErrorCode::NotFound)
    );
    // The next new id takes the next seq.
    assert_eq!(appended(&mut alice, &rput("k", "new", b"")).0, 2);
    assert_eq!(
        root.call(&Command::Rcheck { range: None }).expect("call"),
        (Reply::ChainOk { seq: 2 })
    );
    server.shutdown();
}

/// `rhead` is signed by the server key and names the last entry.
pub fn ledger_head_is_signed_and_current<R: Runtime>() {
    let fx = Fixture::new(42);
    let server = start::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    assert_eq!(
        code_of(alice.call(&Command::Rhead)),
        Some(ErrorCode::NotFound),
        "an empty ledger has no head"
    );
    let mut last = (0, [0; 32]);
    for i in 0..3 {
        last = appended(&mut alice, &rput("k", &format!("r{i}"), b""));
        let Reply::Head(signed) = alice.call(&Command::Rhead).expect("rhead") else {
            panic!("rhead gave another reply");
        };
        signed.verify().expect("the head signature verifies");
        assert_eq!(signed.head.origin, fx.identity.public_key());
        assert_eq!((signed.head.seq, signed.head.hash), last);
    }
    assert_eq!(record(&mut alice, RecordSelector::Seq(3)).hash(), last.1);
    server.shutdown();
}

/// Appends from several connections interleaved keep seq gapless and the chain verifiable.
pub fn ledger_seq_is_gapless<R: Runtime>() {
    let fx = Fixture::new(43);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let mut alice2 = logged_in::<R>(&server, &fx, "alice", "alice-password");
    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(appended(&mut alice, &rput("a", &format!("a{i}"), b"")).0);
        seqs.push(appended(&mut alice2, &rput("b", &format!("b{i}"), b"")).0);
        seqs.push(appended(&mut root, &rput("c", &format!("c{i}"), b"")).0);
    }
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
    assert_eq!(
        alice.call(&Command::Rsize { kind: None }).expect("call"),
        (Reply::Count(30))
    );
    let mut prev = vserv_core::ledger::ZERO_HASH;
    for seq in 1..=30 {
        let entry = record(&mut alice, RecordSelector::Seq(seq));
        assert_eq!(entry.prev(), &prev, "entry {seq} links to the one before");
        prev = entry.hash();
    }
    assert_eq!(
        root.call(&Command::Rcheck { range: None }).expect("call"),
        (Reply::ChainOk { seq: 30 })
    );
    server.shutdown();
}

/// Anonymous sessions may not touch the ledger; users may not run `rcheck`.
pub fn ledger_access_is_enforced<R: Runtime>() {
    let fx = Fixture::new(44);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    for cmd in [
        rput("k", "anon", b""),
        Command::Rsize { kind: None },
        Command::Rhead,
        Command::Rabs { pos: 1 },
        Command::Rlist {
            kind: None,
            range: SeqRange { from: 1, to: 1 },
            limit: None,
        },
    ] {
        assert_eq!(
            code_of(anonymous.call(&cmd)),
            Some(ErrorCode::Forbidden),
            "anonymous {}",
            cmd.name()
        );
    }
    assert_eq!(
        code_of(alice.call(&Command::Rcheck { range: None })),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        alice.call(&Command::Rsize { kind: None }).expect("call"),
        (Reply::Count(0))
    );
    assert_eq!(
        root.call(&Command::Rcheck { range: None }).expect("call"),
        (Reply::ChainOk { seq: 0 })
    );
    server.shutdown();
}

/// `rabs` counts from either end and refuses 0; `rsize KIND` and `rcount` count one kind.
pub fn ledger_positions_and_kind_counts<R: Runtime>() {
    let fx = Fixture::new(45);
    let server = start::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    for (i, kind) in ["a", "b", "a", "a", "b"].into_iter().enumerate() {
        appended(&mut alice, &rput(kind, &format!("p{i}"), b""));
    }
    let at = |client: &mut R::Client, pos: i64| match client.call(&Command::Rabs { pos }) {
        Ok(Reply::Record(entry)) => Some(entry),
        Err(ClientError::Server(e)) if e.code == ErrorCode::NotFound => None,
        other => panic!("rabs {pos} gave {other:?}"),
    };
    for (pos, seq) in [(1, 1), (2, 2), (5, 5), (-1, 5), (-2, 4), (-5, 1)] {
        let entry = at(&mut alice, pos).expect("an entry at that position");
        assert_eq!(entry.seq(), seq, "rabs {pos}");
        assert_eq!(entry, record(&mut alice, RecordSelector::Seq(seq)));
    }
    for pos in [6, -6, i64::MAX, i64::MIN] {
        assert!(at(&mut alice, pos).is_none(), "rabs {pos}");
    }
    assert_eq!(
        code_of(alice.call(&Command::Rabs { pos: 0 })),
        Some(ErrorCode::BadArguments)
    );
    let count = |client: &mut R::Client, cmd: Command| match client.call(&cmd) {
        Ok(Reply::Count(n)) => n,
        other => panic!("{} gave {other:?}", cmd.name()),
    };
    let rsize = |kind: Option<&str>| Command::Rsize {
        kind: kind.map(Into::into),
    };
    assert_eq!(count(&mut alice, rsize(None)), 5);
    assert_eq!(count(&mut alice, rsize(Some("a"))), 3);
    assert_eq!(count(&mut alice, rsize(Some("b"))), 2);
    assert_eq!(count(&mut alice, rsize(Some("zzz"))), 0);
    let rcount = |kind: &str, from, to| Command::Rcount {
        kind: kind.into(),
        range: SeqRange { from, to },
    };
    assert_eq!(count(&mut alice, rcount("a", 1, 5)), 3);
    assert_eq!(count(&mut alice, rcount("a", 1, u64::MAX)), 3);
    assert_eq!(count(&mut alice, rcount("a", 2, 3)), 1);
    assert_eq!(count(&mut alice, rcount("a", 3, 4)), 2);
    assert_eq!(count(&mut alice, rcount("b", 3, 100)), 1);
    assert_eq!(count(&mut alice, rcount("b", 6, 100)), 0);
    assert_eq!(count(&mut alice, rcount("zzz", 1, 5)), 0);
    // An empty ledger: rabs finds nothing, every count is 0.
    let empty = Fixture::new(46);
    let server2 = start::<R>(&empty);
    let (_root2, mut bob) = ledger_users::<R>(&server2, &empty);
    assert!(at(&mut bob, 1).is_none());
    assert!(at(&mut bob, -1).is_none());
    assert_eq!(count(&mut bob, rsize(Some("a"))), 0);
    assert_eq!(count(&mut bob, rcount("a", 1, 5)), 0);
    server2.shutdown();
    server.shutdown();
}

/// `rcount`, `rlist` and `rcheck` refuse reversed ranges and seq 0 before touching the
/// ledger.
pub fn ledger_reversed_ranges_are_refused<R: Runtime>() {
    let fx = Fixture::new(47);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    appended(&mut alice, &rput("k", "one", b""));
    for (from, to) in [(5, 4), (2, 1), (u64::MAX, 1), (0, 3)] {
        let range = SeqRange { from, to };
        let commands = [
            Command::Rcount {
                kind: "k".into(),
                range,
            },
            Command::Rlist {
                kind: None,
                range,
                limit: None,
            },
            Command::Rlist {
                kind: Some("k".into()),
                range,
                limit: Some(5),
            },
            Command::Rcheck { range: Some(range) },
        ];
        for cmd in commands {
            let client = if cmd.name() == "rcheck" {
                &mut root
            } else {
                &mut alice
            };
            match client.call(&cmd) {
                Err(ClientError::Server(e)) => {
                    assert_eq!(e.code, ErrorCode::BadArguments, "{cmd:?}");
                    if from != 0 {
                        assert!(e.message.contains("reversed range"), "{}", e.message);
                    }
                }
                other => panic!("{cmd:?} gave {other:?}"),
            }
        }
    }
    // The same ranges the right way round work.
    assert_eq!(
        root.call(&Command::Rcheck {
            range: Some(SeqRange { from: 1, to: 1 })
        })
        .expect("rcheck"),
        Reply::ChainOk { seq: 1 }
    );
    server.shutdown();
}

/// Pages of `rlist` by `client`: every page of `kind` over `from..=to`, following `next`.
fn all_pages<C: TestClient>(
    client: &mut C,
    kind: Option<&str>,
    from: u64,
    to: u64,
    limit: Option<u32>,
    mut between: impl FnMut(),
) -> Vec<Vec<vserv_core::ledger::Entry>> {
    let mut pages = Vec::new();
    let mut from = from;
    loop {
        let cmd = Command::Rlist {
            kind: kind.map(Into::into),
            range: SeqRange { from, to },
            limit,
        };
        let Reply::Page { entries, next } = client.call(&cmd).expect("rlist") else {
            panic!("rlist gave another reply");
        };
        pages.push(entries);
        match next {
            Some(next) => from = next,
            None => return pages,
        }
        between();
    }
}

/// Paging `rlist` by `next` while another client appends between pages: no entry is
/// skipped or repeated, and each is the entry `rget` returns for its seq; per kind and for
/// every kind (`*`).
pub fn ledger_rlist_pages_while_appending<R: Runtime>() {
    let fx = Fixture::new(48);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let kind_of = |i: u64| if i.is_multiple_of(3) { "x" } else { "y" };
    for i in 1..=10u64 {
        appended(&mut alice, &rput(kind_of(i), &format!("l{i}"), b"v=1\n"));
    }
    let writer = std::cell::RefCell::new((alice, 10u64));
    // Appends one entry between each of the first four pages.
    let append_some = || {
        let mut w = writer.borrow_mut();
        if w.1 < 14 {
            w.1 += 1;
            let i = w.1;
            let (seq, _) = appended(&mut w.0, &rput(kind_of(i), &format!("l{i}"), b"v=2\n"));
            assert_eq!(seq, i);
        }
    };
    let pages = all_pages(&mut root, None, 1, u64::MAX, Some(3), append_some);
    assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= 3));
    let all: Vec<_> = pages.into_iter().flatten().collect();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq()).collect();
    assert_eq!(seqs, (1..=14).collect::<Vec<u64>>(), "no skip, no repeat");
    for entry in &all {
        assert_eq!(entry, &record(&mut root, RecordSelector::Seq(entry.seq())));
    }
    assert!(all.iter().any(|e| e.kind() == "x") && all.iter().any(|e| e.kind() == "y"));

    // One kind, with appends of that kind and others between pages.
    let before = writer.borrow().1;
    let more = std::cell::Cell::new(0);
    let append_more = || {
        if more.get() < 6 {
            more.set(more.get() + 1);
            let mut w = writer.borrow_mut();
            w.1 += 1;
            let i = w.1;
            appended(&mut w.0, &rput(kind_of(i), &format!("l{i}"), b""));
        }
    };
    let pages = all_pages(&mut root, Some("x"), 2, u64::MAX, Some(1), append_more);
    let total = writer.borrow().1;
    assert!(total > before);
    let xs: Vec<u64> = pages.into_iter().flatten().map(|e| e.seq()).collect();
    let expected: Vec<u64> = (2..=total).filter(|i| kind_of(*i) == "x").collect();
    assert_eq!(xs, expected);
    // A bounded range, the default limit: one page.
    let pages = all_pages(&mut root, None, 4, 9, None, || {});
    assert_eq!(pages.len(), 1);
    let seqs: Vec<u64> = pages[0].iter().map(|e| e.seq()).collect();
    assert_eq!(seqs, (4..=9).collect::<Vec<u64>>());
    // Nothing in the range: one empty page, no next.
    let pages = all_pages(&mut root, Some("zzz"), 1, u64::MAX, None, || {});
    assert_eq!(pages, vec![Vec::new()]);
    server.shutdown();
}

/// Pages of maximum-size entries (longest author, kind, record id and body) hold one entry
/// each and still fit one record (the reply would otherwise be refused as too large).
pub fn ledger_rlist_large_entries_fit_one_record<R: Runtime>() {
    use vserv_core::ledger::{MAX_BODY, MAX_ENCODED_ENTRY, MAX_KIND, MAX_RECORD_ID};
    let fx = Fixture::new(49);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    let long_name = "u".repeat(32);
    root.call(&Command::Uadd {
        user: long_name.clone(),
        password: secret("long-name-password"),
    })
    .expect("uadd");
    let mut writer = logged_in::<R>(&server, &fx, &long_name, "long-name-password");
    let kind = "k".repeat(MAX_KIND);
    for i in 0..4u8 {
        let mut record_id = vec![i; MAX_RECORD_ID];
        record_id[0] = b'r';
        let body = if i == 2 {
            vec![i; 1]
        } else {
            vec![i; MAX_BODY]
        };
        appended(
            &mut writer,
            &Command::Rput {
                kind: kind.clone(),
                record_id,
                body,
            },
        );
    }
    for list_kind in [None, Some(kind.as_str())] {
        let pages = all_pages(&mut root, list_kind, 1, u64::MAX, Some(1000), || {});
        let sizes: Vec<Vec<usize>> = pages
            .iter()
            .map(|p| p.iter().map(|e| e.encoded_len()).collect())
            .collect();
        // Even the small entry (long author, kind and record id) leaves too little room
        // next to a maximum-size one: one entry per page.
        let small = MAX_ENCODED_ENTRY - MAX_BODY + 1;
        assert_eq!(
            sizes,
            vec![
                vec![MAX_ENCODED_ENTRY],
                vec![MAX_ENCODED_ENTRY],
                vec![small],
                vec![MAX_ENCODED_ENTRY],
            ],
            "{list_kind:?}"
        );
        let seqs: Vec<u64> = pages.iter().flatten().map(|e| e.seq()).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
    }
    server.shutdown();
}

// ----- files -----

/// A server for `fx` keeping homes on disk in the fixture's directory.
fn start_with_files<R: Runtime>(fx: &Fixture) -> R::Server {
    let tree = vserv_service::files::DiskTree::open(
        fx.dir(),
        vserv_service::files::FilesConfig::default(),
    )
    .expect("file tree");
    let service = fx.service().with_files(Arc::new(tree));
    R::start(fx.identity.clone(), service, 64, Config::default())
}

fn done<C: TestClient>(client: &mut C, command: Command) {
    assert_eq!(client.call(&command).ok(), Some(Reply::Done), "{command:?}");
}

fn listing<C: TestClient>(
    client: &mut C,
    command: Command,
) -> (Vec<vserv_core::commands::DirEntry>, Option<String>) {
    match client.call(&command) {
        Ok(Reply::Listing { entries, next }) => (entries, next),
        other => panic!("{command:?} gave {other:?}"),
    }
}

fn page(dir: Option<&str>, from: Option<&str>, limit: Option<u32>) -> ListPage {
    ListPage {
        dir: dir.map(Into::into),
        from: from.map(Into::into),
        limit,
    }
}

/// A small upload (`fopen`, `fput`, `fdone`) and its download (`fget`, `fread`, `fclose`)
/// over the protocol give identical bytes; a wrong hash is error 9 and changes nothing.
pub fn files_upload_download_round_trip<R: Runtime>() {
    use vserv_core::transfer::{
        FcloseArgs, FdoneArgs, FgetArgs, FileHasher, FopenArgs, FreadArgs, MAX_FPUT_DATA,
        MAX_FREAD_LEN,
    };
    let sha = |data: &[u8]| {
        let mut h = FileHasher::new();
        h.update(data);
        h.finish()
    };
    let fx = Fixture::new(61);
    let server = start_with_files::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    let data: Vec<u8> = (0..MAX_FPUT_DATA * 2 + 123)
        .map(|i| (i % 251) as u8)
        .collect();
    let upload = |c: &mut R::Client, claimed: [u8; 32]| {
        let open = match c.call(&Command::Fopen(FopenArgs {
            path: "up.bin".into(),
            size: data.len() as u64,
            resume: false,
        })) {
            Ok(Reply::Opened(o)) => o,
            other => panic!("fopen gave {other:?}"),
        };
        assert_eq!(open.offset, 0);
        for (i, chunk) in data.chunks(MAX_FPUT_DATA).enumerate() {
            let put = Command::Fput {
                id: open.id,
                offset: (i * MAX_FPUT_DATA) as u64,
                data: chunk.to_vec(),
            };
            assert_eq!(c.call(&put).ok(), Some(Reply::Done));
        }
        c.call(&Command::Fdone(FdoneArgs {
            id: open.id,
            sha256: claimed,
        }))
    };
    match upload(&mut alice, sha(&data)) {
        Ok(Reply::Uploaded(d)) => {
            assert_eq!(d.size, data.len() as u64);
            assert_eq!(d.sha256, sha(&data));
        }
        other => panic!("fdone gave {other:?}"),
    }
    // A wrong hash: integrity error, the file stays as it was.
    assert_eq!(
        code_of(upload(&mut alice, [0; 32])),
        Some(ErrorCode::Integrity)
    );
    let get = match alice.call(&Command::Fget(FgetArgs {
        path: "up.bin".into(),
    })) {
        Ok(Reply::Download(g)) => g,
        other => panic!("fget gave {other:?}"),
    };
    assert_eq!(get.size, data.len() as u64);
    assert_eq!(get.sha256, sha(&data));
    let mut back = Vec::new();
    while back.len() < data.len() {
        let len = (data.len() - back.len()).min(MAX_FREAD_LEN);
        let read = Command::Fread(FreadArgs {
            id: get.id,
            offset: back.len() as u64,
            len: u32::try_from(len).expect("chunk length"),
        });
        match alice.call(&read) {
            Ok(Reply::Data(d)) => back.extend(d.data),
            other => panic!("fread gave {other:?}"),
        }
    }
    assert!(back == data, "downloaded bytes differ");
    done(&mut alice, Command::Fclose(FcloseArgs { id: get.id }));
    assert_eq!(
        code_of(alice.call(&Command::Fclose(FcloseArgs { id: get.id }))),
        Some(ErrorCode::NotFound)
    );
    server.shutdown();
}

/// `mkdir`, `cd`, `pwd`, `ls`, `lsd`, `stat`, `mv`, `rmdir` and `del` over the protocol; the
/// errors are typed and the session goes on.
pub fn files_round_trip<R: Runtime>() {
    use vserv_core::commands::FileKind;
    let fx = Fixture::new(60);
    let server = start_with_files::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let cwd = |c: &mut R::Client, cmd: Command| c.call(&cmd).ok();
    assert_eq!(cwd(&mut alice, Command::Pwd), Some(Reply::Cwd("/".into())));
    done(
        &mut alice,
        Command::Mkdir {
            path: "docs".into(),
        },
    );
    done(
        &mut alice,
        Command::Mkdir {
            path: "docs/old".into(),
        },
    );
    assert_eq!(
        cwd(&mut alice, Command::Cd { dir: "docs".into() }),
        Some(Reply::Cwd("/docs".into()))
    );
    assert_eq!(
        cwd(&mut alice, Command::Pwd),
        Some(Reply::Cwd("/docs".into()))
    );
    // Files appear through the tree (uploads come later).
    std::fs::write(fx.dir().join("homes/alice/docs/a.txt"), b"hello").expect("write");
    let (entries, next) = listing(&mut alice, Command::Ls(ListPage::default()));
    assert_eq!(next, None);
    let shown: Vec<(&str, FileKind, u64)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(
        shown,
        vec![("a.txt", FileKind::File, 5), ("old", FileKind::Dir, 0)]
    );
    let (dirs, _) = listing(&mut alice, Command::Lsd(page(Some("/docs"), None, None)));
    assert_eq!(dirs.len(), 1);
    assert_eq!(dirs[0].name, "old");
    match alice.call(&Command::Stat {
        path: "a.txt".into(),
    }) {
        Ok(Reply::Stat(st)) => {
            assert_eq!((st.kind, st.size, st.sha256), (FileKind::File, 5, None));
            assert!(st.modified > 0);
        }
        other => panic!("stat gave {other:?}"),
    }
    done(
        &mut alice,
        Command::Mv {
            from: "a.txt".into(),
            to: "old/b.txt".into(),
        },
    );
    assert_eq!(
        code_of(alice.call(&Command::Rmdir { path: "old".into() })),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        code_of(alice.call(&Command::Mv {
            from: "/docs".into(),
            to: "old/inner".into()
        })),
        Some(ErrorCode::BadArguments),
        "a directory cannot move into itself"
    );
    assert_eq!(
        code_of(alice.call(&Command::Stat {
            path: "a.txt".into()
        })),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code_of(alice.call(&Command::Mkdir { path: "old".into() })),
        Some(ErrorCode::Conflict)
    );
    done(
        &mut alice,
        Command::Del {
            path: "old/b.txt".into(),
        },
    );
    done(&mut alice, Command::Rmdir { path: "old".into() });
    let (entries, _) = listing(&mut alice, Command::Ls(ListPage::default()));
    assert!(entries.is_empty());
    // Admins reach other homes as ~NAME; users do not.
    assert_eq!(
        cwd(
            &mut root,
            Command::Cd {
                dir: "~alice/docs".into()
            }
        ),
        Some(Reply::Cwd("~alice/docs".into()))
    );
    assert_eq!(
        code_of(alice.call(&Command::Ls(page(Some("~root"), None, None)))),
        Some(ErrorCode::Forbidden)
    );
    // A few escapes.
    for path in [
        "..",
        "../../etc",
        "a/../../x",
        "C:\\x",
        "con",
        "x\u{202E}y",
        ".vserv-x",
    ] {
        assert_eq!(
            code_of(alice.call(&Command::Mkdir { path: path.into() })),
            Some(ErrorCode::BadArguments),
            "{path:?}"
        );
    }
    assert_eq!(
        cwd(&mut alice, Command::Pwd),
        Some(Reply::Cwd("/docs".into()))
    );
    // Anonymous sessions get nothing.
    let mut anon = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(
        code_of(anon.call(&Command::Pwd)),
        Some(ErrorCode::Forbidden)
    );
    server.shutdown();
}

/// A directory too big for one record pages by name: every entry exactly once, in order,
/// each page within the record limit; LIMIT bounds the pages.
pub fn files_listing_pages<R: Runtime>() {
    let fx = Fixture::new(61);
    let server = start_with_files::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    done(&mut alice, Command::Mkdir { path: "big".into() });
    // 150 long names: about 40 KB of listing, more than one record holds.
    let names: Vec<String> = (0..150)
        .map(|i| format!("{i:03}-{}", "n".repeat(250)))
        .collect();
    for name in &names {
        std::fs::write(fx.dir().join("homes/alice/big").join(name), b"x").expect("write");
    }
    for limit in [None, Some(7), Some(1000)] {
        let mut from: Option<String> = None;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (entries, next) = listing(
                &mut alice,
                Command::Ls(page(Some("big"), from.as_deref(), limit)),
            );
            pages += 1;
            assert!(!entries.is_empty());
            if let Some(l) = limit {
                assert!(entries.len() <= l as usize);
            }
            seen.extend(entries.into_iter().map(|e| e.name));
            match next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, names, "limit {limit:?}");
        assert!(pages >= 3, "limit {limit:?}: {pages} pages");
    }
    // `lsd` of a directory of files: one empty page.
    let (dirs, next) = listing(&mut alice, Command::Lsd(page(Some("big"), None, None)));
    assert!(dirs.is_empty() && next.is_none());
    server.shutdown();
}

/// Instantiates every case of the suite for a [`Runtime`] type.
#[macro_export]
macro_rules! suite {
    ($rt:ty) => {
        $crate::suite!(@cases $rt; every_command_works, errors_are_typed_and_not_fatal,
            tofu_records_then_recognises, changed_key_is_refused, pinned_key,
            bad_input_does_not_hurt_others, many_clients, connection_limit_refuses_busy,
            anonymous_sessions_end_after_the_login_grace,
            unauthenticated_sessions_are_capped_per_address,
            accounts_first_admin_then_users, permission_matrix, failed_logins_close_the_connection,
            last_admin_is_protected, key_login, bad_user_names_are_refused,
            disabled_user_loses_access_at_once, password_changes,
            deleted_account_sessions_end_and_homes_are_archived,
            login_backoff_outlasts_the_connection, tout_within_bounds, ledger_put_then_get,
            ledger_duplicate_record_id_is_refused, ledger_head_is_signed_and_current,
            ledger_seq_is_gapless, ledger_access_is_enforced, ledger_positions_and_kind_counts,
            ledger_reversed_ranges_are_refused, ledger_rlist_pages_while_appending,
            ledger_rlist_large_entries_fit_one_record, files_round_trip, files_listing_pages,
            files_upload_download_round_trip);
    };
    (@cases $rt:ty; $($case:ident),*) => {
        $(#[test] fn $case() { $crate::$case::<$rt>(); })*
    };
}
