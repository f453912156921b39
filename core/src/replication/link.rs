//! The replication link machine: one per server-to-server link, sans-IO.
//!
//! Both ends run the same machine (who dialed matters only for the `peer` command that
//! precedes it). The driver feeds it stream bytes ([`Link::handle_stream`]), the local node's
//! answers ([`Link::segment_read`], [`Link::persisted`]), the node's news
//! ([`Link::local_commit`], [`Link::fork_stored`]) and time ([`Link::handle_timeout`]); after
//! every input it drains, until empty, the bytes to send ([`Link::poll_transmit`]), the work
//! for the node ([`Link::poll_request`]) and the events ([`Link::poll_event`]), then waits
//! until [`Link::poll_timeout`].
//!
//! What it guarantees (`spec/replication.md` §5-§8): it sends its Wants (when it follows a
//! list of origins), its Clock and held fork proofs first; it never sends a segment of an
//! origin the peer's Wants left out, and refuses one the peer sends of an origin its own
//! Wants left out; it sends each feed the peer lacks in segments read from the node, at most one read
//! in flight per origin, never more than the window unacknowledged (a lone bigger segment
//! excepted); it pushes local commits live; it runs the accept rule on every received
//! segment and acks each one only after the node said it is persisted (or at once when there
//! was nothing to persist), in order per origin; it re-sends its Clock every clock interval.
//! It keeps nothing that a new link would need: a link made after a reconnect starts from the
//! node's heads and the peer's clock alone. Any error it returns is fatal: the link accepts
//! nothing more and the caller closes the connection; nothing the node stored is affected.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::accept::{SegmentBuilder, Verdict, accept};
use super::fork::ForkProof;
use super::message::{
    Ack, Clock, ClockEntry, ENTRIES_OVERHEAD, Entries, Message, MessageReader, Wants,
};
use super::{
    CLOCK_INTERVAL, Epoch, MAX_MESSAGE, MAX_SEGMENT_BYTES, MAX_SEGMENT_ENTRIES, ReplicationError,
    Segment, WINDOW,
};
use crate::ServerKey;
use crate::ledger::{Entry, SignedHead};

/// The tunables of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Most entry bytes sent and not yet acknowledged ([`WINDOW`] by default; both ends must
    /// agree, as a receiver refuses a sender that exceeds its own value).
    pub window: usize,
    /// How often the Clock is sent again ([`CLOCK_INTERVAL`] by default).
    pub clock_interval: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            window: WINDOW,
            clock_interval: CLOCK_INTERVAL,
        }
    }
}

/// Work the link asks of the local node. Every request is answered exactly once (a node that
/// drops the link drops the answers too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRequest {
    /// Read entries of `origin` from `from_seq` on, ending at a stored signed head: up to the
    /// first stored signed head at which the entries reach `max_bytes` bytes, or up to the
    /// held head, whichever comes first (at least one whole commit however big), but never
    /// more than [`MAX_SEGMENT_ENTRIES`] entries and [`MAX_SEGMENT_BYTES`] bytes (stop at the
    /// last stored signed head within them; one commit always is). Answer with
    /// [`Link::segment_read`] (no entries if none are held from `from_seq`).
    ReadSegment {
        /// The feed.
        origin: ServerKey,
        /// The first seq wanted.
        from_seq: u64,
        /// The byte budget of the answer.
        max_bytes: usize,
    },
    /// Persist this accepted segment (entries, indexes, the signed head, in one atomic
    /// durable batch). The node must apply [`accept`] again against its current head (another
    /// link may have stored some of it meanwhile), then answer with [`Link::persisted`]
    /// whatever it stored.
    Persist {
        /// The segment, already checked by the accept rule against the link's view.
        segment: Segment,
    },
    /// Store this verified fork proof and quarantine its origin (keep the first proof if one
    /// is already held); then tell every other link with [`Link::fork_stored`].
    StoreFork {
        /// The proof.
        proof: ForkProof,
    },
}

