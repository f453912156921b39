//! The connection targets: a server or client [`Connection`] fed a peer byte stream built
//! from the input (see the layout in the module docs of [`crate::fuzzing`]), with every
//! promise of the poll API checked along the way and on everything it transmitted.

use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::forge::{
    client_handshake, client_hello_frame, forge_records, server_handshake, server_hello_frame,
};
use super::{Chunks, MAX_CLIENT_REQUESTS, SEED_CLIENT, SEED_SERVER, identity, rng};
use crate::commands::Command;
use crate::secure::RecordKeys;
use crate::session::Role;
use crate::wire::{
    self, CONTENT_APP, CONTENT_CLIENT_FINISHED, CONTENT_CLOSE, CONTENT_KEY_UPDATE, CONTENT_NOTICE,
    CONTENT_SERVER_AUTH, CONTENT_STREAM, ClientFinished, ClientHello, Close, Deframer, Request,
    Response, ServerAuth, ServerHello, TYPE_CLIENT_HELLO, TYPE_REFUSE, TYPE_SERVER_HELLO,
};
use crate::{Config, Connection, Error, Event};

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
                    let parsed = Command::parse(&req);
                    let opens_stream = matches!(parsed, Ok(Command::Peer { .. }));
                    let result = match parsed {
                        Ok(_) => Ok(req.args.clone()),
                        Err(reply) => Err(reply),
                    };
                    let r = self.conn.respond(&Response { id: req.id, result });
                    // A request can be answered unless the connection has closed meanwhile.
                    if let Err(e) = r {
                        assert!(self.conn.is_closed(), "respond failed: {e:?}");
                    } else if opens_stream {
                        // As a replication listener does after a good `peer`.
                        let r = self.conn.open_stream();
                        self.check_result(r);
                    }
                }
                (_, Event::Stream(bytes)) => {
                    assert!(!bytes.is_empty(), "an empty stream piece");
                    assert!(
                        self.conn.role() == Role::Client || self.conn.can_stream(),
                        "stream bytes before the stream was opened"
                    );
                    // Echoed, as a link answers with its own stream.
                    if self.conn.can_stream() {
                        let r = self.conn.send_stream(&bytes);
                        self.check_result(r);
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
                (Role::Client, Event::Notice(notice)) => {
                    let again = crate::commands::Notice::decode(&notice.encode());
                    assert_eq!(
                        again.as_ref(),
                        Ok(&notice),
                        "a notice that does not round-trip"
                    );
                }
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
            (_, CONTENT_STREAM) => assert!(!payload.is_empty(), "an empty stream record"),
            (Role::Server, CONTENT_NOTICE) => {
                crate::commands::Notice::decode(payload).expect("own Notice");
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
