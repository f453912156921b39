//! `vserv bench repl`: replication between servers over loopback TCP. By default each server
//! is a separate `vserv serve` process (this binary, or `--server-exe`) over a fjall store
//! in a temporary directory, with its peers in its configuration's `[[peers]]`
//! (`process.rs`); with `--in-process` they are blocking servers of this process
//! (`cluster.rs`). Three phases:
//!
//! - catch-up: a backlog of `--entries` entries appended on A before B exists; B then starts,
//!   dials A, and the time until B has durably committed A's feed up to the last entry gives
//!   entries/s and MB/s (of entry encodings);
//! - live: A and B linked, clients `rput` on A at a steady rate and then as fast as they can;
//!   per entry, the time from the client's acknowledgement to the commit of the entry on B;
//! - fan-out: A→B→C→D→E in a line, each dialing the one before; per entry appended by a
//!   client on A, the time from its acknowledgement to its commit on each hop and on E.
//!
//! When an entry became durable on a server process is learnt from outside, by a session
//! polling `rhead ORIGIN` on it (`watch.rs`): every `--poll-us` (200 µs by default) in the
//! live phases, four times that on each of the fan-out's four, every millisecond in the
//! catch-up; an instant is late by at most
//! one interval plus one loopback round trip (reported). In-process, an
//! observer around each store (`observer.rs`) gives the exact instants without polling.
//! Either way the latencies include the fsync of the replica's commit.

mod cluster;
mod load;
mod member;
mod observer;
mod process;
mod watch;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use vserv_core::ServerKey;
use vserv_core::ledger::MAX_BODY;
use vserv_service::ledger::{Ledger, NewRecord};

use super::stats::Latency;
use super::{Machine, Report};
use crate::config::Runtime;
use load::Ack;
use member::{Member, Mode};
use observer::CommitLog;

/// The targets.
const CATCH_UP_TARGET_PER_S: f64 = 100_000.0;
const LIVE_P50_TARGET_US: f64 = 5_000.0;

/// Records handed to one `append_batch` of the backlog (the ledger cuts it into commits of
/// at most 4096 records).
const BACKLOG_BATCH: u64 = 65_536;
/// How long replication may make no progress before the bench gives up.
const STALL: Duration = Duration::from_secs(60);
/// The fan-out's watchers (on B, C, D, E): each pauses this many times `--poll-us`, so that
/// together they poll as often as the live phase's one.
const FANOUT_WATCHERS: u32 = 4;
/// How often the catch-up polls B's head (a poll back to back would compete with B).
const CATCH_UP_POLL: Duration = Duration::from_millis(1);

/// A phase of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// A backlog replicated to a new peer.
    CatchUp,
    /// Live `rput`s on A reaching B, steady and saturating.
    Live,
    /// Live `rput`s on A reaching E along A→B→C→D→E.
    Fanout,
}

/// `vserv bench repl` options.
#[derive(Args, Debug)]
pub struct ReplArgs {
    /// Entries of the backlog B catches up on.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub entries: u64,
    /// Body size of each entry in bytes.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(4..=MAX_BODY as u64))]
    pub body: u64,
    /// Total `rput`s per second of the steady live load (and of the fan-out).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rate: u64,
    /// Seconds each live load runs.
    #[arg(long, default_value = "5", value_parser = super::parse_seconds)]
    pub seconds: Duration,
    /// Client connections of the live loads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub connections: u64,
    /// Requests each connection keeps in flight in the saturating load (at most 256).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub window: u64,
    /// The phases to run, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Phase::CatchUp, Phase::Live, Phase::Fanout])]
    pub phases: Vec<Phase>,
    /// Run the servers in this process (exact commit instants from an observer around each
    /// store) instead of as `vserv serve` processes.
    #[arg(long, conflicts_with_all = ["server_exe", "runtime"])]
    pub in_process: bool,
    /// The vserv binary run as each server (default: this one), e.g. an older build to
    /// compare.
    #[arg(long)]
    pub server_exe: Option<std::path::PathBuf>,
    /// The runtime of the server processes.
    #[arg(long, value_enum)]
    pub runtime: Option<Runtime>,
    /// Microseconds between two polls of a server process's `rhead ORIGIN` in the live
    /// phases (0: back to back), four times that in the fan-out (four servers are polled).
    /// Each poll costs the server two point decodings, so polling back to back takes a good
    /// part of a core from the server it measures.
    #[arg(long = "poll-us", default_value = "200", value_parser = parse_micros)]
    pub poll: Duration,
}

