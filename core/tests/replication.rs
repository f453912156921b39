//! Replication's pure parts: the message codec and the stream reader, the segment builder and
//! the accept rule over random feeds and every single mutation, and fork proofs.

use proptest::prelude::*;
use vserv_core::ledger::{Entry, LedgerError, SignedHead};
use vserv_core::replication::{
    Ack, Clock, ClockEntry, Entries, ForkProof, MAX_MESSAGE, Message, MessageReader,
    ReplicationError, Segment, SegmentBuilder, Verdict, accept,
};

mod support;
use support::feeds::{Feed, identity};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The messages a sender puts on the stream for one segment: Entries messages of at most
/// `per_message` entries, then the Head.
fn segment_messages(seg: &Segment, per_message: usize) -> Vec<Message> {
    let mut out: Vec<Message> = seg
        .entries()
        .chunks(per_message.max(1))
        .map(|c| Message::Entries(Entries::new(seg.origin(), c.to_vec()).expect("fits")))
        .collect();
    out.push(Message::Head(*seg.head()));
    out
}

fn stream_of(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        m.encode(&mut out);
    }
    out
}

/// Reads every message of `stream`, fed in pieces of the given sizes (cycled).
fn read_all(stream: &[u8], pieces: &[usize]) -> Result<Vec<Message>, ReplicationError> {
    let mut reader = MessageReader::new();
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = pieces.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&usize::MAX)).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        reader.push(piece);
        while let Some(m) = reader.next_message()? {
            out.push(m);
        }
    }
    Ok(out)
}

/// What a receiver makes of a stream holding one segment: the builder, then the accept rule.
/// `Ok(None)` means the stream ended before the segment did.
fn receive(stream: &[u8], held: Option<&SignedHead>) -> Result<Option<Verdict>, ReplicationError> {
    let messages = read_all(stream, &[usize::MAX])?;
    let mut builder: Option<SegmentBuilder> = None;
    for m in messages {
        match m {
            Message::Entries(e) => {
                let b = builder.get_or_insert_with(|| SegmentBuilder::new(*e.origin()));
                b.push_entries(e)?;
            }
            Message::Head(h) => {
                let b = builder.take().ok_or(ReplicationError::HeadWithoutEntries)?;
                return accept(held, false, b.finish(h)?).map(Some);
            }
            _ => return Err(ReplicationError::Unexpected("not a segment message")),
        }
    }
    Ok(None)
}

fn commits() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..5, 1..5)
}

// ---------------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------------

