//! Fixed-capacity hash index from an object's key to its hardware slot.
//!
//! The index stores no keys: keys live in the hardware entries themselves,
//! so a lookup hashes the key, probes the buckets and confirms a candidate
//! by comparing the key bytes of the entry in that slot (through the
//! caller's closure). That halves the agent's memory per object and lets a
//! restarted agent rebuild its index from the hardware alone.
//!
//! Open addressing with linear probing and backward-shift deletion; the
//! bucket array is allocated once at start-up, at least twice the table's
//! capacity, and never grows.

/// One bucket: `hash << 32 | (slot + 1)`, 0 when empty.
type Bucket = u64;

pub struct Index {
    buckets: Box<[Bucket]>,
    mask: usize,
    len: usize,
}

impl Index {
    /// An index for at most `capacity` entries.
    pub fn new(capacity: u32) -> Self {
        let n = (capacity as usize * 2).next_power_of_two().max(8);
        Self { buckets: vec![0; n].into_boxed_slice(), mask: n - 1, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, hash: u32) -> usize {
        // Fibonacci hashing spreads FNV's low bits over the table.
        (hash.wrapping_mul(0x9E37_79B9) as usize) & self.mask
    }

    /// The slot whose entry has this key: `is_key(slot)` confirms a
    /// candidate with the same hash.
    pub fn find(&self, hash: u32, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = self.home(hash);
        loop {
            let b = self.buckets[i];
            if b == 0 {
                return None;
            }
            if (b >> 32) as u32 == hash {
                let slot = (b as u32).wrapping_sub(1);
                if is_key(slot) {
                    return Some(slot);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Records `slot` under `hash`. The caller has checked the key is
    /// absent; the bucket array never fills since it is twice the capacity
    /// of the slot allocator that feeds it.
    pub fn insert(&mut self, hash: u32, slot: u32) {
        debug_assert!(self.len < self.buckets.len() / 2 + 1);
        let mut i = self.home(hash);
        while self.buckets[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = (hash as u64) << 32 | (slot as u64 + 1);
        self.len += 1;
    }

    /// Removes the bucket of `slot` (stored under `hash`).
    pub fn remove(&mut self, hash: u32, slot: u32) -> bool {
        let want = (hash as u64) << 32 | (slot as u64 + 1);
        let mut i = self.home(hash);
        loop {
            match self.buckets[i] {
                0 => return false,
                b if b == want => break,
                _ => i = (i + 1) & self.mask,
            }
        }
        // Backward-shift: pull later members of the probe run into the gap
        // so that no tombstones are needed.
        let mut gap = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let b = self.buckets[j];
            if b == 0 {
                break;
            }
            let home = self.home((b >> 32) as u32);
            // Leave b where it is if its home lies cyclically in (gap, j].
            let stays = if gap <= j { gap < home && home <= j } else { home > gap || home <= j };
            if !stays {
                self.buckets[gap] = b;
                gap = j;
            }
            j = (j + 1) & self.mask;
        }
        self.buckets[gap] = 0;
        self.len -= 1;
        true
    }

    pub fn clear(&mut self) {
        self.buckets.fill(0);
        self.len = 0;
    }
}

/// FNV-1a over the key bytes of an entry.
pub fn hash_ranges(entry: &[u8], ranges: &[(usize, usize)]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &(a, b) in ranges {
        for &x in &entry[a..b] {
            h ^= x as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// True if two entries have the same key bytes.
pub fn same_key(a: &[u8], b: &[u8], ranges: &[(usize, usize)]) -> bool {
    ranges.iter().all(|&(s, e)| a[s..e] == b[s..e])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// The index agrees with a HashMap under random inserts and removes,
        /// including heavy hash collisions.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..64, 0u32..4), 1..400)) {
            let mut idx = Index::new(64);
            let mut model: HashMap<u32, u32> = HashMap::new(); // key -> hash
            for (insert, key, h) in ops {
                let hash = h; // few distinct hashes: long probe runs
                let found = idx.find(hash, |s| s == key);
                prop_assert_eq!(found.is_some(), model.get(&key) == Some(&hash));
                if insert {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(key) {
                        idx.insert(hash, key);
                        e.insert(hash);
                    }
                } else if let Some(hh) = model.remove(&key) {
                    prop_assert!(idx.remove(hh, key));
                }
                for (&k, &hh) in &model {
                    prop_assert_eq!(idx.find(hh, |s| s == k), Some(k));
                }
                prop_assert_eq!(idx.len(), model.len());
            }
        }
    }
}