/// A poll interval in microseconds, at most one second.
fn parse_micros(s: &str) -> anyhow::Result<Duration> {
    let us: u64 = s
        .trim()
        .parse()
        .with_context(|| format!("'{s}' is not a number of microseconds"))?;
    if us > 1_000_000 {
        bail!("at most 1000000 microseconds, got {us}");
    }
    Ok(Duration::from_micros(us))
}

impl ReplArgs {
    /// Where the servers run.
    fn mode(&self) -> anyhow::Result<Mode> {
        if self.in_process {
            return Ok(Mode::InProcess);
        }
        let exe = match &self.server_exe {
            Some(exe) => exe.clone(),
            None => std::env::current_exe().context("locating the vserv binary")?,
        };
        Ok(Mode::Processes(process::Launch {
            exe,
            runtime: self.runtime.unwrap_or(Runtime::Blocking),
        }))
    }
}

/// Entries moved in some time.
#[derive(Serialize, Debug)]
pub struct Throughput {
    entries: u64,
    /// Bytes of the entries' encodings.
    bytes: u64,
    seconds: f64,
    entries_per_s: f64,
    mb_per_s: f64,
}

impl Throughput {
    fn new(entries: u64, bytes: u64, elapsed: Duration) -> Throughput {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        Throughput {
            entries,
            bytes,
            seconds,
            entries_per_s: entries as f64 / seconds,
            mb_per_s: bytes as f64 / seconds / 1e6,
        }
    }
}

/// The catch-up phase.
#[derive(Serialize, Debug)]
pub struct CatchUp {
    /// A appending the backlog to its own feed (before B exists).
    backlog_append: Throughput,
    /// From B's start to its first replica commit (dial, handshake, link, first segment).
    first_commit_ms: f64,
    /// From B's start to the commit of the backlog's last entry on B.
    catch_up: Throughput,
}

/// One live load on A, observed on B.
#[derive(Serialize, Debug)]
pub struct Live {
    /// Client connections.
    connections: u64,
    /// With server processes: CPU time (user + system) of A per acknowledged entry, from
    /// the load's start until B committed the last one. Unlike the latency it hardly
    /// depends on what else the machine runs.
    a_cpu_us_per_entry: Option<f64>,
    /// The same of B (receiving, checking, persisting; and answering the polls that watch
    /// it).
    b_cpu_us_per_entry: Option<f64>,
    /// The requested rate (`None`: saturating).
    target_per_s: Option<u64>,
    /// Requests in flight per connection (1 when steady).
    window: u64,
    rputs: u64,
    rputs_per_s: f64,
    /// Commits A made of these rputs (concurrent rputs share one); in-process only.
    a_commits: Option<u64>,
    /// Commits B made of them (one per segment it received); with server processes, the
    /// head changes B's watcher saw (at most its commits).
    b_commits: u64,
    /// With server processes: the median round trip of the polls watching B; with the
    /// pause between polls, the resolution of its commit instants (in-process they are
    /// exact).
    poll_round_trip_us: Option<f64>,
    /// Entries B committed before their rput's acknowledgement reached the client (counted
    /// as 0 in the latency).
    committed_before_ack: u64,
    /// Acknowledgement on A to commit on B.
    latency: Latency,
    /// In-process only: where that time goes, per entry.
    breakdown: Option<Breakdown>,
}

