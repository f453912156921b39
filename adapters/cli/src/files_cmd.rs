//! The file subcommands: `put`, `get` (transfers with a window, SHA-256 checked, resumable;
//! several files at once on one connection, cp-like), `ls`, `mkdir`, `rm`, `mv`, `stat`, and
//! the deliveries `send` and `inbox`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::hash::Hash;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use vserv_blocking::transfer::{
    self, DEFAULT_PARALLEL, Download, TransferFailure, TransferOptions, TransferOutcome, Upload,
};
use vserv_core::ErrorCode;
use vserv_core::commands::{Command, LS_MAX_LIMIT, ListPage, Reply, SendArgs as SendCommand};
use vserv_service::client::ClientError;

use crate::client_cmd::{self, Connected};
use crate::inbox_setup::InboxAction;
use crate::paging::Tokens;
use crate::show::escape;

/// `vserv put` options.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// `LOCAL [REMOTE]`: the local file and where it goes on the server (default: the local
    /// file's name in the working directory; a path ending in `/` is a directory to put it
    /// in). `LOCAL... REMOTE_DIR/`: several local files, each into REMOTE_DIR under its
    /// name (the last argument must then end in `/`).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<OsString>,
    /// Continue an interrupted upload of the same file where the server stopped (each file).
    #[arg(long)]
    pub resume: bool,
    /// `put -r LOCALDIR REMOTEDIR`: upload a directory tree (empty directories too;
    /// symlinks leaving the tree are skipped).
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Chunk requests kept in flight (1-256), shared by the files transferred at once.
    #[arg(long, default_value_t = transfer::DEFAULT_WINDOW as u16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub window: u16,
    /// Files transferred at once when there are several (1-64).
    #[arg(long, default_value_t = DEFAULT_PARALLEL as u8,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    pub parallel: u8,
}

/// `vserv get` options.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// `REMOTE [LOCAL]`: the file on the server and where to write it (default: its name in
    /// the current directory; an existing directory receives it under its name).
    /// `REMOTE... LOCAL_DIR`: several files, each into the existing directory LOCAL_DIR under
    /// its name. A file appears only once its SHA-256 matched.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<OsString>,
    /// Continue from the partial copy an interrupted download left (`NAME.vserv-part`),
    /// for each file.
    #[arg(long)]
    pub resume: bool,
    /// `get -r REMOTEDIR LOCALDIR`: download a directory tree (empty directories too).
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Replace an existing regular file at the local path (without it such a download is
    /// refused before anything is fetched). A symlink, directory, device, FIFO or socket is
    /// never replaced, even with --force.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Chunk requests kept in flight (1-256), shared by the files transferred at once.
    #[arg(long, default_value_t = transfer::DEFAULT_WINDOW as u16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub window: u16,
    /// Files transferred at once when there are several (1-64).
    #[arg(long, default_value_t = DEFAULT_PARALLEL as u8,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    pub parallel: u8,
}

/// `vserv ls` options.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// The directory (default: the working directory, the home's root).
    pub dir: Option<String>,
    /// Directories only.
    #[arg(long)]
    pub dirs: bool,
    /// Print a JSON array of {kind, size, modified, modified_local, name} instead.
    #[arg(long)]
    pub json: bool,
}

/// Options of the commands taking one server path (`stat`).
#[derive(Args, Debug)]
pub struct PathArgs {
    /// The path on the server.
    pub path: String,
}

/// `vserv rm` options.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// The file (or, with --dir, the empty directory) to delete.
    pub path: String,
    /// Delete an empty directory instead of a file.
    #[arg(long)]
    pub dir: bool,
}

/// `vserv mv` options.
#[derive(Args, Debug)]
pub struct MvArgs {
    /// What to move.
    pub from: String,
    /// Its new path (in the same home).
    pub to: String,
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
}

