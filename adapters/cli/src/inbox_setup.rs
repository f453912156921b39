//! `vserv inbox setup [FOLDER] --allow USER... [--on-meta PROG ARG...] [--on-received PROG
//! ARG...]`: builds the folder's `folder.toml` with the type the server parses
//! ([`FolderConfig`]), checks it the way the server will, and uploads it to
//! `inbox/FOLDER/folder.toml` (the server checks it again when the upload commits). And the
//! hint `vserv inbox` prints for a folder that is not set up.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use vserv_blocking::transfer::{self, TransferOptions};
use vserv_core::ErrorCode;
use vserv_core::commands::{Command, DEFAULT_INBOX_FOLDER};
use vserv_service::client::ClientError;
use vserv_service::files::delivery::{FOLDER_CONFIG, FolderConfig, INBOX_DIR};
use vserv_service::files::folder_setup::check_content;

use crate::client_cmd::Connected;
use crate::show::escape;

/// What `vserv inbox` can do besides listing; `C` is the connection options (none in the
/// shell).
#[derive(Subcommand, Debug)]
pub enum InboxAction<C: Args> {
    /// Set up an inbox folder: write its folder.toml (who may deliver, optional hooks).
    Setup {
        #[command(flatten)]
        args: SetupArgs,
        #[command(flatten)]
        client: C,
    },
}

impl<C: Args> InboxAction<C> {
    /// The connection options given with the action.
    pub fn client(&self) -> &C {
        match self {
            InboxAction::Setup { client, .. } => client,
        }
    }

    /// The action's name, for messages (`setup`).
    pub fn name(&self) -> &'static str {
        match self {
            InboxAction::Setup { .. } => "setup",
        }
    }

    /// Runs the action when it needs no connection: `setup` with invalid settings fails
    /// and `setup --dry-run` prints the folder.toml, both without connecting; `None` when
    /// the action needs the server.
    pub fn run_offline(&self) -> Option<anyhow::Result<()>> {
        match self {
            InboxAction::Setup { args, .. } => match folder_toml(args) {
                Err(e) => Some(Err(e)),
                Ok(text) if args.dry_run => {
                    print!("{text}");
                    Some(Ok(()))
                }
                Ok(_) => None,
            },
        }
    }
}

/// `vserv inbox setup` options.
#[derive(Args, Debug)]
pub struct SetupArgs {
    /// The inbox folder (default: `default`).
    pub folder: Option<String>,
    /// A user who may deliver here (repeat, or list several); `*` is every user.
    #[arg(long, value_name = "USER", num_args = 1.., required = true)]
    pub allow: Vec<String>,
    /// A hook run before a delivery's data is copied: the absolute path of a program in the
    /// server's hook directory, then its arguments (ignored unless the server enables hooks).
    #[arg(long, value_name = "PROG", num_args = 1.., allow_hyphen_values = true)]
    pub on_meta: Option<Vec<String>>,
    /// A hook run after a delivery is stored (same form as --on-meta).
    #[arg(long, value_name = "PROG", num_args = 1.., allow_hyphen_values = true)]
    pub on_received: Option<Vec<String>>,
    /// Print the folder.toml instead of uploading it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs an inbox action on `connected`.
pub fn run<C: Args>(connected: &mut Connected, action: &InboxAction<C>) -> anyhow::Result<()> {
    match action {
        InboxAction::Setup { args, .. } => setup(connected, args),
    }
}

/// The checked `folder.toml` text of `args`: written by [`FolderConfig::to_toml`] and read
/// back by the server's own parser, which must give the same configuration.
fn folder_toml(args: &SetupArgs) -> anyhow::Result<String> {
    let config = FolderConfig {
        allow: args.allow.clone(),
        on_meta: args.on_meta.clone(),
        on_received: args.on_received.clone(),
    };
    let text = config.to_toml();
    match check_content(text.as_bytes()) {
        Ok(parsed) if parsed == config => Ok(text),
        Ok(_) => bail!("the folder.toml would not read back as given (a bug in vserv)"),
        Err(reason) => bail!("invalid folder settings: {reason}"),
    }
}

/// `vserv inbox setup`.
fn setup(connected: &mut Connected, args: &SetupArgs) -> anyhow::Result<()> {
    let folder = args
        .folder
        .clone()
        .unwrap_or_else(|| DEFAULT_INBOX_FOLDER.to_owned());
    let text = folder_toml(args)?;
    if args.dry_run {
        print!("{text}");
        return Ok(());
    }
    let dir = format!("{INBOX_DIR}/{folder}");
    let remote = format!("{dir}/{FOLDER_CONFIG}");
    let mut local = tempfile::NamedTempFile::new().context("making a temporary file")?;
    local.write_all(text.as_bytes())?;
    local.flush()?;
    connected
        .client
        .call(&Command::Mkdirs { path: dir.clone() })
        .with_context(|| format!("creating {dir}"))?;
    transfer::put_with(
        &mut connected.client,
        local.path(),
        &remote,
        &TransferOptions::default(),
        &mut |_, _| {},
    )
    .with_context(|| format!("uploading {remote}"))?;
    println!(
        "inbox folder '{}' set up: {} may deliver (folder.toml written to {})",
        escape(&folder),
        args.allow.join(", "),
        escape(&remote)
    );
    Ok(())
}

/// Whether `folder` has no `folder.toml` (asked of the server; `false` when unsure).
fn not_set_up(connected: &mut Connected, folder: &str) -> bool {
    let config = format!("{INBOX_DIR}/{folder}/{FOLDER_CONFIG}");
    matches!(
        connected.client.call(&Command::Stat { path: config }),
        Err(ClientError::Server(e)) if e.code == ErrorCode::NotFound
    )
}

/// How to set up `folder`.
fn how_to_set_up(folder: &str) -> String {
    format!(
        "inbox folder '{f}' is not set up, so nobody can deliver to it; set it up with: vserv \
         inbox setup {f} --allow USER...",
        f = escape(folder)
    )
}

/// Prints (on standard error) how to set up `folder` when it has no `folder.toml`, so an
/// empty `vserv inbox` says why nothing can arrive.
pub fn hint_if_not_set_up(connected: &mut Connected, folder: Option<&str>) {
    let folder = folder.unwrap_or(DEFAULT_INBOX_FOLDER);
    if not_set_up(connected, folder) {
        eprintln!("vserv: {}", how_to_set_up(folder));
    }
}

/// The result of an `inbox` call, a "not found" failure for a folder that is not set up
/// replaced by how to set it up.
pub fn explain_missing<T>(
    connected: &mut Connected,
    folder: Option<&str>,
    listed: Result<T, ClientError>,
) -> anyhow::Result<T> {
    let folder = folder.unwrap_or(DEFAULT_INBOX_FOLDER);
    match listed {
        Ok(reply) => Ok(reply),
        Err(ClientError::Server(e))
            if e.code == ErrorCode::NotFound && not_set_up(connected, folder) =>
        {
            bail!("{}", how_to_set_up(folder))
        }
        Err(e) => Err(e.into()),
    }
}
