//! The taps' records (bpf/notifier/notifier.h) and their decoded forms.
//!
//! `Raw*` are the C structs byte for byte (`#[repr(C)]`, sizes asserted
//! against the header's `NTF_SIZE_*` at compile time, as notifier.bpf.c
//! asserts them on its side); [`Record::decode`] turns one ring-buffer
//! record into a typed [`Record`], checking the kind and the length, and
//! refusing what does not fit. Text (`Display`, like `ip monitor`) and
//! JSON (`serde`) are views of the typed form only.

use serde::Serialize;
use std::fmt;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const NTF_FIB4: u16 = 1;
pub const NTF_FIB6: u16 = 2;
pub const NTF_FIB_RULE: u16 = 3;
pub const NTF_NEXTHOP: u16 = 4;
pub const NTF_NH_BUCKET: u16 = 5;
pub const NTF_FDB: u16 = 6;
pub const NTF_PORT_OBJ: u16 = 7;
pub const NTF_PORT_ATTR: u16 = 8;
pub const NTF_NETDEV: u16 = 9;
pub const NTF_NEIGH: u16 = 10;
pub const NTF_PROBE_TIME: u16 = 11;
pub const NTF_MPATH_HASH: u16 = 12;
/// Entries of the per-CPU "counters" map (one per kind, 0 unused).
pub const NTF_KIND_MAX: u32 = 13;

