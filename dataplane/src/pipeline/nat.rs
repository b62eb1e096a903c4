//! Source NAT and its return path.
//!
//! Out (after l3 chose the internet route for a tenant with source NAT):
//! the inside flow's session is found or opened, and the source rewritten
//! to the tenant's public address and port. In (ingress saw a frame to a
//! public address): the reply's session is found, the destination
//! rewritten back to the inside endpoint, and l3 routes it in the
//! tenant's VRF. Checksums are updated incrementally (RFC 1624).
use super::{ipv4, offload, DropReason, Event, Stage, Stats};
use crate::conntrack::{self, Conntrack, Dir, FlowKey, SetupError, ICMP, PUBLIC, TCP, UDP};
use crate::frame::Frame;
use crate::table::Tables;
use crate::wire::{checksum, ETH_HEADER_LEN};
use std::net::Ipv4Addr;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// The transport fields NAT reads and rewrites, as offsets into the IPv4
/// packet.
struct L4 {
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    /// Source and destination port (for ICMP echo both are the identifier).
    sport_at: usize,
    dport_at: usize,
    checksum_at: usize,
}

/// Reads the ports (or ICMP echo identifier) of a whole, unfragmented
/// packet. `echo_type`: the ICMP type this direction may carry.
fn transport(ip: &[u8], header_len: usize, echo_type: u8) -> Result<L4, DropReason> {
    // Fragment offset or more-fragments set: ports are not all here.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(DropReason::NatFragment);
    }
    let l4 = &ip[header_len..];
    let word = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    let (proto, h) = (ip[9], header_len);
    match proto {
        TCP if l4.len() >= 20 => Ok(L4 {
            proto,
            sport: word(0),
            dport: word(2),
            tcp_flags: l4[13],
            sport_at: h,
            dport_at: h + 2,
            checksum_at: h + 16,
        }),
        UDP if l4.len() >= 8 => Ok(L4 {
            proto,
            sport: word(0),
            dport: word(2),
            tcp_flags: 0,
            sport_at: h,
            dport_at: h + 2,
            checksum_at: h + 6,
        }),
        ICMP if l4.len() >= 8 && l4[0] == echo_type => Ok(L4 {
            proto,
            sport: word(4),
            dport: word(4),
            tcp_flags: 0,
            sport_at: h + 4,
            dport_at: h + 4,
            checksum_at: h + 2,
        }),
        TCP | UDP | ICMP if l4.len() < 8 => Err(DropReason::L4Truncated),
        TCP => Err(DropReason::L4Truncated),
        _ => Err(DropReason::NatUnsupported),
    }
}

