//! Batches of transfers through the blocking driver, against the in-process fake server:
//! the shared window, interleaved replies, one failure not stopping the others, a
//! connection failure ending all of them and each resuming.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use vserv_core::ErrorCode;
use vserv_core::transfer::{MAX_FPUT_DATA, MAX_FREAD_LEN};

use super::*;
use crate::test_fake::{Fake, content};
use crate::transfer::{part_info_path, part_path};

fn options(resume: bool, window: usize) -> TransferOptions {
    TransferOptions {
        resume,
        window,
        overwrite: false,
    }
}

/// Sizes from a fixed xorshift sequence: 0 bytes, a few bytes, exact and ragged
/// multiples of both chunk sizes, and random ones up to about 20 chunks.
fn sizes(count: usize, seed: u64) -> Vec<usize> {
    let mut fixed = vec![
        0,
        1,
        MAX_FPUT_DATA,
        3 * MAX_FREAD_LEN,
        2 * MAX_FPUT_DATA + 17,
    ];
    let mut state = seed | 1;
    while fixed.len() < count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        fixed.push((state % (20 * MAX_FPUT_DATA as u64)) as usize);
    }
    fixed.truncate(count);
    fixed
}

/// Writes one local file per size; the uploads put `name{i}` under `dir/`.
fn local_files(dir: &Path, sizes: &[usize]) -> (Vec<Upload>, Vec<Vec<u8>>) {
    let mut uploads = Vec::new();
    let mut datas = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let data = content(len, i as u8);
        let local = dir.join(format!("src{i}"));
        std::fs::write(&local, &data).unwrap();
        uploads.push(Upload {
            local,
            remote: format!("dir/name{i}"),
        });
        datas.push(data);
    }
    (uploads, datas)
}

/// Records every progress call; checks each file's progress never goes back.
#[derive(Default)]
struct Progress(HashMap<usize, (u64, u64)>);

impl Progress {
    fn record(&mut self, index: usize, done: u64, total: u64) {
        assert!(done <= total, "{index}: {done} of {total}");
        if let Some(&(last, _)) = self.0.get(&index) {
            assert!(done >= last, "{index}: progress went back");
        }
        self.0.insert(index, (done, total));
    }
}

fn round_trip(window: usize, parallel: usize, trickle: bool, count: usize, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let sizes = sizes(count, seed);
    let (uploads, datas) = local_files(dir.path(), &sizes);
    let mut fake = Fake {
        trickle,
        ..Fake::default()
    };
    let mut progress = Progress::default();
    let results = put_many(
        &mut fake,
        &uploads,
        &options(false, window),
        parallel,
        &mut |i, d, t| progress.record(i, d, t),
    );
    assert_eq!(results.len(), count);
    for (i, result) in results.iter().enumerate() {
        let out = result.as_ref().unwrap();
        assert_eq!(out.size, sizes[i] as u64);
        assert_eq!(out.sha256, <[u8; 32]>::from(Sha256::digest(&datas[i])));
        assert_eq!(fake.files[&format!("dir/name{i}")], datas[i], "file {i}");
        let len = sizes[i] as u64;
        assert_eq!(progress.0.get(&i), Some(&(len, len)), "file {i}");
    }
    assert!(
        fake.most_outstanding <= window,
        "{} requests outstanding with a window of {window}",
        fake.most_outstanding
    );
    let open = parallel.min(window).min(count);
    assert!(fake.most_open <= open, "{} open", fake.most_open);
    assert!(fake.most_open >= open.min(2), "the uploads did not overlap");
    assert!(fake.uploads.is_empty() && fake.parked.is_empty());

    let downloads: Vec<Download> = (0..count)
        .map(|i| Download {
            remote: format!("dir/name{i}"),
            local: dir.path().join(format!("dst{i}")),
        })
        .collect();
    fake.most_outstanding = 0;
    fake.most_open = 0;
    let mut progress = Progress::default();
    let results = get_many(
        &mut fake,
        &downloads,
        &options(false, window),
        parallel,
        &mut |i, d, t| progress.record(i, d, t),
    );
    for (i, result) in results.iter().enumerate() {
        let out = result.as_ref().unwrap();
        assert_eq!(out.size, sizes[i] as u64);
        assert_eq!(std::fs::read(&downloads[i].local).unwrap(), datas[i]);
        assert!(!part_path(&downloads[i].local).exists());
        assert!(!part_info_path(&downloads[i].local).exists());
        let len = sizes[i] as u64;
        assert_eq!(progress.0.get(&i), Some(&(len, len)), "file {i}");
    }
    assert!(fake.most_outstanding <= window, "{}", fake.most_outstanding);
    assert!(fake.most_open <= open, "{} open", fake.most_open);
    assert!(
        fake.most_open >= open.min(2),
        "the downloads did not overlap"
    );
    assert!(fake.downloads.is_empty(), "downloads were not closed");
}

