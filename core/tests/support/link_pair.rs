//! Two replication [`Link`]s back to back, each over an in-memory node (a map of feeds), with
//! a virtual clock. The driver moves each side's stream bytes to the other (whole, in pieces
//! of a fixed size, or in random pieces), answers the links' requests from the nodes the way
//! a real node does (re-running the accept rule when persisting, telling the link of every
//! new head and stored fork proof), and taps both streams to check the window from the
//! sender's side: never more than the window of entry bytes unacknowledged, unless a single
//! segment is in flight.
#![allow(clippy::disallowed_methods)] // one real Instant is the epoch of the virtual clock

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vserv_core::ServerKey;
use vserv_core::ledger::{Entry, SignedHead};
use vserv_core::replication::{
    Epoch, ForkProof, Link, LinkConfig, LinkEvent, MAX_SEGMENT_ENTRIES, Message, MessageReader,
    NodeRequest, ReplicationError, Verdict, Wants, accept,
};

use super::feeds::Feed;

/// One stored feed: entries (seq `i + 1` at index `i`) and the signed heads of its commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub entries: Vec<Entry>,
    pub heads: BTreeMap<u64, SignedHead>,
}

/// An in-memory node: its epoch, the feeds it holds, its fork proofs and the origins it
/// takes from peers (`None`: every one).
#[derive(Debug, Clone)]
pub struct Node {
    pub epoch: Epoch,
    pub feeds: BTreeMap<ServerKey, Stored>,
    pub forks: BTreeMap<ServerKey, ForkProof>,
    pub wants: Option<Vec<vserv_core::Fingerprint>>,
}

impl Node {
    pub fn new(epoch: u8) -> Self {
        Node {
            epoch: [epoch; 16],
            feeds: BTreeMap::new(),
            forks: BTreeMap::new(),
            wants: None,
        }
    }

    /// Holds `feed` up to `upto` (its entries and the signed heads of its commits up to there,
    /// plus a signed head at `upto`).
    pub fn hold(&mut self, feed: &Feed, upto: u64) {
        let mut heads: BTreeMap<u64, SignedHead> =
            feed.heads.range(..=upto).map(|(s, h)| (*s, *h)).collect();
        heads.insert(upto, feed.signed_at(upto));
        self.feeds.insert(
            feed.id.public_key(),
            Stored {
                entries: feed.entries[..upto as usize].to_vec(),
                heads,
            },
        );
    }

    pub fn head(&self, origin: &ServerKey) -> Option<SignedHead> {
        self.feeds
            .get(origin)
            .and_then(|f| f.heads.values().next_back().copied())
    }

    pub fn seq(&self, origin: &ServerKey) -> u64 {
        self.head(origin).map_or(0, |h| h.head.seq)
    }

    pub fn heads(&self) -> Vec<SignedHead> {
        self.feeds.keys().filter_map(|o| self.head(o)).collect()
    }

    pub fn link(&self, config: LinkConfig, now: Instant) -> Link {
        let wants = self
            .wants
            .clone()
            .map(|w| Wants::new(w).expect("a valid want list"));
        Link::following(
            self.epoch,
            self.heads(),
            self.forks.values().cloned().collect(),
            wants,
            config,
            now,
        )
        .expect("a valid link")
    }