/// Rewrites the IPv4 address at `addr_at` and the port at `port_at`,
/// updating the header checksum and the transport checksum (which covers
/// the address through the pseudo-header, except for ICMP).
fn rewrite(ip: &mut [u8], l4: &L4, addr_at: usize, addr: Ipv4Addr, port_at: usize, port: u16) {
    let old_addr = u32::from_be_bytes(ip[addr_at..addr_at + 4].try_into().expect("4 bytes"));
    let new_addr = u32::from(addr);
    let old_port = u16::from_be_bytes([ip[port_at], ip[port_at + 1]]);
    ip[addr_at..addr_at + 4].copy_from_slice(&addr.octets());
    ip[port_at..port_at + 2].copy_from_slice(&port.to_be_bytes());
    let header_sum = u16::from_be_bytes([ip[10], ip[11]]);
    let header_sum = checksum::update_u32(header_sum, old_addr, new_addr);
    ip[10..12].copy_from_slice(&header_sum.to_be_bytes());
    let at = l4.checksum_at;
    let sum = u16::from_be_bytes([ip[at], ip[at + 1]]);
    let sum = match l4.proto {
        ICMP => checksum::update_u16(sum, old_port, port),
        // UDP: 0 means "no checksum" and stays so; a computed 0 is sent
        // as 0xffff (RFC 768).
        UDP if sum == 0 => 0,
        UDP => match checksum::update_u16(
            checksum::update_u32(sum, old_addr, new_addr),
            old_port,
            port,
        ) {
            0 => 0xffff,
            s => s,
        },
        _ => checksum::update_u16(
            checksum::update_u32(sum, old_addr, new_addr),
            old_port,
            port,
        ),
    };
    ip[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn src_dst(ip: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    let addr = |at: usize| Ipv4Addr::from(<[u8; 4]>::try_from(&ip[at..at + 4]).expect("4 bytes"));
    (addr(12), addr(16))
}

/// Frames l3 sent toward the internet from a tenant with source NAT.
pub(crate) fn run_out(
    tables: &Tables,
    frames: &mut [Frame<'_>],
    ct: &mut Conntrack,
    now: u32,
    stats: &mut Stats,
) {
    for frame in frames.iter_mut().filter(|f| f.meta.stage == Stage::Snat) {
        if let Err(reason) = snat(tables, frame, ct, now, stats) {
            frame.meta.drop(stats, reason);
        }
    }
}

fn snat(
    tables: &Tables,
    frame: &mut Frame<'_>,
    ct: &mut Conntrack,
    now: u32,
    stats: &mut Stats,
) -> Result<(), DropReason> {
    let tenant = frame.meta.tenant;
    let snat = *tables
        .nat()
        .source(tenant)
        .ok_or(DropReason::NoInternetGateway)?;
    let ip = &mut frame.data_mut()[ETH_HEADER_LEN..];
    // l3 checked the header (and decremented the TTL).
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let ip = &mut ip[..total_len];
    let l4 = transport(ip, header_len, ICMP_ECHO_REQUEST)?;
    let (src, dst) = src_dst(ip);
    let key = FlowKey {
        zone: tenant,
        proto: l4.proto,
        src,
        dst,
        sport: l4.sport,
        dport: l4.dport,
    };
    let id = match ct.lookup(&key) {
        Some((id, _)) => {
            ct.update(id, Dir::Orig, l4.tcp_flags, now);
            id
        }
        None => {
            let state =
                conntrack::initial(l4.proto, l4.tcp_flags).ok_or(DropReason::NatNoSession)?;
            let id = ct
                .setup_snat(key, snat.ip, snat.ports, state, now)
                .map_err(|e| match e {
                    SetupError::Full => DropReason::ConntrackFull,
                    SetupError::PortsExhausted => DropReason::NatPortsExhausted,
                })?;
            stats.event(Event::SessionNew);
            id
        }
    };
    let s = ct.session(id);
    let (nat_ip, nat_port) = (s.nat_ip, s.nat_port);
    rewrite(ip, &l4, 12, nat_ip, l4.sport_at, nat_port);
    if l4.proto == ICMP {
        // The identifier is both "ports": keep the view consistent.
        debug_assert_eq!(l4.sport_at, l4.dport_at);
    }
    frame.meta.stage = Stage::Done;
    stats.event(Event::Snat);
    Ok(())
}

/// Frames that arrived on the uplink for a public address.
pub(crate) fn run_in(frames: &mut [Frame<'_>], ct: &mut Conntrack, now: u32, stats: &mut Stats) {
    for frame in frames.iter_mut().filter(|f| f.meta.stage == Stage::Unsnat) {
        if let Err(reason) = unsnat(frame, ct, now, stats) {
            frame.meta.drop(stats, reason);
        }
    }
}

fn unsnat(
    frame: &mut Frame<'_>,
    ct: &mut Conntrack,
    now: u32,
    stats: &mut Stats,
) -> Result<(), DropReason> {
    // A sender on the public side may have left its checksum to offload
    // (veth peers do); finish it before rewriting, as l2 does inside.
    if offload::finish_partial_checksum(frame.data_mut()) {
        stats.event(Event::ChecksumFinished);
    }
    let ip = &mut frame.data_mut()[ETH_HEADER_LEN..];
    let checked = ipv4::check(ip)?;
    let ip = &mut ip[..checked.total_len];
    let l4 = transport(ip, checked.header_len, ICMP_ECHO_REPLY)?;
    let (src, dst) = src_dst(ip);
    let key = FlowKey {
        zone: PUBLIC,
        proto: l4.proto,
        src,
        dst,
        sport: l4.sport,
        dport: l4.dport,
    };
    let Some((id, Dir::Reply)) = ct.lookup(&key) else {
        return Err(DropReason::NatNoSession);
    };
    ct.update(id, Dir::Reply, l4.tcp_flags, now);
    let inside = ct.session(id).inside;
    rewrite(ip, &l4, 16, inside.src, l4.dport_at, inside.sport);
    frame.meta.tenant = inside.zone;
    frame.meta.stage = Stage::L3;
    stats.event(Event::Unsnat);
    Ok(())
}