fn sample_messages(feed: &Feed, other: &Feed) -> Vec<Message> {
    let clock = Clock::new(
        [7; 16],
        vec![
            ClockEntry {
                origin: feed.id.public_key(),
                seq: feed.seq(),
                hash: feed.head().hash,
            },
            ClockEntry {
                origin: other.id.public_key(),
                seq: other.seq(),
                hash: other.head().hash,
            },
        ],
    )
    .expect("valid clock");
    let fork = feed.fork_at(1, feed.seq() + 1, 999);
    let mut out = vec![
        Message::Clock(clock),
        Message::Clock(Clock::new([0; 16], vec![]).expect("empty clock")),
        Message::Entries(Entries::new(feed.id.public_key(), feed.entries.clone()).expect("fits")),
        Message::Head(feed.signed_at(feed.seq())),
        Message::Ack(Ack {
            origin: other.id.public_key(),
            seq: u64::MAX,
        }),
    ];
    // Unchecked, so that the fuzzing build (which accepts any signature) has the same samples.
    out.push(Message::Fork(
        ForkProof::unchecked(
            feed.signed_at(feed.seq()),
            fork.signed_at(feed.seq() + 1),
            fork.range(feed.seq() + 1, feed.seq() + 1),
        )
        .expect("bounds"),
    ));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every message survives encode -> decode, and a stream of them survives any split.
    #[test]
    fn messages_round_trip_through_any_split(
        commits in commits(),
        pieces in proptest::collection::vec(1usize..200, 1..20),
    ) {
        let feed = Feed::with_commits(identity(1), 1, &commits);
        let other = Feed::with_commits(identity(2), 2, &[2]);
        let messages = sample_messages(&feed, &other);
        for m in &messages {
            let frame = m.to_frame();
            prop_assert_eq!(&Message::decode(&frame[4..]).expect("decodes"), m);
        }
        let stream = stream_of(&messages);
        prop_assert_eq!(read_all(&stream, &pieces).expect("reads"), messages.clone());
        prop_assert_eq!(read_all(&stream, &[1]).expect("reads"), messages);
    }

    /// Decoding arbitrary bytes never panics, and whatever decodes re-encodes to the same bytes.
    #[test]
    fn decoders_never_panic_and_are_canonical(
        ty in 0u8..7,
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut frame = vec![ty];
        frame.extend_from_slice(&body);
        if let Ok(m) = Message::decode(&frame) {
            prop_assert_eq!(&m.to_frame()[4..], &frame[..]);
        }
        if let Ok(p) = ForkProof::decode(&body) {
            prop_assert_eq!(p.to_bytes(), body.clone());
        }
        // The reader on the same bytes, with and without a frame header, in two pieces.
        let mut reader = MessageReader::new();
        let mut stream = (frame.len() as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(&frame);
        let cut = body.len() / 2;
        reader.push(&stream[..cut]);
        let _ = reader.next_message();
        reader.push(&stream[cut..]);
        let _ = reader.next_message();
        let mut raw = MessageReader::new();
        raw.push(&body);
        let _ = raw.next_message();
    }

    /// Every single-byte change of a valid message's frame is refused or decodes to a message
    /// that re-encodes to the changed bytes (never a silent reinterpretation).
    #[test]
    fn mutated_frames_are_refused_or_canonical(commits in commits(), at in any::<prop::sample::Index>(), x in 1u8..=255) {
        let feed = Feed::with_commits(identity(1), 1, &commits);
        let other = Feed::with_commits(identity(2), 2, &[2]);
        for m in sample_messages(&feed, &other) {
            let mut frame = m.to_frame()[4..].to_vec();
            let i = at.index(frame.len());
            frame[i] ^= x;
            if let Ok(d) = Message::decode(&frame) {
                prop_assert_eq!(&d.to_frame()[4..], &frame[..]);
                prop_assert_ne!(d, m);
            }
        }
    }
}

#[test]
fn reader_refuses_bad_frames_at_the_header() {
    let mut r = MessageReader::new();
    r.push(&0u32.to_be_bytes());
    assert_eq!(r.next_message(), Err(ReplicationError::EmptyFrame));

    let mut r = MessageReader::new();
    r.push(&((MAX_MESSAGE + 1) as u32).to_be_bytes());
    assert_eq!(r.next_message(), Ok(None), "the type decides the limit");
    r.push(&[0x02]);
    assert_eq!(
        r.next_message(),
        Err(ReplicationError::FrameTooLarge {
            len: MAX_MESSAGE + 1,
            max: MAX_MESSAGE
        })
    );

    let mut r = MessageReader::new();
    r.push(&u32::MAX.to_be_bytes());
    assert!(matches!(
        r.next_message(),
        Err(ReplicationError::FrameTooLarge { .. })
    ));

    let mut r = MessageReader::new();
    r.push(&[0, 0, 0, 1, 0x09]);
    assert_eq!(r.next_message(), Err(ReplicationError::UnknownType(9)));

    // A Fork frame may be bigger than MAX_MESSAGE: the reader waits for it.
    let mut r = MessageReader::new();
    r.push(&((MAX_MESSAGE + 1) as u32).to_be_bytes());
    r.push(&[0x05]);
    assert_eq!(r.next_message(), Ok(None));
}

#[test]
fn decoders_refuse_what_the_wire_forbids() {
    let a = identity(1).public_key();
    let b = identity(2).public_key();
    let (lo, hi) = if a.as_bytes() < b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    let line = |origin: vserv_core::ServerKey, seq: u64| {
        let mut v = origin.as_bytes().to_vec();
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&[3; 32]);
        v
    };
    let clock = |lines: &[Vec<u8>]| {
        let mut f = vec![0x01];
        f.extend_from_slice(&[9; 16]);
        f.extend_from_slice(&(lines.len() as u32).to_be_bytes());
        for l in lines {
            f.extend_from_slice(l);
        }
        f
    };
    assert!(Message::decode(&clock(&[line(lo, 1), line(hi, 2)])).is_ok());
    assert_eq!(
        Message::decode(&clock(&[line(hi, 1), line(lo, 2)])),
        Err(ReplicationError::BadClock),
        "descending origins"
    );
    assert_eq!(
        Message::decode(&clock(&[line(lo, 1), line(lo, 2)])),
        Err(ReplicationError::BadClock),
        "a repeated origin"
    );
    assert_eq!(
        Message::decode(&clock(&[line(lo, 0)])),
        Err(ReplicationError::BadClock),
        "an empty feed"
    );
    let mut many = vec![0x01];
    many.extend_from_slice(&[9; 16]);
    many.extend_from_slice(&4097u32.to_be_bytes());
    assert_eq!(
        Message::decode(&many),
        Err(ReplicationError::TooManyOrigins(4097))
    );
    // Trailing bytes.
    let mut trailing = clock(&[line(lo, 1)]);
    trailing.push(0);
    assert_eq!(
        Message::decode(&trailing),
        Err(ReplicationError::Malformed("clock"))
    );
    // An Entries message with no entry, or with an entry of another origin.
    let mut empty = vec![0x02];
    empty.extend_from_slice(a.as_bytes());
    empty.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(Message::decode(&empty), Err(ReplicationError::NoEntries));
    let foreign = Feed::with_commits(identity(2), 2, &[1]);
    let mut wrong = vec![0x02];
    wrong.extend_from_slice(a.as_bytes());
    wrong.extend_from_slice(&1u32.to_be_bytes());
    let enc = foreign.entries[0].to_bytes();
    wrong.extend_from_slice(&(enc.len() as u32).to_be_bytes());
    wrong.extend_from_slice(&enc);
    assert_eq!(
        Message::decode(&wrong),
        Err(ReplicationError::Ledger(LedgerError::WrongOrigin {
            seq: 1
        }))
    );
    assert!(Entries::new(a, vec![]).is_err());
    assert!(Entries::new(a, foreign.entries.clone()).is_err());
    // An Ack with a bad point.
    let mut ack = vec![0x04, 0x05];
    ack.extend_from_slice(&[0; 32 + 8]);
    assert_eq!(
        Message::decode(&ack),
        Err(ReplicationError::Ledger(LedgerError::BadOrigin))
    );
    assert_eq!(Message::decode(&[]), Err(ReplicationError::EmptyFrame));
    assert_eq!(Message::decode(&[0]), Err(ReplicationError::UnknownType(0)));
}

