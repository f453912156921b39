//! `vserv bench ledger`: durable `rput`s per second (pipelined on one connection, then over
//! several connections at once), `rget`s per second, and offline chain verification in
//! entries per second, against an in-process blocking server on 127.0.0.1 whose ledger lives
//! in a fjall store in a temporary directory (every acknowledged `rput` is fsynced, as on a
//! real server). Each `rput` phase starts from an empty store; the `rget` and verify
//! phases read the feed of `--records` entries the multi-connection phase wrote.
//!
//! Each phase also reports the CPU time the whole process (server, clients and the store's
//! background work) spent per operation, which is what to compare on a busy machine, and
//! the report gives the process's resident memory once it holds the full feed: the server
//! side's memory, plus the clients' small share. Each `rput` phase's store commits (the
//! ledger's group commits) are timed as well ([`MeteredStore`]): how many, how large, and
//! how busy they kept the single writer that bounds the phase.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use vserv_blocking::{Client, Server, ServerOptions};
use vserv_core::ServerIdentity;
use vserv_core::commands::{Command, Credential, RecordSelector, Reply, SecretBytes, UserRole};
use vserv_core::ledger::MAX_BODY;
use vserv_service::Node;
use vserv_service::client::ClientOptions;
use vserv_service::ledger::{CheckReport, FeedKeys, Ledger};
use vserv_store::{FjallStore, Op, Store, Table};

use super::commit_meter::{MeteredStore, PhaseCommits};
use super::{Machine, Report};

/// The targets.
const RPUT_TARGET_PER_S: f64 = 100_000.0;
const RGET_TARGET_PER_S: f64 = 50_000.0;
const VERIFY_TARGET_PER_S: f64 = 500_000.0;

const PASSWORD: &str = "bench-password-1";
/// Commands handed to one `call_pipelined` (bounds the client's memory).
const CHUNK: usize = 8192;

/// `vserv bench ledger` options.
#[derive(Args, Debug)]
pub struct LedgerArgs {
    /// Records appended in each `rput` phase (and `rget`s in each `rget` phase).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub records: u64,
    /// Connections in the multi-connection phases.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub connections: u64,
    /// Requests each connection keeps in flight (at most 256).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub window: u64,
    /// Body size of each record in bytes (a field-form body `d=xxx...\n`).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(4..=MAX_BODY as u64))]
    pub body: u64,
    /// The records' ids: `counted` (`c<connection>-<n>`, which sort nearly in the order
    /// they are appended) or `random` (32 hex digits spread uniformly, as UUIDs or content
    /// hashes are; in an index they land anywhere).
    #[arg(long, value_enum, default_value_t = RecordIds::Counted)]
    pub ids: RecordIds,
    /// MiB of the store's file blocks kept in memory (the server's `[store] cache_mib`).
    #[arg(long, default_value_t = vserv_store::DEFAULT_CACHE_BYTES >> 20, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub cache_mib: u64,
}

/// How `vserv bench ledger` names its records ([`LedgerArgs::ids`]).
#[derive(clap::ValueEnum, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RecordIds {
    /// `c<connection>-<n>`.
    Counted,
    /// 32 hex digits, uniformly spread.
    Random,
}

impl RecordIds {
    /// The id of record `i` of connection `conn` (distinct for every pair).
    fn id(self, conn: u64, i: u64) -> Vec<u8> {
        match self {
            RecordIds::Counted => format!("c{conn}-{i}").into_bytes(),
            RecordIds::Random => {
                let spread = spread_hash((conn << 40) ^ i);
                let mut id = Vec::with_capacity(32);
                for byte in &spread[..16] {
                    id.extend_from_slice(format!("{byte:02x}").as_bytes());
                }
                id
            }
        }
    }
}

/// One timed phase.
#[derive(Serialize, Debug)]
pub struct Phase {
    connections: u64,
    operations: u64,
    seconds: f64,
    per_s: f64,
    /// CPU time (user + system) of the whole process per operation, microseconds.
    cpu_us_per_op: f64,
}

