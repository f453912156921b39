//! Bodies of the cargo-fuzz targets in `fuzz/` (compiled only with the `fuzzing` feature).
//!
//! Each target in `fuzz/fuzz_targets/` is a one-line call into this module, so the harness
//! logic is type-checked and linted with the core. With the `fuzzing` feature the record layer
//! is a null cipher (PKCS#7 padding, zero tag, tags never checked), server signatures and
//! Finished MACs are not verified: a fuzzer can forge any record and reach the code behind
//! the handshake. **Never enable this feature in a real build.**
//!
//! Every function panics (which the fuzzer reports as a crash) only when the core breaks one
//! of its own promises: a decoder accepts bytes it would not have produced, a round trip is
//! not the identity, a connection stays open after returning an error, emits a malformed
//! frame, or does not fire its timer at the instant `poll_timeout` announced.
//!
//! # Connection targets: the input layout
//!
//! [`server_connection`] and [`client_connection`] read a 3-byte header, then the body:
//!
//! | byte | meaning |
//! |---|---|
//! | 0 `mode` | `mode % 4`: 0 = body is the raw peer byte stream; 1 = a valid first handshake flight (a real ClientHello for the server, a real ServerHello for the client) then the raw body; 2 = the complete peer handshake (ClientHello + forged ClientFinished, or ServerHello + forged ServerAuth), then the body read as *record specs*; 3 = the complete peer handshake, then the raw body |
//! | 1 `chunk` | the stream is fed in chunks of `1..=chunk` bytes (sizes drawn from a generator seeded by this byte); 0 = in one piece |
//! | 2 `flags` | bit 0: at the end, call `handle_timeout` at the instant `poll_timeout` returned; bit 1: then call `handle_eof`; bit 2 (client): reject the server key instead of accepting it; bit 3: feed the handshake prefix and the body separately (so the client is connected, and has sent its request, before the body arrives; otherwise the client holds the body while it waits for the key decision); bits 4-7: milliseconds between chunks |
//!
//! A *record spec* (mode 2) is `type:u8 | len:u16be | payload[len]` (a short tail is taken as
//! the payload) and becomes one null-cipher record of that content type: this lets the fuzzer
//! write requests and responses without learning the record framing. `0x17` is application
//! data, `0x11` close, `0x10` key update (see [`crate::wire`]).
//!
//! The server answers every request (echoing its arguments, or the typed error of
//! [`Command::parse`]); the client sends a `ping` when connected and another after every
//! response (at most [`MAX_CLIENT_REQUESTS`]), with ids 1, 2, 3...
//!
//! Use [`corpus_seeds`] to write seed inputs that take each target down its main paths.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand_core::{Rng as _, TryCryptoRng, TryRng};
use zeroize::Zeroizing;

use crate::commands::catalog::{self, SampleValues};
use crate::commands::{Command, Reply, help_text};
use crate::secure::keys;
use crate::secure::{Fingerprint, RecordKeys, ServerIdentity};
use crate::session::Role;
use crate::wire::frame::put_frame;
use crate::wire::{
    self, CONTENT_APP, CONTENT_CLIENT_FINISHED, CONTENT_CLOSE, CONTENT_KEY_UPDATE,
    CONTENT_SERVER_AUTH, ClientFinished, ClientHello, Close, Deframer, PROTOCOL_VERSION, Request,
    Response, ServerAuth, ServerHello, TYPE_CLIENT_HELLO, TYPE_REFUSE, TYPE_SERVER_HELLO,
};
use crate::{Config, Connection, Error, Event};

/// A tiny deterministic generator (splitmix64) for reproducible fuzz runs. Not a secure RNG:
/// it exists only under the `fuzzing` feature.
#[derive(Debug, Clone)]
pub struct FuzzRng(u64);

impl FuzzRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        FuzzRng(seed)
    }

    /// The next 64 random bits.
    pub fn step(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl TryRng for FuzzRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.step() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.step())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.step().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

impl TryCryptoRng for FuzzRng {}

/// Most requests the client target sends in one run.
pub const MAX_CLIENT_REQUESTS: u32 = 8;

