//! Sealing and opening under one key version (spec/transit.md §3): from the version's key
//! material, HKDF-SHA256 derives an AES-256 key and an HMAC-SHA256 key (separate labels);
//! the data is encrypted with AES-256-CBC (PKCS#7) under a fresh IV, and the tag is
//! HMAC-SHA256 over the token's header text, the IV and the ciphertext. Opening checks the
//! tag in constant time before decrypting.

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::Mac;
use zeroize::Zeroizing;

use super::token::Token;
use super::{KEY_LEN, MAX_SEAL_DATA, TransitError};
use crate::secure::keys::{Secret, expand, hmac_key};
use crate::wire::{IV_LEN, TAG_LEN};

/// HKDF-Expand label of a key version's encryption key.
pub const LABEL_TRANSIT_ENC: &[u8] = b"vserv/1 transit enc";
/// HKDF-Expand label of a key version's MAC key.
pub const LABEL_TRANSIT_MAC: &[u8] = b"vserv/1 transit mac";

/// An encryption key and a MAC key, zeroized on drop.
pub struct DataKeys {
    enc: Secret,
    mac: Secret,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKeys(<redacted>)")
    }
}

impl DataKeys {
    /// The data keys of one key version: `enc = HKDF-Expand(material, "vserv/1 transit
    /// enc")`, `mac = HKDF-Expand(material, "vserv/1 transit mac")` (the material, uniformly
    /// random, is the PRK).
    pub fn of_material(material: &[u8; KEY_LEN]) -> DataKeys {
        DataKeys {
            enc: expand(material, LABEL_TRANSIT_ENC, &[]),
            mac: expand(material, LABEL_TRANSIT_MAC, &[]),
        }
    }

    /// Keys given directly (the master key's wrapping keys).
    pub(super) fn from_parts(enc: Secret, mac: Secret) -> DataKeys {
        DataKeys { enc, mac }
    }

    /// HMAC-SHA256 of `aad || iv || ciphertext`.
    pub(super) fn tag(&self, aad: &[u8], iv: &[u8; IV_LEN], ciphertext: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = hmac_key(self.mac.as_ref());
        mac.update(aad);
        mac.update(iv);
        mac.update(ciphertext);
        mac.finalize().into_bytes().into()
    }

    /// AES-256-CBC of `plain` under `iv`, then the tag over `aad`: `(ciphertext, tag)`.
    pub(super) fn encrypt(
        &self,
        aad: &[u8],
        iv: &[u8; IV_LEN],
        plain: &[u8],
    ) -> (Vec<u8>, [u8; TAG_LEN]) {
        let enc = cbc::Encryptor::<Aes256>::new(&(*self.enc).into(), &(*iv).into());
        let ciphertext = enc.encrypt_padded_vec::<Pkcs7>(plain);
        let tag = self.tag(aad, iv, &ciphertext);
        (ciphertext, tag)
    }

    /// Checks the tag over `aad || iv || ciphertext` in constant time, and only then
    /// decrypts; every failure is [`TransitError::BadTag`].
    pub(super) fn decrypt(
        &self,
        aad: &[u8],
        iv: &[u8; IV_LEN],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<Zeroizing<Vec<u8>>, TransitError> {
        let mut mac = hmac_key(self.mac.as_ref());
        mac.update(aad);
        mac.update(iv);
        mac.update(ciphertext);
        mac.verify_slice(tag).map_err(|_| TransitError::BadTag)?;
        if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
            return Err(TransitError::BadTag);
        }
        let dec = cbc::Decryptor::<Aes256>::new(&(*self.enc).into(), &(*iv).into());
        dec.decrypt_padded_vec::<Pkcs7>(ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| TransitError::BadTag)
    }
}

/// Seals `data` under version `version` of the key `name` whose material is `material`,
/// with the IV `iv` (fresh random bytes for every call): the token, whose tag covers its
/// header (`vserv:v1:NAME:VERSION:`), the IV and the ciphertext. Refuses more than
/// [`MAX_SEAL_DATA`] bytes and a name or version a token cannot carry.
pub fn seal(
    material: &[u8; KEY_LEN],
    name: &str,
    version: u32,
    iv: [u8; IV_LEN],
    data: &[u8],
) -> Result<Token, TransitError> {
    if data.len() > MAX_SEAL_DATA {
        return Err(TransitError::TooLarge);
    }
    let header = Token::header_for(name, version)?;
    let (ciphertext, tag) = DataKeys::of_material(material).encrypt(header.as_bytes(), &iv, data);
    Ok(Token {
        name: name.to_owned(),
        version,
        iv,
        ciphertext,
        tag,
    })
}

/// Opens `token` with the material of the key version it names (the caller looked it up by
/// the token's name and version): the data, or [`TransitError::BadTag`] when the tag does
/// not verify over the header, IV and ciphertext (then nothing is decrypted).
pub fn open(material: &[u8; KEY_LEN], token: &Token) -> Result<Zeroizing<Vec<u8>>, TransitError> {
    let header = Token::header_for(&token.name, token.version)?;
    let data = DataKeys::of_material(material).decrypt(
        header.as_bytes(),
        &token.iv,
        &token.ciphertext,
        &token.tag,
    )?;
    if data.len() > MAX_SEAL_DATA {
        return Err(TransitError::BadTag);
    }
    Ok(data)
}
