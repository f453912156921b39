//! `vserv peer status` (alias `list`): the admin's view of a server's replication peers
//! (the `peers` command, spec/replication.md §2.1): per peer whether it comes from the config
//! file or was added at runtime, whether its link is up and since when, why the last link or
//! dial ended, the peer's store epoch and how far each feed differs; then the quarantined
//! origins with the two heads of their fork proofs. `vserv peer add` and `vserv peer del`
//! add and remove peers at runtime (`padd`, `pdel`, §2.2).

use anyhow::bail;
use clap::{Args, Subcommand};
use vserv_core::Fingerprint;
use vserv_core::commands::{Command, ForkSummary, PeerSource, PeerStatus, Reply};

use crate::client_cmd::{self, ClientArgs};
use crate::show::escape;

/// `vserv peer` options.
#[derive(Args, Debug)]
pub struct PeerArgs {
    #[command(subcommand)]
    command: PeerCommand,
}

/// The peer commands.
#[derive(Subcommand, Debug)]
enum PeerCommand {
    /// Show each configured peer (admins): link up or down and since when, the last error,
    /// the peer's epoch, per feed the seq held here and there (`behind`: entries this server
    /// lacks, `ahead`: entries the peer lacks); then the quarantined origins and their forks.
    #[command(visible_alias = "list")]
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a replication peer at runtime (admins; kept across restarts): accept links from
    /// the server key FPR and, with ADDR (host:port), dial it. Again for a peer added so
    /// changes its address.
    Add {
        /// The fingerprint of the peer's server key (`SHA256:` and 64 hex digits).
        fingerprint: Fingerprint,
        /// Where to dial it (host:port); without it, its links are only accepted.
        address: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a replication peer added at runtime (admins): its links close and it is no
    /// longer dialed. Peers of the config file are changed in the file.
    Del {
        /// The fingerprint of the peer's server key.
        fingerprint: Fingerprint,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a `vserv peer` command.
pub fn run(args: PeerArgs) -> anyhow::Result<()> {
    match args.command {
        PeerCommand::Status { client } => status(&client),
        PeerCommand::Add {
            fingerprint,
            address,
            client,
        } => {
            let cmd = Command::Padd {
                fingerprint,
                address,
            };
            done(&client, "add", &cmd)?;
            println!("peer {fingerprint} added");
            Ok(())
        }
        PeerCommand::Del {
            fingerprint,
            client,
        } => {
            done(&client, "del", &Command::Pdel { fingerprint })?;
            println!("peer {fingerprint} removed");
            Ok(())
        }
    }
}

/// An admin login is needed for `vserv peer NAME`.
fn need_admin(client: &ClientArgs, name: &str) -> anyhow::Result<()> {
    if client.user.is_none() {
        bail!(
            "`vserv peer {name}` needs an admin login: add --user NAME (and --key FILE for a key)"
        );
    }
    Ok(())
}

/// Runs `cmd`, which answers with success only.
fn done(client: &ClientArgs, name: &str, cmd: &Command) -> anyhow::Result<()> {
    need_admin(client, name)?;
    let mut connected = client_cmd::connect(client)?;
    let reply = connected.client.call(cmd)?;
    if reply != Reply::Done {
        bail!("unexpected reply to {}: {reply:?}", cmd.name());
    }
    connected.quit()
}

/// `vserv peer status`.
fn status(client: &ClientArgs) -> anyhow::Result<()> {
    need_admin(client, "status")?;
    let mut connected = client_cmd::connect(client)?;
    let reply = connected.client.call(&Command::Peers)?;
    let Reply::Peers { peers, forks } = reply else {
        bail!("unexpected reply to peers: {reply:?}");
    };
    print!("{}", status_text(&peers, &forks));
    connected.quit()
}

/// The text `vserv peer status` prints: per peer a `peer` line (ending in `from config` or
/// `added at runtime`), an indented `last error`
/// line when there is one, and one indented `origin` line per feed; then one `quarantined`
/// line per quarantined origin.
pub fn status_text(peers: &[PeerStatus], forks: &[ForkSummary]) -> String {
    let mut out = String::new();
    if peers.is_empty() {
        out.push_str("no peers configured\n");
    }
    for peer in peers {
        let address = peer.address.as_deref().map_or_else(
            || "(accepts its links)".to_owned(),
            |a| escape(a).into_owned(),
        );
        let state = if peer.connected { "up" } else { "down" };
        let since = match peer.since_secs {
            Some(secs) => format!(" for {secs} s"),
            None if peer.connected => String::new(),
            None => " (no link yet)".to_owned(),
        };
        let epoch = peer.epoch.map_or_else(|| "-".to_owned(), hex::encode);
        let source = match peer.source {
            PeerSource::Config => "from config",
            PeerSource::Runtime => "added at runtime",
        };
        out.push_str(&format!(
            "peer {} {address} {state}{since} epoch {epoch} {source}\n",
            peer.fingerprint
        ));
        if let Some(error) = &peer.last_error {
            out.push_str(&format!("  last error: {}\n", escape(error)));
        }
        for lag in &peer.origins {
            out.push_str(&format!(
                "  origin {} held {} peer {} behind {} ahead {}\n",
                lag.origin,
                lag.held,
                lag.peer.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                lag.behind(),
                lag.ahead()
            ));
        }
    }
    for fork in forks {
        out.push_str(&format!(
            "quarantined {} fork: seq {} hash {} / seq {} hash {}\n",
            fork.origin,
            fork.a.0,
            hex::encode(fork.a.1),
            fork.b.0,
            hex::encode(fork.b.1)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use vserv_core::Fingerprint;
    use vserv_core::commands::OriginLag;

    use super::*;

    #[test]
    fn status_lines_name_every_peer_feed_and_fork() {
        let origin = Fingerprint([3; 32]);
        let peers = [
            PeerStatus {
                fingerprint: Fingerprint([1; 32]),
                address: Some("127.0.0.1:7118".into()),
                connected: true,
                since_secs: Some(4),
                last_error: Some("closed by the peer (timeout): idle\x1b".into()),
                epoch: Some([0xab; 16]),
                source: PeerSource::Config,
                origins: vec![OriginLag {
                    origin,
                    held: 7,
                    peer: Some(9),
                }],
            },
            PeerStatus {
                fingerprint: Fingerprint([2; 32]),
                address: None,
                connected: false,
                since_secs: None,
                last_error: None,
                epoch: None,
                source: PeerSource::Runtime,
                origins: vec![OriginLag {
                    origin,
                    held: 7,
                    peer: None,
                }],
            },
        ];
        let forks = [ForkSummary {
            origin,
            a: (5, [0x11; 32]),
            b: (5, [0x22; 32]),
        }];
        let text = status_text(&peers, &forks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert_eq!(
            lines[0],
            format!(
                "peer {} 127.0.0.1:7118 up for 4 s epoch {} from config",
                Fingerprint([1; 32]),
                "ab".repeat(16)
            )
        );
        assert!(
            lines[1].starts_with("  last error: closed by the peer"),
            "{}",
            lines[1]
        );
        assert!(!lines[1].contains('\x1b'), "control bytes are escaped");
        assert_eq!(
            lines[2],
            format!("  origin {origin} held 7 peer 9 behind 2 ahead 0")
        );
        assert_eq!(
            lines[3],
            format!(
                "peer {} (accepts its links) down (no link yet) epoch - added at runtime",
                Fingerprint([2; 32])
            )
        );
        assert_eq!(
            lines[4],
            format!("  origin {origin} held 7 peer - behind 0 ahead 7")
        );
        assert!(
            lines[5].starts_with(&format!("quarantined {origin} fork: seq 5 hash 1111")),
            "{}",
            lines[5]
        );
        assert_eq!(status_text(&[], &[]), "no peers configured\n");
    }
}