/// `vserv inbox` options; `C` is the connection options of `inbox setup` (none in the shell).
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InboxArgs<C: Args> {
    /// The inbox folder (default: `default`).
    pub folder: Option<String>,
    /// `vserv inbox setup`: write the folder's checked folder.toml.
    #[command(subcommand)]
    pub action: Option<InboxAction<C>>,
    /// Print a JSON array of deliveries (name, state, from, time, time_local, size, sha256,
    /// note, reason) instead.
    #[arg(long)]
    pub json: bool,
}

/// The directory of the sender's home where `vserv send` stages a file before delivering it.
pub const STAGING_DIR: &str = "outbox";

/// A byte progress bar on standard error when it is a terminal, hidden otherwise.
fn progress_bar(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    styled_bar(what)
}

/// A byte progress bar labelled `what`.
fn styled_bar(what: &str) -> ProgressBar {
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

/// One byte progress bar per file being transferred, on standard error when it is a
/// terminal (nothing otherwise): a file's bar appears with its first progress and goes
/// once all its bytes are done.
pub(crate) struct Bars {
    multi: Option<MultiProgress>,
    labels: Vec<String>,
    bars: Vec<Option<ProgressBar>>,
}

impl Bars {
    pub(crate) fn new(labels: Vec<String>) -> Bars {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        let bars = labels.iter().map(|_| None).collect();
        Bars {
            multi,
            labels,
            bars,
        }
    }

    pub(crate) fn update(&mut self, index: usize, done: u64, total: u64) {
        let Some(multi) = &self.multi else { return };
        let (Some(slot), Some(label)) = (self.bars.get_mut(index), self.labels.get(index)) else {
            return;
        };
        let bar = slot.get_or_insert_with(|| multi.add(styled_bar(label)));
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
            multi.remove(bar);
            *slot = None;
        }
    }

    pub(crate) fn clear(&mut self) {
        if let Some(multi) = &self.multi {
            for bar in self.bars.iter_mut().filter_map(Option::take) {
                bar.finish_and_clear();
                multi.remove(&bar);
            }
        }
    }
}

/// A path argument that names a file on the server, which must be UTF-8.
fn server_path(arg: &OsStr) -> anyhow::Result<String> {
    arg.to_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the server path {} is not UTF-8", arg.to_string_lossy()))
}

/// The uploads `vserv put PATHS` asks for: `LOCAL [REMOTE]`, or `LOCAL... REMOTE_DIR/`.
fn put_plan(paths: &[OsString]) -> anyhow::Result<Vec<Upload>> {
    let upload = |local: &OsString, remote: Option<&str>| -> anyhow::Result<Upload> {
        let local = PathBuf::from(local);
        let remote = remote_target(&local, remote)?;
        Ok(Upload { local, remote })
    };
    let plan = match paths {
        [] => bail!("give the LOCAL file to upload"),
        [local] => vec![upload(local, None)?],
        [local, remote] => vec![upload(local, Some(&server_path(remote)?))?],
        [locals @ .., dir] => {
            let dir = server_path(dir)?;
            if !dir.ends_with('/') {
                bail!(
                    "several files go into a server directory: the last argument must end in \
                     '/' (e.g. '{dir}/'), got '{dir}'"
                );
            }
            locals
                .iter()
                .map(|local| upload(local, Some(&dir)))
                .collect::<anyhow::Result<_>>()?
        }
    };
    let targets = plan.iter().map(|u| (u.remote.as_str(), u.local.as_path()));
    if let Some((remote, first, second)) = clash(targets) {
        bail!(
            "{} and {} would both be uploaded to {remote}",
            first.display(),
            second.display()
        );
    }
    Ok(plan)
}

/// The first two of `pairs` with the same key: the key and both values, in order.
fn clash<K: Eq + Hash + Copy, V: Copy>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Option<(K, V, V)> {
    let mut seen = HashMap::new();
    pairs
        .into_iter()
        .find_map(|(key, value)| seen.insert(key, value).map(|first| (key, first, value)))
}

