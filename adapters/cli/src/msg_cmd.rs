//! `vserv msg send|read|del` and `vserv msgs`: sealed messages (spec/messages.md). Sealing
//! and opening happen here, on the user's machine; the server only stores sealed bytes.
//!
//! The user's message key is `~/.vserv/message_key` (made on first use, mode 0600, in the
//! format of `vserv keygen --user` files), or the file given with `--message-key`; it is
//! published on the server (`mkey set`) whenever the server holds another one. Recipients'
//! and senders' keys are pinned in `~/.vserv/known_users` (`--known-users`), one `USER KEY`
//! line each, like known_servers: recorded on first contact (and said), a changed key is a
//! hard error naming the file to edit.
//!
//! Both run on an open, logged-in connection (`vserv msg ...` connects for them; in
//! `vserv shell` they use the shell's). Clap shape: `msg` has the subcommands
//! `send USER TEXT` (`-` reads stdin), `read ID` and `del ID`; `msgs [FROM]` lists. (No bare `msg USER TEXT` shorthand: it would make a user
//! named `read` or `del` ambiguous.)

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use vserv_core::ServerKey;
use vserv_core::commands::{Command, MkeyAction, Reply};
use vserv_core::messages::{MessageKey, open, seal};
use vserv_store::known_servers::KnownServers;
use vserv_store::trust::{self, TrustDecision, TrustError};

use crate::client_cmd::Connected;
use crate::credentials::USER_KEY_LABEL;
use crate::show::{escape, escape_text, local_time};

/// Options every message subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct MsgOptions {
    /// Your message key file (default ~/.vserv/message_key, made on first use).
    #[arg(long, value_name = "FILE")]
    pub message_key: Option<PathBuf>,
    /// File of pinned user message keys (default ~/.vserv/known_users).
    #[arg(long, value_name = "FILE")]
    pub known_users: Option<PathBuf>,
}

/// `msg USER TEXT` is short for `msg send USER TEXT`: given the words of a command line
/// whose first command word is at `at`, inserts `send` after a `msg` there when the next
/// word is neither a subcommand (`send`, `read`, `del`, `help`) nor an option. A user named
/// like a subcommand is written `msg send NAME TEXT`.
pub fn expand_shorthand(words: &mut Vec<std::ffi::OsString>, at: usize) {
    if words.get(at).is_none_or(|w| w != "msg") {
        return;
    }
    let Some(next) = words.get(at + 1) else {
        return;
    };
    let is_subcommand = ["send", "read", "del", "help"].iter().any(|s| next == s);
    if !is_subcommand && !next.to_string_lossy().starts_with('-') {
        words.insert(at + 1, "send".into());
    }
}

/// `vserv msg ...`; `C` is the connection options (none in the shell).
#[derive(Args, Debug)]
pub struct MsgArgs<C: Args> {
    #[command(subcommand)]
    action: MsgAction<C>,
}

/// What `vserv msg` does (`vserv msg USER TEXT` is `send`, see [`expand_shorthand`]).
#[derive(Subcommand, Debug)]
enum MsgAction<C: Args> {
    /// Seal TEXT to USER's message key and send it (`-` reads the text from stdin).
    Send {
        /// The recipient.
        #[arg(value_name = "USER")]
        to: String,
        /// The text, or `-` for stdin.
        text: String,
        #[command(flatten)]
        options: MsgOptions,
        #[command(flatten)]
        client: C,
    },
    /// Fetch message ID, open and verify it here, print the sender and the text.
    Read {
        /// The message id (from `vserv msgs`).
        id: u64,
        #[command(flatten)]
        options: MsgOptions,
        #[command(flatten)]
        client: C,
    },
    /// Delete message ID from your mailbox.
    Del {
        /// The message id.
        id: u64,
        #[command(flatten)]
        options: MsgOptions,
        #[command(flatten)]
        client: C,
    },
}

impl<C: Args> MsgArgs<C> {
    /// The connection options given with the command.
    pub fn client(&self) -> &C {
        match &self.action {
            MsgAction::Send { client, .. }
            | MsgAction::Read { client, .. }
            | MsgAction::Del { client, .. } => client,
        }
    }

