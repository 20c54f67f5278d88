//! Bridge VLAN memberships: a range on the wire, one entry per (port,
//! VID) in the hardware, installed all or nothing.

use super::Engine;
use dpu_hw::layout::*;
use dpu_hw::Hal;
use dpu_wire::*;

impl<H: Hal> Engine<H> {
    pub(super) fn upsert_vlan(&mut self, v: &VlanRange) -> Status {
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

    pub(super) fn delete_vlan(&mut self, v: &VlanKey) -> Status {
        let mut b = [0u8; crate::tables::MAX_ENTRY];
        let n = self.size(TableId::Vlan);
        for vid in v.vid_start..=v.vid_end {
            VlanEntry { ifindex: v.ifindex, vid, pvid: false, untagged: false }.encode(&mut b[..n]);
            self.delete_entry(TableId::Vlan, &b[..n]);
        }
        Status::Ok
    }
}
