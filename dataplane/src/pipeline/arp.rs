//! ARP responder. The router answers for its gateway address (and the
//! metadata service's 169.254.169.254) on each VM port, and for every VM of the asker's tier that it knows (local or remote),
//! with that VM's MAC, so ARP never has to be flooded over the overlay
//! (OVN's ARP responder, EVPN's ARP suppression). Requests that arrive from
//! the overlay are answered only for VMs on this host, and for the gateway
//! of the asker's tier (with the tenant's router MAC).
use super::{after_ethernet, after_ethernet_mut, DropReason, Event, Stats};
use crate::frame::Frame;
use crate::service::metadata;
use crate::table::{Location, PortRole, Tables};
use crate::wire::arp::{self, Arp};
use crate::wire::{EthernetAddress, EthernetFrame};
use std::net::Ipv4Addr;

#[inline(always)]
pub(crate) fn respond(tables: &Tables, frame: &mut Frame<'_>, stats: &mut Stats) {
    let Some(request) = Arp::new(after_ethernet(frame.data())) else {
        frame.meta.drop(stats, DropReason::ArpMalformed);
        return;
    };
    let target_ip = request.target_ip();
    if request.operation() != arp::REQUEST || target_ip == request.sender_ip() {
        frame.meta.drop(stats, DropReason::ArpNotOurs);
        return;
    }
    let Some(answer_mac) = answer(tables, frame, target_ip) else {
        frame.meta.drop(stats, DropReason::ArpNotOurs);
        return;
    };
    let data = frame.data_mut();
    let mut eth = EthernetFrame::new_unchecked(&mut data[..]);
    let requester_eth = eth.src_addr();
    eth.set_dst_addr(requester_eth);
    eth.set_src_addr(answer_mac);
    if let Some(mut reply) = Arp::new_mut(after_ethernet_mut(data)) {
        reply.answer(answer_mac.0);
    }
    stats.event(Event::ArpReply);
    frame.meta.reply = Some(super::Reply::Arp);
    frame.meta.bounce();
}

/// The MAC that owns `target` in the frame's tenant, if we answer for it.
fn answer(tables: &Tables, frame: &Frame<'_>, target: Ipv4Addr) -> Option<EthernetAddress> {
    let from_overlay = frame.meta.from_vtep.is_some();
    if from_overlay {
        // A VM behind a VTEP without a router of its own (a Linux VTEP's)
        // uses this one: its tier's gateway is the tenant's router MAC.
        let tenant = tables.tenant(frame.meta.tenant)?;
        let asker_tier = frame.meta.src_tier?;
        if tenant.is_gateway(target) && asker_tier.contains(&target) {
            return Some(tenant.router_mac);
        }
    } else {
        if let Some(port) = tables.port(frame.meta.in_port) {
            if let PortRole::Vm { gateway, .. } = port.role {
                // The metadata service too, for a VM whose route to it is
                // on its link.
                if gateway.addr() == target || target == metadata::ADDRESS {
                    return Some(port.mac);
                }
            }
        }
    }
    let host = tables.host(frame.meta.tenant, target)?;
    if frame.meta.src_tier != Some(host.tier) {
        return None; // the asker's tier only: other tiers are routed
    }
    match host.location {
        Location::Remote(_) if from_overlay => None,
        _ => Some(host.mac),
    }
}
