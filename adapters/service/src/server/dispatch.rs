//! From a request to its route: parsed once into a typed [`Command`], admitted (the
//! session's account re-read, the command's access checked), then answered at once,
//! appended with the connection's `rput` group, or run as blocking work. `execute` is the
//! one table from command to handler; the handlers live in one file per domain.

use std::time::Duration;

use vserv_core::commands::{self, Access, Command, KeyAction, Reply, UserRole};
use vserv_core::wire::PROTOCOL_VERSION;
use vserv_core::{CloseCode, ErrorCode, ErrorReply};

use crate::accounts::User;
use crate::ledger::NewRecord;

use super::Service;
use super::session::{Handled, SessionState};

/// What to do with one request.
pub(super) enum Route {
    /// Answered already.
    Now(Handled),
    /// An `rput`'s record, appended with the connection's current group.
    Append(NewRecord),
    /// A command whose handling waits (storage, hashing, files, hooks): it runs as work,
    /// with the session's state, for the (admitted) `user`.
    Blocking(Command, Option<User>),
    /// A peer server asks to turn the connection into a replication link (`link.rs`).
    Peer {
        key: [u8; vserv_core::wire::POINT_LEN],
        signature: [u8; vserv_core::wire::SIGNATURE_LEN],
    },
}

/// Whether `cmd` is answered without waiting for anything but a store read (a point read or
/// a short scan of the store's cached tables, as the access check of every request makes):
/// everything else runs as blocking work. That is every store write (a durable commit),
/// every password hash, every file operation but the data of open transfers (handed to
/// their buffers, which do the file I/O behind the connection: `files/write_behind.rs`,
/// `files/direct.rs`), deliveries, and `rcheck` (which re-verifies a whole chain).
fn answered_at_once(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Rget { .. }
            | Command::Rhave { .. }
            | Command::Rabs { .. }
            | Command::Rsize { .. }
            | Command::Rcount { .. }
            | Command::Rlist { .. }
            | Command::Rhead { .. }
            | Command::Hello
            | Command::Ver
            | Command::Id
            | Command::Help { .. }
            | Command::Ping { .. }
            | Command::Whoami
            | Command::Tout { .. }
            | Command::Logout
            | Command::Pwd
            | Command::Fput { .. }
            | Command::Fread(_)
            | Command::Ukey(KeyAction::List)
    ) || super::transit::transit_at_once(cmd)
}

