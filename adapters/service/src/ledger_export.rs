//! Ledger exports to and from files: [`ExportWriter`] writes the lines the core's
//! [`ExportEncoder`] produces to any [`Write`], [`export_feed`] writes any held feed (the
//! own feed, or a replica with its origin's signed head, which anyone can then check
//! against the origin's fingerprint alone) and [`export_ledger`] the own one, and
//! [`verify_export`] streams a [`BufRead`] through the core's [`ExportVerifier`]. The format
//! and every rule of it live in [`vserv_core::ledger::export`]; this module only moves bytes.

use std::io::{BufRead, Write};

use vserv_core::ledger::export::ExportEncoder;
pub use vserv_core::ledger::export::{
    EXPORT_VERSION, EncodeError, ExportError, ExportFault, ExportSummary, ExportVerifier, MAX_LINE,
};
use vserv_core::ledger::{Entry, SignedHead};
use vserv_core::{Fingerprint, ServerKey};

use crate::ledger::{Feed, FeedError, Ledger};

/// Why [`verify_export`] refused an export: reading it failed, or it is not a valid export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Reading failed while the given 1-based line was being read.
    #[error("line {line}: read failed: {source}")]
    Read {
        /// The line being read.
        line: u64,
        /// The read error.
        source: std::io::Error,
    },
    /// The export is not valid (see [`ExportVerifier`]).
    #[error(transparent)]
    Invalid(#[from] ExportError),
}

