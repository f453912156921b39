//! Signed heads for own feeds written before every commit kept one: replication cuts a feed
//! into segments at its stored signed heads (`sh:` + seq), and a receiver holds at most
//! [`MAX_SEGMENT_ENTRIES`] entries of a segment, so an older feed gets a signed head every
//! [`MAX_SEGMENT_ENTRIES`] entries wherever its stored ones are further apart.

use vserv_core::ledger::{Head, SignedHead, hash_encoded};
use vserv_store::kv::Op;

use crate::ledger::{FeedKeys, Ledger, MAX_SEGMENT_ENTRIES, SIGNED_HEAD_PREFIX};
use crate::ledger_layout::{FeedError, scan_commit_keys};

/// Signed heads written per store commit.
const HEADS_PER_COMMIT: usize = 256;

/// Per-commit signed head keys read per store page.
const KEY_PAGE: usize = 1024;

impl Ledger {
    /// Makes sure no more than [`MAX_SEGMENT_ENTRIES`] entries of the feed, up to its head
    /// as of the call, lie between two stored signed heads (or before the first): where they
    /// do, signs the head of every [`MAX_SEGMENT_ENTRIES`]-th entry after the last stored one
    /// and stores it under `sh:` + seq. Returns how many heads it added (0 for a feed whose
    /// every commit kept its head). Safe while the feed is appended to (it writes only keys
    /// of entries already stored, which no commit writes); each store commit it makes is
    /// durable, so an interrupted run is finished by the next.
    pub fn sign_segment_heads(&self) -> Result<u64, FeedError> {
        let Some(last) = self.head()? else {
            return Ok(0);
        };
        let keys = FeedKeys::OWN;
        let step = u64::try_from(MAX_SEGMENT_ENTRIES).unwrap_or(u64::MAX);
        let mut ops = Vec::new();
        let mut added = 0u64;
        // The seq of the last signed head met (0: the start of the feed).
        let mut signed_at = 0u64;
        let mut start = keys.signed_head(1);
        loop {
            let rows = scan_commit_keys(
                self.store.as_ref(),
                &keys,
                SIGNED_HEAD_PREFIX,
                &start,
                KEY_PAGE,
            )?;
            let full = rows.len() == KEY_PAGE;
            let mut seqs = Vec::with_capacity(rows.len());
            for (key, _) in &rows {
                let seq = key
                    .get(SIGNED_HEAD_PREFIX.len()..)
                    .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| FeedError::Corrupt("a signed head key has no seq".into()))?;
                seqs.push(seq);
            }
            if let Some((key, _)) = rows.last() {
                start = [key.as_slice(), &[0]].concat();
            }
            for seq in seqs.into_iter().filter(|&s| s <= last.head.seq) {
                added += self.fill(signed_at, seq, step, &mut ops)?;
                signed_at = seq;
            }
            if !full {
                break;
            }
        }
        added += self.fill(signed_at, last.head.seq, step, &mut ops)?;
        if !ops.is_empty() {
            self.store.commit(ops)?;
        }
        Ok(added)
    }

    /// Adds to `ops` a signed head every `step` entries after `from` while the next signed
    /// head (at `to`) is more than `step` entries further; commits them in batches. Returns
    /// how many it added.
    fn fill(&self, from: u64, to: u64, step: u64, ops: &mut Vec<Op>) -> Result<u64, FeedError> {
        let mut at = from;
        let mut added = 0;
        while to.saturating_sub(at) > step {
            at += step;
            let bytes = self
                .store
                .get(FeedKeys::OWN.entry_table(), &FeedKeys::OWN.entry(at))?
                .ok_or_else(|| {
                    FeedError::Corrupt(format!("entry {at} is missing below the head"))
                })?;
            let head = Head {
                origin: self.identity.public_key(),
                seq: at,
                hash: hash_encoded(&bytes),
            };
            let signed = SignedHead::sign(&self.identity, head);
            ops.push(Op::Put {
                table: FeedKeys::OWN.commit_table(),
                key: FeedKeys::OWN.signed_head(at),
                value: signed.to_bytes().to_vec(),
            });
            added += 1;
            if ops.len() >= HEADS_PER_COMMIT {
                self.store.commit(std::mem::take(ops))?;
            }
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;
    use vserv_core::ServerIdentity;
    use vserv_store::kv::Store;
    use vserv_store::memory::MemoryStore;

    use super::*;
    use crate::ledger::NewRecord;
    use crate::replicas::Replicas;

    fn records(ids: std::ops::RangeInclusive<u64>) -> Vec<NewRecord> {
        ids.map(|i| NewRecord {
            author: "alice".to_owned(),
            kind: "note".to_owned(),
            record_id: format!("r{i}").into_bytes(),
            body: b"x".to_vec(),
            timestamp: i,
        })
        .collect()
    }

    fn signed_seqs(store: &MemoryStore) -> Vec<u64> {
        scan_commit_keys(store, &FeedKeys::OWN, SIGNED_HEAD_PREFIX, b"", usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(key, _)| u64::from_be_bytes(key[SIGNED_HEAD_PREFIX.len()..].try_into().unwrap()))
            .collect()
    }

    /// Segment ends of the whole feed, read with a 1-byte budget.
    fn segment_ends(replicas: &Replicas) -> Vec<u64> {
        let mut ends = Vec::new();
        let own = replicas.own();
        while let Some(s) = replicas
            .read_segment(&own, ends.last().map_or(1, |e| e + 1), 1)
            .unwrap()
        {
            ends.push(s.head.head.seq);
        }
        ends
    }

    #[test]
    fn an_older_feed_gets_a_signed_head_every_segment_and_is_cut_there() {
        let store = MemoryStore::new();
        let id = Arc::new(ServerIdentity::generate(
            &mut rand::rngs::StdRng::seed_from_u64(4),
        ));
        let ledger = Ledger::new(Arc::new(store.clone()), id.clone());
        let replicas = Replicas::new(Arc::new(store.clone()), id.public_key());
        let step = MAX_SEGMENT_ENTRIES as u64;
        let n = 2 * step + 100;
        assert!(
            ledger
                .append_batch(records(1..=n))
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(ledger.sign_segment_heads().unwrap(), 0);
        // As an older build left it: no per-commit heads, one commit of n entries.
        let old: Vec<Op> = signed_seqs(&store)
            .into_iter()
            .map(|seq| Op::Delete {
                table: FeedKeys::OWN.commit_table(),
                key: FeedKeys::OWN.signed_head(seq),
            })
            .collect();
        store.commit(old).unwrap();
        assert_eq!(segment_ends(&replicas), [n]);
        assert_eq!(ledger.sign_segment_heads().unwrap(), 2);
        assert_eq!(signed_seqs(&store), [step, 2 * step]);
        assert_eq!(segment_ends(&replicas), [step, 2 * step, n]);
        // Idempotent; later commits keep their own heads, gaps between stored heads are
        // filled wherever they are.
        assert_eq!(ledger.sign_segment_heads().unwrap(), 0);
        store
            .commit(vec![Op::Delete {
                table: FeedKeys::OWN.commit_table(),
                key: FeedKeys::OWN.signed_head(step),
            }])
            .unwrap();
        assert!(
            ledger
                .append_batch(records(n + 1..=n + 3))
                .iter()
                .all(Result::is_ok)
        );
        assert_eq!(ledger.sign_segment_heads().unwrap(), 1);
        assert_eq!(signed_seqs(&store), [step, 2 * step, n + 3]);
        assert_eq!(
            ledger.check().unwrap(),
            crate::ledger::CheckReport::Ok { seq: n + 3 }
        );
    }
}
