//! File subcommands over whole trees and histories: `mkdir -p`, `versions`, `restore`, and
//! the recursive `put -r LOCALDIR REMOTEDIR` / `get -r REMOTEDIR LOCALDIR`, which walk the
//! tree, make its directories (empty ones too), then move every file on one connection
//! through the multi-file transfer machinery. A file or directory that fails is reported
//! and the rest go on; the command then exits non-zero. Symlinks are never followed out of
//! the tree: a local symlink to a regular file inside LOCALDIR is uploaded as that file,
//! any other is skipped (and said so).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use vserv_blocking::transfer::{self, Download, TransferOptions, Upload};
use vserv_core::commands::{Command, FileKind, LS_MAX_LIMIT, ListPage, Reply, VersionInfo};

use crate::client_cmd::Connected;
use crate::files_cmd::{GetArgs, PutArgs, conclude, get_all, put_all};
use crate::paging::Tokens;
use crate::show::{escape, local_time};

/// `vserv mkdir` options.
#[derive(Args, Debug)]
pub struct MkdirArgs {
    /// The directory on the server.
    pub path: String,
    /// Make the missing parent directories too; a directory already there is fine.
    #[arg(short = 'p', long = "parents")]
    pub parents: bool,
}

/// `vserv versions` options.
#[derive(Args, Debug)]
pub struct VersionsArgs {
    /// The file on the server.
    pub path: String,
    /// One JSON object per line (number, size, modified as Unix seconds, sha256).
    #[arg(long)]
    pub json: bool,
}

/// `vserv restore` options.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The file on the server.
    pub path: String,
    /// The kept version to bring back (1 the newest; see `vserv versions PATH`).
    #[arg(value_name = "N")]
    pub number: u32,
}

/// `vserv mkdir [-p] PATH`.
pub fn mkdir(connected: &mut Connected, args: &MkdirArgs) -> anyhow::Result<()> {
    let path = args.path.clone();
    let command = if args.parents {
        Command::Mkdirs { path }
    } else {
        Command::Mkdir { path }
    };
    connected.run(&command)
}

