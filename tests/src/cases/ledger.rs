//! The ledger over the protocol: `rput`/`rget`, conflicts, signed heads, gapless seqs,
//! access, positions and counts, range checks, paging `rlist`, and the reads of a held
//! replica named by its origin.

use std::sync::Arc;

use vserv_core::commands::{Command, RecordSelector, Reply, SeqRange};
use vserv_core::ledger::Entry;
use vserv_core::{Config, ErrorCode, Fingerprint};
use vserv_service::client::ClientError;
use vserv_service::ledger::{Ledger, NewRecord};
use vserv_service::replicas::Replicas;
use vserv_store::{MemoryStore, Store};

use crate::clients::*;
use crate::fixture::*;
use crate::{Fixture, Runtime, TestClient, TestServer};

fn rput(kind: &str, record_id: &str, body: &[u8]) -> Command {
    Command::Rput {
        kind: kind.into(),
        record_id: record_id.as_bytes().to_vec(),
        body: body.to_vec(),
    }
}

/// `rput` by `client`, returning the seq and hash it replied with.
fn appended<C: TestClient>(client: &mut C, command: &Command) -> (u64, [u8; 32]) {
    match client.call(command).expect("rput") {
        Reply::Appended { seq, hash } => (seq, hash),
        other => panic!("rput gave {other:?}"),
    }
}

fn record<C: TestClient>(
    client: &mut C,
    selector: vserv_core::commands::RecordSelector,
) -> vserv_core::ledger::Entry {
    match client
        .call(&Command::Rget {
            selector,
            origin: None,
        })
        .expect("rget")
    {
        Reply::Record(entry) => entry,
        other => panic!("rget gave {other:?}"),
    }
}

/// `rput` then `rget` by seq, id and hash: the entry decodes, hashes to the hash `rput`
/// replied, and carries the origin, author, kind, record id and body.
pub fn ledger_put_then_get<R: Runtime>() {
    let fx = Fixture::new(40);
    let server = start::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    let body = b"name=alice\nscore=42\n";
    let (seq, hash) = appended(&mut alice, &rput("score", "rec-1", body));
    assert_eq!(seq, 1);
    let by_seq = record(&mut alice, RecordSelector::Seq(1));
    let by_id = record(&mut alice, RecordSelector::Id(b"rec-1".to_vec()));
    let by_hash = record(&mut alice, RecordSelector::Hash(hash));
    for entry in [&by_seq, &by_id, &by_hash] {
        assert_eq!(entry.hash(), hash);
        assert_eq!(entry.seq(), 1);
        assert_eq!(entry.origin(), fx.identity.public_key());
        assert_eq!(entry.prev(), &vserv_core::ledger::ZERO_HASH);
        assert_eq!(entry.author(), "alice");
        assert_eq!(entry.kind(), "score");
        assert_eq!(entry.record_id(), b"rec-1");
        assert_eq!(entry.body(), body);
    }
    let (seq2, hash2) = appended(&mut alice, &rput("score", "rec-2", b""));
    assert_eq!(seq2, 2);
    let second = record(&mut alice, RecordSelector::Seq(2));
    assert_eq!(second.hash(), hash2);
    assert_eq!(second.prev(), &hash, "entry 2 links to entry 1");
    assert_eq!(
        alice
            .call(&Command::Rhave {
                record_id: b"rec-1".to_vec(),
                origin: None
            })
            .expect("call"),
        (Reply::Have(true))
    );
    assert_eq!(
        alice
            .call(&Command::Rhave {
                record_id: b"rec-9".to_vec(),
                origin: None
            })
            .expect("call"),
        (Reply::Have(false))
    );
    for missing in [
        RecordSelector::Seq(3),
        RecordSelector::Seq(0),
        RecordSelector::Id(b"rec-9".to_vec()),
        RecordSelector::Hash([0; 32]),
    ] {
        assert_eq!(
            code_of(alice.call(&Command::Rget {
                selector: missing,
                origin: None
            })),
            Some(ErrorCode::NotFound)
        );
    }
    // A kind outside the rules is refused before it reaches the ledger.
    assert_eq!(
        code_of(alice.call(&rput("Bad Kind", "rec-3", b""))),
        Some(ErrorCode::BadArguments)
    );
    assert_eq!(
        alice
            .call(&Command::Rsize {
                kind: None,
                origin: None
            })
            .expect("call"),
        (Reply::Count(2))
    );
    server.shutdown();
}

