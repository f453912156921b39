//! The typed command set (protocol v1) on top of [`Request`]/[`Response`](crate::Response).
//!
//! Adding a command means: a [`Command`] variant, its [`COMMANDS`] entry, its [`Reply`] shape.
//! Servers dispatch on [`Command::parse`], which answers unknown names and bad arguments with
//! typed [`ErrorReply`]s instead of failing the connection.

use crate::Error;
use crate::ledger::{Entry, MAX_BODY, MAX_ENCODED_ENTRY, SignedHead, check_kind, check_record_id};
use crate::secure::Fingerprint;
use crate::transfer::{
    FcloseArgs, FdoneArgs, FdoneReply, FgetArgs, FgetReply, FopenArgs, FopenReply, FputArgs,
    FreadArgs, FreadReply,
};
use crate::wire::{ErrorCode, ErrorReply, MAX_PAYLOAD, POINT_LEN, Request, SIGNATURE_LEN};
use zeroize::Zeroizing;

/// Who may run a command. The server enforces it; `help` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Anyone, logged in or not.
    Anyone,
    /// A logged-in, enabled user.
    User,
    /// A logged-in, enabled admin.
    Admin,
}

impl Access {
    /// How `help` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Anyone => "anyone",
            Access::User => "user",
            Access::Admin => "admin",
        }
    }
}

/// One command's documentation, served by `help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// Wire name.
    pub name: &'static str,
    /// Arguments, as shown to users.
    pub usage: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Who may run it.
    pub access: Access,
}

const fn info(
    name: &'static str,
    usage: &'static str,
    summary: &'static str,
    access: Access,
) -> CommandInfo {
    CommandInfo {
        name,
        usage,
        summary,
        access,
    }
}

/// Every command of this protocol version, in help order.
pub const COMMANDS: &[CommandInfo] = &[
    info(
        "hello",
        "hello",
        "greet the server; replies with a greeting naming it",
        Access::Anyone,
    ),
    info(
        "ver",
        "ver",
        "protocol and software version of the server",
        Access::Anyone,
    ),
    info(
        "id",
        "id",
        "the server's name and identity key fingerprint",
        Access::Anyone,
    ),
    info(
        "help",
        "help [command]",
        "list commands, or describe one",
        Access::Anyone,
    ),
    info(
        "ping",
        "ping [payload]",
        "echo the payload (up to 16000 bytes)",
        Access::Anyone,
    ),
    info(
        "quit",
        "quit",
        "end the session; the server replies and closes",
        Access::Anyone,
    ),
    info(
        "login",
        "login NAME password PASSWORD | login NAME key PUBKEY SIGNATURE",
        "log in by password, or by a key signing this session's id",
        Access::Anyone,
    ),
    info(
        "logout",
        "logout",
        "end the login; the session stays open",
        Access::User,
    ),
    info(
        "whoami",
        "whoami",
        "the logged-in user and role, or nothing",
        Access::Anyone,
    ),
    info(
        "uini",
        "uini NAME PASSWORD",
        "create the first admin (only while no user exists, only from the server's own machine)",
        Access::Anyone,
    ),
    info("uadd", "uadd NAME PASSWORD", "create a user", Access::Admin),
    info(
        "aadd",
        "aadd NAME PASSWORD",
        "create an admin",
        Access::Admin,
    ),
    info(
        "udel",
        "udel NAME",
        "delete a user (never the last enabled admin)",
        Access::Admin,
    ),
    info(
        "uena",
        "uena NAME on|off",
        "enable or disable a user (never the last enabled admin)",
        Access::Admin,
    ),
    info(
        "ulist",
        "ulist [filter]",
        "list users whose name contains the filter",
        Access::Admin,
    ),
    info(
        "chpass",
        "chpass OLD NEW | chpass --for NAME NEW",
        "change your password, or (admins) set another user's",
        Access::User,
    ),
    info(
        "ukey",
        "ukey add PUBKEY | ukey list | ukey del FINGERPRINT",
        "manage your login keys",
        Access::User,
    ),
    info(
        "tout",
        "tout [SECONDS]",
        "show, or set within the server's bounds, this session's idle timeout",
        Access::User,
    ),
    info(
        "rput",
        "rput KIND RECORD_ID BODY",
        "append a record to the server's ledger; replies with its seq and entry hash",
        Access::User,
    ),
    info(
        "rget",
        "rget seq N | rget id RECORD_ID | rget hash HEX",
        "a ledger entry (its canonical encoding) by seq, record id or entry hash",
        Access::User,
    ),
    info(
        "rhave",
        "rhave RECORD_ID",
        "whether the ledger holds a record with this id",
        Access::User,
    ),
    info(
        "rabs",
        "rabs POS",
        "the ledger entry at a position: 1 is the first, -1 the last",
        Access::User,
    ),
    info(
        "rsize",
        "rsize [KIND]",
        "how many entries the ledger holds, or holds of one kind",
        Access::User,
    ),
    info(
        "rcount",
        "rcount KIND FROM TO",
        "how many entries of a kind have a seq in FROM..=TO",
        Access::User,
    ),
    info(
        "rlist",
        "rlist KIND|* FROM TO [LIMIT]",
        "one page of the entries (of a kind, or every kind) with a seq in FROM..=TO, \
         ascending, at most LIMIT (default 100, max 1000); replies with the FROM of the next page",
        Access::User,
    ),
    info(
        "rhead",
        "rhead",
        "the ledger's signed head (seq and hash of the last entry, signed by the server key)",
        Access::User,
    ),
    info(
        "rcheck",
        "rcheck [FROM TO]",
        "re-verify the stored chain (all of it, or entries FROM..=TO) and its signed head; \
         names the first bad seq",
        Access::Admin,
    ),
    info(
        "ls",
        "ls [DIR [FROM [LIMIT]]]",
        "one page of a directory's entries (kind, size, mtime, name) in name order, from the \
         name FROM on, at most LIMIT (default 100, max 1000); replies with the FROM of the next page",
        Access::User,
    ),
    info(
        "lsd",
        "lsd [DIR [FROM [LIMIT]]]",
        "like ls, listing only the directories",
        Access::User,
    ),
    info(
        "cd",
        "cd DIR",
        "change the session's working directory; replies with it",
        Access::User,
    ),
    info(
        "pwd",
        "pwd",
        "the session's working directory",
        Access::User,
    ),
    info(
        "stat",
        "stat PATH",
        "kind, size, modification and creation times and sha256 (when known) of a file or directory",
        Access::User,
    ),
    info("mkdir", "mkdir PATH", "create a directory", Access::User),
    info(
        "rmdir",
        "rmdir PATH",
        "remove an empty directory",
        Access::User,
    ),
    info(
        "del",
        "del PATH",
        "delete a file (and its kept versions)",
        Access::User,
    ),
    info(
        "mv",
        "mv FROM TO",
        "rename or move a file or directory; an overwritten file is kept as a version",
        Access::User,
    ),
    info(
        "fopen",
        "fopen PATH SIZE [resume]",
        "start (or with resume, continue) an upload of SIZE bytes to PATH (binary numbers, spec/files.md)",
        Access::User,
    ),
    info(
        "fput",
        "fput ID OFFSET DATA",
        "one upload chunk at OFFSET",
        Access::User,
    ),
    info(
        "fdone",
        "fdone ID SHA256",
        "finish an upload: the file becomes visible if its SHA-256 matches",
        Access::User,
    ),
    info(
        "fget",
        "fget PATH",
        "open a file for download; replies with its id, size and SHA-256",
        Access::User,
    ),
    info(
        "fread",
        "fread ID OFFSET LEN",
        "one download chunk of LEN bytes at OFFSET",
        Access::User,
    ),
    info(
        "fclose",
        "fclose ID",
        "end a transfer (an upload stays resumable)",
        Access::User,
    ),
    info(
        "send",
        "send USER PATH [FOLDER [NOTE]]",
        "deliver your file PATH to USER's inbox folder FOLDER (default `default`), if its folder.toml allows you",
        Access::User,
    ),
    info(
        "inbox",
        "inbox [FOLDER [FROM [LIMIT]]]",
        "the deliveries to your inbox folder FOLDER (default `default`): name, state, sender, time, size, sha256, note, reason",
        Access::User,
    ),
];

