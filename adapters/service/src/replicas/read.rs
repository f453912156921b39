//! The reads replication makes of any held feed: the hash held at a seq, and segments of a
//! feed cut at its stored signed heads (the own feed and replicas alike).

use vserv_core::ServerKey;
use vserv_core::ledger::{Entry, SignedHead, hash_encoded};

use super::{ReplicaError, Replicas};
use crate::ledger::{Feed, FeedError, MAX_SEGMENT_ENTRIES};
use crate::ledger_layout::scan_commit_keys;

/// Entries read per store page while a segment is read.
const SEGMENT_PAGE: usize = 256;

/// A run of consecutive entries of one feed that ends at a signed head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The entries, consecutive seqs, ascending; never empty.
    pub entries: Vec<Entry>,
    /// The origin's signed head of the last entry.
    pub head: SignedHead,
}

impl Replicas {
    /// The hash of entry `seq` of `origin`'s feed (own or replica), if it is held.
    pub fn held_hash(
        &self,
        origin: &ServerKey,
        seq: u64,
    ) -> Result<Option<[u8; 32]>, ReplicaError> {
        let feed = self.feed(*origin)?;
        Ok(self
            .store
            .get(feed.keys.entry_table(), &feed.keys.entry(seq))?
            .map(|bytes| hash_encoded(&bytes)))
    }

    /// The next segment of `origin`'s feed (own or replica) from `from_seq` (0 counts as 1),
    /// with the signed head it ends at: the entries from `from_seq` up to the first signed
    /// head stored at or after the entry with which their encodings reach `max_bytes` in
    /// total (the feed's head if they never do), but never more than
    /// [`MAX_SEGMENT_ENTRIES`] entries: when that head is further, the segment ends at the
    /// last signed head stored within them. Every commit stores its signed head and takes at
    /// most [`MAX_SEGMENT_ENTRIES`] records, so such a head always exists, and a segment
    /// always holds at least one entry. (A feed written before signed heads were stored per
    /// commit has only the one of its head: its segment then runs to the head, however
    /// long.) `None` when `from_seq` is past the head or no feed of `origin` is held.
    pub fn read_segment(
        &self,
        origin: &ServerKey,
        from_seq: u64,
        max_bytes: usize,
    ) -> Result<Option<Segment>, ReplicaError> {
        let feed = self.feed(*origin)?;
        let Some(last) = feed.head()? else {
            return Ok(None);
        };
        let from = from_seq.max(1);
        if from > last.head.seq {
            return Ok(None);
        }
        let cap = u64::try_from(MAX_SEGMENT_ENTRIES).unwrap_or(u64::MAX);
        let limit = from.saturating_add(cap - 1).min(last.head.seq);
        let mut reader = EntryReader::new(&feed, from);
        // Read up to where the byte budget is reached (at least one entry), at most to
        // `limit`.
        let mut bytes = 0usize;
        while reader.next <= limit && (reader.next == from || bytes < max_bytes) {
            bytes = bytes.saturating_add(reader.read_one()?);
        }
        let reached = reader.next.saturating_sub(1);
        let end = match first_signed_from(&feed, &last, reached)? {
            Some(signed) if signed.head.seq <= limit => signed,
            later => match last_signed_within(&feed, &last, from, reached)? {
                Some(signed) => signed,
                // Only a feed without per-commit heads gets here: run to its next head.
                None => later.unwrap_or(last),
            },
        };
        while reader.next <= end.head.seq {
            reader.read_one()?;
        }
        let mut entries = reader.entries;
        let len = end.head.seq.saturating_sub(from).saturating_add(1);
        entries.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        match entries.last() {
            Some(entry) if entry.hash() == end.head.hash && entry.seq() == end.head.seq => {
                Ok(Some(Segment { entries, head: end }))
            }
            _ => Err(FeedError::Corrupt(format!(
                "the signed head of seq {} does not sign the stored entry",
                end.head.seq
            ))
            .into()),
        }
    }
}

