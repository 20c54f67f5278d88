//! The BPF FIB offload firmware (bpf/firmware/fib_fw.bpf.c): the kernel's
//! route offload flags from the DPU's real answers.
//!
//! ```text
//!  ip route add ─▶ FIB notifier ─▶ netdevsim fib.c ─▶ route_event (BPF) ─ring buffer─▶ fib_fw::run
//!                                  (no flag yet)                                          │ Mirror::fib_asked
//!  netlink ─▶ mirror ─▶ agent ─▶ Results (held / refused) ─▶ Mirror::fib_dirty ──────────┤
//!                                                                                          ▼
//!  ip route: rt_offload / rt_offload_failed ◀── bpf_nsim_fib_hw_flags_set ◀── set_flags (syscall prog)
//! ```
//!
//! Nexthop objects go the same way: `nexthop_event` reports each one
//! netdevsim takes (and each resilient bucket move), and `set_nh_flags`
//! (`bpf_nsim_nexthop_hw_flags_set`) gives `ip nexthop` the `offload` flag
//! for those the DPU holds. One the DPU refused carries no flag: nexthop
//! objects have no offload_failed flag, and the routes over it get theirs.
//!
//! One struct_ops per configured netdevsim device (`--fib-firmware IDS`),
//! attached through a BPF link for the life of host-bridge: when it exits,
//! netdevsim flags every route `trap` again, as it does without firmware.
//! The copies share the first's ring buffer and counters.
//!
//! A route's flags follow the DPU's answer for the route as the mirror has
//! it: offload once the DPU holds it, offload_failed once it refused it
//! (TableFull, Unsupported, ...), offload again when a retry goes through.
//! They go to the kernel when the answer changes, and whenever netdevsim
//! takes the route again (a replace, another metric taking over the prefix,
//! the replay at attach), in batches of up to [`BATCH`] routes per run of
//! the syscall program. The kernel applies a flag only to the route
//! netdevsim holds with that table, prefix and metric.

use crate::firmware::{read, run_batch, transient, transient_run};
use crate::kernel::Shared;
use crate::mirror::{HeldNexthop, HeldRoute, HeldShape};
use dpu_wire::{Ip, Prefix, RouteKey};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, ObjectBuilder, RingBufferBuilder};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::mem::size_of;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The compiled firmware (host-bridge's build script runs clang).
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fib_fw.bpf.o"));

/// Offset of `dev_id` in `struct nsim_fib_ops`: two function pointers.
const DEV_ID_OFFSET: usize = 16;
/// Routes per run of the set_flags program (`FIB_FW_BATCH`).
pub const BATCH: usize = 1024;
/// Nexthop objects per run of set_nh_flags (`FIB_FW_NH_BATCH`).
pub const NH_BATCH: usize = 1024;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const FIB_EVENT_ENTRY_DEL: u32 = 3;
// enum nexthop_event_type and enum nh_notifier_info_type
const NEXTHOP_EVENT_DEL: u32 = 0;
const NH_TYPE_SINGLE: u32 = 0;
const NH_TYPE_GRP: u32 = 1;
const NH_TYPE_RES_TABLE: u32 = 2;

/// `struct bpf_nsim_fib_route` (the kernel series, patch 4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawRoute {
    /// Network byte order; IPv4 in the first four bytes.
    pub dst: [u8; 16],
    pub tb_id: u32,
    pub metric: u32,
    pub nhs: u32,
    pub nh_id: u32,
    pub event: u32,
    pub family: u8,
    pub dst_len: u8,
    pub dscp: u8,
    pub rtn_type: u8,
}

/// `struct fib_fw_event` (bpf/firmware/fib_fw.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEvent {
    pub rt: RawRoute,
    pub dev_id: u32,
    pub pad: u32,
}

/// `struct bpf_nsim_nexthop` (the kernel series, patch 8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawNexthop {
    pub gw: [u8; 16],
    pub id: u32,
    pub event: u32,
    pub nh_type: u32,
    pub nhs: u32,
    pub ifindex: u32,
    pub bucket: u32,
    pub bucket_nh_id: u32,
    pub gw_family: u8,
    pub blackhole: u8,
    pub fdb: u8,
    pub pad: u8,
}

/// `struct fib_fw_nh_event`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawNhEvent {
    pub nh: RawNexthop,
    pub dev_id: u32,
    pub pad: u32,
}

/// `struct fib_fw_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FibFwState {
    pub routes: u64,
    pub deletes: u64,
    pub nexthops: u64,
    pub nexthop_deletes: u64,
    pub lost_events: u64,
}

