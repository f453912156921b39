//! [`FjallStore`]: the [`Store`] on disk, on fjall 3.
//!
//! # On-disk layout
//!
//! ```text
//! <data_dir>/               mode 0700, created if absent (may also hold identity.key, ...)
//!   store.mark              which store this directory holds and its generation (crate::mark)
//!   db/                     one fjall 3 `Database` (mode 0700 when vserv creates it)
//!     version               fjall's format marker ("FJL" 3); its presence = "a fjall database"
//!     lock                  fjall's lock file (flock), held while a process has the db open
//!     *.jnl                 the journal (write-ahead log); every commit is one framed batch
//!     keyspaces/            one LSM-tree per keyspace (fjall's own keyspace 0 = its metadata)
//! ```
//!
//! One fjall keyspace per [`Table`], named [`Table::name`]: `meta`, `users`, `limits`, `ledger`,
//! `replicas`, `messages`, `transit`, `ledger-index`, `ledger-commits`, `replica-entries` (a
//! store written before a table existed gains it, empty, when this build opens it). Keys are the service's bytes,
//! ordered bytewise. The `meta` keyspace holds, written in one durable
//! batch when the store is created:
//!
//! | key        | value                                                         |
//! |------------|---------------------------------------------------------------|
//! | `schema`   | [`SCHEMA_VERSION`] as a `u32`, big-endian (4 bytes; an older one is rewritten when the store is opened) |
//! | `store-id` | 16 random bytes identifying this store (for replication)       |
//! | `generation` | durable commits so far, `u64` big-endian; every commit bumps it |
//!
//! # Data loss
//!
//! fjall opens a journal damaged in its first batches, or a deleted journal or keyspace
//! directory, as an empty or shorter database without an error. Every commit therefore also
//! writes the store's generation, and the data directory's mark (`store.mark`, outside the
//! database) records the store id and the last generation made durable. [`FjallStore::open`]
//! refuses with [`StoreError::DataLoss`] a store that is behind its mark, has another id, or
//! is missing while the mark exists; [`OpenOptions::accept_data_loss`] opens it anyway and
//! resets the mark. A data directory without a mark (new, or from before marks) gains one.
//!
//! # Durability and atomicity
//!
//! [`Store::commit`] writes one fjall batch (one journal entry, one sequence number) with
//! `PersistMode::SyncAll`: when it returns `Ok`, the batch is `fsync`ed. [`Store::commit_bulk`]
//! of a batch sorted in one table is a fjall ingestion instead: new on-disk tables, `fsync`ed
//! and registered in the keyspace's version at once, then a batch that counts it in the
//! generation. On recovery fjall
//! replays the journal and discards a torn tail batch, so a batch is all-or-nothing across
//! tables even after a power loss. Reads go through a database snapshot, so a reader never
//! sees part of a batch that is being applied (plain keyspace reads in fjall 3 read at the
//! newest sequence number and could).
//!
//! If a journal write or `fsync` fails (a full disk), fjall poisons the database: that commit
//! returns an error (its batch may or may not be present afterwards, as the journal may have
//! been written), and fjall refuses every later write. The next commit then closes the
//! database and reopens it from its journal, as a restart would (a torn batch is dropped),
//! checks that it is still this store with every acknowledged commit, and goes on; while the
//! cause persists it fails again, and reads fail while the database could not be reopened.
//! Commits are serialised (each takes the next generation).
//!
//! # Exclusive access
//!
//! fjall takes an advisory `flock` on `db/lock` (via `std::fs::File::try_lock`). `flock` locks
//! belong to an open file description, so a second open of the same directory conflicts both
//! from another process and from the same process; fjall retries three times over ~200 ms
//! and then fails, which [`FjallStore::open`] reports as [`StoreError::Locked`]. The lock is
//! released when the last handle of the first store is dropped.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use fjall::config::{BlockSizePolicy, CompressionPolicy, FilterPolicy, PinningPolicy};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::flat_entries::{
    ENTRY_KEY_PREFIX, FLAT_ENTRIES_DIR, FlatEntries, entry_key, entry_seq, first_seq_from,
};
use crate::kv::{Op, Store, StoreError, Table, sorted_in_one_table};
use crate::mark::{self, Mark, MarkWriter, ReadMark};
use crate::{storable_key, validate_ops};

/// The version of the store's layout of records that this build writes. A store of an
/// older version from [`OLDEST_SCHEMA_VERSION`] on is upgraded when it is opened; any other
/// is refused with [`StoreError::Incompatible`].
///
/// Version 2 keeps the own ledger feed's per-commit keys in `ledger-commits`; a version 1
/// store's records stay where they are (the service reads both places), and only its marker
/// is rewritten, so that a build that knows version 1 only refuses the store instead of
/// reading a stale head from `ledger` and appending over entries it does not see.
///
/// Version 3: the own feed's hash index trails its commits (each commit stores its
/// entries' hashes in one `hh:` record in `ledger-index`; their `h:` keys are stored
/// later, in bulk). A version 2 build would not find the entries whose keys are not stored
/// yet, so it must refuse the store; an older store has every `h:` key and no `hh:` record,
/// so only its marker is rewritten.
///
/// Version 4: the own feed's record id index trails its commits too (one `hi:` record of the
/// commit's record ids beside its `hh:` record; the `id:` keys are stored later, in bulk). A
/// version 3 build would miss the ids whose keys are not stored yet, and append a record id
/// twice, so it must refuse the store; a version 3 store has every `id:` key and no `hi:`
/// record, so only its marker is rewritten.
///
/// Version 5: the `hh:` and `hi:` records are in `ledger-commits` (the `h:` and `id:` keys
/// are ingested into `ledger-index` in bulk, which first flushes that keyspace's in-memory
/// table: kept free of the records, it has next to nothing to flush). A version 4 build
/// would not see the records there, and append a record id twice, so it must refuse the
/// store; the records a version 3 or 4 store holds in `ledger-index` are read there until
/// the next bulk deletes them, so only its marker is rewritten.
///
/// Version 6: the replicas' entries are in `replica-entries`, apart from their indexes in
/// `replicas`. A version 5 build would find no entry of a replica there, so it must refuse
/// the store; the entries an older store holds in `replicas` are moved by the service when
/// it opens the replicas (`vserv_service::replicas`, in atomic steps it resumes after a
/// crash), so only the marker is rewritten here.
///
/// Version 7: the record id and hash index keys are grouped in spans of 2^20 entries by
/// seq (`x` + span + `i`/`h` + record id or hash, instead of `id:`/`h:` + it), so that new
/// keys overlap only the last spans' tables. A version 6 build would not find the entries
/// indexed in spans and append a record id twice, so it must refuse the store; the service
/// reads an older store's `id:` and `h:` keys where they are, so only the marker is
/// rewritten.
///
/// Version 8: the own feed's spans hold 2^16 entries, one index bulk each, so that no two
/// of its on-disk tables overlap; the service records the span size in the own feed's
/// commit table (`spans`) with its first commit, and keeps 2^20 for a feed a version 7
/// build grew past 2^16 entries. A version 7 build would look for keys in the wrong spans
/// and append a record id twice, so it must refuse the store; only the marker is
/// rewritten here.
pub const SCHEMA_VERSION: u32 = 8;

