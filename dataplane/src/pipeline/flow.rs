//! The flow of an IPv4 packet as NAT, the tier ACLs and the NAT shortcut
//! see it: the one place the pipeline reads flows from. The wire views
//! (`wire::ipv4`, `wire::transport`, `wire::icmp_quote`) find and rewrite
//! the fields; this module turns them into conntrack's keys in a zone and
//! their errors into drop reasons.
use super::{after_ethernet_mut, DropReason};
use crate::conntrack::{FlowKey, FragKey};
use crate::frame::Frame;
use crate::table::TenantId;
use crate::wire::{icmp_quote, ipv4, transport};

pub(super) use crate::wire::icmp_quote::is_icmp_error;
pub(super) use crate::wire::ipv4::{
    has_more_fragments, is_fragment, is_later_fragment, protocol, set_addr, src_dst,
};
pub(super) use crate::wire::transport::{transport_sum, FlowEnd, ICMP_ECHO_REQUEST, L4};

/// Where the fields are: the IPv4 header's from the packet's start, the
/// transport headers' from theirs.
pub(super) mod field {
    pub use crate::wire::ipv4::field::*;
    pub use crate::wire::transport::field::*;
}

impl From<transport::Malformed> for DropReason {
    #[inline]
    fn from(malformed: transport::Malformed) -> DropReason {
        match malformed {
            transport::Malformed::Truncated => DropReason::L4Truncated,
            transport::Malformed::NoPorts => DropReason::NatUnsupported,
        }
    }
}

/// The transport fields of a packet or of its first fragment.
#[inline]
pub(super) fn transport(ip: &[u8], header_len: usize) -> Result<L4, DropReason> {
    Ok(L4::parse(ip, header_len)?)
}

/// The flow of a packet as it arrives in `zone`.
#[inline]
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

/// The IPv4 packet of a frame, up to its total length. The caller made
/// sure the header was checked.
#[inline]
pub(super) fn ip_packet<'a>(frame: &'a mut Frame<'_>) -> &'a mut [u8] {
    let ip = after_ethernet_mut(frame.data_mut());
    let total_len = ipv4::total_len(ip).min(ip.len());
    ip.get_mut(..total_len).unwrap_or_default()
}

/// What finds a packet's fragments as they arrive in `zone`.
pub(super) fn frag_key(ip: &[u8], zone: TenantId) -> FragKey {
    let (src, dst) = src_dst(ip);
    FragKey {
        zone,
        src,
        dst,
        proto: ipv4::protocol(ip),
        id: ipv4::ident(ip),
    }
}

/// The packet an ICMP error quotes, with `key`: the flow it belongs to,
/// as that flow's packets arrive in `zone`.
pub(super) struct Related {
    pub(super) key: FlowKey,
    pub(super) quote: icmp_quote::Quote,
}

pub(super) fn quote(ip: &[u8], header_len: usize, zone: TenantId) -> Result<Related, DropReason> {
    let quote = icmp_quote::Quote::parse(ip, header_len)?;
    // The quoted packet went the other way: turned around, it is a
    // packet of the session as it would arrive here.
    let key = FlowKey {
        zone,
        proto: quote.proto,
        src: quote.dst,
        dst: quote.src,
        sport: quote.dport,
        dport: quote.sport,
    };
    Ok(Related { key, quote })
}
