//! One connection's session: who is logged in, its working directory and transfers (the
//! [`SessionState`], which goes out with a blocking request and comes back with its answer),
//! and the bookkeeping of what is in flight (`rput` groups, deliveries, the request waiting
//! for them) with the mailbox their completions arrive in.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vserv_core::commands::{Notice, Reply};
use vserv_core::{CloseCode, ErrorReply, Request};

use crate::accounts::{AccountId, UserName};
use crate::files::{Target, Transfers};
use crate::ledger::AppendResults;
use crate::limits::UnauthenticatedSlot;
use crate::work::{Mailbox, NoWake, Wake};

/// The number of the next session made.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A change of the connection's login grace (`vserv_core::Config::login_grace`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Grace {
    /// Logged in: the grace ends.
    End,
    /// Anonymous again: the grace starts again.
    Restart,
}

/// The outcome of one request: the answer, and whether (and how) to close after it.
#[derive(Debug)]
pub(super) struct Handled {
    pub(super) result: Result<Reply, ErrorReply>,
    pub(super) close: Option<(CloseCode, &'static str)>,
}

impl From<Result<Reply, ErrorReply>> for Handled {
    fn from(result: Result<Reply, ErrorReply>) -> Self {
        Handled {
            result,
            close: None,
        }
    }
}

/// The part of a session the commands read and change. While a blocking request runs, it
/// travels with it and the session takes no other request.
#[derive(Debug)]
pub(super) struct SessionState {
    /// This session's number, unique within the process (names it in the registry).
    pub(super) number: u64,
    pub(super) peer: Option<IpAddr>,
    pub(super) session_id: Option<[u8; 32]>,
    /// The logged-in user, and the account they logged into: a later account of the same
    /// name has another id, and is not this session's.
    pub(super) user: Option<(UserName, AccountId)>,
    pub(super) failed_logins: u32,
    /// A login whose credential was right for an account with two-factor login, waiting
    /// for `otp CODE` until the deadline (Unix seconds); the session is not logged in.
    pub(super) pending_code: Option<PendingCode>,
    /// The connection's idle timeout as last seen by `drive` (or set by `tout`).
    pub(super) idle_timeout: Duration,
    /// `tout` changed `idle_timeout`; `drive` applies it to the connection.
    pub(super) idle_changed: bool,
    /// The session's slot among its address's unauthenticated sessions, held until login.
    pub(super) unauthenticated: Option<UnauthenticatedSlot>,
    /// A login or logout changed whether the login grace runs; `drive` applies it.
    pub(super) grace: Option<Grace>,
    /// The working directory set by `cd`, and the user who set it.
    pub(super) cwd: Option<(UserName, Target)>,
    /// The open uploads and downloads (spec/files.md).
    pub(super) transfers: Transfers,
}

/// A login waiting for its second factor (see [`SessionState::pending_code`]).
#[derive(Debug, Clone)]
pub(super) struct PendingCode {
    pub(super) name: UserName,
    pub(super) id: AccountId,
    /// Unix seconds after which `otp` refuses it.
    pub(super) deadline: u64,
}

/// What comes back to a session: completions of its work, and what others push to it.
pub(super) enum Completion {
    /// A blocking request ran: the state it took, and its answer (`None`: a `send` whose
    /// delivery goes on; its answer comes as [`Completion::Delivered`]).
    Served {
        id: u32,
        state: Box<SessionState>,
        handled: Option<Handled>,
    },
    /// The oldest submitted `rput` group of the session is committed (or failed).
    Appended(AppendResults),
    /// A delivery ended.
    Delivered {
        id: u32,
        result: Result<Reply, ErrorReply>,
    },
    /// The account `AccountId` was deleted (pushed by the session that deleted it).
    AccountDeleted(AccountId),
    /// A replication link's work is done, or news for the link (`link.rs`).
    Link(super::link::LinkDone),
    /// A notice for the session's user (a message or delivery arrived), pushed by another
    /// session through the registry and sent to the client as it is taken in.
    Notice(Notice),
}

/// An answer waiting for its turn.
#[derive(Debug)]
pub(super) enum Slot {
    /// A submitted `rput` group: its request ids, and its results once committed.
    Group {
        ids: Vec<u32>,
        results: Option<AppendResults>,
    },
    /// An answer ready to go once the slots before it went.
    Answer { id: u32, handled: Handled },
}

/// Per-connection state: the [`SessionState`] (or where it is), the `rput` groups being
/// committed, the deliveries running, and the mailbox their completions arrive in.
/// Dropping it (the connection ended) parks its open uploads for a resume and releases
/// their path locks; work still running for it finishes on its own.
pub struct Session {
    /// `None` while a blocking request holds it.
    pub(super) state: Option<Box<SessionState>>,
    pub(super) mailbox: Arc<Mailbox<Completion>>,
    /// A request read while the `rput` groups before it are committed; taken when they are.
    pub(super) held: Option<Request>,
    /// Answers that must leave in request order behind the `rput` groups being committed,
    /// oldest first.
    pub(super) answers: VecDeque<Slot>,
    /// Deliveries running for this session.
    pub(super) deliveries: usize,
    /// Close the connection this way once nothing is in flight any more.
    pub(super) close_after: Option<(CloseCode, &'static str)>,
    /// The session's account was deleted while its state was out: ended when it is back.
    pub(super) deleted: Option<AccountId>,
    /// The account this session is registered under for pushes (unregistered when this
    /// is dropped, with the session).
    pub(super) registered: Option<super::registry::Registration>,
    /// The idle timeout last applied (readable while the state is out).
    pub(super) idle_timeout: Duration,
    /// A replication link (or a dialing session becoming one): the session then takes no
    /// request (`link.rs`).
    pub(super) link: Option<Box<super::link::LinkState>>,
    /// Whether `drive` has set the connection's idle notice (once, at the first drive).
    pub(super) idle_notice_set: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state)
            .field("answers", &self.answers.len())
            .field("deliveries", &self.deliveries)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A fresh, anonymous session for a connection from `peer` (`None` if unknown), for a
    /// runtime that drives it synchronously (completions are picked up by the same
    /// [`crate::Service::drive`] call, with the [`crate::work::Inline`] runner).
    pub fn new(peer: Option<IpAddr>) -> Session {
        Self::with_waker(peer, Arc::new(NoWake))
    }

