//! `vserv bench transfer`: upload then download a generated file over loopback, MB/s each
//! way, and the server's peak resident memory.
//!
//! Each of `--runs` rounds uploads the file, downloads it, checks the copy and deletes both
//! copies; the report gives each direction's median (which the target is judged on), its
//! range and every run, since one run on a shared machine can be ±15% off.
//!
//! The server runs as a separate process (this binary's `serve`, on 127.0.0.1:0 with a
//! throwaway data directory, its benchmark user created offline first), so its peak RSS
//! (`VmHWM` in `/proc/PID/status`) is its own: read after the upload and after the
//! download. The client is this process, driving `vserv_blocking::transfer` exactly as
//! `vserv put` / `vserv get` do. Each direction also reports the CPU seconds per GiB of the
//! client (this process) and of the server process.
//!
//! `--vs-ssh` starts a loopback OpenSSH server too and, in every round after vserv's own
//! transfers, copies the same file both ways with `scp` and `sftp` under each of OpenSSH's
//! fast ciphers (`vs_ssh.rs`), then prints the ratios of vserv to OpenSSH's best.

mod cpu;
mod samples;
mod sshd;
mod vs_ssh;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use rand::RngExt;
use serde::Serialize;
use vserv_blocking::Client;
use vserv_blocking::transfer::{self, DEFAULT_WINDOW, TransferOptions};
use vserv_core::Fingerprint;
use vserv_core::commands::{Command, Credential, SecretBytes};
use vserv_service::client::ClientOptions;

use self::cpu::CpuTimes;
use self::samples::{Samples, Summary};
use super::server::ServerProcess;
use super::{Machine, Report};

const USER: &str = "bench";
const PASSWORD: &str = "bench-password-1";
/// Throughput target, each way (MB/s, 10^6 bytes).
const TARGET_MB_S: f64 = 500.0;
/// Server peak RSS target.
const TARGET_RSS_KIB: u64 = 64 * 1024;

/// `vserv bench transfer` options.
#[derive(Args, Debug)]
pub struct TransferArgs {
    /// File size: bytes, or with a unit (KiB, MiB, GiB, KB, MB, GB), e.g. 1GiB.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Chunk requests kept in flight (1-256).
    #[arg(long, default_value_t = DEFAULT_WINDOW as u16,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub window: u16,
    /// Directory for the generated file, the server's data and the download (default: the
    /// system's temporary directory). Needs about three times --size free.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Upload-then-download rounds; each direction is reported by its median (1-100).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub runs: u16,
    /// Compare with OpenSSH: start a loopback sshd (/usr/sbin/sshd) and copy the same file
    /// with scp and sftp under each of its fast ciphers in every round.
    #[arg(long)]
    pub vs_ssh: bool,
    /// With --vs-ssh: flush OpenSSH's copies to disk too (`sync FILE` after scp, `-f` for
    /// sftp), as vserv flushes its own.
    #[arg(long, requires = "vs_ssh")]
    pub ssh_fsync: bool,
}

/// A size such as `1GiB`, `512MiB`, `100MB` or `12345`.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .with_context(|| format!("'{s}' is not a size (e.g. 1GiB, 100MB, 4096)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => bail!("unknown size unit '{other}' (use KiB, MiB, GiB, KB, MB, GB)"),
    };
    n.checked_mul(scale)
        .ok_or_else(|| anyhow!("size '{s}' is too large"))
}

/// One direction of the transfer, over every run.
#[derive(Serialize, Debug)]
pub struct Direction {
    /// The median run's seconds and MB/s.
    seconds: f64,
    mb_per_s: f64,
    /// The slowest and fastest runs, MB/s.
    min_mb_per_s: f64,
    max_mb_per_s: f64,
    /// Every run's MB/s, in order.
    runs_mb_per_s: Vec<f64>,
    /// The server's peak RSS (VmHWM) once this direction's last run ended, KiB.
    server_peak_rss_kib: Option<u64>,
    /// Whether the median meets the target.
    met: bool,
    /// Median CPU seconds per GiB of client and server together, and of each.
    cpu_s_per_gib: Option<f64>,
    client_cpu_s_per_gib: Option<f64>,
    server_cpu_s_per_gib: Option<f64>,
}

