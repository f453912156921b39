//! The integration suite every runtime must pass. A runtime implements [`Runtime`]; the
//! [`suite!`] macro instantiates every case for it as ordinary `#[test]`s.
//!
//! Real runtimes (blocking, smol) run over loopback sockets on 127.0.0.1 port 0; the sim
//! runtime runs the same cases in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vserv_core::commands::{Command, Reply};
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

/// The service describing `identity`.
pub fn service(identity: &ServerIdentity) -> Service {
    Service::new(ServiceInfo {
        name: "test-server".into(),
        fingerprint: identity.public_key().fingerprint(),
    })
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
    let server = start::<R>(&fx);
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

/// Instantiates every case of the suite for a [`Runtime`] type.
#[macro_export]
macro_rules! suite {
    ($rt:ty) => {
        $crate::suite!(@cases $rt; every_command_works, errors_are_typed_and_not_fatal,
            tofu_records_then_recognises, changed_key_is_refused, pinned_key,
            bad_input_does_not_hurt_others, many_clients, connection_limit_refuses_busy);
    };
    (@cases $rt:ty; $($case:ident),*) => {
        $(#[test] fn $case() { $crate::$case::<$rt>(); })*
    };
}
