//! Which worker owns a NAT flow.
//!
//! A session lives in one worker's conntrack, so every packet of its flow
//! must be processed there. The owner follows from fields that each
//! direction carries before any lookup, so no table is shared:
//! - from a VM: its inside endpoint (tenant, address, protocol and port
//!   or echo identifier, hashed). Each endpoint's endpoint-independent
//!   mapping (RFC 4787) is then kept in one place, while one VM's many
//!   flows spread over the workers. An ICMP error a VM sends is about a
//!   flow toward it: the endpoint it quotes as destination.
//! - to a public address: a port forward names its VM's endpoint; a static
//!   NAT address keeps the port, so the VM's endpoint has it; any other
//!   port of a source-NAT address lies in one worker's block of the range,
//!   and only that worker allocates it (as VPP's NAT44-ED splits ports per
//!   thread).
//! - between tiers (untranslated, through an ACL): both endpoints,
//!   ordered, so that both directions agree.
//! - later fragments carry no port: whoever finds a first fragment's owner
//!   notes it in `FragmentOwners`, before the later ones are read.
//!
//! A frame that reaches another worker is handed to its owner
//! (`crate::handoff`).
use super::flow;
use crate::conntrack::{FragKey, ICMP, TCP, UDP};
use crate::table::{NatTable, TenantId};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// This worker's place among the workers that share the NAT state.
#[derive(Clone)]
pub struct Workers {
    pub me: u16,
    pub count: u16,
    fragments: Arc<FragmentOwners>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers::all(1).remove(0)
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "worker {} of {}", self.me, self.count)
    }
}

impl Workers {
    /// The view of each of `count` workers (at least one).
    pub fn all(count: u16) -> Vec<Workers> {
        let count = count.max(1);
        let fragments = Arc::new(FragmentOwners::new());
        (0..count)
            .map(|me| Workers {
                me,
                count,
                fragments: fragments.clone(),
            })
            .collect()
    }

    #[inline]
    pub fn is_single(&self) -> bool {
        self.count == 1
    }

    /// This worker's block of a source-NAT port range, if the range has a
    /// port for it.
    pub fn port_block(&self, range: (u16, u16)) -> Option<(u16, u16)> {
        port_block(range, self.me, self.count)
    }

