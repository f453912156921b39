//! How transfers talk to the connection: [`Requests`] (the session's calls that never
//! wait), [`Wire`] (sending on behalf of one transfer within its room), what each request's
//! reply is for ([`Expect`]) and why a transfer stopped sending ([`Stop`]).

use std::collections::VecDeque;

use vserv_core::transfer::TransferError;

use super::{ClientError, TransferFailure};

/// What the scheduler needs of a connection: queueing requests and taking replies that
/// already arrived, both without waiting. [`ClientSession`](super::super::ClientSession)
/// implements it.
pub trait Requests {
    /// Queues a request; it leaves with the others when the driver next writes.
    fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError>;
    /// [`send_raw`](Self::send_raw) with borrowed arguments (the same request). The default
    /// copies them; a connection that can encode them in place overrides it.
    fn send_raw_ref(&mut self, name: &str, args: &[&[u8]]) -> Result<u32, ClientError> {
        self.send_raw(name, args.iter().map(|a| a.to_vec()).collect())
    }
    /// The reply to `id` if it already arrived (an error reply is [`ClientError::Server`]).
    fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>>;
}

impl Requests for super::super::ClientSession {
    fn send_raw(&mut self, name: &str, args: Vec<Vec<u8>>) -> Result<u32, ClientError> {
        super::super::ClientSession::send_raw(self, name, args)
    }

    fn send_raw_ref(&mut self, name: &str, args: &[&[u8]]) -> Result<u32, ClientError> {
        super::super::ClientSession::send_raw_ref(self, name, args)
    }

    fn take_raw(&mut self, id: u32) -> Option<Result<Vec<Vec<u8>>, ClientError>> {
        self.take_response(id)
    }
}

/// What a request's reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
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
pub(super) enum Stop {
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

/// Sending on behalf of one job: every request is recorded with the job's slot, and at
/// most `room` requests may leave.
pub(super) struct Wire<'a> {
    pub(super) requests: &'a mut dyn Requests,
    /// Every request outstanding on the connection, oldest first, with its job's slot.
    pub(super) outstanding: &'a mut VecDeque<(u32, usize)>,
    pub(super) slot: usize,
    pub(super) room: usize,
}

impl Wire<'_> {
    /// Queues one request of the job owning `own`.
    pub(super) fn send(
        &mut self,
        own: &mut VecDeque<(u32, Expect)>,
        name: &str,
        args: Vec<Vec<u8>>,
        expect: Expect,
    ) -> Result<(), Stop> {
        let id = self
            .requests
            .send_raw(name, args)
            .map_err(Stop::Connection)?;
        self.sent(own, id, expect);
        Ok(())
    }

    /// Queues one request with borrowed arguments (an upload chunk: no copy of its data
    /// before it is encoded into the record).
    pub(super) fn send_ref(
        &mut self,
        own: &mut VecDeque<(u32, Expect)>,
        name: &str,
        args: &[&[u8]],
        expect: Expect,
    ) -> Result<(), Stop> {
        let id = self
            .requests
            .send_raw_ref(name, args)
            .map_err(Stop::Connection)?;
        self.sent(own, id, expect);
        Ok(())
    }

    fn sent(&mut self, own: &mut VecDeque<(u32, Expect)>, id: u32, expect: Expect) {
        self.outstanding.push_back((id, self.slot));
        own.push_back((id, expect));
        self.room = self.room.saturating_sub(1);
    }
}
