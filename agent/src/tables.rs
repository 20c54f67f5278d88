//! Per-table bookkeeping of the agent: which hardware slots are in use,
//! which the current snapshot has mentioned, how many references a
//! nexthop or group has, and the key index.
//!
//! All of it is allocated once, at start-up, from the board's capacities.

use crate::index::{hash_ranges, same_key, Index};
use dpu_hw::layout::TableId;
use dpu_hw::Hal;

/// Largest entry of any table (a 32-wide group is 16 + 32 * 8 bytes).
pub const MAX_ENTRY: usize = 512;

/// A stack of free slot numbers.
pub struct Slots {
    free: Box<[u32]>,
    top: usize,
}

impl Slots {
    pub fn new(cap: u32) -> Self {
        // Reversed, so that slot 0 is handed out first.
        Self { free: (0..cap).rev().collect(), top: cap as usize }
    }

    pub fn alloc(&mut self) -> Option<u32> {
        self.top = self.top.checked_sub(1)?;
        Some(self.free[self.top])
    }

    pub fn release(&mut self, slot: u32) {
        debug_assert!(self.top < self.free.len());
        if self.top < self.free.len() {
            self.free[self.top] = slot;
            self.top += 1;
        }
    }

    pub fn available(&self) -> u32 {
        self.top as u32
    }

    /// Rebuilds the free stack from the set of used slots.
    pub fn rebuild(&mut self, mut used: impl FnMut(u32) -> bool) {
        let cap = self.free.len() as u32;
        self.top = 0;
        for s in (0..cap).rev() {
            if !used(s) {
                self.free[self.top] = s;
                self.top += 1;
            }
        }
    }
}

/// A fixed bitset.
pub struct Bits(Box<[u64]>);

impl Bits {
    pub fn new(n: u32) -> Self {
        Bits(vec![0u64; (n as usize).div_ceil(64)].into_boxed_slice())
    }
    pub fn set(&mut self, i: u32) {
        self.0[i as usize / 64] |= 1 << (i % 64);
    }
    pub fn get(&self, i: u32) -> bool {
        self.0[i as usize / 64] & (1 << (i % 64)) != 0
    }
    pub fn clear_all(&mut self) {
        self.0.fill(0);
    }
}

/// Byte ranges of an entry that make up its key: defined in the layout
/// (`dpu_hw::layout`), beside each entry's encoding.
pub use dpu_hw::layout::KeyRanges;

pub fn key_ranges(t: TableId) -> KeyRanges {
    t.key_ranges()
}

/// Key of an agent-created nexthop or group (id 0): its whole content.
pub const CONTENT: KeyRanges = dpu_hw::layout::CONTENT_KEY;

/// A keyed view over one hardware table.
pub struct KeyIndex {
    pub index: Index,
    pub ranges: KeyRanges,
}

impl KeyIndex {
    pub fn new(cap: u32, ranges: KeyRanges) -> Self {
        Self { index: Index::new(cap), ranges }
    }

    /// The key ranges with `usize::MAX` ends cut to an entry of `len`
    /// bytes (at most four ranges, as every table has).
    fn clip(&self, len: usize) -> ([(usize, usize); 4], usize) {
        let mut buf = [(0usize, 0usize); 4];
        let n = self.ranges.len().min(4);
        for (out, &(a, b)) in buf.iter_mut().zip(self.ranges) {
            *out = (a, b.min(len));
        }
        (buf, n)
    }

    pub fn hash(&self, entry: &[u8]) -> u32 {
        let (r, n) = self.clip(entry.len());
        hash_ranges(entry, &r[..n])
    }

    fn same(&self, a: &[u8], b: &[u8]) -> bool {
        let (r, n) = self.clip(a.len().min(b.len()));
        same_key(a, b, &r[..n])
    }

    /// The slot of the entry whose key equals `probe`'s.
    pub fn find<H: Hal>(&self, hal: &H, t: TableId, probe: &[u8]) -> Option<u32> {
        let mut buf = [0u8; MAX_ENTRY];
        let size = probe.len();
        self.index.find(self.hash(probe), |slot| {
            hal.read_entry(t, slot, &mut buf[..size]) && self.same(&buf[..size], probe)
        })
    }

    pub fn insert(&mut self, entry: &[u8], slot: u32) {
        let h = self.hash(entry);
        self.index.insert(h, slot);
    }

    pub fn remove(&mut self, entry: &[u8], slot: u32) {
        let h = self.hash(entry);
        self.index.remove(h, slot);
    }
}

/// The agent's state for one hardware table.
pub struct Table {
    pub id: TableId,
    pub size: usize,
    pub cap: u32,
    pub slots: Slots,
    /// Slots mentioned since the current snapshot began.
    pub seen: Bits,
    /// Key index; for nexthops and groups, objects by id.
    pub keys: KeyIndex,
    /// Nexthops and groups only: agent-created entries (id 0) by content.
    pub content: Option<KeyIndex>,
    /// Nexthops and groups only: references from routes and groups.
    pub refs: Box<[u32]>,
    /// Tables with counters: packets (plus tx packets for ports) at the
    /// last stats report, so that only moved counters are reported.
    pub reported: Box<[u64]>,
}

impl Table {
    pub fn new<H: Hal>(hal: &H, id: TableId) -> Self {
        let cap = hal.capacity(id);
        let shared = matches!(id, TableId::Nexthop | TableId::Group);
        Table {
            id,
            size: hal.entry_size(id),
            cap,
            slots: Slots::new(cap),
            seen: Bits::new(cap),
            keys: KeyIndex::new(cap, key_ranges(id)),
            content: shared.then(|| KeyIndex::new(cap, CONTENT)),
            refs: vec![0; if shared { cap as usize } else { 0 }].into_boxed_slice(),
            reported: vec![0; if id.has_counters() { cap as usize } else { 0 }].into_boxed_slice(),
        }
    }

    /// The index an entry belongs to: agent-created nexthops and groups
    /// (id 0 in bytes 4..8) are keyed by content.
    pub fn index_for(&self, entry: &[u8]) -> &KeyIndex {
        match &self.content {
            Some(c) if entry[4..8] == [0, 0, 0, 0] => c,
            _ => &self.keys,
        }
    }

    pub fn index_for_mut(&mut self, entry: &[u8]) -> &mut KeyIndex {
        match &mut self.content {
            Some(c) if entry[4..8] == [0, 0, 0, 0] => c,
            _ => &mut self.keys,
        }
    }
}