const SEED_IDENTITY: u64 = 0x5e7e_1d00;
const SEED_CLIENT: u64 = 0xc11e_0001;
const SEED_SERVER: u64 = 0x5e7e_0002;
const SEED_PEER_HELLO: u64 = 0x5e7e_0003;

fn rng(seed: u64) -> Box<FuzzRng> {
    Box::new(FuzzRng::new(seed))
}

/// The fixed server identity of the targets.
pub fn identity() -> Arc<ServerIdentity> {
    static ID: OnceLock<Arc<ServerIdentity>> = OnceLock::new();
    ID.get_or_init(|| Arc::new(ServerIdentity::generate(&mut FuzzRng::new(SEED_IDENTITY))))
        .clone()
}

/// Appends one null-cipher record (valid only under the `fuzzing` feature) to `out`.
/// `payload` is cut to [`wire::MAX_PAYLOAD`] bytes.
pub fn forge_record(content_type: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mut keys = RecordKeys::from_secret(Zeroizing::new([0u8; 32]));
    let payload = &payload[..payload.len().min(wire::MAX_PAYLOAD)];
    // Sealing at most MAX_PAYLOAD bytes with sequence number 0 cannot fail.
    let _ = keys.seal(content_type, payload, [0u8; wire::IV_LEN], out);
}

/// Turns record specs (`type:u8 | len:u16be | payload[len]`) into null-cipher records.
pub fn forge_records(mut specs: &[u8], out: &mut Vec<u8>) {
    while let Some((&ty, rest)) = specs.split_first() {
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]) as usize, rest),
            _ => (rest.len(), &[][..]),
        };
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        forge_record(ty, payload, out);
        specs = rest;
    }
}

/// One record spec, as [`forge_records`] reads it.
pub fn record_spec(content_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![content_type];
    out.extend_from_slice(&(payload.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A hello's random and ephemeral public key, drawn as a [`Connection`] draws them.
fn hello_parts(seed: u64) -> ([u8; 32], [u8; wire::POINT_LEN]) {
    let mut rng = FuzzRng::new(seed);
    let mut random = [0u8; 32];
    rng.fill_bytes(&mut random);
    (random, keys::public_point(&keys::random_scalar(&mut rng)))
}

/// `len | body` for the body that `encode` writes.
fn framed(encode: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = Vec::new();
    encode(&mut body);
    let mut out = Vec::new();
    put_frame(&mut out, &body);
    out
}

/// The framed ClientHello of a client [`Connection`] with a fixed seed.
pub fn client_hello_frame() -> Vec<u8> {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO
        .get_or_init(|| {
            let (random, ephemeral) = hello_parts(SEED_CLIENT);
            framed(|b| {
                ClientHello {
                    version: PROTOCOL_VERSION,
                    random,
                    ephemeral,
                }
                .encode(b)
            })
        })
        .clone()
}

/// A framed ServerHello with a valid ephemeral point.
pub fn server_hello_frame() -> Vec<u8> {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO
        .get_or_init(|| {
            let (random, ephemeral) = hello_parts(SEED_PEER_HELLO);
            framed(|b| {
                ServerHello {
                    version: PROTOCOL_VERSION,
                    random,
                    ephemeral,
                }
                .encode(b)
            })
        })
        .clone()
}

/// The whole client handshake flight as the server target sees it: the ClientHello and a
/// forged ClientFinished record (accepted because Finished MACs are not checked).
pub fn client_handshake() -> Vec<u8> {
    let mut out = client_hello_frame();
    forge_record(CONTENT_CLIENT_FINISHED, &[0u8; 32], &mut out);
    out
}

/// The whole server handshake flight as the client target sees it: a ServerHello and a
/// forged ServerAuth record carrying the real identity key (signatures are not checked).
pub fn server_handshake() -> Vec<u8> {
    let mut out = server_hello_frame();
    let auth = ServerAuth {
        static_key: *identity().public_key().as_bytes(),
        signature: [0u8; wire::SIGNATURE_LEN],
        finished: [0u8; 32],
    };
    let mut payload = Vec::new();
    auth.encode(&mut payload);
    forge_record(CONTENT_SERVER_AUTH, &payload[1..], &mut out);
    out
}

// ----- message codecs -----

/// Deframer: any stream, fed whole or in chunks (sizes from the first byte), yields the same
/// frames and fails at the same point; a frame is never empty nor longer than the limit.
pub fn deframer(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let whole = deframe(stream, 0);
    let split = deframe(stream, chunk);
    assert_eq!(whole, split, "chunking changed the deframed frames");
    let (frames, failed, buffered) = whole;
    let consumed: usize = frames.iter().map(|f| 4 + f.len()).sum();
    if !failed {
        assert_eq!(consumed + buffered, stream.len(), "deframer lost bytes");
    }
    for f in &frames {
        assert!(!f.is_empty() && f.len() <= wire::MAX_FRAME_BODY);
    }
    // Re-framing the frames gives back the consumed prefix.
    let mut again = Vec::new();
    for f in &frames {
        put_frame(&mut again, f);
    }
    assert_eq!(again, stream[..consumed]);
}

fn deframe(stream: &[u8], chunk: u8) -> (Vec<Vec<u8>>, bool, usize) {
    let mut d = Deframer::new();
    let mut frames = Vec::new();
    for piece in Chunks::new(stream, chunk) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f.to_vec()),
                Ok(None) => break,
                Err(Error::BadFrameLength { .. }) => return (frames, true, 0),
                Err(e) => panic!("deframer returned {e:?}"),
            }
        }
    }
    let buffered = d.buffered();
    (frames, false, buffered)
}

