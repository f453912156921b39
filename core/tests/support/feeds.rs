//! A small generator of signed feeds for the replication tests: identities from a seeded RNG,
//! feeds appended in commits (each ending in a signed head, as a server stores them), segments
//! cut at any seq, and forks (a second chain of the same origin that diverges at a chosen seq).

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vserv_core::ServerIdentity;
use vserv_core::ledger::{Entry, EntryFields, Head, SignedHead};
use vserv_core::replication::Segment;

/// A server identity drawn from a generator seeded with `seed`.
pub fn identity(seed: u64) -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::generate(&mut StdRng::seed_from_u64(seed)))
}

/// One feed of one origin: its entries (seq `i + 1` at index `i`) and the signed heads stored
/// at its commits.
#[derive(Debug, Clone)]
pub struct Feed {
    pub id: Arc<ServerIdentity>,
    pub entries: Vec<Entry>,
    pub heads: BTreeMap<u64, SignedHead>,
    /// Mixed into every body, so two feeds of one origin built with different salts differ.
    pub salt: u64,
}

impl Feed {
    /// An empty feed of `id`.
    pub fn new(id: Arc<ServerIdentity>, salt: u64) -> Self {
        Feed {
            id,
            entries: Vec::new(),
            heads: BTreeMap::new(),
            salt,
        }
    }

    /// A feed with commits of the given sizes.
    pub fn with_commits(id: Arc<ServerIdentity>, salt: u64, commits: &[usize]) -> Self {
        let mut f = Feed::new(id, salt);
        for &n in commits {
            f.commit(n);
        }
        f
    }

    /// The last seq (0 when empty).
    pub fn seq(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The head of the feed.
    pub fn head(&self) -> Head {
        match self.entries.last() {
            Some(e) => Head::of(e),
            None => Head::empty(self.id.public_key()),
        }
    }

    /// Appends one entry whose body depends on the salt and the seq (not signed yet).
    pub fn append(&mut self) -> &Entry {
        let head = self.head();
        let seq = head.seq + 1;
        let entry = Entry::new(EntryFields {
            origin: self.id.public_key(),
            seq,
            prev: head.hash,
            timestamp: 1_700_000_000_000 + seq,
            author: "alice".into(),
            kind: "note.v1".into(),
            record_id: format!("r{}-{seq}", self.salt).into_bytes(),
            body: format!(
                "body {} {seq} {}",
                self.salt,
                "x".repeat((seq % 7) as usize)
            )
            .into_bytes(),
        })
        .expect("valid entry");
        self.entries.push(entry);
        self.entries.last().expect("just pushed")
    }

    /// Appends `n` entries and signs the new head (one commit); returns that signed head.
    pub fn commit(&mut self, n: usize) -> SignedHead {
        for _ in 0..n {
            self.append();
        }
        let sh = SignedHead::sign(&self.id, self.head());
        self.heads.insert(sh.head.seq, sh);
        sh
    }

    /// The signed head at `seq` (a stored one, or signed now).
    pub fn signed_at(&self, seq: u64) -> SignedHead {
        self.heads.get(&seq).copied().unwrap_or_else(|| {
            let e = &self.entries[seq as usize - 1];
            SignedHead::sign(&self.id, Head::of(e))
        })
    }

    /// The newest signed head.
    pub fn signed_head(&self) -> Option<SignedHead> {
        self.heads.values().next_back().copied()
    }

    /// Entries `from..=to`.
    pub fn range(&self, from: u64, to: u64) -> Vec<Entry> {
        self.entries[from as usize - 1..to as usize].to_vec()
    }

    /// The segment `from..=to`, ended by the signed head at `to`.
    pub fn segment(&self, from: u64, to: u64) -> Segment {
        Segment::new(self.range(from, to), self.signed_at(to)).expect("valid segment")
    }

    /// A second chain of the same origin: entries `1..k` shared, then `len - k + 1` others
    /// (salted with `salt`), signed at its end.
    pub fn fork_at(&self, k: u64, len: u64, salt: u64) -> Feed {
        let mut f = Feed::new(self.id.clone(), salt);
        f.entries = self.entries[..k as usize - 1].to_vec();
        f.heads = self.heads.range(..k).map(|(s, h)| (*s, *h)).collect();
        let more = (len + 1 - k) as usize;
        f.commit(more);
        f
    }
}
