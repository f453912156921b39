//! Transit vectors: `spec/vectors/transit.json`. The test rebuilds every token and wrapped
//! key from the fixed master key, key material and IVs recorded in the file and checks them
//! byte for byte; it then opens each token and unwraps each key, and checks that a flipped
//! byte is refused. With `VSERV_WRITE_VECTORS=1` it writes the file instead:
//!
//! ```sh
//! VSERV_WRITE_VECTORS=1 cargo test -p vserv-core --test transit_vectors
//! ```
// The vectors pin the real cipher; the fuzzing build keeps it, but stay in step with the
// other vector files.
#![cfg(not(feature = "fuzzing"))]

mod support;

use support::vector_file::{bytes, check_or_write, read_vectors};

use serde_json::{Value, json};
use vserv_core::transit::{
    DataKeys, KEY_LEN, MasterKey, Token, TransitError, WrapContext, open, seal, unwrap, wrap,
};
use zeroize::Zeroizing;

fn fill<const N: usize>(byte: u8) -> [u8; N] {
    std::array::from_fn(|i| byte.wrapping_add(i as u8))
}

const MASTER: u8 = 0x10;

fn master() -> MasterKey {
    MasterKey::from_bytes(Zeroizing::new(fill::<KEY_LEN>(MASTER)))
}

fn token_case(name: &str, key: &str, version: u32, data: &[u8], salt: u8) -> Value {
    let material = fill::<KEY_LEN>(0x40 + salt);
    let iv = fill::<16>(0x80 + salt);
    let token = seal(&material, key, version, iv, data).expect("seal");
    json!({
        "name": name,
        "key_name": key,
        "version": version,
        "material": hex::encode(material),
        "iv": hex::encode(iv),
        "data": hex::encode(data),
        "token": token.encode(),
    })
}

fn wrap_case(name: &str, ctx: WrapContext<'_>, secret: &[u8], salt: u8) -> Value {
    let iv = fill::<16>(0xc0 + salt);
    let stored = wrap(&master(), &ctx, iv, secret);
    let mut case = json!({
        "name": name,
        "info": hex::encode(ctx.info()),
        "iv": hex::encode(iv),
        "secret": hex::encode(secret),
        "wrapped": hex::encode(stored),
    });
    match ctx {
        WrapContext::TransitKey {
            user,
            name,
            version,
        } => {
            case["context"] = json!({"transit": {"user": user, "name": name, "version": version}});
        }
        WrapContext::TotpSecret { user } => case["context"] = json!({"totp": {"user": user}}),
    }
    case
}

fn build() -> Value {
    json!({
        "description": "vserv transit vectors (spec/transit.md). Produced by core/tests/transit_vectors.rs (VSERV_WRITE_VECTORS=1). `tokens`: data sealed with key material `material` and IV `iv` under the key version named; `wrapped`: secrets encrypted at rest under the master key `master_key` for the context whose HKDF info is `info`. Flipping any byte of a token's text or of `wrapped` must make it fail.",
        "master_key": hex::encode(fill::<KEY_LEN>(MASTER)),
        "tokens": [
            token_case("empty data", "payroll", 1, b"", 0),
            token_case("short data", "payroll", 2, b"4111 1111 1111 1111", 1),
            token_case("two blocks", "backup.db-2", 17, &fill::<40>(0x41), 2),
        ],
        "wrapped": [
            wrap_case("transit key material", WrapContext::TransitKey { user: "alice", name: "payroll", version: 1 }, &fill::<32>(0x40), 0),
            wrap_case("another version", WrapContext::TransitKey { user: "alice", name: "payroll", version: 2 }, &fill::<32>(0x41), 1),
            wrap_case("totp secret", WrapContext::TotpSecret { user: "bob" }, &fill::<20>(0x60), 2),
        ],
    })
}

#[test]
fn transit_vectors_match_the_file() {
    check_or_write("transit.json", &build());
}

#[test]
fn transit_vectors_open_and_refuse_tampering() {
    let file = read_vectors("transit.json");
    for c in file["tokens"].as_array().expect("tokens") {
        let material: [u8; KEY_LEN] = bytes(&c["material"]).try_into().expect("32 bytes");
        let text = c["token"].as_str().expect("token");
        let token = Token::parse(text.as_bytes()).expect("parses");
        assert_eq!(Some(token.name.as_str()), c["key_name"].as_str());
        assert_eq!(Some(u64::from(token.version)), c["version"].as_u64());
        assert_eq!(token.iv.to_vec(), bytes(&c["iv"]));
        assert_eq!(
            open(&material, &token).expect("opens").to_vec(),
            bytes(&c["data"])
        );
        for i in 0..text.len() {
            let mut bad = text.as_bytes().to_vec();
            bad[i] ^= 0x01;
            let opened = Token::parse(&bad).and_then(|t| {
                if t.name == token.name && t.version == token.version {
                    open(&material, &t).map(|_| ())
                } else {
                    Err(TransitError::BadTag)
                }
            });
            assert!(opened.is_err(), "byte {i} flipped still opens");
        }
        // Key material never shows in debug output.
        assert_eq!(
            format!("{:?}", DataKeys::of_material(&material)),
            "DataKeys(<redacted>)"
        );
    }
    let master = MasterKey::from_bytes(Zeroizing::new(
        bytes(&file["master_key"]).try_into().expect("32 bytes"),
    ));
    for c in file["wrapped"].as_array().expect("wrapped") {
        let ctx = &c["context"];
        let context = if let Some(t) = ctx.get("transit") {
            WrapContext::TransitKey {
                user: t["user"].as_str().expect("user"),
                name: t["name"].as_str().expect("name"),
                version: u32::try_from(t["version"].as_u64().expect("version")).expect("u32"),
            }
        } else {
            WrapContext::TotpSecret {
                user: ctx["totp"]["user"].as_str().expect("user"),
            }
        };
        assert_eq!(
            hex::encode(context.info()),
            c["info"].as_str().expect("info")
        );
        let stored = bytes(&c["wrapped"]);
        assert_eq!(
            unwrap(&master, &context, &stored)
                .expect("unwraps")
                .to_vec(),
            bytes(&c["secret"])
        );
        for i in 0..stored.len() {
            let mut bad = stored.clone();
            bad[i] ^= 0x01;
            assert_eq!(unwrap(&master, &context, &bad), Err(TransitError::BadWrap));
        }
    }
}
