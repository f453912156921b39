//! Ledger exports: a feed as JSON Lines that a third party verifies with nothing but the
//! server key's fingerprint (`spec/ledger.md` §7, "Export format").
//!
//! A file is a header line, the entry lines of seqs `from..=n` in order, and signed head
//! lines, each directly after the entry it covers; the last line is a head covering the last
//! entry:
//!
//! ```text
//! {"vserv_export":1,"origin":"<66 hex digits>","from":1}
//! {"seq":1,"entry":"<hex canonical entry encoding>"}
//! {"seq":2,"entry":"..."}
//! {"head":"<hex signed head encoding>"}
//! ```
//!
//! Every line has exactly one accepted spelling (lower-case hex, no spaces, fixed field
//! order, no other fields), so any changed byte is refused. [`ExportWriter`] writes files,
//! [`export_ledger`] writes a stored feed, [`verify_export`] checks a file while streaming
//! it, one line at a time.

use std::io::{BufRead, Read, Write};

use vserv_core::ledger::{ChainVerifier, Entry, Head, LedgerError, MAX_ENCODED_ENTRY, SignedHead};
use vserv_core::{Fingerprint, ServerKey};

use crate::ledger::{FeedError, Ledger};

/// The format version written in the header line.
pub const EXPORT_VERSION: u64 = 1;

const HEADER_PREFIX: &[u8] = b"{\"vserv_export\":";
const HEADER_ORIGIN: &[u8] = b",\"origin\":\"";
const HEADER_FROM: &[u8] = b",\"from\":";
const ENTRY_PREFIX: &[u8] = b"{\"seq\":";
const ENTRY_FIELD: &[u8] = b",\"entry\":\"";
const HEAD_PREFIX: &[u8] = b"{\"head\":\"";
const STRING_END: &[u8] = b"\"}";

/// The longest line a valid export holds, without its newline: an entry line with a 20-digit
/// seq and the largest entry. Longer lines are refused before they are buffered.
pub const MAX_LINE: usize =
    ENTRY_PREFIX.len() + 20 + ENTRY_FIELD.len() + 2 * MAX_ENCODED_ENTRY + STRING_END.len();

/// What a successfully verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The feed's server key (its fingerprint is the one the caller gave).
    pub origin: ServerKey,
    /// The first seq the export covers (the header's `from`).
    pub from: u64,
    /// How many entries it holds (seqs `from..from + entries`).
    pub entries: u64,
    /// The last signed head: it covers the last entry. `None` for an export without entries.
    pub head: Option<Head>,
}

/// What is wrong with an export, found by [`verify_export`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportFault {
    /// Reading the file failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The file is empty: it has no header line.
    #[error("the file is empty (no header line)")]
    Empty,
    /// The last line does not end with a newline (a truncated file).
    #[error("the line does not end with a newline (truncated file?)")]
    Unterminated,
    /// A line is longer than [`MAX_LINE`] bytes.
    #[error("the line is longer than {MAX_LINE} bytes")]
    TooLong,
    /// A line is not the exact canonical spelling of the line it should be.
    #[error("not a canonical {0} line")]
    NotCanonical(&'static str),
    /// The header names a format version this implementation does not know.
    #[error("unsupported export version {0}")]
    UnsupportedVersion(u64),
    /// The header's `from` is 0 (seqs start at 1).
    #[error("the header's from must be at least 1")]
    ZeroFrom,
    /// The header's origin is not a valid server key.
    #[error("the header's origin is not a valid server key")]
    BadOrigin,
    /// The feed belongs to another key than the one the caller trusts.
    #[error("the feed's key is {found}, not the expected {expected}")]
    WrongKey {
        /// The fingerprint the caller gave.
        expected: Fingerprint,
        /// The fingerprint of the header's origin.
        found: Fingerprint,
    },
    /// An entry line's `seq` field disagrees with the seq the line must have.
    #[error("the seq field says {got}, expected {expected}")]
    SeqField {
        /// The seq this line must carry.
        expected: u64,
        /// The seq field's value.
        got: u64,
    },
    /// A head line that does not directly follow an entry line.
    #[error("a head line must directly follow the entry line it covers")]
    HeadNotAfterEntry,
    /// A head line for another seq than the entry line before it.
    #[error("the head is for seq {head}, but the entry before it is seq {entry}")]
    HeadSeq {
        /// The head's seq.
        head: u64,
        /// The preceding entry's seq.
        entry: u64,
    },
    /// A head line's bytes are not a signed head encoding.
    #[error("undecodable signed head: {0}")]
    BadHeadEncoding(LedgerError),
    /// The chain or a signature does not verify (`spec/ledger.md` §4).
    #[error(transparent)]
    Chain(LedgerError),
}

