//! The BPF flow offload firmware (bpf/firmware/flow_fw.bpf.c): loading,
//! attaching, its events, and the counters that go back into it.
//!
//! ```text
//!  tc filter add … skip_sw ─▶ netdevsim ─▶ flow_replace (BPF) ─ring buffer─▶ Firmware::run
//!                                             │ ENOSPC when "state".max_flows is reached     │
//!                                             ▼                                                ▼
//!  tc -s filter show ◀── flow_stats (BPF) ◀── "counters" map ◀── FwMaps::write_counters ◀── agent Stats
//! ```
//!
//! One struct_ops per configured netdevsim device (its `dev_id` is set in
//! the object before loading); every copy after the first reuses the
//! first's maps, so the devices share one flow count, one counter map and
//! one ring buffer. The struct_ops are attached through BPF links: they
//! detach when host-bridge exits, unless they are pinned.
//!
//! With a pin directory (`--firmware-pin DIR`, on bpffs) the links and the
//! maps are pinned under `DIR/fw-<hash of the object>/`, so the firmware
//! outlives host-bridge: while host-bridge is down the kernel keeps calling
//! it (stats from the last counters written; new rules accepted while its
//! ring buffer has room, then refused with ENOBUFS), and a restarted
//! host-bridge adopts it, reads its flows map into the mirror before the
//! agent's snapshot, and reads the events that waited in the ring buffer.
//! Without that, rules already `in_hw` would stay in tc while the DPU lost
//! them at the next snapshot. `host-bridge detach-firmware` unpins.
//!
//! A firmware flow is a rule on one port (a rule on a tc block shared by
//! several ports is one flow per port, each on its port on the DPU). It
//! reaches the mirror under the firmware's id for it, with bit 63 set; the
//! mirror's tc-filter flows have bit 63 clear (see `netlink::tc`). The
//! kernel's cookie of each flow is kept here, for the answers to tc.

use crate::kernel::Shared;
use dpu_wire::*;
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, ObjectBuilder, ProgramInput, RingBufferBuilder};
use nix::errno::Errno::EBUSY;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::collections::{HashMap, HashSet};
use std::mem::size_of;
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The compiled firmware (host-bridge's build script runs clang).
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/flow_fw.bpf.o"));

/// Environment variable naming another firmware object to load instead
/// (a custom build; it must keep the maps and the event layout).
pub const OBJECT_ENV: &str = "HOST_BRIDGE_FIRMWARE";

/// Offset of `dev_id` in `struct nsim_flow_ops`: three function pointers;
/// `answer_timeout_ms` follows it.
const DEV_ID_OFFSET: usize = 24;
const ANSWER_TIMEOUT_OFFSET: usize = DEV_ID_OFFSET + 4;
/// How long tc waits for the DPU's answer in [`Answer::Dpu`] mode.
pub const ANSWER_TIMEOUT_MS: u32 = 2000;
/// Answers per run of the answer program (`FW_ANSWER_BATCH`).
const ANSWER_BATCH: usize = 256;
const FW_EV_REPLACE: u32 = 1;
const FW_EV_DESTROY: u32 = 2;

/// `struct bpf_flow_offload_action` (the kernel series, patch 2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawAction {
    pub id: u32,
    pub hw_stats: u32,
    pub ifindex: u32,
    pub chain_index: u32,
    pub vlan_id: u16,
    /// Network byte order.
    pub vlan_proto: u16,
    pub vlan_prio: u8,
    pub pad: [u8; 3],
}

/// `struct bpf_flow_offload_rule`; packet fields in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawRule {
    pub cookie: u64,
    pub used_keys: u64,
    pub undecoded_keys: u64,
    pub chain_index: u32,
    pub prio: u32,
    pub protocol: u16,
    pub n_proto: u16,
    pub n_proto_mask: u16,
    pub ip_proto: u8,
    pub ip_proto_mask: u8,
    pub ctrl_flags: u32,
    pub ctrl_flags_mask: u32,
    pub dst_mac: [u8; 6],
    pub dst_mac_mask: [u8; 6],
    pub src_mac: [u8; 6],
    pub src_mac_mask: [u8; 6],
    pub vlan_id: u16,
    pub vlan_id_mask: u16,
    pub vlan_tpid: u16,
    pub vlan_tpid_mask: u16,
    pub vlan_prio: u8,
    pub vlan_prio_mask: u8,
    pub vlan_dei: u8,
    pub vlan_dei_mask: u8,
    pub ip_version: u8,
    pub ip_tos: u8,
    pub ip_tos_mask: u8,
    pub ip_ttl: u8,
    pub ip_ttl_mask: u8,
    pub icmp_type: u8,
    pub icmp_type_mask: u8,
    pub icmp_code: u8,
    pub icmp_code_mask: u8,
    pub pad0: [u8; 3],
    pub src_ip: [u8; 16],
    pub src_ip_mask: [u8; 16],
    pub dst_ip: [u8; 16],
    pub dst_ip_mask: [u8; 16],
    pub src_port: u16,
    pub src_port_mask: u16,
    pub dst_port: u16,
    pub dst_port_mask: u16,
    pub tcp_flags: u16,
    pub tcp_flags_mask: u16,
    pub num_actions: u32,
    pub actions: [RawAction; 8],
}

