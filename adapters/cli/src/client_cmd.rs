//! The client subcommands: connect, log in if asked, run one command, print its reply.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use vserv_blocking::Client;
use vserv_core::commands::{Command, OtpCode, Reply};
use vserv_core::wire::RetryHint;
use vserv_core::{ErrorCode, Fingerprint, ServerIdentity};
use vserv_service::client::{ClientError, ClientOptions};
use vserv_store::trust::{PinOverRecord, TrustDecision};

use crate::credentials::{self, Password};
use crate::show::{escape, escape_bytes, escape_text};

/// Options shared by every client subcommand.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Server address, HOST:PORT (default: VSERV_SERVER, else `server` in
    /// ~/.vserv/config.toml, else 127.0.0.1:7117).
    #[arg(long, short = 's', default_value = crate::client_config::default_server())]
    pub server: String,
    /// File of trusted server keys (default ~/.vserv/known_servers).
    #[arg(long, value_name = "FILE", default_value = crate::client_config::default_known_servers())]
    pub known_servers: Option<PathBuf>,
    /// Require the server key to have this fingerprint (SHA256:...). It is trusted for this
    /// command even if another key is recorded for the server (which is then reported and
    /// left as it is, unless --update-known).
    #[arg(long, value_name = "FPR")]
    pub server_key: Option<Fingerprint>,
    /// With --server-key: record the pinned key for the server in place of a different one.
    #[arg(long, requires = "server_key")]
    pub update_known: bool,
    /// Log in as this user before running the command. The password is taken from the
    /// VSERV_PASSWORD environment variable, else asked for on the terminal (no echo).
    #[arg(long, value_name = "NAME", default_value = crate::client_config::default_user())]
    pub user: Option<String>,
    /// Log in with this key file (made by `vserv keygen --user` and registered with
    /// `vserv user key add`) instead of a password; --user names the account.
    #[arg(long, value_name = "FILE", requires = "user", default_value = crate::client_config::default_key())]
    pub key: Option<PathBuf>,
    /// The one-time code for an account with two-factor login (six digits from the
    /// authenticator, or a recovery code); without it, the VSERV_OTP environment variable,
    /// else asked for on the terminal when the server wants one.
    #[arg(long, value_name = "CODE", requires = "user")]
    pub otp: Option<String>,
    /// Do not retry a connection the server refused at one of its limits (by default the
    /// client waits the delay the server hinted, up to a minute, and tries once more).
    #[arg(long)]
    pub no_retry: bool,
    /// Give up when a request has had no reply and nothing at all arrived from the server
    /// for this many seconds (0: wait as long as the connection lasts). Any data received
    /// counts, so a transfer that is moving never times out.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
}

/// The default `--timeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

impl ClientArgs {
    /// Client options from the command line.
    pub fn options(&self) -> anyhow::Result<ClientOptions> {
        crate::client_config::check()?;
        let known_servers = match &self.known_servers {
            Some(p) => p.clone(),
            None => vserv_store::known_servers::default_path().ok_or_else(|| {
                anyhow!(
                    "cannot locate ~/.vserv/known_servers (HOME unset); pass --known-servers FILE"
                )
            })?,
        };
        let mut options = ClientOptions::new(known_servers);
        options.pinned = self.server_key;
        options.pin_over_record = if self.update_known {
            PinOverRecord::Replace
        } else {
            PinOverRecord::KeepRecord
        };
        options.response_timeout = (self.timeout > 0).then(|| Duration::from_secs(self.timeout));
        Ok(options)
    }
}

/// A connected client, logged in if `--user` was given.
pub struct Connected {
    /// The session.
    pub client: Client,
}

impl Connected {
    /// Runs `command`, printing the reply.
    pub fn run(&mut self, command: &Command) -> anyhow::Result<()> {
        let reply = self.client.call(command)?;
        print_reply(
            &reply,
            self.client.session().server_key().map(|k| k.fingerprint()),
        );
        Ok(())
    }

    /// Ends the session politely.
    pub fn quit(self) -> anyhow::Result<()> {
        self.client.quit()?;
        Ok(())
    }
}

/// Connects to the server and, with `--user`, logs in (by key with `--key`, else by
/// password).
pub fn connect(args: &ClientArgs) -> anyhow::Result<Connected> {
    connect_then(args, |_| Ok(())).map(|(connected, ())| connected)
}

