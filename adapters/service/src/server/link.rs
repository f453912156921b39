//! Replication links on a session (spec/replication.md): a listening node turns a session
//! into a link when a configured peer proves its key with `peer`; a dialing node's session
//! proves its own key and becomes one when the peer accepts. Either way the session then
//! drives the core's [`Link`] over the connection's byte stream: stream bytes and timers in,
//! the link's reads, persists and fork proofs out as [`Work`] on the runner, their results
//! back through the session's mailbox, and the heads every other part of the node commits
//! pushed in (`peers.rs`). The session takes no request any more.

use std::sync::Arc;
use std::time::Instant;

use vserv_core::commands::Command;
use vserv_core::commands::{ForkSummary, PeerStatus};
use vserv_core::ledger::SignedHead;
use vserv_core::replication::{
    ForkProof, Link, LinkEvent, NodeRequest, ReplicationError, Segment, Verdict, accept,
    sign_peer_link, verify_peer_link,
};
use vserv_core::wire::{POINT_LEN, SIGNATURE_LEN};
use vserv_core::{
    CloseCode, Connection, Error, ErrorCode, ErrorReply, Event, Fingerprint, ServerKey,
};
use vserv_core::{Response, commands::Reply};

use super::Service;
use super::errors::respond;
use super::peers::{Dial, LinkNews, Peers};
use super::session::{Completion, Session};
use crate::replicas::{ReplicaError, Replicas};
use crate::work::{Mailbox, Work};

/// A session that is a replication link, or a dialing session on its way to being one.
#[derive(Debug)]
pub(super) enum LinkState {
    /// Dialing: waiting for the handshake, then for the answer to `peer`.
    Dialing {
        /// The fingerprint of the key the peer must prove.
        expect: Fingerprint,
        /// The id of the `peer` request, once sent.
        request: Option<u32>,
    },
    /// The link is up.
    Up {
        link: Box<Link>,
        /// The peer's key.
        peer: ServerKey,
        /// This node dialed it.
        dialed: bool,
        /// Segments waiting for the batch being persisted: one batch at a time per link, in
        /// order, so each segment meets the accept rule against what came before it.
        persists: std::collections::VecDeque<Segment>,
        /// A persist is with the runner.
        persisting: bool,
    },
}

/// A link's completed work, or news from the rest of the node.
#[derive(Debug)]
pub(super) enum LinkDone {
    /// A [`NodeRequest::ReadSegment`] was answered.
    Read {
        origin: ServerKey,
        result: Result<Option<crate::replicas::Segment>, ReplicaError>,
    },
    /// [`NodeRequest::Persist`]s are done: the segments of each `(origin, last seq)`, in
    /// the order the link asked (all stored in one batch, or none).
    Persisted {
        segments: Vec<(ServerKey, u64)>,
        result: Result<(), String>,
    },
    /// A [`NodeRequest::StoreFork`] is done.
    ForkStored(Result<(), String>),
    /// News from elsewhere in the node.
    News(LinkNews),
}

impl Service {
    /// The replication peers, if this service replicates.
    fn peers(&self) -> Option<&Arc<Peers>> {
        self.shared.peers.as_ref()
    }

