//! A benchmark's server as a separate process (`EXE serve --listen 127.0.0.1:0 ...`), so
//! the memory read from `/proc/PID/status` is the server's own; killed when dropped.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command as Process, Stdio};

use anyhow::{Context, anyhow};
use vserv_core::Fingerprint;

/// A running `vserv serve` process.
pub(super) struct ServerProcess {
    child: Child,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// The address it listens on, as printed.
    pub(super) addr: String,
    /// The server key fingerprint as printed.
    pub(super) fingerprint: String,
}

impl ServerProcess {
    /// Starts `exe serve --listen 127.0.0.1:0 ARGS...` and waits for its address and key.
    pub(super) fn start(exe: &Path, args: &[&OsStr]) -> anyhow::Result<ServerProcess> {
        let mut child = Process::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting the server process {}", exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("the server's output is not piped"))?;
        let mut server = ServerProcess {
            child,
            _stdout: BufReader::new(stdout),
            addr: String::new(),
            fingerprint: String::new(),
        };
        let mut line = String::new();
        server._stdout.read_line(&mut line)?;
        server.addr = line
            .strip_prefix("vserv listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| anyhow!("unexpected first line from the server: {line:?}"))?
            .to_owned();
        line.clear();
        server._stdout.read_line(&mut line)?;
        server.fingerprint = line
            .strip_prefix("server key fingerprint: ")
            .ok_or_else(|| anyhow!("unexpected second line from the server: {line:?}"))?
            .trim()
            .to_owned();
        Ok(server)
    }

    /// The printed fingerprint, parsed (to pin it).
    pub(super) fn key(&self) -> anyhow::Result<Fingerprint> {
        self.fingerprint
            .parse()
            .map_err(|e| anyhow!("the server's fingerprint does not parse: {e}"))
    }

    /// `VmHWM` (peak resident memory) of the server process, KiB (`None` where /proc is
    /// not available).
    pub(super) fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM")
    }

    /// `VmRSS` (resident memory now) of the server process, KiB.
    pub(super) fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS")
    }

    /// The server process's id (to read more of `/proc/PID`).
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
