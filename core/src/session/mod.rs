//! The connection state machine (client and server roles): handshake, record layer,
//! command layer, key update, timers and close. See the crate docs for the drain rule.

mod connection;
mod event;

pub use connection::{Config, Connection, Role};
pub use event::Event;

use crate::wire::{CloseCode, TYPE_REFUSE, frame::put_frame};

/// The plaintext Refuse frame a server writes instead of a ServerHello when it will not
/// serve a connection (for example at its connection limit), before closing the socket.
pub fn refusal(code: CloseCode) -> Vec<u8> {
    let mut body = vec![TYPE_REFUSE];
    body.extend_from_slice(&code.to_u16().to_be_bytes());
    let mut out = Vec::with_capacity(7);
    put_frame(&mut out, &body);
    out
}
