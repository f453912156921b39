//! Learning from outside when a server committed a feed's entries: a client session on it
//! asks `rhead ORIGIN` in a loop and records, each time the head moved, the new head seq at
//! the instant the server read it, taken as the midpoint of that poll's round trip.
//!
//! A server makes a replica segment visible to reads only once its batch is durable (fjall
//! applies a batch to its memtables after the journal's fsync), so the head a poll sees is
//! committed. The instant recorded is an upper bound of the commit's, late by at most the
//! pause between two polls plus one poll's round trip (which
//! [`Watcher::take_median_round_trip`] reports): the resolution.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use vserv_blocking::Client;
use vserv_core::ServerKey;
use vserv_core::commands::Command;
use vserv_core::ledger::{HEAD_VERSION, SIGNED_HEAD_LEN};
use vserv_core::wire::POINT_LEN;
use vserv_service::client::ClientError;

use super::observer::CommitLog;

/// Most round trips kept between two [`Watcher::take_median_round_trip`]s.
const MAX_SAMPLES: usize = 1 << 22;

/// A thread polling one feed's head on one server; stopped (and joined) when dropped.
pub(super) struct Watcher {
    stop: Arc<AtomicBool>,
    round_trips: Arc<Mutex<Vec<u32>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Polls `rhead origin` on `client` every `interval` (back to back when zero) and
    /// records each new head in `log`; a failed session is recorded there as a failure.
    pub(super) fn start(
        mut client: Client,
        origin: ServerKey,
        interval: Duration,
        log: Arc<CommitLog>,
    ) -> anyhow::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let round_trips = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, round_trips) = (stop.clone(), round_trips.clone());
            std::thread::Builder::new()
                .name("repl-watch".into())
                .spawn(move || {
                    if let Err(e) = poll(&mut client, origin, interval, &log, &stop, &round_trips) {
                        log.fail(format!("watching {}: {e:#}", origin.fingerprint()));
                    }
                    let _ = client.quit();
                })
                .context("starting a watcher thread")?
        };
        Ok(Watcher {
            stop,
            round_trips,
            thread: Some(thread),
        })
    }

    /// The median round trip of the polls since the last call (`None`: none made), and
    /// forgets them.
    pub(super) fn take_median_round_trip(&self) -> Option<Duration> {
        let mut samples =
            std::mem::take(&mut *self.round_trips.lock().unwrap_or_else(|p| p.into_inner()));
        if samples.is_empty() {
            return None;
        }
        let mid = samples.len() / 2;
        let (_, median, _) = samples.select_nth_unstable(mid);
        Some(Duration::from_micros(u64::from(*median)))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The head seq `rhead origin` shows (0: the server holds none of that feed yet), read from
/// the raw reply: the signed head's version byte, its origin (checked as bytes, not decoded:
/// decoding a point would cost this process a square root per poll), then the seq.
fn head_seq(client: &mut Client, command: &Command, origin: &ServerKey) -> anyhow::Result<u64> {
    let fields = match client.call_raw(command.name(), command.args()) {
        Ok(fields) => fields,
        // A feed not held yet is refused.
        Err(ClientError::Server(_)) => return Ok(0),
        Err(e) => return Err(e).context("rhead"),
    };
    let head = match fields.as_slice() {
        [head] if head.len() == SIGNED_HEAD_LEN && head.first() == Some(&HEAD_VERSION) => head,
        _ => anyhow::bail!("rhead: not a signed head"),
    };
    let (origin_bytes, rest) = head[1..].split_at(POINT_LEN);
    if origin_bytes != origin.as_bytes() {
        anyhow::bail!("rhead: the head of another feed");
    }
    let seq: [u8; 8] = rest
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .context("rhead: a short signed head")?;
    Ok(u64::from_be_bytes(seq))
}

fn poll(
    client: &mut Client,
    origin: ServerKey,
    interval: Duration,
    log: &CommitLog,
    stop: &AtomicBool,
    round_trips: &Mutex<Vec<u32>>,
) -> anyhow::Result<()> {
    let command = Command::Rhead {
        origin: Some(origin.fingerprint()),
    };
    let mut seen = 0;
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let seq = head_seq(client, &command, &origin)?;
        let back = Instant::now();
        let round_trip = back.saturating_duration_since(sent);
        if seq > seen {
            seen = seq;
            log.record(vec![(*origin.as_bytes(), seq)], sent + round_trip / 2);
        }
        {
            let mut samples = round_trips.lock().unwrap_or_else(|p| p.into_inner());
            if samples.len() < MAX_SAMPLES {
                samples.push(u32::try_from(round_trip.as_micros()).unwrap_or(u32::MAX));
            }
        }
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    Ok(())
}