/// Why an export failed verification: the line (1-based; one past the last line for a fault
/// found at the end of the file), the first bad seq when there is one, and the fault.
#[derive(Debug, thiserror::Error)]
pub struct ExportError {
    /// The 1-based line number.
    pub line: u64,
    /// The first seq that could not be verified, when the fault concerns an entry.
    pub seq: Option<u64>,
    /// What is wrong.
    #[source]
    pub fault: ExportFault,
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (first bad seq {seq})")?;
        }
        write!(f, ": {}", self.fault)
    }
}

/// Why [`ExportWriter`] or [`export_ledger`] could not write an export. What was written so
/// far is not a valid export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Writing failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// `from` is 0.
    #[error("an export starts at seq 1 or later")]
    ZeroFrom,
    /// An entry of another feed.
    #[error("entry {seq} belongs to another feed")]
    WrongOrigin {
        /// The entry's seq.
        seq: u64,
    },
    /// An entry out of order.
    #[error("expected entry {expected}, got {got}")]
    OutOfOrder {
        /// The seq that must come next.
        expected: u64,
        /// The seq given.
        got: u64,
    },
    /// A signed head that does not cover the entry written just before it.
    #[error("the signed head at seq {seq} does not cover the entry written before it")]
    HeadMismatch {
        /// The head's seq.
        seq: u64,
    },
    /// The export has entries but does not end with a head covering the last one.
    #[error("the export does not end with a signed head covering entry {seq}")]
    Unsigned {
        /// The last entry's seq.
        seq: u64,
    },
    /// The stored feed lacks an entry its head covers.
    #[error("entry {seq} is missing from the store")]
    MissingEntry {
        /// The missing seq.
        seq: u64,
    },
    /// Reading the stored feed failed.
    #[error(transparent)]
    Feed(#[from] FeedError),
}

