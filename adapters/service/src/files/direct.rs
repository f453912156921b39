//! Writing a large file sequentially without going through the page cache.
//!
//! A transfer writes gigabytes once and does not read them back soon. Through the page cache
//! every byte is copied into a cache page, later written back by the kernel, and once the
//! dirty pages reach the kernel's limits the writer is throttled to the write-back's pace:
//! on the reference machine a buffered 2 GiB write plus `fdatasync` ran at 0.5 GB/s and
//! the same with `O_DIRECT` at 2.5 GB/s, for half the CPU. [`DirectWriter`] gathers the
//! bytes into an aligned 256 KiB buffer and writes whole aligned blocks with `O_DIRECT`
//! (Linux, file systems that support it); the unaligned head and tail of a run go through
//! an ordinary handle. Where `O_DIRECT` is refused (tmpfs, other systems) everything goes
//! through the ordinary handle, with the same results.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use vserv_core::transfer::FileHasher;

use crate::work::{Runner, Work};

/// Alignment of `O_DIRECT` buffers, offsets and lengths (the largest logical block size in
/// common use).
const ALIGN: usize = 4096;

/// Bytes gathered before a direct write, by default.
const BUF: usize = 256 * 1024;

/// The buffer a [`DirectWriter::new`] holds.
pub const WRITER_HELD_BYTES: usize = BUF + ALIGN;

/// Sequential writer of one file: writes are gathered while contiguous and written in
/// aligned blocks bypassing the page cache where possible. Reads, syncs and length changes
/// through it see every byte written before them.
#[derive(Debug)]
pub struct DirectWriter {
    /// The ordinary handle: unaligned pieces, reads, syncs, and everything without
    /// `O_DIRECT`.
    file: File,
    /// The same file opened with `O_DIRECT`, if the file system allows it.
    direct: Option<File>,
    /// `window + ALIGN` bytes; `buf[start..start + window]` is `ALIGN`-aligned.
    buf: Vec<u8>,
    start: usize,
    /// Bytes gathered before a direct write (a multiple of `ALIGN`).
    window: usize,
    /// File offset of the window's first byte.
    pos: u64,
    /// Bytes in the window.
    len: usize,
    /// The window's first bytes already in the file (a kept tail, a re-read head): a flush
    /// does not write them again.
    clean: usize,
}

impl DirectWriter {
    /// Wraps `file`, open for reading and writing at `path`; the same file is opened again
    /// with `O_DIRECT` when the file system supports it (never through a symlink, and only
    /// if the path still names the same file).
    pub fn new(file: File, path: &Path) -> DirectWriter {
        DirectWriter::with_buffer(file, path, BUF)
    }

    /// [`new`](Self::new) gathering `bytes` (rounded up to a whole number of 4 KiB blocks)
    /// before each direct write instead of 256 KiB: larger writes cost the disk less per
    /// byte, for more memory.
    pub fn with_buffer(file: File, path: &Path, bytes: usize) -> DirectWriter {
        let window = bytes.div_ceil(ALIGN).max(1) * ALIGN;
        let buf = vec![0u8; window + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        let direct = if start < ALIGN {
            open_direct(path).filter(|d| same_file(&file, d))
        } else {
            None
        };
        DirectWriter {
            file,
            direct,
            buf,
            start: start.min(ALIGN),
            window,
            pos: 0,
            len: 0,
            clean: 0,
        }
    }

    /// Wraps `file` without a buffer: every write goes straight through the ordinary
    /// handle (for when the server's transfer buffers are spent).
    pub fn unbuffered(file: File) -> DirectWriter {
        DirectWriter {
            file,
            direct: None,
            buf: Vec::new(),
            start: 0,
            window: 0,
            pos: 0,
            len: 0,
            clean: 0,
        }
    }

    /// Whether writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Writes all of `data` at `offset` (gathered if it continues the previous write).
    pub fn write_at(&mut self, offset: u64, mut data: &[u8]) -> io::Result<()> {
        if self.direct.is_none() {
            // Without O_DIRECT (from the start, or since a refused write) nothing is
            // gathered: what still is gets written first.
            self.flush()?;
            self.len = 0;
            self.clean = 0;
            self.pos = u64::MAX;
            return self.file.write_all_at(data, offset);
        }
        if offset != self.end() {
            self.flush()?;
            self.restart_at(offset)?;
        }
        while !data.is_empty() {
            let room = self.window - self.len;
            let n = room.min(data.len());
            let at = self.start + self.len;
            self.buf[at..at + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.len == self.window {
                self.write_window()?;
            }
        }
        Ok(())
    }

    /// Writes out everything gathered, so the ordinary handle sees it.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        let whole = self.len / ALIGN * ALIGN;
        if whole > 0 {
            self.write_direct(0, whole)?;
        }
        let tail = self.len - whole;
        let tail_at = self.pos + whole as u64;
        let dirty = self.clean.max(whole);
        if dirty < self.len {
            let from = self.start + dirty;
            self.file.write_all_at(
                &self.buf[from..self.start + self.len],
                self.pos + dirty as u64,
            )?;
        }
        if tail > 0 {
            // Keep the tail at the window's start: a later write continuing it rewrites
            // its (aligned) block directly, with the same bytes.
            let from = self.start + whole;
            self.buf.copy_within(from..from + tail, self.start);
        }
        self.pos = tail_at;
        self.len = tail;
        self.clean = tail;
        Ok(())
    }

    /// [`flush`](Self::flush), then makes the file's data durable.
    pub fn sync_data(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    /// [`flush`](Self::flush), then makes the file durable (data and metadata).
    pub fn sync_all(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_all()
    }

    /// Reads at `offset` after writing out what was gathered.
    pub fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.flush()?;
        self.file.read_at(buf, offset)
    }

    /// Sets the file's length after writing out what was gathered (the next write starts
    /// a new run).
    pub fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.flush()?;
        self.len = 0;
        self.clean = 0;
        self.pos = u64::MAX;
        self.file.set_len(len)
    }

