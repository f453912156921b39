//! The replication link machine, driven with no I/O: two links back to back over in-memory
//! nodes ([`LinkPair`]) with the stream cut at every point or at random; catch-up of backlogs
//! in both directions, live pushes, forks, reconnects, the window and acks; and hostile peers
//! that must get a typed error, never a panic.
#![allow(clippy::disallowed_methods)] // one real Instant is the epoch of the virtual clock

use std::time::Instant;

use vserv_core::ServerKey;
use vserv_core::ledger::LedgerError;
use vserv_core::replication::{
    Ack, Clock, ClockEntry, Entries, Link, LinkConfig, LinkEvent, MAX_MESSAGE, Message,
    MessageReader, NodeRequest, ReplicationError,
};

mod support;
use support::feeds::{Feed, identity};
use support::link_pair::{LinkPair, Node, Split};

fn small_window() -> LinkConfig {
    LinkConfig {
        window: 2_000,
        ..LinkConfig::default()
    }
}

/// Three origins: A's own feed, B's own feed and a third server's feed that A replicates.
struct World {
    a: Feed,
    b: Feed,
    c: Feed,
}

fn world() -> World {
    World {
        a: Feed::with_commits(identity(21), 21, &[3, 1, 5, 2, 4, 1, 1, 3]),
        b: Feed::with_commits(identity(22), 22, &[2, 2, 6, 1]),
        c: Feed::with_commits(identity(23), 23, &[4, 4, 4]),
    }
}

/// Both nodes hold the same feeds: the same heads, the same entries (the signed heads they
/// stored along the way may differ: a receiver stores one per segment).
fn same_feeds(p: &LinkPair) {
    let summary =
        |n: &Node| -> Vec<(ServerKey, u64)> { n.feeds.keys().map(|o| (*o, n.seq(o))).collect() };
    assert_eq!(
        summary(&p.nodes[0]),
        summary(&p.nodes[1]),
        "different heads"
    );
    for (origin, f) in &p.nodes[0].feeds {
        assert!(
            f.entries == p.nodes[1].feeds[origin].entries,
            "different entries"
        );
        assert_eq!(p.nodes[0].head(origin), p.nodes[1].head(origin));
    }
}