    /// A listening session's `peer` request `(key, signature)`: if `key` is a configured
    /// peer and `signature` signs this session's id, answers success, opens the stream and
    /// makes the session a link. Otherwise answers the refusal (the session stays a command
    /// session).
    pub(super) fn accept_peer(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        id: u32,
        (key, signature): ([u8; POINT_LEN], [u8; SIGNATURE_LEN]),
        now: Instant,
        now_ms: u64,
    ) -> Result<(), Error> {
        let refuse = |conn: &mut Connection, code, message: &str| {
            let result = Err(ErrorReply::new(code, message));
            respond(conn, &Response { id, result })
        };
        let Some(peers) = self.peers().cloned() else {
            return refuse(conn, ErrorCode::Forbidden, "this server does not replicate");
        };
        let session_id = session.state.as_ref().and_then(|s| s.session_id);
        let (Some(session_id), true) = (session_id, session.answers.is_empty()) else {
            return refuse(
                conn,
                ErrorCode::BadArguments,
                "peer must be the first request of a connection",
            );
        };
        let key = match ServerKey::from_bytes(&key) {
            Ok(key) if peers.allows(&key) => key,
            _ => return refuse(conn, ErrorCode::Forbidden, "not a peer of this server"),
        };
        if verify_peer_link(&key, &session_id, &signature).is_err() {
            peers.status.error(
                &key.fingerprint(),
                "its link signature did not verify (link refused)",
            );
            return refuse(
                conn,
                ErrorCode::Forbidden,
                "the peer link signature does not verify",
            );
        }
        // Registered before the link reads the heads it starts from: a commit after that
        // read is told to it, one before is in what it read.
        peers.add_link(key.fingerprint(), &session.mailbox);
        let link = match new_link(&peers, now) {
            Ok(link) => link,
            Err(e) => {
                tracing::warn!(error = %e, "could not start a replication link");
                peers.status.error(
                    &key.fingerprint(),
                    &format!("could not start the link: {e}"),
                );
                return refuse(conn, ErrorCode::Internal, "could not start the link");
            }
        };
        let result = Ok(Reply::Done.to_fields());
        respond(conn, &Response { id, result })?;
        conn.open_stream()?;
        conn.end_login_grace();
        keep_alive(conn);
        session.release_unauthenticated();
        session.link = Some(Box::new(LinkState::Up {
            link,
            peer: key,
            dialed: false,
            persists: Default::default(),
            persisting: false,
        }));
        peers
            .status
            .link_up(&key.fingerprint(), Arc::downgrade(&session.mailbox), now_ms);
        tracing::info!(peer = %key.fingerprint(), "replication link accepted");
        Ok(())
    }

    /// When the next dial of a peer is due (part of [`Service::next_duty`]).
    pub(super) fn next_dial(&self, now: Instant) -> Option<Instant> {
        self.peers()?.next_dial(now)
    }

    /// The next dial that is due at `now`, if any: the runtime connects to its address and
    /// drives [`Service::dial_session`] over a client connection, or hands the dial back with
    /// [`Service::dial_failed`].
    pub fn poll_dial(&self, now: Instant) -> Option<Dial> {
        self.peers()?.poll_dial(now)
    }

    /// The session that drives `dial` over a client connection: it pins the peer's key,
    /// proves this node's key with `peer`, and becomes a replication link.
    pub fn dial_session(&self, dial: &Dial, waker: Arc<dyn crate::work::Wake>) -> Session {
        let mut session = Session::with_waker(None, waker);
        session.link = Some(Box::new(LinkState::Dialing {
            expect: dial.fingerprint,
            request: None,
        }));
        session
    }

    /// Registers the waker of the runtime's accept loop (where it keeps the duties' timer):
    /// it is called when a dial ended, so the loop asks [`Service::next_duty`] again.
    pub fn set_duty_waker(&self, waker: Arc<dyn crate::work::Wake>) {
        if let Some(peers) = self.peers() {
            peers.set_duty_waker(waker);
        }
    }

    /// The connection of `dial` could not be made: it is dialed again after a backoff.
    pub fn dial_failed(&self, dial: &Dial) {
        tracing::debug!(address = %dial.address, "dialing a peer failed");
        if let Some(peers) = self.peers() {
            peers.status.dial_ended(
                &dial.fingerprint,
                &format!("could not connect to {}", dial.address),
            );
            peers.dial_ended(&dial.fingerprint, false);
        }
    }

    /// A link session's connection ended: a dialed peer is dialed again after a backoff.
    pub(super) fn link_ended(&self, session: &Session, now_ms: u64) {
        let (Some(peers), Some(state)) = (self.peers(), session.link.as_deref()) else {
            return;
        };
        match state {
            LinkState::Dialing { expect, .. } => {
                peers
                    .status
                    .dial_ended(expect, "the connection ended before the link came up");
                peers.dial_ended(expect, false);
            }
            LinkState::Up { peer, dialed, .. } => {
                tracing::info!(peer = %peer.fingerprint(), "replication link ended");
                peers
                    .status
                    .link_down(&peer.fingerprint(), &session.mailbox, now_ms);
                if *dialed {
                    peers.dial_ended(&peer.fingerprint(), true);
                }
            }
        }
    }

