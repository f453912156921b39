//! The transit commands (spec/transit.md §5): `tkey` (a user's named keys: new, list,
//! rotate, del, min), `seal`, `unseal`, `rewrap` and `gk`: their value types
//! ([`TkeyAction`], [`TransitKeyInfo`]), argument and reply codecs and sample values. The
//! token format and the cryptography are [`crate::transit`]'s.

use super::args::{decimal, number, text, usage_error, utf8};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::transit::{MAX_SEAL_DATA, check_key_name};
use crate::wire::{ErrorCode, ErrorReply};

/// Bytes `gk` returns without an argument.
pub const GK_DEFAULT_BYTES: u32 = 32;
/// The most bytes one `gk` returns.
pub const GK_MAX_BYTES: u32 = 1024;

/// Longest encoded [`TransitKeyInfo`]: a 32-byte name, two 10-digit versions, a 20-digit
/// time, three tabs.
pub const MAX_ENCODED_TRANSIT_KEY: usize = 32 + 10 + 10 + 20 + 3;

/// What `tkey` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TkeyAction {
    /// `tkey new NAME`: a new key, at version 1.
    New(String),
    /// `tkey list`: one's keys.
    List,
    /// `tkey rotate NAME`: a new version, which seals from now on.
    Rotate(String),
    /// `tkey del NAME`: the key and every version (tokens under it never open again).
    Del(String),
    /// `tkey min USER NAME VERSION`: versions below VERSION no longer unseal or rewrap
    /// (admins for any user, users for themselves).
    Min {
        /// The key's owner.
        user: String,
        /// The key.
        name: String,
        /// The lowest version still allowed, 1 to the key's latest.
        version: u32,
    },
}

/// One key as `tkey list` shows it (never its material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKeyInfo {
    /// The key's name.
    pub name: String,
    /// The newest version (the one `seal` and `rewrap` use).
    pub latest: u32,
    /// The lowest version that still unseals.
    pub min_version: u32,
    /// When the key was made, Unix seconds.
    pub created: u64,
}

impl TransitKeyInfo {
    /// The field: `name TAB latest TAB min_version TAB created`.
    pub fn to_field(&self) -> Vec<u8> {
        format!(
            "{}\t{}\t{}\t{}",
            self.name, self.latest, self.min_version, self.created
        )
        .into_bytes()
    }

    /// Decodes [`TransitKeyInfo::to_field`]'s output; anything else is malformed.
    pub fn from_field(field: &[u8]) -> Result<TransitKeyInfo, Error> {
        let bad = || Error::Malformed("transit key summary");
        let s = std::str::from_utf8(field).map_err(|_| bad())?;
        let parts: Vec<&str> = s.split('\t').collect();
        let [name, latest, min, created] = parts.as_slice() else {
            return Err(bad());
        };
        check_key_name(name).map_err(|_| bad())?;
        let version = |t: &str| {
            decimal(t.as_bytes())
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(bad)
        };
        Ok(TransitKeyInfo {
            name: (*name).to_owned(),
            latest: version(latest)?,
            min_version: version(min)?,
            created: decimal(created.as_bytes()).ok_or_else(bad)?,
        })
    }
}

/// A key name argument: the user-name rules in normal form.
fn key_name(arg: &[u8], kind: CommandKind) -> Result<String, ErrorReply> {
    let name = utf8(arg, kind)?;
    check_key_name(&name).map_err(|why| ErrorReply::new(ErrorCode::BadArguments, why))?;
    Ok(name)
}

/// Parses the arguments of a transit command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    let bad = || usage_error(kind);
    let verb = |a: &[u8], v: &str| a == v.as_bytes();
    Ok(match (kind, args) {
        (CommandKind::Tkey, [v]) if verb(v, "list") => Command::Tkey(TkeyAction::List),
        (CommandKind::Tkey, [v, n]) if verb(v, "new") => {
            Command::Tkey(TkeyAction::New(key_name(n, kind)?))
        }
        (CommandKind::Tkey, [v, n]) if verb(v, "rotate") => {
            Command::Tkey(TkeyAction::Rotate(key_name(n, kind)?))
        }
        (CommandKind::Tkey, [v, n]) if verb(v, "del") => {
            Command::Tkey(TkeyAction::Del(key_name(n, kind)?))
        }
        (CommandKind::Tkey, [v, u, n, version]) if verb(v, "min") => {
            Command::Tkey(TkeyAction::Min {
                user: utf8(u, kind)?,
                name: key_name(n, kind)?,
                version: decimal(version)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(bad)?,
            })
        }
        (CommandKind::Seal, [n, data]) => {
            if data.len() > MAX_SEAL_DATA {
                return Err(ErrorReply::new(
                    ErrorCode::TooLarge,
                    format!("seal takes at most {MAX_SEAL_DATA} bytes at once"),
                ));
            }
            Command::Seal {
                name: key_name(n, kind)?,
                data: data.clone(),
            }
        }
        (CommandKind::Unseal, [n, token]) => Command::Unseal {
            name: key_name(n, kind)?,
            token: token.clone(),
        },
        (CommandKind::Rewrap, [n, token]) => Command::Rewrap {
            name: key_name(n, kind)?,
            token: token.clone(),
        },
        (CommandKind::Gk, []) => Command::Gk { bytes: None },
        (CommandKind::Gk, [n]) => {
            let n = decimal(n)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)?;
            if !(1..=GK_MAX_BYTES).contains(&n) {
                return Err(ErrorReply::new(
                    ErrorCode::BadArguments,
                    format!("gk hands out 1 to {GK_MAX_BYTES} bytes"),
                ));
            }
            Command::Gk { bytes: Some(n) }
        }
        _ => return Err(bad()),
    })
}

