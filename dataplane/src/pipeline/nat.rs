//! Source NAT and its return path.
//!
//! Out (after l3 chose the internet route for a tenant with source NAT):
//! the inside flow's session is found or opened, and the source rewritten
//! to the tenant's public address and port. In (ingress saw a frame to a
//! public address): the reply's session is found, the destination
//! rewritten back to the inside endpoint, and l3 routes it in the
//! tenant's VRF. Checksums are updated incrementally (RFC 1624).
use super::acl;
use super::owner::{self, Workers};
use super::{
    after_ethernet_mut, byte, ipv4, offload, put, u16_at, u32_at, DropReason, Event, Meta, Stage,
    Stats,
};
use crate::conntrack::{
    self, Conntrack, Dir, FlowKey, FragKey, SessionId, SetupError, ICMP, PUBLIC, TCP, UDP,
};
use crate::frame::{Frame, BATCH_SIZE};
use crate::table::{Action, Tables, TenantId};
use crate::wire::checksum;
use arrayvec::ArrayVec;
use std::net::Ipv4Addr;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// The transport fields NAT reads and rewrites, as offsets into the IPv4
/// packet.
pub(super) struct L4 {
    pub(super) proto: u8,
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) tcp_flags: u8,
    /// The ICMP type (echo request or reply); 0 for TCP and UDP.
    pub(super) icmp_type: u8,
    /// Source and destination port (for ICMP echo both are the identifier).
    pub(super) sport_at: usize,
    pub(super) dport_at: usize,
    pub(super) checksum_at: usize,
}

/// Reads the ports (or ICMP echo identifier) of a packet or of its first
/// fragment.
pub(super) fn transport(ip: &[u8], header_len: usize) -> Result<L4, DropReason> {
    let l4 = ip.get(header_len..).unwrap_or_default();
    let word = |at: usize| u16_at(l4, at);
    let (proto, h) = (byte(ip, 9), header_len);
    match proto {
        TCP if l4.len() >= 20 => Ok(L4 {
            proto,
            sport: word(0),
            dport: word(2),
            tcp_flags: byte(l4, 13),
            icmp_type: 0,
            sport_at: h,
            dport_at: h + 2,
            checksum_at: h + 16,
        }),
        UDP if l4.len() >= 8 => Ok(L4 {
            proto,
            sport: word(0),
            dport: word(2),
            tcp_flags: 0,
            icmp_type: 0,
            sport_at: h,
            dport_at: h + 2,
            checksum_at: h + 6,
        }),
        ICMP if l4.len() >= 8 && matches!(byte(l4, 0), ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) => {
            Ok(L4 {
                proto,
                sport: word(4),
                dport: word(4),
                tcp_flags: 0,
                icmp_type: byte(l4, 0),
                sport_at: h + 4,
                dport_at: h + 4,
                checksum_at: h + 2,
            })
        }
        TCP | UDP | ICMP if l4.len() < 8 => Err(DropReason::L4Truncated),
        TCP => Err(DropReason::L4Truncated),
        _ => Err(DropReason::NatUnsupported),
    }
}

/// Rewrites the IPv4 address at `addr_at` and the port at `port_at`,
/// updating the header checksum and the transport checksum (which covers
/// the address through the pseudo-header, except for ICMP).
#[inline]
pub(super) fn rewrite(
    ip: &mut [u8],
    l4: &L4,
    addr_at: usize,
    addr: Ipv4Addr,
    port_at: usize,
    port: u16,
) {
    let old_addr = set_addr(ip, addr_at, addr, 10);
    let old_port = u16_at(ip, port_at);
    put(ip, port_at, &port.to_be_bytes());
    let at = l4.checksum_at;
    let sum = u16_at(ip, at);
    let sum = match l4.proto {
        ICMP => checksum::update_u16(sum, old_port, port),
        _ => transport_sum(l4.proto, sum, old_addr, u32::from(addr), old_port, port),
    };
    put(ip, at, &sum.to_be_bytes());
}

