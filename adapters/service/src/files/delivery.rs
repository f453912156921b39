//! Deliveries between users (protocol.md §13.5): `send` copies a file of the sender's home
//! into the recipient's inbox folder `inbox/FOLDER/`, if the folder's `folder.toml` (in the
//! recipient's home, edited by its owner or an admin) lets the sender deliver.
//!
//! - [`FolderConfig`]: the folder's allow list and optional hooks, parsed from a subset of
//!   TOML (the keys `allow`, `on_meta` and `on_received`, each an array of strings).
//! - [`deliver`]: the allow list, then the `on_meta` hook with the metadata as JSON on its
//!   standard input (its non-zero exit refuses the delivery, its first stderr line going to
//!   the sender), then a streamed copy (the recipient's quota checked before any byte),
//!   then the `on_received` hook. Hooks run only when the server enables them
//!   ([`HooksConfig::enabled`]); otherwise the allow list alone decides.
//! - Every delivery that passed the allow list keeps a record (its metadata and state) in
//!   the folder's hidden record store [`RECORD_STORE`], under the same name as the file;
//!   [`inbox`] lists them. Senders the allow list refuses leave no record, so nobody can
//!   fill another user's inbox listing.
//! - [`prepare`] and [`PreparedDelivery::run`]: the quick checks, then the slow part (hooks
//!   and copy), which a runtime may run on a thread of its own while the sender's
//!   connection goes on ([`deliver`] runs both).
//! - [`settle_interrupted`]: run when the server starts, settles the deliveries a crash
//!   left `pending` (a server waits for its running deliveries before it stops, so none is
//!   in progress then).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use vserv_core::commands::{Delivery, DeliveryState, FileKind, MAX_DELIVERY_REASON};
use vserv_core::transfer::FileHasher;

use super::path::check_name;
use super::transfer::{OpenedFile, OpenedPartial, READ_CHUNK, UploadLocks};
use super::{FileError, FileTree, UserPath};
use crate::accounts::UserName;
use crate::programs::{self, ProgramError};

/// The directory of a home holding the inbox folders.
pub const INBOX_DIR: &str = "inbox";

/// The configuration file of an inbox folder, `inbox/FOLDER/folder.toml`.
pub const FOLDER_CONFIG: &str = "folder.toml";

/// The hidden record store (see [`FileTree::read_record`]) of an inbox folder.
pub const RECORD_STORE: &str = ".vserv-records-deliveries";

/// Largest `folder.toml` the server reads.
pub const MAX_FOLDER_CONFIG: u64 = 64 * 1024;

/// How long a hook may run unless configured otherwise.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The most `N-` prefixes tried to find a free name in an inbox folder.
const MAX_NAME_TRIES: u32 = 1000;

/// The reason recorded for a delivery over the recipient's quota.
const QUOTA_REASON: &str = "the recipient's quota is too small for this file";

/// The reason recorded for a delivery the server's free-space reserve refused.
const DISK_FULL_REASON: &str = "the server has not enough free disk space for this file";

/// The reason recorded for a delivery the server stopped in the middle of.
pub const INTERRUPTED_REASON: &str = "interrupted: the server stopped during the delivery";

/// Serialises the choice of a free name in any inbox folder.
static NAMING: Mutex<()> = Mutex::new(());

/// Whether and how the server runs the hooks of folder configurations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    /// Hooks run only when this is set; otherwise they are ignored and the allow list
    /// alone decides.
    pub enabled: bool,
    /// A hook still running after this is killed (an `on_meta` hook then refuses).
    pub timeout: Duration,
    /// The directory the server's administrator keeps hook programs in: a folder's hook
    /// runs only if its program is a file directly inside it (absolute path, no `.`/`..`),
    /// so users choose among approved programs instead of running anything as the server's
    /// account. `None`: no hook runs (a folder naming one is refused on `on_meta`).
    pub programs_dir: Option<PathBuf>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            enabled: false,
            timeout: DEFAULT_HOOK_TIMEOUT,
            programs_dir: None,
        }
    }
}

