//! The typed command set (protocol v1) on top of [`Request`]/[`Response`].
//!
//! Adding a command means: a [`Command`] variant, its [`COMMANDS`] entry, its [`Reply`] shape.
//! Servers dispatch on [`Command::parse`], which answers unknown names and bad arguments with
//! typed [`ErrorReply`]s instead of failing the connection.

use crate::Error;
use crate::secure::Fingerprint;
use crate::wire::{ErrorCode, ErrorReply, Request};

/// One command's documentation, served by `help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// Wire name.
    pub name: &'static str,
    /// Arguments, as shown to users.
    pub usage: &'static str,
    /// One-line description.
    pub summary: &'static str,
}

/// Every command of this protocol version, in help order.
pub const COMMANDS: &[CommandInfo] = &[
    CommandInfo {
        name: "hello",
        usage: "hello",
        summary: "greet the server; replies with a greeting naming it",
    },
    CommandInfo {
        name: "ver",
        usage: "ver",
        summary: "protocol and software version of the server",
    },
    CommandInfo {
        name: "id",
        usage: "id",
        summary: "the server's name and identity key fingerprint",
    },
    CommandInfo {
        name: "help",
        usage: "help [command]",
        summary: "list commands, or describe one",
    },
    CommandInfo {
        name: "ping",
        usage: "ping [payload]",
        summary: "echo the payload (up to 16000 bytes)",
    },
    CommandInfo {
        name: "quit",
        usage: "quit",
        summary: "end the session; the server replies and closes",
    },
];

/// Largest ping payload (fits one record with its framing).
pub const MAX_PING_PAYLOAD: usize = 16000;

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `hello`
    Hello,
    /// `ver`
    Ver,
    /// `id`
    Id,
    /// `help [command]`
    Help {
        /// Command to describe; `None` lists all.
        topic: Option<String>,
    },
    /// `ping [payload]`
    Ping {
        /// Bytes to echo.
        payload: Vec<u8>,
    },
    /// `quit`
    Quit,
}

impl Command {
    /// The wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Hello => "hello",
            Command::Ver => "ver",
            Command::Id => "id",
            Command::Help { .. } => "help",
            Command::Ping { .. } => "ping",
            Command::Quit => "quit",
        }
    }

    /// The wire arguments.
    pub fn args(&self) -> Vec<Vec<u8>> {
        match self {
            Command::Help { topic: Some(t) } => vec![t.as_bytes().to_vec()],
            Command::Ping { payload } => vec![payload.clone()],
            _ => Vec::new(),
        }
    }

    /// Parses a request into a command, or the error reply to send back.
    pub fn parse(req: &Request) -> Result<Command, ErrorReply> {
        let argc = req.args.len();
        let bad = |usage: &str| ErrorReply::new(ErrorCode::BadArguments, format!("usage: {usage}"));
        let cmd = match req.name.as_str() {
            "hello" if argc == 0 => Command::Hello,
            "ver" if argc == 0 => Command::Ver,
            "id" if argc == 0 => Command::Id,
            "quit" if argc == 0 => Command::Quit,
            "help" if argc <= 1 => {
                let topic = match req.args.first() {
                    Some(t) => {
                        Some(String::from_utf8(t.clone()).map_err(|_| bad("help [command]"))?)
                    }
                    None => None,
                };
                Command::Help { topic }
            }
            "ping" if argc <= 1 => {
                let payload = req.args.first().cloned().unwrap_or_default();
                if payload.len() > MAX_PING_PAYLOAD {
                    return Err(ErrorReply::new(
                        ErrorCode::TooLarge,
                        format!("ping payload is limited to {MAX_PING_PAYLOAD} bytes"),
                    ));
                }
                Command::Ping { payload }
            }
            name => {
                return Err(match COMMANDS.iter().find(|c| c.name == name) {
                    Some(info) => bad(info.usage),
                    None => ErrorReply::new(
                        ErrorCode::UnknownCommand,
                        format!("unknown command '{name}'; try 'help'"),
                    ),
                });
            }
        };
        Ok(cmd)
    }
}

/// The typed answer of each command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `hello`: a greeting naming the server.
    Greeting(String),
    /// `ver`: `[protocol version (decimal), software version]`.
    Version {
        /// Protocol version.
        protocol: u16,
        /// Software name and version.
        software: String,
    },
    /// `id`: `[server name, fingerprint text]`.
    Identity {
        /// Configured server name.
        name: String,
        /// Fingerprint of the server identity key.
        fingerprint: Fingerprint,
    },
    /// `help`: text.
    Help(String),
    /// `ping`: the payload.
    Pong(Vec<u8>),
    /// `quit`: no fields.
    Bye,
}

impl Reply {
    /// The response fields.
    pub fn to_fields(&self) -> Vec<Vec<u8>> {
        match self {
            Reply::Greeting(s) | Reply::Help(s) => vec![s.as_bytes().to_vec()],
            Reply::Version { protocol, software } => {
                vec![
                    protocol.to_string().into_bytes(),
                    software.as_bytes().to_vec(),
                ]
            }
            Reply::Identity { name, fingerprint } => {
                vec![
                    name.as_bytes().to_vec(),
                    fingerprint.to_string().into_bytes(),
                ]
            }
            Reply::Pong(p) => vec![p.clone()],
            Reply::Bye => Vec::new(),
        }
    }

    /// Decodes the fields of a successful response to `cmd`.
    pub fn from_fields(cmd: &Command, fields: &[Vec<u8>]) -> Result<Reply, Error> {
        let text = |i: usize| -> Result<String, Error> {
            let f = fields.get(i).ok_or(Error::Malformed("reply fields"))?;
            String::from_utf8(f.clone()).map_err(|_| Error::Malformed("reply text"))
        };
        let want = |n: usize| {
            if fields.len() == n {
                Ok(())
            } else {
                Err(Error::Malformed("reply field count"))
            }
        };
        Ok(match cmd {
            Command::Hello => {
                want(1)?;
                Reply::Greeting(text(0)?)
            }
            Command::Help { .. } => {
                want(1)?;
                Reply::Help(text(0)?)
            }
            Command::Ver => {
                want(2)?;
                let protocol = text(0)?
                    .parse()
                    .map_err(|_| Error::Malformed("protocol version"))?;
                Reply::Version {
                    protocol,
                    software: text(1)?,
                }
            }
            Command::Id => {
                want(2)?;
                let fingerprint = text(1)?
                    .parse()
                    .map_err(|_| Error::Malformed("fingerprint"))?;
                Reply::Identity {
                    name: text(0)?,
                    fingerprint,
                }
            }
            Command::Ping { .. } => {
                want(1)?;
                Reply::Pong(fields[0].clone())
            }
            Command::Quit => {
                want(0)?;
                Reply::Bye
            }
        })
    }
}

/// The `help` text: all commands, or one command's usage.
pub fn help_text(topic: Option<&str>) -> Result<String, ErrorReply> {
    match topic {
        None => Ok(COMMANDS
            .iter()
            .map(|c| format!("{:<16} {}\n", c.usage, c.summary))
            .collect()),
        Some(name) => COMMANDS
            .iter()
            .find(|c| c.name == name)
            .map(|c| format!("usage: {}\n{}\n", c.usage, c.summary))
            .ok_or_else(|| {
                ErrorReply::new(
                    ErrorCode::UnknownCommand,
                    format!("no command named '{name}'"),
                )
            }),
    }
}
