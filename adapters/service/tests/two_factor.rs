//! Two-factor login through the service's own entry point (`Service::answer`, a fixed
//! clock): enable, confirm, the `otp` step of a login, codes of the previous, current and
//! next step accepted and farther ones refused, each code once, recovery codes once,
//! failed codes feeding the login backoff, disable, and an admin's reset.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rand::SeedableRng;
use totp_rs::{Builder, Secret};
use vserv_core::commands::{
    Command, Credential, OtpCode, Reply, SecretBytes, TwoFactorAction, UserRole,
};
use vserv_core::{ErrorCode, ErrorReply, Request};
use vserv_service::accounts::{Accounts, PasswordParams, UserName};
use vserv_service::limits::user_key;
use vserv_service::{Service, Session};
use vserv_store::kv::{Store, Table};
use vserv_store::memory::MemoryStore;

/// A fixed clock, 7 s into a 30 s step (1_800_000_000 is a multiple of 30).
const T0: u64 = 1_800_000_007;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));

fn setup() -> (MemoryStore, Service) {
    let store = MemoryStore::new();
    let rng = Box::new(rand::rngs::StdRng::seed_from_u64(15));
    let accounts =
        Accounts::new(Arc::new(store.clone()), PasswordParams::INSECURE_FAST, rng).unwrap();
    accounts
        .create("alice", UserRole::User, b"alice-password", T0)
        .unwrap();
    accounts
        .create("root", UserRole::Admin, b"root-password", T0)
        .unwrap();
    let service = common::node("two-factor", 15)
        .store(Arc::new(store.clone()))
        .build()
        .unwrap()
        .service();
    (store, service)
}

fn run(
    service: &Service,
    session: &mut Session,
    cmd: &Command,
    now: u64,
) -> Result<Reply, ErrorReply> {
    let request = Request {
        id: 1,
        name: cmd.name().into(),
        args: cmd.args(),
    };
    let (response, _) = service.answer(session, &request, now * 1000);
    response
        .result
        .map(|fields| Reply::from_fields(cmd, &fields).unwrap())
}

fn login(user: &str) -> Command {
    Command::Login {
        user: user.into(),
        credential: Credential::Password(SecretBytes::new(format!("{user}-password").into_bytes())),
    }
}

fn otp(code: &str) -> Command {
    Command::Otp {
        code: OtpCode::parse(code.as_bytes()).unwrap(),
    }
}

fn tfa(action: TwoFactorAction) -> Command {
    Command::TwoFactor(action)
}

fn code(text: &str) -> OtpCode {
    OtpCode::parse(text.as_bytes()).unwrap()
}

/// The authenticator's code at `t` for the secret in `uri`.
fn code_at(uri: &str, t: u64) -> String {
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap();
    let totp = Builder::new()
        .with_secret(Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    totp.generate(t).to_string()
}

/// A session logged in as `user` (without a second factor).
fn session_of(service: &Service, user: &str, now: u64) -> Session {
    let mut s = Session::new(Some(PEER));
    assert!(matches!(
        run(service, &mut s, &login(user), now),
        Ok(Reply::User { .. })
    ));
    s
}

/// Alice enables and confirms two-factor login at `T0`; returns the URI and recovery codes.
fn enrol_alice(service: &Service) -> (String, Vec<String>) {
    let mut s = session_of(service, "alice", T0);
    let Ok(Reply::TwoFactorEnrolment { uri, recovery }) =
        run(service, &mut s, &tfa(TwoFactorAction::Enable), T0)
    else {
        panic!("enable answered otherwise");
    };
    assert!(
        uri.starts_with("otpauth://totp/vserv:alice?secret="),
        "{uri}"
    );
    assert_eq!(recovery.len(), 10);
    // Pending: a new login needs no code yet.
    drop(session_of(service, "alice", T0));
    // A recovery code cannot confirm; a wrong code neither.
    let e = run(
        service,
        &mut s,
        &tfa(TwoFactorAction::Confirm(code(&recovery[0]))),
        T0,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::LoginFailed, "{}", e.message);
    let confirm = tfa(TwoFactorAction::Confirm(code(&code_at(&uri, T0))));
    assert_eq!(run(service, &mut s, &confirm, T0), Ok(Reply::Done));
    (uri, recovery)
}

/// A login of alice that is answered "code needed", then `otp code` at `now`.
fn login_with(
    service: &Service,
    session: &mut Session,
    code: &str,
    now: u64,
) -> Result<Reply, ErrorReply> {
    let e = run(service, session, &login("alice"), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::CodeNeeded, "{}", e.message);
    // Not logged in while the code is awaited.
    assert_eq!(
        run(service, session, &Command::Whoami, now),
        Ok(Reply::Anonymous)
    );
    run(service, session, &otp(code), now)
}

#[test]
fn codes_of_the_previous_current_and_next_step_log_in_and_farther_ones_are_stale() {
    let (_store, service) = setup();
    let (uri, _) = enrol_alice(&service);
    // The confirming code used step T0; later steps each log in once.
    let mut now = T0 + 60;
    for offset in [-30i64, 0, 30] {
        now += 90;
        let c = code_at(&uri, now.checked_add_signed(offset).unwrap());
        let mut s = Session::new(Some(PEER));
        let ok = login_with(&service, &mut s, &c, now);
        assert!(
            matches!(ok, Ok(Reply::User { .. })),
            "offset {offset}: {ok:?}"
        );
    }
    for offset in [-60i64, 60] {
        now += 90;
        let c = code_at(&uri, now.checked_add_signed(offset).unwrap());
        let mut s = Session::new(Some(PEER));
        let e = login_with(&service, &mut s, &c, now).unwrap_err();
        assert_eq!(e.code, ErrorCode::LoginFailed);
        assert!(e.message.contains("stale"), "{}", e.message);
        // Past the backoff of the failure.
        now += 60;
    }
}

#[test]
fn the_same_code_twice_is_refused_and_a_recovery_code_works_once() {
    let (_store, service) = setup();
    let (uri, recovery) = enrol_alice(&service);
    let now = T0 + 30;
    let c = code_at(&uri, now);
    let mut first = Session::new(Some(PEER));
    assert!(login_with(&service, &mut first, &c, now).is_ok());
    let mut second = Session::new(Some(PEER));
    let e = login_with(&service, &mut second, &c, now).unwrap_err();
    assert!(e.message.contains("already used"), "{}", e.message);
    // The confirming code (step T0) is used too.
    let later = now + 10;
    let mut third = Session::new(Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10))));
    let e = login_with(&service, &mut third, &code_at(&uri, T0), later + 2).unwrap_err();
    assert!(e.message.contains("already used"), "{}", e.message);
    // A recovery code, in any case and with its dashes, once.
    let at = later + 100;
    let mut r = Session::new(Some(PEER));
    let ok = login_with(&service, &mut r, &recovery[4].to_ascii_uppercase(), at);
    assert!(matches!(ok, Ok(Reply::User { .. })), "{ok:?}");
    let mut again = Session::new(Some(PEER));
    let e = login_with(&service, &mut again, &recovery[4], at + 100).unwrap_err();
    assert_eq!(e.code, ErrorCode::LoginFailed);
}

