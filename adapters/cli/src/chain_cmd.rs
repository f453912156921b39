//! `vserv chain ...`: offline tools for the ledger — verify a stopped server's store, export
//! a feed as JSON Lines (from a server or a data directory; the own feed or, with `--origin`,
//! a held replica of another server's), verify an export with only the fingerprint of the
//! key of the server whose feed it is.

use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use vserv_core::commands::{Command, RLIST_MAX_LIMIT, Reply, SeqRange};
use vserv_core::{Fingerprint, ServerKey};
use vserv_service::ledger::{CheckReport, Feed, Ledger};
use vserv_service::ledger_export::{self, ExportWriter};
use vserv_service::replicas::Replicas;
use vserv_store::db::FjallStore;
use vserv_store::kv::StoreError;

use crate::client_cmd::{self, ClientArgs};
use crate::ledger_cmd;

/// `vserv chain` options.
#[derive(Args, Debug)]
pub struct ChainArgs {
    #[command(subcommand)]
    command: ChainCommand,
}

/// The chain tools.
#[derive(Subcommand, Debug)]
enum ChainCommand {
    /// Verify a stopped server's whole stored feed (entries, links, indexes, signed head).
    /// Exits non-zero naming the first bad seq.
    Verify {
        /// The server's data directory (the server must be stopped).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Write the feed as JSON Lines to standard output (spec/ledger.md, "Export format"),
    /// from a server (logged in with --user) or from a stopped server's data directory.
    Export {
        /// Read a stopped server's data directory instead of asking a server.
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with_all = ["user", "key", "server", "server_key", "known_servers"]
        )]
        data: Option<PathBuf>,
        /// The first seq to export.
        #[arg(long, value_name = "SEQ", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..))]
        from: u64,
        /// Export the feed of this origin the server holds (a replica; its key fingerprint,
        /// SHA256:<64 hex digits>) instead of the server's own; `verify-export --key` then
        /// takes this fingerprint.
        #[arg(long, value_name = "FPR")]
        origin: Option<Fingerprint>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Verify an export against the server key fingerprint (as `vserv fingerprint` prints
    /// it): every entry, link and head signature, and a final head covering the last entry.
    VerifyExport {
        /// The export file; - reads standard input.
        file: PathBuf,
        /// The server key's fingerprint, SHA256:<64 hex digits>.
        #[arg(long, value_name = "FPR")]
        key: Fingerprint,
    },
}

/// Runs a `vserv chain` command.
pub fn run(args: ChainArgs) -> anyhow::Result<()> {
    match args.command {
        ChainCommand::Verify { data } => verify_store(&data),
        ChainCommand::Export {
            data: Some(dir),
            from,
            origin,
            ..
        } => export_data(&dir, from, origin.as_ref()),
        ChainCommand::Export {
            data: None,
            from,
            origin,
            client,
        } => export_server(&client, from, origin.as_ref()),
        ChainCommand::VerifyExport { file, key } => verify_file(&file, &key),
    }
}

/// The ledger of a stopped server's data directory, and the server's key.
fn open_ledger(dir: &Path) -> anyhow::Result<(Ledger, ServerKey)> {
    let (store, identity) = open_store(dir)?;
    let key = identity.public_key();
    Ok((Ledger::new(store, Arc::new(identity)), key))
}

/// Pages of entries the reading thread of [`check_reading_ahead`] may be ahead of the check.
const READ_AHEAD_PAGES: usize = 2;

/// [`Feed::check_range`] with the store read on a thread of its own, up to
/// [`READ_AHEAD_PAGES`] pages ahead of the check on this one. For a feed larger than the
/// store's cache, reading its blocks (a file read and lz4 for a few entries each) costs
/// about what hashing the entries does, so the two CPUs share them. If no thread can start,
/// everything runs here.
pub(crate) fn check_reading_ahead(
    feed: &Feed,
    from: u64,
    to: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<CheckReport, StoreError> {
    let pages = feed.entry_pages(from, to);
    let (pages_read, pages_in) = std::sync::mpsc::sync_channel(READ_AHEAD_PAGES);
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("vserv-verify-read".into())
            .spawn_scoped(scope, move || {
                for page in pages {
                    // The check ended (it found what it reports, or a page failed).
                    if pages_read.send(page).is_err() {
                        break;
                    }
                }
            });
        match reader {
            // The check drops the receiver when it ends, which stops the reader.
            Ok(_) => feed.check_pages(from, to, pages_in, progress),
            Err(e) => {
                tracing::debug!(error = %e, "no reading thread; verifying on one");
                drop(pages_in);
                feed.check_range(from, to, progress)
            }
        }
    })
}

/// The store of a stopped server's data directory, and the server's identity.
fn open_store(
    dir: &Path,
) -> anyhow::Result<(Arc<dyn vserv_store::kv::Store>, vserv_core::ServerIdentity)> {
    if !dir.is_dir() {
        bail!("no data directory at {}", dir.display());
    }
    let identity = vserv_store::identity::load(dir)
        .with_context(|| format!("reading the server identity in {}", dir.display()))?
        .identity;
    let store = FjallStore::open(dir).map_err(|e| match e {
        StoreError::Locked(_) => anyhow!(
            "the data directory {} is in use by a running server; stop it first (or export \
             over the protocol with --server)",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("opening the store in {}", dir.display())),
    })?;
    Ok((Arc::new(store), identity))
}

