//! Sealing and opening datagrams (spec/datagrams.md §3-§6). The client draws an ephemeral
//! key and does ECDH with the server's identity key; HKDF-SHA256 over the shared secret,
//! bound to the request header (kind, ephemeral key, nonce, time) and the server's key,
//! gives one secret for the request and another for the response; each seals one record of
//! the record layer ([`RecordKeys`], sequence number 0). Only the holder of the identity
//! key can open the request or seal a response the client accepts.

use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    AMPLIFICATION_FACTOR, DatagramError, MAX_DATAGRAM, NONCE_LEN, REQUEST_HEADER_LEN,
    RESPONSE_HEADER_LEN, RequestDatagram, ResponseDatagram, body_len,
};
use crate::secure::keys::{self, Secret, SecretScalar};
use crate::secure::{RecordKeys, ServerIdentity, ServerKey};
use crate::wire::IV_LEN;
use crate::{Request, Response};

/// HKDF-Extract salt of the datagram key schedule.
pub const LABEL_DATAGRAM_EXTRACT: &[u8] = b"vserv/1 datagram";
/// HKDF-Expand label of the request's record secret.
pub const LABEL_DATAGRAM_REQUEST: &[u8] = b"vserv/1 datagram request";
/// HKDF-Expand label of the response's record secret.
pub const LABEL_DATAGRAM_RESPONSE: &[u8] = b"vserv/1 datagram response";
/// Content type of a sealed request's record.
pub const CONTENT_DATAGRAM_REQUEST: u8 = 0x51;
/// Content type of a sealed response's record holding a command response.
pub const CONTENT_DATAGRAM_RESPONSE: u8 = 0x52;
/// Content type of a sealed response's record saying the answer did not fit.
pub const CONTENT_DATAGRAM_TOO_LARGE: u8 = 0x53;

/// The server's side of the key schedule: its identity scalar (zeroized on drop) and key.
pub struct DatagramKey {
    scalar: SecretScalar,
    public: ServerKey,
}

impl std::fmt::Debug for DatagramKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl DatagramKey {
    /// The datagram key of a server identity (the same key its clients pin).
    pub fn from_identity(identity: &ServerIdentity) -> DatagramKey {
        let bytes = identity.secret_bytes();
        match keys::scalar_from_bytes(&bytes) {
            Ok(scalar) => DatagramKey {
                scalar,
                public: identity.public_key(),
            },
            // An identity's secret is a valid scalar by construction.
            Err(_) => unreachable!("a server identity holds a valid scalar"),
        }
    }

    /// The public key clients seal to.
    pub fn public(&self) -> ServerKey {
        self.public
    }
}

/// The request and response secrets: `prk = HKDF-Extract(LABEL_DATAGRAM_EXTRACT, shared)`,
/// `context = SHA-256(header || server_key)`, each secret `Expand(prk, label, context)`.
fn secrets(shared: &[u8; 32], header: &[u8], server: &ServerKey) -> (Secret, Secret) {
    let mut hash = Sha256::new();
    hash.update(header);
    hash.update(server.as_bytes());
    let context: [u8; 32] = hash.finalize().into();
    let (prk, _) = Hkdf::<Sha256>::extract(Some(LABEL_DATAGRAM_EXTRACT), shared);
    let mut prk_bytes = Zeroizing::new([0u8; 32]);
    prk_bytes.copy_from_slice(&prk);
    (
        keys::expand(&prk_bytes, LABEL_DATAGRAM_REQUEST, &context),
        keys::expand(&prk_bytes, LABEL_DATAGRAM_RESPONSE, &context),
    )
}

/// Seals `payload` under `secret` (sequence 0) and returns the record body.
fn seal_body(secret: Secret, content_type: u8, payload: &[u8], iv: [u8; IV_LEN]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(4 + body_len(payload.len()));
    let mut record = RecordKeys::from_secret(secret);
    // Callers keep payloads far below MAX_PAYLOAD, so framing cannot fail.
    if record.seal(content_type, payload, iv, &mut frame).is_err() {
        return Vec::new();
    }
    // `seal` writes one whole frame: its 4-byte length, then the body.
    frame.split_off(4.min(frame.len()))
}

/// Opens a record body under `secret` (sequence 0): `(content_type, payload)`.
fn open_body(secret: Secret, body: &[u8]) -> Result<(u8, Vec<u8>), DatagramError> {
    let mut record = RecordKeys::from_secret(secret);
    let mut body = body.to_vec();
    let (content_type, payload) = record.open(&mut body).map_err(|_| DatagramError::BadMac)?;
    Ok((content_type, payload.to_vec()))
}

