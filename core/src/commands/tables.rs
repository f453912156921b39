//! The query-table commands (spec/tables.md): `tables` (what the server serves) and `query`
//! (one row by key, or the rows whose key starts with a prefix): their limits, value types
//! ([`TableInfo`], [`TableRow`], [`TableQuery`], [`Lookup`]), argument and reply codecs and
//! sample values.
//!
//! A row travels as one field: each column as a name and a value, each a 4-byte big-endian
//! length and its UTF-8 bytes, so any text (tabs, newlines, quotes) survives unchanged.

use super::args::{decimal, number, page_limit, text, usage_error, utf8};
use super::reply::{Fields, Reply};
use super::{Command, CommandKind};
use crate::Error;
use crate::wire::{ErrorCode, ErrorReply, MAX_PAYLOAD};

/// Longest table name, in bytes.
pub const MAX_TABLE_NAME: usize = 64;

/// Longest column name, key or value a table holds, in bytes (a longer CSV field is refused
/// when the file is loaded).
pub const MAX_TABLE_FIELD: usize = 4096;

/// Longest encoded row ([`TableRow::to_field`]): a row whose encoding is longer is refused
/// when the file is loaded, so one row always fits a reply.
pub const MAX_ENCODED_ROW: usize = 12_000;

/// Bytes of a prefix `query` response that are not rows: the response header (8 bytes) and
/// the `next` field (4-byte length, a key of up to [`MAX_TABLE_FIELD`] bytes).
pub const QUERY_OVERHEAD: usize = 8 + 4 + MAX_TABLE_FIELD;

/// Room for rows in one prefix `query` response: a row costs 4 bytes (its field length)
/// plus its encoding. A server fills a page up to this budget, so the response always fits
/// one record ([`MAX_PAYLOAD`]).
pub const QUERY_ROW_BUDGET: usize = MAX_PAYLOAD - QUERY_OVERHEAD;

// The largest row fits a page on its own.
const _: () = assert!(4 + MAX_ENCODED_ROW <= QUERY_ROW_BUDGET);

/// The page size of a prefix `query` without a LIMIT.
pub const QUERY_DEFAULT_LIMIT: u32 = 100;

/// The largest LIMIT a prefix `query` accepts.
pub const QUERY_MAX_LIMIT: u32 = 1000;

/// The most tables a server serves (and `tables` lists).
pub const MAX_TABLES: usize = 32;

/// Longest encoded [`TableInfo`]: a server shortens the error and drops the columns that do
/// not fit, so the `tables` reply of [`MAX_TABLES`] tables fits one record.
pub const MAX_ENCODED_TABLE_INFO: usize = 480;

const _: () = assert!(8 + MAX_TABLES * (4 + MAX_ENCODED_TABLE_INFO) <= MAX_PAYLOAD);

/// One table as `tables` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// The table's name (what `query` names).
    pub name: String,
    /// Rows held now (of the last good load).
    pub rows: u64,
    /// When the rows held were loaded, Unix seconds; `None`: never loaded.
    pub loaded: Option<u64>,
    /// Why the last load failed (the previous rows still serve); `None`: it did not.
    pub error: Option<String>,
    /// The column names, in file order (as many as fit [`MAX_ENCODED_TABLE_INFO`]).
    pub columns: Vec<String>,
}

/// `s` without tabs and line breaks (each made a space), so it fits a tab-separated field.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl TableInfo {
    /// The field: `name TAB rows TAB loaded TAB error TAB column...` (`loaded` and `error`
    /// empty when `None`). Control characters in any text become spaces.
    pub fn to_field(&self) -> Vec<u8> {
        let mut parts = vec![
            one_line(&self.name),
            self.rows.to_string(),
            self.loaded.map(|t| t.to_string()).unwrap_or_default(),
            self.error.as_deref().map(one_line).unwrap_or_default(),
        ];
        parts.extend(self.columns.iter().map(|c| one_line(c)));
        parts.join("\t").into_bytes()
    }

    /// Decodes [`TableInfo::to_field`]'s output; anything else is malformed, including
    /// control characters other than the separating tabs (which `to_field` never sends),
    /// so every info decoded encodes back to the same field.
    pub fn from_field(field: &[u8]) -> Result<TableInfo, Error> {
        let bad = || Error::Malformed("table info");
        let s = std::str::from_utf8(field).map_err(|_| bad())?;
        if s.chars().any(|c| c != '\t' && c.is_control()) {
            return Err(bad());
        }
        let mut parts = s.split('\t');
        let (Some(name), Some(rows), Some(loaded), Some(error)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if name.is_empty() {
            return Err(bad());
        }
        Ok(TableInfo {
            name: name.to_owned(),
            rows: decimal(rows.as_bytes()).ok_or_else(bad)?,
            loaded: match loaded {
                "" => None,
                t => Some(decimal(t.as_bytes()).ok_or_else(bad)?),
            },
            error: (!error.is_empty()).then(|| error.to_owned()),
            columns: parts.map(str::to_owned).collect(),
        })
    }
}