/// Writes `addr` at `at` of `ip` and updates the checksum at
/// `checksum_at` to match (RFC 1624); returns the old address.
#[inline]
fn set_addr(ip: &mut [u8], at: usize, addr: Ipv4Addr, checksum_at: usize) -> u32 {
    let old = u32_at(ip, at);
    put(ip, at, &addr.octets());
    let sum = checksum::update_u32(u16_at(ip, checksum_at), old, u32::from(addr));
    put(ip, checksum_at, &sum.to_be_bytes());
    old
}

/// A TCP or UDP checksum after an address (in the pseudo-header) and a
/// port change. UDP's 0 means "no checksum" and stays so; a computed 0 is
/// sent as 0xffff (RFC 768).
#[inline]
fn transport_sum(proto: u8, sum: u16, old_addr: u32, addr: u32, old_port: u16, port: u16) -> u16 {
    if proto == UDP && sum == 0 {
        return 0;
    }
    match checksum::update_u16(checksum::update_u32(sum, old_addr, addr), old_port, port) {
        0 if proto == UDP => 0xffff,
        s => s,
    }
}

/// The flow of a packet as it arrives in `zone`.
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

pub(super) fn src_dst(ip: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::from(u32_at(ip, 12)),
        Ipv4Addr::from(u32_at(ip, 16)),
    )
}

/// A frame's flow, read in the first pass.
pub(super) struct Pending {
    pub(super) l4: L4,
    pub(super) key: FlowKey,
    pub(super) found: Option<(SessionId, Dir)>,
}

