//! `vserv bench crypto`: record-layer throughput against the raw primitives.
//!
//! Seven workloads on the same payload size, each keyed once up front:
//!
//! - `raw-seal`: AES-256-CBC (PKCS#7) in place, then HMAC-SHA256 over `IV || ciphertext`,
//!   using the `aes`/`cbc`/`hmac`/`sha2` crates directly, no framing, no copy of the input;
//! - `seal`: [`RecordKeys::seal`] into a reused output buffer (it copies the payload in);
//! - `raw-open`: HMAC-SHA256 verify, then CBC decrypt and unpad in place;
//! - `open`: [`RecordKeys::open`] in place;
//! - `seal-8`, `seal-16`, `seal-64`: 8, 16 or 64 records framed, then sealed together (their CBC
//!   chains interleaved, as a connection seals what it queued since its last write).
//!
//! IVs come from a counter, so no RNG cost is measured anywhere. Open workloads prepare a
//! batch of sealed messages untimed and time only opening them (each record can be opened
//! once, at its sequence number). Runs of the workloads are interleaved so background load
//! hits all of them alike; the report gives the median and best run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit};
use anyhow::{Context, anyhow, bail, ensure};
use clap::Args;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use vserv_core::secure::RecordKeys;
use vserv_core::secure::keys::expand;
use vserv_core::secure::record::record_body_len;
use vserv_core::wire::{CONTENT_APP, IV_LEN, MAX_PAYLOAD, TAG_LEN};

use super::stats::{max, median};
use super::{Machine, Report};

/// The target: `seal` at least this fraction of `raw-seal`.
const SEAL_TARGET: f64 = 0.90;

/// Work per timed batch (bytes of payload), so the clock is read rarely.
const BATCH_BYTES: usize = 1 << 20;

/// `vserv bench crypto` options.
#[derive(Args, Debug)]
pub struct CryptoArgs {
    /// Payload size in bytes; a `k` suffix means KiB. Repeat for several sizes.
    #[arg(long = "size", value_name = "BYTES", value_parser = parse_size, default_value = "16k")]
    pub sizes: Vec<usize>,
    /// Measured seconds per workload and size, split over --runs interleaved runs.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = super::parse_seconds)]
    pub seconds: Duration,
    /// Number of interleaved runs per workload (the report gives their median and best).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Also measure the components: CBC encryption alone, HMAC alone, a memcpy.
    #[arg(long)]
    pub detail: bool,
}

fn parse_size(s: &str) -> anyhow::Result<usize> {
    let t = s.trim();
    let (digits, unit) = match t.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1024),
        None => (t, 1),
    };
    let n: usize = digits
        .parse()
        .with_context(|| format!("'{s}' is not a size (bytes, or KiB with a k suffix)"))?;
    let n = n
        .checked_mul(unit)
        .ok_or_else(|| anyhow!("size '{s}' is too large"))?;
    if n == 0 || n > MAX_PAYLOAD {
        bail!("size must be between 1 and {MAX_PAYLOAD} bytes (one record), got {n}");
    }
    Ok(n)
}

/// One measured workload. `batch` does some operations and returns how many, with the time
/// they took (preparation excluded).
trait Workload {
    fn name(&self) -> &'static str;
    fn what(&self) -> &'static str;
    fn batch(&mut self) -> anyhow::Result<(u64, Duration)>;
}

/// Runs batches until `budget` of timed work; returns payload MB/s (10^6 bytes).
fn measure(w: &mut dyn Workload, size: usize, budget: Duration) -> anyhow::Result<(f64, f64)> {
    let mut ops = 0u64;
    let mut timed = Duration::ZERO;
    while timed < budget {
        let (n, t) = w.batch()?;
        ops += n;
        timed += t;
    }
    let secs = timed.as_secs_f64();
    let mb_s = ops as f64 * size as f64 / secs / 1e6;
    let ns_op = secs * 1e9 / ops as f64;
    Ok((mb_s, ns_op))
}

