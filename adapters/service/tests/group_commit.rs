//! Group commit of ledger appends: concurrent writers and one connection's pipelined `rput`s
//! share store commits, a record refused inside a group fails alone, a failed commit fails
//! its whole group and leaves nothing, and every result is correct whatever the grouping.

mod common;

use common::hooked_store::{HookedStore, any_get};

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use vserv_core::commands::{Command, Credential, Reply, SecretBytes, UserRole};
use vserv_core::ledger::LedgerError;
use vserv_core::{Config, Connection, Event, ServerIdentity};
use vserv_service::ledger::{Appended, CheckReport, FeedError, Ledger, NewRecord};
use vserv_service::{MAX_RPUT_GROUP, Node, NodeSettings, Service, Session};
use vserv_store::kv::{Store, StoreError};
use vserv_store::memory::MemoryStore;

const T0_MS: u64 = 1_700_000_000_123;

fn identity() -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(9),
    ))
}

fn record(id: &str, kind: &str) -> NewRecord {
    NewRecord {
        author: "alice".into(),
        kind: kind.into(),
        record_id: id.as_bytes().to_vec(),
        body: b"v=1\n".to_vec(),
        timestamp: T0_MS,
    }
}

/// A store whose commits take a while, so concurrent appenders pile up behind one.
fn slow_store(inner: MemoryStore) -> Arc<dyn Store> {
    Arc::new(HookedStore {
        inner,
        before_commit: || {
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        },
        on_get: any_get,
    })
}

#[test]
fn concurrent_appenders_share_commits_and_get_distinct_consecutive_seqs() {
    const THREADS: usize = 8;
    const EACH: usize = 50;
    let store = MemoryStore::new();
    let ledger = Arc::new(Ledger::new(slow_store(store.clone()), identity()));
    let before = store.commit_count();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let id = format!("t{t}-{i}");
                        let appended = ledger.append("alice", "k", id.as_bytes(), b"", T0_MS);
                        (id, appended.unwrap())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.join().unwrap());
    }
    let total = (THREADS * EACH) as u64;
    let mut seqs: Vec<u64> = all.iter().map(|(_, a)| a.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    for (id, appended) in &all {
        let entry = ledger.by_id(id.as_bytes()).unwrap().unwrap();
        assert_eq!((entry.seq(), entry.hash()), (appended.seq, appended.hash));
    }
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: total });
    let commits = store.commit_count() - before;
    assert!(
        commits * 2 < total,
        "{commits} commits for {total} concurrent appends: writers did not share commits"
    );
}

#[test]
fn concurrent_appenders_with_failing_commits_get_results_that_match_the_store() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    const THREADS: usize = 6;
    const EACH: usize = 40;
    let store = MemoryStore::new();
    let commits = AtomicU64::new(0);
    // Every commit takes a moment, so the next one is prepared while it is written, and
    // every fifth fails: some commits are prepared on top of one that fails.
    let hooked = HookedStore {
        inner: store.clone(),
        before_commit: move || {
            std::thread::sleep(Duration::from_millis(1));
            if commits.fetch_add(1, Ordering::Relaxed) % 5 == 4 {
                return Err(StoreError::Crashed);
            }
            Ok(())
        },
        on_get: any_get,
    };
    let ledger = Arc::new(Ledger::new(Arc::new(hooked), identity()));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for i in 0..EACH {
                    // Its own record, and one every thread appends.
                    let ids = [format!("t{t}-{i}"), format!("shared-{i}")];
                    let records = ids.iter().map(|id| record(id, "k")).collect();
                    out.extend(ids.into_iter().zip(ledger.append_batch(records)));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.join().unwrap());
    }
    let mut stored: HashMap<String, Appended> = HashMap::new();
    for (id, result) in &all {
        if let Ok(appended) = result {
            assert!(
                stored.insert(id.clone(), *appended).is_none(),
                "{id} stored twice"
            );
        }
    }
    for (id, result) in &all {
        let entry = ledger.by_id(id.as_bytes()).unwrap();
        match result {
            Ok(appended) => {
                let entry = entry.unwrap();
                assert_eq!((entry.seq(), entry.hash()), (appended.seq, appended.hash));
            }
            Err(FeedError::Duplicate { seq }) => assert_eq!(stored[id].seq, *seq, "{id}"),
            Err(FeedError::Store(StoreError::Crashed)) => {
                // Lost, unless another thread's append of the same id was stored.
                assert_eq!(
                    entry.map(|e| e.seq()),
                    stored.get(id).map(|a| a.seq),
                    "{id}"
                );
            }
            Err(e) => panic!("{id}: {e}"),
        }
    }
    let mut seqs: Vec<u64> = stored.values().map(|a| a.seq).collect();
    seqs.sort_unstable();
    let total = seqs.len() as u64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    assert!(total > 0 && total < (THREADS * EACH * 2) as u64, "{total}");
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: total });
    assert_eq!(ledger.size_of_kind("k").unwrap(), total);
}

