//! The file commands (protocol.md §13.4): listing, `cd`/`pwd`, `stat`, `mkdir`, `mkdirs`,
//! `rmdir`, `del`, `mv`, `versions`, `restore`, and the transfers (`fopen`, `fput`, `fdone`, `fget`, `fread`, `fclose`).

use vserv_core::commands::{self, Command, Reply, UserRole};
use vserv_core::{ErrorCode, ErrorReply};

use crate::accounts::User;
use crate::files::{FileError, Target, UserPath, folder_setup, path as file_path};

use super::Service;
use super::errors::{no_files, not_found};
use super::session::SessionState;

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

impl Service {
    /// The file commands (protocol.md §13.4) for the logged-in `user`.
    pub(super) fn files_command(
        &self,
        state: &mut SessionState,
        user: &User,
        cmd: Command,
    ) -> Result<Reply, ErrorReply> {
        let Some(files) = &self.shared.files else {
            return Err(no_files());
        };
        state.transfers.attach(&self.shared.transfers);
        let me = &user.name;
        let cwd = match &state.cwd {
            Some((by, cwd)) if by == me => cwd.clone(),
            _ => Target {
                owner: me.clone(),
                path: UserPath::root(),
            },
        };
        // Resolves a client path, and checks that `user` may enter that home.
        let target = |input: &str| -> Result<Target, ErrorReply> {
            let t = file_path::resolve(me, &cwd, input)
                .map_err(|e| ErrorReply::from(FileError::from(e)))?;
            if &t.owner != me {
                if user.role != UserRole::Admin {
                    return Err(ErrorReply::new(
                        ErrorCode::Forbidden,
                        "only admins may enter another user's home",
                    ));
                }
                if self.shared.accounts.get(&t.owner)?.is_none() {
                    return Err(not_found(&format!("no user '{}'", t.owner)));
                }
            }
            Ok(t)
        };
        let fail = ErrorReply::from;
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
                state.cwd = Some((me.clone(), t));
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
            Command::Mkdirs { path } => {
                let t = target(&path)?;
                files.mkdir_all(&t.owner, &t.path).map_err(fail)?;
                Reply::Done
            }
            Command::Versions { path } => {
                let t = target(&path)?;
                let mut versions = files.versions(&t.owner, &t.path).map_err(fail)?;
                // As many as fit one response, the newest first.
                let fit = commands::LS_ENTRY_BUDGET / (4 + commands::MAX_ENCODED_VERSION);
                versions.truncate(fit);
                Reply::Versions(versions)
            }
            Command::Restore { path, version } => {
                let t = target(&path)?;
                files.restore(&t.owner, &t.path, version).map_err(fail)?;
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
                if folder_setup::is_folder_config(&to.path) {
                    let stat = files.stat(&from.owner, &from.path).map_err(fail)?;
                    if stat.kind == commands::FileKind::File {
                        folder_setup::check_upload(&to.path, stat.size, || {
                            files.read_file(&from.owner, &from.path)
                        })
                        .map_err(fail)?;
                    }
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
                    state
                        .transfers
                        .fopen(
                            files.as_ref(),
                            &self.shared.upload_locks,
                            &t.owner,
                            &t.path,
                            &shown,
                            args.size,
                            args.resume,
                        )
                        .map_err(ErrorReply::from)?,
                )
            }
            Command::Fput { .. } => {
                let Some(args) = cmd.fput_args() else {
                    return Err(ErrorReply::new(ErrorCode::Internal, "not an fput"));
                };
                state.transfers.fput(&args).map_err(ErrorReply::from)?;
                Reply::Done
            }
            Command::Fdone(args) => Reply::Uploaded(
                state
                    .transfers
                    .fdone(files.as_ref(), &args)
                    .map_err(ErrorReply::from)?,
            ),
            Command::Fget(args) => {
                let t = target(&args.path)?;
                Reply::Download(
                    state
                        .transfers
                        .fget(files.as_ref(), &t.owner, &t.path)
                        .map_err(ErrorReply::from)?,
                )
            }
            Command::Fread(args) => {
                Reply::Data(state.transfers.fread(&args).map_err(ErrorReply::from)?)
            }
            Command::Fclose(args) => {
                state.transfers.fclose(args.id).map_err(ErrorReply::from)?;
                Reply::Done
            }
            _ => return Err(ErrorReply::new(ErrorCode::Internal, "not a file command")),
        })
    }
}
