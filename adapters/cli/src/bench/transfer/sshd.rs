//! A throwaway OpenSSH server on 127.0.0.1 for `vserv bench transfer --vs-ssh`, and the
//! `scp`/`sftp` runs against it.
//!
//! Everything lives in a directory the caller owns: a host key and a client key made with
//! `ssh-keygen`, the client's public key as the only authorized key, an `sshd_config` passed
//! with `-f` (a free port found by binding 127.0.0.1:0 and releasing it, `StrictModes no`,
//! `UsePAM no`, public keys only) and a client config with the host key pinned. `sshd -D -e`
//! runs as the current user, under `setpriv --pdeathsig KILL` where that exists so it dies
//! with this process even if this process is killed; it is also killed when dropped, so
//! every return and unwind ends it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::cpu::CpuTimes;

/// Where the OpenSSH server is expected.
pub(super) const SSHD: &str = "/usr/sbin/sshd";
/// The privilege-separation directory OpenSSH insists on when started by root.
const PRIVSEP_DIR: &str = "/run/sshd";
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// OpenSSH's fast ciphers, each measured.
pub(super) const CIPHERS: [&str; 3] = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
];

/// The OpenSSH client program used for a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Tool {
    Scp,
    Sftp,
}

impl Tool {
    /// The program's name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Tool::Scp => "scp",
            Tool::Sftp => "sftp",
        }
    }
}

