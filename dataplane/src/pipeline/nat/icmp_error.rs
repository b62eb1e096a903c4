//! ICMP errors about translated flows (RFC 5508), either way.
use crate::conntrack::{Conntrack, PUBLIC, UDP};
use crate::pipeline::flow::{self, field, FlowEnd, Related};
use crate::pipeline::{put, u16_at, DropReason};
use crate::table::TenantId;
use crate::wire::checksum;

/// Translates an ICMP error about a translated flow. It quotes the packet
/// as it was on the side it came from, so the session is found from the
/// quote turned around, and the quote is translated with the outer
/// address: from the public side (`zone` PUBLIC), the outer destination
/// and the quote's source go back to the inside endpoint; from a VM
/// (`zone` its tenant), the outer source and the quote's destination
/// become the public endpoint. Returns the inside tenant.
pub(super) fn icmp_error(
    ip: &mut [u8],
    header_len: usize,
    ct: &Conntrack,
    zone: TenantId,
) -> Result<TenantId, DropReason> {
    let Related { key, quote } = flow::quote(ip, header_len, zone)?;
    let (q_l4, sport_at, dport_at) = (quote.q_l4, quote.sport_at, quote.dport_at);
    let quote = quote.quote;
    let (id, _) = ct.lookup(&key).ok_or(DropReason::NatNoSession)?;
    let s = ct.session(id).ok_or(DropReason::NatNoSession)?;
    // The outer end rewritten; the quote's is the other one.
    let (outer, port_at, addr, port) = match zone == PUBLIC {
        true => (FlowEnd::Destination, sport_at, s.inside.src, s.inside.sport),
        false => (FlowEnd::Source, dport_at, s.nat_ip, s.nat_port),
    };
    flow::set_addr(ip, outer.addr_at(), addr, field::CHECKSUM);
    let quote_addr_at = quote + outer.other().addr_at();
    let old_addr = flow::set_addr(ip, quote_addr_at, addr, quote + field::CHECKSUM);
    let old_port = u16_at(ip, port_at);
    put(ip, port_at, &port.to_be_bytes());
    // The quoted UDP checksum, when present, still matches its packet.
    if key.proto == UDP {
        let at = q_l4 + field::UDP_CHECKSUM;
        let sum = u16_at(ip, at);
        let sum = flow::transport_sum(UDP, sum, old_addr, u32::from(addr), old_port, port);
        put(ip, at, &sum.to_be_bytes());
    }
    // The ICMP checksum covers the quote: recompute it (errors are small).
    let icmp = ip.get_mut(header_len..).unwrap_or_default();
    put(icmp, field::ICMP_CHECKSUM, &[0, 0]);
    let sum = checksum::of(icmp);
    put(icmp, field::ICMP_CHECKSUM, &sum.to_be_bytes());
    Ok(s.inside.zone)
}
