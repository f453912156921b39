//! `vserv serve`, `vserv keygen`, `vserv fingerprint`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use vserv_core::ServerIdentity;
use vserv_service::Node;

use crate::config::Runtime;

/// `vserv serve` options. Each flag overrides the same key of `--config`; without either,
/// the default shown applies.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (every key is documented in the README); unknown keys are
    /// an error.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7117].
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory (holds the identity key, created on first start)
    /// [default: ./vserv-data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Runtime driving the connections [default: blocking].
    #[arg(long, value_enum)]
    pub runtime: Option<Runtime>,
    /// Server name reported by `hello` and `id` [default: vserv].
    #[arg(long)]
    pub name: Option<String>,
    /// Most connections served at once; more are refused as busy [default: 1024].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Start even though the store lost data it had acknowledged (a damaged or deleted
    /// journal or database file): go on with what is left, log the loss, and record the store
    /// as it is. Without it such a store is refused.
    #[arg(long)]
    pub accept_data_loss: bool,
    /// Write the log to FILE (appending; never coloured) instead of stderr. SIGHUP re-opens
    /// it, so a log rotated away is replaced by a new file.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

/// Runs the server until SIGINT/SIGTERM, configured by flags over `--config` over defaults.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => crate::config::FileConfig::load(path)
            .with_context(|| format!("in the configuration file {}", path.display()))?,
        None => crate::config::FileConfig::default(),
    };
    let flags = crate::config::Overrides {
        listen: args.listen,
        data: args.data,
        name: args.name,
        runtime: args.runtime,
        max_connections: args.max_connections,
        accept_data_loss: args.accept_data_loss,
    };
    let args_config = args.config.clone();
    let settings = crate::config::resolve(file, flags).with_context(|| match &args.config {
        Some(path) => format!("in the configuration file {}", path.display()),
        None => "in the server options".to_owned(),
    })?;
    let args = &settings;
    // Bind first: an address that cannot be used fails before anything is created.
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    let udp = crate::udp_serve::bind(args.udp_listen.as_deref())?;
    let node = Node::open_with_file_runner(&args.data, &args.node, file_runner())?;
    let own = node.identity().public_key().fingerprint();
    crate::config::check_own_fingerprint(args, &own).with_context(|| match &args_config {
        Some(path) => format!("in the configuration file {}", path.display()),
        None => "in the server options".to_owned(),
    })?;
    let startup = node.startup();
    if let Some(path) = &startup.identity_created {
        eprintln!("vserv: created a new server identity in {}", path.display());
    }
    if let Some(lost) = &startup.data_loss {
        eprintln!("vserv: WARNING: starting after data loss (--accept-data-loss): {lost}");
    }
    let node = Arc::new(node);
    // Unclaimed partial uploads were swept at start; the runtime sweeps them every hour
    // (the node's timed duties, `Service::next_duty`).
    let identity = node.identity().clone();
    let fingerprint = identity.public_key().fingerprint();
    // Sessions are told before they idle out (protocol.md §12.4).
    let service = node
        .service()
        .with_idle_notice(Some(vserv_service::DEFAULT_IDLE_NOTICE_MARGIN));
    let service = crate::udp_serve::with_datagrams(service, &identity, udp.as_ref());
    let signals = Signals::install()?;
    let status_service = service.clone();
    let options = vserv_service::ServerOptions {
        max_connections: args.max_connections,
        config: vserv_core::Config {
            handshake_timeout: args.handshake_timeout,
            idle_timeout: args.idle_timeout,
            login_grace: args.login_grace,
            ..Default::default()
        },
    };
    match args.runtime {
        Runtime::Blocking => {
            let server =
                vserv_blocking::Server::with_listener(listener, identity, service, options)
                    .with_context(|| format!("listening on {}", args.listen))?;
            announce(
                &server.local_addr()?.to_string(),
                &fingerprint.to_string(),
                "blocking",
            );
            let handle = server.spawn()?;
            let udp = crate::udp_serve::spawn(udp, &status_service, args.runtime)?;
            signals.wait(|| {
                crate::udp_serve::with_stats(
                    status_text(handle.active_connections(), &status_service.status()),
                    &status_service,
                )
            });
            eprintln!("vserv: shutting down");
            if let Some(udp) = udp {
                udp.shutdown();
            }
            handle.shutdown();
        }
        Runtime::Smol => {
            let server = vserv_smol::Server::with_listener(listener, identity, service, options)
                .with_context(|| format!("listening on {}", args.listen))?;
            announce(
                &server.local_addr()?.to_string(),
                &fingerprint.to_string(),
                "smol",
            );
            let handle = server.spawn()?;
            let udp = crate::udp_serve::spawn(udp, &status_service, args.runtime)?;
            signals.wait(|| {
                crate::udp_serve::with_stats(
                    status_text(handle.active_connections(), &status_service.status()),
                    &status_service,
                )
            });
            eprintln!("vserv: shutting down");
            if let Some(udp) = udp {
                udp.shutdown();
            }
            handle.shutdown();
        }
    }
    Ok(())
}

