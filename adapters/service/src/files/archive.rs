//! Archiving the home of a deleted account: the directory `<data>/homes/<user>` is moved,
//! whole and unchanged, to `<data>/deleted-homes/<user>-<tag>` (the tag names the deleted
//! account), so a later account of the same name starts with an empty home and nothing of
//! the old one is lost. Moving is one `rename` within the data directory: atomic, and made
//! durable by syncing both parent directories.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::FileError;
use crate::accounts::UserName;

/// The directory, beside `homes`, that receives archived homes.
pub const DELETED_HOMES: &str = "deleted-homes";

fn io(what: &str) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: what.to_owned(),
        source,
    }
}

/// Moves `homes/<owner>` to `<homes' parent>/deleted-homes/<owner>-<tag>` (with `-2`, `-3`,
/// … appended if that name is taken). Returns where it went, or `None` if `owner` had no
/// home. Whatever is at `homes/<owner>` is moved as it is, a symlink as the link itself
/// (never followed). `tag` must be a plain name (no `/`); the callers pass an account id
/// in hex.
pub fn archive_home(
    homes: &Path,
    owner: &UserName,
    tag: &str,
) -> Result<Option<PathBuf>, FileError> {
    let shown = format!("~{owner}");
    let home = homes.join(owner.as_str());
    match fs::symlink_metadata(&home) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&shown)(e)),
    }
    if tag.is_empty() || tag.contains(['/', '\\']) || tag.starts_with('.') {
        return Err(FileError::Path(super::PathError::Reserved));
    }
    let parent = homes.parent().unwrap_or(Path::new("."));
    let archive = parent.join(DELETED_HOMES);
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(&archive) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(DELETED_HOMES)(e)),
    }
    let meta = fs::symlink_metadata(&archive).map_err(io(DELETED_HOMES))?;
    if meta.file_type().is_symlink() {
        return Err(FileError::Symlink(DELETED_HOMES.into()));
    }
    if !meta.is_dir() {
        return Err(FileError::NotADirectory(DELETED_HOMES.into()));
    }
    let base = format!("{owner}-{tag}");
    let mut dest = archive.join(&base);
    let mut n = 1u32;
    while fs::symlink_metadata(&dest).is_ok() {
        n += 1;
        dest = archive.join(format!("{base}-{n}"));
    }
    fs::rename(&home, &dest).map_err(io(&shown))?;
    for dir in [homes, archive.as_path()] {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&shown))?;
    }
    tracing::info!(user = %owner, archive = %dest.display(), "archived the home of a deleted account");
    Ok(Some(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_the_home_whole_and_never_overwrites_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let homes = dir.path().join("homes");
        let carol = UserName::parse("carol").unwrap();
        fs::create_dir_all(homes.join("carol/docs")).unwrap();
        fs::write(homes.join("carol/docs/a.txt"), b"old carol").unwrap();
        let first = archive_home(&homes, &carol, "ab12").unwrap().unwrap();
        assert_eq!(first, dir.path().join("deleted-homes/carol-ab12"));
        assert_eq!(fs::read(first.join("docs/a.txt")).unwrap(), b"old carol");
        assert!(!homes.join("carol").exists());
        assert_eq!(archive_home(&homes, &carol, "ab12").unwrap(), None);
        fs::create_dir_all(homes.join("carol")).unwrap();
        let second = archive_home(&homes, &carol, "ab12").unwrap().unwrap();
        assert_eq!(second, dir.path().join("deleted-homes/carol-ab12-2"));
        assert!(first.join("docs/a.txt").exists());
        fs::create_dir_all(homes.join("carol")).unwrap();
        assert!(matches!(
            archive_home(&homes, &carol, "../x"),
            Err(FileError::Path(_))
        ));
    }
}
