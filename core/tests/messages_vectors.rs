//! Sealed-message vectors: `spec/vectors/messages.json`. The test rebuilds every value from
//! the fixed keys and random bytes recorded in the file and checks it byte for byte; it then
//! opens each sealed message and checks the refusals listed beside them. With
//! `VSERV_WRITE_VECTORS=1` it writes the file instead:
//!
//! ```sh
//! VSERV_WRITE_VECTORS=1 cargo test -p vserv-core --test messages_vectors
//! ```
// The vectors pin the real cipher and signatures, which the fuzzing build replaces.
#![cfg(not(feature = "fuzzing"))]

mod support;

use support::vector_file::{Replay, bytes, check_or_write, fill, read_vectors};

use serde_json::{Value, json};
use vserv_core::messages::{MessageError, MessageKey, SealedMessage, open, seal};

/// One case: keys, names, time, text and the random bytes; the sealed bytes follow.
fn case(name: &str, text: &[u8], time: u64, salt: u8) -> Value {
    let sender_secret = [0x11u8.wrapping_add(salt); 32];
    let recipient_secret = [0x22u8.wrapping_add(salt); 32];
    let random = [
        fill(0x30 + salt, 32),
        fill(0x50 + salt, 32),
        fill(0x70 + salt, 16),
    ]
    .concat();
    let sender = MessageKey::from_secret_bytes(&sender_secret).expect("sender key");
    let recipient = MessageKey::from_secret_bytes(&recipient_secret).expect("recipient key");
    let sealed = seal(
        &sender,
        "alice",
        &recipient.public(),
        "bob",
        time,
        text,
        &mut Replay(random.clone()),
    )
    .expect("seal");
    json!({
        "name": name,
        "sender_secret": hex::encode(sender_secret),
        "sender_public": hex::encode(sender.public().as_bytes()),
        "recipient_secret": hex::encode(recipient_secret),
        "recipient_public": hex::encode(recipient.public().as_bytes()),
        "from": "alice",
        "to": "bob",
        "time": time,
        "text": hex::encode(text),
        "random": hex::encode(random),
        "sealed": hex::encode(sealed.to_bytes()),
    })
}

fn build() -> Value {
    json!({
        "description": "vserv sealed-message vectors (spec/messages.md). Produced by core/tests/messages_vectors.rs (VSERV_WRITE_VECTORS=1). `random` is the RNG output consumed in order: ephemeral scalar (32), nonce (32), IV (16). Every case opens as `to` with the recipient secret; flipping any byte of `sealed` must make it fail.",
        "cases": [
            case("empty text", b"", 0, 0),
            case("short text", b"hello bob", 1_700_000_000, 1),
            case("two blocks", &fill(0x41, 40), 1_800_000_000, 2),
        ],
    })
}

#[test]
fn message_vectors_match_the_file() {
    check_or_write("messages.json", &build());
}

#[test]
fn message_vectors_open_and_refuse_tampering() {
    let file = read_vectors("messages.json");
    for c in file["cases"].as_array().expect("cases") {
        let secret: [u8; 32] = bytes(&c["recipient_secret"]).try_into().expect("32 bytes");
        let key = MessageKey::from_secret_bytes(&secret).expect("key");
        let sealed = bytes(&c["sealed"]);
        let to = c["to"].as_str().expect("to");
        let opened = open(&key, to, &sealed).expect("opens");
        assert_eq!(opened.text, bytes(&c["text"]));
        assert_eq!(
            opened.sender_key.as_bytes().to_vec(),
            bytes(&c["sender_public"])
        );
        assert_eq!(Some(opened.time), c["time"].as_u64());
        assert!(SealedMessage::decode(&sealed).is_ok());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                open(&key, to, &bad).is_err(),
                "byte {i} flipped still opens"
            );
        }
        assert_eq!(open(&key, "carol", &sealed), Err(MessageError::NotForMe));
    }
}
