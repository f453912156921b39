//! File transfers over a blocking client (spec/files.md): `put` drives core's
//! [`UploadSender`], `get` its [`DownloadReceiver`], moving the bytes between local files and
//! pipelined raw `fopen`/`fput`/`fdone` and `fget`/`fread`/`fclose` requests.
//!
//! [`put_with`] and [`get_with`] run one transfer; they are the one-file case of
//! [`crate::transfer_many`], which runs several on one connection sharing its window. This
//! module holds the pieces both use: the connection interface ([`RawCalls`]), the options,
//! outcomes and failures, the resume checks and the download's partial copy.
//!
//! Memory stays flat whatever the file size: files are read and written sequentially in
//! chunks through fixed buffers, and at most `window` chunk requests are in flight (their
//! replies and the connection's buffers are the only data held). Requests are queued and
//! leave in batches: after each reply the driver collects every reply that already arrived
//! before refilling the window, so one socket write carries many chunks.
//!
//! Integrity: an upload's SHA-256 is computed while sending and checked by the server at
//! `fdone`; a download is written to `<name>.vserv-part` (with its expected size and hash in
//! `<name>.vserv-part.info`) and renamed to `<name>` only after its SHA-256 matched.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use vserv_core::transfer::{
    DownloadReceiver, FgetReply, FopenReply, FreadReply, MAX_FPUT_DATA, MAX_FREAD_LEN,
    TransferError, UploadSender,
};
use vserv_service::client::ClientError;

use crate::Client;
use crate::transfer_many::{self, Download, Upload};
use crate::write_behind::WriteBehind;

/// Chunk requests kept in flight on a connection unless told otherwise (transfers run
/// together share them).
pub const DEFAULT_WINDOW: usize = 128;

/// Suffix of a download's partial copy, next to its final name.
pub const PART_SUFFIX: &str = ".vserv-part";

/// Suffix of the file recording the size and SHA-256 a partial copy is downloading.
pub const PART_INFO_SUFFIX: &str = ".vserv-part.info";

/// Bytes read at a time when re-hashing a local prefix for a resume.
const REHASH_BUF: usize = 1 << 20;

/// What the transfer driver needs of a connection: pipelined raw requests. [`Client`]
/// implements it; tests can drive the transfers against an in-process fake.
pub trait RawCalls {
    /// Queues a request; it leaves with the others when the caller next waits.
    fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError>;
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

/// How a transfer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOptions {
    /// Continue a partial transfer (the server's partial upload, or the local partial copy).
    pub resume: bool,
    /// Requests kept in flight on the connection (clamped to 1..=the connection's limit),
    /// shared by the transfers of one [`crate::transfer_many`] batch.
    pub window: usize,
    /// A download may replace an existing regular file at its local path (uploads ignore
    /// it). Without it such a download fails with [`TransferFailure::TargetExists`] before
    /// anything is fetched. Nothing that is not a regular file is ever replaced.
    pub overwrite: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            resume: false,
            window: DEFAULT_WINDOW,
            overwrite: false,
        }
    }
}

