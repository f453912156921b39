//! The typed command set: every command survives args -> parse, every reply survives
//! fields -> from_fields, and malformed arguments are typed errors.

use proptest::prelude::*;
use vserv_core::commands::{
    Access, COMMANDS, Command, Credential, KeyAction, RLIST_ENTRY_BUDGET, RLIST_MAX_LIMIT,
    RecordSelector, Reply, SecretBytes, SeqRange, UserRole, UserSummary, command_info,
    login_signature_message,
};
use vserv_core::ledger::{
    Entry, EntryFields, Head, MAX_AUTHOR, MAX_BODY, MAX_ENCODED_ENTRY, MAX_KIND, MAX_RECORD_ID,
    SignedHead, ZERO_HASH,
};
use vserv_core::wire::MAX_PAYLOAD;
use vserv_core::{ErrorCode, Fingerprint, Request, Response};

mod support;
use support::pair::Pair;

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
        Command::Tout { seconds: None },
        Command::Tout { seconds: Some(0) },
        Command::Tout {
            seconds: Some(u64::MAX),
        },
        Command::Rput {
            kind: "note".into(),
            record_id: vec![0, 255, b' '],
            body: Vec::new(),
        },
        Command::Rput {
            kind: "a.b-c_9".into(),
            record_id: vec![7; 64],
            body: vec![0xAB; MAX_BODY],
        },
        Command::Rget {
            selector: RecordSelector::Seq(0),
            origin: None,
        },
        Command::Rget {
            selector: RecordSelector::Seq(u64::MAX),
            origin: None,
        },
        Command::Rget {
            selector: RecordSelector::Id(b"rec id".to_vec()),
            origin: None,
        },
        Command::Rget {
            selector: RecordSelector::Hash([0xC3; 32]),
            origin: None,
        },
        Command::Rhave {
            record_id: b"x".to_vec(),
            origin: None,
        },
        Command::Rabs {
            pos: 1,
            origin: None,
        },
        Command::Rabs {
            pos: -1,
            origin: None,
        },
        Command::Rabs {
            pos: i64::MAX,
            origin: None,
        },
        Command::Rabs {
            pos: i64::MIN,
            origin: None,
        },
        Command::Rsize {
            kind: None,
            origin: None,
        },
        Command::Rsize {
            kind: Some("note".into()),
            origin: None,
        },
        Command::Rcount {
            kind: "note".into(),
            range: SeqRange { from: 1, to: 1 },
            origin: None,
        },
        Command::Rcount {
            kind: "a.b".into(),
            range: SeqRange {
                from: 3,
                to: u64::MAX,
            },
            origin: None,
        },
        Command::Rlist {
            kind: None,
            range: SeqRange { from: 1, to: 10 },
            limit: None,
            origin: None,
        },
        Command::Rlist {
            kind: Some("note".into()),
            range: SeqRange { from: 5, to: 5 },
            limit: Some(1),
            origin: None,
        },
        Command::Rlist {
            kind: Some("x".into()),
            range: SeqRange {
                from: 1,
                to: u64::MAX,
            },
            limit: Some(RLIST_MAX_LIMIT),
            origin: None,
        },
        Command::Rhead { origin: None },
        Command::Rcheck {
            range: None,
            origin: None,
        },
        Command::Rcheck {
            range: Some(SeqRange { from: 2, to: 9 }),
            origin: None,
        },
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
        (Command::Tout { seconds: None }, Reply::IdleTimeout(300)),
        (Command::Tout { seconds: Some(60) }, Reply::IdleTimeout(60)),
        (
            Command::Rput {
                kind: "k".into(),
                record_id: b"r".to_vec(),
                body: Vec::new(),
            },
            Reply::Appended {
                seq: u64::MAX,
                hash: [0xFE; 32],
            },
        ),
        (
            Command::Rget {
                selector: RecordSelector::Seq(1),
                origin: None,
            },
            Reply::Record(sample_entry()),
        ),
        (
            Command::Rhave {
                record_id: b"r".to_vec(),
                origin: None,
            },
            Reply::Have(true),
        ),
        (
            Command::Rhave {
                record_id: b"r".to_vec(),
                origin: None,
            },
            Reply::Have(false),
        ),
        (
            Command::Rsize {
                kind: None,
                origin: None,
            },
            Reply::Count(0),
        ),
        (
            Command::Rsize {
                kind: Some("k".into()),
                origin: None,
            },
            Reply::Count(123),
        ),
        (
            Command::Rcount {
                kind: "k".into(),
                range: SeqRange { from: 1, to: 2 },
                origin: None,
            },
            Reply::Count(2),
        ),
        (
            Command::Rabs {
                pos: -1,
                origin: None,
            },
            Reply::Record(sample_entry()),
        ),
        (
            rlist_all(),
            Reply::Page {
                entries: Vec::new(),
                next: None,
            },
        ),
        (
            rlist_all(),
            Reply::Page {
                entries: vec![sample_entry(), sample_entry()],
                next: Some(3),
            },
        ),
        (Command::Rhead { origin: None }, Reply::Head(sample_head())),
        (
            Command::Rcheck {
                range: None,
                origin: None,
            },
            Reply::ChainOk { seq: 0 },
        ),
        (
            Command::Rcheck {
                range: None,
                origin: None,
            },
            Reply::ChainBad {
                seq: Some(7),
                reason: "entry 7: bad link".into(),
            },
        ),
        (
            Command::Rcheck {
                range: Some(SeqRange { from: 1, to: 2 }),
                origin: None,
            },
            Reply::ChainBad {
                seq: None,
                reason: "head".into(),
            },
        ),
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
        ("tout", &[b"abc"]),
        ("tout", &[b"-1"]),
        ("tout", &[b"+5"]),
        ("tout", &[b" 5"]),
        ("tout", &[b""]),
        ("tout", &[b"18446744073709551616"]),
        ("tout", &[b"1", b"2"]),
        ("rput", &[b"k", b"id"]),
        ("rget", &[b"seq"]),
        ("rget", &[b"seq", b"-1"]),
        ("rget", &[b"seq", b"x"]),
        ("rget", &[b"hash", &[b'a'; 63]]),
        ("rget", &[b"hash", &[b'g'; 64]]),
        ("rget", &[b"index", b"1"]),
        ("rhave", &[]),
        ("rsize", &[b"kind", b"more"]),
        ("rhead", &[b"x"]),
        ("rcheck", &[b"1"]),
        ("rcheck", &[b"1", b"2", b"3"]),
        ("rcheck", &[b"1", b"x"]),
        ("rabs", &[]),
        ("rabs", &[b"+1"]),
        ("rabs", &[b"--1"]),
        ("rabs", &[b"-"]),
        ("rabs", &[b"1.5"]),
        ("rabs", &[b"9223372036854775808"]),
        ("rabs", &[b"-9223372036854775809"]),
        ("rabs", &[b"1", b"2"]),
        ("rcount", &[b"k", b"1"]),
        ("rcount", &[b"k", b"1", b"-2"]),
        ("rlist", &[b"k", b"1"]),
        ("rlist", &[b"k", b"1", b"2", b"3", b"4"]),
        ("rlist", &[b"*", b"1", b"2", b"many"]),
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

