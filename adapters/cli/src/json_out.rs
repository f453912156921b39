//! The stable `--json` shapes of the CLI's listings (for scripts): one JSON array per run,
//! field names fixed, times both as Unix seconds and as RFC 3339 local time.

use serde::Serialize;
use vserv_core::commands::{Delivery, DirEntry};

use crate::show::local_time;

/// One `ls --json` entry.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct EntryJson {
    /// `f` (file) or `d` (directory).
    pub kind: String,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Last modification, Unix seconds.
    pub modified: u64,
    /// Last modification, RFC 3339 local time.
    pub modified_local: String,
    /// The entry's name, as the server sent it.
    pub name: String,
}

impl From<&DirEntry> for EntryJson {
    fn from(e: &DirEntry) -> Self {
        EntryJson {
            kind: e.kind.as_str().to_owned(),
            size: e.size,
            modified: e.modified,
            modified_local: local_time(e.modified),
            name: e.name.clone(),
        }
    }
}

/// One `inbox --json` entry.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DeliveryJson {
    /// The delivered file's name.
    pub name: String,
    /// Where it stands (`received`, `refused`...).
    pub state: String,
    /// The sender.
    pub from: String,
    /// When it was sent, Unix seconds.
    pub time: u64,
    /// When it was sent, RFC 3339 local time.
    pub time_local: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// The sender's note (may be empty).
    pub note: String,
    /// Why it was refused or failed (may be empty).
    pub reason: String,
}

impl From<&Delivery> for DeliveryJson {
    fn from(d: &Delivery) -> Self {
        DeliveryJson {
            name: d.name.clone(),
            state: d.state.as_str().to_owned(),
            from: d.from.clone(),
            time: d.time,
            time_local: local_time(d.time),
            size: d.size,
            sha256: hex::encode(d.sha256),
            note: d.note.clone(),
            reason: d.reason.clone(),
        }
    }
}
