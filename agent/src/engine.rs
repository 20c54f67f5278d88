//! The programming engine: turns mirrored objects into hardware entries.
//!
//! For every update the engine encodes the hardware entry the object needs,
//! finds the slot that holds the object's key (if any) and writes only if
//! the bytes differ: a resync that repeats what the hardware already holds
//! writes nothing. References are counted: a route holds its nexthop or
//! group, a group holds its members; the nexthops and groups the engine
//! creates for routes with inline paths are shared by content and freed
//! with their last route.
//!
//! Snapshots are mark-and-sweep: between begin and end every upsert marks
//! its slot; at the end every unmarked object is removed, dependants first.

use crate::board;
use crate::tables::{Table, MAX_ENTRY};
use dpu_hw::hal::monotonic_ms;
use dpu_hw::layout::*;
// Both crates name their FDB entry FdbEntry: the hardware's is meant here.
use dpu_hw::layout::FdbEntry;
use dpu_hw::Hal;
use dpu_wire::*;

/// What a snapshot did to the hardware.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub unchanged: u32,
    pub written: u32,
    pub removed: u32,
}

/// Engine-wide counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineCounters {
    pub upserts: u64,
    pub deletes: u64,
    pub writes: u64,
    pub unchanged: u64,
    pub invalidates: u64,
}

pub struct Engine<H: Hal> {
    hal: H,
    t: [Table; TableId::COUNT],
    in_snapshot: bool,
    snap: SweepReport,
    /// Where the current stats pass stands: (counted table, slot).
    stats_cursor: (usize, u32),
    pub counters: EngineCounters,
}

/// The table a route of this family lives in.
fn route_table(f: Family) -> TableId {
    match f {
        Family::V4 => TableId::Route4,
        Family::V6 => TableId::Route6,
    }
}

fn link_kind(k: LinkKind) -> u8 {
    match k {
        LinkKind::Device => port_kind::DEVICE,
        LinkKind::Loopback => port_kind::LOOPBACK,
        LinkKind::Bridge => port_kind::BRIDGE,
        LinkKind::Vlan => port_kind::VLAN,
        LinkKind::Vxlan => port_kind::VXLAN,
        LinkKind::Veth => 5,
        LinkKind::Bond => 6,
        LinkKind::Dummy => 7,
        LinkKind::Vrf => 8,
        LinkKind::Other => 9,
    }
}

fn route_type_code(t: RouteType) -> u8 {
    match t {
        RouteType::Unicast => 0,
        RouteType::Blackhole => 1,
        RouteType::Unreachable => 2,
        RouteType::Prohibit => 3,
        RouteType::Local => 4,
    }
}

/// Decodes a route entry's key back into the wire's.
/// The switch setting entry of an ECMP hash, bridge ageing or STP object.
fn switch_entry(o: &Object) -> SwitchEntry {
    match o {
        Object::EcmpHash(h) => SwitchEntry {
            kind: switch_kind::ECMP_HASH,
            family: family_code(Some(h.family)),
            ifindex: 0,
            value: h.policy as u32,
            value2: h.fields,
        },
        Object::BridgeAgeing(a) => SwitchEntry {
            kind: switch_kind::BRIDGE_AGEING,
            family: 0,
            ifindex: a.ifindex,
            value: a.ageing_cs,
            value2: 0,
        },
        Object::PortStp(p) => SwitchEntry {
            kind: switch_kind::PORT_STP,
            family: 0,
            ifindex: p.ifindex,
            value: p.state as u32,
            value2: 0,
        },
        _ => switch_key(&o.key()),
    }
}

/// The key fields of a switch setting entry.
fn switch_key(k: &Key) -> SwitchEntry {
    let (kind, family, ifindex) = match *k {
        Key::EcmpHash(f) => (switch_kind::ECMP_HASH, family_code(Some(f)), 0),
        Key::BridgeAgeing(i) => (switch_kind::BRIDGE_AGEING, 0, i),
        Key::PortStp(i) => (switch_kind::PORT_STP, 0, i),
        _ => (0, 0, 0),
    };
    SwitchEntry { kind, family, ifindex, value: 0, value2: 0 }
}

pub fn route_key_of(e: &RouteEntry) -> RouteKey {
    RouteKey { table: e.table, dst: Prefix::new(e.dst, e.plen), metric: e.metric }
}