/// A server can tell what a request is before (and whatever) its arguments parse: the kind
/// comes from the name alone, agrees with the parsed command and with the table row.
#[test]
fn a_request_has_a_typed_kind_before_parsing() {
    use vserv_core::commands::CommandKind;
    let rput = request("rput", &[b"note", b"r1", b"a=1"]);
    assert_eq!(CommandKind::from_name(&rput.name), Some(CommandKind::Rput));
    assert_eq!(
        Command::parse(&rput).map(|c| c.kind()),
        Ok(CommandKind::Rput)
    );
    // Bad arguments: still an rput, and the usage error names the row's usage.
    let bad = request("rput", &[b"note"]);
    assert_eq!(CommandKind::from_name(&bad.name), Some(CommandKind::Rput));
    let err = Command::parse(&bad).unwrap_err();
    assert_eq!(
        err.message,
        format!("usage: {}", CommandKind::Rput.info().usage)
    );
    assert_eq!(CommandKind::from_name("RPUT"), None);
    assert_eq!(CommandKind::Rput.access(), Access::User);
    assert_eq!(
        command_info("rput").map(|i| i.kind),
        Some(CommandKind::Rput)
    );
    assert_eq!(COMMANDS.len(), CommandKind::ALL.len());
    for row in COMMANDS {
        assert_eq!(CommandKind::from_name(row.name), Some(row.kind));
        assert_eq!(row.kind.name(), row.name);
        assert!(row.min_args <= row.max_args, "{}", row.name);
    }
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

#[test]
fn tout_is_for_logged_in_users_and_replies_with_decimal_seconds() {
    assert_eq!(command_info("tout").map(|i| i.access), Some(Access::User));
    assert_eq!(
        Command::parse(&request("tout", &[b"120"])),
        Ok(Command::Tout { seconds: Some(120) })
    );
    assert_eq!(Reply::IdleTimeout(120).to_fields(), vec![b"120".to_vec()]);
    let tout = Command::Tout { seconds: None };
    for bad in [
        &[][..],
        &[b"x".to_vec()][..],
        &[b"1".to_vec(), b"2".to_vec()][..],
    ] {
        assert!(Reply::from_fields(&tout, bad).is_err(), "{bad:?}");
    }
}

/// `Connection::set_idle_timeout`: zero is refused, and `poll_timeout` moves to exactly the
/// last receipt plus the new timeout.
#[test]
#[allow(clippy::disallowed_methods)] // one real instant as the epoch of a virtual clock
fn set_idle_timeout_moves_the_deadline_exactly() {
    use std::time::Duration;
    use vserv_core::{Config, Error};

    let mut p = Pair::new(Config::default());
    let t0 = p.now;
    // Handshake at t0 + 1 s.
    let t1 = t0 + Duration::from_secs(1);
    p.now = t1;
    p.drive().unwrap();
    let server = &mut p.server;
    assert!(server.is_connected());
    assert_eq!(server.idle_timeout(), Duration::from_secs(300));
    assert_eq!(server.poll_timeout(), Some(t1 + Duration::from_secs(300)));

    assert!(matches!(
        server.set_idle_timeout(Duration::ZERO),
        Err(Error::InvalidState(_))
    ));
    assert_eq!(server.idle_timeout(), Duration::from_secs(300));

    server.set_idle_timeout(Duration::from_secs(42)).unwrap();
    assert_eq!(server.idle_timeout(), Duration::from_secs(42));
    let deadline = t1 + Duration::from_secs(42);
    assert_eq!(server.poll_timeout(), Some(deadline));
    server
        .handle_timeout(deadline - Duration::from_nanos(1))
        .unwrap();
    // The next wake-up of the pair is the server's new deadline, well before the client's.
    assert_eq!(p.jump(), Some(deadline));
    assert_eq!(p.now, deadline);
    assert_eq!(p.server_error, Some(Error::IdleTimeout));
    assert_eq!(p.client_error, None);
}

fn identity() -> vserv_core::ServerIdentity {
    use rand::SeedableRng;
    vserv_core::ServerIdentity::generate(&mut rand::rngs::StdRng::seed_from_u64(3))
}

fn sample_entry() -> Entry {
    Entry::new(EntryFields {
        origin: identity().public_key(),
        seq: 1,
        prev: ZERO_HASH,
        timestamp: 1_700_000_000_000,
        author: "alice".into(),
        kind: "note".into(),
        record_id: b"r1".to_vec(),
        body: b"a=1\n".to_vec(),
    })
    .unwrap()
}

fn sample_head() -> SignedHead {
    SignedHead::sign(&identity(), Head::of(&sample_entry()))
}

#[test]
fn ledger_commands_check_their_arguments() {
    let err = |name: &str, args: &[&[u8]]| Command::parse(&request(name, args)).unwrap_err().code;
    // Kind rules, record id length, body size.
    assert_eq!(err("rput", &[b"Note", b"r", b""]), ErrorCode::BadArguments);
    assert_eq!(err("rput", &[b"", b"r", b""]), ErrorCode::BadArguments);
    assert_eq!(err("rput", &[b"-x", b"r", b""]), ErrorCode::BadArguments);
    assert_eq!(err("rput", &[&[0xff], b"r", b""]), ErrorCode::BadArguments);
    assert_eq!(err("rput", &[b"k", b"", b""]), ErrorCode::BadArguments);
    assert_eq!(err("rput", &[b"k", &[1; 65], b""]), ErrorCode::BadArguments);
    assert_eq!(
        err("rput", &[b"k", b"r", &vec![0; MAX_BODY + 1]]),
        ErrorCode::TooLarge
    );
    // Hashes in either case.
    let upper = "AB".repeat(32);
    assert_eq!(
        Command::parse(&request("rget", &[b"hash", upper.as_bytes()])),
        Ok(Command::Rget {
            selector: RecordSelector::Hash([0xAB; 32]),
            origin: None
        })
    );
}

/// The reads take an optional last ORIGIN argument; what was valid without one means what it
/// meant (a kind, a LIMIT, a record id that happens to start with `SHA256:`), and `rput`
/// never takes one.
#[test]
fn ledger_reads_take_an_optional_origin() {
    let fp = Fingerprint([0x5a; 32]);
    let text = fp.to_string();
    let o = text.as_bytes();
    let parse = |name: &str, args: &[&[u8]]| Command::parse(&request(name, args));
    assert_eq!(
        parse("rget", &[b"seq", b"3", o]),
        Ok(Command::Rget {
            selector: RecordSelector::Seq(3),
            origin: Some(fp)
        })
    );
    assert_eq!(
        parse("rhave", &[b"r1", o]),
        Ok(Command::Rhave {
            record_id: b"r1".to_vec(),
            origin: Some(fp)
        })
    );
    // Alone, a record id that looks like a fingerprint is a record id.
    assert_eq!(
        parse("rhave", &[b"SHA256:ab"]),
        Ok(Command::Rhave {
            record_id: b"SHA256:ab".to_vec(),
            origin: None
        })
    );
    assert_eq!(
        parse("rabs", &[b"-1", o]),
        Ok(Command::Rabs {
            pos: -1,
            origin: Some(fp)
        })
    );
    assert_eq!(
        parse("rsize", &[o]),
        Ok(Command::Rsize {
            kind: None,
            origin: Some(fp)
        })
    );
    assert_eq!(
        parse("rsize", &[b"k"]),
        Ok(Command::Rsize {
            kind: Some("k".into()),
            origin: None
        })
    );
    assert_eq!(
        parse("rsize", &[b"k", o]),
        Ok(Command::Rsize {
            kind: Some("k".into()),
            origin: Some(fp)
        })
    );
    assert_eq!(
        parse("rcount", &[b"k", b"1", b"2", o]),
        Ok(Command::Rcount {
            kind: "k".into(),
            range: SeqRange { from: 1, to: 2 },
            origin: Some(fp)
        })
    );
    let rlist = |limit, origin| Command::Rlist {
        kind: None,
        range: SeqRange { from: 1, to: 9 },
        limit,
        origin,
    };
    assert_eq!(
        parse("rlist", &[b"*", b"1", b"9", o]),
        Ok(rlist(None, Some(fp)))
    );
    assert_eq!(
        parse("rlist", &[b"*", b"1", b"9", b"5"]),
        Ok(rlist(Some(5), None))
    );
    assert_eq!(
        parse("rlist", &[b"*", b"1", b"9", b"5", o]),
        Ok(rlist(Some(5), Some(fp)))
    );
    assert_eq!(
        parse("rhead", &[o]),
        Ok(Command::Rhead { origin: Some(fp) })
    );
    assert_eq!(
        parse("rcheck", &[o]),
        Ok(Command::Rcheck {
            range: None,
            origin: Some(fp)
        })
    );
    assert_eq!(
        parse("rcheck", &[b"2", b"4", o]),
        Ok(Command::Rcheck {
            range: Some(SeqRange { from: 2, to: 4 }),
            origin: Some(fp)
        })
    );
    // Either case of hex; encoded in lower case.
    let upper = format!("SHA256:{}", "5A".repeat(32));
    let head = parse("rhead", &[upper.as_bytes()]);
    assert_eq!(head, Ok(Command::Rhead { origin: Some(fp) }));
    assert_eq!(head.map(|c| c.args()), Ok(vec![o.to_vec()]));
    assert_eq!(
        Command::Rhead { origin: Some(fp) }.origin(),
        Some(&fp),
        "origin() names the feed read"
    );
    assert_eq!(Command::Rhead { origin: None }.origin(), None);
    // A bad fingerprint in ORIGIN's place, or an origin where none fits: typed errors.
    let bad_fp = format!("SHA256:{}", "g".repeat(64));
    for (name, args) in [
        ("rhead", vec![bad_fp.as_bytes()]),
        ("rhead", vec![b"SHA256:ab".as_slice()]),
        ("rsize", vec![b"k".as_slice(), b"SHA256:"]),
    ] {
        let err = parse(name, &args).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadArguments, "{name} {args:?}");
        assert!(err.message.contains("ORIGIN"), "{}", err.message);
    }
    for (name, args) in [
        ("rput", vec![b"k".as_slice(), b"r", b"body", o]),
        ("rhead", vec![o, o]),
        ("rget", vec![b"seq", o]),
        ("rlist", vec![b"*", b"1", b"9", b"5", o, o]),
    ] {
        let err = parse(name, &args).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadArguments, "{name} {args:?}");
    }
}

