//! What a node serves as query tables: one [`TableConfig`] per table (name, file, header,
//! key column, who may query it, an optional external handler), the [`TableLimits`] every
//! load is held to, and [`TablesSettings::validate`], run before the node serves, which
//! refuses a configuration that could not work with a [`TableConfigError`] naming the
//! table.

use std::path::PathBuf;
use std::time::Duration;

use vserv_core::commands::{MAX_ENCODED_ROW, MAX_TABLE_FIELD, MAX_TABLE_NAME, MAX_TABLES};

/// Which column holds a table's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyColumn {
    /// The column with this header name (a table with a header row).
    Name(String),
    /// The column at this 0-based index (any table).
    Index(usize),
}

/// Who may query a table (and see it in `tables`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TableAccess {
    /// Anyone, logged in or not.
    Anyone,
    /// Any logged-in user (the default).
    #[default]
    Users,
    /// Only these users (by name as configured; admins are not special).
    Only(Vec<String>),
}

/// One query table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// The name `query` uses: 1 to [`MAX_TABLE_NAME`] bytes, no control characters.
    pub name: String,
    /// The CSV file.
    pub file: PathBuf,
    /// Whether the first row names the columns; without one, columns are named by their
    /// index (`0`, `1`...).
    pub header: bool,
    /// The key column.
    pub key: KeyColumn,
    /// Who may query it.
    pub access: TableAccess,
    /// The external handler answering its queries: the name of a program directly in
    /// [`TablesSettings::programs_dir`]; `None`: a registered Rust handler, else the key
    /// lookup.
    pub handler: Option<String>,
}

impl TableConfig {
    /// A table named `name` over `file`, with a header row, keyed by its first column,
    /// open to logged-in users, without an external handler.
    pub fn new(name: impl Into<String>, file: impl Into<PathBuf>) -> TableConfig {
        TableConfig {
            name: name.into(),
            file: file.into(),
            header: true,
            key: KeyColumn::Index(0),
            access: TableAccess::Users,
            handler: None,
        }
    }
}

/// The limits every table load is held to; a file beyond one is refused with a
/// [`LoadError`](super::LoadError) and the rows loaded before keep serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Largest file, bytes.
    pub max_file_bytes: u64,
    /// Most rows (the header not counted).
    pub max_rows: usize,
    /// Longest field (key, value or column name), bytes; at most [`MAX_TABLE_FIELD`].
    pub max_field_bytes: usize,
    /// Longest row, encoded as a reply carries it (`TableRow::encoded_len`); at most
    /// [`MAX_ENCODED_ROW`].
    pub max_row_bytes: usize,
}

impl Default for TableLimits {
    fn default() -> Self {
        TableLimits {
            max_file_bytes: 64 * 1024 * 1024,
            max_rows: 1_000_000,
            max_field_bytes: MAX_TABLE_FIELD,
            max_row_bytes: MAX_ENCODED_ROW,
        }
    }
}

/// The longest an external handler may run by default.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything about a node's query tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablesSettings {
    /// The tables, at most [`MAX_TABLES`], names unique.
    pub tables: Vec<TableConfig>,
    /// The limits of every load.
    pub limits: TableLimits,
    /// The directory of the external handlers (absolute); `None`: no table may name one.
    pub programs_dir: Option<PathBuf>,
    /// An external handler still running after this is killed (the query fails).
    pub handler_timeout: Duration,
}

impl Default for TablesSettings {
    fn default() -> Self {
        TablesSettings {
            tables: Vec::new(),
            limits: TableLimits::default(),
            programs_dir: None,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
        }
    }
}

/// Why a tables configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableConfigError {
    /// More tables than [`MAX_TABLES`].
    #[error("at most {MAX_TABLES} tables may be configured")]
    TooMany,
    /// A name that is empty, too long or has control characters.
    #[error(
        "tables[{index}].name: {name:?} must be 1 to {MAX_TABLE_NAME} bytes without control characters"
    )]
    BadName {
        /// The entry's position, from 0.
        index: usize,
        /// The name.
        name: String,
    },
    /// Two tables with one name.
    #[error("tables[{index}].name: {name:?} is used twice")]
    DuplicateName {
        /// The second entry's position.
        index: usize,
        /// The name.
        name: String,
    },
    /// A key named by header on a table without one, or an empty key name.
    #[error("table {name:?}: {why}")]
    BadKey {
        /// The table.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A handler that is not a plain program name, or named without a programs directory.
    #[error("table {name:?}: handler {handler:?} {why}")]
    BadHandler {
        /// The table.
        name: String,
        /// The handler as configured.
        handler: String,
        /// What is wrong.
        why: String,
    },
    /// The programs directory is not absolute.
    #[error("the handlers' directory {} must be an absolute path", .0.display())]
    RelativeProgramsDir(PathBuf),
    /// Limits beyond what one reply carries, or zero.
    #[error("table limits: {0}")]
    BadLimits(String),
    /// A handler is registered for a table that is not configured.
    #[error("a handler is registered for table {0:?}, which is not configured")]
    NoSuchTable(String),
    /// The handler timeout is zero.
    #[error("the handler timeout must be longer than zero")]
    ZeroTimeout,
}

