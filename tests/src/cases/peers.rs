//! Cases: replication peers managed over the protocol by an admin (`padd`, `pdel`, `peers`;
//! spec/replication.md §2.2) on a replicating node with no configured peer: an added peer
//! is listed as added at runtime, changes of its address show, every refusal is typed, and
//! only an admin may do any of it.

use vserv_core::commands::{Command, PeerSource, Reply};
use vserv_core::{ErrorCode, Fingerprint};
use vserv_service::NodeSettings;

use crate::clients::*;
use crate::fixture::*;
use crate::{Fixture, Runtime, TestClient};

/// `peers`' (fingerprint, address, source) of every peer.
fn listed<C: TestClient>(client: &mut C) -> Vec<(Fingerprint, Option<String>, PeerSource)> {
    match client.call(&Command::Peers) {
        Ok(Reply::Peers { peers, .. }) => peers
            .into_iter()
            .map(|p| (p.fingerprint, p.address, p.source))
            .collect(),
        other => panic!("peers gave {other:?}"),
    }
}

/// An admin adds, changes and removes a peer; users cannot; refusals are typed.
pub fn peers_are_managed_over_the_protocol<R: Runtime>() {
    let fx = Fixture::new(61);
    let service = fx
        .node(NodeSettings {
            replicate: true,
            ..settings()
        })
        .build()
        .expect("node")
        .service();
    let server = R::start(
        fx.identity.clone(),
        service,
        64,
        vserv_core::Config::default(),
    );
    let (mut root, mut alice) = ledger_users::<R>(&server, &fx);
    let peer = Fingerprint([0x5a; 32]);
    assert_eq!(listed(&mut root), Vec::new());
    // Without an address: links from it are accepted, it is not dialed.
    done(
        &mut root,
        Command::Padd {
            fingerprint: peer,
            address: None,
        },
    );
    assert_eq!(listed(&mut root), vec![(peer, None, PeerSource::Runtime)]);
    // Again with an address: changed. (Nothing listens there; the dials fail quietly.)
    done(
        &mut root,
        Command::Padd {
            fingerprint: peer,
            address: Some("127.0.0.1:9".into()),
        },
    );
    assert_eq!(
        listed(&mut root),
        vec![(peer, Some("127.0.0.1:9".into()), PeerSource::Runtime)]
    );
    // Users may not.
    for cmd in [
        Command::Peers,
        Command::Padd {
            fingerprint: Fingerprint([1; 32]),
            address: None,
        },
        Command::Pdel { fingerprint: peer },
    ] {
        assert_eq!(
            code_of(alice.call(&cmd)),
            Some(ErrorCode::Forbidden),
            "{cmd:?}"
        );
    }
    // Typed refusals.
    let own = fx.identity.public_key().fingerprint();
    assert_eq!(
        code_of(root.call(&Command::Padd {
            fingerprint: own,
            address: None
        })),
        Some(ErrorCode::BadArguments)
    );
    assert_eq!(
        code_of(root.call(&Command::Pdel {
            fingerprint: Fingerprint([2; 32])
        })),
        Some(ErrorCode::NotFound)
    );
    done(&mut root, Command::Pdel { fingerprint: peer });
    assert_eq!(listed(&mut root), Vec::new());
    assert_eq!(
        code_of(root.call(&Command::Pdel { fingerprint: peer })),
        Some(ErrorCode::NotFound),
        "removed once"
    );
}
