//! Query tables (spec/tables.md): CSV files a node serves by key, re-read when they change.
//!
//! - `config.rs`: what is served ([`TablesSettings`], [`TableConfig`]) and its checks.
//! - `source.rs`: where the files are read ([`TableSource`]: [`StdFiles`], [`MemoryFiles`]).
//! - `load.rs`: a file parsed into a [`Snapshot`] under the [`TableLimits`].
//! - `handler.rs`: who answers ([`QueryHandler`], the default [`KeyLookup`]).
//! - `external.rs`: an operator's program as a table's handler.
//!
//! [`Tables`] holds each table's last good snapshot (an `Arc`, so a query reads it without
//! holding any lock while a reload builds the next one). Every read compares the file's
//! stamp with the one loaded and reloads on a change, so no answer comes from a file that
//! was replaced; a file that fails to load leaves the last good snapshot serving, logs why
//! and shows the error in `tables`. All of it reads files: it runs as blocking work.

mod config;
mod external;
mod handler;
mod load;
mod source;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::commands::{MAX_ENCODED_TABLE_INFO, TableInfo, TableQuery};

use crate::accounts::UserName;

pub use config::{
    DEFAULT_HANDLER_TIMEOUT, KeyColumn, TableAccess, TableConfig, TableConfigError, TableLimits,
    TablesSettings,
};
pub use external::{ExternalHandler, HandlerInput, MAX_HANDLER_OUTPUT};
pub use handler::{Answer, HandlerError, KeyLookup, Query, QueryHandler, page};
pub use load::{LoadError, Snapshot, parse};
pub use source::{FileStamp, MemoryFiles, SourceError, StdFiles, TableSource};

/// Why a table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No table of that name is served.
    #[error("no table {0:?}")]
    Unknown(String),
    /// The table's file never loaded: there is nothing to serve.
    #[error("table {name:?} is not available: {why}")]
    Unavailable {
        /// The table.
        name: String,
        /// Why its last load failed.
        why: String,
    },
}

/// A table's state between loads.
#[derive(Debug, Default)]
struct State {
    /// The last good load.
    snapshot: Option<Arc<Snapshot>>,
    /// The stamp of the file last read, good or not (a bad file is not re-parsed until it
    /// changes again).
    stamp: Option<FileStamp>,
    /// When the snapshot was loaded, Unix seconds.
    loaded_at: Option<u64>,
    /// Why the last load (or stamp check) failed.
    error: Option<String>,
}

/// One served table.
struct Table {
    config: TableConfig,
    state: Mutex<State>,
    handler: Option<Arc<dyn QueryHandler>>,
}

