//! `vserv help`: the CLI's own help without a server, and `vserv help --server [CMD]`, the
//! server's catalogue with the `vserv` subcommand that runs each wire command.

use clap::{Args, CommandFactory, Parser};
use vserv_core::commands::{Command, Reply};

use crate::client_cmd::{self, ClientArgs};
use crate::show::{escape, escape_text};

/// `vserv help` options.
#[derive(Args, Debug)]
pub struct HelpArgs {
    /// A `vserv` subcommand (or, with --server, a wire command) to describe.
    pub topic: Option<String>,
    /// Ask the server for its command catalogue, shown with the CLI form of each command:
    /// `--server` alone asks the default server (VSERV_SERVER, the config file...),
    /// `--server=HOST:PORT` that one.
    #[arg(long, value_name = "HOST:PORT", num_args = 0..=1, require_equals = true,
          default_missing_value = crate::client_config::default_server())]
    pub server: Option<String>,
    /// Require the server key to have this fingerprint (as for every client command).
    #[arg(long, value_name = "FPR")]
    pub server_key: Option<String>,
    /// File of trusted server keys (as for every client command).
    #[arg(long, value_name = "FILE")]
    pub known_servers: Option<std::ffi::OsString>,
}

/// The client options of `help --server`, parsed like any client command's (so the config
/// file's defaults apply).
#[derive(Parser, Debug)]
struct HelpClient {
    #[command(flatten)]
    client: ClientArgs,
}

impl HelpArgs {
    fn client_args(&self, server: &str) -> anyhow::Result<ClientArgs> {
        let mut argv: Vec<std::ffi::OsString> =
            vec!["help".into(), "--server".into(), server.into()];
        if let Some(fpr) = &self.server_key {
            argv.extend(["--server-key".into(), fpr.into()]);
        }
        if let Some(file) = &self.known_servers {
            argv.extend(["--known-servers".into(), file.clone()]);
        }
        Ok(HelpClient::try_parse_from(argv)?.client)
    }
}

/// What runs each wire command from the command line; `None`: no single `vserv` subcommand
/// (use `vserv shell`, or it is part of how other subcommands work).
pub const CLI_FORMS: &[(&str, Option<&str>)] = &[
    ("hello", Some("vserv hello")),
    ("ver", Some("vserv ver")),
    ("id", Some("vserv id")),
    ("help", Some("vserv help --server [CMD]")),
    ("ping", Some("vserv ping [TEXT] [--udp]")),
    ("quit", Some("(sent by every subcommand when it is done)")),
    (
        "login",
        Some("vserv login --user NAME [--key FILE] (or --user on any subcommand)"),
    ),
    ("logout", None),
    ("whoami", Some("vserv whoami")),
    ("uini", Some("vserv user init NAME")),
    ("uadd", Some("vserv user add NAME")),
    ("aadd", Some("vserv user add NAME --admin")),
    ("udel", Some("vserv user del NAME")),
    ("uena", Some("vserv user enable|disable NAME")),
    ("ulist", Some("vserv user list [FILTER]")),
    ("chpass", Some("vserv user passwd [NAME]")),
    ("ukey", Some("vserv user key add|list|del")),
    ("tout", Some("vserv tout [SECONDS]")),
    ("rput", Some("vserv rput KIND FIELD=VALUE... | @FILE")),
    ("rget", Some("vserv rget SEQ|id:RECORD_ID|hash:HEX")),
    ("rhave", Some("vserv rhave ID")),
    ("rabs", Some("vserv rabs POS")),
    ("rsize", Some("vserv rsize [KIND]")),
    ("rcount", Some("vserv rcount KIND FROM TO")),
    ("rlist", Some("vserv rlist KIND|*")),
    ("rhead", Some("vserv rhead")),
    ("rcheck", Some("vserv rcheck [FROM TO]")),
    ("ls", Some("vserv ls [DIR]")),
    ("lsd", Some("vserv ls --dirs [DIR]")),
    ("cd", None),
    ("pwd", None),
    ("stat", Some("vserv stat PATH")),
    ("mkdir", Some("vserv mkdir PATH")),
    ("rmdir", Some("vserv rm --dir PATH")),
    ("del", Some("vserv rm PATH")),
    ("mv", Some("vserv mv FROM TO")),
    ("fopen", Some("vserv put LOCAL REMOTE")),
    ("fput", Some("vserv put LOCAL REMOTE")),
    ("fdone", Some("vserv put LOCAL REMOTE")),
    ("fget", Some("vserv get REMOTE [LOCAL]")),
    ("fread", Some("vserv get REMOTE [LOCAL]")),
    ("fclose", Some("vserv put / vserv get")),
    ("send", Some("vserv send USER LOCAL")),
    ("inbox", Some("vserv inbox [FOLDER]")),
    (
        "peer",
        Some("(a replication link between servers, not a client command)"),
    ),
    ("peers", Some("vserv peer status")),
    (
        "mkey",
        Some("vserv msgs / vserv msg send (publish and fetch message keys)"),
    ),
    ("msend", Some("vserv msg USER TEXT (or msg send USER TEXT)")),
    ("mlist", Some("vserv msgs [FROM]")),
    ("mread", Some("vserv msg read ID")),
    ("mdel", Some("vserv msg del ID")),
    ("mkdirs", Some("vserv mkdir -p PATH")),
    ("versions", Some("vserv versions PATH")),
    ("restore", Some("vserv restore PATH N")),
    ("padd", Some("vserv peer add FPR [ADDR]")),
    ("pdel", Some("vserv peer del FPR")),
    (
        "otp",
        Some("--otp CODE on any command that logs in (else VSERV_OTP, else asked)"),
    ),
    (
        "2fa",
        Some("vserv 2fa enable|confirm|disable [CODE]; vserv user 2fa-reset NAME (admins)"),
    ),
    ("tables", Some("vserv tables [--json] [--udp]")),
    (
        "query",
        Some(
            "vserv query TABLE KEY [--json] [--udp] | vserv query TABLE --prefix P [--limit N] [--json] [--udp]",
        ),
    ),
    (
        "tkey",
        Some("vserv tkey new|rotate|del NAME | tkey list [--json] | tkey min USER NAME VERSION"),
    ),
    (
        "seal",
        Some("vserv seal NAME [DATA|-] (stdin: one token per line)"),
    ),
    (
        "unseal",
        Some("vserv unseal NAME [TOKEN|-] (stdin: token lines, data to stdout)"),
    ),
    ("rewrap", Some("vserv rewrap NAME [TOKEN|-]")),
    ("gk", Some("vserv gk [BYTES] [--hex|--base64]")),
];

