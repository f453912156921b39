//! The value types of the two-factor commands (`otp`, `2fa`): a one-time code as sent, and
//! the `2fa` sub-commands. Their codecs live with the other account commands.

use crate::Error;

/// Digits of a TOTP code (RFC 6238 with the common parameters: SHA-1, 30 s steps).
pub const TOTP_DIGITS: usize = 6;
/// Characters of a recovery code, without its dashes: 16 base32 characters (80 bits).
pub const RECOVERY_CODE_CHARS: usize = 16;
/// How many recovery codes `2fa enable` hands out.
pub const RECOVERY_CODES: usize = 10;

/// A one-time code as a client sends it: either six decimal digits from an authenticator
/// app, or a recovery code (16 base32 characters, dashes and case ignored). Parsing keeps
/// only the normal form (digits, or 16 lower-case base32 characters), so two spellings of
/// the same recovery code are one value. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    /// Parses a code as typed; [`Error::Malformed`] unless it is six digits or a
    /// recovery code.
    pub fn parse(raw: &[u8]) -> Result<OtpCode, Error> {
        if raw.len() == TOTP_DIGITS && raw.iter().all(u8::is_ascii_digit) {
            return Ok(OtpCode(String::from_utf8_lossy(raw).into_owned()));
        }
        // At most one dash between characters: bounds the work on any input.
        if raw.len() > 2 * RECOVERY_CODE_CHARS {
            return Err(Error::Malformed("one-time code"));
        }
        let normal: String = raw
            .iter()
            .filter(|&&c| c != b'-')
            .map(|c| char::from(c.to_ascii_lowercase()))
            .collect();
        let base32 = |c: char| c.is_ascii_lowercase() || ('2'..='7').contains(&c);
        if normal.len() == RECOVERY_CODE_CHARS && normal.chars().all(base32) {
            Ok(OtpCode(normal))
        } else {
            Err(Error::Malformed("one-time code"))
        }
    }

    /// Whether this is an authenticator (TOTP) code rather than a recovery code.
    pub fn is_totp(&self) -> bool {
        self.0.len() == TOTP_DIGITS
    }

    /// The normal form: six digits, or a recovery code's 16 lower-case characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpCode(<redacted>)")
    }
}

/// `2fa` sub-commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwoFactorAction {
    /// Make a new secret and recovery codes for the logged-in user (pending until
    /// confirmed).
    Enable,
    /// Activate the pending secret with a current code from it.
    Confirm(OtpCode),
    /// Turn two-factor login off, proven by a current code or a recovery code.
    Disable(OtpCode),
    /// (Admins) remove another user's second factor.
    Reset(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_parse_to_their_normal_form() {
        assert!(OtpCode::parse(b"012345").unwrap().is_totp());
        let a = OtpCode::parse(b"ABCD-efgh-2345-6777").unwrap();
        assert_eq!(a.as_str(), "abcdefgh23456777");
        assert!(!a.is_totp());
        assert_eq!(a, OtpCode::parse(b"abcdefgh23456777").unwrap());
        for bad in [
            &b""[..],
            b"12345",
            b"1234567",
            b"12345a",
            b"abcdefgh2345677",
            b"abcdefgh234567771",
            b"abcdefgh23456781",
            b"abcd efgh 2345 6777",
            b"\xff\xfe",
            b"----------------------------------",
        ] {
            assert!(OtpCode::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", OtpCode::parse(b"123456").unwrap()),
            "OtpCode(<redacted>)"
        );
    }

    proptest! {
        /// Any bytes: a typed answer, never a panic; an accepted code re-parses to itself.
        #[test]
        fn parse_never_panics_and_round_trips(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(code) = OtpCode::parse(&raw) {
                prop_assert_eq!(OtpCode::parse(code.as_str().as_bytes()).unwrap(), code);
            }
        }
    }
}
