//! Datagram properties: sealing round-trips; every decoder refuses bad input without
//! panicking; any changed bit, a truncation, another server key or another request's answer
//! is refused; the replay guard refuses replayed, stale, future and evicted-then-replayed
//! requests; answers never exceed the amplification budget; the rate limiter stays bounded.
//! (The real cipher only: the fuzzing build replaces it.)
#![cfg(not(feature = "fuzzing"))]

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::secure::ServerIdentity;
use crate::{ErrorCode, ErrorReply, Request, Response};

const NOW: u64 = 1_800_000_000;

fn server(seed: u64) -> (ServerIdentity, DatagramKey) {
    let id = ServerIdentity::generate(&mut StdRng::seed_from_u64(seed));
    let key = DatagramKey::from_identity(&id);
    (id, key)
}

fn ping(payload: &[u8]) -> Request {
    Request {
        id: 7,
        name: "ping".into(),
        args: vec![payload.to_vec()],
    }
}

fn sealed(
    key: &DatagramKey,
    request: &Request,
    pad_to: usize,
    seed: u64,
) -> (Vec<u8>, PendingRequest) {
    seal_request(
        &key.public(),
        request,
        pad_to,
        NOW,
        &mut StdRng::seed_from_u64(seed),
    )
    .expect("seal")
}

fn open(key: &DatagramKey, bytes: &[u8]) -> Result<OpenedRequest, DatagramError> {
    open_request(key, &RequestDatagram::decode(bytes)?)
}

fn echo(opened: &OpenedRequest) -> Response {
    Response {
        id: opened.request.id,
        result: Ok(opened.request.args.clone()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn request_and_response_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..400),
        pad_to in 0usize..2000,
        seed in any::<u64>(),
    ) {
        let (_, key) = server(1);
        let request = ping(&payload);
        let (bytes, pending) = sealed(&key, &request, pad_to, seed);
        prop_assert!(bytes.len() >= pad_to.min(MAX_DATAGRAM));
        prop_assert!(bytes.len() < pad_to.max(MIN_REQUEST) + 16 + 2 + request.encoded_len() + 64);
        prop_assert_eq!(pending.request_len(), bytes.len());
        let opened = open(&key, &bytes).expect("open");
        prop_assert_eq!(&opened.request, &request);
        prop_assert_eq!(opened.time, NOW);
        prop_assert_eq!(opened.request_len(), bytes.len());
        let answer = opened.seal_response(&echo(&opened), [9; 16]);
        prop_assert!(answer.bytes.len() <= AMPLIFICATION_FACTOR * bytes.len());
        match pending.open_response(&answer.bytes).expect("open response") {
            Answer::Response(r) => {
                prop_assert!(answer.too_large.is_none());
                prop_assert_eq!(r, echo(&opened));
            }
            Answer::TooLarge { needed } => {
                prop_assert_eq!(answer.too_large, Some(needed));
                prop_assert!(needed > bytes.len());
            }
        }
    }

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (_, key) = server(1);
        if let Ok(d) = RequestDatagram::decode(&data) {
            prop_assert_eq!(d.to_bytes(), data.clone());
            prop_assert!(open_request(&key, &d).is_err());
        }
        if let Ok(d) = ResponseDatagram::decode(&data) {
            prop_assert_eq!(d.to_bytes(), data.clone());
        }
        let _ = decode_key_answer(&data);
        let _ = check_key_query(&data);
        let (_, pending) = sealed(&key, &ping(b""), 0, 3);
        prop_assert!(pending.open_response(&data).is_err());
    }

    #[test]
    fn decoders_never_panic_on_right_kinds(
        kind in prop::sample::select(vec![KIND_KEY_QUERY, KIND_REQUEST, KIND_RESPONSE, KIND_KEY_ANSWER]),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let data = [&[kind][..], &rest].concat();
        let (_, key) = server(1);
        if let Ok(d) = RequestDatagram::decode(&data) {
            prop_assert!(open_request(&key, &d).is_err());
        }
        let _ = ResponseDatagram::decode(&data);
        let _ = decode_key_answer(&data);
        let _ = check_key_query(&data);
    }
}

#[test]
fn every_bit_flip_of_a_request_is_refused() {
    let (_, key) = server(1);
    let (bytes, _) = sealed(&key, &ping(b"flip"), 0, 5);
    assert!(open(&key, &bytes).is_ok());
    for i in 0..bytes.len() * 8 {
        let mut forged = bytes.clone();
        forged[i / 8] ^= 1 << (i % 8);
        assert!(open(&key, &forged).is_err(), "bit {i} flipped was accepted");
    }
}

