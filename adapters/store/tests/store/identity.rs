use std::fs;
use std::os::unix::fs::PermissionsExt;

use vserv_store::identity::{self, IDENTITY_FILE, IdentityError};
use vserv_store::keyfile::KeyFileError;

use super::{TestResult, TestRng, mode};

#[test]
fn created_with_0600_in_a_0700_dir_and_reused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("a/b/data");
    let first = identity::load_or_create(&data, &mut TestRng(1))?;
    assert!(first.created);
    assert_eq!(first.path, data.join(IDENTITY_FILE));
    assert_eq!(mode(&first.path)?, 0o600);
    assert_eq!(
        mode(&data)? & 0o077,
        0,
        "data dir must not be group/other accessible"
    );
    assert_eq!(mode(&tmp.path().join("a"))? & 0o077, 0);
    let text = fs::read_to_string(&first.path)?;
    assert!(text.starts_with("vserv-identity-v1\n"), "{text:?}");

    // A different rng must not matter: the stored key is reused.
    let second = identity::load_or_create(&data, &mut TestRng(2))?;
    assert!(!second.created);
    assert_eq!(second.identity.public_key(), first.identity.public_key());
    let third = identity::load(&data)?;
    assert_eq!(third.identity.public_key(), first.identity.public_key());
    assert_eq!(
        fs::read_dir(&data)?.count(),
        1,
        "stray files in the data dir"
    );
    Ok(())
}

#[test]
fn group_readable_file_is_refused() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let created = identity::load_or_create(tmp.path(), &mut TestRng(3))?;
    let before = fs::read(&created.path)?;
    for bits in [0o640, 0o604, 0o660] {
        fs::set_permissions(&created.path, fs::Permissions::from_mode(bits))?;
        for result in [
            identity::load(tmp.path()),
            identity::load_or_create(tmp.path(), &mut TestRng(4)),
        ] {
            match result {
                Err(IdentityError::KeyFile(e @ KeyFileError::InsecurePermissions { .. })) => {
                    let msg = e.to_string();
                    assert!(msg.contains("chmod 600"), "{msg}");
                    assert!(msg.contains(&created.path.display().to_string()), "{msg}");
                }
                other => panic!("mode {bits:o}: expected InsecurePermissions, got {other:?}"),
            }
        }
        assert_eq!(fs::read(&created.path)?, before);
    }
    Ok(())
}

#[test]
fn corrupted_file_is_refused_and_left_untouched() -> TestResult {
    let bad_contents: [&[u8]; 6] = [
        b"",
        b"garbage",
        b"vserv-identity-v1\n",
        b"vserv-identity-v1\n0123\n",
        b"vserv-identity-v2\n0101010101010101010101010101010101010101010101010101010101010101\n",
        b"vserv-identity-v1\n0101010101010101010101010101010101010101010101010101010101010101\n#\n",
    ];
    for contents in bad_contents {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join(IDENTITY_FILE);
        fs::write(&path, contents)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        let result = identity::load_or_create(tmp.path(), &mut TestRng(5));
        match result {
            Err(IdentityError::KeyFile(KeyFileError::Malformed { ref path, .. })) => {
                assert_eq!(path, &tmp.path().join(IDENTITY_FILE));
            }
            other => panic!("{contents:?}: expected Malformed, got {other:?}"),
        }
        assert_eq!(fs::read(&path)?, contents, "file was modified");
        assert_eq!(fs::read_dir(tmp.path())?.count(), 1, "stray files");
    }
    Ok(())
}

#[test]
fn out_of_range_secret_is_refused() -> TestResult {
    for hex in ["00".repeat(32), "ff".repeat(32)] {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join(IDENTITY_FILE);
        let contents = format!("vserv-identity-v1\n{hex}\n");
        fs::write(&path, &contents)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        let result = identity::load_or_create(tmp.path(), &mut TestRng(6));
        assert!(
            matches!(result, Err(IdentityError::InvalidSecret { .. })),
            "{result:?}"
        );
        assert_eq!(fs::read_to_string(&path)?, contents);
    }
    Ok(())
}

#[test]
fn load_never_creates() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let missing = tmp.path().join("nope");
    let result = identity::load(&missing);
    assert!(
        matches!(
            result,
            Err(IdentityError::KeyFile(KeyFileError::Missing { .. }))
        ),
        "{result:?}"
    );
    assert!(!missing.exists(), "load created the data dir");

    // An existing but empty data dir: still missing, still nothing created.
    let result = identity::load(tmp.path());
    assert!(matches!(
        result,
        Err(IdentityError::KeyFile(KeyFileError::Missing { .. }))
    ));
    assert_eq!(fs::read_dir(tmp.path())?.count(), 0);
    Ok(())
}

#[test]
fn data_dir_that_is_a_file_is_an_error() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("file");
    fs::write(&file, b"x")?;
    let result = identity::load_or_create(&file, &mut TestRng(7));
    assert!(
        matches!(result, Err(IdentityError::NotADirectory { .. })),
        "{result:?}"
    );
    assert_eq!(fs::read(&file)?, b"x");
    Ok(())
}

#[test]
fn a_flipped_digit_is_refused_not_a_new_identity() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let created = identity::load_or_create(tmp.path(), &mut TestRng(7))?;
    let mut text = fs::read(&created.path)?;
    let at = "vserv-identity-v1\n".len() + 10;
    text[at] = if text[at] == b'0' { b'1' } else { b'0' };
    fs::write(&created.path, &text)?;
    match identity::load_or_create(tmp.path(), &mut TestRng(8)) {
        Err(IdentityError::KeyFile(KeyFileError::Malformed { reason, .. })) => {
            assert!(reason.contains("damaged"), "{reason}");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    assert_eq!(fs::read(&created.path)?, text, "file was modified");
    Ok(())
}
