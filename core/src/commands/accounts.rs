//! The account commands: `login`, `logout`, `whoami`, user administration (`uini`, `uadd`,
//! `aadd`, `udel`, `uena`, `ulist`, `chpass`), login keys (`ukey`) and the second factor
//! (`otp`, `2fa`, value types in [`super::two_factor`]): their value types, argument and
//! reply codecs and sample values.

use zeroize::Zeroizing;

use super::args::{text, usage_error, utf8};
use super::reply::{Fields, Reply};
use super::two_factor::{OtpCode, TwoFactorAction};
use super::{Command, CommandKind};
use crate::Error;
use crate::secure::Fingerprint;
use crate::wire::{ErrorReply, POINT_LEN, SIGNATURE_LEN};

/// Bytes that must not leak: zeroized on drop, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The secret.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// What proves a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The user's password.
    Password(SecretBytes),
    /// A key registered for the user, and its ECDSA signature over
    /// [`login_signature_message`] for this session.
    Key {
        /// SEC1 compressed public key.
        public: [u8; POINT_LEN],
        /// Fixed-width r || s.
        signature: [u8; SIGNATURE_LEN],
    },
}

/// The message a key login signs: context, a zero byte, the session id, the user name as
/// sent. Binding the session id makes a signature worthless on any other connection.
pub fn login_signature_message(session_id: &[u8; 32], user: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(LOGIN_SIGNATURE_CONTEXT.len() + 33 + user.len());
    m.extend_from_slice(LOGIN_SIGNATURE_CONTEXT);
    m.push(0);
    m.extend_from_slice(session_id);
    m.extend_from_slice(user.as_bytes());
    m
}

/// Context prefix of a key login signature.
pub const LOGIN_SIGNATURE_CONTEXT: &[u8] = b"vserv/1 user login";

/// `ukey` sub-commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAction {
    /// Register a public key (SEC1 compressed) for the logged-in user.
    Add([u8; POINT_LEN]),
    /// List the fingerprints of the logged-in user's keys.
    List,
    /// Remove the key with this fingerprint.
    Del(Fingerprint),
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UserRole {
    /// An ordinary user.
    User,
    /// An administrator.
    Admin,
}

impl UserRole {
    /// `user` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::User => "user",
            UserRole::Admin => "admin",
        }
    }

    pub(super) fn parse(s: &str) -> Result<UserRole, Error> {
        match s {
            "user" => Ok(UserRole::User),
            "admin" => Ok(UserRole::Admin),
            _ => Err(Error::Malformed("role")),
        }
    }
}

/// One line of `ulist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// User name.
    pub name: String,
    /// Role.
    pub role: UserRole,
    /// Whether the user may log in.
    pub enabled: bool,
}

impl UserSummary {
    /// The `ulist` field: `name role enabled|disabled`.
    pub(super) fn to_field(&self) -> Vec<u8> {
        let state = if self.enabled { "enabled" } else { "disabled" };
        format!("{} {} {state}", self.name, self.role.as_str()).into_bytes()
    }

    /// Parses [`UserSummary::to_field`]'s text.
    fn from_field(line: &str) -> Result<UserSummary, Error> {
        let mut parts = line.split(' ');
        let (Some(name), Some(role), Some(state), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed("user line"));
        };
        let enabled = match state {
            "enabled" => true,
            "disabled" => false,
            _ => return Err(Error::Malformed("user state")),
        };
        Ok(UserSummary {
            name: name.to_owned(),
            role: UserRole::parse(role)?,
            enabled,
        })
    }
}

