//! The sim client's file transfers (the client's transfer scheduler driven by the world):
//! several files up and down through links that reset at random points, each transfer
//! resumed on a new connection until it succeeds, the results byte for byte what was sent;
//! the same seed giving the same trace, client file work included; and a client file work
//! held in the schedule failing its transfer once nothing else can happen, not hanging.
//!
//! Every failure names its seed; `VSERV_SIM_SEED=<seed>` replays exactly that run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vserv_core::commands::{Command, Credential, SecretBytes, UserRole};
use vserv_core::transfer::MAX_FPUT_DATA;
use vserv_core::{Config, ServerIdentity};
use vserv_service::client::ClientOptions;
use vserv_service::client::transfers::{Download, TransferFailure, TransferOptions, Upload};
use vserv_service::{Node, NodeSettings};
use vserv_sim::{CLIENT_FILES_WORK, LinkConfig, LinkSpec, ServerSpec, SimServer, for_each_seed};

const PASSWORD: &[u8] = b"alice-password-1";
/// More connections than this for one batch is a failure (a resume that never progresses).
const MAX_ATTEMPTS: usize = 200;

fn login() -> Command {
    Command::Login {
        user: "alice".into(),
        credential: Credential::Password(SecretBytes::new(PASSWORD.to_vec())),
    }
}

/// A sim server whose user `alice` exists, over links built from `link`.
fn server(seed: u64, link: LinkSpec) -> Result<SimServer, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let identity = Arc::new(ServerIdentity::generate(&mut rng));
    let node = Node::in_memory(
        identity.clone(),
        NodeSettings::insecure_fast("sim"),
        Box::new(StdRng::seed_from_u64(seed)),
    )
    .map_err(|e| e.to_string())?;
    node.accounts()
        .create("alice", UserRole::User, PASSWORD, 0)
        .map_err(|e| e.to_string())?;
    let spec = ServerSpec {
        identity,
        service: node.service(),
        max_connections: 8,
        config: Config::default(),
    };
    Ok(SimServer::start(seed, spec, link))
}

fn resume(resume: bool) -> TransferOptions {
    TransferOptions {
        resume,
        window: 8,
        overwrite: false,
    }
}

/// Uploads then downloads `count` random files through `server`, reconnecting and resuming
/// (`resume`) each batch until every file of it succeeded. Returns the sources and the
/// local copies' paths, and how many transfers continued from a non-zero offset.
fn round_trip(
    server: &SimServer,
    rng: &mut StdRng,
    options: &ClientOptions,
    count: usize,
) -> Result<(Vec<(PathBuf, PathBuf)>, usize), String> {
    let files = server.client_files();
    let mut uploads = Vec::new();
    let mut downloads = Vec::new();
    let mut pairs = Vec::new();
    for i in 0..count {
        let size = rng.random_range(0..12 * MAX_FPUT_DATA);
        let data: Vec<u8> = (0..size).map(|_| rng.random()).collect();
        let (src, dst) = (
            PathBuf::from(format!("/src/{i}")),
            PathBuf::from(format!("/dst/{i}")),
        );
        files.insert(src.clone(), data);
        uploads.push(Upload {
            local: src.clone(),
            remote: format!("f{i}"),
        });
        downloads.push(Download {
            remote: format!("f{i}"),
            local: dst.clone(),
        });
        pairs.push((src, dst));
    }
    let mut up_left: Vec<Upload> = uploads;
    let mut down_left: Vec<Download> = downloads;
    let mut resumed = 0;
    for attempt in 0..MAX_ATTEMPTS {
        if up_left.is_empty() && down_left.is_empty() {
            return Ok((pairs, resumed));
        }
        let Ok(mut client) = server.connect(options) else {
            continue;
        };
        if client.call(&login()).is_err() {
            continue;
        }
        let again = attempt > 0;
        if !up_left.is_empty() {
            let results = client.put_many(&up_left, &resume(again), 2, &mut |_, _, _| {});
            resumed += count_resumed(&results);
            up_left = keep_failed(up_left, &results);
        }
        if up_left.is_empty() && !down_left.is_empty() {
            let results = client.get_many(&down_left, &resume(again), 2, &mut |_, _, _| {});
            resumed += count_resumed(&results);
            down_left = keep_failed(down_left, &results);
        }
    }
    Err(format!(
        "{} uploads and {} downloads still unfinished after {MAX_ATTEMPTS} connections",
        up_left.len(),
        down_left.len()
    ))
}

fn count_resumed(results: &[vserv_service::client::transfers::FileResult]) -> usize {
    results
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|o| o.resumed_from > 0))
        .count()
}

