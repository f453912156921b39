//! Where secrets come from: passwords from the environment or a no-echo terminal prompt, user
//! key files from `vserv keygen --user`, public keys typed as hex. Every secret is held in a
//! zeroize-on-drop buffer.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use vserv_core::commands::{Credential, SecretBytes, login_signature_message};
use vserv_core::wire::POINT_LEN;
use vserv_core::{ServerIdentity, ServerKey};
use zeroize::Zeroizing;

/// Environment variable holding the password of the user logging in (`--user`).
pub const PASSWORD_ENV: &str = "VSERV_PASSWORD";

/// Environment variable holding the password of an account being created or changed.
pub const NEW_PASSWORD_ENV: &str = "VSERV_NEW_PASSWORD";

/// Label on the first line of a user key file (the server identity uses another label, so
/// neither file can be mistaken for the other).
pub const USER_KEY_LABEL: &str = "vserv-user-key-v1";

/// A password, wiped from memory when dropped.
pub type Password = Zeroizing<String>;

/// The value of environment variable `name`, if set (and valid UTF-8).
fn from_env(name: &str) -> anyhow::Result<Option<Password>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(Zeroizing::new(value))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => bail!("{name} is not valid UTF-8"),
    }
}

/// Asks for a password on the terminal without echo. Refused (with the variable to set
/// instead) when standard input is not a terminal, so scripts fail instead of hanging.
fn prompt(prompt: &str, env_hint: &str) -> anyhow::Result<Password> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password on; set {env_hint} instead");
    }
    let answer = rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .with_context(|| format!("reading the password from the terminal (or set {env_hint})"))?;
    Ok(answer)
}

/// The password of `user` logging in to `server`: `VSERV_PASSWORD`, else a prompt.
pub fn login_password(user: &str, server: &str) -> anyhow::Result<Password> {
    match from_env(PASSWORD_ENV)? {
        Some(p) => Ok(p),
        None => prompt(&format!("Password for {user} on {server}: "), PASSWORD_ENV),
    }
}

/// The current password of `user` (for changing it): `VSERV_PASSWORD`, else a prompt.
pub fn current_password(user: &str) -> anyhow::Result<Password> {
    match from_env(PASSWORD_ENV)? {
        Some(p) => Ok(p),
        None => prompt(&format!("Current password of {user}: "), PASSWORD_ENV),
    }
}

/// A new password for `user`: `VSERV_NEW_PASSWORD`, else asked twice on the terminal.
pub fn new_password(user: &str) -> anyhow::Result<Password> {
    if let Some(p) = from_env(NEW_PASSWORD_ENV)? {
        return Ok(p);
    }
    let first = prompt(&format!("New password for {user}: "), NEW_PASSWORD_ENV)?;
    let second = prompt(
        &format!("Repeat the password for {user}: "),
        NEW_PASSWORD_ENV,
    )?;
    if *first != *second {
        bail!("the two passwords do not match");
    }
    Ok(first)
}

/// The password as a protocol credential.
pub fn password_credential(password: &Password) -> Credential {
    Credential::Password(secret(password))
}

/// The password as protocol secret bytes.
pub fn secret(password: &Password) -> SecretBytes {
    SecretBytes::new(password.as_bytes().to_vec())
}

/// Reads the user key file at `path` (written by `vserv keygen --user`).
pub fn read_user_key(path: &Path) -> anyhow::Result<ServerIdentity> {
    let secret = vserv_store::keyfile::read_secret_key_file(path, USER_KEY_LABEL)?;
    ServerIdentity::from_secret_bytes(&secret[..])
        .map_err(|e| anyhow!("{} does not hold a valid key: {e}", path.display()))
}

/// The key login credential of `user` for the session `session_id`, signed with `key`.
pub fn key_credential(key: &ServerIdentity, session_id: &[u8; 32], user: &str) -> Credential {
    let message = login_signature_message(session_id, user);
    Credential::Key {
        public: *key.public_key().as_bytes(),
        signature: key.sign(&message),
    }
}

/// Parses a public key written as hex (66 digits, SEC1 compressed, as `keygen` prints it).
pub fn parse_public_key(text: &str) -> anyhow::Result<[u8; POINT_LEN]> {
    let text = text.trim();
    let bytes = hex::decode(text)
        .map_err(|_| anyhow!("not a public key: expected {} hex digits", 2 * POINT_LEN))?;
    let bytes: [u8; POINT_LEN] = bytes.as_slice().try_into().map_err(|_| {
        anyhow!(
            "not a public key: expected {} hex digits, got {}",
            2 * POINT_LEN,
            text.len()
        )
    })?;
    ServerKey::from_bytes(&bytes).map_err(|_| anyhow!("not a valid k256 public key"))?;
    Ok(bytes)
}

/// The public key held by `path`: either a user key file from `vserv keygen --user` (its
/// public half) or a text file holding the public key in hex.
pub fn public_key_from_file(path: &Path) -> anyhow::Result<[u8; POINT_LEN]> {
    let mut head = [0u8; USER_KEY_LABEL.len() + 1];
    let is_key_file = {
        use std::io::Read;
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut filled = 0;
        while filled < head.len() {
            let n = file
                .read(&mut head[filled..])
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        head[..filled] == *format!("{USER_KEY_LABEL}\n").as_bytes()
    };
    if is_key_file {
        return Ok(*read_user_key(path)?.public_key().as_bytes());
    }
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.len() > 4096 {
        bail!("{} is too large to hold a public key", path.display());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_public_key(&text).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_parse_from_hex() {
        let key = ServerIdentity::from_secret_bytes(&[7u8; 32]).unwrap();
        let hex = hex::encode(key.public_key().as_bytes());
        assert_eq!(
            parse_public_key(&format!(" {hex}\n")).unwrap(),
            *key.public_key().as_bytes()
        );
        assert!(parse_public_key(&hex[..64]).is_err());
        assert!(parse_public_key("zz").is_err());
        assert!(parse_public_key(&format!("04{}", &hex[2..])).is_err());
    }

    #[test]
    fn key_credential_verifies_against_the_public_key() {
        let key = ServerIdentity::from_secret_bytes(&[9u8; 32]).unwrap();
        let sid = [3u8; 32];
        let Credential::Key { public, signature } = key_credential(&key, &sid, "alice") else {
            panic!("not a key credential");
        };
        let public = ServerKey::from_bytes(&public).unwrap();
        assert!(
            public
                .verify(&login_signature_message(&sid, "alice"), &signature)
                .is_ok()
        );
        assert!(
            public
                .verify(&login_signature_message(&sid, "bob"), &signature)
                .is_err()
        );
    }
}
