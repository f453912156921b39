//! The node's timed duties: work no session asks for but the node owes on a schedule (the
//! build of the ledger's record id filter, once at start; the sweep of expired partial
//! uploads; the replication links' dials).
//!
//! The service decides and the runtime only keeps the timer, as for sessions: the runtime
//! asks [`Service::next_duty`] when something is next due, sleeps until then beside its
//! accepts (blocking: in its accept loop's `poll`; smol: a timer raced with `accept`; the sim:
//! in its world's schedule), then calls [`Service::run_due_duties`], which hands what is due to
//! the service's runner as [`Work`] and never waits, and takes the replication dials that
//! are due with [`Service::poll_dial`] (`peers.rs`), each a connection it makes and drives.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::Service;
use crate::files::{FileTree, PartialSweep};
use crate::work::Work;

/// How often a node sweeps expired partial uploads, after the sweep it does at start.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(3_600);

/// The schedule of the partial-upload sweep.
#[derive(Debug)]
pub(super) struct SweepSchedule {
    /// How long a partial upload may go unwritten.
    expiry: Duration,
    /// Time between sweeps.
    every: Duration,
    state: Mutex<SweepState>,
}

#[derive(Debug, Default)]
struct SweepState {
    /// When the next sweep is due; set at the first [`Service::next_duty`].
    next: Option<Instant>,
    /// A sweep is with the runner: the next waits for it to end.
    running: bool,
}

