//! The forwarding model end to end: entries written through `MmioHal`
//! with the layout encoders, packets sent through `lookup::process`,
//! decisions and counters checked, tables read back with `reader`.

use dpu_hw::layout::*;
use dpu_hw::lookup::{process, DropReason, Outcome, Packet, TrapReason, Verdict};
use dpu_hw::reader::{self, ResolvedNexthop};
use dpu_hw::{Hal, Layout, MmioHal, Region, TableId};
use dpu_wire::types::{Ip, Mac};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

// ------------------------------------------------------------ helpers --

const ECMP: u32 = 8;

fn layout() -> Layout {
    //                 port addr r4  r6  nh  grp neigh fdb vlan flow
    Layout { board: "t".into(), capacity: [16, 16, 32, 32, 32, 8, 32, 32, 64, 32, 8], ecmp_members: ECMP }
}

fn mac(a: u8, b: u8) -> Mac {
    Mac([0x02, 0, 0, 0, a, b])
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Ip {
    Ip::V4([a, b, c, d])
}

fn v6(segs: [u16; 8]) -> Ip {
    let mut b = [0u8; 16];
    for (i, s) in segs.iter().enumerate() {
        b[2 * i..2 * i + 2].copy_from_slice(&s.to_be_bytes());
    }
    Ip::V6(b)
}

fn name16(s: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    n[..s.len()].copy_from_slice(s.as_bytes());
    n
}

// Route types as `dpu_wire::RouteType` declaration indices.
const RT_UNICAST: u8 = 0;
const RT_BLACKHOLE: u8 = 1;
const RT_UNREACHABLE: u8 = 2;
const RT_PROHIBIT: u8 = 3;
const RT_LOCAL: u8 = 4;

struct Hw {
    hal: MmioHal,
}

impl Hw {
    fn new() -> Self {
        Hw { hal: MmioHal::new(Region::anonymous(&layout()).expect("anonymous region")) }
    }

    fn region(&self) -> &Region {
        self.hal.region()
    }

    fn put(&mut self, t: TableId, slot: u32, encode: impl FnOnce(&mut [u8])) {
        let mut b = vec![0u8; self.hal.entry_size(t)];
        encode(&mut b);
        self.hal.write_entry(t, slot, &b);
    }

    fn port(&mut self, slot: u32, ifindex: u32, name: &str, kind: u8, mac: Option<Mac>, master: u32) {
        let e = PortEntry {
            ifindex,
            kind,
            admin_up: true,
            oper_up: true,
            mtu: 1500,
            master,
            mac,
            name: name16(name),
            ..Default::default()
        };
        self.put(TableId::Port, slot, |b| e.encode(b));
    }

    fn addr(&mut self, slot: u32, ifindex: u32, addr: Ip, plen: u8) {
        let e = AddrEntry { ifindex, addr, plen, scope: 0 };
        self.put(TableId::Addr, slot, |b| e.encode(b));
    }

    #[allow(clippy::too_many_arguments)]
    fn route_full(
        &mut self,
        slot: u32,
        table: u32,
        dst: Ip,
        plen: u8,
        metric: u32,
        rtype: u8,
        action: u8,
        idx: u32,
    ) {
        let e = RouteEntry {
            table,
            dst,
            plen,
            metric,
            in_ifindex: 0,
            rtype,
            proto: 4,
            scope: 0,
            action,
            action_index: idx,
        };
        let t = if matches!(dst, Ip::V4(_)) { TableId::Route4 } else { TableId::Route6 };
        self.put(t, slot, |b| e.encode(b));
    }

    /// A main-table unicast route through nexthop slot `nh`.
    fn route(&mut self, slot: u32, dst: Ip, plen: u8, metric: u32, nh: u32) {
        self.route_full(slot, 254, dst, plen, metric, RT_UNICAST, route_action::NEXTHOP, nh);
    }

    fn nexthop(&mut self, slot: u32, id: u32, ifindex: u32, gateway: Option<Ip>) {
        let e = NexthopEntry { id, ifindex, gateway, onlink: false, blackhole: false, fdb: false };
        self.put(TableId::Nexthop, slot, |b| e.encode(b));
    }

    fn group(&mut self, slot: u32, id: u32, members: &[(u32, u16)]) {
        let e = GroupEntry { id, resilient: false, members: members.to_vec() };
        self.put(TableId::Group, slot, |b| e.encode(b));
    }

    fn neigh(&mut self, slot: u32, ifindex: u32, ip: Ip, mac: Option<Mac>) {
        let e = NeighEntry { ifindex, ip, mac, state: 0x02, router: false };
        self.put(TableId::Neigh, slot, |b| e.encode(b));
    }

    #[allow(clippy::too_many_arguments)]
    fn fdb(
        &mut self,
        slot: u32,
        ifindex: u32,
        mac: Mac,
        vid: u16,
        master: u32,
        remote: Option<Ip>,
        vni: Option<u32>,
    ) {
        let e = FdbEntry { ifindex, mac, vid, master, is_static: true, remote, vni };
        self.put(TableId::Fdb, slot, |b| e.encode(b));
    }

    fn vlan(&mut self, slot: u32, ifindex: u32, vid: u16, pvid: bool, untagged: bool) {
        let e = VlanEntry { ifindex, vid, pvid, untagged };
        self.put(TableId::Vlan, slot, |b| e.encode(b));
    }

    #[allow(clippy::too_many_arguments)]
    fn flow(
        &mut self,
        slot: u32,
        cookie: u64,
        ifindex: u32,
        chain: u32,
        prio: u16,
        key: FlowKey,
        mask: FlowKey,
        actions: &[(u8, u16, u32)],
    ) {
        let e = FlowEntry {
            cookie,
            ifindex,
            chain,
            prio,
            key,
            mask,
            actions: actions.iter().map(|&(kind, vid, arg)| FlowActionEntry { kind, vid, arg }).collect(),
        };
        self.put(TableId::Flow, slot, |b| e.encode(b));
    }

    fn invalidate(&mut self, t: TableId, slot: u32) {
        self.hal.invalidate(t, slot);
    }

    fn send(&self, p: &Packet) -> Outcome {
        process(self.region(), p)
    }

    fn counters(&self, t: TableId, slot: u32) -> [u64; 4] {
        self.hal.read_counters(t, slot)
    }

    fn counter(&self, t: TableId, slot: u32, i: usize) -> u64 {
        self.region().counter(t, slot, i).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The packet's [packets, bytes, last-hit, drops] with the time replaced
/// by "was hit" (1) or not (0).
fn hits(c: [u64; 4]) -> [u64; 4] {
    [c[0], c[1], (c[2] > 0) as u64, c[3]]
}

fn fwd(ifindex: u32, dst_mac: Mac, src_mac: Mac) -> Verdict {
    Verdict::Forward { ifindex, dst_mac, src_mac, vlan: None, tunnel_dst: None }
}

// Routed topology: eth0..eth3 (ifindex 1..4, port slots 0..3), nexthops
// via 10.0.N.1 on ifindex N+1 (nexthop slots 0..2) with resolved
// neighbours.
const P1: Mac = Mac([0x02, 0, 0, 0, 1, 1]);
const P2: Mac = Mac([0x02, 0, 0, 0, 1, 2]);
const P3: Mac = Mac([0x02, 0, 0, 0, 1, 3]);
const P4: Mac = Mac([0x02, 0, 0, 0, 1, 4]);
const N1: Mac = Mac([0x02, 0, 0, 0, 2, 1]);
const N2: Mac = Mac([0x02, 0, 0, 0, 2, 2]);
const N3: Mac = Mac([0x02, 0, 0, 0, 2, 3]);

fn routed() -> Hw {
    let mut hw = Hw::new();
    for (i, m) in [P1, P2, P3, P4].into_iter().enumerate() {
        hw.port(i as u32, i as u32 + 1, &format!("eth{i}"), port_kind::DEVICE, Some(m), 0);
    }
    for (i, m) in [N1, N2, N3].into_iter().enumerate() {
        let gw = v4(10, 0, i as u8 + 1, 1);
        hw.nexthop(i as u32, i as u32 + 1, i as u32 + 2, Some(gw));
        hw.neigh(i as u32, i as u32 + 2, gw, Some(m));
    }
    hw
}

/// A TCP packet from 192.168.0.2:40000 to `dst`:80 arriving on eth0.
fn pkt(dst: Ip) -> Packet {
    let src = if matches!(dst, Ip::V4(_)) {
        v4(192, 168, 0, 2)
    } else {
        v6([0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2])
    };
    Packet::ip(1, P1, src, dst, 6, 40000, 80)
}

// ---------------------------------------------------------------- L3 --

#[test]
fn lpm_v4_longest_prefix_wins() {
    let mut hw = routed();
    // Slots deliberately out of prefix order.
    hw.route(3, v4(0, 0, 0, 0), 0, 0, 2);
    hw.route(0, v4(10, 0, 0, 0), 8, 0, 0);
    hw.route(7, v4(10, 1, 2, 0), 24, 0, 1);
    hw.route(1, v4(10, 1, 2, 3), 32, 0, 2);
    hw.route(2, v4(10, 1, 0, 0), 16, 0, 1);

    let cases = [
        (v4(10, 1, 2, 3), 1, 2, fwd(4, N3, P4)),
        (v4(10, 1, 2, 4), 7, 1, fwd(3, N2, P3)),
        (v4(10, 1, 200, 1), 2, 1, fwd(3, N2, P3)),
        (v4(10, 200, 0, 1), 0, 0, fwd(2, N1, P2)),
        (v4(192, 0, 2, 55), 3, 2, fwd(4, N3, P4)),
    ];
    for (dst, route, nh, verdict) in cases {
        let o = hw.send(&pkt(dst));
        assert_eq!(o.verdict, verdict, "{dst}");
        assert_eq!(o.route, Some((TableId::Route4, route)), "{dst}");
        assert_eq!(o.nexthop, Some(nh), "{dst}");
        assert!(o.flows.is_empty() && o.mirrors.is_empty());
    }
    for slot in [0, 1, 2, 3, 7] {
        assert_eq!(hits(hw.counters(TableId::Route4, slot)), [1, 100, 1, 0], "route slot {slot}");
    }
    assert_eq!(hits(hw.counters(TableId::Nexthop, 2)), [2, 200, 1, 0]);
    // Ingress port: rx; egress ports: tx.
    assert_eq!(hw.counters(TableId::Port, 0), [5, 500, 0, 0]);
    assert_eq!(hw.counters(TableId::Port, 1), [0, 0, 1, 100]);
    assert_eq!(hw.counters(TableId::Port, 2), [0, 0, 2, 200]);
    assert_eq!(hw.counters(TableId::Port, 3), [0, 0, 2, 200]);

    // Without the default route, an address outside 10/8 has no route.
    hw.invalidate(TableId::Route4, 3);
    let o = hw.send(&pkt(v4(192, 0, 2, 55)));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::NoRoute));
    assert_eq!((o.route, o.nexthop), (None, None));
    // An IPv6 packet never matches IPv4 routes.
    let o = hw.send(&pkt(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn lpm_v6_longest_prefix_wins() {
    let mut hw = routed();
    let ll = v6([0xfe80, 0, 0, 0, 0, 0, 0, 1]);
    let ll2 = v6([0xfe80, 0, 0, 0, 0, 0, 0, 2]);
    let (m1, m2) = (mac(6, 1), mac(6, 2));
    hw.nexthop(10, 11, 2, Some(ll));
    hw.nexthop(11, 12, 3, Some(ll2));
    hw.neigh(10, 2, ll, Some(m1));
    hw.neigh(11, 3, ll2, Some(m2));
    hw.route(5, v6([0, 0, 0, 0, 0, 0, 0, 0]), 0, 1024, 10);
    hw.route(6, v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32, 1024, 11);
    hw.route(4, v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0]), 48, 1024, 10);
    hw.route(9, v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 1]), 128, 1024, 11);
    // An IPv4 default route does not catch IPv6 traffic.
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 0);

    let cases = [
        (v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 1]), 9, fwd(3, m2, P3)),
        (v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 2]), 4, fwd(2, m1, P2)),
        (v6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 1]), 6, fwd(3, m2, P3)),
        (v6([0x2001, 0xdb9, 0, 0, 0, 0, 0, 1]), 5, fwd(2, m1, P2)),
    ];
    for (dst, route, verdict) in cases {
        let o = hw.send(&pkt(dst));
        assert_eq!(o.verdict, verdict, "{dst}");
        assert_eq!(o.route, Some((TableId::Route6, route)), "{dst}");
    }
    for slot in [4, 5, 6, 9] {
        assert_eq!(hits(hw.counters(TableId::Route6, slot)), [1, 100, 1, 0]);
    }
    assert_eq!(hw.counters(TableId::Route4, 0), [0; 4]);
    hw.invalidate(TableId::Route6, 5);
    assert_eq!(
        hw.send(&pkt(v6([0x2001, 0xdb9, 0, 0, 0, 0, 0, 1]))).verdict,
        Verdict::Drop(DropReason::NoRoute)
    );
}

