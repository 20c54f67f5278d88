//! The hardware abstraction: what firmware does to forwarding hardware.
//!
//! The agent programs hardware only through [`Hal`]. A board's driver
//! implements it; [`MmioHal`] is the `qemu-virt` driver, which programs a
//! [`Region`] mapped from a file.

use crate::layout::{TableId, VALID};
use crate::region::Region;
use std::sync::atomic::Ordering;

/// Operations firmware performs on forwarding tables.
pub trait Hal {
    /// Number of entries the table holds.
    fn capacity(&self, t: TableId) -> u32;
    /// Size of one entry in bytes.
    fn entry_size(&self, t: TableId) -> usize;
    /// Copies entry `slot` into `out` if it is valid.
    fn read_entry(&self, t: TableId, slot: u32, out: &mut [u8]) -> bool;
    /// Writes entry `slot` (its flags byte's VALID bit is set by the
    /// hardware write sequence, not by the caller).
    fn write_entry(&mut self, t: TableId, slot: u32, entry: &[u8]);
    /// Removes entry `slot` from the lookup.
    fn invalidate(&mut self, t: TableId, slot: u32);
    /// The four counters of `slot` (see [`crate::layout`]); zero for tables
    /// without counters.
    fn read_counters(&self, t: TableId, slot: u32) -> [u64; 4];
    /// Zeroes the counters of `slot`, for a newly installed object.
    fn clear_counters(&mut self, t: TableId, slot: u32);
}

/// The `qemu-virt` driver: memory-mapped tables.
pub struct MmioHal {
    region: Region,
}

impl MmioHal {
    /// The driver of a region; it is the region's one writer, so it
    /// closes a write an earlier writer left open (see
    /// [`Region::recover_writes`]).
    pub fn new(region: Region) -> Self {
        region.recover_writes();
        Self { region }
    }

    pub fn region(&self) -> &Region {
        &self.region
    }
}

impl Hal for MmioHal {
    fn capacity(&self, t: TableId) -> u32 {
        self.region.desc(t).capacity
    }

    fn entry_size(&self, t: TableId) -> usize {
        self.region.desc(t).entry_size
    }

    fn read_entry(&self, t: TableId, slot: u32, out: &mut [u8]) -> bool {
        self.region.read_entry(t, slot, out)
    }

    fn write_entry(&mut self, t: TableId, slot: u32, entry: &[u8]) {
        let size = self.entry_size(t);
        let off = self.region.entry_off(t, slot);
        // In place, inside the table's seqlock write: a reader retries
        // rather than see the old entry half overwritten, and an entry
        // being replaced never leaves the lookup (no miss, no fall back
        // to a shorter prefix). VALID is set with the body.
        self.region.write_begin(t);
        self.region.write(off + 1, &entry[1..size]);
        self.region.atomic_u8(off).store((entry[0] & !VALID) | VALID, Ordering::Relaxed);
        self.region.write_end(t);
        self.region.writes_reg(t).fetch_add(1, Ordering::Relaxed);
    }

    fn invalidate(&mut self, t: TableId, slot: u32) {
        let off = self.region.entry_off(t, slot);
        self.region.write_begin(t);
        self.region.atomic_u8(off).store(0, Ordering::Relaxed);
        self.region.write_end(t);
        self.region.invalidates_reg(t).fetch_add(1, Ordering::Relaxed);
    }

    fn read_counters(&self, t: TableId, slot: u32) -> [u64; 4] {
        let mut c = [0u64; 4];
        for (i, v) in c.iter_mut().enumerate() {
            if let Some(a) = self.region.counter(t, slot, i) {
                *v = a.load(Ordering::Relaxed);
            }
        }
        c
    }

    fn clear_counters(&mut self, t: TableId, slot: u32) {
        for i in 0..4 {
            if let Some(a) = self.region.counter(t, slot, i) {
                a.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// The hardware clock for counters' last-hit times: `CLOCK_MONOTONIC` in
/// milliseconds, shared by every process on the machine.
pub fn monotonic_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000,
        Err(_) => 0,
    }
}