fn flow_entry(f: &FlowRule, b: &mut [u8]) {
    let m = &f.matches;
    let (mut k, mut mk) = (FlowKey::default(), FlowKey::default());
    if let Some(v) = m.eth_type {
        k.eth_type = v;
        mk.eth_type = 0xffff;
    }
    if let Some(v) = m.src_mac {
        k.src_mac = v.value.0;
        mk.src_mac = v.mask.0;
    }
    if let Some(v) = m.dst_mac {
        k.dst_mac = v.value.0;
        mk.dst_mac = v.mask.0;
    }
    if let Some(v) = m.vlan_id {
        k.vlan_id = v;
        mk.vlan_id = 0x0fff;
    }
    if let Some(v) = m.ip_proto {
        k.ip_proto = v;
        mk.ip_proto = 0xff;
    }
    for (ip, kv, mv) in
        [(&m.src_ip, &mut k.src_ip, &mut mk.src_ip), (&m.dst_ip, &mut k.dst_ip, &mut mk.dst_ip)]
    {
        if let Some(v) = ip {
            *kv = v.value.to_bytes16();
            *mv = v.mask.to_bytes16();
            k.ip_family = family_code(Some(v.value.family()));
            mk.ip_family = 0xff;
        }
    }
    if let Some(v) = m.src_port {
        k.src_port = v.value;
        mk.src_port = v.mask;
    }
    if let Some(v) = m.dst_port {
        k.dst_port = v.value;
        mk.dst_port = v.mask;
    }
    let mut acts = [FlowActionEntry::default(); FLOW_MAX_ACTIONS];
    let n = f.actions.len().min(FLOW_MAX_ACTIONS);
    for (a, out) in f.actions.iter().zip(acts.iter_mut()) {
        *out = match *a {
            FlowAction::Drop => FlowActionEntry { kind: flow_action::DROP, vid: 0, arg: 0 },
            FlowAction::Pass => FlowActionEntry { kind: flow_action::PASS, vid: 0, arg: 0 },
            FlowAction::Redirect(i) => FlowActionEntry { kind: flow_action::REDIRECT, vid: 0, arg: i },
            FlowAction::Mirror(i) => FlowActionEntry { kind: flow_action::MIRROR, vid: 0, arg: i },
            FlowAction::VlanPush { vid, tpid } => {
                FlowActionEntry { kind: flow_action::VLAN_PUSH, vid, arg: tpid as u32 }
            }
            FlowAction::VlanPop => FlowActionEntry { kind: flow_action::VLAN_POP, vid: 0, arg: 0 },
            FlowAction::Goto(c) => FlowActionEntry { kind: flow_action::GOTO, vid: 0, arg: c },
        };
    }
    FlowEntry::encode_parts((f.cookie, f.ifindex, f.chain, f.prio), &k, &mk, &acts[..n], b);
}

/// A route's resolved action: what to write and which reference it holds.
#[derive(Clone, Copy)]
struct Action {
    code: u8,
    index: u32,
}

impl<H: Hal> Engine<H> {
    /// Takes over the hardware. With `warm`, the hardware already holds
    /// entries (the agent restarted while it kept forwarding): the engine
    /// rebuilds its indexes and reference counts from them and keeps them.
    pub fn new(hal: H, warm: bool) -> Self {
        let t = TableId::ALL.map(|id| Table::new(&hal, id));
        let mut e = Engine {
            hal,
            t,
            in_snapshot: false,
            snap: SweepReport::default(),
            stats_cursor: (0, 0),
            counters: EngineCounters::default(),
        };
        if warm {
            e.rebuild();
        }
        e
    }

    pub fn hal(&self) -> &H {
        &self.hal
    }

    /// Capacities as announced in the hello.
    pub fn capacities(&self) -> Capacities {
        Self::per_table(|t| self.t[t as usize].cap, board::ECMP_MEMBERS)
    }

    /// Entries in use per table, in the shape of [`Engine::capacities`].
    pub fn usage(&self) -> Capacities {
        Self::per_table(|t| self.used(t), 0)
    }

    /// One number per table, in the hello's capacities' shape.
    fn per_table(n: impl Fn(TableId) -> u32, ecmp_members: u32) -> Capacities {
        Capacities {
            links: n(TableId::Port),
            addresses: n(TableId::Addr),
            routes_v4: n(TableId::Route4),
            routes_v6: n(TableId::Route6),
            nexthops: n(TableId::Nexthop),
            nexthop_groups: n(TableId::Group),
            ecmp_members,
            neighbours: n(TableId::Neigh),
            fdb: n(TableId::Fdb),
            vlans: n(TableId::Vlan),
            flows: n(TableId::Flow),
        }
    }

    /// Entries in use per table.
    pub fn used(&self, t: TableId) -> u32 {
        let tb = &self.t[t as usize];
        tb.cap - tb.slots.available()
    }