// ---------------------------------------------------------------------------------------------
// Segments and the accept rule
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Over a random feed, every (held, s, n): append, ignore or a gap, exactly as the rule says,
    /// through the whole receive path (frames, reader, builder, accept).
    #[test]
    fn accept_appends_ignores_and_refuses_gaps(
        commits in commits(),
        held_i in any::<prop::sample::Index>(),
        s_i in any::<prop::sample::Index>(),
        n_i in any::<prop::sample::Index>(),
        per in 1usize..4,
    ) {
        let feed = Feed::with_commits(identity(3), 3, &commits);
        let len = feed.seq();
        let h = held_i.index(len as usize + 1) as u64; // 0..=len
        let s = s_i.index(len as usize) as u64 + 1; // 1..=len
        let n = s + n_i.index((len - s + 1) as usize) as u64; // s..=len
        let held = (h > 0).then(|| feed.signed_at(h));
        let seg = feed.segment(s, n);
        let stream = stream_of(&segment_messages(&seg, per));
        let got = receive(&stream, held.as_ref());
        if s > h + 1 {
            prop_assert_eq!(got, Err(LedgerError::Gap { expected: h + 1, got: s }.into()));
        } else if n <= h {
            prop_assert_eq!(got, Ok(Some(Verdict::Ignore)));
        } else {
            prop_assert_eq!(got, Ok(Some(Verdict::Append(feed.segment(h.max(s - 1) + 1, n)))));
        }
        prop_assert_eq!(accept(held.as_ref(), true, seg.clone()), Ok(Verdict::Quarantined));
    }

    /// A second chain of the origin diverging at any seq `k`: wherever the segment shows the
    /// divergence to the held head (it reaches the held seq, and starts no later than the seq
    /// after it), the verdict is a fork whose proof verifies.
    #[test]
    fn a_fork_at_every_position_is_proven(
        commits in commits(),
        k_i in any::<prop::sample::Index>(),
        h_i in any::<prop::sample::Index>(),
        extra in 0u64..3,
        s_i in any::<prop::sample::Index>(),
    ) {
        let feed = Feed::with_commits(identity(4), 4, &commits);
        let len = feed.seq();
        let h = h_i.index(len as usize) as u64 + 1; // held 1..=len
        let k = k_i.index(h as usize) as u64 + 1; // diverges at 1..=h
        let fork = feed.fork_at(k, h + extra, 77);
        let n = h + extra;
        let s = s_i.index(h as usize + 1) as u64 + 1; // 1..=h+1
        let s = s.min(n);
        let held = feed.signed_at(h);
        let got = receive(&stream_of(&segment_messages(&fork.segment(s, n), 2)), Some(&held));
        let Ok(Some(Verdict::Fork(proof))) = got else {
            return Err(TestCaseError::fail(format!("expected a fork, got {got:?}")));
        };
        prop_assert_eq!(proof.origin(), feed.id.public_key());
        prop_assert_eq!(proof.a(), &held);
        prop_assert_eq!(proof.b(), &fork.signed_at(n));
        prop_assert_eq!(proof.entries().len() as u64, n - h);
        #[cfg(not(feature = "fuzzing"))]
        prop_assert_eq!(proof.verify(), Ok(()));
        prop_assert_eq!(ForkProof::decode(&proof.to_bytes()), Ok(proof));
    }
}

