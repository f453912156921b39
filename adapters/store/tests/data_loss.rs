//! A store that lost data is refused when it is opened, never taken for a new one: the data
//! directory's mark (`store.mark`) records the store and how many commits it made durable,
//! and every way of damaging the database that fjall recovers from silently is caught.

use std::fs;
use std::path::{Path, PathBuf};

use vserv_store::db::GENERATION_KEY;
use vserv_store::mark::{self, MARK_FILE};
use vserv_store::{FjallStore, Op, OpenOptions, Store, StoreError, Table};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const RECORDS: u32 = 300;

/// A data directory whose store acknowledged [`RECORDS`] commits, then was closed.
fn populated() -> Result<(tempfile::TempDir, PathBuf), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let store = FjallStore::open(&data)?;
    for i in 0..RECORDS {
        store.commit(vec![Op::Put {
            table: Table::Ledger,
            key: i.to_be_bytes().to_vec(),
            value: vec![0xab; 200],
        }])?;
    }
    drop(store);
    Ok((dir, data))
}

fn journal(data: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let mut journals: Vec<PathBuf> = fs::read_dir(data.join("db"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .collect();
    journals.sort();
    journals
        .into_iter()
        .next()
        .ok_or_else(|| "no journal".into())
}

/// Where the journal's batches end (fjall preallocates the file with zeros).
fn data_end(journal: &[u8]) -> usize {
    journal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Opening fails with [`StoreError::DataLoss`] whose message contains every needle; returns
/// the message.
fn expect_loss(data: &Path, needles: &[&str]) -> String {
    match FjallStore::open(data) {
        Err(e @ StoreError::DataLoss(_)) => {
            let msg = e.to_string();
            for needle in needles.iter().chain(&["backup", "--accept-data-loss"]) {
                assert!(msg.contains(needle), "{needle:?} not in {msg}");
            }
            msg
        }
        other => panic!("expected DataLoss, got {other:?}"),
    }
}

/// With the loss accepted the store opens as it is, says what was accepted, and the next
/// ordinary open succeeds (the mark was reset), holding what the accepting open saw.
fn accept_then_reopen(data: &Path) -> TestResult {
    let accepted = FjallStore::open_with(
        data,
        OpenOptions {
            accept_data_loss: true,
            ..OpenOptions::default()
        },
    )?;
    assert!(accepted.data_loss_accepted().is_some());
    let kept = accepted.scan(Table::Ledger, b"")?.len();
    accepted.commit(vec![Op::Put {
        table: Table::Users,
        key: b"after".to_vec(),
        value: b"loss".to_vec(),
    }])?;
    drop(accepted);
    let again = FjallStore::open(data)?;
    assert_eq!(again.data_loss_accepted(), None);
    assert_eq!(again.scan(Table::Ledger, b"")?.len(), kept);
    assert_eq!(again.get(Table::Users, b"after")?, Some(b"loss".to_vec()));
    Ok(())
}

#[test]
fn an_intact_store_reopens_with_its_generation() -> TestResult {
    let (_dir, data) = populated()?;
    let store = FjallStore::open(&data)?;
    assert_eq!(store.data_loss_accepted(), None);
    // The creating batch is generation 1.
    assert_eq!(store.generation()?, u64::from(RECORDS) + 1);
    assert_eq!(store.scan(Table::Ledger, b"")?.len(), RECORDS as usize);
    assert_eq!(
        store.get(Table::Meta, GENERATION_KEY)?,
        Some((u64::from(RECORDS) + 1).to_be_bytes().to_vec())
    );
    Ok(())
}

#[test]
fn a_flipped_journal_byte_is_refused_not_taken_for_a_new_store() -> TestResult {
    let (_dir, data) = populated()?;
    let jnl = journal(&data)?;
    let mut bytes = fs::read(&jnl)?;
    bytes[100] ^= 0xff;
    fs::write(&jnl, &bytes)?;
    // The store's first batch is damaged, so nothing of it is left.
    expect_loss(&data, &["durable commits", "holds no store"]);
    // Refused again on every start until the operator decides.
    expect_loss(&data, &["holds no store"]);
    accept_then_reopen(&data)
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_journal_is_refused() -> TestResult {
    let (_dir, data) = populated()?;
    let jnl = journal(&data)?;
    let mut bytes = fs::read(&jnl)?;
    let middle = data_end(&bytes) / 2;
    bytes[middle] ^= 0xff;
    fs::write(&jnl, &bytes)?;
    // fjall itself refuses a journal damaged before its last batch; the error says so.
    match FjallStore::open(&data) {
        Err(e @ StoreError::DataLoss(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("journal is damaged"), "{msg}");
            assert!(msg.contains("backup"), "{msg}");
        }
        other => panic!("expected DataLoss, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_journal_cut_in_the_middle_is_reported_with_what_is_missing() -> TestResult {
    let (_dir, data) = populated()?;
    let jnl = journal(&data)?;
    let end = data_end(&fs::read(&jnl)?);
    fs::OpenOptions::new()
        .write(true)
        .open(&jnl)?
        .set_len(u64::try_from(end / 2)?)?;
    let msg = expect_loss(&data, &["were acknowledged", "missing"]);
    // About half of the commits are gone, and the message counts them.
    let acknowledged = u64::from(RECORDS) + 1;
    assert!(
        msg.contains(&format!("{acknowledged} were acknowledged")),
        "{msg}"
    );
    accept_then_reopen(&data)
}

#[test]
fn a_deleted_journal_is_refused() -> TestResult {
    let (_dir, data) = populated()?;
    fs::remove_file(journal(&data)?)?;
    expect_loss(&data, &[]);
    accept_then_reopen(&data)
}

#[test]
fn deleted_keyspaces_are_refused() -> TestResult {
    let (_dir, data) = populated()?;
    fs::remove_dir_all(data.join("db/keyspaces"))?;
    expect_loss(&data, &[]);
    Ok(())
}

#[test]
fn a_deleted_keyspace_manifest_is_refused() -> TestResult {
    let (_dir, data) = populated()?;
    let current = data.join("db/keyspaces/0/current");
    if current.exists() {
        fs::remove_file(&current)?;
    }
    match FjallStore::open(&data) {
        // Either fjall refuses to open what is left, or vserv recognises the loss: never a
        // store that opens as new or short of its records.
        Err(StoreError::DataLoss(_) | StoreError::Backend(_)) => Ok(()),
        Ok(store) => {
            assert_eq!(store.scan(Table::Ledger, b"")?.len(), RECORDS as usize);
            Ok(())
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn a_deleted_database_is_refused_while_the_mark_remembers_it() -> TestResult {
    let (_dir, data) = populated()?;
    fs::remove_dir_all(data.join("db"))?;
    expect_loss(&data, &["holds no store"]);
    accept_then_reopen(&data)
}

#[test]
fn a_replaced_database_is_refused() -> TestResult {
    let (_dir, data) = populated()?;
    let other = tempfile::tempdir()?;
    drop(FjallStore::open(other.path())?);
    fs::remove_dir_all(data.join("db"))?;
    fs::rename(other.path().join("db"), data.join("db"))?;
    expect_loss(&data, &["replaced"]);
    Ok(())
}

#[test]
fn a_damaged_mark_is_refused() -> TestResult {
    let (_dir, data) = populated()?;
    fs::write(data.join(MARK_FILE), b"garbage")?;
    expect_loss(&data, &["damaged"]);
    accept_then_reopen(&data)
}

#[test]
fn a_store_from_before_marks_gains_one() -> TestResult {
    let (_dir, data) = populated()?;
    fs::remove_file(data.join(MARK_FILE))?;
    let store = FjallStore::open(&data)?;
    assert_eq!(store.data_loss_accepted(), None);
    assert_eq!(store.scan(Table::Ledger, b"")?.len(), RECORDS as usize);
    drop(store);
    assert!(matches!(
        mark::read(&data)?,
        mark::ReadMark::Found(m) if m.generation == u64::from(RECORDS) + 1
    ));
    Ok(())
}

/// A data directory as a build without the `replicas` table left it: keyspaces `meta`,
/// `users`, `limits` and `ledger`, a schema marker, a store id, generation `generation` and a
/// mark recording `marked`.
fn store_before_replicas(
    generation: u64,
    marked: u64,
) -> Result<(tempfile::TempDir, PathBuf), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    fs::create_dir(&data)?;
    {
        let db = fjall::Database::builder(data.join("db")).open()?;
        let ks = |name: &str| db.keyspace(name, fjall::KeyspaceCreateOptions::default);
        let meta = ks("meta")?;
        ks("users")?;
        ks("limits")?;
        let ledger = ks("ledger")?;
        meta.insert(b"schema", vserv_store::SCHEMA_VERSION.to_be_bytes())?;
        meta.insert(b"store-id", [9u8; 16])?;
        meta.insert(GENERATION_KEY, generation.to_be_bytes())?;
        ledger.insert(b"head", b"H")?;
        db.persist(fjall::PersistMode::SyncAll)?;
        assert!(!db.keyspace_exists("replicas"));
    }
    mark::MarkWriter::create(
        &data,
        mark::Mark {
            store_id: [9; 16],
            generation: marked,
        },
    )?;
    Ok((dir, data))
}

#[test]
fn a_store_from_before_the_replicas_table_opens_gains_it_and_keeps_its_generation() -> TestResult {
    let (_dir, data) = store_before_replicas(7, 7)?;
    let store = FjallStore::open(&data)?;
    assert_eq!(store.data_loss_accepted(), None);
    assert_eq!((store.store_id(), store.generation()?), ([9; 16], 7));
    assert_eq!(store.get(Table::Ledger, b"head")?, Some(b"H".to_vec()));
    assert_eq!(store.scan(Table::Replicas, b"")?, Vec::new());
    store.commit(vec![Op::Put {
        table: Table::Replicas,
        key: b"r".to_vec(),
        value: b"R".to_vec(),
    }])?;
    assert_eq!(store.generation()?, 8);
    drop(store);
    assert_eq!(
        mark::read(&data)?,
        mark::ReadMark::Found(mark::Mark {
            store_id: [9; 16],
            generation: 8
        })
    );
    let store = FjallStore::open(&data)?;
    assert_eq!(store.generation()?, 8);
    assert_eq!(store.get(Table::Replicas, b"r")?, Some(b"R".to_vec()));
    Ok(())
}

#[test]
fn a_store_from_before_the_replicas_table_that_lost_commits_is_still_refused() -> TestResult {
    let (_dir, data) = store_before_replicas(7, 9)?;
    expect_loss(&data, &["holds 7 durable commits but 9", "the last 2"]);
    Ok(())
}
