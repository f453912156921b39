//! Bodies of the replication fuzz targets (compiled only with the `fuzzing` feature; each
//! target in `fuzz/fuzz_targets/` is a one-line call into this module).
//!
//! Under the `fuzzing` feature signatures are not checked (see `crate::fuzzing`), so the
//! fuzzer reaches the code behind them. Every function panics only when replication breaks
//! one of its own promises: a decoder accepts bytes it would not have produced, the reader
//! gives other messages (or fails elsewhere) when the stream is split differently, a link
//! refuses a correct answer of its node, stays open after an error, sends an invalid stream
//! or does not fire its timer.

use super::ReplicationError;
use super::fork::ForkProof;
use super::link::{Link, LinkConfig, NodeRequest};
use super::message::{Clock, Message, MessageReader, Wants};
use std::time::Instant;

use crate::fuzzing::FuzzRng;
use crate::ledger::{Entry, SignedHead};

/// Every message decoder and the stream reader. Byte 0 picks the piece size of the split
/// stream (0 = one piece); the rest is decoded three ways: as one frame's content (type byte
/// and body) and as a fork proof encoding (whatever decodes must re-encode to the same
/// bytes), and as a stream, whole and split, which must give the same messages and the same
/// error.
pub fn replication_message(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    if let Ok(m) = Message::decode(rest) {
        assert_eq!(&m.to_frame()[4..], rest, "message re-encodes differently");
    }
    if let Ok(p) = ForkProof::decode(rest) {
        assert_eq!(p.to_bytes(), rest, "fork proof re-encodes differently");
        let _ = p.verify();
    }
    let whole = read(rest, 0);
    let split = read(rest, chunk);
    assert_eq!(whole, split, "splitting the stream changed what was read");
    for m in whole.0 {
        assert!(m.to_frame().len() <= 4 + m.kind().max_len());
    }
}

/// Reads `stream` in pieces of `1..=chunk` bytes (0 = whole): the messages, then the error
/// if one came.
fn read(stream: &[u8], chunk: u8) -> (Vec<Message>, Option<ReplicationError>) {
    let mut rng = FuzzRng::new(u64::from(chunk));
    let mut reader = MessageReader::new();
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = if chunk == 0 {
            rest.len()
        } else {
            1 + (rng.step() % u64::from(chunk)) as usize
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        reader.push(piece);
        loop {
            match reader.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// A [`Link`] fed arbitrary bytes as its peer's stream, with a node that answers every
/// request correctly (reads from a small own feed, persists whatever the link accepted).
/// Byte 0 picks the piece size (0 = one piece); byte 1, bit 0: the stream starts with a valid
/// peer Clock (so the fuzzer starts past it); bit 1: fire the timer at the end; bit 2: the
/// link follows no origin (it sends a Wants listing none and refuses every segment); bit 3:
/// the stream starts with a Wants of the own origin (before the Clock of bit 0). Checks that
/// every answer of the node is taken, that an error leaves the link closed for good, and that
/// everything the link sends is a valid message stream.
pub fn replication_link(data: &[u8], now: Instant) {
    let [chunk, flags, body @ ..] = data else {
        return;
    };
    let own = own_feed();
    let heads = own.last().map(|(_, h)| *h).into_iter().collect();
    let wants = (flags & 4 == 4).then(|| Wants::new(vec![])).transpose();
    let Ok(mut link) =
        wants.and_then(|w| Link::following([1; 16], heads, vec![], w, LinkConfig::default(), now))
    else {
        panic!("a valid link was refused");
    };
    let mut stream = Vec::new();
    if flags & 8 == 8
        && let Ok(wants) = Wants::new(vec![crate::fuzzing::identity().public_key().fingerprint()])
    {
        Message::Wants(wants).encode(&mut stream);
    }
    if flags & 1 == 1
        && let Ok(clock) = Clock::new([2; 16], vec![])
    {
        Message::Clock(clock).encode(&mut stream);
    }
    stream.extend_from_slice(body);
    let mut sent = MessageReader::new();
    let mut rng = FuzzRng::new(u64::from(*chunk));
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let n = if *chunk == 0 {
            rest.len()
        } else {
            1 + (rng.step() % u64::from(*chunk)) as usize
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        if link.handle_stream(piece, now).is_err() {
            assert!(link.is_closed(), "an error left the link open");
            assert_eq!(link.handle_stream(b"x", now), Err(ReplicationError::Closed));
            assert_eq!(link.poll_timeout(), None);
            break;
        }
        serve(&mut link, &own);
        drain(&mut link, &mut sent);
    }
    if flags & 2 == 2 && !link.is_closed() {
        // What the link queued before (its Wants, when the stream was empty and nothing
        // was drained) goes first; the timer's Clock is what follows.
        drain(&mut link, &mut sent);
        let Some(at) = link.poll_timeout() else {
            panic!("an open link has no timer");
        };
        assert_eq!(link.handle_timeout(at), Ok(()));
        let mut out = Vec::new();
        link.poll_transmit(&mut out);
        let mut r = MessageReader::new();
        r.push(&out);
        assert!(
            matches!(r.next_message(), Ok(Some(Message::Clock(_)))),
            "the timer did not send the clock"
        );
    }
}

/// A small feed of the fuzz identity: `(entry, signed head at it)` for seqs 1-3.
fn own_feed() -> Vec<(Entry, SignedHead)> {
    use crate::ledger::{EntryFields, Head, ZERO_HASH};
    let id = crate::fuzzing::identity();
    let mut out: Vec<(Entry, SignedHead)> = Vec::new();
    let mut prev = ZERO_HASH;
    for seq in 1..=3u64 {
        let Ok(e) = Entry::new(EntryFields {
            origin: id.public_key(),
            seq,
            prev,
            timestamp: seq,
            author: "fuzz".into(),
            kind: "note".into(),
            record_id: vec![seq as u8],
            body: vec![0; 8],
        }) else {
            panic!("a valid entry was refused");
        };
        prev = e.hash();
        let h = SignedHead::sign(&id, Head::of(&e));
        out.push((e, h));
    }
    out
}

/// Answers every request of the link as a correct node does.
fn serve(link: &mut Link, own: &[(Entry, SignedHead)]) {
    while let Some(r) = link.poll_request() {
        let answer = match r {
            NodeRequest::ReadSegment {
                origin, from_seq, ..
            } => {
                let mut from = own
                    .iter()
                    .filter(|(e, _)| e.origin() == origin && e.seq() >= from_seq);
                let entries: Vec<Entry> = from.clone().map(|(e, _)| e.clone()).collect();
                let head = from.next_back().map(|(_, h)| *h);
                link.segment_read(origin, entries, head)
            }
            NodeRequest::Persist { segment } => {
                let head = *segment.head();
                link.persisted(segment.origin(), segment.last_seq())
                    .and_then(|()| link.local_commit(head))
            }
            NodeRequest::StoreFork { proof } => link.fork_stored(proof),
        };
        assert_eq!(answer, Ok(()), "a correct answer was refused");
    }
}

/// Takes the link's output and events; the output must be valid messages.
fn drain(link: &mut Link, sent: &mut MessageReader) {
    let mut out = Vec::new();
    link.poll_transmit(&mut out);
    sent.push(&out);
    loop {
        match sent.next_message() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("the link sent an invalid stream: {e:?}"),
        }
    }
    while link.poll_event().is_some() {}
}
