//! One upload as a state machine driven by the [`Scheduler`](super::Scheduler): open the
//! local file, `fopen` (with a resume, re-hash the prefix the server kept), stream `fput`s
//! from batches read ahead, then `fdone` with the SHA-256 computed while reading. Every
//! local step is a work for the driver; a failed upload is parked with `fclose` while the
//! connection works, for a resume.

use vserv_core::transfer::{
    FcloseArgs, FdoneReply, FopenArgs, FopenReply, MAX_FPUT_DATA, TransferError, UploadSender,
    parse_ack,
};

use super::job::Base;
use super::local::{LocalFiles, ReadBatch};
use super::wire::{Expect, Stop, Wire};
use super::work::{Op, Outcome, lost, malformed};
use super::{ClientError, TransferFailure, TransferOutcome, Upload, local};

/// An upload's states.
enum Up<F: LocalFiles> {
    /// The local file is to be opened.
    Start,
    /// The local file is being opened (a work is out).
    OpeningFile,
    /// `fopen` is to be sent.
    Fopen {
        file: F::File,
        size: u64,
        resume: bool,
    },
    /// `fopen` was sent.
    Opening {
        file: F::File,
        size: u64,
        resume: bool,
    },
    /// The local bytes before the server's resume offset are being re-hashed (a work is
    /// out): the positioned sender if they match, `None` if not.
    Rehashing { size: u64, offset: u64 },
    /// The server's partial upload is of another file: its `fclose` is to be sent, then a
    /// new `fopen` without `resume`.
    Reclose { file: F::File, size: u64 },
    /// That `fclose` was sent.
    Reclosing { file: F::File, size: u64 },
    /// The reader is being started (a work is out).
    StartingReader {
        sender: Box<UploadSender>,
        resumed_from: u64,
    },
    /// Chunks are being sent.
    Streaming(Box<Sending<F>>),
    /// Every chunk was acknowledged; the reader is ending, for the hash (a work is out).
    Sealing {
        sender: Box<UploadSender>,
        resumed_from: u64,
    },
    /// `fdone` is to be sent.
    Fdone {
        sender: Box<UploadSender>,
        resumed_from: u64,
        args: Vec<Vec<u8>>,
    },
    /// `fdone` was sent.
    Finishing {
        sender: Box<UploadSender>,
        resumed_from: u64,
    },
    /// Over (the result is in the job's base).
    Over,
}

/// An upload sending its chunks.
struct Sending<F: LocalFiles> {
    sender: UploadSender,
    /// The reader, `None` while a read is out.
    reader: Option<F::Reader>,
    /// The batch being sent, and how far.
    batch: Vec<u8>,
    at: usize,
    /// The batch read ahead of it.
    next: Option<Vec<u8>>,
    /// Bytes not yet handed over by the reader.
    unread: u64,
    resumed_from: u64,
}

/// One upload of a batch.
pub(super) struct UploadJob<F: LocalFiles> {
    pub(super) file: Upload,
    resume: bool,
    window: usize,
    state: Up<F>,
    pub(super) base: Base<F>,
}

impl<F: LocalFiles> UploadJob<F> {
    pub(super) fn new(file: Upload, resume: bool, window: usize) -> Self {
        UploadJob {
            file,
            resume,
            window,
            state: Up::Start,
            base: Base::default(),
        }
    }

    /// Starts sending from the sender's position: the reader is started first.
    fn stream(
        &mut self,
        file: F::File,
        mut sender: UploadSender,
        resumed_from: u64,
    ) -> Result<(), TransferFailure> {
        let start = sender.progress();
        let hasher = sender
            .take_hasher()
            .ok_or(TransferFailure::Machine(TransferError::HasherTaken))?;
        self.base.start(Op::StartReading {
            path: self.file.local.clone(),
            file,
            start: start.done,
            size: start.size,
            hasher,
        });
        self.state = Up::StartingReader {
            sender: Box::new(sender),
            resumed_from,
        };
        Ok(())
    }

    fn on_opened(
        &mut self,
        file: F::File,
        size: u64,
        resume: bool,
        fields: &[Vec<u8>],
    ) -> Result<(), TransferFailure> {
        let opened = FopenReply::from_fields(fields).map_err(malformed)?;
        self.base.id = Some(opened.id);
        if resume && opened.offset > 0 {
            let offset = opened.offset;
            self.base.start(Op::RehashSource {
                path: self.file.local.clone(),
                file,
                opened,
                size,
                window: self.window,
            });
            self.state = Up::Rehashing { size, offset };
            Ok(())
        } else {
            let sender = UploadSender::new(opened.id, size, self.window, MAX_FPUT_DATA)?;
            self.stream(file, sender, 0)
        }
    }