/// Where the file tree runs its uploads' writes and downloads' reads ahead, on either
/// runtime: a pool of its own, apart from the service's. The service's file work waits for
/// these runs (a full write queue, a sync), and they wait for nothing but the disk, so they
/// can never be stuck behind work that waits for them.
fn file_runner() -> Arc<dyn vserv_service::work::Runner> {
    Arc::new(vserv_pool::WorkPool::default())
}

fn announce(addr: &str, fingerprint: &str, runtime: &str) {
    println!("vserv listening on {addr} ({runtime} runtime)");
    println!("server key fingerprint: {fingerprint}");
    tracing::info!(
        target: crate::logging::SERVER_TARGET,
        "vserv {} started: listening on {addr} ({runtime} runtime), server key {fingerprint}",
        env!("CARGO_PKG_VERSION")
    );
}

/// The signals `serve` handles: SIGINT/SIGTERM stop it, SIGHUP re-opens the log file,
/// SIGUSR1 logs a status summary.
struct Signals {
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    status: Arc<AtomicBool>,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        let signals = Signals {
            stop: Arc::new(AtomicBool::new(false)),
            reopen: Arc::new(AtomicBool::new(false)),
            status: Arc::new(AtomicBool::new(false)),
        };
        let flags = [
            (SIGINT, &signals.stop),
            (SIGTERM, &signals.stop),
            (SIGHUP, &signals.reopen),
            (SIGUSR1, &signals.status),
        ];
        for (signal, flag) in flags {
            signal_hook::flag::register(signal, flag.clone())
                .context("installing signal handlers")?;
        }
        Ok(signals)
    }

    /// Waits for a stop signal, serving SIGHUP and SIGUSR1 (with `status` for the summary)
    /// meanwhile.
    fn wait(&self, status: impl Fn() -> String) {
        while !self.stop.load(Ordering::SeqCst) {
            if self.reopen.swap(false, Ordering::SeqCst) {
                match crate::logging::reopen() {
                    Ok(true) => tracing::info!(
                        target: crate::logging::SERVER_TARGET,
                        "log file re-opened (SIGHUP)"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "cannot re-open the log file"),
                }
            }
            if self.status.swap(false, Ordering::SeqCst) {
                tracing::info!(target: crate::logging::SERVER_TARGET, "{}", status());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The SIGUSR1 summary line: connections, sessions per user, transfers open, ledger head.
pub fn status_text(connections: usize, status: &vserv_service::ServiceStatus) -> String {
    let users = if status.sessions_by_user.is_empty() {
        "none".to_owned()
    } else {
        status
            .sessions_by_user
            .iter()
            .map(|(user, n)| format!("{}={n}", crate::show::escape(user)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let head = status
        .ledger_head_seq
        .map_or_else(|| "empty".to_owned(), |seq| seq.to_string());
    format!(
        "status: {connections} connections, {} logged in ({users}), {} not logged in, {} transfers open, ledger head seq {head}",
        status.logged_in(),
        status.unauthenticated,
        status.transfers,
    )
}

/// `vserv keygen` options.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Make a user login key (for `vserv login --user NAME --key FILE`, registered with
    /// `vserv user key add`). This is the only kind keygen makes, so plain `vserv keygen` is
    /// the same; the flag states it explicitly. Server identities are created by
    /// `vserv serve` on first start.
    #[arg(long)]
    pub user: bool,
    /// Where to write the secret key (mode 0600; never overwritten).
    #[arg(long, default_value = "vserv-user.key")]
    pub out: PathBuf,
}

/// Generates a user key pair, writes the secret (labelled [`USER_KEY_LABEL`], distinct from
/// the server identity's label), prints the public key and its fingerprint.
///
/// [`USER_KEY_LABEL`]: crate::credentials::USER_KEY_LABEL
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let mut rng = vserv_service::system::os_rng()?;
    let key = ServerIdentity::generate(&mut *rng);
    vserv_store::keyfile::write_secret_key_file(
        &args.out,
        &key.secret_bytes(),
        crate::credentials::USER_KEY_LABEL,
    )?;
    let public = key.public_key();
    println!("secret key written to {}", args.out.display());
    println!("public key: {}", hex_string(public.as_bytes()));
    println!("fingerprint: {}", public.fingerprint());
    Ok(())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `vserv fingerprint` options.
#[derive(Args, Debug)]
pub struct FingerprintArgs {
    /// The server's data directory.
    #[arg(long, default_value = "./vserv-data")]
    pub data: PathBuf,
}

/// Prints the fingerprint of the server identity stored in `--data`.
pub fn fingerprint(args: FingerprintArgs) -> anyhow::Result<()> {
    let loaded = vserv_store::identity::load(&args.data)
        .with_context(|| format!("reading the server identity in {}", args.data.display()))?;
    println!("{}", loaded.identity.public_key().fingerprint());
    Ok(())
}
