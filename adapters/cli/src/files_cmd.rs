//! The file subcommands: `put`, `get` (transfers with a window, SHA-256 checked, resumable),
//! `ls`, `mkdir`, `rm`, `mv`, `stat`, and the deliveries `send` and `inbox`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use vserv_blocking::transfer::{self, TransferOptions, TransferOutcome};
use vserv_core::ErrorCode;
use vserv_core::commands::{Command, LS_MAX_LIMIT, ListPage, Reply, SendArgs as SendCommand};
use vserv_service::client::ClientError;

use crate::client_cmd::{self, ClientArgs, Connected};

/// `vserv put` options.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// The local file to upload.
    pub local: PathBuf,
    /// Where it goes on the server (default: the local file's name in the working
    /// directory; a path ending in `/` is a directory to put it in).
    pub remote: Option<String>,
    /// Continue an interrupted upload of the same file where the server stopped.
    #[arg(long)]
    pub resume: bool,
    /// Chunk requests kept in flight (1-256).
    #[arg(long, default_value_t = transfer::DEFAULT_WINDOW as u16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub window: u16,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `vserv get` options.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The file on the server.
    pub remote: String,
    /// Where to write it (default: its name in the current directory; an existing
    /// directory receives it under its name). It appears only once its SHA-256 matched.
    pub local: Option<PathBuf>,
    /// Continue from the partial copy an interrupted download left (`NAME.vserv-part`).
    #[arg(long)]
    pub resume: bool,
    /// Chunk requests kept in flight (1-256).
    #[arg(long, default_value_t = transfer::DEFAULT_WINDOW as u16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub window: u16,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `vserv ls` options.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// The directory (default: the working directory, the home's root).
    pub dir: Option<String>,
    /// Directories only.
    #[arg(long)]
    pub dirs: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Options of the commands taking one server path (`mkdir`, `stat`).
#[derive(Args, Debug)]
pub struct PathArgs {
    /// The path on the server.
    pub path: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `vserv rm` options.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// The file (or, with --dir, the empty directory) to delete.
    pub path: String,
    /// Delete an empty directory instead of a file.
    #[arg(long)]
    pub dir: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `vserv mv` options.
#[derive(Args, Debug)]
pub struct MvArgs {
    /// What to move.
    pub from: String,
    /// Its new path (in the same home).
    pub to: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `vserv send` options.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// The recipient's user name.
    pub to: String,
    /// The local file to deliver.
    pub local: PathBuf,
    /// The recipient's inbox folder (default: `default`).
    #[arg(long)]
    pub folder: Option<String>,
    /// A note for the recipient (at most 256 bytes, one line).
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `vserv inbox` options.
#[derive(Args, Debug)]
pub struct InboxArgs {
    /// The inbox folder (default: `default`).
    pub folder: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The directory of the sender's home where `vserv send` stages a file before delivering it.
pub const STAGING_DIR: &str = "outbox";

fn need_login(client: &ClientArgs, what: &str) -> anyhow::Result<()> {
    if client.user.is_none() {
        bail!("`vserv {what}` needs a login: add --user NAME (and --key FILE for a key)");
    }
    Ok(())
}

/// A byte progress bar on standard error when it is a terminal, hidden otherwise.
fn progress_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

fn report(verb: &str, from: &str, to: &str, outcome: &TransferOutcome) {
    let resumed = if outcome.resumed_from > 0 {
        format!(" (resumed at {})", outcome.resumed_from)
    } else {
        String::new()
    };
    println!(
        "{verb} {from} -> {to}: {} bytes sha256 {}{resumed}",
        outcome.size,
        hex::encode(outcome.sha256)
    );
}

/// The server path a `put` writes: REMOTE, REMOTE/NAME for a REMOTE ending in `/`, or NAME.
fn remote_target(local: &Path, remote: Option<&str>) -> anyhow::Result<String> {
    let name = || {
        local
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "{} has no UTF-8 file name; give the REMOTE path",
                    local.display()
                )
            })
    };
    Ok(match remote {
        None => name()?,
        Some(r) if r.ends_with('/') => format!("{r}{}", name()?),
        Some(r) => r.to_owned(),
    })
}

