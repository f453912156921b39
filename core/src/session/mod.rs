//! The connection state machine (client and server roles): handshake, record layer,
//! command layer, key update, timers and close. See the crate docs for the drain rule.

mod connection;
mod event;

pub use connection::{Config, Connection, Role};
pub use event::Event;

use crate::wire::{CloseCode, Refusal, RetryHint, TYPE_REFUSE, frame::put_frame};

/// The plaintext Refuse frame a server writes instead of a ServerHello when it will not
/// serve a connection (for example at its connection limit), before closing the socket.
pub fn refusal(code: CloseCode) -> Vec<u8> {
    refusal_frame(Refusal { code, hint: None })
}

/// A Refuse frame that also names the limit that refused and when to retry (spec/protocol.md
/// §4.3); clients that know the hint may retry once after it.
pub fn refusal_with(code: CloseCode, hint: RetryHint) -> Vec<u8> {
    refusal_frame(Refusal {
        code,
        hint: Some(hint),
    })
}

fn refusal_frame(refusal: Refusal) -> Vec<u8> {
    let mut body = vec![TYPE_REFUSE];
    refusal.encode(&mut body);
    let mut out = Vec::with_capacity(4 + body.len());
    put_frame(&mut out, &body);
    out
}
