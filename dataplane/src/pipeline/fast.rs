//! The established fast path for NAT: a VM's packet of a session whose
//! earlier packet the slow path sent out of the uplink, under these same
//! tables, goes out the same way without l2, l3 and the rest of the NAT
//! stage. What the slow path decided from the flow alone (routed to the
//! internet, not to a gateway address, not hairpinned, allowed by the
//! firewall and the tier ACLs when it opened) holds for every packet of
//! the flow until the tables change (`Session::fast_gen`). What can vary
//! per packet is checked here: addressed to its port's gateway MAC, IPv4
//! without options, not a fragment, TTL above 1, a session in the inside
//! direction. Anything else is left where it was, for the slow path.
use super::nat::{self, Pending};
use super::{after_ethernet, byte, ipv4, l3, offload, Event, Stage, Stats};
use crate::conntrack::{Conntrack, Dir};
use crate::frame::Frame;
use crate::table::{PortRole, Tables};

/// IPv4 header flags and offset that make a fragment.
const FRAGMENT: u16 = 0x3fff;

pub(crate) fn run_out(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    ct: &mut Conntrack,
    now: u32,
    stats: &mut Stats,
) {
    if ct.is_empty() {
        return;
    }
    let Some((uplink, port)) = tables.uplink() else {
        return;
    };
    let PortRole::Uplink {
        internet_gateway_mac: Some(gateway_mac),
        ..
    } = port.role
    else {
        return;
    };
    let (uplink_mac, generation) = (port.mac, tables.generation());
    if generation == 0 {
        return; // tables not from a builder: nothing is cached for them
    }
    let read = |frame: &mut Frame<'_>, _: &Conntrack, stats: &mut Stats| {
        let tenant = frame.meta.tenant;
        let to_gateway = tables
            .port(frame.meta.in_port)
            .is_some_and(|p| frame.data().get(..6) == Some(&p.mac.0[..]));
        let ipv4 = frame.data().get(12..14) == Some(&[0x08, 0x00][..]);
        if !to_gateway || !ipv4 || !tables.nat().translates(tenant) {
            return Ok(None);
        }
        if offload::finish_partial_checksum(frame.data_mut()) {
            stats.event(Event::ChecksumFinished);
        }
        let ip = after_ethernet(frame.data());
        let Ok(checked) = ipv4::check(ip) else {
            return Ok(None);
        };
        let ip = ip.get(..checked.total_len).unwrap_or(ip);
        if checked.header_len != 20 || nat::frag_field(ip) & FRAGMENT != 0 || byte(ip, 8) <= 1 {
            return Ok(None);
        }
        let Ok(l4) = nat::transport(ip, 20) else {
            return Ok(None);
        };
        let key = nat::flow_key(ip, &l4, tenant);
        Ok(Some((l4, key)))
    };
    let translate = |frame: &mut Frame<'_>, p: Pending, ct: &mut Conntrack, stats: &mut Stats| {
        let Some((id, Dir::Orig)) = p.found else {
            return Ok(());
        };
        let Some(s) = ct.session(id) else {
            return Ok(());
        };
        if s.fast_gen != generation {
            return Ok(());
        }
        let (nat_ip, nat_port) = (s.nat_ip, s.nat_port);
        ct.update(id, Dir::Orig, p.l4.tcp_flags, now);
        l3::forward(frame, uplink_mac, gateway_mac);
        nat::rewrite(
            nat::ip_packet(frame),
            &p.l4,
            12,
            nat_ip,
            p.l4.sport_at,
            nat_port,
        );
        frame.meta.tx(uplink);
        stats.event(Event::Routed);
        stats.event(Event::Snat);
        stats.event(Event::FastPath);
        Ok(())
    };
    // A miss is a new flow or a slow one: the slow path looks it up again.
    nat::run_batched(frames, Stage::L2, ct, stats, read, translate, |_, _| {});
}
