//! The service's datagram entry point (spec/datagrams.md §4-§6): a sealed `ping` is answered
//! through the TCP dispatch; replays, stale times, forgeries, truncations and requests sealed
//! to another key get silence and are counted; commands off the UDP allow-list get a sealed
//! refusal; answers never exceed the amplification factor; the per-address rate limit holds;
//! key queries are answered with the server's key, smaller than the query.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vserv_core::datagram::{
    AMPLIFICATION_FACTOR, Answer, DatagramError, PendingRequest, RateSettings, decode_key_answer,
    key_query, seal_request,
};
use vserv_core::{ErrorCode, Request, Response, ServerIdentity, ServerKey};
use vserv_service::datagram::{DatagramOutcome, DatagramSettings, DropReason, allowed_over_udp};
use vserv_service::{Node, NodeSettings, Service};

const NOW_MS: u64 = 1_800_000_000_000;
const NOW: u64 = NOW_MS / 1000;

fn service(settings: DatagramSettings) -> (Service, ServerKey) {
    let identity = Arc::new(ServerIdentity::generate(&mut StdRng::seed_from_u64(1)));
    let node = Node::in_memory(
        identity.clone(),
        NodeSettings::insecure_fast("udp"),
        Box::new(StdRng::seed_from_u64(2)),
    )
    .expect("node");
    let service = node.service().with_datagrams(&identity, settings);
    (service, identity.public_key())
}

fn from() -> SocketAddr {
    "127.0.0.1:4000".parse().expect("address")
}

fn request(name: &str, args: Vec<Vec<u8>>) -> Request {
    Request {
        id: 9,
        name: name.into(),
        args,
    }
}

fn seal(
    key: &ServerKey,
    req: &Request,
    pad_to: usize,
    time: u64,
    seed: u64,
) -> (Vec<u8>, PendingRequest) {
    seal_request(key, req, pad_to, time, &mut StdRng::seed_from_u64(seed)).expect("seal")
}

