//! [`MemoryStore`]: the [`Store`] in memory, with a crash model, for the deterministic
//! simulator and for tests.
//!
//! State is one `BTreeMap` per [`Table`] behind a mutex; a commit applies a whole batch under
//! the lock, so it is atomic and readers never see part of it. No clocks, no randomness: the
//! same calls always give the same results.
//!
//! # Crash model
//!
//! Every commit of the real store is durable when it returns, so a crash can only lose the
//! commit that was in flight: a batch either happened entirely or not at all.
//! [`MemoryStore::crash_after_commits`]`(n)` arms a fault: the next `n` commit calls proceed,
//! the one after fails with [`StoreError::Crashed`] and applies nothing, and the store is
//! *down*: every call fails with [`StoreError::Crashed`] until [`MemoryStore::restart`], which
//! brings it back with exactly the batches committed before the crash.
//! [`MemoryStore::crash_now`] takes it down between two commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::db::{GENERATION_KEY, SCHEMA_KEY, SCHEMA_VERSION, STORE_ID_KEY};
use crate::kv::{Op, Store, StoreError, Table};
use crate::validate_ops;

/// The contents of one table: keys to values, in key order.
pub type TableContents = BTreeMap<Vec<u8>, Vec<u8>>;

/// An in-memory [`Store`] with a crash model (see the [module docs](self)).
///
/// Guarantees: commits are atomic (all ops or none) and, while the store is up, immediately
/// visible to every handle; after a crash, [`MemoryStore::restart`] restores exactly the
/// batches whose commit returned `Ok`. Fully deterministic.
///
/// `Clone` gives another handle to the *same* store (like cloning a database handle: a crash
/// or restart through one handle is seen by all); [`MemoryStore::snapshot`] gives an
/// independent copy.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    store_id: [u8; 16],
}

#[derive(Debug, Clone)]
struct State {
    tables: BTreeMap<Table, TableContents>,
    /// `Some(n)`: `n` more commit calls succeed, the next one crashes.
    fault: Option<u64>,
    down: bool,
    /// Commits fail (and apply nothing) while set: a full disk.
    disk_full: bool,
    commits: u64,
}

impl Default for MemoryStore {
    /// Same as [`MemoryStore::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A new store holding what a freshly created [`crate::FjallStore`] holds: in
    /// [`Table::Meta`], `schema` = [`SCHEMA_VERSION`] (`u32` big-endian), `store-id` = 16
    /// zero bytes and `generation` = 1 (bumped by every batch that writes, as on disk). Up, no
    /// fault armed.
    pub fn new() -> Self {
        Self::with_store_id([0; 16])
    }

    /// Like [`MemoryStore::new`] with the given store id (a simulator can give each node its
    /// own, derived from its seed).
    pub fn with_store_id(store_id: [u8; 16]) -> Self {
        let mut meta = TableContents::new();
        meta.insert(SCHEMA_KEY.to_vec(), SCHEMA_VERSION.to_be_bytes().to_vec());
        meta.insert(STORE_ID_KEY.to_vec(), store_id.to_vec());
        meta.insert(GENERATION_KEY.to_vec(), 1u64.to_be_bytes().to_vec());
        let mut tables: BTreeMap<Table, TableContents> = Table::ALL
            .iter()
            .map(|t| (*t, TableContents::new()))
            .collect();
        tables.insert(Table::Meta, meta);
        MemoryStore {
            state: Arc::new(Mutex::new(State {
                tables,
                fault: None,
                down: false,
                disk_full: false,
                commits: 0,
            })),
            store_id,
        }
    }

    /// The store id given at construction; stable across crashes and restarts.
    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    /// Arms a crash: the next `n` commit calls proceed normally (whatever their outcome), and
    /// the `(n+1)`-th fails with [`StoreError::Crashed`], applies nothing, and takes the store
    /// down. Replaces any previously armed crash. Arming while down is allowed; the count
    /// starts with the first commit after [`MemoryStore::restart`].
    pub fn crash_after_commits(&self, n: u64) {
        let _ = self.with_state(|s| s.fault = Some(n));
    }

    /// Takes the store down now (a crash between two commits): every call fails with
    /// [`StoreError::Crashed`] until [`MemoryStore::restart`]. Disarms any armed crash.
    pub fn crash_now(&self) {
        let _ = self.with_state(|s| {
            s.down = true;
            s.fault = None;
        });
    }

