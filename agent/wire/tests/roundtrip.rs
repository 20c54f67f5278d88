//! Round trips of every object, key and message through the whole stack:
//! `FrameBuilder` -> encoded frame -> `Deframer` -> `FrameReader`.

use dpu_wire::framing::max_encoded_len;
use dpu_wire::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

// ------------------------------------------------------------ helpers --

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

fn mac(last: u8) -> Mac {
    Mac([0x02, 0x00, 0x5e, 0x10, 0x00, last])
}

fn name<const N: usize>(s: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    out.push_str(s).expect("name fits");
    out
}

fn hvec<T, const N: usize>(items: impl IntoIterator<Item = T>) -> heapless::Vec<T, N> {
    let mut v = heapless::Vec::new();
    for i in items {
        if v.push(i).is_err() {
            panic!("too many items for heapless::Vec<_, {N}>");
        }
    }
    v
}

/// Encodes one frame with `header` and `items`, returns the encoded bytes.
fn encode_frame<H: Serialize, T: Serialize>(header: &H, items: &[T]) -> Vec<u8> {
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    b.start(header).expect("header fits");
    for it in items {
        b.push(it).expect("item fits");
    }
    assert_eq!(b.items(), items.len());
    let mut out = vec![0u8; MAX_ENCODED_FRAME];
    let n = b.finish(&mut out).expect("finish");
    out.truncate(n);
    assert_eq!(out.last(), Some(&0), "frame ends with its delimiter");
    assert!(!out[..n - 1].contains(&0), "COBS leaves no zero inside a frame");
    out
}

/// Splits a byte stream into payloads; panics on any framing error.
fn deframe(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut d = Deframer::new(vec![0u8; max_encoded_len(MAX_FRAME)]);
    let mut out = Vec::new();
    d.push(stream, |r| out.push(r.expect("frame must deframe").to_vec()));
    assert_eq!(d.stats.errors(), 0);
    assert_eq!(d.stats.frames, out.len() as u64);
    out
}

/// Decodes a payload as a header followed by items until the end.
fn decode_payload<H: DeserializeOwned, T: DeserializeOwned>(payload: &[u8]) -> (H, Vec<T>) {
    let mut r = FrameReader::new(payload);
    let h: H = r.header().expect("header decodes");
    let mut items = Vec::new();
    while let Some(it) = r.next_item::<T>() {
        items.push(it.expect("item decodes"));
    }
    (h, items)
}

/// Full round trip of one frame.
fn roundtrip<H, T>(header: &H, items: &[T]) -> (H, Vec<T>)
where
    H: Serialize + DeserializeOwned,
    T: Serialize + DeserializeOwned,
{
    let frame = encode_frame(header, items);
    let payloads = deframe(&frame);
    assert_eq!(payloads.len(), 1);
    decode_payload(&payloads[0])
}

fn check_host_batch(ops: &[Op]) {
    let h = HostHeader { seq: 7, msg: HostMsg::Batch };
    let (h2, ops2) = roundtrip(&h, ops);
    assert_eq!(h2, h);
    assert_eq!(ops2, ops);
}

// ------------------------------------------------------------ samples --

fn path(ifindex: u32, gw: Option<Ip>, weight: u16) -> Path {
    Path { ifindex, gateway: gw, weight, onlink: ifindex & 1 == 0 }
}

fn route(table: u32, dst: Prefix, metric: u32, kind: RouteType, nexthops: RouteNexthops) -> Route {
    Route { key: RouteKey { table, dst, metric, ifindex: 0 }, kind, protocol: 3, scope: 0, nexthops }
}

fn all_links() -> Vec<Link> {
    let kinds = [
        LinkKind::Device,
        LinkKind::Loopback,
        LinkKind::Bridge,
        LinkKind::Vlan,
        LinkKind::Vxlan,
        LinkKind::Veth,
        LinkKind::Bond,
        LinkKind::Dummy,
        LinkKind::Vrf,
        LinkKind::Other,
    ];
    let opers = [
        OperState::Unknown,
        OperState::NotPresent,
        OperState::Down,
        OperState::LowerLayerDown,
        OperState::Testing,
        OperState::Dormant,
        OperState::Up,
    ];
    kinds
        .iter()
        .enumerate()
        .map(|(i, &kind)| Link {
            ifindex: i as u32 + 1,
            name: name(if i == 0 { "a-fifteen-char!" } else { "eth0" }),
            kind,
            mtu: 1500 + i as u32,
            mac: (i & 1 == 0).then(|| mac(i as u8)),
            oper: opers[i % opers.len()],
            admin_up: i % 3 != 0,
            master: i as u32 * 7,
            parent: i as u32 * 11,
            vlan_id: (kind == LinkKind::Vlan).then_some(4094),
            vni: (kind == LinkKind::Vxlan).then_some(0x00ff_ffff),
        })
        .collect()
}