impl Phase {
    fn new(connections: u64, operations: u64, elapsed: Duration, cpu: Duration) -> Phase {
        let seconds = elapsed.as_secs_f64();
        Phase {
            connections,
            operations,
            seconds,
            per_s: operations as f64 / seconds.max(f64::MIN_POSITIVE),
            cpu_us_per_op: cpu.as_secs_f64() * 1e6 / (operations.max(1) as f64),
        }
    }
}

/// The start of a phase: wall clock and the process's CPU time.
struct Timer {
    wall: Instant,
    cpu: Duration,
}

impl Timer {
    fn start() -> Timer {
        Timer {
            wall: Instant::now(),
            cpu: process_cpu(),
        }
    }

    /// The phase of `operations` on `connections` connections, ended now.
    fn phase(&self, connections: u64, operations: u64) -> Phase {
        let elapsed = self.wall.elapsed();
        let cpu = process_cpu().saturating_sub(self.cpu);
        Phase::new(connections, operations, elapsed, cpu)
    }
}

/// Clock ticks per second of `/proc/self/stat`'s times (`USER_HZ`, 100 on Linux).
const USER_HZ: u64 = 100;

/// User + system CPU time of this process so far (every thread), from `/proc/self/stat`;
/// zero where it cannot be read.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which ends at the last ')'): state is field 3, utime
    // and stime are fields 14 and 15.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks.saturating_mul(1000 / USER_HZ))
}

/// A `/proc/self/status` memory field (`VmRSS`, `VmHWM`) in KiB; `None` where unreadable.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The `vserv bench ledger` report.
#[derive(Serialize, Debug)]
pub struct LedgerReport {
    bench: &'static str,
    machine: Machine,
    window: u64,
    body_bytes: u64,
    /// How the records are named.
    ids: RecordIds,
    /// The store's block cache, MiB.
    cache_mib: u64,
    /// Durable appends, pipelined on one connection.
    rput_one: Phase,
    /// Durable appends, pipelined on `connections` connections at once.
    rput_many: Phase,
    /// The store commits of [`LedgerReport::rput_one`].
    rput_one_commits: PhaseCommits,
    /// The store commits of [`LedgerReport::rput_many`].
    rput_many_commits: PhaseCommits,
    /// Reads by seq, pipelined on one connection.
    rget_one: Phase,
    /// Reads by seq on `connections` connections at once.
    rget_many: Phase,
    /// Reads by record id on `connections` connections at once (a tenth as many as by seq).
    rget_id_many: Phase,
    /// Full re-verification of the stored feed (hashes, links, hash index, head signature).
    verify: Phase,
    /// Entries in the feed at the end.
    entries: u64,
    /// The store alone: records committed in fsync'd batches (`store_alone`).
    store: Phase,
    /// Durable rputs/s (several connections) against the store's records/s: the issue's
    /// target is at least 0.5.
    rput_vs_store: f64,
    /// Store records one ledger entry writes ([`RECORDS_PER_ENTRY`]).
    records_per_entry: f64,
    /// Durable rputs/s (several connections) against the store's records/s divided by
    /// [`LedgerReport::records_per_entry`]: the rate relative to entries the store alone
    /// could commit.
    rput_vs_store_entries: f64,
    /// The store with the ledger's own keys, per entry (`store_with_indexes`).
    store_indexed: Phase,
    /// Durable rputs/s (several connections) against [`LedgerReport::store_indexed`]'s
    /// entries/s: how close the ledger comes to its store layout's own rate.
    rput_vs_store_indexed: f64,
    /// Resident memory of the process (server, ledger store and the idle clients) holding
    /// the feed of `entries` after every read phase, KiB.
    rss_kib: Option<u64>,
    /// Peak resident memory of the process over the whole run, KiB (the store-alone phase
    /// and the first `rput` phase's store count too).
    peak_rss_kib: Option<u64>,
}