/// What happened on the link, for the node's status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The peer sent its clock (the first one, or a periodic one).
    PeerClock {
        /// The peer's store epoch (a changed epoch means a wiped or replaced peer).
        epoch: Epoch,
        /// What the peer holds.
        clock: Clock,
    },
    /// A fork of `origin` was found on this link or received from the peer; the proof is in a
    /// [`NodeRequest::StoreFork`].
    Fork {
        /// The quarantined origin.
        origin: ServerKey,
    },
    /// The node now holds `origin` at least as far as the peer's latest clock listed it.
    CaughtUp {
        /// The feed.
        origin: ServerKey,
    },
    /// The peer acknowledged `origin` up to `seq`.
    Acked {
        /// The feed.
        origin: ServerKey,
        /// The acknowledged seq.
        seq: u64,
    },
    /// A segment of `origin` ending at `seq` went to the peer.
    Sent {
        /// The feed.
        origin: ServerKey,
        /// The seq of the segment's head.
        seq: u64,
        /// How many entries it holds.
        entries: usize,
    },
}

/// A segment read from the node, waiting for window space.
#[derive(Debug)]
struct Ready {
    origin: ServerKey,
    entries: Vec<Entry>,
    head: SignedHead,
    bytes: usize,
}

/// What the link sends of one origin.
#[derive(Debug, Default)]
struct Sending {
    /// The next seq the peer needs.
    next: u64,
    /// The `(from_seq, max_bytes)` of the read in flight.
    reading: Option<(u64, usize)>,
    /// The node answered "nothing" when its head had this seq: do not ask again before it
    /// moves.
    stalled_at: Option<u64>,
    /// Segments sent and not acknowledged: `(last seq, bytes)`, oldest first.
    in_flight: VecDeque<(u64, usize)>,
    /// This link already sent the feed again from where the peer's clock said it stood
    /// below what it had acknowledged (see `on_peer_holds`): once per link.
    rewound: bool,
}

/// A received segment waiting for its Ack.
#[derive(Debug)]
struct Pending {
    seq: u64,
    bytes: usize,
    done: bool,
}

/// One replication link (see the module documentation).
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    epoch: Epoch,
    /// The only origins this side takes from the peer (`None`: every one).
    wants: Option<Wants>,
    /// The only origins the peer takes (`None`: every one), from its Wants.
    peer_wants: Option<Wants>,
    /// The node's persisted heads (own feed and replicas).
    held: BTreeMap<ServerKey, SignedHead>,
    /// The accept rule's view: `held`, advanced by segments accepted on this link.
    accepted: BTreeMap<ServerKey, SignedHead>,
    quarantine: BTreeMap<ServerKey, ()>,
    reader: MessageReader,
    out: Vec<u8>,
    requests: VecDeque<NodeRequest>,
    events: VecDeque<LinkEvent>,
    closed: bool,
    next_clock: Instant,

    // --- receiving ---
    peer_epoch: Option<Epoch>,
    /// Seqs of the peer's latest clock not yet reached by `held`.
    awaiting: BTreeMap<ServerKey, u64>,
    open: Option<SegmentBuilder>,
    pending: BTreeMap<ServerKey, VecDeque<Pending>>,
    /// Entry bytes of received segments not yet acknowledged.
    unacked_in: usize,

    // --- sending ---
    sending: BTreeMap<ServerKey, Sending>,
    ready: VecDeque<Ready>,
    /// Entry bytes sent and not yet acknowledged.
    unacked_out: usize,
    /// Bytes promised to reads in flight and to ready segments.
    reserved: usize,
}

impl Link {
    /// A link of a node whose store epoch is `epoch`, holding the feeds whose signed heads
    /// are `heads` (one per origin, each the newest stored) and the fork proofs `forks`
    /// (already verified and stored). Queues the Clock and the proofs to send. Fails with
    /// [`ReplicationError::Misuse`] on two heads of one origin, a head at seq 0, more feeds
    /// than a Clock lists, or a window of 0.
    pub fn new(
        epoch: Epoch,
        heads: Vec<SignedHead>,
        forks: Vec<ForkProof>,
        config: LinkConfig,
        now: Instant,
    ) -> Result<Self, ReplicationError> {
        Link::following(epoch, heads, forks, None, config, now)
    }

