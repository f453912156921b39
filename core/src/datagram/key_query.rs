//! Key discovery (spec/datagrams.md §7): a client that knows only the server's fingerprint
//! (or nothing yet) asks for the server's public key with an unsealed datagram and checks
//! the answer against the fingerprint it pinned. The query is padded to [`KEY_QUERY_LEN`]
//! bytes and the answer is smaller, so a forged source gains nothing by it.

use super::{DatagramError, KIND_KEY_ANSWER, KIND_KEY_QUERY};
use crate::secure::ServerKey;
use crate::wire::POINT_LEN;

/// Length of a key query: the kind byte and 63 zero bytes.
pub const KEY_QUERY_LEN: usize = 64;

/// Length of a key answer: the kind byte and the server's 33-byte key.
pub const KEY_ANSWER_LEN: usize = 1 + POINT_LEN;

// No amplification: the answer is smaller than the query.
const _: () = assert!(KEY_ANSWER_LEN < KEY_QUERY_LEN);

/// The key query's bytes.
pub fn key_query() -> [u8; KEY_QUERY_LEN] {
    let mut out = [0u8; KEY_QUERY_LEN];
    out[0] = KIND_KEY_QUERY;
    out
}

/// Whether `data` is exactly a key query: [`KEY_QUERY_LEN`] bytes, the kind byte, then
/// zeros. Anything else of that kind is `Truncated` (short or long) or `Malformed`.
pub fn check_key_query(data: &[u8]) -> Result<(), DatagramError> {
    match data.split_first() {
        None => Err(DatagramError::Truncated),
        Some((&KIND_KEY_QUERY, rest)) => {
            if data.len() != KEY_QUERY_LEN {
                Err(DatagramError::Truncated)
            } else if rest.iter().any(|&b| b != 0) {
                Err(DatagramError::Malformed("key query padding"))
            } else {
                Ok(())
            }
        }
        Some(_) => Err(DatagramError::BadVersion),
    }
}

/// The answer to a key query: the kind byte and `key`.
pub fn encode_key_answer(key: &ServerKey) -> [u8; KEY_ANSWER_LEN] {
    let mut out = [0u8; KEY_ANSWER_LEN];
    out[0] = KIND_KEY_ANSWER;
    out[1..].copy_from_slice(key.as_bytes());
    out
}

/// Decodes a key answer into a validated key. The caller still compares it with the
/// fingerprint it pinned: the answer itself is not authenticated.
pub fn decode_key_answer(data: &[u8]) -> Result<ServerKey, DatagramError> {
    match data.split_first() {
        None => Err(DatagramError::Truncated),
        Some((&KIND_KEY_ANSWER, key)) => {
            if key.len() != POINT_LEN {
                return Err(DatagramError::Truncated);
            }
            ServerKey::from_bytes(key).map_err(|_| DatagramError::BadPoint)
        }
        Some(_) => Err(DatagramError::BadVersion),
    }
}