    /// The offset a write must have to continue the current run.
    fn end(&self) -> u64 {
        self.pos.saturating_add(self.len as u64)
    }

    /// Starts a new run at `offset`: its block's bytes before `offset` are read back into
    /// the window, so that block can be written whole.
    fn restart_at(&mut self, offset: u64) -> io::Result<()> {
        let head = (offset % ALIGN as u64) as usize;
        let block = offset - head as u64;
        let mut filled = 0;
        while filled < head {
            let at = self.start + filled;
            let n = self
                .file
                .read_at(&mut self.buf[at..self.start + head], block + filled as u64)?;
            if n == 0 {
                // Past the end of the file: the gap reads as zeros.
                self.buf[at..self.start + head].fill(0);
                break;
            }
            filled += n;
        }
        self.pos = block;
        self.len = head;
        self.clean = head;
        Ok(())
    }

    /// Writes the window's bytes `from..to` (aligned) at their place, directly if possible.
    /// A file system that accepted `O_DIRECT` at open but refuses the write itself
    /// (`EINVAL`) gets this write and all later ones through the ordinary handle.
    fn write_direct(&mut self, from: usize, to: usize) -> io::Result<()> {
        let bytes = &self.buf[self.start + from..self.start + to];
        let at = self.pos + from as u64;
        if let Some(direct) = &self.direct {
            match direct.write_all_at(bytes, at) {
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => self.direct = None,
                other => return other,
            }
        }
        self.file.write_all_at(bytes, at)
    }

    fn write_window(&mut self) -> io::Result<()> {
        self.write_direct(0, self.len)?;
        self.pos += self.len as u64;
        self.len = 0;
        self.clean = 0;
        Ok(())
    }
}

