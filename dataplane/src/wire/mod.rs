//! Wire formats. smoltcp's zero-copy views cover Ethernet, IPv4, UDP, TCP
//! and ICMPv4 and are re-exported here; this module adds only what smoltcp
//! lacks or does slowly: Ethernet/IPv4 ARP at fixed offsets, the VXLAN
//! header, the 802.1Q tag and the RFC 1624 incremental checksum update.
//! All views follow smoltcp's contract: once constructed (`new_checked`,
//! `Arp::new`) no accessor panics.
pub mod arp;
pub mod checksum;
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
