//! The services' datagrams as whole Ethernet frames, and what they read
//! of one: built and read with smoltcp's wire views (a slow path: clarity
//! over speed).
use crate::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, UdpPacket,
    ETH_HEADER_LEN, IPV4_HEADER_LEN, UDP_HEADER_LEN,
};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{EthernetRepr, IpAddress, Ipv4Repr, UdpRepr};
use std::net::Ipv4Addr;

/// One end of a datagram: MAC, address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub mac: EthernetAddress,
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// Writes a frame from `from` to `to` whose UDP payload of `len` bytes
/// `fill` writes, into `out`; returns the frame's length (None: `out`
/// is too short, or `fill` failed).
pub fn write(
    out: &mut [u8],
    (from, to): (End, End),
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> bool,
) -> Option<usize> {
    let udp_len = UDP_HEADER_LEN + len;
    let frame_len = ETH_HEADER_LEN + IPV4_HEADER_LEN + udp_len;
    let out = out.get_mut(..frame_len)?;
    out.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut *out);
    EthernetRepr {
        src_addr: from.mac,
        dst_addr: to.mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let ip_repr = Ipv4Repr {
        src_addr: from.ip,
        dst_addr: to.ip,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: 64,
    };
    let checksums = ChecksumCapabilities::default();
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip_repr.emit(&mut ip, &checksums);
    let mut filled = false;
    UdpRepr {
        src_port: from.port,
        dst_port: to.port,
    }
    .emit(
        &mut UdpPacket::new_unchecked(ip.payload_mut()),
        &IpAddress::Ipv4(from.ip),
        &IpAddress::Ipv4(to.ip),
        len,
        |payload| filled = fill(payload),
        &checksums,
    );
    filled.then_some(frame_len)
}

/// A frame from `from` to `to` carrying `payload` (None: too long for
/// a UDP datagram).
pub fn frame((from, to): (End, End), payload: &[u8]) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + payload.len()];
    let len = write(&mut frame, (from, to), payload.len(), |p| {
        p.copy_from_slice(payload);
        true
    })?;
    frame.truncate(len);
    Some(frame)
}

/// A datagram as it arrived: its two ends and its payload.
pub struct Datagram<'a> {
    pub from: End,
    pub to: End,
    pub payload: &'a [u8],
}

/// Reads an Ethernet frame holding an unfragmented IPv4 UDP datagram
/// with a good IPv4 header checksum and consistent lengths.
pub fn read(frame: &[u8]) -> Option<Datagram<'_>> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip_bytes = frame.get(ETH_HEADER_LEN..)?;
    let ip = Ipv4Packet::new_checked(ip_bytes).ok()?;
    let fragment = ip.more_frags() || ip.frag_offset() != 0;
    if !ip.verify_checksum() || ip.next_header() != IpProtocol::Udp || fragment {
        return None;
    }
    let udp_bytes = ip_bytes.get(usize::from(ip.header_len())..usize::from(ip.total_len()))?;
    let udp = UdpPacket::new_checked(udp_bytes).ok()?;
    let payload = udp_bytes.get(UDP_HEADER_LEN..usize::from(udp.len()))?;
    let end = |mac, ip, port| End { mac, ip, port };
    Some(Datagram {
        from: end(eth.src_addr(), ip.src_addr(), udp.src_port()),
        to: end(eth.dst_addr(), ip.dst_addr(), udp.dst_port()),
        payload,
    })
}
