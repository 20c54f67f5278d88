//! Routes: one entry per (table, prefix, metric, and for an IPv6
//! link-local route its device) in the family's table.
//! A route forwards through a nexthop or group it holds: an object's, or
//! one the engine creates for its inline paths (a single path is a
//! nexthop, several a group).

use super::{Action, Engine};
use crate::board;
use crate::tables::MAX_ENTRY;
use dpu_hw::layout::*;
use dpu_hw::Hal;
use dpu_wire::*;

/// The table a route of this family lives in.
fn route_table(f: Family) -> TableId {
    match f {
        Family::V4 => TableId::Route4,
        Family::V6 => TableId::Route6,
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
pub fn route_key_of(e: &RouteEntry) -> RouteKey {
    RouteKey { table: e.table, dst: Prefix::new(e.dst, e.plen), metric: e.metric, ifindex: e.in_ifindex }
}

impl<H: Hal> Engine<H> {
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

    pub(super) fn upsert_route(&mut self, r: &Route) -> Status {
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
            in_ifindex: r.key.ifindex,
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
            in_ifindex: k.ifindex,
            rtype: 0,
            proto: 0,
            scope: 0,
            action: 0,
            action_index: 0,
        }
        .encode(&mut b[..n]);
        (t, n)
    }

    pub(super) fn delete_route(&mut self, k: &RouteKey) -> Status {
        let mut b = [0u8; MAX_ENTRY];
        let (t, n) = self.route_probe(k, &mut b);
        let Some(slot) = self.find(t, &b[..n]) else {
            return Status::Ok;
        };
        self.drop_route(t, slot);
        Status::Ok
    }

    pub(super) fn drop_route(&mut self, t: TableId, slot: u32) {
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
}