/// `struct fw_event` (bpf/firmware/flow_fw.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEvent {
    pub kind: u32,
    pub ifindex: u32,
    pub kernel_cookie: u64,
    /// `rule.cookie` is the flow's id.
    pub rule: RawRule,
}

/// `struct fw_state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FwState {
    pub flows: u32,
    pub pad: u32,
    pub replaced: u64,
    pub destroyed: u64,
    pub stats_calls: u64,
    pub refused_full: u64,
    pub refused_unsupported: u64,
    pub lost_events: u64,
    pub next_id: u64,
}

/// When tc hears that a rule is in hardware (`--tc-answer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Answer {
    /// Once the DPU answered: `flow_replace` returns -EINPROGRESS and tc
    /// waits (up to [`ANSWER_TIMEOUT_MS`]) for the DPU's result, which it
    /// reports (`in_hw`, or the DPU's refusal as the error).
    Dpu,
    /// Once the rule is queued to host-bridge; a later refusal by the DPU
    /// is only in host-bridge's status.
    Now,
}

/// `struct fw_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FwConfig {
    mode: u32,
    pad: u32,
    alive_ns: u64,
}

/// `struct bpf_flow_offload_answer` (the kernel series, patch 6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawAnswer {
    pub cookie: u64,
    pub ifindex: u32,
    pub err: i32,
}

/// `struct fw_counters`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FwCounters {
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub last_hit_ns: u64,
}

/// `struct fw_flow`: the firmware's record of a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FwFlow {
    pub ifindex: u32,
    pub pad: u32,
    pub id: u64,
    pub kernel_cookie: u64,
    pub reported_packets: u64,
    pub reported_bytes: u64,
    pub reported_drops: u64,
    pub lastused: u64,
    pub rule: RawRule,
}

const _: () = assert!(size_of::<RawRule>() == 368);
const _: () = assert!(size_of::<RawEvent>() == 384);
const _: () = assert!(size_of::<FwState>() == 64);
const _: () = assert!(size_of::<FwFlow>() == 424);
const _: () = assert!(size_of::<FwConfig>() == 16);
const _: () = assert!(size_of::<RawAnswer>() == 16);

/// The errno tc gets for the DPU's answer to a rule.
pub fn answer_errno(status: Option<Status>) -> i32 {
    match status {
        None | Some(Status::Ok) => 0,
        Some(Status::TableFull) => -(nix::libc::ENOSPC),
        Some(Status::Unsupported) => -(nix::libc::EOPNOTSUPP),
        Some(Status::Invalid) => -(nix::libc::EINVAL),
        Some(Status::NotFound) => -(nix::libc::ENOENT),
        Some(Status::InUse) => -(nix::libc::EBUSY),
    }
}

/// Reads a plain-integer `repr(C)` struct from the front of `b`.
pub(crate) fn read<T: Copy + Default>(b: &[u8]) -> Option<T> {
    if b.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is a repr(C) struct of integers and byte arrays, valid for
    // every bit pattern, and b holds at least size_of::<T>() bytes.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) })
}

pub(crate) fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) struct of integers without padding.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

/// Runs a syscall program whose context is an 8-byte header followed by
/// `entries`, the whole of `ctx` passed (the verifier sized the kfunc's
/// access by it; what `entries` leave is zeroed). Returns the program's
/// return value.
pub(crate) fn run_batch<T: Copy>(
    prog: &libbpf_rs::ProgramMut,
    ctx: &mut [u8],
    head: [u8; 8],
    entries: &[T],
) -> libbpf_rs::Result<i32> {
    ctx.fill(0);
    ctx[..8].copy_from_slice(&head);
    for (i, e) in entries.iter().enumerate() {
        let at = 8 + i * size_of::<T>();
        ctx[at..at + size_of::<T>()].copy_from_slice(bytes_of(e));
    }
    let input = ProgramInput { context_in: Some(ctx), ..Default::default() };
    prog.test_run(input).map(|out| out.return_value as i32)
}