/// Runs the NAT of one direction over the frames waiting at `stage`, in
/// passes: read every frame's flow and prefetch its index slot, look them
/// all up, prefetch the sessions found, then translate. With a million
/// sessions a lookup is mostly cache misses; this way the batch's misses
/// overlap instead of following one another
/// (`conntrack/established_1m_sessions`).
pub(super) fn run_batched(
    frames: &mut [Frame<'_>],
    stage: Stage,
    ct: &mut Conntrack,
    stats: &mut Stats,
    mut read: impl FnMut(
        &mut Frame<'_>,
        &Conntrack,
        &mut Stats,
    ) -> Result<Option<(L4, FlowKey)>, DropReason>,
    mut translate: impl FnMut(
        &mut Frame<'_>,
        Pending,
        &mut Conntrack,
        &mut Stats,
    ) -> Result<(), DropReason>,
    missed: impl Fn(&Conntrack, &FlowKey),
) {
    for chunk in frames.chunks_mut(BATCH_SIZE) {
        // Only the frames at `stage`, by position (not initialised up
        // front: a 64-slot array would cost a memset per batch).
        let mut pending: ArrayVec<(usize, Pending, usize), BATCH_SIZE> = ArrayVec::new();
        for (i, frame) in chunk.iter_mut().enumerate() {
            if frame.meta.stage != stage {
                continue;
            }
            match read(frame, ct, stats) {
                Ok(Some((l4, key))) => {
                    let home = ct.home(&key);
                    let found = None;
                    pending.push((i, Pending { l4, key, found }, home));
                }
                // Translated already (an ICMP error about a session).
                Ok(None) => {}
                Err(reason) => frame.meta.drop(stats, reason),
            }
        }
        // Prefetches run PREFETCH_AHEAD items ahead of their use: issued
        // all at once, most of 64 would be dropped by a core with fewer
        // miss buffers than that, and the lookups would miss one by one.
        for (_, _, home) in pending.iter().take(PREFETCH_AHEAD) {
            ct.prefetch_home(*home);
        }
        for j in 0..pending.len() {
            if let Some((_, _, home)) = pending.get(j + PREFETCH_AHEAD) {
                ct.prefetch_home(*home);
            }
            if let Some((_, p, home)) = pending.get_mut(j) {
                p.found = ct.lookup_from(&p.key, *home);
                if p.found.is_none() {
                    missed(ct, &p.key);
                }
            }
        }
        let found: ArrayVec<Option<SessionId>, BATCH_SIZE> = pending
            .iter()
            .map(|(_, p, _)| p.found.map(|(id, _)| id))
            .collect();
        let prefetch_session = |ct: &Conntrack, j: usize| {
            if let Some(Some(id)) = found.get(j) {
                ct.prefetch(*id);
            }
        };
        for j in 0..PREFETCH_AHEAD {
            prefetch_session(ct, j);
        }
        for (j, (i, p, _)) in pending.into_iter().enumerate() {
            prefetch_session(ct, j + PREFETCH_AHEAD);
            let Some(frame) = chunk.get_mut(i) else {
                continue;
            };
            if let Err(reason) = translate(frame, p, ct, stats) {
                frame.meta.drop(stats, reason);
            }
        }
    }
}

/// How far ahead of its use a batch's lookup prefetches its memory.
const PREFETCH_AHEAD: usize = 8;

/// The IPv4 packet of a frame, up to its total length. The caller made
/// sure the header was checked.
pub(super) fn ip_packet<'a>(frame: &'a mut Frame<'_>) -> &'a mut [u8] {
    let ip = after_ethernet_mut(frame.data_mut());
    let total_len = usize::from(u16_at(ip, 2)).min(ip.len());
    ip.get_mut(..total_len).unwrap_or_default()
}

/// Sends a translated frame out of the uplink (l3 routed it there).
fn out_of_uplink(tables: &Tables, meta: &mut Meta, stats: &mut Stats) {
    match tables.uplink() {
        Some((uplink, _)) => meta.tx(uplink),
        None => meta.drop(stats, DropReason::NoUplink),
    }
}

/// A frame translated on its way in: routed in `tenant`'s VRF, where its
/// NAT session (not the tier ACLs) stands for it.
fn inward(meta: &mut Meta, tenant: TenantId) {
    meta.classify(tenant);
    meta.stage = Stage::L3;
    meta.translated = true;
}

/// Frames l3 sent toward the internet from a tenant with source NAT.
pub(crate) fn run_out(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    ct: &mut Conntrack,
    now: u32,
    workers: &Workers,
    stats: &mut Stats,
) {
    let read = |frame: &mut Frame<'_>, ct: &Conntrack, stats: &mut Stats| {
        let zone = frame.meta.tenant;
        // l3 checked the header (and decremented the TTL).
        let ip = ip_packet(frame);
        let header_len = usize::from(byte(ip, 0) & 0x0f) * 4;
        if !workers.is_single() {
            let owner = workers.of_inside(zone, src_dst(ip).0);
            if owner != workers.me {
                frame.meta.handoff(owner);
                return Ok(None);
            }
        }
        if is_later_fragment(ip) {
            // After the batch's first fragments (see `later_fragments`).
            return Ok(None);
        }
        if is_icmp_error(ip, header_len) {
            icmp_error(ip, header_len, ct, zone)?;
            out_of_uplink(tables, &mut frame.meta, stats);
            stats.event(Event::Snat);
            return Ok(None);
        }
        let l4 = transport(ip, header_len)?;
        let key = flow_key(ip, &l4, zone);
        Ok(Some((l4, key)))
    };
    let translate = |frame: &mut Frame<'_>, p: Pending, ct: &mut Conntrack, stats: &mut Stats| {
        // A frame earlier in this batch may have opened the session (the
        // batch was looked up before any was translated).
        let found = p.found.or_else(|| ct.lookup(&p.key));
        let id = match found {
            Some((id, _)) => {
                ct.update(id, Dir::Orig, p.l4.tcp_flags, now);
                id
            }
            None => {
                let state = opening_state(&p.l4)?;
                let firewall = tables.firewall(p.key.zone);
                let egress = &firewall.ok_or(DropReason::StaleTables)?.egress;
                if tables.toward_host(p.key.zone, p.key.dst) {
                    return Err(DropReason::UnderlayGuard);
                }
                let (_, action) = egress.decide(p.key.src, p.key.dst, p.l4.proto, rule_port(&p.l4));
                if action == Action::Deny {
                    return Err(DropReason::FirewallEgressDenied);
                }
                let flow = (p.key.src, p.key.dst);
                acl::decide(tables, p.key.zone, flow, p.l4.proto, rule_port(&p.l4))?;
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
                        ct.setup_snat(p.key, snat.ip, ports, state, now)
                    }
                }
                .map_err(setup_error)?;
                // Decided once per session, not looked up per packet.
                if tables.nat().owner(p.key.dst).is_some() {
                    ct.mark_hairpin(id);
                }
                stats.event(Event::SessionNew);
                id
            }
        };
        let ip = ip_packet(frame);
        let more = frag_field(ip) & MORE_FRAGMENTS != 0;
        note_first_fragment(frag_key(ip, p.key.zone), more, id, ct, now)?;
        let s = ct.session(id).ok_or(DropReason::NatNoSession)?;
        let (nat_ip, nat_port, hairpin) = (s.nat_ip, s.nat_port, s.hairpin);
        rewrite(ip_packet(frame), &p.l4, 12, nat_ip, p.l4.sport_at, nat_port);
        stats.event(Event::Snat);
        // Hairpinning: to one of our own public addresses, the frame comes
        // straight back in, as if from the internet.
        if hairpin {
            stats.event(Event::Hairpin);
            frame.meta.stage = Stage::Unsnat;
        } else {
            out_of_uplink(tables, &mut frame.meta, stats);
            ct.set_fast(id, tables.generation());
        }
        Ok(())
    };
    // A new session reads its endpoint's mapping first: load it early.
    let missed = |ct: &Conntrack, key: &FlowKey| {
        if let Some(snat) = tables.nat().source(key.zone) {
            ct.prefetch_mapping(key, snat.ip);
        }
    };
    run_batched(frames, Stage::Snat, ct, stats, read, translate, missed);
    later_fragments(tables, frames, Stage::Snat, ct, now, workers, stats);
}