    /// Sends what the upload can (at most `wire.room` requests) and hands out the local
    /// steps it needs.
    pub(super) fn fill(&mut self, wire: &mut Wire<'_>) -> Result<(), Stop> {
        match &mut self.state {
            Up::Start => {
                self.base.start(Op::OpenSource {
                    path: self.file.local.clone(),
                });
                self.state = Up::OpeningFile;
                Ok(())
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
                if let Up::Fopen { file, size, resume } =
                    std::mem::replace(&mut self.state, Up::Over)
                {
                    self.state = Up::Opening { file, size, resume };
                }
                wire.send(
                    &mut self.base.in_flight,
                    "fopen",
                    args.to_args(),
                    Expect::Open,
                )
            }
            Up::Reclose { .. } => {
                let Some(id) = self.base.id else {
                    return Err(TransferError::BadState.into());
                };
                if wire.room == 0 {
                    return Ok(());
                }
                if let Up::Reclose { file, size } = std::mem::replace(&mut self.state, Up::Over) {
                    self.state = Up::Reclosing { file, size };
                }
                self.base.id = None;
                let args = FcloseArgs { id }.to_args();
                wire.send(&mut self.base.in_flight, "fclose", args, Expect::Close)
            }
            Up::Streaming(s) => {
                let path = &self.file.local;
                let changed = || TransferFailure::LocalChanged {
                    path: path.to_owned(),
                };
                while wire.room > 0 {
                    let Some(plan) = s.sender.next_chunk() else {
                        break;
                    };
                    if s.at == s.batch.len() {
                        // The next batch is still being read: send on when it is in.
                        let Some(next) = s.next.take() else { break };
                        s.batch = next;
                        s.at = 0;
                    }
                    // Batches hold whole chunks, so a plan never straddles two.
                    let data = s.batch.get(s.at..s.at + plan.len).ok_or_else(changed)?;
                    s.at += plan.len;
                    let args = s.sender.send(plan.offset, data)?;
                    let (id, offset) = (args.id.to_be_bytes(), args.offset.to_be_bytes());
                    wire.send_ref(
                        &mut self.base.in_flight,
                        "fput",
                        &[&id, &offset, args.data],
                        Expect::Chunk(plan.offset),
                    )?;
                }
                // Keep one batch read ahead of the one being sent.
                if s.next.is_none()
                    && s.unread > 0
                    && let Some(reader) = s.reader.take()
                {
                    self.base.start(Op::Read { reader });
                    return Ok(());
                }
                if !s.sender.is_complete() || wire.room == 0 {
                    return Ok(());
                }
                // Every chunk is acknowledged: end the reader for the hash.
                let Some(reader) = s.reader.take() else {
                    return Ok(());
                };
                let Up::Streaming(s) = std::mem::replace(&mut self.state, Up::Over) else {
                    return Ok(());
                };
                let Sending {
                    sender,
                    resumed_from,
                    ..
                } = *s;
                self.base.start(Op::FinishReading { reader });
                self.state = Up::Sealing {
                    sender: Box::new(sender),
                    resumed_from,
                };
                Ok(())
            }
            Up::Fdone { .. } => {
                if wire.room == 0 {
                    return Ok(());
                }
                let Up::Fdone {
                    sender,
                    resumed_from,
                    args,
                } = std::mem::replace(&mut self.state, Up::Over)
                else {
                    return Ok(());
                };
                self.state = Up::Finishing {
                    sender,
                    resumed_from,
                };
                wire.send(&mut self.base.in_flight, "fdone", args, Expect::Done)
            }
            Up::OpeningFile
            | Up::Opening { .. }
            | Up::Rehashing { .. }
            | Up::Reclosing { .. }
            | Up::StartingReader { .. }
            | Up::Sealing { .. }
            | Up::Finishing { .. }
            | Up::Over => Ok(()),
        }
    }

