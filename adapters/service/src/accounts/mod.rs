//! User accounts over the [`Store`]: records, the invariants every change keeps, and the
//! login checks.
//!
//! Invariants: names are unique in their normal form ([`UserName`]); there is always at
//! least one enabled admin once the first admin exists (deleting or disabling the last one is
//! refused); every change is one atomic, durable commit. Changes are serialised by a lock, so
//! two admins changing the same user concurrently each see the other's completed change.

pub mod checks;
pub mod name;
pub mod password;
mod record;
pub mod totp;
mod two_factor;

use std::sync::{Arc, Mutex};

use rand_core::CryptoRng;
use vserv_core::commands::{UserRole, UserSummary, login_signature_message};
use vserv_core::{Fingerprint, ServerKey};
use vserv_store::kv::{Op, Store, StoreError, Table};

pub use checks::{Busy, CheckLimits, CheckPool};
pub use name::{NameError, UserName};
pub use password::{PasswordError, PasswordParams};
pub use record::{AccountId, User};
pub use totp::{CodeError, Enrolment, TotpState};

/// Most login keys one user may register.
pub const MAX_KEYS_PER_USER: usize = 16;

/// Why an account operation was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The name breaks the naming rules.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The password breaks the password rules.
    #[error(transparent)]
    BadPassword(#[from] PasswordError),
    /// No such user.
    #[error("no user named '{0}'")]
    NoSuchUser(String),
    /// The name is taken.
    #[error("a user named '{0}' already exists")]
    Exists(String),
    /// The change would leave no enabled admin.
    #[error("'{0}' is the last enabled admin")]
    LastAdmin(String),
    /// `uini` after users exist.
    #[error("the first admin already exists; log in as an admin to add users")]
    AlreadyInitialised,
    /// The key is already registered for this user.
    #[error("that key is already registered")]
    KeyExists,
    /// No key with that fingerprint.
    #[error("no key with fingerprint {0}")]
    NoSuchKey(Fingerprint),
    /// Key limit reached.
    #[error("a user may register at most {MAX_KEYS_PER_USER} keys")]
    TooManyKeys,
    /// Not a valid public key.
    #[error("not a valid public key")]
    BadKey,
    /// The old password given to `chpass` is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// Every password-check slot is busy and the queue is full; nothing was checked or
    /// changed (see [`checks`]).
    #[error(transparent)]
    Busy(#[from] Busy),
    /// A one-time code was refused (wrong, stale, reused).
    #[error("second factor: {0}")]
    Code(#[from] CodeError),
    /// `2fa enable` while two-factor login is already active.
    #[error("two-factor login is already active; disable it first")]
    TwoFactorActive,
    /// A `2fa` action on an account without a second factor (or `confirm` with nothing
    /// pending).
    #[error("two-factor login is not enabled for this account")]
    TwoFactorNotEnabled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be decoded.
    #[error("stored record for '{0}' is corrupt")]
    Corrupt(String),
}

/// The accounts of one server.
pub struct Accounts {
    store: Arc<dyn Store>,
    params: PasswordParams,
    rng: Mutex<Box<dyn CryptoRng + Send>>,
    /// Serialises read-check-write sequences.
    write: Mutex<()>,
    /// Checked against when the user does not exist, so failures cost the same either way.
    decoy: String,
    /// Every argon2 run (checks and new hashes) happens in this pool's memory.
    checks: CheckPool,
    /// Encrypts the TOTP secrets at rest; `None` stores them in the clear.
    master: Option<vserv_core::transit::MasterKey>,
}

impl Accounts {
    /// Accounts kept in `store`, hashing new passwords with `params`, checking passwords
    /// with the default [`CheckLimits`] (one slot per CPU, 64 queued).
    pub fn new(
        store: Arc<dyn Store>,
        params: PasswordParams,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Result<Accounts, AccountError> {
        Self::with_limits(store, params, CheckLimits::default(), rng)
    }

    /// Like [`Accounts::new`], with at most `limits` password checks running and waiting at
    /// once (see [`checks`]).
    pub fn with_limits(
        store: Arc<dyn Store>,
        params: PasswordParams,
        limits: CheckLimits,
        mut rng: Box<dyn CryptoRng + Send>,
    ) -> Result<Accounts, AccountError> {
        let checks = CheckPool::new(limits);
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let decoy = checks.run(|memory| password::decoy(&salt, params, memory))??;
        Ok(Accounts {
            store,
            params,
            rng: Mutex::new(rng),
            write: Mutex::new(()),
            decoy,
            checks,
            master: None,
        })
    }

    /// These accounts keeping TOTP secrets encrypted under `master` (spec/transit.md §4);
    /// records stored in the clear are still read and are encrypted at their next change.
    pub fn with_master_key(mut self, master: vserv_core::transit::MasterKey) -> Self {
        self.master = Some(master);
        self
    }

    /// The pool every password check and new hash runs in.
    pub fn password_checks(&self) -> &CheckPool {
        &self.checks
    }

    /// The store the accounts live in (the login backoff keeps its counters there too).
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new hash of `secret`, made in the check pool (so it may be refused as [`Busy`]).
    fn hash(&self, secret: &[u8]) -> Result<String, AccountError> {
        password::check_policy(secret)?;
        let mut salt = [0u8; 16];
        self.rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fill_bytes(&mut salt);
        Ok(self
            .checks
            .run(|memory| password::hash(secret, &salt, self.params, memory))??)
    }

    /// Whether `secret` matches the PHC string `phc`, checked in the pool.
    fn verify(&self, secret: &[u8], phc: &str) -> Result<bool, AccountError> {
        let matched = self
            .checks
            .run(|memory| password::verify(secret, phc, memory))?;
        Ok(matched.map_err(PasswordError::from)?)
    }

    /// The user named `name`, if any.
    pub fn get(&self, name: &UserName) -> Result<Option<User>, AccountError> {
        match self.store.get(Table::Users, name.as_str().as_bytes())? {
            Some(bytes) => User::decode(name, &bytes)
                .map(Some)
                .ok_or_else(|| AccountError::Corrupt(name.to_string())),
            None => Ok(None),
        }
    }

    fn all(&self) -> Result<Vec<User>, AccountError> {
        self.store
            .scan(Table::Users, b"")?
            .into_iter()
            .map(|(key, value)| {
                let shown = String::from_utf8_lossy(&key).into_owned();
                let name = std::str::from_utf8(&key)
                    .ok()
                    .and_then(|k| UserName::parse(k).ok())
                    .ok_or_else(|| AccountError::Corrupt(shown.clone()))?;
                User::decode(&name, &value).ok_or(AccountError::Corrupt(shown))
            })
            .collect()
    }

    /// Whether no user exists yet.
    pub fn is_empty(&self) -> Result<bool, AccountError> {
        Ok(self.store.scan(Table::Users, b"")?.is_empty())
    }

    fn put(&self, user: &User) -> Op {
        Op::Put {
            table: Table::Users,
            key: user.name.as_str().as_bytes().to_vec(),
            value: user.encode(),
        }
    }

    fn existing(&self, name: &UserName) -> Result<User, AccountError> {
        self.get(name)?
            .ok_or_else(|| AccountError::NoSuchUser(name.to_string()))
    }

    /// Creates the first admin; refused once any user exists. The password is hashed
    /// before the accounts are locked, so a hash waiting for the check pool holds no lock.
    pub fn create_first_admin(
        &self,
        name: &str,
        secret: &[u8],
        now: u64,
    ) -> Result<User, AccountError> {
        if !self.is_empty()? {
            return Err(AccountError::AlreadyInitialised);
        }
        let name = UserName::parse(name)?;
        let hashed = self.hash(secret)?;
        let _guard = self.lock();
        if !self.is_empty()? {
            return Err(AccountError::AlreadyInitialised);
        }
        self.create_locked(name, UserRole::Admin, hashed, now)
    }

    /// Creates a user with `role` (hashing the password before taking the lock, as
    /// [`Accounts::create_first_admin`] does).
    pub fn create(
        &self,
        name: &str,
        role: UserRole,
        secret: &[u8],
        now: u64,
    ) -> Result<User, AccountError> {
        let name = UserName::parse(name)?;
        if self.get(&name)?.is_some() {
            return Err(AccountError::Exists(name.to_string()));
        }
        let hashed = self.hash(secret)?;
        let _guard = self.lock();
        self.create_locked(name, role, hashed, now)
    }

    fn create_locked(
        &self,
        name: UserName,
        role: UserRole,
        hashed: String,
        now: u64,
    ) -> Result<User, AccountError> {
        if self.get(&name)?.is_some() {
            return Err(AccountError::Exists(name.to_string()));
        }
        let id = AccountId::random(&mut **self.rng.lock().unwrap_or_else(|p| p.into_inner()));
        let user = User {
            name,
            id,
            role,
            enabled: true,
            password: Some(hashed),
            keys: Vec::new(),
            created: now,
            last_login: None,
        };
        self.store.commit(vec![self.put(&user)])?;
        Ok(user)
    }

    /// Whether removing or disabling `user` would leave no enabled admin.
    fn is_last_admin(&self, user: &User) -> Result<bool, AccountError> {
        if user.role != UserRole::Admin || !user.enabled {
            return Ok(false);
        }
        let others = self
            .all()?
            .into_iter()
            .filter(|u| u.role == UserRole::Admin && u.enabled && u.name != user.name);
        Ok(others.count() == 0)
    }

    /// Deletes a user (never the last enabled admin); returns the deleted account, whose
    /// [`AccountId`] no later account of the same name shares.
    pub fn delete(&self, name: &str) -> Result<User, AccountError> {
        let _guard = self.lock();
        let user = self.existing(&UserName::parse(name)?)?;
        if self.is_last_admin(&user)? {
            return Err(AccountError::LastAdmin(user.name.to_string()));
        }
        self.store.commit(vec![
            Op::Delete {
                table: Table::Users,
                key: user.name.as_str().as_bytes().to_vec(),
            },
            Self::delete_totp_op(&user.name),
        ])?;
        Ok(user)
    }

    /// Enables or disables a user (never disables the last enabled admin).
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), AccountError> {
        let _guard = self.lock();
        let mut user = self.existing(&UserName::parse(name)?)?;
        if !enabled && self.is_last_admin(&user)? {
            return Err(AccountError::LastAdmin(user.name.to_string()));
        }
        user.enabled = enabled;
        self.store.commit(vec![self.put(&user)])?;
        Ok(())
    }

    /// Sets a user's password. With `old`, the current password must match first (and
    /// still be the stored one when the new hash is written: a password changed meanwhile
    /// makes this [`AccountError::WrongPassword`]). Both argon2 runs happen before the
    /// accounts are locked.
    pub fn set_password(
        &self,
        name: &str,
        old: Option<&[u8]>,
        new: &[u8],
    ) -> Result<(), AccountError> {
        let name = UserName::parse(name)?;
        let current = self.existing(&name)?.password;
        let verified = match old {
            Some(old) => match current {
                Some(stored) if self.verify(old, &stored)? => Some(stored),
                _ => return Err(AccountError::WrongPassword),
            },
            None => None,
        };
        let hashed = self.hash(new)?;
        let _guard = self.lock();
        let mut user = self.existing(&name)?;
        if verified.is_some() && user.password != verified {
            return Err(AccountError::WrongPassword);
        }
        user.password = Some(hashed);
        self.store.commit(vec![self.put(&user)])?;
        Ok(())
    }

    /// Registers a login key for a user.
    pub fn add_key(&self, name: &str, key: &[u8; 33]) -> Result<(), AccountError> {
        let _guard = self.lock();
        let key = ServerKey::from_bytes(key).map_err(|_| AccountError::BadKey)?;
        let mut user = self.existing(&UserName::parse(name)?)?;
        if user.keys.contains(key.as_bytes()) {
            return Err(AccountError::KeyExists);
        }
        if user.keys.len() >= MAX_KEYS_PER_USER {
            return Err(AccountError::TooManyKeys);
        }
        user.keys.push(*key.as_bytes());
        self.store.commit(vec![self.put(&user)])?;
        Ok(())
    }

    /// Removes the key with fingerprint `fingerprint` from a user.
    pub fn remove_key(&self, name: &str, fingerprint: &Fingerprint) -> Result<(), AccountError> {
        let _guard = self.lock();
        let mut user = self.existing(&UserName::parse(name)?)?;
        let before = user.keys.len();
        user.keys.retain(|k| {
            ServerKey::from_bytes(k).map(|k| k.fingerprint()).ok() != Some(*fingerprint)
        });
        if user.keys.len() == before {
            return Err(AccountError::NoSuchKey(*fingerprint));
        }
        self.store.commit(vec![self.put(&user)])?;
        Ok(())
    }

    /// Users whose name contains `filter`, in name order.
    pub fn list(&self, filter: Option<&str>) -> Result<Vec<UserSummary>, AccountError> {
        let filter = filter.map(str::to_ascii_lowercase);
        Ok(self
            .all()?
            .into_iter()
            .filter(|u| {
                filter
                    .as_deref()
                    .is_none_or(|f| u.name.as_str().contains(f))
            })
            .map(|u| UserSummary {
                name: u.name.to_string(),
                role: u.role,
                enabled: u.enabled,
            })
            .collect())
    }

    /// The enabled user `name` if `secret` is their password. Costs one argon2 check in the
    /// check pool whether or not the user exists, so timing does not reveal which names
    /// exist; [`AccountError::Busy`] (for any name alike) if the pool refuses the check.
    pub fn check_password(&self, name: &str, secret: &[u8]) -> Result<Option<User>, AccountError> {
        let user = match UserName::parse(name) {
            Ok(n) => self.get(&n)?,
            Err(_) => None,
        };
        let hash = user
            .as_ref()
            .and_then(|u| u.password.as_deref())
            .unwrap_or(&self.decoy);
        let matches = self.verify(secret, hash)?;
        Ok(user.filter(|u| matches && u.enabled && u.password.is_some()))
    }

    /// The enabled user `name` if `public` is one of their keys and `signature` signs this
    /// session's login message with it.
    pub fn check_key(
        &self,
        name: &str,
        public: &[u8; 33],
        signature: &[u8; 64],
        session_id: &[u8; 32],
    ) -> Result<Option<User>, AccountError> {
        let Ok(user_name) = UserName::parse(name) else {
            return Ok(None);
        };
        let Some(user) = self.get(&user_name)? else {
            return Ok(None);
        };
        if !user.enabled || !user.keys.contains(public) {
            return Ok(None);
        }
        let Ok(key) = ServerKey::from_bytes(public) else {
            return Ok(None);
        };
        let message = login_signature_message(session_id, name);
        Ok(key.verify(&message, signature).is_ok().then_some(user))
    }

    /// Notes a successful login (best effort: a failure here does not undo the login).
    /// A login in the same second as the stored one writes nothing: the record would not
    /// change, and a burst of logins would otherwise leave one store version per login in
    /// the store's in-memory table (small allocations scattered over every thread's heap,
    /// which keep a burst's freed session memory from going back to the system).
    pub fn record_login(&self, name: &UserName, now: u64) {
        let _guard = self.lock();
        if let Ok(Some(mut user)) = self.get(name)
            && user.last_login != Some(now)
        {
            user.last_login = Some(now);
            if let Err(e) = self.store.commit(vec![self.put(&user)]) {
                tracing::warn!(user = %name, error = %e, "could not record the login time");
            }
        }
    }
}
