//! Crash safety of the ledger in the deterministic simulator (issue 4).
//!
//! One server keeps its accounts and its feed in a [`MemoryStore`] with the crash model.
//! Several simulated clients put it under pipelined `rput` load (so the server groups their
//! records into shared commits); the store crashes after a random number of commits, or at
//! a random virtual moment between two commits; the server "process" dies (its connections
//! end, nothing more is committed) and a new one starts on the same store. After every
//! restart the feed must hold every acknowledged record at its acknowledged seq and hash,
//! have no gap, re-verify with `Ledger::check()`, keep every entry seen durable before, and
//! hold no record id twice and none that no client sent. Requests without an answer are
//! unknown: they are retried after the restart and must come back as a new entry or a
//! duplicate `Conflict` (then the record is present), never as two entries.
//!
//! Every failure names its seed; `VSERV_SIM_SEED=<seed>` replays exactly that run.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use vserv_core::commands::{Command, Credential, Reply, SecretBytes, UserRole};
use vserv_core::ledger::ZERO_HASH;
use vserv_core::{Config, ErrorCode, ServerIdentity};
use vserv_service::client::ClientError;
use vserv_service::ledger::{CheckReport, Ledger};
use vserv_service::{Node, NodeSettings};
use vserv_sim::ledger_model::{Fate, LedgerModel};
use vserv_sim::{
    ClientSpec, EndpointId, Finish, LinkConfig, LinkSpec, RunEnd, SeedFailure, ServerId,
    ServerSpec, World, for_each_seed,
};
use vserv_store::memory::MemoryStore;

const USER: &str = "writer";
const PASSWORD: &[u8] = b"writer-password-1";
/// How long (virtual time) any wait of the test may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(3600);

/// Files the answer to `rput record_id` into `model`. While the store is up (`ledger`),
/// an acknowledged entry must be durable and be this record, and a `Conflict`ed record must
/// be there, whole, right now (when the store is down, the next verification checks it). A
/// failure answer other than `Conflict` (the store crashed under the commit) leaves the
/// record unknown.
fn answer(
    model: &mut LedgerModel,
    record_id: &[u8],
    reply: Result<Reply, ClientError>,
    ledger: Option<&Ledger>,
) -> Result<(), String> {
    let shown = String::from_utf8_lossy(record_id).into_owned();
    let fate = match reply {
        Ok(Reply::Appended { seq, hash }) => {
            if let Some(ledger) = ledger {
                match ledger.by_seq(seq) {
                    Ok(Some(e)) if e.record_id() == record_id && e.hash() == hash => {}
                    other => {
                        return Err(format!(
                            "{shown} acknowledged at {seq}, which holds {other:?}"
                        ));
                    }
                }
            }
            Fate::Appended(seq, hash)
        }
        Ok(other) => return Err(format!("rput {shown} answered {other:?}")),
        Err(ClientError::Server(e)) if e.code == ErrorCode::Conflict => {
            if let Some(ledger) = ledger {
                match ledger.by_id(record_id) {
                    Ok(Some(entry)) if entry.record_id() == record_id => {}
                    other => {
                        return Err(format!("{shown} got Conflict but by_id finds {other:?}"));
                    }
                }
            }
            Fate::Conflict
        }
        Err(_) => Fate::Unknown,
    };
    model.file(record_id, fate)
}