/// The oldest schema version this build opens (and upgrades to [`SCHEMA_VERSION`]).
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

/// The key of the schema version in [`Table::Meta`] (value: `u32` big-endian).
pub const SCHEMA_KEY: &[u8] = b"schema";

/// The key of the 16-byte store id in [`Table::Meta`].
pub const STORE_ID_KEY: &[u8] = b"store-id";

/// The key of the store's generation in [`Table::Meta`] (value: `u64` big-endian): the number
/// of durable commits, written by every commit and compared with the data directory's mark.
pub const GENERATION_KEY: &[u8] = b"generation";

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
    /// The open database; `None` only while it is being reopened after a failed write, or
    /// after a reopen failed (every operation then fails until a commit reopens it).
    open: RwLock<Option<OpenDb>>,
    /// Serialises commits: each one takes the next generation.
    writer: Mutex<Writer>,
    store_id: [u8; 16],
    path: PathBuf,
    /// What was accepted as lost when the store was opened, if anything.
    data_loss_accepted: Option<String>,
    /// The block cache's size, for a reopen.
    cache_bytes: u64,
    /// The flat copy of the own feed's entries that reads by seq ask first.
    flat: FlatEntries,
}

/// One open fjall database and its keyspaces.
struct OpenDb {
    db: Database,
    /// One keyspace per [`Table::ALL`] entry.
    keyspaces: BTreeMap<Table, Keyspace>,
}

impl OpenDb {
    fn keyspace(&self, table: Table) -> Result<&Keyspace, StoreError> {
        // Every table is opened with the database, so this only fails if that changes.
        self.keyspaces
            .get(&table)
            .ok_or_else(|| StoreError::Backend(format!("table {} is not open", table.name())))
    }
}

/// The commit side of the store.
struct Writer {
    /// Commits made durable so far (`meta/generation`).
    generation: u64,
    /// A commit failed: fjall refuses every later write, so the next commit first reopens
    /// the database from its journal.
    failed: bool,
    mark: MarkWriter,
}

impl fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FjallStore")
            .field("path", &self.path)
            .field("store_id", &hex::encode(self.store_id))
            .finish_non_exhaustive()
    }
}

/// How [`FjallStore::open_with`] treats a store that lost data, and how much memory it
/// caches the store's files in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Open a store that is behind, other than, or missing from what the data directory's
    /// mark records (and a damaged mark), instead of failing with [`StoreError::DataLoss`]:
    /// the loss is accepted, reported by [`FjallStore::data_loss_accepted`], and the mark is
    /// reset to the store as it is.
    pub accept_data_loss: bool,
    /// The bytes of the store's file blocks (decompressed) kept in memory: the entries read,
    /// and the filter and index blocks that are not pinned. `None`: [`DEFAULT_CACHE_BYTES`].
    pub cache_bytes: Option<u64>,
}

/// The block cache of a store opened without [`OpenOptions::cache_bytes`] (fjall's own
/// default).
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// `(key, value)` pairs in key order, as a scan returns them.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// The entries read from the store at a time while filling the flat copy.
const FLAT_FILL_PAGE: usize = 4096;

/// What `<data_dir>/db` was before opening.
enum Existing {
    /// Absent or an empty directory: a new store is created.
    Nothing,
    /// A directory with fjall's version marker.
    FjallDb,
}

impl FjallStore {
    /// Opens the store in `data_dir`, creating the directory (mode 0700) and a new database if
    /// absent; a store that lost data is refused (see [`FjallStore::open_with`]).
    ///
    /// # Errors
    ///
    /// As [`FjallStore::open_with`] with default options.
    pub fn open(data_dir: &Path) -> Result<FjallStore, StoreError> {
        Self::open_with(data_dir, OpenOptions::default())
    }

    /// Opens the store in `data_dir`, creating the directory (mode 0700) and a new database if
    /// absent, and checks it against the data directory's mark (`store.mark`, see
    /// [`crate::mark`]): a store whose generation is behind the mark, whose id differs, or
    /// that is missing while the mark exists, has lost data.
    ///
    /// # Errors
    ///
    /// - [`StoreError::DataLoss`] for a store that lost data (unless
    ///   [`OpenOptions::accept_data_loss`]); the store is not written.
    /// - [`StoreError::Locked`] if the database is open elsewhere (another process, or another
    ///   `FjallStore` in this process).
    /// - [`StoreError::Incompatible`] if the store was written by a newer (or older,
    ///   unmigratable) schema, or `<data_dir>/db` is not a vserv store: a file, a directory
    ///   that is not a fjall database, a fjall database of another format version, or one
    ///   holding data but no valid schema marker. Nothing is modified in these cases.
    /// - [`StoreError::Backend`] for I/O failures and corruption.
    pub fn open_with(data_dir: &Path, options: OpenOptions) -> Result<FjallStore, StoreError> {
        create_data_dir(data_dir)?;
        let recorded = mark::read(data_dir)
            .map_err(|e| io_error("cannot read the store mark in", data_dir, &e))?;
        let path = data_dir.join(DB_DIR);
        let existing = inspect_db_dir(&path)?;
        let cache_bytes = options.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES);
        let db = database_builder(&path, cache_bytes)
            .open()
            .map_err(|e| open_error(e, &path))?;
        let fail = |e: fjall::Error| open_error(e, &path);
        let refuse_unless_accepted = |lost: Option<String>| match lost {
            Some(what) if !options.accept_data_loss => Err(StoreError::DataLoss(format!(
                "data loss in {}: {what}. Refusing to open what is left. Restore the data \
                 directory from a backup, or start the server with --accept-data-loss to go on \
                 with the store as it is (the loss is logged and the mark reset)",
                data_dir.display()
            ))),
            other => Ok(other),
        };

