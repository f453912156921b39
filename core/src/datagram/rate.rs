//! Per-address rate limiting of datagram answers (spec/datagrams.md §6): one token bucket
//! per source address, in a table of bounded size. When the table is full, addresses whose
//! bucket has refilled are forgotten (they are indistinguishable from new ones); if it is
//! still full, new addresses share one overflow bucket, so flooding from many forged
//! addresses can neither grow the memory nor reset a victim's bucket. Pure: the caller
//! passes the time in milliseconds; keys are any ordered type (the service uses IP addresses).

use std::collections::BTreeMap;

/// The limits of a [`RateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    /// Datagrams answered per second per address, sustained.
    pub per_second: u32,
    /// Datagrams answered in a burst (the bucket's size).
    pub burst: u32,
    /// Addresses tracked at most.
    pub max_addresses: usize,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            per_second: 50,
            burst: 100,
            max_addresses: 4096,
        }
    }
}

/// A token bucket: tokens in thousandths, refilled with time.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli_tokens: u64,
    at_ms: u64,
}

impl Bucket {
    fn refill(&mut self, settings: &RateSettings, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let full = u64::from(settings.burst) * 1000;
        let added = elapsed.saturating_mul(u64::from(settings.per_second));
        self.milli_tokens = self.milli_tokens.saturating_add(added).min(full);
        self.at_ms = self.at_ms.max(now_ms);
    }

    fn take(&mut self, settings: &RateSettings, now_ms: u64) -> bool {
        self.refill(settings, now_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    fn is_full(&self, settings: &RateSettings, now_ms: u64) -> bool {
        let mut b = *self;
        b.refill(settings, now_ms);
        b.milli_tokens >= u64::from(settings.burst) * 1000
    }
}

/// Token buckets per address, bounded in number.
#[derive(Debug, Clone)]
pub struct RateLimiter<K: Ord + Clone> {
    settings: RateSettings,
    buckets: BTreeMap<K, Bucket>,
    overflow: Bucket,
}

impl<K: Ord + Clone> RateLimiter<K> {
    /// An empty limiter (every address starts with a full bucket).
    pub fn new(settings: RateSettings) -> RateLimiter<K> {
        let full = Bucket {
            milli_tokens: u64::from(settings.burst) * 1000,
            at_ms: 0,
        };
        RateLimiter {
            settings,
            buckets: BTreeMap::new(),
            overflow: full,
        }
    }

    /// The number of addresses tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Takes one token for `key` at `now_ms`: `true` if it may be answered.
    pub fn allow(&mut self, key: &K, now_ms: u64) -> bool {
        let settings = self.settings;
        if let Some(bucket) = self.buckets.get_mut(key) {
            return bucket.take(&settings, now_ms);
        }
        if self.buckets.len() >= settings.max_addresses {
            self.buckets.retain(|_, b| !b.is_full(&settings, now_ms));
        }
        if self.buckets.len() >= settings.max_addresses {
            return self.overflow.take(&settings, now_ms);
        }
        let mut bucket = Bucket {
            milli_tokens: u64::from(settings.burst) * 1000,
            at_ms: now_ms,
        };
        let allowed = bucket.take(&settings, now_ms);
        self.buckets.insert(key.clone(), bucket);
        allowed
    }
}
