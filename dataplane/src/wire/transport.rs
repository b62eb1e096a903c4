//! The transport fields a flow is known by: TCP and UDP ports, or the
//! ICMP echo identifier standing in for both, and their rewrites with
//! incremental checksums (RFC 1624). Offsets are into the IPv4 packet;
//! every read and write is bounds-checked, as in `ipv4`.
use super::ipv4::{self, ICMP, TCP, UDP};
use super::{byte, checksum, put, u16_at};
use std::net::Ipv4Addr;

/// Offsets of the transport headers' fields from their start.
pub mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const UDP_CHECKSUM: usize = 6;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CHECKSUM: usize = 16;
    pub const TCP_MIN_LEN: usize = 20;
    /// UDP's header, and the part of an ICMP message read here.
    pub const UDP_LEN: usize = 8;
    pub const ICMP_TYPE: usize = 0;
    pub const ICMP_CODE: usize = 1;
    pub const ICMP_CHECKSUM: usize = 2;
    pub const ICMP_ECHO_ID: usize = 4;
    /// An ICMP error's quote starts after its 8-byte header.
    pub const ICMP_ERROR_QUOTE: usize = 8;
}
use field::*;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// Why a packet has no flow fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The transport header is cut short.
    Truncated,
    /// A protocol (or ICMP type) without ports or an identifier.
    NoPorts,
}

/// Which end of a flow a translation rewrites: the source on the way out
/// (to the public endpoint), the destination on the way in (back to the
/// VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEnd {
    Source,
    Destination,
}

impl FlowEnd {
    /// Where this end's address is in an IPv4 header.
    pub fn addr_at(self) -> usize {
        match self {
            FlowEnd::Source => ipv4::field::SRC_ADDR,
            FlowEnd::Destination => ipv4::field::DST_ADDR,
        }
    }

    pub fn other(self) -> FlowEnd {
        match self {
            FlowEnd::Source => FlowEnd::Destination,
            FlowEnd::Destination => FlowEnd::Source,
        }
    }
}

/// A packet's transport fields, read once, with where they are in the
/// IPv4 packet for the rewrites.
pub struct L4 {
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    /// The ICMP type (echo request or reply); 0 for TCP and UDP.
    pub icmp_type: u8,
    /// Source and destination port (for ICMP echo both are the identifier).
    pub sport_at: usize,
    pub dport_at: usize,
    pub checksum_at: usize,
}

impl L4 {
    /// Reads the ports (or ICMP echo identifier) of IPv4 packet `ip`
    /// whose header is `header_len` bytes, or of its first fragment.
    #[inline]
    pub fn parse(ip: &[u8], header_len: usize) -> Result<L4, Malformed> {
        let l4 = ip.get(header_len..).unwrap_or_default();
        let word = |at: usize| u16_at(l4, at);
        let (proto, h) = (ipv4::protocol(ip), header_len);
        let ports = |checksum_at: usize, tcp_flags: u8| L4 {
            proto,
            sport: word(SRC_PORT),
            dport: word(DST_PORT),
            tcp_flags,
            icmp_type: 0,
            sport_at: h + SRC_PORT,
            dport_at: h + DST_PORT,
            checksum_at: h + checksum_at,
        };
        match proto {
            TCP if l4.len() >= TCP_MIN_LEN => Ok(ports(TCP_CHECKSUM, byte(l4, TCP_FLAGS))),
            UDP if l4.len() >= UDP_LEN => Ok(ports(UDP_CHECKSUM, 0)),
            ICMP if l4.len() >= UDP_LEN
                && matches!(byte(l4, ICMP_TYPE), ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) =>
            {
                Ok(L4 {
                    proto,
                    sport: word(ICMP_ECHO_ID),
                    dport: word(ICMP_ECHO_ID),
                    tcp_flags: 0,
                    icmp_type: byte(l4, ICMP_TYPE),
                    sport_at: h + ICMP_ECHO_ID,
                    dport_at: h + ICMP_ECHO_ID,
                    checksum_at: h + ICMP_CHECKSUM,
                })
            }
            TCP | UDP | ICMP if l4.len() < UDP_LEN => Err(Malformed::Truncated),
            TCP => Err(Malformed::Truncated),
            _ => Err(Malformed::NoPorts),
        }
    }

