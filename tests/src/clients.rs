//! What the cases do with clients again and again: log in, create the first admin, read an
//! error code, expect a `Done` or a listing.

use vserv_core::ErrorCode;
use vserv_core::commands::{Command, Reply};
use vserv_service::client::ClientError;

use crate::{Fixture, Runtime, TestClient};

/// The password of the first admin `root`.
pub const ROOT_PASSWORD: &str = "root-password";

/// `s` as a password.
pub fn secret(s: &str) -> vserv_core::commands::SecretBytes {
    vserv_core::commands::SecretBytes::new(s.as_bytes().to_vec())
}

/// `login` of `user` with `password`.
pub fn login_cmd(user: &str, password: &str) -> Command {
    Command::Login {
        user: user.into(),
        credential: vserv_core::commands::Credential::Password(secret(password)),
    }
}

/// The error code the server answered, if `result` is a server's error.
pub fn code_of(result: Result<Reply, ClientError>) -> Option<ErrorCode> {
    match result {
        Err(ClientError::Server(e)) => Some(e.code),
        _ => None,
    }
}

/// Creates the first admin `root` (from loopback) and returns a client logged in as it.
pub fn root_client<R: Runtime>(server: &R::Server, fx: &Fixture) -> R::Client {
    let mut c = R::connect(server, &fx.options()).expect("connect");
    c.call(&Command::Uini {
        user: "root".into(),
        password: secret(ROOT_PASSWORD),
    })
    .expect("uini");
    c.call(&login_cmd("root", ROOT_PASSWORD))
        .expect("root login");
    c
}

/// A new client of `server` logged in as `user`.
pub fn logged_in<R: Runtime>(
    server: &R::Server,
    fx: &Fixture,
    user: &str,
    password: &str,
) -> R::Client {
    let mut c = R::connect(server, &fx.options()).expect("connect");
    c.call(&login_cmd(user, password)).expect("login");
    c
}

/// A server with the admin `root` and the user `alice`: (root, alice).
pub fn ledger_users<R: Runtime>(server: &R::Server, fx: &Fixture) -> (R::Client, R::Client) {
    let mut root = root_client::<R>(server, fx);
    root.call(&Command::Uadd {
        user: "alice".into(),
        password: secret("alice-password"),
    })
    .expect("uadd");
    let alice = logged_in::<R>(server, fx, "alice", "alice-password");
    (root, alice)
}

/// Runs `command`, which must answer `Done`.
pub fn done<C: TestClient>(client: &mut C, command: Command) {
    assert_eq!(client.call(&command).ok(), Some(Reply::Done), "{command:?}");
}

/// Runs `command`, which must answer a listing: its entries and the next page's start.
pub fn listing<C: TestClient>(
    client: &mut C,
    command: Command,
) -> (Vec<vserv_core::commands::DirEntry>, Option<String>) {
    match client.call(&command) {
        Ok(Reply::Listing { entries, next }) => (entries, next),
        other => panic!("{command:?} gave {other:?}"),
    }
}
