//! The ledger commands (`rput`, `rget`, `rhave`, `rabs`, `rsize`, `rcount`, `rlist`,
//! `rhead`, `rcheck`): their limits, value types, argument and reply codecs and sample
//! values, and the optional ORIGIN argument of the reads (which held feed they read).

use super::args::{decimal, hex_encode, hex32, number, page_limit, text, usage_error, utf8};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::ledger::{Entry, MAX_BODY, MAX_ENCODED_ENTRY, SignedHead, check_kind, check_record_id};
use crate::secure::Fingerprint;
use crate::secure::identity::FINGERPRINT_PREFIX;
use crate::wire::{ErrorCode, ErrorReply, MAX_PAYLOAD};

/// The page size of `rlist` without a LIMIT argument.
pub const RLIST_DEFAULT_LIMIT: u32 = 100;

/// The largest LIMIT `rlist` accepts.
pub const RLIST_MAX_LIMIT: u32 = 1000;

/// Bytes of an `rlist` response that are not entries: the response header (type, id,
/// status, field count: 8 bytes) and the `next` field (4-byte length, up to 20 digits).
pub const RLIST_OVERHEAD: usize = 8 + 4 + 20;

/// Room for entries in one `rlist` response: an entry costs 4 bytes (its field length) plus
/// its encoding. A server fills a page up to this budget, so the response always fits one
/// record ([`MAX_PAYLOAD`]).
pub const RLIST_ENTRY_BUDGET: usize = MAX_PAYLOAD - RLIST_OVERHEAD;

// The largest entry fits a page on its own, so a page holds at least one entry whenever one
// matches.
const _: () = assert!(4 + MAX_ENCODED_ENTRY <= RLIST_ENTRY_BUDGET);

/// Which entry `rget` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSelector {
    /// `seq N`: the entry at this seq (decimal on the wire).
    Seq(u64),
    /// `id RECORD_ID`: the entry with this client record id (raw bytes on the wire).
    Id(Vec<u8>),
    /// `hash HEX`: the entry with this hash (64 lower- or upper-case hex digits on the wire).
    Hash([u8; 32]),
}

/// An inclusive range of seqs `from..=to`, as `rcount`, `rlist` and `rcheck` take it.
/// [`Command::parse`] only builds ranges with `1 <= from <= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    /// The first seq of the range.
    pub from: u64,
    /// The last seq of the range.
    pub to: u64,
}

/// A kind argument (see [`check_kind`]).
fn kind_arg(arg: &[u8], kind: CommandKind) -> Result<String, ErrorReply> {
    check_kind(arg).map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
    utf8(arg, kind)
}

/// A non-zero position: an optional `-` and 1 to 19 decimal digits that fit an `i64`.
fn position(arg: &[u8], kind: CommandKind) -> Result<i64, ErrorReply> {
    let digits = arg.strip_prefix(b"-").unwrap_or(arg);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(usage_error(kind));
    }
    let pos: i64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| usage_error(kind))?;
    if pos == 0 {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            "position 0 does not exist: 1 is the first entry, -1 the last",
        ));
    }
    Ok(pos)
}

/// `FROM TO`: two decimal seqs with `1 <= FROM <= TO`.
fn seq_range(from: &[u8], to: &[u8], kind: CommandKind) -> Result<SeqRange, ErrorReply> {
    let (Some(from), Some(to)) = (decimal(from), decimal(to)) else {
        return Err(usage_error(kind));
    };
    if from == 0 || to == 0 {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            "seqs start at 1: FROM and TO must be at least 1",
        ));
    }
    if from > to {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            format!("reversed range: FROM ({from}) is after TO ({to})"),
        ));
    }
    Ok(SeqRange { from, to })
}

/// Decimal text of a seq range, as two arguments.
fn range_args(range: &SeqRange) -> [Vec<u8>; 2] {
    [number(range.from), number(range.to)]
}

/// The argument counts of a read's forms without an origin (`rget seq N` is 2, `rsize` and
/// `rsize KIND` are 0 and 1, ...); empty for `rput`, which never takes one.
pub(super) fn forms(kind: CommandKind) -> &'static [usize] {
    match kind {
        CommandKind::Rget => &[2],
        CommandKind::Rhave | CommandKind::Rabs => &[1],
        CommandKind::Rsize => &[0, 1],
        CommandKind::Rcount => &[3],
        CommandKind::Rlist => &[3, 4],
        CommandKind::Rhead => &[0],
        CommandKind::Rcheck => &[0, 2],
        _ => &[],
    }
}

