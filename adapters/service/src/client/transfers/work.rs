//! The units of blocking work a transfer hands to its driver ([`LocalWork`]) and their
//! results ([`LocalDone`]): each is one step over [`LocalFiles`] (open a source, re-hash a
//! prefix for a resume, read a batch, open or finish a partial copy, write released chunks).
//! The steps that may take long (a resume's re-hash) say so ([`LocalWork::is_long`]) so a
//! driver that runs the others inline can run those beside its connection.

use std::io;
use std::path::{Path, PathBuf};

use vserv_core::transfer::{
    DownloadReceiver, FgetReply, FileHasher, FopenReply, MAX_FPUT_DATA, MAX_FREAD_LEN,
    TransferError, UploadSender,
};

use super::local::{FileKind, LocalFiles, ReadBatch};
use super::{TransferFailure, TransferOutcome, local, part_info_path, part_path};

/// Bytes read at a time when re-hashing a local prefix for a resume.
const REHASH_BUF: usize = 1 << 20;

/// Which transfer a unit of work belongs to: its slot in the scheduler and its index in the
/// batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkTicket {
    pub(super) slot: usize,
    pub(super) index: usize,
}

/// One local file operation of one transfer, to be run by the driver (it may block) and its
/// result handed back with [`Scheduler::on_work_done`](super::Scheduler::on_work_done).
pub struct LocalWork<F: LocalFiles> {
    pub(super) ticket: WorkTicket,
    pub(super) op: Op<F>,
}

/// The result of a [`LocalWork`].
pub struct LocalDone<F: LocalFiles> {
    pub(super) ticket: WorkTicket,
    pub(super) outcome: Outcome<F>,
}

/// The operations.
pub(super) enum Op<F: LocalFiles> {
    /// Open an upload's local file.
    OpenSource { path: PathBuf },
    /// Re-hash the local bytes before the server's resume offset.
    RehashSource {
        path: PathBuf,
        file: F::File,
        opened: FopenReply,
        size: u64,
        window: usize,
    },
    /// Start reading the source from `start` on.
    StartReading {
        path: PathBuf,
        file: F::File,
        start: u64,
        size: u64,
        hasher: FileHasher,
    },
    /// Read the next batch.
    Read { reader: F::Reader },
    /// End the reading, for the hash.
    FinishReading { reader: F::Reader },
    /// Check that a download may write its local path.
    CheckTarget { path: PathBuf, overwrite: bool },
    /// Open (or, resuming, re-hash and continue) a download's partial copy.
    StartDownload {
        opened: FgetReply,
        local: PathBuf,
        resume: bool,
        window: usize,
    },
    /// Append released chunks to the partial copy.
    Write {
        writer: F::Writer,
        chunks: Vec<Vec<u8>>,
    },
    /// End a download's local side (see [`finish_download`]).
    FinishDownload(Box<Finish<F>>),
}

/// What [`finish_download`] needs.
pub(super) struct Finish<F: LocalFiles> {
    pub(super) opened: FgetReply,
    pub(super) receiving: Receiving<F>,
    pub(super) local: PathBuf,
    pub(super) overwrite: bool,
    /// Released chunks not yet written, written first.
    pub(super) chunks: Vec<Vec<u8>>,
    pub(super) streamed: Result<(), TransferFailure>,
}

/// The results, one per [`Op`].
pub(super) enum Outcome<F: LocalFiles> {
    Source(Result<(F::File, u64), TransferFailure>),
    Rehashed(Result<(F::File, Option<UploadSender>), TransferFailure>),
    Reading(Result<F::Reader, TransferFailure>),
    Read(F::Reader, Option<ReadBatch>),
    ReadFinished(Option<FileHasher>),
    Checked(Result<(), TransferFailure>),
    Started(Result<Receiving<F>, TransferFailure>),
    Wrote(F::Writer, bool),
    Finished(Result<TransferOutcome, TransferFailure>),
}

/// A download's local side from the `fget` reply until its end: the machine, the writer of
/// the partial copy and where this run started.
pub(super) struct Receiving<F: LocalFiles> {
    pub(super) receiver: DownloadReceiver,
    pub(super) writer: F::Writer,
    /// The partial copy.
    pub(super) part: PathBuf,
    /// 0, or the length of the partial copy this run continued.
    pub(super) resumed_from: u64,
}

impl<F: LocalFiles> LocalWork<F> {
    /// Which transfer this work is for (to report it lost with
    /// [`Scheduler::on_work_lost`](super::Scheduler::on_work_lost) if it cannot run).
    pub fn ticket(&self) -> WorkTicket {
        self.ticket
    }

    /// Whether the work may take long (it re-hashes a local prefix): a driver that runs
    /// work on its connection's thread should run this one beside it.
    pub fn is_long(&self) -> bool {
        matches!(
            self.op,
            Op::RehashSource { .. } | Op::StartDownload { resume: true, .. }
        )
    }