#[test]
fn several_uploads_and_downloads_share_the_window() {
    round_trip(16, 4, false, 9, 0x5eed);
}

#[test]
fn replies_trickling_in_are_matched_to_their_transfers() {
    round_trip(7, 3, true, 7, 0xfeed);
}

#[test]
fn more_transfers_than_the_window_still_stay_within_it() {
    round_trip(3, 64, false, 8, 0xbeef);
    round_trip(1, 4, true, 4, 0xcafe);
}

#[test]
fn the_window_is_split_between_open_transfers() {
    // Two large uploads with a window of 8: each may keep at most 4 chunks in flight,
    // and together they fill the window.
    let dir = tempfile::tempdir().unwrap();
    let (uploads, _) = local_files(dir.path(), &[40 * MAX_FPUT_DATA, 40 * MAX_FPUT_DATA]);
    let mut fake = Fake::default();
    let results = put_many(
        &mut fake,
        &uploads,
        &options(false, 8),
        2,
        &mut |_, _, _| {},
    );
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fake.most_outstanding, 8);
    assert_eq!(fake.most_open, 2);
    assert_eq!(fake.most_shared_chunks, 4);
}

#[test]
fn one_failing_transfer_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = sizes(6, 0xabc);
    sizes.push(7 * MAX_FPUT_DATA + 3);
    let (mut uploads, datas) = local_files(dir.path(), &sizes);
    // 1: a local file that does not exist; 2: refused by the server (quota);
    // 4: the same path as 3, uploaded at the same time (refused while 3 is open);
    // 6: its chunks are refused (a failed write on the server).
    uploads[1].local = dir.path().join("missing");
    uploads[4].remote = uploads[3].remote.clone();
    let mut fake = Fake::default();
    fake.refuse.insert(uploads[2].remote.clone());
    fake.refuse_chunks.insert(uploads[6].remote.clone());
    let results = put_many(
        &mut fake,
        &uploads,
        &options(false, 8),
        7,
        &mut |_, _, _| {},
    );
    assert!(
        matches!(&results[1], Err(TransferFailure::Local { path, .. }) if *path == uploads[1].local),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(&results[2], Err(TransferFailure::Client(ClientError::Server(e))) if e.code == ErrorCode::TooLarge),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(&results[4], Err(TransferFailure::Client(ClientError::Server(e))) if e.code == ErrorCode::Conflict),
        "{:?}",
        results[4]
    );
    for i in [0, 3, 5] {
        assert!(results[i].is_ok(), "{i}: {:?}", results[i]);
        assert_eq!(fake.files[&uploads[i].remote], datas[i]);
    }
    assert!(
        matches!(&results[6], Err(TransferFailure::Client(ClientError::Server(e))) if e.code == ErrorCode::Internal),
        "{:?}",
        results[6]
    );
    assert!(!fake.files.contains_key(&uploads[2].remote));
    assert!(!fake.files.contains_key(&uploads[6].remote));
    assert!(fake.uploads.is_empty(), "an upload was left open");
    // The failed upload was parked with fclose, for a resume.
    assert!(fake.parked.contains_key(&uploads[6].remote));
    assert_eq!(fake.parked.len(), 1, "{:?}", fake.parked.keys());

    // Downloads: the server lies about one hash, one file does not exist, and two
    // downloads name the same local file.
    fake.lie_about.insert(uploads[3].remote.clone());
    let target = |name: &str| dir.path().join(name);
    std::fs::write(target("d3"), b"old").unwrap();
    let downloads = vec![
        Download {
            remote: uploads[0].remote.clone(),
            local: target("d0"),
        },
        Download {
            remote: "no/such/file".into(),
            local: target("d1"),
        },
        Download {
            remote: uploads[3].remote.clone(),
            local: target("d3"),
        },
        Download {
            remote: uploads[5].remote.clone(),
            local: target("d5"),
        },
        Download {
            remote: uploads[0].remote.clone(),
            local: dir.path().join(".").join("d0"),
        },
    ];
    let replace = TransferOptions {
        overwrite: true,
        ..options(false, 8)
    };
    let results = get_many(&mut fake, &downloads, &replace, 4, &mut |_, _, _| {});
    assert_eq!(std::fs::read(target("d0")).unwrap(), datas[0]);
    assert!(
        matches!(&results[1], Err(TransferFailure::Client(ClientError::Server(e))) if e.code == ErrorCode::NotFound),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(TransferFailure::Integrity)),
        "{:?}",
        results[2]
    );
    assert_eq!(std::fs::read(target("d3")).unwrap(), b"old");
    assert!(!part_path(&target("d3")).exists());
    assert_eq!(std::fs::read(target("d5")).unwrap(), datas[5]);
    assert!(
        matches!(&results[4], Err(TransferFailure::DuplicateTarget { path }) if *path == downloads[4].local),
        "{:?}",
        results[4]
    );
    assert!(results[0].is_ok() && results[3].is_ok());
    assert!(fake.downloads.is_empty(), "a download was left open");
}