fn counter_iv(ctr: &mut u128) -> [u8; IV_LEN] {
    *ctr = ctr.wrapping_add(1);
    ctr.to_be_bytes()
}

fn padded_len(size: usize) -> usize {
    (size / 16 + 1) * 16
}

fn batch_len(size: usize) -> usize {
    (BATCH_BYTES / size).clamp(1, 4096)
}

fn test_keys() -> RecordKeys {
    RecordKeys::from_secret(expand(&[0x42; 32], b"vserv bench", &[]))
}

fn raw_keys() -> anyhow::Result<(Aes256, Hmac<Sha256>)> {
    let cipher = Aes256::new(&[0x11u8; 32].into());
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x22u8; 32])
        .map_err(|_| anyhow!("HMAC key rejected"))?;
    Ok((cipher, mac))
}

struct RawSeal {
    cipher: Aes256,
    mac: Hmac<Sha256>,
    buf: Vec<u8>,
    size: usize,
    ctr: u128,
    mode: RawMode,
}

#[derive(Clone, Copy, PartialEq)]
enum RawMode {
    CbcAndHmac,
    CbcOnly,
    HmacOnly,
}

impl RawSeal {
    fn new(size: usize, mode: RawMode) -> anyhow::Result<Self> {
        let (cipher, mac) = raw_keys()?;
        Ok(RawSeal {
            cipher,
            mac,
            buf: vec![0x5a; padded_len(size)],
            size,
            ctr: 0,
            mode,
        })
    }
}

impl Workload for RawSeal {
    fn name(&self) -> &'static str {
        match self.mode {
            RawMode::CbcAndHmac => "raw-seal",
            RawMode::CbcOnly => "cbc-encrypt",
            RawMode::HmacOnly => "hmac",
        }
    }

    fn what(&self) -> &'static str {
        match self.mode {
            RawMode::CbcAndHmac => "AES-256-CBC in place + HMAC-SHA256(IV||ct), no framing",
            RawMode::CbcOnly => "AES-256-CBC in place only",
            RawMode::HmacOnly => "HMAC-SHA256 over IV||padded ct only",
        }
    }

    fn batch(&mut self) -> anyhow::Result<(u64, Duration)> {
        let n = batch_len(self.size);
        let start = Instant::now();
        for _ in 0..n {
            let iv = counter_iv(&mut self.ctr);
            let ct_len = if self.mode == RawMode::HmacOnly {
                self.buf.len()
            } else {
                let enc = cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &iv.into());
                enc.encrypt_padded::<Pkcs7>(black_box(&mut self.buf), self.size)
                    .map_err(|_| anyhow!("padding buffer too small"))?
                    .len()
            };
            if self.mode != RawMode::CbcOnly {
                let mut mac = self.mac.clone();
                mac.update(&iv);
                mac.update(&self.buf[..ct_len]);
                black_box(mac.finalize().into_bytes());
            }
            black_box(&mut self.buf);
        }
        Ok((n as u64, start.elapsed()))
    }
}

struct Seal {
    keys: RecordKeys,
    payload: Vec<u8>,
    out: Vec<u8>,
    ctr: u128,
}

impl Workload for Seal {
    fn name(&self) -> &'static str {
        "seal"
    }

    fn what(&self) -> &'static str {
        "RecordKeys::seal into a reused Vec (frame, copy, CBC, HMAC(seq||len||IV||ct))"
    }

    fn batch(&mut self) -> anyhow::Result<(u64, Duration)> {
        let n = batch_len(self.payload.len());
        let start = Instant::now();
        for _ in 0..n {
            let iv = counter_iv(&mut self.ctr);
            self.out.clear();
            self.keys
                .seal(CONTENT_APP, black_box(&self.payload), iv, &mut self.out)?;
            black_box(&mut self.out);
        }
        Ok((n as u64, start.elapsed()))
    }
}

/// Records framed `together` at a time, then sealed, as a busy connection does between
/// writes.
struct SealTogether {
    together: usize,
    name: &'static str,
    what: &'static str,
    keys: RecordKeys,
    payload: Vec<u8>,
    out: Vec<u8>,
    ctr: u128,
}

