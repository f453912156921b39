//! The integration suite in memory, on the deterministic simulator: every client talks to
//! its server over a re-chunking, delaying, occasionally stalling link on a virtual clock.
//!
//! The seed is `VSERV_SIM_SEED` if set, else a fixed one; it is printed (shown on failure)
//! and every server's shutdown checks the world's invariants.

use std::sync::Arc;

use vserv_core::commands::{Command, Reply};
use vserv_core::{Config, ServerIdentity};
use vserv_service::Service;
use vserv_service::client::{ClientError, ClientOptions};
use vserv_sim::{LinkConfig, LinkSpec, ServerSpec, SimClient, SimServer};
use vserv_store::trust::TrustDecision;
use vserv_tests::{Runtime, TestClient, TestServer};

/// The seed used when `VSERV_SIM_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5eed_0001;

struct Sim;
struct Server(SimServer);
struct Client(SimClient);

fn seed() -> u64 {
    let seed = vserv_sim::env_seed()
        .expect("VSERV_SIM_SEED")
        .unwrap_or(DEFAULT_SEED);
    eprintln!("sim world seed: VSERV_SIM_SEED={seed}");
    seed
}

impl Runtime for Sim {
    type Server = Server;
    type Client = Client;
    fn start(
        identity: Arc<ServerIdentity>,
        service: Service,
        max_connections: usize,
        config: Config,
    ) -> Server {
        let spec = ServerSpec {
            identity,
            service,
            max_connections,
            config,
        };
        let link = LinkSpec::symmetric(LinkConfig::benign(700));
        Server(SimServer::start(seed(), spec, link))
    }
    fn connect(server: &Server, options: &ClientOptions) -> Result<Client, ClientError> {
        server.0.connect(options).map(Client)
    }
}

impl TestServer for Server {
    fn address(&self) -> String {
        self.0.address()
    }
    fn raw_exchange(&self, bytes: &[u8]) -> Vec<u8> {
        self.0.raw_exchange(bytes)
    }
    fn shutdown(self) {
        if let Err(violations) = self.0.shutdown() {
            panic!("{violations}");
        }
    }
}

impl TestClient for Client {
    fn call(&mut self, command: &Command) -> Result<Reply, ClientError> {
        self.0.call(command)
    }
    fn trust(&self) -> Option<TrustDecision> {
        self.0.trust()
    }
    fn session_id(&self) -> Option<[u8; 32]> {
        self.0.session_id()
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

/// The client's end of the simulated datagram network (benign: no loss, no attacker).
struct SimUdp {
    net: vserv_sim::DatagramNet,
    client: std::net::SocketAddr,
}

impl vserv_tests::cases::udp::UdpRuntime for Sim {
    type Udp = SimUdp;
    fn start_udp(service: Service) -> SimUdp {
        let config = vserv_sim::NetConfig {
            delay_ms: 5,
            jitter_ms: 20,
            ..Default::default()
        };
        let net =
            vserv_sim::DatagramNet::new(seed(), service, config, vserv_service::unix_now_ms());
        SimUdp {
            net,
            client: "10.0.0.2:5000".parse().expect("address"),
        }
    }
}

impl vserv_tests::cases::udp::UdpPeer for SimUdp {
    fn exchange(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.net.send(self.client, bytes);
        self.net.run_for(1000);
        self.net.take_inbox(self.client)
    }
    fn now_secs(&self) -> u64 {
        self.net.now_ms() / 1000
    }
}

vserv_tests::suite!(Sim);
