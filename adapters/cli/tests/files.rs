//! End-to-end tests of the file commands: the real `vserv` binary against a server it
//! starts itself on a loopback port: mkdir/put/ls/stat/get round trips, mv/rm, put/get
//! resumed after the client was killed mid-transfer, and several files put and got on one
//! connection.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use common::{BIN, Run, Server};

const PASSWORD: &str = "alice-password-1";

/// A scratch directory with a server holding user alice.
struct Env {
    /// Declared first: the server is stopped before its directory is removed.
    server: Server,
    scratch: common::Env,
}

impl Env {
    fn new() -> Env {
        let scratch = common::Env::new();
        scratch.add_user("alice", true, PASSWORD);
        let server = Server::start(&scratch.data());
        Env { server, scratch }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    /// `vserv ARGS` as alice, with the connection options, run in the scratch directory.
    fn command(&self, args: &[&str]) -> Command {
        self.command_as("alice", PASSWORD, args)
    }

    /// `vserv ARGS` as `user` (password `password`), like [`Env::command`].
    fn command_as(&self, user: &str, password: &str, args: &[&str]) -> Command {
        let mut all = self.scratch.client_args(&self.server, args);
        all.extend(["--user".to_owned(), user.to_owned()]);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut cmd = self.scratch.command(&all, &[("VSERV_PASSWORD", password)]);
        cmd.current_dir(self.scratch.dir());
        cmd
    }

    fn vserv_as(&self, user: &str, password: &str, args: &[&str]) -> Run {
        Run::from_output(
            self.command_as(user, password, args)
                .output()
                .expect("run vserv"),
        )
    }

    fn vserv(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args).output().expect("run vserv"))
    }

    /// Starts `vserv ARGS` and kills it once `progressed` says enough happened (panics if it
    /// finished first, so a test that means to interrupt it cannot pass vacuously).
    fn interrupt(&self, args: &[&str], progressed: impl Fn() -> bool) {
        let mut child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vserv");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !progressed() {
            if let Some(status) = child.try_wait().expect("poll the client") {
                panic!("the client ended ({status}) before it could be interrupted");
            }
            assert!(Instant::now() < deadline, "no progress within 60 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("kill the client");
        let status = child.wait().expect("wait for the client");
        assert!(!status.success(), "the client finished before the kill");
    }
}

/// `len` bytes that differ at every offset class (no two 4 KiB blocks alike).
fn write_content(path: &Path, len: usize, seed: u64) -> [u8; 32] {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut hasher = Sha256::new();
    let mut state = seed | 1;
    let mut left = len;
    let mut block = [0u8; 4096];
    while left > 0 {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len());
        file.write_all(&block[..n]).expect("write");
        hasher.update(&block[..n]);
        left -= n;
    }
    file.flush().expect("flush");
    hasher.finalize().into()
}

fn sha256_of(path: &Path) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().into()
}

/// Total bytes allocated to the regular files under `dir`.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            // Allocated bytes, not lengths: an upload's partial file is sparse at its full
            // size from fopen on, and only written data allocates blocks.
            Ok(t) if t.is_file() => e
                .metadata()
                .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512),
            _ => 0,
        })
        .sum()
}

fn listing(run: &Run) -> Vec<(String, u64, String)> {
    run.text()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let kind = parts.next().unwrap_or_default().to_owned();
            let size = parts.next().and_then(|s| s.parse().ok()).expect("size");
            let _mtime = parts.next();
            let name = parts.next().expect("name").to_owned();
            (kind, size, name)
        })
        .map(|(k, s, n)| (n, s, k))
        .collect()
}

