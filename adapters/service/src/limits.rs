//! Abuse limits: login backoff (per user, persisted; per peer IP, in memory), the per-IP
//! connection rate limit of the accept loops, and the bounds of `tout`.
//!
//! Time is always passed in as `now`, Unix seconds (the same clock `Service::drive` gets), so
//! everything here is deterministic and testable without waiting.
//!
//! # Login backoff
//!
//! After `n` consecutive failed logins, further attempts are refused for
//! `min(base · 2^(n−1), cap)` seconds after the last failure, *without* checking the
//! credential (no argon2 run) — by default `base` = 1 s and `cap` = 900 s (15 min): 1 s, 2 s,
//! 4 s, … 512 s, then 900 s from the 11th failure on ([`LoginBackoff::DEFAULT`]). A refused
//! attempt is answered `LoginFailed` ("too many failed attempts; retry in N s"), counts
//! toward the connection's [`crate::MAX_FAILED_LOGINS`], and does not itself extend the
//! backoff. Whole seconds: a failure at 10.9 s and a 1 s delay allow the next try at 11.0 s.
//!
//! Two counters are consulted; the longer wait wins:
//!
//! - **Per user** (the normalised name). A success resets it; it is also forgotten after
//!   [`LoginBackoff::user_forget_secs`] (24 h) without a failure. For a name that *exists*,
//!   the counter is stored in [`Table::Limits`] under `u:<normalised name>` (value: failures
//!   `u32` then last failure `u64` Unix seconds, both big-endian), so a restart does not reset
//!   it. For a name that does *not* exist it is kept in memory only (at most
//!   [`MAX_TRACKED_NAMES`] names, oldest evicted): storing every junk name an attacker tries
//!   would let them fill the disk. Both cases cost the same: one read of `u:<name>` before
//!   the check and one durable commit after a failure (a `Put` of the counter for an
//!   existing user, a `Delete` of the same key for an unknown name), so neither the answer
//!   nor its timing tells whether the user exists. (After a restart an unknown name's
//!   counter is gone while an existing user's is not; telling them apart that way needs an
//!   observed restart and still runs into the per-IP backoff.) Names that are not valid user
//!   names cannot exist and have no per-user counter.
//! - **Per peer IP**, in memory only (a restart resets it; at most [`MAX_TRACKED_IPS`]
//!   addresses, oldest evicted). Many users can share an address (NAT), so the first
//!   [`LoginBackoff::ip_free_failures`] (10) failures are free; after `n` failures the wait
//!   is `min(base · 2^(n−11), cap)`. A success does *not* reset it (an attacker's own account
//!   must not launder their address); it is forgotten after [`LoginBackoff::ip_forget_secs`]
//!   (1 h) without a failure from that address.
//!
//! Attempts in progress count as failures at `now` while they run, so opening many
//! connections and sending the same user's login on all at once does not get one argon2
//! check per connection: for a user with recorded failures only one attempt runs at a time;
//! for one without, at most [`MAX_PARALLEL_LOGINS_PER_USER`] (so a script running a few
//! commands in parallel under one account is not refused); for an address, running
//! attempts count against its free failures.
//!
//! # Connection rate
//!
//! [`ConnectionLimiter`]: at most `connections` new connections per peer IP per fixed window
//! of `window_secs` seconds (the window starts with the first connection after the previous
//! one ended); beyond that the accept loop refuses with the plaintext `Busy` refusal, whose
//! retry hint ([`ConnectionLimiter::admit_or_wait`]) is the time left in the window. Refused
//! connections are not counted. Default ([`Policy::default`]): 30 per 10 s.
//!
//! # Unauthenticated sessions
//!
//! [`UnauthenticatedSlots`]: at most [`Policy::max_unauthenticated_per_ip`] connections
//! from one peer address that have not logged in (sshd's `MaxStartups`, per address),
//! counted from accept, through the handshake, until the session's first successful login
//! (a logout takes a slot again). The runtimes refuse a connection beyond it with the
//! plaintext `Busy` refusal; sessions already connected, and other addresses, are served
//! as before. Default: 10. Together with the login grace time (`vserv_core::Config::
//! login_grace`) this bounds what one address can hold without credentials.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vserv_core::CloseCode;
use vserv_core::session::refusal_with;
use vserv_core::wire::{RefusedLimit, RetryHint};
use vserv_store::kv::{Op, Store, StoreError, Table};

use crate::accounts::UserName;

