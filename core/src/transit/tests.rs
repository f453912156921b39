//! Token and key-hierarchy properties: a round trip gives the data back; any changed byte of
//! a token, another name or version in its header, another key, a truncated token or a
//! wrapped key moved to another context is refused; the decoder never panics and accepts only
//! what the encoder writes.

use proptest::prelude::*;

use super::*;
use crate::wire::IV_LEN;

const MATERIAL: [u8; KEY_LEN] = [7; KEY_LEN];

fn token(data: &[u8]) -> Token {
    seal(&MATERIAL, "payroll", 3, [9; IV_LEN], data).expect("seal")
}

#[test]
fn a_sealed_token_opens_and_has_one_spelling() {
    let t = token(b"hello");
    let text = t.encode();
    assert!(text.starts_with("vserv:v1:payroll:3:"), "{text}");
    let parsed = Token::parse(text.as_bytes()).expect("parse");
    assert_eq!(parsed, t);
    assert_eq!(open(&MATERIAL, &parsed).expect("open").as_slice(), b"hello");
    // The empty input seals to one block.
    assert_eq!(token(b"").ciphertext.len(), 16);
    assert_eq!(open(&MATERIAL, &token(b"")).expect("open").as_slice(), b"");
}

#[cfg(not(feature = "fuzzing"))]
#[test]
fn another_key_name_or_version_does_not_open() {
    let t = token(b"secret");
    assert_eq!(open(&[8; KEY_LEN], &t), Err(TransitError::BadTag));
    let renamed = Token {
        name: "payrol1".into(),
        ..t.clone()
    };
    assert_eq!(open(&MATERIAL, &renamed), Err(TransitError::BadTag));
    let other_version = Token {
        version: 4,
        ..t.clone()
    };
    assert_eq!(open(&MATERIAL, &other_version), Err(TransitError::BadTag));
    let mut short = t.clone();
    short.ciphertext.truncate(0);
    assert_eq!(open(&MATERIAL, &short), Err(TransitError::BadTag));
}

#[test]
fn malformed_tokens_are_refused_with_a_reason() {
    let good = token(b"x").encode();
    let body = good.rsplit(':').next().expect("body").to_owned();
    let cases: Vec<String> = vec![
        String::new(),
        "vserv:v1:".into(),
        format!("vault:v1:payroll:3:{body}"),
        format!("vserv:v2:payroll:3:{body}"),
        format!("vserv:v1:Payroll:3:{body}"),
        format!("vserv:v1::3:{body}"),
        format!("vserv:v1:pay:roll:3:{body}"),
        format!("vserv:v1:payroll:0:{body}"),
        format!("vserv:v1:payroll:03:{body}"),
        format!("vserv:v1:payroll:4294967296:{body}"),
        format!("vserv:v1:payroll:-3:{body}"),
        format!("vserv:v1:payroll:3:{body}="),
        format!("vserv:v1:payroll:3:{body}\n"),
        format!("vserv:v1:payroll:3: {body}"),
        format!("vserv:v1:payroll:3:{}", &body[..body.len() - 4]),
        format!("vserv:v1:payroll:3:{}", body.replace('-', "+")),
        "vserv:v1:payroll:3:AAAA".into(),
        format!("vserv:v1:{}:3:{body}", "a".repeat(33)),
    ];
    for case in cases {
        assert!(
            matches!(
                Token::parse(case.as_bytes()),
                Err(TransitError::Malformed(_))
            ),
            "{case:?} parsed"
        );
    }
    assert!(Token::parse(&[0xff; 40]).is_err());
    assert!(Token::parse("x".repeat(MAX_TOKEN_LEN + 1).as_bytes()).is_err());
}

#[test]
fn the_largest_seal_fits_the_limits() {
    let data = vec![0x5a; MAX_SEAL_DATA];
    let text = token(&data).encode();
    assert!(text.len() <= MAX_TOKEN_LEN);
    assert_eq!(
        seal(&MATERIAL, "k", 1, [0; IV_LEN], &vec![0; MAX_SEAL_DATA + 1]),
        Err(TransitError::TooLarge)
    );
    assert!(seal(&MATERIAL, "K", 1, [0; IV_LEN], b"").is_err());
    assert!(seal(&MATERIAL, "k", 0, [0; IV_LEN], b"").is_err());
    let longest = seal(
        &MATERIAL,
        &"k".repeat(MAX_KEY_NAME),
        u32::MAX,
        [0; IV_LEN],
        &data,
    )
    .expect("seal")
    .encode();
    assert_eq!(longest.len(), MAX_TOKEN_LEN);
    // The figure spec/transit.md §2 and §3 give.
    assert_eq!(MAX_TOKEN_LEN, 16_139);
    assert!(Token::parse(longest.as_bytes()).is_ok());
}