impl Direction {
    /// The direction of `size`-byte transfers measured in `samples`.
    fn new(size: u64, samples: &Samples, server_peak_rss_kib: Option<u64>) -> Direction {
        let seconds = samples.seconds();
        let cpu = samples.summary(size);
        let mut sorted = seconds.to_vec();
        sorted.sort_by(f64::total_cmp);
        // The median run (the slower middle one for an even count).
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
        let mb = |s: f64| mb_per_s(size, s);
        Direction {
            seconds: median,
            mb_per_s: mb(median),
            min_mb_per_s: sorted.last().copied().map_or(0.0, mb),
            max_mb_per_s: sorted.first().copied().map_or(0.0, mb),
            runs_mb_per_s: seconds.iter().copied().map(mb).collect(),
            server_peak_rss_kib,
            met: mb(median) >= TARGET_MB_S,
            cpu_s_per_gib: cpu.cpu_s_per_gib,
            client_cpu_s_per_gib: cpu.client_cpu_s_per_gib,
            server_cpu_s_per_gib: cpu.server_cpu_s_per_gib,
        }
    }
}

/// The `vserv bench transfer` report.
#[derive(Serialize, Debug)]
pub struct TransferReport {
    bench: &'static str,
    machine: Machine,
    size_bytes: u64,
    window: u16,
    runs: u16,
    upload: Direction,
    download: Direction,
    /// The server's peak RSS over the whole run, KiB.
    server_peak_rss_kib: Option<u64>,
    target_mb_per_s: f64,
    target_rss_kib: u64,
    rss_met: Option<bool>,
    /// With `--vs-ssh`: the same transfers with OpenSSH, and the ratios.
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_ssh: Option<vs_ssh::VsSsh>,
}