/// Frames that arrived on the uplink for a public address.
pub(crate) fn run_in(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    ct: &mut Conntrack,
    now: u32,
    workers: &Workers,
    stats: &mut Stats,
) {
    let read = |frame: &mut Frame<'_>, ct: &Conntrack, stats: &mut Stats| {
        // A sender on the public side may have left its checksum to
        // offload (veth peers do); finish it before rewriting, as l2 does
        // inside.
        if offload::finish_partial_checksum(frame.data_mut()) {
            stats.event(Event::ChecksumFinished);
        }
        let ip = after_ethernet_mut(frame.data_mut());
        let checked = ipv4::check(ip)?;
        let ip = ip.get_mut(..checked.total_len).unwrap_or_default();
        if !workers.is_single() {
            if let Some(owner) = public_owner(tables, ip, checked.header_len, workers) {
                if owner != workers.me {
                    frame.meta.handoff(owner);
                    return Ok(None);
                }
            }
        }
        if is_later_fragment(ip) {
            // After the batch's first fragments (see `later_fragments`).
            return Ok(None);
        }
        if is_icmp_error(ip, checked.header_len) {
            let tenant = icmp_error(ip, checked.header_len, ct, PUBLIC)?;
            inward(&mut frame.meta, tenant);
            stats.event(Event::Unsnat);
            return Ok(None);
        }
        let l4 = transport(ip, checked.header_len)?;
        let key = flow_key(ip, &l4, PUBLIC);
        Ok(Some((l4, key)))
    };
    let translate = |frame: &mut Frame<'_>, p: Pending, ct: &mut Conntrack, stats: &mut Stats| {
        let found = p.found.or_else(|| ct.lookup(&p.key));
        let id = match found {
            Some((id, Dir::Reply)) => id,
            Some((_, Dir::Orig)) => return Err(DropReason::NatNoSession),
            None => {
                let id = dnat_setup(tables, &p, ct, now)?;
                stats.event(Event::SessionNew);
                stats.event(Event::Dnat);
                id
            }
        };
        ct.update(id, Dir::Reply, p.l4.tcp_flags, now);
        let ip = ip_packet(frame);
        let more = frag_field(ip) & MORE_FRAGMENTS != 0;
        let frag = frag_key(ip, PUBLIC);
        note_first_fragment(frag, more, id, ct, now)?;
        if more {
            workers.note_fragment(&frag);
        }
        let inside = ct.session(id).ok_or(DropReason::NatNoSession)?.inside;
        rewrite(
            ip_packet(frame),
            &p.l4,
            16,
            inside.src,
            p.l4.dport_at,
            inside.sport,
        );
        inward(&mut frame.meta, inside.zone);
        stats.event(Event::Unsnat);
        Ok(())
    };
    run_batched(frames, Stage::Unsnat, ct, stats, read, translate, |_, _| {});
    later_fragments(tables, frames, Stage::Unsnat, ct, now, workers, stats);
}

