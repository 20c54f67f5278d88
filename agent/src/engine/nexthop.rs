//! Nexthop objects and groups. Routes hold them by slot (counted in the
//! tables' `refs`), a group holds its members; an object in use is not
//! deleted (`InUse`). Entries the engine creates for routes' inline paths
//! (id 0) are shared by content and go with their last reference.

use super::{Action, Engine};
use crate::board;
use crate::tables::MAX_ENTRY;
use dpu_hw::layout::*;
use dpu_hw::Hal;
use dpu_wire::*;

impl<H: Hal> Engine<H> {
    pub(super) fn object_probe(&self, t: TableId, id: u32, b: &mut [u8]) -> usize {
        let n = self.size(t);
        b[..n].fill(0);
        b[4..8].copy_from_slice(&id.to_le_bytes());
        n
    }

    /// Slot of the nexthop or group object with this id.
    pub(super) fn object_slot(&self, t: TableId, id: u32) -> Option<u32> {
        let mut b = [0u8; MAX_ENTRY];
        let n = self.object_probe(t, id, &mut b);
        self.t[t as usize].keys.find(&self.hal, t, &b[..n])
    }

    pub(super) fn upsert_nexthop(&mut self, nh: &Nexthop) -> Status {
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

    pub(super) fn upsert_group(&mut self, g: &NexthopGroup) -> Status {
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

    pub(super) fn delete_object(&mut self, t: TableId, id: u32) -> Status {
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
    pub(super) fn drop_object(&mut self, t: TableId, slot: u32) {
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

    pub(super) fn release_nexthop(&mut self, slot: u32) {
        self.release(TableId::Nexthop, slot)
    }

    /// Drops one reference; an agent-created entry goes with its last.
    pub(super) fn release(&mut self, t: TableId, slot: u32) {
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

    pub(super) fn release_action(&mut self, a: Action) {
        match a.code {
            route_action::NEXTHOP => self.release(TableId::Nexthop, a.index),
            route_action::GROUP => self.release(TableId::Group, a.index),
            _ => {}
        }
    }
}
