//! The integration suite over real loopback sockets with the blocking runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
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
        raw_exchange(&self.address(), bytes)
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
}

/// Writes `bytes`, half-closes, and collects the answer until EOF or 2 s.
fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

vserv_tests::suite!(Blocking);