/// Like [`connect`], but first obtains the login secret, then calls `ask` (given the login
/// password, if the login is by password) to gather whatever else the command needs, and
/// only then connects: every prompt happens before the server's timers start.
pub fn connect_then<T>(
    args: &ClientArgs,
    ask: impl FnOnce(Option<&Password>) -> anyhow::Result<T>,
) -> anyhow::Result<(Connected, T)> {
    let login = login_secret(args)?;
    let password = match &login {
        Some(Login {
            secret: Secret::Password(p),
            ..
        }) => Some(p),
        _ => None,
    };
    let extra = ask(password)?;
    Ok((open(args, login.as_ref())?, extra))
}

/// What a login proves itself with; wiped from memory when dropped.
pub enum Secret {
    /// The user's password.
    Password(Password),
    /// The user's login key.
    Key(ServerIdentity),
}

/// A user name and its secret, held in memory (never written anywhere) so that a session
/// can log in again after the server closed it.
pub struct Login {
    /// The user logging in.
    pub user: String,
    /// The proof.
    pub secret: Secret,
}

/// The login `args` asks for (`None`: anonymous): the key file with `--key`, else the
/// password (`VSERV_PASSWORD` or a prompt).
pub fn login_secret(args: &ClientArgs) -> anyhow::Result<Option<Login>> {
    let Some(user) = &args.user else {
        return Ok(None);
    };
    let secret = match args.key.as_deref() {
        Some(path) => Secret::Key(
            credentials::read_user_key(path)
                .with_context(|| format!("reading the key file {}", path.display()))?,
        ),
        None => Secret::Password(credentials::login_password(user, &args.server)?),
    };
    Ok(Some(Login {
        user: user.clone(),
        secret,
    }))
}

/// Connects to the server `args` names and, with `login`, logs in.
pub fn open(args: &ClientArgs, login: Option<&Login>) -> anyhow::Result<Connected> {
    let options = args.options()?;
    let mut client = connect_retrying(args, &options)
        .with_context(|| format!("connecting to {}", args.server))?;
    match client.session().trust() {
        Some(TrustDecision::FirstContact { fingerprint }) => eprintln!(
            "vserv: first contact with {}; trusting and recording its key {} in {}",
            args.server,
            fingerprint,
            options.known_servers.display()
        ),
        Some(TrustDecision::PinnedOverRecorded { recorded, replaced }) => eprintln!(
            "vserv: the key recorded for {} in {} ({recorded}) differs from the pinned one; {}",
            args.server,
            options.known_servers.display(),
            if *replaced {
                "the record now holds the pinned key"
            } else {
                "trusting the pinned key for this command only (--update-known records it)"
            }
        ),
        _ => {}
    }
    if let Some(Login { user, secret }) = login {
        let credential = match secret {
            Secret::Key(key) => {
                let session_id = client
                    .session()
                    .session_id()
                    .ok_or_else(|| anyhow!("the session has no id to sign (not connected)"))?;
                credentials::key_credential(key, &session_id, user)
            }
            Secret::Password(password) => credentials::password_credential(password),
        };
        let login = Command::Login {
            user: user.clone(),
            credential,
        };
        let mut answer = client.call(&login);
        if let Err(ClientError::Server(e)) = &answer
            && e.code == ErrorCode::CodeNeeded
        {
            answer = second_factor(&mut client, args, user)?;
        }
        match answer {
            Ok(_) => tracing::info!(user = %user, "logged in"),
            Err(ClientError::Server(e)) => {
                bail!("cannot log in as '{user}': {}", escape(&e.message))
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("logging in as '{user}'")));
            }
        }
    }
    Ok(Connected { client })
}

/// The second step of a login the server answered "code needed": the code from `--otp`,
/// else `VSERV_OTP`, else asked for on the terminal, sent as `otp`.
fn second_factor(
    client: &mut Client,
    args: &ClientArgs,
    user: &str,
) -> anyhow::Result<Result<Reply, ClientError>> {
    let typed = match args.otp.clone().or_else(|| std::env::var("VSERV_OTP").ok()) {
        Some(code) => code,
        None => rpassword::prompt_password(format!("two-factor code for {user}: "))
            .context("reading the two-factor code from the terminal (or pass --otp CODE)")?,
    };
    let code = OtpCode::parse(typed.trim().as_bytes()).map_err(|_| {
        anyhow!(
            "not a two-factor code: give the six digits of the authenticator or a recovery code"
        )
    })?;
    Ok(client.call(&Command::Otp { code }))
}

