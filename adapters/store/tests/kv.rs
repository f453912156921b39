//! Tests of the key-value `Store` implementations: a shared contract run against both
//! `FjallStore` and `MemoryStore`, the fjall store's on-disk behaviour (reopen, schema,
//! foreign directories, locking in-process and across processes), the in-memory crash model,
//! and a proptest that both agree on random batch sequences.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use vserv_store::db::{DB_DIR, SCHEMA_KEY, STORE_ID_KEY};
use vserv_store::{
    FjallStore, MemoryStore, OLDEST_SCHEMA_VERSION, Op, SCHEMA_VERSION, Store, StoreError, Table,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `(key, value)` pairs in key order, as a scan returns them.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

fn put(table: Table, key: &[u8], value: &[u8]) -> Op {
    Op::Put {
        table,
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn del(table: Table, key: &[u8]) -> Op {
    Op::Delete {
        table,
        key: key.to_vec(),
    }
}

fn pairs(items: &[(&[u8], &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    items
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The shared contract.

fn contract_get_put_delete(s: &impl Store) -> TestResult {
    assert_eq!(s.get(Table::Users, b"alice")?, None);
    s.commit(vec![put(Table::Users, b"alice", b"1")])?;
    assert_eq!(s.get(Table::Users, b"alice")?, Some(b"1".to_vec()));
    s.commit(vec![put(Table::Users, b"alice", b"2")])?;
    assert_eq!(s.get(Table::Users, b"alice")?, Some(b"2".to_vec()));
    s.commit(vec![del(Table::Users, b"alice")])?;
    assert_eq!(s.get(Table::Users, b"alice")?, None);
    // Deleting an absent key is fine; an empty batch is fine.
    s.commit(vec![del(Table::Users, b"nobody")])?;
    s.commit(vec![])?;
    // Empty values are values.
    s.commit(vec![put(Table::Users, b"empty", b"")])?;
    assert_eq!(s.get(Table::Users, b"empty")?, Some(Vec::new()));
    // Keys that can never be stored read as absent.
    assert_eq!(s.get(Table::Users, b"")?, None);
    assert_eq!(s.get(Table::Users, &vec![b'k'; 70_000])?, None);
    Ok(())
}

fn contract_get_first_is_the_first_key_held(s: &impl Store) -> TestResult {
    s.commit(vec![
        put(Table::Users, b"b", b"2"),
        put(Table::Users, b"c", b"3"),
        put(Table::Limits, b"a", b"other table"),
    ])?;
    let keys = |ks: &[&[u8]]| ks.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
    assert_eq!(
        s.get_first(Table::Users, &keys(&[b"a", b"c", b"b"]))?,
        Some(b"3".to_vec())
    );
    assert_eq!(
        s.get_first(Table::Users, &keys(&[b"b", b"c"]))?,
        Some(b"2".to_vec())
    );
    assert_eq!(s.get_first(Table::Users, &keys(&[b"a", b"d"]))?, None);
    assert_eq!(s.get_first(Table::Users, &[])?, None);
    // A key that can never be stored is skipped, as `get` reads it as absent.
    assert_eq!(
        s.get_first(
            Table::Users,
            &[Vec::new(), vec![b'k'; 70_000], b"c".to_vec()]
        )?,
        Some(b"3".to_vec())
    );
    s.commit(vec![del(Table::Users, b"b")])?;
    assert_eq!(
        s.get_first(Table::Users, &keys(&[b"b", b"c"]))?,
        Some(b"3".to_vec())
    );
    Ok(())
}

fn contract_tables_are_separate(s: &impl Store) -> TestResult {
    s.commit(vec![
        put(Table::Users, b"k", b"users"),
        put(Table::Limits, b"k", b"limits"),
    ])?;
    assert_eq!(s.get(Table::Users, b"k")?, Some(b"users".to_vec()));
    assert_eq!(s.get(Table::Limits, b"k")?, Some(b"limits".to_vec()));
    assert_eq!(s.get(Table::Meta, b"k")?, None);
    s.commit(vec![del(Table::Limits, b"k")])?;
    assert_eq!(s.get(Table::Users, b"k")?, Some(b"users".to_vec()));
    assert_eq!(s.get(Table::Limits, b"k")?, None);
    Ok(())
}

fn contract_scan_prefix_in_key_order(s: &impl Store) -> TestResult {
    // Inserted out of order, across batches, with bytes that sort high.
    s.commit(vec![
        put(Table::Limits, b"u:zed", b"3"),
        put(Table::Limits, b"ip:10.0.0.1", b"9"),
        put(Table::Limits, b"u:\xff", b"5"),
    ])?;
    s.commit(vec![
        put(Table::Limits, b"u:", b"0"),
        put(Table::Limits, b"u:amy", b"1"),
        put(Table::Limits, b"u", b"x"),
        put(Table::Limits, b"v", b"y"),
        put(Table::Limits, b"u:bob", b"2"),
        put(Table::Users, b"u:other-table", b"-"),
    ])?;
    assert_eq!(
        s.scan(Table::Limits, b"u:")?,
        pairs(&[
            (b"u:", b"0"),
            (b"u:amy", b"1"),
            (b"u:bob", b"2"),
            (b"u:zed", b"3"),
            (b"u:\xff", b"5"),
        ])
    );
    assert_eq!(s.scan(Table::Limits, b"u:b")?, pairs(&[(b"u:bob", b"2")]));
    assert_eq!(s.scan(Table::Limits, b"u:c")?, Vec::new());
    assert_eq!(
        s.scan(Table::Limits, b"u:\xff")?,
        pairs(&[(b"u:\xff", b"5")])
    );
    let all = s.scan(Table::Limits, b"")?;
    let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(
        keys,
        vec![
            &b"ip:10.0.0.1"[..],
            b"u",
            b"u:",
            b"u:amy",
            b"u:bob",
            b"u:zed",
            b"u:\xff",
            b"v"
        ]
    );
    s.commit(vec![del(Table::Limits, b"u:amy")])?;
    assert_eq!(s.scan(Table::Limits, b"u:a")?, Vec::new());
    Ok(())
}

/// `scan_from`: a page of a prefix scan starting at a key, never crossing the prefix.
fn contract_scan_from_pages(s: &impl Store) -> TestResult {
    s.commit(vec![
        put(Table::Replicas, b"e:\x00\x01", b"1"),
        put(Table::Replicas, b"e:\x00\x02", b"2"),
        put(Table::Replicas, b"e:\x00\x03", b"3"),
        put(Table::Replicas, b"e:\xff", b"ff"),
        put(Table::Replicas, b"e", b"before"),
        put(Table::Replicas, b"d:\xff", b"below"),
        put(Table::Replicas, b"f:", b"after"),
        put(Table::Users, b"e:\x00\x02", b"other-table"),
    ])?;
    let all = pairs(&[
        (b"e:\x00\x01", b"1"),
        (b"e:\x00\x02", b"2"),
        (b"e:\x00\x03", b"3"),
        (b"e:\xff", b"ff"),
    ]);
    // Limit 0 is an empty page, whatever the start.
    assert_eq!(s.scan_from(Table::Replicas, b"e:", b"", 0)?, Vec::new());
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"e:\x00\x02", 0)?,
        Vec::new()
    );
    // A start before the prefix (or empty) begins at the prefix: nothing below it leaks in.
    assert_eq!(s.scan_from(Table::Replicas, b"e:", b"", 100)?, all);
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"d:\xff\xff", 100)?,
        all
    );
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"e", 2)?,
        all[..2].to_vec()
    );
    // A start inside the prefix, on a key and between keys.
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"e:\x00\x02", 100)?,
        all[1..].to_vec()
    );
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"e:\x00\x02\x00", 2)?,
        all[2..4].to_vec()
    );
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"e:\x00\x02", 1)?,
        all[1..2].to_vec()
    );
    // The page stops at the end of the prefix even when the limit allows more.
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"e:\x01", 100)?,
        all[3..].to_vec()
    );
    // A start past every key of the prefix (or past the table) is an empty page.
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"e:\xff\x00", 100)?,
        Vec::new()
    );
    assert_eq!(s.scan_from(Table::Replicas, b"e:", b"f", 100)?, Vec::new());
    assert_eq!(
        s.scan_from(Table::Replicas, b"e:", b"\xff\xff", 100)?,
        Vec::new()
    );
    // A prefix with nothing under it, and the empty prefix (the whole table from start).
    assert_eq!(s.scan_from(Table::Replicas, b"x:", b"", 100)?, Vec::new());
    assert_eq!(
        s.scan_from(Table::Replicas, b"", b"e:\xff", 100)?,
        pairs(&[(b"e:\xff", b"ff"), (b"f:", b"after")])
    );
    // Paging with "last key + 0x00" visits every key once, in order.
    for page in 1..=5 {
        let seen = every_page(s, Table::Replicas, b"e:", b"", page)?;
        assert_eq!(seen, all, "page size {page}");
    }
    Ok(())
}

