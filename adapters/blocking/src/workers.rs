//! The connection threads: each serves a new connection or resumes a parked one
//! ([`Job`]), then waits a while for the next job (`idle.rs`) before it leaves. The accept
//! loop and the watcher both hand their jobs over with [`Threads::dispatch`], which starts a
//! thread only when none is waiting.

use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use vserv_core::Connection;
use vserv_core::wire::RefusedLimit;
use vserv_service::Session;
use vserv_service::limits::{BUSY_RETRY_SECS, busy_refusal};
use vserv_service::system::os_rng;

use crate::connection::{self, Outcome, Served};
use crate::idle::IdleThreads;
use crate::live::LiveThreads;
use crate::server::{Shared, WRITE_TIMEOUT, refuse};
use crate::wake::{PipeWake, Ready};
use crate::watcher::Parker;

/// How long a connection thread with nothing to do waits for another job before exiting.
/// Starting a thread per connection cost about a tenth of the CPU of a whole session
/// (measured by `vserv bench handshake --breakdown`), so threads are reused; each idle one
/// leaves on its own clock ([`IdleThreads`]), so a burst's threads are gone this long after
/// it.
const WORKER_KEEP: Duration = Duration::from_secs(5);

/// What a connection thread is given to do.
#[expect(
    clippy::large_enum_variant,
    reason = "a Resume is moved once per wake-up; boxing it would allocate on the watcher thread"
)]
pub(crate) enum Job {
    /// Serve a connection just accepted.
    New(TcpStream),
    /// Go on with a connection the watcher hands back, and what woke it. By value: the
    /// thread that takes it boxes it, so a storm of resumed connections (a burst closing)
    /// allocates nothing on the watcher's thread.
    Resume(Served, Ready),
}

/// The connection threads of one server (see the module docs).
pub(crate) struct Threads {
    shared: Arc<Shared>,
    idle: IdleThreads<Job>,
    live: LiveThreads,
    /// Where idle connections are parked (unset: they keep their threads).
    parker: OnceLock<Parker<Served>>,
}

impl Threads {
    /// Threads for `shared`'s connections; a shutdown waits on `live` for them.
    pub(crate) fn new(shared: Arc<Shared>, live: LiveThreads) -> Self {
        Threads {
            shared,
            idle: IdleThreads::default(),
            live,
            parker: OnceLock::new(),
        }
    }

    /// Parks idle connections with `parker` from now on.
    pub(crate) fn park_with(&self, parker: Parker<Served>) {
        let _ = self.parker.set(parker);
    }

    /// Idle threads leave at once, and later ones do not wait for jobs.
    pub(crate) fn close(&self) {
        self.idle.close();
    }

    /// Runs `job` on a waiting thread, or on a new one (detached, counted in `live`: a
    /// shutdown waits for it). If no thread can start, the job's connection is dropped.
    pub(crate) fn dispatch(self: &Arc<Self>, job: Job) {
        let job = match self.idle.hand(job) {
            Ok(()) => return,
            Err(job) => job,
        };
        let threads = self.clone();
        let token = self.live.enter();
        let spawned = std::thread::Builder::new()
            .name("vserv-conn".into())
            .spawn(move || {
                let _token = token;
                threads.work(job);
            });
        // Dropping the handle detaches the thread, so its stack is freed when it ends.
        if let Err(e) = spawned {
            self.shared.active.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "could not start a connection thread");
        }
    }

    /// Does `job`, then further jobs handed over, until none comes for [`WORKER_KEEP`] or
    /// the server shuts down.
    fn work(&self, mut job: Job) {
        loop {
            let (peer, outcome) = match job {
                Job::New(stream) => (stream.peer_addr().ok(), self.serve(stream)),
                Job::Resume(served, ready) => (
                    served.stream.peer_addr().ok(),
                    connection::run(
                        Box::new(served),
                        Some(ready),
                        &self.shared,
                        self.parker.get(),
                    ),
                ),
            };
            match outcome {
                Ok(Outcome::Parked) => {}
                Ok(Outcome::Ended) => {
                    tracing::debug!(?peer, "connection finished");
                    self.shared.active.fetch_sub(1, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::debug!(?peer, error = %e, "connection ended with an error");
                    self.shared.active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            match self.idle.park(WORKER_KEEP) {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// Starts serving a new connection: refuses it past the per-address limit of
    /// unauthenticated connections, else drives it until it ends or is parked.
    fn serve(&self, stream: TcpStream) -> Result<Outcome, Box<dyn std::error::Error>> {
        let shared = &*self.shared;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let peer = stream.peer_addr().ok();
        let slot = match peer {
            Some(peer) => match shared.service.admit_unauthenticated(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    refuse(
                        stream,
                        "too many unauthenticated connections from this address",
                        peer,
                        &busy_refusal(RefusedLimit::Unauthenticated, BUSY_RETRY_SECS),
                    );
                    return Ok(Outcome::Ended);
                }
            },
            None => None,
        };
        let rng = os_rng()?;
        let conn = Connection::server(
            shared.options.config.clone(),
            shared.identity.clone(),
            rng,
            Instant::now(),
        );
        let waker = Arc::new(PipeWake::new()?);
        let mut session = Session::with_waker(peer.map(|a| a.ip()), waker.clone());
        if let Some(slot) = slot {
            session.hold_unauthenticated(slot);
        }
        let served = Box::new(Served {
            stream,
            conn,
            session,
            waker,
        });
        connection::run(served, None, shared, self.parker.get())
    }
}