#[test]
fn every_bit_flip_of_a_response_is_refused() {
    let (_, key) = server(1);
    let (bytes, pending) = sealed(&key, &ping(b"flip"), 0, 5);
    let opened = open(&key, &bytes).expect("open");
    let answer = opened.seal_response(&echo(&opened), [1; 16]).bytes;
    assert!(pending.open_response(&answer).is_ok());
    for i in 0..answer.len() * 8 {
        let mut forged = answer.clone();
        forged[i / 8] ^= 1 << (i % 8);
        assert!(
            pending.open_response(&forged).is_err(),
            "bit {i} flipped was accepted"
        );
    }
}

#[test]
fn truncations_are_refused() {
    let (_, key) = server(1);
    let (bytes, pending) = sealed(&key, &ping(b"truncate me"), 0, 5);
    let opened = open(&key, &bytes).expect("open");
    let answer = opened.seal_response(&echo(&opened), [1; 16]).bytes;
    for n in 0..bytes.len() {
        assert!(
            open(&key, &bytes[..n]).is_err(),
            "request cut to {n} accepted"
        );
    }
    assert_eq!(open(&key, &[]).unwrap_err(), DatagramError::Truncated);
    assert_eq!(
        open(&key, &bytes[..MIN_REQUEST - 1]).unwrap_err(),
        DatagramError::Truncated
    );
    for n in 0..answer.len() {
        assert!(
            pending.open_response(&answer[..n]).is_err(),
            "answer cut to {n} accepted"
        );
    }
}

#[test]
fn typed_errors_in_check_order() {
    let (_, key) = server(1);
    let (bytes, _) = sealed(&key, &ping(b"x"), 0, 5);
    let mut other_kind = bytes.clone();
    other_kind[0] = 0xd9;
    assert_eq!(
        open(&key, &other_kind).unwrap_err(),
        DatagramError::BadVersion
    );
    let mut bad_point = bytes.clone();
    bad_point[1] = 0x04;
    assert_eq!(open(&key, &bad_point).unwrap_err(), DatagramError::BadPoint);
    let mut off_curve = bytes.clone();
    // x = 5 is not the x-coordinate of a point of secp256k1.
    off_curve[2..34].copy_from_slice(&[0; 32]);
    off_curve[33] = 5;
    assert_eq!(open(&key, &off_curve).unwrap_err(), DatagramError::BadPoint);
    let mut tag = bytes.clone();
    let last = tag.len() - 1;
    tag[last] ^= 1;
    assert_eq!(open(&key, &tag).unwrap_err(), DatagramError::BadMac);
    let mut big = bytes.clone();
    big.resize(MAX_DATAGRAM + 1, 0);
    assert_eq!(open(&key, &big).unwrap_err(), DatagramError::TooLarge);
    let mut ragged = bytes.clone();
    ragged.push(0);
    assert_eq!(open(&key, &ragged).unwrap_err(), DatagramError::Truncated);
}

#[test]
fn a_request_sealed_to_another_server_is_refused() {
    let (_, key) = server(1);
    let (_, other) = server(2);
    let (bytes, _) = sealed(&other, &ping(b"x"), 0, 5);
    assert_eq!(open(&key, &bytes).unwrap_err(), DatagramError::BadMac);
}

#[test]
fn an_answer_from_another_server_or_request_is_refused() {
    let (_, key) = server(1);
    let (_, other) = server(2);
    let (bytes, pending) = sealed(&key, &ping(b"x"), 0, 5);
    let (other_bytes, _) = sealed(&other, &ping(b"x"), 0, 5);
    // Same randomness: same nonce, but the other server's keys.
    let forged = open(&other, &other_bytes).expect("open");
    let answer = forged.seal_response(&echo(&forged), [1; 16]).bytes;
    assert_eq!(
        pending.open_response(&answer).unwrap_err(),
        DatagramError::BadMac
    );
    let (_, second) = sealed(&key, &ping(b"x"), 0, 6);
    let real = open(&key, &bytes).expect("open");
    let answer = real.seal_response(&echo(&real), [1; 16]).bytes;
    assert!(second.open_response(&answer).is_err());
    assert!(pending.open_response(&answer).is_ok());
}