fn full_flow() -> FlowRule {
    FlowRule {
        cookie: u64::MAX,
        ifindex: 3,
        chain: 1,
        prio: 65535,
        matches: FlowMatch {
            eth_type: Some(0x0800),
            src_mac: Some(Masked { value: mac(1), mask: Mac([0xff, 0xff, 0xff, 0, 0, 0]) }),
            dst_mac: Some(Masked { value: Mac::BROADCAST, mask: Mac::BROADCAST }),
            vlan_id: Some(4095),
            ip_proto: Some(17),
            src_ip: Some(Masked { value: v4(10, 0, 0, 0), mask: v4(255, 0, 0, 0) }),
            dst_ip: Some(Masked { value: v4(192, 0, 2, 1), mask: v4(255, 255, 255, 255) }),
            src_port: Some(Masked { value: 1024, mask: 0xfc00 }),
            dst_port: Some(Masked { value: 4789, mask: 0xffff }),
        },
        actions: hvec([
            FlowAction::Mirror(9),
            FlowAction::VlanPush { vid: 100, tpid: 0x88a8 },
            FlowAction::VlanPop,
            FlowAction::Goto(u32::MAX),
            FlowAction::Redirect(4),
            FlowAction::Pass,
            FlowAction::Drop,
        ]),
    }
}

fn all_objects() -> Vec<Object> {
    let mut v: Vec<Object> = all_links().into_iter().map(Object::Link).collect();
    v.extend([
        Object::Address(Address { ifindex: 2, prefix: Prefix::new(v4(192, 0, 2, 1), 24), scope: 0 }),
        Object::Address(Address {
            ifindex: 2,
            prefix: Prefix::new(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), 64),
            scope: 253,
        }),
        Object::Route(route(
            254,
            Prefix::new(v4(0, 0, 0, 0), 0),
            0,
            RouteType::Blackhole,
            RouteNexthops::None,
        )),
        Object::Route(route(
            255,
            Prefix::new(v4(192, 0, 2, 1), 32),
            0,
            RouteType::Local,
            RouteNexthops::None,
        )),
        Object::Route(route(
            100,
            Prefix::new(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32),
            1024,
            RouteType::Unreachable,
            RouteNexthops::None,
        )),
        Object::Route(route(
            254,
            Prefix::new(v4(10, 0, 0, 0), 8),
            u32::MAX,
            RouteType::Prohibit,
            RouteNexthops::None,
        )),
        Object::Route(route(
            254,
            Prefix::new(v4(10, 1, 2, 0), 24),
            20,
            RouteType::Unicast,
            RouteNexthops::Object(u32::MAX),
        )),
        Object::Route(route(
            254,
            Prefix::new(v4(10, 9, 0, 0), 16),
            0,
            RouteType::Unicast,
            RouteNexthops::Paths(hvec([path(1, Some(v4(10, 0, 0, 1)), 1)])),
        )),
        Object::Route(route(
            254,
            Prefix::new(v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0]), 48),
            1024,
            RouteType::Unicast,
            RouteNexthops::Paths(hvec((0..MAX_PATHS as u32).map(|i| {
                let gw = if i % 3 == 0 { None } else { Some(v6([0xfe80, 0, 0, 0, 0, 0, 0, i as u16])) };
                path(i + 1, gw, (i as u16 % 256) + 1)
            }))),
        )),
        Object::Nexthop(Nexthop {
            id: 1,
            ifindex: 2,
            gateway: Some(v4(10, 0, 0, 1)),
            blackhole: false,
            onlink: true,
            fdb: false,
        }),
        Object::Nexthop(Nexthop {
            id: 2,
            ifindex: 0,
            gateway: Some(v6([0xfe80, 0, 0, 0, 0, 0, 0, 1])),
            blackhole: false,
            onlink: false,
            fdb: true,
        }),
        Object::Nexthop(Nexthop {
            id: 3,
            ifindex: 0,
            gateway: None,
            blackhole: true,
            onlink: false,
            fdb: false,
        }),
        Object::NexthopGroup(NexthopGroup {
            id: 10,
            members: hvec([GroupMember { id: 1, weight: 1 }, GroupMember { id: 2, weight: 256 }]),
            resilient_buckets: None,
        }),
        Object::NexthopGroup(NexthopGroup {
            id: 11,
            members: hvec((1..=MAX_GROUP_MEMBERS as u32).map(|id| GroupMember { id: id + 100, weight: 1 })),
            resilient_buckets: Some(128),
        }),
        Object::Neighbour(Neighbour {
            ifindex: 2,
            ip: v4(10, 0, 0, 1),
            mac: Some(mac(1)),
            state: 0x02,
            router: false,
        }),
        Object::Neighbour(Neighbour {
            ifindex: 2,
            ip: v6([0xfe80, 0, 0, 0, 0, 0, 0, 1]),
            mac: None,
            state: 0x01,
            router: true,
        }),
        Object::Fdb(FdbEntry {
            ifindex: 20,
            mac: mac(0x20),
            vid: 0,
            master: 10,
            is_static: true,
            remote: Some(v4(198, 51, 100, 7)),
            vni: Some(0x00ab_cdef),
        }),
        Object::Fdb(FdbEntry {
            ifindex: 11,
            mac: mac(0x11),
            vid: 4095,
            master: 10,
            is_static: false,
            remote: Some(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7])),
            vni: None,
        }),
        Object::Vlan(VlanRange { ifindex: 11, vid_start: 1, vid_end: 4094, pvid: true, untagged: true }),
        Object::Flow(full_flow()),
        Object::Flow(FlowRule {
            cookie: 0,
            ifindex: 0,
            chain: 0,
            prio: 0,
            matches: FlowMatch {
                src_ip: Some(Masked { value: v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), mask: v6([0xffff; 8]) }),
                ..Default::default()
            },
            actions: hvec([FlowAction::Drop]),
        }),
    ]);
    v
}