/// `struct bpf_nsim_nexthop_hw_flags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawNhFlags {
    pub id: u32,
    pub flags: u8,
    pub pad: [u8; 3],
}

/// `struct bpf_nsim_fib_hw_flags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawFlags {
    pub dst: [u8; 16],
    pub tb_id: u32,
    pub metric: u32,
    pub family: u8,
    pub dst_len: u8,
    pub flags: u8,
    pub pad: u8,
}

const _: () = assert!(size_of::<RawRoute>() == 40);
const _: () = assert!(size_of::<RawEvent>() == 48);
const _: () = assert!(size_of::<RawNexthop>() == 48);
const _: () = assert!(size_of::<RawNhEvent>() == 56);
const _: () = assert!(size_of::<FibFwState>() == 40);
const _: () = assert!(size_of::<RawFlags>() == 28);
const _: () = assert!(size_of::<RawNhFlags>() == 8);
/// `struct fib_fw_batch`: the program's context, always passed whole (the
/// verifier sized the kfunc's access by it).
const CTX_BYTES: usize = 8 + BATCH * size_of::<RawFlags>();
/// `struct fib_fw_nh_batch`.
const NH_CTX_BYTES: usize = 8 + NH_BATCH * size_of::<RawNhFlags>();

/// What status shows of the FIB firmware.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FibFwStatus {
    pub devices: Vec<u32>,
    pub firmware: FibFwState,
    /// Route events that led to flags being sent again.
    pub asks: u64,
    /// Route events the mirror could not answer yet (the DPU's result, or
    /// the netlink message, was still on the way).
    pub unanswered: u64,
    /// Routes whose flags were handed to the kernel, and how many it
    /// applied (netdevsim held that route with that metric).
    pub flags_sent: u64,
    pub flags_applied: u64,
    /// Nexthop events that led to flags being sent again, those the
    /// mirror could not answer yet, and nexthop flags sent and applied.
    pub nh_asks: u64,
    pub nh_unanswered: u64,
    pub nh_flags_sent: u64,
    pub nh_flags_applied: u64,
    /// Runs of the set_flags program, and those that failed.
    pub runs: u64,
    pub run_errors: u64,
    /// Full resends after lost events.
    pub resends: u64,
}

/// The route an event names, as the mirror keys it; None for what the
/// mirror cannot hold (an unknown family, a bad prefix length).
pub fn held_route(r: &RawRoute) -> Option<HeldRoute> {
    let addr = match r.family {
        AF_INET if r.dst_len <= 32 => Ip::V4([r.dst[0], r.dst[1], r.dst[2], r.dst[3]]),
        AF_INET6 if r.dst_len <= 128 => Ip::V6(r.dst),
        _ => return None,
    };
    let dst = Prefix::new(addr, r.dst_len);
    // The mirror keys a link-local IPv6 route by its device too, which the
    // event does not carry: such a route gets no flag from the DPU.
    if dst.is_link_local() {
        return None;
    }
    Some(HeldRoute {
        key: RouteKey { table: r.tb_id, dst, metric: r.metric, ifindex: 0 },
        rtn_type: r.rtn_type,
        nhs: r.nhs,
        nh_id: r.nh_id,
    })
}

/// The nexthop object an event names; None for a delete or a type the
/// mirror does not know.
pub fn held_nexthop(n: &RawNexthop) -> Option<HeldNexthop> {
    let shape = match n.nh_type {
        _ if n.event == NEXTHOP_EVENT_DEL => return None,
        NH_TYPE_SINGLE => HeldShape::Single { ifindex: n.ifindex, blackhole: n.blackhole != 0 },
        NH_TYPE_GRP => HeldShape::Group(n.nhs),
        NH_TYPE_RES_TABLE => HeldShape::Resilient(n.nhs),
        _ => return None,
    };
    Some(HeldNexthop { id: n.id, shape, fdb: n.fdb != 0 })
}

/// The kernel's form of a route's flags.
pub fn raw_flags(k: &RouteKey, flags: u8) -> RawFlags {
    let mut f =
        RawFlags { tb_id: k.table, metric: k.metric, dst_len: k.dst.len, flags, ..Default::default() };
    match k.dst.addr {
        Ip::V4(a) => {
            f.family = AF_INET;
            f.dst[..4].copy_from_slice(&a);
        }
        Ip::V6(a) => {
            f.family = AF_INET6;
            f.dst = a;
        }
    }
    f
}