/// A repeated record id is a `Conflict` and is not stored twice.
pub fn ledger_duplicate_record_id_is_refused<R: Runtime>() {
    let fx = Fixture::new(41);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    appended(&mut alice, &rput("k", "same", b"first"));
    assert_eq!(
        code_of(alice.call(&rput("k", "same", b"second"))),
        Some(ErrorCode::Conflict)
    );
    // Another user with the same id: still a duplicate (ids are unique per feed).
    assert_eq!(
        code_of(root.call(&rput("other", "same", b"third"))),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        alice
            .call(&Command::Rsize {
                kind: None,
                origin: None
            })
            .expect("call"),
        (Reply::Count(1))
    );
    let stored = record(&mut alice, RecordSelector::Id(b"same".to_vec()));
    assert_eq!(stored.body(), b"first");
    assert_eq!(
        code_of(alice.call(&Command::Rget {
            selector: RecordSelector::Seq(2),
            origin: None
        })),
        Some(ErrorCode::NotFound)
    );
    // The next new id takes the next seq.
    assert_eq!(appended(&mut alice, &rput("k", "new", b"")).0, 2);
    assert_eq!(
        root.call(&Command::Rcheck {
            range: None,
            origin: None
        })
        .expect("call"),
        (Reply::ChainOk { seq: 2 })
    );
    server.shutdown();
}

/// Entries appended one by one across several of the index's bulks (the suite's servers
/// store the index keys every [`SUITE_INDEX_BULK`] entries, on the runtime's runner beside
/// the commits) are each found by seq, id and hash, and each id is refused again, at every
/// step: whether an entry's keys are stored yet or wait in memory.
pub fn ledger_lookups_span_the_index_bulks<R: Runtime>() {
    let fx = Fixture::new(151);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let n = 3 * SUITE_INDEX_BULK as u64 + 2;
    let mut hashes = Vec::new();
    for i in 1..=n {
        let id = format!("bulk-{i}");
        let (seq, hash) = appended(&mut alice, &rput("k", &id, b"v=1\n"));
        assert_eq!(seq, i);
        hashes.push(hash);
        for (j, hash) in (1..=i).zip(&hashes) {
            let id = format!("bulk-{j}").into_bytes();
            assert_eq!(record(&mut alice, RecordSelector::Id(id.clone())).seq(), j);
            assert_eq!(record(&mut alice, RecordSelector::Hash(*hash)).seq(), j);
            assert_eq!(
                code_of(alice.call(&rput("k", &format!("bulk-{j}"), b""))),
                Some(ErrorCode::Conflict),
                "id {j} after {i} entries"
            );
        }
    }
    assert_eq!(
        root.call(&Command::Rcheck {
            range: None,
            origin: None
        })
        .expect("call"),
        Reply::ChainOk { seq: n }
    );
    server.shutdown();
}

/// Record ids stored before the server restarted are still refused after it, whether or
/// not the restarted server's record id filter has been built yet (it is built in the
/// background at start), and new ids go on from the stored head.
pub fn ledger_ids_stored_before_a_restart_are_refused<R: Runtime>() {
    let fx = Fixture::new(49);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let serve = || {
        let service = fx
            .node(settings())
            .store(store.clone())
            .build()
            .expect("node")
            .service();
        R::start(fx.identity.clone(), service, 64, Config::default())
    };
    let server = serve();
    let (root, mut alice) = ledger_users::<R>(&server, &fx);
    for (seq, id) in (1..).zip(["a", "b", "c"]) {
        assert_eq!(appended(&mut alice, &rput("k", id, b"")).0, seq);
    }
    drop((root, alice));
    server.shutdown();

    let server = serve();
    let mut alice = logged_in::<R>(&server, &fx, "alice", "alice-password");
    for id in ["a", "b", "c"] {
        assert_eq!(
            code_of(alice.call(&rput("k", id, b"again"))),
            Some(ErrorCode::Conflict),
            "{id}"
        );
    }
    assert_eq!(appended(&mut alice, &rput("k", "d", b"")).0, 4);
    assert_eq!(
        code_of(alice.call(&rput("k", "d", b"again"))),
        Some(ErrorCode::Conflict)
    );
    drop(alice);
    server.shutdown();
}