/// Every row of `table` under `prefix` from `start` on, read in pages of `page` rows, each
/// page from the smallest key after the last one ("last key + 0x00"); no page is larger.
fn every_page(
    s: &impl Store,
    table: Table,
    prefix: &[u8],
    start: &[u8],
    page: usize,
) -> Result<Rows, StoreError> {
    let mut seen = Vec::new();
    let mut at = start.to_vec();
    loop {
        let rows = s.scan_from(table, prefix, &at, page)?;
        assert!(rows.len() <= page);
        let Some((last, _)) = rows.last() else {
            return Ok(seen);
        };
        at = [last.as_slice(), &[0]].concat();
        let full = rows.len() == page;
        seen.extend(rows);
        if !full {
            return Ok(seen);
        }
    }
}

/// The key of ledger entry `seq`.
fn entry(seq: u64) -> Vec<u8> {
    [b"e:".as_slice(), &seq.to_be_bytes()].concat()
}

/// Commits ledger entries 1..=300 (some rewritten, one deleted), reads each back, by key and
/// in pages from every kind of start, against a model; and a batch writing a key under `e:`
/// that is not an entry key is refused whole.
fn contract_ledger_entries_read_back(s: &impl Store) -> TestResult {
    let mut model = std::collections::BTreeMap::new();
    for first in (1..=300u64).step_by(50) {
        let ops: Vec<Op> = (first..first + 50)
            .map(|seq| {
                put(
                    Table::Ledger,
                    &entry(seq),
                    format!("entry {seq}").as_bytes(),
                )
            })
            .collect();
        s.commit(ops)?;
        for seq in first..first + 50 {
            model.insert(entry(seq), format!("entry {seq}").into_bytes());
        }
    }
    s.commit(vec![
        put(Table::Ledger, &entry(100), b"rewritten"),
        del(Table::Ledger, &entry(250)),
        put(Table::Ledger, b"head", b"H"),
    ])?;
    model.insert(entry(100), b"rewritten".to_vec());
    model.remove(&entry(250));
    s.commit(vec![put(Table::Ledger, &entry(301), b"entry 301")])?;
    model.insert(entry(301), b"entry 301".to_vec());
    for seq in 0..=302 {
        assert_eq!(
            s.get(Table::Ledger, &entry(seq))?,
            model.get(&entry(seq)).cloned()
        );
    }
    assert_eq!(
        s.get_first(Table::Ledger, &[entry(250), entry(251)])?,
        model.get(&entry(251)).cloned()
    );
    let all: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
    let starts = [
        Vec::new(),
        b"e:".to_vec(),
        b"e:\x00\x00".to_vec(),
        entry(0),
        entry(1),
        [entry(99), vec![0]].concat(),
        entry(250),
        entry(300),
        entry(302),
    ];
    for start in &starts {
        let expected: Vec<_> = all
            .iter()
            .filter(|(key, _)| key.as_slice() >= start.as_slice())
            .cloned()
            .collect();
        for page in [1, 7, 64, 1000] {
            let seen = every_page(s, Table::Ledger, b"e:", start, page)?;
            assert_eq!(seen, expected, "start {start:?}, page {page}");
        }
    }
    let refused = s.commit(vec![
        put(Table::Ledger, &entry(302), b"entry 302"),
        put(Table::Ledger, b"e:\x00\x01", b"short"),
    ]);
    assert!(
        matches!(refused, Err(StoreError::Backend(_))),
        "{refused:?}"
    );
    assert_eq!(s.get(Table::Ledger, &entry(302))?, None);
    // Other tables may hold such keys.
    s.commit(vec![put(Table::Replicas, b"e:\x00\x01", b"short")])?;
    Ok(())
}