/// One row of an answer: its columns as `(name, value)` pairs, in table order (a handler
/// may answer any columns it likes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableRow {
    /// The columns, in order.
    pub fields: Vec<(String, String)>,
}

impl TableRow {
    /// A row of these `(name, value)` pairs.
    pub fn new(fields: Vec<(String, String)>) -> TableRow {
        TableRow { fields }
    }

    /// The value of column `name`, if the row has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Length of [`TableRow::to_field`]'s output, without building it.
    pub fn encoded_len(&self) -> usize {
        self.fields.iter().map(|(n, v)| 8 + n.len() + v.len()).sum()
    }

    /// The field: for each column, the name then the value, each as a 4-byte big-endian
    /// length and its bytes.
    pub fn to_field(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        for (name, value) in &self.fields {
            for s in [name, value] {
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }

    /// Decodes [`TableRow::to_field`]'s output; a truncated length or string, or text that
    /// is not UTF-8, is malformed.
    pub fn from_field(mut field: &[u8]) -> Result<TableRow, Error> {
        let mut fields = Vec::new();
        while !field.is_empty() {
            let name = take_string(&mut field)?;
            let value = take_string(&mut field)?;
            fields.push((name, value));
        }
        Ok(TableRow { fields })
    }
}

/// The length-prefixed string at the start of `field`, which is advanced past it.
fn take_string(field: &mut &[u8]) -> Result<String, Error> {
    let bad = || Error::Malformed("table row");
    let (len, rest) = field.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| bad())?;
    if rest.len() < len {
        return Err(bad());
    }
    let (s, rest) = rest.split_at(len);
    *field = rest;
    String::from_utf8(s.to_vec()).map_err(|_| bad())
}

/// What a `query` looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The one row whose key is this.
    Key(String),
    /// The rows whose key starts with `prefix`, in key order, from the key `from` on.
    Prefix {
        /// The start every key returned has (empty: every key).
        prefix: String,
        /// The most rows in the page, 1 to [`QUERY_MAX_LIMIT`]; `None` means
        /// [`QUERY_DEFAULT_LIMIT`].
        limit: Option<u32>,
        /// Start at this key (the `next` of the previous page); `None`: at the first.
        from: Option<String>,
    },
}

/// The arguments of `query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableQuery {
    /// The table asked.
    pub table: String,
    /// What is looked up in it.
    pub lookup: Lookup,
}

/// The word that makes a `query` a prefix query.
pub const PREFIX_FLAG: &str = "--prefix";

/// A table name argument: 1 to [`MAX_TABLE_NAME`] bytes of UTF-8.
fn table_name(arg: &[u8], kind: CommandKind) -> Result<String, ErrorReply> {
    if arg.is_empty() || arg.len() > MAX_TABLE_NAME {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            format!("a table name is 1 to {MAX_TABLE_NAME} bytes"),
        ));
    }
    utf8(arg, kind)
}

/// A key or prefix argument: UTF-8, at most [`MAX_TABLE_FIELD`] bytes.
fn key_arg(arg: &[u8], kind: CommandKind) -> Result<String, ErrorReply> {
    if arg.len() > MAX_TABLE_FIELD {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            format!("a key is at most {MAX_TABLE_FIELD} bytes"),
        ));
    }
    utf8(arg, kind)
}

/// Parses the arguments of a table command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    let bad = || usage_error(kind);
    let limit = |a: &[u8]| -> Result<Option<u32>, ErrorReply> {
        if a.is_empty() {
            Ok(None)
        } else {
            page_limit(a, QUERY_MAX_LIMIT, kind).map(Some)
        }
    };
    Ok(match (kind, args) {
        (CommandKind::Tables, []) => Command::Tables,
        (CommandKind::Query, [table, key]) => Command::Query(TableQuery {
            table: table_name(table, kind)?,
            lookup: Lookup::Key(key_arg(key, kind)?),
        }),
        (CommandKind::Query, [table, flag, prefix, rest @ ..])
            if flag.as_slice() == PREFIX_FLAG.as_bytes() && rest.len() <= 2 =>
        {
            let from = match rest.get(1) {
                None => None,
                Some(f) if f.is_empty() => None,
                Some(f) => Some(key_arg(f, kind)?),
            };
            Command::Query(TableQuery {
                table: table_name(table, kind)?,
                lookup: Lookup::Prefix {
                    prefix: key_arg(prefix, kind)?,
                    limit: rest.first().map(|a| limit(a)).transpose()?.flatten(),
                    from,
                },
            })
        }
        _ => return Err(bad()),
    })
}

