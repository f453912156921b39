//! The world: servers, clients and links on one virtual clock, driven one event at a time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vserv_core::commands::{Command, Reply};
use vserv_core::wire::MAX_PAYLOAD;
use vserv_core::wire::RefusedLimit;
use vserv_core::{CloseCode, Config, Connection, ErrorCode, ErrorReply, Request, ServerIdentity};
use vserv_service::client::transfers::Requests;
use vserv_service::client::{ClientError, ClientOptions, ClientSession};
use vserv_service::limits::{BUSY_RETRY_SECS, busy_refusal};
use vserv_service::{Service, Session};
use vserv_store::trust::TrustDecision;

use crate::link::{Chunk, Dir, LinkConfig, LinkSpec};
use crate::work::{Hub, SimRunner, SimWake};

mod faults;

/// The longest virtual time between blocking work being handed over and its running: the
/// seed picks each item's delay up to this, so commits and completions interleave with
/// network events in every possible order.
const MAX_WORK_DELAY: Duration = Duration::from_millis(2);

/// Work handed over by a server's service or a client's transfers, due at a time the seed
/// chose.
struct Scheduled {
    at: Duration,
    seq: u64,
    /// Whose work it is, for the trace (`server 0`, `c3`).
    owner: String,
    /// The server whose process handed it over (`None` for a client's): a crashed
    /// process's work never runs.
    server: Option<usize>,
    work: vserv_service::work::Work,
}

/// Identifies a server of a [`World`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub usize);

/// Identifies a connection endpoint (client, server side or raw) of a [`World`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub usize);

/// Why setting something up in the world failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The scratch directory for known_servers could not be created.
    #[error("cannot create the scratch directory: {0}")]
    Io(#[from] std::io::Error),
    /// The client session could not start (known_servers unreadable).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No such server in this world.
    #[error("no server {0:?} in this world")]
    NoSuchServer(ServerId),
    /// No such client in this world.
    #[error("no client {0:?} in this world")]
    NoSuchClient(EndpointId),
    /// The server's node could not be assembled.
    #[error(transparent)]
    Node(#[from] vserv_service::NodeError),
}

/// How a server of the world is set up.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The identity the server proves.
    pub identity: Arc<ServerIdentity>,
    /// The command handler ([`Service::drive`] runs every server connection).
    pub service: Service,
    /// Connections served at once; more are refused with `Busy`.
    pub max_connections: usize,
    /// Per-connection tunables.
    pub config: Config,
}

/// What a client does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// After its script, send `quit` and wait for the server's close.
    Quit,
    /// After its script, close the connection itself.
    Close,
    /// Stay connected (the idle timeout ends it unless the test drives it on).
    Stay,
}

/// How a client of the world behaves.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Trust and connection tunables (the known_servers path, a pin, the config).
    pub options: ClientOptions,
    /// The link to the server.
    pub link: LinkSpec,
    /// Commands sent once connected, in order.
    pub script: Vec<Command>,
    /// At most this many requests in flight at once (at least 1).
    pub pipeline: usize,
    /// What happens after the script.
    pub finish: Finish,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Virtual time of the end.
    pub at: Duration,
    /// The first error, or `None` for an orderly close.
    pub error: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The awaited condition holds.
    Done,
    /// Nothing is left to happen: no delivery pending, no timer armed.
    Quiescent,
    /// The next event lies beyond the time limit; the clock was moved to the limit.
    TimeLimit,
    /// Too many steps without reaching the condition (livelock).
    StepLimit,
}

/// A client's tally, for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReport {
    /// Requests sent (including `quit`).
    pub sent: usize,
    /// Replies received and checked against the server's [`Service`].
    pub answered: usize,
    /// How the connection ended, if it has.
    pub outcome: Option<Outcome>,
    /// How the server key was trusted.
    pub trust: Option<TrustDecision>,
}

/// Invariant violations found by [`World::check`], with the seed to replay them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} invariant violation(s), replay with VSERV_SIM_SEED={seed}:\n  {}", violations.len(), violations.join("\n  "))]
pub struct Violations {
    /// The world's seed.
    pub seed: u64,
    /// One line per violation.
    pub violations: Vec<String>,
}

struct ServerNode {
    address: String,
    spec: ServerSpec,
    open: usize,
    stopped: bool,
}

struct Link {
    spec: LinkSpec,
    /// The server this link connects to.
    server: usize,
    /// The server whose replication dial made this link (`None` for a client's).
    dialer: Option<usize>,
    client_end: usize,
    server_end: usize,
    /// `dirs[TO_SERVER]`, `dirs[TO_CLIENT]`.
    dirs: [Dir; 2],
}

const TO_SERVER: usize = 0;
const TO_CLIENT: usize = 1;

struct ServerEnd {
    server: usize,
    conn: Connection,
    /// Login state of this connection (simulated peers are on loopback).
    session: Session,
    connected: bool,
    error: Option<String>,
}

struct ClientEnd {
    session: ClientSession,
    server: usize,
    script: VecDeque<Command>,
    pipeline: usize,
    finish: Finish,
    finishing: bool,
    inflight: BTreeMap<u32, Command>,
    replies: BTreeMap<u32, Result<Reply, ClientError>>,
    sent: usize,
    answered: usize,
    error: Option<ClientError>,
    error_text: Option<String>,
    connected: bool,
    trusted: bool,
    /// Raw requests (a transfer's) whose responses are awaited.
    raw_wanted: BTreeSet<u32>,
    /// Responses to raw requests, taken from the session as they arrive.
    raw_replies: BTreeMap<u32, Result<Vec<Vec<u8>>, ClientError>>,
}

impl ClientEnd {
    fn note_error(&mut self, e: ClientError) {
        if self.error_text.is_none() {
            self.error_text = Some(e.to_string());
        }
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// A client's session as a transfer scheduler's [`Requests`]: raw requests are remembered
/// so their responses are collected as they arrive.
struct RawRequests<'a> {
    client: &'a mut ClientEnd,
    /// Requests queued, for the trace.
    sent: Vec<(u32, String)>,
}

impl Requests for RawRequests<'_> {
    fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError> {
        let id = self.client.session.send_raw(name, args)?;
        self.client.raw_wanted.insert(id);
        self.sent.push((id, name.to_owned()));
        Ok(id)
    }

    fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
        if let Some(response) = self.client.raw_replies.remove(&id) {
            return Some(response);
        }
        let response = self.client.session.take_response(id)?;
        self.client.raw_wanted.remove(&id);
        Some(response)
    }
}

struct RawEnd {
    received: Vec<u8>,
}

enum Kind {
    Server(Box<ServerEnd>),
    Refuser,
    Client(Box<ClientEnd>),
    Raw(RawEnd),
}

struct Endpoint {
    name: String,
    link: usize,
    /// The link direction this endpoint writes to.
    out_dir: usize,
    reading: bool,
    outcome: Option<Outcome>,
    kind: Kind,
}

enum Input {
    Data(Vec<u8>),
    Eof,
    Reset,
    Timeout,
    Kick,
}

/// The simulated world: servers, clients, links, one virtual clock and one seeded RNG.
///
/// Everything random (connection RNGs, chunking, delays, tampering) is drawn from the world
/// RNG, seeded with the world seed, and events are processed in a total order (time, then
/// creation order), so a seed determines the whole run and its [`trace`](World::trace).
pub struct World {
    seed: u64,
    rng: StdRng,
    epoch: Instant,
    now: Duration,
    seq: u64,
    max_steps: u64,
    trace: Vec<String>,
    violations: Vec<String>,
    servers: Vec<ServerNode>,
    endpoints: Vec<Endpoint>,
    links: Vec<Link>,
    scratch: Option<tempfile::TempDir>,
    /// Where the servers' runners and the sessions' wakers leave work and wake-ups.
    hub: Arc<Hub>,
    /// The blocking work waiting for its due time.
    scheduled: Vec<Scheduled>,
    /// Labels of work the test holds back: due or not, it does not run until released.
    held: std::collections::BTreeSet<&'static str>,
    /// The links of the servers' replication dials.
    dial_link: LinkSpec,
    /// Pairs of servers (lower index first) that cannot reach each other.
    partitions: BTreeSet<(usize, usize)>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("servers", &self.servers.len())
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

impl World {
    /// An empty world at virtual time zero. The only clock read of the harness happens here
    /// (the epoch that virtual durations are added to).
    pub fn new(seed: u64) -> World {
        World {
            seed,
            rng: StdRng::seed_from_u64(seed),
            epoch: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            max_steps: 5_000_000,
            trace: Vec::new(),
            violations: Vec::new(),
            hub: Arc::new(Hub::default()),
            scheduled: Vec::new(),
            held: std::collections::BTreeSet::new(),
            dial_link: LinkSpec::symmetric(LinkConfig::benign(16 * 1024)),
            partitions: BTreeSet::new(),
            servers: Vec::new(),
            endpoints: Vec::new(),
            links: Vec::new(),
            scratch: None,
        }
    }

    /// The seed this world was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time since the world began.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The service of an in-memory node named `name` for `identity` (accounts, ledger and
    /// homes in memory, the cheapest argon2, no periodic partial-upload sweep), whose
    /// randomness comes from this world (so runs stay reproducible).
    pub fn service(
        &mut self,
        name: &str,
        identity: &Arc<ServerIdentity>,
    ) -> Result<Service, SimError> {
        // No periodic sweep: a world whose only events left are a server's hourly duties
        // would never be quiescent. A test that wants the sweep configures it
        // (`Service::with_partial_sweep`) and the world runs it at its virtual time.
        let settings = vserv_service::NodeSettings {
            partial_expiry: None,
            ..vserv_service::NodeSettings::insecure_fast(name)
        };
        let rng = Box::new(self.fork_rng());
        Ok(vserv_service::Node::in_memory(identity.clone(), settings, rng)?.service())
    }

    /// The virtual clock as an `Instant` (epoch + virtual time), as passed to connections.
    pub fn instant(&self) -> Instant {
        self.epoch.checked_add(self.now).unwrap_or(self.epoch)
    }

    /// Limits the number of events one `run` call processes before it reports
    /// [`RunEnd::StepLimit`].
    pub fn set_max_steps(&mut self, steps: u64) {
        self.max_steps = steps;
    }

    /// Every delivery, timeout and event so far, one line each.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// Invariant violations noticed so far (more are found by [`World::check`]).
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// A fresh RNG for something outside the world (an identity, a script), drawn from the
    /// world RNG.
    pub fn fork_rng(&mut self) -> StdRng {
        StdRng::seed_from_u64(self.rng.random())
    }

    /// Client options using a known_servers file in this world's scratch directory.
    pub fn client_options(&mut self, config: Config) -> Result<ClientOptions, SimError> {
        let dir = match &self.scratch {
            Some(dir) => dir.path().to_path_buf(),
            None => {
                let dir = tempfile::tempdir()?;
                let path = dir.path().to_path_buf();
                self.scratch = Some(dir);
                path
            }
        };
        let mut options = ClientOptions::new(dir.join("known_servers"));
        options.config = config;
        Ok(options)
    }

    /// The known_servers path used by [`World::client_options`], once it exists.
    pub fn known_servers_path(&self) -> Option<PathBuf> {
        self.scratch
            .as_ref()
            .map(|d| d.path().join("known_servers"))
    }

    fn log(&mut self, line: impl AsRef<str>) {
        let mut s = String::new();
        let _ = write!(
            s,
            "{:>5}.{:06} {}",
            self.now.as_secs(),
            self.now.subsec_micros(),
            line.as_ref()
        );
        self.trace.push(s);
    }

    fn violation(&mut self, what: String) {
        self.log(format!("VIOLATION {what}"));
        self.violations.push(what);
    }

    // ----- building -----

    /// Adds a server; its address is `sim-server-N:7117`.
    pub fn add_server(&mut self, mut spec: ServerSpec) -> ServerId {
        let id = self.servers.len();
        let address = Self::server_address(id);
        self.log(format!("server {address} up"));
        // The server's blocking work runs in the world's schedule.
        spec.service = spec.service.with_runner(Arc::new(SimRunner {
            server: id,
            hub: self.hub.clone(),
        }));
        self.servers.push(ServerNode {
            address,
            spec,
            open: 0,
            stopped: false,
        });
        ServerId(id)
    }

    /// The address the `n`th server added (from 0) gets: what a peer configures to dial it
    /// before it is added.
    pub fn server_address(n: usize) -> String {
        format!("sim-server-{n}:7117")
    }

