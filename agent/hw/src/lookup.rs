//! The forwarding pipeline of the `qemu-virt` hardware.
//!
//! [`process`] applies the tables in a region to one packet header, the
//! way the DPU's forwarding engine would, and increments the counters it
//! hits. Tests use it as their traffic: a test sends a packet through the
//! model and checks the decision and the counters.
//!
//! The pipeline, in order:
//!
//! 1. ingress port: the port entry of the ingress ifindex (receive counters);
//! 2. flow table (tc flower on ingress): highest priority (lowest `prio`)
//!    matching entry of chain 0, then of any chain a `goto` names; drop,
//!    pass, redirect, mirror, VLAN push/pop;
//! 3. a port enslaved to a bridge is switched: VLAN ingress filtering and
//!    PVID, FDB lookup on (bridge, MAC, VID), egress filtering and tagging,
//!    flood on a miss; a frame to the bridge's own MAC is routed;
//! 4. otherwise the packet is routed: local addresses trap to the host;
//!    longest prefix match over the local table then the packet's table
//!    (ties: lowest metric); a route that names an ingress port (an IPv6
//!    link-local route, one per device) matches only packets from that
//!    port; ECMP member chosen by a hash of the 5-tuple
//!    and the weights; the neighbour entry of the nexthop supplies the
//!    destination MAC, the egress port its source MAC (transmit counters).
//!
//! Tables are scanned like a TCAM: the model favours being obviously
//! correct over speed.

use crate::hal::monotonic_ms;
use crate::layout::*;
use crate::region::Region;
use dpu_wire::objects::NUD_VALID;
use dpu_wire::types::{Family, Ip, Mac};
use std::sync::atomic::Ordering;

/// The header fields the pipeline looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub in_ifindex: u32,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub vlan: Option<u16>,
    pub eth_type: u16,
    pub src_ip: Option<Ip>,
    pub dst_ip: Option<Ip>,
    pub ip_proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// Frame length in bytes, for byte counters.
    pub len: u32,
    /// Routing table of the ingress interface (254 = main).
    pub table: u32,
}

impl Packet {
    /// A UDP/TCP-style IP packet from `src` to `dst` arriving on `in_ifindex`.
    pub fn ip(in_ifindex: u32, dst_mac: Mac, src: Ip, dst: Ip, proto: u8, sport: u16, dport: u16) -> Self {
        Packet {
            in_ifindex,
            src_mac: Mac([0x02, 0, 0, 0, 0, 0xfe]),
            dst_mac,
            vlan: None,
            eth_type: if src.family() == Family::V4 { 0x0800 } else { 0x86dd },
            src_ip: Some(src),
            dst_ip: Some(dst),
            ip_proto: proto,
            src_port: sport,
            dst_port: dport,
            len: 100,
            table: 254,
        }
    }

    /// A non-IP Ethernet frame.
    pub fn l2(in_ifindex: u32, src_mac: Mac, dst_mac: Mac, vlan: Option<u16>) -> Self {
        Packet {
            in_ifindex,
            src_mac,
            dst_mac,
            vlan,
            eth_type: 0x88b5,
            src_ip: None,
            dst_ip: None,
            ip_proto: 0,
            src_port: 0,
            dst_port: 0,
            len: 64,
            table: 254,
        }
    }

    fn flow_key(&self) -> [u8; FLOW_KEY] {
        FlowKey {
            eth_type: self.eth_type,
            ip_proto: self.ip_proto,
            ip_family: family_code(self.dst_ip.map(|i| i.family())),
            vlan_id: self.vlan.unwrap_or(0),
            src_mac: self.src_mac.0,
            dst_mac: self.dst_mac.0,
            src_port: self.src_port,
            dst_port: self.dst_port,
            src_ip: self.src_ip.map(|i| i.to_bytes16()).unwrap_or([0; 16]),
            dst_ip: self.dst_ip.map(|i| i.to_bytes16()).unwrap_or([0; 16]),
        }
        .to_bytes()
    }

    /// The ECMP hash with the kernel's L4 policy (addresses, protocol,
    /// ports): [`Packet::flow_hash_with`] policy 1.
    pub fn flow_hash(&self) -> u32 {
        self.flow_hash_with(1, 0)
    }

