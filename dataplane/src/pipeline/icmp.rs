//! The router's own ICMP: echo replies from gateway addresses, and errors
//! (time exceeded, unreachable) built in place in front of the offending
//! packet, which becomes the error's payload without being copied.
use super::ipv4::CheckedIpv4;
use super::{after_ethernet, after_ethernet_mut, byte, put, u32_at, DropReason, Event, Stats};
use crate::frame::Frame;
use crate::table::{PortRole, Tables};
use crate::wire::{
    checksum, EthernetFrame, Icmpv4Message, Icmpv4Packet, IpProtocol, Ipv4Packet, ETH_HEADER_LEN,
    IPV4_HEADER_LEN,
};
use std::net::Ipv4Addr;

/// TTL of packets the router originates.
const OWN_TTL: u8 = 64;
/// RFC 1812 4.3.2.3: an error carries as much of the original as fits in 576 bytes.
const ERROR_MAX_LEN: usize = 576;
const ICMP_HEADER_LEN: usize = 8;
/// What an error's first bytes hold while it is built: its Ethernet, IPv4
/// and ICMP headers, then the offending packet's IPv4 header.
const ERROR_HEAD_LEN: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN + ICMP_HEADER_LEN + IPV4_HEADER_LEN;

/// Sends "fragmentation needed" (RFC 1191) back to the sender of an IPv4
/// packet with DF set that does not fit the overlay once encapsulated;
/// drops other packets that do not fit (IPv4 without DF is cut into
/// fragments instead, see `fragment`, and never comes here). `source` is
/// the error's source: the gateway for routed packets, the destination
/// itself for bridged ones (as Linux's VXLAN device does), so the
/// sender's path MTU cache learns it.
pub(crate) fn too_big_for_overlay(
    tables: &Tables,
    frame: &mut Frame<'_>,
    ip_mtu: usize,
    source: Option<Ipv4Addr>,
    stats: &mut Stats,
) {
    let data = frame.data();
    let is_ipv4 =
        EthernetFrame::new_unchecked(data).ethertype() == crate::wire::EthernetProtocol::Ipv4;
    let ip = after_ethernet(data);
    let checked = match super::ipv4::check(ip) {
        // Checked whole before the view reads it.
        Ok(c) if is_ipv4 && Ipv4Packet::new_unchecked(ip).dont_frag() => c,
        _ => return frame.meta.drop(stats, DropReason::MtuExceeded),
    };
    let (msg, code) = (
        Icmpv4Message::DstUnreachable,
        crate::wire::Icmpv4DstUnreachable::FragRequired,
    );
    let mut error = IcmpError::new(msg, code.into(), DropReason::MtuExceeded);
    error.mtu = ip_mtu.min(usize::from(u16::MAX)) as u16;
    error.source = source;
    self::error(tables, frame, &checked, error, stats);
}

/// Answers an echo request to a gateway address; drops anything else sent there.
pub(crate) fn echo_reply(frame: &mut Frame<'_>, checked: &CheckedIpv4, stats: &mut Stats) {
    let Some(ip_bytes) = after_ethernet(frame.data()).get(..checked.total_len) else {
        return frame.meta.drop(stats, DropReason::Ipv4Truncated);
    };
    let ip = Ipv4Packet::new_unchecked(ip_bytes);
    if ip.next_header() != IpProtocol::Icmp {
        return frame.meta.drop(stats, DropReason::GatewayProtoUnsupported);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return frame.meta.drop(stats, DropReason::IcmpMalformed);
    }
    let icmp_bytes = ip_bytes.get(checked.header_len..).unwrap_or_default();
    let Ok(icmp) = Icmpv4Packet::new_checked(icmp_bytes) else {
        return frame.meta.drop(stats, DropReason::IcmpMalformed);
    };
    if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
        return frame.meta.drop(stats, DropReason::GatewayProtoUnsupported);
    }
    if !icmp.verify_checksum() {
        return frame.meta.drop(stats, DropReason::IcmpMalformed);
    }
    frame.truncate(ETH_HEADER_LEN + checked.total_len);
    let data = frame.data_mut();
    swap_macs(data);
    let ip = after_ethernet_mut(data);
    // Swapping addresses leaves the header checksum as it is; the TTL does not.
    let (src, dst) = (u32_at(ip, 12), u32_at(ip, 16));
    put(ip, 12, &dst.to_be_bytes());
    put(ip, 16, &src.to_be_bytes());
    // TTL and protocol share the word at 8; the header checksum is at 10.
    checksum::rewrite_word(ip, 8, u16::from_be_bytes([OWN_TTL, byte(ip, 9)]), 10);
    let icmp = ip.get_mut(checked.header_len..).unwrap_or_default();
    // Type and code share the word at 0; the ICMP checksum is at 2.
    let reply = u16::from_be_bytes([Icmpv4Message::EchoReply.into(), byte(icmp, 1)]);
    checksum::rewrite_word(icmp, 0, reply, 2);
    stats.event(Event::IcmpEchoReply);
    frame.meta.bounce();
}

/// An ICMP error to send about a packet the router drops.
pub(crate) struct IcmpError {
    pub msg: Icmpv4Message,
    pub code: u8,
    /// Why the packet itself is dropped (counted whether or not the error
    /// can be sent).
    pub reason: DropReason,
    /// Next-hop MTU for "fragmentation needed" (RFC 1191), otherwise 0.
    pub mtu: u16,
    /// The error's source address; `None` for the gateway.
    pub source: Option<Ipv4Addr>,
}

