//! Synchronous handles over a shared world, in the shape of a real runtime's server and
//! client: each call runs the world until the awaited thing happens. The integration suite's
//! sim runtime is built on these.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use vserv_core::commands::{Command, Reply};
use vserv_service::client::{ClientError, ClientOptions};
use vserv_store::trust::TrustDecision;

use crate::link::LinkSpec;
use crate::local_files::MemoryFiles;
use crate::world::{
    ClientSpec, EndpointId, Finish, RunEnd, ServerId, ServerSpec, Violations, World,
};

/// How long (virtual time) a handle waits for anything before giving up.
pub const WAIT: Duration = Duration::from_secs(24 * 3600);

/// How long (virtual time) [`SimServer::raw_exchange`] collects the server's answer.
pub const RAW_WAIT: Duration = Duration::from_secs(2);

pub(crate) fn busy() -> ClientError {
    ClientError::Io(std::io::Error::other(
        "the simulated world is already borrowed",
    ))
}

/// A server running in a world shared with its clients.
#[derive(Debug, Clone)]
pub struct SimServer {
    world: Rc<RefCell<World>>,
    id: ServerId,
    address: String,
    link: LinkSpec,
    files: MemoryFiles,
}

impl SimServer {
    /// Starts a server in a new world seeded with `seed`; clients connect over links built
    /// from `link`.
    pub fn start(seed: u64, spec: ServerSpec, link: LinkSpec) -> SimServer {
        let mut world = World::new(seed);
        let id = world.add_server(spec);
        let address = world.address(id).unwrap_or_default().to_owned();
        SimServer {
            world: Rc::new(RefCell::new(world)),
            id,
            address,
            link,
            files: MemoryFiles::new(),
        }
    }

    /// The shared world (to inspect its trace or invariants).
    pub fn world(&self) -> &Rc<RefCell<World>> {
        &self.world
    }

    /// The server's id in its world.
    pub fn id(&self) -> ServerId {
        self.id
    }

    /// The `HOST:PORT` clients use.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The local files of the clients' machine: every client of this server transfers
    /// from and to these (clones share them).
    pub fn client_files(&self) -> &MemoryFiles {
        &self.files
    }

    /// Connects a client and runs the world until its handshake completes or fails.
    pub fn connect(&self, options: &ClientOptions) -> Result<SimClient, ClientError> {
        self.connect_over(options, self.link.clone())
    }

    /// Connects a client over a link built from `link` instead of the server's (say, one
    /// that is cut after some bytes), and runs the world until its handshake completes or
    /// fails.
    pub fn connect_over(
        &self,
        options: &ClientOptions,
        link: LinkSpec,
    ) -> Result<SimClient, ClientError> {
        let mut world = self.world.try_borrow_mut().map_err(|_| busy())?;
        let spec = ClientSpec {
            options: options.clone(),
            link,
            script: Vec::new(),
            pipeline: 1,
            finish: Finish::Stay,
        };
        let id = match world.add_client(self.id, spec) {
            Ok(id) => id,
            Err(crate::SimError::Client(e)) => return Err(e),
            Err(e) => return Err(ClientError::Io(std::io::Error::other(e.to_string()))),
        };
        let limit = world.now().saturating_add(WAIT);
        world.run_until(limit, |w| w.is_connected(id) || w.is_closed(id));
        if world.is_connected(id) {
            Ok(SimClient {
                world: self.world.clone(),
                id,
                files: self.files.clone(),
                max_outstanding: options.config.max_outstanding,
            })
        } else if world.is_closed(id) {
            Err(world.take_client_error(id))
        } else {
            Err(ClientError::TimedOut)
        }
    }

    /// Sends `bytes` on a fresh connection, closes the write side, and returns everything
    /// the server sent back until it closed (or [`RAW_WAIT`] of virtual time passed).
    pub fn raw_exchange(&self, bytes: &[u8]) -> Vec<u8> {
        let Ok(mut world) = self.world.try_borrow_mut() else {
            return Vec::new();
        };
        let Ok(raw) = world.add_raw(self.id, self.link.clone(), bytes) else {
            return Vec::new();
        };
        let limit = world.now().saturating_add(RAW_WAIT);
        world.run_until(limit, |w| w.is_closed(raw));
        world
            .raw_received(raw)
            .map(|(b, _)| b.to_vec())
            .unwrap_or_default()
    }

