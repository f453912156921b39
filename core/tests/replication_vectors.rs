//! Replication test vectors: `spec/vectors/replication.json`.
//!
//! The vectors are built here from fixed keys (an origin and a peer identity from fixed
//! scalars; RFC 6979 signatures are deterministic). The normal test rebuilds them and
//! compares with the file, then checks the file on its own terms: every frame decodes to the
//! listed fields and re-encodes to the same bytes, every signature verifies and the fork proof
//! is valid. To regenerate the file after an intended change:
//!
//! ```sh
//! VSERV_WRITE_VECTORS=1 cargo test -p vserv-core --test replication_vectors
//! ```
// The vectors pin real signatures, which the fuzzing build does not check.
#![cfg(not(feature = "fuzzing"))]

use std::path::PathBuf;

use serde_json::{Value, json};
use vserv_core::ServerIdentity;
use vserv_core::ledger::{Entry, EntryFields, Head, SignedHead, fields_to_body};
use vserv_core::replication::{
    Ack, Clock, ClockEntry, Entries, ForkProof, Message, MessageReader, Wants, peer_link_message,
    sign_peer_link, verify_peer_link,
};

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/replication.json")
}

fn id(byte: u8) -> ServerIdentity {
    ServerIdentity::from_secret_bytes(&[byte; 32]).expect("valid scalar")
}

/// Entry `seq` of the origin's feed after `prev`, with a field-form body tagged `tag`.
fn entry(id: &ServerIdentity, seq: u64, prev: [u8; 32], tag: &str) -> Entry {
    Entry::new(EntryFields {
        origin: id.public_key(),
        seq,
        prev,
        timestamp: 1_767_225_600_000 + seq * 1000,
        author: "alice".into(),
        kind: "note.v1".into(),
        record_id: format!("{tag}-{seq}").into_bytes(),
        body: fields_to_body(&[("n", seq.to_string().as_str()), ("text", tag)]).expect("fields"),
    })
    .expect("valid entry")
}

fn chain(id: &ServerIdentity, from_prev: (u64, [u8; 32]), n: u64, tag: &str) -> Vec<Entry> {
    let (mut seq, mut prev) = from_prev;
    let mut out = Vec::new();
    for _ in 0..n {
        seq += 1;
        let e = entry(id, seq, prev, tag);
        prev = e.hash();
        out.push(e);
    }
    out
}

fn hex(b: impl AsRef<[u8]>) -> Value {
    Value::String(hex::encode(b))
}

fn entry_json(e: &Entry) -> Value {
    json!({ "seq": e.seq(), "encoding": hex(e.to_bytes()), "hash": hex(e.hash()) })
}

fn head_json(h: &SignedHead) -> Value {
    json!({
        "seq": h.head.seq,
        "hash": hex(h.head.hash),
        "signing_message": hex(h.head.signing_message()),
        "signature": hex(h.signature),
        "encoding": hex(h.to_bytes()),
    })
}