impl Drop for DirectWriter {
    /// Writes out what was gathered (best effort: a caller that needs to know syncs first).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Whether two handles are the same file (the path was not replaced in between).
fn same_file(a: &File, b: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

/// Bytes read ahead per block.
const READ_BLOCK: usize = 512 * 1024;

/// Blocks read ahead and waiting: with the one in use and the one being read, a download
/// holds at most [`READER_HELD_BYTES`] (about 2.5 MiB). Three queued blocks (3 ms of data at
/// 500 MB/s) cover the moments the read-ahead waits for a core on a busy machine.
const READ_QUEUE: usize = 3;

/// The most a [`ReadAhead`] holds.
pub const READER_HELD_BYTES: usize = (READ_QUEUE + 2) * (READ_BLOCK + ALIGN);

/// Blocks one read-ahead run reads before it hands a fresh run to the runner and ends, so
/// that downloads share a bounded pool's threads.
const RUN_BLOCKS: usize = 8;

/// A file read mostly in order (a download, a delivery's copy), read ahead in aligned
/// blocks, bypassing the page cache where possible: the disk works while the reader
/// encrypts and sends. No thread of its own: when there is room for a block and no read is
/// under way, a run that reads blocks until the queue is full (or the file ends) is handed
/// to the runner as a [`Work`]; the reader waits only for a run already handed over. With
/// the [`Inline`](crate::work::Inline) runner the blocks are read when asked for. A read
/// that does not continue the sequence restarts the read-ahead there; any failure of the
/// read-ahead falls back to ordinary positioned reads.
///
/// Made with [`hashing`](Self::hashing), the read-ahead runs also hash a range of the file
/// as they read it (an upload's source), so the reader's thread only copies bytes.
#[derive(Debug)]
pub struct ReadAhead {
    /// The ordinary handle: fallback reads, and the file the read-ahead reopens.
    file: File,
    runner: Arc<dyn Runner>,
    ahead: Mutex<Ahead>,
    /// The hashing of a range, if asked for.
    hashing: Option<Arc<Hashing>>,
    /// Whether the read-ahead bypasses the page cache where it can.
    direct: bool,
}

/// A read-ahead's hashing: the runs feed every block they read, in order, to the hasher,
/// which takes the bytes of its range that follow the ones it has seen.
#[derive(Debug)]
struct Hashing {
    state: Mutex<HashState>,
    /// Set once the bytes handed to the reader may differ from the bytes hashed (a restart,
    /// a failed read): the hasher is then never given back.
    broken: AtomicBool,
}

#[derive(Debug)]
struct HashState {
    /// `None` once taken back.
    hasher: Option<FileHasher>,
    /// The hasher has seen the range's bytes before this offset.
    hashed: u64,
    /// The end of the range.
    until: u64,
}

impl Hashing {
    fn lock(&self) -> MutexGuard<'_, HashState> {
        // Every change under this lock is whole: a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn break_off(&self) {
        self.broken.store(true, Ordering::SeqCst);
    }

    /// Hashes the part of `block` that continues the bytes hashed, up to the range's end.
    /// A block that starts after them leaves a gap: the hashing is broken.
    fn feed(&self, block: &Block) {
        if self.broken.load(Ordering::SeqCst) {
            return;
        }
        let mut state = self.lock();
        let (hashed, until) = (state.hashed, state.until);
        if hashed >= until || block.end() <= hashed {
            return;
        }
        if block.offset > hashed {
            self.break_off();
            return;
        }
        let Some(hasher) = state.hasher.as_mut() else {
            return;
        };
        let end = block.end().min(until);
        let from = block.start + (hashed - block.offset) as usize;
        let to = block.start + (end - block.offset) as usize;
        hasher.update(&block.data[from..to]);
        state.hashed = end;
    }
}

#[derive(Debug, Default)]
struct Ahead {
    /// The read-ahead; `None` before the first read.
    lane: Option<Arc<Lane>>,
    /// The block being read from.
    current: Option<Block>,
    /// Set once the read-ahead failed: ordinary reads from then on.
    failed: bool,
}

/// What the reader and the read-ahead runs share.
#[derive(Debug)]
struct Lane {
    /// The file reopened for the read-ahead (with `O_DIRECT` if it can).
    file: File,
    runner: Arc<dyn Runner>,
    state: Mutex<LaneState>,
    /// Signalled when a block is queued or a run ends.
    changed: Condvar,
    /// The reader's hashing, fed by the runs.
    hashing: Option<Arc<Hashing>>,
}

#[derive(Debug, Default)]
struct LaneState {
    /// Blocks read ahead, in order.
    blocks: VecDeque<io::Result<Block>>,
    /// Offset of the next block to read.
    next: u64,
    /// Bumped at every restart: a block read for an older sequence is dropped.
    sequence: u64,
    /// Whether a run is handed over and not ended.
    running: bool,
    /// The sequence reached the end of the file, or failed: no more blocks.
    ended: bool,
    /// A run was dropped unrun (the runtime is shutting down).
    lost: bool,
    /// The reader is gone.
    closed: bool,
    /// The buffer of a block the reader is done with, for the next read: reused as it is
    /// (never zeroed again: a read overwrites the bytes a block shows), so a read-ahead
    /// neither fills nor faults in a fresh block per block read. At most one is kept, so
    /// the blocks alive stay within [`READER_HELD_BYTES`].
    spare: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Block {
    /// File offset of the block's first byte.
    offset: u64,
    /// The bytes are `data[start..start + len]`.
    data: Vec<u8>,
    start: usize,
    len: usize,
}

impl Block {
    fn end(&self) -> u64 {
        self.offset + self.len as u64
    }
}

impl ReadAhead {
    /// Wraps `file`, open for reading, read ahead through `runner`; nothing is read until
    /// the first read.
    pub fn new(file: File, runner: Arc<dyn Runner>) -> ReadAhead {
        ReadAhead {
            file,
            runner,
            ahead: Mutex::new(Ahead::default()),
            hashing: None,
            direct: true,
        }
    }

    /// This reader, reading ahead through the page cache rather than around it: for a file
    /// likely cached already and read once by a client (an upload's source), where a read
    /// from the cache costs a copy and a read from the disk competes with everything else.
    pub fn through_page_cache(mut self) -> ReadAhead {
        self.direct = false;
        self
    }

    /// [`new`](Self::new), whose read-ahead runs also hash the file's bytes `from..until`:
    /// `hasher` has seen the bytes before `from`, and is fed each byte of the range once, in
    /// order, by the run that reads it (before the reader can see it). Meant for a file read
    /// in one sequence from `from` on; [`take_hasher`](Self::take_hasher) gives the hasher
    /// back if it saw exactly the range.
    pub fn hashing(
        file: File,
        runner: Arc<dyn Runner>,
        hasher: FileHasher,
        from: u64,
        until: u64,
    ) -> ReadAhead {
        let mut reader = ReadAhead::new(file, runner);
        reader.hashing = Some(Arc::new(Hashing {
            state: Mutex::new(HashState {
                hasher: Some(hasher),
                hashed: from,
                until,
            }),
            broken: AtomicBool::new(false),
        }));
        reader
    }

