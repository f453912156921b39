//! `vserv bench seal`: transit `seal` and `unseal` throughput (payload MB/s) over one logged-in
//! session against an in-process blocking server on 127.0.0.1:0 (requests one at a time,
//! each waiting for its answer), printed beside two bounds measured in the same run: the
//! transit construction alone in this process (`vserv_core::transit::seal`/`open`: key
//! derivation, AES-256-CBC, HMAC-SHA256, no network, no store) and `vserv bench crypto`'s
//! `raw-seal` row (raw AES-256-CBC + HMAC-SHA256) at the same size.
//!
//! The default size is 12000 bytes, the largest `seal` (spec/transit.md §3): its token
//! fills a 16 KiB record, so this is the "16 KiB payload" case of the protocol.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use vserv_blocking::{Client, Server, ServerOptions};
use vserv_core::ServerIdentity;
use vserv_core::commands::{Command, Credential, Reply, SecretBytes, TkeyAction};
use vserv_core::transit::{MAX_SEAL_DATA, Token};
use vserv_service::Node;
use vserv_service::client::ClientOptions;

use super::{Machine, Report};

const USER: &str = "bench";
const PASSWORD: &str = "bench-password-1";
const KEY: &str = "bench";

/// `vserv bench seal` options.
#[derive(Args, Debug)]
pub struct SealArgs {
    /// Data bytes per seal (1 to 12000).
    #[arg(long, default_value_t = MAX_SEAL_DATA as u32,
          value_parser = clap::value_parser!(u32).range(1..=MAX_SEAL_DATA as i64))]
    pub size: u32,
    /// Measured seconds for each of seal and unseal.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = super::parse_seconds)]
    pub seconds: Duration,
    /// Requests in flight at once on the session (1: one at a time; `vserv seal -` and
    /// `vserv unseal -` keep 8).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub window: u32,
}

/// The `vserv bench seal` report.
#[derive(Serialize, Debug)]
pub struct SealReport {
    bench: &'static str,
    machine: Machine,
    server: &'static str,
    size: u32,
    /// Requests in flight at once.
    window: u32,
    /// `seal` requests answered per second on the one session.
    seals_per_s: f64,
    /// Payload MB/s (10^6 bytes) sealed through the server.
    seal_mb_s: f64,
    /// `unseal` requests answered per second.
    unseals_per_s: f64,
    /// Payload MB/s unsealed through the server.
    unseal_mb_s: f64,
    /// The construction alone, in this process: seal and open MB/s.
    local_seal_mb_s: f64,
    local_open_mb_s: f64,
    /// `vserv bench crypto`'s raw-seal bound (AES-256-CBC + HMAC-SHA256) at this size.
    raw_seal_mb_s: f64,
}

fn call(client: &mut Client, cmd: &Command) -> anyhow::Result<Reply> {
    client
        .call(cmd)
        .with_context(|| format!("{} failed", cmd.name()))
}

/// `batch` pipelined `window` at a time; fails if any of them failed.
fn call_all(client: &mut Client, batch: &[Command], window: u32) -> anyhow::Result<()> {
    for reply in client.call_pipelined(batch, window as usize)? {
        reply.context("a pipelined request failed")?;
    }
    Ok(())
}