        let found = match existing {
            Existing::FjallDb => read_meta(&db, &path)?,
            Existing::Nothing => None,
        };
        let (open, store_id, generation, lost) = match found {
            Some(StoredMeta {
                store_id,
                generation,
                schema,
            }) => {
                let lost = refuse_unless_accepted(compare(&recorded, store_id, generation))?;
                // Opening creates a keyspace that is absent, so a store written before a
                // table existed (e.g. `ledger`, `replicas`) gains it, empty, on its first open by this
                // build; the schema version does not change for an added, empty table.
                let keyspaces = all_keyspaces(&db).map_err(fail)?;
                let open = OpenDb { db, keyspaces };
                if schema < SCHEMA_VERSION {
                    upgrade_schema(&open, &path)?;
                }
                (open, store_id, generation, lost)
            }
            None => {
                if let Existing::FjallDb = existing {
                    // No schema marker: only acceptable for a database we created ourselves
                    // and whose first batch never became durable, i.e. nothing but our
                    // (empty) keyspaces.
                    check_uninitialised(&db, &path)?;
                }
                let lost = refuse_unless_accepted(match &recorded {
                    ReadMark::Absent => None,
                    ReadMark::Found(mark) => Some(format!(
                        "{} records store {} with {} durable commits, but {} holds no store \
                         (its database files were deleted or damaged)",
                        mark::mark_path(data_dir).display(),
                        hex::encode(mark.store_id),
                        mark.generation,
                        path.display()
                    )),
                    ReadMark::Damaged(why) => Some(damaged_mark(why)),
                })?;
                let (open, store_id) = initialise(db, &path)?;
                (open, store_id, INITIAL_GENERATION, lost)
            }
        };
        let mark = MarkWriter::create(
            data_dir,
            Mark {
                store_id,
                generation,
            },
        )
        .map_err(|e| io_error("cannot write the store mark in", data_dir, &e))?;
        let flat_dir = data_dir.join(FLAT_ENTRIES_DIR);
        let flat = FlatEntries::open(&flat_dir)
            .map_err(|e| io_error("cannot open the flat copy of the entries in", &flat_dir, &e))?;
        let store = FjallStore {
            open: RwLock::new(Some(open)),
            writer: Mutex::new(Writer {
                generation,
                failed: false,
                mark,
            }),
            store_id,
            path,
            data_loss_accepted: lost,
            cache_bytes,
            flat,
        };
        store.reconcile_flat()?;
        Ok(store)
    }

    /// Matches the flat copy of the entries with the store (see [`FlatEntries::reconcile`]).
    fn reconcile_flat(&self) -> Result<(), StoreError> {
        let last_stored = self.with_open(|open| {
            let range = (
                Bound::Included(entry_key(0)),
                Bound::Included(entry_key(u64::MAX)),
            );
            let last = open
                .db
                .snapshot()
                .range::<Vec<u8>, _>(open.keyspace(Table::Ledger)?, range)
                .next_back();
            match last {
                None => Ok(0),
                Some(guard) => {
                    let key = guard.key().map_err(|e| backend("read", e))?;
                    Ok(entry_seq(Table::Ledger, &key).unwrap_or(0))
                }
            }
        })?;
        // A read that fails ends the copying (as an empty answer would) and fails the open.
        let failed = Cell::new(None);
        self.flat.reconcile(
            last_stored,
            |seq| keep(&failed, self.stored_entry(seq), None),
            |first| {
                keep(
                    &failed,
                    self.stored_entries(first, FLAT_FILL_PAGE),
                    Vec::new(),
                )
            },
        );
        failed.take().map_or(Ok(()), Err)
    }

    /// Copies the entries a committed batch put into the flat copy.
    fn copy_entries(&self, ops: &[Op]) {
        self.flat
            .after_commit(ops, |seq| self.stored_entry(seq).ok().flatten());
    }

    /// Entry `seq` as the store holds it.
    fn stored_entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_open(|open| {
            let value = open
                .db
                .snapshot()
                .get(open.keyspace(Table::Ledger)?, entry_key(seq))
                .map_err(|e| backend("read", e))?;
            Ok(value.map(|v| v.to_vec()))
        })
    }

    /// Up to `limit` of the entries the store holds from seq `first` on, in order.
    fn stored_entries(&self, first: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let rows = self.scan_stored(Table::Ledger, ENTRY_KEY_PREFIX, &entry_key(first), limit)?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, value)| Some((entry_seq(Table::Ledger, &key)?, value)))
            .collect())
    }

    /// [`Store::scan_from`] in the store itself.
    fn scan_stored(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Rows, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let first = start.max(prefix);
        // Bounded above too: an iterator that ran past the prefix would have to merge the
        // next key's every version first (a feed's `head`, rewritten by each commit, has
        // thousands in a memtable).
        let end = prefix_end(prefix);
        self.with_open(|open| {
            let snapshot = open.db.snapshot();
            let upper = match &end {
                Some(end) => Bound::Excluded(end.as_slice()),
                None => Bound::Unbounded,
            };
            let range = (Bound::Included(first), upper);
            let mut out = Vec::new();
            for guard in snapshot.range::<&[u8], _>(open.keyspace(table)?, range) {
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

    /// What [`OpenOptions::accept_data_loss`] accepted when this store was opened: `None`
    /// when nothing was lost.
    pub fn data_loss_accepted(&self) -> Option<&str> {
        self.data_loss_accepted.as_deref()
    }

    /// The number of commits this store has made durable since it was created (counting
    /// from the commit that created it; stores from before generations existed count from
    /// their first open by a build that has them).
    pub fn generation(&self) -> Result<u64, StoreError> {
        Ok(self.writer()?.generation)
    }

    /// Makes the mark durable; called when the store is closed.
    fn sync_mark(&self) {
        if let Ok(writer) = self.writer.lock() {
            // Best effort: a mark that lags only weakens the next open's check.
            let _ = writer.mark.sync();
        }
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>, StoreError> {
        self.writer
            .lock()
            .map_err(|_| StoreError::Backend("the store's writer lock is poisoned".into()))
    }

    /// Runs `f` on the open database.
    fn with_open<T>(
        &self,
        f: impl FnOnce(&OpenDb) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .open
            .read()
            .map_err(|_| StoreError::Backend("the store's lock is poisoned".into()))?;
        match guard.as_ref() {
            Some(open) => f(open),
            None => Err(StoreError::Backend(
                "the store is closed after a failed write and could not be reopened yet; \
                 the next write retries"
                    .into(),
            )),
        }
    }

    /// After a failed commit fjall refuses every write until the database is opened again:
    /// closes it and reopens it from its journal (which drops a batch torn by the failure),
    /// so that writes work again once their cause (a full disk) is gone. The reopened store
    /// must still be this store with every acknowledged commit, or it stays closed.
    fn reopen(&self, writer: &mut Writer) -> Result<(), StoreError> {
        let mut guard = self
            .open
            .write()
            .map_err(|_| StoreError::Backend("the store's lock is poisoned".into()))?;
        // Dropping the database stops its workers and releases its lock file.
        drop(guard.take());
        let db = database_builder(&self.path, self.cache_bytes)
            .open()
            .map_err(|e| open_error(e, &self.path))?;
        let Some(StoredMeta {
            store_id,
            generation,
            ..
        }) = read_meta(&db, &self.path)?
        else {
            return Err(StoreError::DataLoss(format!(
                "{} holds no store after reopening it following a failed write",
                self.path.display()
            )));
        };
        if store_id != self.store_id || generation < writer.generation {
            return Err(StoreError::DataLoss(format!(
                "{} lost acknowledged commits when it was reopened after a failed write (it \
                 holds {generation}, {} were made durable)",
                self.path.display(),
                writer.generation
            )));
        }
        let keyspaces = all_keyspaces(&db).map_err(|e| open_error(e, &self.path))?;
        *guard = Some(OpenDb { db, keyspaces });
        // A batch whose fsync failed may have survived: count it.
        writer.generation = generation;
        writer.failed = false;
        Ok(())
    }

    /// Commits `ops` (valid, at most one per key, in key order) with the next generation as
    /// one durable batch and records that generation in the mark; on failure, marks the
    /// database for reopening.
    fn write_batch(&self, writer: &mut Writer, ops: &[Op]) -> Result<(), StoreError> {
        let generation = writer.generation + 1;
        let committed = self.with_open(|open| {
            let mut batch = open.db.batch().durability(Some(PersistMode::SyncAll));
            for op in ops {
                match op {
                    Op::Put { table, key, value } => {
                        batch.insert(open.keyspace(*table)?, key.as_slice(), value.as_slice())
                    }
                    Op::Delete { table, key } => {
                        batch.remove(open.keyspace(*table)?, key.as_slice())
                    }
                }
            }
            batch.insert(
                open.keyspace(Table::Meta)?,
                GENERATION_KEY,
                generation.to_be_bytes().to_vec(),
            );
            batch.commit().map_err(|e| backend("commit", e))
        });
        match committed {
            Ok(()) => {
                writer.generation = generation;
                // The commit is durable whatever happens to the mark: a mark write that
                // fails leaves it lagging, which only weakens the next open's check.
                let _ = writer.mark.record(Mark {
                    store_id: self.store_id,
                    generation,
                });
                Ok(())
            }
            Err(e) => {
                // fjall refuses every write after a failed one (it poisons the database):
                // the next commit reopens it first.
                writer.failed = true;
                Err(e)
            }
        }
    }
}

impl Drop for FjallStore {
    fn drop(&mut self) {
        self.sync_mark();
    }
}

/// The generation of a newly created store: its initialising batch is its first commit.
const INITIAL_GENERATION: u64 = 1;

/// How the store found compares with the mark: `Some(what was lost)` or `None`.
fn compare(recorded: &ReadMark, store_id: [u8; 16], generation: u64) -> Option<String> {
    match recorded {
        ReadMark::Absent => None,
        ReadMark::Damaged(why) => Some(damaged_mark(why)),
        ReadMark::Found(mark) if mark.store_id != store_id => Some(format!(
            "the store's id is {} but the data directory records store {}: the database was \
             replaced by another one",
            hex::encode(store_id),
            hex::encode(mark.store_id)
        )),
        ReadMark::Found(mark) if mark.generation > generation => Some(format!(
            "the store holds {generation} durable commits but {} were acknowledged: the last \
             {} are missing (a damaged or truncated journal, or deleted database files; fjall \
             drops a journal from its first damaged batch on)",
            mark.generation,
            mark.generation - generation
        )),
        ReadMark::Found(_) => None,
    }
}

fn damaged_mark(why: &str) -> String {
    format!(
        "{why}: the record of this data directory's store is damaged, so a loss cannot be ruled out"
    )
}

/// What [`Table::Meta`] says about a store.
struct StoredMeta {
    store_id: [u8; 16],
    generation: u64,
    /// Its schema version, one this build opens.
    schema: u32,
}

/// Reads the store id, generation and schema version of a database that has a schema
/// marker (`None` if it has none), refusing a schema version this build does not open.
fn read_meta(db: &Database, path: &Path) -> Result<Option<StoredMeta>, StoreError> {
    let fail = |e: fjall::Error| open_error(e, path);
    if !db.keyspace_exists(Table::Meta.name()) {
        return Ok(None);
    }
    let meta = keyspace(db, Table::Meta).map_err(fail)?;
    let snapshot = db.snapshot();
    let Some(schema) = snapshot.get(&meta, SCHEMA_KEY).map_err(fail)? else {
        return Ok(None);
    };
    let schema = check_schema(&schema, path)?;
    let id = snapshot.get(&meta, STORE_ID_KEY).map_err(fail)?;
    let store_id = parse_store_id(id.as_deref(), path)?;
    let generation = match snapshot.get(&meta, GENERATION_KEY).map_err(fail)? {
        None => 0,
        Some(bytes) => u64::from_be_bytes(bytes.as_ref().try_into().map_err(|_| {
            StoreError::Incompatible(format!(
                "{}: the generation (meta/generation) is garbled ({} bytes, expected 8)",
                path.display(),
                bytes.len()
            ))
        })?),
    };
    Ok(Some(StoredMeta {
        store_id,
        generation,
        schema,
    }))
}

/// Rewrites the schema marker of a store of an older version that this build opens as it
/// is ([`SCHEMA_VERSION`] says what differs), durably, before anything else is written.
fn upgrade_schema(open: &OpenDb, path: &Path) -> Result<(), StoreError> {
    let meta = open
        .keyspaces
        .get(&Table::Meta)
        .ok_or_else(|| StoreError::Backend("the meta keyspace was not opened".into()))?;
    let mut batch = open.db.batch().durability(Some(PersistMode::SyncAll));
    batch.insert(meta, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes().to_vec());
    batch.commit().map_err(|e| open_error(e, path))
}

/// Creates the keyspaces and writes the schema version, a fresh store id and the first
/// generation in one durable batch.
fn initialise(db: Database, path: &Path) -> Result<(OpenDb, [u8; 16]), StoreError> {
    let fail = |e: fjall::Error| open_error(e, path);
    let keyspaces = all_keyspaces(&db).map_err(fail)?;
    let meta = keyspaces
        .get(&Table::Meta)
        .ok_or_else(|| StoreError::Backend("the meta keyspace was not created".into()))?;
    let mut store_id = [0u8; 16];
    crate::rng::fill_from_os(&mut store_id)
        .map_err(|e| StoreError::Backend(format!("no OS randomness for the store id: {e}")))?;
    let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
    batch.insert(meta, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes().to_vec());
    batch.insert(meta, STORE_ID_KEY, store_id.to_vec());
    batch.insert(
        meta,
        GENERATION_KEY,
        INITIAL_GENERATION.to_be_bytes().to_vec(),
    );
    batch.commit().map_err(fail)?;
    Ok((OpenDb { db, keyspaces }, store_id))
}

impl Store for FjallStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !storable_key(key) {
            return Ok(None);
        }
        if let Some(value) = entry_seq(table, key).and_then(|seq| self.flat.get(seq)) {
            return Ok(Some(value));
        }
        self.with_open(|open| {
            let value = open
                .db
                .snapshot()
                .get(open.keyspace(table)?, key)
                .map_err(|e| backend("read", e))?;
            Ok(value.map(|v| v.to_vec()))
        })
    }

    fn get_first(&self, table: Table, keys: &[Vec<u8>]) -> Result<Option<Vec<u8>>, StoreError> {
        self.with_open(|open| {
            let keyspace = open.keyspace(table)?;
            let snapshot = open.db.snapshot();
            for key in keys.iter().filter(|key| storable_key(key)) {
                if let Some(value) = entry_seq(table, key).and_then(|seq| self.flat.get(seq)) {
                    return Ok(Some(value));
                }
                if let Some(value) = snapshot
                    .get(keyspace, key)
                    .map_err(|e| backend("read", e))?
                {
                    return Ok(Some(value.to_vec()));
                }
            }
            Ok(None)
        })
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.with_open(|open| {
            let snapshot = open.db.snapshot();
            let mut out = Vec::new();
            for guard in snapshot.prefix(open.keyspace(table)?, prefix) {
                let (key, value) = guard.into_inner().map_err(|e| backend("scan", e))?;
                out.push((key.to_vec(), value.to_vec()));
            }
            Ok(out)
        })
    }

    /// A scan of the own feed's entries reads those the flat copy holds from it, in one
    /// positional read per segment, and the rest from the store.
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let first = first_seq_from(start.max(prefix)).filter(|&seq| seq > 0);
        let Some(first) = first.filter(|_| table == Table::Ledger && prefix == ENTRY_KEY_PREFIX)
        else {
            return self.scan_stored(table, prefix, start, limit);
        };
        let mut out = Vec::new();
        let mut next = first;
        while out.len() < limit {
            let run = self.flat.run(next, limit - out.len());
            let Some(&(last, _)) = run.last() else {
                break;
            };
            out.extend(run.into_iter().map(|(seq, value)| (entry_key(seq), value)));
            next = last + 1;
        }
        if out.is_empty() {
            return self.scan_stored(table, prefix, start, limit);
        }
        if out.len() < limit {
            let rest = self.scan_stored(table, prefix, &entry_key(next), limit - out.len())?;
            out.extend(rest);
        }
        Ok(out)
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        validate_ops(&ops)?;
        if ops.is_empty() {
            return Ok(());
        }
        let ops = last_op_per_key_in_key_order(ops);
        let mut writer = self.writer()?;
        if writer.failed {
            self.reopen(&mut writer)?;
        }
        self.flat.before_commit(&ops);
        let committed = self.write_batch(&mut writer, &ops);
        if committed.is_ok() {
            self.copy_entries(&ops);
        }
        committed
    }

    /// A batch in strictly increasing key order in one table is written as a fjall
    /// ingestion: straight into new on-disk tables (`fsync`ed, with the keyspace's version
    /// that lists them) instead of the journal and the in-memory table, and registered all
    /// at once, so it is atomic and durable when this returns. fjall first flushes the
    /// keyspace's in-memory table (so that the ingested keys are the newest), which is
    /// cheap only for a keyspace that takes little else. Commits are not held up while the
    /// tables are written. A small commit then counts it in the generation (if that one fails, the bulk is durable all the same: `Ok`, and the
    /// next commit reopens the database). Any other batch is committed.
    fn commit_bulk(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        validate_ops(&ops)?;
        let Some(table) = ops.first().map(|op| op.table_key().0) else {
            return Ok(());
        };
        if !sorted_in_one_table(&ops) {
            return self.commit(ops);
        }
        let mut writer = self.writer()?;
        if writer.failed {
            self.reopen(&mut writer)?;
        }
        // Without the writer's lock: commits go on meanwhile (fjall takes its journal's
        // lock only to register the tables). A reopen after a failed commit waits for the
        // database, which this holds. A bulk of the own feed's entries keeps the lock, so
        // that no commit copies an entry it is rewriting (no bulk writes them today).
        let entries = table == Table::Ledger;
        let held = if entries {
            self.flat.before_commit(&ops);
            Some(writer)
        } else {
            drop(writer);
            None
        };
        let ingested = self.with_open(|open| {
            let fail = |e| backend("bulk ingestion", e);
            let mut ingestion = open.keyspace(table)?.start_ingestion().map_err(fail)?;
            for op in &ops {
                match op {
                    Op::Put { key, value, .. } => ingestion.write(key.as_slice(), value.as_slice()),
                    Op::Delete { key, .. } => ingestion.write_tombstone(key.as_slice()),
                }
                .map_err(fail)?;
            }
            ingestion.finish().map_err(fail)
        });
        let mut writer = match held {
            Some(writer) => writer,
            None => self.writer()?,
        };
        if let Err(e) = ingested {
            // The next commit reopens the database, which drops what a failed ingestion
            // left half written.
            writer.failed = true;
            return Err(e);
        }
        if entries {
            self.copy_entries(&ops);
        }
        // Durable already: a failure here only leaves the generation behind.
        let _ = self.write_batch(&mut writer, &[]);
        Ok(())
    }
}

/// The value `read` holds, or `none` after keeping its error in `failed`.
fn keep<T>(failed: &Cell<Option<StoreError>>, read: Result<T, StoreError>, none: T) -> T {
    read.unwrap_or_else(|e| {
        failed.set(Some(e));
        none
    })
}

/// `ops` reduced to the last op of each (table, key), in (table, key) order.
///
/// All items of a fjall batch share one sequence number, so two writes of the same key in
/// one batch would be ambiguous: keeping only the last is what applying the ops in order
/// means. fjall inserts a batch's items into the in-memory tables in the order given, and a
/// skiplist insert in key order finds the upper part of its path still in the CPU cache
/// from the previous one: the random keys of the ledger's indexes (record ids, hashes) made
/// those inserts the largest single cost of writing a group commit.
fn last_op_per_key_in_key_order(ops: Vec<Op>) -> Vec<Op> {
    // A batch already in strict key order (what the ledger's group commit hands over) is
    // kept as it is: one pass, no allocation.
    if ops.is_sorted_by(|a, b| a.table_key() < b.table_key()) {
        return ops;
    }
    // Equal keys sort latest first, so the first of each run is the one to keep. Each op's
    // table and key reference sit in one array, so a comparison does not first read the op.
    let mut order: Vec<(Table, &[u8], Reverse<usize>)> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let (table, key) = op.table_key();
            (table, key, Reverse(i))
        })
        .collect();
    order.sort_unstable();
    order.dedup_by(|later, kept| (later.0, later.1) == (kept.0, kept.1));
    let keep: Vec<usize> = order.into_iter().map(|(_, _, Reverse(i))| i).collect();
    let mut slots: Vec<Option<Op>> = ops.into_iter().map(Some).collect();
    keep.into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

