//! The node's replication peers (spec/replication.md): which server keys may open a link,
//! which peers it dials and when (reconnecting with backoff and jitter), and the links that
//! are up, to which every new head (an own commit, a persisted replica segment) and every
//! stored fork proof is pushed through their session's mailbox.
//!
//! Nothing here waits or reads a clock: the runtime asks when the next dial is due
//! ([`Service::next_duty`](super::Service::next_duty)) and takes it with
//! [`Service::poll_dial`](super::Service::poll_dial).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vserv_core::ServerIdentity;
use vserv_core::ledger::SignedHead;
use vserv_core::replication::{Epoch, ForkProof, LinkConfig};
use vserv_core::{Fingerprint, ServerKey};

use super::peer_status::StatusBook;
use super::session::Completion;
use crate::replicas::Replicas;
use crate::work::{Mailbox, Wake};

/// The first wait before dialing a peer again after a failed or ended link.
pub const DIAL_BACKOFF_MIN: Duration = Duration::from_millis(500);
/// The longest wait between two dials of one peer.
pub const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One configured peer: the fingerprint of the server key it must prove, and where to dial
/// it (`None`: the node only accepts its links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The fingerprint of the peer's server identity key.
    pub fingerprint: Fingerprint,
    /// Its address (`host:port`), if this node dials it.
    pub address: Option<String>,
}

/// A dial the runtime is asked to make: connect to `address`, then drive the session
/// [`Dial::session`] makes over a client connection. If the connection cannot be made,
/// hand it back with [`Service::dial_failed`](super::Service::dial_failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// Where to connect.
    pub address: String,
    /// The fingerprint of the key the peer must prove in the handshake.
    pub fingerprint: Fingerprint,
}

/// What is known of one dialed peer.
#[derive(Debug)]
struct DialState {
    address: String,
    /// A session for it exists (connecting, or a link).
    connected: bool,
    /// Failed or ended dials since the last link that came up.
    failures: u32,
    /// When the next dial is due; `None` right after a dial ended, until the next
    /// [`Peers::next_dial`] fixes it from its `now`.
    next: Option<Instant>,
}

/// What a service with replication shares between its sessions.
pub(crate) struct Peers {
    pub(crate) replicas: Arc<Replicas>,
    pub(crate) identity: Arc<ServerIdentity>,
    pub(crate) epoch: Epoch,
    pub(crate) config: LinkConfig,
    /// The fingerprints of the keys allowed to open a link.
    allowed: Vec<Fingerprint>,
    dials: Mutex<BTreeMap<Fingerprint, DialState>>,
    /// The links that are up: their sessions' mailboxes.
    links: Mutex<Vec<Weak<Mailbox<Completion>>>>,
    /// Jitter of the reconnection waits (seeded by the node: reproducible in a simulation).
    jitter: Mutex<StdRng>,
    /// Wakes the runtime's accept loop when a dial ended, so it asks for the next one.
    duty_waker: Mutex<Option<Arc<dyn Wake>>>,
    /// What is known of each peer's link, for `peers`.
    pub(super) status: StatusBook,
    /// The origins replicated: `None`, every one offered.
    follow: Option<Vec<Fingerprint>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("allowed", &self.allowed.len())
            .finish_non_exhaustive()
    }
}

/// News pushed to every link.
#[derive(Debug, Clone)]
pub(super) enum LinkNews {
    /// The node now holds a feed up to this head.
    Commit(SignedHead),
    /// The node stored this fork proof.
    Fork(Box<ForkProof>),
}

impl Peers {
    pub(crate) fn new(
        replicas: Arc<Replicas>,
        identity: Arc<ServerIdentity>,
        epoch: Epoch,
        peers: &[PeerConfig],
        jitter_seed: u64,
    ) -> Peers {
        let dials = peers
            .iter()
            .filter_map(|p| {
                let address = p.address.clone()?;
                Some((
                    p.fingerprint,
                    DialState {
                        address,
                        connected: false,
                        failures: 0,
                        next: None,
                    },
                ))
            })
            .collect();
        Peers {
            replicas,
            identity,
            epoch,
            config: LinkConfig::default(),
            allowed: peers.iter().map(|p| p.fingerprint).collect(),
            dials: Mutex::new(dials),
            links: Mutex::new(Vec::new()),
            jitter: Mutex::new(StdRng::seed_from_u64(jitter_seed)),
            duty_waker: Mutex::new(None),
            status: StatusBook::new(peers.iter().map(|p| (p.fingerprint, p.address.as_deref()))),
            follow: None,
        }
    }