/// The retry hint sent with a refusal at the connection limit or the unauthenticated-session
/// limit, in seconds: those free up as other sessions end or log in, not on a schedule.
pub const BUSY_RETRY_SECS: u64 = 2;

/// The plaintext `Busy` Refuse frame for a connection refused at `limit`, with the hint to
/// retry after `retry_after_secs` (spec/protocol.md §4.3).
pub fn busy_refusal(limit: RefusedLimit, retry_after_secs: u64) -> Vec<u8> {
    refusal_with(
        CloseCode::Busy,
        RetryHint {
            limit,
            retry_after_secs: u32::try_from(retry_after_secs).unwrap_or(u32::MAX),
        },
    )
}

/// Most logins for one user (without recorded failures) checked at the same time.
pub const MAX_PARALLEL_LOGINS_PER_USER: u32 = 4;

/// Most unknown user names whose login failures are remembered in memory.
pub const MAX_TRACKED_NAMES: usize = 10_000;
/// Most peer addresses whose login failures, or recent connections, are remembered.
pub const MAX_TRACKED_IPS: usize = 65_536;

/// The login backoff schedule (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBackoff {
    /// Wait after the first counted failure, in seconds (doubles with each further one);
    /// 0 disables the backoff (tests only).
    pub base_secs: u64,
    /// Longest wait, in seconds.
    pub cap_secs: u64,
    /// Failures from one peer address before its backoff starts.
    pub ip_free_failures: u32,
    /// A user's counter is forgotten this long after their last failure.
    pub user_forget_secs: u64,
    /// An address's counter is forgotten this long after its last failure.
    pub ip_forget_secs: u64,
}

impl LoginBackoff {
    /// The documented defaults: 1 s doubling to 15 min; 10 free failures per address;
    /// counters forgotten after 24 h (user) or 1 h (address) without failure.
    pub const DEFAULT: LoginBackoff = LoginBackoff {
        base_secs: 1,
        cap_secs: 900,
        ip_free_failures: 10,
        user_forget_secs: 86_400,
        ip_forget_secs: 3_600,
    };

    /// The wait after `counted` failures beyond the free ones: 0 for none, else
    /// `min(base · 2^(counted−1), cap)`.
    pub fn delay(&self, counted: u32) -> u64 {
        if counted == 0 {
            return 0;
        }
        let doublings = (counted - 1).min(63);
        self.base_secs
            .saturating_mul(1u64 << doublings)
            .min(self.cap_secs)
    }

    /// Seconds still to wait at `now`, given a counter, attempts in progress (counted as
    /// failures now if there are recorded failures or at least `parallel` of them), the free
    /// failures and the forget period.
    fn wait(
        &self,
        counter: Option<Counter>,
        running: u32,
        parallel: u32,
        free: u32,
        forget: u64,
        now: u64,
    ) -> u64 {
        let (mut failures, mut last) = match counter {
            Some(c) if now < c.last.saturating_add(forget) => (c.failures, c.last),
            _ => (0, 0),
        };
        if running > 0 && (failures > 0 || running >= parallel) {
            failures = failures.saturating_add(running);
            last = last.max(now);
        }
        let delay = self.delay(failures.saturating_sub(free));
        // A clock that went backwards never makes the wait longer than one delay.
        last.saturating_add(delay).saturating_sub(now).min(delay)
    }
}

impl Default for LoginBackoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// At most `connections` new connections per peer IP per `window_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Connections allowed per window (at least 1).
    pub connections: u32,
    /// Window length in seconds (at least 1).
    pub window_secs: u64,
}

impl RateLimit {
    /// The documented default: 30 connections per IP per 10 s.
    pub const DEFAULT: RateLimit = RateLimit {
        connections: 30,
        window_secs: 10,
    };
}

/// The service's abuse limits and session bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Login backoff.
    pub login: LoginBackoff,
    /// Per-IP connection rate limit applied by the accept loops; `None` for none.
    pub connection_rate: Option<RateLimit>,
    /// Shortest idle timeout `tout` accepts.
    pub idle_timeout_min: Duration,
    /// Longest idle timeout `tout` accepts.
    pub idle_timeout_max: Duration,
    /// Most connections from one peer address that have not logged in, at once
    /// ([`UnauthenticatedSlots`]); `None` for no limit.
    pub max_unauthenticated_per_ip: Option<usize>,
}