/// Opens (creating if absent) the keyspace of every table.
fn all_keyspaces(db: &Database) -> Result<BTreeMap<Table, Keyspace>, fjall::Error> {
    Table::ALL
        .iter()
        .map(|&t| Ok((t, keyspace(db, t)?)))
        .collect()
}

/// The smallest key above every key that starts with `prefix` (`None`: no such key, the
/// prefix is empty or all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The fewest background workers fjall gets: one that flushes and two that compact.
///
/// fjall's first worker never compacts while the pool has others: it hands every compaction
/// request it takes back to the queue. With fjall's default of one worker per CPU (at most
/// four), a 2-CPU machine gets two, so while the second compacts the first spins on that
/// request, taking a CPU from the server. A third worker takes it instead. Measured with
/// `vserv bench ledger --records 10000000` (2 CPUs): durable rputs 25-34% faster and 15-18%
/// less CPU each, rgets unchanged or faster, the same RSS.
const MIN_WORKER_THREADS: usize = 3;

/// The builder of the fjall database at `path`: one worker per CPU, at least
/// [`MIN_WORKER_THREADS`] and at most four (fjall's own cap), and a block cache of
/// `cache_bytes`.
fn database_builder(path: &Path, cache_bytes: u64) -> fjall::DatabaseBuilder<Database> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    Database::builder(path)
        .worker_threads(cpus.clamp(MIN_WORKER_THREADS, 4))
        .cache_size(cache_bytes)
}

