//! What the scheduler keeps of every transfer ([`Base`]): its requests in flight, whether
//! it is over and its result, the server transfer to close, and the one local work it may
//! have out.

use std::collections::VecDeque;

use super::FileResult;
use super::local::LocalFiles;
use super::wire::Expect;
use super::work::Op;

/// What the scheduler keeps of every job.
pub(super) struct Base<F: LocalFiles> {
    /// This job's requests in flight, oldest first.
    pub(super) in_flight: VecDeque<(u32, Expect)>,
    /// The transfer takes no more replies or steps (its result may still be on its way from
    /// a clean-up work).
    pub(super) over: bool,
    /// The result, once known.
    pub(super) result: Option<FileResult>,
    /// The server transfer open for this job, closed with `fclose` when it ends.
    pub(super) id: Option<u32>,
    /// An `fclose` still to send before the job can end.
    pub(super) close: Option<u32>,
    /// The progress last reported.
    pub(super) shown: Option<(u64, u64)>,
    /// A work of this job is with the driver.
    pub(super) working: bool,
    /// A work to hand to the driver.
    pub(super) outbox: Option<Op<F>>,
}

impl<F: LocalFiles> Default for Base<F> {
    fn default() -> Self {
        Base {
            in_flight: VecDeque::new(),
            over: false,
            result: None,
            id: None,
            close: None,
            shown: None,
            working: false,
            outbox: None,
        }
    }
}

impl<F: LocalFiles> Base<F> {
    /// Hands `op` to the driver (a job has at most one work out at a time).
    pub(super) fn start(&mut self, op: Op<F>) {
        self.outbox = Some(op);
        self.working = true;
    }

    /// Ends the job with `result`; its server transfer is closed if the connection works.
    pub(super) fn end(&mut self, result: FileResult, connected: bool) {
        self.over = true;
        self.result = Some(result);
        let id = self.id.take();
        if connected {
            self.close = id;
        }
    }

    /// The job is over and nothing of it is in flight or out.
    pub(super) fn retired(&self) -> bool {
        self.over
            && self.result.is_some()
            && self.in_flight.is_empty()
            && self.close.is_none()
            && !self.working
    }
}
