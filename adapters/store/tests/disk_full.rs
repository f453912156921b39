//! A write that fails for lack of space (here: the process's file size limit, which fails
//! writes exactly as a full disk does, without needing root to make one) must not leave the
//! store refusing every write until a restart: once writes can succeed again, the next
//! commit reopens the database from its journal and goes on, with every acknowledged commit
//! kept.
//!
//! The limit applies to the whole process, so the scenario runs in a child process: the test
//! runs its own binary with [`CHILD_ENV`] set.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rustix::process::{Resource, Rlimit, setrlimit};
use vserv_store::{FjallStore, Op, Store, StoreError, Table};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CHILD_ENV: &str = "VSERV_DISK_FULL_TEST_DIR";

fn put(key: &str, len: usize) -> Op {
    Op::Put {
        table: Table::Ledger,
        key: key.as_bytes().to_vec(),
        value: vec![0x5a; len],
    }
}

/// Where the journal's batches end (fjall preallocates the file with zeros).
fn journal_end(data: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    let jnl = data.join("db/0.jnl");
    let bytes = std::fs::read(jnl)?;
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Ok(u64::try_from(end)?)
}

fn limit_file_size(limit: Option<u64>) -> Result<(), rustix::io::Errno> {
    setrlimit(
        Resource::Fsize,
        Rlimit {
            current: limit,
            maximum: None,
        },
    )
}

/// Not a test of its own: the scenario, run only in the child process.
#[test]
fn disk_full_child() -> TestResult {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let data = Path::new(&dir);
    // A write past the limit raises SIGXFSZ, which would kill the process: catch it so the
    // write fails with EFBIG instead, as a write to a full disk fails with ENOSPC.
    signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        Arc::new(AtomicBool::new(false)),
    )?;
    let store = FjallStore::open(data)?;
    for i in 0..20 {
        store.commit(vec![put(&format!("before-{i:02}"), 100)])?;
    }
    let acknowledged = store.generation()?;

    // The disk fills up: the next writes fail.
    limit_file_size(Some(journal_end(data)? + 64))?;
    for i in 0..3 {
        let failed = store.commit(vec![put(&format!("full-{i}"), 4096)]);
        assert!(
            matches!(failed, Err(StoreError::Backend(_))),
            "commit {i} on a full disk: {failed:?}"
        );
    }

    // Space is freed: writes work again, without a restart.
    limit_file_size(None)?;
    store.commit(vec![put("after", 100)])?;
    store.commit(vec![put("after-2", 100)])?;
    let keys: Vec<String> = store
        .scan(Table::Ledger, b"")?
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect();
    for i in 0..20 {
        assert!(keys.contains(&format!("before-{i:02}")), "{keys:?}");
    }
    assert!(keys.contains(&"after".to_owned()), "{keys:?}");
    assert!(keys.contains(&"after-2".to_owned()), "{keys:?}");
    assert!(store.generation()? >= acknowledged + 2);
    drop(store);

    // And the store reopens whole, its mark agreeing.
    let store = FjallStore::open(data)?;
    assert_eq!(store.data_loss_accepted(), None);
    assert!(store.get(Table::Ledger, b"after-2")?.is_some());
    println!("\nDISK-FULL-SCENARIO-PASSED");
    Ok(())
}

#[test]
fn writes_recover_after_a_full_disk_without_a_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "disk_full_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("DISK-FULL-SCENARIO-PASSED"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(())
}
