//! Read-side queries of a [`Feed`] (the own feed or a replica alike): entries by position,
//! per-kind sizes and counts, pages of entries by seq, and the streaming re-verification of
//! the whole feed or of a range.
//!
//! Everything that walks the feed reads it through [`Store::scan_from`](vserv_store::kv::Store::scan_from)
//! in bounded pages, so no query holds more than one page of the feed in memory, however
//! long the feed is. Pages are read from different snapshots; each query's answer is still
//! consistent because entries are never changed once written and paging is by seq.

use std::sync::Arc;

use vserv_core::commands::RLIST_ENTRY_BUDGET;
use vserv_core::ledger::{
    ChainVerifier, Entry, Head, LedgerError, SignedHead, ZERO_HASH, hash_encoded,
};
use vserv_store::kv::{Store, StoreError};

use crate::ledger::CheckReport;
use crate::ledger_feed::Feed;
use crate::ledger_layout::{
    FeedError, FeedKeys, Rows, commit_value, hash_index_value, kind_runs, scan_commit_keys,
    seq_value,
};

/// Entries read per store page by [`Feed::check_range`], which reports progress after each.
pub const CHECK_PAGE: usize = 1024;

/// Entries read per store page when listing every kind (an entry is up to 16 KiB).
const LIST_PAGE: usize = 16;

/// Kind index records read per store page (each names one commit's entries of the kind: an
/// empty value for a single entry, at most a few KiB of runs for more).
const INDEX_PAGE: usize = 128;

/// One page of entries in seq order, as `rlist` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, ascending by seq.
    pub entries: Vec<Entry>,
    /// The seq of the first matching entry that did not fit (pass it as the next page's
    /// `from`); `None` when the range holds no further match.
    pub next: Option<u64>,
}

/// Which keys of a feed a [`Pager`] walks: they live in different tables.
#[derive(Clone, Copy)]
enum Keys {
    /// `e:` keys, in the entries' table.
    Entries,
    /// Per-commit keys (`k:`), in the commit table and the legacy one.
    Commits,
}

/// Pages through the keys of one prefix, in key order, up to a last key (inclusive).
struct Pager {
    store: Arc<dyn Store>,
    feed_keys: FeedKeys,
    keys: Keys,
    prefix: Vec<u8>,
    /// Where the next page starts; `None` once the walk is over.
    start: Option<Vec<u8>>,
    last: Vec<u8>,
    page: usize,
}

impl Pager {
    fn new(
        feed: &Feed,
        keys: Keys,
        prefix: &[u8],
        start: Vec<u8>,
        last: Vec<u8>,
        page: usize,
    ) -> Self {
        Pager {
            store: Arc::clone(&feed.store),
            feed_keys: feed.keys,
            keys,
            prefix: prefix.to_vec(),
            start: Some(start),
            last,
            page: page.max(1),
        }
    }

    /// The next non-empty page, or `None` when the walk is over.
    fn next_page(&mut self) -> Result<Option<Rows>, StoreError> {
        let Some(start) = self.start.take() else {
            return Ok(None);
        };
        let (store, keys) = (self.store.as_ref(), &self.feed_keys);
        let mut rows = match self.keys {
            Keys::Entries => {
                store.scan_from(keys.entry_table(), &self.prefix, &start, self.page)?
            }
            Keys::Commits => scan_commit_keys(store, keys, &self.prefix, &start, self.page)?,
        };
        let full = rows.len() == self.page;
        let before = rows.len();
        rows.retain(|(key, _)| *key <= self.last);
        if full
            && rows.len() == before
            && let Some((key, _)) = rows.last()
        {
            // The smallest key after the last one read.
            self.start = Some([key.as_slice(), &[0]].concat());
        }
        Ok((!rows.is_empty()).then_some(rows))
    }
}

/// The stored entries of a seq range, [`CHECK_PAGE`] at a time as the store holds them
/// (key, encoded entry), for [`Feed::check_pages`]: made by [`Feed::entry_pages`]. It owns
/// its handle on the store, so a caller can read the pages on one thread while another
/// checks them.
pub struct EntryPages(Pager);

