//! Protocol test vectors: `spec/vectors/handshake.json` and `spec/vectors/records.json`.
//!
//! The normal tests only *read* the JSON files and check that this implementation reproduces
//! every value byte for byte, twice over:
//! - by calling the key-schedule and record functions (`secure::keys`, `RecordKeys`) directly;
//! - by driving a real client and server [`Connection`] with replay RNGs that hand out the
//!   fixed byte streams recorded in the JSON, and comparing the complete wire streams.
//!
//! The vectors were produced by [`write_vectors`], which runs only when the environment
//! variable `VSERV_WRITE_VECTORS=1` is set:
//!
//! ```sh
//! VSERV_WRITE_VECTORS=1 cargo test -p vserv-core --test vectors write_vectors
//! ```
//!
//! `spec/reference/check_vectors.py` is an independent Python implementation that checks the
//! same files from the text of `spec/protocol.md`.
// The vectors pin the real cipher, MACs and signatures, which the fuzzing build replaces.
#![cfg(not(feature = "fuzzing"))]
#![allow(clippy::disallowed_methods)] // one real Instant is the epoch of the virtual clock

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use aes::Aes256;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use vserv_core::commands::{Command, Reply};
use vserv_core::secure::RecordKeys;
use vserv_core::secure::keys::{self, Transcript};
use vserv_core::wire::{
    self, CONTENT_APP, CONTENT_CLIENT_FINISHED, CONTENT_CLOSE, CONTENT_KEY_UPDATE,
    CONTENT_SERVER_AUTH, ClientFinished, ClientHello, MAX_PAYLOAD, ServerAuth, ServerHello,
};
use vserv_core::{
    Close, CloseCode, Config, Connection, Error, Event, Request, Response, Role, ServerIdentity,
    ServerKey,
};

mod support;
use support::pair::{Auto, Dir, Pair, Split};

// ---------------------------------------------------------------------------------------------
// JSON model
// ---------------------------------------------------------------------------------------------

/// Bytes, written as a lowercase hex string.
#[derive(Clone, PartialEq, Eq, Default)]
struct Hex(Vec<u8>);

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map(Hex).map_err(serde::de::Error::custom)
    }
}

impl Hex {
    fn arr<const N: usize>(&self) -> [u8; N] {
        self.0
            .as_slice()
            .try_into()
            .unwrap_or_else(|_| panic!("expected {N} bytes, got {}", self.0.len()))
    }
}

