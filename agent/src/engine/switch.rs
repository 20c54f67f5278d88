//! Switch settings (the ECMP hash policy, a bridge's ageing time, a
//! port's STP state): one entry each, keyed by kind, family and ifindex.

use super::Entry;
use dpu_hw::layout::*;
use dpu_wire::*;

pub(super) struct Switch;

impl Entry for Switch {
    type Object = Object;
    type Key = Key;
    const TABLE: TableId = TableId::Switch;

    fn encode(o: &Object, b: &mut [u8]) {
        switch_entry(o).encode(b)
    }

    fn probe(k: &Key, b: &mut [u8]) {
        switch_key(k).encode(b)
    }
}

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