#[test]
fn mkdir_put_ls_stat_get_mv_rm_round_trip() {
    let env = Env::new();
    let len = 3 * 16372 + 5000;
    let src = env.path("report.bin");
    let sha = write_content(&src, len, 7);
    let hex_sha = hex::encode(sha);

    env.vserv(&["mkdir", "docs"]).ok();
    let put = env.vserv(&["put", "report.bin", "docs/"]).ok();
    assert!(put.text().contains(&hex_sha), "{}", put.text());
    env.vserv(&["put", "report.bin", "docs/empty.txt"]).ok();
    std::fs::write(env.path("empty"), b"").expect("write");
    env.vserv(&["put", "empty", "docs/empty.txt"]).ok();

    let ls = env.vserv(&["ls", "docs"]).ok();
    assert_eq!(
        listing(&ls),
        vec![
            ("empty.txt".to_owned(), 0, "f".to_owned()),
            ("report.bin".to_owned(), len as u64, "f".to_owned()),
        ]
    );
    let root = env.vserv(&["ls"]).ok();
    assert_eq!(listing(&root), vec![("docs".to_owned(), 0, "d".to_owned())]);

    let stat = env.vserv(&["stat", "docs/report.bin"]).ok();
    assert!(stat.text().contains("kind f"), "{}", stat.text());
    assert!(
        stat.text().contains(&format!("size {len}")),
        "{}",
        stat.text()
    );
    assert!(
        stat.text().contains(&format!("sha256 {hex_sha}")),
        "{}",
        stat.text()
    );

    let get = env.vserv(&["get", "docs/report.bin", "copy.bin"]).ok();
    assert!(get.text().contains(&hex_sha), "{}", get.text());
    assert_eq!(sha256_of(&env.path("copy.bin")), sha);
    env.vserv(&["get", "docs/empty.txt"]).ok();
    assert_eq!(std::fs::read(env.path("empty.txt")).expect("read"), b"");

    env.vserv(&["mv", "docs/report.bin", "docs/renamed.bin"])
        .ok();
    let ls = env.vserv(&["ls", "docs"]).ok();
    let names: Vec<String> = listing(&ls).into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["empty.txt", "renamed.bin"]);
    let gone = env.vserv(&["get", "docs/report.bin", "x.bin"]).fails();
    assert!(gone.starts_with("vserv: "), "{gone}");
    assert!(!env.path("x.bin").exists());

    let not_empty = env.vserv(&["rm", "--dir", "docs"]).fails();
    assert!(not_empty.starts_with("vserv: "), "{not_empty}");
    env.vserv(&["rm", "docs/renamed.bin"]).ok();
    env.vserv(&["rm", "docs/empty.txt"]).ok();
    env.vserv(&["rm", "--dir", "docs"]).ok();
    assert_eq!(env.vserv(&["ls"]).ok().text(), "");
}

#[test]
fn file_commands_need_a_login() {
    let env = Env::new();
    let known = env.path("known_servers");
    let out = Command::new(BIN)
        .args(["ls", "--server", &env.server.addr, "--known-servers"])
        .arg(known)
        .args(["--server-key", &env.server.fingerprint])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run vserv");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));
}

#[test]
fn put_resumes_after_the_client_was_killed() {
    let env = Env::new();
    let len = 160 << 20;
    let src = env.path("big.bin");
    let sha = write_content(&src, len, 11);
    let data = env.path("data");
    let before = bytes_under(&data);
    env.interrupt(&["put", "big.bin", "big.bin"], || {
        bytes_under(&data) >= before + (24 << 20)
    });
    // The server keeps the partial upload once the connection is gone.
    std::thread::sleep(Duration::from_millis(300));
    let run = env.vserv(&["put", "big.bin", "big.bin", "--resume"]).ok();
    let resumed: u64 = run
        .text()
        .split("(resumed at ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the upload did not resume: {}", run.text()));
    assert!(resumed > 0 && resumed < len as u64, "{resumed}");
    assert!(run.text().contains(&hex::encode(sha)), "{}", run.text());
    env.vserv(&["get", "big.bin", "back.bin"]).ok();
    assert_eq!(sha256_of(&env.path("back.bin")), sha);
}

#[test]
fn get_resumes_from_the_partial_copy() {
    let env = Env::new();
    let len = 160 << 20;
    let src = env.path("big.bin");
    let sha = write_content(&src, len, 13);
    env.vserv(&["put", "big.bin", "big.bin"]).ok();
    let part = env.path("copy.bin.vserv-part");
    env.interrupt(&["get", "big.bin", "copy.bin"], || {
        std::fs::metadata(&part).map_or(0, |m| m.len()) >= 24 << 20
    });
    assert!(
        !env.path("copy.bin").exists(),
        "an unverified copy is visible"
    );
    let partial = std::fs::metadata(&part).expect("the partial copy").len();
    let run = env.vserv(&["get", "big.bin", "copy.bin", "--resume"]).ok();
    assert!(
        run.text().contains(&format!("(resumed at {partial})")),
        "{}",
        run.text()
    );
    assert_eq!(sha256_of(&env.path("copy.bin")), sha);
    assert!(!part.exists());
}

