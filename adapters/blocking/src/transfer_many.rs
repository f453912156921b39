//! Several file transfers at once on one connection (spec/files.md §1): [`put_many`] runs a
//! list of uploads, [`get_many`] a list of downloads, at most `parallel` of them open at a
//! time (the next one opens when one ends), sharing the connection's window.
//!
//! Window: the window (`TransferOptions::window`, clamped to the connection's
//! `max_outstanding`) is split between the open transfers (each may keep up to its share,
//! the window divided by the number open, rounded up, in flight) and the total of every
//! request outstanding on the connection (chunks, `fopen`/`fget`, `fdone`, `fclose`) never
//! exceeds it. A transfer that holds more than its new share when another opens sends no
//! more until it is below it.
//!
//! Replies: every request is recorded with the transfer it belongs to, in the order it
//! was sent. The driver waits for the oldest outstanding request across all transfers, then
//! takes every reply already in from the oldest on, handing each to its transfer, and
//! refills the window; requests leave in batches as with one transfer.
//!
//! Each transfer keeps the guarantees of [`crate::transfer::put_with`] and
//! [`crate::transfer::get_with`] (SHA-256 checked end to end, a download visible only after
//! its hash matched, resume per file, a failed upload parked with `fclose`, bounded memory
//! per transfer: one read-ahead thread per upload, two writer threads per download). A
//! transfer failing (a local file error, a refusal by the server, an integrity mismatch)
//! ends only that transfer: the others go on, and its own requests still in flight are
//! drained as their replies arrive. A connection failure ends them all.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use vserv_core::transfer::{
    FcloseArgs, FdoneReply, FgetArgs, FgetReply, FopenArgs, FopenReply, MAX_FPUT_DATA,
    TransferError, UploadSender, parse_ack,
};
use vserv_service::client::ClientError;

use crate::read_ahead::{Batch, ReadAhead};
use crate::transfer::{
    RawCalls, Receiving, TransferFailure, TransferOptions, TransferOutcome, check_target, deliver,
    finish_download, local, resume_sender, start_download,
};

/// Transfers open at once unless told otherwise.
pub const DEFAULT_PARALLEL: usize = 4;

/// The most transfers open at once: the server's limit per connection
/// (`DEFAULT_MAX_TRANSFERS`, spec/files.md §6).
pub const MAX_PARALLEL: usize = 64;

/// One upload of a batch: a local file and the server path it is stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The local file to read.
    pub local: PathBuf,
    /// Where it goes on the server.
    pub remote: String,
}

/// One download of a batch: a server file and the local path it is written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The file on the server.
    pub remote: String,
    /// Where it is written (visible only once its SHA-256 matched).
    pub local: PathBuf,
}

/// What each file's result is.
pub type FileResult = Result<TransferOutcome, TransferFailure>;

/// Uploads every file of `files` over one connection, at most `parallel` (clamped to
/// 1..=[`MAX_PARALLEL`] and to the window) at once, sharing `options.window`; `options.resume`
/// applies to each file as in [`crate::transfer::put_with`]. `progress(index, done, total)`
/// reports the acknowledged bytes of the file at `index` in `files`.
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
    let window = options.window.clamp(1, client.max_outstanding().max(1));
    let jobs = files
        .iter()
        .map(|file| UploadJob::new(file, options.resume, window));
    drive(client, jobs, files.len(), window, parallel, progress)
}

/// Downloads every file of `files` over one connection, at most `parallel` (clamped to
/// 1..=[`MAX_PARALLEL`] and to the window) at once, sharing `options.window`; `options.resume`
/// applies to each file as in [`crate::transfer::get_with`]. `progress(index, done, total)`
/// reports the bytes of the file at `index` in `files` written in order.
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
    let window = options.window.clamp(1, client.max_outstanding().max(1));
    let mut targets = HashSet::new();
    let jobs: Vec<DownloadJob<'_>> = files
        .iter()
        .map(|file| {
            let duplicate = !targets.insert(lexical(&file.local));
            DownloadJob::new(file, options, window, duplicate)
        })
        .collect();
    drive(
        client,
        jobs.into_iter(),
        files.len(),
        window,
        parallel,
        progress,
    )
}

/// `path` without `.` components, so `./a` and `a` compare equal.
fn lexical(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// What a request's reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `fopen` or `fget`.
    Open,
    /// `fput` or `fread` at this offset.
    Chunk(u64),
    /// `fdone`.
    Done,
    /// `fclose`.
    Close,
}

/// Why a job stopped sending.
enum Stop {
    /// This transfer failed; the others go on.
    File(TransferFailure),
    /// The connection failed: every transfer ends.
    Connection(ClientError),
}

impl From<TransferFailure> for Stop {
    fn from(e: TransferFailure) -> Self {
        Stop::File(e)
    }
}

impl From<TransferError> for Stop {
    fn from(e: TransferError) -> Self {
        Stop::File(e.into())
    }
}

/// A malformed reply fails its transfer.
fn malformed(e: vserv_core::Error) -> TransferFailure {
    TransferFailure::Client(ClientError::from(e))
}

/// What the driver keeps of every job.
#[derive(Default)]
struct Base {
    /// This job's requests in flight, oldest first.
    in_flight: VecDeque<(u32, Expect)>,
    /// Set once the transfer is over (its requests may still be in flight).
    result: Option<FileResult>,
    /// An `fclose` still to send before the job can end.
    close: Option<u32>,
    /// The progress last reported.
    shown: Option<(u64, u64)>,
}