    /// Every configured peer's link status, and the quarantined origins with their fork
    /// proofs' heads, as `peers` reports them at `now_ms` (wall clock, Unix ms); both empty
    /// when this service does not replicate.
    pub fn peer_status(&self, now_ms: u64) -> Result<ReplicationStatus, ReplicaError> {
        let Some(peers) = self.peers() else {
            return Ok(ReplicationStatus::default());
        };
        let clock = peers.replicas.clock()?;
        let forks = peers
            .replicas
            .forks()?
            .into_iter()
            .map(|(origin, bytes)| fork_summary(origin, &bytes))
            .collect();
        Ok(ReplicationStatus {
            peers: peers.status.report(&clock, now_ms),
            forks,
        })
    }

    /// The entries of each feed this node sent to `peer` since it started, over every link,
    /// by origin fingerprint (empty when it does not replicate or `peer` is no peer). A feed
    /// the peer's Wants left out is never sent, so never listed.
    pub fn entries_sent(&self, peer: &Fingerprint) -> std::collections::BTreeMap<Fingerprint, u64> {
        self.peers()
            .map(|p| p.status.entries_sent(peer))
            .unwrap_or_default()
    }

    /// `peers`: [`Service::peer_status`] as its reply.
    pub(super) fn peers_reply(&self, now_ms: u64) -> Result<Reply, ErrorReply> {
        match self.peer_status(now_ms) {
            Ok(ReplicationStatus { peers, forks }) => Ok(Reply::Peers { peers, forks }),
            Err(e) => {
                tracing::error!(error = %e, "reading the replication status failed");
                Err(ErrorReply::new(
                    ErrorCode::Internal,
                    "could not read the replication status",
                ))
            }
        }
    }

    /// Drives a link session (or a dialing one): never waits.
    pub(super) fn drive_link(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        now: Instant,
        now_ms: u64,
    ) -> Result<(), Error> {
        if let Some((code, reason)) = session.close_after {
            // A link has nothing to settle: what it received unpersisted is sent again.
            conn.close(code, reason);
            return Ok(());
        }
        if matches!(session.link.as_deref(), Some(LinkState::Dialing { .. })) {
            self.drive_dialing(session, conn, now, now_ms)?;
        }
        if let Err(e) = self.drive_up(session, conn, now) {
            tracing::warn!(error = %e, "replication link failed");
            if let (Some(peers), Some(LinkState::Up { peer, .. })) =
                (self.peers(), session.link.as_deref())
            {
                peers.status.error(&peer.fingerprint(), &e.to_string());
            }
            let (code, reason) = match e {
                LinkFailure::Replication(_) => {
                    (CloseCode::ProtocolError, "replication protocol error")
                }
                LinkFailure::Node(_) => {
                    (CloseCode::ProtocolError, "replication failed on this node")
                }
                LinkFailure::Removed => (
                    CloseCode::Normal,
                    "an admin of this server removed you as a peer",
                ),
            };
            conn.close(code, reason);
        }
        Ok(())
    }