#[test]
fn send_delivers_into_the_recipients_inbox_folder() {
    const BOB_PW: &str = "bob-password-1";
    let env = Env::new();
    let mut add = env.command(&["user", "add", "bob"]);
    add.env("VSERV_NEW_PASSWORD", BOB_PW);
    Run::from_output(add.output().expect("run vserv")).ok();
    // Bob's inbox folder accepts alice.
    std::fs::write(env.path("folder.toml"), "allow = [\"alice\"]\n").expect("write");
    env.vserv_as("bob", BOB_PW, &["mkdir", "inbox"]).ok();
    env.vserv_as("bob", BOB_PW, &["mkdir", "inbox/default"])
        .ok();
    env.vserv_as(
        "bob",
        BOB_PW,
        &["put", "folder.toml", "inbox/default/folder.toml"],
    )
    .ok();

    let src = env.path("report.bin");
    let sha = write_content(&src, 40_000, 3);
    env.vserv(&["send", "bob", "report.bin", "--note", "for review"])
        .ok();
    // A folder without a configuration refuses.
    env.vserv(&["send", "bob", "report.bin", "--folder", "other"])
        .fails();

    let inbox = env.vserv_as("bob", BOB_PW, &["inbox"]).ok();
    let text = inbox.text();
    assert!(text.contains("report.bin"), "{text}");
    assert!(text.contains("alice"), "{text}");
    assert!(text.contains("received"), "{text}");
    assert!(text.contains("for review"), "{text}");
    env.vserv_as(
        "bob",
        BOB_PW,
        &["get", "inbox/default/report.bin", "delivered.bin"],
    )
    .ok();
    assert_eq!(sha256_of(&env.path("delivered.bin")), sha);
    // The sender's staged copy is gone.
    let outbox = env.vserv(&["ls", "outbox"]).ok();
    assert!(listing(&outbox).is_empty(), "{}", outbox.text());
}

#[test]
fn the_transfer_bench_reports_every_run_and_its_median() {
    let scratch = common::Env::new();
    let out = Command::new(BIN)
        .args([
            "bench", "transfer", "--size", "3MiB", "--runs", "3", "--json", "--dir",
        ])
        .arg(scratch.dir())
        .env_remove("RUST_LOG")
        .output()
        .expect("run the bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["runs"], 3);
    assert_eq!(report["size_bytes"], 3 << 20);
    for direction in ["upload", "download"] {
        let d = &report[direction];
        let runs: Vec<f64> = d["runs_mb_per_s"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| r.as_f64().expect("a rate"))
            .collect();
        assert_eq!(runs.len(), 3, "{direction}");
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(d["mb_per_s"].as_f64(), Some(sorted[1]), "{direction}");
        assert_eq!(d["min_mb_per_s"].as_f64(), Some(sorted[0]), "{direction}");
        assert_eq!(d["max_mb_per_s"].as_f64(), Some(sorted[2]), "{direction}");
        assert!(sorted[0] > 0.0, "{direction}");
    }
    // The bench cleaned up after itself.
    let left: Vec<_> = std::fs::read_dir(scratch.dir())
        .expect("scratch")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

// ----- several files on one connection: `put LOCAL... DIR/`, `get REMOTE... DIR`

/// The names `vserv ls DIR` lists.
fn names_in(env: &Env, dir: &str) -> Vec<String> {
    let run = env.vserv(&["ls", dir]).ok();
    listing(&run).into_iter().map(|(name, ..)| name).collect()
}

#[test]
fn several_files_go_up_and_come_back_identical() {
    let env = Env::new();
    // Empty, one partial chunk, and a few MiB that are not a multiple of the chunk size.
    let files = [("a.bin", 3 << 20 | 123), ("b.bin", 0), ("c.bin", 5000)];
    let shas: Vec<[u8; 32]> = files
        .iter()
        .enumerate()
        .map(|(i, (name, len))| write_content(&env.path(name), *len, i as u64 + 7))
        .collect();
    env.vserv(&["mkdir", "dir"]).ok();
    let put = env
        .vserv(&["put", "a.bin", "b.bin", "c.bin", "dir/", "--parallel", "2"])
        .ok();
    let text = put.text();
    for ((name, len), sha) in files.iter().zip(&shas) {
        let line = format!(
            "put {name} -> dir/{name}: {len} bytes sha256 {}",
            hex::encode(sha)
        );
        assert!(text.contains(&line), "{line} missing from {text}");
    }
    assert_eq!(names_in(&env, "dir"), ["a.bin", "b.bin", "c.bin"]);

    std::fs::create_dir(env.path("back")).expect("mkdir");
    let get = env
        .vserv(&["get", "dir/a.bin", "dir/b.bin", "dir/c.bin", "back"])
        .ok();
    for ((name, _), sha) in files.iter().zip(&shas) {
        let copy = env.path("back").join(name);
        assert_eq!(sha256_of(&copy), *sha, "{name}");
        assert!(
            get.text().contains(&format!("get dir/{name} -> ")),
            "{}",
            get.text()
        );
    }
    let left: Vec<_> = std::fs::read_dir(env.path("back"))
        .expect("read back")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".vserv-part"))
        .collect();
    assert!(left.is_empty(), "partial copies left: {left:?}");
}