/// Opens (creating if absent) the keyspace of `table`.
fn keyspace(db: &Database, table: Table) -> Result<Keyspace, fjall::Error> {
    db.keyspace(table.name(), || keyspace_options(table))
}

/// The in-memory table size of [`Table::LedgerIndex`], [`Table::LedgerCommits`] and
/// [`Table::ReplicaEntries`] (fjall's default, which the other tables keep, is 64 MiB). The
/// keys of the ledger index are largely random (record ids and hashes), so every insert walks
/// a skiplist of scattered nodes and pays a cache miss per level: a smaller memtable keeps
/// that walk short (see [`REPLICAS_MEMTABLE_BYTES`] for the replicas' indexes, which took
/// this size while their entries shared their table). For the ledger index, 64 MiB costs
/// less CPU in flushes and compactions, but the writer's inserts into the larger skiplist take longer,
/// and the writer bounds durable appends: in `vserv bench ledger --records 10000000` it cut
/// the CPU per `rput` by a tenth, yet appended only 1.5% (4 connections) and 4.8% (one)
/// faster, with the writer's CPU per commit up 45% and the peak RSS up 115 MiB.
///
/// [`Table::LedgerCommits`] takes it too (stores created before keep 64 MiB): besides its
/// few small keys per commit it holds the ledger's `hh:`/`hi:` records, tens of bytes per
/// entry, deleted once their index keys are stored; a larger in-memory table holds them,
/// dead, until it fills. With 64 MiB, `vserv bench ledger --ids random --records 2000000`
/// peaked at 436 MiB of RSS, with 16 MiB at 362 MiB, appending as fast.
const INDEX_MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// The in-memory table size of [`Table::Replicas`]: the replicas' record id and hash index
/// keys (random) and their per-commit keys, their entries being in
/// [`Table::ReplicaEntries`]. Measured under saturating live replication (`vserv bench
/// repl`), while the entries shared the table, 16 MiB cut the p50 from entry acknowledged
/// to entry replicated by about a quarter and the p99 to a third against 64 MiB. Without
/// the entries, 16 MiB holds three times as many index keys, and the p99 doubled; 8 MiB
/// holds about as many as before, for the same CPU per entry and a p99 1.14-1.3x the old,
/// and a new peer caught up on a backlog of 5M entries 1.15x faster than with 4 MiB (whose
/// p99 was as before, for 4-12% more CPU per entry in flushes and compactions).
const REPLICAS_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// How many on-disk tables the first level of [`Table::LedgerIndex`] and
/// [`Table::Replicas`] gathers before they are merged into the second. Below 20, where
/// fjall starts to slow writes to the keyspace down (and 30, where it stops them until
/// compaction catches up).
const INDEX_L0_TABLES: u8 = 16;