/// The documentation of command `name`.
pub fn command_info(name: &str) -> Option<&'static CommandInfo> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Largest ping payload (fits one record with its framing).
pub const MAX_PING_PAYLOAD: usize = 16000;

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

/// The longest file or directory name, in bytes (UTF-8).
pub const MAX_FILE_NAME: usize = 255;

/// The page size of `ls`/`lsd` without a LIMIT argument.
pub const LS_DEFAULT_LIMIT: u32 = 100;

/// The largest LIMIT `ls`/`lsd` accept.
pub const LS_MAX_LIMIT: u32 = 1000;

/// Bytes of an `ls` response that are not entries: the response header (8 bytes) and the
/// `next` field (4-byte length and a name of up to [`MAX_FILE_NAME`] bytes).
pub const LS_OVERHEAD: usize = 8 + 4 + MAX_FILE_NAME;

/// Room for entries in one `ls` response; an entry costs 4 bytes plus
/// [`DirEntry::encoded_len`]. A server fills a page up to this budget.
pub const LS_ENTRY_BUDGET: usize = MAX_PAYLOAD - LS_OVERHEAD;

/// The longest encoded [`DirEntry`]: kind, two 20-digit numbers, three spaces, the name.
pub const MAX_ENCODED_DIR_ENTRY: usize = 1 + 20 + 20 + 3 + MAX_FILE_NAME;

const _: () = assert!(4 + MAX_ENCODED_DIR_ENTRY <= LS_ENTRY_BUDGET);

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

    fn parse(args: &[Vec<u8>], usage: &str) -> Result<SendArgs, ErrorReply> {
        let [to, path, rest @ ..] = args else {
            return Err(usage_error(usage));
        };
        if rest.len() > 2 || to.is_empty() {
            return Err(usage_error(usage));
        }
        let folder = match rest.first() {
            None => None,
            Some(f) if f.is_empty() => None,
            Some(f) => Some(path_arg(f)?),
        };
        let note = match rest.get(1) {
            None => None,
            Some(n) if n.is_empty() => None,
            Some(n) => {
                let note = String::from_utf8(n.clone()).map_err(|_| {
                    ErrorReply::new(ErrorCode::BadArguments, "a note must be UTF-8")
                })?;
                if note.len() > MAX_NOTE || note.chars().any(char::is_control) {
                    return Err(ErrorReply::new(
                        ErrorCode::BadArguments,
                        format!("a note is at most {MAX_NOTE} bytes without control characters"),
                    ));
                }
                Some(note)
            }
        };
        Ok(SendArgs {
            to: utf8(to, usage)?,
            path: path_arg(path)?,
            folder,
            note,
        })
    }
}

/// What a file tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// A regular file (`f` on the wire).
    File,
    /// A directory (`d` on the wire).
    Dir,
}

impl FileKind {
    /// `f` or `d`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "f",
            FileKind::Dir => "d",
        }
    }

    fn parse(s: &str) -> Result<FileKind, Error> {
        match s {
            "f" => Ok(FileKind::File),
            "d" => Ok(FileKind::Dir),
            _ => Err(Error::Malformed("file kind")),
        }
    }
}

/// One line of `ls`/`lsd`: `KIND SIZE MTIME NAME` (single spaces; the name is the rest of the
/// field and may itself contain spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (one path component, never empty).
    pub name: String,
    /// File or directory.
    pub kind: FileKind,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Last modification, Unix seconds.
    pub modified: u64,
}

impl DirEntry {
    /// The entry's field bytes.
    pub fn to_field(&self) -> Vec<u8> {
        format!(
            "{} {} {} {}",
            self.kind.as_str(),
            self.size,
            self.modified,
            self.name
        )
        .into_bytes()
    }

    /// Length of [`DirEntry::to_field`].
    pub fn encoded_len(&self) -> usize {
        let digits = |n: u64| n.checked_ilog10().map_or(1, |d| d as usize + 1);
        1 + 3 + digits(self.size) + digits(self.modified) + self.name.len()
    }

    fn from_field(field: &[u8]) -> Result<DirEntry, Error> {
        let text = std::str::from_utf8(field).map_err(|_| Error::Malformed("ls entry"))?;
        let mut parts = text.splitn(4, ' ');
        let (Some(kind), Some(size), Some(modified), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed("ls entry"));
        };
        if name.is_empty() {
            return Err(Error::Malformed("ls entry name"));
        }
        Ok(DirEntry {
            name: name.to_owned(),
            kind: FileKind::parse(kind)?,
            size: decimal(size.as_bytes()).ok_or(Error::Malformed("ls entry size"))?,
            modified: decimal(modified.as_bytes()).ok_or(Error::Malformed("ls entry mtime"))?,
        })
    }
}

/// The answer of `stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    /// File or directory.
    pub kind: FileKind,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Last modification, Unix seconds.
    pub modified: u64,
    /// Creation, Unix seconds, where the server's file system records it.
    pub created: Option<u64>,
    /// SHA-256 of a file's content, when the server knows it (set by uploads).
    pub sha256: Option<[u8; 32]>,
}