/// The wire arguments of a table command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Query(TableQuery { table, lookup }) => match lookup {
            Lookup::Key(key) => vec![text(table), text(key)],
            Lookup::Prefix {
                prefix,
                limit,
                from,
            } => {
                let mut args = vec![text(table), text(PREFIX_FLAG), text(prefix)];
                match (limit, from) {
                    (None, None) => {}
                    (limit, from) => {
                        args.push(limit.map(number).unwrap_or_default());
                        if let Some(from) = from {
                            args.push(text(from));
                        }
                    }
                }
                args
            }
        },
        _ => Vec::new(),
    }
}

/// Decodes the reply to a table command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    match cmd {
        Command::Tables => (0..fields.0.len())
            .map(|i| fields.get(i).and_then(TableInfo::from_field))
            .collect::<Result<_, _>>()
            .map(Reply::Tables),
        Command::Query(TableQuery {
            lookup: Lookup::Key(_),
            ..
        }) => fields.one(TableRow::from_field).map(Reply::Row),
        Command::Query(TableQuery {
            lookup: Lookup::Prefix { .. },
            ..
        }) => {
            let (next, rows) = fields.page(
                |n| String::from_utf8(n.to_vec()).map_err(|_| Error::Malformed("next key")),
                TableRow::from_field,
            )?;
            Ok(Reply::Rows { rows, next })
        }
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample table commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    let query = |lookup| {
        Command::Query(TableQuery {
            table: "things".into(),
            lookup,
        })
    };
    vec![
        Command::Tables,
        query(Lookup::Key("keys".into())),
        query(Lookup::Key(String::new())),
        query(Lookup::Key(PREFIX_FLAG.into())),
        query(Lookup::Prefix {
            prefix: "k".into(),
            limit: None,
            from: None,
        }),
        query(Lookup::Prefix {
            prefix: String::new(),
            limit: Some(10),
            from: None,
        }),
        query(Lookup::Prefix {
            prefix: "k".into(),
            limit: None,
            from: Some("kettle".into()),
        }),
        query(Lookup::Prefix {
            prefix: "k".into(),
            limit: Some(5),
            from: Some("kettle".into()),
        }),
    ]
}

