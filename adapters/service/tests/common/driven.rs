//! A session driven the way the runtimes drive one: over a client/server connection pair,
//! with the service's blocking work on threads of a test runner and the session woken by
//! its completions. For tests that must see work run off the driving thread (deliveries
//! answered after later requests, commits shared across connections).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use vserv_core::commands::{Command, Credential, Reply, SecretBytes};
use vserv_core::{Config, Connection, ErrorReply, Event, ServerIdentity};
use vserv_service::work::{Runner, Wake, Work};
use vserv_service::{Service, Session};

/// Runs each work item on a thread of its own (tests only: a runtime bounds its threads).
#[derive(Debug, Default)]
pub struct ThreadRunner;

impl Runner for ThreadRunner {
    fn run(&self, work: Work) {
        std::thread::spawn(move || work.run());
    }
}

/// A waker the test thread waits on.
#[derive(Default)]
pub struct Signal {
    woken: Mutex<bool>,
    cond: Condvar,
}

impl Wake for Signal {
    fn wake(&self) {
        *self.woken.lock().unwrap() = true;
        self.cond.notify_all();
    }
}

impl Signal {
    /// Waits until woken (or `limit` passes); clears the wake-up.
    pub fn wait(&self, limit: Duration) {
        let guard = self.woken.lock().unwrap();
        let (mut guard, _) = self
            .cond
            .wait_timeout_while(guard, limit, |woken| !*woken)
            .unwrap();
        *guard = false;
    }
}

/// A client connection and the server session it talks to, driven by the test thread.
pub struct Driven {
    pub client: Connection,
    pub server: Connection,
    pub session: Session,
    pub signal: Arc<Signal>,
    now: Instant,
}

impl Driven {
    /// A connected pair over `service` (whose runner should not be inline), logged in as
    /// `user` with `password` when given.
    pub fn new(service: &Service, user: Option<(&str, &[u8])>) -> Driven {
        let now = Instant::now();
        let rng = |seed| Box::new(rand::rngs::StdRng::seed_from_u64(seed));
        let identity = Arc::new(ServerIdentity::generate(&mut *rng(11)));
        let signal = Arc::new(Signal::default());
        let mut pair = Driven {
            client: Connection::client(Config::default(), rng(12), now),
            server: Connection::server(Config::default(), identity, rng(13), now),
            session: Session::with_waker(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), signal.clone()),
            signal,
            now,
        };
        for _ in 0..10 {
            if pair.client.is_connected() {
                break;
            }
            pair.exchange(service);
        }
        assert!(pair.client.is_connected(), "handshake");
        if let Some((name, password)) = user {
            let login = Command::Login {
                user: name.into(),
                credential: Credential::Password(SecretBytes::new(password.to_vec())),
            };
            let reply = pair.request(service, &login);
            assert!(
                matches!(reply, Ok(Reply::User { .. })),
                "login {name}: {reply:?}"
            );
        }
        pair
    }

    /// Moves the client's bytes to the server, drives the service, moves the answers back;
    /// returns the client's events.
    pub fn exchange(&mut self, service: &Service) -> Vec<Event> {
        let mut c2s = Vec::new();
        self.client.poll_transmit(&mut c2s);
        if !c2s.is_empty() {
            self.server.handle_input(self.now, &c2s).unwrap();
        }
        service
            .drive(
                &mut self.session,
                &mut self.server,
                std::time::Instant::now(),
                7_000,
            )
            .unwrap();
        let mut s2c = Vec::new();
        self.server.poll_transmit(&mut s2c);
        if !s2c.is_empty() {
            self.client.handle_input(self.now, &s2c).unwrap();
        }
        let mut events = Vec::new();
        while let Some(event) = self.client.poll_event() {
            if let Event::ServerKey(_) = event {
                self.client.accept_server_key(self.now).unwrap();
            } else {
                events.push(event);
            }
        }
        events
    }

    /// Sends `cmd` and returns the id it went under.
    pub fn send(&mut self, cmd: &Command) -> u32 {
        self.client.send_request(cmd.name(), cmd.args()).unwrap()
    }

    /// Drives until the response to request `id` arrives (at most 30 s), waiting on the
    /// session's waker in between; returns it with every other response seen meanwhile.
    pub fn wait_for(
        &mut self,
        service: &Service,
        id: u32,
    ) -> (vserv_core::Response, Vec<vserv_core::Response>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut others = Vec::new();
        loop {
            for event in self.exchange(service) {
                if let Event::Response(r) = event {
                    if r.id == id {
                        return (r, others);
                    }
                    others.push(r);
                }
            }
            assert!(Instant::now() < deadline, "no response to request {id}");
            if self.session.in_flight() {
                self.signal.wait(Duration::from_millis(100));
            }
        }
    }

    /// Sends `cmd` and waits for its reply.
    pub fn request(&mut self, service: &Service, cmd: &Command) -> Result<Reply, ErrorReply> {
        let id = self.send(cmd);
        let (response, _) = self.wait_for(service, id);
        response
            .result
            .map(|fields| Reply::from_fields(cmd, &fields).expect("reply decodes"))
    }
}
