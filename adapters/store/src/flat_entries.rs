//! A flat copy of the own feed's entries, so that reading one costs one `pread` whatever
//! the feed's length.
//!
//! The fjall store keeps the own feed's entries in [`Table::Ledger`] under the keys
//! [`ENTRY_KEY_PREFIX`] + seq (`u64` big-endian), appended in ascending order. A lookup there
//! at 10M entries misses the block cache and reads, checksums and decompresses a whole data
//! block for one entry, after a binary search through an index far larger than the CPU's
//! caches: about twice the CPU of the same read at 200k entries. This copy writes every
//! committed entry once more, uncompressed, into segment files of `2^20` entries, and keeps
//! each record's offset in memory (4 bytes per entry): a read is one positional read of
//! exactly the record.
//!
//! It is derived data, never the truth. fjall's commit comes first (the copy is written
//! after it, by a writer thread of its own and without an fsync, and a batch that removes
//! or rewrites copied entries cuts the copy before it commits), so a reader that finds an
//! entry here would have found the same bytes in the store, and one that misses here (an
//! entry not copied yet) asks the store. A hash-chained entry names its whole history, so
//! a copy whose last entry is the store's holds the store's entries. Each record carries a
//! checksum of its seq and value: opening checks every record, cuts the copy at the first
//! one that fails (a crash left a torn or lost write), cuts it to the store's last entry and
//! drops it whole if their last entries differ, then copies what the store holds beyond
//! it. A read whose record fails its checksum is answered by the store. An I/O error while
//! writing stops the copying until the store is opened again; the store is unaffected.
//!
//! Record: `len` (`u32` little-endian) | xxh3-64 of the value seeded with `seq` (`u64`
//! little-endian) | the value (`len` bytes).

use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::thread;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::kv::{Op, Table};

/// The prefix of the entry keys this copy holds, in [`Table::Ledger`].
pub const ENTRY_KEY_PREFIX: &[u8] = b"e:";

/// The name of the copy's directory inside the data directory.
pub const FLAT_ENTRIES_DIR: &str = "entries";

/// log2 of the entries per segment file.
const SEGMENT_SEQ_BITS: u32 = 20;

/// Bytes before a record's value: its length and checksum.
const HEADER_BYTES: usize = 12;

/// The largest value copied. A larger one (no ledger entry is) ends the copy: it and every
/// later entry are read from the store.
const MAX_VALUE_BYTES: usize = 1 << 20;

/// The seq of `key` if it is an entry key of [`Table::Ledger`].
pub fn entry_seq(table: Table, key: &[u8]) -> Option<u64> {
    if table != Table::Ledger {
        return None;
    }
    let seq = key.strip_prefix(ENTRY_KEY_PREFIX)?;
    Some(u64::from_be_bytes(seq.try_into().ok()?))
}

/// The key of entry `seq` in [`Table::Ledger`].
pub fn entry_key(seq: u64) -> Vec<u8> {
    [ENTRY_KEY_PREFIX, &seq.to_be_bytes()].concat()
}

/// The smallest seq whose entry key sorts at or after `start` (`None`: none does).
pub fn first_seq_from(start: &[u8]) -> Option<u64> {
    let Some(rest) = start.strip_prefix(ENTRY_KEY_PREFIX) else {
        // Every entry key is at or after a key that sorts before the prefix, and before
        // one that sorts after it.
        return (start < ENTRY_KEY_PREFIX).then_some(0);
    };
    let mut padded = [0u8; 8];
    let head = rest.get(..8).unwrap_or(rest);
    padded[..head.len()].copy_from_slice(head);
    let seq = u64::from_be_bytes(padded);
    if rest.len() > 8 {
        seq.checked_add(1)
    } else {
        Some(seq)
    }
}

/// The flat copy (see the module docs). Every method is safe to call from many threads;
/// the writing ones ([`FlatEntries::before_commit`], [`FlatEntries::after_commit`],
/// [`FlatEntries::reconcile`], [`FlatEntries::truncate`]) must be called by one at a time,
/// the store's committer.
///
/// The committer encodes the records and hands them to a writer thread of the copy's own,
/// which writes them and then makes them readable: the file writes (most of the copy's
/// cost, in the kernel's page cache) are off the commit's path. Until then a reader finds
/// the entries in the store.
pub struct FlatEntries {
    dir: PathBuf,
    /// log2 of the entries per segment ([`SEGMENT_SEQ_BITS`]; fewer in tests).
    bits: u32,
    /// What is written and readable, shared with the writer thread.
    state: Arc<RwLock<State>>,
    /// What the committer has handed to the writer thread.
    queue: Mutex<Queue>,
}