/// Splits a byte stream into chunks of `1..=max` bytes (`max == 0`: one chunk).
struct Chunks<'a> {
    rest: &'a [u8],
    max: usize,
    rng: FuzzRng,
}

impl<'a> Chunks<'a> {
    fn new(stream: &'a [u8], max: u8) -> Self {
        Chunks {
            rest: stream,
            max: max as usize,
            rng: FuzzRng::new(u64::from(max)),
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = if self.max == 0 {
            self.rest.len()
        } else {
            1 + (self.rng.step() % self.max as u64) as usize
        };
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        Some(head)
    }
}

macro_rules! exact_round_trip {
    ($ty:ty, $data:expr) => {{
        let data: &[u8] = $data;
        if let Ok(msg) = <$ty>::decode(data) {
            let mut again = Vec::new();
            msg.encode(&mut again);
            assert_eq!(again, data, "{} re-encodes differently", stringify!($ty));
            assert_eq!(<$ty>::decode(&again).as_ref(), Ok(&msg));
            assert_eq!(again.len(), <$ty>::LEN);
        }
    }};
}

/// ClientHello decoder: whatever decodes re-encodes to the same bytes.
pub fn client_hello(data: &[u8]) {
    exact_round_trip!(ClientHello, data);
}

/// ServerHello decoder (and the Refuse body decoder).
pub fn server_hello(data: &[u8]) {
    exact_round_trip!(ServerHello, data);
    if let Ok(code) = wire::decode_refuse(data) {
        assert_eq!(data, code.to_u16().to_be_bytes());
    }
}

/// ServerAuth decoder.
pub fn server_auth(data: &[u8]) {
    exact_round_trip!(ServerAuth, data);
}

/// ClientFinished decoder.
pub fn client_finished(data: &[u8]) {
    exact_round_trip!(ClientFinished, data);
}

/// Close decoder.
pub fn close(data: &[u8]) {
    if let Ok(msg) = Close::decode(data) {
        let mut again = Vec::new();
        msg.encode(&mut again);
        assert_eq!(again, data, "Close re-encodes differently");
        assert_eq!(wire::CloseCode::from_u16(msg.code.to_u16()), msg.code);
    }
}

/// Ledger entry and signed-head decoders: whatever decodes re-encodes to the same bytes,
/// the hash is stable and agrees with [`crate::ledger::hash_encoded`], the streaming verifier
/// agrees with the decoder and with `check_append` on a first entry, and field-form bodies
/// round-trip.
pub fn ledger_entry(data: &[u8]) {
    use crate::ledger::{
        ChainVerifier, Entry, MAX_BODY, SignedHead, ZERO_HASH, body_to_fields, check_append,
        fields_to_body, hash_encoded,
    };
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(
            entry.to_bytes(),
            data,
            "ledger entry re-encodes differently"
        );
        assert_eq!(entry.encoded_len(), data.len());
        let hash = entry.hash();
        assert_eq!(hash, entry.hash(), "entry hash is not stable");
        assert_eq!(
            hash,
            hash_encoded(data),
            "entry hash differs from hash of its encoding"
        );
        let first = entry.seq() == 1 && *entry.prev() == ZERO_HASH;
        assert_eq!(check_append(None, &entry).is_ok(), first);
        let mut v = ChainVerifier::new(entry.origin());
        assert_eq!(v.push_encoded(data).ok(), first.then_some(hash));
        let mut v = ChainVerifier::new(entry.origin());
        assert_eq!(v.push_entry(&entry).ok(), first.then_some(hash));
    }
    if let Ok(head) = SignedHead::decode(data) {
        assert_eq!(
            head.to_bytes().as_slice(),
            data,
            "signed head re-encodes differently"
        );
        let _ = head.verify();
    }
    if data.len() <= MAX_BODY
        && let Ok(fields) = body_to_fields(data)
    {
        assert_eq!(fields_to_body(&fields).ok().as_deref(), Some(data));
    }
}

