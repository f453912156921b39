//! Kept versions (`versions`, `restore`), `mkdirs` (`mkdir -p`) and the upload-time check
//! of an inbox folder's `folder.toml`, over the protocol on every runtime.

use vserv_core::ErrorCode;
use vserv_core::commands::{Command, FileKind, ListPage, Reply, VersionInfo};
use vserv_core::transfer::{FdoneArgs, FileHasher, FopenArgs};

use crate::clients::*;
use crate::fixture::*;
use crate::{Fixture, Runtime, TestClient, TestServer};

fn sha(data: &[u8]) -> [u8; 32] {
    let mut h = FileHasher::new();
    h.update(data);
    h.finish()
}

/// Uploads `data` (one chunk) to `path`: the `fdone` reply.
fn upload<C: TestClient>(
    c: &mut C,
    path: &str,
    data: &[u8],
) -> Result<Reply, vserv_service::client::ClientError> {
    let open = match c.call(&Command::Fopen(FopenArgs {
        path: path.into(),
        size: data.len() as u64,
        resume: false,
    })) {
        Ok(Reply::Opened(o)) => o,
        other => return other,
    };
    if !data.is_empty() {
        let put = Command::Fput {
            id: open.id,
            offset: 0,
            data: data.to_vec(),
        };
        assert_eq!(c.call(&put).ok(), Some(Reply::Done));
    }
    c.call(&Command::Fdone(FdoneArgs {
        id: open.id,
        sha256: sha(data),
    }))
}

fn versions<C: TestClient>(c: &mut C, path: &str) -> Vec<VersionInfo> {
    match c.call(&Command::Versions { path: path.into() }) {
        Ok(Reply::Versions(v)) => v,
        other => panic!("versions gave {other:?}"),
    }
}

/// `versions` lists the kept versions newest first (number, size, sha256); `restore`
/// brings one back and keeps the replaced content as version 1, so it can be undone;
/// a missing version, a directory and a missing file are typed errors.
pub fn files_versions_and_restore<R: Runtime>() {
    let fx = Fixture::new(62);
    let server = start_with_files::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    for content in [&b"one"[..], b"two!", b"three"] {
        assert!(matches!(
            upload(&mut alice, "v.txt", content),
            Ok(Reply::Uploaded(_))
        ));
    }
    let kept = versions(&mut alice, "v.txt");
    let shown: Vec<(u32, u64, [u8; 32])> =
        kept.iter().map(|v| (v.number, v.size, v.sha256)).collect();
    assert_eq!(shown, vec![(1, 4, sha(b"two!")), (2, 3, sha(b"one"))]);
    assert!(kept.iter().all(|v| v.modified > 0));
    let current = || std::fs::read(fx.dir().join("homes/alice/v.txt")).expect("read");
    done(
        &mut alice,
        Command::Restore {
            path: "v.txt".into(),
            version: 2,
        },
    );
    assert_eq!(current(), b"one");
    let shown: Vec<(u32, [u8; 32])> = versions(&mut alice, "v.txt")
        .iter()
        .map(|v| (v.number, v.sha256))
        .collect();
    assert_eq!(
        shown,
        vec![(1, sha(b"three")), (2, sha(b"two!")), (3, sha(b"one"))]
    );
    // Undo: the content the restore replaced is version 1.
    done(
        &mut alice,
        Command::Restore {
            path: "v.txt".into(),
            version: 1,
        },
    );
    assert_eq!(current(), b"three");
    let restore = |c: &mut R::Client, path: &str, version| {
        code_of(c.call(&Command::Restore {
            path: path.into(),
            version,
        }))
    };
    assert_eq!(
        restore(&mut alice, "v.txt", 9),
        Some(ErrorCode::NotFound),
        "no such version"
    );
    assert_eq!(current(), b"three", "a refused restore changes nothing");
    done(&mut alice, Command::Mkdir { path: "d".into() });
    assert_eq!(restore(&mut alice, "d", 1), Some(ErrorCode::BadArguments));
    assert_eq!(
        code_of(alice.call(&Command::Versions { path: "d".into() })),
        Some(ErrorCode::BadArguments)
    );
    assert_eq!(
        code_of(alice.call(&Command::Versions {
            path: "none".into()
        })),
        Some(ErrorCode::NotFound)
    );
    // A file never overwritten keeps none.
    assert!(matches!(
        upload(&mut alice, "d/new", b"x"),
        Ok(Reply::Uploaded(_))
    ));
    assert!(versions(&mut alice, "d/new").is_empty());
    server.shutdown();
}

/// `mkdirs` makes the missing parents, is fine when the directory exists, and refuses a
/// file in the way (or at the path) with a typed error.
pub fn files_mkdirs_makes_parents<R: Runtime>() {
    let fx = Fixture::new(63);
    let server = start_with_files::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    let mkdirs = |path: &str| Command::Mkdirs { path: path.into() };
    done(&mut alice, mkdirs("a/b/c"));
    done(&mut alice, mkdirs("a/b/c"));
    done(&mut alice, mkdirs("a/b"));
    done(&mut alice, mkdirs("/a/x"));
    match alice.call(&Command::Ls(ListPage {
        dir: Some("a".into()),
        from: None,
        limit: None,
    })) {
        Ok(Reply::Listing { entries, .. }) => {
            let names: Vec<(&str, FileKind)> =
                entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
            assert_eq!(names, vec![("b", FileKind::Dir), ("x", FileKind::Dir)]);
        }
        other => panic!("ls gave {other:?}"),
    }
    assert!(matches!(
        upload(&mut alice, "a/f", b"x"),
        Ok(Reply::Uploaded(_))
    ));
    for refused in ["a/f/g/h", "a/f", "a/../../x"] {
        assert_eq!(
            code_of(alice.call(&mkdirs(refused))),
            Some(ErrorCode::BadArguments),
            "{refused}"
        );
    }
    assert!(!fx.dir().join("homes/alice/a/f/g").exists());
    server.shutdown();
}

/// An invalid `inbox/FOLDER/folder.toml` is refused at the upload's commit, naming the
/// line, and nothing is stored; a valid one is stored; `mv` onto one is checked alike.
pub fn files_folder_config_checked_at_upload<R: Runtime>() {
    let fx = Fixture::new(64);
    let server = start_with_files::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    done(
        &mut alice,
        Command::Mkdirs {
            path: "inbox/default".into(),
        },
    );
    let target = "inbox/default/folder.toml";
    match upload(&mut alice, target, b"allow = [\"bob\"]\ndeny = [\"eve\"]\n") {
        Err(vserv_service::client::ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::BadArguments);
            assert!(e.message.contains("line 2"), "{}", e.message);
        }
        other => panic!("a bad folder.toml gave {other:?}"),
    }
    let stored = fx.dir().join("homes/alice/inbox/default/folder.toml");
    assert!(!stored.exists(), "a refused folder.toml is not stored");
    // Elsewhere the same bytes are an ordinary file.
    assert!(matches!(
        upload(&mut alice, "notes.toml", b"deny = []\n"),
        Ok(Reply::Uploaded(_))
    ));
    assert_eq!(
        code_of(alice.call(&Command::Mv {
            from: "notes.toml".into(),
            to: target.into(),
        })),
        Some(ErrorCode::BadArguments)
    );
    assert!(!stored.exists());
    assert!(matches!(
        upload(&mut alice, target, b"allow = ['bob', \"*\"]\n"),
        Ok(Reply::Uploaded(_))
    ));
    assert!(stored.exists());
    server.shutdown();
}
