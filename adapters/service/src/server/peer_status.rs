//! What the node knows of each configured peer's link, for the admin's `peers` command and
//! [`Service::peer_status`](super::Service::peer_status): whether a link is up (its
//! session's mailbox still alive), since when, why the last link or dial ended, and, from
//! the link's events, the peer's epoch and the seq it holds of each feed.
//!
//! Nothing here reads a clock: times are the wall-clock milliseconds the runtime passes to
//! [`Service::drive`](super::Service::drive).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vserv_core::Fingerprint;
use vserv_core::commands::{OriginLag, PeerSource, PeerStatus};
use vserv_core::ledger::Head;
use vserv_core::replication::{Clock, Epoch};

use super::session::Completion;
use crate::work::Mailbox;

/// The longest last-error text kept per peer, in bytes.
const MAX_ERROR_LEN: usize = 200;

/// One peer's record.
#[derive(Debug)]
struct Record {
    address: Option<String>,
    source: PeerSource,
    /// The mailbox of the session of the link that is up (dead once that session is gone).
    link: Option<Weak<Mailbox<Completion>>>,
    /// When the link last came up or went down (Unix ms).
    changed_ms: Option<u64>,
    last_error: Option<String>,
    /// `last_error` was set during the current link or dial (reset when one starts).
    explained: bool,
    epoch: Option<Epoch>,
    /// The seq the peer holds of each feed, by origin fingerprint, as far as its latest
    /// clock and acknowledgements on the current (or last) link said.
    held: BTreeMap<Fingerprint, u64>,
    /// Entries of each feed, by origin fingerprint, sent to the peer since the node started
    /// (over every link).
    sent: BTreeMap<Fingerprint, u64>,
}

impl Record {
    fn new(address: Option<&str>, source: PeerSource) -> Record {
        Record {
            address: address.map(str::to_owned),
            source,
            link: None,
            changed_ms: None,
            last_error: None,
            explained: false,
            epoch: None,
            held: BTreeMap::new(),
            sent: BTreeMap::new(),
        }
    }

    fn connected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.strong_count() > 0)
    }
}

/// The status of every configured peer, updated by the links and read by `peers`.
#[derive(Debug, Default)]
pub(super) struct StatusBook {
    peers: Mutex<BTreeMap<Fingerprint, Record>>,
}

impl StatusBook {
    /// A book of the configured peers (`fingerprint`, dialed `address`), none linked yet.
    pub(super) fn new<'a>(
        peers: impl IntoIterator<Item = (Fingerprint, Option<&'a str>)>,
    ) -> StatusBook {
        let peers = peers
            .into_iter()
            .map(|(fingerprint, address)| {
                let record = Record::new(address, PeerSource::Config);
                (fingerprint, record)
            })
            .collect();
        StatusBook {
            peers: Mutex::new(peers),
        }
    }

    fn peers(&self) -> MutexGuard<'_, BTreeMap<Fingerprint, Record>> {
        // Every change under this lock is whole: a panic elsewhere leaves it consistent.
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `peer` (config or runtime) with its dialed `address`, or changes the address
    /// of one the book has (keeping what is known of its link).
    pub(super) fn insert(&self, peer: Fingerprint, address: Option<&str>, source: PeerSource) {
        let mut peers = self.peers();
        let record = peers
            .entry(peer)
            .or_insert_with(|| Record::new(address, source));
        record.address = address.map(str::to_owned);
        record.source = source;
    }

    /// Forgets `peer` (an admin removed it).
    pub(super) fn remove(&self, peer: &Fingerprint) {
        self.peers().remove(peer);
    }

    /// A link with `peer` came up on the session of `mailbox`; what was known of the
    /// peer's feeds is forgotten until its first clock (it may be a wiped store).
    pub(super) fn link_up(
        &self,
        peer: &Fingerprint,
        mailbox: Weak<Mailbox<Completion>>,
        now_ms: u64,
    ) {
        if let Some(record) = self.peers().get_mut(peer) {
            record.link = Some(mailbox);
            record.changed_ms = Some(now_ms);
            record.held.clear();
            record.explained = false;
        }
    }

    /// A link sent `entries` entries of `origin`'s feed to `peer`.
    pub(super) fn sent(&self, peer: &Fingerprint, origin: Fingerprint, entries: u64) {
        if let Some(record) = self.peers().get_mut(peer) {
            let count = record.sent.entry(origin).or_insert(0);
            *count = count.saturating_add(entries);
        }
    }

