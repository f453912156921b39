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
    /// are forgotten on the way). The session stays registered until the returned guard is
    /// dropped: when it logs out or in as someone else, and at the latest when the session
    /// itself is dropped, however its connection ended.
    pub(super) fn register(
        self: &Arc<Self>,
        account: AccountId,
        number: u64,
        mailbox: &Arc<Mailbox<Completion>>,
    ) -> Registration {
        let mut map = self.lock();
        let list = map.entry(account).or_default();
        list.retain(|(_, w)| w.strong_count() > 0);
        list.push((number, Arc::downgrade(mailbox)));
        Registration {
            sessions: Arc::clone(self),
            account,
            number,
        }
    }

    /// Forgets session `number` under `account`.
    fn unregister(&self, account: AccountId, number: u64) {
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

/// A session's place in the registry, given back when dropped ([`Sessions::register`]).
pub(super) struct Registration {
    sessions: Arc<Sessions>,
    account: AccountId,
    number: u64,
}

impl Registration {
    /// The account the session is registered under.
    pub(super) fn account(&self) -> AccountId {
        self.account
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.unregister(self.account, self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::NoWake;

    #[test]
    fn a_dropped_registration_leaves_nothing_behind() {
        let sessions = Arc::new(Sessions::default());
        let alice = AccountId([1; 16]);
        let mailbox = Arc::new(Mailbox::new(Arc::new(NoWake)));
        let first = sessions.register(alice, 1, &mailbox);
        let second = sessions.register(alice, 2, &mailbox);
        assert_eq!(sessions.counts(), [(alice, 2)]);
        drop(first);
        assert_eq!(sessions.counts(), [(alice, 1)]);
        // The mailbox still lives (a session that ended without its connection's close
        // path): dropping the registration alone must forget it.
        drop(second);
        assert!(sessions.lock().is_empty(), "an entry outlived its session");
    }
}
