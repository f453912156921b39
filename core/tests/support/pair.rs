//! [`Pair`]: the one driver of a client and a server [`Connection`] in memory, after
//! quinn-proto's test `Pair`. It moves each side's output to the other ([`Pair::step`],
//! [`Pair::drive`]), delivers flights whole or cut as a [`Split`] says, keeps a virtual clock
//! that [`Pair::jump`] moves to the next wake-up, records every flight, answers what a test
//! leaves to it (accepting the server key, echoing requests, a first `ping`), and checks after
//! every error that the connection is closed for good. Single-sided tests feed one side with
//! [`Pair::deliver_to_server`] / [`Pair::deliver_to_client`] and read its output with
//! [`Pair::take_output`].
#![allow(clippy::disallowed_methods)] // one real Instant is the epoch of the virtual clock

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use vserv_core::{Config, Connection, Error, Event, Request, Response, Role, ServerIdentity};

/// A seeded RNG, boxed the way `Connection` takes it.
pub fn rng(seed: u64) -> Box<dyn rand_core::CryptoRng + Send> {
    Box::new(StdRng::seed_from_u64(seed))
}

/// The server identity every default pair uses (seed 99).
pub fn identity() -> Arc<ServerIdentity> {
    static ID: OnceLock<Arc<ServerIdentity>> = OnceLock::new();
    ID.get_or_init(|| Arc::new(ServerIdentity::generate(&mut StdRng::seed_from_u64(99))))
        .clone()
}

/// How a flight (the bytes one side sent in one go) is handed to the other side.
#[derive(Debug, Clone, Default)]
pub enum Split {
    /// In one piece.
    #[default]
    Whole,
    /// In pieces of at most this many bytes.
    Chunks(usize),
    /// Cut at these points, each taken modulo the flight's length (arbitrary proptest cuts).
    Cuts(Vec<usize>),
    /// Cut where the direction's whole byte stream reaches these offsets, so that every
    /// point of a stream can be tried even though it travels in several flights.
    At(Vec<usize>),
}

/// Cuts `data` at the given points (taken modulo its length, in order).
pub fn cut<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| if data.is_empty() { 0 } else { c % data.len() })
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for p in points {
        if p > start {
            out.push(&data[start..p]);
            start = p;
        }
    }
    out.push(&data[start..]);
    out
}

impl Split {
    /// The pieces of `flight`, which starts at offset `at` of its direction's stream.
    pub fn pieces<'a>(&self, flight: &'a [u8], at: usize) -> Vec<&'a [u8]> {
        match self {
            Split::Whole => vec![flight],
            Split::Chunks(n) => flight.chunks((*n).max(1)).collect(),
            Split::Cuts(cuts) => cut(flight, cuts),
            Split::At(offsets) => {
                let mut points: Vec<usize> = offsets
                    .iter()
                    .filter(|&&o| o > at && o < at + flight.len())
                    .map(|o| o - at)
                    .collect();
                points.sort_unstable();
                points.dedup();
                let mut out = Vec::new();
                let mut start = 0;
                for p in points {
                    out.push(&flight[start..p]);
                    start = p;
                }
                out.push(&flight[start..]);
                out
            }
        }
    }
}

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the client to the server.
    ClientToServer,
    /// From the server to the client.
    ServerToClient,
}

/// What the pair does on its own when events come out.
#[derive(Debug, Clone, Copy)]
pub struct Auto {
    /// The client accepts the server key as soon as it is reported.
    pub accept_key: bool,
    /// The client sends `ping p` when it is connected.
    pub ping_on_connect: bool,
    /// How the server answers each request (`None`: the test answers).
    pub answer: Option<fn(&Request) -> Response>,
}

/// Answers a request with its own arguments.
pub fn echo(request: &Request) -> Response {
    Response {
        id: request.id,
        result: Ok(request.args.clone()),
    }
}

impl Default for Auto {
    fn default() -> Self {
        Auto {
            accept_key: true,
            ping_on_connect: false,
            answer: Some(echo),
        }
    }
}

/// A client and a server connection, the virtual clock, and everything that came out.
pub struct Pair {
    /// The virtual clock every call is given.
    pub now: Instant,
    /// The client side.
    pub client: Connection,
    /// The server side.
    pub server: Connection,
    /// Every event the client produced, in order.
    pub client_events: Vec<Event>,
    /// Every event the server produced, in order.
    pub server_events: Vec<Event>,
    /// The first error the client returned.
    pub client_error: Option<Error>,
    /// The first error the server returned.
    pub server_error: Option<Error>,
    /// Every flight moved by [`Pair::transmit`], in order.
    pub flights: Vec<(Dir, Vec<u8>)>,
    /// How client-to-server flights are cut.
    pub c2s_split: Split,
    /// How server-to-client flights are cut.
    pub s2c_split: Split,
    /// How far the clock moves after each delivered piece.
    pub piece_delay: Duration,
    /// What the pair does on its own.
    pub auto: Auto,
    /// Output polled but not yet moved (client, server).
    outbox: [Vec<u8>; 2],
    /// Bytes moved so far per direction (client-to-server, server-to-client).
    sent: [usize; 2],
}