/// Command layer: Request and Response decoders (exact round trips and `encoded_len`),
/// `Command::parse` of a decoded request (the command rebuilt from its name and arguments
/// parses to itself), `Reply` field round trips, `help_text`, and `Fingerprint` parsing.
pub fn command(data: &[u8]) {
    if let Ok(req) = Request::decode(data) {
        let mut again = Vec::new();
        req.encode(&mut again);
        assert_eq!(again, data, "Request re-encodes differently");
        assert_eq!(req.encoded_len(), data.len());
        assert!(Request::is_valid_name(&req.name));
        match Command::parse(&req) {
            Ok(cmd) => {
                let rebuilt = Request {
                    id: req.id,
                    name: cmd.name().to_owned(),
                    args: cmd.args(),
                };
                assert_eq!(Command::parse(&rebuilt).as_ref(), Ok(&cmd));
                if let Command::Help { topic } = &cmd {
                    let _ = help_text(topic.as_deref());
                }
                for reply in catalog::replies(&cmd, sample_values()) {
                    let fields = reply.to_fields();
                    assert_eq!(Reply::from_fields(&cmd, &fields).as_ref(), Ok(&reply));
                }
            }
            Err(reply) => assert_ne!(reply.code.to_u16(), 0),
        }
    }
    if let Ok(resp) = Response::decode(data) {
        let mut again = Vec::new();
        resp.encode(&mut again);
        assert_eq!(again, data, "Response re-encodes differently");
        assert_eq!(resp.encoded_len(), data.len());
        if let Ok(fields) = &resp.result {
            // Interpreting the fields as the reply to each command must not panic, and
            // whatever is accepted survives a round trip through `to_fields`.
            for cmd in sample_commands() {
                if let Ok(reply) = Reply::from_fields(cmd, fields) {
                    let again = reply.to_fields();
                    assert_eq!(Reply::from_fields(cmd, &again).as_ref(), Ok(&reply));
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(fp) = text.parse::<Fingerprint>() {
            assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
        }
        let _ = help_text(Some(text));
    }
}

/// The catalogue's sample commands, made once.
fn sample_commands() -> &'static [Command] {
    static COMMANDS: OnceLock<Vec<Command>> = OnceLock::new();
    COMMANDS.get_or_init(catalog::commands)
}

/// The catalogue's sample values, made once with the fuzz identity.
fn sample_values() -> &'static SampleValues {
    static VALUES: OnceLock<SampleValues> = OnceLock::new();
    VALUES.get_or_init(|| SampleValues::new(&identity()))
}

// ----- connections -----

struct Header {
    mode: u8,
    chunk: u8,
    flags: u8,
}

fn split_header(data: &[u8]) -> Option<(Header, &[u8])> {
    let [mode, chunk, flags, body @ ..] = data else {
        return None;
    };
    Some((
        Header {
            mode: mode % 4,
            chunk: *chunk,
            flags: *flags,
        },
        body,
    ))
}

/// Drives one connection through a peer byte stream and checks its promises.
struct Driver {
    conn: Connection,
    now: Instant,
    out: Vec<u8>,
    reject_key: bool,
    requests_sent: u32,
}

impl Driver {
    /// After any call that failed, the connection must be closed and stay closed.
    fn check_result(&mut self, r: Result<(), Error>) {
        if let Err(e) = r {
            assert!(self.conn.is_closed(), "open after error {e:?}");
            assert_eq!(self.conn.poll_timeout(), None);
            assert_eq!(self.conn.handle_input(self.now, b"x"), Err(Error::Closed));
        }
    }

    fn drain(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match (self.conn.role(), event) {
                (_, Event::Closed(_)) => assert!(self.conn.is_closed()),
                (_, Event::Connected { .. }) => self.client_send(),
                (Role::Server, Event::Request(req)) => {
                    let result = match Command::parse(&req) {
                        Ok(_) => Ok(req.args.clone()),
                        Err(reply) => Err(reply),
                    };
                    let r = self.conn.respond(&Response { id: req.id, result });
                    // A request can be answered unless the connection has closed meanwhile.
                    if let Err(e) = r {
                        assert!(self.conn.is_closed(), "respond failed: {e:?}");
                    }
                }
                (Role::Client, Event::ServerKey(_)) => {
                    if self.reject_key {
                        let was_closed = self.conn.is_closed();
                        let r = self.conn.reject_server_key();
                        assert_eq!(r.is_err(), was_closed);
                        assert!(self.conn.is_closed());
                    } else {
                        let r = self.conn.accept_server_key(self.now);
                        self.check_result(r);
                    }
                }
                (Role::Client, Event::Response(_)) => self.client_send(),
                (role, event) => panic!("{role:?} emitted {event:?}"),
            }
        }
        self.conn.poll_transmit(&mut self.out);
    }

    fn client_send(&mut self) {
        if self.conn.role() != Role::Client
            || !self.conn.is_connected()
            || self.requests_sent >= MAX_CLIENT_REQUESTS
        {
            return;
        }
        let r = self
            .conn
            .send_request("ping", vec![b"fuzz".to_vec()])
            .map(|_| ());
        assert_eq!(r, Ok(()));
        self.requests_sent += 1;
    }

    fn run(&mut self, header: &Header, (prefix, body): (Vec<u8>, Vec<u8>)) {
        self.drain();
        let step = Duration::from_millis(u64::from(header.flags >> 4));
        let segments = if header.flags & 8 != 0 {
            vec![prefix, body]
        } else {
            vec![[prefix, body].concat()]
        };
        let pieces = segments
            .iter()
            .flat_map(|segment| Chunks::new(segment, header.chunk));
        for piece in pieces {
            let was_closed = self.conn.is_closed();
            let r = self.conn.handle_input(self.now, piece);
            if was_closed {
                assert_eq!(r, Err(Error::Closed));
            }
            self.check_result(r);
            self.drain();
            self.now += step;
        }
        if header.flags & 1 != 0
            && let Some(deadline) = self.conn.poll_timeout()
        {
            let r = self.conn.handle_timeout(deadline);
            assert!(r.is_err(), "timer did not fire at the polled instant");
            self.check_result(r);
            self.drain();
        }
        if header.flags & 2 != 0 {
            let was_closed = self.conn.is_closed();
            let r = self.conn.handle_eof(self.now);
            assert_eq!(r.is_err(), !was_closed);
            self.check_result(r);
            self.drain();
        }
        check_output(&self.out, self.conn.role());
    }
}