/// Where the time of each entry goes between A and B (in-process, from the observers' exact
/// commit spans): A's commit, its ack, the push to B with the wait for a persist of B already
/// under way, and B's commit. A's commit end to B's commit end is `push_and_wait` +
/// `b_commit`; the latency from the ack is that less `a_commit_to_ack`.
#[derive(Serialize, Debug)]
pub struct Breakdown {
    /// A's store batch holding the entry: begun to durable (mostly its fsync).
    a_commit: Latency,
    /// A's batch durable to the client holding the acknowledgement.
    a_commit_to_ack: Latency,
    /// A's batch durable to the start of B's batch holding the entry: the push (A's link
    /// reads the segment and sends it; B receives and checks it) and the wait for B's
    /// previous persist.
    push_and_wait: Latency,
    /// B's store batch holding the entry: begun to durable.
    b_commit: Latency,
    /// The share of the load's time B spent in its commits of it (1: B committed back to
    /// back, so an entry waits for the commit under way and then for its own).
    b_busy: f64,
}

/// The [`Breakdown`] of `acks`, if both logs observed the commit spans.
fn breakdown(
    acks: &[Ack],
    elapsed: Duration,
    a: &CommitLog,
    b: &CommitLog,
    origin: &ServerKey,
) -> Option<Breakdown> {
    let (mut a_commit, mut to_ack, mut push, mut b_commit) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ack in acks {
        let (a_start, a_end) = a.commit_span(origin, ack.seq)?;
        let (b_start, b_end) = b.commit_span(origin, ack.seq)?;
        a_commit.push(a_end.saturating_duration_since(a_start));
        to_ack.push(ack.at.saturating_duration_since(a_end));
        push.push(b_start.saturating_duration_since(a_end));
        b_commit.push(b_end.saturating_duration_since(b_start));
    }
    let (low, high) = seq_range(acks);
    let busy = b.busy(origin, low, high)?;
    Some(Breakdown {
        b_busy: busy.as_secs_f64() / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        a_commit: Latency::from_samples(&mut a_commit),
        a_commit_to_ack: Latency::from_samples(&mut to_ack),
        push_and_wait: Latency::from_samples(&mut push),
        b_commit: Latency::from_samples(&mut b_commit),
    })
}

/// The fan-out phase.
#[derive(Serialize, Debug)]
pub struct Fanout {
    /// The requested rate.
    target_per_s: u64,
    rputs: u64,
    /// Acknowledgement on A to commit on B, C, D, E.
    hops: Vec<Latency>,
    /// Commits A made of these rputs; in-process only.
    a_commits: Option<u64>,
    /// Commits each of B, C, D, E made of them (with processes: the head changes seen).
    hop_commits: Vec<u64>,
    /// With server processes: the median poll round trip on each of B, C, D, E.
    poll_round_trip_us: Vec<Option<f64>>,
}

/// The `vserv bench repl` report.
#[derive(Serialize, Debug)]
pub struct ReplReport {
    bench: &'static str,
    /// Where the servers ran: `processes (blocking)`, `processes (smol)` or `in-process`.
    servers: String,
    /// With server processes: the pause between two polls of a live phase's watchers.
    poll_interval_us: Option<u64>,
    machine: Machine,
    /// The 1-minute load average when the bench started (`None` without /proc): other work
    /// on the machine slows every phase.
    load_average: Option<f64>,
    body_bytes: u64,
    catch_up: Option<CatchUp>,
    live_steady: Option<Live>,
    live_saturating: Option<Live>,
    fanout: Option<Fanout>,
}