/// The worker that owns a packet arriving for a public address, if one
/// can: see `owner`.
fn public_owner(tables: &Tables, ip: &[u8], header_len: usize, workers: &Workers) -> Option<u16> {
    let nat = tables.nat();
    if is_later_fragment(ip) {
        return workers.of_public_fragment(nat, &frag_key(ip, PUBLIC));
    }
    if is_icmp_error(ip, header_len) {
        let (public, proto, port) = owner::quoted_source(ip, header_len)?;
        return workers.of_public(nat, public, proto, port);
    }
    let l4 = transport(ip, header_len).ok()?;
    workers.of_public(nat, src_dst(ip).1, l4.proto, l4.dport)
}

/// The later fragments still waiting at `stage`, once the first fragments
/// of the batch have noted their sessions (fragments of one packet
/// usually arrive in the same batch).
fn later_fragments(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    stage: Stage,
    ct: &Conntrack,
    now: u32,
    workers: &Workers,
    stats: &mut Stats,
) {
    for frame in frames.iter_mut().filter(|f| f.meta.stage == stage) {
        let zone = frame.meta.tenant;
        let ip = ip_packet(frame);
        if stage == Stage::Unsnat && !workers.is_single() {
            // Its first fragment is in another worker's batch: the
            // owner may have noted it since this batch was read.
            let owner = workers.of_public_fragment(tables.nat(), &frag_key(ip, PUBLIC));
            if let Some(owner) = owner.filter(|&o| o != workers.me) {
                frame.meta.handoff(owner);
                continue;
            }
        }
        let result = match stage {
            Stage::Snat => later_fragment(ip, zone, ct, now, 12).map(|_| (zone, Stage::Done)),
            _ => later_fragment(ip, PUBLIC, ct, now, 16).and_then(|id| {
                let s = ct.session(id).ok_or(DropReason::NatNoSession)?;
                Ok((s.inside.zone, Stage::L3))
            }),
        };
        match result {
            Ok((tenant, next)) => {
                match next {
                    Stage::Done => out_of_uplink(tables, &mut frame.meta, stats),
                    _ => inward(&mut frame.meta, tenant),
                }
                stats.event(if stage == Stage::Snat {
                    Event::Snat
                } else {
                    Event::Unsnat
                });
            }
            Err(reason) => frame.meta.drop(stats, reason),
        }
    }
}

/// The state a session opened by this packet starts in, if it may open
/// one: a bare TCP SYN, any UDP, an ICMP echo request.
pub(super) fn opening_state(l4: &L4) -> Result<conntrack::State, DropReason> {
    if l4.proto == ICMP && l4.icmp_type != ICMP_ECHO_REQUEST {
        return Err(DropReason::NatNoSession);
    }
    conntrack::initial(l4.proto, l4.tcp_flags).ok_or(DropReason::NatNoSession)
}