/// Checks everything a connection transmitted: a plaintext first frame, then records that
/// open under the null cipher, carry a legal content type and a decodable message, and
/// nothing after a close record.
fn check_output(stream: &[u8], role: Role) {
    let mut d = Deframer::new();
    d.push(stream);
    let mut first = true;
    let mut closed = false;
    let mut keys = RecordKeys::from_secret(Zeroizing::new([0u8; 32]));
    while let Some(frame) = d
        .next_frame()
        .expect("connection emitted a bad frame length")
    {
        assert!(!closed, "{role:?} transmitted after its close record");
        if first {
            first = false;
            match (role, frame[0]) {
                (Role::Client, TYPE_CLIENT_HELLO) => {
                    ClientHello::decode(frame).expect("own ClientHello");
                }
                (Role::Server, TYPE_SERVER_HELLO) => {
                    ServerHello::decode(frame).expect("own ServerHello");
                }
                (Role::Server, TYPE_REFUSE) => {
                    wire::decode_refuse(&frame[1..]).expect("own Refuse");
                    closed = true;
                }
                (role, kind) => panic!("{role:?} opened with frame type {kind:#x}"),
            }
            continue;
        }
        let (kind, payload) = keys.open(frame).expect("own record does not open");
        match (role, kind) {
            (Role::Server, CONTENT_SERVER_AUTH) => {
                ServerAuth::decode(&[&[kind][..], payload].concat()).expect("own ServerAuth");
            }
            (Role::Client, CONTENT_CLIENT_FINISHED) => {
                ClientFinished::decode(&[&[kind][..], payload].concat())
                    .expect("own ClientFinished");
            }
            (_, CONTENT_KEY_UPDATE) => assert!(payload.is_empty()),
            (_, CONTENT_CLOSE) => {
                Close::decode(payload).expect("own Close");
                closed = true;
            }
            (Role::Server, CONTENT_APP) => {
                Response::decode(payload).expect("own Response");
            }
            (Role::Client, CONTENT_APP) => {
                Request::decode(payload).expect("own Request");
            }
            (role, kind) => panic!("{role:?} sent a record of type {kind:#x}"),
        }
    }
}