#[test]
fn ledger_access_levels() {
    let access = |n: &str| command_info(n).map(|i| i.access);
    for name in [
        "rput", "rget", "rhave", "rsize", "rhead", "rabs", "rcount", "rlist",
    ] {
        assert_eq!(access(name), Some(Access::User), "{name}");
    }
    assert_eq!(access("rcheck"), Some(Access::Admin));
}

#[test]
fn ledger_replies_refuse_malformed_fields() {
    let rput = Command::Rput {
        kind: "k".into(),
        record_id: b"r".to_vec(),
        body: Vec::new(),
    };
    let bad: &[(&Command, &[&[u8]])] = &[
        (&rput, &[b"1"]),
        (&rput, &[b"1", b"zz"]),
        (&rput, &[b"x", &[b'0'; 64]]),
        (
            &Command::Rget {
                selector: RecordSelector::Seq(1),
                origin: None,
            },
            &[b"not an entry"],
        ),
        (
            &Command::Rhave {
                record_id: b"r".to_vec(),
                origin: None,
            },
            &[b"maybe"],
        ),
        (
            &Command::Rsize {
                kind: None,
                origin: None,
            },
            &[b"-3"],
        ),
        (
            &Command::Rabs {
                pos: 1,
                origin: None,
            },
            &[b"not an entry"],
        ),
        (
            &Command::Rabs {
                pos: 1,
                origin: None,
            },
            &[],
        ),
        (&rlist_all(), &[]),
        (&rlist_all(), &[b"x"]),
        (&rlist_all(), &[b"-1"]),
        (&rlist_all(), &[b"", b"not an entry"]),
        (&Command::Rhead { origin: None }, &[&[1; 137]]),
        (
            &Command::Rcheck {
                range: None,
                origin: None,
            },
            &[b"fine", b"1"],
        ),
        (
            &Command::Rcheck {
                range: None,
                origin: None,
            },
            &[b"ok"],
        ),
        (
            &Command::Rcheck {
                range: None,
                origin: None,
            },
            &[b"bad", b"x", b"why"],
        ),
    ];
    for (cmd, fields) in bad {
        let fields: Vec<Vec<u8>> = fields.iter().map(|f| f.to_vec()).collect();
        assert!(
            Reply::from_fields(cmd, &fields).is_err(),
            "{cmd:?} {fields:?}"
        );
    }
}

