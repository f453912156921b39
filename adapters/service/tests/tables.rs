//! Query tables through the service (spec/tables.md): loading, reloading a replaced file,
//! a bad file keeping the last good rows, the limits, access per table, prefix pages
//! bounded to one reply, Rust handlers registered on the node builder, external handler
//! programs (good, hanging, garbage, failing), and a large table answered without being
//! read again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use vserv_core::commands::{
    Command, Lookup, QUERY_ROW_BUDGET, Reply, TableQuery, TableRow, UserRole,
};
use vserv_core::{ErrorCode, ServerIdentity};
use vserv_service::accounts::{User, UserName};
use vserv_service::tables::{
    Answer, FileStamp, HandlerError, KeyColumn, MemoryFiles, Query, SourceError, TableAccess,
    TableConfig, TableConfigError, TableLimits, TableSource, Tables, TablesSettings,
};
use vserv_service::{Node, NodeError, NodeSettings, Service};

fn identity() -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(
        &mut rand::rngs::StdRng::seed_from_u64(7),
    ))
}

fn settings(tables: Vec<TableConfig>) -> NodeSettings {
    let mut s = NodeSettings::insecure_fast("tables");
    s.tables = TablesSettings {
        tables,
        ..TablesSettings::default()
    };
    s
}

const THINGS: &str = "item,place\nkettle,kitchen\nkeys,hook by the door\naxe,shed\n";

/// A node serving `tables` from `files`, with users alice and bob.
fn node(files: Arc<dyn TableSource>, tables: Vec<TableConfig>) -> (Node, User, User) {
    let node = Node::builder(identity(), settings(tables))
        .rng(Box::new(rand::rngs::StdRng::seed_from_u64(1)))
        .table_source(files)
        .build()
        .expect("node");
    let user = |name: &str| {
        node.accounts()
            .create(name, UserRole::User, b"password-1", 0)
            .expect("user");
        node.accounts()
            .get(&UserName::parse(name).expect("name"))
            .expect("read")
            .expect("exists")
    };
    let (alice, bob) = (user("alice"), user("bob"));
    (node, alice, bob)
}

fn key(table: &str, key: &str) -> Command {
    Command::Query(TableQuery {
        table: table.into(),
        lookup: Lookup::Key(key.into()),
    })
}

fn prefix(table: &str, prefix: &str, limit: Option<u32>, from: Option<&str>) -> Command {
    Command::Query(TableQuery {
        table: table.into(),
        lookup: Lookup::Prefix {
            prefix: prefix.into(),
            limit,
            from: from.map(str::to_owned),
        },
    })
}

fn place(service: &Service, user: Option<&User>, item: &str) -> Result<String, ErrorCode> {
    match service.tables_command(user, &key("things", item), 100) {
        Ok(Reply::Row(row)) => Ok(row.get("place").unwrap_or_default().to_owned()),
        Ok(other) => panic!("unexpected reply {other:?}"),
        Err(e) => Err(e.code),
    }
}

fn things() -> TableConfig {
    TableConfig {
        key: KeyColumn::Name("item".into()),
        ..TableConfig::new("things", "/data/things.csv")
    }
}

#[test]
fn rows_are_answered_and_a_replaced_file_is_read_again() {
    let files = Arc::new(MemoryFiles::new());
    files.put("/data/things.csv", THINGS);
    let (node, alice, _) = node(files.clone(), vec![things()]);
    let service = node.service();
    assert_eq!(
        place(&service, Some(&alice), "keys"),
        Ok("hook by the door".into())
    );
    assert_eq!(
        place(&service, Some(&alice), "spoon"),
        Err(ErrorCode::NotFound)
    );

    files.put("/data/things.csv", "item,place\nkeys,pocket\n");
    assert_eq!(place(&service, Some(&alice), "keys"), Ok("pocket".into()));
    assert_eq!(
        place(&service, Some(&alice), "kettle"),
        Err(ErrorCode::NotFound)
    );

    // A broken file: the last good rows serve, and `tables` shows why.
    files.put("/data/things.csv", "item,place\n\"keys,drawer\n");
    assert_eq!(place(&service, Some(&alice), "keys"), Ok("pocket".into()));
    let Ok(Reply::Tables(infos)) = service.tables_command(Some(&alice), &Command::Tables, 200)
    else {
        panic!("tables")
    };
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].rows, 1);
    assert_eq!(infos[0].loaded, Some(100));
    assert_eq!(infos[0].columns, ["item", "place"]);
    let error = infos[0].error.clone().unwrap_or_default();
    assert!(error.contains("CSV"), "{error}");

    // Fixed again: served, the error gone.
    files.put("/data/things.csv", "item,place\nkeys,drawer\n");
    assert_eq!(place(&service, Some(&alice), "keys"), Ok("drawer".into()));
    let Ok(Reply::Tables(infos)) = service.tables_command(Some(&alice), &Command::Tables, 300)
    else {
        panic!("tables")
    };
    assert_eq!(
        (infos[0].error.as_deref(), infos[0].loaded),
        (None, Some(100))
    );
}

