//! The ledger's queries over the in-memory store: positions, per-kind sizes and counts, pages,
//! and the streaming range check (`rcheck FROM TO`), which names the first bad seq of a feed
//! tampered with through the `Store` API and reports its progress page by page.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rand::SeedableRng;
use vserv_core::commands::{
    Command, Credential, RLIST_ENTRY_BUDGET, Reply, SecretBytes, SeqRange, UserRole,
};
use vserv_core::ledger::{Entry, EntryFields, MAX_BODY};
use vserv_core::{Request, ServerIdentity};
use vserv_service::ledger::{
    CHECK_PAGE, CheckReport, FeedKeys, KIND_PREFIX, Ledger, NewRecord, entry_key, kind_key,
    kind_runs, kind_runs_value,
};
use vserv_service::{Node, NodeSettings, Session};
use vserv_store::kv::{Op, Store, StoreError, Table};
use vserv_store::memory::MemoryStore;

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

fn identity() -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(11),
    ))
}

/// A ledger of `n` entries `r1..=rn`; entry `i` has kind `even` or `odd` after `i`.
fn filled(n: u64) -> (MemoryStore, Ledger) {
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    for i in 1..=n {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        let appended = ledger
            .append("alice", kind, format!("r{i}").as_bytes(), b"v=1\n", i)
            .unwrap();
        assert_eq!(appended.seq, i);
    }
    (store, ledger)
}

fn put(key: Vec<u8>, value: Vec<u8>) -> Op {
    Op::Put {
        table: Table::Ledger,
        key,
        value,
    }
}

/// Replaces entry `seq`'s body through the store API, keeping it a valid encoding; with
/// `reindex`, also indexes the forged entry under its new hash.
fn tamper_body(store: &MemoryStore, seq: u64, reindex: bool) {
    let bytes = store.get(Table::Ledger, &entry_key(seq)).unwrap().unwrap();
    let mut fields: EntryFields = Entry::decode(&bytes).unwrap().into_fields();
    fields.body = b"v=2\n".to_vec();
    let forged = Entry::new(fields).unwrap();
    let mut ops = vec![put(entry_key(seq), forged.to_bytes())];
    if reindex {
        ops.push(Op::Put {
            table: Table::LedgerIndex,
            key: FeedKeys::OWN.hash_at(seq, &forged.hash()),
            value: seq.to_be_bytes().to_vec(),
        });
    }
    store.commit(ops).unwrap();
}

/// The range check, which must report the same of the range's pages read on another
/// thread (as `vserv chain verify` reads them).
fn check(ledger: &Ledger, from: u64, to: u64) -> CheckReport {
    let report = ledger.check_range(from, to, &mut |_| {}).unwrap();
    let feed = ledger.feed();
    let pages: Vec<_> =
        std::thread::scope(|s| s.spawn(|| feed.entry_pages(from, to).collect()).join()).unwrap();
    assert_eq!(
        feed.check_pages(from, to, pages, &mut |_| {}).unwrap(),
        report,
        "pages read apart, {from}..={to}"
    );
    report
}

fn bad_seq(report: CheckReport) -> Option<u64> {
    match report {
        CheckReport::Bad { seq, .. } => seq,
        CheckReport::Ok { seq } => panic!("the check passed at seq {seq}"),
    }
}

#[test]
fn a_range_check_names_the_first_bad_seq_inside_the_range() {
    let (store, ledger) = filled(10);
    assert_eq!(check(&ledger, 3, 7), CheckReport::Ok { seq: 10 });
    tamper_body(&store, 4, false);
    tamper_body(&store, 7, false);
    assert_eq!(bad_seq(ledger.check().unwrap()), Some(4));
    assert_eq!(bad_seq(check(&ledger, 1, 10)), Some(4));
    assert_eq!(bad_seq(check(&ledger, 4, 4)), Some(4));
    // Entry 5 is intact, but no longer links to the changed entry 4 before the range.
    assert_eq!(bad_seq(check(&ledger, 5, 10)), Some(5));
    assert_eq!(bad_seq(check(&ledger, 6, 10)), Some(7));
    assert_eq!(bad_seq(check(&ledger, 7, 7)), Some(7));
    // Entry 6 is intact and links to entry 5; the head's entry (10) is intact.
    assert_eq!(check(&ledger, 6, 6), CheckReport::Ok { seq: 10 });
    // Entry 8 no longer links to the changed entry 7 before the range.
    assert_eq!(bad_seq(check(&ledger, 8, 10)), Some(8));
    // Ranges past the head hold nothing to check.
    assert_eq!(check(&ledger, 11, u64::MAX), CheckReport::Ok { seq: 10 });
}

