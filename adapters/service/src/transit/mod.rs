//! Encryption as a service (spec/transit.md): every user's named transit keys, kept in
//! [`Table::Transit`] over the [`Store`] trait (so the in-memory crash twin models them),
//! each version's key material encrypted at rest under the server's master key.
//!
//! Users only ever reach their own keys: every operation takes the logged-in user and looks
//! the key up under that user's name, and a key version's material is wrapped for that user,
//! key and version alone. Changes (`new`, `rotate`, `del`, `min`) are serialised by one lock
//! and written in one atomic batch each. `seal`, `unseal` and `rewrap` only read the store:
//! they unwrap the version's material for each request (two HKDF expansions and one 48-byte
//! CBC decryption: microseconds beside the data's own encryption) and keep nothing decrypted
//! between requests, so there is no cache to invalidate when a key changes.

mod records;

use std::sync::{Arc, Mutex, MutexGuard};

use rand_core::CryptoRng;
use vserv_core::commands::TransitKeyInfo;
use vserv_core::transit::{
    KEY_LEN, MasterKey, Token, TransitError, WrapContext, open, seal, unwrap, wrap,
};
use vserv_core::wire::IV_LEN;
use vserv_store::kv::{Op, Store, StoreError, Table};
use zeroize::Zeroizing;

use crate::accounts::UserName;
use records::{KeyState, state_key, states_prefix, version_key, versions_prefix};

/// How many keys a user may hold and versions a key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitLimits {
    /// Most keys one user holds; `tkey new` beyond it is refused.
    pub keys_per_user: usize,
    /// Most versions one key has (retired ones count: their material is kept, so a lowered
    /// `min` brings them back); `tkey rotate` beyond it is refused.
    pub versions_per_key: u32,
}

impl Default for TransitLimits {
    /// 100 keys per user, 1000 versions per key.
    fn default() -> Self {
        TransitLimits {
            keys_per_user: 100,
            versions_per_key: 1000,
        }
    }
}

/// Why a transit operation was refused. Each is typed so the server answers it with its own
/// error code; none carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransitKeysError {
    /// The user has no key of that name.
    #[error("you have no transit key '{0}'")]
    NoSuchKey(String),
    /// The user has a key of that name already.
    #[error("you have a transit key '{0}' already")]
    KeyExists(String),
    /// The user holds [`TransitLimits::keys_per_user`] keys.
    #[error("at most {max} transit keys per user; delete one first")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// The key has [`TransitLimits::versions_per_key`] versions.
    #[error("key '{name}' has {max} versions, the most a key may have; make a new key")]
    TooManyVersions {
        /// The key.
        name: String,
        /// The limit.
        max: u32,
    },
    /// `min` names a version the key does not have.
    #[error("key '{name}' has versions 1 to {latest}; the minimum must be one of them")]
    BadMinimum {
        /// The key.
        name: String,
        /// Its newest version.
        latest: u32,
    },
    /// The token is not a token (shape, base64url, lengths).
    #[error("not a transit token: {0}")]
    Malformed(TransitError),
    /// The token was made with another key than the one named.
    #[error("the token was made with key '{token}', not '{name}'")]
    WrongKey {
        /// The key the token names.
        token: String,
        /// The key the request names.
        name: String,
    },
    /// The token names a version the key never had.
    #[error("key '{name}' has no version {version} (its newest is {latest})")]
    UnknownVersion {
        /// The key.
        name: String,
        /// The version the token names.
        version: u32,
        /// The key's newest version.
        latest: u32,
    },
    /// The token's version is below the key's minimum: retired.
    #[error("version {version} of key '{name}' is retired (the minimum is {min_version})")]
    Retired {
        /// The key.
        name: String,
        /// The version the token names.
        version: u32,
        /// The key's minimum version.
        min_version: u32,
    },
    /// The token does not authenticate under the version it names: forged, altered or
    /// truncated, or made with another user's key of the same name.
    #[error("the token does not authenticate under key '{0}' (altered, or not made with it)")]
    Forged(String),
    /// More data than one `seal` takes.
    #[error(
        "at most {} bytes can be sealed at once",
        vserv_core::transit::MAX_SEAL_DATA
    )]
    TooLarge,
    /// A stored record does not decode, or a version's material does not authenticate under
    /// the master key (the data directory's `master.key` was replaced?).
    #[error("stored transit key is unusable: {0}")]
    Corrupt(String),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every user's transit keys; see the module docs.
pub struct TransitKeys {
    store: Arc<dyn Store>,
    master: MasterKey,
    limits: TransitLimits,
    rng: Mutex<Box<dyn CryptoRng + Send>>,
    /// Serialises the changes (state read, then written).
    writing: Mutex<()>,
}