/// Longest hinted delay the client waits before its one retry of a refused connection.
pub const MAX_RETRY_WAIT_SECS: u32 = 60;

/// The retry hint of a connection the server refused at one of its limits, if that is why
/// `error` happened.
pub fn refusal_hint(error: &ClientError) -> Option<RetryHint> {
    match error {
        ClientError::Protocol(vserv_core::Error::RefusedRetry(hint)) => Some(*hint),
        _ => None,
    }
}

/// Connects; if the server refuses at one of its limits with a hint of at most
/// [`MAX_RETRY_WAIT_SECS`], says so, waits the hinted delay and tries once more (not with
/// `--no-retry`). The error of a refusal names the limit and the delay.
fn connect_retrying(args: &ClientArgs, options: &ClientOptions) -> Result<Client, ClientError> {
    match Client::connect(&args.server, options) {
        Err(e) if !args.no_retry => match refusal_hint(&e) {
            Some(hint) if hint.retry_after_secs <= MAX_RETRY_WAIT_SECS => {
                eprintln!(
                    "vserv: {} refused the connection: {}; retrying in {} s",
                    args.server, hint.limit, hint.retry_after_secs
                );
                std::thread::sleep(Duration::from_secs(u64::from(hint.retry_after_secs)));
                Client::connect(&args.server, options)
            }
            _ => Err(e),
        },
        other => other,
    }
}

/// How `vserv inbox` shows a delivery: `STATE SIZE TIME FROM SHA256 NAME`, then indented
/// `note:` and `reason:` lines when they are not empty.
pub fn delivery_lines(d: &vserv_core::commands::Delivery) -> String {
    let mut text = format!(
        "{:<8} {:>12} {} {} {} {}",
        d.state.as_str(),
        d.size,
        crate::show::local_time(d.time),
        escape(&d.from),
        hex::encode(d.sha256),
        escape(&d.name)
    );
    if !d.note.is_empty() {
        text.push_str(&format!("\n  note: {}", escape(&d.note)));
    }
    if !d.reason.is_empty() {
        text.push_str(&format!("\n  reason: {}", escape(&d.reason)));
    }
    text
}

/// Connects (logging in with `--user`), runs `command`, prints the reply, quits.
pub fn run(args: &ClientArgs, command: Command) -> anyhow::Result<()> {
    let mut connected = connect(args)?;
    connected.run(&command)?;
    connected.quit()
}

/// `vserv login`: logs in and prints who the server says we are.
pub fn login(args: &ClientArgs) -> anyhow::Result<()> {
    if args.user.is_none() {
        bail!("login needs --user NAME (and --key FILE to log in by key)");
    }
    run(args, Command::Whoami)
}

