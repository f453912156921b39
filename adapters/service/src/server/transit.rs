//! The transit commands (`tkey`, `seal`, `unseal`, `rewrap`, `gk`; spec/transit.md §5) for
//! the logged-in user, over the service's [`TransitKeys`](crate::transit::TransitKeys).
//! `tkey list`, `seal`, `unseal`, `rewrap` and `gk` only read the store and are answered at
//! once; `tkey new`, `rotate`, `del` and `min` write it and run as blocking work
//! (`dispatch.rs`). Changes are audited; key material and data never reach a log.

use vserv_core::commands::{Command, GK_DEFAULT_BYTES, Reply, TkeyAction, UserRole};
use vserv_core::{ErrorCode, ErrorReply};

use crate::accounts::{User, UserName};
use crate::transit::TransitKeysError;

use super::Service;

impl From<TransitKeysError> for ErrorReply {
    fn from(e: TransitKeysError) -> Self {
        let code = match &e {
            TransitKeysError::NoSuchKey(_) | TransitKeysError::UnknownVersion { .. } => {
                ErrorCode::NotFound
            }
            TransitKeysError::KeyExists(_) => ErrorCode::Conflict,
            TransitKeysError::TooManyKeys { .. }
            | TransitKeysError::TooManyVersions { .. }
            | TransitKeysError::TooLarge => ErrorCode::TooLarge,
            TransitKeysError::BadMinimum { .. }
            | TransitKeysError::Malformed(_)
            | TransitKeysError::WrongKey { .. } => ErrorCode::BadArguments,
            TransitKeysError::Retired { .. } => ErrorCode::Forbidden,
            TransitKeysError::Forged(_) => ErrorCode::Integrity,
            TransitKeysError::Corrupt(_) | TransitKeysError::Store(_) => {
                tracing::error!(error = %e, "transit keys failed");
                return ErrorReply::new(
                    ErrorCode::Internal,
                    "the server could not complete the request",
                );
            }
        };
        ErrorReply::new(code, e.to_string())
    }
}

/// Whether a transit command is answered at once (no store write).
pub(super) fn transit_at_once(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Tkey(TkeyAction::List)
            | Command::Seal { .. }
            | Command::Unseal { .. }
            | Command::Rewrap { .. }
            | Command::Gk { .. }
    )
}

impl Service {
    /// Answers a transit command for `user` at `now` (Unix seconds).
    pub(super) fn transit_command(
        &self,
        user: &User,
        cmd: Command,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let Some(keys) = self.shared.transit.as_ref() else {
            return Err(ErrorReply::new(
                ErrorCode::Internal,
                "this server keeps no transit keys",
            ));
        };
        let me = &user.name;
        let audit = |action: &str, key: &str| {
            tracing::info!(target: "vserv::audit", by = %me, action, key, "transit key change");
        };
        match cmd {
            Command::Tkey(TkeyAction::New(name)) => {
                let v = keys.create(me, &name, now)?;
                audit("tkey new", &name);
                Ok(Reply::KeyVersion(v))
            }
            Command::Tkey(TkeyAction::List) => Ok(Reply::TransitKeys(keys.list(me)?)),
            Command::Tkey(TkeyAction::Rotate(name)) => {
                let v = keys.rotate(me, &name)?;
                audit("tkey rotate", &name);
                Ok(Reply::KeyVersion(v))
            }
            Command::Tkey(TkeyAction::Del(name)) => {
                keys.delete(me, &name)?;
                audit("tkey del", &name);
                Ok(Reply::Done)
            }
            Command::Tkey(TkeyAction::Min {
                user: owner,
                name,
                version,
            }) => {
                let owner = UserName::parse(&owner)
                    .map_err(|e| ErrorReply::new(ErrorCode::BadArguments, e.to_string()))?;
                if &owner != me {
                    if user.role != UserRole::Admin {
                        return Err(ErrorReply::new(
                            ErrorCode::Forbidden,
                            "only admins may set the minimum version of another user's key",
                        ));
                    }
                    if self.shared.accounts.get(&owner)?.is_none() {
                        return Err(ErrorReply::new(
                            ErrorCode::NotFound,
                            format!("no user '{owner}'"),
                        ));
                    }
                }
                keys.set_min(&owner, &name, version)?;
                tracing::info!(target: "vserv::audit", by = %me, action = "tkey min", user = %owner, key = %name, version, "transit key change");
                Ok(Reply::Done)
            }
            Command::Seal { name, data } => Ok(Reply::Token(keys.seal(me, &name, &data)?)),
            Command::Unseal { name, token } => {
                Ok(Reply::Unsealed(keys.unseal(me, &name, &token)?.to_vec()))
            }
            Command::Rewrap { name, token } => Ok(Reply::Token(keys.rewrap(me, &name, &token)?)),
            Command::Gk { bytes } => {
                let n = bytes.unwrap_or(GK_DEFAULT_BYTES) as usize;
                Ok(Reply::KeyMaterial(keys.random(n).to_vec()))
            }
            _ => Err(ErrorReply::new(
                ErrorCode::Internal,
                "not a transit command",
            )),
        }
    }
}
