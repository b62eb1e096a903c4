//! The flow of an IPv4 packet as NAT, the tier ACLs and the NAT shortcut
//! read and rewrite it: the transport ports (or ICMP echo identifier),
//! the flow key, fragments, the packet an ICMP error quotes, and address
//! and port rewrites with incremental checksums (RFC 1624). Offsets are
//! into the IPv4 packet, by the names in `field`; every read and write
//! goes through the bounds-checked byte helpers.
use super::{after_ethernet_mut, byte, put, u16_at, u32_at, DropReason};
use crate::conntrack::{FlowKey, FragKey, ICMP, TCP, UDP};
use crate::frame::Frame;
use crate::table::TenantId;
use crate::wire::checksum;
use std::net::Ipv4Addr;

/// Where the fields this module reads and writes are: the IPv4 header's
/// from the packet's start, the transport headers' from theirs.
pub(super) mod field {
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_AND_OFFSET: usize = 6;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
    /// Every IPv4 header holds at least these bytes.
    pub const MIN_HEADER_LEN: usize = 20;

    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const UDP_CHECKSUM: usize = 6;
    pub const TCP_FLAGS: usize = 13;
    pub const TCP_CHECKSUM: usize = 16;
    pub const TCP_MIN_LEN: usize = 20;
    /// UDP's header, and the part of an ICMP message read here.
    pub const UDP_LEN: usize = 8;
    pub const ICMP_TYPE: usize = 0;
    pub const ICMP_CHECKSUM: usize = 2;
    pub const ICMP_ECHO_ID: usize = 4;
    /// An ICMP error's quote starts after its 8-byte header.
    pub const ICMP_ERROR_QUOTE: usize = 8;
}
use field::*;

const ICMP_ECHO_REPLY: u8 = 0;
pub(super) const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;

const MORE_FRAGMENTS: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// Which end of a flow a translation rewrites: the source on the way out
/// (to the public endpoint), the destination on the way in (back to the
/// VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlowEnd {
    Source,
    Destination,
}

impl FlowEnd {
    /// Where this end's address is in an IPv4 header.
    pub(super) fn addr_at(self) -> usize {
        match self {
            FlowEnd::Source => SRC_ADDR,
            FlowEnd::Destination => DST_ADDR,
        }
    }

    pub(super) fn other(self) -> FlowEnd {
        match self {
            FlowEnd::Source => FlowEnd::Destination,
            FlowEnd::Destination => FlowEnd::Source,
        }
    }
}

/// The transport fields NAT reads and rewrites, as offsets into the IPv4
/// packet.
pub(super) struct L4 {
    pub(super) proto: u8,
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) tcp_flags: u8,
    /// The ICMP type (echo request or reply); 0 for TCP and UDP.
    pub(super) icmp_type: u8,
    /// Source and destination port (for ICMP echo both are the identifier).
    pub(super) sport_at: usize,
    pub(super) dport_at: usize,
    pub(super) checksum_at: usize,
}

impl L4 {
    /// Where the port of `end` is.
    fn port_at(&self, end: FlowEnd) -> usize {
        match end {
            FlowEnd::Source => self.sport_at,
            FlowEnd::Destination => self.dport_at,
        }
    }
}

/// Reads the ports (or ICMP echo identifier) of a packet or of its first
/// fragment.
pub(super) fn transport(ip: &[u8], header_len: usize) -> Result<L4, DropReason> {
    let l4 = ip.get(header_len..).unwrap_or_default();
    let word = |at: usize| u16_at(l4, at);
    let (proto, h) = (byte(ip, PROTOCOL), header_len);
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
        TCP | UDP | ICMP if l4.len() < UDP_LEN => Err(DropReason::L4Truncated),
        TCP => Err(DropReason::L4Truncated),
        _ => Err(DropReason::NatUnsupported),
    }
}

/// Rewrites the address and port of `end` to `addr` and `port`, updating
/// the header checksum and the transport checksum (which covers the
/// address through the pseudo-header, except for ICMP).
#[inline]
pub(super) fn rewrite(ip: &mut [u8], l4: &L4, end: FlowEnd, addr: Ipv4Addr, port: u16) {
    let old_addr = set_addr(ip, end.addr_at(), addr, CHECKSUM);
    let port_at = l4.port_at(end);
    let old_port = u16_at(ip, port_at);
    put(ip, port_at, &port.to_be_bytes());
    let at = l4.checksum_at;
    let sum = u16_at(ip, at);
    let sum = match l4.proto {
        ICMP => checksum::update_u16(sum, old_port, port),
        _ => transport_sum(l4.proto, sum, old_addr, u32::from(addr), old_port, port),
    };
    put(ip, at, &sum.to_be_bytes());
}

/// Writes `addr` at `at` of `ip` and updates the checksum at
/// `checksum_at` to match (RFC 1624); returns the old address.
#[inline]
pub(super) fn set_addr(ip: &mut [u8], at: usize, addr: Ipv4Addr, checksum_at: usize) -> u32 {
    let old = u32_at(ip, at);
    put(ip, at, &addr.octets());
    let sum = checksum::update_u32(u16_at(ip, checksum_at), old, u32::from(addr));
    put(ip, checksum_at, &sum.to_be_bytes());
    old
}