/// `rhead` is signed by the server key and names the last entry.
pub fn ledger_head_is_signed_and_current<R: Runtime>() {
    let fx = Fixture::new(42);
    let server = start::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    assert_eq!(
        code_of(alice.call(&Command::Rhead { origin: None })),
        Some(ErrorCode::NotFound),
        "an empty ledger has no head"
    );
    let mut last = (0, [0; 32]);
    for i in 0..3 {
        last = appended(&mut alice, &rput("k", &format!("r{i}"), b""));
        let Reply::Head(signed) = alice.call(&Command::Rhead { origin: None }).expect("rhead")
        else {
            panic!("rhead gave another reply");
        };
        signed.verify().expect("the head signature verifies");
        assert_eq!(signed.head.origin, fx.identity.public_key());
        assert_eq!((signed.head.seq, signed.head.hash), last);
    }
    assert_eq!(record(&mut alice, RecordSelector::Seq(3)).hash(), last.1);
    server.shutdown();
}

/// Appends from several connections interleaved keep seq gapless and the chain verifiable.
pub fn ledger_seq_is_gapless<R: Runtime>() {
    let fx = Fixture::new(43);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let mut alice2 = logged_in::<R>(&server, &fx, "alice", "alice-password");
    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(appended(&mut alice, &rput("a", &format!("a{i}"), b"")).0);
        seqs.push(appended(&mut alice2, &rput("b", &format!("b{i}"), b"")).0);
        seqs.push(appended(&mut root, &rput("c", &format!("c{i}"), b"")).0);
    }
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());
    assert_eq!(
        alice
            .call(&Command::Rsize {
                kind: None,
                origin: None
            })
            .expect("call"),
        (Reply::Count(30))
    );
    let mut prev = vserv_core::ledger::ZERO_HASH;
    for seq in 1..=30 {
        let entry = record(&mut alice, RecordSelector::Seq(seq));
        assert_eq!(entry.prev(), &prev, "entry {seq} links to the one before");
        prev = entry.hash();
    }
    assert_eq!(
        root.call(&Command::Rcheck {
            range: None,
            origin: None
        })
        .expect("call"),
        (Reply::ChainOk { seq: 30 })
    );
    server.shutdown();
}

/// Anonymous sessions may not touch the ledger; users may not run `rcheck`.
pub fn ledger_access_is_enforced<R: Runtime>() {
    let fx = Fixture::new(44);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    for cmd in [
        rput("k", "anon", b""),
        Command::Rsize {
            kind: None,
            origin: None,
        },
        Command::Rhead { origin: None },
        Command::Rabs {
            pos: 1,
            origin: None,
        },
        Command::Rlist {
            kind: None,
            range: SeqRange { from: 1, to: 1 },
            limit: None,
            origin: None,
        },
    ] {
        assert_eq!(
            code_of(anonymous.call(&cmd)),
            Some(ErrorCode::Forbidden),
            "anonymous {}",
            cmd.name()
        );
    }
    assert_eq!(
        code_of(alice.call(&Command::Rcheck {
            range: None,
            origin: None
        })),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        alice
            .call(&Command::Rsize {
                kind: None,
                origin: None
            })
            .expect("call"),
        (Reply::Count(0))
    );
    assert_eq!(
        root.call(&Command::Rcheck {
            range: None,
            origin: None
        })
        .expect("call"),
        (Reply::ChainOk { seq: 0 })
    );
    server.shutdown();
}

