//! The node's replication peers (spec/replication.md): which server keys may open a link
//! (those of the config file and those an admin added with `padd`, kept in the store by
//! `peer_table.rs`), which peers it dials and when (reconnecting with backoff and jitter),
//! and the links that are up, to which every new head (an own commit, a persisted replica
//! segment) and every stored fork proof is pushed through their session's mailbox. Removing
//! a peer (`pdel`) closes its links and stops its dials.
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
use vserv_core::commands::{MAX_PEERS, PeerSource, check_peer_address};
use vserv_core::ledger::SignedHead;
use vserv_core::replication::{Epoch, ForkProof, LinkConfig, Wants};
use vserv_core::{Fingerprint, ServerKey};

use super::peer_status::StatusBook;
use super::peer_table;
use super::session::Completion;
use crate::replicas::Replicas;
use crate::work::{Mailbox, Wake};
use vserv_store::kv::{Store, StoreError};

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
    /// The fingerprints of the keys allowed to open a link, and where each comes from.
    allowed: Mutex<BTreeMap<Fingerprint, PeerSource>>,
    dials: Mutex<BTreeMap<Fingerprint, DialState>>,
    /// The links that are up: their peers and sessions' mailboxes.
    links: Mutex<Vec<(Fingerprint, Weak<Mailbox<Completion>>)>>,
    /// Where runtime peers are kept.
    store: Arc<dyn Store>,
    /// Held by `add` and `remove`, so that the store and the tables change in step.
    admin: Mutex<()>,
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
            .field("allowed", &self.allowed().len())
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
    /// An admin removed the link's peer: the link closes.
    Removed,
}