/// Whether a syscall program's failure may go through later: the kernel
/// ran short (ENOMEM, EAGAIN, EINTR, EBUSY), not a device gone (ENODEV), a
/// firmware detached (ENOENT) or a malformed batch (EINVAL), which a retry
/// repeats.
pub(crate) fn transient(errno: i32) -> bool {
    use nix::libc::{EAGAIN, EBUSY, EINTR, ENOMEM};
    matches!(errno, ENOMEM | EAGAIN | EINTR | EBUSY)
}

/// The same for a failed BPF_PROG_TEST_RUN.
pub(crate) fn transient_run(e: &libbpf_rs::Error) -> bool {
    use libbpf_rs::ErrorKind::{Interrupted, OutOfMemory, WouldBlock};
    matches!(e.kind(), Interrupted | OutOfMemory | WouldBlock)
}

// enum flow_action_id
const ACT_ACCEPT: u32 = 0;
const ACT_DROP: u32 = 1;
const ACT_GOTO: u32 = 3;
const ACT_REDIRECT: u32 = 4;
const ACT_MIRRED: u32 = 5;
const ACT_VLAN_PUSH: u32 = 8;
const ACT_VLAN_POP: u32 = 9;

/// The wire flow rule for a rule the firmware accepted. The firmware has
/// refused what the DPU cannot do; this checks again, since the kernel is
/// not trusted either.
pub fn flow_rule(ifindex: u32, r: &RawRule) -> Result<FlowRule, String> {
    let be = u16::from_be;
    if r.undecoded_keys != 0 || r.num_actions == 0 || r.num_actions > 8 {
        return Err(format!("keys {:#x} undecoded, {} actions", r.undecoded_keys, r.num_actions));
    }
    let mut m = FlowMatch::default();
    if r.n_proto_mask != 0 {
        m.eth_type = Some(be(r.n_proto));
    }
    if r.ip_proto_mask != 0 {
        m.ip_proto = Some(r.ip_proto);
    }
    if r.vlan_id_mask != 0 {
        m.vlan_id = Some(r.vlan_id);
    }
    let mac = |v: [u8; 6], k: [u8; 6]| (k != [0; 6]).then_some(Masked { value: Mac(v), mask: Mac(k) });
    m.src_mac = mac(r.src_mac, r.src_mac_mask);
    m.dst_mac = mac(r.dst_mac, r.dst_mac_mask);
    let ip = |v: [u8; 16], k: [u8; 16]| -> Option<Masked<Ip>> {
        if k == [0; 16] {
            return None;
        }
        Some(match r.ip_version {
            4 => Masked { value: Ip::V4([v[0], v[1], v[2], v[3]]), mask: Ip::V4([k[0], k[1], k[2], k[3]]) },
            _ => Masked { value: Ip::V6(v), mask: Ip::V6(k) },
        })
    };
    m.src_ip = ip(r.src_ip, r.src_ip_mask);
    m.dst_ip = ip(r.dst_ip, r.dst_ip_mask);
    let port = |v: u16, k: u16| (k != 0).then_some(Masked { value: be(v), mask: be(k) });
    m.src_port = port(r.src_port, r.src_port_mask);
    m.dst_port = port(r.dst_port, r.dst_port_mask);
    let mut actions = heapless::Vec::new();
    for a in &r.actions[..r.num_actions as usize] {
        let fa = match a.id {
            ACT_ACCEPT => FlowAction::Pass,
            ACT_DROP => FlowAction::Drop,
            ACT_GOTO => FlowAction::Goto(a.chain_index),
            ACT_REDIRECT => FlowAction::Redirect(a.ifindex),
            ACT_MIRRED => FlowAction::Mirror(a.ifindex),
            ACT_VLAN_PUSH => FlowAction::VlanPush { vid: a.vlan_id, tpid: be(a.vlan_proto) },
            ACT_VLAN_POP => FlowAction::VlanPop,
            id => return Err(format!("flow action {id}")),
        };
        let _ = actions.push(fa);
    }
    Ok(FlowRule { cookie: r.cookie, ifindex, chain: r.chain_index, prio: r.prio as u16, matches: m, actions })
}

/// The firmware's maps that other threads write: Send and Sync handles.
pub struct FwMaps {
    state: MapHandle,
    capacity: MapHandle,
    counters: MapHandle,
    flows: MapHandle,
    /// The DPU's answers waiting for the firmware thread, which runs the
    /// answer program; rung with `bell`.
    answers: Mutex<Vec<RawAnswer>>,
    bell: EventFd,
    pub mode: Answer,
    /// The kernel's cookie of each firmware flow, by flow id.
    kernel_cookies: Mutex<HashMap<u64, u64>>,
}