    /// Returns the store to service (a restarted process reopening its data): it holds exactly
    /// the batches committed before the crash. Disarms any armed crash (it belonged to the
    /// process that died). Harmless when the store is up.
    pub fn restart(&self) {
        let _ = self.with_state(|s| {
            s.down = false;
            s.fault = None;
        });
    }

    /// Models a full disk: while `full`, every commit fails with [`StoreError::Backend`] and
    /// applies nothing; reads keep working. Clearing it is space being freed.
    pub fn set_disk_full(&self, full: bool) {
        let _ = self.with_state(|s| s.disk_full = full);
    }

    /// Whether the store is down (crashed and not yet restarted).
    pub fn is_down(&self) -> bool {
        self.with_state(|s| s.down).unwrap_or(true)
    }

    /// How many commits have succeeded (returned `Ok`) since the store was created.
    pub fn commit_count(&self) -> u64 {
        self.with_state(|s| s.commits).unwrap_or_default()
    }

    /// An independent copy of the durable contents: up, no fault armed, commit count kept.
    /// Later changes to either store do not affect the other.
    pub fn snapshot(&self) -> Result<MemoryStore, StoreError> {
        let mut copy = self.with_state(|s| s.clone())?;
        copy.down = false;
        copy.fault = None;
        Ok(MemoryStore {
            state: Arc::new(Mutex::new(copy)),
            store_id: self.store_id,
        })
    }

    /// Every table's durable contents, for inspection by tests; works while the store is down
    /// (it shows what a restart will bring back).
    pub fn contents(&self) -> Result<BTreeMap<Table, TableContents>, StoreError> {
        self.with_state(|s| s.tables.clone())
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        // The lock is never held across code that can panic, so poisoning means a bug.
        self.state
            .lock()
            .map_err(|_| StoreError::Backend("in-memory store mutex poisoned".into()))
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        Ok(f(&mut *self.lock()?))
    }

    /// Locks the state for a data operation, failing if the store is down.
    fn lock_up(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self.lock()?;
        if state.down {
            return Err(StoreError::Crashed);
        }
        Ok(state)
    }
}

impl Store for MemoryStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let state = self.lock_up()?;
        Ok(state.tables.get(&table).and_then(|t| t.get(key)).cloned())
    }

    fn get_first(&self, table: Table, keys: &[Vec<u8>]) -> Result<Option<Vec<u8>>, StoreError> {
        let state = self.lock_up()?;
        let Some(contents) = state.tables.get(&table) else {
            return Ok(None);
        };
        Ok(keys.iter().find_map(|key| contents.get(key)).cloned())
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let state = self.lock_up()?;
        let Some(contents) = state.tables.get(&table) else {
            return Ok(Vec::new());
        };
        Ok(contents
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let state = self.lock_up()?;
        let Some(contents) = state.tables.get(&table) else {
            return Ok(Vec::new());
        };
        Ok(contents
            .range::<[u8], _>((
                std::ops::Bound::Included(start.max(prefix)),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut state = self.lock_up()?;
        match state.fault {
            Some(0) => {
                state.fault = None;
                state.down = true;
                return Err(StoreError::Crashed);
            }
            Some(n) => state.fault = Some(n - 1),
            None => {}
        }
        if state.disk_full {
            return Err(StoreError::Backend(
                "commit: no space left on device".into(),
            ));
        }
        // Validate everything first: past this point nothing can fail, so the batch is
        // applied entirely.
        validate_ops(&ops)?;
        let writes = !ops.is_empty();
        let generation = state
            .tables
            .get(&Table::Meta)
            .and_then(|meta| meta.get(GENERATION_KEY))
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        for op in ops {
            match op {
                Op::Put { table, key, value } => {
                    state.tables.entry(table).or_default().insert(key, value);
                }
                Op::Delete { table, key } => {
                    state.tables.entry(table).or_default().remove(&key);
                }
            }
        }
        if writes {
            // Like the fjall store, every batch that writes bumps the generation.
            state.tables.entry(Table::Meta).or_default().insert(
                GENERATION_KEY.to_vec(),
                (generation + 1).to_be_bytes().to_vec(),
            );
        }
        state.commits += 1;
        Ok(())
    }
}
