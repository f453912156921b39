//! `vserv bench burst`: what a burst of sessions costs a server process and whether it
//! gives the memory and threads back.
//!
//! The server runs as a separate process (this binary's `serve`, or `--server-exe`, on
//! 127.0.0.1:0 with a throwaway data directory, the runtime chosen with `--runtime`, cheap
//! argon2 for the benchmark users and no per-address limits), so the threads and RSS read
//! from `/proc/PID/status` are its own. One session stays open throughout and measures ping
//! round trips. The benchmark then
//! 1. samples the idle server (threads, RSS) and the round trip;
//! 2. opens `--sessions` more sessions at once (each logged in) from a few client threads,
//!    lets them sit idle, and samples again: RSS delta / sessions is one idle session's
//!    cost; the round trip is measured again with them held;
//! 3. closes them all and samples threads and RSS every second for `--watch` seconds,
//!    reporting when both came back within 10% of the idle figures (threads: within 10%
//!    or one thread, whichever is more) and stayed there.
//!
//! The client side needs two file descriptors per session (this process and the server's
//! are each checked against `RLIMIT_NOFILE` up front).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use vserv_blocking::Client;
use vserv_core::commands::{Command, Credential, Reply, SecretBytes};
use vserv_service::client::ClientOptions;

use super::server::ServerProcess;
use super::stats::Latency;
use super::{Machine, Report};
use crate::config::Runtime;

const ADMIN: &str = "bench";
const PASSWORD: &str = "bench-password-1";
/// Users the held sessions log in as (one per client thread, so no user's logins queue
/// behind another thread's).
const CLIENT_THREADS: usize = 4;
/// How long the held sessions sit idle before they are sampled, so the work threads their
/// logins started have had time to leave on a server that lets them.
const SETTLE: Duration = Duration::from_secs(6);
/// The targets.
const RETURN_TARGET_S: f64 = 30.0;
const IDLE_SESSION_TARGET_KIB: f64 = 32.0;

/// `vserv bench burst` options.
#[derive(Args, Debug)]
pub struct BurstArgs {
    /// Sessions opened (and logged in) at once, held idle, then closed.
    #[arg(long, visible_alias = "idle", default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sessions: u32,
    /// Runtime of the server process.
    #[arg(long, value_enum, default_value = "blocking")]
    pub runtime: Runtime,
    /// Seconds to watch the server after the sessions closed.
    #[arg(long, value_name = "SECS", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub watch: u32,
    /// Measured pings on the idle server and again with the sessions held.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub pings: u32,
    /// Run the benchmark against a blocking and a smol server, interleaved (`--rounds`
    /// each), and print every figure of both side by side with the ratio smol/blocking
    /// (`--runtime` is then ignored).
    #[arg(long)]
    pub runtimes: bool,
    /// The vserv binary run as the server (default: this one), e.g. an older build to
    /// compare with.
    #[arg(long, value_name = "PATH")]
    pub server_exe: Option<PathBuf>,
}

/// Threads and resident memory of the server at one moment.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the held sessions were closed (0 for the samples before).
    at_s: f64,
    threads: u64,
    rss_kib: u64,
    /// The part of `rss_kib` that is the process's own memory (heap, stacks).
    rss_anon_kib: u64,
    /// The part of `rss_kib` that is mapped files (the binary's pages it has run), shared
    /// with the page cache.
    rss_file_kib: u64,
}

/// The `vserv bench burst` report.
#[derive(Serialize, Debug)]
pub struct BurstReport {
    bench: &'static str,
    machine: Machine,
    runtime: &'static str,
    server_exe: String,
    sessions: u32,
    /// The server before the burst (one session open: the one that pings).
    idle: Sample,
    /// The server with every session open and idle for a few seconds.
    held: Sample,
    /// Seconds it took to open (and log in) all the sessions.
    open_s: f64,
    /// (held RSS - idle RSS) / sessions.
    idle_session_kib: f64,
    idle_session_target_kib: f64,
    /// Ping round trip on the idle server.
    rtt_idle: Latency,
    /// Ping round trip with the sessions held.
    rtt_held: Latency,
    /// One sample per second after the sessions closed.
    after: Vec<Sample>,
    /// Seconds after the close from which threads and RSS stayed within 10% of `idle`
    /// (`None`: not within the watch).
    returned_s: Option<f64>,
    return_target_s: f64,
    target_met: bool,
}

