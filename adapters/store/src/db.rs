//! [`FjallStore`]: the [`Store`] on disk, on fjall 3.
//!
//! # On-disk layout
//!
//! ```text
//! <data_dir>/               mode 0700, created if absent (may also hold identity.key, ...)
//!   db/                     one fjall 3 `Database` (mode 0700 when vserv creates it)
//!     version               fjall's format marker ("FJL" 3); its presence = "a fjall database"
//!     lock                  fjall's lock file (flock), held while a process has the db open
//!     *.jnl                 the journal (write-ahead log); every commit is one framed batch
//!     keyspaces/            one LSM-tree per keyspace (fjall's own keyspace 0 = its metadata)
//! ```
//!
//! One fjall keyspace per [`Table`], named [`Table::name`]: `meta`, `users`, `limits`, `ledger`. Keys are
//! the service's bytes, ordered bytewise. The `meta` keyspace holds, written in one durable
//! batch when the store is created:
//!
//! | key        | value                                                         |
//! |------------|---------------------------------------------------------------|
//! | `schema`   | [`SCHEMA_VERSION`] as a `u32`, big-endian (4 bytes)           |
//! | `store-id` | 16 random bytes identifying this store (for replication)       |
//!
//! # Durability and atomicity
//!
//! [`Store::commit`] writes one fjall batch (one journal entry, one sequence number) with
//! `PersistMode::SyncAll`: when it returns `Ok`, the batch is `fsync`ed. On recovery fjall
//! replays the journal and discards a torn tail batch, so a batch is all-or-nothing across
//! tables even after a power loss. Reads go through a database snapshot, so a reader never
//! sees part of a batch that is being applied (plain keyspace reads in fjall 3 read at the
//! newest sequence number and could).
//!
//! If an `fsync` fails, fjall poisons the database: that commit returns an error (its batch
//! may or may not be present after a restart, as the journal was already written), and every
//! later commit fails. The advice (fjall's and ours) is to stop the process and restart.
//!
//! # Exclusive access
//!
//! fjall takes an advisory `flock` on `db/lock` (via `std::fs::File::try_lock`). `flock` locks
//! belong to an open file description, so a second open of the same directory conflicts both
//! from another process and from the same process; fjall retries three times over ~200 ms
//! and then fails, which [`FjallStore::open`] reports as [`StoreError::Locked`]. The lock is
//! released when the last handle of the first store is dropped.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use rand_core::Rng;

use crate::kv::{Op, Store, StoreError, Table};
use crate::{storable_key, validate_ops};

/// The version of the store's layout of records that this build reads and writes. A store
/// whose `meta/schema` is different is refused with [`StoreError::Incompatible`].
pub const SCHEMA_VERSION: u32 = 1;

/// The key of the schema version in [`Table::Meta`] (value: `u32` big-endian).
pub const SCHEMA_KEY: &[u8] = b"schema";

/// The key of the 16-byte store id in [`Table::Meta`].
pub const STORE_ID_KEY: &[u8] = b"store-id";

/// The name of the fjall database directory inside the data directory.
pub const DB_DIR: &str = "db";

/// fjall's format marker file: its presence is what makes a directory a fjall database.
const FJALL_VERSION_MARKER: &str = "version";

/// The vserv store on disk: one fjall database at `<data_dir>/db`, one keyspace per [`Table`].
///
/// Guarantees: every [`Store::commit`] is atomic across tables and durable (`fsync`) when it
/// returns `Ok`; reads are consistent snapshots; at most one open `FjallStore` per directory
/// (in this or any other process). Dropping the store closes the database and releases the
/// lock. It is `Send + Sync`; share it with an `Arc`.
pub struct FjallStore {
    db: Database,
    /// One keyspace per [`Table::ALL`] entry.
    keyspaces: BTreeMap<Table, Keyspace>,
    store_id: [u8; 16],
    path: PathBuf,
}