/// The page `ls`/`lsd` ask for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// The directory; `None` is the working directory.
    pub dir: Option<String>,
    /// List names from this one on (byte order, inclusive); `None` starts at the first.
    pub from: Option<String>,
    /// The most entries in the page, 1 to [`LS_MAX_LIMIT`]; `None` means
    /// [`LS_DEFAULT_LIMIT`].
    pub limit: Option<u32>,
}

impl ListPage {
    fn args(&self) -> Vec<Vec<u8>> {
        let text = |v: &Option<String>| v.as_deref().unwrap_or("").as_bytes().to_vec();
        match (&self.dir, &self.from, self.limit) {
            (None, None, None) => Vec::new(),
            (Some(d), None, None) => vec![d.as_bytes().to_vec()],
            (_, _, None) => vec![text(&self.dir), text(&self.from)],
            (_, _, Some(n)) => vec![
                text(&self.dir),
                text(&self.from),
                n.to_string().into_bytes(),
            ],
        }
    }

    fn parse(args: &[Vec<u8>], usage: &str) -> Result<ListPage, ErrorReply> {
        let optional = |arg: Option<&Vec<u8>>| -> Result<Option<String>, ErrorReply> {
            match arg {
                None => Ok(None),
                Some(a) if a.is_empty() => Ok(None),
                Some(a) => path_arg(a).map(Some),
            }
        };
        if args.len() > 3 {
            return Err(usage_error(usage));
        }
        Ok(ListPage {
            dir: optional(args.first())?,
            from: optional(args.get(1))?,
            limit: args
                .get(2)
                .map(|n| page_limit(n, LS_MAX_LIMIT, usage))
                .transpose()?,
        })
    }
}

/// Bytes that must not leak: zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The secret.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// What proves a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The user's password.
    Password(SecretBytes),
    /// A key registered for the user, and its ECDSA signature over
    /// [`login_signature_message`] for this session.
    Key {
        /// SEC1 compressed public key.
        public: [u8; POINT_LEN],
        /// Fixed-width r || s.
        signature: [u8; SIGNATURE_LEN],
    },
}

/// The message a key login signs: context, a zero byte, the session id, the user name as
/// sent. Binding the session id makes a signature worthless on any other connection.
pub fn login_signature_message(session_id: &[u8; 32], user: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(LOGIN_SIGNATURE_CONTEXT.len() + 33 + user.len());
    m.extend_from_slice(LOGIN_SIGNATURE_CONTEXT);
    m.push(0);
    m.extend_from_slice(session_id);
    m.extend_from_slice(user.as_bytes());
    m
}

/// Context prefix of a key login signature.
pub const LOGIN_SIGNATURE_CONTEXT: &[u8] = b"vserv/1 user login";

/// `ukey` sub-commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Register a public key (SEC1 compressed) for the logged-in user.
    Add([u8; POINT_LEN]),
    /// List the fingerprints of the logged-in user's keys.
    List,
    /// Remove the key with this fingerprint.
    Del(Fingerprint),
}

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
    /// `login NAME password PASSWORD` / `login NAME key PUBKEY SIGNATURE`
    Login {
        /// User name as typed.
        user: String,
        /// The proof.
        credential: Credential,
    },
    /// `logout`
    Logout,
    /// `whoami`
    Whoami,
    /// `uini NAME PASSWORD`
    Uini {
        /// New admin's name.
        user: String,
        /// Their password.
        password: SecretBytes,
    },
    /// `uadd NAME PASSWORD`
    Uadd {
        /// New user's name.
        user: String,
        /// Their password.
        password: SecretBytes,
    },
    /// `aadd NAME PASSWORD`
    Aadd {
        /// New admin's name.
        user: String,
        /// Their password.
        password: SecretBytes,
    },
    /// `udel NAME`
    Udel {
        /// User to delete.
        user: String,
    },
    /// `uena NAME on|off`
    Uena {
        /// User to change.
        user: String,
        /// New state.
        enabled: bool,
    },
    /// `ulist [filter]`
    Ulist {
        /// Substring the names must contain.
        filter: Option<String>,
    },
    /// `chpass OLD NEW` (own) or `chpass --for NAME NEW` (admins, for another user)
    Chpass {
        /// Another user (admins only); `None` for oneself.
        target: Option<String>,
        /// The current password (own change only).
        old: Option<SecretBytes>,
        /// The new password.
        new: SecretBytes,
    },
    /// `ukey add|list|del`
    Ukey(KeyAction),
    /// `tout [SECONDS]`: this session's idle timeout. Logged-in users only
    /// ([`Access::User`]): an anonymous connection keeps the server's default, so it cannot
    /// hold a connection slot longer than the operator chose.
    Tout {
        /// New timeout in whole seconds (decimal on the wire); `None` only asks.
        seconds: Option<u64>,
    },
    /// `rput KIND RECORD_ID BODY`: append a record to the server's feed. Parsing checks the
    /// kind ([`check_kind`]), the record id ([`check_record_id`]) and the body size
    /// ([`MAX_BODY`]).
    Rput {
        /// The entry kind (topic).
        kind: String,
        /// The client's unique record id (1-64 bytes).
        record_id: Vec<u8>,
        /// The body bytes.
        body: Vec<u8>,
    },
    /// `rget seq N | id RECORD_ID | hash HEX`
    Rget(RecordSelector),
    /// `rhave RECORD_ID`
    Rhave {
        /// The record id asked about.
        record_id: Vec<u8>,
    },
    /// `rabs POS`: the entry at a position, counted from the first entry (`1`, `2`, ...) or
    /// from the last one (`-1`, `-2`, ...). Parsing refuses 0.
    Rabs {
        /// The non-zero position (decimal on the wire, `-` for negative).
        pos: i64,
    },
    /// `rsize [KIND]`
    Rsize {
        /// Count only this kind (checked by [`check_kind`]); `None` counts every entry.
        kind: Option<String>,
    },
    /// `rcount KIND FROM TO`
    Rcount {
        /// The kind counted (checked by [`check_kind`]).
        kind: String,
        /// The seqs counted.
        range: SeqRange,
    },
    /// `rlist KIND|* FROM TO [LIMIT]`
    Rlist {
        /// The kind listed (checked by [`check_kind`]); `None` (`*` on the wire) lists every
        /// kind.
        kind: Option<String>,
        /// The seqs listed.
        range: SeqRange,
        /// The most entries in the page, 1 to [`RLIST_MAX_LIMIT`]; `None` means
        /// [`RLIST_DEFAULT_LIMIT`].
        limit: Option<u32>,
    },
    /// `rhead`
    Rhead,
    /// `rcheck [FROM TO]`
    Rcheck {
        /// Check only these entries (and the head); `None` checks the whole feed.
        range: Option<SeqRange>,
    },
    /// `ls [DIR [FROM [LIMIT]]]`: one page of a directory. An empty DIR or FROM argument
    /// means none.
    Ls(ListPage),
    /// `lsd [DIR [FROM [LIMIT]]]`: like `ls`, directories only.
    Lsd(ListPage),
    /// `cd DIR`
    Cd {
        /// The new working directory (a client path).
        dir: String,
    },
    /// `pwd`
    Pwd,
    /// `stat PATH`
    Stat {
        /// The file or directory.
        path: String,
    },
    /// `mkdir PATH`
    Mkdir {
        /// The directory to create.
        path: String,
    },
    /// `rmdir PATH`
    Rmdir {
        /// The empty directory to remove.
        path: String,
    },
    /// `del PATH`
    Del {
        /// The file to delete.
        path: String,
    },
    /// `mv FROM TO`
    Mv {
        /// What to move.
        from: String,
        /// Where to.
        to: String,
    },
    /// `fopen PATH SIZE [resume]`: start or resume an upload (spec/files.md §3).
    Fopen(FopenArgs),
    /// `fput ID OFFSET DATA`: one upload chunk (the data owned; see [`Command::fput_args`]).
    Fput {
        /// The upload's transfer id.
        id: u32,
        /// Where the chunk starts.
        offset: u64,
        /// 1 to [`MAX_FPUT_DATA`](crate::transfer::MAX_FPUT_DATA) bytes.
        data: Vec<u8>,
    },
    /// `fdone ID SHA256`: finish an upload.
    Fdone(FdoneArgs),
    /// `fget PATH`: open a file for download (spec/files.md §4).
    Fget(FgetArgs),
    /// `fread ID OFFSET LEN`: one download chunk.
    Fread(FreadArgs),
    /// `fclose ID`: end a transfer.
    Fclose(FcloseArgs),
    /// `send USER PATH [FOLDER [NOTE]]`: deliver a file to another user's inbox
    /// (protocol.md §13.5).
    Send(SendArgs),
    /// `inbox [FOLDER [FROM [LIMIT]]]`: one page of the deliveries to an inbox folder (the
    /// page's `dir` is the folder).
    Inbox(ListPage),
}