/// Why `padd` or `pdel` changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerAdminError {
    /// The node was opened without replication.
    #[error("this server does not replicate")]
    NotReplicating,
    /// The key is the node's own.
    #[error("{0} is this server's own key, not a peer")]
    OwnKey(Fingerprint),
    /// The peer is in the config file: only the file changes it.
    #[error("peer {0} is in the server's config file ([[peers]]): change it there")]
    InConfig(Fingerprint),
    /// No peer has the fingerprint.
    #[error("no peer {0}")]
    Unknown(Fingerprint),
    /// The node has [`MAX_PEERS`] peers already.
    #[error("this server has {MAX_PEERS} peers already, the most it takes")]
    TooMany,
    /// The address is not `host:port`.
    #[error("bad peer address: {0}")]
    BadAddress(&'static str),
    /// Storing the change failed: nothing changed.
    #[error("storing the peer failed: {0}")]
    Store(#[from] StoreError),
}

impl Peers {
    /// The peers of the config file (`peers`) and those added at runtime (`runtime`, kept in
    /// `store`; one that is in the config file too counts as a config peer).
    pub(crate) fn new(
        replicas: Arc<Replicas>,
        identity: Arc<ServerIdentity>,
        epoch: Epoch,
        (peers, runtime): (&[PeerConfig], &[PeerConfig]),
        store: Arc<dyn Store>,
        jitter_seed: u64,
    ) -> Peers {
        let mut sourced: BTreeMap<Fingerprint, (PeerConfig, PeerSource)> = BTreeMap::new();
        for peer in runtime {
            sourced.insert(peer.fingerprint, (peer.clone(), PeerSource::Runtime));
        }
        for peer in peers {
            sourced.insert(peer.fingerprint, (peer.clone(), PeerSource::Config));
        }
        let dials = sourced
            .values()
            .map(|(p, _)| p)
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
        let status = StatusBook::new(std::iter::empty());
        for (fingerprint, (peer, source)) in &sourced {
            status.insert(*fingerprint, peer.address.as_deref(), *source);
        }
        Peers {
            replicas,
            identity,
            epoch,
            config: LinkConfig::default(),
            allowed: Mutex::new(sourced.iter().map(|(f, (_, s))| (*f, *s)).collect()),
            dials: Mutex::new(dials),
            links: Mutex::new(Vec::new()),
            store,
            admin: Mutex::new(()),
            jitter: Mutex::new(StdRng::seed_from_u64(jitter_seed)),
            duty_waker: Mutex::new(None),
            status,
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

    /// What a link of this node asks of its peer: with a `follow` list, the Wants of those
    /// origins and the node's own (so a peer still offers back an own feed this node lost,
    /// spec/replication.md §8); `None` (every origin) without one, or when the list is too
    /// long for a Wants (then unfollowed feeds are still dropped on receipt).
    pub(crate) fn wants(&self) -> Option<Wants> {
        let list = self.follow.as_ref()?;
        let mut origins = list.clone();
        origins.push(self.identity.public_key().fingerprint());
        origins.sort();
        origins.dedup();
        match Wants::new(origins) {
            Ok(wants) => Some(wants),
            Err(e) => {
                tracing::warn!(error = %e, "the follow list does not fit a Wants message");
                None
            }
        }
    }

    fn dials(&self) -> MutexGuard<'_, BTreeMap<Fingerprint, DialState>> {
        // Every change under these locks is whole: a panic elsewhere leaves them consistent.
        self.dials.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn links(&self) -> MutexGuard<'_, Vec<(Fingerprint, Weak<Mailbox<Completion>>)>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn allowed(&self) -> MutexGuard<'_, BTreeMap<Fingerprint, PeerSource>> {
        self.allowed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` may open a link.
    pub(crate) fn allows(&self, key: &ServerKey) -> bool {
        key != &self.identity.public_key() && self.allowed().contains_key(&key.fingerprint())
    }

    /// Adds `peer` as a runtime peer, or changes the address of a runtime peer: stored
    /// first (durably), then its links are accepted at once and, with an address, it is
    /// dialed at once (a changed address: from the next dial on).
    pub(crate) fn add(&self, peer: PeerConfig) -> Result<(), PeerAdminError> {
        let fingerprint = peer.fingerprint;
        if fingerprint == self.identity.public_key().fingerprint() {
            return Err(PeerAdminError::OwnKey(fingerprint));
        }
        if let Some(address) = &peer.address {
            check_peer_address(address).map_err(PeerAdminError::BadAddress)?;
        }
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let known = self.allowed().get(&fingerprint).copied();
        match known {
            Some(PeerSource::Config) => return Err(PeerAdminError::InConfig(fingerprint)),
            None if self.allowed().len() >= MAX_PEERS => return Err(PeerAdminError::TooMany),
            _ => {}
        }
        peer_table::put(self.store.as_ref(), &peer)?;
        self.allowed().insert(fingerprint, PeerSource::Runtime);
        self.status
            .insert(fingerprint, peer.address.as_deref(), PeerSource::Runtime);
        {
            let mut dials = self.dials();
            match peer.address {
                Some(address) => match dials.get_mut(&fingerprint) {
                    Some(state) => state.address = address,
                    None => {
                        dials.insert(
                            fingerprint,
                            DialState {
                                address,
                                connected: false,
                                failures: 0,
                                next: None,
                            },
                        );
                    }
                },
                None => {
                    dials.remove(&fingerprint);
                }
            }
        }
        tracing::info!(peer = %fingerprint, "replication peer added");
        self.wake_duty();
        Ok(())
    }

    /// Removes the runtime peer `fingerprint`: forgotten in the store first (durably), then
    /// its links are closed, it is no longer dialed and no link of it is accepted.
    pub(crate) fn remove(&self, fingerprint: &Fingerprint) -> Result<(), PeerAdminError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let known = self.allowed().get(fingerprint).copied();
        match known {
            None => return Err(PeerAdminError::Unknown(*fingerprint)),
            Some(PeerSource::Config) => return Err(PeerAdminError::InConfig(*fingerprint)),
            Some(PeerSource::Runtime) => {}
        }
        peer_table::delete(self.store.as_ref(), fingerprint)?;
        self.allowed().remove(fingerprint);
        self.dials().remove(fingerprint);
        self.status.remove(fingerprint);
        let links: Vec<_> = {
            let mut links = self.links();
            let (closing, kept) = links
                .drain(..)
                .partition::<Vec<_>, _>(|(peer, _)| peer == fingerprint);
            *links = kept;
            closing
        };
        for (_, link) in links {
            if let Some(mailbox) = link.upgrade() {
                mailbox.post(Completion::Link(super::link::LinkDone::News(
                    LinkNews::Removed,
                )));
            }
        }
        tracing::info!(peer = %fingerprint, "replication peer removed");
        Ok(())
    }

    /// Wakes the runtime's accept loop, so it asks for the next dial again.
    fn wake_duty(&self) {
        let waker = self
            .duty_waker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(waker) = waker {
            waker.wake();
        }
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
        self.wake_duty();
    }

    /// Registers the runtime's waker for dials that became due.
    pub(super) fn set_duty_waker(&self, waker: Arc<dyn Wake>) {
        *self.duty_waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(waker);
    }

    /// Registers a link with `peer` that came up, to receive the news.
    pub(super) fn add_link(&self, peer: Fingerprint, mailbox: &Arc<Mailbox<Completion>>) {
        let mut links = self.links();
        links.retain(|(_, l)| l.strong_count() > 0);
        links.push((peer, Arc::downgrade(mailbox)));
    }

    /// Pushes a new head of the own feed to every link that is up.
    pub(crate) fn tell_commit(&self, head: SignedHead) {
        self.tell_links(&LinkNews::Commit(head));
    }

    /// Pushes `news` to every link that is up.
    pub(super) fn tell_links(&self, news: &LinkNews) {
        let links: Vec<_> = self
            .links()
            .iter()
            .filter_map(|(_, l)| l.upgrade())
            .collect();
        for mailbox in links {
            mailbox.post(Completion::Link(super::link::LinkDone::News(news.clone())));
        }
    }
}
