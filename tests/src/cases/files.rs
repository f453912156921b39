//! Files over the protocol: upload and download, the directory commands, paged listings.

use vserv_core::ErrorCode;
use vserv_core::commands::{Command, ListPage, Reply};

use crate::clients::*;
use crate::fixture::*;
use crate::{Fixture, Runtime, TestClient, TestServer};

fn page(dir: Option<&str>, from: Option<&str>, limit: Option<u32>) -> ListPage {
    ListPage {
        dir: dir.map(Into::into),
        from: from.map(Into::into),
        limit,
    }
}

/// A small upload (`fopen`, `fput`, `fdone`) and its download (`fget`, `fread`, `fclose`)
/// over the protocol give identical bytes; a wrong hash is error 9 and changes nothing.
pub fn files_upload_download_round_trip<R: Runtime>() {
    use vserv_core::transfer::{
        FcloseArgs, FdoneArgs, FgetArgs, FileHasher, FopenArgs, FreadArgs, MAX_FPUT_DATA,
        MAX_FREAD_LEN,
    };
    let sha = |data: &[u8]| {
        let mut h = FileHasher::new();
        h.update(data);
        h.finish()
    };
    let fx = Fixture::new(61);
    let server = start_with_files::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    let data: Vec<u8> = (0..MAX_FPUT_DATA * 2 + 123)
        .map(|i| (i % 251) as u8)
        .collect();
    let upload = |c: &mut R::Client, claimed: [u8; 32]| {
        let open = match c.call(&Command::Fopen(FopenArgs {
            path: "up.bin".into(),
            size: data.len() as u64,
            resume: false,
        })) {
            Ok(Reply::Opened(o)) => o,
            other => panic!("fopen gave {other:?}"),
        };
        assert_eq!(open.offset, 0);
        for (i, chunk) in data.chunks(MAX_FPUT_DATA).enumerate() {
            let put = Command::Fput {
                id: open.id,
                offset: (i * MAX_FPUT_DATA) as u64,
                data: chunk.to_vec(),
            };
            assert_eq!(c.call(&put).ok(), Some(Reply::Done));
        }
        c.call(&Command::Fdone(FdoneArgs {
            id: open.id,
            sha256: claimed,
        }))
    };
    match upload(&mut alice, sha(&data)) {
        Ok(Reply::Uploaded(d)) => {
            assert_eq!(d.size, data.len() as u64);
            assert_eq!(d.sha256, sha(&data));
        }
        other => panic!("fdone gave {other:?}"),
    }
    // A wrong hash: integrity error, the file stays as it was.
    assert_eq!(
        code_of(upload(&mut alice, [0; 32])),
        Some(ErrorCode::Integrity)
    );
    let get = match alice.call(&Command::Fget(FgetArgs {
        path: "up.bin".into(),
    })) {
        Ok(Reply::Download(g)) => g,
        other => panic!("fget gave {other:?}"),
    };
    assert_eq!(get.size, data.len() as u64);
    assert_eq!(get.sha256, sha(&data));
    let mut back = Vec::new();
    while back.len() < data.len() {
        let len = (data.len() - back.len()).min(MAX_FREAD_LEN);
        let read = Command::Fread(FreadArgs {
            id: get.id,
            offset: back.len() as u64,
            len: u32::try_from(len).expect("chunk length"),
        });
        match alice.call(&read) {
            Ok(Reply::Data(d)) => back.extend(d.data),
            other => panic!("fread gave {other:?}"),
        }
    }
    assert!(back == data, "downloaded bytes differ");
    done(&mut alice, Command::Fclose(FcloseArgs { id: get.id }));
    assert_eq!(
        code_of(alice.call(&Command::Fclose(FcloseArgs { id: get.id }))),
        Some(ErrorCode::NotFound)
    );
    server.shutdown();
}

