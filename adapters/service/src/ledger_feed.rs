//! [`Feed`]: one feed held in the store, read through its [`FeedKeys`], whether it is the
//! server's own feed or a replica of another server's: the head and the point lookups here,
//! the pages, counts and re-verification in `ledger_query.rs`. Every query the server
//! answers (`rget`, `rlist`, `rhead`, ...) is a method of [`Feed`], so it works on any held
//! feed.

use std::sync::Arc;

use vserv_core::ServerKey;
use vserv_core::ledger::{Entry, SignedHead};
use vserv_store::kv::Store;

use crate::ledger_ids::IdFilter;
use crate::ledger_index_tail::IndexTail;
use crate::ledger_layout::{
    FeedError, FeedKeys, FeedNumber, Spans, seq_of_hash, seq_of_id, stored_head,
};

/// A readable feed: the store, where the feed's keys are, and the feed's origin key (every
/// stored entry and head must carry it). Cheap to clone; safe to use from many threads.
/// A `Feed` is a view: it holds nothing of the feed itself, so it always reads what is
/// stored now.
#[derive(Clone)]
pub struct Feed {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: FeedKeys,
    pub(crate) origin: ServerKey,
    /// The own feed's entries whose index keys are not stored yet, when this view is the
    /// [`crate::ledger::Ledger`]'s (`ledger_index_tail.rs`).
    pub(crate) index_tail: Option<Arc<IndexTail>>,
    /// The ledger's filter of the own feed's record ids (`ledger_ids.rs`), with its tail: a
    /// lookup of an id it rules out reads nothing from the store.
    pub(crate) id_filter: Option<Arc<IdFilter>>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("origin", &self.origin.fingerprint())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// The server's own feed (key `origin`) in `store`, whose keys are `keys` (the own
    /// feed's as the store has them, `ledger_layout.rs`), as stored: lookups by hash and by
    /// record id and the check see only the index keys already stored, not the entries of
    /// the last commits whose keys trail (`ledger_index_tail.rs`);
    /// [`crate::ledger::Ledger::feed`] sees those too. For reads by seq, heads and ranges
    /// the two are the same.
    pub(crate) fn own(store: Arc<dyn Store>, origin: ServerKey, keys: FeedKeys) -> Feed {
        Feed {
            store,
            keys,
            origin,
            index_tail: None,
            id_filter: None,
        }
    }

    /// This view with the ledger's index tail and record id filter.
    pub(crate) fn with_index_tail(self, tail: Arc<IndexTail>, ids: Arc<IdFilter>) -> Feed {
        Feed {
            index_tail: Some(tail),
            id_filter: Some(ids),
            ..self
        }
    }

    /// The replica of `origin`'s feed in `store`, kept under feed `number` (number 0, never
    /// given, reads as an empty feed).
    pub fn replica(store: Arc<dyn Store>, origin: ServerKey, number: FeedNumber) -> Feed {
        Feed {
            store,
            keys: FeedKeys::replica(number),
            origin,
            index_tail: None,
            id_filter: None,
        }
    }

    /// The key of the server whose feed this is.
    pub fn origin(&self) -> ServerKey {
        self.origin
    }

    /// Where the feed's keys are.
    pub fn keys(&self) -> FeedKeys {
        self.keys
    }

    /// The stored signed head, or `None` for an empty feed (or a replica not held).
    pub fn head(&self) -> Result<Option<SignedHead>, FeedError> {
        stored_head(self.store.as_ref(), &self.keys)
    }

    /// How many entries the feed holds (the seq of its head).
    pub fn size(&self) -> Result<u64, FeedError> {
        Ok(self.head()?.map_or(0, |h| h.head.seq))
    }

    /// The seq of the entry with `record_id`, if stored. A ledger's view whose index tail
    /// could not be rebuilt at open answers a miss with that error (the entry may be stored
    /// but not indexed). A ledger's view answers an id its built record id filter rules out
    /// at once, without asking the index spans.
    pub fn seq_of_id(&self, record_id: &[u8]) -> Result<Option<u64>, FeedError> {
        let filter = self.trusted_filter();
        if filter
            .and_then(IdFilter::lookup)
            .is_some_and(|lookup| lookup.surely_absent(record_id))
        {
            return Ok(None);
        }
        self.indexed_seq(
            |tail| tail.seq_of_id(record_id),
            || {
                // Asked after the tail missed: every span the id's key may be in.
                let spans = filter
                    .and_then(IdFilter::lookup)
                    .map(|lookup| lookup.spans_maybe_holding(record_id));
                let spans = spans.as_deref().map_or(Spans::UpToHead, Spans::Only);
                seq_of_id(self.store.as_ref(), &self.keys, record_id, spans)
            },
        )
    }

    /// The seq of the entry with hash `hash`, if stored. A ledger's view whose index tail
    /// could not be rebuilt at open answers a miss with that error (the entry may be stored
    /// but not indexed). A ledger's view with its filter built asks only the spans its
    /// masks name (`ledger_ids.rs`).
    pub fn seq_of_hash(&self, hash: &[u8; 32]) -> Result<Option<u64>, FeedError> {
        self.indexed_seq(
            |tail| tail.seq_of_hash(hash),
            || {
                let spans = self
                    .trusted_filter()
                    .and_then(IdFilter::lookup)
                    .map(|lookup| lookup.spans_maybe_holding_hash(hash));
                let spans = spans.as_deref().map_or(Spans::UpToHead, Spans::Only);
                seq_of_hash(self.store.as_ref(), &self.keys, hash, spans)
            },
        )
    }

    /// The ledger's record id filter, for a view whose index tail was rebuilt whole (the
    /// filter's build starts from the tail).
    fn trusted_filter(&self) -> Option<&IdFilter> {
        let complete = self
            .index_tail
            .as_ref()
            .is_some_and(|t| t.incomplete().is_none());
        self.id_filter.as_deref().filter(|_| complete)
    }

    /// A lookup in one of the feed's indexes: in the ledger's index tail first (a key
    /// leaves it only once stored), then in the store; a miss that a tail which could not
    /// be rebuilt cannot vouch for is that tail's error.
    fn indexed_seq(
        &self,
        in_tail: impl FnOnce(&IndexTail) -> Option<u64>,
        in_store: impl FnOnce() -> Result<Option<u64>, FeedError>,
    ) -> Result<Option<u64>, FeedError> {
        let Some(tail) = &self.index_tail else {
            return in_store();
        };
        if let Some(seq) = in_tail(tail) {
            return Ok(Some(seq));
        }
        match in_store()? {
            Some(seq) => Ok(Some(seq)),
            None => tail.incomplete().map_or(Ok(None), Err),
        }
    }

    /// Entry `seq`, if stored; an entry that does not decode as one of this feed's origin is
    /// [`FeedError::Corrupt`].
    pub fn by_seq(&self, seq: u64) -> Result<Option<Entry>, FeedError> {
        match self
            .store
            .get(self.keys.entry_table(), &self.keys.entry(seq))?
        {
            Some(bytes) => Entry::decode_from(&bytes, &self.origin)
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
}