/// The committer's side of the copy.
struct Queue {
    /// The entries handed to the writer: `1..=queued`.
    queued: u64,
    /// The last segment's file and end once the writer has written what it was handed.
    tail: Option<(Arc<File>, u32)>,
    /// The writer thread's jobs (`None` once it is gone).
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<thread::JoinHandle<()>>,
}

/// A job of the writer thread.
enum Job {
    /// Write these records and make them readable.
    Write(Vec<Written>),
    /// Answer once every earlier job is done.
    Flush(mpsc::SyncSender<()>),
}

/// What is copied: entries `1..=len`.
#[derive(Default)]
struct State {
    /// Segment `k` holds the entries `k * 2^20 + 1 ..= (k + 1) * 2^20`.
    segments: Vec<Segment>,
    len: u64,
    /// A write failed: nothing more is copied until the store is opened again.
    stopped: bool,
}

/// One segment file.
struct Segment {
    file: Arc<File>,
    /// The offset of each record, then the end of the last one.
    bounds: Vec<u32>,
}

impl Segment {
    fn end(&self) -> u32 {
        self.bounds.last().copied().unwrap_or(0)
    }
}

/// The records an append writes into one segment.
struct Written {
    file: Arc<File>,
    /// The offset of the first.
    start: u32,
    /// The end of each.
    bounds: Vec<u32>,
    bytes: Vec<u8>,
    /// Whether the segment is new.
    new: bool,
}

impl Written {
    /// With room for `bytes` of records.
    fn new(file: Arc<File>, start: u32, new: bool, bytes: usize) -> Written {
        Written {
            file,
            start,
            bounds: Vec::new(),
            bytes: Vec::with_capacity(bytes),
            new,
        }
    }
}

/// The bounds of an empty segment, with room for a full one's: grown by doubling, the
/// vector of a full segment would reserve twice what it holds (allocated pages only count
/// once written).
fn segment_bounds(bits: u32) -> Vec<u32> {
    let mut bounds = Vec::with_capacity((1 << bits) + 1);
    bounds.push(0);
    bounds
}

/// Where entry `seq` (from 1) is with segments of `2^bits` entries: its segment and its
/// index in it.
fn place(bits: u32, seq: u64) -> Option<(usize, usize)> {
    let at = seq.checked_sub(1)?;
    let segment = usize::try_from(at >> bits).ok()?;
    let index = usize::try_from(at & ((1 << bits) - 1)).ok()?;
    Some((segment, index))
}

/// The checksum of entry `seq`'s record: xxh3-64 of the value, seeded with the seq.
fn checksum(seq: u64, value: &[u8]) -> u64 {
    xxh3_64_with_seed(value, seq)
}

/// Appends the record of `seq` to `out`; `None` if the value is too large to copy.
fn encode(seq: u64, value: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if value.len() > MAX_VALUE_BYTES {
        return None;
    }
    let len = u32::try_from(value.len()).ok()?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(seq, value).to_le_bytes());
    out.extend_from_slice(value);
    Some(())
}

/// The length and checksum a record's header holds.
fn header_fields(header: &[u8; HEADER_BYTES]) -> (usize, u64) {
    let [l0, l1, l2, l3, s0, s1, s2, s3, s4, s5, s6, s7] = *header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    (len, u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]))
}

/// The value of the record of `seq` that `record` holds exactly, if it checks.
fn decode(seq: u64, record: &[u8]) -> Option<&[u8]> {
    let (header, value) = record.split_at_checked(HEADER_BYTES)?;
    let (len, sum) = header_fields(header.try_into().ok()?);
    (len == value.len() && sum == checksum(seq, value)).then_some(value)
}

fn segment_path(dir: &Path, segment: usize) -> PathBuf {
    dir.join(format!("{segment:010}.entries"))
}

/// The segment number of a file name this copy writes.
fn segment_number(name: &str) -> Option<usize> {
    let digits = name.strip_suffix(".entries")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn open_segment(path: &Path, create: bool) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .mode(0o600)
        .open(path)
}

