//! `vserv user ...`: account administration, over the protocol (logged in with `--user`) or,
//! with `--data DIR`, directly on a stopped server's data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use vserv_core::Fingerprint;
use vserv_core::commands::{Command, KeyAction, Reply, TwoFactorAction, UserRole};
use vserv_service::accounts::{Accounts, PasswordParams, UserName};
use vserv_store::db::FjallStore;
use vserv_store::kv::StoreError;

use crate::client_cmd::{self, ClientArgs, Connected};
use crate::credentials;

/// `vserv user` options. `T` is where an administrative command runs ([`Target`] for
/// `vserv user`), `C` the connection options ([`ClientArgs`]); both are
/// [`NoClient`](crate::ops::NoClient) in the shell, which runs them on its connection.
#[derive(Args, Debug)]
pub struct UserArgs<T: Args, C: Args> {
    #[command(subcommand)]
    command: UserCommand<T, C>,
}

/// Where an administrative command runs: over the protocol, or on a data directory.
#[derive(Args, Debug)]
pub struct Target {
    /// Work directly on this data directory instead of over the protocol. Only while the
    /// server is stopped; no login needed (access to the directory is the authority).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["user", "key", "server", "server_key", "known_servers"]
    )]
    data: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

/// The account commands.
#[derive(Subcommand, Debug)]
enum UserCommand<T: Args, C: Args> {
    /// Create the first admin (only while no user exists, only from the server's own
    /// machine). The password comes from VSERV_NEW_PASSWORD, else a prompt.
    Init {
        /// The new admin's name.
        name: String,
        #[command(flatten)]
        client: C,
    },
    /// Create a user (admins). The password comes from VSERV_NEW_PASSWORD, else a prompt.
    /// With --data on an empty store, the first user must be an admin (--admin).
    Add {
        /// The new user's name.
        name: String,
        /// Make the new user an admin.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        target: T,
    },
    /// Delete a user (admins; never the last enabled admin).
    Del {
        /// The user to delete.
        name: String,
        #[command(flatten)]
        target: T,
    },
    /// Allow a disabled user to log in again (admins).
    Enable {
        /// The user to enable.
        name: String,
        #[command(flatten)]
        client: C,
    },
    /// Stop a user from logging in (admins; never the last enabled admin).
    Disable {
        /// The user to disable.
        name: String,
        #[command(flatten)]
        client: C,
    },
    /// List users: name, role, enabled or disabled (admins).
    List {
        /// Only users whose name contains this text.
        filter: Option<String>,
        /// A JSON array of `{"name", "role", "enabled"}` instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: T,
    },
    /// Change your own password (asks the current one unless you logged in by password), or,
    /// as an admin, set user NAME's. The new password comes from VSERV_NEW_PASSWORD, else a
    /// prompt. With --data, NAME is required.
    Passwd {
        /// Whose password to set (admins); default: your own.
        name: Option<String>,
        #[command(flatten)]
        target: T,
    },
    /// Remove user NAME's two-factor login (admins), e.g. when they lost their
    /// authenticator and their recovery codes.
    #[command(name = "2fa-reset")]
    TwoFactorReset {
        /// Whose second factor to remove.
        name: String,
        #[command(flatten)]
        client: C,
    },
    /// Manage your own login keys (for `--key` logins).
    Key {
        #[command(subcommand)]
        action: KeyCommand<C>,
    },
}

/// `vserv user key` actions.
#[derive(Subcommand, Debug)]
enum KeyCommand<C: Args> {
    /// Register a public key for logging in as yourself.
    Add {
        /// The public key in hex, as printed by `vserv keygen --user`.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        public_key: Option<String>,
        /// Read the public key from FILE instead: a key file made by `vserv keygen --user`
        /// (its public half is sent, never the secret) or a file holding the hex public key.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        client: C,
    },
    /// List the fingerprints of your keys.
    List {
        /// A JSON array of fingerprints instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: C,
    },
    /// Remove one of your keys.
    Del {
        /// The key's fingerprint (SHA256:...), as `vserv user key list` shows it.
        fingerprint: Fingerprint,
        #[command(flatten)]
        client: C,
    },
}

impl<T: Args, C: Args> UserCommand<T, C> {
    /// Whether the listing was asked for as JSON.
    fn json(&self) -> bool {
        matches!(
            self,
            UserCommand::List { json: true, .. }
                | UserCommand::Key {
                    action: KeyCommand::List { json: true, .. }
                }
        )
    }