/// Runs the selected phases.
pub fn run(args: &ReplArgs) -> anyhow::Result<ReplReport> {
    let has = |p| args.phases.contains(&p);
    let load_average = load_average();
    let mode = args.mode()?;
    let servers = match &mode {
        Mode::InProcess => "in-process blocking servers".to_owned(),
        Mode::Processes(launch) => format!(
            "`{} serve` processes ({} runtime)",
            launch.exe.display(),
            match launch.runtime {
                Runtime::Blocking => "blocking",
                Runtime::Smol => "smol",
            }
        ),
    };
    let catch_up = has(Phase::CatchUp)
        .then(|| catch_up(&mode, args.entries, args.body))
        .transpose()
        .context("catch-up")?;
    let (live_steady, live_saturating) = if has(Phase::Live) {
        let (s, t) = live(&mode, args).context("live")?;
        (Some(s), Some(t))
    } else {
        (None, None)
    };
    let fanout = has(Phase::Fanout)
        .then(|| fanout(&mode, args))
        .transpose()
        .context("fan-out")?;
    Ok(ReplReport {
        bench: "repl",
        poll_interval_us: matches!(mode, Mode::Processes(_))
            .then(|| u64::try_from(args.poll.as_micros()).unwrap_or(u64::MAX)),
        servers,
        machine: Machine::get(),
        load_average,
        body_bytes: args.body,
        catch_up,
        live_steady,
        live_saturating,
        fanout,
    })
}

/// The 1-minute load average from `/proc/loadavg`.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Appends `n` entries of `body` bytes to `ledger` in big batches; the bytes of their
/// encodings (every entry is the same size: fixed-width ids, same-size bodies).
fn append_backlog(ledger: &Ledger, n: u64, body: u64) -> anyhow::Result<u64> {
    let mut next = 0;
    while next < n {
        let end = (next + BACKLOG_BATCH).min(n);
        let records = (next..end)
            .map(|i| NewRecord {
                author: "bench".into(),
                kind: "bench".into(),
                record_id: format!("backlog-{i:012}").into_bytes(),
                body: super::ledger::body(body, i),
                timestamp: 1_700_000_000_000,
            })
            .collect();
        for result in ledger.append_batch(records) {
            result.context("appending the backlog")?;
        }
        next = end;
    }
    let first = ledger.by_seq(1)?.context("the backlog's first entry")?;
    let last = ledger.by_seq(n)?.context("the backlog's last entry")?;
    if first.encoded_len() != last.encoded_len() {
        bail!("the backlog's entries differ in size");
    }
    Ok(first.encoded_len() as u64 * n)
}

fn catch_up(mode: &Mode, n: u64, body: u64) -> anyhow::Result<CatchUp> {
    match mode {
        Mode::InProcess => catch_up_in_process(n, body),
        Mode::Processes(launch) => catch_up_processes(launch, n, body),
    }
}

fn catch_up_in_process(n: u64, body: u64) -> anyhow::Result<CatchUp> {
    use cluster::{Member, identity, peer};
    let (a_id, b_id) = (identity(1), identity(2));
    let mut a = Member::open(&a_id, vec![peer(&b_id, None)])?;
    let start = Instant::now();
    let bytes = append_backlog(a.node().ledger(), n, body)?;
    let backlog_append = Throughput::new(n, bytes, start.elapsed());
    a.serve()?;
    let mut b = Member::open(&b_id, vec![peer(&a_id, Some(a.address.clone()))])?;
    let start = Instant::now();
    b.serve()?;
    caught_up(&b.log, &a.key(), n, bytes, start, backlog_append)
}

/// The catch-up over server processes: A's data directory gets the backlog before A starts.
fn catch_up_processes(launch: &process::Launch, n: u64, body: u64) -> anyhow::Result<CatchUp> {
    use process::{Member, PeerOf, Prepared};
    let (a, backlog_append) = Prepared::new(Some((n, body)))?;
    let backlog_append = backlog_append.context("the backlog")?;
    let (b, _) = Prepared::new(None)?;
    let (a_key, b_key) = (a.key(), b.key());
    let a = Member::start(
        launch,
        a,
        &[PeerOf {
            fingerprint: b_key.fingerprint(),
            address: None,
        }],
    )?;
    let start = Instant::now();
    let mut b = Member::start(
        launch,
        b,
        &[PeerOf {
            fingerprint: a_key.fingerprint(),
            address: Some(a.address().to_owned()),
        }],
    )?;
    b.watch(a_key, CATCH_UP_POLL)?;
    caught_up(
        b.log(),
        &a_key,
        n,
        backlog_append.bytes,
        start,
        backlog_append,
    )
}