impl Default for Policy {
    /// [`LoginBackoff::DEFAULT`], [`RateLimit::DEFAULT`], `tout` between 10 s and 1 h, at
    /// most [`DEFAULT_MAX_UNAUTHENTICATED_PER_IP`] unauthenticated sessions per address.
    fn default() -> Self {
        Policy {
            login: LoginBackoff::DEFAULT,
            connection_rate: Some(RateLimit::DEFAULT),
            idle_timeout_min: Duration::from_secs(10),
            idle_timeout_max: Duration::from_secs(3_600),
            max_unauthenticated_per_ip: Some(DEFAULT_MAX_UNAUTHENTICATED_PER_IP),
        }
    }
}

/// The default of [`Policy::max_unauthenticated_per_ip`].
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_IP: usize = 10;

/// The unauthenticated sessions of every peer address, shared by a server's connections
/// (see the [module docs](self)). A slot is held by an [`UnauthenticatedSlot`] and given
/// back when that is dropped, so a connection that ends for any reason frees its slot.
#[derive(Debug)]
pub struct UnauthenticatedSlots {
    max: Option<usize>,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl UnauthenticatedSlots {
    /// Slots for at most `max` unauthenticated sessions per address (`None`: unlimited,
    /// still counted).
    pub fn new(max: Option<usize>) -> Arc<UnauthenticatedSlots> {
        Arc::new(UnauthenticatedSlots {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn held(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more unauthenticated session from `peer`, or `None` if that address
    /// already holds the most allowed.
    pub fn take(self: &Arc<Self>, peer: IpAddr) -> Option<UnauthenticatedSlot> {
        let mut held = self.held();
        let count = held.entry(peer).or_insert(0);
        if self.max.is_some_and(|max| *count >= max) {
            if *count == 0 {
                held.remove(&peer);
            }
            return None;
        }
        *count += 1;
        Some(UnauthenticatedSlot {
            slots: self.clone(),
            peer,
        })
    }

    /// Unauthenticated sessions of every address now.
    pub fn total(&self) -> usize {
        self.held().values().sum()
    }

    /// Unauthenticated sessions `peer` holds now.
    pub fn held_by(&self, peer: IpAddr) -> usize {
        self.held().get(&peer).copied().unwrap_or(0)
    }
}

/// One unauthenticated session's slot ([`UnauthenticatedSlots::take`]); dropping it gives
/// the slot back.
#[derive(Debug)]
pub struct UnauthenticatedSlot {
    slots: Arc<UnauthenticatedSlots>,
    peer: IpAddr,
}

impl Drop for UnauthenticatedSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held();
        if let Some(count) = held.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

/// Failures counted so far and when the last one happened (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Consecutive failures.
    pub failures: u32,
    /// Time of the last failure.
    pub last: u64,
}

impl Counter {
    /// The stored form: `failures: u32 BE || last: u64 BE`.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(12);
        v.extend_from_slice(&self.failures.to_be_bytes());
        v.extend_from_slice(&self.last.to_be_bytes());
        v
    }

    /// Parses the stored form.
    pub fn decode(bytes: &[u8]) -> Option<Counter> {
        let (f, l) = bytes.split_at_checked(4)?;
        Some(Counter {
            failures: u32::from_be_bytes(f.try_into().ok()?),
            last: u64::from_be_bytes(l.try_into().ok()?),
        })
    }

    fn bump(current: Option<Counter>, forget: u64, now: u64) -> Counter {
        let failures = match current {
            Some(c) if now < c.last.saturating_add(forget) => c.failures.saturating_add(1),
            _ => 1,
        };
        Counter {
            failures,
            last: now,
        }
    }
}

/// The `Table::Limits` key of a user's counter.
pub fn user_key(name: &UserName) -> Vec<u8> {
    format!("u:{name}").into_bytes()
}

/// In-memory state of the login limiter.
#[derive(Default)]
struct Memory {
    /// Counters of names that did not exist when they failed.
    unknown: HashMap<String, Counter>,
    /// Counters of existing users whose last update could not be stored (a full disk): they
    /// apply until one is stored, so a failing store never lifts a backoff.
    unsaved: HashMap<String, Counter>,
    /// Counters of peer addresses.
    ips: HashMap<IpAddr, Counter>,
    /// Attempts in progress, per name and per address.
    running_users: HashMap<String, u32>,
    running_ips: HashMap<IpAddr, u32>,
}

/// Inserts into a bounded map: when full, drops forgotten entries, then the oldest.
fn insert_bounded<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Counter>,
    key: K,
    value: Counter,
    max: usize,
    forget: u64,
    now: u64,
) {
    if map.len() >= max && !map.contains_key(&key) {
        map.retain(|_, c| now < c.last.saturating_add(forget));
        if map.len() >= max
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, c)| c.last)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    map.insert(key, value);
}

/// Login backoff state: per-user counters in the store (existing users) or in memory
/// (unknown names), per-address counters in memory. Shared by every connection of a server.
pub struct LoginLimiter {
    store: Arc<dyn Store>,
    backoff: LoginBackoff,
    memory: Mutex<Memory>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// Whether a login attempt may check its credential.
#[derive(Debug)]
pub enum Gate {
    /// Go ahead; report the outcome on the attempt.
    Open(Attempt),
    /// Refused without checking; retry after this many seconds.
    Wait(u64),
}

impl LoginLimiter {
    /// A limiter keeping user counters in `store`.
    pub fn new(store: Arc<dyn Store>, backoff: LoginBackoff) -> Arc<LoginLimiter> {
        Arc::new(LoginLimiter {
            store,
            backoff,
            memory: Mutex::new(Memory::default()),
        })
    }