/// Sample replies to a table command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, _: &super::catalog::SampleValues) -> Vec<Reply> {
    let row = |k: &str, v: &str| {
        TableRow::new(vec![("item".into(), k.into()), ("place".into(), v.into())])
    };
    match cmd {
        Command::Tables => vec![
            Reply::Tables(Vec::new()),
            Reply::Tables(vec![
                TableInfo {
                    name: "things".into(),
                    rows: 2,
                    loaded: Some(1_700_000_000),
                    error: None,
                    columns: vec!["item".into(), "place".into()],
                },
                TableInfo {
                    name: "broken".into(),
                    rows: 0,
                    loaded: None,
                    error: Some("line 3: 2 fields, the header has 3".into()),
                    columns: Vec::new(),
                },
            ]),
        ],
        Command::Query(TableQuery {
            lookup: Lookup::Key(_),
            ..
        }) => vec![
            Reply::Row(row("keys", "hook by the door")),
            Reply::Row(row("tab\there", "line\nbreak, \"quoted\"")),
        ],
        Command::Query(TableQuery {
            lookup: Lookup::Prefix { .. },
            ..
        }) => vec![
            Reply::Rows {
                rows: Vec::new(),
                next: None,
            },
            Reply::Rows {
                rows: vec![row("kettle", "kitchen"), row("keys", "hook")],
                next: Some("knife".into()),
            },
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Request;
    use proptest::prelude::*;

    #[test]
    fn rows_keep_any_text_and_refuse_truncation() {
        let row = TableRow::new(vec![
            ("a\tb".into(), "x\ny".into()),
            (String::new(), String::new()),
        ]);
        let field = row.to_field();
        assert_eq!(field.len(), row.encoded_len());
        assert_eq!(TableRow::from_field(&field), Ok(row.clone()));
        assert_eq!(row.get("a\tb"), Some("x\ny"));
        // A cut inside a column is refused; at a column's end it is the columns before.
        for cut in 1..field.len() {
            match TableRow::from_field(&field[..cut]) {
                Ok(short) => assert!(row.fields.starts_with(&short.fields), "cut {cut}"),
                Err(_) => assert_ne!(cut, 14, "a whole first column"),
            }
        }
        assert_eq!(TableRow::from_field(&[]), Ok(TableRow::default()));
        assert!(TableRow::from_field(&[0, 0, 0, 1, 0xff, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn table_info_makes_text_one_line() {
        let info = TableInfo {
            name: "t".into(),
            rows: 1,
            loaded: None,
            error: Some("bad\tline\n2".into()),
            columns: vec!["a\tb".into()],
        };
        let back = TableInfo::from_field(&info.to_field()).unwrap();
        assert_eq!(back.error.as_deref(), Some("bad line 2"));
        assert_eq!(back.columns, vec!["a b".to_owned()]);
        for bad in [
            &b""[..],
            b"t\t1\t",
            b"\t1\t\t",
            b"t\tx\t\t",
            b"t\t1\tx\t",
            // Control characters, which `to_field` sends as spaces (found by fuzzing).
            b"c\0d\t2\t\t",
            b"t\t2\t\tfailed\x12\t",
            b"t\t2\t\t\tcol\n",
            "t\u{85}\t2\t\t".as_bytes(),
        ] {
            assert!(TableInfo::from_field(bad).is_err(), "{bad:?}");
        }
    }

    fn parse(args: &[&[u8]]) -> Result<Command, ErrorReply> {
        Command::parse(&Request {
            id: 1,
            name: "query".into(),
            args: args.iter().map(|a| a.to_vec()).collect(),
        })
    }

    #[test]
    fn query_arguments_are_checked() {
        assert!(parse(&[b"", b"k"]).is_err());
        assert!(parse(&[&[b'x'; MAX_TABLE_NAME + 1], b"k"]).is_err());
        assert!(parse(&[b"t", &vec![b'k'; MAX_TABLE_FIELD + 1]]).is_err());
        assert!(parse(&[b"t", b"\xff"]).is_err());
        assert!(parse(&[b"t", b"--prefix", b"p", b"0"]).is_err());
        assert!(parse(&[b"t", b"--prefix", b"p", b"1001"]).is_err());
        assert!(parse(&[b"t", b"--other", b"p"]).is_err());
        assert!(parse(&[b"t", b"k", b"p", b"1", b"x"]).is_err());
        assert_eq!(
            parse(&[b"t", b"--prefix", b"p", b"", b""]),
            Ok(Command::Query(TableQuery {
                table: "t".into(),
                lookup: Lookup::Prefix {
                    prefix: "p".into(),
                    limit: None,
                    from: None,
                },
            }))
        );
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        "[^\t\\p{Cc}]{0,12}"
    }

    proptest! {
        /// Any arguments: a command or a typed error, never a panic; a command re-encodes
        /// to arguments that parse to itself.
        #[test]
        fn query_parse_never_panics_and_round_trips(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..6),
        ) {
            let req = Request { id: 1, name: "query".into(), args };
            if let Ok(cmd) = Command::parse(&req) {
                let again = Request { id: 1, name: "query".into(), args: cmd.args() };
                prop_assert_eq!(Command::parse(&again), Ok(cmd));
            }
        }

        /// Any bytes: a row or an error, never a panic; a row re-encodes to the same bytes,
        /// an info to a field that decodes to the same info.
        #[test]
        fn row_decode_never_panics(field in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(row) = TableRow::from_field(&field) {
                prop_assert_eq!(&row.to_field(), &field);
            }
            if let Ok(info) = TableInfo::from_field(&field) {
                prop_assert_eq!(TableInfo::from_field(&info.to_field()), Ok(info));
            }
        }

        /// Text with control characters, tabs aside, is refused wherever it stands.
        #[test]
        fn info_fields_with_control_characters_are_refused(
            parts in proptest::collection::vec("[a-z0-9 ]{0,4}", 5),
            at in 0usize..5,
            control in "\\p{Cc}",
        ) {
            prop_assume!(control != "\t");
            let mut parts = parts;
            parts[0].insert(0, 't');
            parts[1] = "1".into();
            parts[2].clear();
            parts[at].push_str(&control);
            let field = parts.join("\t");
            prop_assert!(TableInfo::from_field(field.as_bytes()).is_err(), "{:?}", field);
        }

        /// Rows and infos of any (one-line) text round-trip.
        #[test]
        fn values_round_trip(
            pairs in proptest::collection::vec((".{0,8}", ".{0,8}"), 0..5),
            name in "[^\t\\p{Cc}]{1,12}",
            rows in any::<u64>(),
            loaded in proptest::option::of(any::<u64>()),
            error in proptest::option::of("[^\t\\p{Cc}]{1,12}"),
            columns in proptest::collection::vec(text_strategy(), 0..4),
        ) {
            let row = TableRow::new(pairs);
            prop_assert_eq!(TableRow::from_field(&row.to_field()), Ok(row));
            let info = TableInfo { name, rows, loaded, error, columns };
            prop_assert_eq!(TableInfo::from_field(&info.to_field()), Ok(info));
        }
    }
}
