//! An independent reader of the hardware region.
//!
//! It decodes the tables from the region's bytes and the layout alone, the
//! way a debugger on the DPU would, and knows nothing of the agent's state.
//! Tests compare what it reads with the host kernel's state.

use crate::layout::*;
use crate::region::Region;
use dpu_wire::types::Ip;
use std::fmt::{self, Write as _};
use std::sync::atomic::Ordering;

/// One valid entry: its slot, decoded contents and counters (zero for
/// tables without counters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row<E> {
    pub slot: u32,
    pub entry: E,
    pub counters: [u64; 4],
}

/// Usage and hardware registers of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableStats {
    pub id: TableId,
    pub capacity: u32,
    pub used: u32,
    pub writes: u64,
    pub invalidates: u64,
}

/// Everything the hardware holds, decoded.
#[derive(Clone, Debug, Default)]
pub struct HwTables {
    pub board: String,
    pub tables: Vec<TableStats>,
    pub ports: Vec<Row<PortEntry>>,
    pub addrs: Vec<Row<AddrEntry>>,
    pub routes: Vec<Row<RouteEntry>>,
    pub nexthops: Vec<Row<NexthopEntry>>,
    pub groups: Vec<Row<GroupEntry>>,
    pub neighs: Vec<Row<NeighEntry>>,
    pub fdb: Vec<Row<FdbEntry>>,
    pub vlans: Vec<Row<VlanEntry>>,
    pub flows: Vec<Row<FlowEntry>>,
    pub switch: Vec<Row<SwitchEntry>>,
}

fn rows<E>(r: &Region, t: TableId, mut decode: impl FnMut(&[u8]) -> Option<E>) -> Vec<Row<E>> {
    let d = *r.desc(t);
    let mut buf = vec![0u8; d.entry_size];
    let mut out = Vec::new();
    for slot in 0..d.capacity {
        if r.read_entry(t, slot, &mut buf) {
            if let Some(entry) = decode(&buf) {
                let mut counters = [0u64; 4];
                for (i, c) in counters.iter_mut().enumerate() {
                    if let Some(a) = r.counter(t, slot, i) {
                        *c = a.load(Ordering::Relaxed);
                    }
                }
                out.push(Row { slot, entry, counters });
            }
        }
    }
    out
}