    /// The subcommand as typed after `user`, for messages.
    fn name(&self) -> &'static str {
        match self {
            UserCommand::Init { .. } => "init",
            UserCommand::Add { .. } => "add",
            UserCommand::Del { .. } => "del",
            UserCommand::Enable { .. } => "enable",
            UserCommand::Disable { .. } => "disable",
            UserCommand::List { .. } => "list",
            UserCommand::Passwd { .. } => "passwd",
            UserCommand::TwoFactorReset { .. } => "2fa-reset",
            UserCommand::Key { action } => match action {
                KeyCommand::Add { .. } => "key add",
                KeyCommand::List { .. } => "key list",
                KeyCommand::Del { .. } => "key del",
            },
        }
    }

    /// The protocol command it sends, asking for any password it needs (a new one from
    /// `VSERV_NEW_PASSWORD` or a prompt; for changing one's own, the current one: `login`,
    /// the password `me` logged in with, else `VSERV_PASSWORD` or a prompt).
    fn protocol_command(
        &self,
        me: Option<&str>,
        login: Option<&credentials::Password>,
    ) -> anyhow::Result<Command> {
        Ok(match self {
            UserCommand::Init { name, .. } => Command::Uini {
                user: name.clone(),
                password: credentials::secret(&credentials::new_password(name)?),
            },
            UserCommand::Add { name, admin, .. } => {
                let password = credentials::secret(&credentials::new_password(name)?);
                let user = name.clone();
                if *admin {
                    Command::Aadd { user, password }
                } else {
                    Command::Uadd { user, password }
                }
            }
            UserCommand::Del { name, .. } => Command::Udel { user: name.clone() },
            UserCommand::TwoFactorReset { name, .. } => {
                Command::TwoFactor(TwoFactorAction::Reset(name.clone()))
            }
            UserCommand::Enable { name, .. } => Command::Uena {
                user: name.clone(),
                enabled: true,
            },
            UserCommand::Disable { name, .. } => Command::Uena {
                user: name.clone(),
                enabled: false,
            },
            UserCommand::List { filter, .. } => Command::Ulist {
                filter: filter.clone(),
            },
            UserCommand::Passwd {
                name: Some(target), ..
            } => Command::Chpass {
                target: Some(target.clone()),
                old: None,
                new: credentials::secret(&credentials::new_password(target)?),
            },
            UserCommand::Passwd { name: None, .. } => {
                let me = me.ok_or_else(|| anyhow!("user passwd without NAME needs a login"))?;
                let old = match login {
                    Some(password) => password.clone(),
                    None => credentials::current_password(me)?,
                };
                Command::Chpass {
                    target: None,
                    old: Some(credentials::secret(&old)),
                    new: credentials::secret(&credentials::new_password(me)?),
                }
            }
            UserCommand::Key { action } => Command::Ukey(match action {
                KeyCommand::Add {
                    public_key, file, ..
                } => KeyAction::Add(match (public_key, file) {
                    (_, Some(path)) => credentials::public_key_from_file(path)?,
                    (Some(text), None) => credentials::parse_public_key(text)?,
                    (None, None) => bail!("give the public key in hex, or --file FILE"),
                }),
                KeyCommand::List { .. } => KeyAction::List,
                KeyCommand::Del { fingerprint, .. } => KeyAction::Del(*fingerprint),
            }),
        })
    }
}

/// Runs a `user` command on an open connection (in the shell), logged in as `me` (with
/// `login`, when by password).
pub fn run_on<T: Args, C: Args>(
    connected: &mut Connected,
    args: &UserArgs<T, C>,
    me: Option<&str>,
    login: Option<&credentials::Password>,
) -> anyhow::Result<()> {
    let command = args.command.protocol_command(me, login)?;
    let reply = connected.client.call(&command)?;
    print_reply(&reply, args.command.json());
    Ok(())
}

/// Prints a `user` command's reply: listings as JSON when asked, else as every client
/// command prints replies.
fn print_reply(reply: &Reply, json: bool) {
    match reply {
        Reply::Users(users) if json => {
            let users: Vec<_> = users
                .iter()
                .map(|u| {
                    serde_json::json!({
                        "name": u.name,
                        "role": u.role.as_str(),
                        "enabled": u.enabled,
                    })
                })
                .collect();
            println!("{}", serde_json::Value::from(users));
        }
        Reply::Keys(keys) if json => {
            let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
            println!("{}", serde_json::Value::from(keys));
        }
        reply => client_cmd::print_reply(reply, None),
    }
}