/// Parses the arguments of an account command.
pub(super) fn parse(kind: CommandKind, args: &[Vec<u8>]) -> Result<Command, ErrorReply> {
    let bad = || usage_error(kind);
    let user = |u: &[u8]| utf8(u, kind);
    let secret = |b: &Vec<u8>| SecretBytes::new(b.clone());
    Ok(match (kind, args) {
        (CommandKind::Logout, []) => Command::Logout,
        (CommandKind::Whoami, []) => Command::Whoami,
        (CommandKind::Login, [u, how, p]) if how == b"password" => Command::Login {
            user: user(u)?,
            credential: Credential::Password(secret(p)),
        },
        (CommandKind::Login, [u, how, public, signature]) if how == b"key" => Command::Login {
            user: user(u)?,
            credential: Credential::Key {
                public: public.as_slice().try_into().map_err(|_| bad())?,
                signature: signature.as_slice().try_into().map_err(|_| bad())?,
            },
        },
        (CommandKind::Uini, [u, p]) => Command::Uini {
            user: user(u)?,
            password: secret(p),
        },
        (CommandKind::Uadd, [u, p]) => Command::Uadd {
            user: user(u)?,
            password: secret(p),
        },
        (CommandKind::Aadd, [u, p]) => Command::Aadd {
            user: user(u)?,
            password: secret(p),
        },
        (CommandKind::Udel, [u]) => Command::Udel { user: user(u)? },
        (CommandKind::Uena, [u, state]) => Command::Uena {
            user: user(u)?,
            enabled: match state.as_slice() {
                b"on" => true,
                b"off" => false,
                _ => return Err(bad()),
            },
        },
        (CommandKind::Ulist, []) => Command::Ulist { filter: None },
        (CommandKind::Ulist, [f]) => Command::Ulist {
            filter: Some(utf8(f, kind)?),
        },
        (CommandKind::Chpass, [flag, t, new]) if flag == b"--for" => Command::Chpass {
            target: Some(user(t)?),
            old: None,
            new: secret(new),
        },
        (CommandKind::Chpass, [old, new]) => Command::Chpass {
            target: None,
            old: Some(secret(old)),
            new: secret(new),
        },
        (CommandKind::Ukey, [action, key]) if action == b"add" => Command::Ukey(KeyAction::Add(
            key.as_slice().try_into().map_err(|_| bad())?,
        )),
        (CommandKind::Ukey, [action]) if action == b"list" => Command::Ukey(KeyAction::List),
        (CommandKind::Ukey, [action, f]) if action == b"del" => {
            Command::Ukey(KeyAction::Del(user(f)?.parse().map_err(|_| bad())?))
        }
        (CommandKind::Otp, [c]) => Command::Otp {
            code: otp_code(c, kind)?,
        },
        (CommandKind::TwoFactor, [action]) if action == b"enable" => {
            Command::TwoFactor(TwoFactorAction::Enable)
        }
        (CommandKind::TwoFactor, [action, c]) if action == b"confirm" => {
            Command::TwoFactor(TwoFactorAction::Confirm(otp_code(c, kind)?))
        }
        (CommandKind::TwoFactor, [action, c]) if action == b"disable" => {
            Command::TwoFactor(TwoFactorAction::Disable(otp_code(c, kind)?))
        }
        (CommandKind::TwoFactor, [action, u]) if action == b"reset" => {
            Command::TwoFactor(TwoFactorAction::Reset(user(u)?))
        }
        _ => return Err(bad()),
    })
}

/// A one-time code argument; a malformed one is a usage error naming the command.
fn otp_code(arg: &[u8], kind: CommandKind) -> Result<OtpCode, ErrorReply> {
    OtpCode::parse(arg).map_err(|_| {
        let mut e = usage_error(kind);
        e.message = format!(
            "not a one-time code (six digits, or a recovery code); {}",
            e.message
        );
        e
    })
}

/// The wire arguments of an account command.
pub(super) fn encode(cmd: &Command) -> Vec<Vec<u8>> {
    match cmd {
        Command::Login {
            user,
            credential: Credential::Password(p),
        } => vec![text(user), text("password"), p.expose().to_vec()],
        Command::Login {
            user,
            credential: Credential::Key { public, signature },
        } => vec![text(user), text("key"), public.to_vec(), signature.to_vec()],
        Command::Uini { user, password }
        | Command::Uadd { user, password }
        | Command::Aadd { user, password } => vec![text(user), password.expose().to_vec()],
        Command::Udel { user } => vec![text(user)],
        Command::Uena { user, enabled } => {
            vec![text(user), text(if *enabled { "on" } else { "off" })]
        }
        Command::Ulist { filter: Some(f) } => vec![text(f)],
        Command::Chpass {
            target: Some(t),
            new,
            ..
        } => vec![text("--for"), text(t), new.expose().to_vec()],
        Command::Chpass {
            target: None,
            old,
            new,
        } => vec![
            old.as_ref()
                .map(|o| o.expose().to_vec())
                .unwrap_or_default(),
            new.expose().to_vec(),
        ],
        Command::Ukey(KeyAction::Add(key)) => vec![text("add"), key.to_vec()],
        Command::Ukey(KeyAction::List) => vec![text("list")],
        Command::Ukey(KeyAction::Del(f)) => vec![text("del"), text(&f.to_string())],
        Command::Otp { code } => vec![text(code.as_str())],
        Command::TwoFactor(TwoFactorAction::Enable) => vec![text("enable")],
        Command::TwoFactor(TwoFactorAction::Confirm(c)) => vec![text("confirm"), text(c.as_str())],
        Command::TwoFactor(TwoFactorAction::Disable(c)) => vec![text("disable"), text(c.as_str())],
        Command::TwoFactor(TwoFactorAction::Reset(u)) => vec![text("reset"), text(u)],
        _ => Vec::new(),
    }
}

