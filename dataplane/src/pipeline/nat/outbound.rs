//! Out through NAT: frames l3 sent toward the internet from a tenant that
//! translates. A new flow passes the egress firewall, the underlay guard
//! and the tier ACLs, and opens a session from the VM's static address or
//! the tenant's source-NAT pool (this worker's block of ports); then the
//! source becomes the public endpoint. A flow to one of the host's own
//! public addresses is hairpinned: translated, it comes straight back in.
use super::hairpin;
use super::icmp_error::icmp_error;
use super::{out_of_uplink, Nat, Pending, Translator};
use crate::conntrack::{Conntrack, Dir, FlowKey, SessionId};
use crate::frame::Frame;
use crate::pipeline::acl;
use crate::pipeline::flow::{self, FlowEnd, L4};
use crate::pipeline::owner::Workers;
use crate::pipeline::session::{note_first_fragment, opening_state, setup_error};
use crate::pipeline::{byte, DropReason, Event, Stage, Stats};
use crate::table::{Action, Filtering, TenantId};

/// Frames l3 sent toward the internet from a tenant with NAT.
pub(crate) enum Out {}

impl Translator for Nat<'_, Out> {
    const STAGE: Stage = Stage::Snat;

    #[inline]
    fn read(
        &mut self,
        frame: &mut Frame<'_>,
        ct: &Conntrack,
        stats: &mut Stats,
    ) -> Result<Option<(L4, FlowKey)>, DropReason> {
        let zone = frame.meta.tenant;
        // l3 checked the header (and decremented the TTL).
        let ip = flow::ip_packet(frame);
        let header_len = usize::from(byte(ip, 0) & 0x0f) * 4;
        let workers = self.workers;
        if !workers.is_single() {
            if let Some(owner) = inside_owner(ip, header_len, zone, workers) {
                if owner != workers.me {
                    frame.meta.handoff(owner);
                    return Ok(None);
                }
            }
        }
        if flow::is_later_fragment(ip) {
            // After the batch's first fragments (see `later_fragments`).
            return Ok(None);
        }
        if flow::is_icmp_error(ip, header_len) {
            icmp_error(ip, header_len, ct, zone)?;
            out_of_uplink(self.tables, &mut frame.meta, stats);
            stats.event(Event::Snat);
            return Ok(None);
        }
        let l4 = flow::transport(ip, header_len)?;
        let key = flow::flow_key(ip, &l4, zone);
        Ok(Some((l4, key)))
    }

    /// A new session reads its endpoint's mapping first: load it early.
    fn missed(&self, ct: &Conntrack, key: &FlowKey) {
        if let Some(snat) = self.tables.nat().source(key.zone) {
            ct.prefetch_mapping(key, snat.ip);
        }
    }

    #[inline]
    fn translate(
        &mut self,
        frame: &mut Frame<'_>,
        p: Pending,
        ct: &mut Conntrack,
        stats: &mut Stats,
    ) -> Result<(), DropReason> {
        let (tables, now) = (self.tables, self.now);
        // A frame earlier in this batch may have opened the session (the
        // batch was looked up before any was translated).
        let id = match p.found.or_else(|| ct.lookup(&p.key)) {
            Some((id, _)) => {
                ct.update(id, Dir::Orig, p.l4.tcp_flags, now);
                id
            }
            None => {
                let id = self.open(&p, ct)?;
                stats.event(Event::SessionNew);
                id
            }
        };
        frame.meta.session = Some((id, Dir::Orig));
        let ip = flow::ip_packet(frame);
        let more = flow::has_more_fragments(ip);
        note_first_fragment(flow::frag_key(ip, p.key.zone), more, id, ct, now)?;
        let s = ct.session(id).ok_or(DropReason::NatNoSession)?;
        let (nat_ip, nat_port, hairpin) = (s.nat_ip, s.nat_port, s.hairpin);
        p.l4.rewrite(ip, FlowEnd::Source, nat_ip, nat_port);
        stats.event(Event::Snat);
        if hairpin {
            hairpin::turn_back_in(frame, stats);
        } else {
            out_of_uplink(tables, &mut frame.meta, stats);
            ct.allow_shortcut(id, tables.generation());
        }
        Ok(())
    }
}

/// The worker that owns a packet from a VM toward the internet, if one
/// can be told: see `owner`.
fn inside_owner(ip: &[u8], header_len: usize, zone: TenantId, workers: &Workers) -> Option<u16> {
    workers.of_packet(ip, zone, || {
        if flow::is_icmp_error(ip, header_len) {
            // About a flow toward the VM: its endpoint is the quoted
            // destination.
            let quoted = flow::quote(ip, header_len, zone).ok()?.quote;
            return Some(workers.of_inside(zone, quoted.dst, quoted.proto, quoted.dport));
        }
        let l4 = flow::transport(ip, header_len).ok()?;
        Some(workers.of_inside(zone, flow::src_dst(ip).0, l4.proto, l4.sport))
    })
}

impl Nat<'_, Out> {
    /// Opens the session of a new flow out, if the rules let it.
    fn open(&self, p: &Pending, ct: &mut Conntrack) -> Result<SessionId, DropReason> {
        let (tables, workers, now) = (self.tables, self.workers, self.now);
        let state = opening_state(&p.l4)?;
        let firewall = tables.firewall(p.key.zone);
        let egress = &firewall.ok_or(DropReason::StaleTables)?.egress;
        if tables.toward_host(p.key.zone, p.key.dst) {
            return Err(DropReason::UnderlayGuard);
        }
        let port = p.l4.rule_port();
        let (_, action) = egress.decide(p.key.src, p.key.dst, p.l4.proto, port);
        if action == Action::Deny {
            return Err(DropReason::FirewallEgressDenied);
        }
        acl::decide(tables, p.key.zone, (p.key.src, p.key.dst), p.l4.proto, port)?;
        let nat = tables.nat();
        let id = match nat.static_of_vm(p.key.zone, p.key.src) {
            // 1:1: the VM's public address, ports unchanged.
            Some(public) => ct.setup_fixed(p.key, public, p.key.sport, state, false, now),
            None => {
                let snat = nat
                    .source(p.key.zone)
                    .ok_or(DropReason::NatNoPublicAddress)?;
                // Only this worker's block, so replies come back here.
                let ports = workers
                    .port_block(snat.ports)
                    .ok_or(DropReason::NatPortsExhausted)?;
                let id = ct.setup_snat(p.key, snat.ip, ports, state, now);
                if snat.filtering != Filtering::AddressAndPortDependent {
                    if let Ok(id) = id {
                        ct.note_endpoint(id);
                    }
                }
                id
            }
        }
        .map_err(setup_error)?;
        hairpin::mark_if_local(nat, ct, id, p.key.dst);
        Ok(id)
    }
}
