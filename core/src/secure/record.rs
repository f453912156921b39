//! Record protection: AES-256-CBC with PKCS#7 padding, then HMAC-SHA256 over
//! `seq:u64be || len:u32be || IV || ciphertext` (encrypt-then-MAC, implicit sequence number).
//!
//! Opening checks the length, then the tag in constant time, and only then decrypts; every
//! failure is the same [`Error::BadRecord`].

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::keys::{LABEL_KEY, LABEL_KEY_UPDATE, LABEL_MAC, Secret, expand, hmac_key};
use crate::Error;
use crate::wire::{IV_LEN, MAX_FRAME_BODY, MAX_PAYLOAD, MIN_RECORD_BODY, TAG_LEN};

/// One direction's record keys and sequence number. Key material is zeroized on drop.
pub struct RecordKeys {
    secret: Secret,
    cipher: Aes256,
    mac: Hmac<Sha256>,
    seq: u64,
}

/// Size of the frame body that carries `payload_len` bytes of payload.
pub const fn record_body_len(payload_len: usize) -> usize {
    IV_LEN + ((1 + payload_len) / 16 + 1) * 16 + TAG_LEN
}

impl RecordKeys {
    /// Keys derived from a traffic secret: `key = Expand(s, "vserv/1 key")`,
    /// `mac = Expand(s, "vserv/1 mac")`; sequence number 0.
    pub fn from_secret(secret: Secret) -> Self {
        let key = expand(&secret, LABEL_KEY, &[]);
        let mac = expand(&secret, LABEL_MAC, &[]);
        RecordKeys {
            cipher: Aes256::new(&(*key).into()),
            mac: hmac_key(mac.as_ref()),
            secret,
            seq: 0,
        }
    }

    /// The next generation after a KeyUpdate: `Expand(s, "vserv/1 key update")`, sequence 0.
    pub fn next_generation(&self) -> Self {
        Self::from_secret(expand(&self.secret, LABEL_KEY_UPDATE, &[]))
    }

    /// The sequence number the next record will use.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn tag(&self, seq: u64, len: u32, iv_and_ct: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&seq.to_be_bytes());
        mac.update(&len.to_be_bytes());
        mac.update(iv_and_ct);
        mac
    }

    /// Appends one whole frame `len | IV | CBC(type || payload || pad) | tag` to `out`.
    /// `payload` must be at most [`MAX_PAYLOAD`] bytes.
    pub fn seal(
        &mut self,
        content_type: u8,
        payload: &[u8],
        iv: [u8; IV_LEN],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let seq = self.seq;
        self.seq = seq
            .checked_add(1)
            .ok_or(Error::InvalidState("sequence number exhausted"))?;
        let body_len = record_body_len(payload.len());
        let start = out.len();
        out.reserve(4 + body_len);
        out.extend_from_slice(&(body_len as u32).to_be_bytes());
        out.extend_from_slice(&iv);
        let ct_start = out.len();
        out.push(content_type);
        out.extend_from_slice(payload);
        let ct_len = body_len - IV_LEN - TAG_LEN;
        out.resize(ct_start + ct_len, 0);
        if cfg!(feature = "fuzzing") {
            // Null cipher: PKCS#7 padding only, zero tag.
            let pad = (ct_len - 1 - payload.len()) as u8;
            out[ct_start + 1 + payload.len()..].fill(pad);
            out.extend_from_slice(&[0u8; TAG_LEN]);
            return Ok(());
        }
        let enc = cbc::Encryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &iv.into());
        enc.encrypt_padded::<Pkcs7>(&mut out[ct_start..], 1 + payload.len())
            .map_err(|_| Error::InvalidState("padding buffer"))?;
        let tag = self
            .tag(seq, body_len as u32, &out[start + 4..])
            .finalize()
            .into_bytes();
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Authenticates and decrypts a frame body in place; returns `(content_type, payload)`.
    pub fn open<'a>(&mut self, body: &'a mut [u8]) -> Result<(u8, &'a [u8]), Error> {
        let len = body.len();
        if !(MIN_RECORD_BODY..=MAX_FRAME_BODY).contains(&len)
            || !(len - IV_LEN - TAG_LEN).is_multiple_of(16)
        {
            return Err(Error::BadRecord);
        }
        let (iv_ct, tag) = body.split_at_mut(len - TAG_LEN);
        if !cfg!(feature = "fuzzing")
            && self
                .tag(self.seq, len as u32, iv_ct)
                .verify_slice(tag)
                .is_err()
        {
            return Err(Error::BadRecord);
        }
        let (iv, ct) = iv_ct.split_at_mut(IV_LEN);
        let plain = if cfg!(feature = "fuzzing") {
            unpad(ct)?
        } else {
            let iv: [u8; IV_LEN] = (&*iv).try_into().map_err(|_| Error::BadRecord)?;
            let dec = cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &iv.into());
            dec.decrypt_padded::<Pkcs7>(ct)
                .map_err(|_| Error::BadRecord)?
        };
        let (&content_type, payload) = plain.split_first().ok_or(Error::BadRecord)?;
        // One-byte padding would let a maximal body carry more than MAX_PAYLOAD.
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::BadRecord);
        }
        self.seq = self.seq.checked_add(1).ok_or(Error::BadRecord)?;
        Ok((content_type, payload))
    }
}

/// PKCS#7 unpadding for the fuzzing null cipher.
fn unpad(ct: &[u8]) -> Result<&[u8], Error> {
    let pad = *ct.last().ok_or(Error::BadRecord)? as usize;
    if pad == 0
        || pad > 16
        || pad > ct.len()
        || ct[ct.len() - pad..].iter().any(|&b| b as usize != pad)
    {
        return Err(Error::BadRecord);
    }
    Ok(&ct[..ct.len() - pad])
}