/// A backlog in both directions converges, whatever the window and however the stream is cut.
#[test]
fn backlogs_in_both_directions_converge_under_any_split() {
    let w = world();
    let mut splits = vec![
        Split::Whole,
        Split::Pieces(1),
        Split::Pieces(2),
        Split::Pieces(7),
    ];
    splits.extend((0..12).map(Split::Random));
    for config in [LinkConfig::default(), small_window()] {
        for &split in &splits {
            let mut a = Node::new(1);
            a.hold(&w.a, w.a.seq());
            a.hold(&w.c, 8);
            a.hold(&w.b, 4); // A holds part of B's feed already.
            let mut b = Node::new(2);
            b.hold(&w.b, w.b.seq());
            b.hold(&w.c, 4);
            let mut p = LinkPair::new(a, b, config, split);
            p.drive().unwrap_or_else(|e| panic!("{split:?}: {e:?}"));
            same_feeds(&p);
            assert_eq!(p.nodes[1].seq(&w.a.id.public_key()), w.a.seq());
            assert_eq!(p.nodes[0].seq(&w.b.id.public_key()), w.b.seq());
            assert_eq!(p.nodes[1].seq(&w.c.id.public_key()), 8);
            // Each side reported the feeds it caught up on.
            assert!(p.events[1].contains(&LinkEvent::CaughtUp {
                origin: w.a.id.public_key()
            }));
            assert!(p.events[0].contains(&LinkEvent::CaughtUp {
                origin: w.b.id.public_key()
            }));
            // Nothing was sent back to where it came from: B received A's feed once.
            let a_entries: usize = p.sent[0]
                .iter()
                .filter_map(|m| match m {
                    Message::Entries(e) if *e.origin() == w.a.id.public_key() => {
                        Some(e.entries().len())
                    }
                    _ => None,
                })
                .sum();
            assert_eq!(a_entries as u64, w.a.seq(), "{split:?}");
            let echoed = p.sent[1]
                .iter()
                .any(|m| matches!(m, Message::Entries(e) if *e.origin() == w.a.id.public_key()));
            assert!(!echoed, "B sent A's feed back");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(16))]

    /// Random feeds, random prefixes held on each side (of the same chains), a random window
    /// and random fragments: the two nodes converge to the longer prefix of every feed, and
    /// live commits keep them level.
    #[test]
    fn random_holdings_converge(
        commits in proptest::collection::vec(proptest::collection::vec(1usize..6, 1..6), 3),
        held in proptest::collection::vec((0u64..40, 0u64..40), 3),
        window in 300usize..6000,
        seed in proptest::prelude::any::<u64>(),
        more in proptest::collection::vec(1usize..4, 0..4),
    ) {
        let mut feeds: Vec<Feed> = commits
            .iter()
            .enumerate()
            .map(|(i, c)| Feed::with_commits(identity(50 + i as u64), 50 + i as u64, c))
            .collect();
        let (mut a, mut b) = (Node::new(1), Node::new(2));
        let mut want = Vec::new();
        for (f, &(x, y)) in feeds.iter().zip(&held) {
            let (x, y) = (x.min(f.seq()), y.min(f.seq()));
            if x > 0 {
                a.hold(f, x);
            }
            if y > 0 {
                b.hold(f, y);
            }
            want.push(x.max(y));
        }
        let config = LinkConfig { window, ..LinkConfig::default() };
        let mut p = LinkPair::new(a, b, config, Split::Random(seed));
        p.drive().expect("converges");
        same_feeds(&p);
        for (f, w) in feeds.iter().zip(&want) {
            proptest::prop_assert_eq!(p.nodes[0].seq(&f.id.public_key()), *w);
        }
        // Live commits of the first feed, on the side that holds all of it (or A).
        for n in more {
            let origin = feeds[0].id.public_key();
            let side = usize::from(p.nodes[1].seq(&origin) > p.nodes[0].seq(&origin));
            let have = p.nodes[side].seq(&origin);
            let f = &mut feeds[0];
            f.entries.truncate(have as usize);
            f.heads.retain(|s, _| *s <= have);
            let head = f.commit(n);
            p.nodes[side].hold(f, head.head.seq);
            p.links[side].local_commit(head).expect("commit");
            p.drive().expect("push");
            same_feeds(&p);
        }
    }
}

/// A backlog of more entries than a segment may hold (commits of 1,000): cut into segments
/// of at most `MAX_SEGMENT_ENTRIES` at stored signed heads, and Entries messages within
/// their bounds.
#[test]
fn a_backlog_longer_than_a_segment() {
    let f = Feed::with_commits(identity(60), 60, &[1000; 6]);
    let mut a = Node::new(1);
    a.hold(&f, f.seq());
    let mut p = LinkPair::new(a, Node::new(2), LinkConfig::default(), Split::Pieces(5000));
    p.drive().expect("converges");
    same_feeds(&p);
    assert_eq!(p.nodes[1].seq(&f.id.public_key()), 6000);
}

/// Every byte boundary of the first flights: the whole exchange cut into 1-byte pieces, and
/// each flight cut once at every position.
#[test]
fn the_stream_split_at_every_point() {
    let w = world();
    let mut a = Node::new(1);
    a.hold(&w.a, 6);
    let b = Node::new(2);
    // Find the length of A's first flights, then cut at every point of them.
    let mut probe = LinkPair::new(a.clone(), b.clone(), LinkConfig::default(), Split::Whole);
    probe.drive().expect("converges");
    let total: usize = probe.sent[0].iter().map(|m| m.to_frame().len()).sum();
    for cut in 1..total {
        let mut p = LinkPair::new(
            a.clone(),
            b.clone(),
            LinkConfig::default(),
            Split::Pieces(cut),
        );
        p.drive().unwrap_or_else(|e| panic!("cut {cut}: {e:?}"));
        same_feeds(&p);
    }
}