/// `mkdir`, `cd`, `pwd`, `ls`, `lsd`, `stat`, `mv`, `rmdir` and `del` over the protocol; the
/// errors are typed and the session goes on.
pub fn files_round_trip<R: Runtime>() {
    use vserv_core::commands::FileKind;
    let fx = Fixture::new(60);
    let server = start_with_files::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let cwd = |c: &mut R::Client, cmd: Command| c.call(&cmd).ok();
    assert_eq!(cwd(&mut alice, Command::Pwd), Some(Reply::Cwd("/".into())));
    done(
        &mut alice,
        Command::Mkdir {
            path: "docs".into(),
        },
    );
    done(
        &mut alice,
        Command::Mkdir {
            path: "docs/old".into(),
        },
    );
    assert_eq!(
        cwd(&mut alice, Command::Cd { dir: "docs".into() }),
        Some(Reply::Cwd("/docs".into()))
    );
    assert_eq!(
        cwd(&mut alice, Command::Pwd),
        Some(Reply::Cwd("/docs".into()))
    );
    // Files appear through the tree (uploads come later).
    std::fs::write(fx.dir().join("homes/alice/docs/a.txt"), b"hello").expect("write");
    let (entries, next) = listing(&mut alice, Command::Ls(ListPage::default()));
    assert_eq!(next, None);
    let shown: Vec<(&str, FileKind, u64)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(
        shown,
        vec![("a.txt", FileKind::File, 5), ("old", FileKind::Dir, 0)]
    );
    let (dirs, _) = listing(&mut alice, Command::Lsd(page(Some("/docs"), None, None)));
    assert_eq!(dirs.len(), 1);
    assert_eq!(dirs[0].name, "old");
    match alice.call(&Command::Stat {
        path: "a.txt".into(),
    }) {
        Ok(Reply::Stat(st)) => {
            assert_eq!((st.kind, st.size, st.sha256), (FileKind::File, 5, None));
            assert!(st.modified > 0);
        }
        other => panic!("stat gave {other:?}"),
    }
    done(
        &mut alice,
        Command::Mv {
            from: "a.txt".into(),
            to: "old/b.txt".into(),
        },
    );
    assert_eq!(
        code_of(alice.call(&Command::Rmdir { path: "old".into() })),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        code_of(alice.call(&Command::Mv {
            from: "/docs".into(),
            to: "old/inner".into()
        })),
        Some(ErrorCode::BadArguments),
        "a directory cannot move into itself"
    );
    assert_eq!(
        code_of(alice.call(&Command::Stat {
            path: "a.txt".into()
        })),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code_of(alice.call(&Command::Mkdir { path: "old".into() })),
        Some(ErrorCode::Conflict)
    );
    done(
        &mut alice,
        Command::Del {
            path: "old/b.txt".into(),
        },
    );
    done(&mut alice, Command::Rmdir { path: "old".into() });
    let (entries, _) = listing(&mut alice, Command::Ls(ListPage::default()));
    assert!(entries.is_empty());
    // Admins reach other homes as ~NAME; users do not.
    assert_eq!(
        cwd(
            &mut root,
            Command::Cd {
                dir: "~alice/docs".into()
            }
        ),
        Some(Reply::Cwd("~alice/docs".into()))
    );
    assert_eq!(
        code_of(alice.call(&Command::Ls(page(Some("~root"), None, None)))),
        Some(ErrorCode::Forbidden)
    );
    // A few escapes.
    for path in [
        "..",
        "../../etc",
        "a/../../x",
        "C:\\x",
        "con",
        "x\u{202E}y",
        ".vserv-x",
    ] {
        assert_eq!(
            code_of(alice.call(&Command::Mkdir { path: path.into() })),
            Some(ErrorCode::BadArguments),
            "{path:?}"
        );
    }
    assert_eq!(
        cwd(&mut alice, Command::Pwd),
        Some(Reply::Cwd("/docs".into()))
    );
    // Anonymous sessions get nothing.
    let mut anon = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(
        code_of(anon.call(&Command::Pwd)),
        Some(ErrorCode::Forbidden)
    );
    server.shutdown();
}

/// A directory too big for one record pages by name: every entry exactly once, in order,
/// each page within the record limit; LIMIT bounds the pages.
pub fn files_listing_pages<R: Runtime>() {
    let fx = Fixture::new(61);
    let server = start_with_files::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    done(&mut alice, Command::Mkdir { path: "big".into() });
    // 150 long names: about 40 KB of listing, more than one record holds.
    let names: Vec<String> = (0..150)
        .map(|i| format!("{i:03}-{}", "n".repeat(250)))
        .collect();
    for name in &names {
        std::fs::write(fx.dir().join("homes/alice/big").join(name), b"x").expect("write");
    }
    for limit in [None, Some(7), Some(1000)] {
        let mut from: Option<String> = None;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let (entries, next) = listing(
                &mut alice,
                Command::Ls(page(Some("big"), from.as_deref(), limit)),
            );
            pages += 1;
            assert!(!entries.is_empty());
            if let Some(l) = limit {
                assert!(entries.len() <= l as usize);
            }
            seen.extend(entries.into_iter().map(|e| e.name));
            match next {
                Some(n) => from = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, names, "limit {limit:?}");
        assert!(pages >= 3, "limit {limit:?}: {pages} pages");
    }
    // `lsd` of a directory of files: one empty page.
    let (dirs, next) = listing(&mut alice, Command::Lsd(page(Some("big"), None, None)));
    assert!(dirs.is_empty() && next.is_none());
    server.shutdown();
}
