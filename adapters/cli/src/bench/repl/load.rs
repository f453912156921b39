//! The replication bench's client load: `rput`s on logged-in blocking clients, either paced
//! at a steady total rate or as fast as a window of pipelined requests allows, recording the
//! instant each acknowledgement arrived and the seq it gave.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use vserv_blocking::Client;
use vserv_core::commands::{Command, Reply};

/// An acknowledged `rput`: its seq in the feed and when the client got the reply.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ack {
    pub(super) seq: u64,
    pub(super) at: Instant,
}

/// An `rput` of a `body`-byte record with a unique id for (`tag`, `client`, `i`).
pub(super) fn rput(tag: &str, client: usize, i: u64, body: u64) -> Command {
    Command::Rput {
        kind: "bench".into(),
        record_id: format!("{tag}-{client}-{i}").into_bytes(),
        body: crate::bench::ledger::body(body, i),
    }
}

fn seq_of(reply: Reply) -> anyhow::Result<u64> {
    match reply {
        Reply::Appended { seq, .. } => Ok(seq),
        other => bail!("unexpected reply to rput: {other:?}"),
    }
}

/// Runs `work(client, index)` on every client in its own thread and gathers their acks.
fn on_every_client(
    clients: &mut [Client],
    work: impl Fn(&mut Client, usize) -> anyhow::Result<Vec<Ack>> + Sync,
) -> anyhow::Result<Vec<Ack>> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(i, client)| {
                let work = &work;
                scope.spawn(move || work(client, i))
            })
            .collect();
        let mut acks = Vec::new();
        for w in workers {
            let mut some = w
                .join()
                .unwrap_or_else(|_| Err(anyhow!("a client thread panicked")))?;
            acks.append(&mut some);
        }
        Ok(acks)
    })
}

/// `rate` rputs per second in total for `duration`, spread evenly over `clients`, each
/// client sending one at a time on its own schedule (a client that falls behind sends at
/// once until it has caught up with its schedule).
pub(super) fn steady(
    clients: &mut [Client],
    tag: &str,
    rate: u64,
    duration: Duration,
    body: u64,
) -> anyhow::Result<Vec<Ack>> {
    let n = clients.len().max(1) as u64;
    let total = (rate as f64 * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(n as f64 / rate as f64);
    let start = Instant::now();
    on_every_client(clients, |client, c| {
        // Client c sends rputs c, c+n, c+2n... of the whole schedule, offset by its turn.
        let offset = interval.mul_f64(c as f64 / n as f64);
        let mut acks = Vec::new();
        for (k, i) in (c as u64..total).step_by(n as usize).enumerate() {
            let due = start + offset + interval.mul_f64(k as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let reply = client.call(&rput(tag, c, i, body)).context("rput")?;
            acks.push(Ack {
                seq: seq_of(reply)?,
                at: Instant::now(),
            });
        }
        Ok(acks)
    })
}

/// As many rputs as `clients` take for `duration`, each client keeping `window` in flight.
pub(super) fn saturating(
    clients: &mut [Client],
    tag: &str,
    window: usize,
    duration: Duration,
    body: u64,
) -> anyhow::Result<Vec<Ack>> {
    let end = Instant::now() + duration;
    on_every_client(clients, |client, c| {
        let window = window.clamp(1, client.max_outstanding());
        let mut in_flight: VecDeque<(u32, Command)> = VecDeque::with_capacity(window);
        let mut acks = Vec::new();
        let mut i = 0u64;
        loop {
            while in_flight.len() < window && Instant::now() < end {
                let command = rput(tag, c, i, body);
                i += 1;
                let id = client.send_raw(command.name(), command.args())?;
                in_flight.push_back((id, command));
            }
            let Some((id, command)) = in_flight.pop_front() else {
                return Ok(acks);
            };
            let fields = client.wait_raw(id).context("rput")?;
            let at = Instant::now();
            acks.push(Ack {
                seq: seq_of(Reply::from_fields(&command, &fields)?)?,
                at,
            });
            // The replies that arrived with it were acknowledged at the same moment.
            while let Some((id, command)) = in_flight.front() {
                let Some(fields) = client.take_raw(*id) else {
                    break;
                };
                acks.push(Ack {
                    seq: seq_of(Reply::from_fields(command, &fields.context("rput")?)?)?,
                    at,
                });
                in_flight.pop_front();
            }
        }
    })
}