    /// The schedule in use.
    pub fn backoff(&self) -> &LoginBackoff {
        &self.backoff
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored counter of `name` (a corrupt value counts as none, and is logged).
    pub fn stored(&self, name: &UserName) -> Result<Option<Counter>, StoreError> {
        let Some(bytes) = self.store.get(Table::Limits, &user_key(name))? else {
            return Ok(None);
        };
        let counter = Counter::decode(&bytes);
        if counter.is_none() {
            tracing::warn!(user = %name, "corrupt login backoff record ignored");
        }
        Ok(counter)
    }

    /// Decides whether a login for `user` (its normalised name, `None` if the name is
    /// invalid) from `ip` may be checked at `now`. An open gate reserves the attempt until
    /// the returned [`Attempt`] is resolved or dropped.
    pub fn begin(
        self: &Arc<Self>,
        user: Option<&UserName>,
        ip: Option<IpAddr>,
        now: u64,
    ) -> Result<Gate, StoreError> {
        let stored = match user {
            Some(name) => self.stored(name)?,
            None => None,
        };
        let b = &self.backoff;
        let mut memory = self.memory();
        let mut wait = 0;
        if let Some(name) = user {
            let counter = memory
                .unsaved
                .get(name.as_str())
                .copied()
                .or(stored)
                .or_else(|| memory.unknown.get(name.as_str()).copied());
            let running = memory
                .running_users
                .get(name.as_str())
                .copied()
                .unwrap_or(0);
            wait = b.wait(
                counter,
                running,
                MAX_PARALLEL_LOGINS_PER_USER,
                0,
                b.user_forget_secs,
                now,
            );
        }
        if let Some(ip) = ip {
            let counter = memory.ips.get(&ip).copied();
            let running = memory.running_ips.get(&ip).copied().unwrap_or(0);
            let ip_wait = b.wait(
                counter,
                running,
                0,
                b.ip_free_failures,
                b.ip_forget_secs,
                now,
            );
            wait = wait.max(ip_wait);
        }
        if wait > 0 {
            return Ok(Gate::Wait(wait));
        }
        let user = user.cloned();
        if let Some(name) = &user {
            *memory
                .running_users
                .entry(name.as_str().to_owned())
                .or_default() += 1;
        }
        if let Some(ip) = ip {
            *memory.running_ips.entry(ip).or_default() += 1;
        }
        Ok(Gate::Open(Attempt {
            limiter: self.clone(),
            user,
            ip,
            stored,
        }))
    }

    /// Forgets every in-memory counter (unknown names, unsaved counters and addresses), as a
    /// restart would.
    pub fn forget_memory(&self) {
        let mut memory = self.memory();
        memory.unknown.clear();
        memory.unsaved.clear();
        memory.ips.clear();
    }
}

/// A login attempt allowed by [`LoginLimiter::begin`]; report how it ended. Dropping it
/// unresolved (e.g. the store failed) counts nothing.
#[derive(Debug)]
pub struct Attempt {
    limiter: Arc<LoginLimiter>,
    user: Option<UserName>,
    ip: Option<IpAddr>,
    stored: Option<Counter>,
}

impl Attempt {
    /// The credential was right: the user's counter is reset (the address's is kept). If the
    /// reset cannot be stored, the stored counter keeps applying (closed, never open).
    pub fn succeeded(self) {
        if let Some(name) = &self.user {
            let unsaved = {
                let mut memory = self.limiter.memory();
                memory.unknown.remove(name.as_str());
                memory.unsaved.remove(name.as_str())
            };
            if self.stored.is_some() || unsaved.is_some() {
                let op = Op::Delete {
                    table: Table::Limits,
                    key: user_key(name),
                };
                if let Err(e) = self.limiter.store.commit(vec![op]) {
                    tracing::warn!(user = %name, error = %e, "could not reset the login backoff");
                }
            }
        }
    }

