//! Shared helpers of the agent's in-process tests.
#![allow(dead_code)]

use dpu_agent::{board, Engine};
use dpu_hw::{MmioHal, Region};
use dpu_wire::*;

pub fn engine() -> Engine<MmioHal> {
    let region = Region::anonymous(&board::layout()).expect("anonymous region");
    Engine::new(MmioHal::new(region), false)
}

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> Ip {
    Ip::V4([a, b, c, d])
}

pub fn route_obj(table: u32, dst: Ip, len: u8, nh: u32) -> Op {
    Op::Upsert(Object::Route(Route {
        key: RouteKey { table, dst: Prefix::new(dst, len), metric: 0, ifindex: 0 },
        kind: RouteType::Unicast,
        protocol: 4,
        scope: 0,
        nexthops: RouteNexthops::Object(nh),
    }))
}

pub fn route_paths(dst: Ip, len: u8, paths: &[(u32, Ip, u16)]) -> Op {
    let mut v = heapless::Vec::new();
    for &(ifindex, gw, weight) in paths {
        v.push(Path { ifindex, gateway: Some(gw), weight, onlink: false }).expect("few paths");
    }
    Op::Upsert(Object::Route(Route {
        key: RouteKey { table: 254, dst: Prefix::new(dst, len), metric: 0, ifindex: 0 },
        kind: RouteType::Unicast,
        protocol: 3,
        scope: 0,
        nexthops: RouteNexthops::Paths(v),
    }))
}

pub fn nexthop(id: u32, ifindex: u32, gw: Ip) -> Op {
    Op::Upsert(Object::Nexthop(Nexthop {
        id,
        ifindex,
        gateway: Some(gw),
        blackhole: false,
        onlink: false,
        fdb: false,
    }))
}

pub fn group(id: u32, members: &[(u32, u16)]) -> Op {
    let mut v = heapless::Vec::new();
    for &(id, weight) in members {
        v.push(GroupMember { id, weight }).expect("few members");
    }
    Op::Upsert(Object::NexthopGroup(NexthopGroup { id, members: v, resilient_buckets: None }))
}

pub fn link(ifindex: u32, name: &str) -> Op {
    let mut n = IfName::new();
    n.push_str(name).expect("short name");
    Op::Upsert(Object::Link(Link {
        ifindex,
        name: n,
        kind: LinkKind::Device,
        mtu: 1500,
        mac: Some(Mac([2, 0, 0, 0, 0, ifindex as u8])),
        oper: OperState::Up,
        admin_up: true,
        master: 0,
        parent: 0,
        vlan_id: None,
        vni: None,
    }))
}