pub(super) fn setup_error(e: SetupError) -> DropReason {
    match e {
        SetupError::Full => DropReason::ConntrackFull,
        SetupError::PortsExhausted => DropReason::NatPortsExhausted,
        SetupError::TenantFull => DropReason::TenantSessionLimit,
        SetupError::TenantRate => DropReason::TenantSessionRate,
    }
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
            None => return Err(DropReason::NatNoSession),
        },
    };
    let state = opening_state(&p.l4)?;
    let ingress = &tables
        .firewall(tenant)
        .ok_or(DropReason::StaleTables)?
        .ingress;
    let (_, action) = ingress.decide(p.key.src, public, p.l4.proto, rule_port(&p.l4));
    if action == Action::Deny {
        return Err(DropReason::FirewallIngressDenied);
    }
    // The VM's tier sees the flow as it will arrive, translated.
    let rule_port = if p.l4.proto == ICMP {
        rule_port(&p.l4)
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
    if nat.owner(p.key.src).is_some() {
        ct.mark_hairpin(id);
    }
    Ok(id)
}

const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;

pub(super) fn is_icmp_error(ip: &[u8], header_len: usize) -> bool {
    byte(ip, 9) == ICMP
        && matches!(
            ip.get(header_len),
            Some(&(ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM))
        )
}

/// The packet an ICMP error quotes, turned around: `key` is the flow it
/// belongs to as that flow's packets arrive in `zone`. Offsets into the
/// outer packet: the quote, its transport header and its ports (or echo
/// identifier).
pub(super) struct Quote {
    pub(super) key: FlowKey,
    quote: usize,
    q_l4: usize,
    sport_at: usize,
    dport_at: usize,
}

pub(super) fn quote(ip: &[u8], header_len: usize, zone: TenantId) -> Result<Quote, DropReason> {
    let quote = header_len + 8;
    let q_header_len = match ip.get(quote) {
        Some(b) if b >> 4 == 4 => usize::from(b & 0x0f) * 4,
        Some(_) => return Err(DropReason::NatUnsupported),
        None => return Err(DropReason::L4Truncated),
    };
    let q_l4 = quote + q_header_len;
    if q_header_len < 20 || ip.len() < q_l4 + 8 {
        return Err(DropReason::L4Truncated);
    }
    let word = |at: usize| u16_at(ip, at);
    let proto = byte(ip, quote + 9);
    let (q_src, q_dst) = src_dst(ip.get(quote..).unwrap_or_default());
    // Where the quote's "ports" are: TCP/UDP ports, or the echo identifier.
    let (sport_at, dport_at) = match proto {
        TCP | UDP => (q_l4, q_l4 + 2),
        ICMP => (q_l4 + 4, q_l4 + 4),
        _ => return Err(DropReason::NatUnsupported),
    };
    // The quoted packet went the other way: turned around, it is a
    // packet of the session as it would arrive here.
    let key = FlowKey {
        zone,
        proto,
        src: q_dst,
        dst: q_src,
        sport: word(dport_at),
        dport: word(sport_at),
    };
    Ok(Quote {
        key,
        quote,
        q_l4,
        sport_at,
        dport_at,
    })
}

