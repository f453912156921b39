//! [`Reply`], the typed answer of each command, and its field codec: encoding is one match
//! over the replies, decoding is dispatched to the domain of the command answered (which
//! knows the reply shapes it expects) through [`Fields`].

use super::accounts::{UserRole, UserSummary};
use super::args::{hex_encode, number, text};
use super::delivery::Delivery;
use super::files::{DirEntry, FileStat, VersionInfo};
use super::messages::MessageSummary;
use super::tables::{TableInfo, TableRow};
use super::{
    Command, Domain, accounts, delivery, files, ledger, messages, replication, session, tables,
    transfers, transit,
};
use crate::Error;
use crate::ledger::{Entry, SignedHead};
use crate::secure::Fingerprint;
use crate::transfer::{FdoneReply, FgetReply, FopenReply, FreadReply};

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
    /// `2fa enable`: `[otpauth URI, recovery code...]`: the new (pending) secret as an
    /// `otpauth://totp/` URI and the one-time recovery codes, shown this once.
    TwoFactorEnrolment {
        /// `otpauth://totp/vserv:USER?secret=BASE32&issuer=vserv&...`.
        uri: String,
        /// The recovery codes, as `xxxx-xxxx-xxxx-xxxx`.
        recovery: Vec<String>,
    },
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
    /// `versions`: one field per kept version, newest first, each as
    /// [`VersionInfo::to_field`] (as many as fit one response).
    Versions(Vec<VersionInfo>),
    /// `peers`: one field per configured peer ([`PeerStatus::to_field`](super::PeerStatus::to_field)),
    /// then one per quarantined origin ([`ForkSummary::to_field`](super::ForkSummary::to_field)).
    Peers {
        /// The configured peers, by fingerprint.
        peers: Vec<super::PeerStatus>,
        /// The quarantined origins, by fingerprint.
        forks: Vec<super::ForkSummary>,
    },
    /// `mkey USER`: `[KEY]`, the 33-byte SEC1 compressed message key.
    MessageKey([u8; crate::wire::POINT_LEN]),
    /// `msend`: `[id (decimal)]`, the message's id in the recipient's mailbox.
    MessageId(u64),
    /// `mlist`: one field per message, newest first ([`MessageSummary::to_field`]).
    Messages(Vec<MessageSummary>),
    /// `mread`: `[SEALED]`, the sealed message as stored.
    Sealed(Vec<u8>),
    /// `tables`: one field per table ([`TableInfo::to_field`]), by name.
    Tables(Vec<TableInfo>),
    /// `query TABLE KEY`: `[row]` ([`TableRow::to_field`]).
    Row(TableRow),
    /// `query TABLE --prefix P`: `[next (a key, or empty when no row is left), row...]`.
    Rows {
        /// The rows, in key order.
        rows: Vec<TableRow>,
        /// The FROM of the following page (same TABLE, P and LIMIT); `None` when no row
        /// is left.
        next: Option<String>,
    },
    /// `tkey new`, `tkey rotate`: `[version (decimal)]`, the key's newest version now.
    KeyVersion(u32),
    /// `tkey list`: one field per key, in name order ([`TransitKeyInfo::to_field`](super::TransitKeyInfo::to_field)).
    TransitKeys(Vec<super::TransitKeyInfo>),
    /// `seal`, `rewrap`: `[TOKEN]`, the token's text (spec/transit.md §2).
    Token(String),
    /// `unseal`: `[DATA]`, the data the token sealed.
    Unsealed(Vec<u8>),
    /// `gk`: `[BYTES]`, fresh random bytes.
    KeyMaterial(Vec<u8>),
}

