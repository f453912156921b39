//! Sealed UDP queries on every runtime (spec/datagrams.md): a key query gets the server's
//! key; a sealed `ping` gets its sealed echo; the same datagram sent again, a forged one and
//! one sealed to another key get silence; a command off the UDP allow-list gets a sealed
//! refusal; the server then still answers a fresh request. The runtime supplies the
//! datagram path ([`UdpRuntime`]): real loopback sockets, or the simulator's network.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vserv_core::datagram::{Answer, decode_key_answer, key_query, seal_request};
use vserv_core::{ErrorCode, Request, Response, ServerIdentity};
use vserv_service::Service;
use vserv_service::datagram::DatagramSettings;

use crate::fixture::*;

/// A runtime that can answer datagrams.
pub trait UdpRuntime {
    /// The client's end of the datagram path to a running server.
    type Udp: UdpPeer;
    /// Starts answering datagrams with `service` (already given its datagram key).
    fn start_udp(service: Service) -> Self::Udp;
}

/// The client's end of a datagram path to a server.
pub trait UdpPeer {
    /// Sends `bytes` to the server and returns every datagram that came back within a
    /// short wait (nothing, when the server stays silent).
    fn exchange(&mut self, bytes: &[u8]) -> Vec<Vec<u8>>;
    /// The server's clock, Unix seconds (the simulator's is virtual).
    fn now_secs(&self) -> u64;
}

fn ping(id: u32, payload: &[u8]) -> Request {
    Request {
        id,
        name: "ping".into(),
        args: vec![payload.to_vec()],
    }
}

/// `ping` over UDP, its replay refused, forgeries ignored, the allow-list enforced.
pub fn ping_over_udp_with_replay_refused<R: UdpRuntime>() {
    let identity = Arc::new(identity(31));
    let key = identity.public_key();
    let service = service(&identity).with_datagrams(&identity, DatagramSettings::default());
    let mut udp = R::start_udp(service);
    let mut rng = StdRng::seed_from_u64(5);

    let answers = udp.exchange(&key_query());
    assert_eq!(answers.len(), 1, "one key answer");
    assert_eq!(decode_key_answer(&answers[0]), Ok(key));

    let (bytes, pending) =
        seal_request(&key, &ping(1, b"udp"), 0, udp.now_secs(), &mut rng).expect("seal");
    let answers = udp.exchange(&bytes);
    assert_eq!(answers.len(), 1, "one answer");
    assert_eq!(
        pending.open_response(&answers[0]),
        Ok(Answer::Response(Response {
            id: 1,
            result: Ok(vec![b"udp".to_vec()]),
        }))
    );
    assert!(udp.exchange(&bytes).is_empty(), "a replay was answered");

    let (fresh, _) = seal_request(&key, &ping(2, b"x"), 0, udp.now_secs(), &mut rng).expect("seal");
    let mut forged = fresh.clone();
    forged[70] ^= 0x10;
    assert!(udp.exchange(&forged).is_empty(), "a forgery was answered");
    assert!(
        udp.exchange(&fresh[..fresh.len() - 1]).is_empty(),
        "a truncation was answered"
    );
    let other = ServerIdentity::generate(&mut StdRng::seed_from_u64(77)).public_key();
    let (misaddressed, _) =
        seal_request(&other, &ping(3, b"x"), 0, udp.now_secs(), &mut rng).expect("seal");
    assert!(
        udp.exchange(&misaddressed).is_empty(),
        "another key's request was answered"
    );

    let hello = Request {
        id: 4,
        name: "hello".into(),
        args: Vec::new(),
    };
    let (bytes, pending) = seal_request(&key, &hello, 0, udp.now_secs(), &mut rng).expect("seal");
    let answers = udp.exchange(&bytes);
    assert_eq!(answers.len(), 1);
    let Ok(Answer::Response(Response { result: Err(e), .. })) = pending.open_response(&answers[0])
    else {
        panic!("expected a refusal of hello over UDP");
    };
    assert_eq!(e.code, ErrorCode::Forbidden);

    // The untouched request still goes through after all that.
    let answers = udp.exchange(&fresh);
    assert_eq!(answers.len(), 1, "the server stopped answering");
}

/// The client's end over a real loopback socket, keeping the server's handle `H` alive.
pub struct SocketPeer<H> {
    socket: std::net::UdpSocket,
    _server: H,
}

