//! Property tests: the receive path never panics whatever arrives, and
//! randomly generated objects round trip.

use dpu_wire::crc32c::crc32c;
use dpu_wire::framing::max_encoded_len;
use dpu_wire::*;
use proptest::prelude::*;
use proptest::test_runner::Config;

// ------------------------------------------------------------ helpers --

fn config(cases: u32) -> Config {
    // No regression files: this crate's tests directory is not the place.
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// xorshift64*: bulk pseudo-random bytes, much faster than generating
/// 64 KiB element by element with proptest in a debug build.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Decodes a payload the way the agent does: a host header, then ops
/// until the end or the first error. Must never panic.
fn decode_host(payload: &[u8]) -> Result<(HostHeader, usize), FrameError> {
    let mut r = FrameReader::new(payload);
    let h: HostHeader = r.header()?;
    let mut n = 0;
    while let Some(op) = r.next_item::<Op>() {
        let op = op?;
        // What the agent does next with a decoded op must not panic either.
        let _ = op.key();
        if let Op::Upsert(o) = &op {
            let _ = o.validate();
        } else {
            let _ = op.key().validate();
        }
        n += 1;
    }
    Ok((h, n))
}

/// The host's side of the same: agent header and its items.
fn decode_agent(payload: &[u8]) {
    let mut r = FrameReader::new(payload);
    let Ok(h) = r.header::<AgentHeader>() else {
        return;
    };
    match h.msg {
        AgentMsg::Stats { .. } => while let Some(Ok(_)) = r.next_item::<StatEntry>() {},
        _ => while let Some(Ok(_)) = r.next_item::<Failure>() {},
    }
}

fn encode_frame(header: &HostHeader, ops: &[Op]) -> Vec<u8> {
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    b.start(header).expect("header");
    for op in ops {
        b.push(op).expect("op fits");
    }
    let mut out = vec![0u8; MAX_ENCODED_FRAME];
    let n = b.finish(&mut out).expect("finish");
    out.truncate(n);
    out
}

/// A frame with the right CRC around an arbitrary payload (so that the
/// decoder, not the CRC, sees the bytes).
fn wrap_payload(payload: &[u8]) -> Vec<u8> {
    let mut raw = payload.to_vec();
    raw.extend_from_slice(&crc32c(payload).to_le_bytes());
    let mut out = vec![0u8; max_encoded_len(raw.len())];
    let n = cobs::encode(&raw, &mut out);
    out.truncate(n);
    out.push(0);
    out
}

fn sample_ops() -> Vec<Op> {
    let route = Route {
        key: RouteKey { table: 254, dst: Prefix::new(Ip::V4([10, 1, 0, 0]), 16), metric: 20, ifindex: 0 },
        kind: RouteType::Unicast,
        protocol: 4,
        scope: 0,
        nexthops: RouteNexthops::Paths(
            (1..4)
                .map(|i| Path {
                    ifindex: i,
                    gateway: Some(Ip::V4([10, 0, 0, i as u8])),
                    weight: 1,
                    onlink: false,
                })
                .collect(),
        ),
    };
    let mut name = IfName::new();
    name.push_str("swp1").expect("fits");
    vec![
        Op::Upsert(Object::Route(route)),
        Op::Upsert(Object::Link(Link {
            ifindex: 3,
            name,
            kind: LinkKind::Device,
            mtu: 1500,
            mac: Some(Mac([2, 0, 0, 0, 0, 3])),
            oper: OperState::Up,
            admin_up: true,
            master: 10,
            parent: 0,
            vlan_id: None,
            vni: None,
        })),
        Op::Upsert(Object::Fdb(FdbEntry {
            ifindex: 20,
            mac: Mac([2, 0, 0, 0, 0, 9]),
            vid: 0,
            master: 10,
            is_static: true,
            remote: Some(Ip::V6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
            vni: Some(42),
        })),
        Op::Delete(Key::Flow(7)),
        Op::Upsert(Object::Flow(FlowRule {
            cookie: 7,
            ifindex: 3,
            chain: 0,
            prio: 1,
            matches: FlowMatch {
                ip_proto: Some(6),
                dst_port: Some(Masked { value: 80, mask: 0xffff }),
                ..Default::default()
            },
            actions: [FlowAction::Mirror(4), FlowAction::Drop].into_iter().collect(),
        })),
    ]
}

fn sample_frame(seq: u32) -> Vec<u8> {
    encode_frame(&HostHeader { seq, msg: HostMsg::Batch }, &sample_ops())
}

/// Feeds `stream` in the given chunk sizes and decodes every good payload.
/// Returns (good payloads, errors) and checks the stats agree.
fn feed(buf_len: usize, stream: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, u64) {
    let mut d = Deframer::new(vec![0u8; buf_len]);
    let mut good = Vec::new();
    let mut errors = 0u64;
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunks[i % chunks.len()].clamp(1, rest.len());
        i += 1;
        d.push(&rest[..n], |r| match r {
            Ok(p) => {
                assert!(p.len() + 4 <= buf_len, "payload larger than the buffer");
                let _ = decode_host(p);
                decode_agent(p);
                good.push(p.to_vec());
            }
            Err(e) => {
                assert_ne!(e, FrameError::Decode);
                assert_ne!(e, FrameError::Full);
                errors += 1;
            }
        });
        rest = &rest[n..];
    }
    assert_eq!(d.stats.frames, good.len() as u64);
    assert_eq!(d.stats.errors(), errors);
    (good, errors)
}

// ------------------------------------------------- 1: arbitrary bytes --

proptest! {
    #![proptest_config(config(500))]

    /// Arbitrary bytes from proptest itself (smaller case count: element-
    /// wise generation of up to 64 KiB is slow in debug builds).
    #[test]
    fn deframer_survives_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..65536),
        chunks in proptest::collection::vec(1usize..5000, 1..8),
        buf_len in prop_oneof![Just(0usize), 1usize..64, Just(1024), Just(max_encoded_len(MAX_FRAME))],
    ) {
        feed(buf_len, &bytes, &chunks);
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// 2000 streams up to 64 KiB: random bytes with a chosen density of
    /// zeros, good frames spliced in, random chunking and buffer sizes.
    #[test]
    fn deframer_survives_random_streams(
        seed in any::<u64>(),
        len in 0usize..65536,
        zero_per_256 in prop_oneof![Just(0u64), Just(1), 2u64..64, Just(255)],
        splice in 0usize..8,
        chunks in proptest::collection::vec(1usize..9000, 1..6),
        buf_len in prop_oneof![1usize..300, Just(2048), Just(max_encoded_len(MAX_FRAME))],
    ) {
        let mut rng = Rng::new(seed);
        let mut s: Vec<u8> = (0..len)
            .map(|_| {
                let x = rng.next();
                if (x >> 32) % 256 < zero_per_256 { 0 } else { x as u8 }
            })
            .collect();
        let frame = sample_frame(1);
        let mut spliced = 0;
        for _ in 0..splice {
            // Inserted after a zero (or at the start), the frame arrives whole.
            let at = rng.below(s.len() + 1);
            let at = s[..at].iter().rposition(|&b| b == 0).map_or(0, |z| z + 1);
            s.splice(at..at, frame.iter().copied());
            spliced += 1;
        }
        let (good, _) = feed(buf_len, &s, &chunks);
        if buf_len >= frame.len() - 1 {
            let matching = good.iter().filter(|p| decode_host(p).is_ok_and(|(h, n)| h.seq == 1 && n == sample_ops().len())).count();
            prop_assert!(matching >= spliced, "{matching} of {spliced} spliced frames decoded");
        }
    }

    /// Arbitrary payloads behind a correct CRC reach the decoder.
    #[test]
    fn decoder_survives_arbitrary_payloads(payload in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (good, errors) = feed(MAX_ENCODED_FRAME, &wrap_payload(&payload), &[usize::MAX]);
        prop_assert_eq!(errors, 0);
        prop_assert_eq!(&good, &vec![payload.clone()]);
        let _ = decode_host(&payload);
        decode_agent(&payload);
    }

    /// Valid payloads with a few bytes changed, behind a correct CRC:
    /// mostly-well-formed input that gets deep into the decoder.
    #[test]
    fn decoder_survives_mutated_payloads(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        truncate in any::<prop::sample::Index>(),
        cut in any::<bool>(),
    ) {
        let frame = sample_frame(5);
        let (good, _) = feed(MAX_ENCODED_FRAME, &frame, &[usize::MAX]);
        let mut p = good[0].clone();
        for (i, v) in flips {
            let i = i.index(p.len());
            p[i] = v;
        }
        if cut {
            p.truncate(truncate.index(p.len() + 1));
        }
        let _ = decode_host(&p);
        decode_agent(&p);
    }
}

