//! L3: routing inside the tenant's VRF. Packets to a gateway address are
//! the router's own (ICMP echo, DHCP for the services); the rest get a TTL check, a longest-prefix
//! match, next-hop resolution through the host table, a TTL decrement with
//! an incremental checksum update, and new MACs.
use super::acl;
use super::icmp::{self, IcmpError};
use super::owner::Workers;
use super::{
    after_ethernet, after_ethernet_mut, byte, fragment, ipv4, DropReason, Event, Stage, Stats,
};
use crate::conntrack::Conntrack;
use crate::frame::Frame;
use crate::table::{Location, NextHop, PortRole, Tables};
use crate::wire::{
    checksum, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4DstUnreachable,
    Icmpv4Message, Ipv4Packet,
};

/// What routing needs beyond the tables: the worker's sessions, for tier
/// ACLs.
pub(crate) struct Sessions<'a> {
    pub ct: &'a mut Conntrack,
    pub now: u32,
    pub workers: &'a Workers,
}

pub(crate) fn run(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    mut sessions: Sessions<'_>,
    stats: &mut Stats,
) {
    let overlay_ip_mtu = tables.overlay_ip_mtu().unwrap_or(usize::MAX);
    for frame in frames.iter_mut().filter(|f| f.meta.stage == Stage::L3) {
        route(tables, frame, overlay_ip_mtu, &mut sessions, stats);
    }
}

fn route(
    tables: &Tables,
    frame: &mut Frame<'_>,
    overlay_ip_mtu: usize,
    sessions: &mut Sessions<'_>,
    stats: &mut Stats,
) {
    let data = frame.data();
    // L2 checked the Ethernet header's length.
    if EthernetFrame::new_unchecked(data).ethertype() != EthernetProtocol::Ipv4 {
        frame.meta.drop(stats, DropReason::EthertypeUnsupported);
        return;
    }
    let checked = match ipv4::check(after_ethernet(data)) {
        Ok(c) => c,
        Err(reason) => return frame.meta.drop(stats, reason),
    };
    // Checked whole above.
    let ip = Ipv4Packet::new_unchecked(after_ethernet(data));
    let (dst, ttl) = (ip.dst_addr(), ip.hop_limit());
    let tenant_id = frame.meta.tenant;
    let Some(tenant) = tables.tenant(tenant_id) else {
        return frame.meta.drop(stats, DropReason::StaleTables);
    };
    let local = frame.meta.from_vtep.is_none() && !frame.meta.translated;
    if tenant.is_gateway(dst) {
        if crate::service::wanted_at_gateway(ip.as_ref(), local) {
            // DHCP, DNS: the router's services.
            return frame.meta.hand_to_services(stats);
        }
        return icmp::echo_reply(frame, &checked, stats);
    }
    if dst == crate::service::metadata::ADDRESS && local {
        if crate::service::metadata_packet(ip.as_ref()) {
            return frame.meta.hand_to_services(stats);
        }
        return frame.meta.drop(stats, DropReason::GatewayProtoUnsupported);
    }
    if ttl <= 1 {
        let error = IcmpError::new(Icmpv4Message::TimeExceeded, 0, DropReason::TtlExceeded);
        return icmp::error(tables, frame, &checked, error, stats);
    }
    let route = tables.route(tenant_id, dst);
    let through_nat = || {
        frame.meta.translated
            || (route == Some(NextHop::Internet) && tables.nat().translates(tenant_id))
    };
    if tables.acls(tenant_id).is_some() && !through_nat() {
        let Sessions { ct, now, workers } = sessions;
        match acl::check(tables, frame, ct, *now, workers, stats) {
            acl::Routed::Pass(session) => frame.meta.session = session,
            acl::Routed::Handoff(to) => return frame.meta.handoff(to),
            acl::Routed::Drop(reason) => return frame.meta.drop(stats, reason),
        }
    }
    let next_hop = match route {
        None => {
            let code = Icmpv4DstUnreachable::NetUnreachable.into();
            let error = IcmpError::new(Icmpv4Message::DstUnreachable, code, DropReason::NoRoute);
            return icmp::error(tables, frame, &checked, error, stats);
        }
        Some(NextHop::Blackhole) => return frame.meta.drop(stats, DropReason::Blackhole),
        // A VM behind a VTEP may use this router as its way out, through
        // the tenant's NAT here (the answers come back to this router);
        // what a remote router routed has a way out of its own.
        Some(NextHop::Internet)
            if frame.meta.from_vtep.is_some()
                && (frame.meta.src_tier.is_none() || !tables.nat().translates(tenant_id)) =>
        {
            return frame.meta.drop(stats, DropReason::OverlayNotLocal)
        }
        // Untranslated internet traffic is guarded here; translated flows
        // when their NAT session opens (replies to inbound ones pass).
        Some(NextHop::Internet)
            if !tables.nat().translates(tenant_id) && tables.toward_host(tenant_id, dst) =>
        {
            return frame.meta.drop(stats, DropReason::UnderlayGuard)
        }
        Some(NextHop::Internet) => return to_internet(tables, frame, stats),
        Some(NextHop::Connected) => dst,
        Some(NextHop::Via(gateway)) => gateway,
    };
    let Some(host) = tables.host(tenant_id, next_hop) else {
        let code = Icmpv4DstUnreachable::HostUnreachable.into();
        let error = IcmpError::new(Icmpv4Message::DstUnreachable, code, DropReason::HostUnknown);
        return icmp::error(tables, frame, &checked, error, stats);
    };
    let src_mac = match host.location {
        Location::Local(port) => {
            frame.meta.tx(port);
            tables.port(port).map_or(tenant.router_mac, |p| p.mac)
        }
        Location::Remote(_) if frame.meta.from_vtep.is_some() => {
            // Never reflected back into the overlay.
            return frame.meta.drop(stats, DropReason::OverlayNotLocal);
        }
        Location::Remote(vtep) => {
            if checked.total_len > overlay_ip_mtu && !fragment::allowed(frame.data()) {
                return icmp::too_big_for_overlay(tables, frame, overlay_ip_mtu, None, stats);
            }
            frame.meta.encap(vtep);
            tenant.router_mac
        }
    };
    forward(frame, src_mac, host.mac);
    stats.event(Event::Routed);
}

