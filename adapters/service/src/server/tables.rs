//! The query-table commands (`tables`, `query`; spec/tables.md) over the node's
//! [`Tables`](crate::tables::Tables): access per table, the handler's answer checked to fit
//! one reply, every failure a typed error reply. [`Service::tables_command`] takes the
//! caller as an argument, so the sealed UDP queries answer through it with an anonymous one.

use vserv_core::commands::{Command, Lookup, MAX_ENCODED_ROW, QUERY_ROW_BUDGET, Reply, TableQuery};
use vserv_core::{ErrorCode, ErrorReply};

use crate::accounts::User;
use crate::tables::{Answer, HandlerError, TableError};

use super::Service;

impl From<HandlerError> for ErrorReply {
    fn from(e: HandlerError) -> Self {
        let code = match &e {
            HandlerError::NotFound(_) | HandlerError::Table(TableError::Unknown(_)) => {
                ErrorCode::NotFound
            }
            HandlerError::BadQuery(_) => ErrorCode::BadArguments,
            HandlerError::Failed(_) | HandlerError::Table(TableError::Unavailable { .. }) => {
                ErrorCode::Internal
            }
        };
        ErrorReply::new(code, e.to_string())
    }
}

impl Service {
    /// Answers `tables` or `query` for `caller` (`None`: anonymous) at `now` (Unix
    /// seconds). It may read a table's file (reloading a changed one) and run an external
    /// handler: it blocks, so it runs as blocking work. Any other command is refused with
    /// [`ErrorCode::Internal`].
    pub fn tables_command(
        &self,
        caller: Option<&User>,
        cmd: &Command,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let user = caller.map(|u| &u.name);
        let tables = self.shared.tables.as_deref();
        match cmd {
            Command::Tables => Ok(Reply::Tables(
                tables.map(|t| t.infos(user, now)).unwrap_or_default(),
            )),
            Command::Query(query) => {
                let Some(tables) = tables.filter(|t| t.may_query(&query.table, user)) else {
                    return Err(refused(query, caller.is_some()));
                };
                let answer = tables.answer(query, user, now)?;
                fit(query, answer)
            }
            _ => Err(ErrorReply::new(ErrorCode::Internal, "not a table command")),
        }
    }
}

/// The answer to a query on a table the caller may not query (or that does not exist):
/// the same for both, so a table's existence is not told to those who may not query it.
fn refused(query: &TableQuery, logged_in: bool) -> ErrorReply {
    if logged_in {
        ErrorReply::new(
            ErrorCode::NotFound,
            format!("no table {:?} you may query", query.table),
        )
    } else {
        ErrorReply::new(
            ErrorCode::Forbidden,
            format!(
                "no table {:?} open to anyone; log in for the others",
                query.table
            ),
        )
    }
}

/// The reply carrying `answer`, if it is the right shape for the query and fits one
/// response.
fn fit(query: &TableQuery, answer: Answer) -> Result<Reply, ErrorReply> {
    let too_large = || {
        ErrorReply::new(
            ErrorCode::TooLarge,
            "the table's answer does not fit one reply",
        )
    };
    match (&query.lookup, answer) {
        (Lookup::Key(_), Answer::Row(row)) if row.encoded_len() <= MAX_ENCODED_ROW => {
            Ok(Reply::Row(row))
        }
        (Lookup::Key(_), Answer::Row(_)) => Err(too_large()),
        (Lookup::Key(_), Answer::Rows { .. }) => Err(ErrorReply::new(
            ErrorCode::Internal,
            "the table's handler answered a key query with a page of rows",
        )),
        (Lookup::Prefix { .. }, answer) => {
            let (rows, next) = match answer {
                Answer::Row(row) => (vec![row], None),
                Answer::Rows { rows, next } => (rows, next),
            };
            let size: usize = rows.iter().map(|r| 4 + r.encoded_len()).sum();
            let next_len = next.as_ref().map_or(0, String::len);
            if size > QUERY_ROW_BUDGET || next_len > vserv_core::commands::MAX_TABLE_FIELD {
                return Err(too_large());
            }
            Ok(Reply::Rows { rows, next })
        }
    }
}
