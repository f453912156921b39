//! The [`Scheduler`]: several file transfers at once on one connection (spec/files.md §1),
//! uploads or downloads, at most `parallel` of them open at a time (the next one opens when
//! one ends), sharing the connection's window. It does no I/O: requests go out through
//! [`Requests`], the driver waits for replies, and local file work goes to the driver.
//!
//! Window: the window (clamped to the connection's `max_outstanding`) is split between the
//! open transfers (each may keep up to its share, the window divided by the number open,
//! rounded up, in flight) and the total of every request outstanding on the connection
//! (chunks, `fopen`/`fget`, `fdone`, `fclose`) never exceeds it. A transfer that holds more
//! than its new share when another opens sends no more until it is below it.
//!
//! Replies: every request is recorded with the transfer it belongs to, in the order it was
//! sent. The driver waits for the oldest outstanding request across all transfers
//! ([`Step::AwaitReply`]); the scheduler then takes every reply already in from the oldest on,
//! handing each to its transfer, and refills the window, so requests leave in batches.
//!
//! A transfer failing (a local file error, a refusal by the server, an integrity mismatch)
//! ends only that transfer: the others go on, and its own requests still in flight are
//! drained as their replies arrive. A connection failure ends them all.
//!
//! The drive loop, written once per runtime:
//!
//! ```text
//! loop {
//!     match scheduler.poll(&mut session, &mut progress) {
//!         Step::Work(work) => /* run it (maybe elsewhere) */ scheduler.on_work_done(work.run(&files)),
//!         Step::AwaitReply(id) => /* wait for the reply to id, or a work's result */
//!             scheduler.on_reply(id, reply),
//!         Step::AwaitWork => /* wait for a work's result */ scheduler.on_work_done(done),
//!         Step::Done => break scheduler.into_results(),
//!     }
//! }
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

use vserv_core::transfer::{FcloseArgs, TransferError};

use super::download::DownloadJob;
use super::job::Base;
use super::local::LocalFiles;
use super::upload::UploadJob;
use super::wire::{Expect, Requests, Stop, Wire};
use super::work::{LocalDone, LocalWork, Outcome, WorkTicket, lost};
use super::{
    ClientError, Download, FileResult, MAX_PARALLEL, TransferFailure, TransferOptions, Upload,
};

/// What the driver does next.
pub enum Step<F: LocalFiles> {
    /// Run this local work (it may block: run it where blocking is allowed) and hand its
    /// result to [`Scheduler::on_work_done`]. Works of different transfers may run at once.
    Work(LocalWork<F>),
    /// Send what is queued, wait for the reply to request `id` (or for a work's result) and
    /// hand it to [`Scheduler::on_reply`]. A failure of the connection is handed over the
    /// same way, as the reply's error.
    AwaitReply(u32),
    /// Nothing can move until a work handed out earlier ends: wait for its result.
    AwaitWork,
    /// Every transfer is over: [`Scheduler::into_results`].
    Done,
}

/// One transfer.
enum Job<F: LocalFiles> {
    Up(UploadJob<F>),
    Down(DownloadJob<F>),
}

impl<F: LocalFiles> Job<F> {
    fn base(&mut self) -> &mut Base<F> {
        match self {
            Job::Up(j) => &mut j.base,
            Job::Down(j) => &mut j.base,
        }
    }

    fn base_ref(&self) -> &Base<F> {
        match self {
            Job::Up(j) => &j.base,
            Job::Down(j) => &j.base,
        }
    }

    fn fill(&mut self, wire: &mut Wire<'_>) -> Result<(), Stop> {
        match self {
            Job::Up(j) => j.fill(wire),
            Job::Down(j) => j.fill(wire),
        }
    }

    fn on_reply(
        &mut self,
        expect: Expect,
        reply: Result<Vec<Vec<u8>>, ClientError>,
    ) -> Result<(), TransferFailure> {
        match self {
            Job::Up(j) => j.on_reply(expect, reply),
            Job::Down(j) => j.on_reply(expect, reply),
        }
    }

    fn on_work(&mut self, outcome: Outcome<F>) -> Result<(), TransferFailure> {
        match self {
            Job::Up(j) => j.on_work(outcome),
            Job::Down(j) => j.on_work(outcome),
        }
    }

    fn fail(&mut self, failure: TransferFailure, connected: bool) {
        match self {
            Job::Up(j) => j.fail(failure, connected),
            Job::Down(j) => j.fail(failure, connected),
        }
    }

