//! Server-side command handling: per-connection session state, permission checks, and the
//! commands themselves.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::Duration;

use vserv_core::commands::{
    self, Access, Command, Credential, KeyAction, RecordSelector, Reply, UserRole,
};
use vserv_core::ledger::LedgerError;
use vserv_core::wire::PROTOCOL_VERSION;
use vserv_core::{
    CloseCode, Connection, Error, ErrorCode, ErrorReply, Event, Fingerprint, Request, Response,
};

use crate::accounts::{AccountError, AccountId, Accounts, PasswordError, User, UserName};
use crate::files::delivery::{self, DeliveryError, HooksConfig, Outgoing};
use crate::files::{
    FileError, FileTree, Target, TransferFailure, Transfers, UploadLocks, UserPath,
    path as file_path,
};
use crate::ledger::{Appended, CheckReport, FeedError, Ledger, NewRecord, PendingAppend};
use crate::limits::{Gate, LoginLimiter, Policy, UnauthenticatedSlot, UnauthenticatedSlots};

/// At most this many consecutive `rput`s of one connection go to the ledger as one group:
/// a pipelining client's next group is then decoded while the one before is committed.
pub const MAX_RPUT_GROUP: usize = 128;

/// Failed logins after which a connection is closed. Logins refused by the backoff (see
/// [`crate::limits`]) count too.
pub const MAX_FAILED_LOGINS: u32 = 3;

/// What the server says about itself.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// Human-readable server name (reported by `hello` and `id`).
    pub name: String,
    /// Fingerprint of the server identity key.
    pub fingerprint: Fingerprint,
}

/// The server's command handler; one instance (cheap to clone) serves every connection.
/// Clones share the login backoff state.
#[derive(Clone)]
pub struct Service {
    info: ServiceInfo,
    accounts: Arc<Accounts>,
    policy: Policy,
    limiter: Arc<LoginLimiter>,
    /// The sessions not logged in, per peer address (shared by every connection).
    unauthenticated: Arc<UnauthenticatedSlots>,
    /// The server's feed; `None` answers the ledger commands with an error.
    ledger: Option<Arc<Ledger>>,
    /// The users' homes; `None` answers the file commands with an error.
    files: Option<Arc<dyn FileTree>>,
    /// The paths being uploaded to, across connections (spec/files.md §3.4).
    upload_locks: UploadLocks,
    /// Whether and how the hooks of inbox folders run (protocol.md §13.5).
    hooks: HooksConfig,
    /// Whether a `send`'s delivery runs on a thread of its own while its connection goes
    /// on ([`Service::with_background_deliveries`]).
    background_deliveries: bool,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Per-connection state: who is logged in, how many logins failed, the idle timeout, the
/// `rput` groups still being committed, the open file transfers. Dropping it (the
/// connection ended) parks its open uploads for a resume and releases their path locks.
#[derive(Debug)]
pub struct Session {
    peer: Option<IpAddr>,
    session_id: Option<[u8; 32]>,
    /// The logged-in user, and the account they logged into: a later account of the same
    /// name has another id, and is not this session's.
    user: Option<(UserName, AccountId)>,
    failed_logins: u32,
    /// The connection's idle timeout as last seen by `drive` (or set by `tout`).
    idle_timeout: Duration,
    /// `tout` changed `idle_timeout`; `drive` applies it to the connection.
    idle_changed: bool,
    /// The session's slot among its address's unauthenticated sessions, held until login
    /// ([`Service::admit_unauthenticated`]).
    unauthenticated: Option<UnauthenticatedSlot>,
    /// A login or logout changed whether the login grace runs; `drive` applies it to the
    /// connection.
    grace: Option<Grace>,
    /// Submitted `rput` groups awaiting their commit, oldest first: request ids, and the
    /// ledger's pending results (`None` without a ledger).
    pending: VecDeque<(Vec<u32>, Option<PendingAppend>)>,
    /// The working directory set by `cd`, and the user who set it (another login starts at
    /// its own home's root again).
    cwd: Option<(UserName, Target)>,
    /// The open uploads and downloads (spec/files.md).
    transfers: Transfers,
    /// `send` requests whose delivery runs on a thread of its own
    /// ([`Service::with_background_deliveries`]): request id, and where its answer comes.
    deliveries: VecDeque<(u32, Receiver<Result<Reply, ErrorReply>>)>,
}

impl Session {
    /// A fresh, anonymous session for a connection from `peer` (`None` if unknown).
    pub fn new(peer: Option<IpAddr>) -> Session {
        Session {
            peer,
            session_id: None,
            user: None,
            failed_logins: 0,
            idle_timeout: vserv_core::Config::default().idle_timeout,
            idle_changed: false,
            unauthenticated: None,
            grace: None,
            pending: VecDeque::new(),
            cwd: None,
            transfers: Transfers::new(),
            deliveries: VecDeque::new(),
        }
    }

    /// Holds `slot` (taken for this connection with [`Service::admit_unauthenticated`])
    /// until the session logs in.
    pub fn hold_unauthenticated(&mut self, slot: UnauthenticatedSlot) {
        self.unauthenticated = Some(slot);
    }

    /// Gives back the session's unauthenticated slot, if it holds one: its connection
    /// ended (for a runtime that keeps the session after that).
    pub fn release_unauthenticated(&mut self) {
        self.unauthenticated = None;
    }

    /// Whether deliveries of this session are still running on their threads (their
    /// responses are sent by [`Service::complete`] once they end).
    pub fn delivering(&self) -> bool {
        !self.deliveries.is_empty()
    }

    /// Whether `rput` groups of this session are still being committed (their responses
    /// are sent by [`Service::complete`]).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The idle timeout this session runs with (as last applied by [`Service::drive`]).
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The logged-in user's name.
    pub fn user(&self) -> Option<&UserName> {
        self.user.as_ref().map(|(name, _)| name)
    }

    /// Ends every file transfer of this session: uploads save their resumable state and
    /// release their path locks, downloads close their files.
    pub fn end_transfers(&mut self) {
        if !self.transfers.is_empty() {
            self.transfers = Transfers::new();
        }
    }

