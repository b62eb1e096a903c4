//! IPv4 longest-prefix match, one per tenant VRF. Backed by `prefix-trie`
//! (a path-compressed binary trie: lookups walk at most 32 levels, so they
//! stay O(prefix length) at any table size; see the `lpm` benchmarks).
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

#[derive(Debug, Clone)]
pub struct Lpm<T> {
    map: PrefixMap<Ipv4Net, T>,
}

impl<T> Default for Lpm<T> {
    fn default() -> Self {
        Lpm {
            map: PrefixMap::new(),
        }
    }
}

impl<T> Lpm<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a route. The prefix must have no host bits
    /// (the control plane rejects those before they get here).
    pub fn insert(&mut self, prefix: Ipv4Net, value: T) -> Option<T> {
        self.map.insert(prefix, value)
    }

    pub fn remove(&mut self, prefix: Ipv4Net) -> Option<T> {
        self.map.remove(&prefix)
    }

    #[inline]
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<&T> {
        let host = Ipv4Net::from(addr);
        self.map.get_lpm(&host).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Net, &T)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut lpm = Lpm::new();
        lpm.insert("0.0.0.0/0".parse().unwrap(), 0);
        lpm.insert("10.0.0.0/8".parse().unwrap(), 8);
        lpm.insert("10.1.0.0/16".parse().unwrap(), 16);
        lpm.insert("10.1.2.3/32".parse().unwrap(), 32);
        let at = |a: &str| *lpm.lookup(a.parse().unwrap()).unwrap();
        assert_eq!(at("10.1.2.3"), 32);
        assert_eq!(at("10.1.2.4"), 16);
        assert_eq!(at("10.2.0.0"), 8);
        assert_eq!(at("11.0.0.0"), 0);
        lpm.remove("0.0.0.0/0".parse().unwrap());
        assert!(lpm.lookup("11.0.0.0".parse().unwrap()).is_none());
    }
}
