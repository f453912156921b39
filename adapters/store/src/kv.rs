//! The storage interface the service builds on, with two implementations in this crate:
//! fjall on disk ([`crate::db`]) and an in-memory model with crashes for the simulator
//! ([`crate::memory`]). (It lives here rather than in `vserv-service` because the service
//! already depends on this crate for the client's known_servers; a trait there would make a
//! dependency cycle.)
//!
//! A deliberately small key-value contract: named tables, point reads, prefix scans (whole or
//! paged), and
//! atomic, durable batches. Records are encoded by the service, so implementations stay
//! trivial and interchangeable.

/// The tables of a vserv store. Keys within a table are ordered bytewise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Store metadata (schema version, store id).
    Meta,
    /// User accounts, keyed by normalised user name.
    Users,
    /// Login backoff state, keyed by `u:<user>` or `ip:<address>`.
    Limits,
    /// The server's ledger feed's entries (the record id and hash indexes are in
    /// [`Table::LedgerIndex`], the head, signed heads and kind index in
    /// [`Table::LedgerCommits`]; a feed written before those tables existed has its older
    /// keys of theirs here; layout in `vserv_service::ledger_layout`). Its keys that start
    /// with `e:` are entry keys, `e:` and a seq (`u64` big-endian): a batch writing another
    /// is refused. The fjall store keeps a flat copy of them (`crate::flat_entries`).
    Ledger,
    /// Replicas of other servers' feeds, every key but their entries (which are in
    /// [`Table::ReplicaEntries`]), each under its feed number, plus the origin and
    /// fingerprint indexes, the fork proofs of quarantined origins and the added peers
    /// (layout in `vserv_service::replicas`).
    Replicas,
    /// Users' published message keys and their mailboxes of sealed messages (layout in
    /// `vserv_service::messages`).
    Messages,
    /// Users' transit keys, each version's material encrypted under the master key (layout
    /// in `vserv_service::transit`).
    Transit,
    /// The server's own feed's record id and entry hash indexes (layout in
    /// `vserv_service::ledger_layout`): random keys, kept apart from the entries so that the
    /// entries' sequential keys are never rewritten by the indexes' compactions.
    LedgerIndex,
    /// The server's own feed's keys written once per commit: its head, the signed head of
    /// every commit, the kind index and the kind counts (layout in
    /// `vserv_service::ledger_layout`): kept apart from the entries so that the entries'
    /// table holds sequential keys only, which compaction moves instead of rewriting.
    LedgerCommits,
    /// The entries of the replicas of other servers' feeds (each feed's keys under its feed
    /// number, layout in `vserv_service::ledger_layout`): kept apart from their indexes in
    /// [`Table::Replicas`] so that the indexes' compactions never rewrite entries, whose keys
    /// arrive in order within each feed.
    ReplicaEntries,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 10] = [
        Table::Meta,
        Table::Users,
        Table::Limits,
        Table::Ledger,
        Table::Replicas,
        Table::Messages,
        Table::Transit,
        Table::LedgerIndex,
        Table::LedgerCommits,
        Table::ReplicaEntries,
    ];

    /// The table's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Users => "users",
            Table::Limits => "limits",
            Table::Ledger => "ledger",
            Table::Replicas => "replicas",
            Table::Messages => "messages",
            Table::Transit => "transit",
            Table::LedgerIndex => "ledger-index",
            Table::LedgerCommits => "ledger-commits",
            Table::ReplicaEntries => "replica-entries",
        }
    }
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// Table written.
        table: Table,
        /// Key.
        key: Vec<u8>,
        /// New value.
        value: Vec<u8>,
    },
    /// Removes `key` (absent keys are fine).
    Delete {
        /// Table written.
        table: Table,
        /// Key.
        key: Vec<u8>,
    },
}

impl Op {
    /// The table and key the op writes. A batch keeps only its last op of each; the fjall
    /// store applies a batch in this order, so a batch already sorted by it (strictly
    /// increasing) is the cheapest to commit.
    pub fn table_key(&self) -> (Table, &[u8]) {
        match self {
            Op::Put { table, key, .. } | Op::Delete { table, key } => (*table, key),
        }
    }
}

/// A storage failure. The operation had no effect unless stated otherwise.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying storage failed (I/O, corruption, a poisoned database).
    #[error("storage failure: {0}")]
    Backend(String),
    /// The data directory is held by another process (a running server).
    #[error("the data directory {0} is in use by another process (is the server running?)")]
    Locked(String),
    /// The data directory was written by a newer vserv, or is not a vserv store.
    #[error("{0}")]
    Incompatible(String),
    /// The store lost data it had acknowledged (a damaged or deleted journal or database file),
    /// found by comparing it with the data directory's mark: the message says what is missing
    /// and how to recover.
    #[error("{0}")]
    DataLoss(String),
    /// A simulated crash happened (in-memory store only): nothing of the batch was applied.
    #[error("simulated crash")]
    Crashed,
}

/// What the service needs of storage. Every method is safe to call from many threads.
pub trait Store: Send + Sync {
    /// The value of `key` in `table`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// The value of the first of `keys`, in their order, that `table` holds (`None` when it
    /// holds none of them). The fjall and memory stores read them all in one view of the
    /// store, for less than a [`Store::get`] each; this default asks `get` for each.
    fn get_first(&self, table: Table, keys: &[Vec<u8>]) -> Result<Option<Vec<u8>>, StoreError> {
        for key in keys {
            if let Some(value) = self.get(table, key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// One page of a prefix scan: the `(key, value)` pairs whose key starts with `prefix` and
    /// is `>= start` (a `start` that sorts before `prefix` begins at `prefix`), in key order,
    /// at most `limit` of them. To read the next page, pass the last key returned followed by
    /// one `0x00` byte (the smallest key after it) as `start`. Each page is read from one
    /// consistent snapshot; pages may see different snapshots.
    fn scan_from(
        &self,
        table: Table,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// Applies every op, all or nothing, and returns only once the batch is durable (it
    /// survives a process or machine crash). An error means nothing was applied. Of several
    /// ops on one (table, key), the last wins.
    fn commit(&self, ops: Vec<Op>) -> Result<(), StoreError>;

    /// [`Store::commit`] for a large batch, with the same guarantees (all or nothing,
    /// durable on return, the last op of a key wins). A batch whose ops all write one table
    /// in strictly increasing key order may be written straight into the store's files
    /// rather than through its log, which costs far less for tens of thousands of keys; any
    /// other batch is committed as it is. Either way it counts as one commit of the
    /// store's generation (see the fjall store's docs).
    fn commit_bulk(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.commit(ops)
    }
}

/// Whether `ops` all write one table in strictly increasing key order.
pub fn sorted_in_one_table(ops: &[Op]) -> bool {
    let table = ops.first().map(|op| op.table_key().0);
    ops.iter().all(|op| Some(op.table_key().0) == table)
        && ops.is_sorted_by(|a, b| a.table_key().1 < b.table_key().1)
}
