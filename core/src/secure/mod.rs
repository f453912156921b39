//! The secure channel's cryptography: identities, key schedule and record protection.
//! The handshake's message flow lives in [`crate::session`]; everything here is a pure function
//! of its inputs.

pub mod cbc_lanes;
pub mod identity;
pub mod keys;
pub mod record;

pub use identity::{Fingerprint, ServerIdentity, ServerKey};
pub use record::RecordKeys;