/// Reads a feed's entries in seq order, a store page at a time.
struct EntryReader<'a> {
    feed: &'a Feed,
    prefix: Vec<u8>,
    /// The seq of the next entry to read.
    next: u64,
    /// Read from the store, not yet taken: the entries from `next` on, encoded.
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    entries: Vec<Entry>,
}

impl<'a> EntryReader<'a> {
    fn new(feed: &'a Feed, from: u64) -> Self {
        EntryReader {
            feed,
            prefix: feed.keys.entries(),
            next: from,
            page: Vec::new().into_iter(),
            entries: Vec::new(),
        }
    }

    /// Reads entry `next` and returns its encoded length.
    fn read_one(&mut self) -> Result<usize, ReplicaError> {
        let seq = self.next;
        let (key, value) = match self.page.next() {
            Some(row) => row,
            None => {
                let rows = self.feed.store.scan_from(
                    self.feed.keys.entry_table(),
                    &self.prefix,
                    &self.feed.keys.entry(seq),
                    SEGMENT_PAGE,
                )?;
                self.page = rows.into_iter();
                self.page.next().ok_or_else(|| missing(seq))?
            }
        };
        if key != self.feed.keys.entry(seq) {
            return Err(missing(seq));
        }
        let entry = Entry::decode_from(&value, &self.feed.origin)
            .map_err(|e| FeedError::Corrupt(format!("entry {seq}: {e}")))?;
        self.entries.push(entry);
        self.next = seq.checked_add(1).ok_or(FeedError::Full)?;
        Ok(value.len())
    }
}

fn missing(seq: u64) -> ReplicaError {
    FeedError::Corrupt(format!("entry {seq} is missing below the feed's head")).into()
}

/// The first signed head stored at a seq `>= seq` (per commit, or the feed's head `last`).
fn first_signed_from(
    feed: &Feed,
    last: &SignedHead,
    seq: u64,
) -> Result<Option<SignedHead>, ReplicaError> {
    let rows = scan_commit_keys(
        feed.store.as_ref(),
        &feed.keys,
        &feed.keys.signed_heads(),
        &feed.keys.signed_head(seq),
        1,
    )?;
    match rows.into_iter().next() {
        Some((key, value)) => Ok(Some(stored_signed(feed, &key, &value)?)),
        None => Ok((last.head.seq >= seq).then_some(*last)),
    }
}

/// The last signed head stored at a seq in `from..=to` (per commit, or the feed's head
/// `last`), walking the per-commit heads of that range a page at a time.
fn last_signed_within(
    feed: &Feed,
    last: &SignedHead,
    from: u64,
    to: u64,
) -> Result<Option<SignedHead>, ReplicaError> {
    if (from..=to).contains(&last.head.seq) {
        return Ok(Some(*last));
    }
    let prefix = feed.keys.signed_heads();
    let end = feed.keys.signed_head(to);
    let mut start = feed.keys.signed_head(from);
    let mut found = None;
    loop {
        let rows = scan_commit_keys(
            feed.store.as_ref(),
            &feed.keys,
            &prefix,
            &start,
            SEGMENT_PAGE,
        )?;
        let full = rows.len() == SEGMENT_PAGE;
        for (key, value) in rows {
            if key > end {
                return Ok(found);
            }
            found = Some(stored_signed(feed, &key, &value)?);
            start = [key.as_slice(), &[0]].concat();
        }
        if !full {
            return Ok(found);
        }
    }
}

/// A per-commit signed head read from the store, checked to be the one its key names.
fn stored_signed(feed: &Feed, key: &[u8], value: &[u8]) -> Result<SignedHead, ReplicaError> {
    let signed = SignedHead::decode(value)
        .map_err(|e| FeedError::Corrupt(format!("a per-commit signed head: {e}")))?;
    if key != feed.keys.signed_head(signed.head.seq) || signed.head.origin != feed.origin {
        return Err(FeedError::Corrupt(format!(
            "the per-commit signed head of seq {} is stored under another key or origin",
            signed.head.seq
        ))
        .into());
    }
    Ok(signed)
}
