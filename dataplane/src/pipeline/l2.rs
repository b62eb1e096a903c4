//! L2: switching inside a tier (a tenant's subnet) by destination MAC;
//! a frame to a VM of another tier is dropped (tiers are routed, through
//! their ACLs). The router's own MACs
//! send the frame to L3; a local VM's MAC to its port; a remote VM's MAC to
//! encapsulation. Broadcast ARP goes to the ARP responder, a DHCP
//! client's broadcast to the router's services; other flooding is not done (the controller tells us where every VM is).
use super::{arp, fragment, icmp, offload, DropReason, Event, Meta, Stage, Stats};
use crate::frame::Frame;
use crate::table::{Endpoint, L2Dest, Location, Tables, Tier};
use crate::wire::{vlan, EthernetFrame, EthernetProtocol, ETH_HEADER_LEN};

pub(crate) fn run(tables: &Tables, frames: &mut [Frame<'_>], stats: &mut Stats) {
    let overlay_ip_mtu = tables.overlay_ip_mtu().unwrap_or(usize::MAX);
    for frame in frames.iter_mut().filter(|f| f.meta.stage == Stage::L2) {
        if offload::finish_partial_checksum(frame.data_mut()) {
            stats.event(Event::ChecksumFinished);
        }
        let Ok(eth) = EthernetFrame::new_checked(frame.data()) else {
            frame.meta.drop(stats, DropReason::EthTruncated);
            continue;
        };
        let ethertype = eth.ethertype();
        if ethertype == EthernetProtocol::Unknown(vlan::TPID) {
            frame.meta.drop(stats, DropReason::VlanUnsupported);
            continue;
        }
        let dst = eth.dst_addr();
        if !dst.is_unicast() {
            if ethertype == EthernetProtocol::Arp {
                arp::respond(tables, frame, stats);
            } else if for_dhcp(frame) {
                frame.meta.hand_to_services(stats);
            } else {
                frame.meta.drop(stats, DropReason::L2Broadcast);
            }
            continue;
        }
        match tables.l2(frame.meta.tenant, dst) {
            // Unicast ARP to the router (Linux re-confirms its neighbors so).
            Some(L2Dest::Router) if ethertype == EthernetProtocol::Arp => {
                arp::respond(tables, frame, stats)
            }
            Some(L2Dest::Router) => frame.meta.stage = Stage::L3,
            Some(L2Dest::Host(vm)) if !same_tier(&frame.meta, vm.tier) => {
                frame.meta.drop(stats, DropReason::L2CrossTier)
            }
            Some(L2Dest::Host(Endpoint {
                location: Location::Local(port),
                ..
            })) => {
                stats.event(Event::Bridged);
                frame.meta.tx(port);
            }
            Some(L2Dest::Host(Endpoint {
                location: Location::Remote(vtep),
                ..
            })) => {
                if frame.meta.from_vtep.is_some() {
                    // Never send what came from the overlay back into it.
                    frame.meta.drop(stats, DropReason::SplitHorizon);
                } else if frame.len() - ETH_HEADER_LEN > overlay_ip_mtu
                    && !fragment::allowed(frame.data())
                {
                    let source = ip_dst(frame.data());
                    icmp::too_big_for_overlay(tables, frame, overlay_ip_mtu, source, stats);
                } else {
                    stats.event(Event::Bridged);
                    frame.meta.encap(vtep);
                }
            }
            None => frame.meta.drop(stats, DropReason::L2UnknownUnicast),
        }
    }
}

/// Whether a broadcast is a DHCP client's, from a VM of this host (a
/// VM behind another VTEP is served by its own host's router).
fn for_dhcp(frame: &Frame<'_>) -> bool {
    frame.meta.from_vtep.is_none()
        && EthernetFrame::new_unchecked(frame.data()).ethertype() == EthernetProtocol::Ipv4
        && crate::service::dhcp::client_request(super::after_ethernet(frame.data()))
}

/// Whether a frame may be bridged to a VM of `tier`: it was sent from
/// that tier, or a remote router routed it here (over the overlay, from
/// the tenant's router MAC, which the sending VTEP's VMs cannot forge).
fn same_tier(meta: &Meta, tier: Tier) -> bool {
    match meta.src_tier {
        Some(from) => from == tier,
        None => meta.from_vtep.is_some(),
    }
}

/// The IPv4 destination of an Ethernet frame, if it carries IPv4.
fn ip_dst(frame: &[u8]) -> Option<std::net::Ipv4Addr> {
    let b: [u8; 4] = frame
        .get(ETH_HEADER_LEN + 16..ETH_HEADER_LEN + 20)?
        .try_into()
        .ok()?;
    (frame.get(12..14)? == [0x08, 0x00]).then(|| std::net::Ipv4Addr::from(b))
}
