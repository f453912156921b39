//! Targets of single decoders: the deframer, the handshake messages, ledger entries and
//! signed heads, and the command layer (requests, responses, every command's parser and
//! every reply's codec, driven by the catalogue in [`crate::commands`]). Each checks that
//! whatever decodes re-encodes to the same bytes.

use std::sync::OnceLock;

use super::{Chunks, identity};
use crate::Error;
use crate::commands::catalog::{self, SampleValues};
use crate::commands::{Command, Reply, help_text};
use crate::secure::Fingerprint;
use crate::wire::frame::put_frame;
use crate::wire::{
    self, ClientFinished, ClientHello, Close, Deframer, Request, Response, ServerAuth, ServerHello,
};

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
    if let Ok(refusal) = wire::Refusal::decode(data) {
        let mut again = Vec::new();
        refusal.encode(&mut again);
        assert_eq!(data, again.as_slice());
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

/// Notice decoder (protocol.md §12.4): whatever decodes re-encodes to the same bytes, and
/// its description never panics.
pub fn notice(data: &[u8]) {
    if let Ok(notice) = crate::commands::Notice::decode(data) {
        assert_eq!(notice.encode(), data, "Notice re-encodes differently");
        let _ = notice.describe();
    }
}

/// Sealed-message decoder (spec/messages.md): whatever decodes re-encodes to the same bytes,
/// and opening it with a fixed key never panics.
pub fn sealed_message(data: &[u8]) {
    use crate::messages::{MessageKey, SealedMessage, open};
    if let Ok(m) = SealedMessage::decode(data) {
        assert_eq!(m.to_bytes(), data, "sealed message re-encodes differently");
        if let Ok(key) = MessageKey::from_secret_bytes(&[7u8; 32]) {
            let _ = open(&key, &m.header.to, data);
        }
    }
}

/// Transit token decoder (spec/transit.md §2): whatever parses re-encodes to the same text,
/// and opening it with a fixed key version never panics (nor, under the real cipher, opens:
/// a fuzzer cannot forge the tag).
pub fn transit_token(data: &[u8]) {
    use crate::transit::{Token, open};
    if let Ok(token) = Token::parse(data) {
        assert_eq!(
            token.encode().as_bytes(),
            data,
            "transit token re-encodes differently"
        );
        let _ = open(&[7u8; 32], &token);
    }
}
