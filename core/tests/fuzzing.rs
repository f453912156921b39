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
