//! A replication link's accepted segments on their way to the store: the link's session
//! queues each segment as the link accepts it; at most one persist run per link is with the
//! runner at a time, and it persists what is queued batch after batch (everything queued
//! while a batch is written joins the next one, in order) until the queue is empty, posting
//! each batch's outcome to the link's mailbox. A batch re-runs the accept rule against what
//! is stored now, writes what it appends in one durable store batch, and tells every link
//! the new heads with their entries.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::ledger::SignedHead;
use vserv_core::replication::{ForkProof, ReplicationError, Segment, Verdict, accept};
use vserv_core::wire::POINT_LEN;

use super::link::LinkDone;
use super::peers::{LinkNews, Peers};
use super::session::Completion;
use crate::replicas::ReplicaError;
use crate::work::{Mailbox, Work};

/// Most segments one persist batch takes (a link's queue is bounded by its window anyway).
const MAX_PERSIST_BATCH: usize = 64;

/// One link's queue of accepted segments waiting to be persisted, in the order the link
/// accepted them.
#[derive(Debug, Default)]
pub(super) struct PersistQueue {
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    segments: VecDeque<Segment>,
    /// A persist run is with the runner.
    running: bool,
}

impl PersistQueue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        // Only whole segments are pushed and taken under this lock: a panic elsewhere
        // leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `segment`; returns the persist run to hand to the runner if none is under
    /// way. The run posts a [`LinkDone::Persisted`] to `mailbox` for each batch (dropped
    /// unrun, one failed batch of everything queued).
    pub(super) fn push(
        self: &Arc<Self>,
        segment: Segment,
        peers: &Arc<Peers>,
        mailbox: &Arc<Mailbox<Completion>>,
    ) -> Option<Work> {
        let mut state = self.state();
        state.segments.push_back(segment);
        if state.running {
            return None;
        }
        state.running = true;
        let run = PersistRun {
            queue: Arc::clone(self),
            peers: Arc::clone(peers),
            mailbox: Arc::clone(mailbox),
            ran: false,
        };
        Some(Work::new("replication persist", move || run.run()))
    }

    /// The next batch, or `None` (and no run under way any more) when the queue is empty.
    fn next_batch(&self) -> Option<Vec<Segment>> {
        let mut state = self.state();
        if state.segments.is_empty() {
            state.running = false;
            return None;
        }
        let take = state.segments.len().min(MAX_PERSIST_BATCH);
        Some(state.segments.drain(..take).collect())
    }
}

/// The persist run of one link's queue, handed to the runner.
struct PersistRun {
    queue: Arc<PersistQueue>,
    peers: Arc<Peers>,
    mailbox: Arc<Mailbox<Completion>>,
    ran: bool,
}

impl PersistRun {
    /// Persists batch after batch until the queue is empty; after a failed batch, fails
    /// what is queued too (the link closes on the first failure anyway).
    fn run(mut self) {
        self.ran = true;
        while let Some(segments) = self.queue.next_batch() {
            let done = origins_and_seqs(&segments);
            let result = persist_all(&self.peers, segments).map_err(|e| e.to_string());
            let failed = result.is_err();
            self.post(done, result);
            if failed {
                self.fail_queued("a persist before these failed");
                return;
            }
        }
    }

    fn post(&self, segments: Vec<(vserv_core::ServerKey, u64)>, result: Result<(), String>) {
        self.mailbox
            .post(Completion::Link(LinkDone::Persisted { segments, result }));
    }

    /// Empties the queue (ending the run) and posts one failed batch of what it held.
    fn fail_queued(&self, why: &str) {
        let segments: Vec<Segment> = {
            let mut state = self.queue.state();
            state.running = false;
            state.segments.drain(..).collect()
        };
        if !segments.is_empty() {
            self.post(origins_and_seqs(&segments), Err(why.to_owned()));
        }
    }
}

impl Drop for PersistRun {
    fn drop(&mut self) {
        if !self.ran {
            self.fail_queued("the persist was never run");
        }
    }
}

fn origins_and_seqs(segments: &[Segment]) -> Vec<(vserv_core::ServerKey, u64)> {
    segments
        .iter()
        .map(|s| (s.origin(), s.last_seq()))
        .collect()
}

