//! The ledger's pure core: entry codec and hash, signed heads, the accept rule, streaming
//! chain verification (every single mutation of an exported chain is caught and named), and
//! the field form.

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use vserv_core::ServerIdentity;
use vserv_core::ledger::{
    ChainVerifier, Entry, EntryFields, Head, LedgerError, MAX_BODY, SignedHead, ZERO_HASH,
    body_to_fields, check_append, check_kind, fields_to_body, hash_encoded,
};

fn identity(n: u8) -> ServerIdentity {
    let mut secret = [0x11u8; 32];
    secret[31] = n;
    ServerIdentity::from_secret_bytes(&secret).expect("valid scalar")
}

/// What a test chooses for one entry; origin, seq and prev come from the chain.
#[derive(Debug, Clone)]
struct Spec {
    timestamp: u64,
    author: String,
    kind: String,
    record_id: Vec<u8>,
    body: Vec<u8>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<u64>(),
        "[!-~]{1,32}",
        "[a-z0-9][a-z0-9._-]{0,63}",
        proptest::collection::vec(any::<u8>(), 1..=64),
        proptest::collection::vec(any::<u8>(), 0..=200),
    )
        .prop_map(|(timestamp, author, kind, record_id, body)| Spec {
            timestamp,
            author,
            kind,
            record_id,
            body,
        })
}

fn simple_spec(i: u64) -> Spec {
    Spec {
        timestamp: 1_700_000_000_000 + i,
        author: "alice".into(),
        kind: "note.v1".into(),
        record_id: format!("rec-{i}").into_bytes(),
        body: fields_to_body(&[("n", i.to_string().as_str()), ("text", "hello")]).expect("ok"),
    }
}

/// Appends every spec through `check_append`; returns the encodings and the signed head.
fn build_chain(id: &ServerIdentity, specs: &[Spec]) -> (Vec<Vec<u8>>, SignedHead) {
    let origin = id.public_key();
    let mut head = Head::empty(origin);
    let mut out = Vec::new();
    for s in specs {
        let entry = Entry::new(EntryFields {
            origin,
            seq: head.seq + 1,
            prev: head.hash,
            timestamp: s.timestamp,
            author: s.author.clone(),
            kind: s.kind.clone(),
            record_id: s.record_id.clone(),
            body: s.body.clone(),
        })
        .expect("valid fields");
        check_append(Some(&head), &entry).expect("accept rule");
        if head.seq == 0 {
            check_append(None, &entry).expect("accept rule on empty feed");
        }
        head = Head::of(&entry);
        out.push(entry.to_bytes());
    }
    (out, SignedHead::sign(id, head))
}

/// The offline check of an export: entries in order, then the signed head, all signed.
fn verify_export(
    id: &ServerIdentity,
    entries: &[Vec<u8>],
    head: &SignedHead,
) -> Result<Head, LedgerError> {
    let mut v = ChainVerifier::new(id.public_key());
    for e in entries {
        v.push_encoded(e)?;
    }
    v.push_head(head)?;
    v.finish_signed()
}

/// The same through decoded entries and `push_entry`.
fn verify_decoded(
    id: &ServerIdentity,
    entries: &[Vec<u8>],
    head: &SignedHead,
) -> Result<Head, LedgerError> {
    let mut v = ChainVerifier::new(id.public_key());
    for (i, e) in entries.iter().enumerate() {
        let entry = Entry::decode(e).map_err(|error| LedgerError::Undecodable {
            seq: i as u64 + 1,
            error: Box::new(error),
        })?;
        v.push_entry(&entry)?;
    }
    v.push_head(head)?;
    v.finish_signed()
}