    fn rebuild(&mut self) {
        let mut buf = [0u8; MAX_ENTRY];
        for id in TableId::ALL {
            let size = self.t[id as usize].size;
            let cap = self.t[id as usize].cap;
            for slot in 0..cap {
                if self.hal.read_entry(id, slot, &mut buf[..size]) {
                    self.t[id as usize].index_for_mut(&buf[..size]).insert(&buf[..size], slot);
                    if id.has_counters() {
                        self.t[id as usize].reported[slot as usize] = self.stat_value(id, slot);
                    }
                }
            }
            let hal = &self.hal;
            let mut probe = [0u8; MAX_ENTRY];
            self.t[id as usize].slots.rebuild(|s| hal.read_entry(id, s, &mut probe[..size]));
        }
        // Reference counts: routes hold nexthops and groups, groups hold
        // their members.
        for id in [TableId::Route4, TableId::Route6] {
            let size = self.t[id as usize].size;
            for slot in 0..self.t[id as usize].cap {
                if self.hal.read_entry(id, slot, &mut buf[..size]) {
                    if let Some(r) = RouteEntry::decode(&buf[..size]) {
                        self.hold(Action { code: r.action, index: r.action_index });
                    }
                }
            }
        }
        let gsize = self.t[TableId::Group as usize].size;
        for slot in 0..self.t[TableId::Group as usize].cap {
            if self.hal.read_entry(TableId::Group, slot, &mut buf[..gsize]) {
                for i in 0..GroupEntry::member_count(&buf[..gsize]) {
                    let (m, _) = GroupEntry::member(&buf[..gsize], i);
                    if m < self.t[TableId::Nexthop as usize].cap {
                        self.t[TableId::Nexthop as usize].refs[m as usize] += 1;
                    }
                }
            }
        }
    }

    fn hold(&mut self, a: Action) {
        let t = match a.code {
            route_action::NEXTHOP => TableId::Nexthop,
            route_action::GROUP => TableId::Group,
            _ => return,
        };
        if let Some(r) = self.t[t as usize].refs.get_mut(a.index as usize) {
            *r += 1;
        }
    }

    // ------------------------------------------------------- primitives --

    fn find(&self, t: TableId, entry: &[u8]) -> Option<u32> {
        self.t[t as usize].index_for(entry).find(&self.hal, t, entry)
    }

    fn mark(&mut self, t: TableId, slot: u32) {
        if self.in_snapshot {
            self.t[t as usize].seen.set(slot);
        }
    }

    /// Writes `entry` to `slot` unless the hardware already holds exactly
    /// these bytes.
    fn program(&mut self, t: TableId, slot: u32, entry: &[u8]) {
        let mut cur = [0u8; MAX_ENTRY];
        let size = entry.len();
        let valid = self.hal.read_entry(t, slot, &mut cur[..size]);
        if valid && cur[1..size] == entry[1..] {
            self.counters.unchanged += 1;
            self.snap.unchanged += 1;
        } else {
            self.hal.write_entry(t, slot, entry);
            self.counters.writes += 1;
            self.snap.written += 1;
        }
    }

    /// Installs `entry` in a new slot; `None` if the table is full.
    fn install(&mut self, t: TableId, entry: &[u8]) -> Option<u32> {
        let slot = self.t[t as usize].slots.alloc()?;
        self.hal.clear_counters(t, slot);
        if let Some(r) = self.t[t as usize].reported.get_mut(slot as usize) {
            *r = 0;
        }
        if let Some(r) = self.t[t as usize].refs.get_mut(slot as usize) {
            *r = 0;
        }
        self.hal.write_entry(t, slot, entry);
        self.counters.writes += 1;
        self.snap.written += 1;
        self.t[t as usize].index_for_mut(entry).insert(entry, slot);
        Some(slot)
    }

    /// Removes the entry in `slot` (whose bytes are `entry`).
    fn remove(&mut self, t: TableId, slot: u32, entry: &[u8]) {
        self.hal.invalidate(t, slot);
        self.counters.invalidates += 1;
        self.snap.removed += 1;
        let tb = &mut self.t[t as usize];
        tb.index_for_mut(entry).remove(entry, slot);
        tb.slots.release(slot);
    }

    /// Create-or-replace of an object keyed by its entry's key bytes.
    fn upsert_entry(&mut self, t: TableId, entry: &[u8]) -> Status {
        if self.t[t as usize].cap == 0 {
            return Status::Unsupported;
        }
        let slot = match self.find(t, entry) {
            Some(slot) => {
                self.program(t, slot, entry);
                slot
            }
            None => match self.install(t, entry) {
                Some(s) => s,
                None => return Status::TableFull,
            },
        };
        self.mark(t, slot);
        Status::Ok
    }