/// Every single-byte change anywhere in a segment's frames (entries, lengths, origins, the
/// head and its signature) is refused, or leaves the stream incomplete: never accepted.
#[cfg(not(feature = "fuzzing"))] // signature checks need the real provider
#[test]
fn every_byte_flip_of_a_segment_is_refused() {
    let feed = Feed::with_commits(identity(5), 5, &[2, 3]);
    for held_seq in [0, 2] {
        let held = (held_seq > 0).then(|| feed.signed_at(held_seq));
        let seg = feed.segment(held_seq + 1, 5);
        let stream = stream_of(&segment_messages(&seg, 2));
        assert!(matches!(
            receive(&stream, held.as_ref()),
            Ok(Some(Verdict::Append(_)))
        ));
        for i in 0..stream.len() {
            for x in [0x01, 0x80] {
                let mut bad = stream.clone();
                bad[i] ^= x;
                let got = receive(&bad, held.as_ref());
                assert!(
                    matches!(got, Err(_) | Ok(None)),
                    "flip {x:#x} at byte {i} gave {got:?}"
                );
            }
        }
    }
}

/// Reordered, dropped (a gap), duplicated entries, entries or a head of another origin, a
/// head that does not sign the last entry or is signed by another key: typed errors.
#[test]
fn structural_mutations_of_a_segment_are_refused() {
    let feed = Feed::with_commits(identity(6), 6, &[3, 3]);
    let other = Feed::with_commits(identity(7), 7, &[6]);
    let origin = feed.id.public_key();
    let build = |entries: Vec<Entry>, head: SignedHead| -> Result<Segment, ReplicationError> {
        let mut b = SegmentBuilder::new(origin);
        for e in entries {
            b.push(e)?;
        }
        b.finish(head)
    };
    let e = feed.range(1, 6);
    let head = feed.signed_at(6);
    assert!(build(e.clone(), head).is_ok());
    // Reorder two neighbours.
    let mut swapped = e.clone();
    swapped.swap(2, 3);
    assert_eq!(
        build(swapped, head),
        Err(LedgerError::Gap {
            expected: 3,
            got: 4
        }
        .into())
    );
    // Drop one: a gap.
    let mut dropped = e.clone();
    dropped.remove(3);
    assert_eq!(
        build(dropped, head),
        Err(LedgerError::Gap {
            expected: 4,
            got: 5
        }
        .into())
    );
    // Duplicate one.
    let mut dup = e.clone();
    dup.insert(3, e[3].clone());
    assert_eq!(
        build(dup, head),
        Err(LedgerError::Gap {
            expected: 5,
            got: 4
        }
        .into())
    );
    // An entry of another origin inside the segment.
    let mut foreign = e.clone();
    foreign[2] = other.entries[2].clone();
    assert_eq!(
        build(foreign, head),
        Err(LedgerError::WrongOrigin { seq: 3 }.into())
    );
    // An Entries message of another origin joins an open segment; a head of another origin.
    let mut b = SegmentBuilder::new(origin);
    b.push(e[0].clone()).expect("first");
    assert_eq!(
        b.push_entries(Entries::new(other.id.public_key(), other.range(2, 2)).expect("ok")),
        Err(ReplicationError::Interleaved)
    );
    assert_eq!(
        b.clone().finish(other.signed_at(1)),
        Err(ReplicationError::Interleaved)
    );
    // A head that signs another seq or another hash; no entries at all.
    assert_eq!(
        build(feed.range(1, 5), head),
        Err(ReplicationError::HeadMismatch { seq: 6 })
    );
    let fork = feed.fork_at(4, 6, 66);
    assert_eq!(
        build(e.clone(), fork.signed_at(6)),
        Err(ReplicationError::HeadMismatch { seq: 6 })
    );
    assert_eq!(
        SegmentBuilder::new(origin).finish(head),
        Err(ReplicationError::HeadWithoutEntries)
    );
    // A first entry 1 whose prev is not zero cannot be built (Entry::new checks fields only),
    // so check that a segment starting mid-feed is fine but one skipping a seq is not.
    assert!(build(feed.range(3, 6), head).is_ok());
    // A head signed by another key for this origin's head.
    #[cfg(not(feature = "fuzzing"))]
    {
        let forged = SignedHead::sign(&other.id, feed.head());
        assert_eq!(
            build(e.clone(), forged),
            Err(LedgerError::BadSignature { seq: 6 }.into())
        );
    }
    // A held head of another origin is a caller mistake.
    assert_eq!(
        accept(Some(&other.signed_at(6)), false, feed.segment(1, 6)),
        Err(ReplicationError::Misuse("held head of another origin"))
    );
}