fn contract_last_op_in_batch_wins(s: &impl Store) -> TestResult {
    s.commit(vec![
        put(Table::Users, b"a", b"1"),
        put(Table::Users, b"a", b"2"),
        put(Table::Users, b"b", b"1"),
        del(Table::Users, b"b"),
        del(Table::Users, b"c"),
        put(Table::Users, b"c", b"3"),
    ])?;
    assert_eq!(
        s.scan(Table::Users, b"")?,
        pairs(&[(b"a", b"2"), (b"c", b"3")])
    );
    // Interleaved with other keys and another table's same key, given out of key order.
    s.commit(vec![
        put(Table::Users, b"d", b"1"),
        put(Table::Ledger, b"d", b"x"),
        put(Table::Users, b"a", b"4"),
        del(Table::Users, b"d"),
        put(Table::Users, b"d", b"5"),
        del(Table::Ledger, b"d"),
        put(Table::Users, b"a", b"6"),
        del(Table::Users, b"c"),
    ])?;
    assert_eq!(
        s.scan(Table::Users, b"")?,
        pairs(&[(b"a", b"6"), (b"d", b"5")])
    );
    assert_eq!(s.get(Table::Ledger, b"d")?, None);
    Ok(())
}

/// A batch that fails mid-way (its last op is invalid) applies nothing, in any table.
fn contract_failed_batch_applies_nothing(s: &impl Store) -> TestResult {
    s.commit(vec![put(Table::Users, b"keep", b"old")])?;
    let before: Vec<_> = Table::ALL
        .iter()
        .map(|t| s.scan(*t, b""))
        .collect::<Result<_, _>>()?;
    for bad in [
        put(Table::Limits, b"", b"v"),
        del(Table::Limits, &[7; 65_536]),
    ] {
        let r = s.commit(vec![
            put(Table::Users, b"keep", b"new"),
            put(Table::Users, b"new", b"1"),
            put(Table::Meta, b"m", b"1"),
            del(Table::Users, b"keep"),
            bad,
        ]);
        assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
        let after: Vec<_> = Table::ALL
            .iter()
            .map(|t| s.scan(*t, b""))
            .collect::<Result<_, _>>()?;
        assert_eq!(before, after);
    }
    // The limits themselves are accepted.
    let max_key = vec![b'k'; vserv_store::MAX_KEY_LEN];
    s.commit(vec![put(Table::Users, &max_key, b"v")])?;
    assert_eq!(s.get(Table::Users, &max_key)?, Some(b"v".to_vec()));
    Ok(())
}

/// Concurrent readers never see part of a batch: every batch writes the same value to two
/// keys, and one scan must always see them equal.
fn contract_atomic_visibility<S: Store + 'static>(s: Arc<S>) -> TestResult {
    s.commit(vec![
        put(Table::Users, b"a", b"0"),
        put(Table::Users, b"b", b"0"),
    ])?;
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, done, started) = (s.clone(), done.clone(), started.clone());
        std::thread::spawn(move || -> Result<u64, StoreError> {
            let mut seen = 0;
            loop {
                let rows = s.scan(Table::Users, b"")?;
                assert_eq!(rows.len(), 2, "{rows:?}");
                assert_eq!(rows[0].1, rows[1].1, "a partial batch was visible");
                seen += 1;
                started.store(true, Ordering::Relaxed);
                if done.load(Ordering::Relaxed) {
                    return Ok(seen);
                }
            }
        })
    };
    while !started.load(Ordering::Relaxed) {
        std::thread::yield_now();
    }
    for i in 1..=150u32 {
        let v = i.to_be_bytes();
        s.commit(vec![
            put(Table::Users, b"a", &v),
            put(Table::Limits, b"x", &v),
            put(Table::Users, b"b", &v),
        ])?;
    }
    done.store(true, Ordering::Relaxed);
    let seen = reader.join().map_err(|_| "reader panicked")??;
    assert!(seen > 0);
    assert_eq!(
        s.get(Table::Limits, b"x")?,
        Some(150u32.to_be_bytes().to_vec())
    );
    Ok(())
}

/// A bulk commit is a commit: sorted in one table (what a store may ingest), it overwrites,
/// deletes and adds keys written before; any other batch works as ever.
fn contract_bulk_commit(s: &impl Store) -> TestResult {
    s.commit(vec![
        put(Table::Users, b"a", b"1"),
        put(Table::Users, b"c", b"1"),
        put(Table::Users, b"e", b"1"),
    ])?;
    s.commit_bulk(vec![
        put(Table::Users, b"b", b"2"),
        del(Table::Users, b"c"),
        put(Table::Users, b"e", b"2"),
        put(Table::Users, b"f", b"2"),
    ])?;
    s.commit(vec![put(Table::Users, b"g", b"3")])?;
    let expected = pairs(&[
        (b"a", b"1"),
        (b"b", b"2"),
        (b"e", b"2"),
        (b"f", b"2"),
        (b"g", b"3"),
    ]);
    assert_eq!(s.scan(Table::Users, b"")?, expected);
    // Out of order, repeated keys, two tables: committed as a batch.
    s.commit_bulk(vec![
        put(Table::Users, b"h", b"4"),
        put(Table::Limits, b"x", b"4"),
        del(Table::Users, b"a"),
        put(Table::Users, b"h", b"5"),
    ])?;
    assert_eq!(s.get(Table::Users, b"h")?, Some(b"5".to_vec()));
    assert_eq!(s.get(Table::Users, b"a")?, None);
    assert_eq!(s.get(Table::Limits, b"x")?, Some(b"4".to_vec()));
    // An invalid op refuses the whole bulk.
    let r = s.commit_bulk(vec![
        put(Table::Users, b"i", b"6"),
        put(Table::Users, b"", b""),
    ]);
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert_eq!(s.get(Table::Users, b"i")?, None);
    s.commit_bulk(Vec::new())?;
    Ok(())
}

