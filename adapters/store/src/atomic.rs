//! Crash-safe file writes: write a temporary file in the target's directory, fsync it, move
//! it into place, fsync the directory. A reader never sees a half-written file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What to do when the target already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Replace it atomically (`rename`).
    Replace,
    /// Fail with [`io::ErrorKind::AlreadyExists`] and leave it untouched.
    Keep,
}

/// Distinguishes temporary files of concurrent writers within one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `contents` to `path` with permission bits `mode` (before umask), atomically.
///
/// Guarantees: on success the complete contents are durable at `path`; on failure `path` is
/// either untouched or (with [`Existing::Replace`]) still holds its previous contents, and no
/// temporary file is left behind (best effort).
pub(crate) fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    existing: Existing,
) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let (tmp, file) = create_temp(dir, &name.to_string_lossy(), mode)?;
    let result = fill_and_place(file, &tmp, path, contents, existing);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last_err = None;
    for _ in 0..64 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{pid}-{n}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("cannot create a temporary file")))
}

fn fill_and_place(
    mut file: File,
    tmp: &Path,
    path: &Path,
    contents: &[u8],
    existing: Existing,
) -> io::Result<()> {
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    match existing {
        Existing::Replace => fs::rename(tmp, path),
        Existing::Keep => place_no_clobber(tmp, path),
    }
}

/// Links `tmp` to `path` only if `path` does not exist, then removes `tmp`.
fn place_no_clobber(tmp: &Path, path: &Path) -> io::Result<()> {
    match fs::hard_link(tmp, path) {
        Ok(()) => fs::remove_file(tmp),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        // Filesystems without hard links: fall back to check-then-rename.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
            ) =>
        {
            match fs::symlink_metadata(path) {
                Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
                Err(m) if m.kind() == io::ErrorKind::NotFound => fs::rename(tmp, path),
                Err(m) => Err(m),
            }
        }
        Err(e) => Err(e),
    }
}

/// Makes a directory entry change (create, rename) in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents with mode 0700 (before umask).
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_refuses_existing_and_leaves_no_temp() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("f");
        write_file(&path, b"one", 0o600, Existing::Keep)?;
        let err = write_file(&path, b"two", 0o600, Existing::Keep);
        assert!(matches!(err, Err(e) if e.kind() == io::ErrorKind::AlreadyExists));
        assert_eq!(fs::read(&path)?, b"one");
        write_file(&path, b"three", 0o600, Existing::Replace)?;
        assert_eq!(fs::read(&path)?, b"three");
        assert_eq!(
            fs::read_dir(dir.path())?.count(),
            1,
            "temporary file left behind"
        );
        Ok(())
    }
}