#[test]
fn a_failed_code_feeds_the_backoff_like_a_wrong_password() {
    let (store, service) = setup();
    let (uri, _) = enrol_alice(&service);
    let key = user_key(&UserName::parse("alice").unwrap());
    assert!(store.get(Table::Limits, &key).unwrap().is_none());
    let now = T0 + 300;
    let mut s = Session::new(Some(PEER));
    let e = login_with(&service, &mut s, "000000", now).unwrap_err();
    assert_eq!(e.code, ErrorCode::LoginFailed);
    assert!(
        store.get(Table::Limits, &key).unwrap().is_some(),
        "the failure is counted"
    );
    // The failed code ended the waiting login.
    let e = run(&service, &mut s, &otp(&code_at(&uri, now)), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    // Within the backoff even the right password is refused.
    let e = run(&service, &mut s, &login("alice"), now).unwrap_err();
    assert!(
        e.message.contains("too many failed attempts"),
        "{}",
        e.message
    );
    // After it, the right code logs in and resets the counter.
    let mut t = Session::new(Some(PEER));
    assert!(login_with(&service, &mut t, &code_at(&uri, now + 5), now + 5).is_ok());
    assert!(store.get(Table::Limits, &key).unwrap().is_none());
}

#[test]
fn malformed_codes_and_otp_without_a_login_get_typed_errors() {
    let (_store, service) = setup();
    enrol_alice(&service);
    let mut s = Session::new(Some(PEER));
    let bad = Request {
        id: 1,
        name: "otp".into(),
        args: vec![b"12345x".to_vec()],
    };
    let (response, close) = service.answer(&mut s, &bad, T0 * 1000);
    assert_eq!(response.result.unwrap_err().code, ErrorCode::BadArguments);
    assert!(close.is_none());
    let e = run(&service, &mut s, &otp("123456"), T0).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    // A code waiting too long expires.
    let e = run(&service, &mut s, &login("alice"), T0 + 40).unwrap_err();
    assert_eq!(e.code, ErrorCode::CodeNeeded);
    let e = run(&service, &mut s, &otp("123456"), T0 + 40 + 301).unwrap_err();
    assert!(e.message.contains("expired"), "{}", e.message);
}

#[test]
fn disable_needs_a_code_and_an_admin_can_reset() {
    let (_store, service) = setup();
    let (uri, _) = enrol_alice(&service);
    let now = T0 + 60;
    let mut s = Session::new(Some(PEER));
    assert!(login_with(&service, &mut s, &code_at(&uri, now), now).is_ok());
    // Enabling again while active is refused; disabling needs a right, unused code.
    let e = run(&service, &mut s, &tfa(TwoFactorAction::Enable), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let e = run(
        &service,
        &mut s,
        &tfa(TwoFactorAction::Disable(code(&code_at(&uri, now)))),
        now,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::LoginFailed, "{}", e.message);
    // Only admins reset.
    let e = run(
        &service,
        &mut s,
        &tfa(TwoFactorAction::Reset("alice".into())),
        now,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let later = now + 30;
    let disable = tfa(TwoFactorAction::Disable(code(&code_at(&uri, later))));
    assert_eq!(run(&service, &mut s, &disable, later), Ok(Reply::Done));
    drop(session_of(&service, "alice", later));
    let e = run(
        &service,
        &mut s,
        &tfa(TwoFactorAction::Disable(code("123456"))),
        later,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);

    // Enrolled again, then reset by an admin: logins need no code any more.
    let (_, _) = enrol_alice(&service);
    let mut root = session_of(&service, "root", later);
    let reset = tfa(TwoFactorAction::Reset("alice".into()));
    assert_eq!(run(&service, &mut root, &reset, later), Ok(Reply::Done));
    drop(session_of(&service, "alice", later));
    let e = run(&service, &mut root, &reset, later).unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let e = run(
        &service,
        &mut root,
        &tfa(TwoFactorAction::Reset("nobody".into())),
        later,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}
