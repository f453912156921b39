//! File transfers from a [`SimClient`]: the simulator's driver of the runtime-free
//! [`Scheduler`] of `vserv_service::client::transfers`, so put and get of one or many files,
//! windows and resume run in the world exactly as on the blocking and smol clients.
//!
//! How it waits: the scheduler's requests go out through the client's session in the world
//! (written at once); every local file step ([`Step::Work`]) is added to the world's
//! schedule, labelled [`CLIENT_FILES_WORK`], due at a time the seed draws (like a server's
//! blocking work), and runs over the client machine's [`MemoryFiles`] when the virtual clock
//! gets there. While the scheduler waits for a reply or a work, the world runs until the
//! reply arrived, a work finished, or the connection ended. A test can hold the client's
//! file work with [`World::hold_work`](crate::World::hold_work).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_service::client::ClientError;
use vserv_service::client::transfers::{
    Download, FileResult, LocalDone, Scheduler, Step, TransferFailure, TransferOptions,
    TransferOutcome, Upload, WorkTicket, single_result,
};
use vserv_service::work::Work;

use crate::handle::{SimClient, WAIT, busy};
use crate::local_files::MemoryFiles;
use crate::world::{EndpointId, World};

/// The label of a client's local file work in the world's schedule (to hold it).
pub const CLIENT_FILES_WORK: &str = "client files";

/// Why a work is reported lost when the world never ran it.
const NEVER_RAN: &str =
    "the world did not run the client's file work (held, or nothing left to run)";

/// Results of works that ran, waiting to be handed to the scheduler.
type Returned = Arc<Mutex<VecDeque<LocalDone<MemoryFiles>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimClient {
    /// The local files this client transfers from and to (its server's
    /// [`client_files`](crate::SimServer::client_files)).
    pub fn files(&self) -> &MemoryFiles {
        &self.files
    }

    /// Uploads the local file `local_path` to `remote_path`, calling `progress(done, total)`
    /// as the server acknowledges chunks; with `options.resume` a partial upload the server
    /// kept is continued after its prefix hash matched. [`put_many`](Self::put_many) with
    /// one file.
    pub fn put_with(
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
        single_result(
            self.put_many(std::slice::from_ref(&upload), options, 1, &mut |_, d, t| {
                progress(d, t)
            }),
        )
    }

    /// Downloads `remote_path` to the local file `local_path`, calling `progress(done,
    /// total)` as data is written in order; the data becomes `local_path` only once its
    /// SHA-256 matched. [`get_many`](Self::get_many) with one file.
    pub fn get_with(
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
        single_result(self.get_many(
            std::slice::from_ref(&download),
            options,
            1,
            &mut |_, d, t| progress(d, t),
        ))
    }

    /// Uploads every file of `files`, at most `parallel` at once sharing `options.window`;
    /// one result per file, in order. `progress(index, done, total)` reports the
    /// acknowledged bytes of the file at `index`.
    ///
    /// `progress` (here and in the other transfer calls) runs while the world is borrowed:
    /// it must not use the world or this client.
    pub fn put_many(
        &mut self,
        files: &[Upload],
        options: &TransferOptions,
        parallel: usize,
        progress: &mut dyn FnMut(usize, u64, u64),
    ) -> Vec<FileResult> {
        let scheduler = Scheduler::puts(files, options, parallel, self.max_outstanding);
        drive(&self.world, self.id, &self.files, scheduler, progress)
    }

    /// Downloads every file of `files`, at most `parallel` at once sharing
    /// `options.window`; one result per file, in order (a second download to the same local
    /// path is not started). `progress(index, done, total)` reports the bytes of the file at
    /// `index` written in order.
    pub fn get_many(
        &mut self,
        files: &[Download],
        options: &TransferOptions,
        parallel: usize,
        progress: &mut dyn FnMut(usize, u64, u64),
    ) -> Vec<FileResult> {
        let scheduler = Scheduler::gets(files, options, parallel, self.max_outstanding);
        drive(&self.world, self.id, &self.files, scheduler, progress)
    }
}

/// Drives `scheduler` for `client` until every transfer is over. The world stays borrowed
/// only while the scheduler polls and while the world runs, never across a call of
/// `progress` and the world.
fn drive(
    world: &Rc<RefCell<World>>,
    client: EndpointId,
    files: &MemoryFiles,
    mut scheduler: Scheduler<MemoryFiles>,
    progress: &mut dyn FnMut(usize, u64, u64),
) -> Vec<FileResult> {
    let returned: Returned = Arc::default();
    // Works handed to the world and not yet back.
    let mut out: Vec<WorkTicket> = Vec::new();
    loop {
        let Ok(mut w) = world.try_borrow_mut() else {
            fail_all(&mut scheduler, &mut out, &busy().to_string());
            return scheduler.into_results();
        };
        let Some(step) = w.client_requests(client, |r| scheduler.poll(r, progress)) else {
            return scheduler.into_results();
        };
        match step {
            Step::Work(work) => {
                out.push(work.ticket());
                let (files, back) = (files.clone(), returned.clone());
                let job = move || {
                    let done = work.run(&files);
                    lock(&back).push_back(done);
                };
                w.schedule_client_work(client, Work::new(CLIENT_FILES_WORK, job));
            }
            Step::AwaitReply(id) => {
                let limit = w.now().saturating_add(WAIT);
                w.run_until(limit, |w| {
                    w.has_raw_reply(client, id)
                        || w.is_closed(client)
                        || !lock(&returned).is_empty()
                });
                if take_returned(&mut scheduler, &returned, &mut out) {
                    continue;
                }
                let reply = w.client_requests(client, |r| r.take_raw(id)).flatten();
                match reply {
                    Some(reply) => scheduler.on_reply(id, reply),
                    None if w.is_closed(client) => {
                        scheduler.on_reply(id, Err(w.take_client_error(client)));
                    }
                    None => scheduler.on_reply(id, Err(ClientError::TimedOut)),
                }
            }
            Step::AwaitWork => {
                let limit = w.now().saturating_add(WAIT);
                w.run_until(limit, |_| !lock(&returned).is_empty());
                if !take_returned(&mut scheduler, &returned, &mut out) {
                    // Nothing will run it (held past the limit, or the world has stopped).
                    fail_all(&mut scheduler, &mut out, NEVER_RAN);
                }
            }
            Step::Done => return scheduler.into_results(),
        }
    }
}

/// Hands every returned work's result to the scheduler; whether there was any.
fn take_returned(
    scheduler: &mut Scheduler<MemoryFiles>,
    returned: &Returned,
    out: &mut Vec<WorkTicket>,
) -> bool {
    let done: Vec<LocalDone<MemoryFiles>> = lock(returned).drain(..).collect();
    let any = !done.is_empty();
    for d in done {
        if let Some(at) = out.iter().position(|t| *t == d.ticket()) {
            out.remove(at);
        }
        scheduler.on_work_done(d);
    }
    any
}

/// Reports every work still out as lost.
fn fail_all(scheduler: &mut Scheduler<MemoryFiles>, out: &mut Vec<WorkTicket>, reason: &str) {
    for ticket in out.drain(..) {
        scheduler.on_work_lost(ticket, reason);
    }
}
