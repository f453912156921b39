//! `vserv bench handshake --breakdown`: single-thread costs of what one session is made of,
//! to see where a handshake's time goes without a profiler.

use std::hint::black_box;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use vserv_core::secure::keys;
use vserv_core::{Config, Connection, Event, ServerIdentity};
use vserv_store::known_servers::KnownServers;

/// One component's cost.
#[derive(Serialize, Debug)]
pub struct Part {
    pub name: &'static str,
    /// Microseconds per operation (best of three runs).
    pub us: f64,
    /// How many times one session pays it.
    pub per_session: &'static str,
}

/// Times `f` over about `budget`, best of three runs; returns µs per call.
fn time(budget: Duration, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget / 3 {
            f()?;
            n += 1;
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    Ok(best)
}

/// Drives a client and a server connection against each other in memory until both are
/// connected (all protocol crypto of one handshake, both sides, no sockets).
fn in_memory_handshake(identity: &Arc<ServerIdentity>) -> anyhow::Result<()> {
    let now = Instant::now();
    let mut client = Connection::client(Config::default(), vserv_service::system::os_rng()?, now);
    let mut server = Connection::server(
        Config::default(),
        identity.clone(),
        vserv_service::system::os_rng()?,
        now,
    );
    let mut buf = Vec::new();
    for _ in 0..8 {
        buf.clear();
        client.poll_transmit(&mut buf);
        if !buf.is_empty() {
            server.handle_input(now, &buf)?;
        }
        while server.poll_event().is_some() {}
        buf.clear();
        server.poll_transmit(&mut buf);
        if !buf.is_empty() {
            client.handle_input(now, &buf)?;
        }
        while let Some(event) = client.poll_event() {
            if let Event::ServerKey(_) = event {
                client.accept_server_key(now)?;
            }
        }
        if client.is_connected() && server.is_connected() {
            return Ok(());
        }
    }
    bail!("in-memory handshake did not complete")
}

/// Measures the parts, each for about `budget`.
pub fn parts(budget: Duration, known_servers: &std::path::Path) -> anyhow::Result<Vec<Part>> {
    let mut rng = vserv_service::system::os_rng()?;
    let identity = Arc::new(ServerIdentity::generate(&mut *rng));
    let server_key = identity.public_key();
    let scalar = keys::random_scalar(&mut *rng);
    let peer = keys::public_point(&keys::random_scalar(&mut *rng));
    let msg = keys::signed_message(&[7; 32]);
    let sig = identity.sign(&msg);
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut parts = Vec::new();
    let mut add = |name, per_session, us| {
        parts.push(Part {
            name,
            us,
            per_session,
        })
    };
    add(
        "in-memory handshake, both sides",
        "1",
        time(budget, || in_memory_handshake(&identity))?,
    );
    add(
        "ephemeral key (scalar + public point)",
        "2 (client, server)",
        time(budget, || {
            black_box(keys::public_point(&keys::random_scalar(&mut *rng)));
            Ok(())
        })?,
    );
    add(
        "ECDH (decompress peer point + mul)",
        "2 (client, server)",
        time(budget, || {
            black_box(keys::ecdh(&scalar, &peer)?);
            Ok(())
        })?,
    );
    add(
        "ECDSA sign (RFC 6979)",
        "1 (server)",
        time(budget, || {
            black_box(identity.sign(black_box(&msg)));
            Ok(())
        })?,
    );
    add(
        "ECDSA verify (incl. key decompress)",
        "1 (client)",
        time(budget, || {
            server_key.verify(black_box(&msg), &sig)?;
            Ok(())
        })?,
    );
    add(
        "point decompress (ServerKey::from_bytes)",
        "1+ (client)",
        time(budget, || {
            black_box(vserv_core::ServerKey::from_bytes(server_key.as_bytes())?);
            Ok(())
        })?,
    );
    add(
        "os_rng() (getrandom + ChaCha seed)",
        "2 (client, server)",
        time(budget, || {
            black_box(vserv_service::system::os_rng()?);
            Ok(())
        })?,
    );
    add(
        "known_servers load",
        "1 (client)",
        time(budget, || {
            black_box(KnownServers::load(known_servers)?);
            Ok(())
        })?,
    );
    add(
        "thread spawn + join",
        "1 (server)",
        time(budget, || {
            std::thread::Builder::new()
                .spawn(|| black_box(vec![0u8; 64 * 1024]).len())?
                .join()
                .map_err(|_| anyhow::anyhow!("thread panicked"))?;
            Ok(())
        })?,
    );
    add(
        "TCP connect + accept + close (loopback)",
        "1",
        time(budget, || {
            let c = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            c.set_nodelay(true)?;
            let (mut s, _) = listener.accept()?;
            drop(c);
            let mut b = [0u8; 1];
            let _ = s.read(&mut b)?;
            Ok(())
        })?,
    );
    Ok(parts)
}
