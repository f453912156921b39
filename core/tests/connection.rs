//! Connection-level tests: two endpoints driven in memory with seeded randomness.
#![allow(clippy::disallowed_methods)] // tests take one real instant as the epoch of their virtual clock

use std::time::{Duration, Instant};

use vserv_core::wire::CONTENT_APP;
use vserv_core::{Close, CloseCode, Config, Connection, Error, Event, Response, Role};

mod support;
use support::pair::{Dir, Pair, Split, identity, rng};

fn connected_pair() -> Pair {
    Pair::connected(Config::default())
}

#[test]
fn handshake_and_request() {
    let mut p = connected_pair();
    assert_eq!(p.client.session_id(), p.server.session_id());
    assert!(p.client.session_id().is_some());
    let id = p
        .client
        .send_request("ping", vec![b"abc".to_vec()])
        .unwrap();
    p.drive().unwrap();
    assert!(p.client_events.contains(&Event::Response(Response {
        id,
        result: Ok(vec![b"abc".to_vec()])
    })));
    assert_eq!(p.client.outstanding_requests(), 0);
}

/// Records the whole byte stream of a handshake plus one request, per direction, so tests can
/// replay it with cuts and alterations. Seeds are fixed, so the streams are identical each run.
fn transcript() -> (Vec<u8>, Vec<u8>) {
    let mut p = Pair::new(Config::default());
    p.auto.ping_on_connect = true;
    p.drive().unwrap();
    assert_eq!(p.responses().len(), 1);
    (p.stream(Dir::ClientToServer), p.stream(Dir::ServerToClient))
}

#[test]
fn every_split_point_both_directions() {
    // The client's stream split at every point on its way to the server; then the server's
    // on its way to the client (the response record can only come once the request is sent:
    // the live pair keeps that order).
    let (c2s, s2c) = transcript();
    for cut in 0..=c2s.len() {
        let mut p = Pair::new(Config::default());
        p.auto.ping_on_connect = true;
        p.c2s_split = Split::At(vec![cut]);
        p.drive().unwrap();
        assert_eq!(p.stream(Dir::ClientToServer), c2s, "cut {cut}");
        let events = &p.server_events;
        assert!(
            matches!(events.last(), Some(Event::Request(_))),
            "cut {cut}: {events:?}"
        );
    }
    for cut in 0..=s2c.len() {
        let mut p = Pair::new(Config::default());
        p.auto.ping_on_connect = true;
        p.s2c_split = Split::At(vec![cut]);
        p.drive().unwrap();
        assert_eq!(p.stream(Dir::ServerToClient), s2c, "cut {cut}");
        let got_response = p.responses().len() == 1;
        assert!(got_response, "cut {cut}");
    }
}

#[test]
fn one_byte_at_a_time() {
    let mut p = Pair::new(Config::default());
    p.auto.ping_on_connect = true;
    p.set_split(Split::Chunks(1));
    p.drive().unwrap();
    assert!(
        p.server_events
            .iter()
            .any(|e| matches!(e, Event::Request(_)))
    );
    assert_eq!(p.responses().len(), 1);
}

/// Offset of the last record (the request) in the client's stream.
#[cfg(not(feature = "fuzzing"))] // only the tamper tests need it
fn last_record_start(stream: &[u8]) -> usize {
    let mut at = 0;
    let mut last = 0;
    while at < stream.len() {
        last = at;
        at += 4 + u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
    }
    last
}

#[test]
#[cfg(not(feature = "fuzzing"))] // tamper checks need the real cipher
fn every_single_byte_flip_of_a_record_is_fatal() {
    let (c2s, _) = transcript();
    let start = last_record_start(&c2s);
    let now = Instant::now();
    for i in start..c2s.len() {
        for bit in [0x01u8, 0x80] {
            let mut bytes = c2s.clone();
            bytes[i] ^= bit;
            let mut server = Connection::server(Config::default(), identity(), rng(2), now);
            let result = server.handle_input(now, &bytes);
            let delivered =
                std::iter::from_fn(|| server.poll_event()).any(|e| matches!(e, Event::Request(_)));
            assert!(!delivered, "flip at {i} delivered plaintext");
            if i < start + 4 {
                // A flipped length either fails framing, or waits for bytes that never come.
                if result.is_ok() {
                    assert!(matches!(server.handle_eof(now), Err(Error::UnexpectedEof)));
                }
            } else {
                assert_eq!(result, Err(Error::BadRecord), "flip at {i}");
            }
            assert!(server.is_closed());
        }
    }
}