    /// Runs the work over `files` (blocking as the file system does).
    pub fn run(self, files: &F) -> LocalDone<F> {
        let outcome = match self.op {
            Op::OpenSource { path } => {
                Outcome::Source(files.open_source(&path).map_err(local(&path)))
            }
            Op::RehashSource {
                path,
                mut file,
                opened,
                size,
                window,
            } => Outcome::Rehashed(
                resume_sender(files, &mut file, &path, &opened, size, window)
                    .map(|sender| (file, sender)),
            ),
            Op::StartReading {
                path,
                file,
                start,
                size,
                hasher,
            } => Outcome::Reading(
                files
                    .start_reading(file, start, size, MAX_FPUT_DATA, hasher)
                    .map_err(local(&path)),
            ),
            Op::Read { mut reader } => {
                let batch = files.next_batch(&mut reader);
                Outcome::Read(reader, batch)
            }
            Op::FinishReading { reader } => Outcome::ReadFinished(files.finish_reading(reader)),
            Op::CheckTarget { path, overwrite } => {
                Outcome::Checked(check_target(files, &path, overwrite))
            }
            Op::StartDownload {
                opened,
                local,
                resume,
                window,
            } => Outcome::Started(start_download(files, &opened, &local, resume, window)),
            Op::Write { mut writer, chunks } => {
                let ok = chunks.iter().all(|chunk| files.write(&mut writer, chunk));
                Outcome::Wrote(writer, ok)
            }
            Op::FinishDownload(finish) => Outcome::Finished(finish_download(files, *finish)),
        };
        LocalDone {
            ticket: self.ticket,
            outcome,
        }
    }
}

impl<F: LocalFiles> LocalDone<F> {
    /// Which transfer the work was for.
    pub fn ticket(&self) -> WorkTicket {
        self.ticket
    }
}