#[test]
fn segment_bounds_are_enforced() {
    let feed = Feed::with_commits(identity(8), 8, &[1]);
    let mut b = SegmentBuilder::new(feed.id.public_key());
    let mut f = Feed::new(feed.id.clone(), 8);
    for _ in 0..vserv_core::replication::MAX_SEGMENT_ENTRIES {
        let e = f.append().clone();
        b.push(e).expect("within the bound");
    }
    let e = f.append().clone();
    assert_eq!(b.push(e), Err(ReplicationError::SegmentTooLarge));
}

// ---------------------------------------------------------------------------------------------
// Fork proofs
// ---------------------------------------------------------------------------------------------

/// Every single-byte change of a valid proof's encoding fails to decode or to verify.
#[cfg(not(feature = "fuzzing"))] // signature checks need the real provider
#[test]
fn every_byte_flip_of_a_fork_proof_fails() {
    let feed = Feed::with_commits(identity(9), 9, &[2, 2]);
    let fork = feed.fork_at(2, 6, 55);
    let fork1 = feed.fork_at(1, 3, 56);
    let proofs = [
        ForkProof::new(feed.signed_at(4), fork.signed_at(4), vec![]).expect("equal seqs"),
        ForkProof::new(feed.signed_at(4), fork.signed_at(6), fork.range(5, 6)).expect("chain"),
        ForkProof::new(feed.signed_at(1), fork1.signed_at(3), fork1.range(2, 3)).expect("chain"),
    ];
    for proof in proofs {
        let bytes = proof.to_bytes();
        assert_eq!(ForkProof::decode(&bytes), Ok(proof.clone()));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let got = ForkProof::decode(&bad).and_then(|p| p.verify());
            assert!(got.is_err(), "flip at byte {i} still verifies");
        }
        let mut short = bytes.clone();
        short.pop();
        assert!(ForkProof::decode(&short).is_err());
    }
}

