//! `vserv`: run a server, talk to one, manage keys, measure performance.

mod allocator;
mod bench;
mod chain_cmd;
mod client_cmd;
mod client_config;
mod config;
mod credentials;
mod files_cmd;
mod files_tree;
mod help_cmd;
mod inbox_setup;
mod json_out;
mod known_servers_cmd;
mod ledger_cmd;
mod log_file;
mod logging;
mod msg_cmd;
mod ops;
mod paging;
mod peer_cmd;
mod serve;
mod shell;
mod show;
mod tables_cmd;
mod transit_cmd;
mod two_factor_cmd;
mod udp_cmd;
mod udp_serve;
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

// Parsed once per process: the size of the largest variant (the connection options of
// `Remote`) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// The commands that run on a connection (also typed in `vserv shell`).
    #[command(flatten)]
    Remote(ops::Op<client_cmd::ClientArgs>),
    /// This help, or a subcommand's (no server needed); with --server, the server's
    /// commands and the `vserv` subcommand that runs each.
    Help(help_cmd::HelpArgs),
    /// Log in and print who the server says you are (checks your credentials).
    Login(client_cmd::ClientArgs),
    /// Manage user accounts and your login keys (over the protocol, or --data offline).
    User(user_cmd::UserArgs<user_cmd::Target, client_cmd::ClientArgs>),
    /// Generate a user login key pair (`keygen --user`) into a file readable only by you.
    Keygen(serve::KeygenArgs),
    /// Print the fingerprint of a server's identity key (the value clients pin).
    Fingerprint(serve::FingerprintArgs),
    /// Measure performance (crypto, handshakes, round trips).
    Bench(bench::BenchArgs),
    /// Ledger tools: verify a stopped server's store, export a feed, verify an export.
    Chain(chain_cmd::ChainArgs),
    /// An interactive session on one connection, logged in once: every command above that
    /// talks to a server, plus cd/pwd/logout; reads commands from standard input when it is
    /// not a terminal (exit status: whether any failed).
    Shell(shell::ShellArgs),
    /// The trusted server keys (~/.vserv/known_servers): `list`, `forget HOST`.
    KnownServers(known_servers_cmd::KnownServersArgs),
}

fn main() -> ExitCode {
    allocator::install();
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The first word after the global options is the command.
    let command_at = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map_or(args.len(), |i| i + 1);
    msg_cmd::expand_shorthand(&mut args, command_at);
    let cli = Cli::parse_from(args);
    let (serving, log_file) = match &cli.command {
        Command::Serve(args) => (true, args.log_file.clone()),
        _ => (false, None),
    };
    if let Err(e) = logging::init(cli.verbose, serving, log_file.as_deref()) {
        let shown = log_file.as_deref().unwrap_or(std::path::Path::new("-"));
        eprintln!("vserv: cannot open the log file {}: {e}", shown.display());
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Remote(op) => ops::run_once(&op),
        Command::Help(args) => help_cmd::run(args),
        Command::Login(c) => client_cmd::login(&c),
        Command::User(args) => user_cmd::run(args),
        Command::Keygen(args) => serve::keygen(args),
        Command::Fingerprint(args) => serve::fingerprint(args),
        Command::Bench(args) => bench::run(args),
        Command::Chain(args) => chain_cmd::run(args),
        Command::Shell(args) => shell::run(args),
        Command::KnownServers(args) => known_servers_cmd::run(args),
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