#[test]
fn a_table_never_loaded_is_unavailable_not_empty() {
    let files = Arc::new(MemoryFiles::new());
    let (node, alice, _) = node(files.clone(), vec![things()]);
    let service = node.service();
    assert_eq!(
        place(&service, Some(&alice), "keys"),
        Err(ErrorCode::Internal)
    );
    files.put("/data/things.csv", THINGS);
    assert_eq!(place(&service, Some(&alice), "axe"), Ok("shed".into()));
}

#[test]
fn huge_rows_and_fields_are_refused_and_the_last_good_rows_serve() {
    let files = Arc::new(MemoryFiles::new());
    files.put("/data/things.csv", THINGS);
    let (node, alice, _) = node(files.clone(), vec![things()]);
    let service = node.service();
    assert_eq!(place(&service, Some(&alice), "axe"), Ok("shed".into()));
    let huge_field = format!("item,place\naxe,{}\n", "x".repeat(5000));
    files.put("/data/things.csv", huge_field);
    assert_eq!(place(&service, Some(&alice), "axe"), Ok("shed".into()));
    let wide_row = format!("item,a,b,c,d\naxe,{0},{0},{0},{0}\n", "x".repeat(3500));
    files.put("/data/things.csv", wide_row);
    assert_eq!(place(&service, Some(&alice), "axe"), Ok("shed".into()));
    let Ok(Reply::Tables(infos)) = service.tables_command(Some(&alice), &Command::Tables, 1) else {
        panic!("tables")
    };
    let error = infos[0].error.clone().unwrap_or_default();
    assert!(error.contains("row is longer"), "{error}");
}

#[test]
fn access_is_per_table() {
    let files = Arc::new(MemoryFiles::new());
    for f in ["/open.csv", "/users.csv", "/alice.csv"] {
        files.put(f, THINGS);
    }
    let table = |name: &str, file: &str, access| TableConfig {
        access,
        ..TableConfig::new(name, file)
    };
    let (node, alice, bob) = node(
        files,
        vec![
            table("open", "/open.csv", TableAccess::Anyone),
            table("users", "/users.csv", TableAccess::Users),
            table(
                "mine",
                "/alice.csv",
                TableAccess::Only(vec!["Alice".into()]),
            ),
        ],
    );
    let service = node.service();
    let names = |user: Option<&User>| match service.tables_command(user, &Command::Tables, 0) {
        Ok(Reply::Tables(infos)) => infos.into_iter().map(|i| i.name).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names(None), ["open"]);
    assert_eq!(names(Some(&bob)), ["open", "users"]);
    assert_eq!(names(Some(&alice)), ["mine", "open", "users"]);
    let code = |user: Option<&User>, table: &str| {
        service
            .tables_command(user, &key(table, "axe"), 0)
            .map(|_| ())
            .map_err(|e| e.code)
    };
    assert_eq!(code(None, "open"), Ok(()));
    assert_eq!(code(None, "users"), Err(ErrorCode::Forbidden));
    assert_eq!(code(Some(&bob), "users"), Ok(()));
    assert_eq!(code(Some(&bob), "mine"), Err(ErrorCode::NotFound));
    assert_eq!(code(Some(&alice), "mine"), Ok(()));
    assert_eq!(code(Some(&alice), "nothing"), Err(ErrorCode::NotFound));
}

