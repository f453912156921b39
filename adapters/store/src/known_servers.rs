//! The client's pinned server keys (`~/.vserv/known_servers`), like ssh's `known_hosts`.
//!
//! # File format
//!
//! UTF-8 text, one entry per line:
//!
//! ```text
//! # comment
//! example.org:4433 02a1b2...(66 hex digits)
//! ```
//!
//! - An entry is `<host> <key>` separated by spaces or tabs. `<host>` is the `HOST:PORT`
//!   string the user connects to: printable ASCII without spaces, not starting with `#`,
//!   compared case-insensitively and stored in lowercase. `<key>` is the server's public key,
//!   the 33-byte compressed SEC1 secp256k1 point as 66 hex digits (written lowercase).
//! - Lines whose first non-blank character is `#` are comments; blank lines are allowed. Both
//!   are preserved when the file is rewritten. Leading and trailing blanks are ignored and
//!   `\r\n` line endings are accepted.
//! - Parsing is strict: any other line (missing or extra field, bad host, bad hex, a key that
//!   is not a valid curve point, a host listed twice) is an error naming its line number;
//!   nothing is ever silently skipped.
//!
//! A host's key is never replaced by this module: recording a different key for a known host
//! is an error. To accept a changed key, the user deletes the host's line by hand.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use vserv_core::{Fingerprint, ServerKey};

use crate::atomic::{self, Existing};

/// Largest known_servers file accepted (far above any real one).
const MAX_LEN: u64 = 16 << 20;

/// Longest accepted host string (a DNS name is at most 253 bytes, plus `:PORT`).
const MAX_HOST_LEN: usize = 300;

/// Comment written at the top of a newly created file.
const HEADER: [&str; 2] = [
    "# vserv known servers: one `HOST:PORT KEY` per line (KEY: the server's key, 66 hex digits).",
    "# A changed key is refused. Delete a host's line only if you know why its key changed.",
];

/// What is wrong with one line of a known_servers file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The text is not valid UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
    /// The host field is not printable ASCII without spaces, or is too long.
    #[error("invalid host (expected HOST:PORT in printable ASCII, without spaces)")]
    BadHost,
    /// The line has a host but no key.
    #[error("missing the key after the host (expected `HOST:PORT KEY`)")]
    MissingKey,
    /// The line has more than two fields.
    #[error("unexpected text after the key")]
    TrailingField,
    /// The key is not 66 hex digits.
    #[error("the key must be 66 hex digits")]
    BadKeyHex,
    /// The key is 33 bytes but not a valid compressed (`02`/`03`) secp256k1 point.
    #[error("the key is not a valid secp256k1 public key")]
    InvalidKey,
    /// The host already appeared on an earlier line.
    #[error("host already listed on line {first}")]
    Duplicate {
        /// The 1-based line of the first entry.
        first: usize,
    },
}

/// A malformed line: its 1-based number and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The problem.
    pub kind: LineError,
}

/// Why the known servers could not be loaded or recorded.
#[derive(Debug, thiserror::Error)]
pub enum KnownServersError {
    /// The file is malformed; it was not modified.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The first malformed line.
        #[source]
        error: ParseError,
    },
    /// The file is larger than any plausible known_servers file.
    #[error("{path} is larger than {MAX_LEN} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A host given to [`KnownServers::record`] is not a valid host string.
    #[error("invalid host {host:?} (expected HOST:PORT in printable ASCII, without spaces)")]
    BadHost {
        /// The rejected host.
        host: String,
    },
    /// The host is already recorded with a different key; nothing was changed.
    #[error(
        "refusing to replace the recorded key of {host} ({known}) with {presented}; \
         remove its line from {} by hand if the change is expected",
        path_or_default(path.as_deref())
    )]
    Conflict {
        /// The host (lowercase).
        host: String,
        /// Fingerprint of the recorded key.
        known: Fingerprint,
        /// Fingerprint of the key that was to be recorded.
        presented: Fingerprint,
        /// The file holding the recorded key, if any.
        path: Option<PathBuf>,
    },
    /// [`KnownServers::record`] was called on a list that was not loaded from a file.
    #[error("this known servers list is not backed by a file; use KnownServers::load")]
    NoPath,
    /// An I/O operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Displays `path`, or a generic description when there is none.
pub(crate) fn path_or_default(path: Option<&Path>) -> String {
    path.map_or_else(
        || "the known servers file".to_owned(),
        |p| p.display().to_string(),
    )
}

/// One line of the file, kept so that rewriting preserves comments and order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Blank,
    Comment(String),
    Entry(String),
}