fn h(b: impl AsRef<[u8]>) -> Hex {
    Hex(b.as_ref().to_vec())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HandshakeVectors {
    description: Vec<String>,
    labels: Labels,
    inputs: Inputs,
    public: Public,
    key_schedule: KeySchedule,
    messages: Vec<Message>,
    streams: Streams,
    refuse_frames: Vec<RefuseFrame>,
}

/// Every HKDF label and context string, as UTF-8 text (no terminator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Labels {
    extract_salt: String,
    client_hs: String,
    server_hs: String,
    client_ap: String,
    server_ap: String,
    session_id: String,
    key: String,
    mac: String,
    finished: String,
    key_update: String,
    signature_context: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Inputs {
    server_identity_secret: Hex,
    /// The client's RNG output, in the order it is drawn.
    client_rng: Vec<RngDraw>,
    /// The server's RNG output, in the order it is drawn.
    server_rng: Vec<RngDraw>,
    first_ping_payload: String,
    second_ping_payload: String,
    close_code: u16,
    close_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RngDraw {
    purpose: String,
    bytes: Hex,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Public {
    client_random: Hex,
    client_ephemeral_secret: Hex,
    client_ephemeral_public: Hex,
    server_random: Hex,
    server_ephemeral_secret: Hex,
    server_ephemeral_public: Hex,
    server_static_public: Hex,
    server_fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KeySchedule {
    shared_secret: Hex,
    prk: Hex,
    th1: Hex,
    client_hs_secret: Hex,
    client_hs_key: Hex,
    client_hs_mac: Hex,
    client_hs_finished_key: Hex,
    server_hs_secret: Hex,
    server_hs_key: Hex,
    server_hs_mac: Hex,
    server_hs_finished_key: Hex,
    th_signature: Hex,
    signed_message: Hex,
    signature: Hex,
    th_server_finished: Hex,
    server_finished: Hex,
    th_client_finished: Hex,
    client_finished: Hex,
    th_app: Hex,
    client_ap_secret: Hex,
    client_ap_key: Hex,
    client_ap_mac: Hex,
    server_ap_secret: Hex,
    server_ap_key: Hex,
    server_ap_mac: Hex,
    session_id: Hex,
    client_ap_secret_gen1: Hex,
    client_ap_key_gen1: Hex,
    client_ap_mac_gen1: Hex,
}

impl KeySchedule {
    /// A traffic secret by the name used in [`Message::keys`].
    fn secret(&self, name: &str) -> [u8; 32] {
        match name {
            "client_hs" => self.client_hs_secret.arr(),
            "server_hs" => self.server_hs_secret.arr(),
            "client_ap" => self.client_ap_secret.arr(),
            "server_ap" => self.server_ap_secret.arr(),
            "client_ap_gen1" => self.client_ap_secret_gen1.arr(),
            other => panic!("unknown traffic secret {other}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Message {
    name: String,
    /// `client_to_server` or `server_to_client`.
    direction: String,
    /// `plaintext` (a bare frame) or `record` (an encrypted frame).
    framing: String,
    /// Plaintext frames: the frame body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<Hex>,
    /// Records: the traffic secret protecting it (a key_schedule name without `_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iv: Option<Hex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<u8>,
    /// Records: the plaintext after the content type byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<Hex>,
    decoded: Decoded,
    /// The exact bytes on the wire: `len:u32be | body`.
    wire: Hex,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Decoded {
    ClientHello {
        version: u16,
        random: Hex,
        ephemeral: Hex,
    },
    ServerHello {
        version: u16,
        random: Hex,
        ephemeral: Hex,
    },
    ServerAuth {
        static_key: Hex,
        signature: Hex,
        finished: Hex,
    },
    ClientFinished {
        finished: Hex,
    },
    Request {
        id: u32,
        name: String,
        args: Vec<Hex>,
    },
    Response {
        id: u32,
        fields: Vec<Hex>,
    },
    KeyUpdate,
    Close {
        code: u16,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Streams {
    client_to_server: Hex,
    server_to_client: Hex,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RefuseFrame {
    code: u16,
    wire: Hex,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecordVectors {
    description: Vec<String>,
    traffic_secret: Hex,
    key: Hex,
    mac: Hex,
    cases: Vec<RecordCase>,
    invalid: Vec<InvalidRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RecordCase {
    name: String,
    seq: u64,
    iv: Hex,
    content_type: u8,
    /// The payload after the content type byte (absent if given as a pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<Hex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_pattern: Option<Pattern>,
    /// Total wire length (4-byte length prefix included).
    wire_len: usize,
    /// The complete wire bytes (absent for very long records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wire: Option<Hex>,
    /// For very long records: SHA-256 of the complete wire bytes and their first 64 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wire_sha256: Option<Hex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wire_prefix: Option<Hex>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pattern {
    len: usize,
    rule: String,
}

const PATTERN_RULE: &str = "byte i = i mod 251";

fn pattern(p: &Pattern) -> Vec<u8> {
    assert_eq!(p.rule, PATTERN_RULE, "unknown payload pattern");
    (0..p.len).map(|i| (i % 251) as u8).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InvalidRecord {
    name: String,
    /// The receiver's expected sequence number.
    seq: u64,
    wire: Hex,
    why: String,
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An RNG that hands out a fixed byte stream and panics when it runs dry.
struct Replay {
    bytes: Vec<u8>,
    used: Arc<AtomicUsize>,
}

impl Replay {
    fn new(bytes: Vec<u8>) -> (Self, Arc<AtomicUsize>) {
        let used = Arc::new(AtomicUsize::new(0));
        (
            Replay {
                bytes,
                used: used.clone(),
            },
            used,
        )
    }
}

impl rand_core::TryRng for Replay {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let at = self.used.load(Ordering::SeqCst);
        let end = at + dst.len();
        assert!(
            end <= self.bytes.len(),
            "replay RNG exhausted: {} bytes wanted at offset {at} of {}",
            dst.len(),
            self.bytes.len()
        );
        dst.copy_from_slice(&self.bytes[at..end]);
        self.used.store(end, Ordering::SeqCst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for Replay {}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn read_json<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut t = Transcript::default();
    for p in parts {
        t.update(p);
    }
    t.hash()
}

/// The order n of secp256k1, and floor(n / 2).
const N: [u8; 32] =
    hex_literal(b"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
const HALF_N: [u8; 32] =
    hex_literal(b"7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");

const fn hex_literal(s: &[u8; 64]) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        }
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// a - b for 32-byte big-endian numbers with a >= b.
fn sub_be(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

fn text(label: &[u8]) -> String {
    String::from_utf8(label.to_vec()).expect("labels are ASCII")
}

/// Record keys for `secret` whose next record uses sequence number `seq`.
fn keys_at(secret: [u8; 32], seq: u64) -> RecordKeys {
    let mut k = RecordKeys::from_secret(keys::Secret::new(secret));
    let mut scratch = Vec::new();
    for _ in 0..seq {
        k.seal(CONTENT_APP, &[], [0; 16], &mut scratch)
            .expect("seal");
    }
    assert_eq!(k.seq(), seq);
    k
}

fn seal_at(secret: [u8; 32], seq: u64, content_type: u8, payload: &[u8], iv: [u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    keys_at(secret, seq)
        .seal(content_type, payload, iv, &mut out)
        .expect("seal");
    out
}

/// Opens a whole wire record (length prefix included) at `seq`.
fn open_at(secret: [u8; 32], seq: u64, wire: &[u8]) -> Result<(u8, Vec<u8>), Error> {
    assert!(wire.len() >= 4, "record shorter than its length prefix");
    let len = u32::from_be_bytes(wire[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(
        len,
        wire.len() - 4,
        "length prefix disagrees with the record"
    );
    let mut body = wire[4..].to_vec();
    let mut k = keys_at(secret, seq);
    let (ct, payload) = k.open(&mut body)?;
    assert_eq!(k.seq(), seq + 1, "open must advance the sequence number");
    Ok((ct, payload.to_vec()))
}

/// Splits a byte stream into whole frames (`len | body`).
fn split_frames(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while !stream.is_empty() {
        let len = u32::from_be_bytes(stream[..4].try_into().expect("4 bytes")) as usize;
        frames.push(stream[..4 + len].to_vec());
        stream = &stream[4 + len..];
    }
    frames
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::frame::put_frame(&mut out, body);
    out
}

// ---------------------------------------------------------------------------------------------
// Fixed inputs (used only by the generator; the checks read them back from the JSON)
// ---------------------------------------------------------------------------------------------

fn fixed_inputs() -> Inputs {
    let draw = |purpose: &str, bytes: Vec<u8>| RngDraw {
        purpose: purpose.to_owned(),
        bytes: Hex(bytes),
    };
    Inputs {
        server_identity_secret: Hex(vec![0x33; 32]),
        client_rng: vec![
            draw("client_random", (0x01..=0x20).collect()),
            draw(
                "ephemeral scalar, first try: 0xff..ff is >= the group order n, so it is rejected and redrawn",
                vec![0xff; 32],
            ),
            draw("ephemeral scalar, second try: accepted", vec![0x11; 32]),
            draw("IV of record ClientFinished", vec![0xc1; 16]),
            draw("IV of record request 1 (ping)", vec![0xc2; 16]),
            draw("IV of record KeyUpdate", vec![0xc3; 16]),
            draw("IV of record request 2 (ping)", vec![0xc4; 16]),
            draw("IV of record Close", vec![0xc5; 16]),
        ],
        server_rng: vec![
            draw("server_random", (0x21..=0x40).collect()),
            draw("ephemeral scalar: accepted", vec![0x22; 32]),
            draw("IV of record ServerAuth", vec![0xd1; 16]),
            draw("IV of record response 1", vec![0xd2; 16]),
            draw("IV of record response 2", vec![0xd3; 16]),
        ],
        first_ping_payload: "hello, vserv".to_owned(),
        second_ping_payload: "after key update".to_owned(),
        close_code: 0,
        close_reason: "bye".to_owned(),
    }
}

fn stream_of(draws: &[RngDraw]) -> Vec<u8> {
    draws.iter().flat_map(|d| d.bytes.0.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Driving two connections
// ---------------------------------------------------------------------------------------------

const C2S: &str = "client_to_server";
const S2C: &str = "server_to_client";

struct Driven {
    /// Every frame in the order it was produced, with its direction.
    frames: Vec<(&'static str, Vec<u8>)>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

#[cfg(not(feature = "fuzzing"))] // only the MAC tests step by hand
fn take(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    out
}

#[cfg(not(feature = "fuzzing"))] // only the MAC tests step by hand
fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// Answers the vectors' `ping` requests with `pong`.
fn pong(req: &Request) -> Response {
    let result = Command::parse(req).map(|cmd| match cmd {
        Command::Ping { payload } => Reply::Pong(payload).to_fields(),
        other => panic!("unexpected command {other:?}"),
    });
    Response { id: req.id, result }
}

/// The client and server of the vectors (replay RNGs, the vectors' identity) in a [`Pair`]
/// that answers pings and leaves the trust decision to the test; and the counters of the
/// bytes each RNG handed out.
fn vector_pair(inputs: &Inputs) -> (Pair, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let now = Instant::now();
    let identity = Arc::new(
        ServerIdentity::from_secret_bytes(&inputs.server_identity_secret.0).expect("identity"),
    );
    let (client_rng, client_used) = Replay::new(stream_of(&inputs.client_rng));
    let (server_rng, server_used) = Replay::new(stream_of(&inputs.server_rng));
    let mut pair = Pair::from_connections(
        Connection::client(Config::default(), Box::new(client_rng), now),
        Connection::server(Config::default(), identity, Box::new(server_rng), now),
        now,
    );
    pair.auto = Auto {
        accept_key: false,
        ping_on_connect: false,
        answer: Some(pong),
    };
    (pair, client_used, server_used)
}

/// Moves one flight that must not be empty.
fn send(p: &mut Pair, from: Role) {
    let moved = p.transmit(from).expect("handle_input");
    assert!(moved > 0, "nothing to send from the {from:?}");
}

/// Runs the scripted session: handshake, ping, key update, ping, close.
fn drive(inputs: &Inputs) -> Driven {
    let (mut p, client_used, server_used) = vector_pair(inputs);
    let now = p.now;

    // ClientHello -> ServerHello + ServerAuth.
    send(&mut p, Role::Client);
    send(&mut p, Role::Server);
    let ev = &p.client_events;
    assert!(
        matches!(ev.as_slice(), [Event::ServerKey(_)]),
        "client events after ServerAuth: {ev:?}"
    );
    p.client.accept_server_key(now).expect("accept_server_key");
    p.handle_events().expect("events");
    // ClientFinished.
    send(&mut p, Role::Client);
    assert!(p.client.is_connected() && p.server.is_connected());

    // ping 1.
    p.client
        .send_request("ping", vec![inputs.first_ping_payload.as_bytes().to_vec()])
        .expect("send_request");
    send(&mut p, Role::Client);
    send(&mut p, Role::Server);

    // KeyUpdate, then ping 2 under the next client generation.
    p.client.update_keys().expect("update_keys");
    p.client
        .send_request("ping", vec![inputs.second_ping_payload.as_bytes().to_vec()])
        .expect("send_request");
    send(&mut p, Role::Client);
    send(&mut p, Role::Server);

    // Close.
    p.client
        .close(CloseCode::from_u16(inputs.close_code), &inputs.close_reason);
    send(&mut p, Role::Client);
    assert!(p.client.is_closed() && p.server.is_closed());
    assert!(p.take_output(Role::Client).is_empty() && p.take_output(Role::Server).is_empty());

    assert_eq!(
        client_used.load(Ordering::SeqCst),
        stream_of(&inputs.client_rng).len(),
        "client RNG not fully consumed"
    );
    assert_eq!(
        server_used.load(Ordering::SeqCst),
        stream_of(&inputs.server_rng).len(),
        "server RNG not fully consumed"
    );
    let frames = p
        .flights
        .iter()
        .flat_map(|(dir, bytes)| {
            let dir = match dir {
                Dir::ClientToServer => C2S,
                Dir::ServerToClient => S2C,
            };
            split_frames(bytes).into_iter().map(move |f| (dir, f))
        })
        .collect();
    Driven {
        frames,
        client_events: p.client_events,
        server_events: p.server_events,
    }
}

// ---------------------------------------------------------------------------------------------
// The key schedule, computed directly from the inputs
// ---------------------------------------------------------------------------------------------

struct Direct {
    public: Public,
    ks: KeySchedule,
    client_hello: Vec<u8>,
    server_hello: Vec<u8>,
    server_auth: Vec<u8>,
    client_finished: Vec<u8>,
}

fn draw_bytes<'a>(draws: &'a [RngDraw], prefix: &str) -> Vec<&'a [u8]> {
    draws
        .iter()
        .filter(|d| d.purpose.starts_with(prefix))
        .map(|d| d.bytes.0.as_slice())
        .collect()
}

/// Computes every handshake value by calling `secure::keys` directly, without a Connection.
fn direct(inputs: &Inputs) -> Direct {
    let client_random: [u8; 32] = draw_bytes(&inputs.client_rng, "client_random")[0]
        .try_into()
        .expect("32");
    let server_random: [u8; 32] = draw_bytes(&inputs.server_rng, "server_random")[0]
        .try_into()
        .expect("32");
    // random_scalar redraws until the bytes are a valid scalar; the last draw is the one used.
    let client_draws = draw_bytes(&inputs.client_rng, "ephemeral scalar");
    let server_draws = draw_bytes(&inputs.server_rng, "ephemeral scalar");
    let (mut rng, used) = Replay::new(client_draws.concat());
    let client_eph = keys::random_scalar(&mut rng);
    assert_eq!(used.load(Ordering::SeqCst), 32 * client_draws.len());
    let (mut rng, used) = Replay::new(server_draws.concat());
    let server_eph = keys::random_scalar(&mut rng);
    assert_eq!(used.load(Ordering::SeqCst), 32 * server_draws.len());
    let client_pub = keys::public_point(&client_eph);
    let server_pub = keys::public_point(&server_eph);
    let identity =
        ServerIdentity::from_secret_bytes(&inputs.server_identity_secret.0).expect("identity");
    let static_key = identity.public_key();

    let mut ch = Vec::new();
    ClientHello {
        version: wire::PROTOCOL_VERSION,
        random: client_random,
        ephemeral: client_pub,
    }
    .encode(&mut ch);
    let mut sh = Vec::new();
    ServerHello {
        version: wire::PROTOCOL_VERSION,
        random: server_random,
        ephemeral: server_pub,
    }
    .encode(&mut sh);

    let shared = keys::ecdh(&client_eph, &server_pub).expect("ecdh");
    let shared_other = keys::ecdh(&server_eph, &client_pub).expect("ecdh");
    assert_eq!(
        *shared, *shared_other,
        "ECDH disagrees between the two sides"
    );
    let prk = keys::extract(&shared);
    let th1 = sha256(&[&ch, &sh]);
    let client_hs = keys::expand(&prk, keys::LABEL_CLIENT_HS, &th1);
    let server_hs = keys::expand(&prk, keys::LABEL_SERVER_HS, &th1);
    let key = |s: &[u8; 32]| h(*keys::expand(s, keys::LABEL_KEY, &[]));
    let mac = |s: &[u8; 32]| h(*keys::expand(s, keys::LABEL_MAC, &[]));
    let fin = |s: &[u8; 32]| h(*keys::expand(s, keys::LABEL_FINISHED, &[]));

    let th_signature = sha256(&[&ch, &sh, &[CONTENT_SERVER_AUTH], static_key.as_bytes()]);
    let signed_message = keys::signed_message(&th_signature);
    let signature = identity.sign(&signed_message);
    static_key
        .verify(&signed_message, &signature)
        .expect("signature verifies");
    let th_server_finished = sha256(&[
        &ch,
        &sh,
        &[CONTENT_SERVER_AUTH],
        static_key.as_bytes(),
        &signature,
    ]);
    let server_finished = keys::finished(&server_hs, &th_server_finished);
    assert_eq!(
        server_finished,
        keys::hmac(
            &keys::expand(&server_hs, keys::LABEL_FINISHED, &[]),
            &th_server_finished
        )
    );
    let mut sa = Vec::new();
    ServerAuth {
        static_key: *static_key.as_bytes(),
        signature,
        finished: server_finished,
    }
    .encode(&mut sa);
    let th_client_finished = sha256(&[&ch, &sh, &sa]);
    let client_finished = keys::finished(&client_hs, &th_client_finished);
    let mut cf = Vec::new();
    ClientFinished {
        finished: client_finished,
    }
    .encode(&mut cf);
    let th_app = sha256(&[&ch, &sh, &sa, &cf]);
    let client_ap = keys::expand(&prk, keys::LABEL_CLIENT_AP, &th_app);
    let server_ap = keys::expand(&prk, keys::LABEL_SERVER_AP, &th_app);
    let session_id = keys::expand(&prk, keys::LABEL_SESSION_ID, &th_app);
    let client_ap_1 = keys::expand(&client_ap, keys::LABEL_KEY_UPDATE, &[]);

    let public = Public {
        client_random: h(client_random),
        client_ephemeral_secret: h(client_eph.as_scalar().to_bytes()),
        client_ephemeral_public: h(client_pub),
        server_random: h(server_random),
        server_ephemeral_secret: h(server_eph.as_scalar().to_bytes()),
        server_ephemeral_public: h(server_pub),
        server_static_public: h(static_key.as_bytes()),
        server_fingerprint: static_key.fingerprint().to_string(),
    };
    let ks = KeySchedule {
        shared_secret: h(*shared),
        prk: h(*prk),
        th1: h(th1),
        client_hs_key: key(&client_hs),
        client_hs_mac: mac(&client_hs),
        client_hs_finished_key: fin(&client_hs),
        client_hs_secret: h(*client_hs),
        server_hs_key: key(&server_hs),
        server_hs_mac: mac(&server_hs),
        server_hs_finished_key: fin(&server_hs),
        server_hs_secret: h(*server_hs),
        th_signature: h(th_signature),
        signed_message: h(&signed_message),
        signature: h(signature),
        th_server_finished: h(th_server_finished),
        server_finished: h(server_finished),
        th_client_finished: h(th_client_finished),
        client_finished: h(client_finished),
        th_app: h(th_app),
        client_ap_key: key(&client_ap),
        client_ap_mac: mac(&client_ap),
        client_ap_secret: h(*client_ap),
        server_ap_key: key(&server_ap),
        server_ap_mac: mac(&server_ap),
        server_ap_secret: h(*server_ap),
        session_id: h(*session_id),
        client_ap_key_gen1: key(&client_ap_1),
        client_ap_mac_gen1: mac(&client_ap_1),
        client_ap_secret_gen1: h(*client_ap_1),
    };
    Direct {
        public,
        ks,
        client_hello: ch,
        server_hello: sh,
        server_auth: sa,
        client_finished: cf,
    }
}

fn labels() -> Labels {
    Labels {
        extract_salt: text(keys::LABEL_EXTRACT),
        client_hs: text(keys::LABEL_CLIENT_HS),
        server_hs: text(keys::LABEL_SERVER_HS),
        client_ap: text(keys::LABEL_CLIENT_AP),
        server_ap: text(keys::LABEL_SERVER_AP),
        session_id: text(keys::LABEL_SESSION_ID),
        key: text(keys::LABEL_KEY),
        mac: text(keys::LABEL_MAC),
        finished: text(keys::LABEL_FINISHED),
        key_update: text(keys::LABEL_KEY_UPDATE),
        signature_context: text(keys::SIGNATURE_CONTEXT),
    }
}

/// The human-readable decoding of a frame body or record plaintext, using the core decoders.
fn decode(name: &str, content_type: Option<u8>, body: &[u8]) -> Decoded {
    match content_type {
        None if body.first() == Some(&wire::TYPE_CLIENT_HELLO) => {
            let m = ClientHello::decode(body).expect("ClientHello");
            Decoded::ClientHello {
                version: m.version,
                random: h(m.random),
                ephemeral: h(m.ephemeral),
            }
        }
        None => {
            let m = ServerHello::decode(body).expect("ServerHello");
            Decoded::ServerHello {
                version: m.version,
                random: h(m.random),
                ephemeral: h(m.ephemeral),
            }
        }
        Some(CONTENT_SERVER_AUTH) => {
            let m = ServerAuth::decode(&[&[CONTENT_SERVER_AUTH][..], body].concat())
                .expect("ServerAuth");
            Decoded::ServerAuth {
                static_key: h(m.static_key),
                signature: h(m.signature),
                finished: h(m.finished),
            }
        }
        Some(CONTENT_CLIENT_FINISHED) => {
            let m = ClientFinished::decode(&[&[CONTENT_CLIENT_FINISHED][..], body].concat())
                .expect("ClientFinished");
            Decoded::ClientFinished {
                finished: h(m.finished),
            }
        }
        Some(CONTENT_KEY_UPDATE) => {
            assert!(body.is_empty(), "KeyUpdate carries no payload");
            Decoded::KeyUpdate
        }
        Some(CONTENT_CLOSE) => {
            let c = Close::decode(body).expect("Close");
            Decoded::Close {
                code: c.code.to_u16(),
                reason: c.reason,
            }
        }
        Some(CONTENT_APP) if name.contains("request") => {
            let r = Request::decode(body).expect("Request");
            Decoded::Request {
                id: r.id,
                name: r.name,
                args: r.args.into_iter().map(Hex).collect(),
            }
        }
        Some(CONTENT_APP) => {
            let r = Response::decode(body).expect("Response");
            Decoded::Response {
                id: r.id,
                fields: r
                    .result
                    .expect("ok response")
                    .into_iter()
                    .map(Hex)
                    .collect(),
            }
        }
        Some(other) => panic!("unexpected content type {other:#04x}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// (name, direction, traffic secret) of each frame the scripted session produces, in order.
const SCRIPT: &[(&str, &str, Option<&str>)] = &[
    ("ClientHello", C2S, None),
    ("ServerHello", S2C, None),
    ("ServerAuth", S2C, Some("server_hs")),
    ("ClientFinished", C2S, Some("client_hs")),
    ("request 1: ping", C2S, Some("client_ap")),
    ("response 1", S2C, Some("server_ap")),
    ("KeyUpdate (client)", C2S, Some("client_ap")),
    (
        "request 2: ping, first record of the next client generation",
        C2S,
        Some("client_ap_gen1"),
    ),
    ("response 2", S2C, Some("server_ap")),
    ("Close (client)", C2S, Some("client_ap_gen1")),
];

fn build_handshake() -> HandshakeVectors {
    let inputs = fixed_inputs();
    let d = direct(&inputs);
    let driven = drive(&inputs);
    assert_eq!(driven.frames.len(), SCRIPT.len());
    let mut seqs = std::collections::BTreeMap::<&str, u64>::new();
    let mut messages = Vec::new();
    for ((name, dir, keyname), (got_dir, wire)) in SCRIPT.iter().zip(&driven.frames) {
        assert_eq!(dir, got_dir, "{name}");
        let msg = match keyname {
            None => Message {
                name: (*name).to_owned(),
                direction: (*dir).to_owned(),
                framing: "plaintext".to_owned(),
                body: Some(h(&wire[4..])),
                keys: None,
                seq: None,
                iv: None,
                content_type: None,
                payload: None,
                decoded: decode(name, None, &wire[4..]),
                wire: h(wire),
            },
            Some(k) => {
                let seq = seqs.entry(k).or_default();
                let (content_type, payload) =
                    open_at(d.ks.secret(k), *seq, wire).expect("own record opens");
                let m = Message {
                    name: (*name).to_owned(),
                    direction: (*dir).to_owned(),
                    framing: "record".to_owned(),
                    body: None,
                    keys: Some((*k).to_owned()),
                    seq: Some(*seq),
                    iv: Some(h(&wire[4..20])),
                    content_type: Some(content_type),
                    decoded: decode(name, Some(content_type), &payload),
                    payload: Some(Hex(payload)),
                    wire: h(wire),
                };
                *seq += 1;
                m
            }
        };
        messages.push(msg);
    }
    let stream = |dir: &str| {
        Hex(driven
            .frames
            .iter()
            .filter(|(d, _)| *d == dir)
            .flat_map(|(_, f)| f.clone())
            .collect())
    };
    let refuse_frames = [CloseCode::Busy, CloseCode::UnsupportedVersion]
        .into_iter()
        .map(|c| RefuseFrame {
            code: c.to_u16(),
            wire: h(vserv_core::session::refusal(c)),
        })
        .collect();
    HandshakeVectors {
        description: vec![
            "vserv protocol v1: one complete session from fixed keys and randomness.".into(),
            "Produced by core/tests/vectors.rs (VSERV_WRITE_VECTORS=1); see spec/protocol.md."
                .into(),
            "All byte strings are lowercase hex. Labels are UTF-8 text without terminator.".into(),
            "inputs.client_rng / inputs.server_rng list every byte each endpoint draws from its RNG, in order; replaying them reproduces every message.".into(),
            "The server answers pings with Reply::Pong (the payload echoed as the single field).".into(),
            "messages[].keys names the traffic secret protecting a record (key_schedule.<keys>_secret); seq is its implicit sequence number; payload is the plaintext after the content type byte.".into(),
            "streams are the concatenated wire bytes in each direction.".into(),
        ],
        labels: labels(),
        inputs,
        public: d.public,
        key_schedule: d.ks,
        messages,
        streams: Streams {
            client_to_server: stream(C2S),
            server_to_client: stream(S2C),
        },
        refuse_frames,
    }
}

const RECORD_SECRET: [u8; 32] = [0x42; 32];

/// (name, seq, IV byte, content type, payload).
fn record_case_inputs() -> Vec<(&'static str, u64, u8, u8, Vec<u8>)> {
    vec![
        ("app, empty payload", 0, 0xa0, CONTENT_APP, vec![]),
        (
            "app, 14-byte payload: 15 plaintext bytes, one block, pad 0x01",
            1,
            0xa1,
            CONTENT_APP,
            (0..14).collect(),
        ),
        (
            "app, 15-byte payload: 16 plaintext bytes, a whole extra block of 0x10 padding",
            2,
            0xa2,
            CONTENT_APP,
            (0..15).collect(),
        ),
        (
            "app, 16-byte payload: 17 plaintext bytes, two blocks, pad 0x0f",
            3,
            0xa3,
            CONTENT_APP,
            (0..16).collect(),
        ),
        (
            "app, 17-byte payload: two blocks, pad 0x0e",
            4,
            0xa4,
            CONTENT_APP,
            (0..17).collect(),
        ),
        (
            "KeyUpdate, empty payload",
            5,
            0xa5,
            CONTENT_KEY_UPDATE,
            vec![],
        ),
        (
            "Close: code 1 (protocol error), reason \"oops\"",
            6,
            0xa6,
            CONTENT_CLOSE,
            vec![0x00, 0x01, 0x00, 0x04, b'o', b'o', b'p', b's'],
        ),
        (
            "app, MAX_PAYLOAD (16384) bytes: the largest legal record",
            7,
            0xa7,
            CONTENT_APP,
            pattern(&Pattern {
                len: MAX_PAYLOAD,
                rule: PATTERN_RULE.into(),
            }),
        ),
    ]
}

/// A record body with an arbitrary (unpadded) CBC plaintext and a *valid* tag.
fn raw_record(secret: [u8; 32], seq: u64, iv: [u8; 16], plain_blocks: &[[u8; 16]]) -> Vec<u8> {
    let key = keys::expand(&secret, keys::LABEL_KEY, &[]);
    let mac = keys::expand(&secret, keys::LABEL_MAC, &[]);
    let cipher = Aes256::new(&(*key).into());
    let mut prev = iv;
    let mut ct = Vec::new();
    for p in plain_blocks {
        let mut block = aes::Block::default();
        for i in 0..16 {
            block[i] = p[i] ^ prev[i];
        }
        cipher.encrypt_block(&mut block);
        prev.copy_from_slice(&block);
        ct.extend_from_slice(&block);
    }
    let len = (16 + ct.len() + 32) as u32;
    let mut tagged = Vec::new();
    tagged.extend_from_slice(&seq.to_be_bytes());
    tagged.extend_from_slice(&len.to_be_bytes());
    tagged.extend_from_slice(&iv);
    tagged.extend_from_slice(&ct);
    let tag = keys::hmac(&mac, &tagged);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    out.extend_from_slice(&tag);
    out
}

fn build_records() -> RecordVectors {
    let s = RECORD_SECRET;
    let cases: Vec<RecordCase> = record_case_inputs()
        .into_iter()
        .map(|(name, seq, ivb, ct, payload)| {
            let wire = seal_at(s, seq, ct, &payload, [ivb; 16]);
            let big = payload.len() > 1024;
            RecordCase {
                name: name.into(),
                seq,
                iv: Hex(vec![ivb; 16]),
                content_type: ct,
                payload: (!big).then(|| h(&payload)),
                payload_pattern: big.then(|| Pattern {
                    len: payload.len(),
                    rule: PATTERN_RULE.into(),
                }),
                wire_len: wire.len(),
                wire: (!big).then(|| h(&wire)),
                wire_sha256: big.then(|| h(sha256(&[&wire]))),
                wire_prefix: big.then(|| h(&wire[..64])),
            }
        })
        .collect();
    let valid15 = cases[2].wire.clone().expect("literal").0;
    let valid16 = cases[3].wire.clone().expect("literal").0;
    let flip = |w: &[u8], at: usize| {
        let mut w = w.to_vec();
        w[at] ^= 0x01;
        w
    };
    let mut bad_pad_block = [0u8; 16];
    bad_pad_block[0] = CONTENT_APP;
    bad_pad_block[15] = 0x00;
    let mut bad_pad_block2 = [0x03u8; 16];
    bad_pad_block2[0] = CONTENT_APP;
    bad_pad_block2[14] = 0x02; // ends 02 03: claims 3 bytes of padding, one of which is wrong
    let mut short = valid15.clone();
    short.truncate(4 + 16 + 32);
    short[..4].copy_from_slice(&48u32.to_be_bytes());
    let mut ragged = valid16[..4 + 16 + 20].to_vec();
    ragged.extend_from_slice(&valid16[valid16.len() - 32..]);
    ragged[..4].copy_from_slice(&68u32.to_be_bytes());
    let invalid = vec![
        InvalidRecord {
            name: "tag bit flipped".into(),
            seq: 2,
            wire: Hex(flip(&valid15, valid15.len() - 1)),
            why: "the HMAC tag does not verify".into(),
        },
        InvalidRecord {
            name: "ciphertext bit flipped".into(),
            seq: 2,
            wire: Hex(flip(&valid15, 4 + 16 + 3)),
            why: "the HMAC tag does not verify".into(),
        },
        InvalidRecord {
            name: "IV bit flipped".into(),
            seq: 2,
            wire: Hex(flip(&valid15, 4)),
            why: "the tag covers the IV".into(),
        },
        InvalidRecord {
            name: "valid record at the wrong sequence number (replayed/reordered)".into(),
            seq: 3,
            wire: Hex(valid15.clone()),
            why: "sealed with seq 2 but the receiver expects seq 3".into(),
        },
        InvalidRecord {
            name: "valid record from another key".into(),
            seq: 2,
            wire: Hex(seal_at(
                *keys::expand(&s, keys::LABEL_KEY_UPDATE, &[]),
                2,
                CONTENT_APP,
                &(0..15).collect::<Vec<u8>>(),
                [0xa2; 16],
            )),
            why: "sealed under the next generation of the traffic secret".into(),
        },
        InvalidRecord {
            name: "valid tag, last plaintext byte 0x00 (bad PKCS#7 padding)".into(),
            seq: 0,
            wire: Hex(raw_record(s, 0, [0xb0; 16], &[bad_pad_block])),
            why: "padding byte 0 is not PKCS#7".into(),
        },
        InvalidRecord {
            name: "valid tag, inconsistent PKCS#7 padding (..02 03)".into(),
            seq: 0,
            wire: Hex(raw_record(s, 0, [0xb1; 16], &[bad_pad_block2])),
            why: "the last 3 bytes are not all 0x03".into(),
        },
        InvalidRecord {
            name: "valid tag, valid padding, but no content type byte".into(),
            seq: 0,
            wire: Hex(raw_record(s, 0, [0xb2; 16], &[[0x10; 16]])),
            why: "the unpadded plaintext is empty".into(),
        },
        InvalidRecord {
            name: "body of 48 bytes (IV and tag, no ciphertext block)".into(),
            seq: 2,
            wire: Hex(short),
            why: "shorter than the 64-byte minimum record body".into(),
        },
        InvalidRecord {
            name: "ciphertext of 20 bytes (not a multiple of 16)".into(),
            seq: 3,
            wire: Hex(ragged),
            why: "the body length minus IV and tag is not a multiple of 16".into(),
        },
    ];
    RecordVectors {
        description: vec![
            "vserv protocol v1 record layer vectors. Produced by core/tests/vectors.rs (VSERV_WRITE_VECTORS=1); see spec/protocol.md section 7.".into(),
            "key = HKDF-Expand(traffic_secret, \"vserv/1 key\", 32), mac = HKDF-Expand(traffic_secret, \"vserv/1 mac\", 32).".into(),
            "wire = len:u32be | IV[16] | AES-256-CBC(key, IV, PKCS#7(content_type || payload)) | HMAC-SHA256(mac, seq:u64be || len:u32be || IV || ciphertext).".into(),
            "cases: seal(seq, IV, content_type, payload) must give wire; opening wire at seq must give (content_type, payload).".into(),
            "payload_pattern: payload of `len` bytes where byte i = i mod 251; such cases give the SHA-256 and first 64 bytes of the wire instead of the wire.".into(),
            "invalid: each wire must be rejected by a receiver whose next sequence number is seq, with the one generic record error.".into(),
        ],
        traffic_secret: h(s),
        key: h(*keys::expand(&s, keys::LABEL_KEY, &[])),
        mac: h(*keys::expand(&s, keys::LABEL_MAC, &[])),
        cases,
        invalid,
    }
}

/// Writes spec/vectors/*.json when `VSERV_WRITE_VECTORS=1`; otherwise does nothing.
#[test]
fn write_vectors() {
    if std::env::var("VSERV_WRITE_VECTORS").as_deref() != Ok("1") {
        return;
    }
    let dir = vectors_dir();
    std::fs::create_dir_all(&dir).expect("mkdir");
    let write = |name: &str, json: String| {
        std::fs::write(dir.join(name), json + "\n").expect("write vectors");
    };
    write(
        "handshake.json",
        serde_json::to_string_pretty(&build_handshake()).expect("json"),
    );
    write(
        "records.json",
        serde_json::to_string_pretty(&build_records()).expect("json"),
    );
}

// ---------------------------------------------------------------------------------------------
// The checks (read-only)
// ---------------------------------------------------------------------------------------------

#[test]
fn labels_match_the_spec() {
    let v: HandshakeVectors = read_json("handshake.json");
    assert_eq!(v.labels, labels());
    assert_eq!(keys::SIGNATURE_CONTEXT, b"vserv/1 server signature");
    assert_eq!(keys::LABEL_EXTRACT, b"vserv/1 handshake");
}

#[test]
fn handshake_key_schedule_from_functions() {
    let v: HandshakeVectors = read_json("handshake.json");
    let d = direct(&v.inputs);
    assert_eq!(v.public, d.public);
    // Field by field first, so a failure names the value.
    let want = serde_json::to_value(&v.key_schedule).expect("json");
    let got = serde_json::to_value(&d.ks).expect("json");
    for (name, value) in want.as_object().expect("object") {
        assert_eq!(Some(value), got.get(name), "key_schedule.{name}");
    }
    assert_eq!(v.key_schedule, d.ks);

    // The plaintext handshake messages.
    assert_eq!(v.messages[0].body, Some(Hex(d.client_hello.clone())));
    assert_eq!(v.messages[0].wire, Hex(frame(&d.client_hello)));
    assert_eq!(v.messages[1].body, Some(Hex(d.server_hello.clone())));
    assert_eq!(v.messages[1].wire, Hex(frame(&d.server_hello)));
    assert_eq!(d.client_hello.len(), ClientHello::LEN);
    assert_eq!(d.server_hello.len(), ServerHello::LEN);
    // The record plaintexts of ServerAuth and ClientFinished are the messages themselves.
    let sa = &v.messages[2];
    assert_eq!(sa.content_type, Some(d.server_auth[0]));
    assert_eq!(sa.payload, Some(h(&d.server_auth[1..])));
    let cf = &v.messages[3];
    assert_eq!(cf.content_type, Some(d.client_finished[0]));
    assert_eq!(cf.payload, Some(h(&d.client_finished[1..])));

    // The signature is deterministic (RFC 6979) and verifies under the static key.
    let key = ServerKey::from_bytes(&v.public.server_static_public.0).expect("key");
    let sig: [u8; 64] = v.key_schedule.signature.arr();
    key.verify(&v.key_schedule.signed_message.0, &sig)
        .expect("signature verifies");
    let mut bad = sig;
    bad[10] ^= 1;
    assert_eq!(
        key.verify(&v.key_schedule.signed_message.0, &bad),
        Err(Error::BadSignature)
    );
    // Low-S: s <= n/2, and the otherwise valid (r, n - s) is rejected.
    let s: [u8; 32] = sig[32..].try_into().expect("32");
    assert!(s <= HALF_N, "signature s is high");
    let mut high = sig;
    high[32..].copy_from_slice(&sub_be(&N, &s));
    assert_eq!(
        key.verify(&v.key_schedule.signed_message.0, &high),
        Err(Error::BadSignature)
    );
    // Finished values verify (and a wrong one does not).
    let th: [u8; 32] = v.key_schedule.th_client_finished.arr();
    let cs: [u8; 32] = v.key_schedule.client_hs_secret.arr();
    assert!(keys::verify_finished(
        &cs,
        &th,
        &v.key_schedule.client_finished.arr()
    ));
    assert!(!keys::verify_finished(
        &cs,
        &th,
        &v.key_schedule.server_finished.arr()
    ));
}

#[test]
fn handshake_records_from_record_keys() {
    let v: HandshakeVectors = read_json("handshake.json");
    let ks = &v.key_schedule;
    // Each traffic secret's key and mac.
    for (secret, key, mac) in [
        (&ks.client_hs_secret, &ks.client_hs_key, &ks.client_hs_mac),
        (&ks.server_hs_secret, &ks.server_hs_key, &ks.server_hs_mac),
        (&ks.client_ap_secret, &ks.client_ap_key, &ks.client_ap_mac),
        (&ks.server_ap_secret, &ks.server_ap_key, &ks.server_ap_mac),
        (
            &ks.client_ap_secret_gen1,
            &ks.client_ap_key_gen1,
            &ks.client_ap_mac_gen1,
        ),
    ] {
        let s: [u8; 32] = secret.arr();
        assert_eq!(*keys::expand(&s, keys::LABEL_KEY, &[]), key.arr::<32>());
        assert_eq!(*keys::expand(&s, keys::LABEL_MAC, &[]), mac.arr::<32>());
    }
    // KeyUpdate derivation: RecordKeys::next_generation seals like the gen1 secret at seq 0.
    let gen0 = keys_at(ks.client_ap_secret.arr(), 5);
    let mut via_next = Vec::new();
    gen0.next_generation()
        .seal(CONTENT_APP, b"x", [7; 16], &mut via_next)
        .expect("seal");
    assert_eq!(
        via_next,
        seal_at(
            ks.client_ap_secret_gen1.arr(),
            0,
            CONTENT_APP,
            b"x",
            [7; 16]
        )
    );

    let mut checked = 0;
    for m in &v.messages {
        match m.framing.as_str() {
            "plaintext" => {
                let body = m.body.as_ref().expect("body");
                assert_eq!(m.wire, Hex(frame(&body.0)), "{}", m.name);
                assert_eq!(m.decoded, decode(&m.name, None, &body.0), "{}", m.name);
            }
            "record" => {
                let secret = ks.secret(m.keys.as_deref().expect("keys"));
                let seq = m.seq.expect("seq");
                let ct = m.content_type.expect("content_type");
                let payload = &m.payload.as_ref().expect("payload").0;
                let iv: [u8; 16] = m.iv.as_ref().expect("iv").arr();
                assert_eq!(
                    Hex(seal_at(secret, seq, ct, payload, iv)),
                    m.wire,
                    "seal {}",
                    m.name
                );
                let (got_ct, got_payload) =
                    open_at(secret, seq, &m.wire.0).unwrap_or_else(|e| panic!("{}: {e}", m.name));
                assert_eq!((got_ct, &got_payload), (ct, payload), "open {}", m.name);
                assert_eq!(m.decoded, decode(&m.name, Some(ct), payload), "{}", m.name);
                // The same record at any other sequence number is rejected.
                assert_eq!(
                    open_at(secret, seq + 1, &m.wire.0),
                    Err(Error::BadRecord),
                    "{}",
                    m.name
                );
            }
            other => panic!("unknown framing {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, SCRIPT.len());
    // The script's shape: names, directions and keys are what the spec describes.
    for (m, (name, dir, k)) in v.messages.iter().zip(SCRIPT) {
        assert_eq!(
            (m.name.as_str(), m.direction.as_str(), m.keys.as_deref()),
            (*name, *dir, *k)
        );
    }
    // The stream in each direction is the concatenation of its messages.
    for (dir, stream) in [
        (C2S, &v.streams.client_to_server),
        (S2C, &v.streams.server_to_client),
    ] {
        let cat: Vec<u8> = v
            .messages
            .iter()
            .filter(|m| m.direction == dir)
            .flat_map(|m| m.wire.0.clone())
            .collect();
        assert_eq!(&Hex(cat), stream, "{dir}");
    }
    // Refuse frames.
    for r in &v.refuse_frames {
        assert_eq!(
            Hex(vserv_core::session::refusal(CloseCode::from_u16(r.code))),
            r.wire
        );
        assert_eq!(
            wire::decode_refuse(&r.wire.0[5..]),
            Ok(CloseCode::from_u16(r.code))
        );
    }
}

#[test]
fn handshake_connections_reproduce_the_wire() {
    let v: HandshakeVectors = read_json("handshake.json");
    let driven = drive(&v.inputs);
    assert_eq!(driven.frames.len(), v.messages.len(), "number of frames");
    for ((dir, wire), m) in driven.frames.iter().zip(&v.messages) {
        assert_eq!(*dir, m.direction, "{}", m.name);
        assert_eq!(Hex(wire.clone()), m.wire, "wire of {}", m.name);
    }
    let stream = |d: &str| {
        Hex(driven
            .frames
            .iter()
            .filter(|(x, _)| *x == d)
            .flat_map(|(_, f)| f.clone())
            .collect())
    };
    assert_eq!(stream(C2S), v.streams.client_to_server);
    assert_eq!(stream(S2C), v.streams.server_to_client);

    // What each side reported.
    let key = ServerKey::from_bytes(&v.public.server_static_public.0).expect("key");
    let session_id: [u8; 32] = v.key_schedule.session_id.arr();
    let pong = |id, p: &str| {
        Event::Response(Response {
            id,
            result: Ok(vec![p.as_bytes().to_vec()]),
        })
    };
    assert_eq!(
        driven.client_events,
        vec![
            Event::ServerKey(key),
            Event::Connected {
                session_id,
                server_key: key
            },
            pong(1, &v.inputs.first_ping_payload),
            pong(2, &v.inputs.second_ping_payload),
        ]
    );
    let ping = |id, p: &str| {
        Event::Request(Request {
            id,
            name: "ping".into(),
            args: vec![p.as_bytes().to_vec()],
        })
    };
    assert_eq!(
        driven.server_events,
        vec![
            Event::Connected {
                session_id,
                server_key: key
            },
            ping(1, &v.inputs.first_ping_payload),
            ping(2, &v.inputs.second_ping_payload),
            Event::Closed(Close {
                code: CloseCode::from_u16(v.inputs.close_code),
                reason: v.inputs.close_reason.clone(),
            }),
        ]
    );
    assert_eq!(key.fingerprint().to_string(), v.public.server_fingerprint);
}

/// Feeding the recorded server stream to a replayed client (and vice versa) one byte at a
/// time gives the same result: framing does not depend on how the stream is cut.
#[test]
fn handshake_streams_byte_by_byte() {
    let v: HandshakeVectors = read_json("handshake.json");
    let (mut p, _, _) = vector_pair(&v.inputs);
    p.auto.answer = Some(support::pair::echo);
    p.c2s_split = Split::Chunks(1);
    p.deliver_to_server(&v.streams.client_to_server.0)
        .expect("server input");
    let requests = p
        .server_events
        .iter()
        .filter(|e| matches!(e, Event::Request(_)))
        .count();
    assert_eq!(requests, 2);
    assert!(p.server.is_closed());
    assert_eq!(Hex(p.take_output(Role::Server)), v.streams.server_to_client);
}

#[test]
fn record_vectors() {
    let v: RecordVectors = read_json("records.json");
    let s: [u8; 32] = v.traffic_secret.arr();
    assert_eq!(*keys::expand(&s, keys::LABEL_KEY, &[]), v.key.arr::<32>());
    assert_eq!(*keys::expand(&s, keys::LABEL_MAC, &[]), v.mac.arr::<32>());
    assert!(v.cases.len() >= 8);
    let mut saw_max = false;
    for c in &v.cases {
        let payload = match (&c.payload, &c.payload_pattern) {
            (Some(p), None) => p.0.clone(),
            (None, Some(p)) => pattern(p),
            _ => panic!("{}: exactly one of payload and payload_pattern", c.name),
        };
        saw_max |= payload.len() == MAX_PAYLOAD;
        let wire = seal_at(s, c.seq, c.content_type, &payload, c.iv.arr());
        assert_eq!(wire.len(), c.wire_len, "{}", c.name);
        assert_eq!(
            wire.len(),
            4 + vserv_core::secure::record::record_body_len(payload.len())
        );
        match (&c.wire, &c.wire_sha256, &c.wire_prefix) {
            (Some(w), None, None) => assert_eq!(&Hex(wire.clone()), w, "{}", c.name),
            (None, Some(digest), Some(prefix)) => {
                assert_eq!(h(sha256(&[&wire])), *digest, "{}", c.name);
                assert_eq!(h(&wire[..prefix.0.len()]), *prefix, "{}", c.name);
            }
            _ => panic!("{}: wire or wire_sha256 + wire_prefix", c.name),
        }
        let (ct, got) = open_at(s, c.seq, &wire).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!((ct, got), (c.content_type, payload), "open {}", c.name);
    }
    assert!(saw_max, "a MAX_PAYLOAD case is required");
    // One byte more than MAX_PAYLOAD is refused by the sender.
    let mut k = keys_at(s, 0);
    assert!(matches!(
        k.seal(
            CONTENT_APP,
            &vec![0; MAX_PAYLOAD + 1],
            [0; 16],
            &mut Vec::new()
        ),
        Err(Error::PayloadTooLarge { .. })
    ));
}

#[test]
fn invalid_record_vectors() {
    let v: RecordVectors = read_json("records.json");
    let s: [u8; 32] = v.traffic_secret.arr();
    assert!(v.invalid.len() >= 8);
    for bad in &v.invalid {
        assert_eq!(
            open_at(s, bad.seq, &bad.wire.0),
            Err(Error::BadRecord),
            "{} must be rejected",
            bad.name
        );
    }
    // The constructed padding cases really carry valid tags: the same helper with valid
    // padding produces a record that opens.
    let mut good = [0x0fu8; 16];
    good[0] = CONTENT_APP;
    let wire = raw_record(s, 0, [0xb0; 16], &[good]);
    assert_eq!(open_at(s, 0, &wire), Ok((CONTENT_APP, vec![])));
}

/// The committed files are exactly what the generator produces today (so every field,
/// including the invalid records and descriptions, is pinned, and a stale file is noticed).
#[test]
fn vectors_match_the_generator() {
    let hs: HandshakeVectors = read_json("handshake.json");
    assert_eq!(
        hs,
        build_handshake(),
        "regenerate with VSERV_WRITE_VECTORS=1"
    );
    let rec: RecordVectors = read_json("records.json");
    assert_eq!(
        rec,
        build_records(),
        "regenerate with VSERV_WRITE_VECTORS=1"
    );
}

/// The client and server of the vectors, run up to the client's decision on the server key;
/// the ServerAuth record (under `server_hs`, seq 0) has been opened by the client.
#[cfg(not(feature = "fuzzing"))] // only its callers' MAC checks need it
fn handshake_until_trust(v: &HandshakeVectors) -> (Connection, Connection) {
    let (mut p, _, _) = vector_pair(&v.inputs);
    p.transmit(Role::Client).expect("ClientHello");
    p.transmit(Role::Server)
        .expect("ServerHello and ServerAuth");
    assert!(matches!(p.client_events.as_slice(), [Event::ServerKey(_)]));
    p.into_connections()
}

/// protocol.md §10: a ClientFinished whose MAC is wrong (in a record that authenticates) is
/// answered with one Close(1, "authentication failed") under the server's handshake keys
/// (`server_hs`, seq 1, after ServerAuth) and nothing more; a client that has already switched
/// to the application keys still reports that Close.
#[test]
#[cfg(not(feature = "fuzzing"))] // the Finished check needs the real MAC
fn a_wrong_client_finished_gets_an_authenticated_close() {
    let v: HandshakeVectors = read_json("handshake.json");
    let ks = &v.key_schedule;
    let now = Instant::now();
    let (mut client, mut server) = handshake_until_trust(&v);
    client.accept_server_key(now).expect("accept");
    assert!(matches!(
        events(&mut client).as_slice(),
        [Event::Connected { .. }]
    ));
    let honest = take(&mut client);
    let mut wrong = ks.client_finished.arr::<32>();
    wrong[0] ^= 0x01;
    let forged = seal_at(
        ks.secret("client_hs"),
        0,
        CONTENT_CLIENT_FINISHED,
        &wrong,
        [0xc1; 16],
    );
    assert_eq!(forged.len(), honest.len());
    assert_eq!(server.handle_input(now, &forged), Err(Error::BadFinished));
    assert!(server.is_closed());
    let close = take(&mut server);
    assert_eq!(split_frames(&close).len(), 1, "exactly one record");
    let (content_type, payload) = open_at(ks.secret("server_hs"), 1, &close).expect("opens");
    assert_eq!(content_type, CONTENT_CLOSE);
    let expected = Close {
        code: CloseCode::ProtocolError,
        reason: "authentication failed".to_owned(),
    };
    assert_eq!(Close::decode(&payload), Ok(expected.clone()));
    assert!(take(&mut server).is_empty(), "nothing after the Close");

    client
        .handle_input(now, &close)
        .expect("client reads the Close");
    assert_eq!(events(&mut client), vec![Event::Closed(expected)]);
    assert!(client.is_closed());
    assert!(take(&mut client).is_empty(), "no Close answers a Close");
}

/// The same rule on the client's side: a ServerAuth whose Finished MAC is wrong is answered
/// with Close(1, "authentication failed") under `client_hs` (seq 0).
#[test]
#[cfg(not(feature = "fuzzing"))] // the Finished check needs the real MAC
fn a_wrong_server_finished_gets_an_authenticated_close() {
    let v: HandshakeVectors = read_json("handshake.json");
    let ks = &v.key_schedule;
    let now = Instant::now();
    let (client_rng, _) = Replay::new(stream_of(&v.inputs.client_rng));
    let mut client = Connection::client(Config::default(), Box::new(client_rng), now);
    take(&mut client);
    let server_hello = v
        .messages
        .iter()
        .find(|m| m.name == "ServerHello")
        .expect("ServerHello in the vectors");
    let mut auth = Vec::new();
    ServerAuth {
        static_key: v.public.server_static_public.arr(),
        signature: ks.signature.arr(),
        finished: {
            let mut f = ks.server_finished.arr::<32>();
            f[31] ^= 0x80;
            f
        },
    }
    .encode(&mut auth);
    let mut input = server_hello.wire.0.clone();
    input.extend(seal_at(
        ks.secret("server_hs"),
        0,
        CONTENT_SERVER_AUTH,
        &auth[1..],
        [0xd1; 16],
    ));
    assert_eq!(client.handle_input(now, &input), Err(Error::BadFinished));
    assert!(events(&mut client).is_empty(), "no server key reported");
    let close = take(&mut client);
    let (content_type, payload) = open_at(ks.secret("client_hs"), 0, &close).expect("opens");
    assert_eq!(content_type, CONTENT_CLOSE);
    assert_eq!(
        Close::decode(&payload),
        Ok(Close {
            code: CloseCode::ProtocolError,
            reason: "authentication failed".to_owned(),
        })
    );
}
