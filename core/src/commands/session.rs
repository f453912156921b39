//! The session commands: `hello`, `ver`, `id`, `help`, `ping`, `quit` and `tout` (the idle
//! timeout): their argument and reply codecs and sample values.

use super::args::{decimal, number, text, usage_error, utf8};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::wire::{ErrorCode, ErrorReply};

/// Largest ping payload (fits one record with its framing).
pub const MAX_PING_PAYLOAD: usize = 16000;

/// Parses the arguments of a session command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    Ok(match (kind, args) {
        (CommandKind::Hello, []) => Command::Hello,
        (CommandKind::Ver, []) => Command::Ver,
        (CommandKind::Id, []) => Command::Id,
        (CommandKind::Quit, []) => Command::Quit,
        (CommandKind::Help, []) => Command::Help { topic: None },
        (CommandKind::Help, [t]) => Command::Help {
            topic: Some(utf8(t, kind)?),
        },
        (CommandKind::Ping, []) => Command::Ping {
            payload: Vec::new(),
        },
        (CommandKind::Ping, [p]) => {
            if p.len() > MAX_PING_PAYLOAD {
                return Err(ErrorReply::new(
                    ErrorCode::TooLarge,
                    format!("ping payload is limited to {MAX_PING_PAYLOAD} bytes"),
                ));
            }
            Command::Ping { payload: p.clone() }
        }
        (CommandKind::Tout, []) => Command::Tout { seconds: None },
        (CommandKind::Tout, [n]) => Command::Tout {
            seconds: Some(decimal(n).ok_or_else(|| usage_error(kind))?),
        },
        _ => return Err(usage_error(kind)),
    })
}

/// The wire arguments of a session command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Help { topic: Some(t) } => vec![text(t)],
        Command::Ping { payload } => vec![payload.clone()],
        Command::Tout { seconds: Some(n) } => vec![number(n)],
        _ => Vec::new(),
    }
}

/// Decodes the reply to a session command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Hello => {
            fields.want(1)?;
            Ok(Reply::Greeting(fields.text(0)?))
        }
        Command::Help { .. } => {
            fields.want(1)?;
            Ok(Reply::Help(fields.text(0)?))
        }
        Command::Ver => {
            fields.want(2)?;
            let protocol = fields
                .text(0)?
                .parse()
                .map_err(|_| Error::Malformed("protocol version"))?;
            Ok(Reply::Version {
                protocol,
                software: fields.text(1)?,
            })
        }
        Command::Id => {
            fields.want(2)?;
            let fingerprint = fields
                .text(1)?
                .parse()
                .map_err(|_| Error::Malformed("fingerprint"))?;
            Ok(Reply::Identity {
                name: fields.text(0)?,
                fingerprint,
            })
        }
        Command::Ping { .. } => fields.one(|p| Ok(Reply::Pong(p.to_vec()))),
        Command::Quit => fields.want(0).map(|()| Reply::Bye),
        Command::Tout { .. } => fields.one(|n| {
            decimal(n)
                .map(Reply::IdleTimeout)
                .ok_or(Error::Malformed("idle timeout seconds"))
        }),
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample session commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::Hello,
        Command::Ver,
        Command::Id,
        Command::Help { topic: None },
        Command::Help {
            topic: Some("ls".into()),
        },
        Command::Ping {
            payload: Vec::new(),
        },
        Command::Ping {
            payload: b"fuzz".to_vec(),
        },
        Command::Quit,
        Command::Tout { seconds: None },
        Command::Tout { seconds: Some(60) },
    ]
}

/// Sample replies to a session command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, values: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Hello => vec![Reply::Greeting("hello".into())],
        Command::Ver => vec![Reply::Version {
            protocol: crate::wire::PROTOCOL_VERSION,
            software: crate::SOFTWARE_VERSION.into(),
        }],
        Command::Id => vec![Reply::Identity {
            name: "fuzz".into(),
            fingerprint: values.fingerprint,
        }],
        Command::Help { topic } => super::help_text(topic.as_deref())
            .map(Reply::Help)
            .into_iter()
            .collect(),
        Command::Ping { payload } => vec![Reply::Pong(payload.clone())],
        Command::Quit => vec![Reply::Bye],
        Command::Tout { .. } => vec![Reply::IdleTimeout(300), Reply::IdleTimeout(u64::MAX)],
        _ => Vec::new(),
    }
}