    /// The credential was wrong (or the user unknown or disabled). `exists`: whether a user
    /// of this name exists, which decides where its counter lives. Both branches make one
    /// durable commit, so they take the same time.
    pub fn failed(self, exists: bool, now: u64) {
        let limiter = &self.limiter;
        let b = limiter.backoff;
        if let Some(name) = &self.user {
            let key = user_key(name);
            let (unsaved, unknown) = {
                let memory = limiter.memory();
                (
                    memory.unsaved.get(name.as_str()).copied(),
                    memory.unknown.get(name.as_str()).copied(),
                )
            };
            let previous = unsaved.or(self.stored).or(unknown);
            let counter = Counter::bump(previous, b.user_forget_secs, now);
            let op = if exists {
                limiter.memory().unknown.remove(name.as_str());
                Op::Put {
                    table: Table::Limits,
                    key,
                    value: counter.encode(),
                }
            } else {
                insert_bounded(
                    &mut limiter.memory().unknown,
                    name.as_str().to_owned(),
                    counter,
                    MAX_TRACKED_NAMES,
                    b.user_forget_secs,
                    now,
                );
                Op::Delete {
                    table: Table::Limits,
                    key,
                }
            };
            let saved = limiter.store.commit(vec![op]);
            let mut memory = limiter.memory();
            match saved {
                Ok(()) => {
                    memory.unsaved.remove(name.as_str());
                }
                Err(e) => {
                    // Fail closed: the failure counts from memory until it can be stored.
                    tracing::warn!(user = %name, error = %e,
                        "could not store the login backoff; it applies from memory");
                    if exists {
                        insert_bounded(
                            &mut memory.unsaved,
                            name.as_str().to_owned(),
                            counter,
                            MAX_TRACKED_NAMES,
                            b.user_forget_secs,
                            now,
                        );
                    }
                }
            }
        }
        if let Some(ip) = self.ip {
            let mut memory = limiter.memory();
            let counter = Counter::bump(memory.ips.get(&ip).copied(), b.ip_forget_secs, now);
            insert_bounded(
                &mut memory.ips,
                ip,
                counter,
                MAX_TRACKED_IPS,
                b.ip_forget_secs,
                now,
            );
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let mut memory = self.limiter.memory();
        if let Some(name) = &self.user
            && let Some(n) = memory.running_users.get_mut(name.as_str())
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                memory.running_users.remove(name.as_str());
            }
        }
        if let Some(ip) = self.ip
            && let Some(n) = memory.running_ips.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                memory.running_ips.remove(&ip);
            }
        }
    }
}

/// The per-IP connection rate limiter of an accept loop: a small pure state machine, fed
/// the time (see the [module docs](self)). Not shared: each accept loop owns one.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    limit: RateLimit,
    /// Per address: start of its current window and connections admitted in it.
    windows: HashMap<IpAddr, (u64, u32)>,
}

impl ConnectionLimiter {
    /// A limiter enforcing `limit` (zero connections or a zero window count as 1).
    pub fn new(limit: RateLimit) -> Self {
        ConnectionLimiter {
            limit: RateLimit {
                connections: limit.connections.max(1),
                window_secs: limit.window_secs.max(1),
            },
            windows: HashMap::new(),
        }
    }

    /// Whether a new connection from `ip` at `now` is admitted (and counts it if so).
    pub fn admit(&mut self, ip: IpAddr, now: u64) -> bool {
        self.admit_or_wait(ip, now).is_ok()
    }

