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
//! detach when host-bridge exits.
//!
//! The firmware's flows reach the mirror under the kernel's own cookie,
//! which is a kernel address with bit 63 set; the mirror's tc-filter flows
//! have bit 63 clear (see `netlink::tc`).

use crate::kernel::Shared;
use dpu_wire::*;
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, ObjectBuilder, RingBufferBuilder};
use std::collections::{HashMap, HashSet};
use std::mem::size_of;
use std::os::fd::AsFd;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The compiled firmware (host-bridge's build script runs clang).
pub static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/flow_fw.bpf.o"));

/// Environment variable naming another firmware object to load instead
/// (a custom build; it must keep the maps and the event layout).
pub const OBJECT_ENV: &str = "HOST_BRIDGE_FIRMWARE";

/// Offset of `dev_id` in `struct nsim_flow_ops`: three function pointers.
const DEV_ID_OFFSET: usize = 24;
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
    pub reported_packets: u64,
    pub reported_bytes: u64,
    pub reported_drops: u64,
    pub lastused: u64,
    pub rule: RawRule,
}

const _: () = assert!(size_of::<RawRule>() == 368);
const _: () = assert!(size_of::<RawEvent>() == 376);
const _: () = assert!(size_of::<FwState>() == 56);
const _: () = assert!(size_of::<FwFlow>() == 408);

/// Reads a plain-integer `repr(C)` struct from the front of `b`.
fn read<T: Copy + Default>(b: &[u8]) -> Option<T> {
    if b.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is a repr(C) struct of integers and byte arrays, valid for
    // every bit pattern, and b holds at least size_of::<T>() bytes.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) })
}

fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a repr(C) struct of integers without padding.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
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
}

impl FwMaps {
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

    /// Every flow the firmware holds now, from its flows map.
    pub fn flows(&self) -> Vec<FlowRule> {
        let mut out = Vec::new();
        for k in self.flows.keys() {
            let Ok(Some(v)) = self.flows.lookup(&k, MapFlags::ANY) else { continue };
            let Some(fl) = read::<FwFlow>(&v) else { continue };
            if let Ok(f) = flow_rule(fl.ifindex, &fl.rule) {
                out.push(f);
            }
        }
        out
    }
}

fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Loads the firmware for netdevsim devices `dev_ids`, attaches it, then
/// runs its event loop on a thread of its own. Returns once every device
/// is attached, or with the reason none is.
pub fn start(shared: Arc<Shared>, dev_ids: Vec<u32>) -> Result<Arc<FwMaps>, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("firmware".into())
        .spawn(move || run(shared, dev_ids, tx))
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|_| "firmware thread died while loading".to_string())?
}

fn run(shared: Arc<Shared>, dev_ids: Vec<u32>, ready: mpsc::Sender<Result<Arc<FwMaps>, String>>) {
    let mut objects = Vec::new();
    let mut links: Vec<Link> = Vec::new();
    // The first object's maps, which the later copies reuse.
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
                } else if let Some(h) = first_maps.as_ref().and_then(|f| f.get(&name)) {
                    m.reuse_fd(h.as_fd()).map_err(|e| format!("sharing map {name}: {e}"))?;
                }
            }
            let mut obj = open
                .load()
                .map_err(|e| format!("loading the firmware (the verifier's log is above): {e}"))?;
            for mut m in obj.maps_mut() {
                if m.map_type() == libbpf_rs::MapType::StructOps {
                    let link = m.attach_struct_ops().map_err(|e| {
                        format!("attaching to netdevsim device {dev}: {e} (no such device, or it has firmware already)")
                    })?;
                    links.push(link);
                }
            }
            if first_maps.is_none() {
                let mut v = HashMap::new();
                for m in obj.maps() {
                    let name = m.name().to_string_lossy().to_string();
                    if ["flows", "counters", "state", "capacity", "events", "scratch"]
                        .contains(&name.as_str())
                    {
                        let h = MapHandle::try_from(&m).map_err(|e| e.to_string())?;
                        v.insert(name, h);
                    }
                }
                first_maps = Some(v);
            }
            objects.push(obj);
            Ok(())
        })();
        if let Err(e) = loaded {
            let _ = ready.send(Err(e));
            return;
        }
        crate::log!("firmware attached to netdevsim device {dev}");
    }
    let Some(mut maps) = first_maps else {
        let _ = ready.send(Err("no netdevsim device configured".into()));
        return;
    };
    let mut take = |n: &str| maps.remove(n);
    let (Some(state), Some(capacity), Some(counters), Some(flows), Some(events)) =
        (take("state"), take("capacity"), take("counters"), take("flows"), take("events"))
    else {
        let _ = ready.send(Err("firmware object lacks a map".into()));
        return;
    };
    // The capacity map starts at 0, "no room", until the agent has said
    // how much it has (dpu.rs publishes it).
    let fw = Arc::new(FwMaps { state, capacity, counters, flows });
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
    // Attached, and its events are heard: host-bridge may go on. The
    // objects and links stay alive as long as this loop, which is the
    // life of the process.
    let _ = ready.send(Ok(fw.clone()));
    let mut lost = 0;
    let mut checked = Instant::now();
    loop {
        if let Err(e) = rb.poll(Duration::from_millis(200)) {
            crate::log!("firmware ring buffer: {e}");
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
    match ev.kind {
        FW_EV_REPLACE => match flow_rule(ev.ifindex, &ev.rule) {
            Ok(f) => m.upsert(Object::Flow(f)),
            Err(e) => crate::log!("firmware flow {:#x}: {e}", ev.rule.cookie),
        },
        FW_EV_DESTROY => {
            m.delete(&Key::Flow(ev.rule.cookie));
            fw.forget(ev.rule.cookie);
        }
        k => crate::log!("firmware: event of unknown kind {k}"),
    }
    drop(m);
    shared.notify();
}

/// Makes the mirror's firmware flows equal to the firmware's flows map,
/// and drops counters entries of flows it no longer holds.
fn reconcile(shared: &Shared, fw: &FwMaps) {
    let held = fw.flows();
    let keys: HashSet<Key> = held.iter().map(|f| Key::Flow(f.cookie)).collect();
    let mut m = shared.lock();
    let stale = m.select(
        |o| matches!(o, Object::Flow(f) if f.cookie >> 63 == 1 && !keys.contains(&Key::Flow(f.cookie))),
    );
    for k in stale {
        m.delete(&k);
    }
    for f in held {
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
    }

    #[test]
    fn the_object_is_embedded() {
        assert_eq!(&OBJECT[..4], b"\x7fELF");
    }
}