/// After catch-up, commits on either side are pushed live, and a periodic clock changes nothing.
#[test]
fn live_pushes_after_catch_up() {
    let mut w = world();
    let mut a = Node::new(1);
    a.hold(&w.a, w.a.seq());
    let mut b = Node::new(2);
    b.hold(&w.b, w.b.seq());
    let mut p = LinkPair::new(a, b, small_window(), Split::Random(5));
    p.drive().expect("catch-up");
    same_feeds(&p);
    for round in 0..5 {
        let (side, feed) = if round % 2 == 0 {
            (0, &mut w.a)
        } else {
            (1, &mut w.b)
        };
        let head = feed.commit(1 + round);
        p.nodes[side].hold(feed, head.head.seq);
        p.links[side].local_commit(head).expect("commit");
        p.drive().expect("push");
        same_feeds(&p);
    }
    let before = p.sent[0].len();
    p.jump().expect("timer");
    p.drive().expect("clocks");
    same_feeds(&p);
    // Only the clocks went out (and nothing came back but the other clock).
    assert_eq!(p.sent[0].len(), before + 1);
    assert!(matches!(p.sent[0].last(), Some(Message::Clock(_))));
}

/// Hands node B's state from one pair to the other, telling B's link there of every head that
/// moved (what a node does for all its links).
fn relay(from: &LinkPair, from_side: usize, to: &mut LinkPair, to_side: usize) {
    let node = from.nodes[from_side].clone();
    let moved: Vec<_> = node
        .heads()
        .into_iter()
        .filter(|h| to.nodes[to_side].head(&h.head.origin) != Some(*h))
        .collect();
    to.nodes[to_side] = node;
    for h in moved {
        to.links[to_side].local_commit(h).expect("commit");
    }
}

/// A line A - B - C: entries committed at either end reach the other through B's two links,
/// and nothing loops back.
#[test]
fn a_line_of_three_relays_both_ways_without_loops() {
    let mut w = world();
    let mut a = Node::new(1);
    a.hold(&w.a, 5);
    let mut c = Node::new(3);
    c.hold(&w.b, 4);
    let mut ab = LinkPair::new(a, Node::new(2), small_window(), Split::Random(3));
    let mut bc = LinkPair::new(Node::new(2), c, small_window(), Split::Random(4));
    for round in 0..4 {
        ab.drive().expect("A-B");
        relay(&ab, 1, &mut bc, 0);
        bc.drive().expect("B-C");
        relay(&bc, 0, &mut ab, 1);
        ab.drive().expect("A-B");
        if round == 1 {
            let head = w.a.commit(3);
            ab.nodes[0].hold(&w.a, head.head.seq);
            ab.links[0].local_commit(head).expect("commit");
            let head = w.b.commit(2);
            bc.nodes[1].hold(&w.b, head.head.seq);
            bc.links[1].local_commit(head).expect("commit");
        }
    }
    let (a, b) = (w.a.id.public_key(), w.b.id.public_key());
    for n in [&ab.nodes[0], &ab.nodes[1], &bc.nodes[1]] {
        assert_eq!((n.seq(&a), n.seq(&b)), (w.a.seq(), w.b.seq()));
    }
    // Each entry crossed each link once, in one direction.
    let count = |p: &LinkPair, side: usize, origin: ServerKey| -> usize {
        p.sent[side]
            .iter()
            .filter_map(|m| match m {
                Message::Entries(e) if *e.origin() == origin => Some(e.entries().len()),
                _ => None,
            })
            .sum()
    };
    assert_eq!(count(&ab, 0, a) as u64, w.a.seq());
    assert_eq!(count(&ab, 1, a), 0);
    assert_eq!(count(&bc, 0, a) as u64, w.a.seq());
    assert_eq!(count(&bc, 1, b) as u64, w.b.seq());
    assert_eq!(count(&bc, 0, b), 0);
    assert_eq!(count(&ab, 1, b) as u64, w.b.seq());
}

