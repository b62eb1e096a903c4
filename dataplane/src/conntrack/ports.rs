//! Public port allocation for one (public address, protocol): a bitmap
//! over a port range, and how many sessions hold each port. Allocation prefers the inside port (port
//! preservation, so applications that care see their port), and otherwise
//! scans 64 ports per step from a rotating cursor.
use std::net::Ipv4Addr;

/// The first port that is not well-known (RFC 4787 REQ-3a's line).
const WELL_KNOWN: u16 = 1024;
/// Addresses a mapping remembers having sent to (address-dependent
/// filtering); beyond them a new address's packets are filtered as by
/// address and port: stricter, never looser.
const CONTACTS: usize = 4;

/// The inside endpoint behind a port's mapping, and the addresses it sent
/// to: kept only in pools whose tenant filters less than by address and
/// port (`PortPool::note_endpoint`), 28 bytes a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub inside: Ipv4Addr,
    pub inside_port: u16,
    contacts: [Option<Ipv4Addr>; CONTACTS],
}

impl Default for Mapped {
    fn default() -> Self {
        Mapped {
            inside: Ipv4Addr::UNSPECIFIED,
            inside_port: 0,
            contacts: [None; CONTACTS],
        }
    }
}

impl Mapped {
    /// Whether the endpoint sent to `addr` through this mapping.
    pub fn contacted(&self, addr: Ipv4Addr) -> bool {
        self.contacts.contains(&Some(addr))
    }
}

pub struct PortPool {
    first: u16,
    last: u16,
    /// Bit i set: port `first + i` is in use.
    used: Vec<u64>,
    /// Sessions holding each port (its mapping's sessions).
    holders: Vec<u32>,
    cursor: usize,
    in_use: u32,
    /// Each port's `Mapped`, once a session asked to remember it (else
    /// empty: no memory for tenants that filter by address and port).
    mapped: Vec<Mapped>,
}

impl PortPool {
    /// A pool over `first..=last` (first <= last).
    pub fn new(first: u16, last: u16) -> PortPool {
        let count = usize::from(last - first) + 1;
        PortPool {
            first,
            last,
            used: vec![0; count.div_ceil(64)],
            holders: vec![0; count],
            cursor: 0,
            in_use: 0,
            mapped: Vec::new(),
        }
    }

    /// Remembers that `port`'s mapping is `inside`:`inside_port`'s and
    /// that it sent to `contact`. The first call gives the pool its
    /// memory of mappings (one allocation, at a session's setup).
    pub fn note_endpoint(
        &mut self,
        port: u16,
        (inside, inside_port): (Ipv4Addr, u16),
        contact: Ipv4Addr,
    ) {
        if self.mapped.is_empty() {
            self.mapped = vec![Mapped::default(); self.count()];
        }
        let Some(m) = self
            .mapped
            .get_mut(usize::from(port.wrapping_sub(self.first)))
        else {
            return;
        };
        (m.inside, m.inside_port) = (inside, inside_port);
        if !m.contacted(contact) {
            if let Some(free) = m.contacts.iter_mut().find(|c| c.is_none()) {
                *free = Some(contact);
            }
        }
    }

    /// The mapping on `port`, if it is in use and was remembered.
    pub fn mapped(&self, port: u16) -> Option<&Mapped> {
        let i = usize::from(port.wrapping_sub(self.first));
        let m = self.mapped.get(i)?;
        (self.is_used(i) && m.inside_port != 0).then_some(m)
    }

    pub fn in_use(&self) -> u32 {
        self.in_use
    }