/// The checks after every restart (and at the end): the ledger's own chain check and hash
/// index, then [`LedgerModel::verify`] over its entries and its id index.
fn verify(model: &mut LedgerModel, ledger: &Ledger) -> Result<(), String> {
    let size = ledger.size().map_err(|e| format!("size: {e}"))?;
    match ledger.check() {
        Ok(CheckReport::Ok { seq }) if seq == size => {}
        other => return Err(format!("check of a feed of {size} entries: {other:?}")),
    }
    let mut entries = Vec::new();
    for seq in 1..=size {
        let entry = ledger
            .by_seq(seq)
            .map_err(|e| format!("by_seq({seq}): {e}"))?
            .ok_or_else(|| format!("gap: no entry {seq} in a feed of {size}"))?;
        if ledger
            .seq_of_hash(&entry.hash())
            .map_err(|e| e.to_string())?
            != Some(seq)
        {
            return Err(format!("entry {seq} is not found under its hash"));
        }
        entries.push(entry);
    }
    model.verify(&entries, |id| {
        let Some(seq) = ledger
            .seq_of_id(id)
            .map_err(|e| format!("seq_of_id: {e}"))?
        else {
            return Ok(None);
        };
        // An index pointing past the entries gets no hash, so it never agrees with them.
        let entry = ledger.by_seq(seq).map_err(|e| format!("by_seq: {e}"))?;
        Ok(Some((seq, entry.map_or(ZERO_HASH, |e| e.hash()))))
    })
}

/// One client connection of the load: it logs in (request 1), then sends its records
/// (requests 2, 3, ...: request ids count up from 1 on each connection) with up to its
/// pipeline depth in flight. Requests written together reach the server together, so it
/// appends them as one group.
struct Slot {
    ep: EndpointId,
    records: Vec<Vec<u8>>,
}

/// How the current server process dies.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// The store fails the `(n+1)`-th commit from now (mid-commit: it applies nothing).
    AfterCommits(u64),
    /// The store goes down at this virtual time, between two commits.
    At(Duration),
    /// No crash: the final round.
    Never,
}

struct Run {
    seed: u64,
    rng: StdRng,
    world: World,
    store: MemoryStore,
    identity: Arc<ServerIdentity>,
    server: ServerId,
    ledger: Arc<Ledger>,
    link: LinkSpec,
    model: LedgerModel,
    next_record: u64,
    /// Connections made (each login commits the login time).
    connections: u64,
}

impl Run {
    fn new(seed: u64) -> Result<Run, String> {
        let mut world = World::new(seed);
        let mut rng = world.fork_rng();
        let identity = Arc::new(ServerIdentity::generate(&mut world.fork_rng()));
        let store = MemoryStore::with_store_id(rng.random());
        // Mostly links that keep writes whole or nearly, so pipelined requests arrive
        // together and the server groups them into one commit.
        let chunk = [1, 64, 700, 4096, 0, 0][rng.random_range(0..6usize)];
        let mut config = LinkConfig::benign(chunk);
        // Some seeds also lose connections while the server lives on.
        if rng.random_bool(0.3) {
            config = config.with_reset(0.003);
        }
        let link = LinkSpec::symmetric(config);
        let node = node(&store, &identity, &mut world)?;
        node.accounts()
            .create(USER, UserRole::User, PASSWORD, 1_700_000_000)
            .map_err(|e| format!("creating the user: {e}"))?;
        let mut run = Run {
            seed,
            rng,
            world,
            store,
            identity,
            server: ServerId(0),
            ledger: node.ledger().clone(),
            link,
            model: LedgerModel::default(),
            next_record: 0,
            connections: 0,
        };
        run.server = run.boot(&node);
        Ok(run)
    }

    /// Starts a server process: the service of `node` (over the store).
    fn boot(&mut self, node: &Node) -> ServerId {
        self.world.add_server(ServerSpec {
            identity: self.identity.clone(),
            service: node.service(),
            max_connections: 64,
            config: Config::default(),
        })
    }

    /// Connects a client that logs in and sends `records` (ids of `self.model.sent`).
    fn connect(&mut self, link: &LinkSpec, records: Vec<Vec<u8>>) -> Result<Slot, String> {
        let options = self
            .world
            .client_options(Config::default())
            .map_err(|e| e.to_string())?;
        let mut script = vec![Command::Login {
            user: USER.into(),
            credential: Credential::Password(SecretBytes::new(PASSWORD.to_vec())),
        }];
        for id in &records {
            script.push(Command::Rput {
                kind: "note".into(),
                record_id: id.clone(),
                body: self.model.sent.get(id).cloned().unwrap_or_default(),
            });
        }
        let ep = self
            .world
            .add_client(
                self.server,
                ClientSpec {
                    options,
                    link: link.clone(),
                    script,
                    pipeline: self.rng.random_range(1..=8usize),
                    finish: Finish::Stay,
                },
            )
            .map_err(|e| e.to_string())?;
        self.connections += 1;
        Ok(Slot { ep, records })
    }

