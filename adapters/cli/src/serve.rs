//! `vserv serve`, `vserv keygen`, `vserv fingerprint`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use vserv_core::ServerIdentity;
use vserv_service::accounts::{Accounts, PasswordParams};
use vserv_service::{Service, ServiceInfo};

/// Which runtime drives the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// One std thread per connection (the reference).
    Blocking,
    /// smol + async-io tasks.
    Smol,
}

/// `vserv serve` options.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = crate::DEFAULT_LISTEN)]
    pub listen: String,
    /// Data directory (holds the identity key, created on first start).
    #[arg(long, default_value = "./vserv-data")]
    pub data: PathBuf,
    /// Runtime driving the connections.
    #[arg(long, value_enum, default_value_t = Runtime::Blocking)]
    pub runtime: Runtime,
    /// Server name reported by `hello` and `id`.
    #[arg(long, default_value = "vserv")]
    pub name: String,
    /// Most connections served at once; more are refused as busy.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
}

/// Runs the server until SIGINT/SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut rng = vserv_store::rng::os_rng()?;
    let loaded = vserv_store::identity::load_or_create(&args.data, &mut *rng)
        .with_context(|| format!("loading the server identity from {}", args.data.display()))?;
    let identity = Arc::new(loaded.identity);
    let fingerprint = identity.public_key().fingerprint();
    if loaded.created {
        eprintln!(
            "vserv: created a new server identity in {}",
            loaded.path.display()
        );
    }
    let store = vserv_store::db::FjallStore::open(&args.data)
        .with_context(|| format!("opening the store in {}", args.data.display()))?;
    let accounts = Accounts::new(
        Arc::new(store),
        PasswordParams::DEFAULT,
        vserv_store::rng::os_rng()?,
    )
    .context("setting up accounts")?;
    let service = Service::new(
        ServiceInfo {
            name: args.name.clone(),
            fingerprint,
        },
        Arc::new(accounts),
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let options = vserv_service::ServerOptions {
        max_connections: args.max_connections,
        ..Default::default()
    };
    match args.runtime {
        Runtime::Blocking => {
            let server = vserv_blocking::Server::bind(&args.listen, identity, service, options)
                .with_context(|| format!("listening on {}", args.listen))?;
            announce(
                &server.local_addr()?.to_string(),
                &fingerprint.to_string(),
                "blocking",
            );
            let handle = server.spawn()?;
            wait_for(&stop);
            eprintln!("vserv: shutting down");
            handle.shutdown();
        }
        Runtime::Smol => {
            let server = vserv_smol::Server::bind(&args.listen, identity, service, options)
                .with_context(|| format!("listening on {}", args.listen))?;
            announce(
                &server.local_addr()?.to_string(),
                &fingerprint.to_string(),
                "smol",
            );
            let handle = server.spawn()?;
            wait_for(&stop);
            eprintln!("vserv: shutting down");
            handle.shutdown();
        }
    }
    Ok(())
}

fn announce(addr: &str, fingerprint: &str, runtime: &str) {
    println!("vserv listening on {addr} ({runtime} runtime)");
    println!("server key fingerprint: {fingerprint}");
}

fn wait_for(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `vserv keygen` options.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Where to write the secret key (mode 0600; never overwritten).
    #[arg(long, default_value = "vserv-user.key")]
    pub out: PathBuf,
}

/// Label on the first line of a user key file.
const USER_KEY_LABEL: &str = "vserv-user-key-v1";

/// Generates a k256 key pair, writes the secret, prints the public key and fingerprint.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let mut rng = vserv_store::rng::os_rng()?;
    let key = ServerIdentity::generate(&mut *rng);
    vserv_store::keyfile::write_secret_key_file(&args.out, &key.secret_bytes(), USER_KEY_LABEL)?;
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