/// Runs a `vserv user` command: on a data directory with `--data`, else over the protocol
/// (every prompt before connecting).
pub fn run(args: UserArgs<Target, ClientArgs>) -> anyhow::Result<()> {
    let command = &args.command;
    let client = match command {
        UserCommand::Add {
            name,
            admin,
            target,
        } => match &target.data {
            Some(dir) => return offline_add(dir, name, *admin),
            None => &target.client,
        },
        UserCommand::Del { name, target } => match &target.data {
            Some(dir) => return offline_del(dir, name),
            None => &target.client,
        },
        UserCommand::List {
            filter,
            json,
            target,
        } => match &target.data {
            Some(dir) => {
                let users = open_offline(dir, false)?.list(filter.as_deref())?;
                print_reply(&Reply::Users(users), *json);
                return Ok(());
            }
            None => &target.client,
        },
        UserCommand::Passwd { name, target } => match &target.data {
            Some(dir) => return offline_passwd(dir, name.as_deref()),
            None => &target.client,
        },
        UserCommand::Init { client, .. }
        | UserCommand::Enable { client, .. }
        | UserCommand::Disable { client, .. }
        | UserCommand::TwoFactorReset { client, .. } => client,
        UserCommand::Key { action } => match action {
            KeyCommand::Add { client, .. }
            | KeyCommand::List { client, .. }
            | KeyCommand::Del { client, .. } => client,
        },
    };
    if !matches!(command, UserCommand::Init { .. }) {
        need_login(client, command.name())?;
    }
    let me = client.user.as_deref();
    let (mut connected, protocol) =
        client_cmd::connect_then(client, |login| command.protocol_command(me, login))?;
    let reply = connected.client.call(&protocol)?;
    print_reply(&reply, command.json());
    connected.quit()
}

/// `user passwd NAME --data DIR`.
fn offline_passwd(dir: &Path, name: Option<&str>) -> anyhow::Result<()> {
    let name = name.ok_or_else(|| {
        anyhow!("with --data, name the user whose password to set: user passwd NAME")
    })?;
    let accounts = open_offline(dir, false)?;
    // Refuse an unknown name before asking for a password.
    let user = accounts
        .get(&UserName::parse(name)?)?
        .ok_or_else(|| anyhow!("no user named '{name}'"))?;
    let name = user.name.to_string();
    let password = credentials::new_password(&name)?;
    accounts.set_password(&name, None, password.as_bytes())?;
    client_cmd::print_reply(&Reply::Done, None);
    Ok(())
}

/// Refuses, before any prompt or connection, a command that needs a login but has no --user.
fn need_login(client: &ClientArgs, what: &str) -> anyhow::Result<()> {
    if client.user.is_none() {
        bail!("`vserv user {what}` needs a login: add --user NAME (and --key FILE for a key)");
    }
    Ok(())
}

/// Opens the accounts in data directory `dir`, which must not be in use by a server.
/// `create`: make the directory and store if absent (bootstrapping before the first start).
fn open_offline(dir: &Path, create: bool) -> anyhow::Result<Accounts> {
    if !create && !dir.is_dir() {
        bail!("no data directory at {}", dir.display());
    }
    let store = FjallStore::open(dir).map_err(|e| match e {
        StoreError::Locked(_) => anyhow!(
            "the data directory {} is in use by a running server; stop it first, or drop \
             --data and go through the server (--user NAME)",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("opening the store in {}", dir.display())),
    })?;
    Accounts::new(
        Arc::new(store),
        PasswordParams::DEFAULT,
        vserv_service::system::os_rng()?,
    )
    .context("setting up accounts")
}

/// `user del NAME --data DIR`: deletes the account, then archives its home to
/// `DIR/deleted-homes/NAME-<account id>` as the server's `udel` does.
fn offline_del(dir: &Path, name: &str) -> anyhow::Result<()> {
    use vserv_service::files::{DiskTree, FileTree, FilesConfig};
    let deleted = open_offline(dir, false)?.delete(name)?;
    DiskTree::open(dir, FilesConfig::default())
        .and_then(|tree| tree.archive_home(&deleted.name, &deleted.id.to_string()))
        .with_context(|| {
            format!(
                "'{}' was deleted, but their home could not be archived",
                deleted.name
            )
        })?;
    client_cmd::print_reply(&Reply::Done, None);
    Ok(())
}

/// `user add NAME [--admin] --data DIR`.
fn offline_add(dir: &Path, name: &str, admin: bool) -> anyhow::Result<()> {
    let accounts = open_offline(dir, true)?;
    if !admin && accounts.is_empty()? {
        bail!(
            "{} has no users yet: the first user must be an admin (add --admin)",
            dir.display()
        );
    }
    let role = if admin {
        UserRole::Admin
    } else {
        UserRole::User
    };
    let password = credentials::new_password(name)?;
    let user = accounts.create(name, role, password.as_bytes(), vserv_service::unix_now())?;
    println!("created {} '{}'", role.as_str(), user.name);
    Ok(())
}
