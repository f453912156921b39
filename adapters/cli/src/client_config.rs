//! The client's defaults: the `VSERV_SERVER` environment variable and the optional client
//! config file `~/.vserv/config.toml`. Every client command's flags win, then the
//! environment, then the file, then the built-in default.
//!
//! ```toml
//! server = "files.example.org:7117"   # default --server (VSERV_SERVER overrides it)
//! user = "alice"                      # default --user
//! key = "/home/alice/.vserv/alice.key"  # default --key (a leading ~/ is the home directory)
//! known_servers = "/home/alice/.vserv/known_servers"  # default --known-servers
//! ```
//!
//! Every key is optional; an unknown key or a malformed file is an error reported by the
//! first client command (the server, `keygen` and the other offline commands ignore it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

/// The environment variable naming the default server (`HOST:PORT`).
pub const SERVER_ENV: &str = "VSERV_SERVER";

/// The client config file's contents.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Default server address.
    pub server: Option<String>,
    /// Default user to log in as.
    pub user: Option<String>,
    /// Default login key file.
    pub key: Option<PathBuf>,
    /// Default known servers file.
    pub known_servers: Option<PathBuf>,
}

/// Why the client config file could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientConfigError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error, as text.
        reason: String,
    },
    /// The file is not valid TOML of the documented shape.
    #[error("invalid client config {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
}

/// `~/.vserv/config.toml`, if HOME is set.
pub fn default_path() -> Option<PathBuf> {
    home().map(|h| h.join(".vserv").join("config.toml"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Parses the file's text; `~/` at the start of a path is expanded with `home`.
pub fn parse(
    text: &str,
    path: &Path,
    home: Option<&Path>,
) -> Result<ClientConfig, ClientConfigError> {
    let mut config: ClientConfig = toml::from_str(text).map_err(|e| ClientConfigError::Parse {
        path: path.to_path_buf(),
        reason: e.message().to_owned(),
    })?;
    for p in [&mut config.key, &mut config.known_servers]
        .into_iter()
        .flatten()
    {
        if let (Ok(rest), Some(home)) = (p.strip_prefix("~"), home) {
            *p = home.join(rest);
        }
    }
    Ok(config)
}

/// Reads the file at `path`; a missing file is the empty config.
pub fn load(path: &Path) -> Result<ClientConfig, ClientConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path, home().as_deref()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
        Err(e) => Err(ClientConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// This process's client config (read once), or why it could not be read.
pub fn current() -> &'static Result<ClientConfig, ClientConfigError> {
    static CURRENT: OnceLock<Result<ClientConfig, ClientConfigError>> = OnceLock::new();
    CURRENT.get_or_init(|| match default_path() {
        Some(path) => load(&path),
        None => Ok(ClientConfig::default()),
    })
}

/// The file's values, or the empty config when it could not be read (the error is reported
/// by [`check`]).
fn values() -> &'static ClientConfig {
    static EMPTY: ClientConfig = ClientConfig {
        server: None,
        user: None,
        key: None,
        known_servers: None,
    };
    current().as_ref().unwrap_or(&EMPTY)
}

/// Fails if the config file exists but is unusable (so a typo is not silently ignored).
pub fn check() -> Result<(), ClientConfigError> {
    current().as_ref().map(|_| ()).map_err(Clone::clone)
}

/// The server default, from the environment value `env`, else the file's `file`, else
/// `builtin`. An empty environment value counts as unset.
pub fn pick_server(env: Option<String>, file: Option<&str>, builtin: &str) -> String {
    env.filter(|s| !s.is_empty())
        .or_else(|| file.map(str::to_owned))
        .unwrap_or_else(|| builtin.to_owned())
}

/// The default of `--server`: `VSERV_SERVER`, else the config file's `server`, else
/// [`crate::DEFAULT_LISTEN`].
pub fn default_server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| {
        pick_server(
            std::env::var(SERVER_ENV).ok(),
            values().server.as_deref(),
            crate::DEFAULT_LISTEN,
        )
    })
}

/// The default of `--user` (the config file's `user`), if any.
pub fn default_user() -> Option<&'static str> {
    values().user.as_deref()
}

/// The default of `--key` (the config file's `key`), if any.
pub fn default_key() -> Option<&'static str> {
    values().key.as_deref().and_then(Path::to_str)
}

/// The default of `--known-servers` (the config file's `known_servers`), if any.
pub fn default_known_servers() -> Option<&'static str> {
    values().known_servers.as_deref().and_then(Path::to_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_then_env_then_file_then_builtin() {
        assert_eq!(pick_server(Some("e:1".into()), Some("f:1"), "d:1"), "e:1");
        assert_eq!(pick_server(Some(String::new()), Some("f:1"), "d:1"), "f:1");
        assert_eq!(pick_server(None, Some("f:1"), "d:1"), "f:1");
        assert_eq!(pick_server(None, None, "d:1"), "d:1");
    }

    #[test]
    fn the_file_parses_expands_home_and_rejects_unknown_keys() {
        let path = Path::new("/h/.vserv/config.toml");
        let text = "server = \"s:1\"\nuser = \"alice\"\nkey = \"~/.vserv/a.key\"\n";
        let config = parse(text, path, Some(Path::new("/h"))).unwrap();
        assert_eq!(config.server.as_deref(), Some("s:1"));
        assert_eq!(config.user.as_deref(), Some("alice"));
        assert_eq!(config.key.as_deref(), Some(Path::new("/h/.vserv/a.key")));
        assert_eq!(config.known_servers, None);
        let err = parse("sever = \"x\"\n", path, None).unwrap_err();
        assert!(err.to_string().contains("sever"), "{err}");
        assert_eq!(parse("", path, None).unwrap(), ClientConfig::default());
    }
}
