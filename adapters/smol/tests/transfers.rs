//! The smol client's file transfers and pipelined requests against a smol server over
//! loopback: put and get of one and of many files, an interrupted upload and an
//! interrupted download each resumed, and pipelined `rput`s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vserv_core::commands::{Command, Credential, Reply, SecretBytes};
use vserv_core::transfer::MAX_FPUT_DATA;
use vserv_core::{Config, ServerIdentity};
use vserv_service::client::ClientOptions;
use vserv_smol::transfer::{Download, TransferFailure, TransferOptions, Upload, part_path};
use vserv_smol::{Client, Server, ServerHandle, ServerOptions, block_on};

/// A smol server keeping homes on disk, with the admin `root` and the user `alice`.
struct Env {
    dir: tempfile::TempDir,
    server: ServerHandle,
}

impl Env {
    fn start(seed: u64) -> Env {
        use rand::SeedableRng;
        let dir = tempfile::tempdir().unwrap();
        let identity = Arc::new(ServerIdentity::generate(
            &mut rand::rngs::StdRng::seed_from_u64(seed),
        ));
        let rng = Box::new(rand::rngs::StdRng::seed_from_u64(seed + 1));
        let homes = dir.path().join("homes");
        std::fs::create_dir(&homes).unwrap();
        let tree = vserv_service::files::DiskTree::open(
            &homes,
            vserv_service::files::FilesConfig::default(),
        )
        .unwrap();
        let node = vserv_service::Node::builder(
            identity.clone(),
            vserv_service::NodeSettings::insecure_fast("smol-transfers"),
        )
        .rng(rng)
        .files(Arc::new(tree))
        .build()
        .unwrap();
        let service = node.service();
        let options = ServerOptions {
            max_connections: 16,
            config: Config::default(),
        };
        let server = Server::bind("127.0.0.1:0", identity, service, options)
            .unwrap()
            .spawn()
            .unwrap();
        let env = Env { dir, server };
        block_on(async {
            let mut root = env.connect(&env.address()).await;
            root.call(&Command::Uini {
                user: "root".into(),
                password: secret("root-password"),
            })
            .await
            .unwrap();
            root.call(&login("root", "root-password")).await.unwrap();
            root.call(&Command::Uadd {
                user: "alice".into(),
                password: secret("alice-password"),
            })
            .await
            .unwrap();
            root.quit().await.unwrap();
        });
        env
    }

    fn address(&self) -> String {
        self.server.local_addr().to_string()
    }

