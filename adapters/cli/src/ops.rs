//! The client commands that run on an open connection, as one clap enum parsed both by
//! `vserv X ...` (with the connection options, [`ClientArgs`]) and by a `vserv shell` line
//! (with none, [`NoClient`]); [`Op::run_on`] runs one on a connection, [`run_once`]
//! connects, runs it and quits.

use anyhow::bail;
use clap::{Args, Subcommand};
use vserv_core::commands::Command;

use crate::client_cmd::{self, ClientArgs, Connected};
use crate::files_cmd::{GetArgs, InboxArgs, LsArgs, MvArgs, PathArgs, PutArgs, RmArgs, SendArgs};
use crate::files_tree::{MkdirArgs, RestoreArgs, VersionsArgs};
use crate::ledger_cmd::{
    RabsArgs, RcheckArgs, RcountArgs, RgetArgs, RhaveArgs, RheadArgs, RlistArgs, RputArgs,
    RsizeArgs,
};
use crate::msg_cmd::MsgsArgs;
use crate::{files_cmd, files_tree, ledger_cmd, msg_cmd, peer_cmd, transit_cmd, two_factor_cmd};

/// No connection options: a shell line runs on the shell's connection.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct NoClient {}

/// A command that runs on a connection; `C` is its connection options.
#[derive(Subcommand, Debug)]
pub enum Op<C: Args> {
    /// Greet a server (shows its identity and whether it is trusted).
    Hello {
        #[command(flatten)]
        client: C,
    },
    /// Show the server's protocol and software version.
    Ver {
        #[command(flatten)]
        client: C,
    },
    /// Show the server's name and key fingerprint.
    Id {
        #[command(flatten)]
        client: C,
    },
    /// Round-trip a payload through the server.
    Ping {
        /// Text to echo (default: empty).
        payload: Option<String>,
        #[command(flatten)]
        udp: crate::udp_cmd::UdpFlag,
        #[command(flatten)]
        client: C,
    },
    /// Print who the server says you are (`not logged in` without a login).
    Whoami {
        #[command(flatten)]
        client: C,
    },
    /// Show this session's idle timeout, or set it (within the server's bounds).
    Tout {
        /// The new idle timeout in seconds.
        seconds: Option<u64>,
        #[command(flatten)]
        client: C,
    },
    /// Append a record to the server's ledger: rput KIND FIELD=VALUE... | @FILE.
    Rput {
        #[command(flatten)]
        args: RputArgs,
        #[command(flatten)]
        client: C,
    },
    /// Show a ledger entry, by SEQ, id:RECORD_ID or hash:HEX.
    Rget {
        #[command(flatten)]
        args: RgetArgs,
        #[command(flatten)]
        client: C,
    },
    /// Whether the ledger holds a record with this id (`yes` or `no`).
    Rhave {
        #[command(flatten)]
        args: RhaveArgs,
        #[command(flatten)]
        client: C,
    },
    /// Show the ledger's signed head (its signature checked against the server key).
    Rhead {
        #[command(flatten)]
        args: RheadArgs,
        #[command(flatten)]
        client: C,
    },
    /// How many entries the ledger holds (of one kind with KIND).
    Rsize {
        #[command(flatten)]
        args: RsizeArgs,
        #[command(flatten)]
        client: C,
    },
    /// Show the ledger entry at a position (1 the first, -1 the last).
    Rabs {
        #[command(flatten)]
        args: RabsArgs,
        #[command(flatten)]
        client: C,
    },
    /// Count the entries of a kind in a seq range.
    Rcount {
        #[command(flatten)]
        args: RcountArgs,
        #[command(flatten)]
        client: C,
    },
    /// List the entries of a kind (or `*`), one line each, following the server's pages.
    Rlist {
        #[command(flatten)]
        args: RlistArgs,
        #[command(flatten)]
        client: C,
    },
    /// Have the server re-verify its chain, or seqs FROM..=TO (admins); fails naming the
    /// first bad seq.
    Rcheck {
        #[command(flatten)]
        args: RcheckArgs,
        #[command(flatten)]
        client: C,
    },
    /// Upload a file, or several into a directory (LOCAL... DIR/) at once on one connection
    /// (window of pipelined chunks, SHA-256 checked; --resume continues).
    Put {
        #[command(flatten)]
        args: PutArgs,
        #[command(flatten)]
        client: C,
    },
    /// Download a file, or several into a directory (REMOTE... DIR) at once on one
    /// connection (visible only once its SHA-256 matched; --resume continues).
    Get {
        #[command(flatten)]
        args: GetArgs,
        #[command(flatten)]
        client: C,
    },
    /// List a directory on the server, one line per entry (KIND SIZE MTIME NAME).
    Ls {
        #[command(flatten)]
        args: LsArgs,
        #[command(flatten)]
        client: C,
    },
    /// Create a directory on the server (-p: and its missing parents).
    Mkdir {
        #[command(flatten)]
        args: MkdirArgs,
        #[command(flatten)]
        client: C,
    },
    /// Delete a file on the server (--dir: an empty directory).
    Rm {
        #[command(flatten)]
        args: RmArgs,
        #[command(flatten)]
        client: C,
    },
    /// Move or rename a file or directory on the server.
    Mv {
        #[command(flatten)]
        args: MvArgs,
        #[command(flatten)]
        client: C,
    },
    /// Show a file's or directory's kind, size, times and SHA-256.
    Stat {
        #[command(flatten)]
        args: PathArgs,
        #[command(flatten)]
        client: C,
    },
    /// Deliver a local file to USER's inbox folder (uploaded to outbox/ first).
    Send {
        #[command(flatten)]
        args: SendArgs,
        #[command(flatten)]
        client: C,
    },
    /// List the deliveries to one of your inbox folders, with their states (`inbox setup`:
    /// set a folder up).
    Inbox {
        #[command(flatten)]
        args: InboxArgs<C>,
        #[command(flatten)]
        client: C,
    },
    /// List a file's kept versions (number, size, time, SHA-256), newest first.
    Versions {
        #[command(flatten)]
        args: VersionsArgs,
        #[command(flatten)]
        client: C,
    },
    /// Bring back kept version N of a file (the replaced content becomes version 1).
    Restore {
        #[command(flatten)]
        args: RestoreArgs,
        #[command(flatten)]
        client: C,
    },
    /// Replication peers: `peer status` shows each peer's link and how far the feeds differ.
    Peer(peer_cmd::PeerArgs<C>),
    /// Two-factor login: `2fa enable` shows a QR code and recovery codes, then confirms a
    /// current code (`2fa confirm CODE` later, if it could not ask); `2fa disable` needs a
    /// current code or a recovery code.
    #[command(name = "2fa")]
    TwoFactor {
        /// enable, confirm or disable.
        step: two_factor_cmd::Step,
        /// The code (asked for on the terminal when not given).
        code: Option<String>,
        #[command(flatten)]
        client: C,
    },
    /// Sealed messages: `msg send USER TEXT` (`-`: stdin), `msg read ID` (opened and
    /// verified here), `msg del ID`.
    Msg(msg_cmd::MsgArgs<C>),
    /// List your messages, newest first (`--json` for scripts), only FROM's with FROM.
    Msgs {
        #[command(flatten)]
        args: MsgsArgs,
        #[command(flatten)]
        client: C,
    },
    /// List the query tables you may query (name, rows, load time, columns, last error).
    Tables {
        #[command(flatten)]
        args: crate::tables_cmd::TablesArgs,
        #[command(flatten)]
        client: C,
    },
    /// Show a query table's row by key, or the rows whose key starts with --prefix P.
    Query {
        #[command(flatten)]
        args: crate::tables_cmd::QueryArgs,
        #[command(flatten)]
        client: C,
    },
    /// Transit keys kept by the server: `tkey new|list|rotate|del NAME`, `tkey min USER NAME
    /// VERSION` (retire older versions).
    Tkey(transit_cmd::TkeyArgs<C>),
    /// Encrypt data under your transit key NAME; a file through stdin becomes one token per
    /// line (one per 12000 bytes), which `vserv unseal NAME` turns back into the file.
    Seal {
        #[command(flatten)]
        args: transit_cmd::SealArgs,
        #[command(flatten)]
        client: C,
    },
    /// Decrypt a token of your transit key NAME, or every token line of stdin, in order, to
    /// stdout.
    Unseal {
        #[command(flatten)]
        args: transit_cmd::UnsealArgs,
        #[command(flatten)]
        client: C,
    },
    /// Re-encrypt a token (or each line of stdin) under the key's newest version; the data
    /// never leaves the server.
    Rewrap {
        #[command(flatten)]
        args: transit_cmd::RewrapArgs,
        #[command(flatten)]
        client: C,
    },
    /// Fresh random key material from the server (default 32 bytes, as hex).
    Gk {
        #[command(flatten)]
        args: transit_cmd::GkArgs,
        #[command(flatten)]
        client: C,
    },
}

