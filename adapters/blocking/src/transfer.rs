//! File transfers over a blocking client (spec/files.md): this runtime's driver of the
//! runtime-free [`Scheduler`] from `vserv_service::client::transfers`. [`put_with`] and
//! [`get_with`] run one transfer, [`put_many`] and [`get_many`] several on one connection
//! sharing its window; the scheduling, the resume checks and the integrity rules are the
//! scheduler's (see its docs), this module only waits.
//!
//! How it waits: requests leave when the client next waits for a reply; local file work runs
//! on the connection's thread over [`StdFiles`], whose read-ahead and write-behind runs go
//! to the clients' [`WorkPool`](crate::WorkPool) and keep the disk and the hasher busy
//! beside it. A resume's re-hash runs on that pool too, so the connection's other
//! transfers go on meanwhile; its result comes back over a channel, taken before each wait
//! for a reply and waited for when nothing else can move. The driver starts no thread of
//! its own: the pool starts its threads on demand and ends them when idle.
//!
//! Memory stays flat whatever the file size: files are read and written sequentially in
//! batches, and at most `window` chunk requests are in flight.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};

use vserv_service::client::ClientError;
pub use vserv_service::client::transfers::{
    DEFAULT_PARALLEL, DEFAULT_WINDOW, Download, FileResult, MAX_PARALLEL, PART_INFO_SUFFIX,
    PART_SUFFIX, TransferFailure, TransferOptions, TransferOutcome, Upload, part_info_path,
    part_path,
};
use vserv_service::client::transfers::{
    LocalDone, LocalWork, Requests, Scheduler, StdFiles, Step, WorkTicket, single_result,
};
use vserv_service::work::{Runner, Work};

use crate::Client;

/// What the transfer driver needs of a connection: pipelined raw requests. [`Client`]
/// implements it; tests can drive the transfers against an in-process fake.
pub trait RawCalls {
    /// Queues a request; it leaves with the others when the caller next waits.
    fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError>;
    /// [`send_raw`](Self::send_raw) with borrowed arguments (the same request). The default
    /// copies them; [`Client`] encodes them straight into the record.
    fn send_raw_ref(&mut self, name: &str, args: &[&[u8]]) -> Result<u32, ClientError> {
        self.send_raw(name, args.iter().map(|a| a.to_vec()).collect())
    }
    /// The reply to `id` if it already arrived (an error reply is [`ClientError::Server`]).
    fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>>;
    /// Sends what is queued and waits for the reply to `id`.
    fn wait_raw(&mut self, id: u32) -> Result<Vec<Vec<u8>>, ClientError>;
    /// The most requests the connection allows in flight.
    fn max_outstanding(&self) -> usize;
}

impl RawCalls for Client {
    fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError> {
        Client::send_raw(self, name, args)
    }

    fn send_raw_ref(&mut self, name: &str, args: &[&[u8]]) -> Result<u32, ClientError> {
        Client::send_raw_ref(self, name, args)
    }

    fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
        Client::take_raw(self, id)
    }

    fn wait_raw(&mut self, id: u32) -> Result<Vec<Vec<u8>>, ClientError> {
        Client::wait_raw(self, id)
    }

    fn max_outstanding(&self) -> usize {
        Client::max_outstanding(self)
    }
}

/// The scheduler's view of a [`RawCalls`] connection: its calls that do not wait.
struct NoWait<'a, C: ?Sized>(&'a mut C);

impl<C: RawCalls + ?Sized> Requests for NoWait<'_, C> {
    fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError> {
        self.0.send_raw(name, args)
    }

    fn send_raw_ref(&mut self, name: &str, args: &[&[u8]]) -> Result<u32, ClientError> {
        self.0.send_raw_ref(name, args)
    }

    fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
        self.0.take_raw(id)
    }
}

