//! The event socket read through a BPF ring buffer (bpf/netlink/events.bpf.c).
//!
//! A socket filter on the event socket copies each notification, as the
//! kernel wrote it, into a ring buffer that host-bridge maps, and drops the
//! skb. What the mirror reads is the same message bytes as from the socket,
//! in the same order (the filter runs where the kernel would queue the skb),
//! but without an skb queued and freed, a copy to user space and a share of
//! a system call per event: the kernel's part of host-bridge's CPU per route
//! (`bench-mirror.sh ... floor`) was most of what was left of it.
//!
//! The consumer is written here rather than through libbpf's
//! `ring_buffer__poll`: that one hands each record to a callback that owns
//! its state for the ring's lifetime, while the mirror's loop reads records
//! under its own lock hold, a bounded number at a time. The layout is the
//! kernel's (kernel/bpf/ringbuf.c): a consumer page host-bridge writes, a
//! producer page and the data pages mapped twice in a row, so that a record
//! that wraps reads as one slice; each record is an 8-byte header (length
//! with BUSY and DISCARD bits, page offset) and its bytes, 8-aligned.

use super::socket::NlSocket;
use libbpf_rs::{MapCore, Object, ObjectBuilder};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/events.bpf.o"));

/// bpf/netlink/events.h: NL_EVENT_MAX, NL_LOSS_SLOTS, struct
/// nl_event_hdr (the kernel's timestamp and the message's length, before
/// each message; the record is of a size class, longer than both).
pub const EVENT_MAX: usize = 16384;
const EVENT_HDR: usize = 16;
const LOSS_SLOTS: usize = 2;
const RINGBUF_BUSY_BIT: u32 = 1 << 31;
const RINGBUF_DISCARD_BIT: u32 = 1 << 30;
const RINGBUF_HDR_SZ: u64 = 8;

/// A shared mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, offset: usize, write: bool) -> Result<Mapping, String> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let prot = if write { ProtFlags::PROT_READ | ProtFlags::PROT_WRITE } else { ProtFlags::PROT_READ };
        let size = NonZeroUsize::new(len).ok_or("an empty mapping")?;
        // SAFETY: a fresh mapping chosen by the kernel: nothing else is
        // at that address; it lives until this Mapping drops.
        let ptr = unsafe { mmap(None, size, prot, MapFlags::MAP_SHARED, fd, offset as i64) }
            .map_err(|e| format!("mapping the event ring: {e}"))?;
        Ok(Mapping { ptr: ptr.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped by Mapping::new with this length; no reference
        // into it outlives the EventRing that owns it.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
    }
}

/// The ring attached to one event socket.
pub struct EventRing {
    consumer: Mapping,
    data: Mapping,
    loss: Mapping,
    mask: u64,
    page: usize,
    /// The ring map's fd, for `poll` (readable while records wait).
    fd: OwnedFd,
    /// Records of the last drain that were cut (longer than
    /// [`EVENT_MAX`]): handed over empty, never parsed from cut bytes.
    pub truncated: usize,
    /// Records that were not ones the filter writes (a length past the
    /// mapping): the ring was skipped to its end there. Counted since
    /// attach, in [`EventRing::lost`].
    corrupt: u64,
    /// Records before this position are freed unread ([`EventRing::discard`]).
    skip_until: u64,
    /// Keeps the program and maps loaded.
    _object: Object,
}

// SAFETY: the mappings are plain shared memory; the ring is used by one
// thread at a time (&mut self for every read of records).
unsafe impl Send for EventRing {}

/// The ring's size: a power of two (the kernel's rule), at least 128 KiB:
/// a multiple of any page size up to 64 KiB, and room for four records of
/// the largest size class, so that no message is too long for the ring.
pub fn ring_size(bytes: usize) -> usize {
    bytes.max(4 * (EVENT_HDR + EVENT_MAX + 8)).next_power_of_two()
}