/// Prints a reply the way every client subcommand does.
pub fn print_reply(reply: &Reply, fingerprint: Option<Fingerprint>) {
    match reply {
        Reply::Greeting(text) => {
            println!("{}", escape(text));
            if let Some(f) = fingerprint {
                println!("server key: {f}");
            }
        }
        Reply::Version { protocol, software } => {
            println!("protocol {protocol}, {}", escape(software))
        }
        Reply::Identity { name, fingerprint } => println!("{} {fingerprint}", escape(name)),
        Reply::Help(text) => print!("{}", escape_text(text)),
        Reply::Pong(payload) => println!("{}", escape_bytes(payload)),
        Reply::Bye => println!("bye"),
        Reply::User { name, role } => println!("{} ({})", escape(name), role.as_str()),
        Reply::Anonymous => println!("not logged in"),
        Reply::Done => println!("ok"),
        Reply::Users(users) => {
            for u in users {
                let state = if u.enabled { "enabled" } else { "disabled" };
                println!("{:<32} {:<5} {state}", escape(&u.name), u.role.as_str());
            }
        }
        Reply::Keys(keys) => {
            for k in keys {
                println!("{}", escape(&k.to_string()));
            }
        }
        Reply::TwoFactorEnrolment { uri, recovery } => {
            println!("{}", escape(uri));
            for code in recovery {
                println!("recovery code {}", escape(code));
            }
        }
        Reply::IdleTimeout(seconds) => println!("idle timeout: {seconds}s"),
        Reply::Appended { seq, hash } => println!("seq {seq} hash {}", hex::encode(hash)),
        Reply::Record(entry) => {
            println!("seq {} hash {}", entry.seq(), hex::encode(entry.hash()));
            println!(
                "author {} kind {} time_ms {}",
                escape(entry.author()),
                escape(entry.kind()),
                entry.timestamp()
            );
            println!("record {}", escape_bytes(entry.record_id()));
            print!("{}", escape_text(&String::from_utf8_lossy(entry.body())));
        }
        Reply::Page { entries, next } => {
            for entry in entries {
                println!(
                    "seq {} hash {} kind {} author {} record {}",
                    entry.seq(),
                    hex::encode(entry.hash()),
                    escape(entry.kind()),
                    escape(entry.author()),
                    escape_bytes(entry.record_id())
                );
            }
            if let Some(next) = next {
                println!("next {next}");
            }
        }
        Reply::Listing { entries, next } => {
            for e in entries {
                println!(
                    "{} {:>12} {} {}",
                    e.kind.as_str(),
                    e.size,
                    crate::show::local_time(e.modified),
                    escape(&e.name)
                );
            }
            if let Some(next) = next {
                println!("next {}", escape(next));
            }
        }
        Reply::Peers { peers, forks } => print!("{}", crate::peer_cmd::status_text(peers, forks)),
        Reply::Versions(versions) => {
            for v in versions {
                println!(
                    "{} {} {} {}",
                    v.number,
                    v.size,
                    v.modified,
                    hex::encode(v.sha256)
                );
            }
        }
        Reply::Cwd(path) => println!("{}", escape(path)),
        Reply::Delivered(name) => println!("delivered as {}", escape(name)),
        Reply::Deliveries { entries, next } => {
            for d in entries {
                println!("{}", delivery_lines(d));
            }
            if let Some(next) = next {
                println!("next {}", escape(next));
            }
        }
        Reply::Opened(r) => println!("transfer {} from offset {}", r.id, r.offset),
        Reply::Uploaded(r) => println!("size {} sha256 {}", r.size, hex::encode(r.sha256)),
        Reply::Download(r) => println!(
            "transfer {} size {} sha256 {}",
            r.id,
            r.size,
            hex::encode(r.sha256)
        ),
        Reply::Data(r) => println!("{} bytes", r.data.len()),
        Reply::Stat(st) => {
            println!("kind {}", st.kind.as_str());
            println!("size {}", st.size);
            println!("modified {}", crate::show::local_time(st.modified));
            if let Some(created) = st.created {
                println!("created {}", crate::show::local_time(created));
            }
            if let Some(sha) = st.sha256 {
                println!("sha256 {}", hex::encode(sha));
            }
        }
        Reply::Have(yes) => println!("{}", if *yes { "yes" } else { "no" }),
        Reply::Count(n) => println!("{n}"),
        Reply::Head(signed) => println!(
            "seq {} hash {} signed by {}",
            signed.head.seq,
            hex::encode(signed.head.hash),
            signed.head.origin.fingerprint()
        ),
        Reply::ChainOk { seq } => println!("ok: {seq} entries verified"),
        Reply::ChainBad { seq, reason } => match seq {
            Some(seq) => println!("bad at seq {seq}: {}", escape(reason)),
            None => println!("bad: {}", escape(reason)),
        },
        Reply::MessageKey(key) => println!("{}", hex::encode(key)),
        Reply::MessageId(id) => println!("message {id}"),
        Reply::Messages(list) => {
            for m in list {
                let state = if m.read { "read" } else { "unread" };
                println!("{} {} {} {} {state}", m.id, escape(&m.from), m.time, m.size);
            }
        }
        Reply::Sealed(bytes) => println!("{} sealed bytes", bytes.len()),
        Reply::Tables(_) | Reply::Row(_) | Reply::Rows { .. } => {
            crate::tables_cmd::print_reply(reply)
        }
        Reply::KeyVersion(v) => println!("version {v}"),
        Reply::TransitKeys(keys) => print!("{}", crate::transit_cmd::keys_text(keys)),
        Reply::Token(token) => println!("{}", escape(token)),
        Reply::Unsealed(data) => println!("{}", escape_bytes(data)),
        Reply::KeyMaterial(bytes) => println!("{}", hex::encode(bytes)),
    }
}
