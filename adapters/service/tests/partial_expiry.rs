//! Deleting partial uploads left unclaimed ([`FileTree::sweep_partials`], spec/files.md
//! §9): expired ones go (partial file, state, orphans and stale temporary files), fresh ones
//! and those an upload holds open stay, nothing outside `.vserv-partial/` is touched, and
//! an expiry of zero deletes nothing. On the disk tree (ages set with `File::set_modified`)
//! and on the memory tree (ages from its clock).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use vserv_core::transfer::{FdoneArgs, FputArgs};
use vserv_service::files::{
    DiskTree, FileTree, FilesConfig, MemoryTree, PartialSweep, Transfers, UploadLocks,
};

const DAY: Duration = Duration::from_secs(86_400);
const EXPIRY: Duration = Duration::from_secs(7 * 86_400);

use common::{path, sha, user};

/// The hex SHA-256 of a path as the server shows it (`/a/b`): its partial file's name on
/// disk.
fn partial_name(p: &str) -> String {
    hex::encode(sha(format!("/{p}").as_bytes()))
}

fn partial_dir(data: &Path, user: &str) -> PathBuf {
    data.join("homes").join(user).join(".vserv-partial")
}

/// The names in `dir`, sorted (none if it does not exist).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Sets the modification time of `file` to `age` before now.
fn age(file: &Path, age: Duration) {
    let when = SystemTime::now() - age;
    std::fs::File::options()
        .write(true)
        .open(file)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", file.display()));
}

/// Ages the partial file of `p` and its state.
fn age_upload(data: &Path, owner: &str, p: &str, by: Duration) {
    let dir = partial_dir(data, owner);
    let name = partial_name(p);
    age(&dir.join(&name), by);
    age(&dir.join(format!("{name}.state")), by);
}

/// Starts an upload of `size` bytes to `p` and writes `written` of them; the transfer stays
/// open (its id returned).
fn start(
    tree: &dyn FileTree,
    locks: &UploadLocks,
    transfers: &mut Transfers,
    owner: &str,
    p: &str,
    content: &[u8],
    written: usize,
) -> u32 {
    let size = content.len() as u64;
    let opened = transfers
        .fopen(tree, locks, &user(owner), &path(p), p, size, false)
        .expect("fopen");
    if written > 0 {
        transfers
            .fput(&FputArgs {
                id: opened.id,
                offset: 0,
                data: &content[..written],
            })
            .expect("fput");
    }
    opened.id
}

/// An upload of `written` of `content`'s bytes to `p`, parked (closed for a later resume).
fn park(tree: &dyn FileTree, owner: &str, p: &str, content: &[u8], written: usize) {
    let locks = UploadLocks::new();
    let mut transfers = Transfers::new();
    let id = start(tree, &locks, &mut transfers, owner, p, content, written);
    transfers.fclose(id).expect("fclose");
}

/// The offset a resumed upload of `content` to `p` continues at (the upload is closed
/// again).
fn resume_offset(tree: &dyn FileTree, owner: &str, p: &str, content: &[u8]) -> u64 {
    let locks = UploadLocks::new();
    let mut transfers = Transfers::new();
    let opened = transfers
        .fopen(
            tree,
            &locks,
            &user(owner),
            &path(p),
            p,
            content.len() as u64,
            true,
        )
        .expect("fopen resume");
    transfers.fclose(opened.id).expect("fclose");
    opened.offset
}

fn disk() -> (tempfile::TempDir, DiskTree) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = DiskTree::open(dir.path(), FilesConfig::default()).expect("disk tree");
    (dir, tree)
}

