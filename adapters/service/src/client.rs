//! Client-side session logic shared by every driver: the trust decision on the server's key,
//! sending typed commands and matching their replies. No I/O: drivers feed the connection
//! and call [`ClientSession::process`] after every input. File transfers, one or many on a
//! connection, are scheduled by [`transfers::Scheduler`], which every runtime drives.

pub mod datagram;
pub mod transfers;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand_core::CryptoRng;
use vserv_core::commands::{Command, Notice, Reply};
use vserv_core::{Close, CloseCode, Config, Connection, ErrorReply, Event, Fingerprint, ServerKey};
use vserv_store::known_servers::{KnownServers, KnownServersError};
use vserv_store::trust::{self, PinOverRecord, TrustDecision, TrustError};

/// Most notices a [`ClientSession`] keeps until they are taken; a client that never takes
/// them loses the oldest, never memory.
pub const MAX_QUEUED_NOTICES: usize = 1024;

/// How a client connects and whom it trusts.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The known_servers file consulted and updated (trust on first use).
    pub known_servers: PathBuf,
    /// An explicitly pinned server fingerprint (`--server-key`).
    pub pinned: Option<Fingerprint>,
    /// Connection tunables.
    pub config: Config,
    /// How long a call waits while nothing at all arrives from the server before it fails
    /// with [`ClientError::NoReply`] (`None`: until the connection's own timers end it).
    /// Any received byte counts as activity, so a transfer whose data flows never hits it.
    pub response_timeout: Option<Duration>,
    /// What [`pinned`](Self::pinned) does when the host is recorded with another key
    /// (default: refuse, as without a pin).
    pub pin_over_record: PinOverRecord,
}

