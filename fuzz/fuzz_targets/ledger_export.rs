#![no_main]
//! `verify_export` on arbitrary bytes, against the fingerprint of the key the header names
//! (when it names a valid one), so mutations get past the header to the entry and head lines.

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
    let _ = vserv_service::ledger_export::verify_export(data, &expected);
});
