//! The IPv4 header fields that NAT, the tier ACLs and the NAT shortcut
//! read and rewrite, by name. A view in smoltcp's sense over a header the
//! ingress stage checked (`Ipv4Packet::new_checked`): these functions
//! take the IPv4 packet's bytes and, past their end, read 0 and write
//! nothing, so no input makes them panic.
use super::{byte, checksum, put, u16_at, u32_at};
use std::net::Ipv4Addr;

/// Offsets of the IPv4 header's fields from the packet's start.
pub mod field {
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_AND_OFFSET: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
    /// Every IPv4 header holds at least these bytes.
    pub const MIN_HEADER_LEN: usize = 20;
}
use field::*;

/// The protocol numbers the router looks into.
pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

const MORE_FRAGMENTS: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

pub fn src_dst(ip: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::from(u32_at(ip, SRC_ADDR)),
        Ipv4Addr::from(u32_at(ip, DST_ADDR)),
    )
}

pub fn protocol(ip: &[u8]) -> u8 {
    byte(ip, PROTOCOL)
}

pub fn ident(ip: &[u8]) -> u16 {
    u16_at(ip, IDENT)
}

pub fn total_len(ip: &[u8]) -> usize {
    usize::from(u16_at(ip, TOTAL_LEN))
}

/// The flags and fragment offset.
fn frag_field(ip: &[u8]) -> u16 {
    u16_at(ip, FLAGS_AND_OFFSET)
}

/// More fragments of this packet follow.
pub fn has_more_fragments(ip: &[u8]) -> bool {
    frag_field(ip) & MORE_FRAGMENTS != 0
}

/// A non-first fragment: no transport header, so no ports.
pub fn is_later_fragment(ip: &[u8]) -> bool {
    frag_field(ip) & OFFSET_MASK != 0
}

/// Any fragment, first or later.
pub fn is_fragment(ip: &[u8]) -> bool {
    frag_field(ip) & (MORE_FRAGMENTS | OFFSET_MASK) != 0
}

/// Writes `addr` at `at` of `ip` and updates the checksum at
/// `checksum_at` to match (RFC 1624); returns the old address.
#[inline]
pub fn set_addr(ip: &mut [u8], at: usize, addr: Ipv4Addr, checksum_at: usize) -> u32 {
    let old = u32_at(ip, at);
    put(ip, at, &addr.octets());
    let sum = checksum::update_u32(u16_at(ip, checksum_at), old, u32::from(addr));
    put(ip, checksum_at, &sum.to_be_bytes());
    old
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_bits() {
        let mut ip = [0u8; 20];
        assert!(!is_fragment(&ip));
        ip[6] = 0x20; // MF, offset 0: the first fragment
        assert!(is_fragment(&ip) && has_more_fragments(&ip) && !is_later_fragment(&ip));
        ip[6] = 0x40; // DF alone is no fragment
        assert!(!is_fragment(&ip));
        ip[7] = 1; // offset 8: a later fragment
        assert!(is_fragment(&ip) && is_later_fragment(&ip) && !has_more_fragments(&ip));
    }

    #[test]
    fn short_input_reads_zero() {
        assert_eq!(
            src_dst(&[0u8; 13]),
            (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED)
        );
        assert!(!is_fragment(&[]));
        let mut short = [0u8; 12];
        set_addr(&mut short, SRC_ADDR, Ipv4Addr::new(198, 18, 0, 1), CHECKSUM);
    }
}
