//! User names: what is allowed, and the one normal form stored and compared.
//!
//! Rules: 1 to 32 characters from `a-z 0-9 . _ -`, starting with a letter or digit.
//! Upper-case ASCII letters are folded to lower case (so `Alice` and `alice` are one user);
//! anything else — non-ASCII (no Unicode look-alikes or bidi controls), spaces, control
//! characters, `/`, `\`, `:`, NUL — is refused. A name can therefore never act as a path
//! component other than itself, and never renders differently from what it is.
//!
//! Every user name is a valid ledger entry author ([`crate::ledger::check_author`] allows
//! 1-32 bytes of printable ASCII, a superset kept wider for feeds replicated from other
//! servers): the length bound is checked at compile time, the characters by a test.

/// Longest user name, in characters (all ASCII, so also bytes).
pub const MAX_NAME_LEN: usize = 32;

// A user name always fits the ledger's author field.
const _: () = assert!(MAX_NAME_LEN <= crate::ledger::MAX_AUTHOR);

/// A valid, normalised user name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

/// Why a user name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("a user name cannot be empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`].
    #[error("a user name has at most {MAX_NAME_LEN} characters")]
    TooLong,
    /// A character outside the allowed set.
    #[error("a user name may only contain a-z, 0-9, '.', '_' and '-'")]
    BadCharacter,
    /// Starts with `.`, `_` or `-`.
    #[error("a user name must start with a letter or a digit")]
    BadStart,
}

impl UserName {
    /// Validates and normalises `raw`.
    pub fn parse(raw: &str) -> Result<UserName, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        let name = raw.to_ascii_lowercase();
        if !name.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
        }) {
            return Err(NameError::BadCharacter);
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(NameError::BadStart);
        }
        Ok(UserName(name))
    }

    /// The normal form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_user_name_is_a_valid_ledger_author(raw in "[a-zA-Z0-9._-]{1,40}|\\PC{0,40}") {
            if let Ok(name) = UserName::parse(&raw) {
                prop_assert!(crate::ledger::check_author(name.as_str().as_bytes()).is_ok());
            }
        }
    }

    #[test]
    fn the_longest_names_of_every_character_are_valid_authors() {
        for c in "abcdefghijklmnopqrstuvwxyz0123456789._-".chars() {
            let name = UserName::parse(&format!("a{}", c.to_string().repeat(MAX_NAME_LEN - 1)));
            let name = name.unwrap();
            assert!(crate::ledger::check_author(name.as_str().as_bytes()).is_ok());
        }
    }

    #[test]
    fn accepts_and_normalises() {
        assert_eq!(
            UserName::parse("Alice").map(|n| n.0),
            Ok("alice".to_owned())
        );
        assert!(UserName::parse("bob.smith_2-x").is_ok());
        assert!(UserName::parse(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(UserName::parse(""), Err(NameError::Empty));
        assert_eq!(UserName::parse(&"a".repeat(33)), Err(NameError::TooLong));
        assert_eq!(UserName::parse(&"a".repeat(300)), Err(NameError::TooLong));
        for bad in [
            "../x",
            "a/b",
            "a\\b",
            "a\0b",
            "a b",
            "al\u{202e}ice",
            "é",
            "a:b",
            "tab\t",
        ] {
            assert!(UserName::parse(bad).is_err(), "{bad:?} accepted");
        }
        for bad in [".hidden", "..", "-x", "_x"] {
            assert!(UserName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