impl<C: Args> Op<C> {
    /// The connection options given with the command.
    pub fn client(&self) -> &C {
        match self {
            Op::Hello { client }
            | Op::Ver { client }
            | Op::Id { client }
            | Op::Ping { client, .. }
            | Op::Whoami { client }
            | Op::Tout { client, .. }
            | Op::Rput { client, .. }
            | Op::Rget { client, .. }
            | Op::Rhave { client, .. }
            | Op::Rhead { client, .. }
            | Op::Rsize { client, .. }
            | Op::Rabs { client, .. }
            | Op::Rcount { client, .. }
            | Op::Rlist { client, .. }
            | Op::Rcheck { client, .. }
            | Op::Put { client, .. }
            | Op::Get { client, .. }
            | Op::Ls { client, .. }
            | Op::Mkdir { client, .. }
            | Op::Rm { client, .. }
            | Op::Mv { client, .. }
            | Op::Stat { client, .. }
            | Op::Send { client, .. }
            | Op::Versions { client, .. }
            | Op::Restore { client, .. }
            | Op::TwoFactor { client, .. } => client,
            Op::Msgs { client, .. } => client,
            Op::Tables { client, .. } | Op::Query { client, .. } => client,
            Op::Seal { client, .. }
            | Op::Unseal { client, .. }
            | Op::Rewrap { client, .. }
            | Op::Gk { client, .. } => client,
            Op::Tkey(args) => args.client(),
            // `inbox setup`'s options follow `setup`.
            Op::Inbox { args, client } => args.action.as_ref().map_or(client, |a| a.client()),
            Op::Peer(args) => args.client(),
            Op::Msg(args) => args.client(),
        }
    }

