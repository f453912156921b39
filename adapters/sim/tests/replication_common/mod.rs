//! What the replication tests share: the topologies servers link up in and the records
//! they append.

use vserv_service::ledger::NewRecord;

/// How the servers of a world link up.
#[derive(Debug, Clone, Copy)]
pub enum Topology {
    /// Each server dials the one before it.
    Line,
    /// Each server dials the next, the last the first.
    Ring,
    /// Each server dials every server before it.
    Mesh,
}

impl Topology {
    /// Whether server `i` dials server `j` (of `n`).
    pub fn dials(self, i: usize, j: usize, n: usize) -> bool {
        match self {
            Topology::Line => j + 1 == i,
            Topology::Ring => n > 1 && (i + 1) % n == j && i != j,
            Topology::Mesh => j < i,
        }
    }
}

/// `n` records for a feed, numbered from `from`, with ids unique to `tag`.
pub fn records(tag: &str, from: usize, n: usize) -> Vec<NewRecord> {
    (from..from + n)
        .map(|i| NewRecord {
            author: "alice".into(),
            kind: "note".into(),
            record_id: format!("{tag}-{i}").into_bytes(),
            body: format!("record {i} of {tag}").into_bytes(),
            timestamp: 1_700_000_000_000,
        })
        .collect()
}
