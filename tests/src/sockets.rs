//! Talking to a real server's socket without a client: raw exchanges, and the cases only a
//! runtime with a real accept loop can run.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use vserv_core::{CloseCode, Config};
use vserv_service::{Policy, RateLimit};

use crate::{Fixture, Runtime, TestServer, service_with_policy};

/// Writes `bytes` to a new connection to `addr`, half-closes it, and collects the answer
/// until the server closes or 2 s pass.
pub fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The accept loop applies the service's per-address connection rate limit: the third
/// connection in a window of two gets the plaintext `Busy` refusal, before any handshake.
/// (Socket runtimes only: the simulator has no accept loop to limit.)
pub fn the_accept_loop_refuses_beyond_the_connection_rate<R: Runtime>() {
    let fx = Fixture::new(30);
    let policy = Policy {
        connection_rate: Some(RateLimit {
            connections: 2,
            window_secs: 3600,
        }),
        ..Policy::default()
    };
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let addr = server.address();
    let admitted: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .collect();
    let mut third = TcpStream::connect(&addr).expect("connect");
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    // A Refuse frame (length, type 0x15) whose hint names the rate limit and the time left
    // in the window.
    assert_eq!(
        answer.get(4),
        Some(&vserv_core::wire::TYPE_REFUSE),
        "{answer:?}"
    );
    let refusal = vserv_core::wire::Refusal::decode(&answer[5..]).expect("a Refuse body");
    assert_eq!(refusal.code, CloseCode::Busy);
    let hint = refusal.hint.expect("a retry hint");
    assert_eq!(hint.limit, vserv_core::wire::RefusedLimit::ConnectionRate);
    assert!((3599..=3600).contains(&hint.retry_after_secs), "{hint:?}");
    assert_eq!(
        answer,
        vserv_core::session::refusal_with(CloseCode::Busy, hint),
        "nothing but the frame"
    );
    drop(admitted);
    server.shutdown();
}
