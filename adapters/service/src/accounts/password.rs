//! Password hashing: argon2id (RFC 9106), stored as a PHC string that carries its own
//! parameters, so stronger parameters can be adopted without invalidating stored hashes.
//!
//! Default parameters (the OWASP recommendation for argon2id): memory 19 MiB
//! (`m = 19456` KiB), `t = 2` passes, `p = 1` lane, 16-byte random salt, 32-byte output. One
//! check costs a few tens of milliseconds on the reference 2-core machine
//! (`vserv bench login` measures it).
//!
//! [`hash`] and [`verify`] work in caller-owned memory (a slot of the
//! [check pool](super::checks)) instead of allocating 19 MiB per check, and compare the
//! computed hash in constant time.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Params, Version};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::checks::{CheckMemory, NoMemory};

/// Shortest password accepted, in bytes.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted, in bytes (argon2 accepts more; this bounds the work per try).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// argon2id cost parameters used for new hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory, in KiB.
    pub m_cost_kib: u32,
    /// Passes over memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl PasswordParams {
    /// The documented production parameters.
    pub const DEFAULT: PasswordParams = PasswordParams {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    /// The cheapest legal parameters, for tests and simulations only (insecure).
    pub const INSECURE_FAST: PasswordParams = PasswordParams {
        m_cost_kib: 8,
        t_cost: 1,
        p_cost: 1,
    };

    fn argon2(self) -> Result<Params, PasswordError> {
        Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(OUTPUT_LEN))
            .map_err(|_| PasswordError::BadParams)
    }
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a password could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short.
    #[error("a password needs at least {MIN_PASSWORD_LEN} bytes")]
    TooShort,
    /// Too long.
    #[error("a password has at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    /// The configured argon2 parameters are out of range.
    #[error("invalid argon2 parameters")]
    BadParams,
    /// The memory for the check could not be allocated.
    #[error(transparent)]
    NoMemory(#[from] NoMemory),
}

/// Checks the length rules.
pub fn check_policy(password: &[u8]) -> Result<(), PasswordError> {
    match password.len() {
        n if n < MIN_PASSWORD_LEN => Err(PasswordError::TooShort),
        n if n > MAX_PASSWORD_LEN => Err(PasswordError::TooLong),
        _ => Ok(()),
    }
}

/// Length of the hashes this server creates, bytes.
const OUTPUT_LEN: usize = 32;

/// Hashes `password` with `salt` into a PHC string (`$argon2id$v=19$m=...$salt$hash`),
/// working in `memory` (grown if it is smaller than `params` needs).
pub fn hash(
    password: &[u8],
    salt: &[u8; 16],
    params: PasswordParams,
    memory: &mut CheckMemory,
) -> Result<String, PasswordError> {
    check_policy(password)?;
    let argon2_params = params.argon2()?;
    let blocks = memory.blocks(argon2_params.block_count())?;
    let mut out = Zeroizing::new([0u8; OUTPUT_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, argon2_params.clone())
        .hash_password_into_with_memory(password, salt, &mut out[..], blocks)
        .map_err(|_| PasswordError::BadParams)?;
    let bad = |_| PasswordError::BadParams;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&argon2_params).map_err(bad)?,
        salt: Some(Salt::new(salt).map_err(|_| PasswordError::BadParams)?),
        hash: Some(Output::new(&out[..]).map_err(|_| PasswordError::BadParams)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the stored PHC string (any argon2 variant and version, with
/// the parameters it carries), computed in `memory` and compared in constant time.
/// Too-long passwords and unparsable hashes never match; `Err` only if the memory the hash
/// needs could not be allocated.
pub fn verify(password: &[u8], phc: &str, memory: &mut CheckMemory) -> Result<bool, NoMemory> {
    if password.len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    let Some(stored) = Stored::parse(phc) else {
        return Ok(false);
    };
    let blocks = memory.blocks(stored.params.block_count())?;
    let mut out = Zeroizing::new([0u8; Output::MAX_LENGTH]);
    let out = &mut out[..stored.expected.len()];
    let computed = Argon2::new(stored.algorithm, stored.version, stored.params)
        .hash_password_into_with_memory(password, &stored.salt, out, blocks);
    Ok(computed.is_ok() && bool::from(out.ct_eq(stored.expected.as_bytes())))
}

/// A stored PHC string's parts, as argon2 needs them.
struct Stored {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt,
    expected: Output,
}

impl Stored {
    fn parse(phc: &str) -> Option<Stored> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        Some(Stored {
            algorithm,
            version,
            params,
            salt: parsed.salt?,
            expected: parsed.hash?,
        })
    }
}

/// A hash of a random unknowable password with `params`: checking a login for a user who
/// does not exist against it costs the same time as a real check.
pub fn decoy(
    salt: &[u8; 16],
    params: PasswordParams,
    memory: &mut CheckMemory,
) -> Result<String, PasswordError> {
    hash(b"no user has this password: decoy", salt, params, memory)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hash_then_verify() {
        let m = &mut CheckMemory::default();
        let h = hash(b"correct horse", &[1; 16], PasswordParams::INSECURE_FAST, m).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert_eq!(verify(b"correct horse", &h, m), Ok(true));
        assert_eq!(verify(b"correct horsf", &h, m), Ok(false));
        assert_eq!(verify(b"correct horse", "not a phc string", m), Ok(false));
        assert_eq!(verify(&[b'x'; MAX_PASSWORD_LEN + 1], &h, m), Ok(false));
    }

    #[test]
    fn stored_parameters_are_used_for_verification() {
        let m = &mut CheckMemory::default();
        let params = PasswordParams {
            m_cost_kib: 64,
            t_cost: 2,
            p_cost: 1,
        };
        let h = hash(b"password1", &[2; 16], params, m).unwrap();
        assert!(h.contains("m=64,t=2,p=1"));
        assert_eq!(m.capacity(), 64);
        assert_eq!(verify(b"password1", &h, m), Ok(true));
    }

    /// Hashes stored by earlier versions (argon2's own hasher, which allocates per check)
    /// still verify, and argon2's verifier accepts ours: the PHC strings are the same.
    #[test]
    fn same_phc_strings_as_argon2_itself() {
        let m = &mut CheckMemory::default();
        let params = PasswordParams {
            m_cost_kib: 32,
            t_cost: 2,
            p_cost: 2,
        };
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            params.argon2().unwrap(),
        )
        .hash_password_with_salt(b"password1", &[3; 16])
        .unwrap()
        .to_string();
        let ours = hash(b"password1", &[3; 16], params, m).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(verify(b"password1", &theirs, m), Ok(true));
        assert!(
            Argon2::default()
                .verify_password(b"password1", ours.as_str())
                .is_ok()
        );
        // Another variant and output length, as a PHC string may carry.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(16, 1, 1, Some(24)).unwrap(),
        )
        .hash_password_with_salt(b"password2", &[4; 16])
        .unwrap()
        .to_string();
        assert_eq!(verify(b"password2", &argon2i, m), Ok(true));
        assert_eq!(verify(b"password3", &argon2i, m), Ok(false));
    }

    #[test]
    fn policy() {
        let m = &mut CheckMemory::default();
        assert_eq!(
            hash(b"short", &[0; 16], PasswordParams::INSECURE_FAST, m),
            Err(PasswordError::TooShort)
        );
        assert_eq!(
            check_policy(&[b'a'; MAX_PASSWORD_LEN + 1]),
            Err(PasswordError::TooLong)
        );
    }
}
