//! Setting up an inbox folder: [`FolderConfig::to_toml`] writes a `folder.toml` that
//! [`FolderConfig::parse`] reads back as the same value (so a client builds it with the type
//! the server parses), and [`check_upload`] refuses an invalid one when it is uploaded,
//! at the upload's commit, instead of when someone first sends to the folder.

use super::delivery::{FOLDER_CONFIG, FolderConfig, INBOX_DIR, MAX_FOLDER_CONFIG};
use super::{FileError, UserPath};

impl FolderConfig {
    /// The `folder.toml` text of this configuration: one line per key set (`allow` always),
    /// each value a basic string with `"`, `\` and control characters escaped.
    pub fn to_toml(&self) -> String {
        let array = |values: &[String]| {
            let items: Vec<String> = values.iter().map(|v| basic_string(v)).collect();
            format!("[{}]", items.join(", "))
        };
        let mut out = String::from("# Who may deliver to this inbox folder (\"*\" is everyone).\n");
        out.push_str(&format!("allow = {}\n", array(&self.allow)));
        if let Some(hook) = &self.on_meta {
            out.push_str(&format!("on_meta = {}\n", array(hook)));
        }
        if let Some(hook) = &self.on_received {
            out.push_str(&format!("on_received = {}\n", array(hook)));
        }
        out
    }
}

/// `s` as a TOML basic string.
fn basic_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `path` (from a home's root) is an inbox folder's `folder.toml`:
/// `inbox/FOLDER/folder.toml`.
pub fn is_folder_config(path: &UserPath) -> bool {
    matches!(path.names(), [inbox, _, file] if inbox == INBOX_DIR && file == FOLDER_CONFIG)
}

/// Checks the content of an inbox folder's `folder.toml` as a delivery would read it: at
/// most [`MAX_FOLDER_CONFIG`] bytes of UTF-8 that [`FolderConfig::parse`] accepts. The
/// error names what is wrong (with its line).
pub fn check_content(bytes: &[u8]) -> Result<FolderConfig, String> {
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_FOLDER_CONFIG) {
        return Err(format!("larger than {MAX_FOLDER_CONFIG} bytes"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
    FolderConfig::parse(text)
}

/// The check of an upload (or move) to `path`: nothing for most paths; for a
/// `folder.toml` ([`is_folder_config`]) of `size` bytes, `read` gives its content and an
/// invalid one is refused with [`FileError::BadFolderConfig`].
pub fn check_upload(
    path: &UserPath,
    size: u64,
    read: impl FnOnce() -> Result<Vec<u8>, FileError>,
) -> Result<(), FileError> {
    if !is_folder_config(path) {
        return Ok(());
    }
    let refused = |reason: String| FileError::BadFolderConfig {
        path: path.to_string(),
        reason,
    };
    if size > MAX_FOLDER_CONFIG {
        return Err(refused(format!("larger than {MAX_FOLDER_CONFIG} bytes")));
    }
    check_content(&read()?).map(|_| ()).map_err(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> UserPath {
        match UserPath::from_names(p.split('/').map(str::to_owned).collect()) {
            Ok(p) => p,
            Err(e) => unreachable!("test path {p}: {e}"),
        }
    }

    #[test]
    fn written_configs_parse_back_to_the_same_value() {
        let config = FolderConfig {
            allow: vec!["alice".into(), "*".into()],
            on_meta: Some(vec!["/opt/hooks/check".into(), "a \"b\"\\\t\u{1}é".into()]),
            on_received: Some(vec!["/opt/hooks/done".into()]),
        };
        assert_eq!(FolderConfig::parse(&config.to_toml()), Ok(config));
        let empty = FolderConfig::default();
        assert_eq!(FolderConfig::parse(&empty.to_toml()), Ok(empty));
    }

    #[test]
    fn only_folder_configs_are_checked_and_errors_name_the_line() {
        assert!(is_folder_config(&path("inbox/default/folder.toml")));
        assert!(!is_folder_config(&path("inbox/folder.toml")));
        assert!(!is_folder_config(&path("x/default/folder.toml")));
        assert!(!is_folder_config(&path("inbox/default/sub/folder.toml")));
        let unread = || -> Result<Vec<u8>, FileError> { unreachable!("not a folder.toml") };
        assert!(check_upload(&path("inbox/default/other.toml"), 3, unread).is_ok());
        let bad = check_upload(&path("inbox/default/folder.toml"), 30, || {
            Ok(b"allow = [\"bob\"]\ndeny = [\"eve\"]\n".to_vec())
        });
        match bad {
            Err(FileError::BadFolderConfig { path, reason }) => {
                assert_eq!(path, "/inbox/default/folder.toml");
                assert!(reason.starts_with("line 2: unknown key 'deny'"), "{reason}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let big = check_upload(&path("inbox/d/folder.toml"), MAX_FOLDER_CONFIG + 1, || {
            unreachable!("too large to read")
        });
        assert!(matches!(big, Err(FileError::BadFolderConfig { .. })));
        assert!(check_content(b"\xff").is_err());
        assert!(check_content(b"allow = ['bob']").is_ok());
    }
}
