//! An in-process fake server for the transfer drivers' tests: it speaks the transfer
//! commands with core's server machines, so the drivers' unit tests need no socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};
use vserv_core::transfer::{
    DownloadSender, FcloseArgs, FdoneArgs, FgetArgs, FgetReply, FopenArgs, FopenReply, FputArgs,
    FreadArgs, FreadReply, TransferError, UploadReceiver, UploadState,
};
use vserv_core::{ErrorCode, ErrorReply};
use vserv_service::client::ClientError;

use crate::transfer::RawCalls;

/// An in-process server speaking the transfer commands with core's server machines,
/// answering the queued requests in order when the client waits (all of them, or with
/// `trickle` only those up to the awaited one), and able to break the connection
/// mid-transfer. Like the real server, it refuses a second upload to a path being uploaded.
#[derive(Default)]
pub(crate) struct Fake {
    /// The last request id given out.
    pub(crate) next_request: u32,
    /// The last transfer id given out.
    pub(crate) next_transfer: u32,
    /// Requests queued and not yet answered.
    pub(crate) pending: Vec<(u32, String, Vec<Vec<u8>>)>,
    /// Answers not yet taken by the client.
    pub(crate) replies: BTreeMap<u32, Result<Vec<Vec<u8>>, ClientError>>,
    /// The finished files, by path.
    pub(crate) files: HashMap<String, Vec<u8>>,
    /// Open uploads by transfer id: path, machine, bytes accepted.
    pub(crate) uploads: HashMap<u32, (String, UploadReceiver, Vec<u8>)>,
    /// Parked (closed or interrupted) uploads by path, for a resume.
    pub(crate) parked: HashMap<String, (UploadState, Vec<u8>)>,
    /// Open downloads by transfer id.
    pub(crate) downloads: HashMap<u32, (DownloadSender, Vec<u8>)>,
    /// The connection breaks on this chunk request (counting from 1).
    pub(crate) break_at: Option<usize>,
    /// Chunk requests (`fput`, `fread`) seen so far.
    pub(crate) chunks: usize,
    /// The connection is gone: every call fails.
    pub(crate) broken: bool,
    /// `fget` reports a wrong SHA-256.
    pub(crate) lie: bool,
    /// `fget` of these paths reports a wrong SHA-256.
    pub(crate) lie_about: HashSet<String>,
    /// `fopen` of these paths is refused, like an upload over quota (error 4).
    pub(crate) refuse: HashSet<String>,
    /// Every `fput` to an upload of these paths is refused (error 5, like a failed write);
    /// the upload stays open.
    pub(crate) refuse_chunks: HashSet<String>,
    /// Answer only the requests up to the one waited for (the later ones stay pending), so
    /// the client finds some replies not in yet.
    pub(crate) trickle: bool,
    /// The most requests ever queued and not yet answered.
    pub(crate) most_pending: usize,
    /// The most requests ever outstanding: sent and their replies not yet taken.
    pub(crate) most_outstanding: usize,
    /// The most transfers (uploads and downloads) ever open at once.
    pub(crate) most_open: usize,
    /// Chunk requests (`fput`, `fread`) whose replies were not yet taken: request id to
    /// transfer id.
    pub(crate) chunk_of: HashMap<u32, u32>,
    /// The most chunk requests of one transfer outstanding at once while another transfer
    /// was open.
    pub(crate) most_shared_chunks: usize,
}

impl Fake {
    pub(crate) fn break_connection(&mut self) {
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

    fn note_open(&mut self) {
        self.most_open = self
            .most_open
            .max(self.uploads.len() + self.downloads.len());
    }

    fn handle(&mut self, name: &str, args: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, ErrorReply> {
        let refuse = |e: TransferError| e.to_reply();
        match name {
            "fopen" => {
                let a = FopenArgs::parse(args)?;
                if self.refuse.contains(&a.path) {
                    return Err(ErrorReply::new(ErrorCode::TooLarge, "quota exceeded"));
                }
                if self.uploads.values().any(|(path, _, _)| *path == a.path) {
                    return Err(ErrorReply::new(
                        ErrorCode::Conflict,
                        format!("an upload to {} is in progress", a.path),
                    ));
                }
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
                self.note_open();
                Ok(reply.to_fields())
            }
            "fput" => {
                let a = FputArgs::parse(args)?;
                let (path, receiver, data) = self
                    .uploads
                    .get_mut(&a.id)
                    .ok_or_else(|| refuse(TransferError::UnknownTransfer(a.id)))?;
                if self.refuse_chunks.contains(path.as_str()) {
                    return Err(ErrorReply::new(ErrorCode::Internal, "write failed"));
                }
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
                if self.lie || self.lie_about.contains(&a.path) {
                    sha[0] ^= 1;
                }
                self.next_transfer += 1;
                let size = data.len() as u64;
                self.downloads
                    .insert(self.next_transfer, (DownloadSender::new(size, sha), data));
                self.note_open();
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
        if name == "fput" || name == "fread" {
            let transfer = args
                .first()
                .and_then(|a| <[u8; 4]>::try_from(a.as_slice()).ok())
                .map_or(0, u32::from_be_bytes);
            self.chunk_of.insert(self.next_request, transfer);
            if self.uploads.len() + self.downloads.len() >= 2 {
                let mine = self.chunk_of.values().filter(|&&t| t == transfer).count();
                self.most_shared_chunks = self.most_shared_chunks.max(mine);
            }
        }
        self.pending
            .push((self.next_request, name.to_owned(), args));
        self.most_pending = self.most_pending.max(self.pending.len());
        self.most_outstanding = self
            .most_outstanding
            .max(self.pending.len() + self.replies.len());
        Ok(self.next_request)
    }

    fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
        let reply = self.replies.remove(&id)?;
        self.chunk_of.remove(&id);
        Some(reply)
    }

    fn wait_raw(&mut self, id: u32) -> Result<Vec<Vec<u8>>, ClientError> {
        if self.broken {
            return Err(ClientError::ConnectionClosed);
        }
        // The server handles requests in order; the replies are filed all at once.
        let answer = if self.trickle {
            self.pending
                .iter()
                .position(|(rid, _, _)| *rid == id)
                .map_or(self.pending.len(), |at| at + 1)
        } else {
            self.pending.len()
        };
        let requests: Vec<_> = self.pending.drain(..answer).collect();
        for (rid, name, args) in requests {
            let reply = self.handle(&name, &args).map_err(ClientError::Server);
            self.replies.insert(rid, reply);
        }
        self.chunk_of.remove(&id);
        self.replies
            .remove(&id)
            .unwrap_or(Err(ClientError::ConnectionClosed))
    }

    fn max_outstanding(&self) -> usize {
        256
    }
}

/// `len` bytes of test content that differ with `seed` and along the file.
pub(crate) fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}
