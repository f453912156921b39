//! `vserv tkey new|list|rotate|del|min`, `vserv seal`, `vserv unseal`, `vserv rewrap` and
//! `vserv gk`: encryption as a service (spec/transit.md). The server keeps the keys; the
//! client only ever sees tokens, the data it sealed, and fresh random bytes.
//!
//! Files go through stdin and stdout: `vserv seal NAME -` (or without DATA) reads stdin to
//! its end and seals it in pieces of at most [`MAX_SEAL_DATA`] bytes, printing one token per
//! line, in order; `vserv unseal NAME -` (or without TOKEN) reads such lines and writes the
//! pieces' data to stdout, in order, so `vserv unseal NAME < sealed` gives back the file.
//! `vserv rewrap NAME -` rewraps each line the same way.

use std::io::{BufRead, Read, Write};

use anyhow::{Context, bail};
use base64ct::{Base64, Encoding};
use clap::{Args, Subcommand};
use vserv_core::commands::{Command, GK_DEFAULT_BYTES, Reply, TkeyAction, TransitKeyInfo};
use vserv_core::transit::MAX_SEAL_DATA;

use crate::client_cmd::Connected;
use crate::show::escape;

/// `vserv tkey` options; `C` is the connection options (none in the shell).
#[derive(Args, Debug)]
pub struct TkeyArgs<C: Args> {
    #[command(subcommand)]
    command: TkeyCommand<C>,
}

/// The transit key commands.
#[derive(Subcommand, Debug)]
enum TkeyCommand<C: Args> {
    /// Make a new transit key NAME (version 1).
    New {
        /// The key's name (1 to 32 of a-z, 0-9, '.', '_', '-').
        name: String,
        #[command(flatten)]
        client: C,
    },
    /// List your transit keys: name, newest version, minimum version, creation time.
    List {
        /// A JSON array instead of text: `[{"name", "latest", "min_version", "created"}]`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: C,
    },
    /// Give key NAME a new version: it seals from now on; older versions still unseal.
    Rotate {
        /// The key.
        name: String,
        #[command(flatten)]
        client: C,
    },
    /// Delete key NAME and every version: its tokens never open again.
    Del {
        /// The key.
        name: String,
        #[command(flatten)]
        client: C,
    },
    /// Retire the versions of USER's key NAME below VERSION (they no longer unseal or
    /// rewrap); your own keys, or any user's for admins. A lower VERSION brings them back.
    Min {
        /// The key's owner (yourself, unless you are an admin).
        #[arg(value_name = "USER")]
        owner: String,
        /// The key.
        name: String,
        /// The lowest version still allowed.
        #[arg(value_name = "VERSION")]
        min_version: u32,
        #[command(flatten)]
        client: C,
    },
}

impl<C: Args> TkeyArgs<C> {
    /// The connection options given with the command.
    pub fn client(&self) -> &C {
        match &self.command {
            TkeyCommand::New { client, .. }
            | TkeyCommand::List { client, .. }
            | TkeyCommand::Rotate { client, .. }
            | TkeyCommand::Del { client, .. }
            | TkeyCommand::Min { client, .. } => client,
        }
    }

    /// The subcommand's name, for messages.
    pub fn name(&self) -> &'static str {
        match &self.command {
            TkeyCommand::New { .. } => "new",
            TkeyCommand::List { .. } => "list",
            TkeyCommand::Rotate { .. } => "rotate",
            TkeyCommand::Del { .. } => "del",
            TkeyCommand::Min { .. } => "min",
        }
    }
}

/// `vserv seal NAME [DATA|-]`.
#[derive(Args, Debug)]
pub struct SealArgs {
    /// Your transit key.
    name: String,
    /// The data; `-` or nothing reads stdin to its end and prints one token per line, one
    /// per 12000 bytes (unseal the lines, in order, to get the file back).
    data: Option<String>,
}

/// `vserv unseal NAME [TOKEN|-]`.
#[derive(Args, Debug)]
pub struct UnsealArgs {
    /// Your transit key.
    name: String,
    /// The token; `-` or nothing reads tokens from stdin, one per line, and writes their
    /// data to stdout in order (the inverse of `vserv seal NAME -`).
    token: Option<String>,
}

/// `vserv rewrap NAME [TOKEN|-]`.
#[derive(Args, Debug)]
pub struct RewrapArgs {
    /// Your transit key.
    name: String,
    /// The token; `-` or nothing rewraps each line of stdin, printing one token per line.
    token: Option<String>,
}