/// Decodes the reply to an account command.
pub(super) fn decode_reply(cmd: &Command, fields: &Fields<'_>) -> Result<Reply, Error> {
    let user = || -> Result<Reply, Error> {
        fields.want(2)?;
        Ok(Reply::User {
            name: fields.text(0)?,
            role: UserRole::parse(&fields.text(1)?)?,
        })
    };
    match cmd {
        Command::Login { .. } | Command::Otp { .. } => user(),
        Command::TwoFactor(TwoFactorAction::Enable) => {
            let (uri, recovery) = fields
                .0
                .split_first()
                .ok_or(Error::Malformed("reply field count"))?;
            let uri = String::from_utf8(uri.clone()).map_err(|_| Error::Malformed("reply text"))?;
            if !uri.starts_with("otpauth://totp/") {
                return Err(Error::Malformed("otpauth uri"));
            }
            let recovery = recovery
                .iter()
                .map(|c| String::from_utf8(c.clone()).map_err(|_| Error::Malformed("reply text")))
                .collect::<Result<_, _>>()?;
            Ok(Reply::TwoFactorEnrolment { uri, recovery })
        }
        Command::Whoami if fields.0.is_empty() => Ok(Reply::Anonymous),
        Command::Whoami => user(),
        Command::Ulist { .. } => Ok(Reply::Users(
            fields
                .texts()?
                .iter()
                .map(|line| UserSummary::from_field(line))
                .collect::<Result<_, _>>()?,
        )),
        Command::Ukey(KeyAction::List) => Ok(Reply::Keys(
            fields
                .texts()?
                .iter()
                .map(|f| f.parse().map_err(|_| Error::Malformed("fingerprint")))
                .collect::<Result<_, _>>()?,
        )),
        Command::Logout
        | Command::Uini { .. }
        | Command::Uadd { .. }
        | Command::Aadd { .. }
        | Command::Udel { .. }
        | Command::Uena { .. }
        | Command::Chpass { .. }
        | Command::TwoFactor(_)
        | Command::Ukey(_) => fields.want(0).map(|()| Reply::Done),
        _ => Err(Fields::not_this_domain()),
    }
}

/// Sample account commands (at least one of each kind).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn samples() -> Vec<Command> {
    let secret = || SecretBytes::new(b"password".to_vec());
    vec![
        Command::Login {
            user: "u".into(),
            credential: Credential::Password(secret()),
        },
        Command::Login {
            user: "u".into(),
            credential: Credential::Key {
                public: [2; POINT_LEN],
                signature: [9; SIGNATURE_LEN],
            },
        },
        Command::Logout,
        Command::Whoami,
        Command::Uini {
            user: "u".into(),
            password: secret(),
        },
        Command::Uadd {
            user: "u".into(),
            password: secret(),
        },
        Command::Aadd {
            user: "u".into(),
            password: secret(),
        },
        Command::Udel { user: "u".into() },
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
            old: Some(secret()),
            new: secret(),
        },
        Command::Chpass {
            target: Some("bob".into()),
            old: None,
            new: secret(),
        },
        Command::Ukey(KeyAction::Add([3; POINT_LEN])),
        Command::Ukey(KeyAction::List),
        Command::Ukey(KeyAction::Del(Fingerprint([0; 32]))),
        Command::Otp {
            code: OtpCode::parse(b"123456").unwrap_or_else(|_| unreachable!()),
        },
        Command::Otp {
            code: OtpCode::parse(b"abcd-efgh-2345-6777").unwrap_or_else(|_| unreachable!()),
        },
        Command::TwoFactor(TwoFactorAction::Enable),
        Command::TwoFactor(TwoFactorAction::Confirm(
            OtpCode::parse(b"000000").unwrap_or_else(|_| unreachable!()),
        )),
        Command::TwoFactor(TwoFactorAction::Disable(
            OtpCode::parse(b"zzzzzzzzzzzzzzzz").unwrap_or_else(|_| unreachable!()),
        )),
        Command::TwoFactor(TwoFactorAction::Reset("bob".into())),
    ]
}

/// Sample replies to an account command.
#[cfg(any(test, feature = "fuzzing"))]
pub(super) fn sample_replies(cmd: &Command, _: &super::catalog::SampleValues) -> Vec<Reply> {
    match cmd {
        Command::Login { .. } | Command::Otp { .. } => vec![Reply::User {
            name: "u".into(),
            role: UserRole::Admin,
        }],
        Command::TwoFactor(TwoFactorAction::Enable) => vec![Reply::TwoFactorEnrolment {
            uri: "otpauth://totp/vserv:u?secret=AAAA&issuer=vserv".into(),
            recovery: vec!["abcd-efgh-2345-6777".into(), "zzzz-zzzz-zzzz-zzzz".into()],
        }],
        Command::Whoami => vec![
            Reply::Anonymous,
            Reply::User {
                name: "u".into(),
                role: UserRole::User,
            },
        ],
        Command::Ulist { .. } => vec![
            Reply::Users(Vec::new()),
            Reply::Users(vec![UserSummary {
                name: "u".into(),
                role: UserRole::User,
                enabled: false,
            }]),
        ],
        Command::Ukey(KeyAction::List) => vec![Reply::Keys(vec![Fingerprint([7; 32])])],
        Command::Logout
        | Command::Uini { .. }
        | Command::Uadd { .. }
        | Command::Aadd { .. }
        | Command::Udel { .. }
        | Command::Uena { .. }
        | Command::Chpass { .. }
        | Command::TwoFactor(_)
        | Command::Ukey(_) => vec![Reply::Done],
        _ => Vec::new(),
    }
}
