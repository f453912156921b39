//! Argument helpers the domains' codecs share: the usage error, text and path arguments,
//! decimal numbers, hex, and page limits.

use super::CommandKind;
use crate::wire::{ErrorCode, ErrorReply};

/// `usage: ...` with the command's usage line: the answer to a malformed argument list.
pub(super) fn usage_error(kind: CommandKind) -> ErrorReply {
    ErrorReply::new(
        ErrorCode::BadArguments,
        format!("usage: {}", kind.info().usage),
    )
}

/// A UTF-8 argument (a usage error otherwise).
pub(super) fn utf8(arg: &[u8], kind: CommandKind) -> Result<String, ErrorReply> {
    String::from_utf8(arg.to_vec()).map_err(|_| usage_error(kind))
}

/// A client path argument: UTF-8 and not empty. The path rules proper are the server's
/// (protocol.md §13.4).
pub(super) fn path_arg(arg: &[u8]) -> Result<String, ErrorReply> {
    if arg.is_empty() {
        return Err(ErrorReply::new(
            ErrorCode::BadArguments,
            "a path cannot be empty",
        ));
    }
    String::from_utf8(arg.to_vec())
        .map_err(|_| ErrorReply::new(ErrorCode::BadArguments, "a path must be UTF-8"))
}

/// An optional path argument: absent or empty is `None`.
pub(super) fn optional_path(arg: Option<&Vec<u8>>) -> Result<Option<String>, ErrorReply> {
    match arg {
        None => Ok(None),
        Some(a) if a.is_empty() => Ok(None),
        Some(a) => path_arg(a).map(Some),
    }
}

/// A decimal number of 1 to 20 ASCII digits that fits a `u64` (no sign, no spaces).
pub(super) fn decimal(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() || arg.len() > 20 || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// The decimal text of `n`, as an argument or field.
pub(super) fn number(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// The bytes of `s`, as an argument or field.
pub(super) fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Lower-case hex of `bytes`.
pub(super) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// Exactly 64 hex digits (either case) as 32 bytes.
pub(super) fn hex32(text: &[u8]) -> Option<[u8; 32]> {
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// A page LIMIT: 1 to `max`.
pub(super) fn page_limit(arg: &[u8], max: u32, kind: CommandKind) -> Result<u32, ErrorReply> {
    let n = decimal(arg).ok_or_else(|| usage_error(kind))?;
    match u32::try_from(n) {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ErrorReply::new(
            ErrorCode::BadArguments,
            format!("LIMIT must be 1 to {max}"),
        )),
    }
}