impl FwMaps {
    /// How many flows the firmware can track: its flows map's size
    /// (`FW_MAX_FLOWS`). The capacity published to it never exceeds it.
    pub fn max_flows(&self) -> u32 {
        self.flows.max_entries()
    }

    /// The capacity to publish: what the DPU's flow table has left for
    /// the firmware, clamped to what the firmware can track; past that, a
    /// rule would be in_hw and on the DPU with no record for its stats and
    /// its destroy.
    pub fn capacity_for(&self, dpu_free: u32) -> u32 {
        clamp_capacity(dpu_free, self.max_flows())
    }

    /// Hands the DPU's answers for firmware flows to the kernel (through
    /// the firmware thread): tc requests waiting for them end.
    /// `a` names flows by their id: the kernel's cookie replaces it here.
    pub fn answer(&self, a: Vec<RawAnswer>) {
        if a.is_empty() || self.mode != Answer::Dpu {
            return;
        }
        let mut out = Vec::with_capacity(a.len());
        {
            let kc = self.kernel_cookies();
            for x in a {
                if let Some(&cookie) = kc.get(&x.cookie) {
                    out.push(RawAnswer { cookie, ..x });
                }
            }
        }
        if out.is_empty() {
            return;
        }
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).extend(out);
        let _ = self.bell.write(1);
    }

    fn kernel_cookies(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.kernel_cookies.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> FwState {
        match self.state.lookup(&0u32.to_ne_bytes(), MapFlags::ANY) {
            Ok(Some(v)) => read(&v).unwrap_or_default(),
            _ => FwState::default(),
        }
    }

    /// Publishes how many flows the DPU can take in all.
    pub fn set_capacity(&self, max_flows: u32) {
        let _ = self.capacity.update(&0u32.to_ne_bytes(), &max_flows.to_ne_bytes(), MapFlags::ANY);
    }

    /// Writes the DPU's absolute counters of firmware flows; the program
    /// turns them into deltas when tc asks.
    ///
    /// Only for flows the firmware still holds, as the mirror knows them
    /// from its events: its DESTROY deletes the counters entry, and one
    /// written after it would stay until the map filled. The mirror lock
    /// is held across the check and the write, and the destroy event's
    /// handler deletes the entry again under that lock, so a write racing
    /// a destroy is undone. All entries go in one batch update.
    pub fn write_counters(&self, shared: &Shared, entries: &[StatEntry]) {
        let now = monotonic_ns();
        let mut keys = Vec::with_capacity(entries.len() * 8);
        let mut values = Vec::with_capacity(entries.len() * size_of::<FwCounters>());
        let m = shared.lock();
        for e in entries {
            let StatKey::Flow(cookie) = e.key else { continue };
            if cookie >> 63 == 0 || !m.contains(&Key::Flow(cookie)) {
                continue;
            }
            let last_hit_ns = match e.idle_ms {
                u32::MAX => 0,
                ms => now.saturating_sub(ms as u64 * 1_000_000).max(1),
            };
            let c = FwCounters { packets: e.packets, bytes: e.bytes, drops: 0, last_hit_ns };
            keys.extend_from_slice(&cookie.to_ne_bytes());
            values.extend_from_slice(bytes_of(&c));
        }
        let n = (keys.len() / 8) as u32;
        if n > 0 && self.counters.update_batch(&keys, &values, n, MapFlags::ANY, MapFlags::ANY).is_err() {
            // A kernel without batch updates for hash maps: one by one.
            for (k, v) in keys.chunks_exact(8).zip(values.chunks_exact(size_of::<FwCounters>())) {
                let _ = self.counters.update(k, v, MapFlags::ANY);
            }
        }
        drop(m);
    }

    /// Drops a flow's counters entry (after its DESTROY, see
    /// [`FwMaps::write_counters`]).
    fn forget(&self, cookie: u64) {
        let _ = self.counters.delete(&cookie.to_ne_bytes());
    }

    /// Every flow the firmware holds now, from its flows map, with the
    /// kernel's cookies.
    pub fn flows(&self) -> Vec<(FlowRule, u64)> {
        let mut out = Vec::new();
        for k in self.flows.keys() {
            let Ok(Some(v)) = self.flows.lookup(&k, MapFlags::ANY) else { continue };
            let Some(fl) = read::<FwFlow>(&v) else { continue };
            if let Ok(f) = flow_rule(fl.ifindex, &fl.rule) {
                out.push((f, fl.kernel_cookie));
            }
        }
        out
    }
}