/// Sending on behalf of one job: every request is recorded with the job's slot, and at
/// most `room` requests may leave.
struct Wire<'a, C: ?Sized> {
    client: &'a mut C,
    outstanding: &'a mut VecDeque<(u32, usize)>,
    slot: usize,
    room: usize,
}

impl<C: RawCalls + ?Sized> Wire<'_, C> {
    fn send(
        &mut self,
        own: &mut VecDeque<(u32, Expect)>,
        name: &str,
        args: Vec<Vec<u8>>,
        expect: Expect,
    ) -> Result<(), Stop> {
        let id = self.client.send_raw(name, args).map_err(Stop::Connection)?;
        self.outstanding.push_back((id, self.slot));
        own.push_back((id, expect));
        self.room = self.room.saturating_sub(1);
        Ok(())
    }
}

/// One transfer as a state machine driven by [`drive`].
trait Job {
    /// The driver's bookkeeping.
    fn base(&mut self) -> &mut Base;
    /// Read-only bookkeeping.
    fn base_ref(&self) -> &Base;
    /// Sends what the transfer can (at most `wire.room` requests) and takes the steps that
    /// need no reply (opening the file, finishing). Called while the transfer is not over.
    fn fill<C: RawCalls + ?Sized>(&mut self, wire: &mut Wire<'_, C>) -> Result<(), Stop>;
    /// Takes the reply to its oldest request. Called while the transfer is not over.
    fn on_reply(
        &mut self,
        expect: Expect,
        reply: Result<Vec<Vec<u8>>, ClientError>,
    ) -> Result<(), TransferFailure>;
    /// Ends the transfer with `failure`: local clean-up, and when the connection still
    /// works an `fclose` of its server transfer.
    fn fail(&mut self, failure: TransferFailure, connected: bool);
    /// Bytes done and the total, while the transfer runs.
    fn progress(&self) -> Option<(u64, u64)>;
}

/// Runs `jobs` (`count` of them) on one connection: at most `parallel` open, sharing
/// `window` outstanding requests; one result per job, in order.
fn drive<C, J>(
    client: &mut C,
    jobs: impl Iterator<Item = J>,
    count: usize,
    window: usize,
    parallel: usize,
    progress: &mut dyn FnMut(usize, u64, u64),
) -> Vec<FileResult>
where
    C: RawCalls + ?Sized,
    J: Job,
{
    let window = window.max(1);
    let parallel = parallel.clamp(1, MAX_PARALLEL).min(window);
    let mut results: Vec<Option<FileResult>> = (0..count).map(|_| None).collect();
    let mut active: Vec<Option<(usize, J)>> = (0..parallel).map(|_| None).collect();
    let mut waiting = jobs.enumerate();
    let mut outstanding: VecDeque<(u32, usize)> = VecDeque::new();
    let mut stalled = false;
    let failure = 'run: loop {
        for entry in active.iter_mut().filter(|e| e.is_none()) {
            *entry = waiting.next();
        }
        let open = active.iter().flatten().count();
        if open == 0 {
            break 'run None;
        }
        let share = window.div_ceil(open);
        for (slot, entry) in active.iter_mut().enumerate() {
            let Some((index, job)) = entry else { continue };
            let base = job.base_ref();
            if base.result.is_none()
                && let Some(p) = job.progress()
                && base.shown != Some(p)
            {
                job.base().shown = Some(p);
                progress(*index, p.0, p.1);
            }
            let own = job.base_ref().in_flight.len();
            let room = share
                .saturating_sub(own)
                .min(window.saturating_sub(outstanding.len()));
            let mut wire = Wire {
                client: &mut *client,
                outstanding: &mut outstanding,
                slot,
                room,
            };
            if job.base_ref().result.is_none() {
                match job.fill(&mut wire) {
                    Ok(()) => {}
                    Err(Stop::File(e)) => job.fail(e, true),
                    Err(Stop::Connection(e)) => break 'run Some((slot, e)),
                }
            }
            let base = job.base();
            if base.result.is_some()
                && wire.room > 0
                && let Some(id) = base.close.take()
            {
                let args = FcloseArgs { id }.to_args();
                if let Err(Stop::Connection(e)) =
                    wire.send(&mut base.in_flight, "fclose", args, Expect::Close)
                {
                    break 'run Some((slot, e));
                }
            }
        }
        let mut retired = false;
        for entry in &mut active {
            let over = entry.as_ref().is_some_and(|(_, job)| {
                let base = job.base_ref();
                base.result.is_some() && base.in_flight.is_empty() && base.close.is_none()
            });
            if over && let Some((index, mut job)) = entry.take() {
                results[index] = job.base().result.take();
                retired = true;
            }
        }
        let Some(&(id, slot)) = outstanding.front() else {
            if !retired {
                // Nothing in flight and nothing ended: no transfer can move (a bug in a
                // machine); end them rather than spin.
                if stalled {
                    for (_, job) in active.iter_mut().flatten() {
                        if job.base_ref().result.is_none() {
                            job.fail(TransferFailure::Machine(TransferError::BadState), true);
                        }
                    }
                }
                stalled = true;
            }
            continue;
        };
        stalled = false;
        let reply = match client.wait_raw(id) {
            Err(ClientError::Server(e)) => Err(ClientError::Server(e)),
            Err(e) => break 'run Some((slot, e)),
            Ok(fields) => Ok(fields),
        };
        outstanding.pop_front();
        hand_over(&mut active, slot, id, reply);
        while let Some(&(id, slot)) = outstanding.front() {
            let Some(reply) = client.take_raw(id) else {
                break;
            };
            outstanding.pop_front();
            hand_over(&mut active, slot, id, reply);
        }
    };
    let lost = failure.as_ref().map(|(_, e)| e.to_string());
    if let Some((failed_slot, error)) = failure {
        // The connection is gone: every transfer still running ends, the one whose request
        // met the failure with it, the others (and those not started) as interrupted.
        let reason = error.to_string();
        let mut error = Some(error);
        for (slot, entry) in active.iter_mut().enumerate() {
            let Some((index, mut job)) = entry.take() else {
                continue;
            };
            if job.base_ref().result.is_none() {
                let failure = match error.take_if(|_| slot == failed_slot) {
                    Some(e) => TransferFailure::Client(e),
                    None => TransferFailure::Interrupted {
                        reason: reason.clone(),
                    },
                };
                job.fail(failure, false);
            }
            results[index] = job.base().result.take();
        }
    }
    results
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

/// Gives the reply to request `id` to the job in `slot` (or drains it, if that job is over).
fn hand_over<J: Job>(
    active: &mut [Option<(usize, J)>],
    slot: usize,
    id: u32,
    reply: Result<Vec<Vec<u8>>, ClientError>,
) {
    let Some(Some((_, job))) = active.get_mut(slot) else {
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
    if job.base_ref().result.is_none()
        && let Err(e) = job.on_reply(expect, reply)
    {
        job.fail(e, true);
    }
}

/// Work on a thread of its own (a resume's re-hash of local bytes), so the connection's
/// other transfers go on meanwhile.
struct Rehash<T>(std::thread::JoinHandle<Result<T, TransferFailure>>);

/// Starts `work` on a thread of its own.
fn rehash<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, TransferFailure> + Send + 'static,
) -> io::Result<Rehash<T>> {
    std::thread::Builder::new()
        .name("vserv-rehash".into())
        .spawn(work)
        .map(Rehash)
}

impl<T> Rehash<T> {
    /// Whether to take the result now: it is there, or nothing else can happen on the
    /// connection until it is (`idle`), so waiting for it is right.
    fn ready(&self, idle: bool) -> bool {
        idle || self.0.is_finished()
    }

