//! An admin's `padd` and `pdel` (spec/replication.md §2.2): adding and removing replication
//! peers at runtime, and their error replies. The peer tables themselves are `peers.rs`'s.

use vserv_core::commands::Reply;
use vserv_core::{ErrorCode, ErrorReply, Fingerprint};

use super::Service;
use super::peers::{PeerAdminError, PeerConfig};

impl Service {
    /// Adds `peer` as a runtime peer (kept in the store), or changes the address of a
    /// runtime peer: its links are accepted at once and, with an address, it is dialed
    /// (the runtime's duty waker is woken). A config peer is refused.
    ///
    /// # Errors
    ///
    /// [`PeerAdminError`]: nothing changed.
    pub fn add_peer(&self, peer: PeerConfig) -> Result<(), PeerAdminError> {
        self.shared
            .peers
            .as_ref()
            .ok_or(PeerAdminError::NotReplicating)?
            .add(peer)
    }

    /// Removes the runtime peer `fingerprint` (from the store too): its links close with a
    /// reason saying so, it is no longer dialed and its links are refused. A config peer is
    /// refused.
    ///
    /// # Errors
    ///
    /// [`PeerAdminError`]: nothing changed.
    pub fn remove_peer(&self, fingerprint: &Fingerprint) -> Result<(), PeerAdminError> {
        self.shared
            .peers
            .as_ref()
            .ok_or(PeerAdminError::NotReplicating)?
            .remove(fingerprint)
    }

    /// `padd FPR [ADDR]`.
    pub(super) fn padd_reply(
        &self,
        fingerprint: Fingerprint,
        address: Option<String>,
    ) -> Result<Reply, ErrorReply> {
        self.add_peer(PeerConfig {
            fingerprint,
            address,
        })
        .map(|()| Reply::Done)
        .map_err(admin_error)
    }

    /// `pdel FPR`.
    pub(super) fn pdel_reply(&self, fingerprint: &Fingerprint) -> Result<Reply, ErrorReply> {
        self.remove_peer(fingerprint)
            .map(|()| Reply::Done)
            .map_err(admin_error)
    }
}

/// The error reply of a refused `padd` or `pdel`.
fn admin_error(e: PeerAdminError) -> ErrorReply {
    let code = match &e {
        PeerAdminError::NotReplicating => ErrorCode::Forbidden,
        PeerAdminError::OwnKey(_) | PeerAdminError::BadAddress(_) => ErrorCode::BadArguments,
        PeerAdminError::InConfig(_) | PeerAdminError::TooMany => ErrorCode::Conflict,
        PeerAdminError::Unknown(_) => ErrorCode::NotFound,
        PeerAdminError::Store(_) => {
            tracing::error!(error = %e, "storing a peer failed");
            return ErrorReply::new(ErrorCode::Internal, "could not store the peer change");
        }
    };
    ErrorReply::new(code, e.to_string())
}
