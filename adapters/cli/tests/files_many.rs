//! End-to-end tests of `vserv put LOCAL... DIR/` and `vserv get REMOTE... DIR`: several
//! files on one connection, against a server started on a loopback port.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use common::{Run, Server};

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
        scratch
            .vserv(
                &[
                    "user",
                    "add",
                    "alice",
                    "--admin",
                    "--data",
                    &scratch.data_arg(),
                ],
                &[("VSERV_NEW_PASSWORD", PASSWORD)],
            )
            .ok();
        let server = Server::start(&scratch.data());
        Env { server, scratch }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    /// `vserv ARGS` as alice, with the connection options, run in the scratch directory.
    fn vserv(&self, args: &[&str]) -> Run {
        let mut all = self.scratch.client_args(&self.server, args);
        all.extend(["--user".to_owned(), "alice".to_owned()]);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut cmd = self.scratch.command(&all, &[("VSERV_PASSWORD", PASSWORD)]);
        cmd.current_dir(self.scratch.dir());
        Run::from_output(cmd.output().expect("run vserv"))
    }
}

/// Writes `len` bytes that differ with `seed` and along the file; their SHA-256.
fn write_content(path: &Path, len: usize, seed: u64) -> [u8; 32] {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    let mut file = std::fs::File::create(path).expect("create");
    file.write_all(&data).expect("write");
    Sha256::digest(&data).into()
}

fn sha256_of(path: &Path) -> [u8; 32] {
    Sha256::digest(std::fs::read(path).expect("read")).into()
}

/// The names `vserv ls DIR` lists.
fn names_in(env: &Env, dir: &str) -> Vec<String> {
    env.vserv(&["ls", dir])
        .ok()
        .text()
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_owned))
        .collect()
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
