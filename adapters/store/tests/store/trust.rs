use std::fs;

use vserv_core::Fingerprint;
use vserv_store::known_servers::KnownServers;
use vserv_store::trust::{PinOverRecord, TrustDecision, TrustError, decide, decide_with};

use super::{TestResult, key};

fn setup() -> Result<(tempfile::TempDir, std::path::PathBuf), std::io::Error> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join(".vserv/known_servers");
    Ok((tmp, path))
}

#[test]
fn first_contact_records_then_known() -> TestResult {
    let (_tmp, path) = setup()?;
    let mut known = KnownServers::load(&path)?;
    let decision = decide(&mut known, "srv:4433", &key(1), None)?;
    assert_eq!(
        decision,
        TrustDecision::FirstContact {
            fingerprint: key(1).fingerprint()
        }
    );
    assert_eq!(KnownServers::load(&path)?.lookup("srv:4433"), Some(key(1)));

    let mut fresh = KnownServers::load(&path)?;
    assert_eq!(
        decide(&mut fresh, "SRV:4433", &key(1), None)?,
        TrustDecision::Known
    );
    assert_eq!(
        decide(&mut known, "srv:4433", &key(1), None)?,
        TrustDecision::Known
    );
    Ok(())
}

#[test]
fn changed_key_is_an_error_and_file_unchanged() -> TestResult {
    let (_tmp, path) = setup()?;
    let mut known = KnownServers::load(&path)?;
    decide(&mut known, "srv:4433", &key(1), None)?;
    let before = fs::read(&path)?;
    for pin in [None, Some(key(2).fingerprint())] {
        let mut known = KnownServers::load(&path)?;
        let err = decide(&mut known, "srv:4433", &key(2), pin.as_ref())
            .err()
            .ok_or("accepted a changed key")?;
        match &err {
            TrustError::KeyChanged {
                known: k,
                presented,
                host,
                file,
            } => {
                assert_eq!(*k, key(1).fingerprint());
                assert_eq!(*presented, key(2).fingerprint());
                assert_eq!(host, "srv:4433");
                assert_eq!(file.as_deref(), Some(path.as_path()));
            }
            other => panic!("expected KeyChanged, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&key(1).fingerprint().to_string()), "{msg}");
        assert!(msg.contains(&key(2).fingerprint().to_string()), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert_eq!(fs::read(&path)?, before, "known_servers was modified");
        assert_eq!(known.lookup("srv:4433"), Some(key(1)));
    }
    Ok(())
}

#[test]
fn pin_match_is_accepted_and_recorded() -> TestResult {
    let (_tmp, path) = setup()?;
    let mut known = KnownServers::load(&path)?;
    let pin = key(3).fingerprint();
    assert_eq!(
        decide(&mut known, "p:1", &key(3), Some(&pin))?,
        TrustDecision::Pinned
    );
    assert_eq!(KnownServers::load(&path)?.lookup("p:1"), Some(key(3)));
    // Pinned and already known with the same key.
    assert_eq!(
        decide(&mut known, "p:1", &key(3), Some(&pin))?,
        TrustDecision::Pinned
    );
    Ok(())
}

#[test]
fn pin_mismatch_is_an_error_and_records_nothing() -> TestResult {
    let (_tmp, path) = setup()?;
    let mut known = KnownServers::load(&path)?;
    let pin: Fingerprint = key(4).fingerprint();
    let err = decide(&mut known, "p:1", &key(5), Some(&pin)).err();
    match err {
        Some(TrustError::PinMismatch { expected, actual }) => {
            assert_eq!(expected, pin);
            assert_eq!(actual, key(5).fingerprint());
        }
        other => panic!("expected PinMismatch, got {other:?}"),
    }
    assert!(!path.exists(), "a mismatched key was recorded");
    assert!(known.is_empty());
    Ok(())
}

#[test]
fn an_explicit_pin_wins_over_a_recorded_key_only_when_asked() -> TestResult {
    let (_tmp, path) = setup()?;
    let mut known = KnownServers::load(&path)?;
    decide(&mut known, "srv:1", &key(1), None)?;
    let before = fs::read(&path)?;
    let pin = key(2).fingerprint();
    // Refuse (the default) keeps the old behaviour.
    assert!(matches!(
        decide_with(
            &mut known,
            "srv:1",
            &key(2),
            Some(&pin),
            PinOverRecord::Refuse
        ),
        Err(TrustError::KeyChanged { .. })
    ));
    // Without a pin, no policy lets a changed key in.
    assert!(matches!(
        decide_with(&mut known, "srv:1", &key(2), None, PinOverRecord::Replace),
        Err(TrustError::KeyChanged { .. })
    ));
    // KeepRecord: accepted, the file untouched.
    assert_eq!(
        decide_with(
            &mut known,
            "srv:1",
            &key(2),
            Some(&pin),
            PinOverRecord::KeepRecord
        )?,
        TrustDecision::PinnedOverRecorded {
            recorded: key(1).fingerprint(),
            replaced: false
        }
    );
    assert_eq!(fs::read(&path)?, before, "known_servers was modified");
    // A pin that does not match is still refused.
    assert!(matches!(
        decide_with(
            &mut known,
            "srv:1",
            &key(3),
            Some(&pin),
            PinOverRecord::Replace
        ),
        Err(TrustError::PinMismatch { .. })
    ));
    // Replace: accepted and recorded.
    assert_eq!(
        decide_with(
            &mut known,
            "srv:1",
            &key(2),
            Some(&pin),
            PinOverRecord::Replace
        )?,
        TrustDecision::PinnedOverRecorded {
            recorded: key(1).fingerprint(),
            replaced: true
        }
    );
    assert_eq!(KnownServers::load(&path)?.lookup("srv:1"), Some(key(2)));
    Ok(())
}

#[test]
fn forget_removes_one_host_and_keeps_the_rest() -> TestResult {
    let (_tmp, path) = setup()?;
    let mut known = KnownServers::load(&path)?;
    known.record("a:1", &key(1))?;
    known.record("b:1", &key(2))?;
    assert_eq!(known.forget("A:1")?, Some(key(1)));
    let fresh = KnownServers::load(&path)?;
    assert_eq!(fresh.lookup("a:1"), None);
    assert_eq!(fresh.lookup("b:1"), Some(key(2)));
    let before = fs::read(&path)?;
    assert_eq!(known.forget("c:1")?, None);
    assert_eq!(fs::read(&path)?, before);
    Ok(())
}