/// The wire arguments of a transit command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Tkey(TkeyAction::List) => vec![text("list")],
        Command::Tkey(TkeyAction::New(n)) => vec![text("new"), text(n)],
        Command::Tkey(TkeyAction::Rotate(n)) => vec![text("rotate"), text(n)],
        Command::Tkey(TkeyAction::Del(n)) => vec![text("del"), text(n)],
        Command::Tkey(TkeyAction::Min {
            user,
            name,
            version,
        }) => vec![text("min"), text(user), text(name), number(version)],
        Command::Seal { name, data } => vec![text(name), data.clone()],
        Command::Unseal { name, token } | Command::Rewrap { name, token } => {
            vec![text(name), token.clone()]
        }
        Command::Gk { bytes } => bytes.iter().map(number).collect(),
        _ => Vec::new(),
    }
}

/// Decodes the reply to a transit command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Tkey(TkeyAction::New(_) | TkeyAction::Rotate(_)) => {
            fields.want(1)?;
            let v = fields.decimal(0, "key version")?;
            u32::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .map(Reply::KeyVersion)
                .ok_or(Error::Malformed("key version"))
        }
        Command::Tkey(TkeyAction::Del(_) | TkeyAction::Min { .. }) => {
            fields.want(0).map(|()| Reply::Done)
        }
        Command::Tkey(TkeyAction::List) => (0..fields.0.len())
            .map(|i| fields.get(i).and_then(TransitKeyInfo::from_field))
            .collect::<Result<_, _>>()
            .map(Reply::TransitKeys),
        Command::Seal { .. } | Command::Rewrap { .. } => {
            fields.want(1)?;
            fields.text(0).map(Reply::Token)
        }
        Command::Unseal { .. } => fields.one(|f| Ok(Reply::Unsealed(f.to_vec()))),
        Command::Gk { .. } => fields.one(|f| Ok(Reply::KeyMaterial(f.to_vec()))),
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample transit commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::Tkey(TkeyAction::New("payroll".into())),
        Command::Tkey(TkeyAction::List),
        Command::Tkey(TkeyAction::Rotate("payroll".into())),
        Command::Tkey(TkeyAction::Del("payroll".into())),
        Command::Tkey(TkeyAction::Min {
            user: "alice".into(),
            name: "payroll".into(),
            version: 2,
        }),
        Command::Seal {
            name: "payroll".into(),
            data: b"4111".to_vec(),
        },
        Command::Seal {
            name: "k".into(),
            data: Vec::new(),
        },
        Command::Unseal {
            name: "payroll".into(),
            token: b"vserv:v1:payroll:1:AAAA".to_vec(),
        },
        Command::Rewrap {
            name: "payroll".into(),
            token: b"vserv:v1:payroll:1:AAAA".to_vec(),
        },
        Command::Gk { bytes: None },
        Command::Gk { bytes: Some(64) },
    ]
}

/// Sample replies to a transit command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, _: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Tkey(TkeyAction::New(_) | TkeyAction::Rotate(_)) => {
            vec![Reply::KeyVersion(1), Reply::KeyVersion(u32::MAX)]
        }
        Command::Tkey(TkeyAction::Del(_) | TkeyAction::Min { .. }) => vec![Reply::Done],
        Command::Tkey(TkeyAction::List) => vec![
            Reply::TransitKeys(Vec::new()),
            Reply::TransitKeys(vec![TransitKeyInfo {
                name: "payroll".into(),
                latest: 3,
                min_version: 2,
                created: 1_700_000_000,
            }]),
        ],
        Command::Seal { .. } | Command::Rewrap { .. } => {
            vec![Reply::Token("vserv:v1:payroll:1:AAAA".into())]
        }
        Command::Unseal { .. } => vec![Reply::Unsealed(Vec::new()), Reply::Unsealed(vec![0, 1])],
        Command::Gk { .. } => vec![Reply::KeyMaterial(vec![7; 32])],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Request;

    fn parse(args: &[&[u8]], name: &str) -> Result<Command, ErrorReply> {
        Command::parse(&Request {
            id: 1,
            name: name.into(),
            args: args.iter().map(|a| a.to_vec()).collect(),
        })
    }

    #[test]
    fn bad_arguments_get_typed_errors() {
        let code = |r: Result<Command, ErrorReply>| r.map_err(|e| e.code);
        assert_eq!(
            code(parse(&[b"new", b"Payroll"], "tkey")),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            code(parse(&[b"new", b"a:b"], "tkey")),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            code(parse(&[b"make", b"k"], "tkey")),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            code(parse(&[b"min", b"alice", b"k", b"0"], "tkey")),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            code(parse(&[b"k", &vec![0; MAX_SEAL_DATA + 1]], "seal")),
            Err(ErrorCode::TooLarge)
        );
        assert!(parse(&[b"k", &vec![0; MAX_SEAL_DATA]], "seal").is_ok());
        assert_eq!(code(parse(&[b"0"], "gk")), Err(ErrorCode::BadArguments));
        assert_eq!(code(parse(&[b"1025"], "gk")), Err(ErrorCode::BadArguments));
        assert_eq!(
            code(parse(&[b"1024"], "gk")).map(|c| c.kind()),
            Ok(CommandKind::Gk)
        );
    }

    #[test]
    fn key_summaries_refuse_what_they_would_not_write() {
        for bad in [
            &b"k\t1\t1"[..],
            b"K\t1\t1\t0",
            b"k\t0\t1\t0",
            b"k\t1\t1\t-1",
            b"k\t1\t1\t0\t",
        ] {
            assert!(TransitKeyInfo::from_field(bad).is_err(), "{bad:?}");
        }
    }
}
