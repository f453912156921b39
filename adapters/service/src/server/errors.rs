//! How the service's errors become error replies: one `From` conversion per error type, so
//! handlers use `?`. A failure of the server's own storage gets a generic reply, with the
//! details going to the log.

use vserv_core::ledger::LedgerError;
use vserv_core::{Connection, Error, ErrorCode, ErrorReply, Response};

use crate::accounts::{AccountError, PasswordError};
use crate::files::delivery::DeliveryError;
use crate::files::{FileError, TransferFailure};
use crate::ledger::FeedError;
use crate::replicas::ReplicaError;

/// The error reply for `e`: its own message under `code`, or, for a failure of the server's
/// storage (`None`), a generic message with the details going to the log.
fn error_reply(code: Option<ErrorCode>, e: &dyn std::fmt::Display, what: &str) -> ErrorReply {
    match code {
        Some(code) => ErrorReply::new(code, e.to_string()),
        None => {
            tracing::error!(error = %e, "{what} failed");
            ErrorReply::new(
                ErrorCode::Internal,
                "the server could not complete the request",
            )
        }
    }
}

impl From<AccountError> for ErrorReply {
    fn from(e: AccountError) -> Self {
        let code = match &e {
            AccountError::BadPassword(PasswordError::NoMemory(_)) => None,
            AccountError::BadName(_) | AccountError::BadPassword(_) | AccountError::BadKey => {
                Some(ErrorCode::BadArguments)
            }
            AccountError::NoSuchUser(_) | AccountError::NoSuchKey(_) => Some(ErrorCode::NotFound),
            AccountError::Exists(_) | AccountError::KeyExists => Some(ErrorCode::Conflict),
            AccountError::LastAdmin(_)
            | AccountError::AlreadyInitialised
            | AccountError::TooManyKeys => Some(ErrorCode::Forbidden),
            AccountError::WrongPassword | AccountError::Code(_) => Some(ErrorCode::LoginFailed),
            AccountError::TwoFactorActive => Some(ErrorCode::Conflict),
            AccountError::TwoFactorNotEnabled => Some(ErrorCode::Forbidden),
            // Not the client's fault and nothing broken: said as it is, not logged as an error.
            AccountError::Busy(_) => Some(ErrorCode::Internal),
            _ => None,
        };
        error_reply(code, &e, "account storage")
    }
}

impl From<FeedError> for ErrorReply {
    fn from(e: FeedError) -> Self {
        let code = match &e {
            FeedError::Invalid(LedgerError::BodyTooLarge { .. }) => Some(ErrorCode::TooLarge),
            FeedError::Invalid(_) => Some(ErrorCode::BadArguments),
            FeedError::Duplicate { .. } => Some(ErrorCode::Conflict),
            _ => None,
        };
        error_reply(code, &e, "ledger storage")
    }
}

impl From<ReplicaError> for ErrorReply {
    fn from(e: ReplicaError) -> Self {
        let code = match &e {
            ReplicaError::Feed(_) | ReplicaError::TooManyFeeds => None,
            ReplicaError::OwnOrigin | ReplicaError::Quarantined(_) => Some(ErrorCode::Forbidden),
            ReplicaError::EmptySegment => Some(ErrorCode::BadArguments),
            ReplicaError::SegmentTooLarge(_) => Some(ErrorCode::TooLarge),
            ReplicaError::Rejected(_) => Some(ErrorCode::Integrity),
        };
        match e {
            ReplicaError::Feed(f) => f.into(),
            e => error_reply(code, &e, "replica storage"),
        }
    }
}

impl From<FileError> for ErrorReply {
    fn from(e: FileError) -> Self {
        let code = match &e {
            FileError::Path(_)
            | FileError::NotADirectory(_)
            | FileError::IsADirectory(_)
            | FileError::IntoItself { .. }
            | FileError::BadFolderConfig { .. }
            | FileError::Root => Some(ErrorCode::BadArguments),
            FileError::NotFound(_) | FileError::NoVersion { .. } => Some(ErrorCode::NotFound),
            FileError::Exists(_) | FileError::NotEmpty(_) => Some(ErrorCode::Conflict),
            FileError::Symlink(_) => Some(ErrorCode::Forbidden),
            FileError::QuotaExceeded { .. } | FileError::DiskFull { .. } => {
                Some(ErrorCode::TooLarge)
            }
            FileError::Io { .. } => None,
        };
        error_reply(code, &e, "file storage")
    }
}

impl From<TransferFailure> for ErrorReply {
    fn from(e: TransferFailure) -> Self {
        match e {
            TransferFailure::Transfer(t) => t.to_reply(),
            TransferFailure::File(f) => f.into(),
            busy @ TransferFailure::Busy(_) => {
                ErrorReply::new(ErrorCode::Conflict, busy.to_string())
            }
        }
    }
}

impl From<DeliveryError> for ErrorReply {
    fn from(e: DeliveryError) -> Self {
        let code = match &e {
            DeliveryError::File(_) => {
                return match e {
                    DeliveryError::File(f) => f.into(),
                    _ => ErrorReply::new(ErrorCode::Internal, "delivery failed"),
                };
            }
            DeliveryError::NoFolder { .. } => ErrorCode::NotFound,
            DeliveryError::BadConfig { .. } | DeliveryError::NoName(_) => ErrorCode::Conflict,
            DeliveryError::NotAllowed { .. } | DeliveryError::Refused(_) => ErrorCode::Forbidden,
            DeliveryError::Mismatch(_) => ErrorCode::Integrity,
            DeliveryError::Quota => ErrorCode::TooLarge,
        };
        ErrorReply::new(code, e.to_string())
    }
}

/// The reply of a server that keeps no ledger.
pub(super) fn no_ledger() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Internal,
        "no ledger: this server does not keep one",
    )
}

/// The reply of a server that keeps no files.
pub(super) fn no_files() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Internal,
        "no file tree: this server does not keep files",
    )
}

/// `NotFound` with `message`.
pub(super) fn not_found(message: &str) -> ErrorReply {
    ErrorReply::new(ErrorCode::NotFound, message)
}

/// The answer of work that ended without one (it panicked, or its runtime dropped it).
pub(super) fn lost_work() -> ErrorReply {
    ErrorReply::new(
        ErrorCode::Internal,
        "the request's work stopped without an answer",
    )
}

/// Sends `response`; one too large for a record is replaced by a `TooLarge` error.
pub(super) fn respond(conn: &mut Connection, response: &Response) -> Result<(), Error> {
    match conn.respond(response) {
        Err(Error::PayloadTooLarge { .. }) => conn.respond(&Response {
            id: response.id,
            result: Err(ErrorReply::new(
                ErrorCode::TooLarge,
                "reply too large for one record",
            )),
        }),
        other => other,
    }
}
