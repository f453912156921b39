//! Accounts: the first admin, users, the permission matrix, failed logins, key login,
//! disabling and deleting users (with their live sessions and homes), password changes.

use vserv_core::commands::{Command, ListPage, Reply, SeqRange};
use vserv_core::{Config, ErrorCode, Fingerprint, ServerIdentity};
use vserv_service::client::ClientError;

use crate::clients::*;
use crate::fixture::*;
use crate::{Fixture, Runtime, TestClient, TestServer};

/// `uini` creates the first admin once; admins add users; `whoami`/`logout` track the login.
pub fn accounts_first_admin_then_users<R: Runtime>() {
    let fx = Fixture::new(20);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    assert_eq!(
        code_of(root.call(&Command::Uini {
            user: "other".into(),
            password: secret("password-2")
        })),
        Some(ErrorCode::Forbidden)
    );
    root.call(&Command::Uadd {
        user: "Alice".into(),
        password: secret("alice-pass"),
    })
    .expect("uadd");
    root.call(&Command::Aadd {
        user: "bob".into(),
        password: secret("bob-password"),
    })
    .expect("aadd");
    assert_eq!(
        code_of(root.call(&Command::Uadd {
            user: "ALICE".into(),
            password: secret("whatever-1")
        })),
        Some(ErrorCode::Conflict),
        "names are case-insensitive"
    );
    let Reply::Users(users) = root.call(&Command::Ulist { filter: None }).expect("ulist") else {
        panic!()
    };
    let names: Vec<_> = users
        .iter()
        .map(|u| (u.name.as_str(), u.role, u.enabled))
        .collect();
    use vserv_core::commands::UserRole::{Admin, User};
    assert_eq!(
        names,
        [
            ("alice", User, true),
            ("bob", Admin, true),
            ("root", Admin, true)
        ]
    );
    let Reply::Users(filtered) = root
        .call(&Command::Ulist {
            filter: Some("b".into()),
        })
        .expect("ulist b")
    else {
        panic!()
    };
    assert_eq!(filtered.len(), 1);

    let mut alice = logged_in::<R>(&server, &fx, "alice", "alice-pass");
    assert_eq!(
        alice.call(&Command::Whoami).expect("whoami"),
        Reply::User {
            name: "alice".into(),
            role: User
        }
    );
    alice.call(&Command::Logout).expect("logout");
    assert_eq!(
        alice.call(&Command::Whoami).expect("whoami"),
        Reply::Anonymous
    );
    alice.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// Every command against {anonymous, user, disabled user, admin}: allowed or refused exactly
/// as its declared access says.
pub fn permission_matrix<R: Runtime>() {
    use vserv_core::commands::{Access, KeyAction};
    let fx = Fixture::new(21);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "user".into(),
        password: secret("user-password"),
    })
    .expect("uadd");
    root.call(&Command::Uadd {
        user: "off".into(),
        password: secret("off-password"),
    })
    .expect("uadd");
    root.call(&Command::Uena {
        user: "off".into(),
        enabled: false,
    })
    .expect("disable");

    let mut anonymous = R::connect(&server, &fx.options()).expect("connect");
    let mut user = logged_in::<R>(&server, &fx, "user", "user-password");
    let mut disabled = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(
        code_of(disabled.call(&login_cmd("off", "off-password"))),
        Some(ErrorCode::LoginFailed)
    );

    // Commands whose effect, when allowed, leaves the matrix intact (targets do not exist,
    // or a new, unique name is created).
    let commands = |who: &str| {
        vec![
            Command::Hello,
            Command::Ver,
            Command::Id,
            Command::Help { topic: None },
            Command::Ping { payload: vec![1] },
            Command::Whoami,
            Command::Uadd {
                user: format!("u-{who}"),
                password: secret("password-x"),
            },
            Command::Aadd {
                user: format!("a-{who}"),
                password: secret("password-x"),
            },
            Command::Udel {
                user: "ghost".into(),
            },
            Command::Uena {
                user: "ghost".into(),
                enabled: true,
            },
            Command::Ulist { filter: None },
            Command::Chpass {
                target: None,
                old: Some(secret("wrong-old-pw")),
                new: secret("new-password"),
            },
            Command::Chpass {
                target: Some("ghost".into()),
                old: None,
                new: secret("new-password"),
            },
            Command::Ukey(KeyAction::List),
            Command::Ukey(KeyAction::Del(Fingerprint([0; 32]))),
            Command::Tout { seconds: None },
            Command::Rput {
                kind: "perm".into(),
                record_id: format!("perm-{who}").into_bytes(),
                body: b"x=1\n".to_vec(),
            },
            Command::Rget {
                selector: vserv_core::commands::RecordSelector::Seq(1),
                origin: None,
            },
            Command::Rhave {
                record_id: b"perm-user".to_vec(),
                origin: None,
            },
            Command::Rabs {
                pos: -1,
                origin: None,
            },
            Command::Rsize {
                kind: None,
                origin: None,
            },
            Command::Rsize {
                kind: Some("perm".into()),
                origin: None,
            },
            Command::Rcount {
                kind: "perm".into(),
                range: SeqRange { from: 1, to: 9 },
                origin: None,
            },
            Command::Rlist {
                kind: None,
                range: SeqRange { from: 1, to: 9 },
                limit: None,
                origin: None,
            },
            Command::Rhead { origin: None },
            Command::Rcheck {
                range: None,
                origin: None,
            },
            Command::Rcheck {
                range: Some(SeqRange { from: 1, to: 2 }),
                origin: None,
            },
            Command::Logout,
        ]
    };
    let principals: [(&str, &mut R::Client, Access); 4] = [
        ("anonymous", &mut anonymous, Access::Anyone),
        ("disabled", &mut disabled, Access::Anyone),
        ("user", &mut user, Access::User),
        ("admin", &mut root, Access::Admin),
    ];
    for (who, client, level) in principals {
        for cmd in commands(who) {
            let needed = cmd.access();
            let result = client.call(&cmd);
            let refused = matches!(&result, Err(ClientError::Server(e))
                if e.code == ErrorCode::Forbidden && (e.message.contains("log in first") || e.message.contains("needs an admin")));
            assert_eq!(
                refused,
                needed > level,
                "{who} running {}: {result:?}",
                cmd.name()
            );
        }
    }
    server.shutdown();
}