    /// Ends the job at once: its work was lost, so there is nothing left to clean up.
    fn abandon(&mut self, failure: TransferFailure, connected: bool) {
        match self {
            Job::Up(j) => j.abandon(),
            Job::Down(j) => j.abandon(),
        }
        self.base().end(Err(failure), connected);
    }

    fn progress(&self) -> Option<(u64, u64)> {
        match self {
            Job::Up(j) => j.progress(),
            Job::Down(j) => j.progress(),
        }
    }

    fn path(&self) -> &Path {
        match self {
            Job::Up(j) => &j.file.local,
            Job::Down(j) => &j.file.local,
        }
    }
}

/// Runs a batch of uploads or downloads on one connection without doing any I/O itself: the
/// driver calls [`poll`](Self::poll) and does what the returned [`Step`] says, until
/// [`Step::Done`]. One result per file, in order ([`into_results`](Self::into_results)).
pub struct Scheduler<F: LocalFiles> {
    window: usize,
    waiting: VecDeque<(usize, Job<F>)>,
    active: Vec<Option<(usize, Job<F>)>>,
    results: Vec<Option<FileResult>>,
    /// Requests outstanding on the connection, oldest first, with their job's slot.
    outstanding: VecDeque<(u32, usize)>,
    /// Works to hand to the driver.
    outbox: VecDeque<LocalWork<F>>,
    /// Works handed out and not yet back.
    working: usize,
    /// The connection's failure, once it failed.
    lost: Option<String>,
    /// The last poll found nothing able to move.
    stalled: bool,
}

impl<F: LocalFiles> Scheduler<F> {
    /// Uploads every file of `files`, at most `parallel` (clamped to 1..=[`MAX_PARALLEL`]
    /// and to the window) at once, sharing `options.window` (clamped to 1..=`max_outstanding`,
    /// the connection's limit); `options.resume` applies to each file. Two uploads to the
    /// same server path do not interleave: the server refuses the second while the first is
    /// open.
    pub fn puts(
        files: &[Upload],
        options: &TransferOptions,
        parallel: usize,
        max_outstanding: usize,
    ) -> Self {
        let window = options.window.clamp(1, max_outstanding.max(1));
        let jobs = files
            .iter()
            .map(|file| Job::Up(UploadJob::new(file.clone(), options.resume, window)));
        Self::new(jobs, window, parallel)
    }

    /// Downloads every file of `files`, like [`puts`](Self::puts). A download whose local
    /// path (compared lexically) is also the target of an earlier one in `files` is not
    /// started: [`TransferFailure::DuplicateTarget`].
    pub fn gets(
        files: &[Download],
        options: &TransferOptions,
        parallel: usize,
        max_outstanding: usize,
    ) -> Self {
        let window = options.window.clamp(1, max_outstanding.max(1));
        let mut targets = BTreeSet::new();
        let jobs: Vec<Job<F>> = files
            .iter()
            .map(|file| {
                let duplicate = !targets.insert(lexical(&file.local));
                Job::Down(DownloadJob::new(file.clone(), options, window, duplicate))
            })
            .collect();
        Self::new(jobs.into_iter(), window, parallel)
    }

    fn new(jobs: impl Iterator<Item = Job<F>>, window: usize, parallel: usize) -> Self {
        let waiting: VecDeque<(usize, Job<F>)> = jobs.enumerate().collect();
        let parallel = parallel.clamp(1, MAX_PARALLEL).min(window);
        Scheduler {
            window,
            results: (0..waiting.len()).map(|_| None).collect(),
            waiting,
            active: (0..parallel).map(|_| None).collect(),
            outstanding: VecDeque::new(),
            outbox: VecDeque::new(),
            working: 0,
            lost: None,
            stalled: false,
        }
    }