#[test]
fn requests_too_large_to_seal_are_refused() {
    let (_, key) = server(1);
    let err = seal_request(
        &key.public(),
        &ping(&[0; MAX_DATAGRAM]),
        0,
        NOW,
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(err.unwrap_err(), DatagramError::TooLarge);
    let err = seal_request(
        &key.public(),
        &ping(b""),
        MAX_DATAGRAM + 1,
        NOW,
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(err.unwrap_err(), DatagramError::TooLarge);
    let (bytes, _) = sealed(&key, &ping(b""), MAX_DATAGRAM, 1);
    assert!(bytes.len() <= MAX_DATAGRAM && bytes.len() > MAX_DATAGRAM - 16);
}

#[test]
fn an_oversized_answer_says_how_much_padding_it_needs() {
    let (_, key) = server(1);
    let big = Response {
        id: 7,
        result: Ok(vec![vec![0xab; 2000]]),
    };
    let (bytes, pending) = sealed(&key, &ping(b""), 0, 5);
    let opened = open(&key, &bytes).expect("open");
    let answer = opened.seal_response(&big, [1; 16]);
    assert!(answer.bytes.len() <= AMPLIFICATION_FACTOR * bytes.len());
    let Answer::TooLarge { needed } = pending.open_response(&answer.bytes).expect("open") else {
        panic!("expected too large");
    };
    assert_eq!(answer.too_large, Some(needed));
    // Padded to what it needs, the same request gets the whole answer.
    let (padded, pending) = sealed(&key, &ping(b""), needed, 6);
    assert!(padded.len() >= needed);
    let opened = open(&key, &padded).expect("open");
    let answer = opened.seal_response(&big, [1; 16]);
    assert!(answer.bytes.len() <= AMPLIFICATION_FACTOR * padded.len());
    assert_eq!(
        pending.open_response(&answer.bytes).expect("open"),
        Answer::Response(big)
    );
    // An answer no datagram can carry asks for more than the maximum: use TCP.
    let huge = Response {
        id: 7,
        result: Ok(vec![vec![0; MAX_DATAGRAM * 2]]),
    };
    let answer = opened.seal_response(&huge, [1; 16]);
    assert_eq!(
        pending.open_response(&answer.bytes).expect("open"),
        Answer::TooLarge {
            needed: MAX_DATAGRAM + 1
        }
    );
    // Errors are answers too.
    let (bytes, pending) = sealed(&key, &ping(b""), 0, 7);
    let opened = open(&key, &bytes).expect("open");
    let refused = Response {
        id: 7,
        result: Err(ErrorReply::new(ErrorCode::Forbidden, "no")),
    };
    let answer = opened.seal_response(&refused, [1; 16]).bytes;
    assert_eq!(
        pending.open_response(&answer).expect("open"),
        Answer::Response(refused)
    );
}

#[test]
fn the_kinds_are_distinct() {
    let (_, key) = server(1);
    let (bytes, _) = sealed(&key, &ping(b""), 0, 5);
    let d = RequestDatagram::decode(&bytes).expect("decode");
    assert!(ResponseDatagram::decode(&bytes).is_err());
    assert_eq!(
        decode_key_answer(&bytes).unwrap_err(),
        DatagramError::BadVersion
    );
    assert!(open_request(&key, &d).is_ok());
}

#[test]
fn key_query_and_answer() {
    let (id, _) = server(1);
    let q = key_query();
    assert_eq!(check_key_query(&q), Ok(()));
    assert_eq!(check_key_query(&q[..10]), Err(DatagramError::Truncated));
    let mut dirty = q;
    dirty[5] = 1;
    assert!(check_key_query(&dirty).is_err());
    let answer = encode_key_answer(&id.public_key());
    assert!(answer.len() < q.len());
    assert_eq!(decode_key_answer(&answer), Ok(id.public_key()));
    let mut bad = answer;
    bad[1] = 0x07;
    assert_eq!(decode_key_answer(&bad), Err(DatagramError::BadPoint));
    assert_eq!(
        decode_key_answer(&answer[..20]),
        Err(DatagramError::Truncated)
    );
}

#[test]
fn replay_guard_refuses_replayed_stale_and_future_requests() {
    let mut guard = ReplayGuard::default();
    let n = [1u8; NONCE_LEN];
    assert_eq!(guard.accept(NOW, &n, NOW), Ok(()));
    assert_eq!(guard.accept(NOW, &n, NOW), Err(DatagramError::Replay));
    assert_eq!(guard.check(NOW, &n, NOW + 5), Err(DatagramError::Replay));
    assert_eq!(guard.accept(NOW, &[2; NONCE_LEN], NOW), Ok(()));
    let window = REPLAY_WINDOW_SECS;
    assert_eq!(
        guard.accept(NOW - window - 1, &[3; NONCE_LEN], NOW),
        Err(DatagramError::Stale)
    );
    assert_eq!(
        guard.accept(NOW + window + 1, &[3; NONCE_LEN], NOW),
        Err(DatagramError::Stale)
    );
    assert_eq!(guard.accept(NOW + window, &[3; NONCE_LEN], NOW), Ok(()));
    assert_eq!(guard.accept(NOW - window, &[4; NONCE_LEN], NOW), Ok(()));
    // Later, the first request is stale, whatever the cache holds.
    assert_eq!(
        guard.accept(NOW, &n, NOW + window + 1),
        Err(DatagramError::Stale)
    );
}

#[test]
fn replay_guard_refuses_what_it_forgot() {
    let mut guard = ReplayGuard::new(4, REPLAY_WINDOW_SECS);
    for i in 0..4u8 {
        assert_eq!(
            guard.accept(NOW + u64::from(i), &[i; NONCE_LEN], NOW),
            Ok(())
        );
    }
    // Full: the oldest (NOW, [0]) is forgotten; everything at or before NOW is refused.
    assert_eq!(guard.accept(NOW + 10, &[9; NONCE_LEN], NOW), Ok(()));
    assert_eq!(guard.len(), 4);
    assert_eq!(
        guard.accept(NOW, &[0; NONCE_LEN], NOW),
        Err(DatagramError::Replay)
    );
    assert_eq!(
        guard.accept(NOW, &[77; NONCE_LEN], NOW),
        Err(DatagramError::Replay)
    );
    // Newer ones still pass, remembered ones are still refused.
    assert_eq!(
        guard.accept(NOW + 1, &[1; NONCE_LEN], NOW),
        Err(DatagramError::Replay)
    );
    assert_eq!(guard.accept(NOW + 11, &[5; NONCE_LEN], NOW), Ok(()));
    // Entries that leave the window are forgotten, and stay refused.
    let later = NOW + 11 + REPLAY_WINDOW_SECS;
    assert_eq!(guard.accept(later, &[6; NONCE_LEN], later), Ok(()));
    assert!(guard.len() <= 2);
    assert_eq!(
        guard.accept(NOW + 11, &[5; NONCE_LEN], later),
        Err(DatagramError::Replay)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the order and the capacity, nothing accepted is ever accepted again.
    #[test]
    fn replay_guard_never_accepts_twice(
        ops in proptest::collection::vec((0u64..90, 0u8..6, 0u64..90), 1..200),
        capacity in 1usize..8,
    ) {
        let mut guard = ReplayGuard::new(capacity, REPLAY_WINDOW_SECS);
        let mut accepted = std::collections::BTreeSet::new();
        for (time, nonce, now) in ops {
            let (time, now) = (NOW + time, NOW + now);
            if guard.accept(time, &[nonce; NONCE_LEN], now).is_ok() {
                prop_assert!(accepted.insert((time, nonce)), "accepted twice");
            }
            prop_assert!(guard.len() <= capacity);
        }
    }
}

#[test]
fn rate_limiter_allows_a_burst_then_the_rate() {
    let settings = RateSettings {
        per_second: 10,
        burst: 5,
        max_addresses: 3,
    };
    let mut limiter = RateLimiter::new(settings);
    for _ in 0..5 {
        assert!(limiter.allow(&1u32, 1000));
    }
    assert!(!limiter.allow(&1u32, 1000));
    assert!(
        limiter.allow(&2u32, 1000),
        "another address has its own bucket"
    );
    assert!(!limiter.allow(&1u32, 1050));
    assert!(limiter.allow(&1u32, 1100), "one token per 100 ms");
    assert!(!limiter.allow(&1u32, 1100));
}

#[test]
fn rate_limiter_table_is_bounded_and_floods_share_a_bucket() {
    let settings = RateSettings {
        per_second: 1,
        burst: 2,
        max_addresses: 2,
    };
    let mut limiter = RateLimiter::new(settings);
    assert!(limiter.allow(&1u32, 0));
    assert!(limiter.allow(&2u32, 0));
    // Full, and neither bucket has refilled: new addresses share the overflow bucket.
    assert!(limiter.allow(&3u32, 0));
    assert!(limiter.allow(&4u32, 0));
    assert!(!limiter.allow(&5u32, 0));
    assert_eq!(limiter.tracked(), 2);
    // The victim's bucket was not reset by the flood.
    assert!(limiter.allow(&1u32, 0));
    assert!(!limiter.allow(&1u32, 0));
    // Once buckets refilled, they are forgotten and new addresses get their own.
    assert!(limiter.allow(&9u32, 10_000));
    assert_eq!(limiter.tracked(), 1);
}