impl EventRing {
    /// Loads the filter with a ring of about `bytes` and attaches it to
    /// `sock`: from then on the socket gets nothing and the ring every
    /// notification. Attach before joining the groups, so that no event
    /// is queued on the socket before the ring takes over.
    pub fn attach(sock: &NlSocket, bytes: usize) -> Result<EventRing, String> {
        let size = ring_size(bytes);
        let mut open = ObjectBuilder::default()
            .open_memory(OBJECT)
            .map_err(|e| format!("opening the event filter: {e}"))?;
        for mut m in open.maps_mut() {
            if m.name() == "events" {
                let n =
                    u32::try_from(size).map_err(|_| format!("an event ring of {size} bytes is too large"))?;
                m.set_max_entries(n).map_err(|e| format!("event ring size: {e}"))?;
            }
        }
        let object = open.load().map_err(|e| format!("loading the event filter: {e}"))?;
        let map_fd = |name: &str| -> Result<OwnedFd, String> {
            let m = object.maps().find(|m| m.name() == name).ok_or(format!("no map {name}"))?;
            m.as_fd().try_clone_to_owned().map_err(|e| e.to_string())
        };
        let (fd, loss_fd) = (map_fd("events")?, map_fd("loss")?);
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => 4096,
        };
        let consumer = Mapping::new(fd.as_fd(), page, 0, true)?;
        // The producer page, then the data twice.
        let data = Mapping::new(fd.as_fd(), page + 2 * size, page, false)?;
        let loss = Mapping::new(loss_fd.as_fd(), page, 0, false)?;
        // Attached last: an error before leaves the socket as it was, to
        // be read itself.
        let prog = object.progs().find(|p| p.name() == "nl_events").ok_or("no program nl_events")?;
        sock.set_int(nix::libc::SOL_SOCKET, nix::libc::SO_ATTACH_BPF, prog.as_fd().as_raw_fd())
            .map_err(|e| format!("attaching the event filter: {e}"))?;
        Ok(EventRing {
            consumer,
            data,
            loss,
            mask: size as u64 - 1,
            page,
            fd,
            truncated: 0,
            corrupt: 0,
            skip_until: 0,
            _object: object,
        })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer page starts with the 8-aligned u64
        // consumer_pos; only this thread writes it, the kernel reads it.
        unsafe { &*(self.consumer.ptr.as_ptr() as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: the producer page starts with the 8-aligned u64
        // producer_pos, which the kernel writes.
        unsafe { &*(self.data.ptr.as_ptr() as *const AtomicU64) }
    }

    /// Whether records wait.
    pub fn ready(&self) -> bool {
        self.produced() != self.consumer_pos().load(Ordering::Relaxed)
    }

    /// Where the kernel has reserved up to: [`EventRing::drain`] reads
    /// no further. Every record before it was made after the kernel's
    /// change it tells of, so a time taken after this call is no earlier
    /// than any of their events (what `Mirror::set_read_time` needs).
    pub fn produced(&self) -> u64 {
        self.producer_pos().load(Ordering::Acquire)
    }

    /// Hands up to `max` records before `end` ([`EventRing::produced`]) to
    /// `f`, in order, then frees their room; returns how many were read.
    /// Each comes as the kernel's CLOCK_MONOTONIC time of the notification
    /// and its bytes. It stops early at a record the kernel has not
    /// committed yet. A cut record comes as an empty slice and is counted
    /// in [`EventRing::truncated`].
    pub fn drain(&mut self, end: u64, max: usize, mut f: impl FnMut(u64, &[u8])) -> usize {
        self.truncated = 0;
        let start = self.consumer_pos().load(Ordering::Relaxed);
        let mut cons = start;
        let mut n = 0;
        while n < max && cons < end {
            let at = self.page + (cons & self.mask) as usize;
            // SAFETY: `at` is inside the first copy of the data pages,
            // 8-aligned (records are); the header's length word is written
            // by the kernel with release semantics at commit.
            let word = unsafe { &*(self.data.ptr.as_ptr().add(at) as *const AtomicU32) };
            let len = word.load(Ordering::Acquire);
            if len & RINGBUF_BUSY_BIT != 0 {
                break; // reserved, not committed yet
            }
            let body = (len & !(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT)) as usize;
            if len & RINGBUF_DISCARD_BIT == 0 {
                let off = at + RINGBUF_HDR_SZ as usize;
                if off + body > self.data.len || body > EVENT_HDR + EVENT_MAX {
                    // Not a record the filter writes: never read past the
                    // mapping, skip to the end, and let the caller re-dump.
                    self.corrupt += 1;
                    cons = self.produced();
                    break;
                }
                if cons < self.skip_until {
                    cons += (body as u64 + RINGBUF_HDR_SZ + 7) & !7;
                    n += 1;
                    continue;
                }
                // SAFETY: off + body is inside the mapping (the data pages
                // are mapped twice, so a record that wraps is contiguous);
                // the kernel does not touch a committed record before the
                // consumer position passes it.
                let rec = unsafe { std::slice::from_raw_parts(self.data.ptr.as_ptr().add(off), body) };
                let (ts, msg) = match rec.split_first_chunk::<EVENT_HDR>() {
                    Some((h, rest)) => {
                        let [t0, t1, t2, t3, t4, t5, t6, t7, l0, l1, l2, l3, ..] = *h;
                        let len = u32::from_ne_bytes([l0, l1, l2, l3]) as usize;
                        (u64::from_ne_bytes([t0, t1, t2, t3, t4, t5, t6, t7]), rest.get(..len).unwrap_or(&[]))
                    }
                    None => (0, &[][..]),
                };
                if cut(msg) {
                    self.truncated += 1;
                    f(ts, &[]);
                } else {
                    f(ts, msg);
                }
            }
            cons += (body as u64 + RINGBUF_HDR_SZ + 7) & !7;
            n += 1;
        }
        if cons != start {
            self.consumer_pos().store(cons, Ordering::Release);
        }
        n
    }

    /// Frees everything reserved so far, unread: after a loss, what the
    /// ring holds is older than what was lost, and the re-dump that
    /// follows has it. The records go through [`EventRing::drain`]
    /// without being handed over: the consumer position never passes a
    /// record the kernel has not committed yet.
    pub fn discard(&mut self) {
        self.skip_until = self.produced();
        while self.drain(self.skip_until, usize::MAX, |_, _| {}) > 0 {}
    }

    /// Events lost since the ring was attached: the ring was full, a
    /// notification could not be read, or a record was not the filter's.
    pub fn lost(&self) -> u64 {
        self.corrupt
            + (0..LOSS_SLOTS)
                .map(|i| {
                    // SAFETY: the array's values are u64s, 8-aligned from the
                    // start of the mapping; the kernel adds to them atomically.
                    unsafe { &*(self.loss.ptr.as_ptr().add(i * 8) as *const AtomicU64) }
                        .load(Ordering::Relaxed)
                })
                .sum::<u64>()
    }
}

impl AsFd for EventRing {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A record the filter cut to its header: the message says it is longer.
fn cut(rec: &[u8]) -> bool {
    match rec {
        [a, b, c, d, ..] => u32::from_ne_bytes([*a, *b, *c, *d]) as usize > rec.len(),
        _ => true,
    }
}
