//! A deterministic datagram network for sealed UDP queries (spec/datagrams.md), sans-IO like
//! the rest of the simulator: one seeded [`StdRng`] decides every loss, duplicate, delay (so
//! reordering) and every attacker move; a virtual clock (Unix milliseconds) jumps to the next
//! delivery. One server ([`vserv_service::Service::datagram`]) sits at [`SERVER_ADDR`]; any
//! number of clients send from their own addresses. An on-path attacker
//! ([`DatagramAttacker`]) sees every datagram sent to the server and may replay it later,
//! from its own address or spoofing another one, and may forge (bit-flipped) copies. Blocking
//! work a request turns into runs at its delivery instant, inline, its answer sent through
//! the network like any other.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vserv_service::Service;
use vserv_service::datagram::{DatagramOutcome, IvSource};

/// The server's address on the simulated network.
pub const SERVER_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    7117,
);

/// How the network treats each datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetConfig {
    /// Datagrams lost, per thousand.
    pub loss_per_mille: u32,
    /// Datagrams delivered twice, per thousand.
    pub duplicate_per_mille: u32,
    /// The fixed one-way delay, milliseconds.
    pub delay_ms: u64,
    /// Up to this much more delay, drawn per datagram (reorders them), milliseconds.
    pub jitter_ms: u64,
}

/// What an on-path attacker does with the datagrams it sees going to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramAttacker {
    /// The attacker's own address.
    pub address: SocketAddr,
    /// An address it spoofs as the source of replays (a victim it wants flooded).
    pub victim: SocketAddr,
    /// Replays each seen datagram this many times (half from its own address, half
    /// spoofing the victim), some milliseconds later.
    pub replays: u32,
    /// Also sends one forged (one bit flipped) copy of each, spoofing the victim.
    pub forge: bool,
}

/// An answer and where it goes.
type Addressed = (SocketAddr, Vec<u8>);

#[derive(Debug, Clone)]
struct Packet {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
    /// Sent by the attacker (it does not observe its own datagrams).
    injected: bool,
}

/// The network, its server and what each address received.
pub struct DatagramNet {
    service: Service,
    config: NetConfig,
    attacker: Option<DatagramAttacker>,
    rng: StdRng,
    ivs: IvSource,
    now_ms: u64,
    next_seq: u64,
    queue: BTreeMap<(u64, u64), Packet>,
    inboxes: BTreeMap<SocketAddr, Vec<Vec<u8>>>,
    /// Answers of blocking work, sent when it finishes.
    finished: Arc<Mutex<Vec<Addressed>>>,
    /// Bytes each address received, and sent toward the server.
    received_bytes: BTreeMap<SocketAddr, usize>,
}

