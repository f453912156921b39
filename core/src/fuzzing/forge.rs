//! Valid peer bytes for the targets: null-cipher records (whole, or from compact record
//! specs), the hello frames a real peer sends, and whole handshake flights with the
//! messages that the fuzzing build does not check forged.

use std::sync::OnceLock;

use rand_core::Rng as _;
use zeroize::Zeroizing;

use super::{FuzzRng, SEED_CLIENT, SEED_PEER_HELLO, identity};
use crate::secure::{RecordKeys, keys};
use crate::wire::frame::put_frame;
use crate::wire::{
    self, CONTENT_CLIENT_FINISHED, CONTENT_SERVER_AUTH, ClientHello, PROTOCOL_VERSION, ServerAuth,
    ServerHello,
};

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

/// A hello's random and ephemeral public key, drawn as a [`Connection`](crate::Connection) draws them.
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

/// The framed ClientHello of a client [`Connection`](crate::Connection) with a fixed seed.
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