    /// The command as typed (`rput`, `peer status`), for messages.
    pub fn name(&self) -> String {
        let name = match self {
            Op::Hello { .. } => "hello",
            Op::Ver { .. } => "ver",
            Op::Id { .. } => "id",
            Op::Ping { .. } => "ping",
            Op::Whoami { .. } => "whoami",
            Op::Tout { .. } => "tout",
            Op::Rput { .. } => "rput",
            Op::Rget { .. } => "rget",
            Op::Rhave { .. } => "rhave",
            Op::Rhead { .. } => "rhead",
            Op::Rsize { .. } => "rsize",
            Op::Rabs { .. } => "rabs",
            Op::Rcount { .. } => "rcount",
            Op::Rlist { .. } => "rlist",
            Op::Rcheck { .. } => "rcheck",
            Op::Put { .. } => "put",
            Op::Get { .. } => "get",
            Op::Ls { .. } => "ls",
            Op::Mkdir { .. } => "mkdir",
            Op::Rm { .. } => "rm",
            Op::Mv { .. } => "mv",
            Op::Stat { .. } => "stat",
            Op::Send { .. } => "send",
            Op::Inbox { args, .. } => {
                return match &args.action {
                    Some(action) => format!("inbox {}", action.name()),
                    None => "inbox".to_owned(),
                };
            }
            Op::Versions { .. } => "versions",
            Op::Restore { .. } => "restore",
            Op::Msgs { .. } => "msgs",
            Op::Tables { .. } => "tables",
            Op::Query { .. } => "query",
            Op::Peer(args) => return format!("peer {}", args.name()),
            Op::TwoFactor { step, .. } => {
                return format!(
                    "2fa {}",
                    match step {
                        two_factor_cmd::Step::Enable => "enable",
                        two_factor_cmd::Step::Confirm => "confirm",
                        two_factor_cmd::Step::Disable => "disable",
                    }
                );
            }
            Op::Msg(args) => return format!("msg {}", args.name()),
            Op::Tkey(args) => return format!("tkey {}", args.name()),
            Op::Seal { .. } => "seal",
            Op::Unseal { .. } => "unseal",
            Op::Rewrap { .. } => "rewrap",
            Op::Gk { .. } => "gk",
        };
        name.to_owned()
    }

    /// Whether the server runs it only for a logged-in user (every command but the
    /// session ones anyone may send, and the query tables, some of which anyone may query).
    pub fn needs_login(&self) -> bool {
        !matches!(
            self,
            Op::Hello { .. } | Op::Ver { .. } | Op::Id { .. } | Op::Ping { .. } | Op::Whoami { .. }
        ) && !matches!(self, Op::Tables { .. } | Op::Query { .. })
    }

    /// Runs the command without a connection when it needs none (`inbox setup --dry-run`,
    /// or settings refused before connecting); `None` when it needs the server.
    pub fn run_offline(&self) -> Option<anyhow::Result<()>> {
        match self {
            Op::Inbox { args, .. } => args.action.as_ref().and_then(|a| a.run_offline()),
            _ => None,
        }
    }