    /// The result (waiting for it); a thread that panicked is a local failure on `path`.
    fn join(self, path: &Path) -> Result<T, TransferFailure> {
        self.0
            .join()
            .unwrap_or_else(|_| Err(local(path)(io::Error::other("the re-hash thread panicked"))))
    }
}

/// An upload's states.
enum Up {
    /// The local file is not open yet.
    Start,
    /// `fopen` is to be sent.
    Fopen { file: File, size: u64, resume: bool },
    /// `fopen` was sent.
    Opening { file: File, size: u64, resume: bool },
    /// The local bytes before the server's resume offset are being re-hashed on a thread
    /// of their own ([`rehash`]): the positioned sender if they match, `None` if not.
    Rehashing {
        size: u64,
        offset: u64,
        work: Rehash<(File, Option<UploadSender>)>,
    },
    /// The server's partial upload is of another file: its `fclose` is to be sent, then a
    /// new `fopen` without `resume`.
    Reclose { file: File, size: u64 },
    /// That `fclose` was sent.
    Reclosing { file: File, size: u64 },
    /// Chunks are being sent.
    Streaming(Box<Sending>),
    /// `fdone` was sent.
    Finishing {
        sender: Box<UploadSender>,
        resumed_from: u64,
    },
    /// Over (the result is in the job's base).
    Over,
}

/// An upload sending its chunks.
struct Sending {
    sender: UploadSender,
    reader: ReadAhead,
    /// The batch being sent, and how far.
    batch: Vec<u8>,
    at: usize,
    resumed_from: u64,
}

struct UploadJob<'f> {
    file: &'f Upload,
    resume: bool,
    window: usize,
    state: Up,
    /// The server transfer open for this upload, to park with `fclose` on a failure.
    id: Option<u32>,
    base: Base,
}

impl<'f> UploadJob<'f> {
    fn new(file: &'f Upload, resume: bool, window: usize) -> Self {
        UploadJob {
            file,
            resume,
            window,
            state: Up::Start,
            id: None,
            base: Base::default(),
        }
    }

    fn path(&self) -> &Path {
        &self.file.local
    }

    /// Starts sending from the sender's position, the file read and hashed ahead.
    fn stream(
        &mut self,
        file: File,
        mut sender: UploadSender,
        resumed_from: u64,
    ) -> Result<(), TransferFailure> {
        let start = sender.progress();
        let hasher = sender
            .take_hasher()
            .ok_or(TransferFailure::Machine(TransferError::HasherTaken))?;
        let reader = ReadAhead::spawn(file, start.done, start.size, MAX_FPUT_DATA, hasher)
            .map_err(local(self.path()))?;
        self.state = Up::Streaming(Box::new(Sending {
            sender,
            reader,
            batch: Vec::new(),
            at: 0,
            resumed_from,
        }));
        Ok(())
    }

    fn on_opened(
        &mut self,
        mut file: File,
        size: u64,
        resume: bool,
        fields: &[Vec<u8>],
    ) -> Result<(), TransferFailure> {
        let opened = FopenReply::from_fields(fields).map_err(malformed)?;
        self.id = Some(opened.id);
        if resume && opened.offset > 0 {
            let (path, window, offset) = (self.file.local.clone(), self.window, opened.offset);
            let work = rehash(move || {
                let sender = resume_sender(&mut file, &path, &opened, size, window)?;
                Ok((file, sender))
            })
            .map_err(local(self.path()))?;
            self.state = Up::Rehashing { size, offset, work };
            Ok(())
        } else {
            let sender = UploadSender::new(opened.id, size, self.window, MAX_FPUT_DATA)?;
            self.stream(file, sender, 0)
        }
    }
}

