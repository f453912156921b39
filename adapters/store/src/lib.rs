//! On-disk state of vserv: the server identity key file and the client's known_servers file.
//!
//! - [`identity`]: the server's `identity.key` (created once, mode 0600, never regenerated).
//! - [`known_servers`]: the client's pinned server keys, like ssh's `known_hosts`.
//! - [`trust`]: the client's trust-on-first-use / pinning decision over [`known_servers`].
//! - [`keyfile`]: the strict secret key file format, reusable for user keys.
//!
//! Every write is atomic (temporary file, fsync, rename, directory fsync).

mod atomic;
pub mod identity;
pub mod keyfile;
pub mod known_servers;
pub mod rng;
pub mod trust;

pub use identity::{IdentityError, LoadedIdentity, load, load_or_create};
pub use keyfile::{KeyFileError, read_secret_key_file, write_secret_key_file};
pub use known_servers::{KnownServers, KnownServersError, LineError, ParseError, default_path};
pub use trust::{TrustDecision, TrustError, decide};