/// Writes an export, enforcing the format's order rules (not its cryptography: a tampered
/// feed is written as it is and refused by [`verify_export`]).
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
    origin: ServerKey,
    /// The seq the next entry must have.
    next: u64,
    /// The entry on the line just written, if the last line is an entry line.
    last_entry: Option<(u64, [u8; 32])>,
    entries: u64,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export of the feed of `origin` whose first entry will be `from`, writing the
    /// header line.
    pub fn new(mut out: W, origin: ServerKey, from: u64) -> Result<Self, WriteError> {
        if from == 0 {
            return Err(WriteError::ZeroFrom);
        }
        writeln!(
            out,
            "{{\"vserv_export\":{EXPORT_VERSION},\"origin\":\"{}\",\"from\":{from}}}",
            hex::encode(origin.as_bytes())
        )?;
        Ok(ExportWriter {
            out,
            origin,
            next: from,
            last_entry: None,
            entries: 0,
        })
    }

    /// Writes the next entry's line. It must be of this feed and have the next seq.
    pub fn entry(&mut self, entry: &Entry) -> Result<(), WriteError> {
        let seq = entry.seq();
        if entry.origin() != self.origin {
            return Err(WriteError::WrongOrigin { seq });
        }
        if seq != self.next {
            return Err(WriteError::OutOfOrder {
                expected: self.next,
                got: seq,
            });
        }
        writeln!(
            self.out,
            "{{\"seq\":{seq},\"entry\":\"{}\"}}",
            hex::encode(entry.to_bytes())
        )?;
        self.next = seq.saturating_add(1);
        self.last_entry = Some((seq, entry.hash()));
        self.entries += 1;
        Ok(())
    }

    /// Writes a signed head's line. It must cover the entry written just before it.
    pub fn head(&mut self, signed: &SignedHead) -> Result<(), WriteError> {
        let head = &signed.head;
        if self.last_entry != Some((head.seq, head.hash)) || head.origin != self.origin {
            return Err(WriteError::HeadMismatch { seq: head.seq });
        }
        writeln!(
            self.out,
            "{{\"head\":\"{}\"}}",
            hex::encode(signed.to_bytes())
        )?;
        self.last_entry = None;
        Ok(())
    }

    /// How many entries were written.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Ends the export: an export with entries must end with a head line. Flushes and
    /// returns the output.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if let Some((seq, _)) = self.last_entry {
            return Err(WriteError::Unsigned { seq });
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Exports the stored feed of `ledger` (whose server key is `origin`) from seq `from` to its
/// stored signed head, reading one entry at a time; `progress(seq)` is called after each
/// entry. Returns how many entries were written (0 when `from` is past the head, or the feed
/// is empty: the export is then the header line alone).
pub fn export_ledger<W: Write>(
    ledger: &Ledger,
    origin: ServerKey,
    from: u64,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, WriteError> {
    let mut writer = ExportWriter::new(out, origin, from)?;
    if let Some(signed) = ledger.head()? {
        for seq in from..=signed.head.seq {
            let entry = ledger
                .by_seq(seq)?
                .ok_or(WriteError::MissingEntry { seq })?;
            writer.entry(&entry)?;
            progress(seq);
        }
        if writer.entries() > 0 {
            writer.head(&signed)?;
        }
    }
    let entries = writer.entries();
    writer.finish()?;
    Ok(entries)
}

/// Verifies an export read from `reader`, one line at a time (at most [`MAX_LINE`] bytes are
/// buffered), against the fingerprint of the server key the caller trusts: the header's
/// origin must have that fingerprint, every line must be canonical, entries must form the
/// chain from the header's `from` on (`ChainVerifier` rules: origin, seq, prev links), every
/// head line must be validly signed by that key and match the entry before it, and the last
/// line must be a head covering the last entry. The error names the line and the first bad
/// seq.
pub fn verify_export<R: BufRead>(
    mut reader: R,
    expected: &Fingerprint,
) -> Result<ExportSummary, ExportError> {
    let mut buf = Vec::new();
    let mut line = 1u64;
    let at =
        |line: u64, seq: Option<u64>| move |fault: ExportFault| ExportError { line, seq, fault };
    if !read_line(&mut reader, &mut buf).map_err(at(line, None))? {
        return Err(at(line, None)(ExportFault::Empty));
    }
    let (origin, from) = parse_header(&buf).map_err(at(line, None))?;
    let found = origin.fingerprint();
    if found != *expected {
        return Err(at(line, None)(ExportFault::WrongKey {
            expected: *expected,
            found,
        }));
    }
    let mut chain = Chain::new(origin, from);
    // The seq and hash of the entry on the previous line, if it was an entry line.
    let mut after_entry: Option<u64> = None;
    let mut entries = 0u64;
    let mut last_head = None;
    loop {
        line += 1;
        let next = chain.next_seq();
        if !read_line(&mut reader, &mut buf).map_err(at(line, Some(next)))? {
            break;
        }
        match parse_line(&buf).map_err(at(line, Some(next)))? {
            Line::Entry { seq, encoding } => {
                if seq != next {
                    return Err(at(line, Some(next))(ExportFault::SeqField {
                        expected: next,
                        got: seq,
                    }));
                }
                chain
                    .push_encoded(&encoding)
                    .map_err(|e| at(line, e.seq().or(Some(next)))(ExportFault::Chain(e)))?;
                entries += 1;
                after_entry = Some(seq);
            }
            Line::Head(bytes) => {
                let Some(entry) = after_entry.take() else {
                    return Err(at(line, None)(ExportFault::HeadNotAfterEntry));
                };
                let covers = at(line, Some(entry));
                let signed = SignedHead::decode(&bytes)
                    .map_err(|e| covers(ExportFault::BadHeadEncoding(e)))?;
                if signed.head.seq != entry {
                    return Err(covers(ExportFault::HeadSeq {
                        head: signed.head.seq,
                        entry,
                    }));
                }
                chain
                    .push_head(&signed)
                    .map_err(|e| at(line, e.seq().or(Some(entry)))(ExportFault::Chain(e)))?;
                last_head = Some(signed.head);
            }
        }
    }
    chain
        .finish_signed()
        .map_err(|e| at(line, e.seq())(ExportFault::Chain(e)))?;
    Ok(ExportSummary {
        origin,
        from,
        entries,
        head: last_head,
    })
}

/// Reads one line into `buf` without its newline; `false` at the end of the input.
fn read_line<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> Result<bool, ExportFault> {
    buf.clear();
    let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
    let n = reader.by_ref().take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if buf.len() > MAX_LINE {
            ExportFault::TooLong
        } else {
            ExportFault::Unterminated
        });
    }
    buf.pop();
    Ok(true)
}