    /// Delete by key; deleting an absent key succeeds (idempotent).
    fn delete_entry(&mut self, t: TableId, probe: &[u8]) -> Status {
        if let Some(slot) = self.find(t, probe) {
            let mut cur = [0u8; MAX_ENTRY];
            let size = probe.len();
            self.hal.read_entry(t, slot, &mut cur[..size]);
            self.remove(t, slot, &cur[..size]);
        }
        Status::Ok
    }

    fn size(&self, t: TableId) -> usize {
        self.t[t as usize].size
    }

    // ----------------------------------------------------------- apply --

    /// Applies one update and says how it went.
    pub fn apply(&mut self, op: &Op) -> Status {
        match op {
            Op::Upsert(o) => {
                self.counters.upserts += 1;
                if o.validate().is_err() {
                    return Status::Invalid;
                }
                self.upsert(o)
            }
            Op::Delete(k) => {
                self.counters.deletes += 1;
                if k.validate().is_err() {
                    return Status::Invalid;
                }
                self.delete(k)
            }
        }
    }

    fn upsert(&mut self, o: &Object) -> Status {
        let mut b = [0u8; MAX_ENTRY];
        match o {
            Object::Link(l) => {
                let mut name = [0u8; 16];
                name[..l.name.len()].copy_from_slice(l.name.as_bytes());
                PortEntry {
                    ifindex: l.ifindex,
                    kind: link_kind(l.kind),
                    admin_up: l.admin_up,
                    oper_up: l.oper == OperState::Up || (l.oper == OperState::Unknown && l.admin_up),
                    mtu: l.mtu,
                    master: l.master,
                    parent: l.parent,
                    vlan_id: l.vlan_id,
                    vni: l.vni,
                    mac: l.mac,
                    name,
                }
                .encode(&mut b[..self.size(TableId::Port)]);
                self.upsert_entry(TableId::Port, &b[..self.size(TableId::Port)])
            }
            Object::Address(a) => {
                let n = self.size(TableId::Addr);
                AddrEntry { ifindex: a.ifindex, addr: a.prefix.addr, plen: a.prefix.len, scope: a.scope }
                    .encode(&mut b[..n]);
                self.upsert_entry(TableId::Addr, &b[..n])
            }
            Object::Neighbour(nb) => {
                let n = self.size(TableId::Neigh);
                NeighEntry {
                    ifindex: nb.ifindex,
                    ip: nb.ip,
                    mac: nb.mac,
                    state: nb.state,
                    router: nb.router,
                }
                .encode(&mut b[..n]);
                self.upsert_entry(TableId::Neigh, &b[..n])
            }
            Object::Fdb(f) => {
                let n = self.size(TableId::Fdb);
                FdbEntry {
                    ifindex: f.ifindex,
                    mac: f.mac,
                    vid: f.vid,
                    master: f.master,
                    is_static: f.is_static,
                    remote: f.remote,
                    vni: f.vni,
                }
                .encode(&mut b[..n]);
                self.upsert_entry(TableId::Fdb, &b[..n])
            }
            Object::Flow(f) => {
                let n = self.size(TableId::Flow);
                flow_entry(f, &mut b[..n]);
                self.upsert_entry(TableId::Flow, &b[..n])
            }
            Object::Vlan(v) => self.upsert_vlan(v),
            Object::Route(r) => self.upsert_route(r),
            Object::Nexthop(nh) => self.upsert_nexthop(nh),
            Object::NexthopGroup(g) => self.upsert_group(g),
            Object::EcmpHash(_) | Object::BridgeAgeing(_) | Object::PortStp(_) => {
                let n = self.size(TableId::Switch);
                switch_entry(o).encode(&mut b[..n]);
                self.upsert_entry(TableId::Switch, &b[..n])
            }
        }
    }

