//! Runtime parity of file transfers: the same cases on the blocking server, the smol server
//! and the simulator, each through that runtime's own client (the blocking client's
//! `transfer` functions, the smol client's, the sim client's), all of them driving the one
//! client scheduler of `vserv_service::client::transfers`:
//!
//! - put then get of one file gives back the same bytes and SHA-256;
//! - `put_many` then `get_many` of three files, two at once;
//! - an upload cut two thirds of the way in (a proxy that closes the TCP connection; in the
//!   simulator, a link that stalls forever after that many bytes) is resumed on a new
//!   connection from where the server stopped, and the file reads back whole.
//!
//! The TCP clients' local files are on disk in the fixture's directory; the sim client's
//! are the world's in-memory [`MemoryFiles`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use vserv_core::commands::{Command, Reply};
use vserv_core::transfer::MAX_FPUT_DATA;
use vserv_core::{Config, ErrorCode};
use vserv_service::ServerOptions;
use vserv_service::client::ClientError;
use vserv_service::client::transfers::{
    Download, FileResult, TransferFailure, TransferOptions, Upload,
};
use vserv_sim::{LinkConfig, LinkSpec, MemoryFiles, ServerSpec, SimClient, SimServer};
use vserv_tests::Fixture;
use vserv_tests::clients::{login_cmd, secret};

const ALICE: &str = "alice-password";

/// A runtime under test, with its own client.
trait Rt {
    /// A running server (and where its clients' local files are).
    type Server;
    /// A connected client.
    type Client;
    fn start(fx: &Fixture) -> Self::Server;
    /// A client of `server`; with `cut_up_after`, the connection breaks once that many
    /// bytes went from the client to the server.
    fn connect(server: &Self::Server, fx: &Fixture, cut_up_after: Option<u64>) -> Self::Client;
    fn call(client: &mut Self::Client, command: &Command) -> Result<Reply, ClientError>;
    fn put_many(
        client: &mut Self::Client,
        files: &[Upload],
        options: &TransferOptions,
        parallel: usize,
    ) -> Vec<FileResult>;
    fn get_many(
        client: &mut Self::Client,
        files: &[Download],
        options: &TransferOptions,
        parallel: usize,
    ) -> Vec<FileResult>;
    /// The local path of `name`.
    fn local(server: &Self::Server, fx: &Fixture, name: &str) -> PathBuf;
    fn write_local(server: &Self::Server, path: &Path, bytes: &[u8]);
    fn read_local(server: &Self::Server, path: &Path) -> Option<Vec<u8>>;
    /// Lets the server notice a broken connection (real or virtual time).
    fn pause(server: &Self::Server);
}

// ----- TCP: the blocking and smol runtimes -----

fn tcp_options() -> ServerOptions {
    ServerOptions {
        max_connections: 16,
        config: Config::default(),
    }
}

/// A proxy in front of `server` for one connection that forwards both ways until `up`
/// bytes went from the client to the server, then closes both sides. Returns its address.
fn cutting_proxy(server: String, up: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let upstream = TcpStream::connect(server).unwrap();
        let forward = |mut from: TcpStream, mut to: TcpStream, limit: Option<u64>| {
            let mut sent = 0u64;
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let n = limit.map_or(n, |l| n.min(usize::try_from(l - sent).unwrap()));
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n as u64;
                if limit == Some(sent) {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        };
        let (c, u) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let upward = std::thread::spawn(move || forward(c, u, Some(up)));
        forward(upstream, client, None);
        let _ = upward.join();
    });
    addr
}

fn tcp_address(address: String, cut_up_after: Option<u64>) -> String {
    match cut_up_after {
        Some(up) => cutting_proxy(address, up),
        None => address,
    }
}

struct Blocking;