#[test]
#[cfg(not(feature = "fuzzing"))] // tamper checks need the real cipher
fn replayed_reordered_truncated_and_injected_records_are_fatal() {
    let (c2s, _) = transcript();
    let start = last_record_start(&c2s);
    let record = c2s[start..].to_vec();
    let now = Instant::now();
    let fresh = || Connection::server(Config::default(), identity(), rng(2), now);

    // Replay: the request record twice.
    let mut s = fresh();
    let mut bytes = c2s.clone();
    bytes.extend_from_slice(&record);
    assert_eq!(s.handle_input(now, &bytes), Err(Error::BadRecord));

    // Reorder: the request before the ClientFinished.
    let finished_start = last_record_start(&c2s[..start]);
    let mut s = fresh();
    let mut bytes = c2s[..finished_start].to_vec();
    bytes.extend_from_slice(&record);
    bytes.extend_from_slice(&c2s[finished_start..start]);
    assert!(s.handle_input(now, &bytes).is_err());
    assert!(!std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Request(_))));

    // Truncation: the stream ends mid-record.
    let mut s = fresh();
    s.handle_input(now, &c2s[..c2s.len() - 5]).unwrap();
    assert_eq!(s.handle_eof(now), Err(Error::UnexpectedEof));

    // Injection: a well-formed frame of random bytes between records.
    let mut s = fresh();
    let mut bytes = c2s[..start].to_vec();
    bytes.extend_from_slice(&80u32.to_be_bytes());
    bytes.extend_from_slice(&[0x42; 80]);
    bytes.extend_from_slice(&record);
    assert_eq!(s.handle_input(now, &bytes), Err(Error::BadRecord));
}

#[test]
fn oversized_length_is_rejected_without_allocation() {
    let now = Instant::now();
    let mut s = Connection::server(Config::default(), identity(), rng(2), now);
    let err = s.handle_input(now, &[0xff, 0xff, 0xff, 0xff]).unwrap_err();
    assert!(matches!(err, Error::BadFrameLength { len: u32::MAX, .. }));
    assert!(s.is_closed());
}

#[test]
fn unexpected_handshake_message_is_fatal() {
    let now = Instant::now();
    // A server receiving a ServerHello-typed frame first.
    let mut s = Connection::server(Config::default(), identity(), rng(2), now);
    let mut frame = 68u32.to_be_bytes().to_vec();
    frame.push(0x02);
    frame.extend_from_slice(&[0u8; 67]);
    assert!(matches!(
        s.handle_input(now, &frame),
        Err(Error::UnexpectedMessage { kind: 2, .. })
    ));
    // A client receiving a ClientHello instead of a ServerHello.
    let mut c = Connection::client(Config::default(), rng(1), now);
    let mut hello = Vec::new();
    c.poll_transmit(&mut hello);
    let mut c2 = Connection::client(Config::default(), rng(3), now);
    assert!(matches!(
        c2.handle_input(now, &hello),
        Err(Error::UnexpectedMessage { kind: 1, .. })
    ));
}

#[test]
fn wrong_version_gets_a_refusal() {
    let now = Instant::now();
    let (c2s, _) = transcript();
    let mut bytes = c2s.clone();
    bytes[4 + 1 + 4 + 1] = 9; // version low byte
    let mut s = Connection::server(Config::default(), identity(), rng(2), now);
    assert_eq!(
        s.handle_input(now, &bytes[..4 + 72]),
        Err(Error::UnsupportedVersion(9))
    );
    let mut refusal = Vec::new();
    s.poll_transmit(&mut refusal);
    let mut c = Connection::client(Config::default(), rng(1), now);
    assert_eq!(
        c.handle_input(now, &refusal),
        Err(Error::Refused(CloseCode::UnsupportedVersion))
    );
}

