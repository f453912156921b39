//! `vserv known-servers list|forget HOST`: the client's file of trusted server keys
//! (`vserv_store::known_servers`), read and edited without a server.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use vserv_store::known_servers::KnownServers;

use crate::show::escape;

/// `vserv known-servers`.
#[derive(Args, Debug)]
pub struct KnownServersArgs {
    /// File of trusted server keys (default: `known_servers` of ~/.vserv/config.toml, else
    /// ~/.vserv/known_servers).
    #[arg(long, value_name = "FILE", global = true,
          default_value = crate::client_config::default_known_servers())]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub action: KnownServersAction,
}

/// What to do with the file.
#[derive(Subcommand, Debug)]
pub enum KnownServersAction {
    /// List the recorded servers: HOST FINGERPRINT, ordered by host.
    List {
        /// Print a JSON array of {"host", "fingerprint"} objects instead.
        #[arg(long)]
        json: bool,
    },
    /// Remove HOST's recorded key (the next connection trusts it on first use again).
    Forget {
        /// The host as recorded (HOST:PORT, case-insensitive).
        host: String,
    },
}

/// One entry as `list --json` prints it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct KnownServerJson {
    /// Lowercase HOST:PORT.
    pub host: String,
    /// The key's fingerprint (SHA256:...).
    pub fingerprint: String,
}

/// Runs `vserv known-servers`.
pub fn run(args: KnownServersArgs) -> anyhow::Result<()> {
    crate::client_config::check()?;
    let path = match args.file {
        Some(p) => p,
        None => vserv_store::known_servers::default_path().ok_or_else(|| {
            anyhow!("cannot locate ~/.vserv/known_servers (HOME unset); pass --file FILE")
        })?,
    };
    let mut known = KnownServers::load(&path)?;
    match args.action {
        KnownServersAction::List { json } => {
            let entries: Vec<KnownServerJson> = known
                .iter()
                .map(|(host, key)| KnownServerJson {
                    host: host.to_owned(),
                    fingerprint: key.fingerprint().to_string(),
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                for e in &entries {
                    println!("{} {}", escape(&e.host), e.fingerprint);
                }
            }
        }
        KnownServersAction::Forget { host } => {
            let removed = known
                .forget(&host)
                .with_context(|| format!("updating {}", path.display()))?;
            match removed {
                Some(key) => println!(
                    "forgot {} ({}) in {}",
                    escape(&host),
                    key.fingerprint(),
                    path.display()
                ),
                None => bail!("{} is not recorded in {}", escape(&host), path.display()),
            }
        }
    }
    Ok(())
}
