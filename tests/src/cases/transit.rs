//! Transit keys end to end over every runtime (spec/transit.md): keys made, listed, rotated
//! and deleted; data sealed and unsealed, old versions still opening after a rotation,
//! tokens rewrapped to the newest version, versions retired by `tkey min` (by the owner or an
//! admin, never by another user); every bad token (another key's, another user's, an unknown
//! or retired version, forged, truncated) answered with its own error while the session
//! keeps serving; `gk` handing out fresh bytes.

use vserv_core::commands::{Command, GK_MAX_BYTES, Reply, TkeyAction};
use vserv_core::transit::{MAX_SEAL_DATA, Token};
use vserv_core::{ErrorCode, ErrorReply};

use crate::{
    ClientError, Fixture, Runtime, TestClient, code_of, done, logged_in, root_client, secret,
};

fn tkey<C: TestClient>(c: &mut C, action: TkeyAction) -> Result<Reply, ClientError> {
    c.call(&Command::Tkey(action))
}

fn sealed<C: TestClient>(c: &mut C, name: &str, data: &[u8]) -> String {
    match c.call(&Command::Seal {
        name: name.into(),
        data: data.to_vec(),
    }) {
        Ok(Reply::Token(t)) => t,
        other => panic!("seal: {other:?}"),
    }
}

fn unseal<C: TestClient>(c: &mut C, name: &str, token: &str) -> Result<Reply, ClientError> {
    c.call(&Command::Unseal {
        name: name.into(),
        token: token.as_bytes().to_vec(),
    })
}

fn rewrap<C: TestClient>(c: &mut C, name: &str, token: &str) -> Result<Reply, ClientError> {
    c.call(&Command::Rewrap {
        name: name.into(),
        token: token.as_bytes().to_vec(),
    })
}

/// Root adds `alice` and `bob`; both log in.
fn two_users<R: Runtime>(server: &R::Server, fx: &Fixture) -> (R::Client, R::Client, R::Client) {
    let mut root = root_client::<R>(server, fx);
    for user in ["alice", "bob"] {
        done(
            &mut root,
            Command::Uadd {
                user: user.into(),
                password: secret(&format!("{user}-password")),
            },
        );
    }
    let alice = logged_in::<R>(server, fx, "alice", "alice-password");
    let bob = logged_in::<R>(server, fx, "bob", "bob-password");
    (root, alice, bob)
}

/// New, seal, unseal, rotate, old tokens still open, rewrap, list, delete; the largest
/// seal fits; `gk`.
pub fn transit_seal_rotate_rewrap<R: Runtime>() {
    let fx = Fixture::new(71);
    let server = crate::start::<R>(&fx);
    let (_root, mut alice, _bob) = two_users::<R>(&server, &fx);
    assert_eq!(
        tkey(&mut alice, TkeyAction::New("payroll".into())).ok(),
        Some(Reply::KeyVersion(1))
    );
    let t1 = sealed(&mut alice, "payroll", b"salary");
    assert!(t1.starts_with("vserv:v1:payroll:1:"), "{t1}");
    assert_eq!(
        unseal(&mut alice, "payroll", &t1).ok(),
        Some(Reply::Unsealed(b"salary".to_vec()))
    );
    assert_eq!(
        tkey(&mut alice, TkeyAction::Rotate("payroll".into())).ok(),
        Some(Reply::KeyVersion(2))
    );
    let t2 = sealed(&mut alice, "payroll", b"bonus");
    assert!(t2.starts_with("vserv:v1:payroll:2:"), "{t2}");
    assert_eq!(
        unseal(&mut alice, "payroll", &t1).ok(),
        Some(Reply::Unsealed(b"salary".to_vec()))
    );
    let Ok(Reply::Token(moved)) = rewrap(&mut alice, "payroll", &t1) else {
        panic!("rewrap");
    };
    assert!(moved.starts_with("vserv:v1:payroll:2:"), "{moved}");
    assert_eq!(
        unseal(&mut alice, "payroll", &moved).ok(),
        Some(Reply::Unsealed(b"salary".to_vec()))
    );
    // The largest seal: its token fits one unseal request.
    let big = vec![0xa5; MAX_SEAL_DATA];
    let t_big = sealed(&mut alice, "payroll", &big);
    assert_eq!(
        unseal(&mut alice, "payroll", &t_big).ok(),
        Some(Reply::Unsealed(big))
    );
    assert_eq!(
        code_of(alice.call(&Command::Seal {
            name: "payroll".into(),
            data: vec![0; MAX_SEAL_DATA + 1],
        })),
        Some(ErrorCode::TooLarge)
    );
    let Ok(Reply::TransitKeys(list)) = tkey(&mut alice, TkeyAction::List) else {
        panic!("tkey list");
    };
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].latest, list[0].min_version), (2, 1));
    // gk: fresh bytes, bounded.
    let gk = |c: &mut R::Client, bytes| match c.call(&Command::Gk { bytes }) {
        Ok(Reply::KeyMaterial(b)) => b,
        other => panic!("gk: {other:?}"),
    };
    let (a, b) = (gk(&mut alice, None), gk(&mut alice, None));
    assert_eq!(a.len(), 32);
    assert_ne!(a, b);
    assert_eq!(
        gk(&mut alice, Some(GK_MAX_BYTES)).len(),
        GK_MAX_BYTES as usize
    );
    // Deleted: the key and its tokens are gone.
    done(&mut alice, Command::Tkey(TkeyAction::Del("payroll".into())));
    assert_eq!(
        code_of(unseal(&mut alice, "payroll", &t2)),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        tkey(&mut alice, TkeyAction::List).ok(),
        Some(Reply::TransitKeys(Vec::new()))
    );
}