fn contract_meta_has_schema(s: &impl Store) -> TestResult {
    assert_eq!(
        s.get(Table::Meta, SCHEMA_KEY)?,
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
    assert_eq!(s.get(Table::Meta, STORE_ID_KEY)?.map(|v| v.len()), Some(16));
    Ok(())
}

/// Runs every contract test against a store made by `$new` (an expression evaluating to
/// `(guard, store)`; the guard keeps temporary directories alive).
macro_rules! contract_tests {
    ($module:ident, $new:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn get_put_delete() -> TestResult {
                let (_guard, s) = $new;
                contract_get_put_delete(&s)
            }

            #[test]
            fn tables_are_separate() -> TestResult {
                let (_guard, s) = $new;
                contract_tables_are_separate(&s)
            }

            #[test]
            fn scan_prefix_in_key_order() -> TestResult {
                let (_guard, s) = $new;
                contract_scan_prefix_in_key_order(&s)
            }

            #[test]
            fn scan_from_pages() -> TestResult {
                let (_guard, s) = $new;
                contract_scan_from_pages(&s)
            }

            #[test]
            fn ledger_entries_read_back() -> TestResult {
                let (_guard, s) = $new;
                contract_ledger_entries_read_back(&s)
            }

            #[test]
            fn last_op_in_batch_wins() -> TestResult {
                let (_guard, s) = $new;
                contract_last_op_in_batch_wins(&s)
            }

            #[test]
            fn failed_batch_applies_nothing() -> TestResult {
                let (_guard, s) = $new;
                contract_failed_batch_applies_nothing(&s)
            }

            #[test]
            fn atomic_visibility() -> TestResult {
                let (_guard, s) = $new;
                contract_atomic_visibility(Arc::new(s))
            }

            #[test]
            fn bulk_commit() -> TestResult {
                let (_guard, s) = $new;
                contract_bulk_commit(&s)
            }

            #[test]
            fn get_first() -> TestResult {
                let (_guard, s) = $new;
                contract_get_first_is_the_first_key_held(&s)
            }

            #[test]
            fn meta_has_schema() -> TestResult {
                let (_guard, s) = $new;
                contract_meta_has_schema(&s)
            }
        }
    };
}

fn new_fjall() -> (tempfile::TempDir, FjallStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(&dir.path().join("data")).unwrap();
    (dir, store)
}

contract_tests!(fjall_contract, new_fjall());
contract_tests!(memory_contract, ((), MemoryStore::new()));

// ---------------------------------------------------------------------------------------------
// FjallStore on disk.

#[test]
fn fjall_creates_private_data_dir_and_layout() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("a/b/data");
    let store = FjallStore::open(&data)?;
    assert_eq!(store.path(), data.join(DB_DIR));
    for d in [&data, &data.join(DB_DIR)] {
        let mode = std::fs::metadata(d)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    assert!(data.join(DB_DIR).join("version").is_file());
    assert_ne!(store.store_id(), [0; 16]);
    Ok(())
}

#[test]
fn fjall_existing_data_dir_is_accepted() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("identity.key"), b"not ours")?;
    let store = FjallStore::open(dir.path())?;
    store.commit(vec![put(Table::Users, b"u", b"1")])?;
    assert_eq!(std::fs::read(dir.path().join("identity.key"))?, b"not ours");
    Ok(())
}

#[test]
fn fjall_data_persists_across_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FjallStore::open(dir.path())?;
    let id = store.store_id();
    store.commit(vec![
        put(Table::Users, b"alice", b"A"),
        put(Table::Users, b"bob", b"B"),
        put(Table::Limits, b"u:alice", b"3"),
    ])?;
    store.commit(vec![del(Table::Users, b"bob")])?;
    drop(store);

    let store = FjallStore::open(dir.path())?;
    assert_eq!(store.store_id(), id);
    assert_eq!(store.scan(Table::Users, b"")?, pairs(&[(b"alice", b"A")]));
    assert_eq!(store.get(Table::Limits, b"u:alice")?, Some(b"3".to_vec()));
    contract_meta_has_schema(&store)?;
    store.commit(vec![put(Table::Users, b"carol", b"C")])?;
    drop(store);

    let store = FjallStore::open(dir.path())?;
    assert_eq!(store.store_id(), id);
    assert_eq!(
        store.scan(Table::Users, b"")?,
        pairs(&[(b"alice", b"A"), (b"carol", b"C")])
    );
    Ok(())
}

#[test]
fn fjall_distinct_stores_get_distinct_ids() -> TestResult {
    let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    assert_ne!(
        FjallStore::open(a.path())?.store_id(),
        FjallStore::open(b.path())?.store_id()
    );
    Ok(())
}

fn expect_incompatible(dir: &Path, needles: &[&str]) -> String {
    match FjallStore::open(dir) {
        Err(StoreError::Incompatible(msg)) => {
            for n in needles {
                assert!(msg.contains(n), "{msg:?} should mention {n:?}");
            }
            msg
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
}

#[test]
fn fjall_newer_schema_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FjallStore::open(dir.path())?;
    let newer = SCHEMA_VERSION + 1;
    store.commit(vec![put(Table::Meta, SCHEMA_KEY, &newer.to_be_bytes())])?;
    drop(store);
    let msg = expect_incompatible(
        dir.path(),
        &[&newer.to_string(), &SCHEMA_VERSION.to_string(), "newer"],
    );
    assert!(
        msg.contains(&format!("version {newer}"))
            && msg.contains(&format!("{OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}")),
        "{msg}"
    );
    // Refused twice in a row: nothing was rewritten.
    expect_incompatible(dir.path(), &["newer"]);
    Ok(())
}

#[test]
fn fjall_older_schema_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FjallStore::open(dir.path())?;
    store.commit(vec![put(Table::Meta, SCHEMA_KEY, &0u32.to_be_bytes())])?;
    drop(store);
    expect_incompatible(dir.path(), &["older", "version 0"]);
    Ok(())
}