/// Splits a read's optional ORIGIN off its arguments. ORIGIN is an extra last argument: it
/// is there when the arguments before it make one of the read's [`forms`] and either all
/// the arguments do not, or the last one starts with `SHA256:` (which no kind, limit, seq
/// or position can, so `rsize KIND` and `rlist`'s LIMIT stay what they were). Anything in
/// ORIGIN's place must be a fingerprint: `SHA256:` and 64 hex digits (either case).
fn split_origin(
    kind: CommandKind,
    args: &[Vec<u8>],
) -> Result<(&[Vec<u8>], Option<Fingerprint>), ErrorReply> {
    let forms = forms(kind);
    let Some((last, before)) = args.split_last() else {
        return Ok((args, None));
    };
    let tagged = last.starts_with(FINGERPRINT_PREFIX.as_bytes());
    if !forms.contains(&before.len()) || (forms.contains(&args.len()) && !tagged) {
        return Ok((args, None));
    }
    if !tagged {
        return Err(usage_error(kind));
    }
    let origin = std::str::from_utf8(last)
        .ok()
        .and_then(|t| t.parse::<Fingerprint>().ok())
        .ok_or_else(|| {
            ErrorReply::new(
                ErrorCode::BadArguments,
                "ORIGIN must be a server key fingerprint: SHA256: followed by 64 hex digits",
            )
        })?;
    Ok((before, Some(origin)))
}

impl Command {
    /// The feed a ledger read names (its ORIGIN argument): `None` for the server's own
    /// feed, and for every command that is not a ledger read (`rput` included).
    pub fn origin(&self) -> Option<&Fingerprint> {
        match self {
            Command::Rget { origin, .. }
            | Command::Rhave { origin, .. }
            | Command::Rabs { origin, .. }
            | Command::Rsize { origin, .. }
            | Command::Rcount { origin, .. }
            | Command::Rlist { origin, .. }
            | Command::Rhead { origin }
            | Command::Rcheck { origin, .. } => origin.as_ref(),
            _ => None,
        }
    }
}

/// `rput`'s arguments: the body size first (a `too large` error), then the kind and the
/// record id.
fn rput(kind: &[u8], id: &[u8], body: &[u8]) -> Result<Command, ErrorReply> {
    if body.len() > MAX_BODY {
        return Err(ErrorReply::new(
            ErrorCode::TooLarge,
            format!("a record body is limited to {MAX_BODY} bytes"),
        ));
    }
    check_kind(kind).map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
    check_record_id(id).map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
    Ok(Command::Rput {
        kind: utf8(kind, CommandKind::Rput)?,
        record_id: id.to_vec(),
        body: body.to_vec(),
    })
}

/// Parses the arguments of a ledger command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    let bad = || usage_error(kind);
    if let (CommandKind::Rput, [k, id, body]) = (kind, args) {
        return rput(k, id, body);
    }
    let (args, origin) = split_origin(kind, args)?;
    Ok(match (kind, args) {
        (CommandKind::Rget, [by, arg]) => Command::Rget {
            selector: match by.as_slice() {
                b"seq" => RecordSelector::Seq(decimal(arg).ok_or_else(bad)?),
                b"id" => RecordSelector::Id(arg.clone()),
                b"hash" => RecordSelector::Hash(hex32(arg).ok_or_else(bad)?),
                _ => return Err(bad()),
            },
            origin,
        },
        (CommandKind::Rhave, [id]) => Command::Rhave {
            record_id: id.clone(),
            origin,
        },
        (CommandKind::Rabs, [pos]) => Command::Rabs {
            pos: position(pos, kind)?,
            origin,
        },
        (CommandKind::Rsize, []) => Command::Rsize { kind: None, origin },
        (CommandKind::Rsize, [k]) => Command::Rsize {
            kind: Some(kind_arg(k, kind)?),
            origin,
        },
        (CommandKind::Rcount, [k, from, to]) => Command::Rcount {
            kind: kind_arg(k, kind)?,
            range: seq_range(from, to, kind)?,
            origin,
        },
        (CommandKind::Rlist, [k, from, to, limit @ ..]) if limit.len() <= 1 => Command::Rlist {
            kind: match k.as_slice() {
                b"*" => None,
                k => Some(kind_arg(k, kind)?),
            },
            range: seq_range(from, to, kind)?,
            limit: limit
                .first()
                .map(|n| page_limit(n, RLIST_MAX_LIMIT, kind))
                .transpose()?,
            origin,
        },
        (CommandKind::Rhead, []) => Command::Rhead { origin },
        (CommandKind::Rcheck, []) => Command::Rcheck {
            range: None,
            origin,
        },
        (CommandKind::Rcheck, [from, to]) => Command::Rcheck {
            range: Some(seq_range(from, to, kind)?),
            origin,
        },
        _ => return Err(bad()),
    })
}

