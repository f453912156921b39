//! Simulated links: the byte stream between two endpoints, re-chunked, delayed, stalled, reset
//! and (in adversary mode) tampered with.

use std::collections::VecDeque;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;

/// Tampering applied by an adversarial link. Each field is a probability per chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Adversary {
    /// Flip one random bit of the chunk.
    pub flip: f64,
    /// Deliver only a prefix of the chunk, then end the stream (EOF).
    pub truncate: f64,
    /// Insert 1 to 32 random bytes before the chunk.
    pub inject: f64,
    /// Deliver a copy of an earlier chunk of this direction before the chunk.
    pub replay: f64,
}

impl Adversary {
    /// No tampering at all.
    pub fn none() -> Self {
        Adversary::default()
    }

    /// A mix of every kind of tampering, rare enough that some sessions get past the
    /// handshake before being hit.
    pub fn moderate() -> Self {
        Adversary {
            flip: 0.01,
            truncate: 0.003,
            inject: 0.005,
            replay: 0.005,
        }
    }

    /// Whether any tampering can happen.
    pub fn is_active(&self) -> bool {
        [self.flip, self.truncate, self.inject, self.replay]
            .iter()
            .any(|p| *p > 0.0)
    }
}

/// How one direction of a link carries bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Re-chunking: each write is cut into pieces of 1..=`max_chunk` bytes at random points
    /// (0 keeps every write whole).
    pub max_chunk: usize,
    /// Smallest delay of a chunk.
    pub min_delay: Duration,
    /// Largest delay of a chunk (before any stall).
    pub max_delay: Duration,
    /// Probability per chunk that the link stalls: the chunk (and so everything after it,
    /// since order is kept) is held up to `max_stall` longer.
    pub stall: f64,
    /// Longest stall.
    pub max_stall: Duration,
    /// Probability per chunk that the link resets: in-flight data is lost in both directions
    /// and both ends see the connection reset.
    pub reset: f64,
    /// After this many bytes have been written, the direction stalls forever: later bytes
    /// (and EOF) are never delivered.
    pub cut_after: Option<u64>,
    /// Tampering (adversary mode).
    pub adversary: Adversary,
}

impl LinkConfig {
    /// Instant, whole-write delivery: a perfect pipe.
    pub fn ideal() -> Self {
        LinkConfig {
            max_chunk: 0,
            min_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            stall: 0.0,
            max_stall: Duration::ZERO,
            reset: 0.0,
            cut_after: None,
            adversary: Adversary::none(),
        }
    }

    /// Whole writes delivered after exactly `delay`.
    pub fn fixed_delay(delay: Duration) -> Self {
        LinkConfig {
            min_delay: delay,
            max_delay: delay,
            ..LinkConfig::ideal()
        }
    }

    /// Re-chunking into pieces of at most `max_chunk` bytes, delays of 0-20 ms and
    /// occasional stalls of up to 500 ms: everything arrives, in order.
    pub fn benign(max_chunk: usize) -> Self {
        LinkConfig {
            max_chunk,
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(20),
            stall: 0.02,
            max_stall: Duration::from_millis(500),
            ..LinkConfig::ideal()
        }
    }

    /// This configuration with resets at probability `p` per chunk.
    pub fn with_reset(mut self, p: f64) -> Self {
        self.reset = p;
        self
    }

    /// This configuration with tampering.
    pub fn with_adversary(mut self, adversary: Adversary) -> Self {
        self.adversary = adversary;
        self
    }

    /// This configuration, stalling forever after `bytes` bytes.
    pub fn cut_after(mut self, bytes: u64) -> Self {
        self.cut_after = Some(bytes);
        self
    }

    /// Whether everything written is delivered unaltered and in order (re-chunking, delay
    /// and finite stalls only).
    pub fn is_benign(&self) -> bool {
        self.reset <= 0.0 && self.cut_after.is_none() && !self.adversary.is_active()
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig::ideal()
    }
}

/// Both directions of a link.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkSpec {
    /// Client to server.
    pub to_server: LinkConfig,
    /// Server to client.
    pub to_client: LinkConfig,
}

impl LinkSpec {
    /// The same configuration both ways.
    pub fn symmetric(config: LinkConfig) -> Self {
        LinkSpec {
            to_server: config.clone(),
            to_client: config,
        }
    }

    /// Whether both directions are benign.
    pub fn is_benign(&self) -> bool {
        self.to_server.is_benign() && self.to_client.is_benign()
    }
}

/// What travels in a link direction.
#[derive(Debug, Clone)]
pub(crate) enum Chunk {
    Data(Vec<u8>),
    Eof,
    Reset,
}

/// A chunk in flight.
#[derive(Debug)]
pub(crate) struct Item {
    pub at: Duration,
    pub seq: u64,
    pub chunk: Chunk,
}

/// One direction of a link.
#[derive(Debug)]
pub(crate) struct Dir {
    pub config: LinkConfig,
    pub queue: VecDeque<Item>,
    /// Delivery time of the last queued item (deliveries keep stream order).
    pub last_at: Duration,
    /// Bytes written by the sender.
    pub written: u64,
    /// Bytes delivered to the receiver.
    pub delivered: u64,
    /// Recent clean chunks, for replay.
    pub history: VecDeque<Vec<u8>>,
    /// When the adversary first altered this direction.
    pub tampered_at: Option<Duration>,
    /// Nothing more is accepted (EOF written, reset, truncated).
    pub closed: bool,
    /// Stalled forever: nothing queued or written is ever delivered.
    pub cut: bool,
}

const HISTORY: usize = 32;