#[test]
fn link_local_routes_match_their_ingress_port_only() {
    let mut hw = routed();
    // fe80::/64 on eth0 (ifindex 1) and on eth1 (ifindex 2), one route per
    // device with the same prefix and metric, each through an on-link
    // nexthop of its device.
    let ll = v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]);
    let host = v6([0xfe80, 0, 0, 0, 0, 0, 0, 5]);
    for (slot, ifindex, nh) in [(1u32, 1u32, 20u32), (2, 2, 21)] {
        hw.nexthop(nh, 100 + nh, ifindex, None);
        hw.neigh(nh, ifindex, host, Some(mac(7, ifindex as u8)));
        let e = RouteEntry {
            table: 254,
            dst: ll,
            plen: 64,
            metric: 256,
            in_ifindex: ifindex,
            rtype: RT_UNICAST,
            proto: 2,
            scope: 0,
            action: route_action::NEXTHOP,
            action_index: nh,
        };
        hw.put(TableId::Route6, slot, |b| e.encode(b));
    }
    let from = |ifindex: u32| {
        let mut p = pkt(host);
        p.in_ifindex = ifindex;
        p
    };
    let o = hw.send(&from(1));
    assert_eq!((o.route, o.verdict), (Some((TableId::Route6, 1)), fwd(1, mac(7, 1), P1)));
    let o = hw.send(&from(2));
    assert_eq!((o.route, o.verdict), (Some((TableId::Route6, 2)), fwd(2, mac(7, 2), P2)));
    // From a port without a link-local route: none of the others match.
    let o = hw.send(&from(3));
    assert_eq!((o.route, o.verdict), (None, Verdict::Drop(DropReason::NoRoute)));
}

#[test]
fn metric_breaks_ties_between_equal_prefixes() {
    let mut hw = routed();
    hw.route(0, v4(10, 0, 0, 0), 8, 100, 0);
    hw.route(5, v4(10, 0, 0, 0), 8, 20, 1);
    hw.route(6, v4(10, 5, 0, 0), 16, 1000, 2);
    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.route, Some((TableId::Route4, 5)), "lowest metric");
    assert_eq!(o.verdict, fwd(3, N2, P3));
    let o = hw.send(&pkt(v4(10, 5, 1, 1)));
    assert_eq!(o.route, Some((TableId::Route4, 6)), "a longer prefix beats a better metric");
    hw.invalidate(TableId::Route4, 5);
    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.route, Some((TableId::Route4, 0)), "the other metric once the best is gone");
    assert_eq!(o.verdict, fwd(2, N1, P2));
}

#[test]
fn local_table_takes_precedence() {
    let mut hw = routed();
    hw.route(0, v4(10, 1, 2, 0), 24, 0, 0);
    hw.route_full(1, 255, v4(10, 1, 2, 3), 32, 0, RT_LOCAL, route_action::TRAP, 0);
    let o = hw.send(&pkt(v4(10, 1, 2, 3)));
    assert_eq!(o.verdict, Verdict::Trap(TrapReason::Local));
    assert_eq!(o.route, Some((TableId::Route4, 1)));
    assert_eq!(o.nexthop, None);
    assert_eq!(hw.send(&pkt(v4(10, 1, 2, 4))).verdict, fwd(2, N1, P2));
    // Any match in table 255 wins, even a shorter prefix than in main.
    hw.route_full(2, 255, v4(10, 0, 0, 0), 8, 0, RT_LOCAL, route_action::TRAP, 0);
    let o = hw.send(&pkt(v4(10, 1, 2, 4)));
    assert_eq!(o.verdict, Verdict::Trap(TrapReason::Local));
    assert_eq!(o.route, Some((TableId::Route4, 2)));
    assert_eq!(hw.counters(TableId::Route4, 1)[0], 1);
    assert_eq!(hw.counters(TableId::Route4, 2)[0], 1);
    assert_eq!(hw.counters(TableId::Route4, 0)[0], 1);
}

