//! The accounts' second factor over the store: `2fa enable` (pending), `confirm`
//! (active), `disable`, an admin's `reset`, and the code check of a login. Each change is
//! one atomic commit of the user's [`TotpRecord`], made under the accounts' lock, so two
//! uses of the same code cannot both succeed.

use vserv_core::commands::OtpCode;
use vserv_store::kv::{Op, Table};

use super::totp::{Enrolment, TotpRecord, TotpState};
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
        let record = TotpRecord::decode(&bytes)
            .ok_or_else(|| AccountError::Corrupt(format!("{} (second factor)", user.name)))?;
        Ok((record.account == user.id).then_some(record))
    }

    fn put_totp(&self, user: &User, record: &TotpRecord) -> Result<(), AccountError> {
        self.store.commit(vec![Op::Put {
            table: Table::Meta,
            key: TotpRecord::key(user.name.as_str()),
            value: record.encode(),
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
