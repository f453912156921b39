//! [`Connection`]: one secure channel over one byte stream, client or server role.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::Event;
use crate::Error;
use crate::commands::Notice;
use crate::secure::keys::{self, Secret, Transcript};
use crate::secure::{RecordKeys, ServerIdentity, ServerKey};
use crate::wire::command::{encode_request, request_len};
use crate::wire::{
    self, CONTENT_APP, CONTENT_CLIENT_FINISHED, CONTENT_CLOSE, CONTENT_KEY_UPDATE, CONTENT_NOTICE,
    CONTENT_SERVER_AUTH, CONTENT_STREAM, ClientFinished, ClientHello, Close, CloseCode, Deframer,
    IV_LEN, MAX_PAYLOAD, PROTOCOL_VERSION, Request, Response, ServerAuth, ServerHello,
    TYPE_CLIENT_HELLO, TYPE_REFUSE, TYPE_SERVER_HELLO,
};

/// Tunables of a connection. The defaults suit production; tests shrink them.
#[derive(Debug, Clone)]
pub struct Config {
    /// The handshake must complete within this time of the connection's creation.
    pub handshake_timeout: Duration,
    /// After the handshake, the connection fails if nothing is received for this long.
    pub idle_timeout: Duration,
    /// A sender switches to fresh keys (KeyUpdate) after sealing this many records.
    pub rekey_after: u64,
    /// Most requests awaiting a response at once: a server fails a client that exceeds it, a
    /// client refuses to send more (both sides must use the same value; 256 by default).
    pub max_outstanding: usize,
    /// Server only: a connection must log in within this time of its creation (sshd's
    /// `LoginGraceTime`), whatever else it sends; the driver ends the grace with
    /// [`Connection::end_login_grace`] once the session has logged in. `None` (the default):
    /// no login deadline.
    pub login_grace: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            rekey_after: 1 << 24,
            max_outstanding: 256,
            login_grace: None,
        }
    }
}

/// Which end of the channel a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connects, verifies the server, sends requests.
    Client,
    /// Accepts, proves its identity, answers requests.
    Server,
}

enum State {
    /// Client: ClientHello sent, waiting for ServerHello.
    ClientWaitHello { ephemeral: keys::SecretScalar },
    /// Client: waiting for ServerAuth under the server handshake keys.
    ClientWaitAuth { hs: Handshake },
    /// Client: ServerAuth verified; waiting for the driver to accept the key.
    ClientWaitTrust { hs: Handshake },
    /// Server: waiting for ClientHello.
    ServerWaitHello,
    /// Server: ServerAuth sent, waiting for ClientFinished.
    ServerWaitFinished { hs: Handshake },
    /// Keys established; application data flows.
    Connected,
    /// Closed (orderly or after a fatal error): nothing more is accepted or produced.
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ClientWaitHello { .. } => "waiting for ServerHello",
            State::ClientWaitAuth { .. } => "waiting for ServerAuth",
            State::ClientWaitTrust { .. } => "waiting for the server key decision",
            State::ServerWaitHello => "waiting for ClientHello",
            State::ServerWaitFinished { .. } => "waiting for ClientFinished",
            State::Connected => "connected",
            State::Closed => "closed",
        }
    }
}

/// Handshake secrets kept between messages.
struct Handshake {
    transcript: Transcript,
    prk: Secret,
    client_hs: Secret,
    /// Transcript hash after ClientHello and ServerHello.
    th1: [u8; 32],
}

