//! The logged-in sessions by account, so that one session can push to others: an admin's
//! `udel` ends the deleted account's sessions at once, whatever they are doing, and a new
//! message or delivery is announced to every session of its recipient
//! ([`Sessions::notify`]) as a notice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vserv_core::commands::Notice;

use crate::accounts::AccountId;
use crate::work::Mailbox;

use super::session::Completion;

/// The mailboxes of the sessions logged into each account (weak: a session that ended is
/// simply gone).
#[derive(Default)]
pub(super) struct Sessions {
    by_account: Mutex<HashMap<AccountId, Vec<Entry>>>,
}

/// One registered session: its number ([`super::session::SessionState::number`]) and
/// mailbox.
type Entry = (u64, Weak<Mailbox<Completion>>);

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<AccountId, Vec<Entry>>> {
        self.by_account.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the session of `mailbox` is logged into `account` (sessions that ended
    /// are forgotten on the way).
    pub(super) fn register(
        &self,
        account: AccountId,
        number: u64,
        mailbox: &Arc<Mailbox<Completion>>,
    ) {
        let mut map = self.lock();
        let list = map.entry(account).or_default();
        list.retain(|(_, w)| w.strong_count() > 0);
        list.push((number, Arc::downgrade(mailbox)));
    }

    /// Forgets session `number` under `account` (it logged out, or in as someone else).
    pub(super) fn unregister(&self, account: AccountId, number: u64) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(&account) {
            list.retain(|(n, w)| w.strong_count() > 0 && *n != number);
            if list.is_empty() {
                map.remove(&account);
            }
        }
    }

    /// Pushes `notice` to every live session logged into `account`; returns how many. It
    /// goes out when each session's runtime next drives it (the mailbox wakes it).
    pub(super) fn notify(&self, account: AccountId, notice: &Notice) -> usize {
        let live: Vec<_> = self
            .lock()
            .get(&account)
            .map(|list| list.iter().filter_map(|(_, w)| w.upgrade()).collect())
            .unwrap_or_default();
        for mailbox in &live {
            mailbox.post(Completion::Notice(notice.clone()));
        }
        live.len()
    }

    /// The number of live sessions logged into each account that has any.
    pub(super) fn counts(&self) -> Vec<(AccountId, usize)> {
        self.lock()
            .iter()
            .map(|(id, list)| {
                (
                    *id,
                    list.iter().filter(|(_, w)| w.strong_count() > 0).count(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Tells every session logged into `account` but session `except` (the one deleting
    /// it, which learns at its next request) that it was deleted; returns how many.
    pub(super) fn account_deleted(&self, account: AccountId, except: u64) -> usize {
        let list = self.lock().remove(&account).unwrap_or_default();
        let mut told = 0;
        let others = list.iter().filter(|(n, _)| *n != except);
        for mailbox in others.filter_map(|(_, w)| w.upgrade()) {
            mailbox.post(Completion::AccountDeleted(account));
            told += 1;
        }
        told
    }
}