/// Reads one `Field:   value` line of `/proc/PID/status` (the number only).
fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples `pid` now.
fn sample(pid: u32, at_s: f64) -> anyhow::Result<Sample> {
    Ok(Sample {
        at_s,
        threads: status_field(pid, "Threads").context("reading the server's thread count")?,
        rss_kib: status_field(pid, "VmRSS").context("reading the server's RSS")?,
        rss_anon_kib: status_field(pid, "RssAnon").context("reading the server's RSS")?,
        rss_file_kib: status_field(pid, "RssFile").context("reading the server's RSS")?,
    })
}

/// Whether `s` is back within 10% of `idle` (threads: 10% or one, whichever is more).
fn returned(s: &Sample, idle: &Sample) -> bool {
    let thread_slack = (idle.threads / 10).max(1);
    s.threads <= idle.threads + thread_slack && s.rss_kib as f64 <= idle.rss_kib as f64 * 1.1
}

/// The open-file limit of process `pid` (soft), from `/proc/PID/limits`.
fn open_files_limit(pid: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn login_command(user: &str) -> Command {
    Command::Login {
        user: user.to_owned(),
        credential: Credential::Password(SecretBytes::new(PASSWORD.as_bytes().to_vec())),
    }
}

fn user(thread: usize) -> String {
    format!("idle{thread}")
}

fn ping(client: &mut Client) -> anyhow::Result<()> {
    let payload = b"burst".to_vec();
    match client.call(&Command::Ping {
        payload: payload.clone(),
    })? {
        Reply::Pong(echo) if echo == payload => Ok(()),
        other => bail!("unexpected reply to ping: {other:?}"),
    }
}

/// Measures `count` ping round trips on `client` (after a tenth as many unmeasured).
fn round_trips(client: &mut Client, count: u32) -> anyhow::Result<Latency> {
    for _ in 0..count / 10 {
        ping(client)?;
    }
    let mut samples = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let t = Instant::now();
        ping(client)?;
        samples.push(t.elapsed());
    }
    Ok(Latency::from_samples(&mut samples))
}

/// Opens `n` logged-in sessions to `addr` from [`CLIENT_THREADS`] threads.
fn open_sessions(addr: &str, options: &ClientOptions, n: u32) -> anyhow::Result<Vec<Client>> {
    let per_thread = (n as usize).div_ceil(CLIENT_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENT_THREADS)
            .map(|t| {
                let count = per_thread.min((n as usize).saturating_sub(t * per_thread));
                scope.spawn(move || -> anyhow::Result<Vec<Client>> {
                    let login = login_command(&user(t));
                    let mut mine = Vec::with_capacity(count);
                    for _ in 0..count {
                        let mut client = Client::connect(addr, options)
                            .with_context(|| format!("connecting to {addr}"))?;
                        match client.call(&login).context("logging in")? {
                            Reply::User { .. } => {}
                            other => bail!("unexpected reply to login: {other:?}"),
                        }
                        mine.push(client);
                    }
                    Ok(mine)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(n as usize);
        for w in workers {
            let mine = w
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))?;
            all.extend(mine);
        }
        Ok(all)
    })
}