    /// Number of file transfers open on this connection.
    pub fn open_transfers(&self) -> usize {
        self.transfers.len()
    }
}

impl Drop for Session {
    /// Waits for the session's deliveries to end (their records settled), so nothing of a
    /// finished connection keeps running behind the server's back.
    fn drop(&mut self) {
        for (_, answer) in self.deliveries.drain(..) {
            let _ = answer.recv();
        }
    }
}

/// A change of the connection's login grace (`vserv_core::Config::login_grace`).
#[derive(Debug, Clone, Copy)]
enum Grace {
    /// Logged in: the grace ends.
    End,
    /// Anonymous again: the grace starts again.
    Restart,
}

/// The outcome of one request.
struct Handled {
    result: Result<Reply, ErrorReply>,
    close: Option<(CloseCode, &'static str)>,
}

/// What [`Service::handle`] decided: an answer, an `rput` record to append (in a group
/// with the connection's other pipelined `rput`s), or a delivery running on its own thread
/// whose answer comes later.
enum Outcome {
    Done(Handled),
    Append(NewRecord),
    Later(Receiver<Result<Reply, ErrorReply>>),
}

impl Outcome {
    /// The answer, appending a waiting record on its own.
    fn finish(self, service: &Service) -> Handled {
        match self {
            Outcome::Done(handled) => handled,
            Outcome::Later(answer) => answer
                .recv()
                .unwrap_or_else(|_| Err(lost_delivery()))
                .into(),
            Outcome::Append(record) => match &service.ledger {
                Some(ledger) => appended_reply(
                    ledger
                        .append_batch(vec![record])
                        .pop()
                        .unwrap_or(Err(FeedError::Corrupt("append lost its result".into()))),
                )
                .into(),
                None => Err(no_ledger()).into(),
            },
        }
    }
}

impl From<Result<Reply, ErrorReply>> for Handled {
    fn from(result: Result<Reply, ErrorReply>) -> Self {
        Handled {
            result,
            close: None,
        }
    }
}

/// The error reply for `e`: its own message under `code`, or, for a failure of the server's
/// storage (`None`), a generic message with the details going to the log.
fn error_reply(code: Option<ErrorCode>, e: &dyn std::fmt::Display, what: &str) -> ErrorReply {
    match code {
        Some(code) => ErrorReply::new(code, e.to_string()),
        None => {
            tracing::error!(error = %e, "{what} failed");
            ErrorReply::new(
                ErrorCode::Internal,
                "the server could not complete the request",
            )
        }
    }
}

fn account_error(e: AccountError) -> ErrorReply {
    let code = match &e {
        AccountError::BadPassword(PasswordError::NoMemory(_)) => None,
        AccountError::BadName(_) | AccountError::BadPassword(_) | AccountError::BadKey => {
            Some(ErrorCode::BadArguments)
        }
        AccountError::NoSuchUser(_) | AccountError::NoSuchKey(_) => Some(ErrorCode::NotFound),
        AccountError::Exists(_) | AccountError::KeyExists => Some(ErrorCode::Conflict),
        AccountError::LastAdmin(_)
        | AccountError::AlreadyInitialised
        | AccountError::TooManyKeys => Some(ErrorCode::Forbidden),
        AccountError::WrongPassword => Some(ErrorCode::LoginFailed),
        // Not the client's fault and nothing broken: said as it is, not logged as an error.
        AccountError::Busy(_) => Some(ErrorCode::Internal),
        _ => None,
    };
    error_reply(code, &e, "account storage")
}

fn feed_error(e: FeedError) -> ErrorReply {
    let code = match &e {
        FeedError::Invalid(LedgerError::BodyTooLarge { .. }) => Some(ErrorCode::TooLarge),
        FeedError::Invalid(_) => Some(ErrorCode::BadArguments),
        FeedError::Duplicate { .. } => Some(ErrorCode::Conflict),
        _ => None,
    };
    error_reply(code, &e, "ledger storage")
}

fn no_ledger() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Internal,
        "no ledger: this server does not keep one",
    )
}

fn appended_reply(result: Result<Appended, FeedError>) -> Result<Reply, ErrorReply> {
    result
        .map(|a| Reply::Appended {
            seq: a.seq,
            hash: a.hash,
        })
        .map_err(feed_error)
}

/// Sends `response`; one too large for a record is replaced by a `TooLarge` error.
fn respond(conn: &mut Connection, response: &Response) -> Result<(), Error> {
    match conn.respond(response) {
        Err(Error::PayloadTooLarge { .. }) => conn.respond(&Response {
            id: response.id,
            result: Err(ErrorReply::new(
                ErrorCode::TooLarge,
                "reply too large for one record",
            )),
        }),
        other => other,
    }
}

fn file_error(e: FileError) -> ErrorReply {
    let code = match &e {
        FileError::Path(_)
        | FileError::NotADirectory(_)
        | FileError::IsADirectory(_)
        | FileError::IntoItself { .. }
        | FileError::Root => Some(ErrorCode::BadArguments),
        FileError::NotFound(_) => Some(ErrorCode::NotFound),
        FileError::Exists(_) | FileError::NotEmpty(_) => Some(ErrorCode::Conflict),
        FileError::Symlink(_) => Some(ErrorCode::Forbidden),
        FileError::QuotaExceeded { .. } | FileError::DiskFull { .. } => Some(ErrorCode::TooLarge),
        FileError::Io { .. } => None,
    };
    error_reply(code, &e, "file storage")
}

fn transfer_failure(e: TransferFailure) -> ErrorReply {
    match e {
        TransferFailure::Transfer(t) => t.to_reply(),
        TransferFailure::File(f) => file_error(f),
        busy @ TransferFailure::Busy(_) => ErrorReply::new(ErrorCode::Conflict, busy.to_string()),
    }
}

/// One page of a directory listing: the entries named `from` or later (all of them
/// without `from`), directories only with `dirs_only`, at most `limit` of them and no more
/// than fit one response ([`commands::LS_ENTRY_BUDGET`]).
fn list_page(
    entries: Vec<commands::DirEntry>,
    dirs_only: bool,
    from: Option<&str>,
    limit: usize,
) -> Reply {
    let mut budget = commands::LS_ENTRY_BUDGET;
    let mut page = Vec::new();
    let mut next = None;
    let matching = entries
        .into_iter()
        .filter(|e| !dirs_only || e.kind == commands::FileKind::Dir)
        .filter(|e| from.is_none_or(|f| e.name.as_str() >= f));
    for entry in matching {
        let cost = 4 + entry.encoded_len();
        if page.len() >= limit || cost > budget {
            next = Some(entry.name);
            break;
        }
        budget -= cost;
        page.push(entry);
    }
    Reply::Listing {
        entries: page,
        next,
    }
}

fn delivery_error(e: DeliveryError) -> ErrorReply {
    let e = match e {
        DeliveryError::File(f) => return file_error(f),
        other => other,
    };
    let code = match &e {
        DeliveryError::File(_) => ErrorCode::Internal,
        DeliveryError::NoFolder { .. } => ErrorCode::NotFound,
        DeliveryError::BadConfig { .. } | DeliveryError::NoName(_) => ErrorCode::Conflict,
        DeliveryError::NotAllowed { .. } | DeliveryError::Refused(_) => ErrorCode::Forbidden,
        DeliveryError::Mismatch(_) => ErrorCode::Integrity,
        DeliveryError::Quota => ErrorCode::TooLarge,
    };
    ErrorReply::new(code, e.to_string())
}

