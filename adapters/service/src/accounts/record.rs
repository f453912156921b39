//! The stored form of a user.
//!
//! `version:u8 (1) | role:u8 (0 user, 1 admin) | enabled:u8 | password:u16-prefixed PHC
//! (empty: none) | key_count:u8 | keys: 33 bytes each | created:u64 | last_login:u64 (0: never)`,
//! all integers big-endian. The name is the record's key.

use vserv_core::commands::UserRole;
use vserv_core::wire::codec::{Reader, put_bytes16};

use super::UserName;

const VERSION: u8 = 1;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Normalised name.
    pub name: UserName,
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
        let mut out = vec![
            VERSION,
            (self.role == UserRole::Admin) as u8,
            self.enabled as u8,
        ];
        put_bytes16(&mut out, self.password.as_deref().unwrap_or("").as_bytes());
        out.push(self.keys.len().min(u8::MAX as usize) as u8);
        for key in self.keys.iter().take(u8::MAX as usize) {
            out.extend_from_slice(key);
        }
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&self.last_login.unwrap_or(0).to_be_bytes());
        out
    }

    /// Decodes a stored record for `name`; `None` if it is not one this version wrote.
    pub fn decode(name: &UserName, bytes: &[u8]) -> Option<User> {
        let mut r = Reader::new(bytes, "user record");
        if r.u8().ok()? != VERSION {
            return None;
        }
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
}