    fn fresh_record(&mut self, client: usize) -> Vec<u8> {
        self.next_record += 1;
        let id = format!("s{}-c{client}-r{}", self.seed, self.next_record).into_bytes();
        let len = self.rng.random_range(0..200usize);
        let body: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
        self.model.sent.insert(id.clone(), body);
        id
    }

    /// Whether `slot` has every answer (login and records).
    fn answered(&self, slot: &Slot) -> bool {
        self.world
            .client_report(slot.ep)
            .is_some_and(|r| r.answered > slot.records.len())
    }

    /// One server life: load from `clients` connections at once until the crash (or, for
    /// [`Crash::Never`], until every retry and `fresh` new records are answered). Returns
    /// whether the crash lost answers (requests were in flight).
    fn round(&mut self, clients: usize, fresh: usize, crash: Crash) -> Result<bool, String> {
        let link = match crash {
            // The final round resolves every unknown record: no lost connections.
            Crash::Never => LinkSpec::symmetric(LinkConfig::benign(64)),
            _ => self.link.clone(),
        };
        let mut retries: VecDeque<Vec<u8>> = self.model.unknown.iter().cloned().collect();
        let mut fresh_left = fresh;
        let crash_at = match crash {
            Crash::AfterCommits(n) => {
                self.store.crash_after_commits(n);
                None
            }
            Crash::At(after) => Some(self.world.now() + after),
            Crash::Never => None,
        };
        let lost_before = self.model.lost;
        let mut slots: Vec<Option<Slot>> = (0..clients).map(|_| None).collect();
        loop {
            // Finished or lost connections are harvested; free slots take new work.
            for (i, entry) in slots.iter_mut().enumerate() {
                if let Some(slot) = entry.take() {
                    if self.world.is_closed(slot.ep) || self.answered(&slot) {
                        self.harvest(slot, &mut retries)?;
                    } else {
                        *entry = Some(slot);
                    }
                }
                if entry.is_none() && !self.store.is_down() {
                    let mut records = Vec::new();
                    let want = self.rng.random_range(1..=30usize);
                    while records.len() < want {
                        if let Some(id) = retries.pop_front() {
                            records.push(id);
                        } else if fresh_left > 0 {
                            fresh_left -= 1;
                            records.push(self.fresh_record(i));
                        } else {
                            break;
                        }
                    }
                    if !records.is_empty() {
                        *entry = Some(self.connect(&link, records)?);
                    }
                }
            }
            if slots.iter().all(Option::is_none) {
                if let Crash::Never = crash {
                    break;
                }
                // The load is done before the armed crash: crash between two commits.
                self.store.crash_now();
            }
            if self.store.is_down() {
                break;
            }
            // Run until a connection finishes or ends, or the crash.
            let store = self.store.clone();
            let limit = self.world.now() + HANG;
            let waiting = &slots;
            let end = self.world.run_until(limit, |w| {
                store.is_down()
                    || crash_at.is_some_and(|t| w.now() >= t)
                    || waiting.iter().flatten().any(|s| {
                        w.is_closed(s.ep)
                            || w.client_report(s.ep)
                                .is_some_and(|r| r.answered > s.records.len())
                    })
            });
            if end != RunEnd::Done {
                return Err(format!(
                    "the load hangs ({end:?} at {:?})",
                    self.world.now()
                ));
            }
            if crash_at.is_some_and(|t| self.world.now() >= t) {
                self.store.crash_now();
            }
        }
        if self.store.is_down() {
            // The process dies: nothing more is committed; its connections end.
            self.world.shutdown(self.server);
            let limit = self.world.now() + HANG;
            let waiting = &slots;
            self.world.run_until(limit, |w| {
                waiting.iter().flatten().all(|s| w.is_closed(s.ep))
            });
        }
        for slot in slots.into_iter().flatten() {
            if !self.world.is_closed(slot.ep) {
                return Err(format!("connection {:?} outlived its server", slot.ep));
            }
            self.harvest(slot, &mut retries)?;
        }
        let crashed = self.store.is_down();
        if !crashed {
            self.world.shutdown(self.server);
        }
        let limit = self.world.now() + HANG;
        self.world.run(limit);
        Ok(crashed && self.model.lost > lost_before)
    }