fn rlist_all() -> Command {
    Command::Rlist {
        kind: None,
        range: SeqRange { from: 1, to: 9 },
        limit: None,
        origin: None,
    }
}

#[test]
fn positions_ranges_and_limits_are_checked() {
    let parse = |name: &str, args: &[&[u8]]| Command::parse(&request(name, args));
    let refused = |name: &str, args: &[&[u8]]| {
        let e = parse(name, args).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadArguments, "{name} {args:?}");
        e.message
    };
    assert_eq!(
        parse("rabs", &[b"-3"]),
        Ok(Command::Rabs {
            pos: -3,
            origin: None
        })
    );
    assert_eq!(
        parse("rabs", &[b"9223372036854775807"]),
        Ok(Command::Rabs {
            pos: i64::MAX,
            origin: None
        })
    );
    for zero in [&b"0"[..], b"-0", b"000"] {
        assert!(refused("rabs", &[zero]).contains("position 0"), "{zero:?}");
    }
    // Seqs start at 1; reversed ranges are refused by every ranged command.
    for (name, prefix) in [
        ("rcount", &[&b"k"[..]][..]),
        ("rlist", &[&b"*"[..]][..]),
        ("rcheck", &[][..]),
    ] {
        let with = |from: &'static [u8], to: &'static [u8]| {
            let mut args: Vec<&[u8]> = prefix.to_vec();
            args.extend([from, to]);
            args
        };
        assert!(refused(name, &with(b"5", b"4")).starts_with("reversed range"));
        assert!(refused(name, &with(b"0", b"4")).contains("at least 1"));
        assert!(refused(name, &with(b"1", b"0")).contains("at least 1"));
        assert!(parse(name, &with(b"4", b"4")).is_ok(), "{name}");
    }
    // Kinds follow the kind rule; `*` is every kind for rlist only.
    for name in ["rsize", "rcount", "rlist"] {
        let mut args: Vec<&[u8]> = vec![b"Bad Kind"];
        if name != "rsize" {
            args.extend([&b"1"[..], b"2"]);
        }
        assert!(refused(name, &args).contains("kind"), "{name}");
    }
    refused("rcount", &[b"*", b"1", b"2"]);
    refused("rsize", &[b"*"]);
    // LIMIT is 1..=1000.
    refused("rlist", &[b"*", b"1", b"2", b"0"]);
    refused("rlist", &[b"*", b"1", b"2", b"1001"]);
    refused("rlist", &[b"*", b"1", b"2", b"99999999999999"]);
    assert_eq!(
        parse("rlist", &[b"*", b"1", b"2", b"1000"]),
        Ok(Command::Rlist {
            kind: None,
            range: SeqRange { from: 1, to: 2 },
            limit: Some(1000),
            origin: None
        })
    );
}

/// The largest possible entry fits one `rlist` page, with the largest `next`, inside one
/// record.
#[test]
fn a_maximum_size_entry_fits_an_rlist_page() {
    let entry = Entry::new(EntryFields {
        origin: identity().public_key(),
        seq: u64::MAX,
        prev: [0xEE; 32],
        timestamp: u64::MAX,
        author: "a".repeat(MAX_AUTHOR),
        kind: "k".repeat(MAX_KIND),
        record_id: vec![0xFF; MAX_RECORD_ID],
        body: vec![0xAB; MAX_BODY],
    })
    .unwrap();
    assert_eq!(entry.encoded_len(), MAX_ENCODED_ENTRY);
    assert!(4 + entry.encoded_len() <= RLIST_ENTRY_BUDGET);
    let reply = Reply::Page {
        entries: vec![entry],
        next: Some(u64::MAX),
    };
    let response = Response {
        id: u32::MAX,
        result: Ok(reply.to_fields()),
    };
    assert!(response.encoded_len() <= MAX_PAYLOAD);
    // The budget is exact: a page filled to it is a response of exactly MAX_PAYLOAD bytes
    // when `next` has 20 digits.
    let filler = vec![vec![0u8; RLIST_ENTRY_BUDGET - 4]];
    let fields: Vec<Vec<u8>> = std::iter::once(u64::MAX.to_string().into_bytes())
        .chain(filler)
        .collect();
    let full = Response {
        id: 1,
        result: Ok(fields),
    };
    assert_eq!(full.encoded_len(), MAX_PAYLOAD);
}