#[cfg(not(feature = "fuzzing"))]
#[test]
fn wrapped_keys_open_only_in_their_own_context() {
    let master = MasterKey::from_bytes(zeroize::Zeroizing::new([1; KEY_LEN]));
    let ctx = WrapContext::TransitKey {
        user: "alice",
        name: "payroll",
        version: 1,
    };
    let stored = wrap(&master, &ctx, [2; IV_LEN], &MATERIAL);
    assert_eq!(stored.len(), IV_LEN + 48 + 32);
    assert_eq!(
        unwrap(&master, &ctx, &stored).expect("unwrap").as_slice(),
        MATERIAL
    );
    for other in [
        WrapContext::TransitKey {
            user: "bob",
            name: "payroll",
            version: 1,
        },
        WrapContext::TransitKey {
            user: "alice",
            name: "payroll",
            version: 2,
        },
        WrapContext::TransitKey {
            user: "alice",
            name: "payrol",
            version: 1,
        },
        WrapContext::TotpSecret { user: "alice" },
    ] {
        assert_eq!(unwrap(&master, &other, &stored), Err(TransitError::BadWrap));
    }
    let other_master = MasterKey::from_bytes(zeroize::Zeroizing::new([3; KEY_LEN]));
    assert_eq!(
        unwrap(&other_master, &ctx, &stored),
        Err(TransitError::BadWrap)
    );
    for i in 0..stored.len() {
        let mut bad = stored.clone();
        bad[i] ^= 0x80;
        assert_eq!(unwrap(&master, &ctx, &bad), Err(TransitError::BadWrap));
    }
    assert_eq!(
        unwrap(&master, &ctx, &stored[..40]),
        Err(TransitError::BadWrap)
    );
    assert_eq!(format!("{master:?}"), "MasterKey(<redacted>)");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Seal then encode, parse and open: the data again.
    #[test]
    fn round_trip(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        iv in any::<[u8; IV_LEN]>(),
        version in 1u32..,
        material in any::<[u8; KEY_LEN]>(),
    ) {
        let t = seal(&material, "k.1", version, iv, &data).expect("seal");
        let parsed = Token::parse(t.encode().as_bytes()).expect("parse");
        prop_assert_eq!(&parsed, &t);
        let opened = open(&material, &parsed).expect("open");
        prop_assert_eq!(opened.as_slice(), data.as_slice());
    }

    /// Any byte of the token text changed: refused (malformed or not authentic).
    #[cfg(not(feature = "fuzzing"))]
    #[test]
    fn any_changed_byte_is_refused(
        data in proptest::collection::vec(any::<u8>(), 0..64),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut text = token(&data).encode().into_bytes();
        let i = at.index(text.len());
        text[i] ^= flip;
        let opened = Token::parse(&text).and_then(|t| {
            if t.name == "payroll" && t.version == 3 {
                open(&MATERIAL, &t).map(|_| ())
            } else {
                Err(TransitError::BadTag)
            }
        });
        prop_assert!(opened.is_err());
    }

    /// Any bytes: a typed answer, never a panic; what parses encodes back to itself.
    #[test]
    fn parse_never_panics_and_is_canonical(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(t) = Token::parse(&raw) {
            prop_assert_eq!(t.encode().into_bytes(), raw);
        }
    }

    /// Text shaped like a token with any base64url body: never a panic, canonical.
    #[test]
    fn token_shaped_text_never_panics(body in "[A-Za-z0-9_=+/-]{0,160}", v in "[0-9]{0,11}") {
        let text = format!("vserv:v1:k:{v}:{body}");
        if let Ok(t) = Token::parse(text.as_bytes()) {
            prop_assert_eq!(t.encode(), text);
        }
    }
}