/// `vserv gk [BYTES] [--hex|--base64]`.
#[derive(Args, Debug)]
pub struct GkArgs {
    /// How many random bytes (1 to 1024; default 32).
    bytes: Option<u32>,
    /// Print them as lower-case hex (the default).
    #[arg(long, conflicts_with = "base64")]
    hex: bool,
    /// Print them as standard base64 (with padding).
    #[arg(long)]
    base64: bool,
}

/// Whether an optional DATA or TOKEN argument means stdin.
fn from_stdin(arg: Option<&str>) -> bool {
    arg.is_none_or(|a| a == "-")
}

/// Runs `cmd` and returns its reply.
fn call(connected: &mut Connected, cmd: &Command) -> anyhow::Result<Reply> {
    Ok(connected.client.call(cmd)?)
}

/// Runs a `vserv tkey` command on an open connection.
pub fn tkey<C: Args>(connected: &mut Connected, args: &TkeyArgs<C>) -> anyhow::Result<()> {
    let (action, json) = match &args.command {
        TkeyCommand::New { name, .. } => (TkeyAction::New(name.clone()), false),
        TkeyCommand::List { json, .. } => (TkeyAction::List, *json),
        TkeyCommand::Rotate { name, .. } => (TkeyAction::Rotate(name.clone()), false),
        TkeyCommand::Del { name, .. } => (TkeyAction::Del(name.clone()), false),
        TkeyCommand::Min {
            owner,
            name,
            min_version,
            ..
        } => (
            TkeyAction::Min {
                user: owner.clone(),
                name: name.clone(),
                version: *min_version,
            },
            false,
        ),
    };
    let cmd = Command::Tkey(action);
    match call(connected, &cmd)? {
        Reply::KeyVersion(v) => println!("version {v}"),
        Reply::Done => println!("ok"),
        Reply::TransitKeys(keys) if json => println!("{}", keys_json(&keys)),
        Reply::TransitKeys(keys) => print!("{}", keys_text(&keys)),
        other => bail!("unexpected reply to tkey {}: {other:?}", args.name()),
    }
    Ok(())
}

/// `tkey list` as text: one key a line.
pub fn keys_text(keys: &[TransitKeyInfo]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "{} latest {} min {} created {}\n",
                escape(&k.name),
                k.latest,
                k.min_version,
                crate::show::local_time(k.created)
            )
        })
        .collect()
}

/// `tkey list --json`: `[{"name", "latest", "min_version", "created"}]` (created in Unix
/// seconds).
pub fn keys_json(keys: &[TransitKeyInfo]) -> serde_json::Value {
    keys.iter()
        .map(|k| {
            serde_json::json!({
                "name": k.name,
                "latest": k.latest,
                "min_version": k.min_version,
                "created": k.created,
            })
        })
        .collect()
}

/// The token of a `seal` or `rewrap` reply.
fn token_of(reply: Reply, what: &str) -> anyhow::Result<String> {
    match reply {
        Reply::Token(t) => Ok(t),
        other => bail!("unexpected reply to {what}: {other:?}"),
    }
}

/// Pieces of a stream handled per pipelined batch (bounds memory: 32 x 12000 bytes).
const BATCH: usize = 32;
/// Requests of a batch in flight at once, so the server works while this side seals and
/// writes.
const WINDOW: usize = 8;

/// Runs `commands` pipelined; the replies in order, the first failure naming its item
/// (`first` is the 1-based number of the batch's first item).
fn call_batch(
    connected: &mut Connected,
    commands: &[Command],
    first: usize,
    item: &str,
) -> anyhow::Result<Vec<Reply>> {
    connected
        .client
        .call_pipelined(commands, WINDOW)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("{item} {}", first + i)))
        .collect()
}

