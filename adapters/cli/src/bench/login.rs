//! `vserv bench login`: password logins per second with the production argon2 parameters
//! ([`PasswordParams::DEFAULT`]: m = 19456 KiB, t = 2, p = 1), and the server's memory
//! while they run.
//!
//! The server runs as a separate process (this binary's `serve`, or `--server-exe`, on
//! 127.0.0.1:0 with a throwaway data directory and the connection rate limit off; its admin
//! created offline, the benchmark users through the protocol), so its peak RSS (`VmHWM` in
//! `/proc/PID/status`) and its RSS once the logins are over are its own. Each client thread
//! opens one session and logs in over and over as its own user (the limiter bounds parallel
//! logins of one user); every login has the right password, so the backoff never engages.
//! The server lets one address run about ten logins at once, so the sessions are spread
//! over the source addresses 127.0.0.1..127.0.0.N (`--sources`; by default one per eight
//! threads). A login the server refuses (busy) is counted and retried after 10 ms.

use std::ffi::OsStr;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use vserv_blocking::Client;
use vserv_core::ErrorCode;
use vserv_core::commands::{Command, Credential, Reply, SecretBytes};
use vserv_service::accounts::PasswordParams;
use vserv_service::client::{ClientError, ClientOptions};

use super::server::ServerProcess;
use super::stats::Latency;
use super::{Machine, Report};

const ADMIN: &str = "bench";
const PASSWORD: &str = "bench-password-1";
/// Sessions per source address when `--sources` is not given.
const THREADS_PER_SOURCE: u32 = 8;

fn user(thread: u32) -> String {
    format!("bench{thread}")
}

/// `vserv bench login` options.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Client threads, each logging in back to back on its own session.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: u32,
    /// Measured seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = super::parse_seconds)]
    pub seconds: Duration,
    /// Unmeasured seconds before measuring.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = super::parse_seconds)]
    pub warmup: Duration,
    /// End the measurement after this many logins (all threads together) instead of after
    /// --seconds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub logins: Option<u64>,
    /// Source addresses 127.0.0.1..127.0.0.N the sessions are spread over (1-254; default:
    /// one per eight threads).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=254))]
    pub sources: Option<u8>,
    /// The vserv binary run as the server (default: this one), e.g. an older build to
    /// compare with.
    #[arg(long, value_name = "PATH")]
    pub server_exe: Option<PathBuf>,
}

/// The `vserv bench login` report.
#[derive(Serialize, Debug)]
pub struct LoginReport {
    bench: &'static str,
    machine: Machine,
    threads: u32,
    sources: u8,
    seconds: f64,
    /// argon2id memory (KiB), passes, lanes.
    argon2_m_kib: u32,
    argon2_t: u32,
    argon2_p: u32,
    /// Successful logins per second, all threads together.
    logins_per_s: f64,
    completed: u64,
    /// Successful logins including the warm-up.
    total_logins: u64,
    /// Logins the server refused (busy), including the warm-up.
    refused: u64,
    /// One login round trip as the client sees it.
    latency: Latency,
    /// The server's RSS once its users existed, before the first benchmark login, KiB.
    server_rss_start_kib: Option<u64>,
    /// The server's peak RSS (VmHWM) over the whole run, KiB.
    server_peak_rss_kib: Option<u64>,
    /// The server's RSS after the last login, KiB.
    server_rss_end_kib: Option<u64>,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

fn login_command(user: String) -> Command {
    Command::Login {
        user,
        credential: Credential::Password(SecretBytes::new(PASSWORD.as_bytes().to_vec())),
    }
}

/// A TCP connection to `server` from the source address `source` (port chosen by the
/// system).
#[cfg(unix)]
fn connect_from(source: Ipv4Addr, server: &str) -> anyhow::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let server: SocketAddr = server
        .parse()
        .with_context(|| format!("the server address {server} does not parse"))?;
    let socket = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&socket, &SocketAddrV4::new(source, 0)).with_context(|| format!("binding to {source}"))?;
    connect(&socket, &server).with_context(|| format!("connecting to {server} from {source}"))?;
    Ok(TcpStream::from(socket))
}

#[cfg(not(unix))]
fn connect_from(source: Ipv4Addr, server: &str) -> anyhow::Result<TcpStream> {
    if source != Ipv4Addr::LOCALHOST {
        bail!("--sources above 1 needs a Unix system");
    }
    TcpStream::connect(server).with_context(|| format!("connecting to {server}"))
}

