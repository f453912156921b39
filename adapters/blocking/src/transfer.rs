//! File transfers over a blocking client (spec/files.md): `put` drives core's
//! [`UploadSender`], `get` its [`DownloadReceiver`], moving the bytes between local files and
//! pipelined raw `fopen`/`fput`/`fdone` and `fget`/`fread`/`fclose` requests.
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

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use vserv_core::transfer::{
    DownloadReceiver, FcloseArgs, FdoneReply, FgetArgs, FgetReply, FopenArgs, FopenReply,
    FreadReply, MAX_FPUT_DATA, MAX_FREAD_LEN, TransferError, UploadSender, parse_ack,
};
use vserv_service::client::ClientError;

use crate::Client;
use crate::read_ahead::{Batch, ReadAhead};
use crate::write_behind::WriteBehind;

/// Chunk requests a transfer keeps in flight unless told otherwise.
pub const DEFAULT_WINDOW: usize = 128;

/// Suffix of a download's partial copy, next to its final name.
pub const PART_SUFFIX: &str = ".vserv-part";

/// Suffix of the file recording the size and SHA-256 a partial copy is downloading.
pub const PART_INFO_SUFFIX: &str = ".vserv-part.info";

/// Bytes read at a time when re-hashing a local prefix for a resume.
const REHASH_BUF: usize = 1 << 20;

/// Buffer between the file and the chunks (fewer system calls than one per chunk).
const FILE_BUF: usize = 1 << 20;

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
    /// Chunk requests kept in flight (clamped to 1..=the connection's limit).
    pub window: usize,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            resume: false,
            window: DEFAULT_WINDOW,
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
}