impl Iterator for EntryPages {
    type Item = Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// The next non-empty page; after an error, none.
    fn next(&mut self) -> Option<Self::Item> {
        let page = self.0.next_page();
        if page.is_err() {
            self.0.start = None;
        }
        page.transpose()
    }
}

/// The seq at the end of a key made of `prefix_len` bytes and a `u64` big-endian.
fn key_seq(key: &[u8], prefix_len: usize) -> Result<u64, FeedError> {
    key.get(prefix_len..)
        .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| FeedError::Corrupt("a ledger key does not end with a seq".into()))
}

/// Fills one [`Page`] within a LIMIT and the byte budget of one response record.
struct PageBuilder {
    page: Page,
    budget: usize,
    limit: usize,
}

impl PageBuilder {
    fn new(limit: usize) -> Self {
        PageBuilder {
            page: Page {
                entries: Vec::new(),
                next: None,
            },
            budget: RLIST_ENTRY_BUDGET,
            limit: limit.max(1),
        }
    }

    /// Whether the page already holds LIMIT entries; if so, `seq` (the next match) starts
    /// the following page.
    fn full_before(&mut self, seq: u64) -> bool {
        let full = self.page.entries.len() >= self.limit;
        if full {
            self.page.next = Some(seq);
        }
        full
    }

    /// Adds entry `seq` if it fits the byte budget (the first entry always does); otherwise
    /// it starts the following page. Returns whether it was added.
    fn push(&mut self, seq: u64, entry: Entry) -> bool {
        let cost = 4 + entry.encoded_len();
        if cost > self.budget && !self.page.entries.is_empty() {
            self.page.next = Some(seq);
            return false;
        }
        self.budget = self.budget.saturating_sub(cost);
        self.page.entries.push(entry);
        true
    }
}

/// Entry `seq` no longer hashes to what it hashed to when it was appended.
fn changed(seq: u64) -> CheckReport {
    bad_at(
        seq,
        format!("entry {seq} was changed after it was appended (its hash is not the indexed one)"),
    )
}

fn bad(e: LedgerError) -> CheckReport {
    CheckReport::Bad {
        seq: e.seq(),
        reason: e.to_string(),
    }
}

fn bad_at(seq: u64, reason: String) -> CheckReport {
    CheckReport::Bad {
        seq: Some(seq),
        reason,
    }
}

impl Feed {
    /// The entry at position `pos`: `1` is the first entry, `2` the second, ...; `-1` is the
    /// last, `-2` the one before it, ... `None` for 0 and for positions beyond either end.
    pub fn by_position(&self, pos: i64) -> Result<Option<Entry>, FeedError> {
        let size = self.size()?;
        let seq = match pos {
            0 => return Ok(None),
            1.. => pos.unsigned_abs(),
            _ => match size.checked_sub(pos.unsigned_abs()) {
                Some(before) => before + 1,
                None => return Ok(None),
            },
        };
        if seq > size {
            return Ok(None);
        }
        self.by_seq(seq)
    }

    /// How many entries of `kind` the feed holds (its counter: one read).
    pub fn size_of_kind(&self, kind: &str) -> Result<u64, FeedError> {
        match commit_value(self.store.as_ref(), &self.keys, &self.keys.kind_count(kind))? {
            Some(v) => seq_value(&v, "kind count"),
            None => Ok(0),
        }
    }

    /// How many entries of `kind` have a seq in `from..=to` (0 for an empty range). A range
    /// covering the whole feed is answered from the kind's counter; any other walks the kind
    /// index over the range, in pages.
    pub fn count(&self, kind: &str, from: u64, to: u64) -> Result<u64, FeedError> {
        let from = from.max(1);
        if from > to {
            return Ok(0);
        }
        if from == 1 {
            // The counter first: it covers entries up to some head, which the later read of
            // the head can only have passed.
            let counted = self.size_of_kind(kind)?;
            if to >= self.size()? {
                return Ok(counted);
            }
        }
        let mut n: u64 = 0;
        self.walk_kind(kind, from, to, INDEX_PAGE, &mut |first, last| {
            n = n.saturating_add(last - first + 1);
            Ok(true)
        })?;
        Ok(n)
    }