    /// The entries of each feed sent to `peer` since the node started, by origin
    /// fingerprint (empty for a peer the book does not have).
    pub(super) fn entries_sent(&self, peer: &Fingerprint) -> BTreeMap<Fingerprint, u64> {
        self.peers()
            .get(peer)
            .map(|r| r.sent.clone())
            .unwrap_or_default()
    }

    /// A dial of `peer` starts: what ends it is not explained yet.
    pub(super) fn dialing(&self, peer: &Fingerprint) {
        if let Some(record) = self.peers().get_mut(peer) {
            record.explained = false;
        }
    }

    /// The link with `peer` on the session of `mailbox` ended; unless an error was recorded
    /// since it came up, its last error becomes that the connection ended. (A link that
    /// another, newer link of the same peer replaced in the book leaves that one up.)
    pub(super) fn link_down(
        &self,
        peer: &Fingerprint,
        mailbox: &Arc<Mailbox<Completion>>,
        now_ms: u64,
    ) {
        if let Some(record) = self.peers().get_mut(peer) {
            let current = record
                .link
                .as_ref()
                .is_some_and(|l| std::ptr::eq(l.as_ptr(), Arc::as_ptr(mailbox)));
            if !current && record.connected() {
                return;
            }
            record.link = None;
            record.changed_ms = Some(now_ms);
            if !record.explained {
                record.last_error = Some("the connection ended".into());
            }
        }
    }

    /// A dial of `peer` ended before its link came up; unless an error was recorded since
    /// it started, `why` becomes its last error.
    pub(super) fn dial_ended(&self, peer: &Fingerprint, why: &str) {
        if let Some(record) = self.peers().get_mut(peer)
            && !record.explained
        {
            record.last_error = Some(shorten(why));
        }
    }

    /// `why` is the last error of `peer` (its link or dial is ending because of it).
    pub(super) fn error(&self, peer: &Fingerprint, why: &str) {
        if let Some(record) = self.peers().get_mut(peer) {
            record.last_error = Some(shorten(why));
            record.explained = true;
        }
    }

    /// `peer` sent its clock: its epoch and what it holds.
    pub(super) fn peer_clock(&self, peer: &Fingerprint, epoch: Epoch, clock: &Clock) {
        if let Some(record) = self.peers().get_mut(peer) {
            record.epoch = Some(epoch);
            record.held = clock
                .feeds()
                .iter()
                .map(|f| (f.origin.fingerprint(), f.seq))
                .collect();
        }
    }

    /// `peer` acknowledged `origin` up to `seq`, or sent its entries up to `seq`: it holds
    /// at least that much.
    pub(super) fn acked(&self, peer: &Fingerprint, origin: Fingerprint, seq: u64) {
        if let Some(record) = self.peers().get_mut(peer) {
            let held = record.held.entry(origin).or_default();
            *held = (*held).max(seq);
        }
    }

    /// Every configured peer's status at `now_ms`, by fingerprint, its feeds compared with
    /// `clock` (what this node holds).
    pub(super) fn report(&self, clock: &[Head], now_ms: u64) -> Vec<PeerStatus> {
        let ours: BTreeMap<Fingerprint, u64> = clock
            .iter()
            .map(|h| (h.origin.fingerprint(), h.seq))
            .collect();
        self.peers()
            .iter()
            .map(|(fingerprint, record)| {
                let mut origins: BTreeMap<Fingerprint, OriginLag> = ours
                    .iter()
                    .map(|(origin, held)| {
                        let lag = OriginLag {
                            origin: *origin,
                            held: *held,
                            peer: record.held.get(origin).copied(),
                        };
                        (*origin, lag)
                    })
                    .collect();
                for (origin, seq) in &record.held {
                    origins.entry(*origin).or_insert(OriginLag {
                        origin: *origin,
                        held: 0,
                        peer: Some(*seq),
                    });
                }
                PeerStatus {
                    fingerprint: *fingerprint,
                    address: record.address.clone(),
                    connected: record.connected(),
                    since_secs: record.changed_ms.map(|at| now_ms.saturating_sub(at) / 1000),
                    last_error: record.last_error.clone(),
                    epoch: record.epoch,
                    source: record.source,
                    origins: origins.into_values().collect(),
                }
            })
            .collect()
    }
}

