//! One download as a state machine driven by the [`Scheduler`](super::Scheduler): check the
//! local target, `fget`, open (or with a resume re-hash and continue) the partial copy,
//! stream `fread`s whose released chunks are written behind, then check the SHA-256 and
//! publish. Every local step is a work for the driver; a failure keeps the partial copy (a
//! prefix of the file) for a resume, unless it is known to be wrong.

use std::path::PathBuf;

use vserv_core::transfer::{DownloadReceiver, FgetArgs, FgetReply, FreadReply, TransferError};

use super::job::Base;
use super::local::LocalFiles;
use super::wire::{Expect, Stop, Wire};
use super::work::{Finish, Op, Outcome, Receiving, lost, malformed};
use super::{ClientError, Download, TransferFailure, TransferOptions};

/// Released bytes queued for the writer at most before the download asks for more: memory
/// stays bounded when the disk is slower than the network.
const QUEUE_LIMIT: usize = 4 << 20;

/// A download's states.
enum Down<F: LocalFiles> {
    /// The local target is to be checked.
    Start,
    /// It is being checked (a work is out).
    Checking,
    /// `fget` is to be sent.
    Fget,
    /// `fget` was sent.
    Opening,
    /// The partial copy is being opened, or re-hashed for a resume (a work is out).
    Starting(Box<FgetReply>),
    /// The download failed while its partial copy was being opened: its writer, if it
    /// started, is ended when the work is back.
    StartingFailed {
        opened: Box<FgetReply>,
        failure: Box<TransferFailure>,
    },
    /// Chunks are being requested and written.
    Streaming(Box<Streaming<F>>),
    /// Every byte is in: the copy is being checked and published (a work is out).
    Finishing {
        opened: Box<FgetReply>,
        resumed_from: u64,
    },
    /// The download failed: its writer is ending (a work is out), whose result is the
    /// download's.
    Closing,
    /// Over (the result is in the job's base).
    Over,
}

/// A download receiving its chunks.
struct Streaming<F: LocalFiles> {
    opened: FgetReply,
    receiver: DownloadReceiver,
    /// The writer, `None` while a write is out.
    writer: Option<F::Writer>,
    /// Released chunks waiting for the writer, in file order, and their bytes.
    queued: Vec<Vec<u8>>,
    queued_bytes: usize,
    part: PathBuf,
    resumed_from: u64,
    /// The download failed while a write was out: the clean-up follows its return.
    failure: Option<TransferFailure>,
}

/// One download of a batch.
pub(super) struct DownloadJob<F: LocalFiles> {
    pub(super) file: Download,
    resume: bool,
    /// May replace a regular file at the local path.
    overwrite: bool,
    window: usize,
    /// Another download of the batch writes the same local file: this one does not start.
    duplicate: bool,
    state: Down<F>,
    pub(super) base: Base<F>,
}

impl<F: LocalFiles> DownloadJob<F> {
    pub(super) fn new(
        file: Download,
        options: &TransferOptions,
        window: usize,
        duplicate: bool,
    ) -> Self {
        DownloadJob {
            file,
            resume: options.resume,
            overwrite: options.overwrite,
            window,
            duplicate,
            state: Down::Start,
            base: Base::default(),
        }
    }

    /// Hands out the end of the local side: `streamed` says whether every byte came.
    fn finish(
        &mut self,
        s: Streaming<F>,
        writer: F::Writer,
        streamed: Result<(), TransferFailure>,
    ) {
        let Streaming {
            opened,
            receiver,
            queued,
            part,
            resumed_from,
            ..
        } = s;
        let ok = streamed.is_ok();
        let opened_copy = ok.then(|| Box::new(opened.clone()));
        self.base.start(Op::FinishDownload(Box::new(Finish {
            opened,
            receiving: Receiving {
                receiver,
                writer,
                part,
                resumed_from,
            },
            local: self.file.local.clone(),
            overwrite: self.overwrite,
            chunks: queued,
            streamed,
        })));
        self.state = match opened_copy {
            Some(opened) => Down::Finishing {
                opened,
                resumed_from,
            },
            None => Down::Closing,
        };
    }