impl Workload for SealTogether {
    fn name(&self) -> &'static str {
        self.name
    }

    fn what(&self) -> &'static str {
        self.what
    }

    fn batch(&mut self) -> anyhow::Result<(u64, Duration)> {
        let rounds = batch_len(self.payload.len()).div_ceil(self.together);
        let start = Instant::now();
        for _ in 0..rounds {
            for _ in 0..self.together {
                let iv = counter_iv(&mut self.ctr);
                self.keys.frame(CONTENT_APP, black_box(&self.payload), iv)?;
            }
            self.out.clear();
            self.keys.seal_framed(&mut self.out);
            black_box(&mut self.out);
        }
        Ok(((rounds * self.together) as u64, start.elapsed()))
    }
}

struct RawOpen {
    cipher: Aes256,
    mac: Hmac<Sha256>,
    msgs: Vec<u8>,
    size: usize,
    ctr: u128,
}

impl RawOpen {
    fn stride(&self) -> usize {
        IV_LEN + padded_len(self.size) + TAG_LEN
    }
}

impl Workload for RawOpen {
    fn name(&self) -> &'static str {
        "raw-open"
    }

    fn what(&self) -> &'static str {
        "HMAC-SHA256 verify, then AES-256-CBC decrypt + unpad in place, no framing"
    }

    fn batch(&mut self) -> anyhow::Result<(u64, Duration)> {
        let n = batch_len(self.size);
        let stride = self.stride();
        let ct_len = padded_len(self.size);
        self.msgs.resize(n * stride, 0);
        // Untimed: encrypt n messages.
        for msg in self.msgs.chunks_exact_mut(stride) {
            let iv = counter_iv(&mut self.ctr);
            let (head, tag) = msg.split_at_mut(IV_LEN + ct_len);
            let (iv_slot, ct) = head.split_at_mut(IV_LEN);
            iv_slot.copy_from_slice(&iv);
            ct[..self.size].fill(0x5a);
            let enc = cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &iv.into());
            enc.encrypt_padded::<Pkcs7>(ct, self.size)
                .map_err(|_| anyhow!("padding buffer too small"))?;
            let mut mac = self.mac.clone();
            mac.update(head);
            tag.copy_from_slice(&mac.finalize().into_bytes());
        }
        let start = Instant::now();
        for msg in self.msgs.chunks_exact_mut(stride) {
            let (head, tag) = msg.split_at_mut(IV_LEN + ct_len);
            let mut mac = self.mac.clone();
            mac.update(head);
            mac.verify_slice(tag)
                .map_err(|_| anyhow!("raw-open: tag mismatch"))?;
            let (iv, ct) = head.split_at_mut(IV_LEN);
            let iv: [u8; IV_LEN] = (&*iv).try_into()?;
            let dec = cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &iv.into());
            let plain = dec
                .decrypt_padded::<Pkcs7>(ct)
                .map_err(|_| anyhow!("raw-open: bad padding"))?;
            black_box(plain);
        }
        Ok((n as u64, start.elapsed()))
    }
}

struct Open {
    sender: RecordKeys,
    receiver: RecordKeys,
    payload: Vec<u8>,
    frames: Vec<u8>,
    ctr: u128,
}

impl Workload for Open {
    fn name(&self) -> &'static str {
        "open"
    }

    fn what(&self) -> &'static str {
        "RecordKeys::open in place (length check, HMAC verify, CBC decrypt + unpad)"
    }

    fn batch(&mut self) -> anyhow::Result<(u64, Duration)> {
        let n = batch_len(self.payload.len());
        let stride = 4 + record_body_len(self.payload.len());
        // Untimed: seal n records at the receiver's coming sequence numbers.
        self.frames.clear();
        for _ in 0..n {
            let iv = counter_iv(&mut self.ctr);
            self.sender
                .seal(CONTENT_APP, &self.payload, iv, &mut self.frames)?;
        }
        ensure!(self.frames.len() == n * stride, "unexpected record size");
        let start = Instant::now();
        for frame in self.frames.chunks_exact_mut(stride) {
            let (content_type, payload) = self.receiver.open(&mut frame[4..])?;
            black_box((content_type, payload));
        }
        Ok((n as u64, start.elapsed()))
    }
}