/// `rabs` counts from either end and refuses 0; `rsize KIND` and `rcount` count one kind.
pub fn ledger_positions_and_kind_counts<R: Runtime>() {
    let fx = Fixture::new(45);
    let server = start::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    for (i, kind) in ["a", "b", "a", "a", "b"].into_iter().enumerate() {
        appended(&mut alice, &rput(kind, &format!("p{i}"), b""));
    }
    let at = |client: &mut R::Client, pos: i64| match client
        .call(&Command::Rabs { pos, origin: None })
    {
        Ok(Reply::Record(entry)) => Some(entry),
        Err(ClientError::Server(e)) if e.code == ErrorCode::NotFound => None,
        other => panic!("rabs {pos} gave {other:?}"),
    };
    for (pos, seq) in [(1, 1), (2, 2), (5, 5), (-1, 5), (-2, 4), (-5, 1)] {
        let entry = at(&mut alice, pos).expect("an entry at that position");
        assert_eq!(entry.seq(), seq, "rabs {pos}");
        assert_eq!(entry, record(&mut alice, RecordSelector::Seq(seq)));
    }
    for pos in [6, -6, i64::MAX, i64::MIN] {
        assert!(at(&mut alice, pos).is_none(), "rabs {pos}");
    }
    assert_eq!(
        code_of(alice.call(&Command::Rabs {
            pos: 0,
            origin: None
        })),
        Some(ErrorCode::BadArguments)
    );
    let count = |client: &mut R::Client, cmd: Command| match client.call(&cmd) {
        Ok(Reply::Count(n)) => n,
        other => panic!("{} gave {other:?}", cmd.name()),
    };
    let rsize = |kind: Option<&str>| Command::Rsize {
        kind: kind.map(Into::into),
        origin: None,
    };
    assert_eq!(count(&mut alice, rsize(None)), 5);
    assert_eq!(count(&mut alice, rsize(Some("a"))), 3);
    assert_eq!(count(&mut alice, rsize(Some("b"))), 2);
    assert_eq!(count(&mut alice, rsize(Some("zzz"))), 0);
    let rcount = |kind: &str, from, to| Command::Rcount {
        kind: kind.into(),
        range: SeqRange { from, to },
        origin: None,
    };
    assert_eq!(count(&mut alice, rcount("a", 1, 5)), 3);
    assert_eq!(count(&mut alice, rcount("a", 1, u64::MAX)), 3);
    assert_eq!(count(&mut alice, rcount("a", 2, 3)), 1);
    assert_eq!(count(&mut alice, rcount("a", 3, 4)), 2);
    assert_eq!(count(&mut alice, rcount("b", 3, 100)), 1);
    assert_eq!(count(&mut alice, rcount("b", 6, 100)), 0);
    assert_eq!(count(&mut alice, rcount("zzz", 1, 5)), 0);
    // An empty ledger: rabs finds nothing, every count is 0.
    let empty = Fixture::new(46);
    let server2 = start::<R>(&empty);
    let (_root2, mut bob) = ledger_users::<R>(&server2, &empty);
    assert!(at(&mut bob, 1).is_none());
    assert!(at(&mut bob, -1).is_none());
    assert_eq!(count(&mut bob, rsize(Some("a"))), 0);
    assert_eq!(count(&mut bob, rcount("a", 1, 5)), 0);
    server2.shutdown();
    server.shutdown();
}

