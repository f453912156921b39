//! The ledger export format and its streaming verifier (`vserv_core::ledger::export`): round
//! trips, every single-byte change and line operation refused with the right line and seq,
//! chunking never changing a verdict, and no panic on arbitrary bytes.

use proptest::prelude::*;
use vserv_core::ServerIdentity;
use vserv_core::ledger::export::{
    EncodeError, ExportEncoder, ExportError, ExportFault, ExportSummary, ExportVerifier, MAX_LINE,
    verify_export,
};
use vserv_core::ledger::{Entry, EntryFields, Head, LedgerError, SignedHead, fields_to_body};

fn identity(n: u8) -> ServerIdentity {
    let mut secret = [0x22u8; 32];
    secret[31] = n;
    ServerIdentity::from_secret_bytes(&secret).expect("valid scalar")
}

/// A feed: its key, its entries (seq 1..), and a signed head over the last entry.
struct Feed {
    id: ServerIdentity,
    entries: Vec<Entry>,
    head: Option<SignedHead>,
}

impl Feed {
    fn entry(&self, seq: u64) -> &Entry {
        &self.entries[usize::try_from(seq - 1).expect("small")]
    }
}

/// Appends entries with these (kind, record id, body, timestamp) choices to a new feed of
/// `id`, signing the head over the last one.
fn build(id: ServerIdentity, specs: &[(String, Vec<u8>, Vec<u8>, u64)]) -> Feed {
    let origin = id.public_key();
    let mut head = Head::empty(origin);
    let mut entries = Vec::new();
    for (kind, record_id, body, timestamp) in specs {
        let entry = Entry::new(EntryFields {
            origin,
            seq: head.seq + 1,
            prev: head.hash,
            timestamp: *timestamp,
            author: "alice".into(),
            kind: kind.clone(),
            record_id: record_id.clone(),
            body: body.clone(),
        })
        .expect("valid fields");
        head = Head::of(&entry);
        entries.push(entry);
    }
    let head = (!entries.is_empty()).then(|| SignedHead::sign(&id, head));
    Feed { id, entries, head }
}

/// A feed of `n` entries with varied bodies.
fn filled(n: u64) -> Feed {
    let specs: Vec<_> = (1..=n)
        .map(|i| {
            let body = fields_to_body(&[("n", i.to_string()), ("note", "x=y".to_owned())])
                .expect("valid fields");
            (
                "note".to_owned(),
                format!("r{i}").into_bytes(),
                body,
                1000 * i,
            )
        })
        .collect();
    build(identity(7), &specs)
}

/// The export of `feed` from seq `from`, with one head line after the last entry.
fn export(feed: &Feed, from: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = ExportEncoder::new(feed.id.public_key(), from, &mut out).expect("header");
    for entry in feed.entries.iter().filter(|e| e.seq() >= from) {
        encoder.entry(entry, &mut out).expect("entry");
    }
    if encoder.entries() > 0
        && let Some(head) = &feed.head
    {
        encoder.head(head, &mut out).expect("head");
    }
    let n = encoder.finish().expect("finish");
    assert_eq!(
        n,
        feed.entries.len() as u64 + 1 - from.min(feed.entries.len() as u64 + 1)
    );
    out
}

/// Verifies in one piece, and checks that every chunking of the bytes gives the same verdict.
fn verify(bytes: &[u8], id: &ServerIdentity) -> Result<ExportSummary, ExportError> {
    let whole = verify_export(bytes, &id.public_key().fingerprint());
    for split in [1, 2, 7, 64, 1000] {
        assert_eq!(chunked(bytes, id, split), whole, "split {split}");
    }
    whole
}

/// Verifies by pushing `split`-byte chunks.
fn chunked(bytes: &[u8], id: &ServerIdentity, split: usize) -> Result<ExportSummary, ExportError> {
    let mut verifier = ExportVerifier::new(id.public_key().fingerprint());
    for chunk in bytes.chunks(split) {
        verifier.push(chunk)?;
    }
    verifier.finish()
}

