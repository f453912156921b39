//! One transfer at a time through the blocking driver, against the in-process fake server:
//! round trips, resume of uploads and downloads, integrity, target checks, typed refusals.

use sha2::{Digest, Sha256};
use vserv_core::ErrorCode;
use vserv_core::transfer::{MAX_FPUT_DATA, MAX_FREAD_LEN};

use super::*;
use crate::test_fake::{Fake, content};

const SIZE: usize = 5 * MAX_FPUT_DATA + 1234;

fn options(resume: bool, window: usize) -> TransferOptions {
    TransferOptions {
        resume,
        window,
        overwrite: false,
    }
}

#[test]
fn put_then_get_round_trip_with_window_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let data = content(40 * MAX_FREAD_LEN + 77, 1);
    std::fs::write(&src, &data).unwrap();
    let mut fake = Fake::default();
    let mut last = (0, 0);
    let put = put_with(
        &mut fake,
        &src,
        "a/b.bin",
        &options(false, 8),
        &mut |d, t| {
            assert!(d >= last.0 && d <= t);
            last = (d, t);
        },
    )
    .unwrap();
    assert_eq!(last, (data.len() as u64, data.len() as u64));
    assert_eq!(put.resumed_from, 0);
    assert_eq!(put.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
    assert_eq!(fake.files["a/b.bin"], data);
    assert!(fake.most_pending <= 8, "{}", fake.most_pending);
    assert!(fake.most_pending >= 2, "requests were not pipelined");

    let dst = dir.path().join("dst.bin");
    let got = get_with(
        &mut fake,
        "a/b.bin",
        &dst,
        &options(false, 8),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(got.sha256, put.sha256);
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    assert!(!part_path(&dst).exists() && !part_info_path(&dst).exists());
    assert!(fake.downloads.is_empty(), "the download was not closed");
}

#[test]
fn empty_files_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("empty");
    std::fs::write(&src, b"").unwrap();
    let mut fake = Fake::default();
    put(&mut fake, &src, "e", false, &mut |_, _| {}).unwrap();
    assert_eq!(fake.files["e"], b"");
    let dst = dir.path().join("e.out");
    get(&mut fake, "e", &dst, false, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), b"");
}

#[test]
fn interrupted_put_resumes_where_the_server_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let data = content(SIZE, 2);
    std::fs::write(&src, &data).unwrap();
    let mut fake = Fake {
        break_at: Some(4),
        ..Fake::default()
    };
    let err = put_with(&mut fake, &src, "f", &options(false, 2), &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(err, TransferFailure::Client(ClientError::ConnectionClosed)),
        "{err}"
    );
    assert!(!fake.files.contains_key("f"));
    let parked = fake.parked["f"].0.offset;
    assert!(parked > 0, "nothing was kept to resume");
    fake.broken = false;
    fake.break_at = None;
    let out = put_with(&mut fake, &src, "f", &options(true, 2), &mut |_, _| {}).unwrap();
    assert_eq!(out.resumed_from, parked);
    assert_eq!(fake.files["f"], data);
}

#[test]
fn put_resume_with_a_different_local_file_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, content(SIZE, 3)).unwrap();
    let mut fake = Fake {
        break_at: Some(4),
        ..Fake::default()
    };
    put(&mut fake, &src, "f", false, &mut |_, _| {}).unwrap_err();
    fake.broken = false;
    fake.break_at = None;
    let other = content(SIZE, 4);
    std::fs::write(&src, &other).unwrap();
    let out = put(&mut fake, &src, "f", true, &mut |_, _| {}).unwrap();
    assert_eq!(out.resumed_from, 0);
    assert_eq!(fake.files["f"], other);
}