pub const NTF_F_RET: u32 = 0x1;
pub const NTF_F_TRUNC: u32 = 0x2;
pub const NTF_F_TP: u32 = 0x4;
pub const NTF_MAX_NH: usize = 8;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawHdr {
    pub kind: u16,
    pub event: u16,
    pub ret: i32,
    pub ts_ns: u64,
    pub flags: u32,
    pub ifindex: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawNh {
    pub gw: [u8; 16],
    pub ifindex: u32,
    pub weight: u32,
    pub gw_family: u8,
    pub flags: u8,
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawFib4 {
    pub hdr: RawHdr,
    pub dst: [u8; 4],
    pub tb_id: u32,
    pub priority: u32,
    pub nh_id: u32,
    pub dst_len: u8,
    pub dscp: u8,
    pub rtype: u8,
    pub protocol: u8,
    pub scope: u8,
    pub nhs: u8,
    pub pad: [u8; 2],
    pub nh: [RawNh; NTF_MAX_NH],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawFib6 {
    pub hdr: RawHdr,
    pub dst: [u8; 16],
    pub src: [u8; 16],
    pub tb_id: u32,
    pub metric: u32,
    pub nh_id: u32,
    pub nsiblings: u32,
    pub dst_len: u8,
    pub src_len: u8,
    pub rtype: u8,
    pub protocol: u8,
    pub nh: RawNh,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawRule {
    pub hdr: RawHdr,
    pub family: u32,
    pub table: u32,
    pub pref: u32,
    pub mark: u32,
    pub mark_mask: u32,
    pub iifindex: i32,
    pub oifindex: i32,
    pub action: u8,
    pub proto: u8,
    pub ip_proto: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawNexthop {
    pub hdr: RawHdr,
    pub id: u32,
    pub is_group: u8,
    pub family: u8,
    pub blackhole: u8,
    pub fdb: u8,
    pub resilient: u8,
    pub protocol: u8,
    pub members: u16,
    pub pad: u32,
    pub nh: [RawNh; NTF_MAX_NH],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawBucket {
    pub hdr: RawHdr,
    pub group_id: u32,
    pub pad1: u32,
    pub bucket: u16,
    pub force: u8,
    pub pad: u8,
    pub old_id: u32,
    pub new_id: u32,
    pub pad2: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawFdb {
    pub hdr: RawHdr,
    pub addr: [u8; 6],
    pub vid: u16,
    pub added_by_user: u8,
    pub is_local: u8,
    pub locked: u8,
    pub offloaded: u8,
    pub vni: u32,
    pub remote_ip: [u8; 16],
    pub remote_family: u8,
    pub pad: [u8; 3],
    pub bridge_ifindex: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawPortObj {
    pub hdr: RawHdr,
    pub obj_id: u32,
    pub orig_ifindex: u32,
    pub vid: u16,
    pub vlan_flags: u16,
    pub changed: u8,
    pub addr: [u8; 6],
    pub handled: u8,
    pub pad: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawPortAttr {
    pub hdr: RawHdr,
    pub attr_id: u32,
    pub orig_ifindex: u32,
    pub value: u64,
    pub mask: u64,
    pub handled: u8,
    pub pad: [u8; 7],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawNetdev {
    pub hdr: RawHdr,
    pub name: [u8; 16],
    pub addr: [u8; 32],
    pub mtu: u32,
    pub old_mtu: u32,
    pub dev_flags: u32,
    pub upper_ifindex: u32,
    pub addr_len: u8,
    pub linking: u8,
    pub master: u8,
    pub pad: [u8; 5],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawNeigh {
    pub hdr: RawHdr,
    pub key: [u8; 16],
    pub lladdr: [u8; 8],
    pub flags: u32,
    pub family: u8,
    pub nud_state: u8,
    pub dead: u8,
    pub pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawProbeTime {
    pub hdr: RawHdr,
    pub family: u32,
    pub delay_probe_time: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawMpathHash {
    pub hdr: RawHdr,
    pub fields: u32,
    pub family: u8,
    pub policy: u8,
    pub pad: [u8; 2],
}

/// The `ntf_counter` of one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCounter {
    pub events: u64,
    pub drops: u64,
    pub filtered: u64,
}

/// `struct ntf_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawConfig {
    pub netns_inum: u32,
    pub pad: u32,
}

// notifier.h's NTF_SIZE_*: the layouts agree or this does not build.
const HDR: usize = 24;
const NH: usize = 28;
const _: () = {
    assert!(size_of::<RawHdr>() == HDR);
    assert!(size_of::<RawNh>() == NH);
    assert!(size_of::<RawFib4>() == HDR + 24 + 8 * NH);
    assert!(size_of::<RawFib6>() == HDR + 52 + NH);
    assert!(size_of::<RawRule>() == HDR + 32);
    assert!(size_of::<RawNexthop>() == HDR + 16 + 8 * NH);
    assert!(size_of::<RawBucket>() == HDR + 24);
    assert!(size_of::<RawFdb>() == HDR + 40);
    assert!(size_of::<RawPortObj>() == HDR + 24);
    assert!(size_of::<RawPortAttr>() == HDR + 32);
    assert!(size_of::<RawNetdev>() == HDR + 72);
    assert!(size_of::<RawNeigh>() == HDR + 32);
    assert!(size_of::<RawProbeTime>() == HDR + 8);
    assert!(size_of::<RawMpathHash>() == HDR + 8);
    assert!(size_of::<RawCounter>() == 24);
    assert!(size_of::<RawConfig>() == 8);
};

fn read<T: Copy>(b: &[u8]) -> Option<T> {
    if b.len() < size_of::<T>() {
        return None;
    }
    // SAFETY: T is one of the repr(C) structs above, made of integers and
    // byte arrays only, valid for every bit pattern; b holds at least
    // size_of::<T>() bytes.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) })
}

/// A record that could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Short { kind: u16, len: usize, want: usize },
    UnknownKind(u16),
    UnknownEvent { kind: u16, event: u16 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short { kind, len, want } => {
                write!(f, "record kind {kind}: {len} bytes, want {want}")
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown record kind {k}"),
            DecodeError::UnknownEvent { kind, event } => {
                write!(f, "record kind {kind}: unknown event {event}")
            }
        }
    }
}

/// Which chain, which mechanism, and the chain's result, of every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Meta {
    pub ts_ns: u64,
    /// The chain's result (0 or a negative errno) where the tap saw it.
    pub ret: Option<i32>,
    /// From a tracepoint fallback, not from the chain itself.
    pub tracepoint: bool,
    /// A list in the record was cut at [`NTF_MAX_NH`].
    pub truncated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FibEvent {
    Replace,
    Append,
    Add,
    Del,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct NhPath {
    pub ifindex: u32,
    pub gateway: Option<IpAddr>,
    pub weight: u32,
    /// RTNH_F_* (dead 0x1, onlink 0x4, linkdown 0x10, ...).
    pub flags: u8,
}

fn path(n: &RawNh) -> NhPath {
    NhPath { ifindex: n.ifindex, gateway: addr(n.gw_family, &n.gw), weight: n.weight, flags: n.flags }
}

fn addr(family: u8, b: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FibEntry {
    pub event: FibEvent,
    pub table: u32,
    pub dst: IpAddr,
    pub dst_len: u8,
    /// IPv6 source prefix (`from`), if any.
    pub src: Option<(IpAddr, u8)>,
    /// IPv4: the TOS byte (DSCP); IPv6: 0.
    pub tos: u8,
    /// RTN_* (unicast 1, local 2, broadcast 3, blackhole 6, unreachable 7, prohibit 8, ...).
    pub rtype: u8,
    pub protocol: u8,
    pub scope: u8,
    /// IPv4: the priority (metric); IPv6: the metric.
    pub metric: u32,
    pub nh_id: Option<u32>,
    /// Inline nexthops (IPv6: the first path only; `siblings` more exist).
    pub nexthops: Vec<NhPath>,
    /// IPv4: the route's path count; IPv6: sibling routes notified with it.
    pub paths: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FibRule {
    pub add: bool,
    pub family: u8,
    pub table: u32,
    pub pref: u32,
    pub mark: u32,
    pub mark_mask: u32,
    pub iifindex: i32,
    pub oifindex: i32,
    pub action: u8,
    pub protocol: u8,
    pub ip_proto: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NhEvent {
    Replace,
    Del,
    ResTablePreReplace,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NexthopObj {
    pub event: NhEvent,
    pub id: u32,
    pub protocol: u8,
    pub group: bool,
    pub resilient: bool,
    pub fdb: bool,
    pub blackhole: bool,
    /// Single: the path. Group: none.
    pub path: Option<NhPath>,
    /// Group: (member id, weight).
    pub members: Vec<(u32, u32)>,
    pub member_count: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub group: u32,
    pub bucket: u16,
    pub force: bool,
    pub old_nh: u32,
    pub new_nh: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FdbEvent {
    AddToBridge,
    DelToBridge,
    AddToDevice,
    DelToDevice,
    Offloaded,
    FlushToBridge,
    VxlanAddToBridge,
    VxlanDelToBridge,
    VxlanAddToDevice,
    VxlanDelToDevice,
    VxlanOffloaded,
    /// Tracepoint fallbacks: a user's add, an external learn, a delete.
    TpAdd,
    TpLearn,
    TpDelete,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fdb {
    pub event: FdbEvent,
    pub ifindex: u32,
    #[serde(serialize_with = "mac_str")]
    pub mac: [u8; 6],
    pub vid: u16,
    pub added_by_user: bool,
    pub is_local: bool,
    pub locked: bool,
    pub offloaded: bool,
    /// VXLAN FDB: the VNI and the remote.
    pub vni: Option<u32>,
    pub remote: Option<IpAddr>,
    /// Tracepoint fallbacks: the bridge.
    pub bridge: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjKind {
    Vlan,
    Mdb,
    HostMdb,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortObj {
    pub add: bool,
    pub ifindex: u32,
    pub orig_ifindex: u32,
    pub obj: ObjKind,
    pub vid: u16,
    /// VLAN: BRIDGE_VLAN_INFO_* (pvid 0x2, untagged 0x4, brentry 0x20).
    pub vlan_flags: u16,
    pub changed: bool,
    /// MDB: the group's MAC.
    #[serde(serialize_with = "opt_mac_str")]
    pub mac: Option<[u8; 6]>,
    pub handled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attr {
    /// BR_STATE_* (disabled 0, listening 1, learning 2, forwarding 3, blocking 4).
    StpState(u8),
    BridgeFlags {
        value: u64,
        mask: u64,
    },
    PreBridgeFlags {
        value: u64,
        mask: u64,
    },
    PortMrouter(bool),
    /// clock_t (USER_HZ, 1/100 s).
    AgeingTime(u64),
    VlanFiltering(bool),
    VlanProtocol(u16),
    McDisabled(bool),
    BridgeMrouter(bool),
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortAttr {
    pub ifindex: u32,
    pub orig_ifindex: u32,
    pub attr: Attr,
    pub handled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetdevEvent {
    Up,
    Down,
    GoingDown,
    Change,
    Register,
    Unregister,
    ChangeMtu,
    ChangeAddr,
    ChangeUpper,
    PreChangeUpper,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Netdev {
    pub event: NetdevEvent,
    pub ifindex: u32,
    pub name: String,
    pub mtu: u32,
    pub old_mtu: Option<u32>,
    pub flags: u32,
    #[serde(serialize_with = "mac_str")]
    pub addr: Vec<u8>,
    /// (PRE)CHANGEUPPER: the upper device, linking or unlinking, master.
    pub upper: Option<(u32, bool, bool)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Neigh {
    pub ifindex: u32,
    pub dst: Option<IpAddr>,
    #[serde(serialize_with = "mac_str")]
    pub lladdr: [u8; 6],
    /// NUD_* (incomplete 0x1, reachable 0x2, stale 0x4, delay 0x8, probe 0x10, failed 0x20, noarp 0x40, permanent 0x80).
    pub state: u8,
    pub flags: u32,
    pub dead: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeTime {
    pub ifindex: u32,
    pub family: u8,
    /// Jiffies.
    pub delay_probe_time: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MpathHash {
    pub v6: bool,
    /// fib_multipath_hash_policy: 0 L3, 1 L4, 2 L3 inner, 3 custom (fields).
    pub policy: u8,
    /// fib_multipath_hash_fields (FIB_MULTIPATH_HASH_FIELD_*).
    pub fields: u32,
}

/// One decoded tap record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Fib(FibEntry),
    FibRule(FibRule),
    Nexthop(NexthopObj),
    NhBucket(Bucket),
    Fdb(Fdb),
    PortObj(PortObj),
    PortAttr(PortAttr),
    Netdev(Netdev),
    Neigh(Neigh),
    ProbeTime(ProbeTime),
    MpathHash(MpathHash),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    #[serde(flatten)]
    pub meta: Meta,
    pub event: Event,
}

fn take<T: Copy>(b: &[u8], kind: u16) -> Result<T, DecodeError> {
    read(b).ok_or(DecodeError::Short { kind, len: b.len(), want: size_of::<T>() })
}

impl Record {
    /// Decodes one ring-buffer record.
    pub fn decode(b: &[u8]) -> Result<Record, DecodeError> {
        let h: RawHdr = take(b, 0)?;
        let meta = Meta {
            ts_ns: h.ts_ns,
            ret: (h.flags & NTF_F_RET != 0).then_some(h.ret),
            tracepoint: h.flags & NTF_F_TP != 0,
            truncated: h.flags & NTF_F_TRUNC != 0,
        };
        let bad = DecodeError::UnknownEvent { kind: h.kind, event: h.event };
        let event = match h.kind {
            NTF_FIB4 => {
                let r: RawFib4 = take(b, h.kind)?;
                let n = (r.nhs as usize).min(NTF_MAX_NH);
                Event::Fib(FibEntry {
                    event: fib_event(h.event).ok_or(bad)?,
                    table: r.tb_id,
                    dst: IpAddr::V4(Ipv4Addr::from(r.dst)),
                    dst_len: r.dst_len,
                    src: None,
                    tos: r.dscp,
                    rtype: r.rtype,
                    protocol: r.protocol,
                    scope: r.scope,
                    metric: r.priority,
                    nh_id: (r.nh_id != 0).then_some(r.nh_id),
                    nexthops: if r.nh_id != 0 { Vec::new() } else { r.nh[..n].iter().map(path).collect() },
                    paths: r.nhs as u32,
                })
            }
            NTF_FIB6 => {
                let r: RawFib6 = take(b, h.kind)?;
                Event::Fib(FibEntry {
                    event: fib_event(h.event).ok_or(bad)?,
                    table: r.tb_id,
                    dst: IpAddr::V6(Ipv6Addr::from(r.dst)),
                    dst_len: r.dst_len,
                    src: (r.src_len != 0).then_some((IpAddr::V6(Ipv6Addr::from(r.src)), r.src_len)),
                    tos: 0,
                    rtype: r.rtype,
                    protocol: r.protocol,
                    scope: 0,
                    metric: r.metric,
                    nh_id: (r.nh_id != 0).then_some(r.nh_id),
                    nexthops: if r.nh_id != 0 { Vec::new() } else { vec![path(&r.nh)] },
                    paths: r.nsiblings + 1,
                })
            }
            NTF_FIB_RULE => {
                let r: RawRule = take(b, h.kind)?;
                Event::FibRule(FibRule {
                    add: match h.event {
                        5 => true,
                        6 => false,
                        _ => return Err(bad),
                    },
                    family: r.family as u8,
                    table: r.table,
                    pref: r.pref,
                    mark: r.mark,
                    mark_mask: r.mark_mask,
                    iifindex: r.iifindex,
                    oifindex: r.oifindex,
                    action: r.action,
                    protocol: r.proto,
                    ip_proto: r.ip_proto,
                })
            }
            NTF_NEXTHOP => {
                let r: RawNexthop = take(b, h.kind)?;
                let group = r.is_group != 0;
                let n = (r.members as usize).min(NTF_MAX_NH);
                Event::Nexthop(NexthopObj {
                    event: match h.event {
                        1 => NhEvent::Del,
                        2 => NhEvent::Replace,
                        3 => NhEvent::ResTablePreReplace,
                        _ => return Err(bad),
                    },
                    id: r.id,
                    protocol: r.protocol,
                    group,
                    resilient: r.resilient != 0,
                    fdb: r.fdb != 0,
                    blackhole: r.blackhole != 0,
                    path: (!group && r.blackhole == 0).then(|| path(&r.nh[0])),
                    members: if group {
                        r.nh[..n].iter().map(|m| (m.ifindex, m.weight)).collect()
                    } else {
                        vec![]
                    },
                    member_count: r.members,
                })
            }
            NTF_NH_BUCKET => {
                let r: RawBucket = take(b, h.kind)?;
                Event::NhBucket(Bucket {
                    group: r.group_id,
                    bucket: r.bucket,
                    force: r.force != 0,
                    old_nh: r.old_id,
                    new_nh: r.new_id,
                })
            }
            NTF_FDB => {
                let r: RawFdb = take(b, h.kind)?;
                let event = match h.event {
                    1 => FdbEvent::AddToBridge,
                    2 => FdbEvent::DelToBridge,
                    3 => FdbEvent::AddToDevice,
                    4 => FdbEvent::DelToDevice,
                    5 => FdbEvent::Offloaded,
                    6 => FdbEvent::FlushToBridge,
                    10 => FdbEvent::VxlanAddToBridge,
                    11 => FdbEvent::VxlanDelToBridge,
                    12 => FdbEvent::VxlanAddToDevice,
                    13 => FdbEvent::VxlanDelToDevice,
                    14 => FdbEvent::VxlanOffloaded,
                    32 => FdbEvent::TpAdd,
                    33 => FdbEvent::TpLearn,
                    34 => FdbEvent::TpDelete,
                    _ => return Err(bad),
                };
                let vxlan = (10..=14).contains(&h.event);
                Event::Fdb(Fdb {
                    event,
                    ifindex: h.ifindex,
                    mac: r.addr,
                    vid: r.vid,
                    added_by_user: r.added_by_user != 0,
                    is_local: r.is_local != 0,
                    locked: r.locked != 0,
                    offloaded: r.offloaded != 0,
                    vni: vxlan.then_some(r.vni),
                    remote: if vxlan { addr(r.remote_family, &r.remote_ip) } else { None },
                    bridge: (r.bridge_ifindex != 0).then_some(r.bridge_ifindex),
                })
            }
            NTF_PORT_OBJ => {
                let r: RawPortObj = take(b, h.kind)?;
                let obj = match r.obj_id {
                    1 => ObjKind::Vlan,
                    2 => ObjKind::Mdb,
                    3 => ObjKind::HostMdb,
                    _ => ObjKind::Other,
                };
                Event::PortObj(PortObj {
                    add: match h.event {
                        7 => true,
                        8 => false,
                        _ => return Err(bad),
                    },
                    ifindex: h.ifindex,
                    orig_ifindex: r.orig_ifindex,
                    obj,
                    vid: r.vid,
                    vlan_flags: r.vlan_flags,
                    changed: r.changed != 0,
                    mac: matches!(obj, ObjKind::Mdb | ObjKind::HostMdb).then_some(r.addr),
                    handled: r.handled != 0,
                })
            }
            NTF_PORT_ATTR => {
                let r: RawPortAttr = take(b, h.kind)?;
                if h.event != 9 {
                    return Err(bad);
                }
                let attr = match r.attr_id {
                    1 => Attr::StpState(r.value as u8),
                    2 => Attr::BridgeFlags { value: r.value, mask: r.mask },
                    3 => Attr::PreBridgeFlags { value: r.value, mask: r.mask },
                    4 => Attr::PortMrouter(r.value != 0),
                    5 => Attr::AgeingTime(r.value),
                    6 => Attr::VlanFiltering(r.value != 0),
                    7 => Attr::VlanProtocol(r.value as u16),
                    8 => Attr::McDisabled(r.value != 0),
                    9 => Attr::BridgeMrouter(r.value != 0),
                    _ => Attr::Other,
                };
                Event::PortAttr(PortAttr {
                    ifindex: h.ifindex,
                    orig_ifindex: r.orig_ifindex,
                    attr,
                    handled: r.handled != 0,
                })
            }
            NTF_NETDEV => {
                let r: RawNetdev = take(b, h.kind)?;
                let event = match h.event {
                    1 => NetdevEvent::Up,
                    2 => NetdevEvent::Down,
                    3 => NetdevEvent::GoingDown,
                    4 => NetdevEvent::Change,
                    5 => NetdevEvent::Register,
                    6 => NetdevEvent::Unregister,
                    7 => NetdevEvent::ChangeMtu,
                    8 => NetdevEvent::ChangeAddr,
                    9 => NetdevEvent::ChangeUpper,
                    10 => NetdevEvent::PreChangeUpper,
                    _ => return Err(bad),
                };
                let name_len = r.name.iter().position(|&c| c == 0).unwrap_or(r.name.len());
                let upper = matches!(event, NetdevEvent::ChangeUpper | NetdevEvent::PreChangeUpper);
                Event::Netdev(Netdev {
                    event,
                    ifindex: h.ifindex,
                    name: String::from_utf8_lossy(&r.name[..name_len]).into_owned(),
                    mtu: r.mtu,
                    old_mtu: (event == NetdevEvent::ChangeMtu).then_some(r.old_mtu),
                    flags: r.dev_flags,
                    addr: r.addr[..(r.addr_len as usize).min(32)].to_vec(),
                    upper: upper.then_some((r.upper_ifindex, r.linking != 0, r.master != 0)),
                })
            }
            NTF_NEIGH => {
                let r: RawNeigh = take(b, h.kind)?;
                if h.event != 1 && h.event != 32 {
                    return Err(bad);
                }
                let mut ll = [0u8; 6];
                ll.copy_from_slice(&r.lladdr[..6]);
                Event::Neigh(Neigh {
                    ifindex: h.ifindex,
                    dst: addr(r.family, &r.key),
                    lladdr: ll,
                    state: r.nud_state,
                    flags: r.flags,
                    dead: r.dead != 0,
                })
            }
            NTF_PROBE_TIME => {
                let r: RawProbeTime = take(b, h.kind)?;
                Event::ProbeTime(ProbeTime {
                    ifindex: h.ifindex,
                    family: r.family as u8,
                    delay_probe_time: r.delay_probe_time,
                })
            }
            NTF_MPATH_HASH => {
                let r: RawMpathHash = take(b, h.kind)?;
                Event::MpathHash(MpathHash {
                    v6: match h.event {
                        3 => false,
                        4 => true,
                        _ => return Err(bad),
                    },
                    policy: r.policy,
                    fields: r.fields,
                })
            }
            k => return Err(DecodeError::UnknownKind(k)),
        };
        Ok(Record { meta, event })
    }
}

fn mac_str<S: serde::Serializer>(m: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Mac(m))
}

fn opt_mac_str<S: serde::Serializer>(m: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.collect_str(&Mac(m)),
        None => s.serialize_none(),
    }
}

fn fib_event(e: u16) -> Option<FibEvent> {
    Some(match e {
        1 => FibEvent::Replace,
        2 => FibEvent::Append,
        3 => FibEvent::Add,
        4 => FibEvent::Del,
        _ => return None,
    })
}

struct Mac<'a>(&'a [u8]);

impl fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn snake<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

impl fmt::Display for NhPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(g) = self.gateway {
            write!(f, "via {g} ")?;
        }
        write!(f, "dev {} weight {}", self.ifindex, self.weight)?;
        if self.flags & 0x1 != 0 {
            f.write_str(" dead")?;
        }
        if self.flags & 0x10 != 0 {
            f.write_str(" linkdown")?;
        }
        Ok(())
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.event {
            Event::Fib(e) => {
                write!(f, "fib {} table {} {}/{}", snake(&e.event), e.table, e.dst, e.dst_len)?;
                if let Some((s, l)) = e.src {
                    write!(f, " from {s}/{l}")?;
                }
                if e.tos != 0 {
                    write!(f, " tos 0x{:02x}", e.tos)?;
                }
                write!(f, " type {} proto {} metric {}", e.rtype, e.protocol, e.metric)?;
                if let Some(id) = e.nh_id {
                    write!(f, " nhid {id}")?;
                }
                for p in &e.nexthops {
                    write!(f, " [{p}]")?;
                }
                if e.paths as usize > e.nexthops.len() && e.nh_id.is_none() {
                    write!(f, " ({} paths)", e.paths)?;
                }
            }
            Event::FibRule(r) => write!(
                f,
                "rule {} family {} pref {} table {} action {} iif {} oif {} fwmark 0x{:x}/0x{:x}",
                if r.add { "add" } else { "del" },
                r.family,
                r.pref,
                r.table,
                r.action,
                r.iifindex,
                r.oifindex,
                r.mark,
                r.mark_mask
            )?,
            Event::Nexthop(n) => {
                write!(f, "nexthop {} id {}", snake(&n.event), n.id)?;
                if n.group {
                    write!(f, " group")?;
                    for (id, w) in &n.members {
                        write!(f, " {id},{w}")?;
                    }
                    if n.resilient {
                        f.write_str(" resilient")?;
                    }
                } else if n.blackhole {
                    f.write_str(" blackhole")?;
                } else if let Some(p) = &n.path {
                    write!(f, " {p}")?;
                }
                if n.fdb {
                    f.write_str(" fdb")?;
                }
            }
            Event::NhBucket(b) => write!(
                f,
                "nexthop bucket group {} index {} nhid {} -> {}{}",
                b.group,
                b.bucket,
                b.old_nh,
                b.new_nh,
                if b.force { " force" } else { "" }
            )?,
            Event::Fdb(e) => {
                write!(f, "fdb {} dev {} {}", snake(&e.event), e.ifindex, Mac(&e.mac))?;
                if e.vid != 0 {
                    write!(f, " vlan {}", e.vid)?;
                }
                if let Some(v) = e.vni {
                    write!(f, " vni {v}")?;
                }
                if let Some(r) = e.remote {
                    write!(f, " dst {r}")?;
                }
                if let Some(b) = e.bridge {
                    write!(f, " master {b}")?;
                }
                for (on, s) in [
                    (e.added_by_user, " user"),
                    (e.is_local, " local"),
                    (e.locked, " locked"),
                    (e.offloaded, " offloaded"),
                ] {
                    if on {
                        f.write_str(s)?;
                    }
                }
            }
            Event::PortObj(o) => {
                write!(
                    f,
                    "port obj {} dev {} {}",
                    if o.add { "add" } else { "del" },
                    o.ifindex,
                    snake(&o.obj)
                )?;
                write!(f, " vid {}", o.vid)?;
                if o.obj == ObjKind::Vlan {
                    if o.vlan_flags & 0x2 != 0 {
                        f.write_str(" pvid")?;
                    }
                    if o.vlan_flags & 0x4 != 0 {
                        f.write_str(" untagged")?;
                    }
                    if o.changed {
                        f.write_str(" changed")?;
                    }
                }
                if let Some(m) = o.mac {
                    write!(f, " grp {}", Mac(&m))?;
                }
            }
            Event::PortAttr(a) => {
                write!(f, "port attr dev {} ", a.ifindex)?;
                match a.attr {
                    Attr::StpState(s) => write!(
                        f,
                        "stp_state {}",
                        ["disabled", "listening", "learning", "forwarding", "blocking"]
                            .get(s as usize)
                            .copied()
                            .unwrap_or("?")
                    )?,
                    Attr::BridgeFlags { value, mask } => write!(f, "bridge_flags 0x{value:x}/0x{mask:x}")?,
                    Attr::PreBridgeFlags { value, mask } => {
                        write!(f, "pre_bridge_flags 0x{value:x}/0x{mask:x}")?
                    }
                    Attr::PortMrouter(v) => write!(f, "mrouter {v}")?,
                    Attr::AgeingTime(t) => write!(f, "ageing_time {t}")?,
                    Attr::VlanFiltering(v) => write!(f, "vlan_filtering {v}")?,
                    Attr::VlanProtocol(p) => write!(f, "vlan_protocol 0x{:04x}", u16::from_be(p))?,
                    Attr::McDisabled(v) => write!(f, "mcast_disabled {v}")?,
                    Attr::BridgeMrouter(v) => write!(f, "bridge_mrouter {v}")?,
                    Attr::Other => f.write_str("other")?,
                }
            }
            Event::Netdev(n) => {
                write!(f, "netdev {} {} ({}) mtu {}", snake(&n.event), n.name, n.ifindex, n.mtu)?;
                if let Some(o) = n.old_mtu {
                    write!(f, " old_mtu {o}")?;
                }
                if let Some((u, linking, master)) = n.upper {
                    write!(
                        f,
                        " {} upper {u}{}",
                        if linking { "link" } else { "unlink" },
                        if master { " master" } else { "" }
                    )?;
                }
                if !n.addr.is_empty() {
                    write!(f, " addr {}", Mac(&n.addr))?;
                }
            }
            Event::Neigh(n) => {
                match n.dst {
                    Some(d) => write!(f, "neigh {d}")?,
                    None => write!(f, "neigh ?")?,
                }
                write!(f, " dev {} lladdr {} nud 0x{:02x}", n.ifindex, Mac(&n.lladdr), n.state)?;
                if n.dead {
                    f.write_str(" dead")?;
                }
            }
            Event::ProbeTime(p) => write!(
                f,
                "neigh parms dev {} family {} delay_probe_time {}",
                p.ifindex, p.family, p.delay_probe_time
            )?,
            Event::MpathHash(h) => write!(
                f,
                "{} multipath hash policy {} fields 0x{:x}",
                if h.v6 { "ipv6" } else { "ipv4" },
                h.policy,
                h.fields
            )?,
        }
        match self.meta.ret {
            Some(0) | None => {}
            Some(e) => write!(f, " ret {e}")?,
        }
        if self.meta.tracepoint {
            f.write_str(" (tracepoint)")?;
        }
        if self.meta.truncated {
            f.write_str(" (truncated)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: a repr(C) struct of integers, read as bytes.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
    }

    #[test]
    fn fib4_with_paths() {
        let mut r = RawFib4 {
            hdr: RawHdr { kind: NTF_FIB4, event: 1, flags: NTF_F_RET, ..Default::default() },
            dst: [10, 1, 0, 0],
            tb_id: 254,
            dst_len: 16,
            nhs: 2,
            ..Default::default()
        };
        r.nh[0] = RawNh {
            gw: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ifindex: 3,
            weight: 1,
            gw_family: 2,
            flags: 0,
            pad: [0; 2],
        };
        r.nh[1] = RawNh { ifindex: 4, weight: 2, flags: 0x11, ..Default::default() };
        let rec = Record::decode(&bytes(&r)).expect("decodes");
        let Event::Fib(e) = &rec.event else { panic!("{rec:?}") };
        assert_eq!(e.event, FibEvent::Replace);
        assert_eq!(e.dst, "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(e.nexthops.len(), 2);
        assert_eq!(e.nexthops[0].gateway, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(rec.meta.ret, Some(0));
        let text = rec.to_string();
        assert!(text.contains("10.1.0.0/16") && text.contains("dead linkdown"), "{text}");
    }

    #[test]
    fn short_and_unknown_records_are_refused() {
        let h = RawHdr { kind: NTF_FIB4, event: 1, ..Default::default() };
        assert!(matches!(Record::decode(&bytes(&h)), Err(DecodeError::Short { .. })));
        let h = RawHdr { kind: 99, ..Default::default() };
        assert_eq!(Record::decode(&bytes(&h)), Err(DecodeError::UnknownKind(99)));
        let r = RawMpathHash {
            hdr: RawHdr { kind: NTF_MPATH_HASH, event: 9, ..Default::default() },
            ..Default::default()
        };
        assert!(matches!(Record::decode(&bytes(&r)), Err(DecodeError::UnknownEvent { .. })));
        assert!(Record::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn fdb_move_is_two_records() {
        let del = RawFdb {
            hdr: RawHdr { kind: NTF_FDB, event: 4, ifindex: 5, ..Default::default() },
            addr: [2, 0, 0, 0, 0, 1],
            vid: 10,
            ..Default::default()
        };
        let rec = Record::decode(&bytes(&del)).unwrap();
        let Event::Fdb(f) = &rec.event else { panic!() };
        assert_eq!((f.event, f.ifindex, f.vid), (FdbEvent::DelToDevice, 5, 10));
        assert!(rec.to_string().starts_with("fdb del_to_device dev 5 02:00:00:00:00:01 vlan 10"), "{rec}");
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["event"]["type"], "fdb");
        assert_eq!(json["event"]["event"], "del_to_device");
    }
}
