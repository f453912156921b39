//! Async client: connect, handshake with trust decision, typed calls, raw and pipelined
//! requests. File transfers are in [`crate::transfer`].

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::{Duration, Instant};

use async_io::Timer;
use async_net::TcpStream;
use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use vserv_core::CloseCode;
use vserv_core::commands::{Command, Notice, Reply};
use vserv_service::client::{ClientError, ClientOptions, ClientSession};
use vserv_service::system::os_rng;

/// How long flushing the final close record may take once the session has ended.
const CLOSE_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// A connected, authenticated client session over TCP, driven by async-io.
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

/// What ended a wait for input.
enum Wake<O> {
    Read(io::Result<usize>),
    Timer,
    Other(O),
}

/// What ended a [`Client::pump_or`]: the awaited value, or the other future's output.
pub(crate) enum Woken<T, O> {
    /// The session yielded the awaited value.
    Done(T),
    /// The other future completed first.
    Other(O),
}

impl Client {
    /// Connects to `addr` (`HOST:PORT`, also the known_servers key) and completes the
    /// handshake, deciding trust on the server key per `options`.
    pub async fn connect(addr: &str, options: &ClientOptions) -> Result<Client, ClientError> {
        let timeout = options.config.handshake_timeout;
        let stream = connect_any(addr, timeout).await?;
        stream.set_nodelay(true)?;
        let session = ClientSession::new(addr, options, os_rng()?, Instant::now())?;
        let mut client = Client {
            stream,
            session,
            buf: vec![0u8; 64 * 1024],
            out: Vec::with_capacity(64 * 1024),
            max_outstanding: options.config.max_outstanding,
            response_timeout: options.response_timeout,
        };
        client.pump(|s| s.is_connected().then_some(())).await?;
        Ok(client)
    }

    /// The session state (server key, trust decision).
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// Sends one command and waits for its typed reply.
    pub async fn call(&mut self, command: &Command) -> Result<Reply, ClientError> {
        let id = self.session.send(command)?;
        self.pump(|s| s.take_reply(id, command)).await?
    }

    /// Sends `commands` pipelined, keeping up to `window` (at most the connection's
    /// `max_outstanding`) in flight, and returns each command's reply in order. The server
    /// executes them in order; consecutive `rput`s that arrive together share one durable
    /// commit. Fails as a whole only if the session ends; a refused command is an `Err` in its
    /// place.
    pub async fn call_pipelined(
        &mut self,
        commands: &[Command],
        window: usize,
    ) -> Result<Vec<Result<Reply, ClientError>>, ClientError> {
        let window = window.clamp(1, self.max_outstanding.max(1));
        let mut in_flight = VecDeque::with_capacity(window);
        let mut replies = Vec::with_capacity(commands.len());
        let mut next = commands.iter();
        loop {
            // Queue requests up to the window; the next wait flushes them in one write.
            while in_flight.len() < window {
                let Some(command) = next.next() else { break };
                in_flight.push_back((self.session.send(command)?, command));
            }
            let Some(&(id, command)) = in_flight.front() else {
                return Ok(replies);
            };
            replies.push(self.pump(|s| s.take_reply(id, command)).await?);
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

    /// Queues a request by name with raw arguments, without waiting: it leaves with the
    /// other queued requests when the client next waits for a reply. Collect its reply with
    /// [`wait_raw`](Self::wait_raw) or [`take_raw`](Self::take_raw).
    pub fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError> {
        self.session.send_raw(name, args)
    }

    /// The raw reply to request `id` if it has already arrived, without reading the socket;
    /// an error reply is [`ClientError::Server`].
    pub fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
        self.session.take_response(id)
    }

    /// Sends the queued requests and waits for the raw reply to request `id`; an error reply
    /// is [`ClientError::Server`], the end of the session is the error explaining it.
    pub async fn wait_raw(&mut self, id: u32) -> Result<Vec<Vec<u8>>, ClientError> {
        self.pump(|s| s.take_response(id)).await?
    }

    /// Sends one raw request and waits for its raw reply.
    pub async fn call_raw(
        &mut self,
        name: &str,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let id = self.send_raw(name, args)?;
        self.wait_raw(id).await
    }

    /// The notices the server pushed that arrived while this client read the socket (during
    /// calls or [`poll_notices`](Self::poll_notices)), oldest first; none are read now.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.session.take_notices()
    }

    /// Waits at most `max_wait` for the server to push notices, without sending a request,
    /// and returns those that arrived (at once if some are queued already; empty when none
    /// came in time). Replies to requests in flight are kept for their calls; the response
    /// timeout does not apply (nothing is awaited). Fails if the session ends meanwhile.
    pub async fn poll_notices(&mut self, max_wait: Duration) -> Result<Vec<Notice>, ClientError> {
        let until = Instant::now() + max_wait;
        let silence = self.response_timeout.take();
        let woken = self
            .pump_or(
                |s| s.has_notices().then(|| s.take_notices()),
                Timer::at(until),
            )
            .await;
        self.response_timeout = silence;
        match woken? {
            Woken::Done(notices) => Ok(notices),
            Woken::Other(_) => Ok(self.session.take_notices()),
        }
    }