    /// One page of the entries of `kind` (every kind for `None`) with a seq in `from..=to`,
    /// ascending: at most `limit` entries (at least 1) and no more than fit one `rlist`
    /// response ([`RLIST_ENTRY_BUDGET`]); never empty while a match is left. `next` is the
    /// seq of the first match left out, so paging by `next` never skips or repeats an entry,
    /// whatever is appended meanwhile.
    pub fn list(
        &self,
        kind: Option<&str>,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Page, FeedError> {
        let from = from.max(1);
        let mut builder = PageBuilder::new(limit);
        if from > to {
            return Ok(builder.page);
        }
        match kind {
            None => {
                let prefix = self.keys.entries();
                let mut pager = Pager::new(
                    self,
                    Keys::Entries,
                    &prefix,
                    self.keys.entry(from),
                    self.keys.entry(to),
                    LIST_PAGE,
                );
                while let Some(rows) = pager.next_page()? {
                    for (key, value) in rows {
                        let seq = key_seq(&key, prefix.len())?;
                        if builder.full_before(seq) {
                            return Ok(builder.page);
                        }
                        let entry = Entry::decode_from(&value, &self.origin)
                            .map_err(|e| FeedError::Corrupt(format!("entry {seq}: {e}")))?;
                        if !builder.push(seq, entry) {
                            return Ok(builder.page);
                        }
                    }
                }
            }
            Some(kind) => {
                let page = INDEX_PAGE.min(builder.limit.saturating_add(1));
                self.walk_kind(kind, from, to, page, &mut |first, last| {
                    for seq in first..=last {
                        if builder.full_before(seq) {
                            return Ok(false);
                        }
                        let entry = self.by_seq(seq)?.ok_or_else(|| {
                            FeedError::Corrupt(format!(
                                "the kind index names entry {seq}, which is not stored"
                            ))
                        })?;
                        if !builder.push(seq, entry) {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })?;
            }
        }
        Ok(builder.page)
    }

    /// Walks the kind index of `kind` over seqs `from..=to` (`from` at least 1), reading
    /// `page` index records at a time: calls `visit(first, last)` for each run of
    /// consecutive seqs of that kind inside the range, ascending, until it returns `false`.
    fn walk_kind(
        &self,
        kind: &str,
        from: u64,
        to: u64,
        page: usize,
        visit: &mut dyn FnMut(u64, u64) -> Result<bool, FeedError>,
    ) -> Result<(), FeedError> {
        let prefix = self.keys.kind_prefix(kind);
        // A record's key carries the last seq it names, so the walk starts at the first
        // record ending at `from` or later and ends with the first ending at `to` or later.
        let mut pager = Pager::new(
            self,
            Keys::Commits,
            &prefix,
            self.keys.kind(kind, from),
            self.keys.kind(kind, u64::MAX),
            page,
        );
        while let Some(rows) = pager.next_page()? {
            for (key, value) in rows {
                let last_seq = key_seq(&key, prefix.len())?;
                for (first, last) in kind_runs(last_seq, &value)? {
                    let (first, last) = (first.max(from), last.min(to));
                    if first <= last && !visit(first, last)? {
                        return Ok(());
                    }
                }
                if last_seq >= to {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Re-verifies the whole stored feed: [`Feed::check_range`] over every seq, without
    /// progress reports.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        self.check_range(1, u64::MAX, &mut |_| {})
    }

    /// Re-verifies entries `from..=to` (`from` 0 counts as 1) and the stored signed head,
    /// streaming: entries are read [`CHECK_PAGE`] at a time, and `progress(seq)` is called
    /// after each page with the last seq verified.
    ///
    /// Checked: the head decodes, has the feed's origin and a valid signature, and its
    /// entry is stored and hashes to the head's hash; every entry of the range up to the head
    /// is stored under its own seq, decodes, has the feed's origin, and links to the stored entry
    /// before it (for `from`, to entry `from - 1` as stored); no entry of the range is stored
    /// beyond the head. The hash index, recorded at append time, names the culprit: when
    /// entry `n`'s link to entry `n - 1` breaks inside the range, entry `n - 1` is named if
    /// its hash is no longer the indexed one (it was changed), else entry `n`; the range's
    /// last entry, which no link in the range vouches for, must be found under its hash
    /// (unless it is the head's entry). The chain, not the index, is what is verified, so
    /// this costs one index read per range instead of one per entry. The report names the
    /// first bad seq (in the order: head signature, head entry before the range, the range,
    /// head entry after it). [`CheckReport::Ok`] carries the head's seq. A store failure is
    /// an error, not a report.
    pub fn check_range(
        &self,
        from: u64,
        to: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CheckReport, StoreError> {
        self.check_pages(from, to, self.entry_pages(from, to), progress)
    }

    /// The stored entries `from..=to` (`from` 0 counts as 1), for [`Feed::check_pages`].
    pub fn entry_pages(&self, from: u64, to: u64) -> EntryPages {
        let from = from.max(1);
        EntryPages(Pager::new(
            self,
            Keys::Entries,
            &self.keys.entries(),
            self.keys.entry(from),
            self.keys.entry(to),
            CHECK_PAGE,
        ))
    }

    /// [`Feed::check_range`] of the entries `pages` yields, which must be
    /// [`Feed::entry_pages`]`(from, to)`'s (read on another thread, say, so that reading
    /// the store and hashing the entries take two CPUs): a failed page is the check's
    /// error. Pages are read no further than the check needs.
    pub fn check_pages(
        &self,
        from: u64,
        to: u64,
        pages: impl IntoIterator<Item = Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CheckReport, StoreError> {
        let from = from.max(1);
        let origin = self.origin;
        let head = match commit_value(self.store.as_ref(), &self.keys, &self.keys.head())? {
            None => None,
            Some(bytes) => match SignedHead::decode(&bytes) {
                Err(e) => {
                    return Ok(CheckReport::Bad {
                        seq: None,
                        reason: format!("the stored head is undecodable: {e}"),
                    });
                }
                Ok(signed) => {
                    if signed.head.origin != origin {
                        return Ok(bad(LedgerError::WrongOrigin {
                            seq: signed.head.seq,
                        }));
                    }
                    if let Err(e) = signed.verify() {
                        return Ok(bad(e));
                    }
                    Some(signed.head)
                }
            },
        };
        let head_seq = head.map_or(0, |h| h.seq);
        if let Some(head) = &head
            && head.seq < from
            && let Some(report) = self.check_head_entry(head)?
        {
            return Ok(report);
        }

        let mut verifier = if from == 1 {
            ChainVerifier::new(origin)
        } else {
            let before = from - 1;
            let hash = match self
                .store
                .get(self.keys.entry_table(), &self.keys.entry(before))?
            {
                Some(bytes) => hash_encoded(&bytes),
                // Nothing of the range may be stored then; the walk reports what is.
                None if before > head_seq => ZERO_HASH,
                None => {
                    return Ok(bad_at(
                        before,
                        format!("entry {before}, which the range links to, is missing"),
                    ));
                }
            };
            ChainVerifier::resume(Head {
                origin,
                seq: before,
                hash,
            })
        };

        // The next seq expected; `None` once u64::MAX was verified.
        let mut expected = Some(from);
        let prefix = self.keys.entries();
        for rows in pages {
            let rows = rows?;
            let mut last = None;
            for (key, value) in rows {
                let Some(p) = expected else { break };
                if p > head_seq {
                    let at = key_seq(&key, prefix.len()).unwrap_or(p);
                    let reason = match head_seq {
                        0 => format!("entry {at} is stored but the ledger has no signed head"),
                        h => format!("entry {at} is stored beyond the signed head (seq {h})"),
                    };
                    return Ok(bad_at(at, reason));
                }
                if key != self.keys.entry(p) {
                    return Ok(bad_at(
                        p,
                        format!("entry {p} is missing or stored under a wrong key"),
                    ));
                }
                let before = verifier.head();
                let hash = match verifier.push_encoded(&value) {
                    Ok(hash) => hash,
                    Err(LedgerError::BadLink { seq }) if seq > from => {
                        return self.blame_link(before, seq);
                    }
                    Err(e) => return Ok(bad(e)),
                };
                if let Some(head) = &head
                    && head.seq == p
                    && head.hash != hash
                {
                    return Ok(match self.is_indexed(p, &hash)? {
                        false => changed(p),
                        true => bad(LedgerError::BadHead { seq: p }),
                    });
                }
                last = Some(p);
                expected = p.checked_add(1);
            }
            if let Some(seq) = last {
                progress(seq);
            }
        }
        if let Some(p) = expected
            && p <= to.min(head_seq)
        {
            return Ok(bad(LedgerError::MissingEntry { seq: p }));
        }
        // The range's last entry has no link inside the range to vouch for it: compare its
        // hash with the one indexed when it was appended (the head's entry has the head).
        let last = verifier.head();
        if last.seq >= from
            && last.seq == to
            && last.seq != head_seq
            && !self.is_indexed(last.seq, &last.hash)?
        {
            return Ok(changed(last.seq));
        }
        if let Some(head) = &head
            && head.seq > to
            && let Some(report) = self.check_head_entry(head)?
        {
            return Ok(report);
        }
        Ok(CheckReport::Ok { seq: head_seq })
    }

    /// Entry `seq`'s prev is not the hash of the entry before it (`before`): either that entry
    /// was changed after it was appended (then its hash is no longer the one the hash index
    /// recorded at append time) or entry `seq` was. Names the one that changed. The index
    /// only serves this diagnosis: the chain itself is what is verified.
    fn blame_link(&self, before: Head, seq: u64) -> Result<CheckReport, StoreError> {
        Ok(match self.is_indexed(before.seq, &before.hash)? {
            false => changed(before.seq),
            true => bad(LedgerError::BadLink { seq }),
        })
    }

    /// Whether the hash index maps `hash` to `seq` (the ledger's tail of entries whose keys
    /// are not stored yet included). A ledger whose tail could not be rebuilt cannot tell
    /// for an entry not in the store's index: it says yes, blaming no earlier entry.
    fn is_indexed(&self, seq: u64, hash: &[u8; 32]) -> Result<bool, StoreError> {
        if let Some(tail) = &self.index_tail {
            if tail.seq_of_hash(hash) == Some(seq) {
                return Ok(true);
            }
            if tail.incomplete().is_some() {
                let indexed = hash_index_value(self.store.as_ref(), &self.keys, seq, hash)?;
                return Ok(indexed.is_none_or(|v| v == seq.to_be_bytes()));
            }
        }
        let indexed = hash_index_value(self.store.as_ref(), &self.keys, seq, hash)?;
        Ok(indexed.as_deref() == Some(seq.to_be_bytes().as_slice()))
    }

    /// Whether the stored entry at the head's seq is missing or does not hash to the head's
    /// hash (for a head outside the range being checked).
    fn check_head_entry(&self, head: &Head) -> Result<Option<CheckReport>, StoreError> {
        Ok(
            match self
                .store
                .get(self.keys.entry_table(), &self.keys.entry(head.seq))?
            {
                None => Some(bad_at(
                    head.seq,
                    format!("entry {}, named by the signed head, is missing", head.seq),
                )),
                Some(bytes) if hash_encoded(&bytes) != head.hash => {
                    Some(bad(LedgerError::BadHead { seq: head.seq }))
                }
                Some(_) => None,
            },
        )
    }
}