fn to_internet(tables: &Tables, frame: &mut Frame<'_>, stats: &mut Stats) {
    let Some((uplink, port)) = tables.uplink() else {
        return frame.meta.drop(stats, DropReason::NoUplink);
    };
    let PortRole::Uplink {
        internet_gateway_mac: Some(gateway_mac),
        ..
    } = port.role
    else {
        return frame.meta.drop(stats, DropReason::NoInternetGateway);
    };
    forward(frame, port.mac, gateway_mac);
    stats.event(Event::Routed);
    if tables.nat().translates(frame.meta.tenant) {
        // Out of the uplink once its source is translated.
        frame.meta.stage = Stage::Snat;
    } else {
        frame.meta.tx(uplink);
    }
}

/// Decrements the TTL (RFC 1624 update of the header checksum) and writes
/// the new MACs. The caller checked that TTL > 1 and the header is whole.
#[inline]
pub(super) fn forward(frame: &mut Frame<'_>, src_mac: EthernetAddress, dst_mac: EthernetAddress) {
    let data = frame.data_mut();
    let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
    eth.set_src_addr(src_mac);
    eth.set_dst_addr(dst_mac);
    let ip = after_ethernet_mut(data);
    // TTL and protocol share the word at 8; the header checksum is at 10.
    let ttl = byte(ip, 8).saturating_sub(1);
    checksum::rewrite_word(ip, 8, u16::from_be_bytes([ttl, byte(ip, 9)]), 10);
}
