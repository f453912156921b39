//! `--udp`: running a command over sealed UDP datagrams (spec/datagrams.md) instead of a TCP
//! session. [`UdpFlag`] is the reusable flag; [`run`] resolves the server's address and
//! key (known_servers, `--server-key`, or a key query decided by trust on first use), sends
//! the request with retries and prints the reply as the TCP path would.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use vserv_core::commands::{Command, Reply};
use vserv_service::client::datagram::{DatagramClient, trusted_key};
use vserv_store::trust::TrustDecision;

use crate::client_cmd::{ClientArgs, print_reply};

/// The `--udp` flag of commands that may go over UDP.
#[derive(Args, Debug, Clone, Default)]
pub struct UdpFlag {
    /// Send the command as one sealed UDP datagram (to the server's `udp_listen`) instead of
    /// over a TCP session; anonymous, and only for the commands the server serves over UDP.
    #[arg(long)]
    pub udp: bool,
}

/// The first address `server` (HOST:PORT) names.
fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("resolving {server}"))?
        .next()
        .ok_or_else(|| anyhow!("{server} names no address"))
}

/// A datagram client of the server `args` names, its key trusted as a TCP connection's is.
pub fn client(args: &ClientArgs) -> anyhow::Result<DatagramClient> {
    let options = args.options()?;
    let addr = resolve(&args.server)?;
    let timeout = Duration::from_millis(500);
    let (key, decision) = trusted_key(
        &options.known_servers,
        &args.server,
        addr,
        options.pinned.as_ref(),
        timeout,
    )?;
    if let TrustDecision::FirstContact { fingerprint } = decision {
        eprintln!(
            "vserv: first contact with {}; recorded its key {fingerprint}",
            args.server
        );
    }
    let rng = vserv_service::system::os_rng().context("opening the OS random source")?;
    let mut client = DatagramClient::new(addr, key, rng)?;
    if args.timeout > 0 {
        // The whole request (every attempt) stays within --timeout.
        let per_attempt = Duration::from_secs(args.timeout) / client.attempts.max(1);
        client.attempt_timeout = client.attempt_timeout.min(per_attempt);
    }
    Ok(client)
}

/// Runs `command` over UDP against the server `args` names and prints its reply.
pub fn run(args: &ClientArgs, command: &Command) -> anyhow::Result<()> {
    let mut client = anonymous_client(args)?;
    let reply = call(&mut client, command)?;
    print_reply(&reply, Some(client.server_key().fingerprint()));
    Ok(())
}

/// A datagram client for `args`, refusing a `--user` (UDP requests are anonymous).
pub fn anonymous_client(args: &ClientArgs) -> anyhow::Result<DatagramClient> {
    if args.user.is_some() {
        bail!("--udp sends anonymous requests: it cannot log in (drop --user)");
    }
    client(args)
}

/// One request over UDP: the server's typed reply, or its error.
pub fn call(client: &mut DatagramClient, command: &Command) -> anyhow::Result<Reply> {
    let response = client.request(command.name(), command.args())?;
    match response.result {
        Ok(fields) => Reply::from_fields(command, &fields)
            .map_err(|e| anyhow!("malformed reply from the server: {e}")),
        Err(e) => bail!("server error: {e}"),
    }
}
