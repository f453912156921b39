//! The file tree commands (`ls`, `lsd`, `cd`, `pwd`, `stat`, `mkdir`, `rmdir`, `del`, `mv`,
//! `versions`, `restore`, `mkdirs`): their limits, value types ([`DirEntry`], [`FileStat`],
//! [`ListPage`], [`VersionInfo`]), argument and reply codecs and sample values.

use super::args::{
    decimal, hex_encode, hex32, number, optional_path, page_limit, path_arg, text, usage_error,
};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::wire::{ErrorReply, MAX_PAYLOAD};

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

    /// The kind written `s` (`f` or `d`).
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

    /// Parses [`DirEntry::to_field`]'s bytes.
    pub(super) fn from_field(field: &[u8]) -> Result<DirEntry, Error> {
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

/// The longest encoded [`VersionInfo`]: a 10-digit number, two 20-digit numbers, 64 hex
/// digits and three spaces. A `versions` reply holds as many as fit one response.
pub const MAX_ENCODED_VERSION: usize = 10 + 20 + 20 + 64 + 3;

/// One kept version of a file, a field of the `versions` reply: `N SIZE MTIME SHA256`
/// (single spaces, the hash as 64 lower-case hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// The version's number: 1 is the newest previous content.
    pub number: u32,
    /// Size in bytes.
    pub size: u64,
    /// When it was last the file's content (its modification time), Unix seconds.
    pub modified: u64,
    /// SHA-256 of its content.
    pub sha256: [u8; 32],
}

impl VersionInfo {
    /// The version's field bytes.
    pub fn to_field(&self) -> Vec<u8> {
        format!(
            "{} {} {} {}",
            self.number,
            self.size,
            self.modified,
            hex_encode(&self.sha256)
        )
        .into_bytes()
    }

    /// Parses [`VersionInfo::to_field`]'s bytes.
    fn from_field(field: &[u8]) -> Result<VersionInfo, Error> {
        let bad = || Error::Malformed("versions entry");
        let text = std::str::from_utf8(field).map_err(|_| bad())?;
        let mut parts = text.split(' ');
        let (Some(n), Some(size), Some(modified), Some(sha), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        Ok(VersionInfo {
            number: decimal(n.as_bytes())
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(bad)?,
            size: decimal(size.as_bytes()).ok_or_else(bad)?,
            modified: decimal(modified.as_bytes()).ok_or_else(bad)?,
            sha256: hex32(sha.as_bytes()).ok_or_else(bad)?,
        })
    }
}

/// A version number argument: 1 to `u32::MAX`.
fn version_arg(arg: &[u8]) -> Result<u32, ErrorReply> {
    decimal(arg)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| usage_error(CommandKind::Restore))
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
    /// The wire arguments: as few as say the same (`[DIR [FROM [LIMIT]]]`).
    pub(super) fn args(&self) -> Vec<Vec<u8>> {
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

    /// Parses `[DIR [FROM [LIMIT]]]` (an empty DIR or FROM is none) for `kind`.
    pub(super) fn parse(args: &[Vec<u8>], kind: CommandKind) -> Result<ListPage, ErrorReply> {
        if args.len() > 3 {
            return Err(usage_error(kind));
        }
        Ok(ListPage {
            dir: optional_path(args.first())?,
            from: optional_path(args.get(1))?,
            limit: args
                .get(2)
                .map(|n| page_limit(n, LS_MAX_LIMIT, kind))
                .transpose()?,
        })
    }
}

impl FileStat {
    /// The `stat` fields: kind, size, mtime, created (or empty), sha256 (hex, or empty).
    pub(super) fn to_fields(&self) -> Vec<Vec<u8>> {
        vec![
            text(self.kind.as_str()),
            number(self.size),
            number(self.modified),
            self.created.map(number).unwrap_or_default(),
            self.sha256
                .map(|h| text(&hex_encode(&h)))
                .unwrap_or_default(),
        ]
    }

    /// Parses [`FileStat::to_fields`]'s fields.
    fn from_fields(fields: &Fields<'_>) -> Result<FileStat, Error> {
        fields.want(5)?;
        Ok(FileStat {
            kind: FileKind::parse(&fields.text(0)?)?,
            size: fields.decimal(1, "stat size")?,
            modified: fields.decimal(2, "stat mtime")?,
            created: match fields.get(3)? {
                [] => None,
                n => Some(decimal(n).ok_or(Error::Malformed("stat created"))?),
            },
            sha256: match fields.get(4)? {
                [] => None,
                h => Some(hex32(h).ok_or(Error::Malformed("stat sha256"))?),
            },
        })
    }
}

/// The `next` field of a paged reply naming an entry; `what` names it in the error.
pub(super) fn next_name(field: &[u8], what: &'static str) -> Result<String, Error> {
    String::from_utf8(field.to_vec()).map_err(|_| Error::Malformed(what))
}

/// Parses the arguments of a file tree command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    Ok(match (kind, args) {
        (CommandKind::Ls, page) => Command::Ls(ListPage::parse(page, kind)?),
        (CommandKind::Lsd, page) => Command::Lsd(ListPage::parse(page, kind)?),
        (CommandKind::Cd, [dir]) => Command::Cd {
            dir: path_arg(dir)?,
        },
        (CommandKind::Pwd, []) => Command::Pwd,
        (CommandKind::Stat, [path]) => Command::Stat {
            path: path_arg(path)?,
        },
        (CommandKind::Mkdir, [path]) => Command::Mkdir {
            path: path_arg(path)?,
        },
        (CommandKind::Rmdir, [path]) => Command::Rmdir {
            path: path_arg(path)?,
        },
        (CommandKind::Del, [path]) => Command::Del {
            path: path_arg(path)?,
        },
        (CommandKind::Mv, [from, to]) => Command::Mv {
            from: path_arg(from)?,
            to: path_arg(to)?,
        },
        (CommandKind::Versions, [path]) => Command::Versions {
            path: path_arg(path)?,
        },
        (CommandKind::Restore, [path, n]) => Command::Restore {
            path: path_arg(path)?,
            version: version_arg(n)?,
        },
        (CommandKind::Mkdirs, [path]) => Command::Mkdirs {
            path: path_arg(path)?,
        },
        _ => return Err(usage_error(kind)),
    })
}

