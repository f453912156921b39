//! Secret key files: one 32-byte secret in a small, strictly parsed text format.
//!
//! ```text
//! <label>\n
//! <64 lowercase hex digits>\n
//! check <16 lowercase hex digits>\n
//! ```
//!
//! `<label>` names the format and version (for example `vserv-identity-v1`); it is one word of
//! ASCII letters, digits, `-`, `_` or `.`. The check line holds the first 8 bytes of
//! SHA-256(`vserv-key-check` || label || secret), so a damaged secret (one flipped digit is
//! another valid key) is refused instead of silently becoming another identity. Files written
//! before the check line existed have only the first two lines and are still read. The final
//! newline is optional; nothing else is accepted (no spaces, comments, `\r` or further
//! lines). Files are created with mode 0600
//! through a temporary file, fsync and a no-clobber link, so a key is never half-written and
//! an existing key is never replaced. Reading refuses files that group or others can access,
//! like ssh does.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::atomic::{self, Existing};

/// Largest key file accepted when reading; a real one is under 200 bytes.
const MAX_LEN: u64 = 4096;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file does not exist.
    #[error("no key file at {path}")]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// Writing was refused because a file already exists there (keys are never overwritten).
    #[error("{path} already exists; refusing to overwrite a key (move it away first)")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The path exists but is not a regular file.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The offending path.
        path: PathBuf,
    },
    /// The file is accessible by group or others.
    #[error(
        "permissions {mode:04o} for {path} are too open: a key file must not be accessible by \
         group or others; run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not in the documented format; the file was left untouched.
    #[error("malformed key file {path}: {reason} (the file was left untouched)")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never contains secret material).
        reason: String,
    },
    /// The label given to the writer is not a valid header word.
    #[error("invalid key file label {label:?}")]
    BadLabel {
        /// The rejected label.
        label: String,
    },
    /// An I/O operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeyFileError {
    move |source| KeyFileError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Writes `secret` to a new file at `path` in the format above, with mode 0600.
///
/// Guarantees: either the complete file exists and is durable (file and directory fsynced),
/// or `path` is unchanged. Fails with [`KeyFileError::AlreadyExists`] rather than replacing an
/// existing file. The parent directory must exist.
pub fn write_secret_key_file(
    path: &Path,
    secret: &[u8; 32],
    label: &str,
) -> Result<(), KeyFileError> {
    if !valid_label(label) {
        return Err(KeyFileError::BadLabel {
            label: label.to_owned(),
        });
    }
    let mut text = Zeroizing::new(vec![0u8; label.len() + 1 + 64 + 1]);
    text[..label.len()].copy_from_slice(label.as_bytes());
    text[label.len()] = b'\n';
    let hex_start = label.len() + 1;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in secret.iter().enumerate() {
        text[hex_start + 2 * i] = DIGITS[usize::from(b >> 4)];
        text[hex_start + 2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    text[hex_start + 64] = b'\n';
    text.extend_from_slice(format!("check {}\n", check(label, secret)).as_bytes());
    atomic::write_file(path, &text, 0o600, Existing::Keep).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            KeyFileError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            KeyFileError::Io {
                op: "write",
                path: path.to_path_buf(),
                source: e,
            }
        }
    })
}

