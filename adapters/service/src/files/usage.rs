//! The per-user usage counters of a [`super::Tree`]: the bytes each home counts toward
//! its quota, kept in memory and changed together with the files, so a quota check costs
//! O(1) instead of a walk of the home.
//!
//! A home's counter is built by one walk of the home the first time this process touches
//! it (so after a restart, or a crash between a change and its count, the count is rebuilt
//! from what is on the disk), then changed only under that home's lock, by the operation
//! that changes the files. The lock serialises every counted change of one user (uploads on
//! several connections included); other users are not held up. An operation that fails
//! with an I/O error may have been half done: the counter is then dropped and rebuilt by a
//! walk at the home's next use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::partials::{PARTIAL_DIR, is_partial_name};
use super::path::is_reserved;
use super::store::{HomeStore, Loc, StoreError};
use super::tree::Tree;
use super::versions::VERSIONS_DIR;
use super::{FileError, UserPath};
use crate::accounts::UserName;

/// One home's counter: `None` until counted (or after a failed change).
type Slot = Arc<Mutex<Option<u64>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The counters of every home this process has touched.
#[derive(Debug, Default)]
pub(super) struct UsageCounters {
    homes: Mutex<BTreeMap<UserName, Slot>>,
    /// How many walks built a counter (for the tree's [`walks`](UsageCounters::walks)).
    walks: std::sync::atomic::AtomicU64,
}

/// A home's count while its lock is held: what the operation reads and changes.
#[derive(Debug)]
pub(super) struct Usage {
    used: u64,
}

impl Usage {
    /// Bytes counted now.
    pub(super) fn used(&self) -> u64 {
        self.used
    }

    /// Counts `added` more bytes and `freed` fewer (saturating at the bounds).
    pub(super) fn change(&mut self, added: u64, freed: u64) {
        self.used = self.used.saturating_add(added).saturating_sub(freed);
    }
}

impl UsageCounters {
    /// Runs `f` with `owner`'s count, holding the home's lock throughout; the count is first
    /// built with `walk` if this process has none. `f` changes the count only once its
    /// change of the files is done; what it changed is kept if it succeeds. A failure with
    /// an I/O error, or after the count was changed, may have left the files half changed:
    /// the count is dropped, to be rebuilt by the next use. Any other failure (a refusal)
    /// keeps the count.
    pub(super) fn with<T>(
        &self,
        owner: &UserName,
        walk: impl FnOnce() -> Result<u64, FileError>,
        f: impl FnOnce(&mut Usage) -> Result<T, FileError>,
    ) -> Result<T, FileError> {
        let slot = lock(&self.homes).entry(owner.clone()).or_default().clone();
        let mut count = lock(&slot);
        let used = match *count {
            Some(used) => used,
            None => {
                let used = walk()?;
                self.walks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *count = Some(used);
                used
            }
        };
        let mut usage = Usage { used };
        let result = f(&mut usage);
        *count = match &result {
            Ok(_) => Some(usage.used),
            // A refusal before any change keeps the count; anything else is recounted.
            Err(FileError::Io { .. }) => None,
            Err(_) if usage.used != used => None,
            Err(_) => Some(used),
        };
        result
    }

    /// Runs `f`, which only removes files, under `owner`'s lock, and takes the bytes it
    /// reports freed off the count. A home not counted yet is not walked for it: its first
    /// use counts what `f` left.
    pub(super) fn with_freeing<T>(&self, owner: &UserName, f: impl FnOnce() -> (T, u64)) -> T {
        let slot = lock(&self.homes).entry(owner.clone()).or_default().clone();
        let mut count = lock(&slot);
        let (result, freed) = f();
        if let Some(used) = count.as_mut() {
            *used = used.saturating_sub(freed);
        }
        result
    }

    /// Runs `f`, which moves `owner`'s whole home away (archives it), under the home's lock,
    /// and forgets its count: a home made anew under that name is counted from what it
    /// holds.
    pub(super) fn with_home_moved<T>(&self, owner: &UserName, f: impl FnOnce() -> T) -> T {
        let slot = lock(&self.homes).entry(owner.clone()).or_default().clone();
        let mut count = lock(&slot);
        let result = f();
        *count = None;
        result
    }