impl fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.path)
            .field("store_id", &hex::encode(self.store_id))
            .finish_non_exhaustive()
    }
}

/// What `<data_dir>/db` was before opening.
enum Existing {
    /// Absent or an empty directory: a new store is created.
    Nothing,
    /// A directory with fjall's version marker.
    FjallDb,
}

impl FjallStore {
    /// Opens the store in `data_dir`, creating the directory (mode 0700) and a new database if
    /// absent.
    ///
    /// # Errors
    ///
    /// - [`StoreError::Locked`] if the database is open elsewhere (another process, or another
    ///   `FjallStore` in this process).
    /// - [`StoreError::Incompatible`] if the store was written by a newer (or older,
    ///   unmigratable) schema, or `<data_dir>/db` is not a vserv store: a file, a directory
    ///   that is not a fjall database, a fjall database of another format version, or one
    ///   holding data but no valid schema marker. Nothing is modified in these cases.
    /// - [`StoreError::Backend`] for I/O failures and corruption.
    pub fn open(data_dir: &Path) -> Result<FjallStore, StoreError> {
        create_data_dir(data_dir)?;
        let path = data_dir.join(DB_DIR);
        let existing = inspect_db_dir(&path)?;
        let db = Database::builder(&path)
            .open()
            .map_err(|e| open_error(e, &path))?;
        let fail = |e: fjall::Error| open_error(e, &path);

        if let Existing::FjallDb = existing
            && db.keyspace_exists(Table::Meta.name())
        {
            let meta = keyspace(&db, Table::Meta).map_err(fail)?;
            let snapshot = db.snapshot();
            let schema = snapshot.get(&meta, SCHEMA_KEY).map_err(fail)?;
            if let Some(schema) = schema {
                check_schema(&schema, &path)?;
                let id = snapshot.get(&meta, STORE_ID_KEY).map_err(fail)?;
                let store_id = parse_store_id(id.as_deref(), &path)?;
                drop(snapshot);
                // Opening creates a keyspace that is absent, so a store written before a
                // table existed (e.g. `ledger`) gains it, empty, on its first open by this
                // build; the schema version does not change for an added, empty table.
                let keyspaces = all_keyspaces(&db).map_err(fail)?;
                return Ok(FjallStore {
                    db,
                    keyspaces,
                    store_id,
                    path,
                });
            }
        }
        if let Existing::FjallDb = existing {
            // No schema marker: only acceptable for a database we created ourselves and whose
            // first batch never became durable, i.e. nothing but our (empty) keyspaces.
            check_uninitialised(&db, &path)?;
        }
        Self::initialise(db, path)
    }

    /// Creates the keyspaces and writes the schema version and a fresh store id in one
    /// durable batch.
    fn initialise(db: Database, path: PathBuf) -> Result<FjallStore, StoreError> {
        let fail = |e: fjall::Error| open_error(e, &path);
        let keyspaces = all_keyspaces(&db).map_err(fail)?;
        let meta = keyspaces
            .get(&Table::Meta)
            .ok_or_else(|| StoreError::Backend("the meta keyspace was not created".into()))?;
        let mut store_id = [0u8; 16];
        crate::rng::os_rng()
            .map_err(|e| StoreError::Backend(format!("no OS randomness for the store id: {e}")))?
            .fill_bytes(&mut store_id);
        let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(meta, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes().to_vec());
        batch.insert(meta, STORE_ID_KEY, store_id.to_vec());
        batch.commit().map_err(fail)?;
        Ok(FjallStore {
            db,
            keyspaces,
            store_id,
            path,
        })
    }

    /// The 16 random bytes chosen when this store was created; stable across reopens.
    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    /// The fjall database directory (`<data_dir>/db`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn keyspace(&self, table: Table) -> Result<&Keyspace, StoreError> {
        // Every table is opened in `open`/`initialise`, so this only fails if that changes.
        self.keyspaces
            .get(&table)
            .ok_or_else(|| StoreError::Backend(format!("table {} is not open", table.name())))
    }
}

