//! Users' message keys and mailboxes of sealed messages (spec/messages.md §5), over the
//! [`Store`] trait, so the in-memory crash twin models them like the rest.
//!
//! Layout of [`Table::Messages`] (user names are normalised, ids big-endian so keys sort by
//! id):
//!
//! | key | value |
//! |---|---|
//! | `k/USER` | the published message key, 33 bytes |
//! | `n/USER` | mailbox counters: `next_id:u64 count:u64 bytes:u64` |
//! | `m/USER/` `id:u64` | `read:u8 time:u64 from_len:u8 from sealed...` |
//!
//! A message and its mailbox's counters are written in one batch, so a crash keeps both or
//! neither; a full mailbox refuses before writing anything. Writes are serialised by one
//! lock, so two senders racing for the last slot cannot both get it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use vserv_core::commands::MessageSummary;
use vserv_core::wire::POINT_LEN;
use vserv_store::kv::{Op, Store, StoreError, Table};

use crate::accounts::UserName;
use crate::limits::MessageLimits;

/// Why a mailbox operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The sealed message is larger than [`MessageLimits::max_size`].
    #[error("message too large: {size} bytes, at most {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The recipient's mailbox is at its quota; nothing was stored.
    #[error(
        "{user}'s mailbox is full ({count} messages, {bytes} bytes); they must delete some first"
    )]
    Full {
        /// The recipient.
        user: String,
        /// Messages kept.
        count: u64,
        /// Bytes kept.
        bytes: u64,
    },
    /// The sender sent [`MessageLimits::per_sender`] messages in the current window.
    #[error("too many messages: at most {per} per {window} s; try again in {retry} s")]
    RateLimited {
        /// The limit.
        per: u32,
        /// The window, seconds.
        window: u64,
        /// Seconds until one more is allowed.
        retry: u64,
    },
    /// No message with that id in the mailbox.
    #[error("no message {0}")]
    NoSuchMessage(u64),
    /// A stored record does not decode.
    #[error("corrupt mailbox record {0}")]
    Corrupt(String),
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// What `mlist` shows of it.
    pub summary: MessageSummary,
    /// The sealed bytes, as sent.
    pub sealed: Vec<u8>,
}

/// The mailboxes and published keys of every user, with the limits they enforce.
pub struct Mailboxes {
    store: Arc<dyn Store>,
    limits: MessageLimits,
    /// Serialises every write (counters are read, then written).
    writing: Mutex<()>,
    /// Each sender's recent send times (Unix seconds), for the rate.
    sent: Mutex<HashMap<String, VecDeque<u64>>>,
}

impl std::fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailboxes")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn key_key(user: &UserName) -> Vec<u8> {
    [b"k/", user.as_str().as_bytes()].concat()
}

fn counters_key(user: &UserName) -> Vec<u8> {
    [b"n/", user.as_str().as_bytes()].concat()
}

fn box_prefix(user: &UserName) -> Vec<u8> {
    [b"m/", user.as_str().as_bytes(), b"/"].concat()
}

fn message_key(user: &UserName, id: u64) -> Vec<u8> {
    [box_prefix(user), id.to_be_bytes().to_vec()].concat()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Mailbox counters: the next id, and the messages and bytes kept.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    next_id: u64,
    count: u64,
    bytes: u64,
}

impl Counters {
    fn encode(self) -> Vec<u8> {
        [self.next_id, self.count, self.bytes]
            .iter()
            .flat_map(|n| n.to_be_bytes())
            .collect()
    }

    fn decode(bytes: &[u8]) -> Option<Counters> {
        let n = |i: usize| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        (bytes.len() == 24).then_some(())?;
        Some(Counters {
            next_id: n(0)?,
            count: n(1)?,
            bytes: n(2)?,
        })
    }
}

fn encode_record(m: &StoredMessage) -> Vec<u8> {
    let from = m.summary.from.as_bytes();
    let mut out = Vec::with_capacity(10 + from.len() + m.sealed.len());
    out.push(u8::from(m.summary.read));
    out.extend_from_slice(&m.summary.time.to_be_bytes());
    out.push(from.len() as u8);
    out.extend_from_slice(from);
    out.extend_from_slice(&m.sealed);
    out
}

fn decode_record(id: u64, bytes: &[u8]) -> Option<StoredMessage> {
    let (&read, rest) = bytes.split_first()?;
    let (time, rest) = rest.split_first_chunk::<8>()?;
    let (&n, rest) = rest.split_first()?;
    let from = std::str::from_utf8(rest.get(..usize::from(n))?).ok()?;
    let sealed = rest.get(usize::from(n)..)?.to_vec();
    Some(StoredMessage {
        summary: MessageSummary {
            id,
            from: from.to_owned(),
            time: u64::from_be_bytes(*time),
            size: sealed.len() as u64,
            read: read != 0,
        },
        sealed,
    })
}