    /// Admits (and counts) a new connection from `ip` at `now`, or says how many seconds
    /// remain (at least 1) until the address's window ends and it is admitted again.
    pub fn admit_or_wait(&mut self, ip: IpAddr, now: u64) -> Result<(), u64> {
        let window = self.limit.window_secs;
        if self.windows.len() >= MAX_TRACKED_IPS && !self.windows.contains_key(&ip) {
            self.windows
                .retain(|_, (start, _)| now < start.saturating_add(window));
            if self.windows.len() >= MAX_TRACKED_IPS
                && let Some(oldest) = self
                    .windows
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(k, _)| *k)
            {
                self.windows.remove(&oldest);
            }
        }
        let entry = self.windows.entry(ip).or_insert((now, 0));
        // A window that has ended (or a clock that went backwards) starts a new one.
        if now >= entry.0.saturating_add(window) || now < entry.0 {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit.connections {
            return Err(entry.0.saturating_add(window).saturating_sub(now).max(1));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unauthenticated_slots_cap_each_address_and_come_back_when_dropped() {
        let slots = UnauthenticatedSlots::new(Some(2));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = slots.take(a).unwrap();
        let second = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "a third slot for the same address");
        let other = slots.take(b).unwrap();
        assert_eq!((slots.held_by(a), slots.held_by(b)), (2, 1));
        drop(first);
        let third = slots.take(a).unwrap();
        drop((second, third, other));
        assert_eq!((slots.held_by(a), slots.held_by(b)), (0, 0));
        assert!(slots.held().is_empty(), "released addresses are forgotten");
        let unlimited = UnauthenticatedSlots::new(None);
        let many: Vec<_> = (0..100).map(|_| unlimited.take(a).unwrap()).collect();
        assert_eq!(unlimited.held_by(a), 100);
        drop(many);
    }

    use super::*;
    use vserv_store::memory::MemoryStore;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let b = LoginBackoff::DEFAULT;
        let delays: Vec<u64> = (0..13).map(|n| b.delay(n)).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
        assert_eq!(b.delay(u32::MAX), 900);
        let huge = LoginBackoff {
            base_secs: u64::MAX,
            cap_secs: u64::MAX,
            ..b
        };
        assert_eq!(huge.delay(70), u64::MAX);
    }

    #[test]
    fn rate_limit_refuses_the_n_plus_first_then_allows_again() {
        let mut l = ConnectionLimiter::new(RateLimit {
            connections: 3,
            window_secs: 10,
        });
        assert!((0..3).all(|_| l.admit(IP, 100)));
        assert!(!l.admit(IP, 100), "4th in the window");
        assert!(!l.admit(IP, 109), "still the same window");
        assert!(l.admit(OTHER, 109), "other addresses are independent");
        assert!(l.admit(IP, 110), "a new window");
        assert!(l.admit(IP, 111) && l.admit(IP, 112));
        assert!(!l.admit(IP, 113));
        // A clock that jumps back starts a fresh window instead of locking out.
        assert!(l.admit(IP, 50));
    }

    #[test]
    fn a_refused_connection_learns_when_its_window_ends() {
        let mut l = ConnectionLimiter::new(RateLimit {
            connections: 2,
            window_secs: 10,
        });
        assert_eq!(l.admit_or_wait(IP, 100), Ok(()));
        assert_eq!(l.admit_or_wait(IP, 103), Ok(()));
        assert_eq!(l.admit_or_wait(IP, 103), Err(7));
        assert_eq!(l.admit_or_wait(IP, 109), Err(1));
        assert_eq!(l.admit_or_wait(IP, 110), Ok(()), "the hinted time admits");
    }

    #[test]
    fn rate_limiter_memory_is_bounded() {
        let mut l = ConnectionLimiter::new(RateLimit {
            connections: 1,
            window_secs: 10,
        });
        for i in 0..(MAX_TRACKED_IPS as u32 + 10) {
            assert!(l.admit(IpAddr::V4(i.into()), 5));
        }
        assert!(l.tracked() <= MAX_TRACKED_IPS);
    }

    fn limiter() -> (Arc<LoginLimiter>, MemoryStore) {
        let store = MemoryStore::new();
        (
            LoginLimiter::new(Arc::new(store.clone()), LoginBackoff::DEFAULT),
            store,
        )
    }

    fn name(s: &str) -> UserName {
        UserName::parse(s).unwrap()
    }

    fn open(g: Gate) -> Attempt {
        match g {
            Gate::Open(a) => a,
            Gate::Wait(w) => panic!("refused for {w} s"),
        }
    }