/// Re-hashes the local file's bytes before the server's resume offset: the positioned
/// sender if they match the server's prefix hash, `None` if the local file differs.
/// `window` is the most chunks the sender keeps in flight.
fn resume_sender<F: LocalFiles>(
    files: &F,
    file: &mut F::File,
    path: &Path,
    opened: &FopenReply,
    size: u64,
    window: usize,
) -> Result<Option<UploadSender>, TransferFailure> {
    let mut restore = UploadSender::resume(
        opened.id,
        size,
        window,
        MAX_FPUT_DATA,
        opened.offset,
        opened.prefix_sha256,
    )?;
    let mut buf = vec![0u8; REHASH_BUF];
    let mut at = 0u64;
    while restore.remaining() > 0 {
        let want = usize::try_from(restore.remaining()).map_or(buf.len(), |r| r.min(buf.len()));
        let n = files
            .read_at(file, at, &mut buf[..want])
            .map_err(local(path))?;
        if n == 0 {
            break;
        }
        at += n as u64;
        restore.feed(&buf[..n])?;
    }
    match restore.finish() {
        Ok(sender) => Ok(Some(sender)),
        Err(TransferError::PrefixMismatch(_) | TransferError::RefeedShort { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Checks, without following a symlink, that a download may write `local_path`: nothing
/// is there, or a regular file and `overwrite` allows replacing it. Its partial copy and
/// info file, which a download creates or truncates, must be absent or regular files.
pub(super) fn check_target<F: LocalFiles>(
    files: &F,
    local_path: &Path,
    overwrite: bool,
) -> Result<(), TransferFailure> {
    let regular_or_absent = |path: &Path| -> Result<bool, TransferFailure> {
        match files.kind(path).map_err(local(path))? {
            Some(FileKind::Regular) => Ok(true),
            Some(FileKind::Other(kind)) => Err(TransferFailure::TargetNotRegular {
                path: path.to_owned(),
                kind,
            }),
            None => Ok(false),
        }
    };
    if regular_or_absent(local_path)? && !overwrite {
        return Err(TransferFailure::TargetExists {
            path: local_path.to_owned(),
        });
    }
    regular_or_absent(&part_path(local_path))?;
    regular_or_absent(&part_info_path(local_path))?;
    Ok(())
}

/// Parses a partial copy's info file: the size and SHA-256 it is downloading.
pub(super) fn parse_info(text: &str) -> Option<(u64, [u8; 32])> {
    let mut words = text.split_whitespace();
    let (Some("vserv-part"), Some("1"), Some(size), Some(sha), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return None;
    };
    let size = size.parse().ok()?;
    let mut hash = [0u8; 32];
    if sha.len() != 64 {
        return None;
    }
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(sha.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((size, hash))
}

/// The info file's text for a download of `size` bytes hashing to `sha256`.
pub(super) fn info_text(size: u64, sha256: &[u8; 32]) -> String {
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    format!("vserv-part 1 {size} {hex}\n")
}

/// Opens the partial copy: continued (re-hashed) when resuming the same version, else new.
fn open_part<F: LocalFiles>(
    files: &F,
    opened: &FgetReply,
    part: &Path,
    info: &Path,
    resume: bool,
    window: usize,
) -> Result<(F::File, DownloadReceiver), TransferFailure> {
    let same = resume
        && files.read_text(info).ok().as_deref().and_then(parse_info)
            == Some((opened.size, opened.sha256));
    if same && let Ok(mut file) = files.open_part(part) {
        let mut restore =
            DownloadReceiver::resume(opened.id, opened.size, opened.sha256, window, MAX_FREAD_LEN)?;
        let mut buf = vec![0u8; REHASH_BUF];
        loop {
            let left = opened.size - restore.fed();
            let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            if want == 0 {
                break;
            }
            let n = files
                .read_at(&mut file, restore.fed(), &mut buf[..want])
                .map_err(local(part))?;
            if n == 0 {
                break;
            }
            restore.feed(&buf[..n])?;
        }
        let fed = restore.fed();
        files.truncate(&mut file, fed).map_err(local(part))?;
        return Ok((file, restore.finish()));
    }
    let file = files.create_part(part).map_err(local(part))?;
    files
        .write_text(info, &info_text(opened.size, &opened.sha256))
        .map_err(local(info))?;
    let receiver =
        DownloadReceiver::new(opened.id, opened.size, opened.sha256, window, MAX_FREAD_LEN)?;
    Ok((file, receiver))
}

/// Opens (or, with `resume`, continues) the partial copy of `local_path` for the download
/// `opened` and starts its writer; the machine keeps at most `window` chunks in use.
fn start_download<F: LocalFiles>(
    files: &F,
    opened: &FgetReply,
    local_path: &Path,
    resume: bool,
    window: usize,
) -> Result<Receiving<F>, TransferFailure> {
    let part = part_path(local_path);
    let info = part_info_path(local_path);
    let (file, mut receiver) = open_part(files, opened, &part, &info, resume, window)?;
    let resumed_from = receiver.progress().done;
    let hasher = receiver
        .take_hasher()
        .ok_or(TransferFailure::Machine(TransferError::HasherTaken))?;
    let writer = files
        .start_writing(file, &part, resumed_from, hasher)
        .map_err(local(&part))?;
    Ok(Receiving {
        receiver,
        writer,
        part,
        resumed_from,
    })
}

/// Ends a download's local side: waits for every queued write (the partial copy stays a
/// prefix of the file, for a resume), then, if it `streamed` and the writes succeeded (the
/// copy then synced), checks the SHA-256 and renames the partial copy to its local path
/// (after checking once more that it may replace what is there, see [`check_target`]). On a
/// failure the partial copy is kept, unless it is known to be wrong (an integrity failure
/// deletes it and its info file); a write error outranks the local failure it caused.
fn finish_download<F: LocalFiles>(
    files: &F,
    finish: Finish<F>,
) -> Result<TransferOutcome, TransferFailure> {
    let Finish {
        opened,
        receiving,
        local: local_path,
        overwrite,
        chunks,
        streamed,
    } = finish;
    let Receiving {
        mut receiver,
        mut writer,
        part,
        resumed_from,
    } = receiving;
    let info = part_info_path(&local_path);
    // A refused write shows as the writer's error below.
    let _ = chunks.iter().all(|chunk| files.write(&mut writer, chunk));
    let written = files
        .finish_writing(writer, streamed.is_ok())
        .map_err(local(&part));
    let result = match (streamed, written) {
        (Ok(()), Ok(hasher)) => match receiver.finish_with(hasher) {
            Ok(sha) => Ok(sha),
            Err(TransferError::HashMismatch) => Err(TransferFailure::Integrity),
            Err(e) => Err(e.into()),
        },
        (Err(TransferFailure::Local { .. }) | Ok(()), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
    };
    let sha256 = match result {
        Ok(sha) => sha,
        Err(e) => {
            receiver.fail();
            if matches!(e, TransferFailure::Integrity) {
                let _ = files.remove(&part);
                let _ = files.remove(&info);
            }
            return Err(e);
        }
    };
    // What is at the target may have changed while the data flowed; the verified copy stays
    // in the partial file (a `--resume` finds it) when it may not replace it.
    check_target(files, &local_path, overwrite)?;
    files
        .rename(&part, &local_path)
        .map_err(local(&local_path))?;
    let _ = files.remove(&info);
    Ok(TransferOutcome {
        size: opened.size,
        sha256,
        resumed_from,
    })
}

/// A reply that does not parse fails its transfer.
pub(super) fn malformed(e: vserv_core::Error) -> TransferFailure {
    TransferFailure::Client(super::ClientError::from(e))
}

/// An I/O error of the local side that is not a file's own (a lost worker).
pub(super) fn lost(path: &Path, what: &str) -> TransferFailure {
    local(path)(io::Error::other(what.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_info_round_trips_and_rejects_junk() {
        let text = info_text(42, &[0xab; 32]);
        assert_eq!(parse_info(&text), Some((42, [0xab; 32])));
        assert_eq!(parse_info("vserv-part 1 x y"), None);
    }
}