/// One parsed line after the header.
enum Line {
    Entry { seq: u64, encoding: Vec<u8> },
    Head(Vec<u8>),
}

fn parse_header(line: &[u8]) -> Result<(ServerKey, u64), ExportFault> {
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

fn parse_line(line: &[u8]) -> Result<Line, ExportFault> {
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
    Some((bytes, &rest[1..]))
}

/// The chain check: [`ChainVerifier`] from the first entry of the export on. For an export
/// starting at `from > 1` the verifier resumes after entry `from - 1` with the first entry's
/// own `prev` as the anchor, which the last signed head authenticates through the hash
/// links (`spec/ledger.md` §2).
struct Chain {
    origin: ServerKey,
    from: u64,
    /// `None` until the first entry of an export with `from > 1`.
    verifier: Option<ChainVerifier>,
}

impl Chain {
    fn new(origin: ServerKey, from: u64) -> Chain {
        Chain {
            origin,
            from,
            verifier: (from == 1).then(|| ChainVerifier::new(origin)),
        }
    }

    /// The seq the next entry must have.
    fn next_seq(&self) -> u64 {
        match &self.verifier {
            Some(v) => v.head().seq.saturating_add(1),
            None => self.from,
        }
    }

    fn push_encoded(&mut self, encoding: &[u8]) -> Result<[u8; 32], LedgerError> {
        let from = self.from;
        let origin = self.origin;
        let verifier = match &mut self.verifier {
            Some(v) => v,
            None => {
                let first = Entry::decode_from(encoding, &origin).map_err(|e| match e {
                    LedgerError::WrongOrigin { .. } => LedgerError::WrongOrigin { seq: from },
                    e => LedgerError::Undecodable {
                        seq: from,
                        error: Box::new(e),
                    },
                })?;
                self.verifier.insert(ChainVerifier::resume(Head {
                    origin,
                    seq: from.saturating_sub(1),
                    hash: *first.prev(),
                }))
            }
        };
        verifier.push_encoded(encoding)
    }

    fn push_head(&mut self, signed: &SignedHead) -> Result<(), LedgerError> {
        match &mut self.verifier {
            Some(v) => v.push_head(signed),
            // Head lines only follow entry lines, so an entry created the verifier.
            None => Err(LedgerError::MissingEntry { seq: self.from }),
        }
    }

    /// Every entry is covered by a verified signed head (trivially so without entries).
    fn finish_signed(self) -> Result<(), LedgerError> {
        match self.verifier {
            Some(v) if v.head().seq >= self.from => v.finish_signed().map(|_| ()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use rand::SeedableRng;
    use vserv_core::ServerIdentity;
    use vserv_core::ledger::{EntryFields, fields_to_body};
    use vserv_store::memory::MemoryStore;

    use super::*;

    fn identity(seed: u64) -> Arc<ServerIdentity> {
        Arc::new(ServerIdentity::generate(
            &mut rand::rngs::StdRng::seed_from_u64(seed),
        ))
    }

    /// A ledger of `n` entries with varied bodies.
    fn filled(n: u64) -> (Ledger, Arc<ServerIdentity>) {
        let id = identity(7);
        let ledger = Ledger::new(Arc::new(MemoryStore::new()), id.clone());
        for i in 1..=n {
            let body = fields_to_body(&[("n", i.to_string()), ("note", "x=y".to_owned())])
                .expect("valid fields");
            ledger
                .append("alice", "note", format!("r{i}").as_bytes(), &body, 1000 * i)
                .expect("append");
        }
        (ledger, id)
    }

    fn export(ledger: &Ledger, id: &ServerIdentity, from: u64) -> Vec<u8> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        let n = export_ledger(ledger, id.public_key(), from, &mut out, &mut |s| {
            seen.push(s)
        })
        .expect("export");
        assert_eq!(n, seen.len() as u64);
        out
    }

    fn verify(bytes: &[u8], id: &ServerIdentity) -> Result<ExportSummary, ExportError> {
        verify_export(bytes, &id.public_key().fingerprint())
    }

    #[test]
    fn round_trip() {
        let (ledger, id) = filled(5);
        let bytes = export(&ledger, &id, 1);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert_eq!(text.lines().count(), 7, "{text}");
        assert!(text.starts_with("{\"vserv_export\":1,\"origin\":\""));
        let summary = verify(&bytes, &id).expect("verifies");
        let head = ledger.head().expect("head").expect("some").head;
        assert_eq!(summary.entries, 5);
        assert_eq!(summary.from, 1);
        assert_eq!(summary.origin, id.public_key());
        assert_eq!(summary.head, Some(head));
        // Each entry line holds exactly the stored entry.
        for (i, line) in text.lines().skip(1).take(5).enumerate() {
            let seq = i as u64 + 1;
            let entry = ledger.by_seq(seq).expect("read").expect("stored");
            assert_eq!(
                line,
                format!(
                    "{{\"seq\":{seq},\"entry\":\"{}\"}}",
                    hex::encode(entry.to_bytes())
                )
            );
        }
    }

    #[test]
    fn partial_export_round_trips_and_is_anchored() {
        let (ledger, id) = filled(5);
        let bytes = export(&ledger, &id, 3);
        let summary = verify(&bytes, &id).expect("verifies");
        assert_eq!((summary.from, summary.entries), (3, 3));
        // Dropping the first entry line breaks the header's from.
        let text = String::from_utf8(bytes).expect("utf-8");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(1);
        let err = verify((lines.join("\n") + "\n").as_bytes(), &id).expect_err("refused");
        assert_eq!((err.line, err.seq), (2, Some(3)), "{err}");
    }

    #[test]
    fn empty_feed_and_from_past_the_head_are_header_only() {
        let (ledger, id) = filled(0);
        let bytes = export(&ledger, &id, 1);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        let summary = verify(&bytes, &id).expect("verifies");
        assert_eq!((summary.entries, summary.head), (0, None));
        let (ledger, id) = filled(2);
        let summary = verify(&export(&ledger, &id, 3), &id).expect("verifies");
        assert_eq!((summary.from, summary.entries), (3, 0));
    }

    #[test]
    fn wrong_key_is_refused_at_the_header() {
        let (ledger, id) = filled(2);
        let bytes = export(&ledger, &id, 1);
        let other = identity(8);
        let err = verify(&bytes, &other).expect_err("refused");
        assert_eq!(err.line, 1);
        assert!(matches!(err.fault, ExportFault::WrongKey { .. }), "{err}");
    }

    #[test]
    fn forged_head_signature_is_refused() {
        let (ledger, id) = filled(3);
        let signed = ledger.head().expect("head").expect("some");
        let mut forged = signed.to_bytes();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let mut out = Vec::new();
        let mut writer = ExportWriter::new(&mut out, id.public_key(), 1).expect("header");
        for seq in 1..=3 {
            let entry = ledger.by_seq(seq).expect("read").expect("stored");
            writer.entry(&entry).expect("entry");
        }
        writer.finish().expect_err("an export must end with a head");
        let forged_line = format!("{{\"head\":\"{}\"}}\n", hex::encode(forged));
        out.extend_from_slice(forged_line.as_bytes());
        let err = verify(&out, &id).expect_err("refused");
        assert_eq!((err.line, err.seq), (5, Some(3)), "{err}");
        assert!(
            matches!(
                err.fault,
                ExportFault::Chain(LedgerError::BadSignature { .. })
                    | ExportFault::BadHeadEncoding(_)
            ),
            "{err}"
        );
    }

    #[test]
    fn writer_enforces_the_order_rules() {
        let (ledger, id) = filled(3);
        let e = |seq| ledger.by_seq(seq).expect("read").expect("stored");
        let signed = ledger.head().expect("head").expect("some");
        let mut writer = ExportWriter::new(Vec::new(), id.public_key(), 1).expect("header");
        assert!(matches!(
            writer.entry(&e(2)),
            Err(WriteError::OutOfOrder {
                expected: 1,
                got: 2
            })
        ));
        writer.entry(&e(1)).expect("entry 1");
        assert!(matches!(
            writer.head(&signed),
            Err(WriteError::HeadMismatch { seq: 3 })
        ));
        assert!(matches!(
            ExportWriter::new(Vec::new(), id.public_key(), 0),
            Err(WriteError::ZeroFrom)
        ));
        let other = ExportWriter::new(Vec::new(), identity(8).public_key(), 1);
        assert!(matches!(
            other.expect("header").entry(&e(1)),
            Err(WriteError::WrongOrigin { seq: 1 })
        ));
    }

    #[test]
    fn an_entry_of_another_feed_with_its_key_in_the_header_is_refused() {
        // A feed whose entries name another origin than the header.
        let (ledger, id) = filled(1);
        let entry = ledger.by_seq(1).expect("read").expect("stored");
        let mut fields: EntryFields = entry.into_fields();
        let other = identity(8);
        fields.origin = other.public_key();
        let foreign = Entry::new(fields).expect("valid");
        let text = format!(
            "{{\"vserv_export\":1,\"origin\":\"{}\",\"from\":1}}\n{{\"seq\":1,\"entry\":\"{}\"}}\n",
            hex::encode(id.public_key().as_bytes()),
            hex::encode(foreign.to_bytes())
        );
        let err = verify(text.as_bytes(), &id).expect_err("refused");
        assert_eq!((err.line, err.seq), (2, Some(1)), "{err}");
        assert!(matches!(
            err.fault,
            ExportFault::Chain(LedgerError::WrongOrigin { seq: 1 })
        ));
    }

    #[test]
    fn over_long_and_unterminated_lines_are_refused() {
        let (ledger, id) = filled(1);
        let bytes = export(&ledger, &id, 1);
        let mut long =
            bytes[..bytes.iter().position(|&b| b == b'\n').expect("header") + 1].to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        long.push(b'\n');
        let err = verify(&long, &id).expect_err("refused");
        assert!(matches!(err.fault, ExportFault::TooLong), "{err}");
        let cut = &bytes[..bytes.len() - 1];
        let err = verify(cut, &id).expect_err("refused");
        assert!(matches!(err.fault, ExportFault::Unterminated), "{err}");
        assert!(matches!(
            verify(b"", &id).expect_err("refused").fault,
            ExportFault::Empty
        ));
    }

    /// A small feed's export, from seq 1 or later, shared by the property tests.
    fn sample(from: u64) -> (Vec<u8>, Arc<ServerIdentity>) {
        let (ledger, id) = filled(4);
        (export(&ledger, &id, from), id)
    }

    fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_single_byte_change_is_refused(
            partial in any::<bool>(),
            position in any::<prop::sample::Index>(),
            value in any::<u8>(),
        ) {
            let (mut bytes, id) = sample(if partial { 2 } else { 1 });
            prop_assert!(verify(&bytes, &id).is_ok());
            let i = position.index(bytes.len());
            prop_assume!(bytes[i] != value);
            bytes[i] = value;
            prop_assert!(verify(&bytes, &id).is_err());
        }

        #[test]
        fn any_dropped_duplicated_or_swapped_line_is_refused(
            partial in any::<bool>(),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
            op in 0u8..3,
        ) {
            let (bytes, id) = sample(if partial { 2 } else { 1 });
            prop_assert!(verify(&bytes, &id).is_ok());
            let mut lines = lines_of(&bytes);
            let (i, j) = (a.index(lines.len()), b.index(lines.len()));
            match op {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let copy = lines[i].clone();
                    lines.insert(j, copy);
                }
                _ => {
                    prop_assume!(i != j);
                    lines.swap(i, j);
                }
            }
            prop_assert!(verify(&lines.concat(), &id).is_err());
        }
    }

    /// Every position of small exports, changed to bytes that are likely to slip through a
    /// lax parser: a flipped bit, the other letter case, digits, whitespace, a newline.
    #[test]
    fn every_position_changed_is_refused() {
        for from in [1, 2] {
            let (ledger, id) = filled(2);
            let bytes = export(&ledger, &id, from);
            verify(&bytes, &id).expect("the original verifies");
            for i in 0..bytes.len() {
                let original = bytes[i];
                for value in [
                    original ^ 1,
                    original ^ 0x20,
                    b'0',
                    b'1',
                    b' ',
                    b'\n',
                    b'\r',
                ] {
                    if value == original {
                        continue;
                    }
                    let mut changed = bytes.clone();
                    changed[i] = value;
                    assert!(
                        verify(&changed, &id).is_err(),
                        "from {from}: byte {i} {original:#x} -> {value:#x} accepted"
                    );
                }
            }
        }
    }

    /// Every single dropped, duplicated or swapped line of a small export.
    #[test]
    fn every_line_operation_is_refused() {
        for from in [1, 2] {
            let (ledger, id) = filled(2);
            let lines = lines_of(&export(&ledger, &id, from));
            let n = lines.len();
            for i in 0..n {
                let mut dropped = lines.clone();
                dropped.remove(i);
                assert!(verify(&dropped.concat(), &id).is_err(), "drop {i}");
                for j in 0..=n {
                    let mut duplicated = lines.clone();
                    duplicated.insert(j, lines[i].clone());
                    assert!(verify(&duplicated.concat(), &id).is_err(), "dup {i} at {j}");
                    if j < n && j != i {
                        let mut swapped = lines.clone();
                        swapped.swap(i, j);
                        assert!(verify(&swapped.concat(), &id).is_err(), "swap {i} {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_unmodified_samples_verify() {
        for from in [1, 2] {
            let (bytes, id) = sample(from);
            verify(&bytes, &id).expect("verifies");
        }
    }
}