/// What happened to one write, for the trace.
#[derive(Debug, Default)]
pub(crate) struct WriteReport {
    pub chunks: usize,
    pub notes: Vec<String>,
    pub reset: bool,
}

impl Dir {
    pub fn new(config: LinkConfig) -> Self {
        Dir {
            config,
            queue: VecDeque::new(),
            last_at: Duration::ZERO,
            written: 0,
            delivered: 0,
            history: VecDeque::new(),
            tampered_at: None,
            closed: false,
            cut: false,
        }
    }

    /// The next deliverable item, unless stalled forever.
    pub fn front(&self) -> Option<&Item> {
        if self.cut { None } else { self.queue.front() }
    }

    fn push(
        &mut self,
        rng: &mut StdRng,
        now: Duration,
        seq: &mut u64,
        chunk: Chunk,
        stalled: bool,
    ) {
        let mut delay = random_duration(rng, self.config.min_delay, self.config.max_delay);
        if stalled {
            delay =
                delay.saturating_add(random_duration(rng, Duration::ZERO, self.config.max_stall));
        }
        let at = now.saturating_add(delay).max(self.last_at);
        self.last_at = at;
        *seq += 1;
        self.queue.push_back(Item {
            at,
            seq: *seq,
            chunk,
        });
    }

    /// Queues `data` (re-chunked, delayed, maybe tampered). A reset is reported, not applied:
    /// the caller resets both directions.
    pub fn write(
        &mut self,
        rng: &mut StdRng,
        now: Duration,
        seq: &mut u64,
        data: &[u8],
    ) -> WriteReport {
        let mut report = WriteReport::default();
        if self.closed || data.is_empty() {
            return report;
        }
        let mut data = data;
        if let Some(limit) = self.config.cut_after {
            let room = usize::try_from(limit.saturating_sub(self.written)).unwrap_or(usize::MAX);
            if room < data.len() {
                data = data.get(..room).unwrap_or_default();
                self.cut_rest();
                report.notes.push("cut".into());
            }
        }
        self.written += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            let n = if self.config.max_chunk == 0 {
                rest.len()
            } else {
                rng.random_range(1..=self.config.max_chunk.min(rest.len()))
            };
            let (piece, tail) = rest.split_at(n);
            rest = tail;
            if chance(rng, self.config.reset) {
                report.reset = true;
                return report;
            }
            let stalled = chance(rng, self.config.stall);
            if stalled {
                report.notes.push("stall".into());
            }
            let adv = self.config.adversary;
            if chance(rng, adv.replay) && !self.history.is_empty() {
                let i = rng.random_range(0..self.history.len());
                if let Some(old) = self.history.get(i).cloned() {
                    report.notes.push(format!("replay {}B", old.len()));
                    self.tamper(now);
                    self.push(rng, now, seq, Chunk::Data(old), false);
                    report.chunks += 1;
                }
            }
            if chance(rng, adv.inject) {
                let len = rng.random_range(1..=32usize);
                let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                report.notes.push(format!("inject {len}B"));
                self.tamper(now);
                self.push(rng, now, seq, Chunk::Data(junk), false);
                report.chunks += 1;
            }
            let mut piece = piece.to_vec();
            self.history.push_back(piece.clone());
            if self.history.len() > HISTORY {
                self.history.pop_front();
            }
            if chance(rng, adv.flip) {
                let bit = rng.random_range(0..piece.len() * 8);
                if let Some(b) = piece.get_mut(bit / 8) {
                    *b ^= 1 << (bit % 8);
                }
                report.notes.push(format!("flip bit {bit}"));
                self.tamper(now);
            }
            if chance(rng, adv.truncate) {
                let keep = rng.random_range(0..piece.len());
                piece.truncate(keep);
                report.notes.push(format!("truncate to {keep}B"));
                self.tamper(now);
                if !piece.is_empty() {
                    self.push(rng, now, seq, Chunk::Data(piece), stalled);
                    report.chunks += 1;
                }
                self.push(rng, now, seq, Chunk::Eof, false);
                self.closed = true;
                return report;
            }
            self.push(rng, now, seq, Chunk::Data(piece), stalled);
            report.chunks += 1;
        }
        report
    }

    /// The writer closed its end: EOF follows the data.
    pub fn write_eof(&mut self, rng: &mut StdRng, now: Duration, seq: &mut u64) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.push(rng, now, seq, Chunk::Eof, false);
    }

    /// Stalls this direction forever from now on.
    pub fn cut_rest(&mut self) {
        self.cut = true;
    }

    /// The connection was reset: in-flight data is lost and the receiver learns of the reset
    /// at once.
    pub fn reset(&mut self, now: Duration, seq: &mut u64) {
        self.queue.clear();
        self.closed = true;
        self.cut = false;
        *seq += 1;
        self.last_at = self.last_at.max(now);
        self.queue.push_back(Item {
            at: now,
            seq: *seq,
            chunk: Chunk::Reset,
        });
    }

    fn tamper(&mut self, now: Duration) {
        self.tampered_at.get_or_insert(now);
    }
}

/// True with probability `p` (false for `p <= 0` or NaN, without drawing).
pub(crate) fn chance(rng: &mut StdRng, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        return false;
    }
    rng.random::<f64>() < p
}

/// A uniformly random duration in `[a, b]` (or `[b, a]`), at nanosecond resolution.
pub(crate) fn random_duration(rng: &mut StdRng, a: Duration, b: Duration) -> Duration {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    if lo == hi {
        return lo;
    }
    let lo_n = u64::try_from(lo.as_nanos()).unwrap_or(u64::MAX);
    let hi_n = u64::try_from(hi.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(lo_n..=hi_n))
}