fn all_keys() -> Vec<Key> {
    vec![
        Key::Link(1),
        Key::Address(AddressKey { ifindex: 2, prefix: Prefix::new(v4(192, 0, 2, 1), 24) }),
        Key::Route(RouteKey { table: 254, dst: Prefix::new(v4(10, 1, 2, 0), 24), metric: 20, ifindex: 0 }),
        Key::Route(RouteKey {
            table: 255,
            dst: Prefix::new(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), 128),
            metric: 0,
            ifindex: 0,
        }),
        Key::Nexthop(5),
        Key::NexthopGroup(u32::MAX),
        Key::Neighbour(NeighbourKey { ifindex: 2, ip: v4(10, 0, 0, 1) }),
        Key::Fdb(FdbKey { ifindex: 11, mac: mac(3), vid: 100 }),
        Key::Vlan(VlanKey { ifindex: 11, vid_start: 10, vid_end: 20 }),
        Key::Flow(0xdead_beef_0000_0001),
    ]
}

// -------------------------------------------------------------- tests --

#[test]
fn every_object_round_trips_alone() {
    for o in all_objects() {
        assert_eq!(o.validate(), Ok(()), "sample must be valid: {o:?}");
        check_host_batch(&[Op::Upsert(o)]);
    }
}

#[test]
fn every_object_round_trips_in_one_batch() {
    let ops: Vec<Op> = all_objects().into_iter().map(Op::Upsert).collect();
    check_host_batch(&ops);
    // Op::key names the object's key.
    for op in &ops {
        let Op::Upsert(o) = op else { unreachable!() };
        assert_eq!(op.key(), o.key());
    }
}

#[test]
fn route_with_32_paths_round_trips() {
    let paths: heapless::Vec<Path, MAX_PATHS> =
        hvec((0..MAX_PATHS as u32).map(|i| path(i + 1, Some(v4(10, 0, (i >> 8) as u8, i as u8)), 256)));
    assert!(paths.is_full());
    let r = route(254, Prefix::new(v4(10, 0, 0, 0), 8), 0, RouteType::Unicast, RouteNexthops::Paths(paths));
    let op = Op::Upsert(Object::Route(r));
    check_host_batch(&[op.clone(), op]);
}

#[test]
fn every_delete_round_trips() {
    let ops: Vec<Op> = all_keys().into_iter().map(Op::Delete).collect();
    check_host_batch(&ops);
    for (op, k) in ops.iter().zip(all_keys()) {
        assert_eq!(op.key(), k);
        assert_eq!(k.validate(), Ok(()));
    }
    // Deletes of each sample object's key round trip too.
    let ops: Vec<Op> = all_objects().iter().map(|o| Op::Delete(o.key())).collect();
    check_host_batch(&ops);
}

#[test]
fn every_host_message_round_trips() {
    let msgs = [
        HostMsg::Hello(HostHello { version: VERSION, name: name("host-bridge 0.1.0 (a 32-byte nm)") }),
        HostMsg::SnapshotBegin { generation: 0 },
        HostMsg::SnapshotEnd { generation: u32::MAX },
        HostMsg::Batch,
        HostMsg::Heartbeat { uptime_ms: u64::MAX },
        HostMsg::StatsRequest,
    ];
    for (i, msg) in msgs.into_iter().enumerate() {
        let h = HostHeader { seq: i as u32 * 1_000_003, msg };
        let (h2, items) = roundtrip::<_, Op>(&h, &[]);
        assert_eq!(h2, h);
        assert!(items.is_empty());
    }
    // A batch with deletes and upserts interleaved.
    let mut ops = Vec::new();
    for (o, k) in all_objects().into_iter().zip(all_keys().into_iter().cycle()) {
        ops.push(Op::Upsert(o));
        ops.push(Op::Delete(k));
    }
    let h = HostHeader { seq: u32::MAX, msg: HostMsg::Batch };
    let (h2, ops2) = roundtrip(&h, &ops);
    assert_eq!(h2, h);
    assert_eq!(ops2, ops);
}