/// The wire arguments of a ledger command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    let mut args = match cmd {
        Command::Rput {
            kind,
            record_id,
            body,
        } => vec![text(kind), record_id.clone(), body.clone()],
        Command::Rget {
            selector: RecordSelector::Seq(n),
            ..
        } => vec![text("seq"), number(n)],
        Command::Rget {
            selector: RecordSelector::Id(id),
            ..
        } => vec![text("id"), id.clone()],
        Command::Rget {
            selector: RecordSelector::Hash(h),
            ..
        } => vec![text("hash"), text(&hex_encode(h))],
        Command::Rhave { record_id, .. } => vec![record_id.clone()],
        Command::Rabs { pos, .. } => vec![number(pos)],
        Command::Rsize { kind: Some(k), .. } => vec![text(k)],
        Command::Rcount { kind, range, .. } => {
            let [from, to] = range_args(range);
            vec![text(kind), from, to]
        }
        Command::Rlist {
            kind, range, limit, ..
        } => {
            let [from, to] = range_args(range);
            let mut args = vec![text(kind.as_deref().unwrap_or("*")), from, to];
            args.extend(limit.map(number));
            args
        }
        Command::Rcheck { range: Some(r), .. } => range_args(r).to_vec(),
        _ => Vec::new(),
    };
    args.extend(cmd.origin().map(|o| o.to_string().into_bytes()));
    args
}

/// An entry field of a reply.
fn entry(field: &[u8]) -> Result<Entry, Error> {
    Entry::decode(field).map_err(|_| Error::Malformed("ledger entry"))
}

/// Decodes the reply to a ledger command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Rput { .. } => {
            fields.want(2)?;
            Ok(Reply::Appended {
                seq: fields.decimal(0, "entry seq")?,
                hash: hex32(fields.get(1)?).ok_or(Error::Malformed("entry hash"))?,
            })
        }
        Command::Rget { .. } | Command::Rabs { .. } => fields.one(|e| entry(e).map(Reply::Record)),
        Command::Rhave { .. } => fields.one(|answer| match answer {
            b"yes" => Ok(Reply::Have(true)),
            b"no" => Ok(Reply::Have(false)),
            _ => Err(Error::Malformed("rhave answer")),
        }),
        Command::Rsize { .. } | Command::Rcount { .. } => {
            fields.want(1)?;
            Ok(Reply::Count(fields.decimal(0, "ledger count")?))
        }
        Command::Rlist { .. } => {
            let (next, entries) =
                fields.page(|n| decimal(n).ok_or(Error::Malformed("rlist next")), entry)?;
            Ok(Reply::Page { entries, next })
        }
        Command::Rhead { .. } => fields.one(|h| {
            SignedHead::decode(h)
                .map(Reply::Head)
                .map_err(|_| Error::Malformed("signed head"))
        }),
        Command::Rcheck { .. } => rcheck_reply(fields),
        _ => Err(Fields::not_this_domain()),
    }
}

/// `rcheck`'s verdict: `ok SEQ` or `bad [SEQ] REASON`.
fn rcheck_reply(fields: &Fields<'_>) -> Result<Reply, Error> {
    match fields.0.first().map(Vec::as_slice) {
        Some(b"ok") => {
            fields.want(2)?;
            Ok(Reply::ChainOk {
                seq: fields.decimal(1, "rcheck seq")?,
            })
        }
        Some(b"bad") => {
            fields.want(3)?;
            let seq = match fields.get(1)? {
                [] => None,
                n => Some(decimal(n).ok_or(Error::Malformed("rcheck seq"))?),
            };
            Ok(Reply::ChainBad {
                seq,
                reason: fields.text(2)?,
            })
        }
        _ => Err(Error::Malformed("rcheck verdict")),
    }
}

