//! The store's one use of OS randomness: the random id a fresh database is stamped with.
//! Private to this crate; runtimes take their RNG from `vserv_service::system::os_rng`.

use rand::SeedableRng;
use rand::rngs::{StdRng, SysRng};
use rand_core::Rng;

/// Fills `bytes` from a CSPRNG seeded from the OS; fails only when the OS has no
/// randomness to give.
pub(crate) fn fill_from_os(bytes: &mut [u8]) -> std::io::Result<()> {
    let mut rng = StdRng::try_from_rng(&mut SysRng).map_err(std::io::Error::other)?;
    rng.fill_bytes(bytes);
    Ok(())
}
