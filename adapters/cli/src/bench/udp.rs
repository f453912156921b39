//! `vserv bench udp`: one command over sealed UDP datagrams (spec/datagrams.md) against the
//! same command over one TCP session, side by side in one run, against an in-process
//! blocking server answering both (its UDP rate limit lifted for the run). Requests are sent
//! one at a time; each sample is one request's round trip. The server holds a query table
//! `bench` open to anyone (`--table-rows` rows `kNNNNNNNN,v...`), so `--command query`
//! measures `query bench KEY` (by default the middle row's key).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use vserv_blocking::{Client, Server, ServerOptions};
use vserv_core::commands::Command;
use vserv_core::datagram::RateSettings;
use vserv_core::{Request, ServerIdentity};
use vserv_service::client::ClientOptions;
use vserv_service::client::datagram::DatagramClient;
use vserv_service::datagram::DatagramSettings;
use vserv_service::tables::{MemoryFiles, TableAccess, TableConfig, TablesSettings};
use vserv_service::{Node, NodeSettings};

use super::stats::Latency;
use super::{Machine, Report};

/// `vserv bench udp` options.
#[derive(Args, Debug)]
pub struct UdpArgs {
    /// Measured requests on each transport.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub count: u32,
    /// Unmeasured requests first, on each transport.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub warmup: u32,
    /// The command measured (it must be served over UDP).
    #[arg(long, default_value = "ping")]
    pub command: String,
    /// Its arguments, in order (default for ping: 16 bytes of payload; for query: `bench`
    /// and the middle row's key).
    #[arg(long = "arg", value_name = "ARG")]
    pub args: Vec<String>,
    /// Rows of the in-memory query table `bench` the server holds (about 75 bytes each,
    /// within the tables' 64 MiB file limit).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=500_000))]
    pub table_rows: u32,
}

/// The key of row `i` of the `bench` table.
fn row_key(i: u32) -> String {
    format!("k{i:08}")
}

/// The `bench` table's CSV: a header, then `rows` rows of a key and a 64-byte value.
fn table_csv(rows: u32) -> Vec<u8> {
    let mut csv = String::from("key,value\n");
    for i in 0..rows {
        csv.push_str(&row_key(i));
        csv.push(',');
        csv.push_str(&format!("{i:064}"));
        csv.push('\n');
    }
    csv.into_bytes()
}

/// One transport's figures.
#[derive(Serialize, Debug)]
pub struct TransportFigures {
    /// Requests answered per second, one at a time.
    pub requests_per_s: f64,
    /// Round-trip latency of one request.
    pub latency: Latency,
}

/// The `vserv bench udp` report.
#[derive(Serialize, Debug)]
pub struct UdpReport {
    machine: Machine,
    command: String,
    request_bytes: usize,
    warmup: u32,
    udp: TransportFigures,
    tcp: TransportFigures,
}

fn measure(
    count: u32,
    warmup: u32,
    mut once: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<TransportFigures> {
    for _ in 0..warmup {
        once()?;
    }
    let mut samples = Vec::with_capacity(count as usize);
    let start = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        once()?;
        samples.push(t.elapsed());
    }
    let elapsed = start.elapsed().max(Duration::from_nanos(1));
    Ok(TransportFigures {
        requests_per_s: f64::from(count) / elapsed.as_secs_f64(),
        latency: Latency::from_samples(&mut samples),
    })
}

/// Runs the benchmark.
pub fn run(args: &UdpArgs) -> anyhow::Result<UdpReport> {
    let wire_args: Vec<Vec<u8>> = if args.args.is_empty() && args.command == "ping" {
        vec![vec![b'x'; 16]]
    } else if args.args.is_empty() && args.command == "query" {
        vec![b"bench".to_vec(), row_key(args.table_rows / 2).into_bytes()]
    } else {
        args.args.iter().map(|a| a.clone().into_bytes()).collect()
    };
    let request = Request {
        id: 1,
        name: args.command.clone(),
        args: wire_args.clone(),
    };
    let command = Command::parse(&request).map_err(|e| anyhow::anyhow!("{}", e.message))?;

    let mut rng = vserv_service::system::os_rng()?;
    let identity = Arc::new(ServerIdentity::generate(&mut *rng));
    let settings = DatagramSettings {
        rate: RateSettings {
            per_second: u32::MAX,
            burst: u32::MAX,
            max_addresses: 16,
        },
        ..DatagramSettings::default()
    };
    let files = Arc::new(MemoryFiles::new());
    files.put("/bench.csv", table_csv(args.table_rows));
    let node_settings = NodeSettings {
        tables: TablesSettings {
            tables: vec![TableConfig {
                access: TableAccess::Anyone,
                ..TableConfig::new("bench", "/bench.csv")
            }],
            ..TablesSettings::default()
        },
        ..super::node_settings()
    };
    let service = Node::builder(identity.clone(), node_settings)
        .table_source(files)
        .build()
        .context("assembling the in-process server")?
        .service()
        .with_datagrams(&identity, settings);
    let udp_socket =
        std::net::UdpSocket::bind("127.0.0.1:0").context("binding UDP on 127.0.0.1")?;
    let pool = Arc::new(vserv_blocking::WorkPool::default());
    let udp = vserv_blocking::spawn_udp(udp_socket, service.clone(), pool)?;
    let server = Server::bind(
        "127.0.0.1:0",
        identity.clone(),
        service,
        ServerOptions::default(),
    )
    .context("starting the in-process server on 127.0.0.1")?
    .spawn()
    .context("starting the accept thread")?;

    let mut datagrams = DatagramClient::new(udp.local_addr(), identity.public_key(), rng)?;
    let udp_figures = measure(args.count, args.warmup, || {
        let response = datagrams.request(&request.name, wire_args.clone())?;
        if let Err(e) = response.result {
            bail!("the server refused {} over UDP: {e}", request.name);
        }
        Ok(())
    })?;

    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let mut options = ClientOptions::new(dir.path().join("known_servers"));
    options.pinned = Some(identity.public_key().fingerprint());
    let mut client = Client::connect(&server.local_addr().to_string(), &options)
        .context("connecting over TCP")?;
    let tcp_figures = measure(args.count, args.warmup, || {
        client.call(&command)?;
        Ok(())
    })?;
    let _ = client.quit();
    server.shutdown();
    udp.shutdown();
    Ok(UdpReport {
        machine: Machine::get(),
        command: args.command.clone(),
        request_bytes: request.encoded_len(),
        warmup: args.warmup,
        udp: udp_figures,
        tcp: tcp_figures,
    })
}

impl Report for UdpReport {
    fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vserv bench udp: `{}` ({} B request), {} one at a time per transport (after {} warm-up), in-process blocking server",
            self.command, self.request_bytes, self.udp.latency.samples, self.warmup
        );
        let _ = writeln!(
            s,
            "{:<22} {:>12} {:>10} {:>10} {:>10}",
            "transport", "requests/s", "p50 µs", "p99 µs", "max µs"
        );
        for (name, f) in [
            ("sealed UDP datagram", &self.udp),
            ("TCP, one session", &self.tcp),
        ] {
            let _ = writeln!(
                s,
                "{:<22} {:>12.0} {:>10.1} {:>10.1} {:>10.1}",
                name, f.requests_per_s, f.latency.p50_us, f.latency.p99_us, f.latency.max_us
            );
        }
        s
    }
}