/// Reads the records of segment `number` from `file` that check, in order: their bounds.
/// Stops at the end of the file, at the first record that does not check, and after a
/// full segment.
fn load_bounds(file: &File, number: usize, bits: u32) -> io::Result<Vec<u32>> {
    let first_seq = ((number as u64) << bits) + 1;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut bounds = segment_bounds(bits);
    let mut offset = 0u64;
    let mut header = [0u8; HEADER_BYTES];
    let mut value = Vec::new();
    while bounds.len() <= 1 << bits {
        let seq = first_seq + (bounds.len() as u64 - 1);
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let (len, sum) = header_fields(&header);
        if len > MAX_VALUE_BYTES {
            break;
        }
        value.resize(len, 0);
        match reader.read_exact(&mut value) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if sum != checksum(seq, &value) {
            break;
        }
        offset += (HEADER_BYTES + len) as u64;
        let Ok(end) = u32::try_from(offset) else {
            break;
        };
        bounds.push(end);
    }
    Ok(bounds)
}

impl FlatEntries {
    /// Opens the copy in `dir` (created, mode 0700, if absent): loads every segment's
    /// records that check, in order, and cuts the files after the last of them. The copy
    /// is not yet matched with the store: see [`FlatEntries::reconcile`].
    ///
    /// # Errors
    ///
    /// I/O errors of creating, listing, reading or cutting the files.
    pub fn open(dir: &Path) -> io::Result<FlatEntries> {
        Self::open_with_segments_of(dir, SEGMENT_SEQ_BITS)
    }