    /// Runs the command on `connected`, printing its result; the connection stays open.
    pub fn run_on(&self, connected: &mut Connected) -> anyhow::Result<()> {
        match self {
            Op::Hello { .. } => connected.run(&Command::Hello),
            Op::Ver { .. } => connected.run(&Command::Ver),
            Op::Id { .. } => connected.run(&Command::Id),
            Op::Ping { udp, .. }
            | Op::Tables {
                args: crate::tables_cmd::TablesArgs { udp, .. },
                ..
            }
            | Op::Query {
                args: crate::tables_cmd::QueryArgs { udp, .. },
                ..
            } if udp.udp => {
                bail!("--udp sends one datagram of its own, not on a connection")
            }
            Op::Ping { payload, .. } => connected.run(&Command::Ping {
                payload: payload.clone().unwrap_or_default().into_bytes(),
            }),
            Op::Whoami { .. } => connected.run(&Command::Whoami),
            Op::Tout { seconds, .. } => connected.run(&Command::Tout { seconds: *seconds }),
            Op::Rput { args, .. } => ledger_cmd::rput(connected, args),
            Op::Rget { args, .. } => ledger_cmd::rget(connected, args),
            Op::Rhave { args, .. } => ledger_cmd::rhave(connected, args),
            Op::Rhead { args, .. } => ledger_cmd::rhead(connected, args),
            Op::Rsize { args, .. } => ledger_cmd::rsize(connected, args),
            Op::Rabs { args, .. } => ledger_cmd::rabs(connected, args),
            Op::Rcount { args, .. } => ledger_cmd::rcount(connected, args),
            Op::Rlist { args, .. } => ledger_cmd::rlist(connected, args),
            Op::Rcheck { args, .. } => ledger_cmd::rcheck(connected, args),
            Op::Put { args, .. } => files_cmd::put(connected, args),
            Op::Get { args, .. } => files_cmd::get(connected, args),
            Op::Ls { args, .. } => files_cmd::ls(connected, args),
            Op::Mkdir { args, .. } => files_tree::mkdir(connected, args),
            Op::Rm { args, .. } => files_cmd::rm(connected, args),
            Op::Mv { args, .. } => files_cmd::mv(connected, args),
            Op::Stat { args, .. } => files_cmd::stat(connected, args),
            Op::Send { args, .. } => files_cmd::send(connected, args),
            Op::Inbox { args, .. } => files_cmd::inbox(connected, args),
            Op::Versions { args, .. } => files_tree::versions(connected, args),
            Op::Restore { args, .. } => files_tree::restore(connected, args),
            Op::Msg(args) => msg_cmd::run(connected, args),
            Op::Msgs { args, .. } => msg_cmd::list(connected, args),
            Op::Tables { args, .. } => crate::tables_cmd::tables(connected, args),
            Op::Query { args, .. } => crate::tables_cmd::query(connected, args),
            Op::Peer(args) => peer_cmd::run(connected, args),
            Op::TwoFactor { step, code, .. } => {
                two_factor_cmd::run(connected, *step, code.as_deref())
            }
            Op::Tkey(args) => transit_cmd::tkey(connected, args),
            Op::Seal { args, .. } => transit_cmd::seal(connected, args),
            Op::Unseal { args, .. } => transit_cmd::unseal(connected, args),
            Op::Rewrap { args, .. } => transit_cmd::rewrap(connected, args),
            Op::Gk { args, .. } => transit_cmd::gk(connected, args),
        }
    }
}

/// `vserv X ...`: runs the command without connecting when it needs no server
/// ([`Op::run_offline`]); otherwise refuses one that needs a login without `--user` (before
/// any prompt or connection), connects (logging in with `--user`), runs the command, quits.
pub fn run_once(op: &Op<ClientArgs>) -> anyhow::Result<()> {
    if let Some(result) = op.run_offline() {
        return result;
    }
    if let Op::Ping {
        payload,
        udp,
        client,
    } = op
        && udp.udp
    {
        let payload = payload.clone().unwrap_or_default().into_bytes();
        return crate::udp_cmd::run(client, &Command::Ping { payload });
    }
    if let Op::Tables { args, client } = op
        && args.udp.udp
    {
        let mut datagrams = crate::udp_cmd::anonymous_client(client)?;
        return crate::tables_cmd::tables_with(
            &mut |cmd| crate::udp_cmd::call(&mut datagrams, cmd),
            args,
        );
    }
    if let Op::Query { args, client } = op
        && args.udp.udp
    {
        let mut datagrams = crate::udp_cmd::anonymous_client(client)?;
        return crate::tables_cmd::query_with(
            &mut |cmd| crate::udp_cmd::call(&mut datagrams, cmd),
            args,
        );
    }
    let client = op.client();
    if op.needs_login() && client.user.is_none() {
        let who = if matches!(op, Op::Peer(_)) {
            "an admin login"
        } else {
            "a login"
        };
        bail!(
            "`vserv {}` needs {who}: add --user NAME (and --key FILE for a key)",
            op.name()
        );
    }
    let mut connected = client_cmd::connect(client)?;
    op.run_on(&mut connected)?;
    connected.quit()
}