    /// Files the answers of a finished or lost connection and closes it. A record without
    /// an answer is unknown, and is retried in this round while the server lives.
    fn harvest(&mut self, slot: Slot, retries: &mut VecDeque<Vec<u8>>) -> Result<(), String> {
        let up = !self.store.is_down();
        match self.world.take_reply(slot.ep, 1) {
            None | Some(Ok(Reply::User { .. })) => {}
            Some(other) => return Err(format!("login answered {other:?}")),
        }
        for (request, record_id) in (2u32..).zip(slot.records) {
            match self.world.take_reply(slot.ep, request) {
                Some(reply) => {
                    let ledger = up.then_some(&*self.ledger);
                    answer(&mut self.model, &record_id, reply, ledger)?;
                }
                None => self.model.file(&record_id, Fate::Unknown)?,
            }
            if up && self.model.unknown.contains(&record_id) && !retries.contains(&record_id) {
                retries.push_back(record_id);
            }
        }
        if !self.world.is_closed(slot.ep) {
            self.world.close_client(slot.ep);
        }
        Ok(())
    }

    /// The store comes back with what was committed; a new server process starts on it.
    fn restart(&mut self) -> Result<(), String> {
        self.store.restart();
        let node = node(&self.store, &self.identity, &mut self.world)?;
        self.ledger = node.ledger().clone();
        verify(&mut self.model, &self.ledger)?;
        self.server = self.boot(&node);
        Ok(())
    }
}

/// A server process's node over `store` (its accounts and its feed), salted from `world`.
fn node(
    store: &MemoryStore,
    identity: &Arc<ServerIdentity>,
    world: &mut World,
) -> Result<Node, String> {
    Node::builder(
        identity.clone(),
        NodeSettings::insecure_fast("ledger-crash"),
    )
    .store(Arc::new(store.clone()))
    .rng(Box::new(world.fork_rng()))
    .build()
    .map_err(|e| format!("node: {e}"))
}

/// One seed: `crashes` server lives ended by a crash under load, then a final life that
/// retries every unknown record. Returns the final feed's size and head hash, how many
/// crashes lost answers, and how many store commits there were besides account ones (the
/// user's creation and each login's time).
fn scenario(seed: u64, crashes: usize) -> Result<(u64, [u8; 32], usize, u64), String> {
    let mut run = Run::new(seed)?;
    let mut under_load = 0;
    for _ in 0..crashes {
        let clients = run.rng.random_range(2..=5usize);
        let fresh = run.rng.random_range(5..=60usize);
        let crash = if run.rng.random_bool(0.6) {
            Crash::AfterCommits(run.rng.random_range(0..=25u64))
        } else {
            Crash::At(Duration::from_millis(run.rng.random_range(0..=400u64)))
        };
        if run.round(clients, fresh, crash)? {
            under_load += 1;
        }
        run.restart()?;
    }
    run.round(3, 5, Crash::Never)?;
    verify(&mut run.model, &run.ledger)?;
    if !run.model.unknown.is_empty() {
        return Err(format!(
            "{} record(s) still unknown after the final round",
            run.model.unknown.len()
        ));
    }
    // Every record sent is in the feed exactly once (verify saw no duplicate).
    let size = run.ledger.size().map_err(|e| e.to_string())?;
    let all = run.model.acked.len() + run.model.conflicted.len();
    if u64::try_from(all).ok() != Some(size) || all != run.model.sent.len() {
        return Err(format!(
            "{} sent, {} acknowledged + {} conflicted, feed of {size}",
            run.model.sent.len(),
            run.model.acked.len(),
            run.model.conflicted.len()
        ));
    }
    run.world.check().map_err(|v| v.to_string())?;
    let head = run
        .ledger
        .head()
        .map_err(|e| e.to_string())?
        .ok_or("an empty feed after the load")?;
    let ledger_commits = run.store.commit_count().saturating_sub(run.connections + 1);
    Ok((size, head.head.hash, under_load, ledger_commits))
}