#[test]
fn a_refused_record_fails_alone_inside_its_group() {
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    let before = store.commit_count();
    let results = ledger.append_batch(vec![
        record("a", "k"),
        record("a", "k"),
        record("b", "Bad Kind"),
        record("c", "other"),
    ]);
    assert_eq!(store.commit_count() - before, 1);
    assert!(matches!(results[0], Ok(Appended { seq: 1, .. })));
    assert!(matches!(results[1], Err(FeedError::Duplicate { seq: 1 })));
    assert!(matches!(
        results[2],
        Err(FeedError::Invalid(LedgerError::InvalidKind))
    ));
    assert!(matches!(results[3], Ok(Appended { seq: 2, .. })));
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 2 });
    let c = ledger.by_seq(2).unwrap().unwrap();
    assert_eq!(
        (c.record_id(), c.kind(), c.timestamp()),
        (&b"c"[..], "other", T0_MS)
    );
    // A later group sees the ids of earlier ones.
    let again = ledger.append_batch(vec![record("c", "k")]);
    assert!(matches!(again[0], Err(FeedError::Duplicate { seq: 2 })));
}

#[test]
fn a_group_of_only_refused_records_writes_nothing() {
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    let before = store.commit_count();
    let results = ledger.append_batch(vec![record("x", "BAD"), record("", "k")]);
    assert!(results.iter().all(|r| r.is_err()));
    assert_eq!(store.commit_count(), before);
    assert_eq!(ledger.size().unwrap(), 0);
}

#[test]
fn a_failed_commit_fails_its_whole_group_and_the_next_continues_from_the_stored_head() {
    let store = MemoryStore::new();
    let ledger = Ledger::new(Arc::new(store.clone()), identity());
    assert!(ledger.append_batch(vec![record("first", "k")])[0].is_ok());
    store.crash_after_commits(0);
    let results = ledger.append_batch(vec![record("a", "k"), record("b", "k")]);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(FeedError::Store(StoreError::Crashed)))),
        "{results:?}"
    );
    store.restart();
    // The same Ledger value: its cached head must not claim the lost group.
    let next = ledger.append_batch(vec![record("a", "k")]);
    assert!(matches!(next[0], Ok(Appended { seq: 2, .. })), "{next:?}");
    assert!(ledger.by_id(b"b").unwrap().is_none());
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 2 });
}

// ----- a commit prepared while the one before is written -----

/// The test's side of [`gated_store`]: where commits start, and the verdicts they wait for.
struct Gate {
    started: mpsc::Receiver<()>,
    verdict: mpsc::Sender<Result<(), StoreError>>,
}

/// A store whose commits each say that they start and then wait for the test to let them
/// through (or fail them).
fn gated_store(inner: MemoryStore) -> (Arc<dyn Store>, Gate) {
    let (started_tx, started) = mpsc::channel();
    let (verdict, verdicts) = mpsc::channel();
    let (started_tx, verdicts) = (Mutex::new(started_tx), Mutex::new(verdicts));
    let store = HookedStore {
        inner,
        before_commit: move || {
            started_tx.lock().unwrap().send(()).unwrap();
            verdicts.lock().unwrap().recv().unwrap()
        },
        on_get: any_get,
    };
    (Arc::new(store), Gate { started, verdict })
}

/// Submits `records` to `ledger`; their results arrive on the returned channel.
fn submit(
    ledger: &Ledger,
    records: Vec<NewRecord>,
) -> (
    Option<vserv_service::work::Work>,
    mpsc::Receiver<Vec<Result<Appended, FeedError>>>,
) {
    let (tx, rx) = mpsc::channel();
    let run = ledger.submit(
        records,
        Box::new(move |results| {
            let _ = tx.send(results);
        }),
    );
    (run, rx)
}

const NOT_YET: Duration = Duration::from_millis(50);