/// After a change to entry `m` (1-based), the first bad seq is `m`, or `m + 1` when only the
/// link from the next entry can show it (the next entry's prev no longer matches).
fn names_entry(err: &LedgerError, m: u64) -> bool {
    err.seq() == Some(m) || *err == LedgerError::BadLink { seq: m + 1 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_sequence_of_appends_verifies(specs in proptest::collection::vec(spec(), 1..12)) {
        let id = identity(1);
        let (entries, head) = build_chain(&id, &specs);
        let got = verify_export(&id, &entries, &head);
        prop_assert_eq!(got, Ok(head.head));
        prop_assert_eq!(verify_decoded(&id, &entries, &head), Ok(head.head));
        // Every entry round-trips and its hash is the documented one.
        for e in &entries {
            let entry = Entry::decode(e).expect("decodes");
            prop_assert_eq!(&entry.to_bytes(), e);
            prop_assert_eq!(entry.encoded_len(), e.len());
            let mut h = Sha256::new();
            h.update(b"vserv/1 ledger entry\0");
            h.update(e);
            let want: [u8; 32] = h.finalize().into();
            prop_assert_eq!(entry.hash(), want);
            prop_assert_eq!(hash_encoded(e), want);
        }
    }

    #[test]
    fn a_bit_flip_in_any_entry_is_caught_and_named(
        specs in proptest::collection::vec(spec(), 1..8),
        which in any::<prop::sample::Index>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let id = identity(2);
        let (mut entries, head) = build_chain(&id, &specs);
        let i = which.index(entries.len());
        let b = bit.index(entries[i].len() * 8);
        entries[i][b / 8] ^= 1 << (b % 8);
        let m = i as u64 + 1;
        for result in [verify_export(&id, &entries, &head), verify_decoded(&id, &entries, &head)] {
            let err = result.expect_err("a flipped bit must fail");
            prop_assert!(names_entry(&err, m), "flip in entry {m} byte {}: {err:?}", b / 8);
            if (42..74).contains(&(b / 8)) {
                prop_assert_eq!(&err, &LedgerError::BadLink { seq: m });
            }
        }
    }

    #[test]
    fn reorder_drop_duplicate_are_caught_and_named(
        specs in proptest::collection::vec(spec(), 2..8),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let id = identity(3);
        let (entries, head) = build_chain(&id, &specs);
        let n = entries.len();
        let (i, j) = (a.index(n), b.index(n));
        // Reorder: swap two different positions.
        if i != j {
            let (lo, hi) = (i.min(j), i.max(j));
            let mut swapped = entries.clone();
            swapped.swap(lo, hi);
            let err = verify_export(&id, &swapped, &head).expect_err("swap must fail");
            prop_assert_eq!(err, LedgerError::Gap { expected: lo as u64 + 1, got: hi as u64 + 1 });
        }
        // Drop entry i.
        let mut dropped = entries.clone();
        dropped.remove(i);
        let err = verify_export(&id, &dropped, &head).expect_err("drop must fail");
        if i + 1 == n {
            prop_assert_eq!(err, LedgerError::MissingEntry { seq: n as u64 });
        } else {
            prop_assert_eq!(err, LedgerError::Gap { expected: i as u64 + 1, got: i as u64 + 2 });
        }
        // Duplicate entry i right after itself.
        let mut dup = entries.clone();
        dup.insert(i + 1, entries[i].clone());
        let err = verify_export(&id, &dup, &head).expect_err("duplicate must fail");
        prop_assert_eq!(err, LedgerError::Gap { expected: i as u64 + 2, got: i as u64 + 1 });
    }

    #[test]
    #[cfg(not(feature = "fuzzing"))] // signature checks need the real provider
    fn a_changed_head_is_caught(
        specs in proptest::collection::vec(spec(), 1..6),
        bit in 0..vserv_core::ledger::SIGNED_HEAD_LEN * 8,
    ) {
        let id = identity(4);
        let (entries, head) = build_chain(&id, &specs);
        let mut bytes = head.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        match SignedHead::decode(&bytes) {
            Err(_) => {} // refused before verification
            Ok(changed) => {
                let err = verify_export(&id, &entries, &changed).expect_err("changed head");
                prop_assert_eq!(err.seq(), Some(changed.head.seq), "{:?}", err);
                prop_assert!(matches!(
                    err,
                    LedgerError::WrongOrigin { .. } | LedgerError::BadSignature { .. }
                ), "{:?}", err);
            }
        }
    }

    #[test]
    fn entry_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(e) = Entry::decode(&bytes) {
            prop_assert_eq!(&e.to_bytes(), &bytes);
        }
        if let Ok(h) = SignedHead::decode(&bytes) {
            prop_assert_eq!(&h.to_bytes()[..], &bytes[..]);
        }
        let mut v = ChainVerifier::new(identity(5).public_key());
        let _ = v.push_encoded(&bytes);
        let _ = body_to_fields(&bytes);
    }

    #[test]
    fn entry_decode_mutated_is_exact(s in spec(), pos in any::<prop::sample::Index>(), val in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let id = identity(6);
        let (entries, _) = build_chain(&id, &[s]);
        let mut bytes = entries[0].clone();
        let p = pos.index(bytes.len());
        bytes[p] = val;
        if let Ok(e) = Entry::decode(&bytes) {
            prop_assert_eq!(e.to_bytes(), bytes.clone());
        }
        bytes.truncate(cut.index(bytes.len()));
        prop_assert!(Entry::decode(&bytes).is_err(), "a strict prefix never decodes");
    }

    #[test]
    fn decode_from_the_right_origin_equals_decode(s in spec(), pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let id = identity(6);
        let (entries, _) = build_chain(&id, &[s]);
        let mut bytes = entries[0].clone();
        let p = pos.index(bytes.len());
        bytes[p] = val;
        let origin = id.public_key();
        match (Entry::decode(&bytes), Entry::decode_from(&bytes, &origin)) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            // Another valid origin: only `decode_from` refuses it.
            (Ok(a), Err(LedgerError::WrongOrigin { seq })) => {
                prop_assert_ne!(a.origin(), origin);
                prop_assert_eq!(seq, a.seq());
            }
            // An invalid origin point is never the expected key.
            (Err(LedgerError::BadOrigin), Err(LedgerError::WrongOrigin { .. })) => {}
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "decode {:?} but decode_from {:?}", a, b),
        }
    }

    #[test]
    fn field_form_round_trips(
        map in proptest::collection::btree_map("[a-z0-9_]{1,32}", "[a-zA-Z0-9 =\t.,\u{e9}\u{20ac}]{0,40}", 0..10),
    ) {
        let fields: Vec<(String, String)> = map.into_iter().rev().collect();
        let body = fields_to_body(&fields).expect("valid fields");
        prop_assert_eq!(body_to_fields(&body).expect("parses"), fields.clone());
        prop_assert_eq!(fields_to_body(&body_to_fields(&body).expect("parses")).expect("ok"), body);
    }
}

