//! The audit log (tracing target `vserv::audit`): logins, failures, backoff refusals and
//! admin actions are recorded; no password, hash or key material ever is. Its own test
//! binary, with a global subscriber, so no other test's callsites interfere.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use vserv_core::Request;
use vserv_core::commands::{Command, Credential, SecretBytes};
use vserv_service::{Service, Session};

const T0: u64 = 1_700_000_000;

fn login(user: &str, password: &str) -> Command {
    Command::Login {
        user: user.into(),
        credential: Credential::Password(SecretBytes::new(password.as_bytes().to_vec())),
    }
}

fn run(service: &Service, session: &mut Session, cmd: &Command, now: u64) -> vserv_core::Response {
    let request = Request {
        id: 1,
        name: cmd.name().into(),
        args: cmd.args(),
    };
    service.answer(session, &request, now * 1000).0
}

/// A `MakeWriter` collecting everything written into one buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[test]
fn the_audit_log_records_logins_and_admin_actions_but_no_secrets() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let secrets = [
        "root-secret-pw",
        "wrong-secret-pw",
        "bob-secret-pw",
        "bob-new-secret",
        "root-next-secret",
    ];
    tracing::subscriber::set_global_default(subscriber).unwrap();
    {
        let svc = common::node("audit", 5).build().unwrap().service();
        let local = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut root = Session::new(local);
        let cmds = [
            Command::Uini {
                user: "root".into(),
                password: SecretBytes::new(secrets[0].as_bytes().to_vec()),
            },
            login("root", secrets[0]),
            Command::Uadd {
                user: "bob".into(),
                password: SecretBytes::new(secrets[2].as_bytes().to_vec()),
            },
            Command::Chpass {
                target: Some("bob".into()),
                old: None,
                new: SecretBytes::new(secrets[3].as_bytes().to_vec()),
            },
            Command::Chpass {
                target: None,
                old: Some(SecretBytes::new(secrets[0].as_bytes().to_vec())),
                new: SecretBytes::new(secrets[4].as_bytes().to_vec()),
            },
            Command::Uena {
                user: "bob".into(),
                enabled: false,
            },
            Command::Udel { user: "bob".into() },
        ];
        for cmd in &cmds {
            let r = run(&svc, &mut root, cmd, T0);
            assert!(r.result.is_ok(), "{}: {:?}", cmd.name(), r.result);
        }
        let mut other = Session::new(local);
        let _ = run(&svc, &mut other, &login("root", secrets[1]), T0 + 100);
        let _ = run(&svc, &mut other, &login("root", secrets[1]), T0 + 100);
    }
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("vserv::audit")).collect();
    let has = |words: &[&str]| audit.iter().any(|l| words.iter().all(|w| l.contains(w)));
    assert!(has(&["admin action", "uini", "root"]), "{log}");
    assert!(has(&["login", "user=root"]), "{log}");
    assert!(has(&["admin action", "uadd", "bob"]), "{log}");
    assert!(has(&["admin action", "chpass --for", "bob"]), "{log}");
    assert!(has(&["admin action", "chpass", "root"]), "{log}");
    assert!(has(&["admin action", "uena off", "bob"]), "{log}");
    assert!(has(&["admin action", "udel", "bob"]), "{log}");
    assert!(has(&["login failed", "root"]), "{log}");
    assert!(has(&["login refused by backoff", "root"]), "{log}");
    for secret in secrets {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
    // No password hash or salt either.
    assert!(!log.contains("$argon2"), "{log}");
}
