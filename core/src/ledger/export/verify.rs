//! [`ExportVerifier`]: checks an export fed to it in chunks of any size, one line at a time,
//! holding at most one partial line of at most [`MAX_LINE`] bytes.

use super::line::{self, Line};
use super::{ExportError, ExportFault, ExportSummary, MAX_LINE};
use crate::ledger::{ChainVerifier, Entry, Head, LedgerError, SignedHead};
use crate::{Fingerprint, ServerKey};

/// Verifies an export that is all in memory (see [`ExportVerifier`] for the rules).
pub fn verify_export(bytes: &[u8], expected: &Fingerprint) -> Result<ExportSummary, ExportError> {
    let mut verifier = ExportVerifier::new(*expected);
    verifier.push(bytes)?;
    verifier.finish()
}

/// A streaming export verifier against the fingerprint of the server key the caller trusts:
/// the header's origin must have that fingerprint, every line must be canonical, entries
/// must form the chain from the header's `from` on ([`ChainVerifier`] rules: origin, seq,
/// prev links), every head line must be validly signed by that key and match the entry
/// before it, and the last line must be a head covering the last entry.
///
/// Feed the bytes with [`push`](Self::push) in chunks of any size, then call
/// [`finish`](Self::finish); how the bytes are split never changes the result. The first
/// error names the line and the first bad seq; once failed, the verifier keeps returning that
/// error.
#[derive(Debug)]
pub struct ExportVerifier {
    expected: Fingerprint,
    /// The line read so far (no newline yet), at most [`MAX_LINE`] bytes.
    partial: Vec<u8>,
    /// Complete lines already checked.
    lines: u64,
    /// `None` until the header line is checked.
    body: Option<Body>,
    failed: Option<ExportError>,
}

/// What the verifier knows once the header is checked.
#[derive(Debug)]
struct Body {
    origin: ServerKey,
    from: u64,
    chain: Chain,
    /// The seq of the entry on the previous line, if it was an entry line.
    after_entry: Option<u64>,
    entries: u64,
    last_head: Option<Head>,
}

impl ExportVerifier {
    /// A verifier expecting the feed of the key whose fingerprint is `expected`.
    pub fn new(expected: Fingerprint) -> Self {
        ExportVerifier {
            expected,
            partial: Vec::new(),
            lines: 0,
            body: None,
            failed: None,
        }
    }

    /// The 1-based number of the line being read (one past the last complete line).
    pub fn line(&self) -> u64 {
        self.lines.saturating_add(1)
    }

    /// Checks the next bytes of the export: every line they complete, and the length of the
    /// line they leave unfinished.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.push_lines(bytes);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// Ends the export: it must not end inside a line, must have a header, and every entry
    /// must be covered by a verified signed head. Returns what the export holds.
    pub fn finish(self) -> Result<ExportSummary, ExportError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if !self.partial.is_empty() {
            return Err(self.fault(ExportFault::Unterminated));
        }
        let line = self.line();
        let Some(body) = self.body else {
            return Err(ExportError {
                line,
                seq: None,
                fault: ExportFault::Empty,
            });
        };
        body.chain.finish_signed().map_err(|e| ExportError {
            line,
            seq: e.seq(),
            fault: ExportFault::Chain(e),
        })?;
        Ok(ExportSummary {
            origin: body.origin,
            from: body.from,
            entries: body.entries,
            head: body.last_head,
        })
    }

    fn push_lines(&mut self, mut bytes: &[u8]) -> Result<(), ExportError> {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (part, rest) = bytes.split_at(end);
            if self.partial.is_empty() {
                self.check_length(part.len())?;
                self.check_line(part)?;
            } else {
                self.check_length(self.partial.len() + part.len())?;
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(part);
                self.check_line(&whole)?;
                whole.clear();
                self.partial = whole;
            }
            self.lines += 1;
            bytes = rest.get(1..).unwrap_or_default();
        }
        self.check_length(self.partial.len() + bytes.len())?;
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    fn check_length(&self, len: usize) -> Result<(), ExportError> {
        if len > MAX_LINE {
            return Err(self.fault(ExportFault::TooLong));
        }
        Ok(())
    }

    /// `fault` on the current line, about the seq that line must hold (none for the header).
    fn fault(&self, fault: ExportFault) -> ExportError {
        ExportError {
            line: self.line(),
            seq: self.body.as_ref().map(|b| b.chain.next_seq()),
            fault,
        }
    }

    /// Checks one complete line (without its newline).
    fn check_line(&mut self, text: &[u8]) -> Result<(), ExportError> {
        let line = self.line();
        let Some(body) = &mut self.body else {
            let at = |fault| ExportError {
                line,
                seq: None,
                fault,
            };
            let (origin, from) = line::parse_header(text).map_err(at)?;
            let found = origin.fingerprint();
            if found != self.expected {
                return Err(at(ExportFault::WrongKey {
                    expected: self.expected,
                    found,
                }));
            }
            self.body = Some(Body {
                origin,
                from,
                chain: Chain::new(origin, from),
                after_entry: None,
                entries: 0,
                last_head: None,
            });
            return Ok(());
        };
        let at = |seq: Option<u64>| move |fault: ExportFault| ExportError { line, seq, fault };
        let next = body.chain.next_seq();
        match line::parse_line(text).map_err(at(Some(next)))? {
            Line::Entry { seq, encoding } => {
                if seq != next {
                    return Err(at(Some(next))(ExportFault::SeqField {
                        expected: next,
                        got: seq,
                    }));
                }
                body.chain
                    .push_encoded(&encoding)
                    .map_err(|e| at(e.seq().or(Some(next)))(ExportFault::Chain(e)))?;
                body.entries += 1;
                body.after_entry = Some(seq);
            }
            Line::Head(bytes) => {
                let Some(entry) = body.after_entry.take() else {
                    return Err(at(None)(ExportFault::HeadNotAfterEntry));
                };
                let covers = at(Some(entry));
                let signed = SignedHead::decode(&bytes)
                    .map_err(|e| covers(ExportFault::BadHeadEncoding(e)))?;
                if signed.head.seq != entry {
                    return Err(covers(ExportFault::HeadSeq {
                        head: signed.head.seq,
                        entry,
                    }));
                }
                body.chain
                    .push_head(&signed)
                    .map_err(|e| at(e.seq().or(Some(entry)))(ExportFault::Chain(e)))?;
                body.last_head = Some(signed.head);
            }
        }
        Ok(())
    }
}

/// The chain check: [`ChainVerifier`] from the first entry of the export on. For an export
/// starting at `from > 1` the verifier resumes after entry `from - 1` with the first entry's
/// own `prev` as the anchor, which the last signed head authenticates through the hash
/// links (`spec/ledger.md` §2).
#[derive(Debug)]
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