#[test]
fn every_agent_message_round_trips() {
    let caps_all = caps::L3_V4
        | caps::L3_V6
        | caps::ECMP
        | caps::NEXTHOP_OBJECTS
        | caps::L2_BRIDGE
        | caps::VXLAN
        | caps::FLOWS
        | caps::STATS;
    assert_eq!(caps_all, 0xff, "capability bits are distinct");
    let hello = AgentMsg::Hello(AgentHello {
        version: Version { major: 1, minor: 65535 },
        board: name("qemu-virt"),
        capabilities: caps_all,
        capacities: Capacities {
            links: 1,
            addresses: 2,
            routes_v4: 3,
            routes_v6: 4,
            nexthops: 5,
            nexthop_groups: 6,
            ecmp_members: 7,
            neighbours: 8,
            fdb: 9,
            vlans: 10,
            flows: u32::MAX,
        },
        max_frame: MAX_FRAME as u32,
        stats_interval_ms: 1000,
    });
    let mut msgs = vec![hello];
    for code in [ErrorCode::VersionMismatch, ErrorCode::NoHello, ErrorCode::BadSnapshot] {
        msgs.push(AgentMsg::Error { code, text: name(&"x".repeat(96)) });
    }
    msgs.push(AgentMsg::Error { code: ErrorCode::NoHello, text: name("") });
    msgs.extend([
        AgentMsg::Results { ack: 1, ok: 0, more: false },
        AgentMsg::SnapshotDone { generation: 3, unchanged: 4, written: 5, removed: u32::MAX },
        AgentMsg::Stats { more: false, requested: true },
        AgentMsg::Heartbeat { uptime_ms: 1, rx_frames: u64::MAX, rx_errors: 0 },
        AgentMsg::ResyncNeeded { reason: ResyncReason::SequenceGap },
        AgentMsg::ResyncNeeded { reason: ResyncReason::Undecodable },
    ]);
    for (i, msg) in msgs.into_iter().enumerate() {
        let h = AgentHeader { seq: i as u32, msg };
        let (h2, items) = roundtrip::<_, Failure>(&h, &[]);
        assert_eq!(h2, h);
        assert!(items.is_empty());
    }
}

#[test]
fn results_with_failures_round_trip() {
    let statuses = [
        Status::Ok,
        Status::TableFull,
        Status::Unsupported,
        Status::Invalid,
        Status::NotFound,
        Status::InUse,
    ];
    let mut failures: Vec<Failure> = statuses
        .iter()
        .enumerate()
        .map(|(i, &status)| Failure { index: i as u16, status, key: None })
        .collect();
    failures.extend(all_keys().into_iter().enumerate().map(|(i, k)| Failure {
        index: u16::MAX - i as u16,
        status: Status::Invalid,
        key: Some(k),
    }));
    let h = AgentHeader { seq: 9, msg: AgentMsg::Results { ack: 8, ok: 1234, more: true } };
    let (h2, f2) = roundtrip(&h, &failures);
    assert_eq!(h2, h);
    assert_eq!(f2, failures);
}

#[test]
fn stats_with_entries_round_trip() {
    let keys = [
        StatKey::Route(RouteKey { table: 254, dst: Prefix::new(v4(10, 0, 0, 0), 8), metric: 0, ifindex: 0 }),
        StatKey::Route(RouteKey { table: 1, dst: Prefix::new(v6([0; 8]), 0), metric: u32::MAX, ifindex: 0 }),
        StatKey::Nexthop(3),
        StatKey::Flow(u64::MAX),
        StatKey::Port(2),
    ];
    let entries: Vec<StatEntry> = keys
        .iter()
        .enumerate()
        .map(|(i, &key)| StatEntry {
            key,
            packets: i as u64,
            bytes: u64::MAX - i as u64,
            idle_ms: if i == 0 { u32::MAX } else { i as u32 },
            tx_packets: 1 << (i * 10),
            tx_bytes: 1 << (i * 12),
        })
        .collect();
    for more in [false, true] {
        let h = AgentHeader { seq: 77, msg: AgentMsg::Stats { more, requested: !more } };
        let (h2, e2) = roundtrip(&h, &entries);
        assert_eq!(h2, h);
        assert_eq!(e2, entries);
    }
}

