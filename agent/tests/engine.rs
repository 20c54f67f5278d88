//! The programming engine against the hardware model, in process.

mod common;
use common::*;
use dpu_agent::{board, Engine};
use dpu_hw::layout::TableId;
use dpu_hw::reader;
use dpu_hw::{MmioHal, Region};
use dpu_wire::*;

fn hw(e: &Engine<MmioHal>) -> reader::HwTables {
    reader::read(e.hal().region())
}

#[test]
fn routes_share_agent_owned_nexthops_and_free_them_with_the_last_route() {
    let mut e = engine();
    let gw = v4(10, 0, 0, 1);
    assert_eq!(e.apply(&route_paths(v4(10, 1, 0, 0), 16, &[(2, gw, 1)])), Status::Ok);
    assert_eq!(e.apply(&route_paths(v4(10, 2, 0, 0), 16, &[(2, gw, 1)])), Status::Ok);
    let t = hw(&e);
    assert_eq!(t.nexthops.len(), 1, "one shared nexthop: {t}");
    assert_eq!(t.nexthops[0].entry.id, 0);
    // Multipath routes with the same paths share one group.
    let paths = [(2, gw, 1), (3, v4(10, 0, 1, 1), 3)];
    assert_eq!(e.apply(&route_paths(v4(10, 3, 0, 0), 16, &paths)), Status::Ok);
    assert_eq!(e.apply(&route_paths(v4(10, 4, 0, 0), 16, &paths)), Status::Ok);
    let t = hw(&e);
    assert_eq!(t.groups.len(), 1);
    assert_eq!(t.nexthops.len(), 2);
    let r = t.routes.iter().find(|r| r.entry.dst == v4(10, 4, 0, 0)).expect("route");
    let mut nhs = t.resolve(&r.entry);
    nhs.sort();
    assert_eq!(nhs.len(), 2);
    assert_eq!((nhs[0].gateway, nhs[0].weight), (Some(gw), 1));
    assert_eq!((nhs[1].gateway, nhs[1].weight), (Some(v4(10, 0, 1, 1)), 3));
    // Delete everything: all agent-owned entries go.
    for d in [1u8, 2, 3, 4] {
        let k = RouteKey { table: 254, dst: Prefix::new(v4(10, d, 0, 0), 16), metric: 0, ifindex: 0 };
        assert_eq!(e.apply(&Op::Delete(Key::Route(k))), Status::Ok);
    }
    let t = hw(&e);
    assert!(t.routes.is_empty() && t.nexthops.is_empty() && t.groups.is_empty(), "{t}");
}

#[test]
fn replacing_a_route_moves_its_references() {
    let mut e = engine();
    let a = [(2, v4(10, 0, 0, 1), 1), (3, v4(10, 0, 1, 1), 1)];
    let b = [(2, v4(10, 0, 0, 2), 1), (3, v4(10, 0, 1, 2), 1)];
    assert_eq!(e.apply(&route_paths(v4(10, 9, 0, 0), 16, &a)), Status::Ok);
    assert_eq!(e.apply(&route_paths(v4(10, 9, 0, 0), 16, &b)), Status::Ok);
    let t = hw(&e);
    assert_eq!(t.routes.len(), 1);
    assert_eq!(t.groups.len(), 1, "the old group was freed");
    assert_eq!(t.nexthops.len(), 2, "the old nexthops were freed");
    assert!(t.nexthops.iter().all(|n| n.entry.gateway.is_some_and(|g| g != v4(10, 0, 0, 1))));
}

#[test]
fn objects_are_referenced_and_checked() {
    let mut e = engine();
    assert_eq!(e.apply(&route_obj(254, v4(10, 0, 0, 0), 8, 7)), Status::NotFound);
    assert_eq!(e.apply(&nexthop(7, 2, v4(192, 0, 2, 1))), Status::Ok);
    assert_eq!(e.apply(&nexthop(8, 3, v4(192, 0, 2, 2))), Status::Ok);
    assert_eq!(e.apply(&group(20, &[(7, 1), (9, 1)])), Status::NotFound);
    assert_eq!(e.apply(&group(20, &[(7, 1), (8, 2)])), Status::Ok);
    assert_eq!(e.apply(&group(7, &[(8, 1)])), Status::Invalid, "id 7 is a nexthop");
    assert_eq!(e.apply(&nexthop(20, 3, v4(192, 0, 2, 2))), Status::Invalid, "id 20 is a group");
    assert_eq!(e.apply(&route_obj(254, v4(10, 0, 0, 0), 8, 7)), Status::Ok);
    assert_eq!(e.apply(&route_obj(100, v4(10, 0, 0, 0), 8, 20)), Status::Ok);
    assert_eq!(e.apply(&Op::Delete(Key::Nexthop(7))), Status::InUse);
    assert_eq!(e.apply(&Op::Delete(Key::NexthopGroup(20))), Status::InUse);
    // Replacing the nexthop object rewrites it in place: routes follow.
    assert_eq!(e.apply(&nexthop(7, 2, v4(192, 0, 2, 9))), Status::Ok);
    let t = hw(&e);
    let r = t.routes.iter().find(|r| r.entry.table == 254).expect("route");
    assert_eq!(t.resolve(&r.entry)[0].gateway, Some(v4(192, 0, 2, 9)));
    let r = t.routes.iter().find(|r| r.entry.table == 100).expect("route");
    assert_eq!(t.group_id_of(&r.entry), Some(20));
    for k in [254, 100] {
        let key = RouteKey { table: k, dst: Prefix::new(v4(10, 0, 0, 0), 8), metric: 0, ifindex: 0 };
        assert_eq!(e.apply(&Op::Delete(Key::Route(key))), Status::Ok);
    }
    assert_eq!(e.apply(&Op::Delete(Key::Nexthop(7))), Status::InUse, "group 20 still holds it");
    assert_eq!(e.apply(&Op::Delete(Key::NexthopGroup(20))), Status::Ok);
    assert_eq!(e.apply(&Op::Delete(Key::Nexthop(7))), Status::Ok);
    assert_eq!(e.apply(&Op::Delete(Key::Nexthop(7))), Status::Ok, "deletes are idempotent");
    assert_eq!(hw(&e).nexthops.len(), 1);
}

