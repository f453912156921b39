//! Uploads and downloads served by the service (spec/files.md) over a disk tree in a temp
//! dir (and the memory tree for the round trip): integrity, visibility, quota, the per-path
//! lock, resume after a dropped connection and after a restart, versions, refusals.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::commands::{Command, FileKind, Reply, UserRole};
use vserv_core::transfer::{
    FcloseArgs, FdoneArgs, FdoneReply, FgetArgs, FopenArgs, FopenReply, FreadArgs, MAX_FPUT_DATA,
    MAX_FREAD_LEN,
};
use vserv_core::{ErrorCode, ErrorReply, Request};
use vserv_service::accounts::UserName;
use vserv_service::files::{DiskTree, FileTree, FilesConfig, MemoryTree, UserPath};
use vserv_service::{Service, Session};

use common::sha;

/// Deterministic, non-repeating-looking bytes.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8 ^ seed)
        .collect()
}

struct Env {
    dir: tempfile::TempDir,
    tree: Arc<dyn FileTree>,
    service: Service,
}

fn service_with(tree: Arc<dyn FileTree>) -> Service {
    let node = common::node("transfers", 9)
        .files(tree)
        .build()
        .expect("node");
    for (user, role) in [
        ("alice", UserRole::User),
        ("bob", UserRole::User),
        ("root", UserRole::Admin),
    ] {
        node.accounts()
            .create(user, role, b"password-1", 0)
            .expect("user");
    }
    node.service()
}

