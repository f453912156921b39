//! `vserv bench repl`: replication between in-process blocking servers over loopback TCP,
//! each a [`Node`](vserv_service::Node) over a fjall store in a temporary directory with its
//! peers configured (`cluster.rs`). Three phases:
//!
//! - catch-up: a backlog of `--entries` entries appended on A before B exists; B then starts,
//!   dials A, and the time until B has durably committed A's feed up to the last entry gives
//!   entries/s and MB/s (of entry encodings);
//! - live: A and B linked, clients `rput` on A at a steady rate and then as fast as they can;
//!   per entry, the time from the client's acknowledgement to the commit of the entry on B;
//! - fan-out: A→B→C→D→E in a line, each dialing the one before; per entry appended by a
//!   client on A, the time from its acknowledgement to its commit on each hop and on E.
//!
//! Commit instants come from an observer wrapped around each store (`observer.rs`), so
//! nothing polls; latencies therefore include the fsync of the replica's commit.

mod cluster;
mod load;
mod observer;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use vserv_core::ServerKey;
use vserv_core::ledger::MAX_BODY;
use vserv_service::ledger::{Ledger, NewRecord};

use super::stats::Latency;
use super::{Machine, Report};
use cluster::{Member, identity, peer};
use load::Ack;
use observer::CommitLog;

/// The targets.
const CATCH_UP_TARGET_PER_S: f64 = 100_000.0;
const LIVE_P50_TARGET_US: f64 = 5_000.0;

/// Records handed to one `append_batch` of the backlog (the ledger cuts it into commits of
/// at most 4096 records).
const BACKLOG_BATCH: u64 = 65_536;
/// How long replication may make no progress before the bench gives up.
const STALL: Duration = Duration::from_secs(60);

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
    /// The requested rate (`None`: saturating).
    target_per_s: Option<u64>,
    /// Requests in flight per connection (1 when steady).
    window: u64,
    rputs: u64,
    rputs_per_s: f64,
    /// Commits A made of these rputs (concurrent rputs share one).
    a_commits: u64,
    /// Commits B made of them (one per segment it received).
    b_commits: u64,
    /// Entries B committed before their rput's acknowledgement reached the client (counted
    /// as 0 in the latency).
    committed_before_ack: u64,
    /// Acknowledgement on A to commit on B.
    latency: Latency,
}

/// The fan-out phase.
#[derive(Serialize, Debug)]
pub struct Fanout {
    /// The requested rate.
    target_per_s: u64,
    rputs: u64,
    /// Acknowledgement on A to commit on B, C, D, E.
    hops: Vec<Latency>,
    /// Commits A made of these rputs.
    a_commits: u64,
    /// Commits each of B, C, D, E made of them.
    hop_commits: Vec<u64>,
}

