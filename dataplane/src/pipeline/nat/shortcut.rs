//! The NAT shortcut: a VM's packet of a session whose earlier packet went
//! out of the uplink, under these same tables, goes out the same way
//! without l2, l3 and the rest of the NAT stage. What the full path
//! decided from the flow alone (routed to the internet, not to a gateway
//! address, not hairpinned, allowed by the firewall and the tier ACLs
//! when it opened) holds for every packet of the flow until the tables
//! change (`Session::shortcut_gen`). What can vary per packet is checked
//! here: addressed to its port's gateway MAC, IPv4 without options, not a
//! fragment, TTL above 1, a session in the inside direction. Anything
//! else is left where it was, for the full path. (Not to be confused
//! with the fast path, which forwards in the steering program.)
use super::{run_batched, Pending, Translator};
use crate::conntrack::{Conntrack, Dir, FlowKey};
use crate::frame::Frame;
use crate::pipeline::flow::{self, field, FlowEnd, L4};
use crate::pipeline::{after_ethernet, byte, ipv4, l3, offload, DropReason, Event, Stage, Stats};
use crate::table::{PortId, PortRole, Tables};
use crate::wire::EthernetAddress;

struct Shortcut<'a> {
    tables: &'a Tables,
    now: u32,
    uplink: PortId,
    uplink_mac: EthernetAddress,
    gateway_mac: EthernetAddress,
    generation: u32,
}

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
    let generation = tables.generation();
    if generation == 0 {
        return; // tables not from a builder: nothing is cached for them
    }
    let mut shortcut = Shortcut {
        tables,
        now,
        uplink,
        uplink_mac: port.mac,
        gateway_mac,
        generation,
    };
    // A miss is a new flow or a slow one: the full path looks it up again.
    run_batched(frames, ct, stats, &mut shortcut);
}

impl Translator for Shortcut<'_> {
    const STAGE: Stage = Stage::L2;

    #[inline]
    fn read(
        &mut self,
        frame: &mut Frame<'_>,
        _: &Conntrack,
        stats: &mut Stats,
    ) -> Result<Option<(L4, FlowKey)>, DropReason> {
        let tables = self.tables;
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
        let options = checked.header_len != field::MIN_HEADER_LEN;
        if options || flow::is_fragment(ip) || byte(ip, field::TTL) <= 1 {
            return Ok(None);
        }
        // Without options: offsets fold to constants.
        let Ok(l4) = flow::transport(ip, field::MIN_HEADER_LEN) else {
            return Ok(None);
        };
        let key = flow::flow_key(ip, &l4, tenant);
        Ok(Some((l4, key)))
    }

    #[inline]
    fn translate(
        &mut self,
        frame: &mut Frame<'_>,
        p: Pending,
        ct: &mut Conntrack,
        stats: &mut Stats,
    ) -> Result<(), DropReason> {
        let Some((id, Dir::Orig)) = p.found else {
            return Ok(());
        };
        let Some(s) = ct.session(id) else {
            return Ok(());
        };
        if s.shortcut_gen != self.generation {
            return Ok(());
        }
        let (nat_ip, nat_port) = (s.nat_ip, s.nat_port);
        ct.update(id, Dir::Orig, p.l4.tcp_flags, self.now);
        frame.meta.session = Some((id, Dir::Orig));
        l3::forward(frame, self.uplink_mac, self.gateway_mac);
        p.l4.rewrite(flow::ip_packet(frame), FlowEnd::Source, nat_ip, nat_port);
        frame.meta.tx(self.uplink);
        stats.event(Event::Routed);
        stats.event(Event::Snat);
        stats.event(Event::NatShortcut);
        Ok(())
    }
}