/// Every bad token gets its own error and the session keeps serving; users reach only
/// their own keys; `min` by the owner and by an admin, never by another user.
pub fn transit_refusals_and_retirement<R: Runtime>() {
    let fx = Fixture::new(72);
    let server = crate::start::<R>(&fx);
    let (mut root, mut alice, mut bob) = two_users::<R>(&server, &fx);
    for name in ["k", "other"] {
        assert!(tkey(&mut alice, TkeyAction::New(name.into())).is_ok());
    }
    assert!(tkey(&mut bob, TkeyAction::New("k".into())).is_ok());
    assert_eq!(
        code_of(tkey(&mut alice, TkeyAction::New("k".into()))),
        Some(ErrorCode::Conflict)
    );
    let token = sealed(&mut alice, "k", b"data");
    // Another key's token; another user's key of the same name; a user without the key.
    assert_eq!(
        code_of(unseal(&mut alice, "other", &token)),
        Some(ErrorCode::BadArguments)
    );
    assert_eq!(
        code_of(unseal(&mut bob, "k", &token)),
        Some(ErrorCode::Integrity)
    );
    assert_eq!(
        code_of(unseal(&mut root, "k", &token)),
        Some(ErrorCode::NotFound)
    );
    // An unknown version; a forged and a truncated token.
    let mut t = Token::parse(token.as_bytes()).expect("token");
    t.version = 5;
    assert_eq!(
        code_of(unseal(&mut alice, "k", &t.encode())),
        Some(ErrorCode::NotFound)
    );
    let mut forged = Token::parse(token.as_bytes()).expect("token");
    forged.ciphertext[3] ^= 0x10;
    assert_eq!(
        code_of(unseal(&mut alice, "k", &forged.encode())),
        Some(ErrorCode::Integrity)
    );
    assert_eq!(
        code_of(rewrap(&mut alice, "k", &token[..token.len() - 5])),
        Some(ErrorCode::BadArguments)
    );
    assert_eq!(
        code_of(alice.call(&Command::Seal {
            name: "nope".into(),
            data: Vec::new(),
        })),
        Some(ErrorCode::NotFound)
    );
    // Retirement: alice rotates and retires version 1 herself.
    assert!(tkey(&mut alice, TkeyAction::Rotate("k".into())).is_ok());
    let min = |user: &str, version| {
        Command::Tkey(TkeyAction::Min {
            user: user.into(),
            name: "k".into(),
            version,
        })
    };
    done(&mut alice, min("alice", 2));
    assert_eq!(
        code_of(unseal(&mut alice, "k", &token)),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code_of(rewrap(&mut alice, "k", &token)),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code_of(alice.call(&min("alice", 3))),
        Some(ErrorCode::BadArguments)
    );
    // Bob may not touch alice's key; an admin may.
    assert_eq!(
        code_of(bob.call(&min("alice", 1))),
        Some(ErrorCode::Forbidden)
    );
    done(&mut root, min("alice", 1));
    assert_eq!(
        unseal(&mut alice, "k", &token).ok(),
        Some(Reply::Unsealed(b"data".to_vec()))
    );
    assert_eq!(
        code_of(root.call(&min("nobody", 1))),
        Some(ErrorCode::NotFound)
    );
    // The session still serves after all of that.
    assert!(
        matches!(alice.call(&Command::Gk { bytes: Some(16) }), Ok(Reply::KeyMaterial(b)) if b.len() == 16)
    );
    // Anonymous sessions cannot use transit at all.
    let mut anon = R::connect(&server, &fx.options()).expect("connect");
    assert!(matches!(
        anon.call(&Command::Gk { bytes: None }),
        Err(ClientError::Server(ErrorReply {
            code: ErrorCode::Forbidden,
            ..
        }))
    ));
}