    /// The dialing side before the link: pin the key, send `peer`, take its answer.
    fn drive_dialing(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        now: Instant,
        now_ms: u64,
    ) -> Result<(), Error> {
        let Some(peers) = self.peers().cloned() else {
            conn.close(CloseCode::Normal, "replication is off");
            return Ok(());
        };
        let mut peer_key = None;
        while let Some(LinkState::Dialing { expect, request }) = session.link.as_deref_mut() {
            let Some(event) = conn.poll_event() else {
                return Ok(());
            };
            match event {
                Event::ServerKey(key) if key.fingerprint() == *expect => {
                    conn.accept_server_key(now)?;
                    peer_key = Some(key);
                }
                Event::ServerKey(key) => {
                    tracing::warn!(
                        expected = %expect,
                        got = %key.fingerprint(),
                        "a peer proved another key; not linking"
                    );
                    peers.status.error(
                        expect,
                        &format!("the server there proved another key: {}", key.fingerprint()),
                    );
                    conn.reject_server_key()?;
                }
                Event::Connected { session_id, .. } => {
                    let cmd = Command::Peer {
                        key: *peers.identity.public_key().as_bytes(),
                        signature: sign_peer_link(&peers.identity, &session_id),
                    };
                    *request = Some(conn.send_request(cmd.name(), cmd.args())?);
                }
                Event::Response(Response { id, result }) if Some(id) == *request => match result {
                    Ok(_) => {
                        let Some(peer) = peer_key.or_else(|| conn.server_key()) else {
                            conn.close(CloseCode::ProtocolError, "no server key");
                            return Ok(());
                        };
                        if !peers.allows(&peer) {
                            // Removed by an admin while the dial was under way.
                            conn.close(CloseCode::Normal, "no longer a peer of this server");
                            return Ok(());
                        }
                        // Registered before the link reads its heads (see accept_peer).
                        peers.add_link(peer.fingerprint(), &session.mailbox);
                        let link = match new_link(&peers, now) {
                            Ok(link) => link,
                            Err(e) => {
                                tracing::warn!(error = %e, "could not start a replication link");
                                peers
                                    .status
                                    .error(expect, &format!("could not start the link: {e}"));
                                conn.close(CloseCode::Normal, "could not start the link");
                                return Ok(());
                            }
                        };
                        session.link = Some(Box::new(LinkState::Up {
                            link,
                            peer,
                            dialed: true,
                            persists: Default::default(),
                            persisting: false,
                        }));
                        peers.status.link_up(
                            &peer.fingerprint(),
                            Arc::downgrade(&session.mailbox),
                            now_ms,
                        );
                        keep_alive(conn);
                        tracing::info!(peer = %peer.fingerprint(), "replication link up");
                    }
                    Err(refused) => {
                        tracing::warn!(
                            peer = %expect,
                            error = %refused,
                            "the peer refused the link"
                        );
                        peers
                            .status
                            .error(expect, &format!("the peer refused the link: {refused}"));
                        conn.close(CloseCode::Normal, "link refused");
                    }
                },
                Event::Closed(close) => {
                    tracing::debug!(code = %close.code, reason = %close.reason, "peer closed");
                    peers.status.error(
                        expect,
                        &format!("closed by the peer ({}): {}", close.code, close.reason),
                    );
                }
                // A notice tells a person something; a dialing server has no use for it.
                Event::Notice(_) => {}
                Event::Stream(_) | Event::Request(_) | Event::Response(_) => {
                    peers
                        .status
                        .error(expect, "the peer sent something unexpected before the link");
                    conn.close(CloseCode::ProtocolError, "unexpected before the link");
                }
            }
        }
        Ok(())
    }

    /// The link itself: completions, stream, timers, then the link's requests and bytes.
    fn drive_up(
        &self,
        session: &mut Session,
        conn: &mut Connection,
        now: Instant,
    ) -> Result<(), LinkFailure> {
        let (
            Some(peers),
            Some(LinkState::Up {
                link,
                peer,
                persists,
                persisting,
                ..
            }),
        ) = (self.peers(), session.link.as_deref_mut())
        else {
            return Ok(());
        };
        for completion in session.mailbox.take_all() {
            if let Completion::Link(done) = completion {
                if matches!(done, LinkDone::Persisted { .. }) {
                    *persisting = false;
                }
                apply(link, done)?;
            }
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Stream(bytes) => link.handle_stream(&bytes, now)?,
                Event::Request(_) | Event::Response(_) => {
                    return Err(LinkFailure::Replication(ReplicationError::Misuse(
                        "a command on a replication link",
                    )));
                }
                Event::Closed(close) => peers.status.error(
                    &peer.fingerprint(),
                    &format!("closed by the peer ({}): {}", close.code, close.reason),
                ),
                Event::Connected { .. } | Event::ServerKey(_) | Event::Notice(_) => {}
            }
        }
        if link.poll_timeout().is_some_and(|at| at <= now) {
            link.handle_timeout(now)?;
        }
        while let Some(request) = link.poll_request() {
            match request {
                NodeRequest::Persist { segment } => {
                    // The peer holds at least what it sent.
                    peers.status.acked(
                        &peer.fingerprint(),
                        segment.origin().fingerprint(),
                        segment.last_seq(),
                    );
                    persists.push_back(segment);
                }
                request => {
                    let mailbox = session.mailbox.clone();
                    self.shared
                        .runner
                        .run(link_work(peers.clone(), mailbox, request));
                }
            }
        }
        if !*persisting && !persists.is_empty() {
            // Everything queued goes in one store batch: one fsync for a busy link.
            *persisting = true;
            let take = persists.len().min(MAX_PERSIST_BATCH);
            let segments: Vec<Segment> = persists.drain(..take).collect();
            self.shared.runner.run(persist_work(
                peers.clone(),
                session.mailbox.clone(),
                segments,
            ));
        }
        while let Some(event) = link.poll_event() {
            log_event(&event);
            note_event(peers, &peer.fingerprint(), &event);
        }
        let mut out = Vec::new();
        link.poll_transmit(&mut out);
        if !out.is_empty() && conn.can_stream() {
            conn.send_stream(&out)
                .map_err(|e| LinkFailure::Node(e.to_string()))?;
        }
        Ok(())
    }
}