/// Usage and registers of every table, without decoding entries.
pub fn table_stats(r: &Region) -> Vec<TableStats> {
    TableId::ALL
        .iter()
        .map(|&id| {
            let d = r.desc(id);
            TableStats {
                id,
                capacity: d.capacity,
                used: (0..d.capacity).filter(|&s| r.is_valid(id, s)).count() as u32,
                writes: r.writes_reg(id).load(Ordering::Relaxed),
                invalidates: r.invalidates_reg(id).load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// Reads every valid entry of every table.
pub fn read(r: &Region) -> HwTables {
    let tables = table_stats(r);
    let mut routes = rows(r, TableId::Route4, RouteEntry::decode);
    routes.extend(rows(r, TableId::Route6, RouteEntry::decode));
    HwTables {
        board: r.board().to_string(),
        tables,
        ports: rows(r, TableId::Port, |b| Some(PortEntry::decode(b))),
        addrs: rows(r, TableId::Addr, AddrEntry::decode),
        routes,
        nexthops: rows(r, TableId::Nexthop, |b| Some(NexthopEntry::decode(b))),
        groups: rows(r, TableId::Group, |b| Some(GroupEntry::decode(b))),
        neighs: rows(r, TableId::Neigh, NeighEntry::decode),
        fdb: rows(r, TableId::Fdb, |b| Some(FdbEntry::decode(b))),
        vlans: rows(r, TableId::Vlan, |b| Some(VlanEntry::decode(b))),
        flows: rows(r, TableId::Flow, |b| Some(FlowEntry::decode(b))),
        switch: rows(r, TableId::Switch, |b| Some(SwitchEntry::decode(b))),
    }
}

/// A route's resolved nexthop: gateway, device and weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolvedNexthop {
    pub gateway: Option<Ip>,
    pub ifindex: u32,
    pub weight: u16,
    /// The nexthop object id, 0 for a route's inline path.
    pub id: u32,
}

impl HwTables {
    pub fn stats(&self, t: TableId) -> TableStats {
        self.tables[t as usize]
    }

    fn nexthop_at(&self, slot: u32) -> Option<&NexthopEntry> {
        self.nexthops.iter().find(|r| r.slot == slot).map(|r| &r.entry)
    }

    /// Follows a route's action to the nexthops it forwards through.
    pub fn resolve(&self, route: &RouteEntry) -> Vec<ResolvedNexthop> {
        let one = |slot: u32, weight: u16| {
            self.nexthop_at(slot).map(|n| ResolvedNexthop {
                gateway: n.gateway,
                ifindex: n.ifindex,
                weight,
                id: n.id,
            })
        };
        match route.action {
            route_action::NEXTHOP => one(route.action_index, 1).into_iter().collect(),
            route_action::GROUP => self
                .groups
                .iter()
                .find(|g| g.slot == route.action_index)
                .map(|g| g.entry.members.iter().filter_map(|&(s, w)| one(s, w)).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The group id a route points at, if it uses a group object.
    pub fn group_id_of(&self, route: &RouteEntry) -> Option<u32> {
        match route.action {
            route_action::GROUP => {
                self.groups.iter().find(|g| g.slot == route.action_index).map(|g| g.entry.id)
            }
            route_action::NEXTHOP => self.nexthop_at(route.action_index).map(|n| n.id),
            _ => None,
        }
    }

    pub fn port_name(&self, ifindex: u32) -> String {
        self.ports
            .iter()
            .find(|p| p.entry.ifindex == ifindex)
            .map(|p| p.entry.name_str().to_string())
            .unwrap_or_else(|| format!("if{ifindex}"))
    }
}

fn action_name(a: u8) -> &'static str {
    match a {
        route_action::DROP => "blackhole",
        route_action::NEXTHOP => "nexthop",
        route_action::GROUP => "group",
        route_action::TRAP => "trap",
        route_action::UNREACHABLE => "unreachable",
        route_action::PROHIBIT => "prohibit",
        _ => "?",
    }
}

fn flow_action_text(a: &FlowActionEntry) -> String {
    match a.kind {
        flow_action::DROP => "drop".into(),
        flow_action::PASS => "pass".into(),
        flow_action::REDIRECT => format!("redirect if{}", a.arg),
        flow_action::MIRROR => format!("mirror if{}", a.arg),
        flow_action::VLAN_PUSH => format!("vlan push {} tpid {:#06x}", a.vid, a.arg),
        flow_action::VLAN_POP => "vlan pop".into(),
        flow_action::GOTO => format!("goto chain {}", a.arg),
        k => format!("action{k}"),
    }
}

impl fmt::Display for HwTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "board {}", self.board)?;
        for t in &self.tables {
            writeln!(
                f,
                "  {:<8} {:>8}/{:<8} writes {:<8} invalidates {}",
                t.id.name(),
                t.used,
                t.capacity,
                t.writes,
                t.invalidates
            )?;
        }
        for p in &self.ports {
            let e = &p.entry;
            let mut s = format!("port[{}] {} ifindex {} mtu {}", p.slot, e.name_str(), e.ifindex, e.mtu);
            if let Some(m) = e.mac {
                let _ = write!(s, " mac {m}");
            }
            let _ = write!(s, " {}", if e.oper_up { "up" } else { "down" });
            if e.master != 0 {
                let _ = write!(s, " master {}", self.port_name(e.master));
            }
            if let Some(v) = e.vlan_id {
                let _ = write!(s, " vlan {v}");
            }
            if let Some(v) = e.vni {
                let _ = write!(s, " vni {v}");
            }
            let _ =
                write!(s, " rx {}/{} tx {}/{}", p.counters[0], p.counters[1], p.counters[2], p.counters[3]);
            writeln!(f, "{s}")?;
        }
        for a in &self.addrs {
            let e = &a.entry;
            writeln!(f, "addr[{}] {}/{} dev {}", a.slot, e.addr, e.plen, self.port_name(e.ifindex))?;
        }
        for r in &self.routes {
            let e = &r.entry;
            let mut s = format!(
                "route[{}] table {} {}/{} metric {} {}",
                r.slot,
                e.table,
                e.dst,
                e.plen,
                e.metric,
                action_name(e.action)
            );
            if e.in_ifindex != 0 {
                let _ = write!(s, " iif {}", self.port_name(e.in_ifindex));
            }
            for nh in self.resolve(e) {
                match nh.gateway {
                    Some(g) => {
                        let _ = write!(s, " via {g}");
                    }
                    None => s.push_str(" direct"),
                }
                let _ = write!(s, " dev {} weight {}", self.port_name(nh.ifindex), nh.weight);
            }
            let _ = write!(s, " pkts {} bytes {}", r.counters[0], r.counters[1]);
            writeln!(f, "{s}")?;
        }
        for n in &self.nexthops {
            let e = &n.entry;
            let gw = e.gateway.map(|g| format!("via {g} ")).unwrap_or_default();
            writeln!(
                f,
                "nexthop[{}] id {} {}dev {}{} pkts {}",
                n.slot,
                e.id,
                gw,
                self.port_name(e.ifindex),
                if e.blackhole { " blackhole" } else { "" },
                n.counters[0]
            )?;
        }
        for g in &self.groups {
            let members: Vec<String> = g.entry.members.iter().map(|(s, w)| format!("nh[{s}]x{w}")).collect();
            writeln!(f, "group[{}] id {} {}", g.slot, g.entry.id, members.join(" "))?;
        }
        for n in &self.neighs {
            let e = &n.entry;
            let mac = e.mac.map(|m| m.to_string()).unwrap_or_else(|| "incomplete".into());
            writeln!(
                f,
                "neigh[{}] {} dev {} lladdr {} state {:#x}",
                n.slot,
                e.ip,
                self.port_name(e.ifindex),
                mac,
                e.state
            )?;
        }
        for n in &self.fdb {
            let e = &n.entry;
            let mut s = format!("fdb[{}] {} vlan {} dev {}", n.slot, e.mac, e.vid, self.port_name(e.ifindex));
            if e.master != 0 {
                let _ = write!(s, " master {}", self.port_name(e.master));
            }
            if let Some(r) = e.remote {
                let _ = write!(s, " dst {r}");
            }
            s.push_str(if e.is_static { " static" } else { " dynamic" });
            writeln!(f, "{s}")?;
        }
        for v in &self.vlans {
            let e = &v.entry;
            writeln!(
                f,
                "vlan[{}] dev {} vid {}{}{}",
                v.slot,
                self.port_name(e.ifindex),
                e.vid,
                if e.pvid { " pvid" } else { "" },
                if e.untagged { " untagged" } else { "" }
            )?;
        }
        for r in &self.flows {
            let e = &r.entry;
            let acts: Vec<String> = e.actions.iter().map(flow_action_text).collect();
            writeln!(
                f,
                "flow[{}] cookie {:#x} dev {} chain {} prio {} actions {} pkts {} bytes {}",
                r.slot,
                e.cookie,
                self.port_name(e.ifindex),
                e.chain,
                e.prio,
                acts.join(", "),
                r.counters[0],
                r.counters[1]
            )?;
        }
        for r in &self.switch {
            let e = &r.entry;
            match e.kind {
                switch_kind::ECMP_HASH => writeln!(
                    f,
                    "switch[{}] ecmp hash ipv{} policy {} fields {:#x}",
                    r.slot, e.family, e.value, e.value2
                )?,
                switch_kind::BRIDGE_AGEING => writeln!(
                    f,
                    "switch[{}] bridge {} ageing {} cs",
                    r.slot,
                    self.port_name(e.ifindex),
                    e.value
                )?,
                switch_kind::PORT_STP => writeln!(
                    f,
                    "switch[{}] port {} stp state {}",
                    r.slot,
                    self.port_name(e.ifindex),
                    ["disabled", "listening", "learning", "forwarding", "blocking"]
                        .get(e.value as usize)
                        .unwrap_or(&"?")
                )?,
                k => writeln!(f, "switch[{}] kind {k}", r.slot)?,
            }
        }
        Ok(())
    }
}
