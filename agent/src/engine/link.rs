//! Links: one port entry per link, keyed by ifindex; nothing refers to
//! a port entry by slot.

use super::Entry;
use dpu_hw::layout::*;
use dpu_wire::*;

/// The port table's kind.
pub(super) struct Port;

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

impl Entry for Port {
    type Object = Link;
    type Key = u32;
    const TABLE: TableId = TableId::Port;

    fn encode(l: &Link, b: &mut [u8]) {
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
        .encode(b)
    }

    fn probe(&ifindex: &u32, b: &mut [u8]) {
        PortEntry { ifindex, ..Default::default() }.encode(b)
    }
}
