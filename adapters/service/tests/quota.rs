//! The per-user usage and its quota (issue 11, items 6 and 7): usage is a counter kept with
//! the files, not a walk of the home; `fopen` and `fdone` count the same things; uploads of
//! one user on several connections at once, some of them parked, all go through; and the
//! free-space reserve of the disk tree.

mod common;

use std::path::Path;
use std::sync::Arc;

use vserv_core::commands::{Command, Reply, UserRole};
use vserv_core::transfer::{FcloseArgs, FdoneArgs, FdoneReply, FopenArgs, FopenReply};
use vserv_core::{ErrorCode, ErrorReply};
use vserv_service::files::{DiskTree, FileError, FileTree, FilesConfig, MemoryTree};
use vserv_service::{Service, Session};

use common::{path, sha, user};

fn service_with(tree: Arc<dyn FileTree>) -> Service {
    let node = common::node("quota", 11).files(tree).build().expect("node");
    node.accounts()
        .create("alice", UserRole::User, b"password-1", 0)
        .expect("user");
    node.service()
}

fn fopen(
    service: &Service,
    s: &mut Session,
    p: &str,
    size: u64,
    resume: bool,
) -> Result<FopenReply, ErrorReply> {
    let cmd = Command::Fopen(FopenArgs {
        path: p.into(),
        size,
        resume,
    });
    common::run(service, s, &cmd, 1_000).map(|r| match r {
        Reply::Opened(o) => o,
        other => panic!("fopen answered {other:?}"),
    })
}

fn fput(
    service: &Service,
    s: &mut Session,
    id: u32,
    offset: u64,
    data: &[u8],
) -> Result<(), ErrorReply> {
    let cmd = Command::Fput {
        id,
        offset,
        data: data.to_vec(),
    };
    common::run(service, s, &cmd, 1_000).map(|r| assert_eq!(r, Reply::Done))
}

fn fdone(
    service: &Service,
    s: &mut Session,
    id: u32,
    data: &[u8],
) -> Result<FdoneReply, ErrorReply> {
    let cmd = Command::Fdone(FdoneArgs {
        id,
        sha256: sha(data),
    });
    common::run(service, s, &cmd, 1_000).map(|r| match r {
        Reply::Uploaded(d) => d,
        other => panic!("fdone answered {other:?}"),
    })
}

fn fclose(service: &Service, s: &mut Session, id: u32) -> Result<(), ErrorReply> {
    common::run(service, s, &Command::Fclose(FcloseArgs { id }), 1_000)
        .map(|r| assert_eq!(r, Reply::Done))
}

/// One small upload (at most one fput); the step that failed, if one did.
fn upload(service: &Service, s: &mut Session, p: &str, data: &[u8]) -> Result<(), String> {
    let open =
        fopen(service, s, p, data.len() as u64, false).map_err(|e| format!("fopen: {e:?}"))?;
    fput(service, s, open.id, 0, data).map_err(|e| format!("fput: {e:?}"))?;
    fdone(service, s, open.id, data).map_err(|e| format!("fdone: {e:?}"))?;
    Ok(())
}

fn disk(dir: &Path, config: FilesConfig) -> Arc<dyn FileTree> {
    Arc::new(DiskTree::open(dir, config).expect("disk tree"))
}