/// Three failed logins close the connection; unknown users and wrong passwords fail alike.
pub fn failed_logins_close_the_connection<R: Runtime>() {
    let fx = Fixture::new(22);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    let mut c = R::connect(&server, &fx.options()).expect("connect");
    let unknown = c.call(&login_cmd("nobody", "whatever-pw"));
    let wrong = c.call(&login_cmd("root", "wrong-password"));
    match (&unknown, &wrong) {
        (Err(ClientError::Server(a)), Err(ClientError::Server(b))) => {
            assert_eq!(
                a, b,
                "unknown user and wrong password must be indistinguishable"
            );
            assert_eq!(a.code, ErrorCode::LoginFailed);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code_of(c.call(&login_cmd("root", "wrong-again"))),
        Some(ErrorCode::LoginFailed)
    );
    match c.call(&Command::Ping { payload: vec![] }) {
        Err(ClientError::ClosedByServer { .. } | ClientError::ConnectionClosed) => {}
        other => panic!("connection still open after 3 failures: {other:?}"),
    }
    // Others are unaffected.
    assert_eq!(
        root.call(&Command::Whoami).expect("whoami"),
        Reply::User {
            name: "root".into(),
            role: vserv_core::commands::UserRole::Admin
        }
    );
    root.quit().expect("quit");
    server.shutdown();
}

/// The last enabled admin can be neither deleted nor disabled.
pub fn last_admin_is_protected<R: Runtime>() {
    let fx = Fixture::new(23);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    assert_eq!(
        code_of(root.call(&Command::Udel {
            user: "root".into()
        })),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code_of(root.call(&Command::Uena {
            user: "root".into(),
            enabled: false
        })),
        Some(ErrorCode::Forbidden)
    );
    root.call(&Command::Aadd {
        user: "second".into(),
        password: secret("second-pw"),
    })
    .expect("aadd");
    root.call(&Command::Uena {
        user: "second".into(),
        enabled: false,
    })
    .expect("disable second");
    assert_eq!(
        code_of(root.call(&Command::Udel {
            user: "root".into()
        })),
        Some(ErrorCode::Forbidden)
    );
    root.call(&Command::Uena {
        user: "second".into(),
        enabled: true,
    })
    .expect("enable second");
    root.call(&Command::Udel {
        user: "root".into(),
    })
    .expect("now root may go");
    root.quit().expect("quit");
    server.shutdown();
}

/// Key login: the registered key signing this session's id logs in; another key, or a
/// signature over another session's id, does not.
pub fn key_login<R: Runtime>() {
    use vserv_core::commands::{Credential, KeyAction, login_signature_message};
    let fx = Fixture::new(24);
    // No login backoff: this case checks each credential, one right after another.
    let mut policy = vserv_service::Policy::default();
    policy.login.base_secs = 0;
    let service = service_with_policy(&fx.identity, policy);
    let server = R::start(fx.identity.clone(), service, 64, Config::default());
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "kate".into(),
        password: secret("kate-password"),
    })
    .expect("uadd");
    let key = identity(240);
    let other = identity(241);
    let mut kate = logged_in::<R>(&server, &fx, "kate", "kate-password");
    kate.call(&Command::Ukey(KeyAction::Add(*key.public_key().as_bytes())))
        .expect("ukey add");
    assert_eq!(
        code_of(kate.call(&Command::Ukey(KeyAction::Add(*key.public_key().as_bytes())))),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        kate.call(&Command::Ukey(KeyAction::List)).expect("list"),
        Reply::Keys(vec![key.public_key().fingerprint()])
    );
    let stale_sid = kate.session_id().expect("session id");
    kate.quit().expect("quit");

    let key_login =
        |signer: &ServerIdentity, public: &ServerIdentity, sid: [u8; 32]| Command::Login {
            user: "kate".into(),
            credential: Credential::Key {
                public: *public.public_key().as_bytes(),
                signature: signer.sign(&login_signature_message(&sid, "kate")),
            },
        };
    let mut c = R::connect(&server, &fx.options()).expect("connect");
    let sid = c.session_id().expect("session id");
    assert_ne!(sid, stale_sid);
    assert_eq!(
        code_of(c.call(&key_login(&other, &other, sid))),
        Some(ErrorCode::LoginFailed),
        "unregistered key"
    );
    assert_eq!(
        code_of(c.call(&key_login(&key, &key, stale_sid))),
        Some(ErrorCode::LoginFailed),
        "replayed signature"
    );
    assert!(
        matches!(c.call(&key_login(&key, &key, sid)), Ok(Reply::User { .. })),
        "the right key"
    );
    c.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// Bad user names are refused with a typed error and create nothing.