/// An inbox folder's `folder.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderConfig {
    /// The user names that may deliver here; `"*"` is every user. Empty (or absent):
    /// nobody, admins included.
    pub allow: Vec<String>,
    /// Program (an absolute path) and arguments run before any data is copied.
    pub on_meta: Option<Vec<String>>,
    /// Program (an absolute path) and arguments run after the file is stored.
    pub on_received: Option<Vec<String>>,
}

impl FolderConfig {
    /// Parses a `folder.toml`: only the keys `allow`, `on_meta` and `on_received`, each at
    /// most once, each an array of basic (`"..."`) or literal (`'...'`) strings; comments
    /// and blank lines anywhere. Hook arrays must name an absolute program path.
    pub fn parse(text: &str) -> Result<FolderConfig, String> {
        let mut p = TomlSubset {
            rest: text.chars().collect(),
            at: 0,
        };
        let mut config = FolderConfig::default();
        let mut seen: Vec<String> = Vec::new();
        loop {
            p.skip_blank();
            if p.peek().is_none() {
                break;
            }
            let line = p.line();
            let key = p.bare_key()?;
            p.skip_spaces();
            p.expect('=')?;
            p.skip_spaces();
            let values = p.string_array()?;
            p.end_of_line()?;
            if seen.contains(&key) {
                return Err(format!("line {line}: key '{key}' given twice"));
            }
            match key.as_str() {
                "allow" => {
                    for name in &values {
                        if name != "*" && UserName::parse(name).is_err() {
                            return Err(format!(
                                "line {line}: '{name}' in allow is not a user name"
                            ));
                        }
                    }
                    config.allow = values;
                }
                "on_meta" | "on_received" => {
                    match values.first() {
                        Some(program) if Path::new(program).is_absolute() => {}
                        _ => {
                            return Err(format!(
                                "line {line}: {key} must start with the absolute path of a \
                                 program"
                            ));
                        }
                    }
                    if key == "on_meta" {
                        config.on_meta = Some(values);
                    } else {
                        config.on_received = Some(values);
                    }
                }
                other => {
                    return Err(format!(
                        "line {line}: unknown key '{other}' (the keys are allow, on_meta and \
                         on_received)"
                    ));
                }
            }
            seen.push(key);
        }
        Ok(config)
    }

    /// Whether `sender` may deliver to this folder.
    pub fn allows(&self, sender: &UserName) -> bool {
        self.allow
            .iter()
            .any(|a| a == "*" || UserName::parse(a).is_ok_and(|n| &n == sender))
    }
}

/// The TOML subset [`FolderConfig::parse`] reads.
struct TomlSubset {
    rest: Vec<char>,
    at: usize,
}

impl TomlSubset {
    fn peek(&self) -> Option<char> {
        self.rest.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += usize::from(c.is_some());
        c
    }

    fn line(&self) -> usize {
        self.rest[..self.at.min(self.rest.len())]
            .iter()
            .filter(|c| **c == '\n')
            .count()
            + 1
    }

    fn error(&self, what: &str) -> String {
        format!("line {}: {what}", self.line())
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
    }

    fn skip_comment(&mut self) {
        if self.peek() == Some('#') {
            while !matches!(self.peek(), None | Some('\n')) {
                self.at += 1;
            }
        }
    }

    /// Spaces, newlines and comments.
    fn skip_blank(&mut self) {
        loop {
            self.skip_spaces();
            self.skip_comment();
            match self.peek() {
                Some('\n') => self.at += 1,
                Some('\r') if self.rest.get(self.at + 1) == Some(&'\n') => self.at += 2,
                _ => return,
            }
        }
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.next() {
            Some(c) if c == want => Ok(()),
            _ => Err(self.error(&format!("expected '{want}'"))),
        }
    }

    fn end_of_line(&mut self) -> Result<(), String> {
        self.skip_spaces();
        self.skip_comment();
        match self.peek() {
            None | Some('\n') => Ok(()),
            Some('\r') if self.rest.get(self.at + 1) == Some(&'\n') => Ok(()),
            _ => Err(self.error("expected the end of the line")),
        }
    }

