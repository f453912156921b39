//! `vserv`: run a server, talk to one, manage keys, measure performance.

mod bench;
mod chain_cmd;
mod client_cmd;
mod config;
mod credentials;
mod files_cmd;
mod ledger_cmd;
mod msg_cmd;
mod paging;
mod peer_cmd;
mod serve;
mod show;
mod user_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The address `vserv serve` listens on when `--listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7117";

/// vserv: an encrypted client/server system.
#[derive(Parser)]
#[command(
    name = "vserv",
    version,
    about,
    propagate_version = true,
    disable_help_subcommand = true
)]
struct Cli {
    /// More log output (-v: info, -vv: debug, -vvv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Greet a server (shows its identity and whether it is trusted).
    Hello(client_cmd::ClientArgs),
    /// Show the server's protocol and software version.
    Ver(client_cmd::ClientArgs),
    /// Show the server's name and key fingerprint.
    Id(client_cmd::ClientArgs),
    /// List the server's commands, or describe one.
    Help {
        /// Command to describe.
        topic: Option<String>,
        #[command(flatten)]
        client: client_cmd::ClientArgs,
    },
    /// Round-trip a payload through the server.
    Ping {
        /// Text to echo (default: empty).
        payload: Option<String>,
        #[command(flatten)]
        client: client_cmd::ClientArgs,
    },
    /// Log in and print who the server says you are (checks your credentials).
    Login(client_cmd::ClientArgs),
    /// Manage user accounts and your login keys (over the protocol, or --data offline).
    User(user_cmd::UserArgs),
    /// Generate a user login key pair (`keygen --user`) into a file readable only by you.
    Keygen(serve::KeygenArgs),
    /// Print the fingerprint of a server's identity key (the value clients pin).
    Fingerprint(serve::FingerprintArgs),
    /// Measure performance (crypto, handshakes, round trips).
    Bench(bench::BenchArgs),
    /// Append a record to the server's ledger: rput KIND FIELD=VALUE... | @FILE.
    Rput(ledger_cmd::RputArgs),
    /// Show a ledger entry, by SEQ, id:RECORD_ID or hash:HEX.
    Rget(ledger_cmd::RgetArgs),
    /// Show the ledger's signed head (its signature checked against the server key).
    Rhead(ledger_cmd::RheadArgs),
    /// How many entries the ledger holds (of one kind with KIND).
    Rsize(ledger_cmd::RsizeArgs),
    /// Show the ledger entry at a position (1 the first, -1 the last).
    Rabs(ledger_cmd::RabsArgs),
    /// Count the entries of a kind in a seq range.
    Rcount(ledger_cmd::RcountArgs),
    /// List the entries of a kind (or `*`), one line each, following the server's pages.
    Rlist(ledger_cmd::RlistArgs),
    /// Have the server re-verify its chain, or seqs FROM..=TO (admins); fails naming the
    /// first bad seq.
    Rcheck(ledger_cmd::RcheckArgs),
    /// Ledger tools: verify a stopped server's store, export a feed, verify an export.
    Chain(chain_cmd::ChainArgs),
    /// Upload a file, or several into a directory (LOCAL... DIR/) at once on one connection
    /// (window of pipelined chunks, SHA-256 checked; --resume continues).
    Put(files_cmd::PutArgs),
    /// Download a file, or several into a directory (REMOTE... DIR) at once on one
    /// connection (visible only once its SHA-256 matched; --resume continues).
    Get(files_cmd::GetArgs),
    /// List a directory on the server, one line per entry (KIND SIZE MTIME NAME).
    Ls(files_cmd::LsArgs),
    /// Create a directory on the server.
    Mkdir(files_cmd::PathArgs),
    /// Delete a file on the server (--dir: an empty directory).
    Rm(files_cmd::RmArgs),
    /// Move or rename a file or directory on the server.
    Mv(files_cmd::MvArgs),
    /// Show a file's or directory's kind, size, times and SHA-256.
    Stat(files_cmd::PathArgs),
    /// Deliver a local file to USER's inbox folder (uploaded to outbox/ first).
    Send(files_cmd::SendArgs),
    /// List the deliveries to one of your inbox folders, with their states.
    Inbox(files_cmd::InboxArgs),
    /// Replication peers: `peer status` shows each peer's link and how far the feeds differ.
    Peer(peer_cmd::PeerArgs),
    /// Sealed messages: `msg send USER TEXT` (`-`: stdin), `msg read ID` (opened and
    /// verified here), `msg del ID`.
    Msg(msg_cmd::MsgArgs),
    /// List your messages, newest first (`--json` for scripts), only FROM's with FROM.
    Msgs(msg_cmd::MsgsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Hello(c) => client_cmd::run(&c, vserv_core::commands::Command::Hello),
        Command::Ver(c) => client_cmd::run(&c, vserv_core::commands::Command::Ver),
        Command::Id(c) => client_cmd::run(&c, vserv_core::commands::Command::Id),
        Command::Help { topic, client } => {
            client_cmd::run(&client, vserv_core::commands::Command::Help { topic })
        }
        Command::Ping { payload, client } => client_cmd::run(
            &client,
            vserv_core::commands::Command::Ping {
                payload: payload.unwrap_or_default().into_bytes(),
            },
        ),
        Command::Login(c) => client_cmd::login(&c),
        Command::User(args) => user_cmd::run(args),
        Command::Keygen(args) => serve::keygen(args),
        Command::Fingerprint(args) => serve::fingerprint(args),
        Command::Bench(args) => bench::run(args),
        Command::Rput(args) => ledger_cmd::rput(args),
        Command::Rget(args) => ledger_cmd::rget(args),
        Command::Rhead(args) => ledger_cmd::rhead(args),
        Command::Rsize(args) => ledger_cmd::rsize(args),
        Command::Rabs(args) => ledger_cmd::rabs(args),
        Command::Rcount(args) => ledger_cmd::rcount(args),
        Command::Rlist(args) => ledger_cmd::rlist(args),
        Command::Rcheck(args) => ledger_cmd::rcheck(args),
        Command::Chain(args) => chain_cmd::run(args),
        Command::Put(args) => files_cmd::put(args),
        Command::Get(args) => files_cmd::get(args),
        Command::Ls(args) => files_cmd::ls(args),
        Command::Mkdir(args) => files_cmd::mkdir(args),
        Command::Rm(args) => files_cmd::rm(args),
        Command::Mv(args) => files_cmd::mv(args),
        Command::Stat(args) => files_cmd::stat(args),
        Command::Send(args) => files_cmd::send(args),
        Command::Inbox(args) => files_cmd::inbox(args),
        Command::Peer(args) => peer_cmd::run(args),
        Command::Msg(args) => msg_cmd::run(args),
        Command::Msgs(args) => msg_cmd::list(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vserv: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause its parent already quoted.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|prev| prev.contains(&text)) {
            parts.push(text);
        }
    }
    // Server errors and close reasons are quoted in it: shown escaped.
    show::escape(&parts.join(": ").replace('\n', " ")).into_owned()
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
