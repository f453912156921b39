//! Running an operator's program: the inbox folder hooks (`files/delivery.rs`) and the
//! external query handlers of tables (`tables/external.rs`) both go through here.
//!
//! A program runs without a shell, with an empty environment but `PATH`, in `/`, with its
//! input on its standard input; it is killed when it runs longer than its timeout. Its
//! standard output (when kept) and standard error go to unnamed temporary files read after
//! it ends: no reader thread, and a program that writes much cannot block on a full pipe.
//! Only the first bytes of each are kept. [`in_programs_dir`] says whether a path is a
//! program the operator approved (a file directly inside the configured directory).
//! Everything here waits for the program: callers run it as blocking work.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

/// Bytes of a program's standard error kept.
pub const MAX_STDERR: u64 = 4096;

/// How long starting a program is retried while its file is busy.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// The `PATH` a program runs with (its environment is otherwise empty).
const PROGRAM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why a program did not run to a successful exit.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The argument list is empty.
    #[error("no program named")]
    NoProgram,
    /// It could not be started (missing, not executable, no temporary file).
    #[error("could not be started: {0}")]
    Start(#[source] std::io::Error),
    /// It ran longer than its timeout and was killed.
    #[error("did not finish within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
    /// Waiting for it failed (it was killed).
    #[error("could not be waited for: {0}")]
    Wait(#[source] std::io::Error),
    /// It exited unsuccessfully; `stderr` holds the first non-empty line of its standard
    /// error, if any.
    #[error("{}", failure_text(*.code, .stderr.as_deref()))]
    Failed {
        /// Its exit status; `None` when a signal ended it.
        code: Option<i32>,
        /// The first non-empty line of its standard error.
        stderr: Option<String>,
    },
    /// It wrote more than the caller keeps to its standard output.
    #[error("wrote more than {max} bytes")]
    TooMuchOutput {
        /// The most bytes kept.
        max: u64,
    },
}

fn failure_text(code: Option<i32>, stderr: Option<&str>) -> String {
    match (stderr, code) {
        (Some(line), _) => line.to_owned(),
        (None, Some(code)) => format!("exit status {code}"),
        (None, None) => "killed by a signal".to_owned(),
    }
}

/// Whether `program` is an absolute path to a file directly inside `dir` (no `.` or `..`
/// on the way): the operator's approved programs.
pub fn in_programs_dir(dir: &Path, program: &Path) -> bool {
    let plain = program
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    program.is_absolute() && plain && program.parent() == Some(dir)
}

/// Runs `argv` with `input` on its standard input, killing it after `timeout`. With
/// `stdout_max`, its standard output is returned (failing with
/// [`ProgramError::TooMuchOutput`] past that many bytes); without, it is discarded and the
/// result is empty.
pub fn run(
    argv: &[String],
    input: &[u8],
    timeout: Duration,
    stdout_max: Option<u64>,
) -> Result<Vec<u8>, ProgramError> {
    let [program, args @ ..] = argv else {
        return Err(ProgramError::NoProgram);
    };
    let mut stderr = tempfile::tempfile().map_err(ProgramError::Start)?;
    let mut stdout = match stdout_max {
        Some(_) => Some(tempfile::tempfile().map_err(ProgramError::Start)?),
        None => None,
    };
    let mut child = spawn(program, args, stdout.as_ref(), &stderr).map_err(ProgramError::Start)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input may close it early: not an error.
        let _ = stdin.write_all(input);
    }
    let status = wait_or_kill(&mut child, timeout)?;
    if !status.success() {
        return Err(ProgramError::Failed {
            code: status.code(),
            stderr: first_line(&mut stderr),
        });
    }
    match (stdout.as_mut(), stdout_max) {
        (Some(file), Some(max)) => {
            let mut out = Vec::new();
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.take(max.saturating_add(1)).read_to_end(&mut out))
                .map_err(ProgramError::Wait)?;
            if u64::try_from(out.len()).unwrap_or(u64::MAX) > max {
                return Err(ProgramError::TooMuchOutput { max });
            }
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

/// The first non-empty line of what was written to `file`, within [`MAX_STDERR`] bytes.
fn first_line(file: &mut std::fs::File) -> Option<String> {
    let mut kept = Vec::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(MAX_STDERR).read_to_end(&mut kept));
    let text = String::from_utf8_lossy(&kept);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

/// Starts `program` with its outputs into the given files (standard output to nowhere
/// without one). Retried for a short while when the program file is busy (being written,
/// or open for writing in a process about to exec something else), yielding in between.
fn spawn(
    program: &str,
    args: &[String],
    stdout: Option<&std::fs::File>,
    stderr: &std::fs::File,
) -> std::io::Result<Child> {
    let start = Instant::now();
    loop {
        let out = match stdout {
            Some(f) => Stdio::from(f.try_clone()?),
            None => Stdio::null(),
        };
        let spawned = Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", PROGRAM_PATH)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(Stdio::from(stderr.try_clone()?))
            .spawn();
        match spawned {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && start.elapsed() < BUSY_RETRY =>
            {
                std::thread::yield_now();
            }
            other => return other,
        }
    }
}

/// Waits for `child`, killing it after `timeout`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Result<ExitStatus, ProgramError> {
    match child.wait_timeout(timeout) {
        Ok(Some(status)) => Ok(status),
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(ProgramError::TimedOut(timeout))
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(ProgramError::Wait(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_must_sit_directly_in_the_directory() {
        let dir = Path::new("/etc/vserv/hooks");
        assert!(in_programs_dir(dir, Path::new("/etc/vserv/hooks/check")));
        for bad in [
            "/etc/vserv/hooks/sub/check",
            "/etc/vserv/hooks/../check",
            "/etc/vserv/check",
            "check",
            "/etc/vserv/hooks",
        ] {
            assert!(!in_programs_dir(dir, Path::new(bad)), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn output_is_kept_bounded_and_failures_are_typed() {
        let sh = |script: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let t = Duration::from_secs(5);
        assert_eq!(run(&sh("cat"), b"hi", t, Some(10)).unwrap(), b"hi");
        assert!(run(&sh("cat"), b"hi", t, None).unwrap().is_empty());
        assert!(matches!(
            run(&sh("cat"), b"0123456789x", t, Some(10)),
            Err(ProgramError::TooMuchOutput { max: 10 })
        ));
        let failed = run(&sh("echo; echo ' why ' >&2; exit 3"), b"", t, Some(10));
        assert!(
            matches!(&failed, Err(ProgramError::Failed { code: Some(3), stderr: Some(s) }) if s == "why"),
            "{failed:?}"
        );
        let slow = run(&sh("sleep 5"), b"", Duration::from_millis(100), Some(10));
        assert!(matches!(slow, Err(ProgramError::TimedOut(_))), "{slow:?}");
        assert!(matches!(
            run(&["/nonexistent/program".to_owned()], b"", t, None),
            Err(ProgramError::Start(_))
        ));
        assert!(matches!(
            run(&[], b"", t, None),
            Err(ProgramError::NoProgram)
        ));
    }
}