#[test]
fn every_bit_flip_of_a_small_chain_is_named() {
    let id = identity(7);
    let specs: Vec<Spec> = (1..=3).map(simple_spec).collect();
    let (entries, head) = build_chain(&id, &specs);
    assert_eq!(verify_export(&id, &entries, &head), Ok(head.head));
    for i in 0..entries.len() {
        for b in 0..entries[i].len() * 8 {
            let mut bad = entries.clone();
            bad[i][b / 8] ^= 1 << (b % 8);
            let err = verify_export(&id, &bad, &head).expect_err("flip must fail");
            assert!(
                names_entry(&err, i as u64 + 1),
                "entry {i} bit {b}: {err:?}"
            );
        }
    }
}

#[test]
fn encoding_layout_matches_the_spec() {
    let id = identity(8);
    let origin = id.public_key();
    let entry = Entry::new(EntryFields {
        origin,
        seq: 0x0102_0304_0506_0708,
        prev: [0xAA; 32],
        timestamp: 0x1122_3344_5566_7788,
        author: "bob".into(),
        kind: "k".into(),
        record_id: vec![9, 9],
        body: b"xyz".to_vec(),
    })
    .expect("valid");
    let b = entry.to_bytes();
    assert_eq!(b[0], 1);
    assert_eq!(&b[1..34], origin.as_bytes());
    assert_eq!(b[34..42], 0x0102_0304_0506_0708u64.to_be_bytes());
    assert_eq!(b[42..74], [0xAA; 32]);
    assert_eq!(b[74..82], 0x1122_3344_5566_7788u64.to_be_bytes());
    assert_eq!(&b[82..], b"\x03bob\x01k\x02\x09\x09\x00\x03xyz");
    // Trailing byte, other version, shorter length prefix: refused.
    let mut t = b.clone();
    t.push(0);
    assert_eq!(
        Entry::decode(&t),
        Err(LedgerError::Malformed("ledger entry"))
    );
    let mut v = b.clone();
    v[0] = 2;
    assert_eq!(Entry::decode(&v), Err(LedgerError::UnsupportedVersion(2)));
    let mut z = b.clone();
    z[34..42].fill(0);
    assert_eq!(Entry::decode(&z), Err(LedgerError::ZeroSeq));
    let mut o = b.clone();
    o[1] = 0x05;
    assert_eq!(Entry::decode(&o), Err(LedgerError::BadOrigin));
    assert_eq!(Entry::decode(&b), Ok(entry));
}