fn answer(outcome: DatagramOutcome) -> Vec<u8> {
    match outcome {
        DatagramOutcome::Answer(bytes) => bytes,
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn dropped(outcome: DatagramOutcome) -> DropReason {
    match outcome {
        DatagramOutcome::Drop(reason) => reason,
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn a_sealed_ping_is_answered_and_its_replay_is_not() {
    let (service, key) = service(DatagramSettings::default());
    let ping = request("ping", vec![b"over udp".to_vec()]);
    let (bytes, pending) = seal(&key, &ping, 0, NOW, 3);
    let reply = answer(service.datagram(&bytes, from(), NOW_MS, [1; 16]));
    assert!(reply.len() <= AMPLIFICATION_FACTOR * bytes.len());
    assert_eq!(
        pending.open_response(&reply),
        Ok(Answer::Response(Response {
            id: 9,
            result: Ok(vec![b"over udp".to_vec()]),
        }))
    );
    // The same datagram again, from anywhere: silence.
    let other: SocketAddr = "10.0.0.7:53".parse().expect("address");
    assert_eq!(
        dropped(service.datagram(&bytes, other, NOW_MS + 500, [1; 16])),
        DropReason::Refused(DatagramError::Replay)
    );
    let stats = service.datagram_stats().expect("stats");
    assert_eq!((stats.received, stats.answered), (2, 1));
    assert_eq!(
        stats.dropped_for(DropReason::Refused(DatagramError::Replay)),
        1
    );
    assert!(stats.summary().contains("replay 1"), "{}", stats.summary());
}

#[test]
fn stale_future_forged_truncated_and_misaddressed_datagrams_get_silence() {
    // A burst large enough for every forgery below (the rate limit is tested apart).
    let (service, key) = service(DatagramSettings {
        rate: RateSettings {
            per_second: 1,
            burst: 10_000,
            max_addresses: 16,
        },
        ..DatagramSettings::default()
    });
    let ping = request("ping", vec![]);
    let (stale, _) = seal(&key, &ping, 0, NOW - 31, 4);
    let (future, _) = seal(&key, &ping, 0, NOW + 31, 5);
    let (good, _) = seal(&key, &ping, 0, NOW, 6);
    let other = ServerIdentity::generate(&mut StdRng::seed_from_u64(99)).public_key();
    let (misaddressed, _) = seal(&other, &ping, 0, NOW, 7);
    let refused = |bytes: &[u8]| dropped(service.datagram(bytes, from(), NOW_MS, [0; 16]));
    assert_eq!(refused(&stale), DropReason::Refused(DatagramError::Stale));
    assert_eq!(refused(&future), DropReason::Refused(DatagramError::Stale));
    assert_eq!(
        refused(&misaddressed),
        DropReason::Refused(DatagramError::BadMac)
    );
    assert_eq!(refused(&[]), DropReason::Refused(DatagramError::Truncated));
    assert_eq!(
        refused(b"GET / HTTP/1.1\r\n"),
        DropReason::Refused(DatagramError::BadVersion)
    );
    for n in 0..good.len() {
        assert!(
            matches!(refused(&good[..n]), DropReason::Refused(_)),
            "cut at {n}"
        );
    }
    // Every single bit flip: forged, never answered (and never poisons the replay cache).
    for i in 0..good.len() * 8 {
        let mut forged = good.clone();
        forged[i / 8] ^= 1 << (i % 8);
        assert!(
            matches!(refused(&forged), DropReason::Refused(_)),
            "bit {i}"
        );
    }
    let stats = service.datagram_stats().expect("stats");
    assert_eq!(stats.answered, 0);
    // The genuine one still goes through.
    assert!(matches!(
        service.datagram(&good, from(), NOW_MS, [0; 16]),
        DatagramOutcome::Answer(_)
    ));
}

#[test]
fn commands_off_the_allow_list_get_a_sealed_refusal() {
    let (service, key) = service(DatagramSettings::default());
    for (seed, name) in [(10, "hello"), (11, "login"), (12, "rput"), (13, "peer")] {
        let kind = vserv_core::commands::CommandKind::from_name(name).expect("a command");
        assert!(!allowed_over_udp(kind));
        let (bytes, pending) = seal(
            &key,
            &request(name, vec![b"a".to_vec(), b"b".to_vec()]),
            0,
            NOW,
            seed,
        );
        let reply = answer(service.datagram(&bytes, from(), NOW_MS, [0; 16]));
        let Ok(Answer::Response(Response { result: Err(e), .. })) = pending.open_response(&reply)
        else {
            panic!("{name}: expected a refusal");
        };
        assert_eq!(e.code, ErrorCode::Forbidden, "{name}");
        assert!(e.message.contains("UDP"), "{}", e.message);
    }
    // An unknown command gets the usual answer.
    let (bytes, pending) = seal(&key, &request("nope", vec![]), 0, NOW, 14);
    let reply = answer(service.datagram(&bytes, from(), NOW_MS, [0; 16]));
    let Ok(Answer::Response(Response { result: Err(e), .. })) = pending.open_response(&reply)
    else {
        panic!("expected an error");
    };
    assert_eq!(e.code, ErrorCode::UnknownCommand);
}

#[test]
fn a_large_ping_is_answered_within_its_budget() {
    let (service, key) = service(DatagramSettings::default());
    let ping = request("ping", vec![vec![7; 1500]]);
    let (bytes, pending) = seal(&key, &ping, 0, NOW, 20);
    let reply = answer(service.datagram(&bytes, from(), NOW_MS, [0; 16]));
    assert!(reply.len() <= AMPLIFICATION_FACTOR * bytes.len());
    let Ok(Answer::Response(Response {
        result: Ok(fields), ..
    })) = pending.open_response(&reply)
    else {
        panic!("expected the echo");
    };
    assert_eq!(fields, vec![vec![7; 1500]]);
    assert_eq!(service.datagram_stats().expect("stats").too_large, 0);
}

#[test]
fn the_rate_limit_is_per_address() {
    let settings = DatagramSettings {
        rate: RateSettings {
            per_second: 1,
            burst: 2,
            max_addresses: 16,
        },
        ..DatagramSettings::default()
    };
    let (service, key) = service(settings);
    let ping = request("ping", vec![]);
    for seed in 0..2 {
        let (bytes, _) = seal(&key, &ping, 0, NOW, 30 + seed);
        assert!(matches!(
            service.datagram(&bytes, from(), NOW_MS, [0; 16]),
            DatagramOutcome::Answer(_)
        ));
    }
    let (bytes, _) = seal(&key, &ping, 0, NOW, 40);
    assert_eq!(
        dropped(service.datagram(&bytes, from(), NOW_MS, [0; 16])),
        DropReason::RateLimited
    );
    // Not counted as seen: the same datagram from another address is answered.
    let elsewhere: SocketAddr = "127.0.0.2:4000".parse().expect("address");
    assert!(matches!(
        service.datagram(&bytes, elsewhere, NOW_MS, [0; 16]),
        DatagramOutcome::Answer(_)
    ));
    assert_eq!(
        service
            .datagram_stats()
            .expect("stats")
            .dropped_for(DropReason::RateLimited),
        1
    );
}

#[test]
fn a_key_query_is_answered_with_the_key_and_nothing_larger() {
    let (service, key) = service(DatagramSettings::default());
    let query = key_query();
    let reply = answer(service.datagram(&query, from(), NOW_MS, [0; 16]));
    assert!(reply.len() < query.len());
    assert_eq!(decode_key_answer(&reply), Ok(key));
    assert!(matches!(
        service.datagram(&query[..10], from(), NOW_MS, [0; 16]),
        DatagramOutcome::Drop(_)
    ));
}

#[test]
fn a_service_without_datagrams_drops_everything() {
    let identity = Arc::new(ServerIdentity::generate(&mut StdRng::seed_from_u64(1)));
    let node = Node::in_memory(
        identity,
        NodeSettings::insecure_fast("udp"),
        Box::new(StdRng::seed_from_u64(2)),
    )
    .expect("node");
    let service = node.service();
    assert_eq!(
        dropped(service.datagram(&key_query(), from(), NOW_MS, [0; 16])),
        DropReason::NotServed
    );
    assert!(service.datagram_stats().is_none());
}

#[test]
fn blocking_requests_beyond_max_work_are_dropped_as_busy_until_a_place_frees() {
    let (service, key) = service(DatagramSettings {
        max_work: 2,
        ..DatagramSettings::default()
    });
    let tables = request("tables", vec![]);
    let mut next_seed = 50;
    let mut ask = || {
        next_seed += 1;
        let (bytes, pending) = seal(&key, &tables, 0, NOW, next_seed);
        (service.datagram(&bytes, from(), NOW_MS, [2; 16]), pending)
    };
    let run = |outcome: DatagramOutcome| match outcome {
        DatagramOutcome::Run(work) => work,
        other => panic!("expected work, got {other:?}"),
    };
    let (first, _) = ask();
    let first = run(first);
    let (second, second_request) = ask();
    let second = run(second);
    let (third, _) = ask();
    assert_eq!(dropped(third), DropReason::Busy);

    // Work the runtime dropped unrun gives its place back.
    drop(first);
    let (fourth, _) = ask();
    let fourth = run(fourth);
    let (fifth, _) = ask();
    assert_eq!(dropped(fifth), DropReason::Busy);

    // So does work that ran; its answer is the command's.
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = sent.clone();
    second
        .into_work(move |bytes| into.lock().expect("lock").push(bytes))
        .run();
    let answers = sent.lock().expect("lock").clone();
    assert_eq!(answers.len(), 1);
    assert!(matches!(
        second_request.open_response(&answers[0]),
        Ok(Answer::Response(Response {
            id: 9,
            result: Ok(_)
        }))
    ));
    let (sixth, _) = ask();
    run(sixth);
    drop(fourth);

    let stats = service.datagram_stats().expect("stats");
    assert_eq!(stats.dropped_for(DropReason::Busy), 2);
    assert!(stats.summary().contains("busy 2"), "{}", stats.summary());
}
