//! The typed command set (protocol v1) on top of [`Request`]/[`Response`](crate::Response).
//!
//! One table, below, declares every command: its [`Command`] variant, wire name, [`Access`],
//! domain, arity and help. Adding a command means: one row of that table, its argument and
//! reply codec (and sample values) in its domain's module, and its handler in the server.
//! The domains are `session` (hello, ver, id, help, ping, quit, tout), `accounts` (login,
//! users, keys), `ledger` (the `r*` commands), `files` (the file tree), `transfers`
//! (`f*` uploads and downloads), `delivery` (send, inbox) and `replication` (`peer`,
//! `peers`, `padd`, `pdel`), `tables` (`tables`, `query`); `args` holds the argument
//! helpers they share and `reply` the [`Reply`] type and its field codec.
//!
//! Servers dispatch on [`Command::parse`], which answers unknown names and bad arguments with
//! typed [`ErrorReply`]s instead of failing the connection, or, before parsing, on
//! [`CommandKind::from_name`] (a typed name, never a string comparison).

#[macro_use]
mod macros;
mod accounts;
mod args;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod catalog;
mod delivery;
mod files;
mod ledger;
mod messages;
mod notice;
mod replication;
mod reply;
mod session;
mod tables;
mod transfers;
mod transit;
mod two_factor;

pub use accounts::{
    Credential, KeyAction, LOGIN_SIGNATURE_CONTEXT, SecretBytes, UserRole, UserSummary,
    login_signature_message,
};
pub use delivery::{
    DEFAULT_INBOX_FOLDER, Delivery, DeliveryState, MAX_DELIVERY_REASON, MAX_ENCODED_DELIVERY,
    MAX_NOTE, SendArgs,
};
pub use files::{
    DirEntry, FileKind, FileStat, LS_DEFAULT_LIMIT, LS_ENTRY_BUDGET, LS_MAX_LIMIT, LS_OVERHEAD,
    ListPage, MAX_ENCODED_DIR_ENTRY, MAX_ENCODED_VERSION, MAX_FILE_NAME, VersionInfo,
};
pub use ledger::{
    RLIST_DEFAULT_LIMIT, RLIST_ENTRY_BUDGET, RLIST_MAX_LIMIT, RLIST_OVERHEAD, RecordSelector,
    SeqRange,
};
pub use messages::{MAX_ENCODED_MESSAGE_SUMMARY, MessageSummary, MkeyAction};
pub use notice::{MAX_NOTICE_FIELD, Notice};
pub use replication::{
    ForkSummary, MAX_PEER_ADDRESS, MAX_PEERS, OriginLag, PeerSource, PeerStatus, check_peer_address,
};
pub use reply::Reply;
pub use session::MAX_PING_PAYLOAD;
pub use tables::{
    Lookup, MAX_ENCODED_ROW, MAX_ENCODED_TABLE_INFO, MAX_TABLE_FIELD, MAX_TABLE_NAME, MAX_TABLES,
    PREFIX_FLAG, QUERY_DEFAULT_LIMIT, QUERY_MAX_LIMIT, QUERY_OVERHEAD, QUERY_ROW_BUDGET, TableInfo,
    TableQuery, TableRow,
};
pub use transit::{
    GK_DEFAULT_BYTES, GK_MAX_BYTES, MAX_ENCODED_TRANSIT_KEY, TkeyAction, TransitKeyInfo,
};
pub use two_factor::{OtpCode, RECOVERY_CODE_CHARS, RECOVERY_CODES, TOTP_DIGITS, TwoFactorAction};

use crate::secure::Fingerprint;
use crate::transfer::{FcloseArgs, FdoneArgs, FgetArgs, FopenArgs, FputArgs, FreadArgs};
use crate::wire::{ErrorCode, ErrorReply, Request};

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

/// One row of the command table: a command's kind, documentation (served by `help`),
/// access and arity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// The typed kind.
    pub kind: CommandKind,
    /// Wire name.
    pub name: &'static str,
    /// Arguments, as shown to users.
    pub usage: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Who may run it.
    pub access: Access,
    /// The fewest arguments any of its forms takes.
    pub min_args: usize,
    /// The most arguments any of its forms takes.
    pub max_args: usize,
}