/// `why` cut to [`MAX_ERROR_LEN`] bytes (at a character boundary).
fn shorten(why: &str) -> String {
    let mut end = why.len().min(MAX_ERROR_LEN);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    why[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use vserv_core::ServerIdentity;
    use vserv_core::replication::ClockEntry;

    use super::*;

    fn key(n: u8) -> vserv_core::ServerKey {
        match ServerIdentity::from_secret_bytes(&[n; 32]) {
            Ok(identity) => identity.public_key(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_peer_goes_up_reports_its_feeds_and_goes_down_with_its_error() {
        let (a, b, origin) = (key(1), key(2), key(3));
        let book = StatusBook::new([
            (a.fingerprint(), Some("127.0.0.1:1")),
            (b.fingerprint(), None),
        ]);
        let ours = [Head {
            origin,
            seq: 5,
            hash: [0; 32],
        }];
        let fresh = book.report(&ours, 1_000);
        assert_eq!(fresh.len(), 2);
        let first = fresh
            .iter()
            .find(|p| p.fingerprint == a.fingerprint())
            .cloned()
            .unwrap();
        assert!(!first.connected);
        assert_eq!(first.since_secs, None, "never linked");
        assert_eq!(first.address.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(first.origins[0].peer, None);
        assert_eq!(first.origins[0].ahead(), 5);

        let mailbox = Arc::new(Mailbox::new(Arc::new(crate::work::NoWake)));
        book.link_up(&a.fingerprint(), Arc::downgrade(&mailbox), 2_000);
        let clock = Clock::new(
            [9; 16],
            vec![
                ClockEntry {
                    origin,
                    seq: 2,
                    hash: [1; 32],
                },
                ClockEntry {
                    origin: a,
                    seq: 4,
                    hash: [2; 32],
                },
            ],
        )
        .unwrap();
        book.peer_clock(&a.fingerprint(), [9; 16], &clock);
        book.acked(&a.fingerprint(), origin.fingerprint(), 3);
        book.acked(&a.fingerprint(), origin.fingerprint(), 1);
        let up = book.report(&ours, 7_500);
        let up = up
            .iter()
            .find(|p| p.fingerprint == a.fingerprint())
            .unwrap();
        assert!(up.connected);
        assert_eq!(up.since_secs, Some(5));
        assert_eq!(up.epoch, Some([9; 16]));
        let lag = |o: vserv_core::ServerKey| {
            up.origins
                .iter()
                .find(|l| l.origin == o.fingerprint())
                .cloned()
                .unwrap()
        };
        assert_eq!((lag(origin).held, lag(origin).peer), (5, Some(3)));
        assert_eq!((lag(origin).behind(), lag(origin).ahead()), (0, 2));
        assert_eq!((lag(a).held, lag(a).peer), (0, Some(4)));
        assert_eq!(lag(a).behind(), 4);

        let other = Arc::new(Mailbox::new(Arc::new(crate::work::NoWake)));
        book.link_down(&a.fingerprint(), &other, 7_600);
        let still = book.report(&ours, 7_700);
        assert!(
            still.iter().any(|p| p.connected),
            "another session's end leaves the link up"
        );
        drop(mailbox);
        let gone = book.report(&ours, 8_000);
        assert!(
            gone.iter().all(|p| !p.connected),
            "a link whose session is gone is down"
        );
        book.error(&a.fingerprint(), &"x".repeat(MAX_ERROR_LEN + 10));
        book.link_down(&a.fingerprint(), &other, 9_000);
        let down = book.report(&ours, 10_000);
        let down = down
            .iter()
            .find(|p| p.fingerprint == a.fingerprint())
            .unwrap();
        assert_eq!(down.since_secs, Some(1));
        assert_eq!(
            down.last_error.as_ref().map(String::len),
            Some(MAX_ERROR_LEN),
            "the recorded error is kept, shortened"
        );

        let mailbox = Arc::new(Mailbox::new(Arc::new(crate::work::NoWake)));
        book.link_up(&a.fingerprint(), Arc::downgrade(&mailbox), 11_000);
        book.link_down(&a.fingerprint(), &mailbox, 12_000);
        let error = |book: &StatusBook| {
            book.report(&ours, 0)
                .into_iter()
                .find(|p| p.fingerprint == a.fingerprint())
                .and_then(|p| p.last_error)
        };
        assert_eq!(error(&book).as_deref(), Some("the connection ended"));
        book.dialing(&a.fingerprint());
        book.error(&a.fingerprint(), "refused by the peer");
        book.dial_ended(
            &a.fingerprint(),
            "the connection ended before the link came up",
        );
        assert_eq!(error(&book).as_deref(), Some("refused by the peer"));
        book.dialing(&a.fingerprint());
        book.dial_ended(&a.fingerprint(), "could not connect");
        assert_eq!(error(&book).as_deref(), Some("could not connect"));

        book.error(&key(4).fingerprint(), "not a peer");
        assert_eq!(book.report(&ours, 0).len(), 2, "unknown peers are ignored");
    }
}