/// The CLI form of wire command `name`, or the note for one without.
pub fn cli_form(name: &str) -> &'static str {
    match CLI_FORMS.iter().find(|(wire, _)| *wire == name) {
        Some((_, Some(form))) => form,
        Some((_, None)) => "shell only (vserv shell)",
        None => "no CLI form known to this vserv (shell only)",
    }
}

/// The server's `help` listing (`NAME [ACCESS] SUMMARY` lines) with each command's CLI form
/// on the line below it.
pub fn translate_listing(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(name) = line.split_whitespace().next() {
            out.push_str(&format!("    cli: {}\n", cli_form(name)));
        }
    }
    out
}

/// Runs `vserv help`.
pub fn run(args: HelpArgs) -> anyhow::Result<()> {
    let Some(server) = &args.server else {
        return local_help(args.topic.as_deref());
    };
    let mut connected = client_cmd::connect(&args.client_args(server)?)?;
    let reply = connected.client.call(&Command::Help {
        topic: args.topic.clone(),
    })?;
    connected.quit()?;
    let Reply::Help(text) = reply else {
        anyhow::bail!("the server answered help with something else");
    };
    match &args.topic {
        None => print!("{}", escape_text(&translate_listing(&text))),
        Some(topic) => {
            print!("{}", escape_text(&text));
            println!("cli: {}", escape(cli_form(topic)));
        }
    }
    Ok(())
}

/// The CLI's own long help, or a subcommand's; no server needed.
fn local_help(topic: Option<&str>) -> anyhow::Result<()> {
    let mut cli = crate::Cli::command();
    let mut target = match topic {
        None => cli,
        Some(name) => match cli.find_subcommand_mut(name) {
            Some(sub) => sub.clone().bin_name(format!("vserv {name}")),
            None => anyhow::bail!(
                "no vserv subcommand named '{}' (for the server's commands: vserv help --server)",
                escape(name)
            ),
        },
    };
    print!("{}", target.render_long_help());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_command_has_a_cli_form_or_says_shell_only() {
        let listing = vserv_core::commands::help_text(None).unwrap();
        for line in listing.lines() {
            let name = line.split_whitespace().next().unwrap();
            assert!(
                CLI_FORMS.iter().any(|(wire, _)| *wire == name),
                "wire command {name} is missing from CLI_FORMS"
            );
        }
        assert_eq!(cli_form("cd"), "shell only (vserv shell)");
        assert_eq!(cli_form("ls"), "vserv ls [DIR]");
        let shown = translate_listing("ls       [user] list\n");
        assert_eq!(shown, "ls       [user] list\n    cli: vserv ls [DIR]\n");
    }
}
