//! Sample values of every command and of its replies, gathered from the domain modules (each
//! owns its samples beside its codec): the fuzz targets' catalogue, and the tests' proof that
//! every command round-trips. Compiled for tests and the `fuzzing` feature only.

use super::{
    Command, Domain, Reply, accounts, delivery, files, ledger, messages, replication, session,
    tables, transfers, transit,
};
use crate::ledger::{Entry, EntryFields, Head, SignedHead, ZERO_HASH};
use crate::secure::{Fingerprint, ServerIdentity};

/// The values that sample replies carry and that only a server identity can make.
#[derive(Debug, Clone)]
pub(crate) struct SampleValues {
    /// The identity's fingerprint (`id`).
    pub(crate) fingerprint: Fingerprint,
    /// A valid first entry of the identity's feed (`rget`, `rabs`, `rlist`).
    pub(crate) entry: Entry,
    /// The signed head of that entry (`rhead`).
    pub(crate) head: SignedHead,
}

impl SampleValues {
    /// Samples made with `identity`.
    pub(crate) fn new(identity: &ServerIdentity) -> SampleValues {
        let fields = EntryFields {
            origin: identity.public_key(),
            seq: 1,
            prev: ZERO_HASH,
            timestamp: 0,
            author: "u".into(),
            kind: "k".into(),
            record_id: b"r1".to_vec(),
            body: Vec::new(),
        };
        let entry = match Entry::new(fields) {
            Ok(entry) => entry,
            Err(e) => unreachable!("the sample entry is valid: {e}"),
        };
        SampleValues {
            fingerprint: identity.public_key().fingerprint(),
            head: SignedHead::sign(identity, Head::of(&entry)),
            entry,
        }
    }
}

/// Sample commands of every kind (several forms of most), domain by domain.
pub(crate) fn commands() -> Vec<Command> {
    [
        session::samples(),
        accounts::samples(),
        ledger::samples(),
        files::samples(),
        transfers::samples(),
        delivery::samples(),
        replication::samples(),
        messages::samples(),
        tables::samples(),
        transit::samples(),
    ]
    .concat()
}

/// Sample successful replies to `cmd` (every reply shape `cmd` can get).
pub(crate) fn replies(cmd: &Command, values: &SampleValues) -> Vec<Reply> {
    in_domain!(cmd.kind().domain(), sample_replies(cmd, values))
}

/// Every kind the samples cover, for the coverage test.
#[cfg(test)]
fn kinds_covered() -> std::collections::BTreeSet<super::CommandKind> {
    commands().iter().map(Command::kind).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{COMMANDS, CommandKind, command_info};
    use crate::wire::Request;

    fn values() -> SampleValues {
        match ServerIdentity::from_secret_bytes(&[7; 32]) {
            Ok(identity) => SampleValues::new(&identity),
            Err(e) => unreachable!("a fixed identity: {e}"),
        }
    }

    #[test]
    fn every_row_name_parses_back_to_its_kind() {
        for (i, row) in COMMANDS.iter().enumerate() {
            assert_eq!(CommandKind::from_name(row.name), Some(row.kind));
            assert_eq!(row.kind.name(), row.name);
            assert_eq!(row.kind.info(), row);
            assert_eq!(CommandKind::ALL[i], row.kind);
            assert_eq!(command_info(row.name), Some(row));
            assert!(row.min_args <= row.max_args, "{}", row.name);
            assert!(row.usage.starts_with(row.name), "{}", row.name);
        }
        assert_eq!(CommandKind::from_name("frobnicate"), None);
    }

    #[test]
    fn the_samples_cover_every_kind() {
        let missing: Vec<_> = CommandKind::ALL
            .iter()
            .filter(|k| !kinds_covered().contains(k))
            .collect();
        assert!(missing.is_empty(), "no sample of {missing:?}");
    }

    #[test]
    fn every_sample_command_round_trips_and_fits_its_arity() {
        for cmd in commands() {
            let args = cmd.args();
            let info = cmd.kind().info();
            assert!(
                (info.min_args..=info.max_args).contains(&args.len()),
                "{cmd:?} encodes {} arguments",
                args.len()
            );
            let req = Request {
                id: 1,
                name: cmd.name().to_owned(),
                args,
            };
            assert_eq!(Command::parse(&req).as_ref(), Ok(&cmd));
            assert_eq!(
                Command::parse(&req).map(|c| c.kind()),
                Ok(cmd.kind()),
                "{cmd:?}"
            );
        }
    }

    #[test]
    fn every_sample_reply_round_trips() {
        let values = values();
        for cmd in commands() {
            let replies = replies(&cmd, &values);
            assert!(!replies.is_empty(), "no sample reply to {cmd:?}");
            for reply in replies {
                let fields = reply.to_fields();
                assert_eq!(reply.clone().into_fields(), fields, "{cmd:?}");
                assert_eq!(Reply::from_fields(&cmd, &fields), Ok(reply), "{cmd:?}");
            }
        }
    }

    #[test]
    fn a_domain_refuses_the_replies_of_commands_it_does_not_own() {
        // `Reply::from_fields` always asks the command's own domain; the others' fallback
        // is an error, never a guess.
        let values = values();
        for cmd in commands() {
            let fields = super::super::reply::Fields(&[]);
            let domain = cmd.kind().domain();
            for other in [
                Domain::Session,
                Domain::Accounts,
                Domain::Ledger,
                Domain::Files,
                Domain::Transfers,
                Domain::Delivery,
                Domain::Replication,
                Domain::Messages,
                Domain::Tables,
                Domain::Transit,
            ] {
                if other != domain {
                    assert!(in_domain!(other, decode_reply(&cmd, &fields)).is_err());
                    assert!(in_domain!(other, encode(&cmd)).is_empty());
                    assert!(in_domain!(other, sample_replies(&cmd, &values)).is_empty());
                }
            }
        }
    }
}
