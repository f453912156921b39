//! `cargo bench -p vserv-core --bench record`: record seal/open at 16 KiB (divan).
//!
//! IVs are fixed so no RNG cost is measured. A record can be opened only once, at its sequence
//! number, so each `open` input carries a fresh receiver and a record sealed for it; building
//! them is untimed.

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use vserv_core::secure::RecordKeys;
use vserv_core::secure::keys::expand;
use vserv_core::wire::{CONTENT_APP, MAX_PAYLOAD};

const SIZE: usize = MAX_PAYLOAD;

fn main() {
    // The timed closures ignore results; make sure they are successes.
    let (mut receiver, mut frame) = sealed();
    let opened = receiver.open(&mut frame[4..]).map(|(t, p)| (t, p.len()));
    assert_eq!(opened, Ok((CONTENT_APP, SIZE)), "seal/open round trip");
    divan::main();
}

fn keys() -> RecordKeys {
    RecordKeys::from_secret(expand(&[0x42; 32], b"vserv bench", &[]))
}

/// A fresh receiver and one record sealed for it.
fn sealed() -> (RecordKeys, Vec<u8>) {
    let mut frame = Vec::with_capacity(SIZE + 128);
    let ok = keys()
        .seal(CONTENT_APP, &[0x5a; SIZE], [7; 16], &mut frame)
        .is_ok();
    assert!(ok, "sealing a full-size payload");
    (keys(), frame)
}

#[divan::bench]
fn seal_16k(bencher: Bencher) {
    let mut keys = keys();
    let payload = vec![0x5a_u8; SIZE];
    let mut out = Vec::with_capacity(SIZE + 128);
    bencher.counter(BytesCount::new(SIZE)).bench_local(|| {
        out.clear();
        keys.seal(CONTENT_APP, black_box(&payload), [7; 16], &mut out)
            .is_ok()
    });
}

#[divan::bench]
fn open_16k(bencher: Bencher) {
    bencher
        .counter(BytesCount::new(SIZE))
        .with_inputs(sealed)
        .bench_local_refs(|(receiver, frame)| {
            receiver
                .open(&mut frame[4..])
                .map(|(t, p)| (t, p.len()))
                .is_ok()
        });
}