/// The peer's bytes as `(prefix, body)`: the handshake prefix chosen by the mode, then the
/// body (turned into records in mode 2).
fn peer_stream(
    header: &Header,
    body: &[u8],
    first_flight: Vec<u8>,
    handshake: Vec<u8>,
) -> (Vec<u8>, Vec<u8>) {
    let prefix = match header.mode {
        1 => first_flight,
        2 | 3 => handshake,
        _ => Vec::new(),
    };
    let body = if header.mode == 2 {
        let mut records = Vec::new();
        forge_records(body, &mut records);
        records
    } else {
        body.to_vec()
    };
    (prefix, body)
}

fn config() -> Config {
    Config {
        rekey_after: 4,
        max_outstanding: 8,
        ..Config::default()
    }
}

/// A server [`Connection`] fed arbitrary client bytes (see the module docs for the layout).
pub fn server_connection(data: &[u8], now: Instant) {
    let Some((header, body)) = split_header(data) else {
        return;
    };
    let stream = peer_stream(&header, body, client_hello_frame(), client_handshake());
    let conn = Connection::server(config(), identity(), rng(SEED_SERVER), now);
    let mut driver = Driver {
        conn,
        now,
        out: Vec::new(),
        reject_key: false,
        requests_sent: 0,
    };
    driver.run(&header, stream);
}

/// A client [`Connection`] fed arbitrary server bytes (see the module docs for the layout).
pub fn client_connection(data: &[u8], now: Instant) {
    let Some((header, body)) = split_header(data) else {
        return;
    };
    let stream = peer_stream(&header, body, server_hello_frame(), server_handshake());
    let conn = Connection::client(config(), rng(SEED_CLIENT), now);
    let mut driver = Driver {
        conn,
        now,
        out: Vec::new(),
        reject_key: header.flags & 4 != 0,
        requests_sent: 0,
    };
    driver.run(&header, stream);
}

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
    seeds
}