/// A sans-IO secure connection. Feed it bytes and time; drain bytes, events and a timeout.
///
/// After *every* call that takes input (`handle_input`, `handle_timeout`, `handle_eof`) or an
/// application call, the driver must drain `poll_transmit`, `poll_event` until `None`, and
/// re-read `poll_timeout`.
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    rng: Box<dyn CryptoRng + Send>,
    identity: Option<Arc<ServerIdentity>>,
    server_key: Option<ServerKey>,
    session_id: Option<[u8; 32]>,
    send: Option<RecordKeys>,
    recv: Option<RecordKeys>,
    deframer: Deframer,
    out: Vec<u8>,
    events: VecDeque<Event>,
    /// `None` when the timeout is too large to represent: no handshake timer.
    handshake_deadline: Option<Instant>,
    /// Server only: when the connection fails unless the session has logged in
    /// ([`Config::login_grace`]); `None` when there is no such deadline (any more).
    login_deadline: Option<Instant>,
    last_received: Instant,
    outstanding: BTreeSet<u32>,
    next_id: u32,
    /// Client only: its ClientHello body, the start of the transcript.
    client_hello: Vec<u8>,
    /// Client only: the server's handshake receive keys, kept from ClientFinished until the
    /// first record after it, since a server that refuses the ClientFinished (or whose
    /// handshake timer fired meanwhile) seals its Close under them, not the application keys.
    /// Boxed: a server never holds them, and every idle session is the smaller for it.
    handshake_recv: Option<Box<RecordKeys>>,
    /// Server only: whether the byte stream is open ([`Connection::open_stream`]); a
    /// client takes stream records whenever it is connected.
    stream_open: bool,
    /// Server only: how long before the idle timeout the client is told with a
    /// [`Notice::IdleSoon`] ([`Connection::set_idle_notice`]); `None`: never.
    idle_notice_margin: Option<Duration>,
    /// Server only: the last receipt whose idle period was already announced.
    idle_noticed: Option<Instant>,
}

impl Connection {
    /// A client connection; the ClientHello is ready in `poll_transmit` at once.
    pub fn client(config: Config, mut rng: Box<dyn CryptoRng + Send>, now: Instant) -> Self {
        let mut random = [0u8; 32];
        rng.fill_bytes(&mut random);
        let ephemeral = keys::random_scalar(&mut *rng);
        let hello = ClientHello {
            version: PROTOCOL_VERSION,
            random,
            ephemeral: keys::public_point(&ephemeral),
        };
        let mut body = Vec::with_capacity(ClientHello::LEN);
        hello.encode(&mut body);
        let mut conn = Self::new(
            Role::Client,
            config,
            rng,
            None,
            now,
            State::ClientWaitHello { ephemeral },
        );
        wire::frame::put_frame(&mut conn.out, &body);
        conn.client_hello = body;
        conn
    }

    /// A server connection proving `identity`.
    pub fn server(
        config: Config,
        identity: Arc<ServerIdentity>,
        rng: Box<dyn CryptoRng + Send>,
        now: Instant,
    ) -> Self {
        let key = identity.public_key();
        let mut conn = Self::new(
            Role::Server,
            config,
            rng,
            Some(identity),
            now,
            State::ServerWaitHello,
        );
        conn.server_key = Some(key);
        conn
    }

    fn new(
        role: Role,
        config: Config,
        rng: Box<dyn CryptoRng + Send>,
        identity: Option<Arc<ServerIdentity>>,
        now: Instant,
        state: State,
    ) -> Self {
        Connection {
            role,
            handshake_deadline: now.checked_add(config.handshake_timeout),
            login_deadline: match role {
                Role::Server => config.login_grace.and_then(|g| now.checked_add(g)),
                Role::Client => None,
            },
            config,
            state,
            rng,
            identity,
            server_key: None,
            session_id: None,
            send: None,
            recv: None,
            deframer: Deframer::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            last_received: now,
            outstanding: BTreeSet::new(),
            next_id: 1,
            client_hello: Vec::new(),
            handshake_recv: None,
            stream_open: false,
            idle_notice_margin: None,
            idle_noticed: None,
        }
    }

    /// This connection's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake has completed and the connection is still open.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    /// Whether the connection has ended; the driver should flush `poll_transmit` and close.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The exported session id, once connected.
    pub fn session_id(&self) -> Option<[u8; 32]> {
        self.session_id
    }

    /// The server's identity key (the client learns it during the handshake).
    pub fn server_key(&self) -> Option<ServerKey> {
        self.server_key
    }

    /// The idle timeout in force: after the handshake, the connection fails if nothing is
    /// received for this long.
    pub fn idle_timeout(&self) -> Duration {
        self.config.idle_timeout
    }