struct Memcpy {
    payload: Vec<u8>,
    buf: Vec<u8>,
}

impl Workload for Memcpy {
    fn name(&self) -> &'static str {
        "memcpy"
    }

    fn what(&self) -> &'static str {
        "copy of the payload into a reused buffer (what seal does besides crypto)"
    }

    fn batch(&mut self) -> anyhow::Result<(u64, Duration)> {
        let n = batch_len(self.payload.len());
        let start = Instant::now();
        for _ in 0..n {
            self.buf.clear();
            self.buf.extend_from_slice(black_box(&self.payload));
            black_box(&mut self.buf);
        }
        Ok((n as u64, start.elapsed()))
    }
}

fn workloads(size: usize, detail: bool) -> anyhow::Result<Vec<Box<dyn Workload>>> {
    let payload = vec![0x5a; size];
    let mut w: Vec<Box<dyn Workload>> = vec![
        Box::new(RawSeal::new(size, RawMode::CbcAndHmac)?),
        Box::new(Seal {
            keys: test_keys(),
            payload: payload.clone(),
            out: Vec::with_capacity(4 + record_body_len(size)),
            ctr: 0,
        }),
    ];
    let (cipher, mac) = raw_keys()?;
    w.push(Box::new(RawOpen {
        cipher,
        mac,
        msgs: Vec::new(),
        size,
        ctr: 0,
    }));
    w.push(Box::new(Open {
        sender: test_keys(),
        receiver: test_keys(),
        payload: payload.clone(),
        frames: Vec::new(),
        ctr: 0,
    }));
    let together = [
        (
            8,
            "seal-8",
            "RecordKeys::frame x8, then seal_framed: 8 CBC chains interleaved",
        ),
        (
            16,
            "seal-16",
            "RecordKeys::frame x16, then seal_framed: 16 CBC chains interleaved",
        ),
        (
            64,
            "seal-64",
            "RecordKeys::frame x64, then seal_framed: 64 CBC chains interleaved",
        ),
    ];
    for (together, name, what) in together {
        w.push(Box::new(SealTogether {
            together,
            name,
            what,
            keys: test_keys(),
            payload: payload.clone(),
            out: Vec::new(),
            ctr: 0,
        }));
    }
    if detail {
        w.push(Box::new(RawSeal::new(size, RawMode::CbcOnly)?));
        w.push(Box::new(RawSeal::new(size, RawMode::HmacOnly)?));
        w.push(Box::new(Memcpy {
            buf: Vec::with_capacity(size),
            payload,
        }));
    }
    Ok(w)
}

/// One workload's results at one size.
#[derive(Serialize, Debug)]
pub struct Row {
    name: &'static str,
    what: &'static str,
    size: usize,
    median_mb_s: f64,
    best_mb_s: f64,
    median_ns_per_op: f64,
    runs_mb_s: Vec<f64>,
}

/// Ratios of the record layer to the raw primitives at one size.
#[derive(Serialize, Debug)]
pub struct Ratios {
    size: usize,
    seal_vs_raw_median: f64,
    seal_vs_raw_best: f64,
    open_vs_raw_median: f64,
    open_vs_raw_best: f64,
    seal_target: f64,
    seal_target_met: bool,
}

/// The `vserv bench crypto` report.
#[derive(Serialize, Debug)]
pub struct CryptoReport {
    bench: &'static str,
    machine: Machine,
    unit: &'static str,
    iv: &'static str,
    seconds_per_workload: f64,
    runs: u32,
    rows: Vec<Row>,
    ratios: Vec<Ratios>,
}

