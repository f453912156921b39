//! Who answers a query: the [`QueryHandler`] trait a library user implements (and registers
//! on the node builder for one table), and [`KeyLookup`], the default handler (the row by
//! key, or a page of rows by prefix). [`page`] builds a prefix page within the bounds of
//! one reply; handlers of their own may use it too.

use vserv_core::commands::{Lookup, QUERY_DEFAULT_LIMIT, QUERY_ROW_BUDGET, TableRow};

use super::{TableError, Tables};

/// One query, as a handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The table asked.
    pub table: &'a str,
    /// What is looked up.
    pub lookup: &'a Lookup,
    /// Who asks: the logged-in user's name, `None` for an anonymous session (or a UDP
    /// query).
    pub user: Option<&'a str>,
    /// Now, Unix seconds (the time a reload is stamped with).
    pub now: u64,
}

/// A handler's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The one row of a key query.
    Row(TableRow),
    /// A page of rows of a prefix query, and the FROM of the next page (`None`: no row is
    /// left).
    Rows {
        /// The rows, in the handler's order.
        rows: Vec<TableRow>,
        /// Where the next page starts.
        next: Option<String>,
    },
}

/// Why a handler gave no answer; each becomes a typed error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Nothing matches (`NotFound`).
    #[error("{0}")]
    NotFound(String),
    /// The query makes no sense to this handler (`BadArguments`).
    #[error("{0}")]
    BadQuery(String),
    /// The handler failed (`Internal`): its message is shown to the client.
    #[error("{0}")]
    Failed(String),
    /// The table itself failed (never loaded, unknown).
    #[error(transparent)]
    Table(#[from] TableError),
}

/// A query function for one table: a library user's own answers in place of the key
/// lookup. Called from blocking work, possibly on several threads at once.
pub trait QueryHandler: Send + Sync {
    /// Answers `query`, reading any table of `tables` (each read reloads a table whose file
    /// changed). A prefix answer larger than one reply is refused by the server.
    fn query(&self, query: &Query<'_>, tables: &Tables) -> Result<Answer, HandlerError>;
}

impl<F> QueryHandler for F
where
    F: Fn(&Query<'_>, &Tables) -> Result<Answer, HandlerError> + Send + Sync,
{
    fn query(&self, query: &Query<'_>, tables: &Tables) -> Result<Answer, HandlerError> {
        self(query, tables)
    }
}

/// The default handler: `query T KEY` is the row whose key column is KEY, `query T --prefix
/// P` the rows whose key starts with P, in key order.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyLookup;

impl QueryHandler for KeyLookup {
    fn query(&self, query: &Query<'_>, tables: &Tables) -> Result<Answer, HandlerError> {
        let snapshot = tables.snapshot(query.table, query.now)?;
        match query.lookup {
            Lookup::Key(key) => snapshot
                .get(key)
                .map(Answer::Row)
                .ok_or_else(|| HandlerError::NotFound(format!("no row with key {key:?}"))),
            Lookup::Prefix {
                prefix,
                limit,
                from,
            } => {
                let rows = snapshot
                    .with_prefix(prefix, from.as_deref())
                    .map(|(k, v)| (k.to_owned(), snapshot.row(v)));
                Ok(page(rows, *limit))
            }
        }
    }
}

/// A prefix page from `rows` (`(key, row)` in key order): as many as `limit` (default
/// [`QUERY_DEFAULT_LIMIT`]) and [`QUERY_ROW_BUDGET`] allow, `next` the key of the first row
/// left out.
pub fn page(rows: impl Iterator<Item = (String, TableRow)>, limit: Option<u32>) -> Answer {
    let limit = usize::try_from(limit.unwrap_or(QUERY_DEFAULT_LIMIT)).unwrap_or(usize::MAX);
    let mut used = 0;
    let mut out = Vec::new();
    for (key, row) in rows {
        let cost = 4 + row.encoded_len();
        if out.len() == limit || used + cost > QUERY_ROW_BUDGET {
            return Answer::Rows {
                rows: out,
                next: Some(key),
            };
        }
        used += cost;
        out.push(row);
    }
    Answer::Rows {
        rows: out,
        next: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, size: usize) -> impl Iterator<Item = (String, TableRow)> {
        (0..n).map(move |i| {
            let key = format!("k{i:04}");
            (
                key.clone(),
                TableRow::new(vec![("k".into(), key), ("v".into(), "x".repeat(size))]),
            )
        })
    }

    #[test]
    fn pages_stop_at_the_limit_or_the_budget() {
        let Answer::Rows { rows: r, next } = page(rows(5, 1), Some(2)) else {
            unreachable!()
        };
        assert_eq!((r.len(), next.as_deref()), (2, Some("k0002")));
        let Answer::Rows { rows: r, next } = page(rows(5, 1), None) else {
            unreachable!()
        };
        assert_eq!((r.len(), next), (5, None));
        let Answer::Rows { rows: r, next } = page(rows(100, 1000), Some(1000)) else {
            unreachable!()
        };
        let used: usize = r.iter().map(|r| 4 + r.encoded_len()).sum();
        assert!(used <= QUERY_ROW_BUDGET && !r.is_empty());
        assert_eq!(next, Some(format!("k{:04}", r.len())));
    }
}
