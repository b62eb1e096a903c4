//! The session index: FlowKey -> u32 in an open-addressing table of
//! cache-line buckets, sized up front, that a batch can prefetch.
//!
//! Why not hashbrown (used before, and everywhere else): a lookup there is
//! two dependent cache misses (control bytes, then the bucket) and it
//! offers no way to start loading a key's bucket early. Here a key's home
//! bucket is known from its hash, so the NAT stage hashes a whole batch,
//! prefetches every home bucket, and only then probes: the misses of 64
//! lookups overlap (`conntrack/established_1m_sessions` measures it).
//!
//! A bucket is one 64-byte line holding three entries (16-byte keys,
//! 4-byte values), so a lookup touches one line unless its home bucket
//! overflowed; the 20-byte slots probed linearly before crossed a line on
//! most lookups. A full bucket sends further entries to the next buckets,
//! and counts them (`passing`): a lookup goes on past a bucket only while
//! entries homed at or before it lie beyond it. Entries never move, so
//! removal just frees the slot and takes back those counts. A value of
//! `EMPTY` marks a free slot. The table never grows: the caller reserves
//! for its maximum.
use super::hugepages::HugePages;
use super::key::FlowKey;
use allocator_api2::vec::Vec as HugeVec;
use hashbrown::DefaultHashBuilder;
use std::hash::BuildHasher;

const EMPTY: u32 = u32::MAX;

/// Entries a bucket holds.
const WAYS: usize = 3;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    keys: [FlowKey; WAYS],
    values: [u32; WAYS],
    /// Entries stored beyond this bucket whose probe passed through it.
    passing: u32,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

pub struct FlowIndex {
    buckets: HugeVec<Bucket, HugePages>,
    len: usize,
    // Keyed (foldhash, randomly seeded): VMs choose the keys.
    hasher: DefaultHashBuilder,
}