#[test]
fn round_trip() {
    let feed = filled(5);
    let bytes = export(&feed, 1);
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(text.starts_with("{\"vserv_export\":1,\"origin\":\""));
    let summary = verify(&bytes, &feed.id).expect("verifies");
    assert_eq!(summary.entries, 5);
    assert_eq!(summary.from, 1);
    assert_eq!(summary.origin, feed.id.public_key());
    assert_eq!(summary.head, feed.head.map(|h| h.head));
    // Each entry line holds exactly the entry.
    for (i, line) in text.lines().skip(1).take(5).enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(
            line,
            format!(
                "{{\"seq\":{seq},\"entry\":\"{}\"}}",
                hex::encode(feed.entry(seq).to_bytes())
            )
        );
    }
    let head = feed.head.expect("signed");
    assert_eq!(
        text.lines().last(),
        Some(format!("{{\"head\":\"{}\"}}", hex::encode(head.to_bytes())).as_str())
    );
}

#[test]
fn partial_export_round_trips_and_is_anchored() {
    let feed = filled(5);
    let bytes = export(&feed, 3);
    let summary = verify(&bytes, &feed.id).expect("verifies");
    assert_eq!((summary.from, summary.entries), (3, 3));
    // Dropping the first entry line breaks the header's from.
    let text = String::from_utf8(bytes).expect("utf-8");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    let err = verify((lines.join("\n") + "\n").as_bytes(), &feed.id).expect_err("refused");
    assert_eq!((err.line, err.seq), (2, Some(3)), "{err}");
}

#[test]
fn empty_feed_and_from_past_the_head_are_header_only() {
    let feed = filled(0);
    let bytes = export(&feed, 1);
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
    let summary = verify(&bytes, &feed.id).expect("verifies");
    assert_eq!((summary.entries, summary.head), (0, None));
    let feed = filled(2);
    let summary = verify(&export(&feed, 3), &feed.id).expect("verifies");
    assert_eq!((summary.from, summary.entries), (3, 0));
}

#[test]
fn wrong_key_is_refused_at_the_header() {
    let feed = filled(2);
    let bytes = export(&feed, 1);
    let err = verify(&bytes, &identity(8)).expect_err("refused");
    assert_eq!(err.line, 1);
    assert!(matches!(err.fault, ExportFault::WrongKey { .. }), "{err}");
}

#[cfg(not(feature = "fuzzing"))] // the fuzzing build skips signature checks
#[test]
fn forged_head_signature_is_refused() {
    let feed = filled(3);
    let signed = feed.head.expect("signed");
    let mut forged = signed.to_bytes();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut out = Vec::new();
    let mut encoder = ExportEncoder::new(feed.id.public_key(), 1, &mut out).expect("header");
    for entry in &feed.entries {
        encoder.entry(entry, &mut out).expect("entry");
    }
    assert_eq!(
        encoder.finish(),
        Err(EncodeError::Unsigned { seq: 3 }),
        "an export must end with a head"
    );
    let forged_line = format!("{{\"head\":\"{}\"}}\n", hex::encode(forged));
    out.extend_from_slice(forged_line.as_bytes());
    let err = verify(&out, &feed.id).expect_err("refused");
    assert_eq!((err.line, err.seq), (5, Some(3)), "{err}");
    assert!(
        matches!(
            err.fault,
            ExportFault::Chain(LedgerError::BadSignature { .. }) | ExportFault::BadHeadEncoding(_)
        ),
        "{err}"
    );
}