    fn bare_key(&mut self) -> Result<String, String> {
        let mut key = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || "_-".contains(*c))
        {
            key.push(c);
            self.at += 1;
        }
        if key.is_empty() {
            return Err(self.error("expected a key"));
        }
        Ok(key)
    }

    fn string_array(&mut self) -> Result<Vec<String>, String> {
        self.expect('[')?;
        let mut values = Vec::new();
        loop {
            self.skip_blank();
            if self.peek() == Some(']') {
                self.at += 1;
                return Ok(values);
            }
            values.push(self.string()?);
            self.skip_blank();
            match self.next() {
                Some(',') => {}
                Some(']') => return Ok(values),
                _ => return Err(self.error("expected ',' or ']' in an array")),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = self.next();
        let literal = match quote {
            Some('"') => false,
            Some('\'') => true,
            _ => return Err(self.error("expected a string")),
        };
        let mut out = String::new();
        loop {
            let c = self
                .next()
                .ok_or_else(|| self.error("unterminated string"))?;
            match c {
                '"' if !literal => return Ok(out),
                '\'' if literal => return Ok(out),
                '\\' if !literal => out.push(self.escape()?),
                c if c.is_control() && c != '\t' => {
                    return Err(self.error("control character in a string"));
                }
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let digits = match self.next() {
            Some('b') => return Ok('\u{8}'),
            Some('t') => return Ok('\t'),
            Some('n') => return Ok('\n'),
            Some('f') => return Ok('\u{c}'),
            Some('r') => return Ok('\r'),
            Some('"') => return Ok('"'),
            Some('\\') => return Ok('\\'),
            Some('u') => 4,
            Some('U') => 8,
            _ => return Err(self.error("unknown escape in a string")),
        };
        let mut code = 0u32;
        for _ in 0..digits {
            let d = self
                .next()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.error("bad unicode escape"))?;
            code = code * 16 + d;
        }
        char::from_u32(code).ok_or_else(|| self.error("bad unicode escape"))
    }
}

/// Why a delivery or an inbox listing failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The file trees failed (or a path was bad).
    #[error(transparent)]
    File(#[from] FileError),
    /// The recipient has no such folder (or no `folder.toml` in it).
    #[error(
        "{to} has no inbox folder '{folder}' accepting deliveries (they can set it up with \
         `vserv inbox setup {folder} --allow YOUR_NAME`)"
    )]
    NoFolder {
        /// The recipient.
        to: String,
        /// The folder.
        folder: String,
    },
    /// The folder's `folder.toml` cannot be used.
    #[error("{to}'s inbox folder '{folder}' has an invalid {FOLDER_CONFIG}: {reason}")]
    BadConfig {
        /// The recipient.
        to: String,
        /// The folder.
        folder: String,
        /// What is wrong.
        reason: String,
    },
    /// The sender is not on the folder's allow list.
    #[error("{to}'s inbox folder '{folder}' does not accept deliveries from {from}")]
    NotAllowed {
        /// The sender.
        from: String,
        /// The recipient.
        to: String,
        /// The folder.
        folder: String,
    },
    /// The `on_meta` hook refused (its reason).
    #[error("delivery refused: {0}")]
    Refused(String),
    /// The file does not fit the recipient's quota.
    #[error("delivery refused: {QUOTA_REASON}")]
    Quota,
    /// No free name was found for the file in the folder.
    #[error("no free name for {0} in the inbox folder")]
    NoName(String),
    /// The copy's SHA-256 is not the sender's file's.
    #[error("the copy of {0} does not match its SHA-256; nothing was delivered")]
    Mismatch(String),
}

/// What `send` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The sender.
    pub from: UserName,
    /// The sender's file, from the sender's home's root.
    pub path: UserPath,
    /// The recipient.
    pub to: UserName,
    /// The recipient's inbox folder (one name).
    pub folder: String,
    /// The sender's note (checked by the command layer).
    pub note: String,
    /// When it is sent, Unix seconds.
    pub time: u64,
}

/// The directory of `folder` in a home.
pub fn folder_path(folder: &str) -> Result<UserPath, FileError> {
    check_name(folder)?;
    Ok(UserPath::from_names(vec![
        INBOX_DIR.to_owned(),
        folder.to_owned(),
    ])?)
}