/// The size of the on-disk tables of [`Table::LedgerIndex`] and [`Table::Replicas`] below
/// the first level.
const INDEX_TABLE_BYTES: u64 = 8 * 1024 * 1024;

/// The leveled compaction of [`Table::LedgerIndex`] and [`Table::Replicas`]:
/// [`INDEX_L0_TABLES`] first-level tables, [`INDEX_TABLE_BYTES`] tables below (fjall's
/// default: 4 and 64 MiB).
///
/// The index keys are random and arrive in bulks of tens of thousands of entries, each one
/// first-level table spanning the whole key space, so every merge into the second level
/// rewrites all of it. That level holds the threshold times the table size: with fjall's
/// default each merge rewrote about ten times the bytes it brought down, and over a bench
/// of 10M entries fjall's flush and compaction workers took 31% of the process's CPU.
/// Sixteen first-level tables over a second level of 128 MiB bring more down at once into
/// less: on a model of the ledger's store workload (10M entries with random record ids,
/// bulks of 65,536 entries) the process's CPU per entry fell from 10.4 to 7.5 µs; `vserv
/// bench ledger --ids random --records 10000000` appended 12% faster on 4 connections and
/// 16% on one, with 13% and 22% less CPU per append, and its rgets were 1% (one
/// connection) and 8% (4) faster. The filters of all tables are kept in memory, so the up
/// to 16 first-level tables a lookup may probe cost it a filter check each; appends of a
/// new record id ask the store nothing (the ledger filters its ids in memory).
///
/// [`Table::Replicas`] takes it too: the replicas' index keys arrive with their entries in
/// every commit, so each of its flushed tables spans the whole table as well. In `vserv
/// bench repl` (two runs) a new peer caught up on a backlog of 1M entries 14-19% faster,
/// and under saturating live replication it spent 14-15% less CPU per entry, with the p99
/// from entry acknowledged to entry replicated halved.
///
/// Stores created before keep fjall's default.
fn index_compaction() -> fjall::compaction::Leveled {
    fjall::compaction::Leveled::default()
        .with_l0_threshold(INDEX_L0_TABLES)
        .with_table_target_size(INDEX_TABLE_BYTES)
}

