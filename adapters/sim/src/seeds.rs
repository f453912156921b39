//! Seeds: taken from `VSERV_SIM_SEED` when set (to replay a failure), else a fixed list.

use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The environment variable that selects the one seed to run.
pub const SEED_VAR: &str = "VSERV_SIM_SEED";

/// `VSERV_SIM_SEED` could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{SEED_VAR}={0:?} is not a seed (a decimal or 0x-prefixed hexadecimal u64)")]
pub struct BadSeed(pub String);

/// Parses a seed: decimal, or hexadecimal with a `0x` prefix.
pub fn parse_seed(text: &str) -> Result<u64, BadSeed> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| BadSeed(text.to_owned()))
}

/// The seed from `VSERV_SIM_SEED`, if set.
pub fn env_seed() -> Result<Option<u64>, BadSeed> {
    match std::env::var(SEED_VAR) {
        Ok(text) => parse_seed(&text).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(t)) => Err(BadSeed(t.to_string_lossy().into_owned())),
    }
}

/// The seeds to run: the one from `VSERV_SIM_SEED` if set, else `defaults`.
pub fn seeds(defaults: impl IntoIterator<Item = u64>) -> Result<Vec<u64>, BadSeed> {
    Ok(match env_seed()? {
        Some(seed) => vec![seed],
        None => defaults.into_iter().collect(),
    })
}

/// A seed whose run failed, with the reason; its message says how to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFailure {
    /// The failing seed (`None` when `VSERV_SIM_SEED` itself was unusable).
    pub seed: Option<u64>,
    /// What went wrong (an invariant violation or a panic message).
    pub message: String,
}

impl Display for SeedFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seed {
            Some(seed) => write!(
                f,
                "simulation failed with seed {seed}; replay with {SEED_VAR}={seed}\n{}",
                self.message
            ),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for SeedFailure {}

/// Runs `scenario` for every seed of [`seeds`]`(defaults)`, stopping at the first failure.
/// A panic inside the scenario is caught and reported as a failure of that seed. Returns the
/// number of seeds run.
pub fn for_each_seed<E: Display>(
    defaults: impl IntoIterator<Item = u64>,
    mut scenario: impl FnMut(u64) -> Result<(), E>,
) -> Result<usize, SeedFailure> {
    let list = seeds(defaults).map_err(|e| SeedFailure {
        seed: None,
        message: e.to_string(),
    })?;
    for &seed in &list {
        let message = match catch_unwind(AssertUnwindSafe(|| scenario(seed))) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => match panic.downcast::<String>() {
                Ok(s) => format!("panicked: {s}"),
                Err(panic) => match panic.downcast::<&'static str>() {
                    Ok(s) => format!("panicked: {s}"),
                    Err(_) => "panicked".to_owned(),
                },
            },
        };
        return Err(SeedFailure {
            seed: Some(seed),
            message,
        });
    }
    Ok(list.len())
}
