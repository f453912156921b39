//! The server's own ledger feed over the [`Store`]: appends, lookups and full re-verification.
//!
//! # Layout in [`Table::Ledger`]
//!
//! | key | value |
//! |---|---|
//! | `e:` + seq (`u64` big-endian) | the entry's canonical encoding (`spec/ledger.md` §1) |
//! | `id:` + record id | seq (`u64` big-endian) of the entry with that record id |
//! | `h:` + entry hash (32 bytes) | seq (`u64` big-endian) of the entry with that hash |
//! | `k:` + kind + `0x00` + seq (`u64` big-endian) | empty: the kind index |
//! | `kc:` + kind | number of entries of that kind (`u64` big-endian) |
//! | `head` | the [`SignedHead`] encoding of the last entry |
//!
//! (Kinds never contain `0x00`, so `k:` + kind + `0x00` is a prefix of exactly that kind's
//! index keys.) Every append writes all these keys in one atomic, durable commit, so a crash leaves either
//! the whole entry (with its indexes and the new signed head) or nothing. The stored head is
//! authoritative for the feed's size.
//!
//! Appends are serialised by a lock and each one is its own commit (one fsync and one head
//! signature per entry). Group commit — several concurrent appends sharing one batch, one
//! fsync and one head signature — is a later step.

use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::ServerIdentity;
use vserv_core::ledger::{
    ChainVerifier, Entry, EntryFields, Head, LedgerError, SignedHead, ZERO_HASH, check_append,
};
use vserv_store::kv::{Op, Store, StoreError, Table};

/// Key of the signed head.
pub const HEAD_KEY: &[u8] = b"head";
/// Prefix of entry keys (followed by the seq, `u64` big-endian).
pub const ENTRY_PREFIX: &[u8] = b"e:";
/// Prefix of the record id index.
pub const ID_PREFIX: &[u8] = b"id:";
/// Prefix of the entry hash index.
pub const HASH_PREFIX: &[u8] = b"h:";

/// Prefix of the kind index.
pub const KIND_PREFIX: &[u8] = b"k:";
/// Prefix of the per-kind entry counters.
pub const KIND_COUNT_PREFIX: &[u8] = b"kc:";

/// The prefix of every kind index key of `kind` (followed by the seq, `u64` big-endian).
pub fn kind_prefix(kind: &str) -> Vec<u8> {
    [KIND_PREFIX, kind.as_bytes(), &[0]].concat()
}

/// The kind index key of entry `seq` of `kind`.
pub fn kind_key(kind: &str, seq: u64) -> Vec<u8> {
    [kind_prefix(kind).as_slice(), &seq.to_be_bytes()].concat()
}

/// The store key of the entry counter of `kind`.
pub fn kind_count_key(kind: &str) -> Vec<u8> {
    [KIND_COUNT_PREFIX, kind.as_bytes()].concat()
}

/// The store key of entry `seq`.
pub fn entry_key(seq: u64) -> Vec<u8> {
    [ENTRY_PREFIX, &seq.to_be_bytes()].concat()
}

/// The store key of the record id index entry for `record_id`.
pub fn id_key(record_id: &[u8]) -> Vec<u8> {
    [ID_PREFIX, record_id].concat()
}

/// The store key of the hash index entry for `hash`.
pub fn hash_key(hash: &[u8; 32]) -> Vec<u8> {
    [HASH_PREFIX, hash.as_slice()].concat()
}

/// Why a ledger operation failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The entry breaks a field rule (kind, record id, author, body size).
    #[error(transparent)]
    Invalid(LedgerError),
    /// A record with this id is already in the feed, at `seq`; it was not stored again.
    #[error("duplicate record id: already stored at seq {seq}")]
    Duplicate {
        /// Where the record with that id is.
        seq: u64,
    },
    /// The seq counter would overflow.
    #[error("the ledger is full (seq overflow)")]
    Full,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored ledger data could not be decoded.
    #[error("stored ledger data is corrupt: {0}")]
    Corrupt(String),
}