#[test]
fn packet_table_selects_the_routing_table() {
    let mut hw = routed();
    hw.route_full(0, 100, v4(10, 0, 0, 0), 8, 0, RT_UNICAST, route_action::NEXTHOP, 0);
    hw.route_full(1, 254, v4(10, 0, 0, 0), 8, 0, RT_UNICAST, route_action::NEXTHOP, 1);
    let mut p = pkt(v4(10, 9, 9, 9));
    assert_eq!(hw.send(&p).route, Some((TableId::Route4, 1)));
    p.table = 100;
    let o = hw.send(&p);
    assert_eq!(o.route, Some((TableId::Route4, 0)));
    assert_eq!(o.verdict, fwd(2, N1, P2));
    p.table = 200;
    assert_eq!(hw.send(&p).verdict, Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn route_types_and_their_actions() {
    let mut hw = routed();
    hw.route_full(0, 254, v4(10, 0, 0, 0), 8, 0, RT_BLACKHOLE, route_action::DROP, 0);
    hw.route_full(1, 254, v4(10, 1, 0, 0), 16, 0, RT_UNREACHABLE, route_action::UNREACHABLE, 0);
    hw.route_full(2, 254, v4(10, 2, 0, 0), 16, 0, RT_PROHIBIT, route_action::PROHIBIT, 0);
    hw.route_full(3, 254, v4(10, 3, 0, 0), 16, 0, RT_LOCAL, route_action::TRAP, 0);
    // A route through a missing nexthop or group, or a blackhole nexthop.
    hw.route_full(4, 254, v4(10, 4, 0, 0), 16, 0, RT_UNICAST, route_action::NEXTHOP, 20);
    hw.route_full(5, 254, v4(10, 5, 0, 0), 16, 0, RT_UNICAST, route_action::GROUP, 3);
    let bh = NexthopEntry { id: 9, ifindex: 0, gateway: None, onlink: false, blackhole: true, fdb: false };
    hw.put(TableId::Nexthop, 21, |b| bh.encode(b));
    hw.route_full(6, 254, v4(10, 6, 0, 0), 16, 0, RT_UNICAST, route_action::NEXTHOP, 21);
    // A group whose members all weigh 0.
    hw.group(4, 50, &[(0, 0), (1, 0)]);
    hw.route_full(7, 254, v4(10, 7, 0, 0), 16, 0, RT_UNICAST, route_action::GROUP, 4);

    let cases = [
        (v4(10, 0, 0, 1), 0, Verdict::Drop(DropReason::Blackhole)),
        (v4(10, 1, 0, 1), 1, Verdict::Drop(DropReason::Unreachable)),
        (v4(10, 2, 0, 1), 2, Verdict::Drop(DropReason::Prohibit)),
        (v4(10, 3, 0, 1), 3, Verdict::Trap(TrapReason::Local)),
        (v4(10, 4, 0, 1), 4, Verdict::Drop(DropReason::Blackhole)),
        (v4(10, 5, 0, 1), 5, Verdict::Drop(DropReason::Blackhole)),
        (v4(10, 6, 0, 1), 6, Verdict::Drop(DropReason::Blackhole)),
        (v4(10, 7, 0, 1), 7, Verdict::Drop(DropReason::Blackhole)),
    ];
    for (dst, slot, verdict) in cases {
        let o = hw.send(&pkt(dst));
        assert_eq!(o.verdict, verdict, "{dst}");
        assert_eq!(o.route, Some((TableId::Route4, slot)));
        assert_eq!(hits(hw.counters(TableId::Route4, slot))[..3], [1, 100, 1], "the route is hit");
    }
    // The blackhole nexthop is hit, nothing is transmitted.
    assert_eq!(hw.counters(TableId::Nexthop, 21)[0], 1);
    for slot in 1..4 {
        assert_eq!(hw.counters(TableId::Port, slot), [0; 4]);
    }
}

/// The layout documents counter 3 of routes and nexthops as drops, but
/// only flows count drops.
#[test]
fn dropping_routes_count_drops() {
    let mut hw = routed();
    hw.route_full(0, 254, v4(10, 0, 0, 0), 8, 0, RT_BLACKHOLE, route_action::DROP, 0);
    hw.route_full(1, 254, v4(10, 1, 0, 0), 16, 0, RT_UNREACHABLE, route_action::UNREACHABLE, 0);
    hw.send(&pkt(v4(10, 0, 0, 1)));
    hw.send(&pkt(v4(10, 1, 0, 1)));
    assert_eq!(hw.counters(TableId::Route4, 0)[3], 1);
    assert_eq!(hw.counters(TableId::Route4, 1)[3], 1);
}

#[test]
fn gateway_nexthop_rewrites_macs() {
    let mut hw = routed();
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 1);
    let mut p = pkt(v4(203, 0, 113, 9));
    p.len = 1400;
    let o = hw.send(&p);
    assert_eq!(o.verdict, fwd(3, N2, P3), "dst MAC of the gateway, src MAC of the egress port");
    assert_eq!(o.nexthop, Some(1));
    assert_eq!(hits(hw.counters(TableId::Nexthop, 1)), [1, 1400, 1, 0]);
    assert_eq!(hw.counters(TableId::Nexthop, 0), [0; 4]);
    assert_eq!(hw.counters(TableId::Port, 0), [1, 1400, 0, 0]);
    assert_eq!(hw.counters(TableId::Port, 2), [0, 0, 1, 1400]);
    // A port without a MAC sends with the zero MAC.
    hw.port(2, 3, "eth2", port_kind::DEVICE, None, 0);
    assert_eq!(hw.send(&p).verdict, fwd(3, N2, Mac::ZERO));
}

#[test]
fn unresolved_neighbour_traps() {
    let mut hw = routed();
    let gw = v4(10, 0, 9, 9);
    hw.nexthop(5, 6, 2, Some(gw));
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 5);
    let p = pkt(v4(203, 0, 113, 9));
    let miss = Verdict::Trap(TrapReason::NeighbourMiss);
    assert_eq!(hw.send(&p).verdict, miss);
    // Known on another port: still a miss.
    hw.neigh(5, 3, gw, Some(mac(9, 9)));
    assert_eq!(hw.send(&p).verdict, miss);
    // Incomplete (no MAC): still a miss.
    hw.neigh(6, 2, gw, None);
    assert_eq!(hw.send(&p).verdict, miss);
    assert_eq!(hw.counters(TableId::Nexthop, 5)[0], 3, "the nexthop is hit");
    assert_eq!(hw.counters(TableId::Port, 1), [0; 4], "nothing transmitted");
    // Resolved.
    hw.neigh(6, 2, gw, Some(mac(9, 8)));
    assert_eq!(hw.send(&p).verdict, fwd(2, mac(9, 8), P2));
    // And unresolved again once invalidated.
    hw.invalidate(TableId::Neigh, 6);
    assert_eq!(hw.send(&p).verdict, miss);
}

/// The neighbour entry carries its NUD state; a FAILED (0x20) or
/// INCOMPLETE (0x01) entry that still holds an old MAC must not be used
/// (`dpu_wire::Neighbour::is_valid`).
#[test]
fn failed_neighbour_is_not_used() {
    let mut hw = routed();
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 0);
    let e = NeighEntry { ifindex: 2, ip: v4(10, 0, 1, 1), mac: Some(N1), state: 0x20, router: false };
    hw.put(TableId::Neigh, 0, |b| e.encode(b));
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).verdict, Verdict::Trap(TrapReason::NeighbourMiss));
}

#[test]
fn directly_connected_route_uses_the_destination_neighbour() {
    let mut hw = routed();
    hw.nexthop(7, 0, 2, None); // inline path of a connected route: id 0
    hw.route(0, v4(10, 0, 1, 0), 24, 0, 7);
    hw.neigh(9, 2, v4(10, 0, 1, 77), Some(mac(7, 7)));
    let o = hw.send(&pkt(v4(10, 0, 1, 77)));
    assert_eq!(o.verdict, fwd(2, mac(7, 7), P2));
    assert_eq!(o.nexthop, Some(7));
    assert_eq!(hw.send(&pkt(v4(10, 0, 1, 78))).verdict, Verdict::Trap(TrapReason::NeighbourMiss));
    // Any resolved neighbour on the device serves, e.g. 10.0.1.1.
    assert_eq!(hw.send(&pkt(v4(10, 0, 1, 1))).verdict, fwd(2, N1, P2));
}