/// A progress bar on standard error when it is a terminal, hidden otherwise.
fn progress_bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// `chain verify --data DIR`.
fn verify_store(dir: &Path) -> anyhow::Result<()> {
    let (ledger, _) = open_ledger(dir)?;
    let size = ledger.size().context("reading the stored head")?;
    let bar = progress_bar(size, "verifying");
    let report = check_reading_ahead(&ledger.feed(), 1, u64::MAX, &mut |seq| {
        bar.set_position(seq)
    })
    .context("reading the stored feed")?;
    bar.finish_and_clear();
    match report {
        CheckReport::Ok { seq } => {
            println!("ok: {seq} entries verified");
            Ok(())
        }
        CheckReport::Bad {
            seq: Some(seq),
            reason,
        } => bail!(
            "the chain in {} is broken at seq {seq}: {reason}",
            dir.display()
        ),
        CheckReport::Bad { seq: None, reason } => {
            bail!("the chain in {} is broken: {reason}", dir.display())
        }
    }
}

/// `chain export --data DIR [--from SEQ] [--origin FPR]`: the own feed, or the held feed of
/// the origin.
fn export_data(dir: &Path, from: u64, origin: Option<&Fingerprint>) -> anyhow::Result<()> {
    let (store, identity) = open_store(dir)?;
    // A store a server of the layout before feed numbers left is moved to them first.
    let (replicas, _moved) =
        Replicas::open(store, identity.public_key()).context("reading the held feeds")?;
    let wanted = origin
        .copied()
        .unwrap_or(identity.public_key().fingerprint());
    let feed = replicas
        .feed_of(&wanted)
        .context("reading the held feeds")?
        .ok_or_else(|| anyhow!("no feed of {wanted} is held in {}", dir.display()))?;
    let key = feed.origin();
    let size = feed.size().context("reading the stored head")?;
    let bar = progress_bar(size.saturating_sub(from.saturating_sub(1)), "exporting");
    let out = BufWriter::new(std::io::stdout().lock());
    let entries = ledger_export::export_feed(&feed, from, out, &mut |_| bar.inc(1))
        .context("exporting the feed")?;
    bar.finish_and_clear();
    eprintln!("vserv: exported {entries} entries of {}", key.fingerprint());
    Ok(())
}

/// `chain export [--server HOST:PORT] [--from SEQ] [--origin FPR]`: `rhead`, then `rlist`
/// pages up to it, of the own feed or the held feed of the origin.
fn export_server(
    client: &ClientArgs,
    from: u64,
    origin: Option<&Fingerprint>,
) -> anyhow::Result<()> {
    if client.user.is_none() {
        bail!("exporting from a server needs a login: add --user NAME (or use --data DIR)");
    }
    let mut connected = client_cmd::connect(client)?;
    let own = connected
        .client
        .session()
        .server_key()
        .ok_or_else(|| anyhow!("the session has no server key (not connected)"))?;
    let head = ledger_cmd::fetch_head(&mut connected, origin)?;
    // The origin's key: the one that signed its head (checked against the fingerprint asked
    // for); only the own feed can be empty, and then its key is the session's.
    let key = head.map_or(own, |signed| signed.head.origin);
    let mut writer = ExportWriter::new(BufWriter::new(std::io::stdout().lock()), key, from)?;
    if let Some(signed) = head {
        let last = signed.head.seq;
        let bar = progress_bar(last.saturating_sub(from.saturating_sub(1)), "exporting");
        // Pages of `rlist * NEXT LAST`: a page never skips or repeats an entry.
        let mut next = (from <= last).then_some(from.max(1));
        let mut seqs = crate::paging::Seqs::new("chain export");
        while let Some(start) = next {
            let command = Command::Rlist {
                kind: None,
                range: SeqRange {
                    from: start,
                    to: last,
                },
                limit: Some(RLIST_MAX_LIMIT),
                origin: origin.copied(),
            };
            let reply = connected
                .client
                .call(&command)
                .with_context(|| format!("fetching entries from seq {start}"))?;
            let Reply::Page {
                entries,
                next: after,
            } = reply
            else {
                bail!("unexpected reply to rlist from seq {start}: {reply:?}");
            };
            if entries.is_empty() {
                bail!("the server listed no entry from seq {start} to its head {last}");
            }
            for entry in &entries {
                writer.entry(entry)?;
                bar.inc(1);
            }
            if let Some(after) = after {
                seqs.follow(start, after)?;
            }
            next = after;
        }
        bar.finish_and_clear();
        if writer.entries() > 0 {
            writer.head(&signed)?;
        }
    }
    let entries = writer.entries();
    writer.finish()?;
    connected.quit()?;
    eprintln!("vserv: exported {entries} entries of {}", key.fingerprint());
    Ok(())
}

/// `chain verify-export FILE --key FPR`.
fn verify_file(file: &Path, key: &Fingerprint) -> anyhow::Result<()> {
    let name = file.display().to_string();
    let reader: Box<dyn BufRead> = if name == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {name}"))?;
        Box::new(BufReader::new(f))
    };
    let summary = ledger_export::verify_export(reader, key).map_err(|e| anyhow!("{name}: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    match summary.head {
        Some(head) => writeln!(
            stdout,
            "ok: entries {}..={} verified against {key}; signed head seq {} hash {}",
            summary.from,
            head.seq,
            head.seq,
            hex::encode(head.hash)
        )?,
        None => writeln!(
            stdout,
            "ok: no entries (from seq {}); the file is well-formed for {key}",
            summary.from
        )?,
    }
    Ok(())
}