/// `rcount`, `rlist` and `rcheck` refuse reversed ranges and seq 0 before touching the
/// ledger.
pub fn ledger_reversed_ranges_are_refused<R: Runtime>() {
    let fx = Fixture::new(47);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    appended(&mut alice, &rput("k", "one", b""));
    for (from, to) in [(5, 4), (2, 1), (u64::MAX, 1), (0, 3)] {
        let range = SeqRange { from, to };
        let commands = [
            Command::Rcount {
                kind: "k".into(),
                range,
                origin: None,
            },
            Command::Rlist {
                kind: None,
                range,
                limit: None,
                origin: None,
            },
            Command::Rlist {
                kind: Some("k".into()),
                range,
                limit: Some(5),
                origin: None,
            },
            Command::Rcheck {
                range: Some(range),
                origin: None,
            },
        ];
        for cmd in commands {
            let client = if cmd.name() == "rcheck" {
                &mut root
            } else {
                &mut alice
            };
            match client.call(&cmd) {
                Err(ClientError::Server(e)) => {
                    assert_eq!(e.code, ErrorCode::BadArguments, "{cmd:?}");
                    if from != 0 {
                        assert!(e.message.contains("reversed range"), "{}", e.message);
                    }
                }
                other => panic!("{cmd:?} gave {other:?}"),
            }
        }
    }
    // The same ranges the right way round work.
    assert_eq!(
        root.call(&Command::Rcheck {
            range: Some(SeqRange { from: 1, to: 1 }),
            origin: None
        })
        .expect("rcheck"),
        Reply::ChainOk { seq: 1 }
    );
    server.shutdown();
}

/// Pages of `rlist` by `client`: every page of `kind` over `from..=to`, following `next`.
fn all_pages<C: TestClient>(
    client: &mut C,
    kind: Option<&str>,
    from: u64,
    to: u64,
    limit: Option<u32>,
    mut between: impl FnMut(),
) -> Vec<Vec<vserv_core::ledger::Entry>> {
    let mut pages = Vec::new();
    let mut from = from;
    loop {
        let cmd = Command::Rlist {
            kind: kind.map(Into::into),
            range: SeqRange { from, to },
            limit,
            origin: None,
        };
        let Reply::Page { entries, next } = client.call(&cmd).expect("rlist") else {
            panic!("rlist gave another reply");
        };
        pages.push(entries);
        match next {
            Some(next) => from = next,
            None => return pages,
        }
        between();
    }
}

/// Paging `rlist` by `next` while another client appends between pages: no entry is
/// skipped or repeated, and each is the entry `rget` returns for its seq; per kind and for
/// every kind (`*`).
pub fn ledger_rlist_pages_while_appending<R: Runtime>() {
    let fx = Fixture::new(48);
    let server = start::<R>(&fx);
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let kind_of = |i: u64| if i.is_multiple_of(3) { "x" } else { "y" };
    for i in 1..=10u64 {
        appended(&mut alice, &rput(kind_of(i), &format!("l{i}"), b"v=1\n"));
    }
    let writer = std::cell::RefCell::new((alice, 10u64));
    // Appends one entry between each of the first four pages.
    let append_some = || {
        let mut w = writer.borrow_mut();
        if w.1 < 14 {
            w.1 += 1;
            let i = w.1;
            let (seq, _) = appended(&mut w.0, &rput(kind_of(i), &format!("l{i}"), b"v=2\n"));
            assert_eq!(seq, i);
        }
    };
    let pages = all_pages(&mut root, None, 1, u64::MAX, Some(3), append_some);
    assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= 3));
    let all: Vec<_> = pages.into_iter().flatten().collect();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq()).collect();
    assert_eq!(seqs, (1..=14).collect::<Vec<u64>>(), "no skip, no repeat");
    for entry in &all {
        assert_eq!(entry, &record(&mut root, RecordSelector::Seq(entry.seq())));
    }
    assert!(all.iter().any(|e| e.kind() == "x") && all.iter().any(|e| e.kind() == "y"));

    // One kind, with appends of that kind and others between pages.
    let before = writer.borrow().1;
    let more = std::cell::Cell::new(0);
    let append_more = || {
        if more.get() < 6 {
            more.set(more.get() + 1);
            let mut w = writer.borrow_mut();
            w.1 += 1;
            let i = w.1;
            appended(&mut w.0, &rput(kind_of(i), &format!("l{i}"), b""));
        }
    };
    let pages = all_pages(&mut root, Some("x"), 2, u64::MAX, Some(1), append_more);
    let total = writer.borrow().1;
    assert!(total > before);
    let xs: Vec<u64> = pages.into_iter().flatten().map(|e| e.seq()).collect();
    let expected: Vec<u64> = (2..=total).filter(|i| kind_of(*i) == "x").collect();
    assert_eq!(xs, expected);
    // A bounded range, the default limit: one page.
    let pages = all_pages(&mut root, None, 4, 9, None, || {});
    assert_eq!(pages.len(), 1);
    let seqs: Vec<u64> = pages[0].iter().map(|e| e.seq()).collect();
    assert_eq!(seqs, (4..=9).collect::<Vec<u64>>());
    // Nothing in the range: one empty page, no next.
    let pages = all_pages(&mut root, Some("zzz"), 1, u64::MAX, None, || {});
    assert_eq!(pages, vec![Vec::new()]);
    server.shutdown();
}

