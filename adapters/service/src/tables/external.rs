//! An operator's program as a table's query handler (spec/tables.md §4), run like the inbox
//! hooks ([`crate::programs`]: no shell, a timeout, only from the configured directory).
//!
//! The query goes to its standard input as one line of JSON, [`HandlerInput`]:
//! `{"table": T, "key": K|null, "prefix": P|null, "limit": N|null, "from": F|null,
//! "user": U|null}`. It answers on its standard output (at most [`MAX_HANDLER_OUTPUT`]
//! bytes) with one JSON object: `{"rows": [{"column": "value", ...}, ...], "next": KEY|null}`
//! (columns in the order written; numbers and booleans become their text, `null` empty),
//! or `{"error": "why"}`. A key query's answer has zero rows (not found) or one. A handler
//! that cannot start, runs too long, exits non-zero or writes anything else fails the query
//! with [`HandlerError::Failed`]; the server goes on serving.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use vserv_core::commands::{Lookup, TableRow};

use super::Tables;
use super::handler::{Answer, HandlerError, Query, QueryHandler};
use crate::programs::{self, ProgramError};

/// The most bytes a handler may write to its standard output.
pub const MAX_HANDLER_OUTPUT: u64 = 256 * 1024;

/// A table's external handler: the program and its time limit.
#[derive(Debug, Clone)]
pub struct ExternalHandler {
    program: PathBuf,
    timeout: Duration,
}

/// What a handler reads on its standard input (one JSON object and a line feed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerInput {
    /// The table asked.
    pub table: String,
    /// A key query's key.
    pub key: Option<String>,
    /// A prefix query's prefix.
    pub prefix: Option<String>,
    /// A prefix query's LIMIT, if given.
    pub limit: Option<u32>,
    /// A prefix query's FROM, if given.
    pub from: Option<String>,
    /// The logged-in user asking; `null` for an anonymous one.
    pub user: Option<String>,
}

impl HandlerInput {
    /// The input describing `query`.
    pub fn of(query: &Query<'_>) -> HandlerInput {
        let (key, prefix, limit, from) = match query.lookup {
            Lookup::Key(k) => (Some(k.clone()), None, None, None),
            Lookup::Prefix {
                prefix,
                limit,
                from,
            } => (None, Some(prefix.clone()), *limit, from.clone()),
        };
        HandlerInput {
            table: query.table.to_owned(),
            key,
            prefix,
            limit,
            from,
            user: query.user.map(str::to_owned),
        }
    }
}

/// A row as the handler wrote it: columns kept in order.
struct OrderedRow(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RowVisitor;
        impl<'de> Visitor<'de> for RowVisitor {
            type Value = OrderedRow;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of column names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedRow, A::Error> {
                let mut fields = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                    let value = match value {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => {
                            v.to_string()
                        }
                        _ => {
                            return Err(serde::de::Error::custom(format!(
                                "the value of column {name:?} is not text"
                            )));
                        }
                    };
                    fields.push((name, value));
                }
                Ok(OrderedRow(fields))
            }
        }
        d.deserialize_map(RowVisitor)
    }
}

/// What a handler writes on its standard output.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerOutput {
    #[serde(default)]
    rows: Vec<OrderedRow>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl ExternalHandler {
    /// The handler running `program` (an absolute path the configuration checked), killed
    /// after `timeout`.
    pub fn new(program: PathBuf, timeout: Duration) -> ExternalHandler {
        ExternalHandler { program, timeout }
    }

    fn failed(&self, table: &str, why: String) -> HandlerError {
        tracing::warn!(table = %table, program = %self.program.display(), error = %why, "table handler failed");
        HandlerError::Failed(format!("the table's handler failed: {why}"))
    }
}

/// Parses a handler's standard output into the answer to `lookup`.
pub fn parse_output(lookup: &Lookup, stdout: &[u8]) -> Result<Answer, String> {
    let out: HandlerOutput =
        serde_json::from_slice(stdout).map_err(|e| format!("its answer is not valid: {e}"))?;
    if let Some(error) = out.error {
        return Err(error);
    }
    let mut rows: Vec<TableRow> = out.rows.into_iter().map(|r| TableRow::new(r.0)).collect();
    match lookup {
        Lookup::Key(_) if rows.len() > 1 => {
            Err(format!("it answered a key query with {} rows", rows.len()))
        }
        Lookup::Key(_) => Ok(rows.pop().map_or(
            Answer::Rows {
                rows: Vec::new(),
                next: None,
            },
            Answer::Row,
        )),
        Lookup::Prefix { .. } => Ok(Answer::Rows {
            rows,
            next: out.next,
        }),
    }
}

impl QueryHandler for ExternalHandler {
    fn query(&self, query: &Query<'_>, _: &Tables) -> Result<Answer, HandlerError> {
        let mut input = serde_json::to_vec(&HandlerInput::of(query))
            .map_err(|e| self.failed(query.table, e.to_string()))?;
        input.push(b'\n');
        let argv = [self.program.to_string_lossy().into_owned()];
        let stdout =
            programs::run(&argv, &input, self.timeout, Some(MAX_HANDLER_OUTPUT)).map_err(|e| {
                match e {
                    ProgramError::Failed { .. } => {
                        self.failed(query.table, format!("it exited unsuccessfully ({e})"))
                    }
                    e => self.failed(query.table, format!("it {e}")),
                }
            })?;
        match parse_output(query.lookup, &stdout) {
            Ok(Answer::Rows { rows, .. })
                if rows.is_empty() && matches!(query.lookup, Lookup::Key(_)) =>
            {
                Err(HandlerError::NotFound("no row with that key".into()))
            }
            Ok(answer) => Ok(answer),
            Err(why) => Err(self.failed(query.table, why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_in_column_order() {
        let key = Lookup::Key("k".into());
        let row = parse_output(&key, br#"{"rows":[{"z":"1","a":2,"m":null,"b":true}]}"#);
        let Ok(Answer::Row(row)) = row else {
            unreachable!("{row:?}")
        };
        let names: Vec<&str> = row.fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["z", "a", "m", "b"]);
        assert_eq!(row.get("a"), Some("2"));
        assert_eq!(row.get("m"), Some(""));
        let prefix = Lookup::Prefix {
            prefix: "k".into(),
            limit: None,
            from: None,
        };
        assert_eq!(
            parse_output(&prefix, br#"{"rows":[],"next":"x"}"#),
            Ok(Answer::Rows {
                rows: Vec::new(),
                next: Some("x".into())
            })
        );
        assert_eq!(
            parse_output(&key, br#"{"error":"nope"}"#),
            Err("nope".into())
        );
        for bad in [
            &b"garbage"[..],
            br#"{"rows":[{"a":[1]}]}"#,
            br#"{"rows":[{"a":"1"},{"a":"2"}]}"#,
            br#"{"other":1}"#,
            b"",
        ] {
            assert!(parse_output(&key, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_input_names_the_query() {
        let lookup = Lookup::Prefix {
            prefix: "p".into(),
            limit: Some(3),
            from: None,
        };
        let q = Query {
            table: "t",
            lookup: &lookup,
            user: Some("alice"),
            now: 0,
        };
        let json = serde_json::to_string(&HandlerInput::of(&q)).unwrap();
        assert_eq!(
            json,
            r#"{"table":"t","key":null,"prefix":"p","limit":3,"from":null,"user":"alice"}"#
        );
    }
}
