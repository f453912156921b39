//! The file tree: path escapes against the disk implementation, versions, quota, and the
//! file commands' rules, through the service as a client would reach them.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vserv_core::commands::{FileKind, UserRole};
use vserv_core::{ErrorCode, ErrorReply, Request};
use vserv_service::accounts::UserName;
use vserv_service::files::{
    DiskTree, FileError, FileTree, FilesConfig, MemoryTree, PathError, UserPath,
};
use vserv_service::{Service, Session};

fn name(n: &str) -> UserName {
    UserName::parse(n).expect("user name")
}

fn path(p: &str) -> UserPath {
    UserPath::from_names(
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
    .expect("valid path")
}

/// A data dir inside `outer`, next to a directory that must stay untouched.
struct Env {
    outer: tempfile::TempDir,
    service: Service,
}

impl Env {
    fn new(config: FilesConfig) -> Env {
        let outer = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(outer.path().join("outside")).expect("outside");
        std::fs::write(outer.path().join("outside/secret"), b"secret").expect("secret");
        let data = outer.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let tree = DiskTree::open(&data, config).expect("disk tree");
        let node = common::node("files", 5)
            .files(Arc::new(tree))
            .build()
            .expect("node");
        for (user, role) in [
            ("alice", UserRole::User),
            ("bob", UserRole::User),
            ("carol", UserRole::User),
            ("root", UserRole::Admin),
        ] {
            node.accounts()
                .create(user, role, b"password-1", 0)
                .expect("create user");
        }
        let service = node.service();
        Env { outer, service }
    }

    fn homes(&self) -> PathBuf {
        self.outer.path().join("data/homes")
    }

    fn session(&self, user: &str) -> Session {
        let mut session = Session::new(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let login = call_raw(
            &self.service,
            &mut session,
            "login",
            &[user.as_bytes(), b"password", b"password-1"],
        );
        assert!(login.is_ok(), "login {user}: {login:?}");
        session
    }

    /// Every path under `outer` (not following symlinks) but those inside `except`.
    fn snapshot(&self, except: &Path) -> BTreeSet<PathBuf> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.outer.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read_dir") {
                let entry = entry.expect("entry");
                let p = entry.path();
                if p.starts_with(except) {
                    continue;
                }
                if entry.file_type().expect("type").is_dir() {
                    stack.push(p.clone());
                }
                seen.insert(p);
            }
        }
        seen
    }
}

fn call_raw(
    service: &Service,
    session: &mut Session,
    name: &str,
    args: &[&[u8]],
) -> Result<Vec<Vec<u8>>, ErrorReply> {
    let request = Request {
        id: 1,
        name: name.into(),
        args: args.iter().map(|a| a.to_vec()).collect(),
    };
    service.answer(session, &request, 1_000).0.result
}

fn call(
    service: &Service,
    session: &mut Session,
    name: &str,
    args: &[&str],
) -> Result<Vec<Vec<u8>>, ErrorReply> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    call_raw(service, session, name, &args)
}

fn code(result: Result<Vec<Vec<u8>>, ErrorReply>) -> Option<ErrorCode> {
    result.err().map(|e| e.code)
}

