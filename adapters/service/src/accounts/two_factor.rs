//! The accounts' second factor over the store: `2fa enable` (pending), `confirm`
//! (active), `disable`, an admin's `reset`, and the code check of a login. Each change is
//! one atomic commit of the user's [`TotpRecord`], made under the accounts' lock, so two
//! uses of the same code cannot both succeed.
//!
//! At rest, with a master key ([`Accounts::with_master_key`]), the record is stored as
//! `0x02 || wrap(master, "totp" 0x00 USER, record)` (spec/transit.md §4), so the secret is
//! never on disk in the clear. A record stored in the clear by an earlier vserv (it starts
//! with its version byte, 1) is still read, and written encrypted at its next change.

use vserv_core::commands::OtpCode;
use vserv_store::kv::{Op, Table};

use vserv_core::transit::{WrapContext, unwrap, wrap};

use super::totp::{Enrolment, TotpRecord, TotpState};

/// The first byte of a record stored encrypted (a clear record starts with its version, 1).
const ENCRYPTED: u8 = 2;
use super::{AccountError, Accounts, User, UserName};

impl Accounts {
    /// The second factor of `user`, if it has one (a record left by an earlier account of
    /// the same name is not this one's).
    pub fn totp_state(&self, user: &User) -> Result<Option<TotpState>, AccountError> {
        Ok(self.totp_record(user)?.map(|r| r.state))
    }

    fn totp_record(&self, user: &User) -> Result<Option<TotpRecord>, AccountError> {
        let key = TotpRecord::key(user.name.as_str());
        let Some(bytes) = self.store.get(Table::Meta, &key)? else {
            return Ok(None);
        };
        let corrupt = || AccountError::Corrupt(format!("{} (second factor)", user.name));
        let record = match (bytes.split_first(), &self.master) {
            (Some((&ENCRYPTED, wrapped)), Some(master)) => {
                let context = WrapContext::TotpSecret {
                    user: user.name.as_str(),
                };
                let plain = unwrap(master, &context, wrapped).map_err(|_| corrupt())?;
                TotpRecord::decode(&plain)
            }
            (Some((&ENCRYPTED, _)), None) => None,
            _ => TotpRecord::decode(&bytes),
        }
        .ok_or_else(corrupt)?;
        Ok((record.account == user.id).then_some(record))
    }

    fn put_totp(&self, user: &User, record: &TotpRecord) -> Result<(), AccountError> {
        let plain = zeroize::Zeroizing::new(record.encode());
        let value = match &self.master {
            Some(master) => {
                let mut iv = [0u8; vserv_core::wire::IV_LEN];
                self.rng
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .fill_bytes(&mut iv);
                let context = WrapContext::TotpSecret {
                    user: user.name.as_str(),
                };
                [vec![ENCRYPTED], wrap(master, &context, iv, &plain)].concat()
            }
            None => plain.to_vec(),
        };
        self.store.commit(vec![Op::Put {
            table: Table::Meta,
            key: TotpRecord::key(user.name.as_str()),
            value,
        }])?;
        Ok(())
    }

    /// The op removing `name`'s second factor (also part of deleting the user).
    pub(super) fn delete_totp_op(name: &UserName) -> Op {
        Op::Delete {
            table: Table::Meta,
            key: TotpRecord::key(name.as_str()),
        }
    }