    /// Ends the hashing (waiting for a block being hashed): the hasher, if this reader was
    /// made [`hashing`](Self::hashing) and it has seen every byte of its range exactly once,
    /// in order, as read ahead. `None` if the range was not read whole (a short file, a
    /// reader that stopped early), if the reads left their sequence (a restart reads bytes
    /// again, which may have changed), or if a read-ahead failed; `None` again once taken.
    pub fn take_hasher(&self) -> Option<FileHasher> {
        let hashing = self.hashing.as_ref()?;
        let mut state = hashing.lock();
        let hasher = state.hasher.take()?;
        let whole = state.hashed == state.until && !hashing.broken.load(Ordering::SeqCst);
        whole.then_some(hasher)
    }

    /// Wraps `file` without reading ahead: ordinary positioned reads only (for when the
    /// server's transfer buffers are spent).
    pub fn unbuffered(file: File) -> ReadAhead {
        ReadAhead {
            file,
            runner: Arc::new(crate::work::Inline),
            ahead: Mutex::new(Ahead {
                failed: true,
                ..Ahead::default()
            }),
            hashing: None,
            direct: false,
        }
    }

    /// Fills `buf` with the bytes at `offset` (all of them, or an error such as
    /// `UnexpectedEof` past the end).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_into(&mut Filling { buf, done: 0 }, offset)
    }

    /// Appends the `len` bytes at `offset` to `out` (all of them, or an error such as
    /// `UnexpectedEof` past the end, with `out` holding some of them). Saves the caller
    /// zero-filling a buffer that is about to be overwritten.
    pub fn read_append(&self, out: &mut Vec<u8>, offset: u64, len: usize) -> io::Result<()> {
        out.reserve(len);
        let end = out.len() + len;
        self.read_into(&mut Appending { out, end }, offset)
    }

    fn read_into(&self, sink: &mut dyn Sink, offset: u64) -> io::Result<()> {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0u64;
        while sink.left() > 0 {
            let at = offset + done;
            if let Some(block) = ahead
                .current
                .as_ref()
                .filter(|b| b.offset <= at && at < b.end())
            {
                let from = block.start + (at - block.offset) as usize;
                let n = sink.left().min((block.end() - at) as usize);
                sink.put(&block.data[from..from + n]);
                done += n as u64;
                continue;
            }
            if ahead.failed || !self.next_block(&mut ahead, at) {
                // Ordinary read for the rest (never hashed).
                return sink.read_rest(&self.file, at);
            }
        }
        Ok(())
    }

    /// Makes `ahead.current` the block holding `at` if the read-ahead can: the next block
    /// when `at` continues the sequence, else a read-ahead restarted at `at`. `false` when
    /// the read-ahead cannot give it (end of file, failure).
    fn next_block(&self, ahead: &mut Ahead, at: u64) -> bool {
        let continues = ahead
            .current
            .as_ref()
            .is_some_and(|b| b.end() == at && b.len == READ_BLOCK);
        let lane = match &ahead.lane {
            Some(lane) => lane.clone(),
            None => match self.open_lane() {
                Ok(lane) => ahead.lane.insert(lane).clone(),
                Err(_) => {
                    ahead.failed = true;
                    return false;
                }
            },
        };
        if let Some(done) = ahead.current.take() {
            lane.recycle(done.data);
        }
        if !continues {
            lane.restart(at - at % ALIGN as u64);
        }
        match lane.take() {
            Some(Ok(block)) if block.offset <= at && at < block.end() => {
                ahead.current = Some(block);
                true
            }
            Some(Err(_)) => {
                ahead.failed = true;
                false
            }
            // End of file, or a block that does not hold `at`.
            _ => {
                ahead.current = None;
                false
            }
        }
    }