/// A new link after a reconnect, with reads, persists and acks cut off mid-way, resumes from
/// the clocks alone and converges.
#[test]
fn a_reconnect_resumes_from_clocks_alone() {
    let w = world();
    for cut_after in [1, 3, 5, 9] {
        let mut a = Node::new(1);
        a.hold(&w.a, w.a.seq());
        a.hold(&w.c, 12);
        let mut b = Node::new(2);
        b.hold(&w.b, w.b.seq());
        let mut p = LinkPair::new(a, b, small_window(), Split::Whole);
        // B persists only `cut_after` segments, then the connection drops.
        p.auto[1] = false;
        p.drive().expect("first link");
        let mut served = 0;
        while served < cut_after {
            let Some(r) = p.held[1].pop_front() else {
                break;
            };
            if matches!(r, NodeRequest::Persist { .. }) {
                served += 1;
            }
            p.serve(1, r).expect("serve");
            p.drive().expect("first link");
        }
        p.auto[1] = true;
        p.reconnect();
        p.drive().expect("second link");
        same_feeds(&p);
        assert_eq!(p.nodes[1].seq(&w.c.id.public_key()), 12);
    }
}

/// An Ack goes out only once the node said the segment is persisted, and acks of one origin
/// keep their order; at most one read per origin is in flight.
#[test]
fn acks_wait_for_persistence_and_reads_are_one_per_origin() {
    let w = world();
    let mut a = Node::new(1);
    a.hold(&w.a, w.a.seq());
    a.hold(&w.c, w.c.seq());
    let b = Node::new(2);
    let mut p = LinkPair::new(a, b, LinkConfig::default(), Split::Whole);
    p.auto = [false, false];
    p.drive().expect("clocks");
    p.serve_held(1).expect("B's reads (none)");
    // A's reads: one per origin.
    let reads: Vec<_> = p.held[0]
        .iter()
        .filter_map(|r| match r {
            NodeRequest::ReadSegment { origin, .. } => Some(*origin),
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_ne!(reads[0], reads[1]);
    p.serve_held(0).expect("A's reads");
    p.drive().expect("segments");
    // More reads followed (pipelined), still one per origin at a time.
    let per_origin = |p: &LinkPair| {
        let mut seen = std::collections::BTreeSet::new();
        p.held[0].iter().all(|r| match r {
            NodeRequest::ReadSegment { origin, .. } => seen.insert(*origin),
            _ => true,
        })
    };
    assert!(per_origin(&p));
    // B has Persist requests, and has sent no Ack.
    let persists = p.held[1]
        .iter()
        .filter(|r| matches!(r, NodeRequest::Persist { .. }))
        .count();
    assert!(persists >= 2);
    assert!(!p.sent[1].iter().any(|m| matches!(m, Message::Ack(_))));
    // Persisting the second segment of an origin before the first is refused.
    let mut order = p.held[1].clone();
    let first = order.pop_front().expect("a request");
    let NodeRequest::Persist { segment } = &first else {
        panic!("expected a persist")
    };
    if let Some(NodeRequest::Persist { segment: later }) = order.iter().find(
        |r| matches!(r, NodeRequest::Persist { segment: s } if s.origin() == segment.origin()),
    ) {
        assert_eq!(
            p.links[1].persisted(later.origin(), later.last_seq()),
            Err(ReplicationError::Misuse(
                "no such segment waits to be persisted"
            ))
        );
    }
    // Now let everything run: acks flow, in order per origin, and all converges.
    p.auto = [true, true];
    p.serve_held(0).expect("A");
    p.serve_held(1).expect("B");
    p.drive().expect("rest");
    same_feeds(&p);
    for origin in [w.a.id.public_key(), w.c.id.public_key()] {
        let acks: Vec<u64> = p.sent[1]
            .iter()
            .filter_map(|m| match m {
                Message::Ack(a) if a.origin == origin => Some(a.seq),
                _ => None,
            })
            .collect();
        assert!(acks.windows(2).all(|w| w[0] < w[1]), "{acks:?}");
        assert_eq!(acks.last().copied(), Some(p.nodes[0].seq(&origin)));
    }
}

/// A forked origin: each node holds a different chain of it. However the chains compare
/// (the same length, one longer, the other longer), the link ends with the fork proof on both
/// nodes, the origin quarantined on both, and every other feed still replicated.
#[test]
fn a_fork_shown_to_one_side_ends_with_the_proof_on_both() {
    let w = world();
    let m = Feed::with_commits(identity(30), 30, &[3, 3, 3]);
    for (len_a, len_b, diverge) in [(9, 9, 5), (9, 12, 5), (12, 9, 7), (9, 9, 9), (6, 9, 1)] {
        let x = if len_a >= 9 {
            let mut x = m.clone();
            if len_a > 9 {
                x.commit((len_a - 9) as usize);
            }
            x
        } else {
            m.clone()
        };
        let y = m.fork_at(diverge, len_b, 31);
        let mut a = Node::new(1);
        a.hold(&w.a, w.a.seq());
        a.hold(&x, len_a);
        let mut b = Node::new(2);
        b.hold(&w.b, w.b.seq());
        b.hold(&y, len_b);
        let mut p = LinkPair::new(a, b, LinkConfig::default(), Split::Random(9));
        p.drive()
            .unwrap_or_else(|e| panic!("{len_a}/{len_b}: {e:?}"));
        let origin = m.id.public_key();
        for side in 0..2 {
            let proof = p.nodes[side]
                .forks
                .get(&origin)
                .unwrap_or_else(|| panic!("{len_a}/{len_b}@{diverge}: side {side} has no proof"));
            #[cfg(not(feature = "fuzzing"))]
            proof.verify().expect("a valid proof");
            let _ = proof;
            assert!(p.events[side].contains(&LinkEvent::Fork { origin }));
        }
        // The other feeds replicated regardless.
        assert_eq!(p.nodes[1].seq(&w.a.id.public_key()), w.a.seq());
        assert_eq!(p.nodes[0].seq(&w.b.id.public_key()), w.b.seq());
        // A reconnect: the proofs are exchanged again, nothing of the forked origin moves.
        let before = (p.nodes[0].seq(&origin), p.nodes[1].seq(&origin));
        p.reconnect();
        p.drive().expect("after the fork");
        assert_eq!((p.nodes[0].seq(&origin), p.nodes[1].seq(&origin)), before);
    }
}

/// A proof held before the link starts reaches the peer, which quarantines the origin.
#[test]
fn held_fork_proofs_are_passed_on() {
    let m = Feed::with_commits(identity(30), 30, &[3, 3]);
    let y = m.fork_at(4, 6, 31);
    let proof =
        vserv_core::replication::ForkProof::unchecked(m.signed_at(6), y.signed_at(6), vec![])
            .expect("bounds");
    let mut a = Node::new(1);
    a.hold(&m, 6);
    a.forks.insert(m.id.public_key(), proof.clone());
    let b = Node::new(2);
    let mut p = LinkPair::new(a, b, LinkConfig::default(), Split::Whole);
    p.drive().expect("link");
    assert_eq!(p.nodes[1].forks.get(&m.id.public_key()), Some(&proof));
    // B quarantined it: A did not send the forked origin's entries.
    assert_eq!(p.nodes[1].seq(&m.id.public_key()), 0);

    // A proof stored while a link runs (found on another link) is passed on at once.
    let n = Feed::with_commits(identity(32), 32, &[2]);
    let z = n.fork_at(2, 2, 33);
    let late =
        vserv_core::replication::ForkProof::unchecked(n.signed_at(2), z.signed_at(2), vec![])
            .expect("bounds");
    p.nodes[0].forks.insert(n.id.public_key(), late.clone());
    p.links[0].fork_stored(late.clone()).expect("stored");
    p.drive().expect("passed on");
    assert_eq!(p.nodes[1].forks.get(&n.id.public_key()), Some(&late));
    assert!(p.events[1].contains(&LinkEvent::Fork {
        origin: n.id.public_key()
    }));
}

// ---------------------------------------------------------------------------------------------
// Hostile peers
// ---------------------------------------------------------------------------------------------

fn victim() -> (Link, Feed, Instant) {
    let own = Feed::with_commits(identity(40), 40, &[3]);
    let now = Instant::now();
    let link = Link::new(
        [1; 16],
        vec![own.signed_at(3)],
        vec![],
        LinkConfig {
            window: 3_000,
            ..LinkConfig::default()
        },
        now,
    )
    .expect("link");
    (link, own, now)
}

fn frames(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        m.encode(&mut out);
    }
    out
}

fn peer_clock(feeds: Vec<ClockEntry>) -> Message {
    Message::Clock(Clock::new([2; 16], feeds).expect("clock"))
}

fn segment(feed: &Feed, from: u64, to: u64) -> Vec<Message> {
    vec![
        Message::Entries(Entries::new(feed.id.public_key(), feed.range(from, to)).expect("fits")),
        Message::Head(feed.signed_at(to)),
    ]
}

/// Feeds `bytes` and expects `expected`; then the link is closed for good.
fn refused(bytes: &[u8], expected: ReplicationError) {
    let (mut link, _, now) = victim();
    assert_eq!(link.handle_stream(bytes, now), Err(expected));
    assert!(link.is_closed());
    assert_eq!(link.handle_stream(&[], now), Err(ReplicationError::Closed));
    assert_eq!(link.handle_timeout(now), Err(ReplicationError::Closed));
    assert_eq!(link.poll_timeout(), None);
}

#[test]
fn hostile_peers_get_typed_errors() {
    let peer = Feed::with_commits(identity(41), 41, &[2, 2]);
    let clock = peer_clock(vec![]);
    // Garbage after the clock.
    let mut bytes = frames(std::slice::from_ref(&clock));
    bytes.extend_from_slice(&[0, 0, 0, 3, 0x07, 1, 2]);
    refused(&bytes, ReplicationError::UnknownType(7));
    let mut bytes = frames(std::slice::from_ref(&clock));
    bytes.extend_from_slice(&[0, 0, 0, 2, 0x04, 1]);
    refused(&bytes, ReplicationError::Malformed("ack"));
    // An oversize frame.
    let mut bytes = frames(std::slice::from_ref(&clock));
    bytes.extend_from_slice(&((MAX_MESSAGE + 1) as u32).to_be_bytes());
    bytes.push(0x02);
    refused(
        &bytes,
        ReplicationError::FrameTooLarge {
            len: MAX_MESSAGE + 1,
            max: MAX_MESSAGE,
        },
    );
    // Anything before the clock.
    refused(
        &frames(&segment(&peer, 1, 2)),
        ReplicationError::Unexpected("the first message must be a Clock"),
    );
    // A segment with a bad signature.
    #[cfg(not(feature = "fuzzing"))]
    {
        let forger = identity(42);
        let mut msgs = vec![clock.clone()];
        msgs.extend(segment(&peer, 1, 2));
        msgs[2] = Message::Head(vserv_core::ledger::SignedHead::sign(
            &forger,
            peer.signed_at(2).head,
        ));
        refused(
            &frames(&msgs),
            ReplicationError::Ledger(LedgerError::BadSignature { seq: 2 }),
        );
    }
    // A gap: the first segment of a feed the victim does not hold starts at 3.
    let mut msgs = vec![clock.clone()];
    msgs.extend(segment(&peer, 3, 4));
    refused(
        &frames(&msgs),
        ReplicationError::Ledger(LedgerError::Gap {
            expected: 1,
            got: 3,
        }),
    );
    // An unsolicited Ack.
    let ack = Message::Ack(Ack {
        origin: peer.id.public_key(),
        seq: 2,
    });
    refused(
        &frames(&[clock.clone(), ack]),
        ReplicationError::UnsolicitedAck { seq: 2 },
    );
    // A Clock in the middle of a segment; a Head with no entries.
    let mut msgs = vec![clock.clone()];
    msgs.extend(segment(&peer, 1, 2));
    msgs.insert(2, clock.clone());
    refused(
        &frames(&msgs),
        ReplicationError::Unexpected("a segment is open"),
    );
    refused(
        &frames(&[clock.clone(), Message::Head(peer.signed_at(2))]),
        ReplicationError::HeadWithoutEntries,
    );
    // The victim's own epoch; a changed epoch.
    refused(
        &frames(&[Message::Clock(Clock::new([1; 16], vec![]).expect("clock"))]),
        ReplicationError::SelfLink,
    );
    refused(
        &frames(&[
            clock.clone(),
            Message::Clock(Clock::new([3; 16], vec![]).expect("clock")),
        ]),
        ReplicationError::EpochChanged,
    );
    // A fork proof that proves nothing.
    #[cfg(not(feature = "fuzzing"))]
    {
        let nothing = vserv_core::replication::ForkProof::unchecked(
            peer.signed_at(2),
            peer.signed_at(2),
            vec![],
        )
        .expect("bounds");
        refused(
            &frames(&[clock.clone(), Message::Fork(nothing)]),
            ReplicationError::BadForkProof("the heads agree"),
        );
    }
}

/// A sender that keeps sending beyond the window without waiting for acks is refused.
#[test]
fn a_peer_beyond_the_window_is_refused() {
    let peer = Feed::with_commits(identity(41), 41, &[8, 8, 8, 8]);
    let mut msgs = vec![peer_clock(vec![])];
    let mut at = 0;
    while at < peer.seq() {
        msgs.extend(segment(&peer, at + 1, at + 8));
        at += 8;
    }
    let (mut link, _, now) = victim();
    let err = link.handle_stream(&frames(&msgs), now);
    assert_eq!(err, Err(ReplicationError::WindowExceeded));
    // The same segments with the node persisting and acks flowing in between are fine.
    let (mut link, _, now) = victim();
    link.handle_stream(&frames(&msgs[..1]), now).expect("clock");
    for seg in msgs[1..].chunks(2) {
        link.handle_stream(&frames(seg), now)
            .expect("within the window");
        while let Some(r) = link.poll_request() {
            if let NodeRequest::Persist { segment } = r {
                link.persisted(segment.origin(), segment.last_seq())
                    .expect("persisted");
            }
        }
    }
}

/// A segment read while the window was full waits for window space, and a periodic Clock
/// of the peer that arrives meanwhile (listing only what it has persisted) must not drop it:
/// the sender's next Entries still start right after what the peer holds, with no gap.
#[test]
fn a_clock_while_a_segment_waits_for_the_window_leaves_no_gap() {
    let feed = Feed::with_commits(identity(42), 42, &[3, 3, 3, 3]);
    let origin = feed.id.public_key();
    let one: usize = feed.range(1, 3).iter().map(|e| e.encoded_len()).sum();
    let now = Instant::now();
    // Room for one segment and a read, not for two segments.
    let config = LinkConfig {
        window: one * 3 / 2,
        ..LinkConfig::default()
    };
    let mut link = Link::new([1; 16], vec![feed.signed_at(12)], vec![], config, now).expect("link");
    let mut sent = MessageReader::new();
    let mut first_entries = Vec::new();
    let mut drain = |link: &mut Link, firsts: &mut Vec<u64>| {
        let mut out = Vec::new();
        link.poll_transmit(&mut out);
        sent.push(&out);
        while let Some(m) = sent.next_message().expect("well-formed") {
            if let Message::Entries(e) = m {
                firsts.push(e.entries()[0].seq());
            }
        }
    };
    link.handle_stream(&frames(&[peer_clock(vec![])]), now)
        .expect("clock");
    // The node answers two reads: the first segment is sent, the second waits.
    for (from, to) in [(1, 3), (4, 6)] {
        match link.poll_request() {
            Some(NodeRequest::ReadSegment { from_seq, .. }) => assert_eq!(from_seq, from),
            other => panic!("expected the read from {from}: {other:?}"),
        }
        link.segment_read(origin, feed.range(from, to), Some(feed.signed_at(to)))
            .expect("read");
    }
    drain(&mut link, &mut first_entries);
    assert_eq!(first_entries, [1]);
    // The peer persisted the first segment: its periodic Clock says so, then its Ack.
    let clock = peer_clock(vec![ClockEntry {
        origin,
        seq: 3,
        hash: feed.signed_at(3).head.hash,
    }]);
    link.handle_stream(&frames(&[clock]), now).expect("clock");
    link.handle_stream(&frames(&[Message::Ack(Ack { origin, seq: 3 })]), now)
        .expect("ack");
    drain(&mut link, &mut first_entries);
    assert_eq!(first_entries, [1, 4], "the waiting segment was dropped");
}

/// A peer whose clock lists a feed below what it acknowledged lost entries: the link sends
/// it again from there, once per link (a peer that will not take them is not flooded).
#[test]
fn a_peer_that_lost_acknowledged_entries_is_sent_them_again_once() {
    let feed = Feed::with_commits(identity(43), 43, &[3, 3]);
    let origin = feed.id.public_key();
    let now = Instant::now();
    let mut link = Link::new(
        [1; 16],
        vec![feed.signed_at(6)],
        vec![],
        LinkConfig::default(),
        now,
    )
    .expect("link");
    let mut sent = MessageReader::new();
    let mut firsts = Vec::new();
    let mut serve = |link: &mut Link, firsts: &mut Vec<u64>| {
        while let Some(request) = link.poll_request() {
            match request {
                NodeRequest::ReadSegment { from_seq, .. } => {
                    let to = if from_seq <= 3 { 3 } else { 6 };
                    link.segment_read(origin, feed.range(from_seq, to), Some(feed.signed_at(to)))
                        .expect("read");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut out = Vec::new();
        link.poll_transmit(&mut out);
        sent.push(&out);
        while let Some(m) = sent.next_message().expect("well-formed") {
            if let Message::Entries(e) = m {
                firsts.push(e.entries()[0].seq());
            }
        }
    };
    link.handle_stream(&frames(&[peer_clock(vec![])]), now)
        .expect("clock");
    serve(&mut link, &mut firsts);
    serve(&mut link, &mut firsts);
    assert_eq!(firsts, [1, 4]);
    for seq in [3, 6] {
        link.handle_stream(&frames(&[Message::Ack(Ack { origin, seq })]), now)
            .expect("ack");
    }
    let lost = |seq: u64| {
        peer_clock(vec![ClockEntry {
            origin,
            seq,
            hash: feed.signed_at(seq).head.hash,
        }])
    };
    // The peer's clock now says 3: entries 4..=6 go again.
    link.handle_stream(&frames(&[lost(3)]), now).expect("clock");
    serve(&mut link, &mut firsts);
    assert_eq!(firsts, [1, 4, 4]);
    link.handle_stream(&frames(&[Message::Ack(Ack { origin, seq: 6 })]), now)
        .expect("ack");
    // It says 3 again (it will not keep them): not again on this link.
    link.handle_stream(&frames(&[lost(3)]), now).expect("clock");
    serve(&mut link, &mut firsts);
    assert_eq!(firsts, [1, 4, 4]);
}

/// API misuse is an error and changes nothing.
#[test]
fn api_misuse_is_an_error() {
    let (mut link, own, _) = victim();
    let origin: ServerKey = own.id.public_key();
    assert_eq!(
        link.segment_read(origin, own.range(1, 3), Some(own.signed_at(3))),
        Err(ReplicationError::Misuse("no read of this origin"))
    );
    assert_eq!(
        link.persisted(origin, 3),
        Err(ReplicationError::Misuse(
            "no such segment waits to be persisted"
        ))
    );
    assert!(
        Link::new(
            [1; 16],
            vec![own.signed_at(3), own.signed_at(2)],
            vec![],
            LinkConfig::default(),
            Instant::now()
        )
        .is_err()
    );
    assert!(!link.is_closed());
}

// ---------------------------------------------------------------------------------------------
// The link fuzz target's body, on random bytes and on a real peer's stream
// ---------------------------------------------------------------------------------------------

#[cfg(feature = "fuzzing")]
mod fuzz_body {
    use proptest::prelude::*;

    use super::*;

    fn real_stream() -> Vec<u8> {
        let w = world();
        let mut a = Node::new(2);
        a.hold(&w.a, w.a.seq());
        a.hold(&w.c, 8);
        let mut p = LinkPair::new(a, Node::new(3), small_window(), Split::Whole);
        p.drive().expect("converges");
        frames(&p.sent[0])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn replication_link_body(
            chunk in any::<u8>(),
            flags in any::<u8>(),
            data in proptest::collection::vec(any::<u8>(), 0..400),
            cut in any::<prop::sample::Index>(),
        ) {
            let now = Instant::now();
            let mut input = vec![chunk, flags];
            input.extend_from_slice(&data);
            vserv_core::replication::fuzzing::replication_link(&input, now);
            // A real stream, then the same truncated and with the random bytes after it.
            let real = real_stream();
            let mut input = vec![chunk, flags & !1];
            input.extend_from_slice(&real);
            vserv_core::replication::fuzzing::replication_link(&input, now);
            input.truncate(2 + cut.index(real.len()));
            input.extend_from_slice(&data);
            vserv_core::replication::fuzzing::replication_link(&input, now);
        }
    }
}
