//! The OpenSSH side of `vserv bench transfer --vs-ssh`: the same file uploaded and
//! downloaded with `scp` and `sftp` under each of OpenSSH's fast ciphers against a loopback
//! `sshd`, one round at a time between vserv's own rounds, and the ratios of vserv's
//! medians to OpenSSH's best.

use std::path::Path;

use serde::Serialize;

use super::cpu::CpuTimes;
use super::samples::{Samples, Summary};
use super::sshd::{CIPHERS, Sshd, Tool};

/// The ratio vserv should reach against OpenSSH's best cipher, each way.
const TARGET_RATIO: f64 = 1.2;

/// One OpenSSH client and cipher, measured both ways.
struct Case {
    tool: Tool,
    cipher: &'static str,
    upload: Samples,
    download: Samples,
}

/// Every OpenSSH case, measured round by round against one `sshd`.
pub(super) struct OpenSsh {
    sshd: Sshd,
    cases: Vec<Case>,
    /// `ssh HOST true`, once per round.
    sessions: Samples,
    fsync: bool,
}

impl OpenSsh {
    /// Starts a loopback `sshd` with its keys and configs in `dir`; `fsync` makes each
    /// copy be flushed to disk, as vserv's are.
    pub(super) fn start(dir: &Path, fsync: bool) -> anyhow::Result<OpenSsh> {
        let sshd = Sshd::start(dir)?;
        let cases = [Tool::Scp, Tool::Sftp]
            .into_iter()
            .flat_map(|tool| {
                CIPHERS.into_iter().map(move |cipher| Case {
                    tool,
                    cipher,
                    upload: Samples::default(),
                    download: Samples::default(),
                })
            })
            .collect();
        Ok(OpenSsh {
            sshd,
            cases,
            sessions: Samples::default(),
            fsync,
        })
    }

    /// One round: every case uploads `src` to `remote` and downloads it to `local`, each
    /// copy checked by size and deleted after.
    pub(super) fn round(
        &mut self,
        src: &Path,
        remote: &Path,
        local: &Path,
        size: u64,
    ) -> anyhow::Result<()> {
        let client = || CpuTimes::of_self().map(|t| t.children);
        let sshd = &self.sshd;
        self.sessions
            .run(client, || sshd.cpu(), || sshd.session(CIPHERS[0]))?;
        for case in &mut self.cases {
            case.upload.run(
                client,
                || sshd.cpu(),
                || sshd.copy(true, case.tool, case.cipher, src, remote, self.fsync),
            )?;
            check_and_remove(remote, size)?;
            case.download.run(
                client,
                || sshd.cpu(),
                || sshd.copy(false, case.tool, case.cipher, src, local, self.fsync),
            )?;
            check_and_remove(local, size)?;
        }
        Ok(())
    }

    /// The comparison with vserv's `upload` and `download`.
    pub(super) fn report(&self, size: u64, upload: &Summary, download: &Summary) -> VsSsh {
        let cases: Vec<SshCase> = self
            .cases
            .iter()
            .map(|c| SshCase {
                tool: c.tool,
                cipher: c.cipher,
                upload: c.upload.summary(size),
                download: c.download.summary(size),
            })
            .collect();
        let best = |pick: fn(&SshCase) -> &Summary, vserv: &Summary| {
            let best = cases
                .iter()
                .max_by(|a, b| pick(a).mb_per_s.total_cmp(&pick(b).mb_per_s))?;
            let ssh = pick(best);
            let ratio = (ssh.mb_per_s > 0.0).then(|| vserv.mb_per_s / ssh.mb_per_s);
            Some(Best {
                tool: best.tool,
                cipher: best.cipher,
                mb_per_s: ssh.mb_per_s,
                cpu_s_per_gib: ssh.cpu_s_per_gib,
                vserv_mb_per_s: vserv.mb_per_s,
                vserv_cpu_s_per_gib: vserv.cpu_s_per_gib,
                ratio,
                met: ratio.is_some_and(|r| r >= TARGET_RATIO),
            })
        };
        let mut setup = self.sessions.seconds().to_vec();
        setup.sort_by(f64::total_cmp);
        VsSsh {
            ssh_session_seconds: setup.get(setup.len() / 2).copied().unwrap_or(0.0),
            upload: best(|c| &c.upload, upload),
            download: best(|c| &c.download, download),
            target_ratio: TARGET_RATIO,
            fsync: if self.fsync {
                "both sides flush every copy to disk: vserv's server fsyncs an upload and \
                 its client a download; scp is followed by `sync FILE`, sftp uses `put -f` \
                 (fsync@openssh.com) and `get -f`"
            } else {
                "vserv fsyncs every copy (the server an upload, the client a download), \
                 OpenSSH does not (--ssh-fsync charges OpenSSH the same)"
            },
            cases,
        }
    }
}

