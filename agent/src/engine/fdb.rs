//! Bridge FDB entries: one per (VLAN, port, MAC).

use super::Entry;
use dpu_hw::layout::TableId;
use dpu_wire::FdbKey;

pub(super) struct Fdb;

impl Entry for Fdb {
    // Both crates name their FDB entry FdbEntry: the object is the wire's,
    // the entry the hardware's.
    type Object = dpu_wire::FdbEntry;
    type Key = FdbKey;
    const TABLE: TableId = TableId::Fdb;

    fn encode(f: &dpu_wire::FdbEntry, b: &mut [u8]) {
        dpu_hw::layout::FdbEntry {
            ifindex: f.ifindex,
            mac: f.mac,
            vid: f.vid,
            master: f.master,
            is_static: f.is_static,
            remote: f.remote,
            vni: f.vni,
        }
        .encode(b)
    }

    fn probe(f: &FdbKey, b: &mut [u8]) {
        dpu_hw::layout::FdbEntry {
            ifindex: f.ifindex,
            mac: f.mac,
            vid: f.vid,
            master: 0,
            is_static: false,
            remote: None,
            vni: None,
        }
        .encode(b)
    }
}