/// `vserv versions PATH [--json]`: the kept versions, newest first.
pub fn versions(connected: &mut Connected, args: &VersionsArgs) -> anyhow::Result<()> {
    let reply = connected.client.call(&Command::Versions {
        path: args.path.clone(),
    })?;
    let Reply::Versions(versions) = reply else {
        bail!("unexpected reply to versions");
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        for v in &versions {
            writeln!(out, "{}", version_json(v))?;
        }
    } else if versions.is_empty() {
        writeln!(out, "{}: no kept versions", escape(&args.path))?;
    } else {
        writeln!(out, "{:>3} {:>12} {:<25} SHA256", "N", "SIZE", "MODIFIED")?;
        for v in &versions {
            writeln!(
                out,
                "{:>3} {:>12} {:<25} {}",
                v.number,
                v.size,
                local_time(v.modified),
                hex::encode(v.sha256)
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// One version as a JSON object.
fn version_json(v: &VersionInfo) -> serde_json::Value {
    serde_json::json!({
        "number": v.number,
        "size": v.size,
        "modified": v.modified,
        "modified_local": local_time(v.modified),
        "sha256": hex::encode(v.sha256),
    })
}

/// `vserv restore PATH N`.
pub fn restore(connected: &mut Connected, args: &RestoreArgs) -> anyhow::Result<()> {
    connected
        .client
        .call(&Command::Restore {
            path: args.path.clone(),
            version: args.number,
        })
        .with_context(|| format!("restoring version {} of {}", args.number, args.path))?;
    println!(
        "restored version {} of {}; the replaced content is now version 1 (undo: vserv \
         restore {} 1)",
        args.number,
        escape(&args.path),
        escape(&args.path)
    );
    Ok(())
}

/// What a walk found that is not transferred: said on standard error, not a failure.
fn skipped(what: &Path, why: &str) {
    eprintln!("vserv: skipped {}: {why}", what.display());
}

/// A local tree to upload: its directories (relative, parents first) and files (local
/// path, relative server path), and the entries refused on the way.
#[derive(Debug, Default)]
struct LocalTree {
    dirs: Vec<String>,
    files: Vec<(PathBuf, String)>,
    failed: Vec<String>,
}

/// `rel` joined under `base` with `/`.
fn join(base: &str, rel: &str) -> String {
    match (base.trim_end_matches('/'), rel) {
        (b, "") => b.to_owned(),
        ("", r) => r.to_owned(),
        (b, r) => format!("{b}/{r}"),
    }
}

/// Walks `root` without following symlinks out of it.
fn walk_local(root: &Path) -> anyhow::Result<LocalTree> {
    let meta =
        std::fs::symlink_metadata(root).with_context(|| format!("reading {}", root.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (put -r uploads a directory tree)",
            root.display()
        );
    }
    let canonical_root = std::fs::canonicalize(root)?;
    let mut tree = LocalTree::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(e) => {
                tree.failed.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tree.failed
                    .push(format!("{}: the name is not UTF-8", path.display()));
                continue;
            };
            let child = join(&rel, &name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                tree.failed
                    .push(format!("{}: cannot be read", path.display()));
                continue;
            };
            if meta.is_dir() {
                tree.dirs.push(child.clone());
                stack.push((path, child));
            } else if meta.is_file() {
                tree.files.push((path, child));
            } else if meta.file_type().is_symlink() {
                match std::fs::canonicalize(&path) {
                    Ok(target) if target.starts_with(&canonical_root) && target.is_file() => {
                        tree.files.push((path, child));
                    }
                    Ok(target) if target.starts_with(&canonical_root) => {
                        skipped(&path, "a symlink to a directory (not followed)")
                    }
                    _ => skipped(&path, "a symlink leaving the tree (never followed)"),
                }
            } else {
                skipped(&path, "not a regular file or directory");
            }
        }
    }
    tree.dirs.sort();
    Ok(tree)
}

/// Makes each of `dirs` (server paths, parents first) with `mkdirs`; the failures.
fn make_remote_dirs(connected: &mut Connected, dirs: &[String]) -> Vec<String> {
    let mut failed = Vec::new();
    for dir in dirs {
        if let Err(e) = connected
            .client
            .call(&Command::Mkdirs { path: dir.clone() })
        {
            failed.push(format!("mkdir {dir}: {}", escape(&e.to_string())));
        }
    }
    failed
}

/// `vserv put -r LOCALDIR REMOTEDIR`: REMOTEDIR (made if missing) receives LOCALDIR's tree.
pub fn put_tree(connected: &mut Connected, args: &PutArgs) -> anyhow::Result<()> {
    let [local, remote] = args.paths.as_slice() else {
        bail!("put -r takes two paths: LOCALDIR REMOTEDIR");
    };
    let remote = remote
        .to_str()
        .map(|r| r.trim_end_matches('/').to_owned())
        .filter(|r| !r.is_empty())
        .context("REMOTEDIR must be a UTF-8 server path (use . for the working directory)")?;
    let tree = walk_local(Path::new(local))?;
    let mut dirs = vec![remote.clone()];
    dirs.extend(tree.dirs.iter().map(|d| join(&remote, d)));
    let mut failed = tree.failed;
    failed.extend(make_remote_dirs(connected, &dirs));
    let plan: Vec<Upload> = tree
        .files
        .iter()
        .map(|(local, rel)| Upload {
            local: local.clone(),
            remote: join(&remote, rel),
        })
        .collect();
    let options = TransferOptions {
        resume: args.resume,
        window: usize::from(args.window),
        ..TransferOptions::default()
    };
    let (files, results) = put_all(connected, &plan, &options, args.parallel);
    finish("upload", &files, results, &failed, dirs.len())
}

/// Ends a recursive transfer: [`conclude`] for the files, then fails naming every
/// directory or entry that went wrong before them.
fn finish(
    verb: &str,
    files: &[(String, String)],
    results: Vec<Result<transfer::TransferOutcome, transfer::TransferFailure>>,
    failed: &[String],
    dirs: usize,
) -> anyhow::Result<()> {
    let transfers = conclude(verb, files, results);
    println!("{} directories, {} files", dirs, files.len());
    match (transfers, failed) {
        (Ok(()), []) => Ok(()),
        (Ok(()), failed) => bail!(
            "{} of the tree's entries failed: {}",
            failed.len(),
            failed.join("; ")
        ),
        (Err(e), []) => Err(e),
        (Err(e), failed) => Err(e.context(format!(
            "and {} of the tree's entries failed: {}",
            failed.len(),
            failed.join("; ")
        ))),
    }
}

/// Whether `name`, as a server listed it, is one plain name safe to write locally.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !Path::new(name).is_absolute()
}

/// A remote tree to download: its directories and files (server path, relative path).
#[derive(Debug, Default)]
struct RemoteTree {
    dirs: Vec<String>,
    files: Vec<(String, String)>,
    failed: Vec<String>,
}

/// Every entry of `dir` on the server, pages followed.
fn list_all(
    connected: &mut Connected,
    dir: &str,
) -> anyhow::Result<Vec<vserv_core::commands::DirEntry>> {
    let mut all = Vec::new();
    let mut from = None;
    let mut tokens = Tokens::new("ls");
    loop {
        let page = ListPage {
            dir: Some(dir.to_owned()),
            from: from.take(),
            limit: Some(LS_MAX_LIMIT),
        };
        let Reply::Listing { entries, next } = connected.client.call(&Command::Ls(page))? else {
            bail!("unexpected reply to ls");
        };
        all.extend(entries);
        match next {
            Some(name) => {
                tokens.follow(&name)?;
                from = Some(name);
            }
            None => return Ok(all),
        }
    }
}

/// Walks the server's `root` (which must be a directory).
fn walk_remote(connected: &mut Connected, root: &str) -> anyhow::Result<RemoteTree> {
    match connected.client.call(&Command::Stat {
        path: root.to_owned(),
    })? {
        Reply::Stat(st) if st.kind == FileKind::Dir => {}
        Reply::Stat(_) => bail!("{root} is not a directory on the server"),
        _ => bail!("unexpected reply to stat"),
    }
    let mut tree = RemoteTree::default();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = join(root, &rel);
        let entries = match list_all(connected, &dir) {
            Ok(entries) => entries,
            Err(e) => {
                tree.failed.push(format!("ls {dir}: {e:#}"));
                continue;
            }
        };
        for e in entries {
            let child = join(&rel, &e.name);
            if !plain_name(&e.name) {
                tree.failed.push(format!(
                    "{}: refused, not a plain name",
                    escape(&join(&dir, &e.name))
                ));
                continue;
            }
            match e.kind {
                FileKind::Dir => {
                    tree.dirs.push(child.clone());
                    stack.push(child);
                }
                FileKind::File => tree.files.push((join(root, &child), child)),
            }
        }
    }
    tree.dirs.sort();
    Ok(tree)
}