/// Writes `size` bytes of random-looking data (a random MiB, each copy stamped with its
/// index so no two MiB are equal).
fn generate(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut block = vec![0u8; 1 << 20];
    let mut rng = rand::rng();
    for word in block.chunks_mut(8) {
        let r: u64 = rng.random();
        word.copy_from_slice(&r.to_le_bytes()[..word.len()]);
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut left = size;
    let mut index: u64 = 0;
    while left > 0 {
        block[..8].copy_from_slice(&index.to_le_bytes());
        let n = usize::try_from(left).map_or(block.len(), |l| l.min(block.len()));
        out.write_all(&block[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
        index += 1;
    }
    // On disk before the clock starts, so its write-back does not compete with the upload.
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e6
    } else {
        0.0
    }
}

/// Runs the transfer benchmark.
pub fn run(args: &TransferArgs) -> anyhow::Result<TransferReport> {
    let dir = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("creating a temporary directory")?;
    if args.vs_ssh
        && let Some(why) = sshd::missing()
    {
        bail!("--vs-ssh: {why}");
    }
    let exe = std::env::current_exe().context("locating the vserv binary")?;
    let data = dir.path().join("data");
    let added = Process::new(&exe)
        .args(["user", "add", USER, "--admin", "--data"])
        .arg(&data)
        .env("VSERV_NEW_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .context("creating the benchmark user")?;
    if !added.status.success() {
        bail!(
            "creating the benchmark user failed: {}",
            String::from_utf8_lossy(&added.stderr).trim()
        );
    }
    let src = dir.path().join("source.bin");
    generate(&src, args.size)?;
    let server = ServerProcess::start(&exe, &["--data".as_ref(), data.as_os_str()])?;
    let mut options = ClientOptions::new(dir.path().join("known_servers"));
    let fingerprint: Fingerprint = server
        .fingerprint
        .parse()
        .map_err(|e| anyhow!("the server's fingerprint does not parse: {e}"))?;
    options.pinned = Some(fingerprint);
    let mut client = Client::connect(&server.addr, &options)
        .with_context(|| format!("connecting to {}", server.addr))?;
    client
        .call(&Command::Login {
            user: USER.to_owned(),
            credential: Credential::Password(SecretBytes::new(PASSWORD.as_bytes().to_vec())),
        })
        .context("logging in")?;
    let options = TransferOptions {
        resume: false,
        window: usize::from(args.window),
        ..TransferOptions::default()
    };

    let mut openssh = if args.vs_ssh {
        Some(vs_ssh::OpenSsh::start(
            &dir.path().join("ssh"),
            args.ssh_fsync,
        )?)
    } else {
        None
    };

    let dst = dir.path().join("download.bin");
    let (mut upload, mut download) = (Samples::default(), Samples::default());
    let (mut rss_up, mut rss_down) = (None, None);
    let client_cpu = || CpuTimes::of_self().map(|t| t.own);
    let server_pid = server.pid();
    let server_cpu = || CpuTimes::of(server_pid).map(|t| t.own);
    for _ in 0..args.runs {
        let up = upload.run(client_cpu, server_cpu, || {
            transfer::put_with(&mut client, &src, "bench.bin", &options, &mut |_, _| {})
                .context("uploading")
        })?;
        rss_up = server.peak_rss_kib();

        let down = download.run(client_cpu, server_cpu, || {
            transfer::get_with(&mut client, "bench.bin", &dst, &options, &mut |_, _| {})
                .context("downloading")
        })?;
        rss_down = server.peak_rss_kib();
        if down.sha256 != up.sha256 || down.size != args.size {
            bail!("the download differs from the upload");
        }
        // Free the disk space for the next round (no old version kept on the server).
        std::fs::remove_file(&dst).context("deleting the download")?;
        client
            .call(&Command::Del {
                path: "bench.bin".into(),
            })
            .context("deleting the upload")?;
        if let Some(ssh) = &mut openssh {
            ssh.round(&src, &dir.path().join("ssh_upload.bin"), &dst, args.size)?;
        }
    }
    client.quit().context("ending the session")?;
    drop(server);
    let (up_summary, down_summary): (Summary, Summary) =
        (upload.summary(args.size), download.summary(args.size));
    let vs_ssh = openssh.map(|o| o.report(args.size, &up_summary, &down_summary));

    let peak = rss_up.max(rss_down);
    Ok(TransferReport {
        bench: "transfer",
        machine: Machine::get(),
        size_bytes: args.size,
        window: args.window,
        runs: args.runs,
        upload: Direction::new(args.size, &upload, rss_up),
        download: Direction::new(args.size, &download, rss_down),
        server_peak_rss_kib: peak,
        target_mb_per_s: TARGET_MB_S,
        target_rss_kib: TARGET_RSS_KIB,
        rss_met: peak.map(|p| p <= TARGET_RSS_KIB),
        vs_ssh,
    })
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

impl Report for TransferReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench transfer: {} bytes ({:.2} GiB), window {}, {} run(s), server process \
             on 127.0.0.1 ({} CPUs)",
            self.size_bytes,
            self.size_bytes as f64 / (1u64 << 30) as f64,
            self.window,
            self.runs,
            self.machine.cpus
        );
        let rss = |r: Option<u64>| {
            r.map_or("n/a".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        let cpu = |c: Option<f64>| c.map_or("n/a".to_owned(), |c| format!("{c:.2}"));
        for (name, d) in [("upload", &self.upload), ("download", &self.download)] {
            let runs: Vec<String> = d.runs_mb_per_s.iter().map(|r| format!("{r:.0}")).collect();
            let _ = writeln!(
                s,
                "{name:<8} {:>8.1} MB/s median in {:.2} s (target >= {} MB/s: {}); runs {:.0}-{:.0} \
                 ({}); server peak RSS {}; CPU {} s/GiB (client {}, server {})",
                d.mb_per_s,
                d.seconds,
                self.target_mb_per_s,
                met(d.met),
                d.min_mb_per_s,
                d.max_mb_per_s,
                runs.join(", "),
                rss(d.server_peak_rss_kib),
                cpu(d.cpu_s_per_gib),
                cpu(d.client_cpu_s_per_gib),
                cpu(d.server_cpu_s_per_gib)
            );
        }
        let _ = writeln!(
            s,
            "server peak RSS {} (target <= {} MiB: {})",
            rss(self.server_peak_rss_kib),
            self.target_rss_kib / 1024,
            self.rss_met.map_or("unknown", met)
        );
        if let Some(v) = &self.vs_ssh {
            v.table(&mut s);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1GiB").ok(), Some(1 << 30));
        assert_eq!(parse_size("512MiB").ok(), Some(512 << 20));
        assert_eq!(parse_size("100MB").ok(), Some(100_000_000));
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }
}