/// Pages of maximum-size entries (longest author, kind, record id and body) hold one entry
/// each and still fit one record (the reply would otherwise be refused as too large).
pub fn ledger_rlist_large_entries_fit_one_record<R: Runtime>() {
    use vserv_core::ledger::{MAX_BODY, MAX_ENCODED_ENTRY, MAX_KIND, MAX_RECORD_ID};
    let fx = Fixture::new(49);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    let long_name = "u".repeat(32);
    root.call(&Command::Uadd {
        user: long_name.clone(),
        password: secret("long-name-password"),
    })
    .expect("uadd");
    let mut writer = logged_in::<R>(&server, &fx, &long_name, "long-name-password");
    let kind = "k".repeat(MAX_KIND);
    for i in 0..4u8 {
        let mut record_id = vec![i; MAX_RECORD_ID];
        record_id[0] = b'r';
        let body = if i == 2 {
            vec![i; 1]
        } else {
            vec![i; MAX_BODY]
        };
        appended(
            &mut writer,
            &Command::Rput {
                kind: kind.clone(),
                record_id,
                body,
            },
        );
    }
    for list_kind in [None, Some(kind.as_str())] {
        let pages = all_pages(&mut root, list_kind, 1, u64::MAX, Some(1000), || {});
        let sizes: Vec<Vec<usize>> = pages
            .iter()
            .map(|p| p.iter().map(|e| e.encoded_len()).collect())
            .collect();
        // Even the small entry (long author, kind and record id) leaves too little room
        // next to a maximum-size one: one entry per page.
        let small = MAX_ENCODED_ENTRY - MAX_BODY + 1;
        assert_eq!(
            sizes,
            vec![
                vec![MAX_ENCODED_ENTRY],
                vec![MAX_ENCODED_ENTRY],
                vec![small],
                vec![MAX_ENCODED_ENTRY],
            ],
            "{list_kind:?}"
        );
        let seqs: Vec<u64> = pages.iter().flatten().map(|e| e.seq()).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
    }
    server.shutdown();
}

/// One of each read (rcheck aside: it is for admins) of the feed `origin` names.
fn reads(origin: Option<Fingerprint>) -> Vec<Command> {
    let range = SeqRange { from: 1, to: 3 };
    vec![
        Command::Rget {
            selector: RecordSelector::Seq(1),
            origin,
        },
        Command::Rget {
            selector: RecordSelector::Id(b"theirs-2".to_vec()),
            origin,
        },
        Command::Rhave {
            record_id: b"theirs-3".to_vec(),
            origin,
        },
        Command::Rhave {
            record_id: b"mine".to_vec(),
            origin,
        },
        Command::Rabs { pos: -1, origin },
        Command::Rsize { kind: None, origin },
        Command::Rsize {
            kind: Some("a".into()),
            origin,
        },
        Command::Rcount {
            kind: "a".into(),
            range,
            origin,
        },
        Command::Rlist {
            kind: None,
            range,
            limit: None,
            origin,
        },
        Command::Rhead { origin },
    ]
}