impl std::fmt::Debug for TransitKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitKeys")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TransitKeys {
    /// The keys kept in `store`, their material wrapped under `master`, new material and
    /// IVs drawn from `rng`, enforcing `limits`.
    pub fn new(
        store: Arc<dyn Store>,
        master: MasterKey,
        rng: Box<dyn CryptoRng + Send>,
        limits: TransitLimits,
    ) -> TransitKeys {
        TransitKeys {
            store,
            master,
            limits,
            rng: Mutex::new(rng),
            writing: Mutex::new(()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> TransitLimits {
        self.limits
    }

    /// `n` fresh random bytes (`gk`, key material, IVs).
    pub fn random(&self, n: usize) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; n]);
        lock(&self.rng).fill_bytes(&mut out);
        out
    }

    fn iv(&self) -> [u8; IV_LEN] {
        let mut iv = [0u8; IV_LEN];
        lock(&self.rng).fill_bytes(&mut iv);
        iv
    }

    fn state(&self, user: &UserName, name: &str) -> Result<KeyState, TransitKeysError> {
        let bytes = self
            .store
            .get(Table::Transit, &state_key(user, name))?
            .ok_or_else(|| TransitKeysError::NoSuchKey(name.to_owned()))?;
        KeyState::decode(&bytes)
            .ok_or_else(|| TransitKeysError::Corrupt(format!("state of {user}/{name}")))
    }

    /// A new version's material wrapped for `user`'s key `name`, version `version`.
    fn new_version(&self, user: &UserName, name: &str, version: u32) -> Op {
        let mut material = Zeroizing::new([0u8; KEY_LEN]);
        lock(&self.rng).fill_bytes(material.as_mut());
        let context = WrapContext::TransitKey {
            user: user.as_str(),
            name,
            version,
        };
        Op::Put {
            table: Table::Transit,
            key: version_key(user, name, version),
            value: wrap(&self.master, &context, self.iv(), material.as_ref()),
        }
    }

    /// The material of version `version` of `user`'s key `name`.
    fn material(
        &self,
        user: &UserName,
        name: &str,
        version: u32,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, TransitKeysError> {
        let corrupt = || TransitKeysError::Corrupt(format!("version {version} of {user}/{name}"));
        let stored = self
            .store
            .get(Table::Transit, &version_key(user, name, version))?
            .ok_or_else(corrupt)?;
        let context = WrapContext::TransitKey {
            user: user.as_str(),
            name,
            version,
        };
        let plain = unwrap(&self.master, &context, &stored).map_err(|_| corrupt())?;
        let mut material = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(corrupt());
        }
        material.copy_from_slice(&plain);
        Ok(material)
    }

    /// `tkey new`: a new key `name` for `user` at version 1, made at `now` (Unix seconds).
    pub fn create(&self, user: &UserName, name: &str, now: u64) -> Result<u32, TransitKeysError> {
        let _w = lock(&self.writing);
        if self
            .store
            .get(Table::Transit, &state_key(user, name))?
            .is_some()
        {
            return Err(TransitKeysError::KeyExists(name.to_owned()));
        }
        let held = self.store.scan(Table::Transit, &states_prefix(user))?.len();
        if held >= self.limits.keys_per_user {
            return Err(TransitKeysError::TooManyKeys {
                max: self.limits.keys_per_user,
            });
        }
        let state = KeyState {
            latest: 1,
            min_version: 1,
            created: now,
        };
        self.store.commit(vec![
            self.new_version(user, name, 1),
            Op::Put {
                table: Table::Transit,
                key: state_key(user, name),
                value: state.encode(),
            },
        ])?;
        Ok(1)
    }

    /// `tkey list`: `user`'s keys, in name order.
    pub fn list(&self, user: &UserName) -> Result<Vec<TransitKeyInfo>, TransitKeysError> {
        let prefix = states_prefix(user);
        self.store
            .scan(Table::Transit, &prefix)?
            .into_iter()
            .map(|(key, value)| {
                let name = key
                    .get(prefix.len()..)
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .ok_or_else(|| TransitKeysError::Corrupt(format!("a key name of {user}")))?;
                let state = KeyState::decode(&value)
                    .ok_or_else(|| TransitKeysError::Corrupt(format!("state of {user}/{name}")))?;
                Ok(state.info(name))
            })
            .collect()
    }

    /// `tkey rotate`: a new newest version of `user`'s key `name`; returns it.
    pub fn rotate(&self, user: &UserName, name: &str) -> Result<u32, TransitKeysError> {
        let _w = lock(&self.writing);
        let state = self.state(user, name)?;
        if state.latest >= self.limits.versions_per_key {
            return Err(TransitKeysError::TooManyVersions {
                name: name.to_owned(),
                max: self.limits.versions_per_key,
            });
        }
        let latest = state.latest + 1;
        self.store.commit(vec![
            self.new_version(user, name, latest),
            Op::Put {
                table: Table::Transit,
                key: state_key(user, name),
                value: KeyState { latest, ..state }.encode(),
            },
        ])?;
        Ok(latest)
    }

    /// `tkey del`: `user`'s key `name` and every version, in one batch.
    pub fn delete(&self, user: &UserName, name: &str) -> Result<(), TransitKeysError> {
        let _w = lock(&self.writing);
        self.state(user, name)?;
        let mut ops: Vec<Op> = self
            .store
            .scan(Table::Transit, &versions_prefix(user, name))?
            .into_iter()
            .map(|(key, _)| Op::Delete {
                table: Table::Transit,
                key,
            })
            .collect();
        ops.push(Op::Delete {
            table: Table::Transit,
            key: state_key(user, name),
        });
        self.store.commit(ops)?;
        Ok(())
    }

    /// `tkey min`: versions of `user`'s key `name` below `version` no longer unseal or
    /// rewrap (`version` from 1 to the newest; a lower minimum brings retired ones back).
    pub fn set_min(
        &self,
        user: &UserName,
        name: &str,
        version: u32,
    ) -> Result<(), TransitKeysError> {
        let _w = lock(&self.writing);
        let state = self.state(user, name)?;
        if !(1..=state.latest).contains(&version) {
            return Err(TransitKeysError::BadMinimum {
                name: name.to_owned(),
                latest: state.latest,
            });
        }
        self.store.commit(vec![Op::Put {
            table: Table::Transit,
            key: state_key(user, name),
            value: KeyState {
                min_version: version,
                ..state
            }
            .encode(),
        }])?;
        Ok(())
    }

    /// `seal`: `data` sealed under the newest version of `user`'s key `name`.
    pub fn seal(
        &self,
        user: &UserName,
        name: &str,
        data: &[u8],
    ) -> Result<String, TransitKeysError> {
        if data.len() > vserv_core::transit::MAX_SEAL_DATA {
            return Err(TransitKeysError::TooLarge);
        }
        let state = self.state(user, name)?;
        let material = self.material(user, name, state.latest)?;
        let token = seal(&material, name, state.latest, self.iv(), data).map_err(|e| match e {
            TransitError::TooLarge => TransitKeysError::TooLarge,
            other => TransitKeysError::Malformed(other),
        })?;
        Ok(token.encode())
    }

    /// Checks `raw` as a token of `user`'s key `name`, in this order: its shape, the key it
    /// names, that key's state, the version (known, not retired), the tag. Returns the data
    /// and the key's state.
    fn open_token(
        &self,
        user: &UserName,
        name: &str,
        raw: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, KeyState), TransitKeysError> {
        let token = Token::parse(raw).map_err(TransitKeysError::Malformed)?;
        if token.name != name {
            return Err(TransitKeysError::WrongKey {
                token: token.name,
                name: name.to_owned(),
            });
        }
        let state = self.state(user, name)?;
        if token.version > state.latest {
            return Err(TransitKeysError::UnknownVersion {
                name: name.to_owned(),
                version: token.version,
                latest: state.latest,
            });
        }
        if token.version < state.min_version {
            return Err(TransitKeysError::Retired {
                name: name.to_owned(),
                version: token.version,
                min_version: state.min_version,
            });
        }
        let material = self.material(user, name, token.version)?;
        let data =
            open(&material, &token).map_err(|_| TransitKeysError::Forged(name.to_owned()))?;
        Ok((data, state))
    }

    /// `unseal`: the data of `raw`, a token of `user`'s key `name` (see the checks of the
    /// module docs and spec/transit.md §5).
    pub fn unseal(
        &self,
        user: &UserName,
        name: &str,
        raw: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TransitKeysError> {
        self.open_token(user, name, raw).map(|(data, _)| data)
    }

    /// `rewrap`: `raw` (checked as by [`TransitKeys::unseal`]) sealed again under the key's
    /// newest version; the data never leaves this call.
    pub fn rewrap(
        &self,
        user: &UserName,
        name: &str,
        raw: &[u8],
    ) -> Result<String, TransitKeysError> {
        let (data, state) = self.open_token(user, name, raw)?;
        let material = self.material(user, name, state.latest)?;
        let token = seal(&material, name, state.latest, self.iv(), &data)
            .map_err(TransitKeysError::Malformed)?;
        Ok(token.encode())
    }
}

#[cfg(test)]
mod tests;
