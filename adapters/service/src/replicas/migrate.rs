//! Moving replicas from the layout before feed numbers (every key after the origin's 33
//! bytes) to the current one (every key after `0x00` and the origin's feed number), once,
//! when the node opens.
//!
//! Each step is one atomic batch: first the origin's `o:` key and the feed count, then
//! chunks that each put keys under the feed number and delete the same keys under the
//! origin. A crash between steps leaves some keys moved and some not; the next open finds
//! the origin's number already given and moves the rest. Nothing is read through the old
//! keys, so a replica half moved is only ever seen by this module.

use vserv_core::ServerKey;
use vserv_core::wire::POINT_LEN;
use vserv_store::kv::{Op, Table};

use super::layout::{FEED_COUNT_KEY, ORIGIN_LEADS, origin_index_key};
use super::{ReplicaError, Replicas};
use crate::ledger::{FeedError, FeedKeys};

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
            let old = origin.as_bytes().as_slice();
            loop {
                let rows = store.scan_from(Table::Replicas, old, old, CHUNK)?;
                if rows.is_empty() {
                    break;
                }
                let mut ops = Vec::with_capacity(rows.len() * 2);
                for (key, value) in rows {
                    let rest = key.get(POINT_LEN..).unwrap_or_default();
                    ops.push(Op::Put {
                        table: Table::Replicas,
                        key: [prefix.as_slice(), rest].concat(),
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
    }
    if moved > 0 {
        tracing::info!(keys = moved, "moved replicas to the feed-number layout");
    }
    Ok(moved)
}
