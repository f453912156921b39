//! The integration suite every runtime must pass. A runtime implements [`Runtime`]; the
//! [`suite!`] macro instantiates every case for it as ordinary `#[test]`s.
//!
//! Real runtimes (blocking, smol) run over loopback sockets on 127.0.0.1 port 0; the sim
//! runtime runs the same cases in memory.
//!
//! The cases live in [`cases`], one module a topic; [`fixture`] builds the servers they
//! start (in-memory [`vserv_service::Node`]s), [`clients`] holds what they do with clients
//! again and again, [`sockets`] talks to a real server without a client, and [`tcp`] starts
//! the real runtimes' servers for the cases that drive them directly.

use std::sync::Arc;

use vserv_core::commands::{Command, Reply};
use vserv_core::{Config, ServerIdentity};
use vserv_service::Service;
use vserv_service::client::{ClientError, ClientOptions};
use vserv_store::trust::TrustDecision;

/// A runtime under test.
pub trait Runtime {
    /// A running server; dropping it stops it.
    type Server: TestServer;
    /// A connected client.
    type Client: TestClient;
    /// Starts a server with `identity`, serving at most `max_connections` at once.
    fn start(
        identity: Arc<ServerIdentity>,
        service: Service,
        max_connections: usize,
        config: Config,
    ) -> Self::Server;
    /// Connects a client to `server` and completes the handshake.
    fn connect(server: &Self::Server, options: &ClientOptions)
    -> Result<Self::Client, ClientError>;
}

/// What the suite needs of a running server.
pub trait TestServer {
    /// The `HOST:PORT` clients use (and known_servers records).
    fn address(&self) -> String;
    /// Sends raw bytes as a fresh connection and returns everything the server sent back
    /// before closing (or until a short timeout).
    fn raw_exchange(&self, bytes: &[u8]) -> Vec<u8>;
    /// Stops the server, closing its connections.
    fn shutdown(self);
}

/// What the suite needs of a connected client.
pub trait TestClient {
    /// Runs one command.
    fn call(&mut self, command: &Command) -> Result<Reply, ClientError>;
    /// How the server key was trusted.
    fn trust(&self) -> Option<TrustDecision>;
    /// The session id, once connected.
    fn session_id(&self) -> Option<[u8; 32]>;
    /// `quit` and wait for the server's close.
    fn quit(self) -> Result<(), ClientError>;
    /// Waits at most `max_wait` for notices the server pushes, and takes them.
    fn poll_notices(
        &mut self,
        max_wait: std::time::Duration,
    ) -> Result<Vec<vserv_core::commands::Notice>, ClientError>;
}

pub mod cases;
pub mod clients;
pub mod fixture;
pub mod sockets;
pub mod tcp;

pub use clients::*;
pub use fixture::*;

/// Instantiates every case of the suite for a [`Runtime`] type, as one `#[test]` a case
/// named after it.
#[macro_export]
macro_rules! suite {
    ($rt:ty) => {
        $crate::suite!(@cases $rt; channel: every_command_works, errors_are_typed_and_not_fatal, tofu_records_then_recognises, changed_key_is_refused, pinned_key, bad_input_does_not_hurt_others, many_clients);
        $crate::suite!(@cases $rt; limits: connection_limit_refuses_busy, anonymous_sessions_end_after_the_login_grace, unauthenticated_sessions_are_capped_per_address, login_backoff_outlasts_the_connection, tout_within_bounds);
        $crate::suite!(@cases $rt; accounts: accounts_first_admin_then_users, permission_matrix, failed_logins_close_the_connection, last_admin_is_protected, key_login, bad_user_names_are_refused, disabled_user_loses_access_at_once, deleted_account_sessions_end_and_homes_are_archived, password_changes);
        $crate::suite!(@cases $rt; ledger: ledger_put_then_get, ledger_duplicate_record_id_is_refused, ledger_lookups_span_the_index_bulks, ledger_ids_stored_before_a_restart_are_refused, ledger_head_is_signed_and_current, ledger_seq_is_gapless, ledger_access_is_enforced, ledger_positions_and_kind_counts, ledger_reversed_ranges_are_refused, ledger_rlist_pages_while_appending, ledger_rlist_large_entries_fit_one_record, ledger_reads_any_held_feed);
        $crate::suite!(@cases $rt; files: files_upload_download_round_trip, files_round_trip, files_listing_pages);
        $crate::suite!(@cases $rt; peers: peers_are_managed_over_the_protocol);
        $crate::suite!(@cases $rt; file_versions: files_versions_and_restore, files_mkdirs_makes_parents, files_folder_config_checked_at_upload);
        $crate::suite!(@cases $rt; two_factor: two_factor_login);
        $crate::suite!(@cases $rt; messages: messages_send_list_read_delete, messages_mailbox_full_keeps_what_it_holds, messages_live_notice_to_a_logged_in_recipient);
        $crate::suite!(@cases $rt; udp: ping_over_udp_with_replay_refused, tables_over_udp);
        $crate::suite!(@cases $rt; tables: tables_query_and_reload);
        $crate::suite!(@cases $rt; transit: transit_seal_rotate_rewrap, transit_refusals_and_retirement);
    };
    (@cases $rt:ty; $module:ident: $($case:ident),*) => {
        $(#[test] fn $case() { $crate::cases::$module::$case::<$rt>(); })*
    };
}
