//! The client of sealed UDP queries (spec/datagrams.md): a std [`UdpSocket`] to one server,
//! each request sealed to the server's key, a timeout per attempt and a few attempts, each
//! with a fresh ephemeral key and nonce (answers to an earlier attempt still count). An
//! answer "too large" is retried once, padded to the size the server asked for. The server's
//! key comes from `known_servers` or, for a host not recorded yet or a key pinned only by
//! fingerprint, from a key query checked like a TCP handshake's key (trust on first use, or
//! the pin): [`trusted_key`].

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rand_core::CryptoRng;
use vserv_core::datagram::{
    Answer, DatagramError, KEY_ANSWER_LEN, MAX_DATAGRAM, PendingRequest, decode_key_answer,
    key_query, seal_request,
};
use vserv_core::{Fingerprint, Request, Response, ServerKey};
use vserv_store::known_servers::{KnownServers, KnownServersError};
use vserv_store::trust::{self, TrustDecision, TrustError};

/// How long one attempt waits for its answer by default.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);

/// How many attempts a request makes by default.
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// Why a datagram request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramClientError {
    /// The socket failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// No valid answer came within the attempts.
    #[error("no answer from the server over UDP after {attempts} attempts")]
    NoAnswer {
        /// Attempts made.
        attempts: u32,
    },
    /// The answer cannot come by datagram, even padded.
    #[error("answer too large for UDP (a request of {needed} bytes would be needed): use TCP")]
    AnswerTooLarge {
        /// The request size the server asked for.
        needed: usize,
    },
    /// The request could not be sealed.
    #[error("cannot seal the request: {0}")]
    Seal(DatagramError),
    /// The server's key was refused (pin mismatch, changed key).
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The known servers file could not be read.
    #[error(transparent)]
    KnownServers(#[from] KnownServersError),
}

/// A client of one server's sealed datagrams.
pub struct DatagramClient {
    socket: UdpSocket,
    server: SocketAddr,
    key: ServerKey,
    rng: Box<dyn CryptoRng + Send>,
    /// How long one attempt waits.
    pub attempt_timeout: Duration,
    /// How many attempts a request makes.
    pub attempts: u32,
    /// The size requests are padded to (raised when the server asks for more).
    pub pad_to: usize,
    next_id: u32,
}

impl std::fmt::Debug for DatagramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramClient")
            .field("server", &self.server)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn bind_for(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    UdpSocket::bind(any)
}

/// Asks `server` for its key with a key query (up to `attempts` times, `timeout` each).
/// The answer is not authenticated: check it ([`trusted_key`] does).
pub fn query_key(
    server: SocketAddr,
    timeout: Duration,
    attempts: u32,
) -> Result<ServerKey, DatagramClientError> {
    let socket = bind_for(server)?;
    socket.connect(server)?;
    let mut buf = [0u8; KEY_ANSWER_LEN + 1];
    for _ in 0..attempts.max(1) {
        socket.send(&key_query())?;
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            socket.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match socket.recv(&mut buf) {
                Ok(n) => {
                    if let Ok(key) = decode_key_answer(&buf[..n]) {
                        return Ok(key);
                    }
                }
                Err(e) if is_timeout(&e) => break,
                // An ICMP "port unreachable" from an earlier send: keep waiting.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(DatagramClientError::NoAnswer {
        attempts: attempts.max(1),
    })
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The key to seal to for `host` (the `HOST:PORT` the user named) at `server`: the one
/// `known_servers` records (a pinned fingerprint must match it), else the key the server
/// gives to a key query, decided as a TCP handshake's key would be (the pin must match;
/// without one, trust on first use records it). Returns the key and the decision.
pub fn trusted_key(
    known_servers: &std::path::Path,
    host: &str,
    server: SocketAddr,
    pinned: Option<&Fingerprint>,
    timeout: Duration,
) -> Result<(ServerKey, TrustDecision), DatagramClientError> {
    let mut known = KnownServers::load(known_servers)?;
    let key = match known.lookup(host) {
        Some(key) => key,
        None => query_key(server, timeout, DEFAULT_ATTEMPTS)?,
    };
    let decision = trust::decide(&mut known, host, &key, pinned)?;
    Ok((key, decision))
}

impl DatagramClient {
    /// A client of `server`, sealing to `key`, with randomness from `rng`.
    pub fn new(
        server: SocketAddr,
        key: ServerKey,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Result<DatagramClient, DatagramClientError> {
        let socket = bind_for(server)?;
        socket.connect(server)?;
        Ok(DatagramClient {
            socket,
            server,
            key,
            rng,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            attempts: DEFAULT_ATTEMPTS,
            pad_to: 0,
            next_id: 1,
        })
    }

    /// The server's key requests are sealed to.
    pub fn server_key(&self) -> ServerKey {
        self.key
    }

    /// Sends `name` with `args` and waits for its response; retries as the module says.
    pub fn request(
        &mut self,
        name: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<Response, DatagramClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let request = Request {
            id,
            name: name.to_owned(),
            args,
        };
        let mut padded_once = false;
        loop {
            match self.exchange(&request)? {
                Answer::Response(response) => return Ok(response),
                Answer::TooLarge { needed } if needed <= MAX_DATAGRAM && !padded_once => {
                    padded_once = true;
                    self.pad_to = self.pad_to.max(needed);
                }
                Answer::TooLarge { needed } => {
                    return Err(DatagramClientError::AnswerTooLarge { needed });
                }
            }
        }
    }

    /// Sends `request` (a fresh seal per attempt) until an attempt's answer opens.
    fn exchange(&mut self, request: &Request) -> Result<Answer, DatagramClientError> {
        let mut pending: Vec<PendingRequest> = Vec::new();
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let attempts = self.attempts.max(1);
        for _ in 0..attempts {
            let (bytes, waiting) = seal_request(
                &self.key,
                request,
                self.pad_to,
                crate::system::unix_now(),
                &mut *self.rng,
            )
            .map_err(DatagramClientError::Seal)?;
            pending.push(waiting);
            self.socket.send(&bytes)?;
            let deadline = Instant::now() + self.attempt_timeout;
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                self.socket
                    .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                let n = match self.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if is_timeout(&e) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e.into()),
                };
                let data = &buf[..n];
                // Whatever does not open under one of this request's attempts is ignored:
                // stale answers, forgeries, noise.
                if let Some(answer) = pending.iter().find_map(|p| p.open_response(data).ok()) {
                    return Ok(answer);
                }
            }
        }
        Err(DatagramClientError::NoAnswer { attempts })
    }
}