    /// Sends what the download can (at most `wire.room` requests) and hands out the local
    /// steps it needs.
    pub(super) fn fill(&mut self, wire: &mut Wire<'_>) -> Result<(), Stop> {
        match &mut self.state {
            Down::Start => {
                if self.duplicate {
                    return Err(TransferFailure::DuplicateTarget {
                        path: self.file.local.clone(),
                    }
                    .into());
                }
                self.base.start(Op::CheckTarget {
                    path: self.file.local.clone(),
                    overwrite: self.overwrite,
                });
                self.state = Down::Checking;
                Ok(())
            }
            Down::Fget => {
                if wire.room == 0 {
                    return Ok(());
                }
                let args = FgetArgs {
                    path: self.file.remote.clone(),
                };
                self.state = Down::Opening;
                wire.send(
                    &mut self.base.in_flight,
                    "fget",
                    args.to_args(),
                    Expect::Open,
                )
            }
            Down::Streaming(s) => {
                if !s.queued.is_empty()
                    && let Some(writer) = s.writer.take()
                {
                    s.queued_bytes = 0;
                    let chunks = std::mem::take(&mut s.queued);
                    self.base.start(Op::Write { writer, chunks });
                }
                while wire.room > 0 && s.queued_bytes < QUEUE_LIMIT {
                    let Some(request) = s.receiver.next_request() else {
                        break;
                    };
                    wire.send(
                        &mut self.base.in_flight,
                        "fread",
                        request.to_args(),
                        Expect::Chunk(request.offset),
                    )?;
                }
                if !s.receiver.is_complete() || !s.queued.is_empty() || s.writer.is_none() {
                    return Ok(());
                }
                // Every byte is in and written: check and publish.
                let Down::Streaming(s) = std::mem::replace(&mut self.state, Down::Over) else {
                    return Ok(());
                };
                let mut s = *s;
                if let Some(writer) = s.writer.take() {
                    self.finish(s, writer, Ok(()));
                }
                Ok(())
            }
            Down::Checking
            | Down::Opening
            | Down::Starting(_)
            | Down::StartingFailed { .. }
            | Down::Finishing { .. }
            | Down::Closing
            | Down::Over => Ok(()),
        }
    }

    /// Takes the reply to its oldest request.
    pub(super) fn on_reply(
        &mut self,
        expect: Expect,
        reply: Result<Vec<Vec<u8>>, ClientError>,
    ) -> Result<(), TransferFailure> {
        match (&mut self.state, expect) {
            (Down::Opening, Expect::Open) => {
                let opened = FgetReply::from_fields(&reply?).map_err(malformed)?;
                self.base.id = Some(opened.id);
                self.base.start(Op::StartDownload {
                    opened: opened.clone(),
                    local: self.file.local.clone(),
                    resume: self.resume,
                    window: self.window,
                });
                self.state = Down::Starting(Box::new(opened));
                Ok(())
            }
            (Down::Streaming(s), Expect::Chunk(offset)) => {
                let reply = FreadReply::from_fields(reply?).map_err(ClientError::from)?;
                s.receiver.on_data(offset, reply.data)?;
                while let Some((_, data)) = s.receiver.pop_ready() {
                    s.queued_bytes += data.len();
                    s.queued.push(data);
                }
                Ok(())
            }
            _ => Err(TransferError::BadState.into()),
        }
    }

