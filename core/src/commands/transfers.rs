//! The transfer commands (`fopen`, `fput`, `fdone`, `fget`, `fread`, `fclose`): the glue
//! between [`Command`] and the binary codecs of [`crate::transfer`], and sample values.

use super::reply::{Fields, Reply};
use super::{Command, CommandKind, args::usage_error};
use crate::Error;
use crate::transfer::{
    FcloseArgs, FdoneArgs, FdoneReply, FgetArgs, FgetReply, FopenArgs, FopenReply, FputArgs,
    FreadArgs, FreadReply,
};
use crate::wire::ErrorReply;

/// Parses the arguments of a transfer command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    Ok(match kind {
        CommandKind::Fopen => Command::Fopen(FopenArgs::parse(args)?),
        CommandKind::Fput => {
            let FputArgs { id, offset, data } = FputArgs::parse(args)?;
            Command::Fput {
                id,
                offset,
                data: data.to_vec(),
            }
        }
        CommandKind::Fdone => Command::Fdone(FdoneArgs::parse(args)?),
        CommandKind::Fget => Command::Fget(FgetArgs::parse(args)?),
        CommandKind::Fread => Command::Fread(FreadArgs::parse(args)?),
        CommandKind::Fclose => Command::Fclose(FcloseArgs::parse(args)?),
        _ => return Err(usage_error(kind)),
    })
}

/// The wire arguments of a transfer command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Fopen(a) => a.to_args(),
        Command::Fput { .. } => cmd.fput_args().map(|a| a.to_args()).unwrap_or_default(),
        Command::Fdone(a) => a.to_args(),
        Command::Fget(a) => a.to_args(),
        Command::Fread(a) => a.to_args(),
        Command::Fclose(a) => a.to_args(),
        _ => Vec::new(),
    }
}

/// Decodes the reply to a transfer command; an `fread` reply must carry exactly the bytes
/// asked for.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Fopen(_) => FopenReply::from_fields(fields.0).map(Reply::Opened),
        Command::Fdone(_) => FdoneReply::from_fields(fields.0).map(Reply::Uploaded),
        Command::Fget(_) => FgetReply::from_fields(fields.0).map(Reply::Download),
        Command::Fread(a) => {
            let reply = FreadReply::from_fields(fields.0.to_vec())?;
            if u32::try_from(reply.data.len()).ok() != Some(a.len) {
                return Err(Error::Malformed("fread reply length"));
            }
            Ok(Reply::Data(reply))
        }
        Command::Fput { .. } | Command::Fclose(_) => fields.want(0).map(|()| Reply::Done),
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample transfer commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::Fopen(FopenArgs {
            path: "f".into(),
            size: crate::transfer::MAX_FILE_SIZE,
            resume: false,
        }),
        Command::Fopen(FopenArgs {
            path: "d/f".into(),
            size: 0,
            resume: true,
        }),
        Command::Fput {
            id: 1,
            offset: 1 << 32,
            data: b"abc".to_vec(),
        },
        Command::Fdone(FdoneArgs {
            id: u32::MAX,
            sha256: [1; 32],
        }),
        Command::Fget(FgetArgs { path: "f".into() }),
        Command::Fread(FreadArgs {
            id: 2,
            offset: 0,
            len: 3,
        }),
        Command::Fclose(FcloseArgs { id: 2 }),
    ]
}

/// Sample replies to a transfer command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, _: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Fopen(_) => vec![Reply::Opened(FopenReply {
            id: 1,
            offset: u64::MAX,
            prefix_sha256: [2; 32],
        })],
        Command::Fdone(_) => vec![Reply::Uploaded(FdoneReply {
            size: 0,
            sha256: [3; 32],
        })],
        Command::Fget(_) => vec![Reply::Download(FgetReply {
            id: u32::MAX,
            size: 1 << 40,
            sha256: [4; 32],
        })],
        Command::Fread(a) => vec![Reply::Data(FreadReply {
            data: vec![5; usize::try_from(a.len).unwrap_or(0)],
        })],
        Command::Fput { .. } | Command::Fclose(_) => vec![Reply::Done],
        _ => Vec::new(),
    }
}