/// Why the comparison cannot run here, when it cannot.
pub(super) fn missing() -> Option<String> {
    if !Path::new(SSHD).is_file() {
        return Some(format!(
            "{SSHD} not found: install openssh-server to compare with OpenSSH"
        ));
    }
    for tool in ["ssh-keygen", "scp", "sftp", "ssh"] {
        if which(tool).is_none() {
            return Some(format!(
                "'{tool}' not found on PATH: install openssh-client to compare with OpenSSH"
            ));
        }
    }
    None
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A running loopback `sshd`; killed when dropped.
pub(super) struct Sshd {
    child: Child,
    dir: PathBuf,
    port: u16,
    /// Whether this run created [`PRIVSEP_DIR`] (removed again when dropped, if empty).
    made_privsep_dir: bool,
}

impl Sshd {
    /// Makes keys and configs in `dir` and starts `sshd -D -e -f DIR/sshd_config`, returning
    /// once it accepts connections.
    pub(super) fn start(dir: &Path) -> anyhow::Result<Sshd> {
        if let Some(why) = missing() {
            bail!(why);
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        for key in [&host_key, &client_key] {
            keygen(key)?;
        }
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.join("authorized_keys"),
        )
        .context("writing authorized_keys")?;
        let port = free_port()?;
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub"))
            .context("reading the host key")?;
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}", host_pub.trim()),
        )
        .context("writing known_hosts")?;
        let sftp_server = [
            "/usr/lib/openssh/sftp-server",
            "/usr/libexec/openssh/sftp-server",
        ]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("internal-sftp");
        let d = dir.display();
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile none\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 Subsystem sftp {sftp_server}\nLogLevel ERROR\n"
            ),
        )
        .context("writing sshd_config")?;
        std::fs::write(
            dir.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
                 StrictHostKeyChecking yes\n  BatchMode yes\n  Compression no\n  \
                 LogLevel ERROR\n"
            ),
        )
        .context("writing ssh_config")?;
        let made_privsep_dir = privsep_dir()?;
        let mut command = match which("setpriv") {
            Some(setpriv) => {
                let mut c = Process::new(setpriv);
                c.args(["--pdeathsig", "KILL", SSHD]);
                c
            }
            None => Process::new(SSHD),
        };
        let child = command
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {SSHD}"))?;
        let mut sshd = Sshd {
            child,
            dir: dir.to_owned(),
            port,
            made_privsep_dir,
        };
        sshd.wait_until_listening()?;
        Ok(sshd)
    }

    fn wait_until_listening(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for sshd")? {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!("sshd exited at start ({status}): {}", err.trim());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("sshd did not accept connections on 127.0.0.1:{}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The CPU time of the server: the listener and every session process it has reaped.
    /// Waits (briefly) until no session process is left, so a finished transfer's server
    /// side is counted in full.
    pub(super) fn cpu(&self) -> Option<Duration> {
        let pid = self.child.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        let started = Instant::now();
        while std::fs::read_to_string(&children).is_ok_and(|c| !c.trim().is_empty())
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        CpuTimes::of(pid).map(|t| t.total())
    }

    /// Copies `from` to `to` with `tool` and `cipher`: a local file to the server's path
    /// when `upload`, else the server's file to a local path; with `fsync`, the copy is
    /// flushed to disk before this returns (`sftp put -f`/`get -f`, or `sync FILE` after
    /// `scp`; both ends are on this machine).
    pub(super) fn copy(
        &self,
        upload: bool,
        tool: Tool,
        cipher: &str,
        from: &Path,
        to: &Path,
        fsync: bool,
    ) -> anyhow::Result<()> {
        match tool {
            Tool::Scp => {
                let remote = |p: &Path| format!("127.0.0.1:{}", p.display());
                let mut c = self.client(tool, cipher);
                if upload {
                    c.arg(from).arg(remote(to));
                } else {
                    c.arg(remote(from)).arg(to);
                }
                run(c)?;
                sync_if(fsync, to)
            }
            Tool::Sftp => {
                let verb = if upload { "put" } else { "get" };
                let flag = if fsync { "-f " } else { "" };
                self.sftp(
                    cipher,
                    &format!("{verb} {flag}{} {}\n", quoted(from), quoted(to)),
                )
            }
        }
    }

    /// Connects, authenticates and runs `true` with `ssh` (what every copy pays before
    /// its first byte).
    pub(super) fn session(&self, cipher: &str) -> anyhow::Result<()> {
        let mut c = Process::new("ssh");
        c.arg("-q")
            .arg("-F")
            .arg(self.dir.join("ssh_config"))
            .args([
                "-c",
                cipher,
                "-p",
                &self.port.to_string(),
                "127.0.0.1",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        run(c)
    }

    fn sftp(&self, cipher: &str, batch: &str) -> anyhow::Result<()> {
        let file = self.dir.join("sftp_batch");
        std::fs::write(&file, batch).context("writing the sftp batch file")?;
        let mut c = self.client(Tool::Sftp, cipher);
        c.arg("-b").arg(&file).arg("127.0.0.1");
        run(c)
    }

    fn client(&self, tool: Tool, cipher: &str) -> Process {
        let mut c = Process::new(tool.name());
        c.arg("-q")
            .arg("-F")
            .arg(self.dir.join("ssh_config"))
            .args(["-c", cipher, "-P", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.made_privsep_dir {
            // Only if empty: never anything another sshd put there.
            let _ = std::fs::remove_dir(PRIVSEP_DIR);
        }
    }
}

/// With `fsync`, flushes `path` to disk with `sync FILE`.
fn sync_if(fsync: bool, path: &Path) -> anyhow::Result<()> {
    if !fsync {
        return Ok(());
    }
    let mut sync = Process::new("sync");
    sync.arg(path);
    run(sync)
}

/// An sftp batch-file argument in double quotes.
fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// Runs a client command to its end; its standard error is the error if it fails.
fn run(mut command: Process) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    let mut c = Process::new("ssh-keygen");
    c.args(["-q", "-t", "ed25519", "-N", "", "-C", "vserv-bench", "-f"])
        .arg(path)
        .stdin(Stdio::null());
    run(c).context("making a key with ssh-keygen")
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Creates [`PRIVSEP_DIR`] if this process runs as root and it is missing (sshd refuses to
/// start as root without it; the system's service manager normally makes it). Returns
/// whether it was created.
fn privsep_dir() -> anyhow::Result<bool> {
    if Path::new(PRIVSEP_DIR).exists() || !running_as_root() {
        return Ok(false);
    }
    std::fs::create_dir(PRIVSEP_DIR)
        .map(|()| true)
        .map_err(|e| anyhow!("sshd needs {PRIVSEP_DIR} when run as root; creating it: {e}"))
}

/// Whether this process runs as root (the owner of its own /proc entry).
fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}
