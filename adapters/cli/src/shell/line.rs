//! One shell line: split like a POSIX shell would (`shlex`), then parsed by clap into the
//! same command forms `vserv X ...` takes ([`Op`]), or one of the shell's own commands.

use clap::{Parser, Subcommand};

use crate::ops::{NoClient, Op};
use crate::user_cmd::UserArgs;

/// A line typed in `vserv shell`.
#[derive(Parser, Debug)]
#[command(
    name = "",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true,
    subcommand_required = true
)]
pub struct Line {
    /// The command.
    #[command(subcommand)]
    pub command: ShellCommand,
}

/// What a shell line asks for.
#[derive(Subcommand, Debug)]
pub enum ShellCommand {
    /// A command as `vserv X` takes it, run on the shell's connection.
    #[command(flatten)]
    Op(Op<NoClient>),
    /// Manage user accounts and your login keys (`user --help` lists them).
    User(UserArgs<NoClient, NoClient>),
    /// List the server's commands, or describe one; then what the shell adds.
    Help {
        /// Command to describe.
        topic: Option<String>,
    },
    /// Change the session's working directory on the server (kept across reconnections).
    Cd {
        /// The new working directory.
        dir: String,
    },
    /// Show the session's working directory on the server.
    Pwd,
    /// End the login; the connection stays open, anonymous, and is not logged in again.
    Logout,
    /// Leave the shell (also: quit, or end of input).
    #[command(alias = "quit")]
    Exit,
}

/// What parsing a line gave.
#[derive(Debug)]
pub enum Parsed {
    /// Nothing to run: an empty line or a `#` comment.
    Empty,
    /// A command to run.
    Command(Box<ShellCommand>),
    /// Text to show instead of running anything (`CMD --help`): not a failure.
    Help(String),
}

/// Why a line could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// An unterminated quote or a trailing backslash.
    #[error("unbalanced quotes or a trailing backslash in the line")]
    Quoting,
    /// Not a command, or its arguments do not fit it.
    #[error("{0}")]
    Usage(String),
}

/// Splits and parses `text`.
pub fn parse(text: &str) -> Result<Parsed, LineError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(Parsed::Empty);
    }
    let words = shlex::split(trimmed).ok_or(LineError::Quoting)?;
    let mut words: Vec<std::ffi::OsString> = words.into_iter().map(Into::into).collect();
    crate::msg_cmd::expand_shorthand(&mut words, 0);
    match Line::try_parse_from(words) {
        Ok(line) => Ok(Parsed::Command(Box::new(line.command))),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                Ok(Parsed::Help(e.render().to_string()))
            }
            _ => Err(LineError::Usage(usage_text(&e))),
        },
    }
}

/// A clap error as one or a few plain lines (no `error: ` prefix, no colours).
fn usage_text(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let text = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The subcommand names of `command` (`user`: `add`, `del`, ...), sorted; empty for a
/// command without subcommands.
pub fn subcommand_names(command: &str) -> Vec<String> {
    use clap::CommandFactory;
    let line = Line::command();
    let mut names: Vec<String> = line
        .find_subcommand(command)
        .map(|c| {
            c.get_subcommands()
                .map(|s| s.get_name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The names of every command a line can start with, sorted.
pub fn command_names() -> Vec<String> {
    use clap::CommandFactory;
    let mut names: Vec<String> = Line::command()
        .get_subcommands()
        .flat_map(|c| {
            std::iter::once(c.get_name().to_owned()).chain(c.get_all_aliases().map(str::to_owned))
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str) -> ShellCommand {
        match parse(text) {
            Ok(Parsed::Command(c)) => *c,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn lines_parse_into_the_cli_forms() {
        assert!(matches!(parse("   ").ok(), Some(Parsed::Empty)));
        assert!(matches!(parse("# note").ok(), Some(Parsed::Empty)));
        match command("rput note 'text=two words' --id r1") {
            ShellCommand::Op(Op::Rput { args, .. }) => {
                assert_eq!(args.kind, "note");
                assert_eq!(args.body, ["text=two words"]);
                assert_eq!(args.id.as_deref(), Some("r1"));
            }
            other => panic!("{other:?}"),
        }
        match command("cd \"my dir\"") {
            ShellCommand::Cd { dir } => assert_eq!(dir, "my dir"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(command("quit"), ShellCommand::Exit));
        assert!(matches!(
            command("whoami"),
            ShellCommand::Op(Op::Whoami { .. })
        ));
        match command("mkdir -p a/b") {
            ShellCommand::Op(Op::Mkdir { args, .. }) => assert!(args.parents),
            other => panic!("{other:?}"),
        }
        match command("put -r src up") {
            ShellCommand::Op(Op::Put { args, .. }) => assert!(args.recursive),
            other => panic!("{other:?}"),
        }
        match command("restore f.txt 2") {
            ShellCommand::Op(Op::Restore { args, .. }) => assert_eq!(args.number, 2),
            other => panic!("{other:?}"),
        }
        match command("inbox setup box --allow alice bob") {
            ShellCommand::Op(op @ Op::Inbox { .. }) => assert_eq!(op.name(), "inbox setup"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_lines_are_errors_and_help_is_not() {
        assert!(matches!(parse("ls 'open"), Err(LineError::Quoting)));
        assert!(matches!(parse("frobnicate"), Err(LineError::Usage(_))));
        // Connection options belong to `vserv shell` itself, not to a line.
        assert!(matches!(parse("ls --server x:1"), Err(LineError::Usage(_))));
        match parse("put --help") {
            Ok(Parsed::Help(text)) => assert!(text.contains("--resume"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_cover_the_cli_and_shell_commands() {
        let names = command_names();
        for name in [
            "put", "get", "rput", "cd", "pwd", "logout", "exit", "quit", "whoami",
        ] {
            assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
        }
        assert!(subcommand_names("user").contains(&"passwd".to_owned()));
        assert_eq!(subcommand_names("peer"), ["add", "del", "status"]);
        assert_eq!(subcommand_names("inbox"), ["setup"]);
        assert!(subcommand_names("put").is_empty());
    }
}