impl TablesSettings {
    /// Checks every rule above; the first broken one is the error.
    pub fn validate(&self) -> Result<(), TableConfigError> {
        if self.tables.len() > MAX_TABLES {
            return Err(TableConfigError::TooMany);
        }
        let l = &self.limits;
        if l.max_field_bytes == 0 || l.max_field_bytes > MAX_TABLE_FIELD {
            return Err(TableConfigError::BadLimits(format!(
                "the field limit must be 1 to {MAX_TABLE_FIELD} bytes"
            )));
        }
        if l.max_row_bytes == 0 || l.max_row_bytes > MAX_ENCODED_ROW {
            return Err(TableConfigError::BadLimits(format!(
                "the row limit must be 1 to {MAX_ENCODED_ROW} bytes"
            )));
        }
        if l.max_rows == 0 || l.max_file_bytes == 0 {
            return Err(TableConfigError::BadLimits(
                "the row and file limits must be above zero".into(),
            ));
        }
        if self.handler_timeout.is_zero() {
            return Err(TableConfigError::ZeroTimeout);
        }
        if let Some(dir) = &self.programs_dir
            && !dir.is_absolute()
        {
            return Err(TableConfigError::RelativeProgramsDir(dir.clone()));
        }
        for (index, t) in self.tables.iter().enumerate() {
            let name_ok = !t.name.is_empty()
                && t.name.len() <= MAX_TABLE_NAME
                && !t.name.chars().any(char::is_control);
            if !name_ok {
                return Err(TableConfigError::BadName {
                    index,
                    name: t.name.clone(),
                });
            }
            if self.tables[..index].iter().any(|o| o.name == t.name) {
                return Err(TableConfigError::DuplicateName {
                    index,
                    name: t.name.clone(),
                });
            }
            match &t.key {
                KeyColumn::Name(_) if !t.header => {
                    return Err(TableConfigError::BadKey {
                        name: t.name.clone(),
                        why: "a table without a header row names its key column by index".into(),
                    });
                }
                KeyColumn::Name(k) if k.is_empty() => {
                    return Err(TableConfigError::BadKey {
                        name: t.name.clone(),
                        why: "the key column's name is empty".into(),
                    });
                }
                _ => {}
            }
            if let Some(handler) = &t.handler {
                check_handler(t, handler, self.programs_dir.as_deref())?;
            }
        }
        Ok(())
    }
}

/// A handler is a plain file name (no separator, not `.` or `..`) inside a configured
/// programs directory.
fn check_handler(
    t: &TableConfig,
    handler: &str,
    dir: Option<&std::path::Path>,
) -> Result<(), TableConfigError> {
    let bad = |why: &str| TableConfigError::BadHandler {
        name: t.name.clone(),
        handler: handler.to_owned(),
        why: why.to_owned(),
    };
    let plain = !handler.is_empty()
        && handler != "."
        && handler != ".."
        && !handler.contains(['/', '\\'])
        && !handler.chars().any(char::is_control);
    if !plain {
        return Err(bad(
            "must be the name of a program directly in the handlers' directory",
        ));
    }
    let Some(dir) = dir else {
        return Err(bad("needs a handlers' directory (`[hooks] dir`)"));
    };
    if !crate::programs::in_programs_dir(dir, &dir.join(handler)) {
        return Err(bad("is outside the handlers' directory"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tables: Vec<TableConfig>) -> TablesSettings {
        TablesSettings {
            tables,
            programs_dir: Some(PathBuf::from("/etc/vserv/handlers")),
            ..TablesSettings::default()
        }
    }

    #[test]
    fn names_keys_and_handlers_are_checked() {
        assert_eq!(TablesSettings::default().validate(), Ok(()));
        let t = TableConfig::new("things", "/data/things.csv");
        assert_eq!(settings(vec![t.clone()]).validate(), Ok(()));
        let err = settings(vec![t.clone(), t.clone()]).validate();
        assert!(matches!(
            err,
            Err(TableConfigError::DuplicateName { index: 1, .. })
        ));
        for bad in ["", "a\tb", &"x".repeat(MAX_TABLE_NAME + 1)] {
            let t = TableConfig::new(bad, "/f");
            assert!(matches!(
                settings(vec![t]).validate(),
                Err(TableConfigError::BadName { .. })
            ));
        }
        let headerless = TableConfig {
            header: false,
            key: KeyColumn::Name("item".into()),
            ..t.clone()
        };
        assert!(matches!(
            settings(vec![headerless]).validate(),
            Err(TableConfigError::BadKey { .. })
        ));
        for (handler, ok) in [
            ("lookup", true),
            ("../x", false),
            ("a/b", false),
            ("..", false),
        ] {
            let t = TableConfig {
                handler: Some(handler.into()),
                ..t.clone()
            };
            assert_eq!(settings(vec![t]).validate().is_ok(), ok, "{handler}");
        }
        let no_dir = TablesSettings {
            programs_dir: None,
            ..settings(vec![TableConfig {
                handler: Some("lookup".into()),
                ..t.clone()
            }])
        };
        let err = no_dir.validate().unwrap_err().to_string();
        assert!(err.contains("handlers' directory"), "{err}");
        let relative = TablesSettings {
            programs_dir: Some(PathBuf::from("handlers")),
            ..settings(Vec::new())
        };
        assert!(relative.validate().is_err());
        let big = TablesSettings {
            limits: TableLimits {
                max_row_bytes: MAX_ENCODED_ROW + 1,
                ..TableLimits::default()
            },
            ..settings(Vec::new())
        };
        assert!(matches!(
            big.validate(),
            Err(TableConfigError::BadLimits(_))
        ));
    }
}
