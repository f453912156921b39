//! One sealed UDP datagram in, at most one answer out (spec/datagrams.md §4-§6). The checks
//! run cheapest first and nothing is answered that did not authenticate: size and shape,
//! time window and replay (read only), the source's rate limit, ECDH and the tag, then the
//! nonce is remembered. The request then takes the TCP path (`dispatch.rs`: parse, admit,
//! `route`/`execute`) as an anonymous session, for commands on the UDP allow-list only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use vserv_core::commands::{Command, CommandKind};
use vserv_core::datagram::{
    KIND_KEY_QUERY, OpenedRequest, RequestDatagram, check_key_query, encode_key_answer,
    open_request,
};
use vserv_core::{ErrorCode, ErrorReply, Response, ServerIdentity};

use super::Service;
use super::dispatch::Route;
use super::session::{Handled, Session};
use crate::datagram::state::lock;
use crate::datagram::{
    DatagramOutcome, DatagramSettings, DatagramState, DatagramStatsSnapshot, DropReason,
    PendingAnswer, allowed_over_udp,
};

impl Service {
    /// This service answering sealed datagrams for `identity` (the key its clients pin),
    /// with `settings`. Without it, [`Service::datagram`] drops everything.
    pub fn with_datagrams(self, identity: &ServerIdentity, settings: DatagramSettings) -> Self {
        let state = Arc::new(DatagramState::new(identity, settings));
        self.configure(|s| s.datagrams = Some(state))
    }

    /// The datagram counters, if the service answers datagrams.
    pub fn datagram_stats(&self) -> Option<DatagramStatsSnapshot> {
        self.shared.datagrams.as_ref().map(|d| d.stats.snapshot())
    }

    /// Decides what to do with one datagram received from `from` at `now_ms` (Unix
    /// milliseconds); `iv` is fresh randomness for the answer's record. Never waits: a
    /// command that blocks comes back as [`DatagramOutcome::Run`].
    pub fn datagram(
        &self,
        bytes: &[u8],
        from: SocketAddr,
        now_ms: u64,
        iv: [u8; 16],
    ) -> DatagramOutcome {
        let Some(state) = self.shared.datagrams.clone() else {
            return DatagramOutcome::Drop(DropReason::NotServed);
        };
        state.stats.received.fetch_add(1, Ordering::Relaxed);
        let outcome = self.datagram_checked(&state, bytes, from, now_ms, iv);
        match &outcome {
            Err(reason) | Ok(DatagramOutcome::Drop(reason)) => {
                state.stats.count_drop(*reason);
                tracing::debug!(%from, ?reason, "datagram dropped");
            }
            Ok(DatagramOutcome::Answer(_)) => {
                state.stats.answered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
        }
        outcome.unwrap_or_else(DatagramOutcome::Drop)
    }

    fn datagram_checked(
        &self,
        state: &Arc<DatagramState>,
        bytes: &[u8],
        from: SocketAddr,
        now_ms: u64,
        iv: [u8; 16],
    ) -> Result<DatagramOutcome, DropReason> {
        let now = now_ms / 1000;
        if bytes.first() == Some(&KIND_KEY_QUERY) {
            check_key_query(bytes).map_err(DropReason::Refused)?;
            self.rate_limit(state, from, now_ms)?;
            state.stats.key_queries.fetch_add(1, Ordering::Relaxed);
            return Ok(DatagramOutcome::Answer(
                encode_key_answer(&state.key.public()).to_vec(),
            ));
        }
        let datagram = RequestDatagram::decode(bytes).map_err(DropReason::Refused)?;
        lock(&state.replay)
            .check(datagram.time, &datagram.nonce, now)
            .map_err(DropReason::Refused)?;
        self.rate_limit(state, from, now_ms)?;
        let opened = open_request(&state.key, &datagram).map_err(DropReason::Refused)?;
        lock(&state.replay)
            .accept(opened.time, &opened.nonce, now)
            .map_err(DropReason::Refused)?;
        Ok(self.datagram_request(state, opened, from, now_ms, iv))
    }

    fn rate_limit(
        &self,
        state: &DatagramState,
        from: SocketAddr,
        now_ms: u64,
    ) -> Result<(), DropReason> {
        if lock(&state.limiter).allow(&from.ip(), now_ms) {
            Ok(())
        } else {
            Err(DropReason::RateLimited)
        }
    }

    /// Runs an authenticated request through the TCP dispatch, as an anonymous session.
    fn datagram_request(
        &self,
        state: &Arc<DatagramState>,
        opened: OpenedRequest,
        from: SocketAddr,
        now_ms: u64,
        iv: [u8; 16],
    ) -> DatagramOutcome {
        let request = &opened.request;
        let kind = CommandKind::from_name(&request.name);
        if let Some(kind) = kind
            && !allowed_over_udp(kind)
        {
            let refused = Err(ErrorReply::new(
                ErrorCode::Forbidden,
                format!("'{}' is not served over UDP; use TCP", request.name),
            ));
            return DatagramOutcome::Answer(seal(state, &opened, refused.into(), iv));
        }
        let mut session = Session::new(Some(from.ip()));
        let Some(mut session_state) = session.state.take() else {
            return DatagramOutcome::Drop(DropReason::NotServed);
        };
        match self.route(&mut session_state, Command::parse(request), now_ms) {
            Route::Now(handled) => DatagramOutcome::Answer(seal(state, &opened, handled, iv)),
            Route::Blocking(cmd, user) => {
                let Some(slot) = state.work_slot() else {
                    return DatagramOutcome::Drop(DropReason::Busy);
                };
                let service = self.clone();
                let state = state.clone();
                DatagramOutcome::Run(PendingAnswer {
                    job: Box::new(move || {
                        let _slot = slot;
                        let handled = service.execute(&mut session_state, user, cmd, now_ms);
                        let bytes = seal(&state, &opened, handled, iv);
                        state.stats.answered.fetch_add(1, Ordering::Relaxed);
                        bytes
                    }),
                })
            }
            // Not on the allow-list; refused all the same if one ever were.
            Route::Append(_) | Route::Peer { .. } => {
                let refused = Err(ErrorReply::new(
                    ErrorCode::Forbidden,
                    "this command is not served over UDP; use TCP",
                ));
                DatagramOutcome::Answer(seal(state, &opened, refused.into(), iv))
            }
        }
    }
}

/// Seals the answer to `opened`, counting the "too large" ones.
fn seal(state: &DatagramState, opened: &OpenedRequest, handled: Handled, iv: [u8; 16]) -> Vec<u8> {
    let response = Response {
        id: opened.request.id,
        result: handled.result.map(|r| r.to_fields()),
    };
    let sealed = opened.seal_response(&response, iv);
    if sealed.too_large.is_some() {
        state.stats.too_large.fetch_add(1, Ordering::Relaxed);
    }
    sealed.bytes
}
