//! The delivery commands (`send`, `inbox`; protocol.md §13.5): their limits, value types
//! ([`Delivery`], [`DeliveryState`], [`SendArgs`]), argument and reply codecs and sample
//! values.

use super::args::{decimal, hex_encode, hex32, optional_path, path_arg, usage_error, utf8};
use super::files::{LS_ENTRY_BUDGET, ListPage, MAX_FILE_NAME, next_name};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::wire::{ErrorCode, ErrorReply};

/// The inbox folder `send` and `inbox` use when none is given.
pub const DEFAULT_INBOX_FOLDER: &str = "default";

/// Longest `send` note, in bytes (UTF-8, no control characters).
pub const MAX_NOTE: usize = 256;

/// Longest reason a delivery record carries, in bytes (servers shorten longer ones).
pub const MAX_DELIVERY_REASON: usize = 200;

/// The longest encoded [`Delivery`]: name, state, sender, two 20-digit numbers, the hash,
/// note and reason, and seven tabs.
pub const MAX_ENCODED_DELIVERY: usize =
    MAX_FILE_NAME + 8 + 32 + 20 + 20 + 64 + MAX_NOTE + MAX_DELIVERY_REASON + 7;

const _: () = assert!(4 + MAX_ENCODED_DELIVERY <= LS_ENTRY_BUDGET);

/// Where a delivery stands (protocol.md §13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryState {
    /// Accepted for checking: the `on_meta` hook runs or the copy is in progress.
    Pending,
    /// The file is in the inbox.
    Received,
    /// Refused before any data was copied (by the `on_meta` hook or the quota).
    Refused,
    /// The copy failed; nothing is in the inbox.
    Failed,
}

impl DeliveryState {
    /// `pending`, `received`, `refused` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Received => "received",
            DeliveryState::Refused => "refused",
            DeliveryState::Failed => "failed",
        }
    }

    /// The state named `s` (as [`DeliveryState::as_str`] writes it).
    pub fn from_name(s: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Received,
            DeliveryState::Refused,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// One line of `inbox`: the fields separated by single tabs (none of them can contain a
/// control character), in the order of this struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The file's name in the inbox folder (fetch it with `fget inbox/FOLDER/NAME`).
    pub name: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// The sender's user name.
    pub from: String,
    /// When it was sent, Unix seconds.
    pub time: u64,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    pub sha256: [u8; 32],
    /// The sender's note (may be empty).
    pub note: String,
    /// Why it was refused or failed (empty otherwise).
    pub reason: String,
}

impl Delivery {
    /// The entry's field bytes.
    pub fn to_field(&self) -> Vec<u8> {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.name,
            self.state.as_str(),
            self.from,
            self.time,
            self.size,
            hex_encode(&self.sha256),
            self.note,
            self.reason
        )
        .into_bytes()
    }

    /// Parses [`Delivery::to_field`]'s bytes.
    pub fn from_field(field: &[u8]) -> Result<Delivery, Error> {
        let text = std::str::from_utf8(field).map_err(|_| Error::Malformed("inbox entry"))?;
        let parts: Vec<&str> = text.split('\t').collect();
        let [name, state, from, time, size, sha256, note, reason] = parts.as_slice() else {
            return Err(Error::Malformed("inbox entry"));
        };
        if name.is_empty() || from.is_empty() {
            return Err(Error::Malformed("inbox entry name"));
        }
        Ok(Delivery {
            name: (*name).to_owned(),
            state: DeliveryState::from_name(state).ok_or(Error::Malformed("delivery state"))?,
            from: (*from).to_owned(),
            time: decimal(time.as_bytes()).ok_or(Error::Malformed("delivery time"))?,
            size: decimal(size.as_bytes()).ok_or(Error::Malformed("delivery size"))?,
            sha256: hex32(sha256.as_bytes()).ok_or(Error::Malformed("delivery sha256"))?,
            note: (*note).to_owned(),
            reason: (*reason).to_owned(),
        })
    }
}