#[test]
fn prefix_pages_follow_key_order_within_one_reply() {
    let files = Arc::new(MemoryFiles::new());
    let mut csv = String::from("key,value\n");
    for i in 0..300 {
        csv.push_str(&format!("k{i:03},{}\n", "v".repeat(200)));
    }
    csv.push_str("other,x\n");
    files.put("/big.csv", csv);
    let (node, alice, _) = node(files, vec![TableConfig::new("big", "/big.csv")]);
    let service = node.service();
    let mut from: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let reply = service.tables_command(
            Some(&alice),
            &prefix("big", "k", Some(1000), from.as_deref()),
            0,
        );
        let Ok(Reply::Rows { rows, next }) = reply else {
            panic!("{reply:?}")
        };
        let size: usize = rows.iter().map(|r| 4 + r.encoded_len()).sum();
        assert!(size <= QUERY_ROW_BUDGET && !rows.is_empty());
        seen.extend(
            rows.iter()
                .map(|r| r.get("key").unwrap_or_default().to_owned()),
        );
        match next {
            Some(n) => from = Some(n),
            None => break,
        }
    }
    let want: Vec<String> = (0..300).map(|i| format!("k{i:03}")).collect();
    assert_eq!(seen, want);
    let reply = service.tables_command(Some(&alice), &prefix("big", "k1", Some(3), None), 0);
    let Ok(Reply::Rows { rows, next }) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(rows.len(), 3);
    assert_eq!(next.as_deref(), Some("k103"));
}

/// A source counting its reads, over memory files.
struct Counting {
    files: MemoryFiles,
    reads: AtomicUsize,
}

impl TableSource for Counting {
    fn stamp(&self, path: &Path) -> Result<FileStamp, SourceError> {
        self.files.stamp(path)
    }
    fn read(&self, path: &Path, max: u64) -> Result<(Vec<u8>, FileStamp), SourceError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.files.read(path, max)
    }
}

#[test]
fn a_large_unchanged_table_is_not_read_again() {
    let counting = Arc::new(Counting {
        files: MemoryFiles::new(),
        reads: AtomicUsize::new(0),
    });
    let mut csv = String::from("id,name\n");
    for i in 0..100_000 {
        csv.push_str(&format!("{i},name {i}\n"));
    }
    counting.files.put("/big.csv", csv);
    let (node, alice, _) = node(counting.clone(), vec![TableConfig::new("big", "/big.csv")]);
    let service = node.service();
    let started = std::time::Instant::now();
    for i in (0..100_000).step_by(997) {
        let reply = service.tables_command(Some(&alice), &key("big", &i.to_string()), 0);
        let Ok(Reply::Row(row)) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(row.get("name"), Some(format!("name {i}").as_str()));
    }
    assert_eq!(counting.reads.load(Ordering::SeqCst), 1);
    counting.files.put("/big.csv", "id,name\n1,one\n");
    let reply = service.tables_command(Some(&alice), &key("big", "1"), 0);
    assert!(matches!(reply, Ok(Reply::Row(r)) if r.get("name") == Some("one")));
    assert_eq!(counting.reads.load(Ordering::SeqCst), 2);
    eprintln!("101 queries in {:?}", started.elapsed());
}

#[test]
fn a_registered_handler_answers_its_table() {
    let files = Arc::new(MemoryFiles::new());
    files.put("/data/things.csv", THINGS);
    let substring = |q: &Query<'_>, tables: &Tables| -> Result<Answer, HandlerError> {
        let Lookup::Key(word) = q.lookup else {
            return Err(HandlerError::BadQuery("only key queries".into()));
        };
        let snapshot = tables.snapshot(q.table, q.now)?;
        let word = word.to_lowercase();
        snapshot
            .iter()
            .find(|(k, _)| k.to_lowercase().contains(&word))
            .map(|(_, v)| Answer::Row(snapshot.row(v)))
            .ok_or_else(|| HandlerError::NotFound(format!("nothing like {word:?}")))
    };
    let node = Node::builder(identity(), settings(vec![things()]))
        .rng(Box::new(rand::rngs::StdRng::seed_from_u64(1)))
        .table_source(files)
        .handler("things", Box::new(substring))
        .build()
        .expect("node");
    let service = node.service();
    let row = service.tables_command(None, &key("things", "KET"), 0);
    // "users" access: anonymous callers are refused before the handler runs.
    assert_eq!(row.map_err(|e| e.code), Err(ErrorCode::Forbidden));
    node.accounts()
        .create("carol", UserRole::User, b"password-1", 0)
        .expect("user");
    let carol = node
        .accounts()
        .get(&UserName::parse("carol").expect("name"))
        .expect("read")
        .expect("exists");
    let row = service.tables_command(Some(&carol), &key("things", "KET"), 0);
    assert_eq!(
        row,
        Ok(Reply::Row(TableRow::new(vec![
            ("item".into(), "kettle".into()),
            ("place".into(), "kitchen".into())
        ])))
    );
    let bad = service.tables_command(Some(&carol), &prefix("things", "k", None, None), 0);
    assert_eq!(bad.map_err(|e| e.code), Err(ErrorCode::BadArguments));

    let unknown = Node::builder(identity(), settings(vec![things()]))
        .handler("nothing", Box::new(substring))
        .build();
    assert!(matches!(
        unknown,
        Err(NodeError::Tables(TableConfigError::NoSuchTable(_)))
    ));
}