    /// The subcommand's name, for messages (`send`, `read`, `del`).
    pub fn name(&self) -> &'static str {
        match &self.action {
            MsgAction::Send { .. } => "send",
            MsgAction::Read { .. } => "read",
            MsgAction::Del { .. } => "del",
        }
    }
}

/// `vserv msgs [FROM]`.
#[derive(Args, Debug)]
pub struct MsgsArgs {
    /// Only messages from this user.
    pub from: Option<String>,
    /// One JSON object per message instead of text lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub options: MsgOptions,
}

/// Runs `vserv msg ...` on an open, logged-in connection.
pub fn run<C: Args>(connected: &mut Connected, args: &MsgArgs<C>) -> anyhow::Result<()> {
    match &args.action {
        MsgAction::Send {
            to, text, options, ..
        } => send(connected, options, to, text),
        MsgAction::Read { id, options, .. } => read(connected, options, *id),
        MsgAction::Del { id, .. } => connected.run(&Command::Mdel { id: *id }),
    }
}

/// Runs `vserv msgs [FROM]`: newest first (publishing the message key, made if need be,
/// so that others can write to the user), times in RFC 3339 local time.
pub fn list(connected: &mut Connected, args: &MsgsArgs) -> anyhow::Result<()> {
    let me = me(connected)?;
    let key = message_key(&args.options)?;
    publish(connected, &me, &key)?;
    let Reply::Messages(list) = connected.client.call(&Command::Mlist {
        from: args.from.clone(),
    })?
    else {
        bail!("the server answered mlist with something else");
    };
    for m in &list {
        let state = if m.read { "read" } else { "unread" };
        if args.json {
            let line = serde_json::json!({
                "id": m.id, "from": m.from, "time": m.time, "time_local": local_time(m.time),
                "size": m.size, "read": m.read,
            });
            println!("{line}");
        } else {
            println!(
                "{:>6} {:<6} {} {:>6} {}",
                m.id,
                state,
                local_time(m.time),
                m.size,
                escape(&m.from)
            );
        }
    }
    Ok(())
}

/// The user the connection is logged in as (messages are sealed by and to users).
fn me(connected: &mut Connected) -> anyhow::Result<String> {
    match connected.client.call(&Command::Whoami)? {
        Reply::User { name, .. } => Ok(name),
        _ => bail!("messages need a login (--user NAME, your account)"),
    }
}

fn vserv_dir_file(name: &str) -> anyhow::Result<PathBuf> {
    vserv_store::known_servers::default_path()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .ok_or_else(|| anyhow!("cannot locate ~/.vserv (HOME unset); pass the file explicitly"))
}

/// The user's message key: the given file, else `~/.vserv/message_key`, made (0600) when
/// it does not exist yet.
fn message_key(options: &MsgOptions) -> anyhow::Result<MessageKey> {
    let path = match &options.message_key {
        Some(p) => p.clone(),
        None => vserv_dir_file("message_key")?,
    };
    if !path.exists() {
        let key = MessageKey::generate(&mut rand::rng());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        vserv_store::keyfile::write_secret_key_file(&path, &key.secret_bytes(), USER_KEY_LABEL)?;
        eprintln!("vserv: made your message key {}", path.display());
        return Ok(key);
    }
    let secret = vserv_store::keyfile::read_secret_key_file(&path, USER_KEY_LABEL)
        .with_context(|| format!("reading the message key {}", path.display()))?;
    MessageKey::from_secret_bytes(&secret)
        .map_err(|e| anyhow!("{} does not hold a valid key: {e}", path.display()))
}

