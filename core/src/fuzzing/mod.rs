//! Bodies of the cargo-fuzz targets in `fuzz/` (compiled only with the `fuzzing` feature).
//!
//! Each target in `fuzz/fuzz_targets/` is a one-line call into this module, so the harness
//! logic is type-checked and linted with the core. With the `fuzzing` feature the channel's
//! cryptography is the null provider of `secure/provider.rs` (its one seam): the record
//! layer is a null cipher (PKCS#7 padding, zero tag, tags never checked), server signatures
//! and Finished MACs are not verified, so a fuzzer can forge any record and reach the code
//! behind the handshake. **Never enable this feature in a real build.**
//!
//! The module is split by job: `forge` makes valid peer bytes (null-cipher records, hello
//! frames, whole handshake flights), `messages` holds the targets of single decoders (frames,
//! handshake messages, ledger entries, the command layer), `connection` the targets that
//! drive a whole [`Connection`](crate::Connection), `corpus` the seed inputs. The command
//! layer's catalogue of sample commands and replies is not here: each domain of
//! [`crate::commands`] provides its own beside its codec.
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
//! data, `0x18` stream, `0x19` notice (client only), `0x11` close, `0x10` key update (see [`crate::wire`]). The server
//! opens the stream after a well-formed `peer` request, as a replication listener does, and
//! both sides echo stream bytes.
//!
//! The server answers every request (echoing its arguments, or the typed error of
//! [`Command::parse`](crate::commands::Command::parse)); the client sends a `ping` when
//! connected and another after every response (at most [`MAX_CLIENT_REQUESTS`]), with ids
//! 1, 2, 3...
//!
//! Use [`corpus_seeds`] to write seed inputs that take each target down its main paths.

mod connection;
mod corpus;
mod forge;
mod messages;

pub use connection::{client_connection, server_connection};
pub use corpus::corpus_seeds;
pub use forge::{
    client_handshake, client_hello_frame, forge_record, forge_records, record_spec,
    server_handshake, server_hello_frame,
};
pub use messages::{
    client_finished, client_hello, close, command, deframer, ledger_entry, notice, sealed_message,
    server_auth, server_hello, transit_token,
};

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use rand_core::{TryCryptoRng, TryRng};

use crate::secure::ServerIdentity;

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
