//! IPv4 longest-prefix match, one per tenant VRF.
//!
//! Lookups go through a multibit trie with 8-bit strides and prefix
//! expansion: the mtrie of VPP's FIB, with 8-bit plies all the way down so
//! that a small VRF costs one 1.3 KB ply rather than a 64Ki-slot root. A
//! lookup is at most four dependent loads whatever the table size (the
//! `lpm` benches: the tree-bitmap `prefix-trie` it replaced took 13 ns at
//! 1k routes and 56 ns at 1M).
//!
//! The routes themselves are also kept in a `prefix-trie` map. It is the
//! authoritative set: it gives iteration, and on removal the covering route
//! whose leaves replace the removed route's.
use ipnet::Ipv4Net;
use prefix_trie::PrefixMap;
use std::net::Ipv4Addr;

/// What a VRF route leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHop {
    /// The destination is a host of this tenant: a local VM or a remote VM
    /// behind a VTEP, found in the host table.
    Connected,
    /// Forward to this address (a VM acting as a router), itself found in
    /// the host table.
    Via(Ipv4Addr),
    /// Out of the uplink to the internet gateway.
    Internet,
    /// Drop silently.
    Blackhole,
}

const SLOTS: usize = 256;
/// A slot is 0 (no route), a leaf (index into `values`, plus one), or a
/// child ply (`PLY` | index into `plies`).
const EMPTY: u32 = 0;
const PLY: u32 = 1 << 31;

/// 256 slots for one 8-bit stride, and for each slot the length of the
/// prefix its leaf came from (what insertion and removal compare against).
#[derive(Debug, Clone)]
struct Ply {
    slots: [u32; SLOTS],
    lens: [u8; SLOTS],
}