/// What the client keeps of a request it sent, to open the answer: the nonce, the response
/// secret (zeroized on drop) and the request's size.
pub struct PendingRequest {
    nonce: [u8; NONCE_LEN],
    response: Secret,
    len: usize,
}

impl std::fmt::Debug for PendingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRequest")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// An answer the client opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The command's response.
    Response(Response),
    /// The answer did not fit: a request of at least `needed` bytes would let it (more than
    /// [`MAX_DATAGRAM`]: the answer cannot come by datagram, use TCP).
    TooLarge {
        /// The request size, in bytes, the answer needs.
        needed: usize,
    },
}

/// Seals `request` to the server key `server` at `time` (Unix seconds), padded so that the
/// datagram is at least `pad_to` bytes (or the largest size at most [`MAX_DATAGRAM`] that
/// whole cipher blocks reach, when `pad_to` is within 16 bytes of it); randomness from `rng`, drawn in this order: the
/// ephemeral scalar (redrawn until valid), the nonce (16), the IV (16). Returns the datagram
/// and what opens its answer. `TooLarge` if it would exceed [`MAX_DATAGRAM`].
pub fn seal_request<R: CryptoRng + ?Sized>(
    server: &ServerKey,
    request: &Request,
    pad_to: usize,
    time: u64,
    rng: &mut R,
) -> Result<(Vec<u8>, PendingRequest), DatagramError> {
    let mut encoded = Vec::with_capacity(request.encoded_len());
    request.encode(&mut encoded);
    if pad_to > MAX_DATAGRAM {
        return Err(DatagramError::TooLarge);
    }
    // A datagram is the header, IV and tag, and whole cipher blocks: pad the payload to the
    // fewest blocks that reach `pad_to` (and stay within MAX_DATAGRAM).
    let fixed = REQUEST_HEADER_LEN + IV_LEN + crate::wire::TAG_LEN;
    let mut blocks = pad_to.saturating_sub(fixed).div_ceil(16).max(1) * 16;
    while blocks > 16 && fixed + blocks > MAX_DATAGRAM {
        blocks -= 16;
    }
    // `blocks - 2` payload bytes (plus the content type and at least one padding byte) fill
    // exactly `blocks`.
    let payload_len = (2 + encoded.len()).max(blocks - 2);
    let mut payload = Vec::with_capacity(payload_len);
    payload.extend_from_slice(&(encoded.len() as u16).to_be_bytes());
    payload.extend_from_slice(&encoded);
    payload.resize(payload_len, 0);
    let len = REQUEST_HEADER_LEN + body_len(payload.len());
    if len > MAX_DATAGRAM {
        return Err(DatagramError::TooLarge);
    }
    let ephemeral = keys::random_scalar(rng);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let mut datagram = RequestDatagram {
        ephemeral: keys::public_point(&ephemeral),
        nonce,
        time,
        body: Vec::new(),
    };
    let shared = keys::ecdh(&ephemeral, server.as_bytes()).map_err(|_| DatagramError::BadPoint)?;
    let (request_secret, response) = secrets(&shared, &datagram.header(), server);
    datagram.body = seal_body(request_secret, CONTENT_DATAGRAM_REQUEST, &payload, iv);
    let bytes = datagram.to_bytes();
    let pending = PendingRequest {
        nonce,
        response,
        len: bytes.len(),
    };
    Ok((bytes, pending))
}

impl PendingRequest {
    /// The request's nonce (its answer echoes it).
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The size of the request datagram sent.
    pub fn request_len(&self) -> usize {
        self.len
    }

    /// Opens the answer to this request, in this order: decode (`TooLarge`, `BadVersion`,
    /// `Truncated`), the nonce must be this request's (`Malformed`), the record's tag under
    /// the response secret, then padding (`BadMac`), then the content (`Malformed`).
    pub fn open_response(&self, data: &[u8]) -> Result<Answer, DatagramError> {
        let datagram = ResponseDatagram::decode(data)?;
        if datagram.nonce != self.nonce {
            return Err(DatagramError::Malformed("the answer of another request"));
        }
        let (content_type, payload) = open_body(self.response.clone(), &datagram.body)?;
        match content_type {
            CONTENT_DATAGRAM_RESPONSE => Response::decode(&payload)
                .map(Answer::Response)
                .map_err(|_| DatagramError::Malformed("response")),
            CONTENT_DATAGRAM_TOO_LARGE => match <[u8; 2]>::try_from(payload.as_slice()) {
                Ok(n) => Ok(Answer::TooLarge {
                    needed: u16::from_be_bytes(n) as usize,
                }),
                Err(_) => Err(DatagramError::Malformed("too-large answer")),
            },
            _ => Err(DatagramError::Malformed("content type")),
        }
    }
}