impl ClientOptions {
    /// Options using `known_servers` and default tunables, without a pin.
    pub fn new(known_servers: impl Into<PathBuf>) -> Self {
        ClientOptions {
            known_servers: known_servers.into(),
            pinned: None,
            config: Config::default(),
            response_timeout: None,
            pin_over_record: PinOverRecord::Refuse,
        }
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The transport failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The secure channel failed.
    #[error("protocol error: {0}")]
    Protocol(#[from] vserv_core::Error),
    /// The server's key is not the one trusted for this host.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The known_servers file could not be read or written.
    #[error(transparent)]
    KnownServers(#[from] KnownServersError),
    /// The server answered the request with an error.
    #[error("server error: {0}")]
    Server(ErrorReply),
    /// The server closed the session.
    #[error("server closed the connection ({code}){}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    ClosedByServer {
        /// The close code.
        code: CloseCode,
        /// The server's reason.
        reason: String,
    },
    /// The connection ended without an explanation from the server.
    #[error("connection closed")]
    ConnectionClosed,
    /// The server did not answer in time.
    #[error("timed out waiting for the server")]
    TimedOut,
    /// Nothing arrived from the server for the response timeout while a reply was awaited
    /// ([`ClientOptions::response_timeout`]); the connection should be dropped.
    #[error("no reply from the server for {} s; gave up waiting", .0.as_secs_f64())]
    NoReply(Duration),
}

/// One client session over a [`Connection`], with trust and reply bookkeeping.
pub struct ClientSession {
    conn: Connection,
    host: String,
    known: KnownServers,
    pinned: Option<Fingerprint>,
    pin_over_record: PinOverRecord,
    trust: Option<TrustDecision>,
    replies: BTreeMap<u32, vserv_core::Response>,
    peer_close: Option<Close>,
    /// The connection's first fatal error (a record that failed authentication, a
    /// timeout...), reported by every later call instead of a bare "connection closed".
    fatal: Option<vserv_core::Error>,
    /// Notices the server pushed, oldest first, until [`ClientSession::take_notices`].
    notices: VecDeque<Notice>,
}

impl ClientSession {
    /// Starts a session to `host` (the `HOST:PORT` string used as the known_servers key).
    pub fn new(
        host: &str,
        options: &ClientOptions,
        rng: Box<dyn CryptoRng + Send>,
        now: Instant,
    ) -> Result<Self, ClientError> {
        let known = KnownServers::load(&options.known_servers)?;
        Ok(ClientSession {
            conn: Connection::client(options.config.clone(), rng, now),
            host: host.to_owned(),
            known,
            pinned: options.pinned,
            pin_over_record: options.pin_over_record,
            trust: None,
            replies: BTreeMap::new(),
            peer_close: None,
            fatal: None,
            notices: VecDeque::new(),
        })
    }

    /// The underlying connection, for the driver's input/transmit/timeout calls.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Whether the handshake has completed (and the session is still open).
    pub fn is_connected(&self) -> bool {
        self.conn.is_connected()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// How the server's key was trusted, once it has been.
    pub fn trust(&self) -> Option<&TrustDecision> {
        self.trust.as_ref()
    }

    /// The session id both ends derived, once connected (what a key login signs).
    pub fn session_id(&self) -> Option<[u8; 32]> {
        self.conn.session_id()
    }

    /// The server's identity key, once the handshake has shown it.
    pub fn server_key(&self) -> Option<ServerKey> {
        self.conn.server_key()
    }

    /// Handles pending events: decides trust on the server key (a refusal is returned as the
    /// error and ends the session), files replies, notes a close.
    pub fn process(&mut self, now: Instant) -> Result<(), ClientError> {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::ServerKey(key) => {
                    match trust::decide_with(
                        &mut self.known,
                        &self.host,
                        &key,
                        self.pinned.as_ref(),
                        self.pin_over_record,
                    ) {
                        Ok(decision) => {
                            self.trust = Some(decision);
                            match self.conn.accept_server_key(now) {
                                // The server closed meanwhile; its Closed event follows.
                                Ok(()) | Err(vserv_core::Error::Closed) => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                        Err(e) => {
                            self.conn.reject_server_key()?;
                            return Err(e.into());
                        }
                    }
                }
                Event::Response(response) => {
                    self.replies.insert(response.id, response);
                }
                Event::Closed(close) => self.peer_close = Some(close),
                Event::Notice(notice) => {
                    if self.notices.len() >= MAX_QUEUED_NOTICES {
                        self.notices.pop_front();
                    }
                    self.notices.push_back(notice);
                }
                Event::Stream(_) => {
                    // A client session is never a link: stream bytes break the protocol.
                    self.conn.close(
                        vserv_core::CloseCode::ProtocolError,
                        "stream bytes on a command session",
                    );
                    return Err(vserv_core::Error::Malformed(
                        "the server sent stream bytes on a command session",
                    )
                    .into());
                }
                Event::Connected { .. } | Event::Request(_) => {}
            }
        }
        Ok(())
    }

    /// The notices the server pushed since the last call, oldest first (at most
    /// [`MAX_QUEUED_NOTICES`] are kept: older ones are dropped first).
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.notices.drain(..).collect()
    }

    /// Whether notices are waiting for [`ClientSession::take_notices`].
    pub fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// Sends a command; the returned id is passed to [`ClientSession::take_reply`].
    pub fn send(&mut self, command: &Command) -> Result<u32, ClientError> {
        self.conn
            .send_request(command.name(), command.args())
            .map_err(|e| self.failure(e))
    }

    /// The client error for a connection error: an end of stream or a closed connection is
    /// reported as why the session ended (the first fatal error, else the server's close, if
    /// it sent one); any other error is the first fatal one, kept for
    /// [`ClientSession::ended_error`].
    pub fn failure(&mut self, error: vserv_core::Error) -> ClientError {
        match error {
            vserv_core::Error::UnexpectedEof | vserv_core::Error::Closed => self.ended_error(),
            e => self.fatal.get_or_insert(e).clone().into(),
        }
    }

    /// The typed reply to request `id` (sent as `command`), if it has arrived.
    pub fn take_reply(&mut self, id: u32, command: &Command) -> Option<Result<Reply, ClientError>> {
        let response = self.replies.remove(&id)?;
        Some(match response.result {
            Ok(fields) => Reply::from_fields(command, &fields).map_err(ClientError::from),
            Err(e) => Err(ClientError::Server(e)),
        })
    }

    /// Sends a request by name with raw arguments (for commands built with their own
    /// codecs, such as the transfer commands); the returned id is passed to
    /// [`ClientSession::take_response`].
    pub fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError> {
        self.conn
            .send_request(name, args)
            .map_err(|e| self.failure(e))
    }

    /// [`send_raw`](Self::send_raw) with borrowed arguments, encoded straight into the
    /// record (the same bytes, without copying the arguments first; an upload's chunks).
    pub fn send_raw_ref(&mut self, name: &str, args: &[&[u8]]) -> Result<u32, ClientError> {
        self.conn
            .send_request_ref(name, args)
            .map_err(|e| self.failure(e))
    }

    /// The raw reply fields to request `id`, if its response has arrived; an error reply is
    /// [`ClientError::Server`].
    pub fn take_response(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
        let response = self.replies.remove(&id)?;
        Some(response.result.map_err(ClientError::Server))
    }

    /// The error explaining why the session ended before an expected reply: the first
    /// fatal error the connection met (e.g. "record failed authentication"), else the
    /// server's close, else a bare "connection closed".
    pub fn ended_error(&self) -> ClientError {
        if let Some(e) = &self.fatal {
            return ClientError::Protocol(e.clone());
        }
        match &self.peer_close {
            Some(close) => ClientError::ClosedByServer {
                code: close.code,
                reason: close.reason.clone(),
            },
            None => ClientError::ConnectionClosed,
        }
    }
}