impl Mailboxes {
    /// Mailboxes kept in `store`, enforcing `limits`.
    pub fn new(store: Arc<dyn Store>, limits: MessageLimits) -> Mailboxes {
        Mailboxes {
            store,
            limits,
            writing: Mutex::new(()),
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &MessageLimits {
        &self.limits
    }

    /// Publishes `key` as `user`'s message key (replacing an earlier one).
    pub fn set_key(&self, user: &UserName, key: &[u8; POINT_LEN]) -> Result<(), MailboxError> {
        let _w = lock(&self.writing);
        self.store.commit(vec![Op::Put {
            table: Table::Messages,
            key: key_key(user),
            value: key.to_vec(),
        }])?;
        Ok(())
    }

    /// `user`'s published message key, if any.
    pub fn key(&self, user: &UserName) -> Result<Option<[u8; POINT_LEN]>, MailboxError> {
        match self.store.get(Table::Messages, &key_key(user))? {
            None => Ok(None),
            Some(v) => v
                .as_slice()
                .try_into()
                .map(Some)
                .map_err(|_| MailboxError::Corrupt(format!("key of {user}"))),
        }
    }

    fn counters(&self, user: &UserName) -> Result<Counters, MailboxError> {
        match self.store.get(Table::Messages, &counters_key(user))? {
            None => Ok(Counters {
                next_id: 1,
                ..Counters::default()
            }),
            Some(v) => Counters::decode(&v)
                .ok_or_else(|| MailboxError::Corrupt(format!("counters of {user}"))),
        }
    }

    /// Counts one send by `from` at `now` against the sender rate, or refuses it.
    fn take_rate(&self, from: &UserName, now: u64) -> Result<(), MailboxError> {
        let (per, window) = (self.limits.per_sender, self.limits.rate_window_secs);
        let mut sent = lock(&self.sent);
        let times = sent.entry(from.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| t.saturating_add(window) <= now)
        {
            times.pop_front();
        }
        if times.len() >= per as usize {
            let retry = times
                .front()
                .map_or(window, |t| t.saturating_add(window).saturating_sub(now));
            return Err(MailboxError::RateLimited { per, window, retry });
        }
        times.push_back(now);
        Ok(())
    }

    /// Stores `sealed` from `from` in `to`'s mailbox at `now` (Unix seconds), in one batch
    /// with the mailbox counters, and returns its summary. Refuses, storing nothing, a
    /// message over the size limit, a sender over its rate and a full mailbox.
    pub fn deliver(
        &self,
        from: &UserName,
        to: &UserName,
        sealed: Vec<u8>,
        now: u64,
    ) -> Result<MessageSummary, MailboxError> {
        if sealed.len() > self.limits.max_size {
            return Err(MailboxError::TooLarge {
                size: sealed.len(),
                max: self.limits.max_size,
            });
        }
        let _w = lock(&self.writing);
        let c = self.counters(to)?;
        let size = sealed.len() as u64;
        if c.count >= self.limits.mailbox_messages
            || c.bytes.saturating_add(size) > self.limits.mailbox_bytes
        {
            return Err(MailboxError::Full {
                user: to.to_string(),
                count: c.count,
                bytes: c.bytes,
            });
        }
        self.take_rate(from, now)?;
        let message = StoredMessage {
            summary: MessageSummary {
                id: c.next_id,
                from: from.to_string(),
                time: now,
                size,
                read: false,
            },
            sealed,
        };
        let after = Counters {
            next_id: c.next_id.saturating_add(1),
            count: c.count + 1,
            bytes: c.bytes + size,
        };
        self.store.commit(vec![
            Op::Put {
                table: Table::Messages,
                key: message_key(to, c.next_id),
                value: encode_record(&message),
            },
            Op::Put {
                table: Table::Messages,
                key: counters_key(to),
                value: after.encode(),
            },
        ])?;
        Ok(message.summary)
    }

    /// `user`'s messages, newest first, only those from `from` if given.
    pub fn list(
        &self,
        user: &UserName,
        from: Option<&str>,
    ) -> Result<Vec<MessageSummary>, MailboxError> {
        let prefix = box_prefix(user);
        let mut out = Vec::new();
        for (key, value) in self.store.scan(Table::Messages, &prefix)? {
            let id = key
                .get(prefix.len()..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| MailboxError::Corrupt(format!("message key of {user}")))?;
            let m = decode_record(id, &value)
                .ok_or_else(|| MailboxError::Corrupt(format!("message {id} of {user}")))?;
            if from.is_none_or(|f| f == m.summary.from) {
                out.push(m.summary);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Message `id` of `user`'s mailbox; it is marked read (durably) if it was not.
    pub fn read(&self, user: &UserName, id: u64) -> Result<StoredMessage, MailboxError> {
        let _w = lock(&self.writing);
        let key = message_key(user, id);
        let value = self
            .store
            .get(Table::Messages, &key)?
            .ok_or(MailboxError::NoSuchMessage(id))?;
        let mut m = decode_record(id, &value)
            .ok_or_else(|| MailboxError::Corrupt(format!("message {id} of {user}")))?;
        if !m.summary.read {
            m.summary.read = true;
            self.store.commit(vec![Op::Put {
                table: Table::Messages,
                key,
                value: encode_record(&m),
            }])?;
        }
        Ok(m)
    }

    /// Deletes message `id` of `user`'s mailbox, with its counters, in one batch.
    pub fn delete(&self, user: &UserName, id: u64) -> Result<(), MailboxError> {
        let _w = lock(&self.writing);
        let key = message_key(user, id);
        let value = self
            .store
            .get(Table::Messages, &key)?
            .ok_or(MailboxError::NoSuchMessage(id))?;
        let m = decode_record(id, &value)
            .ok_or_else(|| MailboxError::Corrupt(format!("message {id} of {user}")))?;
        let c = self.counters(user)?;
        let after = Counters {
            next_id: c.next_id,
            count: c.count.saturating_sub(1),
            bytes: c.bytes.saturating_sub(m.summary.size),
        };
        self.store.commit(vec![
            Op::Delete {
                table: Table::Messages,
                key,
            },
            Op::Put {
                table: Table::Messages,
                key: counters_key(user),
                value: after.encode(),
            },
        ])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vserv_store::memory::MemoryStore;

    fn name(s: &str) -> UserName {
        UserName::parse(s).unwrap()
    }

    fn boxes(limits: MessageLimits) -> Mailboxes {
        Mailboxes::new(Arc::new(MemoryStore::new()), limits)
    }

    #[test]
    fn deliver_list_read_delete() {
        let b = boxes(MessageLimits::default());
        let (alice, bob) = (name("alice"), name("bob"));
        let first = b.deliver(&alice, &bob, vec![1; 10], 100).unwrap();
        let second = b.deliver(&alice, &bob, vec![2; 20], 200).unwrap();
        assert_eq!((first.id, second.id), (1, 2));
        let list = b.list(&bob, None).unwrap();
        assert_eq!(list.iter().map(|m| m.id).collect::<Vec<_>>(), vec![2, 1]);
        assert!(b.list(&bob, Some("carol")).unwrap().is_empty());
        let read = b.read(&bob, 1).unwrap();
        assert_eq!(read.sealed, vec![1; 10]);
        assert!(b.list(&bob, None).unwrap()[1].read);
        b.delete(&bob, 1).unwrap();
        assert!(matches!(
            b.read(&bob, 1),
            Err(MailboxError::NoSuchMessage(1))
        ));
        // Ids are never reused.
        assert_eq!(b.deliver(&alice, &bob, vec![3], 300).unwrap().id, 3);
    }

    #[test]
    fn a_full_mailbox_refuses_and_keeps_what_it_holds() {
        let b = boxes(MessageLimits {
            mailbox_messages: 2,
            ..MessageLimits::default()
        });
        let (alice, bob) = (name("alice"), name("bob"));
        b.deliver(&alice, &bob, vec![1], 1).unwrap();
        b.deliver(&alice, &bob, vec![2], 2).unwrap();
        assert!(matches!(
            b.deliver(&alice, &bob, vec![3], 3),
            Err(MailboxError::Full { count: 2, .. })
        ));
        assert_eq!(b.list(&bob, None).unwrap().len(), 2);
        b.delete(&bob, 1).unwrap();
        b.deliver(&alice, &bob, vec![3], 3).unwrap();
    }

    #[test]
    fn size_and_sender_rate_are_limited() {
        let b = boxes(MessageLimits {
            max_size: 4,
            per_sender: 2,
            rate_window_secs: 10,
            ..MessageLimits::default()
        });
        let (alice, bob) = (name("alice"), name("bob"));
        assert!(matches!(
            b.deliver(&alice, &bob, vec![0; 5], 0),
            Err(MailboxError::TooLarge { .. })
        ));
        b.deliver(&alice, &bob, vec![1], 0).unwrap();
        b.deliver(&alice, &bob, vec![1], 1).unwrap();
        assert!(matches!(
            b.deliver(&alice, &bob, vec![1], 2),
            Err(MailboxError::RateLimited { retry: 8, .. })
        ));
        b.deliver(&alice, &bob, vec![1], 10).unwrap();
    }

    #[test]
    fn keys_are_published_and_fetched() {
        let b = boxes(MessageLimits::default());
        let bob = name("bob");
        assert_eq!(b.key(&bob).unwrap(), None);
        b.set_key(&bob, &[2; POINT_LEN]).unwrap();
        assert_eq!(b.key(&bob).unwrap(), Some([2; POINT_LEN]));
    }
}