/// The pinned server keys of one known_servers file (or of parsed text).
///
/// Guarantees: every entry has a valid host and a valid key, hosts are unique and lowercase,
/// and an entry once present is never replaced. Equality compares contents, not the path.
#[derive(Debug, Clone, Default)]
pub struct KnownServers {
    path: Option<PathBuf>,
    lines: Vec<Line>,
    keys: BTreeMap<String, ServerKey>,
}

impl PartialEq for KnownServers {
    fn eq(&self, other: &Self) -> bool {
        self.lines == other.lines && self.keys == other.keys
    }
}

impl Eq for KnownServers {}

/// `$HOME/.vserv/known_servers`, or `None` if `HOME` is unset or empty.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".vserv").join("known_servers"))
}

/// Lowercases a valid host string; `None` if it is not one.
fn normalize_host(host: &str) -> Option<String> {
    let ok = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && !host.starts_with('#')
        && host.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| host.to_ascii_lowercase())
}

fn parse_key(field: &str) -> Result<ServerKey, LineError> {
    let mut bytes = [0u8; 33];
    hex::decode_to_slice(field, &mut bytes).map_err(|_| LineError::BadKeyHex)?;
    // Only the canonical compressed form: the SEC1 decoder also accepts the "compact" tag
    // 0x05, which would give one point a second encoding and fingerprint.
    if !matches!(bytes[0], 0x02 | 0x03) {
        return Err(LineError::InvalidKey);
    }
    ServerKey::from_bytes(&bytes).map_err(|_| LineError::InvalidKey)
}

impl KnownServers {
    /// An empty list, not backed by a file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the file at `path`; a missing file is an empty list.
    ///
    /// Guarantees: the result remembers `path` for [`record`](Self::record); a malformed file
    /// is an error naming the line and is not modified.
    pub fn load(path: &Path) -> Result<Self, KnownServersError> {
        let file = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(KnownServersError::Io {
                    op: "open",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mut list = match file {
            None => Self::new(),
            Some(file) => {
                let mut bytes = Vec::new();
                file.take(MAX_LEN + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|source| KnownServersError::Io {
                        op: "read",
                        path: path.to_path_buf(),
                        source,
                    })?;
                if bytes.len() as u64 > MAX_LEN {
                    return Err(KnownServersError::TooLarge {
                        path: path.to_path_buf(),
                    });
                }
                Self::parse_bytes(&bytes).map_err(|error| KnownServersError::Parse {
                    path: path.to_path_buf(),
                    error,
                })?
            }
        };
        list.path = Some(path.to_path_buf());
        Ok(list)
    }

    /// Parses raw file bytes; invalid UTF-8 is reported at the line where it occurs.
    fn parse_bytes(bytes: &[u8]) -> Result<Self, ParseError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::parse(text),
            Err(e) => {
                let before = bytes.get(..e.valid_up_to()).unwrap_or_default();
                let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
                Err(ParseError {
                    line,
                    kind: LineError::NotUtf8,
                })
            }
        }
    }

