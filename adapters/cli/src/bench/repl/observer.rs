//! The replication bench's in-process observer: a [`Store`] that passes every call to the
//! real store and, after each durable commit, records when it happened and which feed heads
//! it moved (the `head` key of the own feed in [`Table::LedgerCommits`] or of a replica in
//! [`Table::Replicas`]), so the bench knows the instant each entry became durable on a
//! server without polling it, and how many commits a server made for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::bail;
use vserv_core::ServerKey;
use vserv_core::ledger::SignedHead;
use vserv_core::wire::POINT_LEN;
use vserv_service::ledger::{FeedKeys, HEAD_KEY, REPLICA_FEED_LEAD};
use vserv_store::kv::{Op, Store, StoreError, Table};

/// Per origin: `(head seq, commit instant)` of each commit, in commit order.
type Heads = BTreeMap<[u8; POINT_LEN], Vec<(u64, Instant)>>;

/// Per origin: `(head seq, when its store batch began)` of each observed commit, in commit
/// order (only [`Observed`] knows when a commit began).
type Starts = BTreeMap<[u8; POINT_LEN], Vec<(u64, Instant)>>;

/// When each feed head was committed, per origin: `(head seq, commit instant)` in commit
/// order (so ascending in both); for an observed store also when each commit began.
#[derive(Default)]
pub(super) struct CommitLog {
    heads: Mutex<Heads>,
    starts: Mutex<Starts>,
    changed: Condvar,
    /// Why what fed the log stopped (a watcher's session failed).
    failed: Mutex<Option<String>>,
}

impl CommitLog {
    fn lock(&self) -> MutexGuard<'_, Heads> {
        // The map is only appended to: a panic elsewhere leaves it consistent.
        self.heads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a commit at `at` moved each `(origin, head seq)` of `moved`.
    pub(super) fn record(&self, moved: Vec<([u8; POINT_LEN], u64)>, at: Instant) {
        if moved.is_empty() {
            return;
        }
        let mut heads = self.lock();
        for (origin, seq) in moved {
            heads.entry(origin).or_default().push((seq, at));
        }
        drop(heads);
        self.changed.notify_all();
    }

    /// Records that the store batch of a commit that moved `moved` began at `at`.
    fn record_start(&self, moved: &[([u8; POINT_LEN], u64)], at: Instant) {
        let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        for (origin, seq) in moved {
            starts.entry(*origin).or_default().push((*seq, at));
        }
    }

    /// The commit that first held entry `seq` of `origin`: when its store batch began (if
    /// observed) and when it was durable.
    pub(super) fn commit_span(&self, origin: &ServerKey, seq: u64) -> Option<(Instant, Instant)> {
        let end = self.committed_at(origin, seq)?;
        let starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        let log = starts.get(origin.as_bytes())?;
        let i = log.partition_point(|&(s, _)| s < seq);
        log.get(i).map(|&(_, start)| (start, end))
    }

    /// The time spent in the observed commits of `origin` whose heads are in `from..=to`
    /// (`None` if no commit span of it was observed).
    pub(super) fn busy(&self, origin: &ServerKey, from: u64, to: u64) -> Option<Duration> {
        let starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
        let began: BTreeMap<u64, Instant> =
            starts.get(origin.as_bytes())?.iter().copied().collect();
        drop(starts);
        let heads = self.lock();
        let total = heads
            .get(origin.as_bytes())?
            .iter()
            .filter(|&&(seq, _)| (from..=to).contains(&seq))
            .filter_map(|&(seq, end)| Some(end.saturating_duration_since(*began.get(&seq)?)))
            .sum();
        Some(total)
    }

    /// Records that nothing more will be recorded, and why: waits fail at once.
    pub(super) fn fail(&self, why: String) {
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        // Taken so that no waiter misses the notification between its check and its wait.
        drop(self.lock());
        self.changed.notify_all();
    }

    /// How many recorded commits of `origin` ended at a seq in `from..=to`.
    pub(super) fn commits(&self, origin: &ServerKey, from: u64, to: u64) -> u64 {
        self.lock().get(origin.as_bytes()).map_or(0, |log| {
            log.iter()
                .filter(|&&(s, _)| (from..=to).contains(&s))
                .count() as u64
        })
    }

    /// When entry `seq` of `origin` was committed: the instant of the first recorded commit
    /// whose head reached it.
    pub(super) fn committed_at(&self, origin: &ServerKey, seq: u64) -> Option<Instant> {
        let heads = self.lock();
        let log = heads.get(origin.as_bytes())?;
        let i = log.partition_point(|&(s, _)| s < seq);
        log.get(i).map(|&(_, at)| at)
    }