    /// Takes the reply to its oldest request.
    pub(super) fn on_reply(
        &mut self,
        expect: Expect,
        reply: Result<Vec<Vec<u8>>, ClientError>,
    ) -> Result<(), TransferFailure> {
        match (&mut self.state, expect) {
            (Up::Opening { .. }, Expect::Open) => {
                let fields = reply?;
                if let Up::Opening { file, size, resume } =
                    std::mem::replace(&mut self.state, Up::Over)
                {
                    self.on_opened(file, size, resume, &fields)?;
                }
                Ok(())
            }
            (Up::Reclosing { .. }, Expect::Close) => {
                // Best effort, like any fclose: the new fopen says whether the path is free.
                if let Err(e) = reply {
                    tracing::debug!(error = %e, "fclose failed");
                }
                if let Up::Reclosing { file, size } = std::mem::replace(&mut self.state, Up::Over) {
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
                let outcome = TransferOutcome {
                    size: reply.size,
                    sha256: reply.sha256,
                    resumed_from: *resumed_from,
                };
                // The upload is finished: nothing to park.
                self.base.id = None;
                self.base.end(Ok(outcome), true);
                self.state = Up::Over;
                Ok(())
            }
            _ => Err(TransferError::BadState.into()),
        }
    }

    /// Takes the result of its work.
    pub(super) fn on_work(&mut self, outcome: Outcome<F>) -> Result<(), TransferFailure> {
        if self.base.over {
            // What the work held is dropped with it.
            return Ok(());
        }
        let path = &self.file.local;
        match (std::mem::replace(&mut self.state, Up::Over), outcome) {
            (Up::OpeningFile, Outcome::Source(opened)) => {
                let (file, size) = opened?;
                self.state = Up::Fopen {
                    file,
                    size,
                    resume: self.resume,
                };
                Ok(())
            }
            (Up::Rehashing { size, offset }, Outcome::Rehashed(rehashed)) => match rehashed? {
                (file, Some(sender)) => self.stream(file, sender, offset),
                // The local file is not the one the server holds a part of: start again.
                (file, None) => {
                    self.state = Up::Reclose { file, size };
                    Ok(())
                }
            },
            (
                Up::StartingReader {
                    sender,
                    resumed_from,
                },
                Outcome::Reading(reader),
            ) => {
                let reader = reader?;
                let p = sender.progress();
                self.state = Up::Streaming(Box::new(Sending {
                    sender: *sender,
                    reader: Some(reader),
                    batch: Vec::new(),
                    at: 0,
                    next: None,
                    unread: p.size.saturating_sub(p.done),
                    resumed_from,
                }));
                Ok(())
            }
            (Up::Streaming(mut s), Outcome::Read(reader, batch)) => {
                s.reader = Some(reader);
                let result = match batch {
                    Some(ReadBatch::Data(data)) => {
                        s.unread = s.unread.saturating_sub(data.len() as u64);
                        if s.at == s.batch.len() {
                            s.batch = data;
                            s.at = 0;
                        } else {
                            s.next = Some(data);
                        }
                        Ok(())
                    }
                    Some(ReadBatch::Short) | None => Err(TransferFailure::LocalChanged {
                        path: path.to_owned(),
                    }),
                    Some(ReadBatch::Failed(e)) => Err(local(path)(e)),
                };
                self.state = Up::Streaming(s);
                result
            }
            (
                Up::Sealing {
                    mut sender,
                    resumed_from,
                },
                Outcome::ReadFinished(hasher),
            ) => {
                let done = match hasher {
                    Some(hasher) => sender.finish_with(hasher).map_err(TransferFailure::from),
                    None => Err(lost(path, "the file reader failed")),
                };
                match done {
                    Ok(done) => {
                        self.state = Up::Fdone {
                            sender,
                            resumed_from,
                            args: done.to_args(),
                        };
                        Ok(())
                    }
                    Err(e) => {
                        sender.fail();
                        Err(e)
                    }
                }
            }
            (state, _) => {
                self.state = state;
                Err(TransferError::BadState.into())
            }
        }
    }

    /// Ends the upload with `failure`; it is parked (`fclose`) when the connection works.
    pub(super) fn fail(&mut self, failure: TransferFailure, connected: bool) {
        match std::mem::replace(&mut self.state, Up::Over) {
            Up::Streaming(mut s) => s.sender.fail(),
            Up::Sealing { mut sender, .. }
            | Up::Fdone { mut sender, .. }
            | Up::Finishing { mut sender, .. }
            | Up::StartingReader { mut sender, .. } => sender.fail(),
            _ => {}
        }
        self.base.end(Err(failure), connected);
    }

    /// Drops everything: its work was lost.
    pub(super) fn abandon(&mut self) {
        self.state = Up::Over;
    }

    /// Bytes acknowledged and the total, while the upload streams.
    pub(super) fn progress(&self) -> Option<(u64, u64)> {
        let p = match &self.state {
            Up::Streaming(s) => s.sender.progress(),
            Up::StartingReader { sender, .. }
            | Up::Sealing { sender, .. }
            | Up::Fdone { sender, .. }
            | Up::Finishing { sender, .. } => sender.progress(),
            _ => return None,
        };
        Some((p.done, p.size))
    }
}