/// Reads and parses `to`'s `folder.toml` of `folder`.
fn folder_config(
    files: &dyn FileTree,
    to: &UserName,
    folder: &str,
    dir: &UserPath,
) -> Result<FolderConfig, DeliveryError> {
    let no_folder = || DeliveryError::NoFolder {
        to: to.to_string(),
        folder: folder.to_owned(),
    };
    let bad = |reason: String| DeliveryError::BadConfig {
        to: to.to_string(),
        folder: folder.to_owned(),
        reason,
    };
    let path = dir.child(FOLDER_CONFIG).map_err(FileError::from)?;
    let stat = match files.stat(to, &path) {
        Ok(stat) => stat,
        Err(FileError::NotFound(_)) => return Err(no_folder()),
        Err(e) => return Err(e.into()),
    };
    if stat.size > MAX_FOLDER_CONFIG {
        return Err(bad(format!("larger than {MAX_FOLDER_CONFIG} bytes")));
    }
    let text = files.read_file(to, &path)?;
    let text = String::from_utf8(text).map_err(|_| bad("not UTF-8".into()))?;
    FolderConfig::parse(&text).map_err(bad)
}

/// Delivers `out` (see the module documentation); the file's name in the inbox folder.
/// [`prepare`], then [`PreparedDelivery::run`].
pub fn deliver(
    files: &dyn FileTree,
    locks: &UploadLocks,
    hooks: &HooksConfig,
    out: &Outgoing,
) -> Result<String, DeliveryError> {
    prepare(files, out)?.run(files, locks, hooks)
}

/// A delivery that passed every quick check, with its file open and its record saved
/// `pending`; [`run`](Self::run) does the slow part. Dropped without running, it stays
/// `pending` until the server's next start settles it ([`settle_interrupted`]).
#[derive(Debug)]
pub struct PreparedDelivery {
    out: Outgoing,
    config: FolderConfig,
    dir: UserPath,
    /// The sender's file as it was when the delivery was asked for.
    opened: OpenedFile,
    record: Delivery,
}

/// The quick part of a delivery, done before the sender gets any answer: the folder's
/// configuration and allow list, the sender's file opened (later changes to it do not
/// change what is delivered), a free name reserved with a `pending` record, and the
/// recipient's quota checked (a refusal is recorded).
pub fn prepare(files: &dyn FileTree, out: &Outgoing) -> Result<PreparedDelivery, DeliveryError> {
    let dir = folder_path(&out.folder)?;
    let config = folder_config(files, &out.to, &out.folder, &dir)?;
    if !config.allows(&out.from) {
        return Err(DeliveryError::NotAllowed {
            from: out.from.to_string(),
            to: out.to.to_string(),
            folder: out.folder.clone(),
        });
    }
    let base = out
        .path
        .file_name()
        .ok_or(FileError::IsADirectory(out.path.to_string()))?
        .to_owned();
    let opened = files.open_read(&out.from, &out.path)?;
    let mut record = Delivery {
        name: base,
        state: DeliveryState::Pending,
        from: out.from.to_string(),
        time: out.time,
        size: opened.size,
        sha256: opened.sha256,
        note: out.note.clone(),
        reason: String::new(),
    };
    reserve_name(files, &out.to, &dir, &mut record)?;
    let mut prepared = PreparedDelivery {
        out: out.clone(),
        config,
        dir,
        opened,
        record,
    };
    // The record exists (pending) from here on: every way out settles it.
    let (state, reason, error) = match files.fits(&out.to, prepared.opened.size) {
        Ok(true) => return Ok(prepared),
        Ok(false) => (DeliveryState::Refused, QUOTA_REASON, DeliveryError::Quota),
        Err(e) => (DeliveryState::Failed, "the quota check failed", e.into()),
    };
    let p = &mut prepared;
    settle_record(files, &p.out.to, &p.dir, &mut p.record, state, reason);
    Err(error)
}

