//! Small statistics helpers: latency summaries and medians.

use std::time::Duration;

use serde::Serialize;

/// Summary of a set of latencies, in microseconds.
#[derive(Serialize, Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Number of samples.
    pub samples: usize,
    /// Fastest sample.
    pub min_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median (nearest rank).
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest sample.
    pub max_us: f64,
}

impl Latency {
    /// Summarizes `samples` (sorted in place). Empty input gives all zeros.
    pub fn from_samples(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let total: Duration = samples.iter().sum();
        Latency {
            samples: samples.len(),
            min_us: us(samples[0]),
            mean_us: us(total) / samples.len() as f64,
            p50_us: us(percentile(samples, 0.50)),
            p90_us: us(percentile(samples, 0.90)),
            p99_us: us(percentile(samples, 0.99)),
            p999_us: us(percentile(samples, 0.999)),
            max_us: us(samples[samples.len() - 1]),
        }
    }
}

/// Nearest-rank percentile of sorted, non-empty `sorted`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median of `values` (mean of the two middle ones for an even count); 0 if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Largest of `values`; 0 if empty.
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let l = Latency::from_samples(&mut s);
        assert_eq!(l.samples, 100);
        assert!((l.p50_us - 50.0).abs() < 1e-9);
        assert!((l.p99_us - 99.0).abs() < 1e-9);
        assert!((l.min_us - 1.0).abs() < 1e-9);
        assert!((l.max_us - 100.0).abs() < 1e-9);
        assert!((l.mean_us - 50.5).abs() < 1e-9);
        assert_eq!(Latency::from_samples(&mut []).samples, 0);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