#[test]
fn local_address_traps() {
    let mut hw = routed();
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 0);
    hw.route(1, v4(10, 0, 1, 254), 32, 0, 1);
    let a6 = v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe]);
    hw.addr(0, 2, v4(10, 0, 1, 254), 24);
    hw.addr(1, 2, a6, 64);
    for dst in [v4(10, 0, 1, 254), a6] {
        let o = hw.send(&pkt(dst));
        assert_eq!(o.verdict, Verdict::Trap(TrapReason::Local), "{dst}");
        assert_eq!((o.route, o.nexthop), (None, None), "before any route");
    }
    assert_eq!(hw.counters(TableId::Route4, 1), [0; 4]);
    // Other addresses of the subnet are routed.
    assert_eq!(hw.send(&pkt(v4(10, 0, 1, 253))).route, Some((TableId::Route4, 0)));
    // Not local any more once invalidated.
    hw.invalidate(TableId::Addr, 0);
    let o = hw.send(&pkt(v4(10, 0, 1, 254)));
    assert_eq!(o.route, Some((TableId::Route4, 1)));
    assert_eq!(o.verdict, fwd(3, N2, P3));
}

#[test]
fn unknown_port_and_non_ip() {
    let mut hw = routed();
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 0);
    let mut p = pkt(v4(10, 1, 1, 1));
    p.in_ifindex = 99;
    let o = hw.send(&p);
    assert_eq!(o.verdict, Verdict::Drop(DropReason::UnknownPort));
    assert_eq!(hw.counters(TableId::Route4, 0), [0; 4]);
    let o = hw.send(&Packet::l2(1, mac(1, 1), P1, None));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::NotIp));
    assert_eq!(hw.counters(TableId::Port, 0), [1, 64, 0, 0], "received and counted");
    // An invalidated port is unknown.
    hw.invalidate(TableId::Port, 0);
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).verdict, Verdict::Drop(DropReason::UnknownPort));
    assert_eq!(hw.counters(TableId::Port, 0), [1, 64, 0, 0]);
    // A port enslaved to something other than a bridge routes.
    hw.port(0, 1, "eth0", port_kind::DEVICE, Some(P1), 4);
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).verdict, fwd(2, N1, P2));
}

// -------------------------------------------------------------- ECMP --

fn ecmp_flow(i: u32) -> Packet {
    let src = v4(192, 168, (i >> 8) as u8, i as u8);
    let proto = if i & 1 == 0 { 6 } else { 17 };
    Packet::ip(1, P1, src, v4(203, 0, 113, (i % 7) as u8), proto, 1024 + (i % 5000) as u16, 443)
}

#[test]
fn ecmp_follows_weights() {
    let mut hw = routed();
    hw.group(2, 77, &[(0, 1), (1, 3)]);
    hw.route_full(0, 254, v4(0, 0, 0, 0), 0, 0, RT_UNICAST, route_action::GROUP, 2);
    let n = 4000u32;
    let mut per_nh: HashMap<u32, u32> = HashMap::new();
    for i in 0..n {
        let o = hw.send(&ecmp_flow(i));
        let nh = o.nexthop.expect("a member");
        let expected = if nh == 0 { fwd(2, N1, P2) } else { fwd(3, N2, P3) };
        assert_eq!(o.verdict, expected);
        *per_nh.entry(nh).or_default() += 1;
    }
    let (a, b) = (per_nh[&0], per_nh[&1]);
    println!("ECMP 1:3 over {n} flows: {a} / {b}");
    assert_eq!(a + b, n);
    let share = b as f64 / n as f64;
    assert!((0.65..=0.85).contains(&share), "weight-3 member got {share:.3}");
    assert_eq!(hw.counters(TableId::Nexthop, 0)[0], a as u64);
    assert_eq!(hw.counters(TableId::Nexthop, 1)[0], b as u64);
    assert_eq!(hw.counters(TableId::Route4, 0)[..2], [n as u64, 100 * n as u64]);
    assert_eq!(hw.counters(TableId::Port, 1)[2], a as u64);
    assert_eq!(hw.counters(TableId::Port, 2)[2], b as u64);
}

#[test]
fn ecmp_is_stable_per_flow_and_uses_every_member() {
    let mut hw = routed();
    hw.nexthop(3, 4, 4, Some(v4(10, 0, 4, 1)));
    hw.neigh(3, 4, v4(10, 0, 4, 1), Some(mac(2, 4)));
    hw.group(0, 77, &[(0, 1), (1, 1), (2, 1), (3, 1)]);
    hw.route_full(0, 254, v4(0, 0, 0, 0), 0, 0, RT_UNICAST, route_action::GROUP, 0);
    let mut per_nh: HashMap<u32, u32> = HashMap::new();
    for i in 0..400 {
        let p = ecmp_flow(i * 7919);
        let first = hw.send(&p).nexthop.expect("member");
        for _ in 0..5 {
            assert_eq!(hw.send(&p).nexthop, Some(first), "same flow, same member");
        }
        *per_nh.entry(first).or_default() += 1;
    }
    assert_eq!(per_nh.len(), 4, "{per_nh:?}");
    assert!(per_nh.values().all(|&c| c >= 40), "{per_nh:?}");
    // The flow hash covers the 5-tuple only: MACs, length, ingress don't matter.
    let p = ecmp_flow(3);
    let mut q = p.clone();
    q.src_mac = mac(5, 5);
    q.len = 9000;
    assert_eq!(p.flow_hash(), q.flow_hash());
    assert_eq!(hw.send(&p).nexthop, hw.send(&q).nexthop);
    q.dst_port = 444;
    assert_ne!(p.flow_hash(), q.flow_hash());
    // Removing a member shifts flows to the others, never to it.
    hw.group(0, 77, &[(0, 1), (1, 1), (2, 1)]);
    for i in 0..200 {
        assert_ne!(hw.send(&ecmp_flow(i)).nexthop, Some(3));
    }
}

/// FNV-1a's low k bits depend only on the low k bits of every input byte,
/// and `select` takes `hash % total`: with a power-of-two total weight,
/// flows that differ only in higher bits all land on one member.
#[test]
fn ecmp_spreads_flows_differing_in_high_bits() {
    let mut hw = routed();
    hw.nexthop(3, 4, 4, Some(v4(10, 0, 4, 1)));
    hw.neigh(3, 4, v4(10, 0, 4, 1), Some(mac(2, 4)));
    hw.group(0, 77, &[(0, 1), (1, 1), (2, 1), (3, 1)]);
    hw.route_full(0, 254, v4(0, 0, 0, 0), 0, 0, RT_UNICAST, route_action::GROUP, 0);
    let mut per_nh: HashMap<u32, u32> = HashMap::new();
    for i in 0..1024u32 {
        // 1024 hosts of 10.0.0.0/8, all addresses multiples of 4.
        let src = v4(10, 4 * (i >> 6) as u8, 4 * (i & 63) as u8, 4);
        let p = Packet::ip(1, P1, src, v4(203, 0, 113, 4), 6, 40000, 443);
        *per_nh.entry(hw.send(&p).nexthop.expect("member")).or_default() += 1;
    }
    assert_eq!(per_nh.len(), 4, "all members used: {per_nh:?}");
}

#[test]
fn group_wider_than_the_board_is_truncated() {
    let mut hw = routed();
    let members: Vec<(u32, u16)> = (0..12).map(|i| (i % 3, 1)).collect();
    hw.group(1, 5, &members);
    let t = reader::read(hw.region());
    let g = &t.groups[0];
    assert_eq!(g.slot, 1);
    assert_eq!(g.entry.members.len(), ECMP as usize);
    assert_eq!(g.entry.members[..], members[..ECMP as usize]);
}

// ---------------------------------------------------------------- L2 --

// Bridge br0 (ifindex 10, VLAN filtering) with swp1..swp3 (11..13) and a
// VXLAN port (20); non-filtering bridge br1 (30) with swp5, swp6 (31, 32)
// and vxlan1 (33).
const BR: Mac = Mac([0x02, 0, 0, 0, 0x10, 0]);
const BR1: Mac = Mac([0x02, 0, 0, 0, 0x30, 0]);
const M1: Mac = Mac([0x02, 0xaa, 0, 0, 0, 1]);
const M2: Mac = Mac([0x02, 0xaa, 0, 0, 0, 2]);
const M3: Mac = Mac([0x02, 0xaa, 0, 0, 0, 3]);
const R: Mac = Mac([0x02, 0xaa, 0, 0, 0, 0x20]);
const SRC: Mac = Mac([0x02, 0xbb, 0, 0, 0, 1]);

