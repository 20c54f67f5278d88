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
//!
//! One module per object kind, the netdevsim way: the kinds that are one
//! entry with no references (links, addresses, neighbours, FDB, flows,
//! switch settings) implement [`Entry`] (their table, their entry, the
//! key-only probe a delete looks up); VLAN ranges, nexthop objects and
//! groups, and routes, which hold references, have their own upsert and
//! delete in their module. This file holds what they share: the tables,
//! the write primitives (write only what differs, install, remove), the
//! reference counts, the snapshot sweep and the stats pass.

mod addr;
mod fdb;
mod flow;
mod link;
mod neigh;
mod nexthop;
mod route;
mod switch;
mod vlan;

pub use route::route_key_of;

use crate::board;
use crate::tables::{Table, MAX_ENTRY};
use dpu_hw::hal::monotonic_ms;
use dpu_hw::layout::*;
use dpu_hw::Hal;
use dpu_wire::*;

/// An object kind that is one hardware entry and refers to nothing.
trait Entry {
    /// The wire object.
    type Object;
    /// Its key on the wire (what a delete names).
    type Key;
    /// The table its entries live in.
    const TABLE: TableId;
    /// The entry for `o`, into `b` (the table's entry size, zeroed by the
    /// entry's own encoding).
    fn encode(o: &Self::Object, b: &mut [u8]);
    /// An entry with only `k`'s key fields set: what a delete looks up.
    fn probe(k: &Self::Key, b: &mut [u8]);
}

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
        match o {
            Object::Link(l) => self.upsert_plain::<link::Port>(l),
            Object::Address(a) => self.upsert_plain::<addr::Addr>(a),
            Object::Neighbour(nb) => self.upsert_plain::<neigh::Neigh>(nb),
            Object::Fdb(f) => self.upsert_plain::<fdb::Fdb>(f),
            Object::Flow(f) => self.upsert_plain::<flow::Flow>(f),
            Object::EcmpHash(_) | Object::BridgeAgeing(_) | Object::PortStp(_) => {
                self.upsert_plain::<switch::Switch>(o)
            }
            Object::Vlan(v) => self.upsert_vlan(v),
            Object::Route(r) => self.upsert_route(r),
            Object::Nexthop(nh) => self.upsert_nexthop(nh),
            Object::NexthopGroup(g) => self.upsert_group(g),
        }
    }

    fn delete(&mut self, k: &Key) -> Status {
        match k {
            Key::Link(ifindex) => self.delete_plain::<link::Port>(ifindex),
            Key::Address(a) => self.delete_plain::<addr::Addr>(a),
            Key::Neighbour(nk) => self.delete_plain::<neigh::Neigh>(nk),
            Key::Fdb(f) => self.delete_plain::<fdb::Fdb>(f),
            Key::Flow(cookie) => self.delete_plain::<flow::Flow>(cookie),
            Key::EcmpHash(_) | Key::BridgeAgeing(_) | Key::PortStp(_) => {
                self.delete_plain::<switch::Switch>(k)
            }
            Key::Vlan(v) => self.delete_vlan(v),
            Key::Route(rk) => self.delete_route(rk),
            Key::Nexthop(id) => self.delete_object(TableId::Nexthop, *id),
            Key::NexthopGroup(id) => self.delete_object(TableId::Group, *id),
        }
    }

    /// Upsert of a kind that is one entry with no references.
    fn upsert_plain<K: Entry>(&mut self, o: &K::Object) -> Status {
        let n = self.size(K::TABLE);
        let mut b = [0u8; MAX_ENTRY];
        K::encode(o, &mut b[..n]);
        self.upsert_entry(K::TABLE, &b[..n])
    }

    /// Delete of a kind that is one entry with no references.
    fn delete_plain<K: Entry>(&mut self, k: &K::Key) -> Status {
        let n = self.size(K::TABLE);
        let mut b = [0u8; MAX_ENTRY];
        K::probe(k, &mut b[..n]);
        self.delete_entry(K::TABLE, &b[..n])
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