fn keep_failed<T>(
    items: Vec<T>,
    results: &[vserv_service::client::transfers::FileResult],
) -> Vec<T> {
    items
        .into_iter()
        .zip(results)
        .filter(|(_, r)| r.is_err())
        .map(|(item, _)| item)
        .collect()
}

fn same_bytes(server: &SimServer, pairs: &[(PathBuf, PathBuf)]) -> Result<(), String> {
    let files = server.client_files();
    for (src, dst) in pairs {
        let read = |p: &Path| files.read(p).ok_or(format!("{} is missing", p.display()));
        if read(src)? != read(dst)? {
            return Err(format!("{} differs from {}", dst.display(), src.display()));
        }
    }
    Ok(())
}

#[test]
fn files_go_up_and_down_through_resetting_links_resumed_until_whole() {
    let mut resumed = 0;
    let checked = for_each_seed(0..8, |seed| {
        // A reset per 200 chunks of at most 8 KiB: a connection carries ~800 KiB on average.
        let link = LinkSpec::symmetric(LinkConfig::benign(8192).with_reset(0.005));
        let server = server(seed, link)?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let options = ClientOptions::new(dir.path().join("known_servers"));
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let (pairs, n) = round_trip(&server, &mut rng, &options, 3)?;
        same_bytes(&server, &pairs)?;
        resumed += n;
        let world = server.world().borrow();
        if !world.violations().is_empty() {
            return Err(world.violations().join("; "));
        }
        Ok::<(), String>(())
    });
    if let Err(failure) = checked {
        panic!("{failure}");
    }
    if vserv_sim::env_seed().ok().flatten().is_none() {
        assert!(
            resumed > 0,
            "no transfer ever resumed from a non-zero offset"
        );
    }
    eprintln!("transfers resumed from a non-zero offset: {resumed}");
}

#[test]
fn the_same_seed_gives_the_same_trace_with_client_file_work() {
    let run = |seed: u64| -> Result<Vec<String>, String> {
        let server = server(seed, LinkSpec::symmetric(LinkConfig::benign(4096)))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let options = ClientOptions::new(dir.path().join("known_servers"));
        let mut rng = StdRng::seed_from_u64(seed);
        let (pairs, _) = round_trip(&server, &mut rng, &options, 2)?;
        same_bytes(&server, &pairs)?;
        let trace = server.world().borrow().trace().to_vec();
        Ok(trace)
    };
    let checked = for_each_seed([11], |seed| {
        let (a, b) = (run(seed)?, run(seed)?);
        if !a.iter().any(|l| l.contains(CLIENT_FILES_WORK)) {
            return Err("no client file work in the trace".to_owned());
        }
        if a != b {
            let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
            return Err(format!("the traces differ from line {at}"));
        }
        Ok::<(), String>(())
    });
    if let Err(failure) = checked {
        panic!("{failure}");
    }
}

#[test]
fn client_file_work_the_world_never_runs_fails_its_transfer_instead_of_hanging() {
    let checked = for_each_seed([21], |seed| {
        let server = server(seed, LinkSpec::symmetric(LinkConfig::benign(4096)))?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let options = ClientOptions::new(dir.path().join("known_servers"));
        let src = PathBuf::from("/src/held");
        server.client_files().insert(src.clone(), vec![5u8; 1000]);
        let upload = Upload {
            local: src.clone(),
            remote: "held.bin".into(),
        };
        let mut client = server.connect(&options).map_err(|e| e.to_string())?;
        client.call(&login()).map_err(|e| e.to_string())?;
        server.world().borrow_mut().hold_work(CLIENT_FILES_WORK);
        let held = client.put_with(&src, "held.bin", &resume(false), &mut |_, _| {});
        match held {
            Err(TransferFailure::Local { path, .. }) if path == src => {}
            other => return Err(format!("a held work did not fail the upload: {other:?}")),
        }
        if server.world().borrow().pending_work(CLIENT_FILES_WORK) != 1 {
            return Err("the held work is not in the schedule".to_owned());
        }
        // Released, the work runs (its result goes nowhere) and new transfers work.
        server.world().borrow_mut().release_work(CLIENT_FILES_WORK);
        let mut client = server.connect(&options).map_err(|e| e.to_string())?;
        client.call(&login()).map_err(|e| e.to_string())?;
        let results = client.put_many(&[upload], &resume(false), 1, &mut |_, _, _| {});
        match results.as_slice() {
            [Ok(out)] if out.size == 1000 => Ok::<(), String>(()),
            other => Err(format!("the upload after the release failed: {other:?}")),
        }
    });
    if let Err(failure) = checked {
        panic!("{failure}");
    }
}
