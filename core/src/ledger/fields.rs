//! The key/value field form of entry bodies used by the command-line client.
//!
//! A field body is UTF-8 text: zero or more lines `key=value\n`, every line (the last one
//! included) ended by a single `\n`. A key is 1-[`MAX_FIELD_KEY`] bytes of `[a-z0-9_]`; no key
//! appears twice; a value is any UTF-8 without control characters other than tab (it may
//! contain `=`, and may be empty). Field order is kept as given. The empty body is the empty
//! field list. So `fields_to_body` and `body_to_fields` are inverse bijections between valid
//! field lists and valid field bodies.

use std::collections::BTreeSet;

use super::{LedgerError, MAX_BODY};

/// Maximum length of a field key in bytes.
pub const MAX_FIELD_KEY: usize = 32;

fn check_key(key: &str, line: usize) -> Result<(), LedgerError> {
    if (1..=MAX_FIELD_KEY).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(())
    } else {
        Err(LedgerError::BadFieldKey { line })
    }
}

fn check_value(value: &str, line: usize) -> Result<(), LedgerError> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        Err(LedgerError::BadFieldValue { line })
    } else {
        Ok(())
    }
}

/// Encodes fields as a body, in the order given. Fails on a bad key or value, a duplicate
/// key, or a result longer than [`MAX_BODY`]. The result always parses back with
/// [`body_to_fields`] to the same list.
pub fn fields_to_body<K: AsRef<str>, V: AsRef<str>>(
    fields: &[(K, V)],
) -> Result<Vec<u8>, LedgerError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        let (k, v) = (k.as_ref(), v.as_ref());
        let line = i + 1;
        check_key(k, line)?;
        check_value(v, line)?;
        if !seen.insert(k) {
            return Err(LedgerError::DuplicateField {
                line,
                key: k.to_owned(),
            });
        }
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(b'\n');
        if out.len() > MAX_BODY {
            return Err(LedgerError::BodyTooLarge {
                len: out.len(),
                max: MAX_BODY,
            });
        }
    }
    Ok(out)
}

/// Parses a field body into `(key, value)` pairs in body order. Accepts exactly the bodies
/// [`fields_to_body`] produces: invalid UTF-8, a line without `=` or newline, a bad key or
/// value, or a repeated key is refused with the 1-based line number.
pub fn body_to_fields(body: &[u8]) -> Result<Vec<(String, String)>, LedgerError> {
    let text = std::str::from_utf8(body).map_err(|_| LedgerError::FieldNotUtf8)?;
    let mut seen = BTreeSet::new();
    let mut fields = Vec::new();
    let mut rest = text;
    let mut line = 0;
    while !rest.is_empty() {
        line += 1;
        let Some((this, tail)) = rest.split_once('\n') else {
            return Err(LedgerError::BadFieldLine { line });
        };
        rest = tail;
        let Some((key, value)) = this.split_once('=') else {
            return Err(LedgerError::BadFieldLine { line });
        };
        check_key(key, line)?;
        check_value(value, line)?;
        if !seen.insert(key) {
            return Err(LedgerError::DuplicateField {
                line,
                key: key.to_owned(),
            });
        }
        fields.push((key.to_owned(), value.to_owned()));
    }
    Ok(fields)
}