impl Rt for Blocking {
    type Server = vserv_blocking::ServerHandle;
    type Client = vserv_blocking::Client;
    fn start(fx: &Fixture) -> Self::Server {
        vserv_blocking::Server::bind(
            "127.0.0.1:0",
            fx.identity.clone(),
            fx.service(),
            tcp_options(),
        )
        .unwrap()
        .spawn()
        .unwrap()
    }
    fn connect(server: &Self::Server, fx: &Fixture, cut_up_after: Option<u64>) -> Self::Client {
        let addr = tcp_address(server.local_addr().to_string(), cut_up_after);
        vserv_blocking::Client::connect(&addr, &fx.options()).unwrap()
    }
    fn call(client: &mut Self::Client, command: &Command) -> Result<Reply, ClientError> {
        client.call(command)
    }
    fn put_many(
        client: &mut Self::Client,
        files: &[Upload],
        options: &TransferOptions,
        parallel: usize,
    ) -> Vec<FileResult> {
        vserv_blocking::transfer::put_many(client, files, options, parallel, &mut |_, _, _| {})
    }
    fn get_many(
        client: &mut Self::Client,
        files: &[Download],
        options: &TransferOptions,
        parallel: usize,
    ) -> Vec<FileResult> {
        vserv_blocking::transfer::get_many(client, files, options, parallel, &mut |_, _, _| {})
    }
    fn local(_: &Self::Server, fx: &Fixture, name: &str) -> PathBuf {
        fx.dir().join(name)
    }
    fn write_local(_: &Self::Server, path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }
    fn read_local(_: &Self::Server, path: &Path) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }
    fn pause(_: &Self::Server) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Smol;

impl Rt for Smol {
    type Server = vserv_smol::ServerHandle;
    type Client = vserv_smol::Client;
    fn start(fx: &Fixture) -> Self::Server {
        vserv_smol::Server::bind(
            "127.0.0.1:0",
            fx.identity.clone(),
            fx.service(),
            tcp_options(),
        )
        .unwrap()
        .spawn()
        .unwrap()
    }
    fn connect(server: &Self::Server, fx: &Fixture, cut_up_after: Option<u64>) -> Self::Client {
        let addr = tcp_address(server.local_addr().to_string(), cut_up_after);
        vserv_smol::block_on(vserv_smol::Client::connect(&addr, &fx.options())).unwrap()
    }
    fn call(client: &mut Self::Client, command: &Command) -> Result<Reply, ClientError> {
        vserv_smol::block_on(client.call(command))
    }
    fn put_many(
        client: &mut Self::Client,
        files: &[Upload],
        options: &TransferOptions,
        parallel: usize,
    ) -> Vec<FileResult> {
        vserv_smol::block_on(client.put_many(files, options, parallel, &mut |_, _, _| {}))
    }
    fn get_many(
        client: &mut Self::Client,
        files: &[Download],
        options: &TransferOptions,
        parallel: usize,
    ) -> Vec<FileResult> {
        vserv_smol::block_on(client.get_many(files, options, parallel, &mut |_, _, _| {}))
    }
    fn local(_: &Self::Server, fx: &Fixture, name: &str) -> PathBuf {
        fx.dir().join(name)
    }
    fn write_local(_: &Self::Server, path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
    }
    fn read_local(_: &Self::Server, path: &Path) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }
    fn pause(_: &Self::Server) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ----- the simulator -----

/// The seed used when `VSERV_SIM_SEED` is not set.
const DEFAULT_SEED: u64 = 0x7_1a45_f3e5;

fn seed() -> u64 {
    let seed = vserv_sim::env_seed()
        .expect("VSERV_SIM_SEED")
        .unwrap_or(DEFAULT_SEED);
    eprintln!("sim world seed: VSERV_SIM_SEED={seed}");
    seed
}

/// The sim's links: re-chunked at up to 16 KiB, delayed, now and then stalled.
fn sim_link() -> LinkConfig {
    LinkConfig::benign(16 * 1024)
}

struct Sim;

