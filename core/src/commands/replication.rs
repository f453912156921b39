//! The replication commands: `peer`, with which a dialing server proves its key and turns
//! the connection into a replication link (spec/replication.md §2): its argument and reply
//! codecs and sample values.

use super::args::usage_error;
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::wire::ErrorReply;
#[cfg(any(test, feature = "fuzzing"))]
use crate::wire::{POINT_LEN, SIGNATURE_LEN};

/// Parses the arguments of a replication command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    let bad = || usage_error(kind);
    Ok(match (kind, args) {
        (CommandKind::Peer, [key, signature]) => Command::Peer {
            key: key.as_slice().try_into().map_err(|_| bad())?,
            signature: signature.as_slice().try_into().map_err(|_| bad())?,
        },
        _ => return Err(bad()),
    })
}

/// The wire arguments of a replication command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Peer { key, signature } => vec![key.to_vec(), signature.to_vec()],
        _ => Vec::new(),
    }
}

/// Decodes the reply to a replication command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Peer { .. } => fields.want(0).map(|()| Reply::Done),
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample replication commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    let mut key = [2u8; POINT_LEN];
    key[1] = 7;
    vec![Command::Peer {
        key,
        signature: [9u8; SIGNATURE_LEN],
    }]
}

/// Sample replies to a replication command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, _values: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Peer { .. } => vec![Reply::Done],
        _ => Vec::new(),
    }
}
