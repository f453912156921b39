//! The drive loop: a connection's events and the session's completions in, responses out,
//! never waiting. Requests are taken one at a time, in order: consecutive `rput`s gather
//! into a group for the ledger's group commit; any other request waits until the `rput`s
//! before it are answered (so it sees their effects and responses leave in request order);
//! a blocking request takes the session's state with it and the session takes nothing else
//! until it comes back. A `send` gives the state back after its quick checks and is answered
//! when its delivery ends, possibly after later requests (protocol.md §12.3).

use std::time::Instant;

use vserv_core::commands::{Command, Reply};
use vserv_core::{CloseCode, Connection, Error, ErrorReply, Event, Request, Response};

use crate::accounts::User;
use crate::ledger::{AppendResults, NewRecord};
use crate::work::{Mailbox, Work};

use super::dispatch::Route;
use super::errors::{lost_work, no_ledger, respond};
use super::ledger::appended_reply;
use super::session::{Completion, Grace, Handled, Session, SessionState, Slot};
use super::{MAX_RPUT_GROUP, Service};

impl Service {
    /// Drains the connection's events and the session's completions, answers what can be
    /// answered and hands what blocks to the runner; never waits (but with the
    /// [`crate::work::Inline`] runner, whose work runs inside this call). Call after each
    /// `handle_input`/`handle_timeout` and after the session's waker fired, before draining
    /// `poll_transmit` and re-reading `poll_timeout` (`tout` changes the idle deadline).
    /// `now_ms` is the wall clock in Unix milliseconds (ledger timestamps; account
    /// timestamps and the login backoff use its seconds).
    ///
    /// Once the connection is closed, the session's file transfers end at once (resumable
    /// uploads save their state, path locks are released) and its unauthenticated slot is
    /// given back, whether or not the runtime keeps the session around.
    pub fn drive(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        now: Instant,
        now_ms: u64,
    ) -> Result<(), Error> {
        let driven = if session.link.is_some() {
            self.drive_link(session, conn, now, now_ms)
        } else {
            self.drive_session(session, conn, now, now_ms)
        };
        if conn.is_closed() {
            self.ended(session, now_ms);
        }
        driven
    }

