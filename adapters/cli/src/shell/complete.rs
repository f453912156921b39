//! Tab completion for the shell: command names (also after `help`) and subcommand names
//! (`user add`), then by command and argument position remote paths (listed on the shell's
//! connection), local paths, or user names (the server's user list when this user may see
//! it, else `~/.vserv/known_users`).

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::shell::session::Session;

/// What an argument of a command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    /// A path on the server.
    Remote,
    /// A path on this machine.
    Local,
    /// A user name.
    User,
    /// Nothing to complete.
    Other,
}

/// What the `n`th positional argument (0-based) of `command` names.
fn arg_kind(command: &str, n: usize) -> Arg {
    match (command, n) {
        ("put", _) => Arg::Local,
        ("get", 0) => Arg::Remote,
        ("get", _) => Arg::Local,
        ("ls" | "cd" | "rm" | "mv" | "stat" | "mkdir" | "versions" | "restore", _) => Arg::Remote,
        ("send", 0) | ("msg" | "msgs", 0) => Arg::User,
        ("send", 1) => Arg::Local,
        ("inbox", 0) => Arg::User,
        _ => Arg::Other,
    }
}

/// The shell's line helper: completion only (no hints, colours or multi-line input).
pub struct ShellHelper {
    session: Arc<Mutex<Session>>,
    names: Vec<String>,
    files: FilenameCompleter,
}

impl ShellHelper {
    /// A helper completing against `session`'s connection.
    pub fn new(session: Arc<Mutex<Session>>) -> ShellHelper {
        ShellHelper {
            session,
            names: super::line::command_names(),
            files: FilenameCompleter::new(),
        }
    }

    fn users(&self) -> Vec<String> {
        if let Some(names) = super::notices::lock(&self.session).user_names() {
            return names;
        }
        let Some(path) = vserv_store::known_servers::default_path()
            .and_then(|p| p.parent().map(|dir| dir.join("known_users")))
        else {
            return Vec::new();
        };
        std::fs::read_to_string(path)
            .map(|text| {
                text.lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .filter(|w| !w.starts_with('#'))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn remote(&self, word: &str) -> Vec<Pair> {
        let (dir, prefix) = match word.rfind('/') {
            Some(i) => (Some(&word[..=i]), &word[i + 1..]),
            None => (None, word),
        };
        let names = super::notices::lock(&self.session).remote_names(dir);
        names
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .map(|n| {
                let full = format!("{}{n}", dir.unwrap_or(""));
                let replacement = if n.ends_with('/') {
                    quoted(&full)
                } else {
                    format!("{} ", quoted(&full))
                };
                Pair {
                    display: n,
                    replacement,
                }
            })
            .collect()
    }
}

/// `text` quoted for a shell line when it needs it.
fn quoted(text: &str) -> String {
    shlex::try_quote(text).map_or_else(|_| text.to_owned(), |q| q.into_owned())
}

/// Candidates from `names` that start with `word`, each followed by a space.
fn words(names: impl IntoIterator<Item = String>, word: &str) -> Vec<Pair> {
    names
        .into_iter()
        .filter(|n| n.starts_with(word))
        .map(|n| Pair {
            replacement: format!("{} ", quoted(&n)),
            display: n,
        })
        .collect()
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line.get(..pos).unwrap_or(line);
        let start = before.rfind(char::is_whitespace).map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
        let word = &before[start..];
        let mut previous = before[..start].split_whitespace();
        let Some(command) = previous.next() else {
            return Ok((start, words(self.names.iter().cloned(), word)));
        };
        if word.starts_with('-') {
            return Ok((start, Vec::new()));
        }
        let n = previous.filter(|w| !w.starts_with('-')).count();
        if n == 0 {
            if command == "help" {
                return Ok((start, words(self.names.iter().cloned(), word)));
            }
            let subcommands = super::line::subcommand_names(command);
            if !subcommands.is_empty() {
                return Ok((start, words(subcommands, word)));
            }
        }
        let candidates = match arg_kind(command, n) {
            Arg::Remote => self.remote(word),
            Arg::Local => return self.files.complete(line, pos, ctx),
            Arg::User => words(self.users(), word),
            Arg::Other => Vec::new(),
        };
        Ok((start, candidates))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_what_they_should() {
        assert_eq!(arg_kind("put", 0), Arg::Local);
        assert_eq!(arg_kind("get", 0), Arg::Remote);
        assert_eq!(arg_kind("get", 1), Arg::Local);
        assert_eq!(arg_kind("cd", 0), Arg::Remote);
        assert_eq!(arg_kind("send", 0), Arg::User);
        assert_eq!(arg_kind("send", 1), Arg::Local);
        assert_eq!(arg_kind("rput", 0), Arg::Other);
    }

    #[test]
    fn candidates_are_quoted_and_filtered() {
        let got = words(["alice".into(), "al bo".into(), "bob".into()], "al");
        let replacements: Vec<&str> = got.iter().map(|p| p.replacement.as_str()).collect();
        assert_eq!(replacements, ["alice ", "'al bo' "]);
    }
}
