//! The typed command set: every command survives args -> parse, every reply survives
//! fields -> from_fields, and malformed arguments are typed errors.

use vserv_core::commands::{
    Access, COMMANDS, Command, Credential, KeyAction, Reply, SecretBytes, UserRole, UserSummary,
    command_info, login_signature_message,
};
use vserv_core::{ErrorCode, Fingerprint, Request};

fn secret(s: &str) -> SecretBytes {
    SecretBytes::new(s.as_bytes().to_vec())
}

fn request(name: &str, args: &[&[u8]]) -> Request {
    Request {
        id: 1,
        name: name.into(),
        args: args.iter().map(|a| a.to_vec()).collect(),
    }
}

#[test]
fn every_command_round_trips_through_its_arguments() {
    let commands = [
        Command::Login {
            user: "Alice".into(),
            credential: Credential::Password(secret("pw pw pw")),
        },
        Command::Login {
            user: "a".into(),
            credential: Credential::Key {
                public: [2; 33],
                signature: [9; 64],
            },
        },
        Command::Logout,
        Command::Whoami,
        Command::Uini {
            user: "root".into(),
            password: secret("12345678"),
        },
        Command::Uadd {
            user: "u".into(),
            password: secret("12345678"),
        },
        Command::Aadd {
            user: "a".into(),
            password: secret("12345678"),
        },
        Command::Udel { user: "u".into() },
        Command::Uena {
            user: "u".into(),
            enabled: false,
        },
        Command::Uena {
            user: "u".into(),
            enabled: true,
        },
        Command::Ulist { filter: None },
        Command::Ulist {
            filter: Some("al".into()),
        },
        Command::Chpass {
            target: None,
            old: Some(secret("old")),
            new: secret("new"),
        },
        Command::Chpass {
            target: Some("bob".into()),
            old: None,
            new: secret("new"),
        },
        Command::Ukey(KeyAction::Add([3; 33])),
        Command::Ukey(KeyAction::List),
        Command::Ukey(KeyAction::Del(Fingerprint([5; 32]))),
    ];
    for cmd in commands {
        let req = Request {
            id: 7,
            name: cmd.name().into(),
            args: cmd.args(),
        };
        assert_eq!(Command::parse(&req), Ok(cmd.clone()));
        assert!(
            command_info(cmd.name()).is_some(),
            "{} undocumented",
            cmd.name()
        );
    }
}

#[test]
fn replies_round_trip() {
    let cases = [
        (Command::Whoami, Reply::Anonymous),
        (
            Command::Whoami,
            Reply::User {
                name: "a".into(),
                role: UserRole::Admin,
            },
        ),
        (
            Command::Login {
                user: "a".into(),
                credential: Credential::Password(secret("x")),
            },
            Reply::User {
                name: "a".into(),
                role: UserRole::User,
            },
        ),
        (
            Command::Ulist { filter: None },
            Reply::Users(vec![
                UserSummary {
                    name: "a".into(),
                    role: UserRole::Admin,
                    enabled: true,
                },
                UserSummary {
                    name: "b".into(),
                    role: UserRole::User,
                    enabled: false,
                },
            ]),
        ),
        (
            Command::Ukey(KeyAction::List),
            Reply::Keys(vec![Fingerprint([1; 32])]),
        ),
        (Command::Udel { user: "x".into() }, Reply::Done),
    ];
    for (cmd, reply) in cases {
        assert_eq!(Reply::from_fields(&cmd, &reply.to_fields()), Ok(reply));
    }
}

#[test]
fn malformed_arguments_are_typed_errors() {
    let bad: &[(&str, &[&[u8]])] = &[
        ("login", &[b"a"]),
        ("login", &[b"a", b"token", b"x"]),
        ("login", &[b"a", b"key", &[2; 32], &[0; 64]]),
        ("login", &[b"a", b"key", &[2; 33], &[0; 63]]),
        ("login", &[&[0xff, 0xfe], b"password", b"x"]),
        ("uena", &[b"a", b"maybe"]),
        ("chpass", &[b"only-one"]),
        ("ukey", &[b"add", &[1; 5]]),
        ("ukey", &[b"del", b"not-a-fingerprint"]),
        ("ukey", &[b"rotate"]),
        ("udel", &[]),
    ];
    for (name, args) in bad {
        let err = Command::parse(&request(name, args)).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadArguments, "{name} {args:?}");
        assert!(err.message.starts_with("usage: "), "{}", err.message);
    }
    assert_eq!(
        Command::parse(&request("frobnicate", &[]))
            .unwrap_err()
            .code,
        ErrorCode::UnknownCommand
    );
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let cmd = Command::Login {
        user: "a".into(),
        credential: Credential::Password(secret("hunter22")),
    };
    assert!(!format!("{cmd:?}").contains("hunter22"));
}

#[test]
fn access_levels_are_declared() {
    let access = |n: &str| command_info(n).map(|i| i.access);
    assert_eq!(access("login"), Some(Access::Anyone));
    assert_eq!(access("uini"), Some(Access::Anyone));
    assert_eq!(access("uadd"), Some(Access::Admin));
    assert_eq!(access("chpass"), Some(Access::User));
    assert!(COMMANDS.iter().all(|c| c.usage.starts_with(c.name)));
}

#[test]
fn login_signatures_are_bound_to_session_and_user() {
    let a = login_signature_message(&[1; 32], "alice");
    assert_ne!(a, login_signature_message(&[2; 32], "alice"));
    assert_ne!(a, login_signature_message(&[1; 32], "alicf"));
}
