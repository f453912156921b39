//! What a connection reports to its driver.

use crate::commands::Notice;
use crate::secure::ServerKey;
use crate::wire::{Close, Request, Response};

/// An event drained with [`crate::Connection::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client only: the server proved possession of this identity key. The handshake waits
    /// until the driver calls `accept_server_key` (key known or trusted on first use) or
    /// `reject_server_key` (key changed or not the pinned one).
    ServerKey(ServerKey),
    /// The handshake completed; application data may flow.
    Connected {
        /// Exported value unique to this session, for authentication inside the channel.
        session_id: [u8; 32],
        /// The server's identity key.
        server_key: ServerKey,
    },
    /// Server only: a request to answer with `respond`.
    Request(Request),
    /// Client only: the answer to an earlier `send_request`.
    Response(Response),
    /// The next bytes of the connection's stream, in order (see
    /// [`crate::Connection::send_stream`]). Pieces are cut anywhere: the bytes, not the
    /// pieces, are what the peer sent.
    Stream(Vec<u8>),
    /// Client only: a notice the server pushed (a message or delivery arrived, the session
    /// is about to idle out); it answers no request.
    Notice(Notice),
    /// The peer closed the connection with an authenticated close record.
    Closed(Close),
}