/// The catch-up phase's report once `log` (B's) holds `origin` up to `n` (B started at
/// `start`).
fn caught_up(
    log: &CommitLog,
    origin: &ServerKey,
    n: u64,
    bytes: u64,
    start: Instant,
    backlog_append: Throughput,
) -> anyhow::Result<CatchUp> {
    let done = log.wait_for(origin, n, STALL)?;
    let first = log.committed_at(origin, 1).context("B committed nothing")?;
    Ok(CatchUp {
        backlog_append,
        first_commit_ms: first.saturating_duration_since(start).as_secs_f64() * 1e3,
        catch_up: Throughput::new(n, bytes, done.saturating_duration_since(start)),
    })
}

/// Waits until `log` holds `origin` up to the highest acknowledged seq, then measures each
/// ack to its commit there: the latency summary and how many committed before their ack.
fn latencies(acks: &[Ack], log: &CommitLog, origin: &ServerKey) -> anyhow::Result<(Latency, u64)> {
    let last = acks.iter().map(|a| a.seq).max().unwrap_or(0);
    log.wait_for(origin, last, STALL)?;
    let mut early = 0;
    let mut samples = Vec::with_capacity(acks.len());
    for ack in acks {
        let at = log
            .committed_at(origin, ack.seq)
            .context("an acknowledged entry was never committed")?;
        if at < ack.at {
            early += 1;
        }
        samples.push(at.saturating_duration_since(ack.at));
    }
    Ok((Latency::from_samples(&mut samples), early))
}

/// The lowest and highest seq acknowledged.
fn seq_range(acks: &[Ack]) -> (u64, u64) {
    let low = acks.iter().map(|a| a.seq).min().unwrap_or(0);
    let high = acks.iter().map(|a| a.seq).max().unwrap_or(0);
    (low, high)
}

/// One live load's report from its acks, as seen on A and B.
fn live_report(
    args: &ReplArgs,
    steady: bool,
    acks: &[Ack],
    (elapsed, cpu_before): (Duration, (Option<Duration>, Option<Duration>)),
    a: &Member,
    b: &Member,
) -> anyhow::Result<Live> {
    let (latency, early) = latencies(acks, b.log(), &a.key())?;
    let (low, high) = seq_range(acks);
    let per_entry = |before: Option<Duration>, after: Option<Duration>| {
        let used = after?.checked_sub(before?)?;
        Some(used.as_secs_f64() * 1e6 / (acks.len().max(1) as f64))
    };
    Ok(Live {
        connections: args.connections,
        a_cpu_us_per_entry: per_entry(cpu_before.0, a.cpu_time()),
        b_cpu_us_per_entry: per_entry(cpu_before.1, b.cpu_time()),
        target_per_s: steady.then_some(args.rate),
        window: if steady { 1 } else { args.window },
        rputs: acks.len() as u64,
        rputs_per_s: acks.len() as f64 / elapsed.as_secs_f64(),
        a_commits: a.exact().then(|| a.log().commits(&a.key(), low, high)),
        b_commits: b.log().commits(&a.key(), low, high),
        poll_round_trip_us: micros(b.take_poll_round_trip()),
        committed_before_ack: early,
        latency,
        breakdown: (a.exact() && b.exact())
            .then(|| breakdown(acks, elapsed, a.log(), b.log(), &a.key()))
            .flatten(),
    })
}

fn micros(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1e6)
}

