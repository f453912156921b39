//! The fuzz targets' bodies (`--features fuzzing` only): every seed of the corpus runs
//! through its target without breaking a promise, so the seeds and the targets agree on the
//! input layouts.
#![cfg(feature = "fuzzing")]

use std::time::Instant;

use vserv_core::fuzzing;

#[test]
#[allow(clippy::disallowed_methods)] // one real instant as the epoch of the targets' clock
fn every_seed_passes_its_target() {
    let now = Instant::now();
    let mut targets = std::collections::BTreeSet::new();
    for (target, name, bytes) in fuzzing::corpus_seeds() {
        match target {
            "client_hello" => fuzzing::client_hello(&bytes),
            "server_hello" => fuzzing::server_hello(&bytes),
            "server_auth" => fuzzing::server_auth(&bytes),
            "client_finished" => fuzzing::client_finished(&bytes),
            "close" => fuzzing::close(&bytes),
            "command" => fuzzing::command(&bytes),
            "deframer" => fuzzing::deframer(&bytes),
            "notice" => fuzzing::notice(&bytes),
            "sealed_message" => fuzzing::sealed_message(&bytes),
            "transit_token" => fuzzing::transit_token(&bytes),
            "datagram" => vserv_core::datagram::fuzz::datagram(&bytes),
            "server_connection" => fuzzing::server_connection(&bytes, now),
            "client_connection" => fuzzing::client_connection(&bytes, now),
            "replication_message" => vserv_core::replication::fuzzing::replication_message(&bytes),
            "replication_link" => vserv_core::replication::fuzzing::replication_link(&bytes, now),
            other => panic!("seed {name} for an unknown target {other}"),
        }
        targets.insert(target);
    }
    assert_eq!(targets.len(), 15, "a target without seeds: {targets:?}");
}

/// Every seed [`fuzzing::corpus_seeds`] makes is committed as `write_corpus` writes it
/// (`fuzz/corpus/<target>/seed_<name>`), byte for byte. (Targets outside it, such as the
/// ledger's and `user_path`, have seeds of their own.)
#[test]
fn the_committed_seeds_are_the_generated_ones() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (target, name, bytes) in fuzzing::corpus_seeds() {
        let path = root.join(target).join(format!("seed_{name}"));
        assert_eq!(
            std::fs::read(&path).ok(),
            Some(bytes),
            "{} is missing or stale: run `cargo run --manifest-path fuzz/Cargo.toml \
             --example write_corpus`",
            path.display()
        );
    }
}

/// Inputs on which a fuzz run once found a broken promise pass their targets now.
#[test]
#[allow(clippy::disallowed_methods)] // one real instant as the epoch of the targets' clock
fn inputs_the_fuzzers_broke_pass_now() {
    // A response whose fields decode as table infos with NUL and other control bytes in a
    // name and an error: the decoder took them, the encoder sends them as spaces, so the
    // info did not survive its round trip. Infos with control characters are refused now.
    let command: &[u8] = b"\x02\x00\x00\x00\x04\x00\x00\x02\x00\x00\x000c\x00d\x00\x00\x00\
        \x00\x00\x00\x00\x00\x10\x00$a1ef\x092\x09\x09c4c0681s18c73114c)3\x127\x04fuzz\x00\
        \x00\x00GSHA512:a79'723f390\x000c\x00d\x00\x00\x00\x00\x00\x00\x00\x00\x10\x00$a1ef\
        \x092\x09\x09c4c0681s18c73114c)3317c493275";
    assert_eq!(command.len(), 135);
    fuzzing::command(command);
    // A response of one `peers` field whose address holds a carriage return: the same
    // round trip, through `PeerStatus` (found by reading the code after the one above).
    let field = format!("peer\tSHA256:{}\ta\rb\tdown\t\t\t", "01".repeat(32));
    let mut peers = b"\x02\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00".to_vec();
    peers.push(u8::try_from(field.len()).expect("a short field"));
    peers.extend_from_slice(field.as_bytes());
    fuzzing::command(&peers);
    // A link that sends a Wants first, an empty stream, then the timer: the harness read
    // the Wants it had never drained where it expected the timer's Clock.
    vserv_core::replication::fuzzing::replication_link(&[0xe9, 0x06], Instant::now());
}