impl Store for FjallStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !storable_key(key) {
            return Ok(None);
        }
        let value = self
            .db
            .snapshot()
            .get(self.keyspace(table)?, key)
            .map_err(|e| backend("read", e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let snapshot = self.db.snapshot();
        let mut out = Vec::new();
        for guard in snapshot.prefix(self.keyspace(table)?, prefix) {
            let (key, value) = guard.into_inner().map_err(|e| backend("scan", e))?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let first = start.max(prefix);
        let snapshot = self.db.snapshot();
        let range = (Bound::Included(first), Bound::Unbounded::<&[u8]>);
        let mut out = Vec::new();
        for guard in snapshot.range::<&[u8], _>(self.keyspace(table)?, range) {
            let (key, value) = guard.into_inner().map_err(|e| backend("scan", e))?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        validate_ops(&ops)?;
        // All items of a fjall batch share one sequence number, so two writes of the same key
        // in one batch would be ambiguous: keep only the last op per (table, key), which is
        // what applying the ops in order means.
        let mut seen: HashSet<(Table, &[u8])> = HashSet::with_capacity(ops.len());
        let mut keep = vec![false; ops.len()];
        for (i, op) in ops.iter().enumerate().rev() {
            let (table, key) = match op {
                Op::Put { table, key, .. } | Op::Delete { table, key } => (*table, key),
            };
            keep[i] = seen.insert((table, key.as_slice()));
        }
        drop(seen);
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (op, keep) in ops.into_iter().zip(keep) {
            if !keep {
                continue;
            }
            match op {
                Op::Put { table, key, value } => batch.insert(self.keyspace(table)?, key, value),
                Op::Delete { table, key } => batch.remove(self.keyspace(table)?, key),
            }
        }
        batch.commit().map_err(|e| backend("commit", e))
    }
}

/// Opens (creating if absent) the keyspace of every table.
fn all_keyspaces(db: &Database) -> Result<BTreeMap<Table, Keyspace>, fjall::Error> {
    Table::ALL
        .iter()
        .map(|&t| Ok((t, keyspace(db, t)?)))
        .collect()
}

/// Opens (creating if absent) the keyspace of `table`.
fn keyspace(db: &Database, table: Table) -> Result<Keyspace, fjall::Error> {
    db.keyspace(table.name(), KeyspaceCreateOptions::default)
}

/// Creates `dir` (and missing parents) with mode 0700, accepting an existing directory.
fn create_data_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(StoreError::Incompatible(format!(
                "the data directory {} exists but is not a directory",
                dir.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("cannot inspect the data directory", dir, &e)),
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error("cannot create the data directory", dir, &e))
}

/// Classifies `<data_dir>/db` without modifying anything but an absent path (created empty,
/// mode 0700). Anything that is neither absent, an empty directory, nor a fjall database is
/// refused, so fjall never writes into a foreign directory.
fn inspect_db_dir(path: &Path) -> Result<Existing, StoreError> {
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .map_err(|e| io_error("cannot create the database directory", path, &e))?;
            return Ok(Existing::Nothing);
        }
        Err(e) => return Err(io_error("cannot inspect the database directory", path, &e)),
        Ok(m) if !m.is_dir() => {
            return Err(StoreError::Incompatible(format!(
                "{} exists but is not a directory, so it is not a vserv store; refusing to touch it",
                path.display()
            )));
        }
        Ok(_) => {}
    }
    match fs::symlink_metadata(path.join(FJALL_VERSION_MARKER)) {
        Ok(_) => return Ok(Existing::FjallDb),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("cannot inspect the database directory", path, &e)),
    }
    let mut entries =
        fs::read_dir(path).map_err(|e| io_error("cannot list the database directory", path, &e))?;
    if entries.next().is_none() {
        return Ok(Existing::Nothing);
    }
    Err(StoreError::Incompatible(format!(
        "{} is not empty but is not a fjall database (no `{FJALL_VERSION_MARKER}` marker), so it \
         is not a vserv store; refusing to touch it (if a first start of the server was \
         interrupted, remove the directory)",
        path.display()
    )))
}