/// A request the server opened: the command request, its nonce and time (for the replay
/// cache), and what seals its answer.
pub struct OpenedRequest {
    /// The command request.
    pub request: Request,
    /// The request's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The client's time, Unix seconds.
    pub time: u64,
    len: usize,
    response: Secret,
}

impl std::fmt::Debug for OpenedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedRequest")
            .field("request", &self.request)
            .field("time", &self.time)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Opens a decoded request with the server's key, in this order: ECDH with the ephemeral
/// key (`BadPoint`); the record's tag under the request secret, then padding (`BadMac`);
/// the content type, the length-prefixed request, zero padding and the request's encoding
/// (`Malformed`). The caller checks time and replay (`replay.rs`): the time is
/// authenticated once this returns.
pub fn open_request(
    key: &DatagramKey,
    datagram: &RequestDatagram,
) -> Result<OpenedRequest, DatagramError> {
    let shared =
        keys::ecdh(&key.scalar, &datagram.ephemeral).map_err(|_| DatagramError::BadPoint)?;
    let (request_secret, response) = secrets(&shared, &datagram.header(), &key.public);
    let (content_type, payload) = open_body(request_secret, &datagram.body)?;
    if content_type != CONTENT_DATAGRAM_REQUEST {
        return Err(DatagramError::Malformed("content type"));
    }
    let (len, rest) = payload
        .split_first_chunk::<2>()
        .ok_or(DatagramError::Malformed("request length"))?;
    let len = u16::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(DatagramError::Malformed("request length"));
    }
    let (encoded, padding) = rest.split_at(len);
    if padding.iter().any(|&b| b != 0) {
        return Err(DatagramError::Malformed("padding"));
    }
    let request = Request::decode(encoded).map_err(|_| DatagramError::Malformed("request"))?;
    Ok(OpenedRequest {
        request,
        nonce: datagram.nonce,
        time: datagram.time,
        len: REQUEST_HEADER_LEN + datagram.body.len(),
        response,
    })
}

/// A sealed answer, and whether it had to say "too large" instead of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedAnswer {
    /// The response datagram to send.
    pub bytes: Vec<u8>,
    /// `Some(needed)` when the response did not fit and the datagram says so.
    pub too_large: Option<usize>,
}

impl OpenedRequest {
    /// The size of the request datagram.
    pub fn request_len(&self) -> usize {
        self.len
    }

    /// The largest answer this request may get: [`AMPLIFICATION_FACTOR`] times its size,
    /// at most [`MAX_DATAGRAM`].
    pub fn answer_budget(&self) -> usize {
        (AMPLIFICATION_FACTOR * self.len).min(MAX_DATAGRAM)
    }

    /// Seals `response` under the response secret with `iv`. When the sealed answer would
    /// exceed [`Self::answer_budget`], seals instead the request size it would need (the
    /// smallest `n` with `AMPLIFICATION_FACTOR * n` at least the answer's size; above
    /// [`MAX_DATAGRAM`] when no request could get it), which always fits.
    pub fn seal_response(&self, response: &Response, iv: [u8; IV_LEN]) -> SealedAnswer {
        let mut encoded = Vec::with_capacity(response.encoded_len());
        response.encode(&mut encoded);
        let answer_len = RESPONSE_HEADER_LEN + body_len(encoded.len());
        let (content_type, payload, too_large) = if answer_len <= self.answer_budget() {
            (CONTENT_DATAGRAM_RESPONSE, encoded, None)
        } else {
            let needed = if answer_len > MAX_DATAGRAM {
                MAX_DATAGRAM + 1
            } else {
                answer_len.div_ceil(AMPLIFICATION_FACTOR)
            };
            let n = needed.min(u16::MAX as usize) as u16;
            (
                CONTENT_DATAGRAM_TOO_LARGE,
                n.to_be_bytes().to_vec(),
                Some(needed),
            )
        };
        let datagram = ResponseDatagram {
            nonce: self.nonce,
            body: seal_body(self.response.clone(), content_type, &payload, iv),
        };
        SealedAnswer {
            bytes: datagram.to_bytes(),
            too_large,
        }
    }
}
