//! The session index: FlowKey -> u32 in an open-addressing table with
//! linear probing, sized up front, that a batch can prefetch.
//!
//! Why not hashbrown (used before, and everywhere else): a lookup there is
//! two dependent cache misses (control bytes, then the bucket) and it
//! offers no way to start loading a key's bucket early. Here a key's home
//! slot is known from its hash, so the NAT stage hashes a whole batch,
//! prefetches every home slot, and only then probes: the misses of 64
//! lookups overlap (`conntrack/established_1m_sessions` measures it).
//!
//! Slots are 20 bytes (key and value); a value of `EMPTY` marks a free
//! slot. Removal shifts later entries of the probe run back (Knuth's
//! algorithm R), so there are no tombstones and probe runs stay short.
//! The table never grows: the caller reserves for its maximum.
use super::hugepages::HugePages;
use super::key::FlowKey;
use allocator_api2::vec::Vec as HugeVec;
use hashbrown::DefaultHashBuilder;
use std::hash::BuildHasher;

const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Slot {
    key: FlowKey,
    value: u32,
}

pub struct FlowIndex {
    slots: HugeVec<Slot, HugePages>,
    mask: usize,
    len: usize,
    // Keyed (foldhash, randomly seeded): VMs choose the keys.
    hasher: DefaultHashBuilder,
}

impl FlowIndex {
    /// Room for `entries` at a load of at most 3/4.
    pub fn with_capacity(entries: usize) -> FlowIndex {
        let size = (entries * 4).div_ceil(3).max(2).next_power_of_two();
        let empty = Slot {
            key: FlowKey {
                zone: 0,
                proto: 0,
                src: [0; 4].into(),
                dst: [0; 4].into(),
                sport: 0,
                dport: 0,
            },
            value: EMPTY,
        };
        let mut slots = HugeVec::with_capacity_in(size, HugePages);
        slots.resize(size, empty);
        FlowIndex {
            slots,
            mask: size - 1,
            len: 0,
            hasher: DefaultHashBuilder::default(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Slots, for memory accounting.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

    /// Where `key`'s probe starts.
    #[inline]
    pub fn home(&self, key: &FlowKey) -> usize {
        // The key packed in one u128: one hasher write, not six.
        let ports = u64::from(key.zone) << 48
            | u64::from(key.proto) << 32
            | u64::from(key.sport) << 16
            | u64::from(key.dport);
        let addrs = u64::from(u32::from(key.src)) << 32 | u64::from(u32::from(key.dst));
        self.hasher
            .hash_one(u128::from(ports) << 64 | u128::from(addrs)) as usize
            & self.mask
    }

    /// Starts loading the slot probes for `key` begin at (from `home`).
    #[inline]
    pub fn prefetch(&self, home: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch hint on an address inside the table.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // And the next line: a probe run (2.5 slots on average at
            // 3/4 load) often crosses into it.
            let at = self.slots.as_ptr().add(home).cast::<i8>();
            _mm_prefetch::<_MM_HINT_T0>(at);
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64));
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
        let mut i = home;
        // Every index is masked, so `get` always finds a slot; it stands
        // where `[]` would check the bound and panic.
        while let Some(slot) = self.slots.get(i) {
            if slot.value == EMPTY {
                return None;
            }
            if slot.key == *key {
                return Some(slot.value);
            }
            i = (i + 1) & self.mask;
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
        let mut i = self.home(&key);
        while let Some(slot) = self.slots.get_mut(i) {
            if slot.value == EMPTY {
                assert!(self.len < self.mask, "flow index full");
                *slot = Slot { key, value };
                self.len += 1;
                return;
            }
            if slot.key == key {
                slot.value = value;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `key` if it maps to `value`.
    pub fn remove_if(&mut self, key: &FlowKey, value: u32) -> bool {
        if self.get(key) != Some(value) {
            return false;
        }
        self.remove(key);
        true
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<u32> {
        let mut i = self.home(key);
        let removed = loop {
            let slot = self.slots.get(i)?;
            if slot.value == EMPTY {
                return None;
            }
            if slot.key == *key {
                break slot.value;
            }
            i = (i + 1) & self.mask;
        };
        // Shift back the entries after i whose probe run passes over i.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let Some(&slot) = self.slots.get(j) else {
                break;
            };
            if slot.value == EMPTY {
                break;
            }
            let home = self.home(&slot.key);
            // The entry at j may move to i unless its home lies in (i, j].
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                if let Some(vacant) = self.slots.get_mut(i) {
                    *vacant = slot;
                }
                i = j;
            }
        }
        if let Some(last) = self.slots.get_mut(i) {
            last.value = EMPTY;
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

    proptest! {
        /// Random inserts and removals in a small (so crowded) table
        /// agree with a HashMap.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((any::<bool>(), 0u16..48, 0u32..1000), 1..400)) {
            let mut index = FlowIndex::with_capacity(48);
            let mut model = HashMap::new();
            for (insert, k, v) in ops {
                if insert {
                    index.insert(key(k), v);
                    model.insert(k, v);
                } else {
                    prop_assert_eq!(index.remove(&key(k)), model.remove(&k));
                }
                prop_assert_eq!(index.len(), model.len());
                for k in 0..48 {
                    prop_assert_eq!(index.get(&key(k)), model.get(&k).copied());
                }
            }
        }
    }
}