impl Session {
    /// When this session next needs [`Service::drive`] without input: a replication link's
    /// timer (`None` for a command session, whose timers are its connection's).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.link.as_deref() {
            Some(LinkState::Up { link, .. }) => link.poll_timeout(),
            _ => None,
        }
    }
}

/// Why a link is closed.
#[derive(Debug)]
enum LinkFailure {
    /// The peer broke the protocol (or the link refused an answer).
    Replication(ReplicationError),
    /// This node failed (storage).
    Node(String),
    /// An admin removed the peer.
    Removed,
}

impl From<ReplicationError> for LinkFailure {
    fn from(e: ReplicationError) -> Self {
        LinkFailure::Replication(e)
    }
}

impl std::fmt::Display for LinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkFailure::Replication(e) => write!(f, "{e}"),
            LinkFailure::Node(e) => write!(f, "{e}"),
            LinkFailure::Removed => write!(f, "the peer was removed by an admin"),
        }
    }
}

/// A link is never idle longer than its clock interval: its connection's idle timeout is made
/// at least [`LINK_IDLE_TIMEOUT`], so a server with a short one for clients keeps its links.
fn keep_alive(conn: &mut Connection) {
    if conn.idle_timeout() < LINK_IDLE_TIMEOUT {
        // Only zero is refused.
        let _ = conn.set_idle_timeout(LINK_IDLE_TIMEOUT);
    }
}

/// The least idle timeout of a link's connection: four clock intervals.
const LINK_IDLE_TIMEOUT: std::time::Duration =
    vserv_core::replication::CLOCK_INTERVAL.saturating_mul(4);

/// A new link of this node, from what it holds now.
fn new_link(peers: &Peers, now: Instant) -> Result<Box<Link>, LinkFailure> {
    let heads = signed_heads(&peers.replicas).map_err(|e| LinkFailure::Node(e.to_string()))?;
    let forks = peers
        .replicas
        .forks()
        .map_err(|e| LinkFailure::Node(e.to_string()))?
        .into_iter()
        .filter_map(|(_, bytes)| ForkProof::decode(&bytes).ok())
        .collect();
    Ok(Box::new(Link::following(
        peers.epoch,
        heads,
        forks,
        peers.wants(),
        peers.config,
        now,
    )?))
}

/// The stored signed head of every held, non-empty feed.
fn signed_heads(replicas: &Replicas) -> Result<Vec<SignedHead>, ReplicaError> {
    let mut heads = Vec::new();
    for head in replicas.clock()? {
        if let Some(signed) = replicas.feed(head.origin)?.head()? {
            heads.push(signed);
        }
    }
    Ok(heads)
}