impl std::fmt::Debug for DatagramNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramNet")
            .field("now_ms", &self.now_ms)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl DatagramNet {
    /// A network from `seed` whose server is `service` (given its datagram key), starting
    /// at Unix millisecond `epoch_ms`.
    pub fn new(seed: u64, service: Service, config: NetConfig, epoch_ms: u64) -> DatagramNet {
        let mut rng = StdRng::seed_from_u64(seed);
        let ivs = IvSource::from_rng(Box::new(StdRng::seed_from_u64(rng.random())));
        DatagramNet {
            service,
            config,
            attacker: None,
            rng,
            ivs,
            now_ms: epoch_ms,
            next_seq: 0,
            queue: BTreeMap::new(),
            inboxes: BTreeMap::new(),
            finished: Arc::new(Mutex::new(Vec::new())),
            received_bytes: BTreeMap::new(),
        }
    }

    /// This network with `attacker` on the path to the server.
    pub fn with_attacker(mut self, attacker: DatagramAttacker) -> DatagramNet {
        self.attacker = Some(attacker);
        self
    }

    /// The virtual clock, Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Sends `bytes` from `from` to the server, through the network's losses and delays.
    pub fn send(&mut self, from: SocketAddr, bytes: &[u8]) {
        self.transmit(Packet {
            from,
            to: SERVER_ADDR,
            bytes: bytes.to_vec(),
            injected: false,
        });
    }

    fn schedule(&mut self, at: u64, packet: Packet) {
        self.queue.insert((at, self.next_seq), packet);
        self.next_seq += 1;
    }

    fn transmit(&mut self, packet: Packet) {
        if self.rng.random_range(0..1000) < self.config.loss_per_mille {
            return;
        }
        let copies = if self.rng.random_range(0..1000) < self.config.duplicate_per_mille {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.config.jitter_ms > 0 {
                self.rng.random_range(0..=self.config.jitter_ms)
            } else {
                0
            };
            let at = self.now_ms + self.config.delay_ms + jitter;
            self.schedule(at, packet.clone());
        }
    }

    /// Delivers everything due until nothing is left in flight, or the clock passed
    /// `now + max_ms`; the clock then stands at the last delivery (or that limit).
    pub fn run_for(&mut self, max_ms: u64) {
        let limit = self.now_ms + max_ms;
        while let Some((&(at, seq), _)) = self.queue.first_key_value() {
            if at > limit {
                break;
            }
            let Some(packet) = self.queue.remove(&(at, seq)) else {
                break;
            };
            self.now_ms = self.now_ms.max(at);
            self.deliver(packet);
        }
        if self.queue.is_empty() {
            return;
        }
        self.now_ms = self.now_ms.max(limit);
    }

    fn deliver(&mut self, packet: Packet) {
        if packet.to != SERVER_ADDR {
            *self.received_bytes.entry(packet.to).or_default() += packet.bytes.len();
            self.inboxes
                .entry(packet.to)
                .or_default()
                .push(packet.bytes);
            return;
        }
        if !packet.injected
            && let Some(attacker) = self.attacker
        {
            self.observe(attacker, &packet.bytes);
        }
        let iv = self.ivs.next_iv();
        let from = packet.from;
        match self.service.datagram(&packet.bytes, from, self.now_ms, iv) {
            DatagramOutcome::Drop(_) => {}
            DatagramOutcome::Answer(bytes) => self.answer(from, bytes),
            DatagramOutcome::Run(pending) => {
                let finished = self.finished.clone();
                pending
                    .into_work(move |bytes| {
                        if let Ok(mut done) = finished.lock() {
                            done.push((from, bytes));
                        }
                    })
                    .run();
                let done = self
                    .finished
                    .lock()
                    .map(|mut d| std::mem::take(&mut *d))
                    .unwrap_or_default();
                for (to, bytes) in done {
                    self.answer(to, bytes);
                }
            }
        }
    }

    fn answer(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.transmit(Packet {
            from: SERVER_ADDR,
            to,
            bytes,
            injected: false,
        });
    }

    /// The attacker saw `bytes` on their way: it schedules its replays and forgery.
    fn observe(&mut self, attacker: DatagramAttacker, bytes: &[u8]) {
        for i in 0..attacker.replays {
            let from = if i % 2 == 0 {
                attacker.address
            } else {
                attacker.victim
            };
            let at = self.now_ms + 1 + self.rng.random_range(0..2000u64);
            self.schedule(
                at,
                Packet {
                    from,
                    to: SERVER_ADDR,
                    bytes: bytes.to_vec(),
                    injected: true,
                },
            );
        }
        if attacker.forge && !bytes.is_empty() {
            let mut forged = bytes.to_vec();
            let bit = self.rng.random_range(0..forged.len() * 8);
            forged[bit / 8] ^= 1 << (bit % 8);
            let at = self.now_ms + 1;
            self.schedule(
                at,
                Packet {
                    from: attacker.victim,
                    to: SERVER_ADDR,
                    bytes: forged,
                    injected: true,
                },
            );
        }
    }

    /// Takes what `address` received so far.
    pub fn take_inbox(&mut self, address: SocketAddr) -> Vec<Vec<u8>> {
        self.inboxes.remove(&address).unwrap_or_default()
    }

    /// Bytes `address` received in all.
    pub fn bytes_received(&self, address: SocketAddr) -> usize {
        self.received_bytes.get(&address).copied().unwrap_or(0)
    }
}