/// Closes every client (each sends its close and drops its socket), from a few threads.
fn close_sessions(clients: Vec<Client>) {
    let mut chunks: Vec<Vec<Client>> = (0..CLIENT_THREADS).map(|_| Vec::new()).collect();
    for (i, c) in clients.into_iter().enumerate() {
        if let Some(chunk) = chunks.get_mut(i % CLIENT_THREADS) {
            chunk.push(c);
        }
    }
    std::thread::scope(|scope| {
        for chunk in chunks {
            scope.spawn(move || {
                for c in chunk {
                    let _ = c.close();
                }
            });
        }
    });
}

/// Creates the benchmark's admin offline in `data` with `exe`, then writes the server's
/// configuration: cheap argon2 for the benchmark users, no per-address limits, room for
/// every session.
fn prepare(exe: &std::path::Path, dir: &std::path::Path, sessions: u32) -> anyhow::Result<()> {
    super::login::add_admin(exe, &dir.join("data"))?;
    let config = format!(
        "max_connections = {}\nmax_unauthenticated_per_ip = 0\nlogin_grace_secs = 0\n\
         [rate_limit]\nconnections = 0\n[argon2]\nmemory_kib = 8\niterations = 1\n",
        u64::from(sessions) + 64
    );
    std::fs::write(dir.join("server.toml"), config).context("writing the server's configuration")
}

/// Runs the burst benchmark.
pub fn run(args: &BurstArgs) -> anyhow::Result<BurstReport> {
    let needed = 2 * u64::from(args.sessions) + 256;
    if let Some(limit) = open_files_limit("self")
        && limit < needed
    {
        bail!(
            "{} sessions need about {needed} open files here, the limit is {limit} (raise it with `ulimit -n`)",
            args.sessions
        );
    }
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let exe = match &args.server_exe {
        Some(exe) => exe.clone(),
        None => std::env::current_exe().context("locating the vserv binary")?,
    };
    prepare(&exe, dir.path(), args.sessions)?;
    let runtime = match args.runtime {
        Runtime::Blocking => "blocking",
        Runtime::Smol => "smol",
    };
    let config = dir.path().join("server.toml");
    let data = dir.path().join("data");
    let server = ServerProcess::start(
        &exe,
        &[
            OsStr::new("--runtime"),
            OsStr::new(runtime),
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--data"),
            data.as_os_str(),
        ],
    )?;
    let pid = server.pid();
    if let Some(limit) = open_files_limit(&pid.to_string())
        && limit < needed
    {
        bail!("the server may open {limit} files, {needed} needed");
    }
    let addr = server.addr.clone();
    let mut options = ClientOptions::new(dir.path().join("known_servers"));
    options.pinned = Some(server.key()?);

    let mut admin =
        Client::connect(&addr, &options).with_context(|| format!("connecting to {addr}"))?;
    admin
        .call(&login_command(ADMIN))
        .context("logging in as the benchmark admin")?;
    for t in 0..CLIENT_THREADS {
        admin
            .call(&Command::Uadd {
                user: user(t),
                password: SecretBytes::new(PASSWORD.as_bytes().to_vec()),
            })
            .context("creating the benchmark users")?;
    }
    admin.quit().context("ending the admin session")?;

    let mut pinger = Client::connect(&addr, &options).context("opening the ping session")?;
    pinger
        .call(&login_command(&user(0)))
        .context("logging in")?;
    let rtt_idle = round_trips(&mut pinger, args.pings)?;
    std::thread::sleep(SETTLE);
    let idle = sample(pid, 0.0)?;

    let opening = Instant::now();
    let clients = open_sessions(&addr, &options, args.sessions)?;
    let open_s = opening.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE);
    let held = sample(pid, 0.0)?;
    let rtt_held = round_trips(&mut pinger, args.pings)?;

    close_sessions(clients);
    let closed = Instant::now();
    let mut after = Vec::with_capacity(args.watch as usize);
    for i in 1..=args.watch {
        let next = closed + Duration::from_secs(u64::from(i));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        after.push(sample(pid, closed.elapsed().as_secs_f64())?);
    }
    pinger.quit().context("closing the ping session")?;
    drop(server);

    // The first sample from which every later one is back (none if the last is not).
    let returned_s = after
        .iter()
        .rposition(|s| !returned(s, &idle))
        .map_or(Some(0.0), |i| after.get(i + 1).map(|s| s.at_s.round()));
    let idle_session_kib =
        (held.rss_kib as f64 - idle.rss_kib as f64) / f64::from(args.sessions.max(1));
    Ok(BurstReport {
        bench: "burst",
        machine: Machine::get(),
        runtime,
        server_exe: exe.display().to_string(),
        sessions: args.sessions,
        idle,
        held,
        open_s,
        idle_session_kib,
        idle_session_target_kib: IDLE_SESSION_TARGET_KIB,
        rtt_idle,
        rtt_held,
        target_met: returned_s.is_some_and(|s| s <= RETURN_TARGET_S)
            && idle_session_kib <= IDLE_SESSION_TARGET_KIB,
        after,
        returned_s,
        return_target_s: RETURN_TARGET_S,
    })
}