fn build() -> Value {
    let origin = id(0x11);
    let peer = id(0x22);
    let session_id = [0x5a; 32];

    // The origin's feed: 3 entries signed at seq 3. A second chain of the same origin
    // diverges at seq 3 and is signed at seq 4: a fork.
    let feed = chain(&origin, (0, [0; 32]), 3, "main");
    let head = SignedHead::sign(&origin, Head::of(&feed[2]));
    let other = chain(&origin, (2, feed[1].hash()), 2, "fork");
    let other_head = SignedHead::sign(&origin, Head::of(&other[1]));
    let proof = ForkProof::new(head, other_head, other[1..].to_vec()).expect("a valid proof");

    let clock = Clock::new(
        [0xe0; 16],
        vec![
            ClockEntry {
                origin: origin.public_key(),
                seq: 3,
                hash: feed[2].hash(),
            },
            ClockEntry {
                origin: peer.public_key(),
                seq: 1,
                hash: [0xab; 32],
            },
        ],
    )
    .expect("clock");
    let entries = Entries::new(origin.public_key(), feed.clone()).expect("entries");
    let ack = Ack {
        origin: origin.public_key(),
        seq: 3,
    };
    let wants = Wants::new(vec![
        peer.public_key().fingerprint(),
        origin.public_key().fingerprint(),
    ])
    .expect("wants");
    let frame = |m: &Message| hex(m.to_frame());
    json!({
        "description": [
            "vserv replication v1 vectors. Produced by core/tests/replication_vectors.rs (VSERV_WRITE_VECTORS=1); see spec/replication.md.",
            "Frames are whole: len:u32be || type:u8 || body. Signatures are RFC 6979 ECDSA-SHA256 over secp256k1, r || s, low-S.",
        ],
        "keys": {
            "origin_secret": hex([0x11u8; 32]),
            "origin_public": hex(origin.public_key().as_bytes()),
            "origin_fingerprint": origin.public_key().fingerprint().to_string(),
            "peer_secret": hex([0x22u8; 32]),
            "peer_public": hex(peer.public_key().as_bytes()),
        },
        "peer_link": {
            "signer": "peer",
            "session_id": hex(session_id),
            "message": hex(peer_link_message(&session_id)),
            "signature": hex(sign_peer_link(&peer, &session_id)),
        },
        "feed": feed.iter().map(entry_json).collect::<Vec<_>>(),
        "feed_head": head_json(&head),
        "fork_chain": other.iter().map(entry_json).collect::<Vec<_>>(),
        "fork_chain_head": head_json(&other_head),
        "messages": {
            "clock": {
                "epoch": hex(clock.epoch()),
                "feeds": clock.feeds().iter().map(|f| json!({
                    "origin": hex(f.origin.as_bytes()), "seq": f.seq, "hash": hex(f.hash),
                })).collect::<Vec<_>>(),
                "frame": frame(&Message::Clock(clock.clone())),
            },
            "entries": {
                "origin": hex(origin.public_key().as_bytes()),
                "seqs": [1, 2, 3],
                "frame": frame(&Message::Entries(entries)),
            },
            "head": { "seq": 3, "frame": frame(&Message::Head(head)) },
            "ack": {
                "origin": hex(ack.origin.as_bytes()),
                "seq": ack.seq,
                "frame": frame(&Message::Ack(ack)),
            },
            "fork": {
                "a": "feed_head",
                "b": "fork_chain_head",
                "entry_seqs": [4],
                "frame": frame(&Message::Fork(proof)),
            },
            "wants": {
                "origins": wants.origins().iter().map(|o| hex(o.0)).collect::<Vec<_>>(),
                "frame": frame(&Message::Wants(wants.clone())),
            },
        },
        "refused_frames": [
            { "why": "length 0", "frame": "00000000" },
            { "why": "unknown type 0x07", "frame": "0000000107" },
            { "why": "a Wants listing one origin twice", "frame": hex({
                let one = origin.public_key().fingerprint();
                let mut f = vec![0, 0, 0, 69, 0x06, 0, 0, 0, 2];
                f.extend_from_slice(&one.0);
                f.extend_from_slice(&one.0);
                f
            }) },
            { "why": "length beyond MAX_MESSAGE (1 MiB) for an Entries frame", "frame": "0010000102" },
            { "why": "an Ack with a trailing byte", "frame": hex({
                let mut f = Message::Ack(ack).to_frame();
                f.push(0);
                f[3] += 1;
                f
            }) },
        ],
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("hex")
}

#[test]
fn replication_vectors_match_the_file() {
    let built = build();
    if std::env::var("VSERV_WRITE_VECTORS").as_deref() == Ok("1") {
        let text = serde_json::to_string_pretty(&built).expect("json") + "\n";
        std::fs::write(path(), text).expect("write spec/vectors/replication.json");
    }
    let text = std::fs::read_to_string(path()).expect("read spec/vectors/replication.json");
    let file: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(
        file, built,
        "spec/vectors/replication.json differs from what the implementation produces \
         (regenerate with VSERV_WRITE_VECTORS=1 if the change is intended)"
    );
}

/// The file on its own terms: frames decode to the listed fields and re-encode identically,
/// signatures verify, the fork proof is valid, the refused frames are refused.
#[test]
fn replication_vectors_are_consistent() {
    let text = std::fs::read_to_string(path()).expect("read spec/vectors/replication.json");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    let m = &v["messages"];
    let decode = |f: &Value| {
        let frame = bytes(f);
        let len = u32::from_be_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, frame.len() - 4, "frame length");
        let msg = Message::decode(&frame[4..]).expect("decodes");
        assert_eq!(msg.to_frame(), frame, "re-encodes identically");
        msg
    };
    let Message::Clock(clock) = decode(&m["clock"]["frame"]) else {
        panic!("not a clock")
    };
    assert_eq!(clock.epoch().to_vec(), bytes(&m["clock"]["epoch"]));
    for (f, j) in clock
        .feeds()
        .iter()
        .zip(m["clock"]["feeds"].as_array().expect("list"))
    {
        assert_eq!(f.origin.as_bytes().to_vec(), bytes(&j["origin"]));
        assert_eq!(Some(f.seq), j["seq"].as_u64());
        assert_eq!(f.hash.to_vec(), bytes(&j["hash"]));
    }
    let Message::Entries(entries) = decode(&m["entries"]["frame"]) else {
        panic!("not entries")
    };
    for (e, j) in entries
        .entries()
        .iter()
        .zip(v["feed"].as_array().expect("list"))
    {
        assert_eq!(e.to_bytes(), bytes(&j["encoding"]));
        assert_eq!(e.hash().to_vec(), bytes(&j["hash"]));
    }
    let Message::Head(head) = decode(&m["head"]["frame"]) else {
        panic!("not a head")
    };
    head.verify().expect("the head's signature verifies");
    assert_eq!(head.to_bytes().to_vec(), bytes(&v["feed_head"]["encoding"]));
    let Message::Ack(ack) = decode(&m["ack"]["frame"]) else {
        panic!("not an ack")
    };
    assert_eq!(Some(ack.seq), m["ack"]["seq"].as_u64());
    let Message::Fork(proof) = decode(&m["fork"]["frame"]) else {
        panic!("not a fork")
    };
    proof.verify().expect("the fork proof is valid");
    assert_eq!(proof.a(), &head);
    let Message::Wants(wants) = decode(&m["wants"]["frame"]) else {
        panic!("not a wants")
    };
    let listed: Vec<Vec<u8>> = m["wants"]["origins"]
        .as_array()
        .expect("list")
        .iter()
        .map(bytes)
        .collect();
    let origins: Vec<Vec<u8>> = wants.origins().iter().map(|o| o.0.to_vec()).collect();
    assert_eq!(origins, listed);

    let key = vserv_core::ServerKey::from_bytes(&bytes(&v["keys"]["peer_public"])).expect("key");
    let sid: [u8; 32] = bytes(&v["peer_link"]["session_id"]).try_into().expect("32");
    let sig: [u8; 64] = bytes(&v["peer_link"]["signature"]).try_into().expect("64");
    assert_eq!(
        peer_link_message(&sid).to_vec(),
        bytes(&v["peer_link"]["message"])
    );
    verify_peer_link(&key, &sid, &sig).expect("the peer link signature verifies");
    let mut other_sid = sid;
    other_sid[0] ^= 1;
    assert!(verify_peer_link(&key, &other_sid, &sig).is_err());

    for r in v["refused_frames"].as_array().expect("list") {
        let mut reader = MessageReader::new();
        reader.push(&bytes(&r["frame"]));
        assert!(
            reader.next_message().is_err(),
            "{} was not refused",
            r["why"]
        );
    }
}
