//! Public port allocation for one (public address, protocol): a bitmap
//! over a port range, and how many sessions hold each port. Allocation prefers the inside port (port
//! preservation, so applications that care see their port), and otherwise
//! scans 64 ports per step from a rotating cursor.
pub struct PortPool {
    first: u16,
    last: u16,
    /// Bit i set: port `first + i` is in use.
    used: Vec<u64>,
    /// Sessions holding each port (its mapping's sessions).
    holders: Vec<u32>,
    cursor: usize,
    in_use: u32,
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
        }
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
        self.first + i as u16
    }

    /// A free port, `wanted` if it is in range and free.
    pub fn allocate(&mut self, wanted: u16) -> Option<u16> {
        if (self.first..=self.last).contains(&wanted) {
            let i = usize::from(wanted - self.first);
            if !self.is_used(i) {
                return Some(self.mark(i));
            }
        }
        let words = self.used.len();
        for step in 0..words {
            let w = (self.cursor + step) % words;
            let free = !self.used.get(w).copied().unwrap_or(u64::MAX);
            if free == 0 {
                continue;
            }
            let i = w * 64 + free.trailing_zeros() as usize;
            if i < self.count() {
                self.cursor = w;
                return Some(self.mark(i));
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
        assert_eq!(second, 1000, "taken: the first free port instead");
        assert_eq!(pool.allocate(80), Some(1001), "outside the range");
        let mut seen: Vec<u16> = vec![1050, 1000, 1001];
        while let Some(p) = pool.allocate(1050) {
            seen.push(p);
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 100);
        assert_eq!(pool.in_use(), 100);
        pool.release(1077);
        assert_eq!(pool.allocate(1), Some(1077));
    }
}