/// The module that owns a command's codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Domain {
    Session,
    Accounts,
    Ledger,
    Files,
    Transfers,
    Delivery,
    Replication,
    Messages,
    Tables,
    Transit,
}

command_table! {
    /// `hello`
    Hello => "hello", Anyone, Session, 0..=0, "hello",
        "greet the server; replies with a greeting naming it";
    /// `ver`
    Ver => "ver", Anyone, Session, 0..=0, "ver",
        "protocol and software version of the server";
    /// `id`
    Id => "id", Anyone, Session, 0..=0, "id",
        "the server's name and identity key fingerprint";
    /// `help [command]`
    Help {
        /// Command to describe; `None` lists all.
        topic: Option<String>,
    } => "help", Anyone, Session, 0..=1, "help [command]",
        "list commands, or describe one";
    /// `ping [payload]`
    Ping {
        /// Bytes to echo.
        payload: Vec<u8>,
    } => "ping", Anyone, Session, 0..=1, "ping [payload]",
        "echo the payload (up to 16000 bytes)";
    /// `quit`
    Quit => "quit", Anyone, Session, 0..=0, "quit",
        "end the session; the server replies and closes";
    /// `login NAME password PASSWORD` / `login NAME key PUBKEY SIGNATURE`
    Login {
        /// User name as typed.
        user: String,
        /// The proof.
        credential: Credential,
    } => "login", Anyone, Accounts, 3..=4,
        "login NAME password PASSWORD | login NAME key PUBKEY SIGNATURE",
        "log in by password, or by a key signing this session's id";
    /// `logout`
    Logout => "logout", User, Accounts, 0..=0, "logout",
        "end the login; the session stays open";
    /// `whoami`
    Whoami => "whoami", Anyone, Accounts, 0..=0, "whoami",
        "the logged-in user and role, or nothing";
    /// `uini NAME PASSWORD`
    Uini {
        /// New admin's name.
        user: String,
        /// Their password.
        password: SecretBytes,
    } => "uini", Anyone, Accounts, 2..=2, "uini NAME PASSWORD",
        "create the first admin (only while no user exists, only from the server's own machine)";
    /// `uadd NAME PASSWORD`
    Uadd {
        /// New user's name.
        user: String,
        /// Their password.
        password: SecretBytes,
    } => "uadd", Admin, Accounts, 2..=2, "uadd NAME PASSWORD", "create a user";
    /// `aadd NAME PASSWORD`
    Aadd {
        /// New admin's name.
        user: String,
        /// Their password.
        password: SecretBytes,
    } => "aadd", Admin, Accounts, 2..=2, "aadd NAME PASSWORD", "create an admin";
    /// `udel NAME`
    Udel {
        /// User to delete.
        user: String,
    } => "udel", Admin, Accounts, 1..=1, "udel NAME",
        "delete a user (never the last enabled admin)";
    /// `uena NAME on|off`
    Uena {
        /// User to change.
        user: String,
        /// New state.
        enabled: bool,
    } => "uena", Admin, Accounts, 2..=2, "uena NAME on|off",
        "enable or disable a user (never the last enabled admin)";
    /// `ulist [filter]`
    Ulist {
        /// Substring the names must contain.
        filter: Option<String>,
    } => "ulist", Admin, Accounts, 0..=1, "ulist [filter]",
        "list users whose name contains the filter";
    /// `chpass OLD NEW` (own) or `chpass --for NAME NEW` (admins, for another user)
    Chpass {
        /// Another user (admins only); `None` for oneself.
        target: Option<String>,
        /// The current password (own change only).
        old: Option<SecretBytes>,
        /// The new password.
        new: SecretBytes,
    } => "chpass", User, Accounts, 2..=3, "chpass OLD NEW | chpass --for NAME NEW",
        "change your password, or (admins) set another user's";
    /// `ukey add|list|del`
    Ukey(KeyAction) => "ukey", User, Accounts, 1..=2,
        "ukey add PUBKEY | ukey list | ukey del FINGERPRINT",
        "manage your login keys";
    /// `otp CODE`: the second step of a login answered
    /// [`CodeNeeded`](crate::wire::ErrorCode::CodeNeeded) (protocol.md, two-factor login).
    Otp {
        /// A current authenticator code or an unused recovery code.
        code: OtpCode,
    } => "otp", Anyone, Accounts, 1..=1, "otp CODE",
        "finish a login answered 'code needed' with a current authenticator code or a \
         recovery code";
    /// `2fa enable | confirm CODE | disable CODE | reset USER`: the logged-in user's second
    /// factor; `reset` is for admins (checked by the server, like `chpass --for`).
    TwoFactor(TwoFactorAction) => "2fa", User, Accounts, 1..=2,
        "2fa enable | 2fa confirm CODE | 2fa disable CODE | 2fa reset USER",
        "two-factor login: enable (a new TOTP secret and recovery codes, pending), confirm \
         with a current code, disable with a code, or (admins) reset a user's";
    /// `tout [SECONDS]`: this session's idle timeout. Logged-in users only
    /// ([`Access::User`]): an anonymous connection keeps the server's default, so it cannot
    /// hold a connection slot longer than the operator chose.
    Tout {
        /// New timeout in whole seconds (decimal on the wire); `None` only asks.
        seconds: Option<u64>,
    } => "tout", User, Session, 0..=1, "tout [SECONDS]",
        "show, or set within the server's bounds, this session's idle timeout";
    /// `rput KIND RECORD_ID BODY`: append a record to the server's feed. Parsing checks the
    /// kind ([`check_kind`](crate::ledger::check_kind)), the record id
    /// ([`check_record_id`](crate::ledger::check_record_id)) and the body size
    /// ([`MAX_BODY`](crate::ledger::MAX_BODY)).
    Rput {
        /// The entry kind (topic).
        kind: String,
        /// The client's unique record id (1-64 bytes).
        record_id: Vec<u8>,
        /// The body bytes.
        body: Vec<u8>,
    } => "rput", User, Ledger, 3..=3, "rput KIND RECORD_ID BODY",
        "append a record to the server's ledger; replies with its seq and entry hash";
    /// `rget seq N | id RECORD_ID | hash HEX [ORIGIN]`. Like every ledger read, it takes
    /// an optional last argument ORIGIN (a server key fingerprint, `SHA256:` and 64 hex
    /// digits) naming the feed read: the server's own without it (protocol.md §13.3).
    Rget {
        /// Which entry.
        selector: RecordSelector,
        /// The feed read; `None` is the server's own.
        origin: Option<Fingerprint>,
    } => "rget", User, Ledger, 2..=3,
        "rget seq N [ORIGIN] | rget id RECORD_ID [ORIGIN] | rget hash HEX [ORIGIN]",
        "a ledger entry (its canonical encoding) by seq, record id or entry hash, of the \
         server's feed or of the held feed of ORIGIN (a key fingerprint)";
    /// `rhave RECORD_ID [ORIGIN]`
    Rhave {
        /// The record id asked about.
        record_id: Vec<u8>,
        /// The feed read; `None` is the server's own.
        origin: Option<Fingerprint>,
    } => "rhave", User, Ledger, 1..=2, "rhave RECORD_ID [ORIGIN]",
        "whether the ledger (or the held feed of ORIGIN) holds a record with this id";
    /// `rabs POS [ORIGIN]`: the entry at a position, counted from the first entry (`1`,
    /// `2`, ...) or from the last one (`-1`, `-2`, ...). Parsing refuses 0.
    Rabs {
        /// The non-zero position (decimal on the wire, `-` for negative).
        pos: i64,
        /// The feed read; `None` is the server's own.
        origin: Option<Fingerprint>,
    } => "rabs", User, Ledger, 1..=2, "rabs POS [ORIGIN]",
        "the ledger entry at a position: 1 is the first, -1 the last (of the held feed of \
         ORIGIN with one)";
    /// `rsize [KIND] [ORIGIN]`
    Rsize {
        /// Count only this kind (checked by [`check_kind`](crate::ledger::check_kind));
        /// `None` counts every entry.
        kind: Option<String>,
        /// The feed read; `None` is the server's own.
        origin: Option<Fingerprint>,
    } => "rsize", User, Ledger, 0..=2, "rsize [KIND] [ORIGIN]",
        "how many entries the ledger (or the held feed of ORIGIN) holds, or holds of one kind";
    /// `rcount KIND FROM TO [ORIGIN]`
    Rcount {
        /// The kind counted (checked by [`check_kind`](crate::ledger::check_kind)).
        kind: String,
        /// The seqs counted.
        range: SeqRange,
        /// The feed read; `None` is the server's own.
        origin: Option<Fingerprint>,
    } => "rcount", User, Ledger, 3..=4, "rcount KIND FROM TO [ORIGIN]",
        "how many entries of a kind have a seq in FROM..=TO (in the held feed of ORIGIN with \
         one)";
    /// `rlist KIND|* FROM TO [LIMIT] [ORIGIN]`
    Rlist {
        /// The kind listed (checked by [`check_kind`](crate::ledger::check_kind)); `None`
        /// (`*` on the wire) lists every kind.
        kind: Option<String>,
        /// The seqs listed.
        range: SeqRange,
        /// The most entries in the page, 1 to [`RLIST_MAX_LIMIT`]; `None` means
        /// [`RLIST_DEFAULT_LIMIT`].
        limit: Option<u32>,
        /// The feed read; `None` is the server's own.
        origin: Option<Fingerprint>,
    } => "rlist", User, Ledger, 3..=5, "rlist KIND|* FROM TO [LIMIT] [ORIGIN]",
        "one page of the entries (of a kind, or every kind) with a seq in FROM..=TO, \
         ascending, at most LIMIT (default 100, max 1000), of the ledger or the held feed of \
         ORIGIN; replies with the FROM of the next page";
    /// `rhead [ORIGIN]`
    Rhead {
        /// The feed read; `None` is the server's own.
        origin: Option<Fingerprint>,
    } => "rhead", User, Ledger, 0..=1, "rhead [ORIGIN]",
        "the ledger's signed head (seq and hash of the last entry, signed by the server key), \
         or the signed head of the held feed of ORIGIN (signed by that key)";
    /// `rcheck [FROM TO] [ORIGIN]`
    Rcheck {
        /// Check only these entries (and the head); `None` checks the whole feed.
        range: Option<SeqRange>,
        /// The feed checked; `None` is the server's own.
        origin: Option<Fingerprint>,
    } => "rcheck", Admin, Ledger, 0..=3, "rcheck [FROM TO] [ORIGIN]",
        "re-verify the stored chain (all of it, or entries FROM..=TO) and its signed head, of \
         the ledger or the held feed of ORIGIN; names the first bad seq";
    /// `ls [DIR [FROM [LIMIT]]]`: one page of a directory. An empty DIR or FROM argument
    /// means none.
    Ls(ListPage) => "ls", User, Files, 0..=3, "ls [DIR [FROM [LIMIT]]]",
        "one page of a directory's entries (kind, size, mtime, name) in name order, from the \
         name FROM on, at most LIMIT (default 100, max 1000); replies with the FROM of the \
         next page";
    /// `lsd [DIR [FROM [LIMIT]]]`: like `ls`, directories only.
    Lsd(ListPage) => "lsd", User, Files, 0..=3, "lsd [DIR [FROM [LIMIT]]]",
        "like ls, listing only the directories";
    /// `cd DIR`
    Cd {
        /// The new working directory (a client path).
        dir: String,
    } => "cd", User, Files, 1..=1, "cd DIR",
        "change the session's working directory; replies with it";
    /// `pwd`
    Pwd => "pwd", User, Files, 0..=0, "pwd", "the session's working directory";
    /// `stat PATH`
    Stat {
        /// The file or directory.
        path: String,
    } => "stat", User, Files, 1..=1, "stat PATH",
        "kind, size, modification and creation times and sha256 (when known) of a file or \
         directory";
    /// `mkdir PATH`
    Mkdir {
        /// The directory to create.
        path: String,
    } => "mkdir", User, Files, 1..=1, "mkdir PATH", "create a directory";
    /// `rmdir PATH`
    Rmdir {
        /// The empty directory to remove.
        path: String,
    } => "rmdir", User, Files, 1..=1, "rmdir PATH", "remove an empty directory";
    /// `del PATH`
    Del {
        /// The file to delete.
        path: String,
    } => "del", User, Files, 1..=1, "del PATH", "delete a file (and its kept versions)";
    /// `mv FROM TO`
    Mv {
        /// What to move.
        from: String,
        /// Where to.
        to: String,
    } => "mv", User, Files, 2..=2, "mv FROM TO",
        "rename or move a file or directory; an overwritten file is kept as a version";
    /// `fopen PATH SIZE [resume]`: start or resume an upload (spec/files.md §3).
    Fopen(FopenArgs) => "fopen", User, Transfers, 2..=3, "fopen PATH SIZE [resume]",
        "start (or with resume, continue) an upload of SIZE bytes to PATH (binary numbers, \
         spec/files.md)";
    /// `fput ID OFFSET DATA`: one upload chunk (the data owned; see [`Command::fput_args`]).
    Fput {
        /// The upload's transfer id.
        id: u32,
        /// Where the chunk starts.
        offset: u64,
        /// 1 to [`MAX_FPUT_DATA`](crate::transfer::MAX_FPUT_DATA) bytes.
        data: Vec<u8>,
    } => "fput", User, Transfers, 3..=3, "fput ID OFFSET DATA", "one upload chunk at OFFSET";
    /// `fdone ID SHA256`: finish an upload.
    Fdone(FdoneArgs) => "fdone", User, Transfers, 2..=2, "fdone ID SHA256",
        "finish an upload: the file becomes visible if its SHA-256 matches";
    /// `fget PATH`: open a file for download (spec/files.md §4).
    Fget(FgetArgs) => "fget", User, Transfers, 1..=1, "fget PATH",
        "open a file for download; replies with its id, size and SHA-256";
    /// `fread ID OFFSET LEN`: one download chunk.
    Fread(FreadArgs) => "fread", User, Transfers, 3..=3, "fread ID OFFSET LEN",
        "one download chunk of LEN bytes at OFFSET";
    /// `fclose ID`: end a transfer.
    Fclose(FcloseArgs) => "fclose", User, Transfers, 1..=1, "fclose ID",
        "end a transfer (an upload stays resumable)";
    /// `send USER PATH [FOLDER [NOTE]]`: deliver a file to another user's inbox
    /// (protocol.md §13.5).
    Send(SendArgs) => "send", User, Delivery, 2..=4, "send USER PATH [FOLDER [NOTE]]",
        "deliver your file PATH to USER's inbox folder FOLDER (default `default`), if its \
         folder.toml allows you";
    /// `inbox [FOLDER [FROM [LIMIT]]]`: one page of the deliveries to an inbox folder (the
    /// page's `dir` is the folder).
    Inbox(ListPage) => "inbox", User, Delivery, 0..=3, "inbox [FOLDER [FROM [LIMIT]]]",
        "the deliveries to your inbox folder FOLDER (default `default`): name, state, sender, \
         time, size, sha256, note, reason";
    /// `peer KEY SIGNATURE`: a peer server proves its key by signing this session's id, and
    /// the connection becomes a replication link (spec/replication.md §2).
    Peer {
        /// The dialing server's identity key, SEC1 compressed.
        key: [u8; crate::wire::POINT_LEN],
        /// Its signature over the peer link message (`replication::peer_link_message`).
        signature: [u8; crate::wire::SIGNATURE_LEN],
    } => "peer", Anyone, Replication, 2..=2, "peer KEY SIGNATURE",
        "start a replication link: a configured peer server proves its key by signing this \
         session's id";
    /// `peers`: every configured peer's link status and the quarantined origins
    /// (spec/replication.md §2.1).
    Peers => "peers", Admin, Replication, 0..=0, "peers",
        "each replication peer: link up or down, since when, last error, its epoch, how far \
         each feed differs; then the quarantined origins and their fork heads";
    /// `padd FPR [ADDR]`: add a replication peer at runtime, or change the address of one
    /// added so (spec/replication.md §2.2).
    Padd {
        /// The fingerprint of the peer's server key.
        fingerprint: Fingerprint,
        /// Where to dial it (`host:port`); `None`: only accept its links.
        address: Option<String>,
    } => "padd", Admin, Replication, 1..=2, "padd FPR [ADDR]",
        "add a replication peer (kept across restarts): accept links from the key FPR, and \
         dial ADDR (host:port) if given; again for an added peer changes its address";
    /// `pdel FPR`: remove a peer added with `padd` (spec/replication.md §2.2).
    Pdel {
        /// The fingerprint of the peer's server key.
        fingerprint: Fingerprint,
    } => "pdel", Admin, Replication, 1..=1, "pdel FPR",
        "remove a replication peer added with padd: its links close and it is no longer \
         dialed (peers of the config file stay)";
    /// `versions PATH`: the kept versions of a file (spec/files.md §6), newest first.
    Versions {
        /// The file.
        path: String,
    } => "versions", User, Files, 1..=1, "versions PATH",
        "the kept versions of a file, newest first: number (1 the newest), size, mtime, \
         sha256";
    /// `restore PATH N`: makes kept version `n` the file's content; the content it
    /// replaces becomes the newest kept version, so a restore can itself be undone.
    Restore {
        /// The file.
        path: String,
        /// The version restored (1 the newest).
        version: u32,
    } => "restore", User, Files, 2..=2, "restore PATH N",
        "make kept version N the file's content (the replaced content is kept as version 1)";
    /// `mkdirs PATH`: `mkdir -p`, creating the missing parents; a directory already there
    /// is fine, a file on the way is refused.
    Mkdirs {
        /// The directory to create, with its missing parents.
        path: String,
    } => "mkdirs", User, Files, 1..=1, "mkdirs PATH",
        "create a directory and any missing parents (fine if it exists; a file in the way is \
         refused)";
    /// `mkey USER | mkey set KEY`: a user's published message key, or publish one's own
    /// (spec/messages.md §1).
    Mkey(MkeyAction) => "mkey", User, Messages, 1..=2, "mkey USER | mkey set KEY",
        "the message key USER published (33 bytes), or publish yours";
    /// `msend USER SEALED`: store a sealed message for USER (spec/messages.md §5).
    Msend {
        /// The recipient's user name.
        to: String,
        /// The sealed message (spec/messages.md §2).
        sealed: Vec<u8>,
    } => "msend", User, Messages, 2..=2, "msend USER SEALED",
        "store a sealed message for USER; replies with its id in their mailbox";
    /// `mlist [FROM]`: one's mailbox, newest first.
    Mlist {
        /// Only messages from this user.
        from: Option<String>,
    } => "mlist", User, Messages, 0..=1, "mlist [FROM]",
        "your messages, newest first (id, from, time, size, read|unread), or those from FROM";
    /// `mread ID`: one sealed message of one's mailbox; it is marked read.
    Mread {
        /// The message id.
        id: u64,
    } => "mread", User, Messages, 1..=1, "mread ID",
        "the sealed bytes of your message ID (marks it read)";
    /// `mdel ID`: delete a message of one's mailbox.
    Mdel {
        /// The message id.
        id: u64,
    } => "mdel", User, Messages, 1..=1, "mdel ID", "delete your message ID";
    /// `tables`: the query tables this session may query (spec/tables.md).
    Tables => "tables", Anyone, Tables, 0..=0, "tables",
        "the query tables you may query: name, rows, last load time, last load error, columns";
    /// `query TABLE KEY | query TABLE --prefix P [LIMIT [FROM]]`: one row of a query table
    /// by key, or a page of the rows whose key starts with P (spec/tables.md). Each table
    /// says who may query it; the server checks.
    Query(TableQuery) => "query", Anyone, Tables, 2..=5,
        "query TABLE KEY | query TABLE --prefix P [LIMIT [FROM]]",
        "the row of TABLE whose key is KEY, or the rows whose key starts with P in key order \
         from the key FROM on, at most LIMIT (default 100, max 1000); replies with the FROM \
         of the next page";
    /// `tkey new NAME | list | rotate NAME | del NAME | min USER NAME VERSION`: the logged-in
    /// user's transit keys (spec/transit.md §5); `min` for another user is for admins
    /// (checked by the server, like `2fa reset`).
    Tkey(TkeyAction) => "tkey", User, Transit, 1..=4,
        "tkey new NAME | tkey list | tkey rotate NAME | tkey del NAME | tkey min USER NAME VERSION",
        "your transit keys: make one, list them, rotate one to a new version, delete one, or \
         retire the versions below VERSION (admins: of any user's key)";
    /// `seal NAME DATA`: DATA sealed under the newest version of one's key NAME.
    Seal {
        /// The key.
        name: String,
        /// Up to [`MAX_SEAL_DATA`](crate::transit::MAX_SEAL_DATA) bytes.
        data: Vec<u8>,
    } => "seal", User, Transit, 2..=2, "seal NAME DATA",
        "encrypt DATA (up to 12000 bytes) under your key NAME's newest version; replies with \
         a vserv:v1: token";
    /// `unseal NAME TOKEN`: the data of a token sealed under one's key NAME.
    Unseal {
        /// The key.
        name: String,
        /// The token's text, checked by the server ([`Token::parse`](crate::transit::Token::parse)).
        token: Vec<u8>,
    } => "unseal", User, Transit, 2..=2, "unseal NAME TOKEN",
        "decrypt a token made with your key NAME (a version not retired); replies with the data";
    /// `rewrap NAME TOKEN`: the token sealed again under the newest version, the data never
    /// leaving the server.
    Rewrap {
        /// The key.
        name: String,
        /// The token's text.
        token: Vec<u8>,
    } => "rewrap", User, Transit, 2..=2, "rewrap NAME TOKEN",
        "re-encrypt a token of your key NAME under its newest version, without revealing the data";
    /// `gk [BYTES]`: fresh random bytes from the server.
    Gk {
        /// How many, 1 to [`GK_MAX_BYTES`]; `None`: [`GK_DEFAULT_BYTES`].
        bytes: Option<u32>,
    } => "gk", User, Transit, 0..=1, "gk [BYTES]",
        "fresh random key material from the server (default 32 bytes, at most 1024)";
}

