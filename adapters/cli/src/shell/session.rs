//! The shell's one connection: opened and logged in once, used by every line, and opened
//! (and logged in) again on the next command after the server closed it, for idling or
//! otherwise. The login secret stays in memory only, wiped when the shell ends or logs out.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use vserv_core::commands::{Command, FileKind, LS_MAX_LIMIT, ListPage, Notice, Reply};
use vserv_service::client::ClientError;

use crate::client_cmd::{self, ClientArgs, Connected, Login, Secret};
use crate::shell::line::ShellCommand;
use crate::show::escape;

/// How long before the server's idle timeout the shell reconnects rather than risk a
/// command racing the server's close (at most a quarter of the timeout).
const IDLE_MARGIN: Duration = Duration::from_secs(2);

/// What the shell does after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// Leave the shell.
    Exit,
}

/// The shell's connection and what it needs to open it again.
pub struct Session {
    args: ClientArgs,
    login: Option<Login>,
    conn: Option<Connected>,
    /// The session's idle timeout as the server told it (`tout`), when logged in.
    idle: Option<Duration>,
    /// When the last command ended (or the session opened).
    last_used: Instant,
    /// The working directory set with `cd`, set again after reconnecting.
    cwd: Option<String>,
}

impl Session {
    /// Reads the login secret (key file, `VSERV_PASSWORD` or a prompt), connects and logs
    /// in.
    pub fn open(args: ClientArgs) -> anyhow::Result<Session> {
        let login = client_cmd::login_secret(&args)?;
        let mut session = Session {
            args,
            login,
            conn: None,
            idle: None,
            last_used: Instant::now(),
            cwd: None,
        };
        session.reconnect()?;
        Ok(session)
    }

    /// The user logged in, if any.
    pub fn user(&self) -> Option<&str> {
        self.login.as_ref().map(|l| l.user.as_str())
    }

    /// The server address.
    pub fn server(&self) -> &str {
        &self.args.server
    }

    /// The open connection, if it is open now (no reconnecting): for completion. Counts
    /// as using the session (the request it sends keeps the server's idle timer at bay).
    pub fn live(&mut self) -> Option<&mut Connected> {
        if self.idled_out() {
            return None;
        }
        self.last_used = Instant::now();
        self.conn.as_mut()
    }

    fn idled_out(&self) -> bool {
        self.idle
            .is_some_and(|idle| self.last_used.elapsed() + IDLE_MARGIN.min(idle / 4) >= idle)
    }

    /// Waits at most `max_wait` for notices the server pushes, as lines to show; when the
    /// server has ended the session meanwhile, a line saying so (the next command
    /// reconnects). Nothing without an open connection.
    pub fn poll_notices(&mut self, max_wait: Duration) -> Vec<String> {
        let Some(conn) = self.conn.as_mut() else {
            return Vec::new();
        };
        match conn.client.poll_notices(max_wait) {
            Ok(notices) => notices.iter().map(notice_line).collect(),
            Err(e) => {
                self.conn = None;
                vec![format!(
                    "vserv: the server has closed this session ({}); the next command \
                     reconnects and logs in again",
                    escape(&e.to_string())
                )]
            }
        }
    }

    /// The notices that arrived during the last command, as lines to show.
    pub fn take_notices(&mut self) -> Vec<String> {
        self.conn.as_mut().map_or_else(Vec::new, |conn| {
            conn.client.take_notices().iter().map(notice_line).collect()
        })
    }