    /// Takes the result of its work.
    pub(super) fn on_work(&mut self, outcome: Outcome<F>) -> Result<(), TransferFailure> {
        match (std::mem::replace(&mut self.state, Down::Over), outcome) {
            (Down::Checking, Outcome::Checked(checked)) if !self.base.over => {
                checked?;
                self.state = Down::Fget;
                Ok(())
            }
            (Down::Starting(opened), Outcome::Started(started)) => {
                let Receiving {
                    receiver,
                    writer,
                    part,
                    resumed_from,
                } = started?;
                self.state = Down::Streaming(Box::new(Streaming {
                    opened: *opened,
                    receiver,
                    writer: Some(writer),
                    queued: Vec::new(),
                    queued_bytes: 0,
                    part,
                    resumed_from,
                    failure: None,
                }));
                Ok(())
            }
            (Down::StartingFailed { opened, failure }, Outcome::Started(started)) => {
                match started {
                    // The writer it started ends with the failure (what it wrote stays).
                    Ok(receiving) => {
                        self.base.start(Op::FinishDownload(Box::new(Finish {
                            opened: *opened,
                            receiving,
                            local: self.file.local.clone(),
                            overwrite: self.overwrite,
                            chunks: Vec::new(),
                            streamed: Err(*failure),
                        })));
                        self.state = Down::Closing;
                    }
                    Err(_) => self.base.result = Some(Err(*failure)),
                }
                Ok(())
            }
            (Down::Streaming(mut s), Outcome::Wrote(writer, ok)) => {
                if let Some(failure) = s.failure.take() {
                    self.finish(*s, writer, Err(failure));
                    return Ok(());
                }
                let part = s.part.clone();
                s.writer = Some(writer);
                self.state = Down::Streaming(s);
                if ok {
                    Ok(())
                } else {
                    // The writer's own error comes from its end.
                    Err(lost(&part, "the file writer stopped"))
                }
            }
            (
                Down::Finishing {
                    opened,
                    resumed_from,
                },
                Outcome::Finished(result),
            ) => {
                if self.base.over {
                    self.base.result = Some(result);
                    return Ok(());
                }
                match result {
                    // A resume of other bytes: start once more from 0.
                    Err(TransferFailure::Integrity) if self.resume && resumed_from > 0 => {
                        self.base.start(Op::StartDownload {
                            opened: (*opened).clone(),
                            local: self.file.local.clone(),
                            resume: false,
                            window: self.window,
                        });
                        self.state = Down::Starting(opened);
                    }
                    result => self.base.end(result, true),
                }
                Ok(())
            }
            (Down::Closing, Outcome::Finished(result)) => {
                self.base.result = Some(match result {
                    Err(e) => Err(e),
                    Ok(_) => Err(TransferFailure::Machine(TransferError::BadState)),
                });
                Ok(())
            }
            (state, _) => {
                let over = self.base.over;
                self.state = state;
                if over {
                    // What the work held is dropped with it.
                    Ok(())
                } else {
                    Err(TransferError::BadState.into())
                }
            }
        }
    }

    /// Ends the download with `failure`: its writer ends first (the partial copy stays a
    /// prefix of the file, for a resume), and its server transfer is closed when the
    /// connection works.
    pub(super) fn fail(&mut self, failure: TransferFailure, connected: bool) {
        self.base.over = true;
        let id = self.base.id.take();
        if connected {
            self.base.close = id;
        }
        match std::mem::replace(&mut self.state, Down::Over) {
            Down::Streaming(mut s) => match s.writer.take() {
                Some(writer) => self.finish(*s, writer, Err(failure)),
                None => {
                    s.failure = Some(failure);
                    self.state = Down::Streaming(s);
                }
            },
            Down::Starting(opened) => {
                self.state = Down::StartingFailed {
                    opened,
                    failure: Box::new(failure),
                }
            }
            // Every byte is in: the check under way decides the result.
            state @ Down::Finishing { .. } => self.state = state,
            Down::Closing => self.state = Down::Closing,
            _ => self.base.result = Some(Err(failure)),
        }
    }

    /// Drops everything: its work was lost.
    pub(super) fn abandon(&mut self) {
        self.state = Down::Over;
    }

    /// Bytes written in order and the total, while the download streams.
    pub(super) fn progress(&self) -> Option<(u64, u64)> {
        match &self.state {
            Down::Streaming(s) => {
                let p = s.receiver.progress();
                Some((p.done, p.size))
            }
            _ => None,
        }
    }
}
