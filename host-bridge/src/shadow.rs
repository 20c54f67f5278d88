//! The shadow's table: every mirrored object, by key, in its wire
//! encoding.
//!
//! At a full routing table this is host-bridge's largest structure (1.2M
//! routes), so two things about its memory matter:
//!
//! - An encoding up to [`INLINE`] bytes (an IPv4 or IPv6 route) lives in
//!   the table's own slot: no allocation per route, and no pointer for the
//!   DPU side to chase when it reads the route back.
//! - The slots are spread over [`SHARDS`] hash tables by bits of the key's
//!   hash. A hash table grows by allocating one twice its size and moving
//!   everything over; one table of 1.2M routes would briefly hold its old
//!   and new arrays, 1.5 times its steady size, at the worst moment. Here
//!   only one shard grows at a time: the peak is 1/SHARDS of that. The key
//!   is hashed once; the shard's table takes the same hash (hashbrown's
//!   `HashTable`, the table under std's `HashMap`).
//! - 256 shards rather than 16: a shard of a full table is then about
//!   650 KiB, which the allocator takes from its heap, and the array a
//!   grown shard gives back serves the next shard's growth. Sixteen
//!   10 MiB shards were each a fresh mapping, every page of which the
//!   kernel had to clear: 9-12% of host-bridge's CPU in a 1.2M-route
//!   install (`HB_PERF=FILE qemu-tests/bench-mirror.sh`), gone at 256, and
//!   peak RSS fell from 159-168 to 153-155 bytes per route.

use dpu_wire::Key;
use hashbrown::hash_table::{Entry, HashTable};
use std::hash::BuildHasher;

/// Encodings up to this many bytes live in the slot: an IPv4 route is
/// about 16, an IPv6 one about 28. A multipath route or a link with a
/// long name goes to the heap.
pub const INLINE: usize = 30;

/// Hash tables the slots are spread over.
pub const SHARDS: usize = 256;

/// An object's wire encoding, inline when it is small.
#[derive(Clone)]
pub enum Enc {
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

impl Enc {
    pub fn new(b: &[u8]) -> Self {
        if b.len() <= INLINE {
            let mut a = [0u8; INLINE];
            a[..b.len()].copy_from_slice(b);
            Enc::Inline(b.len() as u8, a)
        } else {
            Enc::Heap(b.into())
        }
    }
}

/// Equal encodings, whatever their storage.
impl PartialEq for Enc {
    fn eq(&self, o: &Enc) -> bool {
        **self == **o
    }
}

impl Eq for Enc {}

impl std::ops::Deref for Enc {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Enc::Inline(n, a) => &a[..*n as usize],
            Enc::Heap(b) => b,
        }
    }
}

/// One mirrored object.
pub struct Slot {
    pub enc: Enc,
    /// CLOCK_MONOTONIC ns at or after the read of the kernel message (or
    /// the dump) that last upserted the object: a tap delete from before
    /// then may be older than that upsert (`Mirror::read_at`).
    pub read_ns: u64,
}

/// Objects by key, over [`SHARDS`] tables.
pub struct Shadow {
    shards: Vec<HashTable<(Key, Slot)>>,
    hasher: foldhash::fast::RandomState,
    len: usize,
}

impl Default for Shadow {
    fn default() -> Self {
        Shadow { shards: (0..SHARDS).map(|_| HashTable::new()).collect(), hasher: Default::default(), len: 0 }
    }
}

/// What [`Shadow::upsert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    Added,
    Changed,
    /// The same encoding was there already (its read time is updated).
    Same,
}

impl Shadow {
    fn hash(&self, k: &Key) -> u64 {
        self.hasher.hash_one(k)
    }

    /// The shard of a hash: bits the tables do not use (they take the low
    /// bits for the position and the top seven for the control byte).
    fn shard(h: u64) -> usize {
        (h >> 40) as usize % SHARDS
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, k: &Key) -> Option<&Slot> {
        let h = self.hash(k);
        self.shards[Self::shard(h)].find(h, |(x, _)| x == k).map(|(_, s)| s)
    }

    pub fn contains_key(&self, k: &Key) -> bool {
        self.get(k).is_some()
    }

