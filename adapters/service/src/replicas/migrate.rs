//! Moving replicas kept in an older layout to the current one, once, when the node opens:
//! from the layout before feed numbers (every key after the origin's 33 bytes) to feed
//! numbers (every key after `0x00` and the origin's feed number), and then the entries
//! (the `e:` keys) of every feed from [`Table::Replicas`] to [`Table::ReplicaEntries`]
//! (stores of schema 5 and older keep them beside the indexes).
//!
//! Each step is one atomic batch: first the origin's `o:` key and the feed count, then
//! chunks that each put keys in their new place and delete the same keys in the old one.
//! A crash between steps leaves some keys moved and some not; the next open finds the
//! origin's number already given and moves the rest. Nothing is read through the old
//! keys, so a replica half moved is only ever seen by this module.

use vserv_core::ServerKey;
use vserv_core::wire::POINT_LEN;
use vserv_store::kv::{Op, Store, StoreError, Table};

use super::layout::{FEED_COUNT_KEY, ORIGIN_INDEX_PREFIX, ORIGIN_LEADS, origin_index_key};
use super::{ReplicaError, Replicas, number_value};
use crate::ledger::{FeedError, FeedKeys};
use crate::ledger_layout::stored_head;

/// Keys moved per batch.
const CHUNK: usize = 8192;

/// Moves every replica kept in the old layout under a feed number; returns how many keys
/// moved (0 for a store already in the current layout).
pub(super) fn to_feed_numbers(replicas: &Replicas) -> Result<u64, ReplicaError> {
    let _writer = replicas.writer();
    let store = replicas.store.as_ref();
    let mut moved = 0u64;
    for lead in ORIGIN_LEADS {
        while let Some((key, _)) = store
            .scan_from(Table::Replicas, &[lead], &[lead], 1)?
            .into_iter()
            .next()
        {
            let origin = key
                .get(..POINT_LEN)
                .and_then(|b| ServerKey::from_bytes(b).ok())
                .ok_or_else(|| {
                    FeedError::Corrupt("an old replica key does not start with an origin".into())
                })?;
            let number = match replicas.number(&origin)? {
                Some(number) => number,
                None => {
                    let mut given = None;
                    let number = replicas.next_number(&mut given)?;
                    store.commit(vec![
                        Op::Put {
                            table: Table::Replicas,
                            key: origin_index_key(&origin),
                            value: number.to_be_bytes().to_vec(),
                        },
                        Op::Put {
                            table: Table::Replicas,
                            key: FEED_COUNT_KEY.to_vec(),
                            value: number.to_be_bytes().to_vec(),
                        },
                    ])?;
                    replicas.remember(&origin, number);
                    number
                }
            };
            let prefix = FeedKeys::replica(number).prefix().to_vec();
            moved += move_keys(store, origin.as_bytes(), |key| {
                let rest = key.get(POINT_LEN..).unwrap_or_default();
                (Table::Replicas, [prefix.as_slice(), rest].concat())
            })?;
        }
    }
    if moved > 0 {
        tracing::info!(keys = moved, "moved replicas to the feed-number layout");
    }
    Ok(moved)
}

/// Moves the entries of every replica still in [`Table::Replicas`] (a store of schema 5 or
/// older) to [`Table::ReplicaEntries`], [`CHUNK`] per atomic batch; returns how many moved
/// (0 for a store already in the current layout, found with one short scan per feed).
pub(super) fn entries_to_their_table(replicas: &Replicas) -> Result<u64, ReplicaError> {
    let _writer = replicas.writer();
    let store = replicas.store.as_ref();
    let mut moved = 0u64;
    for (_, value) in store.scan(Table::Replicas, ORIGIN_INDEX_PREFIX)? {
        let number = number_value(&value, "feed number")?;
        let keys = FeedKeys::replica(number);
        let entries = keys.entries();
        if store
            .scan_from(Table::Replicas, &entries, &entries, 1)?
            .is_empty()
        {
            continue;
        }
        // A large replica takes a while (about 2.5 s per million entries measured): say so
        // before, so that a starting server is not taken for a hung one.
        let size = stored_head(store, &keys)?.map_or(0, |signed| signed.head.seq);
        tracing::info!(
            feed = number,
            entries = size,
            "moving a replica's entries to their own table (once, after an upgrade)"
        );
        moved += move_keys(store, &entries, |key| (keys.entry_table(), key.to_vec()))?;
    }
    if moved > 0 {
        tracing::info!(
            entries = moved,
            "moved the replicas' entries to their own table"
        );
    }
    Ok(moved)
}

/// Moves every key of [`Table::Replicas`] that starts with `prefix` to the table and key
/// `place` gives it, [`CHUNK`] keys per atomic batch; returns how many moved. Each page
/// starts after the last key moved, not at the prefix, so that no scan walks over the
/// deletions of the pages before it.
fn move_keys(
    store: &dyn Store,
    prefix: &[u8],
    place: impl Fn(&[u8]) -> (Table, Vec<u8>),
) -> Result<u64, StoreError> {
    let mut moved = 0;
    let mut start = prefix.to_vec();
    loop {
        let rows = store.scan_from(Table::Replicas, prefix, &start, CHUNK)?;
        let Some((last, _)) = rows.last() else {
            return Ok(moved);
        };
        start = [last.as_slice(), &[0]].concat();
        let mut ops = Vec::with_capacity(rows.len() * 2);
        for (key, value) in rows {
            let (table, new_key) = place(&key);
            ops.push(Op::Put {
                table,
                key: new_key,
                value,
            });
            ops.push(Op::Delete {
                table: Table::Replicas,
                key,
            });
            moved += 1;
        }
        store.commit(ops)?;
    }
}