    /// How many times a home was walked to build its count since the tree opened.
    pub(super) fn walks(&self) -> u64 {
        self.walks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<S: HomeStore> Tree<S> {
    /// The bytes the home at `home` counts toward its quota: every file of the client's
    /// directories, every kept version and every partial upload; the server's hidden files
    /// (sidecars, saved upload states, records, temporary files) are not counted. Entries
    /// that vanish during the walk are skipped; symlinks are never followed.
    pub(super) fn count_home(&self, home: &Loc) -> Result<u64, FileError> {
        self.count_dir(home, Counted::Root)
            .map_err(self.fail(home, &UserPath::root()))
    }

    /// [`Tree::count_home`] from directory `dir`, of kind `kind`.
    pub(super) fn count_dir(&self, dir: &Loc, kind: Counted) -> Result<u64, StoreError> {
        let gone = StoreError::is_missing;
        let mut total = 0u64;
        let mut stack = vec![(dir.clone(), kind)];
        while let Some((dir, kind)) = stack.pop() {
            let entries = match self.store.list(&dir) {
                Ok(entries) => entries,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            for (name, meta) in entries {
                let hidden = is_reserved(&name);
                let inner = match kind {
                    Counted::Versions => Some(Counted::Versions),
                    Counted::Partial => None,
                    Counted::Root | Counted::Plain if !hidden => Some(Counted::Plain),
                    Counted::Root if name == PARTIAL_DIR => Some(Counted::Partial),
                    Counted::Root | Counted::Plain if name == VERSIONS_DIR => {
                        Some(Counted::Versions)
                    }
                    Counted::Root | Counted::Plain => continue,
                };
                if meta.is_dir() {
                    if let Some(inner) = inner {
                        stack.push((dir.child(&name), inner));
                    }
                } else if meta.is_file() && (kind != Counted::Partial || is_partial_name(&name)) {
                    total = total.saturating_add(meta.len);
                }
            }
        }
        Ok(total)
    }
}

/// Which of a home's directories [`Tree::count_dir`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// The home's root: like `Plain`, and its partial uploads count.
    Root,
    /// A client's directory: its files count, its hidden entries do not (but versions).
    Plain,
    /// Under a `.vserv-versions` directory: every regular file counts.
    Versions,
    /// The home's partial directory: partial files count (at their length, their upload's
    /// declared size), saved states and temporary files do not.
    Partial,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserName {
        UserName::parse("alice").expect("name")
    }

    #[test]
    fn counted_once_then_changed_and_rebuilt_after_an_io_error() {
        let counters = UsageCounters::default();
        let used = counters.with(
            &alice(),
            || Ok(10),
            |u| {
                u.change(5, 2);
                Ok(u.used())
            },
        );
        assert_eq!(used.expect("count"), 13);
        // No second walk: the walk given would fail.
        let used = counters.with(
            &alice(),
            || Err(FileError::NotFound("x".into())),
            |u| Ok(u.used()),
        );
        assert_eq!(used.expect("kept"), 13);
        assert_eq!(counters.walks(), 1);
        // A refusal keeps the count, an I/O error drops it.
        let refused: Result<(), _> = counters.with(&alice(), || Ok(0), |_| Err(FileError::Root));
        assert!(refused.is_err());
        let used = counters.with(&alice(), || Ok(0), |u| Ok(u.used()));
        assert_eq!(used.expect("kept"), 13);
        let failed: Result<(), _> = counters.with(
            &alice(),
            || Ok(0),
            |u| {
                u.change(100, 0);
                Err(FileError::Io {
                    path: "/".into(),
                    source: std::io::Error::other("disk"),
                })
            },
        );
        assert!(failed.is_err());
        let used = counters.with(&alice(), || Ok(42), |u| Ok(u.used()));
        assert_eq!(used.expect("rebuilt"), 42);
        assert_eq!(counters.walks(), 2);
        // Removals lower a count, and do not build one.
        counters.with_freeing(&alice(), || ((), 2));
        let used = counters.with(&alice(), || Ok(0), |u| Ok(u.used()));
        assert_eq!(used.expect("kept"), 40);
        let bob = UserName::parse("bob").expect("name");
        counters.with_freeing(&bob, || ((), 5));
        assert_eq!(counters.walks(), 2);
        let used = counters.with(&bob, || Ok(7), |u| Ok(u.used()));
        assert_eq!(used.expect("walked"), 7);
    }
}