fn kind_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,63}"
}

fn range_strategy() -> impl Strategy<Value = SeqRange> {
    (1u64.., 1u64..).prop_map(|(a, b)| SeqRange {
        from: a.min(b),
        to: a.max(b),
    })
}

/// A query of [`own_query_strategy`] on the own feed or, as often, on another origin's.
fn query_strategy() -> impl Strategy<Value = Command> {
    (
        own_query_strategy(),
        proptest::option::of(any::<[u8; 32]>().prop_map(Fingerprint)),
    )
        .prop_map(|(mut cmd, fp)| {
            match &mut cmd {
                Command::Rabs { origin, .. }
                | Command::Rsize { origin, .. }
                | Command::Rcount { origin, .. }
                | Command::Rlist { origin, .. }
                | Command::Rcheck { origin, .. } => *origin = fp,
                _ => {}
            }
            cmd
        })
}

fn own_query_strategy() -> impl Strategy<Value = Command> {
    prop_oneof![
        any::<i64>()
            .prop_filter("non-zero", |p| *p != 0)
            .prop_map(|pos| Command::Rabs { pos, origin: None }),
        proptest::option::of(kind_strategy())
            .prop_map(|kind| Command::Rsize { kind, origin: None }),
        (kind_strategy(), range_strategy()).prop_map(|(kind, range)| Command::Rcount {
            kind,
            range,
            origin: None
        }),
        (
            proptest::option::of(kind_strategy()),
            range_strategy(),
            proptest::option::of(1..=RLIST_MAX_LIMIT)
        )
            .prop_map(|(kind, range, limit)| Command::Rlist {
                kind,
                range,
                limit,
                origin: None
            }),
        proptest::option::of(range_strategy()).prop_map(|range| Command::Rcheck {
            range,
            origin: None
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every query command survives args -> parse.
    #[test]
    fn ledger_queries_round_trip(cmd in query_strategy(), id: u32) {
        let req = Request { id, name: cmd.name().into(), args: cmd.args() };
        prop_assert_eq!(Command::parse(&req), Ok(cmd));
    }

    /// Arbitrary arguments to the query commands parse to a command that re-encodes to the
    /// same arguments, or are a typed BadArguments error; never a panic.
    #[test]
    fn ledger_query_arguments_never_panic(
        name in prop_oneof![Just("rabs"), Just("rsize"), Just("rcount"), Just("rlist"), Just("rcheck")],
        args in proptest::collection::vec(
            prop_oneof![
                "-?[0-9]{0,21}".prop_map(String::into_bytes),
                "[a-z*]{0,3}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..4),
            ],
            0..6,
        ),
    ) {
        let req = Request { id: 1, name: name.into(), args };
        match Command::parse(&req) {
            Ok(cmd) => {
                let again = Request { id: 1, name: cmd.name().into(), args: cmd.args() };
                prop_assert_eq!(Command::parse(&again), Ok(cmd));
            }
            Err(e) => prop_assert_eq!(e.code, ErrorCode::BadArguments),
        }
    }

    /// Count and page replies survive fields -> from_fields.
    #[test]
    fn ledger_query_replies_round_trip(
        count: u64,
        next in proptest::option::of(any::<u64>()),
        n in 0usize..4,
    ) {
        let count_reply = Reply::Count(count);
        for cmd in [Command::Rsize { kind: None, origin: None }, Command::Rcount { kind: "k".into(), range: SeqRange { from: 1, to: 1 }, origin: None }] {
            prop_assert_eq!(Reply::from_fields(&cmd, &count_reply.to_fields()), Ok(count_reply.clone()));
        }
        let page = Reply::Page { entries: vec![sample_entry(); n], next };
        prop_assert_eq!(Reply::from_fields(&rlist_all(), &page.to_fields()), Ok(page));
    }
}

// ----- files -----

use vserv_core::commands::{
    DirEntry, FileKind, FileStat, LS_ENTRY_BUDGET, LS_MAX_LIMIT, ListPage, MAX_ENCODED_DIR_ENTRY,
    MAX_FILE_NAME,
};

fn file_commands() -> Vec<Command> {
    vec![
        Command::Ls(ListPage::default()),
        Command::Ls(ListPage {
            dir: Some("a b/c".into()),
            from: None,
            limit: None,
        }),
        Command::Ls(ListPage {
            dir: None,
            from: Some("m".into()),
            limit: None,
        }),
        Command::Lsd(ListPage {
            dir: None,
            from: None,
            limit: Some(LS_MAX_LIMIT),
        }),
        Command::Lsd(ListPage {
            dir: Some("~bob".into()),
            from: Some("x y".into()),
            limit: Some(1),
        }),
        Command::Cd { dir: "/".into() },
        Command::Pwd,
        Command::Stat {
            path: "f.txt".into(),
        },
        Command::Mkdir { path: "d".into() },
        Command::Rmdir { path: "d".into() },
        Command::Del { path: "d/f".into() },
        Command::Mv {
            from: "a".into(),
            to: "b/c".into(),
        },
    ]
}

#[test]
fn file_commands_round_trip_and_are_for_users() {
    for cmd in file_commands() {
        let req = Request {
            id: 3,
            name: cmd.name().into(),
            args: cmd.args(),
        };
        assert_eq!(Command::parse(&req), Ok(cmd.clone()));
        assert_eq!(cmd.access(), Access::User, "{}", cmd.name());
    }
    // Empty DIR and FROM arguments mean none.
    assert_eq!(
        Command::parse(&request("ls", &[b"", b"", b"5"])),
        Ok(Command::Ls(ListPage {
            dir: None,
            from: None,
            limit: Some(5)
        }))
    );
}

#[test]
fn file_command_arguments_are_checked() {
    let bad = [
        request("cd", &[]),
        request("cd", &[b""]),
        request("cd", &[b"a", b"b"]),
        request("pwd", &[b"x"]),
        request("stat", &[&[0xFF]]),
        request("mkdir", &[b""]),
        request("mv", &[b"a"]),
        request("mv", &[b"a", b""]),
        request("ls", &[b"a", b"b", b"0"]),
        request("ls", &[b"a", b"b", b"1001"]),
        request("lsd", &[b"a", b"b", b"x"]),
        request("ls", &[b"a", b"b", b"1", b"2"]),
        request("ls", &[&[0xC3]]),
    ];
    for req in bad {
        let err = Command::parse(&req).expect_err(&format!("{} {:?}", req.name, req.args));
        assert_eq!(
            err.code,
            ErrorCode::BadArguments,
            "{} {:?}",
            req.name,
            req.args
        );
    }
}

#[test]
fn file_replies_round_trip_and_refuse_malformed_fields() {
    let stat = Reply::Stat(FileStat {
        kind: FileKind::File,
        size: 12,
        modified: 1_700_000_000,
        created: None,
        sha256: Some([0xAB; 32]),
    });
    let listing = Reply::Listing {
        entries: vec![DirEntry {
            name: "with  spaces ".into(),
            kind: FileKind::Dir,
            size: 0,
            modified: 9,
        }],
        next: Some("n".into()),
    };
    let ls = Command::Ls(ListPage::default());
    let stat_cmd = Command::Stat { path: "f".into() };
    for (cmd, reply) in [
        (&ls, &listing),
        (&stat_cmd, &stat),
        (&Command::Pwd, &Reply::Cwd("~bob/x".into())),
        (&Command::Mkdir { path: "d".into() }, &Reply::Done),
    ] {
        assert_eq!(
            Reply::from_fields(cmd, &reply.to_fields()).as_ref(),
            Ok(reply)
        );
    }
    assert_eq!(
        listing.to_fields()[1],
        b"d 0 9 with  spaces ".to_vec(),
        "KIND SIZE MTIME NAME"
    );
    let malformed: [(&Command, Vec<&[u8]>); 8] = [
        (&ls, vec![]),
        (&ls, vec![b"", b"x 1 2 name"]),
        (&ls, vec![b"", b"f 1 2 "]),
        (&ls, vec![b"", b"f -1 2 n"]),
        (&ls, vec![b"", b"f 1 2"]),
        (&stat_cmd, vec![b"f", b"1", b"2", b"", b"abc"]),
        (&stat_cmd, vec![b"f", b"1", b"2", b""]),
        (&Command::Pwd, vec![]),
    ];
    for (cmd, fields) in malformed {
        let fields: Vec<Vec<u8>> = fields.iter().map(|f| f.to_vec()).collect();
        assert!(Reply::from_fields(cmd, &fields).is_err(), "{fields:?}");
    }
}

#[test]
fn the_largest_listing_entry_fits_a_page() {
    let entry = DirEntry {
        name: "é".repeat(MAX_FILE_NAME / 2) + "x",
        kind: FileKind::File,
        size: u64::MAX,
        modified: u64::MAX,
    };
    assert_eq!(entry.name.len(), MAX_FILE_NAME);
    assert_eq!(entry.encoded_len(), entry.to_field().len());
    assert_eq!(entry.encoded_len(), MAX_ENCODED_DIR_ENTRY);
    // A page of entries filling the budget, with the longest `next`, fits one record.
    let per_page = LS_ENTRY_BUDGET / (4 + MAX_ENCODED_DIR_ENTRY);
    let reply = Reply::Listing {
        entries: vec![entry; per_page],
        next: Some("n".repeat(MAX_FILE_NAME)),
    };
    let response = Response {
        id: u32::MAX,
        result: Ok(reply.to_fields()),
    };
    let mut out = Vec::new();
    response.encode(&mut out);
    assert!(out.len() <= MAX_PAYLOAD, "{} bytes", out.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn listings_round_trip(
        entries in proptest::collection::vec(
            ("[^\u{0}/]{1,20}", any::<bool>(), any::<u64>(), any::<u64>()),
            0..8,
        ),
        next in proptest::option::of("[^/]{1,10}"),
    ) {
        let reply = Reply::Listing {
            entries: entries
                .into_iter()
                .map(|(name, dir, size, modified)| DirEntry {
                    name,
                    kind: if dir { FileKind::Dir } else { FileKind::File },
                    size,
                    modified,
                })
                .collect(),
            next,
        };
        let cmd = Command::Lsd(ListPage::default());
        prop_assert_eq!(Reply::from_fields(&cmd, &reply.to_fields()), Ok(reply.clone()));
        if let Reply::Listing { entries, .. } = &reply {
            for e in entries {
                prop_assert_eq!(e.encoded_len(), e.to_field().len());
            }
        }
    }

    #[test]
    fn file_command_arguments_never_panic(
        name in prop::sample::select(vec!["ls", "lsd", "cd", "pwd", "stat", "mkdir", "rmdir", "del", "mv"]),
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..5),
    ) {
        let req = Request { id: 1, name: name.into(), args };
        if let Ok(cmd) = Command::parse(&req) {
            let again = Request { id: 1, name: cmd.name().into(), args: cmd.args() };
            prop_assert_eq!(Command::parse(&again), Ok(cmd));
        }
    }
}

// ----- transfer commands (spec/files.md) -----

use vserv_core::transfer::{
    FcloseArgs, FdoneArgs, FdoneReply, FgetArgs, FgetReply, FopenArgs, FopenReply, FreadArgs,
    FreadReply, MAX_FPUT_DATA, MAX_FREAD_LEN,
};

fn transfer_commands() -> Vec<Command> {
    vec![
        Command::Fopen(FopenArgs {
            path: "a b/f".into(),
            size: vserv_core::transfer::MAX_FILE_SIZE,
            resume: false,
        }),
        Command::Fopen(FopenArgs {
            path: "f".into(),
            size: 0,
            resume: true,
        }),
        Command::Fput {
            id: 1,
            offset: 1 << 32,
            data: vec![7; MAX_FPUT_DATA],
        },
        Command::Fdone(FdoneArgs {
            id: u32::MAX,
            sha256: [9; 32],
        }),
        Command::Fget(FgetArgs {
            path: "~bob/f".into(),
        }),
        Command::Fread(FreadArgs {
            id: 2,
            offset: u64::MAX - 1,
            len: u32::try_from(MAX_FREAD_LEN).expect("fits"),
        }),
        Command::Fclose(FcloseArgs { id: 3 }),
    ]
}

#[test]
fn transfer_commands_round_trip_and_are_for_users() {
    let names: Vec<&str> = transfer_commands().iter().map(Command::name).collect();
    for name in ["fopen", "fput", "fdone", "fget", "fread", "fclose"] {
        assert!(names.contains(&name), "{name} missing");
        let info = command_info(name).expect("registered");
        assert_eq!(info.access, Access::User, "{name}");
    }
    for cmd in transfer_commands() {
        let req = Request {
            id: 4,
            name: cmd.name().into(),
            args: cmd.args(),
        };
        assert_eq!(Command::parse(&req), Ok(cmd.clone()));
        assert_eq!(cmd.access(), Access::User, "{}", cmd.name());
    }
    // The example of spec/files.md §2.2: fput with transfer id 1, offset 2^32, "abc".
    let fput = Command::Fput {
        id: 1,
        offset: 1 << 32,
        data: b"abc".to_vec(),
    };
    let mut bytes = Vec::new();
    Request {
        id: 7,
        name: fput.name().into(),
        args: fput.args(),
    }
    .encode(&mut bytes);
    let expected: Vec<u8> = [
        &[0x01, 0, 0, 0, 7, 4][..],
        b"fput",
        &[0, 3],
        &[0, 0, 0, 4, 0, 0, 0, 1],
        &[0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
        &[0, 0, 0, 3],
        b"abc",
    ]
    .concat();
    assert_eq!(bytes, expected);
    assert_eq!(
        fput.fput_args().map(|a| (a.id, a.offset, a.data.to_vec())),
        Some((1, 1 << 32, b"abc".to_vec()))
    );
    assert_eq!(Command::Pwd.fput_args(), None);
}

#[test]
fn transfer_command_arguments_are_checked() {
    let code = |req: Request| Command::parse(&req).map(|_| ()).map_err(|e| e.code);
    let id = 1u32.to_be_bytes();
    let off = 0u64.to_be_bytes();
    let size = 5u64.to_be_bytes();
    assert_eq!(
        code(request("fopen", &[b"f"])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(request("fopen", &[b"f", b"5"])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(request("fopen", &[b"", &size])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(request("fopen", &[b"f", &size, b"again"])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(request("fopen", &[&[b'a'; 4097], &size])),
        Err(ErrorCode::TooLarge)
    );
    // files.md §1: a SIZE beyond MAX_FILE_SIZE (2^63 - 1, what a file offset can hold) is a
    // bad argument, refused before the server touches its file system.
    for huge in [1u64 << 63, u64::MAX] {
        assert_eq!(
            code(request("fopen", &[b"f", &huge.to_be_bytes()])),
            Err(ErrorCode::BadArguments),
            "SIZE {huge}"
        );
    }
    assert_eq!(
        code(request("fopen", &[b"f", &(u64::MAX >> 1).to_be_bytes()])),
        Ok(())
    );
    assert_eq!(
        code(request("fput", &[&id, &off, b""])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(request("fput", &[&id, &off, &vec![0; MAX_FPUT_DATA + 1]])),
        Err(ErrorCode::TooLarge)
    );
    assert_eq!(
        code(request("fput", &[&id, &off])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(request("fdone", &[&id, &[0; 31]])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(code(request("fget", &[])), Err(ErrorCode::BadArguments));
    // files.md §4: LEN 0 is a bad argument (2), only a LEN over MAX_FREAD_LEN is too large (4).
    assert_eq!(
        code(request("fread", &[&id, &off, &0u32.to_be_bytes()])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(request("fread", &[&id, &off, &u32::MAX.to_be_bytes()])),
        Err(ErrorCode::TooLarge)
    );
    assert_eq!(
        code(request("fclose", &[&[0; 3]])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(code(request("fclose", &[&id])), Ok(()));
}

#[test]
fn transfer_replies_round_trip_and_refuse_malformed_fields() {
    let fopen = &transfer_commands()[0];
    let fread = Command::Fread(FreadArgs {
        id: 1,
        offset: 0,
        len: 3,
    });
    let cases = [
        (
            fopen.clone(),
            Reply::Opened(FopenReply {
                id: 1,
                offset: 2,
                prefix_sha256: [3; 32],
            }),
        ),
        (
            Command::Fdone(FdoneArgs {
                id: 1,
                sha256: [0; 32],
            }),
            Reply::Uploaded(FdoneReply {
                size: 4,
                sha256: [5; 32],
            }),
        ),
        (
            Command::Fget(FgetArgs { path: "f".into() }),
            Reply::Download(FgetReply {
                id: 6,
                size: 7,
                sha256: [8; 32],
            }),
        ),
        (
            fread.clone(),
            Reply::Data(FreadReply {
                data: b"xyz".to_vec(),
            }),
        ),
        (transfer_commands()[2].clone(), Reply::Done),
        (Command::Fclose(FcloseArgs { id: 1 }), Reply::Done),
    ];
    for (cmd, reply) in cases {
        let fields = reply.to_fields();
        assert_eq!(
            Reply::from_fields(&cmd, &fields),
            Ok(reply),
            "{}",
            cmd.name()
        );
        // One field too many is refused.
        let mut more = fields.clone();
        more.push(Vec::new());
        assert!(Reply::from_fields(&cmd, &more).is_err(), "{}", cmd.name());
    }
    // A read reply must hold exactly LEN bytes.
    assert!(Reply::from_fields(&fread, &[b"xy".to_vec()]).is_err());
    assert!(Reply::from_fields(&fread, &[b"wxyz".to_vec()]).is_err());
    // Fixed-width fields.
    assert!(Reply::from_fields(fopen, &[vec![0; 4], vec![0; 7], vec![0; 32]]).is_err());
}

#[test]
fn integrity_is_error_code_9() {
    assert_eq!(ErrorCode::Integrity.to_u16(), 9);
    assert_eq!(ErrorCode::from_u16(9), ErrorCode::Integrity);
    // 10 became `CodeNeeded` (two-factor login); the first number past the known ones is
    // still kept as `Other`.
    assert_eq!(ErrorCode::from_u16(10), ErrorCode::CodeNeeded);
    assert_eq!(ErrorCode::CodeNeeded.to_u16(), 10);
    assert_eq!(ErrorCode::from_u16(11), ErrorCode::Other(11));
    let help = vserv_core::commands::help_text(None).expect("help");
    assert!(help.len() < MAX_PAYLOAD);
    for name in ["fopen", "fput", "fdone", "fget", "fread", "fclose"] {
        assert!(help.contains(name), "{name} not in help");
    }
}

// ----- delivery commands (protocol.md §13.5) -----

use vserv_core::commands::{Delivery, DeliveryState, MAX_NOTE, SendArgs};

fn delivery_request(name: &str, args: &[&[u8]]) -> Request {
    Request {
        id: 9,
        name: name.into(),
        args: args.iter().map(|a| a.to_vec()).collect(),
    }
}

#[test]
fn delivery_commands_round_trip_and_check_their_arguments() {
    let cmds = [
        Command::Send(SendArgs {
            to: "bob".into(),
            path: "out/a b.txt".into(),
            folder: None,
            note: None,
        }),
        Command::Send(SendArgs {
            to: "bob".into(),
            path: "f".into(),
            folder: Some("work".into()),
            note: None,
        }),
        Command::Send(SendArgs {
            to: "bob".into(),
            path: "f".into(),
            folder: None,
            note: Some("for you".into()),
        }),
        Command::Inbox(ListPage::default()),
        Command::Inbox(ListPage {
            dir: Some("work".into()),
            from: Some("b".into()),
            limit: Some(5),
        }),
    ];
    for cmd in cmds {
        let req = Request {
            id: 1,
            name: cmd.name().into(),
            args: cmd.args(),
        };
        assert_eq!(Command::parse(&req), Ok(cmd.clone()));
        assert_eq!(cmd.access(), Access::User);
    }
    let code = |req: Request| Command::parse(&req).map(|_| ()).map_err(|e| e.code);
    assert_eq!(
        code(delivery_request("send", &[b"bob"])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(delivery_request("send", &[b"bob", b"f", b"d", b"n", b"x"])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(delivery_request(
            "send",
            &[b"bob", b"f", b"", b"line\nbreak"]
        )),
        Err(ErrorCode::BadArguments)
    );
    let long = vec![b'n'; MAX_NOTE + 1];
    assert_eq!(
        code(delivery_request("send", &[b"bob", b"f", b"", &long])),
        Err(ErrorCode::BadArguments)
    );
    assert_eq!(
        code(delivery_request("send", &[b"bob", b"f", b"", &long[1..]])),
        Ok(())
    );
    assert_eq!(
        code(delivery_request("inbox", &[b"", b"", b"0"])),
        Err(ErrorCode::BadArguments)
    );
}

#[test]
fn delivery_replies_round_trip() {
    let entry = Delivery {
        name: "2-a b.txt".into(),
        state: DeliveryState::Refused,
        from: "alice".into(),
        time: 1_700_000_000,
        size: 42,
        sha256: [0xab; 32],
        note: "see: this".into(),
        reason: "no way".into(),
    };
    let inbox = Command::Inbox(ListPage::default());
    let reply = Reply::Deliveries {
        entries: vec![entry.clone()],
        next: Some("z".into()),
    };
    assert_eq!(Reply::from_fields(&inbox, &reply.to_fields()), Ok(reply));
    let empty = Reply::Deliveries {
        entries: Vec::new(),
        next: None,
    };
    assert_eq!(Reply::from_fields(&inbox, &empty.to_fields()), Ok(empty));
    // A bad state or a missing field is refused.
    let bad = String::from_utf8(entry.to_field())
        .expect("utf8")
        .replace("refused", "maybe");
    assert!(Reply::from_fields(&inbox, &[Vec::new(), bad.into_bytes()]).is_err());
    assert!(Reply::from_fields(&inbox, &[Vec::new(), b"a\trefused".to_vec()]).is_err());
    for state in ["pending", "received", "refused", "failed"] {
        assert_eq!(
            DeliveryState::from_name(state).map(DeliveryState::as_str),
            Some(state)
        );
    }
    let send = Command::Send(SendArgs {
        to: "bob".into(),
        path: "f".into(),
        folder: None,
        note: None,
    });
    let delivered = Reply::Delivered("f".into());
    assert_eq!(
        Reply::from_fields(&send, &delivered.to_fields()),
        Ok(delivered)
    );
    assert!(Reply::from_fields(&send, &[]).is_err());
}
