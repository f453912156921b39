//! Integration tests of vserv-store against real temporary directories.

#[path = "store/identity.rs"]
mod identity;
#[path = "store/known_servers.rs"]
mod known_servers;
#[path = "store/trust.rs"]
mod trust;

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use vserv_core::{ServerIdentity, ServerKey};

/// Boxed error so tests can use `?`.
type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A deterministic splitmix64 generator. Not cryptographically secure: tests only.
struct TestRng(u64);

impl rand_core::TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for TestRng {}

/// A valid server key derived from `seed`.
fn key(seed: u8) -> ServerKey {
    ServerIdentity::generate(&mut TestRng(u64::from(seed))).public_key()
}

/// Permission bits of `path`.
fn mode(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}
