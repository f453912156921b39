//! What the real runtimes take from the operating system: the wall clock and randomness.
//!
//! The core and the service's logic never call these themselves; the drivers pass `now` and
//! an RNG in. The simulator replaces both with a virtual clock and seeded RNGs.

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use rand_core::CryptoRng;

/// The wall clock in Unix seconds (0 if the clock is before 1970), for account timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The wall clock in Unix milliseconds (0 if the clock is before 1970), for ledger
/// timestamps and [`crate::Service::drive`].
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A ChaCha-based CSPRNG seeded from the OS, boxed the way `Connection` takes it. Fails only
/// when the OS has no randomness to give.
pub fn os_rng() -> std::io::Result<Box<dyn CryptoRng + Send>> {
    let rng = StdRng::try_from_rng(&mut SysRng).map_err(std::io::Error::other)?;
    Ok(Box::new(rng))
}
