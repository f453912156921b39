//! The clients' side of a ledger crash test: what they know about the records they sent
//! (acknowledged, refused as already stored, or unknown because the answer was lost), and
//! the checks a server's feed must pass against that knowledge after every restart.
//!
//! Written once for the two crash tests: the simulator's (over the store's crash model) and
//! the CLI's (killing a real server process). Each reads the feed its own way and hands the
//! entries here.

use std::collections::{BTreeMap, BTreeSet};

use vserv_core::ledger::{Entry, ZERO_HASH};

/// How one `rput` ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Answered `Appended` at this seq with this entry hash.
    Appended(u64, [u8; 32]),
    /// Answered `Conflict`: the record id is already stored.
    Conflict,
    /// No answer (the connection or the server died) or a failure answer.
    Unknown,
}

/// What the clients know about the records they sent; see the module docs.
#[derive(Debug, Default)]
pub struct LedgerModel {
    /// Every record id ever sent, with its body.
    pub sent: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Acknowledged appends: record id -> (seq, hash).
    pub acked: BTreeMap<Vec<u8>, (u64, [u8; 32])>,
    /// Retried records answered with `Conflict`: they must be in the feed.
    pub conflicted: BTreeSet<Vec<u8>>,
    /// Records whose fate is unknown: to be retried after the next restart.
    pub unknown: BTreeSet<Vec<u8>>,
    /// Entry hashes of seq 1.. as the last verification saw them: durable, so every later
    /// feed must start with exactly these.
    pub durable: Vec<[u8; 32]>,
    /// How many answers were lost so far (records made unknown).
    pub lost: usize,
}

impl LedgerModel {
    /// Records that `record_id` was sent with `body`. Refused if it was sent before with
    /// another body (a test that retries must resend the same record).
    pub fn send(&mut self, record_id: &[u8], body: &[u8]) -> Result<(), String> {
        match self.sent.insert(record_id.to_vec(), body.to_vec()) {
            Some(before) if before != body => Err(format!(
                "{} was sent with two bodies",
                String::from_utf8_lossy(record_id)
            )),
            _ => Ok(()),
        }
    }

    /// Files the `fate` of an `rput` of `record_id`. Refused: a record acknowledged twice,
    /// acknowledged after a `Conflict`, or answered `Conflict` on its first sending (only a
    /// retried record can already be stored).
    pub fn file(&mut self, record_id: &[u8], fate: Fate) -> Result<(), String> {
        let shown = String::from_utf8_lossy(record_id).into_owned();
        match fate {
            Fate::Appended(seq, hash) => {
                if let Some(before) = self.acked.insert(record_id.to_vec(), (seq, hash)) {
                    return Err(format!(
                        "{shown} acknowledged twice: at {before:?} and at seq {seq}"
                    ));
                }
                if self.conflicted.contains(record_id) {
                    return Err(format!("{shown} acknowledged after a Conflict"));
                }
                self.unknown.remove(record_id);
            }
            Fate::Conflict => {
                if !self.unknown.remove(record_id) {
                    return Err(format!("the first rput of {shown} got Conflict"));
                }
                self.conflicted.insert(record_id.to_vec());
            }
            Fate::Unknown => {
                if !self.acked.contains_key(record_id) && !self.conflicted.contains(record_id) {
                    self.unknown.insert(record_id.to_vec());
                    self.lost += 1;
                }
            }
        }
        Ok(())
    }

    /// Checks a restarted server's feed: `entries` are its entries of seq 1, 2, ... in order
    /// (the whole feed), and `by_id` looks a record id up through the server's id index
    /// (its seq and hash, or `None`). The feed must be one gapless chain of records that
    /// were sent, each with its body and stored once; keep every entry seen durable before;
    /// hold every acknowledged record where it was acknowledged and every `Conflict`ed one;
    /// and its id index must agree with the entries for every record ever sent (present or
    /// absent, never half-present). On success the feed becomes the new durable prefix.
    pub fn verify(
        &mut self,
        entries: &[Entry],
        mut by_id: impl FnMut(&[u8]) -> Result<Option<(u64, [u8; 32])>, String>,
    ) -> Result<(), String> {
        let size = entries.len();
        let mut ids: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut hashes: Vec<[u8; 32]> = Vec::with_capacity(size);
        let mut prev = ZERO_HASH;
        for (seq, entry) in (1u64..).zip(entries) {
            if entry.seq() != seq || *entry.prev() != prev {
                return Err(format!("entry {seq} is not linked into the chain"));
            }
            prev = entry.hash();
            let id = entry.record_id().to_vec();
            let shown = String::from_utf8_lossy(&id).into_owned();
            match self.sent.get(&id) {
                Some(body) if body.as_slice() == entry.body() => {}
                Some(_) => return Err(format!("entry {seq} ({shown}) has a wrong body")),
                None => return Err(format!("entry {seq} ({shown}) was never sent")),
            }
            if let Some(first) = ids.insert(id, seq) {
                return Err(format!("{shown} stored twice: at {first} and {seq}"));
            }
            hashes.push(prev);
        }
        if hashes.get(..self.durable.len()) != Some(self.durable.as_slice()) {
            return Err(format!(
                "entries seen before were lost or changed ({} before, {} now)",
                self.durable.len(),
                hashes.len()
            ));
        }
        let listed = |id: &[u8]| {
            ids.get(id).map(|&seq| {
                let at = usize::try_from(seq - 1).unwrap_or(usize::MAX);
                (seq, hashes.get(at).copied().unwrap_or_default())
            })
        };
        for (id, &acked) in &self.acked {
            if listed(id) != Some(acked) {
                return Err(format!(
                    "acknowledged {} at {acked:?}, the feed has it at {:?}",
                    String::from_utf8_lossy(id),
                    listed(id)
                ));
            }
        }
        for id in &self.conflicted {
            if !ids.contains_key(id) {
                return Err(format!(
                    "{} got Conflict but is not in the feed",
                    String::from_utf8_lossy(id)
                ));
            }
        }
        for id in self.sent.keys() {
            let found = by_id(id)?;
            if found != listed(id) {
                return Err(format!(
                    "record {}: the id index finds {found:?}, the feed has it at {:?}",
                    String::from_utf8_lossy(id),
                    listed(id)
                ));
            }
        }
        self.durable = hashes;
        Ok(())
    }
}