#[test]
fn fjall_garbled_schema_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FjallStore::open(dir.path())?;
    store.commit(vec![put(Table::Meta, SCHEMA_KEY, b"\x00\x01")])?;
    drop(store);
    expect_incompatible(dir.path(), &["garbled"]);
    Ok(())
}

#[test]
fn fjall_garbled_store_id_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FjallStore::open(dir.path())?;
    store.commit(vec![put(Table::Meta, STORE_ID_KEY, b"short")])?;
    drop(store);
    expect_incompatible(dir.path(), &["store id"]);
    Ok(())
}

#[test]
fn fjall_missing_schema_with_data_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FjallStore::open(dir.path())?;
    store.commit(vec![
        put(Table::Users, b"alice", b"A"),
        del(Table::Meta, SCHEMA_KEY),
    ])?;
    drop(store);
    expect_incompatible(dir.path(), &["no schema marker"]);
    // Never reinitialised: the data is still there, the marker still absent.
    let db = fjall::Database::builder(dir.path().join(DB_DIR)).open()?;
    let users = db.keyspace("users", fjall::KeyspaceCreateOptions::default)?;
    let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
    assert!(users.get(b"alice")?.is_some());
    assert!(meta.get(SCHEMA_KEY)?.is_none());
    Ok(())
}

#[test]
fn fjall_foreign_directory_is_incompatible_and_untouched() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join(DB_DIR);
    std::fs::create_dir(&db)?;
    std::fs::write(db.join("photo.jpg"), b"\xff\xd8 not a database")?;
    expect_incompatible(dir.path(), &["not a fjall database", "db"]);
    let names: BTreeSet<_> = std::fs::read_dir(&db)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert_eq!(names, BTreeSet::from(["photo.jpg".into()]));
    Ok(())
}

#[test]
fn fjall_db_path_that_is_a_file_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join(DB_DIR), b"hello")?;
    expect_incompatible(dir.path(), &["not a directory"]);
    assert_eq!(std::fs::read(dir.path().join(DB_DIR))?, b"hello");
    Ok(())
}

#[test]
fn fjall_data_dir_that_is_a_file_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("data");
    std::fs::write(&file, b"hello")?;
    expect_incompatible(&file, &["not a directory"]);
    Ok(())
}

#[test]
fn fjall_garbled_version_marker_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join(DB_DIR);
    std::fs::create_dir(&db)?;
    std::fs::write(db.join("version"), b"v1.2.3")?;
    std::fs::write(db.join("lock"), b"")?;
    expect_incompatible(dir.path(), &["format version"]);
    Ok(())
}

#[test]
fn fjall_other_fjall_database_is_incompatible() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let db = fjall::Database::builder(dir.path().join(DB_DIR)).open()?;
        let ks = db.keyspace("photos", fjall::KeyspaceCreateOptions::default)?;
        ks.insert("a", "b")?;
        db.persist(fjall::PersistMode::SyncAll)?;
    }
    expect_incompatible(dir.path(), &["photos", "not a vserv store"]);
    // Our keyspaces were not added to it.
    let db = fjall::Database::builder(dir.path().join(DB_DIR)).open()?;
    assert!(!db.keyspace_exists("meta"));
    Ok(())
}

