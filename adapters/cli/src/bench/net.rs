//! `vserv bench handshake` and `vserv bench rtt`: sessions per second and ping latency over
//! loopback, against an in-process blocking server or a `--server` the user names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use tempfile::TempDir;
use vserv_blocking::{Client, Server, ServerHandle, ServerOptions};
use vserv_core::commands::{Command, MAX_PING_PAYLOAD, Reply};
use vserv_core::{Fingerprint, ServerIdentity};
use vserv_service::Node;
use vserv_service::client::{ClientError, ClientOptions};

use super::stats::Latency;
use super::{Machine, Report};

/// The targets.
const HANDSHAKE_TARGET_PER_S: f64 = 3000.0;
const RTT_P50_TARGET_US: f64 = 50.0;

/// Which server to measure.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Measure this server (HOST:PORT) instead of an in-process one on 127.0.0.1:0.
    #[arg(long, short = 's', value_name = "HOST:PORT", requires = "server_key")]
    pub server: Option<String>,
    /// Fingerprint the --server must present (SHA256:...).
    #[arg(long, value_name = "FPR", requires = "server")]
    pub server_key: Option<Fingerprint>,
}

/// `vserv bench handshake` options.
#[derive(Args, Debug)]
pub struct HandshakeArgs {
    /// Client threads, each running sessions back to back.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// Measured seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = super::parse_seconds)]
    pub seconds: Duration,
    /// Unmeasured seconds before measuring.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = super::parse_seconds)]
    pub warmup: Duration,
    /// Also time the parts of a session one by one (k256 operations, RNG, known_servers,
    /// thread spawn, TCP connect), single-threaded, about a second each.
    #[arg(long)]
    pub breakdown: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `vserv bench rtt` options.
#[derive(Args, Debug)]
pub struct RttArgs {
    /// Measured pings.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub count: u32,
    /// Unmeasured pings first.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=100_000_000))]
    pub warmup: u32,
    /// Ping payload size in bytes.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(0..=MAX_PING_PAYLOAD as i64))]
    pub payload: u16,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// A server to talk to, and how the client trusts it. Dropping it stops an in-process
/// server, then removes the temporary known_servers file.
struct Target {
    addr: String,
    options: ClientOptions,
    kind: &'static str,
    server: Option<ServerHandle>,
    _dir: TempDir,
}

impl Target {
    fn new(args: &TargetArgs) -> anyhow::Result<Target> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let mut options = ClientOptions::new(dir.path().join("known_servers"));
        let target = match (&args.server, args.server_key) {
            (Some(addr), Some(fingerprint)) => {
                options.pinned = Some(fingerprint);
                Target {
                    addr: addr.clone(),
                    options,
                    kind: "external server",
                    server: None,
                    _dir: dir,
                }
            }
            (Some(_), None) => bail!("--server needs --server-key"),
            (None, _) => {
                let mut rng = vserv_service::system::os_rng()?;
                let identity = Arc::new(ServerIdentity::generate(&mut *rng));
                let fingerprint = identity.public_key().fingerprint();
                let service = Node::builder(identity.clone(), super::node_settings())
                    .build()
                    .context("assembling the in-process server")?
                    .service();
                let server =
                    Server::bind("127.0.0.1:0", identity, service, ServerOptions::default())
                        .context("starting the in-process server on 127.0.0.1")?;
                let handle = server.spawn().context("starting the accept thread")?;
                options.pinned = Some(fingerprint);
                Target {
                    addr: handle.local_addr().to_string(),
                    options,
                    kind: "in-process blocking server",
                    server: Some(handle),
                    _dir: dir,
                }
            }
        };
        // First contact records the pinned key, so the measured sessions only read the file.
        let client = Client::connect(&target.addr, &target.options)
            .with_context(|| format!("connecting to {}", target.addr))?;
        client.quit().context("closing the first session")?;
        Ok(target)
    }

