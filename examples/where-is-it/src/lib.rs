//! "Where did I put X?": a vserv node embedded in a program, serving one query table of
//! `item,place` rows with a [`QueryHandler`] of its own: a key query finds the item whose
//! name contains the words asked, ignoring case (an exact name first), and a prefix query
//! lists every item whose name contains them.
//!
//! [`serve`] starts the node in process (accounts, ledger and the table's file all in
//! memory) behind the blocking runtime on a loopback port; [`ask`] is a client's question;
//! `main.rs` runs both.

#![forbid(unsafe_code)]

use std::sync::Arc;

use rand::SeedableRng;
use vserv_blocking::{Client, Server, ServerHandle, ServerOptions};
use vserv_core::ServerIdentity;
use vserv_core::commands::{Command, Credential, Lookup, Reply, SecretBytes, TableQuery, UserRole};
use vserv_service::client::ClientOptions;
use vserv_service::tables::{
    Answer, HandlerError, KeyColumn, MemoryFiles, Query, QueryHandler, TableConfig, Tables,
    TablesSettings, page,
};
use vserv_service::{Node, NodeSettings};

/// The table's name.
pub const TABLE: &str = "things";

/// The one user of the example and their password.
pub const USER: (&str, &str) = ("me", "correct horse battery");

/// The handler: items found by a case-insensitive part of their name.
#[derive(Debug, Default)]
pub struct Substring;

impl QueryHandler for Substring {
    fn query(&self, query: &Query<'_>, tables: &Tables) -> Result<Answer, HandlerError> {
        let snapshot = tables.snapshot(query.table, query.now)?;
        let (words, limit) = match query.lookup {
            Lookup::Key(words) => (words, None),
            Lookup::Prefix { prefix, limit, .. } => (prefix, Some(*limit)),
        };
        let words = words.to_lowercase();
        let matches = snapshot
            .iter()
            .filter(|(item, _)| item.to_lowercase().contains(&words));
        match limit {
            Some(limit) => Ok(page(
                matches.map(|(item, values)| (item.to_owned(), snapshot.row(values))),
                limit,
            )),
            None => {
                let mut matches: Vec<_> = matches.collect();
                // An exact name (ignoring case) wins over a longer one containing it.
                matches.sort_by_key(|(item, _)| item.to_lowercase() != words);
                matches
                    .first()
                    .map(|(_, values)| Answer::Row(snapshot.row(values)))
                    .ok_or_else(|| HandlerError::NotFound(format!("nothing like {words:?}")))
            }
        }
    }
}

/// A running example server and what a client needs to reach it.
pub struct Running {
    /// The server (stops when dropped).
    pub server: ServerHandle,
    /// Where the client's known_servers file lives.
    pub dir: tempfile::TempDir,
    /// The table's file, in memory: put a new version to move things.
    pub files: Arc<MemoryFiles>,
}

/// Starts a server whose table holds `csv` (`item,place` with a header row), with the
/// user [`USER`].
pub fn serve(csv: &str) -> anyhow::Result<Running> {
    let files = Arc::new(MemoryFiles::new());
    files.put("/things.csv", csv);
    let mut settings = NodeSettings::insecure_fast("where-is-it");
    settings.tables = TablesSettings {
        tables: vec![TableConfig {
            key: KeyColumn::Name("item".into()),
            ..TableConfig::new(TABLE, "/things.csv")
        }],
        ..TablesSettings::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let identity = Arc::new(ServerIdentity::generate(&mut rng));
    let node = Node::builder(identity.clone(), settings)
        .rng(Box::new(rng))
        .table_source(files.clone())
        .handler(TABLE, Box::new(Substring))
        .build()?;
    node.accounts()
        .create(USER.0, UserRole::User, USER.1.as_bytes(), 0)?;
    let server = Server::bind(
        "127.0.0.1:0",
        identity,
        node.service(),
        ServerOptions::default(),
    )?
    .spawn()?;
    Ok(Running {
        server,
        dir: tempfile::tempdir()?,
        files,
    })
}

/// Connects to `running` as [`USER`] and asks where `what` is: `"ITEM: PLACE"`, or why
/// not.
pub fn ask(running: &Running, what: &str) -> anyhow::Result<String> {
    let options = ClientOptions::new(running.dir.path().join("known_servers"));
    let mut client = Client::connect(&running.server.local_addr().to_string(), &options)?;
    client.call(&Command::Login {
        user: USER.0.into(),
        credential: Credential::Password(SecretBytes::new(USER.1.as_bytes().to_vec())),
    })?;
    let reply = client.call(&Command::Query(TableQuery {
        table: TABLE.into(),
        lookup: Lookup::Key(what.into()),
    }));
    client.quit()?;
    Ok(match reply {
        Ok(Reply::Row(row)) => format!(
            "{}: {}",
            row.get("item").unwrap_or_default(),
            row.get("place").unwrap_or_default()
        ),
        Ok(other) => anyhow::bail!("unexpected answer {other:?}"),
        Err(e) => format!("{what}: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn things_are_found_by_any_part_of_their_name() {
        let running =
            serve("item,place\nCar keys,hook by the door\nKey ring,drawer\npassport,desk\n")
                .expect("serve");
        assert_eq!(ask(&running, "KEY RING").unwrap(), "Key ring: drawer");
        assert_eq!(ask(&running, "car").unwrap(), "Car keys: hook by the door");
        assert_eq!(ask(&running, "PASS").unwrap(), "passport: desk");
        let missing = ask(&running, "umbrella").unwrap();
        assert!(missing.contains("nothing like"), "{missing}");
        // Moved: the new file answers at once.
        running
            .files
            .put("/things.csv", "item,place\npassport,bag\n");
        assert_eq!(ask(&running, "passport").unwrap(), "passport: bag");
    }
}