    /// The `HOST:PORT` clients of `server` use as their known_servers key.
    pub fn address(&self, server: ServerId) -> Option<&str> {
        self.servers.get(server.0).map(|s| s.address.as_str())
    }

    /// Server connections of `server` currently open.
    pub fn open_connections(&self, server: ServerId) -> usize {
        self.servers.get(server.0).map_or(0, |s| s.open)
    }

    /// Connects a new client to `server` over a new link. The ClientHello is written at once;
    /// nothing is delivered until the world runs.
    pub fn add_client(
        &mut self,
        server: ServerId,
        spec: ClientSpec,
    ) -> Result<EndpointId, SimError> {
        let node = self
            .servers
            .get(server.0)
            .ok_or(SimError::NoSuchServer(server))?;
        let address = node.address.clone();
        let rng = Box::new(self.fork_rng());
        let session = ClientSession::new(&address, &spec.options, rng, self.instant())?;
        let client = ClientEnd {
            session,
            server: server.0,
            script: spec.script.into(),
            pipeline: spec.pipeline.max(1),
            finish: spec.finish,
            finishing: false,
            inflight: BTreeMap::new(),
            replies: BTreeMap::new(),
            sent: 0,
            answered: 0,
            error: None,
            error_text: None,
            connected: false,
            trusted: false,
            raw_wanted: BTreeSet::new(),
            raw_replies: BTreeMap::new(),
        };
        let id = self.connect(server.0, spec.link, Kind::Client(Box::new(client)), "c");
        Ok(EndpointId(id))
    }

    /// Opens a raw connection to `server`: `bytes` are written, then the write side is
    /// closed; whatever comes back is collected (see [`World::raw_received`]).
    pub fn add_raw(
        &mut self,
        server: ServerId,
        link: LinkSpec,
        bytes: &[u8],
    ) -> Result<EndpointId, SimError> {
        if server.0 >= self.servers.len() {
            return Err(SimError::NoSuchServer(server));
        }
        let id = self.connect(
            server.0,
            link,
            Kind::Raw(RawEnd {
                received: Vec::new(),
            }),
            "r",
        );
        self.write(id, bytes.to_vec());
        self.write_eof(id);
        Ok(EndpointId(id))
    }

    /// Bytes received so far by a raw endpoint, and whether it has seen EOF.
    pub fn raw_received(&self, raw: EndpointId) -> Option<(&[u8], bool)> {
        let ep = self.endpoints.get(raw.0)?;
        match &ep.kind {
            Kind::Raw(r) => Some((&r.received, ep.outcome.is_some())),
            _ => None,
        }
    }

    fn connect(&mut self, server: usize, spec: LinkSpec, kind: Kind, prefix: &str) -> usize {
        let link = self.links.len();
        let client_end = self.endpoints.len();
        let server_end = client_end + 1;
        let dialer = match &kind {
            Kind::Server(s) => Some(s.server),
            _ => None,
        };
        self.links.push(Link {
            dirs: [
                Dir::new(spec.to_server.clone()),
                Dir::new(spec.to_client.clone()),
            ],
            spec,
            server,
            dialer,
            client_end,
            server_end,
        });
        self.endpoints.push(Endpoint {
            name: format!("{prefix}{client_end}"),
            link,
            out_dir: TO_SERVER,
            reading: true,
            outcome: None,
            kind,
        });
        let now = self.instant();
        let peer: std::net::IpAddr = std::net::Ipv4Addr::LOCALHOST.into();
        // Like the real accept loops: the connection limit, then the address's
        // unauthenticated sessions (`Policy::max_unauthenticated_per_ip`).
        let (stopped, full, slot) = match self.servers.get(server) {
            Some(node) if node.stopped => (true, None, None),
            Some(node) if node.open >= node.spec.max_connections => {
                (false, Some(RefusedLimit::MaxConnections), None)
            }
            Some(node) => match node.spec.service.admit_unauthenticated(peer) {
                Some(slot) => (false, None, Some(slot)),
                None => (false, Some(RefusedLimit::Unauthenticated), None),
            },
            None => (true, None, None),
        };
        let server_kind = if stopped || full.is_some() {
            Kind::Refuser
        } else {
            let rng = Box::new(self.fork_rng());
            match self.servers.get_mut(server) {
                Some(node) => {
                    node.open += 1;
                    let waker = Arc::new(SimWake {
                        endpoint: server_end,
                        hub: self.hub.clone(),
                    });
                    let mut session = Session::with_waker(Some(peer), waker);
                    if let Some(slot) = slot {
                        session.hold_unauthenticated(slot);
                    }
                    Kind::Server(Box::new(ServerEnd {
                        server,
                        session,
                        conn: Connection::server(
                            node.spec.config.clone(),
                            node.spec.identity.clone(),
                            rng,
                            now,
                        ),
                        connected: false,
                        error: None,
                    }))
                }
                None => Kind::Refuser,
            }
        };
        self.endpoints.push(Endpoint {
            name: format!("s{server_end}"),
            link,
            out_dir: TO_CLIENT,
            reading: true,
            outcome: None,
            kind: server_kind,
        });
        let what = match (stopped, full) {
            (true, _) => "server stopped: reset",
            (false, Some(_)) => "server busy: refused",
            _ => "accepted",
        };
        self.log(format!(
            "link{link} {}{client_end} -> s{server_end} ({}): {what}",
            prefix,
            self.servers.get(server).map_or("?", |s| s.address.as_str())
        ));
        if stopped {
            self.reset_link(link);
            self.finish(server_end, None);
        } else if let Some(limit) = full {
            self.write(server_end, busy_refusal(limit, BUSY_RETRY_SECS));
            self.finish(server_end, None);
        }
        self.on_input(client_end, Input::Kick);
        client_end
    }

    // ----- links -----

    fn write(&mut self, ep: usize, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        let Some(e) = self.endpoints.get(ep) else {
            return;
        };
        let (link, dir, name) = (e.link, e.out_dir, e.name.clone());
        let now = self.now;
        let closed = self
            .links
            .get(link)
            .and_then(|l| l.dirs.get(dir))
            .is_none_or(|d| d.closed);
        if closed {
            self.log(format!(
                "{name} write {}B dropped (link closed)",
                data.len()
            ));
            return;
        }
        let World {
            links, rng, seq, ..
        } = self;
        let Some(d) = links.get_mut(link).and_then(|l| l.dirs.get_mut(dir)) else {
            return;
        };
        let report = d.write(rng, now, seq, &data);
        let mut line = format!(
            "{name} write {}B #{:08x} in {} chunk(s)",
            data.len(),
            fnv(&data),
            report.chunks
        );
        if !report.notes.is_empty() {
            let _ = write!(line, " [{}]", report.notes.join(", "));
        }
        self.log(line);
        if report.reset {
            self.reset_link(link);
        }
    }

