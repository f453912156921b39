//! The integration suite over real loopback sockets with the blocking runtime.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use vserv_blocking::{Client, Server, ServerHandle, ServerOptions};
use vserv_core::commands::{Command, Reply};
use vserv_core::{Config, ServerIdentity};
use vserv_service::Service;
use vserv_service::client::{ClientError, ClientOptions};
use vserv_store::trust::TrustDecision;
use vserv_tests::{Runtime, TestClient, TestServer};

struct Blocking;
struct BlockingServer(ServerHandle);
struct BlockingClient(Client);

impl Runtime for Blocking {
    type Server = BlockingServer;
    type Client = BlockingClient;
    fn start(
        identity: Arc<ServerIdentity>,
        service: Service,
        max_connections: usize,
        config: Config,
    ) -> BlockingServer {
        let options = ServerOptions {
            max_connections,
            config,
        };
        BlockingServer(
            Server::bind("127.0.0.1:0", identity, service, options)
                .expect("bind")
                .spawn()
                .expect("spawn"),
        )
    }
    fn connect(
        server: &BlockingServer,
        options: &ClientOptions,
    ) -> Result<BlockingClient, ClientError> {
        Client::connect(&server.address(), options).map(BlockingClient)
    }
}

impl TestServer for BlockingServer {
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

impl TestClient for BlockingClient {
    fn call(&mut self, command: &Command) -> Result<Reply, ClientError> {
        self.0.call(command)
    }
    fn trust(&self) -> Option<TrustDecision> {
        self.0.session().trust().cloned()
    }
    fn session_id(&self) -> Option<[u8; 32]> {
        self.0.session().session_id()
    }
    fn quit(self) -> Result<(), ClientError> {
        self.0.quit()
    }
    fn poll_notices(
        &mut self,
        max_wait: std::time::Duration,
    ) -> Result<Vec<vserv_core::commands::Notice>, ClientError> {
        self.0.poll_notices(max_wait)
    }
}

impl vserv_tests::cases::udp::UdpRuntime for Blocking {
    type Udp = vserv_tests::cases::udp::SocketPeer<vserv_blocking::UdpHandle>;
    fn start_udp(service: Service) -> Self::Udp {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let pool = Arc::new(vserv_blocking::WorkPool::default());
        let handle = vserv_blocking::spawn_udp(socket, service, pool).expect("spawn");
        vserv_tests::cases::udp::SocketPeer::new(handle.local_addr(), handle)
    }
}

vserv_tests::suite!(Blocking);

#[test]
fn the_accept_loop_refuses_beyond_the_connection_rate() {
    vserv_tests::sockets::the_accept_loop_refuses_beyond_the_connection_rate::<Blocking>();
}

/// Reads one frame (`len:u32be | body`) and returns its body.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("frame length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("frame body");
    body
}

/// protocol.md §10 over a real socket: a client whose ClientFinished carries a wrong MAC (in
/// a record that authenticates under `client_hs`) gets one Close(1, "authentication failed")
/// under the server's handshake keys, then the end of the stream; the server goes on serving.
#[test]
fn a_wrong_client_finished_gets_an_authenticated_close_over_tcp() {
    use rand::SeedableRng;
    use vserv_core::secure::RecordKeys;
    use vserv_core::secure::keys::{self, Transcript};
    use vserv_core::wire::{
        self, CONTENT_CLIENT_FINISHED, CONTENT_CLOSE, CONTENT_SERVER_AUTH, ClientHello, ServerHello,
    };
    use vserv_core::{Close, CloseCode};

    let fx = vserv_tests::Fixture::new(31);
    let server = Blocking::start(fx.identity.clone(), fx.service(), 8, Config::default());
    let mut s = TcpStream::connect(server.address()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");

    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let ephemeral = keys::random_scalar(&mut rng);
    let mut hello = Vec::new();
    ClientHello {
        version: wire::PROTOCOL_VERSION,
        random: [7; 32],
        ephemeral: keys::public_point(&ephemeral),
    }
    .encode(&mut hello);
    let mut out = Vec::new();
    wire::frame::put_frame(&mut out, &hello);
    s.write_all(&out).expect("ClientHello");

    let server_hello = read_frame(&mut s);
    let mut server_auth = read_frame(&mut s);
    let sh = ServerHello::decode(&server_hello).expect("ServerHello");
    let shared = keys::ecdh(&ephemeral, &sh.ephemeral).expect("ecdh");
    let prk = keys::extract(&shared);
    let mut transcript = Transcript::default();
    transcript.update(&hello);
    transcript.update(&server_hello);
    let th1 = transcript.hash();
    let client_hs = keys::expand(&prk, keys::LABEL_CLIENT_HS, &th1);
    let server_hs = keys::expand(&prk, keys::LABEL_SERVER_HS, &th1);
    let mut from_server = RecordKeys::from_secret(server_hs);
    let (content_type, _) = from_server
        .open(&mut server_auth)
        .expect("ServerAuth opens");
    assert_eq!(content_type, CONTENT_SERVER_AUTH);

    // A ClientFinished record that authenticates, carrying a wrong MAC.
    let mut forged = Vec::new();
    RecordKeys::from_secret(client_hs)
        .seal(CONTENT_CLIENT_FINISHED, &[0x5a; 32], [9; 16], &mut forged)
        .expect("seal");
    s.write_all(&forged).expect("ClientFinished");

    let mut close = read_frame(&mut s);
    let (content_type, payload) = from_server.open(&mut close).expect("Close opens");
    assert_eq!(content_type, CONTENT_CLOSE);
    assert_eq!(
        Close::decode(payload),
        Ok(Close {
            code: CloseCode::ProtocolError,
            reason: "authentication failed".to_owned(),
        })
    );
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("end of stream");
    assert!(rest.is_empty(), "nothing after the Close: {rest:?}");

    // The server still serves others.
    let mut client = Blocking::connect(&server, &fx.options()).expect("honest client");
    assert!(matches!(
        client.0.call(&Command::Ping { payload: b"x".to_vec() }),
        Ok(Reply::Pong(p)) if p == b"x"
    ));
    server.0.shutdown();
}