    /// [`FlatEntries::open`] with segments of `2^bits` entries.
    fn open_with_segments_of(dir: &Path, bits: u32) -> io::Result<FlatEntries> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} exists but is not a directory",
                    dir.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(0o700).create(dir)?;
            }
            Err(e) => return Err(e),
        }
        let mut numbers = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            if let Some(number) = item.file_name().to_str().and_then(segment_number) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        let mut state = State::default();
        let mut complete = true;
        for number in numbers {
            let path = segment_path(dir, number);
            if !complete || number != state.segments.len() {
                // After a gap or a segment cut short: stale, never read.
                fs::remove_file(&path)?;
                complete = false;
                continue;
            }
            let file = open_segment(&path, false)?;
            // A file that cannot be read is dropped like a damaged one.
            let bounds = load_bounds(&file, number, bits).unwrap_or_else(|_| vec![0]);
            let records = bounds.len() - 1;
            complete = records == 1 << bits;
            if records == 0 {
                fs::remove_file(&path)?;
                continue;
            }
            let end = bounds.last().copied().unwrap_or(0);
            if file.metadata()?.len() > u64::from(end) {
                file.set_len(u64::from(end))?;
            }
            state.len += records as u64;
            state.segments.push(Segment {
                file: Arc::new(file),
                bounds,
            });
        }
        let queued = state.len;
        let tail = state
            .segments
            .last()
            .map(|s| (Arc::clone(&s.file), s.end()));
        let state = Arc::new(RwLock::new(state));
        let (jobs, received) = mpsc::channel();
        let shared = Arc::clone(&state);
        let writer = thread::Builder::new()
            .name("vserv-flat-entries".into())
            .spawn(move || {
                for job in received {
                    match job {
                        Job::Write(parts) => write_parts(&shared, bits, parts),
                        Job::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(FlatEntries {
            dir: dir.to_path_buf(),
            bits,
            state,
            queue: Mutex::new(Queue {
                queued,
                tail,
                jobs: Some(jobs),
                writer: Some(writer),
            }),
        })
    }

    fn queue(&self) -> Option<MutexGuard<'_, Queue>> {
        self.queue.lock().ok()
    }

    /// Waits until the writer thread has written and made readable everything handed to
    /// it, then takes the committer's view from what is readable (after a failed write,
    /// that is less than was handed over).
    pub fn flush(&self) {
        let Some(mut queue) = self.queue() else {
            return;
        };
        if let Some(jobs) = &queue.jobs {
            let (done, wait) = mpsc::sync_channel(1);
            if jobs.send(Job::Flush(done)).is_ok() {
                let _ = wait.recv();
            }
        }
        if let Some(state) = self.read_state() {
            queue.queued = state.len;
            queue.tail = state
                .segments
                .last()
                .map(|s| (Arc::clone(&s.file), s.end()));
        }
    }

    fn read_state(&self) -> Option<RwLockReadGuard<'_, State>> {
        self.state.read().ok()
    }

    fn write_state(&self) -> Option<RwLockWriteGuard<'_, State>> {
        self.state.write().ok()
    }

    /// The number of entries copied (entries `1..=len`).
    pub fn len(&self) -> u64 {
        self.read_state().map_or(0, |state| state.len)
    }

    /// Whether nothing is copied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of entry `seq`, if it is copied and its record checks (`None`: ask the
    /// store).
    pub fn get(&self, seq: u64) -> Option<Vec<u8>> {
        let (segment, index) = place(self.bits, seq)?;
        let (file, start, end) = {
            let state = self.read_state()?;
            if seq > state.len {
                return None;
            }
            let segment = state.segments.get(segment)?;
            let start = *segment.bounds.get(index)?;
            let end = *segment.bounds.get(index + 1)?;
            (Arc::clone(&segment.file), start, end)
        };
        let mut record = vec![0u8; end.checked_sub(start)? as usize];
        file.read_exact_at(&mut record, u64::from(start)).ok()?;
        let value_len = decode(seq, &record)?.len();
        record.drain(..record.len() - value_len);
        Some(record)
    }

    /// Up to `limit` consecutive entries from `first` that are copied and check, read in
    /// one positional read (they stop at the end of `first`'s segment, at the end of the
    /// copy and before a record that does not check).
    pub fn run(&self, first: u64, limit: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let Some((segment, index)) = place(self.bits, first) else {
            return out;
        };
        let Some((file, bounds)) = self.read_state().and_then(|state| {
            let available = usize::try_from(state.len.checked_sub(first)? + 1).ok()?;
            let segment = state.segments.get(segment)?;
            let in_segment = segment.bounds.len().saturating_sub(1).checked_sub(index)?;
            let last = index + limit.min(available).min(in_segment);
            let bounds = segment.bounds.get(index..=last)?.to_vec();
            Some((Arc::clone(&segment.file), bounds))
        }) else {
            return out;
        };
        let (Some(&start), Some(&end)) = (bounds.first(), bounds.last()) else {
            return out;
        };
        let mut bytes = vec![0u8; end.saturating_sub(start) as usize];
        if file.read_exact_at(&mut bytes, u64::from(start)).is_err() {
            return out;
        }
        // Bounds ascend, so no offset is below `start`.
        let at = |bound: u32| bound.saturating_sub(start) as usize;
        for (seq, pair) in (first..).zip(bounds.windows(2)) {
            let record = bytes.get(at(pair[0])..at(pair[1]));
            match record.and_then(|record| decode(seq, record)) {
                Some(value) => out.push((seq, value.to_vec())),
                None => break,
            }
        }
        out
    }

    /// Cuts the copy to entries `1..=len` (nothing if it holds no more). A file that cannot
    /// be cut is removed, and copying stops until the store is opened again.
    pub fn truncate(&self, len: u64) {
        self.flush();
        self.cut(len);
        self.flush();
    }

    /// [`FlatEntries::truncate`] of what is readable, with nothing handed to the writer.
    fn cut(&self, len: u64) {
        let Some(mut state) = self.write_state() else {
            return;
        };
        if len >= state.len {
            return;
        }
        state.len = len;
        let keep = match place(self.bits, len + 1) {
            Some((segment, index)) => (segment, index),
            None => (0, 0),
        };
        let (segment, index) = keep;
        let removed: Vec<usize> =
            (segment + usize::from(index > 0)..state.segments.len()).collect();
        state.segments.truncate(segment + usize::from(index > 0));
        let mut failed = false;
        for number in removed {
            failed |= fs::remove_file(segment_path(&self.dir, number)).is_err();
        }
        if index > 0
            && let Some(last) = state.segments.last_mut()
        {
            last.bounds.truncate(index + 1);
            if last.file.set_len(u64::from(last.end())).is_err() {
                failed = true;
                let _ = fs::remove_file(segment_path(&self.dir, segment));
                state.segments.pop();
                state.len = (segment as u64) << self.bits;
            }
        }
        state.stopped |= failed;
    }

    /// Before a batch is committed to the store: cuts the copy before the first copied
    /// entry the batch deletes or rewrites, so that no reader finds the old value once the
    /// store holds the new one.
    pub fn before_commit(&self, ops: &[Op]) {
        let len = self.queue().map_or(0, |queue| queue.queued);
        let first_changed = ops
            .iter()
            .filter_map(|op| {
                let (table, key) = op.table_key();
                entry_seq(table, key)
            })
            .filter(|&seq| seq <= len)
            .min();
        if let Some(seq) = first_changed {
            self.truncate(seq.saturating_sub(1));
        }
    }

    /// After a batch was committed to the store: copies the entries it put that continue
    /// the copy. An entry beyond the copy's end is copied after the ones before it, read
    /// with `stored` (a commit that failed may still have become durable): if one of them
    /// is missing, nothing is copied.
    pub fn after_commit(&self, ops: &[Op], stored: impl Fn(u64) -> Option<Vec<u8>>) {
        let puts = ops.iter().filter_map(|op| match op {
            Op::Put { table, key, value } => {
                entry_seq(*table, key).map(|seq| (seq, value.as_slice()))
            }
            Op::Delete { .. } => None,
        });
        let mut next = self.queue().map_or(0, |queue| queue.queued) + 1;
        let mut fill = Vec::new();
        let mut batch: Vec<(u64, Cow<'_, [u8]>)> = Vec::new();
        for (seq, value) in puts {
            if seq < next {
                continue;
            }
            while next < seq {
                match stored(next) {
                    Some(value) => fill.push((next, value)),
                    None => break,
                }
                next += 1;
            }
            if next != seq {
                break;
            }
            batch.extend(fill.drain(..).map(|(s, v)| (s, Cow::Owned(v))));
            batch.push((seq, Cow::Borrowed(value)));
            next += 1;
        }
        let batch: Vec<(u64, &[u8])> = batch
            .iter()
            .map(|(seq, value)| (*seq, value.as_ref()))
            .collect();
        self.append(&batch);
    }

    /// Matches the copy with the store after opening: cuts it to the store's last entry
    /// (`last_stored`), drops it whole if its last entry is not the store's (`stored`),
    /// then copies the store's entries beyond it (`stored_from(first)`: the store's
    /// consecutive entries from `first` on, a page at a time, empty at the end).
    pub fn reconcile(
        &self,
        last_stored: u64,
        stored: impl Fn(u64) -> Option<Vec<u8>>,
        stored_from: impl Fn(u64) -> Vec<(u64, Vec<u8>)>,
    ) {
        self.truncate(last_stored);
        let len = self.len();
        if len > 0 && stored(len) != self.get(len) {
            self.truncate(0);
        }
        loop {
            let next = self.len() + 1;
            let page = stored_from(next);
            let run: Vec<&(u64, Vec<u8>)> = (next..)
                .zip(&page)
                .take_while(|(seq, (stored_seq, _))| seq == stored_seq)
                .map(|(_, item)| item)
                .collect();
            if run.is_empty() {
                return;
            }
            let copied = run.len();
            let run: Vec<(u64, &[u8])> = run
                .iter()
                .map(|(seq, value)| (*seq, value.as_slice()))
                .collect();
            self.append(&run);
            self.flush();
            if self.len() + 1 != next + copied as u64 || copied < page.len() {
                return;
            }
        }
    }

    /// Hands consecutive entries that continue the copy (the caller checked that) to the
    /// writer thread.
    fn append(&self, entries: &[(u64, &[u8])]) {
        let bytes: usize = entries
            .iter()
            .map(|(_, value)| HEADER_BYTES + value.len())
            .sum();
        let Some(mut queue) = self.queue() else {
            return;
        };
        if self.read_state().is_none_or(|state| state.stopped) {
            return;
        }
        let mut written: Vec<Written> = Vec::new();
        for &(seq, value) in entries {
            let Some((segment, index)) = place(self.bits, seq) else {
                break;
            };
            if seq != queue.queued + 1 {
                break;
            }
            if index == 0 {
                let file = match open_segment(&segment_path(&self.dir, segment), true) {
                    Ok(file) => Arc::new(file),
                    Err(_) => {
                        stop(&self.state);
                        break;
                    }
                };
                written.push(Written::new(Arc::clone(&file), 0, true, bytes));
            } else if written.is_empty() {
                let Some((file, end)) = &queue.tail else {
                    break;
                };
                written.push(Written::new(Arc::clone(file), *end, false, bytes));
            }
            let Some(part) = written.last_mut() else {
                break;
            };
            let before = part.bytes.len();
            if encode(seq, value, &mut part.bytes).is_none() {
                break;
            }
            let Ok(end) = u32::try_from(u64::from(part.start) + part.bytes.len() as u64) else {
                part.bytes.truncate(before);
                break;
            };
            part.bounds.push(end);
            queue.queued = seq;
            queue.tail = Some((Arc::clone(&part.file), end));
        }
        if written.is_empty() {
            return;
        }
        let sent = queue
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Job::Write(written)).is_ok());
        if !sent {
            stop(&self.state);
        }
    }
}