#[test]
fn an_old_partial_upload_is_deleted_and_a_fresh_one_kept() {
    let (dir, tree) = disk();
    let content = vec![7u8; 5000];
    park(&tree, "alice", "old.bin", &content, 3000);
    park(&tree, "alice", "fresh.bin", &content, 1000);
    park(&tree, "bob", "old.bin", &content, 10);
    assert_eq!(files_in(&partial_dir(dir.path(), "alice")).len(), 4);
    age_upload(dir.path(), "alice", "old.bin", 8 * DAY);
    age_upload(dir.path(), "alice", "fresh.bin", 6 * DAY);
    age_upload(dir.path(), "bob", "old.bin", 30 * DAY);

    let report = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    // The partial files take the upload's full size at fopen.
    assert_eq!(
        report,
        PartialSweep {
            removed: 2,
            bytes: 2 * (5000 + 49),
            in_use: 0,
            failed: 0,
        }
    );
    let fresh = partial_name("fresh.bin");
    assert_eq!(
        files_in(&partial_dir(dir.path(), "alice")),
        [fresh.clone(), format!("{fresh}.state")]
    );
    assert!(files_in(&partial_dir(dir.path(), "bob")).is_empty());

    // The fresh one still resumes; the deleted one starts again at 0.
    assert_eq!(resume_offset(&tree, "alice", "fresh.bin", &content), 1000);
    assert_eq!(resume_offset(&tree, "alice", "old.bin", &content), 0);

    // A second sweep finds nothing more to do.
    let again = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    assert_eq!(again, PartialSweep::default());
}

#[test]
fn the_newer_of_partial_file_and_state_counts() {
    let (dir, tree) = disk();
    let content = vec![1u8; 100];
    park(&tree, "alice", "a.bin", &content, 50);
    park(&tree, "alice", "b.bin", &content, 50);
    let pdir = partial_dir(dir.path(), "alice");
    // a: old data, recent state; b: recent data, old state. Both were written recently.
    age(&pdir.join(partial_name("a.bin")), 10 * DAY);
    age(&pdir.join(format!("{}.state", partial_name("a.bin"))), DAY);
    age(&pdir.join(partial_name("b.bin")), DAY);
    age(
        &pdir.join(format!("{}.state", partial_name("b.bin"))),
        10 * DAY,
    );
    let report = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    assert_eq!(report.removed, 0, "{report:?}");
    assert_eq!(files_in(&pdir).len(), 4);
    // Seen from further in the future, both have expired.
    let report = tree
        .sweep_partials(SystemTime::now() + 7 * DAY, EXPIRY)
        .expect("sweep");
    assert_eq!(report.removed, 2, "{report:?}");
    assert!(files_in(&pdir).is_empty());
}

#[test]
fn an_open_upload_is_never_deleted_however_old() {
    let (dir, tree) = disk();
    let content: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let locks = UploadLocks::new();
    let mut transfers = Transfers::new();
    let id = start(
        &tree,
        &locks,
        &mut transfers,
        "alice",
        "big.bin",
        &content,
        16_000,
    );
    age_upload(dir.path(), "alice", "big.bin", 100 * DAY);

    let report = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    assert_eq!(
        report,
        PartialSweep {
            in_use: 1,
            ..PartialSweep::default()
        }
    );
    assert_eq!(files_in(&partial_dir(dir.path(), "alice")).len(), 2);
    // However far in the future.
    let report = tree
        .sweep_partials(SystemTime::now() + 3650 * DAY, EXPIRY)
        .expect("sweep");
    assert_eq!(report.in_use, 1);
    assert_eq!(report.removed, 0);

    // The upload goes on undisturbed and completes.
    transfers
        .fput(&FputArgs {
            id,
            offset: 16_000,
            data: &content[16_000..32_000],
        })
        .expect("fput");
    transfers
        .fput(&FputArgs {
            id,
            offset: 32_000,
            data: &content[32_000..],
        })
        .expect("fput");
    let done = transfers
        .fdone(
            &tree,
            &FdoneArgs {
                id,
                sha256: sha(&content),
            },
        )
        .expect("fdone");
    assert_eq!(done.size, content.len() as u64);
    assert_eq!(
        tree.read_file(&user("alice"), &path("big.bin"))
            .expect("read"),
        content
    );
    assert!(files_in(&partial_dir(dir.path(), "alice")).is_empty());
}

#[test]
fn an_upload_is_swept_once_its_connection_is_gone() {
    let (dir, tree) = disk();
    let content = vec![3u8; 20_000];
    let locks = UploadLocks::new();
    let mut transfers = Transfers::new();
    start(
        &tree,
        &locks,
        &mut transfers,
        "alice",
        "x.bin",
        &content,
        10_000,
    );
    assert!(locks.is_locked(&user("alice"), &path("x.bin")));
    age_upload(dir.path(), "alice", "x.bin", 8 * DAY);
    assert_eq!(
        tree.sweep_partials(SystemTime::now(), EXPIRY)
            .expect("sweep")
            .in_use,
        1
    );

    // The connection ends: the upload is parked (its state saved now) and unlocked.
    drop(transfers);
    assert!(!locks.is_locked(&user("alice"), &path("x.bin")));
    let report = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    assert_eq!(report, PartialSweep::default(), "the state was just saved");
    age_upload(dir.path(), "alice", "x.bin", 8 * DAY);
    let report = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    assert_eq!((report.removed, report.in_use), (1, 0), "{report:?}");
    assert!(files_in(&partial_dir(dir.path(), "alice")).is_empty());
}

