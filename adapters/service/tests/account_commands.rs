//! The account commands' wire behaviour as protocol.md §13.1 states it: `uini`'s error codes,
//! the `ulist` filter, and the form of `ukey` fingerprints.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use rand::SeedableRng;
use vserv_core::commands::UserRole;
use vserv_core::{ErrorCode, Request, ServerIdentity};
use vserv_service::{Service, Session};

use common::sha;

fn service() -> Service {
    common::node("accounts", 3).build().expect("node").service()
}

/// Sends `name args...` and returns the reply's fields or its error code.
fn call(
    service: &Service,
    session: &mut Session,
    name: &str,
    args: &[&[u8]],
) -> Result<Vec<Vec<u8>>, ErrorCode> {
    let request = Request {
        id: 1,
        name: name.into(),
        args: args.iter().map(|a| a.to_vec()).collect(),
    };
    let (response, _) = service.answer(session, &request, 1_000);
    response.result.map_err(|e| e.code)
}

fn loopback() -> Session {
    Session::new(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))
}

#[test]
fn uini_codes_follow_the_spec_order() {
    let svc = service();
    let remote = || Session::new(Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    // Not from loopback: 3, even with a bad password.
    assert_eq!(
        call(&svc, &mut remote(), "uini", &[b"root", b"short"]),
        Err(ErrorCode::Forbidden)
    );
    // A password under 8 bytes, or a bad name: 2.
    assert_eq!(
        call(&svc, &mut loopback(), "uini", &[b"root", b"short"]),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        call(&svc, &mut loopback(), "uini", &[b"-root", b"password-1"]),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        call(&svc, &mut loopback(), "uini", &[b"root", b"password-1"]),
        Ok(vec![])
    );
    // Once a user exists: 3, whatever the password.
    assert_eq!(
        call(&svc, &mut loopback(), "uini", &[b"other", b"short"]),
        Err(ErrorCode::Forbidden)
    );
}

#[test]
fn ulist_filters_by_case_insensitive_substring() {
    let svc = service();
    for name in ["root", "alice", "malik", "bob"] {
        let role = if name == "root" {
            UserRole::Admin
        } else {
            UserRole::User
        };
        svc.accounts()
            .create(name, role, b"password-1", 0)
            .expect("user");
    }
    let mut root = common::logged_in(&svc, "root");
    let names = |filter: Option<&[u8]>, root: &mut Session| -> Vec<String> {
        let args: Vec<&[u8]> = filter.into_iter().collect();
        call(&svc, root, "ulist", &args)
            .expect("ulist")
            .into_iter()
            .map(|f| {
                let line = String::from_utf8(f).expect("utf-8");
                line.split(' ').next().expect("name").to_owned()
            })
            .collect()
    };
    assert_eq!(names(None, &mut root), ["alice", "bob", "malik", "root"]);
    assert_eq!(
        names(Some(b""), &mut root),
        ["alice", "bob", "malik", "root"]
    );
    assert_eq!(names(Some(b"LI"), &mut root), ["alice", "malik"]);
    assert_eq!(names(Some(b"zz"), &mut root), Vec::<String>::new());
    assert_eq!(
        call(&svc, &mut root, "ulist", &[b"\xff"]),
        Err(ErrorCode::BadArguments)
    );
}

#[test]
fn ukey_fingerprints_are_sha256_of_the_compressed_key() {
    let svc = service();
    svc.accounts()
        .create("alice", UserRole::User, b"password-1", 0)
        .expect("user");
    let mut alice = common::logged_in(&svc, "alice");
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let keys: Vec<[u8; 33]> = (0..2)
        .map(|_| *ServerIdentity::generate(&mut rng).public_key().as_bytes())
        .collect();
    for key in &keys {
        assert_eq!(call(&svc, &mut alice, "ukey", &[b"add", key]), Ok(vec![]));
    }
    let listed = call(&svc, &mut alice, "ukey", &[b"list"]).expect("list");
    let expected: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| format!("SHA256:{}", hex::encode(sha(k))).into_bytes())
        .collect();
    assert_eq!(listed, expected, "in the order added, lower-case hex");
    // Errors: a key again 7, not 33 bytes 2, a malformed fingerprint 2, an unknown one 6.
    assert_eq!(
        call(&svc, &mut alice, "ukey", &[b"add", &keys[0]]),
        Err(ErrorCode::Conflict)
    );
    assert_eq!(
        call(&svc, &mut alice, "ukey", &[b"add", &keys[0][..32]]),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        call(&svc, &mut alice, "ukey", &[b"del", b"SHA256:xyz"]),
        Err(ErrorCode::BadArguments)
    );
    let unknown = format!("SHA256:{}", "0".repeat(64));
    assert_eq!(
        call(&svc, &mut alice, "ukey", &[b"del", unknown.as_bytes()]),
        Err(ErrorCode::NotFound)
    );
    // Upper-case digits without the prefix name the same key.
    let bare = hex::encode_upper(sha(&keys[0]));
    assert_eq!(
        call(&svc, &mut alice, "ukey", &[b"del", bare.as_bytes()]),
        Ok(vec![])
    );
    assert_eq!(
        call(&svc, &mut alice, "ukey", &[b"list"]),
        Ok(vec![expected[1].clone()])
    );
}
