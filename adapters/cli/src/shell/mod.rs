//! `vserv shell`: one connection, logged in once, running every client command typed on
//! it. On a terminal: line editing, persistent history (`~/.vserv/history`, 0600) and tab
//! completion; otherwise commands are read from standard input one per line, and the exit
//! status says whether any failed.

mod complete;
mod history;
mod line;
mod notices;
mod session;

use std::io::{BufRead, IsTerminal};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::Args;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{Config, Editor};

use crate::client_cmd::ClientArgs;
use line::Parsed;
use session::{Flow, Session};

/// `vserv shell` options: only how to connect and log in.
#[derive(Args, Debug)]
pub struct ShellArgs {
    #[command(flatten)]
    client: ClientArgs,
}

/// What `help` adds below the server's catalogue in the shell.
pub const SHELL_HELP: &str = "\
In this shell, commands take the same forms as `vserv COMMAND` without the connection \
options (`COMMAND --help` shows one), plus:
  user ...        account and login key commands (`user --help`)
  cd DIR, pwd     the session's working directory on the server
  logout          end the login (the connection stays, anonymous)
  exit, quit      leave (also Ctrl-D)
Server notices (a message or delivery arrived, the session about to idle out) appear \
above the prompt. The server closes a session left idle longer than its idle timeout (see \
`tout`): the shell then connects and logs in again on the next command, with the \
credential it holds in memory only, and returns to the directory set with cd.
";

/// Runs the shell until `exit` or the end of input.
pub fn run(args: ShellArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let session = Session::open(args.client)?;
    if interactive {
        interactive_loop(session)
    } else {
        script_loop(session)
    }
}

/// Runs one parsed line; prints what went wrong. `Err(())` when the line failed.
fn run_line(session: &mut Session, text: &str, place: &str) -> Result<Flow, ()> {
    match line::parse(text) {
        Ok(Parsed::Empty) => Ok(Flow::Continue),
        Ok(Parsed::Help(help)) => {
            print!("{help}");
            Ok(Flow::Continue)
        }
        Ok(Parsed::Command(command)) => session.run(&command).map_err(|e| {
            eprintln!("vserv: {place}{}", crate::one_line(&e));
        }),
        Err(e) => {
            eprintln!("vserv: {place}{e}");
            Err(())
        }
    }
}

/// Standard input is not a terminal: one command per line, each result printed; fails
/// (after running every line) when any line failed.
fn script_loop(mut session: Session) -> anyhow::Result<()> {
    let mut failed = 0usize;
    for (n, text) in std::io::stdin().lock().lines().enumerate() {
        let text = text.context("reading commands from standard input")?;
        let flow = run_line(&mut session, &text, &format!("line {}: ", n + 1));
        for notice in session.take_notices() {
            eprintln!("{notice}");
        }
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(()) => failed += 1,
        }
    }
    if let Err(e) = session.run(&line::ShellCommand::Exit) {
        tracing::debug!(error = %e, "ending the session failed");
    }
    if failed > 0 {
        bail!("{failed} command(s) failed");
    }
    Ok(())
}

/// A terminal: line editing, history and completion until `exit` or Ctrl-D.
fn interactive_loop(session: Session) -> anyhow::Result<()> {
    let session = Arc::new(Mutex::new(session));
    let config = Config::builder()
        .history_ignore_space(true)
        .history_ignore_dups(true)?
        .max_history_size(10_000)?
        .auto_add_history(false)
        .build();
    let mut editor: Editor<complete::ShellHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(complete::ShellHelper::new(Arc::clone(&session))));
    // Server notices appear above the prompt, the typed line kept.
    let _poller = match editor.create_external_printer() {
        Ok(printer) => Some(notices::NoticePoller::start(
            Arc::clone(&session),
            Box::new(notices::AbovePrompt(printer)),
        )),
        Err(e) => {
            tracing::debug!(error = %e, "no external printer: notices shown after commands");
            None
        }
    };
    let history = history::path();
    if let Some(path) = &history {
        history::load(&mut editor, path);
    }
    loop {
        let prompt = {
            let s = notices::lock(&session);
            match s.user() {
                Some(user) => format!("{user}@{}> ", s.server()),
                None => format!("{}> ", s.server()),
            }
        };
        let text = match editor.readline(&prompt) {
            Ok(text) => text,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(anyhow::Error::new(e).context("reading a line")),
        };
        if !text.trim().is_empty() {
            if let Err(e) = editor.add_history_entry(text.as_str()) {
                tracing::debug!(error = %e, "history entry not added");
            }
            if let Some(path) = &history {
                history::save(&mut editor, path);
            }
        }
        let flow = {
            let mut s = notices::lock(&session);
            let flow = run_line(&mut s, &text, "");
            for notice in s.take_notices() {
                eprintln!("{notice}");
            }
            flow
        };
        if flow == Ok(Flow::Exit) {
            break;
        }
    }
    if let Err(e) = notices::lock(&session).run(&line::ShellCommand::Exit) {
        tracing::debug!(error = %e, "ending the session failed");
    }
    Ok(())
}
