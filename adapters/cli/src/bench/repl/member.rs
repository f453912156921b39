//! One server of the replication bench, whichever way it runs: a `vserv serve` process
//! (`process.rs`, the default) or a server of this process (`cluster.rs`, `--in-process`).
//! The phases use only what both give: the key, client sessions, and a [`CommitLog`] of when
//! a feed's entries became durable on it (exact in-process; polled from outside otherwise).

use std::sync::Arc;
use std::time::Duration;

use vserv_blocking::Client;
use vserv_core::ServerKey;

use super::observer::CommitLog;
use super::{cluster, process};

/// Where the bench's servers run.
pub(super) enum Mode {
    /// Separate `vserv serve` processes.
    Processes(process::Launch),
    /// Servers of this process, with exact commit instants.
    InProcess,
}

/// A server of the bench; dropping it stops it.
pub(super) enum Member {
    /// A child process (boxed like the other, so the two are the same size).
    Process(Box<process::Member>),
    /// A server of this process (boxed: it holds the whole node).
    InProcess(Box<cluster::Member>),
}

impl Member {
    /// Its key (the origin of its feed).
    pub(super) fn key(&self) -> ServerKey {
        match self {
            Member::Process(m) => m.key(),
            Member::InProcess(m) => m.key(),
        }
    }

    /// A client session on it, logged in as the bench user.
    pub(super) fn client(&self) -> anyhow::Result<Client> {
        match self {
            Member::Process(m) => m.client(),
            Member::InProcess(m) => m.client(),
        }
    }

    /// When feed entries became durable on it: every feed in-process, the watched ones
    /// otherwise.
    pub(super) fn log(&self) -> &Arc<CommitLog> {
        match self {
            Member::Process(m) => m.log(),
            Member::InProcess(m) => &m.log,
        }
    }

    /// Makes [`Member::log`] follow `origin`'s feed: a process is polled every `interval`
    /// (zero: back to back); in-process every commit is observed already.
    pub(super) fn watch(&mut self, origin: ServerKey, interval: Duration) -> anyhow::Result<()> {
        match self {
            Member::Process(m) => m.watch(origin, interval),
            Member::InProcess(_) => Ok(()),
        }
    }

    /// The median round trip of the polls watching it since the last call: the resolution
    /// of its commit instants (`None` in-process, where they are exact).
    pub(super) fn take_poll_round_trip(&self) -> Option<Duration> {
        match self {
            Member::Process(m) => m.take_poll_round_trip(),
            Member::InProcess(_) => None,
        }
    }

    /// The CPU time its process used so far (`None` in-process, where the servers share
    /// this process, or where `/proc` cannot be read).
    pub(super) fn cpu_time(&self) -> Option<Duration> {
        match self {
            Member::Process(m) => m.cpu_time(),
            Member::InProcess(_) => None,
        }
    }

    /// Its log counts every commit (in-process), not only the head changes a poll saw.
    pub(super) fn exact(&self) -> bool {
        matches!(self, Member::InProcess(_))
    }
}

/// `count` servers in a line, each dialing the one before it, all serving, every one after
/// the first watching the first one's feed every `poll` (processes only). `seed` makes the
/// in-process identities.
pub(super) fn line(
    mode: &Mode,
    count: usize,
    seed: u64,
    poll: Duration,
) -> anyhow::Result<Vec<Member>> {
    let mut members: Vec<Member> = match mode {
        Mode::Processes(launch) => process::line(launch, count)?
            .into_iter()
            .map(|m| Member::Process(Box::new(m)))
            .collect(),
        Mode::InProcess => cluster::line(count, seed)?
            .into_iter()
            .map(|m| Member::InProcess(Box::new(m)))
            .collect(),
    };
    if let Some(first) = members.first().map(Member::key) {
        for member in members.iter_mut().skip(1) {
            member.watch(first, poll)?;
        }
    }
    Ok(members)
}
