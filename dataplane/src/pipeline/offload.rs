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
#[inline]
pub(crate) fn finish_partial_checksum(frame: &mut [u8]) -> bool {
    if frame.len() < ETH_HEADER_LEN + 20 || frame[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &frame[ETH_HEADER_LEN..];
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let proto = ip[9];
    let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip[0] >> 4 != 4
        || header_len < 20
        || total_len > ip.len()
        || total_len < header_len
        || fragmented
    {
        return false;
    }
    let l4_len = total_len - header_len;
    let field_at = match proto {
        TCP if l4_len >= 20 => 16,
        UDP if l4_len >= 8 => 6,
        _ => return false,
    };
    let pseudo = pseudo_header_sum(ip, proto, l4_len);
    let l4 = &mut frame[ETH_HEADER_LEN + header_len..ETH_HEADER_LEN + total_len];
    let field = u16::from_be_bytes([l4[field_at], l4[field_at + 1]]);
    if field != pseudo {
        return false;
    }
    l4[field_at..field_at + 2].fill(0);
    let sum = checksum::fold(u32::from(pseudo) + u32::from(checksum::sum(l4)));
    let mut result = !sum;
    if proto == UDP && result == 0 {
        result = 0xffff;
    }
    l4[field_at..field_at + 2].copy_from_slice(&result.to_be_bytes());
    true
}

/// The folded (not complemented) sum of the IPv4 pseudo-header: what a
/// sender with checksum offload leaves in the field.
fn pseudo_header_sum(ip: &[u8], proto: u8, l4_len: usize) -> u16 {
    let word = |at: usize| u32::from(u16::from_be_bytes([ip[at], ip[at + 1]]));
    let sum = word(12) + word(14) + word(16) + word(18) + u32::from(proto) + l4_len as u32;
    checksum::fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a sender with offload leaves it: the field holds the
    /// pseudo-header sum.
    fn partial(mut frame: Vec<u8>, field_at: usize) -> Vec<u8> {
        let ip = &frame[ETH_HEADER_LEN..];
        let header_len = usize::from(ip[0] & 0x0f) * 4;
        let l4_len = usize::from(u16::from_be_bytes([ip[2], ip[3]])) - header_len;
        let pseudo = pseudo_header_sum(ip, ip[9], l4_len);
        let at = ETH_HEADER_LEN + header_len + field_at;
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