#[test]
fn a_connection_failure_ends_every_transfer_and_each_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        12 * MAX_FPUT_DATA + 5,
        9 * MAX_FPUT_DATA,
        7 * MAX_FPUT_DATA + 1,
        3000,
    ];
    let (uploads, mut datas) = local_files(dir.path(), &sizes);
    let mut fake = Fake {
        break_at: Some(14),
        ..Fake::default()
    };
    let results = put_many(
        &mut fake,
        &uploads,
        &options(false, 6),
        3,
        &mut |_, _, _| {},
    );
    assert!(results.iter().all(Result::is_err), "{results:?}");
    let direct = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(TransferFailure::Client(ClientError::ConnectionClosed))
            )
        })
        .count();
    assert_eq!(direct, 1, "{results:?}");
    assert!(
        matches!(results[3], Err(TransferFailure::Interrupted { .. })),
        "{:?}",
        results[3]
    );
    let parked: Vec<u64> = (0..3)
        .map(|i| fake.parked[&uploads[i].remote].0.offset)
        .collect();
    assert!(parked.iter().all(|&p| p > 0), "{parked:?}");
    // The third file changed meanwhile: its upload starts again from 0.
    datas[2] = content(sizes[2], 99);
    std::fs::write(&uploads[2].local, &datas[2]).unwrap();

    fake.broken = false;
    fake.break_at = None;
    let results = put_many(&mut fake, &uploads, &options(true, 6), 3, &mut |_, _, _| {});
    let resumed: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().resumed_from)
        .collect();
    assert_eq!(resumed, [parked[0], parked[1], 0, 0]);
    for (i, upload) in uploads.iter().enumerate() {
        assert_eq!(fake.files[&upload.remote], datas[i], "file {i}");
    }

    // Downloads of the same files, interrupted, then resumed from the partial copies.
    let downloads: Vec<Download> = uploads
        .iter()
        .enumerate()
        .map(|(i, u)| Download {
            remote: u.remote.clone(),
            local: dir.path().join(format!("dst{i}")),
        })
        .collect();
    fake.chunks = 0;
    fake.break_at = Some(20);
    let results = get_many(
        &mut fake,
        &downloads,
        &options(false, 6),
        3,
        &mut |_, _, _| {},
    );
    assert!(results.iter().all(Result::is_err), "{results:?}");
    let partial: Vec<u64> = downloads
        .iter()
        .map(|d| std::fs::metadata(part_path(&d.local)).map_or(0, |m| m.len()))
        .collect();
    assert!(partial[..3].iter().all(|&p| p > 0), "{partial:?}");
    assert!(downloads.iter().all(|d| !d.local.exists()));
    // A corrupted partial copy is caught by the hash and downloaded again from 0.
    let part = part_path(&downloads[1].local);
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&part, bytes).unwrap();

    fake.broken = false;
    fake.break_at = None;
    let results = get_many(
        &mut fake,
        &downloads,
        &options(true, 6),
        3,
        &mut |_, _, _| {},
    );
    let resumed: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().resumed_from)
        .collect();
    assert_eq!(resumed, [partial[0], 0, partial[2], partial[3]]);
    for (i, d) in downloads.iter().enumerate() {
        assert_eq!(std::fs::read(&d.local).unwrap(), datas[i], "file {i}");
        assert!(!part_path(&d.local).exists());
    }
    assert!(fake.downloads.is_empty());
}

#[test]
fn an_empty_batch_does_nothing() {
    let mut fake = Fake::default();
    assert!(put_many(&mut fake, &[], &options(false, 8), 4, &mut |_, _, _| {}).is_empty());
    assert!(get_many(&mut fake, &[], &options(false, 8), 4, &mut |_, _, _| {}).is_empty());
    assert_eq!(fake.next_request, 0);
}