#[test]
fn a_forged_hash_index_is_caught_by_the_next_link_or_the_head() {
    let (store, ledger) = filled(6);
    tamper_body(&store, 3, true);
    // The changed entry itself is consistent with the (forged) index ...
    assert_eq!(check(&ledger, 3, 3), CheckReport::Ok { seq: 6 });
    // ... but entry 4 links to the original.
    assert_eq!(bad_seq(check(&ledger, 3, 4)), Some(4));

    let (store, ledger) = filled(6);
    tamper_body(&store, 6, true);
    // The head's entry is checked whether or not it is inside the range.
    assert_eq!(bad_seq(check(&ledger, 1, 2)), Some(6));
    assert_eq!(bad_seq(check(&ledger, 5, 6)), Some(6));
}

#[test]
fn missing_stray_and_garbage_entries_are_named() {
    let (store, ledger) = filled(8);
    store
        .commit(vec![Op::Delete {
            table: Table::Ledger,
            key: entry_key(5),
        }])
        .unwrap();
    assert_eq!(bad_seq(check(&ledger, 4, 6)), Some(5));
    assert_eq!(bad_seq(check(&ledger, 5, 5)), Some(5));
    // Entry 6 links to entry 5, which is gone.
    assert_eq!(bad_seq(check(&ledger, 6, 8)), Some(5));
    assert_eq!(check(&ledger, 1, 4), CheckReport::Ok { seq: 8 });

    // An entry stored beyond the signed head.
    let (store, ledger) = filled(3);
    let copy = store.get(Table::Ledger, &entry_key(3)).unwrap().unwrap();
    store.commit(vec![put(entry_key(9), copy)]).unwrap();
    assert_eq!(check(&ledger, 1, 3), CheckReport::Ok { seq: 3 });
    assert_eq!(bad_seq(check(&ledger, 1, 9)), Some(9));
    assert_eq!(bad_seq(ledger.check().unwrap()), Some(9));

    // Garbage in the middle of a range.
    let (store, ledger) = filled(4);
    store
        .commit(vec![put(entry_key(3), b"garbage".to_vec())])
        .unwrap();
    assert_eq!(bad_seq(check(&ledger, 2, 4)), Some(3));
    assert_eq!(check(&ledger, 1, 2), CheckReport::Ok { seq: 4 });
}

#[test]
fn check_range_reports_progress_after_each_page() {
    let n = 2 * CHECK_PAGE as u64 + 100;
    let (_store, ledger) = filled(n);
    let mut seen = Vec::new();
    let report = ledger
        .check_range(1, u64::MAX, &mut |seq| seen.push(seq))
        .unwrap();
    assert_eq!(report, CheckReport::Ok { seq: n });
    let page = CHECK_PAGE as u64;
    assert_eq!(seen, vec![page, 2 * page, n]);

    let mut seen = Vec::new();
    let report = ledger
        .check_range(1000, 1000 + page, &mut |seq| seen.push(seq))
        .unwrap();
    assert_eq!(report, CheckReport::Ok { seq: n });
    assert_eq!(seen, vec![1000 + page - 1, 1000 + page]);
}