    fn count(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    fn is_used(&self, i: usize) -> bool {
        self.used
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Marks port `i` (in range: `count()` sized the bitmap) used.
    fn mark(&mut self, i: usize) -> u16 {
        if let Some(w) = self.used.get_mut(i / 64) {
            *w |= 1 << (i % 64);
            self.in_use += 1;
        }
        // A new mapping: nothing of the last one on this port.
        if let Some(m) = self.mapped.get_mut(i) {
            *m = Mapped::default();
        }
        self.first + i as u16
    }

    /// A free port: `wanted` if it is in range and free (port
    /// preservation); else one of the same kind, as RFC 4787 asks of a
    /// NAT: never a port below 1024 for a source port above it (REQ-3a,
    /// a MUST), below 1024 for one below it where the range has such
    /// ports (REQ-3a, recommended), and of the same parity (REQ-4,
    /// recommended; RTP and RTCP pair on it) while there is one.
    pub fn allocate(&mut self, wanted: u16) -> Option<u16> {
        if (self.first..=self.last).contains(&wanted) {
            let i = usize::from(wanted - self.first);
            if !self.is_used(i) {
                return Some(self.mark(i));
            }
        }
        // Indexes of the ports below 1024, and of those above.
        let split = usize::from(WELL_KNOWN.saturating_sub(self.first)).min(self.count());
        let (low, high) = ((0, split), (split, self.count()));
        let classes: &[(usize, usize)] = match wanted < WELL_KNOWN {
            true => &[low, high],
            false => &[high],
        };
        // The indexes whose port has `wanted`'s parity.
        let parity = match (self.first ^ wanted) & 1 {
            0 => 0x5555_5555_5555_5555,
            _ => 0xaaaa_aaaa_aaaa_aaaa,
        };
        for &(from, to) in classes {
            for mask in [parity, u64::MAX] {
                if let Some(i) = self.free_in(from, to, mask) {
                    return Some(self.mark(i));
                }
            }
        }
        None
    }

    /// A free index in `from..to` whose bit is set in `mask` (repeated
    /// for every word), scanning 64 at a time from the rotating cursor.
    fn free_in(&mut self, from: usize, to: usize, mask: u64) -> Option<usize> {
        if from >= to {
            return None;
        }
        let (first_word, words) = (from / 64, (to - 1) / 64 - from / 64 + 1);
        let start = self.cursor.clamp(first_word, first_word + words - 1) - first_word;
        for step in 0..words {
            let w = first_word + (start + step) % words;
            // Only the indexes of this word inside from..to.
            let lo = from.saturating_sub(w * 64).min(64);
            let hi = (to - w * 64).min(64);
            let inside = (u64::MAX >> (64 - (hi - lo))) << lo;
            let used = self.used.get(w).copied().unwrap_or(u64::MAX);
            let free = !used & mask & inside;
            if free != 0 {
                self.cursor = w;
                return Some(w * 64 + free.trailing_zeros() as usize);
            }
        }
        None
    }

    /// One more session uses `port` (allocated from this pool).
    pub fn hold(&mut self, port: u16) {
        if let Some(n) = self
            .holders
            .get_mut(usize::from(port.wrapping_sub(self.first)))
        {
            *n += 1;
        }
    }

    /// One session fewer uses `port`; the last one frees it (returns true).
    pub fn drop_hold(&mut self, port: u16) -> bool {
        let i = usize::from(port.wrapping_sub(self.first));
        match self.holders.get_mut(i) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 {
                    self.release(port);
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    pub fn release(&mut self, port: u16) {
        if !(self.first..=self.last).contains(&port) {
            return;
        }
        let i = usize::from(port - self.first);
        if let Some(w) = self.used.get_mut(i / 64) {
            if *w & (1 << (i % 64)) != 0 {
                *w &= !(1 << (i % 64));
                self.in_use -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preserves_ports_then_fills_the_range_without_duplicates() {
        let mut pool = PortPool::new(1000, 1099);
        assert_eq!(pool.allocate(1050), Some(1050));
        let second = pool.allocate(1050).unwrap();
        assert_eq!(
            second, 1024,
            "taken: the first free high port of its parity"
        );
        assert_eq!(
            pool.allocate(80),
            Some(1000),
            "outside the range: low first"
        );
        let mut seen: Vec<u16> = vec![1050, 1024, 1000];
        // High source ports take the high ports, low ones the rest.
        while let Some(p) = pool.allocate(1050) {
            seen.push(p);
        }
        assert!(seen.iter().filter(|&&p| p < 1024).count() == 1);
        while let Some(p) = pool.allocate(80) {
            seen.push(p);
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 100);
        assert_eq!(pool.in_use(), 100);
        pool.release(1077);
        assert_eq!(pool.allocate(2), Some(1077));
    }

    #[test]
    fn a_taken_port_gives_way_to_one_of_its_kind() {
        let mut pool = PortPool::new(100, 65535);
        for wanted in [40001, 40001, 40001, 500, 500, 501] {
            let got = pool.allocate(wanted).unwrap();
            assert_eq!(got % 2, wanted % 2, "{wanted} -> {got}: parity (REQ-4)");
            assert_eq!(
                got < 1024,
                wanted < 1024,
                "{wanted} -> {got}: range (REQ-3a)"
            );
        }
        // A high source port never gets a low port, even when only low
        // ones are left (a MUST); a low one takes a high port then.
        let mut pool = PortPool::new(1022, 1025);
        assert_eq!(pool.allocate(1024), Some(1024));
        assert_eq!(
            pool.allocate(1024),
            Some(1025),
            "the other parity, still high"
        );
        assert_eq!(pool.allocate(1024), None);
        assert_eq!(pool.allocate(5), Some(1023));
        assert_eq!(pool.allocate(5), Some(1022));
        assert_eq!(pool.allocate(5), None);
    }
}