impl PreparedDelivery {
    /// The delivery's name in the inbox folder.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The slow part: the `on_meta` hook, the streamed copy, the record settled
    /// (`received`, `refused` or `failed`), then the `on_received` hook. The file's name in
    /// the inbox folder.
    pub fn run(
        self,
        files: &dyn FileTree,
        locks: &UploadLocks,
        hooks: &HooksConfig,
    ) -> Result<String, DeliveryError> {
        let PreparedDelivery {
            out,
            config,
            dir,
            opened,
            mut record,
        } = self;
        let settle = |record: &mut Delivery, state, reason: &str| {
            settle_record(files, &out.to, &dir, record, state, reason);
        };
        if hooks.enabled
            && let Some(argv) = &config.on_meta
        {
            let input = metadata_json(&record, &out.to, &out.folder);
            if let Err(reason) = hook_allowed(hooks, argv)
                .and_then(|()| run_hook(argv, input.as_bytes(), hooks.timeout))
            {
                settle(&mut record, DeliveryState::Refused, &reason);
                return Err(DeliveryError::Refused(record.reason));
            }
        }
        let name = record.name.clone();
        let target = dir.child(&name).map_err(FileError::from)?;
        if let Err(e) = copy(files, locks, &out.to, &target, opened) {
            let (state, reason) = match &e {
                FileError::QuotaExceeded { .. } => (DeliveryState::Refused, QUOTA_REASON),
                FileError::DiskFull { .. } => (DeliveryState::Failed, DISK_FULL_REASON),
                _ => (DeliveryState::Failed, "the copy failed"),
            };
            settle(&mut record, state, reason);
            return Err(match e {
                FileError::QuotaExceeded { .. } => DeliveryError::Quota,
                FileError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::InvalidData =>
                {
                    DeliveryError::Mismatch(out.path.to_string())
                }
                e => e.into(),
            });
        }
        settle(&mut record, DeliveryState::Received, "");
        tracing::info!(from = %out.from, to = %out.to, folder = %out.folder, name = %name, size = record.size, "delivered");
        if hooks.enabled
            && let Some(argv) = &config.on_received
        {
            let input = metadata_json(&record, &out.to, &out.folder);
            // The file is stored: a failing hook is only logged.
            if let Err(reason) = hook_allowed(hooks, argv)
                .and_then(|()| run_hook(argv, input.as_bytes(), hooks.timeout))
            {
                tracing::warn!(to = %out.to, name = %name, reason = %reason, "on_received hook failed");
            }
        }
        Ok(name)
    }
}

/// Records a delivery's outcome in `to`'s folder `dir`.
fn settle_record(
    files: &dyn FileTree,
    to: &UserName,
    dir: &UserPath,
    record: &mut Delivery,
    state: DeliveryState,
    reason: &str,
) {
    record.state = state;
    record.reason = clean_reason(reason);
    if let Err(e) = files.write_record(to, dir, RECORD_STORE, &record.name, &record.to_field()) {
        tracing::warn!(to = %to, name = %record.name, error = %e, "could not save a delivery record");
    }
}

/// The deliveries to `owner`'s inbox folder `folder`, in byte order of their names.
pub fn inbox(
    files: &dyn FileTree,
    owner: &UserName,
    folder: &str,
) -> Result<Vec<Delivery>, DeliveryError> {
    let dir = folder_path(folder)?;
    let mut out = Vec::new();
    for name in files.list_records(owner, &dir, RECORD_STORE)? {
        let Some(bytes) = files.read_record(owner, &dir, RECORD_STORE, &name)? else {
            continue;
        };
        match Delivery::from_field(&bytes) {
            Ok(d) if d.name == name => out.push(d),
            _ => tracing::warn!(user = %owner, folder, name, "skipping a damaged delivery record"),
        }
    }
    Ok(out)
}

/// What one [`settle_interrupted`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InterruptedSettle {
    /// Pending deliveries recorded `failed` with [`INTERRUPTED_REASON`]: their file never
    /// appeared in the inbox.
    pub failed: u64,
    /// Pending deliveries recorded `received`: the complete file (its size and SHA-256 those
    /// of the record) was stored before the server stopped, only its record was not yet
    /// updated.
    pub received: u64,
    /// Homes, folders or records that could not be examined or rewritten (each logged); the
    /// others were settled.
    pub errors: u64,
    /// Temporary files of record writes cut short by the stop, deleted from the folders'
    /// record stores (see [`FileTree::sweep_record_temps`]).
    pub temp_files: u64,
}