    fn describe(&self) -> String {
        format!("{} at {}", self.kind, self.addr)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

fn ping(client: &mut Client, payload: &[u8]) -> anyhow::Result<()> {
    let command = Command::Ping {
        payload: payload.to_vec(),
    };
    match client.call(&command)? {
        Reply::Pong(echo) if echo == payload => Ok(()),
        other => bail!("unexpected reply to ping: {other:?}"),
    }
}

/// Durations of one session's phases.
struct Phases {
    handshake: Duration,
    ping: Duration,
    total: Duration,
}

fn one_session(target: &Target) -> anyhow::Result<Phases> {
    let start = Instant::now();
    let mut client = Client::connect(&target.addr, &target.options)?;
    let connected = Instant::now();
    ping(&mut client, b"bench")?;
    let pinged = Instant::now();
    client
        .close()
        .map_err(|e: ClientError| anyhow::Error::from(e))?;
    Ok(Phases {
        handshake: connected - start,
        ping: pinged - connected,
        total: start.elapsed(),
    })
}

/// Process CPU time (user + system) from /proc/self/stat, where available.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI Rust targets.
    Some(Duration::from_millis((utime + stime) * 10))
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Samples one thread collected while measuring.
#[derive(Default)]
struct ThreadResult {
    handshake: Vec<Duration>,
    ping: Vec<Duration>,
    total: Vec<Duration>,
}

/// The `vserv bench handshake` report.
#[derive(Serialize, Debug)]
pub struct HandshakeReport {
    bench: &'static str,
    machine: Machine,
    server: String,
    threads: u32,
    seconds: f64,
    /// Sessions (connect + handshake + ping + close) completed per second.
    handshakes_per_s: f64,
    completed: u64,
    failures: u64,
    /// Up to a few distinct failure messages with their counts.
    errors: BTreeMap<String, u64>,
    /// Connect + handshake, as the client sees it.
    handshake_latency: Latency,
    /// The ping after the handshake.
    ping_latency: Latency,
    /// The whole session including close.
    session_latency: Latency,
    /// Process CPU time (client threads and in-process server) per session, if known.
    cpu_us_per_session: Option<f64>,
    /// Process CPU time over wall time times CPUs, if known.
    cpu_utilisation: Option<f64>,
    target_per_s: f64,
    target_met: bool,
    /// With --breakdown: single-thread cost of each part of a session.
    #[serde(skip_serializing_if = "Option::is_none")]
    breakdown: Option<Vec<super::breakdown::Part>>,
}

/// Runs the handshake benchmark.
pub fn handshake(args: &HandshakeArgs) -> anyhow::Result<HandshakeReport> {
    let target = Target::new(&args.target)?;
    let phase = AtomicU8::new(WARMUP);
    let completed = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let errors: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    let (window, cpu, results) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = ThreadResult::default();
                    while phase.load(Ordering::Relaxed) != STOP {
                        match one_session(&target) {
                            Ok(p) => {
                                if phase.load(Ordering::Relaxed) == MEASURE {
                                    completed.fetch_add(1, Ordering::Relaxed);
                                    mine.handshake.push(p.handshake);
                                    mine.ping.push(p.ping);
                                    mine.total.push(p.total);
                                }
                            }
                            Err(e) => {
                                if phase.load(Ordering::Relaxed) == MEASURE {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                }
                                if let Ok(mut map) = errors.lock() {
                                    let text = format!("{e:#}");
                                    if map.len() < 8 || map.contains_key(&text) {
                                        *map.entry(text).or_default() += 1;
                                    }
                                }
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        std::thread::sleep(args.warmup);
        let cpu0 = process_cpu();
        let t0 = Instant::now();
        phase.store(MEASURE, Ordering::Relaxed);
        std::thread::sleep(args.seconds);
        phase.store(STOP, Ordering::Relaxed);
        let window = t0.elapsed();
        let cpu = cpu0.zip(process_cpu()).map(|(a, b)| b.saturating_sub(a));
        let results: Vec<ThreadResult> = workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .collect();
        (window, cpu, results)
    });
    let breakdown = if args.breakdown {
        Some(super::breakdown::parts(
            Duration::from_secs(1),
            &target.options.known_servers,
        )?)
    } else {
        None
    };
    drop(target);
    let mut all = ThreadResult::default();
    for r in results {
        all.handshake.extend(r.handshake);
        all.ping.extend(r.ping);
        all.total.extend(r.total);
    }
    let completed = completed.load(Ordering::Relaxed);
    let secs = window.as_secs_f64();
    let rate = completed as f64 / secs;
    let machine = Machine::get();
    let cpu_us_per_session = cpu
        .filter(|_| completed > 0)
        .map(|c| c.as_secs_f64() * 1e6 / completed as f64);
    let cpu_utilisation = cpu.map(|c| c.as_secs_f64() / (secs * machine.cpus as f64));
    let server = match &args.target.server {
        Some(s) => format!("external server at {s}"),
        None => "in-process blocking server on 127.0.0.1".into(),
    };
    Ok(HandshakeReport {
        bench: "handshake",
        machine,
        server,
        threads: args.threads,
        seconds: secs,
        handshakes_per_s: rate,
        completed,
        failures: failures.load(Ordering::Relaxed),
        errors: errors.into_inner().unwrap_or_default(),
        handshake_latency: Latency::from_samples(&mut all.handshake),
        ping_latency: Latency::from_samples(&mut all.ping),
        session_latency: Latency::from_samples(&mut all.total),
        cpu_us_per_session,
        cpu_utilisation,
        target_per_s: HANDSHAKE_TARGET_PER_S,
        target_met: rate >= HANDSHAKE_TARGET_PER_S,
        breakdown,
    })
}

fn latency_header(s: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(µs)", "min", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
}

fn latency_row(s: &mut String, name: &str, l: &Latency) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "{:<22} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        name, l.min_us, l.mean_us, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
    );
}

impl Report for HandshakeReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench handshake: {} client threads for {:.2} s against the {} ({} CPUs)",
            self.threads, self.seconds, self.server, self.machine.cpus
        );
        let _ = writeln!(
            s,
            "sessions (connect + handshake + ping + close): {:.0}/s, {} completed, {} failed; \
             target >= {:.0}/s: {}",
            self.handshakes_per_s,
            self.completed,
            self.failures,
            self.target_per_s,
            if self.target_met { "met" } else { "MISSED" }
        );
        if let (Some(cpu), Some(util)) = (self.cpu_us_per_session, self.cpu_utilisation) {
            let _ = writeln!(
                s,
                "process CPU: {cpu:.0} µs per session ({}), {:.0}% of all CPUs",
                if self.server.starts_with("external") {
                    "client side only"
                } else {
                    "client threads + in-process server"
                },
                util * 100.0
            );
        }
        latency_header(&mut s);
        latency_row(&mut s, "connect + handshake", &self.handshake_latency);
        latency_row(&mut s, "first ping", &self.ping_latency);
        latency_row(&mut s, "whole session", &self.session_latency);
        for (e, n) in &self.errors {
            let _ = writeln!(s, "error ({n}x): {e}");
        }
        if let Some(parts) = &self.breakdown {
            let _ = writeln!(
                s,
                "breakdown (one thread, best of 3):\n{:<42} {:>9}  per session",
                "part", "µs/op"
            );
            for p in parts {
                let _ = writeln!(s, "{:<42} {:>9.1}  {}", p.name, p.us, p.per_session);
            }
        }
        s
    }
}