/// One rput on `on`'s first client that must reach every member of `to`: the links are up.
fn warm_up(
    clients: &mut [vserv_blocking::Client],
    on: &Member,
    to: &[Member],
) -> anyhow::Result<()> {
    let first = clients.get_mut(..1).context("no client")?;
    let acks = load::steady(first, "warm", 1, Duration::from_millis(1), 4)?;
    let seq = acks.iter().map(|a| a.seq).max().unwrap_or(0);
    for member in to {
        member.log().wait_for(&on.key(), seq, STALL)?;
        // The warm-up's polls are not the phase's.
        member.take_poll_round_trip();
    }
    Ok(())
}

fn clients(member: &Member, n: u64) -> anyhow::Result<Vec<vserv_blocking::Client>> {
    (0..n).map(|_| member.client()).collect()
}

fn live(mode: &Mode, args: &ReplArgs) -> anyhow::Result<(Live, Live)> {
    let mut line = member::line(mode, 2, 10, args.poll)?;
    let b = line.pop().context("B")?;
    let a = line.pop().context("A")?;
    let mut clients = clients(&a, args.connections)?;
    warm_up(&mut clients, &a, std::slice::from_ref(&b))?;
    let cpu = (a.cpu_time(), b.cpu_time());
    let start = Instant::now();
    let acks = load::steady(&mut clients, "steady", args.rate, args.seconds, args.body)?;
    let steady = live_report(args, true, &acks, (start.elapsed(), cpu), &a, &b)?;
    let cpu = (a.cpu_time(), b.cpu_time());
    let start = Instant::now();
    let acks = load::saturating(
        &mut clients,
        "saturating",
        args.window as usize,
        args.seconds,
        args.body,
    )?;
    let saturating = live_report(args, false, &acks, (start.elapsed(), cpu), &a, &b)?;
    for client in clients {
        client.quit().context("closing a session")?;
    }
    Ok((steady, saturating))
}