    fn delete(&mut self, k: &Key) -> Status {
        let mut b = [0u8; MAX_ENTRY];
        match *k {
            Key::Link(ifindex) => {
                let n = self.size(TableId::Port);
                PortEntry { ifindex, ..Default::default() }.encode(&mut b[..n]);
                self.delete_entry(TableId::Port, &b[..n])
            }
            Key::Address(a) => {
                let n = self.size(TableId::Addr);
                AddrEntry { ifindex: a.ifindex, addr: a.prefix.addr, plen: a.prefix.len, scope: 0 }
                    .encode(&mut b[..n]);
                self.delete_entry(TableId::Addr, &b[..n])
            }
            Key::Neighbour(nk) => {
                let n = self.size(TableId::Neigh);
                NeighEntry { ifindex: nk.ifindex, ip: nk.ip, mac: None, state: 0, router: false }
                    .encode(&mut b[..n]);
                self.delete_entry(TableId::Neigh, &b[..n])
            }
            Key::Fdb(f) => {
                let n = self.size(TableId::Fdb);
                FdbEntry {
                    ifindex: f.ifindex,
                    mac: f.mac,
                    vid: f.vid,
                    master: 0,
                    is_static: false,
                    remote: None,
                    vni: None,
                }
                .encode(&mut b[..n]);
                self.delete_entry(TableId::Fdb, &b[..n])
            }
            Key::Flow(cookie) => {
                let n = self.size(TableId::Flow);
                FlowEntry::encode_parts(
                    (cookie, 0, 0, 0),
                    &FlowKey::default(),
                    &FlowKey::default(),
                    &[],
                    &mut b[..n],
                );
                self.delete_entry(TableId::Flow, &b[..n])
            }
            Key::Vlan(v) => {
                let n = self.size(TableId::Vlan);
                for vid in v.vid_start..=v.vid_end {
                    VlanEntry { ifindex: v.ifindex, vid, pvid: false, untagged: false }.encode(&mut b[..n]);
                    self.delete_entry(TableId::Vlan, &b[..n]);
                }
                Status::Ok
            }
            Key::EcmpHash(_) | Key::BridgeAgeing(_) | Key::PortStp(_) => {
                let n = self.size(TableId::Switch);
                switch_key(k).encode(&mut b[..n]);
                self.delete_entry(TableId::Switch, &b[..n])
            }
            Key::Route(rk) => self.delete_route(&rk),
            Key::Nexthop(id) => self.delete_object(TableId::Nexthop, id),
            Key::NexthopGroup(id) => self.delete_object(TableId::Group, id),
        }
    }

    // ------------------------------------------------------------ vlans --

    fn upsert_vlan(&mut self, v: &VlanRange) -> Status {
        let t = TableId::Vlan;
        let n = self.size(t);
        if self.t[t as usize].cap == 0 {
            return Status::Unsupported;
        }
        let mut b = [0u8; 16];
        let entry = |vid: u16, b: &mut [u8]| {
            VlanEntry { ifindex: v.ifindex, vid, pvid: v.pvid, untagged: v.untagged }.encode(&mut b[..n])
        };
        // All or nothing: count the VIDs that need a new slot first.
        let mut missing = 0u32;
        for vid in v.vid_start..=v.vid_end {
            entry(vid, &mut b);
            if self.find(t, &b[..n]).is_none() {
                missing += 1;
            }
        }
        if missing > self.t[t as usize].slots.available() {
            return Status::TableFull;
        }
        for vid in v.vid_start..=v.vid_end {
            entry(vid, &mut b);
            let s = self.upsert_entry(t, &b[..n]);
            debug_assert_eq!(s, Status::Ok);
        }
        Status::Ok
    }

    // ---------------------------------------------------------- objects --

    fn object_probe(&self, t: TableId, id: u32, b: &mut [u8]) -> usize {
        let n = self.size(t);
        b[..n].fill(0);
        b[4..8].copy_from_slice(&id.to_le_bytes());
        n
    }

    /// Slot of the nexthop or group object with this id.
    fn object_slot(&self, t: TableId, id: u32) -> Option<u32> {
        let mut b = [0u8; MAX_ENTRY];
        let n = self.object_probe(t, id, &mut b);
        self.t[t as usize].keys.find(&self.hal, t, &b[..n])
    }

    fn upsert_nexthop(&mut self, nh: &Nexthop) -> Status {
        if self.object_slot(TableId::Group, nh.id).is_some() {
            return Status::Invalid; // the id is a group's
        }
        let n = self.size(TableId::Nexthop);
        let mut b = [0u8; MAX_ENTRY];
        NexthopEntry {
            id: nh.id,
            ifindex: nh.ifindex,
            gateway: nh.gateway,
            onlink: nh.onlink,
            blackhole: nh.blackhole,
            fdb: nh.fdb,
        }
        .encode(&mut b[..n]);
        self.upsert_entry(TableId::Nexthop, &b[..n])
    }