#[test]
fn rejected_server_key_ends_the_handshake() {
    let mut p = Pair::new(Config::default());
    p.auto.accept_key = false;
    p.drive().unwrap();
    let [Event::ServerKey(key)] = p.client_events.as_slice() else {
        panic!("no key event: {:?}", p.client_events)
    };
    assert_eq!(*key, identity().public_key());
    p.client.reject_server_key().unwrap();
    assert!(p.client.is_closed());
    assert_eq!(p.client.send_request("ping", vec![]), Err(Error::Closed));
}

/// The login grace (server only) runs from the connection's creation whatever the peer
/// sends; ending it leaves the idle timer, restarting it counts from the last receipt.
#[test]
fn the_login_grace_ends_a_busy_connection_unless_ended() {
    let config = Config {
        idle_timeout: Duration::from_secs(30),
        login_grace: Some(Duration::from_secs(10)),
        ..Config::default()
    };
    let mut p = Pair::new(config.clone());
    let start = p.now;
    p.drive().unwrap();
    assert!(
        p.client.poll_timeout().unwrap() > start + Duration::from_secs(10),
        "a client has no login grace"
    );
    for step in 1..10 {
        p.now = start + Duration::from_secs(step);
        p.client.send_request("ping", vec![]).unwrap();
        p.drive().unwrap();
        assert_eq!(
            p.server.poll_timeout(),
            Some(start + Duration::from_secs(10))
        );
    }
    let grace = start + Duration::from_secs(10);
    p.server
        .handle_timeout(grace - Duration::from_nanos(1))
        .unwrap();
    assert_eq!(
        p.server.handle_timeout(grace),
        Err(Error::LoginGraceTimeout)
    );
    assert_eq!(
        Error::LoginGraceTimeout.close_code(),
        vserv_core::CloseCode::Timeout
    );

    let mut p = Pair::new(config);
    let start = p.now;
    p.drive().unwrap();
    p.server.end_login_grace();
    assert_eq!(
        p.server.poll_timeout(),
        Some(start + Duration::from_secs(30))
    );
    p.now = start + Duration::from_secs(25);
    p.client.send_request("ping", vec![]).unwrap();
    p.drive().unwrap();
    p.server.restart_login_grace();
    assert_eq!(
        p.server.poll_timeout(),
        Some(start + Duration::from_secs(35))
    );
}

#[test]
fn timeouts_fire_at_the_polled_instant() {
    let config = Config {
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
        ..Config::default()
    };
    let now = Instant::now();
    let mut c = Connection::client(config.clone(), rng(1), now);
    let deadline = c.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(5));
    c.handle_timeout(deadline - Duration::from_nanos(1))
        .unwrap();
    assert_eq!(c.handle_timeout(deadline), Err(Error::HandshakeTimeout));
    assert!(c.is_closed() && c.poll_timeout().is_none());

    let mut p = Pair::new(config);
    p.drive().unwrap();
    let idle = p.server.poll_timeout().unwrap();
    assert_eq!(idle, p.now + Duration::from_secs(30));
    assert_eq!(p.server.handle_timeout(idle), Err(Error::IdleTimeout));
    // The server's timeout close reaches the client authenticated.
    p.now = idle;
    p.transmit(Role::Server).unwrap();
    let closed = p
        .client_events
        .iter()
        .find(|e| matches!(e, Event::Closed(_)));
    assert!(matches!(
        closed,
        Some(Event::Closed(Close {
            code: CloseCode::Timeout,
            ..
        }))
    ));
}

#[test]
fn key_updates_happen_and_sequence_numbers_reset() {
    let mut p = Pair::new(Config {
        rekey_after: 3,
        ..Config::default()
    });
    p.drive().unwrap();
    for i in 0..20u8 {
        p.client.send_request("ping", vec![vec![i]]).unwrap();
        p.drive().unwrap();
    }
    let responses = p
        .client_events
        .iter()
        .filter(|e| matches!(e, Event::Response(_)))
        .count();
    assert_eq!(responses, 20);
}

