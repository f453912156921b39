//! Parsing a table file (CSV, with the `csv` crate) into a [`Snapshot`]: the column names
//! and the rows by key, in key order, held to the [`TableLimits`]. A file that breaks a
//! rule is refused whole with a [`LoadError`] saying where: a table never serves half a
//! file.

use std::collections::BTreeMap;

use vserv_core::commands::TableRow;

use super::config::{KeyColumn, TableConfig, TableLimits};

/// Why a table file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read, or is larger than the limit.
    #[error("{0}")]
    Read(String),
    /// Not CSV (a quote left open, rows of different lengths, not UTF-8).
    #[error("not valid CSV: {0}")]
    Csv(String),
    /// A table with a header row whose file is empty.
    #[error("the file has no header row")]
    NoHeader,
    /// The key column is not in the file.
    #[error("no key column {0}")]
    NoKeyColumn(String),
    /// More rows than the limit.
    #[error("more than {max} rows")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
    /// A field longer than the limit.
    #[error("line {line}: a field is longer than {max} bytes")]
    FieldTooLong {
        /// The line of the row, from 1.
        line: u64,
        /// The limit.
        max: usize,
    },
    /// A row longer than the limit.
    #[error("line {line}: the row is longer than {max} bytes")]
    RowTooLong {
        /// The line of the row, from 1.
        line: u64,
        /// The limit.
        max: usize,
    },
    /// Two rows with one key.
    #[error("line {line}: the key {key:?} is used twice")]
    DuplicateKey {
        /// The line of the second row, from 1.
        line: u64,
        /// The key.
        key: String,
    },
}

/// One good load of a table: the column names, the key column and the rows by key (each
/// row's values in column order). Never changes once built; a reload builds a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    columns: Vec<String>,
    key_index: usize,
    rows: BTreeMap<String, Vec<String>>,
}