// ----------------------------------------- 2: mutated valid frames --

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn mutated_frames_fail_cleanly(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
        drop_at in proptest::option::of(any::<prop::sample::Index>()),
        chunk in 1usize..600,
    ) {
        let frame = sample_frame(9);
        let (orig, _) = feed(MAX_ENCODED_FRAME, &frame, &[usize::MAX]);
        let orig = orig[0].clone();
        let mut m = frame.clone();
        for (i, x) in flips {
            let i = i.index(m.len());
            m[i] ^= x;
        }
        if let Some(d) = drop_at {
            m.remove(d.index(m.len()));
        }
        // Close whatever is left open, then send a good frame.
        m.push(0);
        m.extend(sample_frame(10));
        let (good, errors) = feed(MAX_ENCODED_FRAME, &m, &[chunk]);
        prop_assert!(!good.is_empty());
        let last = good.last().map(|p| decode_host(p));
        prop_assert!(matches!(last, Some(Ok((HostHeader { seq: 10, .. }, _)))), "the next frame survives");
        // A CRC mismatch is the expected outcome; passing it by chance
        // (2^-32) would show up here as a different payload.
        for p in &good[..good.len() - 1] {
            prop_assert_eq!(p, &orig);
        }
        if good.len() == 1 {
            prop_assert!(errors >= 1);
        }
    }
}

