//! The client subcommands: connect, run one command, print its reply.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;
use vserv_blocking::Client;
use vserv_core::Fingerprint;
use vserv_core::commands::{Command, Reply};
use vserv_service::client::ClientOptions;
use vserv_store::trust::TrustDecision;

/// Options shared by every client subcommand.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Server address, HOST:PORT.
    #[arg(long, short = 's', default_value = crate::DEFAULT_LISTEN)]
    pub server: String,
    /// File of trusted server keys (default ~/.vserv/known_servers).
    #[arg(long, value_name = "FILE")]
    pub known_servers: Option<PathBuf>,
    /// Require the server key to have this fingerprint (SHA256:...).
    #[arg(long, value_name = "FPR")]
    pub server_key: Option<Fingerprint>,
}

impl ClientArgs {
    /// Client options from the command line.
    pub fn options(&self) -> anyhow::Result<ClientOptions> {
        let known_servers = match &self.known_servers {
            Some(p) => p.clone(),
            None => vserv_store::known_servers::default_path().ok_or_else(|| {
                anyhow!(
                    "cannot locate ~/.vserv/known_servers (HOME unset); pass --known-servers FILE"
                )
            })?,
        };
        let mut options = ClientOptions::new(known_servers);
        options.pinned = self.server_key;
        Ok(options)
    }
}

/// Connects, runs `command`, prints the reply, quits.
pub fn run(args: &ClientArgs, command: Command) -> anyhow::Result<()> {
    let options = args.options()?;
    let mut client = Client::connect(&args.server, &options)
        .with_context(|| format!("connecting to {}", args.server))?;
    if let Some(TrustDecision::FirstContact { fingerprint }) = client.session().trust() {
        eprintln!(
            "vserv: first contact with {}; trusting and recording its key {} in {}",
            args.server,
            fingerprint,
            options.known_servers.display()
        );
    }
    let reply = client.call(&command)?;
    print_reply(
        &reply,
        client.session().server_key().map(|k| k.fingerprint()),
    );
    client.quit()?;
    Ok(())
}

fn print_reply(reply: &Reply, fingerprint: Option<Fingerprint>) {
    match reply {
        Reply::Greeting(text) => {
            println!("{text}");
            if let Some(f) = fingerprint {
                println!("server key: {f}");
            }
        }
        Reply::Version { protocol, software } => println!("protocol {protocol}, {software}"),
        Reply::Identity { name, fingerprint } => println!("{name} {fingerprint}"),
        Reply::Help(text) => print!("{text}"),
        Reply::Pong(payload) => println!("{}", String::from_utf8_lossy(payload)),
        Reply::Bye => println!("bye"),
        Reply::User { name, role } => println!("{name} ({})", role.as_str()),
        Reply::Anonymous => println!("not logged in"),
        Reply::Done => println!("ok"),
        Reply::Users(users) => {
            for u in users {
                let state = if u.enabled { "enabled" } else { "disabled" };
                println!("{:<32} {:<5} {state}", u.name, u.role.as_str());
            }
        }
        Reply::Keys(keys) => {
            for k in keys {
                println!("{k}");
            }
        }
    }
}
