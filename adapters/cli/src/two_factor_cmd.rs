//! `vserv 2fa enable|disable`: the logged-in user's two-factor login. `enable` draws the
//! otpauth URI as a QR code in the terminal, prints the recovery codes once, then asks for
//! a current code and confirms it (`confirm` does that later, for a pending secret);
//! `disable` takes a current code or a recovery code.

use anyhow::anyhow;
use clap::ValueEnum;
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use vserv_core::commands::{Command, OtpCode, Reply, TwoFactorAction};

use crate::client_cmd::{Connected, print_reply};
use crate::show::escape;

/// What `vserv 2fa` does.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Make a secret (shown as a QR code), print recovery codes, confirm with a code.
    Enable,
    /// Confirm a pending secret with a current code (when `enable` could not ask).
    Confirm,
    /// Turn two-factor login off (needs a current code or a recovery code).
    Disable,
}

/// The code given on the command line, else read from the terminal after `prompt`.
fn code_from(given: Option<&str>, prompt: &str) -> anyhow::Result<OtpCode> {
    let typed = match given {
        Some(code) => code.to_owned(),
        None => rpassword::prompt_password(prompt)
            .map_err(|e| anyhow!("reading the code from the terminal (or pass CODE): {e}"))?,
    };
    OtpCode::parse(typed.trim().as_bytes()).map_err(|_| {
        anyhow!("not a two-factor code: six digits from the authenticator, or a recovery code")
    })
}

/// The QR code of `uri` drawn with half-block characters (two modules a character).
pub fn qr_text(uri: &str) -> anyhow::Result<String> {
    let code = QrCode::new(uri.as_bytes()).map_err(|e| anyhow!("drawing the QR code: {e}"))?;
    Ok(code.render::<Dense1x2>().quiet_zone(true).build())
}

/// Runs `2fa STEP [CODE]` on an open, logged-in connection.
pub fn run(connected: &mut Connected, step: Step, code: Option<&str>) -> anyhow::Result<()> {
    match step {
        Step::Enable => {
            let reply = connected
                .client
                .call(&Command::TwoFactor(TwoFactorAction::Enable))?;
            let Reply::TwoFactorEnrolment { uri, recovery } = reply else {
                print_reply(&reply, None);
                return Err(anyhow!("the server answered 2fa enable unexpectedly"));
            };
            println!("{}", qr_text(&uri)?);
            println!("Scan the code above with an authenticator app, or enter this URI:");
            println!("{}", escape(&uri));
            println!("Recovery codes (each works once in place of a code; shown only now):");
            for c in &recovery {
                println!("  {}", escape(c));
            }
            let code = code_from(code, "current code from the authenticator: ")?;
            connected.run(&Command::TwoFactor(TwoFactorAction::Confirm(code)))?;
            println!("two-factor login is on: logins now ask for a code");
            Ok(())
        }
        Step::Confirm => {
            let code = code_from(code, "current code from the authenticator: ")?;
            connected.run(&Command::TwoFactor(TwoFactorAction::Confirm(code)))
        }
        Step::Disable => {
            let code = code_from(code, "current code or a recovery code: ")?;
            connected.run(&Command::TwoFactor(TwoFactorAction::Disable(code)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uri_draws_as_a_square_of_half_blocks() {
        let text = qr_text(
            "otpauth://totp/vserv:alice?secret=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA&issuer=vserv",
        )
        .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let width = lines[0].chars().count();
        assert!(width > 20);
        assert!(lines.iter().all(|l| l.chars().count() == width));
        // Two modules a line: about half as many lines as columns.
        assert!(lines.len() * 2 >= width && lines.len() * 2 <= width + 2);
        assert!(text.contains('█') || text.contains('▀') || text.contains('▄'));
    }

    #[test]
    fn codes_are_checked_before_anything_is_sent() {
        assert!(code_from(Some(" 123456 "), "").is_ok());
        assert!(code_from(Some("12345"), "").is_err());
        assert!(code_from(Some("abcd-efgh-2345-6777"), "").is_ok());
    }
}