/// A TCP or UDP checksum after an address (in the pseudo-header) and a
/// port change. UDP's 0 means "no checksum" and stays so; a computed 0 is
/// sent as 0xffff (RFC 768).
#[inline]
pub(super) fn transport_sum(
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

/// The flow of a packet as it arrives in `zone`.
pub(super) fn flow_key(ip: &[u8], l4: &L4, zone: TenantId) -> FlowKey {
    let (src, dst) = src_dst(ip);
    FlowKey {
        zone,
        proto: l4.proto,
        src,
        dst,
        sport: l4.sport,
        dport: l4.dport,
    }
}

pub(super) fn src_dst(ip: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::from(u32_at(ip, SRC_ADDR)),
        Ipv4Addr::from(u32_at(ip, DST_ADDR)),
    )
}

/// The "port" firewall rules match: the destination port, or for ICMP
/// `type << 8 | code` (echo carries code 0).
pub(super) fn rule_port(l4: &L4) -> u16 {
    match l4.proto {
        ICMP => u16::from(l4.icmp_type) << 8,
        _ => l4.dport,
    }
}

/// The IPv4 packet of a frame, up to its total length. The caller made
/// sure the header was checked.
pub(super) fn ip_packet<'a>(frame: &'a mut Frame<'_>) -> &'a mut [u8] {
    let ip = after_ethernet_mut(frame.data_mut());
    let total_len = usize::from(u16_at(ip, TOTAL_LEN)).min(ip.len());
    ip.get_mut(..total_len).unwrap_or_default()
}

/// The flags and fragment offset.
fn frag_field(ip: &[u8]) -> u16 {
    u16_at(ip, FLAGS_AND_OFFSET)
}

/// More fragments of this packet follow.
pub(super) fn has_more_fragments(ip: &[u8]) -> bool {
    frag_field(ip) & MORE_FRAGMENTS != 0
}

/// A non-first fragment: no transport header, so no ports.
pub(super) fn is_later_fragment(ip: &[u8]) -> bool {
    frag_field(ip) & OFFSET_MASK != 0
}

/// Any fragment, first or later.
pub(super) fn is_fragment(ip: &[u8]) -> bool {
    frag_field(ip) & (MORE_FRAGMENTS | OFFSET_MASK) != 0
}

/// What finds a packet's fragments as they arrive in `zone`.
pub(super) fn frag_key(ip: &[u8], zone: TenantId) -> FragKey {
    let (src, dst) = src_dst(ip);
    FragKey {
        zone,
        src,
        dst,
        proto: byte(ip, PROTOCOL),
        id: u16_at(ip, IDENT),
    }
}

pub(super) fn is_icmp_error(ip: &[u8], header_len: usize) -> bool {
    byte(ip, PROTOCOL) == ICMP
        && matches!(
            ip.get(header_len + ICMP_TYPE),
            Some(&(ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM))
        )
}

/// The packet an ICMP error quotes, turned around: `key` is the flow it
/// belongs to as that flow's packets arrive in `zone`. Offsets into the
/// outer packet: the quote, its transport header and its ports (or echo
/// identifier).
pub(super) struct Quote {
    pub(super) key: FlowKey,
    pub(super) quote: usize,
    pub(super) q_l4: usize,
    pub(super) sport_at: usize,
    pub(super) dport_at: usize,
}

pub(super) fn quote(ip: &[u8], header_len: usize, zone: TenantId) -> Result<Quote, DropReason> {
    let quote = header_len + ICMP_ERROR_QUOTE;
    let q_header_len = match ip.get(quote) {
        Some(b) if b >> 4 == 4 => usize::from(b & 0x0f) * 4,
        Some(_) => return Err(DropReason::NatUnsupported),
        None => return Err(DropReason::L4Truncated),
    };
    let q_l4 = quote + q_header_len;
    // The quote's ports: the first 8 bytes of its transport header.
    if q_header_len < MIN_HEADER_LEN || ip.len() < q_l4 + UDP_LEN {
        return Err(DropReason::L4Truncated);
    }
    let word = |at: usize| u16_at(ip, at);
    let proto = byte(ip, quote + PROTOCOL);
    let (q_src, q_dst) = src_dst(ip.get(quote..).unwrap_or_default());
    // Where the quote's "ports" are: TCP/UDP ports, or the echo identifier.
    let (sport_at, dport_at) = match proto {
        TCP | UDP => (q_l4 + SRC_PORT, q_l4 + DST_PORT),
        ICMP => (q_l4 + ICMP_ECHO_ID, q_l4 + ICMP_ECHO_ID),
        _ => return Err(DropReason::NatUnsupported),
    };
    // The quoted packet went the other way: turned around, it is a
    // packet of the session as it would arrive here.
    let key = FlowKey {
        zone,
        proto,
        src: q_dst,
        dst: q_src,
        sport: word(dport_at),
        dport: word(sport_at),
    };
    Ok(Quote {
        key,
        quote,
        q_l4,
        sport_at,
        dport_at,
    })
}
