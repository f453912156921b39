//! Sealed UDP queries on the server (spec/datagrams.md): what one received datagram becomes
//! ([`DatagramOutcome`]: dropped, answered at once, or run as [`Work`] whose answer the
//! runtime sends), which commands may be asked over UDP ([`allowed_over_udp`]), the
//! per-server state behind it (the replay guard and the rate limiter, `state.rs`) and the
//! counters an operator reads ([`DatagramStats`]). The entry point is
//! [`crate::Service::datagram`] (in `server/datagram.rs`, beside the TCP dispatch it shares).

pub(crate) mod state;

pub use state::DatagramState;

use std::sync::atomic::{AtomicU64, Ordering};

use vserv_core::commands::CommandKind;
use vserv_core::datagram::{DatagramError, RateSettings};

use crate::work::Work;

/// Whether a command may be run over UDP, as an anonymous caller: `ping`, `tables` and
/// `query` (issue 15 §2). Only commands that change nothing belong here; their answers are
/// held to the request's size times the amplification factor.
pub fn allowed_over_udp(kind: CommandKind) -> bool {
    matches!(
        kind,
        CommandKind::Ping | CommandKind::Tables | CommandKind::Query
    )
}

/// The tunables of the datagram service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramSettings {
    /// The per-address rate limit of answers.
    pub rate: RateSettings,
    /// Nonces remembered by the replay guard.
    pub replay_capacity: usize,
    /// How far a request's time may be from the server's clock, in seconds.
    pub window_secs: u64,
    /// Requests whose command blocks (`query`, `tables`) that may be queued or running at
    /// once; a request beyond it is dropped as [`DropReason::Busy`], so a flood of valid
    /// requests cannot fill the runtime's work queue ahead of the TCP sessions' work.
    pub max_work: usize,
}

/// The reference server's [`DatagramSettings::max_work`].
pub const DEFAULT_MAX_DATAGRAM_WORK: usize = 64;

impl Default for DatagramSettings {
    fn default() -> Self {
        DatagramSettings {
            rate: RateSettings::default(),
            replay_capacity: vserv_core::datagram::DEFAULT_REPLAY_CAPACITY,
            window_secs: vserv_core::datagram::REPLAY_WINDOW_SECS,
            max_work: DEFAULT_MAX_DATAGRAM_WORK,
        }
    }
}

/// Why a datagram got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// It failed a check of spec/datagrams.md (the typed reason).
    Refused(DatagramError),
    /// Its source address is over the rate limit.
    RateLimited,
    /// The server does not serve datagrams (no key configured).
    NotServed,
    /// Its command blocks and [`DatagramSettings::max_work`] such requests are already
    /// queued or running.
    Busy,
}

/// What to do with one received datagram.
pub enum DatagramOutcome {
    /// Send nothing.
    Drop(DropReason),
    /// Send these bytes back to the source now.
    Answer(Vec<u8>),
    /// Run this work (it blocks: storage, files); it hands the answer's bytes to the
    /// callback it was made with ([`PendingAnswer::into_work`]).
    Run(PendingAnswer),
}

impl std::fmt::Debug for DatagramOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatagramOutcome::Drop(why) => f.debug_tuple("Drop").field(why).finish(),
            DatagramOutcome::Answer(b) => f.debug_tuple("Answer").field(&b.len()).finish(),
            DatagramOutcome::Run(_) => f.write_str("Run"),
        }
    }
}

/// A request whose command blocks: the runtime turns it into [`Work`] with the way to send
/// the answer, and runs it through its runner.
pub struct PendingAnswer {
    pub(crate) job: Box<dyn FnOnce() -> Vec<u8> + Send>,
}

impl PendingAnswer {
    /// The work that runs the command and gives the sealed answer to `send`.
    pub fn into_work(self, send: impl FnOnce(Vec<u8>) + Send + 'static) -> Work {
        let job = self.job;
        Work::new("datagram", move || send(job()))
    }
}

/// Counters of the datagram service since it started. Read with [`Self::snapshot`].
#[derive(Debug, Default)]
pub struct DatagramStats {
    pub(crate) received: AtomicU64,
    pub(crate) answered: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) key_queries: AtomicU64,
    pub(crate) dropped: [AtomicU64; DROP_KINDS],
}

/// The drop reasons counted apart, in [`DatagramStatsSnapshot::dropped`]'s order.
pub const DROP_REASONS: [&str; DROP_KINDS] = [
    "truncated",
    "bad_version",
    "bad_point",
    "bad_mac",
    "stale",
    "replay",
    "too_large",
    "malformed",
    "rate_limited",
    "busy",
];
const DROP_KINDS: usize = 10;

fn drop_index(reason: DropReason) -> usize {
    match reason {
        DropReason::Refused(DatagramError::Truncated) => 0,
        DropReason::Refused(DatagramError::BadVersion) => 1,
        DropReason::Refused(DatagramError::BadPoint) => 2,
        DropReason::Refused(DatagramError::BadMac) => 3,
        DropReason::Refused(DatagramError::Stale) => 4,
        DropReason::Refused(DatagramError::Replay) => 5,
        DropReason::Refused(DatagramError::TooLarge) => 6,
        DropReason::RateLimited => 8,
        DropReason::Busy => 9,
        _ => 7,
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatagramStatsSnapshot {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams answered (responses, "too large" answers and key answers).
    pub answered: u64,
    /// Of those, the "too large: pad the request" answers.
    pub too_large: u64,
    /// Of those, key answers.
    pub key_queries: u64,
    /// Datagrams dropped, per reason ([`DROP_REASONS`]).
    pub dropped: [u64; DROP_KINDS],
}

impl DatagramStatsSnapshot {
    /// Datagrams dropped in all.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Datagrams dropped for `reason`.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped[drop_index(reason)]
    }

    /// One line for the operator's status: `received N, answered N, dropped N (reason N...)`.
    pub fn summary(&self) -> String {
        let reasons: Vec<String> = DROP_REASONS
            .iter()
            .zip(self.dropped)
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        format!(
            "udp: {} received, {} answered, {} dropped ({})",
            self.received,
            self.answered,
            self.dropped_total(),
            if reasons.is_empty() {
                "none".to_owned()
            } else {
                reasons.join(", ")
            }
        )
    }
}

impl DatagramStats {
    pub(crate) fn count_drop(&self, reason: DropReason) {
        self.dropped[drop_index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now (each read atomically; together, nearly at once).
    pub fn snapshot(&self) -> DatagramStatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DatagramStatsSnapshot {
            received: load(&self.received),
            answered: load(&self.answered),
            too_large: load(&self.too_large),
            key_queries: load(&self.key_queries),
            dropped: std::array::from_fn(|i| load(&self.dropped[i])),
        }
    }
}

/// Fresh IVs for answers, from the OS's CSPRNG (for runtimes that hold no RNG of their own).
pub struct IvSource(Box<dyn rand_core::CryptoRng + Send>);

impl std::fmt::Debug for IvSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IvSource")
    }
}

impl IvSource {
    /// A source seeded from the OS.
    pub fn os() -> std::io::Result<IvSource> {
        Ok(IvSource(crate::system::os_rng()?))
    }

    /// A source drawing from `rng` (a seeded one in simulations).
    pub fn from_rng(rng: Box<dyn rand_core::CryptoRng + Send>) -> IvSource {
        IvSource(rng)
    }

    /// 16 fresh random bytes.
    pub fn next_iv(&mut self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        self.0.fill_bytes(&mut iv);
        iv
    }
}
