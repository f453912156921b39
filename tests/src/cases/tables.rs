//! Query tables over every runtime (spec/tables.md): an anonymous session sees and queries
//! only the tables open to anyone, a user the others; a row by key, a page by prefix; a
//! table file replaced while the server runs is answered from the new version at once, and
//! a broken replacement keeps the last good rows serving with its error shown. The files are
//! in memory ([`MemoryFiles`]), so the simulator runs the same case.

use std::sync::Arc;

use vserv_core::ErrorCode;
use vserv_core::commands::{Command, Lookup, Reply, TableQuery};
use vserv_service::NodeSettings;
use vserv_service::tables::{KeyColumn, MemoryFiles, TableAccess, TableConfig, TablesSettings};

use crate::{Fixture, Runtime, TestClient, code_of, ledger_users};

fn query(table: &str, key: &str) -> Command {
    Command::Query(TableQuery {
        table: table.into(),
        lookup: Lookup::Key(key.into()),
    })
}

/// The `place` of `item` in table `things`, or the error code.
fn place<C: TestClient>(client: &mut C, table: &str, item: &str) -> Result<String, ErrorCode> {
    match client.call(&query(table, item)) {
        Ok(Reply::Row(row)) => Ok(row.get("place").unwrap_or_default().to_owned()),
        other => Err(code_of(other).unwrap_or(ErrorCode::Other(0))),
    }
}

fn names<C: TestClient>(client: &mut C) -> Vec<(String, u64, Option<String>)> {
    match client.call(&Command::Tables) {
        Ok(Reply::Tables(infos)) => infos
            .into_iter()
            .map(|i| (i.name, i.rows, i.error))
            .collect(),
        other => panic!("tables: {other:?}"),
    }
}

/// Query, prefix page, access per table, and a file replaced under the running server.
pub fn tables_query_and_reload<R: Runtime>() {
    let fx = Fixture::new(71);
    let files = Arc::new(MemoryFiles::new());
    files.put(
        "/things.csv",
        "item,place\nkettle,kitchen\nkeys,hook\naxe,shed\n",
    );
    files.put("/open.csv", "word,meaning\nhi,hello\n");
    let settings = NodeSettings {
        tables: TablesSettings {
            tables: vec![
                TableConfig {
                    key: KeyColumn::Name("item".into()),
                    ..TableConfig::new("things", "/things.csv")
                },
                TableConfig {
                    access: TableAccess::Anyone,
                    ..TableConfig::new("open", "/open.csv")
                },
            ],
            ..TablesSettings::default()
        },
        ..crate::fixture::settings()
    };
    let service = fx
        .node(settings)
        .table_source(files.clone())
        .build()
        .expect("node")
        .service();
    let server = R::start(
        fx.identity.clone(),
        service,
        64,
        vserv_core::Config::default(),
    );

    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(names(&mut anonymous), [("open".to_owned(), 1, None)]);
    assert!(matches!(
        anonymous.call(&query("open", "hi")),
        Ok(Reply::Row(r)) if r.get("meaning") == Some("hello")
    ));
    assert_eq!(
        place(&mut anonymous, "things", "keys"),
        Err(ErrorCode::Forbidden)
    );

    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    let listed: Vec<String> = names(&mut alice).into_iter().map(|n| n.0).collect();
    assert_eq!(listed, ["open", "things"]);
    assert_eq!(place(&mut alice, "things", "keys"), Ok("hook".into()));
    assert_eq!(
        place(&mut alice, "things", "spoon"),
        Err(ErrorCode::NotFound)
    );
    assert_eq!(
        place(&mut alice, "nothing", "keys"),
        Err(ErrorCode::NotFound)
    );
    let page = alice.call(&Command::Query(TableQuery {
        table: "things".into(),
        lookup: Lookup::Prefix {
            prefix: "k".into(),
            limit: Some(1),
            from: None,
        },
    }));
    let Ok(Reply::Rows { rows, next }) = page else {
        panic!("prefix: {page:?}")
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get("item"), Some("kettle"));
    assert_eq!(next.as_deref(), Some("keys"));

    // Replaced while serving: the next query answers from the new file.
    files.put("/things.csv", "item,place\nkeys,pocket\n");
    assert_eq!(place(&mut alice, "things", "keys"), Ok("pocket".into()));
    assert_eq!(place(&mut alice, "things", "axe"), Err(ErrorCode::NotFound));

    // A broken replacement: the last good rows serve, `tables` shows why.
    files.put("/things.csv", "item,place\nkeys\n");
    assert_eq!(place(&mut alice, "things", "keys"), Ok("pocket".into()));
    let things = names(&mut alice).into_iter().find(|n| n.0 == "things");
    let Some((_, rows, Some(error))) = things else {
        panic!("no error shown: {things:?}")
    };
    assert_eq!(rows, 1);
    assert!(error.contains("CSV"), "{error}");
    // The server goes on serving everything else.
    assert!(matches!(
        anonymous.call(&query("open", "hi")),
        Ok(Reply::Row(r)) if r.get("meaning") == Some("hello")
    ));
    assert!(matches!(
        anonymous.call(&Command::Ping {
            payload: b"x".to_vec()
        }),
        Ok(Reply::Pong(_))
    ));
    drop(server);
}
