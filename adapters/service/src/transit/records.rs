//! The layout of [`Table::Transit`](vserv_store::Table::Transit) (user names normalised, key
//! names in normal form, neither ever containing `/`; versions big-endian so keys sort by
//! version):
//!
//! | key | value |
//! |---|---|
//! | `m/USER/NAME` | the key's state: `latest:u32 min_version:u32 created:u64` (16 bytes) |
//! | `v/USER/NAME/` `version:u32` | that version's material wrapped under the master key (spec/transit.md §4): `IV[16] ciphertext[48] tag[32]` |

use vserv_core::commands::TransitKeyInfo;

use crate::accounts::UserName;

/// A key's state as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyState {
    /// The newest version.
    pub(super) latest: u32,
    /// The lowest version that still unseals and rewraps.
    pub(super) min_version: u32,
    /// When it was made, Unix seconds.
    pub(super) created: u64,
}

impl KeyState {
    pub(super) fn encode(self) -> Vec<u8> {
        [
            self.latest.to_be_bytes().as_slice(),
            &self.min_version.to_be_bytes(),
            &self.created.to_be_bytes(),
        ]
        .concat()
    }

    /// The state in `bytes`, if well-formed (`1 <= min_version <= latest`).
    pub(super) fn decode(bytes: &[u8]) -> Option<KeyState> {
        let latest = u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?);
        let min_version = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
        let created = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16 && 1 <= min_version && min_version <= latest).then_some(KeyState {
            latest,
            min_version,
            created,
        })
    }

    pub(super) fn info(self, name: &str) -> TransitKeyInfo {
        TransitKeyInfo {
            name: name.to_owned(),
            latest: self.latest,
            min_version: self.min_version,
            created: self.created,
        }
    }
}

/// Prefix of every key state of `user`.
pub(super) fn states_prefix(user: &UserName) -> Vec<u8> {
    [b"m/", user.as_str().as_bytes(), b"/"].concat()
}

/// Key of the state of `user`'s key `name`.
pub(super) fn state_key(user: &UserName, name: &str) -> Vec<u8> {
    [states_prefix(user), name.as_bytes().to_vec()].concat()
}

/// Prefix of every version of `user`'s key `name`.
pub(super) fn versions_prefix(user: &UserName, name: &str) -> Vec<u8> {
    [b"v/", user.as_str().as_bytes(), b"/", name.as_bytes(), b"/"].concat()
}

/// Key of version `version` of `user`'s key `name`.
pub(super) fn version_key(user: &UserName, name: &str, version: u32) -> Vec<u8> {
    [versions_prefix(user, name), version.to_be_bytes().to_vec()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_refuse_bad_bounds() {
        let s = KeyState {
            latest: 3,
            min_version: 2,
            created: 9,
        };
        assert_eq!(KeyState::decode(&s.encode()), Some(s));
        for bad in [
            KeyState {
                latest: 3,
                min_version: 4,
                created: 0,
            },
            KeyState {
                latest: 3,
                min_version: 0,
                created: 0,
            },
        ] {
            assert_eq!(KeyState::decode(&bad.encode()), None);
        }
        assert_eq!(KeyState::decode(&s.encode()[..15]), None);
        assert_eq!(KeyState::decode(&[s.encode(), vec![0]].concat()), None);
    }

    #[test]
    fn one_key_prefix_never_covers_another() {
        let alice = UserName::parse("alice").expect("name");
        assert!(!version_key(&alice, "k2", 1).starts_with(&versions_prefix(&alice, "k")));
        assert!(version_key(&alice, "k", 1).starts_with(&versions_prefix(&alice, "k")));
        assert!(state_key(&alice, "k").starts_with(&states_prefix(&alice)));
        let al = UserName::parse("al").expect("name");
        assert!(!state_key(&alice, "k").starts_with(&states_prefix(&al)));
    }
}
