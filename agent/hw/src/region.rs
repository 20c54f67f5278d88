//! The hardware region: a shared memory mapping with the [`crate::layout`]
//! format.
//!
//! On `qemu-virt` the region is a file (on tmpfs, or a QEMU ivshmem/BAR
//! resource file later) that the agent maps with `mmap(MAP_SHARED)`; the
//! lookup model and the reader map the same file from other processes.
//! All access goes through bounds-checked byte copies and atomics, the way
//! a driver touches device memory: the region is never treated as Rust
//! objects.

use crate::layout::{
    Layout, TableDesc, TableId, COUNTER_SIZE, DESC_OFFSET, DESC_SIZE, GROUP_HDR, HEADER_SIZE, LAYOUT_VERSION,
    MAGIC,
};
use nix::sys::mman::{mmap, mmap_anonymous, munmap, MapFlags, ProtFlags};
use std::fs::OpenOptions;
use std::io;
use std::num::NonZeroUsize;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Offset of the SEQ register in a table descriptor.
pub const SEQ_REG: usize = 0x30;

/// Tries of a seqlock read before a table with a write left open reads
/// as a miss.
pub const READ_SPINS: u32 = 1 << 20;

/// A mapped hardware region.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    descs: [TableDesc; TableId::COUNT],
    board: String,
}

