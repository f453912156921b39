//! The file tree's policy is written once over two storage backends: each case here is one
//! test body run against the disk tree and the memory tree, and must give the same answers
//! on both (hidden records, recorded hashes, partial uploads and their quota, expiry,
//! usage counts).

use std::time::{Duration, SystemTime};

use vserv_core::transfer::{FileHasher, UploadState};
use vserv_service::accounts::UserName;
use vserv_service::files::{
    DiskTree, FileError, FileTree, FilesConfig, MemoryTree, PartialSweep, UserPath,
};

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

fn sha(data: &[u8]) -> [u8; 32] {
    let mut hasher = FileHasher::new();
    hasher.update(data);
    hasher.finish()
}

/// Runs `case` on a fresh disk tree and a fresh memory tree of `config`, each named in
/// failure messages.
fn on_both(config: FilesConfig, case: impl Fn(&str, &dyn FileTree)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = DiskTree::open(dir.path(), config).expect("disk tree");
    case("disk", &disk);
    let memory = MemoryTree::new(config);
    case("memory", &memory);
}

const STORE: &str = ".vserv-records-test";

#[test]
fn records_are_hidden_uncounted_move_with_their_directory_and_go_with_it() {
    on_both(FilesConfig::default(), |tree, t| {
        let u = name("alice");
        t.mkdir(&u, &path("d")).expect("mkdir");
        assert_eq!(
            t.read_record(&u, &path("d"), STORE, "r1").expect("read"),
            None
        );
        assert_eq!(
            t.list_records(&u, &path("d"), STORE).expect("list"),
            Vec::<String>::new()
        );
        t.write_record(&u, &path("d"), STORE, "r2", b"two")
            .expect("write");
        t.write_record(&u, &path("d"), STORE, "r1", b"one")
            .expect("write");
        t.write_record(&u, &path("d"), STORE, "r1", b"uno")
            .expect("rewrite");
        assert_eq!(
            t.list_records(&u, &path("d"), STORE).expect("list"),
            vec!["r1".to_string(), "r2".to_string()],
            "{tree}"
        );
        assert_eq!(t.usage(&u).expect("usage"), 0, "{tree}: records are free");
        assert!(t.list(&u, &path("d")).expect("ls").is_empty(), "{tree}");
        assert_eq!(
            t.sweep_record_temps(&u, &path("d"), STORE).expect("sweep"),
            0,
            "{tree}: no write left a temporary file"
        );
        t.rename(&u, &path("d"), &path("e")).expect("mv");
        assert_eq!(
            t.read_record(&u, &path("e"), STORE, "r1").expect("read"),
            Some(b"uno".to_vec()),
            "{tree}"
        );
        assert!(matches!(
            t.read_record(&u, &path("d"), STORE, "r1"),
            Err(FileError::NotFound(_))
        ));
        assert!(t.write_record(&u, &path("e"), "plain", "r", b"x").is_err());
        assert!(t.write_record(&u, &path("e"), STORE, "../r", b"x").is_err());
        t.rmdir(&u, &path("e"))
            .expect("rmdir: records do not keep it");
        t.mkdir(&u, &path("e")).expect("mkdir again");
        assert_eq!(
            t.list_records(&u, &path("e"), STORE).expect("list"),
            Vec::<String>::new(),
            "{tree}: the records went with the directory"
        );
    });
}