#[test]
fn bad_configurations_are_refused_at_start() {
    let dup = Node::builder(identity(), settings(vec![things(), things()])).build();
    assert!(matches!(
        dup,
        Err(NodeError::Tables(TableConfigError::DuplicateName { .. }))
    ));
    let limits = TablesSettings {
        limits: TableLimits {
            max_rows: 0,
            ..TableLimits::default()
        },
        ..TablesSettings::default()
    };
    assert!(limits.validate().is_err());
}

/// External handlers: a script in a temporary programs directory.
#[cfg(unix)]
mod external {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn node_with(dir: &Path, handler: &str) -> (Node, User) {
        let files = Arc::new(MemoryFiles::new());
        files.put("/data/things.csv", THINGS);
        let mut s = settings(vec![TableConfig {
            handler: Some(handler.into()),
            ..things()
        }]);
        s.tables.programs_dir = Some(PathBuf::from(dir));
        s.tables.handler_timeout = Duration::from_millis(500);
        let node = Node::builder(identity(), s)
            .rng(Box::new(rand::rngs::StdRng::seed_from_u64(1)))
            .table_source(files)
            .build()
            .expect("node");
        node.accounts()
            .create("alice", UserRole::User, b"password-1", 0)
            .expect("user");
        let alice = node
            .accounts()
            .get(&UserName::parse("alice").expect("name"))
            .expect("read")
            .expect("exists");
        (node, alice)
    }

    #[test]
    fn handlers_answer_or_fail_with_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dir = dir.path().canonicalize().expect("canonical");
        // Echoes the query's input back as the value of one column.
        script(
            &dir,
            "echo",
            r#"read line; printf '{"rows":[{"input":%s}]}' "$(printf '%s' "$line" | sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$/"/')""#,
        );
        script(&dir, "empty", r#"cat >/dev/null; echo '{"rows":[]}'"#);
        script(&dir, "hang", "sleep 10");
        script(&dir, "garbage", "cat >/dev/null; echo 'this is not json'");
        script(
            &dir,
            "fail",
            "cat >/dev/null; echo 'no database' >&2; exit 2",
        );

        let (node, alice) = node_with(&dir, "echo");
        let reply = node
            .service()
            .tables_command(Some(&alice), &key("things", "keys"), 0);
        let Ok(Reply::Row(row)) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(
            row.get("input"),
            Some(
                r#"{"table":"things","key":"keys","prefix":null,"limit":null,"from":null,"user":"alice"}"#
            )
        );

        let (node, alice) = node_with(&dir, "empty");
        let reply = node
            .service()
            .tables_command(Some(&alice), &key("things", "keys"), 0);
        assert_eq!(reply.map_err(|e| e.code), Err(ErrorCode::NotFound));

        for (handler, says) in [
            ("hang", "did not finish"),
            ("garbage", "not valid"),
            ("fail", "no database"),
        ] {
            let (node, alice) = node_with(&dir, handler);
            let service = node.service();
            let started = std::time::Instant::now();
            let reply = service.tables_command(Some(&alice), &key("things", "keys"), 0);
            let err = reply.expect_err(handler);
            assert_eq!(err.code, ErrorCode::Internal, "{handler}");
            assert!(err.message.contains(says), "{handler}: {}", err.message);
            assert!(started.elapsed() < Duration::from_secs(5), "{handler}");
            // The server goes on serving: `tables` still answers.
            assert!(
                service
                    .tables_command(Some(&alice), &Command::Tables, 0)
                    .is_ok()
            );
        }
    }
}