impl Report for BurstReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench burst: {} sessions against a {} server process ({}) on 127.0.0.1 \
             ({} CPUs)",
            self.sessions, self.runtime, self.server_exe, self.machine.cpus
        );
        let _ = writeln!(
            s,
            "idle server: {} threads, {:.1} MiB; with the sessions held: {} threads, {:.1} MiB \
             (opened in {:.1} s)",
            self.idle.threads,
            self.idle.rss_kib as f64 / 1024.0,
            self.held.threads,
            self.held.rss_kib as f64 / 1024.0,
            self.open_s
        );
        let _ = writeln!(
            s,
            "idle session: {:.1} KiB (target <= {:.0})",
            self.idle_session_kib, self.idle_session_target_kib
        );
        let _ = writeln!(
            s,
            "ping round trip p50: {:.1} µs idle, {:.1} µs with the sessions held (p99 {:.1} / \
             {:.1})",
            self.rtt_idle.p50_us, self.rtt_held.p50_us, self.rtt_idle.p99_us, self.rtt_held.p99_us
        );
        let series: Vec<String> = self
            .after
            .iter()
            .map(|a| {
                format!(
                    "{:.0}s:{}/{:.0}M",
                    a.at_s,
                    a.threads,
                    a.rss_kib as f64 / 1024.0
                )
            })
            .collect();
        let _ = writeln!(s, "after closing (threads/RSS): {}", series.join(" "));
        if let Some(last) = self.after.last() {
            let _ = writeln!(
                s,
                "RSS anon + file: idle {:.1} + {:.1} MiB, at the end {:.1} + {:.1} MiB",
                self.idle.rss_anon_kib as f64 / 1024.0,
                self.idle.rss_file_kib as f64 / 1024.0,
                last.rss_anon_kib as f64 / 1024.0,
                last.rss_file_kib as f64 / 1024.0
            );
        }
        let _ = writeln!(
            s,
            "back within 10% of idle: {}; target <= {:.0} s: {}",
            self.returned_s.map_or_else(
                || "not within the watch".to_owned(),
                |t| format!("after {t:.0} s")
            ),
            self.return_target_s,
            if self.target_met { "met" } else { "MISSED" }
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(threads: u64, rss_kib: u64) -> Sample {
        Sample {
            at_s: 0.0,
            threads,
            rss_kib,
            rss_anon_kib: rss_kib,
            rss_file_kib: 0,
        }
    }

    #[test]
    fn back_means_within_ten_percent_or_one_thread() {
        let idle = at(5, 10_000);
        assert!(returned(&at(6, 11_000), &idle));
        assert!(!returned(&at(7, 10_000), &idle));
        assert!(!returned(&at(5, 11_001), &idle));
        let big = at(40, 10_000);
        assert!(returned(&at(44, 10_000), &big));
        assert!(!returned(&at(45, 10_000), &big));
    }
}