#[test]
fn a_bad_last_argument_is_a_clear_error() {
    let env = Env::new();
    write_content(&env.path("a"), 10, 1);
    write_content(&env.path("b"), 10, 2);
    let err = env.vserv(&["put", "a", "b", "dir"]).fails();
    assert!(err.contains("must end in '/'"), "{err}");
    let err = env.vserv(&["get", "x", "y", "nodir"]).fails();
    assert!(err.contains("existing directory"), "{err}");
    assert!(err.contains("nodir"), "{err}");
    // A file is not a directory either.
    let err = env.vserv(&["get", "x", "y", "a"]).fails();
    assert!(err.contains("existing directory"), "{err}");
    let err = env.vserv(&["put", "a", "sub/a", "dir/"]).fails();
    assert!(err.contains("both be uploaded to dir/a"), "{err}");
    // Nothing was sent.
    assert!(names_in(&env, "").is_empty());
}

#[test]
fn a_failing_file_is_named_and_the_others_still_transfer() {
    let env = Env::new();
    let sha_a = write_content(&env.path("a"), 70_000, 3);
    let sha_c = write_content(&env.path("c"), 40_000, 4);
    env.vserv(&["mkdir", "dir"]).ok();
    let err = env.vserv(&["put", "a", "missing", "c", "dir/"]).fails();
    assert!(err.contains("1 of 3 uploads failed"), "{err}");
    assert!(err.contains("missing -> dir/missing"), "{err}");
    assert!(!err.contains("a -> dir/a"), "{err}");
    assert_eq!(names_in(&env, "dir"), ["a", "c"]);

    std::fs::create_dir(env.path("out")).expect("mkdir");
    let err = env
        .vserv(&["get", "dir/a", "dir/nope", "dir/c", "dir/gone", "out"])
        .fails();
    assert!(err.contains("2 of 4 downloads failed"), "{err}");
    assert!(err.contains("dir/nope -> "), "{err}");
    assert!(err.contains("dir/gone -> "), "{err}");
    assert_eq!(sha256_of(&env.path("out/a")), sha_a);
    assert_eq!(sha256_of(&env.path("out/c")), sha_c);
    assert!(!env.path("out/nope").exists());
}

#[test]
#[ignore = "moves 5 GiB each way (minutes, 10 GiB of disk); run with --ignored"]
fn a_5_gib_sparse_file_round_trips_with_the_same_sha256() {
    use std::io::{Seek, SeekFrom, Write};
    let env = Env::new();
    let src = env.path("sparse.bin");
    let size: u64 = 5 << 30;
    {
        let mut file = std::fs::File::create(&src).expect("create");
        file.set_len(size).expect("set_len");
        // A few bytes that are not zero, across the 4 GiB boundary, so a misplaced chunk
        // changes the hash.
        for at in [0, (4 << 30) - 1, 4 << 30, (4 << 30) + 16_349, size - 1] {
            file.seek(SeekFrom::Start(at)).expect("seek");
            file.write_all(&[0xA5]).expect("write");
        }
    }
    let sha = sha256_of(&src);
    env.vserv(&["put", "sparse.bin"]).ok();
    let stat = env.vserv(&["stat", "sparse.bin"]).ok();
    assert!(
        stat.text()
            .contains(&format!("sha256 {}", hex::encode(sha))),
        "{}",
        stat.text()
    );
    env.vserv(&["get", "sparse.bin", "back.bin"]).ok();
    let back = env.path("back.bin");
    assert_eq!(std::fs::metadata(&back).expect("back").len(), size);
    assert_eq!(sha256_of(&back), sha);
}