    /// Waits until `origin`'s head reaches `seq` and returns the instant of that
    /// commit. Fails when no commit of that origin is recorded for `stall` in a row.
    pub(super) fn wait_for(
        &self,
        origin: &ServerKey,
        seq: u64,
        stall: Duration,
    ) -> anyhow::Result<Instant> {
        let mut heads = self.lock();
        let mut last_seen = 0;
        let mut last_progress = Instant::now();
        loop {
            let log = heads.get(origin.as_bytes());
            if let Some(&(held, at)) = log.and_then(|v| v.last()) {
                if held >= seq {
                    let i = log.map_or(0, |v| v.partition_point(|&(s, _)| s < seq));
                    return Ok(log.and_then(|v| v.get(i)).map_or(at, |&(_, at)| at));
                }
                if held > last_seen {
                    last_seen = held;
                    last_progress = Instant::now();
                }
            }
            if let Some(why) = self
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                bail!("{why}");
            }
            let left = (last_progress + stall).saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "replication of {} stalled at seq {last_seen} of {seq} (nothing for {stall:?})",
                    origin.fingerprint()
                );
            }
            heads = self
                .changed
                .wait_timeout(heads, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// The feed heads a batch moves: `(origin, seq)` of every valid `head` put, of the own feed
/// in [`Table::LedgerCommits`] or of a replica in [`Table::Replicas`].
fn moved_heads(ops: &[Op]) -> Vec<([u8; POINT_LEN], u64)> {
    let is_head = |table: Table, key: &[u8]| match table {
        Table::LedgerCommits => key == HEAD_KEY,
        Table::Replicas => {
            let prefix = FeedKeys::replica(0).prefix().len();
            key.len() == prefix + HEAD_KEY.len()
                && key.first() == Some(&REPLICA_FEED_LEAD)
                && key.ends_with(HEAD_KEY)
        }
        _ => false,
    };
    ops.iter()
        .filter_map(|op| match op {
            Op::Put { table, key, value } if is_head(*table, key) => {
                let signed = SignedHead::decode(value).ok()?;
                Some((*signed.head.origin.as_bytes(), signed.head.seq))
            }
            _ => None,
        })
        .collect()
}

/// A store that records its feed commits in a [`CommitLog`] (see the module docs).
pub(super) struct Observed {
    inner: Arc<dyn Store>,
    log: Arc<CommitLog>,
}

impl Observed {
    /// `inner`, observed into `log`.
    pub(super) fn new(inner: Arc<dyn Store>, log: Arc<CommitLog>) -> Observed {
        Observed { inner, log }
    }
}

impl Store for Observed {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn get_first(&self, table: Table, keys: &[Vec<u8>]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_first(table, keys)
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan(table, prefix)
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan_from(table, prefix, start, limit)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let moved = moved_heads(&ops);
        let started = Instant::now();
        self.inner.commit(ops)?;
        let done = Instant::now();
        self.log.record_start(&moved, started);
        self.log.record(moved, done);
        Ok(())
    }

    /// The ledger's bulks of index keys move no head.
    fn commit_bulk(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.inner.commit_bulk(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use vserv_core::ServerIdentity;
    use vserv_service::ledger::Ledger;
    use vserv_service::replicas::Replicas;
    use vserv_store::memory::MemoryStore;

    /// Segments persisted into an observed store are logged at their heads' seqs, and
    /// `committed_at`/`wait_for` find the commit that first held a seq.
    #[test]
    fn records_replica_heads_at_their_commits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let origin = Arc::new(ServerIdentity::generate(&mut rng));
        let own = ServerIdentity::generate(&mut rng);
        let source_log = Arc::new(CommitLog::default());
        let source: Arc<dyn Store> = Arc::new(Observed::new(
            Arc::new(MemoryStore::new()),
            source_log.clone(),
        ));
        let ledger = Ledger::new(source.clone(), origin.clone());
        for i in 0..5u64 {
            let r = ledger.append("a", "k", format!("r{i}").as_bytes(), b"x=1\n", 1);
            assert!(r.is_ok(), "{r:?}");
        }
        let key = origin.public_key();
        // The own feed's five commits, one per append.
        assert_eq!(source_log.commits(&key, 1, 5), 5);
        assert_eq!(source_log.commits(&key, 2, 3), 2);
        let from = Replicas::new(source, key);
        let log = Arc::new(CommitLog::default());
        let observed: Arc<dyn Store> =
            Arc::new(Observed::new(Arc::new(MemoryStore::new()), log.clone()));
        let to = Replicas::new(observed, own.public_key());
        assert_eq!(log.committed_at(&key, 1), None);
        // Every append was its own commit: one segment per entry.
        for seq in 1..=2 {
            let segment = from.read_segment(&key, seq, 1).unwrap().unwrap();
            to.persist(&key, &segment.entries, &segment.head).unwrap();
        }
        let second = log.committed_at(&key, 2).unwrap();
        assert!(log.committed_at(&key, 1).unwrap() <= second);
        assert_eq!(log.committed_at(&key, 3), None);
        let segment = from.read_segment(&key, 3, 1 << 20).unwrap().unwrap();
        assert_eq!(segment.head.head.seq, 5);
        to.persist(&key, &segment.entries, &segment.head).unwrap();
        let third = log.committed_at(&key, 3).unwrap();
        assert!(third >= second);
        assert_eq!(log.committed_at(&key, 5), Some(third));
        assert_eq!(log.commits(&key, 1, 5), 3);
        let (began, durable) = log.commit_span(&key, 4).unwrap();
        assert_eq!(durable, third);
        assert!(began <= durable && began >= second);
        let busy = log.busy(&key, 1, 5).unwrap();
        assert!(busy <= third.saturating_duration_since(log.commit_span(&key, 1).unwrap().0));
        assert_eq!(log.busy(&key, 6, 9), Some(Duration::ZERO));
        let waited = log.wait_for(&key, 4, Duration::from_millis(10)).unwrap();
        assert_eq!(waited, third);
        assert!(log.wait_for(&key, 6, Duration::from_millis(10)).is_err());
    }
}