pub fn bad_user_names_are_refused<R: Runtime>() {
    let fx = Fixture::new(25);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    let long = "x".repeat(300);
    for bad in [
        "",
        long.as_str(),
        "../x",
        "a/b",
        "nul\0name",
        "al\u{202e}ice",
        "é",
        ".hidden",
    ] {
        assert_eq!(
            code_of(root.call(&Command::Uadd {
                user: bad.into(),
                password: secret("password-1")
            })),
            Some(ErrorCode::BadArguments),
            "{bad:?}"
        );
    }
    assert_eq!(
        code_of(root.call(&Command::Uadd {
            user: "shortpw".into(),
            password: secret("short")
        })),
        Some(ErrorCode::BadArguments)
    );
    let Reply::Users(users) = root.call(&Command::Ulist { filter: None }).expect("ulist") else {
        panic!()
    };
    assert_eq!(users.len(), 1);
    root.quit().expect("quit");
    server.shutdown();
}

/// Disabling or deleting a logged-in user takes effect on their very next command.
pub fn disabled_user_loses_access_at_once<R: Runtime>() {
    let fx = Fixture::new(26);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "dan".into(),
        password: secret("dan-password"),
    })
    .expect("uadd");
    let mut dan = logged_in::<R>(&server, &fx, "dan", "dan-password");
    assert!(
        dan.call(&Command::Ukey(vserv_core::commands::KeyAction::List))
            .is_ok()
    );
    root.call(&Command::Uena {
        user: "dan".into(),
        enabled: false,
    })
    .expect("disable");
    assert_eq!(
        code_of(dan.call(&Command::Ukey(vserv_core::commands::KeyAction::List))),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        dan.call(&Command::Whoami).expect("whoami"),
        Reply::Anonymous
    );
    dan.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// A session is bound to the account it logged into, not to its name: `udel carol` ends