/// At least 40 ways out of a home, each refused with its error code, and nothing created
/// outside the home (nor, but for the planted links, inside it).
#[test]
fn path_escapes_are_refused_and_create_nothing() {
    use ErrorCode::{BadArguments as Bad, Forbidden, NotFound};
    let env = Env::new(FilesConfig::default());
    let mut alice = env.session("alice");
    // First use creates the home; then plant the links.
    assert_eq!(
        call(&env.service, &mut alice, "mkdir", &["real"]),
        Ok(vec![])
    );
    let home = env.homes().join("alice");
    std::os::unix::fs::symlink(env.outer.path().join("outside"), home.join("out"))
        .expect("symlink out");
    std::os::unix::fs::symlink(home.join("real"), home.join("in")).expect("symlink in");
    std::os::unix::fs::symlink(env.outer.path().join("outside/secret"), home.join("leak"))
        .expect("symlink to file");
    let before = env.snapshot(&home);
    let home_before = std::fs::read_dir(&home).expect("home").count();

    let long_name = "n".repeat(256);
    let long_path = "a/".repeat(2049);
    let deep_path = "d/".repeat(65);
    let attempts: Vec<(&str, Vec<&str>, ErrorCode)> = vec![
        ("mkdir", vec![".."], Bad),
        ("mkdir", vec!["../x"], Bad),
        ("mkdir", vec!["a/../../x"], Bad),
        ("mkdir", vec!["../../outside/x"], Bad),
        ("mkdir", vec!["real/.."], Bad),
        ("mkdir", vec!["./../x"], Bad),
        ("mkdir", vec!["/../x"], Bad),
        ("mkdir", vec!["~/../bob"], Bad),
        ("mkdir", vec!["~/x/../../.."], Bad),
        ("mkdir", vec!["...."], Bad),
        ("cd", vec![".."], Bad),
        ("mv", vec!["real", "../moved"], Bad),
        ("mkdir", vec!["~bob/x"], Forbidden),
        ("ls", vec!["~bob"], Forbidden),
        ("stat", vec!["~root/x"], Forbidden),
        ("cd", vec!["~bob"], Forbidden),
        ("mkdir", vec!["~../x"], Bad),
        ("mkdir", vec!["~/"], ErrorCode::Conflict),
        ("stat", vec!["/etc/passwd"], NotFound),
        ("stat", vec!["//etc/passwd"], NotFound),
        ("ls", vec!["/etc"], NotFound),
        ("mkdir", vec!["a\0b"], Bad),
        ("mkdir", vec!["a\nb"], Bad),
        ("mkdir", vec!["a\rb"], Bad),
        ("mkdir", vec!["\x1b[31mred"], Bad),
        ("mkdir", vec!["a\x7fb"], Bad),
        ("mkdir", vec!["a\u{85}b"], Bad),
        ("mkdir", vec!["..\\x"], Bad),
        ("mkdir", vec!["a\\..\\..\\x"], Bad),
        ("mkdir", vec!["\\\\server\\share"], Bad),
        ("mkdir", vec!["C:"], Bad),
        ("mkdir", vec!["C:\\Windows"], Bad),
        ("mkdir", vec!["c:/x"], Bad),
        ("mkdir", vec!["file.txt:stream"], Bad),
        ("mkdir", vec!["CON"], Bad),
        ("mkdir", vec!["nul.txt"], Bad),
        ("mkdir", vec!["Com1"], Bad),
        ("mkdir", vec!["lpt9.tar.gz"], Bad),
        ("mkdir", vec!["real/PRN"], Bad),
        ("mkdir", vec!["AUX .txt"], Bad),
        ("mkdir", vec![&long_name], Bad),
        ("mkdir", vec![&long_path], Bad),
        ("mkdir", vec![&deep_path], Bad),
        ("mkdir", vec!["trailing."], Bad),
        ("mkdir", vec!["trailing "], Bad),
        ("mkdir", vec!["a\u{202E}txt.exe"], Bad),
        ("mkdir", vec!["\u{2066}x"], Bad),
        ("mkdir", vec![".vserv-versions"], Bad),
        ("mkdir", vec!["real/.VSERV-tmp-1"], Bad),
        ("mkdir", vec![""], Bad),
        ("mkdir", vec!["out/x"], Forbidden),
        ("stat", vec!["out"], Forbidden),
        ("ls", vec!["out"], Forbidden),
        ("cd", vec!["out"], Forbidden),
        ("del", vec!["out/secret"], Forbidden),
        ("del", vec!["leak"], Forbidden),
        ("stat", vec!["leak"], Forbidden),
        ("mv", vec!["real", "out/moved"], Forbidden),
        ("mv", vec!["leak", "stolen"], Forbidden),
        ("mkdir", vec!["in/x"], Forbidden),
        ("rmdir", vec!["in"], Forbidden),
    ];
    assert!(attempts.len() >= 40);
    for (cmd, args, want) in &attempts {
        let got = code(call(&env.service, &mut alice, cmd, args));
        assert_eq!(got, Some(*want), "{cmd} {args:?}");
    }
    // Non-UTF-8 never reaches the tree.
    assert_eq!(
        code(call_raw(
            &env.service,
            &mut alice,
            "mkdir",
            &[&[0xFF, b'.', b'.']]
        )),
        Some(Bad)
    );
    // The working directory never moved, and nothing was created or removed.
    assert_eq!(
        call(&env.service, &mut alice, "pwd", &[]),
        Ok(vec![b"/".to_vec()])
    );
    assert_eq!(
        env.snapshot(&home),
        before,
        "something changed outside the home"
    );
    assert_eq!(std::fs::read_dir(&home).expect("home").count(), home_before);
    assert!(
        std::fs::read_dir(home.join("real"))
            .expect("real")
            .next()
            .is_none()
    );
    assert_eq!(
        std::fs::read(env.outer.path().join("outside/secret")).expect("secret"),
        b"secret"
    );
}

/// A home that is itself a symlink is refused, even pointing at an ordinary directory.
#[test]
fn a_symlinked_home_is_refused() {
    let env = Env::new(FilesConfig::default());
    std::os::unix::fs::symlink(env.outer.path().join("outside"), env.homes().join("bob"))
        .expect("symlink home");
    let before = env.snapshot(&env.homes().join("nothing"));
    let mut bob = env.session("bob");
    for (cmd, args) in [
        ("mkdir", vec!["x"]),
        ("ls", vec![]),
        ("stat", vec!["secret"]),
        ("del", vec!["secret"]),
    ] {
        assert_eq!(
            code(call(&env.service, &mut bob, cmd, &args)),
            Some(ErrorCode::Forbidden),
            "{cmd}"
        );
    }
    assert_eq!(env.snapshot(&env.homes().join("nothing")), before);
}