#[test]
fn a_hash_is_recorded_by_an_upload_computed_by_a_download_and_dropped_by_a_write() {
    on_both(FilesConfig::default(), |tree, t| {
        let u = name("alice");
        let data = vec![7u8; 100_000];
        t.replace_file(&u, &path("plain"), &data).expect("write");
        assert_eq!(
            t.stat(&u, &path("plain")).expect("stat").sha256,
            None,
            "{tree}"
        );
        let opened = t.open_read(&u, &path("plain")).expect("open");
        assert_eq!(opened.sha256, sha(&data), "{tree}");
        assert_eq!(opened.size, data.len() as u64);
        let mut tail = [0u8; 10];
        opened
            .reader
            .read_exact_at(99_990, &mut tail)
            .expect("read");
        assert_eq!(tail, [7u8; 10]);
        assert_eq!(
            t.stat(&u, &path("plain")).expect("stat").sha256,
            Some(sha(&data)),
            "{tree}: cached"
        );
        t.rename(&u, &path("plain"), &path("moved")).expect("mv");
        assert_eq!(
            t.stat(&u, &path("moved")).expect("stat").sha256,
            Some(sha(&data)),
            "{tree}: follows its file"
        );
        t.replace_file(&u, &path("moved"), b"new").expect("write");
        assert_eq!(
            t.stat(&u, &path("moved")).expect("stat").sha256,
            None,
            "{tree}"
        );
        // The reader opened before keeps reading what it opened.
        let mut head = [0u8; 4];
        opened.reader.read_exact_at(0, &mut head).expect("read");
        assert_eq!(head, [7u8; 4], "{tree}");
        assert!(opened.reader.read_exact_at(99_999, &mut head).is_err());
    });
}

#[test]
fn a_partial_upload_counts_at_its_declared_size_until_committed_or_discarded() {
    let config = FilesConfig {
        versions: 1,
        quota: Some(1000),
    };
    on_both(config, |tree, t| {
        let u = name("alice");
        let f = path("f");
        t.replace_file(&u, &f, &[1; 300]).expect("write");
        let mut up = t.open_partial(&u, &f, 500, false).expect("open");
        assert!(up.saved.is_none());
        assert_eq!(t.usage(&u).expect("usage"), 800, "{tree}");
        assert!(matches!(
            t.open_partial(&u, &path("g"), 201, false),
            Err(FileError::QuotaExceeded {
                needed: 201,
                usage: 800,
                quota: 1000
            })
        ));
        let data = [2u8; 500];
        up.file.write_at(0, &data[..200]).expect("write");
        let state = UploadState {
            size: 500,
            offset: 200,
            prefix_sha256: sha(&data[..200]),
        };
        up.file.checkpoint(&state).expect("checkpoint");
        drop(up);
        // Resumed with the saved state; a resume of another size starts afresh.
        let mut up = t.open_partial(&u, &f, 500, true).expect("resume");
        assert_eq!(up.saved, Some(state), "{tree}");
        let mut back = [0u8; 200];
        assert_eq!(up.file.read_at(0, &mut back).expect("read"), 200);
        assert_eq!(back, [2u8; 200], "{tree}");
        assert_eq!(t.usage(&u).expect("usage"), 800, "{tree}: counted once");
        up.file.write_at(200, &data[200..]).expect("write");
        t.commit_partial(&u, &f, up.file.as_mut(), &sha(&data))
            .expect("commit");
        drop(up);
        // 500 and the old 300 as the one version kept.
        assert_eq!(t.usage(&u).expect("usage"), 800, "{tree}");
        assert_eq!(t.read_file(&u, &f).expect("read"), data.to_vec());
        assert_eq!(t.read_version(&u, &f, 1).expect("v1"), vec![1; 300]);
        assert_eq!(
            t.stat(&u, &f).expect("stat").sha256,
            Some(sha(&data)),
            "{tree}"
        );
        let up = t.open_partial(&u, &path("g"), 150, false).expect("open");
        assert_eq!(t.usage(&u).expect("usage"), 950, "{tree}");
        drop(up);
        t.discard_partial(&u, &path("g")).expect("discard");
        assert_eq!(t.usage(&u).expect("usage"), 800, "{tree}");
        let up = t.open_partial(&u, &path("g"), 150, true).expect("open");
        assert!(up.saved.is_none(), "{tree}: discarded with its state");
        drop(up);
        t.discard_partial(&u, &path("g")).expect("discard");
        assert!(t.list(&u, &UserPath::root()).expect("ls").len() == 1);
    });
}