/// What a finished transfer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOutcome {
    /// The file's size.
    pub size: u64,
    /// Its SHA-256, checked end to end.
    pub sha256: [u8; 32],
    /// Where this run started: 0, or the offset a resume continued from.
    pub resumed_from: u64,
}

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferFailure {
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Local {
        /// The local file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The connection failed or the server refused a request.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The transfer machine refused a step (a reply that does not fit the transfer).
    #[error("transfer failed: {0}")]
    Machine(#[from] TransferError),
    /// The local file became shorter while it was being uploaded.
    #[error("{} changed while it was being uploaded", path.display())]
    LocalChanged {
        /// The local file.
        path: PathBuf,
    },
    /// The downloaded bytes do not hash to the server's SHA-256; the partial copy was
    /// discarded.
    #[error("the downloaded data does not match the server's SHA-256; the copy was discarded")]
    Integrity,
    /// The connection failed while this transfer was open or waiting to start (the
    /// transfer whose request met the failure reports it as [`TransferFailure::Client`]).
    /// An upload keeps its partial upload on the server and a download its partial copy,
    /// for a resume.
    #[error("interrupted: the connection failed ({reason})")]
    Interrupted {
        /// The connection's failure.
        reason: String,
    },
    /// The download's local path holds a regular file and replacing it was not allowed
    /// ([`TransferOptions::overwrite`]); nothing was fetched or changed.
    #[error("{} already exists; not replaced (get --force replaces a regular file)", path.display())]
    TargetExists {
        /// The local path.
        path: PathBuf,
    },
    /// The download's local path (or its partial copy's) is not a regular file (a symlink,
    /// directory, device, FIFO or socket); it is never replaced, whatever the options.
    #[error("{} is a {kind}, not a regular file; a download never replaces it", path.display())]
    TargetNotRegular {
        /// The local path.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Another download of the same batch writes the same local file, so this one was not
    /// started.
    #[error("{} is also the target of another download; not downloaded", path.display())]
    DuplicateTarget {
        /// The local file.
        path: PathBuf,
    },
}

pub(crate) fn local(path: &Path) -> impl FnOnce(io::Error) -> TransferFailure + '_ {
    move |source| TransferFailure::Local {
        path: path.to_owned(),
        source,
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
/// resume can continue it. This is [`transfer_many::put_many`] with one file.
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
    let results = transfer_many::put_many(
        client,
        std::slice::from_ref(&upload),
        options,
        1,
        &mut |_, done, total| progress(done, total),
    );
    only(results)
}

/// The result of a batch of one.
fn only(
    results: Vec<Result<TransferOutcome, TransferFailure>>,
) -> Result<TransferOutcome, TransferFailure> {
    results
        .into_iter()
        .next()
        .unwrap_or(Err(TransferFailure::Machine(TransferError::BadState)))
}

/// Re-hashes the local file's bytes before the server's resume offset: the positioned
/// sender if they match the server's prefix hash, `None` if the local file differs.
/// `window` is the most chunks the sender keeps in flight.
pub(crate) fn resume_sender(
    reader: &mut File,
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
    reader.seek(SeekFrom::Start(0)).map_err(local(path))?;
    let mut buf = vec![0u8; REHASH_BUF];
    while restore.remaining() > 0 {
        let want = usize::try_from(restore.remaining()).map_or(buf.len(), |r| r.min(buf.len()));
        let n = read_some(reader, &mut buf[..want]).map_err(local(path))?;
        if n == 0 {
            break;
        }
        restore.feed(&buf[..n])?;
    }
    match restore.finish() {
        Ok(sender) => Ok(Some(sender)),
        Err(TransferError::PrefixMismatch(_) | TransferError::RefeedShort { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// The partial copy of a download to `local_path`.
pub fn part_path(local_path: &Path) -> PathBuf {
    with_suffix(local_path, PART_SUFFIX)
}

/// The file recording what the partial copy of `local_path` is downloading.
pub fn part_info_path(local_path: &Path) -> PathBuf {
    with_suffix(local_path, PART_INFO_SUFFIX)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What a file type is, in words, for a refusal.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
        if file_type.is_socket() {
            return "socket";
        }
    }
    if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Checks, without following a symlink, that a download may write `local_path`: nothing
/// is there, or a regular file and `overwrite` allows replacing it. Its partial copy and
/// info file, which a download creates or truncates, must be absent or regular files.
pub(crate) fn check_target(local_path: &Path, overwrite: bool) -> Result<(), TransferFailure> {
    let regular_or_absent = |path: &Path| -> Result<bool, TransferFailure> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_file() => Ok(true),
            Ok(meta) => Err(TransferFailure::TargetNotRegular {
                path: path.to_owned(),
                kind: kind_of(meta.file_type()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(local(path)(e)),
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
/// is never replaced. With
/// `resume`, a partial copy of the same size and hash continues from its length after being
/// re-hashed; if the finished copy then fails the hash, the download starts once more from
/// 0. This is [`transfer_many::get_many`] with one file.
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
    let results = transfer_many::get_many(
        client,
        std::slice::from_ref(&download),
        options,
        1,
        &mut |_, done, total| progress(done, total),
    );
    only(results)
}

fn read_info(path: &Path) -> Option<(u64, [u8; 32])> {
    let text = std::fs::read_to_string(path).ok()?;
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

fn write_info(path: &Path, size: u64, sha256: &[u8; 32]) -> io::Result<()> {
    let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(path, format!("vserv-part 1 {size} {hex}\n"))
}

/// Opens the partial copy: continued (re-hashed) when resuming the same version, else new.
fn open_part(
    opened: &FgetReply,
    part: &Path,
    info: &Path,
    resume: bool,
    window: usize,
) -> Result<(File, DownloadReceiver), TransferFailure> {
    let same = resume && read_info(info) == Some((opened.size, opened.sha256));
    if same && let Ok(mut file) = OpenOptions::new().read(true).write(true).open(part) {
        let mut restore =
            DownloadReceiver::resume(opened.id, opened.size, opened.sha256, window, MAX_FREAD_LEN)?;
        let mut buf = vec![0u8; REHASH_BUF];
        loop {
            let left = opened.size - restore.fed();
            let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            if want == 0 {
                break;
            }
            let n = read_some(&mut file, &mut buf[..want]).map_err(local(part))?;
            if n == 0 {
                break;
            }
            restore.feed(&buf[..n])?;
        }
        let fed = restore.fed();
        file.set_len(fed).map_err(local(part))?;
        file.seek(SeekFrom::Start(fed)).map_err(local(part))?;
        return Ok((file, restore.finish()));
    }
    let file = File::create(part).map_err(local(part))?;
    write_info(info, opened.size, &opened.sha256).map_err(local(info))?;
    let receiver =
        DownloadReceiver::new(opened.id, opened.size, opened.sha256, window, MAX_FREAD_LEN)?;
    Ok((file, receiver))
}

/// Takes one `fread` reply and queues whatever is now ready, in file order, for the writer.
pub(crate) fn deliver(
    receiver: &mut DownloadReceiver,
    writer: &mut WriteBehind,
    part: &Path,
    offset: u64,
    fields: Vec<Vec<u8>>,
) -> Result<(), TransferFailure> {
    let reply = FreadReply::from_fields(fields).map_err(ClientError::from)?;
    receiver.on_data(offset, reply.data)?;
    while let Some((_, data)) = receiver.pop_ready() {
        if !writer.write(&data) {
            // The writer's own error comes from `finish`.
            return Err(local(part)(io::Error::other("the file writer stopped")));
        }
    }
    Ok(())
}

/// A download's local side, from the `fget` reply until its end: the machine, the writer
/// of the partial copy and where this run started.
pub(crate) struct Receiving {
    pub(crate) receiver: DownloadReceiver,
    pub(crate) writer: WriteBehind,
    /// The partial copy.
    pub(crate) part: PathBuf,
    /// 0, or the length of the partial copy this run continued.
    pub(crate) resumed_from: u64,
}

/// Opens (or, with `resume`, continues) the partial copy of `local_path` for the download
/// `opened` and starts its writer; the machine keeps at most `window` chunks in use.
pub(crate) fn start_download(
    opened: &FgetReply,
    local_path: &Path,
    resume: bool,
    window: usize,
) -> Result<Receiving, TransferFailure> {
    let part = part_path(local_path);
    let info = part_info_path(local_path);
    let (file, mut receiver) = open_part(opened, &part, &info, resume, window)?;
    let resumed_from = receiver.progress().done;
    // The writer threads hash and write; the connection thread keeps the requests flowing.
    let hasher = receiver
        .take_hasher()
        .ok_or(TransferFailure::Machine(TransferError::HasherTaken))?;
    let writer = WriteBehind::spawn(file, &part, resumed_from, hasher).map_err(local(&part))?;
    Ok(Receiving {
        receiver,
        writer,
        part,
        resumed_from,
    })
}

/// Ends a download's local side: waits for every queued write (the partial copy stays a
/// prefix of the file, for a resume), then, if `streamed` and the writes succeeded, checks
/// the SHA-256 and renames the synced partial copy to `local_path` (after checking once more
/// that it may replace what is there, see [`check_target`]). On a failure the partial
/// copy is kept, unless it is known to be wrong (an integrity failure deletes it and its
/// info file); a write error outranks the local failure it caused.
pub(crate) fn finish_download(
    opened: &FgetReply,
    receiving: Receiving,
    local_path: &Path,
    overwrite: bool,
    streamed: Result<(), TransferFailure>,
) -> Result<TransferOutcome, TransferFailure> {
    let Receiving {
        mut receiver,
        writer,
        part,
        resumed_from,
    } = receiving;
    let info = part_info_path(local_path);
    let written = writer.finish().map_err(local(&part));
    let result = match (streamed, written) {
        (Ok(()), Ok((file, hasher))) => match receiver.finish_with(hasher) {
            Ok(sha) => Ok((file, sha)),
            Err(TransferError::HashMismatch) => Err(TransferFailure::Integrity),
            Err(e) => Err(e.into()),
        },
        (Err(TransferFailure::Local { .. }) | Ok(()), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
    };
    let (mut file, sha256) = match result {
        Ok(done) => done,
        Err(e) => {
            receiver.fail();
            if matches!(e, TransferFailure::Integrity) {
                let _ = std::fs::remove_file(&part);
                let _ = std::fs::remove_file(&info);
            }
            return Err(e);
        }
    };
    file.sync_all().map_err(local(&part))?;
    drop(file);
    // What is at the target may have changed while the data flowed; the verified copy stays
    // in the partial file (a `--resume` finds it) when it may not replace it.
    check_target(local_path, overwrite)?;
    std::fs::rename(&part, local_path).map_err(local(local_path))?;
    let _ = std::fs::remove_file(&info);
    Ok(TransferOutcome {
        size: opened.size,
        sha256,
        resumed_from,
    })
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use vserv_core::ErrorCode;

    use super::*;
    use crate::test_fake::{Fake, content};

    const SIZE: usize = 5 * MAX_FPUT_DATA + 1234;

    fn options(resume: bool, window: usize) -> TransferOptions {
        TransferOptions {
            resume,
            window,
            overwrite: false,
        }
    }

    #[test]
    fn put_then_get_round_trip_with_window_and_progress() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        let data = content(40 * MAX_FREAD_LEN + 77, 1);
        std::fs::write(&src, &data).unwrap();
        let mut fake = Fake::default();
        let mut last = (0, 0);
        let put = put_with(
            &mut fake,
            &src,
            "a/b.bin",
            &options(false, 8),
            &mut |d, t| {
                assert!(d >= last.0 && d <= t);
                last = (d, t);
            },
        )
        .unwrap();
        assert_eq!(last, (data.len() as u64, data.len() as u64));
        assert_eq!(put.resumed_from, 0);
        assert_eq!(put.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(fake.files["a/b.bin"], data);
        assert!(fake.most_pending <= 8, "{}", fake.most_pending);
        assert!(fake.most_pending >= 2, "requests were not pipelined");

        let dst = dir.path().join("dst.bin");
        let got = get_with(
            &mut fake,
            "a/b.bin",
            &dst,
            &options(false, 8),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(got.sha256, put.sha256);
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        assert!(!part_path(&dst).exists() && !part_info_path(&dst).exists());
        assert!(fake.downloads.is_empty(), "the download was not closed");
    }

    #[test]
    fn empty_files_transfer() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("empty");
        std::fs::write(&src, b"").unwrap();
        let mut fake = Fake::default();
        put(&mut fake, &src, "e", false, &mut |_, _| {}).unwrap();
        assert_eq!(fake.files["e"], b"");
        let dst = dir.path().join("e.out");
        get(&mut fake, "e", &dst, false, &mut |_, _| {}).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"");
    }

    #[test]
    fn interrupted_put_resumes_where_the_server_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        let data = content(SIZE, 2);
        std::fs::write(&src, &data).unwrap();
        let mut fake = Fake {
            break_at: Some(4),
            ..Fake::default()
        };
        let err = put_with(&mut fake, &src, "f", &options(false, 2), &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(err, TransferFailure::Client(ClientError::ConnectionClosed)),
            "{err}"
        );
        assert!(!fake.files.contains_key("f"));
        let parked = fake.parked["f"].0.offset;
        assert!(parked > 0, "nothing was kept to resume");
        fake.broken = false;
        fake.break_at = None;
        let out = put_with(&mut fake, &src, "f", &options(true, 2), &mut |_, _| {}).unwrap();
        assert_eq!(out.resumed_from, parked);
        assert_eq!(fake.files["f"], data);
    }

    #[test]
    fn put_resume_with_a_different_local_file_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, content(SIZE, 3)).unwrap();
        let mut fake = Fake {
            break_at: Some(4),
            ..Fake::default()
        };
        put(&mut fake, &src, "f", false, &mut |_, _| {}).unwrap_err();
        fake.broken = false;
        fake.break_at = None;
        let other = content(SIZE, 4);
        std::fs::write(&src, &other).unwrap();
        let out = put(&mut fake, &src, "f", true, &mut |_, _| {}).unwrap();
        assert_eq!(out.resumed_from, 0);
        assert_eq!(fake.files["f"], other);
    }

    #[test]
    fn interrupted_get_resumes_from_the_partial_copy() {
        let dir = tempfile::tempdir().unwrap();
        let data = content(SIZE, 5);
        let mut fake = Fake::default();
        fake.files.insert("f".into(), data.clone());
        fake.break_at = Some(4);
        let dst = dir.path().join("f.out");
        get_with(&mut fake, "f", &dst, &options(false, 2), &mut |_, _| {}).unwrap_err();
        assert!(!dst.exists(), "an unverified copy became visible");
        let partial = std::fs::metadata(part_path(&dst)).unwrap().len();
        assert!(partial > 0);
        fake.broken = false;
        fake.break_at = None;
        let out = get_with(&mut fake, "f", &dst, &options(true, 2), &mut |_, _| {}).unwrap();
        assert_eq!(out.resumed_from, partial);
        assert_eq!(std::fs::read(&dst).unwrap(), data);
        assert!(!part_path(&dst).exists());
    }

    #[test]
    fn get_resume_of_a_corrupted_partial_copy_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let data = content(SIZE, 6);
        let mut fake = Fake::default();
        fake.files.insert("f".into(), data.clone());
        fake.break_at = Some(4);
        let dst = dir.path().join("f.out");
        get_with(&mut fake, "f", &dst, &options(false, 2), &mut |_, _| {}).unwrap_err();
        let part = part_path(&dst);
        let mut bytes = std::fs::read(&part).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&part, bytes).unwrap();
        fake.broken = false;
        fake.break_at = None;
        let out = get_with(&mut fake, "f", &dst, &options(true, 2), &mut |_, _| {}).unwrap();
        assert_eq!(out.resumed_from, 0);
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }

    #[test]
    fn get_with_a_wrong_hash_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let mut fake = Fake {
            lie: true,
            ..Fake::default()
        };
        fake.files.insert("f".into(), content(SIZE, 7));
        let dst = dir.path().join("f.out");
        std::fs::write(&dst, b"old").unwrap();
        let replace = TransferOptions {
            overwrite: true,
            ..TransferOptions::default()
        };
        let err = get_with(&mut fake, "f", &dst, &replace, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, TransferFailure::Integrity), "{err}");
        assert_eq!(std::fs::read(&dst).unwrap(), b"old");
        assert!(!part_path(&dst).exists() && !part_info_path(&dst).exists());
    }

    #[test]
    fn get_refuses_an_existing_file_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let data = content(SIZE, 8);
        let mut fake = Fake::default();
        fake.files.insert("f".into(), data.clone());
        let dst = dir.path().join("f.out");
        std::fs::write(&dst, b"mine").unwrap();
        let err = get(&mut fake, "f", &dst, false, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, TransferFailure::TargetExists { .. }), "{err}");
        assert_eq!(std::fs::read(&dst).unwrap(), b"mine");
        assert_eq!(fake.chunks, 0, "data was fetched for a refused download");
        assert!(!part_path(&dst).exists());
        let replace = TransferOptions {
            overwrite: true,
            ..TransferOptions::default()
        };
        get_with(&mut fake, "f", &dst, &replace, &mut |_, _| {}).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), data);
    }

    #[cfg(unix)]
    #[test]
    fn get_never_replaces_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut fake = Fake::default();
        fake.files.insert("f".into(), content(SIZE, 9));
        let replace = TransferOptions {
            overwrite: true,
            ..TransferOptions::default()
        };
        let target = dir.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        // A symlink or a directory is refused, even allowed to overwrite.
        for (path, kind) in [(&link, "symbolic link"), (&sub, "directory")] {
            let err = get_with(&mut fake, "f", path, &replace, &mut |_, _| {}).unwrap_err();
            assert!(
                matches!(&err, TransferFailure::TargetNotRegular { kind: k, .. } if *k == kind),
                "{err}"
            );
        }
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // So is a symlink where the partial copy would go.
        let dst = dir.path().join("new");
        std::os::unix::fs::symlink(&target, part_path(&dst)).unwrap();
        let err = get_with(&mut fake, "f", &dst, &replace, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(err, TransferFailure::TargetNotRegular { .. }),
            "{err}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(fake.chunks, 0);
    }

    #[test]
    fn server_refusals_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let mut fake = Fake::default();
        let err = get(
            &mut fake,
            "missing",
            &dir.path().join("x"),
            false,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            matches!(&err, TransferFailure::Client(ClientError::Server(e)) if e.code == ErrorCode::NotFound),
            "{err}"
        );
        let err = put(
            &mut fake,
            &dir.path().join("nope"),
            "x",
            false,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(err, TransferFailure::Local { .. }), "{err}");
    }

    #[test]
    fn part_info_round_trips_and_rejects_junk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i");
        write_info(&p, 42, &[0xab; 32]).unwrap();
        assert_eq!(read_info(&p), Some((42, [0xab; 32])));
        std::fs::write(&p, "vserv-part 1 x y").unwrap();
        assert_eq!(read_info(&p), None);
    }
}