fn clamp_capacity(dpu_free: u32, max_flows: u32) -> u32 {
    dpu_free.min(max_flows)
}

fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The maps every copy of the firmware shares (and that are pinned).
const SHARED_MAPS: [&str; 7] = ["flows", "counters", "state", "capacity", "config", "events", "scratch"];

/// Loads the firmware for netdevsim devices `dev_ids`, attaches it (or
/// adopts the copies pinned under `pin`), then runs its event loop on a
/// thread of its own. Returns once every device has the firmware, or with
/// the reason one has not.
pub fn start(
    shared: Arc<Shared>,
    dev_ids: Vec<u32>,
    pin: Option<PathBuf>,
    mode: Answer,
) -> Result<Arc<FwMaps>, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("firmware".into())
        .spawn(move || run(shared, dev_ids, pin, mode, tx))
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|_| "firmware thread died while loading".to_string())?
}

/// FNV-1a: names a firmware build in the pin directory.
fn build_id(image: &[u8]) -> u64 {
    image.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The pinned maps of one build, if it pinned them.
fn pinned_maps(dir: &Path) -> Result<Option<HashMap<String, MapHandle>>, String> {
    if !dir.join("maps").join(SHARED_MAPS[0]).exists() {
        return Ok(None);
    }
    let mut v = HashMap::new();
    for name in SHARED_MAPS {
        let p = dir.join("maps").join(name);
        let h = MapHandle::from_pinned_path(&p).map_err(|e| {
            format!("{}: {e} (an incomplete pin: host-bridge detach-firmware removes it)", p.display())
        })?;
        v.insert(name.to_string(), h);
    }
    Ok(Some(v))
}

/// A pinned firmware of another build attached to one of `dev_ids`.
fn other_build(root: &Path, ours: &Path, dev_ids: &[u32]) -> Option<PathBuf> {
    let dirs = std::fs::read_dir(root).ok()?;
    dirs.flatten()
        .map(|e| e.path())
        .filter(|p| p != ours)
        .find_map(|p| dev_ids.iter().map(|d| p.join(format!("dev{d}"))).find(|l| l.exists()))
}

/// Whether an attach failed because the device has a firmware already.
fn is_busy(e: &libbpf_rs::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.downcast_ref::<std::io::Error>().and_then(|io| io.raw_os_error()) == Some(EBUSY as i32) {
            return true;
        }
        src = s.source();
    }
    format!("{e:#}").contains("os error 16")
}