impl Job for UploadJob<'_> {
    fn base(&mut self) -> &mut Base {
        &mut self.base
    }

    fn base_ref(&self) -> &Base {
        &self.base
    }

    fn fill<C: RawCalls + ?Sized>(&mut self, wire: &mut Wire<'_, C>) -> Result<(), Stop> {
        loop {
            match &mut self.state {
                Up::Start => {
                    let path = &self.file.local;
                    let file = File::open(path).map_err(local(path))?;
                    let meta = file.metadata().map_err(local(path))?;
                    if !meta.is_file() {
                        let e = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
                        return Err(local(path)(e).into());
                    }
                    self.state = Up::Fopen {
                        file,
                        size: meta.len(),
                        resume: self.resume,
                    };
                }
                Up::Fopen { size, resume, .. } => {
                    if wire.room == 0 {
                        return Ok(());
                    }
                    let args = FopenArgs {
                        path: self.file.remote.clone(),
                        size: *size,
                        resume: *resume,
                    };
                    let state = std::mem::replace(&mut self.state, Up::Over);
                    if let Up::Fopen { file, size, resume } = state {
                        self.state = Up::Opening { file, size, resume };
                    }
                    return wire.send(
                        &mut self.base.in_flight,
                        "fopen",
                        args.to_args(),
                        Expect::Open,
                    );
                }
                Up::Reclose { .. } => {
                    let Some(id) = self.id else {
                        return Err(TransferError::BadState.into());
                    };
                    if wire.room == 0 {
                        return Ok(());
                    }
                    let state = std::mem::replace(&mut self.state, Up::Over);
                    if let Up::Reclose { file, size } = state {
                        self.state = Up::Reclosing { file, size };
                    }
                    self.id = None;
                    let args = FcloseArgs { id }.to_args();
                    return wire.send(&mut self.base.in_flight, "fclose", args, Expect::Close);
                }
                Up::Rehashing { work, .. } => {
                    if !work.ready(wire.outstanding.is_empty()) {
                        return Ok(());
                    }
                    let Up::Rehashing { size, offset, work } =
                        std::mem::replace(&mut self.state, Up::Over)
                    else {
                        return Ok(());
                    };
                    match work.join(self.path())? {
                        (file, Some(sender)) => self.stream(file, sender, offset)?,
                        // The local file is not the one the server holds a part of: start
                        // again.
                        (file, None) => self.state = Up::Reclose { file, size },
                    }
                }
                Up::Opening { .. } | Up::Reclosing { .. } | Up::Finishing { .. } | Up::Over => {
                    return Ok(());
                }
                Up::Streaming(s) => {
                    let upload: &Upload = self.file;
                    let path = &upload.local;
                    let changed = || TransferFailure::LocalChanged {
                        path: path.to_owned(),
                    };
                    while wire.room > 0 {
                        let Some(plan) = s.sender.next_chunk() else {
                            break;
                        };
                        if s.at == s.batch.len() {
                            s.batch = match s.reader.next() {
                                Some(Batch::Data(data)) => data,
                                Some(Batch::Short) | None => return Err(changed().into()),
                                Some(Batch::Failed(e)) => return Err(local(path)(e).into()),
                            };
                            s.at = 0;
                        }
                        // Batches hold whole chunks, so a plan never straddles two.
                        let data = s.batch.get(s.at..s.at + plan.len).ok_or_else(changed)?;
                        s.at += plan.len;
                        let args = s.sender.send(plan.offset, data)?.to_args();
                        wire.send(
                            &mut self.base.in_flight,
                            "fput",
                            args,
                            Expect::Chunk(plan.offset),
                        )?;
                    }
                    if !s.sender.is_complete() || wire.room == 0 {
                        return Ok(());
                    }
                    let Up::Streaming(s) = std::mem::replace(&mut self.state, Up::Over) else {
                        return Ok(());
                    };
                    let Sending {
                        mut sender,
                        reader,
                        resumed_from,
                        ..
                    } = *s;
                    let done = match reader.finish() {
                        Some(hasher) => sender.finish_with(hasher).map_err(TransferFailure::from),
                        None => Err(local(path)(io::Error::other("the file reader failed"))),
                    };
                    let done = match done {
                        Ok(done) => done,
                        Err(e) => {
                            sender.fail();
                            return Err(e.into());
                        }
                    };
                    self.state = Up::Finishing {
                        sender: Box::new(sender),
                        resumed_from,
                    };
                    return wire.send(
                        &mut self.base.in_flight,
                        "fdone",
                        done.to_args(),
                        Expect::Done,
                    );
                }
            }
        }
    }

    fn on_reply(
        &mut self,
        expect: Expect,
        reply: Result<Vec<Vec<u8>>, ClientError>,
    ) -> Result<(), TransferFailure> {
        match (&mut self.state, expect) {
            (Up::Opening { .. }, Expect::Open) => {
                let fields = reply?;
                let state = std::mem::replace(&mut self.state, Up::Over);
                if let Up::Opening { file, size, resume } = state {
                    self.on_opened(file, size, resume, &fields)?;
                }
                Ok(())
            }
            (Up::Reclosing { .. }, Expect::Close) => {
                // Best effort, like any fclose: the new fopen says whether the path is free.
                if let Err(e) = reply {
                    tracing::debug!(error = %e, "fclose failed");
                }
                let state = std::mem::replace(&mut self.state, Up::Over);
                if let Up::Reclosing { file, size } = state {
                    self.state = Up::Fopen {
                        file,
                        size,
                        resume: false,
                    };
                }
                Ok(())
            }
            (Up::Streaming(s), Expect::Chunk(offset)) => {
                parse_ack(&reply?).map_err(malformed)?;
                s.sender.on_ack(offset)?;
                Ok(())
            }
            (
                Up::Finishing {
                    sender,
                    resumed_from,
                },
                Expect::Done,
            ) => {
                let reply = FdoneReply::from_fields(&reply?).map_err(malformed)?;
                sender.on_done(&reply)?;
                self.base.result = Some(Ok(TransferOutcome {
                    size: reply.size,
                    sha256: reply.sha256,
                    resumed_from: *resumed_from,
                }));
                // The upload is finished: nothing to park.
                self.id = None;
                self.state = Up::Over;
                Ok(())
            }
            _ => Err(TransferError::BadState.into()),
        }
    }

    fn fail(&mut self, failure: TransferFailure, connected: bool) {
        match std::mem::replace(&mut self.state, Up::Over) {
            Up::Streaming(s) => {
                let Sending {
                    mut sender, reader, ..
                } = *s;
                sender.fail();
                // Stops and joins the reader thread.
                let _ = reader.finish();
            }
            Up::Finishing { mut sender, .. } => sender.fail(),
            // Its thread holds the file: let it end first.
            Up::Rehashing { work, .. } => {
                let _ = work.join(self.path());
            }
            _ => {}
        }
        self.base.result = Some(Err(failure));
        // Park the upload (the server keeps its partial file for a resume).
        let id = self.id.take();
        if connected {
            self.base.close = id;
        }
    }

    fn progress(&self) -> Option<(u64, u64)> {
        let p = match &self.state {
            Up::Streaming(s) => s.sender.progress(),
            Up::Finishing { sender, .. } => sender.progress(),
            _ => return None,
        };
        Some((p.done, p.size))
    }
}