impl Rt for Sim {
    type Server = SimServer;
    type Client = SimClient;
    fn start(fx: &Fixture) -> Self::Server {
        let spec = ServerSpec {
            identity: fx.identity.clone(),
            service: fx.service(),
            max_connections: 16,
            config: Config::default(),
        };
        SimServer::start(seed(), spec, LinkSpec::symmetric(sim_link()))
    }
    fn connect(server: &Self::Server, fx: &Fixture, cut_up_after: Option<u64>) -> Self::Client {
        let link = match cut_up_after {
            Some(up) => LinkSpec {
                to_server: sim_link().cut_after(up),
                to_client: sim_link(),
            },
            None => LinkSpec::symmetric(sim_link()),
        };
        server.connect_over(&fx.options(), link).unwrap()
    }
    fn call(client: &mut Self::Client, command: &Command) -> Result<Reply, ClientError> {
        client.call(command)
    }
    fn put_many(
        client: &mut Self::Client,
        files: &[Upload],
        options: &TransferOptions,
        parallel: usize,
    ) -> Vec<FileResult> {
        client.put_many(files, options, parallel, &mut |_, _, _| {})
    }
    fn get_many(
        client: &mut Self::Client,
        files: &[Download],
        options: &TransferOptions,
        parallel: usize,
    ) -> Vec<FileResult> {
        client.get_many(files, options, parallel, &mut |_, _, _| {})
    }
    fn local(_: &Self::Server, _: &Fixture, name: &str) -> PathBuf {
        PathBuf::from("/home/alice").join(name)
    }
    fn write_local(server: &Self::Server, path: &Path, bytes: &[u8]) {
        server.client_files().insert(path, bytes);
    }
    fn read_local(server: &Self::Server, path: &Path) -> Option<Vec<u8>> {
        let files: &MemoryFiles = server.client_files();
        files.read(path)
    }
    fn pause(server: &Self::Server) {
        let mut world = server.world().borrow_mut();
        let limit = world.now() + Duration::from_secs(30);
        world.run(limit);
    }
}

// ----- the cases -----

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn options(resume: bool) -> TransferOptions {
    TransferOptions {
        resume,
        window: 16,
        overwrite: false,
    }
}

/// A server with the admin `root` and the user `alice`.
fn start_with_alice<R: Rt>(fx: &Fixture) -> R::Server {
    let server = R::start(fx);
    let mut root = R::connect(&server, fx, None);
    R::call(
        &mut root,
        &Command::Uini {
            user: "root".into(),
            password: secret("root-password"),
        },
    )
    .unwrap();
    R::call(&mut root, &login_cmd("root", "root-password")).unwrap();
    R::call(
        &mut root,
        &Command::Uadd {
            user: "alice".into(),
            password: secret(ALICE),
        },
    )
    .unwrap();
    server
}

fn alice<R: Rt>(server: &R::Server, fx: &Fixture, cut_up_after: Option<u64>) -> R::Client {
    let mut client = R::connect(server, fx, cut_up_after);
    R::call(&mut client, &login_cmd("alice", ALICE)).unwrap();
    client
}

fn put_one<R: Rt>(client: &mut R::Client, local: &Path, remote: &str, resume: bool) -> FileResult {
    let upload = Upload {
        local: local.to_owned(),
        remote: remote.to_owned(),
    };
    R::put_many(client, &[upload], &options(resume), 1)
        .pop()
        .unwrap()
}

fn get_one<R: Rt>(client: &mut R::Client, remote: &str, local: &Path) -> FileResult {
    let download = Download {
        remote: remote.to_owned(),
        local: local.to_owned(),
    };
    R::get_many(client, &[download], &options(false), 1)
        .pop()
        .unwrap()
}

/// Put then get of one file: the same bytes and SHA-256 come back.
fn put_then_get_one_file<R: Rt>(seed: u64) {
    let fx = Fixture::new(seed);
    let server = start_with_alice::<R>(&fx);
    let mut alice = alice::<R>(&server, &fx, None);
    let data = content(10 * MAX_FPUT_DATA + 77, 1);
    let (src, dst) = (
        R::local(&server, &fx, "one"),
        R::local(&server, &fx, "one.out"),
    );
    R::write_local(&server, &src, &data);
    let put = put_one::<R>(&mut alice, &src, "one.bin", false).unwrap();
    assert_eq!((put.size, put.resumed_from), (data.len() as u64, 0));
    let got = get_one::<R>(&mut alice, "one.bin", &dst).unwrap();
    assert_eq!(got.sha256, put.sha256);
    assert_eq!(R::read_local(&server, &dst).unwrap(), data);
}

