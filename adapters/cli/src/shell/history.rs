//! The shell's persistent history, `~/.vserv/history`: readable by its owner only (0600,
//! in a 0700 directory when the shell creates it), loaded at start, saved after each line.

use std::path::{Path, PathBuf};

use rustyline::history::FileHistory;
use rustyline::{Editor, Helper};

/// `~/.vserv/history`, when HOME is known.
pub fn path() -> Option<PathBuf> {
    vserv_store::known_servers::default_path()
        .and_then(|p| p.parent().map(|dir| dir.join("history")))
}

/// Loads the history at `path` into `editor` (a missing file is an empty history).
pub fn load<H: Helper>(editor: &mut Editor<H, FileHistory>, path: &Path) {
    if path.exists()
        && let Err(e) = editor.load_history(path)
    {
        eprintln!("vserv: could not read the history {}: {e}", path.display());
    }
}

/// Saves `editor`'s history to `path`, owner-only.
pub fn save<H: Helper>(editor: &mut Editor<H, FileHistory>, path: &Path) {
    if let Err(e) = prepare(path).and_then(|()| {
        editor
            .save_history(path)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }) {
        tracing::warn!(error = %e, path = %path.display(), "could not save the history");
        return;
    }
    if let Err(e) = owner_only(path) {
        tracing::warn!(error = %e, path = %path.display(), "could not restrict the history");
    }
}

/// Creates the history's directory (0700) and an empty file (0600) if they are missing.
fn prepare(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(path)?;
    }
    Ok(())
}

/// Makes `path` readable and writable by its owner only.
fn owner_only(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