/// Decoding remembers the last valid origin key of its thread: an origin one byte away from
/// it must still be checked as a point (and refused when it is none), and entries of other
/// feeds, and signed heads, decode as before.
#[test]
fn decoding_checks_every_new_origin_after_a_known_one() {
    let entry_of = |origin| {
        Entry::new(EntryFields {
            origin,
            seq: 1,
            prev: ZERO_HASH,
            timestamp: 7,
            author: "bob".into(),
            kind: "k".into(),
            record_id: vec![1],
            body: b"x".to_vec(),
        })
        .expect("valid")
    };
    let (a, b) = (identity(20), identity(21));
    let (ea, eb) = (entry_of(a.public_key()), entry_of(b.public_key()));
    let good = ea.to_bytes();
    assert_eq!(Entry::decode(&good), Ok(ea.clone()));
    // Some last byte of the x coordinate gives no point on the curve.
    let refused = (0..=255u8).find(|&last| {
        let mut forged = good.clone();
        forged[33] = last;
        Entry::decode(&forged) == Err(LedgerError::BadOrigin)
    });
    assert!(refused.is_some(), "some x is not on the curve");
    assert_eq!(Entry::decode(&good), Ok(ea.clone()));
    assert_eq!(Entry::decode(&eb.to_bytes()), Ok(eb));
    assert_eq!(Entry::decode(&good), Ok(ea));
    let head = SignedHead::sign(&b, Head::of(&entry_of(b.public_key())));
    let mut bytes = head.to_bytes().to_vec();
    assert_eq!(SignedHead::decode(&bytes), Ok(head));
    bytes[1..34].copy_from_slice(&good[1..34]);
    bytes[33] = refused.unwrap_or(0);
    assert_eq!(SignedHead::decode(&bytes), Err(LedgerError::BadOrigin));
}