    /// Changes the idle timeout from now on (a server applies a session's `tout` request
    /// with it). The idle deadline becomes the last receipt plus `timeout`, so
    /// [`Connection::poll_timeout`] reports the new deadline at once; the driver must re-read
    /// it, as after every call. A zero timeout is API misuse ([`Error::InvalidState`]) and
    /// changes nothing; on a closed connection the call has no effect.
    pub fn set_idle_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        if timeout.is_zero() {
            return Err(Error::InvalidState("idle timeout must be positive"));
        }
        self.config.idle_timeout = timeout;
        Ok(())
    }

    /// Server: from now on, once per idle period, tell the client with a
    /// [`Notice::IdleSoon`] that the session is about to idle out: `margin` before the idle
    /// deadline, or half-way through the idle timeout when that is shorter than twice the
    /// margin. [`Connection::poll_timeout`] includes that instant, and `handle_timeout` at it
    /// sends the notice (it is not an error). `None` stops it. A client connection or a zero
    /// margin is API misuse ([`Error::InvalidState`]) and changes nothing.
    pub fn set_idle_notice(&mut self, margin: Option<Duration>) -> Result<(), Error> {
        if self.role != Role::Server || margin.is_some_and(|m| m.is_zero()) {
            return Err(Error::InvalidState(
                "idle notices are sent by servers, with a positive margin",
            ));
        }
        self.idle_notice_margin = margin;
        Ok(())
    }

    /// When the idle notice of the current idle period is due (`None`: none is, or it went).
    fn idle_notice_at(&self) -> Option<Instant> {
        let margin = self.idle_notice_margin?;
        if !self.is_connected() || self.idle_noticed == Some(self.last_received) {
            return None;
        }
        let timeout = self.config.idle_timeout;
        let before = margin.min(timeout / 2);
        self.last_received.checked_add(timeout - before)
    }

    /// Server: pushes `notice` to the client (a Notice record, protocol.md §12.4). Fails
    /// unless this is a connected server ([`Error::InvalidState`], or [`Error::Closed`]).
    pub fn send_notice(&mut self, notice: &Notice) -> Result<(), Error> {
        if self.role != Role::Server || !self.is_connected() {
            return self.misuse();
        }
        let payload = notice.encode();
        self.frame_record(CONTENT_NOTICE, payload.len(), |buf| {
            buf.extend_from_slice(&payload)
        })
    }

    /// Ends the login grace ([`Config::login_grace`]): the session has logged in, so only
    /// the idle timeout applies from now on. The driver must re-read
    /// [`Connection::poll_timeout`].
    pub fn end_login_grace(&mut self) {
        self.login_deadline = None;
    }

    /// Starts the login grace again, from the last receipt (a session that logged out is
    /// anonymous again and must log in within the grace time). Nothing changes without a
    /// configured grace or on a client connection.
    pub fn restart_login_grace(&mut self) {
        if self.role == Role::Server {
            self.login_deadline = self
                .config
                .login_grace
                .and_then(|g| self.last_received.checked_add(g));
        }
    }

    /// Number of requests sent (client) or received (server) and not yet answered.
    pub fn outstanding_requests(&self) -> usize {
        self.outstanding.len()
    }

    /// Gives back the memory of buffers that hold nothing pending, for a driver whose
    /// connection has gone idle: the received bytes already taken as frames, the last
    /// decrypted record (wiped first: it was plaintext, e.g. a login's password), output
    /// already handed to the driver, the record layer's framing buffer and the event queue.
    /// A partial frame, unsent output and undrained events are kept; the buffers are
    /// allocated again when next used. Changes nothing else.
    pub fn release_buffers(&mut self) {
        // Records are opened in place in the deframer's buffer: releasing it wipes the
        // plaintext of the last ones (a login's password among them).
        self.deframer.release();
        if self.out.is_empty() {
            self.out = Vec::new();
        }
        if let Some(send) = self.send.as_mut() {
            send.release_buffers();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    /// Appends all pending outgoing bytes to `buf`; returns how many were appended.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        // Application records are framed as they are sent and sealed together here.
        if let Some(send) = self.send.as_mut() {
            send.seal_framed(&mut self.out);
        }
        let n = self.out.len();
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.append(&mut self.out);
        }
        n
    }

    /// Next pending event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The instant at which `handle_timeout` must be called, if a timer is armed. Calling
    /// `handle_timeout` at (or after) exactly this instant fires the timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = match self.state {
            State::Closed => return None,
            State::Connected => self.last_received.checked_add(self.config.idle_timeout),
            _ => self.handshake_deadline,
        };
        [timer, self.login_deadline, self.idle_notice_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires expired timers. A fired timer is fatal and is returned as the error.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        let fatal = self.login_deadline.is_some_and(|l| now >= l)
            || (self.is_connected()
                && self
                    .last_received
                    .checked_add(self.config.idle_timeout)
                    .is_some_and(|d| now >= d))
            || (!self.is_connected() && self.handshake_deadline.is_some_and(|d| now >= d));
        if !fatal {
            return self.send_idle_notice(now);
        }
        let err = if self.login_deadline.is_some_and(|l| now >= l) {
            Error::LoginGraceTimeout
        } else if self.is_connected() {
            Error::IdleTimeout
        } else {
            Error::HandshakeTimeout
        };
        self.fail(err.clone());
        Err(err)
    }

    /// Sends the idle notice that is due at `now` (none if none is).
    fn send_idle_notice(&mut self, now: Instant) -> Result<(), Error> {
        if self.idle_notice_at().is_none_or(|at| now < at) {
            return Ok(());
        }
        let deadline = self.last_received.checked_add(self.config.idle_timeout);
        let left = deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        let seconds_left = u32::try_from(secs).unwrap_or(u32::MAX);
        self.idle_noticed = Some(self.last_received);
        self.send_notice(&Notice::IdleSoon { seconds_left })
    }

    /// The transport reached end of stream. Without a prior close record this is truncation.
    pub fn handle_eof(&mut self, _now: Instant) -> Result<(), Error> {
        if self.is_closed() {
            return Ok(());
        }
        self.fail(Error::UnexpectedEof);
        Err(Error::UnexpectedEof)
    }

    /// Processes received bytes. Any error returned is fatal: the connection is closed (a
    /// close record may still be pending in `poll_transmit`).
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.deframer.push(data);
        match self.process(now) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.fail(e.clone());
                Err(e)
            }
        }
    }

    fn process(&mut self, now: Instant) -> Result<(), Error> {
        // Records are opened in place in the deframer's buffer (no copy of each frame):
        // it is taken out for the loop, since nothing while processing a frame reads it.
        let mut deframer = std::mem::take(&mut self.deframer);
        let result = self.process_frames(now, &mut deframer);
        self.deframer = deframer;
        result
    }

    fn process_frames(&mut self, now: Instant, deframer: &mut Deframer) -> Result<(), Error> {
        loop {
            // While the driver decides on the server key, input is still opened under the
            // server's handshake keys: the only legal record then is a Close (e.g. the
            // server's handshake timer fired), since the server awaits ClientFinished.
            if self.is_closed() {
                return Ok(());
            }
            let Some(frame) = deframer.next_frame()? else {
                return Ok(());
            };
            self.last_received = now;
            self.process_frame(now, frame)?;
        }
    }

    fn process_frame(&mut self, now: Instant, frame: &mut [u8]) -> Result<(), Error> {
        // Before keys exist, frames are plaintext handshake messages.
        if self.recv.is_none() {
            return self.process_plaintext(now, frame);
        }
        if let Some(close) = self.handshake_close(frame)? {
            self.state = State::Closed;
            self.send = None;
            self.events.push_back(Event::Closed(close));
            return Ok(());
        }
        let recv = self.recv.as_mut().ok_or(Error::InvalidState("no keys"))?;
        let (content_type, payload) = recv.open(frame)?;
        match (content_type, &self.state) {
            (CONTENT_CLOSE, _) => {
                let close = Close::decode(payload)?;
                self.state = State::Closed;
                self.send = None;
                self.events.push_back(Event::Closed(close));
                Ok(())
            }
            (CONTENT_SERVER_AUTH, State::ClientWaitAuth { .. }) => {
                let msg = ServerAuth::decode(&[&[CONTENT_SERVER_AUTH][..], payload].concat())?;
                self.client_on_server_auth(msg)
            }
            (CONTENT_CLIENT_FINISHED, State::ServerWaitFinished { .. }) => {
                let msg =
                    ClientFinished::decode(&[&[CONTENT_CLIENT_FINISHED][..], payload].concat())?;
                self.server_on_client_finished(msg)
            }
            (CONTENT_KEY_UPDATE, State::Connected) if payload.is_empty() => {
                if let Some(recv) = self.recv.as_mut() {
                    *recv = recv.next_generation();
                }
                Ok(())
            }
            (CONTENT_APP, State::Connected) => self.on_app(payload),
            (CONTENT_STREAM, State::Connected) => self.on_stream(payload),
            (CONTENT_NOTICE, State::Connected) if self.role == Role::Client => {
                let notice = Notice::decode(payload)?;
                self.events.push_back(Event::Notice(notice));
                Ok(())
            }
            (kind, state) => Err(Error::UnexpectedMessage {
                kind,
                state: state.name(),
            }),
        }
    }

    /// Client, first record after its ClientFinished: a Close the server sealed under its
    /// handshake keys (§10: a refused ClientFinished). Any other record is left to the
    /// application keys; the handshake keys are dropped either way.
    fn handshake_close(&mut self, frame: &[u8]) -> Result<Option<Close>, Error> {
        let Some(mut keys) = self.handshake_recv.take() else {
            return Ok(None);
        };
        let mut copy = frame.to_vec();
        match keys.open(&mut copy) {
            Ok((CONTENT_CLOSE, payload)) => Close::decode(payload).map(Some),
            _ => Ok(None),
        }
    }

    fn process_plaintext(&mut self, _now: Instant, frame: &[u8]) -> Result<(), Error> {
        let kind = frame.first().copied().unwrap_or(0);
        match (kind, &self.state) {
            (TYPE_CLIENT_HELLO, State::ServerWaitHello) => self.server_on_client_hello(frame),
            (TYPE_SERVER_HELLO, State::ClientWaitHello { .. }) => {
                self.client_on_server_hello(frame)
            }
            (TYPE_REFUSE, State::ClientWaitHello { .. }) => {
                let refusal = wire::Refusal::decode(&frame[1..])?;
                Err(match refusal.hint {
                    Some(hint) => Error::RefusedRetry(hint),
                    None => Error::Refused(refusal.code),
                })
            }
            (kind, state) => Err(Error::UnexpectedMessage {
                kind,
                state: state.name(),
            }),
        }
    }

    // ----- server handshake -----

    fn server_on_client_hello(&mut self, frame: &[u8]) -> Result<(), Error> {
        let hello = ClientHello::decode(frame)?;
        if hello.version != PROTOCOL_VERSION {
            self.out
                .extend_from_slice(&super::refusal(CloseCode::UnsupportedVersion));
            self.state = State::Closed;
            return Err(Error::UnsupportedVersion(hello.version));
        }
        let identity = self
            .identity
            .clone()
            .ok_or(Error::InvalidState("server without identity"))?;
        let mut random = [0u8; 32];
        self.rng.fill_bytes(&mut random);
        let ephemeral = keys::random_scalar(&mut *self.rng);
        let shared = keys::ecdh(&ephemeral, &hello.ephemeral)?;
        let server_hello = ServerHello {
            version: PROTOCOL_VERSION,
            random,
            ephemeral: keys::public_point(&ephemeral),
        };
        let mut sh = Vec::with_capacity(ServerHello::LEN);
        server_hello.encode(&mut sh);
        wire::frame::put_frame(&mut self.out, &sh);

        let mut transcript = Transcript::default();
        transcript.update(frame);
        transcript.update(&sh);
        let (hs, server_hs) = Handshake::start(transcript, &shared);
        self.recv = Some(RecordKeys::from_secret(Zeroizing::new(*hs.client_hs)));
        let mut send = RecordKeys::from_secret(Zeroizing::new(*server_hs));

        let mut hs = hs;
        let static_key = identity.public_key();
        hs.transcript.update(&[CONTENT_SERVER_AUTH]);
        hs.transcript.update(static_key.as_bytes());
        let signature = identity.sign(&keys::signed_message(&hs.transcript.hash()));
        hs.transcript.update(&signature);
        let finished = keys::finished(&server_hs, &hs.transcript.hash());
        hs.transcript.update(&finished);
        let auth = ServerAuth {
            static_key: *static_key.as_bytes(),
            signature,
            finished,
        };
        let mut payload = Vec::with_capacity(ServerAuth::LEN);
        auth.encode(&mut payload);
        let iv = self.fresh_iv();
        send.seal(CONTENT_SERVER_AUTH, &payload[1..], iv, &mut self.out)?;
        self.send = Some(send);
        self.state = State::ServerWaitFinished { hs };
        Ok(())
    }

    fn server_on_client_finished(&mut self, msg: ClientFinished) -> Result<(), Error> {
        // Checked while the state still holds the handshake: a failure must leave the
        // connection open until `fail` has sent its Close under the handshake keys (§10).
        let State::ServerWaitFinished { hs } = &self.state else {
            return Err(Error::InvalidState("not waiting for ClientFinished"));
        };
        if !keys::verify_finished(&hs.client_hs, &hs.transcript.hash(), &msg.finished) {
            return Err(Error::BadFinished);
        }
        let State::ServerWaitFinished { hs } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Err(Error::InvalidState("not waiting for ClientFinished"));
        };
        self.enter_connected(hs, &msg);
        Ok(())
    }

    // ----- client handshake -----

    fn client_on_server_hello(&mut self, frame: &[u8]) -> Result<(), Error> {
        let hello = ServerHello::decode(frame)?;
        if hello.version != PROTOCOL_VERSION {
            return Err(Error::UnsupportedVersion(hello.version));
        }
        let State::ClientWaitHello { ephemeral } = &self.state else {
            return Err(Error::InvalidState("not waiting for ServerHello"));
        };
        let shared = keys::ecdh(ephemeral, &hello.ephemeral)?;
        let mut transcript = Transcript::default();
        transcript.update(&self.client_hello);
        transcript.update(frame);
        let (hs, server_hs) = Handshake::start(transcript, &shared);
        self.send = Some(RecordKeys::from_secret(Zeroizing::new(*hs.client_hs)));
        self.recv = Some(RecordKeys::from_secret(Zeroizing::new(*server_hs)));
        self.state = State::ClientWaitAuth { hs };
        Ok(())
    }

    fn client_on_server_auth(&mut self, msg: ServerAuth) -> Result<(), Error> {
        // Checked in place: a failed check leaves the state open so that `fail` still sends
        // its Close under the client's handshake keys (§10).
        let State::ClientWaitAuth { hs } = &mut self.state else {
            return Err(Error::InvalidState("not waiting for ServerAuth"));
        };
        let server_key = ServerKey::from_bytes(&msg.static_key)?;
        let server_hs = keys::expand(&hs.prk, keys::LABEL_SERVER_HS, &hs.th1);
        hs.transcript.update(&[CONTENT_SERVER_AUTH]);
        hs.transcript.update(&msg.static_key);
        server_key.verify(&keys::signed_message(&hs.transcript.hash()), &msg.signature)?;
        hs.transcript.update(&msg.signature);
        if !keys::verify_finished(&server_hs, &hs.transcript.hash(), &msg.finished) {
            return Err(Error::BadFinished);
        }
        hs.transcript.update(&msg.finished);
        let State::ClientWaitAuth { hs } = std::mem::replace(&mut self.state, State::Closed) else {
            return Err(Error::InvalidState("not waiting for ServerAuth"));
        };
        self.server_key = Some(server_key);
        self.events.push_back(Event::ServerKey(server_key));
        self.state = State::ClientWaitTrust { hs };
        Ok(())
    }

    /// Client: the driver trusts the server key announced by [`Event::ServerKey`]; the
    /// handshake completes (ClientFinished is sent, application keys are installed).
    pub fn accept_server_key(&mut self, _now: Instant) -> Result<(), Error> {
        if !matches!(self.state, State::ClientWaitTrust { .. }) {
            return self.misuse();
        }
        let State::ClientWaitTrust { hs } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Err(Error::Closed);
        };
        let finished = ClientFinished {
            finished: keys::finished(&hs.client_hs, &hs.transcript.hash()),
        };
        let iv = self.fresh_iv();
        if let Some(send) = self.send.as_mut() {
            send.seal(
                CONTENT_CLIENT_FINISHED,
                &finished.finished,
                iv,
                &mut self.out,
            )?;
        }
        self.enter_connected(hs, &finished);
        Ok(())
    }

    /// Client: the driver refuses the server key; the connection fails with
    /// [`Error::ServerKeyRejected`] and sends nothing more.
    pub fn reject_server_key(&mut self) -> Result<(), Error> {
        if !matches!(self.state, State::ClientWaitTrust { .. }) {
            return self.misuse();
        }
        self.state = State::Closed;
        self.send = None;
        Ok(())
    }

    fn enter_connected(&mut self, mut hs: Handshake, finished: &ClientFinished) {
        let mut cf = Vec::with_capacity(ClientFinished::LEN);
        finished.encode(&mut cf);
        hs.transcript.update(&cf);
        let th = hs.transcript.hash();
        let client_ap = keys::expand(&hs.prk, keys::LABEL_CLIENT_AP, &th);
        let server_ap = keys::expand(&hs.prk, keys::LABEL_SERVER_AP, &th);
        let session_id = *keys::expand(&hs.prk, keys::LABEL_SESSION_ID, &th);
        let (send, recv) = match self.role {
            Role::Client => (client_ap, server_ap),
            Role::Server => (server_ap, client_ap),
        };
        self.send = Some(RecordKeys::from_secret(send));
        let handshake_recv = self.recv.replace(RecordKeys::from_secret(recv));
        if self.role == Role::Client {
            self.handshake_recv = handshake_recv.map(Box::new);
        }
        self.session_id = Some(session_id);
        self.state = State::Connected;
        if let Some(server_key) = self.server_key {
            self.events.push_back(Event::Connected {
                session_id,
                server_key,
            });
        }
    }

    // ----- application data -----

    fn on_app(&mut self, payload: &[u8]) -> Result<(), Error> {
        match self.role {
            Role::Server => {
                let request = Request::decode(payload)?;
                if self.outstanding.len() >= self.config.max_outstanding {
                    return Err(Error::Malformed("too many outstanding requests"));
                }
                if !self.outstanding.insert(request.id) {
                    return Err(Error::Malformed("duplicate request id"));
                }
                self.events.push_back(Event::Request(request));
            }
            Role::Client => {
                let response = Response::decode(payload)?;
                if !self.outstanding.remove(&response.id) {
                    return Err(Error::UnknownRequestId(response.id));
                }
                self.events.push_back(Event::Response(response));
            }
        }
        Ok(())
    }

    fn on_stream(&mut self, payload: &[u8]) -> Result<(), Error> {
        if self.role == Role::Server && !self.stream_open {
            return Err(Error::Malformed(
                "stream record before the stream was opened",
            ));
        }
        if payload.is_empty() {
            return Err(Error::Malformed("empty stream record"));
        }
        self.events.push_back(Event::Stream(payload.to_vec()));
        Ok(())
    }

    /// Server: opens the connection's byte stream (after a request that asks for it, such
    /// as a replication link's `peer`, was accepted): from now on both ends may send stream
    /// records. A client that sends one before is a protocol error. Opening twice is fine.
    pub fn open_stream(&mut self) -> Result<(), Error> {
        if self.role != Role::Server || !self.is_connected() {
            return self.misuse();
        }
        self.stream_open = true;
        Ok(())
    }

    /// Whether this end may send stream bytes: a connected client (it must know that the
    /// server opened the stream), or a server that opened it.
    pub fn can_stream(&self) -> bool {
        self.is_connected() && (self.role == Role::Client || self.stream_open)
    }

    /// Sends `data` on the connection's byte stream, cut into records of at most
    /// [`MAX_PAYLOAD`] bytes; the peer sees the same bytes in order as [`Event::Stream`]
    /// pieces. Nothing is sent for empty `data`. Fails unless [`can_stream`](Self::can_stream).
    pub fn send_stream(&mut self, data: &[u8]) -> Result<(), Error> {
        if !self.can_stream() {
            return self.misuse();
        }
        for piece in data.chunks(MAX_PAYLOAD) {
            self.frame_record(CONTENT_STREAM, piece.len(), |buf| {
                buf.extend_from_slice(piece)
            })?;
        }
        Ok(())
    }

    /// Client: sends a request; returns its id, echoed by the matching [`Event::Response`].
    pub fn send_request(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, Error> {
        self.send_request_ref(name, &args)
    }

    /// Client: [`send_request`](Self::send_request) with borrowed arguments, encoded straight
    /// into the record (the same bytes, without a copy of the arguments first).
    pub fn send_request_ref<A: AsRef<[u8]>>(
        &mut self,
        name: &str,
        args: &[A],
    ) -> Result<u32, Error> {
        if self.role != Role::Client || !self.is_connected() {
            return self.misuse();
        }
        if self.outstanding.len() >= self.config.max_outstanding {
            // The server would fail the connection; refuse here instead.
            return Err(Error::InvalidState("too many requests awaiting responses"));
        }
        if !Request::is_valid_name(name) {
            return Err(Error::InvalidState(
                "command name must be 1-32 bytes of [a-z0-9_-]",
            ));
        }
        let mut id = self.next_id;
        while self.outstanding.contains(&id) {
            id = id.wrapping_add(1);
        }
        let len = request_len(name, args);
        if len > MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge {
                len,
                max: MAX_PAYLOAD,
            });
        }
        self.frame_app(len, |buf| encode_request(id, name, args, buf))?;
        self.outstanding.insert(id);
        self.next_id = id.wrapping_add(1);
        Ok(id)
    }

    /// Server: answers an outstanding request.
    pub fn respond(&mut self, response: &Response) -> Result<(), Error> {
        if self.role != Role::Server || !self.is_connected() {
            return self.misuse();
        }
        if !self.outstanding.contains(&response.id) {
            return Err(Error::NoSuchRequest(response.id));
        }
        let len = response.encoded_len();
        if len > MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge {
                len,
                max: MAX_PAYLOAD,
            });
        }
        self.frame_app(len, |buf| response.encode(buf))?;
        self.outstanding.remove(&response.id);
        Ok(())
    }

    /// Frames an application record of `len` bytes written by `write`; it is sealed with
    /// the others at the next `poll_transmit` (or before any other record).
    fn frame_app(&mut self, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        self.frame_record(CONTENT_APP, len, write)
    }

    /// Frames a record of `content_type` with a payload of `len` bytes written by `write`,
    /// updating the keys first when they are due.
    fn frame_record(
        &mut self,
        content_type: u8,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Error> {
        if self
            .send
            .as_ref()
            .is_some_and(|s| s.seq() >= self.config.rekey_after)
        {
            self.update_keys()?;
        }
        let iv = self.fresh_iv();
        let send = self.send.as_mut().ok_or(Error::InvalidState("no keys"))?;
        send.frame_with(content_type, len, iv, write)
    }

    /// Sends a KeyUpdate and switches this direction to the next key generation
    /// (sequence numbers restart at 0). Happens automatically every `rekey_after` records.
    pub fn update_keys(&mut self) -> Result<(), Error> {
        if !self.is_connected() {
            return self.misuse();
        }
        let iv = self.fresh_iv();
        let send = self.send.as_mut().ok_or(Error::InvalidState("no keys"))?;
        send.seal(CONTENT_KEY_UPDATE, &[], iv, &mut self.out)?;
        *send = send.next_generation();
        Ok(())
    }

    /// Closes the connection: an authenticated close record is queued if keys exist.
    /// Closing an already closed connection does nothing.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.is_closed() {
            return;
        }
        self.send_close(code, reason);
        self.state = State::Closed;
    }

    fn send_close(&mut self, code: CloseCode, reason: &str) {
        let mut payload = Vec::new();
        Close {
            code,
            reason: reason.to_owned(),
        }
        .encode(&mut payload);
        let iv = self.fresh_iv();
        if let Some(mut send) = self.send.take() {
            // A close that cannot be sealed is simply not sent; the connection closes anyway.
            let _ = send.seal(CONTENT_CLOSE, &payload, iv, &mut self.out);
        }
    }

    fn fail(&mut self, err: Error) {
        if self.is_closed() {
            return;
        }
        let reason = match err.kind() {
            // Say nothing about which check failed.
            crate::ErrorKind::Auth => "authentication failed".to_owned(),
            _ => err.to_string(),
        };
        if !matches!(err, Error::ServerKeyRejected | Error::UnexpectedEof) {
            self.send_close(err.close_code(), &reason);
        }
        self.send = None;
        self.recv = None;
        self.handshake_recv = None;
        self.state = State::Closed;
    }

    fn misuse<T>(&self) -> Result<T, Error> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Err(Error::InvalidState(self.state.name()))
        }
    }

    fn fresh_iv(&mut self) -> [u8; IV_LEN] {
        let mut iv = [0u8; IV_LEN];
        self.rng.fill_bytes(&mut iv);
        iv
    }
}

impl Handshake {
    /// Derives the handshake secrets; returns the state and the server handshake secret.
    fn start(transcript: Transcript, shared: &[u8; 32]) -> (Self, Secret) {
        let prk = keys::extract(shared);
        let th1 = transcript.hash();
        let client_hs = keys::expand(&prk, keys::LABEL_CLIENT_HS, &th1);
        let server_hs = keys::expand(&prk, keys::LABEL_SERVER_HS, &th1);
        (
            Handshake {
                transcript,
                prk,
                client_hs,
                th1,
            },
            server_hs,
        )
    }
}