/// Loads the firmware for netdevsim devices `dev_ids`, attaches it, then
/// runs on a thread of its own. Returns once every device has it, or with
/// the reason one has not.
pub fn start(shared: Arc<Shared>, dev_ids: Vec<u32>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fib-firmware".into())
        .spawn(move || run(shared, dev_ids, tx))
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|_| "FIB firmware thread died while loading".to_string())?
}

fn run(shared: Arc<Shared>, dev_ids: Vec<u32>, ready: mpsc::Sender<Result<(), String>>) {
    let mut objects = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    let mut first_maps: Option<HashMap<String, MapHandle>> = None;
    for &dev in &dev_ids {
        let loaded = (|| -> Result<(), String> {
            let mut open = ObjectBuilder::default()
                .open_memory(OBJECT)
                .map_err(|e| format!("opening the FIB firmware: {e}"))?;
            for mut m in open.maps_mut() {
                let name = m.name().to_string_lossy().to_string();
                if m.map_type() == libbpf_rs::MapType::StructOps {
                    let v = m.initial_value_mut().ok_or("struct_ops map without a value")?;
                    v.get_mut(DEV_ID_OFFSET..DEV_ID_OFFSET + 4)
                        .ok_or("struct_ops value too short")?
                        .copy_from_slice(&dev.to_ne_bytes());
                } else if name.ends_with(".rodata") {
                    // const volatile dev_id, the only read-only global.
                    let v = m.initial_value_mut().ok_or(".rodata without a value")?;
                    v.get_mut(..4).ok_or(".rodata too short")?.copy_from_slice(&dev.to_ne_bytes());
                } else if let Some(h) = first_maps.as_ref().and_then(|f| f.get(&name)) {
                    m.reuse_fd(h.as_fd()).map_err(|e| format!("sharing map {name}: {e}"))?;
                }
            }
            let mut obj = open.load().map_err(|e| {
                format!("loading the FIB firmware (a kernel without nsim_fib_ops? the verifier's log is above): {e}")
            })?;
            if first_maps.is_none() {
                let mut v = HashMap::new();
                for m in obj.maps() {
                    let name = m.name().to_string_lossy().to_string();
                    if name == "fib_events" || name == "fib_state" {
                        v.insert(name, MapHandle::try_from(&m).map_err(|e| e.to_string())?);
                    }
                }
                first_maps = Some(v);
            }
            for mut m in obj.maps_mut() {
                if m.map_type() != libbpf_rs::MapType::StructOps {
                    continue;
                }
                let link = m.attach_struct_ops().map_err(|e| {
                    format!("attaching to netdevsim device {dev}: {e} (no such device, or it has a FIB firmware already)")
                })?;
                links.push(link);
            }
            objects.push(obj);
            Ok(())
        })();
        if let Err(e) = loaded {
            let _ = ready.send(Err(e));
            return;
        }
        crate::log!("FIB firmware attached to netdevsim device {dev}: route flags follow the DPU");
    }
    let Some(mut maps) = first_maps else {
        let _ = ready.send(Err("no netdevsim device configured".into()));
        return;
    };
    let (Some(events), Some(state)) = (maps.remove("fib_events"), maps.remove("fib_state")) else {
        let _ = ready.send(Err("FIB firmware object lacks a map".into()));
        return;
    };
    let Some(obj) = objects.first_mut() else {
        let _ = ready.send(Err("no FIB firmware object".into()));
        return;
    };
    let (mut prog, mut nh_prog) = (None, None);
    for p in obj.progs_mut() {
        match p.name().to_str() {
            Some("set_flags") => prog = Some(p),
            Some("set_nh_flags") => nh_prog = Some(p),
            _ => {}
        }
    }
    let (Some(prog), Some(nh_prog)) = (prog, nh_prog) else {
        let _ = ready.send(Err("FIB firmware object lacks set_flags or set_nh_flags".into()));
        return;
    };
    shared.lock().track_fib_flags();
    *shared.fib() = Some(FibFwStatus { devices: dev_ids.clone(), ..Default::default() });
    let sh = shared.clone();
    let mut builder = RingBufferBuilder::new();
    let added = builder.add(&events, move |data: &[u8]| {
        on_event(&sh, data);
        0
    });
    let built = match added {
        Ok(_) => builder.build(),
        Err(e) => Err(e),
    };
    let rb = match built {
        Ok(rb) => rb,
        Err(e) => {
            let _ = ready.send(Err(format!("FIB firmware ring buffer: {e}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let read_state = || match state.lookup(&0u32.to_ne_bytes(), MapFlags::ANY) {
        Ok(Some(v)) => read::<FibFwState>(&v).unwrap_or_default(),
        _ => FibFwState::default(),
    };
    let mut lost = 0;
    let mut checked = Instant::now();
    let mut ctx = vec![0u8; CTX_BYTES];
    let mut nh_ctx = vec![0u8; NH_CTX_BYTES];
    loop {
        {
            // SAFETY: both descriptors outlive this borrow: the ring buffer
            // and the eventfd live as long as the loop.
            let rb_fd = unsafe { BorrowedFd::borrow_raw(rb.epoll_fd()) };
            let mut fds = [
                PollFd::new(rb_fd, PollFlags::POLLIN),
                PollFd::new(shared.fib_bell.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, PollTimeout::from(200u16));
        }
        let _ = shared.fib_bell.read();
        if let Err(e) = rb.consume() {
            crate::log!("FIB firmware ring buffer: {e}");
        }
        if checked.elapsed() > Duration::from_millis(500) {
            checked = Instant::now();
            let st = read_state();
            if st.lost_events != lost {
                lost = st.lost_events;
                crate::log!("FIB firmware events lost ({lost} in all): sending every route's flags again");
                shared.lock().fib_all_dirty();
                if let Some(s) = shared.fib().as_mut() {
                    s.resends += 1;
                }
            }
            if let Some(s) = shared.fib().as_mut() {
                s.firmware = st;
            }
        }
        flush(&shared, &dev_ids, &prog, &mut ctx);
        flush_nexthops(&shared, &dev_ids, &nh_prog, &mut nh_ctx);
    }
}

fn on_event(shared: &Shared, data: &[u8]) {
    // The two records differ in size (fib_fw.h).
    if data.len() == size_of::<RawNhEvent>() {
        if let Some(held) = read::<RawNhEvent>(data).and_then(|ev| held_nexthop(&ev.nh)) {
            let answered = shared.lock().nh_asked(&held);
            if let Some(s) = shared.fib().as_mut() {
                if answered {
                    s.nh_asks += 1;
                } else {
                    s.nh_unanswered += 1;
                }
            }
        }
        return;
    }
    let Some(ev) = read::<RawEvent>(data) else {
        crate::log!("FIB firmware: short event ({} bytes)", data.len());
        return;
    };
    if ev.rt.event == FIB_EVENT_ENTRY_DEL {
        return;
    }
    let Some(held) = held_route(&ev.rt) else { return };
    let answered = shared.lock().fib_asked(&held);
    if let Some(s) = shared.fib().as_mut() {
        if answered {
            s.asks += 1;
        } else {
            s.unanswered += 1;
        }
    }
}

/// Sends the flags of every dirty route to every device, in batches.
fn flush(shared: &Shared, dev_ids: &[u32], prog: &libbpf_rs::ProgramMut, ctx: &mut [u8]) {
    // The keys stay beside their flags: a transient failure puts them back.
    let (keys, todo): (Vec<RouteKey>, Vec<RawFlags>) = {
        let mut m = shared.lock();
        if m.fib_dirty.is_empty() {
            return;
        }
        let dirty: Vec<RouteKey> = m.fib_dirty.drain().collect();
        dirty.into_iter().filter_map(|k| m.fib_flags(&k).map(|f| (k, raw_flags(&k, f)))).unzip()
    };
    let (runs, errors, applied, retry) = send(dev_ids, prog, ctx, &todo, BATCH);
    if retry {
        shared.lock().fib_dirty.extend(keys);
    }
    if let Some(s) = shared.fib().as_mut() {
        s.flags_sent += todo.len() as u64;
        s.flags_applied += applied;
        s.runs += runs;
        s.run_errors += errors;
    }
}

/// Sends the flags of every dirty nexthop object to every device.
fn flush_nexthops(shared: &Shared, dev_ids: &[u32], prog: &libbpf_rs::ProgramMut, ctx: &mut [u8]) {
    let todo: Vec<RawNhFlags> = {
        let mut m = shared.lock();
        if m.nh_dirty.is_empty() {
            return;
        }
        let ids: Vec<u32> = m.nh_dirty.drain().collect();
        ids.iter()
            .filter_map(|&id| m.nh_flags(id).map(|flags| RawNhFlags { id, flags, pad: [0; 3] }))
            .collect()
    };
    let (runs, errors, applied, retry) = send(dev_ids, prog, ctx, &todo, NH_BATCH);
    if retry {
        shared.lock().nh_dirty.extend(todo.iter().map(|f| f.id));
    }
    if let Some(s) = shared.fib().as_mut() {
        s.nh_flags_sent += todo.len() as u64;
        s.nh_flags_applied += applied;
        s.runs += runs;
        s.run_errors += errors;
    }
}

/// Runs `prog` over `todo` in batches of `batch`, for every device.
/// Returns (runs, failed runs, entries the kernel applied, whether a
/// failure was transient: the caller then sends the batch again on its
/// next round).
fn send<T: Copy>(
    dev_ids: &[u32],
    prog: &libbpf_rs::ProgramMut,
    ctx: &mut [u8],
    todo: &[T],
    batch: usize,
) -> (u64, u64, u64, bool) {
    let (mut runs, mut errors, mut applied, mut retry) = (0u64, 0u64, 0u64, false);
    for &dev in dev_ids {
        for chunk in todo.chunks(batch) {
            let mut head = [0u8; 8];
            head[..4].copy_from_slice(&dev.to_ne_bytes());
            head[4..].copy_from_slice(&(chunk.len() as u32).to_ne_bytes());
            runs += 1;
            match run_batch(prog, ctx, head, chunk) {
                Ok(n) if n >= 0 => applied += n as u64,
                Ok(n) => {
                    errors += 1;
                    retry |= transient(-n);
                    if errors == 1 {
                        crate::log!(
                            "FIB firmware: {} on device {dev}: {}",
                            prog.name().to_string_lossy(),
                            std::io::Error::from_raw_os_error(-n)
                        );
                    }
                }
                Err(e) => {
                    errors += 1;
                    retry |= transient_run(&e);
                    if errors == 1 {
                        crate::log!("FIB firmware: running {}: {e}", prog.name().to_string_lossy());
                    }
                }
            }
        }
    }
    (runs, errors, applied, retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_mirror_routes_and_flags_name_kernel_routes() {
        let mut r = RawRoute {
            tb_id: 254,
            metric: 20,
            nhs: 1,
            family: AF_INET,
            dst_len: 24,
            rtn_type: 1,
            ..Default::default()
        };
        r.dst[..4].copy_from_slice(&[198, 51, 100, 0]);
        let h = held_route(&r).expect("an IPv4 route");
        assert_eq!(
            h.key,
            RouteKey { table: 254, dst: Prefix::new(Ip::V4([198, 51, 100, 0]), 24), metric: 20, ifindex: 0 }
        );
        let f = raw_flags(&h.key, 1);
        assert_eq!((f.family, f.dst_len, f.tb_id, f.metric, f.flags), (AF_INET, 24, 254, 20, 1));
        assert_eq!(&f.dst[..4], &[198, 51, 100, 0]);
        assert_eq!(&f.dst[4..], &[0; 12]);
        // What the mirror cannot key is dropped, not guessed at.
        r.dst_len = 33;
        assert!(held_route(&r).is_none());
        r.family = 7;
        assert!(held_route(&r).is_none());
        assert!(read::<RawEvent>(&[0u8; 47]).is_none());
        assert!(read::<RawEvent>(&[0u8; 48]).is_some());
    }

    #[test]
    fn nexthop_events_name_their_shape() {
        let mut n =
            RawNexthop { id: 7, event: 1, nh_type: NH_TYPE_SINGLE, nhs: 1, ifindex: 4, ..Default::default() };
        assert_eq!(
            held_nexthop(&n),
            Some(HeldNexthop {
                id: 7,
                shape: HeldShape::Single { ifindex: 4, blackhole: false },
                fdb: false
            })
        );
        n.nh_type = NH_TYPE_GRP;
        n.nhs = 3;
        assert_eq!(held_nexthop(&n).map(|h| h.shape), Some(HeldShape::Group(3)));
        n.nh_type = NH_TYPE_RES_TABLE;
        n.event = 3; // a bucket move
        assert_eq!(held_nexthop(&n).map(|h| h.shape), Some(HeldShape::Resilient(3)));
        n.event = NEXTHOP_EVENT_DEL;
        assert_eq!(held_nexthop(&n), None);
        n.event = 1;
        n.nh_type = 9;
        assert_eq!(held_nexthop(&n), None, "a type the mirror does not know");
    }

    #[test]
    fn the_object_is_embedded() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
    }
}
