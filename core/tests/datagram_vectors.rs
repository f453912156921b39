//! Sealed-datagram vectors: `spec/vectors/datagrams.json` (spec/datagrams.md). The test
//! rebuilds every value from the fixed server key, random bytes, time and request recorded
//! in the file, including the key schedule's intermediate secrets computed from the spec's
//! formulas, and checks them byte for byte; then the server side opens each request and the
//! client side each answer, and a flipped byte anywhere is refused. With
//! `VSERV_WRITE_VECTORS=1` it writes the file instead:
//!
//! ```sh
//! VSERV_WRITE_VECTORS=1 cargo test -p vserv-core --test datagram_vectors
//! ```
// The vectors pin the real cipher, which the fuzzing build replaces.
#![cfg(not(feature = "fuzzing"))]

mod support;

use support::vector_file::{Replay, bytes, check_or_write, fill, read_vectors};

use hkdf::Hkdf;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vserv_core::datagram::{
    Answer, DatagramKey, RequestDatagram, encode_key_answer, key_query, open_request, seal_request,
};
use vserv_core::secure::keys;
use vserv_core::{Request, Response, ServerIdentity};

const SERVER_SECRET: [u8; 32] = [0x33; 32];
const TIME: u64 = 1_800_000_000;

fn server() -> (ServerIdentity, DatagramKey) {
    let id = ServerIdentity::from_secret_bytes(&SERVER_SECRET).expect("server key");
    let key = DatagramKey::from_identity(&id);
    (id, key)
}

/// The spec's key schedule (§3), computed from its formulas.
fn schedule(ephemeral_secret: &[u8; 32], header: &[u8], server_key: &[u8]) -> Value {
    let scalar = keys::scalar_from_bytes(ephemeral_secret).expect("scalar");
    let point: [u8; 33] = server_key.try_into().expect("33 bytes");
    let shared = keys::ecdh(&scalar, &point).expect("ecdh");
    let (prk, _) = Hkdf::<Sha256>::extract(Some(b"vserv/1 datagram"), shared.as_ref());
    let prk: [u8; 32] = prk.into();
    let context: [u8; 32] = Sha256::digest([header, server_key].concat()).into();
    let request = keys::expand(&prk, b"vserv/1 datagram request", &context);
    let response = keys::expand(&prk, b"vserv/1 datagram response", &context);
    let derived = |t: &[u8; 32]| {
        json!({
            "secret": hex::encode(t),
            "key": hex::encode(*keys::expand(t, b"vserv/1 key", &[])),
            "mac": hex::encode(*keys::expand(t, b"vserv/1 mac", &[])),
        })
    };
    json!({
        "shared_secret": hex::encode(*shared),
        "prk": hex::encode(prk),
        "context": hex::encode(context),
        "request": derived(&request),
        "response": derived(&response),
    })
}

/// One case: the request sealed from fixed randomness, its answer sealed with a fixed IV.
fn case(name: &str, request: Request, pad_to: usize, answer: Response, salt: u8) -> Value {
    let (id, key) = server();
    let ephemeral = [0x11u8.wrapping_add(salt); 32];
    let random = [
        ephemeral.to_vec(),
        fill(0x40 + salt, 16),
        fill(0xc0 + salt, 16),
    ]
    .concat();
    let (bytes, pending) = seal_request(
        &id.public_key(),
        &request,
        pad_to,
        TIME,
        &mut Replay(random.clone()),
    )
    .expect("seal");
    let datagram = RequestDatagram::decode(&bytes).expect("decode");
    let opened = open_request(&key, &datagram).expect("open");
    assert_eq!(opened.request, request);
    let response_iv = [0xd0u8.wrapping_add(salt); 16];
    let sealed = opened.seal_response(&answer, response_iv);
    let opened_answer = pending.open_response(&sealed.bytes).expect("open answer");
    let mut encoded_request = Vec::new();
    request.encode(&mut encoded_request);
    let mut encoded_answer = Vec::new();
    answer.encode(&mut encoded_answer);
    json!({
        "name": name,
        "time": TIME,
        "random": hex::encode(&random),
        "request": hex::encode(encoded_request),
        "pad_to": pad_to,
        "header": hex::encode(datagram.header()),
        "schedule": schedule(&ephemeral, &datagram.header(), id.public_key().as_bytes()),
        "request_datagram": hex::encode(&bytes),
        "response": hex::encode(encoded_answer),
        "response_iv": hex::encode(response_iv),
        "response_datagram": hex::encode(&sealed.bytes),
        "answer": match opened_answer {
            Answer::Response(_) => json!("response"),
            Answer::TooLarge { needed } => json!({ "too_large_needed": needed }),
        },
    })
}

fn ping(id: u32, payload: &[u8]) -> Request {
    Request {
        id,
        name: "ping".into(),
        args: vec![payload.to_vec()],
    }
}

fn build() -> Value {
    let (id, _) = server();
    json!({
        "description": "vserv sealed-datagram vectors (spec/datagrams.md). Produced by core/tests/datagram_vectors.rs (VSERV_WRITE_VECTORS=1). `random` is the client's RNG output consumed in order: ephemeral scalar (32), nonce (16), IV (16). The server opens `request_datagram` with `server_secret` at `time`; the client opens `response_datagram` with the response secret. Flipping any byte of either datagram must make it fail.",
        "server_secret": hex::encode(SERVER_SECRET),
        "server_key": hex::encode(id.public_key().as_bytes()),
        "key_query": hex::encode(key_query()),
        "key_answer": hex::encode(encode_key_answer(&id.public_key())),
        "cases": [
            case("ping", ping(1, b"hello, udp"), 0, Response { id: 1, result: Ok(vec![b"hello, udp".to_vec()]) }, 0),
            case("padded ping", ping(2, b""), 300, Response { id: 2, result: Ok(vec![Vec::new()]) }, 1),
            case("answer too large", ping(3, b"x"), 0, Response { id: 3, result: Ok(vec![vec![0x5a; 1000]]) }, 2),
        ],
    })
}

#[test]
fn datagram_vectors_match_the_file() {
    check_or_write("datagrams.json", &build());
}

#[test]
fn datagram_vectors_open_and_refuse_tampering() {
    let file = read_vectors("datagrams.json");
    let (_, key) = server();
    for c in file["cases"].as_array().expect("cases") {
        let request = bytes(&c["request_datagram"]);
        let datagram = RequestDatagram::decode(&request).expect("decode");
        assert_eq!(Some(datagram.time), c["time"].as_u64());
        let opened = open_request(&key, &datagram).expect("opens");
        let mut encoded = Vec::new();
        opened.request.encode(&mut encoded);
        assert_eq!(encoded, bytes(&c["request"]));
        for i in 0..request.len() {
            let mut bad = request.clone();
            bad[i] ^= 0x01;
            let refused = RequestDatagram::decode(&bad).and_then(|d| open_request(&key, &d));
            assert!(refused.is_err(), "{}: byte {i} flipped opens", c["name"]);
        }
    }
}