/// The `vserv bench repl` report.
#[derive(Serialize, Debug)]
pub struct ReplReport {
    bench: &'static str,
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
    let catch_up = has(Phase::CatchUp)
        .then(|| catch_up(args.entries, args.body))
        .transpose()
        .context("catch-up")?;
    let (live_steady, live_saturating) = if has(Phase::Live) {
        let (s, t) = live(args).context("live")?;
        (Some(s), Some(t))
    } else {
        (None, None)
    };
    let fanout = has(Phase::Fanout)
        .then(|| fanout(args))
        .transpose()
        .context("fan-out")?;
    Ok(ReplReport {
        bench: "repl",
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

fn catch_up(n: u64, body: u64) -> anyhow::Result<CatchUp> {
    let (a_id, b_id) = (identity(1), identity(2));
    let mut a = Member::open(&a_id, vec![peer(&b_id, None)])?;
    let start = Instant::now();
    let bytes = append_backlog(a.node().ledger(), n, body)?;
    let backlog_append = Throughput::new(n, bytes, start.elapsed());
    a.serve()?;
    let mut b = Member::open(&b_id, vec![peer(&a_id, Some(a.address.clone()))])?;
    let start = Instant::now();
    b.serve()?;
    let done = b.log.wait_for(&a.key(), n, STALL)?;
    let first = b
        .log
        .committed_at(&a.key(), 1)
        .context("B committed nothing")?;
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
    elapsed: Duration,
    a: &Member,
    b: &Member,
) -> anyhow::Result<Live> {
    let (latency, early) = latencies(acks, &b.log, &a.key())?;
    let (low, high) = seq_range(acks);
    Ok(Live {
        connections: args.connections,
        target_per_s: steady.then_some(args.rate),
        window: if steady { 1 } else { args.window },
        rputs: acks.len() as u64,
        rputs_per_s: acks.len() as f64 / elapsed.as_secs_f64(),
        a_commits: a.log.commits(&a.key(), low, high),
        b_commits: b.log.commits(&a.key(), low, high),
        committed_before_ack: early,
        latency,
    })
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
        member.log.wait_for(&on.key(), seq, STALL)?;
    }
    Ok(())
}

fn clients(member: &Member, n: u64) -> anyhow::Result<Vec<vserv_blocking::Client>> {
    (0..n).map(|_| member.client()).collect()
}

fn live(args: &ReplArgs) -> anyhow::Result<(Live, Live)> {
    let mut line = cluster::line(2, 10)?;
    let b = line.pop().context("B")?;
    let a = line.pop().context("A")?;
    let mut clients = clients(&a, args.connections)?;
    warm_up(&mut clients, &a, std::slice::from_ref(&b))?;
    let start = Instant::now();
    let acks = load::steady(&mut clients, "steady", args.rate, args.seconds, args.body)?;
    let steady = live_report(args, true, &acks, start.elapsed(), &a, &b)?;
    let start = Instant::now();
    let acks = load::saturating(
        &mut clients,
        "saturating",
        args.window as usize,
        args.seconds,
        args.body,
    )?;
    let saturating = live_report(args, false, &acks, start.elapsed(), &a, &b)?;
    for client in clients {
        client.quit().context("closing a session")?;
    }
    Ok((steady, saturating))
}

fn fanout(args: &ReplArgs) -> anyhow::Result<Fanout> {
    let line = cluster::line(5, 20)?;
    let (a, rest) = line.split_first().context("A")?;
    let mut clients = clients(a, args.connections)?;
    warm_up(&mut clients, a, rest)?;
    let acks = load::steady(&mut clients, "fanout", args.rate, args.seconds, args.body)?;
    let hops = rest
        .iter()
        .map(|m| Ok(latencies(&acks, &m.log, &a.key())?.0))
        .collect::<anyhow::Result<Vec<Latency>>>()?;
    for client in clients {
        client.quit().context("closing a session")?;
    }
    let (low, high) = seq_range(&acks);
    Ok(Fanout {
        target_per_s: args.rate,
        rputs: acks.len() as u64,
        hops,
        a_commits: a.log.commits(&a.key(), low, high),
        hop_commits: rest
            .iter()
            .map(|m| m.log.commits(&a.key(), low, high))
            .collect(),
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn ms(us: f64) -> f64 {
    us / 1e3
}

impl Report for ReplReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench repl: in-process blocking servers on 127.0.0.1, fjall stores (fsync \
             per commit), {}-byte bodies, {} CPUs, load average {}",
            self.body_bytes,
            self.machine.cpus,
            self.load_average
                .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"))
        );
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
                "live {name} ({} connections, {load}): {} rputs at {:.0}/s in {} commits on A, \
                 {} on B; ack on A -> commit on B p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} \
                 committed before the ack; target p50 <= {:.0} ms: {})",
                l.connections,
                l.latency.samples,
                l.rputs_per_s,
                l.a_commits,
                l.b_commits,
                ms(l.latency.p50_us),
                ms(l.latency.p99_us),
                ms(l.latency.max_us),
                l.committed_before_ack,
                ms(LIVE_P50_TARGET_US),
                verdict(l.latency.p50_us <= LIVE_P50_TARGET_US)
            );
        }
        if let Some(f) = &self.fanout {
            let _ = writeln!(
                s,
                "fan-out A->B->C->D->E ({}/s asked, {} rputs in {} commits on A): ack on A -> \
                 commit on",
                f.target_per_s, f.rputs, f.a_commits
            );
            for ((name, hop), commits) in
                ["B", "C", "D", "E"].iter().zip(&f.hops).zip(&f.hop_commits)
            {
                let _ = writeln!(
                    s,
                    "  {name}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({commits} commits)",
                    ms(hop.p50_us),
                    ms(hop.p99_us),
                    ms(hop.max_us)
                );
            }
        }
        s
    }
}