    /// Where the port of `end` is.
    fn port_at(&self, end: FlowEnd) -> usize {
        match end {
            FlowEnd::Source => self.sport_at,
            FlowEnd::Destination => self.dport_at,
        }
    }

    /// The "port" firewall rules match: the destination port, or for
    /// ICMP `type << 8 | code` (echo carries code 0).
    pub fn rule_port(&self) -> u16 {
        match self.proto {
            ICMP => u16::from(self.icmp_type) << 8,
            _ => self.dport,
        }
    }

    /// Rewrites the address and port of `end` to `addr` and `port`,
    /// updating the header checksum and the transport checksum (which
    /// covers the address through the pseudo-header, except for ICMP).
    #[inline]
    pub fn rewrite(&self, ip: &mut [u8], end: FlowEnd, addr: Ipv4Addr, port: u16) {
        let old_addr = ipv4::set_addr(ip, end.addr_at(), addr, ipv4::field::CHECKSUM);
        let port_at = self.port_at(end);
        let old_port = u16_at(ip, port_at);
        put(ip, port_at, &port.to_be_bytes());
        let at = self.checksum_at;
        let sum = u16_at(ip, at);
        let sum = match self.proto {
            ICMP => checksum::update_u16(sum, old_port, port),
            _ => transport_sum(self.proto, sum, old_addr, u32::from(addr), old_port, port),
        };
        put(ip, at, &sum.to_be_bytes());
    }
}

/// A TCP or UDP checksum after an address (in the pseudo-header) and a
/// port change. UDP's 0 means "no checksum" and stays so; a computed 0 is
/// sent as 0xffff (RFC 768).
#[inline]
pub fn transport_sum(
    proto: u8,
    sum: u16,
    old_addr: u32,
    addr: u32,
    old_port: u16,
    port: u16,
) -> u16 {
    if proto == UDP && sum == 0 {
        return 0;
    }
    match checksum::update_u16(checksum::update_u32(sum, old_addr, addr), old_port, port) {
        0 if proto == UDP => 0xffff,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto];
        ip.resize(20, 0);
        ip.extend_from_slice(l4);
        ip
    }

    #[test]
    fn ports_of_each_protocol() {
        let udp = packet(UDP, &[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        let l4 = L4::parse(&udp, 20).unwrap();
        assert_eq!((l4.sport, l4.dport, l4.rule_port()), (12345, 53, 53));
        let echo = packet(ICMP, &[ICMP_ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let l4 = L4::parse(&echo, 20).unwrap();
        assert_eq!(
            (l4.sport, l4.dport, l4.rule_port()),
            (0x1234, 0x1234, 0x0800)
        );
    }

    #[test]
    fn short_or_portless_packets_are_refused() {
        assert_eq!(
            L4::parse(&packet(TCP, &[0; 19]), 20).err(),
            Some(Malformed::Truncated)
        );
        assert_eq!(
            L4::parse(&packet(UDP, &[0; 7]), 20).err(),
            Some(Malformed::Truncated)
        );
        let unreachable = packet(ICMP, &[ICMP_DEST_UNREACHABLE, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(L4::parse(&unreachable, 20).err(), Some(Malformed::NoPorts));
        assert_eq!(
            L4::parse(&packet(47, &[0; 8]), 20).err(),
            Some(Malformed::NoPorts)
        );
        // A header length past the packet's end reads as truncated.
        assert_eq!(
            L4::parse(&packet(UDP, &[0; 8]), 60).err(),
            Some(Malformed::Truncated)
        );
    }

    #[test]
    fn udp_without_checksum_keeps_none() {
        assert_eq!(transport_sum(UDP, 0, 1, 2, 3, 4), 0);
        assert_ne!(transport_sum(TCP, 0, 1, 2, 3, 4), 0);
    }
}