/// A `size`-byte field-form body `d=<i, zero-padded>\n` (every one of a size is as long).
/// Built from bytes rather than with `format!`'s padding, which writes the zeros a char at
/// a time: in-process, that was 4% of the CPU charged to the `rput`s.
pub(super) fn body(size: u64, i: u64) -> Vec<u8> {
    let digits = i.to_string();
    let width = usize::try_from(size.saturating_sub(3)).unwrap_or(usize::MAX);
    let mut body = Vec::with_capacity(width.saturating_add(3));
    body.extend_from_slice(b"d=");
    body.resize(2 + width.saturating_sub(digits.len()), b'0');
    body.extend_from_slice(digits.as_bytes());
    body.truncate(width.saturating_add(2));
    body.push(b'\n');
    body
}

/// The `rput`s of connection `conn`, made as they are sent (a chunk at a time), so the
/// bench's own memory does not grow with `--records`.
fn rputs(
    range: std::ops::Range<u64>,
    conn: u64,
    size: u64,
    ids: RecordIds,
) -> impl Iterator<Item = Command> {
    range.map(move |i| Command::Rput {
        kind: "bench".into(),
        record_id: ids.id(conn, i),
        body: body(size, i),
    })
}

/// Records per store batch in the store-alone phase: the most records one ledger group
/// commit writes (4096 entries of 4 keys each, plus the commit's head keys, are a few
/// batches of this size).
const STORE_BATCH: u64 = 4096;

/// A fresh fjall store in `data_dir` with a block cache of `cache_mib` MiB.
fn fresh_store(data_dir: &std::path::Path, cache_mib: u64) -> anyhow::Result<FjallStore> {
    let options = vserv_store::OpenOptions {
        cache_bytes: Some(cache_mib << 20),
        ..vserv_store::OpenOptions::default()
    };
    FjallStore::open_with(data_dir, options).context("opening a temporary fjall store")
}

/// Commits `items` items (numbered from 0) through the store trait in a fresh fjall store,
/// `per_commit` at a time, each commit's ops made by `ops` from its items' numbers and
/// fsync'd; the phase times the commits only.
fn timed_in_fresh_store(
    cache_mib: u64,
    items: u64,
    per_commit: u64,
    ops: impl Fn(std::ops::Range<u64>) -> Vec<Op>,
) -> anyhow::Result<Phase> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let store = fresh_store(dir.path(), cache_mib)?;
    let timer = Timer::start();
    let mut next = 0u64;
    while next < items {
        let end = (next + per_commit).min(items);
        store.commit(ops(next..end)).context("committing a batch")?;
        next = end;
    }
    Ok(timer.phase(0, items))
}

/// The store alone: `records` key-value records (an 8-byte sequential key and a `size`-byte
/// value, like a ledger entry under its seq) committed through the store trait in fsync'd
/// batches of [`STORE_BATCH`], in a fresh fjall store. What durable `rput`s are measured
/// against: each entry costs the ledger 4 such records (entry, record id, hash and kind
/// indexes) plus its group commit's head.
fn store_alone(cache_mib: u64, records: u64, size: u64) -> anyhow::Result<Phase> {
    timed_in_fresh_store(cache_mib, records, STORE_BATCH, |range| {
        range
            .map(|i| Op::Put {
                table: Table::Ledger,
                key: i.to_be_bytes().to_vec(),
                value: body(size, i),
            })
            .collect()
    })
}

/// Entries per commit in the store-with-indexes phase: about the ledger's group commits
/// under the multi-connection `rput` phase (a few hundred entries each).
const INDEXED_COMMIT_ENTRIES: u64 = 512;

