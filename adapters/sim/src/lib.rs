//! # vserv-sim: a deterministic in-memory harness for vserv
//!
//! Servers (driven by [`vserv_service::Service::drive`]) and clients (driven by
//! [`vserv_service::client::ClientSession`]) run over simulated links in one [`World`]:
//!
//! - **One seed decides everything.** The world owns a [`rand::rngs::StdRng`] seeded from
//!   the world seed; every connection's RNG, every chunk boundary, delay, stall, reset and
//!   tampering is drawn from it, and events are processed in a total order.
//! - **A virtual clock.** The harness reads the real clock once (the epoch, in
//!   [`World::new`]); connections see `epoch + virtual time`, and the clock jumps to the next
//!   event: the earliest pending delivery, connection timer (`poll_timeout`) or blocking work.
//! - **Blocking work in the schedule.** Each server's service hands its blocking work
//!   (commits, password hashes, file I/O, deliveries) to the world, which runs it on its own
//!   thread at a due time drawn from the seed (`work.rs`): commit boundaries and completion
//!   order are part of the replayable schedule, and no OS thread runs anywhere.
//! - **Client file transfers** ([`SimClient::put_many`], [`SimClient::get_many`]...) drive
//!   the client's runtime-free transfer scheduler; its local file steps join the same
//!   schedule (labelled [`CLIENT_FILES_WORK`]) and run over the client machine's in-memory
//!   [`MemoryFiles`] ([`SimServer::client_files`]).
//! - **Links** ([`LinkConfig`], per direction) re-chunk the byte stream at random points,
//!   delay, stall (for a while, or forever with `cut_after`/[`World::cut`]), reset (both
//!   ends see the connection reset), and in adversary mode ([`Adversary`]) flip bits,
//!   truncate, inject random bytes or replay earlier chunks.
//! - **Server faults** ([`World::restart_server`], [`World::replace_server`],
//!   [`World::partition`]): a server process crashes (every link of it is reset, its pending
//!   work never runs) and a new one serves the same address, typically reopened on the
//!   crash-modelling store it left; two servers cannot reach each other until healed.
//! - **A trace**: every write, delivery, timer and client-visible event is a line of
//!   [`World::trace`]; the same seed gives the same trace.
//! - **Invariants** ([`World::check`]): every connection ends (closed or errored; a run that
//!   stops with an open connection is a hang); no reply differs from what the server's
//!   service answers to the request the client sent, and no response arrives for a request
//!   never sent (so no forged or tampered plaintext is delivered); over benign links every
//!   request is answered correctly and both ends close cleanly. A `poll_timeout` that does
//!   not make progress when fired, and a run that never settles, are violations too.
//! - **Replay**: tests take their seed from `VSERV_SIM_SEED` when set ([`for_each_seed`]),
//!   and every failure message names the seed as `VSERV_SIM_SEED=<seed>`.
//!
//! ```no_run
//! use vserv_sim::{LinkConfig, LinkSpec, Scenario};
//!
//! let scenario = Scenario::new(4, 10, LinkSpec::symmetric(LinkConfig::benign(64)));
//! let (world, _clients, _end) = scenario.run(42).expect("scenario");
//! if let Err(violations) = world.check() {
//!     panic!("{violations}"); // names VSERV_SIM_SEED=42
//! }
//! ```
//!
//! [`SimServer`] and [`SimClient`] wrap a shared world (`Rc<RefCell<World>>`) in the
//! synchronous shape of a real runtime; the integration suite runs on them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod datagram;
mod handle;
pub mod ledger_model;
mod link;
mod local_files;
mod scenario;
mod seeds;
mod transfer;
mod work;
mod world;

pub use datagram::{DatagramAttacker, DatagramNet, NetConfig, SERVER_ADDR};
pub use handle::{RAW_WAIT, SimClient, SimServer, WAIT};
pub use link::{Adversary, LinkConfig, LinkSpec};
pub use local_files::{MemoryFile, MemoryFiles, MemoryReader, MemoryWriter};
pub use scenario::{Scenario, random_command, random_script};
pub use seeds::{BadSeed, SEED_VAR, SeedFailure, env_seed, for_each_seed, parse_seed, seeds};
pub use transfer::CLIENT_FILES_WORK;
pub use world::{
    ClientReport, ClientSpec, EndpointId, Finish, Outcome, RunEnd, ServerId, ServerSpec, SimError,
    Violations, World,
};