/// A `homes` directory that is a symlink is refused at open.
#[test]
fn a_symlinked_homes_directory_is_refused() {
    let outer = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(outer.path().join("elsewhere")).expect("dir");
    std::os::unix::fs::symlink(outer.path().join("elsewhere"), outer.path().join("homes"))
        .expect("symlink");
    assert!(matches!(
        DiskTree::open(outer.path(), FilesConfig::default()),
        Err(FileError::Symlink(_))
    ));
}

/// Admins may enter another user's home as `~NAME`; users may not; `~` is one's own.
#[test]
fn admins_may_enter_other_homes() {
    let env = Env::new(FilesConfig::default());
    let mut alice = env.session("alice");
    let mut root = env.session("root");
    assert_eq!(
        call(&env.service, &mut alice, "mkdir", &["docs"]),
        Ok(vec![])
    );
    assert_eq!(
        call(&env.service, &mut root, "cd", &["~alice/docs"]),
        Ok(vec![b"~alice/docs".to_vec()])
    );
    assert_eq!(call(&env.service, &mut root, "mkdir", &["sub"]), Ok(vec![]));
    assert_eq!(
        call(&env.service, &mut root, "pwd", &[]),
        Ok(vec![b"~alice/docs".to_vec()])
    );
    assert!(env.homes().join("alice/docs/sub").is_dir());
    assert_eq!(
        call(&env.service, &mut root, "cd", &["~"]),
        Ok(vec![b"/".to_vec()])
    );
    assert_eq!(
        code(call(&env.service, &mut root, "ls", &["~nosuchuser"])),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(call(&env.service, &mut alice, "ls", &["~root"])),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(call(
            &env.service,
            &mut root,
            "mv",
            &["~alice/docs", "docs"]
        )),
        Some(ErrorCode::BadArguments),
        "no moves between homes"
    );
    // A user's own name with `~` is their home.
    assert_eq!(
        call(&env.service, &mut alice, "cd", &["~alice/docs/sub"]),
        Ok(vec![b"/docs/sub".to_vec()])
    );
}

/// The trees under test: the disk one in `dir`, and the memory one.
fn trees(dir: &Path, versions: u32, quota: Option<u64>) -> Vec<Box<dyn FileTree>> {
    let config = FilesConfig { versions, quota };
    vec![
        Box::new(DiskTree::open(dir, config).expect("disk tree")),
        Box::new(MemoryTree::new(config)),
    ]
}

#[test]
fn overwrites_keep_the_configured_number_of_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let u = name("alice");
    let f = path("f");
    for tree in trees(dir.path(), 3, None) {
        for i in 0..6u8 {
            tree.replace_file(&u, &f, &[i; 10]).expect("write");
        }
        assert_eq!(tree.read_file(&u, &f).expect("read"), vec![5; 10]);
        for n in 1..=3u32 {
            let want = 5 - u8::try_from(n).expect("small");
            assert_eq!(
                tree.read_version(&u, &f, n).expect("version"),
                vec![want; 10]
            );
        }
        assert!(matches!(
            tree.read_version(&u, &f, 4),
            Err(FileError::NotFound(_))
        ));
        assert_eq!(tree.usage(&u).expect("usage"), 40);
        // Versions are never listed.
        let names: Vec<String> = tree
            .list(&u, &UserPath::root())
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["f".to_string()]);
        // Deleting the file drops its versions.
        tree.delete_file(&u, &f).expect("del");
        assert_eq!(tree.usage(&u).expect("usage"), 0);
        // The memory tree, next, has no files on disk.
        let _ = std::fs::remove_dir_all(dir.path().join("homes/alice"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for tree in trees(dir.path(), 0, None) {
        for i in 0..3u8 {
            tree.replace_file(&u, &f, &[i; 10]).expect("write");
        }
        assert!(matches!(
            tree.read_version(&u, &f, 1),
            Err(FileError::NotFound(_))
        ));
        assert_eq!(tree.usage(&u).expect("usage"), 10);
    }
    // On disk: nothing but the file itself with versions off.
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("homes/alice"))
        .expect("home")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("f")]);
}

#[test]
fn a_rename_over_a_file_keeps_the_old_content_as_a_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let u = name("alice");
    for tree in trees(dir.path(), 3, None) {
        tree.replace_file(&u, &path("a"), b"new").expect("a");
        tree.replace_file(&u, &path("b"), b"old").expect("b");
        tree.rename(&u, &path("a"), &path("b")).expect("mv");
        assert_eq!(tree.read_file(&u, &path("b")).expect("b"), b"new");
        assert_eq!(tree.read_version(&u, &path("b"), 1).expect("v1"), b"old");
        assert!(matches!(
            tree.stat(&u, &path("a")),
            Err(FileError::NotFound(_))
        ));
    }
}