/// Takes a completion into the link.
fn apply(link: &mut Link, done: LinkDone) -> Result<(), LinkFailure> {
    match done {
        LinkDone::Read { origin, result } => match result {
            Ok(Some(segment)) => link.segment_read(origin, segment.entries, Some(segment.head))?,
            Ok(None) => link.segment_read(origin, Vec::new(), None)?,
            Err(e) => return Err(LinkFailure::Node(e.to_string())),
        },
        LinkDone::Persisted { segments, result } => match result {
            Ok(()) => {
                for (origin, seq) in segments {
                    link.persisted(origin, seq)?;
                }
            }
            Err(e) => return Err(LinkFailure::Node(e)),
        },
        LinkDone::ForkStored(result) => result.map_err(LinkFailure::Node)?,
        LinkDone::News(LinkNews::Commit(head)) => link.local_commit(head)?,
        LinkDone::News(LinkNews::Fork(proof)) => link.fork_stored(*proof)?,
        LinkDone::News(LinkNews::Removed) => return Err(LinkFailure::Removed),
    }
    Ok(())
}

fn log_event(event: &LinkEvent) {
    match event {
        LinkEvent::Fork { origin } => {
            tracing::error!(origin = %origin.fingerprint(), "fork found: origin quarantined");
        }
        LinkEvent::CaughtUp { origin } => {
            tracing::debug!(origin = %origin.fingerprint(), "caught up");
        }
        LinkEvent::PeerClock { clock, .. } => {
            tracing::debug!(feeds = clock.feeds().len(), "peer clock");
        }
        LinkEvent::Acked { .. } | LinkEvent::Sent { .. } => {}
    }
}

/// Takes what a link event says of the peer into its status.
fn note_event(peers: &Peers, peer: &Fingerprint, event: &LinkEvent) {
    match event {
        LinkEvent::PeerClock { epoch, clock } => peers.status.peer_clock(peer, *epoch, clock),
        LinkEvent::Acked { origin, seq } => peers.status.acked(peer, origin.fingerprint(), *seq),
        LinkEvent::Sent {
            origin, entries, ..
        } => peers
            .status
            .sent(peer, origin.fingerprint(), *entries as u64),
        // What this node holds is read from the store when the status is asked; the fork
        // proofs too.
        LinkEvent::CaughtUp { .. } | LinkEvent::Fork { .. } => {}
    }
}

/// The quarantined `origin` and the heads of its stored fork proof `bytes` (both heads
/// `(0, zero)` if the stored proof no longer decodes).
fn fork_summary(origin: ServerKey, bytes: &[u8]) -> ForkSummary {
    let (a, b) = match ForkProof::decode(bytes) {
        Ok(proof) => (
            (proof.a().head.seq, proof.a().head.hash),
            (proof.b().head.seq, proof.b().head.hash),
        ),
        Err(e) => {
            tracing::error!(origin = %origin.fingerprint(), error = %e, "a stored fork proof does not decode");
            ((0, [0; 32]), (0, [0; 32]))
        }
    };
    ForkSummary {
        origin: origin.fingerprint(),
        a,
        b,
    }
}

/// The replication status: every configured peer's link, and the quarantined origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// The configured peers, by fingerprint.
    pub peers: Vec<PeerStatus>,
    /// The quarantined origins, by origin key bytes, with their fork proofs' two heads.
    pub forks: Vec<ForkSummary>,
}

/// The work for one of the link's requests; its result goes to `mailbox`.
fn link_work(peers: Arc<Peers>, mailbox: Arc<Mailbox<Completion>>, request: NodeRequest) -> Work {
    let post = {
        let mailbox = mailbox.clone();
        move |done: LinkDone| mailbox.post(Completion::Link(done))
    };
    match request {
        NodeRequest::ReadSegment {
            origin,
            from_seq,
            max_bytes,
        } => Work::new("replication read", move || {
            let result = peers.replicas.read_segment(&origin, from_seq, max_bytes);
            post(LinkDone::Read { origin, result });
        }),
        // `drive_up` batches persists; a lone one is a batch of one.
        NodeRequest::Persist { segment } => persist_work(peers, mailbox, vec![segment]),
        NodeRequest::StoreFork { proof } => Work::new("replication fork", move || {
            let result = store_fork(&peers, proof).map_err(|e| e.to_string());
            post(LinkDone::ForkStored(result));
        }),
    }
}