impl Pair {
    /// A client seeded with 1 and a server seeded with 2 holding [`identity`], both with
    /// `config`, starting now.
    pub fn new(config: Config) -> Pair {
        let now = Instant::now();
        Pair::from_connections(
            Connection::client(config.clone(), rng(1), now),
            Connection::server(config, identity(), rng(2), now),
            now,
        )
    }

    /// A pair of the given connections with the clock at `now`.
    pub fn from_connections(client: Connection, server: Connection, now: Instant) -> Pair {
        Pair {
            now,
            client,
            server,
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_error: None,
            server_error: None,
            flights: Vec::new(),
            c2s_split: Split::Whole,
            s2c_split: Split::Whole,
            piece_delay: Duration::ZERO,
            auto: Auto::default(),
            outbox: [Vec::new(), Vec::new()],
            sent: [0, 0],
        }
    }

    /// A pair that has completed its handshake.
    pub fn connected(config: Config) -> Pair {
        let mut pair = Pair::new(config);
        pair.drive().expect("handshake");
        assert!(pair.client.is_connected() && pair.server.is_connected());
        pair
    }

    /// The two connections, for a test that goes on by hand. Panics if output was taken
    /// from a connection but not yet moved.
    pub fn into_connections(self) -> (Connection, Connection) {
        assert!(self.outbox.iter().all(Vec::is_empty), "output left unsent");
        (self.client, self.server)
    }

    /// Cuts flights in both directions the same way.
    pub fn set_split(&mut self, split: Split) {
        self.c2s_split = split.clone();
        self.s2c_split = split;
    }

    /// The connection on `role`'s side.
    pub fn side(&mut self, role: Role) -> &mut Connection {
        match role {
            Role::Client => &mut self.client,
            Role::Server => &mut self.server,
        }
    }

    /// Everything `role`'s side has to send (what it queued since the last transmit).
    pub fn take_output(&mut self, role: Role) -> Vec<u8> {
        let i = index(role);
        let mut out = std::mem::take(&mut self.outbox[i]);
        self.side(role).poll_transmit(&mut out);
        out
    }

    /// Moves one flight from `from`'s side to the other, cut by that direction's [`Split`],
    /// and records it. Bytes for a closed peer are refused with `Closed` and dropped. Returns
    /// how many bytes moved.
    pub fn transmit(&mut self, from: Role) -> Result<usize, Error> {
        let flight = self.take_output(from);
        if flight.is_empty() {
            return Ok(0);
        }
        let dir = match from {
            Role::Client => Dir::ClientToServer,
            Role::Server => Dir::ServerToClient,
        };
        self.flights.push((dir, flight.clone()));
        let to = other(from);
        self.deliver(to, &flight)?;
        Ok(flight.len())
    }

    /// Feeds `bytes` to the server as if the client had sent them (cut by `c2s_split`),
    /// handling its events after each piece.
    pub fn deliver_to_server(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.deliver(Role::Server, bytes)
    }

    /// Feeds `bytes` to the client as if the server had sent them (cut by `s2c_split`),
    /// handling its events after each piece.
    pub fn deliver_to_client(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.deliver(Role::Client, bytes)
    }

    /// One round: the client's output to the server, then the server's to the client.
    /// Returns whether any byte moved.
    pub fn step(&mut self) -> Result<bool, Error> {
        self.handle_events()?;
        let c2s = self.transmit(Role::Client)?;
        let s2c = self.transmit(Role::Server)?;
        Ok(c2s + s2c > 0)
    }

    /// Steps until neither side has anything to send (at most 100 rounds).
    pub fn drive(&mut self) -> Result<(), Error> {
        for _ in 0..100 {
            if !self.step()? {
                return Ok(());
            }
        }
        panic!("no quiescence after 100 rounds")
    }

