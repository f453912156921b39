//! The secure channel's cryptography: identities, key schedule and record protection.
//! The handshake's message flow lives in [`crate::session`]; everything here is a pure function
//! of its inputs. `provider` is the one seam where the `fuzzing` feature swaps the checks and
//! the cipher for a null implementation.

pub mod cbc_lanes;
pub mod identity;
pub mod keys;
mod provider;
// In the fuzzing build the null provider stands in for the record cipher, leaving it unused.
#[cfg_attr(feature = "fuzzing", allow(dead_code))]
pub mod record;

pub use identity::{Fingerprint, ServerIdentity, ServerKey};
pub use record::RecordKeys;