/// Many ops: a frame is finished on `Full` and the op goes into the next
/// one; nothing is lost and every frame fits the limits.
#[test]
fn batch_fills_frames_then_continues() {
    let samples = all_objects();
    let keys = all_keys();
    let ops: Vec<Op> = (0..5000usize)
        .map(|i| {
            if i % 5 == 4 {
                Op::Delete(keys[i % keys.len()])
            } else {
                let mut o = samples[i % samples.len()].clone();
                if let Object::Route(r) = &mut o {
                    r.key.metric = i as u32;
                }
                Op::Upsert(o)
            }
        })
        .collect();

    let mut b = FrameBuilder::new([0u8; MAX_FRAME]);
    let mut out = vec![0u8; max_encoded_len(MAX_FRAME)];
    let mut stream = Vec::new();
    let mut seq = 1u32;
    let mut per_frame = Vec::new();
    b.start(&HostHeader { seq, msg: HostMsg::Batch }).expect("header");
    for op in &ops {
        match b.push(op) {
            Ok(()) => {}
            Err(FrameError::Full) => {
                let before = b.payload().to_vec();
                assert_eq!(b.push(op), Err(FrameError::Full), "still full");
                assert_eq!(b.payload(), &before[..], "a failed push leaves the frame unchanged");
                assert!(b.len() <= MAX_FRAME - 4);
                per_frame.push(b.items());
                let n = b.finish(&mut out).expect("finish");
                assert!(n <= MAX_ENCODED_FRAME);
                stream.extend_from_slice(&out[..n]);
                seq += 1;
                b.start(&HostHeader { seq, msg: HostMsg::Batch }).expect("header");
                b.push(op).expect("an op fits an empty frame");
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    per_frame.push(b.items());
    let n = b.finish(&mut out).expect("finish");
    stream.extend_from_slice(&out[..n]);
    assert!(seq >= 3, "5000 ops need several frames, got {seq}");
    assert_eq!(per_frame.iter().sum::<usize>(), ops.len());

    let payloads = deframe(&stream);
    assert_eq!(payloads.len(), seq as usize);
    let mut got = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let (h, items): (HostHeader, Vec<Op>) = decode_payload(p);
        assert_eq!(h, HostHeader { seq: i as u32 + 1, msg: HostMsg::Batch });
        assert_eq!(items.len(), per_frame[i]);
        got.extend(items);
    }
    assert_eq!(got, ops);
}

#[test]
fn typical_ipv4_route_upsert_is_small() {
    let mut worst = 0;
    for metric in [0, 20] {
        for id in [1, 127, 128, 16_383, 1 << 20] {
            let op = Op::Upsert(Object::Route(Route {
                key: RouteKey { table: 254, dst: Prefix::new(v4(10, 1, 2, 0), 24), metric, ifindex: 0 },
                kind: RouteType::Unicast,
                protocol: 4,
                scope: 0,
                nexthops: RouteNexthops::Object(id),
            }));
            let mut buf = [0u8; 64];
            let n = postcard::to_slice(&op, &mut buf).expect("encode").len();
            // The same size as an item inside a frame.
            let mut b = FrameBuilder::new([0u8; 128]);
            b.start(&HostHeader { seq: 1, msg: HostMsg::Batch }).expect("header");
            let hdr = b.len();
            b.push(&op).expect("push");
            assert_eq!(b.len() - hdr, n);
            println!("IPv4 route upsert, metric {metric}, nexthop id {id}: {n} bytes");
            assert!(n <= 24, "typical route upsert is {n} bytes");
            worst = worst.max(n);
        }
    }
    println!("largest typical IPv4 route upsert: {worst} bytes");
}

#[test]
fn validate_accepts_good_objects() {
    for o in all_objects() {
        assert_eq!(o.validate(), Ok(()), "{o:?}");
    }
    // IPv4 route via an IPv6 gateway (RFC 5549) is allowed.
    let r = route(
        254,
        Prefix::new(v4(10, 0, 0, 0), 8),
        0,
        RouteType::Unicast,
        RouteNexthops::Paths(hvec([path(1, Some(v6([0xfe80, 0, 0, 0, 0, 0, 0, 1])), 1)])),
    );
    assert_eq!(Object::Route(r).validate(), Ok(()));
    // Local routes may carry a nexthop.
    let r = route(255, Prefix::new(v4(10, 0, 0, 1), 32), 0, RouteType::Local, RouteNexthops::Object(3));
    assert_eq!(Object::Route(r).validate(), Ok(()));
    // Edges of the VLAN range.
    for (s, e) in [(1, 1), (4094, 4094), (1, 4094)] {
        let v = VlanRange { ifindex: 1, vid_start: s, vid_end: e, pvid: false, untagged: false };
        assert_eq!(Object::Vlan(v).validate(), Ok(()));
    }
}

#[test]
fn validate_rejects_bad_objects() {
    let good_route =
        route(254, Prefix::new(v4(10, 1, 2, 0), 24), 0, RouteType::Unicast, RouteNexthops::Object(1));
    let bad = |f: &dyn Fn(&mut Route)| {
        let mut r = good_route.clone();
        f(&mut r);
        Object::Route(r).validate()
    };
    assert_eq!(bad(&|_| {}), Ok(()));
    assert!(bad(&|r| r.key.dst = Prefix::new(v4(10, 1, 2, 1), 24)).is_err(), "host bits");
    assert!(bad(&|r| r.key.dst = Prefix::new(v4(10, 1, 2, 0), 33)).is_err(), "v4 len 33");
    assert!(bad(&|r| r.key.dst = Prefix::new(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]), 64)).is_err());
    assert!(bad(&|r| r.key.dst = Prefix::new(v6([0; 8]), 129)).is_err(), "v6 len 129");
    assert!(bad(&|r| r.nexthops = RouteNexthops::None).is_err(), "unicast without nexthop");
    assert!(bad(&|r| r.nexthops = RouteNexthops::Object(0)).is_err(), "nexthop id 0");
    assert!(bad(&|r| r.nexthops = RouteNexthops::Paths(heapless::Vec::new())).is_err(), "empty paths");
    assert!(bad(&|r| r.nexthops = RouteNexthops::Paths(hvec([path(0, None, 1)]))).is_err(), "path ifindex 0");
    assert!(bad(&|r| r.nexthops = RouteNexthops::Paths(hvec([path(1, None, 0)]))).is_err(), "weight 0");
    assert!(bad(&|r| r.nexthops = RouteNexthops::Paths(hvec([path(1, None, 257)]))).is_err(), "weight 257");
    assert!(
        bad(&|r| {
            r.key.dst = Prefix::new(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32);
            r.nexthops = RouteNexthops::Paths(hvec([path(1, Some(v4(10, 0, 0, 1)), 1)]));
        })
        .is_err(),
        "v6 route via v4 gateway"
    );
    for kind in [RouteType::Blackhole, RouteType::Unreachable, RouteType::Prohibit] {
        assert!(bad(&|r| r.kind = kind).is_err(), "{kind:?} with nexthops");
        assert_eq!(
            bad(&|r| {
                r.kind = kind;
                r.nexthops = RouteNexthops::None;
            }),
            Ok(())
        );
    }
    // Key::validate checks a delete's route key the same way.
    let k = RouteKey { table: 254, dst: Prefix::new(v4(10, 1, 2, 1), 24), metric: 0, ifindex: 0 };
    assert!(Key::Route(k).validate().is_err());

    // A per-device key: only for IPv6 link-local destinations, and only on
    // a local route or one through that device.
    let ll = Prefix::new(v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 64);
    let per_device = |dst: Prefix, ifindex: u32, kind: RouteType, nexthops: RouteNexthops| {
        let mut r = route(254, dst, 256, kind, nexthops);
        r.key.ifindex = ifindex;
        Object::Route(r).validate()
    };
    let through = |i| RouteNexthops::Paths(hvec([path(i, None, 1)]));
    assert_eq!(per_device(ll, 3, RouteType::Unicast, through(3)), Ok(()));
    assert_eq!(
        per_device(
            Prefix::new(v6([0xfe80, 0, 0, 0, 0, 0, 0, 1]), 128),
            3,
            RouteType::Local,
            RouteNexthops::None
        ),
        Ok(())
    );
    assert!(per_device(ll, 3, RouteType::Unicast, through(4)).is_err(), "path through another device");
    assert!(per_device(ll, 3, RouteType::Unicast, RouteNexthops::Object(1)).is_err(), "nexthop object");
    assert!(per_device(ll, 3, RouteType::Blackhole, RouteNexthops::None).is_err(), "blackhole");
    let global = Prefix::new(v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 64);
    assert!(per_device(global, 3, RouteType::Unicast, through(3)).is_err(), "not link-local");
    let k = RouteKey { table: 254, dst: Prefix::new(v4(10, 1, 2, 0), 24), metric: 0, ifindex: 3 };
    assert!(Key::Route(k).validate().is_err(), "IPv4 key with a device");

    // VLAN ranges.
    let vlan =
        |s, e| Object::Vlan(VlanRange { ifindex: 1, vid_start: s, vid_end: e, pvid: false, untagged: false });
    assert!(vlan(20, 10).validate().is_err(), "reversed");
    assert!(vlan(0, 10).validate().is_err(), "vid 0");
    assert!(vlan(1, 4095).validate().is_err(), "above 4094");
    assert!(vlan(4095, 4095).validate().is_err());
    let k = VlanKey { ifindex: 1, vid_start: 100, vid_end: 99 };
    assert!(Key::Vlan(k).validate().is_err());
    let k = VlanKey { ifindex: 0, vid_start: 1, vid_end: 1 };
    assert!(Key::Vlan(k).validate().is_err(), "ifindex 0");

    // Nexthop groups.
    let group = |members: &[(u32, u16)]| {
        Object::NexthopGroup(NexthopGroup {
            id: 10,
            members: hvec(members.iter().map(|&(id, weight)| GroupMember { id, weight })),
            resilient_buckets: None,
        })
    };
    assert_eq!(group(&[(1, 1), (2, 3)]).validate(), Ok(()));
    assert!(group(&[(1, 1), (2, 0)]).validate().is_err(), "weight 0");
    assert!(group(&[]).validate().is_err(), "empty");
    assert!(group(&[(0, 1)]).validate().is_err(), "member id 0");
    assert!(group(&[(10, 1)]).validate().is_err(), "member is the group itself");

    // Nexthops.
    let nh = |id, ifindex, gateway, blackhole| {
        Object::Nexthop(Nexthop { id, ifindex, gateway, blackhole, onlink: false, fdb: false })
    };
    assert!(nh(0, 1, None, false).validate().is_err(), "id 0");
    assert!(nh(1, 0, None, false).validate().is_err(), "neither device nor gateway");
    assert_eq!(nh(1, 0, None, true).validate(), Ok(()), "blackhole needs neither");
    assert_eq!(nh(1, 0, Some(v4(10, 0, 0, 1)), false).validate(), Ok(()));

    // Flows.
    let flow = |m: FlowMatch, actions: &[FlowAction]| {
        Object::Flow(FlowRule {
            cookie: 1,
            ifindex: 1,
            chain: 0,
            prio: 1,
            matches: m,
            actions: hvec(actions.iter().copied()),
        })
    };
    let v4m = Some(Masked { value: v4(10, 0, 0, 0), mask: v4(255, 0, 0, 0) });
    let v6m = Some(Masked {
        value: v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]),
        mask: v6([0xffff, 0xffff, 0, 0, 0, 0, 0, 0]),
    });
    let mixed = Some(Masked { value: v4(10, 0, 0, 0), mask: v6([0xffff; 8]) });
    assert_eq!(
        flow(FlowMatch { src_ip: v4m, dst_ip: v4m, ..Default::default() }, &[FlowAction::Drop]).validate(),
        Ok(())
    );
    assert!(flow(FlowMatch { src_ip: v4m, dst_ip: v6m, ..Default::default() }, &[FlowAction::Drop])
        .validate()
        .is_err());
    assert!(flow(FlowMatch { dst_ip: mixed, ..Default::default() }, &[FlowAction::Drop]).validate().is_err());
    assert!(flow(FlowMatch { src_ip: mixed, ..Default::default() }, &[FlowAction::Drop]).validate().is_err());
    assert!(flow(FlowMatch::default(), &[]).validate().is_err(), "no actions");
    assert!(flow(FlowMatch { vlan_id: Some(4096), ..Default::default() }, &[FlowAction::Pass])
        .validate()
        .is_err());
    assert!(flow(FlowMatch::default(), &[FlowAction::VlanPush { vid: 4096, tpid: 0x8100 }])
        .validate()
        .is_err());

    // Links, addresses, neighbours, FDB.
    let mut l = all_links().remove(0);
    l.ifindex = 0;
    assert!(Object::Link(l.clone()).validate().is_err());
    l.ifindex = 1;
    l.mtu = 0;
    assert!(Object::Link(l).validate().is_err());
    let a = Address { ifindex: 1, prefix: Prefix::new(v4(10, 0, 0, 1), 33), scope: 0 };
    assert!(Object::Address(a).validate().is_err());
    let a = Address { ifindex: 0, prefix: Prefix::new(v4(10, 0, 0, 1), 8), scope: 0 };
    assert!(Object::Address(a).validate().is_err());
    let n = Neighbour { ifindex: 0, ip: v4(10, 0, 0, 1), mac: None, state: 0, router: false };
    assert!(Object::Neighbour(n).validate().is_err());
    let f =
        FdbEntry { ifindex: 1, mac: mac(1), vid: 4096, master: 0, is_static: false, remote: None, vni: None };
    assert!(Object::Fdb(f.clone()).validate().is_err());
    assert!(Key::Fdb(f.key()).validate().is_err());
    let f = FdbEntry { ifindex: 0, vid: 1, ..f };
    assert!(Object::Fdb(f).validate().is_err());
}