    /// The read-ahead over the file reopened.
    fn open_lane(&self) -> io::Result<Arc<Lane>> {
        let direct = self.direct.then(|| reopen_direct(&self.file)).flatten();
        let file = direct.map_or_else(|| self.file.try_clone(), Ok)?;
        Ok(Arc::new(Lane {
            file,
            runner: self.runner.clone(),
            state: Mutex::new(LaneState::default()),
            changed: Condvar::new(),
            hashing: self.hashing.clone(),
        }))
    }
}

impl Drop for ReadAhead {
    /// Stops the read-ahead: a run under way ends after the block it is reading.
    fn drop(&mut self) {
        let ahead = self.ahead.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(lane) = &ahead.lane {
            let mut state = lane.lock();
            state.closed = true;
            state.blocks.clear();
        }
    }
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, LaneState> {
        // Every change under this lock is whole: a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `data` (a block's buffer the reader is done with) for the next read, unless a
    /// buffer is kept already.
    fn recycle(&self, data: Vec<u8>) {
        let mut state = self.lock();
        if state.spare.is_none() && data.len() == READ_BLOCK + ALIGN {
            state.spare = Some(data);
        }
    }

    /// Starts a new sequence at `from` (aligned): what was read ahead is dropped.
    fn restart(&self, from: u64) {
        let mut state = self.lock();
        if state.sequence > 0
            && let Some(hashing) = &self.hashing
        {
            // Bytes read again may differ from the ones hashed.
            hashing.break_off();
        }
        state.sequence += 1;
        state.blocks.clear();
        state.next = from;
        state.ended = false;
    }

    /// Whether a run must be handed over (marked running if so): there is room and none
    /// is under way.
    fn wants_run(state: &mut LaneState) -> bool {
        let wanted = !state.running
            && !state.ended
            && !state.closed
            && !state.lost
            && state.blocks.len() < READ_QUEUE;
        state.running |= wanted;
        wanted
    }

    /// Hands a run to the runner (the caller marked it running).
    fn start(self: &Arc<Self>) {
        let run = ReadRun {
            lane: self.clone(),
            ended: false,
        };
        self.runner.run(Work::new("read ahead", move || run.run()));
    }

    /// The next block of the sequence, waiting for a run already handed over if none is
    /// read yet; `None` at the end of the file.
    fn take(self: &Arc<Self>) -> Option<io::Result<Block>> {
        let mut state = self.lock();
        loop {
            if let Some(block) = state.blocks.pop_front() {
                let start = Self::wants_run(&mut state);
                drop(state);
                if start {
                    self.start();
                }
                return Some(block);
            }
            if state.lost {
                return Some(Err(io::Error::other("the read-ahead was dropped unrun")));
            }
            if !state.running {
                if !Self::wants_run(&mut state) {
                    return None;
                }
                drop(state);
                self.start();
                state = self.lock();
                continue;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A run: reads blocks while there is room, up to [`RUN_BLOCKS`], then ends (handing a
    /// fresh run over if there is still room).
    fn read_blocks(self: &Arc<Self>) {
        for _ in 0..RUN_BLOCKS {
            let mut state = self.lock();
            if state.closed || state.ended || state.blocks.len() >= READ_QUEUE {
                state.running = false;
                drop(state);
                self.changed.notify_all();
                return;
            }
            let (at, sequence) = (state.next, state.sequence);
            state.next = at.saturating_add(READ_BLOCK as u64);
            let spare = state.spare.take();
            drop(state);
            let read = read_block(&self.file, at, spare);
            if let Some(hashing) = &self.hashing {
                match &read {
                    Ok(Some(block)) => hashing.feed(block),
                    Ok(None) => {}
                    Err(_) => hashing.break_off(),
                }
            }
            let mut state = self.lock();
            if state.sequence != sequence {
                // Restarted meanwhile: this block is not wanted.
                continue;
            }
            match read {
                Ok(Some(block)) => {
                    // Only the file's end is short.
                    state.ended = block.len < READ_BLOCK;
                    state.blocks.push_back(Ok(block));
                }
                Ok(None) => state.ended = true,
                Err(e) => {
                    state.ended = true;
                    state.blocks.push_back(Err(e));
                }
            }
            drop(state);
            self.changed.notify_all();
        }
        let mut state = self.lock();
        state.running = false;
        let again = Self::wants_run(&mut state);
        drop(state);
        self.changed.notify_all();
        if again {
            self.start();
        }
    }
}

/// Where [`ReadAhead::read_into`] puts the bytes it reads.
trait Sink {
    /// Bytes still wanted.
    fn left(&self) -> usize;
    /// Takes the next `bytes` (at most [`left`](Self::left)).
    fn put(&mut self, bytes: &[u8]);
    /// Reads every byte still wanted from `file` at `at`, with ordinary reads.
    fn read_rest(&mut self, file: &File, at: u64) -> io::Result<()>;
}

/// A caller's buffer being filled.
struct Filling<'a> {
    buf: &'a mut [u8],
    done: usize,
}

impl Sink for Filling<'_> {
    fn left(&self) -> usize {
        self.buf.len() - self.done
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.done..self.done + bytes.len()].copy_from_slice(bytes);
        self.done += bytes.len();
    }

    fn read_rest(&mut self, file: &File, at: u64) -> io::Result<()> {
        file.read_exact_at(&mut self.buf[self.done..], at)
    }
}

/// A caller's vector being extended up to `end` bytes.
struct Appending<'a> {
    out: &'a mut Vec<u8>,
    end: usize,
}

impl Sink for Appending<'_> {
    fn left(&self) -> usize {
        self.end.saturating_sub(self.out.len())
    }

    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn read_rest(&mut self, file: &File, at: u64) -> io::Result<()> {
        // The rare fallback: zero-fill the rest, then read into it.
        let start = self.out.len();
        self.out.resize(self.end, 0);
        file.read_exact_at(&mut self.out[start..], at)
    }
}

/// One read-ahead run, as handed to the runner. Dropped unrun (the runtime shutting down),
/// it ends the read-ahead, so the reader falls back to ordinary reads instead of waiting.
struct ReadRun {
    lane: Arc<Lane>,
    ended: bool,
}

impl ReadRun {
    fn run(mut self) {
        self.lane.read_blocks();
        self.ended = true;
    }
}

impl Drop for ReadRun {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut state = self.lane.lock();
        state.lost = true;
        state.running = false;
        drop(state);
        self.lane.changed.notify_all();
    }
}