    /// The owner of the flows of a VM's endpoint `ip`:`port` (for ICMP
    /// echo, the identifier).
    #[inline]
    pub fn of_inside(&self, tenant: TenantId, ip: Ipv4Addr, proto: u8, port: u16) -> u16 {
        let key = (u64::from(u32::from(ip)) << 32 | u64::from(port) << 16 | u64::from(tenant))
            ^ u64::from(proto) << 56;
        // Fibonacci hashing after a fold, so that the port's bits reach
        // the product's high half: the same on every worker.
        (((key ^ key >> 29).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % u64::from(self.count))
            as u16
    }

    /// The owner of an untranslated flow between endpoints `a` and `b`
    /// (address, port or echo identifier) in `tenant` (tier ACL
    /// sessions): the same both ways.
    #[inline]
    pub fn of_pair(&self, tenant: TenantId, a: (Ipv4Addr, u16), b: (Ipv4Addr, u16)) -> u16 {
        let end = |(ip, port): (Ipv4Addr, u16)| u64::from(u32::from(ip)) << 16 | u64::from(port);
        let (lo, hi) = (end(a).min(end(b)), end(a).max(end(b)));
        let key = lo.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ hi ^ u64::from(tenant) << 48;
        (((key ^ key >> 29).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % u64::from(self.count))
            as u16
    }

    /// The owner of a packet from the public side to `public:port`, or
    /// None if no worker can have a session for it (it is handled, and
    /// dropped, where it is).
    pub fn of_public(&self, nat: &NatTable, public: Ipv4Addr, proto: u8, port: u16) -> Option<u16> {
        if let Some(to) = nat.forward(public, proto, port) {
            return Some(self.of_inside(to.tenant, to.ip, proto, to.port));
        }
        if let Some((tenant, vm)) = nat.static_of_public(public) {
            return Some(self.of_inside(tenant, vm, proto, port));
        }
        let snat = nat.source(nat.owner(public)?)?;
        if snat.ip != public {
            return None;
        }
        block_owner(snat.ports, port, self.count)
    }

    /// The owner of IPv4 packet `ip`, arriving in `zone`: `first` tells it
    /// for a whole packet or a first fragment, and a first fragment notes
    /// it for the later ones, which carry no port and go by the note.
    #[inline]
    pub(crate) fn of_packet(
        &self,
        ip: &[u8],
        zone: TenantId,
        first: impl FnOnce() -> Option<u16>,
    ) -> Option<u16> {
        if flow::is_later_fragment(ip) {
            return self.of_fragment(&flow::frag_key(ip, zone));
        }
        let owner = first()?;
        if flow::has_more_fragments(ip) {
            self.note_fragment(&flow::frag_key(ip, zone), owner);
        }
        Some(owner)
    }

    /// The owner of a later fragment, if its first fragment's was noted.
    pub fn of_fragment(&self, frag: &FragKey) -> Option<u16> {
        self.fragments.owner(frag)
    }

    /// Notes `owner` as the owner of `frag`'s later fragments.
    pub fn note_fragment(&self, frag: &FragKey, owner: u16) {
        if !self.is_single() {
            self.fragments.note(frag, owner);
        }
    }
}

/// Worker `me`'s block of `range` split in `count` (the last takes the
/// remainder).
pub fn port_block(range: (u16, u16), me: u16, count: u16) -> Option<(u16, u16)> {
    let (first, last) = range;
    let ports = u32::from(last.checked_sub(first)?) + 1;
    let per = ports / u32::from(count);
    let start = u32::from(first) + per * u32::from(me);
    let end = if me + 1 == count {
        u32::from(last)
    } else {
        (start + per).checked_sub(1)?
    };
    (per > 0 || me + 1 == count).then_some((start as u16, end as u16))
}

/// Which worker's block of `range` holds `port`.
pub fn block_owner(range: (u16, u16), port: u16, count: u16) -> Option<u16> {
    let (first, last) = range;
    if !(first..=last).contains(&port) {
        return None;
    }
    let per = (u32::from(last - first) + 1) / u32::from(count);
    if per == 0 {
        return Some(count - 1);
    }
    Some((u32::from(port - first) / per).min(u32::from(count) - 1) as u16)
}

/// The quoted packet's source (address, protocol, port or echo
/// identifier) in an ICMP error: on the public side, one of our public
/// endpoints. None if the quote is too short to say.
pub(crate) fn quoted_source(ip: &[u8], header_len: usize) -> Option<(Ipv4Addr, u8, u16)> {
    let quote = ip.get(header_len + 8..)?;
    let q_header_len = usize::from(quote.first()? & 0x0f) * 4;
    let proto = *quote.get(9)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(quote.get(12..16)?).ok()?);
    let at = q_header_len
        + match proto {
            TCP | UDP => 0,
            ICMP => 4,
            _ => return None,
        };
    let port = u16::from_be_bytes(quote.get(at..at + 2)?.try_into().ok()?);
    Some((src, proto, port))
}

/// Slots in the fragment owners table: enough for the fragmented packets
/// in flight across workers; a collision only loses the older note.
const FRAGMENT_SLOTS: usize = 4096;

/// A direct-mapped table of later-fragment owners shared by the workers.
/// Each slot is one atomic word, `tag << 16 | owner + 1`, so writers and
/// readers never lock; only fragmented packets to source-NAT addresses
/// touch it.
struct FragmentOwners {
    slots: Box<[AtomicU64]>,
}

impl FragmentOwners {
    fn new() -> Self {
        FragmentOwners {
            slots: (0..FRAGMENT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn hash(frag: &FragKey) -> u64 {
        let a = u64::from(u32::from(frag.src)) << 32 | u64::from(u32::from(frag.dst));
        let b = u64::from(frag.id) << 8 | u64::from(frag.proto);
        (a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xff51_afd7_ed55_8ccd)
    }

    fn note(&self, frag: &FragKey, owner: u16) {
        let h = Self::hash(frag);
        if let Some(slot) = self.slots.get((h as usize) % FRAGMENT_SLOTS) {
            slot.store(h >> 16 << 16 | (u64::from(owner) + 1), Ordering::Relaxed);
        }
    }

    fn owner(&self, frag: &FragKey) -> Option<u16> {
        let h = Self::hash(frag);
        let slot = self.slots.get((h as usize) % FRAGMENT_SLOTS)?;
        let v = slot.load(Ordering::Relaxed);
        let owner = (v & 0xffff) as u16;
        (owner != 0 && v >> 16 == h >> 16).then(|| owner - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_the_range_once_and_agree_with_block_owner() {
        for (range, count) in [
            ((1024, 65535), 2),
            ((20000, 20002), 2),
            ((5, 5), 3),
            ((10, 20), 4),
        ] {
            let mut covered = Vec::new();
            for me in 0..count {
                if let Some((a, b)) = port_block(range, me, count) {
                    for port in a..=b {
                        assert_eq!(
                            block_owner(range, port, count),
                            Some(me),
                            "{range:?} {port}"
                        );
                        covered.push(port);
                    }
                }
            }
            let all: Vec<u16> = (range.0..=range.1).collect();
            assert_eq!(covered, all, "{range:?} in {count}");
        }
        assert_eq!(block_owner((10, 20), 9, 2), None);
    }

    #[test]
    fn one_vms_flows_spread_over_the_workers_and_an_endpoint_keeps_one() {
        let workers = Workers::all(2);
        let vm = Ipv4Addr::new(10, 0, 0, 10);
        let on_first = (1024..1088)
            .filter(|&port| workers[0].of_inside(7, vm, TCP, port) == 0)
            .count();
        assert!(
            (16..=48).contains(&on_first),
            "{on_first} of 64 on worker 0"
        );
        for port in [53, 40000] {
            assert_eq!(
                workers[0].of_inside(7, vm, UDP, port),
                workers[1].of_inside(7, vm, UDP, port)
            );
        }
    }

    #[test]
    fn a_pairs_flows_spread_and_each_has_one_owner_both_ways() {
        let workers = Workers::all(2);
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 1, 20));
        let mut on_first = 0;
        for port in 1024..1088 {
            let there = workers[0].of_pair(7, (a, port), (b, 53));
            assert_eq!(there, workers[1].of_pair(7, (b, 53), (a, port)));
            on_first += usize::from(there == 0);
        }
        assert!(
            (16..=48).contains(&on_first),
            "{on_first} of 64 on worker 0"
        );
    }

    #[test]
    fn fragment_owners_are_found_and_other_keys_miss() {
        let workers = Workers::all(2);
        let frag = |id| FragKey {
            zone: crate::conntrack::PUBLIC,
            src: Ipv4Addr::new(198, 51, 100, 1),
            dst: Ipv4Addr::new(203, 0, 113, 10),
            proto: UDP,
            id,
        };
        workers[1].note_fragment(&frag(7), 1);
        assert_eq!(workers[0].fragments.owner(&frag(7)), Some(1));
        assert_eq!(workers[0].fragments.owner(&frag(8)), None);
    }
}
