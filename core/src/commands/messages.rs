//! The message commands (spec/messages.md §5, protocol.md §13.6): `mkey` (publish one's
//! message key, or fetch a user's), `msend` (store a sealed message for a user), `mlist`,
//! `mread` and `mdel` (one's mailbox): their value types ([`MkeyAction`],
//! [`MessageSummary`]), argument and reply codecs and sample values.

use super::args::{decimal, number, text, usage_error, utf8};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::wire::{ErrorReply, POINT_LEN};

/// Longest encoded [`MessageSummary`]: a 20-digit id, a 64-byte name, a 20-digit time, a
/// 20-digit size, `unread`, and four tabs.
pub const MAX_ENCODED_MESSAGE_SUMMARY: usize = 20 + 64 + 20 + 20 + 6 + 4;

/// What `mkey` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MkeyAction {
    /// `mkey USER`: the message key `USER` published.
    Get(String),
    /// `mkey set KEY`: publish one's message key (SEC1 compressed, 33 bytes).
    Set([u8; POINT_LEN]),
}

/// One message of a mailbox as `mlist` shows it (never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSummary {
    /// Its id in the recipient's mailbox (from 1, never reused).
    pub id: u64,
    /// The sender's user name.
    pub from: String,
    /// When the server stored it, Unix seconds.
    pub time: u64,
    /// Size of the sealed message, in bytes.
    pub size: u64,
    /// Whether `mread` returned it already.
    pub read: bool,
}

impl MessageSummary {
    /// The field: `id TAB from TAB time TAB size TAB read|unread`.
    pub fn to_field(&self) -> Vec<u8> {
        format!(
            "{}\t{}\t{}\t{}\t{}",
            self.id,
            self.from,
            self.time,
            self.size,
            if self.read { "read" } else { "unread" }
        )
        .into_bytes()
    }

    /// Decodes [`MessageSummary::to_field`]'s output; anything else is malformed.
    pub fn from_field(field: &[u8]) -> Result<MessageSummary, Error> {
        let bad = || Error::Malformed("message summary");
        let s = std::str::from_utf8(field).map_err(|_| bad())?;
        let parts: Vec<&str> = s.split('\t').collect();
        let [id, from, time, size, read] = parts.as_slice() else {
            return Err(bad());
        };
        let num = |t: &str| decimal(t.as_bytes()).ok_or_else(bad);
        if from.is_empty() {
            return Err(bad());
        }
        Ok(MessageSummary {
            id: num(id)?,
            from: (*from).to_owned(),
            time: num(time)?,
            size: num(size)?,
            read: match *read {
                "read" => true,
                "unread" => false,
                _ => return Err(bad()),
            },
        })
    }
}

/// Parses the arguments of a message command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    let bad = || usage_error(kind);
    let id = |a: &[u8]| decimal(a).filter(|n| *n > 0).ok_or_else(bad);
    Ok(match (kind, args) {
        (CommandKind::Mkey, [user]) => Command::Mkey(MkeyAction::Get(utf8(user, kind)?)),
        (CommandKind::Mkey, [verb, key]) if verb.as_slice() == b"set" => Command::Mkey(
            MkeyAction::Set(key.as_slice().try_into().map_err(|_| bad())?),
        ),
        (CommandKind::Msend, [to, sealed]) if !sealed.is_empty() => Command::Msend {
            to: utf8(to, kind)?,
            sealed: sealed.clone(),
        },
        (CommandKind::Mlist, []) => Command::Mlist { from: None },
        (CommandKind::Mlist, [from]) => Command::Mlist {
            from: (!from.is_empty()).then(|| utf8(from, kind)).transpose()?,
        },
        (CommandKind::Mread, [n]) => Command::Mread { id: id(n)? },
        (CommandKind::Mdel, [n]) => Command::Mdel { id: id(n)? },
        _ => return Err(bad()),
    })
}

/// The wire arguments of a message command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Mkey(MkeyAction::Get(user)) => vec![text(user)],
        Command::Mkey(MkeyAction::Set(key)) => vec![text("set"), key.to_vec()],
        Command::Msend { to, sealed } => vec![text(to), sealed.clone()],
        Command::Mlist { from } => from.iter().map(|f| text(f)).collect(),
        Command::Mread { id } | Command::Mdel { id } => vec![number(id)],
        _ => Vec::new(),
    }
}

/// Decodes the reply to a message command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Mkey(MkeyAction::Get(_)) => fields.one(|f| {
            f.try_into()
                .map(Reply::MessageKey)
                .map_err(|_| Error::Malformed("message key"))
        }),
        Command::Mkey(MkeyAction::Set(_)) | Command::Mdel { .. } => {
            fields.want(0).map(|()| Reply::Done)
        }
        Command::Msend { .. } => {
            fields.want(1)?;
            fields.decimal(0, "message id").map(Reply::MessageId)
        }
        Command::Mlist { .. } => (0..fields.0.len())
            .map(|i| fields.get(i).and_then(MessageSummary::from_field))
            .collect::<Result<_, _>>()
            .map(Reply::Messages),
        Command::Mread { .. } => fields.one(|f| Ok(Reply::Sealed(f.to_vec()))),
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample message commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    let mut key = [2u8; POINT_LEN];
    key[1] = 9;
    vec![
        Command::Mkey(MkeyAction::Get("bob".into())),
        Command::Mkey(MkeyAction::Set(key)),
        Command::Msend {
            to: "bob".into(),
            sealed: vec![1, 2, 3],
        },
        Command::Mlist { from: None },
        Command::Mlist {
            from: Some("alice".into()),
        },
        Command::Mread { id: 1 },
        Command::Mdel { id: 42 },
    ]
}

/// Sample replies to a message command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, _: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Mkey(MkeyAction::Get(_)) => vec![Reply::MessageKey([3u8; POINT_LEN])],
        Command::Mkey(MkeyAction::Set(_)) | Command::Mdel { .. } => vec![Reply::Done],
        Command::Msend { .. } => vec![Reply::MessageId(7)],
        Command::Mlist { .. } => vec![
            Reply::Messages(Vec::new()),
            Reply::Messages(vec![
                MessageSummary {
                    id: 2,
                    from: "alice".into(),
                    time: 1_700_000_000,
                    size: 300,
                    read: false,
                },
                MessageSummary {
                    id: 1,
                    from: "carol".into(),
                    time: 0,
                    size: 1,
                    read: true,
                },
            ]),
        ],
        Command::Mread { .. } => vec![Reply::Sealed(vec![1, 2, 3])],
        _ => Vec::new(),
    }
}