    /// Takes the replies already in, lets every transfer send what it can through
    /// `requests` and reports progress (`progress(index, done, total)`: the bytes of the
    /// file at `index` acknowledged or written in order), then says what the driver must do.
    pub fn poll(
        &mut self,
        requests: &mut dyn Requests,
        progress: &mut dyn FnMut(usize, u64, u64),
    ) -> Step<F> {
        loop {
            if let Some(work) = self.outbox.pop_front() {
                self.working += 1;
                return Step::Work(work);
            }
            if self.lost.is_none() {
                self.take_arrived(requests);
            }
            if self.lost.is_none() {
                self.fill(requests, progress);
            }
            let retired = self.retire();
            if !self.outbox.is_empty() {
                continue;
            }
            if self.lost.is_none()
                && let Some(&(id, _)) = self.outstanding.front()
            {
                self.stalled = false;
                return Step::AwaitReply(id);
            }
            if self.working > 0 {
                self.stalled = false;
                return Step::AwaitWork;
            }
            if self.active.iter().all(Option::is_none) && self.waiting.is_empty() {
                return Step::Done;
            }
            if !retired {
                // Nothing in flight, nothing out and nothing ended: no transfer can move (a
                // bug in a machine); end them rather than spin.
                if self.stalled {
                    let connected = self.lost.is_none();
                    for (_, job) in self.active.iter_mut().flatten() {
                        // No work is out (the count is 0), whatever the job believes.
                        job.base().working = false;
                        if !job.base_ref().over {
                            job.fail(TransferFailure::Machine(TransferError::BadState), connected);
                        } else if job.base_ref().result.is_none() {
                            job.base().result =
                                Some(Err(TransferFailure::Machine(TransferError::BadState)));
                        }
                        if self.lost.is_some() {
                            let base = job.base();
                            base.in_flight.clear();
                            base.close = None;
                        }
                    }
                    self.collect_outboxes();
                }
                self.stalled = true;
            }
        }
    }

    /// Hands over the reply to request `id` (the one [`Step::AwaitReply`] named), or the
    /// connection's failure (any error but [`ClientError::Server`]), which ends every
    /// transfer.
    pub fn on_reply(&mut self, id: u32, reply: Result<Vec<Vec<u8>>, ClientError>) {
        let Some(at) = self.outstanding.iter().position(|&(own, _)| own == id) else {
            return;
        };
        let slot = self.outstanding.get(at).map_or(0, |&(_, slot)| slot);
        match reply {
            Err(ClientError::Server(e)) => {
                self.outstanding.remove(at);
                self.hand_over(slot, id, Err(ClientError::Server(e)));
            }
            Err(e) => self.connection_failed(slot, e),
            Ok(fields) => {
                self.outstanding.remove(at);
                self.hand_over(slot, id, Ok(fields));
            }
        }
        self.collect_outboxes();
    }

    /// Hands back the result of a work from [`Step::Work`].
    pub fn on_work_done(&mut self, done: LocalDone<F>) {
        self.working = self.working.saturating_sub(1);
        let connected = self.lost.is_none();
        let WorkTicket { slot, index } = done.ticket;
        if let Some(Some((at, job))) = self.active.get_mut(slot)
            && *at == index
        {
            job.base().working = false;
            if let Err(e) = job.on_work(done.outcome) {
                job.fail(e, connected);
            }
        }
        self.collect_outboxes();
    }

    /// Reports that a work from [`Step::Work`] could not run or never came back (its
    /// worker died): its transfer fails, what the work held is gone.
    pub fn on_work_lost(&mut self, ticket: WorkTicket, reason: &str) {
        self.working = self.working.saturating_sub(1);
        let connected = self.lost.is_none();
        if let Some(Some((at, job))) = self.active.get_mut(ticket.slot)
            && *at == ticket.index
        {
            job.base().working = false;
            let failure = lost(job.path(), reason);
            job.abandon(failure, connected);
        }
        self.collect_outboxes();
    }

