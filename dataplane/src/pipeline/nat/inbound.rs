//! In through NAT: frames that arrived on the uplink for a public
//! address. A reply finds its session; a new flow to a port forward or a
//! static address opens one if the ingress firewall and the VM's tier
//! let it. The destination goes back to the inside endpoint, and l3
//! routes the frame in the tenant's VRF.
use super::hairpin;
use super::icmp_error::icmp_error;
use super::{inward, Nat, Pending, Translator};
use crate::conntrack::{Conntrack, Dir, FlowKey, SessionId, ICMP, PUBLIC};
use crate::frame::Frame;
use crate::pipeline::flow::{self, FlowEnd, L4};
use crate::pipeline::owner::{self, Workers};
use crate::pipeline::session::{note_first_fragment, opening_state, setup_error};
use crate::pipeline::{acl, after_ethernet_mut, ipv4, offload, DropReason, Event, Stage, Stats};
use crate::table::{Action, Filtering, Tables, TenantId};

/// Frames that arrived on the uplink for a public address.
pub(crate) enum In {}

impl Translator for Nat<'_, In> {
    const STAGE: Stage = Stage::Unsnat;

    #[inline]
    fn read(
        &mut self,
        frame: &mut Frame<'_>,
        ct: &Conntrack,
        stats: &mut Stats,
    ) -> Result<Option<(L4, FlowKey)>, DropReason> {
        // A sender on the public side may have left its checksum to
        // offload (veth peers do); finish it before rewriting, as l2 does
        // inside.
        if offload::finish_partial_checksum(frame.data_mut()) {
            stats.event(Event::ChecksumFinished);
        }
        let ip = after_ethernet_mut(frame.data_mut());
        let checked = ipv4::check(ip)?;
        let ip = ip.get_mut(..checked.total_len).unwrap_or_default();
        let workers = self.workers;
        if !workers.is_single() {
            if let Some(owner) = public_owner(self.tables, ip, checked.header_len, workers) {
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
        if flow::is_icmp_error(ip, checked.header_len) {
            let tenant = icmp_error(ip, checked.header_len, ct, PUBLIC)?;
            inward(&mut frame.meta, tenant);
            stats.event(Event::Unsnat);
            return Ok(None);
        }
        let l4 = flow::transport(ip, checked.header_len)?;
        let key = flow::flow_key(ip, &l4, PUBLIC);
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
        let now = self.now;
        let id = match p.found.or_else(|| ct.lookup(&p.key)) {
            Some((id, Dir::Reply)) => id,
            Some((_, Dir::Orig)) => return Err(DropReason::NatNoSession),
            None => {
                let id = dnat_setup(self.tables, &p, ct, now)?;
                stats.event(Event::SessionNew);
                stats.event(Event::Dnat);
                id
            }
        };
        ct.update(id, Dir::Reply, p.l4.tcp_flags, now);
        frame.meta.session = Some((id, Dir::Reply));
        let ip = flow::ip_packet(frame);
        let more = flow::has_more_fragments(ip);
        note_first_fragment(flow::frag_key(ip, PUBLIC), more, id, ct, now)?;
        let inside = ct.session(id).ok_or(DropReason::NatNoSession)?.inside;
        p.l4.rewrite(ip, FlowEnd::Destination, inside.src, inside.sport);
        inward(&mut frame.meta, inside.zone);
        stats.event(Event::Unsnat);
        Ok(())
    }
}

/// The worker that owns a packet arriving for a public address, if one
/// can: see `owner`.
fn public_owner(tables: &Tables, ip: &[u8], header_len: usize, workers: &Workers) -> Option<u16> {
    let nat = tables.nat();
    workers.of_packet(ip, PUBLIC, || {
        if flow::is_icmp_error(ip, header_len) {
            let (public, proto, port) = owner::quoted_source(ip, header_len)?;
            return workers.of_public(nat, public, proto, port);
        }
        let l4 = flow::transport(ip, header_len).ok()?;
        workers.of_public(nat, flow::src_dst(ip).1, l4.proto, l4.dport)
    })
}

/// Whether `tenant`'s ingress firewall lets the new flow of `p` in (to its
/// public address and port).
fn ingress_allows(tables: &Tables, tenant: TenantId, p: &Pending) -> Result<(), DropReason> {
    let ingress = &tables
        .firewall(tenant)
        .ok_or(DropReason::StaleTables)?
        .ingress;
    match ingress
        .decide(p.key.src, p.key.dst, p.l4.proto, p.l4.rule_port())
        .1
    {
        Action::Deny => Err(DropReason::FirewallIngressDenied),
        _ => Ok(()),
    }
}

/// A packet from the internet to a source-NAT mapping's public port with
/// no session: its tenant's filtering decides whether it opens one toward
/// the mapping's inside endpoint (RFC 4787 REQ-8), as if the endpoint
/// had sent to it; the ingress firewall and the endpoint's tier judge it
/// too, as they judge a port forward's.
fn mapping_setup(
    tables: &Tables,
    p: &Pending,
    ct: &mut Conntrack,
    now: u32,
) -> Result<SessionId, DropReason> {
    let nat = tables.nat();
    let (public, public_port) = (p.key.dst, p.key.dport);
    let tenant = nat.owner(public).ok_or(DropReason::NatNoSession)?;
    let filtering = match nat.source(tenant) {
        Some(snat) if snat.ip == public && p.l4.proto != ICMP => snat.filtering,
        _ => return Err(DropReason::NatNoSession),
    };
    let mapped = match filtering {
        Filtering::AddressAndPortDependent => return Err(DropReason::NatNoSession),
        Filtering::EndpointIndependent => ct.mapped(public, p.l4.proto, public_port),
        Filtering::AddressDependent => ct
            .mapped(public, p.l4.proto, public_port)
            .filter(|m| m.contacted(p.key.src)),
    }
    .ok_or(DropReason::NatFiltered)?;
    let state = opening_state(&p.l4)?;
    ingress_allows(tables, tenant, p)?;
    let inside = FlowKey {
        zone: tenant,
        proto: p.l4.proto,
        src: mapped.inside,
        dst: p.key.src,
        sport: mapped.inside_port,
        dport: p.key.sport,
    };
    acl::decide(
        tables,
        tenant,
        (p.key.src, inside.src),
        inside.proto,
        inside.sport,
    )?;
    ct.setup_snat_inbound(inside, (public, public_port), state, now)
        .map_err(setup_error)
}

/// A packet from the public side with no session: a port forward or a
/// static NAT address may open one (the VM side as `inside`, as if the VM
/// had sent the reply).
fn dnat_setup(
    tables: &Tables,
    p: &Pending,
    ct: &mut Conntrack,
    now: u32,
) -> Result<SessionId, DropReason> {
    let nat = tables.nat();
    let (public, public_port) = (p.key.dst, p.key.dport);
    let (tenant, vm, vm_port) = match nat.forward(public, p.l4.proto, public_port) {
        Some(to) => (to.tenant, to.ip, to.port),
        None => match nat.static_of_public(public) {
            Some((tenant, vm)) => (tenant, vm, public_port),
            None => return mapping_setup(tables, p, ct, now),
        },
    };
    let state = opening_state(&p.l4)?;
    ingress_allows(tables, tenant, p)?;
    // The VM's tier sees the flow as it will arrive, translated.
    let rule_port = if p.l4.proto == ICMP {
        p.l4.rule_port()
    } else {
        vm_port
    };
    acl::decide(tables, tenant, (p.key.src, vm), p.l4.proto, rule_port)?;
    let inside = FlowKey {
        zone: tenant,
        proto: p.l4.proto,
        src: vm,
        dst: p.key.src,
        sport: vm_port,
        dport: if p.l4.proto == ICMP {
            vm_port
        } else {
            p.key.sport
        },
    };
    let id = ct
        .setup_fixed(inside, public, public_port, state, true, now)
        .map_err(setup_error)?;
    // From one of our own public addresses (a hairpinned VM): the VM's
    // answers go back in the same way.
    hairpin::mark_if_local(nat, ct, id, p.key.src);
    Ok(id)
}
