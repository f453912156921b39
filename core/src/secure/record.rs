//! Record protection: AES-256-CBC with PKCS#7 padding, then HMAC-SHA256 over
//! `seq:u64be || len:u32be || IV || ciphertext` (encrypt-then-MAC, implicit sequence number).
//!
//! Opening checks the length, then the tag in constant time, and only then decrypts; every
//! failure is the same [`Error::BadRecord`].

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, InnerIvInit, KeyInit as _};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::cbc_lanes::{Chain, encrypt_chains};
use super::keys::{LABEL_KEY, LABEL_KEY_UPDATE, LABEL_MAC, Secret, expand, hmac_key};
use super::provider::{Active, Provider as _};
use crate::Error;
use crate::wire::{IV_LEN, MAX_FRAME_BODY, MAX_PAYLOAD, MIN_RECORD_BODY, TAG_LEN};

/// One direction's record keys and sequence number. Key material is zeroized on drop.
///
/// Records are sealed in two steps so that many can be encrypted together (see
/// [`cbc_lanes`](super::cbc_lanes)): [`frame`](Self::frame) appends a record's frame with its
/// plaintext to an internal buffer and takes its sequence number; [`seal_framed`](Self::seal_framed)
/// encrypts and tags every framed record and moves them, in order, to the caller's output.
/// Plaintext never reaches the output; records framed but never sealed are dropped with the keys.
pub struct RecordKeys {
    secret: Secret,
    cipher: Aes256,
    mac: Hmac<Sha256>,
    seq: u64,
    /// Frames appended by `frame`, still in plaintext (their tags zero).
    framed: Vec<u8>,
    /// Where each framed record starts in `framed`, and its sequence number.
    unsealed: Vec<Unsealed>,
}