/// Sample ledger commands (at least one of each kind, each read with and without an
/// origin).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    let own = own_feed_samples();
    let other = Some(Fingerprint([0xab; 32]));
    let with_origin = own.iter().filter_map(|cmd| {
        let mut cmd = cmd.clone();
        match &mut cmd {
            Command::Rget { origin, .. }
            | Command::Rhave { origin, .. }
            | Command::Rabs { origin, .. }
            | Command::Rsize { origin, .. }
            | Command::Rcount { origin, .. }
            | Command::Rlist { origin, .. }
            | Command::Rhead { origin }
            | Command::Rcheck { origin, .. } => *origin = other,
            _ => return None,
        }
        Some(cmd)
    });
    own.iter().cloned().chain(with_origin).collect()
}

/// The sample ledger commands on the server's own feed.
#[cfg(any(test, feature = "fuzzing"))]
fn own_feed_samples() -> Vec<Command> {
    vec![
        Command::Rput {
            kind: "k".into(),
            record_id: b"r1".to_vec(),
            body: b"a=1\n".to_vec(),
        },
        Command::Rget {
            selector: RecordSelector::Seq(1),
            origin: None,
        },
        Command::Rget {
            selector: RecordSelector::Id(b"r1".to_vec()),
            origin: None,
        },
        Command::Rget {
            selector: RecordSelector::Hash([3; 32]),
            origin: None,
        },
        Command::Rhave {
            record_id: b"r1".to_vec(),
            origin: None,
        },
        Command::Rabs {
            pos: 1,
            origin: None,
        },
        Command::Rabs {
            pos: -1,
            origin: None,
        },
        Command::Rsize {
            kind: None,
            origin: None,
        },
        Command::Rsize {
            kind: Some("k".into()),
            origin: None,
        },
        Command::Rcount {
            kind: "k".into(),
            range: SeqRange { from: 1, to: 9 },
            origin: None,
        },
        Command::Rlist {
            kind: None,
            range: SeqRange { from: 1, to: 9 },
            limit: None,
            origin: None,
        },
        Command::Rlist {
            kind: Some("k".into()),
            range: SeqRange { from: 2, to: 2 },
            limit: Some(RLIST_MAX_LIMIT),
            origin: None,
        },
        Command::Rhead { origin: None },
        Command::Rcheck {
            range: None,
            origin: None,
        },
        Command::Rcheck {
            range: Some(SeqRange { from: 1, to: 3 }),
            origin: None,
        },
    ]
}

/// Sample replies to a ledger command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, values: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Rput { .. } => vec![Reply::Appended {
            seq: 1,
            hash: [9; 32],
        }],
        Command::Rget { .. } | Command::Rabs { .. } => vec![Reply::Record(values.entry.clone())],
        Command::Rhave { .. } => vec![Reply::Have(true), Reply::Have(false)],
        Command::Rsize { .. } | Command::Rcount { .. } => {
            vec![Reply::Count(0), Reply::Count(u64::MAX)]
        }
        Command::Rlist { .. } => vec![
            Reply::Page {
                entries: Vec::new(),
                next: None,
            },
            Reply::Page {
                entries: vec![values.entry.clone(), values.entry.clone()],
                next: Some(u64::MAX),
            },
        ],
        Command::Rhead { .. } => vec![Reply::Head(values.head)],
        Command::Rcheck { .. } => vec![
            Reply::ChainOk { seq: 3 },
            Reply::ChainBad {
                seq: Some(2),
                reason: "bad link".into(),
            },
            Reply::ChainBad {
                seq: None,
                reason: "head".into(),
            },
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::forms;
    use crate::commands::CommandKind;

    /// Each read's row in the command table allows exactly its forms, and one more
    /// argument (ORIGIN) after the longest; `rput` takes no origin.
    #[test]
    fn read_forms_agree_with_the_table() {
        let mut reads = 0;
        for &kind in CommandKind::ALL {
            let forms = forms(kind);
            let (Some(min), Some(max)) = (forms.iter().min(), forms.iter().max()) else {
                continue;
            };
            reads += 1;
            assert_eq!(kind.info().min_args, *min, "{kind:?}");
            assert_eq!(kind.info().max_args, max + 1, "{kind:?}");
            assert!(kind.info().usage.contains("[ORIGIN]"), "{kind:?}");
        }
        assert_eq!(reads, 8, "rget rhave rabs rsize rcount rlist rhead rcheck");
        assert!(forms(CommandKind::Rput).is_empty());
    }
}
