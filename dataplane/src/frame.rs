//! A frame in a buffer with headroom. The buffer is borrowed: from a `Vec`
//! in memory, or from UMEM on AF_XDP. Encapsulation grows the frame into
//! the headroom and decapsulation shrinks it from the front, so neither
//! copies the payload.
use crate::pipeline::Meta;
use crate::table::PortId;

/// Headroom reserved in front of every received frame (VXLAN needs 50).
pub const HEADROOM: usize = 256;
/// Size of one frame buffer, headroom included.
pub const FRAME_SIZE: usize = 2048;
/// Most frames a stage sees at once.
pub const BATCH_SIZE: usize = 64;

pub struct Frame<'a> {
    buf: &'a mut [u8],
    head: usize,
    len: usize,
    pub meta: Meta,
}

impl<'a> Frame<'a> {
    /// A frame of `len` bytes at offset `head` of `buf`, clamped to the buffer.
    pub fn new(buf: &'a mut [u8], head: usize, len: usize, in_port: PortId) -> Self {
        let head = head.min(buf.len());
        let len = len.min(buf.len() - head);
        Frame {
            buf,
            head,
            len,
            meta: Meta::new(in_port),
        }
    }

    /// Copies `data` into `buf` after `HEADROOM` bytes (truncating if it does
    /// not fit). For tests, replay and benches; the live path receives in place.
    pub fn with_data(buf: &'a mut [u8], data: &[u8], in_port: PortId) -> Self {
        let head = HEADROOM.min(buf.len());
        let len = data.len().min(buf.len() - head);
        if let (Some(to), Some(from)) = (buf.get_mut(head..head + len), data.get(..len)) {
            to.copy_from_slice(from);
        }
        Frame::new(buf, head, len, in_port)
    }

    // `new`, `push_front`, `pull_front` and `truncate` keep `head + len`
    // within the buffer, so these two slices are in bounds. They index
    // rather than `get`: every stage calls them, and `get` cost up to 28
    // instructions a packet more (scripts/insn-count, vxlan_decap_64).
    #[inline]
    #[allow(clippy::indexing_slicing)]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    #[inline]
    #[allow(clippy::indexing_slicing)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the first byte in the buffer.
    #[inline]
    pub fn head(&self) -> usize {
        self.head
    }

    #[inline]
    pub fn headroom(&self) -> usize {
        self.head
    }

    /// Grows the frame by `n` bytes at the front; false if the headroom is short.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> bool {
        if n > self.head {
            return false;
        }
        self.head -= n;
        self.len += n;
        true
    }

    /// Removes `n` bytes from the front; false if the frame is shorter.
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> bool {
        if n > self.len {
            return false;
        }
        self.head += n;
        self.len -= n;
        true
    }

    /// Shortens the frame to `len` bytes (no-op if already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Resets start and length, e.g. when a buffer is reused.
    pub fn reset(&mut self, head: usize, len: usize, in_port: PortId) {
        self.head = head.min(self.buf.len());
        self.len = len.min(self.buf.len() - self.head);
        self.meta = Meta::new(in_port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_pull_stay_in_bounds() {
        let mut buf = vec![0u8; 300];
        let mut f = Frame::with_data(&mut buf, &[1, 2, 3], 0);
        assert_eq!(f.data(), &[1, 2, 3]);
        assert!(f.push_front(HEADROOM));
        assert!(!f.push_front(1));
        assert!(f.pull_front(HEADROOM + 3));
        assert!(!f.pull_front(1));
        assert!(f.is_empty());
    }
}
