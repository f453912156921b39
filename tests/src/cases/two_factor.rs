//! Two-factor login on every runtime: enable (pending), confirm with a current code, a login
//! answered "code needed" and finished by `otp`, a reused and a wrong code refused with the
//! server still serving, disable with a recovery code.
//!
//! The code is computed here from the enrolment URI's secret with the same TOTP crate an
//! authenticator would use, at the server's own clock (read from a ledger entry's
//! timestamp), so the case runs alike on real clocks and the simulator's virtual one.

use totp_rs::{Builder, Secret};
use vserv_core::ErrorCode;
use vserv_core::commands::{Command, OtpCode, RecordSelector, Reply, TwoFactorAction};

use crate::clients::*;
use crate::fixture::*;
use crate::{Runtime, TestClient};

/// The authenticator's code at Unix second `t` for the secret in `uri`.
fn code_at(uri: &str, t: u64) -> String {
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .expect("a secret in the URI");
    Builder::new()
        .with_secret(Secret::try_from_base32(secret).expect("base32 secret"))
        .build()
        .expect("an RFC 6238 secret")
        .generate(t)
        .to_string()
}

fn code(text: &str) -> OtpCode {
    OtpCode::parse(text.as_bytes()).expect("a well-formed code")
}

/// The server's clock now, Unix seconds: the timestamp of an entry it appends.
fn server_time<C: TestClient>(client: &mut C, record_id: &str) -> u64 {
    client
        .call(&Command::Rput {
            kind: "clock".into(),
            record_id: record_id.as_bytes().to_vec(),
            body: Vec::new(),
        })
        .expect("rput");
    let Ok(Reply::Record(entry)) = client.call(&Command::Rget {
        selector: RecordSelector::Id(record_id.as_bytes().to_vec()),
        origin: None,
    }) else {
        panic!("rget answered otherwise");
    };
    entry.timestamp() / 1000
}

/// Enable, confirm, a login needing a code, a reused and a wrong code, disable.
pub fn two_factor_login<R: Runtime>() {
    let fx = Fixture::new(150);
    let server = start::<R>(&fx);
    let (_root, mut alice) = ledger_users::<R>(&server, &fx);
    let Ok(Reply::TwoFactorEnrolment { uri, recovery }) =
        alice.call(&Command::TwoFactor(TwoFactorAction::Enable))
    else {
        panic!("2fa enable answered otherwise");
    };
    assert!(
        uri.starts_with("otpauth://totp/vserv:alice?secret="),
        "{uri}"
    );
    assert_eq!(recovery.len(), 10);
    // Pending: logins need no code until it is confirmed.
    drop(logged_in::<R>(&server, &fx, "alice", "alice-password"));
    let t = server_time(&mut alice, "t0");
    done(
        &mut alice,
        Command::TwoFactor(TwoFactorAction::Confirm(code(&code_at(&uri, t)))),
    );

    // A login now needs a code; the session is anonymous until it is given.
    let mut second = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(
        code_of(second.call(&login_cmd("alice", "alice-password"))),
        Some(ErrorCode::CodeNeeded)
    );
    assert_eq!(second.call(&Command::Whoami).ok(), Some(Reply::Anonymous));
    let next = code_at(&uri, t + 30);
    assert!(matches!(
        second.call(&Command::Otp { code: code(&next) }),
        Ok(Reply::User { .. })
    ));
    // The same code again is refused.
    assert_eq!(
        code_of(second.call(&Command::TwoFactor(TwoFactorAction::Disable(code(&next))))),
        Some(ErrorCode::LoginFailed)
    );

    // A wrong code: refused, the session stays anonymous, the server keeps serving.
    let now = server_time(&mut alice, "t1");
    let valid: Vec<String> = (0..4).map(|i| code_at(&uri, now - 30 + 30 * i)).collect();
    let wrong = (0..10u32)
        .map(|d| format!("{d}{d}{d}{d}{d}{d}"))
        .find(|c| !valid.contains(c))
        .expect("a code no near step has");
    let mut third = R::connect(&server, &fx.options()).expect("connect");
    assert_eq!(
        code_of(third.call(&login_cmd("alice", "alice-password"))),
        Some(ErrorCode::CodeNeeded)
    );
    assert_eq!(
        code_of(third.call(&Command::Otp { code: code(&wrong) })),
        Some(ErrorCode::LoginFailed)
    );
    assert_eq!(third.call(&Command::Whoami).ok(), Some(Reply::Anonymous));
    assert!(matches!(
        second.call(&Command::Whoami),
        Ok(Reply::User { .. })
    ));

    // Disable with a recovery code; then there is nothing left to disable.
    done(
        &mut second,
        Command::TwoFactor(TwoFactorAction::Disable(code(&recovery[0]))),
    );
    assert_eq!(
        code_of(
            second.call(&Command::TwoFactor(TwoFactorAction::Disable(code(
                &recovery[1]
            ))))
        ),
        Some(ErrorCode::Forbidden)
    );
}
