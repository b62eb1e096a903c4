//! Finishing checksums left to offload. A veth whose sender has TX
//! checksum offload on (the default) delivers TCP and UDP with
//! CHECKSUM_PARTIAL: the checksum field holds only the folded
//! pseudo-header sum, and the kernel would fill in the rest on a real NIC.
//! Through XDP/AF_XDP no flag says so, and the receiving VM drops such a
//! frame as corrupt. So when the field holds exactly the pseudo-header sum,
//! the checksum is finished here. A complete checksum equals that value
//! only by chance (1 in 65536), and recomputing it then changes nothing.
use crate::wire::{checksum, ETH_HEADER_LEN};

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Finishes the TCP or UDP checksum of an Ethernet/IPv4 frame if it was
/// left partial. Returns true if it did. Never panics on any input.
/// IPv4 headers with options are left alone (senders do not offload those
/// in practice, and it keeps this per-packet check short).
#[inline]
pub(crate) fn finish_partial_checksum(frame: &mut [u8]) -> bool {
    match partial(frame) {
        Some((proto, field_at, l4_len)) => finish(frame, proto, field_at, l4_len),
        None => false,
    }
}

/// Whether the TCP or UDP checksum of an Ethernet/IPv4 frame was left to
/// offload (its field holds only the pseudo-header sum).
#[inline]
pub(crate) fn left_partial(frame: &[u8]) -> bool {
    partial(frame).is_some()
}

/// (protocol, checksum field offset, L4 length) of a frame whose checksum
/// was left partial.
#[inline]
fn partial(frame: &[u8]) -> Option<(u8, usize, usize)> {
    // Every frame passes here: decide from one fixed-size view of the
    // EtherType and IPv4 header, with one bounds check.
    let Some(Ok(h)) = frame.get(12..34).map(<&[u8; 22]>::try_from) else {
        return None;
    };
    let field_at = match h[11] {
        TCP => 16,
        UDP => 6,
        _ => return None,
    };
    // EtherType IPv4, version 4, IHL 5, not a fragment.
    if u32::from_be_bytes([h[0], h[1], h[2], h[8] & 0x3f]) != 0x0800_4500 || h[9] != 0 {
        return None;
    }
    let l4_len = usize::from(u16::from_be_bytes([h[4], h[5]])).wrapping_sub(20);
    let at = ETH_HEADER_LEN + 20 + field_at;
    let Some(Ok(field)) = frame.get(at..at + 2).map(<[u8; 2]>::try_from) else {
        return None;
    };
    if l4_len < field_at + 2 || u16::from_be_bytes(field) != pseudo_header_sum(h, l4_len) {
        return None;
    }
    Some((h[11], field_at, l4_len))
}

/// The slow path: sum the whole segment.
#[cold]
fn finish(frame: &mut [u8], proto: u8, field_at: usize, l4_len: usize) -> bool {
    let Some(Ok(h)) = frame.get(12..34).map(<&[u8; 22]>::try_from) else {
        return false;
    };
    let pseudo = pseudo_header_sum(h, l4_len);
    let Some(l4) = frame.get_mut(ETH_HEADER_LEN + 20..ETH_HEADER_LEN + 20 + l4_len) else {
        return false;
    };
    let Some(field) = l4.get_mut(field_at..field_at + 2) else {
        return false;
    };
    field.fill(0);
    let sum = checksum::fold(u32::from(pseudo) + u32::from(checksum::sum(l4)));
    let mut result = !sum;
    if proto == UDP && result == 0 {
        result = 0xffff;
    }
    if let Some(field) = l4.get_mut(field_at..field_at + 2) {
        field.copy_from_slice(&result.to_be_bytes());
    }
    true
}

/// The folded (not complemented) sum of the IPv4 pseudo-header: what a
/// sender with checksum offload leaves in the field.
/// `h` is the EtherType followed by the IPv4 header.
#[inline]
fn pseudo_header_sum(h: &[u8; 22], l4_len: usize) -> u16 {
    let addrs = u64::from(u32::from_be_bytes([h[14], h[15], h[16], h[17]]))
        + u64::from(u32::from_be_bytes([h[18], h[19], h[20], h[21]]));
    let mut sum = addrs + u64::from(h[11]) + (l4_len as u64 & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a sender with offload leaves it: the field holds the
    /// pseudo-header sum.
    fn partial(mut frame: Vec<u8>, field_at: usize) -> Vec<u8> {
        let h: &[u8; 22] = frame[12..34].try_into().unwrap();
        let l4_len = usize::from(u16::from_be_bytes([h[4], h[5]])) - 20;
        let pseudo = pseudo_header_sum(h, l4_len);
        let at = ETH_HEADER_LEN + 20 + field_at;
        frame[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
        frame
    }

    #[test]
    fn finishes_partial_tcp_and_udp_and_leaves_complete_ones() {
        let h = xvr_testkit::headers([2; 6], [4; 6], [10, 0, 0, 1], [10, 0, 0, 2]);
        for (complete, field_at) in [
            (h.tcp_ack(1000, 80, b"some payload bytes"), 16),
            (h.udp(1000, 53, b"odd length"), 6),
        ] {
            let mut frame = partial(complete.clone(), field_at);
            assert_ne!(frame, complete);
            assert!(finish_partial_checksum(&mut frame));
            assert_eq!(frame, complete, "finished checksum equals etherparse's");
            let mut again = complete.clone();
            assert!(
                !finish_partial_checksum(&mut again),
                "a complete checksum is left alone"
            );
            assert_eq!(again, complete);
        }
    }

    #[test]
    fn ignores_what_it_cannot_finish() {
        for mut frame in [vec![], vec![0u8; 20], vec![0xffu8; 100]] {
            let before = frame.clone();
            assert!(!finish_partial_checksum(&mut frame));
            assert_eq!(frame, before);
        }
    }
}