fn bridged() -> Hw {
    let mut hw = routed();
    hw.port(4, 10, "br0", port_kind::BRIDGE, Some(BR), 0);
    hw.port(5, 11, "swp1", port_kind::DEVICE, Some(mac(0x11, 0)), 10);
    hw.port(6, 12, "swp2", port_kind::DEVICE, Some(mac(0x12, 0)), 10);
    hw.port(7, 13, "swp3", port_kind::DEVICE, Some(mac(0x13, 0)), 10);
    let vx = PortEntry {
        ifindex: 20,
        kind: port_kind::VXLAN,
        admin_up: true,
        oper_up: true,
        mtu: 1450,
        master: 10,
        vni: Some(100),
        mac: Some(mac(0x20, 0)),
        name: name16("vxlan0"),
        ..Default::default()
    };
    hw.put(TableId::Port, 8, |b| vx.encode(b));
    // swp1: 100 tagged, 200 pvid untagged; swp2: 100 tagged, 200
    // untagged; swp3: 100 pvid untagged; vxlan0: 100 untagged.
    hw.vlan(0, 11, 100, false, false);
    hw.vlan(1, 11, 200, true, true);
    hw.vlan(2, 12, 100, false, false);
    hw.vlan(3, 12, 200, false, true);
    hw.vlan(4, 13, 100, true, true);
    hw.vlan(5, 20, 100, false, true);
    hw.fdb(0, 11, M1, 100, 10, None, None);
    hw.fdb(1, 12, M2, 100, 10, None, None);
    hw.fdb(2, 13, M3, 100, 10, None, None);
    hw.fdb(3, 12, M2, 200, 10, None, None);
    hw.fdb(4, 20, R, 100, 10, Some(v4(198, 51, 100, 7)), Some(100));

    hw.port(9, 30, "br1", port_kind::BRIDGE, Some(BR1), 0);
    hw.port(10, 31, "swp5", port_kind::DEVICE, None, 30);
    hw.port(11, 32, "swp6", port_kind::DEVICE, None, 30);
    hw.port(12, 33, "vxlan1", port_kind::VXLAN, None, 30);
    hw.fdb(10, 32, M2, 0, 30, None, None);
    hw.fdb(11, 32, M3, 100, 30, None, None);
    hw.fdb(12, 33, R, 0, 30, Some(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7])), None);
    hw
}

fn l2(in_ifindex: u32, dst: Mac, vlan: Option<u16>) -> Packet {
    Packet::l2(in_ifindex, SRC, dst, vlan)
}

fn sw(ifindex: u32, dst_mac: Mac, vlan: Option<u16>) -> Verdict {
    Verdict::Forward { ifindex, dst_mac, src_mac: SRC, vlan, tunnel_dst: None }
}

#[test]
fn tagged_frame_on_member_vid_is_switched_tagged() {
    let hw = bridged();
    let o = hw.send(&l2(11, M2, Some(100)));
    assert_eq!(o.verdict, sw(12, M2, Some(100)));
    assert_eq!((o.route, o.nexthop), (None, None));
    assert_eq!(hw.counters(TableId::Port, 5), [1, 64, 0, 0]);
    assert_eq!(hw.counters(TableId::Port, 6), [0, 0, 1, 64]);
}

#[test]
fn untagged_egress_member_strips_the_tag() {
    let hw = bridged();
    assert_eq!(hw.send(&l2(11, M3, Some(100))).verdict, sw(13, M3, None));
    assert_eq!(hw.send(&l2(11, M2, Some(200))).verdict, sw(12, M2, None));
}

#[test]
fn untagged_ingress_uses_the_pvid() {
    let hw = bridged();
    // swp1's PVID is 200: M2 in VLAN 200 is behind swp2, untagged there.
    assert_eq!(hw.send(&l2(11, M2, None)).verdict, sw(12, M2, None));
    // swp3's PVID is 100: M2 in VLAN 100 is behind swp2, tagged there.
    assert_eq!(hw.send(&l2(13, M2, None)).verdict, sw(12, M2, Some(100)));
    // swp2 has no PVID: untagged frames are dropped.
    assert_eq!(hw.send(&l2(12, M1, None)).verdict, Verdict::Drop(DropReason::VlanFilter));
}

#[test]
fn non_member_vid_is_filtered() {
    let mut hw = bridged();
    assert_eq!(hw.send(&l2(11, M2, Some(300))).verdict, Verdict::Drop(DropReason::VlanFilter));
    assert_eq!(hw.send(&l2(13, M2, Some(200))).verdict, Verdict::Drop(DropReason::VlanFilter));
    // Egress filtering: a (stale) FDB entry behind a port not in the VLAN.
    hw.fdb(5, 13, M3, 200, 10, None, None);
    assert_eq!(hw.send(&l2(11, M3, Some(200))).verdict, Verdict::Drop(DropReason::VlanFilter));
    assert_eq!(hw.counters(TableId::Port, 7)[2..], [0, 0], "nothing sent to swp3");
    // Removing swp2 from VLAN 100 filters its traffic.
    hw.invalidate(TableId::Vlan, 2);
    assert_eq!(hw.send(&l2(11, M2, Some(100))).verdict, Verdict::Drop(DropReason::VlanFilter));
}

#[test]
fn fdb_miss_floods() {
    let hw = bridged();
    let flood = Verdict::Flood { bridge: 10, vid: 100 };
    assert_eq!(hw.send(&l2(11, mac(0x77, 7), Some(100))).verdict, flood);
    assert_eq!(hw.send(&l2(11, Mac::BROADCAST, Some(100))).verdict, flood);
    assert_eq!(hw.send(&l2(13, Mac::BROADCAST, None)).verdict, flood);
    // M3 is only known in VLAN 100.
    assert_eq!(hw.send(&l2(11, M3, None)).verdict, Verdict::Flood { bridge: 10, vid: 200 });
    assert_eq!(hw.counters(TableId::Port, 5)[0], 3);
    for slot in 6..13 {
        assert_eq!(hw.counters(TableId::Port, slot)[2], 0, "flooding is not counted as tx");
    }
}

#[test]
fn hairpin_is_dropped() {
    let hw = bridged();
    assert_eq!(hw.send(&l2(11, M1, Some(100))).verdict, Verdict::Drop(DropReason::Hairpin));
}

#[test]
fn frame_to_the_bridge_mac_is_routed() {
    let mut hw = bridged();
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 0);
    let mut p = Packet::ip(11, BR, v4(172, 16, 0, 2), v4(203, 0, 113, 1), 17, 5000, 53);
    p.vlan = Some(100);
    let o = hw.send(&p);
    assert_eq!(o.verdict, fwd(2, N1, P2));
    assert_eq!(o.route, Some((TableId::Route4, 0)));
    // Still subject to ingress VLAN filtering.
    p.vlan = Some(300);
    assert_eq!(hw.send(&p).verdict, Verdict::Drop(DropReason::VlanFilter));
    // Non-IP to the bridge's MAC cannot be routed.
    assert_eq!(hw.send(&l2(11, BR, Some(100))).verdict, Verdict::Drop(DropReason::NotIp));
    // An IP packet to another MAC is switched, not routed.
    p.vlan = Some(100);
    p.dst_mac = M2;
    assert_eq!(hw.send(&p).verdict, sw(12, M2, Some(100)).with_src(p.src_mac));
    assert_eq!(hw.counters(TableId::Route4, 0)[0], 1);
}

trait WithSrc {
    fn with_src(self, m: Mac) -> Self;
}

impl WithSrc for Verdict {
    fn with_src(self, m: Mac) -> Self {
        match self {
            Verdict::Forward { ifindex, dst_mac, vlan, tunnel_dst, .. } => {
                Verdict::Forward { ifindex, dst_mac, src_mac: m, vlan, tunnel_dst }
            }
            v => v,
        }
    }
}