/// Accepts `bytes` as the schema marker of this build, or explains why not.
fn check_schema(bytes: &[u8], path: &Path) -> Result<(), StoreError> {
    let Ok(raw) = <[u8; 4]>::try_from(bytes) else {
        return Err(StoreError::Incompatible(format!(
            "{}: the schema marker (meta/schema) is garbled ({} bytes, expected 4); \
             not a store this vserv can read",
            path.display(),
            bytes.len()
        )));
    };
    let version = u32::from_be_bytes(raw);
    if version == SCHEMA_VERSION {
        Ok(())
    } else if version > SCHEMA_VERSION {
        Err(StoreError::Incompatible(format!(
            "{} was written by a newer vserv (store schema version {version}); this vserv \
             supports schema version {SCHEMA_VERSION} only: upgrade vserv",
            path.display()
        )))
    } else {
        Err(StoreError::Incompatible(format!(
            "{} has store schema version {version}, older than this vserv's schema version \
             {SCHEMA_VERSION}, and no migration exists",
            path.display()
        )))
    }
}

/// The store id from its stored value, which must be exactly 16 bytes.
fn parse_store_id(bytes: Option<&[u8]>, path: &Path) -> Result<[u8; 16], StoreError> {
    match bytes {
        Some(bytes) => <[u8; 16]>::try_from(bytes).map_err(|_| {
            StoreError::Incompatible(format!(
                "{}: the store id (meta/store-id) is garbled ({} bytes, expected 16)",
                path.display(),
                bytes.len()
            ))
        }),
        None => Err(StoreError::Incompatible(format!(
            "{}: the store id (meta/store-id) is missing although the schema marker is present",
            path.display()
        ))),
    }
}

/// Succeeds only if the database holds nothing but empty keyspaces named after our tables
/// (an initialisation that was interrupted before its batch became durable).
fn check_uninitialised(db: &Database, path: &Path) -> Result<(), StoreError> {
    let ours: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    let names = db.list_keyspace_names();
    if let Some(foreign) = names.iter().find(|n| !ours.contains(&n.as_ref())) {
        return Err(StoreError::Incompatible(format!(
            "{} is a fjall database but not a vserv store (it has a keyspace {:?} and no \
             schema marker); refusing to touch it",
            path.display(),
            &**foreign
        )));
    }
    let snapshot = db.snapshot();
    for table in Table::ALL {
        if !db.keyspace_exists(table.name()) {
            continue;
        }
        let ks = keyspace(db, table).map_err(|e| open_error(e, path))?;
        if !snapshot.is_empty(&ks).map_err(|e| open_error(e, path))? {
            return Err(StoreError::Incompatible(format!(
                "{} holds data (in table {}) but no schema marker (meta/schema); refusing to \
                 reinitialise it",
                path.display(),
                table.name()
            )));
        }
    }
    Ok(())
}

/// Maps an error from opening the database at `path`.
fn open_error(e: fjall::Error, path: &Path) -> StoreError {
    match e {
        fjall::Error::Locked => StoreError::Locked(path.display().to_string()),
        fjall::Error::InvalidVersion(v) => StoreError::Incompatible(format!(
            "{} is a fjall database of an unsupported format version ({v:?}; this vserv reads \
             fjall format 3)",
            path.display()
        )),
        other => StoreError::Backend(format!("opening {}: {other}", path.display())),
    }
}

/// Maps a fjall error from an operation on an open store.
fn backend(what: &str, e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Poisoned => StoreError::Backend(format!(
            "{what}: the database is poisoned after a failed fsync; restart the process"
        )),
        other => StoreError::Backend(format!("{what}: {other}")),
    }
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> StoreError {
    StoreError::Backend(format!("{what} {}: {e}", path.display()))
}