/// Why [`ExportWriter`] or [`export_ledger`] could not write an export. What was written so
/// far is not a valid export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Writing failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// A line broke the format's order rules.
    #[error(transparent)]
    Encode(#[from] EncodeError),
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

/// Writes an export to `W`, one line at a time, with the order rules of [`ExportEncoder`]
/// (not its cryptography: a tampered feed is written as it is and refused by
/// [`verify_export`]).
#[derive(Debug)]
pub struct ExportWriter<W: Write> {
    out: W,
    encoder: ExportEncoder,
    /// The line being written, reused.
    line: Vec<u8>,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export of the feed of `origin` whose first entry will be `from`, writing the
    /// header line.
    pub fn new(mut out: W, origin: ServerKey, from: u64) -> Result<Self, WriteError> {
        let mut line = Vec::new();
        let encoder = ExportEncoder::new(origin, from, &mut line)?;
        out.write_all(&line)?;
        Ok(ExportWriter { out, encoder, line })
    }

    /// Writes the next entry's line. It must be of this feed and have the next seq.
    pub fn entry(&mut self, entry: &Entry) -> Result<(), WriteError> {
        self.line.clear();
        self.encoder.entry(entry, &mut self.line)?;
        self.out.write_all(&self.line)?;
        Ok(())
    }

    /// Writes a signed head's line. It must cover the entry written just before it.
    pub fn head(&mut self, signed: &SignedHead) -> Result<(), WriteError> {
        self.line.clear();
        self.encoder.head(signed, &mut self.line)?;
        self.out.write_all(&self.line)?;
        Ok(())
    }

    /// How many entries were written.
    pub fn entries(&self) -> u64 {
        self.encoder.entries()
    }

    /// Ends the export: an export with entries must end with a head line. Flushes and
    /// returns the output.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.encoder.finish()?;
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
    export_as(&ledger.feed(), origin, from, out, progress)
}

/// Exports any held feed, the own one or a replica, as [`export_ledger`] does: the header
/// names the feed's origin, the entries are the stored ones from `from`, and the last line
/// is the feed's stored signed head, made by the origin. So an export of a replica verifies
/// ([`verify_export`]) against the origin's fingerprint alone, whoever wrote it.
pub fn export_feed<W: Write>(
    feed: &Feed,
    from: u64,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, WriteError> {
    export_as(feed, feed.origin(), from, out, progress)
}

/// Exports `feed` with `origin` in the header.
fn export_as<W: Write>(
    feed: &Feed,
    origin: ServerKey,
    from: u64,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, WriteError> {
    let mut writer = ExportWriter::new(out, origin, from)?;
    if let Some(signed) = feed.head()? {
        for seq in from..=signed.head.seq {
            let entry = feed.by_seq(seq)?.ok_or(WriteError::MissingEntry { seq })?;
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

/// Verifies an export read from `reader` against the fingerprint of the server key the
/// caller trusts, with every rule of [`ExportVerifier`], holding at most one line of
/// [`MAX_LINE`] bytes besides the reader's own buffer. The error names the line and the first
/// bad seq.
pub fn verify_export<R: BufRead>(
    mut reader: R,
    expected: &Fingerprint,
) -> Result<ExportSummary, VerifyError> {
    let mut verifier = ExportVerifier::new(*expected);
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(VerifyError::Read {
                    line: verifier.line(),
                    source,
                });
            }
        };
        if chunk.is_empty() {
            break;
        }
        verifier.push(chunk)?;
        let n = chunk.len();
        reader.consume(n);
    }
    Ok(verifier.finish()?)
}

#[cfg(test)]
mod tests {
    //! The file side: a stored feed exported and read back through readers of any buffer
    //! size. The format's own rules are tested in `core/tests/ledger_export.rs`.

    use std::io::BufReader;
    use std::sync::Arc;

    use rand::SeedableRng;
    use vserv_core::ServerIdentity;
    use vserv_core::ledger::fields_to_body;
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
        assert_eq!(seen, (from..from + n).collect::<Vec<_>>());
        out
    }

    /// Verifies through readers of several buffer sizes; they all agree.
    fn verify(bytes: &[u8], id: &ServerIdentity) -> Result<ExportSummary, String> {
        let key = id.public_key().fingerprint();
        let whole = verify_export(bytes, &key).map_err(|e| e.to_string());
        for capacity in [1, 3, 64, 8192] {
            let reader = BufReader::with_capacity(capacity, bytes);
            let result = verify_export(reader, &key).map_err(|e| e.to_string());
            assert_eq!(result, whole, "capacity {capacity}");
        }
        whole
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
        let joined = lines.join("\n") + "\n";
        let err =
            verify_export(joined.as_bytes(), &id.public_key().fingerprint()).expect_err("refused");
        let VerifyError::Invalid(err) = err else {
            panic!("not a format error: {err}");
        };
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
    fn writer_reports_the_order_rules_and_unsigned_ends() {
        let (ledger, id) = filled(3);
        let e = |seq| ledger.by_seq(seq).expect("read").expect("stored");
        let signed = ledger.head().expect("head").expect("some");
        let mut writer = ExportWriter::new(Vec::new(), id.public_key(), 1).expect("header");
        assert!(matches!(
            writer.entry(&e(2)),
            Err(WriteError::Encode(EncodeError::OutOfOrder {
                expected: 1,
                got: 2
            }))
        ));
        writer.entry(&e(1)).expect("entry 1");
        assert!(matches!(
            writer.head(&signed),
            Err(WriteError::Encode(EncodeError::HeadMismatch { seq: 3 }))
        ));
        assert!(matches!(
            writer.finish(),
            Err(WriteError::Encode(EncodeError::Unsigned { seq: 1 }))
        ));
        assert!(matches!(
            ExportWriter::new(Vec::new(), id.public_key(), 0),
            Err(WriteError::Encode(EncodeError::ZeroFrom))
        ));
    }

    #[test]
    fn a_replica_exports_as_its_origins_feed_and_verifies_against_the_origin_alone() {
        // The feed of identity 7, replicated into the store of the server with identity 8.
        let (ledger, id) = filled(9);
        let origin = id.public_key();
        let source = crate::replicas::Replicas::new(ledger.store.clone(), origin);
        let holder = identity(8);
        let replicas =
            crate::replicas::Replicas::new(Arc::new(MemoryStore::new()), holder.public_key());
        let mut from = 1;
        while let Some(segment) = source.read_segment(&origin, from, 1).expect("read") {
            from = segment.head.head.seq + 1;
            replicas
                .persist(&origin, &segment.entries, &segment.head)
                .expect("persist");
        }
        let copy = replicas.feed(origin).unwrap();
        for start in [1, 4] {
            let mut out = Vec::new();
            let n = export_feed(&copy, start, &mut out, &mut |_| {}).expect("export");
            assert_eq!(n, 10 - start);
            // The same bytes as the origin's own export.
            assert_eq!(out, export(&ledger, &id, start));
            let summary = verify(&out, &id).expect("verifies against the origin");
            assert_eq!((summary.from, summary.entries), (start, 10 - start));
            assert_eq!(
                summary.head,
                Some(ledger.head().expect("head").expect("some").head)
            );
            // Not against the holder's key: it did not make this feed.
            assert!(verify_export(out.as_slice(), &holder.public_key().fingerprint()).is_err());
        }
        // A replica not held exports as an empty feed.
        let mut out = Vec::new();
        let other = identity(9).public_key();
        assert_eq!(
            export_feed(&replicas.feed(other).unwrap(), 1, &mut out, &mut |_| {}).expect("export"),
            0
        );
    }

    /// A reader that yields some bytes and then fails.
    struct Failing<'a>(&'a [u8]);

    impl std::io::Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_names_the_line_being_read() {
        let (ledger, id) = filled(2);
        let bytes = export(&ledger, &id, 1);
        let second = bytes.iter().position(|&b| b == b'\n').expect("header") + 1;
        let reader = BufReader::new(Failing(&bytes[..second + 3]));
        let err = verify_export(reader, &id.public_key().fingerprint()).expect_err("fails");
        assert!(matches!(err, VerifyError::Read { line: 2, .. }), "{err}");
        assert_eq!(err.to_string(), "line 2: read failed: disk on fire");
    }
}