impl IcmpError {
    pub fn new(msg: Icmpv4Message, code: u8, reason: DropReason) -> Self {
        IcmpError {
            msg,
            code,
            reason,
            mtu: 0,
            source: None,
        }
    }
}

/// Drops the frame and, where RFC 1812 allows, sends `error` about it back
/// to its sender.
pub(crate) fn error(
    tables: &Tables,
    frame: &mut Frame<'_>,
    checked: &CheckedIpv4,
    error: IcmpError,
    stats: &mut Stats,
) {
    let IcmpError {
        msg,
        code,
        reason,
        mtu,
        source,
    } = error;
    let source = source.or_else(|| error_source(tables, frame));
    let Some(source) = source.filter(|_| may_send_error(frame)) else {
        return frame.meta.drop(stats, reason);
    };
    let original_len = checked
        .total_len
        .min(ERROR_MAX_LEN - IPV4_HEADER_LEN - ICMP_HEADER_LEN);
    const PREFIX: usize = IPV4_HEADER_LEN + ICMP_HEADER_LEN;
    // Where the old IPv4 header and the new ICMP header start.
    const OLD_IP: usize = PREFIX + ETH_HEADER_LEN;
    const ICMP_AT: usize = ETH_HEADER_LEN + IPV4_HEADER_LEN;
    if !frame.push_front(PREFIX) {
        return frame.meta.drop(stats, DropReason::NoHeadroom);
    }
    frame.truncate(ETH_HEADER_LEN + PREFIX + original_len);
    // The error's headers, then the old Ethernet header (where the new
    // headers end) and the old IPv4 header: one check, then constant
    // offsets.
    let Some(Ok(head)) = frame
        .data_mut()
        .get_mut(..ERROR_HEAD_LEN)
        .map(<&mut [u8; ERROR_HEAD_LEN]>::try_from)
    else {
        return frame.meta.drop(stats, reason);
    };
    stats.drop(reason);
    // The old Ethernet header now sits at [PREFIX, PREFIX + 14).
    let requester = [
        head[OLD_IP + 12],
        head[OLD_IP + 13],
        head[OLD_IP + 14],
        head[OLD_IP + 15],
    ];
    head.copy_within(PREFIX + 6..PREFIX + 12, 0); // dst = old src
    head.copy_within(PREFIX..PREFIX + 6, 6); // src = old dst (the router, or the bridged peer)
    head[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    const IP: usize = ETH_HEADER_LEN;
    head[IP..IP + IPV4_HEADER_LEN].copy_from_slice(&[
        0x45, 0xc0, 0, 0, 0, 0, 0, 0, OWN_TTL, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    head[IP + 2..IP + 4].copy_from_slice(&((PREFIX + original_len) as u16).to_be_bytes());
    head[IP + 12..IP + 16].copy_from_slice(&source.octets());
    head[IP + 16..IP + 20].copy_from_slice(&requester);
    let sum = checksum::of(&head[IP..IP + IPV4_HEADER_LEN]);
    head[IP + 10..IP + 12].copy_from_slice(&sum.to_be_bytes());
    head[ICMP_AT..ICMP_AT + ICMP_HEADER_LEN].copy_from_slice(&[msg.into(), code, 0, 0, 0, 0, 0, 0]);
    head[ICMP_AT + 6..ICMP_AT + 8].copy_from_slice(&mtu.to_be_bytes());
    let icmp = frame.data_mut().get_mut(ICMP_AT..).unwrap_or_default();
    let sum = checksum::of(icmp);
    put(icmp, 2, &sum.to_be_bytes());
    stats.event(Event::IcmpErrorSent);
    frame.meta.reply = Some(super::Reply::IcmpError);
    frame.meta.bounce();
}

/// The gateway address that sources errors: the ingress port's, or for
/// frames from the overlay the tenant's first gateway on this host.
fn error_source(tables: &Tables, frame: &Frame<'_>) -> Option<Ipv4Addr> {
    if frame.meta.from_vtep.is_some() {
        return tables.tenant(frame.meta.tenant)?.gateways.first().copied();
    }
    match tables.port(frame.meta.in_port)?.role {
        PortRole::Vm { gateway, .. } => Some(gateway.addr()),
        PortRole::Uplink { .. } => None,
    }
}

/// RFC 1812 4.3.2.7: no error about an ICMP error, a later fragment, or a
/// packet from an address that is not a single host.
fn may_send_error(frame: &Frame<'_>) -> bool {
    let eth = EthernetFrame::new_unchecked(frame.data());
    // `error`'s caller checked the header whole.
    let ip = Ipv4Packet::new_unchecked(after_ethernet(frame.data()));
    let src = ip.src_addr();
    if !eth.src_addr().is_unicast()
        || ip.frag_offset() != 0
        || src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || src.is_loopback()
    {
        return false;
    }
    if ip.next_header() == IpProtocol::Icmp {
        let header_len = usize::from(ip.header_len());
        let icmp_type = frame.data().get(ETH_HEADER_LEN + header_len).copied();
        let is_error = matches!(
            icmp_type.map(Icmpv4Message::from),
            Some(
                Icmpv4Message::DstUnreachable
                    | Icmpv4Message::Redirect
                    | Icmpv4Message::TimeExceeded
                    | Icmpv4Message::ParamProblem
            )
        ) || icmp_type == Some(4); // source quench
        return !is_error;
    }
    true
}

fn swap_macs(data: &mut [u8]) {
    let mut eth = EthernetFrame::new_unchecked(data);
    let (src, dst) = (eth.src_addr(), eth.dst_addr());
    eth.set_src_addr(dst);
    eth.set_dst_addr(src);
}
