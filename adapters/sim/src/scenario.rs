//! Ready-made scenarios: one server, several scripted clients, random workloads.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use vserv_core::commands::Command;
use vserv_core::{Config, ServerIdentity};

use crate::link::LinkSpec;
use crate::world::{ClientSpec, EndpointId, Finish, RunEnd, ServerSpec, SimError, World};

/// One server and `clients` clients, each running a random script over its own link.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Number of clients.
    pub clients: usize,
    /// Each client's script has 0..=`max_requests` commands.
    pub max_requests: usize,
    /// The link of every client.
    pub link: LinkSpec,
    /// Server connection tunables.
    pub server_config: Config,
    /// Client connection tunables.
    pub client_config: Config,
    /// Requests in flight per client: 1..=`max_pipeline`, chosen per client.
    pub max_pipeline: usize,
    /// The server's connection limit.
    pub max_connections: usize,
    /// The run stops when the virtual clock would pass this.
    pub time_limit: Duration,
}

impl Scenario {
    /// `clients` clients with up to `max_requests` requests each over `link`, with
    /// handshake/idle timeouts of 5 s/30 s.
    pub fn new(clients: usize, max_requests: usize, link: LinkSpec) -> Self {
        let config = Config {
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            ..Config::default()
        };
        Scenario {
            clients,
            max_requests,
            link,
            server_config: config.clone(),
            client_config: config,
            max_pipeline: 4,
            max_connections: 1024,
            time_limit: Duration::from_secs(3600),
        }
    }

    /// Builds the world for `seed` and runs it until nothing is left to happen. The world
    /// is returned for [`World::check`] and inspection, with the clients' ids.
    pub fn run(&self, seed: u64) -> Result<(World, Vec<EndpointId>, RunEnd), SimError> {
        let mut world = World::new(seed);
        let identity = Arc::new(ServerIdentity::generate(&mut world.fork_rng()));
        let service = world.service(&format!("sim-{seed}"), &identity)?;
        let server = world.add_server(ServerSpec {
            identity,
            service,
            max_connections: self.max_connections,
            config: self.server_config.clone(),
        });
        let mut clients = Vec::with_capacity(self.clients);
        for _ in 0..self.clients {
            let mut rng = world.fork_rng();
            let script = random_script(&mut rng, self.max_requests);
            let pipeline = rng.random_range(1..=self.max_pipeline.max(1));
            let finish = if rng.random_bool(0.5) {
                Finish::Quit
            } else {
                Finish::Close
            };
            let options = world.client_options(self.client_config.clone())?;
            let spec = ClientSpec {
                options,
                link: self.link.clone(),
                script,
                pipeline,
                finish,
            };
            clients.push(world.add_client(server, spec)?);
        }
        let end = world.run(self.time_limit);
        Ok((world, clients, end))
    }
}

/// A random script of 0..=`max` commands: mostly pings of assorted sizes, some of every
/// other command, some failing (`help nosuch`).
pub fn random_script(rng: &mut StdRng, max: usize) -> Vec<Command> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| random_command(rng)).collect()
}

/// One random command other than `quit`.
pub fn random_command(rng: &mut StdRng) -> Command {
    match rng.random_range(0..10u8) {
        0 => Command::Hello,
        1 => Command::Ver,
        2 => Command::Id,
        3 => Command::Help { topic: None },
        4 => Command::Help {
            topic: Some(
                if rng.random_bool(0.5) {
                    "ping"
                } else {
                    "nosuch"
                }
                .into(),
            ),
        },
        5 => Command::Ping {
            payload: random_bytes(rng, 16000),
        },
        _ => Command::Ping {
            payload: random_bytes(rng, 300),
        },
    }
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| rng.random()).collect()
}