#[test]
fn a_check_of_pages_reads_no_page_past_its_finding_and_fails_with_a_failed_page() {
    let n = 3 * CHECK_PAGE as u64;
    let (store, ledger) = filled(n);
    let feed = ledger.feed();
    assert_eq!(feed.entry_pages(1, n).count(), 3);
    let first = feed.entry_pages(1, n).next().unwrap();
    let failed = vec![first, Err(StoreError::Backend("disk gone".into()))];
    let err = feed.check_pages(1, n, failed, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(why) if why == "disk gone"),
        "{err}"
    );

    tamper_body(&store, 5, false);
    let mut pulled = 0;
    let pages = feed.entry_pages(1, n).inspect(|_| pulled += 1);
    let report = feed.check_pages(1, n, pages, &mut |_| {}).unwrap();
    assert_eq!(bad_seq(report), Some(5));
    assert_eq!(
        pulled, 1,
        "the check stopped reading at the bad entry's page"
    );
}

#[test]
fn positions_count_from_either_end() {
    let (_store, ledger) = filled(5);
    let seq_at = |pos| ledger.by_position(pos).unwrap().map(|e| e.seq());
    assert_eq!(seq_at(1), Some(1));
    assert_eq!(seq_at(5), Some(5));
    assert_eq!(seq_at(-1), Some(5));
    assert_eq!(seq_at(-5), Some(1));
    for out in [0, 6, -6, i64::MAX, i64::MIN] {
        assert_eq!(seq_at(out), None, "{out}");
    }
    let (_store, empty) = filled(0);
    assert_eq!(empty.by_position(1).unwrap(), None);
    assert_eq!(empty.by_position(-1).unwrap(), None);
}

#[test]
fn kinds_are_sized_and_counted() {
    let (_store, ledger) = filled(9);
    assert_eq!(ledger.size_of_kind("odd").unwrap(), 5);
    assert_eq!(ledger.size_of_kind("even").unwrap(), 4);
    assert_eq!(ledger.size_of_kind("none").unwrap(), 0);
    // Whole feed (from the counter) and partial ranges (from the index) agree.
    assert_eq!(ledger.count("odd", 1, u64::MAX).unwrap(), 5);
    assert_eq!(ledger.count("odd", 1, 9).unwrap(), 5);
    assert_eq!(ledger.count("odd", 1, 8).unwrap(), 4);
    assert_eq!(ledger.count("odd", 2, 9).unwrap(), 4);
    assert_eq!(ledger.count("even", 4, 4).unwrap(), 1);
    assert_eq!(ledger.count("even", 5, 5).unwrap(), 0);
    assert_eq!(ledger.count("even", 10, 20).unwrap(), 0);
    assert_eq!(ledger.count("even", 5, 4).unwrap(), 0);
    assert_eq!(ledger.count("none", 1, 9).unwrap(), 0);
}

#[test]
fn pages_follow_limits_kinds_and_next() {
    let (_store, ledger) = filled(9);
    let seqs = |page: &vserv_service::ledger::Page| -> Vec<u64> {
        page.entries.iter().map(Entry::seq).collect()
    };
    let page = ledger.list(None, 2, 6, 3).unwrap();
    assert_eq!((seqs(&page), page.next), (vec![2, 3, 4], Some(5)));
    let page = ledger.list(None, 5, 6, 3).unwrap();
    assert_eq!((seqs(&page), page.next), (vec![5, 6], None));
    // Exactly LIMIT matches left: no next page.
    let page = ledger.list(None, 7, 9, 3).unwrap();
    assert_eq!((seqs(&page), page.next), (vec![7, 8, 9], None));
    // One kind: next is the next entry of that kind.
    let page = ledger.list(Some("even"), 1, 9, 2).unwrap();
    assert_eq!((seqs(&page), page.next), (vec![2, 4], Some(6)));
    let page = ledger.list(Some("even"), 6, 9, 2).unwrap();
    assert_eq!((seqs(&page), page.next), (vec![6, 8], None));
    let page = ledger.list(Some("odd"), 2, 2, 2).unwrap();
    assert_eq!((seqs(&page), page.next), (vec![], None));
    // Limit 0 still makes progress.
    let page = ledger.list(None, 1, 9, 0).unwrap();
    assert_eq!((seqs(&page), page.next), (vec![1], Some(2)));
    let page = ledger.list(Some("none"), 1, 9, 100).unwrap();
    assert_eq!((seqs(&page), page.next), (vec![], None));
}