impl Snapshot {
    /// The column names, in file order (`0`, `1`... without a header row).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The key column's index.
    pub fn key_index(&self) -> usize {
        self.key_index
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The values of the row with key `key`, in column order.
    pub fn values(&self, key: &str) -> Option<&[String]> {
        self.rows.get(key).map(Vec::as_slice)
    }

    /// The row with key `key`, its values named by the columns.
    pub fn get(&self, key: &str) -> Option<TableRow> {
        self.values(key).map(|v| self.row(v))
    }

    /// `values` named by the columns.
    pub fn row(&self, values: &[String]) -> TableRow {
        TableRow::new(
            self.columns
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect(),
        )
    }

    /// Every row as `(key, values)`, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.rows.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The rows whose key starts with `prefix`, in key order, from the key `from` on
    /// (`None`: from the first).
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
        from: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a [String])> + 'a {
        let start = match from {
            Some(f) if f > prefix => f,
            _ => prefix,
        };
        self.rows
            .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// Parses `bytes` as the file of table `table`, held to `limits`.
pub fn parse(
    table: &TableConfig,
    limits: &TableLimits,
    bytes: &[u8],
) -> Result<Snapshot, LoadError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .from_reader(bytes);
    let mut records = reader.records();
    let csv_error = |e: csv::Error| LoadError::Csv(e.to_string());
    let line_of = |r: &csv::StringRecord| r.position().map_or(0, csv::Position::line);
    let check_fields = |r: &csv::StringRecord| -> Result<(), LoadError> {
        if r.iter().any(|f| f.len() > limits.max_field_bytes) {
            return Err(LoadError::FieldTooLong {
                line: line_of(r),
                max: limits.max_field_bytes,
            });
        }
        Ok(())
    };
    let (columns, mut first) = if table.header {
        let header = records
            .next()
            .ok_or(LoadError::NoHeader)?
            .map_err(csv_error)?;
        check_fields(&header)?;
        (header.iter().map(str::to_owned).collect::<Vec<_>>(), None)
    } else {
        match records.next() {
            None => (Vec::new(), None),
            Some(r) => {
                let r = r.map_err(csv_error)?;
                ((0..r.len()).map(|i| i.to_string()).collect(), Some(r))
            }
        }
    };
    let key_index = match &table.key {
        KeyColumn::Index(i) if *i < columns.len() || columns.is_empty() => *i,
        KeyColumn::Index(i) => return Err(LoadError::NoKeyColumn(format!("at index {i}"))),
        KeyColumn::Name(name) => columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| LoadError::NoKeyColumn(format!("named {name:?}")))?,
    };
    let names_len: usize = columns.iter().map(|c| 8 + c.len()).sum();
    let mut rows = BTreeMap::new();
    let mut next = || first.take().map(Ok).or_else(|| records.next());
    while let Some(record) = next() {
        let record = record.map_err(csv_error)?;
        let line = line_of(&record);
        check_fields(&record)?;
        let values_len: usize = record.iter().map(str::len).sum();
        if names_len + values_len > limits.max_row_bytes {
            return Err(LoadError::RowTooLong {
                line,
                max: limits.max_row_bytes,
            });
        }
        if rows.len() == limits.max_rows {
            return Err(LoadError::TooManyRows {
                max: limits.max_rows,
            });
        }
        let values: Vec<String> = record.iter().map(str::to_owned).collect();
        let key = values.get(key_index).cloned().unwrap_or_default();
        if rows.contains_key(&key) {
            return Err(LoadError::DuplicateKey { line, key });
        }
        rows.insert(key, values);
    }
    Ok(Snapshot {
        columns,
        key_index,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(header: bool, key: KeyColumn) -> TableConfig {
        TableConfig {
            header,
            key,
            ..TableConfig::new("t", "/t.csv")
        }
    }

    fn load(csv: &str) -> Result<Snapshot, LoadError> {
        parse(
            &table(true, KeyColumn::Name("item".into())),
            &TableLimits::default(),
            csv.as_bytes(),
        )
    }

    #[test]
    fn rows_are_held_by_key_in_order() {
        let s = load("place,item\nkitchen,kettle\n\"hook, by the door\",keys\nshed,axe\n").unwrap();
        assert_eq!(s.columns(), ["place", "item"]);
        assert_eq!(s.key_index(), 1);
        assert_eq!(s.len(), 3);
        let keys = s.get("keys").unwrap();
        assert_eq!(keys.get("place"), Some("hook, by the door"));
        assert_eq!(keys.fields[1], ("item".to_owned(), "keys".to_owned()));
        let k: Vec<&str> = s.with_prefix("k", None).map(|(k, _)| k).collect();
        assert_eq!(k, ["kettle", "keys"]);
        let k: Vec<&str> = s.with_prefix("k", Some("keys")).map(|(k, _)| k).collect();
        assert_eq!(k, ["keys"]);
        let all: Vec<&str> = s.with_prefix("", None).map(|(k, _)| k).collect();
        assert_eq!(all, ["axe", "kettle", "keys"]);
        assert_eq!(s.with_prefix("z", None).count(), 0);
    }

    #[test]
    fn headerless_tables_name_columns_by_index() {
        let s = parse(
            &table(false, KeyColumn::Index(1)),
            &TableLimits::default(),
            b"kitchen,kettle\nshed,axe\n",
        )
        .unwrap();
        assert_eq!(s.columns(), ["0", "1"]);
        assert_eq!(s.get("axe").unwrap().get("0"), Some("shed"));
        let empty = parse(
            &table(false, KeyColumn::Index(3)),
            &TableLimits::default(),
            b"",
        );
        assert_eq!(empty.map(|s| s.len()), Ok(0));
        let bad = parse(
            &table(false, KeyColumn::Index(2)),
            &TableLimits::default(),
            b"a,b\n",
        );
        assert!(matches!(bad, Err(LoadError::NoKeyColumn(_))));
    }

    #[test]
    fn bad_files_are_refused_whole() {
        assert_eq!(load(""), Err(LoadError::NoHeader));
        assert!(matches!(
            load("place,thing\na,b\n"),
            Err(LoadError::NoKeyColumn(_))
        ));
        assert!(matches!(
            load("place,item\na,b,c\n"),
            Err(LoadError::Csv(_))
        ));
        assert!(matches!(
            load("place,item\n\"a,b\n"),
            Err(LoadError::Csv(_))
        ));
        let not_utf8 = parse(
            &table(true, KeyColumn::Index(0)),
            &TableLimits::default(),
            b"place,item\na,\xff\n",
        );
        assert!(matches!(not_utf8, Err(LoadError::Csv(_))));
        assert!(matches!(
            load("place,item\na,b\nc,b\n"),
            Err(LoadError::DuplicateKey { line: 3, .. })
        ));
    }

    #[test]
    fn huge_fields_rows_and_counts_are_refused() {
        let limits = TableLimits {
            max_rows: 2,
            max_field_bytes: 10,
            max_row_bytes: 30,
            ..TableLimits::default()
        };
        let t = table(true, KeyColumn::Index(0));
        let go = |csv: &str| parse(&t, &limits, csv.as_bytes());
        assert!(go("a,b\n1,2\n3,4\n").is_ok());
        assert_eq!(
            go("a,b\n1,2\n3,4\n5,6\n"),
            Err(LoadError::TooManyRows { max: 2 })
        );
        assert_eq!(
            go("a,b\n1,0123456789x\n"),
            Err(LoadError::FieldTooLong { line: 2, max: 10 })
        );
        assert_eq!(
            go("a,b\n0123456789,0123456789\n"),
            Err(LoadError::RowTooLong { line: 2, max: 30 })
        );
    }
}