    fn write_eof(&mut self, ep: usize) {
        let Some(e) = self.endpoints.get(ep) else {
            return;
        };
        let (link, dir) = (e.link, e.out_dir);
        let now = self.now;
        let World {
            links, rng, seq, ..
        } = self;
        if let Some(d) = links.get_mut(link).and_then(|l| l.dirs.get_mut(dir)) {
            d.write_eof(rng, now, seq);
        }
    }

    fn reset_link(&mut self, link: usize) {
        let now = self.now;
        if let Some(l) = self.links.get_mut(link) {
            for d in &mut l.dirs {
                d.reset(now, &mut self.seq);
            }
        }
        self.log(format!("link{link} reset"));
    }

    /// Stalls both directions of `endpoint`'s link forever, including data in flight.
    pub fn cut(&mut self, endpoint: EndpointId) {
        let Some(link) = self.endpoints.get(endpoint.0).map(|e| e.link) else {
            return;
        };
        if let Some(l) = self.links.get_mut(link) {
            for d in &mut l.dirs {
                d.cut_rest();
            }
        }
        self.log(format!("link{link} cut"));
    }

    /// Bytes written so far by `endpoint` into its link (what the link accepted).
    pub fn bytes_written(&self, endpoint: EndpointId) -> u64 {
        self.endpoints
            .get(endpoint.0)
            .and_then(|e| self.links.get(e.link)?.dirs.get(e.out_dir))
            .map_or(0, |d| d.written)
    }

    /// The server-side endpoint of `endpoint`'s link.
    pub fn peer(&self, endpoint: EndpointId) -> Option<EndpointId> {
        let e = self.endpoints.get(endpoint.0)?;
        let l = self.links.get(e.link)?;
        Some(EndpointId(if l.client_end == endpoint.0 {
            l.server_end
        } else {
            l.client_end
        }))
    }

    /// The links server dials to its peers use (benign by default).
    pub fn set_dial_links(&mut self, spec: LinkSpec) {
        self.dial_link = spec;
    }

    /// Makes the replication dials of server `si` that are due: each a new link from a
    /// client connection driven by the dialing server's session to the server at the dial's
    /// address (a dial to an address no server has fails at once).
    fn dial_due(&mut self, si: usize) {
        let now = self.instant();
        loop {
            let Some(node) = self.servers.get(si) else {
                return;
            };
            let service = node.spec.service.clone();
            let config = node.spec.config.clone();
            let Some(dial) = service.poll_dial(now) else {
                return;
            };
            let target = self.servers.iter().position(|s| s.address == dial.address);
            let Some(target) = target else {
                self.log(format!("dial {} failed: no such server", dial.address));
                service.dial_failed(&dial);
                continue;
            };
            if self.partitioned(si, target) {
                self.log(format!("dial {} failed: partitioned", dial.address));
                service.dial_failed(&dial);
                continue;
            }
            let dialer_end = self.endpoints.len();
            let waker = Arc::new(SimWake {
                endpoint: dialer_end,
                hub: self.hub.clone(),
            });
            let rng = Box::new(self.fork_rng());
            let end = ServerEnd {
                server: si,
                session: service.dial_session(&dial, waker),
                conn: Connection::client(config, rng, now),
                connected: false,
                error: None,
            };
            if let Some(node) = self.servers.get_mut(si) {
                node.open += 1;
            }
            let spec = self.dial_link.clone();
            let id = self.connect(target, spec, Kind::Server(Box::new(end)), "d");
            // The ClientHello is ready at once, as for a client.
            self.on_input(id, Input::Kick);
        }
    }

    // ----- running -----