/// The options of `table`'s keyspace. fjall stores them when it creates the keyspace and
/// reads them back at every later open, so a store created by an older build keeps the
/// options it was created with.
///
/// Every table keeps the filter and index blocks of all its on-disk tables in memory
/// (fjall's default pins them only in the first levels and reads the others through the
/// 32 MiB block cache). A point read that misses, which is what every `rput`'s record id
/// check is, is then answered by an in-memory filter: with the default, a ledger of 10M
/// entries had more filter blocks than the cache holds, so each check read a filter block
/// of megabytes from its file and checksummed it, and durable rputs slowed to a crawl. The
/// cost is memory in proportion to the data: about 10 bits of filter per key and one
/// index entry per data block (4 KiB; [`ENTRY_BLOCK_BYTES`] in the entries' tables).
/// fjall makes one exception: a table written by a bulk ingestion (`commit_bulk`, which
/// writes every table of [`Table::LedgerIndex`]) keeps its blocks in the block cache, not
/// pinned, until the database is opened again. Partitioning that table's filter blocks
/// (4 KiB read through the cache instead of 160 KiB) held a 10M-entry feed in 33 MiB less
/// memory but read by id 0.92x as fast, and its index blocks too 0.84x at 200k entries
/// (`vserv bench --compare`: one round at 10M, three at 200k), so they are left whole.
///
/// The entries' tables ([`Table::Ledger`], and [`Table::ReplicaEntries`] for the replicas)
/// compress their data blocks from their first level on (fjall's default leaves the first
/// uncompressed), in blocks of [`ENTRY_BLOCK_BYTES`]. Their keys only ascend, so compaction
/// moves their flushed tables down the levels instead of rewriting them, and a table
/// written uncompressed would stay so: on a model of the ledger's store workload (3M entries) the
/// table took 562 MiB on disk instead of 1,233 MiB, for the same CPU per entry.
///
/// The entries' table builds no Bloom filters. Its on-disk tables hold disjoint runs of
/// ascending `e:` keys, so a lookup finds the one table that may hold a key by its key
/// range alone; a lookup of an entry of the feed hits, and every other key a lookup may ask
/// of this table (the per-commit and index keys that older stores kept there) sorts after
/// every `e:` key, outside every table's range. Filters would cost CPU at every flush and
/// compaction and about 10 bits of memory per entry (12 MiB at 10M entries) and never
/// save a read. The replicas' entries ascend within each feed (under its feed number): a
/// flush while several feeds are being written spans them all, so a lookup may visit a
/// few first-level tables until compaction merges them, each by its index alone.
///
/// Kept apart from their indexes in [`Table::Replicas`], the replicas' entries are no longer
/// rewritten by the compactions of those random keys: in `vserv bench repl --entries
/// 5000000 --phases catch-up` a new peer caught up 1.25-1.32x faster (two runs: 159k ->
/// 209k and 167k -> 208k entries/s), with the same CPU per entry and p50 under saturating
/// live replication.
fn keyspace_options(table: Table) -> KeyspaceCreateOptions {
    let options = KeyspaceCreateOptions::default()
        .filter_block_pinning_policy(PinningPolicy::all(true))
        .index_block_pinning_policy(PinningPolicy::all(true));
    match table {
        Table::LedgerIndex => options
            .max_memtable_size(INDEX_MEMTABLE_BYTES)
            .compaction_strategy(Arc::new(index_compaction())),
        Table::Replicas => options
            .max_memtable_size(REPLICAS_MEMTABLE_BYTES)
            .compaction_strategy(Arc::new(index_compaction())),
        Table::LedgerCommits => options.max_memtable_size(INDEX_MEMTABLE_BYTES),
        Table::Ledger => entries_options(options),
        Table::ReplicaEntries => entries_options(options).max_memtable_size(INDEX_MEMTABLE_BYTES),
        _ => options,
    }
}