/// Fails unless `path` holds `size` bytes, then deletes it.
fn check_and_remove(path: &Path, size: u64) -> anyhow::Result<()> {
    let got = std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| anyhow::anyhow!("the OpenSSH copy {} is missing: {e}", path.display()))?;
    if got != size {
        anyhow::bail!("the OpenSSH copy has {got} bytes, not {size}");
    }
    std::fs::remove_file(path)?;
    Ok(())
}

/// One OpenSSH client and cipher, both ways.
#[derive(Serialize, Debug)]
pub(super) struct SshCase {
    tool: Tool,
    cipher: &'static str,
    upload: Summary,
    download: Summary,
}

/// OpenSSH's fastest case one way, against vserv.
#[derive(Serialize, Debug)]
pub(super) struct Best {
    tool: Tool,
    cipher: &'static str,
    mb_per_s: f64,
    cpu_s_per_gib: Option<f64>,
    vserv_mb_per_s: f64,
    vserv_cpu_s_per_gib: Option<f64>,
    /// vserv's median MB/s over this case's.
    ratio: Option<f64>,
    /// Whether the ratio reaches the target.
    met: bool,
}

/// The OpenSSH comparison of a `vserv bench transfer --vs-ssh` report.
#[derive(Serialize, Debug)]
pub(super) struct VsSsh {
    upload: Option<Best>,
    download: Option<Best>,
    target_ratio: f64,
    /// What each side flushes to disk.
    fsync: &'static str,
    /// Median time of `ssh HOST true`: every OpenSSH copy includes connecting and
    /// authenticating, which vserv's figures (one session logged in before the clock
    /// starts) do not.
    ssh_session_seconds: f64,
    cases: Vec<SshCase>,
}

impl VsSsh {
    /// The comparison as table lines.
    pub(super) fn table(&self, s: &mut String) {
        use std::fmt::Write as _;
        let cpu = |c: Option<f64>| c.map_or("n/a".to_owned(), |c| format!("{c:.2}"));
        let _ = writeln!(
            s,
            "OpenSSH (loopback sshd, medians; CPU = client + server seconds per GiB):"
        );
        for c in &self.cases {
            let _ = writeln!(
                s,
                "  {:<4} {:<30} upload {:>7.1} MB/s cpu {:>5} s/GiB   download {:>7.1} MB/s cpu {:>5} s/GiB",
                c.tool.name(),
                c.cipher,
                c.upload.mb_per_s,
                cpu(c.upload.cpu_s_per_gib),
                c.download.mb_per_s,
                cpu(c.download.cpu_s_per_gib),
            );
        }
        for (name, best) in [("upload", &self.upload), ("download", &self.download)] {
            if let Some(b) = best {
                let _ = writeln!(
                    s,
                    "{name:<8} vserv {:.1} MB/s ({} s/GiB) vs best OpenSSH {} {} {:.1} MB/s \
                     ({} s/GiB): {}x (target >= {}x: {})",
                    b.vserv_mb_per_s,
                    cpu(b.vserv_cpu_s_per_gib),
                    b.tool.name(),
                    b.cipher,
                    b.mb_per_s,
                    cpu(b.cpu_s_per_gib),
                    b.ratio.map_or("n/a".to_owned(), |r| format!("{r:.2}")),
                    self.target_ratio,
                    if b.met { "met" } else { "NOT met" }
                );
            }
        }
        let _ = writeln!(s, "fsync: {}", self.fsync);
        let _ = writeln!(
            s,
            "each OpenSSH copy includes its connection and login (`ssh HOST true`: {:.3} s); \
             vserv's session is logged in before the clock starts",
            self.ssh_session_seconds
        );
    }
}