#[test]
fn fjall_store_from_before_the_ledger_table_opens_and_gains_it() -> TestResult {
    // A store as an older build wrote it: meta/users/limits keyspaces, schema and store id,
    // some data, and no `ledger` keyspace.
    let dir = tempfile::tempdir()?;
    {
        let db = fjall::Database::builder(dir.path().join(DB_DIR)).open()?;
        let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
        let users = db.keyspace("users", fjall::KeyspaceCreateOptions::default)?;
        db.keyspace("limits", fjall::KeyspaceCreateOptions::default)?;
        meta.insert(SCHEMA_KEY, OLDEST_SCHEMA_VERSION.to_be_bytes())?;
        meta.insert(STORE_ID_KEY, [7u8; 16])?;
        users.insert(b"alice", b"A")?;
        db.persist(fjall::PersistMode::SyncAll)?;
        assert!(!db.keyspace_exists("ledger"));
    }
    let store = FjallStore::open(dir.path())?;
    assert_eq!(store.store_id(), [7u8; 16]);
    // Upgraded: its marker now says this build's version, so an older build refuses it.
    assert_eq!(
        store.get(Table::Meta, SCHEMA_KEY)?,
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
    assert_eq!(store.get(Table::Users, b"alice")?, Some(b"A".to_vec()));
    assert_eq!(store.get(Table::Ledger, b"head")?, None);
    store.commit(vec![put(Table::Ledger, b"head", b"H")])?;
    drop(store);
    let store = FjallStore::open(dir.path())?;
    assert_eq!(store.get(Table::Ledger, b"head")?, Some(b"H".to_vec()));
    Ok(())
}

#[test]
fn fjall_flat_copy_of_the_entries_is_checked_and_rebuilt_on_opening() -> TestResult {
    let dir = tempfile::tempdir()?;
    let value = |seq: u64| {
        format!("entry {seq} ")
            .repeat(1 + (seq % 5) as usize)
            .into_bytes()
    };
    let entries = |store: &FjallStore| -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        (1..=3_001)
            .map(|seq| store.get(Table::Ledger, &entry(seq)))
            .collect()
    };
    let expected: Vec<Option<Vec<u8>>> = (1..=3_001)
        .map(|seq| (seq <= 3_000).then(|| value(seq)))
        .collect();
    let store = FjallStore::open(dir.path())?;
    for first in (1..=3_000u64).step_by(500) {
        let ops = (first..first + 500).map(|seq| put(Table::Ledger, &entry(seq), &value(seq)));
        store.commit(ops.collect())?;
    }
    assert_eq!(entries(&store)?, expected);
    drop(store);
    let segment = dir.path().join("entries").join("0000000000.entries");
    let written = std::fs::read(&segment)?;
    assert!(written.len() > 3_000 * 20, "{} bytes copied", written.len());

    // A damaged record: the copy is cut there and filled again from the store.
    let mut damaged = written.clone();
    damaged[written.len() / 2] ^= 0x10;
    std::fs::write(&segment, &damaged)?;
    let store = FjallStore::open(dir.path())?;
    assert_eq!(entries(&store)?, expected);
    drop(store);
    assert_eq!(std::fs::read(&segment)?, written);

    // A copy that goes past the store (a store opened accepting a loss): cut to it.
    let store = FjallStore::open(dir.path())?;
    store.commit(vec![del(Table::Ledger, &entry(3_000))])?;
    drop(store);
    std::fs::write(&segment, &written)?;
    let store = FjallStore::open(dir.path())?;
    assert_eq!(store.get(Table::Ledger, &entry(3_000))?, None);
    assert_eq!(store.get(Table::Ledger, &entry(2_999))?, Some(value(2_999)));
    store.commit(vec![put(Table::Ledger, &entry(3_000), b"another")])?;
    drop(store);

    // A lost copy, and stray segment files: rebuilt from the store.
    std::fs::remove_dir_all(dir.path().join("entries"))?;
    std::fs::create_dir(dir.path().join("entries"))?;
    std::fs::write(
        dir.path().join("entries").join("0000000007.entries"),
        b"stray",
    )?;
    let store = FjallStore::open(dir.path())?;
    assert_eq!(
        store.get(Table::Ledger, &entry(3_000))?,
        Some(b"another".to_vec())
    );
    assert_eq!(store.get(Table::Ledger, &entry(17))?, Some(value(17)));
    drop(store);
    assert!(
        !dir.path()
            .join("entries")
            .join("0000000007.entries")
            .exists()
    );

    // Something else in its place is refused with a typed error, nothing is written.
    std::fs::remove_dir_all(dir.path().join("entries"))?;
    std::fs::write(dir.path().join("entries"), b"not a directory")?;
    let refused = FjallStore::open(dir.path());
    assert!(
        matches!(refused, Err(StoreError::Backend(_))),
        "{refused:?}"
    );
    Ok(())
}

#[test]
fn fjall_interrupted_initialisation_is_completed() -> TestResult {
    // A fjall database with (some of) our keyspaces, all empty, no schema: our first batch
    // never became durable. That is safe to initialise.
    let dir = tempfile::tempdir()?;
    {
        let db = fjall::Database::builder(dir.path().join(DB_DIR)).open()?;
        db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
        db.keyspace("users", fjall::KeyspaceCreateOptions::default)?;
    }
    let store = FjallStore::open(dir.path())?;
    contract_meta_has_schema(&store)?;
    Ok(())
}

#[test]
fn fjall_empty_db_directory_is_initialised() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join(DB_DIR))?;
    let store = FjallStore::open(dir.path())?;
    contract_meta_has_schema(&store)?;
    Ok(())
}

#[test]
fn fjall_second_open_in_process_is_locked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let first = FjallStore::open(dir.path())?;
    first.commit(vec![put(Table::Users, b"alice", b"A")])?;
    match FjallStore::open(dir.path()) {
        Err(e @ StoreError::Locked(_)) => {
            let msg = e.to_string();
            assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
            assert!(msg.contains("in use"), "{msg}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // The first store is unaffected; once closed, the directory opens again.
    first.commit(vec![put(Table::Users, b"bob", b"B")])?;
    drop(first);
    let again = FjallStore::open(dir.path())?;
    assert_eq!(
        again.scan(Table::Users, b"")?,
        pairs(&[(b"alice", b"A"), (b"bob", b"B")])
    );
    Ok(())
}

/// Environment variable telling [`cross_process_child`] which data directory to hold open.
const CHILD_ENV: &str = "VSERV_KV_TEST_CHILD_DIR";

/// Not a test of its own: when run by [`fjall_open_held_by_other_process_is_locked`] as a
/// child process (with [`CHILD_ENV`] set), opens the store, prints `READY`, and holds it until
/// its stdin closes. Without the variable it does nothing.
#[test]
fn cross_process_child() -> TestResult {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let store = FjallStore::open(Path::new(&dir))?;
    store.commit(vec![put(Table::Users, b"child", b"was here")])?;
    // Straight to the process's stdout, on its own line (libtest prints "test ... " first).
    let mut out = std::io::stdout();
    out.write_all(b"\nREADY\n")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    drop(store);
    Ok(())
}

#[test]
fn fjall_open_held_by_other_process_is_locked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "cross_process_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    // Read the child's output on a thread so that a silent child cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim_end().ends_with("READY") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the child did not report READY".into());
    }
    let held = FjallStore::open(dir.path());
    // Release the child (closing its stdin) before asserting, so it never outlives the test.
    drop(child.stdin.take());
    let status = child.wait()?;
    match held {
        Err(e @ StoreError::Locked(_)) => {
            assert!(
                e.to_string().contains(&dir.path().display().to_string()),
                "{e}"
            );
        }
        other => panic!("expected Locked while the child holds the store, got {other:?}"),
    }
    assert!(status.success(), "child failed: {status}");
    // The child is gone: the store opens and holds what the child committed.
    let store = FjallStore::open(dir.path())?;
    assert_eq!(
        store.get(Table::Users, b"child")?,
        Some(b"was here".to_vec())
    );
    Ok(())
}

#[test]
fn fjall_store_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<FjallStore>();
    check::<MemoryStore>();
}

// ---------------------------------------------------------------------------------------------
// MemoryStore crash model.