    #[test]
    fn user_backoff_grows_and_success_resets_it() {
        let (l, store) = limiter();
        let alice = name("alice");
        open(l.begin(Some(&alice), None, 1000).unwrap()).failed(true, 1000);
        assert!(matches!(
            l.begin(Some(&alice), None, 1000).unwrap(),
            Gate::Wait(1)
        ));
        open(l.begin(Some(&alice), None, 1001).unwrap()).failed(true, 1001);
        assert!(matches!(
            l.begin(Some(&alice), None, 1002).unwrap(),
            Gate::Wait(1)
        ));
        open(l.begin(Some(&alice), None, 1003).unwrap()).failed(true, 1003);
        assert!(matches!(
            l.begin(Some(&alice), None, 1003).unwrap(),
            Gate::Wait(4)
        ));
        assert_eq!(
            l.stored(&alice).unwrap(),
            Some(Counter {
                failures: 3,
                last: 1003
            })
        );
        open(l.begin(Some(&alice), None, 1007).unwrap()).succeeded();
        assert_eq!(l.stored(&alice).unwrap(), None);
        assert!(store.contents().unwrap()[&Table::Limits].is_empty());
    }

    #[test]
    fn unknown_names_are_kept_in_memory_and_cost_one_commit() {
        let (l, store) = limiter();
        let ghost = name("ghost");
        let commits = store.commit_count();
        open(l.begin(Some(&ghost), None, 10).unwrap()).failed(false, 10);
        assert_eq!(
            store.commit_count(),
            commits + 1,
            "same work as a known user"
        );
        assert!(store.contents().unwrap()[&Table::Limits].is_empty());
        assert!(matches!(
            l.begin(Some(&ghost), None, 10).unwrap(),
            Gate::Wait(1)
        ));
        l.forget_memory();
        assert!(matches!(
            l.begin(Some(&ghost), None, 10).unwrap(),
            Gate::Open(_)
        ));
    }

    #[test]
    fn a_backoff_that_cannot_be_stored_still_applies() {
        let (l, store) = limiter();
        store.set_disk_full(true);
        let alice = name("alice");
        open(l.begin(Some(&alice), None, 1000).unwrap()).failed(true, 1000);
        assert!(matches!(
            l.begin(Some(&alice), None, 1000).unwrap(),
            Gate::Wait(1)
        ));
        open(l.begin(Some(&alice), None, 1001).unwrap()).failed(true, 1001);
        assert!(matches!(
            l.begin(Some(&alice), None, 1001).unwrap(),
            Gate::Wait(2)
        ));
        assert_eq!(l.stored(&alice).unwrap(), None, "nothing could be stored");
        // Space is back: the next failure stores the whole count.
        store.set_disk_full(false);
        open(l.begin(Some(&alice), None, 1003).unwrap()).failed(true, 1003);
        assert_eq!(
            l.stored(&alice).unwrap(),
            Some(Counter {
                failures: 3,
                last: 1003
            })
        );
        assert!(l.memory().unsaved.is_empty());
        // A success whose reset cannot be stored leaves the stored count in force: the next
        // failure is the fourth, not a first.
        store.set_disk_full(true);
        open(l.begin(Some(&alice), None, 1007).unwrap()).succeeded();
        open(l.begin(Some(&alice), None, 1007).unwrap()).failed(true, 1007);
        assert!(matches!(
            l.begin(Some(&alice), None, 1007).unwrap(),
            Gate::Wait(8)
        ));
    }

    #[test]
    fn junk_names_do_not_grow_memory_without_bound() {
        let (l, _) = limiter();
        for i in 0..(MAX_TRACKED_NAMES + 50) {
            let n = name(&format!("junk{i}"));
            open(l.begin(Some(&n), None, 10).unwrap()).failed(false, 10);
        }
        assert!(l.memory().unknown.len() <= MAX_TRACKED_NAMES);
    }

    #[test]
    fn ip_backoff_starts_after_the_free_failures_and_is_forgotten() {
        let (l, _) = limiter();
        for i in 0..LoginBackoff::DEFAULT.ip_free_failures {
            let n = name(&format!("user{i}"));
            open(l.begin(Some(&n), Some(IP), 10).unwrap()).failed(false, 10);
        }
        let fresh = name("fresh");
        assert!(matches!(
            l.begin(Some(&fresh), Some(IP), 10).unwrap(),
            Gate::Open(_)
        ));
        open(l.begin(Some(&fresh), Some(IP), 10).unwrap()).failed(false, 10);
        let next = name("next");
        assert!(matches!(
            l.begin(Some(&next), Some(IP), 10).unwrap(),
            Gate::Wait(1)
        ));
        assert!(matches!(
            l.begin(Some(&next), Some(OTHER), 10).unwrap(),
            Gate::Open(_)
        ));
        // A success from the address does not reset it.
        open(l.begin(Some(&next), Some(IP), 11).unwrap()).succeeded();
        open(l.begin(Some(&next), Some(IP), 11).unwrap()).failed(true, 11);
        assert!(matches!(
            l.begin(None, Some(IP), 11).unwrap(),
            Gate::Wait(2)
        ));
        // Forgotten after an hour without failures.
        assert!(matches!(
            l.begin(None, Some(IP), 11 + 3600).unwrap(),
            Gate::Open(_)
        ));
    }