#[test]
fn expired_partial_uploads_are_swept_unless_open_and_the_count_follows() {
    on_both(FilesConfig::default(), |tree, t| {
        let u = name("alice");
        let expiry = Duration::from_secs(3600);
        let parked = t
            .open_partial(&u, &path("parked"), 400, false)
            .expect("open");
        drop(parked);
        let open = t.open_partial(&u, &path("open"), 300, false).expect("open");
        assert_eq!(t.usage(&u).expect("usage"), 700, "{tree}");
        assert_eq!(
            t.sweep_partials(SystemTime::now(), expiry).expect("sweep"),
            PartialSweep::default(),
            "{tree}: nothing expired yet"
        );
        let later = SystemTime::now() + 2 * expiry;
        let report = t.sweep_partials(later, expiry).expect("sweep");
        assert_eq!(
            (report.removed, report.bytes, report.in_use, report.failed),
            (1, 400, 1, 0),
            "{tree}: {report:?}"
        );
        assert_eq!(t.usage(&u).expect("usage"), 300, "{tree}");
        drop(open);
        let report = t.sweep_partials(later, expiry).expect("sweep");
        assert_eq!(
            (report.removed, report.in_use),
            (1, 0),
            "{tree}: {report:?}"
        );
        assert_eq!(t.usage(&u).expect("usage"), 0, "{tree}");
        assert_eq!(t.owners().expect("owners"), vec![u.clone()], "{tree}");
        assert!(t.archive_home(&u, "ab12").expect("archive"), "{tree}");
        assert!(!t.archive_home(&u, "ab12").expect("archive"), "{tree}");
        assert_eq!(
            t.owners().expect("owners"),
            Vec::<UserName>::new(),
            "{tree}"
        );
    });
}

#[test]
fn restore_is_undoable_counted_and_refused_over_the_quota() {
    let config = FilesConfig {
        versions: 2,
        quota: Some(100),
    };
    on_both(config, |tree, t| {
        let u = name("alice");
        t.replace_file(&u, &path("f"), &[b'a'; 40])
            .expect("write a");
        t.replace_file(&u, &path("f"), &[b'b'; 10])
            .expect("write b");
        t.replace_file(&u, &path("f"), &[b'c'; 20])
            .expect("write c");
        // f = c (20), versions 1 = b (10), 2 = a (40): 70 bytes.
        assert_eq!(t.usage(&u).expect("usage"), 70, "{tree}");
        let listed: Vec<(u32, u64, [u8; 32])> = t
            .versions(&u, &path("f"))
            .expect("versions")
            .iter()
            .map(|v| (v.number, v.size, v.sha256))
            .collect();
        assert_eq!(
            listed,
            vec![(1, 10, sha(&[b'b'; 10])), (2, 40, sha(&[b'a'; 40]))],
            "{tree}"
        );
        // Restoring a (40) adds 40 and drops nothing that frees it but version 2 (a): the
        // rotation keeps c as 1, b as 2, and a becomes the file: 20 + 10 + 40.
        t.restore(&u, &path("f"), 2).expect("restore 2");
        assert_eq!(t.read_file(&u, &path("f")).expect("read"), [b'a'; 40]);
        assert_eq!(t.read_version(&u, &path("f"), 1).expect("v1"), [b'c'; 20]);
        assert_eq!(t.usage(&u).expect("usage"), 70, "{tree}");
        // Undo.
        t.restore(&u, &path("f"), 1).expect("undo");
        assert_eq!(t.read_file(&u, &path("f")).expect("read"), [b'c'; 20]);
        assert_eq!(t.read_version(&u, &path("f"), 1).expect("v1"), [b'a'; 40]);
        // Over the quota: a 60-byte file beside them, then a restore that would add 40.
        t.replace_file(&u, &path("g"), &[b'g'; 20])
            .expect("write g");
        let before = t.usage(&u).expect("usage");
        assert!(
            matches!(
                t.restore(&u, &path("f"), 1),
                Err(FileError::QuotaExceeded { .. })
            ),
            "{tree}"
        );
        assert_eq!(t.read_file(&u, &path("f")).expect("read"), [b'c'; 20]);
        assert_eq!(t.usage(&u).expect("usage"), before, "{tree}");
        assert!(matches!(
            t.restore(&u, &path("f"), 3),
            Err(FileError::NoVersion { version: 3, .. })
        ));
        t.mkdir_all(&u, &path("d/e")).expect("mkdir -p");
        assert!(matches!(
            t.restore(&u, &path("d"), 1),
            Err(FileError::IsADirectory(_))
        ));
        assert!(matches!(
            t.mkdir_all(&u, &path("f/x")),
            Err(FileError::NotADirectory(_))
        ));
    });
}
