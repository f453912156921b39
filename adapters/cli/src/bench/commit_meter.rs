//! A [`Store`] wrapper for `vserv bench ledger` that times every durable commit, so the
//! report can say how much of an `rput` phase the ledger's writer spent in the store, and
//! where that time went: on a CPU (the journal write and the in-memory table inserts),
//! waiting for a CPU, or blocked (the fsync, and any write stall of the store).
//!
//! The split reads the committing thread's CPU clock and its time runnable but waiting for
//! a CPU (`/proc/thread-self/schedstat`) before and after each commit; where the system
//! does not keep them (not Linux), only the commits' wall time is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use vserv_store::{Op, Store, StoreError, Table};

/// The store it wraps, unchanged, plus running totals of its commits.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    commits: AtomicU64,
    records: AtomicU64,
    wall_ns: AtomicU64,
    on_cpu_ns: AtomicU64,
    waiting_ns: AtomicU64,
    /// Some commit's thread had no scheduler statistics: the split is unknown.
    split_missing: AtomicBool,
}

/// The totals of a [`MeteredStore`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitTotals {
    commits: u64,
    records: u64,
    wall_ns: u64,
    on_cpu_ns: u64,
    waiting_ns: u64,
    split_known: bool,
}

impl CommitTotals {
    /// What was added between `earlier` and `self`.
    pub fn since(&self, earlier: &CommitTotals) -> CommitTotals {
        CommitTotals {
            commits: self.commits.saturating_sub(earlier.commits),
            records: self.records.saturating_sub(earlier.records),
            wall_ns: self.wall_ns.saturating_sub(earlier.wall_ns),
            on_cpu_ns: self.on_cpu_ns.saturating_sub(earlier.on_cpu_ns),
            waiting_ns: self.waiting_ns.saturating_sub(earlier.waiting_ns),
            split_known: self.split_known && earlier.split_known,
        }
    }
}

impl MeteredStore {
    /// Wraps `inner`; the totals start at zero.
    pub fn new(inner: Arc<dyn Store>) -> MeteredStore {
        MeteredStore {
            inner,
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            wall_ns: AtomicU64::new(0),
            on_cpu_ns: AtomicU64::new(0),
            waiting_ns: AtomicU64::new(0),
            split_missing: AtomicBool::new(false),
        }
    }

    /// The totals of every commit that has returned so far.
    pub fn totals(&self) -> CommitTotals {
        CommitTotals {
            commits: self.commits.load(Ordering::Acquire),
            records: self.records.load(Ordering::Acquire),
            wall_ns: self.wall_ns.load(Ordering::Acquire),
            on_cpu_ns: self.on_cpu_ns.load(Ordering::Acquire),
            waiting_ns: self.waiting_ns.load(Ordering::Acquire),
            split_known: !self.split_missing.load(Ordering::Acquire),
        }
    }
}

impl Store for MeteredStore {
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
        let records = ops.len() as u64;
        self.metered(records, || self.inner.commit(ops))
    }

    fn commit_bulk(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let records = ops.len() as u64;
        self.metered(records, || self.inner.commit_bulk(ops))
    }
}

impl MeteredStore {
    /// Runs `commit` (of `records` records), adding its times to the totals.
    fn metered(
        &self,
        records: u64,
        commit: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // The wall interval encloses both clock readings, so the CPU and waiting time
        // measured between them can never exceed it (a preemption just before or after
        // the commit counts in both, not in the split alone).
        let start = Instant::now();
        let before = thread_clocks();
        let result = commit();
        let after = thread_clocks();
        let wall = start.elapsed();
        match (before, after) {
            (Some(before), Some(after)) => {
                self.on_cpu_ns
                    .fetch_add(after.0.saturating_sub(before.0), Ordering::AcqRel);
                self.waiting_ns
                    .fetch_add(after.1.saturating_sub(before.1), Ordering::AcqRel);
            }
            _ => self.split_missing.store(true, Ordering::Release),
        }
        let wall_ns = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
        self.wall_ns.fetch_add(wall_ns, Ordering::AcqRel);
        self.records.fetch_add(records, Ordering::AcqRel);
        // Last, so that totals read after a phase count each commit whole.
        self.commits.fetch_add(1, Ordering::AcqRel);
        result
    }
}

/// The calling thread's time on a CPU and time runnable but waiting for one, in
/// nanoseconds, so far (`None` where the kernel does not say).
#[cfg(target_os = "linux")]
fn thread_clocks() -> Option<(u64, u64)> {
    use std::cell::RefCell;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    thread_local! {
        /// This thread's `/proc/thread-self/schedstat`, opened on first use.
        static SCHEDSTAT: RefCell<Option<Option<File>>> = const { RefCell::new(None) };
    }
    // The thread CPU clock is exact at any moment; schedstat's CPU time is only brought up
    // to date at scheduler events (up to a tick late), its waiting time at each switch to
    // this thread, so exact whenever the thread reads it.
    let cpu = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let on_cpu = u64::try_from(cpu.tv_sec)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u64::try_from(cpu.tv_nsec).ok()?)?;
    let waiting = SCHEDSTAT.with(|cell| {
        let mut cell = cell.borrow_mut();
        let file = cell
            .get_or_insert_with(|| File::open("/proc/thread-self/schedstat").ok())
            .as_ref()?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        parse_schedstat_waiting(buf.get(..n)?)
    })?;
    Some((on_cpu, waiting))
}