#[test]
fn field_rules_are_enforced() {
    let origin = identity(9).public_key();
    let base = EntryFields {
        origin,
        seq: 1,
        prev: ZERO_HASH,
        timestamp: 0,
        author: "a".into(),
        kind: "a".into(),
        record_id: vec![1],
        body: Vec::new(),
    };
    assert!(Entry::new(base.clone()).is_ok());
    for kind in [
        "",
        "A",
        ".x",
        "-x",
        "_x",
        "a b",
        "a/b",
        "a\u{e9}",
        &"k".repeat(65),
    ] {
        let f = EntryFields {
            kind: kind.into(),
            ..base.clone()
        };
        assert_eq!(Entry::new(f), Err(LedgerError::InvalidKind), "{kind:?}");
        assert_eq!(check_kind(kind.as_bytes()), Err(LedgerError::InvalidKind));
    }
    for kind in ["a", "0", "9.a-b_c", &"k".repeat(64)] {
        assert_eq!(check_kind(kind.as_bytes()), Ok(()), "{kind:?}");
    }
    for author in ["", "a b", "\u{e9}", "a\n", &"a".repeat(33)] {
        let f = EntryFields {
            author: author.into(),
            ..base.clone()
        };
        assert_eq!(Entry::new(f), Err(LedgerError::InvalidAuthor), "{author:?}");
    }
    for id in [vec![], vec![0; 65]] {
        let f = EntryFields {
            record_id: id,
            ..base.clone()
        };
        assert_eq!(Entry::new(f), Err(LedgerError::InvalidRecordId));
    }
    let f = EntryFields {
        body: vec![7; MAX_BODY],
        ..base.clone()
    };
    let max = Entry::new(f).expect("maximum body");
    assert_eq!(Entry::decode(&max.to_bytes()), Ok(max.clone()));
    let f = EntryFields {
        body: vec![7; MAX_BODY + 1],
        ..base.clone()
    };
    assert_eq!(
        Entry::new(f),
        Err(LedgerError::BodyTooLarge {
            len: MAX_BODY + 1,
            max: MAX_BODY
        })
    );
    // An over-long body inside an otherwise valid encoding is refused by the decoder too.
    let mut enc = max.to_bytes();
    let body_len_at = enc.len() - MAX_BODY - 2;
    enc[body_len_at..body_len_at + 2].copy_from_slice(&((MAX_BODY + 1) as u16).to_be_bytes());
    enc.push(7);
    assert!(matches!(
        Entry::decode(&enc),
        Err(LedgerError::BodyTooLarge { .. })
    ));
    let f = EntryFields { seq: 0, ..base };
    assert_eq!(Entry::new(f), Err(LedgerError::ZeroSeq));
}

