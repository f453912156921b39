//! Closing a connection so that its last record arrives: the server sends its FIN, then
//! reads and discards what the client still sends, for a short while, before the socket is
//! dropped. Dropping a socket with unread input makes the kernel answer with a reset, and a
//! reset may make the client's kernel discard the close record it had not read yet (the
//! client then sees a broken pipe instead of the reason).

use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How long a closed connection keeps draining its client's input.
pub(crate) const LINGER: Duration = Duration::from_millis(200);
/// The most bytes drained before giving up (a client still streaming gets its reset).
const MAX_DRAIN: usize = 256 * 1024;

/// Sends FIN, drains the client's input until it closes too (or [`LINGER`] passes, or
/// [`MAX_DRAIN`] bytes came), then shuts the socket down.
pub(crate) fn close(stream: &TcpStream) {
    if stream.shutdown(Shutdown::Write).is_ok() && stream.set_nonblocking(false).is_ok() {
        let deadline = Instant::now() + LINGER;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < MAX_DRAIN {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match (&*stream).read(&mut sink) {
                Ok(0) => break,
                Ok(n) => drained += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn a_client_writing_after_the_close_still_reads_it() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        // Input the server never reads, then its last words, then the close.
        client.write_all(&[7u8; 1000]).expect("client write");
        std::thread::sleep(Duration::from_millis(20));
        server.write_all(b"bye").expect("server write");
        // The server closes and drops its socket while the client is not reading yet.
        let closing = std::thread::spawn(move || {
            close(&server);
            drop(server);
        });
        std::thread::sleep(Duration::from_millis(50));
        // The client still writes (a request, or its answer to the close): without the
        // linger, the server's kernel has reset the connection and this is a broken pipe.
        client
            .write_all(b"more")
            .expect("the client's write met a reset");
        client.shutdown(Shutdown::Write).expect("client FIN");
        closing.join().expect("close");
        let mut got = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 16];
        loop {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("the client lost the close: {e} after {got:?}"),
            }
        }
        assert_eq!(got, b"bye");
    }
}