    /// Entries from `from` up to the first stored signed head where they reach `max` bytes,
    /// or up to the head, and never beyond the last stored signed head within
    /// `MAX_SEGMENT_ENTRIES` entries.
    pub fn read(
        &self,
        origin: &ServerKey,
        from: u64,
        max: usize,
    ) -> (Vec<Entry>, Option<SignedHead>) {
        let Some(f) = self.feeds.get(origin) else {
            return (vec![], None);
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        // The length of `out` at the last stored signed head, and that head.
        let mut cut: Option<(usize, SignedHead)> = None;
        for e in f.entries.iter().skip(from.saturating_sub(1) as usize) {
            if out.len() == MAX_SEGMENT_ENTRIES {
                break;
            }
            bytes += e.encoded_len();
            out.push(e.clone());
            if let Some(h) = f.heads.get(&e.seq()) {
                cut = Some((out.len(), *h));
                if bytes >= max {
                    break;
                }
            }
        }
        match cut {
            Some((n, h)) => {
                out.truncate(n);
                (out, Some(h))
            }
            None => (vec![], None),
        }
    }

    /// Persists a segment after applying the accept rule again: the new head if it appended,
    /// the proof if it found a fork.
    pub fn persist(
        &mut self,
        segment: vserv_core::replication::Segment,
    ) -> (Option<SignedHead>, Option<ForkProof>) {
        let origin = segment.origin();
        let held = self.head(&origin);
        match accept(held.as_ref(), self.forks.contains_key(&origin), segment)
            .expect("a segment the link accepted is never invalid against the node")
        {
            Verdict::Append(seg) => {
                let (entries, head) = seg.into_parts();
                let f = self.feeds.entry(origin).or_default();
                f.entries.extend(entries);
                f.heads.insert(head.head.seq, head);
                (Some(head), None)
            }
            Verdict::Ignore | Verdict::Quarantined => (None, None),
            Verdict::Fork(proof) => {
                self.forks.entry(origin).or_insert(proof.clone());
                (None, Some(proof))
            }
        }
    }
}

/// How stream bytes are cut on their way to the other side.
#[derive(Debug, Clone, Copy)]
pub enum Split {
    Whole,
    Pieces(usize),
    Random(u64),
}

/// Two nodes and their links (see the module documentation).
pub struct LinkPair {
    pub nodes: [Node; 2],
    pub links: [Link; 2],
    pub events: [Vec<LinkEvent>; 2],
    pub now: Instant,
    pub config: LinkConfig,
    pub split: Split,
    rng: StdRng,
    /// When false, a side's requests wait in `held` until the test answers them.
    pub auto: [bool; 2],
    pub held: [VecDeque<NodeRequest>; 2],
    /// Every message each side sent, in order.
    pub sent: [Vec<Message>; 2],
    taps: [MessageReader; 2],
    /// Sender-side window accounting: entry bytes of the open segment, and per origin the
    /// bytes of each unacknowledged segment.
    open_bytes: [usize; 2],
    in_flight: [BTreeMap<ServerKey, VecDeque<usize>>; 2],
}

impl LinkPair {
    pub fn new(a: Node, b: Node, config: LinkConfig, split: Split) -> Self {
        let now = Instant::now();
        let links = [a.link(config, now), b.link(config, now)];
        LinkPair {
            nodes: [a, b],
            links,
            events: [vec![], vec![]],
            now,
            config,
            split,
            rng: StdRng::seed_from_u64(match split {
                Split::Random(s) => s,
                _ => 0,
            }),
            auto: [true, true],
            held: [VecDeque::new(), VecDeque::new()],
            sent: [vec![], vec![]],
            taps: [MessageReader::new(), MessageReader::new()],
            open_bytes: [0, 0],
            in_flight: [BTreeMap::new(), BTreeMap::new()],
        }
    }

    /// New links over the same nodes, as after a reconnect (nothing carried over).
    pub fn reconnect(&mut self) {
        self.links = [
            self.nodes[0].link(self.config, self.now),
            self.nodes[1].link(self.config, self.now),
        ];
        self.held = [VecDeque::new(), VecDeque::new()];
        self.taps = [MessageReader::new(), MessageReader::new()];
        self.open_bytes = [0, 0];
        self.in_flight = [BTreeMap::new(), BTreeMap::new()];
    }

    /// Moves bytes and answers requests until nothing more happens. The first error names
    /// the side whose link failed.
    pub fn drive(&mut self) -> Result<(), (usize, ReplicationError)> {
        for _ in 0..100_000 {
            let mut progress = false;
            for side in 0..2 {
                progress |= self.answer(side).map_err(|e| (side, e))?;
                while let Some(ev) = self.links[side].poll_event() {
                    self.events[side].push(ev);
                }
                let mut bytes = Vec::new();
                self.links[side].poll_transmit(&mut bytes);
                if !bytes.is_empty() {
                    progress = true;
                    self.tap(side, &bytes);
                    self.deliver(1 - side, &bytes).map_err(|e| (1 - side, e))?;
                }
            }
            if !progress {
                return Ok(());
            }
        }
        panic!("the links never went quiet");
    }