/// Why a persist failed: the store, or the segment no longer fits what is stored (the
/// link then closes and its successor starts from the clocks).
#[derive(Debug, thiserror::Error)]
enum PersistError {
    #[error(transparent)]
    Store(#[from] ReplicaError),
    #[error(transparent)]
    Feed(#[from] crate::ledger::FeedError),
    #[error("the segment no longer fits what is stored: {0}")]
    Stale(ReplicationError),
}

/// Persists a link's accepted segments, in order: each goes through the accept rule again
/// against what is stored now (another link may have stored some of it) and the segments
/// before it, and what it appends is written in ONE atomic, durable batch (one fsync);
/// then every link is told the new heads. A fork found on the way is stored (after what
/// came before it).
fn persist_all(peers: &Peers, segments: Vec<Segment>) -> Result<(), PersistError> {
    let own = peers.replicas.own();
    let mut held: BTreeMap<[u8; POINT_LEN], Option<SignedHead>> = BTreeMap::new();
    let mut appends: Vec<Segment> = Vec::new();
    for segment in segments {
        let origin = segment.origin();
        if origin == own {
            // Only `rput` appends to the own feed. A peer ahead of it means this node lost
            // entries it had published (a wiped store under a kept key): say so, store
            // nothing.
            let seq = peers
                .replicas
                .feed(origin)?
                .head()?
                .map_or(0, |h| h.head.seq);
            if seq < segment.last_seq() {
                tracing::error!(
                    "a peer holds entries of this server's own feed that it lacks: its own \
                     feed lost entries; they are not taken back"
                );
            }
            continue;
        }
        if !peers.follows(&origin) {
            // Not followed: acknowledged (the peer need not send it again on this link)
            // and never stored, so never relayed nor listed in this node's clock.
            continue;
        }
        let current = match held.get(origin.as_bytes()) {
            Some(head) => *head,
            None => peers.replicas.feed(origin)?.head()?,
        };
        let quarantined = peers.replicas.quarantined(&origin)?.is_some();
        match accept(current.as_ref(), quarantined, segment) {
            Ok(Verdict::Append(segment)) => {
                held.insert(*origin.as_bytes(), Some(*segment.head()));
                appends.push(segment);
            }
            Ok(Verdict::Ignore | Verdict::Quarantined) => {}
            Ok(Verdict::Fork(proof)) => {
                store_segments(peers, std::mem::take(&mut appends))?;
                store_fork(peers, proof)?;
            }
            Err(e) => {
                store_segments(peers, appends)?;
                return Err(PersistError::Stale(e));
            }
        }
    }
    store_segments(peers, appends)
}

/// Writes `segments` (accepted, in order) in one batch and tells every link their heads and
/// entries.
fn store_segments(peers: &Peers, segments: Vec<Segment>) -> Result<(), PersistError> {
    if segments.is_empty() {
        return Ok(());
    }
    // Each segment was checked when it was built (hashes, links, the head's signature):
    // only how it continues the stored feed is checked again.
    let items: Vec<&Segment> = segments.iter().collect();
    peers.replicas.persist_segments(&items)?;
    for segment in segments {
        let (entries, head) = segment.into_parts();
        peers.tell_links(&LinkNews::Commit(head, entries.into()));
    }
    Ok(())
}

/// Stores a fork proof (quarantining its origin) and tells every link.
pub(super) fn store_fork(peers: &Peers, proof: ForkProof) -> Result<(), ReplicaError> {
    let origin = proof.origin();
    if peers.replicas.quarantine(&origin, &proof.to_bytes())? {
        tracing::error!(origin = %origin.fingerprint(), "fork proof stored: origin quarantined");
        peers.tell_links(&LinkNews::Fork(Box::new(proof)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use vserv_core::ServerIdentity;
    use vserv_store::kv::Store;
    use vserv_store::memory::MemoryStore;

    use super::*;
    use crate::ledger::{Ledger, NewRecord};
    use crate::replicas::Replicas;
    use crate::work::NoWake;

    fn identity(seed: u64) -> Arc<ServerIdentity> {
        Arc::new(ServerIdentity::generate(
            &mut rand::rngs::StdRng::seed_from_u64(seed),
        ))
    }

    /// Three commits of two entries of a feed signed by another server, as link segments.
    fn feed_segments() -> Vec<Segment> {
        let id = identity(7);
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ledger = Ledger::new(store.clone(), id.clone());
        let replicas = Replicas::new(store, id.public_key());
        let mut out = Vec::new();
        for c in 0..3u64 {
            let records = (0..2)
                .map(|i| NewRecord {
                    author: "alice".to_owned(),
                    kind: "note".to_owned(),
                    record_id: format!("r{c}-{i}").into_bytes(),
                    body: vec![b'x'; 10],
                    timestamp: 1000,
                })
                .collect();
            assert!(ledger.append_batch(records).iter().all(Result::is_ok));
            let read = replicas
                .read_segment(&id.public_key(), c * 2 + 1, 1)
                .expect("read")
                .expect("a segment");
            out.push(Segment::new(read.entries, read.head).expect("a valid segment"));
        }
        out
    }

    /// A node with identity 1 replicating into an empty store, and a link's mailbox.
    fn node() -> (Arc<Peers>, Arc<Mailbox<Completion>>) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let id = identity(1);
        let replicas = Arc::new(Replicas::new(store.clone(), id.public_key()));
        let peers = Arc::new(Peers::new(replicas, id, [0; 16], (&[], &[]), store, 0));
        (peers, Arc::new(Mailbox::new(Arc::new(NoWake))))
    }

    /// The `(segments, result)` of each Persisted posted to `mailbox`, in order.
    fn persisted(mailbox: &Mailbox<Completion>) -> Vec<(usize, Result<(), String>)> {
        mailbox
            .take_all()
            .into_iter()
            .filter_map(|c| match c {
                Completion::Link(LinkDone::Persisted { segments, result }) => {
                    Some((segments.len(), result))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn segments_queued_while_a_run_is_under_way_join_its_next_batch() {
        let (peers, mailbox) = node();
        let queue = Arc::new(PersistQueue::default());
        let mut segments = feed_segments().into_iter();
        let first = segments.next().expect("a segment");
        let run = queue.push(first, &peers, &mailbox).expect("a run starts");
        for s in segments {
            assert!(
                queue.push(s, &peers, &mailbox).is_none(),
                "one run at a time"
            );
        }
        run.run();
        assert_eq!(persisted(&mailbox), vec![(3, Ok(()))]);
        let origin = identity(7).public_key();
        let head = peers
            .replicas
            .feed(origin)
            .expect("feed")
            .head()
            .expect("head");
        assert_eq!(head.map(|h| h.head.seq), Some(6));
        // The run ended with the queue empty: the next segment (one already held) starts
        // a new one.
        let again = feed_segments().pop().expect("a segment");
        assert!(queue.push(again, &peers, &mailbox).is_some());
    }

    #[test]
    fn a_run_dropped_unrun_fails_what_was_queued_and_frees_the_queue() {
        let (peers, mailbox) = node();
        let queue = Arc::new(PersistQueue::default());
        let mut segments = feed_segments().into_iter();
        let run = queue
            .push(segments.next().expect("a segment"), &peers, &mailbox)
            .expect("a run starts");
        assert!(
            queue
                .push(segments.next().expect("a segment"), &peers, &mailbox)
                .is_none()
        );
        drop(run);
        let posted = persisted(&mailbox);
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].0, 2);
        assert!(posted[0].1.is_err(), "{posted:?}");
        let origin = identity(7).public_key();
        let head = peers
            .replicas
            .feed(origin)
            .expect("feed")
            .head()
            .expect("head");
        assert_eq!(head, None, "nothing was stored");
        assert!(
            queue
                .push(segments.next().expect("a segment"), &peers, &mailbox)
                .is_some()
        );
    }

    #[test]
    fn a_segment_that_does_not_continue_the_store_fails_its_batch() {
        let (peers, mailbox) = node();
        let queue = Arc::new(PersistQueue::default());
        let last = feed_segments().pop().expect("a segment");
        queue
            .push(last, &peers, &mailbox)
            .expect("a run starts")
            .run();
        let posted = persisted(&mailbox);
        assert_eq!(posted.len(), 1);
        assert!(posted[0].1.is_err(), "a gap is refused: {posted:?}");
    }
}