/// Creates the benchmark's admin offline in `data` with `exe`.
pub(super) fn add_admin(exe: &std::path::Path, data: &std::path::Path) -> anyhow::Result<()> {
    let added = Process::new(exe)
        .args(["user", "add", ADMIN, "--admin", "--data"])
        .arg(data)
        .env("VSERV_NEW_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .context("creating the benchmark admin")?;
    if !added.status.success() {
        bail!(
            "creating the benchmark admin failed: {}",
            String::from_utf8_lossy(&added.stderr).trim()
        );
    }
    Ok(())
}

/// Counts of one client thread.
#[derive(Default)]
struct Counts {
    samples: Vec<Duration>,
    total: u64,
    refused: u64,
}

/// Logs `client` in as `user` until the phase is STOP.
fn log_in_repeatedly(
    mut client: Client,
    user: String,
    phase: &AtomicU8,
    completed: &AtomicU64,
) -> anyhow::Result<Counts> {
    let command = login_command(user);
    let mut counts = Counts::default();
    while phase.load(Ordering::Relaxed) != STOP {
        let t = Instant::now();
        match client.call(&command) {
            Ok(Reply::User { .. }) => {}
            Ok(other) => bail!("unexpected reply to login: {other:?}"),
            Err(ClientError::Server(e)) if e.code == ErrorCode::LoginFailed => {
                counts.refused += 1;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        counts.total += 1;
        if phase.load(Ordering::Relaxed) == MEASURE {
            counts.samples.push(t.elapsed());
            completed.fetch_add(1, Ordering::Relaxed);
        }
    }
    client.quit()?;
    Ok(counts)
}

/// Runs the login benchmark.
pub fn run(args: &LoginArgs) -> anyhow::Result<LoginReport> {
    let params = PasswordParams::DEFAULT;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let exe = match &args.server_exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().context("locating the vserv binary")?,
    };
    let data = dir.path().join("data");
    add_admin(&exe, &data)?;
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "max_unauthenticated_per_ip = 0\nlogin_grace_secs = 0\n[rate_limit]\nconnections = 0\n",
    )
    .context("writing the server's configuration")?;
    let server = ServerProcess::start(
        &exe,
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--data"),
            data.as_os_str(),
        ],
    )?;
    let addr = server.addr.clone();
    let mut options = ClientOptions::new(dir.path().join("known_servers"));
    options.pinned = Some(server.key()?);

    let mut admin =
        Client::connect(&addr, &options).with_context(|| format!("connecting to {addr}"))?;
    admin
        .call(&login_command(ADMIN.to_owned()))
        .context("logging in as the benchmark admin")?;
    for t in 0..args.threads {
        admin
            .call(&Command::Uadd {
                user: user(t),
                password: SecretBytes::new(PASSWORD.as_bytes().to_vec()),
            })
            .context("creating the benchmark users")?;
    }
    admin.quit().context("ending the admin session")?;
    let server_rss_start_kib = server.rss_kib();

    let sources = args.sources.unwrap_or_else(|| {
        u8::try_from(args.threads.div_ceil(THREADS_PER_SOURCE).min(254)).unwrap_or(254)
    });
    let clients = (0..args.threads)
        .map(|t| {
            let host = u8::try_from(t % u32::from(sources) + 1).unwrap_or(1);
            let stream = connect_from(Ipv4Addr::new(127, 0, 0, host), &addr)?;
            Client::over(stream, &addr, &options)
                .with_context(|| format!("connecting to {addr} from 127.0.0.{host}"))
        })
        .collect::<anyhow::Result<Vec<Client>>>()?;

    let phase = AtomicU8::new(WARMUP);
    let completed = AtomicU64::new(0);
    let (window, results) = std::thread::scope(|scope| {
        let workers: Vec<_> = clients
            .into_iter()
            .zip(0..)
            .map(|(client, t)| {
                let (phase, completed) = (&phase, &completed);
                scope.spawn(move || log_in_repeatedly(client, user(t), phase, completed))
            })
            .collect();
        std::thread::sleep(args.warmup);
        let t0 = Instant::now();
        phase.store(MEASURE, Ordering::Relaxed);
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let done = match args.logins {
                Some(n) => completed.load(Ordering::Relaxed) >= n,
                None => t0.elapsed() >= args.seconds,
            };
            if done || workers.iter().all(|w| w.is_finished()) {
                break;
            }
        }
        phase.store(STOP, Ordering::Relaxed);
        let window = t0.elapsed();
        let results: Vec<anyhow::Result<Counts>> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
            })
            .collect();
        (window, results)
    });
    // The end before the peak: the server runs on, and a peak read first could be passed
    // by the RSS read after it.
    let server_rss_end_kib = server.rss_kib();
    let server_peak_rss_kib = server.peak_rss_kib();
    drop(server);
    let (mut all, mut total_logins, mut refused) = (Vec::new(), 0, 0);
    for r in results {
        let counts = r.context("a login failed")?;
        all.extend(counts.samples);
        total_logins += counts.total;
        refused += counts.refused;
    }
    let completed = completed.load(Ordering::Relaxed);
    Ok(LoginReport {
        bench: "login",
        machine: Machine::get(),
        threads: args.threads,
        sources,
        seconds: window.as_secs_f64(),
        argon2_m_kib: params.m_cost_kib,
        argon2_t: params.t_cost,
        argon2_p: params.p_cost,
        logins_per_s: completed as f64 / window.as_secs_f64(),
        completed,
        total_logins,
        refused,
        latency: Latency::from_samples(&mut all),
        server_rss_start_kib,
        server_peak_rss_kib,
        server_rss_end_kib,
    })
}

/// `N MiB` for a KiB figure, or `n/a`.
fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

impl Report for LoginReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench login: {} client threads from {} addresses for {:.2} s against a \
             server process on 127.0.0.1 ({} CPUs)",
            self.threads, self.sources, self.seconds, self.machine.cpus
        );
        let _ = writeln!(
            s,
            "argon2id m={} KiB t={} p={}: {:.1} logins/s, {} completed ({} in all, {} refused \
             as busy)",
            self.argon2_m_kib,
            self.argon2_t,
            self.argon2_p,
            self.logins_per_s,
            self.completed,
            self.total_logins,
            self.refused
        );
        let l = &self.latency;
        let _ = writeln!(
            s,
            "login round trip (ms): min {:.2} mean {:.2} p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            l.min_us / 1e3,
            l.mean_us / 1e3,
            l.p50_us / 1e3,
            l.p90_us / 1e3,
            l.p99_us / 1e3,
            l.max_us / 1e3
        );
        let _ = writeln!(
            s,
            "server RSS: {} before the logins, peak {}, {} after them",
            mib(self.server_rss_start_kib),
            mib(self.server_peak_rss_kib),
            mib(self.server_rss_end_kib)
        );
        s
    }
}
