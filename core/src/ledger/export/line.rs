//! The grammar of an export's lines, both ways: appending the one canonical spelling of a
//! header, entry or head line, and parsing a line back, refusing every other spelling.

use super::{EXPORT_VERSION, ExportFault};
use crate::ServerKey;

pub(super) const HEADER_PREFIX: &[u8] = b"{\"vserv_export\":";
pub(super) const HEADER_ORIGIN: &[u8] = b",\"origin\":\"";
pub(super) const HEADER_FROM: &[u8] = b",\"from\":";
pub(super) const ENTRY_PREFIX: &[u8] = b"{\"seq\":";
pub(super) const ENTRY_FIELD: &[u8] = b",\"entry\":\"";
pub(super) const HEAD_PREFIX: &[u8] = b"{\"head\":\"";
pub(super) const STRING_END: &[u8] = b"\"}";

/// One parsed line after the header.
pub(super) enum Line {
    /// An entry line: its seq field and the entry's encoding.
    Entry { seq: u64, encoding: Vec<u8> },
    /// A head line: the signed head's encoding.
    Head(Vec<u8>),
}

/// Appends the header line (with its newline).
pub(super) fn write_header(out: &mut Vec<u8>, origin: &ServerKey, from: u64) {
    out.extend_from_slice(HEADER_PREFIX);
    out.extend_from_slice(EXPORT_VERSION.to_string().as_bytes());
    out.extend_from_slice(HEADER_ORIGIN);
    push_hex(out, origin.as_bytes());
    out.push(b'"');
    out.extend_from_slice(HEADER_FROM);
    out.extend_from_slice(from.to_string().as_bytes());
    out.extend_from_slice(b"}\n");
}

/// Appends an entry line (with its newline).
pub(super) fn write_entry(out: &mut Vec<u8>, seq: u64, encoding: &[u8]) {
    out.extend_from_slice(ENTRY_PREFIX);
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(ENTRY_FIELD);
    push_hex(out, encoding);
    out.extend_from_slice(STRING_END);
    out.push(b'\n');
}

/// Appends a head line (with its newline).
pub(super) fn write_head(out: &mut Vec<u8>, signed_head: &[u8]) {
    out.extend_from_slice(HEAD_PREFIX);
    push_hex(out, signed_head);
    out.extend_from_slice(STRING_END);
    out.push(b'\n');
}

/// Parses the header line (without its newline): the origin and `from`.
pub(super) fn parse_header(line: &[u8]) -> Result<(ServerKey, u64), ExportFault> {
    let bad = || ExportFault::NotCanonical("header");
    let rest = line.strip_prefix(HEADER_PREFIX).ok_or_else(bad)?;
    let (version, rest) = decimal(rest).ok_or_else(bad)?;
    let rest = rest.strip_prefix(HEADER_ORIGIN).ok_or_else(bad)?;
    let (origin, rest) = hex_string(rest).ok_or_else(bad)?;
    let rest = rest.strip_prefix(HEADER_FROM).ok_or_else(bad)?;
    let (from, rest) = decimal(rest).ok_or_else(bad)?;
    if rest != b"}" {
        return Err(bad());
    }
    if version != EXPORT_VERSION {
        return Err(ExportFault::UnsupportedVersion(version));
    }
    if from == 0 {
        return Err(ExportFault::ZeroFrom);
    }
    let origin = ServerKey::from_bytes(&origin).map_err(|_| ExportFault::BadOrigin)?;
    Ok((origin, from))
}

/// Parses a line after the header (without its newline).
pub(super) fn parse_line(line: &[u8]) -> Result<Line, ExportFault> {
    if let Some(rest) = line.strip_prefix(ENTRY_PREFIX) {
        let bad = || ExportFault::NotCanonical("entry");
        let (seq, rest) = decimal(rest).ok_or_else(bad)?;
        let rest = rest.strip_prefix(ENTRY_FIELD).ok_or_else(bad)?;
        let (encoding, rest) = hex_string(rest).ok_or_else(bad)?;
        if rest != b"}" {
            return Err(bad());
        }
        Ok(Line::Entry { seq, encoding })
    } else if let Some(rest) = line.strip_prefix(HEAD_PREFIX) {
        let bad = || ExportFault::NotCanonical("head");
        let (bytes, rest) = hex_string(rest).ok_or_else(bad)?;
        if rest != b"}" {
            return Err(bad());
        }
        Ok(Line::Head(bytes))
    } else {
        Err(ExportFault::NotCanonical("entry or head"))
    }
}

/// A canonical decimal (no sign, no leading zero, fits in u64) and the bytes after it.
fn decimal(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = s.split_at(digits);
    if digits == 0 || (digits > 1 && number[0] == b'0') {
        return None;
    }
    let value = number.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some((value, rest))
}

/// Lower-case hex digits up to a closing `"` (consumed): the bytes, and what follows the
/// quote.
fn hex_string(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let end = s.iter().position(|&b| b == b'"')?;
    let (digits, rest) = s.split_at(end);
    if digits.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()?;
    Some((bytes, rest.get(1..)?))
}

/// Appends `bytes` as lower-case hex.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 * bytes.len());
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
}
