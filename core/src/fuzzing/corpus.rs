//! Seed inputs for every target: real messages, requests and responses, records, and the
//! headers that take the connection targets through the handshake.

use super::forge::{
    client_handshake, client_hello_frame, forge_record, record_spec, server_handshake,
    server_hello_frame,
};
use super::identity;
use crate::wire::frame::put_frame;
use crate::wire::{
    self, CONTENT_APP, CONTENT_CLIENT_FINISHED, CONTENT_CLOSE, CONTENT_KEY_UPDATE, CONTENT_STREAM,
    ClientFinished, Close, Request, Response, ServerAuth, TYPE_REFUSE,
};

/// Seed inputs for every target, as `(target, file name, bytes)`: real messages, records and
/// the headers that take the connection targets through the handshake.
pub fn corpus_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        seeds.push((target, name.to_owned(), bytes));
    };
    let ch = client_hello_frame();
    let sh = server_hello_frame();
    add("client_hello", "client_hello", ch[4..].to_vec());
    add("server_hello", "server_hello", sh[4..].to_vec());
    add("server_hello", "refuse_body", vec![0, 3]);
    let auth = ServerAuth {
        static_key: *identity().public_key().as_bytes(),
        signature: [7u8; wire::SIGNATURE_LEN],
        finished: [9u8; 32],
    };
    let mut v = Vec::new();
    auth.encode(&mut v);
    add("server_auth", "server_auth", v);
    let mut v = Vec::new();
    ClientFinished {
        finished: [5u8; 32],
    }
    .encode(&mut v);
    add("client_finished", "client_finished", v);
    let mut v = Vec::new();
    Close {
        code: wire::CloseCode::Normal,
        reason: "bye".into(),
    }
    .encode(&mut v);
    add("close", "close", v);

    let requests = [
        Request {
            id: 1,
            name: "ping".into(),
            args: vec![b"hi".to_vec()],
        },
        Request {
            id: 2,
            name: "help".into(),
            args: vec![b"ver".to_vec()],
        },
        Request {
            id: 3,
            name: "id".into(),
            args: vec![],
        },
    ];
    let responses = [
        Response {
            id: 1,
            result: Ok(vec![b"hi".to_vec()]),
        },
        Response {
            id: 2,
            result: Ok(vec![b"1".to_vec(), b"vserv 0.1.0".to_vec()]),
        },
        Response {
            id: 3,
            result: Err(crate::ErrorReply::new(
                crate::ErrorCode::UnknownCommand,
                "unknown command",
            )),
        },
        Response {
            id: 4,
            result: Ok(vec![
                b"fuzz".to_vec(),
                identity()
                    .public_key()
                    .fingerprint()
                    .to_string()
                    .into_bytes(),
            ]),
        },
    ];
    for (i, r) in requests.iter().enumerate() {
        let mut v = Vec::new();
        r.encode(&mut v);
        add("command", &format!("request_{i}"), v);
    }
    for (i, r) in responses.iter().enumerate() {
        let mut v = Vec::new();
        r.encode(&mut v);
        add("command", &format!("response_{i}"), v);
    }

    // Deframer: a chunk byte, then the client's whole flight.
    let mut v = vec![7u8];
    v.extend_from_slice(&client_handshake());
    add("deframer", "client_flight", v);
    let mut v = vec![0u8];
    v.extend_from_slice(&server_handshake());
    add("deframer", "server_flight", v);

    // Server: raw client bytes, ClientHello prefix, full handshake + record specs.
    let encoded = |r: &Request| {
        let mut v = Vec::new();
        r.encode(&mut v);
        v
    };
    let mut raw = vec![0, 0, 0];
    raw.extend_from_slice(&client_handshake());
    add("server_connection", "raw_handshake", raw);
    let mut after_hello = vec![1, 13, 1];
    forge_record(CONTENT_CLIENT_FINISHED, &[0u8; 32], &mut after_hello);
    add("server_connection", "after_hello", after_hello);
    let mut specs = vec![2, 0, 0x13];
    for r in &requests {
        specs.extend(record_spec(CONTENT_APP, &encoded(r)));
    }
    specs.extend(record_spec(CONTENT_KEY_UPDATE, &[]));
    let mut close_body = Vec::new();
    Close {
        code: wire::CloseCode::Normal,
        reason: "bye".into(),
    }
    .encode(&mut close_body);
    specs.extend(record_spec(CONTENT_CLOSE, &close_body));
    add("server_connection", "requests", specs);
    let mut raw_records = vec![3, 0, 2];
    forge_record(CONTENT_APP, &encoded(&requests[0]), &mut raw_records);
    add("server_connection", "raw_records", raw_records);

    // Client: the same shapes with server messages.
    let mut raw = vec![0, 0, 0];
    raw.extend_from_slice(&server_handshake());
    add("client_connection", "raw_handshake", raw);
    let mut after_hello = vec![1, 0, 0];
    after_hello.extend_from_slice(&server_handshake()[sh.len()..]);
    add("client_connection", "after_hello", after_hello);
    let mut specs = vec![2, 1, 0x19];
    for r in &responses[..3] {
        let mut v = Vec::new();
        r.encode(&mut v);
        specs.extend(record_spec(CONTENT_APP, &v));
    }
    specs.extend(record_spec(CONTENT_KEY_UPDATE, &[]));
    specs.extend(record_spec(CONTENT_CLOSE, &close_body));
    add("client_connection", "responses", specs);
    let mut refuse = vec![0, 0, 0];
    put_frame(&mut refuse, &[TYPE_REFUSE, 0, 3]);
    add("client_connection", "refused", refuse);
    let mut raw_records = vec![3, 0, 0x0a];
    let mut v = Vec::new();
    responses[0].encode(&mut v);
    forge_record(CONTENT_APP, &v, &mut raw_records);
    add("client_connection", "raw_records", raw_records);

    // Streams: a `peer` request opens the server's stream, then stream records both ways.
    let clock_frame = match crate::replication::Clock::new([3; 16], Vec::new()) {
        Ok(clock) => crate::replication::Message::Clock(clock).to_frame(),
        Err(e) => unreachable!("an empty clock is valid: {e}"),
    };
    let peer = crate::commands::Command::Peer {
        key: *identity().public_key().as_bytes(),
        signature: [5u8; wire::SIGNATURE_LEN],
    };
    let mut specs = vec![2, 0, 0x08];
    specs.extend(record_spec(
        CONTENT_APP,
        &encoded(&Request {
            id: 1,
            name: peer.name().into(),
            args: peer.args(),
        }),
    ));
    specs.extend(record_spec(CONTENT_STREAM, &clock_frame));
    add("server_connection", "peer_then_stream", specs);
    let mut specs = vec![2, 0, 0x08];
    specs.extend(record_spec(CONTENT_STREAM, &clock_frame));
    add("client_connection", "stream", specs);
    let notice = crate::commands::Notice::Message {
        from: "alice".into(),
        id: 7,
        time: 1_700_000_000,
    };
    let mut specs = vec![2, 0, 0x08];
    specs.extend(record_spec(wire::CONTENT_NOTICE, &notice.encode()));
    add("client_connection", "notice", specs);
    add("notice", "message", notice.encode());
    {
        use crate::messages::{MessageKey, seal};
        let mut rng = crate::fuzzing::FuzzRng::new(5);
        let sender = MessageKey::generate(&mut rng);
        let recipient = MessageKey::from_secret_bytes(&[7u8; 32]);
        if let Ok(recipient) = recipient
            && let Ok(m) = seal(
                &sender,
                "alice",
                &recipient.public(),
                "bob",
                1,
                b"hi",
                &mut rng,
            )
        {
            add("sealed_message", "hi", m.to_bytes());
        }
    }
    if let Ok(token) = crate::transit::seal(&[7u8; 32], "payroll", 2, [9u8; 16], b"hi") {
        add("transit_token", "hi", token.encode().into_bytes());
    }
    {
        let mut rng = crate::fuzzing::FuzzRng::new(6);
        let ping = crate::Request {
            id: 1,
            name: "ping".into(),
            args: vec![b"hi".to_vec()],
        };
        let server = crate::fuzzing::identity().public_key();
        if let Ok((bytes, _)) =
            crate::datagram::seal_request(&server, &ping, 0, 1_700_000_000, &mut rng)
        {
            add("datagram", "ping", bytes);
        }
        add(
            "datagram",
            "key_query",
            crate::datagram::key_query().to_vec(),
        );
    }
    add(
        "notice",
        "idle_soon",
        crate::commands::Notice::IdleSoon { seconds_left: 30 }.encode(),
    );

    // Replication: a message frame's content read every way, and a link past the clock.
    add(
        "replication_message",
        "clock",
        [&[3u8][..], &clock_frame[4..]].concat(),
    );
    add(
        "replication_message",
        "clock_stream",
        [&[2u8][..], &clock_frame].concat(),
    );
    add("replication_link", "after_clock", vec![0, 1]);
    let wants_frame =
        match crate::replication::Wants::new(vec![identity().public_key().fingerprint()]) {
            Ok(wants) => crate::replication::Message::Wants(wants).to_frame(),
            Err(e) => unreachable!("a list of one is valid: {e}"),
        };
    add(
        "replication_message",
        "wants",
        [&[4u8][..], &wants_frame[4..]].concat(),
    );
    // A following link, its peer's Wants and Clock first.
    add("replication_link", "wants_then_clock", vec![0, 1 | 4 | 8]);
    add(
        "replication_link",
        "clock_in_pieces",
        [&[5u8, 2][..], &clock_frame].concat(),
    );
    seeds
}
