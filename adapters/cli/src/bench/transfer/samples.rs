//! One kind of transfer measured over several runs: each run's wall-clock seconds and the
//! CPU seconds of its client and its server, summarised as medians per GiB.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Bytes in a GiB, the unit CPU cost is given per.
const GIB: f64 = (1u64 << 30) as f64;

/// Every run of one kind of transfer so far.
#[derive(Debug, Default)]
pub(super) struct Samples {
    seconds: Vec<f64>,
    /// Client and server CPU of each run, when both could be read.
    cpu: Vec<Option<(Duration, Duration)>>,
}

impl Samples {
    /// Runs `transfer` once, timing it, and charging it the growth of `client_cpu()` and
    /// `server_cpu()` (read before and after) as its two sides' CPU.
    pub(super) fn run<T>(
        &mut self,
        client_cpu: impl Fn() -> Option<Duration>,
        server_cpu: impl Fn() -> Option<Duration>,
        transfer: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let (c0, s0) = (client_cpu(), server_cpu());
        let started = Instant::now();
        let out = transfer()?;
        let elapsed = started.elapsed().as_secs_f64();
        let (c1, s1) = (client_cpu(), server_cpu());
        self.seconds.push(elapsed);
        self.cpu.push(match (c0, c1, s0, s1) {
            (Some(c0), Some(c1), Some(s0), Some(s1)) => {
                Some((c1.saturating_sub(c0), s1.saturating_sub(s0)))
            }
            _ => None,
        });
        Ok(out)
    }

    /// Each run's seconds, in order.
    pub(super) fn seconds(&self) -> &[f64] {
        &self.seconds
    }

    /// The summary for `size`-byte transfers.
    pub(super) fn summary(&self, size: u64) -> Summary {
        let rate = |s: f64| if s > 0.0 { size as f64 / s / 1e6 } else { 0.0 };
        let per_gib = |d: Duration| d.as_secs_f64() * GIB / size.max(1) as f64;
        let cpu: Option<Vec<(Duration, Duration)>> = self.cpu.iter().copied().collect();
        let cpu = cpu.filter(|c| !c.is_empty());
        let side = |pick: fn(&(Duration, Duration)) -> Duration| {
            cpu.as_ref()
                .map(|c| median(c.iter().map(|x| per_gib(pick(x))).collect()))
        };
        Summary {
            mb_per_s: rate(median(self.seconds.clone())),
            runs_mb_per_s: self.seconds.iter().map(|&s| rate(s)).collect(),
            cpu_s_per_gib: side(|(c, s)| *c + *s),
            client_cpu_s_per_gib: side(|(c, _)| *c),
            server_cpu_s_per_gib: side(|(_, s)| *s),
        }
    }
}

/// Medians of one kind of transfer.
#[derive(Serialize, Debug, Clone)]
pub(super) struct Summary {
    /// MB/s (10^6 bytes) of the median run.
    pub(super) mb_per_s: f64,
    /// Every run's MB/s, in order.
    pub(super) runs_mb_per_s: Vec<f64>,
    /// Median CPU seconds per GiB of client and server together (absent where /proc is
    /// not readable).
    pub(super) cpu_s_per_gib: Option<f64>,
    /// Median CPU seconds per GiB of the client.
    pub(super) client_cpu_s_per_gib: Option<f64>,
    /// Median CPU seconds per GiB of the server.
    pub(super) server_cpu_s_per_gib: Option<f64>,
}

/// The middle value (the upper one of an even count), 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_gives_medians_per_gib() {
        let mut s = Samples::default();
        let size = 1u64 << 30;
        for (client, server) in [(1, 2), (3, 4), (2, 3)] {
            let mut reads = [Duration::ZERO, Duration::from_secs(client)].into_iter();
            let reads = std::cell::RefCell::new(&mut reads);
            let mut sreads = [Duration::ZERO, Duration::from_secs(server)].into_iter();
            let sreads = std::cell::RefCell::new(&mut sreads);
            s.run(
                || reads.borrow_mut().next(),
                || sreads.borrow_mut().next(),
                || Ok(()),
            )
            .expect("runs");
        }
        let sum = s.summary(size);
        assert_eq!(sum.runs_mb_per_s.len(), 3);
        assert_eq!(s.seconds().len(), 3);
        assert_eq!(sum.cpu_s_per_gib, Some(5.0));
        assert_eq!(sum.client_cpu_s_per_gib, Some(2.0));
        assert_eq!(sum.server_cpu_s_per_gib, Some(3.0));
    }

    #[test]
    fn unknown_cpu_is_absent_not_zero() {
        let mut s = Samples::default();
        s.run(|| None, || Some(Duration::ZERO), || Ok(()))
            .expect("runs");
        let sum = s.summary(1 << 20);
        assert_eq!(sum.cpu_s_per_gib, None);
        assert!(sum.mb_per_s > 0.0);
    }
}