impl Drop for FlatEntries {
    /// Lets the writer thread finish what it was handed, and waits for it.
    fn drop(&mut self) {
        let writer = self.queue.get_mut().ok().and_then(|queue| {
            queue.jobs = None;
            queue.writer.take()
        });
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// Stops the copying until the store is opened again.
fn stop(state: &RwLock<State>) {
    if let Ok(mut state) = state.write() {
        state.stopped = true;
    }
}

/// The writer thread's work: writes `parts` (unless copying stopped) and makes their
/// records readable. A failed write stops the copying.
fn write_parts(state: &RwLock<State>, bits: u32, parts: Vec<Written>) {
    if state.read().map_or(true, |state| state.stopped) {
        return;
    }
    for part in &parts {
        if part
            .file
            .write_all_at(&part.bytes, u64::from(part.start))
            .is_err()
        {
            let _ = part.file.set_len(u64::from(part.start));
            stop(state);
            return;
        }
    }
    let Ok(mut state) = state.write() else {
        return;
    };
    for part in parts {
        state.len += part.bounds.len() as u64;
        if part.new {
            let mut bounds = segment_bounds(bits);
            bounds.extend(part.bounds);
            state.segments.push(Segment {
                file: part.file,
                bounds,
            });
        } else if let Some(last) = state.segments.last_mut() {
            last.bounds.extend(part.bounds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(seq: u64) -> Vec<u8> {
        format!("entry {seq} ")
            .repeat((seq % 7) as usize + 1)
            .into_bytes()
    }

    fn put(seq: u64) -> Op {
        Op::Put {
            table: Table::Ledger,
            key: entry_key(seq),
            value: value(seq),
        }
    }

    fn puts(seqs: std::ops::RangeInclusive<u64>) -> Vec<Op> {
        seqs.map(put).collect()
    }

    fn none(_: u64) -> Option<Vec<u8>> {
        None
    }

    /// Hands the entries `seqs` of a committed batch to the copy and waits until they are
    /// written.
    fn copy(flat: &FlatEntries, seqs: std::ops::RangeInclusive<u64>) {
        flat.after_commit(&puts(seqs), none);
        flat.flush();
    }

    #[test]
    fn entries_put_in_order_read_back_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flat = FlatEntries::open(dir.path()).expect("open");
        copy(&flat, 1..=100);
        copy(&flat, 101..=150);
        assert_eq!(flat.len(), 150);
        drop(flat);
        let flat = FlatEntries::open(dir.path()).expect("reopen");
        assert_eq!(flat.len(), 150);
        for seq in 1..=150 {
            assert_eq!(flat.get(seq), Some(value(seq)), "entry {seq}");
        }
        assert_eq!(flat.get(0), None);
        assert_eq!(flat.get(151), None);
        let run = flat.run(10, 20);
        assert_eq!(run.len(), 20);
        assert!(run.iter().all(|(seq, v)| *v == value(*seq)));
        assert_eq!(run.first().map(|r| r.0), Some(10));
        assert_eq!(flat.run(140, 100).len(), 11);
        assert!(flat.run(151, 10).is_empty());
    }

    #[test]
    fn only_entries_continuing_the_copy_are_copied_and_gaps_are_filled_from_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flat = FlatEntries::open(dir.path()).expect("open");
        let mut ops = puts(1..=5);
        ops.push(Op::Put {
            table: Table::Users,
            key: entry_key(6),
            value: b"not an entry".to_vec(),
        });
        flat.after_commit(&ops, none);
        flat.flush();
        assert_eq!(flat.len(), 5);
        // 6..=9 were committed by a batch whose commit reported a failure.
        flat.after_commit(&puts(10..=12), |seq| Some(value(seq)));
        flat.flush();
        assert_eq!(flat.len(), 12);
        assert_eq!(flat.get(7), Some(value(7)));
        // A gap the store cannot fill stops the batch.
        copy(&flat, 20..=21);
        assert_eq!(flat.len(), 12);
    }

    #[test]
    fn a_batch_rewriting_or_deleting_copied_entries_cuts_the_copy_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flat = FlatEntries::open(dir.path()).expect("open");
        copy(&flat, 1..=10);
        flat.before_commit(&[Op::Delete {
            table: Table::Ledger,
            key: entry_key(7),
        }]);
        assert_eq!(flat.len(), 6);
        assert_eq!(flat.get(7), None);
        flat.before_commit(&[put(3)]);
        assert_eq!(flat.len(), 2);
        copy(&flat, 3..=4);
        assert_eq!(flat.len(), 4);
        drop(flat);
        let flat = FlatEntries::open(dir.path()).expect("reopen");
        assert_eq!(flat.len(), 4);
    }

    #[test]
    fn opening_keeps_the_records_before_the_first_damaged_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flat = FlatEntries::open(dir.path()).expect("open");
        copy(&flat, 1..=40);
        let bounds = flat.read_state().map(|s| s.segments[0].bounds.clone());
        drop(flat);
        let bounds = bounds.expect("bounds");
        let path = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&path).expect("read");
        bytes[bounds[30] as usize + HEADER_BYTES] ^= 1;
        fs::write(&path, &bytes).expect("write");
        let flat = FlatEntries::open(dir.path()).expect("reopen");
        assert_eq!(flat.len(), 30);
        assert_eq!(
            fs::metadata(&path).expect("meta").len(),
            u64::from(bounds[30])
        );
        // A torn last record.
        drop(flat);
        let file = open_segment(&path, false).expect("open file");
        file.set_len(u64::from(bounds[30]) - 3).expect("cut");
        let flat = FlatEntries::open(dir.path()).expect("reopen");
        assert_eq!(flat.len(), 29);
        assert_eq!(flat.get(29), Some(value(29)));
    }