    /// The session, for the transfer scheduler's requests (which never wait).
    pub(crate) fn session_mut(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// Ends the session politely: `quit`, then waits for the server's close.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.call(&Command::Quit).await?;
        match self.pump(|s| s.is_closed().then_some(())).await {
            Ok(())
            | Err(ClientError::ClosedByServer {
                code: CloseCode::Normal,
                ..
            }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Closes the session from the client side without `quit`.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.session
            .connection()
            .close(CloseCode::Normal, "client done");
        self.flush().await?;
        Ok(())
    }

    /// [`flush`](Self::flush); when that fails after the server closed the session,
    /// reports the server's close instead (its socket may be gone already, and our answer
    /// to its close then meets a reset).
    async fn send_queued(&mut self) -> Result<(), ClientError> {
        match self.flush().await {
            Err(_) if self.session.is_closed() => Err(self.session.ended_error()),
            other => other,
        }
    }

    /// Writes everything the connection has queued. The write may not outlive the
    /// connection's deadline (or a short grace period once it is closed).
    async fn flush(&mut self) -> Result<(), ClientError> {
        self.out.clear();
        let conn = self.session.connection();
        conn.poll_transmit(&mut self.out);
        if self.out.is_empty() {
            return Ok(());
        }
        let deadline = conn
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + CLOSE_FLUSH_GRACE);
        let stream = &mut self.stream;
        let out = &self.out;
        future::or(async { Ok(stream.write_all(out).await?) }, async {
            Timer::at(deadline).await;
            Err(ClientError::TimedOut)
        })
        .await
    }

    /// Drives the connection until `done` yields a value, the session ends, a timer fires,
    /// or nothing arrives for the response timeout.
    async fn pump<T>(
        &mut self,
        done: impl FnMut(&mut ClientSession) -> Option<T>,
    ) -> Result<T, ClientError> {
        match self.pump_or(done, future::pending::<()>()).await? {
            Woken::Done(value) => Ok(value),
            // A pending future never completes.
            Woken::Other(()) => Err(ClientError::ConnectionClosed),
        }
    }

    /// Like [`pump`](Self::pump), and also ends when `other` completes (raced only against
    /// the socket read and the timers, never against a write in progress, so ending early
    /// loses no bytes).
    pub(crate) async fn pump_or<T, O>(
        &mut self,
        mut done: impl FnMut(&mut ClientSession) -> Option<T>,
        other: impl Future<Output = O>,
    ) -> Result<Woken<T, O>, ClientError> {
        let mut other = pin!(other);
        let mut last_input = Instant::now();
        loop {
            let processed = self.session.process(Instant::now());
            self.send_queued().await?;
            processed?;
            if let Some(value) = done(&mut self.session) {
                return Ok(Woken::Done(value));
            }
            if self.session.is_closed() {
                return Err(self.session.ended_error());
            }
            let silence = self
                .response_timeout
                .map(|limit| (limit, last_input + limit));
            if let Some((limit, at)) = silence
                && Instant::now() >= at
            {
                return Err(ClientError::NoReply(limit));
            }
            let deadline = match (self.session.connection().poll_timeout(), silence) {
                (Some(timer), Some((_, at))) => Some(timer.min(at)),
                (timer, silence) => timer.or(silence.map(|(_, at)| at)),
            };
            let stream = &mut self.stream;
            let buf = &mut self.buf;
            let input = future::or(async { Wake::Read(stream.read(buf).await) }, async {
                match deadline {
                    Some(deadline) => Timer::at(deadline).await,
                    None => Timer::never().await,
                };
                Wake::Timer
            });
            let wake = future::or(input, async { Wake::Other(other.as_mut().await) }).await;
            let conn = self.session.connection();
            let result = match wake {
                Wake::Read(Ok(0)) => conn.handle_eof(Instant::now()),
                Wake::Read(Ok(n)) => {
                    last_input = Instant::now();
                    match self.buf.get(..n) {
                        Some(data) => conn.handle_input(Instant::now(), data),
                        None => Ok(()),
                    }
                }
                Wake::Read(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
                Wake::Read(Err(e)) => return Err(e.into()),
                Wake::Timer => conn.handle_timeout(Instant::now()),
                Wake::Other(output) => return Ok(Woken::Other(output)),
            };
            if let Err(e) = result {
                // The session keeps the failure, so the next call reports it too.
                let error = self.session.failure(e);
                // Deliver what arrived before the failure (a reply, a close), then report.
                let _ = self.session.process(Instant::now());
                let _ = self.flush().await;
                if let Some(value) = done(&mut self.session) {
                    return Ok(Woken::Done(value));
                }
                return Err(error);
            }
        }
    }
}

/// Connects to the first address `addr` resolves to that accepts within `timeout`.
async fn connect_any(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("'{addr}' resolves to no address"),
    );
    for sock in async_net::resolve(addr).await? {
        let attempt = future::or(TcpStream::connect(sock), async {
            Timer::after(timeout).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {sock} timed out"),
            ))
        })
        .await;
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}