/// `vserv seal`: one token for DATA, or one token per piece of stdin (pipelined).
pub fn seal(connected: &mut Connected, args: &SealArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let seal_cmd = |data: &[u8]| Command::Seal {
        name: args.name.clone(),
        data: data.to_vec(),
    };
    if !from_stdin(args.data.as_deref()) {
        let data = args.data.as_deref().unwrap_or_default().as_bytes();
        if data.len() > MAX_SEAL_DATA {
            bail!(
                "seal takes at most {MAX_SEAL_DATA} bytes as an argument; pipe larger data \
                 through stdin (`vserv seal {} - < FILE`)",
                args.name
            );
        }
        let token = token_of(call(connected, &seal_cmd(data))?, "seal")?;
        return writeln!(out, "{token}").context("writing to stdout");
    }
    let mut stdin = std::io::stdin().lock();
    let mut piece = vec![0u8; MAX_SEAL_DATA];
    let mut done = 0;
    let mut ended = false;
    while !ended {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH && !ended {
            let n = read_full(&mut stdin, &mut piece).context("reading stdin")?;
            // Empty input still gets one token (of nothing); a last short piece ends it.
            if n > 0 || done + batch.len() == 0 {
                batch.push(seal_cmd(&piece[..n]));
            }
            ended = n < piece.len();
        }
        for reply in call_batch(connected, &batch, done + 1, "piece")? {
            writeln!(out, "{}", token_of(reply, "seal")?).context("writing to stdout")?;
        }
        done += batch.len();
    }
    out.flush().context("writing to stdout")
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The tokens of stdin: one per line, blank lines skipped, surrounding spaces and `\r`
/// dropped.
fn stdin_tokens() -> impl Iterator<Item = anyhow::Result<String>> {
    std::io::stdin()
        .lock()
        .lines()
        .map(|line| {
            line.map(|l| l.trim().to_owned())
                .context("reading tokens from stdin")
        })
        .filter(|l| l.as_ref().map_or(true, |l| !l.is_empty()))
}

/// Runs `command` on TOKEN, or on every token of stdin in pipelined batches, and hands each
/// reply to `emit` in order.
fn per_token(
    connected: &mut Connected,
    token: Option<&str>,
    command: impl Fn(&str) -> Command,
    mut emit: impl FnMut(Reply) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if let Some(token) = token.filter(|t| *t != "-") {
        return emit(call(connected, &command(token.trim()))?);
    }
    let mut tokens = stdin_tokens();
    let mut done = 0;
    loop {
        let batch: Vec<Command> = tokens
            .by_ref()
            .take(BATCH)
            .map(|t| t.map(|t| command(&t)))
            .collect::<anyhow::Result<_>>()?;
        if batch.is_empty() {
            return Ok(());
        }
        for reply in call_batch(connected, &batch, done + 1, "token")? {
            emit(reply)?;
        }
        done += batch.len();
    }
}

/// `vserv unseal`: the data of TOKEN, or of every token of stdin in order, to stdout.
pub fn unseal(connected: &mut Connected, args: &UnsealArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let command = |token: &str| Command::Unseal {
        name: args.name.clone(),
        token: token.as_bytes().to_vec(),
    };
    per_token(
        connected,
        args.token.as_deref(),
        command,
        |reply| match reply {
            Reply::Unsealed(data) => out.write_all(&data).context("writing to stdout"),
            other => bail!("unexpected reply to unseal: {other:?}"),
        },
    )?;
    out.flush().context("writing to stdout")
}

/// `vserv rewrap`: TOKEN, or every token of stdin, under the key's newest version.
pub fn rewrap(connected: &mut Connected, args: &RewrapArgs) -> anyhow::Result<()> {
    let command = |token: &str| Command::Rewrap {
        name: args.name.clone(),
        token: token.as_bytes().to_vec(),
    };
    per_token(connected, args.token.as_deref(), command, |reply| {
        println!("{}", token_of(reply, "rewrap")?);
        Ok(())
    })
}

/// `vserv gk`: fresh random bytes from the server, as hex or base64.
pub fn gk(connected: &mut Connected, args: &GkArgs) -> anyhow::Result<()> {
    let cmd = Command::Gk { bytes: args.bytes };
    let bytes = match call(connected, &cmd)? {
        Reply::KeyMaterial(b) => zeroize::Zeroizing::new(b),
        other => bail!("unexpected reply to gk: {other:?}"),
    };
    let want = args.bytes.unwrap_or(GK_DEFAULT_BYTES) as usize;
    if bytes.len() != want {
        bail!("the server sent {} bytes, not {want}", bytes.len());
    }
    let text = if args.base64 {
        zeroize::Zeroizing::new(Base64::encode_string(&bytes))
    } else {
        zeroize::Zeroizing::new(hex::encode(&*bytes))
    };
    println!("{}", *text);
    Ok(())
}