/// Item 6: uploads of one user on three connections while a fourth parks, resumes and
/// restarts uploads of the same user. Every upload goes through, and the usage the tree
/// keeps equals what a fresh tree finds on the disk.
#[test]
fn uploads_go_on_while_the_same_user_parks_uploads_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = disk(dir.path(), FilesConfig::default());
    let service = service_with(tree.clone());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let parker = {
        let (service, stop) = (service.clone(), stop.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut s = common::logged_in(&service, "alice");
            let data = vec![7u8; 3_000];
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let name = format!("parked-{}", rounds % 4);
                // Parked (its state saved), resumed, parked again, then started over.
                let open = fopen(&service, &mut s, &name, 3_000, rounds.is_multiple_of(2))
                    .map_err(|e| format!("park fopen: {e:?}"))?;
                let at = usize::try_from(open.offset).unwrap_or(usize::MAX);
                if let Some(chunk) = data.get(at..at.saturating_add(1_000)) {
                    fput(&service, &mut s, open.id, open.offset, chunk)
                        .map_err(|e| format!("park fput: {e:?}"))?;
                }
                fclose(&service, &mut s, open.id).map_err(|e| format!("fclose: {e:?}"))?;
                rounds += 1;
            }
            Ok(rounds)
        })
    };
    let uploaders: Vec<_> = (0..3)
        .map(|t| {
            let service = service.clone();
            std::thread::spawn(move || -> Vec<String> {
                let mut s = common::logged_in(&service, "alice");
                let mut failures = Vec::new();
                for i in 0..150 {
                    let data = vec![u8::try_from(i % 251).unwrap_or(0); 100];
                    if let Err(e) = upload(&service, &mut s, &format!("t{t}-{i}"), &data) {
                        failures.push(e);
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = uploaders
        .into_iter()
        .flat_map(|h| h.join().expect("uploader"))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Release);
    let parked = parker.join().expect("parker");
    assert!(
        failures.is_empty(),
        "{} of 450 uploads failed, first: {}",
        failures.len(),
        failures[0]
    );
    assert!(parked.expect("parking") > 0);
    // The kept count matches the files: 450 of 100 bytes and 4 parked uploads of 3000.
    let alice = user("alice");
    let kept = tree.usage(&alice).expect("usage");
    assert_eq!(kept, 450 * 100 + 4 * 3_000);
    drop(service);
    drop(tree);
    let rebuilt = disk(dir.path(), FilesConfig::default());
    assert_eq!(rebuilt.usage(&alice).expect("usage"), kept);
}

/// Item 7: `quota_bytes = 300000`, `versions = 2`: a third 100 kB put of one path fits
/// exactly (file and two versions), so it is accepted at `fopen` and at `fdone` alike; a
/// fourth replaces the oldest version, so it fits as well. A refusal names numbers that
/// add up, on both trees.
#[test]
fn fopen_and_fdone_count_the_same_things() {
    let config = FilesConfig {
        versions: 2,
        quota: Some(300_000),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let trees = [disk(dir.path(), config), Arc::new(MemoryTree::new(config))];
    for tree in trees {
        let service = service_with(tree.clone());
        let mut s = common::logged_in(&service, "alice");
        let data = vec![5u8; 100_000];
        for round in 1..=4 {
            let open = fopen(&service, &mut s, "f", 100_000, false)
                .unwrap_or_else(|e| panic!("fopen of put {round}: {e:?}"));
            for (n, chunk) in data.chunks(vserv_core::transfer::MAX_FPUT_DATA).enumerate() {
                let cmd = Command::Fput {
                    id: open.id,
                    offset: (n * vserv_core::transfer::MAX_FPUT_DATA) as u64,
                    data: chunk.to_vec(),
                };
                common::run(&service, &mut s, &cmd, 1_000).expect("fput");
            }
            fdone(&service, &mut s, open.id, &data)
                .unwrap_or_else(|e| panic!("fdone of put {round}: {e:?}"));
        }
        let alice = user("alice");
        assert_eq!(tree.usage(&alice).expect("usage"), 300_000);
        // Full: one more byte is refused at fopen, and the message adds up.
        let refused = fopen(&service, &mut s, "g", 1, false).expect_err("over quota");
        assert_eq!(refused.code, ErrorCode::TooLarge);
        assert!(
            refused.message.contains("1 more byte")
                && refused.message.contains("300000 of 300000 bytes"),
            "{}",
            refused.message
        );
        match tree.open_partial(&alice, &path("g"), 10, false) {
            Err(FileError::QuotaExceeded {
                needed,
                usage,
                quota,
            }) => {
                assert_eq!((needed, usage, quota), (10, 300_000, 300_000));
                assert!(usage + needed > quota);
            }
            other => panic!("open_partial answered {other:?}"),
        }
    }
}

/// An open upload holds its declared size from `fopen` on: what would not fit beside it is
/// refused at its own `fopen`, and the open upload then finishes (never refused at `fdone`).
#[test]
fn an_open_upload_holds_its_size_so_fdone_is_never_refused() {
    let config = FilesConfig {
        versions: 0,
        quota: Some(300_000),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let trees = [disk(dir.path(), config), Arc::new(MemoryTree::new(config))];
    for tree in trees {
        let service = service_with(tree.clone());
        let mut a = common::logged_in(&service, "alice");
        let mut b = common::logged_in(&service, "alice");
        let big = vec![1u8; 200_000];
        let open = fopen(&service, &mut a, "big", 200_000, false).expect("fits");
        let refused = fopen(&service, &mut b, "other", 150_000, false).expect_err("held");
        assert_eq!(refused.code, ErrorCode::TooLarge, "{refused:?}");
        assert!(
            refused.message.contains("150000 more bytes")
                && refused.message.contains("200000 of 300000 bytes"),
            "{}",
            refused.message
        );
        for (n, chunk) in big.chunks(vserv_core::transfer::MAX_FPUT_DATA).enumerate() {
            let cmd = Command::Fput {
                id: open.id,
                offset: (n * vserv_core::transfer::MAX_FPUT_DATA) as u64,
                data: chunk.to_vec(),
            };
            common::run(&service, &mut a, &cmd, 1_000).expect("fput");
        }
        fdone(&service, &mut a, open.id, &big).expect("fdone");
        assert_eq!(tree.usage(&user("alice")).expect("usage"), 200_000);
        upload(&service, &mut b, "small", &[2u8; 100]).expect("room left");
    }
}

/// Item 6: the usage is a counter kept with the files, not a walk of the home. A file
/// planted on the disk behind the tree's back is not seen by uploads (nor by `usage`)
/// until the tree is opened again, when the count is rebuilt from the disk.
#[test]
fn usage_is_a_counter_rebuilt_when_the_tree_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = disk(dir.path(), FilesConfig::default());
    let service = service_with(tree.clone());
    let mut s = common::logged_in(&service, "alice");
    upload(&service, &mut s, "a", &[1u8; 100]).expect("upload");
    let alice = user("alice");
    assert_eq!(tree.usage(&alice).expect("usage"), 100);
    std::fs::write(dir.path().join("homes/alice/planted"), [0u8; 5_000]).expect("plant");
    upload(&service, &mut s, "b", &[2u8; 50]).expect("upload");
    assert_eq!(
        tree.usage(&alice).expect("usage"),
        150,
        "no walk of the home"
    );
    drop(service);
    drop(tree);
    let reopened = disk(dir.path(), FilesConfig::default());
    assert_eq!(reopened.usage(&alice).expect("usage"), 5_150);
}

/// The free-space reserve (`[files] min_free_bytes`): an upload that would leave less than
/// the reserve free on the disk is refused at `fopen`, before any data, with a clear error.
#[test]
fn uploads_that_would_eat_into_the_free_space_reserve_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree: Arc<dyn FileTree> = Arc::new(
        DiskTree::open(dir.path(), FilesConfig::default())
            .expect("disk tree")
            .with_min_free_bytes(u64::MAX / 2),
    );
    let service = service_with(tree.clone());
    let mut s = common::logged_in(&service, "alice");
    let refused = fopen(&service, &mut s, "f", 10, false).expect_err("reserve");
    assert_eq!(refused.code, ErrorCode::TooLarge, "{refused:?}");
    assert!(
        refused.message.contains("disk space"),
        "{}",
        refused.message
    );
    let alice = user("alice");
    assert!(matches!(
        tree.replace_file(&alice, &path("g"), b"data"),
        Err(FileError::DiskFull { .. })
    ));
    assert_eq!(tree.usage(&alice).expect("usage"), 0);
    let partials = dir.path().join("homes/alice/.vserv-partial");
    let left = std::fs::read_dir(&partials).map_or(0, |d| d.count());
    assert_eq!(left, 0, "nothing kept of a refused upload");
    // Without a reserve the same upload goes through.
    let tree: Arc<dyn FileTree> = Arc::new(
        DiskTree::open(dir.path(), FilesConfig::default())
            .expect("disk tree")
            .with_min_free_bytes(0),
    );
    let service = service_with(tree);
    let mut s = common::logged_in(&service, "alice");
    upload(&service, &mut s, "f", &[3u8; 10]).expect("no reserve");
}

/// Quota checks and changes never walk the home: one walk builds the count at the home's
/// first use, however many uploads, moves and deletions follow (and the partial sweep
/// never builds one).
#[test]
fn a_home_is_walked_once_not_at_every_upload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = Arc::new(DiskTree::open(dir.path(), FilesConfig::default()).expect("disk tree"));
    let service = service_with(tree.clone());
    let mut s = common::logged_in(&service, "alice");
    std::fs::create_dir_all(dir.path().join("homes/alice")).expect("home");
    // The sweep at a server's start does not walk the homes either.
    let week = std::time::Duration::from_secs(7 * 86_400);
    tree.sweep_partials(std::time::SystemTime::now(), week)
        .expect("sweep");
    assert_eq!(tree.usage_walks(), 0);
    for i in 0..50 {
        upload(&service, &mut s, &format!("f{i}"), &[1u8; 10]).expect("upload");
    }
    upload(&service, &mut s, "f0", &[2u8; 20]).expect("overwrite");
    let alice = user("alice");
    tree.rename(&alice, &path("f1"), &path("g")).expect("mv");
    tree.delete_file(&alice, &path("f2")).expect("rm");
    // 48 files of 10, one of 20 and its version of 10.
    assert_eq!(tree.usage(&alice).expect("usage"), 48 * 10 + 20 + 10);
    assert_eq!(tree.usage_walks(), 1);
}

/// A parked upload counts at its declared size until the sweep deletes it, on both trees.
#[test]
fn parked_uploads_count_until_swept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trees = [
        disk(dir.path(), FilesConfig::default()),
        Arc::new(MemoryTree::new(FilesConfig::default())),
    ];
    for tree in trees {
        let service = service_with(tree.clone());
        let mut s = common::logged_in(&service, "alice");
        let open = fopen(&service, &mut s, "parked", 5_000, false).expect("fopen");
        fput(&service, &mut s, open.id, 0, &[1u8; 100]).expect("fput");
        fclose(&service, &mut s, open.id).expect("park");
        let alice = user("alice");
        assert_eq!(tree.usage(&alice).expect("usage"), 5_000);
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 86_400);
        let swept = tree
            .sweep_partials(later, std::time::Duration::from_secs(86_400))
            .expect("sweep");
        assert_eq!(swept.removed, 1);
        assert_eq!(tree.usage(&alice).expect("usage"), 0);
    }
}

/// A deleted user's home is archived; a new user of the same name starts from an empty
/// home, so nothing of the old usage may count against them.
#[test]
fn an_archived_home_takes_its_usage_along() {
    let dir = tempfile::tempdir().expect("tempdir");
    for tree in [
        disk(
            dir.path(),
            FilesConfig {
                quota: Some(1_000),
                ..FilesConfig::default()
            },
        ),
        Arc::new(MemoryTree::new(FilesConfig {
            quota: Some(1_000),
            ..FilesConfig::default()
        })),
    ] {
        let carol = user("carol");
        tree.replace_file(&carol, &path("old"), &[1u8; 900])
            .expect("the old carol's file");
        assert_eq!(tree.usage(&carol).expect("usage"), 900);
        assert!(tree.archive_home(&carol, "old-id").expect("archived"));
        assert_eq!(tree.usage(&carol).expect("usage"), 0);
        tree.replace_file(&carol, &path("new"), &[2u8; 900])
            .expect("the new carol has her whole quota");
        assert_eq!(tree.usage(&carol).expect("usage"), 900);
    }
}
