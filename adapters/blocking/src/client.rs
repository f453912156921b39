//! Blocking client: connect, handshake with trust decision, typed calls.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use vserv_core::CloseCode;
use vserv_core::commands::{Command, Notice, Reply};
use vserv_service::client::{ClientError, ClientOptions, ClientSession};
use vserv_service::system::os_rng;

/// A connected, authenticated client session over TCP.
pub struct Client {
    stream: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Requests the connection allows in flight.
    max_outstanding: usize,
    /// How long a wait may see no input at all before it fails.
    response_timeout: Option<Duration>,
}

impl Client {
    /// Connects to `addr` (`HOST:PORT`, also the known_servers key) and completes the
    /// handshake, deciding trust on the server key per `options`.
    pub fn connect(addr: &str, options: &ClientOptions) -> Result<Client, ClientError> {
        let stream = connect_any(addr, options.config.handshake_timeout)?;
        Self::over(stream, addr, options)
    }

    /// Like [`Client::connect`] over `stream`, already connected to `addr` (for a caller
    /// that sets the socket up itself, e.g. binds its source address).
    pub fn over(
        stream: TcpStream,
        addr: &str,
        options: &ClientOptions,
    ) -> Result<Client, ClientError> {
        let timeout = options.config.handshake_timeout;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout.max(crate::server::WRITE_TIMEOUT)))?;
        let session = ClientSession::new(addr, options, os_rng()?, Instant::now())?;
        let mut client = Client {
            stream,
            session,
            buf: vec![0u8; 256 * 1024],
            out: Vec::with_capacity(64 * 1024),
            max_outstanding: options.config.max_outstanding,
            response_timeout: options.response_timeout,
        };
        client.pump(|s| s.is_connected().then_some(()))?;
        Ok(client)
    }

    /// The session state (server key, trust decision).
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Sends one command and waits for its typed reply.
    pub fn call(&mut self, command: &Command) -> Result<Reply, ClientError> {
        let id = self.session.send(command)?;
        self.pump(|s| s.take_reply(id, command))?
    }

    /// Sends `commands` pipelined, keeping up to `window` (at most the connection's
    /// `max_outstanding`) in flight, and returns each command's reply in order. The server
    /// executes them in order; consecutive `rput`s that arrive together share one durable
    /// commit. Fails as a whole only if the session ends; a refused command is an `Err` in its
    /// place.
    pub fn call_pipelined(
        &mut self,
        commands: &[Command],
        window: usize,
    ) -> Result<Vec<Result<Reply, ClientError>>, ClientError> {
        let window = window.clamp(1, self.max_outstanding);
        let mut in_flight = std::collections::VecDeque::with_capacity(window);
        let mut replies = Vec::with_capacity(commands.len());
        let mut next = commands.iter();
        loop {
            // Queue requests up to the window; the next read flushes them in one write.
            while in_flight.len() < window {
                let Some(command) = next.next() else { break };
                in_flight.push_back((self.session.send(command)?, command));
            }
            let Some(&(id, command)) = in_flight.front() else {
                return Ok(replies);
            };
            replies.push(self.pump(|s| s.take_reply(id, command))?);
            in_flight.pop_front();
            // Collect the replies that arrived with it before sending more, so requests
            // leave in batches rather than one write per reply.
            while let Some(&(id, command)) = in_flight.front() {
                let Some(reply) = self.session.take_reply(id, command) else {
                    break;
                };
                replies.push(reply);
                in_flight.pop_front();
            }
        }
    }

    /// The most requests the connection allows in flight at once (the window every
    /// pipelined caller shares).
    pub fn max_outstanding(&self) -> usize {
        self.max_outstanding
    }

    /// Queues a request by name with raw arguments, without waiting: it leaves in the same
    /// write as the other queued requests when the client next waits for a reply (or
    /// [`flush_requests`](Self::flush_requests)). Pipelined raw calls send several, then
    /// collect each reply with [`wait_raw`](Self::wait_raw) or [`take_raw`](Self::take_raw).
    pub fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError> {
        self.session.send_raw(name, args)
    }

    /// [`send_raw`](Self::send_raw) with borrowed arguments: the same request, encoded
    /// straight into its record without copying the arguments first.
    pub fn send_raw_ref(&mut self, name: &str, args: &[&[u8]]) -> Result<u32, ClientError> {
        self.session.send_raw_ref(name, args)
    }

    /// The raw reply to request `id` if it has already arrived, without reading the socket;
    /// an error reply is [`ClientError::Server`].
    pub fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
        self.session.take_response(id)
    }

    /// Sends the queued requests and waits for the raw reply to request `id`; an error reply
    /// is [`ClientError::Server`], the end of the session is the error explaining it.
    pub fn wait_raw(&mut self, id: u32) -> Result<Vec<Vec<u8>>, ClientError> {
        self.pump(|s| s.take_response(id))?
    }

    /// Sends one raw request and waits for its raw reply.
    pub fn call_raw(
        &mut self,
        name: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let id = self.send_raw(name, args)?;
        self.wait_raw(id)
    }

    /// Writes the queued requests to the socket now.
    pub fn flush_requests(&mut self) -> Result<(), ClientError> {
        self.flush()?;
        Ok(())
    }

    /// The notices the server pushed that arrived while this client read the socket (during
    /// calls or [`poll_notices`](Self::poll_notices)), oldest first; none are read now.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.session.take_notices()
    }

    /// Waits at most `max_wait` for the server to push notices, without sending a request,
    /// and returns those that arrived (at once if some are queued already; empty when none
    /// came in time). Replies to requests in flight are kept for their calls. Fails if the
    /// session ends meanwhile.
    pub fn poll_notices(&mut self, max_wait: Duration) -> Result<Vec<Notice>, ClientError> {
        let until = Instant::now() + max_wait;
        loop {
            let processed = self.session.process(Instant::now());
            self.send_queued()?;
            processed?;
            if self.session.has_notices() {
                return Ok(self.session.take_notices());
            }
            if self.session.is_closed() {
                return Err(self.session.ended_error());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            let (_, result) = crate::feed::read_into(
                &mut self.stream,
                self.session.connection(),
                &mut self.buf,
                Some(left),
            )?;
            if let Err(e) = result {
                let error = self.session.failure(e);
                let _ = self.session.process(Instant::now());
                let _ = self.flush();
                if self.session.has_notices() {
                    return Ok(self.session.take_notices());
                }
                return Err(error);
            }
        }
    }

    /// Ends the session politely: `quit`, then waits for the server's close.
    pub fn quit(mut self) -> Result<(), ClientError> {
        self.call(&Command::Quit)?;
        match self.pump(|s| s.is_closed().then_some(())) {
            Ok(())
            | Err(ClientError::ClosedByServer {
                code: CloseCode::Normal,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Closes the session from the client side without `quit`.
    pub fn close(mut self) -> Result<(), ClientError> {
        self.session
            .connection()
            .close(CloseCode::Normal, "client done");
        self.flush()?;
        Ok(())
    }

    /// Writes what the connection queued; when that fails after the server closed the
    /// session, reports the server's close instead (its socket may be gone already, and
    /// our answer to its close then meets a reset).
    fn send_queued(&mut self) -> Result<(), ClientError> {
        match self.flush() {
            Err(_) if self.session.is_closed() => Err(self.session.ended_error()),
            other => Ok(other?),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.clear();
        self.session.connection().poll_transmit(&mut self.out);
        if !self.out.is_empty() {
            self.stream.write_all(&self.out)?;
        }
        Ok(())
    }

    /// Drives the connection until `done` yields a value, the session ends, a timer fires,
    /// or nothing arrives for the response timeout.
    fn pump<T>(
        &mut self,
        mut done: impl FnMut(&mut ClientSession) -> Option<T>,
    ) -> Result<T, ClientError> {
        let mut last_input = Instant::now();
        loop {
            let processed = self.session.process(Instant::now());
            self.send_queued()?;
            processed?;
            if let Some(value) = done(&mut self.session) {
                return Ok(value);
            }
            if self.session.is_closed() {
                return Err(self.session.ended_error());
            }
            let cap = match self.response_timeout {
                Some(limit) => {
                    let left = (last_input + limit).saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::NoReply(limit));
                    }
                    Some(left)
                }
                None => None,
            };
            let (received, result) = crate::feed::read_into(
                &mut self.stream,
                self.session.connection(),
                &mut self.buf,
                cap,
            )?;
            if received > 0 {
                last_input = Instant::now();
            }
            if let Err(e) = result {
                // The session keeps the failure, so the next call reports it too.
                let error = self.session.failure(e);
                // Deliver what arrived before the failure (a reply, a close), then report.
                let _ = self.session.process(Instant::now());
                let _ = self.flush();
                if let Some(value) = done(&mut self.session) {
                    return Ok(value);
                }
                return Err(error);
            }
        }
    }
}

fn connect_any(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("'{addr}' resolves to no address"),
    );
    for sock in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&sock, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}