/// One page of an inbox listing, like [`list_page`] with [`commands::Delivery`] entries.
fn inbox_page(entries: Vec<commands::Delivery>, from: Option<&str>, limit: usize) -> Reply {
    let mut budget = commands::LS_ENTRY_BUDGET;
    let mut page = Vec::new();
    let mut next = None;
    for entry in entries
        .into_iter()
        .filter(|e| from.is_none_or(|f| e.name.as_str() >= f))
    {
        let cost = 4 + entry.to_field().len();
        if page.len() >= limit || cost > budget {
            next = Some(entry.name);
            break;
        }
        budget -= cost;
        page.push(entry);
    }
    Reply::Deliveries {
        entries: page,
        next,
    }
}

/// The answer of a delivery whose thread ended without one (it panicked).
fn lost_delivery() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Internal,
        "the delivery stopped without an answer",
    )
}

fn not_found(message: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::NotFound, message)
}

impl Service {
    /// A service describing itself with `info`, keeping users in `accounts`, with the
    /// default [`Policy`].
    pub fn new(info: ServiceInfo, accounts: Arc<Accounts>) -> Self {
        Self::with_policy(info, accounts, Policy::default())
    }

    /// Like [`Service::new`] with the given abuse limits and `tout` bounds. The per-user
    /// login backoff is kept in the accounts' store (see [`crate::limits`]).
    pub fn with_policy(info: ServiceInfo, accounts: Arc<Accounts>, policy: Policy) -> Self {
        let limiter = LoginLimiter::new(accounts.store(), policy.login);
        Service {
            info,
            accounts,
            unauthenticated: UnauthenticatedSlots::new(policy.max_unauthenticated_per_ip),
            policy,
            limiter,
            ledger: None,
            files: None,
            upload_locks: UploadLocks::new(),
            hooks: HooksConfig::default(),
            background_deliveries: false,
        }
    }

    /// This service with `files` as the users' homes (the file commands). Without one,
    /// those commands are answered with [`ErrorCode::Internal`] "no file tree".
    pub fn with_files(mut self, files: Arc<dyn FileTree>) -> Self {
        self.files = Some(files);
        self
    }

    /// This service running the hooks of inbox folders as `hooks` says (by default they
    /// are disabled: the allow lists alone decide deliveries).
    pub fn with_hooks(mut self, hooks: HooksConfig) -> Self {
        self.hooks = hooks;
        self
    }

    /// This service running each `send`'s slow part (its `on_meta` hook, the copy, its
    /// `on_received` hook) on a thread of its own, for runtimes that drive a connection
    /// with [`Service::drive_pipelined`] and [`Service::complete`]: the connection's other
    /// requests are answered meanwhile, and the `send` is answered when its delivery ends
    /// (responses may come in any order, protocol.md §12.3). The quick checks (recipient,
    /// path, allow list, quota, the file opened and a `pending` record) still come first,
    /// so a request sent after the `send` cannot change what it delivers. Off by default:
    /// deliveries then run inside the request, as the simulator needs.
    pub fn with_background_deliveries(mut self) -> Self {
        self.background_deliveries = true;
        self
    }