impl Ply {
    fn filled(slot: u32, len: u8) -> Ply {
        Ply {
            slots: [slot; SLOTS],
            lens: [len; SLOTS],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Lpm<T> {
    /// The routes, each with the index of its value.
    routes: PrefixMap<Ipv4Net, u32>,
    values: Vec<Option<T>>,
    free_values: Vec<u32>,
    /// `plies[0]` is the root (bits 31..24).
    plies: Vec<Ply>,
}

impl<T> Default for Lpm<T> {
    fn default() -> Self {
        Lpm {
            routes: PrefixMap::new(),
            values: Vec::new(),
            free_values: Vec::new(),
            plies: vec![Ply::filled(EMPTY, 0)],
        }
    }
}

/// How a paint walk decides which slots to overwrite.
#[derive(Clone, Copy)]
enum Overwrite {
    /// Insertion of a prefix of this length: slots from shorter (or equal,
    /// the same prefix) routes, and empty slots.
    UpTo(u8),
    /// Removal of a prefix of this length: only its own leaves.
    Exactly(u8),
}

impl Overwrite {
    fn applies(self, slot: u32, len: u8) -> bool {
        match self {
            Overwrite::UpTo(l) => slot == EMPTY || len <= l,
            Overwrite::Exactly(l) => slot != EMPTY && len == l,
        }
    }
}

/// A leaf to write: the slot value and the length of its route.
#[derive(Clone, Copy)]
struct Leaf {
    slot: u32,
    len: u8,
}

impl<T> Lpm<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a route. Host bits of `prefix` are ignored (the
    /// control plane rejects them before they get here).
    pub fn insert(&mut self, prefix: Ipv4Net, value: T) -> Option<T> {
        let prefix = prefix.trunc();
        if let Some(&index) = self.routes.get(&prefix) {
            return self.values[index as usize].replace(value);
        }
        let index = match self.free_values.pop() {
            Some(i) => {
                self.values[i as usize] = Some(value);
                i
            }
            None => {
                self.values.push(Some(value));
                (self.values.len() - 1) as u32
            }
        };
        self.routes.insert(prefix, index);
        let len = prefix.prefix_len();
        let leaf = Leaf {
            slot: index + 1,
            len,
        };
        self.paint(0, 0, prefix, leaf, Overwrite::UpTo(len));
        None
    }

    pub fn remove(&mut self, prefix: Ipv4Net) -> Option<T> {
        let prefix = prefix.trunc();
        let index = self.routes.remove(&prefix)?;
        // The route that covered this one now owns its slots.
        let leaf = match self.routes.get_lpm(&prefix) {
            Some((covering, &i)) => Leaf {
                slot: i + 1,
                len: covering.prefix_len(),
            },
            None => Leaf {
                slot: EMPTY,
                len: 0,
            },
        };
        self.paint(0, 0, prefix, leaf, Overwrite::Exactly(prefix.prefix_len()));
        self.free_values.push(index);
        self.values[index as usize].take()
    }

    /// Writes `leaf` into every slot that `prefix` covers and `overwrite`
    /// allows, expanding plies below as needed. `depth` is the number of
    /// address bits above `ply`.
    fn paint(&mut self, ply: usize, depth: u8, prefix: Ipv4Net, leaf: Leaf, overwrite: Overwrite) {
        let shift = 24 - u32::from(depth);
        let first = ((u32::from(prefix.addr()) >> shift) & 0xff) as usize;
        let len = prefix.prefix_len();
        if len <= depth + 8 {
            let count = 1usize << (depth + 8 - len);
            for i in first..first + count {
                self.paint_slot(ply, i, leaf, overwrite);
            }
            return;
        }
        let current = self.plies[ply].slots[first];
        let child = if current & PLY != 0 {
            (current & !PLY) as usize
        } else {
            // Push the current leaf down into a new ply.
            let current_len = self.plies[ply].lens[first];
            self.plies.push(Ply::filled(current, current_len));
            let child = self.plies.len() - 1;
            self.plies[ply].slots[first] = PLY | child as u32;
            child
        };
        self.paint(child, depth + 8, prefix, leaf, overwrite);
    }

    fn paint_slot(&mut self, ply: usize, i: usize, leaf: Leaf, overwrite: Overwrite) {
        let (current, current_len) = (self.plies[ply].slots[i], self.plies[ply].lens[i]);
        if current & PLY != 0 {
            let child = (current & !PLY) as usize;
            for j in 0..SLOTS {
                self.paint_slot(child, j, leaf, overwrite);
            }
        } else if overwrite.applies(current, current_len) {
            self.plies[ply].slots[i] = leaf.slot;
            self.plies[ply].lens[i] = leaf.len;
        }
    }

    #[inline]
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<&T> {
        let addr = u32::from(addr);
        let mut ply = &self.plies[0];
        let mut shift = 24u32;
        loop {
            let slot = ply.slots[((addr >> shift) & 0xff) as usize];
            if slot & PLY == 0 {
                return match slot {
                    EMPTY => None,
                    leaf => self.values.get((leaf - 1) as usize)?.as_ref(),
                };
            }
            // Plies never go below the last 8 bits; the check keeps a
            // broken invariant from panicking.
            shift = shift.checked_sub(8)?;
            ply = self.plies.get((slot & !PLY) as usize)?;
        }
    }

    pub fn get(&self, prefix: Ipv4Net) -> Option<&T> {
        let index = *self.routes.get(&prefix.trunc())?;
        self.values[index as usize].as_ref()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.len() == 0
    }

    /// Routes in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Net, &T)> {
        self.routes
            .iter()
            .filter_map(|(p, &i)| Some((p, self.values[i as usize].as_ref()?)))
    }

    /// Bytes held by the lookup structure (plies and values).
    pub fn lookup_bytes(&self) -> usize {
        self.plies.len() * std::mem::size_of::<Ply>()
            + self.values.len() * std::mem::size_of::<Option<T>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut lpm = Lpm::new();
        lpm.insert(net("0.0.0.0/0"), 0);
        lpm.insert(net("10.0.0.0/8"), 8);
        lpm.insert(net("10.1.0.0/16"), 16);
        lpm.insert(net("10.1.2.3/32"), 32);
        lpm.insert(net("10.1.2.0/27"), 27);
        let at = |lpm: &Lpm<i32>, a: &str| lpm.lookup(a.parse().unwrap()).copied();
        assert_eq!(at(&lpm, "10.1.2.3"), Some(32));
        assert_eq!(at(&lpm, "10.1.2.4"), Some(27));
        assert_eq!(at(&lpm, "10.1.2.40"), Some(16));
        assert_eq!(at(&lpm, "10.2.0.0"), Some(8));
        assert_eq!(at(&lpm, "11.0.0.0"), Some(0));
        assert_eq!(lpm.remove(net("10.1.2.0/27")), Some(27));
        assert_eq!(at(&lpm, "10.1.2.4"), Some(16));
        assert_eq!(at(&lpm, "10.1.2.3"), Some(32));
        lpm.remove(net("0.0.0.0/0"));
        assert_eq!(at(&lpm, "11.0.0.0"), None);
        assert_eq!(lpm.insert(net("10.0.0.0/8"), 80), Some(8));
        assert_eq!(at(&lpm, "10.2.0.0"), Some(80));
        assert_eq!(lpm.len(), 3);
        assert_eq!(lpm.get(net("10.1.0.0/16")), Some(&16));
    }

    /// The reference: the longest matching prefix by a linear scan.
    fn reference(routes: &[(Ipv4Net, u32)], addr: Ipv4Addr) -> Option<u32> {
        routes
            .iter()
            .filter(|(p, _)| p.contains(&addr))
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|(_, v)| *v)
    }

    proptest! {
        /// Random inserts, replacements and removals of nested prefixes of
        /// every length agree with a linear scan at every probe.
        #[test]
        fn matches_a_linear_scan(ops in prop::collection::vec((any::<bool>(), 0u32..64, 0u8..=32, any::<u32>()), 1..60),
                                 probes in prop::collection::vec(0u32..64, 1..40)) {
            // Addresses from a small space so prefixes nest and collide.
            let spread = |x: u32| (x & 0x7) << 29 | (x & 0x38) << 5 | (x & 0x7);
            let mut lpm = Lpm::new();
            let mut routes: Vec<(Ipv4Net, u32)> = Vec::new();
            for (insert, a, len, value) in ops {
                let prefix = Ipv4Net::new(Ipv4Addr::from(spread(a)), len).unwrap().trunc();
                routes.retain(|(p, _)| *p != prefix);
                if insert {
                    lpm.insert(prefix, value);
                    routes.push((prefix, value));
                } else {
                    lpm.remove(prefix);
                }
                for &x in &probes {
                    for addr in [spread(x), spread(x) | 0x0101_0101, !spread(x)] {
                        let addr = Ipv4Addr::from(addr);
                        prop_assert_eq!(lpm.lookup(addr).copied(), reference(&routes, addr), "{}", addr);
                    }
                }
            }
            prop_assert_eq!(lpm.len(), routes.len());
        }
    }
}