    fn upsert_group(&mut self, g: &NexthopGroup) -> Status {
        let t = TableId::Group;
        if self.t[t as usize].cap == 0 {
            return Status::Unsupported;
        }
        if g.members.len() > board::ECMP_MEMBERS as usize {
            return Status::Unsupported;
        }
        if self.object_slot(TableId::Nexthop, g.id).is_some() {
            return Status::Invalid; // the id is a nexthop's
        }
        let mut slots = [0u32; MAX_GROUP_MEMBERS];
        for (i, m) in g.members.iter().enumerate() {
            match self.object_slot(TableId::Nexthop, m.id) {
                Some(s) => slots[i] = s,
                None => return Status::NotFound,
            }
        }
        let n = self.size(t);
        let mut b = [0u8; MAX_ENTRY];
        let members = g.members.iter().enumerate().map(|(i, m)| (slots[i], m.weight));
        GroupEntry::encode_members(g.id, g.resilient_buckets.is_some(), members, &mut b[..n]);
        let old = self.find(t, &b[..n]);
        let mut cur = [0u8; MAX_ENTRY];
        if let Some(slot) = old {
            self.hal.read_entry(t, slot, &mut cur[..n]);
        }
        let slot = match old {
            Some(slot) => {
                self.program(t, slot, &b[..n]);
                slot
            }
            None => match self.install(t, &b[..n]) {
                Some(s) => s,
                None => return Status::TableFull,
            },
        };
        // Hold the new members, then let go of the old ones.
        for &s in &slots[..g.members.len()] {
            self.t[TableId::Nexthop as usize].refs[s as usize] += 1;
        }
        if old.is_some() {
            for i in 0..GroupEntry::member_count(&cur[..n]) {
                let (m, _) = GroupEntry::member(&cur[..n], i);
                self.release_nexthop(m);
            }
        }
        self.mark(t, slot);
        Status::Ok
    }

    fn delete_object(&mut self, t: TableId, id: u32) -> Status {
        let Some(slot) = self.object_slot(t, id) else {
            return Status::Ok;
        };
        if self.t[t as usize].refs[slot as usize] > 0 {
            return Status::InUse;
        }
        self.drop_object(t, slot);
        Status::Ok
    }

    /// Removes a nexthop or group entry and lets go of what it holds.
    fn drop_object(&mut self, t: TableId, slot: u32) {
        let n = self.size(t);
        let mut cur = [0u8; MAX_ENTRY];
        if !self.hal.read_entry(t, slot, &mut cur[..n]) {
            return;
        }
        self.remove(t, slot, &cur[..n]);
        if t == TableId::Group {
            for i in 0..GroupEntry::member_count(&cur[..n]) {
                let (m, _) = GroupEntry::member(&cur[..n], i);
                self.release_nexthop(m);
            }
        }
    }

    fn release_nexthop(&mut self, slot: u32) {
        self.release(TableId::Nexthop, slot)
    }

    /// Drops one reference; an agent-created entry goes with its last.
    fn release(&mut self, t: TableId, slot: u32) {
        let Some(r) = self.t[t as usize].refs.get_mut(slot as usize) else {
            return;
        };
        *r = r.saturating_sub(1);
        if *r > 0 {
            return;
        }
        let n = self.size(t);
        let mut cur = [0u8; MAX_ENTRY];
        if self.hal.read_entry(t, slot, &mut cur[..n]) && cur[4..8] == [0, 0, 0, 0] {
            self.drop_object(t, slot);
        }
    }

    fn release_action(&mut self, a: Action) {
        match a.code {
            route_action::NEXTHOP => self.release(TableId::Nexthop, a.index),
            route_action::GROUP => self.release(TableId::Group, a.index),
            _ => {}
        }
    }

    /// Finds or creates the agent-owned nexthop for an inline path, and
    /// holds it.
    fn path_nexthop(&mut self, p: &Path) -> Result<u32, Status> {
        let t = TableId::Nexthop;
        let n = self.size(t);
        let mut b = [0u8; MAX_ENTRY];
        NexthopEntry {
            id: 0,
            ifindex: p.ifindex,
            gateway: p.gateway,
            onlink: p.onlink,
            blackhole: false,
            fdb: false,
        }
        .encode(&mut b[..n]);
        let slot = match self.find(t, &b[..n]) {
            Some(s) => s,
            None => self.install(t, &b[..n]).ok_or(Status::TableFull)?,
        };
        self.t[t as usize].refs[slot as usize] += 1;
        Ok(slot)
    }