/// The aligned block of `file` at `at`, read into `spare` if given (a buffer of
/// `READ_BLOCK + ALIGN` bytes); `None` at or past its end.
fn read_block(file: &File, at: u64, spare: Option<Vec<u8>>) -> io::Result<Option<Block>> {
    let mut data = spare
        .filter(|d| d.len() == READ_BLOCK + ALIGN)
        .unwrap_or_else(|| vec![0u8; READ_BLOCK + ALIGN]);
    let start = data.as_ptr().align_offset(ALIGN).min(ALIGN);
    let mut len = 0;
    while len < READ_BLOCK {
        match file.read_at(&mut data[start + len..start + READ_BLOCK], at + len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if len % ALIGN != 0 {
            // Only the file's end is unaligned.
            break;
        }
    }
    Ok((len > 0).then_some(Block {
        offset: at,
        data,
        start,
        len,
    }))
}

/// The open file `file` opened again with `O_DIRECT` (through `/proc/self/fd`, so it is the
/// same file even if its path was replaced since), if the system allows it.
#[cfg(target_os = "linux")]
fn reopen_direct(file: &File) -> Option<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let direct = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .ok()?;
    same_file(file, &direct).then_some(direct)
}

#[cfg(not(target_os = "linux"))]
fn reopen_direct(_file: &File) -> Option<File> {
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::work::{Inline, ThreadPerWork};

    /// The read-ahead tests run with runs on threads of their own, and inline.
    fn runners() -> [Arc<dyn Runner>; 2] {
        [Arc::new(ThreadPerWork), Arc::new(Inline)]
    }

    fn open(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Continue the run with this many bytes.
        Append(usize),
        /// Write this many bytes at an arbitrary offset (a new run).
        Seek(u64, usize),
        Flush,
        Sync,
        Read(u64, usize),
        SetLen(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1usize..300_000).prop_map(Op::Append),
            1 => (0u64..3_000_000, 1usize..100_000).prop_map(|(o, n)| Op::Seek(o, n)),
            1 => Just(Op::Flush),
            1 => Just(Op::Sync),
            1 => (0u64..3_000_000, 1usize..50_000).prop_map(|(o, n)| Op::Read(o, n)),
            1 => (0u64..3_000_000).prop_map(Op::SetLen),
        ]
    }

    fn pattern(seed: u64, n: usize) -> Vec<u8> {
        (0..n as u64)
            .map(|i| (i.wrapping_mul(31).wrapping_add(seed) >> 3) as u8)
            .collect()
    }

    fn apply(model: &mut Vec<u8>, offset: u64, data: &[u8]) {
        let end = offset as usize + data.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(data);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the sequence of writes, seeks, reads, syncs and truncations, the file
        /// (read through the writer and through a fresh handle) holds what a plain
        /// in-memory model of the same operations holds.
        #[test]
        fn the_file_matches_a_plain_model(
            start in 0u64..20_000,
            ops in prop::collection::vec(op(), 1..24),
            buffered in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let mut w = DirectWriter::new(open(&path), &path);
            if buffered {
                // As on a file system without O_DIRECT.
                w.direct = None;
            }
            let mut model = Vec::new();
            let mut next = start;
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Append(n) => {
                        let data = pattern(i as u64, n);
                        w.write_at(next, &data).unwrap();
                        apply(&mut model, next, &data);
                        next += n as u64;
                    }
                    Op::Seek(offset, n) => {
                        let data = pattern(i as u64 + 1000, n);
                        w.write_at(offset, &data).unwrap();
                        apply(&mut model, offset, &data);
                        next = offset + n as u64;
                    }
                    Op::Flush => w.flush().unwrap(),
                    Op::Sync => w.sync_data().unwrap(),
                    Op::Read(offset, n) => {
                        let mut got = vec![0u8; n];
                        let mut filled = 0;
                        while filled < n {
                            let k = w.read_at(&mut got[filled..], offset + filled as u64).unwrap();
                            if k == 0 { break; }
                            filled += k;
                        }
                        let from = (offset as usize).min(model.len());
                        let to = (offset as usize + n).min(model.len());
                        prop_assert_eq!(&got[..filled], &model[from..to]);
                    }
                    Op::SetLen(len) => {
                        w.set_len(len).unwrap();
                        model.resize(len as usize, 0);
                    }
                }
            }
            w.flush().unwrap();
            drop(w);
            let on_disk = std::fs::read(&path).unwrap();
            prop_assert_eq!(on_disk.len(), model.len());
            prop_assert!(on_disk == model, "the file differs from the model");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Reads mostly in order (as a download makes them), with jumps back and forth and
        /// past the end, return exactly the file's bytes, or an error past its end, whether
        /// they fill a buffer or are appended to a vector (and whatever block buffers the
        /// read-ahead reuses).
        #[test]
        fn read_ahead_returns_the_file_s_bytes(
            size in 0usize..1_500_000,
            reads in prop::collection::vec((0u8..10, 1usize..40_000, any::<u64>()), 1..80),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let content = pattern(9, size);
            std::fs::write(&path, &content).unwrap();
            for runner in runners() {
                let reader = ReadAhead::new(File::open(&path).unwrap(), runner);
                let mut next = 0u64;
                for &(kind, len, jump) in &reads {
                    // Mostly the next bytes; sometimes anywhere, including past the end.
                    let offset = if kind < 8 { next } else { jump % (size as u64 + 50_000) };
                    // Into a caller's buffer, or appended after what a vector holds.
                    let (got, buf) = if kind % 2 == 0 {
                        let mut buf = vec![0u8; len];
                        (reader.read_exact_at(&mut buf, offset), buf)
                    } else {
                        let mut out = vec![7u8; 3];
                        let got = reader.read_append(&mut out, offset, len);
                        prop_assert_eq!(&out[..3], &[7u8; 3][..]);
                        (got, out.split_off(3))
                    };
                    let end = offset as usize + len;
                    if end <= size {
                        prop_assert!(got.is_ok(), "{got:?}");
                        prop_assert!(buf[..] == content[offset as usize..end]);
                    } else {
                        prop_assert!(got.is_err());
                    }
                    next = offset + len as u64;
                }
            }
        }
    }

    #[test]
    fn read_ahead_reads_the_open_file_even_after_its_path_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let old = pattern(1, 3 * READ_BLOCK + 5);
        for runner in runners() {
            std::fs::write(&path, &old).unwrap();
            let reader = ReadAhead::new(File::open(&path).unwrap(), runner);
            let newer = dir.path().join("g");
            std::fs::write(&newer, pattern(2, 3 * READ_BLOCK + 5)).unwrap();
            std::fs::rename(&newer, &path).unwrap();
            let mut got = vec![0u8; old.len()];
            for (i, piece) in got.chunks_mut(16_372).enumerate() {
                reader.read_exact_at(piece, (i * 16_372) as u64).unwrap();
            }
            assert!(got == old);
        }
    }

    #[test]
    fn losing_o_direct_midway_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = DirectWriter::new(open(&path), &path);
        let data = pattern(3, BUF + 3 * ALIGN + 77);
        w.write_at(0, &data[..BUF + ALIGN + 5]).unwrap();
        // As after a write the file system refused with EINVAL.
        w.direct = None;
        w.write_at((BUF + ALIGN + 5) as u64, &data[BUF + ALIGN + 5..])
            .unwrap();
        w.sync_all().unwrap();
        drop(w);
        assert!(std::fs::read(&path).unwrap() == data);
    }

    #[test]
    fn a_second_flush_or_the_drop_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = DirectWriter::new(open(&path), &path);
        w.write_at(0, &pattern(1, ALIGN * 3 + 100)).unwrap();
        w.sync_all().unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        w.flush().unwrap();
        w.sync_data().unwrap();
        drop(w);
        // The file was not written again (its modification time is what was set).
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), old);
        assert_eq!(std::fs::read(&path).unwrap(), pattern(1, ALIGN * 3 + 100));
    }

    #[test]
    fn a_long_sequential_write_bypasses_the_cache_on_this_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = DirectWriter::new(open(&path), &path);
        // Not asserted: tmpfs and other systems refuse O_DIRECT and must still work.
        let direct = w.is_direct();
        let data = pattern(7, 3 * BUF + 12_345);
        for (i, piece) in data.chunks(16_348).enumerate() {
            w.write_at((i * 16_348) as u64, piece).unwrap();
        }
        w.sync_all().unwrap();
        drop(w);
        assert!(std::fs::read(&path).unwrap() == data, "direct: {direct}");
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        let mut h = FileHasher::new();
        h.update(bytes);
        h.finish()
    }

    /// A hasher that has seen `bytes`.
    fn seen(bytes: &[u8]) -> FileHasher {
        let mut h = FileHasher::new();
        h.update(bytes);
        h
    }

    /// Reads `from..until` of `reader` in pieces of `piece` bytes: whether every read
    /// succeeded, and the bytes read.
    fn read_range(reader: &ReadAhead, from: u64, until: u64, piece: usize) -> (bool, Vec<u8>) {
        let mut got = Vec::new();
        let mut at = from;
        while at < until {
            let n = piece.min((until - at) as usize);
            let mut buf = vec![0u8; n];
            if reader.read_exact_at(&mut buf, at).is_err() {
                return (false, got);
            }
            got.extend_from_slice(&buf);
            at += n as u64;
        }
        (true, got)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Read in one sequence from `from` to `until` in pieces of any size, around the
        /// page cache or through it, the reader gets the file's bytes and the hasher given
        /// back has seen exactly the file's bytes `0..until`: the prefix it came with, then
        /// the range, hashed by the runs.
        #[test]
        fn read_ahead_hashes_exactly_the_range_read(
            size in 0usize..1_800_000,
            from_part in 0.0f64..1.0,
            until_part in 0.0f64..1.0,
            piece in 1usize..200_000,
            cached in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let content = pattern(5, size);
            std::fs::write(&path, &content).unwrap();
            let from = (size as f64 * from_part) as usize;
            let until = from + ((size - from) as f64 * until_part) as usize;
            for runner in runners() {
                let reader = ReadAhead::hashing(
                    File::open(&path).unwrap(),
                    runner,
                    seen(&content[..from]),
                    from as u64,
                    until as u64,
                );
                let reader = if cached { reader.through_page_cache() } else { reader };
                let (ok, got) = read_range(&reader, from as u64, until as u64, piece);
                prop_assert!(ok);
                prop_assert!(got[..] == content[from..until]);
                let hasher = reader.take_hasher();
                prop_assert!(hasher.is_some(), "the hasher was not given back");
                prop_assert_eq!(hasher.unwrap().finish(), sha(&content[..until]));
                prop_assert!(reader.take_hasher().is_none(), "the hasher came back twice");
            }
        }
    }

    #[test]
    fn an_empty_range_gives_the_hasher_back_as_it_came() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(6, 1000)).unwrap();
        for runner in runners() {
            let reader = ReadAhead::hashing(File::open(&path).unwrap(), runner, seen(b"x"), 7, 7);
            assert_eq!(
                reader.take_hasher().map(FileHasher::finish),
                Some(sha(b"x"))
            );
        }
    }

    #[test]
    fn a_file_shorter_than_the_range_gives_no_hasher() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content = pattern(7, READ_BLOCK + 5000);
        std::fs::write(&path, &content).unwrap();
        for runner in runners() {
            let until = content.len() as u64 + 1;
            let reader =
                ReadAhead::hashing(File::open(&path).unwrap(), runner, seen(&[]), 0, until);
            let (ok, got) = read_range(&reader, 0, until, 16_384);
            assert!(!ok, "a read past the end succeeded");
            assert!(got[..] == content[..got.len()]);
            assert!(reader.take_hasher().is_none());
        }
    }

    #[test]
    fn a_reader_that_stops_early_gives_no_hasher_and_drops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content = pattern(8, 6 * READ_BLOCK);
        std::fs::write(&path, &content).unwrap();
        for runner in runners() {
            let until = content.len() as u64;
            let reader = ReadAhead::hashing(
                File::open(&path).unwrap(),
                runner.clone(),
                seen(&[]),
                0,
                until,
            );
            let (ok, _) = read_range(&reader, 0, 100_000, 16_384);
            assert!(ok);
            assert!(reader.take_hasher().is_none());
            // Dropped with runs possibly under way: they end after their block.
            let other = ReadAhead::hashing(File::open(&path).unwrap(), runner, seen(&[]), 0, until);
            let (ok, _) = read_range(&other, 0, 1000, 1000);
            assert!(ok);
            drop(other);
        }
    }

    #[test]
    fn a_read_out_of_sequence_gives_no_hasher() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content = pattern(9, 3 * READ_BLOCK);
        std::fs::write(&path, &content).unwrap();
        for runner in runners() {
            let until = content.len() as u64;
            let reader =
                ReadAhead::hashing(File::open(&path).unwrap(), runner, seen(&[]), 0, until);
            let (ok, _) = read_range(&reader, 0, until, 100_000);
            assert!(ok);
            // Back to the start: the read-ahead restarts, its bytes may differ from the
            // ones hashed.
            let (ok, _) = read_range(&reader, 0, 10, 10);
            assert!(ok);
            assert!(reader.take_hasher().is_none());
        }
    }

    #[test]
    fn a_plain_read_ahead_has_no_hasher() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(1, 1000)).unwrap();
        let reader = ReadAhead::new(File::open(&path).unwrap(), Arc::new(Inline));
        let (ok, _) = read_range(&reader, 0, 1000, 100);
        assert!(ok);
        assert!(reader.take_hasher().is_none());
    }

    /// The blocks queued ahead of `reader` now.
    fn queued(reader: &ReadAhead) -> usize {
        let ahead = reader.ahead.lock().unwrap();
        ahead
            .lane
            .as_ref()
            .map_or(0, |lane| lane.lock().blocks.len())
    }

    #[test]
    fn read_ahead_fills_its_queue_behind_the_reader_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content = pattern(4, 10 * READ_BLOCK);
        std::fs::write(&path, &content).unwrap();
        for runner in runners() {
            let reader = ReadAhead::new(File::open(&path).unwrap(), runner);
            let mut buf = vec![0u8; 1000];
            reader.read_exact_at(&mut buf, 0).unwrap();
            assert!(buf[..] == content[..1000]);
            // The next blocks come while the reader does something else, up to the queue.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while queued(&reader) < READ_QUEUE && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert_eq!(queued(&reader), READ_QUEUE);
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(queued(&reader), READ_QUEUE);
            let mut rest = vec![0u8; content.len() - 1000];
            reader.read_exact_at(&mut rest, 1000).unwrap();
            assert!(rest[..] == content[1000..]);
        }
    }
}
