//! Password hashing: argon2id (RFC 9106), stored as a PHC string that carries its own
//! parameters, so stronger parameters can be adopted without invalidating stored hashes.
//!
//! Default parameters (the OWASP recommendation for argon2id): memory 19 MiB
//! (`m = 19456` KiB), `t = 2` passes, `p = 1` lane, 16-byte random salt, 32-byte output. One
//! check costs a few tens of milliseconds on the reference 2-core machine
//! (`vserv bench login` measures it).

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use zeroize::Zeroizing;

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

    fn hasher(self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|_| PasswordError::BadParams)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
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
}

/// Checks the length rules.
pub fn check_policy(password: &[u8]) -> Result<(), PasswordError> {
    match password.len() {
        n if n < MIN_PASSWORD_LEN => Err(PasswordError::TooShort),
        n if n > MAX_PASSWORD_LEN => Err(PasswordError::TooLong),
        _ => Ok(()),
    }
}

/// Hashes `password` with `salt` into a PHC string (`$argon2id$v=19$m=...$salt$hash`).
pub fn hash(
    password: &[u8],
    salt: &[u8; 16],
    params: PasswordParams,
) -> Result<String, PasswordError> {
    check_policy(password)?;
    let hashed = params
        .hasher()?
        .hash_password_with_salt(password, salt)
        .map_err(|_| PasswordError::BadParams)?;
    Ok(hashed.to_string())
}

/// Whether `password` matches the stored PHC string. Too-long passwords and unparsable
/// hashes never match. The comparison inside argon2 is constant-time.
pub fn verify(password: &[u8], phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let password = Zeroizing::new(password.to_vec());
    Argon2::default().verify_password(&password, phc).is_ok()
}

/// A hash of a random unknowable password with `params`: checking a login for a user who
/// does not exist against it costs the same time as a real check.
pub fn decoy(salt: &[u8; 16], params: PasswordParams) -> Result<String, PasswordError> {
    hash(b"no user has this password: decoy", salt, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash(b"correct horse", &[1; 16], PasswordParams::INSECURE_FAST).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert!(verify(b"correct horse", &h));
        assert!(!verify(b"correct horsf", &h));
        assert!(!verify(b"correct horse", "not a phc string"));
        assert!(!verify(&[b'x'; MAX_PASSWORD_LEN + 1], &h));
    }

    #[test]
    fn stored_parameters_are_used_for_verification() {
        let h = hash(
            b"password1",
            &[2; 16],
            PasswordParams {
                m_cost_kib: 64,
                t_cost: 2,
                p_cost: 1,
            },
        )
        .unwrap();
        assert!(h.contains("m=64,t=2,p=1"));
        assert!(verify(b"password1", &h));
    }

    #[test]
    fn policy() {
        assert_eq!(
            hash(b"short", &[0; 16], PasswordParams::INSECURE_FAST),
            Err(PasswordError::TooShort)
        );
        assert_eq!(
            check_policy(&[b'a'; MAX_PASSWORD_LEN + 1]),
            Err(PasswordError::TooLong)
        );
    }
}