/// A node holding a replica of another server's feed (persisted into its store as a link
/// would) answers every read with that server's fingerprint as ORIGIN from the replica; the
/// node's own fingerprint reads what no origin reads (its own feed); a feed it does not hold
/// is NotFound; `rput` still appends to the own feed only.
pub fn ledger_reads_any_held_feed<R: Runtime>() {
    let fx = Fixture::new(49);
    let other = Arc::new(identity(149));
    // The other server's feed of three entries (kinds a, b, a), on its own store.
    let theirs = Ledger::new(Arc::new(MemoryStore::new()), other.clone());
    let records = ["a", "b", "a"]
        .iter()
        .enumerate()
        .map(|(i, kind)| NewRecord {
            author: "bob".into(),
            kind: (*kind).into(),
            record_id: format!("theirs-{}", i + 1).into_bytes(),
            body: format!("n={i}\n").into_bytes(),
            timestamp: 1_000 + i as u64,
        });
    for result in theirs.append_batch(records.collect()) {
        result.expect("append to the other feed");
    }
    let feed = theirs.feed();
    let entries: Vec<Entry> = (1..=3)
        .map(|seq| feed.by_seq(seq).expect("read").expect("stored"))
        .collect();
    let signed = feed.head().expect("read").expect("a head");
    // This node's store holds it as a replica.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    Replicas::new(store.clone(), fx.identity.public_key())
        .persist(&other.public_key(), &entries, &signed)
        .expect("persist the replica");
    let service = fx
        .node(settings())
        .store(store)
        .build()
        .expect("node")
        .service();
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let (_, own_hash) = appended(&mut alice, &rput("a", "mine", b"own"));

    let origin = Some(other.public_key().fingerprint());
    let answers: Vec<Reply> = reads(origin)
        .iter()
        .map(|cmd| alice.call(cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}")))
        .collect();
    let record = |i: usize| Reply::Record(entries[i].clone());
    assert_eq!(
        answers,
        vec![
            record(0),
            record(1),
            Reply::Have(true),
            Reply::Have(false),
            record(2),
            Reply::Count(3),
            Reply::Count(2),
            Reply::Count(2),
            Reply::Page {
                entries: entries.clone(),
                next: None
            },
            Reply::Head(signed),
        ]
    );
    let by_hash = Command::Rget {
        selector: RecordSelector::Hash(entries[1].hash()),
        origin,
    };
    assert_eq!(alice.call(&by_hash).expect("rget hash"), record(1));
    // The replica's entries verify against the origin's key alone.
    if let Some(Reply::Head(head)) = answers.last() {
        head.verify().expect("the origin's signature");
        assert_eq!(head.head.origin, other.public_key());
    }
    assert_eq!(
        root.call(&Command::Rcheck {
            range: None,
            origin
        })
        .expect("rcheck"),
        Reply::ChainOk { seq: 3 }
    );
    assert_eq!(
        root.call(&Command::Rcheck {
            range: Some(SeqRange { from: 2, to: 3 }),
            origin
        })
        .expect("rcheck range"),
        Reply::ChainOk { seq: 3 }
    );

    // The own fingerprint is the own feed: the same answers as no origin.
    let own = Some(fx.identity.public_key().fingerprint());
    for (named, unnamed) in reads(own).iter().zip(reads(None)) {
        let answer = alice.call(named).map_err(|e| code_of(Err(e)));
        assert_eq!(
            answer,
            alice.call(&unnamed).map_err(|e| code_of(Err(e))),
            "{named:?}"
        );
    }
    assert_eq!(
        alice
            .call(&Command::Rget {
                selector: RecordSelector::Seq(1),
                origin: own
            })
            .map(|r| matches!(r, Reply::Record(e) if e.hash() == own_hash))
            .ok(),
        Some(true)
    );

    // A feed not held here: every read is NotFound, and so is rcheck.
    let unknown = Some(identity(249).public_key().fingerprint());
    for cmd in reads(unknown) {
        assert_eq!(
            code_of(alice.call(&cmd)),
            Some(ErrorCode::NotFound),
            "{cmd:?}"
        );
    }
    assert_eq!(
        code_of(root.call(&Command::Rcheck {
            range: None,
            origin: unknown
        })),
        Some(ErrorCode::NotFound)
    );
    // rput appended to the own feed only.
    assert_eq!(
        alice.call(&Command::Rsize { kind: None, origin }).ok(),
        Some(Reply::Count(3))
    );
    server.shutdown();
}