impl Env {
    fn disk(config: FilesConfig) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree: Arc<dyn FileTree> =
            Arc::new(DiskTree::open(dir.path(), config).expect("disk tree"));
        Env {
            service: service_with(tree.clone()),
            tree,
            dir,
        }
    }

    fn memory(config: FilesConfig) -> Env {
        let tree: Arc<dyn FileTree> = Arc::new(MemoryTree::new(config));
        Env {
            service: service_with(tree.clone()),
            tree,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The server restarts: a new tree and service on the same data dir.
    fn restart(&mut self, config: FilesConfig) {
        self.tree = Arc::new(DiskTree::open(self.dir.path(), config).expect("disk tree"));
        self.service = service_with(self.tree.clone());
    }

    fn partial_dir(&self, user: &str) -> PathBuf {
        self.dir
            .path()
            .join("homes")
            .join(user)
            .join(".vserv-partial")
    }

    fn session(&self, user: &str) -> Session {
        common::logged_in(&self.service, user)
    }

    fn run(&self, session: &mut Session, cmd: &Command) -> Result<Reply, ErrorReply> {
        common::run(&self.service, session, cmd, 1_000)
    }

    fn fopen(
        &self,
        s: &mut Session,
        path: &str,
        size: u64,
        resume: bool,
    ) -> Result<FopenReply, ErrorReply> {
        let cmd = Command::Fopen(FopenArgs {
            path: path.into(),
            size,
            resume,
        });
        self.run(s, &cmd).map(|r| match r {
            Reply::Opened(o) => o,
            other => panic!("fopen answered {other:?}"),
        })
    }

    fn fput(&self, s: &mut Session, id: u32, offset: u64, data: &[u8]) -> Result<(), ErrorReply> {
        let cmd = Command::Fput {
            id,
            offset,
            data: data.to_vec(),
        };
        self.run(s, &cmd).map(|r| assert_eq!(r, Reply::Done))
    }

    /// Sends `data[from..]` in full chunks from offset `from`.
    fn put_from(&self, s: &mut Session, id: u32, data: &[u8], from: usize) {
        let mut at = from;
        while at < data.len() {
            let end = (at + MAX_FPUT_DATA).min(data.len());
            self.fput(s, id, at as u64, &data[at..end]).expect("fput");
            at = end;
        }
    }

    fn fdone(&self, s: &mut Session, id: u32, sha256: [u8; 32]) -> Result<FdoneReply, ErrorReply> {
        let cmd = Command::Fdone(FdoneArgs { id, sha256 });
        self.run(s, &cmd).map(|r| match r {
            Reply::Uploaded(d) => d,
            other => panic!("fdone answered {other:?}"),
        })
    }

    fn fclose(&self, s: &mut Session, id: u32) -> Result<(), ErrorReply> {
        self.run(s, &Command::Fclose(FcloseArgs { id }))
            .map(|r| assert_eq!(r, Reply::Done))
    }

    fn upload(&self, s: &mut Session, path: &str, data: &[u8]) -> Result<FdoneReply, ErrorReply> {
        let open = self.fopen(s, path, data.len() as u64, false)?;
        assert_eq!(open.offset, 0);
        assert_eq!(open.prefix_sha256, sha(b""));
        self.put_from(s, open.id, data, 0);
        self.fdone(s, open.id, sha(data))
    }

    fn fread(
        &self,
        s: &mut Session,
        id: u32,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, ErrorReply> {
        let cmd = Command::Fread(FreadArgs { id, offset, len });
        self.run(s, &cmd).map(|r| match r {
            Reply::Data(d) => d.data,
            other => panic!("fread answered {other:?}"),
        })
    }

    /// Downloads `path` whole, checking the reported size and hash.
    fn download(&self, s: &mut Session, path: &str) -> Result<Vec<u8>, ErrorReply> {
        let reply = self.run(s, &Command::Fget(FgetArgs { path: path.into() }))?;
        let Reply::Download(get) = reply else {
            panic!("fget answered {reply:?}");
        };
        let mut out = Vec::new();
        while (out.len() as u64) < get.size {
            let len = (get.size - out.len() as u64).min(MAX_FREAD_LEN as u64) as u32;
            out.extend(self.fread(s, get.id, out.len() as u64, len)?);
        }
        self.fclose(s, get.id)?;
        assert_eq!(out.len() as u64, get.size);
        assert_eq!(sha(&out), get.sha256, "fget reports the content's SHA-256");
        Ok(out)
    }

    fn names(&self, s: &mut Session, dir: &str) -> Vec<String> {
        let cmd = Command::parse(&Request {
            id: 3,
            name: "ls".into(),
            args: vec![dir.into()],
        })
        .expect("ls");
        match self.run(s, &cmd).expect("ls") {
            Reply::Listing { entries, .. } => entries.into_iter().map(|e| e.name).collect(),
            other => panic!("ls answered {other:?}"),
        }
    }

    fn stat_sha(&self, s: &mut Session, path: &str) -> Option<[u8; 32]> {
        match self
            .run(s, &Command::Stat { path: path.into() })
            .expect("stat")
        {
            Reply::Stat(st) => {
                assert_eq!(st.kind, FileKind::File);
                st.sha256
            }
            other => panic!("stat answered {other:?}"),
        }
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ErrorReply>) -> ErrorCode {
    r.expect_err("refused").code
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn alice() -> UserName {
    UserName::parse("alice").expect("name")
}

fn user_path(p: &str) -> UserPath {
    UserPath::from_names(vec![p.to_owned()]).expect("path")
}

const SIZES: [usize; 7] = [
    0,
    1,
    MAX_FPUT_DATA - 1,
    MAX_FPUT_DATA,
    MAX_FPUT_DATA + 1,
    MAX_FREAD_LEN + 1,
    3 * 1024 * 1024 + 7,
];

fn round_trip(env: &Env) {
    let mut s = env.session("alice");
    for (i, size) in SIZES.into_iter().enumerate() {
        let data = bytes(size, i as u8);
        let name = format!("f{size}");
        let done = env.upload(&mut s, &name, &data).expect("upload");
        assert_eq!(done.size, size as u64);
        assert_eq!(done.sha256, sha(&data));
        assert_eq!(env.stat_sha(&mut s, &name), Some(sha(&data)), "{name}");
        let back = env.download(&mut s, &name).expect("download");
        assert!(back == data, "{name}: downloaded bytes differ");
    }
    assert_eq!(s.open_transfers(), 0);
}

#[test]
fn upload_then_download_gives_identical_bytes_on_disk() {
    let env = Env::disk(FilesConfig::default());
    round_trip(&env);
    // Nothing is left in the partial directory.
    assert!(files_in(&env.partial_dir("alice")).is_empty());
}

#[test]
fn upload_then_download_gives_identical_bytes_in_memory() {
    round_trip(&Env::memory(FilesConfig::default()));
}

#[test]
fn a_flipped_byte_is_refused_with_code_9_and_changes_nothing() {
    for env in [
        Env::disk(FilesConfig::default()),
        Env::memory(FilesConfig::default()),
    ] {
        let mut s = env.session("alice");
        let old = bytes(1000, 1);
        env.upload(&mut s, "f", &old).expect("first upload");
        let data = bytes(3 * MAX_FPUT_DATA, 2);
        let mut sent = data.clone();
        sent[MAX_FPUT_DATA + 17] ^= 0x40;
        let open = env
            .fopen(&mut s, "f", data.len() as u64, false)
            .expect("fopen");
        env.put_from(&mut s, open.id, &sent, 0);
        let err = env
            .fdone(&mut s, open.id, sha(&data))
            .expect_err("mismatch");
        assert_eq!(err.code, ErrorCode::Integrity);
        assert_eq!(err.code.to_u16(), 9);
        // The old file is untouched, no partial is visible, and the id is gone.
        assert_eq!(env.download(&mut s, "f").expect("old file"), old);
        assert_eq!(env.names(&mut s, "/"), vec!["f".to_owned()]);
        assert_eq!(
            code(env.fdone(&mut s, open.id, sha(&data))),
            ErrorCode::NotFound
        );
        assert!(
            files_in(&env.partial_dir("alice")).is_empty(),
            "partial file deleted"
        );
        // The path is free again: a correct upload goes through.
        env.upload(&mut s, "f", &data).expect("retry");
        assert_eq!(env.download(&mut s, "f").expect("new file"), data);
    }
}

#[test]
fn the_partial_file_is_deleted_on_a_mismatch() {
    let env = Env::disk(FilesConfig::default());
    let mut s = env.session("alice");
    let open = env.fopen(&mut s, "g", 10, false).expect("fopen");
    env.fput(&mut s, open.id, 0, b"0123456789").expect("fput");
    assert_eq!(
        files_in(&env.partial_dir("alice")).len(),
        2,
        "partial + state"
    );
    assert_eq!(
        code(env.fdone(&mut s, open.id, [0; 32])),
        ErrorCode::Integrity
    );
    assert!(files_in(&env.partial_dir("alice")).is_empty());
    assert!(env.names(&mut s, "/").is_empty());
}

#[test]
fn quota_is_checked_at_fopen() {
    let config = FilesConfig {
        versions: 0,
        quota: Some(10_000),
    };
    for env in [Env::disk(config), Env::memory(config)] {
        let mut s = env.session("alice");
        assert_eq!(
            code(env.fopen(&mut s, "big", 10_001, false)),
            ErrorCode::TooLarge
        );
        assert!(env.names(&mut s, "/").is_empty());
        env.upload(&mut s, "f", &bytes(6_000, 3)).expect("fits");
        // A second file would not fit, but replacing this one frees its bytes.
        assert_eq!(
            code(env.fopen(&mut s, "g", 6_000, false)),
            ErrorCode::TooLarge
        );
        let data = bytes(9_000, 4);
        env.upload(&mut s, "f", &data).expect("replacement fits");
        assert_eq!(env.download(&mut s, "f").expect("download"), data);
        assert_eq!(env.names(&mut s, "/"), vec!["f".to_owned()]);
    }
}

#[test]
fn two_uploads_to_one_path_cannot_interleave() {
    let env = Env::disk(FilesConfig::default());
    let mut a = env.session("alice");
    let mut b = env.session("alice");
    let mut root = env.session("root");
    let open = env.fopen(&mut a, "f", 5, false).expect("first");
    assert_eq!(code(env.fopen(&mut b, "f", 5, false)), ErrorCode::Conflict);
    assert_eq!(code(env.fopen(&mut a, "/f", 5, true)), ErrorCode::Conflict);
    // The same path reached from another home counts too.
    assert_eq!(
        code(env.fopen(&mut root, "~alice/f", 5, false)),
        ErrorCode::Conflict
    );
    // Other paths are free.
    env.upload(&mut b, "g", b"other").expect("other path");
    env.fclose(&mut a, open.id).expect("fclose");
    let again = env.fopen(&mut b, "f", 5, false).expect("after fclose");
    // The end of the connection releases the lock as well.
    drop(b);
    let last = env
        .fopen(&mut a, "f", 5, false)
        .expect("after the connection ended");
    env.fput(&mut a, last.id, 0, b"hello").expect("fput");
    env.fdone(&mut a, last.id, sha(b"hello")).expect("fdone");
    assert_ne!(again.id, 0);
}

/// Uploads the first `half` bytes of `data` to `f` and leaves the upload open.
fn upload_half(env: &Env, s: &mut Session, data: &[u8], half: usize) -> u32 {
    let open = env.fopen(s, "f", data.len() as u64, false).expect("fopen");
    let mut at = 0;
    while at < half {
        let end = (at + MAX_FPUT_DATA).min(half);
        env.fput(s, open.id, at as u64, &data[at..end])
            .expect("fput");
        at = end;
    }
    open.id
}

fn resume_and_finish(env: &Env, data: &[u8], half: usize) {
    let mut s = env.session("alice");
    let open = env
        .fopen(&mut s, "f", data.len() as u64, true)
        .expect("fopen resume");
    assert_eq!(open.offset, half as u64, "continues at the saved offset");
    assert_eq!(open.prefix_sha256, sha(&data[..half]));
    env.put_from(&mut s, open.id, data, half);
    let done = env.fdone(&mut s, open.id, sha(data)).expect("fdone");
    assert_eq!(done.sha256, sha(data));
    assert_eq!(env.stat_sha(&mut s, "f"), Some(sha(data)));
    assert!(env.download(&mut s, "f").expect("download") == data);
}

#[test]
fn resume_after_the_connection_dropped() {
    for env in [
        Env::disk(FilesConfig::default()),
        Env::memory(FilesConfig::default()),
    ] {
        let data = bytes(5 * MAX_FPUT_DATA + 99, 5);
        let half = 2 * MAX_FPUT_DATA + 5;
        let mut s = env.session("alice");
        upload_half(&env, &mut s, &data, half);
        drop(s);
        resume_and_finish(&env, &data, half);
    }
}

#[test]
fn resume_after_fclose_and_restart_without_resume_starts_at_0() {
    let env = Env::disk(FilesConfig::default());
    let data = bytes(4 * MAX_FPUT_DATA, 6);
    let mut s = env.session("alice");
    let id = upload_half(&env, &mut s, &data, MAX_FPUT_DATA);
    env.fclose(&mut s, id).expect("fclose parks the upload");
    // A different size does not match the saved state.
    let other = env.fopen(&mut s, "f", 7, true).expect("fopen");
    assert_eq!(other.offset, 0);
    env.fclose(&mut s, other.id).expect("fclose");
    // Without resume the partial upload is discarded.
    let fresh = env
        .fopen(&mut s, "f", data.len() as u64, false)
        .expect("fopen");
    assert_eq!(fresh.offset, 0);
    env.fclose(&mut s, fresh.id).expect("fclose");
    let again = env
        .fopen(&mut s, "f", data.len() as u64, true)
        .expect("fopen");
    assert_eq!(again.offset, 0, "nothing was left to resume");
}

#[test]
fn resume_after_a_server_restart() {
    let mut env = Env::disk(FilesConfig::default());
    let data = bytes(3 * MAX_FPUT_DATA + 1, 7);
    let half = MAX_FPUT_DATA + 3;
    let mut s = env.session("alice");
    upload_half(&env, &mut s, &data, half);
    drop(s);
    env.restart(FilesConfig::default());
    resume_and_finish(&env, &data, half);
}

#[test]
fn a_corrupted_partial_file_restarts_at_0() {
    let env = Env::disk(FilesConfig::default());
    let data = bytes(3 * MAX_FPUT_DATA, 8);
    let mut s = env.session("alice");
    upload_half(&env, &mut s, &data, 2 * MAX_FPUT_DATA);
    drop(s);
    let dir = env.partial_dir("alice");
    let partial = files_in(&dir)
        .into_iter()
        .find(|f| !f.ends_with(".state"))
        .expect("partial file");
    let mut content = std::fs::read(dir.join(&partial)).expect("read partial");
    content[5] ^= 1;
    std::fs::write(dir.join(&partial), content).expect("write partial");
    let mut s = env.session("alice");
    let open = env
        .fopen(&mut s, "f", data.len() as u64, true)
        .expect("fopen");
    assert_eq!(open.offset, 0);
    env.put_from(&mut s, open.id, &data, 0);
    env.fdone(&mut s, open.id, sha(&data)).expect("fdone");
    assert!(env.download(&mut s, "f").expect("download") == data);
}

#[test]
fn overwriting_keeps_versions_and_open_downloads_keep_their_version() {
    for env in [
        Env::disk(FilesConfig::default()),
        Env::memory(FilesConfig::default()),
    ] {
        let mut s = env.session("alice");
        let (v1, v2, v3) = (bytes(100, 1), bytes(MAX_FPUT_DATA + 1, 2), bytes(7, 3));
        env.upload(&mut s, "f", &v1).expect("v1");
        env.upload(&mut s, "f", &v2).expect("v2");
        let Reply::Download(get) = env
            .run(&mut s, &Command::Fget(FgetArgs { path: "f".into() }))
            .expect("fget")
        else {
            panic!("fget reply");
        };
        env.upload(&mut s, "f", &v3).expect("v3");
        // The open download still reads v2.
        assert_eq!(get.size, v2.len() as u64);
        assert_eq!(env.fread(&mut s, get.id, 0, 100).expect("fread"), v2[..100]);
        let (owner, path) = (alice(), user_path("f"));
        assert_eq!(
            env.tree.read_version(&owner, &path, 1).expect("version 1"),
            v2
        );
        assert_eq!(
            env.tree.read_version(&owner, &path, 2).expect("version 2"),
            v1
        );
        assert_eq!(env.tree.read_file(&owner, &path).expect("current"), v3);
        assert_eq!(env.names(&mut s, "/"), vec!["f".to_owned()]);
    }
}

#[test]
fn bad_reads_and_unknown_ids_are_refused() {
    let env = Env::disk(FilesConfig::default());
    let mut s = env.session("alice");
    env.upload(&mut s, "f", &bytes(100, 9)).expect("upload");
    let Reply::Download(get) = env
        .run(&mut s, &Command::Fget(FgetArgs { path: "f".into() }))
        .expect("fget")
    else {
        panic!("fget reply");
    };
    assert_eq!(
        code(env.fread(&mut s, get.id, 90, 11)),
        ErrorCode::BadArguments
    );
    assert_eq!(
        code(env.fread(&mut s, get.id, u64::MAX, 1)),
        ErrorCode::BadArguments
    );
    assert_eq!(
        env.fread(&mut s, get.id, 90, 10).expect("last bytes").len(),
        10
    );
    // Unknown ids, and ids of the wrong direction.
    assert_eq!(code(env.fread(&mut s, 999, 0, 1)), ErrorCode::NotFound);
    assert_eq!(code(env.fput(&mut s, get.id, 0, b"x")), ErrorCode::NotFound);
    assert_eq!(code(env.fdone(&mut s, 999, [0; 32])), ErrorCode::NotFound);
    assert_eq!(code(env.fclose(&mut s, 999)), ErrorCode::NotFound);
    // Out of order, past the end, too early.
    let open = env.fopen(&mut s, "g", 10, false).expect("fopen");
    assert_eq!(code(env.fread(&mut s, open.id, 0, 1)), ErrorCode::NotFound);
    assert_eq!(
        code(env.fput(&mut s, open.id, 1, b"x")),
        ErrorCode::BadArguments
    );
    assert_eq!(
        code(env.fput(&mut s, open.id, 0, &[0; 11])),
        ErrorCode::BadArguments
    );
    assert_eq!(
        code(env.fdone(&mut s, open.id, sha(b""))),
        ErrorCode::BadArguments
    );
    env.fput(&mut s, open.id, 0, b"0123456789").expect("fput");
    env.fdone(&mut s, open.id, sha(b"0123456789"))
        .expect("fdone");
    // Missing files, directories, another user's home, no login.
    assert_eq!(
        code(env.run(
            &mut s,
            &Command::Fget(FgetArgs {
                path: "nope".into()
            })
        )),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(env.fopen(&mut s, "no/dir/f", 1, false)),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(env.fopen(&mut s, "/", 1, false)),
        ErrorCode::BadArguments
    );
    assert_eq!(
        code(env.fopen(&mut s, ".vserv-partial/x", 1, false)),
        ErrorCode::BadArguments
    );
    assert_eq!(
        code(env.fopen(&mut s, "~bob/f", 1, false)),
        ErrorCode::Forbidden
    );
    let mut anon = Session::new(None);
    assert_eq!(
        code(env.fopen(&mut anon, "f", 1, false)),
        ErrorCode::Forbidden
    );
}

/// Everything the service logs on this thread, as text.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}

/// files.md §1: a SIZE over 2^63 - 1 is a clean argument error (2), not a file system
/// failure (5) logged as an ERROR; the connection goes on and a sane upload still works.
#[test]
fn an_fopen_size_beyond_what_a_file_can_hold_is_an_argument_error() {
    let env = Env::disk(FilesConfig::default());
    let mut s = env.session("alice");
    let logs = LogCapture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        for size in [1u64 << 63, u64::MAX] {
            let refused = env.fopen(&mut s, "huge", size, false).expect_err("refused");
            assert_eq!(
                refused.code,
                ErrorCode::BadArguments,
                "SIZE {size}: {refused:?}"
            );
        }
    });
    let logged = String::from_utf8_lossy(&logs.0.lock().expect("log lock")).into_owned();
    assert!(!logged.contains("ERROR"), "logged: {logged}");
    assert!(files_in(&env.partial_dir("alice")).is_empty());
    env.upload(&mut s, "huge", b"small after all")
        .expect("upload");
}

/// protocol.md §13.4: `fopen` and `fget` of a directory (or of the home's root) are error 2,
/// and nothing is created or opened.
#[test]
fn fopen_and_fget_of_a_directory_are_error_2() {
    for env in [
        Env::disk(FilesConfig::default()),
        Env::memory(FilesConfig::default()),
    ] {
        let mut s = env.session("alice");
        env.run(
            &mut s,
            &Command::Mkdir {
                path: "docs".into(),
            },
        )
        .expect("mkdir");
        for dir in ["docs", "/docs/", "/", "~"] {
            let open = env
                .fopen(&mut s, dir, 3, false)
                .expect_err("fopen of a directory");
            assert_eq!(open.code, ErrorCode::BadArguments, "fopen {dir}: {open:?}");
            let get = env
                .run(&mut s, &Command::Fget(FgetArgs { path: dir.into() }))
                .expect_err("fget of a directory");
            assert_eq!(get.code, ErrorCode::BadArguments, "fget {dir}: {get:?}");
        }
        assert_eq!(s.open_transfers(), 0);
        env.upload(&mut s, "docs/f", b"still works")
            .expect("upload");
    }
}

#[test]
fn a_file_without_a_recorded_hash_is_hashed_at_fget() {
    let env = Env::disk(FilesConfig::default());
    let mut s = env.session("alice");
    let data = bytes(70_000, 10);
    env.tree
        .replace_file(&alice(), &user_path("plain"), &data)
        .expect("replace_file");
    assert_eq!(env.stat_sha(&mut s, "plain"), None);
    assert_eq!(env.download(&mut s, "plain").expect("download"), data);
    assert_eq!(env.stat_sha(&mut s, "plain"), Some(sha(&data)), "cached");
    // A hash follows its file through mv and never describes another file.
    let mv = Command::Mv {
        from: "plain".into(),
        to: "moved".into(),
    };
    env.run(&mut s, &mv).expect("mv");
    assert_eq!(env.stat_sha(&mut s, "moved"), Some(sha(&data)));
    env.tree
        .replace_file(&alice(), &user_path("moved"), b"new")
        .expect("replace_file");
    assert_eq!(env.stat_sha(&mut s, "moved"), None);
}

#[test]
fn too_many_open_transfers_are_refused() {
    let env = Env::memory(FilesConfig::default());
    let mut s = env.session("alice");
    env.upload(&mut s, "f", b"x").expect("upload");
    for _ in 0..vserv_core::transfer::DEFAULT_MAX_TRANSFERS {
        env.run(&mut s, &Command::Fget(FgetArgs { path: "f".into() }))
            .expect("fget");
    }
    assert_eq!(
        code(env.run(&mut s, &Command::Fget(FgetArgs { path: "f".into() }))),
        ErrorCode::Conflict
    );
    assert_eq!(code(env.fopen(&mut s, "g", 1, false)), ErrorCode::Conflict);
}

/// Moves the client's pending bytes to the server (flipping the byte at `flip`, if given),
/// drives the service, and moves the server's bytes back. The server's verdict on the input.
fn exchange(
    service: &Service,
    client: &mut vserv_core::Connection,
    server: &mut vserv_core::Connection,
    session: &mut Session,
    flip: Option<usize>,
) -> Result<Vec<vserv_core::Response>, vserv_core::Error> {
    let now = std::time::Instant::now();
    let mut c2s = Vec::new();
    client.poll_transmit(&mut c2s);
    if let Some(at) = flip {
        c2s[at] ^= 0x01;
    }
    let verdict = server.handle_input(now, &c2s);
    // After a failed input the connection is closed: answering what arrived before the
    // bad record fails too, as in the runtimes, which then drop the connection.
    let driven = service.drive(session, server, std::time::Instant::now(), 1_000_000);
    if verdict.is_ok() {
        driven.expect("drive");
    }
    let mut s2c = Vec::new();
    server.poll_transmit(&mut s2c);
    client.handle_input(now, &s2c).expect("client input");
    let mut responses = Vec::new();
    while let Some(event) = client.poll_event() {
        match event {
            vserv_core::Event::ServerKey(_) => client.accept_server_key(now).expect("accept"),
            vserv_core::Event::Response(r) => responses.push(r),
            _ => {}
        }
    }
    verdict.map(|()| responses)
}

#[test]
fn a_byte_flipped_in_flight_fails_the_connection_and_leaves_the_old_file() {
    use vserv_core::{Config, Connection, ServerIdentity};
    let env = Env::disk(FilesConfig::default());
    let mut s = env.session("alice");
    let old = bytes(1000, 1);
    env.upload(&mut s, "f", &old).expect("first upload");

    let rng = |seed| Box::new(rand::rngs::StdRng::seed_from_u64(seed));
    let now = std::time::Instant::now();
    let identity = Arc::new(ServerIdentity::generate(&mut *rng(3)));
    let mut client = Connection::client(Config::default(), rng(4), now);
    let mut server = Connection::server(Config::default(), identity, rng(5), now);
    let mut session = Session::new(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    for _ in 0..4 {
        exchange(&env.service, &mut client, &mut server, &mut session, None).expect("handshake");
    }
    assert!(client.is_connected());
    let send = |client: &mut Connection, cmd: &Command| {
        client.send_request(cmd.name(), cmd.args()).expect("send")
    };
    let login = Command::Login {
        user: "alice".into(),
        credential: vserv_core::commands::Credential::Password(
            vserv_core::commands::SecretBytes::new(b"password-1".to_vec()),
        ),
    };
    send(&mut client, &login);
    let data = bytes(3 * MAX_FPUT_DATA, 2);
    let fopen = Command::Fopen(FopenArgs {
        path: "f".into(),
        size: data.len() as u64,
        resume: false,
    });
    send(&mut client, &fopen);
    let replies =
        exchange(&env.service, &mut client, &mut server, &mut session, None).expect("fopen");
    assert_eq!(replies.len(), 2);
    let Ok(Reply::Opened(open)) = Reply::from_fields(&fopen, replies[1].result.as_ref().unwrap())
    else {
        panic!("fopen answered {:?}", replies[1]);
    };
    for (i, chunk) in data.chunks(MAX_FPUT_DATA).enumerate() {
        let fput = Command::Fput {
            id: open.id,
            offset: (i * MAX_FPUT_DATA) as u64,
            data: chunk.to_vec(),
        };
        send(&mut client, &fput);
    }
    send(
        &mut client,
        &Command::Fdone(FdoneArgs {
            id: open.id,
            sha256: sha(&data),
        }),
    );
    // One bit of the second chunk's record changes on the wire: its MAC fails, the
    // connection fails, and the fdone behind it is never processed.
    let flip = 2 * MAX_FPUT_DATA;
    assert!(
        exchange(
            &env.service,
            &mut client,
            &mut server,
            &mut session,
            Some(flip)
        )
        .is_err(),
        "a tampered record must fail the connection"
    );
    assert!(server.is_closed());
    drop(session);
    assert_eq!(env.download(&mut s, "f").expect("old file"), old);
    assert_eq!(env.names(&mut s, "/"), vec!["f".to_owned()]);
}

#[test]
fn an_open_upload_reserves_its_size_so_a_second_is_refused_before_any_data() {
    // Two uploads that would each fit alone but not together: the first reserves its size
    // at fopen, so the second is refused then (before any data), nothing of it is visible,
    // and the first completes.
    let config = FilesConfig {
        versions: 0,
        quota: Some(10_000),
    };
    let env = Env::disk(config);
    let mut s1 = env.session("alice");
    let mut s2 = env.session("alice");
    let a = bytes(6_000, 5);
    let open_a = env.fopen(&mut s1, "a", 6_000, false).expect("a fits");
    assert_eq!(
        code(env.fopen(&mut s2, "b", 6_000, false)),
        ErrorCode::TooLarge
    );
    env.put_from(&mut s1, open_a.id, &a, 0);
    env.fdone(&mut s1, open_a.id, sha(&a)).expect("a completes");
    assert_eq!(env.names(&mut s1, "/"), vec!["a".to_owned()]);
    assert!(
        files_in(&env.partial_dir("alice")).is_empty(),
        "no partial file is left"
    );
    assert_eq!(env.download(&mut s1, "a").expect("a"), a);
}

/// A client and a server connection joined in memory, with the server's session: requests
/// can be pipelined (sent before the replies to earlier ones are read), as a real client
/// does with its window.
struct Wire {
    client: vserv_core::Connection,
    server: vserv_core::Connection,
    session: Session,
    /// Requests sent whose responses have not been read yet.
    waiting: usize,
}

impl Wire {
    /// Connects to `env`'s service and logs in as `user`.
    fn connect(env: &Env, user: &str, seed: u64) -> Wire {
        use vserv_core::{Config, Connection, ServerIdentity};
        let rng = |s| Box::new(rand::rngs::StdRng::seed_from_u64(s));
        let now = std::time::Instant::now();
        let identity = Arc::new(ServerIdentity::generate(&mut *rng(seed)));
        let mut wire = Wire {
            client: Connection::client(Config::default(), rng(seed + 1), now),
            server: Connection::server(Config::default(), identity, rng(seed + 2), now),
            session: Session::new(Some(IpAddr::V4(Ipv4Addr::LOCALHOST))),
            waiting: 0,
        };
        for _ in 0..4 {
            let replies = exchange(
                &env.service,
                &mut wire.client,
                &mut wire.server,
                &mut wire.session,
                None,
            )
            .expect("handshake");
            assert!(replies.is_empty());
        }
        assert!(wire.client.is_connected());
        let login = Command::Login {
            user: user.into(),
            credential: vserv_core::commands::Credential::Password(
                vserv_core::commands::SecretBytes::new(b"password-1".to_vec()),
            ),
        };
        let id = wire.send(&login);
        let mut replies = wire.flush(env);
        assert!(replies.remove(&id).expect("login answered").is_ok());
        wire
    }

    /// Sends `cmd` without waiting for its response; returns the request id.
    fn send(&mut self, cmd: &Command) -> u32 {
        self.waiting += 1;
        self.client
            .send_request(cmd.name(), cmd.args())
            .expect("send")
    }

    /// Delivers everything sent to the server and reads every response awaited.
    fn flush(
        &mut self,
        env: &Env,
    ) -> std::collections::HashMap<u32, Result<Vec<Vec<u8>>, ErrorReply>> {
        let mut out = std::collections::HashMap::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.waiting > 0 {
            let responses = exchange(
                &env.service,
                &mut self.client,
                &mut self.server,
                &mut self.session,
                None,
            )
            .expect("exchange");
            for r in responses {
                assert!(out.insert(r.id, r.result).is_none(), "one response per id");
                self.waiting -= 1;
            }
            if self.waiting > 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} responses missing",
                    self.waiting
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        out
    }

    /// Sends `cmd` alone and decodes its reply.
    fn call(&mut self, env: &Env, cmd: &Command) -> Result<Reply, ErrorReply> {
        let id = self.send(cmd);
        let fields = self.flush(env).remove(&id).expect("answered")?;
        Ok(Reply::from_fields(cmd, &fields).expect("reply decodes"))
    }
}

/// One transfer driven chunk by chunk over a [`Wire`].
struct Stream {
    /// Index of the wire it runs on.
    wire: usize,
    /// Transfer id.
    id: u32,
    /// Upload: the bytes to send. Download: the bytes expected.
    data: Vec<u8>,
    upload: bool,
    /// Next offset to request or send.
    at: usize,
    /// Download: the bytes received, placed by offset.
    got: Vec<u8>,
}

impl Stream {
    fn upload(wire: usize, open: FopenReply, data: Vec<u8>) -> Stream {
        assert_eq!(open.offset, 0);
        assert_eq!(open.prefix_sha256, sha(b""));
        Stream {
            wire,
            id: open.id,
            data,
            upload: true,
            at: 0,
            got: Vec::new(),
        }
    }

    fn download(wire: usize, id: u32, data: Vec<u8>) -> Stream {
        let got = vec![0; data.len()];
        Stream {
            wire,
            id,
            data,
            upload: false,
            at: 0,
            got,
        }
    }

    fn finished(&self) -> bool {
        self.at == self.data.len()
    }

    /// The next chunk's command (of a random size), advancing the cursor.
    fn next(&mut self, rng: &mut rand::rngs::StdRng) -> (Command, usize) {
        use rand::RngExt;
        let rest = self.data.len() - self.at;
        let offset = self.at;
        if self.upload {
            let len = rng.random_range(1..=rest.min(MAX_FPUT_DATA));
            self.at += len;
            let cmd = Command::Fput {
                id: self.id,
                offset: offset as u64,
                data: self.data[offset..offset + len].to_vec(),
            };
            (cmd, offset)
        } else {
            let len = rng.random_range(1..=rest.min(MAX_FREAD_LEN));
            self.at += len;
            let cmd = Command::Fread(FreadArgs {
                id: self.id,
                offset: offset as u64,
                len: len as u32,
            });
            (cmd, offset)
        }
    }
}

/// Interleaves the chunks of `streams` in a seeded pseudo-random order, keeping up to a
/// random number of requests (1-16) outstanding on a wire before reading its responses, and
/// checks every response. `between` runs after each flush with the wires and streams.
fn interleave(
    env: &Env,
    wires: &mut [Wire],
    streams: &mut [Stream],
    seed: u64,
    mut between: impl FnMut(&mut [Wire], &[Stream]),
) {
    use rand::RngExt;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Per wire: request id -> (stream, offset, command).
    let mut sent: Vec<std::collections::HashMap<u32, (usize, usize, Command)>> =
        wires.iter().map(|_| Default::default()).collect();
    let mut batch = rng.random_range(1..=16usize);
    let mut switches = 0;
    let mut last = usize::MAX;
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|&i| !streams[i].finished())
            .collect();
        let flush_now: Vec<usize> = if open.is_empty() {
            (0..wires.len()).collect()
        } else {
            let i = open[rng.random_range(0..open.len())];
            if i != last {
                switches += 1;
                last = i;
            }
            let (cmd, offset) = streams[i].next(&mut rng);
            let w = streams[i].wire;
            let id = wires[w].send(&cmd);
            sent[w].insert(id, (i, offset, cmd));
            if wires[w].waiting >= batch {
                batch = rng.random_range(1..=16usize);
                vec![w]
            } else {
                Vec::new()
            }
        };
        for &w in &flush_now {
            for (id, result) in wires[w].flush(env) {
                let (i, offset, cmd) = sent[w].remove(&id).expect("a response to a request sent");
                let fields = result.unwrap_or_else(|e| panic!("{cmd:?} refused: {e:?}"));
                let stream = &mut streams[i];
                match Reply::from_fields(&cmd, &fields).expect("reply decodes") {
                    Reply::Done => assert!(stream.upload, "fput answered for a download"),
                    Reply::Data(d) => {
                        let Command::Fread(read) = &cmd else {
                            panic!("data for {cmd:?}");
                        };
                        assert_eq!(d.data.len(), read.len as usize, "fread returns LEN bytes");
                        stream.got[offset..offset + d.data.len()].copy_from_slice(&d.data);
                    }
                    other => panic!("{cmd:?} answered {other:?}"),
                }
            }
            assert!(sent[w].is_empty());
        }
        if !flush_now.is_empty() {
            between(wires, streams);
        }
        if open.is_empty() {
            break;
        }
    }
    // The order really interleaved the transfers.
    assert!(switches > 2 * streams.len(), "only {switches} switches");
}

fn fdone_cmd(s: &Stream) -> Command {
    Command::Fdone(FdoneArgs {
        id: s.id,
        sha256: sha(&s.data),
    })
}

/// Checks the file at `path` of alice's home holds `data`, with its SHA-256 recorded.
fn assert_on_tree(env: &Env, path: &str, data: &[u8]) {
    let p = user_path(path);
    let on_tree = env.tree.read_file(&alice(), &p).expect("read_file");
    assert!(on_tree == data, "{path}: the bytes on the tree differ");
    assert_eq!(sha(&on_tree), sha(data), "{path}");
    let stat = env.tree.stat(&alice(), &p).expect("stat");
    assert_eq!(stat.size, data.len() as u64, "{path}");
    assert_eq!(stat.sha256, Some(sha(data)), "{path}: recorded SHA-256");
}

fn many_transfers_on_one_connection(env: &Env) {
    let mut s = env.session("alice");
    let existing = bytes(150_000, 20);
    env.upload(&mut s, "existing", &existing)
        .expect("existing file");
    let mut wires = [Wire::connect(env, "alice", 30)];
    let w = &mut wires[0];
    let files = [
        ("a", bytes(5 * MAX_FPUT_DATA + 123, 21)),
        ("b", bytes(90_000, 22)),
        ("c", bytes(3 * MAX_FPUT_DATA - 7, 23)),
    ];
    // Open all four at once (pipelined).
    let opens: Vec<(u32, Command)> = files
        .iter()
        .map(|(path, data)| {
            let cmd = Command::Fopen(FopenArgs {
                path: (*path).into(),
                size: data.len() as u64,
                resume: false,
            });
            (w.send(&cmd), cmd)
        })
        .collect();
    let fget = Command::Fget(FgetArgs {
        path: "existing".into(),
    });
    let fget_id = w.send(&fget);
    let mut replies = w.flush(env);
    let mut streams: Vec<Stream> = opens
        .into_iter()
        .zip(&files)
        .map(|((id, cmd), (_, data))| {
            let fields = replies.remove(&id).expect("answered").expect("fopen");
            let Ok(Reply::Opened(open)) = Reply::from_fields(&cmd, &fields) else {
                panic!("fopen answered {fields:?}");
            };
            Stream::upload(0, open, data.clone())
        })
        .collect();
    let fields = replies.remove(&fget_id).expect("answered").expect("fget");
    let Ok(Reply::Download(get)) = Reply::from_fields(&fget, &fields) else {
        panic!("fget answered {fields:?}");
    };
    assert_eq!(get.size, existing.len() as u64);
    assert_eq!(get.sha256, sha(&existing));
    streams.push(Stream::download(0, get.id, existing.clone()));
    let mut ids: Vec<u32> = streams.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each transfer has its own id");
    assert_eq!(wires[0].session.open_transfers(), 4);

    interleave(env, &mut wires, &mut streams, 7, |wires, streams| {
        assert_eq!(wires[0].session.open_transfers(), 4);
        // Nothing is visible before fdone.
        for (stream, (path, _)) in streams.iter().zip(&files) {
            if stream.finished() {
                continue;
            }
            assert!(env.tree.read_file(&alice(), &user_path(path)).is_err());
        }
    });

    // Finish all four at once.
    let w = &mut wires[0];
    let dones: Vec<(u32, Command)> = streams[..3]
        .iter()
        .map(|s| {
            let cmd = fdone_cmd(s);
            (w.send(&cmd), cmd)
        })
        .collect();
    let close = Command::Fclose(FcloseArgs { id: streams[3].id });
    let close_id = w.send(&close);
    let mut replies = w.flush(env);
    for ((id, cmd), (path, data)) in dones.into_iter().zip(&files) {
        let fields = replies.remove(&id).expect("answered").expect("fdone");
        let Ok(Reply::Uploaded(done)) = Reply::from_fields(&cmd, &fields) else {
            panic!("fdone answered {fields:?}");
        };
        assert_eq!(done.size, data.len() as u64, "{path}");
        assert_eq!(done.sha256, sha(data), "{path}");
    }
    assert!(replies.remove(&close_id).expect("answered").is_ok());
    assert_eq!(wires[0].session.open_transfers(), 0, "the table is empty");

    assert!(streams[3].got == existing, "downloaded bytes differ");
    assert_eq!(sha(&streams[3].got), get.sha256);
    for (path, data) in &files {
        assert_on_tree(env, path, data);
        assert_eq!(env.stat_sha(&mut s, path), Some(sha(data)), "{path}");
    }
    assert_on_tree(env, "existing", &existing);
    let mut names = env.names(&mut s, "/");
    names.sort();
    assert_eq!(names, ["a", "b", "c", "existing"]);
    assert!(files_in(&env.partial_dir("alice")).is_empty());
}

#[test]
fn many_transfers_interleave_on_one_connection_on_disk() {
    many_transfers_on_one_connection(&Env::disk(FilesConfig::default()));
}

#[test]
fn many_transfers_interleave_on_one_connection_in_memory() {
    many_transfers_on_one_connection(&Env::memory(FilesConfig::default()));
}

fn fopen_cmd(path: &str, size: usize) -> Command {
    Command::Fopen(FopenArgs {
        path: path.into(),
        size: size as u64,
        resume: false,
    })
}

fn open_on(env: &Env, wire: &mut Wire, path: &str, size: usize) -> Result<FopenReply, ErrorReply> {
    wire.call(env, &fopen_cmd(path, size)).map(|r| match r {
        Reply::Opened(o) => o,
        other => panic!("fopen answered {other:?}"),
    })
}

fn transfers_across_two_connections(env: &Env) {
    let mut s = env.session("alice");
    let existing = bytes(60_000, 40);
    env.upload(&mut s, "existing", &existing)
        .expect("existing file");
    let mut wires = [
        Wire::connect(env, "alice", 50),
        Wire::connect(env, "alice", 60),
    ];
    // Connection 0 uploads "one" and "shared"; connection 1 uploads "two" and downloads
    // "existing". All interleaved, both connections at once.
    let one = bytes(4 * MAX_FPUT_DATA + 1, 41);
    let shared = bytes(6 * MAX_FPUT_DATA + 77, 42);
    let two = bytes(100_000, 43);
    let open_one = open_on(env, &mut wires[0], "one", one.len()).expect("one");
    let open_shared = open_on(env, &mut wires[0], "shared", shared.len()).expect("shared");
    // While connection 0 has "shared" open, connection 1 cannot open it.
    assert_eq!(
        code(open_on(env, &mut wires[1], "shared", 10)),
        ErrorCode::Conflict
    );
    let open_two = open_on(env, &mut wires[1], "two", two.len()).expect("two");
    let Reply::Download(get) = wires[1]
        .call(
            env,
            &Command::Fget(FgetArgs {
                path: "existing".into(),
            }),
        )
        .expect("fget")
    else {
        panic!("fget reply");
    };
    let mut streams = vec![
        Stream::upload(0, open_one, one.clone()),
        Stream::upload(0, open_shared, shared.clone()),
        Stream::upload(1, open_two, two.clone()),
        Stream::download(1, get.id, existing.clone()),
    ];
    let mut refusals = 0;
    interleave(env, &mut wires, &mut streams, 11, |wires, streams| {
        assert_eq!(wires[0].session.open_transfers(), 2);
        assert_eq!(wires[1].session.open_transfers(), 2);
        // Mid-way, the lock still holds on the other connection, and a refused fopen
        // changes nothing of the upload in progress (asked only between connection 1's
        // batches, so that its pipelined chunks are read by `interleave`).
        if !streams[1].finished() && wires[1].waiting == 0 {
            let err = open_on(env, &mut wires[1], "shared", 10).expect_err("locked");
            assert_eq!(err.code, ErrorCode::Conflict);
            assert_eq!(err.code.to_u16(), 7);
            refusals += 1;
        }
    });
    assert!(refusals > 0);

    // Connection 1 finishes "two" and the download while "shared" is still open.
    let close_get = Command::Fclose(FcloseArgs { id: get.id });
    let done_two = fdone_cmd(&streams[2]);
    let Reply::Uploaded(d) = wires[1].call(env, &done_two).expect("fdone two") else {
        panic!("fdone reply");
    };
    assert_eq!(d.sha256, sha(&two));
    wires[1].call(env, &close_get).expect("fclose");
    assert_eq!(wires[1].session.open_transfers(), 0);
    assert_eq!(
        code(open_on(env, &mut wires[1], "shared", 10)),
        ErrorCode::Conflict
    );
    assert!(streams[3].got == existing, "downloaded bytes differ");

    // Connection 0 finishes both; then "shared" is free for connection 1.
    for stream in &streams[..2] {
        let Reply::Uploaded(d) = wires[0].call(env, &fdone_cmd(stream)).expect("fdone") else {
            panic!("fdone reply");
        };
        assert_eq!(d.sha256, sha(&stream.data));
    }
    assert_eq!(wires[0].session.open_transfers(), 0);
    assert_on_tree(env, "one", &one);
    assert_on_tree(env, "shared", &shared);
    assert_on_tree(env, "two", &two);

    let replacement = bytes(2 * MAX_FPUT_DATA + 5, 44);
    let open = open_on(env, &mut wires[1], "shared", replacement.len()).expect("free again");
    // Now connection 0 is the one refused.
    assert_eq!(
        code(open_on(env, &mut wires[0], "shared", 10)),
        ErrorCode::Conflict
    );
    let mut stream = Stream::upload(1, open, replacement.clone());
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut ids = Vec::new();
    while !stream.finished() {
        let (cmd, _) = stream.next(&mut rng);
        ids.push(wires[1].send(&cmd));
    }
    let done_id = wires[1].send(&fdone_cmd(&stream));
    let mut replies = wires[1].flush(env);
    for id in ids {
        assert_eq!(replies.remove(&id).expect("answered"), Ok(Vec::new()));
    }
    let fields = replies.remove(&done_id).expect("answered").expect("fdone");
    let Ok(Reply::Uploaded(d)) = Reply::from_fields(&fdone_cmd(&stream), &fields) else {
        panic!("fdone answered {fields:?}");
    };
    assert_eq!(d.sha256, sha(&replacement));
    assert_on_tree(env, "shared", &replacement);
    assert!(
        env.tree
            .read_version(&alice(), &user_path("shared"), 1)
            .expect("previous version")
            == shared
    );
    assert_on_tree(env, "one", &one);
    assert_on_tree(env, "two", &two);
    assert_eq!(wires[0].session.open_transfers(), 0);
    assert_eq!(wires[1].session.open_transfers(), 0);
    assert!(files_in(&env.partial_dir("alice")).is_empty());
}

#[test]
fn transfers_interleave_across_two_connections_on_disk() {
    transfers_across_two_connections(&Env::disk(FilesConfig::default()));
}

#[test]
fn transfers_interleave_across_two_connections_in_memory() {
    transfers_across_two_connections(&Env::memory(FilesConfig::default()));
}

#[test]
fn the_status_counts_the_transfers_open_on_every_session() {
    let env = Env::memory(FilesConfig::default());
    let (mut a, mut b) = (env.session("alice"), env.session("bob"));
    assert_eq!(env.service.status().transfers, 0);
    env.upload(&mut a, "f", b"content").expect("upload");
    // A finished upload is no longer open.
    assert_eq!(env.service.status().transfers, 0);
    let up = env.fopen(&mut a, "g", 10, false).expect("fopen");
    let Reply::Download(down) = env
        .run(&mut a, &Command::Fget(FgetArgs { path: "f".into() }))
        .expect("fget")
    else {
        panic!("fget reply");
    };
    env.fopen(&mut b, "h", 10, false).expect("fopen");
    assert_eq!(env.service.status().transfers, 3);
    env.fclose(&mut a, down.id).expect("fclose download");
    env.fclose(&mut a, up.id).expect("fclose upload");
    assert_eq!(env.service.status().transfers, 1);
    // A session that ends takes its transfers with it.
    drop(b);
    assert_eq!(env.service.status().transfers, 0);
}