    fn timer(&mut self, ep: usize) -> Option<Duration> {
        let e = self.endpoints.get_mut(ep)?;
        if !e.reading {
            return None;
        }
        let deadline = match &mut e.kind {
            Kind::Server(s) => match (s.conn.poll_timeout(), s.session.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            Kind::Client(c) => c.session.connection().poll_timeout(),
            Kind::Raw(_) | Kind::Refuser => None,
        }?;
        Some(deadline.saturating_duration_since(self.epoch).max(self.now))
    }

    /// The next event: (time, deliver-or-timer, tie breaker), and what it is.
    fn next_event(&mut self) -> Option<(Duration, Next)> {
        let mut best: Option<((Duration, u8, u64), Next)> = None;
        let mut consider = |key: (Duration, u8, u64), next: Next| {
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, next));
            }
        };
        for (li, l) in self.links.iter().enumerate() {
            for (di, d) in l.dirs.iter().enumerate() {
                if let Some(item) = d.front() {
                    consider((item.at, 0, item.seq), Next::Deliver(li, di));
                }
            }
        }
        for ep in 0..self.endpoints.len() {
            if let Some(at) = self.timer(ep) {
                consider((at, 1, ep as u64), Next::Timer(ep));
            }
        }
        for (i, w) in self.scheduled.iter().enumerate() {
            if !self.held.contains(w.work.label()) {
                consider((w.at.max(self.now), 2, w.seq), Next::Work(i));
            }
        }
        let now = self.instant();
        for (si, server) in self.servers.iter().enumerate() {
            if server.stopped {
                continue;
            }
            if let Some(due) = server.spec.service.next_duty(now) {
                let at = due.saturating_duration_since(self.epoch);
                consider((at.max(self.now), 3, si as u64), Next::Duty(si));
            }
        }
        best.map(|((at, _, _), next)| (at, next))
    }

    /// Processes the next event if it is due by `limit`. Returns `None` when nothing is left.
    fn step(&mut self, limit: Duration) -> Option<bool> {
        self.pump();
        let (at, next) = self.next_event()?;
        if at > limit || self.epoch.checked_add(at).is_none() {
            return Some(false);
        }
        self.now = self.now.max(at);
        match next {
            Next::Deliver(li, di) => {
                let Some(l) = self.links.get_mut(li) else {
                    return Some(true);
                };
                let to = if di == TO_SERVER {
                    l.server_end
                } else {
                    l.client_end
                };
                let Some(d) = l.dirs.get_mut(di) else {
                    return Some(true);
                };
                let Some(item) = d.queue.pop_front() else {
                    return Some(true);
                };
                let name = self
                    .endpoints
                    .get(to)
                    .map_or("?".into(), |e| e.name.clone());
                let reading = self.endpoints.get(to).is_some_and(|e| e.reading);
                let (input, what) = match item.chunk {
                    Chunk::Data(b) => {
                        d.delivered += b.len() as u64;
                        let what = format!("{}B #{:08x}", b.len(), fnv(&b));
                        (Input::Data(b), what)
                    }
                    Chunk::Eof => (Input::Eof, "EOF".to_owned()),
                    Chunk::Reset => (Input::Reset, "RESET".to_owned()),
                };
                if reading {
                    self.log(format!("link{li} -> {name}: {what}"));
                    self.on_input(to, input);
                } else {
                    self.log(format!("link{li} -> {name}: {what} dropped (closed)"));
                }
            }
            Next::Timer(ep) => {
                let name = self
                    .endpoints
                    .get(ep)
                    .map_or("?".into(), |e| e.name.clone());
                self.log(format!("{name} timer"));
                self.on_input(ep, Input::Timeout);
                // poll_timeout must be exact: firing at the deadline makes progress.
                if self.timer(ep).is_some_and(|t| t <= self.now) {
                    self.violation(format!(
                        "{name}: handle_timeout at its poll_timeout made no progress"
                    ));
                    self.finish(ep, Some("stuck timer".into()));
                }
            }
            Next::Duty(si) => {
                let now = self.instant();
                let wall =
                    std::time::UNIX_EPOCH + Duration::from_secs(SIM_WALL_CLOCK_START) + self.now;
                if let Some(server) = self.servers.get(si) {
                    let address = server.address.clone();
                    server.spec.service.run_due_duties(now, wall);
                    self.log(format!("{address} duties due"));
                }
                self.dial_due(si);
            }
            Next::Work(i) => {
                if i < self.scheduled.len() {
                    let w = self.scheduled.remove(i);
                    self.log(format!(
                        "{} work #{} ({}) runs",
                        w.owner,
                        w.seq,
                        w.work.label()
                    ));
                    w.work.run();
                }
            }
        }
        self.pump();
        Some(true)
    }

    /// Holds back the servers' blocking work labelled `label` (`"login"`, `"delivery"`,
    /// `"ledger commit"`, see `vserv_service::work::Work::label`) until
    /// [`World::release_work`]: a test's way to keep work "running" as long as it likes.
    pub fn hold_work(&mut self, label: &'static str) {
        self.log(format!("work labelled '{label}' held"));
        self.held.insert(label);
    }

    /// Lets held work of `label` run again (at once if due).
    pub fn release_work(&mut self, label: &'static str) {
        self.log(format!("work labelled '{label}' released"));
        self.held.remove(label);
    }

    /// How many work items wait (held or not yet due), by label.
    pub fn pending_work(&self, label: &str) -> usize {
        self.scheduled
            .iter()
            .filter(|w| w.work.label() == label)
            .count()
    }

    /// Gives `work` a due time drawn from the seed and adds it to the schedule.
    fn schedule(&mut self, owner: String, server: Option<usize>, work: vserv_service::work::Work) {
        let delay_us = self
            .rng
            .random_range(0..=u64::try_from(MAX_WORK_DELAY.as_micros()).unwrap_or(0));
        let at = self.now + Duration::from_micros(delay_us);
        self.seq += 1;
        let seq = self.seq;
        self.log(format!(
            "{owner} work #{seq} ({}) due at +{delay_us}us",
            work.label()
        ));
        self.scheduled.push(Scheduled {
            at,
            seq,
            owner,
            server,
            work,
        });
    }

    /// Takes in the work the servers handed over (each gets a due time from the seed) and
    /// drives the sessions that were woken, until neither is left.
    fn pump(&mut self) {
        loop {
            for (server, work) in self.hub.take_queued() {
                self.schedule(format!("server {server}"), Some(server), work);
            }
            let woken = self.hub.take_woken();
            if woken.is_empty() {
                return;
            }
            for ep in woken {
                self.on_input(ep, Input::Kick);
            }
        }
    }

    /// Runs until nothing is left to happen or the virtual clock would pass `limit` (absolute
    /// virtual time).
    pub fn run(&mut self, limit: Duration) -> RunEnd {
        self.run_until(limit, |_| false)
    }

    /// Runs until `done` holds (checked before every event), nothing is left to happen, or
    /// the virtual clock would pass `limit` (absolute virtual time).
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) -> RunEnd {
        let mut steps = 0u64;
        loop {
            if done(self) {
                return RunEnd::Done;
            }
            if steps >= self.max_steps {
                let steps = self.max_steps;
                self.violation(format!(
                    "no progress: {steps} events without the run ending"
                ));
                return RunEnd::StepLimit;
            }
            match self.step(limit) {
                None => return RunEnd::Quiescent,
                Some(false) => {
                    if self.epoch.checked_add(limit).is_some() {
                        self.now = self.now.max(limit);
                    }
                    return RunEnd::TimeLimit;
                }
                Some(true) => steps += 1,
            }
        }
    }

    // ----- endpoints -----

    fn on_input(&mut self, ep: usize, input: Input) {
        let now = self.instant();
        // The simulated wall clock: a fixed date plus virtual time, so runs stay reproducible.
        let wall_ms =
            SIM_WALL_CLOCK_START * 1000 + u64::try_from(self.now.as_millis()).unwrap_or(u64::MAX);
        let World {
            endpoints, servers, ..
        } = self;
        let Some(e) = endpoints.get_mut(ep) else {
            return;
        };
        if !e.reading {
            return;
        }
        let name = e.name.clone();
        let mut lines: Vec<String> = Vec::new();
        let mut violations: Vec<String> = Vec::new();
        let mut out = Vec::new();
        let mut end: Option<Option<String>> = None;
        let reset = matches!(input, Input::Reset);
        match &mut e.kind {
            Kind::Refuser => return,
            Kind::Raw(r) => match input {
                Input::Data(b) => r.received.extend_from_slice(&b),
                Input::Eof | Input::Reset => end = Some(None),
                Input::Timeout | Input::Kick => {}
            },
            Kind::Server(s) => {
                let result = match input {
                    Input::Data(b) => s.conn.handle_input(now, &b),
                    Input::Eof | Input::Reset => s.conn.handle_eof(now),
                    // The session's own timer (a replication link's) is taken by drive.
                    Input::Timeout if s.conn.poll_timeout().is_some_and(|t| t <= now) => {
                        s.conn.handle_timeout(now)
                    }
                    Input::Timeout | Input::Kick => Ok(()),
                };
                if let Err(err) = result {
                    lines.push(format!("{name} error: {err}"));
                    s.error.get_or_insert(err.to_string());
                }
                if let Some(node) = servers.get(s.server)
                    && let Err(err) =
                        node.spec
                            .service
                            .drive(&mut s.session, &mut s.conn, now, wall_ms)
                {
                    lines.push(format!("{name} service error: {err}"));
                    s.error.get_or_insert(format!("service: {err}"));
                    s.conn.close(CloseCode::ProtocolError, "internal error");
                }
                if !s.connected && s.conn.is_connected() {
                    s.connected = true;
                    lines.push(format!("{name} connected"));
                }
                s.conn.poll_transmit(&mut out);
                if s.conn.is_closed() {
                    end = Some(s.error.clone());
                }
            }
            Kind::Client(c) => {
                if reset {
                    c.note_error(ClientError::Io(std::io::Error::from(
                        std::io::ErrorKind::ConnectionReset,
                    )));
                }
                let conn = c.session.connection();
                let result = match input {
                    Input::Data(b) => conn.handle_input(now, &b),
                    Input::Eof | Input::Reset => conn.handle_eof(now),
                    Input::Timeout => conn.handle_timeout(now),
                    Input::Kick => Ok(()),
                };
                if let Err(err) = result {
                    lines.push(format!("{name} error: {err}"));
                    if let vserv_core::Error::UnknownRequestId(id) = err {
                        violations.push(format!(
                            "{name}: a response to request {id}, never sent: forged plaintext"
                        ));
                    }
                    c.note_error(err.into());
                }
                if let Err(err) = c.session.process(now) {
                    lines.push(format!("{name} error: {err}"));
                    c.note_error(err);
                }
                if !c.trusted
                    && let Some(t) = c.session.trust()
                {
                    c.trusted = true;
                    lines.push(format!("{name} trust {t:?}"));
                }
                if !c.connected && c.session.is_connected() {
                    c.connected = true;
                    lines.push(format!("{name} connected"));
                }
                let service = servers.get(c.server).map(|n| &n.spec.service);
                let ids: Vec<u32> = c.inflight.keys().copied().collect();
                for id in ids {
                    let Some(cmd) = c.inflight.get(&id).cloned() else {
                        continue;
                    };
                    let Some(reply) = c.session.take_reply(id, &cmd) else {
                        continue;
                    };
                    c.inflight.remove(&id);
                    c.answered += 1;
                    // Replies that depend on login state cannot be predicted from the request
                    // alone; the oracle checks the session-independent ones.
                    let ok = !session_independent(&cmd)
                        || service.is_some_and(|s| matches_oracle(s, id, &cmd, &reply));
                    lines.push(format!(
                        "{name} reply {id} ({}): {}",
                        cmd.name(),
                        if reply.is_ok() { "ok" } else { "error" }
                    ));
                    if !ok {
                        violations.push(format!(
                            "{name}: reply to request {id} ({}) is not what the server sent: {reply:?}",
                            cmd.name()
                        ));
                    }
                    c.replies.insert(id, reply);
                }
                let wanted: Vec<u32> = c.raw_wanted.iter().copied().collect();
                for id in wanted {
                    if let Some(response) = c.session.take_response(id) {
                        lines.push(format!(
                            "{name} raw reply {id}: {}",
                            if response.is_ok() { "ok" } else { "error" }
                        ));
                        c.raw_wanted.remove(&id);
                        c.raw_replies.insert(id, response);
                    }
                }
                if c.session.is_connected() {
                    while c.inflight.len() < c.pipeline {
                        let Some(cmd) = c.script.pop_front() else {
                            break;
                        };
                        match c.session.send(&cmd) {
                            Ok(id) => {
                                lines.push(format!("{name} request {id} ({})", cmd.name()));
                                c.inflight.insert(id, cmd);
                                c.sent += 1;
                            }
                            Err(err) => {
                                lines.push(format!("{name} send failed: {err}"));
                                c.note_error(err);
                                break;
                            }
                        }
                    }
                    if c.script.is_empty() && c.inflight.is_empty() && !c.finishing {
                        match c.finish {
                            Finish::Quit => {
                                c.finishing = true;
                                match c.session.send(&Command::Quit) {
                                    Ok(id) => {
                                        lines.push(format!("{name} request {id} (quit)"));
                                        c.inflight.insert(id, Command::Quit);
                                        c.sent += 1;
                                    }
                                    Err(err) => c.note_error(err),
                                }
                            }
                            Finish::Close => {
                                c.finishing = true;
                                lines.push(format!("{name} closing"));
                                c.session
                                    .connection()
                                    .close(CloseCode::Normal, "client done");
                            }
                            Finish::Stay => {}
                        }
                    }
                }
                c.session.connection().poll_transmit(&mut out);
                if c.session.is_closed() {
                    if c.error_text.is_none()
                        && let ClientError::ClosedByServer { code, reason } =
                            c.session.ended_error()
                        && !matches!(code, CloseCode::Normal | CloseCode::Shutdown)
                    {
                        let e = ClientError::ClosedByServer { code, reason };
                        c.error_text = Some(e.to_string());
                    }
                    end = Some(c.error_text.clone());
                }
            }
        }
        for line in lines {
            self.log(line);
        }
        for v in violations {
            self.violation(v);
        }
        if reset {
            // The socket is gone: nothing can be written any more.
            self.finish(ep, end.flatten().or(Some("connection reset".into())));
            return;
        }
        self.write(ep, out);
        if let Some(error) = end {
            self.finish(ep, error);
        }
    }

    /// The endpoint's connection ended: close its socket.
    fn finish(&mut self, ep: usize, error: Option<String>) {
        let now = self.now;
        let Some(e) = self.endpoints.get_mut(ep) else {
            return;
        };
        if !e.reading {
            return;
        }
        e.reading = false;
        let name = e.name.clone();
        if let Kind::Server(s) = &mut e.kind {
            s.session.release_unauthenticated();
            if let Some(node) = self.servers.get_mut(s.server) {
                node.open = node.open.saturating_sub(1);
            }
        }
        let is_conn = matches!(e.kind, Kind::Server(_) | Kind::Client(_));
        if is_conn {
            e.outcome = Some(Outcome {
                at: now,
                error: error.clone(),
            });
        } else {
            e.outcome = Some(Outcome {
                at: now,
                error: None,
            });
        }
        self.write_eof(ep);
        self.log(match error {
            Some(err) if is_conn => format!("{name} closed with error: {err}"),
            _ => format!("{name} closed"),
        });
    }

    // ----- client API (used by the suite's handles) -----

    fn client_mut(&mut self, client: EndpointId) -> Option<&mut ClientEnd> {
        match &mut self.endpoints.get_mut(client.0)?.kind {
            Kind::Client(c) => Some(c),
            _ => None,
        }
    }

    fn client_ref(&self, client: EndpointId) -> Option<&ClientEnd> {
        match &self.endpoints.get(client.0)?.kind {
            Kind::Client(c) => Some(c),
            _ => None,
        }
    }

    /// Sends `command` from `client` now; the reply is collected by [`World::take_reply`].
    pub fn send(&mut self, client: EndpointId, command: &Command) -> Result<u32, ClientError> {
        let name = self
            .endpoints
            .get(client.0)
            .map_or("?".into(), |e| e.name.clone());
        let c = self
            .client_mut(client)
            .ok_or(ClientError::ConnectionClosed)?;
        let id = c.session.send(command)?;
        c.inflight.insert(id, command.clone());
        c.sent += 1;
        self.log(format!("{name} request {id} ({})", command.name()));
        self.on_input(client.0, Input::Kick);
        Ok(id)
    }

    /// Lets `f` queue raw requests on `client`'s session and take their responses (a
    /// transfer scheduler's [`Requests`]), then writes what was queued. `None` if `client`
    /// is not a client of this world.
    pub(crate) fn client_requests<R>(
        &mut self,
        client: EndpointId,
        f: impl FnOnce(&mut dyn Requests) -> R,
    ) -> Option<R> {
        let name = self.endpoints.get(client.0)?.name.clone();
        let c = self.client_mut(client)?;
        let mut raw = RawRequests {
            client: c,
            sent: Vec::new(),
        };
        let result = f(&mut raw);
        let sent = raw.sent;
        for (id, what) in sent {
            self.log(format!("{name} raw request {id} ({what})"));
        }
        self.on_input(client.0, Input::Kick);
        Some(result)
    }

    /// Whether the response to raw request `id` of `client` has arrived.
    pub(crate) fn has_raw_reply(&self, client: EndpointId, id: u32) -> bool {
        self.client_ref(client)
            .is_some_and(|c| c.raw_replies.contains_key(&id))
    }

    /// Adds a client's local work (its transfers' file operations) to the schedule, due at
    /// a time the seed chooses, like a server's.
    pub(crate) fn schedule_client_work(
        &mut self,
        client: EndpointId,
        work: vserv_service::work::Work,
    ) {
        let owner = self
            .endpoints
            .get(client.0)
            .map_or_else(|| format!("client {}", client.0), |e| e.name.clone());
        self.schedule(owner, None, work);
    }

    /// Whether the reply to request `id` of `client` has arrived.
    pub fn has_reply(&self, client: EndpointId, id: u32) -> bool {
        self.client_ref(client)
            .is_some_and(|c| c.replies.contains_key(&id))
    }

    /// Takes the typed reply to request `id` of `client`, if it has arrived.
    pub fn take_reply(
        &mut self,
        client: EndpointId,
        id: u32,
    ) -> Option<Result<Reply, ClientError>> {
        self.client_mut(client)?.replies.remove(&id)
    }

    /// Whether the server pushed notices to `client` that were not taken yet.
    pub fn has_notices(&self, client: EndpointId) -> bool {
        self.client_ref(client)
            .is_some_and(|c| c.session.has_notices())
    }

    /// Takes the notices the server pushed to `client`, oldest first.
    pub fn take_notices(&mut self, client: EndpointId) -> Vec<vserv_core::commands::Notice> {
        self.client_mut(client)
            .map(|c| c.session.take_notices())
            .unwrap_or_default()
    }

    /// Whether `client` has finished its handshake (and is still open).
    pub fn is_connected(&self, client: EndpointId) -> bool {
        self.client_ref(client)
            .is_some_and(|c| c.session.is_connected())
    }

    /// Whether `endpoint`'s connection has ended.
    pub fn is_closed(&self, endpoint: EndpointId) -> bool {
        self.endpoints
            .get(endpoint.0)
            .is_none_or(|e| e.outcome.is_some())
    }

    /// How `endpoint`'s connection ended, if it has.
    pub fn outcome(&self, endpoint: EndpointId) -> Option<&Outcome> {
        self.endpoints.get(endpoint.0)?.outcome.as_ref()
    }

    /// The error that ended `client`'s session, as its blocking twin would report it: the
    /// first failure, or the server's close when the transport simply ended.
    pub fn take_client_error(&mut self, client: EndpointId) -> ClientError {
        let Some(c) = self.client_mut(client) else {
            return ClientError::ConnectionClosed;
        };
        match c.error.take() {
            Some(ClientError::Protocol(
                vserv_core::Error::UnexpectedEof | vserv_core::Error::Closed,
            ))
            | None => c.session.ended_error(),
            Some(e) => e,
        }
    }

    /// How `client` trusted the server key.
    pub fn trust(&self, client: EndpointId) -> Option<TrustDecision> {
        self.client_ref(client)?.session.trust().cloned()
    }

    /// `client`'s session id, once connected.
    pub fn session_id(&self, client: EndpointId) -> Option<[u8; 32]> {
        self.client_ref(client)?.session.session_id()
    }

    /// Closes `client`'s connection from the client side (an authenticated close).
    pub fn close_client(&mut self, client: EndpointId) {
        if let Some(c) = self.client_mut(client) {
            c.finishing = true;
            c.session
                .connection()
                .close(CloseCode::Normal, "client done");
        }
        self.on_input(client.0, Input::Kick);
    }

    /// A client's tally.
    pub fn client_report(&self, client: EndpointId) -> Option<ClientReport> {
        let c = self.client_ref(client)?;
        Some(ClientReport {
            sent: c.sent,
            answered: c.answered,
            outcome: self.outcome(client).cloned(),
            trust: c.session.trust().cloned(),
        })
    }

    /// Stops `server`: its open connections close with `Shutdown`; later connections are
    /// reset.
    pub fn shutdown(&mut self, server: ServerId) {
        let Some(node) = self.servers.get_mut(server.0) else {
            return;
        };
        node.stopped = true;
        let address = node.address.clone();
        self.log(format!("server {address} shutting down"));
        for ep in 0..self.endpoints.len() {
            if let Some(e) = self.endpoints.get_mut(ep)
                && e.reading
                && let Kind::Server(s) = &mut e.kind
                && s.server == server.0
            {
                s.conn.close(CloseCode::Shutdown, "server shutting down");
                self.on_input(ep, Input::Kick);
            }
        }
    }

    // ----- invariants -----

    /// Checks the invariants of a finished run: no violation was noticed while running (a
    /// reply that differs from the server's answer, a response to a request never sent, a
    /// stuck timer, a livelock); every connection has ended, closed or errored; and every
    /// scripted client on a benign link got all its requests answered correctly, with both
    /// ends closing cleanly.
    pub fn check(&self) -> Result<(), Violations> {
        let mut violations = self.violations.clone();
        for e in &self.endpoints {
            let state = match &e.kind {
                Kind::Server(s) => Some(s.conn.is_connected()),
                Kind::Client(c) => Some(c.session.is_connected()),
                _ => None,
            };
            if let Some(connected) = state
                && e.outcome.is_none()
            {
                violations.push(format!(
                    "{} never ended (connected: {connected}): the run hangs",
                    e.name
                ));
            }
        }
        for l in &self.links {
            if !l.spec.is_benign() {
                continue;
            }
            let (Some(ce), Some(se)) = (
                self.endpoints.get(l.client_end),
                self.endpoints.get(l.server_end),
            ) else {
                continue;
            };
            let Kind::Client(c) = &ce.kind else {
                continue;
            };
            // Stay clients are driven by the test; refused ones met a full server.
            if c.finish == Finish::Stay || matches!(se.kind, Kind::Refuser) {
                continue;
            }
            let pending = c.script.len() + c.inflight.len();
            if pending > 0 || !c.finishing {
                violations.push(format!(
                    "{}: benign link, but {pending} request(s) unanswered ({} answered)",
                    ce.name, c.answered
                ));
            }
            for e in [ce, se] {
                if let Some(Outcome {
                    error: Some(err), ..
                }) = &e.outcome
                {
                    violations.push(format!("{}: benign link, but ended with: {err}", e.name));
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Violations {
                seed: self.seed,
                violations,
            })
        }
    }

    /// When the adversary first altered bytes of `endpoint`'s link, per direction
    /// (to server, to client).
    pub fn tampered(&self, endpoint: EndpointId) -> (Option<Duration>, Option<Duration>) {
        self.endpoints
            .get(endpoint.0)
            .and_then(|e| self.links.get(e.link))
            .map_or((None, None), |l| {
                (l.dirs[TO_SERVER].tampered_at, l.dirs[TO_CLIENT].tampered_at)
            })
    }
}

