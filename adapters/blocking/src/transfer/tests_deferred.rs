//! The scheduler driven the way a simulation drives it: no helper threads
//! ([`StdFiles::inline`]), every local work held back and run later in an order a seed
//! chooses, replies taken in between. The transfers must come out exactly as with the
//! blocking driver.

use sha2::{Digest, Sha256};
use vserv_core::transfer::MAX_FPUT_DATA;
use vserv_service::client::transfers::StdFiles;

use super::*;
use crate::test_fake::{Fake, content};

/// A xorshift step: the seed's next number.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Drives `scheduler` against `fake`, holding every work until a seeded coin (or the
/// scheduler having nothing else to wait for) says to run one, picked at random.
fn drive_deferred(
    fake: &mut Fake,
    mut scheduler: Scheduler<StdFiles>,
    seed: u64,
) -> Vec<FileResult> {
    let mut state = seed | 1;
    let mut held: Vec<LocalWork<StdFiles>> = Vec::new();
    let mut most_held = 0;
    let files = StdFiles::inline();
    loop {
        match scheduler.poll(&mut NoWait(&mut *fake), &mut |_, _, _| {}) {
            Step::Work(work) => {
                held.push(work);
                most_held = most_held.max(held.len());
            }
            Step::AwaitReply(id) => {
                if !held.is_empty() && next(&mut state).is_multiple_of(3) {
                    let at = (next(&mut state) % held.len() as u64) as usize;
                    let work = held.swap_remove(at);
                    scheduler.on_work_done(work.run(&files));
                    continue;
                }
                let reply = fake.wait_raw(id);
                scheduler.on_reply(id, reply);
            }
            Step::AwaitWork => {
                assert!(
                    !held.is_empty(),
                    "the scheduler waits for a work it never gave"
                );
                let at = (next(&mut state) % held.len() as u64) as usize;
                let work = held.swap_remove(at);
                scheduler.on_work_done(work.run(&files));
            }
            Step::Done => {
                assert!(held.is_empty(), "done with works still out");
                assert!(
                    most_held >= 2,
                    "works of several transfers were never out at once"
                );
                return scheduler.into_results();
            }
        }
    }
}

#[test]
fn works_run_late_and_out_of_order_give_the_same_transfers() {
    for seed in 1..=8u64 {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [
            0,
            1,
            MAX_FPUT_DATA,
            7 * MAX_FPUT_DATA + 3,
            90 * MAX_FPUT_DATA + 11,
            12_345,
        ];
        let mut uploads = Vec::new();
        let mut datas = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let data = content(len, (seed as u8).wrapping_add(i as u8));
            let local = dir.path().join(format!("src{i}"));
            std::fs::write(&local, &data).unwrap();
            uploads.push(Upload {
                local,
                remote: format!("f{i}"),
            });
            datas.push(data);
        }
        let mut fake = Fake {
            trickle: seed % 2 == 0,
            ..Fake::default()
        };
        let options = TransferOptions {
            window: 8,
            ..TransferOptions::default()
        };
        let puts = Scheduler::puts(&uploads, &options, 3, fake.max_outstanding());
        let results = drive_deferred(&mut fake, puts, seed);
        for (i, result) in results.iter().enumerate() {
            let out = result.as_ref().unwrap();
            assert_eq!(out.sha256, <[u8; 32]>::from(Sha256::digest(&datas[i])));
            assert_eq!(
                fake.files[&uploads[i].remote], datas[i],
                "seed {seed} file {i}"
            );
        }
        assert!(fake.most_outstanding <= 8, "{}", fake.most_outstanding);

        let downloads: Vec<Download> = (0..sizes.len())
            .map(|i| Download {
                remote: format!("f{i}"),
                local: dir.path().join(format!("dst{i}")),
            })
            .collect();
        let gets = Scheduler::gets(&downloads, &options, 3, fake.max_outstanding());
        let results = drive_deferred(&mut fake, gets, seed ^ 0x5eed);
        for (i, result) in results.iter().enumerate() {
            assert!(result.is_ok(), "seed {seed} file {i}: {result:?}");
            assert_eq!(std::fs::read(&downloads[i].local).unwrap(), datas[i]);
            assert!(!part_path(&downloads[i].local).exists());
        }
        assert!(fake.downloads.is_empty(), "a download was left open");
    }
}

#[test]
fn a_connection_failure_with_works_out_ends_cleanly_and_each_resumes() {
    for seed in 1..=6u64 {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [
            30 * MAX_FPUT_DATA + 5,
            20 * MAX_FPUT_DATA,
            9 * MAX_FPUT_DATA + 1,
        ];
        let mut fake = Fake::default();
        let mut datas = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let data = content(len, 40 + i as u8);
            fake.files.insert(format!("f{i}"), data.clone());
            datas.push(data);
        }
        let downloads: Vec<Download> = (0..sizes.len())
            .map(|i| Download {
                remote: format!("f{i}"),
                local: dir.path().join(format!("dst{i}")),
            })
            .collect();
        let options = |resume| TransferOptions {
            resume,
            window: 6,
            overwrite: false,
        };
        fake.break_at = Some(25);
        let gets = Scheduler::gets(&downloads, &options(false), 3, fake.max_outstanding());
        let results = drive_deferred(&mut fake, gets, seed);
        assert!(results.iter().all(Result::is_err), "{results:?}");
        let partial: Vec<u64> = downloads
            .iter()
            .map(|d| std::fs::metadata(part_path(&d.local)).map_or(0, |m| m.len()))
            .collect();
        assert!(partial.iter().any(|&p| p > 0), "seed {seed}: {partial:?}");
        assert!(downloads.iter().all(|d| !d.local.exists()));

        fake.broken = false;
        fake.break_at = None;
        let gets = Scheduler::gets(&downloads, &options(true), 3, fake.max_outstanding());
        let results = drive_deferred(&mut fake, gets, seed ^ 0xfeed);
        for (i, result) in results.iter().enumerate() {
            let out = result.as_ref().unwrap();
            assert_eq!(out.resumed_from, partial[i], "seed {seed} file {i}");
            assert_eq!(std::fs::read(&downloads[i].local).unwrap(), datas[i]);
        }
        assert!(fake.downloads.is_empty());
    }
}
