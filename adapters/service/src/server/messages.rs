//! The message commands (`mkey`, `msend`, `mlist`, `mread`, `mdel`; spec/messages.md §5)
//! for the logged-in user, over the [`Mailboxes`](crate::messages::Mailboxes). The server
//! reads only a sealed message's header: it must name the sender as the logged-in user and
//! the recipient as the one addressed. A stored message is announced to the recipient's
//! sessions with a Message notice.

use vserv_core::commands::{Command, MkeyAction, Notice, Reply};
use vserv_core::messages::SealedMessage;
use vserv_core::{ErrorCode, ErrorReply, ServerKey};

use crate::accounts::{User, UserName};
use crate::messages::MailboxError;

use super::Service;
use super::errors::not_found;

impl From<MailboxError> for ErrorReply {
    fn from(e: MailboxError) -> Self {
        let code = match &e {
            MailboxError::TooLarge { .. } | MailboxError::Full { .. } => ErrorCode::TooLarge,
            MailboxError::RateLimited { .. } => ErrorCode::Forbidden,
            MailboxError::NoSuchMessage(_) => ErrorCode::NotFound,
            MailboxError::Corrupt(_) | MailboxError::Store(_) => ErrorCode::Internal,
        };
        ErrorReply::new(code, e.to_string())
    }
}

fn bad(message: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorCode::BadArguments, message)
}

impl Service {
    /// Answers a message command for `user` at `now` (Unix seconds).
    pub(super) fn messages_command(
        &self,
        user: &User,
        cmd: Command,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let boxes = &self.shared.mailboxes;
        let me = &user.name;
        match cmd {
            Command::Mkey(MkeyAction::Set(key)) => {
                ServerKey::from_bytes(&key)
                    .map_err(|_| bad("not a valid message key (33-byte SEC1 compressed point)"))?;
                boxes.set_key(me, &key)?;
                Ok(Reply::Done)
            }
            Command::Mkey(MkeyAction::Get(name)) => {
                let name = UserName::parse(&name).map_err(|e| bad(e.to_string()))?;
                match boxes.key(&name)? {
                    Some(key) => Ok(Reply::MessageKey(key)),
                    None => Err(not_found(&format!(
                        "'{name}' has published no message key (they publish one with their \
                         first `vserv msg`)"
                    ))),
                }
            }
            Command::Msend { to, sealed } => self.msend(me, &to, sealed, now),
            Command::Mlist { from } => Ok(Reply::Messages(boxes.list(me, from.as_deref())?)),
            Command::Mread { id } => Ok(Reply::Sealed(boxes.read(me, id)?.sealed)),
            Command::Mdel { id } => {
                boxes.delete(me, id)?;
                Ok(Reply::Done)
            }
            _ => Err(ErrorReply::new(
                ErrorCode::Internal,
                "not a message command",
            )),
        }
    }

    /// `msend`: checks the header against the sender and recipient, stores the message and
    /// tells the recipient's sessions.
    fn msend(
        &self,
        me: &UserName,
        to: &str,
        sealed: Vec<u8>,
        now: u64,
    ) -> Result<Reply, ErrorReply> {
        let to = UserName::parse(to).map_err(|e| bad(e.to_string()))?;
        if self.shared.accounts.get(&to)?.is_none() {
            return Err(not_found(&format!("no user '{to}'")));
        }
        let max = self.shared.mailboxes.limits().max_size;
        if sealed.len() > max {
            return Err(MailboxError::TooLarge {
                size: sealed.len(),
                max,
            }
            .into());
        }
        let header = SealedMessage::decode(&sealed)
            .map_err(|e| bad(format!("not a sealed message: {e}")))?
            .header;
        if header.from != me.as_str() || header.to != to.as_str() {
            return Err(bad(format!(
                "the sealed message is from '{}' to '{}', not from you to '{to}'",
                header.from, header.to
            )));
        }
        let summary = self.shared.mailboxes.deliver(me, &to, sealed, now)?;
        self.notify_user(
            &to,
            &Notice::Message {
                from: me.to_string(),
                id: summary.id,
                time: summary.time,
            },
        );
        Ok(Reply::MessageId(summary.id))
    }
}
