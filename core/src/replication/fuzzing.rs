//! Bodies of the replication fuzz targets (compiled only with the `fuzzing` feature; each
//! target in `fuzz/fuzz_targets/` is a one-line call into this module).
//!
//! Under the `fuzzing` feature signatures are not checked (see `crate::fuzzing`), so the
//! fuzzer reaches the code behind them. Every function panics only when replication breaks
//! one of its own promises: a decoder accepts bytes it would not have produced, the reader
//! gives other messages (or fails elsewhere) when the stream is split differently.

use super::ReplicationError;
use super::fork::ForkProof;
use super::message::{Message, MessageReader};
use crate::fuzzing::FuzzRng;

/// Every message decoder and the stream reader. Byte 0 picks the piece size of the split
/// stream (0 = one piece); the rest is decoded three ways: as one frame's content (type byte
/// and body) and as a fork proof encoding (whatever decodes must re-encode to the same
/// bytes), and as a stream, whole and split, which must give the same messages and the same
/// error.
pub fn replication_message(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    if let Ok(m) = Message::decode(rest) {
        assert_eq!(&m.to_frame()[4..], rest, "message re-encodes differently");
    }
    if let Ok(p) = ForkProof::decode(rest) {
        assert_eq!(p.to_bytes(), rest, "fork proof re-encodes differently");
        let _ = p.verify();
    }
    let whole = read(rest, 0);
    let split = read(rest, chunk);
    assert_eq!(whole, split, "splitting the stream changed what was read");
    for m in whole.0 {
        assert!(m.to_frame().len() <= 4 + m.kind().max_len());
    }
}

/// Reads `stream` in pieces of `1..=chunk` bytes (0 = whole): the messages, then the error
/// if one came.
fn read(stream: &[u8], chunk: u8) -> (Vec<Message>, Option<ReplicationError>) {
    let mut rng = FuzzRng::new(u64::from(chunk));
    let mut reader = MessageReader::new();
    let mut out = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = if chunk == 0 {
            rest.len()
        } else {
            1 + (rng.step() % u64::from(chunk)) as usize
        };
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        reader.push(piece);
        loop {
            match reader.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}
