//! Randomness from the operating system, for the real runtimes (the core only ever sees an
//! injected RNG; the simulator injects seeded ones).

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use rand_core::CryptoRng;

/// A ChaCha-based CSPRNG seeded from the OS, boxed the way `Connection` takes it.
pub fn os_rng() -> std::io::Result<Box<dyn CryptoRng + Send>> {
    let rng = StdRng::try_from_rng(&mut SysRng).map_err(std::io::Error::other)?;
    Ok(Box::new(rng))
}