#[test]
fn the_next_commit_is_prepared_while_one_is_written_and_stored_only_after_it() {
    let memory = MemoryStore::new();
    let (store, Gate { started, verdict }) = gated_store(memory.clone());
    let ledger = Ledger::new(store, identity());
    let (run, first) = submit(
        &ledger,
        vec![record("a1", "k"), record("a2", "k"), record("a3", "j")],
    );
    let writer = std::thread::spawn(move || run.expect("the first submission gets a run").run());
    started.recv().unwrap();
    // Commit 1 is being written: the next submission gets a run of its own, which prepares
    // commit 2 and leaves it to the writer without waiting. `a2` repeats an id of commit 1,
    // which is not durable yet.
    let (run, second) = submit(
        &ledger,
        vec![record("b1", "k"), record("a2", "k"), record("b2", "j")],
    );
    run.expect("a preparer joins the writer").run();
    assert!(second.recv_timeout(NOT_YET).is_err());
    assert!(
        started.recv_timeout(NOT_YET).is_err(),
        "commit 2 started before commit 1 ended"
    );
    assert_eq!(memory.commit_count(), 0);
    assert_eq!(
        ledger.size().unwrap(),
        0,
        "nothing is visible before it is durable"
    );
    verdict.send(Ok(())).unwrap();
    let first = first.recv().unwrap();
    assert_eq!(
        first
            .iter()
            .map(|r| r.as_ref().unwrap().seq)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    started.recv().unwrap();
    assert_eq!(ledger.size().unwrap(), 3);
    verdict.send(Ok(())).unwrap();
    let second = second.recv().unwrap();
    writer.join().unwrap();
    assert!(
        matches!(second[0], Ok(Appended { seq: 4, .. })),
        "{second:?}"
    );
    assert!(
        matches!(second[1], Err(FeedError::Duplicate { seq: 2 })),
        "{second:?}"
    );
    assert!(
        matches!(second[2], Ok(Appended { seq: 5, .. })),
        "{second:?}"
    );
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 5 });
    // Kind counts carry over from the commit that was not yet stored when this one was
    // prepared.
    assert_eq!(ledger.size_of_kind("k").unwrap(), 3);
    assert_eq!(ledger.size_of_kind("j").unwrap(), 2);
    assert_eq!(ledger.by_id(b"b2").unwrap().unwrap().seq(), 5);
}

#[test]
fn a_failed_commit_fails_the_one_prepared_on_top_of_it_unwritten() {
    let memory = MemoryStore::new();
    let (store, Gate { started, verdict }) = gated_store(memory.clone());
    let ledger = Arc::new(Ledger::new(store, identity()));
    let (run, first) = submit(&ledger, vec![record("a1", "k")]);
    let writer = std::thread::spawn(move || run.expect("a run").run());
    started.recv().unwrap();
    let (run, second) = submit(&ledger, vec![record("b1", "k"), record("b2", "k")]);
    run.expect("a preparer").run();
    verdict.send(Err(StoreError::Crashed)).unwrap();
    assert!(matches!(
        first.recv().unwrap()[..],
        [Err(FeedError::Store(StoreError::Crashed))]
    ));
    let second = second.recv().unwrap();
    writer.join().unwrap();
    assert!(
        second
            .iter()
            .all(|r| matches!(r, Err(FeedError::Store(StoreError::Crashed)))),
        "{second:?}"
    );
    assert!(
        started.recv_timeout(NOT_YET).is_err(),
        "a commit built on a failed one reached the store"
    );
    // The next commit starts again from the stored (empty) feed.
    let appender = {
        let ledger = Arc::clone(&ledger);
        std::thread::spawn(move || ledger.append_batch(vec![record("b1", "k")]))
    };
    started.recv().unwrap();
    verdict.send(Ok(())).unwrap();
    let next = appender.join().unwrap();
    assert!(matches!(next[0], Ok(Appended { seq: 1, .. })), "{next:?}");
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: 1 });
    assert_eq!(ledger.size_of_kind("k").unwrap(), 1);
}

// ----- pipelined rput through the service -----

fn rng(seed: u64) -> Box<rand::rngs::StdRng> {
    Box::new(rand::rngs::StdRng::seed_from_u64(seed))
}

fn service(store: &MemoryStore) -> (Service, Arc<ServerIdentity>) {
    let identity = identity();
    let node = Node::builder(identity.clone(), NodeSettings::insecure_fast("pipeline"))
        .store(Arc::new(store.clone()))
        .rng(rng(5))
        .build()
        .unwrap();
    node.accounts()
        .create("alice", UserRole::User, b"alice-password", T0_MS / 1000)
        .unwrap();
    (node.service(), identity)
}