    /// The earliest instant either side wants [`Connection::handle_timeout`] called.
    pub fn next_wakeup(&self) -> Option<Instant> {
        match (self.client.poll_timeout(), self.server.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the clock to the next wake-up and fires the timers that are due, on the client
    /// then the server. Returns that instant, or `None` (clock unchanged) when neither side
    /// waits for anything. Timer errors are recorded like any other.
    pub fn jump(&mut self) -> Option<Instant> {
        let at = self.next_wakeup()?;
        self.now = self.now.max(at);
        for role in [Role::Client, Role::Server] {
            if self
                .side(role)
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let now = self.now;
                let result = self.side(role).handle_timeout(now);
                let _ = self.check(role, result);
            }
        }
        Some(at)
    }

    /// Tells `role`'s side that its peer's stream ended, checking an error closes it for
    /// good.
    pub fn eof(&mut self, role: Role) -> Result<(), Error> {
        let now = self.now;
        let result = self.side(role).handle_eof(now);
        self.check(role, result)?;
        self.events(role)
    }

    /// Collects both sides' pending events, answering what [`Auto`] says to answer.
    pub fn handle_events(&mut self) -> Result<(), Error> {
        self.events(Role::Server)?;
        self.events(Role::Client)
    }

    /// The concatenated bytes moved in one direction.
    pub fn stream(&self, dir: Dir) -> Vec<u8> {
        self.flights
            .iter()
            .filter(|(d, _)| *d == dir)
            .flat_map(|(_, bytes)| bytes.iter().copied())
            .collect()
    }

    /// The responses the client received, in order.
    pub fn responses(&self) -> Vec<&Response> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                Event::Response(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn deliver(&mut self, to: Role, bytes: &[u8]) -> Result<(), Error> {
        let (split, stream) = match to {
            Role::Server => (self.c2s_split.clone(), 0),
            Role::Client => (self.s2c_split.clone(), 1),
        };
        // A driver drains a connection's output before it reads more input.
        let mut first = self.events(to);
        for piece in split.pieces(bytes, self.sent[stream]) {
            self.sent[stream] += piece.len();
            let now = self.now;
            let was_closed = self.side(to).is_closed();
            let result = self.side(to).handle_input(now, piece);
            if was_closed {
                assert_eq!(result, Err(Error::Closed), "a closed connection took input");
            } else if let Err(e) = self.check(to, result) {
                first = first.and(Err(e));
            }
            if let Err(e) = self.events(to) {
                first = first.and(Err(e));
            }
            self.now += self.piece_delay;
        }
        first
    }

    /// Records an error of `role`'s side and checks it left the connection closed for good.
    fn check(&mut self, role: Role, result: Result<(), Error>) -> Result<(), Error> {
        let Err(e) = result else { return Ok(()) };
        let now = self.now;
        let conn = self.side(role);
        assert!(conn.is_closed(), "{role:?} open after error {e:?}");
        assert_eq!(
            conn.poll_timeout(),
            None,
            "{role:?} waits after error {e:?}"
        );
        assert_eq!(conn.handle_input(now, b"more"), Err(Error::Closed));
        let slot = match role {
            Role::Client => &mut self.client_error,
            Role::Server => &mut self.server_error,
        };
        slot.get_or_insert(e.clone());
        Err(e)
    }

    /// Drains `role`'s events, answering per [`Auto`], then queues its output.
    fn events(&mut self, role: Role) -> Result<(), Error> {
        let now = self.now;
        let auto = self.auto;
        let mut first = Ok(());
        while let Some(event) = self.side(role).poll_event() {
            match &event {
                Event::Request(request) if role == Role::Server => {
                    if let Some(answer) = auto.answer {
                        let result = self.server.respond(&answer(request));
                        assert!(
                            result.is_ok() || self.server.is_closed(),
                            "answering {request:?}: {result:?}"
                        );
                    }
                }
                Event::ServerKey(_) if role == Role::Client && auto.accept_key => {
                    // Refused when the connection failed since the event was queued.
                    let result = self.client.accept_server_key(now);
                    if let Err(e) = self.check(Role::Client, result) {
                        first = first.and(Err(e));
                    }
                }
                Event::Connected { .. }
                    if role == Role::Client
                        && auto.ping_on_connect
                        && self.client.is_connected() =>
                {
                    let result = self.client.send_request("ping", vec![b"p".to_vec()]);
                    assert!(result.is_ok(), "the first ping: {result:?}");
                }
                _ => {}
            }
            match role {
                Role::Client => self.client_events.push(event),
                Role::Server => self.server_events.push(event),
            }
        }
        let i = index(role);
        let mut out = std::mem::take(&mut self.outbox[i]);
        self.side(role).poll_transmit(&mut out);
        self.outbox[i] = out;
        first
    }
}

fn index(role: Role) -> usize {
    match role {
        Role::Client => 0,
        Role::Server => 1,
    }
}

fn other(role: Role) -> Role {
    match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    }
}