/// Uploads `local_path` to `remote_path` with the default window; see [`put_with`].
pub fn put(
    client: &mut (impl RawCalls + ?Sized),
    local_path: &Path,
    remote_path: &str,
    resume: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TransferOutcome, TransferFailure> {
    let options = TransferOptions {
        resume,
        ..TransferOptions::default()
    };
    put_with(client, local_path, remote_path, &options, progress)
}

/// Uploads `local_path` to `remote_path`, calling `progress(done, total)` as the server
/// acknowledges chunks. With `resume`, a partial upload the server kept is continued after
/// checking its prefix hash against the local file (a mismatch starts again at 0). On a
/// failure the upload is parked (`fclose`) when the connection still works, so a later
/// resume can continue it. This is [`put_many`] with one file.
pub fn put_with(
    client: &mut (impl RawCalls + ?Sized),
    local_path: &Path,
    remote_path: &str,
    options: &TransferOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TransferOutcome, TransferFailure> {
    let upload = Upload {
        local: local_path.to_owned(),
        remote: remote_path.to_owned(),
    };
    let results = put_many(
        client,
        std::slice::from_ref(&upload),
        options,
        1,
        &mut |_, done, total| progress(done, total),
    );
    single_result(results)
}

/// Downloads `remote_path` to `local_path` with the default window; see [`get_with`].
pub fn get(
    client: &mut (impl RawCalls + ?Sized),
    remote_path: &str,
    local_path: &Path,
    resume: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TransferOutcome, TransferFailure> {
    let options = TransferOptions {
        resume,
        ..TransferOptions::default()
    };
    get_with(client, remote_path, local_path, &options, progress)
}

/// Downloads `remote_path` to `local_path`, calling `progress(done, total)` as data is
/// written in order. The data goes to [`part_path`] and becomes `local_path` (an atomic
/// rename) only once its SHA-256 matched the server's. An existing regular file at
/// `local_path` is replaced only with [`TransferOptions::overwrite`] (checked before the
/// `fget` and again before the rename); a symlink, directory, device, FIFO or socket there
/// is never replaced. With `resume`, a partial copy of the same size and hash continues from
/// its length after being re-hashed; if the finished copy then fails the hash, the download
/// starts once more from 0. This is [`get_many`] with one file.
pub fn get_with(
    client: &mut (impl RawCalls + ?Sized),
    remote_path: &str,
    local_path: &Path,
    options: &TransferOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TransferOutcome, TransferFailure> {
    let download = Download {
        remote: remote_path.to_owned(),
        local: local_path.to_owned(),
    };
    let results = get_many(
        client,
        std::slice::from_ref(&download),
        options,
        1,
        &mut |_, done, total| progress(done, total),
    );
    single_result(results)
}

/// Uploads every file of `files` over one connection, at most `parallel` (clamped to
/// 1..=[`MAX_PARALLEL`] and to the window) at once, sharing `options.window`; `options.resume`
/// applies to each file as in [`put_with`]. `progress(index, done, total)` reports the
/// acknowledged bytes of the file at `index` in `files`.
///
/// Returns one result per file, in the order of `files`. Two uploads to the same server path
/// do not interleave: the server refuses the second while the first is open.
pub fn put_many(
    client: &mut (impl RawCalls + ?Sized),
    files: &[Upload],
    options: &TransferOptions,
    parallel: usize,
    progress: &mut dyn FnMut(usize, u64, u64),
) -> Vec<FileResult> {
    let scheduler = Scheduler::puts(files, options, parallel, client.max_outstanding());
    drive(client, scheduler, progress)
}

/// Downloads every file of `files` over one connection, at most `parallel` (clamped to
/// 1..=[`MAX_PARALLEL`] and to the window) at once, sharing `options.window`; `options.resume`
/// applies to each file as in [`get_with`]. `progress(index, done, total)` reports the
/// bytes of the file at `index` in `files` written in order.
///
/// Returns one result per file, in the order of `files`. A download whose local path (compared
/// lexically) is also the target of an earlier one in `files` is not started:
/// [`TransferFailure::DuplicateTarget`].
pub fn get_many(
    client: &mut (impl RawCalls + ?Sized),
    files: &[Download],
    options: &TransferOptions,
    parallel: usize,
    progress: &mut dyn FnMut(usize, u64, u64),
) -> Vec<FileResult> {
    let scheduler = Scheduler::gets(files, options, parallel, client.max_outstanding());
    drive(client, scheduler, progress)
}

/// The pool every client's transfers share ([`vserv_pool::client_pool`]).
fn client_pool() -> Arc<dyn Runner> {
    Arc::new(vserv_pool::client_pool())
}

/// What comes back from the pool: a long work's result, or the ticket of a work that ended
/// without one (it panicked, or was dropped unrun).
type Returned = Result<LocalDone<StdFiles>, WorkTicket>;

/// Sends the ticket back if the work ends without a result, so the driver never waits for a
/// work that is gone.
struct ReturnGuard {
    back: Sender<Returned>,
    ticket: Option<WorkTicket>,
}

impl Drop for ReturnGuard {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let _ = self.back.send(Err(ticket));
        }
    }
}

/// Runs `work` over `files` on `pool`; its result comes back on `back`.
fn run_on_pool(
    pool: &dyn Runner,
    files: &StdFiles,
    work: LocalWork<StdFiles>,
    back: &Sender<Returned>,
) {
    let mut guard = ReturnGuard {
        back: back.clone(),
        ticket: Some(work.ticket()),
    };
    let files = files.clone();
    pool.run(Work::new("transfer re-hash", move || {
        let done = work.run(&files);
        guard.ticket = None;
        let _ = guard.back.send(Ok(done));
    }));
}

/// The long works handed to the pool and not yet back.
struct OnPool {
    back: Sender<Returned>,
    returned: Receiver<Returned>,
    out: usize,
}

impl OnPool {
    /// Hands a result that came back to `scheduler`.
    fn hand_back(&mut self, scheduler: &mut Scheduler<StdFiles>, item: Returned) {
        self.out = self.out.saturating_sub(1);
        match item {
            Ok(done) => scheduler.on_work_done(done),
            Err(ticket) => scheduler.on_work_lost(ticket, "the re-hash ended without a result"),
        }
    }
}

/// Drives `scheduler` on `client` until every transfer is over.
fn drive<C: RawCalls + ?Sized>(
    client: &mut C,
    mut scheduler: Scheduler<StdFiles>,
    progress: &mut dyn FnMut(usize, u64, u64),
) -> Vec<FileResult> {
    let pool = client_pool();
    let files = StdFiles::new(pool.clone());
    let (back, returned) = mpsc::channel();
    let mut on_pool = OnPool {
        back,
        returned,
        out: 0,
    };
    loop {
        match scheduler.poll(&mut NoWait(&mut *client), progress) {
            Step::Work(work) if work.is_long() => {
                run_on_pool(&*pool, &files, work, &on_pool.back);
                on_pool.out += 1;
            }
            Step::Work(work) => scheduler.on_work_done(work.run(&files)),
            Step::AwaitReply(id) => {
                // A re-hash that is done goes first: its transfer can send meanwhile.
                if let Ok(item) = on_pool.returned.try_recv() {
                    on_pool.hand_back(&mut scheduler, item);
                    continue;
                }
                let reply = client.wait_raw(id);
                scheduler.on_reply(id, reply);
            }
            Step::AwaitWork if on_pool.out > 0 => match on_pool.returned.recv() {
                Ok(item) => on_pool.hand_back(&mut scheduler, item),
                // Unreachable while `on_pool.back` is held here.
                Err(_) => return scheduler.into_results(),
            },
            // Every other work ran inline: nothing can still be out.
            Step::AwaitWork | Step::Done => return scheduler.into_results(),
        }
    }
}

#[cfg(test)]
mod tests_deferred;
#[cfg(test)]
mod tests_many;
#[cfg(test)]
mod tests_one;