#[test]
fn non_filtering_bridge_uses_vid_0() {
    let hw = bridged();
    assert_eq!(hw.send(&l2(31, M2, None)).verdict, sw(32, M2, None));
    // Entries with a VID are not used without filtering: M3 floods in VID 0.
    assert_eq!(hw.send(&l2(31, M3, None)).verdict, Verdict::Flood { bridge: 30, vid: 0 });
    // A tagged frame is looked up in VID 0 as well.
    let o = hw.send(&l2(31, M2, Some(100)));
    assert!(matches!(o.verdict, Verdict::Forward { ifindex: 32, .. }), "{o:?}");
    assert_eq!(hw.send(&l2(32, M2, None)).verdict, Verdict::Drop(DropReason::Hairpin));
    // br1's own MAC routes (no route: dropped as NoRoute / NotIp).
    assert_eq!(hw.send(&l2(31, BR1, None)).verdict, Verdict::Drop(DropReason::NotIp));
}

/// A bridge without VLAN filtering forwards 802.1Q frames unchanged, tag
/// included (Linux `vlan_filtering 0`).
#[test]
fn non_filtering_bridge_keeps_the_tag() {
    let hw = bridged();
    assert_eq!(hw.send(&l2(31, M2, Some(100))).verdict, sw(32, M2, Some(100)));
}

#[test]
fn vxlan_fdb_entry_sets_the_tunnel_destination() {
    let hw = bridged();
    let o = hw.send(&l2(11, R, Some(100)));
    assert_eq!(
        o.verdict,
        Verdict::Forward {
            ifindex: 20,
            dst_mac: R,
            src_mac: SRC,
            vlan: None,
            tunnel_dst: Some(v4(198, 51, 100, 7))
        }
    );
    assert_eq!(hw.counters(TableId::Port, 8), [0, 0, 1, 64]);
    let o = hw.send(&l2(31, R, None));
    assert_eq!(
        o.verdict,
        Verdict::Forward {
            ifindex: 33,
            dst_mac: R,
            src_mac: SRC,
            vlan: None,
            tunnel_dst: Some(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7])),
        }
    );
    // Local ports have no tunnel destination.
    assert!(matches!(hw.send(&l2(11, M2, Some(100))).verdict, Verdict::Forward { tunnel_dst: None, .. }));
}

// ------------------------------------------------------------- flows --

fn tcp_dport(dport: u16, dst: Ip) -> (FlowKey, FlowKey) {
    let d = dst.to_bytes16();
    let key = FlowKey { ip_proto: 6, ip_family: 4, dst_port: dport, dst_ip: d, ..Default::default() };
    let mut dm = [0u8; 16];
    dm[0] = 0xff; // /8
    let mask =
        FlowKey { ip_proto: 0xff, ip_family: 0xff, dst_port: 0xffff, dst_ip: dm, ..Default::default() };
    (key, mask)
}

fn any_key() -> (FlowKey, FlowKey) {
    (FlowKey::default(), FlowKey::default())
}

fn flows_hw() -> Hw {
    let mut hw = routed();
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 0);
    hw
}

const DROP: (u8, u16, u32) = (flow_action::DROP, 0, 0);
const PASS: (u8, u16, u32) = (flow_action::PASS, 0, 0);

#[test]
fn flow_matches_port_proto_and_prefix_and_drops() {
    let mut hw = flows_hw();
    let (k, m) = tcp_dport(80, v4(10, 0, 0, 0));
    hw.flow(3, 0xc0ffee, 0, 0, 1, k, m, &[DROP]);
    let forwarded = fwd(2, N1, P2);

    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::Flow(0xc0ffee)));
    assert_eq!(o.flows, vec![0xc0ffee]);
    assert_eq!(o.route, None);
    assert_eq!(hits(hw.counters(TableId::Flow, 3)), [1, 100, 1, 1]);
    assert_eq!(hw.counter(TableId::Flow, 3, 3), 1);

    let mut p = pkt(v4(10, 1, 1, 1));
    p.dst_port = 443;
    assert_eq!(hw.send(&p).verdict, forwarded, "other port");
    let mut p = pkt(v4(10, 1, 1, 1));
    p.ip_proto = 17;
    assert_eq!(hw.send(&p).verdict, forwarded, "udp");
    assert_eq!(hw.send(&pkt(v4(11, 1, 1, 1))).verdict, forwarded, "outside 10/8");
    let v6p = Packet::ip(1, P1, v6([1, 0, 0, 0, 0, 0, 0, 1]), v6([0x0a00, 0, 0, 0, 0, 0, 0, 1]), 6, 1, 80);
    assert!(hw.send(&v6p).flows.is_empty(), "family is part of the key");

    let mut p = pkt(v4(10, 200, 0, 1));
    p.len = 1500;
    hw.send(&p);
    assert_eq!(hits(hw.counters(TableId::Flow, 3)), [2, 1600, 1, 2]);
    assert_eq!(hw.counters(TableId::Port, 0)[..2], [6, 2000], "dropped packets were received");
    assert_eq!(hw.counters(TableId::Port, 1)[2], 3, "forwarded ones sent");

    hw.invalidate(TableId::Flow, 3);
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).verdict, forwarded, "invalidated flow");
}

#[test]
fn mac_match_with_mask() {
    let mut hw = flows_hw();
    let key = FlowKey { src_mac: [0x02, 0, 0, 0, 0, 0], ..Default::default() };
    let mask = FlowKey { src_mac: [0xff, 0xff, 0xff, 0, 0, 0], ..Default::default() };
    hw.flow(0, 1, 0, 0, 1, key, mask, &[DROP]);
    let mut p = pkt(v4(10, 1, 1, 1));
    p.src_mac = Mac([0x02, 0, 0, 9, 9, 9]);
    assert_eq!(hw.send(&p).verdict, Verdict::Drop(DropReason::Flow(1)));
    p.src_mac = Mac([0x02, 0, 1, 9, 9, 9]);
    assert_eq!(hw.send(&p).verdict, fwd(2, N1, P2));
}

#[test]
fn lowest_prio_wins() {
    let mut hw = flows_hw();
    let (k, m) = any_key();
    hw.flow(0, 10, 0, 0, 10, k, m, &[DROP]);
    hw.flow(1, 5, 0, 0, 5, k, m, &[PASS]);
    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.verdict, fwd(2, N1, P2));
    assert_eq!(o.flows, vec![5]);
    assert_eq!(hw.counters(TableId::Flow, 0), [0; 4]);
    assert_eq!(hits(hw.counters(TableId::Flow, 1)), [1, 100, 1, 0]);
    // Equal priority: the lower slot.
    hw.flow(2, 6, 0, 0, 5, k, m, &[DROP]);
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).flows, vec![5]);
    hw.invalidate(TableId::Flow, 1);
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).verdict, Verdict::Drop(DropReason::Flow(6)));
}

#[test]
fn redirect_forwards_to_the_argument() {
    let mut hw = flows_hw();
    let (mut k, mut m) = any_key();
    k.dst_port = 22;
    m.dst_port = 0xffff;
    hw.flow(0, 22, 0, 0, 1, k, m, &[(flow_action::REDIRECT, 0, 4)]);
    let mut p = pkt(v4(10, 1, 1, 1));
    p.dst_port = 22;
    p.vlan = Some(7);
    let o = hw.send(&p);
    assert_eq!(
        o.verdict,
        Verdict::Forward { ifindex: 4, dst_mac: P1, src_mac: p.src_mac, vlan: Some(7), tunnel_dst: None }
    );
    assert_eq!(o.route, None);
    assert_eq!(hw.counters(TableId::Port, 3), [0, 0, 1, 100]);
    assert_eq!(hw.counters(TableId::Route4, 0), [0; 4]);
}

#[test]
fn goto_continues_in_another_chain() {
    let mut hw = flows_hw();
    let (k, m) = any_key();
    let (mut k22, mut m22) = any_key();
    k22.dst_port = 22;
    m22.dst_port = 0xffff;
    hw.flow(0, 100, 0, 0, 1, k, m, &[(flow_action::GOTO, 0, 7)]);
    hw.flow(1, 107, 0, 7, 1, k22, m22, &[DROP]);
    let mut p = pkt(v4(10, 1, 1, 1));
    p.dst_port = 22;
    let o = hw.send(&p);
    assert_eq!(o.verdict, Verdict::Drop(DropReason::Flow(107)));
    assert_eq!(o.flows, vec![100, 107]);
    // No match in chain 7: normal forwarding.
    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.verdict, fwd(2, N1, P2));
    assert_eq!(o.flows, vec![100]);
    // Chain 7 is only reached through the goto.
    hw.invalidate(TableId::Flow, 0);
    let o = hw.send(&p);
    assert_eq!(o.verdict, fwd(2, N1, P2));
    assert!(o.flows.is_empty());
    // Actions after a goto are not applied.
    hw.flow(0, 100, 0, 0, 1, k, m, &[(flow_action::GOTO, 0, 7), DROP]);
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).verdict, fwd(2, N1, P2));
}