    /// Resolves (and holds) what a route forwards through.
    fn route_action(&mut self, r: &Route) -> Result<Action, Status> {
        let a = |code, index| Ok(Action { code, index });
        match (r.kind, &r.nexthops) {
            (RouteType::Blackhole, _) => a(route_action::DROP, 0),
            (RouteType::Unreachable, _) => a(route_action::UNREACHABLE, 0),
            (RouteType::Prohibit, _) => a(route_action::PROHIBIT, 0),
            (RouteType::Local, _) => a(route_action::TRAP, 0),
            (RouteType::Unicast, RouteNexthops::Object(id)) => {
                let act = if let Some(s) = self.object_slot(TableId::Nexthop, *id) {
                    Action { code: route_action::NEXTHOP, index: s }
                } else if let Some(s) = self.object_slot(TableId::Group, *id) {
                    Action { code: route_action::GROUP, index: s }
                } else {
                    return Err(Status::NotFound);
                };
                self.hold(act);
                Ok(act)
            }
            (RouteType::Unicast, RouteNexthops::Paths(paths)) if paths.len() == 1 => {
                let s = self.path_nexthop(&paths[0])?;
                a(route_action::NEXTHOP, s)
            }
            (RouteType::Unicast, RouteNexthops::Paths(paths)) => {
                if paths.len() > board::ECMP_MEMBERS as usize || self.t[TableId::Group as usize].cap == 0 {
                    return Err(Status::Unsupported);
                }
                let mut slots = [0u32; MAX_PATHS];
                for (i, p) in paths.iter().enumerate() {
                    match self.path_nexthop(p) {
                        Ok(s) => slots[i] = s,
                        Err(e) => {
                            for &s in &slots[..i] {
                                self.release_nexthop(s);
                            }
                            return Err(e);
                        }
                    }
                }
                let t = TableId::Group;
                let n = self.size(t);
                let mut b = [0u8; MAX_ENTRY];
                let members = paths.iter().enumerate().map(|(i, p)| (slots[i], p.weight));
                GroupEntry::encode_members(0, false, members, &mut b[..n]);
                let slot = match self.find(t, &b[..n]) {
                    Some(s) => {
                        // The group already holds its members.
                        for &s in &slots[..paths.len()] {
                            self.release_nexthop(s);
                        }
                        s
                    }
                    None => match self.install(t, &b[..n]) {
                        // The new group keeps the references just taken.
                        Some(s) => s,
                        None => {
                            for &s in &slots[..paths.len()] {
                                self.release_nexthop(s);
                            }
                            return Err(Status::TableFull);
                        }
                    },
                };
                self.t[t as usize].refs[slot as usize] += 1;
                a(route_action::GROUP, slot)
            }
            (RouteType::Unicast, RouteNexthops::None) => Err(Status::Invalid),
        }
    }

    fn upsert_route(&mut self, r: &Route) -> Status {
        let t = route_table(r.key.dst.family());
        if self.t[t as usize].cap == 0 {
            return Status::Unsupported;
        }
        let act = match self.route_action(r) {
            Ok(a) => a,
            Err(s) => return s,
        };
        let n = self.size(t);
        let mut b = [0u8; MAX_ENTRY];
        RouteEntry {
            table: r.key.table,
            dst: r.key.dst.addr,
            plen: r.key.dst.len,
            metric: r.key.metric,
            rtype: route_type_code(r.kind),
            proto: r.protocol,
            scope: r.scope,
            action: act.code,
            action_index: act.index,
        }
        .encode(&mut b[..n]);
        let slot = match self.find(t, &b[..n]) {
            Some(slot) => {
                let mut cur = [0u8; MAX_ENTRY];
                self.hal.read_entry(t, slot, &mut cur[..n]);
                self.program(t, slot, &b[..n]);
                // The old action's reference goes after the new one is held,
                // so a shared nexthop is never freed and recreated.
                if let Some(old) = RouteEntry::decode(&cur[..n]) {
                    self.release_action(Action { code: old.action, index: old.action_index });
                }
                slot
            }
            None => match self.install(t, &b[..n]) {
                Some(s) => s,
                None => {
                    self.release_action(act);
                    return Status::TableFull;
                }
            },
        };
        self.mark(t, slot);
        Status::Ok
    }

    fn route_probe(&self, k: &RouteKey, b: &mut [u8]) -> (TableId, usize) {
        let t = route_table(k.dst.family());
        let n = self.size(t);
        RouteEntry {
            table: k.table,
            dst: k.dst.addr,
            plen: k.dst.len,
            metric: k.metric,
            rtype: 0,
            proto: 0,
            scope: 0,
            action: 0,
            action_index: 0,
        }
        .encode(&mut b[..n]);
        (t, n)
    }

    fn delete_route(&mut self, k: &RouteKey) -> Status {
        let mut b = [0u8; MAX_ENTRY];
        let (t, n) = self.route_probe(k, &mut b);
        let Some(slot) = self.find(t, &b[..n]) else {
            return Status::Ok;
        };
        self.drop_route(t, slot);
        Status::Ok
    }

    fn drop_route(&mut self, t: TableId, slot: u32) {
        let n = self.size(t);
        let mut cur = [0u8; MAX_ENTRY];
        if !self.hal.read_entry(t, slot, &mut cur[..n]) {
            return;
        }
        self.remove(t, slot, &cur[..n]);
        if let Some(old) = RouteEntry::decode(&cur[..n]) {
            self.release_action(Action { code: old.action, index: old.action_index });
        }
    }

    // --------------------------------------------------------- snapshot --