/// The options of an entries' table (see [`keyspace_options`]).
fn entries_options(options: KeyspaceCreateOptions) -> KeyspaceCreateOptions {
    options
        .data_block_compression_policy(CompressionPolicy::all(fjall::CompressionType::Lz4))
        .data_block_size_policy(BlockSizePolicy::all(ENTRY_BLOCK_BYTES))
        .filter_policy(FilterPolicy::disabled())
}

/// The data block size of the entries' tables (fjall's default: 4 KiB). A read by seq of a
/// feed far larger than the block cache misses it and reads, checksums and decompresses a
/// whole block for one entry of a few hundred bytes: on a model of the store (10M entries
/// of 250 bytes, reads spread over all of them) a get took 5.0 µs of CPU with 2 KiB
/// blocks against 6.7 µs with 4 KiB, the data on disk grew 3.5% and the memory by 17 MiB
/// (one index entry per block, pinned); 1 KiB blocks read no faster and took 47 MiB more.
/// In `vserv bench --compare OLD --rounds 1 ledger --records 10000000`: rgets 1.10x on 4
/// connections and 1.15x on one, 13 MiB more RSS, and the offline verify, which reads
/// every block in order, 0.92x (0.96x at 200k entries).
const ENTRY_BLOCK_BYTES: u32 = 2048;

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

/// The schema version in `bytes` if this build opens it, or why not.
fn check_schema(bytes: &[u8], path: &Path) -> Result<u32, StoreError> {
    let Ok(raw) = <[u8; 4]>::try_from(bytes) else {
        return Err(StoreError::Incompatible(format!(
            "{}: the schema marker (meta/schema) is garbled ({} bytes, expected 4); \
             not a store this vserv can read",
            path.display(),
            bytes.len()
        )));
    };
    let version = u32::from_be_bytes(raw);
    if (OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&version) {
        Ok(version)
    } else if version > SCHEMA_VERSION {
        Err(StoreError::Incompatible(format!(
            "{} was written by a newer vserv (store schema version {version}); this vserv \
             opens schema versions {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}: upgrade vserv",
            path.display()
        )))
    } else {
        Err(StoreError::Incompatible(format!(
            "{} has store schema version {version}, older than the oldest this vserv opens \
             ({OLDEST_SCHEMA_VERSION}), and no migration exists",
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
        fjall::Error::JournalRecovery(e) => StoreError::DataLoss(format!(
            "data loss in {}: the journal is damaged ({e:?}) and cannot be recovered. Restore \
             the data directory from a backup",
            path.display()
        )),
        other => StoreError::Backend(format!("opening {}: {other}", path.display())),
    }
}

/// Maps a fjall error from an operation on an open store.
fn backend(what: &str, e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Poisoned => StoreError::Backend(format!(
            "{what}: the database refuses writes after a failed one; the next write reopens it"
        )),
        other => StoreError::Backend(format!("{what}: {other}")),
    }
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> StoreError {
    StoreError::Backend(format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{
        BlockSizePolicy, ENTRY_BLOCK_BYTES, FjallStore, INDEX_L0_TABLES, INDEX_TABLE_BYTES,
        prefix_end,
    };
    use crate::kv::Table;

    /// The leveled compaction settings `table`'s keyspace runs with in `store`: its
    /// first-level table count and its table size.
    fn compaction_of(store: &FjallStore, table: Table) -> (u8, u64) {
        let config = store
            .with_open(|open| {
                Ok(open
                    .keyspace(table)?
                    .config
                    .compaction_strategy
                    .get_config())
            })
            .unwrap();
        let value = |name: &str| {
            config
                .iter()
                .find(|(key, _)| &**key == name.as_bytes())
                .map(|(_, value)| value.to_vec())
                .unwrap()
        };
        let l0 = value("leveled_l0_threshold");
        let size = value("leveled_target_size");
        (
            l0[0],
            u64::from_le_bytes(size.as_slice().try_into().unwrap()),
        )
    }

    #[test]
    fn tables_keep_their_compaction_and_block_size_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let ours = (INDEX_L0_TABLES, INDEX_TABLE_BYTES);
        let fjalls = (4, 64 * 1024 * 1024);
        for _open in 0..2 {
            let store = FjallStore::open(dir.path()).unwrap();
            assert_eq!(compaction_of(&store, Table::LedgerIndex), ours);
            assert_eq!(compaction_of(&store, Table::Replicas), ours);
            assert_eq!(compaction_of(&store, Table::Ledger), fjalls);
            assert_eq!(compaction_of(&store, Table::LedgerCommits), fjalls);
            assert_eq!(compaction_of(&store, Table::ReplicaEntries), fjalls);
            for (table, bytes) in [
                (Table::Ledger, ENTRY_BLOCK_BYTES),
                (Table::ReplicaEntries, ENTRY_BLOCK_BYTES),
                (Table::LedgerIndex, 4096),
            ] {
                let policy = store
                    .with_open(|open| {
                        Ok(open.keyspace(table)?.config.data_block_size_policy.clone())
                    })
                    .unwrap();
                assert_eq!(policy, BlockSizePolicy::all(bytes), "{}", table.name());
            }
        }
    }

    #[test]
    fn prefix_end_is_the_first_key_past_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"e:"), Some(b"e;".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