// ------------------------------------------ 3: generated round trips --

fn m<T>(o: Option<(T, T)>) -> Option<Masked<T>> {
    o.map(|(value, mask)| Masked { value, mask })
}

fn ip() -> impl Strategy<Value = Ip> {
    prop_oneof![any::<[u8; 4]>().prop_map(Ip::V4), any::<[u8; 16]>().prop_map(Ip::V6)]
}

fn ip_of(v6: bool) -> BoxedStrategy<Ip> {
    if v6 {
        any::<[u8; 16]>().prop_map(Ip::V6).boxed()
    } else {
        any::<[u8; 4]>().prop_map(Ip::V4).boxed()
    }
}

fn prefix() -> impl Strategy<Value = Prefix> {
    (ip(), any::<u8>()).prop_map(|(a, l)| {
        let len = l % (a.max_len() + 1);
        Prefix::new(a.masked(len), len)
    })
}

fn mac() -> impl Strategy<Value = Mac> {
    any::<[u8; 6]>().prop_map(Mac)
}

fn route_type() -> impl Strategy<Value = RouteType> {
    prop_oneof![
        Just(RouteType::Unicast),
        Just(RouteType::Blackhole),
        Just(RouteType::Unreachable),
        Just(RouteType::Prohibit),
        Just(RouteType::Local),
    ]
}

fn path() -> impl Strategy<Value = Path> {
    (any::<u32>(), proptest::option::of(ip()), any::<u16>(), any::<bool>())
        .prop_map(|(ifindex, gateway, weight, onlink)| Path { ifindex, gateway, weight, onlink })
}

fn route() -> impl Strategy<Value = Route> {
    let nexthops = prop_oneof![
        Just(RouteNexthops::None),
        any::<u32>().prop_map(RouteNexthops::Object),
        proptest::collection::vec(path(), 0..=MAX_PATHS)
            .prop_map(|v| RouteNexthops::Paths(v.into_iter().collect())),
    ];
    (any::<u32>(), prefix(), any::<u32>(), route_type(), any::<u8>(), any::<u8>(), nexthops).prop_map(
        |(table, dst, metric, kind, protocol, scope, nexthops)| Route {
            key: RouteKey { table, dst, metric, ifindex: 0 },
            kind,
            protocol,
            scope,
            nexthops,
        },
    )
}

fn fdb() -> impl Strategy<Value = FdbEntry> {
    (
        any::<u32>(),
        mac(),
        0u16..=4095,
        any::<u32>(),
        any::<bool>(),
        proptest::option::of(ip()),
        proptest::option::of(0u32..(1 << 24)),
    )
        .prop_map(|(ifindex, mac, vid, master, is_static, remote, vni)| FdbEntry {
            ifindex,
            mac,
            vid,
            master,
            is_static,
            remote,
            vni,
        })
}

fn flow_action() -> impl Strategy<Value = FlowAction> {
    prop_oneof![
        Just(FlowAction::Drop),
        Just(FlowAction::Pass),
        any::<u32>().prop_map(FlowAction::Redirect),
        any::<u32>().prop_map(FlowAction::Mirror),
        (0u16..=4095, prop_oneof![Just(0x8100u16), Just(0x88a8)])
            .prop_map(|(vid, tpid)| FlowAction::VlanPush { vid, tpid }),
        Just(FlowAction::VlanPop),
        any::<u32>().prop_map(FlowAction::Goto),
    ]
}