    /// [`Link::new`] of a node that takes from the peer the feeds of `wants`' origins only
    /// (`None`: every feed, as [`Link::new`]): the Wants is sent first, the peer then sends
    /// nothing else, and a segment of another origin from the peer is refused
    /// ([`ReplicationError::Unwanted`]). A node that wants to see its own feed offered back
    /// (a store that lost entries, `spec/replication.md` §8) lists its own key.
    pub fn following(
        epoch: Epoch,
        heads: Vec<SignedHead>,
        forks: Vec<ForkProof>,
        wants: Option<Wants>,
        config: LinkConfig,
        now: Instant,
    ) -> Result<Self, ReplicationError> {
        if config.window == 0 {
            return Err(ReplicationError::Misuse("a window of 0 bytes"));
        }
        let mut held = BTreeMap::new();
        for h in heads {
            if h.head.seq == 0 || held.insert(h.head.origin, h).is_some() {
                return Err(ReplicationError::Misuse("one non-empty head per origin"));
            }
        }
        let mut out = Vec::new();
        if let Some(w) = &wants {
            Message::Wants(w.clone()).encode(&mut out);
        }
        let mut link = Link {
            config,
            epoch,
            wants,
            peer_wants: None,
            accepted: held.clone(),
            held,
            quarantine: BTreeMap::new(),
            reader: MessageReader::new(),
            out,
            requests: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
            next_clock: now + config.clock_interval,
            peer_epoch: None,
            awaiting: BTreeMap::new(),
            open: None,
            pending: BTreeMap::new(),
            unacked_in: 0,
            sending: BTreeMap::new(),
            ready: VecDeque::new(),
            unacked_out: 0,
            reserved: 0,
        };
        link.send_clock()
            .map_err(|_| ReplicationError::Misuse("too many feeds"))?;
        for proof in forks {
            if link.quarantine.insert(proof.origin(), ()).is_none() {
                Message::Fork(proof).encode(&mut link.out);
            }
        }
        Ok(link)
    }

    // -----------------------------------------------------------------------------------------
    // Outputs
    // -----------------------------------------------------------------------------------------