impl FlowIndex {
    /// Room for `entries` at a load of at most 4/5 (the memory the
    /// 20-byte slots took at 3/4 and a power of two).
    pub fn with_capacity(entries: usize) -> FlowIndex {
        // Any count, not a power of two: the home bucket is the hash's
        // range reduction (below), so the table is no larger than it needs.
        let count = (entries * 5).div_ceil(4 * WAYS).max(2);
        let empty = Bucket {
            keys: [FlowKey {
                zone: 0,
                proto: 0,
                src: [0; 4].into(),
                dst: [0; 4].into(),
                sport: 0,
                dport: 0,
            }; WAYS],
            values: [EMPTY; WAYS],
            passing: 0,
        };
        let mut buckets = HugeVec::with_capacity_in(count, HugePages);
        buckets.resize(count, empty);
        FlowIndex {
            buckets,
            len: 0,
            hasher: DefaultHashBuilder::default(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Bytes the table holds, for memory accounting.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// Where `key`'s probe starts: its home bucket.
    #[inline]
    pub fn home(&self, key: &FlowKey) -> usize {
        // The key packed in one u128: one hasher write, not six.
        let ports = u64::from(key.zone) << 48
            | u64::from(key.proto) << 32
            | u64::from(key.sport) << 16
            | u64::from(key.dport);
        let addrs = u64::from(u32::from(key.src)) << 32 | u64::from(u32::from(key.dst));
        let hash = self
            .hasher
            .hash_one(u128::from(ports) << 64 | u128::from(addrs));
        // Lemire's range reduction: a multiply, not a modulo.
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, bucket: usize) -> usize {
        match bucket + 1 {
            n if n == self.buckets.len() => 0,
            n => n,
        }
    }

    /// Starts loading the bucket probes for a key begin at (`home`).
    #[inline]
    pub fn prefetch(&self, home: usize) {
        #[cfg(target_arch = "x86_64")]
        if let Some(bucket) = self.buckets.get(home) {
            // SAFETY: a prefetch hint on a bucket of the table.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>((bucket as *const Bucket).cast::<i8>());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = home;
    }

    #[inline]
    pub fn get(&self, key: &FlowKey) -> Option<u32> {
        self.get_from(key, self.home(key))
    }

    /// `get`, with the key's `home` already computed.
    #[inline]
    pub fn get_from(&self, key: &FlowKey, home: usize) -> Option<u32> {
        let (b, way) = self.find(key, home)?;
        self.value_at(b, way)
    }

    #[inline]
    fn value_at(&self, bucket: usize, way: usize) -> Option<u32> {
        self.buckets.get(bucket)?.values.get(way).copied()
    }

    /// The bucket and way holding `key`, whose home is `home`.
    #[inline]
    fn find(&self, key: &FlowKey, home: usize) -> Option<(usize, usize)> {
        let mut b = home;
        // Once round the table at most: in a full one every bucket may
        // have entries passing.
        for _ in 0..self.buckets.len() {
            let bucket = self.buckets.get(b)?;
            let mut ways = bucket.keys.iter().zip(&bucket.values);
            if let Some(way) = ways.position(|(k, &v)| v != EMPTY && k == key) {
                return Some((b, way));
            }
            if bucket.passing == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    pub fn contains_key(&self, key: &FlowKey) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces. Panics if full: callers reserve for their
    /// maximum (conntrack: three entries per session).
    pub fn insert(&mut self, key: FlowKey, value: u32) {
        debug_assert_ne!(value, EMPTY);
        let home = self.home(&key);
        if let Some((b, way)) = self.find(&key, home) {
            if let Some(v) = self
                .buckets
                .get_mut(b)
                .and_then(|bk| bk.values.get_mut(way))
            {
                *v = value;
            }
            return;
        }
        assert!(self.len < self.buckets.len() * WAYS, "flow index full");
        let mut b = home;
        // A free slot exists (checked above), so the walk ends.
        loop {
            let next = self.next(b);
            let Some(bucket) = self.buckets.get_mut(b) else {
                return;
            };
            let mut slots = bucket.keys.iter_mut().zip(bucket.values.iter_mut());
            if let Some((k, v)) = slots.find(|(_, v)| **v == EMPTY) {
                (*k, *v) = (key, value);
                self.len += 1;
                return;
            }
            bucket.passing += 1;
            b = next;
        }
    }

    /// Removes `key` if it maps to `value`.
    pub fn remove_if(&mut self, key: &FlowKey, value: u32) -> bool {
        let home = self.home(key);
        match self.find(key, home) {
            Some((at, way)) if self.value_at(at, way) == Some(value) => {
                self.take(home, at, way);
                true
            }
            _ => false,
        }
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<u32> {
        let home = self.home(key);
        let (at, way) = self.find(key, home)?;
        self.take(home, at, way)
    }

    /// Frees way `way` of bucket `at`, whose key's home is `home`;
    /// returns its value.
    fn take(&mut self, home: usize, at: usize, way: usize) -> Option<u32> {
        let bucket = self.buckets.get_mut(at)?;
        let removed = std::mem::replace(bucket.values.get_mut(way)?, EMPTY);
        // The buckets its probe passed through no longer lead to it.
        let mut b = home;
        while b != at {
            let next = self.next(b);
            if let Some(passed) = self.buckets.get_mut(b) {
                passed.passing -= 1;
            }
            b = next;
        }
        self.len -= 1;
        Some(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(n: u16) -> FlowKey {
        FlowKey {
            zone: 0,
            proto: 17,
            src: [10, 0, 0, 1].into(),
            dst: [10, 0, 0, 2].into(),
            sport: n,
            dport: 53,
        }
    }

    /// Applies `ops` (insert or remove key k, value v) to an index with
    /// room for `capacity` and to a HashMap; they must agree throughout.
    fn agrees_with_a_map(
        capacity: usize,
        keys: u16,
        ops: Vec<(bool, u16, u32)>,
    ) -> Result<(), TestCaseError> {
        let mut index = FlowIndex::with_capacity(capacity);
        let mut model = HashMap::new();
        for (insert, k, v) in ops {
            if insert {
                index.insert(key(k), v);
                model.insert(k, v);
            } else {
                prop_assert_eq!(index.remove(&key(k)), model.remove(&k));
            }
            prop_assert_eq!(index.len(), model.len());
            for k in 0..keys {
                prop_assert_eq!(index.get(&key(k)), model.get(&k).copied());
            }
        }
        Ok(())
    }

    proptest! {
        /// Random inserts and removals in a small (so crowded) table
        /// agree with a HashMap.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((any::<bool>(), 0u16..48, 0u32..1000), 1..400)) {
            agrees_with_a_map(48, 48, ops)?;
        }

        /// The same in a table that fills up (18 slots, 18 keys): full
        /// buckets overflow into their neighbours and round its end.
        #[test]
        fn a_full_table_behaves_like_a_map(ops in prop::collection::vec((any::<bool>(), 0u16..18, 0u32..1000), 1..400)) {
            agrees_with_a_map(14, 18, ops)?;
        }
    }
}
