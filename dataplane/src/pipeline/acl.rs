//! Tier network ACLs (`table::acl`) on routed traffic, statefully: the
//! first packet of a flow is checked against the egress rules of its
//! source's tier and the ingress rules of its destination's, and an
//! allowed flow opens a session, so its later packets and its replies
//! pass without the rules. Flows through NAT are checked when their NAT
//! session opens (`nat`), and pass here.
use super::flow;
use super::owner::Workers;
use super::session::{note_first_fragment, opening_state, setup_error};
use super::{after_ethernet, ipv4, DropReason, Event, Stats};
use crate::conntrack::{Conntrack, Dir, FlowKey, SessionId};
use crate::frame::Frame;
use crate::table::{Action, Tables, TenantId};
use std::net::Ipv4Addr;

/// Whether `tenant`'s tier ACLs let a new flow from `src` to `dst` go:
/// the egress rules of the source's tier, then the ingress rules of the
/// destination's. Traffic inside one tier, or between addresses in no
/// tier with an ACL, is not theirs to judge.
pub(crate) fn decide(
    tables: &Tables,
    tenant: TenantId,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    proto: u8,
    port: u16,
) -> Result<(), DropReason> {
    let Some(acls) = tables.acls(tenant) else {
        return Ok(());
    };
    let (from, to) = (acls.of(src), acls.of(dst));
    if let (Some(a), Some(b)) = (from, to) {
        if std::ptr::eq(a, b) {
            return Ok(());
        }
    }
    if from.is_some_and(|t| t.egress.decide(src, dst, proto, port).1 == Action::Deny) {
        return Err(DropReason::AclEgressDenied);
    }
    if to.is_some_and(|t| t.ingress.decide(src, dst, proto, port).1 == Action::Deny) {
        return Err(DropReason::AclIngressDenied);
    }
    Ok(())
}

/// What l3 does with a routed frame of a tenant with tier ACLs.
pub(crate) enum Routed {
    /// It goes on, in this session if it has one.
    Pass(Option<(SessionId, Dir)>),
    /// Its session belongs to another worker.
    Handoff(u16),
    Drop(DropReason),
}

/// Checks a frame l3 is about to route untranslated in a tenant with
/// tier ACLs.
pub(crate) fn check(
    tables: &Tables,
    frame: &Frame<'_>,
    ct: &mut Conntrack,
    now: u32,
    workers: &Workers,
    stats: &mut Stats,
) -> Routed {
    let tenant = frame.meta.tenant;
    let Some(acls) = tables.acls(tenant) else {
        return Routed::Pass(None);
    };
    let data = after_ethernet(frame.data());
    let Ok(checked) = ipv4::check(data) else {
        return Routed::Pass(None); // l3 checked it already
    };
    let ip = data.get(..checked.total_len).unwrap_or(data);
    let (src, dst) = flow::src_dst(ip);
    match (acls.of(src), acls.of(dst)) {
        (None, None) => return Routed::Pass(None),
        (Some(a), Some(b)) if std::ptr::eq(a, b) => return Routed::Pass(None),
        _ => {}
    }
    if !workers.is_single() {
        if let Some(owner) = pair_owner(ip, checked.header_len, tenant, workers) {
            if owner != workers.me {
                return Routed::Handoff(owner);
            }
        }
    }
    match session_or_rules(tables, ip, checked.header_len, tenant, ct, now, stats) {
        Ok(session) => Routed::Pass(session),
        Err(reason) => Routed::Drop(reason),
    }
}

/// The worker that owns a routed flow's session, if one can be told:
/// see `owner`.
fn pair_owner(ip: &[u8], header_len: usize, tenant: TenantId, workers: &Workers) -> Option<u16> {
    workers.of_packet(ip, tenant, || {
        if flow::is_icmp_error(ip, header_len) {
            let quoted = flow::quote(ip, header_len, tenant).ok()?.quote;
            let ends = ((quoted.src, quoted.sport), (quoted.dst, quoted.dport));
            return Some(workers.of_pair(tenant, ends.0, ends.1));
        }
        let (src, dst) = flow::src_dst(ip);
        // Other protocols have no ports: their flows are the address pair's.
        let (sport, dport) =
            flow::transport(ip, header_len).map_or((0, 0), |l4| (l4.sport, l4.dport));
        Some(workers.of_pair(tenant, (src, sport), (dst, dport)))
    })
}

fn session_or_rules(
    tables: &Tables,
    ip: &[u8],
    header_len: usize,
    tenant: TenantId,
    ct: &mut Conntrack,
    now: u32,
    stats: &mut Stats,
) -> Result<Option<(SessionId, Dir)>, DropReason> {
    let (src, dst) = flow::src_dst(ip);
    if flow::is_later_fragment(ip) {
        // Its first fragment opened or found the session, and noted it.
        return match ct.fragment_session(&flow::frag_key(ip, tenant), now) {
            Some(_) => Ok(None),
            None => Err(DropReason::AclFragment),
        };
    }
    if flow::is_icmp_error(ip, header_len) {
        // About a flow with a session: related, it passes. Otherwise the
        // rules judge it (by type and code), without a session.
        let related = flow::quote(ip, header_len, tenant)
            .ok()
            .is_some_and(|q| ct.lookup(&q.key).is_some());
        // The rules match ICMP on (type, code): both must be there.
        let Some(&[icmp_type, icmp_code]) = ip.get(header_len..header_len + 2) else {
            return Err(DropReason::L4Truncated);
        };
        let rule_port = u16::from_be_bytes([icmp_type, icmp_code]);
        return match related {
            true => Ok(None),
            false => {
                decide(tables, tenant, (src, dst), flow::protocol(ip), rule_port).map(|_| None)
            }
        };
    }
    let l4 = match flow::transport(ip, header_len) {
        Ok(l4) => l4,
        // Other protocols: no ports, so the rules judge each packet.
        Err(DropReason::NatUnsupported) => {
            return decide(tables, tenant, (src, dst), flow::protocol(ip), 0).map(|_| None)
        }
        Err(reason) => return Err(reason),
    };
    let key: FlowKey = flow::flow_key(ip, &l4, tenant);
    let (id, dir) = match ct.lookup(&key) {
        Some((id, dir)) => {
            ct.update(id, dir, l4.tcp_flags, now);
            (id, dir)
        }
        None => {
            decide(tables, tenant, (src, dst), l4.proto, l4.rule_port())?;
            // A packet that cannot open a session (TCP without SYN, an
            // echo reply) passes on the rules alone.
            let Ok(state) = opening_state(&l4) else {
                return Ok(None);
            };
            let id = ct.setup_routed(key, state, now).map_err(setup_error)?;
            stats.event(Event::SessionNew);
            (id, Dir::Orig)
        }
    };
    let more = flow::has_more_fragments(ip);
    note_first_fragment(flow::frag_key(ip, tenant), more, id, ct, now)?;
    Ok(Some((id, dir)))
}