/// The store with the ledger's own keys: `entries` entries written as the ledger writes
/// them (layout in `vserv_service::ledger_layout`), an `e:` + seq value of `size` bytes in
/// the entries' table and, in the index table, a record id key of a record id like the
/// `rput` phases' and a hash key of 32 pseudo-random bytes (entry hashes are uniformly
/// spread), each in the seq's span, to the seq; committed through the store trait in fsync'd commits of
/// [`INDEXED_COMMIT_ENTRIES`], in a fresh fjall store. Against [`store_alone`]'s ascending
/// keys, it shows what the indexes' random keys cost the store (flushes, compactions and
/// the in-memory table's inserts) at this feed size: the ceiling of durable `rput`s for
/// this store layout.
fn store_with_indexes(
    cache_mib: u64,
    entries: u64,
    size: u64,
    ids: RecordIds,
) -> anyhow::Result<Phase> {
    timed_in_fresh_store(cache_mib, entries, INDEXED_COMMIT_ENTRIES, |range| {
        range
            .flat_map(|i| {
                let seq = i + 1;
                let seq_bytes = seq.to_be_bytes().to_vec();
                [
                    Op::Put {
                        table: Table::Ledger,
                        key: [b"e:".as_slice(), &seq_bytes].concat(),
                        value: body(size, seq),
                    },
                    Op::Put {
                        table: Table::LedgerIndex,
                        key: FeedKeys::OWN.id_at(seq, &ids.id(1, i)),
                        value: seq_bytes.clone(),
                    },
                    Op::Put {
                        table: Table::LedgerIndex,
                        key: FeedKeys::OWN.hash_at(seq, &spread_hash(seq)),
                        value: seq_bytes,
                    },
                ]
            })
            .collect()
    })
}

/// 32 bytes that look like an entry hash for `seq`: distinct for every seq and spread
/// uniformly (splitmix64's output function over four counters), at a fraction of
/// SHA-256's cost so that the phase times the store alone.
fn spread_hash(seq: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (lane, chunk) in out.chunks_exact_mut(8).enumerate() {
        let mut z = seq
            .wrapping_mul(4)
            .wrapping_add(lane as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_be_bytes());
    }
    out
}

/// Store records a ledger entry costs: the entry and its record id and hash indexes (the
/// index keys are stored later, in bulk with many others; the kind index is one record per
/// kind per group commit, shared by up to 4,096 entries).
const RECORDS_PER_ENTRY: f64 = 3.0;

/// `count` reads spread over seqs `1..=entries` (a fixed stride walk, not sequential).
fn rgets(count: u64, offset: u64, entries: u64) -> impl Iterator<Item = Command> {
    (0..count).map(move |i| {
        let seq = (i.wrapping_add(offset).wrapping_mul(7919)) % entries + 1;
        Command::Rget {
            selector: RecordSelector::Seq(seq),
            origin: None,
        }
    })
}

/// `count` reads by record id of the records the multi-connection `rput` phase appended
/// (`lanes` connections of `each` records, the connections numbered from 1), spread over
/// them as [`rgets`] spreads its seqs.
fn rgets_by_id(
    count: u64,
    offset: u64,
    lanes: u64,
    each: u64,
    ids: RecordIds,
) -> impl Iterator<Item = Command> {
    (0..count).map(move |i| {
        let k = i.wrapping_add(offset).wrapping_mul(7919);
        let id = ids.id(k % lanes.max(1) + 1, (k / lanes.max(1)) % each.max(1));
        Command::Rget {
            selector: RecordSelector::Id(id),
            origin: None,
        }
    })
}

/// Reads by record id in the `rget` by id phase, per read by seq of the other phases: a
/// lookup by id asks every index span of the feed, so this phase shows how that grows.
const ID_READS_PER_SEQ_READ: u64 = 10;

/// Runs `commands` pipelined on `client` in chunks; every reply must satisfy `ok`.
fn run_all(
    client: &mut Client,
    commands: impl Iterator<Item = Command>,
    window: u64,
    ok: fn(&Reply) -> bool,
) -> anyhow::Result<()> {
    let mut commands = commands.peekable();
    while commands.peek().is_some() {
        let chunk: Vec<Command> = commands.by_ref().take(CHUNK).collect();
        for reply in client.call_pipelined(&chunk, window as usize)? {
            let reply = reply?;
            if !ok(&reply) {
                bail!("unexpected reply: {reply:?}");
            }
        }
    }
    Ok(())
}

fn appended(reply: &Reply) -> bool {
    matches!(reply, Reply::Appended { .. })
}

fn record(reply: &Reply) -> bool {
    matches!(reply, Reply::Record(_))
}