    /// Stops the server (its connections close with `Shutdown`), runs the world until
    /// nothing is left to happen, and checks the world's invariants.
    pub fn shutdown(self) -> Result<(), Violations> {
        let Ok(mut world) = self.world.try_borrow_mut() else {
            return Err(Violations {
                seed: 0,
                violations: vec!["the simulated world is already borrowed".into()],
            });
        };
        world.shutdown(self.id);
        let limit = world.now().saturating_add(WAIT);
        if world.run(limit) == RunEnd::TimeLimit {
            let now = world.now();
            return Err(Violations {
                seed: world.seed(),
                violations: vec![format!("still busy at {now:?} after shutdown")],
            });
        }
        world.check()
    }
}

/// A connected client in a shared world.
#[derive(Debug)]
pub struct SimClient {
    pub(crate) world: Rc<RefCell<World>>,
    pub(crate) id: EndpointId,
    /// The local files its transfers read and write.
    pub(crate) files: MemoryFiles,
    /// Requests the connection keeps in flight at most.
    pub(crate) max_outstanding: usize,
}

impl SimClient {
    /// The client's endpoint in its world.
    pub fn id(&self) -> EndpointId {
        self.id
    }

    /// Runs one command: sends it and runs the world until its reply arrives.
    pub fn call(&mut self, command: &Command) -> Result<Reply, ClientError> {
        let mut world = self.world.try_borrow_mut().map_err(|_| busy())?;
        let id = self.id;
        let rid = world.send(id, command)?;
        let limit = world.now().saturating_add(WAIT);
        world.run_until(limit, |w| w.has_reply(id, rid) || w.is_closed(id));
        if let Some(reply) = world.take_reply(id, rid) {
            return reply;
        }
        if world.is_closed(id) {
            Err(world.take_client_error(id))
        } else {
            Err(ClientError::TimedOut)
        }
    }

    /// Runs the world (virtual time) for at most `max_wait` until the server pushed notices
    /// to this client, and takes them (empty when none came in time).
    pub fn poll_notices(
        &mut self,
        max_wait: std::time::Duration,
    ) -> Result<Vec<vserv_core::commands::Notice>, ClientError> {
        let mut world = self.world.try_borrow_mut().map_err(|_| busy())?;
        let id = self.id;
        let limit = world.now().saturating_add(max_wait);
        world.run_until(limit, |w| w.has_notices(id) || w.is_closed(id));
        let notices = world.take_notices(id);
        if notices.is_empty() && world.is_closed(id) {
            return Err(world.take_client_error(id));
        }
        Ok(notices)
    }

    /// How the server key was trusted.
    pub fn trust(&self) -> Option<TrustDecision> {
        self.world.try_borrow().ok()?.trust(self.id)
    }

    /// The session id, once connected.
    pub fn session_id(&self) -> Option<[u8; 32]> {
        self.world.try_borrow().ok()?.session_id(self.id)
    }

    /// `quit`, then runs the world until the server's close arrives.
    pub fn quit(mut self) -> Result<(), ClientError> {
        self.call(&Command::Quit)?;
        let mut world = self.world.try_borrow_mut().map_err(|_| busy())?;
        let id = self.id;
        let limit = world.now().saturating_add(WAIT);
        world.run_until(limit, |w| w.is_closed(id));
        if world.is_closed(id) {
            Ok(())
        } else {
            Err(ClientError::TimedOut)
        }
    }

    /// Closes the session from the client side (an authenticated close).
    pub fn close(self) {
        // Drop does it.
    }
}

impl Drop for SimClient {
    fn drop(&mut self) {
        if let Ok(mut world) = self.world.try_borrow_mut()
            && !world.is_closed(self.id)
        {
            world.close_client(self.id);
        }
    }
}