#[test]
fn pages_of_large_entries_stay_within_one_record() {
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store), identity());
    for i in 0..5u8 {
        let body = vec![i; if i == 2 { 10 } else { MAX_BODY }];
        ledger.append("alice", "big", &[b'r', i], &body, 1).unwrap();
    }
    let mut from = 1;
    let mut all = Vec::new();
    loop {
        let page = ledger.list(Some("big"), from, 5, 1000).unwrap();
        let bytes: usize = page.entries.iter().map(|e| 4 + e.encoded_len()).sum();
        assert!(bytes <= RLIST_ENTRY_BUDGET, "{bytes}");
        assert!(!page.entries.is_empty());
        all.extend(page.entries.iter().map(Entry::seq));
        match page.next {
            Some(next) => from = next,
            None => break,
        }
    }
    assert_eq!(all, vec![1, 2, 3, 4, 5]);
    // A full-size entry and the small one share a page; two full-size ones do not.
    assert_eq!(ledger.list(None, 2, 5, 1000).unwrap().entries.len(), 2);
    assert_eq!(ledger.list(None, 3, 5, 1000).unwrap().entries.len(), 2);
    let page = ledger.list(None, 4, 5, 1000).unwrap();
    assert_eq!((page.entries.len(), page.next), (1, Some(5)));
}

#[test]
fn rcheck_with_a_range_through_the_service() {
    let store = MemoryStore::new();
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(5));
    let node = Node::builder(identity(), NodeSettings::insecure_fast("ledger"))
        .store(Arc::new(store.clone()))
        .rng(rng)
        .build()
        .unwrap();
    node.accounts()
        .create("root", UserRole::Admin, b"root-password", 1)
        .unwrap();
    let ledger = node.ledger().clone();
    for i in 1..=6u64 {
        ledger
            .append("root", "k", format!("r{i}").as_bytes(), b"", i)
            .unwrap();
    }
    let service = node.service();
    let mut session = Session::new(Some(PEER));
    let mut call = |cmd: &Command| {
        let request = Request {
            id: 1,
            name: cmd.name().into(),
            args: cmd.args(),
        };
        let (response, _) = service.answer(&mut session, &request, 1_700_000_000_000);
        response
            .result
            .map(|fields| Reply::from_fields(cmd, &fields).unwrap())
    };
    call(&Command::Login {
        user: "root".into(),
        credential: Credential::Password(SecretBytes::new(b"root-password".to_vec())),
    })
    .unwrap();
    let rcheck = |from, to| Command::Rcheck {
        range: Some(SeqRange { from, to }),
        origin: None,
    };
    assert_eq!(call(&rcheck(2, 5)), Ok(Reply::ChainOk { seq: 6 }));
    tamper_body(&store, 4, false);
    match call(&rcheck(2, 5)) {
        Ok(Reply::ChainBad {
            seq: Some(4),
            reason,
        }) => assert!(reason.contains('4'), "{reason}"),
        other => panic!("rcheck gave {other:?}"),
    }
    assert_eq!(call(&rcheck(1, 3)), Ok(Reply::ChainOk { seq: 6 }));
    assert!(matches!(
        call(&rcheck(5, 6)),
        Ok(Reply::ChainBad { seq: Some(5), .. })
    ));
}

fn new_record(i: u64, kind: &str) -> NewRecord {
    NewRecord {
        author: "alice".into(),
        kind: kind.into(),
        record_id: format!("r{i}").into_bytes(),
        body: b"v=1\n".to_vec(),
        timestamp: i,
    }
}

/// The seqs of `kind` in `from..=to`, read entry by entry.
fn brute(ledger: &Ledger, kind: &str, from: u64, to: u64) -> Vec<u64> {
    (from.max(1)..=to.min(ledger.size().unwrap()))
        .filter(|&s| ledger.by_seq(s).unwrap().unwrap().kind() == kind)
        .collect()
}

