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
    /// The key matches the pinned fingerprint, but the host is recorded with another key
    /// (accepted only under [`PinOverRecord::KeepRecord`] or [`PinOverRecord::Replace`]).
    PinnedOverRecorded {
        /// Fingerprint of the key recorded for the host before this connection.
        recorded: Fingerprint,
        /// Whether the record now holds the pinned key.
        replaced: bool,
    },
}

/// What an explicit pin does when the host is recorded with a different key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PinOverRecord {
    /// Refuse, as without a pin ([`TrustError::KeyChanged`]).
    #[default]
    Refuse,
    /// Trust the pinned key for this connection; leave the record as it is.
    KeepRecord,
    /// Trust the pinned key and record it in place of the old one.
    Replace,
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
    decide_with(known, host, key, pinned, PinOverRecord::Refuse)
}

/// [`decide`], except that a matching `pinned` fingerprint wins over a different recorded
/// key as `over_record` says (with no pin, a changed key is refused whatever it says).
///
/// Guarantees: under [`PinOverRecord::KeepRecord`] the file is not written; under
/// [`PinOverRecord::Replace`] the host's record holds the pinned key afterwards.
pub fn decide_with(
    known: &mut KnownServers,
    host: &str,
    key: &ServerKey,
    pinned: Option<&Fingerprint>,
    over_record: PinOverRecord,
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
        Some(recorded) if pinned.is_some() && over_record != PinOverRecord::Refuse => {
            let replaced = over_record == PinOverRecord::Replace;
            if replaced {
                known.replace(host, key)?;
            }
            Ok(TrustDecision::PinnedOverRecorded {
                recorded: recorded.fingerprint(),
                replaced,
            })
        }
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
