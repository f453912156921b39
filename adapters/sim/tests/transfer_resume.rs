//! Uploads over links that reset at random points (issue 5): the client reconnects and
//! resumes with `fopen ... resume` from the offset the server verified, and the stored file
//! ends up identical (same SHA-256) to what was sent, however often the connection died.
//!
//! Every failure names its seed; `VSERV_SIM_SEED=<seed>` replays exactly that run.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use vserv_core::commands::{Command, Credential, Reply, SecretBytes, UserRole};
use vserv_core::transfer::{FdoneArgs, FileHasher, FopenArgs, MAX_FPUT_DATA};
use vserv_core::{Config, ServerIdentity};
use vserv_service::accounts::UserName;
use vserv_service::client::ClientOptions;
use vserv_service::files::UserPath;
use vserv_service::{Node, NodeSettings};
use vserv_sim::{LinkConfig, LinkSpec, ServerSpec, SimServer, for_each_seed, seeds};

const PASSWORD: &[u8] = b"alice-password-1";
/// More reconnections than this without finishing is a failure (a resume that never
/// progresses).
const MAX_ATTEMPTS: usize = 400;

fn sha(data: &[u8]) -> [u8; 32] {
    let mut h = FileHasher::new();
    h.update(data);
    h.finish()
}

/// One upload of random size through resetting links; returns how many connections resumed
/// from a non-zero offset the server had verified.
fn upload_through_resets(seed: u64) -> Result<usize, String> {
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
    let tree = node.files().clone();
    let spec = ServerSpec {
        identity,
        service: node.service(),
        max_connections: 8,
        config: Config::default(),
    };
    // A reset per 100 chunks of at most 4 KiB: a connection carries ~200 KiB on average.
    let link = LinkSpec::symmetric(LinkConfig::benign(4096).with_reset(0.01));
    let server = SimServer::start(seed, spec, link);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let options = ClientOptions::new(dir.path().join("known_servers"));

    let size = rng.random_range(1..40 * MAX_FPUT_DATA);
    let data: Vec<u8> = (0..size).map(|_| rng.random()).collect();
    let login = Command::Login {
        user: "alice".into(),
        credential: Credential::Password(SecretBytes::new(PASSWORD.to_vec())),
    };
    let mut resumes = 0;
    for attempt in 1..=MAX_ATTEMPTS {
        let Ok(mut client) = server.connect(&options) else {
            continue;
        };
        if client.call(&login).is_err() {
            continue;
        }
        let fopen = Command::Fopen(FopenArgs {
            path: "up.bin".into(),
            size: size as u64,
            resume: true,
        });
        let Ok(Reply::Opened(open)) = client.call(&fopen) else {
            continue;
        };
        let mut offset = usize::try_from(open.offset).map_err(|e| e.to_string())?;
        if offset > 0 {
            resumes += 1;
        }
        if offset > size || open.prefix_sha256 != sha(&data[..offset]) {
            return Err(format!(
                "attempt {attempt}: the server resumes at {offset} with a prefix hash that is \
                 not the sent data's"
            ));
        }
        let mut broken = false;
        while offset < size {
            let end = (offset + MAX_FPUT_DATA).min(size);
            let fput = Command::Fput {
                id: open.id,
                offset: offset as u64,
                data: data[offset..end].to_vec(),
            };
            if client.call(&fput).is_err() {
                broken = true;
                break;
            }
            offset = end;
        }
        if broken {
            continue;
        }
        let fdone = Command::Fdone(FdoneArgs {
            id: open.id,
            sha256: sha(&data),
        });
        match client.call(&fdone) {
            Ok(Reply::Uploaded(done)) => {
                if done.sha256 != sha(&data) || done.size != size as u64 {
                    return Err(format!("fdone reported {done:?}"));
                }
                client.close();
                let owner = UserName::parse("alice").map_err(|e| e.to_string())?;
                let path =
                    UserPath::from_names(vec!["up.bin".into()]).map_err(|e| e.to_string())?;
                let stored = tree.read_file(&owner, &path).map_err(|e| e.to_string())?;
                if sha(&stored) != sha(&data) {
                    return Err("the stored file differs from the sent one".into());
                }
                server.shutdown().map_err(|v| v.to_string())?;
                return Ok(resumes);
            }
            Ok(other) => return Err(format!("fdone answered {other:?}")),
            Err(_) => continue,
        }
    }
    Err(format!("no complete upload in {MAX_ATTEMPTS} connections"))
}

#[test]
fn uploads_resume_after_resets_at_random_points_and_store_identical_bytes() {
    let mut resumed = 0;
    let count = seeds(0..24).expect("VSERV_SIM_SEED").len();
    for_each_seed(0..24, |seed| {
        if upload_through_resets(seed)? > 0 {
            resumed += 1;
        }
        Ok::<(), String>(())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // The links must actually have cut uploads short and the server resumed them, or this
    // test shows nothing.
    assert!(
        count == 1 || resumed * 2 >= count,
        "only {resumed} of {count} uploads resumed from a verified offset"
    );
}