fn flow() -> impl Strategy<Value = FlowRule> {
    let ports = (
        proptest::option::of((any::<u16>(), any::<u16>())),
        proptest::option::of((any::<u16>(), any::<u16>())),
    );
    let macs = (proptest::option::of((mac(), mac())), proptest::option::of((mac(), mac())));
    let ips = any::<bool>().prop_flat_map(|v6| {
        (proptest::option::of((ip_of(v6), ip_of(v6))), proptest::option::of((ip_of(v6), ip_of(v6))))
    });
    let matches = (
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u16..=4095),
        proptest::option::of(any::<u8>()),
        macs,
        ips,
        ports,
    )
        .prop_map(|(eth_type, vlan_id, ip_proto, (sm, dm), (si, di), (sp, dp))| FlowMatch {
            eth_type,
            src_mac: m(sm),
            dst_mac: m(dm),
            vlan_id,
            ip_proto,
            src_ip: m(si),
            dst_ip: m(di),
            src_port: m(sp),
            dst_port: m(dp),
        });
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        matches,
        proptest::collection::vec(flow_action(), 1..=MAX_FLOW_ACTIONS),
    )
        .prop_map(|(cookie, ifindex, chain, prio, matches, actions)| FlowRule {
            cookie,
            ifindex,
            chain,
            prio,
            matches,
            actions: actions.into_iter().collect(),
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        route().prop_map(|r| Op::Upsert(Object::Route(r))),
        fdb().prop_map(|f| Op::Upsert(Object::Fdb(f))),
        flow().prop_map(|f| Op::Upsert(Object::Flow(f))),
        route().prop_map(|r| Op::Delete(Key::Route(r.key))),
        fdb().prop_map(|f| Op::Delete(Key::Fdb(f.key()))),
        any::<u64>().prop_map(|c| Op::Delete(Key::Flow(c))),
    ]
}

/// Sends `ops` in as many frames as needed and returns what arrives.
fn roundtrip(ops: &[Op]) -> Vec<Op> {
    let mut b = FrameBuilder::new(vec![0u8; 2048]);
    let mut out = vec![0u8; max_encoded_len(2048)];
    let mut stream = Vec::new();
    let mut seq = 1;
    b.start(&HostHeader { seq, msg: HostMsg::Batch }).expect("header");
    for op in ops {
        if b.push(op) == Err(FrameError::Full) {
            let n = b.finish(&mut out).expect("finish");
            stream.extend_from_slice(&out[..n]);
            seq += 1;
            b.start(&HostHeader { seq, msg: HostMsg::Batch }).expect("header");
            b.push(op).expect("one op fits a frame");
        }
    }
    let n = b.finish(&mut out).expect("finish");
    stream.extend_from_slice(&out[..n]);
    let (good, errors) = feed(max_encoded_len(2048), &stream, &[usize::MAX]);
    assert_eq!(errors, 0);
    assert_eq!(good.len(), seq as usize);
    let mut got = Vec::new();
    for (i, p) in good.iter().enumerate() {
        let mut r = FrameReader::new(p);
        assert_eq!(r.header::<HostHeader>(), Ok(HostHeader { seq: i as u32 + 1, msg: HostMsg::Batch }));
        while let Some(op) = r.next_item::<Op>() {
            got.push(op.expect("op decodes"));
        }
    }
    got
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn routes_round_trip(routes in proptest::collection::vec(route(), 1..8)) {
        let ops: Vec<Op> = routes.into_iter().map(|r| Op::Upsert(Object::Route(r))).collect();
        for op in &ops {
            let Op::Upsert(o) = op else { unreachable!() };
            // Generated destinations are canonical: whatever validate says,
            // it is not about host bits.
            prop_assert_ne!(o.validate(), Err("route destination has host bits set"));
        }
        prop_assert_eq!(roundtrip(&ops), ops);
    }

    #[test]
    fn fdb_entries_round_trip(entries in proptest::collection::vec(fdb(), 1..20)) {
        let ops: Vec<Op> = entries.into_iter().map(|f| Op::Upsert(Object::Fdb(f))).collect();
        prop_assert_eq!(roundtrip(&ops), ops);
    }

    #[test]
    fn flows_round_trip(flows in proptest::collection::vec(flow(), 1..8)) {
        let ops: Vec<Op> = flows.into_iter().map(|f| Op::Upsert(Object::Flow(f))).collect();
        for op in &ops {
            let Op::Upsert(o) = op else { unreachable!() };
            // Same-family addresses, VIDs in range, actions present.
            prop_assert_eq!(o.validate(), Ok(()));
        }
        prop_assert_eq!(roundtrip(&ops), ops);
    }

    #[test]
    fn mixed_ops_round_trip(ops in proptest::collection::vec(op(), 0..40)) {
        prop_assert_eq!(roundtrip(&ops), ops);
    }
}