#[test]
fn memory_crash_between_two_commits_keeps_exactly_the_first() -> TestResult {
    let s = MemoryStore::new();
    s.crash_after_commits(1);
    s.commit(vec![
        put(Table::Users, b"first", b"1"),
        put(Table::Limits, b"l", b"1"),
    ])?;
    let r = s.commit(vec![
        put(Table::Users, b"second", b"2"),
        del(Table::Limits, b"l"),
    ]);
    assert!(matches!(r, Err(StoreError::Crashed)), "{r:?}");
    assert!(s.is_down());
    s.restart();
    assert!(!s.is_down());
    assert_eq!(s.scan(Table::Users, b"")?, pairs(&[(b"first", b"1")]));
    assert_eq!(s.get(Table::Limits, b"l")?, Some(b"1".to_vec()));
    assert_eq!(s.commit_count(), 1);
    Ok(())
}

#[test]
fn memory_crash_after_zero_commits_fails_the_next_one() -> TestResult {
    let s = MemoryStore::new();
    let before = s.contents()?;
    s.crash_after_commits(0);
    assert!(matches!(
        s.commit(vec![put(Table::Users, b"x", b"1")]),
        Err(StoreError::Crashed)
    ));
    assert_eq!(s.contents()?, before);
    s.restart();
    assert_eq!(s.get(Table::Users, b"x")?, None);
    // Disarmed by the crash: later commits work.
    s.commit(vec![put(Table::Users, b"x", b"2")])?;
    s.commit(vec![put(Table::Users, b"y", b"3")])?;
    assert_eq!(s.scan(Table::Users, b"")?.len(), 2);
    Ok(())
}

#[test]
fn memory_operations_while_down_fail() -> TestResult {
    let s = MemoryStore::new();
    s.commit(vec![put(Table::Users, b"a", b"1")])?;
    s.crash_now();
    assert!(matches!(
        s.get(Table::Users, b"a"),
        Err(StoreError::Crashed)
    ));
    assert!(matches!(
        s.scan(Table::Users, b""),
        Err(StoreError::Crashed)
    ));
    assert!(matches!(
        s.commit(vec![put(Table::Users, b"b", b"2")]),
        Err(StoreError::Crashed)
    ));
    // Every handle sees the crash; the durable contents are unchanged.
    let other = s.clone();
    assert!(other.is_down());
    assert!(matches!(
        other.get(Table::Users, b"a"),
        Err(StoreError::Crashed)
    ));
    other.restart();
    assert_eq!(s.scan(Table::Users, b"")?, pairs(&[(b"a", b"1")]));
    Ok(())
}

#[test]
fn memory_arming_while_down_counts_after_restart() -> TestResult {
    let s = MemoryStore::new();
    s.crash_now();
    s.crash_after_commits(1);
    assert!(matches!(s.commit(vec![]), Err(StoreError::Crashed)));
    s.restart(); // restart disarms
    s.commit(vec![put(Table::Users, b"a", b"1")])?;
    s.commit(vec![put(Table::Users, b"b", b"1")])?;
    s.crash_after_commits(1);
    s.commit(vec![put(Table::Users, b"c", b"1")])?;
    assert!(matches!(s.commit(vec![]), Err(StoreError::Crashed)));
    Ok(())
}

#[test]
fn memory_snapshot_is_independent_and_clone_is_shared() -> TestResult {
    let s = MemoryStore::with_store_id([9; 16]);
    s.commit(vec![put(Table::Users, b"a", b"1")])?;
    let snap = s.snapshot()?;
    let shared = s.clone();
    s.commit(vec![put(Table::Users, b"b", b"2")])?;
    snap.commit(vec![put(Table::Users, b"z", b"26")])?;
    assert_eq!(snap.store_id(), [9; 16]);
    assert_eq!(
        snap.scan(Table::Users, b"")?,
        pairs(&[(b"a", b"1"), (b"z", b"26")])
    );
    assert_eq!(
        shared.scan(Table::Users, b"")?,
        pairs(&[(b"a", b"1"), (b"b", b"2")])
    );
    // A snapshot of a down store is up, with the durable contents.
    s.crash_now();
    let after = s.snapshot()?;
    assert!(!after.is_down());
    assert_eq!(after.scan(Table::Users, b"")?.len(), 2);
    Ok(())
}

#[test]
fn memory_full_disk_fails_commits_and_keeps_reads() -> TestResult {
    let s = MemoryStore::new();
    s.commit(vec![put(Table::Users, b"a", b"1")])?;
    s.set_disk_full(true);
    assert!(matches!(
        s.commit(vec![put(Table::Users, b"b", b"2")]),
        Err(StoreError::Backend(_))
    ));
    assert_eq!(s.get(Table::Users, b"a")?, Some(b"1".to_vec()));
    assert_eq!(s.get(Table::Users, b"b")?, None);
    s.set_disk_full(false);
    s.commit(vec![put(Table::Users, b"b", b"2")])?;
    assert_eq!(s.get(Table::Users, b"b")?, Some(b"2".to_vec()));
    Ok(())
}

#[test]
fn memory_new_store_mirrors_a_fresh_fjall_store() -> TestResult {
    let m = MemoryStore::new();
    assert_eq!(m.store_id(), [0; 16]);
    let (_dir, f) = new_fjall();
    for table in Table::ALL {
        let strip = |rows: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
            rows.into_iter()
                .filter(|(k, _)| k != STORE_ID_KEY)
                .collect()
        };
        assert_eq!(strip(m.scan(table, b"")?), strip(f.scan(table, b"")?));
    }
    Ok(())
}