    /// A fresh, anonymous session whose completions call `waker` (the runtime then drives
    /// the session again).
    pub fn with_waker(peer: Option<IpAddr>, waker: Arc<dyn Wake>) -> Session {
        let idle_timeout = vserv_core::Config::default().idle_timeout;
        Session {
            state: Some(Box::new(SessionState {
                number: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
                peer,
                session_id: None,
                user: None,
                failed_logins: 0,
                pending_code: None,
                idle_timeout,
                idle_changed: false,
                unauthenticated: None,
                grace: None,
                cwd: None,
                transfers: Transfers::new(),
            })),
            mailbox: Arc::new(Mailbox::new(waker)),
            held: None,
            answers: VecDeque::new(),
            deliveries: 0,
            close_after: None,
            deleted: None,
            registered: None,
            idle_timeout,
            link: None,
            idle_notice_set: false,
        }
    }

    /// Holds `slot` (taken for this connection with
    /// [`crate::Service::admit_unauthenticated`]) until the session logs in.
    pub fn hold_unauthenticated(&mut self, slot: UnauthenticatedSlot) {
        if let Some(state) = &mut self.state {
            state.unauthenticated = Some(slot);
        }
    }

    /// Gives back the session's unauthenticated slot, if it holds one: its connection
    /// ended (for a runtime that keeps the session after that).
    pub fn release_unauthenticated(&mut self) {
        if let Some(state) = &mut self.state {
            state.unauthenticated = None;
        }
    }

    /// Whether the session takes another request now. While it does not (a blocking
    /// request or the `rput`s before a request are in flight, or it is closing), the
    /// runtime need not read its socket: it waits for the session's waker.
    pub fn wants_input(&self) -> bool {
        self.state.is_some() && self.held.is_none() && self.close_after.is_none()
    }

    /// Whether anything of this session is in flight (a blocking request, `rput` groups,
    /// deliveries): their answers come through the waker.
    pub fn in_flight(&self) -> bool {
        self.state.is_none() || !self.answers.is_empty() || self.deliveries > 0
    }

    /// Asks the session to close the connection with `code` and `reason` once everything
    /// in flight is answered (a server shutting down). It takes no further request.
    pub fn close_when_settled(&mut self, code: CloseCode, reason: &'static str) {
        self.close_after.get_or_insert((code, reason));
    }

    /// The idle timeout this session runs with (as last set by `tout` or seen by
    /// [`crate::Service::drive`]).
    pub fn idle_timeout(&self) -> Duration {
        self.state
            .as_ref()
            .map_or(self.idle_timeout, |s| s.idle_timeout)
    }

    /// The logged-in user's name (`None` also while a blocking request holds the state).
    pub fn user(&self) -> Option<&UserName> {
        self.state
            .as_ref()
            .and_then(|s| s.user.as_ref().map(|(name, _)| name))
    }

    /// Ends every file transfer of this session: uploads save their resumable state and
    /// release their path locks, downloads close their files.
    pub fn end_transfers(&mut self) {
        if let Some(state) = &mut self.state
            && !state.transfers.is_empty()
        {
            state.transfers = Transfers::new();
        }
    }

    /// Number of file transfers open on this connection (0 while the state is out).
    pub fn open_transfers(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.transfers.len())
    }
}
