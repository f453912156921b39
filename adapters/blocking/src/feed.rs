//! The one blocking read step both the client and the server loop take.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use vserv_core::Connection;

/// Waits for input until the connection's timer (and at most `cap`, if given), then feeds
/// what happened to `conn`: bytes, end of stream, or an expired wait. The outer result is a
/// socket failure; the inner one is how many bytes arrived (0 for an end of stream or an
/// expired wait) and the connection's verdict (fatal when `Err`).
pub(crate) fn read_into(
    stream: &mut TcpStream,
    conn: &mut Connection,
    buf: &mut [u8],
    cap: Option<Duration>,
) -> io::Result<(usize, Result<(), vserv_core::Error>)> {
    let now = Instant::now();
    let until_timer = conn
        .poll_timeout()
        .map(|t| t.saturating_duration_since(now));
    let wait = match (until_timer, cap) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    };
    // A zero read timeout means "block forever" to the OS: wait at least 1 ms.
    stream.set_read_timeout(wait.map(|w| w.max(Duration::from_millis(1))))?;
    Ok(match stream.read(buf) {
        Ok(0) => (0, conn.handle_eof(Instant::now())),
        Ok(n) => (n, conn.handle_input(Instant::now(), &buf[..n])),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            (0, conn.handle_timeout(Instant::now()))
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => (0, Ok(())),
        Err(e) => return Err(e),
    })
}
