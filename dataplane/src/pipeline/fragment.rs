//! IPv4 fragmentation before encapsulation (RFC 791 3.2), as Linux's bridge
//! does in front of a VXLAN device: an inner packet without DF that does
//! not fit the overlay is cut into fragments, and each one is encapsulated
//! on its own, so the receiving VM reassembles it. Packets with DF get
//! "fragmentation needed" instead (`icmp::too_big_for_overlay`).
//!
//! The first fragment stays in the frame's own buffer; the later ones are
//! written, encapsulated, into this worker's `Fragments`, which the worker
//! sends after the batch (`FrameIo::inject`). Its room is fixed when the
//! pipeline is made: nothing is allocated per packet, and a tenant that
//! sends nothing but oversized packets fills it at most once per batch
//! (the rest dropped as `fragment_backlog`).
use super::{DropReason, Meta};
use crate::frame::{Frame, FRAME_SIZE};
use crate::table::PortId;
use crate::wire::{Ipv4Packet, ETH_HEADER_LEN, IPV4_HEADER_LEN, VXLAN_OVERHEAD};

/// Later fragments one worker holds at most between two sends: a batch of
/// 64 frames of the largest size cut for the smallest overlay.
pub const ROOM: usize = 256;

/// Later fragments waiting to be sent, each one whole (outer headers
/// included), with where it goes.
pub struct Fragments {
    bytes: Vec<u8>,
    waiting: Vec<(usize, Meta)>,
    /// The next one to send.
    next: usize,
}

impl Default for Fragments {
    fn default() -> Self {
        Fragments {
            bytes: vec![0; ROOM * FRAME_SIZE],
            waiting: Vec::with_capacity(ROOM),
            next: 0,
        }
    }
}

impl std::fmt::Debug for Fragments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fragments")
            .field("waiting", &(self.waiting.len() - self.next))
            .finish()
    }
}

/// Whether an Ethernet frame is IPv4 that may be fragmented: a sound
/// header, DF clear.
pub(crate) fn allowed(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x00])
        && frame.get(ETH_HEADER_LEN..).is_some_and(|ip| {
            // Checked whole before the view reads it.
            super::ipv4::check(ip).is_ok() && !Ipv4Packet::new_unchecked(ip).dont_frag()
        })
}

impl Fragments {
    /// Fragments still to send.
    pub fn waiting(&self) -> usize {
        self.waiting.len() - self.next
    }

    /// Writes the next waiting fragment into `buf`: its length and meta.
    pub fn send_into(&mut self, buf: &mut [u8]) -> Option<(usize, Meta)> {
        let &(len, mut meta) = self.waiting.get(self.next)?;
        let at = self.next * FRAME_SIZE;
        self.next += 1;
        match (self.bytes.get(at..at + len), buf.get_mut(..len)) {
            (Some(from), Some(to)) => to.copy_from_slice(from),
            // Never with the frame sizes used; dropped, not stuck.
            _ => meta.verdict = super::Verdict::Drop(DropReason::FragmentBacklog),
        }
        if self.next == self.waiting.len() {
            self.waiting.clear();
            self.next = 0;
        }
        Some((len.min(buf.len()), meta))
    }