/// Unpins every firmware under `root` (what `--firmware-pin` pinned); the
/// struct_ops detach once no running host-bridge holds them. Returns the
/// paths removed.
pub fn detach_pinned(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut removed = Vec::new();
    let dirs = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for d in dirs.flatten().map(|e| e.path()) {
        if !d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("fw-")) {
            continue;
        }
        for sub in [d.clone(), d.join("maps")] {
            let Ok(entries) = std::fs::read_dir(&sub) else { continue };
            for f in entries.flatten().map(|e| e.path()).filter(|p| !p.is_dir()) {
                std::fs::remove_file(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                removed.push(f);
            }
        }
        let _ = std::fs::remove_dir(d.join("maps"));
        std::fs::remove_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    Ok(removed)
}

fn run(
    shared: Arc<Shared>,
    dev_ids: Vec<u32>,
    pin: Option<PathBuf>,
    mode: Answer,
    ready: mpsc::Sender<Result<Arc<FwMaps>, String>>,
) {
    let mut objects = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    // The first object's maps (or the pinned ones), which the later copies
    // reuse.
    let mut first_maps: Option<HashMap<String, MapHandle>> = None;
    let custom = match std::env::var_os(OBJECT_ENV).map(std::fs::read) {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => {
            let _ = ready.send(Err(format!("{OBJECT_ENV}: {e}")));
            return;
        }
    };
    let image = custom.as_deref().unwrap_or(OBJECT);
    let pin_dir = pin.as_ref().map(|p| p.join(format!("fw-{:016x}", build_id(image))));
    let mut maps_pinned = false;
    if let (Some(root), Some(dir)) = (&pin, &pin_dir) {
        let prepared = (|| -> Result<(), String> {
            if let Some(l) = other_build(root, dir, &dev_ids) {
                return Err(format!(
                    "{} is a pinned firmware of another build; detach it first (host-bridge detach-firmware --firmware-pin {})",
                    l.display(),
                    root.display()
                ));
            }
            std::fs::create_dir_all(dir.join("maps")).map_err(|e| format!("{}: {e}", dir.display()))?;
            first_maps = pinned_maps(dir)?;
            maps_pinned = first_maps.is_some();
            Ok(())
        })();
        if let Err(e) = prepared {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let mut adopted = Vec::new();
    for &dev in &dev_ids {
        let loaded = (|| -> Result<(), String> {
            let mut open = ObjectBuilder::default()
                .open_memory(image)
                .map_err(|e| format!("opening the firmware object: {e}"))?;
            for mut m in open.maps_mut() {
                let name = m.name().to_string_lossy().to_string();
                if m.map_type() == libbpf_rs::MapType::StructOps {
                    let v = m.initial_value_mut().ok_or("struct_ops map without a value")?;
                    v.get_mut(DEV_ID_OFFSET..DEV_ID_OFFSET + 4)
                        .ok_or("struct_ops value too short")?
                        .copy_from_slice(&dev.to_ne_bytes());
                    v.get_mut(ANSWER_TIMEOUT_OFFSET..ANSWER_TIMEOUT_OFFSET + 4)
                        .ok_or("struct_ops value too short")?
                        .copy_from_slice(&ANSWER_TIMEOUT_MS.to_ne_bytes());
                } else if let Some(h) = first_maps.as_ref().and_then(|f| f.get(&name)) {
                    m.reuse_fd(h.as_fd()).map_err(|e| format!("sharing map {name}: {e}"))?;
                }
            }
            let mut obj = open
                .load()
                .map_err(|e| format!("loading the firmware (the verifier's log is above): {e}"))?;
            if first_maps.is_none() {
                let mut v = HashMap::new();
                for m in obj.maps() {
                    let name = m.name().to_string_lossy().to_string();
                    if SHARED_MAPS.contains(&name.as_str()) {
                        let mut h = MapHandle::try_from(&m).map_err(|e| e.to_string())?;
                        // Pinned before any link is, so that a pinned link
                        // always has its maps next to it.
                        if let Some(d) = &pin_dir {
                            let p = d.join("maps").join(&name);
                            h.pin(&p).map_err(|e| format!("pinning {}: {e}", p.display()))?;
                        }
                        v.insert(name, h);
                    }
                }
                first_maps = Some(v);
            }
            let link_pin = pin_dir.as_ref().map(|d| d.join(format!("dev{dev}")));
            for mut m in obj.maps_mut() {
                if m.map_type() != libbpf_rs::MapType::StructOps {
                    continue;
                }
                match m.attach_struct_ops() {
                    Ok(mut link) => {
                        if let Some(p) = &link_pin {
                            if p.exists() {
                                // Pinned, but idle: its device was deleted
                                // and created again.
                                crate::log!("firmware pin {} was stale: replaced", p.display());
                                std::fs::remove_file(p).map_err(|e| format!("{}: {e}", p.display()))?;
                            }
                            link.pin(p).map_err(|e| format!("pinning {}: {e}", p.display()))?;
                        }
                        links.push(link);
                    }
                    // Ours, pinned by an earlier host-bridge: adopt it.
                    // The object stays: its answer program serves the
                    // adopted firmware too (they share the maps).
                    Err(e) if is_busy(&e) && maps_pinned && link_pin.as_ref().is_some_and(|p| p.exists()) => {
                        adopted.push(dev);
                        break;
                    }
                    Err(e) => {
                        return Err(format!(
                            "attaching to netdevsim device {dev}: {e} (no such device, or it has firmware already)"
                        ))
                    }
                }
            }
            objects.push(obj);
            Ok(())
        })();
        if let Err(e) = loaded {
            let _ = ready.send(Err(e));
            return;
        }
        match &pin_dir {
            Some(d) if adopted.contains(&dev) => {
                crate::log!("firmware on netdevsim device {dev} adopted from {}", d.display())
            }
            Some(d) => crate::log!("firmware attached to netdevsim device {dev}, pinned in {}", d.display()),
            None => crate::log!("firmware attached to netdevsim device {dev}"),
        }
    }
    let Some(mut maps) = first_maps else {
        let _ = ready.send(Err("no netdevsim device configured".into()));
        return;
    };
    let mut take = |n: &str| maps.remove(n);
    let (Some(state), Some(capacity), Some(counters), Some(flows), Some(events), Some(config)) =
        (take("state"), take("capacity"), take("counters"), take("flows"), take("events"), take("config"))
    else {
        let _ = ready.send(Err("firmware object lacks a map".into()));
        return;
    };
    let Some(answer_prog) = objects.first_mut().and_then(|o| o.progs_mut().find(|p| p.name() == "answer"))
    else {
        let _ = ready.send(Err("firmware object lacks the answer program".into()));
        return;
    };
    let bell = match EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(format!("eventfd: {e}")));
            return;
        }
    };
    // The capacity map starts at 0, "no room", until the agent has said
    // how much it has (dpu.rs publishes it).
    let fw = Arc::new(FwMaps {
        state,
        capacity,
        counters,
        flows,
        answers: Mutex::new(Vec::new()),
        bell,
        mode,
        kernel_cookies: Mutex::new(HashMap::new()),
    });
    shared.lock().track_fw_answers(mode == Answer::Dpu);
    let heartbeat = |alive_ns: u64| {
        let c = FwConfig { mode: (mode == Answer::Dpu) as u32, pad: 0, alive_ns };
        let _ = config.update(&0u32.to_ne_bytes(), bytes_of(&c), MapFlags::ANY);
    };
    heartbeat(monotonic_ns());
    let sh = shared.clone();
    let mut builder = RingBufferBuilder::new();
    let fw_ev = fw.clone();
    let added = builder.add(&events, move |data: &[u8]| {
        on_event(&sh, &fw_ev, data);
        0
    });
    let built = match added {
        Ok(_) => builder.build(),
        Err(e) => Err(e),
    };
    let rb = match built {
        Ok(rb) => rb,
        Err(e) => {
            let _ = ready.send(Err(format!("firmware ring buffer: {e}")));
            return;
        }
    };
    // An adopted firmware holds flows already: into the mirror before the
    // agent's first snapshot, which would otherwise remove them from the
    // DPU. (Events that waited in the ring buffer are read next; replayed
    // in order, they end where the flows map is.)
    let mut lost = 0;
    if !adopted.is_empty() {
        let held = reconcile(&shared, &fw);
        lost = fw.state().lost_events;
        crate::log!("firmware adopted: {held} flows held");
    }
    // Attached, and its events are heard: host-bridge may go on. The
    // objects and links stay alive as long as this loop, which is the
    // life of the process.
    let _ = ready.send(Ok(fw.clone()));
    let mut checked = Instant::now();
    let mut ctx = vec![0u8; 8 + ANSWER_BATCH * size_of::<RawAnswer>()];
    loop {
        {
            // SAFETY: the ring buffer and the eventfd outlive this borrow.
            let rb_fd = unsafe { BorrowedFd::borrow_raw(rb.epoll_fd()) };
            let mut fds =
                [PollFd::new(rb_fd, PollFlags::POLLIN), PollFd::new(fw.bell.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(200u16));
        }
        let _ = fw.bell.read();
        if let Err(e) = rb.consume() {
            crate::log!("firmware ring buffer: {e}");
        }
        // While the heartbeat is fresh the firmware leaves tc waiting for
        // the DPU's answer; if host-bridge dies, it stops within 2 s.
        heartbeat(monotonic_ns());
        let answers = std::mem::take(&mut *fw.answers.lock().unwrap_or_else(|p| p.into_inner()));
        for chunk in answers.chunks(ANSWER_BATCH) {
            let mut head = [0u8; 8];
            head[..4].copy_from_slice(&(chunk.len() as u32).to_ne_bytes());
            // Answers nobody waits for (tc gave up) are not errors; a
            // failed run is, and one the kernel ran short for goes again
            // on the next round, while tc may still wait.
            let again = match run_batch(&answer_prog, &mut ctx, head, chunk) {
                Ok(n) if n >= 0 => false,
                Ok(n) => {
                    crate::log!("firmware: answering tc: {}", std::io::Error::from_raw_os_error(-n));
                    transient(-n)
                }
                Err(e) => {
                    crate::log!("firmware: running the answer program: {e}");
                    transient_run(&e)
                }
            };
            if again {
                fw.answers.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(chunk);
            }
        }
        if checked.elapsed() > Duration::from_secs(1) {
            checked = Instant::now();
            let st = fw.state();
            if st.lost_events != lost {
                lost = st.lost_events;
                crate::log!("firmware events lost ({lost} in all): reconciling with its flows map");
                reconcile(&shared, &fw);
            }
        }
    }
}

fn on_event(shared: &Shared, fw: &FwMaps, data: &[u8]) {
    let Some(ev) = read::<RawEvent>(data) else {
        crate::log!("firmware: short event ({} bytes)", data.len());
        return;
    };
    let mut m = shared.lock();
    m.set_read_time(crate::kernel::monotonic_ns());
    match ev.kind {
        FW_EV_REPLACE => match flow_rule(ev.ifindex, &ev.rule) {
            Ok(f) => {
                fw.kernel_cookies().insert(ev.rule.cookie, ev.kernel_cookie);
                m.upsert(Object::Flow(f))
            }
            Err(e) => crate::log!("firmware flow {:#x}: {e}", ev.rule.cookie),
        },
        FW_EV_DESTROY => {
            m.delete(&Key::Flow(ev.rule.cookie));
            fw.forget(ev.rule.cookie);
            fw.kernel_cookies().remove(&ev.rule.cookie);
        }
        k => crate::log!("firmware: event of unknown kind {k}"),
    }
    drop(m);
    shared.notify();
}

/// Makes the mirror's firmware flows equal to the firmware's flows map,
/// and drops counters entries of flows it no longer holds. Returns how
/// many flows it holds.
fn reconcile(shared: &Shared, fw: &FwMaps) -> usize {
    let held = fw.flows();
    let n = held.len();
    let keys: HashSet<Key> = held.iter().map(|(f, _)| Key::Flow(f.cookie)).collect();
    *fw.kernel_cookies() = held.iter().map(|(f, k)| (f.cookie, *k)).collect();
    let mut m = shared.lock();
    m.set_read_time(crate::kernel::monotonic_ns());
    let stale = m.select(
        |o| matches!(o, Object::Flow(f) if f.cookie >> 63 == 1 && !keys.contains(&Key::Flow(f.cookie))),
    );
    for k in stale {
        m.delete(&k);
    }
    for (f, _) in held {
        m.upsert(Object::Flow(f));
    }
    // Counters of flows whose destroy event was lost (written before the
    // mirror heard of it) go too.
    for k in fw.counters.keys() {
        let Ok(c) = <[u8; 8]>::try_from(k.as_slice()) else { continue };
        if !keys.contains(&Key::Flow(u64::from_ne_bytes(c))) {
            let _ = fw.counters.delete(&k);
        }
    }
    drop(m);
    shared.notify();
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_become_wire_flows() {
        let mut r = RawRule {
            cookie: 0xffff_8880_0000_1000,
            chain_index: 2,
            prio: 7,
            n_proto: 0x0800u16.to_be(),
            n_proto_mask: 0xffff,
            ip_proto: 6,
            ip_proto_mask: 0xff,
            ip_version: 4,
            dst_port: 80u16.to_be(),
            dst_port_mask: 0xffff,
            num_actions: 2,
            ..Default::default()
        };
        r.dst_ip[..4].copy_from_slice(&[192, 0, 2, 0]);
        r.dst_ip_mask[..4].copy_from_slice(&[255, 255, 255, 0]);
        r.actions[0] =
            RawAction { id: ACT_VLAN_PUSH, vlan_id: 5, vlan_proto: 0x8100u16.to_be(), ..Default::default() };
        r.actions[1] = RawAction { id: ACT_REDIRECT, ifindex: 9, ..Default::default() };
        let f = flow_rule(4, &r).expect("converts");
        assert_eq!((f.cookie, f.ifindex, f.chain, f.prio), (r.cookie, 4, 2, 7));
        assert_eq!(f.matches.eth_type, Some(0x0800));
        assert_eq!(f.matches.dst_port, Some(Masked { value: 80, mask: 0xffff }));
        assert_eq!(
            f.matches.dst_ip,
            Some(Masked { value: Ip::V4([192, 0, 2, 0]), mask: Ip::V4([255, 255, 255, 0]) })
        );
        assert_eq!(
            f.actions.as_slice(),
            &[FlowAction::VlanPush { vid: 5, tpid: 0x8100 }, FlowAction::Redirect(9)]
        );
        // What the DPU cannot do is refused here too.
        r.actions[1].id = 6; // REDIRECT_INGRESS
        assert!(flow_rule(4, &r).is_err());
        r.actions[1].id = ACT_DROP;
        r.undecoded_keys = 1 << 20;
        assert!(flow_rule(4, &r).is_err());
        // An event is read from raw bytes of any length without panicking.
        assert!(read::<RawEvent>(&[0u8; 10]).is_none());
        assert!(read::<RawEvent>(&[0u8; 400]).is_some());
        assert!(read::<RawEvent>(&[0u8; 383]).is_none());
    }

    #[test]
    fn the_published_capacity_never_exceeds_the_flows_map() {
        // dpu-1m has 65,536 flows; the firmware tracks 16,384.
        assert_eq!(clamp_capacity(65_536, 16_384), 16_384);
        assert_eq!(clamp_capacity(128, 16_384), 128);
        assert_eq!(clamp_capacity(0, 16_384), 0);
    }

    #[test]
    fn the_object_is_embedded() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
    }
}