/// `put_many` then `get_many` of three files, two open at once.
fn put_and_get_many_files<R: Rt>(seed: u64) {
    let fx = Fixture::new(seed);
    let server = start_with_alice::<R>(&fx);
    let mut alice = alice::<R>(&server, &fx, None);
    R::call(
        &mut alice,
        &Command::Mkdir {
            path: "many".into(),
        },
    )
    .unwrap();
    let sizes = [1, 3 * MAX_FPUT_DATA + 17, 2 * MAX_FPUT_DATA];
    let uploads: Vec<Upload> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let local = R::local(&server, &fx, &format!("src{i}"));
            R::write_local(&server, &local, &content(len, i as u8));
            Upload {
                local,
                remote: format!("many/f{i}"),
            }
        })
        .collect();
    let results = R::put_many(&mut alice, &uploads, &options(false), 2);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.as_ref().unwrap().size, sizes[i] as u64, "file {i}");
    }
    let downloads: Vec<Download> = (0..sizes.len())
        .map(|i| Download {
            remote: format!("many/f{i}"),
            local: R::local(&server, &fx, &format!("dst{i}")),
        })
        .collect();
    let results = R::get_many(&mut alice, &downloads, &options(false), 2);
    for (i, result) in results.iter().enumerate() {
        assert!(result.is_ok(), "file {i}: {result:?}");
        assert_eq!(
            R::read_local(&server, &downloads[i].local).unwrap(),
            content(sizes[i], i as u8),
            "file {i}"
        );
    }
}

/// An upload cut two thirds of the way in (the sim's cut link also freezes what was in
/// flight, so it must come after the first window's writes) resumes on a new connection from where the server
/// stopped; the file reads back whole.
fn an_interrupted_upload_resumes<R: Rt>(seed: u64) {
    let fx = Fixture::new(seed);
    let server = start_with_alice::<R>(&fx);
    let data = content(30 * MAX_FPUT_DATA + 5, 7);
    let (src, dst) = (
        R::local(&server, &fx, "big"),
        R::local(&server, &fx, "big.out"),
    );
    R::write_local(&server, &src, &data);
    {
        let mut cut = alice::<R>(&server, &fx, Some(data.len() as u64 * 2 / 3));
        let err = put_one::<R>(&mut cut, &src, "big.bin", false).unwrap_err();
        assert!(
            matches!(
                err,
                TransferFailure::Client(_) | TransferFailure::Interrupted { .. }
            ),
            "the upload did not fail on the connection: {err}"
        );
    }
    let mut alice = alice::<R>(&server, &fx, None);
    // The server parks the upload once it noticed the connection ended.
    let mut resumed = None;
    for _ in 0..100 {
        match put_one::<R>(&mut alice, &src, "big.bin", true) {
            Ok(out) => {
                resumed = Some(out.resumed_from);
                break;
            }
            Err(TransferFailure::Client(ClientError::Server(e)))
                if e.code == ErrorCode::Conflict =>
            {
                R::pause(&server);
            }
            Err(e) => panic!("resume failed: {e}"),
        }
    }
    let resumed = resumed.expect("the upload stayed locked");
    assert!(
        resumed > 0 && resumed < data.len() as u64,
        "resumed from {resumed}"
    );
    get_one::<R>(&mut alice, "big.bin", &dst).unwrap();
    assert_eq!(R::read_local(&server, &dst).unwrap(), data);
}

macro_rules! parity {
    ($($runtime:ident: $module:ident, $seed:expr;)*) => {$(
        mod $module {
            #[test]
            fn put_then_get_one_file() {
                super::put_then_get_one_file::<super::$runtime>($seed);
            }
            #[test]
            fn put_and_get_many_files() {
                super::put_and_get_many_files::<super::$runtime>($seed + 1);
            }
            #[test]
            fn an_interrupted_upload_resumes() {
                super::an_interrupted_upload_resumes::<super::$runtime>($seed + 2);
            }
        }
    )*};
}

parity! {
    Blocking: blocking, 610;
    Smol: smol, 620;
    Sim: sim, 630;
}
