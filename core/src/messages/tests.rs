//! Sealing properties: a round trip gives back the text and the sender's key; any single
//! changed byte, another recipient key or name, or a signature by another key is refused;
//! the decoder never panics. (The real cipher and signatures only: the fuzzing build
//! replaces them.)
#![cfg(not(feature = "fuzzing"))]

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

fn key(seed: u64) -> MessageKey {
    MessageKey::generate(&mut StdRng::seed_from_u64(seed))
}

fn sealed(text: &[u8], seed: u64) -> (MessageKey, MessageKey, SealedMessage) {
    let (alice, bob) = (key(1), key(2));
    let mut rng = StdRng::seed_from_u64(seed);
    let m = seal(
        &alice,
        "alice",
        &bob.public(),
        "bob",
        1_700_000_000,
        text,
        &mut rng,
    )
    .expect("seal");
    (alice, bob, m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(text in proptest::collection::vec(any::<u8>(), 0..600), seed in any::<u64>()) {
        let (alice, bob, m) = sealed(&text, seed);
        let bytes = m.to_bytes();
        prop_assert_eq!(SealedMessage::decode(&bytes), Ok(m.clone()));
        let opened = open(&bob, "bob", &bytes).expect("open");
        prop_assert_eq!(opened.text, text);
        prop_assert_eq!(opened.sender_key, alice.public());
        prop_assert_eq!(opened.from, "alice");
        prop_assert_eq!(opened.time, 1_700_000_000);
    }

    #[test]
    fn any_single_byte_mutation_is_refused(
        text in proptest::collection::vec(any::<u8>(), 0..100),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (_, bob, m) = sealed(&text, seed);
        let mut bytes = m.to_bytes();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(open(&bob, "bob", &bytes).is_err());
    }

    #[test]
    fn decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(m) = SealedMessage::decode(&data) {
            prop_assert_eq!(m.to_bytes(), data);
        }
    }
}

#[test]
fn another_recipient_key_or_name_is_refused() {
    let (_, bob, m) = sealed(b"hi", 7);
    let bytes = m.to_bytes();
    assert_eq!(open(&key(3), "bob", &bytes), Err(MessageError::NotForMe));
    assert_eq!(open(&bob, "carol", &bytes), Err(MessageError::NotForMe));
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let (_, bob, mut m) = sealed(b"hi", 8);
    let mallory = key(4);
    m.signature = mallory.sign(&signed_message_of(&m));
    assert_eq!(
        open(&bob, "bob", &m.to_bytes()),
        Err(MessageError::BadSignature)
    );
}

#[test]
fn a_resealed_header_naming_another_sender_fails_authentication() {
    // Mallory keeps Alice's ciphertext but signs it as herself: the key schedule binds the
    // sender key, so the record no longer opens.
    let (_, bob, mut m) = sealed(b"hi", 9);
    let mallory = key(4);
    m.header.sender_key = mallory.public();
    m.signature = mallory.sign(&signed_message_of(&m));
    assert_eq!(
        open(&bob, "bob", &m.to_bytes()),
        Err(MessageError::BadCiphertext)
    );
}

#[test]
fn limits_are_enforced() {
    let (alice, bob) = (key(1), key(2));
    let mut rng = StdRng::seed_from_u64(1);
    let long = vec![b'x'; MAX_MESSAGE_TEXT + 1];
    assert!(matches!(
        seal(&alice, "alice", &bob.public(), "bob", 0, &long, &mut rng),
        Err(MessageError::TooLarge(_))
    ));
    assert!(matches!(
        seal(&alice, "", &bob.public(), "bob", 0, b"x", &mut rng),
        Err(MessageError::TooLarge(_))
    ));
    let full = vec![b'x'; MAX_MESSAGE_TEXT];
    let m = seal(&alice, "alice", &bob.public(), "bob", 0, &full, &mut rng).expect("seal");
    assert!(m.to_bytes().len() <= MAX_SEALED_MESSAGE);
    assert_eq!(open(&bob, "bob", &m.to_bytes()).expect("open").text, full);
}

fn signed_message_of(m: &SealedMessage) -> Vec<u8> {
    [SIGNATURE_CONTEXT, &m.signed_part()].concat()
}