impl Service {
    /// Admits a parsed request and decides its route; commands answered at once are
    /// answered here.
    pub(super) fn route(
        &self,
        state: &mut SessionState,
        parsed: Result<Command, ErrorReply>,
        now_ms: u64,
    ) -> Route {
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(e) => return Route::Now(Err(e).into()),
        };
        let user = match self.admit(state, &cmd) {
            Ok(user) => user,
            Err(handled) => return Route::Now(*handled),
        };
        match cmd {
            Command::Rput {
                kind,
                record_id,
                body,
            } => Route::Append(NewRecord {
                author: user.map(|u| u.name.to_string()).unwrap_or_default(),
                kind,
                record_id,
                body,
                timestamp: now_ms,
            }),
            Command::Peer { key, signature } => Route::Peer { key, signature },
            cmd if answered_at_once(&cmd) => Route::Now(self.execute(state, user, cmd, now_ms)),
            cmd => Route::Blocking(cmd, user),
        }
    }

    /// The logged-in user allowed to run `cmd`, or the answer refusing it. `quit` is
    /// answered whoever is logged in, even a session whose account is gone.
    pub(super) fn admit(
        &self,
        state: &mut SessionState,
        cmd: &Command,
    ) -> Result<Option<User>, Box<Handled>> {
        if matches!(cmd, Command::Quit) {
            return Err(Box::new(Handled {
                result: Ok(Reply::Bye),
                close: Some((CloseCode::Normal, "bye")),
            }));
        }
        let user = self.current_user(state)?;
        let allowed = match (cmd.access(), &user) {
            (Access::Anyone, _) => true,
            (Access::User, Some(_)) => true,
            (Access::Admin, Some(u)) => u.role == UserRole::Admin,
            (_, None) => false,
        };
        if allowed {
            return Ok(user);
        }
        let why = if user.is_none() {
            "log in first"
        } else {
            "this command needs an admin"
        };
        Err(Box::new(
            Err(ErrorReply::new(
                ErrorCode::Forbidden,
                format!("'{}': {why}", cmd.name()),
            ))
            .into(),
        ))
    }

    /// Answers one admitted request, on the calling thread: every command but `rput`
    /// (appended in groups by `drive`) and the staged `send` of `drive` comes here.
    pub(super) fn execute(
        &self,
        state: &mut SessionState,
        user: Option<User>,
        cmd: Command,
        now_ms: u64,
    ) -> Handled {
        let now = now_ms / 1000;
        let result = match cmd {
            // Only a streaming connection becomes a link: `drive` takes `peer` itself.
            Command::Peer { .. } => Err(ErrorReply::new(
                ErrorCode::BadArguments,
                "peer starts a replication link and must be the first request of a connection",
            )),
            Command::Login {
                user: name,
                credential,
            } => return self.login(state, &name, &credential, now),
            Command::Otp { code } => return self.second_factor(state, &code, now),
            Command::Logout if state.user.is_none() => Ok(Reply::Done),
            Command::Logout => {
                return Handled {
                    close: self.anonymous_again(state).err(),
                    result: Ok(Reply::Done),
                };
            }
            Command::Hello => Ok(Reply::Greeting(format!(
                "hello from vserv server '{}'",
                self.shared.info.name
            ))),
            Command::Ver => Ok(Reply::Version {
                protocol: PROTOCOL_VERSION,
                software: format!("vserv {}", vserv_core::SOFTWARE_VERSION),
            }),
            Command::Id => Ok(Reply::Identity {
                name: self.shared.info.name.clone(),
                fingerprint: self.shared.info.fingerprint,
            }),
            Command::Help { topic } => commands::help_text(topic.as_deref()).map(Reply::Help),
            Command::Ping { payload } => Ok(Reply::Pong(payload)),
            Command::Whoami => Ok(match user {
                Some(u) => Reply::User {
                    name: u.name.to_string(),
                    role: u.role,
                },
                None => Reply::Anonymous,
            }),
            Command::Tout { seconds } => self.idle_timeout(state, seconds),
            Command::Uini { .. }
            | Command::Uadd { .. }
            | Command::Aadd { .. }
            | Command::Udel { .. }
            | Command::Uena { .. }
            | Command::Ulist { .. }
            | Command::Chpass { .. }
            | Command::Ukey(_) => self.account_command(state, user.as_ref(), cmd, now),
            Command::TwoFactor(action) => {
                self.two_factor_command(state, user.as_ref(), action, now)
            }
            Command::Rput {
                kind,
                record_id,
                body,
            } => self.append_now(NewRecord {
                author: user.map(|u| u.name.to_string()).unwrap_or_default(),
                kind,
                record_id,
                body,
                timestamp: now_ms,
            }),
            Command::Rget { .. }
            | Command::Rhave { .. }
            | Command::Rabs { .. }
            | Command::Rsize { .. }
            | Command::Rcount { .. }
            | Command::Rlist { .. }
            | Command::Rhead { .. }
            | Command::Rcheck { .. } => self.ledger_command(state, user.as_ref(), cmd),
            Command::Ls(_)
            | Command::Lsd(_)
            | Command::Cd { .. }
            | Command::Pwd
            | Command::Stat { .. }
            | Command::Mkdir { .. }
            | Command::Mkdirs { .. }
            | Command::Versions { .. }
            | Command::Restore { .. }
            | Command::Rmdir { .. }
            | Command::Del { .. }
            | Command::Mv { .. }
            | Command::Fopen(_)
            | Command::Fput { .. }
            | Command::Fdone(_)
            | Command::Fget(_)
            | Command::Fread(_)
            | Command::Fclose(_) => match &user {
                Some(user) => self.files_command(state, user, cmd),
                None => Err(ErrorReply::new(ErrorCode::Forbidden, "log in first")),
            },
            Command::Send(_) | Command::Inbox(_) => match &user {
                Some(user) => self.delivery_command(state, user, cmd, now),
                None => Err(ErrorReply::new(ErrorCode::Forbidden, "log in first")),
            },
            Command::Peers => self.peers_reply(now_ms),
            Command::Padd {
                fingerprint,
                address,
            } => self.padd_reply(fingerprint, address),
            Command::Pdel { fingerprint } => self.pdel_reply(&fingerprint),
            Command::Mkey(_)
            | Command::Msend { .. }
            | Command::Mlist { .. }
            | Command::Mread { .. }
            | Command::Mdel { .. } => match &user {
                Some(user) => self.messages_command(user, cmd, now),
                None => Err(ErrorReply::new(ErrorCode::Forbidden, "log in first")),
            },
            Command::Tables | Command::Query(_) => self.tables_command(user.as_ref(), &cmd, now),
            Command::Tkey(_)
            | Command::Seal { .. }
            | Command::Unseal { .. }
            | Command::Rewrap { .. }
            | Command::Gk { .. } => match &user {
                Some(user) => self.transit_command(user, cmd, now),
                None => Err(ErrorReply::new(ErrorCode::Forbidden, "log in first")),
            },
            // Answered by `admit`.
            Command::Quit => Ok(Reply::Bye),
        };
        result.into()
    }

    /// `tout`: the session's idle timeout, read or set within the policy's bounds.
    fn idle_timeout(
        &self,
        state: &mut SessionState,
        seconds: Option<u64>,
    ) -> Result<Reply, ErrorReply> {
        let Some(secs) = seconds else {
            return Ok(Reply::IdleTimeout(state.idle_timeout.as_secs()));
        };
        let policy = &self.shared.policy;
        let (min, max) = (policy.idle_timeout_min, policy.idle_timeout_max);
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
        state.idle_timeout = wanted;
        state.idle_changed = true;
        Ok(Reply::IdleTimeout(secs))
    }
}