#[test]
fn accept_rule() {
    let id = identity(10);
    let other = identity(11).public_key();
    let (entries, head) = build_chain(&id, &[simple_spec(1), simple_spec(2)]);
    let e1 = Entry::decode(&entries[0]).expect("e1");
    let e2 = Entry::decode(&entries[1]).expect("e2");
    let h1 = Head::of(&e1);
    assert_eq!(check_append(None, &e1), Ok(()));
    assert_eq!(
        check_append(Some(&Head::empty(id.public_key())), &e1),
        Ok(())
    );
    assert_eq!(check_append(Some(&h1), &e2), Ok(()));
    assert_eq!(
        check_append(None, &e2),
        Err(LedgerError::Gap {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        check_append(Some(&h1), &e1),
        Err(LedgerError::Gap {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        check_append(Some(&head.head), &e2),
        Err(LedgerError::Gap {
            expected: 3,
            got: 2
        })
    );
    let wrong_prev = Head {
        hash: [1; 32],
        ..h1
    };
    assert_eq!(
        check_append(Some(&wrong_prev), &e2),
        Err(LedgerError::BadLink { seq: 2 })
    );
    let wrong_origin = Head {
        origin: other,
        ..h1
    };
    assert_eq!(
        check_append(Some(&wrong_origin), &e2),
        Err(LedgerError::WrongOrigin { seq: 2 })
    );
    let mut f = e1.clone().into_fields();
    f.prev = [3; 32];
    let bad_first = Entry::new(f).expect("fields ok");
    assert_eq!(
        check_append(None, &bad_first),
        Err(LedgerError::BadLink { seq: 1 })
    );
    let at_max = Head {
        seq: u64::MAX,
        ..h1
    };
    assert_eq!(
        check_append(Some(&at_max), &e2),
        Err(LedgerError::SeqOverflow)
    );
}

#[test]
#[cfg(not(feature = "fuzzing"))] // signature checks need the real provider
fn signed_heads() {
    let id = identity(12);
    let (entries, head) = build_chain(&id, &[simple_spec(1), simple_spec(2), simple_spec(3)]);
    assert_eq!(head.verify(), Ok(()));
    assert_eq!(SignedHead::decode(&head.to_bytes()), Ok(head));
    // The signing message is the documented one.
    let msg = head.head.signing_message();
    assert_eq!(&msg[..20], b"vserv/1 ledger head\0");
    assert_eq!(&msg[20..53], id.public_key().as_bytes());
    assert_eq!(msg[53..61], 3u64.to_be_bytes());
    assert_eq!(msg[61..], head.head.hash);
    assert_eq!(id.public_key().verify(&msg, &head.signature), Ok(()));
    // Forged: signed by another key but claiming this origin; tampered seq, hash, signature.
    let forged = SignedHead::sign(&identity(13), head.head);
    assert_eq!(forged.verify(), Err(LedgerError::BadSignature { seq: 3 }));
    assert_eq!(
        verify_export(&id, &entries, &forged),
        Err(LedgerError::BadSignature { seq: 3 })
    );
    for changed in [
        SignedHead {
            head: Head {
                seq: 2,
                ..head.head
            },
            ..head
        },
        SignedHead {
            head: Head {
                hash: [0; 32],
                ..head.head
            },
            ..head
        },
    ] {
        assert!(matches!(
            changed.verify(),
            Err(LedgerError::BadSignature { .. })
        ));
    }
    let mut sig = head;
    sig.signature[10] ^= 1;
    assert_eq!(sig.verify(), Err(LedgerError::BadSignature { seq: 3 }));
    // Validly signed but not matching the chain (a fork): named at its seq.
    let fork = SignedHead::sign(
        &id,
        Head {
            hash: [5; 32],
            ..head.head
        },
    );
    assert_eq!(
        verify_export(&id, &entries, &fork),
        Err(LedgerError::BadHead { seq: 3 })
    );
    // A head of another origin.
    let foreign = SignedHead::sign(
        &identity(14),
        Head {
            origin: identity(14).public_key(),
            ..head.head
        },
    );
    assert_eq!(
        verify_export(&id, &entries, &foreign),
        Err(LedgerError::WrongOrigin { seq: 3 })
    );
    // Decode refuses other lengths and versions.
    let bytes = head.to_bytes();
    assert!(SignedHead::decode(&bytes[..vserv_core::ledger::SIGNED_HEAD_LEN - 1]).is_err());
    let mut long = bytes.to_vec();
    long.push(0);
    assert!(SignedHead::decode(&long).is_err());
    let mut v = bytes;
    v[0] = 9;
    assert_eq!(
        SignedHead::decode(&v),
        Err(LedgerError::UnsupportedVersion(9))
    );
}

#[test]
fn verifier_head_positions() {
    let id = identity(15);
    let specs: Vec<Spec> = (1..=4).map(simple_spec).collect();
    let (entries, last) = build_chain(&id, &specs);
    let mid_entry = Entry::decode(&entries[1]).expect("e2");
    let mid = SignedHead::sign(&id, Head::of(&mid_entry));
    // A head fed early is checked when the chain reaches it; unsigned tail is reported.
    let mut v = ChainVerifier::new(id.public_key());
    v.push_head(&mid).expect("pending");
    for e in &entries {
        v.push_encoded(e).expect("entry");
    }
    assert_eq!(v.signed_seq(), 2);
    assert_eq!(v.clone().finish(), Ok(last.head));
    assert_eq!(
        v.clone().finish_signed(),
        Err(LedgerError::Unsigned { seq: 3 })
    );
    // A head fed after its seq was passed.
    assert_eq!(
        v.push_head(&mid),
        Err(LedgerError::HeadOutOfOrder { seq: 2, at: 4 })
    );
    v.push_head(&last).expect("last head");
    assert_eq!(v.finish_signed(), Ok(last.head));
    // An early head whose entry is tampered with: named at the head's seq.
    let mut bad = entries.clone();
    let last_byte = bad[1].len() - 1;
    bad[1][last_byte] ^= 1;
    let mut v = ChainVerifier::new(id.public_key());
    v.push_head(&mid).expect("pending");
    v.push_encoded(&bad[0]).expect("e1");
    assert_eq!(
        v.push_encoded(&bad[1]),
        Err(LedgerError::BadHead { seq: 2 })
    );
    // An empty feed: the empty head verifies, a chain with no head is unsigned.
    let mut v = ChainVerifier::new(id.public_key());
    v.push_head(&SignedHead::sign(&id, Head::empty(id.public_key())))
        .expect("empty head");
    assert_eq!(v.finish_signed(), Ok(Head::empty(id.public_key())));
    let mut v = ChainVerifier::new(id.public_key());
    v.push_encoded(&entries[0]).expect("e1");
    assert_eq!(v.finish_signed(), Err(LedgerError::Unsigned { seq: 1 }));
}

#[test]
fn field_form_rejections() {
    assert_eq!(body_to_fields(b""), Ok(vec![]));
    assert_eq!(
        body_to_fields(b"a=1\nb=x=y\nc=\n"),
        Ok(vec![
            ("a".into(), "1".into()),
            ("b".into(), "x=y".into()),
            ("c".into(), String::new())
        ])
    );
    assert_eq!(
        body_to_fields(b"A=1\n"),
        Err(LedgerError::BadFieldKey { line: 1 })
    );
    assert_eq!(
        body_to_fields(b"a=1\n=2\n"),
        Err(LedgerError::BadFieldKey { line: 2 })
    );
    assert_eq!(
        body_to_fields(b"a-b=1\n"),
        Err(LedgerError::BadFieldKey { line: 1 })
    );
    let long = format!("{}=1\n", "k".repeat(33));
    assert_eq!(
        body_to_fields(long.as_bytes()),
        Err(LedgerError::BadFieldKey { line: 1 })
    );
    assert_eq!(
        body_to_fields(b"a=1"),
        Err(LedgerError::BadFieldLine { line: 1 })
    );
    assert_eq!(
        body_to_fields(b"a\n"),
        Err(LedgerError::BadFieldLine { line: 1 })
    );
    assert_eq!(
        body_to_fields(b"a=1\n\n"),
        Err(LedgerError::BadFieldLine { line: 2 })
    );
    assert_eq!(
        body_to_fields(b"a=1\r\n"),
        Err(LedgerError::BadFieldValue { line: 1 })
    );
    assert_eq!(
        body_to_fields(b"a=\x07\n"),
        Err(LedgerError::BadFieldValue { line: 1 })
    );
    assert_eq!(
        body_to_fields(b"a=1\nb=2\na=3\n"),
        Err(LedgerError::DuplicateField {
            line: 3,
            key: "a".into()
        })
    );
    assert_eq!(body_to_fields(b"a=\xff\n"), Err(LedgerError::FieldNotUtf8));
    assert_eq!(
        fields_to_body(&[("a", "1"), ("a", "2")]),
        Err(LedgerError::DuplicateField {
            line: 2,
            key: "a".into()
        })
    );
    assert_eq!(
        fields_to_body(&[("ok", "x\ny")]),
        Err(LedgerError::BadFieldValue { line: 1 })
    );
    assert_eq!(
        fields_to_body(&[("Bad", "x")]),
        Err(LedgerError::BadFieldKey { line: 1 })
    );
    let big = "v".repeat(MAX_BODY);
    assert!(matches!(
        fields_to_body(&[("k", big.as_str())]),
        Err(LedgerError::BodyTooLarge { .. })
    ));
    assert_eq!(fields_to_body::<&str, &str>(&[]), Ok(vec![]));
}

/// Throughput of offline verification (issue 4 target: ≥ 500,000 entries/s). Run with
/// `cargo test --release -p vserv-core --test ledger -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
#[allow(clippy::disallowed_methods)] // a benchmark measures real time
fn verify_throughput() {
    let id = identity(16);
    let specs: Vec<Spec> = (1..=200_000).map(simple_spec).collect();
    let (entries, head) = build_chain(&id, &specs);
    let start = std::time::Instant::now();
    assert_eq!(verify_export(&id, &entries, &head), Ok(head.head));
    let secs = start.elapsed().as_secs_f64();
    println!(
        "verified {} entries ({} bytes each) in {secs:.3} s: {:.0} entries/s",
        entries.len(),
        entries[0].len(),
        entries.len() as f64 / secs
    );
}
