//! The service's status snapshot ([`super::Service::status`]): what an operator asks a
//! running server for (the CLI prints it on SIGUSR1).

use std::collections::BTreeMap;

use super::Service;

/// What the service is doing at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Logged-in sessions per user name (users without one are absent).
    pub sessions_by_user: BTreeMap<String, usize>,
    /// Sessions (of every address) that have not logged in.
    pub unauthenticated: usize,
    /// File transfers (uploads and downloads) open on every session.
    pub transfers: usize,
    /// The sequence number of the ledger's head (`None`: no ledger, or an empty one).
    pub ledger_head_seq: Option<u64>,
}

impl ServiceStatus {
    /// Reads the status of `service`. Account names are looked up by id; a session of an
    /// account deleted meanwhile is not counted.
    pub(super) fn gather(service: &Service) -> ServiceStatus {
        let counts = service.shared.sessions.counts();
        let mut sessions_by_user = BTreeMap::new();
        if !counts.is_empty()
            && let Ok(users) = service.accounts().list(None)
        {
            for summary in users {
                let Ok(name) = crate::accounts::UserName::parse(&summary.name) else {
                    continue;
                };
                if let Ok(Some(user)) = service.accounts().get(&name)
                    && let Some((_, n)) = counts.iter().find(|(id, _)| *id == user.id)
                {
                    sessions_by_user.insert(summary.name, *n);
                }
            }
        }
        let ledger_head_seq = service
            .ledger()
            .and_then(|l| l.head().ok().flatten())
            .map(|signed| signed.head.seq);
        ServiceStatus {
            sessions_by_user,
            unauthenticated: service.unauthenticated().total(),
            transfers: service.shared.transfers.open(),
            ledger_head_seq,
        }
    }

    /// Logged-in sessions in all.
    pub fn logged_in(&self) -> usize {
        self.sessions_by_user.values().sum()
    }
}
