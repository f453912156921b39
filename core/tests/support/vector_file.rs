//! The vector files of `spec/vectors/`: where they are, checking that a test's freshly built
//! vectors equal the stored file (or writing it, with `VSERV_WRITE_VECTORS=1`), hex fields,
//! and a generator that replays fixed bytes so seeded constructions come out exactly.

use std::convert::Infallible;
use std::path::PathBuf;

use serde_json::Value;

/// `spec/vectors/NAME`.
pub fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../spec/vectors")
        .join(name)
}

/// Fails unless `spec/vectors/NAME` holds exactly `built` (pretty JSON and a newline); with
/// `VSERV_WRITE_VECTORS=1`, writes it first.
pub fn check_or_write(name: &str, built: &Value) {
    let path = vector_path(name);
    let text = serde_json::to_string_pretty(built).expect("json") + "\n";
    if std::env::var("VSERV_WRITE_VECTORS").as_deref() == Ok("1") {
        std::fs::write(&path, &text).expect("write the vector file");
    }
    let stored = std::fs::read_to_string(&path).expect("read the vector file");
    assert_eq!(
        stored, text,
        "spec/vectors/{name} differs from what the code produces \
         (regenerate with VSERV_WRITE_VECTORS=1 if the change is intended)"
    );
}

/// The parsed `spec/vectors/NAME`.
pub fn read_vectors(name: &str) -> Value {
    let stored = std::fs::read_to_string(vector_path(name)).expect("read the vector file");
    serde_json::from_str(&stored).expect("json")
}

/// The bytes of a hex string field.
pub fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

/// `n` bytes counting up from `byte` (wrapping).
pub fn fill(byte: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| byte.wrapping_add(i as u8)).collect()
}

/// Hands out fixed bytes, in order, and panics when they run out.
pub struct Replay(pub Vec<u8>);

impl rand_core::TryRng for Replay {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert!(dst.len() <= self.0.len(), "replay RNG exhausted");
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Replay {}