#[test]
fn close_is_authenticated_and_final() {
    let mut p = connected_pair();
    p.client.close(CloseCode::Normal, "bye");
    p.drive().unwrap();
    assert!(p.server_events.contains(&Event::Closed(Close {
        code: CloseCode::Normal,
        reason: "bye".into()
    })));
    assert!(p.server.is_closed());
    assert_eq!(p.server.handle_input(p.now, b"more"), Err(Error::Closed));
}

#[test]
fn api_misuse_is_an_error_and_changes_nothing() {
    let now = Instant::now();
    let mut c = Connection::client(Config::default(), rng(1), now);
    assert!(matches!(
        c.send_request("ping", vec![]),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        c.accept_server_key(now),
        Err(Error::InvalidState(_))
    ));
    let mut p = connected_pair();
    assert!(matches!(
        p.server.respond(&Response {
            id: 77,
            result: Ok(vec![])
        }),
        Err(Error::NoSuchRequest(77))
    ));
    assert!(matches!(
        p.client.send_request("BAD NAME", vec![]),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        p.client.send_request("ping", vec![vec![0; 20_000]]),
        Err(Error::PayloadTooLarge { .. })
    ));
    // Still fully usable.
    let id = p.client.send_request("ping", vec![b"ok".to_vec()]).unwrap();
    p.drive().unwrap();
    assert!(p.client_events.contains(&Event::Response(Response {
        id,
        result: Ok(vec![b"ok".to_vec()])
    })));
    let _ = CONTENT_APP;
}

#[test]
fn only_canonical_compressed_points_are_accepted() {
    let key = *identity().public_key().as_bytes();
    assert!(vserv_core::ServerKey::from_bytes(&key).is_ok());
    let mut compact = key;
    compact[0] = 0x05;
    assert_eq!(
        vserv_core::ServerKey::from_bytes(&compact),
        Err(Error::BadPublicKey)
    );
    // The same for a ClientHello's ephemeral key: the server refuses it.
    let (c2s, _) = transcript();
    let mut hello = c2s[..4 + 72].to_vec();
    hello[4 + 1 + 4 + 2 + 32] = 0x05;
    let now = Instant::now();
    let mut s = Connection::server(Config::default(), identity(), rng(2), now);
    assert_eq!(s.handle_input(now, &hello), Err(Error::BadPublicKey));
}