/// A download's states.
enum Down {
    /// `fget` is to be sent.
    Start,
    /// `fget` was sent.
    Opening,
    /// The partial copy being re-hashed for a resume on a thread of its own ([`rehash`]).
    Rehashing(Box<(FgetReply, Rehash<Receiving>)>),
    /// Chunks are being requested and written.
    Streaming(Box<(FgetReply, Receiving)>),
    /// Over (the result is in the job's base).
    Over,
}

struct DownloadJob<'f> {
    file: &'f Download,
    resume: bool,
    /// May replace a regular file at the local path.
    overwrite: bool,
    window: usize,
    /// Another download of the batch writes the same local file: this one does not start.
    duplicate: bool,
    state: Down,
    /// The server transfer, closed with `fclose` when the download ends.
    id: Option<u32>,
    base: Base,
}

impl<'f> DownloadJob<'f> {
    fn new(file: &'f Download, options: &TransferOptions, window: usize, duplicate: bool) -> Self {
        DownloadJob {
            file,
            resume: options.resume,
            overwrite: options.overwrite,
            window,
            duplicate,
            state: Down::Start,
            id: None,
            base: Base::default(),
        }
    }

    /// Checks and publishes a complete download; with `resume`, a partial copy that turns
    /// out to be of other bytes is discarded and the download starts once more from 0.
    fn finish(&mut self) -> Result<(), TransferFailure> {
        let Down::Streaming(streaming) = std::mem::replace(&mut self.state, Down::Over) else {
            return Ok(());
        };
        let (opened, receiving) = *streaming;
        let resumed_from = receiving.resumed_from;
        match finish_download(&opened, receiving, &self.file.local, self.overwrite, Ok(())) {
            Err(TransferFailure::Integrity) if self.resume && resumed_from > 0 => {
                let receiving = start_download(&opened, &self.file.local, false, self.window)?;
                self.state = Down::Streaming(Box::new((opened, receiving)));
                Ok(())
            }
            result => {
                self.base.result = Some(result);
                self.base.close = self.id.take();
                Ok(())
            }
        }
    }
}