    #[test]
    fn a_read_of_a_record_damaged_after_opening_is_left_to_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flat = FlatEntries::open(dir.path()).expect("open");
        copy(&flat, 1..=3);
        let path = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        assert_eq!(flat.get(3), None);
        assert_eq!(flat.get(2), Some(value(2)));
        assert_eq!(flat.run(1, 10).len(), 2);
    }

    #[test]
    fn reconcile_follows_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flat = FlatEntries::open(dir.path()).expect("open");
        copy(&flat, 1..=50);
        let stored_from = |last: u64| {
            move |first: u64| -> Vec<(u64, Vec<u8>)> {
                (first..=last).take(7).map(|s| (s, value(s))).collect()
            }
        };
        // The store lost its last 10 entries (opened accepting the loss).
        flat.reconcile(40, |s| Some(value(s)), stored_from(40));
        assert_eq!(flat.len(), 40);
        // The store holds 30 more.
        flat.reconcile(70, |s| Some(value(s)), stored_from(70));
        assert_eq!(flat.len(), 70);
        assert_eq!(flat.get(70), Some(value(70)));
        // A store whose entries differ: the copy is rebuilt from it.
        flat.reconcile(70, |_| Some(b"other".to_vec()), |_| Vec::new());
        assert_eq!(flat.len(), 0);
    }

    #[test]
    fn stale_segments_after_a_short_one_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(segment_path(dir.path(), 3), b"stale").expect("write");
        fs::write(dir.path().join("notes.txt"), b"kept").expect("write");
        let flat = FlatEntries::open(dir.path()).expect("open");
        assert_eq!(flat.len(), 0);
        assert!(!segment_path(dir.path(), 3).exists());
        assert!(dir.path().join("notes.txt").exists());
        drop(flat);
        // A first segment holding no record that checks is dropped, and written anew.
        fs::write(segment_path(dir.path(), 0), b"torn").expect("write");
        let flat = FlatEntries::open(dir.path()).expect("open");
        assert_eq!(flat.len(), 0);
        assert!(!segment_path(dir.path(), 0).exists());
        copy(&flat, 1..=3);
        drop(flat);
        let flat = FlatEntries::open(dir.path()).expect("open");
        assert_eq!(flat.len(), 3);
        assert_eq!(flat.get(3), Some(value(3)));
    }

    #[test]
    fn segments_are_filled_cut_and_checked_one_after_the_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let small = || FlatEntries::open_with_segments_of(dir.path(), 2).expect("open");
        let files = || {
            (0..6)
                .filter(|&k| segment_path(dir.path(), k).exists())
                .count()
        };
        let flat = small();
        copy(&flat, 1..=3);
        copy(&flat, 4..=9);
        copy(&flat, 10..=13);
        assert_eq!(files(), 4);
        drop(flat);
        let flat = small();
        assert_eq!(flat.len(), 13);
        for seq in 1..=13 {
            assert_eq!(flat.get(seq), Some(value(seq)), "entry {seq}");
        }
        // A run ends with its segment.
        let run: Vec<u64> = flat.run(3, 100).into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(run, [3, 4]);
        assert_eq!(flat.run(13, 100).len(), 1);
        // Cut at a segment's end, then inside one.
        flat.truncate(8);
        assert_eq!((flat.len(), files()), (8, 2));
        flat.truncate(6);
        assert_eq!((flat.len(), files()), (6, 2));
        assert_eq!(flat.get(7), None);
        copy(&flat, 7..=10);
        assert_eq!(flat.get(10), Some(value(10)));
        drop(flat);
        // A damaged record in the second segment: the third is stale.
        let path = segment_path(dir.path(), 1);
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).expect("write");
        let flat = small();
        assert_eq!((flat.len(), files()), (7, 2));
        assert_eq!(flat.get(7), Some(value(7)));
        copy(&flat, 8..=9);
        assert_eq!((flat.len(), files()), (9, 3));
    }

    #[test]
    fn first_seq_from_is_the_first_entry_key_at_or_after_start() {
        assert_eq!(first_seq_from(b""), Some(0));
        assert_eq!(first_seq_from(b"e"), Some(0));
        assert_eq!(first_seq_from(b"e:"), Some(0));
        assert_eq!(first_seq_from(&entry_key(5)), Some(5));
        assert_eq!(first_seq_from(&[entry_key(5), vec![0]].concat()), Some(6));
        assert_eq!(
            first_seq_from(&[b"e:".as_slice(), &[0, 0, 0, 0, 0, 1]].concat()),
            Some(1 << 16)
        );
        assert_eq!(
            first_seq_from(&[entry_key(u64::MAX), vec![0]].concat()),
            None
        );
        assert_eq!(first_seq_from(b"f"), None);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_and_reads_back_what_encode_wrote(
            seq: u64,
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
        ) {
            let mut record = Vec::new();
            proptest::prop_assert!(encode(seq, &value, &mut record).is_some());
            proptest::prop_assert_eq!(decode(seq, &record), Some(value.as_slice()));
            proptest::prop_assert_eq!(decode(seq.wrapping_add(1), &record), None);
            let _ = decode(seq, &garbage);
        }

        #[test]
        fn opening_keeps_exactly_the_records_that_check_before_arbitrary_bytes(
            values in proptest::collection::vec(
                proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..12),
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut bytes = Vec::new();
            for (seq, value) in (1..).zip(&values) {
                proptest::prop_assert!(encode(seq, value, &mut bytes).is_some());
            }
            let valid = bytes.len() as u64;
            bytes.extend_from_slice(&garbage);
            fs::write(segment_path(dir.path(), 0), &bytes).expect("write");
            let flat = FlatEntries::open_with_segments_of(dir.path(), 4).expect("open");
            let kept = values.len().min(16);
            proptest::prop_assert_eq!(flat.len(), kept as u64);
            for (seq, value) in (1..).zip(values.iter().take(kept)) {
                proptest::prop_assert_eq!(flat.get(seq), Some(value.clone()));
            }
            let size = fs::metadata(segment_path(dir.path(), 0)).map_or(0, |m| m.len());
            proptest::prop_assert!(kept == 0 || size <= valid);
        }
    }
}