    /// The ECMP hash: FNV-1a over the fields the policy names, as the
    /// kernel's fib_multipath_hash does: 0 (and 2, inner headers, which
    /// the model's packets do not have) addresses only, 1 addresses,
    /// protocol and ports, 3 the `fields` bits (`FIB_MULTIPATH_HASH_FIELD_*`:
    /// 0x1 source, 0x2 destination, 0x4 protocol, 0x10 source port, 0x20
    /// destination port; the flow label and inner fields are 0 here).
    pub fn flow_hash_with(&self, policy: u32, fields: u32) -> u32 {
        let f = match policy {
            1 => 0x37,
            3 => fields,
            _ => 0x3,
        };
        let mut h: u32 = 0x811c_9dc5;
        let mut eat = |on: bool, b: &[u8]| {
            for &x in b {
                let x = if on { x } else { 0 };
                h ^= x as u32;
                h = h.wrapping_mul(0x0100_0193);
            }
        };
        eat(f & 0x1 != 0, &self.src_ip.map(|i| i.to_bytes16()).unwrap_or([0; 16]));
        eat(f & 0x2 != 0, &self.dst_ip.map(|i| i.to_bytes16()).unwrap_or([0; 16]));
        eat(f & 0x4 != 0, &[self.ip_proto]);
        eat(f & 0x10 != 0, &self.src_port.to_be_bytes());
        eat(f & 0x20 != 0, &self.dst_port.to_be_bytes());
        // FNV-1a's low bits depend only on the inputs' low bits: finish
        // with a mixer so that `hash % weight` uses every input bit.
        h ^= h >> 16;
        h = h.wrapping_mul(0x7feb_352d);
        h ^= h >> 15;
        h = h.wrapping_mul(0x846c_a68b);
        h ^ (h >> 16)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    UnknownPort,
    /// Dropped by the flow with this cookie.
    Flow(u64),
    VlanFilter,
    /// L2 destination behind the ingress port.
    Hairpin,
    /// A bridge port whose STP state is not forwarding.
    StpBlocked,
    NotIp,
    NoRoute,
    Blackhole,
    Unreachable,
    Prohibit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrapReason {
    /// For the host: a local address or local route.
    Local,
    /// The nexthop's neighbour is not resolved.
    NeighbourMiss,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward {
        ifindex: u32,
        dst_mac: Mac,
        src_mac: Mac,
        vlan: Option<u16>,
        /// Remote VTEP for a VXLAN FDB entry.
        tunnel_dst: Option<Ip>,
    },
    /// Unknown unicast or broadcast in a bridge's VLAN.
    Flood {
        bridge: u32,
        vid: u16,
    },
    Drop(DropReason),
    Trap(TrapReason),
}

/// What happened to a packet and which entries it hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// (table, slot) of the route used.
    pub route: Option<(TableId, u32)>,
    /// Nexthop slot used.
    pub nexthop: Option<u32>,
    /// Cookies of the flow entries hit, in order.
    pub flows: Vec<u64>,
    /// Mirror destinations.
    pub mirrors: Vec<u32>,
}

struct Pipeline<'a> {
    r: &'a Region,
    now: u64,
    out: Outcome,
}

/// Runs one packet through the hardware and counts it.
pub fn process(r: &Region, pkt: &Packet) -> Outcome {
    let mut p = Pipeline {
        r,
        now: monotonic_ms().max(1),
        out: Outcome {
            verdict: Verdict::Drop(DropReason::NoRoute),
            route: None,
            nexthop: None,
            flows: vec![],
            mirrors: vec![],
        },
    };
    p.out.verdict = p.run(pkt.clone());
    if let Verdict::Forward { ifindex, .. } = p.out.verdict {
        if let Some((slot, _)) = p.port(ifindex) {
            p.count(TableId::Port, slot, 2, 1);
            p.count(TableId::Port, slot, 3, pkt.len as u64);
        }
    }
    p.out
}

