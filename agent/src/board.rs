//! The board this agent is built for, as compile-time constants generated
//! from `board-configs/<board>.toml` by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/board.rs"));

use dpu_hw::layout::{Layout, TableId};

/// Capacity of the switch settings table.
pub const SWITCH_SETTINGS: u32 = LINKS + 2;

/// The hardware region layout of this board.
pub fn layout() -> Layout {
    let mut capacity = [0u32; TableId::COUNT];
    capacity[TableId::Port as usize] = LINKS;
    capacity[TableId::Addr as usize] = ADDRESSES;
    capacity[TableId::Route4 as usize] = ROUTES_V4;
    capacity[TableId::Route6 as usize] = ROUTES_V6;
    capacity[TableId::Nexthop as usize] = NEXTHOPS;
    capacity[TableId::Group as usize] = NEXTHOP_GROUPS;
    capacity[TableId::Neigh as usize] = NEIGHBOURS;
    capacity[TableId::Fdb as usize] = FDB;
    capacity[TableId::Vlan as usize] = VLANS;
    capacity[TableId::Flow as usize] = FLOWS;
    // One setting per link at most (a bridge's ageing or a port's STP
    // state) and the two ECMP hash settings.
    capacity[TableId::Switch as usize] = SWITCH_SETTINGS;
    Layout { board: NAME.into(), capacity, ecmp_members: ECMP_MEMBERS }
}

/// What the board can offload, for the hello.
pub fn capabilities() -> u32 {
    use dpu_wire::caps;
    let mut c = caps::NEXTHOP_OBJECTS | caps::STATS;
    if ROUTES_V4 > 0 {
        c |= caps::L3_V4;
    }
    if ROUTES_V6 > 0 {
        c |= caps::L3_V6;
    }
    if NEXTHOP_GROUPS > 0 && ECMP_MEMBERS > 1 {
        c |= caps::ECMP;
    }
    if FDB > 0 && VLANS > 0 {
        c |= caps::L2_BRIDGE | caps::VXLAN;
    }
    if FLOWS > 0 {
        c |= caps::FLOWS;
    }
    c
}
