//! The ledger commands: `rput` (appended by `drive` in groups, or here one at a time on the
//! synchronous path, always to the own feed) and the reads (`rget`, `rhave`, `rabs`,
//! `rsize`, `rcount`, `rlist`, `rhead`, `rcheck`) of the feed their ORIGIN names: the own
//! feed without one, else the held feed of that fingerprint (a replica, or the own feed for
//! the server's own fingerprint).

use vserv_core::commands::{self, Command, RecordSelector, Reply};
use vserv_core::{ErrorCode, ErrorReply, Fingerprint};

use crate::accounts::User;
use crate::ledger::{Appended, CheckReport, Feed, FeedError, Ledger, NewRecord};

use super::Service;
use super::errors::{no_ledger, not_found};
use super::session::SessionState;

/// An `rput`'s answer.
pub(super) fn appended_reply(result: Result<Appended, FeedError>) -> Result<Reply, ErrorReply> {
    result
        .map(|a| Reply::Appended {
            seq: a.seq,
            hash: a.hash,
        })
        .map_err(ErrorReply::from)
}

impl Service {
    /// Appends one record and waits for its commit (the synchronous path).
    pub(super) fn append_now(&self, record: NewRecord) -> Result<Reply, ErrorReply> {
        let Some(ledger) = &self.shared.ledger else {
            return Err(no_ledger());
        };
        appended_reply(
            ledger
                .append_batch(vec![record])
                .pop()
                .unwrap_or(Err(FeedError::Corrupt("append lost its result".into()))),
        )
    }

    /// The feed a read names: the own feed for `None` and for the server's own fingerprint,
    /// else the replica held of `origin` ([`ErrorCode::NotFound`] when none is held; a
    /// service without [`Service::with_replicas`] holds none).
    fn read_feed(&self, ledger: &Ledger, origin: Option<&Fingerprint>) -> Result<Feed, ErrorReply> {
        // The own feed through the ledger, whose view sees the hash index tail.
        let Some(origin) = origin.filter(|o| **o != self.shared.info.fingerprint) else {
            return Ok(ledger.feed());
        };
        let held = match &self.shared.replicas {
            Some(replicas) => replicas.feed_of(origin)?,
            None => (*origin == self.shared.info.fingerprint).then(|| ledger.feed()),
        };
        held.ok_or_else(|| not_found("no feed of that origin is held here"))
    }

    /// The `r*` reads for the admitted `user`, of the feed the command's origin names.
    pub(super) fn ledger_command(
        &self,
        state: &SessionState,
        user: Option<&User>,
        cmd: Command,
    ) -> Result<Reply, ErrorReply> {
        let Some(ledger) = &self.shared.ledger else {
            return Err(no_ledger());
        };
        let ledger = self.read_feed(ledger, cmd.origin())?;
        let found = |e: Option<vserv_core::ledger::Entry>, what: &str| {
            e.map(Reply::Record).ok_or_else(|| not_found(what))
        };
        match cmd {
            Command::Rget { selector, .. } => match selector {
                RecordSelector::Seq(seq) => found(ledger.by_seq(seq)?, "no entry at that seq"),
                RecordSelector::Id(id) => found(ledger.by_id(&id)?, "no record with that id"),
                RecordSelector::Hash(hash) => {
                    found(ledger.by_hash(&hash)?, "no entry with that hash")
                }
            },
            Command::Rhave { record_id, .. } => {
                Ok(Reply::Have(ledger.seq_of_id(&record_id)?.is_some()))
            }
            Command::Rabs { pos, .. } => {
                found(ledger.by_position(pos)?, "no entry at that position")
            }
            Command::Rsize { kind: None, .. } => Ok(Reply::Count(ledger.size()?)),
            Command::Rsize {
                kind: Some(kind), ..
            } => Ok(Reply::Count(ledger.size_of_kind(&kind)?)),
            Command::Rcount { kind, range, .. } => {
                Ok(Reply::Count(ledger.count(&kind, range.from, range.to)?))
            }
            Command::Rlist {
                kind, range, limit, ..
            } => {
                let limit = limit.unwrap_or(commands::RLIST_DEFAULT_LIMIT);
                let page = ledger.list(
                    kind.as_deref(),
                    range.from,
                    range.to,
                    usize::try_from(limit).unwrap_or(usize::MAX),
                )?;
                Ok(Reply::Page {
                    entries: page.entries,
                    next: page.next,
                })
            }
            Command::Rhead { .. } => ledger
                .head()?
                .map(Reply::Head)
                .ok_or_else(|| not_found("no head: the ledger is empty")),
            Command::Rcheck { range, .. } => {
                let report = match range {
                    None => ledger.check(),
                    Some(r) => ledger.check_range(r.from, r.to, &mut |_| {}),
                }
                .map_err(FeedError::Store)?;
                let me = user.map(|u| u.name.to_string()).unwrap_or_default();
                tracing::info!(target: "vserv::audit", by = %me, action = "rcheck", user = %me,
                    origin = %ledger.origin().fingerprint(), peer = ?state.peer, "admin action");
                Ok(match report {
                    CheckReport::Ok { seq } => Reply::ChainOk { seq },
                    CheckReport::Bad { seq, reason } => {
                        tracing::warn!(target: "vserv::audit", ?seq, %reason, "rcheck found a bad ledger");
                        Reply::ChainBad { seq, reason }
                    }
                })
            }
            _ => Err(ErrorReply::new(ErrorCode::Internal, "not a ledger command")),
        }
    }
}