    pub fn begin_snapshot(&mut self) {
        for tb in self.t.iter_mut() {
            tb.seen.clear_all();
        }
        self.in_snapshot = true;
        self.snap = SweepReport::default();
    }

    /// Forgets an unfinished snapshot without sweeping.
    pub fn abandon_snapshot(&mut self) {
        self.in_snapshot = false;
    }

    pub fn in_snapshot(&self) -> bool {
        self.in_snapshot
    }

    /// Removes everything the snapshot did not mention, dependants first.
    pub fn end_snapshot(&mut self) -> SweepReport {
        const ORDER: [TableId; 11] = [
            TableId::Switch,
            TableId::Flow,
            TableId::Route4,
            TableId::Route6,
            TableId::Group,
            TableId::Nexthop,
            TableId::Neigh,
            TableId::Fdb,
            TableId::Vlan,
            TableId::Addr,
            TableId::Port,
        ];
        let mut cur = [0u8; MAX_ENTRY];
        for t in ORDER {
            let n = self.size(t);
            for slot in 0..self.t[t as usize].cap {
                if self.t[t as usize].seen.get(slot) || !self.hal.read_entry(t, slot, &mut cur[..n]) {
                    continue;
                }
                match t {
                    TableId::Route4 | TableId::Route6 => self.drop_route(t, slot),
                    TableId::Group | TableId::Nexthop => {
                        // Agent-owned entries follow their routes; objects
                        // go unless something the snapshot kept holds them.
                        if cur[4..8] != [0, 0, 0, 0] && self.t[t as usize].refs[slot as usize] == 0 {
                            self.drop_object(t, slot);
                        }
                    }
                    _ => self.remove(t, slot, &cur[..n]),
                }
            }
        }
        self.in_snapshot = false;
        self.snap
    }

    // ------------------------------------------------------------ stats --

    fn stat_value(&self, t: TableId, slot: u32) -> u64 {
        let c = self.hal.read_counters(t, slot);
        if t == TableId::Port {
            c[0].wrapping_add(c[2])
        } else {
            c[0]
        }
    }

    /// Starts the next stats pass from the first table.
    pub fn restart_stats(&mut self) {
        self.stats_cursor = (0, 0);
    }

    /// Calls `emit` with the counters of objects whose counters moved
    /// since they were last reported (or of every counted object, with
    /// `all`), visiting at most `budget` slots from where the previous call
    /// stopped. Returns true once the pass over all tables is complete.
    pub fn collect_stats(&mut self, all: bool, budget: u32, mut emit: impl FnMut(StatEntry)) -> bool {
        const COUNTED: [TableId; 5] =
            [TableId::Port, TableId::Route4, TableId::Route6, TableId::Nexthop, TableId::Flow];
        let now = monotonic_ms();
        let mut cur = [0u8; MAX_ENTRY];
        let mut left = budget;
        while let Some(&t) = COUNTED.get(self.stats_cursor.0) {
            let n = self.size(t);
            let cap = self.t[t as usize].cap;
            while self.stats_cursor.1 < cap {
                if left == 0 {
                    return false;
                }
                left -= 1;
                let slot = self.stats_cursor.1;
                self.stats_cursor.1 += 1;
                let v = self.stat_value(t, slot);
                if !all && v == self.t[t as usize].reported[slot as usize] {
                    continue;
                }
                if !self.hal.read_entry(t, slot, &mut cur[..n]) {
                    continue;
                }
                let key = match t {
                    TableId::Port => StatKey::Port(PortEntry::decode(&cur[..n]).ifindex),
                    TableId::Route4 | TableId::Route6 => match RouteEntry::decode(&cur[..n]) {
                        Some(r) => StatKey::Route(route_key_of(&r)),
                        None => continue,
                    },
                    TableId::Nexthop => match NexthopEntry::decode(&cur[..n]).id {
                        0 => continue,
                        id => StatKey::Nexthop(id),
                    },
                    _ => StatKey::Flow(FlowEntry::cookie_of(&cur[..n])),
                };
                self.t[t as usize].reported[slot as usize] = v;
                let c = self.hal.read_counters(t, slot);
                let (tx_packets, tx_bytes, idle_ms) = if t == TableId::Port {
                    (c[2], c[3], u32::MAX)
                } else if c[2] == 0 {
                    (0, 0, u32::MAX)
                } else {
                    (0, 0, now.saturating_sub(c[2]).min(u32::MAX as u64 - 1) as u32)
                };
                emit(StatEntry { key, packets: c[0], bytes: c[1], idle_ms, tx_packets, tx_bytes });
            }
            self.stats_cursor = (self.stats_cursor.0 + 1, 0);
        }
        self.stats_cursor = (0, 0);
        true
    }
}
