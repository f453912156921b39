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
    assert_eq!(answer, vserv_core::session::refusal(CloseCode::Busy));
    drop(admitted);
    server.shutdown();
}
