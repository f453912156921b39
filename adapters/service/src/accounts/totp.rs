//! The second factor of one account, pure: its stored record and the checks of a code
//! against it at a given time (the node's clock is passed in, never read here).
//!
//! Codes are RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30 s steps) computed by `totp-rs`, accepted
//! for the step of `now` and one step either side. Each step's code works once: the record
//! keeps the last step used, and a code of that step or an earlier one is refused as reused.
//! Recovery codes are 80 random bits each; only their SHA-256 is kept (a fast hash suffices
//! because the codes are high-entropy: nobody can search 2^80 candidates, unlike passwords),
//! and a used one is removed.
//!
//! Record (in [`Table::Meta`](vserv_store::kv::Table::Meta) under `totp:` + user name):
//! `version:u8 (1) | account id:16 | state:u8 (0 pending, 1 active) | secret:20 |
//! last_step:u64 (0: none) | count:u8 | count x sha256:32`, integers big-endian.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use vserv_core::commands::{OtpCode, RECOVERY_CODE_CHARS, RECOVERY_CODES, TOTP_DIGITS};
use vserv_core::wire::codec::Reader;
use zeroize::Zeroizing;

use super::AccountId;

const VERSION: u8 = 1;
/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Bytes of a secret (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
/// Steps either side of `now` whose code is accepted.
const SKEW: u16 = 1;
/// Steps either side searched to tell a stale code (a clock or a code too old) from a
/// wrong one.
const STALE_SKEW: u16 = 10;
/// Prefix of a record's key.
pub const KEY_PREFIX: &[u8] = b"totp:";

/// Why a code was refused. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Not the code of any step near now, and not an unused recovery code.
    #[error("wrong code")]
    Wrong,
    /// The code of a step a few minutes away from the server's clock.
    #[error("the code is stale: check the authenticator's clock and use a current code")]
    Stale,
    /// The code of a step already used (each code works once).
    #[error("that code was already used; wait for the next one")]
    Reused,
    /// A recovery code where only an authenticator code is accepted (`2fa confirm`).
    #[error("a recovery code cannot confirm the authenticator; give its current code")]
    RecoveryNotAccepted,
}

/// Whether the second factor is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpState {
    /// Made by `2fa enable`, not confirmed: logins do not ask for a code yet.
    Pending,
    /// Confirmed: every login also needs a code.
    Active,
}

/// One account's second factor.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    /// The account it belongs to (a later account of the same name ignores it).
    pub account: AccountId,
    /// Pending or active.
    pub state: TotpState,
    secret: Zeroizing<[u8; SECRET_LEN]>,
    /// The last step whose code was accepted; 0: none.
    pub last_step: u64,
    /// SHA-256 of each unused recovery code's normal form.
    recovery: Vec<[u8; 32]>,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("account", &self.account)
            .field("state", &self.state)
            .field("last_step", &self.last_step)
            .field("recovery_left", &self.recovery.len())
            .finish_non_exhaustive()
    }
}

/// A new record and what the user is shown once: the otpauth URI and the recovery codes.
pub struct Enrolment {
    /// The pending record to store.
    pub record: TotpRecord,
    /// `otpauth://totp/vserv:USER?secret=...`.
    pub uri: String,
    /// The recovery codes, `xxxx-xxxx-xxxx-xxxx`.
    pub recovery: Vec<String>,
}

/// Base32 (RFC 4648, lower case) of 10 bytes: 16 characters.
fn base32_10(bytes: &[u8; 10]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits = 0u128;
    for &b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    (0..RECOVERY_CODE_CHARS)
        .rev()
        .map(|i| char::from(ALPHABET[((bits >> (5 * i)) & 31) as usize]))
        .collect()
}

fn hash_code(normal: &str) -> [u8; 32] {
    Sha256::digest(normal.as_bytes()).into()
}