/// Reads the secret stored at `path`, whose header line must be exactly `label`.
///
/// Guarantees: refuses (without modifying anything) a missing file, a non-regular file, a
/// file accessible by group or others, and any content not exactly in the documented format.
/// The file contents and the secret are held in zeroize-on-drop buffers.
pub fn read_secret_key_file(path: &Path, label: &str) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    // Check before opening so that a FIFO or device is not opened (which could block).
    match fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(KeyFileError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io_err("inspect", path)(e)),
    }
    let file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            KeyFileError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            io_err("open", path)(e)
        }
    })?;
    let meta = file.metadata().map_err(io_err("inspect", path))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = Zeroizing::new(Vec::with_capacity(256));
    file.take(MAX_LEN + 1)
        .read_to_end(&mut text)
        .map_err(io_err("read", path))?;
    parse(&text, label).map_err(|reason| KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses the documented format; the error never quotes the secret line.
fn parse(text: &[u8], label: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    if text.len() as u64 > MAX_LEN {
        return Err(format!("file is larger than {MAX_LEN} bytes"));
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut lines = body.split(|&b| b == b'\n');
    let header = lines.next().unwrap_or_default();
    if header != label.as_bytes() {
        return Err(format!("first line must be exactly `{label}`"));
    }
    let hex_line = lines
        .next()
        .ok_or_else(|| "missing the secret key line".to_owned())?;
    let check_line = lines.next();
    if lines.next().is_some() {
        return Err("unexpected content after the check line".to_owned());
    }
    if hex_line.len() != 64 {
        return Err(format!(
            "second line must be 64 hex digits, found {} bytes",
            hex_line.len()
        ));
    }
    if !hex_line
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err("second line must contain only lowercase hex digits".to_owned());
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_line, secret.as_mut())
        .map_err(|_| "second line is not valid hex".to_owned())?;
    if let Some(line) = check_line {
        let expected = format!("check {}", check(label, &secret));
        if line != expected.as_bytes() {
            return Err(if line.starts_with(b"check ") {
                "the secret key does not match its check line: the file is damaged; restore \
                 it from a backup"
                    .to_owned()
            } else {
                "third line must be `check <16 hex digits>`".to_owned()
            });
        }
    }
    Ok(secret)
}

/// The check value of `secret` under `label`: 16 lowercase hex digits.
fn check(label: &str, secret: &[u8; 32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"vserv-key-check");
    hasher.update(label.as_bytes());
    hasher.update(secret);
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "vserv-test-v1";

    #[test]
    fn parse_accepts_exact_format_with_or_without_final_newline() {
        let hex = "01".repeat(32);
        for text in [format!("{LABEL}\n{hex}\n"), format!("{LABEL}\n{hex}")] {
            assert_eq!(parse(text.as_bytes(), LABEL).as_deref(), Ok(&[1u8; 32]));
        }
    }

    #[test]
    fn parse_checks_the_check_line() {
        let secret = [0x42u8; 32];
        let hex = hex::encode(secret);
        let good = format!("{LABEL}\n{hex}\ncheck {}\n", check(LABEL, &secret));
        assert_eq!(parse(good.as_bytes(), LABEL).as_deref(), Ok(&secret));
        // Any one flipped digit of the secret is another valid scalar: the check refuses it.
        for i in 0..64 {
            let mut damaged = good.clone().into_bytes();
            let at = LABEL.len() + 1 + i;
            damaged[at] = if damaged[at] == b'4' { b'5' } else { b'4' };
            let err = parse(&damaged, LABEL).err().unwrap_or_default();
            assert!(err.contains("damaged"), "digit {i}: {err}");
        }
        for bad in [
            format!("{LABEL}\n{hex}\ncheck 0000000000000000\n"),
            format!("{LABEL}\n{hex}\nchek {}\n", check(LABEL, &secret)),
            format!("{LABEL}\n{hex}\ncheck {}\nmore\n", check(LABEL, &secret)),
        ] {
            assert!(parse(bad.as_bytes(), LABEL).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn parse_rejects_deviations() {
        let hex = "ab".repeat(32);
        let bad = [
            String::new(),
            format!("{LABEL}\n"),
            format!("other\n{hex}\n"),
            format!("{LABEL} \n{hex}\n"),
            format!("{LABEL}\r\n{hex}\n"),
            format!("{LABEL}\n{hex}\n\n"),
            format!("{LABEL}\n{hex}\nextra\n"),
            format!("{LABEL}\n{hex}\ncheck 00\nextra\n"),
            format!("{LABEL}\n{}\n", "AB".repeat(32)),
            format!("{LABEL}\n{}\n", "ab".repeat(31)),
            format!("{LABEL}\n{}zz\n", "ab".repeat(31)),
            format!("{LABEL}\n {hex}\n"),
        ];
        for text in bad {
            assert!(parse(text.as_bytes(), LABEL).is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn write_then_read_round_trips_and_refuses_overwrite() -> Result<(), KeyFileError> {
        let dir = tempfile::tempdir().map_err(io_err("create", Path::new("tmp")))?;
        let path = dir.path().join("user.key");
        write_secret_key_file(&path, &[7; 32], LABEL)?;
        assert_eq!(*read_secret_key_file(&path, LABEL)?, [7; 32]);
        let again = write_secret_key_file(&path, &[8; 32], LABEL);
        assert!(matches!(again, Err(KeyFileError::AlreadyExists { .. })));
        assert_eq!(*read_secret_key_file(&path, LABEL)?, [7; 32]);
        assert!(matches!(
            read_secret_key_file(&path, "vserv-other-v1"),
            Err(KeyFileError::Malformed { .. })
        ));
        Ok(())
    }

    #[test]
    fn bad_label_is_refused() {
        let path = Path::new("/nonexistent/never-written");
        for label in ["", "two words", "line\nbreak"] {
            assert!(matches!(
                write_secret_key_file(path, &[1; 32], label),
                Err(KeyFileError::BadLabel { .. })
            ));
        }
    }

    #[test]
    fn directory_is_not_a_key_file() -> Result<(), io::Error> {
        let dir = tempfile::tempdir()?;
        assert!(matches!(
            read_secret_key_file(dir.path(), LABEL),
            Err(KeyFileError::NotAFile { .. })
        ));
        Ok(())
    }
}