#[test]
fn orphans_and_stale_temporary_files_go_too() {
    let (dir, tree) = disk();
    let content = vec![9u8; 300];
    park(&tree, "alice", "keep.bin", &content, 100);
    let pdir = partial_dir(dir.path(), "alice");
    let lone_state = format!("{}.state", partial_name("gone-a.bin"));
    let lone_partial = partial_name("gone-b.bin");
    let fresh_orphan = partial_name("fresh-orphan.bin");
    let tmp = ".vserv-tmp-1234-5";
    let fresh_tmp = ".vserv-tmp-1234-6";
    for (name, len, old) in [
        (lone_state.as_str(), 49, true),
        (lone_partial.as_str(), 1234, true),
        (fresh_orphan.as_str(), 10, false),
        (tmp, 49, true),
        (fresh_tmp, 49, false),
    ] {
        std::fs::write(pdir.join(name), vec![0u8; len]).expect("write");
        if old {
            age(&pdir.join(name), 9 * DAY);
        }
    }
    let report = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    assert_eq!(
        report,
        PartialSweep {
            removed: 3,
            bytes: 49 + 1234 + 49,
            in_use: 0,
            failed: 0,
        }
    );
    let keep = partial_name("keep.bin");
    let mut left = vec![
        fresh_orphan,
        keep.clone(),
        format!("{keep}.state"),
        fresh_tmp.to_owned(),
    ];
    left.sort();
    assert_eq!(files_in(&pdir), left);
}

#[test]
fn nothing_outside_the_partial_directory_is_touched() {
    let (dir, tree) = disk();
    let content = vec![5u8; 1000];
    park(&tree, "alice", "old.bin", &content, 500);
    age_upload(dir.path(), "alice", "old.bin", 30 * DAY);
    let home = dir.path().join("homes").join("alice");
    let pdir = partial_dir(dir.path(), "alice");
    let lookalike = partial_name("other.bin");

    // Old files that look like partial uploads, but are elsewhere: in the home, in a
    // directory of it, in the data directory, and in a home without a partial directory.
    std::fs::create_dir(home.join("docs")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("homes").join("carol")).expect("mkdir");
    let outside = [
        home.join(&lookalike),
        home.join(format!("{lookalike}.state")),
        home.join("docs").join(&lookalike),
        home.join("report.txt"),
        dir.path().join(&lookalike),
        dir.path().join("homes").join("carol").join(&lookalike),
        dir.path().join("homes").join(&lookalike),
    ];
    for file in &outside {
        std::fs::write(file, b"precious").expect("write");
        age(file, 365 * DAY);
    }
    // Inside the partial directory: a name the server does not make, a directory and a
    // symlink with partial names (the symlink pointing at an old file outside).
    let unknown = pdir.join("notes.txt");
    std::fs::write(&unknown, b"?").expect("write");
    age(&unknown, 365 * DAY);
    let a_dir = pdir.join(partial_name("a-directory"));
    std::fs::create_dir(&a_dir).expect("mkdir");
    let link = pdir.join(partial_name("a-link"));
    std::os::unix::fs::symlink(&outside[3], &link).expect("symlink");
    // A symlinked partial directory in another home, pointing at an old lookalike.
    let dave = dir.path().join("homes").join("dave");
    std::fs::create_dir(&dave).expect("mkdir");
    let target = dir.path().join("elsewhere");
    std::fs::create_dir(&target).expect("mkdir");
    let target_file = target.join(&lookalike);
    std::fs::write(&target_file, b"precious").expect("write");
    age(&target_file, 365 * DAY);
    std::os::unix::fs::symlink(&target, dave.join(".vserv-partial")).expect("symlink");

    let report = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    // Only the parked upload went; the directory, the symlink and dave's symlinked
    // partial directory were refused (and counted as failures).
    assert_eq!(report.removed, 1, "{report:?}");
    assert_eq!(report.bytes, 1000 + 49, "{report:?}");
    assert_eq!(report.failed, 3, "{report:?}");
    for file in outside.iter().chain([&unknown, &target_file]) {
        assert!(file.is_file(), "{} was removed", file.display());
    }
    assert!(a_dir.is_dir());
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        files_in(&pdir),
        {
            let mut v = vec![
                "notes.txt".to_owned(),
                partial_name("a-directory"),
                partial_name("a-link"),
            ];
            v.sort();
            v
        },
        "only the expired upload went"
    );
}