/// A logged-in client/server pair over `service`, with nothing in flight.
struct Pair {
    client: Connection,
    server: Connection,
    session: Session,
    now: Instant,
}

impl Pair {
    fn new(service: &Service, identity: Arc<ServerIdentity>) -> Pair {
        let now = Instant::now();
        let mut pair = Pair {
            client: Connection::client(Config::default(), rng(2), now),
            server: Connection::server(Config::default(), identity, rng(3), now),
            session: Session::new(None),
            now,
        };
        while !pair.client.is_connected() {
            pair.exchange(service, usize::MAX);
        }
        let login = Command::Login {
            user: "alice".into(),
            credential: Credential::Password(SecretBytes::new(b"alice-password".to_vec())),
        };
        pair.client
            .send_request(login.name(), login.args())
            .unwrap();
        let replies = pair.run(service, 1, usize::MAX);
        assert!(matches!(replies[..], [Reply::User { .. }]), "{replies:?}");
        pair
    }

    /// Moves the client's bytes to the server in chunks of at most `chunk` bytes, driving the
    /// service after each, then the server's bytes back. Returns the client's events.
    fn exchange(&mut self, service: &Service, chunk: usize) -> Vec<Event> {
        let mut c2s = Vec::new();
        self.client.poll_transmit(&mut c2s);
        for part in c2s.chunks(chunk.max(1)) {
            self.server.handle_input(self.now, part).unwrap();
            service
                .drive(
                    &mut self.session,
                    &mut self.server,
                    std::time::Instant::now(),
                    T0_MS,
                )
                .unwrap();
        }
        let mut s2c = Vec::new();
        self.server.poll_transmit(&mut s2c);
        self.client.handle_input(self.now, &s2c).unwrap();
        let mut events = Vec::new();
        while let Some(event) = self.client.poll_event() {
            if let Event::ServerKey(_) = event {
                self.client.accept_server_key(self.now).unwrap();
            } else {
                events.push(event);
            }
        }
        events
    }

    /// Exchanges until `n` responses arrived; returns them decoded as `rput`/`login` replies,
    /// in arrival order.
    fn run(&mut self, service: &Service, n: usize, chunk: usize) -> Vec<Reply> {
        let mut replies = Vec::new();
        for _ in 0..10 {
            for event in self.exchange(service, chunk) {
                if let Event::Response(response) = event {
                    let fields = response.result.expect("request failed");
                    let reply = Reply::from_fields(&rput(0), &fields)
                        .or_else(|_| Reply::from_fields(&Command::Whoami, &fields))
                        .unwrap();
                    replies.push(reply);
                }
            }
            if replies.len() == n {
                return replies;
            }
        }
        panic!("only {} of {n} responses arrived", replies.len());
    }
}

fn rput(i: u64) -> Command {
    Command::Rput {
        kind: "k".into(),
        record_id: format!("r{i}").into_bytes(),
        body: format!("i={i}\n").into_bytes(),
    }
}

fn send_rputs(client: &mut Connection, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        let cmd = rput(i);
        client.send_request(cmd.name(), cmd.args()).unwrap();
    }
}

#[test]
fn pipelined_rputs_arriving_together_share_commits_and_are_answered_in_order() {
    // Up to MAX_RPUT_GROUP rputs arriving together are one group (one commit); more are
    // split into groups of that size, so a client's next group is decoded while the one
    // before is committed.
    let group = MAX_RPUT_GROUP as u64;
    for (n, most_commits) in [(group - 28, 1), (group, 1), (2 * group - 10, 2)] {
        let store = MemoryStore::new();
        let (service, identity) = service(&store);
        let mut pair = Pair::new(&service, identity);
        send_rputs(&mut pair.client, 1..=n);
        let before = store.commit_count();
        let replies = pair.run(&service, n as usize, usize::MAX);
        let commits = store.commit_count() - before;
        assert!(
            (1..=most_commits).contains(&commits),
            "{n} rputs took {commits} commits"
        );
        for (i, reply) in (1u64..).zip(&replies) {
            assert!(
                matches!(reply, Reply::Appended { seq, .. } if *seq == i),
                "{reply:?}"
            );
        }
        let ledger = service.ledger().unwrap();
        assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: n });
        let entry = ledger.by_seq(n).unwrap().unwrap();
        assert_eq!((entry.author(), entry.timestamp()), ("alice", T0_MS));
    }
}

