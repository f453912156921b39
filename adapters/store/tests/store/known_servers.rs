use std::fs;

use proptest::prelude::*;
use vserv_core::ServerKey;
use vserv_store::known_servers::{
    KnownServers, KnownServersError, LineError, ParseError, default_path,
};

use super::{TestResult, key, mode};

/// One generated line: its text and, for an entry, the (host, key index).
fn line_strategy() -> impl Strategy<Value = (String, Option<(String, usize)>)> {
    prop_oneof![
        "[ \t]{0,3}".prop_map(|s| (s, None)),
        "[ \t]{0,2}#[^\n]{0,30}".prop_map(|s| (s, None)),
        (
            "[a-zA-Z0-9.-]{1,12}:[0-9]{1,5}",
            0usize..4,
            "[ \t]{1,3}",
            "[ \t]{0,2}",
            any::<bool>(),
        )
            .prop_map(|(host, k, sep, lead, upper)| {
                let mut hex = hex::encode(key(k as u8).as_bytes());
                if upper {
                    hex = hex.to_uppercase();
                }
                (format!("{lead}{host}{sep}{hex}"), Some((host, k)))
            }),
    ]
}

/// Valid file text: generated lines, with later duplicate hosts dropped.
fn text_strategy() -> impl Strategy<Value = (String, Vec<(String, usize)>)> {
    (prop::collection::vec(line_strategy(), 0..12), any::<bool>()).prop_map(|(lines, crlf)| {
        let mut seen = Vec::<String>::new();
        let mut text = String::new();
        let mut entries = Vec::new();
        for (line, entry) in lines {
            if let Some((host, k)) = entry {
                let lower = host.to_ascii_lowercase();
                if seen.contains(&lower) {
                    continue;
                }
                seen.push(lower);
                entries.push((host, k));
            }
            text.push_str(&line);
            text.push_str(if crlf { "\r\n" } else { "\n" });
        }
        (text, entries)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip((text, entries) in text_strategy()) {
        let parsed = KnownServers::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
        let again = KnownServers::parse(&parsed.to_text())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&again, &parsed);
        prop_assert_eq!(again.to_text(), parsed.to_text());
        prop_assert_eq!(parsed.len(), entries.len());
        for (host, k) in &entries {
            prop_assert_eq!(parsed.lookup(host), Some(key(*k as u8)));
            prop_assert_eq!(parsed.lookup(&host.to_uppercase()), Some(key(*k as u8)));
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(text in any::<String>()) {
        let _ = KnownServers::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_near_miss_lines(text in "[0-9a-fA-F: #\n\r\t.xz\u{e9}]{0,200}") {
        if let Ok(list) = KnownServers::parse(&text) {
            prop_assert_eq!(KnownServers::parse(&list.to_text()).ok(), Some(list));
        }
    }
}

fn hex_key(seed: u8) -> String {
    hex::encode(key(seed).as_bytes())
}

fn parse_err(text: &str) -> Option<ParseError> {
    KnownServers::parse(text).err()
}

#[test]
fn malformed_lines_report_their_line_number() {
    let good = format!("# header\n\na.example:1 {}\n", hex_key(1));
    // Tag 0x05 ("compact") decodes to a valid point but is not the canonical encoding.
    let mut compact = key(2).as_bytes().to_vec();
    compact[0] = 0x05;
    // x = 2^256 - 1 is not a field element (it exceeds p).
    let mut off_curve = [0xffu8; 33];
    off_curve[0] = 0x02;
    let cases = [
        ("b.example:2".to_owned(), LineError::MissingKey),
        (
            format!("b.example:2 {} extra", hex_key(2)),
            LineError::TrailingField,
        ),
        ("b.example:2 0102".to_owned(), LineError::BadKeyHex),
        (
            format!("b.example:2 {}zz", &hex_key(2)[2..]),
            LineError::BadKeyHex,
        ),
        (
            format!("b.example:2 {}", hex::encode(&compact)),
            LineError::InvalidKey,
        ),
        (
            format!("b.example:2 {}", hex::encode(off_curve)),
            LineError::InvalidKey,
        ),
        (
            format!("b.\u{e9}xample:2 {}", hex_key(2)),
            LineError::BadHost,
        ),
        (
            format!("A.EXAMPLE:1 {}", hex_key(2)),
            LineError::Duplicate { first: 3 },
        ),
    ];
    for (bad, kind) in cases {
        let text = format!("{good}{bad}\n# after\n");
        assert_eq!(
            parse_err(&text),
            Some(ParseError {
                line: 4,
                kind: kind.clone()
            }),
            "{bad:?}"
        );
    }
}

#[test]
fn load_reports_path_and_line_and_keeps_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("known_servers");
    let contents = format!("a:1 {}\n\nb:2\n", hex_key(1));
    fs::write(&path, &contents)?;
    let err = KnownServers::load(&path)
        .err()
        .ok_or("accepted a malformed file")?;
    assert!(matches!(err, KnownServersError::Parse { ref error, .. } if error.line == 3));
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{}: line 3:", path.display())),
        "{msg}"
    );
    assert_eq!(fs::read_to_string(&path)?, contents);

    let mut invalid = b"# ok\n\n# bad ".to_vec();
    invalid.push(0xff);
    invalid.extend_from_slice(b"\n");
    fs::write(&path, &invalid)?;
    let err = KnownServers::load(&path)
        .err()
        .ok_or("accepted invalid UTF-8")?;
    assert!(
        matches!(err, KnownServersError::Parse { ref error, .. }
            if *error == ParseError { line: 3, kind: LineError::NotUtf8 }),
        "{err}"
    );
    Ok(())
}

#[test]
fn missing_file_is_empty() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("none/known_servers");
    let list = KnownServers::load(&path)?;
    assert!(list.is_empty());
    assert_eq!(list.path(), Some(path.as_path()));
    assert!(!path.exists());
    Ok(())
}

#[test]
fn record_persists_and_reloads() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("home/.vserv");
    let path = dir.join("known_servers");
    let mut list = KnownServers::load(&path)?;
    list.record("Server.Example:4433", &key(1))?;
    assert_eq!(mode(&dir)? & 0o077, 0, "parent dir must be created 0700");
    assert_eq!(list.lookup("server.example:4433"), Some(key(1)));

    let reloaded = KnownServers::load(&path)?;
    assert_eq!(reloaded, list);
    assert_eq!(reloaded.lookup("SERVER.example:4433"), Some(key(1)));
    assert_eq!(reloaded.lookup("server.example:4434"), None);
    let text = fs::read_to_string(&path)?;
    assert!(
        text.contains(&format!("server.example:4433 {}\n", hex_key(1))),
        "{text}"
    );

    // Comments the user added survive a later record.
    fs::write(&path, format!("{text}# my note\n"))?;
    let mut list = KnownServers::load(&path)?;
    list.record("other:1", &key(2))?;
    let text = fs::read_to_string(&path)?;
    assert!(text.contains("# my note\nother:1 "), "{text}");
    assert_eq!(fs::read_dir(&dir)?.count(), 1, "stray temporary files");
    Ok(())
}

