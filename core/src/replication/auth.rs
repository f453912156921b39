//! Link authentication: the signature a dialing server sends in the `peer` command.
//!
//! The dialer has already pinned the listener's key through the handshake; it proves its own
//! key by signing, with its identity key, `PEER_LINK_CONTEXT || 0x00 || session_id`, as a key
//! login does (`spec/protocol.md` §13.1). The session id is unique to the connection, so the
//! signature is useless on any other one, and the context keeps it from being mistaken for a
//! ledger head or a user login signature.

use super::ReplicationError;
use crate::wire::SIGNATURE_LEN;
use crate::{ServerIdentity, ServerKey};

/// Domain-separation context of the peer link signature (followed by one zero byte).
pub const PEER_LINK_CONTEXT: &[u8] = b"vserv/1 peer link";

const MESSAGE_LEN: usize = PEER_LINK_CONTEXT.len() + 1 + 32;

/// The exact bytes the dialer signs: `"vserv/1 peer link" || 0x00 || session_id[32]`
/// (50 bytes).
pub fn peer_link_message(session_id: &[u8; 32]) -> [u8; MESSAGE_LEN] {
    let mut m = [0u8; MESSAGE_LEN];
    let c = PEER_LINK_CONTEXT.len();
    m[..c].copy_from_slice(PEER_LINK_CONTEXT);
    // m[c] stays 0: the separator.
    m[c + 1..].copy_from_slice(session_id);
    m
}

/// The dialer's signature over [`peer_link_message`] (deterministic ECDSA-SHA256, r || s).
pub fn sign_peer_link(identity: &ServerIdentity, session_id: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
    identity.sign(&peer_link_message(session_id))
}

/// Checks a `peer` command's signature: `Ok` only if `signature` was made by `key` over this
/// connection's `session_id`.
pub fn verify_peer_link(
    key: &ServerKey,
    session_id: &[u8; 32],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), ReplicationError> {
    key.verify(&peer_link_message(session_id), signature)
        .map_err(|_| ReplicationError::BadPeerSignature)
}