/// The wire arguments of a file tree command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Ls(page) | Command::Lsd(page) => page.args(),
        Command::Cd { dir: path }
        | Command::Stat { path }
        | Command::Mkdir { path }
        | Command::Rmdir { path }
        | Command::Del { path }
        | Command::Versions { path }
        | Command::Mkdirs { path } => vec![text(path)],
        Command::Mv { from, to } => vec![text(from), text(to)],
        Command::Restore { path, version } => vec![text(path), number(version)],
        _ => Vec::new(),
    }
}

/// Decodes the reply to a file tree command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Ls(_) | Command::Lsd(_) => {
            let (next, entries) = fields.page(|n| next_name(n, "ls next"), DirEntry::from_field)?;
            Ok(Reply::Listing { entries, next })
        }
        Command::Cd { .. } | Command::Pwd => {
            fields.want(1)?;
            Ok(Reply::Cwd(fields.text(0)?))
        }
        Command::Stat { .. } => FileStat::from_fields(fields).map(Reply::Stat),
        Command::Mkdir { .. }
        | Command::Rmdir { .. }
        | Command::Del { .. }
        | Command::Mv { .. }
        | Command::Restore { .. }
        | Command::Mkdirs { .. } => fields.want(0).map(|()| Reply::Done),
        Command::Versions { .. } => (0..fields.0.len())
            .map(|i| VersionInfo::from_field(fields.get(i)?))
            .collect::<Result<_, _>>()
            .map(Reply::Versions),
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample file tree commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    vec![
        Command::Ls(ListPage::default()),
        Command::Ls(ListPage {
            dir: Some("d".into()),
            from: None,
            limit: None,
        }),
        Command::Lsd(ListPage {
            dir: Some("d".into()),
            from: Some("n".into()),
            limit: Some(2),
        }),
        Command::Cd { dir: "d".into() },
        Command::Pwd,
        Command::Stat { path: "f".into() },
        Command::Mkdir { path: "d".into() },
        Command::Rmdir { path: "d".into() },
        Command::Del { path: "f".into() },
        Command::Mv {
            from: "a".into(),
            to: "b".into(),
        },
        Command::Versions { path: "a b".into() },
        Command::Restore {
            path: "f".into(),
            version: 1,
        },
        Command::Restore {
            path: "d/f".into(),
            version: u32::MAX,
        },
        Command::Mkdirs {
            path: "a/b/c".into(),
        },
    ]
}

/// Sample replies to a file tree command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, _: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Ls(_) | Command::Lsd(_) => vec![
            Reply::Listing {
                entries: Vec::new(),
                next: None,
            },
            Reply::Listing {
                entries: vec![
                    DirEntry {
                        name: "a b".into(),
                        kind: FileKind::File,
                        size: u64::MAX,
                        modified: 0,
                    },
                    DirEntry {
                        name: "d".into(),
                        kind: FileKind::Dir,
                        size: 0,
                        modified: 1_700_000_000,
                    },
                ],
                next: Some("e".into()),
            },
        ],
        Command::Cd { .. } | Command::Pwd => {
            vec![Reply::Cwd("/".into()), Reply::Cwd("~u/a b".into())]
        }
        Command::Stat { .. } => vec![
            Reply::Stat(FileStat {
                kind: FileKind::File,
                size: 3,
                modified: 4,
                created: Some(5),
                sha256: Some([6; 32]),
            }),
            Reply::Stat(FileStat {
                kind: FileKind::Dir,
                size: 0,
                modified: 0,
                created: None,
                sha256: None,
            }),
        ],
        Command::Mkdir { .. }
        | Command::Rmdir { .. }
        | Command::Del { .. }
        | Command::Mv { .. }
        | Command::Restore { .. }
        | Command::Mkdirs { .. } => {
            vec![Reply::Done]
        }
        Command::Versions { .. } => vec![
            Reply::Versions(Vec::new()),
            Reply::Versions(vec![
                VersionInfo {
                    number: 1,
                    size: 0,
                    modified: 1_700_000_000,
                    sha256: [0xe3; 32],
                },
                VersionInfo {
                    number: u32::MAX,
                    size: u64::MAX,
                    modified: u64::MAX,
                    sha256: [0; 32],
                },
            ]),
        ],
        _ => Vec::new(),
    }
}