#[test]
fn record_never_replaces_a_key() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("known_servers");
    let mut list = KnownServers::load(&path)?;
    list.record("h:1", &key(1))?;
    let before = fs::read(&path)?;
    let err = list.record("H:1", &key(2)).err().ok_or("replaced a key")?;
    assert!(matches!(err, KnownServersError::Conflict { .. }), "{err}");
    assert_eq!(fs::read(&path)?, before);
    assert_eq!(list.lookup("h:1"), Some(key(1)));
    // Recording the same key again is a no-op.
    list.record("h:1", &key(1))?;
    assert_eq!(fs::read(&path)?, before);
    Ok(())
}

#[test]
fn record_keeps_concurrent_additions() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("known_servers");
    let mut a = KnownServers::load(&path)?;
    let mut b = KnownServers::load(&path)?;
    a.record("a:1", &key(1))?;
    b.record("b:1", &key(2))?;
    let reloaded = KnownServers::load(&path)?;
    assert_eq!(reloaded.lookup("a:1"), Some(key(1)));
    assert_eq!(reloaded.lookup("b:1"), Some(key(2)));
    Ok(())
}

#[test]
fn record_rejects_bad_hosts_and_unbacked_lists() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("known_servers");
    let mut list = KnownServers::load(&path)?;
    for host in ["", "a b:1", "#x:1", "a\n:1"] {
        let err = list.record(host, &key(1)).err();
        assert!(
            matches!(err, Some(KnownServersError::BadHost { .. })),
            "{host:?}"
        );
    }
    assert!(!path.exists());
    let err = KnownServers::new().record("a:1", &key(1)).err();
    assert!(matches!(err, Some(KnownServersError::NoPath)));
    Ok(())
}

#[test]
fn default_path_is_under_home() {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        assert_eq!(
            default_path(),
            Some(std::path::PathBuf::from(home).join(".vserv/known_servers"))
        );
    }
}

#[test]
fn keys_are_written_lowercase() -> TestResult {
    let upper = hex_key(3).to_uppercase();
    let list = KnownServers::parse(&format!("X:9 {upper}"))?;
    assert_eq!(list.to_text(), format!("x:9 {}\n", hex_key(3)));
    let k: Option<ServerKey> = list.lookup("x:9");
    assert_eq!(k, Some(key(3)));
    Ok(())
}