    fn local(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    async fn connect(&self, addr: &str) -> Client {
        let mut options = ClientOptions::new(self.dir.path().join("known_servers"));
        options.response_timeout = Some(Duration::from_secs(20));
        Client::connect(addr, &options).await.unwrap()
    }

    /// A client logged in as alice through `addr` (the server, or a proxy in front of it).
    async fn alice(&self, addr: &str) -> Client {
        let mut client = self.connect(addr).await;
        client
            .call(&login("alice", "alice-password"))
            .await
            .unwrap();
        client
    }
}

fn secret(s: &str) -> SecretBytes {
    SecretBytes::new(s.as_bytes().to_vec())
}

fn login(user: &str, password: &str) -> Command {
    Command::Login {
        user: user.into(),
        credential: Credential::Password(secret(password)),
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn options(resume: bool, window: usize) -> TransferOptions {
    TransferOptions {
        resume,
        window,
        overwrite: false,
    }
}

/// A proxy in front of `server` for one connection that forwards both ways until
/// `up` bytes went from the client to the server (or `down` the other way), then cuts
/// the connection. Returns its address.
fn cutting_proxy(server: String, up: Option<usize>, down: Option<usize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let upstream = TcpStream::connect(server).unwrap();
        let forward = |mut from: TcpStream, mut to: TcpStream, limit: Option<usize>| {
            let mut sent = 0;
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let n = limit.map_or(n, |l| n.min(l - sent));
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                sent += n;
                if limit == Some(sent) {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        };
        let (c, u) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let upward = std::thread::spawn(move || forward(c, u, up));
        forward(upstream, client, down);
        let _ = upward.join();
    });
    addr
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn put_and_get_one_and_many_files() {
    let env = Env::start(1);
    block_on(async {
        let mut alice = env.alice(&env.address()).await;
        // One file, with progress reaching the whole size.
        let data = content(40 * MAX_FPUT_DATA + 77, 1);
        std::fs::write(env.local("one"), &data).unwrap();
        let mut last = (0, 0);
        let put = alice
            .put_with(
                &env.local("one"),
                "one.bin",
                &options(false, 16),
                &mut |d, t| {
                    assert!(d >= last.0 && d <= t, "progress went back");
                    last = (d, t);
                },
            )
            .await
            .unwrap();
        assert_eq!(last, (data.len() as u64, data.len() as u64));
        assert_eq!(put.size, data.len() as u64);
        let got = alice
            .get_with(
                "one.bin",
                &env.local("one.out"),
                &options(false, 16),
                &mut |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(got.sha256, put.sha256);
        assert_eq!(read(&env.local("one.out")), data);
        assert!(!part_path(&env.local("one.out")).exists());

        // Many files, three open at once sharing a window of 12.
        let sizes = [0, 1, MAX_FPUT_DATA, 3 * MAX_FPUT_DATA + 17, 250_000, 9_999];
        let uploads: Vec<Upload> = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let local = env.local(&format!("src{i}"));
                std::fs::write(&local, content(len, i as u8)).unwrap();
                Upload {
                    local,
                    remote: format!("many/f{i}"),
                }
            })
            .collect();
        alice
            .call(&Command::Mkdir {
                path: "many".into(),
            })
            .await
            .unwrap();
        let mut done = vec![(0, 0); sizes.len()];
        let results = alice
            .put_many(&uploads, &options(false, 12), 3, &mut |i, d, t| {
                done[i] = (d, t)
            })
            .await;
        for (i, result) in results.iter().enumerate() {
            let out = result.as_ref().unwrap();
            assert_eq!(out.size, sizes[i] as u64, "file {i}");
        }
        let downloads: Vec<Download> = (0..sizes.len())
            .map(|i| Download {
                remote: format!("many/f{i}"),
                local: env.local(&format!("dst{i}")),
            })
            .collect();
        let results = alice
            .get_many(&downloads, &options(false, 12), 3, &mut |_, _, _| {})
            .await;
        for (i, result) in results.iter().enumerate() {
            assert!(result.is_ok(), "file {i}: {result:?}");
            assert_eq!(
                read(&downloads[i].local),
                content(sizes[i], i as u8),
                "file {i}"
            );
        }
        // A download never replaces an existing file unless allowed.
        let err = alice
            .get_with(
                "one.bin",
                &env.local("one.out"),
                &options(false, 8),
                &mut |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, TransferFailure::TargetExists { .. }), "{err}");
        alice.quit().await.unwrap();
    });
}

#[test]
fn an_interrupted_upload_resumes_where_the_server_stopped() {
    let env = Env::start(2);
    let data = content(120 * MAX_FPUT_DATA + 5, 7);
    std::fs::write(env.local("big"), &data).unwrap();
    block_on(async {
        // Cut the connection after about a third of the file went up.
        let proxy = cutting_proxy(env.address(), Some(data.len() / 3), None);
        let mut cut = env.alice(&proxy).await;
        let err = cut
            .put_with(
                &env.local("big"),
                "big.bin",
                &options(false, 32),
                &mut |_, _| {},
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransferFailure::Client(_)),
            "the upload did not fail on the connection: {err}"
        );
        drop(cut);
        let mut alice = env.alice(&env.address()).await;
        // The server parks the upload when the connection ends; wait for that.
        let mut resumed = None;
        for _ in 0..50 {
            match alice
                .put_with(
                    &env.local("big"),
                    "big.bin",
                    &options(true, 32),
                    &mut |_, _| {},
                )
                .await
            {
                Ok(out) => {
                    resumed = Some(out.resumed_from);
                    break;
                }
                Err(TransferFailure::Client(vserv_service::client::ClientError::Server(e)))
                    if e.code == vserv_core::ErrorCode::Conflict =>
                {
                    async_io::Timer::after(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("resume failed: {e}"),
            }
        }
        let resumed = resumed.expect("the upload stayed locked");
        assert!(
            resumed > 0 && resumed < data.len() as u64,
            "resumed from {resumed}"
        );
        alice
            .get_with(
                "big.bin",
                &env.local("big.out"),
                &options(false, 32),
                &mut |_, _| {},
            )
            .await
            .unwrap();
        assert_eq!(read(&env.local("big.out")), data);
        alice.quit().await.unwrap();
    });
}

#[test]
fn an_interrupted_download_resumes_from_its_partial_copy() {
    let env = Env::start(3);
    let data = content(120 * MAX_FPUT_DATA + 9, 9);
    std::fs::write(env.local("big"), &data).unwrap();
    block_on(async {
        let mut alice = env.alice(&env.address()).await;
        alice
            .put_with(
                &env.local("big"),
                "big.bin",
                &options(false, 32),
                &mut |_, _| {},
            )
            .await
            .unwrap();
        // Cut the connection after about a third of the file came down.
        let proxy = cutting_proxy(env.address(), None, Some(data.len() / 3));
        let mut cut = env.alice(&proxy).await;
        let dst = env.local("big.out");
        let err = cut
            .get_with("big.bin", &dst, &options(false, 32), &mut |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(err, TransferFailure::Client(_)), "{err}");
        drop(cut);
        assert!(!dst.exists(), "an unverified copy became visible");
        let partial = std::fs::metadata(part_path(&dst)).unwrap().len();
        assert!(partial > 0 && partial < data.len() as u64, "{partial}");
        let out = alice
            .get_with("big.bin", &dst, &options(true, 32), &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(out.resumed_from, partial);
        assert_eq!(read(&dst), data);
        assert!(!part_path(&dst).exists());
        alice.quit().await.unwrap();
    });
}

#[test]
fn pipelined_rputs_are_answered_in_order() {
    let env = Env::start(4);
    block_on(async {
        let mut alice = env.alice(&env.address()).await;
        let commands: Vec<Command> = (0..60)
            .map(|i| Command::Rput {
                kind: "score".into(),
                record_id: format!("rec-{i}").into_bytes(),
                body: format!("n={i}\n").into_bytes(),
            })
            .collect();
        let replies = alice.call_pipelined(&commands, 16).await.unwrap();
        assert_eq!(replies.len(), commands.len());
        for (i, reply) in replies.into_iter().enumerate() {
            match reply {
                Ok(Reply::Appended { seq, .. }) => assert_eq!(seq, i as u64 + 1),
                other => panic!("rput {i} gave {other:?}"),
            }
        }
        alice.quit().await.unwrap();
    });
}