enum Next {
    Deliver(usize, usize),
    Timer(usize),
    /// The scheduled work at this index.
    Work(usize),
    /// The timed duties of the server at this index (the partial-upload sweep).
    Duty(usize),
}

/// Whether the server's answer to `cmd` depends only on the request (not on who is logged in
/// or on stored accounts).
fn session_independent(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Hello
            | Command::Ver
            | Command::Id
            | Command::Help { .. }
            | Command::Ping { .. }
            | Command::Quit
    )
}

/// Unix time the simulated wall clock starts at (2023-11-14).
const SIM_WALL_CLOCK_START: u64 = 1_700_000_000;

/// Whether `reply` is what the server's service answers to request `id` = `cmd`. The sim's
/// scripts use only commands whose answer does not depend on the session (no logins), so
/// the answer of a fresh session is exactly the plaintext the server sent if it saw the
/// request the client sent.
fn matches_oracle(
    service: &Service,
    id: u32,
    cmd: &Command,
    reply: &Result<Reply, ClientError>,
) -> bool {
    let request = Request {
        id,
        name: cmd.name().to_owned(),
        args: cmd.args(),
    };
    let (response, _) = service.answer(
        &mut Session::new(None),
        &request,
        SIM_WALL_CLOCK_START * 1000,
    );
    let expected = if response.encoded_len() > MAX_PAYLOAD {
        Err(ErrorReply::new(
            ErrorCode::TooLarge,
            "reply too large for one record",
        ))
    } else {
        response.result
    };
    match (reply, expected) {
        (Ok(got), Ok(fields)) => Reply::from_fields(cmd, &fields).is_ok_and(|r| r == *got),
        (Err(ClientError::Server(got)), Err(want)) => *got == want,
        _ => false,
    }
}

