//! `vserv bench login`: password logins per second with the production argon2 parameters
//! ([`PasswordParams::DEFAULT`]: m = 19456 KiB, t = 2, p = 1), against an in-process blocking
//! server on 127.0.0.1 whose accounts live in a fjall store in a temporary directory (so each
//! login also pays the durable write of its last-login time, as on a real server).
//!
//! Each client thread opens one session and logs in over and over as its own user (the
//! limiter bounds parallel logins of one user); every login succeeds, so the backoff never
//! engages (and the connection rate limit is off).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use vserv_blocking::{Client, Server, ServerOptions};
use vserv_core::ServerIdentity;
use vserv_core::commands::{Command, Credential, Reply, SecretBytes, UserRole};
use vserv_service::accounts::{Accounts, PasswordParams};
use vserv_service::client::ClientOptions;
use vserv_service::{Policy, Service, ServiceInfo};

use super::stats::Latency;
use super::{Machine, Report};

const PASSWORD: &str = "bench-password-1";

fn user(thread: u32) -> String {
    format!("bench{thread}")
}

/// `vserv bench login` options.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Client threads, each logging in back to back on its own session.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// Measured seconds.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = super::parse_seconds)]
    pub seconds: Duration,
    /// Unmeasured seconds before measuring.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = super::parse_seconds)]
    pub warmup: Duration,
}

/// The `vserv bench login` report.
#[derive(Serialize, Debug)]
pub struct LoginReport {
    bench: &'static str,
    machine: Machine,
    threads: u32,
    seconds: f64,
    /// argon2id memory (KiB), passes, lanes.
    argon2_m_kib: u32,
    argon2_t: u32,
    argon2_p: u32,
    /// Successful logins per second, all threads together.
    logins_per_s: f64,
    completed: u64,
    /// One login round trip as the client sees it.
    latency: Latency,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

fn login_command(user: String) -> Command {
    Command::Login {
        user,
        credential: Credential::Password(SecretBytes::new(PASSWORD.as_bytes().to_vec())),
    }
}

/// Runs the login benchmark.
pub fn run(args: &LoginArgs) -> anyhow::Result<LoginReport> {
    let params = PasswordParams::DEFAULT;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let store = vserv_store::db::FjallStore::open(&dir.path().join("data"))
        .context("opening the temporary store")?;
    let accounts = Accounts::new(Arc::new(store), params, vserv_store::rng::os_rng()?)
        .context("setting up accounts")?;
    for t in 0..args.threads {
        accounts
            .create(
                &user(t),
                UserRole::User,
                PASSWORD.as_bytes(),
                vserv_service::unix_now(),
            )
            .context("creating the benchmark users")?;
    }
    let mut rng = vserv_store::rng::os_rng()?;
    let identity = Arc::new(ServerIdentity::generate(&mut *rng));
    let fingerprint = identity.public_key().fingerprint();
    let info = ServiceInfo {
        name: "vserv-bench".into(),
        fingerprint,
    };
    let policy = Policy {
        connection_rate: None,
        max_unauthenticated_per_ip: None,
        ..Policy::default()
    };
    let service = Service::with_policy(info, Arc::new(accounts), policy);
    let server = Server::bind("127.0.0.1:0", identity, service, ServerOptions::default())
        .context("starting the in-process server on 127.0.0.1")?
        .spawn()
        .context("starting the accept thread")?;
    let addr = server.local_addr().to_string();
    let mut options = ClientOptions::new(dir.path().join("known_servers"));
    options.pinned = Some(fingerprint);
    let clients = (0..args.threads)
        .map(|_| Client::connect(&addr, &options).with_context(|| format!("connecting to {addr}")))
        .collect::<anyhow::Result<Vec<Client>>>()?;

    let phase = AtomicU8::new(WARMUP);
    let completed = AtomicU64::new(0);
    let (window, results) = std::thread::scope(|scope| {
        let workers: Vec<_> = clients
            .into_iter()
            .zip(0..)
            .map(|(mut client, t)| {
                let (phase, completed) = (&phase, &completed);
                let command = login_command(user(t));
                scope.spawn(move || -> anyhow::Result<Vec<Duration>> {
                    let mut samples = Vec::new();
                    while phase.load(Ordering::Relaxed) != STOP {
                        let t = Instant::now();
                        match client.call(&command)? {
                            Reply::User { .. } => {}
                            other => bail!("unexpected reply to login: {other:?}"),
                        }
                        if phase.load(Ordering::Relaxed) == MEASURE {
                            samples.push(t.elapsed());
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    client.quit()?;
                    Ok(samples)
                })
            })
            .collect();
        std::thread::sleep(args.warmup);
        let t0 = Instant::now();
        phase.store(MEASURE, Ordering::Relaxed);
        std::thread::sleep(args.seconds);
        phase.store(STOP, Ordering::Relaxed);
        let window = t0.elapsed();
        let results: Vec<anyhow::Result<Vec<Duration>>> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
            })
            .collect();
        (window, results)
    });
    server.shutdown();
    let mut all = Vec::new();
    for r in results {
        all.extend(r.context("a login failed")?);
    }
    let completed = completed.load(Ordering::Relaxed);
    Ok(LoginReport {
        bench: "login",
        machine: Machine::get(),
        threads: args.threads,
        seconds: window.as_secs_f64(),
        argon2_m_kib: params.m_cost_kib,
        argon2_t: params.t_cost,
        argon2_p: params.p_cost,
        logins_per_s: completed as f64 / window.as_secs_f64(),
        completed,
        latency: Latency::from_samples(&mut all),
    })
}

impl Report for LoginReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench login: {} client threads for {:.2} s against an in-process blocking \
             server on 127.0.0.1 ({} CPUs)",
            self.threads, self.seconds, self.machine.cpus
        );
        let _ = writeln!(
            s,
            "argon2id m={} KiB t={} p={}: {:.1} logins/s, {} completed",
            self.argon2_m_kib, self.argon2_t, self.argon2_p, self.logins_per_s, self.completed
        );
        let l = &self.latency;
        let _ = writeln!(
            s,
            "login round trip (ms): min {:.2} mean {:.2} p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            l.min_us / 1e3,
            l.mean_us / 1e3,
            l.p50_us / 1e3,
            l.p90_us / 1e3,
            l.p99_us / 1e3,
            l.max_us / 1e3
        );
        s
    }
}