/// What the crash scenario measured over the seeds of a sweep.
#[derive(Debug, Default)]
struct SweepStats {
    seeds: usize,
    entries: u64,
    commits: u64,
    crashes_under_load: usize,
}

impl SweepStats {
    /// The claims about the whole default sweep: the load really reached the feed, crashes
    /// really cut it (not only idle crashes), and pipelined records were appended in groups
    /// (fewer commits than entries). One seed need not show them all (none of seed 42's
    /// crashes loses an answer), so they are never checked for a replayed seed.
    fn sweep_claims(&self) -> Result<(), String> {
        if self.seeds == 0 {
            return Err("no seed ran".to_owned());
        }
        if self.entries < self.seeds as u64 * 10 {
            return Err(format!("{} entries for {} seeds", self.entries, self.seeds));
        }
        if self.crashes_under_load < self.seeds {
            return Err(format!(
                "{} crash(es) under load for {} seeds",
                self.crashes_under_load, self.seeds
            ));
        }
        if self.commits >= self.entries {
            return Err(format!(
                "{} commits for {} entries",
                self.commits, self.entries
            ));
        }
        Ok(())
    }
}

/// Runs the crash scenario for every seed of `list` (or the one `VSERV_SIM_SEED` names):
/// each must keep every acknowledged record, on its own. Returns what they measured.
fn crash_sweep(list: impl IntoIterator<Item = u64>) -> Result<SweepStats, SeedFailure> {
    let mut stats = SweepStats::default();
    stats.seeds = for_each_seed(list, |seed| -> Result<(), String> {
        let (size, _, under_load, n) = scenario(seed, 4)?;
        stats.commits += n;
        stats.entries += size;
        stats.crashes_under_load += under_load;
        Ok(())
    })?;
    Ok(stats)
}

/// The crash sweep over `list`; with `replayed` (a seed chosen by `VSERV_SIM_SEED`) each
/// seed must only pass on its own, else the sweep's claims are checked too.
fn run_sweep(list: impl IntoIterator<Item = u64>, replayed: bool) -> Result<SweepStats, String> {
    let stats = crash_sweep(list).map_err(|failure| failure.to_string())?;
    if !replayed {
        stats.sweep_claims()?;
    }
    Ok(stats)
}

#[test]
fn acknowledged_records_survive_crashes_under_concurrent_load() {
    let replayed = vserv_sim::env_seed()
        .unwrap_or_else(|e| panic!("{e}"))
        .is_some();
    let stats = run_sweep(0..40, replayed).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{} seed(s): {} entries in at most {} ledger commits, {} crash(es) lost answers",
        stats.seeds, stats.entries, stats.commits, stats.crashes_under_load
    );
}

/// Replaying one seed of the sweep, as `VSERV_SIM_SEED=<seed>` does, passes on its own:
/// among them 42 (the README's example), none of whose crashes loses an answer.
#[test]
fn seeds_of_the_crash_sweep_pass_replayed_alone() {
    for seed in [42, 0, 39] {
        let stats = run_sweep([seed], true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stats.seeds, 1);
        assert!(stats.entries > 0, "seed {seed}: nothing reached the feed");
    }
}

#[test]
fn a_seed_replays_to_the_same_feed() {
    let seed = vserv_sim::env_seed()
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or(7);
    let first = scenario(seed, 3).unwrap_or_else(|e| panic!("VSERV_SIM_SEED={seed}: {e}"));
    let second = scenario(seed, 3).unwrap_or_else(|e| panic!("VSERV_SIM_SEED={seed}: {e}"));
    assert_eq!(first, second, "VSERV_SIM_SEED={seed}");
}