/// Why a persist failed: the store, or the segment no longer fits what is stored (the
/// link then closes and its successor starts from the clocks).
#[derive(Debug, thiserror::Error)]
enum PersistError {
    #[error(transparent)]
    Store(#[from] ReplicaError),
    #[error(transparent)]
    Feed(#[from] crate::ledger::FeedError),
    #[error("the segment no longer fits what is stored: {0}")]
    Stale(ReplicationError),
}

/// The work persisting `segments` (a link's, in order) as one batch; the result goes to
/// `mailbox`.
fn persist_work(
    peers: Arc<Peers>,
    mailbox: Arc<Mailbox<Completion>>,
    segments: Vec<Segment>,
) -> Work {
    Work::new("replication persist", move || {
        let done = segments
            .iter()
            .map(|s| (s.origin(), s.last_seq()))
            .collect();
        let result = persist_all(&peers, segments).map_err(|e| e.to_string());
        mailbox.post(Completion::Link(LinkDone::Persisted {
            segments: done,
            result,
        }));
    })
}

/// Most segments one persist batch takes (a link's queue is bounded by its window anyway).
const MAX_PERSIST_BATCH: usize = 64;

/// Persists a link's accepted segments, in order: each goes through the accept rule again
/// against what is stored now (another link may have stored some of it) and the segments
/// before it, and what it appends is written in ONE atomic, durable batch (one fsync);
/// then every link is told the new heads. A fork found on the way is stored (after what
/// came before it).
fn persist_all(peers: &Peers, segments: Vec<Segment>) -> Result<(), PersistError> {
    let own = peers.replicas.own();
    let mut held: std::collections::BTreeMap<[u8; POINT_LEN], Option<SignedHead>> =
        std::collections::BTreeMap::new();
    let mut appends: Vec<Segment> = Vec::new();
    for segment in segments {
        let origin = segment.origin();
        if origin == own {
            // Only `rput` appends to the own feed. A peer ahead of it means this node lost
            // entries it had published (a wiped store under a kept key): say so, store
            // nothing.
            let seq = peers
                .replicas
                .feed(origin)?
                .head()?
                .map_or(0, |h| h.head.seq);
            if seq < segment.last_seq() {
                tracing::error!(
                    "a peer holds entries of this server's own feed that it lacks: its own \
                     feed lost entries; they are not taken back"
                );
            }
            continue;
        }
        if !peers.follows(&origin) {
            // Not followed: acknowledged (the peer need not send it again on this link)
            // and never stored, so never relayed nor listed in this node's clock.
            continue;
        }
        let current = match held.get(origin.as_bytes()) {
            Some(head) => *head,
            None => peers.replicas.feed(origin)?.head()?,
        };
        let quarantined = peers.replicas.quarantined(&origin)?.is_some();
        match accept(current.as_ref(), quarantined, segment) {
            Ok(Verdict::Append(segment)) => {
                held.insert(*origin.as_bytes(), Some(*segment.head()));
                appends.push(segment);
            }
            Ok(Verdict::Ignore | Verdict::Quarantined) => {}
            Ok(Verdict::Fork(proof)) => {
                store_segments(peers, &std::mem::take(&mut appends))?;
                store_fork(peers, proof)?;
            }
            Err(e) => {
                store_segments(peers, &appends)?;
                return Err(PersistError::Stale(e));
            }
        }
    }
    store_segments(peers, &appends)
}

/// Writes `segments` (accepted, in order) in one batch and tells every link their heads.
fn store_segments(peers: &Peers, segments: &[Segment]) -> Result<(), PersistError> {
    if segments.is_empty() {
        return Ok(());
    }
    // Each segment was checked when it was built (hashes, links, the head's signature):
    // only how it continues the stored feed is checked again.
    let items: Vec<&Segment> = segments.iter().collect();
    peers.replicas.persist_segments(&items)?;
    for segment in segments {
        peers.tell_links(&LinkNews::Commit(*segment.head()));
    }
    Ok(())
}

/// Stores a fork proof (quarantining its origin) and tells every link.
fn store_fork(peers: &Peers, proof: ForkProof) -> Result<(), ReplicaError> {
    let origin = proof.origin();
    if peers.replicas.quarantine(&origin, &proof.to_bytes())? {
        tracing::error!(origin = %origin.fingerprint(), "fork proof stored: origin quarantined");
        peers.tell_links(&LinkNews::Fork(Box::new(proof)));
    }
    Ok(())
}
