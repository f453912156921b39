//! File transfers over the async client (spec/files.md): this runtime's driver of the
//! runtime-free [`Scheduler`] from `vserv_service::client::transfers`, so put and get of one
//! or many files, windows and resume behave exactly as on the blocking client.
//!
//! How it waits: the scheduler's requests go out through the session; every local file
//! step runs over [`StdFiles`] on the clients' worker pool ([`vserv_pool::client_pool`]),
//! never on an executor thread, and its result comes back on a channel that the client
//! races against the socket read while it waits for a reply, so a finished read or write
//! lets its transfer send at once. The files read ahead and write behind through the same
//! pool, so a transfer's disk and hashing work overlap its connection.

use std::path::Path;
use std::sync::Arc;

use smol::channel::{self, Sender};
pub use vserv_service::client::transfers::{
    DEFAULT_PARALLEL, DEFAULT_WINDOW, Download, MAX_PARALLEL, TransferFailure, TransferOptions,
    TransferOutcome, Upload, part_info_path, part_path,
};
use vserv_service::client::transfers::{
    FileResult, LocalDone, LocalWork, Scheduler, StdFiles, Step, WorkTicket, single_result,
};
use vserv_service::work::{Runner, Work};

use crate::Client;
use crate::client::Woken;

/// What comes back from the clients' pool: a work's result, or the ticket of a work that
/// ended without one (it panicked).
type Returned = Result<LocalDone<StdFiles>, WorkTicket>;

/// Sends the ticket back if the work ends without a result, so the scheduler never waits
/// for a work that is gone.
struct ReturnGuard {
    back: Sender<Returned>,
    ticket: Option<WorkTicket>,
}

impl Drop for ReturnGuard {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let _ = self.back.try_send(Err(ticket));
        }
    }
}

/// Runs `work` over `files` on the clients' pool ([`vserv_pool::client_pool`]); its result
/// comes back on `back`.
fn run_pooled(files: &StdFiles, work: LocalWork<StdFiles>, back: Sender<Returned>) {
    let mut guard = ReturnGuard {
        back: back.clone(),
        ticket: Some(work.ticket()),
    };
    let files = files.clone();
    vserv_pool::client_pool().run(Work::new("transfer step", move || {
        let done = work.run(&files);
        guard.ticket = None;
        let _ = guard.back.try_send(Ok(done));
    }));
}

impl Client {
    /// Uploads `local_path` to `remote_path`, calling `progress(done, total)` as the server
    /// acknowledges chunks. With `options.resume`, a partial upload the server kept is
    /// continued after checking its prefix hash against the local file (a mismatch starts
    /// again at 0); on a failure the upload is parked (`fclose`) while the connection works.
    /// This is [`put_many`](Self::put_many) with one file.
    pub async fn put_with(
        &mut self,
        local_path: &Path,
        remote_path: &str,
        options: &TransferOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<TransferOutcome, TransferFailure> {
        let upload = Upload {
            local: local_path.to_owned(),
            remote: remote_path.to_owned(),
        };
        let results = self
            .put_many(std::slice::from_ref(&upload), options, 1, &mut |_, d, t| {
                progress(d, t)
            })
            .await;
        single_result(results)
    }

    /// Downloads `remote_path` to `local_path`, calling `progress(done, total)` as data is
    /// written in order. The data becomes `local_path` only once its SHA-256 matched; an
    /// existing regular file there is replaced only with `options.overwrite`, anything else
    /// never. With `options.resume`, the partial copy an interrupted download left is
    /// continued after being re-hashed. This is [`get_many`](Self::get_many) with one file.
    pub async fn get_with(
        &mut self,
        remote_path: &str,
        local_path: &Path,
        options: &TransferOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<TransferOutcome, TransferFailure> {
        let download = Download {
            remote: remote_path.to_owned(),
            local: local_path.to_owned(),
        };
        let results = self
            .get_many(
                std::slice::from_ref(&download),
                options,
                1,
                &mut |_, d, t| progress(d, t),
            )
            .await;
        single_result(results)
    }

    /// Uploads every file of `files` over this connection, at most `parallel` at once,
    /// sharing `options.window`; one result per file, in order. `progress(index, done,
    /// total)` reports the acknowledged bytes of the file at `index`.
    pub async fn put_many(
        &mut self,
        files: &[Upload],
        options: &TransferOptions,
        parallel: usize,
        progress: &mut dyn FnMut(usize, u64, u64),
    ) -> Vec<FileResult> {
        let scheduler = Scheduler::puts(files, options, parallel, self.max_outstanding());
        self.drive(scheduler, progress).await
    }

    /// Downloads every file of `files` over this connection, at most `parallel` at once,
    /// sharing `options.window`; one result per file, in order (a second download to the
    /// same local path is not started). `progress(index, done, total)` reports the bytes of
    /// the file at `index` written in order.
    pub async fn get_many(
        &mut self,
        files: &[Download],
        options: &TransferOptions,
        parallel: usize,
        progress: &mut dyn FnMut(usize, u64, u64),
    ) -> Vec<FileResult> {
        let scheduler = Scheduler::gets(files, options, parallel, self.max_outstanding());
        self.drive(scheduler, progress).await
    }

    /// Drives `scheduler` until every transfer is over.
    async fn drive(
        &mut self,
        mut scheduler: Scheduler<StdFiles>,
        progress: &mut dyn FnMut(usize, u64, u64),
    ) -> Vec<FileResult> {
        let files = StdFiles::new(Arc::new(vserv_pool::client_pool()));
        let (back, returned) = channel::unbounded::<Returned>();
        let hand_back = |scheduler: &mut Scheduler<StdFiles>, item: Returned| match item {
            Ok(done) => scheduler.on_work_done(done),
            Err(ticket) => scheduler.on_work_lost(ticket, "the file work ended without a result"),
        };
        loop {
            match scheduler.poll(self.session_mut(), progress) {
                Step::Work(work) => run_pooled(&files, work, back.clone()),
                Step::AwaitReply(id) => {
                    let woken = self.pump_or(|s| s.take_response(id), returned.recv()).await;
                    match woken {
                        Ok(Woken::Done(reply)) => scheduler.on_reply(id, reply),
                        Ok(Woken::Other(Ok(item))) => hand_back(&mut scheduler, item),
                        // Unreachable while `back` is held here.
                        Ok(Woken::Other(Err(_))) => return scheduler.into_results(),
                        Err(e) => scheduler.on_reply(id, Err(e)),
                    }
                }
                Step::AwaitWork => match returned.recv().await {
                    Ok(item) => hand_back(&mut scheduler, item),
                    Err(_) => return scheduler.into_results(),
                },
                Step::Done => return scheduler.into_results(),
            }
        }
    }
}