    /// This service with `ledger` as the server's feed (the `r*` commands). Without one,
    /// those commands are answered with [`ErrorCode::Internal`] "no ledger".
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// The server's feed, if it keeps one.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.ledger.as_ref()
    }

    /// The abuse limits and bounds in force (the accept loops read the connection rate
    /// limit here).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A slot for one more session from `peer` that has not logged in, or `None` when
    /// that address holds [`Policy::max_unauthenticated_per_ip`] already: the runtime then
    /// refuses the connection as busy. A runtime takes it when it accepts a connection and
    /// gives it to the session ([`Session::hold_unauthenticated`]), which frees it at login.
    pub fn admit_unauthenticated(&self, peer: IpAddr) -> Option<UnauthenticatedSlot> {
        self.unauthenticated.take(peer)
    }

    /// The unauthenticated sessions of every address.
    pub fn unauthenticated(&self) -> &Arc<UnauthenticatedSlots> {
        &self.unauthenticated
    }

    /// The login backoff state.
    pub fn login_limiter(&self) -> &Arc<LoginLimiter> {
        &self.limiter
    }

    /// What this server reports about itself.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// The accounts this service uses.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Drains the connection's events and answers every request on it. Call after each
    /// `handle_input`/`handle_timeout`, before draining `poll_transmit` and re-reading
    /// `poll_timeout` (`tout` changes the idle deadline). `now_ms` is the wall clock in Unix
    /// milliseconds (ledger timestamps; account timestamps and the login backoff use its
    /// seconds).
    ///
    /// Consecutive `rput` requests are appended as one group ([`Ledger::submit`]), so a
    /// client pipelining many shares one durable commit; any other request first waits for
    /// the `rput`s before it, so every request sees the effects of those sent earlier and
    /// responses leave in request order. The user is re-read for the first `rput` of a
    /// group, not for each one: a user disabled meanwhile by another connection is refused
    /// from the next group on. Returns once every response is queued on `conn`.
    pub fn drive(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        now_ms: u64,
    ) -> Result<(), Error> {
        self.drive_pipelined(session, conn, now_ms)?;
        self.finish_pending(session, conn)
    }

    /// Like [`Service::drive`], but returns without waiting for the last group of `rput`s
    /// to be committed: the caller may read and drive the connection's next input while it
    /// is (its `rput`s join the next commit), and calls [`Service::complete`] (waiting) when
    /// there is nothing else to do while [`Session::has_pending`]. The responses still leave
    /// in request order.
    ///
    /// Once the connection is closed, the session's file transfers end at once (resumable
    /// uploads save their state, path locks are released) and its unauthenticated slot is
    /// given back, whether or not the runtime keeps the session around.
    pub fn drive_pipelined(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        now_ms: u64,
    ) -> Result<(), Error> {
        let driven = self.drive_events(session, conn, now_ms);
        if conn.is_closed() {
            if self.account_was_deleted(session) {
                // Its home was archived: nothing may be parked by name into a new account.
                std::mem::take(&mut session.transfers).abandon_all();
            } else {
                session.end_transfers();
            }
            session.release_unauthenticated();
        }
        driven
    }

    /// Whether the session has transfers and the account it logged into no longer exists
    /// (deleted, perhaps re-created under the same name). A store failure answers no.
    fn account_was_deleted(&self, session: &Session) -> bool {
        if session.transfers.is_empty() {
            return false;
        }
        match &session.user {
            Some((name, id)) => match self.accounts.get(name) {
                Ok(Some(user)) => user.id != *id,
                Ok(None) => true,
                Err(_) => false,
            },
            None => false,
        }
    }

    fn drive_events(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        now_ms: u64,
    ) -> Result<(), Error> {
        let mut appends: Vec<(u32, NewRecord)> = Vec::new();
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request(request) => {
                    session.idle_timeout = conn.idle_timeout();
                    if request.name == "rput" {
                        let outcome = match appends.last() {
                            // The request before was an `rput` of this input that passed
                            // the access check: same user, so no need to re-read it.
                            Some((_, previous)) => {
                                Self::next_rput(previous.author.clone(), &request, now_ms)
                            }
                            None => self.handle(session, &request, now_ms),
                        };
                        if let Outcome::Append(record) = outcome {
                            appends.push((request.id, record));
                            if appends.len() >= MAX_RPUT_GROUP {
                                self.submit(session, &mut appends);
                            }
                            continue;
                        }
                        self.submit(session, &mut appends);
                        self.complete(session, conn, true)?;
                        self.send(session, conn, &request, outcome.finish(self))?;
                    } else {
                        self.submit(session, &mut appends);
                        self.complete(session, conn, true)?;
                        match self.handle(session, &request, now_ms) {
                            Outcome::Later(answer) => {
                                session.deliveries.push_back((request.id, answer));
                            }
                            outcome => {
                                let handled = outcome.finish(self);
                                self.send(session, conn, &request, handled)?;
                            }
                        }
                    }
                }
                Event::Connected { session_id, .. } => session.session_id = Some(session_id),
                Event::Closed(close) => {
                    tracing::debug!(code = %close.code, reason = %close.reason, "peer closed")
                }
                Event::ServerKey(_) | Event::Response(_) => {}
            }
        }
        self.submit(session, &mut appends);
        self.complete(session, conn, false)
    }

    /// Queues the answer to `request` on `conn` (and closes the connection if asked).
    fn send(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        request: &Request,
        handled: Handled,
    ) -> Result<(), Error> {
        let response = Response {
            id: request.id,
            result: handled.result.map(|r| r.to_fields()),
        };
        if std::mem::take(&mut session.idle_changed) {
            conn.set_idle_timeout(session.idle_timeout)?;
        }
        match session.grace.take() {
            Some(Grace::End) => conn.end_login_grace(),
            Some(Grace::Restart) => conn.restart_login_grace(),
            None => {}
        }
        tracing::debug!(id = request.id, command = %request.name, ok = response.result.is_ok(), "request");
        respond(conn, &response)?;
        if let Some((code, reason)) = handled.close {
            // Every request is answered before the close.
            self.finish_pending(session, conn)?;
            conn.close(code, reason);
        }
        Ok(())
    }

    /// Hands the waiting `rput` records to the ledger as one group.
    fn submit(&self, session: &mut Session, appends: &mut Vec<(u32, NewRecord)>) {
        if appends.is_empty() {
            return;
        }
        let (ids, records): (Vec<u32>, Vec<NewRecord>) =
            std::mem::take(appends).into_iter().unzip();
        let pending = self.ledger.as_ref().map(|ledger| ledger.submit(records));
        session.pending.push_back((ids, pending));
    }

    /// Waits at most `timeout` for the session's oldest `rput` group to be committed; if it
    /// was, queues on `conn` its responses and those of any later group already committed.
    /// Returns whether the oldest group was completed.
    pub fn complete_within(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        timeout: Duration,
    ) -> Result<bool, Error> {
        let Some((ids, pending)) = session.pending.pop_front() else {
            return Ok(false);
        };
        let results = match pending.map(|p| p.wait_timeout(timeout)) {
            None => Vec::new(),
            Some(Ok(results)) => results,
            Some(Err(pending)) => {
                session.pending.push_front((ids, Some(pending)));
                return Ok(false);
            }
        };
        Self::send_appended(conn, ids, results)?;
        self.complete(session, conn, false)?;
        Ok(true)
    }

    fn send_appended(
        conn: &mut Connection,
        ids: Vec<u32>,
        results: crate::ledger::AppendResults,
    ) -> Result<(), Error> {
        let mut results = results.into_iter();
        for id in ids {
            let result = match results.next() {
                Some(result) => appended_reply(result),
                None => Err(no_ledger()),
            };
            tracing::debug!(id, command = "rput", ok = result.is_ok(), "request");
            respond(
                conn,
                &Response {
                    id,
                    result: result.map(|r| r.to_fields()),
                },
            )?;
        }
        Ok(())
    }

    /// Queues on `conn` the responses of the session's committed `rput` groups, oldest
    /// first (with `wait`, waits until every group is committed), and those of its
    /// deliveries that ended (never waiting for one).
    pub fn complete(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        wait: bool,
    ) -> Result<(), Error> {
        self.complete_appends(session, conn, wait)?;
        Self::complete_deliveries(session, conn, false)
    }

    /// Waits for everything of the session still running (its `rput` groups, its
    /// deliveries) and queues their responses on `conn`.
    pub fn finish_pending(
        &self,
        session: &mut Session,
        conn: &mut Connection,
    ) -> Result<(), Error> {
        self.complete_appends(session, conn, true)?;
        Self::complete_deliveries(session, conn, true)
    }

    /// Queues the answers of the deliveries that ended (with `wait`, of every delivery,
    /// once it ends).
    fn complete_deliveries(
        session: &mut Session,
        conn: &mut Connection,
        wait: bool,
    ) -> Result<(), Error> {
        let mut running = VecDeque::new();
        while let Some((id, answer)) = session.deliveries.pop_front() {
            let result = if wait {
                answer.recv().unwrap_or_else(|_| Err(lost_delivery()))
            } else {
                match answer.try_recv() {
                    Ok(result) => result,
                    Err(TryRecvError::Empty) => {
                        running.push_back((id, answer));
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => Err(lost_delivery()),
                }
            };
            tracing::debug!(id, command = "send", ok = result.is_ok(), "request");
            let response = Response {
                id,
                result: result.map(|r| r.to_fields()),
            };
            if let Err(e) = respond(conn, &response) {
                running.append(&mut session.deliveries);
                session.deliveries = running;
                return Err(e);
            }
        }
        session.deliveries = running;
        Ok(())
    }

    fn complete_appends(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        wait: bool,
    ) -> Result<(), Error> {
        while let Some((ids, pending)) = session.pending.pop_front() {
            let results = match pending {
                None => Vec::new(),
                Some(pending) if wait => pending.wait(),
                Some(pending) => match pending.try_take() {
                    Ok(results) => results,
                    Err(pending) => {
                        session.pending.push_front((ids, Some(pending)));
                        return Ok(());
                    }
                },
            };
            Self::send_appended(conn, ids, results)?;
        }
        Ok(())
    }

    /// Answers one request in `session`: the response, and whether (and how) to close the
    /// connection after sending it. Never fails: bad requests get typed error responses.
    /// `now_ms` is the wall clock in Unix milliseconds.
    pub fn answer(
        &self,
        session: &mut Session,
        request: &Request,
        now_ms: u64,
    ) -> (Response, Option<(CloseCode, &'static str)>) {
        let handled = self.handle(session, request, now_ms).finish(self);
        (
            Response {
                id: request.id,
                result: handled.result.map(|r| r.to_fields()),
            },
            handled.close,
        )
    }

    /// The logged-in user as stored now. A user disabled since login is logged out (the
    /// session goes on, anonymous); an account deleted since login (gone, or replaced by a
    /// new account of the same name, which has another [`AccountId`]) ends the session: the
    /// answer is this error, and the connection is closed after it.
    fn current_user(&self, session: &mut Session) -> Result<Option<User>, Box<Handled>> {
        let Some((name, id)) = session.user.clone() else {
            return Ok(None);
        };
        match self.accounts.get(&name) {
            Err(e) => Err(Box::new(Err(account_error(e)).into())),
            Ok(Some(user)) if user.id == id && user.enabled => Ok(Some(user)),
            Ok(Some(user)) if user.id == id => match self.anonymous_again(session) {
                Ok(()) => Ok(None),
                Err(ended) => Err(Box::new(Handled {
                    result: Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        format!("the account '{name}' is disabled; this session ends"),
                    )),
                    close: Some(ended),
                })),
            },
            Ok(_) => {
                session.user = None;
                std::mem::take(&mut session.transfers).abandon_all();
                session.cwd = None;
                tracing::info!(target: "vserv::audit", user = %name, peer = ?session.peer,
                    "session of a deleted account ended");
                Err(Box::new(Handled {
                    result: Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        format!("the account '{name}' was deleted; this session ends"),
                    )),
                    close: Some((CloseCode::Normal, "account deleted")),
                }))
            }
        }
    }

    /// The logged-in session becomes anonymous (logout, or its user was disabled): its
    /// transfers end, the login grace starts again, and it takes an unauthenticated slot of
    /// its address again; if none is free, the close to send.
    fn anonymous_again(&self, session: &mut Session) -> Result<(), (CloseCode, &'static str)> {
        session.user = None;
        // Transfers belong to the user who opened them (uploads are parked).
        session.transfers = Transfers::new();
        session.grace = Some(Grace::Restart);
        if session.unauthenticated.is_none()
            && let Some(peer) = session.peer
        {
            session.unauthenticated = Some(self.admit_unauthenticated(peer).ok_or((
                CloseCode::Busy,
                "too many unauthenticated sessions from this address",
            ))?);
        }
        Ok(())
    }

    fn handle(&self, session: &mut Session, request: &Request, now_ms: u64) -> Outcome {
        let now = now_ms / 1000;
        let cmd = match Command::parse(request) {
            Ok(cmd) => cmd,
            Err(e) => return Outcome::Done(Err(e).into()),
        };
        if matches!(cmd, Command::Quit) {
            // Answered whoever is logged in, even a session whose account is gone.
            return Outcome::Done(Handled {
                result: Ok(Reply::Bye),
                close: Some((CloseCode::Normal, "bye")),
            });
        }
        let user = match self.current_user(session) {
            Ok(user) => user,
            Err(ended) => return Outcome::Done(*ended),
        };
        let allowed = match (cmd.access(), &user) {
            (Access::Anyone, _) => true,
            (Access::User, Some(_)) => true,
            (Access::Admin, Some(u)) => u.role == UserRole::Admin,
            (_, None) => false,
        };
        if !allowed {
            let why = if user.is_none() {
                "log in first"
            } else {
                "this command needs an admin"
            };
            return Outcome::Done(
                Err(ErrorReply::new(
                    ErrorCode::Forbidden,
                    format!("'{}': {why}", cmd.name()),
                ))
                .into(),
            );
        }
        Outcome::Done(match cmd {
            Command::Login {
                user: name,
                credential,
            } => self.login(session, &name, &credential, now),
            Command::Logout if session.user.is_none() => Ok(Reply::Done).into(),
            Command::Logout => Handled {
                close: self.anonymous_again(session).err(),
                result: Ok(Reply::Done),
            },
            Command::Rput { .. } => {
                let author = user.map(|u| u.name.to_string()).unwrap_or_default();
                return Self::rput_outcome(author, cmd, now_ms);
            }
            Command::Send(args) if self.background_deliveries => match &user {
                Some(user) => match self.deliver_later(session, user, args, now) {
                    Ok(answer) => return Outcome::Later(answer),
                    Err(e) => Err(e).into(),
                },
                None => Err(ErrorReply::new(ErrorCode::Forbidden, "log in first")).into(),
            },
            cmd => self.execute(session, user, cmd, now).into(),
        })
    }

    /// An `rput` by `author` to append, or the error if `request` is not a valid `rput`.
    fn next_rput(author: String, request: &Request, now_ms: u64) -> Outcome {
        match Command::parse(request) {
            Ok(cmd) => Self::rput_outcome(author, cmd, now_ms),
            Err(e) => Outcome::Done(Err(e).into()),
        }
    }

    fn rput_outcome(author: String, cmd: Command, now_ms: u64) -> Outcome {
        match cmd {
            Command::Rput {
                kind,
                record_id,
                body,
            } => Outcome::Append(NewRecord {
                author,
                kind,
                record_id,
                body,
                timestamp: now_ms,
            }),
            _ => Outcome::Done(Err(ErrorReply::new(ErrorCode::Internal, "not an rput")).into()),
        }
    }

    /// A failed login's answer: counts toward the connection's limit, closes at it.
    fn login_refused(session: &mut Session, message: String) -> Handled {
        let close = (session.failed_logins >= MAX_FAILED_LOGINS)
            .then_some((CloseCode::Normal, "too many failed logins"));
        Handled {
            result: Err(ErrorReply::new(ErrorCode::LoginFailed, message)),
            close,
        }
    }

    fn login(
        &self,
        session: &mut Session,
        name: &str,
        credential: &Credential,
        now: u64,
    ) -> Handled {
        let normalised = UserName::parse(name).ok();
        let attempt = match self.limiter.begin(normalised.as_ref(), session.peer, now) {
            Ok(Gate::Open(attempt)) => attempt,
            Ok(Gate::Wait(secs)) => {
                session.failed_logins += 1;
                tracing::warn!(target: "vserv::audit", user = %name.escape_debug(), peer = ?session.peer,
                    retry_after = secs, failures = session.failed_logins, "login refused by backoff");
                return Self::login_refused(
                    session,
                    format!("login failed: too many failed attempts; retry in {secs} s"),
                );
            }
            Err(e) => return Err(account_error(AccountError::Store(e))).into(),
        };
        let checked = match credential {
            Credential::Password(secret) => {
                match self.accounts.check_password(name, secret.expose()) {
                    Err(AccountError::Busy(busy)) => {
                        // Nothing was checked: the attempt counts nowhere (dropped unresolved),
                        // and the answer is the same whether or not the user exists.
                        drop(attempt);
                        tracing::warn!(target: "vserv::audit", user = %name.escape_debug(), peer = ?session.peer,
                            "login refused: password checks busy");
                        return Err(ErrorReply::new(
                            ErrorCode::LoginFailed,
                            format!("login failed: {busy}"),
                        ))
                        .into();
                    }
                    other => other,
                }
            }
            Credential::Key { public, signature } => match session.session_id {
                Some(sid) => self.accounts.check_key(name, public, signature, &sid),
                None => Ok(None),
            },
        };
        match checked {
            Ok(Some(user)) => {
                attempt.succeeded();
                tracing::info!(target: "vserv::audit", user = %user.name, peer = ?session.peer, "login");
                self.accounts.record_login(&user.name, now);
                if session.user.as_ref() != Some(&(user.name.clone(), user.id)) {
                    session.transfers = Transfers::new();
                }
                session.user = Some((user.name.clone(), user.id));
                session.failed_logins = 0;
                session.unauthenticated = None;
                session.grace = Some(Grace::End);
                Ok(Reply::User {
                    name: user.name.to_string(),
                    role: user.role,
                })
                .into()
            }
            Ok(None) => {
                let exists = normalised
                    .as_ref()
                    .is_some_and(|n| self.accounts.get(n).is_ok_and(|u| u.is_some()));
                attempt.failed(exists, now);
                session.failed_logins += 1;
                tracing::warn!(target: "vserv::audit", user = %name.escape_debug(), peer = ?session.peer,
                    failures = session.failed_logins, "login failed");
                Self::login_refused(
                    session,
                    "login failed: unknown user or wrong credentials".to_owned(),
                )
            }
            Err(e) => Err(account_error(e)).into(),
        }
    }

    /// The `r*` commands but `rput` (appended by `drive`, in groups). `me` is the logged-in
    /// user (the access check ran already).
    fn ledger_command(
        &self,
        me: &str,
        cmd: Command,
        audit: &dyn Fn(&str, &str),
    ) -> Result<Reply, ErrorReply> {
        let Some(ledger) = &self.ledger else {
            return Err(no_ledger());
        };
        let found = |e: Option<vserv_core::ledger::Entry>, what: &str| {
            e.map(Reply::Record).ok_or_else(|| not_found(what))
        };
        match cmd {
            Command::Rget(RecordSelector::Seq(seq)) => found(
                ledger.by_seq(seq).map_err(feed_error)?,
                "no entry at that seq",
            ),
            Command::Rget(RecordSelector::Id(id)) => found(
                ledger.by_id(&id).map_err(feed_error)?,
                "no record with that id",
            ),
            Command::Rget(RecordSelector::Hash(hash)) => found(
                ledger.by_hash(&hash).map_err(feed_error)?,
                "no entry with that hash",
            ),
            Command::Rhave { record_id } => Ok(Reply::Have(
                ledger.seq_of_id(&record_id).map_err(feed_error)?.is_some(),
            )),
            Command::Rabs { pos } => found(
                ledger.by_position(pos).map_err(feed_error)?,
                "no entry at that position",
            ),
            Command::Rsize { kind: None } => Ok(Reply::Count(ledger.size().map_err(feed_error)?)),
            Command::Rsize { kind: Some(kind) } => Ok(Reply::Count(
                ledger.size_of_kind(&kind).map_err(feed_error)?,
            )),
            Command::Rcount { kind, range } => Ok(Reply::Count(
                ledger
                    .count(&kind, range.from, range.to)
                    .map_err(feed_error)?,
            )),
            Command::Rlist { kind, range, limit } => {
                let limit = limit.unwrap_or(commands::RLIST_DEFAULT_LIMIT);
                let page = ledger
                    .list(
                        kind.as_deref(),
                        range.from,
                        range.to,
                        usize::try_from(limit).unwrap_or(usize::MAX),
                    )
                    .map_err(feed_error)?;
                Ok(Reply::Page {
                    entries: page.entries,
                    next: page.next,
                })
            }
            Command::Rhead => ledger
                .head()
                .map_err(feed_error)?
                .map(Reply::Head)
                .ok_or_else(|| not_found("no head: the ledger is empty")),
            Command::Rcheck { range } => {
                let report = match range {
                    None => ledger.check(),
                    Some(r) => ledger.check_range(r.from, r.to, &mut |_| {}),
                }
                .map_err(|e| feed_error(FeedError::Store(e)))?;
                audit("rcheck", me);
                Ok(match report {
                    CheckReport::Ok { seq } => Reply::ChainOk { seq },
                    CheckReport::Bad { seq, reason } => {
                        tracing::warn!(target: "vserv::audit", ?seq, %reason, "rcheck found a bad ledger");
                        Reply::ChainBad { seq, reason }
                    }
                })
            }
            _ => Err(ErrorReply::new(ErrorCode::Internal, "not a ledger command")),
        }
    }

    /// The file commands (protocol.md §13.4) for the logged-in `user`.
    fn files_command(
        &self,
        session: &mut Session,
        user: &User,
        cmd: Command,
    ) -> Result<Reply, ErrorReply> {
        let Some(files) = &self.files else {
            return Err(ErrorReply::new(
                ErrorCode::Internal,
                "no file tree: this server does not keep files",
            ));
        };
        let me = &user.name;
        let cwd = match &session.cwd {
            Some((by, cwd)) if by == me => cwd.clone(),
            _ => Target {
                owner: me.clone(),
                path: UserPath::root(),
            },
        };
        // Resolves a client path, and checks that `user` may enter that home.
        let target = |input: &str| -> Result<Target, ErrorReply> {
            let t = file_path::resolve(me, &cwd, input).map_err(|e| file_error(e.into()))?;
            if &t.owner != me {
                if user.role != UserRole::Admin {
                    return Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        "only admins may enter another user's home",
                    ));
                }
                if self
                    .accounts
                    .get(&t.owner)
                    .map_err(account_error)?
                    .is_none()
                {
                    return Err(not_found(&format!("no user '{}'", t.owner)));
                }
            }
            Ok(t)
        };
        let fail = |e: FileError| file_error(e);
        let dirs_only = matches!(cmd, Command::Lsd(_));
        Ok(match cmd {
            Command::Ls(page) | Command::Lsd(page) => {
                let dir = match &page.dir {
                    Some(d) => target(d)?,
                    None => cwd,
                };
                let entries = files.list(&dir.owner, &dir.path).map_err(fail)?;
                let limit = usize::try_from(page.limit.unwrap_or(commands::LS_DEFAULT_LIMIT))
                    .unwrap_or(usize::MAX);
                list_page(entries, dirs_only, page.from.as_deref(), limit)
            }
            Command::Cd { dir } => {
                let t = target(&dir)?;
                let stat = files.stat(&t.owner, &t.path).map_err(fail)?;
                if stat.kind != commands::FileKind::Dir {
                    return Err(fail(FileError::NotADirectory(t.display_for(me))));
                }
                let shown = t.display_for(me);
                session.cwd = Some((me.clone(), t));
                Reply::Cwd(shown)
            }
            Command::Pwd => Reply::Cwd(cwd.display_for(me)),
            Command::Stat { path } => {
                let t = target(&path)?;
                Reply::Stat(files.stat(&t.owner, &t.path).map_err(fail)?)
            }
            Command::Mkdir { path } => {
                let t = target(&path)?;
                files.mkdir(&t.owner, &t.path).map_err(fail)?;
                Reply::Done
            }
            Command::Rmdir { path } => {
                let t = target(&path)?;
                files.rmdir(&t.owner, &t.path).map_err(fail)?;
                Reply::Done
            }
            Command::Del { path } => {
                let t = target(&path)?;
                files.delete_file(&t.owner, &t.path).map_err(fail)?;
                Reply::Done
            }
            Command::Mv { from, to } => {
                let (from, to) = (target(&from)?, target(&to)?);
                if from.owner != to.owner {
                    return Err(ErrorReply::new(
                        ErrorCode::BadArguments,
                        "cannot move between homes",
                    ));
                }
                files
                    .rename(&from.owner, &from.path, &to.path)
                    .map_err(fail)?;
                Reply::Done
            }
            Command::Fopen(args) => {
                let t = target(&args.path)?;
                let shown = t.display_for(me);
                Reply::Opened(
                    session
                        .transfers
                        .fopen(
                            files.as_ref(),
                            &self.upload_locks,
                            &t.owner,
                            &t.path,
                            &shown,
                            args.size,
                            args.resume,
                        )
                        .map_err(transfer_failure)?,
                )
            }
            Command::Fput { .. } => {
                let Some(args) = cmd.fput_args() else {
                    return Err(ErrorReply::new(ErrorCode::Internal, "not an fput"));
                };
                session.transfers.fput(&args).map_err(transfer_failure)?;
                Reply::Done
            }
            Command::Fdone(args) => Reply::Uploaded(
                session
                    .transfers
                    .fdone(files.as_ref(), &args)
                    .map_err(transfer_failure)?,
            ),
            Command::Fget(args) => {
                let t = target(&args.path)?;
                Reply::Download(
                    session
                        .transfers
                        .fget(files.as_ref(), &t.owner, &t.path)
                        .map_err(transfer_failure)?,
                )
            }
            Command::Fread(args) => {
                Reply::Data(session.transfers.fread(&args).map_err(transfer_failure)?)
            }
            Command::Fclose(args) => {
                session
                    .transfers
                    .fclose(args.id)
                    .map_err(transfer_failure)?;
                Reply::Done
            }
            _ => return Err(ErrorReply::new(ErrorCode::Internal, "not a file command")),
        })
    }

    /// `send` and `inbox` (protocol.md §13.5) for the logged-in `user`.
    fn delivery_command(
        &self,
        session: &Session,
        user: &User,
        cmd: Command,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let Some(files) = &self.files else {
            return Err(ErrorReply::new(
                ErrorCode::Internal,
                "no file tree: this server does not keep files",
            ));
        };
        let me = &user.name;
        Ok(match cmd {
            Command::Send(args) => {
                let out = self.outgoing(session, user, args, now)?;
                Reply::Delivered(
                    delivery::deliver(files.as_ref(), &self.upload_locks, &self.hooks, &out)
                        .map_err(delivery_error)?,
                )
            }
            Command::Inbox(page) => {
                let folder = page
                    .dir
                    .as_deref()
                    .unwrap_or(commands::DEFAULT_INBOX_FOLDER);
                let entries =
                    delivery::inbox(files.as_ref(), me, folder).map_err(delivery_error)?;
                let limit = usize::try_from(page.limit.unwrap_or(commands::LS_DEFAULT_LIMIT))
                    .unwrap_or(usize::MAX);
                inbox_page(entries, page.from.as_deref(), limit)
            }
            _ => {
                return Err(ErrorReply::new(
                    ErrorCode::Internal,
                    "not a delivery command",
                ));
            }
        })
    }

    /// What `user`'s `send` asks for, once its recipient exists and its file is one of the
    /// sender's home.
    fn outgoing(
        &self,
        session: &Session,
        user: &User,
        args: commands::SendArgs,
        now: u64,
    ) -> Result<Outgoing, ErrorReply> {
        let me = &user.name;
        let to = UserName::parse(&args.to)
            .map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
        if self.accounts.get(&to).map_err(account_error)?.is_none() {
            return Err(not_found(&format!("no user '{to}'")));
        }
        let cwd = match &session.cwd {
            Some((by, cwd)) if by == me => cwd.clone(),
            _ => Target {
                owner: me.clone(),
                path: UserPath::root(),
            },
        };
        let source = file_path::resolve(me, &cwd, &args.path).map_err(|e| file_error(e.into()))?;
        if &source.owner != me {
            return Err(ErrorReply::new(
                ErrorCode::Forbidden,
                "send delivers files of your own home only",
            ));
        }
        Ok(Outgoing {
            from: me.clone(),
            path: source.path,
            to,
            folder: args
                .folder
                .unwrap_or_else(|| commands::DEFAULT_INBOX_FOLDER.to_owned()),
            note: args.note.unwrap_or_default(),
            time: now,
        })
    }

    /// A `send` whose quick checks pass here and whose delivery then runs on a thread of
    /// its own; where its answer will come.
    fn deliver_later(
        &self,
        session: &Session,
        user: &User,
        args: commands::SendArgs,
        now: u64,
    ) -> Result<Receiver<Result<Reply, ErrorReply>>, ErrorReply> {
        let Some(files) = self.files.clone() else {
            return Err(ErrorReply::new(
                ErrorCode::Internal,
                "no file tree: this server does not keep files",
            ));
        };
        let out = self.outgoing(session, user, args, now)?;
        let prepared = delivery::prepare(files.as_ref(), &out).map_err(delivery_error)?;
        let (locks, hooks) = (self.upload_locks.clone(), self.hooks.clone());
        let (answer, answered) = sync_channel(1);
        std::thread::Builder::new()
            .name("vserv-deliver".into())
            .spawn(move || {
                let result = prepared
                    .run(files.as_ref(), &locks, &hooks)
                    .map(Reply::Delivered)
                    .map_err(delivery_error);
                // The connection may be gone: the delivery is recorded either way.
                let _ = answer.send(result);
            })
            .map_err(|e| {
                // The prepared delivery was dropped with the closure: its record stays
                // `pending` until the next start settles it.
                ErrorReply::new(
                    ErrorCode::Internal,
                    format!("cannot start the delivery: {e}"),
                )
            })?;
        Ok(answered)
    }

    /// Archives `user`'s home as `<name>-<tag>` (see [`FileTree::archive_home`]); a failure
    /// is logged and answered (the account change stands).
    fn archive_home(&self, user: &User, tag: &str) -> Result<(), ErrorReply> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        match files.archive_home(&user.name, tag) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(user = %user.name, error = %e, "could not archive a home");
                Err(ErrorReply::new(
                    ErrorCode::Internal,
                    format!(
                        "the account change was made, but the home of '{}' could not be \
                         archived: {e}",
                        user.name
                    ),
                ))
            }
        }
    }

    /// A new account starts with an empty home: a home left under its name by an earlier
    /// account (deleted before homes were archived, or whose archiving failed) is archived
    /// first, tagged `before-<new account id>`.
    fn clear_leftover_home(&self, created: &User) -> Result<(), ErrorReply> {
        self.archive_home(created, &format!("before-{}", created.id))
    }

    fn execute(
        &self,
        session: &mut Session,
        user: Option<User>,
        cmd: Command,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let me = user
            .as_ref()
            .map(|u| u.name.to_string())
            .unwrap_or_default();
        let audit = |action: &str, target: &str| {
            tracing::info!(target: "vserv::audit", by = %me, action, user = %target, peer = ?session.peer, "admin action");
        };
        let accounts = &self.accounts;
        Ok(match cmd {
            Command::Hello => {
                Reply::Greeting(format!("hello from vserv server '{}'", self.info.name))
            }
            Command::Ver => Reply::Version {
                protocol: PROTOCOL_VERSION,
                software: format!("vserv {}", vserv_core::SOFTWARE_VERSION),
            },
            Command::Id => Reply::Identity {
                name: self.info.name.clone(),
                fingerprint: self.info.fingerprint,
            },
            Command::Help { topic } => Reply::Help(commands::help_text(topic.as_deref())?),
            Command::Ping { payload } => Reply::Pong(payload),
            Command::Whoami => match user {
                Some(u) => Reply::User {
                    name: u.name.to_string(),
                    role: u.role,
                },
                None => Reply::Anonymous,
            },
            Command::Logout => {
                return Err(ErrorReply::new(
                    ErrorCode::Internal,
                    "logout is handled first",
                ));
            }
            Command::Uini {
                user: name,
                password,
            } => {
                if !session.peer.is_some_and(|p| p.is_loopback()) {
                    return Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        "uini is only accepted from the server's own machine (loopback)",
                    ));
                }
                let created = accounts
                    .create_first_admin(&name, password.expose(), now)
                    .map_err(account_error)?;
                audit("uini", created.name.as_str());
                self.clear_leftover_home(&created)?;
                Reply::Done
            }
            Command::Uadd {
                user: name,
                password,
            } => {
                let created = accounts
                    .create(&name, UserRole::User, password.expose(), now)
                    .map_err(account_error)?;
                audit("uadd", created.name.as_str());
                self.clear_leftover_home(&created)?;
                Reply::Done
            }
            Command::Aadd {
                user: name,
                password,
            } => {
                let created = accounts
                    .create(&name, UserRole::Admin, password.expose(), now)
                    .map_err(account_error)?;
                audit("aadd", created.name.as_str());
                self.clear_leftover_home(&created)?;
                Reply::Done
            }
            Command::Udel { user: name } => {
                let deleted = accounts.delete(&name).map_err(account_error)?;
                audit("udel", &name);
                self.archive_home(&deleted, &deleted.id.to_string())?;
                Reply::Done
            }
            Command::Uena {
                user: name,
                enabled,
            } => {
                accounts
                    .set_enabled(&name, enabled)
                    .map_err(account_error)?;
                audit(if enabled { "uena on" } else { "uena off" }, &name);
                Reply::Done
            }
            Command::Ulist { filter } => {
                Reply::Users(accounts.list(filter.as_deref()).map_err(account_error)?)
            }
            Command::Chpass {
                target: None,
                old,
                new,
            } => {
                let old = old.as_ref().map(|o| o.expose());
                accounts
                    .set_password(&me, old, new.expose())
                    .map_err(account_error)?;
                audit("chpass", &me);
                Reply::Done
            }
            Command::Chpass {
                target: Some(name),
                new,
                ..
            } => {
                if user.as_ref().is_none_or(|u| u.role != UserRole::Admin) {
                    return Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        "only admins may set another user's password",
                    ));
                }
                accounts
                    .set_password(&name, None, new.expose())
                    .map_err(account_error)?;
                audit("chpass --for", &name);
                Reply::Done
            }
            Command::Ukey(KeyAction::Add(key)) => {
                accounts.add_key(&me, &key).map_err(account_error)?;
                audit("ukey add", &me);
                Reply::Done
            }
            Command::Ukey(KeyAction::Del(fingerprint)) => {
                accounts
                    .remove_key(&me, &fingerprint)
                    .map_err(account_error)?;
                audit("ukey del", &me);
                Reply::Done
            }
            Command::Ukey(KeyAction::List) => Reply::Keys(
                user.iter()
                    .flat_map(|u| u.keys.iter())
                    .filter_map(|k| vserv_core::ServerKey::from_bytes(k).ok())
                    .map(|k| k.fingerprint())
                    .collect(),
            ),
            Command::Tout { seconds: None } => Reply::IdleTimeout(session.idle_timeout.as_secs()),
            Command::Tout {
                seconds: Some(secs),
            } => {
                let (min, max) = (self.policy.idle_timeout_min, self.policy.idle_timeout_max);
                let wanted = Duration::from_secs(secs);
                if wanted < min || wanted > max || secs == 0 {
                    return Err(ErrorReply::new(
                        ErrorCode::BadArguments,
                        format!(
                            "the idle timeout must be between {} and {} seconds",
                            min.as_secs(),
                            max.as_secs()
                        ),
                    ));
                }
                session.idle_timeout = wanted;
                session.idle_changed = true;
                Reply::IdleTimeout(secs)
            }
            Command::Rget(_)
            | Command::Rhave { .. }
            | Command::Rabs { .. }
            | Command::Rsize { .. }
            | Command::Rcount { .. }
            | Command::Rlist { .. }
            | Command::Rhead
            | Command::Rcheck { .. } => return self.ledger_command(&me, cmd, &audit),
            Command::Ls(_)
            | Command::Lsd(_)
            | Command::Cd { .. }
            | Command::Pwd
            | Command::Stat { .. }
            | Command::Mkdir { .. }
            | Command::Rmdir { .. }
            | Command::Del { .. }
            | Command::Mv { .. }
            | Command::Fopen(_)
            | Command::Fput { .. }
            | Command::Fdone(_)
            | Command::Fget(_)
            | Command::Fread(_)
            | Command::Fclose(_) => {
                let Some(user) = &user else {
                    return Err(ErrorReply::new(ErrorCode::Forbidden, "log in first"));
                };
                return self.files_command(session, user, cmd);
            }
            Command::Send(_) | Command::Inbox(_) => {
                let Some(user) = &user else {
                    return Err(ErrorReply::new(ErrorCode::Forbidden, "log in first"));
                };
                return self.delivery_command(session, user, cmd, now);
            }
            // Answered in `handle`.
            Command::Quit | Command::Login { .. } | Command::Rput { .. } => Reply::Done,
        })
    }
}