#[test]
fn encoder_enforces_the_order_rules_and_appends_nothing_on_error() {
    let feed = filled(3);
    let signed = feed.head.expect("signed");
    let mut out = Vec::new();
    let mut encoder = ExportEncoder::new(feed.id.public_key(), 1, &mut out).expect("header");
    let header = out.len();
    assert_eq!(
        encoder.entry(feed.entry(2), &mut out),
        Err(EncodeError::OutOfOrder {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(out.len(), header);
    encoder.entry(feed.entry(1), &mut out).expect("entry 1");
    let one = out.len();
    assert_eq!(
        encoder.head(&signed, &mut out),
        Err(EncodeError::HeadMismatch { seq: 3 })
    );
    assert_eq!(out.len(), one);
    assert!(matches!(
        ExportEncoder::new(feed.id.public_key(), 0, &mut Vec::new()),
        Err(EncodeError::ZeroFrom)
    ));
    let mut other =
        ExportEncoder::new(identity(8).public_key(), 1, &mut Vec::new()).expect("header");
    assert_eq!(
        other.entry(feed.entry(1), &mut Vec::new()),
        Err(EncodeError::WrongOrigin { seq: 1 })
    );
}

#[test]
fn an_entry_of_another_feed_with_its_key_in_the_header_is_refused() {
    // A feed whose entries name another origin than the header.
    let feed = filled(1);
    let mut fields: EntryFields = feed.entry(1).clone().into_fields();
    fields.origin = identity(8).public_key();
    let foreign = Entry::new(fields).expect("valid");
    let text = format!(
        "{{\"vserv_export\":1,\"origin\":\"{}\",\"from\":1}}\n{{\"seq\":1,\"entry\":\"{}\"}}\n",
        hex::encode(feed.id.public_key().as_bytes()),
        hex::encode(foreign.to_bytes())
    );
    let err = verify(text.as_bytes(), &feed.id).expect_err("refused");
    assert_eq!((err.line, err.seq), (2, Some(1)), "{err}");
    assert!(matches!(
        err.fault,
        ExportFault::Chain(LedgerError::WrongOrigin { seq: 1 })
    ));
}

#[test]
fn over_long_and_unterminated_lines_are_refused() {
    let feed = filled(1);
    let bytes = export(&feed, 1);
    let header_end = bytes.iter().position(|&b| b == b'\n').expect("header") + 1;
    let mut long = bytes[..header_end].to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
    long.push(b'\n');
    let err = verify(&long, &feed.id).expect_err("refused");
    assert!(matches!(err.fault, ExportFault::TooLong), "{err}");
    assert_eq!((err.line, err.seq), (2, Some(1)), "{err}");
    // Refused as soon as the line outgrows the limit, without its newline.
    let mut verifier = ExportVerifier::new(feed.id.public_key().fingerprint());
    verifier
        .push(&long[..header_end + MAX_LINE])
        .expect("not yet too long");
    let err = verifier.push(b"a").expect_err("too long");
    assert!(matches!(err.fault, ExportFault::TooLong), "{err}");
    assert_eq!(
        verifier.push(b"\n"),
        Err(err.clone()),
        "a failed verifier stays failed"
    );
    assert_eq!(verifier.finish(), Err(err));
    let cut = &bytes[..bytes.len() - 1];
    let err = verify(cut, &feed.id).expect_err("refused");
    assert!(matches!(err.fault, ExportFault::Unterminated), "{err}");
    assert!(matches!(
        verify(b"", &feed.id).expect_err("refused").fault,
        ExportFault::Empty
    ));
}

/// A small feed's export, from seq 1 or later, shared by the property tests.
fn sample(from: u64) -> (Vec<u8>, ServerIdentity) {
    let feed = filled(4);
    (export(&feed, from), feed.id)
}

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// What a generated entry holds besides what the chain decides.
fn spec() -> impl Strategy<Value = (String, Vec<u8>, Vec<u8>, u64)> {
    (
        "[a-z0-9][a-z0-9._-]{0,63}",
        proptest::collection::vec(any::<u8>(), 1..=64),
        proptest::collection::vec(any::<u8>(), 0..=300),
        any::<u64>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[cfg(not(feature = "fuzzing"))] // the fuzzing build skips signature checks
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

    /// Any feed, exported from any seq with signed heads after any of its entries, verifies
    /// to exactly what was encoded, however the bytes are chunked.
    #[test]
    fn any_encoded_export_round_trips(
        specs in proptest::collection::vec(spec(), 0..6),
        from_index in any::<prop::sample::Index>(),
        heads in proptest::collection::vec(any::<bool>(), 6),
        split in 1usize..200,
    ) {
        let id = identity(9);
        let origin = id.public_key();
        let n = specs.len() as u64;
        let from = from_index.index(specs.len() + 1) as u64 + 1;
        let feed = build(identity(9), &specs);
        let mut out = Vec::new();
        let mut encoder = ExportEncoder::new(origin, from, &mut out).expect("header");
        let mut last_head = None;
        for entry in feed.entries.iter().filter(|e| e.seq() >= from) {
            encoder.entry(entry, &mut out).expect("entry");
            let index = usize::try_from(entry.seq() - 1).expect("small");
            if heads[index] || entry.seq() == n {
                let signed = SignedHead::sign(&id, Head::of(entry));
                encoder.head(&signed, &mut out).expect("head");
                last_head = Some(signed.head);
            }
        }
        let entries = encoder.finish().expect("finish");
        prop_assert_eq!(entries, n + 1 - from);
        let expected = ExportSummary { origin, from, entries, head: last_head };
        prop_assert_eq!(verify_export(&out, &origin.fingerprint()), Ok(expected.clone()));
        prop_assert_eq!(chunked(&out, &id, split), Ok(expected));
    }

    /// Arbitrary bytes, alone or after a valid header (so they reach the entry and head
    /// lines), never panic the verifier, and chunking never changes its verdict.
    #[test]
    fn arbitrary_bytes_never_panic_and_chunking_agrees(
        with_header in any::<bool>(),
        from in 1u64..4,
        tail in proptest::collection::vec(
            prop_oneof![any::<u8>(), Just(b'\n'), Just(b'"'), Just(b'{'), Just(b'}')],
            0..600,
        ),
        split in 1usize..100,
    ) {
        let id = identity(7);
        let mut bytes = Vec::new();
        if with_header {
            ExportEncoder::new(id.public_key(), from, &mut bytes).expect("header");
        }
        bytes.extend_from_slice(&tail);
        let whole = verify_export(&bytes, &id.public_key().fingerprint());
        prop_assert_eq!(chunked(&bytes, &id, split), whole);
    }

    /// Valid exports with a spliced-in run of arbitrary bytes: never a panic, never accepted
    /// unless the bytes spliced in were none.
    #[test]
    fn spliced_exports_never_panic(
        partial in any::<bool>(),
        at in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 1..64),
        split in 1usize..100,
    ) {
        let (mut bytes, id) = sample(if partial { 2 } else { 1 });
        let i = at.index(bytes.len() + 1);
        bytes.splice(i..i, junk);
        let whole = verify_export(&bytes, &id.public_key().fingerprint());
        prop_assert!(whole.is_err());
        prop_assert_eq!(chunked(&bytes, &id, split), whole);
    }
}

/// Every position of small exports, changed to bytes that are likely to slip through a
/// lax parser: a flipped bit, the other letter case, digits, whitespace, a newline.
#[cfg(not(feature = "fuzzing"))] // the fuzzing build skips signature checks
#[test]
fn every_position_changed_is_refused() {
    for from in [1, 2] {
        let feed = filled(2);
        let bytes = export(&feed, from);
        verify(&bytes, &feed.id).expect("the original verifies");
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
                    verify_export(&changed, &feed.id.public_key().fingerprint()).is_err(),
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
        let feed = filled(2);
        let lines = lines_of(&export(&feed, from));
        let n = lines.len();
        for i in 0..n {
            let mut dropped = lines.clone();
            dropped.remove(i);
            assert!(verify(&dropped.concat(), &feed.id).is_err(), "drop {i}");
            for j in 0..=n {
                let mut duplicated = lines.clone();
                duplicated.insert(j, lines[i].clone());
                assert!(
                    verify(&duplicated.concat(), &feed.id).is_err(),
                    "dup {i} at {j}"
                );
                if j < n && j != i {
                    let mut swapped = lines.clone();
                    swapped.swap(i, j);
                    assert!(verify(&swapped.concat(), &feed.id).is_err(), "swap {i} {j}");
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
