//! The harness shared by the end-to-end tests of the `vserv` binary: a server child
//! process on a loopback port, the outcome of one `vserv` run, and a scratch directory
//! to run `vserv` in.
//!
//! Each test file compiles its own copy of this module (`mod common;`) and uses only part
//! of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// The `vserv` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_vserv");

/// A `vserv serve` child process, killed when dropped (also when a test panics).
pub struct Server {
    child: Child,
    /// Kept open so the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    /// The address it listens on (`127.0.0.1:PORT`).
    pub addr: String,
    /// The server key fingerprint, as printed; clients pin it (no first-contact notes).
    pub fingerprint: String,
}

impl Server {
    /// Starts a server on 127.0.0.1, port chosen by the OS, keeping its state in `data`,
    /// with the default configuration but no free-space reserve (`DATA.toml` beside `data`),
    /// and its stderr discarded.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, None, None)
    }

    /// Like [`Server::start`], with `--config config` when given, and its stderr appended
    /// to `stderr_log` when given (discarded otherwise).
    pub fn start_with(data: &Path, config: Option<&Path>, stderr_log: Option<&Path>) -> Server {
        Server::launch(data, config, stderr_log, None)
    }

    /// Like [`Server::start_with`] with `config`, the server logging to `log_file`
    /// (`--log-file`) and its stderr discarded.
    pub fn start_logging(data: &Path, config: &Path, log_file: &Path) -> Server {
        Server::launch(data, Some(config), None, Some(log_file))
    }

    fn launch(
        data: &Path,
        config: Option<&Path>,
        stderr_log: Option<&Path>,
        log_file: Option<&Path>,
    ) -> Server {
        let stderr = match stderr_log {
            Some(path) => Stdio::from(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("server log"),
            ),
            None => Stdio::null(),
        };
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        match config {
            Some(config) => {
                cmd.arg("--config").arg(config);
            }
            None => {
                // The default free-space reserve (1 GiB) would make these tests depend on the
                // disk they run on; the reserve has tests of its own.
                let config = data.with_extension("toml");
                std::fs::write(&config, "[files]\nmin_free_bytes = 0\n").expect("server config");
                cmd.arg("--config").arg(&config);
            }
        }
        if let Some(log_file) = log_file {
            cmd.arg("--log-file").arg(log_file);
        }
        let mut child = cmd
            .arg("--data")
            .arg(data)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn vserv serve");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        // From here on a panic drops (kills) the child.
        let mut server = Server {
            child,
            _stdout: stdout,
            addr: String::new(),
            fingerprint: String::new(),
        };
        let mut line = String::new();
        server
            ._stdout
            .read_line(&mut line)
            .expect("read serve output");
        server.addr = line
            .strip_prefix("vserv listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line from vserv serve: {line:?}"))
            .to_owned();
        line.clear();
        server
            ._stdout
            .read_line(&mut line)
            .expect("read serve output");
        server.fingerprint = line
            .strip_prefix("server key fingerprint: ")
            .unwrap_or_else(|| panic!("unexpected second line from vserv serve: {line:?}"))
            .trim()
            .to_owned();
        server
    }

    /// The next line the server prints after its address and fingerprint (e.g. the UDP
    /// address line), without its newline.
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self._stdout
            .read_line(&mut line)
            .expect("read serve output");
        line.trim_end().to_owned()
    }

    /// Sends `signal` (a `kill -s` name such as `USR1`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal}");
    }

    /// Stops the server and waits until it has exited (so its data directory is free).
    pub fn stop(mut self) {
        self.kill();
    }

    /// SIGKILL, and wait until the process is gone (so its data directory is free).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The outcome of one `vserv` run.
pub struct Run {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, as written.
    pub stdout: Vec<u8>,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Run {
    /// Collects a finished process's outcome.
    pub fn from_output(output: Output) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = output;
        Run {
            code: status.code(),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Standard output, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit status 0, and returns the run.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "expected success; stdout: {} stderr: {}",
            self.text(),
            self.stderr
        );
        self
    }

    /// Asserts exit status 1 with exactly one line on stderr, starting `vserv: `, and
    /// returns that line.
    pub fn fails(self) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "expected failure; stdout: {} stderr: {}",
            self.text(),
            self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one-line reason expected: {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with("vserv: "), "{:?}", lines[0]);
        lines[0].to_owned()
    }
}

/// A scratch directory (also `HOME` of every run), and the `vserv` invocations of one test.
pub struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A fresh, empty scratch directory.
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The scratch directory itself.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `name` in the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The data directory, `data` in the scratch directory (not created here).
    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// [`Env::data`] as a command-line argument.
    pub fn data_arg(&self) -> String {
        self.data().to_str().expect("utf-8 path").to_owned()
    }

    /// `vserv ARGS` with a clean environment (no `VSERV_PASSWORD`, `VSERV_NEW_PASSWORD`,
    /// `RUST_LOG`; `HOME` is the scratch directory) plus `env`, no terminal on stdin.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("VSERV_PASSWORD")
            .env_remove("VSERV_NEW_PASSWORD")
            .env_remove("RUST_LOG")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs [`Env::command`], with nothing on stdin.
    pub fn vserv(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run::from_output(self.command(args, env).output().expect("run vserv"))
    }

    /// Adds user `name` (an admin with `admin`) with `password` to the data directory, as
    /// `vserv user add` does before the server starts; fails the test if it fails.
    pub fn add_user(&self, name: &str, admin: bool, password: &str) {
        let data = self.data_arg();
        let mut args = vec!["user", "add", name];
        if admin {
            args.push("--admin");
        }
        args.extend(["--data", data.as_str()]);
        self.vserv(&args, &[("VSERV_NEW_PASSWORD", password)]).ok();
    }

    /// Runs [`Env::command`] with `stdin` as its input.
    pub fn vserv_with_input(&self, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
        let mut child = self
            .command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vserv");
        let mut input = child.stdin.take().expect("piped stdin");
        // A command that does not read its input may exit first: ignore a broken pipe.
        let _ = input.write_all(stdin);
        drop(input);
        Run::from_output(child.wait_with_output().expect("wait for vserv"))
    }

    /// `ARGS --server ADDR --known-servers FILE --server-key FPR`: the connection options
    /// for `server`, pinning its key, with a known_servers file in the scratch directory.
    pub fn client_args(&self, server: &Server, args: &[&str]) -> Vec<String> {
        let known = self.path("known_servers");
        let known = known.to_str().expect("utf-8 path");
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(
            [
                "--server",
                &server.addr,
                "--known-servers",
                known,
                "--server-key",
                &server.fingerprint,
            ]
            .map(str::to_owned),
        );
        all
    }

    /// Runs `vserv ARGS` connected to `server` (see [`Env::client_args`]), nothing on stdin.
    pub fn client(&self, server: &Server, args: &[&str], env: &[(&str, &str)]) -> Run {
        let all = self.client_args(server, args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.vserv(&all, env)
    }

    /// Runs `vserv ARGS` connected to `server` (see [`Env::client_args`]), with `stdin` as
    /// its input.
    pub fn client_with_input(
        &self,
        server: &Server,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: &[u8],
    ) -> Run {
        let all = self.client_args(server, args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.vserv_with_input(&all, env, stdin)
    }
}

/// Waits up to 20 s until the file at `path` holds `needle`; returns its text.
pub fn wait_for_text(path: &Path, needle: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{needle:?} never appeared in {}: {text:?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The pids of the processes whose command line mentions `dir`.
pub fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().into_owned();
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}