/// A client path argument: UTF-8 and not empty. The path rules proper are the server's
/// (protocol.md §13.4).
fn path_arg(arg: &[u8]) -> Result<String, ErrorReply> {
    if arg.is_empty() {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            "a path cannot be empty",
        ));
    }
    String::from_utf8(arg.to_vec())
        .map_err(|_| ErrorReply::new(ErrorCode::BadArguments, "a path must be UTF-8"))
}

fn utf8(arg: &[u8], usage: &str) -> Result<String, ErrorReply> {
    String::from_utf8(arg.to_vec()).map_err(|_| usage_error(usage))
}

/// A decimal number of 1 to 20 ASCII digits that fits a `u64` (no sign, no spaces).
fn decimal(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() || arg.len() > 20 || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Lower-case hex of `bytes`.
fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// Exactly 64 hex digits (either case) as 32 bytes.
fn hex32(text: &[u8]) -> Option<[u8; 32]> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

fn usage_error(usage: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::BadArguments, format!("usage: {usage}"))
}

/// A kind argument (see [`check_kind`]).
fn kind_arg(arg: &[u8], usage: &str) -> Result<String, ErrorReply> {
    check_kind(arg).map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
    utf8(arg, usage)
}

/// A non-zero position: an optional `-` and 1 to 19 decimal digits that fit an `i64`.
fn position(arg: &[u8], usage: &str) -> Result<i64, ErrorReply> {
    let digits = arg.strip_prefix(b"-").unwrap_or(arg);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(usage_error(usage));
    }
    let pos: i64 = std::str::from_utf8(arg)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| usage_error(usage))?;
    if pos == 0 {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            "position 0 does not exist: 1 is the first entry, -1 the last",
        ));
    }
    Ok(pos)
}