/// The result of [`Ledger::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckReport {
    /// Every entry `1..=seq` verified, and the stored signed head covers entry `seq`.
    Ok {
        /// The verified head's seq (0 for an empty ledger).
        seq: u64,
    },
    /// The first fault found.
    Bad {
        /// The first bad seq, when the fault is about an entry.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
}

/// The server's feed. Share it with an `Arc`; every method is safe to call from many
/// threads.
pub struct Ledger {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) identity: Arc<ServerIdentity>,
    /// Serialises appends (read head, write entry + head).
    write: Mutex<()>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.identity.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

pub(crate) fn seq_value(bytes: &[u8], what: &str) -> Result<u64, FeedError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| FeedError::Corrupt(format!("{what} index value is not a seq")))
}

impl Ledger {
    /// The feed of `identity` (the server key, which signs heads) kept in `store`.
    pub fn new(store: Arc<dyn Store>, identity: Arc<ServerIdentity>) -> Ledger {
        Ledger {
            store,
            identity,
            write: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored signed head, or `None` for an empty feed.
    pub fn head(&self) -> Result<Option<SignedHead>, FeedError> {
        match self.store.get(Table::Ledger, HEAD_KEY)? {
            Some(bytes) => SignedHead::decode(&bytes)
                .map(Some)
                .map_err(|e| FeedError::Corrupt(format!("head: {e}"))),
            None => Ok(None),
        }
    }

    /// How many entries the feed holds (the seq of its head).
    pub fn size(&self) -> Result<u64, FeedError> {
        Ok(self.head()?.map_or(0, |h| h.head.seq))
    }

    /// Appends a record by `author` and returns its seq and entry hash. The entry, its two
    /// index keys and the new signed head are one atomic, durable commit.
    ///
    /// # Errors
    ///
    /// [`FeedError::Duplicate`] if `record_id` is already stored (nothing is written),
    /// [`FeedError::Invalid`] if a field breaks its rule, [`FeedError::Store`] if the commit
    /// failed (nothing was written).
    pub fn append(
        &self,
        author: &str,
        kind: &str,
        record_id: &[u8],
        body: &[u8],
        now_ms: u64,
    ) -> Result<(u64, [u8; 32]), FeedError> {
        let _guard = self.lock();
        if let Some(seq) = self.seq_of_id(record_id)? {
            return Err(FeedError::Duplicate { seq });
        }
        let head = self.head()?.map(|h| h.head);
        let (seq, prev) = match &head {
            Some(h) => (h.seq.checked_add(1).ok_or(FeedError::Full)?, h.hash),
            None => (1, ZERO_HASH),
        };
        let entry = Entry::new(EntryFields {
            origin: self.identity.public_key(),
            seq,
            prev,
            timestamp: now_ms,
            author: author.to_owned(),
            kind: kind.to_owned(),
            record_id: record_id.to_vec(),
            body: body.to_vec(),
        })
        .map_err(FeedError::Invalid)?;
        check_append(head.as_ref(), &entry)
            .map_err(|e| FeedError::Corrupt(format!("stored head refuses the next entry: {e}")))?;
        let hash = entry.hash();
        let signed = SignedHead::sign(&self.identity, Head::of(&entry));
        let seq_bytes = seq.to_be_bytes().to_vec();
        let kind_count = match self.store.get(Table::Ledger, &kind_count_key(kind))? {
            Some(v) => seq_value(&v, "kind count")?,
            None => 0,
        };
        let put = |key: Vec<u8>, value: Vec<u8>| Op::Put {
            table: Table::Ledger,
            key,
            value,
        };
        self.store.commit(vec![
            put(entry_key(seq), entry.to_bytes()),
            put(id_key(record_id), seq_bytes.clone()),
            put(hash_key(&hash), seq_bytes),
            put(kind_key(kind, seq), Vec::new()),
            put(
                kind_count_key(kind),
                kind_count.saturating_add(1).to_be_bytes().to_vec(),
            ),
            put(HEAD_KEY.to_vec(), signed.to_bytes().to_vec()),
        ])?;
        Ok((seq, hash))
    }

    /// The seq of the entry with `record_id`, if stored.
    pub fn seq_of_id(&self, record_id: &[u8]) -> Result<Option<u64>, FeedError> {
        self.store
            .get(Table::Ledger, &id_key(record_id))?
            .map(|v| seq_value(&v, "record id"))
            .transpose()
    }

    /// The seq of the entry with hash `hash`, if stored.
    pub fn seq_of_hash(&self, hash: &[u8; 32]) -> Result<Option<u64>, FeedError> {
        self.store
            .get(Table::Ledger, &hash_key(hash))?
            .map(|v| seq_value(&v, "hash"))
            .transpose()
    }

    /// Entry `seq`, if stored.
    pub fn by_seq(&self, seq: u64) -> Result<Option<Entry>, FeedError> {
        match self.store.get(Table::Ledger, &entry_key(seq))? {
            Some(bytes) => Entry::decode(&bytes)
                .map(Some)
                .map_err(|e| FeedError::Corrupt(format!("entry {seq}: {e}"))),
            None => Ok(None),
        }
    }

    /// The entry with `record_id`, if stored.
    pub fn by_id(&self, record_id: &[u8]) -> Result<Option<Entry>, FeedError> {
        match self.seq_of_id(record_id)? {
            Some(seq) => self.by_seq(seq),
            None => Ok(None),
        }
    }

    /// The entry with hash `hash`, if stored.
    pub fn by_hash(&self, hash: &[u8; 32]) -> Result<Option<Entry>, FeedError> {
        match self.seq_of_hash(hash)? {
            Some(seq) => self.by_seq(seq),
            None => Ok(None),
        }
    }

    /// Re-verifies the whole stored feed: every entry decodes, links to the one before it
    /// and is found under its hash in the hash index; entries are stored under their own seq
    /// without gaps; the stored head is validly signed by this server and matches the last
    /// entry. Reports the first bad seq. A store failure is an error, not a report.
    ///
    /// Reads the whole feed into memory at once (a streaming scan is a later step).
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let bad = |e: LedgerError| CheckReport::Bad {
            seq: e.seq(),
            reason: e.to_string(),
        };
        let mut verifier = ChainVerifier::new(self.identity.public_key());
        if let Some(bytes) = self.store.get(Table::Ledger, HEAD_KEY)? {
            let signed = match SignedHead::decode(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    return Ok(CheckReport::Bad {
                        seq: None,
                        reason: format!("the stored head is undecodable: {e}"),
                    });
                }
            };
            if let Err(e) = verifier.push_head(&signed) {
                return Ok(bad(e));
            }
        }
        let entries = self.store.scan(Table::Ledger, ENTRY_PREFIX)?;
        for (position, (key, value)) in (1u64..).zip(entries) {
            if key != entry_key(position) {
                return Ok(CheckReport::Bad {
                    seq: Some(position),
                    reason: format!("entry {position} is missing or stored under a wrong key"),
                });
            }
            let hash = match verifier.push_encoded(&value) {
                Ok(hash) => hash,
                Err(e) => return Ok(bad(e)),
            };
            let indexed = self.store.get(Table::Ledger, &hash_key(&hash))?;
            if indexed.as_deref() != Some(position.to_be_bytes().as_slice()) {
                return Ok(CheckReport::Bad {
                    seq: Some(position),
                    reason: format!(
                        "entry {position} is not indexed under its hash (was it changed?)"
                    ),
                });
            }
        }
        Ok(match verifier.finish_signed() {
            Ok(head) => CheckReport::Ok { seq: head.seq },
            Err(e) => bad(e),
        })
    }
}