    #[test]
    fn concurrent_attempts_for_one_user_are_bounded() {
        let (l, _) = limiter();
        let bob = name("bob");
        let running: Vec<Attempt> = (0..MAX_PARALLEL_LOGINS_PER_USER)
            .map(|_| open(l.begin(Some(&bob), None, 10).unwrap()))
            .collect();
        assert!(matches!(
            l.begin(Some(&bob), None, 10).unwrap(),
            Gate::Wait(_)
        ));
        drop(running);
        // After a recorded failure, only one attempt at a time (once the backoff ends).
        open(l.begin(Some(&bob), None, 10).unwrap()).failed(true, 10);
        let first = open(l.begin(Some(&bob), None, 11).unwrap());
        assert!(matches!(
            l.begin(Some(&bob), None, 11).unwrap(),
            Gate::Wait(_)
        ));
        drop(first);
        assert!(matches!(
            l.begin(Some(&bob), None, 11).unwrap(),
            Gate::Open(_)
        ));
    }

    #[test]
    fn concurrent_attempts_from_one_address_count_against_its_free_failures() {
        let (l, _) = limiter();
        let free = LoginBackoff::DEFAULT.ip_free_failures;
        // As many running as free failures, plus one: the next would exceed them.
        let running: Vec<Attempt> = (0..=free)
            .map(|i| {
                open(
                    l.begin(Some(&name(&format!("u{i}"))), Some(IP), 10)
                        .unwrap(),
                )
            })
            .collect();
        assert!(matches!(
            l.begin(Some(&name("one-more")), Some(IP), 10).unwrap(),
            Gate::Wait(_)
        ));
        drop(running);
        assert!(matches!(
            l.begin(Some(&name("one-more")), Some(IP), 10).unwrap(),
            Gate::Open(_)
        ));
    }

    #[test]
    fn a_clock_going_back_waits_at_most_one_delay() {
        let (l, _) = limiter();
        let carol = name("carol");
        for t in [100, 101, 103, 107, 115] {
            open(l.begin(Some(&carol), None, t).unwrap()).failed(true, t);
        }
        assert!(matches!(
            l.begin(Some(&carol), None, 115).unwrap(),
            Gate::Wait(16)
        ));
        assert!(matches!(
            l.begin(Some(&carol), None, 5).unwrap(),
            Gate::Wait(16)
        ));
    }

    #[test]
    fn counters_round_trip_and_reject_bad_lengths() {
        let c = Counter {
            failures: 7,
            last: 1_700_000_000,
        };
        assert_eq!(Counter::decode(&c.encode()), Some(c));
        assert_eq!(Counter::decode(&[0; 11]), None);
        assert_eq!(Counter::decode(&[0; 13]), None);
    }
}

/// The limits of sealed messages (spec/messages.md §5): a message's size, each recipient's
/// mailbox (messages and bytes kept), and how many messages one sender may send per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// Largest sealed message accepted, in bytes.
    pub max_size: usize,
    /// Most messages a mailbox keeps; a full mailbox refuses new ones.
    pub mailbox_messages: u64,
    /// Most bytes of sealed messages a mailbox keeps.
    pub mailbox_bytes: u64,
    /// Most messages one sender may send per `rate_window_secs` (to anyone).
    pub per_sender: u32,
    /// The sender rate's window, in seconds.
    pub rate_window_secs: u64,
}

impl Default for MessageLimits {
    /// The format's largest message, 1000 messages or 8 MiB per mailbox, 30 messages per
    /// sender per minute.
    fn default() -> Self {
        MessageLimits {
            max_size: vserv_core::messages::MAX_SEALED_MESSAGE,
            mailbox_messages: 1000,
            mailbox_bytes: 8 * 1024 * 1024,
            per_sender: 30,
            rate_window_secs: 60,
        }
    }
}