impl Reply {
    /// The response fields.
    pub fn to_fields(&self) -> Vec<Vec<u8>> {
        match self {
            Reply::Greeting(s) | Reply::Help(s) | Reply::Cwd(s) | Reply::Delivered(s) => {
                vec![text(s)]
            }
            Reply::Version { protocol, software } => vec![number(protocol), text(software)],
            Reply::Identity { name, fingerprint } => {
                vec![text(name), text(&fingerprint.to_string())]
            }
            Reply::Pong(p) => vec![p.clone()],
            Reply::Bye | Reply::Anonymous | Reply::Done => Vec::new(),
            Reply::User { name, role } => vec![text(name), text(role.as_str())],
            Reply::Users(users) => users.iter().map(UserSummary::to_field).collect(),
            Reply::Keys(keys) => keys.iter().map(|k| text(&k.to_string())).collect(),
            Reply::TwoFactorEnrolment { uri, recovery } => std::iter::once(text(uri))
                .chain(recovery.iter().map(|c| text(c)))
                .collect(),
            Reply::IdleTimeout(secs) => vec![number(secs)],
            Reply::Appended { seq, hash } => vec![number(seq), text(&hex_encode(hash))],
            Reply::Record(entry) => vec![entry.to_bytes()],
            Reply::Have(yes) => vec![text(if *yes { "yes" } else { "no" })],
            Reply::Count(n) => vec![number(n)],
            Reply::Page { entries, next } => page(
                next.map(number).unwrap_or_default(),
                entries.iter().map(Entry::to_bytes),
            ),
            Reply::Head(head) => vec![head.to_bytes().to_vec()],
            Reply::ChainOk { seq } => vec![text("ok"), number(seq)],
            Reply::ChainBad { seq, reason } => vec![
                text("bad"),
                seq.map(number).unwrap_or_default(),
                text(reason),
            ],
            Reply::Listing { entries, next } => page(
                text(next.as_deref().unwrap_or("")),
                entries.iter().map(DirEntry::to_field),
            ),
            Reply::Deliveries { entries, next } => page(
                text(next.as_deref().unwrap_or("")),
                entries.iter().map(Delivery::to_field),
            ),
            Reply::Stat(st) => st.to_fields(),
            Reply::Opened(r) => r.to_fields(),
            Reply::Uploaded(r) => r.to_fields(),
            Reply::Download(r) => r.to_fields(),
            Reply::Data(r) => vec![r.data.clone()],
            Reply::Peers { peers, forks } => replication::peers_fields(peers, forks),
            Reply::Versions(versions) => versions.iter().map(VersionInfo::to_field).collect(),
            Reply::MessageKey(key) => vec![key.to_vec()],
            Reply::MessageId(id) => vec![number(id)],
            Reply::Messages(list) => list.iter().map(MessageSummary::to_field).collect(),
            Reply::Sealed(bytes) => vec![bytes.clone()],
            Reply::Tables(list) => list.iter().map(TableInfo::to_field).collect(),
            Reply::Row(row) => vec![row.to_field()],
            Reply::Rows { rows, next } => page(
                text(next.as_deref().unwrap_or("")),
                rows.iter().map(TableRow::to_field),
            ),
            Reply::KeyVersion(v) => vec![number(v)],
            Reply::TransitKeys(keys) => keys.iter().map(super::TransitKeyInfo::to_field).collect(),
            Reply::Token(t) => vec![text(t)],
            Reply::Unsealed(bytes) | Reply::KeyMaterial(bytes) => vec![bytes.clone()],
        }
    }

    /// Decodes the fields of a successful response to `cmd`.
    pub fn from_fields(cmd: &Command, fields: &[Vec<u8>]) -> Result<Reply, Error> {
        let fields = Fields(fields);
        in_domain!(cmd.kind().domain(), decode_reply(cmd, &fields))
    }

    /// The response fields, as [`to_fields`](Self::to_fields) gives them, taking the reply:
    /// an `fread` reply's data moves into its field instead of being copied.
    pub fn into_fields(self) -> Vec<Vec<u8>> {
        match self {
            Reply::Data(r) => r.into_fields(),
            other => other.to_fields(),
        }
    }
}

/// The fields of a paged reply: `next`, then one field per entry.
fn page(next: Vec<u8>, entries: impl Iterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    std::iter::once(next).chain(entries).collect()
}

/// A reply's fields, with the checks every decoder needs (each failure is
/// [`Error::Malformed`]).
pub(super) struct Fields<'a>(pub(super) &'a [Vec<u8>]);

impl<'a> Fields<'a> {
    /// Fails unless there are exactly `n` fields.
    pub(super) fn want(&self, n: usize) -> Result<(), Error> {
        if self.0.len() == n {
            Ok(())
        } else {
            Err(Error::Malformed("reply field count"))
        }
    }

    /// Field `i`.
    pub(super) fn get(&self, i: usize) -> Result<&'a [u8], Error> {
        self.0
            .get(i)
            .map(Vec::as_slice)
            .ok_or(Error::Malformed("reply fields"))
    }

    /// Field `i` as UTF-8 text.
    pub(super) fn text(&self, i: usize) -> Result<String, Error> {
        String::from_utf8(self.get(i)?.to_vec()).map_err(|_| Error::Malformed("reply text"))
    }

    /// Every field as UTF-8 text.
    pub(super) fn texts(&self) -> Result<Vec<String>, Error> {
        (0..self.0.len()).map(|i| self.text(i)).collect()
    }

    /// Field `i` as a decimal number; `what` names it in the error.
    pub(super) fn decimal(&self, i: usize, what: &'static str) -> Result<u64, Error> {
        super::args::decimal(self.get(i)?).ok_or(Error::Malformed(what))
    }

    /// Exactly one field, decoded by `decode`.
    pub(super) fn one<T>(
        &self,
        decode: impl FnOnce(&'a [u8]) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.want(1)?;
        decode(self.get(0)?)
    }

    /// A paged reply: the `next` field (empty is `None`, else decoded by `next`) and the
    /// entries, each decoded by `entry`.
    pub(super) fn page<N, E>(
        &self,
        next: impl FnOnce(&'a [u8]) -> Result<N, Error>,
        entry: impl Fn(&'a [u8]) -> Result<E, Error>,
    ) -> Result<(Option<N>, Vec<E>), Error> {
        let (first, entries) = self
            .0
            .split_first()
            .ok_or(Error::Malformed("reply field count"))?;
        let next = match first.as_slice() {
            [] => None,
            n => Some(next(n)?),
        };
        let entries = entries.iter().map(|e| entry(e)).collect::<Result<_, _>>()?;
        Ok((next, entries))
    }

    /// The error for a command that the domain asked does not own (unreachable through
    /// [`Reply::from_fields`], which asks the command's own domain).
    pub(super) fn not_this_domain() -> Error {
        Error::Malformed("reply to a command of another domain")
    }
}
