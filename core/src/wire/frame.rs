//! Length-prefixed framing: `len:u32be | body[len]`, with the length checked before any
//! buffering so a hostile length never causes an allocation.

use zeroize::Zeroize;

use super::MAX_FRAME_BODY;
use crate::Error;

/// Accumulates stream bytes and yields whole frame bodies.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
}

impl Deframer {
    /// An empty deframer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Number of buffered bytes not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Returns the next complete frame body (mutable, so records can be decrypted in place),
    /// `Ok(None)` if more bytes are needed, or an error for an illegal length.
    pub fn next_frame(&mut self) -> Result<Option<&mut [u8]>, Error> {
        let avail = &self.buf[self.start..];
        let Some(header) = avail.first_chunk::<4>() else {
            self.compact();
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header);
        if len == 0 || len as usize > MAX_FRAME_BODY {
            return Err(Error::BadFrameLength {
                len,
                max: MAX_FRAME_BODY as u32,
            });
        }
        let len = len as usize;
        if avail.len() < 4 + len {
            self.compact();
            return Ok(None);
        }
        let body_start = self.start + 4;
        self.start = body_start + len;
        Ok(Some(&mut self.buf[body_start..body_start + len]))
    }

    /// Gives back the buffer's memory, keeping only the bytes of a frame not yet complete
    /// (for an idle connection: the next [`Deframer::push`] allocates again). The whole
    /// old buffer is zeroed first: frames are opened in place, so it held plaintext.
    pub fn release(&mut self) {
        let pending = self.buf.get(self.start..).map(<[u8]>::to_vec);
        self.buf.zeroize();
        self.buf = pending.unwrap_or_default();
        self.start = 0;
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Appends `len:u32be | body` for a plaintext frame.
pub fn put_frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}