#[test]
fn invalid_and_unsupported_objects_are_refused() {
    let mut e = engine();
    let bad = Op::Upsert(Object::Route(Route {
        key: RouteKey { table: 254, dst: Prefix::new(v4(10, 0, 0, 1), 8), metric: 0, ifindex: 0 },
        kind: RouteType::Blackhole,
        protocol: 0,
        scope: 0,
        nexthops: RouteNexthops::None,
    }));
    assert_eq!(e.apply(&bad), Status::Invalid, "host bits set");
    let too_wide: Vec<(u32, Ip, u16)> =
        (0..board::ECMP_MEMBERS + 1).map(|i| (2, v4(10, 0, 0, i as u8 + 1), 1)).collect();
    assert_eq!(e.apply(&route_paths(v4(10, 0, 0, 0), 8, &too_wide)), Status::Unsupported);
    assert!(hw(&e).nexthops.is_empty(), "a refused route leaves nothing behind");
}

#[test]
fn table_full_is_per_entry_and_leaves_nothing_behind() {
    let mut e = engine();
    assert_eq!(e.apply(&nexthop(1, 2, v4(10, 0, 0, 1))), Status::Ok);
    let cap = board::ROUTES_V4;
    let mut full = 0;
    for i in 0..cap + 10 {
        let s = e.apply(&route_obj(254, v4(11, (i >> 8) as u8, i as u8, 0), 24, 1));
        if s == Status::TableFull {
            full += 1;
        } else {
            assert_eq!(s, Status::Ok);
        }
    }
    assert_eq!(full, 10);
    assert_eq!(e.used(TableId::Route4), cap);
    // A multipath route whose route slot is missing frees its new group.
    let s = e.apply(&route_paths(v4(12, 0, 0, 0), 8, &[(2, v4(10, 0, 0, 1), 1), (3, v4(10, 0, 0, 2), 1)]));
    assert_eq!(s, Status::TableFull);
    assert_eq!(e.used(TableId::Group), 0);
    assert_eq!(e.used(TableId::Nexthop), 1);
    // VLAN ranges are all or nothing.
    let vlan = |s, e| {
        Op::Upsert(Object::Vlan(VlanRange {
            ifindex: 2,
            vid_start: s,
            vid_end: e,
            pvid: false,
            untagged: false,
        }))
    };
    let vcap = board::VLANS as u16;
    assert_eq!(e.apply(&vlan(1, vcap - 1)), Status::Ok);
    assert_eq!(e.apply(&vlan(vcap, vcap + 1)), Status::TableFull);
    assert_eq!(e.used(TableId::Vlan), vcap as u32 - 1);
    assert_eq!(e.apply(&vlan(vcap, vcap)), Status::Ok);
}

#[test]
fn snapshots_sweep_what_they_do_not_mention_and_rewrite_nothing_unchanged() {
    let mut e = engine();
    let ops = vec![
        link(2, "p0"),
        link(3, "p1"),
        nexthop(1, 2, v4(10, 0, 0, 1)),
        route_obj(254, v4(10, 1, 0, 0), 16, 1),
        route_obj(254, v4(10, 2, 0, 0), 16, 1),
        route_paths(v4(10, 3, 0, 0), 16, &[(2, v4(10, 0, 0, 1), 1), (3, v4(10, 0, 1, 1), 1)]),
    ];
    e.begin_snapshot();
    for op in &ops {
        assert_eq!(e.apply(op), Status::Ok);
    }
    let first = e.end_snapshot();
    assert_eq!(first.removed, 0);
    let writes = |e: &Engine<MmioHal>| hw(e).tables.iter().map(|t| t.writes + t.invalidates).sum::<u64>();
    let before = writes(&e);
    e.begin_snapshot();
    for op in &ops {
        assert_eq!(e.apply(op), Status::Ok);
    }
    let again = e.end_snapshot();
    assert_eq!((again.written, again.removed), (0, 0));
    assert_eq!(writes(&e), before, "an identical snapshot touches no hardware entry");
    // Drop the multipath route and a link from the next snapshot.
    e.begin_snapshot();
    for op in ops.iter().filter(|o| !matches!(o.key(), Key::Route(k) if k.dst.addr == v4(10, 3, 0, 0))) {
        if o_is_link3(op) {
            continue;
        }
        assert_eq!(e.apply(op), Status::Ok);
    }
    let rep = e.end_snapshot();
    let t = hw(&e);
    assert_eq!(t.routes.len(), 2);
    assert!(t.groups.is_empty(), "the group went with its route");
    assert_eq!(t.nexthops.len(), 1, "only the object nexthop is left: {t}");
    assert_eq!(t.ports.len(), 1);
    assert_eq!(rep.written, 0);
    assert!(rep.removed >= 3, "{rep:?}");
}