#[test]
fn get_never_destroys_what_is_at_the_local_path() {
    let env = Env::new();
    let src = env.path("report.bin");
    let sha = write_content(&src, 40_000, 11);
    env.vserv(&["put", "report.bin"]).ok();
    env.vserv(&["put", "report.bin", "other.bin"]).ok();

    // An existing file is refused (nothing fetched, nothing changed), then --force replaces it.
    std::fs::write(env.path("mine.bin"), b"my own work").expect("write");
    let err = env.vserv(&["get", "report.bin", "mine.bin"]).fails();
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(env.path("mine.bin")).expect("read"),
        b"my own work"
    );
    assert!(!env.path("mine.bin.vserv-part").exists());
    env.vserv(&["get", "report.bin", "mine.bin", "--force"])
        .ok();
    assert_eq!(sha256_of(&env.path("mine.bin")), sha);

    // Into a directory: the existing file is named and kept, the other file arrives.
    std::fs::create_dir(env.path("in")).expect("mkdir");
    std::fs::write(env.path("in/report.bin"), b"keep").expect("write");
    let err = env.vserv(&["get", "report.bin", "other.bin", "in"]).fails();
    assert!(err.contains("1 of 2 downloads failed"), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read(env.path("in/report.bin")).expect("read"),
        b"keep"
    );
    assert_eq!(sha256_of(&env.path("in/other.bin")), sha);

    // A symlink and a FIFO are never replaced, even with --force.
    std::os::unix::fs::symlink("mine.bin", env.path("link.bin")).expect("symlink");
    let status = Command::new("mkfifo")
        .arg(env.path("fifo"))
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    for (name, kind) in [("link.bin", "symbolic link"), ("fifo", "FIFO")] {
        for force in [false, true] {
            let mut args = vec!["get", "report.bin", name];
            if force {
                args.push("--force");
            }
            let err = env.vserv(&args).fails();
            assert!(
                err.contains(&format!("is a {kind}, not a regular file")),
                "{err}"
            );
        }
    }
    let link = std::fs::symlink_metadata(env.path("link.bin")).expect("stat link");
    assert!(link.file_type().is_symlink());
    let fifo = std::fs::symlink_metadata(env.path("fifo")).expect("stat fifo");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
}

