//! The server's long-term identity key, stored as `identity.key` in the data directory.
//!
//! The file uses the [`crate::keyfile`] format with the header [`IDENTITY_LABEL`]:
//!
//! ```text
//! vserv-identity-v1
//! <64 lowercase hex digits: the secp256k1 secret scalar>
//! ```
//!
//! It is created once, with mode 0600, atomically, and is never regenerated over an existing
//! file: a damaged or too-permissive key file is an error for the operator to resolve.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand_core::CryptoRng;
use vserv_core::ServerIdentity;

use crate::atomic;
use crate::keyfile::{self, KeyFileError};

/// File name of the identity key inside the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Header line of an identity key file.
pub const IDENTITY_LABEL: &str = "vserv-identity-v1";

/// An identity read from (or just written to) disk.
#[derive(Debug)]
pub struct LoadedIdentity {
    /// The server's signing key.
    pub identity: ServerIdentity,
    /// Where it is stored.
    pub path: PathBuf,
    /// True if this call generated and wrote it.
    pub created: bool,
}

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the key file failed (missing, permissions, malformed, I/O).
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The file is well-formed but its secret is not a valid secp256k1 scalar.
    #[error("{path} does not hold a valid secp256k1 secret key (the file was left untouched)")]
    InvalidSecret {
        /// The key file.
        path: PathBuf,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// The data directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The data directory path exists but is not a directory.
    #[error("data directory {path} exists but is not a directory")]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
}

/// The identity key path inside `data_dir`.
pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_FILE)
}

/// Loads the identity from `data_dir` without ever creating anything.
///
/// Guarantees: errors (with [`KeyFileError::Missing`] inside) if the directory or file is
/// missing; refuses group/other-accessible and malformed files; modifies nothing.
pub fn load(data_dir: &Path) -> Result<LoadedIdentity, IdentityError> {
    let path = identity_path(data_dir);
    let secret = keyfile::read_secret_key_file(&path, IDENTITY_LABEL)?;
    let identity = ServerIdentity::from_secret_bytes(secret.as_ref())
        .map_err(|_| IdentityError::InvalidSecret { path: path.clone() })?;
    Ok(LoadedIdentity {
        identity,
        path,
        created: false,
    })
}

/// Loads the identity from `data_dir`, generating and storing one from `rng` if the key file
/// does not exist.
///
/// Guarantees: creates `data_dir` (mode 0700, with parents) if missing; a new key file is
/// written atomically with mode 0600 and never replaces an existing one (if another process
/// creates it concurrently, that key is loaded instead); an existing file that cannot be used
/// (permissions, malformed, invalid key) is an error and is left untouched.
pub fn load_or_create<R: CryptoRng + ?Sized>(
    data_dir: &Path,
    rng: &mut R,
) -> Result<LoadedIdentity, IdentityError> {
    ensure_dir(data_dir)?;
    match load(data_dir) {
        Err(IdentityError::KeyFile(KeyFileError::Missing { .. })) => {}
        other => return other,
    }
    let identity = ServerIdentity::generate(rng);
    let path = identity_path(data_dir);
    match keyfile::write_secret_key_file(&path, &identity.secret_bytes(), IDENTITY_LABEL) {
        Ok(()) => Ok(LoadedIdentity {
            identity,
            path,
            created: true,
        }),
        // Lost a race with another process creating the key: use theirs.
        Err(KeyFileError::AlreadyExists { .. }) => load(data_dir),
        Err(e) => Err(e.into()),
    }
}

fn ensure_dir(dir: &Path) -> Result<(), IdentityError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(IdentityError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            atomic::create_private_dir(dir).map_err(|source| IdentityError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(IdentityError::CreateDir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}
