//! The open transfers of one server connection, by id.

use std::collections::BTreeMap;

use super::{
    DownloadSender, FdoneArgs, FdoneReply, FileHasher, FputArgs, FreadArgs, ReadAt, TransferError,
    UploadReceiver, WriteAt,
};

/// Default limit on transfers open at once on one connection.
pub const DEFAULT_MAX_TRANSFERS: usize = 64;

/// One open transfer, server side.
#[derive(Debug, Clone)]
pub enum ServerTransfer {
    /// An upload (`fopen`).
    Upload(UploadReceiver),
    /// A download (`fget`).
    Download(DownloadSender),
}

/// The transfers open on one connection: allocates ids, routes `fput` / `fread` / `fdone` /
/// `fclose`, and refuses unknown ids with [`TransferError::UnknownTransfer`]. Bounded by its
/// limit, whatever the peer sends.
#[derive(Debug, Clone)]
pub struct ServerTransfers {
    open: BTreeMap<u32, ServerTransfer>,
    next_id: u32,
    limit: usize,
}

impl Default for ServerTransfers {
    /// An empty table allowing [`DEFAULT_MAX_TRANSFERS`] transfers at once.
    fn default() -> Self {
        ServerTransfers {
            open: BTreeMap::new(),
            next_id: 1,
            limit: DEFAULT_MAX_TRANSFERS,
        }
    }
}

impl ServerTransfers {
    /// An empty table allowing `limit` (at least 1) transfers at once.
    pub fn new(limit: usize) -> Result<Self, TransferError> {
        if limit == 0 {
            return Err(TransferError::TooManyTransfers(0));
        }
        Ok(ServerTransfers {
            open: BTreeMap::new(),
            next_id: 1,
            limit,
        })
    }

    /// The most transfers this table holds at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the table is at its limit (the next [`open`](Self::open) is refused).
    pub fn is_full(&self) -> bool {
        self.open.len() >= self.limit
    }

    /// Registers a transfer and returns its id (never 0, never one in use).
    pub fn open(&mut self, transfer: ServerTransfer) -> Result<u32, TransferError> {
        if self.open.len() >= self.limit {
            return Err(TransferError::TooManyTransfers(self.limit));
        }
        // At most `limit` ids are in use, so this finds a free one within `limit + 1` steps.
        let mut id = self.next_id;
        while id == 0 || self.open.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        self.open.insert(id, transfer);
        Ok(id)
    }

    /// Number of open transfers.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether no transfer is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The transfer with this id.
    pub fn get(&self, id: u32) -> Result<&ServerTransfer, TransferError> {
        self.open.get(&id).ok_or(TransferError::UnknownTransfer(id))
    }

    /// The upload with this id.
    pub fn upload(&mut self, id: u32) -> Result<&mut UploadReceiver, TransferError> {
        match self.open.get_mut(&id) {
            Some(ServerTransfer::Upload(u)) => Ok(u),
            _ => Err(TransferError::UnknownTransfer(id)),
        }
    }

    /// The download with this id.
    pub fn download(&self, id: u32) -> Result<&DownloadSender, TransferError> {
        match self.open.get(&id) {
            Some(ServerTransfer::Download(d)) => Ok(d),
            _ => Err(TransferError::UnknownTransfer(id)),
        }
    }

    /// `fput`: validates and hashes the chunk; the driver writes it where [`WriteAt`] says.
    pub fn put(&mut self, args: &FputArgs<'_>) -> Result<WriteAt, TransferError> {
        self.upload(args.id)?.accept(args.offset, args.data)
    }

    /// `fread`: validates the read; the driver replies with the bytes [`ReadAt`] names.
    pub fn read(&self, args: &FreadArgs) -> Result<ReadAt, TransferError> {
        let len = usize::try_from(args.len).unwrap_or(usize::MAX);
        self.download(args.id)?.read(args.offset, len)
    }

    /// `fdone`: checks the whole file's hash. The upload leaves the table when it succeeds
    /// (make the file visible) or fails the hash check (discard the partial file); an
    /// incomplete upload stays open.
    pub fn done(&mut self, args: &FdoneArgs) -> Result<FdoneReply, TransferError> {
        let result = self.upload(args.id)?.finish(&args.sha256);
        self.settle(args.id, result)
    }

    /// [`done`](Self::done) for an upload whose hasher the driver took
    /// ([`UploadReceiver::finish_with`]).
    pub fn done_with(
        &mut self,
        args: &FdoneArgs,
        hasher: FileHasher,
    ) -> Result<FdoneReply, TransferError> {
        let result = self.upload(args.id)?.finish_with(&args.sha256, hasher);
        self.settle(args.id, result)
    }

    /// Removes the upload unless it is merely incomplete.
    fn settle(
        &mut self,
        id: u32,
        result: Result<FdoneReply, TransferError>,
    ) -> Result<FdoneReply, TransferError> {
        if !matches!(result, Err(TransferError::Incomplete { .. })) {
            self.open.remove(&id);
        }
        result
    }

    /// `fclose` (or the connection ending): removes the transfer and returns it, so the
    /// driver can checkpoint an upload's partial file for a later resume.
    pub fn close(&mut self, id: u32) -> Result<ServerTransfer, TransferError> {
        self.open
            .remove(&id)
            .ok_or(TransferError::UnknownTransfer(id))
    }

    /// Removes every transfer (the connection ended), in id order.
    pub fn drain(&mut self) -> impl Iterator<Item = (u32, ServerTransfer)> {
        std::mem::take(&mut self.open).into_iter()
    }
}