impl SweepSchedule {
    pub(super) fn new(expiry: Duration, every: Duration) -> SweepSchedule {
        SweepSchedule {
            expiry,
            every: every.max(Duration::from_millis(1)),
            state: Mutex::new(SweepState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SweepState> {
        // Every change under this lock is whole: a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sweeps the partial uploads of `files` unwritten since `now - expiry`, logging the result:
/// `None` if the homes could not be reached (logged too).
pub(crate) fn sweep_and_log(
    files: &dyn FileTree,
    now: SystemTime,
    expiry: Duration,
) -> Option<PartialSweep> {
    match files.sweep_partials(now, expiry) {
        Ok(report) => {
            tracing::info!(
                removed = report.removed,
                bytes = report.bytes,
                in_use = report.in_use,
                failed = report.failed,
                expiry_secs = expiry.as_secs(),
                "swept expired partial uploads"
            );
            Some(report)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not sweep expired partial uploads");
            None
        }
    }
}

impl Service {
    /// This service sweeping the partial uploads unwritten for `expiry` every `every`
    /// (first `every` after the runtime first asks [`Service::next_duty`]). Needs a file
    /// tree ([`Service::with_files`]); without one there is nothing to sweep.
    pub fn with_partial_sweep(self, expiry: Duration, every: Duration) -> Self {
        let schedule = std::sync::Arc::new(SweepSchedule::new(expiry, every));
        self.configure(|s| s.sweep = Some(schedule))
    }

    /// When a duty is next due (`None`: the service has none). The first call starts the
    /// schedule at `now`. A runtime sleeps until then, beside its other waits, and then
    /// calls [`Service::run_due_duties`].
    pub fn next_duty(&self, now: Instant) -> Option<Instant> {
        let ids = self
            .shared
            .ledger
            .as_ref()
            .is_some_and(|ledger| ledger.id_filter_build_due())
            .then_some(now);
        [ids, self.next_sweep(now), self.next_dial(now)]
            .into_iter()
            .flatten()
            .min()
    }

    fn next_sweep(&self, now: Instant) -> Option<Instant> {
        let schedule = self.shared.sweep.as_ref()?;
        self.shared.files.as_ref()?;
        let mut state = schedule.state();
        Some(*state.next.get_or_insert(now + schedule.every))
    }

    /// Hands every duty due at `now` to the runner; `wall` is the wall clock the sweep
    /// compares the partial uploads' times with. Never waits (but with the
    /// [`Inline`](crate::work::Inline) runner, whose work runs inside this call). A sweep
    /// still running when the next is due delays that one by a whole interval.
    pub fn run_due_duties(&self, now: Instant, wall: SystemTime) {
        if let Some(build) = self
            .shared
            .ledger
            .as_ref()
            .and_then(|ledger| ledger.id_filter_build())
        {
            self.shared.runner.run(build);
        }
        self.run_due_sweep(now, wall);
    }

    /// Hands the partial-upload sweep to the runner if it is due.
    fn run_due_sweep(&self, now: Instant, wall: SystemTime) {
        let (Some(schedule), Some(files)) = (&self.shared.sweep, &self.shared.files) else {
            return;
        };
        let mut state = schedule.state();
        let due = state.next.is_some_and(|next| next <= now);
        if !due {
            return;
        }
        state.next = Some(now + schedule.every);
        if std::mem::replace(&mut state.running, true) {
            return;
        }
        drop(state);
        let (schedule, files) = (schedule.clone(), files.clone());
        self.shared.runner.run(Work::new("partial sweep", move || {
            sweep_and_log(files.as_ref(), wall, schedule.expiry);
            schedule.state().running = false;
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rand::SeedableRng;

    use super::*;
    use crate::node::{Node, NodeSettings};
    use crate::work::Runner;

    /// Runs each work at once and counts the sweeps and the id filter builds.
    #[derive(Default)]
    struct CountRuns {
        sweeps: AtomicUsize,
        id_filters: AtomicUsize,
    }

    impl CountRuns {
        fn sweeps(&self) -> usize {
            self.sweeps.load(Ordering::SeqCst)
        }

        fn id_filters(&self) -> usize {
            self.id_filters.load(Ordering::SeqCst)
        }
    }

    impl Runner for CountRuns {
        fn run(&self, work: Work) {
            match work.label() {
                "partial sweep" => self.sweeps.fetch_add(1, Ordering::SeqCst),
                "ledger id filter" => self.id_filters.fetch_add(1, Ordering::SeqCst),
                _ => 0,
            };
            work.run();
        }
    }

    fn node(expiry: Option<Duration>) -> Node {
        let identity = Arc::new(vserv_core::ServerIdentity::generate(
            &mut rand::rngs::StdRng::seed_from_u64(1),
        ));
        let settings = NodeSettings {
            partial_expiry: expiry,
            ..NodeSettings::default()
        };
        let rng = Box::new(rand::rngs::StdRng::seed_from_u64(2));
        match Node::in_memory(identity, settings, rng) {
            Ok(node) => node,
            Err(e) => panic!("in-memory node: {e}"),
        }
    }

    #[test]
    fn the_id_filter_is_built_once_at_the_first_duties_then_a_node_without_expiry_has_none() {
        let runs = Arc::new(CountRuns::default());
        let service = node(None).service().with_runner(runs.clone());
        let now = Instant::now();
        assert_eq!(service.next_duty(now), Some(now));
        service.run_due_duties(now, SystemTime::now());
        assert_eq!(runs.id_filters(), 1);
        assert_eq!(service.next_duty(now), None);
        service.run_due_duties(now, SystemTime::now());
        assert_eq!(runs.id_filters(), 1);
        assert_eq!(runs.sweeps(), 0);
    }

    #[test]
    fn the_sweep_runs_once_per_interval_from_the_first_question() {
        let every = DEFAULT_SWEEP_INTERVAL;
        let sweeps = Arc::new(CountRuns::default());
        let service = node(Some(Duration::from_secs(60)))
            .service()
            .with_runner(sweeps.clone());
        let start = Instant::now();
        // The id filter's build first, at once.
        assert_eq!(service.next_duty(start), Some(start));
        service.run_due_duties(start, SystemTime::now());
        let first = service.next_duty(start);
        assert_eq!(first, Some(start + every));
        // Asked again later, the schedule does not move.
        assert_eq!(service.next_duty(start + every / 2), first);
        // Not due yet: nothing runs.
        service.run_due_duties(start + every / 2, SystemTime::now());
        assert_eq!(sweeps.sweeps(), 0);
        // Due: one sweep, and the next is an interval after it.
        let at = start + every + Duration::from_secs(1);
        service.run_due_duties(at, SystemTime::now());
        assert_eq!(sweeps.sweeps(), 1);
        assert_eq!(service.next_duty(at), Some(at + every));
        service.run_due_duties(at, SystemTime::now());
        assert_eq!(sweeps.sweeps(), 1);
    }
}