/// The downloads `vserv get PATHS` asks for: `REMOTE [LOCAL]`, or `REMOTE... LOCAL_DIR`.
fn get_plan(paths: &[OsString]) -> anyhow::Result<Vec<Download>> {
    let download = |remote: &OsString, local: Option<&Path>| -> anyhow::Result<Download> {
        let remote = server_path(remote)?;
        let local = local_target(&remote, local)?;
        Ok(Download { remote, local })
    };
    let plan = match paths {
        [] => bail!("give the REMOTE file to download"),
        [remote] => vec![download(remote, None)?],
        [remote, local] => vec![download(remote, Some(Path::new(local)))?],
        [remotes @ .., dir] => {
            let dir = Path::new(dir);
            if !dir.is_dir() {
                bail!(
                    "several files go into a local directory: the last argument must be an \
                     existing directory, and {} is not one",
                    dir.display()
                );
            }
            remotes
                .iter()
                .map(|remote| download(remote, Some(dir)))
                .collect::<anyhow::Result<_>>()?
        }
    };
    let targets = plan.iter().map(|d| (d.local.as_path(), d.remote.as_str()));
    if let Some((local, first, second)) = clash(targets) {
        bail!(
            "{first} and {second} would both be written to {}",
            local.display()
        );
    }
    Ok(plan)
}

/// The error and its causes on one line, skipping a cause its parent already quoted.
fn error_line(e: &TransferFailure) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.last().is_some_and(|prev| prev.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    // Server errors are quoted in it: shown escaped.
    crate::show::escape(&parts.join(": ").replace('\n', " ")).into_owned()
}