    /// These peers keeping replicas of `follow`'s origins only (`None`: every origin).
    pub(crate) fn following(mut self, follow: Option<Vec<Fingerprint>>) -> Peers {
        self.follow = follow;
        self
    }

    /// Whether the node keeps a replica of `origin`'s feed.
    pub(crate) fn follows(&self, origin: &ServerKey) -> bool {
        self.follow
            .as_ref()
            .is_none_or(|list| list.contains(&origin.fingerprint()))
    }

    fn dials(&self) -> MutexGuard<'_, BTreeMap<Fingerprint, DialState>> {
        // Every change under these locks is whole: a panic elsewhere leaves them consistent.
        self.dials.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn links(&self) -> MutexGuard<'_, Vec<Weak<Mailbox<Completion>>>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` may open a link.
    pub(crate) fn allows(&self, key: &ServerKey) -> bool {
        key != &self.identity.public_key() && self.allowed.contains(&key.fingerprint())
    }

    /// When the next dial is due (now for a peer never dialed, a backoff after one that
    /// ended); `None` when every dialed peer is connected.
    pub(super) fn next_dial(&self, now: Instant) -> Option<Instant> {
        let mut dials = self.dials();
        let mut earliest: Option<Instant> = None;
        for state in dials.values_mut().filter(|s| !s.connected) {
            let at = match state.next {
                Some(at) => at,
                None => {
                    let at = now + self.backoff(state.failures);
                    state.next = Some(if state.failures == 0 { now } else { at });
                    state.next.unwrap_or(at)
                }
            };
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        earliest
    }

    /// The wait after `failures` failed dials: doubling from [`DIAL_BACKOFF_MIN`] up to
    /// [`DIAL_BACKOFF_MAX`], then up to a quarter more at random, so that peers that lost
    /// each other at once do not redial in step.
    fn backoff(&self, failures: u32) -> Duration {
        let doubled = DIAL_BACKOFF_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16));
        let base = doubled.min(DIAL_BACKOFF_MAX);
        let quarter = u64::try_from(base.as_millis() / 4)
            .unwrap_or(u64::MAX)
            .max(1);
        let extra = self
            .jitter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .random_range(0..quarter);
        base + Duration::from_millis(extra)
    }

    /// The next due dial, marked connected (its session now exists).
    pub(super) fn poll_dial(&self, now: Instant) -> Option<Dial> {
        self.next_dial(now)?;
        let mut dials = self.dials();
        let (fingerprint, state) = dials
            .iter_mut()
            .find(|(_, s)| !s.connected && s.next.is_some_and(|at| at <= now))?;
        state.connected = true;
        state.next = None;
        self.status.dialing(fingerprint);
        Some(Dial {
            address: state.address.clone(),
            fingerprint: *fingerprint,
        })
    }

    /// A dial of `key` ended: the connection failed, or its session ended (`linked`: the
    /// link had come up, so the backoff starts again from its shortest).
    pub(super) fn dial_ended(&self, fingerprint: &Fingerprint, linked: bool) {
        if let Some(state) = self.dials().get_mut(fingerprint) {
            state.connected = false;
            state.failures = if linked {
                1
            } else {
                state.failures.saturating_add(1)
            };
            state.next = None;
        }
        let waker = self
            .duty_waker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Registers the runtime's waker for dials that became due.
    pub(super) fn set_duty_waker(&self, waker: Arc<dyn Wake>) {
        *self.duty_waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(waker);
    }

    /// Registers a link that came up, to receive the news.
    pub(super) fn add_link(&self, mailbox: &Arc<Mailbox<Completion>>) {
        let mut links = self.links();
        links.retain(|l| l.strong_count() > 0);
        links.push(Arc::downgrade(mailbox));
    }

    /// Pushes a new head of the own feed to every link that is up.
    pub(crate) fn tell_commit(&self, head: SignedHead) {
        self.tell_links(&LinkNews::Commit(head));
    }

    /// Pushes `news` to every link that is up.
    pub(super) fn tell_links(&self, news: &LinkNews) {
        let links: Vec<_> = self.links().iter().filter_map(Weak::upgrade).collect();
        for mailbox in links {
            mailbox.post(Completion::Link(super::link::LinkDone::News(news.clone())));
        }
    }
}