// ------------------------------------------- bounded collections --

/// `Op::Upsert(Object::Route(..))` with inline paths, encoded from a std
/// `Vec` so that the path list may exceed `MAX_PATHS`. Postcard encodes
/// enum variants as varint u32 and sequences as varint length + items, so
/// this tuple has exactly the encoding of the enum.
fn route_with_std_paths(n: usize) -> Vec<u8> {
    let key = RouteKey { table: 254, dst: Prefix::new(v4(10, 0, 0, 0), 8), metric: 0, ifindex: 0 };
    let paths: Vec<Path> = (0..n as u32).map(|i| path(i + 1, Some(v4(10, 0, 0, i as u8)), 1)).collect();
    let (op_upsert, obj_route, nh_paths) = (0u32, 2u32, 2u32);
    postcard::to_allocvec(&(op_upsert, obj_route, key, RouteType::Unicast, 3u8, 0u8, nh_paths, paths))
        .expect("encode")
}

/// Wraps already encoded items into a Batch frame payload.
fn batch_payload(items: &[&[u8]]) -> Vec<u8> {
    let mut p = postcard::to_allocvec(&HostHeader { seq: 1, msg: HostMsg::Batch }).expect("encode");
    for it in items {
        p.extend_from_slice(it);
    }
    p
}

