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

use crate::client_cmd::Connected;
use crate::show::escape;

/// `vserv peer` options; `C` is the connection options (none in the shell).
#[derive(Args, Debug)]
pub struct PeerArgs<C: Args> {
    #[command(subcommand)]
    command: PeerCommand<C>,
}

/// The peer commands.
#[derive(Subcommand, Debug)]
enum PeerCommand<C: Args> {
    /// Show each configured peer (admins): link up or down and since when, the last error,
    /// the peer's epoch, per feed the seq held here and there (`behind`: entries this server
    /// lacks, `ahead`: entries the peer lacks); then the quarantined origins and their forks.
    #[command(visible_alias = "list")]
    Status {
        /// One JSON document instead of text: `{"peers": [...], "forks": [...]}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: C,
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
        client: C,
    },
    /// Remove a replication peer added at runtime (admins): its links close and it is no
    /// longer dialed. Peers of the config file are changed in the file.
    Del {
        /// The fingerprint of the peer's server key.
        fingerprint: Fingerprint,
        #[command(flatten)]
        client: C,
    },
}

impl<C: Args> PeerArgs<C> {
    /// The connection options given with the command.
    pub fn client(&self) -> &C {
        match &self.command {
            PeerCommand::Status { client, .. }
            | PeerCommand::Add { client, .. }
            | PeerCommand::Del { client, .. } => client,
        }
    }

    /// The subcommand's name, for messages (`status`, `add`, `del`).
    pub fn name(&self) -> &'static str {
        match &self.command {
            PeerCommand::Status { .. } => "status",
            PeerCommand::Add { .. } => "add",
            PeerCommand::Del { .. } => "del",
        }
    }
}

/// Runs a `vserv peer` command on an open connection.
pub fn run<C: Args>(connected: &mut Connected, args: &PeerArgs<C>) -> anyhow::Result<()> {
    match &args.command {
        PeerCommand::Status { json, .. } => status(connected, *json),
        PeerCommand::Add {
            fingerprint,
            address,
            ..
        } => {
            let cmd = Command::Padd {
                fingerprint: *fingerprint,
                address: address.clone(),
            };
            done(connected, &cmd)?;
            println!("peer {fingerprint} added");
            Ok(())
        }
        PeerCommand::Del { fingerprint, .. } => {
            done(
                connected,
                &Command::Pdel {
                    fingerprint: *fingerprint,
                },
            )?;
            println!("peer {fingerprint} removed");
            Ok(())
        }
    }
}

/// Runs `cmd`, which answers with success only.
fn done(connected: &mut Connected, cmd: &Command) -> anyhow::Result<()> {
    let reply = connected.client.call(cmd)?;
    if reply != Reply::Done {
        bail!("unexpected reply to {}: {reply:?}", cmd.name());
    }
    Ok(())
}

/// `vserv peer status`.
fn status(connected: &mut Connected, json: bool) -> anyhow::Result<()> {
    let reply = connected.client.call(&Command::Peers)?;
    let Reply::Peers { peers, forks } = reply else {
        bail!("unexpected reply to peers: {reply:?}");
    };
    if json {
        println!("{}", status_json(&peers, &forks));
    } else {
        print!("{}", status_text(&peers, &forks));
    }
    Ok(())
}

/// What `vserv peer status --json` prints: every peer (fingerprint, address, connected,
/// since_secs, last_error, epoch in hex, source `config` or `runtime`, and per origin the
/// seqs held here and by the peer with `behind` and `ahead`), then the quarantined origins
/// with the `(seq, hash)` of both signed heads of their fork proofs. Absent values are
/// `null`.
pub fn status_json(peers: &[PeerStatus], forks: &[ForkSummary]) -> serde_json::Value {
    let peers: Vec<_> = peers
        .iter()
        .map(|p| {
            let origins: Vec<_> = p
                .origins
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "origin": o.origin.to_string(),
                        "held": o.held,
                        "peer": o.peer,
                        "behind": o.behind(),
                        "ahead": o.ahead(),
                    })
                })
                .collect();
            serde_json::json!({
                "fingerprint": p.fingerprint.to_string(),
                "address": p.address,
                "connected": p.connected,
                "since_secs": p.since_secs,
                "last_error": p.last_error,
                "epoch": p.epoch.map(hex::encode),
                "source": match p.source {
                    PeerSource::Config => "config",
                    PeerSource::Runtime => "runtime",
                },
                "origins": origins,
            })
        })
        .collect();
    let head =
        |(seq, hash): (u64, [u8; 32])| serde_json::json!({"seq": seq, "hash": hex::encode(hash)});
    let forks: Vec<_> = forks
        .iter()
        .map(
            |f| serde_json::json!({"origin": f.origin.to_string(), "a": head(f.a), "b": head(f.b)}),
        )
        .collect();
    serde_json::json!({ "peers": peers, "forks": forks })
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
        let json = status_json(&peers, &forks);
        assert_eq!(json["peers"][0]["origins"][0]["behind"], 2);
        assert_eq!(json["peers"][0]["epoch"], "ab".repeat(16));
        assert_eq!(json["peers"][0]["source"], "config");
        assert_eq!(json["peers"][1]["source"], "runtime");
        assert_eq!(json["peers"][1]["epoch"], serde_json::Value::Null);
        assert_eq!(
            json["peers"][1]["origins"][0]["peer"],
            serde_json::Value::Null
        );
        assert_eq!(json["forks"][0]["b"]["hash"], "22".repeat(32));
        assert_eq!(json["forks"][0]["origin"], origin.to_string());
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