/// Prints the report line of every file that made it; fails naming every file that did not
/// (`verb` is "upload" or "download").
pub(crate) fn conclude(
    verb: &str,
    files: &[(String, String)],
    results: Vec<Result<TransferOutcome, TransferFailure>>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let short = if verb == "upload" { "put" } else { "get" };
    for ((from, to), result) in files.iter().zip(results) {
        match result {
            Ok(outcome) => report(short, from, to, &outcome),
            Err(e) => failed.push(format!("{from} -> {to}: {}", error_line(&e))),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    bail!(
        "{} of {} {verb}s failed: {}",
        failed.len(),
        files.len(),
        failed.join("; ")
    )
}

/// `vserv put LOCAL [REMOTE] [--resume]`, or `vserv put LOCAL... REMOTE_DIR/`.
pub fn put(connected: &mut Connected, args: &PutArgs) -> anyhow::Result<()> {
    if args.recursive {
        return crate::files_tree::put_tree(connected, args);
    }
    let plan = put_plan(&args.paths)?;
    let options = TransferOptions {
        resume: args.resume,
        window: usize::from(args.window),
        ..TransferOptions::default()
    };
    if let [one] = plan.as_slice() {
        return put_one(connected, one, &options);
    }
    let (files, results) = put_all(connected, &plan, &options, args.parallel);
    conclude("upload", &files, results)
}

/// Every `(from, to)` pair of a batch of transfers and each one's result.
pub(crate) type BatchOutcome = (
    Vec<(String, String)>,
    Vec<Result<TransferOutcome, TransferFailure>>,
);

/// Uploads `plan`, `parallel` files at a time, with a progress bar per file.
pub(crate) fn put_all(
    connected: &mut Connected,
    plan: &[Upload],
    options: &TransferOptions,
    parallel: u8,
) -> BatchOutcome {
    let files: Vec<(String, String)> = plan
        .iter()
        .map(|u| (u.local.display().to_string(), u.remote.clone()))
        .collect();
    let mut bars = Bars::new(files.iter().map(|(f, _)| format!("put {f}")).collect());
    let results = transfer::put_many(
        &mut connected.client,
        plan,
        options,
        usize::from(parallel),
        &mut |index, done, total| bars.update(index, done, total),
    );
    bars.clear();
    (files, results)
}

/// Downloads `plan`, `parallel` files at a time, with a progress bar per file.
pub(crate) fn get_all(
    connected: &mut Connected,
    plan: &[Download],
    options: &TransferOptions,
    parallel: u8,
) -> BatchOutcome {
    let files: Vec<(String, String)> = plan
        .iter()
        .map(|d| (d.remote.clone(), d.local.display().to_string()))
        .collect();
    let mut bars = Bars::new(files.iter().map(|(f, _)| format!("get {f}")).collect());
    let results = transfer::get_many(
        &mut connected.client,
        plan,
        options,
        usize::from(parallel),
        &mut |index, done, total| bars.update(index, done, total),
    );
    bars.clear();
    (files, results)
}

/// One upload, as `vserv put LOCAL [REMOTE]` has always run it.
fn put_one(
    connected: &mut Connected,
    upload: &Upload,
    options: &TransferOptions,
) -> anyhow::Result<()> {
    let Upload { local, remote } = upload;
    if !local.is_file() {
        bail!("{} is not a file", local.display());
    }
    let bar = progress_bar("put");
    let outcome = transfer::put_with(
        &mut connected.client,
        local,
        remote,
        options,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let outcome = outcome.with_context(|| format!("uploading {} to {remote}", local.display()))?;
    report("put", &local.display().to_string(), remote, &outcome);
    Ok(())
}

/// `vserv get REMOTE [LOCAL] [--resume]`, or `vserv get REMOTE... LOCAL_DIR`.
pub fn get(connected: &mut Connected, args: &GetArgs) -> anyhow::Result<()> {
    if args.recursive {
        return crate::files_tree::get_tree(connected, args);
    }
    let plan = get_plan(&args.paths)?;
    let options = TransferOptions {
        resume: args.resume,
        window: usize::from(args.window),
        overwrite: args.force,
    };
    if let [one] = plan.as_slice() {
        return get_one(connected, one, &options);
    }
    let (files, results) = get_all(connected, &plan, &options, args.parallel);
    conclude("download", &files, results)
}

/// One download, as `vserv get REMOTE [LOCAL]` has always run it.
fn get_one(
    connected: &mut Connected,
    download: &Download,
    options: &TransferOptions,
) -> anyhow::Result<()> {
    let Download { remote, local } = download;
    let bar = progress_bar("get");
    let outcome = transfer::get_with(
        &mut connected.client,
        remote,
        local,
        options,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let outcome =
        outcome.with_context(|| format!("downloading {remote} to {}", local.display()))?;
    report("get", remote, &local.display().to_string(), &outcome);
    Ok(())
}

/// `vserv ls [DIR]`: every entry, one line each (`KIND SIZE MTIME NAME`), pages followed.
pub fn ls(connected: &mut Connected, args: &LsArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut from: Option<String> = None;
    let mut tokens = Tokens::new("ls");
    let mut json: Vec<crate::json_out::EntryJson> = Vec::new();
    if !args.json && std::io::stdout().is_terminal() {
        writeln!(out, "KIND SIZE MODIFIED NAME")?;
    }
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
            if args.json {
                json.push(e.into());
                continue;
            }
            writeln!(
                out,
                "{} {} {} {}",
                e.kind.as_str(),
                e.size,
                crate::show::local_time(e.modified),
                escape(&e.name)
            )?;
        }
        match next {
            Some(name) => {
                tokens.follow(&name)?;
                from = Some(name);
            }
            None => break,
        }
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    }
    out.flush()?;
    Ok(())
}

/// `vserv send USER LOCAL [--folder NAME] [--note TEXT]`: uploads LOCAL to
/// `outbox/NAME` in the sender's home (created if missing), asks the server to deliver it,
/// then deletes the staged copy (whatever the outcome).
pub fn send(connected: &mut Connected, args: &SendArgs) -> anyhow::Result<()> {
    let staged = remote_target(&args.local, Some(&format!("{STAGING_DIR}/")))?;
    if !args.local.is_file() {
        bail!("{} is not a file", args.local.display());
    }
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
        eprintln!(
            "vserv: could not delete the staged copy {staged}: {}",
            escape(&e.to_string())
        );
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
        hex::encode(outcome.sha256),
        name = escape(&name),
    );
    Ok(())
}

/// `vserv inbox [FOLDER]`: every delivery, pages followed.
pub fn inbox<C: Args>(connected: &mut Connected, args: &InboxArgs<C>) -> anyhow::Result<()> {
    if let Some(action) = &args.action {
        return crate::inbox_setup::run(connected, action);
    }
    let mut out = std::io::stdout().lock();
    let mut from: Option<String> = None;
    let mut tokens = Tokens::new("inbox");
    let mut json: Vec<crate::json_out::DeliveryJson> = Vec::new();
    loop {
        let page = ListPage {
            dir: args.folder.clone(),
            from: from.take(),
            limit: Some(LS_MAX_LIMIT),
        };
        let listed = connected.client.call(&Command::Inbox(page));
        let listed =
            crate::inbox_setup::explain_missing(connected, args.folder.as_deref(), listed)?;
        let Reply::Deliveries { entries, next } = listed else {
            bail!("unexpected reply to inbox");
        };
        for d in &entries {
            if args.json {
                json.push(d.into());
            } else {
                writeln!(out, "{}", client_cmd::delivery_lines(d))?;
            }
        }
        if entries.is_empty() && next.is_none() {
            crate::inbox_setup::hint_if_not_set_up(connected, args.folder.as_deref());
        }
        match next {
            Some(name) => {
                tokens.follow(&name)?;
                from = Some(name);
            }
            None => break,
        }
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    }
    out.flush()?;
    Ok(())
}

/// `vserv stat PATH`.
pub fn stat(connected: &mut Connected, args: &PathArgs) -> anyhow::Result<()> {
    connected.run(&Command::Stat {
        path: args.path.clone(),
    })
}

/// `vserv rm PATH` (`del`), or `vserv rm --dir PATH` (`rmdir`).
pub fn rm(connected: &mut Connected, args: &RmArgs) -> anyhow::Result<()> {
    let path = args.path.clone();
    connected.run(&if args.dir {
        Command::Rmdir { path }
    } else {
        Command::Del { path }
    })
}

/// `vserv mv FROM TO`.
pub fn mv(connected: &mut Connected, args: &MvArgs) -> anyhow::Result<()> {
    connected.run(&Command::Mv {
        from: args.from.clone(),
        to: args.to.clone(),
    })
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

    fn args(paths: &[&str]) -> Vec<OsString> {
        paths.iter().map(OsString::from).collect()
    }

    #[test]
    fn several_files_go_into_a_directory() {
        let plan = put_plan(&args(&["a/x", "y", "docs/"])).unwrap();
        let remotes: Vec<&str> = plan.iter().map(|u| u.remote.as_str()).collect();
        assert_eq!(remotes, ["docs/x", "docs/y"]);
        assert_eq!(plan[0].local, PathBuf::from("a/x"));
        // Two paths keep their meaning: LOCAL REMOTE.
        let plan = put_plan(&args(&["x", "docs/z"])).unwrap();
        assert_eq!(plan[0].remote, "docs/z");
        let err = put_plan(&args(&["x", "y", "docs"])).unwrap_err();
        assert!(err.to_string().contains("must end in '/'"), "{err}");
        let err = put_plan(&args(&["a/x", "b/x", "docs/"])).unwrap_err();
        assert!(
            err.to_string().contains("both be uploaded to docs/x"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let plan = get_plan(&args(&["docs/x", "y", d])).unwrap();
        let locals: Vec<PathBuf> = plan.iter().map(|g| g.local.clone()).collect();
        assert_eq!(locals, [dir.path().join("x"), dir.path().join("y")]);
        let missing = dir.path().join("missing");
        let err = get_plan(&args(&["x", "y", missing.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("existing directory"), "{err}");
        let err = get_plan(&args(&["a/x", "b/x", d])).unwrap_err();
        assert!(err.to_string().contains("both be written to"), "{err}");
    }
}