// `CommandKind::info` indexes the table by kind: prove the orders agree.
const _: () = {
    assert!(COMMANDS.len() == CommandKind::ALL.len());
    let mut i = 0;
    while i < COMMANDS.len() {
        assert!(COMMANDS[i].kind as usize == i);
        i += 1;
    }
};

impl CommandKind {
    /// This command's row of [`COMMANDS`].
    pub const fn info(self) -> &'static CommandInfo {
        // In bounds and the right row: checked at compile time above.
        &COMMANDS[self as usize]
    }

    /// Who may run this command.
    pub const fn access(self) -> Access {
        self.info().access
    }
}

/// The documentation of command `name`.
pub fn command_info(name: &str) -> Option<&'static CommandInfo> {
    CommandKind::from_name(name).map(CommandKind::info)
}

impl Command {
    /// The wire name.
    pub const fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Who may run this command.
    pub const fn access(&self) -> Access {
        self.kind().access()
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

    /// The wire arguments.
    pub fn args(&self) -> Vec<Vec<u8>> {
        in_domain!(self.kind().domain(), encode(self))
    }

    /// Parses a request into a command, or the error reply to send back: `unknown command`
    /// for a name not in the table, `usage: ...` for an argument count outside the row's
    /// arity, else whatever the command's domain says of the arguments.
    pub fn parse(req: &Request) -> Result<Command, ErrorReply> {
        let kind = CommandKind::from_name(&req.name).ok_or_else(|| {
            ErrorReply::new(
                ErrorCode::UnknownCommand,
                format!("unknown command '{}'; try 'help'", req.name),
            )
        })?;
        let info = kind.info();
        if !(info.min_args..=info.max_args).contains(&req.args.len()) {
            return Err(args::usage_error(kind));
        }
        in_domain!(kind.domain(), parse(kind, &req.args))
    }
}

/// The `help` text: all commands, or one command's usage.
pub fn help_text(topic: Option<&str>) -> Result<String, ErrorReply> {
    match topic {
        None => Ok(COMMANDS
            .iter()
            .map(|c| format!("{:<8} [{}] {}\n", c.name, c.access.as_str(), c.summary))
            .collect()),
        Some(name) => command_info(name)
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