/// The arguments of `send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendArgs {
    /// The recipient's user name.
    pub to: String,
    /// The sender's file (a client path in the sender's view).
    pub path: String,
    /// The recipient's inbox folder; `None` is [`DEFAULT_INBOX_FOLDER`].
    pub folder: Option<String>,
    /// A note for the recipient (at most [`MAX_NOTE`] bytes, no control characters);
    /// `None` is no note.
    pub note: Option<String>,
}

impl SendArgs {
    /// The wire arguments: as few as say the same.
    fn args(&self) -> Vec<Vec<u8>> {
        let mut args = vec![self.to.as_bytes().to_vec(), self.path.as_bytes().to_vec()];
        match (&self.folder, &self.note) {
            (None, None) => {}
            (folder, None) => args.push(folder.as_deref().unwrap_or("").as_bytes().to_vec()),
            (folder, Some(note)) => {
                args.push(folder.as_deref().unwrap_or("").as_bytes().to_vec());
                args.push(note.as_bytes().to_vec());
            }
        }
        args
    }

    /// Parses `USER PATH [FOLDER [NOTE]]` (an empty FOLDER or NOTE is none).
    fn parse(args: &[Vec<u8>]) -> Result<SendArgs, ErrorReply> {
        let kind = CommandKind::Send;
        let [to, path, rest @ ..] = args else {
            return Err(usage_error(kind));
        };
        if rest.len() > 2 || to.is_empty() {
            return Err(usage_error(kind));
        }
        let folder = optional_path(rest.first())?;
        let note = match rest.get(1) {
            None => None,
            Some(n) if n.is_empty() => None,
            Some(n) => Some(note_arg(n)?),
        };
        Ok(SendArgs {
            to: utf8(to, kind)?,
            path: path_arg(path)?,
            folder,
            note,
        })
    }
}

/// A `send` note: UTF-8, at most [`MAX_NOTE`] bytes, no control characters.
fn note_arg(arg: &[u8]) -> Result<String, ErrorReply> {
    let note = String::from_utf8(arg.to_vec())
        .map_err(|_| ErrorReply::new(ErrorCode::BadArguments, "a note must be UTF-8"))?;
    if note.len() > MAX_NOTE || note.chars().any(char::is_control) {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            format!("a note is at most {MAX_NOTE} bytes without control characters"),
        ));
    }
    Ok(note)
}

/// Parses the arguments of a delivery command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    match kind {
        CommandKind::Send => SendArgs::parse(args).map(Command::Send),
        CommandKind::Inbox => ListPage::parse(args, kind).map(Command::Inbox),
        _ => Err(usage_error(kind)),
    }
}

/// The wire arguments of a delivery command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Send(a) => a.args(),
        Command::Inbox(page) => page.args(),
        _ => Vec::new(),
    }
}

/// Decodes the reply to a delivery command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Send(_) => {
            fields.want(1)?;
            Ok(Reply::Delivered(fields.text(0)?))
        }
        Command::Inbox(_) => {
            let (next, entries) =
                fields.page(|n| next_name(n, "inbox next"), Delivery::from_field)?;
            Ok(Reply::Deliveries { entries, next })
        }
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample delivery commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::Send(SendArgs {
            to: "bob".into(),
            path: "f".into(),
            folder: None,
            note: None,
        }),
        Command::Send(SendArgs {
            to: "bob".into(),
            path: "d/f".into(),
            folder: Some("work".into()),
            note: Some("a note".into()),
        }),
        Command::Inbox(ListPage::default()),
    ]
}

/// Sample replies to a delivery command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, _: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Send(_) => vec![Reply::Delivered("2-f".into())],
        Command::Inbox(_) => vec![
            Reply::Deliveries {
                entries: Vec::new(),
                next: None,
            },
            Reply::Deliveries {
                entries: vec![Delivery {
                    name: "a b".into(),
                    state: DeliveryState::Refused,
                    from: "alice".into(),
                    time: 7,
                    size: 8,
                    sha256: [9; 32],
                    note: "n o".into(),
                    reason: "no way".into(),
                }],
                next: Some("c".into()),
            },
        ],
        _ => Vec::new(),
    }
}
