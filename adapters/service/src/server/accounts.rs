//! The account commands: login and logout, the session's account re-read at each request,
//! and the admin commands (`uini`, `uadd`, `aadd`, `udel`, `uena`, `ulist`, `chpass`,
//! `ukey`).

use vserv_core::commands::{
    Command, Credential, KeyAction, OtpCode, Reply, TwoFactorAction, UserRole,
};
use vserv_core::{CloseCode, ErrorCode, ErrorReply};

use crate::accounts::{AccountError, User, UserName};
use crate::files::Transfers;
use crate::limits::Gate;

use super::session::{Grace, Handled, PendingCode, SessionState};
use super::{MAX_FAILED_LOGINS, Service};

/// How long a login answered `CodeNeeded` waits for its `otp`.
const CODE_WAIT_SECS: u64 = 300;

impl Service {
    /// The logged-in user as stored now. A user disabled since login is logged out (the
    /// session goes on, anonymous); an account deleted since login (gone, or replaced by a
    /// new account of the same name, which has another id) ends the session: the answer is
    /// this error, and the connection is closed after it.
    pub(super) fn current_user(
        &self,
        state: &mut SessionState,
    ) -> Result<Option<User>, Box<Handled>> {
        let Some((name, id)) = state.user.clone() else {
            return Ok(None);
        };
        match self.shared.accounts.get(&name) {
            Err(e) => Err(Box::new(Err(ErrorReply::from(e)).into())),
            Ok(Some(user)) if user.id == id && user.enabled => Ok(Some(user)),
            Ok(Some(user)) if user.id == id => match self.anonymous_again(state) {
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
                Self::end_deleted(state);
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

    /// Forgets the session's deleted account: its transfers are dropped without parking
    /// (its home was archived), its working directory is gone.
    pub(super) fn end_deleted(state: &mut SessionState) {
        if let Some((name, _)) = state.user.take() {
            tracing::info!(target: "vserv::audit", user = %name, peer = ?state.peer,
                "session of a deleted account ended");
        }
        std::mem::take(&mut state.transfers).abandon_all();
        state.cwd = None;
    }

    /// The logged-in session becomes anonymous (logout, or its user was disabled): its
    /// transfers end, the login grace starts again, and it takes an unauthenticated slot of
    /// its address again; if none is free, the close to send.
    pub(super) fn anonymous_again(
        &self,
        state: &mut SessionState,
    ) -> Result<(), (CloseCode, &'static str)> {
        state.user = None;
        state.pending_code = None;
        // Transfers belong to the user who opened them (uploads are parked).
        state.transfers = Transfers::new();
        state.grace = Some(Grace::Restart);
        if state.unauthenticated.is_none()
            && let Some(peer) = state.peer
        {
            state.unauthenticated = Some(self.admit_unauthenticated(peer).ok_or((
                CloseCode::Busy,
                "too many unauthenticated sessions from this address",
            ))?);
        }
        Ok(())
    }

    /// A failed login's answer: counts toward the connection's limit, closes at it.
    fn login_refused(state: &SessionState, message: String) -> Handled {
        let close = (state.failed_logins >= MAX_FAILED_LOGINS)
            .then_some((CloseCode::Normal, "too many failed logins"));
        Handled {
            result: Err(ErrorReply::new(ErrorCode::LoginFailed, message)),
            close,
        }
    }

    /// `login`: checks the credential (a password hash: the slow part), under the backoff.
    pub(super) fn login(
        &self,
        state: &mut SessionState,
        name: &str,
        credential: &Credential,
        now: u64,
    ) -> Handled {
        // A new login replaces any login waiting for its code.
        state.pending_code = None;
        let accounts = &self.shared.accounts;
        let normalised = UserName::parse(name).ok();
        let attempt = match self
            .shared
            .limiter
            .begin(normalised.as_ref(), state.peer, now)
        {
            Ok(Gate::Open(attempt)) => attempt,
            Ok(Gate::Wait(secs)) => {
                state.failed_logins += 1;
                tracing::warn!(target: "vserv::audit", user = %name.escape_debug(), peer = ?state.peer,
                    retry_after = secs, failures = state.failed_logins, "login refused by backoff");
                return Self::login_refused(
                    state,
                    format!("login failed: too many failed attempts; retry in {secs} s"),
                );
            }
            Err(e) => return Err(ErrorReply::from(AccountError::Store(e))).into(),
        };
        let checked = match credential {
            Credential::Password(secret) => match accounts.check_password(name, secret.expose()) {
                Err(AccountError::Busy(busy)) => {
                    // Nothing was checked: the attempt counts nowhere (dropped unresolved),
                    // and the answer is the same whether or not the user exists.
                    drop(attempt);
                    tracing::warn!(target: "vserv::audit", user = %name.escape_debug(), peer = ?state.peer,
                        "login refused: password checks busy");
                    return Err(ErrorReply::new(
                        ErrorCode::LoginFailed,
                        format!("login failed: {busy}"),
                    ))
                    .into();
                }
                other => other,
            },
            Credential::Key { public, signature } => match state.session_id {
                Some(sid) => accounts.check_key(name, public, signature, &sid),
                None => Ok(None),
            },
        };
        match checked {
            Ok(Some(user)) => match accounts.needs_code(&user) {
                Ok(false) => {
                    attempt.succeeded();
                    self.logged_in(state, &user, now)
                }
                Ok(true) => {
                    // The credential was right but is not enough: the attempt counts
                    // nowhere (neither resets nor feeds the backoff) until `otp` decides.
                    drop(attempt);
                    tracing::info!(target: "vserv::audit", user = %user.name, peer = ?state.peer,
                        "login waits for a second factor");
                    state.pending_code = Some(PendingCode {
                        name: user.name.clone(),
                        id: user.id,
                        deadline: now.saturating_add(CODE_WAIT_SECS),
                    });
                    Err(ErrorReply::new(
                        ErrorCode::CodeNeeded,
                        format!(
                            "code needed: '{}' has two-factor login; send otp CODE within \
                             {CODE_WAIT_SECS} s",
                            user.name
                        ),
                    ))
                    .into()
                }
                Err(e) => Err(ErrorReply::from(e)).into(),
            },
            Ok(None) => {
                let exists = normalised
                    .as_ref()
                    .is_some_and(|n| accounts.get(n).is_ok_and(|u| u.is_some()));
                attempt.failed(exists, now);
                state.failed_logins += 1;
                tracing::warn!(target: "vserv::audit", user = %name.escape_debug(), peer = ?state.peer,
                    failures = state.failed_logins, "login failed");
                Self::login_refused(
                    state,
                    "login failed: unknown user or wrong credentials".to_owned(),
                )
            }
            Err(e) => Err(ErrorReply::from(e)).into(),
        }
    }

    /// The session logs in as `user` (both factors checked).
    fn logged_in(&self, state: &mut SessionState, user: &User, now: u64) -> Handled {
        tracing::info!(target: "vserv::audit", user = %user.name, peer = ?state.peer, "login");
        self.shared.accounts.record_login(&user.name, now);
        if state.user.as_ref() != Some(&(user.name.clone(), user.id)) {
            state.transfers = Transfers::new();
        }
        state.user = Some((user.name.clone(), user.id));
        state.failed_logins = 0;
        state.unauthenticated = None;
        state.grace = Some(Grace::End);
        Ok(Reply::User {
            name: user.name.to_string(),
            role: user.role,
        })
        .into()
    }

    /// `otp CODE`: the second step of a login answered `CodeNeeded`. A refused code counts
    /// toward the backoff and the connection's failed logins exactly as a wrong password
    /// does, and ends the waiting login (the next try starts with `login` again).
    pub(super) fn second_factor(
        &self,
        state: &mut SessionState,
        code: &OtpCode,
        now: u64,
    ) -> Handled {
        let Some(pending) = state.pending_code.take() else {
            return Err(ErrorReply::new(
                ErrorCode::Forbidden,
                "no login waits for a code; log in first",
            ))
            .into();
        };
        if now > pending.deadline {
            return Err(ErrorReply::new(
                ErrorCode::LoginFailed,
                "login failed: the login waiting for a code expired; log in again",
            ))
            .into();
        }
        let attempt = match self
            .shared
            .limiter
            .begin(Some(&pending.name), state.peer, now)
        {
            Ok(Gate::Open(attempt)) => attempt,
            Ok(Gate::Wait(secs)) => {
                state.failed_logins += 1;
                return Self::login_refused(
                    state,
                    format!("login failed: too many failed attempts; retry in {secs} s"),
                );
            }
            Err(e) => return Err(ErrorReply::from(AccountError::Store(e))).into(),
        };
        let accounts = &self.shared.accounts;
        let user = match accounts.get(&pending.name) {
            Ok(Some(u)) if u.id == pending.id && u.enabled => u,
            Ok(_) => {
                return Err(ErrorReply::new(
                    ErrorCode::LoginFailed,
                    "login failed: the account changed; log in again",
                ))
                .into();
            }
            Err(e) => return Err(ErrorReply::from(e)).into(),
        };
        match accounts.totp_login(&user, code, now) {
            Ok(()) => {
                attempt.succeeded();
                self.logged_in(state, &user, now)
            }
            Err(AccountError::Code(why)) => {
                attempt.failed(true, now);
                state.failed_logins += 1;
                tracing::warn!(target: "vserv::audit", user = %user.name, peer = ?state.peer,
                    failures = state.failed_logins, reason = %why, "second factor refused");
                Self::login_refused(state, format!("login failed: {why}"))
            }
            Err(e) => Err(ErrorReply::from(e)).into(),
        }
    }

    /// `2fa`: the logged-in user's second factor; `reset` for admins only.
    pub(super) fn two_factor_command(
        &self,
        state: &SessionState,
        user: Option<&User>,
        action: TwoFactorAction,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let Some(me) = user else {
            return Err(ErrorReply::new(ErrorCode::Forbidden, "log in first"));
        };
        let accounts = &self.shared.accounts;
        let audit = |action: &str, target: &str| {
            tracing::info!(target: "vserv::audit", by = %me.name, action, user = %target, peer = ?state.peer, "two-factor change");
        };
        match action {
            TwoFactorAction::Enable => {
                let enrolment = accounts.totp_enable(&me.name)?;
                audit("2fa enable", me.name.as_str());
                Ok(Reply::TwoFactorEnrolment {
                    uri: enrolment.uri,
                    recovery: enrolment.recovery,
                })
            }
            TwoFactorAction::Confirm(code) => {
                accounts.totp_confirm(&me.name, &code, now)?;
                audit("2fa confirm", me.name.as_str());
                Ok(Reply::Done)
            }
            TwoFactorAction::Disable(code) => {
                accounts.totp_disable(&me.name, &code, now)?;
                audit("2fa disable", me.name.as_str());
                Ok(Reply::Done)
            }
            TwoFactorAction::Reset(name) => {
                if me.role != UserRole::Admin {
                    return Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        "only admins may reset another user's second factor",
                    ));
                }
                accounts.totp_reset(&name)?;
                audit("2fa reset", &name);
                Ok(Reply::Done)
            }
        }
    }

    /// The admin and key commands, for the admitted `user`.
    pub(super) fn account_command(
        &self,
        state: &SessionState,
        user: Option<&User>,
        cmd: Command,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let me = user.map(|u| u.name.to_string()).unwrap_or_default();
        let audit = |action: &str, target: &str| {
            tracing::info!(target: "vserv::audit", by = %me, action, user = %target, peer = ?state.peer, "admin action");
        };
        let accounts = &self.shared.accounts;
        Ok(match cmd {
            Command::Uini {
                user: name,
                password,
            } => {
                if !state.peer.is_some_and(|p| p.is_loopback()) {
                    return Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        "uini is only accepted from the server's own machine (loopback)",
                    ));
                }
                let created = accounts.create_first_admin(&name, password.expose(), now)?;
                audit("uini", created.name.as_str());
                self.clear_leftover_home(&created)?;
                Reply::Done
            }
            Command::Uadd {
                user: name,
                password,
            } => {
                let created = accounts.create(&name, UserRole::User, password.expose(), now)?;
                audit("uadd", created.name.as_str());
                self.clear_leftover_home(&created)?;
                Reply::Done
            }
            Command::Aadd {
                user: name,
                password,
            } => {
                let created = accounts.create(&name, UserRole::Admin, password.expose(), now)?;
                audit("aadd", created.name.as_str());
                self.clear_leftover_home(&created)?;
                Reply::Done
            }
            Command::Udel { user: name } => {
                let deleted = accounts.delete(&name)?;
                audit("udel", &name);
                let ended = self
                    .shared
                    .sessions
                    .account_deleted(deleted.id, state.number);
                tracing::debug!(user = %name, sessions = ended, "sessions of a deleted account told");
                self.archive_home(&deleted, &deleted.id.to_string())?;
                Reply::Done
            }
            Command::Uena {
                user: name,
                enabled,
            } => {
                accounts.set_enabled(&name, enabled)?;
                audit(if enabled { "uena on" } else { "uena off" }, &name);
                Reply::Done
            }
            Command::Ulist { filter } => Reply::Users(accounts.list(filter.as_deref())?),
            Command::Chpass {
                target: None,
                old,
                new,
            } => {
                let old = old.as_ref().map(|o| o.expose());
                accounts.set_password(&me, old, new.expose())?;
                audit("chpass", &me);
                Reply::Done
            }
            Command::Chpass {
                target: Some(name),
                new,
                ..
            } => {
                if user.is_none_or(|u| u.role != UserRole::Admin) {
                    return Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        "only admins may set another user's password",
                    ));
                }
                accounts.set_password(&name, None, new.expose())?;
                audit("chpass --for", &name);
                Reply::Done
            }
            Command::Ukey(KeyAction::Add(key)) => {
                accounts.add_key(&me, &key)?;
                audit("ukey add", &me);
                Reply::Done
            }
            Command::Ukey(KeyAction::Del(fingerprint)) => {
                accounts.remove_key(&me, &fingerprint)?;
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
            _ => {
                return Err(ErrorReply::new(
                    ErrorCode::Internal,
                    "not an account command",
                ));
            }
        })
    }

    /// Archives `user`'s home as `<name>-<tag>` (see
    /// [`crate::files::FileTree::archive_home`]); a failure is logged and answered (the
    /// account change stands).
    fn archive_home(&self, user: &User, tag: &str) -> Result<(), ErrorReply> {
        let Some(files) = &self.shared.files else {
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
}
