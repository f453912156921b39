//! Following a list of origins (spec/replication.md §3.6, §6.1-§6.3): the Wants message's
//! codec, a link that never reads nor sends a feed its peer's Wants left out (at catch-up,
//! on live commits, after a reconnect), and a link that refuses such a feed or a Wants out
//! of place with a typed error.
#![allow(clippy::disallowed_methods)] // one real Instant is the epoch of the virtual clock

use std::time::Instant;

use vserv_core::replication::{
    Clock, Entries, Link, LinkConfig, LinkEvent, MAX_ORIGINS, Message, NodeRequest,
    ReplicationError, Wants,
};
use vserv_core::{Fingerprint, ServerKey};

mod support;
use support::feeds::{Feed, identity};
use support::link_pair::{LinkPair, Node, Split};

/// Entries of `origin` that `side` put on the stream.
fn entries_sent(p: &LinkPair, side: usize, origin: &ServerKey) -> usize {
    p.sent[side]
        .iter()
        .map(|m| match m {
            Message::Entries(e) if e.origin() == origin => e.entries().len(),
            _ => 0,
        })
        .sum()
}

/// Entries of `origin` that `side`'s link reported sending.
fn entries_reported(p: &LinkPair, side: usize, origin: &ServerKey) -> usize {
    p.events[side]
        .iter()
        .map(|e| match e {
            LinkEvent::Sent {
                origin: o, entries, ..
            } if o == origin => *entries,
            _ => 0,
        })
        .sum()
}

#[test]
fn wants_round_trips_and_refuses_what_it_would_not_encode() {
    let keys: Vec<ServerKey> = (1..=3).map(|i| identity(i).public_key()).collect();
    let fps: Vec<Fingerprint> = keys.iter().map(ServerKey::fingerprint).collect();
    let wants = Wants::new(vec![fps[2], fps[0], fps[1]]).expect("wants");
    let mut sorted = fps.clone();
    sorted.sort();
    assert_eq!(wants.origins(), &sorted[..]);
    assert!(keys.iter().all(|k| wants.contains(k)));
    assert!(!wants.contains(&identity(9).public_key()));
    let frame = Message::Wants(wants.clone()).to_frame();
    assert_eq!(frame.len(), 4 + 1 + 4 + 3 * 32);
    assert_eq!(frame[4], 0x06);
    assert_eq!(
        Message::decode(&frame[4..]),
        Ok(Message::Wants(wants.clone()))
    );
    // None at all is a valid list: "I take nothing from you".
    let none = Message::Wants(Wants::new(vec![]).expect("empty")).to_frame();
    assert_eq!(none, [0, 0, 0, 5, 0x06, 0, 0, 0, 0]);
    // A repeated origin; a list out of order; a trailing byte; a count beyond the limit.
    assert_eq!(
        Wants::new(vec![fps[0], fps[0]]),
        Err(ReplicationError::BadWants)
    );
    let mut body = vec![0x06, 0, 0, 0, 2];
    body.extend_from_slice(&sorted[1].0);
    body.extend_from_slice(&sorted[0].0);
    assert_eq!(Message::decode(&body), Err(ReplicationError::BadWants));
    let mut trailing = frame[4..].to_vec();
    trailing.push(0);
    assert_eq!(
        Message::decode(&trailing),
        Err(ReplicationError::Malformed("wants"))
    );
    let mut many = vec![0x06];
    many.extend_from_slice(&(MAX_ORIGINS as u32 + 1).to_be_bytes());
    assert_eq!(
        Message::decode(&many),
        Err(ReplicationError::TooManyOrigins(MAX_ORIGINS + 1))
    );
}