    /// Parses text in the format of the module docs (the result is not backed by a file).
    ///
    /// Guarantees: never panics; any malformed line is an error with its 1-based number;
    /// `parse(&list.to_text())` equals `list`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut list = Self::new();
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let err = |kind| ParseError { line, kind };
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                list.lines.push(Line::Blank);
                continue;
            }
            if trimmed.starts_with('#') {
                list.lines.push(Line::Comment(trimmed.to_owned()));
                continue;
            }
            let mut fields = trimmed.split_ascii_whitespace();
            let host = fields
                .next()
                .and_then(normalize_host)
                .ok_or(err(LineError::BadHost))?;
            let key = parse_key(fields.next().ok_or(err(LineError::MissingKey))?).map_err(err)?;
            if fields.next().is_some() {
                return Err(err(LineError::TrailingField));
            }
            if let Some(&first) = first_line.get(&host) {
                return Err(err(LineError::Duplicate { first }));
            }
            first_line.insert(host.clone(), line);
            list.keys.insert(host.clone(), key);
            list.lines.push(Line::Entry(host));
        }
        Ok(list)
    }

    /// The file contents: comments, blank lines and entries in their original order, each
    /// line ending in `\n`, keys in lowercase hex.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Blank => {}
                Line::Comment(c) => out.push_str(c),
                Line::Entry(host) => {
                    out.push_str(host);
                    out.push(' ');
                    if let Some(key) = self.keys.get(host) {
                        out.push_str(&hex::encode(key.as_bytes()));
                    }
                }
            }
            out.push('\n');
        }
        out
    }

    /// The recorded key of `host` (case-insensitive), if any.
    pub fn lookup(&self, host: &str) -> Option<ServerKey> {
        self.keys.get(&normalize_host(host)?).copied()
    }

    /// The file this list was loaded from and records to.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The entries, as (lowercase host, key), ordered by host.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ServerKey)> {
        self.keys.iter().map(|(h, k)| (h.as_str(), k))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds `host -> key` in memory. `Ok(true)` if added, `Ok(false)` if already present.
    fn insert(&mut self, host: String, key: &ServerKey) -> Result<bool, KnownServersError> {
        match self.keys.get(&host) {
            Some(known) if known == key => Ok(false),
            Some(known) => Err(KnownServersError::Conflict {
                known: known.fingerprint(),
                presented: key.fingerprint(),
                path: self.path.clone(),
                host,
            }),
            None => {
                if self.lines.is_empty() {
                    self.lines
                        .extend(HEADER.iter().map(|c| Line::Comment((*c).to_owned())));
                }
                self.keys.insert(host.clone(), *key);
                self.lines.push(Line::Entry(host));
                Ok(true)
            }
        }
    }

    /// Pins `key` for `host` and persists the file.
    ///
    /// Guarantees: the file is re-read first so concurrent additions are kept, then rewritten
    /// atomically (temporary file, fsync, rename, directory fsync; the parent directory is
    /// created with mode 0700 if missing). Recording a key that is already pinned writes
    /// nothing. A host pinned to a different key is [`KnownServersError::Conflict`] and the
    /// file is left untouched. On success `self` reflects the file.
    pub fn record(&mut self, host: &str, key: &ServerKey) -> Result<(), KnownServersError> {
        let path = self.path.clone().ok_or(KnownServersError::NoPath)?;
        let host = normalize_host(host).ok_or_else(|| KnownServersError::BadHost {
            host: host.to_owned(),
        })?;
        let mut fresh = Self::load(&path)?;
        if fresh.insert(host, key)? {
            let dir = atomic::parent_dir(&path);
            atomic::create_private_dir(dir).map_err(|source| KnownServersError::Io {
                op: "create directory",
                path: dir.to_path_buf(),
                source,
            })?;
            atomic::write_file(&path, fresh.to_text().as_bytes(), 0o600, Existing::Replace)
                .map_err(|source| KnownServersError::Io {
                    op: "write",
                    path: path.clone(),
                    source,
                })?;
        }
        *self = fresh;
        Ok(())
    }
}

impl KnownServers {
    /// Removes the entry of `host` (case-insensitive) and persists the file; returns the key
    /// it had, or `None` (and writes nothing) if the host was not recorded.
    ///
    /// Guarantees: like [`record`](Self::record), the file is re-read first and rewritten
    /// atomically; comments and the other entries are kept in order. On success `self`
    /// reflects the file.
    pub fn forget(&mut self, host: &str) -> Result<Option<ServerKey>, KnownServersError> {
        let path = self.path.clone().ok_or(KnownServersError::NoPath)?;
        let host = normalize_host(host).ok_or_else(|| KnownServersError::BadHost {
            host: host.to_owned(),
        })?;
        let mut fresh = Self::load(&path)?;
        let removed = fresh.keys.remove(&host);
        if removed.is_some() {
            fresh
                .lines
                .retain(|line| !matches!(line, Line::Entry(h) if *h == host));
            atomic::write_file(&path, fresh.to_text().as_bytes(), 0o600, Existing::Replace)
                .map_err(|source| KnownServersError::Io {
                    op: "write",
                    path: path.clone(),
                    source,
                })?;
        }
        *self = fresh;
        Ok(removed)
    }

    /// Records `key` for `host` in place of whatever key it had (the user asked for it:
    /// `--update-known`), and persists the file. Guarantees as [`forget`](Self::forget) then
    /// [`record`](Self::record).
    pub fn replace(&mut self, host: &str, key: &ServerKey) -> Result<(), KnownServersError> {
        self.forget(host)?;
        self.record(host, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            match KnownServers::parse_bytes(&bytes) {
                Err(ParseError { line, kind: LineError::NotUtf8 }) => {
                    prop_assert!(std::str::from_utf8(&bytes).is_err());
                    prop_assert!(line >= 1);
                }
                _ => prop_assert!(std::str::from_utf8(&bytes).is_ok()),
            }
        }
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("Ex.ORG:1").as_deref(), Some("ex.org:1"));
        assert_eq!(normalize_host("[::1]:22").as_deref(), Some("[::1]:22"));
        for bad in [
            "",
            "#a",
            "a b",
            "a\tb",
            "\u{e9}:1",
            &"a".repeat(MAX_HOST_LEN + 1),
        ] {
            assert_eq!(normalize_host(bad), None, "{bad:?}");
        }
    }
}
