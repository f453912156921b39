//! Showing text a server sent: every server-supplied string the CLI prints (names, errors,
//! notes, reasons, record fields and text, greetings, server names, user lists) goes
//! through [`escape`] (or [`escape_text`] for multi-line text), so a hostile server cannot
//! move the cursor, retitle the terminal, hide text or reorder it with bidi overrides.
//! Times shown to people go through [`local_time`] (RFC 3339 in the local time zone).

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` is shown escaped: C0 controls, DEL, C1 controls, the bidirectional
/// formatting characters (LRM, RLM, ALM, embeddings, overrides and isolates), and the
/// Unicode line and paragraph separators.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every [`is_unsafe`] character escaped: `\t`, `\n`, `\r`, `\xNN` for the
/// other ASCII controls and DEL, `\u{NNNN}` for the rest (e.g. `\x1b`, `\u{202e}`). Other
/// characters, a backslash included, are shown as they are. Borrows when nothing needs
/// escaping.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_keeping(text, false)
}

/// Like [`escape`], but line feeds stay line feeds: for multi-line text (help, a record's
/// body text).
pub fn escape_text(text: &str) -> Cow<'_, str> {
    escape_keeping(text, true)
}

fn escape_keeping(text: &str, newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// Bytes a server sent as text: decoded lossily, then [`escape`]d.
pub fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes)).into_owned()
}

/// Unix seconds `secs` as RFC 3339 in the local time zone (the system's, or `TZ`), to the
/// second: `2026-12-05T06:10:00+01:00`. A time beyond what a calendar can show is printed as
/// `@SECS`.
pub fn local_time(secs: u64) -> String {
    time_in(secs, &jiff::tz::TimeZone::system())
}

/// [`local_time`] in the time zone `tz`.
pub fn time_in(secs: u64, tz: &jiff::tz::TimeZone) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_the_zone_given() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(time_in(0, &utc), "1970-01-01T00:00:00+00:00");
        assert_eq!(time_in(1_796_450_400, &utc), "2026-12-05T06:00:00+00:00");
        assert_eq!(time_in(1_796_446_230, &utc), "2026-12-05T04:50:30+00:00");
        assert_eq!(time_in(951_782_400, &utc), "2000-02-29T00:00:00+00:00");
        let plus_one = jiff::tz::TimeZone::fixed(jiff::tz::offset(1));
        assert_eq!(time_in(0, &plus_one), "1970-01-01T01:00:00+01:00");
        assert_eq!(time_in(u64::MAX, &utc), format!("@{}", u64::MAX));
    }

    #[test]
    fn controls_and_bidi_are_escaped() {
        assert_eq!(escape("plain name.txt"), "plain name.txt");
        assert!(matches!(escape("ok"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("\x07\x7f\t\r\n"), "\\x07\\x7f\\t\\r\\n");
        assert_eq!(escape("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(
            escape("\u{2066}\u{200f}\u{61c}"),
            "\\u{2066}\\u{200f}\\u{61c}"
        );
        assert_eq!(escape("a\u{2028}b\u{2029}"), "a\\u{2028}b\\u{2029}");
        // Ordinary non-ASCII text stays readable.
        assert_eq!(escape("Grüße, 東京"), "Grüße, 東京");
        assert_eq!(escape_text("line 1\nline\x1b 2\n"), "line 1\nline\\x1b 2\n");
        assert_eq!(escape_bytes(b"a\x1bb\xff"), "a\\x1bb\u{fffd}");
    }
}