/// Makes local directory `dir`; one already there is fine, anything else there (a symlink
/// included) is refused.
fn make_local_dir(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{}: exists and is not a directory", dir.display())),
        Err(_) => std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display())),
    }
}

/// `vserv get -r REMOTEDIR LOCALDIR`: LOCALDIR (made if missing) receives REMOTEDIR's tree.
pub fn get_tree(connected: &mut Connected, args: &GetArgs) -> anyhow::Result<()> {
    let [remote, local] = args.paths.as_slice() else {
        bail!("get -r takes two paths: REMOTEDIR LOCALDIR");
    };
    let remote = remote
        .to_str()
        .map(str::to_owned)
        .context("REMOTEDIR must be a UTF-8 server path")?;
    let local = PathBuf::from(local);
    let tree = walk_remote(connected, &remote)?;
    let mut failed = tree.failed;
    make_local_dir(&local).map_err(anyhow::Error::msg)?;
    let mut bad_dirs = Vec::new();
    for dir in &tree.dirs {
        if let Err(e) = make_local_dir(&local_path(&local, dir)) {
            failed.push(e);
            bad_dirs.push(dir.clone());
        }
    }
    let plan: Vec<Download> = tree
        .files
        .iter()
        .filter(|(_, rel)| !bad_dirs.iter().any(|d| rel.starts_with(&format!("{d}/"))))
        .map(|(remote, rel)| Download {
            remote: remote.clone(),
            local: local_path(&local, rel),
        })
        .collect();
    let options = TransferOptions {
        resume: args.resume,
        window: usize::from(args.window),
        overwrite: args.force,
    };
    let (files, results) = get_all(connected, &plan, &options, args.parallel);
    finish("download", &files, results, &failed, tree.dirs.len() + 1)
}

/// `rel` (`/`-separated plain names) under local directory `base`.
fn local_path(base: &Path, rel: &str) -> PathBuf {
    rel.split('/').fold(base.to_path_buf(), |p, n| p.join(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_must_be_plain() {
        for bad in ["", ".", "..", "a/b", "a\\b", "/x"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert!(plain_name("a b.txt"));
        assert_eq!(join("docs/", "a/b"), "docs/a/b");
        assert_eq!(join("docs", ""), "docs");
        assert_eq!(local_path(Path::new("/t"), "a/b"), PathBuf::from("/t/a/b"));
    }
}