fn local(path: &Path) -> impl FnOnce(io::Error) -> TransferFailure + '_ {
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
/// resume can continue it.
pub fn put_with(
    client: &mut (impl RawCalls + ?Sized),
    local_path: &Path,
    remote_path: &str,
    options: &TransferOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TransferOutcome, TransferFailure> {
    let file = File::open(local_path).map_err(local(local_path))?;
    let size = file.metadata().map_err(local(local_path))?.len();
    let mut reader = BufReader::with_capacity(FILE_BUF, file);
    let window = options.window.clamp(1, client.max_outstanding().max(1));
    let opened = fopen(client, remote_path, size, options.resume)?;
    let mut sender = None;
    if opened.offset > 0 {
        match resume_sender(&mut reader, local_path, &opened, size, window) {
            Ok(s) => sender = s,
            Err(e) => {
                close(client, opened.id);
                return Err(e);
            }
        }
        if sender.is_none() {
            // The local file is not the one the server holds a part of: start again.
            close(client, opened.id);
        }
    }
    let (sender, resumed_from) = match sender {
        Some(s) => (s, opened.offset),
        None => {
            let id = if opened.offset > 0 {
                fopen(client, remote_path, size, false)?.id
            } else {
                opened.id
            };
            (UploadSender::new(id, size, window, MAX_FPUT_DATA)?, 0)
        }
    };
    let id = sender.id();
    match send_chunks(client, reader.into_inner(), local_path, sender, progress) {
        Ok(reply) => Ok(TransferOutcome {
            size: reply.size,
            sha256: reply.sha256,
            resumed_from,
        }),
        Err(e) => {
            close(client, id);
            Err(e)
        }
    }
}

fn fopen(
    client: &mut (impl RawCalls + ?Sized),
    path: &str,
    size: u64,
    resume: bool,
) -> Result<FopenReply, TransferFailure> {
    let args = FopenArgs {
        path: path.to_owned(),
        size,
        resume,
    };
    let id = client.send_raw("fopen", args.to_args())?;
    let fields = client.wait_raw(id)?;
    Ok(FopenReply::from_fields(&fields).map_err(ClientError::from)?)
}

/// Best-effort `fclose` (the transfer ends with the connection anyway).
fn close(client: &mut (impl RawCalls + ?Sized), id: u32) {
    let result = client
        .send_raw("fclose", FcloseArgs { id }.to_args())
        .and_then(|rid| client.wait_raw(rid));
    if let Err(e) = result {
        tracing::debug!(id, error = %e, "fclose failed");
    }
}

/// Re-hashes the local file's bytes before the server's resume offset: the positioned
/// sender if they match the server's prefix hash, `None` if the local file differs.
fn resume_sender(
    reader: &mut BufReader<File>,
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

/// Sends every chunk from the sender's position, keeping the window full, then `fdone`.
/// The file is read and hashed ahead by a [`ReadAhead`] thread.
fn send_chunks(
    client: &mut (impl RawCalls + ?Sized),
    file: File,
    path: &Path,
    mut sender: UploadSender,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<FdoneReply, TransferFailure> {
    let start = sender.progress();
    progress(start.done, start.size);
    let hasher = sender
        .take_hasher()
        .ok_or(TransferFailure::Machine(TransferError::HasherTaken))?;
    let reader = ReadAhead::spawn(file, start.done, start.size, MAX_FPUT_DATA, hasher)
        .map_err(local(path))?;
    let changed = || TransferFailure::LocalChanged {
        path: path.to_owned(),
    };
    let mut batch: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut in_flight: VecDeque<(u32, u64)> = VecDeque::new();
    let streamed = (|| -> Result<(), TransferFailure> {
        loop {
            while let Some(plan) = sender.next_chunk() {
                if at == batch.len() {
                    batch = match reader.next() {
                        Some(Batch::Data(data)) => data,
                        Some(Batch::Short) | None => return Err(changed()),
                        Some(Batch::Failed(e)) => return Err(local(path)(e)),
                    };
                    at = 0;
                }
                // Batches hold whole chunks, so a plan never straddles two.
                let data = batch.get(at..at + plan.len).ok_or_else(changed)?;
                at += plan.len;
                let args = sender.send(plan.offset, data)?.to_args();
                let id = client.send_raw("fput", args)?;
                in_flight.push_back((id, plan.offset));
            }
            let Some(&(id, offset)) = in_flight.front() else {
                return Ok(());
            };
            parse_ack(&client.wait_raw(id)?).map_err(ClientError::from)?;
            sender.on_ack(offset)?;
            in_flight.pop_front();
            while let Some(&(id, offset)) = in_flight.front() {
                let Some(reply) = client.take_raw(id) else {
                    break;
                };
                parse_ack(&reply?).map_err(ClientError::from)?;
                sender.on_ack(offset)?;
                in_flight.pop_front();
            }
            let p = sender.progress();
            progress(p.done, p.size);
        }
    })();
    let hasher = reader.finish();
    let result = streamed.and_then(|()| {
        let hasher =
            hasher.ok_or_else(|| local(path)(io::Error::other("the file reader failed")))?;
        let done = sender.finish_with(hasher)?;
        let id = client.send_raw("fdone", done.to_args())?;
        let reply = FdoneReply::from_fields(&client.wait_raw(id)?).map_err(ClientError::from)?;
        sender.on_done(&reply)?;
        Ok(reply)
    });
    if result.is_err() {
        sender.fail();
    }
    result
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
/// rename, replacing any file there) only once its SHA-256 matched the server's. With
/// `resume`, a partial copy of the same size and hash continues from its length after being
/// re-hashed; if the finished copy then fails the hash, the download starts once more from
/// 0.
pub fn get_with(
    client: &mut (impl RawCalls + ?Sized),
    remote_path: &str,
    local_path: &Path,
    options: &TransferOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TransferOutcome, TransferFailure> {
    let args = FgetArgs {
        path: remote_path.to_owned(),
    };
    let id = client.send_raw("fget", args.to_args())?;
    let opened = FgetReply::from_fields(&client.wait_raw(id)?).map_err(ClientError::from)?;
    let window = options.window.clamp(1, client.max_outstanding().max(1));
    let mut result = receive(
        client,
        &opened,
        local_path,
        options.resume,
        window,
        progress,
    );
    if let Err(TransferFailure::Integrity) = result
        && options.resume
    {
        // The partial copy was of other bytes: it is discarded, start again from 0.
        result = receive(client, &opened, local_path, false, window, progress);
    }
    close(client, opened.id);
    result
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
fn deliver(
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

fn receive(
    client: &mut (impl RawCalls + ?Sized),
    opened: &FgetReply,
    local_path: &Path,
    resume: bool,
    window: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<TransferOutcome, TransferFailure> {
    let part = part_path(local_path);
    let info = part_info_path(local_path);
    let (file, mut receiver) = open_part(opened, &part, &info, resume, window)?;
    let resumed_from = receiver.progress().done;
    progress(resumed_from, opened.size);
    // The writer thread hashes and writes; this one keeps the requests flowing.
    let hasher = receiver
        .take_hasher()
        .ok_or(TransferFailure::Machine(TransferError::HasherTaken))?;
    let mut writer = WriteBehind::spawn(file, &part, resumed_from, hasher).map_err(local(&part))?;
    let mut in_flight: VecDeque<(u32, u64)> = VecDeque::new();
    let streamed = (|| -> Result<(), TransferFailure> {
        loop {
            while let Some(request) = receiver.next_request() {
                let id = client.send_raw("fread", request.to_args())?;
                in_flight.push_back((id, request.offset));
            }
            let Some(&(id, offset)) = in_flight.front() else {
                return Ok(());
            };
            let fields = client.wait_raw(id)?;
            in_flight.pop_front();
            deliver(&mut receiver, &mut writer, &part, offset, fields)?;
            while let Some(&(id, offset)) = in_flight.front() {
                let Some(reply) = client.take_raw(id) else {
                    break;
                };
                in_flight.pop_front();
                deliver(&mut receiver, &mut writer, &part, offset, reply?)?;
            }
            let p = receiver.progress();
            progress(p.done, p.size);
        }
    })();
    // Everything queued is written (the partial copy stays a prefix of the file for a
    // resume); a write error outranks the local failure it caused.
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
            // Keep the partial copy for a resume, unless it is known to be wrong.
            if matches!(e, TransferFailure::Integrity) {
                let _ = std::fs::remove_file(&part);
                let _ = std::fs::remove_file(&info);
            }
            return Err(e);
        }
    };
    file.sync_all().map_err(local(&part))?;
    drop(file);
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
    use std::collections::{BTreeMap, HashMap};

    use sha2::{Digest, Sha256};
    use vserv_core::transfer::{
        DownloadSender, FdoneArgs, FputArgs, FreadArgs, UploadReceiver, UploadState,
    };
    use vserv_core::{ErrorCode, ErrorReply};

    use super::*;

    /// An in-process server speaking the transfer commands with core's server machines,
    /// answering queued requests when the client waits (in reverse order, to exercise
    /// replies that arrive out of order), and able to break the connection mid-transfer.
    #[derive(Default)]
    struct Fake {
        next_request: u32,
        next_transfer: u32,
        pending: Vec<(u32, String, Vec<Vec<u8>>)>,
        replies: BTreeMap<u32, Result<Vec<Vec<u8>>, ClientError>>,
        files: HashMap<String, Vec<u8>>,
        uploads: HashMap<u32, (String, UploadReceiver, Vec<u8>)>,
        parked: HashMap<String, (UploadState, Vec<u8>)>,
        downloads: HashMap<u32, (DownloadSender, Vec<u8>)>,
        /// The connection breaks on this chunk request (counting from 1).
        break_at: Option<usize>,
        chunks: usize,
        broken: bool,
        /// `fget` reports a wrong SHA-256.
        lie: bool,
        most_pending: usize,
    }

    impl Fake {
        fn break_connection(&mut self) {
            self.broken = true;
            self.pending.clear();
            for (_, (path, receiver, data)) in self.uploads.drain() {
                self.parked.insert(
                    path,
                    (receiver.checkpoint().expect("the fake hashes"), data),
                );
            }
            self.downloads.clear();
        }

        fn handle(&mut self, name: &str, args: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, ErrorReply> {
            let refuse = |e: TransferError| e.to_reply();
            match name {
                "fopen" => {
                    let a = FopenArgs::parse(args)?;
                    let parked = self.parked.remove(&a.path);
                    let (receiver, data) = match parked {
                        Some((state, data)) if a.resume && state.size == a.size => {
                            let mut restore = UploadReceiver::restore(&state);
                            let end = usize::try_from(state.offset).unwrap_or(usize::MAX);
                            let _ = restore.feed(&data[..end.min(data.len())]);
                            let (receiver, _) = restore.finish();
                            let keep = usize::try_from(receiver.offset()).unwrap_or(0);
                            (receiver, data[..keep].to_vec())
                        }
                        _ => (UploadReceiver::new(a.size), Vec::new()),
                    };
                    self.next_transfer += 1;
                    let reply = FopenReply {
                        id: self.next_transfer,
                        offset: receiver.offset(),
                        prefix_sha256: receiver.prefix_sha256().map_err(refuse)?,
                    };
                    self.uploads
                        .insert(self.next_transfer, (a.path, receiver, data));
                    Ok(reply.to_fields())
                }
                "fput" => {
                    let a = FputArgs::parse(args)?;
                    let (_, receiver, data) = self
                        .uploads
                        .get_mut(&a.id)
                        .ok_or_else(|| refuse(TransferError::UnknownTransfer(a.id)))?;
                    receiver.accept(a.offset, a.data).map_err(refuse)?;
                    data.extend_from_slice(a.data);
                    Ok(Vec::new())
                }
                "fdone" => {
                    let a = FdoneArgs::parse(args)?;
                    let (path, mut receiver, data) = self
                        .uploads
                        .remove(&a.id)
                        .ok_or_else(|| refuse(TransferError::UnknownTransfer(a.id)))?;
                    let reply = receiver.finish(&a.sha256).map_err(refuse)?;
                    self.files.insert(path, data);
                    Ok(reply.to_fields())
                }
                "fget" => {
                    let a = FgetArgs::parse(args)?;
                    let data = self
                        .files
                        .get(&a.path)
                        .cloned()
                        .ok_or_else(|| ErrorReply::new(ErrorCode::NotFound, "no such file"))?;
                    let mut sha: [u8; 32] = Sha256::digest(&data).into();
                    if self.lie {
                        sha[0] ^= 1;
                    }
                    self.next_transfer += 1;
                    let size = data.len() as u64;
                    self.downloads
                        .insert(self.next_transfer, (DownloadSender::new(size, sha), data));
                    Ok(FgetReply {
                        id: self.next_transfer,
                        size,
                        sha256: sha,
                    }
                    .to_fields())
                }
                "fread" => {
                    let a = FreadArgs::parse(args)?;
                    let (sender, data) = self
                        .downloads
                        .get(&a.id)
                        .ok_or_else(|| refuse(TransferError::UnknownTransfer(a.id)))?;
                    let at = sender.read(a.offset, a.len as usize).map_err(refuse)?;
                    let start = usize::try_from(at.offset).unwrap_or(usize::MAX);
                    Ok(FreadReply {
                        data: data[start..start + at.len].to_vec(),
                    }
                    .into_fields())
                }
                "fclose" => {
                    let a = FcloseArgs::parse(args)?;
                    if let Some((path, receiver, data)) = self.uploads.remove(&a.id) {
                        self.parked.insert(
                            path,
                            (receiver.checkpoint().expect("the fake hashes"), data),
                        );
                    } else if self.downloads.remove(&a.id).is_none() {
                        return Err(refuse(TransferError::UnknownTransfer(a.id)));
                    }
                    Ok(Vec::new())
                }
                _ => Err(ErrorReply::new(ErrorCode::UnknownCommand, "unknown")),
            }
        }
    }

    impl RawCalls for Fake {
        fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError> {
            if self.broken {
                return Err(ClientError::ConnectionClosed);
            }
            if name == "fput" || name == "fread" {
                self.chunks += 1;
                if self.break_at == Some(self.chunks) {
                    self.break_connection();
                    return Err(ClientError::ConnectionClosed);
                }
            }
            self.next_request += 1;
            self.pending
                .push((self.next_request, name.to_owned(), args));
            self.most_pending = self.most_pending.max(self.pending.len());
            Ok(self.next_request)
        }

        fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
            self.replies.remove(&id)
        }

        fn wait_raw(&mut self, id: u32) -> Result<Vec<Vec<u8>>, ClientError> {
            if self.broken {
                return Err(ClientError::ConnectionClosed);
            }
            // The server handles requests in order; the replies are filed all at once.
            for (rid, name, args) in std::mem::take(&mut self.pending) {
                let reply = self.handle(&name, &args).map_err(ClientError::Server);
                self.replies.insert(rid, reply);
            }
            self.replies
                .remove(&id)
                .unwrap_or(Err(ClientError::ConnectionClosed))
        }

        fn max_outstanding(&self) -> usize {
            256
        }
    }

    fn content(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
            .collect()
    }

    const SIZE: usize = 5 * MAX_FPUT_DATA + 1234;

    fn options(resume: bool, window: usize) -> TransferOptions {
        TransferOptions { resume, window }
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
        let err = get(&mut fake, "f", &dst, false, &mut |_, _| {}).unwrap_err();
        assert!(matches!(err, TransferFailure::Integrity), "{err}");
        assert_eq!(std::fs::read(&dst).unwrap(), b"old");
        assert!(!part_path(&dst).exists() && !part_info_path(&dst).exists());
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