    /// Appends the stream bytes to send to `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    /// The next piece of work for the node.
    pub fn poll_request(&mut self) -> Option<NodeRequest> {
        self.requests.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`Link::handle_timeout`] must be called next (`None` once closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed).then_some(self.next_clock)
    }

    /// True once the link failed: it accepts nothing more.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // -----------------------------------------------------------------------------------------
    // Inputs
    // -----------------------------------------------------------------------------------------

    /// Handles received stream bytes (any fragment). An error is fatal (the link is closed).
    pub fn handle_stream(&mut self, bytes: &[u8], _now: Instant) -> Result<(), ReplicationError> {
        self.check_open()?;
        self.reader.push(bytes);
        let result = self.read_messages();
        if result.is_err() {
            self.closed = true;
        }
        result
    }

    /// Sends the Clock again if its time has come.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ReplicationError> {
        self.check_open()?;
        if now >= self.next_clock {
            self.send_clock()?;
            self.next_clock = now + self.config.clock_interval;
        }
        Ok(())
    }

    /// The node's answer to [`NodeRequest::ReadSegment`]: entries from the requested seq on
    /// and the stored signed head of the last one (`None` and no entries if it holds none).
    /// Refuses, changing nothing, an answer to no request or one that is not such a segment.
    pub fn segment_read(
        &mut self,
        origin: ServerKey,
        entries: Vec<Entry>,
        head: Option<SignedHead>,
    ) -> Result<(), ReplicationError> {
        self.check_open()?;
        let st = self
            .sending
            .get_mut(&origin)
            .ok_or(ReplicationError::Misuse("no read of this origin"))?;
        let (from, budget) = st
            .reading
            .ok_or(ReplicationError::Misuse("no read of this origin"))?;
        let Some(head) = head else {
            if !entries.is_empty() {
                return Err(ReplicationError::Misuse("entries without their head"));
            }
            st.reading = None;
            st.stalled_at = self.held.get(&origin).map(|h| h.head.seq);
            self.reserved -= budget;
            self.pump();
            return Ok(());
        };
        let consecutive = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.origin() == origin && e.seq() == from + i as u64);
        let last = entries.last().map(Entry::seq);
        let bytes: usize = entries.iter().map(Entry::encoded_len).sum();
        if entries.len() > MAX_SEGMENT_ENTRIES || bytes > MAX_SEGMENT_BYTES {
            return Err(ReplicationError::Misuse(
                "a segment beyond the segment bounds",
            ));
        }
        if !consecutive || last != Some(head.head.seq) || head.head.origin != origin {
            return Err(ReplicationError::Misuse(
                "not the entries from the requested seq up to their head",
            ));
        }
        st.reading = None;
        st.next = st.next.max(head.head.seq.saturating_add(1));
        self.reserved -= budget;
        if !self.quarantine.contains_key(&origin) {
            self.reserved += bytes;
            self.ready.push_back(Ready {
                origin,
                entries,
                head,
                bytes,
            });
        }
        self.pump();
        Ok(())
    }

    /// The node's answer to [`NodeRequest::Persist`]: the segment of `origin` ending at `seq`
    /// is durably stored (or the node found nothing to store in it). Releases its Ack, and
    /// those after it. Refuses, changing nothing, a seq that is not the oldest segment of
    /// `origin` waiting to be persisted.
    pub fn persisted(&mut self, origin: ServerKey, seq: u64) -> Result<(), ReplicationError> {
        self.check_open()?;
        let slot = self
            .pending
            .get_mut(&origin)
            .and_then(|q| q.iter_mut().find(|p| !p.done))
            .filter(|p| p.seq == seq)
            .ok_or(ReplicationError::Misuse(
                "no such segment waits to be persisted",
            ))?;
        slot.done = true;
        self.flush_acks(origin);
        Ok(())
    }

    /// The node now holds `origin` up to `head` (its own commit, or a replica persisted from
    /// any link). Live-pushes it to the peer when the peer lacks it. An older head changes
    /// nothing.
    pub fn local_commit(&mut self, head: SignedHead) -> Result<(), ReplicationError> {
        self.check_open()?;
        let origin = head.head.origin;
        if self
            .held
            .get(&origin)
            .is_some_and(|h| h.head.seq >= head.head.seq)
            || head.head.seq == 0
        {
            return Ok(());
        }
        self.held.insert(origin, head);
        if self
            .accepted
            .get(&origin)
            .is_none_or(|h| h.head.seq < head.head.seq)
        {
            self.accepted.insert(origin, head);
        }
        if self
            .awaiting
            .get(&origin)
            .is_some_and(|&p| head.head.seq >= p)
        {
            self.awaiting.remove(&origin);
            self.events.push_back(LinkEvent::CaughtUp { origin });
        }
        if self.peer_epoch.is_some() {
            self.sending.entry(origin).or_insert_with(|| Sending {
                next: 1,
                ..Sending::default()
            });
        }
        self.pump();
        Ok(())
    }

    /// The node stored a fork proof (found by any link): quarantines the origin and passes
    /// the proof on to the peer, unless this link already quarantined it.
    pub fn fork_stored(&mut self, proof: ForkProof) -> Result<(), ReplicationError> {
        self.check_open()?;
        if !self.quarantine.contains_key(&proof.origin()) {
            self.quarantine_origin(proof.origin());
            Message::Fork(proof).encode(&mut self.out);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Receiving
    // -----------------------------------------------------------------------------------------

    fn check_open(&self) -> Result<(), ReplicationError> {
        if self.closed {
            Err(ReplicationError::Closed)
        } else {
            Ok(())
        }
    }

    fn read_messages(&mut self) -> Result<(), ReplicationError> {
        while let Some(message) = self.reader.next_message()? {
            self.handle_message(message)?;
        }
        self.pump();
        Ok(())
    }

    fn handle_message(&mut self, message: Message) -> Result<(), ReplicationError> {
        if self.peer_epoch.is_none() {
            match message {
                Message::Clock(_) => {}
                Message::Wants(wants) if self.peer_wants.is_none() => {
                    self.peer_wants = Some(wants);
                    return Ok(());
                }
                _ => {
                    return Err(ReplicationError::Unexpected(
                        "the first message must be a Clock",
                    ));
                }
            }
        }
        if self.open.is_some() && !matches!(message, Message::Entries(_) | Message::Head(_)) {
            return Err(ReplicationError::Unexpected("a segment is open"));
        }
        match message {
            Message::Clock(clock) => self.on_clock(clock),
            Message::Entries(entries) => {
                if self
                    .wants
                    .as_ref()
                    .is_some_and(|w| !w.contains(entries.origin()))
                {
                    return Err(ReplicationError::Unwanted);
                }
                let builder = self
                    .open
                    .get_or_insert_with(|| SegmentBuilder::new(*entries.origin()));
                builder.push_entries(entries)
            }
            Message::Head(head) => {
                let builder = self
                    .open
                    .take()
                    .ok_or(ReplicationError::HeadWithoutEntries)?;
                self.on_segment(builder.finish(head)?)
            }
            Message::Ack(ack) => self.on_ack(ack),
            Message::Fork(proof) => self.on_fork(proof),
            Message::Wants(_) => Err(ReplicationError::Unexpected("a Wants after the Clock")),
        }
    }

    fn on_clock(&mut self, clock: Clock) -> Result<(), ReplicationError> {
        let epoch = *clock.epoch();
        match self.peer_epoch {
            _ if epoch == self.epoch => return Err(ReplicationError::SelfLink),
            Some(e) if e != epoch => return Err(ReplicationError::EpochChanged),
            Some(_) => {}
            None => {
                self.peer_epoch = Some(epoch);
                // Every held feed: the peer needs it from seq 1 unless its clock says more.
                for origin in self.held.keys() {
                    self.sending.insert(
                        *origin,
                        Sending {
                            next: 1,
                            ..Sending::default()
                        },
                    );
                }
            }
        }
        self.awaiting.clear();
        // Forget the peer's position in feeds this node neither holds nor sees in this
        // clock, so that a peer listing ever new origins cannot grow the map without bound.
        let listed: BTreeMap<ServerKey, ()> =
            clock.feeds().iter().map(|f| (f.origin, ())).collect();
        let held = &self.held;
        self.sending.retain(|o, st| {
            held.contains_key(o) || listed.contains_key(o) || !st.in_flight.is_empty()
        });
        for f in clock.feeds() {
            self.on_peer_holds(f);
        }
        self.events.push_back(LinkEvent::PeerClock { epoch, clock });
        Ok(())
    }

    /// The peer's clock lists `f`.
    fn on_peer_holds(&mut self, f: &ClockEntry) {
        let own = self.held.get(&f.origin).map(|h| h.head);
        if own.is_none_or(|h| h.seq < f.seq) && !self.quarantine.contains_key(&f.origin) {
            self.awaiting.insert(f.origin, f.seq);
        }
        let ready = self.ready.iter().any(|r| r.origin == f.origin);
        // A feed the peer holds and this node does not yet: the peer needs it after `f.seq`
        // if this node ever gets it.
        let st = self.sending.entry(f.origin).or_insert_with(|| Sending {
            next: 1,
            ..Sending::default()
        });
        let idle = st.reading.is_none() && st.in_flight.is_empty() && !ready;
        match own {
            // Level with another hash: send the last segment again so the peer sees the fork.
            Some(h)
                if h.seq == f.seq
                    && h.hash != f.hash
                    && idle
                    && st.next <= f.seq.saturating_add(1) =>
            {
                st.next = f.seq;
                st.stalled_at = None;
            }
            // The peer lists the feed below what it acknowledged: it lost entries (a wiped
            // store under a kept key, a restore). Send again from after what it lists, once
            // per link: it ignores what it holds and finds the fork if its feed diverged,
            // and a peer that will not take them (its own origin) is not sent them again
            // and again.
            Some(h)
                if f.seq < h.seq && f.seq.saturating_add(1) < st.next && idle && !st.rewound =>
            {
                st.next = f.seq.saturating_add(1);
                st.stalled_at = None;
                st.rewound = true;
            }
            _ => st.next = st.next.max(f.seq.saturating_add(1)),
        }
        // Drop the ready segments the peer already holds whole; one read ahead of `f.seq`
        // (waiting for window space) is still needed: `next` is past it already.
        let keep_from = st.next.min(f.seq.saturating_add(1));
        self.ready
            .retain(|r| r.origin != f.origin || r.head.head.seq >= keep_from);
        self.recount_reserved();
    }

    fn on_segment(&mut self, segment: Segment) -> Result<(), ReplicationError> {
        let origin = segment.origin();
        let (seq, bytes) = (segment.last_seq(), segment.encoded_len());
        if self.unacked_in > 0 && self.unacked_in + bytes > self.config.window {
            return Err(ReplicationError::WindowExceeded);
        }
        let verdict = accept(
            self.accepted.get(&origin),
            self.quarantine.contains_key(&origin),
            segment,
        )?;
        // The peer holds what it sent: never send it back.
        if let Some(st) = self.sending.get_mut(&origin) {
            st.next = st.next.max(seq.saturating_add(1));
        } else {
            self.sending.insert(
                origin,
                Sending {
                    next: seq.saturating_add(1),
                    ..Sending::default()
                },
            );
        }
        let done = match verdict {
            Verdict::Append(segment) => {
                self.accepted.insert(origin, *segment.head());
                self.requests.push_back(NodeRequest::Persist { segment });
                false
            }
            Verdict::Ignore | Verdict::Quarantined => true,
            Verdict::Fork(proof) => {
                self.quarantine_origin(origin);
                Message::Fork(proof.clone()).encode(&mut self.out);
                self.requests.push_back(NodeRequest::StoreFork { proof });
                self.events.push_back(LinkEvent::Fork { origin });
                true
            }
        };
        self.unacked_in += bytes;
        self.pending
            .entry(origin)
            .or_default()
            .push_back(Pending { seq, bytes, done });
        self.flush_acks(origin);
        Ok(())
    }

    fn on_ack(&mut self, ack: Ack) -> Result<(), ReplicationError> {
        let st = self
            .sending
            .get_mut(&ack.origin)
            .filter(|st| st.in_flight.front().is_some_and(|(s, _)| *s == ack.seq))
            .ok_or(ReplicationError::UnsolicitedAck { seq: ack.seq })?;
        if let Some((_, bytes)) = st.in_flight.pop_front() {
            self.unacked_out -= bytes;
        }
        self.events.push_back(LinkEvent::Acked {
            origin: ack.origin,
            seq: ack.seq,
        });
        Ok(())
    }

    fn on_fork(&mut self, proof: ForkProof) -> Result<(), ReplicationError> {
        proof.verify()?;
        let origin = proof.origin();
        if !self.quarantine.contains_key(&origin) {
            self.quarantine_origin(origin);
            self.requests.push_back(NodeRequest::StoreFork { proof });
            self.events.push_back(LinkEvent::Fork { origin });
        }
        Ok(())
    }

    fn quarantine_origin(&mut self, origin: ServerKey) {
        self.quarantine.insert(origin, ());
        self.awaiting.remove(&origin);
        self.ready.retain(|r| r.origin != origin);
        self.recount_reserved();
    }

    /// Sends the Acks of `origin` that are due, oldest first.
    fn flush_acks(&mut self, origin: ServerKey) {
        let Some(queue) = self.pending.get_mut(&origin) else {
            return;
        };
        while let Some(p) = queue.front().filter(|p| p.done) {
            Message::Ack(Ack { origin, seq: p.seq }).encode(&mut self.out);
            self.unacked_in -= p.bytes;
            queue.pop_front();
        }
        if queue.is_empty() {
            self.pending.remove(&origin);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sending
    // -----------------------------------------------------------------------------------------

    fn send_clock(&mut self) -> Result<(), ReplicationError> {
        let feeds = self
            .held
            .values()
            .map(|h| ClockEntry {
                origin: h.head.origin,
                seq: h.head.seq,
                hash: h.head.hash,
            })
            .collect();
        Message::Clock(Clock::new(self.epoch, feeds)?).encode(&mut self.out);
        Ok(())
    }

    fn recount_reserved(&mut self) {
        let reading: usize = self
            .sending
            .values()
            .filter_map(|st| st.reading.map(|(_, budget)| budget))
            .sum();
        self.reserved = reading + self.ready.iter().map(|r| r.bytes).sum::<usize>();
    }

    /// Sends ready segments the window allows, then asks for more reads.
    fn pump(&mut self) {
        while let Some(r) = self.ready.front() {
            if self.unacked_out > 0 && self.unacked_out + r.bytes > self.config.window {
                break;
            }
            let Some(r) = self.ready.pop_front() else {
                break;
            };
            self.reserved -= r.bytes;
            self.send_segment(r);
        }
        if self.peer_epoch.is_none() {
            return;
        }
        for (origin, st) in &mut self.sending {
            let committed = self.unacked_out + self.reserved;
            if committed >= self.config.window {
                break;
            }
            let Some(held) = self.held.get(origin) else {
                continue;
            };
            let seq = held.head.seq;
            if st.reading.is_some()
                || st.next > seq
                || st.stalled_at == Some(seq)
                || self.quarantine.contains_key(origin)
                || self
                    .peer_wants
                    .as_ref()
                    .is_some_and(|w| !w.contains(origin))
            {
                continue;
            }
            // A quarter of the window per read, so that several origins stream at once.
            let budget = (self.config.window - committed)
                .min(self.config.window / 4)
                .max(1);
            st.reading = Some((st.next, budget));
            st.stalled_at = None;
            self.reserved += budget;
            self.requests.push_back(NodeRequest::ReadSegment {
                origin: *origin,
                from_seq: st.next,
                max_bytes: budget,
            });
        }
    }

    /// Writes one segment: Entries messages of at most [`MAX_MESSAGE`], then its Head.
    fn send_segment(&mut self, r: Ready) {
        let Ready {
            origin,
            entries,
            head,
            bytes,
        } = r;
        self.events.push_back(LinkEvent::Sent {
            origin,
            seq: head.head.seq,
            entries: entries.len(),
        });
        let mut batch = Vec::new();
        let mut size = ENTRIES_OVERHEAD;
        for e in entries {
            let len = 4 + e.encoded_len();
            if !batch.is_empty() && size + len > MAX_MESSAGE {
                self.send_entries(origin, std::mem::take(&mut batch));
                size = ENTRIES_OVERHEAD;
            }
            size += len;
            batch.push(e);
        }
        if !batch.is_empty() {
            self.send_entries(origin, batch);
        }
        Message::Head(head).encode(&mut self.out);
        self.unacked_out += bytes;
        self.sending
            .entry(origin)
            .or_default()
            .in_flight
            .push_back((head.head.seq, bytes));
    }

    fn send_entries(&mut self, origin: ServerKey, batch: Vec<Entry>) {
        // Every batch is non-empty, of `origin`, and within MAX_MESSAGE by construction, so
        // `Entries::new` cannot fail; a failure would be a bug in the batching above.
        if let Ok(m) = Entries::new(origin, batch) {
            Message::Entries(m).encode(&mut self.out);
        }
    }
}