#[derive(Clone, Copy)]
struct Unsealed {
    start: usize,
    body_len: usize,
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
            framed: Vec::new(),
            unsealed: Vec::new(),
        }
    }

    /// The next generation after a KeyUpdate: `Expand(s, "vserv/1 key update")`, sequence 0.
    pub fn next_generation(&self) -> Self {
        Self::from_secret(expand(&self.secret, LABEL_KEY_UPDATE, &[]))
    }

    /// Gives back the framing buffers' memory when no record waits to be sealed (for an
    /// idle connection; the next [`frame`](Self::frame) allocates again).
    pub fn release_buffers(&mut self) {
        if self.unsealed.is_empty() {
            self.framed = Vec::new();
            self.unsealed = Vec::new();
        }
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

    /// Seals one record now: [`frame`](Self::frame) then [`seal_framed`](Self::seal_framed),
    /// so `out` receives any records framed before it, then this one, as whole frames
    /// `len | IV | CBC(type || payload || pad) | tag`.
    pub fn seal(
        &mut self,
        content_type: u8,
        payload: &[u8],
        iv: [u8; IV_LEN],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.frame(content_type, payload, iv)?;
        self.seal_framed(out);
        Ok(())
    }

    /// Frames one record for the next [`seal_framed`](Self::seal_framed) and takes its
    /// sequence number. `payload` must be at most [`MAX_PAYLOAD`] bytes.
    pub fn frame(
        &mut self,
        content_type: u8,
        payload: &[u8],
        iv: [u8; IV_LEN],
    ) -> Result<(), Error> {
        self.frame_with(content_type, payload.len(), iv, |buf| {
            buf.extend_from_slice(payload)
        })
    }

    /// Like [`frame`](Self::frame), with the payload written by `write`, which must append
    /// exactly `payload_len` bytes (saving a copy of the payload). Otherwise nothing is
    /// framed, no sequence number is taken, and the error is [`Error::InvalidState`].
    pub fn frame_with(
        &mut self,
        content_type: u8,
        payload_len: usize,
        iv: [u8; IV_LEN],
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Error> {
        if payload_len > MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge {
                len: payload_len,
                max: MAX_PAYLOAD,
            });
        }
        let seq = self.seq;
        let next_seq = seq
            .checked_add(1)
            .ok_or(Error::InvalidState("sequence number exhausted"))?;
        let body_len = record_body_len(payload_len);
        let start = self.framed.len();
        self.framed.reserve(4 + body_len);
        self.framed
            .extend_from_slice(&(body_len as u32).to_be_bytes());
        self.framed.extend_from_slice(&iv);
        self.framed.push(content_type);
        write(&mut self.framed);
        let ct_start = start + 4 + IV_LEN;
        if self.framed.len() != ct_start + 1 + payload_len {
            self.framed.truncate(start);
            return Err(Error::InvalidState("payload writer wrote the wrong length"));
        }
        // PKCS#7 padding, then room for the tag.
        let ct_len = body_len - IV_LEN - TAG_LEN;
        let pad = (ct_len - 1 - payload_len) as u8;
        self.framed.resize(ct_start + ct_len, pad);
        self.framed.resize(start + 4 + body_len, 0);
        self.seq = next_seq;
        self.unsealed.push(Unsealed {
            start,
            body_len,
            seq,
        });
        Ok(())
    }

    /// Whether records are framed and waiting for [`seal_framed`](Self::seal_framed).
    pub fn has_framed(&self) -> bool {
        !self.unsealed.is_empty()
    }

    /// Encrypts and tags every framed record (their CBC chains interleaved) and appends them
    /// to `out` in the order they were framed.
    pub fn seal_framed(&mut self, out: &mut Vec<u8>) {
        if self.unsealed.is_empty() {
            return;
        }
        Active::seal_framed(self);
        self.unsealed.clear();
        if out.is_empty() {
            std::mem::swap(out, &mut self.framed);
        } else {
            out.append(&mut self.framed);
        }
    }

    /// Encrypts every framed record in place (their CBC chains interleaved).
    pub(super) fn encrypt_framed(&mut self) {
        let mut chains = Vec::with_capacity(self.unsealed.len());
        let mut rest: &mut [u8] = &mut self.framed;
        let mut consumed = 0;
        for record in &self.unsealed {
            let ct_len = record.body_len - IV_LEN - TAG_LEN;
            let Some(tail) = rest.get_mut(record.start + 4 - consumed..) else {
                break;
            };
            if tail.len() < IV_LEN + ct_len {
                break;
            }
            let (iv, tail) = tail.split_at_mut(IV_LEN);
            let (data, tail) = tail.split_at_mut(ct_len);
            let mut iv_bytes = [0u8; IV_LEN];
            iv_bytes.copy_from_slice(iv);
            chains.push(Chain { iv: iv_bytes, data });
            rest = tail;
            consumed = record.start + 4 + IV_LEN + ct_len;
        }
        encrypt_chains(&self.cipher, chains);
    }

    /// Writes the tag of every framed (and encrypted) record.
    pub(super) fn tag_framed(&mut self) {
        for record in &self.unsealed {
            let body = record.start + 4..record.start + 4 + record.body_len;
            let Some(body) = self.framed.get(body) else {
                continue;
            };
            let (iv_ct, _) = body.split_at(record.body_len - TAG_LEN);
            let tag = self
                .tag(record.seq, record.body_len as u32, iv_ct)
                .finalize()
                .into_bytes();
            let tag_at = record.start + 4 + record.body_len - TAG_LEN;
            if let Some(slot) = self.framed.get_mut(tag_at..tag_at + TAG_LEN) {
                slot.copy_from_slice(&tag);
            }
        }
    }

    /// Checks the tag of `iv_ct` (a record body without its tag) under the next sequence
    /// number in constant time, and only then decrypts it in place; returns the plaintext.
    pub(super) fn authenticate_and_decrypt<'a>(
        &self,
        iv_ct: &'a mut [u8],
        tag: &[u8],
    ) -> Result<&'a [u8], Error> {
        let len = iv_ct.len() + TAG_LEN;
        if self
            .tag(self.seq, len as u32, iv_ct)
            .verify_slice(tag)
            .is_err()
        {
            return Err(Error::BadRecord);
        }
        let (iv, ct) = iv_ct.split_at_mut(IV_LEN);
        let iv: [u8; IV_LEN] = (&*iv).try_into().map_err(|_| Error::BadRecord)?;
        let dec = cbc::Decryptor::<Aes256>::inner_iv_init(self.cipher.clone(), &iv.into());
        dec.decrypt_padded::<Pkcs7>(ct)
            .map_err(|_| Error::BadRecord)
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
        let plain = Active::open(self, iv_ct, tag)?;
        let (&content_type, payload) = plain.split_first().ok_or(Error::BadRecord)?;
        // One-byte padding would let a maximal body carry more than MAX_PAYLOAD.
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::BadRecord);
        }
        self.seq = self.seq.checked_add(1).ok_or(Error::BadRecord)?;
        Ok((content_type, payload))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use zeroize::Zeroizing;

    use super::*;
    use crate::wire::CONTENT_APP;

    fn keys() -> RecordKeys {
        RecordKeys::from_secret(Zeroizing::new([0x5c; 32]))
    }

    /// Splits a stream of whole frames into their bodies.
    fn bodies(mut stream: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((len, rest)) = stream.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*len) as usize;
            out.push(rest[..len].to_vec());
            stream = &rest[len..];
        }
        out
    }

    proptest! {
        #[test]
        fn records_sealed_together_equal_records_sealed_one_by_one(
            payloads in prop::collection::vec(
                prop::collection::vec(any::<u8>(), 0..2000), 0..24),
            ivs in any::<[u8; 16]>(),
        ) {
            let mut one_by_one = Vec::new();
            let mut single = keys();
            let mut batch = keys();
            for (i, p) in payloads.iter().enumerate() {
                let iv = [ivs[i % 16] ^ i as u8; 16];
                single.seal(CONTENT_APP, p, iv, &mut one_by_one).unwrap();
                batch.frame(CONTENT_APP, p, iv).unwrap();
            }
            let mut together = Vec::new();
            batch.seal_framed(&mut together);
            prop_assert!(!batch.has_framed());
            prop_assert_eq!(&together, &one_by_one);
            let mut receiver = keys();
            for (mut body, p) in bodies(&together).into_iter().zip(&payloads) {
                let (ty, got) = receiver.open(&mut body).unwrap();
                prop_assert_eq!(ty, CONTENT_APP);
                prop_assert_eq!(got, &p[..]);
            }
        }
    }

    #[test]
    fn a_writer_of_the_wrong_length_frames_nothing() {
        let mut k = keys();
        let err = k.frame_with(CONTENT_APP, 5, [0; 16], |b| b.extend_from_slice(b"four"));
        assert!(matches!(err, Err(Error::InvalidState(_))));
        assert_eq!(k.seq(), 0);
        assert!(!k.has_framed());
        let mut out = Vec::new();
        k.seal_framed(&mut out);
        assert!(out.is_empty());
        assert!(matches!(
            k.frame(CONTENT_APP, &[0; MAX_PAYLOAD + 1], [0; 16]),
            Err(Error::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn sealing_appends_after_what_the_output_holds() {
        let mut k = keys();
        k.frame(CONTENT_APP, b"late", [1; 16]).unwrap();
        let mut out = b"earlier".to_vec();
        k.seal_framed(&mut out);
        assert_eq!(&out[..7], b"earlier");
        let mut receiver = keys();
        let mut body = bodies(&out[7..]).remove(0);
        assert_eq!(receiver.open(&mut body).unwrap().1, b"late");
    }
}
