//! The integration suite over real loopback sockets with the smol runtime.

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use vserv_core::commands::{Command, Reply};
use vserv_core::{Config, ServerIdentity};
use vserv_service::Service;
use vserv_service::client::{ClientError, ClientOptions};
use vserv_smol::{Client, Server, ServerHandle, ServerOptions};
use vserv_store::trust::TrustDecision;
use vserv_tests::{Runtime, TestClient, TestServer};

struct Smol;
struct SmolServer(ServerHandle);
struct SmolClient(Client);

impl Runtime for Smol {
    type Server = SmolServer;
    type Client = SmolClient;
    fn start(
        identity: Arc<ServerIdentity>,
        service: Service,
        max_connections: usize,
        config: Config,
    ) -> SmolServer {
        let options = ServerOptions {
            max_connections,
            config,
        };
        SmolServer(
            Server::bind("127.0.0.1:0", identity, service, options)
                .expect("bind")
                .spawn()
                .expect("spawn"),
        )
    }
    fn connect(server: &SmolServer, options: &ClientOptions) -> Result<SmolClient, ClientError> {
        vserv_smol::block_on(Client::connect(&server.address(), options)).map(SmolClient)
    }
}

impl TestServer for SmolServer {
    fn address(&self) -> String {
        self.0.local_addr().to_string()
    }
    fn raw_exchange(&self, bytes: &[u8]) -> Vec<u8> {
        vserv_tests::sockets::raw_exchange(&self.address(), bytes)
    }
    fn shutdown(self) {
        self.0.shutdown()
    }
}

impl TestClient for SmolClient {
    fn call(&mut self, command: &Command) -> Result<Reply, ClientError> {
        vserv_smol::block_on(self.0.call(command))
    }
    fn trust(&self) -> Option<TrustDecision> {
        self.0.session().trust().cloned()
    }
    fn session_id(&self) -> Option<[u8; 32]> {
        self.0.session().session_id()
    }
    fn quit(self) -> Result<(), ClientError> {
        vserv_smol::block_on(self.0.quit())
    }
    fn poll_notices(
        &mut self,
        max_wait: std::time::Duration,
    ) -> Result<Vec<vserv_core::commands::Notice>, ClientError> {
        vserv_smol::block_on(self.0.poll_notices(max_wait))
    }
}

impl vserv_tests::cases::udp::UdpRuntime for Smol {
    type Udp = vserv_tests::cases::udp::SocketPeer<vserv_smol::UdpHandle>;
    fn start_udp(service: Service) -> Self::Udp {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let handle = vserv_smol::spawn_udp(socket, service).expect("spawn");
        vserv_tests::cases::udp::SocketPeer::new(handle.local_addr(), handle)
    }
}

vserv_tests::suite!(Smol);

#[test]
fn the_accept_loop_refuses_beyond_the_connection_rate() {
    vserv_tests::sockets::the_accept_loop_refuses_beyond_the_connection_rate::<Smol>();
}

/// Starts a smol server for `fx` directly (for the smol-specific cases below).
fn start_with(fx: &vserv_tests::Fixture, max_connections: usize, config: Config) -> ServerHandle {
    let options = ServerOptions {
        max_connections,
        config,
    };
    Server::bind("127.0.0.1:0", fx.identity.clone(), fx.service(), options)
        .expect("bind")
        .spawn()
        .expect("spawn")
}

/// Waits up to 2 s for the server to report `n` active connections.
fn wait_active(server: &ServerHandle, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while server.active_connections() != n && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.active_connections(), n);
}

/// Shutdown ends live sessions with an authenticated `Shutdown` close and counts them out.
#[test]
fn shutdown_closes_sessions_with_shutdown_code() {
    let fx = vserv_tests::Fixture::new(20);
    let server = start_with(&fx, 8, Config::default());
    let addr = server.local_addr().to_string();
    let mut client = vserv_smol::block_on(Client::connect(&addr, &fx.options())).expect("connect");
    wait_active(&server, 1);
    server.shutdown();
    match vserv_smol::block_on(client.call(&Command::Ping { payload: vec![1] })) {
        Err(ClientError::ClosedByServer {
            code: vserv_core::CloseCode::Shutdown,
            ..
        }) => {}
        other => panic!("expected a Shutdown close, got {other:?}"),
    }
    assert!(TcpStream::connect(&addr).is_err(), "still listening");
}

/// Dropping the handle stops the server as well.
#[test]
fn drop_stops_the_server() {
    let fx = vserv_tests::Fixture::new(21);
    let server = start_with(&fx, 8, Config::default());
    let addr = server.local_addr().to_string();
    let _client = vserv_smol::block_on(Client::connect(&addr, &fx.options())).expect("connect");
    drop(server);
    assert!(TcpStream::connect(&addr).is_err(), "still listening");
}

/// A peer that never completes the handshake is dropped at the handshake deadline, and the
/// slot is given back.
#[test]
fn handshake_timeout_frees_the_slot() {
    let fx = vserv_tests::Fixture::new(22);
    let config = Config {
        handshake_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let server = start_with(&fx, 1, config);
    let addr = server.local_addr().to_string();
    let started = std::time::Instant::now();
    let mut silent = TcpStream::connect(&addr).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut out = Vec::new();
    let _ = silent.read_to_end(&mut out);
    assert!(started.elapsed() < Duration::from_secs(3), "not timed out");
    assert!(out.is_empty(), "sent {} bytes to a silent peer", out.len());
    wait_active(&server, 0);
    let client = vserv_smol::block_on(Client::connect(&addr, &fx.options())).expect("connect");
    vserv_smol::block_on(client.quit()).expect("quit");
    wait_active(&server, 0);
    server.shutdown();
}

/// The client notices a server that goes silent (idle timeout) instead of hanging.
#[test]
fn client_times_out_on_a_silent_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let fx = vserv_tests::Fixture::new(23);
    let mut options = fx.options();
    options.config.handshake_timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let result = vserv_smol::block_on(Client::connect(&addr, &options));
    assert!(
        matches!(
            result,
            Err(ClientError::Protocol(vserv_core::Error::HandshakeTimeout))
        ),
        "{:?}",
        result.err()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}
