//! Sealed messages end to end over every runtime (spec/messages.md): keys published and
//! fetched, a message sealed by the sender and opened by the recipient, listed newest first,
//! read (and marked read) and deleted; a full mailbox refuses and keeps what it holds; a
//! logged-in recipient is told at once with a Message notice.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use vserv_core::commands::{Command, MkeyAction, Notice, Reply};
use vserv_core::messages::{MessageKey, open, seal};
use vserv_core::{ErrorCode, ServerKey};

use crate::{Fixture, Runtime, TestClient, code_of, done, logged_in, root_client, secret};

/// Root adds `alice` and `bob`; both log in and publish their message keys.
fn two_users<R: Runtime>(
    server: &R::Server,
    fx: &Fixture,
) -> (R::Client, R::Client, MessageKey, MessageKey) {
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
    let mut alice = logged_in::<R>(server, fx, "alice", "alice-password");
    let mut bob = logged_in::<R>(server, fx, "bob", "bob-password");
    let ka = MessageKey::generate(&mut StdRng::seed_from_u64(1));
    let kb = MessageKey::generate(&mut StdRng::seed_from_u64(2));
    done(
        &mut alice,
        Command::Mkey(MkeyAction::Set(*ka.public().as_bytes())),
    );
    done(
        &mut bob,
        Command::Mkey(MkeyAction::Set(*kb.public().as_bytes())),
    );
    (alice, bob, ka, kb)
}

/// Alice fetches bob's key, seals `text` to it and sends it; returns the message id.
fn send_to_bob<C: TestClient>(alice: &mut C, ka: &MessageKey, text: &str, seed: u64) -> u64 {
    let key = match alice.call(&Command::Mkey(MkeyAction::Get("bob".into()))) {
        Ok(Reply::MessageKey(k)) => ServerKey::from_bytes(&k).expect("a valid key"),
        other => panic!("mkey bob: {other:?}"),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let sealed = seal(
        ka,
        "alice",
        &key,
        "bob",
        1_700_000_000,
        text.as_bytes(),
        &mut rng,
    )
    .expect("seal");
    match alice.call(&Command::Msend {
        to: "bob".into(),
        sealed: sealed.to_bytes(),
    }) {
        Ok(Reply::MessageId(id)) => id,
        other => panic!("msend: {other:?}"),
    }
}

/// Send, list (newest first, filtered), read (opens, verifies, marks read), delete.
pub fn messages_send_list_read_delete<R: Runtime>() {
    let fx = Fixture::new(61);
    let server = crate::start::<R>(&fx);
    let (mut alice, mut bob, ka, kb) = two_users::<R>(&server, &fx);
    assert_eq!(send_to_bob(&mut alice, &ka, "hello bob", 1), 1);
    assert_eq!(send_to_bob(&mut alice, &ka, "second", 2), 2);
    let Ok(Reply::Messages(list)) = bob.call(&Command::Mlist { from: None }) else {
        panic!("mlist");
    };
    assert_eq!(list.iter().map(|m| m.id).collect::<Vec<_>>(), vec![2, 1]);
    assert!(list.iter().all(|m| m.from == "alice" && !m.read));
    let Ok(Reply::Messages(none)) = bob.call(&Command::Mlist {
        from: Some("carol".into()),
    }) else {
        panic!("mlist carol");
    };
    assert!(none.is_empty());
    let Ok(Reply::Sealed(sealed)) = bob.call(&Command::Mread { id: 1 }) else {
        panic!("mread");
    };
    let opened = open(&kb, "bob", &sealed).expect("bob opens it");
    assert_eq!(opened.text, b"hello bob");
    assert_eq!(opened.sender_key, ka.public());
    let Ok(Reply::Messages(list)) = bob.call(&Command::Mlist { from: None }) else {
        panic!("mlist");
    };
    assert!(list.iter().any(|m| m.id == 1 && m.read));
    done(&mut bob, Command::Mdel { id: 1 });
    assert_eq!(
        code_of(bob.call(&Command::Mread { id: 1 })),
        Some(ErrorCode::NotFound)
    );
    // Alice's mailbox is her own: she cannot read bob's message 2.
    assert_eq!(
        code_of(alice.call(&Command::Mread { id: 2 })),
        Some(ErrorCode::NotFound)
    );
    // A sealed message must name its real sender.
    let mut rng = StdRng::seed_from_u64(9);
    let forged = seal(&ka, "carol", &kb.public(), "bob", 0, b"x", &mut rng).expect("seal");
    assert_eq!(
        code_of(alice.call(&Command::Msend {
            to: "bob".into(),
            sealed: forged.to_bytes(),
        })),
        Some(ErrorCode::BadArguments)
    );
}

/// A full mailbox refuses with a clear error and keeps every stored message.
pub fn messages_mailbox_full_keeps_what_it_holds<R: Runtime>() {
    let fx = Fixture::new(62);
    let service = fx
        .service()
        .with_message_limits(vserv_service::MessageLimits {
            mailbox_messages: 2,
            ..vserv_service::MessageLimits::default()
        });
    let server = R::start(
        fx.identity.clone(),
        service,
        64,
        vserv_core::Config::default(),
    );
    let (mut alice, mut bob, ka, _) = two_users::<R>(&server, &fx);
    send_to_bob(&mut alice, &ka, "one", 1);
    send_to_bob(&mut alice, &ka, "two", 2);
    let mut rng = StdRng::seed_from_u64(3);
    let bob_key = match alice.call(&Command::Mkey(MkeyAction::Get("bob".into()))) {
        Ok(Reply::MessageKey(k)) => ServerKey::from_bytes(&k).expect("key"),
        other => panic!("{other:?}"),
    };
    let third = seal(&ka, "alice", &bob_key, "bob", 0, b"three", &mut rng).expect("seal");
    match alice.call(&Command::Msend {
        to: "bob".into(),
        sealed: third.to_bytes(),
    }) {
        Err(vserv_service::client::ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::TooLarge);
            assert!(e.message.contains("mailbox is full"), "{}", e.message);
        }
        other => panic!("a third message was not refused: {other:?}"),
    }
    let Ok(Reply::Messages(list)) = bob.call(&Command::Mlist { from: None }) else {
        panic!("mlist");
    };
    assert_eq!(list.len(), 2);
}

/// A logged-in recipient gets a Message notice, live, without asking.
pub fn messages_live_notice_to_a_logged_in_recipient<R: Runtime>() {
    let fx = Fixture::new(63);
    let server = crate::start::<R>(&fx);
    let (mut alice, mut bob, ka, _) = two_users::<R>(&server, &fx);
    let id = send_to_bob(&mut alice, &ka, "are you there?", 1);
    let mut notices = Vec::new();
    for _ in 0..50 {
        notices.extend(bob.poll_notices(Duration::from_millis(200)).expect("poll"));
        if !notices.is_empty() {
            break;
        }
    }
    assert!(
        matches!(
            notices.first(),
            Some(Notice::Message { from, id: n, .. }) if from == "alice" && *n == id
        ),
        "{notices:?}"
    );
    // The sender is not told about its own message.
    assert!(
        alice
            .poll_notices(Duration::from_millis(50))
            .expect("poll")
            .is_empty()
    );
}