/// Publishes `key` as the user's message key unless the server already holds it.
fn publish(c: &mut Connected, me: &str, key: &MessageKey) -> anyhow::Result<()> {
    let public = *key.public().as_bytes();
    match c
        .client
        .call(&Command::Mkey(MkeyAction::Get(me.to_owned())))
    {
        Ok(Reply::MessageKey(k)) if k == public => return Ok(()),
        Ok(_) | Err(vserv_service::client::ClientError::Server(_)) => {}
        Err(e) => return Err(e.into()),
    }
    c.client.call(&Command::Mkey(MkeyAction::Set(public)))?;
    Ok(())
}

fn known_users_path(options: &MsgOptions) -> anyhow::Result<PathBuf> {
    match &options.known_users {
        Some(p) => Ok(p.clone()),
        None => vserv_dir_file("known_users"),
    }
}

/// Checks `key` against the one pinned for `user` in `path`: recorded (and said) on first
/// contact; a different one is a hard error naming the file.
fn pin(path: &Path, user: &str, key: &ServerKey) -> anyhow::Result<bool> {
    let mut known = KnownServers::load(path)?;
    match trust::decide(&mut known, user, key, None) {
        Ok(TrustDecision::FirstContact { fingerprint }) => {
            eprintln!(
                "vserv: first message contact with {user}; recording their key {fingerprint} in {}",
                path.display()
            );
            Ok(false)
        }
        Ok(_) => Ok(true),
        Err(TrustError::KeyChanged {
            known, presented, ..
        }) => bail!(
            "WARNING: the message key of user {user} has changed!\n  recorded:  {known}\n  \
             presented: {presented}\nSomeone (the server?) may be substituting keys, or {user} \
             made a new key. If you are sure, remove the line for {user} from {}.",
            path.display()
        ),
        Err(e) => Err(e.into()),
    }
}

fn send(
    connected: &mut Connected,
    options: &MsgOptions,
    to: &str,
    text: &str,
) -> anyhow::Result<()> {
    let me = me(connected)?;
    let text = if text == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        text.to_owned()
    };
    let key = message_key(options)?;
    let known = known_users_path(options)?;
    publish(connected, &me, &key)?;
    let recipient = match connected
        .client
        .call(&Command::Mkey(MkeyAction::Get(to.to_owned())))?
    {
        Reply::MessageKey(k) => ServerKey::from_bytes(&k)
            .map_err(|_| anyhow!("the server sent an invalid message key for {to}"))?,
        _ => bail!("the server answered mkey with something else"),
    };
    pin(&known, to, &recipient)?;
    let now = vserv_service::unix_now();
    let sealed = seal(
        &key,
        &me,
        &recipient,
        to,
        now,
        text.as_bytes(),
        &mut rand::rng(),
    )?;
    connected.run(&Command::Msend {
        to: to.to_owned(),
        sealed: sealed.to_bytes(),
    })
}

fn read(connected: &mut Connected, options: &MsgOptions, id: u64) -> anyhow::Result<()> {
    let me = me(connected)?;
    let key = message_key(options)?;
    let known = known_users_path(options)?;
    publish(connected, &me, &key)?;
    let Reply::Sealed(sealed) = connected.client.call(&Command::Mread { id })? else {
        bail!("the server answered mread with something else");
    };
    let opened = open(&key, &me, &sealed).context("opening the message")?;
    let verified = pin(&known, &opened.from, &opened.sender_key)?;
    let status = if verified {
        "verified"
    } else {
        "key recorded on first contact, not verified before"
    };
    println!("from: {} ({status})", escape(&opened.from));
    println!("time: {}", local_time(opened.time));
    println!();
    println!("{}", escape_text(&String::from_utf8_lossy(&opened.text)));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn msg_user_text_is_short_for_send() {
        let expand = |line: &str, at: usize| {
            let mut words: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
            super::expand_shorthand(&mut words, at);
            words
                .iter()
                .map(|w| w.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            expand("vserv -v msg alice hi", 2),
            "vserv -v msg send alice hi"
        );
        assert_eq!(expand("msg alice -", 0), "msg send alice -");
        for kept in [
            "msg read 3",
            "msg del 3",
            "msg send read hi",
            "msg --help",
            "msg",
            "ls x",
        ] {
            assert_eq!(expand(kept, 0), kept);
        }
    }
}