/// Elsewhere the split is not measured.
#[cfg(not(target_os = "linux"))]
fn thread_clocks() -> Option<(u64, u64)> {
    None
}

/// The second number of a schedstat line (`on_cpu_ns waiting_ns timeslices`).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_schedstat_waiting(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let mut numbers = text.split_ascii_whitespace().map(str::parse::<u64>);
    numbers.next()?.ok()?;
    numbers.next()?.ok()
}

/// The store commits of one benchmark phase, as reported.
#[derive(Serialize, Debug)]
pub struct PhaseCommits {
    /// Durable store commits (the ledger's group commits, one batch each).
    pub commits: u64,
    /// Store records (puts) per commit, on average.
    pub records_per_commit: f64,
    /// Wall time of one commit, on average, milliseconds.
    pub ms_each: f64,
    /// Of [`PhaseCommits::ms_each`]: on a CPU (`None`: the kernel keeps no statistics).
    pub on_cpu_ms_each: Option<f64>,
    /// Of [`PhaseCommits::ms_each`]: runnable, waiting for a CPU.
    pub waiting_ms_each: Option<f64>,
    /// Of [`PhaseCommits::ms_each`]: neither, i.e. blocked (the fsync, a write stall).
    pub blocked_ms_each: Option<f64>,
    /// The commits' wall time over the phase's: how busy the single writer was (1.0: the
    /// writer never rested, so it bounds the phase's rate).
    pub writer_busy: f64,
}

impl PhaseCommits {
    /// The report of `totals`, the commits of a phase that lasted `seconds`.
    pub fn of(totals: &CommitTotals, seconds: f64) -> PhaseCommits {
        let commits = totals.commits.max(1) as f64;
        let ms = |ns: u64| ns as f64 / 1e6 / commits;
        let blocked = totals
            .wall_ns
            .saturating_sub(totals.on_cpu_ns)
            .saturating_sub(totals.waiting_ns);
        let known = |ns: u64| totals.split_known.then(|| ms(ns));
        PhaseCommits {
            commits: totals.commits,
            records_per_commit: totals.records as f64 / commits,
            ms_each: ms(totals.wall_ns),
            on_cpu_ms_each: known(totals.on_cpu_ns),
            waiting_ms_each: known(totals.waiting_ns),
            blocked_ms_each: known(blocked),
            writer_busy: totals.wall_ns as f64 / 1e9 / seconds.max(f64::MIN_POSITIVE),
        }
    }

    /// One line of the table.
    pub fn line(&self) -> String {
        let split = match (
            self.on_cpu_ms_each,
            self.waiting_ms_each,
            self.blocked_ms_each,
        ) {
            (Some(cpu), Some(waiting), Some(blocked)) => format!(
                ": {cpu:.2} on a CPU, {waiting:.2} waiting for one, {blocked:.2} blocked \
                 (fsync, write stalls)"
            ),
            _ => String::new(),
        };
        format!(
            "{} store commits of {:.0} records, {:.2} ms each{split}; the writer was busy \
             {:.0}% of the phase",
            self.commits,
            self.records_per_commit,
            self.ms_each,
            self.writer_busy * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vserv_store::MemoryStore;

    fn put(key: &[u8]) -> Op {
        Op::Put {
            table: Table::Ledger,
            key: key.to_vec(),
            value: b"v".to_vec(),
        }
    }

    #[test]
    fn commits_pass_through_and_are_counted_with_their_records() {
        let store = MeteredStore::new(Arc::new(MemoryStore::new()));
        let start = store.totals();
        store.commit(vec![put(b"a"), put(b"b")]).unwrap();
        store.commit(vec![put(b"c")]).unwrap();
        assert_eq!(store.get(Table::Ledger, b"b").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.scan(Table::Ledger, b"").unwrap().len(), 3);
        let phase = store.totals().since(&start);
        assert_eq!((phase.commits, phase.records), (2, 3));
        assert!(phase.wall_ns > 0);
        let report = PhaseCommits::of(&phase, 1.0);
        assert_eq!(report.commits, 2);
        assert!((report.records_per_commit - 1.5).abs() < 1e-9);
        #[cfg(target_os = "linux")]
        {
            // Measured on Linux: the parts add up to the wall time they split (to within
            // the CPU clock's and the scheduler's accounting grain).
            let cpu = report.on_cpu_ms_each.unwrap();
            let waiting = report.waiting_ms_each.unwrap();
            let blocked = report.blocked_ms_each.unwrap();
            assert!(cpu > 0.0);
            assert!(cpu + waiting + blocked <= report.ms_each + 0.05);
        }
    }

    #[test]
    fn schedstat_lines_parse_and_garbage_does_not() {
        assert_eq!(parse_schedstat_waiting(b"123 456 7\n"), Some(456));
        assert_eq!(parse_schedstat_waiting(b"123\n"), None);
        assert_eq!(parse_schedstat_waiting(b"x 1 2"), None);
        assert_eq!(parse_schedstat_waiting(&[0xff, b' ', b'1']), None);
    }

    #[test]
    fn a_phase_without_commits_reports_zeros_not_nans() {
        let report = PhaseCommits::of(&CommitTotals::default(), 0.0);
        assert_eq!(report.commits, 0);
        assert_eq!(report.ms_each, 0.0);
        assert_eq!(report.writer_busy, 0.0);
        assert_eq!(report.on_cpu_ms_each, None);
    }
}