/// Runs `work(client, index)` on every client in its own thread, until all are done.
fn in_parallel(
    clients: &mut [Client],
    work: impl Fn(&mut Client, u64) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = clients
            .iter_mut()
            .zip(0..)
            .map(|(client, i)| {
                let work = &work;
                scope.spawn(move || work(client, i))
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
        })
    })
}

/// An in-process server over a fresh fjall store in a temporary directory, with
/// `connections` logged-in clients. Dropping it stops the server, then removes the store.
struct Bench {
    ledger: Arc<Ledger>,
    /// The node's store: the fjall store, its commits timed.
    store: Arc<MeteredStore>,
    clients: Vec<Client>,
    server: Option<vserv_blocking::ServerHandle>,
    _dir: tempfile::TempDir,
}

impl Bench {
    fn start(connections: u64, cache_mib: u64) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let fjall = fresh_store(&dir.path().join("data"), cache_mib)?;
        let store = Arc::new(MeteredStore::new(Arc::new(fjall)));
        let identity = Arc::new(ServerIdentity::generate(
            &mut *vserv_service::system::os_rng()?,
        ));
        let node = Node::builder(identity, super::node_settings())
            .store(store.clone())
            .build()
            .context("assembling the temporary node")?;
        node.accounts()
            .create(
                "bench",
                UserRole::User,
                PASSWORD.as_bytes(),
                vserv_service::unix_now(),
            )
            .context("creating the benchmark user")?;
        let identity = node.identity().clone();
        let fingerprint = identity.public_key().fingerprint();
        let ledger = node.ledger().clone();
        let service = node.service();
        let server = Server::bind("127.0.0.1:0", identity, service, ServerOptions::default())
            .context("starting the in-process server on 127.0.0.1")?
            .spawn()
            .context("starting the accept thread")?;
        let addr = server.local_addr().to_string();
        let mut options = ClientOptions::new(dir.path().join("known_servers"));
        options.pinned = Some(fingerprint);
        let login = Command::Login {
            user: "bench".into(),
            credential: Credential::Password(SecretBytes::new(PASSWORD.as_bytes().to_vec())),
        };
        let clients = (0..connections.max(1))
            .map(|_| -> anyhow::Result<Client> {
                let mut client = Client::connect(&addr, &options)
                    .with_context(|| format!("connecting to {addr}"))?;
                client.call(&login).context("logging in")?;
                Ok(client)
            })
            .collect::<anyhow::Result<Vec<Client>>>()?;
        Ok(Bench {
            ledger,
            store,
            clients,
            server: Some(server),
            _dir: dir,
        })
    }

    /// Ends the sessions and stops the server (the ledger stays readable).
    fn stop(&mut self) -> anyhow::Result<()> {
        for client in self.clients.drain(..) {
            client.quit().context("closing a session")?;
        }
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
        Ok(())
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// Runs the ledger benchmark. Each `rput` phase starts from an empty store (so neither
/// measures a feed the other left behind); the `rget` and verify phases read the feed the
/// multi-connection phase wrote.
pub fn run(args: &LedgerArgs) -> anyhow::Result<LedgerReport> {
    let n = args.records;
    let conns = args.connections;

    // Four store records per entry: as many as the rput phases wrote before the kind index
    // was kept per commit (so the store phase stays comparable with older builds).
    let store = store_alone(args.cache_mib, 4 * n, args.body).context("the store alone")?;
    let store_indexed = store_with_indexes(args.cache_mib, n, args.body, args.ids)
        .context("the store with the ledger's keys")?;

    let mut one = Bench::start(1, args.cache_mib)?;
    let before = one.store.totals();
    let timer = Timer::start();
    run_all(
        &mut one.clients[0],
        rputs(0..n, 0, args.body, args.ids),
        args.window,
        appended,
    )
    .context("rput on one connection")?;
    let rput_one = timer.phase(1, n);
    let rput_one_commits = PhaseCommits::of(&one.store.totals().since(&before), rput_one.seconds);
    one.stop()?;
    drop(one);

    let mut bench = Bench::start(conns, args.cache_mib)?;
    let each = n / conns;
    let before = bench.store.totals();
    let timer = Timer::start();
    in_parallel(&mut bench.clients, |client, c| {
        run_all(
            client,
            rputs(0..each, c + 1, args.body, args.ids),
            args.window,
            appended,
        )
    })
    .context("rput on several connections")?;
    let rput_many = timer.phase(conns, each * conns);
    let rput_many_commits =
        PhaseCommits::of(&bench.store.totals().since(&before), rput_many.seconds);
    let ledger = bench.ledger.clone();
    let clients = &mut bench.clients;

    let entries = ledger.size()?;
    let timer = Timer::start();
    run_all(&mut clients[0], rgets(n, 0, entries), args.window, record)
        .context("rget on one connection")?;
    let rget_one = timer.phase(1, n);

    let timer = Timer::start();
    in_parallel(clients, |client, c| {
        run_all(client, rgets(each, c * each, entries), args.window, record)
    })
    .context("rget on several connections")?;
    let rget_many = timer.phase(conns, each * conns);

    let by_id_each = (each / ID_READS_PER_SEQ_READ).max(1);
    let timer = Timer::start();
    in_parallel(clients, |client, c| {
        let reads = rgets_by_id(by_id_each, c * by_id_each, conns, each, args.ids);
        run_all(client, reads, args.window, record)
    })
    .context("rget by record id on several connections")?;
    let rget_id_many = timer.phase(conns, by_id_each * conns);
    let rss_kib = status_kib("VmRSS");

    bench.stop()?;

    let timer = Timer::start();
    let checked = crate::chain_cmd::check_reading_ahead(&ledger.feed(), 1, u64::MAX, &mut |_| {});
    match checked.context("verifying the stored feed")? {
        CheckReport::Ok { seq } if seq == entries => {}
        other => bail!("the benchmark's feed did not verify: {other:?}"),
    }
    let verify = timer.phase(0, entries);

    let rput_vs_store = rput_many.per_s / store.per_s.max(f64::MIN_POSITIVE);
    let rput_vs_store_indexed = rput_many.per_s / store_indexed.per_s.max(f64::MIN_POSITIVE);
    Ok(LedgerReport {
        bench: "ledger",
        machine: Machine::get(),
        window: args.window,
        body_bytes: args.body,
        ids: args.ids,
        cache_mib: args.cache_mib,
        rput_one,
        rput_many,
        rput_one_commits,
        rput_many_commits,
        rget_one,
        rget_many,
        rget_id_many,
        verify,
        entries,
        rput_vs_store,
        records_per_entry: RECORDS_PER_ENTRY,
        rput_vs_store_entries: rput_vs_store * RECORDS_PER_ENTRY,
        store,
        rput_vs_store_indexed,
        store_indexed,
        rss_kib,
        peak_rss_kib: status_kib("VmHWM"),
    })
}

fn verdict(value: f64, target: f64) -> &'static str {
    if value >= target { "met" } else { "NOT met" }
}