impl Pipeline<'_> {
    fn entries(&self, t: TableId) -> impl Iterator<Item = (u32, Vec<u8>)> + '_ {
        let d = *self.r.desc(t);
        let mut buf = vec![0u8; d.entry_size];
        (0..d.capacity).filter_map(move |s| {
            if self.r.read_entry(t, s, &mut buf) {
                Some((s, buf.clone()))
            } else {
                None
            }
        })
    }

    fn count(&self, t: TableId, slot: u32, i: usize, v: u64) {
        if let Some(c) = self.r.counter(t, slot, i) {
            c.fetch_add(v, Ordering::Relaxed);
        }
    }

    fn hit(&self, t: TableId, slot: u32, len: u32) {
        self.count(t, slot, 0, 1);
        self.count(t, slot, 1, len as u64);
        if let Some(c) = self.r.counter(t, slot, 2) {
            c.store(self.now, Ordering::Relaxed);
        }
    }

    fn port(&self, ifindex: u32) -> Option<(u32, PortEntry)> {
        self.entries(TableId::Port)
            .map(|(s, b)| (s, PortEntry::decode(&b)))
            .find(|(_, p)| p.ifindex == ifindex)
    }

    fn run(&mut self, mut pkt: Packet) -> Verdict {
        let Some((in_slot, in_port)) = self.port(pkt.in_ifindex) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        self.count(TableId::Port, in_slot, 0, 1);
        self.count(TableId::Port, in_slot, 1, pkt.len as u64);
        // A bridge port that is not forwarding takes nothing in.
        if in_port.master != 0 && !self.forwarding(pkt.in_ifindex) {
            return Verdict::Drop(DropReason::StpBlocked);
        }

        if let Some(v) = self.flows(&mut pkt) {
            return v;
        }
        if in_port.master != 0 {
            if let Some((_, br)) = self.port(in_port.master).filter(|(_, p)| p.kind == port_kind::BRIDGE) {
                return self.switch(&pkt, &br);
            }
        }
        self.route(&pkt)
    }

    /// The flow table; `Some` if a flow decided the packet's fate.
    fn flows(&mut self, pkt: &mut Packet) -> Option<Verdict> {
        let mut chain = 0u32;
        for _ in 0..8 {
            let key = pkt.flow_key();
            let best = self
                .entries(TableId::Flow)
                .map(|(s, b)| (s, FlowEntry::decode(&b)))
                .filter(|(_, f)| f.chain == chain && (f.ifindex == 0 || f.ifindex == pkt.in_ifindex))
                .filter(|(_, f)| {
                    let (k, m) = (f.key.to_bytes(), f.mask.to_bytes());
                    (0..FLOW_KEY).all(|i| key[i] & m[i] == k[i] & m[i])
                })
                .min_by_key(|(s, f)| (f.prio, *s));
            let (slot, flow) = best?;
            self.hit(TableId::Flow, slot, pkt.len);
            self.out.flows.push(flow.cookie);
            let mut next = None;
            for a in &flow.actions {
                match a.kind {
                    flow_action::DROP => {
                        self.count(TableId::Flow, slot, 3, 1);
                        return Some(Verdict::Drop(DropReason::Flow(flow.cookie)));
                    }
                    flow_action::PASS => return None,
                    flow_action::REDIRECT => {
                        return Some(Verdict::Forward {
                            ifindex: a.arg,
                            dst_mac: pkt.dst_mac,
                            src_mac: pkt.src_mac,
                            vlan: pkt.vlan,
                            tunnel_dst: None,
                        })
                    }
                    flow_action::MIRROR => self.out.mirrors.push(a.arg),
                    flow_action::VLAN_PUSH => pkt.vlan = Some(a.vid),
                    flow_action::VLAN_POP => pkt.vlan = None,
                    flow_action::GOTO => {
                        next = Some(a.arg);
                        break;
                    }
                    _ => {}
                }
            }
            chain = next?;
        }
        None
    }

    /// The switch setting of `kind` for `(family, ifindex)`.
    fn setting(&self, kind: u8, family: u8, ifindex: u32) -> Option<SwitchEntry> {
        self.entries(TableId::Switch)
            .map(|(_, b)| SwitchEntry::decode(&b))
            .find(|e| e.kind == kind && e.family == family && e.ifindex == ifindex)
    }

    /// Whether a bridge port's STP state lets it forward (no setting:
    /// forwarding).
    fn forwarding(&self, ifindex: u32) -> bool {
        self.setting(switch_kind::PORT_STP, 0, ifindex).is_none_or(|e| e.value == 3)
    }

    fn vlan_of(&self, ifindex: u32) -> Vec<VlanEntry> {
        self.entries(TableId::Vlan)
            .map(|(_, b)| VlanEntry::decode(&b))
            .filter(|v| v.ifindex == ifindex)
            .collect()
    }

    fn switch(&mut self, pkt: &Packet, br: &PortEntry) -> Verdict {
        let in_vlans = self.vlan_of(pkt.in_ifindex);
        let filtering = !in_vlans.is_empty();
        let vid = if filtering {
            let vid = match pkt.vlan {
                Some(v) => v,
                None => match in_vlans.iter().find(|v| v.pvid) {
                    Some(p) => p.vid,
                    None => return Verdict::Drop(DropReason::VlanFilter),
                },
            };
            if !in_vlans.iter().any(|v| v.vid == vid) {
                return Verdict::Drop(DropReason::VlanFilter);
            }
            vid
        } else {
            0
        };
        if br.mac == Some(pkt.dst_mac) {
            return self.route(pkt);
        }
        let fdb = self
            .entries(TableId::Fdb)
            .map(|(_, b)| FdbEntry::decode(&b))
            .find(|f| f.master == br.ifindex && f.mac == pkt.dst_mac && f.vid == vid);
        let Some(fdb) = fdb else {
            return Verdict::Flood { bridge: br.ifindex, vid };
        };
        if fdb.ifindex == pkt.in_ifindex {
            return Verdict::Drop(DropReason::Hairpin);
        }
        if !self.forwarding(fdb.ifindex) {
            return Verdict::Drop(DropReason::StpBlocked);
        }
        // A bridge without VLAN filtering forwards frames as they came.
        let mut out_vlan = if filtering { None } else { pkt.vlan };
        if filtering {
            match self.vlan_of(fdb.ifindex).into_iter().find(|v| v.vid == vid) {
                None => return Verdict::Drop(DropReason::VlanFilter),
                Some(v) if !v.untagged => out_vlan = Some(vid),
                Some(_) => {}
            }
        }
        Verdict::Forward {
            ifindex: fdb.ifindex,
            dst_mac: pkt.dst_mac,
            src_mac: pkt.src_mac,
            vlan: out_vlan,
            tunnel_dst: fdb.remote,
        }
    }

    fn route(&mut self, pkt: &Packet) -> Verdict {
        let Some(dst) = pkt.dst_ip else {
            return Verdict::Drop(DropReason::NotIp);
        };
        let local =
            self.entries(TableId::Addr).filter_map(|(_, b)| AddrEntry::decode(&b)).any(|a| a.addr == dst);
        if local {
            return Verdict::Trap(TrapReason::Local);
        }
        let t = if dst.family() == Family::V4 { TableId::Route4 } else { TableId::Route6 };
        let lpm = |table: u32| {
            self.entries(t)
                .filter_map(|(s, b)| RouteEntry::decode(&b).map(|r| (s, r)))
                .filter(|(_, r)| {
                    r.table == table
                        && r.dst.family() == dst.family()
                        && dst.masked(r.plen) == r.dst
                        && (r.in_ifindex == 0 || r.in_ifindex == pkt.in_ifindex)
                })
                .min_by_key(|(s, r)| (u8::MAX - r.plen, r.metric, *s))
        };
        let Some((slot, route)) = lpm(255).or_else(|| lpm(pkt.table)) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        self.out.route = Some((t, slot));
        self.hit(t, slot, pkt.len);
        let drop = |p: &Self, reason| {
            p.count(t, slot, 3, 1);
            Verdict::Drop(reason)
        };
        let nh_slot = match route.action {
            route_action::NEXTHOP => route.action_index,
            route_action::GROUP => match self.select(route.action_index, pkt) {
                Some(s) => s,
                None => return drop(self, DropReason::Blackhole),
            },
            route_action::TRAP => return Verdict::Trap(TrapReason::Local),
            route_action::UNREACHABLE => return drop(self, DropReason::Unreachable),
            route_action::PROHIBIT => return drop(self, DropReason::Prohibit),
            _ => return drop(self, DropReason::Blackhole),
        };
        let mut buf = [0u8; 32];
        if !self.r.read_entry(TableId::Nexthop, nh_slot, &mut buf) {
            return drop(self, DropReason::Blackhole);
        }
        let nh = NexthopEntry::decode(&buf);
        self.out.nexthop = Some(nh_slot);
        self.hit(TableId::Nexthop, nh_slot, pkt.len);
        if nh.blackhole {
            self.count(TableId::Nexthop, nh_slot, 3, 1);
            return drop(self, DropReason::Blackhole);
        }
        let target = nh.gateway.unwrap_or(dst);
        let neigh = self.entries(TableId::Neigh).filter_map(|(_, b)| NeighEntry::decode(&b)).find(|n| {
            n.ifindex == nh.ifindex && n.ip == target && n.mac.is_some() && n.state & NUD_VALID != 0
        });
        let Some(mac) = neigh.and_then(|n| n.mac) else {
            return Verdict::Trap(TrapReason::NeighbourMiss);
        };
        let src_mac = self.port(nh.ifindex).and_then(|(_, p)| p.mac).unwrap_or_default();
        Verdict::Forward { ifindex: nh.ifindex, dst_mac: mac, src_mac, vlan: None, tunnel_dst: None }
    }

    /// ECMP: the member whose cumulative weight range holds the hash.
    fn select(&self, group_slot: u32, pkt: &Packet) -> Option<u32> {
        let d = *self.r.desc(TableId::Group);
        let mut buf = vec![0u8; d.entry_size];
        if !self.r.read_entry(TableId::Group, group_slot, &mut buf) {
            return None;
        }
        let n = GroupEntry::member_count(&buf);
        let total: u32 = (0..n).map(|i| GroupEntry::member(&buf, i).1 as u32).sum();
        if total == 0 {
            return None;
        }
        let fam = family_code(pkt.dst_ip.map(|i| i.family()));
        let (policy, fields) =
            self.setting(switch_kind::ECMP_HASH, fam, 0).map(|e| (e.value, e.value2)).unwrap_or((0, 0));
        let mut pick = pkt.flow_hash_with(policy, fields) % total;
        for i in 0..n {
            let (slot, w) = GroupEntry::member(&buf, i);
            if pick < w as u32 {
                return Some(slot);
            }
            pick -= w as u32;
        }
        None
    }
}