#[test]
fn a_zero_expiry_deletes_nothing() {
    let (dir, tree) = disk();
    let content = vec![2u8; 64];
    park(&tree, "alice", "ancient.bin", &content, 32);
    age_upload(dir.path(), "alice", "ancient.bin", 3650 * DAY);
    let report = tree
        .sweep_partials(SystemTime::now(), Duration::ZERO)
        .expect("sweep");
    assert_eq!(report, PartialSweep::default());
    assert_eq!(files_in(&partial_dir(dir.path(), "alice")).len(), 2);
    assert_eq!(resume_offset(&tree, "alice", "ancient.bin", &content), 32);
}

#[test]
fn a_sweep_creates_no_home() {
    let (dir, tree) = disk();
    let report = tree
        .sweep_partials(SystemTime::now(), EXPIRY)
        .expect("sweep");
    assert_eq!(report, PartialSweep::default());
    assert!(files_in(&dir.path().join("homes")).is_empty());
}

/// A memory tree whose clock (Unix seconds) the test moves.
fn memory() -> (Arc<AtomicU64>, MemoryTree) {
    let clock = Arc::new(AtomicU64::new(1_700_000_000));
    let read = clock.clone();
    let tree = MemoryTree::with_clock(
        FilesConfig::default(),
        Arc::new(move || read.load(Ordering::SeqCst)),
    );
    (clock, tree)
}

fn at(clock: &AtomicU64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst))
}

#[test]
fn the_memory_tree_sweeps_the_same_way() {
    let (clock, tree) = memory();
    let content = vec![4u8; 2000];
    park(&tree, "alice", "old.bin", &content, 1500);
    park(&tree, "bob", "old.bin", &content, 100);
    let locks = UploadLocks::new();
    let mut transfers = Transfers::new();
    let open = start(
        &tree,
        &locks,
        &mut transfers,
        "alice",
        "open.bin",
        &content,
        700,
    );
    clock.fetch_add(6 * DAY.as_secs(), Ordering::SeqCst);
    park(&tree, "alice", "fresh.bin", &content, 10);
    clock.fetch_add(2 * DAY.as_secs(), Ordering::SeqCst);

    // Zero disables.
    let report = tree
        .sweep_partials(at(&clock), Duration::ZERO)
        .expect("sweep");
    assert_eq!(report, PartialSweep::default());

    let report = tree.sweep_partials(at(&clock), EXPIRY).expect("sweep");
    assert_eq!(
        report,
        PartialSweep {
            removed: 2,
            bytes: 2 * 2000,
            in_use: 1,
            failed: 0,
        }
    );
    assert_eq!(resume_offset(&tree, "alice", "old.bin", &content), 0);
    assert_eq!(resume_offset(&tree, "bob", "old.bin", &content), 0);
    assert_eq!(resume_offset(&tree, "alice", "fresh.bin", &content), 10);

    // The open upload continues; once parked and expired, it goes too.
    transfers
        .fput(&FputArgs {
            id: open,
            offset: 700,
            data: &content[700..900],
        })
        .expect("fput");
    transfers.fclose(open).expect("fclose");
    assert_eq!(resume_offset(&tree, "alice", "open.bin", &content), 900);
    clock.fetch_add(8 * DAY.as_secs(), Ordering::SeqCst);
    let report = tree.sweep_partials(at(&clock), EXPIRY).expect("sweep");
    // open.bin, old.bin and bob's old.bin (re-opened by the resume checks above, which
    // wrote their states) and fresh.bin.
    assert_eq!(report.removed, 4, "{report:?}");
    assert_eq!(report.in_use, 0, "{report:?}");
    assert_eq!(resume_offset(&tree, "alice", "open.bin", &content), 0);
}
