//! Wire formats. smoltcp's zero-copy views cover Ethernet, IPv4, UDP, TCP
//! and ICMPv4 and are re-exported here; this module adds only what smoltcp
//! lacks or does slowly: Ethernet/IPv4 ARP at fixed offsets, the VXLAN
//! header, the 802.1Q tag and the RFC 1624 incremental checksum update.
//! All views follow smoltcp's contract: once constructed (`new_checked`,
//! `Arp::new`) no accessor panics. Beyond it, nothing here indexes: bytes
//! are read and written through `byte`, `u16_at`, `u32_at` and `put`,
//! which cannot panic whatever a view was built over.
pub mod arp;
pub mod checksum;
pub mod icmp_quote;
pub mod ipv4;
pub mod transport;
pub mod vlan;
pub mod vxlan;

pub use smoltcp::wire::{
    ArpHardware, ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol,
    Icmpv4DstUnreachable, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, TcpPacket,
    UdpPacket,
};

/// Length of an Ethernet II header without a VLAN tag.
pub const ETH_HEADER_LEN: usize = 14;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// Bytes that VXLAN encapsulation adds in front of the inner Ethernet frame.
pub const VXLAN_OVERHEAD: usize =
    ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + vxlan::HEADER_LEN;

/// The byte at `at` of `bytes`, or 0 past the end.
#[inline]
pub(crate) fn byte(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

/// The big-endian u16 at `at` of `bytes`, or 0 past the end.
#[inline]
pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

/// The big-endian u32 at `at` of `bytes`, or 0 past the end.
#[inline]
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// Writes `value` at `at` of `bytes`; nothing past the end (callers
/// write where a checked header says a field is).
#[inline]
pub(crate) fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    if let Some(field) = bytes.get_mut(at..at + value.len()) {
        field.copy_from_slice(value);
    }
}