impl Job for DownloadJob<'_> {
    fn base(&mut self) -> &mut Base {
        &mut self.base
    }

    fn base_ref(&self) -> &Base {
        &self.base
    }

    fn fill<C: RawCalls + ?Sized>(&mut self, wire: &mut Wire<'_, C>) -> Result<(), Stop> {
        loop {
            match &mut self.state {
                Down::Start => {
                    if self.duplicate {
                        return Err(TransferFailure::DuplicateTarget {
                            path: self.file.local.clone(),
                        }
                        .into());
                    }
                    check_target(&self.file.local, self.overwrite)?;
                    if wire.room == 0 {
                        return Ok(());
                    }
                    let args = FgetArgs {
                        path: self.file.remote.clone(),
                    };
                    self.state = Down::Opening;
                    return wire.send(
                        &mut self.base.in_flight,
                        "fget",
                        args.to_args(),
                        Expect::Open,
                    );
                }
                Down::Rehashing(rehashing) => {
                    if !rehashing.1.ready(wire.outstanding.is_empty()) {
                        return Ok(());
                    }
                    let Down::Rehashing(rehashing) = std::mem::replace(&mut self.state, Down::Over)
                    else {
                        return Ok(());
                    };
                    let (opened, work) = *rehashing;
                    let receiving = work.join(&self.file.local)?;
                    self.state = Down::Streaming(Box::new((opened, receiving)));
                }
                Down::Opening | Down::Over => return Ok(()),
                Down::Streaming(streaming) => {
                    let receiver = &mut streaming.1.receiver;
                    while wire.room > 0 {
                        let Some(request) = receiver.next_request() else {
                            break;
                        };
                        wire.send(
                            &mut self.base.in_flight,
                            "fread",
                            request.to_args(),
                            Expect::Chunk(request.offset),
                        )?;
                    }
                    if !receiver.is_complete() {
                        return Ok(());
                    }
                    // Every byte is in: check and publish, or (a resume of other bytes)
                    // start again and send the first requests.
                    self.finish()?;
                }
            }
        }
    }

    fn on_reply(
        &mut self,
        expect: Expect,
        reply: Result<Vec<Vec<u8>>, ClientError>,
    ) -> Result<(), TransferFailure> {
        match (&mut self.state, expect) {
            (Down::Opening, Expect::Open) => {
                let opened = FgetReply::from_fields(&reply?).map_err(malformed)?;
                self.id = Some(opened.id);
                if self.resume {
                    // Re-hashing the partial copy may take long: the other transfers go on.
                    let (reply, target, window) =
                        (opened.clone(), self.file.local.clone(), self.window);
                    let work = rehash(move || start_download(&reply, &target, true, window))
                        .map_err(local(&self.file.local))?;
                    self.state = Down::Rehashing(Box::new((opened, work)));
                } else {
                    let receiving = start_download(&opened, &self.file.local, false, self.window)?;
                    self.state = Down::Streaming(Box::new((opened, receiving)));
                }
                Ok(())
            }
            (Down::Streaming(streaming), Expect::Chunk(offset)) => {
                let Receiving {
                    receiver,
                    writer,
                    part,
                    ..
                } = &mut streaming.1;
                deliver(receiver, writer, part, offset, reply?)
            }
            _ => Err(TransferError::BadState.into()),
        }
    }

    fn fail(&mut self, failure: TransferFailure, connected: bool) {
        let failure = match std::mem::replace(&mut self.state, Down::Over) {
            Down::Rehashing(rehashing) => match rehashing.1.join(&self.file.local) {
                // The writer it started ends with the failure (what it wrote stays).
                Ok(receiving) => {
                    match finish_download(
                        &rehashing.0,
                        receiving,
                        &self.file.local,
                        self.overwrite,
                        Err(failure),
                    ) {
                        Err(e) => e,
                        Ok(_) => TransferFailure::Machine(TransferError::BadState),
                    }
                }
                Err(_) => failure,
            },
            Down::Streaming(streaming) => {
                let (opened, receiving) = *streaming;
                // Writes what was queued (the partial copy stays a prefix, for a resume).
                match finish_download(
                    &opened,
                    receiving,
                    &self.file.local,
                    self.overwrite,
                    Err(failure),
                ) {
                    Err(e) => e,
                    Ok(_) => TransferFailure::Machine(TransferError::BadState),
                }
            }
            _ => failure,
        };
        self.base.result = Some(Err(failure));
        let id = self.id.take();
        if connected {
            self.base.close = id;
        }
    }

    fn progress(&self) -> Option<(u64, u64)> {
        match &self.state {
            Down::Streaming(streaming) => {
                let p = streaming.1.receiver.progress();
                Some((p.done, p.size))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sha2::{Digest, Sha256};
    use vserv_core::ErrorCode;
    use vserv_core::transfer::MAX_FREAD_LEN;

    use super::*;
    use crate::test_fake::{Fake, content};
    use crate::transfer::{part_info_path, part_path};

    fn options(resume: bool, window: usize) -> TransferOptions {
        TransferOptions {
            resume,
            window,
            overwrite: false,
        }
    }

    /// Sizes from a fixed xorshift sequence: 0 bytes, a few bytes, exact and ragged
    /// multiples of both chunk sizes, and random ones up to about 20 chunks.
    fn sizes(count: usize, seed: u64) -> Vec<usize> {
        let mut fixed = vec![
            0,
            1,
            MAX_FPUT_DATA,
            3 * MAX_FREAD_LEN,
            2 * MAX_FPUT_DATA + 17,
        ];
        let mut state = seed | 1;
        while fixed.len() < count {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            fixed.push((state % (20 * MAX_FPUT_DATA as u64)) as usize);
        }
        fixed.truncate(count);
        fixed
    }

    /// Writes one local file per size; the uploads put `name{i}` under `dir/`.
    fn local_files(dir: &Path, sizes: &[usize]) -> (Vec<Upload>, Vec<Vec<u8>>) {
        let mut uploads = Vec::new();
        let mut datas = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let data = content(len, i as u8);
            let local = dir.join(format!("src{i}"));
            std::fs::write(&local, &data).unwrap();
            uploads.push(Upload {
                local,
                remote: format!("dir/name{i}"),
            });
            datas.push(data);
        }
        (uploads, datas)
    }

    /// Records every progress call; checks each file's progress never goes back.
    #[derive(Default)]
    struct Progress(HashMap<usize, (u64, u64)>);

    impl Progress {
        fn record(&mut self, index: usize, done: u64, total: u64) {
            assert!(done <= total, "{index}: {done} of {total}");
            if let Some(&(last, _)) = self.0.get(&index) {
                assert!(done >= last, "{index}: progress went back");
            }
            self.0.insert(index, (done, total));
        }
    }

    fn round_trip(window: usize, parallel: usize, trickle: bool, count: usize, seed: u64) {
        let dir = tempfile::tempdir().unwrap();
        let sizes = sizes(count, seed);
        let (uploads, datas) = local_files(dir.path(), &sizes);
        let mut fake = Fake {
            trickle,
            ..Fake::default()
        };
        let mut progress = Progress::default();
        let results = put_many(
            &mut fake,
            &uploads,
            &options(false, window),
            parallel,
            &mut |i, d, t| progress.record(i, d, t),
        );
        assert_eq!(results.len(), count);
        for (i, result) in results.iter().enumerate() {
            let out = result.as_ref().unwrap();
            assert_eq!(out.size, sizes[i] as u64);
            assert_eq!(out.sha256, <[u8; 32]>::from(Sha256::digest(&datas[i])));
            assert_eq!(fake.files[&format!("dir/name{i}")], datas[i], "file {i}");
            let len = sizes[i] as u64;
            assert_eq!(progress.0.get(&i), Some(&(len, len)), "file {i}");
        }
        assert!(
            fake.most_outstanding <= window,
            "{} requests outstanding with a window of {window}",
            fake.most_outstanding
        );
        let open = parallel.min(window).min(count);
        assert!(fake.most_open <= open, "{} open", fake.most_open);
        assert!(fake.most_open >= open.min(2), "the uploads did not overlap");
        assert!(fake.uploads.is_empty() && fake.parked.is_empty());

        let downloads: Vec<Download> = (0..count)
            .map(|i| Download {
                remote: format!("dir/name{i}"),
                local: dir.path().join(format!("dst{i}")),
            })
            .collect();
        fake.most_outstanding = 0;
        fake.most_open = 0;
        let mut progress = Progress::default();
        let results = get_many(
            &mut fake,
            &downloads,
            &options(false, window),
            parallel,
            &mut |i, d, t| progress.record(i, d, t),
        );
        for (i, result) in results.iter().enumerate() {
            let out = result.as_ref().unwrap();
            assert_eq!(out.size, sizes[i] as u64);
            assert_eq!(std::fs::read(&downloads[i].local).unwrap(), datas[i]);
            assert!(!part_path(&downloads[i].local).exists());
            assert!(!part_info_path(&downloads[i].local).exists());
            let len = sizes[i] as u64;
            assert_eq!(progress.0.get(&i), Some(&(len, len)), "file {i}");
        }
        assert!(fake.most_outstanding <= window, "{}", fake.most_outstanding);
        assert!(fake.most_open <= open, "{} open", fake.most_open);
        assert!(
            fake.most_open >= open.min(2),
            "the downloads did not overlap"
        );
        assert!(fake.downloads.is_empty(), "downloads were not closed");
    }

    #[test]
    fn several_uploads_and_downloads_share_the_window() {
        round_trip(16, 4, false, 9, 0x5eed);
    }

    #[test]
    fn replies_trickling_in_are_matched_to_their_transfers() {
        round_trip(7, 3, true, 7, 0xfeed);
    }

    #[test]
    fn more_transfers_than_the_window_still_stay_within_it() {
        round_trip(3, 64, false, 8, 0xbeef);
        round_trip(1, 4, true, 4, 0xcafe);
    }

    #[test]
    fn the_window_is_split_between_open_transfers() {
        // Two large uploads with a window of 8: each may keep at most 4 chunks in flight,
        // and together they fill the window.
        let dir = tempfile::tempdir().unwrap();
        let (uploads, _) = local_files(dir.path(), &[40 * MAX_FPUT_DATA, 40 * MAX_FPUT_DATA]);
        let mut fake = Fake::default();
        let results = put_many(
            &mut fake,
            &uploads,
            &options(false, 8),
            2,
            &mut |_, _, _| {},
        );
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(fake.most_outstanding, 8);
        assert_eq!(fake.most_open, 2);
        assert_eq!(fake.most_shared_chunks, 4);
    }

    #[test]
    fn one_failing_transfer_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let mut sizes = sizes(6, 0xabc);
        sizes.push(7 * MAX_FPUT_DATA + 3);
        let (mut uploads, datas) = local_files(dir.path(), &sizes);
        // 1: a local file that does not exist; 2: refused by the server (quota);
        // 4: the same path as 3, uploaded at the same time (refused while 3 is open);
        // 6: its chunks are refused (a failed write on the server).
        uploads[1].local = dir.path().join("missing");
        uploads[4].remote = uploads[3].remote.clone();
        let mut fake = Fake::default();
        fake.refuse.insert(uploads[2].remote.clone());
        fake.refuse_chunks.insert(uploads[6].remote.clone());
        let results = put_many(
            &mut fake,
            &uploads,
            &options(false, 8),
            7,
            &mut |_, _, _| {},
        );
        assert!(
            matches!(&results[1], Err(TransferFailure::Local { path, .. }) if *path == uploads[1].local),
            "{:?}",
            results[1]
        );
        assert!(
            matches!(&results[2], Err(TransferFailure::Client(ClientError::Server(e))) if e.code == ErrorCode::TooLarge),
            "{:?}",
            results[2]
        );
        assert!(
            matches!(&results[4], Err(TransferFailure::Client(ClientError::Server(e))) if e.code == ErrorCode::Conflict),
            "{:?}",
            results[4]
        );
        for i in [0, 3, 5] {
            assert!(results[i].is_ok(), "{i}: {:?}", results[i]);
            assert_eq!(fake.files[&uploads[i].remote], datas[i]);
        }
        assert!(
            matches!(&results[6], Err(TransferFailure::Client(ClientError::Server(e))) if e.code == ErrorCode::Internal),
            "{:?}",
            results[6]
        );
        assert!(!fake.files.contains_key(&uploads[2].remote));
        assert!(!fake.files.contains_key(&uploads[6].remote));
        assert!(fake.uploads.is_empty(), "an upload was left open");
        // The failed upload was parked with fclose, for a resume.
        assert!(fake.parked.contains_key(&uploads[6].remote));
        assert_eq!(fake.parked.len(), 1, "{:?}", fake.parked.keys());

        // Downloads: the server lies about one hash, one file does not exist, and two
        // downloads name the same local file.
        fake.lie_about.insert(uploads[3].remote.clone());
        let target = |name: &str| dir.path().join(name);
        std::fs::write(target("d3"), b"old").unwrap();
        let downloads = vec![
            Download {
                remote: uploads[0].remote.clone(),
                local: target("d0"),
            },
            Download {
                remote: "no/such/file".into(),
                local: target("d1"),
            },
            Download {
                remote: uploads[3].remote.clone(),
                local: target("d3"),
            },
            Download {
                remote: uploads[5].remote.clone(),
                local: target("d5"),
            },
            Download {
                remote: uploads[0].remote.clone(),
                local: dir.path().join(".").join("d0"),
            },
        ];
        let replace = TransferOptions {
            overwrite: true,
            ..options(false, 8)
        };
        let results = get_many(&mut fake, &downloads, &replace, 4, &mut |_, _, _| {});
        assert_eq!(std::fs::read(target("d0")).unwrap(), datas[0]);
        assert!(
            matches!(&results[1], Err(TransferFailure::Client(ClientError::Server(e))) if e.code == ErrorCode::NotFound),
            "{:?}",
            results[1]
        );
        assert!(
            matches!(results[2], Err(TransferFailure::Integrity)),
            "{:?}",
            results[2]
        );
        assert_eq!(std::fs::read(target("d3")).unwrap(), b"old");
        assert!(!part_path(&target("d3")).exists());
        assert_eq!(std::fs::read(target("d5")).unwrap(), datas[5]);
        assert!(
            matches!(&results[4], Err(TransferFailure::DuplicateTarget { path }) if *path == downloads[4].local),
            "{:?}",
            results[4]
        );
        assert!(results[0].is_ok() && results[3].is_ok());
        assert!(fake.downloads.is_empty(), "a download was left open");
    }

    #[test]
    fn a_connection_failure_ends_every_transfer_and_each_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [
            12 * MAX_FPUT_DATA + 5,
            9 * MAX_FPUT_DATA,
            7 * MAX_FPUT_DATA + 1,
            3000,
        ];
        let (uploads, mut datas) = local_files(dir.path(), &sizes);
        let mut fake = Fake {
            break_at: Some(14),
            ..Fake::default()
        };
        let results = put_many(
            &mut fake,
            &uploads,
            &options(false, 6),
            3,
            &mut |_, _, _| {},
        );
        assert!(results.iter().all(Result::is_err), "{results:?}");
        let direct = results
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Err(TransferFailure::Client(ClientError::ConnectionClosed))
                )
            })
            .count();
        assert_eq!(direct, 1, "{results:?}");
        assert!(
            matches!(results[3], Err(TransferFailure::Interrupted { .. })),
            "{:?}",
            results[3]
        );
        let parked: Vec<u64> = (0..3)
            .map(|i| fake.parked[&uploads[i].remote].0.offset)
            .collect();
        assert!(parked.iter().all(|&p| p > 0), "{parked:?}");
        // The third file changed meanwhile: its upload starts again from 0.
        datas[2] = content(sizes[2], 99);
        std::fs::write(&uploads[2].local, &datas[2]).unwrap();

        fake.broken = false;
        fake.break_at = None;
        let results = put_many(&mut fake, &uploads, &options(true, 6), 3, &mut |_, _, _| {});
        let resumed: Vec<u64> = results
            .iter()
            .map(|r| r.as_ref().unwrap().resumed_from)
            .collect();
        assert_eq!(resumed, [parked[0], parked[1], 0, 0]);
        for (i, upload) in uploads.iter().enumerate() {
            assert_eq!(fake.files[&upload.remote], datas[i], "file {i}");
        }

        // Downloads of the same files, interrupted, then resumed from the partial copies.
        let downloads: Vec<Download> = uploads
            .iter()
            .enumerate()
            .map(|(i, u)| Download {
                remote: u.remote.clone(),
                local: dir.path().join(format!("dst{i}")),
            })
            .collect();
        fake.chunks = 0;
        fake.break_at = Some(20);
        let results = get_many(
            &mut fake,
            &downloads,
            &options(false, 6),
            3,
            &mut |_, _, _| {},
        );
        assert!(results.iter().all(Result::is_err), "{results:?}");
        let partial: Vec<u64> = downloads
            .iter()
            .map(|d| std::fs::metadata(part_path(&d.local)).map_or(0, |m| m.len()))
            .collect();
        assert!(partial[..3].iter().all(|&p| p > 0), "{partial:?}");
        assert!(downloads.iter().all(|d| !d.local.exists()));
        // A corrupted partial copy is caught by the hash and downloaded again from 0.
        let part = part_path(&downloads[1].local);
        let mut bytes = std::fs::read(&part).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&part, bytes).unwrap();

        fake.broken = false;
        fake.break_at = None;
        let results = get_many(
            &mut fake,
            &downloads,
            &options(true, 6),
            3,
            &mut |_, _, _| {},
        );
        let resumed: Vec<u64> = results
            .iter()
            .map(|r| r.as_ref().unwrap().resumed_from)
            .collect();
        assert_eq!(resumed, [partial[0], 0, partial[2], partial[3]]);
        for (i, d) in downloads.iter().enumerate() {
            assert_eq!(std::fs::read(&d.local).unwrap(), datas[i], "file {i}");
            assert!(!part_path(&d.local).exists());
        }
        assert!(fake.downloads.is_empty());
    }

    #[test]
    fn an_empty_batch_does_nothing() {
        let mut fake = Fake::default();
        assert!(put_many(&mut fake, &[], &options(false, 8), 4, &mut |_, _, _| {}).is_empty());
        assert!(get_many(&mut fake, &[], &options(false, 8), 4, &mut |_, _, _| {}).is_empty());
        assert_eq!(fake.next_request, 0);
    }
}
