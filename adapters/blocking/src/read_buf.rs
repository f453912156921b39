//! A connection thread's read buffer: none while the connection idles, small at first,
//! doubled while reads fill it (a bulk upload), so an idle session holds no buffer and a
//! busy one reads in large chunks.

/// The size of a fresh buffer: a handshake message or a command fits.
const FIRST: usize = 16 * 1024;

/// The largest buffer: what one read takes during a bulk upload.
pub(crate) const MAX: usize = 256 * 1024;

/// A lazily allocated, growing read buffer (see the module docs).
#[derive(Debug)]
pub(crate) struct ReadBuf {
    data: Vec<u8>,
    /// The size the next [`ReadBuf::space`] allocates.
    size: usize,
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf {
            data: Vec::new(),
            size: FIRST,
        }
    }
}

impl ReadBuf {
    /// The space to read into, allocated (zeroed) at the current size if it is not held.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        if self.data.len() != self.size {
            self.data = vec![0u8; self.size];
        }
        &mut self.data
    }

    /// The `n` bytes a read just put into [`ReadBuf::space`]. A read that filled the whole
    /// buffer doubles the next one (up to [`MAX`]).
    pub(crate) fn filled(&mut self, n: usize) -> &[u8] {
        let full = n >= self.data.len() && !self.data.is_empty();
        let got = self.data.get(..n).unwrap_or(&[]);
        if full {
            self.size = (self.size * 2).min(MAX);
        }
        got
    }

    /// Whether a buffer is held.
    #[cfg(test)]
    pub(crate) fn is_held(&self) -> bool {
        !self.data.is_empty()
    }

    /// Gives the buffer back (the connection is idle); the next read starts small again.
    pub(crate) fn release(&mut self) {
        self.data = Vec::new();
        self.size = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_nothing_until_used_and_after_release() {
        let mut buf = ReadBuf::default();
        assert!(!buf.is_held());
        assert_eq!(buf.space().len(), FIRST);
        assert!(buf.is_held());
        buf.release();
        assert!(!buf.is_held());
    }

    #[test]
    fn full_reads_double_it_up_to_the_bound_and_release_starts_small() {
        let mut buf = ReadBuf::default();
        let mut sizes = Vec::new();
        for _ in 0..8 {
            let n = buf.space().len();
            sizes.push(n);
            assert_eq!(buf.filled(n).len(), n);
        }
        assert_eq!(
            sizes,
            [FIRST, 2 * FIRST, 4 * FIRST, 8 * FIRST, MAX, MAX, MAX, MAX]
        );
        // A short read keeps the size.
        buf.space()[..3].copy_from_slice(b"abc");
        assert_eq!(buf.filled(3), b"abc");
        assert_eq!(buf.space().len(), MAX);
        buf.release();
        assert_eq!(buf.space().len(), FIRST);
    }
}