#[test]
fn goto_loops_are_bounded() {
    let mut hw = flows_hw();
    let (k, m) = any_key();
    hw.flow(0, 1, 0, 0, 1, k, m, &[(flow_action::GOTO, 0, 0)]);
    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.verdict, fwd(2, N1, P2));
    assert_eq!(o.flows.len(), 8);
}

#[test]
fn vlan_push_and_pop_change_later_matching() {
    let mut hw = flows_hw();
    let (k, m) = any_key();
    let key42 = FlowKey { vlan_id: 42, ..Default::default() };
    let mask42 = FlowKey { vlan_id: 0x0fff, ..Default::default() };
    hw.flow(0, 1, 0, 0, 1, k, m, &[(flow_action::VLAN_PUSH, 42, 0x8100), (flow_action::GOTO, 0, 1)]);
    hw.flow(1, 2, 0, 1, 1, key42, mask42, &[DROP]);
    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::Flow(2)));
    // Pop instead: a frame tagged 42 no longer matches chain 1.
    hw.flow(0, 1, 0, 0, 1, k, m, &[(flow_action::VLAN_POP, 0, 0), (flow_action::GOTO, 0, 1)]);
    let mut p = pkt(v4(10, 1, 1, 1));
    p.vlan = Some(42);
    let o = hw.send(&p);
    assert_eq!(o.verdict, fwd(2, N1, P2));
    assert_eq!(o.flows, vec![1]);
    // And without the pop it does.
    hw.flow(0, 1, 0, 0, 1, k, m, &[(flow_action::GOTO, 0, 1)]);
    assert_eq!(hw.send(&p).verdict, Verdict::Drop(DropReason::Flow(2)));
}

#[test]
fn vlan_push_changes_the_bridge_vlan() {
    let mut hw = bridged();
    // Untagged on swp1 would be VLAN 200 (PVID); push 100 first.
    let (k, m) = any_key();
    hw.flow(0, 9, 11, 0, 1, k, m, &[(flow_action::VLAN_PUSH, 100, 0x8100)]);
    assert_eq!(hw.send(&l2(11, M2, None)).verdict, sw(12, M2, Some(100)));
    assert_eq!(hw.send(&l2(11, M3, None)).verdict, sw(13, M3, None));
}

#[test]
fn mirror_records_the_destination() {
    let mut hw = flows_hw();
    let (k, m) = any_key();
    hw.flow(0, 1, 0, 0, 1, k, m, &[(flow_action::MIRROR, 0, 4)]);
    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.verdict, fwd(2, N1, P2), "mirroring goes on with the lookup");
    assert_eq!(o.mirrors, vec![4]);
    assert_eq!(o.flows, vec![1]);
    hw.flow(0, 1, 0, 0, 1, k, m, &[(flow_action::MIRROR, 0, 4), (flow_action::MIRROR, 0, 3), DROP]);
    let o = hw.send(&pkt(v4(10, 1, 1, 1)));
    assert_eq!(o.verdict, Verdict::Drop(DropReason::Flow(1)));
    assert_eq!(o.mirrors, vec![4, 3]);
}

#[test]
fn flow_bound_to_another_ingress_does_not_match() {
    let mut hw = flows_hw();
    let (k, m) = any_key();
    hw.flow(0, 2, 2, 0, 1, k, m, &[DROP]);
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).verdict, fwd(2, N1, P2));
    let mut p = pkt(v4(10, 1, 1, 1));
    p.in_ifindex = 2;
    assert_eq!(hw.send(&p).verdict, Verdict::Drop(DropReason::Flow(2)));
    // ifindex 0: every port.
    hw.flow(1, 3, 0, 0, 2, k, m, &[DROP]);
    assert_eq!(hw.send(&pkt(v4(10, 1, 1, 1))).verdict, Verdict::Drop(DropReason::Flow(3)));
    // An unknown port is dropped before the flow table.
    p.in_ifindex = 99;
    assert_eq!(hw.send(&p).verdict, Verdict::Drop(DropReason::UnknownPort));
    assert_eq!(hw.counters(TableId::Flow, 1)[0], 1);
}

// ------------------------------------------------------------ reader --