/// The local path a `get` writes: LOCAL, LOCAL/NAME for an existing directory, or NAME.
fn local_target(remote: &str, local: Option<&Path>) -> anyhow::Result<PathBuf> {
    let name = remote
        .rsplit('/')
        .find(|part| !part.is_empty() && *part != "." && *part != "~")
        .filter(|part| !part.starts_with('~'))
        .ok_or_else(|| anyhow!("'{remote}' names no file; give the LOCAL path"))?;
    Ok(match local {
        None => PathBuf::from(name),
        Some(dir) if dir.is_dir() => dir.join(name),
        Some(path) => path.to_owned(),
    })
}

/// `vserv put LOCAL [REMOTE] [--resume]`.
pub fn put(args: PutArgs) -> anyhow::Result<()> {
    need_login(&args.client, "put")?;
    let remote = remote_target(&args.local, args.remote.as_deref())?;
    if !args.local.is_file() {
        bail!("{} is not a file", args.local.display());
    }
    let mut connected = client_cmd::connect(&args.client)?;
    let bar = progress_bar("put");
    let options = TransferOptions {
        resume: args.resume,
        window: usize::from(args.window),
    };
    let outcome = transfer::put_with(
        &mut connected.client,
        &args.local,
        &remote,
        &options,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let outcome =
        outcome.with_context(|| format!("uploading {} to {remote}", args.local.display()))?;
    report("put", &args.local.display().to_string(), &remote, &outcome);
    connected.quit()
}

/// `vserv get REMOTE [LOCAL] [--resume]`.
pub fn get(args: GetArgs) -> anyhow::Result<()> {
    need_login(&args.client, "get")?;
    let local = local_target(&args.remote, args.local.as_deref())?;
    let mut connected = client_cmd::connect(&args.client)?;
    let bar = progress_bar("get");
    let options = TransferOptions {
        resume: args.resume,
        window: usize::from(args.window),
    };
    let outcome = transfer::get_with(
        &mut connected.client,
        &args.remote,
        &local,
        &options,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let outcome =
        outcome.with_context(|| format!("downloading {} to {}", args.remote, local.display()))?;
    report("get", &args.remote, &local.display().to_string(), &outcome);
    connected.quit()
}

/// `vserv ls [DIR]`: every entry, one line each (`KIND SIZE MTIME NAME`), pages followed.
pub fn ls(args: LsArgs) -> anyhow::Result<()> {
    need_login(&args.client, "ls")?;
    let mut connected = client_cmd::connect(&args.client)?;
    let mut out = std::io::stdout().lock();
    let mut from: Option<String> = None;
    loop {
        let page = ListPage {
            dir: args.dir.clone(),
            from: from.take(),
            limit: Some(LS_MAX_LIMIT),
        };
        let command = if args.dirs {
            Command::Lsd(page)
        } else {
            Command::Ls(page)
        };
        let Reply::Listing { entries, next } = connected.client.call(&command)? else {
            bail!("unexpected reply to ls");
        };
        for e in &entries {
            writeln!(
                out,
                "{} {} {} {}",
                e.kind.as_str(),
                e.size,
                e.modified,
                e.name
            )?;
        }
        match next {
            Some(name) => from = Some(name),
            None => break,
        }
    }
    out.flush()?;
    drop(out);
    connected.quit()
}

/// `vserv send USER LOCAL [--folder NAME] [--note TEXT]`: uploads LOCAL to
/// `outbox/NAME` in the sender's home (created if missing), asks the server to deliver it,
/// then deletes the staged copy (whatever the outcome).
pub fn send(args: SendArgs) -> anyhow::Result<()> {
    need_login(&args.client, "send")?;
    let staged = remote_target(&args.local, Some(&format!("{STAGING_DIR}/")))?;
    if !args.local.is_file() {
        bail!("{} is not a file", args.local.display());
    }
    let mut connected = client_cmd::connect(&args.client)?;
    let mkdir = Command::Mkdir {
        path: STAGING_DIR.into(),
    };
    match connected.client.call(&mkdir) {
        Ok(_) => {}
        Err(ClientError::Server(e)) if e.code == ErrorCode::Conflict => {}
        Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {STAGING_DIR}"))),
    }
    let bar = progress_bar("send");
    let outcome = transfer::put_with(
        &mut connected.client,
        &args.local,
        &staged,
        &TransferOptions::default(),
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let outcome =
        outcome.with_context(|| format!("uploading {} to {staged}", args.local.display()))?;
    let command = Command::Send(SendCommand {
        to: args.to.clone(),
        path: staged.clone(),
        folder: args.folder.clone(),
        note: args.note.clone(),
    });
    let delivered = connected.client.call(&command);
    if let Err(e) = connected.client.call(&Command::Del {
        path: staged.clone(),
    }) {
        eprintln!("vserv: could not delete the staged copy {staged}: {e}");
    }
    let name = match delivered {
        Ok(Reply::Delivered(name)) => name,
        Ok(_) => bail!("unexpected reply to send"),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("delivering to {}", args.to))),
    };
    println!(
        "sent {} -> {} {}/{name}: {} bytes sha256 {}",
        args.local.display(),
        args.to,
        args.folder
            .as_deref()
            .unwrap_or(vserv_core::commands::DEFAULT_INBOX_FOLDER),
        outcome.size,
        hex::encode(outcome.sha256)
    );
    connected.quit()
}

/// `vserv inbox [FOLDER]`: every delivery, pages followed.
pub fn inbox(args: InboxArgs) -> anyhow::Result<()> {
    need_login(&args.client, "inbox")?;
    let mut connected = client_cmd::connect(&args.client)?;
    let mut out = std::io::stdout().lock();
    let mut from: Option<String> = None;
    loop {
        let page = ListPage {
            dir: args.folder.clone(),
            from: from.take(),
            limit: Some(LS_MAX_LIMIT),
        };
        let Reply::Deliveries { entries, next } = connected.client.call(&Command::Inbox(page))?
        else {
            bail!("unexpected reply to inbox");
        };
        for d in &entries {
            writeln!(out, "{}", client_cmd::delivery_lines(d))?;
        }
        match next {
            Some(name) => from = Some(name),
            None => break,
        }
    }
    out.flush()?;
    drop(out);
    connected.quit()
}

fn run_one(client: &ClientArgs, what: &str, command: Command) -> anyhow::Result<()> {
    need_login(client, what)?;
    let mut connected: Connected = client_cmd::connect(client)?;
    connected.run(&command)?;
    connected.quit()
}

/// `vserv mkdir PATH`.
pub fn mkdir(args: PathArgs) -> anyhow::Result<()> {
    run_one(&args.client, "mkdir", Command::Mkdir { path: args.path })
}

/// `vserv stat PATH`.
pub fn stat(args: PathArgs) -> anyhow::Result<()> {
    run_one(&args.client, "stat", Command::Stat { path: args.path })
}

/// `vserv rm PATH` (`del`), or `vserv rm --dir PATH` (`rmdir`).
pub fn rm(args: RmArgs) -> anyhow::Result<()> {
    let command = if args.dir {
        Command::Rmdir { path: args.path }
    } else {
        Command::Del { path: args.path }
    };
    run_one(&args.client, "rm", command)
}

/// `vserv mv FROM TO`.
pub fn mv(args: MvArgs) -> anyhow::Result<()> {
    run_one(
        &args.client,
        "mv",
        Command::Mv {
            from: args.from,
            to: args.to,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_get_default_targets() {
        let local = Path::new("/tmp/x/report.pdf");
        assert_eq!(
            remote_target(local, None).ok().as_deref(),
            Some("report.pdf")
        );
        assert_eq!(
            remote_target(local, Some("docs/")).ok().as_deref(),
            Some("docs/report.pdf")
        );
        assert_eq!(
            remote_target(local, Some("a/b")).ok().as_deref(),
            Some("a/b")
        );
        assert_eq!(
            local_target("docs/report.pdf", None).ok(),
            Some(PathBuf::from("report.pdf"))
        );
        assert_eq!(
            local_target("docs/report.pdf/", Some(Path::new("out.bin"))).ok(),
            Some(PathBuf::from("out.bin"))
        );
        assert!(local_target("~bob", None).is_err());
        assert!(local_target("/", None).is_err());
    }
}