impl Report for LedgerReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench ledger: in-process blocking server on 127.0.0.1, fjall store with an \
             fsync per group commit and a {} MiB block cache ({} CPUs), {}-byte bodies, {} \
             record ids, window {}; each rput phase starts from an empty store",
            self.cache_mib,
            self.machine.cpus,
            self.body_bytes,
            match self.ids {
                RecordIds::Counted => "counted",
                RecordIds::Random => "random",
            },
            self.window
        );
        let rows = [
            (
                "durable rput, 1 connection",
                &self.rput_one,
                RPUT_TARGET_PER_S,
                Some(&self.rput_one_commits),
            ),
            (
                "durable rput",
                &self.rput_many,
                RPUT_TARGET_PER_S,
                Some(&self.rput_many_commits),
            ),
            (
                "rget by seq, 1 connection",
                &self.rget_one,
                RGET_TARGET_PER_S,
                None,
            ),
            ("rget by seq", &self.rget_many, RGET_TARGET_PER_S, None),
            (
                "rget by record id",
                &self.rget_id_many,
                RGET_TARGET_PER_S,
                None,
            ),
            ("offline verify", &self.verify, VERIFY_TARGET_PER_S, None),
        ];
        for (name, phase, target, commits) in rows {
            let conns = if phase.connections > 1 {
                format!(", {} connections", phase.connections)
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "{name}{conns}: {:.0}/s ({} in {:.2} s, {:.1} µs CPU each; target >= {:.0}/s: {})",
                phase.per_s,
                phase.operations,
                phase.seconds,
                phase.cpu_us_per_op,
                target,
                verdict(phase.per_s, target)
            );
            if let Some(commits) = commits {
                let _ = writeln!(s, "  {}", commits.line());
            }
        }
        let _ = writeln!(s, "feed size at the end: {} entries", self.entries);
        let _ = writeln!(
            s,
            "store alone: {:.0} records/s in fsync'd batches of {STORE_BATCH} ({} in {:.2} s); \
             durable rputs / store records = {:.2} (target >= 0.5: {})",
            self.store.per_s,
            self.store.operations,
            self.store.seconds,
            self.rput_vs_store,
            verdict(self.rput_vs_store, 0.5)
        );
        let _ = writeln!(
            s,
            "per entry ({} store records each): durable rputs / (store records / {}) = {:.2} \
             (target >= 0.5: {})",
            self.records_per_entry,
            self.records_per_entry,
            self.rput_vs_store_entries,
            verdict(self.rput_vs_store_entries, 0.5)
        );
        let _ = writeln!(
            s,
            "store with the ledger's keys (entry, record id and hash index): {:.0} entries/s in \
             fsync'd commits of {INDEXED_COMMIT_ENTRIES} ({} in {:.2} s, {:.1} µs CPU each); \
             durable rputs / that = {:.2}",
            self.store_indexed.per_s,
            self.store_indexed.operations,
            self.store_indexed.seconds,
            self.store_indexed.cpu_us_per_op,
            self.rput_vs_store_indexed
        );
        let mib = |k: Option<u64>| {
            k.map_or("unknown".to_owned(), |k| {
                format!("{:.0} MiB", k as f64 / 1024.0)
            })
        };
        let _ = writeln!(
            s,
            "memory: process RSS holding the {}-entry feed {} (peak over the run {})",
            self.entries,
            mib(self.rss_kib),
            mib(self.peak_rss_kib)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::{RecordIds, body, spread_hash};

    #[test]
    fn record_ids_are_distinct_across_connections() {
        for ids in [RecordIds::Counted, RecordIds::Random] {
            let all: std::collections::HashSet<Vec<u8>> = (0..5)
                .flat_map(|conn| (0..2_000).map(move |i| ids.id(conn, i)))
                .collect();
            assert_eq!(all.len(), 10_000, "{ids:?}");
        }
        let random = RecordIds::Random.id(3, 17);
        assert_eq!(random.len(), 32);
        assert!(random.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(RecordIds::Counted.id(3, 17), b"c3-17");
    }

    #[test]
    fn spread_hashes_are_distinct_and_use_every_byte_value() {
        let hashes: std::collections::HashSet<[u8; 32]> = (0..10_000).map(spread_hash).collect();
        assert_eq!(hashes.len(), 10_000);
        let first_bytes: std::collections::HashSet<u8> = hashes.iter().map(|h| h[0]).collect();
        assert_eq!(
            first_bytes.len(),
            256,
            "leading bytes spread over every value"
        );
    }

    #[test]
    fn a_body_is_the_zero_padded_index_cut_to_its_size() {
        assert_eq!(body(8, 42), b"d=00042\n");
        assert_eq!(body(4, 7), b"d=7\n");
        assert_eq!(body(4, 1234), b"d=1\n");
        assert_eq!(body(6, 123), b"d=123\n");
        for (size, i) in [(100, 0), (100, u64::MAX), (5, 99_999), (17, 31)] {
            let padded = format!("d={i:0>width$}", width = (size - 3) as usize);
            let mut expected = padded.into_bytes();
            expected.truncate((size - 1) as usize);
            expected.push(b'\n');
            assert_eq!(body(size, i), expected, "size {size}, i {i}");
            assert_eq!(body(size, i).len() as u64, size);
        }
    }
}