/// `FROM TO`: two decimal seqs with `1 <= FROM <= TO`.
fn seq_range(from: &[u8], to: &[u8], usage: &str) -> Result<SeqRange, ErrorReply> {
    let (Some(from), Some(to)) = (decimal(from), decimal(to)) else {
        return Err(usage_error(usage));
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

/// `rlist`'s LIMIT: 1 to [`RLIST_MAX_LIMIT`].
fn list_limit(arg: &[u8], usage: &str) -> Result<u32, ErrorReply> {
    page_limit(arg, RLIST_MAX_LIMIT, usage)
}

/// A page LIMIT: 1 to `max`.
fn page_limit(arg: &[u8], max: u32, usage: &str) -> Result<u32, ErrorReply> {
    let n = decimal(arg).ok_or_else(|| usage_error(usage))?;
    match u32::try_from(n) {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ErrorReply::new(
            ErrorCode::BadArguments,
            format!("LIMIT must be 1 to {max}"),
        )),
    }
}

/// Decimal text of a seq range, as two arguments.
fn range_args(range: &SeqRange) -> [Vec<u8>; 2] {
    [
        range.from.to_string().into_bytes(),
        range.to.to_string().into_bytes(),
    ]
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
            Command::Login { .. } => "login",
            Command::Logout => "logout",
            Command::Whoami => "whoami",
            Command::Uini { .. } => "uini",
            Command::Uadd { .. } => "uadd",
            Command::Aadd { .. } => "aadd",
            Command::Udel { .. } => "udel",
            Command::Uena { .. } => "uena",
            Command::Ulist { .. } => "ulist",
            Command::Chpass { .. } => "chpass",
            Command::Ukey(_) => "ukey",
            Command::Tout { .. } => "tout",
            Command::Rput { .. } => "rput",
            Command::Rget(_) => "rget",
            Command::Rhave { .. } => "rhave",
            Command::Rabs { .. } => "rabs",
            Command::Rsize { .. } => "rsize",
            Command::Rcount { .. } => "rcount",
            Command::Rlist { .. } => "rlist",
            Command::Rhead => "rhead",
            Command::Rcheck { .. } => "rcheck",
            Command::Ls(_) => "ls",
            Command::Lsd(_) => "lsd",
            Command::Cd { .. } => "cd",
            Command::Pwd => "pwd",
            Command::Stat { .. } => "stat",
            Command::Mkdir { .. } => "mkdir",
            Command::Rmdir { .. } => "rmdir",
            Command::Del { .. } => "del",
            Command::Mv { .. } => "mv",
            Command::Fopen(_) => "fopen",
            Command::Fput { .. } => "fput",
            Command::Fdone(_) => "fdone",
            Command::Fget(_) => "fget",
            Command::Fread(_) => "fread",
            Command::Fclose(_) => "fclose",
            Command::Send(_) => "send",
            Command::Inbox(_) => "inbox",
        }
    }

    /// The codec view of an `fput` (`None` for any other command).
    pub fn fput_args(&self) -> Option<FputArgs<'_>> {
        match self {
            Command::Fput { id, offset, data } => Some(FputArgs {
                id: *id,
                offset: *offset,
                data,
            }),
            _ => None,
        }
    }

    /// Who may run this command.
    pub fn access(&self) -> Access {
        command_info(self.name()).map_or(Access::Admin, |i| i.access)
    }

    /// The wire arguments.
    pub fn args(&self) -> Vec<Vec<u8>> {
        let s = |v: &str| v.as_bytes().to_vec();
        match self {
            Command::Help { topic: Some(t) } => vec![s(t)],
            Command::Ping { payload } => vec![payload.clone()],
            Command::Login {
                user,
                credential: Credential::Password(p),
            } => {
                vec![s(user), s("password"), p.expose().to_vec()]
            }
            Command::Login {
                user,
                credential: Credential::Key { public, signature },
            } => {
                vec![s(user), s("key"), public.to_vec(), signature.to_vec()]
            }
            Command::Uini { user, password }
            | Command::Uadd { user, password }
            | Command::Aadd { user, password } => {
                vec![s(user), password.expose().to_vec()]
            }
            Command::Udel { user } => vec![s(user)],
            Command::Uena { user, enabled } => {
                vec![s(user), s(if *enabled { "on" } else { "off" })]
            }
            Command::Ulist { filter: Some(f) } => vec![s(f)],
            Command::Chpass {
                target: Some(t),
                new,
                ..
            } => vec![s("--for"), s(t), new.expose().to_vec()],
            Command::Chpass {
                target: None,
                old,
                new,
            } => {
                vec![
                    old.as_ref()
                        .map(|o| o.expose().to_vec())
                        .unwrap_or_default(),
                    new.expose().to_vec(),
                ]
            }
            Command::Ukey(KeyAction::Add(key)) => vec![s("add"), key.to_vec()],
            Command::Ukey(KeyAction::List) => vec![s("list")],
            Command::Ukey(KeyAction::Del(f)) => vec![s("del"), f.to_string().into_bytes()],
            Command::Tout { seconds: Some(n) } => vec![n.to_string().into_bytes()],
            Command::Rput {
                kind,
                record_id,
                body,
            } => vec![s(kind), record_id.clone(), body.clone()],
            Command::Rget(RecordSelector::Seq(n)) => vec![s("seq"), n.to_string().into_bytes()],
            Command::Rget(RecordSelector::Id(id)) => vec![s("id"), id.clone()],
            Command::Rget(RecordSelector::Hash(h)) => vec![s("hash"), hex_encode(h).into_bytes()],
            Command::Rhave { record_id } => vec![record_id.clone()],
            Command::Rabs { pos } => vec![pos.to_string().into_bytes()],
            Command::Rsize { kind: Some(k) } => vec![s(k)],
            Command::Rcount { kind, range } => {
                let [from, to] = range_args(range);
                vec![s(kind), from, to]
            }
            Command::Rlist { kind, range, limit } => {
                let [from, to] = range_args(range);
                let mut args = vec![s(kind.as_deref().unwrap_or("*")), from, to];
                args.extend(limit.map(|n| n.to_string().into_bytes()));
                args
            }
            Command::Rcheck { range: Some(r) } => range_args(r).to_vec(),
            Command::Ls(page) | Command::Lsd(page) | Command::Inbox(page) => page.args(),
            Command::Send(a) => a.args(),
            Command::Cd { dir: path }
            | Command::Stat { path }
            | Command::Mkdir { path }
            | Command::Rmdir { path }
            | Command::Del { path } => vec![s(path)],
            Command::Mv { from, to } => vec![s(from), s(to)],
            Command::Fopen(a) => a.to_args(),
            Command::Fput { .. } => self.fput_args().map(|a| a.to_args()).unwrap_or_default(),
            Command::Fdone(a) => a.to_args(),
            Command::Fget(a) => a.to_args(),
            Command::Fread(a) => a.to_args(),
            Command::Fclose(a) => a.to_args(),
            _ => Vec::new(),
        }
    }

    /// Parses a request into a command, or the error reply to send back.
    pub fn parse(req: &Request) -> Result<Command, ErrorReply> {
        let a = &req.args;
        let usage = command_info(&req.name).map_or("", |i| i.usage);
        let bad = || usage_error(usage);
        let secret = |b: &Vec<u8>| SecretBytes::new(b.clone());
        let cmd = match (req.name.as_str(), a.as_slice()) {
            ("hello", []) => Command::Hello,
            ("ver", []) => Command::Ver,
            ("id", []) => Command::Id,
            ("quit", []) => Command::Quit,
            ("logout", []) => Command::Logout,
            ("whoami", []) => Command::Whoami,
            ("help", []) => Command::Help { topic: None },
            ("help", [t]) => Command::Help {
                topic: Some(utf8(t, usage)?),
            },
            ("ping", []) => Command::Ping {
                payload: Vec::new(),
            },
            ("ping", [p]) => {
                if p.len() > MAX_PING_PAYLOAD {
                    return Err(ErrorReply::new(
                        ErrorCode::TooLarge,
                        format!("ping payload is limited to {MAX_PING_PAYLOAD} bytes"),
                    ));
                }
                Command::Ping { payload: p.clone() }
            }
            ("login", [u, kind, p]) if kind == b"password" => Command::Login {
                user: utf8(u, usage)?,
                credential: Credential::Password(secret(p)),
            },
            ("login", [u, kind, public, signature]) if kind == b"key" => Command::Login {
                user: utf8(u, usage)?,
                credential: Credential::Key {
                    public: public.as_slice().try_into().map_err(|_| bad())?,
                    signature: signature.as_slice().try_into().map_err(|_| bad())?,
                },
            },
            ("uini", [u, p]) => Command::Uini {
                user: utf8(u, usage)?,
                password: secret(p),
            },
            ("uadd", [u, p]) => Command::Uadd {
                user: utf8(u, usage)?,
                password: secret(p),
            },
            ("aadd", [u, p]) => Command::Aadd {
                user: utf8(u, usage)?,
                password: secret(p),
            },
            ("udel", [u]) => Command::Udel {
                user: utf8(u, usage)?,
            },
            ("uena", [u, state]) => Command::Uena {
                user: utf8(u, usage)?,
                enabled: match state.as_slice() {
                    b"on" => true,
                    b"off" => false,
                    _ => return Err(bad()),
                },
            },
            ("ulist", []) => Command::Ulist { filter: None },
            ("ulist", [f]) => Command::Ulist {
                filter: Some(utf8(f, usage)?),
            },
            ("chpass", [flag, t, new]) if flag == b"--for" => Command::Chpass {
                target: Some(utf8(t, usage)?),
                old: None,
                new: secret(new),
            },
            ("chpass", [old, new]) => Command::Chpass {
                target: None,
                old: Some(secret(old)),
                new: secret(new),
            },
            ("ukey", [action, key]) if action == b"add" => Command::Ukey(KeyAction::Add(
                key.as_slice().try_into().map_err(|_| bad())?,
            )),
            ("ukey", [action]) if action == b"list" => Command::Ukey(KeyAction::List),
            ("ukey", [action, f]) if action == b"del" => {
                Command::Ukey(KeyAction::Del(utf8(f, usage)?.parse().map_err(|_| bad())?))
            }
            ("tout", []) => Command::Tout { seconds: None },
            ("tout", [n]) => Command::Tout {
                seconds: Some(decimal(n).ok_or_else(bad)?),
            },
            ("rput", [kind, id, body]) => {
                if body.len() > MAX_BODY {
                    return Err(ErrorReply::new(
                        ErrorCode::TooLarge,
                        format!("a record body is limited to {MAX_BODY} bytes"),
                    ));
                }
                check_kind(kind)
                    .map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
                check_record_id(id)
                    .map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
                Command::Rput {
                    kind: utf8(kind, usage)?,
                    record_id: id.clone(),
                    body: body.clone(),
                }
            }
            ("rget", [by, n]) if by == b"seq" => {
                Command::Rget(RecordSelector::Seq(decimal(n).ok_or_else(bad)?))
            }
            ("rget", [by, id]) if by == b"id" => Command::Rget(RecordSelector::Id(id.clone())),
            ("rget", [by, h]) if by == b"hash" => {
                Command::Rget(RecordSelector::Hash(hex32(h).ok_or_else(bad)?))
            }
            ("rhave", [id]) => Command::Rhave {
                record_id: id.clone(),
            },
            ("rabs", [pos]) => Command::Rabs {
                pos: position(pos, usage)?,
            },
            ("rsize", []) => Command::Rsize { kind: None },
            ("rsize", [kind]) => Command::Rsize {
                kind: Some(kind_arg(kind, usage)?),
            },
            ("rcount", [kind, from, to]) => Command::Rcount {
                kind: kind_arg(kind, usage)?,
                range: seq_range(from, to, usage)?,
            },
            ("rlist", [kind, from, to, limit @ ..]) if limit.len() <= 1 => Command::Rlist {
                kind: match kind.as_slice() {
                    b"*" => None,
                    k => Some(kind_arg(k, usage)?),
                },
                range: seq_range(from, to, usage)?,
                limit: limit.first().map(|n| list_limit(n, usage)).transpose()?,
            },
            ("rhead", []) => Command::Rhead,
            ("rcheck", []) => Command::Rcheck { range: None },
            ("rcheck", [from, to]) => Command::Rcheck {
                range: Some(seq_range(from, to, usage)?),
            },
            ("ls", page) if page.len() <= 3 => Command::Ls(ListPage::parse(page, usage)?),
            ("lsd", page) if page.len() <= 3 => Command::Lsd(ListPage::parse(page, usage)?),
            ("cd", [dir]) => Command::Cd {
                dir: path_arg(dir)?,
            },
            ("pwd", []) => Command::Pwd,
            ("stat", [path]) => Command::Stat {
                path: path_arg(path)?,
            },
            ("mkdir", [path]) => Command::Mkdir {
                path: path_arg(path)?,
            },
            ("rmdir", [path]) => Command::Rmdir {
                path: path_arg(path)?,
            },
            ("del", [path]) => Command::Del {
                path: path_arg(path)?,
            },
            ("mv", [from, to]) => Command::Mv {
                from: path_arg(from)?,
                to: path_arg(to)?,
            },
            ("fopen", args) => Command::Fopen(FopenArgs::parse(args)?),
            ("fput", args) => {
                let FputArgs { id, offset, data } = FputArgs::parse(args)?;
                Command::Fput {
                    id,
                    offset,
                    data: data.to_vec(),
                }
            }
            ("fdone", args) => Command::Fdone(FdoneArgs::parse(args)?),
            ("fget", args) => Command::Fget(FgetArgs::parse(args)?),
            ("fread", args) => Command::Fread(FreadArgs::parse(args)?),
            ("fclose", args) => Command::Fclose(FcloseArgs::parse(args)?),
            ("send", args) => Command::Send(SendArgs::parse(args, usage)?),
            ("inbox", page) if page.len() <= 3 => Command::Inbox(ListPage::parse(page, usage)?),
            (name, _) => {
                return Err(match command_info(name) {
                    Some(_) => bad(),
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

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UserRole {
    /// An ordinary user.
    User,
    /// An administrator.
    Admin,
}

impl UserRole {
    /// `user` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::User => "user",
            UserRole::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Result<UserRole, Error> {
        match s {
            "user" => Ok(UserRole::User),
            "admin" => Ok(UserRole::Admin),
            _ => Err(Error::Malformed("role")),
        }
    }
}

/// One line of `ulist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// User name.
    pub name: String,
    /// Role.
    pub role: UserRole,
    /// Whether the user may log in.
    pub enabled: bool,
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
    /// `login`, and `whoami` when logged in: `[name, role]`.
    User {
        /// Normalised user name.
        name: String,
        /// Role.
        role: UserRole,
    },
    /// `whoami` before login: no fields.
    Anonymous,
    /// Administrative commands that change something: no fields.
    Done,
    /// `ulist`: one field per user, `name role enabled|disabled`.
    Users(Vec<UserSummary>),
    /// `ukey list`: one fingerprint per field.
    Keys(Vec<Fingerprint>),
    /// `tout`: `[seconds (decimal)]`, the session's idle timeout now in force.
    IdleTimeout(u64),
    /// `rput`: `[seq (decimal), entry hash (64 lower-case hex digits)]`.
    Appended {
        /// The new entry's seq.
        seq: u64,
        /// The new entry's hash.
        hash: [u8; 32],
    },
    /// `rget`, `rabs`: `[entry encoding]` (`spec/ledger.md` §1); decoding checks every field rule,
    /// but whether the entry belongs to the server's chain is for the caller to check.
    Record(Entry),
    /// `rhave`: `[yes|no]`.
    Have(bool),
    /// `rsize`, `rcount`: `[count (decimal)]`.
    Count(u64),
    /// `rlist`: `[next (decimal, or empty when the range is exhausted), entry encoding...]`.
    Page {
        /// The entries, ascending by seq.
        entries: Vec<Entry>,
        /// The FROM of the following page (same KIND, TO and LIMIT); `None` when no entry of
        /// the range is left.
        next: Option<u64>,
    },
    /// `rhead`: `[signed head encoding (138 bytes)]`. Decoding does not check the
    /// signature: call [`SignedHead::verify`] and compare the origin with the pinned key.
    Head(SignedHead),
    /// `rcheck`, chain intact: `[ok, seq (decimal)]`: the stored signed head (at `seq`) is
    /// valid and matches its entry, and every entry checked (`1..=seq` without a range,
    /// `FROM..=TO` with one) verified.
    ChainOk {
        /// The verified head's seq (0 for an empty ledger).
        seq: u64,
    },
    /// `rcheck`, chain broken: `[bad, seq (decimal, or empty when the fault is not about
    /// one entry), reason]`.
    ChainBad {
        /// The first bad seq, if the fault is about an entry.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// `ls`, `lsd`: `[next (a name, or empty when the directory is exhausted), entry...]`,
    /// each entry as [`DirEntry::to_field`].
    Listing {
        /// The entries, in byte order of their names.
        entries: Vec<DirEntry>,
        /// The FROM of the following page (same DIR and LIMIT); `None` when no entry is
        /// left.
        next: Option<String>,
    },
    /// `cd`, `pwd`: `[working directory]`, as `/` and the path from the home's root (`/`
    /// for the root itself), prefixed with `~NAME` when it is in another user's home.
    Cwd(String),
    /// `stat`: `[kind, size, mtime, created (or empty), sha256 (64 lower-case hex, or
    /// empty)]`.
    Stat(FileStat),
    /// `fopen`: `[ID (u32), OFFSET (u64), PREFIX_SHA256 (32 bytes)]`, binary.
    Opened(FopenReply),
    /// `fdone`: `[SIZE (u64), SHA256 (32 bytes)]`, binary: the file is visible.
    Uploaded(FdoneReply),
    /// `fget`: `[ID (u32), SIZE (u64), SHA256 (32 bytes)]`, binary.
    Download(FgetReply),
    /// `fread`: `[DATA]`, exactly the bytes asked for.
    Data(FreadReply),
    /// `send`: `[NAME]`, the file's name in the recipient's inbox folder.
    Delivered(String),
    /// `inbox`: `[next (a name, or empty when the folder is exhausted), entry...]`, each
    /// entry as [`Delivery::to_field`].
    Deliveries {
        /// The deliveries, in byte order of their names.
        entries: Vec<Delivery>,
        /// The FROM of the following page; `None` when no delivery is left.
        next: Option<String>,
    },
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
            Reply::Bye | Reply::Anonymous | Reply::Done => Vec::new(),
            Reply::User { name, role } => {
                vec![name.as_bytes().to_vec(), role.as_str().as_bytes().to_vec()]
            }
            Reply::Users(users) => users
                .iter()
                .map(|u| {
                    let state = if u.enabled { "enabled" } else { "disabled" };
                    format!("{} {} {state}", u.name, u.role.as_str()).into_bytes()
                })
                .collect(),
            Reply::Keys(keys) => keys.iter().map(|k| k.to_string().into_bytes()).collect(),
            Reply::IdleTimeout(secs) => vec![secs.to_string().into_bytes()],
            Reply::Appended { seq, hash } => {
                vec![seq.to_string().into_bytes(), hex_encode(hash).into_bytes()]
            }
            Reply::Record(entry) => vec![entry.to_bytes()],
            Reply::Have(yes) => vec![if *yes {
                b"yes".to_vec()
            } else {
                b"no".to_vec()
            }],
            Reply::Count(n) => vec![n.to_string().into_bytes()],
            Reply::Page { entries, next } => {
                let mut fields = Vec::with_capacity(entries.len() + 1);
                fields.push(next.map(|n| n.to_string().into_bytes()).unwrap_or_default());
                fields.extend(entries.iter().map(Entry::to_bytes));
                fields
            }
            Reply::Head(head) => vec![head.to_bytes().to_vec()],
            Reply::ChainOk { seq } => vec![b"ok".to_vec(), seq.to_string().into_bytes()],
            Reply::ChainBad { seq, reason } => vec![
                b"bad".to_vec(),
                seq.map(|n| n.to_string().into_bytes()).unwrap_or_default(),
                reason.as_bytes().to_vec(),
            ],
            Reply::Listing { entries, next } => {
                let mut fields = Vec::with_capacity(entries.len() + 1);
                fields.push(next.as_deref().unwrap_or("").as_bytes().to_vec());
                fields.extend(entries.iter().map(DirEntry::to_field));
                fields
            }
            Reply::Cwd(path) | Reply::Delivered(path) => vec![path.as_bytes().to_vec()],
            Reply::Deliveries { entries, next } => {
                let mut fields = Vec::with_capacity(entries.len() + 1);
                fields.push(next.as_deref().unwrap_or("").as_bytes().to_vec());
                fields.extend(entries.iter().map(Delivery::to_field));
                fields
            }
            Reply::Opened(r) => r.to_fields(),
            Reply::Uploaded(r) => r.to_fields(),
            Reply::Download(r) => r.to_fields(),
            Reply::Data(r) => vec![r.data.clone()],
            Reply::Stat(st) => vec![
                st.kind.as_str().as_bytes().to_vec(),
                st.size.to_string().into_bytes(),
                st.modified.to_string().into_bytes(),
                st.created
                    .map(|n| n.to_string().into_bytes())
                    .unwrap_or_default(),
                st.sha256
                    .map(|h| hex_encode(&h).into_bytes())
                    .unwrap_or_default(),
            ],
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
        let texts = || (0..fields.len()).map(text).collect::<Result<Vec<_>, _>>();
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
            Command::Login { .. } => {
                want(2)?;
                Reply::User {
                    name: text(0)?,
                    role: UserRole::parse(&text(1)?)?,
                }
            }
            Command::Whoami if fields.is_empty() => Reply::Anonymous,
            Command::Whoami => {
                want(2)?;
                Reply::User {
                    name: text(0)?,
                    role: UserRole::parse(&text(1)?)?,
                }
            }
            Command::Ulist { .. } => Reply::Users(
                texts()?
                    .iter()
                    .map(|line| {
                        let mut parts = line.split(' ');
                        let (Some(name), Some(role), Some(state), None) =
                            (parts.next(), parts.next(), parts.next(), parts.next())
                        else {
                            return Err(Error::Malformed("user line"));
                        };
                        let enabled = match state {
                            "enabled" => true,
                            "disabled" => false,
                            _ => return Err(Error::Malformed("user state")),
                        };
                        Ok(UserSummary {
                            name: name.to_owned(),
                            role: UserRole::parse(role)?,
                            enabled,
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Command::Ukey(KeyAction::List) => Reply::Keys(
                texts()?
                    .iter()
                    .map(|f| f.parse().map_err(|_| Error::Malformed("fingerprint")))
                    .collect::<Result<_, _>>()?,
            ),
            Command::Tout { .. } => {
                want(1)?;
                Reply::IdleTimeout(
                    decimal(&fields[0]).ok_or(Error::Malformed("idle timeout seconds"))?,
                )
            }
            Command::Rput { .. } => {
                want(2)?;
                let seq = decimal(&fields[0]).ok_or(Error::Malformed("entry seq"))?;
                let hash = hex32(&fields[1]).ok_or(Error::Malformed("entry hash"))?;
                Reply::Appended { seq, hash }
            }
            Command::Rget(_) | Command::Rabs { .. } => {
                want(1)?;
                Reply::Record(
                    Entry::decode(&fields[0]).map_err(|_| Error::Malformed("ledger entry"))?,
                )
            }
            Command::Rhave { .. } => {
                want(1)?;
                Reply::Have(match fields[0].as_slice() {
                    b"yes" => true,
                    b"no" => false,
                    _ => return Err(Error::Malformed("rhave answer")),
                })
            }
            Command::Rsize { .. } | Command::Rcount { .. } => {
                want(1)?;
                Reply::Count(decimal(&fields[0]).ok_or(Error::Malformed("ledger count"))?)
            }
            Command::Rlist { .. } => {
                let (next, entries) = fields
                    .split_first()
                    .ok_or(Error::Malformed("reply field count"))?;
                let next = match next.as_slice() {
                    [] => None,
                    n => Some(decimal(n).ok_or(Error::Malformed("rlist next"))?),
                };
                let entries = entries
                    .iter()
                    .map(|e| Entry::decode(e).map_err(|_| Error::Malformed("ledger entry")))
                    .collect::<Result<_, _>>()?;
                Reply::Page { entries, next }
            }
            Command::Rhead => {
                want(1)?;
                Reply::Head(
                    SignedHead::decode(&fields[0]).map_err(|_| Error::Malformed("signed head"))?,
                )
            }
            Command::Rcheck { .. } => match fields.first().map(Vec::as_slice) {
                Some(b"ok") => {
                    want(2)?;
                    Reply::ChainOk {
                        seq: decimal(&fields[1]).ok_or(Error::Malformed("rcheck seq"))?,
                    }
                }
                Some(b"bad") => {
                    want(3)?;
                    let seq = match fields[1].as_slice() {
                        [] => None,
                        n => Some(decimal(n).ok_or(Error::Malformed("rcheck seq"))?),
                    };
                    Reply::ChainBad {
                        seq,
                        reason: text(2)?,
                    }
                }
                _ => return Err(Error::Malformed("rcheck verdict")),
            },
            Command::Ls(_) | Command::Lsd(_) => {
                let (next, entries) = fields
                    .split_first()
                    .ok_or(Error::Malformed("reply field count"))?;
                let next = match next.as_slice() {
                    [] => None,
                    n => Some(
                        String::from_utf8(n.to_vec()).map_err(|_| Error::Malformed("ls next"))?,
                    ),
                };
                let entries = entries
                    .iter()
                    .map(|e| DirEntry::from_field(e))
                    .collect::<Result<_, _>>()?;
                Reply::Listing { entries, next }
            }
            Command::Cd { .. } | Command::Pwd => {
                want(1)?;
                Reply::Cwd(text(0)?)
            }
            Command::Send(_) => {
                want(1)?;
                Reply::Delivered(text(0)?)
            }
            Command::Inbox(_) => {
                let (next, entries) = fields
                    .split_first()
                    .ok_or(Error::Malformed("reply field count"))?;
                let next = match next.as_slice() {
                    [] => None,
                    n => Some(
                        String::from_utf8(n.to_vec())
                            .map_err(|_| Error::Malformed("inbox next"))?,
                    ),
                };
                let entries = entries
                    .iter()
                    .map(|e| Delivery::from_field(e))
                    .collect::<Result<_, _>>()?;
                Reply::Deliveries { entries, next }
            }
            Command::Stat { .. } => {
                want(5)?;
                let optional = |f: &[u8], what| match f {
                    [] => Ok(None),
                    n => decimal(n).map(Some).ok_or(Error::Malformed(what)),
                };
                Reply::Stat(FileStat {
                    kind: FileKind::parse(&text(0)?)?,
                    size: decimal(&fields[1]).ok_or(Error::Malformed("stat size"))?,
                    modified: decimal(&fields[2]).ok_or(Error::Malformed("stat mtime"))?,
                    created: optional(&fields[3], "stat created")?,
                    sha256: match fields[4].as_slice() {
                        [] => None,
                        h => Some(hex32(h).ok_or(Error::Malformed("stat sha256"))?),
                    },
                })
            }
            Command::Fopen(_) => Reply::Opened(FopenReply::from_fields(fields)?),
            Command::Fdone(_) => Reply::Uploaded(FdoneReply::from_fields(fields)?),
            Command::Fget(_) => Reply::Download(FgetReply::from_fields(fields)?),
            Command::Fread(a) => {
                let reply = FreadReply::from_fields(fields.to_vec())?;
                if u32::try_from(reply.data.len()).ok() != Some(a.len) {
                    return Err(Error::Malformed("fread reply length"));
                }
                Reply::Data(reply)
            }
            Command::Logout
            | Command::Uini { .. }
            | Command::Uadd { .. }
            | Command::Aadd { .. }
            | Command::Udel { .. }
            | Command::Uena { .. }
            | Command::Chpass { .. }
            | Command::Ukey(_)
            | Command::Mkdir { .. }
            | Command::Rmdir { .. }
            | Command::Del { .. }
            | Command::Mv { .. }
            | Command::Fput { .. }
            | Command::Fclose(_) => {
                want(0)?;
                Reply::Done
            }
        })
    }
}

/// The `help` text: all commands, or one command's usage.
pub fn help_text(topic: Option<&str>) -> Result<String, ErrorReply> {
    match topic {
        None => Ok(COMMANDS
            .iter()
            .map(|c| format!("{:<8} [{}] {}\n", c.name, c.access.as_str(), c.summary))
            .collect()),
        Some(name) => COMMANDS
            .iter()
            .find(|c| c.name == name)
            .map(|c| {
                format!(
                    "usage: {}\n{}\nallowed for: {}\n",
                    c.usage,
                    c.summary,
                    c.access.as_str()
                )
            })
            .ok_or_else(|| {
                ErrorReply::new(
                    ErrorCode::UnknownCommand,
                    format!("no command named '{name}'"),
                )
            }),
    }
}