    /// Answers (or, when `auto` is off, holds) the requests of `side`.
    fn answer(&mut self, side: usize) -> Result<bool, ReplicationError> {
        let mut progress = false;
        while let Some(r) = self.links[side].poll_request() {
            progress = true;
            if self.auto[side] {
                self.serve(side, r)?;
            } else {
                self.held[side].push_back(r);
            }
        }
        Ok(progress)
    }

    /// Answers one request of `side` as a node does.
    pub fn serve(&mut self, side: usize, request: NodeRequest) -> Result<(), ReplicationError> {
        let (node, link) = (&mut self.nodes[side], &mut self.links[side]);
        match request {
            NodeRequest::ReadSegment {
                origin,
                from_seq,
                max_bytes,
            } => {
                let (entries, head) = node.read(&origin, from_seq, max_bytes);
                link.segment_read(origin, entries, head)
            }
            NodeRequest::Persist { segment } => {
                let (origin, seq) = (segment.origin(), segment.last_seq());
                let (head, fork) = node.persist(segment);
                if let Some(proof) = fork {
                    link.fork_stored(proof)?;
                }
                link.persisted(origin, seq)?;
                if let Some(head) = head {
                    link.local_commit(head)?;
                }
                Ok(())
            }
            NodeRequest::StoreFork { proof } => {
                node.forks.entry(proof.origin()).or_insert(proof.clone());
                link.fork_stored(proof)
            }
        }
    }

    /// Answers every held request of `side`.
    pub fn serve_held(&mut self, side: usize) -> Result<(), ReplicationError> {
        while let Some(r) = self.held[side].pop_front() {
            self.serve(side, r)?;
        }
        Ok(())
    }

    fn deliver(&mut self, side: usize, bytes: &[u8]) -> Result<(), ReplicationError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = match self.split {
                Split::Whole => rest.len(),
                Split::Pieces(n) => n.max(1),
                Split::Random(_) => self.rng.random_range(1..=rest.len().min(3000)),
            };
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            self.links[side].handle_stream(piece, self.now)?;
        }
        Ok(())
    }

    /// Reads what `side` sent and checks the window from the sender's view.
    fn tap(&mut self, side: usize, bytes: &[u8]) {
        self.taps[side].push(bytes);
        while let Some(m) = self.taps[side]
            .next_message()
            .expect("a link sends only valid messages")
        {
            match &m {
                Message::Entries(e) => {
                    self.open_bytes[side] +=
                        e.entries().iter().map(Entry::encoded_len).sum::<usize>();
                }
                Message::Head(h) => {
                    let bytes = std::mem::take(&mut self.open_bytes[side]);
                    let q = self.in_flight[side].entry(h.head.origin).or_default();
                    q.push_back(bytes);
                    let unacked: usize = self.in_flight[side].values().flatten().sum();
                    let segments: usize = self.in_flight[side].values().map(VecDeque::len).sum();
                    assert!(
                        unacked <= self.config.window || segments == 1,
                        "side {side} has {unacked} bytes in {segments} segments unacknowledged"
                    );
                }
                Message::Ack(a) => {
                    // Acknowledges a segment the other side sent.
                    let q = self.in_flight[1 - side].entry(a.origin).or_default();
                    q.pop_front();
                }
                _ => {}
            }
            self.sent[side].push(m);
        }
    }

    /// Moves the virtual clock to the earlier wake-up of the two links and fires it.
    pub fn jump(&mut self) -> Result<(), (usize, ReplicationError)> {
        let next = self.links.iter().filter_map(Link::poll_timeout).min();
        if let Some(t) = next {
            self.now = self.now.max(t);
        }
        for side in 0..2 {
            self.links[side]
                .handle_timeout(self.now)
                .map_err(|e| (side, e))?;
        }
        Ok(())
    }

    /// Moves the clock by `d` and fires the timers.
    pub fn advance(&mut self, d: Duration) -> Result<(), (usize, ReplicationError)> {
        self.now += d;
        for side in 0..2 {
            self.links[side]
                .handle_timeout(self.now)
                .map_err(|e| (side, e))?;
        }
        Ok(())
    }
}
