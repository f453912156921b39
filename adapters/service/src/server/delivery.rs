//! `send` and `inbox` (protocol.md §13.5). On the synchronous path a `send` delivers at
//! once; `drive` stages it instead (`Service::staged_send`): the quick checks run with the
//! session's state, then the session goes on while the delivery (hooks, copy) runs.

use vserv_core::commands::{self, Command, Reply, SendArgs};
use vserv_core::{ErrorCode, ErrorReply};

use crate::accounts::{User, UserName};
use crate::files::delivery::{self, Outgoing, PreparedDelivery};
use crate::files::{FileError, Target, UserPath, path as file_path};

use super::Service;
use super::errors::{no_files, not_found};
use super::session::SessionState;

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

impl Service {
    /// `send` and `inbox` (protocol.md §13.5) for the logged-in `user`.
    pub(super) fn delivery_command(
        &self,
        state: &SessionState,
        user: &User,
        cmd: Command,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let Some(files) = &self.shared.files else {
            return Err(no_files());
        };
        let me = &user.name;
        Ok(match cmd {
            Command::Send(args) => {
                let out = self.outgoing(state, user, args, now)?;
                let name = delivery::deliver(
                    files.as_ref(),
                    &self.shared.upload_locks,
                    &self.shared.hooks,
                    &out,
                )
                .map_err(ErrorReply::from)?;
                self.notify_delivery(me, out.to.as_str(), &out.folder, &name);
                Reply::Delivered(name)
            }
            Command::Inbox(page) => {
                let folder = page
                    .dir
                    .as_deref()
                    .unwrap_or(commands::DEFAULT_INBOX_FOLDER);
                let entries =
                    delivery::inbox(files.as_ref(), me, folder).map_err(ErrorReply::from)?;
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
    pub(super) fn outgoing(
        &self,
        state: &SessionState,
        user: &User,
        args: commands::SendArgs,
        now: u64,
    ) -> Result<Outgoing, ErrorReply> {
        let me = &user.name;
        let to = UserName::parse(&args.to)
            .map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
        if self.shared.accounts.get(&to)?.is_none() {
            return Err(not_found(&format!("no user '{to}'")));
        }
        let cwd = match &state.cwd {
            Some((by, cwd)) if by == me => cwd.clone(),
            _ => Target {
                owner: me.clone(),
                path: UserPath::root(),
            },
        };
        let source = file_path::resolve(me, &cwd, &args.path)
            .map_err(|e| ErrorReply::from(FileError::from(e)))?;
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

    /// The quick checks of a `send` (recipient, path, allow list, quota, the file opened, a
    /// `pending` record), made with the session's state so that no later request can change
    /// what it delivers; the delivery that then runs on its own
    /// ([`PreparedDelivery::run`]).
    pub(super) fn stage_send(
        &self,
        state: &SessionState,
        user: &User,
        args: SendArgs,
        now: u64,
    ) -> Result<PreparedDelivery, ErrorReply> {
        let Some(files) = &self.shared.files else {
            return Err(no_files());
        };
        let out = self.outgoing(state, user, args, now)?;
        Ok(delivery::prepare(files.as_ref(), &out)?)
    }

    /// Runs a staged delivery to its answer (hooks and copy: this waits).
    pub(super) fn finish_send(&self, prepared: PreparedDelivery) -> Result<Reply, ErrorReply> {
        let Some(files) = &self.shared.files else {
            return Err(no_files());
        };
        prepared
            .run(
                files.as_ref(),
                &self.shared.upload_locks,
                &self.shared.hooks,
            )
            .map(Reply::Delivered)
            .map_err(ErrorReply::from)
    }
}
