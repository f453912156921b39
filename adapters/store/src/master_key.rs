//! The server's master key, stored as `master.key` in the data directory: 32 random bytes
//! that encrypt the secrets the server keeps at rest (users' transit keys, spec/transit.md
//! §4). Never sent anywhere and never logged.
//!
//! The file uses the [`crate::keyfile`] format with the header [`MASTER_KEY_LABEL`]:
//!
//! ```text
//! vserv-master-v1
//! <64 lowercase hex digits: the key>
//! check <16 lowercase hex digits>
//! ```
//!
//! Like the identity key it is created once, at first start, with mode 0600, atomically, and
//! never regenerated over an existing file: losing it loses every secret encrypted under it,
//! so a damaged or too-permissive file is an error for the operator to resolve.

use std::path::{Path, PathBuf};

use rand_core::CryptoRng;
use vserv_core::transit::{KEY_LEN, MasterKey};
use zeroize::Zeroizing;

use crate::keyfile::{self, KeyFileError};

/// File name of the master key inside the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Header line of a master key file.
pub const MASTER_KEY_LABEL: &str = "vserv-master-v1";

/// A master key read from (or just written to) disk.
#[derive(Debug)]
pub struct LoadedMasterKey {
    /// The key (zeroized on drop; its `Debug` shows nothing of it).
    pub key: MasterKey,
    /// Where it is stored.
    pub path: PathBuf,
    /// True if this call generated and wrote it.
    pub created: bool,
}

/// The master key path inside `data_dir`.
pub fn master_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(MASTER_KEY_FILE)
}

/// Loads the master key from `data_dir` without ever creating anything.
///
/// Guarantees: [`KeyFileError::Missing`] if the file is absent; refuses group/other-readable
/// and malformed files; modifies nothing.
pub fn load(data_dir: &Path) -> Result<LoadedMasterKey, KeyFileError> {
    let path = master_key_path(data_dir);
    let key = keyfile::read_secret_key_file(&path, MASTER_KEY_LABEL)?;
    Ok(LoadedMasterKey {
        key: MasterKey::from_bytes(key),
        path,
        created: false,
    })
}

/// Loads the master key from `data_dir` (which must exist), generating and storing one from
/// `rng` if the file does not exist.
///
/// Guarantees: a new file is written atomically with mode 0600 and never replaces an
/// existing one (if another process creates it concurrently, that key is loaded instead);
/// an existing file that cannot be used is an error and is left untouched.
pub fn load_or_create<R: CryptoRng + ?Sized>(
    data_dir: &Path,
    rng: &mut R,
) -> Result<LoadedMasterKey, KeyFileError> {
    match load(data_dir) {
        Err(KeyFileError::Missing { .. }) => {}
        other => return other,
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(bytes.as_mut());
    let path = master_key_path(data_dir);
    match keyfile::write_secret_key_file(&path, &bytes, MASTER_KEY_LABEL) {
        Ok(()) => Ok(LoadedMasterKey {
            key: MasterKey::from_bytes(bytes),
            path,
            created: true,
        }),
        // Lost a race with another process creating the key: use theirs.
        Err(KeyFileError::AlreadyExists { .. }) => load(data_dir),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn created_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = StdRng::seed_from_u64(1);
        let first = load_or_create(dir.path(), &mut rng).expect("create");
        assert!(first.created);
        let mode = std::fs::metadata(&first.path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(&first.path).expect("read");
        assert!(text.starts_with("vserv-master-v1\n"));
        let again = load_or_create(dir.path(), &mut StdRng::seed_from_u64(2)).expect("load");
        assert!(!again.created);
        // The same key: what one wraps, the other unwraps.
        let ctx = vserv_core::transit::WrapContext::TotpSecret { user: "a" };
        let stored = vserv_core::transit::wrap(&first.key, &ctx, [0; 16], b"secret");
        assert_eq!(
            vserv_core::transit::unwrap(&again.key, &ctx, &stored)
                .expect("same key")
                .as_slice(),
            b"secret"
        );
        assert_eq!(std::fs::read_to_string(&again.path).expect("read"), text);
        assert!(!format!("{again:?}").contains(&text[16..30]));
    }

    #[test]
    fn a_readable_or_damaged_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = load_or_create(dir.path(), &mut StdRng::seed_from_u64(1)).expect("create");
        std::fs::set_permissions(&made.path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert!(matches!(
            load_or_create(dir.path(), &mut StdRng::seed_from_u64(1)),
            Err(KeyFileError::InsecurePermissions { .. })
        ));
        std::fs::set_permissions(&made.path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let text = std::fs::read_to_string(&made.path).expect("read");
        let damaged = text.replacen('a', "b", 1).replacen('0', "1", 1);
        std::fs::write(&made.path, &damaged).expect("write");
        assert!(matches!(
            load_or_create(dir.path(), &mut StdRng::seed_from_u64(1)),
            Err(KeyFileError::Malformed { .. })
        ));
        assert_eq!(std::fs::read_to_string(&made.path).expect("read"), damaged);
    }
}