#[test]
fn reader_returns_exactly_the_valid_entries() {
    let mut hw = bridged();
    hw.addr(0, 2, v4(10, 0, 1, 254), 24);
    hw.addr(3, 2, v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), 64);
    hw.route(0, v4(0, 0, 0, 0), 0, 0, 0);
    hw.route(9, v4(10, 0, 0, 0), 8, 5, 1);
    hw.route(2, v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32, 1024, 2);
    hw.group(3, 55, &[(0, 2), (1, 5)]);
    let (k, m) = tcp_dport(80, v4(10, 0, 0, 0));
    hw.flow(4, 0xabc, 1, 0, 3, k, m, &[DROP, (flow_action::MIRROR, 0, 2)]);
    hw.invalidate(TableId::Route4, 9);
    hw.invalidate(TableId::Fdb, 1);
    hw.invalidate(TableId::Vlan, 0);
    hw.route(0, v4(0, 0, 0, 0), 0, 7, 0); // rewrite in place

    let t = reader::read(hw.region());
    assert_eq!(t.board, "t");
    assert_eq!(t.ports.iter().map(|r| r.slot).collect::<Vec<_>>(), (0..13).collect::<Vec<_>>());
    assert_eq!(t.ports[4].entry.name_str(), "br0");
    assert_eq!(t.ports[4].entry.kind, port_kind::BRIDGE);
    assert_eq!(t.ports[8].entry.vni, Some(100));
    assert_eq!(t.ports[8].entry.mtu, 1450);
    assert_eq!(t.addrs.iter().map(|r| (r.slot, r.entry.plen)).collect::<Vec<_>>(), vec![(0, 24), (3, 64)]);
    // Routes: Route4 rows then Route6 rows.
    let routes: Vec<(u32, Ip, u8, u32)> =
        t.routes.iter().map(|r| (r.slot, r.entry.dst, r.entry.plen, r.entry.metric)).collect();
    assert_eq!(routes, vec![(0, v4(0, 0, 0, 0), 0, 7), (2, v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32, 1024)]);
    assert_eq!(t.nexthops.iter().map(|r| r.slot).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(t.nexthops[1].entry.gateway, Some(v4(10, 0, 2, 1)));
    assert_eq!(t.groups.len(), 1);
    assert_eq!(t.groups[0].entry, GroupEntry { id: 55, resilient: false, members: vec![(0, 2), (1, 5)] });
    assert_eq!(
        t.neighs.iter().map(|r| (r.slot, r.entry.mac)).collect::<Vec<_>>(),
        vec![(0, Some(N1)), (1, Some(N2)), (2, Some(N3))]
    );
    assert_eq!(t.fdb.iter().map(|r| r.slot).collect::<Vec<_>>(), vec![0, 2, 3, 4, 10, 11, 12]);
    let vx = &t.fdb.iter().find(|r| r.slot == 4).expect("vxlan fdb").entry;
    assert_eq!(
        (vx.remote, vx.vni, vx.is_static, vx.master),
        (Some(v4(198, 51, 100, 7)), Some(100), true, 10)
    );
    assert_eq!(t.vlans.iter().map(|r| r.slot).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert_eq!(t.vlans[0].entry, VlanEntry { ifindex: 11, vid: 200, pvid: true, untagged: true });
    assert_eq!(t.flows.len(), 1);
    let f = &t.flows[0].entry;
    assert_eq!((f.cookie, f.ifindex, f.prio, f.key.dst_port, f.actions.len()), (0xabc, 1, 3, 80, 2));

    // Registers: every hal write and invalidate, rewrites included.
    let st = |id| t.stats(id);
    assert_eq!(
        (st(TableId::Port).used, st(TableId::Port).writes, st(TableId::Port).invalidates),
        (13, 13, 0)
    );
    assert_eq!(
        (st(TableId::Route4).used, st(TableId::Route4).writes, st(TableId::Route4).invalidates),
        (1, 3, 1)
    );
    assert_eq!((st(TableId::Route6).used, st(TableId::Route6).writes), (1, 1));
    assert_eq!((st(TableId::Fdb).used, st(TableId::Fdb).writes, st(TableId::Fdb).invalidates), (7, 8, 1));
    assert_eq!((st(TableId::Vlan).used, st(TableId::Vlan).writes, st(TableId::Vlan).invalidates), (5, 6, 1));
    assert_eq!((st(TableId::Flow).used, st(TableId::Flow).capacity), (1, 32));
    assert_eq!(st(TableId::Group).capacity, 8);
    for id in TableId::ALL {
        let s = st(id);
        assert_eq!(s.id, id);
        assert_eq!(s.writes, hw.region().writes_reg(id).load(Ordering::Relaxed));
        assert_eq!(s.invalidates, hw.region().invalidates_reg(id).load(Ordering::Relaxed));
    }
    // Invalidating twice counts twice.
    hw.invalidate(TableId::Fdb, 1);
    assert_eq!(reader::read(hw.region()).stats(TableId::Fdb).invalidates, 2);
}

#[test]
fn reader_rows_carry_counters() {
    let mut hw = flows_hw();
    let (k, m) = tcp_dport(80, v4(10, 0, 0, 0));
    hw.flow(0, 1, 0, 0, 1, k, m, &[DROP]);
    hw.send(&pkt(v4(10, 1, 1, 1)));
    hw.send(&pkt(v4(11, 1, 1, 1)));
    let t = reader::read(hw.region());
    assert_eq!(hits(t.flows[0].counters), [1, 100, 1, 1]);
    assert_eq!(hits(t.routes[0].counters), [1, 100, 1, 0]);
    assert_eq!(hits(t.nexthops[0].counters), [1, 100, 1, 0]);
    assert_eq!(t.ports[0].counters, [2, 200, 0, 0]);
    assert_eq!(t.ports[1].counters, [0, 0, 1, 100]);
    assert_eq!(t.neighs[0].counters, [0; 4], "no counters for neighbours");
    // Counters equal what the region and the hal say.
    assert_eq!(t.routes[0].counters[0], hw.counter(TableId::Route4, 0, 0));
    assert_eq!(t.routes[0].counters, hw.counters(TableId::Route4, 0));
}

#[test]
fn resolve_follows_routes_to_nexthops() {
    let mut hw = routed();
    hw.group(1, 55, &[(0, 2), (2, 5), (30, 1)]); // slot 30: not a nexthop
    hw.route_full(0, 254, v4(0, 0, 0, 0), 0, 0, RT_UNICAST, route_action::GROUP, 1);
    hw.route(1, v4(10, 0, 0, 0), 8, 0, 1);
    hw.route_full(2, 254, v4(10, 1, 0, 0), 16, 0, RT_BLACKHOLE, route_action::DROP, 0);
    hw.route_full(3, 254, v4(10, 2, 0, 0), 16, 0, RT_UNICAST, route_action::GROUP, 6);
    let t = reader::read(hw.region());
    let route = |slot: u32| &t.routes.iter().find(|r| r.slot == slot).expect("route").entry;
    assert_eq!(
        t.resolve(route(0)),
        vec![
            ResolvedNexthop { gateway: Some(v4(10, 0, 1, 1)), ifindex: 2, weight: 2, id: 1 },
            ResolvedNexthop { gateway: Some(v4(10, 0, 3, 1)), ifindex: 4, weight: 5, id: 3 },
        ]
    );
    assert_eq!(
        t.resolve(route(1)),
        vec![ResolvedNexthop { gateway: Some(v4(10, 0, 2, 1)), ifindex: 3, weight: 1, id: 2 }]
    );
    assert!(t.resolve(route(2)).is_empty());
    assert!(t.resolve(route(3)).is_empty(), "missing group");
    assert_eq!(t.group_id_of(route(0)), Some(55));
    assert_eq!(t.group_id_of(route(1)), Some(2));
    assert_eq!(t.group_id_of(route(2)), None);
    assert_eq!(t.port_name(3), "eth2");
    assert_eq!(t.port_name(99), "if99");
}

#[test]
fn display_prints_the_tables() {
    let mut hw = bridged();
    hw.addr(0, 2, v4(10, 0, 1, 254), 24);
    hw.group(1, 55, &[(0, 2), (2, 5)]);
    hw.route_full(0, 254, v4(0, 0, 0, 0), 0, 0, RT_UNICAST, route_action::GROUP, 1);
    hw.route(1, v4(10, 0, 0, 0), 8, 20, 1);
    hw.route_full(2, 254, v4(10, 1, 0, 0), 16, 0, RT_PROHIBIT, route_action::PROHIBIT, 0);
    hw.nexthop(5, 0, 2, None);
    hw.route(3, v4(10, 0, 1, 0), 24, 0, 5);
    hw.neigh(5, 2, v4(10, 0, 1, 9), None);
    let (k, m) = any_key();
    hw.flow(
        0,
        0xfeed,
        11,
        0,
        1,
        k,
        m,
        &[
            (flow_action::VLAN_PUSH, 10, 0x8100),
            (flow_action::VLAN_POP, 0, 0),
            (flow_action::MIRROR, 0, 2),
            (flow_action::REDIRECT, 0, 3),
            (flow_action::GOTO, 0, 4),
            PASS,
            DROP,
            (99, 0, 0),
        ],
    );
    hw.send(&pkt(v4(10, 2, 3, 4)));
    let text = reader::read(hw.region()).to_string();
    println!("{text}");
    for needle in [
        "board t",
        "route4",
        "route[1] table 254 10.0.0.0/8 metric 20 nexthop via 10.0.2.1 dev eth2 weight 1 pkts 1 bytes 100",
        "0.0.0.0/0 metric 0 group via 10.0.1.1 dev eth1 weight 2 via 10.0.3.1 dev eth3 weight 5",
        "10.1.0.0/16 metric 0 prohibit",
        "10.0.1.0/24 metric 0 nexthop direct dev eth1",
        "addr[0] 10.0.1.254/24 dev eth1",
        "group[1] id 55",
        "port[4] br0",
        "master br0",
        "vni 100",
        "lladdr incomplete",
        "dst 198.51.100.7",
        "vid 200 pvid untagged",
        "cookie 0xfeed dev swp1",
        "vlan push 10 tpid 0x8100",
        "goto chain 4",
        "action99",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

// --------------------------------------------------------------- hal --

#[test]
fn hal_sets_valid_itself_and_manages_counters() {
    let mut hw = routed();
    assert_eq!(hw.hal.capacity(TableId::Group), 8);
    assert_eq!(hw.hal.entry_size(TableId::Group), GROUP_HDR + GROUP_MEMBER * ECMP as usize);
    assert_eq!(hw.hal.entry_size(TableId::Flow), 208);
    let mut buf = vec![0u8; 64];
    assert!(!hw.hal.read_entry(TableId::Port, 9, &mut buf), "never written");
    assert!(hw.hal.read_entry(TableId::Port, 0, &mut buf));
    assert_eq!(buf[0] & VALID, VALID);
    assert_eq!(PortEntry::decode(&buf).mac, Some(P1));
    // The caller's flags byte does not matter: the hal sets VALID.
    let mut e = vec![0u8; 64];
    PortEntry { ifindex: 9, ..Default::default() }.encode(&mut e);
    e[0] = 0;
    hw.hal.write_entry(TableId::Port, 9, &e);
    assert!(hw.region().is_valid(TableId::Port, 9));
    hw.hal.invalidate(TableId::Port, 9);
    assert!(!hw.hal.read_entry(TableId::Port, 9, &mut buf));

    hw.route(0, v4(0, 0, 0, 0), 0, 0, 0);
    hw.send(&pkt(v4(1, 2, 3, 4)));
    assert_eq!(hw.hal.read_counters(TableId::Route4, 0)[0], 1);
    hw.hal.clear_counters(TableId::Route4, 0);
    assert_eq!(hw.hal.read_counters(TableId::Route4, 0), [0; 4]);
    assert_eq!(hw.hal.read_counters(TableId::Nexthop, 0)[0], 1, "other counters untouched");
    // Tables without counters read as zero and clear without effect.
    assert_eq!(hw.hal.read_counters(TableId::Neigh, 0), [0; 4]);
    hw.hal.clear_counters(TableId::Neigh, 0);
    assert!(hw.region().counter(TableId::Neigh, 0, 0).is_none());
}