/// Proofs that prove nothing are refused with the reason.
#[cfg(not(feature = "fuzzing"))] // signature checks need the real provider
#[test]
fn fork_proofs_that_prove_nothing_are_refused() {
    let feed = Feed::with_commits(identity(10), 10, &[2, 2]);
    let fork = feed.fork_at(3, 5, 44);
    let other = Feed::with_commits(identity(11), 11, &[4]);
    let bad = |a, b, e| ForkProof::new(a, b, e).expect_err("no fork");
    assert_eq!(
        bad(feed.signed_at(2), feed.signed_at(2), vec![]),
        ReplicationError::BadForkProof("the heads agree")
    );
    assert_eq!(
        bad(feed.signed_at(2), feed.signed_at(4), feed.range(3, 4)),
        ReplicationError::BadForkProof("the entries extend head a")
    );
    assert_eq!(
        bad(feed.signed_at(4), fork.signed_at(2), vec![]),
        ReplicationError::BadForkProof("head a is after head b")
    );
    assert_eq!(
        bad(feed.signed_at(2), fork.signed_at(5), fork.range(4, 5)),
        ReplicationError::BadForkProof("the entries must be seqs a.seq+1 ..= b.seq")
    );
    assert_eq!(
        bad(feed.signed_at(3), fork.signed_at(5), fork.range(5, 5)),
        ReplicationError::BadForkProof("the entries must be seqs a.seq+1 ..= b.seq")
    );
    assert!(matches!(
        ForkProof::new(feed.signed_at(2), other.signed_at(2), vec![]),
        Err(ReplicationError::BadForkProof(
            "the heads have different origins"
        ))
    ));
    // Entries that do not lead to b: b's entries with a's feed's head at b's seq.
    assert_eq!(
        bad(
            feed.signed_at(2),
            feed.signed_at(4),
            feed.fork_at(2, 4, 45).range(3, 4)
        ),
        ReplicationError::BadForkProof("the entries do not lead to head b")
    );
    // A forged signature on either head.
    let forged = SignedHead::sign(&other.id, fork.signed_at(4).head);
    assert_eq!(
        bad(feed.signed_at(4), forged, vec![]),
        ReplicationError::Ledger(LedgerError::BadSignature { seq: 4 })
    );
    assert_eq!(
        bad(forged, feed.signed_at(4), vec![]),
        ReplicationError::Ledger(LedgerError::BadSignature { seq: 4 })
    );
}

// ---------------------------------------------------------------------------------------------
// The fuzz target's body, on random and on valid input
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "fuzzing")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fuzz_body_replication_message(
        chunk in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..500),
        commits in commits(),
    ) {
        let mut input = vec![chunk];
        input.extend_from_slice(&data);
        vserv_core::replication::fuzzing::replication_message(&input);
        let feed = Feed::with_commits(identity(1), 1, &commits);
        let other = Feed::with_commits(identity(2), 2, &[2]);
        let mut valid = vec![chunk];
        valid.extend_from_slice(&stream_of(&sample_messages(&feed, &other)));
        vserv_core::replication::fuzzing::replication_message(&valid);
    }
}

/// Seqs at the top of the range: no overflow, a typed gap.
#[test]
fn a_segment_at_seq_u64_max_is_a_gap_not_a_panic() {
    use vserv_core::ledger::{EntryFields, Head};
    let feed = Feed::with_commits(identity(12), 12, &[5]);
    let id = &feed.id;
    let e = Entry::new(EntryFields {
        origin: id.public_key(),
        seq: u64::MAX,
        prev: [7; 32],
        timestamp: 0,
        author: "mallory".into(),
        kind: "note".into(),
        record_id: b"x".to_vec(),
        body: vec![],
    })
    .expect("valid fields");
    let seg = Segment::new(vec![e.clone()], SignedHead::sign(id, Head::of(&e))).expect("segment");
    assert_eq!(seg.first_seq(), u64::MAX);
    assert_eq!(
        accept(None, false, seg.clone()),
        Err(LedgerError::Gap {
            expected: 1,
            got: u64::MAX
        }
        .into())
    );
    assert_eq!(
        accept(Some(&feed.signed_at(5)), false, seg),
        Err(LedgerError::Gap {
            expected: 6,
            got: u64::MAX
        }
        .into())
    );
}

/// A reader takes an origin it decoded before from its bytes alone: the messages it gives
/// are those `Message::decode` gives, and an origin that is no key is refused all the same
/// after valid ones.
#[test]
fn a_reader_reusing_known_origins_reads_what_decode_reads() {
    use vserv_core::replication::{Ack, Entries, Message, MessageReader};
    let feed = Feed::with_commits(identity(70), 70, &[2, 2]);
    let origin = feed.id.public_key();
    let frames = [
        Message::Entries(Entries::new(origin, feed.range(1, 2)).expect("fits")).to_frame(),
        Message::Ack(Ack { origin, seq: 2 }).to_frame(),
        Message::Entries(Entries::new(origin, feed.range(3, 4)).expect("fits")).to_frame(),
    ];
    let mut reader = MessageReader::new();
    for frame in &frames {
        reader.push(frame);
        let read = reader.next_message().expect("valid").expect("whole");
        assert_eq!(Some(read), Message::decode(&frame[4..]).ok());
    }
    let mut bad = frames[1].clone();
    bad[5] = 0x05; // no compressed point starts so
    reader.push(&bad);
    assert_eq!(
        reader.next_message(),
        Err(Message::decode(&bad[4..]).unwrap_err())
    );
    assert!(Message::decode(&bad[4..]).is_err());
}
