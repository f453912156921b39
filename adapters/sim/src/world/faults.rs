//! Faults of whole servers: a crashed server process replaced in place (same address) by a
//! new one on whatever storage survived, and partitions that keep two servers from reaching
//! each other until healed. Both are events of the world's trace, so runs stay replayable.

use vserv_service::Service;

use super::{Kind, ServerId, ServerSpec, SimError, World};
use crate::work::SimRunner;

impl World {
    /// The process of `server` dies and a new one takes its place at the same address, with
    /// the same identity and configuration, serving `service` (typically a node reopened
    /// on the store the dead process left: only what it persisted).
    ///
    /// Guarantees: every connection of the dead process (accepted ones and its replication
    /// dials) is reset at once (its peers see the reset, nothing more is written or read on
    /// it), and none of the blocking work it handed over runs any more; later connections
    /// to the address reach `service`.
    pub fn restart_server(&mut self, server: ServerId, service: Service) -> Result<(), SimError> {
        let spec = self
            .servers
            .get(server.0)
            .map(|node| ServerSpec {
                service,
                ..node.spec.clone()
            })
            .ok_or(SimError::NoSuchServer(server))?;
        self.replace_server(server, spec)
    }

    /// Like [`World::restart_server`], but the new process is `spec`: it may prove another
    /// identity (a machine wiped and set up again with a new key) at the same address.
    pub fn replace_server(
        &mut self,
        server: ServerId,
        mut spec: ServerSpec,
    ) -> Result<(), SimError> {
        let si = server.0;
        let address = self
            .servers
            .get(si)
            .map(|node| node.address.clone())
            .ok_or(SimError::NoSuchServer(server))?;
        // Work handed over but not yet scheduled dies with the process too.
        self.pump();
        self.log(format!("server {address} crashes"));
        for ep in 0..self.endpoints.len() {
            let Some(e) = self.endpoints.get(ep) else {
                continue;
            };
            let ours = matches!(&e.kind, Kind::Server(s) if s.server == si);
            if e.reading && ours {
                let link = e.link;
                self.reset_link(link);
                self.finish(ep, Some("server crashed".into()));
            }
        }
        let before = self.scheduled.len();
        self.scheduled.retain(|w| w.server != Some(si));
        let dropped = before - self.scheduled.len();
        spec.service = spec.service.with_runner(std::sync::Arc::new(SimRunner {
            server: si,
            hub: self.hub.clone(),
        }));
        if let Some(node) = self.servers.get_mut(si) {
            node.spec = spec;
            node.open = 0;
            node.stopped = false;
        }
        self.log(format!(
            "server {address} restarted ({dropped} work item(s) of the old process dropped)"
        ));
        Ok(())
    }

    /// Cuts `a` off from `b` until [`World::heal`]: their links are reset now, and their
    /// replication dials to each other fail (and are retried after the dialer's backoff).
    pub fn partition(&mut self, a: ServerId, b: ServerId) {
        let pair = (a.0.min(b.0), a.0.max(b.0));
        self.partitions.insert(pair);
        self.log(format!("partition {} | {}", pair.0, pair.1));
        for li in 0..self.links.len() {
            let Some(l) = self.links.get(li) else {
                continue;
            };
            let Some(dialer) = l.dialer else {
                continue;
            };
            let open = [l.client_end, l.server_end]
                .iter()
                .any(|&ep| self.endpoints.get(ep).is_some_and(|e| e.reading));
            if open && (dialer.min(l.server), dialer.max(l.server)) == pair {
                self.reset_link(li);
            }
        }
    }

    /// Lets `a` and `b` reach each other again (their next dials succeed).
    pub fn heal(&mut self, a: ServerId, b: ServerId) {
        let pair = (a.0.min(b.0), a.0.max(b.0));
        if self.partitions.remove(&pair) {
            self.log(format!("healed {} | {}", pair.0, pair.1));
        }
    }

    /// Heals every partition.
    pub fn heal_all(&mut self) {
        for (a, b) in std::mem::take(&mut self.partitions) {
            self.log(format!("healed {a} | {b}"));
        }
    }

    /// Whether servers `a` and `b` are partitioned from each other.
    pub fn partitioned(&self, a: usize, b: usize) -> bool {
        self.partitions.contains(&(a.min(b), a.max(b)))
    }
}