#[test]
fn crafted_path_list_at_bound_decodes() {
    let bytes = route_with_std_paths(MAX_PATHS);
    let op: Op = postcard::from_bytes(&bytes).expect("32 paths decode");
    let Op::Upsert(Object::Route(r)) = op else { panic!("not a route upsert") };
    let RouteNexthops::Paths(p) = &r.nexthops else { panic!("not paths") };
    assert_eq!(p.len(), MAX_PATHS);
    // And it is byte-identical to the heapless encoding.
    assert_eq!(postcard::to_allocvec(&Op::Upsert(Object::Route(r))).expect("encode"), bytes);
}

#[test]
fn path_list_over_bound_fails_cleanly() {
    let over = route_with_std_paths(MAX_PATHS + 1);
    assert!(postcard::from_bytes::<Op>(&over).is_err());

    // Through the frame reader: the good item before decodes, the bad one
    // is an error, and the rest of the frame is dropped.
    let good = route_with_std_paths(1);
    let payload = batch_payload(&[&good, &over, &good]);
    let mut r = FrameReader::new(&payload);
    assert_eq!(r.header::<HostHeader>(), Ok(HostHeader { seq: 1, msg: HostMsg::Batch }));
    assert!(matches!(r.next_item::<Op>(), Some(Ok(Op::Upsert(Object::Route(_))))));
    assert_eq!(r.next_item::<Op>(), Some(Err(FrameError::Decode)));
    assert_eq!(r.next_item::<Op>(), None);
}

