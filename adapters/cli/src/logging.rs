//! Where the process logs and how: stderr (ANSI colours only on a terminal), or, for
//! `serve --log-file FILE`, that file (never coloured) re-opened on SIGHUP. The server's
//! startup line and SIGUSR1 status summaries use the [`SERVER_TARGET`] target, shown at the
//! default verbosity.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::log_file::LogFile;

/// The tracing target of the server's own operator lines (startup, status, reopen).
pub const SERVER_TARGET: &str = "vserv::server";

static LOG_FILE: OnceLock<LogFile> = OnceLock::new();

/// The filter directives for `verbose` (`-v` count); a server always shows its operator
/// lines.
pub fn filter_directives(verbose: u8, serving: bool) -> String {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    if serving && verbose == 0 {
        format!("{level},{SERVER_TARGET}=info")
    } else {
        level.to_owned()
    }
}

/// Installs the global subscriber: `RUST_LOG` if set, else [`filter_directives`]; into
/// `log_file` when given (created or appended to), else stderr.
pub fn init(verbose: u8, serving: bool, log_file: Option<&Path>) -> std::io::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(filter_directives(verbose, serving)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log_file {
        Some(path) => {
            let file = LogFile::open(path)?;
            builder.with_ansi(false).with_writer(file.clone()).init();
            // Only the first call gets here: `init` would have panicked on a second.
            let _ = LOG_FILE.set(file);
        }
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

/// Re-opens the `--log-file` (SIGHUP), if logging goes to one; `Ok(false)` if it does not.
pub fn reopen() -> std::io::Result<bool> {
    match LOG_FILE.get() {
        Some(file) => file.reopen().map(|()| true),
        None => Ok(false),
    }
}