#[test]
fn pipelined_rputs_split_at_any_chunk_size_all_land_once_in_order() {
    for chunk in [1, 2, 7, 33, 100, 999] {
        let store = MemoryStore::new();
        let (service, identity) = service(&store);
        let mut pair = Pair::new(&service, identity);
        send_rputs(&mut pair.client, 1..=40);
        // A duplicate and a read inside the pipeline see the appends sent before them.
        let dup = rput(3);
        pair.client.send_request(dup.name(), dup.args()).unwrap();
        send_rputs(&mut pair.client, 41..=60);
        let mut events = Vec::new();
        for _ in 0..10 {
            events.extend(pair.exchange(&service, chunk));
        }
        let responses: Vec<_> = events
            .into_iter()
            .filter_map(|e| match e {
                Event::Response(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(responses.len(), 61, "chunk {chunk}");
        let mut seqs = Vec::new();
        for response in &responses {
            match &response.result {
                Ok(fields) => match Reply::from_fields(&rput(0), fields).unwrap() {
                    Reply::Appended { seq, .. } => seqs.push(seq),
                    other => panic!("{other:?}"),
                },
                Err(e) => assert_eq!(e.code, vserv_core::ErrorCode::Conflict, "chunk {chunk}"),
            }
        }
        assert_eq!(seqs, (1..=60).collect::<Vec<_>>(), "chunk {chunk}");
        let ids: Vec<u32> = responses.iter().map(|r| r.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "responses in request order (chunk {chunk})");
        assert_eq!(
            service.ledger().unwrap().check().unwrap(),
            CheckReport::Ok { seq: 60 }
        );
    }
}

#[test]
fn drive_leaves_rputs_committing_and_later_requests_wait_for_them() {
    let store = MemoryStore::new();
    let (service, _) = service(&store);
    // Commits run off the driving thread, as on every runtime: `drive` returns at once.
    let service = service.with_runner(Arc::new(common::driven::ThreadRunner));
    let mut pair = common::driven::Driven::new(&service, Some(("alice", b"alice-password")));
    send_rputs(&mut pair.client, 1..=30);
    // A read sent after the rputs sees all of them, even while they may still commit.
    let have = Command::Rhave {
        record_id: b"r30".to_vec(),
        origin: None,
    };
    let have_id = pair.send(&have);
    let (have_response, mut responses) = pair.wait_for(&service, have_id);
    responses.push(have_response);
    assert_eq!(responses.len(), 31);
    for (i, response) in (1u64..).zip(&responses[..30]) {
        let reply = Reply::from_fields(&rput(i), response.result.as_ref().unwrap()).unwrap();
        assert!(
            matches!(reply, Reply::Appended { seq, .. } if seq == i),
            "{reply:?}"
        );
    }
    assert_eq!(responses[30].id, have_id);
    let fields = responses[30].result.as_ref().unwrap();
    assert_eq!(
        Reply::from_fields(&have, fields).unwrap(),
        Reply::Have(true)
    );
}

#[test]
fn concurrent_submissions_of_the_same_ids_store_each_once() {
    // Each submitter checks the store before the committer runs; the committer must catch
    // the ids other commits stored in between.
    const THREADS: u64 = 4;
    const IDS: u64 = 60;
    let store = MemoryStore::new();
    let ledger = Arc::new(Ledger::new(slow_store(store.clone()), identity()));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                (0..IDS)
                    .map(|i| {
                        let id = format!("same-{}", (i * (t + 1) + t) % IDS);
                        let result = ledger.append("alice", "k", id.as_bytes(), b"", T0_MS);
                        (id, result)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut stored = std::collections::BTreeMap::new();
    let mut duplicates = Vec::new();
    for worker in workers {
        for (id, result) in worker.join().unwrap() {
            match result {
                Ok(appended) => assert!(stored.insert(id, appended.seq).is_none()),
                Err(FeedError::Duplicate { seq }) => duplicates.push((id, seq)),
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(stored.len() as u64, IDS, "every id stored exactly once");
    assert_eq!(duplicates.len() as u64, IDS * (THREADS - 1));
    for (id, seq) in duplicates {
        assert_eq!(
            stored.get(&id),
            Some(&seq),
            "{id} reported at the wrong seq"
        );
    }
    assert_eq!(ledger.check().unwrap(), CheckReport::Ok { seq: IDS });
}
