//! The client's decision on a server key announced by the core (`Event::ServerKey`).
//!
//! Rules: an explicit pin (`--server-key FPR`) must match; otherwise trust on first use, like
//! ssh. A host whose recorded key differs from the presented one is always an error, with or
//! without a pin, and its recorded key is never overwritten.

use std::path::PathBuf;

use vserv_core::{Fingerprint, ServerKey};

use crate::known_servers::{KnownServers, KnownServersError, path_or_default};

/// Why the presented key was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustDecision {
    /// The key matches the fingerprint pinned on the command line.
    Pinned,
    /// The key is the one recorded for this host.
    Known,
    /// The host was unknown; its key has now been recorded. The driver should show the
    /// fingerprint to the user.
    FirstContact {
        /// Fingerprint of the newly recorded key.
        fingerprint: Fingerprint,
    },
}

/// Why the presented key must not be trusted (the connection must be aborted).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The key does not match the fingerprint pinned on the command line.
    #[error("server key mismatch: expected {expected}, the server presented {actual}")]
    PinMismatch {
        /// The pinned fingerprint.
        expected: Fingerprint,
        /// Fingerprint of the presented key.
        actual: Fingerprint,
    },
    /// The host is recorded with a different key. This may be an attack.
    #[error(
        "WARNING: the key of server {host} has changed!\n  recorded:  {known}\n  presented: \
         {presented}\nSomeone may be impersonating the server, or its key was regenerated. \
         If you are sure the change is legitimate, remove the line for {host} from {}.",
        path_or_default(file.as_deref())
    )]
    KeyChanged {
        /// The host (lowercase).
        host: String,
        /// Fingerprint of the recorded key.
        known: Fingerprint,
        /// Fingerprint of the presented key.
        presented: Fingerprint,
        /// The known servers file to edit.
        file: Option<PathBuf>,
    },
    /// The known servers file could not be updated.
    #[error(transparent)]
    Store(KnownServersError),
}

impl From<KnownServersError> for TrustError {
    fn from(e: KnownServersError) -> Self {
        match e {
            // Another process recorded a different key between our read and our write.
            KnownServersError::Conflict {
                host,
                known,
                presented,
                path,
            } => TrustError::KeyChanged {
                host,
                known,
                presented,
                file: path,
            },
            other => TrustError::Store(other),
        }
    }
}

/// Decides whether to trust `key` presented by `host`, recording it when appropriate.
///
/// Guarantees: with `pinned`, succeeds only if the fingerprint matches and the host is not
/// recorded with another key (an unknown host is then recorded); without `pinned`, succeeds
/// if the host is recorded with this key, or is unknown (then it is recorded: trust on first
/// use). A recorded key is never replaced; errors while recording are returned.
pub fn decide(
    known: &mut KnownServers,
    host: &str,
    key: &ServerKey,
    pinned: Option<&Fingerprint>,
) -> Result<TrustDecision, TrustError> {
    let presented = key.fingerprint();
    if let Some(expected) = pinned
        && *expected != presented
    {
        return Err(TrustError::PinMismatch {
            expected: *expected,
            actual: presented,
        });
    }
    match known.lookup(host) {
        Some(recorded) if recorded == *key => Ok(match pinned {
            Some(_) => TrustDecision::Pinned,
            None => TrustDecision::Known,
        }),
        Some(recorded) => Err(TrustError::KeyChanged {
            host: host.to_ascii_lowercase(),
            known: recorded.fingerprint(),
            presented,
            file: known.path().map(PathBuf::from),
        }),
        None => {
            known.record(host, key)?;
            Ok(match pinned {
                Some(_) => TrustDecision::Pinned,
                None => TrustDecision::FirstContact {
                    fingerprint: presented,
                },
            })
        }
    }
}