/// Runs the crypto benchmark.
pub fn run(args: &CryptoArgs) -> anyhow::Result<CryptoReport> {
    let per_run = args.seconds / args.runs;
    let warmup = per_run.min(Duration::from_millis(300));
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for &size in &args.sizes {
        let mut ws = workloads(size, args.detail)?;
        for w in ws.iter_mut() {
            measure(w.as_mut(), size, warmup)
                .with_context(|| format!("warming up {}", w.name()))?;
        }
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); ws.len()];
        for _ in 0..args.runs {
            for (w, (mb, ns)) in ws.iter_mut().zip(results.iter_mut()) {
                let (m, n) = measure(w.as_mut(), size, per_run)
                    .with_context(|| format!("measuring {}", w.name()))?;
                mb.push(m);
                ns.push(n);
            }
        }
        let first = rows.len();
        for (w, (mb, ns)) in ws.iter().zip(results) {
            rows.push(Row {
                name: w.name(),
                what: w.what(),
                size,
                median_mb_s: median(&mb),
                best_mb_s: max(&mb),
                median_ns_per_op: median(&ns),
                runs_mb_s: mb,
            });
        }
        let r = &rows[first..];
        let ratio = |a: usize, b: usize, best: bool| {
            let (x, y) = if best {
                (r[a].best_mb_s, r[b].best_mb_s)
            } else {
                (r[a].median_mb_s, r[b].median_mb_s)
            };
            if y > 0.0 { x / y } else { 0.0 }
        };
        let seal_vs_raw_median = ratio(1, 0, false);
        ratios.push(Ratios {
            size,
            seal_vs_raw_median,
            seal_vs_raw_best: ratio(1, 0, true),
            open_vs_raw_median: ratio(3, 2, false),
            open_vs_raw_best: ratio(3, 2, true),
            seal_target: SEAL_TARGET,
            seal_target_met: seal_vs_raw_median >= SEAL_TARGET,
        });
    }
    Ok(CryptoReport {
        bench: "crypto",
        machine: Machine::get(),
        unit: "MB/s = 10^6 bytes of payload per second, one thread",
        iv: "counter IV (no RNG in any timed loop)",
        seconds_per_workload: args.seconds.as_secs_f64(),
        runs: args.runs,
        rows,
        ratios,
    })
}

impl Report for CryptoReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench crypto: {} interleaved runs, {:.2} s measured per workload; {}; {}",
            self.runs, self.seconds_per_workload, self.iv, self.unit
        );
        let _ = writeln!(
            s,
            "{:<12} {:>7} {:>12} {:>12} {:>12}  what",
            "workload", "bytes", "median MB/s", "best MB/s", "ns/op"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:<12} {:>7} {:>12.1} {:>12.1} {:>12.0}  {}",
                r.name, r.size, r.median_mb_s, r.best_mb_s, r.median_ns_per_op, r.what
            );
        }
        for r in &self.ratios {
            let _ = writeln!(
                s,
                "{} B: seal/raw-seal {:.1}% (median) {:.1}% (best), target >= {:.0}%: {}; \
                 open/raw-open {:.1}% (median) {:.1}% (best)",
                r.size,
                r.seal_vs_raw_median * 100.0,
                r.seal_vs_raw_best * 100.0,
                r.seal_target * 100.0,
                if r.seal_target_met { "met" } else { "MISSED" },
                r.open_vs_raw_median * 100.0,
                r.open_vs_raw_best * 100.0,
            );
        }
        s
    }
}

/// The bound `vserv bench seal` prints beside the transit numbers: raw AES-256-CBC +
/// HMAC-SHA256 over `size`-byte payloads (this benchmark's `raw-seal` row), measured for
/// about `budget`; payload MB/s (10^6 bytes).
pub(super) fn raw_seal_mb_s(size: usize, budget: Duration) -> anyhow::Result<f64> {
    let mut w = RawSeal::new(size, RawMode::CbcAndHmac)?;
    measure(&mut w, size, budget.min(Duration::from_millis(200)))?;
    Ok(measure(&mut w, size, budget)?.0)
}