/// the old carol's session at once (the server closes it, "account deleted", without
/// waiting for its next command), so after `uadd carol` it never sees the new carol's files; the new carol starts with an empty home,
/// and the old home is archived whole under `<data>/deleted-homes/carol-<account id>`.
pub fn deleted_account_sessions_end_and_homes_are_archived<R: Runtime>() {
    let fx = Fixture::new(32);
    let server = start_with_files::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    let add_carol = |root: &mut R::Client, password: &str| {
        root.call(&Command::Uadd {
            user: "carol".into(),
            password: secret(password),
        })
        .expect("uadd carol")
    };
    add_carol(&mut root, "old-carol-password");
    let mut old = logged_in::<R>(&server, &fx, "carol", "old-carol-password");
    done(
        &mut old,
        Command::Mkdir {
            path: "old-secrets".into(),
        },
    );
    // An upload left open across the deletion must not park its state into the new account.
    let open = match old.call(&Command::Fopen(vserv_core::transfer::FopenArgs {
        path: "old-secrets/draft.bin".into(),
        size: 1000,
        resume: false,
    })) {
        Ok(Reply::Opened(o)) => o,
        other => panic!("fopen gave {other:?}"),
    };
    done(
        &mut old,
        Command::Fput {
            id: open.id,
            offset: 0,
            data: vec![7; 100],
        },
    );
    done(
        &mut root,
        Command::Udel {
            user: "carol".into(),
        },
    );
    add_carol(&mut root, "new-carol-password");
    let mut new = logged_in::<R>(&server, &fx, "carol", "new-carol-password");
    let (entries, _) = listing(&mut new, Command::Ls(ListPage::default()));
    assert!(entries.is_empty(), "the new carol inherited {entries:?}");
    done(
        &mut new,
        Command::Mkdir {
            path: "new-secrets".into(),
        },
    );
    done(
        &mut new,
        Command::Mkdir {
            path: "old-secrets".into(),
        },
    );
    // The new carol's own upload, so that her home has a partial-upload directory.
    match new.call(&Command::Fopen(vserv_core::transfer::FopenArgs {
        path: "mine.bin".into(),
        size: 10,
        resume: false,
    })) {
        Ok(Reply::Opened(_)) => {}
        other => panic!("fopen gave {other:?}"),
    }
    let partials = fx.dir().join("homes/carol/.vserv-partial");
    let listed = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let new_partials = listed(&partials);
    match old.call(&Command::Ls(ListPage::default())) {
        Err(ClientError::ClosedByServer { code, reason }) => {
            assert_eq!(code, vserv_core::CloseCode::Normal);
            assert_eq!(reason, "account deleted");
        }
        other => panic!("the old carol's session went on: {other:?}"),
    }
    assert!(
        old.call(&Command::Whoami).is_err(),
        "the old carol's session was not closed"
    );
    drop(old);
    let (entries, _) = listing(
        &mut new,
        Command::Ls(ListPage {
            dir: Some("old-secrets".into()),
            ..ListPage::default()
        }),
    );
    assert!(
        entries.is_empty(),
        "the old upload reached the new carol: {entries:?}"
    );
    assert_eq!(
        listed(&partials),
        new_partials,
        "the old upload parked its state in the new home"
    );
    let archive = fx.dir().join("deleted-homes");
    let archived: Vec<String> = std::fs::read_dir(&archive)
        .expect("deleted-homes exists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert!(archived[0].starts_with("carol-"), "{archived:?}");
    assert!(archive.join(&archived[0]).join("old-secrets").is_dir());
    assert!(!archive.join(&archived[0]).join("new-secrets").exists());
    new.call(&Command::Whoami).expect("the new carol goes on");
    new.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}

/// `chpass`: own change needs the old password; admins set others'.
pub fn password_changes<R: Runtime>() {
    let fx = Fixture::new(27);
    let server = start::<R>(&fx);
    let mut root = root_client::<R>(&server, &fx);
    root.call(&Command::Uadd {
        user: "eve".into(),
        password: secret("eve-password"),
    })
    .expect("uadd");
    let mut eve = logged_in::<R>(&server, &fx, "eve", "eve-password");
    let change = |old: &str, new: &str| Command::Chpass {
        target: None,
        old: Some(secret(old)),
        new: secret(new),
    };
    assert_eq!(
        code_of(eve.call(&change("not-my-password", "eve-password-2"))),
        Some(ErrorCode::LoginFailed)
    );
    eve.call(&change("eve-password", "eve-password-2"))
        .expect("own change");
    let for_root = Command::Chpass {
        target: Some("root".into()),
        old: None,
        new: secret("hijacked-pw"),
    };
    assert_eq!(code_of(eve.call(&for_root)), Some(ErrorCode::Forbidden));
    eve.quit().expect("quit");
    drop(logged_in::<R>(&server, &fx, "eve", "eve-password-2"));
    root.call(&Command::Chpass {
        target: Some("eve".into()),
        old: None,
        new: secret("reset-by-root"),
    })
    .expect("reset");
    let mut again = logged_in::<R>(&server, &fx, "eve", "reset-by-root");
    again.call(&Command::Whoami).expect("whoami");
    again.quit().expect("quit");
    root.quit().expect("quit");
    server.shutdown();
}