/// The `vserv bench rtt` report.
#[derive(Serialize, Debug)]
pub struct RttReport {
    bench: &'static str,
    machine: Machine,
    server: String,
    payload_bytes: u16,
    warmup: u32,
    /// Round trips per second on the one session.
    pings_per_s: f64,
    latency: Latency,
    target_p50_us: f64,
    target_met: bool,
}

/// Runs the ping latency benchmark.
pub fn rtt(args: &RttArgs) -> anyhow::Result<RttReport> {
    let target = Target::new(&args.target)?;
    let server = target.describe();
    let payload = vec![b'x'; usize::from(args.payload)];
    let mut client = Client::connect(&target.addr, &target.options)
        .with_context(|| format!("connecting to {}", target.addr))?;
    for _ in 0..args.warmup {
        ping(&mut client, &payload).context("warm-up ping")?;
    }
    let mut samples = Vec::with_capacity(args.count as usize);
    let start = Instant::now();
    for _ in 0..args.count {
        let t = Instant::now();
        ping(&mut client, &payload).context("ping")?;
        samples.push(t.elapsed());
    }
    let total = start.elapsed();
    client.quit().context("closing the session")?;
    drop(target);
    let latency = Latency::from_samples(&mut samples);
    Ok(RttReport {
        bench: "rtt",
        machine: Machine::get(),
        server,
        payload_bytes: args.payload,
        warmup: args.warmup,
        pings_per_s: f64::from(args.count) / total.as_secs_f64(),
        target_p50_us: RTT_P50_TARGET_US,
        target_met: latency.p50_us <= RTT_P50_TARGET_US,
        latency,
    })
}

impl Report for RttReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench rtt: {} pings of {} B on one session (after {} warm-up) to the {}",
            self.latency.samples, self.payload_bytes, self.warmup, self.server
        );
        let _ = writeln!(
            s,
            "{:.0} round trips/s; p50 {:.1} µs, target <= {:.0} µs: {}",
            self.pings_per_s,
            self.latency.p50_us,
            self.target_p50_us,
            if self.target_met { "met" } else { "MISSED" }
        );
        latency_header(&mut s);
        latency_row(&mut s, "ping round trip", &self.latency);
        s
    }
}