impl<H> SocketPeer<H> {
    /// A socket on 127.0.0.1 talking to `server`, which `handle` keeps running.
    pub fn new(server: std::net::SocketAddr, handle: H) -> SocketPeer<H> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(server).expect("connect");
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .expect("timeout");
        SocketPeer {
            socket,
            _server: handle,
        }
    }
}

impl<H> UdpPeer for SocketPeer<H> {
    fn exchange(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.socket.send(bytes).expect("send");
        let mut out = Vec::new();
        let mut buf = vec![0u8; vserv_core::datagram::MAX_DATAGRAM + 1];
        // Loopback delivers at once: whatever has not come within the timeout never will.
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }
    fn now_secs(&self) -> u64 {
        vserv_service::unix_now()
    }
}

/// `tables` and `query` over UDP (they run as blocking work, whose answer the runtime sends
/// later): an anonymous caller sees and reads only the tables open to anyone; an answer
/// larger than the amplification budget comes back as "too large", and the same query
/// padded as asked is answered.
pub fn tables_over_udp<R: UdpRuntime>() {
    use vserv_core::commands::{Command, Lookup, Reply, TableQuery};
    use vserv_service::NodeSettings;
    use vserv_service::tables::{MemoryFiles, TableAccess, TableConfig, TablesSettings};

    let identity = Arc::new(identity(32));
    let key = identity.public_key();
    let files = Arc::new(MemoryFiles::new());
    let long = "x".repeat(900);
    files.put(
        "/open.csv",
        format!("word,meaning\nhi,hello\nlong,{long}\n"),
    );
    files.put("/closed.csv", "word,meaning\nhi,secret\n");
    let settings = NodeSettings {
        tables: TablesSettings {
            tables: vec![
                TableConfig {
                    access: TableAccess::Anyone,
                    ..TableConfig::new("open", "/open.csv")
                },
                TableConfig::new("closed", "/closed.csv"),
            ],
            ..TablesSettings::default()
        },
        ..settings()
    };
    let service = node(&identity, settings)
        .table_source(files)
        .build()
        .expect("node")
        .service()
        .with_datagrams(&identity, DatagramSettings::default());
    let mut udp = R::start_udp(service);
    let mut rng = StdRng::seed_from_u64(6);
    let mut ask = |udp: &mut R::Udp, id: u32, cmd: &Command, pad: usize| {
        let request = Request {
            id,
            name: cmd.name().into(),
            args: cmd.args(),
        };
        let (bytes, pending) =
            seal_request(&key, &request, pad, udp.now_secs(), &mut rng).expect("seal");
        let answers = udp.exchange(&bytes);
        assert_eq!(answers.len(), 1, "one answer to {}", cmd.name());
        pending
            .open_response(&answers[0])
            .expect("an authentic answer")
    };
    let query = |table: &str, key: &str| {
        Command::Query(TableQuery {
            table: table.into(),
            lookup: Lookup::Key(key.into()),
        })
    };

    let Answer::Response(Response {
        result: Ok(fields), ..
    }) = ask(&mut udp, 1, &Command::Tables, 0)
    else {
        panic!("tables over UDP refused");
    };
    let Ok(Reply::Tables(infos)) = Reply::from_fields(&Command::Tables, &fields) else {
        panic!("not a tables reply");
    };
    let names: Vec<&str> = infos.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["open"], "an anonymous caller sees only open tables");

    let hi = query("open", "hi");
    let Answer::Response(Response {
        result: Ok(fields), ..
    }) = ask(&mut udp, 2, &hi, 0)
    else {
        panic!("query over UDP refused");
    };
    assert!(matches!(
        Reply::from_fields(&hi, &fields),
        Ok(Reply::Row(r)) if r.get("meaning") == Some("hello")
    ));

    let Answer::Response(Response { result: Err(e), .. }) =
        ask(&mut udp, 3, &query("closed", "hi"), 0)
    else {
        panic!("a users' table answered an anonymous datagram");
    };
    assert_eq!(e.code, ErrorCode::Forbidden);

    let big = query("open", "long");
    let Answer::TooLarge { needed } = ask(&mut udp, 4, &big, 0) else {
        panic!("an answer beyond the amplification budget was sent");
    };
    let Answer::Response(Response {
        result: Ok(fields), ..
    }) = ask(&mut udp, 5, &big, needed)
    else {
        panic!("the padded query was not answered");
    };
    assert!(matches!(
        Reply::from_fields(&big, &fields),
        Ok(Reply::Row(r)) if r.get("meaning") == Some(long.as_str())
    ));
}