#[test]
fn other_bounded_fields_over_bound_fail_cleanly() {
    // Nexthop group with 33 members: Op::Upsert(4 = NexthopGroup).
    let members: Vec<GroupMember> = (1..=33).map(|id| GroupMember { id, weight: 1 }).collect();
    let at: Vec<GroupMember> = members[..32].to_vec();
    let ok = postcard::to_allocvec(&(0u32, 4u32, 99u32, at, None::<u16>)).expect("encode");
    assert!(postcard::from_bytes::<Op>(&ok).is_ok());
    let over = postcard::to_allocvec(&(0u32, 4u32, 99u32, members, None::<u16>)).expect("encode");
    assert!(postcard::from_bytes::<Op>(&over).is_err());

    // Flow rule with 9 actions: Op::Upsert(8 = Flow).
    let actions = vec![FlowAction::Pass; MAX_FLOW_ACTIONS + 1];
    let enc = |a: &[FlowAction]| {
        postcard::to_allocvec(&(0u32, 8u32, 1u64, 1u32, 0u32, 1u16, FlowMatch::default(), a.to_vec()))
            .expect("encode")
    };
    assert!(postcard::from_bytes::<Op>(&enc(&actions[..MAX_FLOW_ACTIONS])).is_ok());
    assert!(postcard::from_bytes::<Op>(&enc(&actions)).is_err());

    // Link name of 16 bytes (IfName holds 15): Op::Upsert(0 = Link).
    let link = |n: &str| {
        postcard::to_allocvec(&(
            0u32,
            0u32,
            1u32,
            n.to_string(),
            LinkKind::Device,
            1500u32,
            None::<Mac>,
            OperState::Up,
            true,
            0u32,
            0u32,
            None::<u16>,
            None::<u32>,
        ))
        .expect("encode")
    };
    assert!(postcard::from_bytes::<Op>(&link("fifteen-chars-x")).is_ok());
    assert!(postcard::from_bytes::<Op>(&link("sixteen-chars-xx")).is_err());

    // Host hello name of 33 bytes: HostMsg::Hello = 0.
    let hello = |n: &str| postcard::to_allocvec(&(0u32, 0u32, VERSION, n.to_string())).expect("encode");
    let at_bound = hello(&"n".repeat(32));
    assert!(FrameReader::new(&at_bound).header::<HostHeader>().is_ok());
    let over = hello(&"n".repeat(33));
    let mut r = FrameReader::new(&over);
    assert_eq!(r.header::<HostHeader>(), Err(FrameError::Decode));
    assert_eq!(r.next_item::<Op>(), None, "nothing after a failed header");
}

/// An op pushed from its parts (variant index, then the object's or the
/// key's own encoding), as host-bridge sends what it keeps encoded, is
/// the same frame as the op pushed whole.
#[test]
fn encoded_parts_make_the_same_frame_as_whole_ops() {
    let r = route(
        254,
        Prefix::new(v4(10, 1, 0, 0), 16),
        20,
        RouteType::Unicast,
        RouteNexthops::Paths(hvec([path(3, Some(v4(192, 0, 2, 1)), 1)])),
    );
    let ops = [Op::Upsert(Object::Route(r.clone())), Op::Delete(Key::Route(r.key))];
    let header = HostHeader { seq: 7, msg: HostMsg::Batch };
    let whole = encode_frame(&header, &ops);
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    b.start(&header).expect("header fits");
    let obj = postcard::to_allocvec(&Object::Route(r.clone())).expect("encodes");
    let key = postcard::to_allocvec(&Key::Route(r.key)).expect("encodes");
    b.push_encoded(&[&[0], &obj]).expect("fits");
    b.push_encoded(&[&[1], &key]).expect("fits");
    assert_eq!(b.items(), 2);
    let mut out = vec![0u8; MAX_ENCODED_FRAME];
    let n = b.finish(&mut out).expect("finish");
    assert_eq!(out[..n], whole[..]);
    // A full frame refuses the item and stays as it was.
    let mut small = FrameBuilder::new(vec![0u8; 24]);
    small.start(&header).expect("header fits");
    let before = small.len();
    assert_eq!(small.push_encoded(&[&[0], &obj, &obj]), Err(FrameError::Full));
    assert_eq!((small.len(), small.items()), (before, 0));
}