    /// Every waiting fragment, bytes and meta, emptying the queue (in-memory
    /// I/O).
    pub fn drain(&mut self) -> impl Iterator<Item = (&[u8], Meta)> + '_ {
        let first = self.next;
        self.next = 0;
        let bytes = &self.bytes;
        self.waiting
            .drain(..)
            .enumerate()
            .skip(first)
            .filter_map(move |(i, (len, meta))| {
                let at = i * FRAME_SIZE;
                Some((bytes.get(at..at + len)?, meta))
            })
    }

    /// Cuts the IPv4 packet in `frame` (Ethernet, then IPv4 that `allowed`
    /// took) so that each piece's IP packet fits `ip_mtu`: the frame keeps
    /// the first, and each later one is built here, inner headers written,
    /// with `VXLAN_OVERHEAD` bytes left in front for `encapsulate` to fill
    /// (called with the piece's bytes from its outer header on). The later
    /// pieces carry the 20-byte base header (options are not copied).
    pub(crate) fn cut(
        &mut self,
        frame: &mut Frame<'_>,
        ip_mtu: usize,
        out: PortId,
        mut encapsulate: impl FnMut(&mut [u8]),
    ) -> Result<(), DropReason> {
        let data = frame.data();
        let ip = data.get(ETH_HEADER_LEN..).unwrap_or_default();
        let checked = super::ipv4::check(ip)?;
        let (header_len, total_len) = (checked.header_len, checked.total_len);
        let payload_len = total_len - header_len;
        // Every piece but the last carries a multiple of 8 bytes.
        let first = ip_mtu.saturating_sub(header_len) & !7;
        let later = ip_mtu.saturating_sub(IPV4_HEADER_LEN) & !7;
        if first == 0 || later == 0 {
            return Err(DropReason::MtuExceeded);
        }
        let pieces = payload_len.saturating_sub(first).div_ceil(later);
        if self.waiting.len() + pieces > ROOM {
            return Err(DropReason::FragmentBacklog);
        }
        let packet = Ipv4Packet::new_unchecked(ip);
        let (offset, more) = (usize::from(packet.frag_offset()), packet.more_frags());
        let mut meta = frame.meta;
        meta.verdict = super::Verdict::Tx(out);
        meta.stage = super::Stage::Done;
        let base = data
            .get(..ETH_HEADER_LEN + IPV4_HEADER_LEN)
            .ok_or(DropReason::Ipv4Truncated)?;
        let mut at = first;
        while at < payload_len {
            let len = later.min(payload_len - at);
            let last = at + len == payload_len;
            let slot = self.waiting.len() * FRAME_SIZE;
            let inner_len = ETH_HEADER_LEN + IPV4_HEADER_LEN + len;
            let buf = self
                .bytes
                .get_mut(slot..slot + VXLAN_OVERHEAD + inner_len)
                .ok_or(DropReason::FragmentBacklog)?;
            let inner = buf.get_mut(VXLAN_OVERHEAD..).unwrap_or_default();
            let (headers, body) = inner.split_at_mut(ETH_HEADER_LEN + IPV4_HEADER_LEN);
            headers.copy_from_slice(base);
            let from = ETH_HEADER_LEN + header_len + at;
            body.copy_from_slice(
                data.get(from..from + len)
                    .ok_or(DropReason::Ipv4Truncated)?,
            );
            rewrite_header(
                headers.get_mut(ETH_HEADER_LEN..).unwrap_or_default(),
                IPV4_HEADER_LEN,
                IPV4_HEADER_LEN + len,
                (offset + at, !last || more),
            );
            encapsulate(buf);
            self.waiting.push((VXLAN_OVERHEAD + inner_len, meta));
            at += len;
        }
        // The frame keeps the first piece.
        let data = frame.data_mut();
        let ip = data.get_mut(ETH_HEADER_LEN..).unwrap_or_default();
        rewrite_header(ip, header_len, header_len + first, (offset, true));
        frame.truncate(ETH_HEADER_LEN + header_len + first);
        Ok(())
    }
}

/// Sets a fragment's header length, total length, offset and MF flag,
/// and its checksum.
fn rewrite_header(
    ip: &mut [u8],
    header_len: usize,
    total_len: usize,
    (offset, more): (usize, bool),
) {
    // A header of `header_len` (20 at least) bytes or nothing: the view's
    // setters index within it.
    let Some(h) = ip
        .get_mut(..header_len)
        .filter(|h| h.len() >= IPV4_HEADER_LEN)
    else {
        return;
    };
    let mut packet = Ipv4Packet::new_unchecked(h);
    packet.set_header_len(header_len as u8);
    packet.set_total_len(total_len as u16);
    packet.set_frag_offset(offset as u16);
    packet.set_more_frags(more);
    packet.fill_checksum();
}
