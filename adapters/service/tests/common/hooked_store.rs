//! A memory store with hooks, for tests that watch or disturb what the service asks of it.

use vserv_store::kv::{Op, Store, StoreError, Table};
use vserv_store::memory::MemoryStore;

/// A [`MemoryStore`] that runs `before_commit` at the start of each commit (which fails if
/// it does) and `on_get` before each point read (told the read's table).
pub struct HookedStore<C, G = fn(Table)> {
    pub inner: MemoryStore,
    pub before_commit: C,
    pub on_get: G,
}

/// An `on_get` hook that does nothing.
pub fn any_get(_: Table) {}

impl<C, G> Store for HookedStore<C, G>
where
    C: Fn() -> Result<(), StoreError> + Send + Sync,
    G: Fn(Table) + Send + Sync,
{
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (self.on_get)(table);
        self.inner.get(table, key)
    }
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan(table, prefix)
    }
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan_from(table, prefix, start, limit)
    }
    fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        (self.before_commit)()?;
        self.inner.commit(ops)
    }
}