    /// Sets `k` to the encoding `b`, read at `read_ns`.
    pub fn upsert(&mut self, k: Key, b: &[u8], read_ns: u64) -> Upserted {
        let h = self.hash(&k);
        let hasher = &self.hasher;
        let table = &mut self.shards[Self::shard(h)];
        match table.entry(h, |(x, _)| *x == k, |(x, _)| hasher.hash_one(x)) {
            Entry::Occupied(mut e) => {
                let slot = &mut e.get_mut().1;
                slot.read_ns = read_ns;
                if *slot.enc == *b {
                    return Upserted::Same;
                }
                slot.enc = Enc::new(b);
                Upserted::Changed
            }
            Entry::Vacant(e) => {
                e.insert((k, Slot { enc: Enc::new(b), read_ns }));
                self.len += 1;
                Upserted::Added
            }
        }
    }

    /// Inserts `k` if it is absent, in one lookup; else leaves it and
    /// gives its slot back.
    pub fn insert_new(&mut self, k: Key, b: &[u8], read_ns: u64) -> Result<(), &Slot> {
        let h = self.hash(&k);
        let hasher = &self.hasher;
        let table = &mut self.shards[Self::shard(h)];
        match table.entry(h, |(x, _)| *x == k, |(x, _)| hasher.hash_one(x)) {
            Entry::Occupied(e) => Err(&e.into_mut().1),
            Entry::Vacant(e) => {
                e.insert((k, Slot { enc: Enc::new(b), read_ns }));
                self.len += 1;
                Ok(())
            }
        }
    }

    pub fn remove(&mut self, k: &Key) -> Option<Slot> {
        let h = self.hash(k);
        match self.shards[Self::shard(h)].find_entry(h, |(x, _)| x == k) {
            Ok(e) => {
                self.len -= 1;
                Some(e.remove().0 .1)
            }
            Err(_) => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Slot)> + '_ {
        self.shards.iter().flat_map(|t| t.iter().map(|(k, s)| (k, s)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// Slots allocated over all shards (for tests of the growth).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.shards.iter().map(|t| t.capacity()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpu_wire::{Ip, Prefix, RouteKey};

    fn key(i: u32) -> Key {
        Key::Route(RouteKey {
            table: 254,
            dst: Prefix::new(Ip::V4(i.to_be_bytes()).masked(32), 32),
            metric: 0,
            ifindex: 0,
        })
    }

    #[test]
    fn upsert_get_remove() {
        let mut s = Shadow::default();
        assert_eq!(s.upsert(key(1), b"abc", 5), Upserted::Added);
        assert_eq!(s.upsert(key(1), b"abc", 7), Upserted::Same);
        assert_eq!(s.get(&key(1)).map(|x| x.read_ns), Some(7));
        let long = [9u8; INLINE + 10];
        assert_eq!(s.upsert(key(1), &long, 8), Upserted::Changed);
        assert_eq!(s.get(&key(1)).map(|x| x.enc.to_vec()), Some(long.to_vec()));
        assert!(matches!(s.get(&key(1)).map(|x| &x.enc), Some(Enc::Heap(_))));
        assert_eq!(s.upsert(key(1), b"x", 9), Upserted::Changed);
        assert!(matches!(s.get(&key(1)).map(|x| &x.enc), Some(Enc::Inline(1, _))));
        assert_eq!(s.len(), 1);
        assert!(s.remove(&key(1)).is_some());
        assert!(s.remove(&key(1)).is_none());
        assert!(s.is_empty());
    }

    #[test]
    fn keys_spread_over_the_shards_and_stay_findable() {
        let mut s = Shadow::default();
        for i in 0..100_000 {
            s.upsert(key(i), &i.to_le_bytes(), 0);
        }
        assert_eq!(s.len(), 100_000);
        assert_eq!(s.iter().count(), 100_000);
        for i in (0..100_000).step_by(7) {
            assert_eq!(s.get(&key(i)).map(|x| x.enc.to_vec()), Some(i.to_le_bytes().to_vec()));
        }
        // Each shard holds its share: no shard is more than twice another.
        let sizes: Vec<usize> = s.shards.iter().map(|t| t.len()).collect();
        let (lo, hi) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
        assert!(hi < 2 * lo, "{sizes:?}");
        // Growth is per shard: the largest table is a fraction of all.
        let biggest = s.shards.iter().map(|t| t.capacity()).max().unwrap_or(0);
        assert!(biggest * 8 < s.capacity(), "{biggest} of {}", s.capacity());
    }
}