#[test]
fn server_close_during_the_trust_decision_is_reported() {
    let config = Config {
        handshake_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut p = Pair::new(config);
    let now = p.now;
    p.auto.accept_key = false;
    p.drive().unwrap();
    assert!(matches!(p.client_events.as_slice(), [Event::ServerKey(_)]));
    // The user hesitates; the server's handshake timer fires and it closes.
    let late = now + Duration::from_secs(5);
    p.now = late;
    assert_eq!(p.server.handle_timeout(late), Err(Error::HandshakeTimeout));
    p.transmit(Role::Server).unwrap();
    assert!(matches!(
        p.client_events.last(),
        Some(Event::Closed(Close {
            code: CloseCode::Timeout,
            ..
        }))
    ));
    assert!(p.client.is_closed());
    assert_eq!(p.client.accept_server_key(late), Err(Error::Closed));
}

#[test]
fn a_record_carrying_more_than_max_payload_is_rejected() {
    use aes::cipher::block_padding::Pkcs7;
    use aes::cipher::{BlockModeEncrypt, KeyIvInit};
    use hmac::Mac;
    use vserv_core::secure::RecordKeys;
    use vserv_core::secure::keys::{LABEL_KEY, LABEL_MAC, expand, hmac_key};
    use vserv_core::wire::{MAX_FRAME_BODY, MAX_PAYLOAD};

    let secret = zeroize::Zeroizing::new([9u8; 32]);
    // Forge, with the right keys, a maximal body whose plaintext has one byte of padding.
    let payload_len = MAX_FRAME_BODY - 16 - 32 - 1 - 1;
    assert!(payload_len > MAX_PAYLOAD);
    let mut plain = vec![CONTENT_APP];
    plain.extend(std::iter::repeat_n(7u8, payload_len));
    let key = expand(&secret, LABEL_KEY, &[]);
    let iv = [3u8; 16];
    let ct = cbc::Encryptor::<aes::Aes256>::new(&(*key).into(), &iv.into())
        .encrypt_padded_vec::<Pkcs7>(&plain);
    let body_len = (16 + ct.len() + 32) as u32;
    assert_eq!(body_len as usize, MAX_FRAME_BODY);
    let mut mac = hmac_key(expand(&secret, LABEL_MAC, &[]).as_ref());
    mac.update(&0u64.to_be_bytes());
    mac.update(&body_len.to_be_bytes());
    mac.update(&iv);
    mac.update(&ct);
    let mut body = iv.to_vec();
    body.extend_from_slice(&ct);
    body.extend_from_slice(&mac.finalize().into_bytes());

    let mut receiver = RecordKeys::from_secret(secret.clone());
    assert_eq!(
        receiver.open(&mut body.clone()).map(|_| ()),
        Err(Error::BadRecord)
    );
    // The same forgery at exactly MAX_PAYLOAD would have opened: the check is the cap.
    let mut honest = Vec::new();
    RecordKeys::from_secret(secret.clone())
        .seal(CONTENT_APP, &vec![7u8; MAX_PAYLOAD], iv, &mut honest)
        .unwrap();
    let mut receiver = RecordKeys::from_secret(secret);
    assert_eq!(
        receiver.open(&mut honest[4..]).map(|(_, p)| p.len()),
        Ok(MAX_PAYLOAD)
    );
}

#[test]
fn a_client_cannot_exceed_the_outstanding_limit() {
    let mut p = Pair::new(Config {
        max_outstanding: 3,
        ..Config::default()
    });
    p.drive().unwrap();
    for _ in 0..3 {
        p.client.send_request("ping", vec![]).unwrap();
    }
    assert!(matches!(
        p.client.send_request("ping", vec![]),
        Err(Error::InvalidState(_))
    ));
    p.drive().unwrap();
    assert_eq!(p.client.outstanding_requests(), 0);
    p.client.send_request("ping", vec![]).unwrap();
}

#[test]
fn a_hinted_refusal_fails_the_client_with_the_limit_and_delay() {
    let now = Instant::now();
    let hint = vserv_core::wire::RetryHint {
        limit: vserv_core::wire::RefusedLimit::MaxConnections,
        retry_after_secs: 3,
    };
    let frame = vserv_core::session::refusal_with(CloseCode::Busy, hint);
    let mut c = Connection::client(Config::default(), rng(1), now);
    let err = c.handle_input(now, &frame).unwrap_err();
    assert_eq!(err, Error::RefusedRetry(hint));
    assert!(err.to_string().contains("max connections"), "{err}");
    assert!(err.to_string().contains("retry in 3 s"), "{err}");
}

#[test]
fn buffers_given_back_while_idle_lose_nothing_pending() {
    let mut p = connected_pair();
    p.client
        .send_request("ping", vec![b"one".to_vec()])
        .unwrap();
    p.drive().unwrap();
    // Both ends idle: they give their buffers back and go on as before.
    p.client.release_buffers();
    p.server.release_buffers();
    // A request whose record reaches the server in two pieces, with a release between
    // them: the partial frame is kept.
    p.client
        .send_request("ping", vec![b"two".to_vec()])
        .unwrap();
    let bytes = p.take_output(Role::Client);
    let (first, rest) = bytes.split_at(bytes.len() / 2);
    p.deliver_to_server(first).unwrap();
    p.server.release_buffers();
    p.deliver_to_server(rest).unwrap();
    // Output framed but not yet taken by the driver is kept too.
    p.handle_events().unwrap();
    p.server.release_buffers();
    p.drive().unwrap();
    let answers: Vec<_> = p.responses().iter().map(|r| r.result.clone()).collect();
    assert_eq!(
        answers,
        [Ok(vec![b"one".to_vec()]), Ok(vec![b"two".to_vec()])]
    );
    assert!(p.client_error.is_none() && p.server_error.is_none());
}