/// The tables a node serves; see the module docs.
pub struct Tables {
    source: Arc<dyn TableSource>,
    limits: TableLimits,
    tables: BTreeMap<String, Table>,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("names", &self.tables.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Tables {
    /// The tables of `settings` (checked with [`TablesSettings::validate`]), reading files
    /// through `source`, none loaded yet. A table with an external handler gets an
    /// [`ExternalHandler`].
    pub fn new(
        settings: &TablesSettings,
        source: Arc<dyn TableSource>,
    ) -> Result<Tables, TableConfigError> {
        settings.validate()?;
        let tables = settings
            .tables
            .iter()
            .map(|config| {
                let handler = match (&config.handler, &settings.programs_dir) {
                    (Some(program), Some(dir)) => Some(Arc::new(ExternalHandler::new(
                        dir.join(program),
                        settings.handler_timeout,
                    ))
                        as Arc<dyn QueryHandler>),
                    _ => None,
                };
                let table = Table {
                    config: config.clone(),
                    state: Mutex::new(State::default()),
                    handler,
                };
                (config.name.clone(), table)
            })
            .collect();
        Ok(Tables {
            source,
            limits: settings.limits,
            tables,
        })
    }

    /// These tables with `handler` answering the queries of table `name` (in place of the
    /// key lookup or an external handler). Fails if no such table is configured.
    pub fn with_handler(
        mut self,
        name: &str,
        handler: Arc<dyn QueryHandler>,
    ) -> Result<Tables, TableConfigError> {
        let table = self
            .tables
            .get_mut(name)
            .ok_or_else(|| TableConfigError::NoSuchTable(name.to_owned()))?;
        table.handler = Some(handler);
        Ok(self)
    }

    /// The names served, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// Loads every table (at start, before serving), logging each result.
    pub fn load_all(&self, now: u64) {
        for name in self.tables.keys() {
            if let Err(e) = self.snapshot(name, now) {
                tracing::warn!(table = %name, error = %e, "query table not loaded");
            }
        }
    }

    /// The current snapshot of table `name`: reloaded first if its file's stamp changed
    /// since the last read (the reload stamped `now`). A file that fails leaves the last
    /// good snapshot serving; [`TableError::Unavailable`] if there is none.
    pub fn snapshot(&self, name: &str, now: u64) -> Result<Arc<Snapshot>, TableError> {
        let table = self
            .tables
            .get(name)
            .ok_or_else(|| TableError::Unknown(name.to_owned()))?;
        let mut state = lock(&table.state);
        self.refresh(table, &mut state, now);
        state
            .snapshot
            .clone()
            .ok_or_else(|| TableError::Unavailable {
                name: name.to_owned(),
                why: state.error.clone().unwrap_or_else(|| "never loaded".into()),
            })
    }

    /// Re-reads the table's file if its stamp is not the one last read.
    fn refresh(&self, table: &Table, state: &mut State, now: u64) {
        let path = &table.config.file;
        let stamp = match self.source.stamp(path) {
            Ok(stamp) => stamp,
            Err(e) => {
                let why = e.to_string();
                if state.error.as_deref() != Some(why.as_str()) {
                    tracing::warn!(table = %table.config.name, error = %why, "query table file unreadable; the last good rows serve");
                }
                state.error = Some(why);
                state.stamp = None;
                return;
            }
        };
        if state.stamp == Some(stamp) {
            return;
        }
        let loaded = self
            .source
            .read(path, self.limits.max_file_bytes)
            .map_err(|e| LoadError::Read(e.to_string()))
            .and_then(|(bytes, stamp)| {
                parse(&table.config, &self.limits, &bytes).map(|s| (s, stamp))
            });
        match loaded {
            Ok((snapshot, read_stamp)) => {
                tracing::info!(table = %table.config.name, rows = snapshot.len(), "query table loaded");
                state.snapshot = Some(Arc::new(snapshot));
                state.stamp = Some(read_stamp);
                state.loaded_at = Some(now);
                state.error = None;
            }
            Err(e) => {
                tracing::warn!(table = %table.config.name, file = %path.display(), error = %e, "query table file refused; the last good rows serve");
                state.stamp = Some(stamp);
                state.error = Some(e.to_string());
            }
        }
    }

    /// Whether `user` (`None`: anonymous) may query table `name`; false for an unknown one.
    pub fn may_query(&self, name: &str, user: Option<&UserName>) -> bool {
        self.tables
            .get(name)
            .is_some_and(|t| allowed(&t.config.access, user))
    }

    /// What `tables` shows `user`: each table they may query (refreshed first), by name.
    pub fn infos(&self, user: Option<&UserName>, now: u64) -> Vec<TableInfo> {
        self.tables
            .values()
            .filter(|t| allowed(&t.config.access, user))
            .map(|t| {
                let mut state = lock(&t.state);
                self.refresh(t, &mut state, now);
                info(&t.config.name, &state)
            })
            .collect()
    }

    /// Answers `query` for `user` at `now` with the table's handler (registered, external,
    /// else [`KeyLookup`]). Access is the caller's to check ([`Tables::may_query`]).
    pub fn answer(
        &self,
        query: &TableQuery,
        user: Option<&UserName>,
        now: u64,
    ) -> Result<Answer, HandlerError> {
        let table = self
            .tables
            .get(&query.table)
            .ok_or_else(|| TableError::Unknown(query.table.clone()))?;
        let q = Query {
            table: &query.table,
            lookup: &query.lookup,
            user: user.map(UserName::as_str),
            now,
        };
        match &table.handler {
            Some(handler) => handler.query(&q, self),
            None => KeyLookup.query(&q, self),
        }
    }

    /// The limits every load is held to.
    pub fn limits(&self) -> &TableLimits {
        &self.limits
    }
}

/// The table info of `state`, within [`MAX_ENCODED_TABLE_INFO`]: the error shortened to
/// 200 bytes, then the columns that fit.
fn info(name: &str, state: &State) -> TableInfo {
    let error = state.error.as_deref().map(|e| shorten(e, 200));
    let mut info = TableInfo {
        name: name.to_owned(),
        rows: state
            .snapshot
            .as_ref()
            .map_or(0, |s| u64::try_from(s.len()).unwrap_or(u64::MAX)),
        loaded: state.loaded_at,
        error,
        columns: Vec::new(),
    };
    let mut used = info.to_field().len();
    for column in state.snapshot.iter().flat_map(|s| s.columns()) {
        if used + 1 + column.len() > MAX_ENCODED_TABLE_INFO {
            break;
        }
        used += 1 + column.len();
        info.columns.push(column.clone());
    }
    info
}

/// `s` cut to at most `max` bytes at a character boundary.
fn shorten(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Whether `access` lets `user` query.
fn allowed(access: &TableAccess, user: Option<&UserName>) -> bool {
    match (access, user) {
        (TableAccess::Anyone, _) => true,
        (TableAccess::Users, Some(_)) => true,
        (TableAccess::Only(names), Some(user)) => names
            .iter()
            .any(|n| UserName::parse(n).is_ok_and(|n| &n == user)),
        (_, None) => false,
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Each field is replaced whole: consistent after a panic elsewhere.
    state.lock().unwrap_or_else(|p| p.into_inner())
}
