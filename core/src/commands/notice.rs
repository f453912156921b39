//! Server-pushed notices on a command session (protocol.md §12.4): the typed [`Notice`] and
//! its codec. A server sends each notice as one Notice record (content type
//! [`CONTENT_NOTICE`](crate::wire::CONTENT_NOTICE)); a client decodes it into
//! [`Event::Notice`](crate::Event::Notice). Notices are never answers: they do not carry a
//! request id and never take the place of a reply.
//!
//! Encoding: `kind:u8` then the kind's fields, big-endian, strings as `len:u16 | UTF-8`:
//!
//! | kind | notice | fields |
//! |---|---|---|
//! | `0x01` | [`Notice::Message`] | `from`, `id:u64`, `time:u64` (Unix seconds) |
//! | `0x02` | [`Notice::Delivery`] | `from`, `folder`, `name` |
//! | `0x03` | [`Notice::IdleSoon`] | `seconds_left:u32` |
//!
//! Every string is 1 to [`MAX_NOTICE_FIELD`] bytes without control characters; any other
//! kind, a short or long body, or a bad string is malformed (a fatal protocol error).

use crate::Error;
use crate::wire::codec::{Reader, put_bytes16};

/// Longest string field of a notice, in bytes (a user, folder or file name fits).
pub const MAX_NOTICE_FIELD: usize = 255;

const KIND_MESSAGE: u8 = 0x01;
const KIND_DELIVERY: u8 = 0x02;
const KIND_IDLE_SOON: u8 = 0x03;

/// What a server tells a client without being asked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Notice {
    /// A sealed message arrived in the user's mailbox.
    Message {
        /// The sender's user name.
        from: String,
        /// The message's id in the mailbox (what `mread` takes).
        id: u64,
        /// When the server stored it, in Unix seconds.
        time: u64,
    },
    /// A delivery arrived in one of the user's inbox folders.
    Delivery {
        /// The sender's user name.
        from: String,
        /// The inbox folder.
        folder: String,
        /// The delivered file's name in that folder.
        name: String,
    },
    /// The session has been idle for a while: it ends in `seconds_left` seconds unless the
    /// client sends something (sent once per idle period).
    IdleSoon {
        /// Whole seconds (rounded up) until the server's idle timeout ends the session.
        seconds_left: u32,
    },
}

impl Notice {
    /// The encoding (one Notice record's payload). Strings longer than
    /// [`MAX_NOTICE_FIELD`] are cut on a character boundary, so the result always decodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Notice::Message { from, id, time } => {
                out.push(KIND_MESSAGE);
                put_field(&mut out, from);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&time.to_be_bytes());
            }
            Notice::Delivery { from, folder, name } => {
                out.push(KIND_DELIVERY);
                put_field(&mut out, from);
                put_field(&mut out, folder);
                put_field(&mut out, name);
            }
            Notice::IdleSoon { seconds_left } => {
                out.push(KIND_IDLE_SOON);
                out.extend_from_slice(&seconds_left.to_be_bytes());
            }
        }
        out
    }

    /// Decodes one notice; any deviation from the table above is
    /// [`Error::Malformed`], never a panic.
    pub fn decode(data: &[u8]) -> Result<Notice, Error> {
        let mut r = Reader::new(data, "notice");
        let notice = match r.u8()? {
            KIND_MESSAGE => Notice::Message {
                from: field(&mut r)?,
                id: u64::from_be_bytes(r.array()?),
                time: u64::from_be_bytes(r.array()?),
            },
            KIND_DELIVERY => Notice::Delivery {
                from: field(&mut r)?,
                folder: field(&mut r)?,
                name: field(&mut r)?,
            },
            KIND_IDLE_SOON => Notice::IdleSoon {
                seconds_left: r.u32()?,
            },
            _ => return Err(Error::Malformed("notice of an unknown kind")),
        };
        r.finish()?;
        Ok(notice)
    }

    /// One line for people, e.g. `message 7 from alice` (the CLI and the shell print it).
    pub fn describe(&self) -> String {
        match self {
            Notice::Message { from, id, .. } => format!("new message {id} from {from}"),
            Notice::Delivery { from, folder, name } => {
                format!("delivery '{name}' from {from} in inbox folder '{folder}'")
            }
            Notice::IdleSoon { seconds_left } => {
                format!("the session idles out in {seconds_left} s unless used")
            }
        }
    }
}

/// Appends `s` as a notice string: cut to [`MAX_NOTICE_FIELD`] bytes on a character
/// boundary, control characters replaced by `?`, never empty.
fn put_field(out: &mut Vec<u8>, s: &str) {
    let mut clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.is_empty() {
        clean.push('?');
    }
    let mut end = clean.len().min(MAX_NOTICE_FIELD);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    put_bytes16(out, &clean.as_bytes()[..end]);
}

/// Reads a notice string (1 to [`MAX_NOTICE_FIELD`] bytes of UTF-8 without control
/// characters).
fn field(r: &mut Reader<'_>) -> Result<String, Error> {
    let s = r.str16()?;
    if s.is_empty() || s.len() > MAX_NOTICE_FIELD || s.chars().any(char::is_control) {
        return Err(Error::Malformed("notice string"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "[^\\p{Cc}]{1,40}"
    }

    fn notice() -> impl Strategy<Value = Notice> {
        prop_oneof![
            (text(), any::<u64>(), any::<u64>()).prop_map(|(from, id, time)| Notice::Message {
                from,
                id,
                time
            }),
            (text(), text(), text()).prop_map(|(from, folder, name)| Notice::Delivery {
                from,
                folder,
                name
            }),
            any::<u32>().prop_map(|seconds_left| Notice::IdleSoon { seconds_left }),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(n in notice()) {
            prop_assert_eq!(Notice::decode(&n.encode()), Ok(n));
        }

        #[test]
        fn decoding_never_panics_and_what_decodes_re_encodes(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(n) = Notice::decode(&data) {
                prop_assert_eq!(n.encode(), data);
            }
        }

        #[test]
        fn a_truncated_notice_is_malformed(n in notice(), cut in 1usize..8) {
            let bytes = n.encode();
            let short = &bytes[..bytes.len().saturating_sub(cut)];
            prop_assert!(Notice::decode(short).is_err());
        }
    }

    #[test]
    fn exact_bytes_and_rejections() {
        let n = Notice::IdleSoon { seconds_left: 30 };
        assert_eq!(n.encode(), vec![3, 0, 0, 0, 30]);
        assert!(Notice::decode(&[9]).is_err());
        assert!(Notice::decode(&[3, 0, 0, 0, 30, 0]).is_err());
        // An empty string and a control character are refused.
        assert!(Notice::decode(&[2, 0, 0, 0, 1, b'f', 0, 1, b'n']).is_err());
        assert!(Notice::decode(&[2, 0, 1, b'a', 0, 1, b'\n', 0, 1, b'n']).is_err());
        let long = Notice::Delivery {
            from: "a".repeat(400),
            folder: "\u{7}".into(),
            name: String::new(),
        };
        let back = Notice::decode(&long.encode()).unwrap();
        assert_eq!(
            back,
            Notice::Delivery {
                from: "a".repeat(MAX_NOTICE_FIELD),
                folder: "?".into(),
                name: "?".into()
            }
        );
    }
}