fn fanout(mode: &Mode, args: &ReplArgs) -> anyhow::Result<Fanout> {
    let line = member::line(mode, 5, 20, args.poll.saturating_mul(FANOUT_WATCHERS))?;
    let (a, rest) = line.split_first().context("A")?;
    let mut clients = clients(a, args.connections)?;
    warm_up(&mut clients, a, rest)?;
    let acks = load::steady(&mut clients, "fanout", args.rate, args.seconds, args.body)?;
    let hops = rest
        .iter()
        .map(|m| Ok(latencies(&acks, m.log(), &a.key())?.0))
        .collect::<anyhow::Result<Vec<Latency>>>()?;
    for client in clients {
        client.quit().context("closing a session")?;
    }
    let (low, high) = seq_range(&acks);
    Ok(Fanout {
        target_per_s: args.rate,
        rputs: acks.len() as u64,
        hops,
        a_commits: a.exact().then(|| a.log().commits(&a.key(), low, high)),
        hop_commits: rest
            .iter()
            .map(|m| m.log().commits(&a.key(), low, high))
            .collect(),
        poll_round_trip_us: rest
            .iter()
            .map(|m| micros(m.take_poll_round_trip()))
            .collect(),
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn ms(us: f64) -> f64 {
    us / 1e3
}

/// `" in N commits on A"`, when known.
fn a_commits_text(commits: Option<u64>) -> String {
    commits.map_or_else(String::new, |n| format!(" in {n} commits on A"))
}

/// How many commits a member made, or (from a poll) how many head changes were seen; and
/// the poll's resolution.
fn commits_text(commits: u64, poll_us: Option<f64>) -> String {
    match poll_us {
        None => format!("{commits} commits"),
        Some(us) => format!("{commits} heads seen, poll round trip {us:.0} us"),
    }
}

impl Report for ReplReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench repl: {} on 127.0.0.1, fjall stores (fsync per commit), {}-byte \
             bodies, {} CPUs, load average {}",
            self.servers,
            self.body_bytes,
            self.machine.cpus,
            self.load_average
                .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"))
        );
        if let Some(us) = self.poll_interval_us {
            let _ = writeln!(
                s,
                "commits on a server seen by a session polling `rhead ORIGIN` on it every {us} \
                 us in the live phases ({} us in the fan-out, 1 ms in the catch-up): late by \
                 at most that plus one poll round trip",
                us.saturating_mul(u64::from(FANOUT_WATCHERS))
            );
        }
        if let Some(c) = &self.catch_up {
            let _ = writeln!(
                s,
                "backlog append on A: {} entries in {:.2} s ({:.0}/s, {:.1} MB/s)",
                c.backlog_append.entries,
                c.backlog_append.seconds,
                c.backlog_append.entries_per_s,
                c.backlog_append.mb_per_s
            );
            let _ = writeln!(
                s,
                "catch-up A -> new B: {} entries in {:.2} s: {:.0} entries/s, {:.1} MB/s \
                 (first commit after {:.1} ms; target >= {:.0}/s: {})",
                c.catch_up.entries,
                c.catch_up.seconds,
                c.catch_up.entries_per_s,
                c.catch_up.mb_per_s,
                c.first_commit_ms,
                CATCH_UP_TARGET_PER_S,
                verdict(c.catch_up.entries_per_s >= CATCH_UP_TARGET_PER_S)
            );
        }
        for (name, live) in [
            ("steady", &self.live_steady),
            ("saturating", &self.live_saturating),
        ] {
            let Some(l) = live else { continue };
            let load = match l.target_per_s {
                Some(rate) => format!("{rate}/s asked"),
                None => format!("window {}", l.window),
            };
            let _ = writeln!(
                s,
                "live {name} ({} connections, {load}): {} rputs at {:.0}/s{}, {} on B; ack on \
                 A -> commit on B p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} committed before \
                 the ack; target p50 <= {:.0} ms: {})",
                l.connections,
                l.latency.samples,
                l.rputs_per_s,
                a_commits_text(l.a_commits),
                commits_text(l.b_commits, l.poll_round_trip_us),
                ms(l.latency.p50_us),
                ms(l.latency.p99_us),
                ms(l.latency.max_us),
                l.committed_before_ack,
                ms(LIVE_P50_TARGET_US),
                verdict(l.latency.p50_us <= LIVE_P50_TARGET_US)
            );
            if let (Some(a_cpu), Some(b_cpu)) = (l.a_cpu_us_per_entry, l.b_cpu_us_per_entry) {
                let _ = writeln!(
                    s,
                    "  CPU per entry (user + system, to B's last commit): A {a_cpu:.1} µs, B \
                     {b_cpu:.1} µs"
                );
            }
            if let Some(b) = &l.breakdown {
                let _ = writeln!(
                    s,
                    "  p50 per entry: A's commit {:.2} ms, then to the ack {:.2} ms; A's commit \
                     -> B's commit begins (push, wait for B's persist under way) {:.2} ms; B's \
                     commit {:.2} ms (B committing {:.0}% of the time)",
                    ms(b.a_commit.p50_us),
                    ms(b.a_commit_to_ack.p50_us),
                    ms(b.push_and_wait.p50_us),
                    ms(b.b_commit.p50_us),
                    b.b_busy * 100.0
                );
            }
        }
        if let Some(f) = &self.fanout {
            let _ = writeln!(
                s,
                "fan-out A->B->C->D->E ({}/s asked, {} rputs{}): ack on A -> commit on",
                f.target_per_s,
                f.rputs,
                a_commits_text(f.a_commits)
            );
            for (((name, hop), commits), poll) in ["B", "C", "D", "E"]
                .iter()
                .zip(&f.hops)
                .zip(&f.hop_commits)
                .zip(&f.poll_round_trip_us)
            {
                let _ = writeln!(
                    s,
                    "  {name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({})",
                    ms(hop.p50_us),
                    ms(hop.p99_us),
                    ms(hop.max_us),
                    commits_text(*commits, *poll)
                );
            }
        }
        s
    }
}