/// Translates an ICMP error about a translated flow (RFC 5508). It quotes
/// the packet as it was on the side it came from, so the session is found
/// from the quote turned around, and the quote is translated with the
/// outer address: from the public side (`zone` PUBLIC), the outer
/// destination and the quote's source go back to the inside endpoint;
/// from a VM (`zone` its tenant), the outer source and the quote's
/// destination become the public endpoint. Returns the inside tenant.
fn icmp_error(
    ip: &mut [u8],
    header_len: usize,
    ct: &Conntrack,
    zone: TenantId,
) -> Result<TenantId, DropReason> {
    let Quote {
        key,
        quote,
        q_l4,
        sport_at,
        dport_at,
    } = quote(ip, header_len, zone)?;
    let proto = key.proto;
    let inbound = zone == PUBLIC;
    let (id, _) = ct.lookup(&key).ok_or(DropReason::NatNoSession)?;
    let s = ct.session(id).ok_or(DropReason::NatNoSession)?;
    // (outer address offset, quote address offset, quote port offset, new address and port)
    let (outer_at, quote_at, port_at, addr, port) = match inbound {
        true => (16, 12, sport_at, s.inside.src, s.inside.sport),
        false => (12, 16, dport_at, s.nat_ip, s.nat_port),
    };
    set_addr(ip, outer_at, addr, 10);
    let old_addr = set_addr(ip, quote + quote_at, addr, quote + 10);
    let old_port = u16_at(ip, port_at);
    put(ip, port_at, &port.to_be_bytes());
    // The quoted UDP checksum, when present, still matches its packet.
    if proto == UDP {
        let sum = u16_at(ip, q_l4 + 6);
        let sum = transport_sum(UDP, sum, old_addr, u32::from(addr), old_port, port);
        put(ip, q_l4 + 6, &sum.to_be_bytes());
    }
    // The ICMP checksum covers the quote: recompute it (errors are small).
    let icmp = ip.get_mut(header_len..).unwrap_or_default();
    put(icmp, 2, &[0, 0]);
    let sum = checksum::of(icmp);
    put(icmp, 2, &sum.to_be_bytes());
    Ok(s.inside.zone)
}

/// The "port" firewall rules match: the destination port, or for ICMP
/// `type << 8 | code` (echo carries code 0).
pub(super) fn rule_port(l4: &L4) -> u16 {
    match l4.proto {
        ICMP => u16::from(l4.icmp_type) << 8,
        _ => l4.dport,
    }
}

pub(super) const MORE_FRAGMENTS: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

pub(super) fn frag_field(ip: &[u8]) -> u16 {
    u16_at(ip, 6)
}

/// A non-first fragment: no transport header, so no ports.
pub(super) fn is_later_fragment(ip: &[u8]) -> bool {
    frag_field(ip) & OFFSET_MASK != 0
}

pub(super) fn frag_key(ip: &[u8], zone: TenantId) -> FragKey {
    let (src, dst) = src_dst(ip);
    FragKey {
        zone,
        src,
        dst,
        proto: byte(ip, 9),
        id: u16_at(ip, 4),
    }
}

/// After translating a first fragment: its later fragments (found by
/// `frag`, the key they will arrive with) follow the same session.
pub(super) fn note_first_fragment(
    ip_before: FragKey,
    more: bool,
    id: SessionId,
    ct: &mut Conntrack,
    now: u32,
) -> Result<(), DropReason> {
    if !more {
        return Ok(());
    }
    ct.note_fragments(ip_before, id, now).map_err(|e| match e {
        SetupError::TenantFull => DropReason::TenantFragmentLimit,
        _ => DropReason::NatFragmentTableFull,
    })
}

/// A later fragment (RFC 791: no ports): translated like its first
/// fragment, by address only (the transport checksum, in the first
/// fragment, already covers the change). `outer_at`: 12 to translate the
/// source (out), 16 the destination (in). Returns the session.
fn later_fragment(
    ip: &mut [u8],
    zone: TenantId,
    ct: &Conntrack,
    now: u32,
    outer_at: usize,
) -> Result<SessionId, DropReason> {
    let id = ct
        .fragment_session(&frag_key(ip, zone), now)
        .ok_or(DropReason::NatFragment)?;
    let s = ct.session(id).ok_or(DropReason::NatFragment)?;
    let addr = if outer_at == 12 {
        s.nat_ip
    } else {
        s.inside.src
    };
    set_addr(ip, outer_at, addr, 10);
    Ok(id)
}