/// An ingested bulk survives a reopen, over keys the journal held before it and under
/// commits after it, and so does what a reopen after a failed one finds.
#[test]
fn fjall_bulk_commit_persists_across_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = FjallStore::open(dir.path())?;
    store.commit(vec![
        put(Table::LedgerIndex, b"a", b"1"),
        put(Table::LedgerIndex, b"c", b"1"),
    ])?;
    let bulk: Vec<Op> = (0..5000u32)
        .map(|i| {
            put(
                Table::LedgerIndex,
                format!("b{i:05}").as_bytes(),
                &i.to_be_bytes(),
            )
        })
        .chain([del(Table::LedgerIndex, b"c")])
        .collect();
    store.commit_bulk(bulk)?;
    store.commit(vec![put(Table::LedgerIndex, b"d", b"3")])?;
    drop(store);

    let store = FjallStore::open(dir.path())?;
    let rows = store.scan(Table::LedgerIndex, b"")?;
    assert_eq!(rows.len(), 5002);
    assert_eq!(rows.first(), Some(&(b"a".to_vec(), b"1".to_vec())));
    assert_eq!(rows.last(), Some(&(b"d".to_vec(), b"3".to_vec())));
    assert_eq!(store.get(Table::LedgerIndex, b"c")?, None);
    assert_eq!(
        store.get(Table::LedgerIndex, b"b04999")?,
        Some(4999u32.to_be_bytes().to_vec())
    );
    // A later commit of a bulk key wins over the bulk, also after a reopen.
    store.commit(vec![put(Table::LedgerIndex, b"b00007", b"new")])?;
    drop(store);
    let store = FjallStore::open(dir.path())?;
    assert_eq!(
        store.get(Table::LedgerIndex, b"b00007")?,
        Some(b"new".to_vec())
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Both implementations agree on random batch sequences.

fn table_strategy() -> impl Strategy<Value = Table> {
    prop_oneof![Just(Table::Meta), Just(Table::Users), Just(Table::Limits)]
}

/// Keys over a tiny alphabet so that batches collide, overwrite and share prefixes; rarely
/// empty (an invalid batch that both must reject as a whole).
fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        50 => proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xff)], 1..4),
        1 => Just(Vec::new()),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (table_strategy(), key_strategy(), proptest::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(table, key, value)| Op::Put { table, key, value }),
        1 => (table_strategy(), key_strategy()).prop_map(|(table, key)| Op::Delete { table, key }),
    ]
}

/// One step of [`memory_and_fjall_agree`].
#[derive(Debug, Clone)]
enum Step {
    Commit(Vec<Op>),
    /// [`Store::commit_bulk`].
    Bulk(Vec<Op>),
    /// Closing and reopening the fjall store.
    Reopen,
}

/// A batch of one table in strictly increasing key order (what the fjall store ingests).
fn sorted_batch_strategy() -> impl Strategy<Value = Vec<Op>> {
    (
        table_strategy(),
        proptest::collection::vec(op_strategy(), 0..6),
    )
        .prop_map(|(table, ops)| {
            let mut ops: Vec<Op> = ops
                .into_iter()
                .map(|op| match op {
                    Op::Put { key, value, .. } => Op::Put { table, key, value },
                    Op::Delete { key, .. } => Op::Delete { table, key },
                })
                .collect();
            ops.sort_by(|a, b| a.table_key().1.cmp(b.table_key().1));
            ops.dedup_by(|a, b| a.table_key() == b.table_key());
            ops
        })
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => proptest::collection::vec(op_strategy(), 0..6).prop_map(Step::Commit),
        4 => sorted_batch_strategy().prop_map(Step::Bulk),
        1 => proptest::collection::vec(op_strategy(), 0..6).prop_map(Step::Bulk),
        1 => Just(Step::Reopen),
    ]
}

fn outcome(r: &Result<(), StoreError>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(StoreError::Backend(_)) => "backend",
        Err(StoreError::Crashed) => "crashed",
        Err(_) => "other",
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_fjall_agree(steps in proptest::collection::vec(step_strategy(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let mut fjall = Some(FjallStore::open(dir.path()).unwrap());
        let memory = MemoryStore::new();
        for step in steps {
            match step {
                Step::Commit(batch) => {
                    let f = fjall.as_ref().unwrap().commit(batch.clone());
                    let m = memory.commit(batch);
                    prop_assert_eq!(outcome(&f), outcome(&m), "{:?} vs {:?}", f, m);
                }
                Step::Bulk(batch) => {
                    let f = fjall.as_ref().unwrap().commit_bulk(batch.clone());
                    let m = memory.commit_bulk(batch);
                    prop_assert_eq!(outcome(&f), outcome(&m), "{:?} vs {:?}", f, m);
                }
                Step::Reopen => {
                    drop(fjall.take());
                    fjall = Some(FjallStore::open(dir.path()).unwrap());
                }
            }
        }
        let fjall = fjall.unwrap();
        let prefixes: [&[u8]; 6] = [b"", b"\x00", b"\x01", b"\xff", b"\x00\x01", b"\xff\xff"];
        for table in Table::ALL {
            for prefix in prefixes {
                let strip = |rows: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
                    rows.into_iter().filter(|(k, _)| k != STORE_ID_KEY).collect()
                };
                prop_assert_eq!(
                    strip(fjall.scan(table, prefix).unwrap()),
                    strip(memory.scan(table, prefix).unwrap()),
                    "table {:?} prefix {:?}", table, prefix
                );
            }
            for key in [&b"\x00"[..], b"\x01\xff", b"\xff\x00\x01"] {
                prop_assert_eq!(fjall.get(table, key).unwrap(), memory.get(table, key).unwrap());
            }
            for (prefix, start) in [(&b""[..], &b"\x01"[..]), (b"\x00", b"\x00\x01"), (b"\x01", b""), (b"\xff", b"\xff\x00\x00")] {
                for limit in [0, 1, 2, 100] {
                    let strip = |rows: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<(Vec<u8>, Vec<u8>)> {
                        rows.into_iter().filter(|(k, _)| k != STORE_ID_KEY).collect()
                    };
                    prop_assert_eq!(
                        strip(fjall.scan_from(table, prefix, start, limit).unwrap()),
                        strip(memory.scan_from(table, prefix, start, limit).unwrap()),
                        "table {:?} prefix {:?} start {:?} limit {}", table, prefix, start, limit
                    );
                }
            }
        }
    }
}