fn o_is_link3(op: &Op) -> bool {
    op.key() == Key::Link(3)
}

#[test]
fn warm_start_rebuilds_indexes_and_references_from_hardware() {
    let path = std::env::temp_dir().join(format!("dpu-agent-warm-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let layout = board::layout();
    let ops = vec![
        nexthop(1, 2, v4(10, 0, 0, 1)),
        route_obj(254, v4(10, 1, 0, 0), 16, 1),
        route_paths(v4(10, 3, 0, 0), 16, &[(2, v4(10, 0, 0, 1), 1), (3, v4(10, 0, 1, 1), 1)]),
    ];
    {
        let (region, warm) = Region::create(&path, &layout, false).expect("create");
        assert!(!warm);
        let mut e = Engine::new(MmioHal::new(region), false);
        for op in &ops {
            assert_eq!(e.apply(op), Status::Ok);
        }
    }
    let (region, warm) = Region::create(&path, &layout, false).expect("reopen");
    assert!(warm);
    let mut e = Engine::new(MmioHal::new(region), true);
    e.begin_snapshot();
    for op in &ops {
        assert_eq!(e.apply(op), Status::Ok);
    }
    let rep = e.end_snapshot();
    assert_eq!((rep.written, rep.removed, rep.unchanged), (0, 0, 3));
    assert_eq!(e.apply(&Op::Delete(Key::Nexthop(1))), Status::InUse, "reference counts survived");
    let k =
        |d| Key::Route(RouteKey { table: 254, dst: Prefix::new(v4(10, d, 0, 0), 16), metric: 0, ifindex: 0 });
    assert_eq!(e.apply(&Op::Delete(k(1))), Status::Ok);
    assert_eq!(e.apply(&Op::Delete(k(3))), Status::Ok);
    assert_eq!(e.apply(&Op::Delete(Key::Nexthop(1))), Status::Ok);
    let t = hw(&e);
    assert!(t.routes.is_empty() && t.nexthops.is_empty() && t.groups.is_empty(), "{t}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn stats_report_moved_counters_once() {
    use dpu_hw::lookup::{process, Packet, Verdict};
    let mut e = engine();
    for op in [
        link(2, "p0"),
        link(3, "p1"),
        nexthop(5, 3, v4(10, 0, 0, 1)),
        route_obj(254, v4(10, 1, 0, 0), 16, 5),
        Op::Upsert(Object::Neighbour(Neighbour {
            ifindex: 3,
            ip: v4(10, 0, 0, 1),
            mac: Some(Mac([2, 0, 0, 0, 0, 0x99])),
            state: 0x02,
            router: false,
        })),
    ] {
        assert_eq!(e.apply(&op), Status::Ok);
    }
    let mut stats = vec![];
    while !e.collect_stats(false, 7, |s| stats.push(s)) {}
    assert!(stats.is_empty(), "nothing moved yet: {stats:?}");
    let pkt = Packet::ip(2, Mac([2, 0, 0, 0, 0, 2]), v4(192, 0, 2, 1), v4(10, 1, 2, 3), 17, 1, 2);
    for _ in 0..5 {
        let o = process(e.hal().region(), &pkt);
        assert!(matches!(o.verdict, Verdict::Forward { ifindex: 3, .. }), "{o:?}");
    }
    while !e.collect_stats(false, 7, |s| stats.push(s)) {}
    let route = stats.iter().find(|s| matches!(s.key, StatKey::Route(_))).expect("route stats");
    assert_eq!((route.packets, route.bytes), (5, 500));
    assert!(route.idle_ms < 60_000);
    let nh = stats.iter().find(|s| s.key == StatKey::Nexthop(5)).expect("nexthop stats");
    assert_eq!(nh.packets, 5);
    let p0 = stats.iter().find(|s| s.key == StatKey::Port(2)).expect("port stats");
    assert_eq!((p0.packets, p0.tx_packets), (5, 0));
    let p1 = stats.iter().find(|s| s.key == StatKey::Port(3)).expect("port stats");
    assert_eq!((p1.packets, p1.tx_packets, p1.tx_bytes), (0, 5, 500));
    stats.clear();
    while !e.collect_stats(false, 1000, |s| stats.push(s)) {}
    assert!(stats.is_empty(), "reported once: {stats:?}");
}
