#![no_main]
//! The core's export verifier on arbitrary bytes, against the fingerprint of the key the
//! header names (when it names a valid one), so mutations get past the header to the entry
//! and head lines. The first byte also picks a chunk size: the verdict fed in chunks must be
//! the verdict fed whole.

use vserv_core::ledger::export::{ExportVerifier, verify_export};
use vserv_core::{Fingerprint, ServerKey};

fn header_key(data: &[u8]) -> Option<Fingerprint> {
    const TAG: &[u8] = b"\"origin\":\"";
    let at = data.windows(TAG.len()).position(|w| w == TAG)? + TAG.len();
    let hex = data.get(at..at + 66)?;
    let mut bytes = [0u8; 33];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        bytes[i] = u8::from_str_radix(text, 16).ok()?;
    }
    ServerKey::from_bytes(&bytes).ok().map(|k| k.fingerprint())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let expected = header_key(data).unwrap_or(Fingerprint([0; 32]));
    let whole = verify_export(data, &expected);
    let split = usize::from(data.first().copied().unwrap_or(0)) + 1;
    let mut verifier = ExportVerifier::new(expected);
    let chunked = data
        .chunks(split)
        .try_for_each(|chunk| verifier.push(chunk))
        .and_then(|()| verifier.finish());
    assert_eq!(whole, chunked, "the chunking changed the verdict");
});