/// A loopback proxy in front of a server that flips one bit of every connection's
/// server-to-client stream at byte `at` (a record's ciphertext once past the handshake),
/// or, with `pace`, passes that stream on at most `pace.0` bytes per `pace.1`; stopped when
/// dropped.
struct Tamper {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Tamper {
    fn start(server: &str, at: Option<usize>, pace: Option<(usize, Duration)>) -> Tamper {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let server = server.to_owned();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let (Ok(client), Ok(upstream)) = (client, TcpStream::connect(&server)) else {
                    continue;
                };
                let (mut c_in, mut u_out) = (
                    client.try_clone().expect("clone"),
                    upstream.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut u_out);
                    let _ = u_out.shutdown(std::net::Shutdown::Write);
                });
                let (mut u_in, mut c_out) = (upstream, client);
                std::thread::spawn(move || {
                    let mut seen = 0usize;
                    let mut buf = vec![0u8; pace.map_or(64 * 1024, |(n, _)| n)];
                    loop {
                        let n = match std::io::Read::read(&mut u_in, &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if let Some(at) = at
                            && (seen..seen + n).contains(&at)
                        {
                            buf[at - seen] ^= 0x01;
                        }
                        if let Some((_, every)) = pace {
                            std::thread::sleep(every);
                        }
                        seen += n;
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Tamper {
            addr,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for Tamper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// `vserv get big.bin copy.bin` as alice through the proxy at `proxy` (pinning the real
/// server's key), with `extra` options, run in the scratch directory.
fn get_through(env: &Env, proxy: &str, extra: &[&str]) -> Run {
    let known = env.path("known_servers");
    let mut args = vec![
        "get",
        "big.bin",
        "copy.bin",
        "--server",
        proxy,
        "--known-servers",
        known.to_str().expect("utf-8 path"),
        "--server-key",
        &env.server.fingerprint,
        "--user",
        "alice",
    ];
    args.extend_from_slice(extra);
    let mut cmd = env.scratch.command(&args, &[("VSERV_PASSWORD", PASSWORD)]);
    cmd.current_dir(env.scratch.dir());
    Run::from_output(cmd.output().expect("run vserv"))
}

#[test]
fn a_tampered_server_record_is_reported_as_such() {
    let env = Env::new();
    write_content(&env.path("big.bin"), 4 << 20, 12);
    env.vserv(&["put", "big.bin"]).ok();
    let tamper = Tamper::start(&env.server.addr, Some(1 << 20), None);
    let err = get_through(&env, &tamper.addr, &[]).fails();
    assert!(err.contains("record failed authentication"), "{err}");
    assert!(!env.path("copy.bin").exists());
    drop(tamper);
}

#[test]
fn a_slow_transfer_that_keeps_moving_does_not_time_out() {
    let env = Env::new();
    let sha = write_content(&env.path("big.bin"), 20 * 1024, 13);
    env.vserv(&["put", "big.bin"]).ok();
    // 768 bytes every 200 ms: a 16 KiB chunk's reply alone takes over 4 s, more than
    // --timeout 3 (which leaves the login's argon2 time on a loaded machine), but bytes
    // never stop for long.
    let slow = Tamper::start(
        &env.server.addr,
        None,
        Some((768, Duration::from_millis(200))),
    );
    get_through(&env, &slow.addr, &["--timeout", "3"]).ok();
    assert_eq!(sha256_of(&env.path("copy.bin")), sha);
    drop(slow);
}

/// Every regular file under `dir` as (relative path, sha256), sorted.
fn tree_of(dir: &Path) -> Vec<(String, [u8; 32])> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, [u8; 32])>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                walk(base, &path, out);
            } else if meta.is_file() {
                let rel = path.strip_prefix(base).expect("under base");
                out.push((rel.display().to_string(), sha256_of(&path)));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[cfg(unix)]
#[test]
fn put_r_and_get_r_copy_a_tree_skipping_symlinks_out_and_naming_refused_files() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
    std::fs::create_dir_all(src.join("empty")).expect("mkdir");
    write_content(&src.join("a.txt"), 1000, 1);
    write_content(&src.join("sub/b.bin"), 200_000, 2);
    write_content(&src.join("sub/deeper/c.txt"), 10, 3);
    std::os::unix::fs::symlink("a.txt", src.join("link_in")).expect("symlink");
    std::os::unix::fs::symlink("/etc/hostname", src.join("link_out")).expect("symlink");
    // A name the server refuses (its hidden prefix): reported, the rest still go.
    write_content(&src.join(".vserv-x"), 10, 4);
    let put = env.vserv(&["put", "-r", "src", "up"]);
    assert_eq!(put.code, Some(1), "{} {}", put.text(), put.stderr);
    assert!(put.stderr.contains(".vserv-x"), "{}", put.stderr);
    assert!(put.stderr.contains("link_out"), "{}", put.stderr);
    assert!(put.stderr.contains("leaving the tree"), "{}", put.stderr);
    assert!(put.text().contains("4 directories"), "{}", put.text());

    let back = env.path("back");
    env.vserv(&["get", "-r", "up", "back"]).ok();
    assert!(back.join("empty").is_dir(), "the empty directory came back");
    let mut want = tree_of(&src);
    want.retain(|(name, _)| name != ".vserv-x");
    want.push(("link_in".into(), sha256_of(&src.join("a.txt"))));
    want.sort();
    assert_eq!(tree_of(&back), want);
    // Into an existing directory again: refused per file without --force, nothing replaced.
    let again = env.vserv(&["get", "-r", "up", "back"]);
    assert_eq!(again.code, Some(1));
    assert_eq!(tree_of(&back), want);
    env.vserv(&["get", "-r", "up", "back", "--force"]).ok();
    // A file is not a tree.
    let not_dir = env.vserv(&["get", "-r", "up/a.txt", "x"]);
    assert_eq!(not_dir.code, Some(1));
    assert!(
        not_dir.stderr.contains("not a directory"),
        "{}",
        not_dir.stderr
    );
}

#[test]
fn versions_restore_and_mkdir_p() {
    let env = Env::new();
    for seed in [1, 2, 3] {
        write_content(&env.path("f.bin"), 100 + seed as usize, seed);
        env.vserv(&["put", "f.bin"]).ok();
    }
    let json = env.vserv(&["versions", "f.bin", "--json"]).ok().text();
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2, "{json}");
    assert_eq!(rows[0]["number"], 1);
    assert_eq!(rows[0]["size"], 102);
    assert_eq!(rows[1]["size"], 101);
    let table = env.vserv(&["versions", "f.bin"]).ok().text();
    assert!(table.starts_with("  N"), "{table}");
    // RFC 3339 local times (`show::local_time`), the same in the table and the JSON.
    let local = rows[0]["modified_local"].as_str().expect("modified_local");
    let offset = &local[local.len() - 6..];
    assert!(
        local.len() == 25 && local.as_bytes()[10] == b'T' && offset.as_bytes()[3] == b':',
        "RFC 3339 time with an offset: {local}"
    );
    assert!(
        table.contains(&format!("{local} ")),
        "RFC 3339 times: {table}"
    );
    env.vserv(&["restore", "f.bin", "2"]).ok();
    env.vserv(&["get", "f.bin", "restored.bin"]).ok();
    write_content(&env.path("one.bin"), 101, 1);
    assert_eq!(
        sha256_of(&env.path("restored.bin")),
        sha256_of(&env.path("one.bin"))
    );
    let missing = env.vserv(&["restore", "f.bin", "9"]).fails();
    assert!(missing.contains("no such version"), "{missing}");

    env.vserv(&["mkdir", "-p", "a/b/c"]).ok();
    env.vserv(&["mkdir", "-p", "a/b/c"]).ok();
    env.vserv(&["mkdir", "a/b/c"]).fails();
    let blocked = env.vserv(&["mkdir", "-p", "f.bin/x"]).fails();
    assert!(blocked.contains("not a directory"), "{blocked}");
}

#[test]
fn inbox_setup_writes_a_checked_folder_toml_and_bad_ones_are_refused_at_upload() {
    const BOB_PW: &str = "bob-password-1";
    let env = Env::new();
    let mut add = env.command(&["user", "add", "bob"]);
    add.env("VSERV_NEW_PASSWORD", BOB_PW);
    Run::from_output(add.output().expect("run vserv")).ok();
    write_content(&env.path("doc.bin"), 500, 9);
    // Before setup: the sender is told how the recipient sets it up, and so is bob.
    let refused = env.vserv(&["send", "bob", "doc.bin"]).fails();
    assert!(refused.contains("vserv inbox setup"), "{refused}");
    let unset = env.vserv_as("bob", BOB_PW, &["inbox"]).fails();
    assert!(
        unset.contains("vserv inbox setup default --allow"),
        "{unset}"
    );
    // Invalid settings are refused before anything is sent.
    let bad = env
        .vserv_as("bob", BOB_PW, &["inbox", "setup", "--allow", "not a name"])
        .fails();
    assert!(bad.contains("not a user name"), "{bad}");
    let hook = env
        .vserv_as(
            "bob",
            BOB_PW,
            &[
                "inbox",
                "setup",
                "--allow",
                "alice",
                "--on-meta",
                "relative",
            ],
        )
        .fails();
    assert!(hook.contains("absolute path"), "{hook}");
    let dry = env
        .vserv_as(
            "bob",
            BOB_PW,
            &["inbox", "setup", "--allow", "alice", "--dry-run"],
        )
        .ok();
    assert!(dry.text().contains("allow = [\"alice\"]"), "{}", dry.text());
    env.vserv_as("bob", BOB_PW, &["inbox", "setup", "--allow", "alice"])
        .ok();
    env.vserv(&["send", "bob", "doc.bin"]).ok();
    let listed = env.vserv_as("bob", BOB_PW, &["inbox"]).ok();
    assert!(listed.text().contains("doc.bin"), "{}", listed.text());
    assert!(!listed.stderr.contains("not set up"), "{}", listed.stderr);
    // A hand-written folder.toml with a mistake is refused when uploaded, naming the line.
    std::fs::write(
        env.path("folder.toml"),
        "allow = [\"alice\"]\nalow = [\"x\"]\n",
    )
    .expect("write");
    let upload = env
        .vserv_as(
            "bob",
            BOB_PW,
            &["put", "folder.toml", "inbox/default/folder.toml"],
        )
        .fails();
    assert!(upload.contains("line 2"), "{upload}");
    // The good configuration is still in force.
    env.vserv(&["send", "bob", "doc.bin"]).ok();
}
