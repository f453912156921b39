//! Server-side command handling.

use vserv_core::commands::{self, Command, Reply};
use vserv_core::wire::PROTOCOL_VERSION;
use vserv_core::{
    CloseCode, Connection, Error, ErrorCode, ErrorReply, Event, Fingerprint, Request, Response,
};

/// What the server says about itself.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Human-readable server name (reported by `hello` and `id`).
    pub name: String,
    /// Fingerprint of the server identity key.
    pub fingerprint: Fingerprint,
}

/// The server's command handler. Stateless per request; one instance serves every connection.
#[derive(Debug, Clone)]
pub struct Service {
    info: ServiceInfo,
}

impl Service {
    /// A service describing itself with `info`.
    pub fn new(info: ServiceInfo) -> Self {
        Service { info }
    }

    /// What this server reports about itself.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// Answers one request. Returns the response and whether the connection should close
    /// after sending it (`quit`). Never fails: bad requests get typed error responses.
    pub fn handle(&self, request: &Request) -> (Response, bool) {
        let (result, close) = match Command::parse(request) {
            Err(e) => (Err(e), false),
            Ok(cmd) => {
                let close = cmd == Command::Quit;
                (self.execute(&cmd).map(|r| r.to_fields()), close)
            }
        };
        (
            Response {
                id: request.id,
                result,
            },
            close,
        )
    }

    fn execute(&self, cmd: &Command) -> Result<Reply, ErrorReply> {
        Ok(match cmd {
            Command::Hello => {
                Reply::Greeting(format!("hello from vserv server '{}'", self.info.name))
            }
            Command::Ver => Reply::Version {
                protocol: PROTOCOL_VERSION,
                software: format!("vserv {}", vserv_core::SOFTWARE_VERSION),
            },
            Command::Id => Reply::Identity {
                name: self.info.name.clone(),
                fingerprint: self.info.fingerprint,
            },
            Command::Help { topic } => Reply::Help(commands::help_text(topic.as_deref())?),
            Command::Ping { payload } => Reply::Pong(payload.clone()),
            Command::Quit => Reply::Bye,
        })
    }

    /// Drains the connection's events and answers every request on it. Call after each
    /// `handle_input`/`handle_timeout`, before draining `poll_transmit`.
    pub fn drive(&self, conn: &mut Connection) -> Result<(), Error> {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request(request) => {
                    let (response, close) = self.handle(&request);
                    tracing::debug!(id = request.id, command = %request.name, ok = response.result.is_ok(), "request");
                    match conn.respond(&response) {
                        Err(Error::PayloadTooLarge { .. }) => {
                            let too_large = ErrorReply::new(
                                ErrorCode::TooLarge,
                                "reply too large for one record",
                            );
                            conn.respond(&Response {
                                id: response.id,
                                result: Err(too_large),
                            })?;
                        }
                        other => other?,
                    }
                    if close {
                        conn.close(CloseCode::Normal, "bye");
                    }
                }
                Event::Connected { .. } => tracing::debug!("session established"),
                Event::Closed(close) => {
                    tracing::debug!(code = %close.code, reason = %close.reason, "peer closed")
                }
                Event::ServerKey(_) | Event::Response(_) => {}
            }
        }
        Ok(())
    }
}