    /// Connects, logs in with the kept secret, asks the idle timeout, restores `cd`.
    fn reconnect(&mut self) -> anyhow::Result<()> {
        self.conn = None;
        let mut conn = client_cmd::open(&self.args, self.login.as_ref())?;
        self.last_used = Instant::now();
        let idle = if self.login.is_some() {
            ask_idle(&mut conn)
        } else {
            None
        };
        self.idle = idle;
        if let Some(dir) = &self.cwd
            && let Err(e) = conn.client.call(&Command::Cd { dir: dir.clone() })
        {
            eprintln!(
                "vserv: could not return to {}: {}",
                escape(dir),
                escape(&e.to_string())
            );
            self.cwd = None;
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Opens the connection again when the server closed it or is about to (its idle
    /// timeout has passed).
    fn ensure_connected(&mut self) -> anyhow::Result<()> {
        if self.conn.is_some() && self.idled_out() {
            eprintln!(
                "vserv: the session was idle longer than the server allows ({} s); \
                 reconnecting",
                self.idle.map_or(0, |d| d.as_secs())
            );
            return self.reconnect();
        }
        if self.conn.is_none() {
            eprintln!("vserv: reconnecting to {}", escape(&self.args.server));
            return self.reconnect();
        }
        Ok(())
    }

    /// Runs one line's command. A failure that ended the connection is reported and the
    /// next command reconnects.
    pub fn run(&mut self, command: &ShellCommand) -> anyhow::Result<Flow> {
        if let ShellCommand::Exit = command {
            if let Some(conn) = self.conn.take()
                && let Err(e) = conn.quit()
            {
                tracing::debug!(error = %e, "ending the session failed");
            }
            return Ok(Flow::Exit);
        }
        let result = self
            .ensure_connected()
            .and_then(|()| self.run_command(command));
        self.last_used = Instant::now();
        if let Err(e) = &result
            && connection_lost(e)
        {
            self.conn = None;
            eprintln!("vserv: the connection ended; the next command reconnects");
        }
        result.map(|()| Flow::Continue)
    }

    fn run_command(&mut self, command: &ShellCommand) -> anyhow::Result<()> {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| anyhow!("not connected to {}", self.args.server))?;
        match command {
            ShellCommand::Op(op) => {
                if let crate::ops::Op::Rput { args, .. } = op
                    && args.body.iter().any(|b| b == "@-")
                {
                    bail!(
                        "rput @- would read the shell's own input; in the shell give @FILE or \
                         FIELD=VALUE"
                    );
                }
                op.run_on(conn)?;
                if let crate::ops::Op::Tout {
                    seconds: Some(_), ..
                } = op
                {
                    self.idle = ask_idle(conn);
                }
            }
            ShellCommand::Cd { dir } => {
                let reply = conn.client.call(&Command::Cd { dir: dir.clone() })?;
                let Reply::Cwd(now) = reply else {
                    bail!("unexpected reply to cd: {reply:?}");
                };
                println!("{}", escape(&now));
                self.cwd = Some(now);
            }
            ShellCommand::User(args) => {
                let (me, password) = match &self.login {
                    Some(Login {
                        user,
                        secret: Secret::Password(password),
                    }) => (Some(user.as_str()), Some(password)),
                    Some(Login { user, .. }) => (Some(user.as_str()), None),
                    None => (None, None),
                };
                crate::user_cmd::run_on(conn, args, me, password)?;
            }
            ShellCommand::Help { topic } => {
                conn.run(&Command::Help {
                    topic: topic.clone(),
                })?;
                if topic.is_none() {
                    print!("{}", super::SHELL_HELP);
                }
            }
            ShellCommand::Pwd => conn.run(&Command::Pwd)?,
            ShellCommand::Logout => {
                conn.run(&Command::Logout)?;
                // Forget (and wipe) the secret: a reconnection stays anonymous.
                self.login = None;
                self.idle = None;
                self.cwd = None;
            }
            ShellCommand::Exit => {}
        }
        Ok(())
    }

    /// The names in server directory `dir` (`None`: the working directory), directories
    /// with a trailing `/`: the first page only, and only on an open connection.
    pub fn remote_names(&mut self, dir: Option<&str>) -> Vec<String> {
        let Some(conn) = self.live() else {
            return Vec::new();
        };
        let page = ListPage {
            dir: dir.map(str::to_owned),
            from: None,
            limit: Some(LS_MAX_LIMIT),
        };
        match conn.client.call(&Command::Ls(page)) {
            Ok(Reply::Listing { entries, .. }) => entries
                .into_iter()
                .map(|e| {
                    if e.kind == FileKind::Dir {
                        format!("{}/", e.name)
                    } else {
                        e.name
                    }
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The user names the server lets this user see (`ulist`, admins), if any.
    pub fn user_names(&mut self) -> Option<Vec<String>> {
        let conn = self.live()?;
        match conn.client.call(&Command::Ulist { filter: None }) {
            Ok(Reply::Users(users)) => Some(users.into_iter().map(|u| u.name).collect()),
            _ => None,
        }
    }
}

/// A notice as the shell shows it.
fn notice_line(notice: &Notice) -> String {
    format!("vserv: {}", escape(&notice.describe()))
}

/// The session's idle timeout, as `tout` tells it.
fn ask_idle(conn: &mut Connected) -> Option<Duration> {
    match conn.client.call(&Command::Tout { seconds: None }) {
        Ok(Reply::IdleTimeout(secs)) => Some(Duration::from_secs(secs)),
        _ => None,
    }
}

/// Whether `e` means the connection is gone (rather than the server refusing a request).
fn connection_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<ClientError>()
            .is_some_and(|c| !matches!(c, ClientError::Server(_)))
    })
}
