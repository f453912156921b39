//! The stored form of a user.
//!
//! `version:u8 (2) | id:16 bytes | role:u8 (0 user, 1 admin) | enabled:u8 | password:u16-prefixed
//! PHC (empty: none) | key_count:u8 | keys: 33 bytes each | created:u64 | last_login:u64
//! (0: never)`, all integers big-endian. The name is the record's key.
//!
//! Version 1 records (written before accounts had an id) are the same without `id`; they
//! still decode, with [`AccountId::legacy`] as their id, and are written back as version 2
//! with that same id the next time they change, so the id of an account never changes.

use vserv_core::commands::UserRole;
use vserv_core::wire::codec::{Reader, put_bytes16};

use super::UserName;

const VERSION: u8 = 2;
/// Records written before accounts had an id.
const VERSION_NO_ID: u8 = 1;

/// The identity of one account, fixed at its creation: a new account given the same name
/// as a deleted one gets a different id, so a session bound to the old account is not
/// carried over to the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountId(pub [u8; 16]);

impl AccountId {
    /// A fresh id: 16 random bytes (ids of accounts created since ids exist).
    pub fn random(rng: &mut dyn rand_core::CryptoRng) -> AccountId {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        AccountId(id)
    }

    /// The id of an account stored before ids existed: eight zero bytes, then its creation
    /// time (Unix seconds, big-endian). Deterministic, so it is the same on every read and
    /// across restarts; it differs from every random id but with probability 2^-64.
    pub fn legacy(created: u64) -> AccountId {
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&created.to_be_bytes());
        AccountId(id)
    }
}

impl std::fmt::Display for AccountId {
    /// Lower-case hex, 32 characters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Normalised name.
    pub name: UserName,
    /// The account's identity, fixed at creation ([`AccountId`]).
    pub id: AccountId,
    /// Role.
    pub role: UserRole,
    /// Whether the user may log in.
    pub enabled: bool,
    /// argon2id PHC string, if a password is set.
    pub password: Option<String>,
    /// Registered login keys (SEC1 compressed).
    pub keys: Vec<[u8; 33]>,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Last successful login, Unix seconds.
    pub last_login: Option<u64>,
}

impl User {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&[(self.role == UserRole::Admin) as u8, self.enabled as u8]);
        put_bytes16(&mut out, self.password.as_deref().unwrap_or("").as_bytes());
        out.push(self.keys.len().min(u8::MAX as usize) as u8);
        for key in self.keys.iter().take(u8::MAX as usize) {
            out.extend_from_slice(key);
        }
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&self.last_login.unwrap_or(0).to_be_bytes());
        out
    }

    /// Decodes a stored record for `name` (version 2, or version 1 with its legacy id);
    /// `None` if it is not one of those.
    pub fn decode(name: &UserName, bytes: &[u8]) -> Option<User> {
        let mut r = Reader::new(bytes, "user record");
        let stored_id = match r.u8().ok()? {
            VERSION => Some(AccountId(r.array::<16>().ok()?)),
            VERSION_NO_ID => None,
            _ => return None,
        };
        let role = match r.u8().ok()? {
            0 => UserRole::User,
            1 => UserRole::Admin,
            _ => return None,
        };
        let enabled = match r.u8().ok()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let password = std::str::from_utf8(r.bytes16().ok()?).ok()?;
        let password = (!password.is_empty()).then(|| password.to_owned());
        let count = r.u8().ok()?;
        let keys = (0..count)
            .map(|_| r.array::<33>().ok())
            .collect::<Option<Vec<_>>>()?;
        let created = u64::from_be_bytes(r.array().ok()?);
        let last_login = Some(u64::from_be_bytes(r.array().ok()?)).filter(|&t| t != 0);
        r.finish().ok()?;
        Some(User {
            name: name.clone(),
            id: stored_id.unwrap_or(AccountId::legacy(created)),
            role,
            enabled,
            password,
            keys,
            created,
            last_login,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let name = UserName::parse("alice").unwrap();
        let user = User {
            name: name.clone(),
            id: AccountId([9; 16]),
            role: UserRole::Admin,
            enabled: false,
            password: Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into()),
            keys: vec![[2; 33], [3; 33]],
            created: 1_700_000_000,
            last_login: Some(1_700_000_100),
        };
        let bytes = user.encode();
        assert_eq!(User::decode(&name, &bytes), Some(user));
        for cut in 0..bytes.len() {
            assert_eq!(User::decode(&name, &bytes[..cut]), None);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(User::decode(&name, &longer), None);
    }

    /// A record written before ids existed (version 1) still decodes, with the legacy id
    /// derived from its creation time, and keeps that id when written back.
    #[test]
    fn version_1_records_get_a_stable_legacy_id() {
        let name = UserName::parse("carol").unwrap();
        let mut v1 = vec![1u8, 0, 1];
        put_bytes16(&mut v1, b"$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA");
        v1.push(0);
        v1.extend_from_slice(&1_600_000_000u64.to_be_bytes());
        v1.extend_from_slice(&0u64.to_be_bytes());
        let user = User::decode(&name, &v1).expect("a version 1 record decodes");
        assert_eq!(user.id, AccountId::legacy(1_600_000_000));
        assert_eq!(user.role, UserRole::User);
        assert!(user.enabled);
        assert_eq!(user.created, 1_600_000_000);
        let rewritten = user.encode();
        assert_eq!(rewritten[0], VERSION);
        assert_eq!(User::decode(&name, &rewritten), Some(user));
        assert_ne!(AccountId::legacy(1), AccountId::legacy(2));
    }
}