/// A holds its own feed and a third server's; B takes A's feed and its own only. B gets
/// A's feed; not one entry of the third feed is read or sent, at catch-up, on live commits
/// of it, or on a new link after a reconnect. Without the Wants the same link sends it.
#[test]
fn a_feed_the_peer_does_not_want_is_never_sent() {
    let a_feed = Feed::with_commits(identity(51), 51, &[3, 2, 4]);
    let c_feed = Feed::with_commits(identity(53), 53, &[5, 5]);
    let b_feed = Feed::with_commits(identity(52), 52, &[2]);
    let (a_key, b_key, c_key) = (
        a_feed.id.public_key(),
        b_feed.id.public_key(),
        c_feed.id.public_key(),
    );
    let nodes = |wants: Option<Vec<Fingerprint>>| {
        let mut a = Node::new(1);
        a.hold(&a_feed, a_feed.seq());
        a.hold(&c_feed, c_feed.seq());
        let mut b = Node::new(2);
        b.hold(&b_feed, b_feed.seq());
        b.wants = wants;
        (a, b)
    };
    for split in [Split::Whole, Split::Pieces(1), Split::Random(7)] {
        // Without a Wants, A sends C's feed: the count below can see it.
        let (a, b) = nodes(None);
        let mut p = LinkPair::new(a, b, LinkConfig::default(), split);
        p.drive().expect("converges");
        assert_eq!(entries_sent(&p, 0, &c_key), 10, "{split:?}");
        assert_eq!(entries_reported(&p, 0, &c_key), 10, "{split:?}");

        let (a, b) = nodes(Some(vec![a_key.fingerprint(), b_key.fingerprint()]));
        let mut p = LinkPair::new(a, b, LinkConfig::default(), split);
        p.drive().expect("converges");
        assert_eq!(p.nodes[1].seq(&a_key), a_feed.seq(), "{split:?}");
        assert_eq!(p.nodes[1].seq(&c_key), 0, "{split:?}");
        assert_eq!(p.nodes[0].seq(&b_key), b_feed.seq(), "{split:?}");
        assert!(matches!(p.sent[1].first(), Some(Message::Wants(_))));
        // A live commit of C's feed on A.
        let mut live = c_feed.clone();
        let head = live.commit(3);
        p.nodes[0].hold(&live, head.head.seq);
        p.links[0].local_commit(head).expect("commit");
        p.drive().expect("quiet");
        // A reconnect: the new link starts from the clocks and the Wants again.
        p.reconnect();
        p.drive().expect("quiet");
        assert_eq!(entries_sent(&p, 0, &c_key), 0, "{split:?}");
        assert_eq!(entries_reported(&p, 0, &c_key), 0, "{split:?}");
        assert_eq!(entries_sent(&p, 0, &a_key), a_feed.seq() as usize);
        assert_eq!(p.nodes[1].seq(&c_key), 0);
    }
}

/// A link that follows `wants` (own feed: one commit of 3).
fn follower(wants: Vec<Fingerprint>) -> (Link, Instant) {
    let own = Feed::with_commits(identity(60), 60, &[3]);
    let now = Instant::now();
    let link = Link::following(
        [1; 16],
        vec![own.signed_at(3)],
        vec![],
        Some(Wants::new(wants).expect("wants")),
        LinkConfig::default(),
        now,
    )
    .expect("link");
    (link, now)
}

fn frames(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        m.encode(&mut out);
    }
    out
}

#[test]
fn unwanted_feeds_and_misplaced_wants_are_refused() {
    let wanted = Feed::with_commits(identity(61), 61, &[2]);
    let other = Feed::with_commits(identity(62), 62, &[2]);
    let clock = Message::Clock(Clock::new([2; 16], vec![]).expect("clock"));
    let segment = |f: &Feed| {
        vec![
            Message::Entries(Entries::new(f.id.public_key(), f.range(1, 2)).expect("fits")),
            Message::Head(f.signed_at(2)),
        ]
    };
    // The follower's first bytes are its Wants, then its Clock.
    let (mut link, _) = follower(vec![wanted.id.public_key().fingerprint()]);
    let mut out = Vec::new();
    link.poll_transmit(&mut out);
    let mut reader = vserv_core::replication::MessageReader::new();
    reader.push(&out);
    assert!(matches!(reader.next_message(), Ok(Some(Message::Wants(_)))));
    assert!(matches!(reader.next_message(), Ok(Some(Message::Clock(_)))));
    // A wanted feed is taken.
    let mut msgs = vec![clock.clone()];
    msgs.extend(segment(&wanted));
    link.handle_stream(&frames(&msgs), Instant::now())
        .expect("a wanted feed");
    assert!(matches!(
        link.poll_request(),
        Some(NodeRequest::Persist { .. })
    ));
    // Another one is refused at its first Entries message.
    let (mut link, now) = follower(vec![wanted.id.public_key().fingerprint()]);
    let mut msgs = vec![clock.clone()];
    msgs.extend(segment(&other));
    assert_eq!(
        link.handle_stream(&frames(&msgs), now),
        Err(ReplicationError::Unwanted)
    );
    assert!(link.is_closed());
    assert!(link.poll_request().is_none(), "nothing of it is persisted");
    // A Wants after the Clock, and two Wants, are refused (by any link).
    let wants = Message::Wants(Wants::new(vec![]).expect("wants"));
    for msgs in [
        vec![clock.clone(), wants.clone()],
        vec![wants.clone(), wants.clone(), clock.clone()],
    ] {
        let now = Instant::now();
        let mut link =
            Link::new([1; 16], vec![], vec![], LinkConfig::default(), now).expect("link");
        assert!(matches!(
            link.handle_stream(&frames(&msgs), now),
            Err(ReplicationError::Unexpected(_))
        ));
    }
}