    /// `2fa enable`: a new pending secret and recovery codes for `name` (replacing a pending
    /// one); refused while one is active. The URI and codes are returned this once.
    pub fn totp_enable(&self, name: &UserName) -> Result<Enrolment, AccountError> {
        let _guard = self.lock();
        let user = self.existing(name)?;
        if self.totp_state(&user)? == Some(TotpState::Active) {
            return Err(AccountError::TwoFactorActive);
        }
        let enrolment = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            TotpRecord::enrol(user.id, user.name.as_str(), &mut **rng)
        };
        self.put_totp(&user, &enrolment.record)?;
        Ok(enrolment)
    }

    /// `2fa confirm`: a current authenticator code of the pending secret activates it.
    pub fn totp_confirm(
        &self,
        name: &UserName,
        code: &OtpCode,
        now: u64,
    ) -> Result<(), AccountError> {
        let _guard = self.lock();
        let user = self.existing(name)?;
        let mut record = match self.totp_record(&user)? {
            Some(r) if r.state == TotpState::Pending => r,
            Some(_) => return Err(AccountError::TwoFactorActive),
            None => return Err(AccountError::TwoFactorNotEnabled),
        };
        record.use_code(code, now, false)?;
        record.state = TotpState::Active;
        self.put_totp(&user, &record)
    }

    /// `2fa disable`: a current code or an unused recovery code removes the second factor
    /// (pending or active).
    pub fn totp_disable(
        &self,
        name: &UserName,
        code: &OtpCode,
        now: u64,
    ) -> Result<(), AccountError> {
        let _guard = self.lock();
        let user = self.existing(name)?;
        let mut record = self
            .totp_record(&user)?
            .ok_or(AccountError::TwoFactorNotEnabled)?;
        record.use_code(code, now, true)?;
        self.store.commit(vec![Self::delete_totp_op(name)])?;
        Ok(())
    }

    /// `2fa reset` (admins): removes `name`'s second factor, whatever its state.
    pub fn totp_reset(&self, name: &str) -> Result<(), AccountError> {
        let _guard = self.lock();
        let user = self.existing(&UserName::parse(name)?)?;
        if self.totp_record(&user)?.is_none() {
            return Err(AccountError::TwoFactorNotEnabled);
        }
        self.store.commit(vec![Self::delete_totp_op(&user.name)])?;
        Ok(())
    }

    /// Whether a login of `user` needs a code (their second factor is active).
    pub fn needs_code(&self, user: &User) -> Result<bool, AccountError> {
        Ok(self.totp_state(user)? == Some(TotpState::Active))
    }

    /// The second step of a login: `code` (current, or a recovery code) for `user`'s active
    /// second factor, used up and stored before this returns.
    pub fn totp_login(&self, user: &User, code: &OtpCode, now: u64) -> Result<(), AccountError> {
        let _guard = self.lock();
        let mut record = match self.totp_record(user)? {
            Some(r) if r.state == TotpState::Active => r,
            _ => return Err(AccountError::TwoFactorNotEnabled),
        };
        record.use_code(code, now, true)?;
        self.put_totp(user, &record)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;
    use vserv_core::commands::UserRole;
    use vserv_core::transit::MasterKey;
    use vserv_store::MemoryStore;
    use vserv_store::kv::{Store, Table};
    use zeroize::Zeroizing;

    use super::super::PasswordParams;
    use super::*;

    fn accounts(store: &Arc<MemoryStore>, master: Option<u8>) -> Accounts {
        let rng = Box::new(rand::rngs::StdRng::seed_from_u64(3));
        let accounts =
            Accounts::new(store.clone(), PasswordParams::INSECURE_FAST, rng).expect("accounts");
        match master {
            Some(b) => accounts.with_master_key(MasterKey::from_bytes(Zeroizing::new([b; 32]))),
            None => accounts,
        }
    }

    fn stored(store: &MemoryStore) -> Vec<u8> {
        store
            .get(Table::Meta, &TotpRecord::key("alice"))
            .expect("get")
            .expect("a record")
    }

    #[test]
    fn secrets_are_encrypted_at_rest_and_clear_records_are_upgraded_at_their_next_change() {
        let store = Arc::new(MemoryStore::new());
        let alice = UserName::parse("alice").expect("name");
        // An earlier vserv (no master key) stored the pending secret in the clear.
        let old = accounts(&store, None);
        old.create("alice", UserRole::User, b"alice-password-1", 0)
            .expect("create");
        let clear = old.totp_enable(&alice).expect("enable");
        assert_eq!(stored(&store), clear.record.encode());
        assert_eq!(stored(&store)[0], 1);

        // With the master key the clear record is still read ...
        let new = accounts(&store, Some(9));
        let user = new.get(&alice).expect("get").expect("alice");
        assert_eq!(
            new.totp_state(&user).expect("state"),
            Some(TotpState::Pending)
        );
        // ... and the next change stores it encrypted: no trace of the record in the clear.
        let fresh = new.totp_enable(&alice).expect("enable again");
        let at_rest = stored(&store);
        assert_eq!(at_rest[0], ENCRYPTED);
        let plain = fresh.record.encode();
        assert!(
            !at_rest
                .windows(16)
                .any(|w| plain.windows(16).any(|p| p == w))
        );
        assert_eq!(
            new.totp_state(&user).expect("state"),
            Some(TotpState::Pending)
        );

        // Another master key cannot read it, nor can a server without one.
        let wrong = accounts(&store, Some(8));
        assert!(matches!(
            wrong.totp_state(&user),
            Err(AccountError::Corrupt(_))
        ));
        assert!(matches!(
            accounts(&store, None).totp_state(&user),
            Err(AccountError::Corrupt(_))
        ));
    }
}