impl TotpRecord {
    /// A pending record for `account` named `user`, its secret and recovery codes drawn
    /// from `rng`.
    pub fn enrol(account: AccountId, user: &str, rng: &mut dyn rand_core::CryptoRng) -> Enrolment {
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        rng.fill_bytes(&mut *secret);
        let mut shown = Vec::with_capacity(RECOVERY_CODES);
        let mut recovery = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let mut raw = Zeroizing::new([0u8; 10]);
            rng.fill_bytes(&mut *raw);
            let normal = base32_10(&raw);
            recovery.push(hash_code(&normal));
            let groups: Vec<&str> = (0..4).map(|g| &normal[g * 4..g * 4 + 4]).collect();
            shown.push(groups.join("-"));
        }
        let encoded = Secret::new_stack(*secret).to_base32();
        // User names are lower-case letters, digits, `.`, `_` and `-`: nothing to escape.
        let uri = format!(
            "otpauth://totp/vserv:{user}?secret={encoded}&issuer=vserv&algorithm=SHA1&digits={TOTP_DIGITS}&period={STEP_SECS}"
        );
        Enrolment {
            record: TotpRecord {
                account,
                state: TotpState::Pending,
                secret,
                last_step: 0,
                recovery,
            },
            uri,
            recovery: shown,
        }
    }

    fn totp(&self, skew: u16) -> Totp {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(TOTP_DIGITS as u8)
            .with_skew(skew)
            .with_step_duration(STEP_SECS)
            .with_secret(Secret::new_stack(*self.secret))
            .build_noncompliant()
    }

    /// Recovery codes not used yet.
    pub fn recovery_left(&self) -> usize {
        self.recovery.len()
    }

    /// Checks `code` at `now` (Unix seconds) and, if it is accepted, uses it up: the step
    /// of an authenticator code becomes [`TotpRecord::last_step`], a recovery code (if
    /// `recovery_ok`) is removed. On an error the record is unchanged.
    pub fn use_code(
        &mut self,
        code: &OtpCode,
        now: u64,
        recovery_ok: bool,
    ) -> Result<(), CodeError> {
        if !code.is_totp() {
            if !recovery_ok {
                return Err(CodeError::RecoveryNotAccepted);
            }
            let hash = hash_code(code.as_str());
            let found = self
                .recovery
                .iter()
                .position(|h| bool::from(h.ct_eq(&hash)))
                .ok_or(CodeError::Wrong)?;
            self.recovery.remove(found);
            return Ok(());
        }
        let Some(step) = self.totp(SKEW).check(code.as_str(), now) else {
            return Err(match self.totp(STALE_SKEW).check(code.as_str(), now) {
                Some(_) => CodeError::Stale,
                None => CodeError::Wrong,
            });
        };
        if step <= self.last_step {
            return Err(CodeError::Reused);
        }
        self.last_step = step;
        Ok(())
    }

    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.account.0);
        out.push(match self.state {
            TotpState::Pending => 0,
            TotpState::Active => 1,
        });
        out.extend_from_slice(&*self.secret);
        out.extend_from_slice(&self.last_step.to_be_bytes());
        out.push(self.recovery.len().min(u8::MAX as usize) as u8);
        for h in self.recovery.iter().take(u8::MAX as usize) {
            out.extend_from_slice(h);
        }
        out
    }

    /// Decodes stored bytes; `None` if they are not a record of this version.
    pub fn decode(bytes: &[u8]) -> Option<TotpRecord> {
        let mut r = Reader::new(bytes, "totp record");
        if r.u8().ok()? != VERSION {
            return None;
        }
        let account = AccountId(r.array::<16>().ok()?);
        let state = match r.u8().ok()? {
            0 => TotpState::Pending,
            1 => TotpState::Active,
            _ => return None,
        };
        let secret = Zeroizing::new(r.array::<SECRET_LEN>().ok()?);
        let last_step = u64::from_be_bytes(r.array().ok()?);
        let count = r.u8().ok()?;
        let recovery = (0..count)
            .map(|_| r.array::<32>().ok())
            .collect::<Option<Vec<_>>>()?;
        r.finish().ok()?;
        Some(TotpRecord {
            account,
            state,
            secret,
            last_step,
            recovery,
        })
    }

    /// The record's key for `user` (a normalised name).
    pub fn key(user: &str) -> Vec<u8> {
        [KEY_PREFIX, user.as_bytes()].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    /// A fixed clock, 7 s into a step (1_800_000_000 is a multiple of 30).
    const NOW: u64 = 1_800_000_007;

    fn enrolment() -> Enrolment {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        TotpRecord::enrol(AccountId([1; 16]), "alice", &mut rng)
    }

    /// The code of the step `offset` steps from `NOW`, computed from the URI as an
    /// authenticator app would.
    fn code_at(e: &Enrolment, offset: i64) -> OtpCode {
        let secret = e
            .uri
            .split("secret=")
            .nth(1)
            .and_then(|s| s.split('&').next())
            .unwrap();
        let bytes = Secret::try_from_base32(secret).unwrap();
        let totp = Builder::new().with_secret(bytes).build().unwrap();
        let t = NOW.checked_add_signed(offset * STEP_SECS as i64).unwrap();
        OtpCode::parse(totp.generate(t).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn the_previous_current_and_next_codes_work_two_steps_away_is_stale() {
        for offset in [-1, 0, 1] {
            let e = enrolment();
            let mut r = e.record.clone();
            assert_eq!(
                r.use_code(&code_at(&e, offset), NOW, false),
                Ok(()),
                "{offset}"
            );
        }
        for offset in [-2, 2, -10, 10] {
            let e = enrolment();
            let mut r = e.record.clone();
            assert_eq!(
                r.use_code(&code_at(&e, offset), NOW, true),
                Err(CodeError::Stale)
            );
            assert_eq!(r, e.record, "a refused code changes nothing");
        }
        let e = enrolment();
        let mut r = e.record.clone();
        let far = code_at(&e, 1000);
        // (A far code could collide with a near step's code; this seed's does not.)
        assert_eq!(r.use_code(&far, NOW, true), Err(CodeError::Wrong));
    }

    #[test]
    fn each_code_works_once_and_never_an_earlier_one() {
        let e = enrolment();
        let mut r = e.record.clone();
        r.use_code(&code_at(&e, 1), NOW, false).unwrap();
        assert_eq!(
            r.use_code(&code_at(&e, 1), NOW, false),
            Err(CodeError::Reused)
        );
        assert_eq!(
            r.use_code(&code_at(&e, 0), NOW, false),
            Err(CodeError::Reused)
        );
        // The next step's code works when its time comes.
        assert_eq!(r.use_code(&code_at(&e, 2), NOW + STEP_SECS, false), Ok(()));
    }

    #[test]
    fn a_recovery_code_works_once_in_any_spelling() {
        let e = enrolment();
        assert_eq!(e.recovery.len(), RECOVERY_CODES);
        let mut r = e.record.clone();
        let upper = e.recovery[3].to_ascii_uppercase();
        let code = OtpCode::parse(upper.as_bytes()).unwrap();
        assert_eq!(
            r.clone().use_code(&code, NOW, false),
            Err(CodeError::RecoveryNotAccepted)
        );
        assert_eq!(r.use_code(&code, NOW, true), Ok(()));
        assert_eq!(r.recovery_left(), RECOVERY_CODES - 1);
        assert_eq!(r.use_code(&code, NOW, true), Err(CodeError::Wrong));
        let unknown = OtpCode::parse(b"aaaa-aaaa-aaaa-aaaa").unwrap();
        assert_eq!(r.use_code(&unknown, NOW, true), Err(CodeError::Wrong));
    }

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let e = enrolment();
        assert!(e.uri.starts_with("otpauth://totp/vserv:alice?secret="));
        assert!(e.uri.contains("&issuer=vserv"));
        let mut r = e.record.clone();
        r.state = TotpState::Active;
        r.last_step = 99;
        let bytes = r.encode();
        assert_eq!(TotpRecord::decode(&bytes), Some(r));
        for cut in 0..bytes.len() {
            assert_eq!(TotpRecord::decode(&bytes[..cut]), None);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(TotpRecord::decode(&longer), None);
        let mut bad_state = bytes;
        bad_state[17] = 2;
        assert_eq!(TotpRecord::decode(&bad_state), None);
    }

    #[test]
    fn recovery_codes_are_distinct_base32() {
        let e = enrolment();
        let mut seen = std::collections::BTreeSet::new();
        for c in &e.recovery {
            assert_eq!(c.len(), 19);
            assert!(OtpCode::parse(c.as_bytes()).is_ok());
            assert!(seen.insert(c.clone()));
        }
        assert_eq!(base32_10(&[0; 10]), "aaaaaaaaaaaaaaaa");
        assert_eq!(base32_10(&[0xff; 10]), "7777777777777777");
    }
}