impl InterruptedSettle {
    /// Records settled, either way.
    pub fn settled(&self) -> u64 {
        self.failed.saturating_add(self.received)
    }
}

/// Settles every delivery recorded `pending` in every inbox folder of every home. A
/// delivery runs synchronously inside one `send` request, so a `pending` record found when
/// no request is being served was left by a server that stopped (crashed or restarted)
/// during the delivery: it is recorded `failed` with [`INTERRUPTED_REASON`], unless the
/// complete file is in the folder under the delivery's name (the server stopped between
/// storing it and updating the record), which is recorded `received`. Settled records
/// are left alone, so running it again changes nothing.
///
/// Call it only while no delivery can run (the server calls it at start, before it
/// accepts connections): a delivery in progress would be settled under its feet.
///
/// The copy writes an upload's hidden partial file and renames it into place only once it
/// is complete and verified (see `copy`), so an interrupted copy never left anything
/// half-copied visible under the delivery's name; its partial file is deleted here (on
/// disk it counts toward the recipient's quota), and [`FileTree::sweep_partials`] would
/// otherwise remove it once expired.
///
/// A record write cut short by the stop may have left its temporary file in the folder's
/// record store; those (exactly the `.vserv-tmp-<pid>-<n>` regular files) are deleted.
///
/// A failure on one home, folder or record is logged and counted, and the others are
/// still settled; an error is returned only when the homes cannot be enumerated at all.
pub fn settle_interrupted(files: &dyn FileTree) -> Result<InterruptedSettle, FileError> {
    let mut report = InterruptedSettle::default();
    let inbox_dir = UserPath::from_names(vec![INBOX_DIR.to_owned()])?;
    for owner in files.owners()? {
        let folders = match files.list(&owner, &inbox_dir) {
            Ok(entries) => entries,
            Err(FileError::NotFound(_) | FileError::NotADirectory(_)) => continue,
            Err(e) => {
                tracing::warn!(user = %owner, error = %e, "could not list the inbox folders");
                report.errors += 1;
                continue;
            }
        };
        for folder in folders.iter().filter(|e| e.kind == FileKind::Dir) {
            settle_folder(files, &owner, &folder.name, &mut report);
        }
    }
    Ok(report)
}

/// [`settle_interrupted`] for `owner`'s inbox folder `folder`.
fn settle_folder(
    files: &dyn FileTree,
    owner: &UserName,
    folder: &str,
    report: &mut InterruptedSettle,
) {
    let dir = match folder_path(folder) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(user = %owner, folder, error = %e, "could not settle an inbox folder");
            report.errors += 1;
            return;
        }
    };
    // A record write the stop cut short left its temporary file: delete it, or it stays
    // forever (invisible, since no listing shows `.vserv-` names).
    match files.sweep_record_temps(owner, &dir, RECORD_STORE) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(user = %owner, folder, files = n,
                "deleted the temporary files of interrupted record writes");
            report.temp_files += n;
        }
        Err(e) => {
            tracing::warn!(user = %owner, folder, error = %e,
                "could not delete the temporary files of interrupted record writes");
            report.errors += 1;
        }
    }
    let names = match files.list_records(owner, &dir, RECORD_STORE) {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!(user = %owner, folder, error = %e, "could not list the delivery records");
            report.errors += 1;
            return;
        }
    };
    for name in names {
        let mut record = match files.read_record(owner, &dir, RECORD_STORE, &name) {
            Ok(Some(bytes)) => match Delivery::from_field(&bytes) {
                Ok(d) if d.name == name => d,
                // `inbox` skips (and reports) damaged records; nothing to settle.
                _ => continue,
            },
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(user = %owner, folder, name, error = %e, "could not read a delivery record");
                report.errors += 1;
                continue;
            }
        };
        if record.state != DeliveryState::Pending {
            continue;
        }
        let target = match dir.child(&name) {
            Ok(target) => target,
            Err(e) => {
                tracing::warn!(user = %owner, folder, name, error = %e, "could not settle a delivery");
                report.errors += 1;
                continue;
            }
        };
        let stored = match files.open_read(owner, &target) {
            Ok(opened) => opened.size == record.size && opened.sha256 == record.sha256,
            Err(FileError::NotFound(_) | FileError::IsADirectory(_)) => false,
            Err(e) => {
                tracing::warn!(user = %owner, folder, name, error = %e,
                    "could not check an interrupted delivery's file; recording it failed");
                false
            }
        };
        if stored {
            record.state = DeliveryState::Received;
            record.reason = String::new();
        } else {
            record.state = DeliveryState::Failed;
            record.reason = clean_reason(INTERRUPTED_REASON);
        }
        if let Err(e) = files.write_record(owner, &dir, RECORD_STORE, &name, &record.to_field()) {
            tracing::warn!(user = %owner, folder, name, error = %e, "could not save a delivery record");
            report.errors += 1;
            continue;
        }
        tracing::info!(to = %owner, folder, name, from = %record.from, state = record.state.as_str(),
            "settled a delivery interrupted by a server stop");
        if stored {
            report.received += 1;
            continue;
        }
        report.failed += 1;
        // The interrupted copy's partial file, if it got that far: never visible, but on
        // disk it counts toward the quota until the partial sweep expires it.
        if let Err(e) = files.discard_partial(owner, &target) {
            tracing::warn!(user = %owner, folder, name, error = %e,
                "could not delete an interrupted delivery's partial file");
            report.errors += 1;
        }
    }
}