    /// A synchronous way in, for tools, tests and the simulator's oracle: answers `request`
    /// in `session` on the calling thread (its blocking work included: a commit, a hash, a
    /// whole delivery) and says whether (and how) to close the connection after it. Never
    /// fails: bad requests get typed error responses.
    pub fn answer(
        &self,
        session: &mut Session,
        request: &Request,
        now_ms: u64,
    ) -> (Response, Option<(CloseCode, &'static str)>) {
        let handled = match session.state.as_mut() {
            None => Handled::from(Err(ErrorReply::new(
                vserv_core::ErrorCode::Internal,
                "the session is busy with another request",
            ))),
            Some(state) => match Command::parse(request) {
                Err(e) => Err(e).into(),
                Ok(cmd) => match self.admit(state, &cmd) {
                    Err(refused) => *refused,
                    Ok(user) => self.execute(state, user, cmd, now_ms),
                },
            },
        };
        self.sync_registration(session);
        (
            Response {
                id: request.id,
                result: handled.result.map(Reply::into_fields),
            },
            handled.close,
        )
    }

    fn drive_session(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        now: Instant,
        now_ms: u64,
    ) -> Result<(), Error> {
        if !session.idle_notice_set {
            conn.set_idle_notice(self.shared.idle_notice)?;
            session.idle_notice_set = true;
        }
        let mut group: Vec<(u32, NewRecord)> = Vec::new();
        loop {
            self.apply_completions(session, conn)?;
            self.settle(session, conn)?;
            if conn.is_closed() || session.close_after.is_some() {
                break;
            }
            let Some(state) = session.state.as_mut() else {
                break;
            };
            let request = match session.held.take() {
                Some(request) => request,
                None => match next_request(conn, state) {
                    Some(request) => request,
                    None => break,
                },
            };
            state.idle_timeout = conn.idle_timeout();
            session.idle_timeout = state.idle_timeout;
            let cmd = Command::parse(&request);
            let is_rput = matches!(cmd, Ok(Command::Rput { .. }));
            if !is_rput && (!group.is_empty() || !session.answers.is_empty()) {
                // It waits for the `rput`s before it: go on at once if their results are
                // in already (an inline runner), else when they arrive (the waker).
                self.submit(session, &mut group);
                session.held = Some(request);
                if session.mailbox.is_empty() {
                    break;
                }
                continue;
            }
            let route = match (cmd, group.last()) {
                // The `rput` before it in this group passed the access check: same user, so
                // the account is not re-read for each one (a user disabled meanwhile is
                // refused from the next group on).
                (
                    Ok(Command::Rput {
                        kind,
                        record_id,
                        body,
                    }),
                    Some((_, previous)),
                ) => Route::Append(NewRecord {
                    author: previous.author.clone(),
                    kind,
                    record_id,
                    body,
                    timestamp: now_ms,
                }),
                (cmd, _) => self.route(state, cmd, now_ms),
            };
            match route {
                Route::Append(record) => {
                    group.push((request.id, record));
                    if group.len() >= MAX_RPUT_GROUP {
                        self.submit(session, &mut group);
                    }
                }
                Route::Now(handled) => {
                    self.submit(session, &mut group);
                    session.answers.push_back(Slot::Answer {
                        id: request.id,
                        handled,
                    });
                }
                Route::Blocking(cmd, user) => {
                    self.start_blocking(session, request.id, cmd, user, now_ms)
                }
                Route::Peer { key, signature } => {
                    if !group.is_empty() {
                        self.submit(session, &mut group);
                    }
                    self.accept_peer(session, conn, request.id, (key, signature), now, now_ms)?;
                    if session.link.is_some() {
                        // A link is no person's session: no idle notices on it.
                        conn.set_idle_notice(None)?;
                        // The connection is a link now: its stream is the link's.
                        return self.drive_link(session, conn, now, now_ms);
                    }
                }
            }
        }
        self.submit(session, &mut group);
        self.apply_completions(session, conn)?;
        self.settle(session, conn)
    }

    /// Hands a blocking request to the runner with the session's state.
    fn start_blocking(
        &self,
        session: &mut Session,
        id: u32,
        cmd: Command,
        user: Option<User>,
        now_ms: u64,
    ) {
        let Some(state) = session.state.take() else {
            return;
        };
        let service = self.clone();
        let mut served = Served {
            id,
            mailbox: session.mailbox.clone(),
            state: Some(state),
        };
        let work = match cmd {
            Command::Send(args) => Work::new("send checks", move || {
                let folder = args
                    .folder
                    .clone()
                    .unwrap_or_else(|| vserv_core::commands::DEFAULT_INBOX_FOLDER.to_owned());
                let to = args.to.clone();
                let staged = match (served.state.as_deref(), &user) {
                    (Some(state), Some(user)) => {
                        service.stage_send(state, user, args, now_ms / 1000)
                    }
                    _ => Err(lost_work()),
                };
                match staged {
                    Err(e) => served.answer(Some(Err(e).into())),
                    Ok(prepared) => {
                        let delivery = Delivering {
                            id,
                            mailbox: served.mailbox.clone(),
                            done: false,
                        };
                        // The session goes on; the delivery (hooks, copy) is work of its
                        // own, answered when it ends.
                        served.answer(None);
                        let runner = service.shared.runner.clone();
                        let from = user.map(|u| u.name);
                        runner.run(Work::new("delivery", move || {
                            let result = service.finish_send(prepared);
                            if let (Ok(Reply::Delivered(name)), Some(from)) = (&result, &from) {
                                service.notify_delivery(from, &to, &folder, name);
                            }
                            delivery.finish(result);
                        }));
                    }
                }
            }),
            cmd => Work::new(work_label(&cmd), move || {
                let handled = served
                    .state
                    .as_deref_mut()
                    .map(|state| service.execute(state, user, cmd, now_ms));
                served.answer(Some(handled.unwrap_or_else(|| Err(lost_work()).into())));
            }),
        };
        self.shared.runner.run(work);
    }

    /// Hands the gathered `rput` records to the ledger as one group.
    fn submit(&self, session: &mut Session, group: &mut Vec<(u32, NewRecord)>) {
        if group.is_empty() {
            return;
        }
        let (ids, records): (Vec<u32>, Vec<NewRecord>) = std::mem::take(group).into_iter().unzip();
        let Some(ledger) = &self.shared.ledger else {
            for id in ids {
                let handled = Handled::from(Err(no_ledger()));
                session.answers.push_back(Slot::Answer { id, handled });
            }
            return;
        };
        session
            .answers
            .push_back(Slot::Group { ids, results: None });
        let mailbox = session.mailbox.clone();
        let done =
            Box::new(move |results: AppendResults| mailbox.post(Completion::Appended(results)));
        if let Some(run) = ledger.submit(records, done) {
            self.shared.runner.run(run);
        }
    }

    /// Takes in everything the session's mailbox holds.
    fn apply_completions(&self, session: &mut Session, conn: &mut Connection) -> Result<(), Error> {
        for completion in session.mailbox.take_all() {
            match completion {
                Completion::Served { id, state, handled } => {
                    session.state = Some(state);
                    match handled {
                        Some(handled) => session.answers.push_back(Slot::Answer { id, handled }),
                        None => session.deliveries += 1,
                    }
                }
                Completion::Appended(results) => {
                    let slot = session.answers.iter_mut().find_map(|slot| match slot {
                        Slot::Group {
                            results: r @ None, ..
                        } => Some(r),
                        _ => None,
                    });
                    if let Some(slot) = slot {
                        *slot = Some(results);
                    }
                }
                Completion::Delivered { id, result } => {
                    session.deliveries = session.deliveries.saturating_sub(1);
                    tracing::debug!(id, command = "send", ok = result.is_ok(), "request");
                    respond(
                        conn,
                        &Response {
                            id,
                            result: result.map(Reply::into_fields),
                        },
                    )?;
                }
                Completion::AccountDeleted(account) => session.deleted = Some(account),
                // Its own record, never in the place of an answer; a session that closed
                // meanwhile simply misses it.
                Completion::Notice(notice) => match conn.send_notice(&notice) {
                    Ok(()) | Err(Error::Closed | Error::InvalidState(_)) => {}
                    Err(e) => return Err(e),
                },
                // Only a link session gets these, and `drive_link` takes them.
                Completion::Link(_) => {}
            }
        }
        Ok(())
    }

    /// Sends the answers whose turn came, applies what the commands changed in the state
    /// (idle timeout, login grace, a deleted account, registration), and closes the
    /// connection once asked to and nothing is in flight.
    fn settle(&self, session: &mut Session, conn: &mut Connection) -> Result<(), Error> {
        if let Some(state) = session.state.as_mut() {
            if std::mem::take(&mut state.idle_changed) {
                conn.set_idle_timeout(state.idle_timeout)?;
                session.idle_timeout = state.idle_timeout;
            }
            match state.grace.take() {
                Some(Grace::End) => conn.end_login_grace(),
                Some(Grace::Restart) => conn.restart_login_grace(),
                None => {}
            }
            if let Some(account) = session.deleted.take()
                && state.user.as_ref().is_some_and(|(_, id)| *id == account)
            {
                Self::end_deleted(state);
                session
                    .close_after
                    .get_or_insert((CloseCode::Normal, "account deleted"));
            }
        }
        self.sync_registration(session);
        while let Some(slot) = session.answers.pop_front() {
            match slot {
                Slot::Group {
                    ids,
                    results: Some(results),
                } => send_appended(conn, ids, results)?,
                Slot::Answer { id, handled } => {
                    tracing::debug!(id, ok = handled.result.is_ok(), "request");
                    respond(
                        conn,
                        &Response {
                            id,
                            result: handled.result.map(Reply::into_fields),
                        },
                    )?;
                    if let Some(close) = handled.close {
                        session.close_after.get_or_insert(close);
                    }
                }
                waiting @ Slot::Group { results: None, .. } => {
                    session.answers.push_front(waiting);
                    break;
                }
            }
        }
        if let Some((code, reason)) = session.close_after
            && !session.in_flight()
            && !conn.is_closed()
        {
            conn.close(code, reason);
        }
        Ok(())
    }

    /// Keeps the sessions registry in step with who the session is logged in as.
    fn sync_registration(&self, session: &mut Session) {
        let Some(state) = session.state.as_ref() else {
            return;
        };
        let now = state.user.as_ref().map(|(_, id)| *id);
        if now == session.registered.as_ref().map(|r| r.account()) {
            return;
        }
        // Dropping the old registration gives it back.
        session.registered = now.map(|new| {
            self.shared
                .sessions
                .register(new, state.number, &session.mailbox)
        });
    }

    /// The connection is closed: the session's transfers end (abandoned if its account is
    /// gone), its unauthenticated slot and registration are given back.
    fn ended(&self, session: &mut Session, now_ms: u64) {
        if session.link.is_some() {
            self.link_ended(session, now_ms);
            // Once: a runtime may drive a closed session again.
            session.link = None;
        }
        let Some(state) = session.state.as_mut() else {
            return;
        };
        session.registered = None;
        if self.account_was_deleted(state) {
            // Its home was archived: nothing may be parked by name into a new account.
            std::mem::take(&mut state.transfers).abandon_all();
        } else if !state.transfers.is_empty() {
            state.transfers = crate::files::Transfers::new();
        }
        state.unauthenticated = None;
    }

    /// Whether the session has transfers and the account it logged into no longer exists
    /// (deleted, perhaps re-created under the same name). A store failure answers no.
    fn account_was_deleted(&self, state: &SessionState) -> bool {
        if state.transfers.is_empty() {
            return false;
        }
        match &state.user {
            Some((name, id)) => match self.shared.accounts.get(name) {
                Ok(Some(user)) => user.id != *id,
                Ok(None) => true,
                Err(_) => false,
            },
            None => false,
        }
    }
}

/// The next request on `conn`, taking in the other events on the way.
fn next_request(conn: &mut Connection, state: &mut SessionState) -> Option<Request> {
    while let Some(event) = conn.poll_event() {
        match event {
            Event::Request(request) => return Some(request),
            Event::Connected { session_id, .. } => state.session_id = Some(session_id),
            Event::Closed(close) => {
                tracing::debug!(code = %close.code, reason = %close.reason, "peer closed")
            }
            // A command session never opens the stream, so the core refuses stream
            // records before they could arrive here; notices go to clients only.
            Event::ServerKey(_) | Event::Response(_) | Event::Stream(_) | Event::Notice(_) => {}
        }
    }
    None
}

/// Queues the answers of one committed `rput` group.
fn send_appended(
    conn: &mut Connection,
    ids: Vec<u32>,
    results: AppendResults,
) -> Result<(), Error> {
    let mut results = results.into_iter();
    for id in ids {
        let result: Result<Reply, ErrorReply> = match results.next() {
            Some(result) => appended_reply(result),
            None => Err(no_ledger()),
        };
        tracing::debug!(id, command = "rput", ok = result.is_ok(), "request");
        respond(
            conn,
            &Response {
                id,
                result: result.map(Reply::into_fields),
            },
        )?;
    }
    Ok(())
}

/// What blocking work of `cmd` is called in logs and the simulator's trace.
fn work_label(cmd: &Command) -> &'static str {
    match cmd {
        Command::Login { .. } | Command::Otp { .. } => "login",
        Command::Uini { .. }
        | Command::Uadd { .. }
        | Command::Aadd { .. }
        | Command::Udel { .. }
        | Command::Uena { .. }
        | Command::Ulist { .. }
        | Command::Chpass { .. }
        | Command::TwoFactor(_)
        | Command::Ukey(_) => "accounts",
        Command::Rcheck { .. } => "ledger check",
        Command::Peers => "replication status",
        Command::Padd { .. } | Command::Pdel { .. } => "peer admin",
        Command::Mkey(_)
        | Command::Msend { .. }
        | Command::Mlist { .. }
        | Command::Mread { .. }
        | Command::Mdel { .. } => "messages",
        Command::Tables | Command::Query(_) => "tables",
        Command::Tkey(_) => "transit keys",
        _ => "files",
    }
}

/// A blocking request's way back: the session's state and the answer go to its mailbox,
/// exactly once: if the work is dropped unrun or panics, with a "stopped" error.
struct Served {
    id: u32,
    mailbox: std::sync::Arc<Mailbox<Completion>>,
    state: Option<Box<SessionState>>,
}

impl Served {
    fn answer(&mut self, handled: Option<Handled>) {
        if let Some(state) = self.state.take() {
            self.mailbox.post(Completion::Served {
                id: self.id,
                state,
                handled,
            });
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.answer(Some(Err(lost_work()).into()));
    }
}

/// A delivery under way: its answer goes to the mailbox exactly once.
struct Delivering {
    id: u32,
    mailbox: std::sync::Arc<Mailbox<Completion>>,
    done: bool,
}

impl Delivering {
    fn finish(mut self, result: Result<Reply, ErrorReply>) {
        self.done = true;
        self.mailbox.post(Completion::Delivered {
            id: self.id,
            result,
        });
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        if !self.done {
            self.mailbox.post(Completion::Delivered {
                id: self.id,
                result: Err(lost_work()),
            });
        }
    }
}
