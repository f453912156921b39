//! `vserv bench`: crypto throughput, handshakes per second, ping round trips, logins per
//! second and the ledger's appends/reads/verification per second.
//!
//! The crypto benchmark drives the record layer directly; the handshake and rtt benchmarks
//! start a blocking server in this process on 127.0.0.1:0 with a throwaway identity (or use
//! the server given with `--server`, pinned with `--server-key`); the login and transfer
//! benchmarks start a separate server process, whose memory they report; the replication
//! benchmark starts several server processes that replicate to each other (or, with
//! `--in-process`, blocking servers in this process).
//! `--compare OLD_BINARY` runs any of them with an older binary and this one, interleaved,
//! and prints the ratios (`compare.rs`); `burst --runtimes` pairs a blocking and a smol
//! server the same way.

mod breakdown;
mod burst;
mod commit_meter;
mod compare;
mod crypto;
mod ledger;
mod login;
mod net;
mod repl;
mod seal;
mod server;
mod stats;
mod transfer;
mod udp;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

/// `vserv bench` options.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Run the benchmark with this older `vserv` binary and with this one, interleaved,
    /// and print every figure of both side by side with the ratio new/old.
    #[arg(long, global = true, value_name = "OLD_BINARY")]
    pub compare: Option<std::path::PathBuf>,
    /// With --compare (or `burst --runtimes`): rounds per side (medians are reported).
    #[arg(long, global = true, default_value_t = 3)]
    pub rounds: u32,
    #[command(subcommand)]
    pub what: BenchKind,
}

/// What to measure.
#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// Record-layer throughput (seal/open) against raw AES-256-CBC + HMAC-SHA256.
    Crypto(crypto::CryptoArgs),
    /// Full sessions per second: connect, handshake, ping, close.
    Handshake(net::HandshakeArgs),
    /// Ping round-trip latency on one session.
    Rtt(net::RttArgs),
    /// Password logins per second with the production argon2 parameters, and the server
    /// process's memory.
    Login(login::LoginArgs),
    /// Durable ledger appends and reads per second, and offline verification speed.
    Ledger(ledger::LedgerArgs),
    /// Upload then download a generated file over loopback: MB/s each way and the server
    /// process's peak RSS.
    Transfer(transfer::TransferArgs),
    /// Replication over loopback: a backlog caught up by a new peer (entries/s), live
    /// latency from an acknowledged `rput` to its commit on the peer, and fan-out along a
    /// line of five servers.
    Repl(repl::ReplArgs),
    /// A command over sealed UDP datagrams against the same command over one TCP session:
    /// requests/s and p50/p99 of each, side by side.
    Udp(udp::UdpArgs),
    /// A burst of idle logged-in sessions against a server process: one idle session's
    /// memory, ping latency with them held, and how soon threads and RSS come back after
    /// they close.
    Burst(burst::BurstArgs),
    /// Transit `seal` and `unseal` MB/s over one session, beside the construction's local
    /// speed and `bench crypto`'s raw-seal bound at the same size.
    Seal(seal::SealArgs),
}

/// Runs the selected benchmark and prints its report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtimes = matches!(&args.what, BenchKind::Burst(burst) if burst.runtimes);
    if runtimes && args.compare.is_some() {
        bail!(
            "burst --runtimes compares two runtimes of this binary; it cannot be combined with --compare"
        );
    }
    if let Some(old) = &args.compare {
        return compare::run(old, args.rounds, args.json);
    }
    if runtimes {
        return compare::run_runtimes(args.rounds, args.json);
    }
    match args.what {
        BenchKind::Crypto(a) => emit(&crypto::run(&a)?, args.json),
        BenchKind::Handshake(a) => emit(&net::handshake(&a)?, args.json),
        BenchKind::Rtt(a) => emit(&net::rtt(&a)?, args.json),
        BenchKind::Login(a) => emit(&login::run(&a)?, args.json),
        BenchKind::Ledger(a) => emit(&ledger::run(&a)?, args.json),
        BenchKind::Transfer(a) => emit(&transfer::run(&a)?, args.json),
        BenchKind::Repl(a) => emit(&repl::run(&a)?, args.json),
        BenchKind::Udp(a) => emit(&udp::run(&a)?, args.json),
        BenchKind::Burst(a) => emit(&burst::run(&a)?, args.json),
        BenchKind::Seal(a) => emit(&seal::run(&a)?, args.json),
    }
}

/// A benchmark report: a JSON object and a human-readable table.
trait Report: Serialize {
    fn table(&self) -> String;
}

/// The settings of an in-process benchmark server: the cheapest argon2 and no limit on
/// sessions per second from one address (every client comes from 127.0.0.1).
fn node_settings() -> vserv_service::NodeSettings {
    let mut settings = vserv_service::NodeSettings::insecure_fast("vserv-bench");
    settings.policy.connection_rate = None;
    settings.policy.max_unauthenticated_per_ip = None;
    settings
}

fn emit<R: Report>(report: &R, json: bool) -> anyhow::Result<()> {
    if json {
        let text = serde_json::to_string(report).context("encoding the report as JSON")?;
        println!("{text}");
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// A duration given in seconds on the command line: positive, finite, at most a day.
fn parse_seconds(s: &str) -> anyhow::Result<Duration> {
    let secs: f64 = s
        .trim()
        .parse()
        .with_context(|| format!("'{s}' is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        bail!("seconds must be greater than 0 and at most 86400, got {s}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Facts about the machine that help read the numbers.
#[derive(Serialize, Debug)]
struct Machine {
    /// Logical CPUs available to this process.
    cpus: usize,
    /// `vserv` version.
    version: &'static str,
}

impl Machine {
    fn get() -> Self {
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}