#[test]
fn interrupted_get_resumes_from_the_partial_copy() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(SIZE, 5);
    let mut fake = Fake::default();
    fake.files.insert("f".into(), data.clone());
    fake.break_at = Some(4);
    let dst = dir.path().join("f.out");
    get_with(&mut fake, "f", &dst, &options(false, 2), &mut |_, _| {}).unwrap_err();
    assert!(!dst.exists(), "an unverified copy became visible");
    let partial = std::fs::metadata(part_path(&dst)).unwrap().len();
    assert!(partial > 0);
    fake.broken = false;
    fake.break_at = None;
    let out = get_with(&mut fake, "f", &dst, &options(true, 2), &mut |_, _| {}).unwrap();
    assert_eq!(out.resumed_from, partial);
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    assert!(!part_path(&dst).exists());
}

#[test]
fn get_resume_of_a_corrupted_partial_copy_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(SIZE, 6);
    let mut fake = Fake::default();
    fake.files.insert("f".into(), data.clone());
    fake.break_at = Some(4);
    let dst = dir.path().join("f.out");
    get_with(&mut fake, "f", &dst, &options(false, 2), &mut |_, _| {}).unwrap_err();
    let part = part_path(&dst);
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&part, bytes).unwrap();
    fake.broken = false;
    fake.break_at = None;
    let out = get_with(&mut fake, "f", &dst, &options(true, 2), &mut |_, _| {}).unwrap();
    assert_eq!(out.resumed_from, 0);
    assert_eq!(std::fs::read(&dst).unwrap(), data);
}

#[test]
fn get_with_a_wrong_hash_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake {
        lie: true,
        ..Fake::default()
    };
    fake.files.insert("f".into(), content(SIZE, 7));
    let dst = dir.path().join("f.out");
    std::fs::write(&dst, b"old").unwrap();
    let replace = TransferOptions {
        overwrite: true,
        ..TransferOptions::default()
    };
    let err = get_with(&mut fake, "f", &dst, &replace, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, TransferFailure::Integrity), "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), b"old");
    assert!(!part_path(&dst).exists() && !part_info_path(&dst).exists());
}

#[test]
fn get_refuses_an_existing_file_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(SIZE, 8);
    let mut fake = Fake::default();
    fake.files.insert("f".into(), data.clone());
    let dst = dir.path().join("f.out");
    std::fs::write(&dst, b"mine").unwrap();
    let err = get(&mut fake, "f", &dst, false, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, TransferFailure::TargetExists { .. }), "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), b"mine");
    assert_eq!(fake.chunks, 0, "data was fetched for a refused download");
    assert!(!part_path(&dst).exists());
    let replace = TransferOptions {
        overwrite: true,
        ..TransferOptions::default()
    };
    get_with(&mut fake, "f", &dst, &replace, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(&dst).unwrap(), data);
}

#[cfg(unix)]
#[test]
fn get_never_replaces_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::default();
    fake.files.insert("f".into(), content(SIZE, 9));
    let replace = TransferOptions {
        overwrite: true,
        ..TransferOptions::default()
    };
    let target = dir.path().join("target");
    std::fs::write(&target, b"keep").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    // A symlink or a directory is refused, even allowed to overwrite.
    for (path, kind) in [(&link, "symbolic link"), (&sub, "directory")] {
        let err = get_with(&mut fake, "f", path, &replace, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(&err, TransferFailure::TargetNotRegular { kind: k, .. } if *k == kind),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // So is a symlink where the partial copy would go.
    let dst = dir.path().join("new");
    std::os::unix::fs::symlink(&target, part_path(&dst)).unwrap();
    let err = get_with(&mut fake, "f", &dst, &replace, &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(err, TransferFailure::TargetNotRegular { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert_eq!(fake.chunks, 0);
}

#[test]
fn server_refusals_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = Fake::default();
    let err = get(
        &mut fake,
        "missing",
        &dir.path().join("x"),
        false,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, TransferFailure::Client(ClientError::Server(e)) if e.code == ErrorCode::NotFound),
        "{err}"
    );
    let err = put(
        &mut fake,
        &dir.path().join("nope"),
        "x",
        false,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, TransferFailure::Local { .. }), "{err}");
}