/// Every seq `rlist KIND FROM TO` pages through, `limit` at a time.
fn listed(ledger: &Ledger, kind: &str, from: u64, to: u64, limit: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let page = ledger.list(Some(kind), at, to, limit).unwrap();
        out.extend(page.entries.iter().map(|e| e.seq()));
        match page.next {
            Some(next) => at = next,
            None => return out,
        }
    }
}

/// A feed whose first part has the kind index as 59d7ca6 wrote it (one empty-valued key per
/// entry) and whose later commits keep one record per kind per commit: counts and pages by
/// kind agree with the entries over every range, and the feed verifies.
#[test]
fn kind_queries_read_the_old_per_entry_index_and_the_per_commit_one_alike() {
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    let kind_of = |i: u64| match i {
        1..=8 => ["odd", "even"][(i % 2) as usize],
        9..=14 => "odd",
        15..=20 => ["odd", "even", "even"][(i % 3) as usize],
        _ => "even",
    };
    let commit = |range: std::ops::RangeInclusive<u64>| {
        let results = ledger.append_batch(range.map(|i| new_record(i, kind_of(i))).collect());
        assert!(results.iter().all(Result::is_ok));
    };
    commit(1..=8);
    // Rewrite the first commit's kind index the way 59d7ca6 stored it (in the entries'
    // table, where every per-commit key was then).
    let commits = FeedKeys::OWN.commit_table();
    let mut ops: Vec<Op> = store
        .scan(commits, KIND_PREFIX)
        .unwrap()
        .into_iter()
        .map(|(key, _)| Op::Delete {
            table: commits,
            key,
        })
        .collect();
    ops.extend((1..=8).map(|i| put(kind_key(kind_of(i), i), Vec::new())));
    store.commit(ops).unwrap();
    commit(9..=20);
    commit(21..=21);
    commit(22..=30);
    // 8 old keys, then one record per kind per later commit (2 + 1 + 1).
    assert_eq!(store.scan(Table::Ledger, KIND_PREFIX).unwrap().len(), 8);
    assert_eq!(store.scan(commits, KIND_PREFIX).unwrap().len(), 4);
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 30 });
    for kind in ["odd", "even", "none"] {
        assert_eq!(
            ledger.size_of_kind(kind).unwrap(),
            brute(&ledger, kind, 1, 30).len() as u64
        );
        for from in 0..=31 {
            for to in from..=32 {
                let want = brute(&ledger, kind, from, to);
                assert_eq!(
                    ledger.count(kind, from, to).unwrap(),
                    want.len() as u64,
                    "count {kind} {from}..={to}"
                );
                assert_eq!(
                    listed(&ledger, kind, from, to, 3),
                    want,
                    "list {kind} {from}..={to}"
                );
            }
        }
    }
}

#[test]
fn kind_index_values_round_trip_and_garbled_ones_are_refused() {
    for runs in [vec![(5, 5)], vec![(3, 4)], vec![(1, 2), (4, 4), (6, 9)]] {
        let last = runs.last().unwrap().1;
        assert_eq!(kind_runs(last, &kind_runs_value(&runs)).unwrap(), runs);
    }
    assert!(kind_runs_value(&[(7, 7)]).is_empty());
    let good = kind_runs_value(&[(1, 2), (4, 5)]);
    let garbled = [
        good[..good.len() - 1].to_vec(),    // not whole runs
        kind_runs_value(&[(4, 5), (1, 2)]), // descending
        kind_runs_value(&[(1, 3), (3, 5)]), // overlapping
        kind_runs_value(&[(3, 2), (4, 5)]), // a run ending before it starts
        kind_runs_value(&[(0, 2), (4, 5)]), // seq 0
    ];
    for value in garbled {
        assert!(kind_runs(5, &value).is_err(), "{value:?}");
    }
    // The runs must end at the key's seq.
    assert!(kind_runs(6, &good).is_err());
}