// SAFETY: the region is shared memory accessed only through copies and
// atomics; concurrent access from threads is no different from concurrent
// access from the other processes that map it.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap of exactly this size.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Region {
    /// Maps the hardware region at `path` for `layout`, as firmware does at
    /// start-up, and says whether it was a warm start (`true`: the region
    /// already held this board's layout and its entries are kept, since the
    /// hardware kept forwarding while the agent was away).
    ///
    /// `path` is either a device (a PCI BAR's sysfs `resource` file, a
    /// board memory file) or a development file. An existing one is never
    /// resized: it must be at least the layout's size, and only its first
    /// bytes are used. What it holds decides the rest (docs/HARDWARE.md,
    /// "Formatting"):
    ///
    /// * this board's layout: kept (warm start), unless `format`;
    /// * a blank header (all zero, as a device comes up): formatted;
    /// * anything else (another board, another layout version, garbage):
    ///   refused, since it is not ours to erase, unless `format`.
    ///
    /// A path that does not exist, or an empty file, is sized to the
    /// layout and formatted; a plain file smaller than the layout is
    /// resized only with `format`; a sysfs resource file never is.
    pub fn create(path: &Path, layout: &Layout, format: bool) -> io::Result<(Region, bool)> {
        let (descs, total) = layout.tables();
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let size = file.metadata()?.len();
        // Formatted whatever it holds: asked to, or sized just now.
        let mut fresh = format;
        if size < total as u64 {
            // A device (a sysfs resource file) is never resized. A plain
            // file is, when it is empty (just created, or left by a start
            // that died before sizing it) or when asked to format (an
            // older, smaller layout).
            let sysfs = nix::sys::statfs::fstatfs(&file)
                .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC);
            if sysfs || (size > 0 && !format) {
                return Err(invalid(format!(
                    "{}: {size} bytes, smaller than board {}'s layout ({total} bytes); \
                     a device region is never resized{}",
                    path.display(),
                    layout.board,
                    if sysfs { "" } else { " (--cold resizes a plain file)" }
                )));
            }
            file.set_len(total as u64)?;
            fresh = true;
        }
        let mut region = Self::map(&file, total)?;
        if !fresh && !region.is_blank() {
            match region.parse_header() {
                Ok((found, board)) if found == descs && board == layout.board => {
                    region.descs = descs;
                    region.board = board;
                    return Ok((region, true));
                }
                Ok((_, board)) => {
                    return Err(invalid(format!(
                        "{}: holds board {board:?}'s layout, not board {:?}'s; not erasing it \
                         (--cold formats it)",
                        path.display(),
                        layout.board
                    )))
                }
                Err(e) => {
                    return Err(invalid(format!(
                        "{}: neither blank nor a DPU region ({e}); not erasing it (--cold formats it)",
                        path.display()
                    )))
                }
            }
        }
        region.format(layout);
        Ok((region, false))
    }

    /// True if the header is all zero: a device that was never formatted.
    fn is_blank(&self) -> bool {
        let mut h = [0u8; HEADER_SIZE];
        self.read(0, &mut h);
        h.iter().all(|&b| b == 0)
    }

    /// Maps an existing region file for reading and lookups, trusting
    /// nothing in it: the header is validated against the file's size.
    pub fn open(path: &Path) -> io::Result<Region> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(|_| invalid("region too large".into()))?;
        if len < HEADER_SIZE {
            return Err(invalid(format!("{}: {len} bytes, smaller than a header", path.display())));
        }
        let mut region = Self::map(&file, len)?;
        let (descs, board) = region.parse_header()?;
        region.descs = descs;
        region.board = board;
        Ok(region)
    }

    /// An anonymous region for benchmarks and unit tests.
    pub fn anonymous(layout: &Layout) -> io::Result<Region> {
        let (_, total) = layout.tables();
        let len = NonZeroUsize::new(total).ok_or_else(|| invalid("empty layout".into()))?;
        // SAFETY: a fresh private mapping; nothing else refers to it.
        let ptr = unsafe {
            mmap_anonymous(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_PRIVATE)
        }?;
        let mut region =
            Region { ptr: ptr.cast(), len: total, descs: layout.tables().0, board: String::new() };
        region.format(layout);
        Ok(region)
    }

    fn map(file: &std::fs::File, len: usize) -> io::Result<Region> {
        let nz = NonZeroUsize::new(len).ok_or_else(|| invalid("empty region".into()))?;
        // SAFETY: a shared mapping of a file we opened read-write; other
        // processes may write it concurrently, which every accessor
        // tolerates (copies and atomics only).
        let ptr = unsafe {
            mmap(None, nz, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, file, 0)
        }?;
        let empty = TableId::ALL.map(|id| TableDesc {
            id,
            entry_size: 0,
            capacity: 0,
            counter_size: 0,
            entries_off: 0,
            counters_off: 0,
        });
        Ok(Region { ptr: ptr.cast(), len, descs: empty, board: String::new() })
    }

    /// Formats the region in place (docs/HARDWARE.md, "Formatting"): the
    /// magic goes first to `ff × 8` and last to its value, so a format cut
    /// short leaves a region that is neither blank nor formatted, which a
    /// later start refuses rather than trusts.
    fn format(&mut self, layout: &Layout) {
        let (descs, total) = layout.tables();
        self.write(0, &[0xffu8; 8]);
        // Every entry invalid, every counter and register zero.
        let zero = [0u8; 4096];
        let mut off = 8;
        while off < total {
            let n = (total - off).min(zero.len());
            self.write(off, &zero[..n]);
            off += n;
        }
        self.write(8, &LAYOUT_VERSION.to_le_bytes());
        self.write(12, &(TableId::COUNT as u32).to_le_bytes());
        let mut name = [0u8; 32];
        let n = layout.board.len().min(31);
        name[..n].copy_from_slice(&layout.board.as_bytes()[..n]);
        self.write(16, &name);
        self.write(0x30, &(total as u64).to_le_bytes());
        for (i, d) in descs.iter().enumerate() {
            let o = DESC_OFFSET + i * DESC_SIZE;
            self.write(o, &(d.id as u32).to_le_bytes());
            self.write(o + 4, &(d.entry_size as u32).to_le_bytes());
            self.write(o + 8, &d.capacity.to_le_bytes());
            self.write(o + 12, &(d.counter_size as u32).to_le_bytes());
            self.write(o + 16, &(d.entries_off as u64).to_le_bytes());
            self.write(o + 24, &(d.counters_off as u64).to_le_bytes());
        }
        std::sync::atomic::fence(Ordering::Release);
        self.write(0, &MAGIC);
        self.descs = descs;
        self.board = layout.board.clone();
    }

    fn parse_header(&self) -> io::Result<([TableDesc; TableId::COUNT], String)> {
        let mut h = [0u8; DESC_OFFSET];
        self.read(0, &mut h);
        if h[..8] != MAGIC {
            return Err(invalid("bad magic: not a DPU hardware region".into()));
        }
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        if version != LAYOUT_VERSION {
            return Err(invalid(format!("layout version {version}, expected {LAYOUT_VERSION}")));
        }
        let count = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if count as usize != TableId::COUNT {
            return Err(invalid(format!("{count} tables, expected {}", TableId::COUNT)));
        }
        let name_len = h[16..48].iter().position(|&c| c == 0).unwrap_or(32);
        let board = String::from_utf8_lossy(&h[16..16 + name_len]).into_owned();
        let mut descs = [TableDesc {
            id: TableId::Port,
            entry_size: 0,
            capacity: 0,
            counter_size: 0,
            entries_off: 0,
            counters_off: 0,
        }; TableId::COUNT];
        for (i, d) in descs.iter_mut().enumerate() {
            let mut b = [0u8; 32];
            self.read(DESC_OFFSET + i * DESC_SIZE, &mut b);
            let u32at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let u64at = |o: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[o..o + 8]);
                u64::from_le_bytes(a)
            };
            let id = TableId::from_u32(u32at(0)).filter(|id| *id as usize == i);
            let id = id.ok_or_else(|| invalid(format!("descriptor {i}: wrong table id")))?;
            let entry_size = u32at(4) as usize;
            let min = if id == TableId::Group { GROUP_HDR } else { id.entry_size(0) };
            if entry_size < min || (id != TableId::Group && entry_size != min) {
                return Err(invalid(format!("{}: entry size {entry_size}", id.name())));
            }
            let counter_size = u32at(12) as usize;
            if counter_size != 0 && counter_size != COUNTER_SIZE {
                return Err(invalid(format!("{}: counter size {counter_size}", id.name())));
            }
            let capacity = u32at(8);
            let entries_off = usize::try_from(u64at(16)).map_err(|_| invalid("offset".into()))?;
            let counters_off = usize::try_from(u64at(24)).map_err(|_| invalid("offset".into()))?;
            let within = |off: usize, size: usize| {
                size.checked_mul(capacity as usize)
                    .and_then(|s| s.checked_add(off))
                    .is_some_and(|end| off >= HEADER_SIZE && end <= self.len && off.is_multiple_of(64))
            };
            if !within(entries_off, entry_size) || (counter_size > 0 && !within(counters_off, counter_size)) {
                return Err(invalid(format!("{}: table outside the region", id.name())));
            }
            *d = TableDesc { id, entry_size, capacity, counter_size, entries_off, counters_off };
        }
        Ok((descs, board))
    }

    pub fn board(&self) -> &str {
        &self.board
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn desc(&self, t: TableId) -> &TableDesc {
        &self.descs[t as usize]
    }

    /// Byte offset of an entry. Panics on an out-of-range slot: firmware
    /// bug, not input.
    pub fn entry_off(&self, t: TableId, slot: u32) -> usize {
        let d = self.desc(t);
        assert!(slot < d.capacity, "{} slot {slot} >= {}", t.name(), d.capacity);
        d.entries_off + slot as usize * d.entry_size
    }

    fn counters_off(&self, t: TableId, slot: u32) -> Option<usize> {
        let d = self.desc(t);
        (d.counter_size > 0 && slot < d.capacity).then(|| d.counters_off + slot as usize * d.counter_size)
    }

    fn check(&self, off: usize, len: usize) {
        assert!(off.checked_add(len).is_some_and(|e| e <= self.len), "region access out of bounds");
    }

    /// Copies bytes out of the region.
    pub fn read(&self, off: usize, out: &mut [u8]) {
        self.check(off, out.len());
        // SAFETY: bounds checked; the mapping lives as long as self.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), out.as_mut_ptr(), out.len()) }
    }

    /// Copies bytes into the region.
    pub fn write(&self, off: usize, data: &[u8]) {
        self.check(off, data.len());
        // SAFETY: bounds checked; the mapping lives as long as self.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(off), data.len()) }
    }

    pub fn atomic_u8(&self, off: usize) -> &AtomicU8 {
        self.check(off, 1);
        // SAFETY: in bounds, alignment 1, shared memory used only atomically.
        unsafe { AtomicU8::from_ptr(self.ptr.as_ptr().add(off)) }
    }

    pub fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8);
        assert_eq!(off % 8, 0, "unaligned u64 register");
        // SAFETY: in bounds and aligned (the mapping is page aligned).
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(off).cast()) }
    }

    /// The WRITES register of a table.
    pub fn writes_reg(&self, t: TableId) -> &AtomicU64 {
        self.atomic_u64(DESC_OFFSET + t as usize * DESC_SIZE + 0x20)
    }

    /// The INVALIDATES register of a table.
    pub fn invalidates_reg(&self, t: TableId) -> &AtomicU64 {
        self.atomic_u64(DESC_OFFSET + t as usize * DESC_SIZE + 0x28)
    }

    /// The SEQ register of a table: the sequence count of its writer (see
    /// `docs/HARDWARE.md`, "Updating entries"). Odd while a write is in
    /// progress.
    pub fn seq_reg(&self, t: TableId) -> &AtomicU64 {
        self.atomic_u64(DESC_OFFSET + t as usize * DESC_SIZE + SEQ_REG)
    }

    /// Opens a write to table `t` (the region has one writer, the agent):
    /// SEQ becomes odd before any byte of an entry changes.
    pub fn write_begin(&self, t: TableId) {
        let seq = self.seq_reg(t);
        let s = seq.load(Ordering::Relaxed);
        // An odd count left by a writer that died mid-write is closed by
        // the next write.
        seq.store((s | 1) + if s & 1 == 0 { 0 } else { 2 }, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
    }

    /// Closes a write opened by [`Region::write_begin`]: SEQ becomes even,
    /// after every byte of the write (release order).
    pub fn write_end(&self, t: TableId) {
        let seq = self.seq_reg(t);
        let s = seq.load(Ordering::Relaxed);
        seq.store((s | 1) + 1, Ordering::Release);
    }

    /// Closes a write a previous writer left open (at the agent's start).
    pub fn recover_writes(&self) {
        for t in TableId::ALL {
            if self.seq_reg(t).load(Ordering::Relaxed) & 1 != 0 {
                self.write_end(t);
            }
        }
    }

    /// True if the entry's VALID bit is set.
    pub fn is_valid(&self, t: TableId, slot: u32) -> bool {
        self.atomic_u8(self.entry_off(t, slot)).load(Ordering::Acquire) & crate::layout::VALID != 0
    }

    /// Copies a valid entry out; false if the slot is not valid.
    ///
    /// The copy is a seqlock read against the table's SEQ register: taken
    /// while no write is open, and again if a write opened or closed
    /// during the copy. So a reader never sees a half-written entry, and
    /// never a miss while an entry is replaced in place. A table whose
    /// write stays open past [`READ_SPINS`] tries (its writer died
    /// mid-write) reads as a miss.
    pub fn read_entry(&self, t: TableId, slot: u32, out: &mut [u8]) -> bool {
        let off = self.entry_off(t, slot);
        let size = self.desc(t).entry_size;
        let seq = self.seq_reg(t);
        let flags = self.atomic_u8(off);
        for _ in 0..READ_SPINS {
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let valid = flags.load(Ordering::Relaxed) & crate::layout::VALID != 0;
            if valid {
                self.read(off, &mut out[..size]);
            }
            std::sync::atomic::fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == s1 {
                return valid;
            }
        }
        false
    }

    /// Counter record `i` (0..4) of a slot, if the table has counters.
    pub fn counter(&self, t: TableId, slot: u32, i: usize) -> Option<&AtomicU64> {
        assert!(i < 4);
        self.counters_off(t, slot).map(|off| self.atomic_u64(off + i * 8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(board: &str) -> Layout {
        Layout { board: board.into(), capacity: [4; TableId::COUNT], ecmp_members: 4 }
    }

    #[test]
    fn create_formats_then_warm_starts() {
        let dir = std::env::temp_dir().join(format!("dpu-hw-region-{}", std::process::id()));
        let l = layout("unit");
        std::fs::remove_file(&dir).ok();
        let (r, warm) = Region::create(&dir, &l, false).expect("create");
        assert!(!warm);
        r.write(r.entry_off(TableId::Fdb, 2), &[1, 9, 9]);
        drop(r);
        let (r, warm) = Region::create(&dir, &l, false).expect("reopen");
        assert!(warm, "same layout keeps the contents");
        assert!(r.is_valid(TableId::Fdb, 2));
        drop(r);
        let r = Region::open(&dir).expect("open");
        assert_eq!(r.board(), "unit");
        assert!(r.is_valid(TableId::Fdb, 2));
        drop(r);
        let e = Region::create(&dir, &layout("other"), false).err().expect("another board's region");
        assert!(e.to_string().contains("not erasing"), "{e}");
        let (r, warm) = Region::create(&dir, &layout("other"), true).expect("--cold formats");
        assert!(!warm);
        assert!(!r.is_valid(TableId::Fdb, 2));
        std::fs::remove_file(&dir).ok();
    }

    #[test]
    fn a_device_is_never_resized_and_formatted_only_when_blank() {
        let p = std::env::temp_dir().join(format!("dpu-hw-device-{}", std::process::id()));
        let l = layout("dev");
        let total = l.tables().1;
        // A blank device larger than the layout: formatted in place, same size.
        std::fs::write(&p, vec![0u8; total + 8192]).expect("write");
        let (r, warm) = Region::create(&p, &l, false).expect("blank device");
        assert!(!warm);
        assert_eq!(r.len(), total);
        r.write(r.entry_off(TableId::Fdb, 1), &[1, 7]);
        drop(r);
        assert_eq!(std::fs::metadata(&p).expect("meta").len(), (total + 8192) as u64);
        let (r, warm) = Region::create(&p, &l, false).expect("warm");
        assert!(warm && r.is_valid(TableId::Fdb, 1));
        drop(r);
        let r = Region::open(&p).expect("the reader maps the whole device");
        assert_eq!(r.board(), "dev");
        drop(r);
        // Garbage is refused and left alone.
        std::fs::write(&p, vec![0x5au8; total]).expect("write");
        let e = Region::create(&p, &l, false).err().expect("garbage");
        assert!(e.to_string().contains("neither blank"), "{e}");
        assert!(std::fs::read(&p).expect("read").iter().all(|&b| b == 0x5a));
        // Too small: refused, not grown, unless formatting a plain file.
        std::fs::write(&p, vec![0u8; total - 64]).expect("write");
        let e = Region::create(&p, &l, false).err().expect("small");
        assert!(e.to_string().contains("never resized"), "{e}");
        assert_eq!(std::fs::metadata(&p).expect("meta").len(), (total - 64) as u64);
        let (_, warm) = Region::create(&p, &l, true).expect("--cold on a plain file");
        assert!(!warm);
        assert_eq!(std::fs::metadata(&p).expect("meta").len(), total as u64);
        // An empty file (a start that died before sizing it) is sized.
        std::fs::write(&p, []).expect("write");
        let (_, warm) = Region::create(&p, &l, false).expect("empty file");
        assert!(!warm);
        assert_eq!(std::fs::metadata(&p).expect("meta").len(), total as u64);
        std::fs::remove_file(&p).ok();
    }

    #[test]
    fn open_rejects_garbage() {
        let p = std::env::temp_dir().join(format!("dpu-hw-garbage-{}", std::process::id()));
        std::fs::write(&p, vec![0xa5u8; 8192]).expect("write");
        assert!(Region::open(&p).is_err());
        // A valid header whose table points past the end.
        let l = layout("x");
        std::fs::remove_file(&p).ok();
        let (r, _) = Region::create(&p, &l, false).expect("create");
        r.write(DESC_OFFSET + 16, &(1u64 << 40).to_le_bytes());
        drop(r);
        let e = Region::open(&p).err().expect("must fail");
        assert!(e.to_string().contains("outside"), "{e}");
        std::fs::remove_file(&p).ok();
    }
}