    /// One result per file, in the order given. A transfer not finished (the scheduler was
    /// not driven to [`Step::Done`]) is [`TransferFailure::Interrupted`].
    pub fn into_results(self) -> Vec<FileResult> {
        let lost = self.lost;
        self.results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(TransferFailure::Interrupted {
                        reason: lost.clone().unwrap_or_else(|| "not started".into()),
                    })
                })
            })
            .collect()
    }

    /// Takes every reply already in, oldest first, stopping at the first still missing.
    fn take_arrived(&mut self, requests: &mut dyn Requests) {
        while let Some(&(id, slot)) = self.outstanding.front() {
            let Some(reply) = requests.take_raw(id) else {
                break;
            };
            match reply {
                Ok(_) | Err(ClientError::Server(_)) => {
                    self.outstanding.pop_front();
                    self.hand_over(slot, id, reply);
                }
                Err(e) => {
                    self.connection_failed(slot, e);
                    break;
                }
            }
        }
        self.collect_outboxes();
    }

    /// Opens waiting jobs in free slots and lets every open job send what fits.
    fn fill(&mut self, requests: &mut dyn Requests, progress: &mut dyn FnMut(usize, u64, u64)) {
        for entry in self.active.iter_mut().filter(|e| e.is_none()) {
            *entry = self.waiting.pop_front();
        }
        let open = self.active.iter().flatten().count();
        if open == 0 {
            return;
        }
        let share = self.window.div_ceil(open);
        let mut failure = None;
        for (slot, entry) in self.active.iter_mut().enumerate() {
            let Some((index, job)) = entry else { continue };
            if !job.base_ref().over
                && let Some(p) = job.progress()
                && job.base_ref().shown != Some(p)
            {
                job.base().shown = Some(p);
                progress(*index, p.0, p.1);
            }
            let own = job.base_ref().in_flight.len();
            let room = share
                .saturating_sub(own)
                .min(self.window.saturating_sub(self.outstanding.len()));
            let mut wire = Wire {
                requests: &mut *requests,
                outstanding: &mut self.outstanding,
                slot,
                room,
            };
            if !job.base_ref().over {
                match job.fill(&mut wire) {
                    Ok(()) => {}
                    Err(Stop::File(e)) => job.fail(e, true),
                    Err(Stop::Connection(e)) => {
                        failure = Some((slot, e));
                        break;
                    }
                }
            }
            let base = job.base();
            if base.over
                && wire.room > 0
                && let Some(id) = base.close.take()
            {
                let args = FcloseArgs { id }.to_args();
                if let Err(Stop::Connection(e)) =
                    wire.send(&mut base.in_flight, "fclose", args, Expect::Close)
                {
                    failure = Some((slot, e));
                    break;
                }
            }
        }
        self.collect_outboxes();
        if let Some((slot, e)) = failure {
            self.connection_failed(slot, e);
        }
    }

    /// Moves every job's pending work into the scheduler's outbox.
    fn collect_outboxes(&mut self) {
        for (slot, entry) in self.active.iter_mut().enumerate() {
            let Some((index, job)) = entry else { continue };
            if let Some(op) = job.base().outbox.take() {
                self.outbox.push_back(LocalWork {
                    ticket: WorkTicket {
                        slot,
                        index: *index,
                    },
                    op,
                });
            }
        }
    }

    /// Retires the jobs that are over with nothing in flight; whether any was.
    fn retire(&mut self) -> bool {
        let mut retired = false;
        for entry in &mut self.active {
            if entry
                .as_ref()
                .is_some_and(|(_, job)| job.base_ref().retired())
                && let Some((index, mut job)) = entry.take()
                && let Some(slot) = self.results.get_mut(index)
            {
                *slot = job.base().result.take();
                retired = true;
            }
        }
        retired
    }

    /// Gives the reply to request `id` to the job in `slot` (or drains it, if that job is
    /// over).
    fn hand_over(&mut self, slot: usize, id: u32, reply: Result<Vec<Vec<u8>>, ClientError>) {
        let Some(Some((_, job))) = self.active.get_mut(slot) else {
            return;
        };
        // Requests are recorded in the order they leave, so the reply is to the job's oldest
        // request (the search only guards the bookkeeping).
        let in_flight = &mut job.base().in_flight;
        let Some(at) = in_flight.iter().position(|&(own, _)| own == id) else {
            return;
        };
        let Some((_, expect)) = in_flight.remove(at) else {
            return;
        };
        if !job.base_ref().over
            && let Err(e) = job.on_reply(expect, reply)
        {
            job.fail(e, true);
        }
    }

    /// The connection is gone: every transfer still running ends, the one whose request met
    /// the failure with it, the others (and those not started) as interrupted. Their local
    /// clean-up still runs as work.
    fn connection_failed(&mut self, failed_slot: usize, error: ClientError) {
        if self.lost.is_some() {
            return;
        }
        let reason = error.to_string();
        self.lost = Some(reason.clone());
        let mut error = Some(error);
        for (slot, entry) in self.active.iter_mut().enumerate() {
            let Some((_, job)) = entry else { continue };
            if !job.base_ref().over {
                let failure = match error.take_if(|_| slot == failed_slot) {
                    Some(e) => TransferFailure::Client(e),
                    None => TransferFailure::Interrupted {
                        reason: reason.clone(),
                    },
                };
                job.fail(failure, false);
            }
            // No reply will come any more.
            let base = job.base();
            base.in_flight.clear();
            base.close = None;
            base.id = None;
        }
        self.outstanding.clear();
        self.waiting.clear();
        self.collect_outboxes();
    }
}

/// `path` without `.` components, so `./a` and `a` compare equal.
fn lexical(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}