/// Picks a name free both as a file and as a record in `dir` (`record.name`, else
/// `2-NAME`, `3-NAME`, ...), sets it in `record` and saves `record`, so no other delivery
/// takes the name.
fn reserve_name(
    files: &dyn FileTree,
    to: &UserName,
    dir: &UserPath,
    record: &mut Delivery,
) -> Result<(), DeliveryError> {
    let base = record.name.clone();
    let _naming = NAMING.lock().unwrap_or_else(|e| e.into_inner());
    for n in 1..=MAX_NAME_TRIES {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{n}-{base}")
        };
        let Ok(path) = dir.child(&name) else {
            break;
        };
        let taken_file = match files.stat(to, &path) {
            Ok(_) => true,
            Err(FileError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if taken_file || files.read_record(to, dir, RECORD_STORE, &name)?.is_some() {
            continue;
        }
        record.name = name;
        files.write_record(to, dir, RECORD_STORE, &record.name, &record.to_field())?;
        return Ok(());
    }
    Err(DeliveryError::NoName(base))
}

/// Streams `opened` into `to`'s `target` through an upload's partial file (quota and free
/// space checked when it is opened), checking the SHA-256 on the way. A copy
/// whose hash differs fails with an [`std::io::ErrorKind::InvalidData`] I/O error.
fn copy(
    files: &dyn FileTree,
    locks: &UploadLocks,
    to: &UserName,
    target: &UserPath,
    opened: OpenedFile,
) -> Result<(), FileError> {
    let Some(_lock) = locks.acquire(to, target) else {
        return Err(FileError::Exists(target.to_string()));
    };
    let OpenedPartial { mut file, .. } = files.open_partial(to, target, opened.size, false)?;
    let mut written = (|| {
        let mut hasher = FileHasher::new();
        let mut buf = vec![0; READ_CHUNK];
        let mut at = 0u64;
        while at < opened.size {
            let want = usize::try_from(opened.size - at).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
            opened.reader.read_exact_at(at, &mut buf[..want])?;
            hasher.update(&buf[..want]);
            file.write_at(at, &buf[..want])?;
            at += want as u64;
        }
        if hasher.finish() != opened.sha256 {
            return Err(FileError::Io {
                path: target.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the copy does not match the source's SHA-256",
                ),
            });
        }
        Ok(())
    })();
    if written.is_ok() {
        written = files.commit_partial(to, target, file.as_mut(), &opened.sha256);
    }
    if written.is_err()
        && let Err(d) = files.discard_partial(to, target)
    {
        tracing::warn!(error = %d, "could not delete a failed delivery's partial file");
    }
    written
}

/// A reason fit for a record: control characters made spaces, trimmed, shortened to
/// [`MAX_DELIVERY_REASON`] bytes.
fn clean_reason(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_DELIVERY_REASON {
            break;
        }
        out.push(c);
    }
    out
}

