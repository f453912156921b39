//! Notices pushed to a user's sessions (protocol.md §12.4): the recipient of a delivery or a
//! message is looked up by name and every session logged into that account is told, through
//! the sessions registry. A lookup that fails, or a user with no session, tells no one: a
//! notice is news, never the only copy of anything.

use vserv_core::commands::Notice;

use crate::accounts::UserName;

use super::Service;

impl Service {
    /// Pushes `notice` to every session logged into `user`'s account; returns how many.
    pub(super) fn notify_user(&self, user: &UserName, notice: &Notice) -> usize {
        match self.shared.accounts.get(user) {
            Ok(Some(account)) => self.shared.sessions.notify(account.id, notice),
            Ok(None) | Err(_) => 0,
        }
    }

    /// Tells `to`'s sessions that `from` delivered `name` into their inbox folder `folder`.
    pub(super) fn notify_delivery(&self, from: &UserName, to: &str, folder: &str, name: &str) {
        let Ok(to) = UserName::parse(to) else {
            return;
        };
        let notice = Notice::Delivery {
            from: from.to_string(),
            folder: folder.to_owned(),
            name: name.to_owned(),
        };
        self.notify_user(&to, &notice);
    }
}