#[test]
fn quota_counts_files_and_versions_and_refuses_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let u = name("alice");
    let f = path("f");
    for tree in trees(dir.path(), 2, Some(100)) {
        assert!(tree.fits(&u, 100).expect("fits"));
        assert!(!tree.fits(&u, 101).expect("fits"));
        tree.replace_file(&u, &f, &[1; 40]).expect("40");
        tree.replace_file(&u, &f, &[2; 40])
            .expect("80 with one version");
        assert_eq!(tree.usage(&u).expect("usage"), 80);
        assert!(matches!(
            tree.replace_file(&u, &f, &[3; 40]),
            Err(FileError::QuotaExceeded {
                needed: 40,
                usage: 80,
                quota: 100
            })
        ));
        // Refused without a change.
        assert_eq!(tree.read_file(&u, &f).expect("read"), vec![2; 40]);
        assert_eq!(tree.usage(&u).expect("usage"), 80);
        assert!(tree.fits(&u, 20).expect("fits") && !tree.fits(&u, 21).expect("fits"));
        // 20 + two versions of 40: exactly the quota.
        tree.replace_file(&u, &f, &[4; 20]).expect("20");
        assert_eq!(tree.usage(&u).expect("usage"), 100);
        // With two versions kept, the oldest (40) falls off: 20 + 20 + 40.
        tree.replace_file(&u, &f, &[5; 20])
            .expect("20 again, dropping 40");
        assert_eq!(tree.usage(&u).expect("usage"), 80);
    }
}

#[test]
fn directory_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let u = name("alice");
    for tree in trees(dir.path(), 3, None) {
        tree.mkdir(&u, &path("d")).expect("mkdir");
        tree.mkdir(&u, &path("d/e")).expect("mkdir nested");
        assert!(matches!(
            tree.mkdir(&u, &path("d")),
            Err(FileError::Exists(_))
        ));
        assert!(matches!(
            tree.mkdir(&u, &path("x/y")),
            Err(FileError::NotFound(_))
        ));
        assert!(matches!(
            tree.rmdir(&u, &path("d")),
            Err(FileError::NotEmpty(_))
        ));
        assert!(matches!(
            tree.rename(&u, &path("d"), &path("d/e/f")),
            Err(FileError::IntoItself { .. })
        ));
        assert!(matches!(
            tree.rename(&u, &path("d"), &path("d/g")),
            Err(FileError::IntoItself { .. })
        ));
        assert!(matches!(
            tree.rmdir(&u, &UserPath::root()),
            Err(FileError::Root)
        ));
        tree.replace_file(&u, &path("d/e/f"), b"x").expect("file");
        tree.replace_file(&u, &path("d/e/f"), b"y")
            .expect("file again");
        assert!(matches!(
            tree.delete_file(&u, &path("d")),
            Err(FileError::IsADirectory(_))
        ));
        assert!(matches!(
            tree.rmdir(&u, &path("d/e/f")),
            Err(FileError::NotADirectory(_))
        ));
        assert!(matches!(
            tree.rename(&u, &path("d/e/f"), &path("d")),
            Err(FileError::IsADirectory(_))
        ));
        // A directory moves with its files and their versions.
        tree.rename(&u, &path("d"), &path("moved")).expect("mv dir");
        assert_eq!(tree.read_file(&u, &path("moved/e/f")).expect("f"), b"y");
        assert_eq!(
            tree.read_version(&u, &path("moved/e/f"), 1).expect("v"),
            b"x"
        );
        let st = tree.stat(&u, &path("moved/e")).expect("stat");
        assert_eq!(st.kind, FileKind::Dir);
        tree.delete_file(&u, &path("moved/e/f")).expect("del");
        tree.rmdir(&u, &path("moved/e")).expect("rmdir now empty");
        assert_eq!(
            tree.list(&u, &path("moved")).expect("list"),
            Vec::new(),
            "versions gone with the file"
        );
    }
}

#[test]
fn homes_are_private_and_created_on_first_use() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = DiskTree::open(dir.path(), FilesConfig::default()).expect("tree");
    assert!(!dir.path().join("homes/carol").exists());
    assert_eq!(tree.usage(&name("carol")).expect("usage"), 0);
    let mode = std::fs::metadata(dir.path().join("homes/carol"))
        .expect("home")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let entries = tree.list(&name("carol"), &UserPath::root()).expect("list");
    assert!(entries.is_empty());
    assert!(matches!(
        UserPath::from_names(vec!["..".into()]),
        Err(PathError::DotDot)
    ));
}