/// FNV-1a, to name byte strings in the trace.
fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        let identity = Arc::new(ServerIdentity::generate(&mut StdRng::seed_from_u64(1)));
        World::new(1).service("oracle", &identity).unwrap()
    }

    #[test]
    fn the_oracle_accepts_the_true_reply_and_nothing_else() {
        let s = service();
        let ping = Command::Ping {
            payload: b"abc".to_vec(),
        };
        assert!(matches_oracle(
            &s,
            1,
            &ping,
            &Ok(Reply::Pong(b"abc".to_vec()))
        ));
        assert!(!matches_oracle(
            &s,
            1,
            &ping,
            &Ok(Reply::Pong(b"abd".to_vec()))
        ));
        assert!(!matches_oracle(&s, 1, &ping, &Err(ClientError::TimedOut)));
        let help = Command::Help {
            topic: Some("nosuch".into()),
        };
        let (response, _) = s.answer(
            &mut Session::new(None),
            &Request {
                id: 2,
                name: "help".into(),
                args: help.args(),
            },
            0,
        );
        let Err(e) = response.result else {
            panic!("help nosuch succeeded");
        };
        assert!(matches_oracle(
            &s,
            2,
            &help,
            &Err(ClientError::Server(e.clone()))
        ));
        let other = ErrorReply::new(ErrorCode::Internal, e.message);
        assert!(!matches_oracle(
            &s,
            2,
            &help,
            &Err(ClientError::Server(other))
        ));
    }
}
