//! Helpers shared by the service's tests: the in-memory node they serve from, a logged-in
//! session, one command through `Service::answer`, SHA-256 of some bytes, user names and
//! paths; a memory store with hooks (`hooked_store.rs`).
//!
//! Each test file compiles its own copy of this module (`mod common;`) and uses only part
//! of it, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod driven;
pub mod hooked_store;

use std::net::{IpAddr, Ipv4Addr};

use vserv_core::commands::{Command, Reply};
use vserv_core::transfer::FileHasher;
use vserv_core::{ErrorReply, Request};
use vserv_service::accounts::UserName;
use vserv_service::files::UserPath;
use vserv_service::{Node, NodeBuilder, NodeSettings, Service, Session};

/// A builder of the in-memory node named `name` (the cheapest argon2), its identity and its
/// accounts' salt drawn from `seed`; pieces (a tree on disk, a faulty store) can be chosen.
pub fn node(name: &str, seed: u64) -> NodeBuilder {
    node_with(NodeSettings::insecure_fast(name), seed)
}

/// Like [`node`] with `settings`.
pub fn node_with(settings: NodeSettings, seed: u64) -> NodeBuilder {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let identity = std::sync::Arc::new(vserv_core::ServerIdentity::generate(&mut rng));
    Node::builder(identity, settings).rng(Box::new(rng))
}

/// The SHA-256 of `data`.
pub fn sha(data: &[u8]) -> [u8; 32] {
    let mut h = FileHasher::new();
    h.update(data);
    h.finish()
}

/// The user `name` (which must be valid).
pub fn user(name: &str) -> UserName {
    UserName::parse(name).expect("user name")
}

/// The path `a/b/c` (which must be valid).
pub fn path(p: &str) -> UserPath {
    UserPath::from_names(p.split('/').map(str::to_owned).collect()).expect("path")
}

/// A session from 127.0.0.1 logged in as `user` (password `password-1`).
pub fn logged_in(service: &Service, user: &str) -> Session {
    let mut session = Session::new(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let login = Request {
        id: 1,
        name: "login".into(),
        args: vec![user.into(), b"password".to_vec(), b"password-1".to_vec()],
    };
    let (resp, _) = service.answer(&mut session, &login, 1_000);
    assert!(resp.result.is_ok(), "login {user}: {resp:?}");
    session
}

/// A session as a test holds it: answered synchronously ([`Service::answer`]), or driven
/// like a runtime drives one, with the blocking work off the test thread. A test holds a
/// handful, so the size of the direct variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum TestSession {
    Direct(Session),
    Driven(Box<driven::Driven>),
}

impl TestSession {
    /// A session logged in as `user` (password `password-1`): driven when `driven`.
    pub fn logged_in(service: &Service, user: &str, driven: bool) -> TestSession {
        if driven {
            TestSession::Driven(Box::new(driven::Driven::new(
                service,
                Some((user, b"password-1")),
            )))
        } else {
            TestSession::Direct(logged_in(service, user))
        }
    }

    /// Runs `cmd` (at `now_ms` when direct) and decodes its reply.
    pub fn run(
        &mut self,
        service: &Service,
        cmd: &Command,
        now_ms: u64,
    ) -> Result<Reply, ErrorReply> {
        match self {
            TestSession::Direct(session) => run(service, session, cmd, now_ms),
            TestSession::Driven(pair) => pair.request(service, cmd),
        }
    }
}

/// Runs `cmd` at `now_ms` and decodes its reply.
pub fn run(
    service: &Service,
    session: &mut Session,
    cmd: &Command,
    now_ms: u64,
) -> Result<Reply, ErrorReply> {
    let request = Request {
        id: 2,
        name: cmd.name().into(),
        args: cmd.args(),
    };
    let (resp, _) = service.answer(session, &request, now_ms);
    resp.result
        .map(|fields| Reply::from_fields(cmd, &fields).expect("reply decodes"))
}

/// Moves every key under each of `prefixes` from table `from` to table `to` of `store`, in
/// one batch: how the tests lay a feed out as an older build wrote it.
pub fn move_keys(
    store: &vserv_store::memory::MemoryStore,
    from: vserv_store::kv::Table,
    to: vserv_store::kv::Table,
    prefixes: &[&[u8]],
) {
    use vserv_store::kv::{Op, Store};
    let mut ops = Vec::new();
    for prefix in prefixes {
        for (key, value) in store.scan(from, prefix).unwrap() {
            ops.push(Op::Delete {
                table: from,
                key: key.clone(),
            });
            ops.push(Op::Put {
                table: to,
                key,
                value,
            });
        }
    }
    store.commit(ops).unwrap();
}