/// A JSON string literal of `s`.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The metadata a hook reads on its standard input: one JSON object with `from`, `to`,
/// `folder`, `name`, `time`, `size`, `sha256` (hex), `note` and `state`.
pub fn metadata_json(d: &Delivery, to: &UserName, folder: &str) -> String {
    format!(
        "{{\"from\":{},\"to\":{},\"folder\":{},\"name\":{},\"time\":{},\"size\":{},\"sha256\":\"{}\",\"note\":{},\"state\":\"{}\"}}\n",
        json_string(&d.from),
        json_string(to.as_str()),
        json_string(folder),
        json_string(&d.name),
        d.time,
        d.size,
        hex::encode(d.sha256),
        json_string(&d.note),
        d.state.as_str()
    )
}

/// Whether `argv` names a program in the server's hook directory
/// ([`HooksConfig::programs_dir`]); the reason to give the sender if not.
pub fn hook_allowed(hooks: &HooksConfig, argv: &[String]) -> Result<(), String> {
    let refused = || "the folder's hook is not one of the server's hook programs".to_owned();
    let (Some(dir), Some(program)) = (&hooks.programs_dir, argv.first()) else {
        return Err(refused());
    };
    if programs::in_programs_dir(dir, Path::new(program)) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Runs hook `argv` ([`programs::run`]: no shell; empty environment but `PATH`; working
/// directory `/`) with `input` on its standard input. `Err` with the reason on a non-zero
/// exit (the first non-empty line of its standard error), when it cannot be started or runs
/// longer than `timeout` (it is killed then). This waits for the hook: it runs as blocking
/// work.
pub fn run_hook(argv: &[String], input: &[u8], timeout: Duration) -> Result<(), String> {
    let program = argv.first().cloned().unwrap_or_default();
    programs::run(argv, input, timeout, None)
        .map(drop)
        .map_err(|e| match e {
            ProgramError::NoProgram => "the hook names no program".to_owned(),
            ProgramError::Start(e) => {
                tracing::warn!(program = %program, error = %e, "could not start a hook");
                "the folder's hook could not be started".to_owned()
            }
            ProgramError::Failed {
                stderr: Some(line), ..
            } => line,
            ProgramError::Failed {
                code: Some(code), ..
            } => format!("refused by the folder's hook (exit status {code})"),
            ProgramError::Failed { code: None, .. } => {
                "refused by the folder's hook (killed by a signal)".to_owned()
            }
            other => {
                let e = format!("the folder's hook {other}");
                tracing::warn!(program = %program, error = %e, "hook failed");
                e
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_config_subset() {
        let text = "# who may send\nallow = [\"alice\", 'Bob',\n  # more\n]\non_meta = [\"/bin/check\", \"a\\tb\\u00e9\"] # hook\r\n";
        let config = FolderConfig::parse(text).map_err(|e| e.to_string());
        assert_eq!(
            config,
            Ok(FolderConfig {
                allow: vec!["alice".into(), "Bob".into()],
                on_meta: Some(vec!["/bin/check".into(), "a\tb\u{e9}".into()]),
                on_received: None,
            })
        );
        let bob = UserName::parse("bob").map_err(|e| e.to_string());
        assert!(bob.is_ok_and(|b| FolderConfig::parse(text).is_ok_and(|c| c.allows(&b))));
        for bad in [
            "allow = \"alice\"",
            "allow = [\"alice\"] extra",
            "allow = [\"a\"]\nallow = [\"b\"]",
            "deny = []",
            "allow = [\"not a name\"]",
            "on_meta = [\"relative\"]",
            "on_meta = []",
            "allow = [\"alice\"",
            "allow = [\"x\\q\"]",
        ] {
            assert!(FolderConfig::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(FolderConfig::parse(""), Ok(FolderConfig::default()));
    }

    #[test]
    fn json_and_reasons_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd"), "\"a\\\"b\\\\c\\u000ad\"");
        assert_eq!(clean_reason(" a\tb "), "a b");
        assert_eq!(clean_reason(&"é".repeat(200)).len(), MAX_DELIVERY_REASON);
        assert_eq!(clean_reason(INTERRUPTED_REASON), INTERRUPTED_REASON);
    }
}