/// Runs `op` back to back for `budget`; returns operations per second.
fn rate(budget: Duration, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        op()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Runs the transit benchmark.
pub fn run(args: &SealArgs) -> anyhow::Result<SealReport> {
    let size = args.size as usize;
    let data = vec![0x5a; size];
    let mb = |per_s: f64| per_s * size as f64 / 1e6;

    // The bounds first, while nothing else runs.
    let material = [7u8; 32];
    let local_seal = rate(args.seconds, || {
        vserv_core::transit::seal(&material, KEY, 1, [1; 16], &data)
            .map(drop)
            .context("local seal")
    })?;
    let token = vserv_core::transit::seal(&material, KEY, 1, [1; 16], &data)?;
    let local_open = rate(args.seconds, || {
        vserv_core::transit::open(&material, &token)
            .map(drop)
            .context("local open")
    })?;
    let raw_seal_mb_s = super::crypto::raw_seal_mb_s(size, args.seconds)?;

    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut rng = vserv_service::system::os_rng()?;
    let identity = Arc::new(ServerIdentity::generate(&mut *rng));
    let mut options = ClientOptions::new(dir.path().join("known_servers"));
    options.pinned = Some(identity.public_key().fingerprint());
    let service = Node::builder(identity.clone(), super::node_settings())
        .build()
        .context("assembling the in-process server")?
        .service();
    let server = Server::bind("127.0.0.1:0", identity, service, ServerOptions::default())
        .context("starting the in-process server on 127.0.0.1")?
        .spawn()
        .context("starting the accept thread")?;
    let result = (|| {
        let addr = server.local_addr().to_string();
        let mut client = Client::connect(&addr, &options).context("connecting")?;
        let password = || SecretBytes::new(PASSWORD.as_bytes().to_vec());
        call(
            &mut client,
            &Command::Uini {
                user: USER.into(),
                password: password(),
            },
        )?;
        call(
            &mut client,
            &Command::Login {
                user: USER.into(),
                credential: Credential::Password(password()),
            },
        )?;
        call(&mut client, &Command::Tkey(TkeyAction::New(KEY.into())))?;
        let seal_cmd = Command::Seal {
            name: KEY.into(),
            data: data.clone(),
        };
        let Reply::Token(token) = call(&mut client, &seal_cmd)? else {
            bail!("seal did not answer a token");
        };
        Token::parse(token.as_bytes()).context("the server's token")?;
        // Each operation of `rate` is a batch of 4 windows' worth of requests.
        let per_batch = 4 * args.window as usize;
        let seals = vec![seal_cmd; per_batch];
        let seals = rate(args.seconds, || call_all(&mut client, &seals, args.window))?;
        let unseals = vec![
            Command::Unseal {
                name: KEY.into(),
                token: token.into_bytes(),
            };
            per_batch
        ];
        let unseals = rate(args.seconds, || {
            call_all(&mut client, &unseals, args.window)
        })?;
        let (seals, unseals) = (seals * per_batch as f64, unseals * per_batch as f64);
        client.quit().context("closing the session")?;
        Ok((seals, unseals))
    })();
    server.shutdown();
    let (seals, unseals) = result?;
    Ok(SealReport {
        bench: "seal",
        machine: Machine::get(),
        server: "in-process blocking server",
        size: args.size,
        window: args.window,
        seals_per_s: seals,
        seal_mb_s: mb(seals),
        unseals_per_s: unseals,
        unseal_mb_s: mb(unseals),
        local_seal_mb_s: mb(local_seal),
        local_open_mb_s: mb(local_open),
        raw_seal_mb_s,
    })
}

impl Report for SealReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench seal: {} B per request, one session, {} requests in flight, {}",
            self.size, self.window, self.server
        );
        let _ = writeln!(s, "{:<34} {:>10} {:>10}", "", "MB/s", "req/s");
        let _ = writeln!(
            s,
            "{:<34} {:>10.1} {:>10.0}",
            "seal (through the server)", self.seal_mb_s, self.seals_per_s
        );
        let _ = writeln!(
            s,
            "{:<34} {:>10.1} {:>10.0}",
            "unseal (through the server)", self.unseal_mb_s, self.unseals_per_s
        );
        let _ = writeln!(
            s,
            "{:<34} {:>10.1}",
            "transit seal, local (bound)", self.local_seal_mb_s
        );
        let _ = writeln!(
            s,
            "{:<34} {:>10.1}",
            "transit open, local (bound)", self.local_open_mb_s
        );
        let _ = writeln!(
            s,
            "{:<34} {:>10.1}",
            "bench crypto raw-seal (bound)", self.raw_seal_mb_s
        );
        s
    }
}
