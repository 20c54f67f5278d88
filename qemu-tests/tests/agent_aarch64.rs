//! End-to-end tests of the aarch64 agent under qemu-user: the host side
//! speaks the wire protocol over a Unix socket, and the hardware region
//! file is read back independently (dpu_hw::reader) and exercised with
//! the packet model (dpu_hw::lookup).

use dpu_hw::lookup::{self, DropReason, Packet, TrapReason, Verdict};
use dpu_hw::reader::HwTables;
use dpu_hw::TableId;
use dpu_wire::*;
use host_bridge::agent_link::decode;
use host_bridge::{AgentEvent, LinkError};
use qemu_tests::topo::*;
use qemu_tests::*;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn fwd(ifindex: u32, dst_mac: Mac, src_mac: Mac) -> Verdict {
    Verdict::Forward { ifindex, dst_mac, src_mac, vlan: None, tunnel_dst: None }
}

fn tcp(in_ifindex: u32, dst: Ip, sport: u16) -> Packet {
    let src = match dst {
        Ip::V4(_) => ip4(10, 1, 0, 50),
        Ip::V6(_) => ip6("2001:db8:ffff::50"),
    };
    Packet::ip(in_ifindex, port_mac(in_ifindex), src, dst, 6, sport, 80)
}

fn udp53(in_ifindex: u32, sport: u16) -> Packet {
    Packet::ip(in_ifindex, port_mac(in_ifindex), ip4(10, 0, 0, 50), ip4(8, 8, 8, 8), 17, sport, 53)
}

/// Snapshots the full topology on a fresh agent and checks the hardware.
fn snapshot_topology(agent: &RunningAgent, link: &mut host_bridge::AgentLink<host_bridge::Channel>) -> Model {
    let ops = topology();
    let model = Model::new(&ops);
    let (r, _) = link.snapshot(1, &ops).expect("snapshot");
    assert_all_ok(&r, ops.len());
    model.check(&agent.hw());
    model
}

#[test]
fn snapshot_updates_deletes() {
    let agent = RunningAgent::start();
    let mut link = agent.session();
    let ops = topology();
    let mut model = Model::new(&ops);

    // Snapshot on an empty (cold) region: everything is written once.
    let (r, (unchanged, written, removed)) = link.snapshot(1, &ops).expect("snapshot");
    assert_all_ok(&r, ops.len());
    let hw = agent.hw();
    model.check(&hw);
    let used: u32 = hw.tables.iter().map(|t| t.used).sum();
    assert_eq!((unchanged, written, removed), (0, used, 0), "snapshot report on a cold region");

    // Forwarding decisions of the hardware as programmed.
    let region = agent.region();
    let cases = [
        // Default route via nexthop object 10: p0, neighbour MAC rewrite.
        (tcp(P1, ip4(8, 8, 8, 8), 1000), fwd(P0, nmac(1), port_mac(P0))),
        // Inline single path.
        (tcp(P0, ip4(203, 0, 113, 9), 1000), fwd(P1, nmac(2), port_mac(P1))),
        // IPv6 inline path via a link-local gateway.
        (tcp(P0, ip6("2001:db8:1::5"), 1000), fwd(P1, nmac(5), port_mac(P1))),
        // IPv6 default via nexthop object 12.
        (tcp(P1, ip6("2001:db8:9999::1"), 1000), fwd(P0, nmac(4), port_mac(P0))),
        (tcp(P1, ip4(10, 99, 1, 1), 1000), Verdict::Drop(DropReason::Blackhole)),
        (tcp(P1, ip4(10, 98, 1, 1), 1000), Verdict::Drop(DropReason::Unreachable)),
        (tcp(P1, ip4(10, 97, 1, 1), 1000), Verdict::Drop(DropReason::Prohibit)),
        (tcp(P1, ip4(10, 0, 0, 1), 1000), Verdict::Trap(TrapReason::Local)),
        (tcp(P1, ip4(10, 0, 0, 99), 1000), Verdict::Trap(TrapReason::NeighbourMiss)),
        (udp53(P0, 4000), Verdict::Drop(DropReason::Flow(FLOW_DNS_DROP))),
        // Bridged: untagged on swp1 (PVID 10) to a MAC learnt behind swp2.
        (Packet::l2(SWP1, hmac(9), hmac(2), None), fwd(SWP2, hmac(2), hmac(9))),
        // Tagged VID 20, tagged egress.
        (
            Packet::l2(SWP1, hmac(9), hmac(3), Some(20)),
            Verdict::Forward {
                ifindex: SWP2,
                dst_mac: hmac(3),
                src_mac: hmac(9),
                vlan: Some(20),
                tunnel_dst: None,
            },
        ),
        // VID 21 is not a member of swp2: filtered.
        (Packet::l2(SWP2, hmac(9), hmac(4), Some(21)), Verdict::Drop(DropReason::VlanFilter)),
        (Packet::l2(SWP1, hmac(9), hmac(7), None), Verdict::Flood { bridge: BR0, vid: 10 }),
    ];
    for (pkt, want) in &cases {
        assert_eq!(lookup::process(&region, pkt).verdict, *want, "{pkt:?}");
    }
    let mut t100 = tcp(P0, ip4(1, 1, 1, 1), 1000);
    t100.table = T100;
    assert_eq!(lookup::process(&region, &t100).verdict, fwd(P1, nmac(2), port_mac(P1)), "table 100");
    // The group route: flows that differ only in their source port take
    // one member under the kernel's default hash policy (0, L3), and
    // spread over both once the DPU hears policy 1 (L4).
    let egress = || -> std::collections::BTreeSet<u32> {
        (0..64)
            .filter_map(|s| {
                match lookup::process(&region, &tcp(P1, ip4(198, 51, 100, 7), 1000 + s)).verdict {
                    Verdict::Forward { ifindex, .. } => Some(ifindex),
                    _ => None,
                }
            })
            .collect()
    };
    assert_eq!(egress().len(), 1, "ECMP over group {GROUP}, L3 hash: one member for one address pair");
    let l4 = [Op::Upsert(Object::EcmpHash(EcmpHash { family: Family::V4, policy: EcmpHash::L4, fields: 0 }))];
    assert_all_ok(&link.apply(&l4).expect("hash policy"), 1);
    assert_eq!(egress(), [P0, P1].into(), "ECMP over group {GROUP}, L4 hash");
    assert_all_ok(&link.apply(&[Op::Delete(Key::EcmpHash(Family::V4))]).expect("hash policy"), 1);
    assert_eq!(egress().len(), 1, "ECMP over group {GROUP}, back to the default");

    // Updates: a route's nexthop, a neighbour's MAC, a group's members.
    let upd = vec![
        Op::Upsert(route_nh(default_v4(), NH_P1_B)),
        Op::Upsert(neigh(P1, ip4(10, 1, 0, 254), Some(nmac(0x22)), NUD_REACHABLE)),
        Op::Upsert(group(GROUP, &[(NH_P0, 1), (NH_P1_B, 5)])),
    ];
    let r = link.apply(&upd).expect("updates");
    assert_all_ok(&r, upd.len());
    model.apply(&upd);
    model.check(&agent.hw());
    assert_eq!(
        lookup::process(&region, &tcp(P0, ip4(8, 8, 8, 8), 1)).verdict,
        fwd(P1, nmac(3), port_mac(P1))
    );
    assert_eq!(
        lookup::process(&region, &tcp(P0, ip4(203, 0, 113, 9), 1)).verdict,
        fwd(P1, nmac(0x22), port_mac(P1))
    );

    // Deletes: routes (one frees the agent's own nexthop), a neighbour,
    // an FDB entry, a VLAN range, the flow.
    let del = vec![
        Op::Delete(Key::Route(inline_v4())),
        Op::Delete(Key::Route(connected_v4())),
        Op::Delete(Key::Neighbour(NeighbourKey { ifindex: P1, ip: ip4(10, 1, 0, 253) })),
        Op::Delete(Key::Fdb(FdbKey { ifindex: SWP2, mac: hmac(2), vid: 10 })),
        Op::Delete(Key::Vlan(VlanKey { ifindex: SWP1, vid_start: 20, vid_end: 22 })),
        Op::Delete(Key::Flow(FLOW_DNS_DROP)),
    ];
    let r = link.apply(&del).expect("deletes");
    assert_all_ok(&r, del.len());
    model.apply(&del);
    model.check(&agent.hw());
    assert_eq!(
        lookup::process(&region, &tcp(P0, ip4(8, 8, 8, 8), 1)).verdict,
        Verdict::Trap(TrapReason::NeighbourMiss),
        "default route's neighbour deleted"
    );
    assert_eq!(
        lookup::process(&region, &Packet::l2(SWP1, hmac(9), hmac(2), None)).verdict,
        Verdict::Flood { bridge: BR0, vid: 10 }
    );
    assert_eq!(
        lookup::process(&region, &Packet::l2(SWP1, hmac(9), hmac(4), Some(21))).verdict,
        Verdict::Drop(DropReason::VlanFilter)
    );
    assert!(lookup::process(&region, &udp53(P0, 1)).flows.is_empty(), "flow deleted");

    // A nexthop object or group still used by a route is refused.
    let busy = [Op::Delete(Key::Nexthop(NH_P1)), Op::Delete(Key::NexthopGroup(GROUP))];
    let r = link.apply(&busy).expect("delete in-use objects");
    assert_eq!(r.ok, 0);
    assert_eq!(
        r.failures,
        vec![
            (0, Status::InUse, Some(Key::Nexthop(NH_P1))),
            (1, Status::InUse, Some(Key::NexthopGroup(GROUP)))
        ]
    );
    model.check(&agent.hw());
    // Once its last route is gone, the nexthop goes.
    let del = [Op::Delete(Key::Route(t100_default_v4())), Op::Delete(Key::Nexthop(NH_P1))];
    let r = link.apply(&del).expect("delete route then nexthop");
    assert_all_ok(&r, del.len());
    model.apply(&del);
    model.check(&agent.hw());
    assert_eq!(lookup::process(&region, &t100).verdict, Verdict::Drop(DropReason::NoRoute));
}

#[test]
fn resync_after_reconnect_leaves_unchanged_entries() {
    let agent = RunningAgent::start();
    let model = {
        let mut link = agent.session();
        snapshot_topology(&agent, &mut link)
    };
    // The connection is gone: the hardware stays as it is.
    let before = Regs::of(&agent.hw());
    assert!(
        agent.wait_log("host closed the connection", 1, Duration::from_secs(20)),
        "agent did not notice the disconnect; log:\n{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let hw = agent.hw();
    assert_eq!(Regs::of(&hw), before, "hardware registers moved while disconnected");
    model.check(&hw);

    // The host comes back with one route gone and one new.
    let mut next = model.clone();
    let added = route_key(MAIN, ip4(10, 96, 0, 0), 16, 0);
    next.apply(&[Op::Delete(Key::Route(unreachable_v4())), Op::Upsert(route_nh(added, NH_P0))]);
    let mut link = agent.session();
    let ops = next.ops();
    let (r, (unchanged, written, removed)) = link.snapshot(2, &ops).expect("resync snapshot");
    assert_all_ok(&r, ops.len());
    let hw = agent.hw();
    next.check(&hw);
    let d = before.delta(&Regs::of(&hw));
    for t in TableId::ALL {
        let want = if t == TableId::Route4 { (1, 1) } else { (0, 0) };
        assert_eq!(d[t as usize], want, "{} register delta; all: {}", t.name(), describe_delta(&d));
    }
    assert_eq!((written, removed), (1, 1), "SnapshotDone report");
    assert_eq!(unchanged as usize, next.object_entries() - 1, "SnapshotDone unchanged");

    let log = agent.log();
    assert_eq!(log.matches("session starts").count(), 2, "log:\n{log}");
    let closed = log.find("host closed the connection").expect("disconnect logged");
    let second = log.rfind("session starts").expect("second session logged");
    assert!(closed < second, "the agent waited for the next session after the disconnect; log:\n{log}");
}

#[test]
fn warm_restart_rewrites_nothing() {
    let mut agent = RunningAgent::start();
    let model = {
        let mut link = agent.session();
        snapshot_topology(&agent, &mut link)
    };
    let before = Regs::of(&agent.hw());
    agent.restart();
    assert!(agent.log().contains("warm start"), "log:\n{}", agent.log());
    let hw = agent.hw();
    assert_eq!(Regs::of(&hw), before, "the restart itself wrote to the hardware");
    model.check(&hw);
    // The hardware forwarded all along.
    assert_eq!(
        lookup::process(&agent.region(), &tcp(P1, ip4(8, 8, 8, 8), 1)).verdict,
        fwd(P0, nmac(1), port_mac(P0))
    );

    let mut link = agent.session();
    let ops = model.ops();
    let (r, (unchanged, written, removed)) = link.snapshot(2, &ops).expect("snapshot after restart");
    assert_all_ok(&r, ops.len());
    let hw = agent.hw();
    let d = before.delta(&Regs::of(&hw));
    assert!(d.iter().all(|&x| x == (0, 0)), "registers moved: {}", describe_delta(&d));
    assert_eq!((written, removed), (0, 0), "SnapshotDone report");
    assert_eq!(unchanged as usize, model.object_entries(), "SnapshotDone unchanged");
    model.check(&hw);

    // The references rebuilt from the hardware hold: a snapshot without
    // the IPv6 multipath route frees its group and the one nexthop no
    // other route uses, and nothing else.
    let mut next = model.clone();
    next.apply(&[Op::Delete(Key::Route(route_key(MAIN, ip6("2001:db8:2::"), 48, 1024)))]);
    let ops = next.ops();
    let (r, (_, written, removed)) = link.snapshot(3, &ops).expect("snapshot without a multipath route");
    assert_all_ok(&r, ops.len());
    let hw = agent.hw();
    next.check(&hw);
    assert_eq!((written, removed), (0, 3), "route, its group and one of its two nexthops removed");
}

#[test]
fn table_full_per_entry() {
    let agent = RunningAgent::start();
    let mut link = agent.session();
    let mut model = snapshot_topology(&agent, &mut link);
    let cap = agent.hw().stats(TableId::Route4).capacity as usize;
    assert_eq!(cap, 1024);
    let present = agent.hw().stats(TableId::Route4).used as usize;
    assert!(present > 0);

    let routes: Vec<Op> = (0..1100u32)
        .map(|i| Op::Upsert(route_nh(route_key(MAIN, ip4(100, (i >> 8) as u8, i as u8, 0), 24, 0), NH_P0)))
        .collect();
    let r = link.apply(&routes).expect("apply 1100 routes");
    let fit = cap - present;
    assert_eq!(r.ok, fit, "routes accepted");
    assert_eq!(r.failures.len(), routes.len() - fit, "routes refused");
    for (n, &(index, status, key)) in r.failures.iter().enumerate() {
        assert_eq!(index, fit + n, "failure {n} index");
        assert_eq!(status, Status::TableFull, "failure {n} status");
        assert_eq!(key, Some(routes[index].key()), "failure {n} key");
        assert!(matches!(key, Some(Key::Route(_))));
    }
    model.apply(&routes[..fit]);
    let hw = agent.hw();
    assert_eq!(hw.stats(TableId::Route4).used as usize, cap);
    model.check(&hw);

    // Room for ten: ten of the refused fit now.
    let dels: Vec<Op> = routes[..10].iter().map(|o| Op::Delete(o.key())).collect();
    let r = link.apply(&dels).expect("delete 10 routes");
    assert_all_ok(&r, dels.len());
    model.apply(&dels);
    let again = &routes[fit..fit + 10];
    let r = link.apply(again).expect("re-apply 10 refused routes");
    assert_all_ok(&r, again.len());
    model.apply(again);
    let hw = agent.hw();
    assert_eq!(hw.stats(TableId::Route4).used as usize, cap);
    model.check(&hw);
    // And the table is full again.
    let r = link.apply(&routes[fit + 10..fit + 11]).expect("one more");
    assert_eq!(r.failures, vec![(0, Status::TableFull, Some(routes[fit + 10].key()))]);
}

/// Counters per stats key: [packets, bytes, tx_packets, tx_bytes].
#[derive(Default, Debug)]
struct Tally(Vec<(StatKey, [u64; 4])>);

impl Tally {
    fn add(&mut self, key: StatKey, i: usize, v: u64) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => c[i] += v,
            None => {
                let mut c = [0; 4];
                c[i] = v;
                self.0.push((key, c));
            }
        }
    }

    /// Keys whose counters differ from `entries` (missing ones included).
    fn mismatches(&self, entries: &[StatEntry]) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(k, c)| {
                let got = entries
                    .iter()
                    .rev()
                    .find(|e| e.key == *k)
                    .map(|e| [e.packets, e.bytes, e.tx_packets, e.tx_bytes]);
                (got != Some(*c)).then(|| format!("{k:?}: expected {c:?}, got {got:?}"))
            })
            .collect()
    }
}

fn route_key_at(hw: &HwTables, t: TableId, slot: u32) -> RouteKey {
    let r = hw
        .routes
        .iter()
        .find(|r| r.slot == slot && (t == TableId::Route4) == matches!(r.entry.dst, Ip::V4(_)))
        .expect("route slot the model hit");
    RouteKey {
        table: r.entry.table,
        dst: Prefix::new(r.entry.dst, r.entry.plen),
        metric: r.entry.metric,
        ifindex: 0,
    }
}

#[test]
fn stats_carry_hardware_counters() {
    let agent = RunningAgent::start_with(&["--stats-interval", "200"]);
    let mut link = agent.session();
    let model = snapshot_topology(&agent, &mut link);
    let hw = agent.hw();
    let region = agent.region();

    let mut pkts = Vec::new();
    for s in 0..37 {
        pkts.push(tcp(P1, ip4(8, 8, (s % 7) as u8, 1), 2000 + s)); // default route, nexthop 10
    }
    for s in 0..40 {
        pkts.push(tcp(P1, ip4(198, 51, 100, 7), 3000 + s)); // group 20: nexthops 10 and 11
    }
    for s in 0..23 {
        pkts.push(udp53(P0, 4000 + s)); // dropped by the flow
    }
    for s in 0..11 {
        pkts.push(tcp(P0, ip4(192, 0, 2, 33), 5000 + s)); // multipath inline route
    }
    for s in 0..9 {
        pkts.push(tcp(P1, ip6("2001:db8:2::9"), 6000 + s)); // IPv6 multipath inline route
    }
    let mut tally = Tally::default();
    let mut flow_drops = 0;
    for p in &pkts {
        let out = lookup::process(&region, p);
        let len = p.len as u64;
        tally.add(StatKey::Port(p.in_ifindex), 0, 1);
        tally.add(StatKey::Port(p.in_ifindex), 1, len);
        for &c in &out.flows {
            tally.add(StatKey::Flow(c), 0, 1);
            tally.add(StatKey::Flow(c), 1, len);
        }
        if let Some((t, slot)) = out.route {
            let k = StatKey::Route(route_key_at(&hw, t, slot));
            tally.add(k, 0, 1);
            tally.add(k, 1, len);
        }
        if let Some(slot) = out.nexthop {
            let id = hw.nexthops.iter().find(|n| n.slot == slot).expect("nexthop slot").entry.id;
            if id != 0 {
                tally.add(StatKey::Nexthop(id), 0, 1);
                tally.add(StatKey::Nexthop(id), 1, len);
            }
        }
        match out.verdict {
            Verdict::Forward { ifindex, .. } => {
                tally.add(StatKey::Port(ifindex), 2, 1);
                tally.add(StatKey::Port(ifindex), 3, len);
            }
            Verdict::Drop(DropReason::Flow(c)) => {
                assert_eq!(c, FLOW_DNS_DROP);
                flow_drops += 1;
            }
            v => panic!("unexpected verdict {v:?} for {p:?}"),
        }
    }
    assert_eq!(flow_drops, 23);
    let keys = |k: fn(&StatKey) -> bool| tally.0.iter().filter(|(x, _)| k(x)).count();
    assert_eq!(keys(|k| matches!(k, StatKey::Nexthop(_))), 2, "both group members hit: {tally:?}");
    assert_eq!(keys(|k| matches!(k, StatKey::Route(_))), 4);
    assert_eq!(tally.0.iter().find(|(k, _)| *k == StatKey::Flow(FLOW_DNS_DROP)).map(|x| x.1[0]), Some(23));

    // Periodic stats frames carry what moved.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut periodic: Vec<StatEntry> = Vec::new();
    let mut frames = 0;
    loop {
        link.heartbeat().expect("heartbeat");
        for ev in link.take_events() {
            if let AgentEvent::Stats { entries, .. } = ev {
                frames += 1;
                periodic.extend(entries);
            }
        }
        if frames > 0 && tally.mismatches(&periodic).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "periodic stats ({frames} frames) never matched: {:#?}",
            tally.mismatches(&periodic)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A requested pass carries every counted object.
    let all = link.stats().expect("stats");
    assert!(tally.mismatches(&all).is_empty(), "requested stats: {:#?}", tally.mismatches(&all));
    let e = model.expected();
    let counted =
        e.ports.len() + e.routes.len() + e.nexthops.iter().filter(|n| n.0 != 0).count() + e.flows.len();
    assert_eq!(all.len(), counted, "entries of a full stats pass: {all:#?}");
    let idle = |k: StatKey| all.iter().find(|e| e.key == k).expect("stats entry").idle_ms;
    assert!(idle(StatKey::Route(default_v4())) < 60_000, "hit route idle time");
    assert_eq!(idle(StatKey::Route(unreachable_v4())), u32::MAX, "never hit route");
    let unhit = all.iter().find(|e| e.key == StatKey::Nexthop(NH_P0_V6)).expect("nexthop 12 stats");
    assert_eq!((unhit.packets, unhit.bytes), (0, 0));
}

#[test]
fn hostile_bytes_neither_crash_nor_grow() {
    const TOTAL: usize = 20 << 20;
    const WARMUP: usize = 2 << 20;
    let mut agent = RunningAgent::start();
    let mut link = agent.session();
    // Plain blocking handles on the link's socket (the link itself is
    // non-blocking; it is not used until this session is over).
    use std::os::fd::AsFd;
    let base = std::os::unix::net::UnixStream::from(
        link.stream().as_fd().try_clone_to_owned().expect("duplicate the socket"),
    );
    base.set_nonblocking(false).expect("blocking");
    let mut w = base.try_clone().expect("clone the socket for writing");
    let mut r = base.try_clone().expect("clone the socket for reading");

    // Drains the agent's answers so it never blocks writing them.
    let (tx, rx) = mpsc::channel::<AgentEvent>();
    let drain = std::thread::spawn(move || {
        let mut d = Deframer::new(vec![0u8; framing::max_encoded_len(MAX_FRAME)]);
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            d.push(&buf[..n], |f| {
                if let Some(ev) = f.ok().and_then(decode) {
                    let _ = tx.send(ev);
                }
            });
        }
    });

    let mut resyncs = 0usize;
    let sync = |w: &mut std::os::unix::net::UnixStream, resyncs: &mut usize| {
        // A zero ends whatever partial frame is pending; then a heartbeat.
        w.write_all(&[0]).expect("write");
        w.write_all(&host_frame(0, HostMsg::Heartbeat { uptime_ms: 0 }, &[])).expect("write heartbeat");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(AgentEvent::Heartbeat { .. }) => return,
                Ok(AgentEvent::ResyncNeeded { .. }) => *resyncs += 1,
                Ok(_) => {}
                Err(e) => panic!("no heartbeat answer during the hostile input: {e}"),
            }
        }
    };

    let mut rng = Rng::new(0x5eed_f00d_dead_beef);
    let valid = host_frame(7, HostMsg::Batch, &topology()[..40]);
    let mut sent = 0usize;
    let mut rss_warm = None;
    let mut kinds = [0usize; 6];
    while sent < TOTAL {
        let kind = rng.below(6) as usize;
        kinds[kind] += 1;
        let chunk = match kind {
            // Random bytes.
            0 => {
                let n = 1 + rng.below(64 * 1024) as usize;
                rng.bytes(n)
            }
            // Frames with a correct CRC around random payloads (never a
            // hello, which would end the session, nor a heartbeat, which
            // would confuse the sync).
            1 => {
                let mut out = Vec::new();
                for _ in 0..1 + rng.below(16) {
                    let payload = loop {
                        let n = rng.below(2048) as usize;
                        let p = rng.bytes(n);
                        let h = FrameReader::new(&p).header::<HostHeader>();
                        if !matches!(
                            h,
                            Ok(HostHeader { msg: HostMsg::Hello(_) | HostMsg::Heartbeat { .. }, .. })
                        ) {
                            break p;
                        }
                    };
                    out.extend(raw_frame(&payload));
                }
                out
            }
            // A batch header with garbage items, random sequence number.
            2 => {
                let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
                b.start(&HostHeader { seq: rng.next_u64() as u32, msg: HostMsg::Batch }).expect("header");
                let mut p = b.payload().to_vec();
                let n = rng.below(4096) as usize;
                p.extend(rng.bytes(n));
                raw_frame(&p)
            }
            // Truncated frames, some terminated, some running into the next.
            3 => {
                let cut = rng.below(valid.len() as u64 - 1) as usize;
                let mut f = valid[..cut].to_vec();
                if rng.below(2) == 0 {
                    f.push(0);
                }
                f
            }
            // Oversize frames: more than MAX_FRAME bytes without a zero.
            4 => {
                let n = MAX_FRAME + 1 + rng.below(3 * MAX_FRAME as u64) as usize;
                let mut f: Vec<u8> = rng.bytes(n).into_iter().map(|b| b.max(1)).collect();
                f.push(0);
                f
            }
            // A valid frame with one corrupted byte.
            _ => {
                let mut f = valid.clone();
                let i = rng.below(f.len() as u64 - 1) as usize;
                f[i] = f[i].wrapping_add(1 + rng.below(254) as u8).max(1);
                f
            }
        };
        w.write_all(&chunk).expect("agent stopped reading");
        sent += chunk.len();
        if rss_warm.is_none() && sent >= WARMUP {
            sync(&mut w, &mut resyncs);
            rss_warm = Some(agent.rss_kb());
        }
    }
    sync(&mut w, &mut resyncs);
    let rss_end = agent.rss_kb();
    let rss_warm = rss_warm.expect("warm-up measured");
    assert!(agent.alive(), "agent died; log:\n{}", agent.log());
    eprintln!("hostile input: {sent} bytes, chunks per kind {kinds:?}, RSS {rss_warm} kB after warm-up, {rss_end} kB at the end");
    assert!(
        rss_end < rss_warm + 1024,
        "agent RSS grew from {rss_warm} kB to {rss_end} kB over {sent} hostile bytes (chunks per kind {kinds:?})"
    );
    while let Ok(ev) = rx.try_recv() {
        if matches!(ev, AgentEvent::ResyncNeeded { .. }) {
            resyncs += 1;
        }
    }
    assert!(resyncs > 0, "the agent never asked for a resync");
    w.shutdown(std::net::Shutdown::Both).expect("shutdown");
    drop(link);
    drain.join().expect("drain thread");

    // A new session works as if nothing happened.
    let mut link = agent.session();
    link.heartbeat().expect("heartbeat after the hostile input");
    let ops = topology();
    let (r, _) = link.snapshot(9, &ops).expect("snapshot after the hostile input");
    assert_all_ok(&r, ops.len());
    Model::new(&ops).check(&agent.hw());
    link.heartbeat().expect("heartbeat after the snapshot");
}

#[test]
fn version_mismatch_is_refused_and_logged() {
    let agent = RunningAgent::start();
    let mut link = agent.connect();
    match link.hello_as(Version { major: VERSION.major + 1, minor: 0 }, "future-host") {
        Err(LinkError::Agent { code: ErrorCode::VersionMismatch, .. }) => {}
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    assert!(agent.wait_log("refusing", 1, Duration::from_secs(10)), "log:\n{}", agent.log());

    // A compatible host is served afterwards.
    let mut link = agent.session();
    link.heartbeat().expect("heartbeat");
    snapshot_topology(&agent, &mut link);
}

#[test]
fn refused_session_is_closed() {
    let agent = RunningAgent::start();
    let mut link = agent.connect();
    link.timeout = Duration::from_secs(5);
    let r = link.hello_as(Version { major: VERSION.major + 1, minor: 0 }, "future-host");
    assert!(matches!(r, Err(LinkError::Agent { code: ErrorCode::VersionMismatch, .. })), "{r:?}");
    assert!(agent.wait_log("closing the session", 1, Duration::from_secs(10)), "log:\n{}", agent.log());
    // The agent said it closes the session: the host must see the end.
    match link.recv() {
        Err(LinkError::Closed) | Err(LinkError::Io(_)) => {}
        other => panic!("expected the refused session to be closed, got {other:?}"),
    }
}

#[test]
fn help_lists_every_option() {
    let out = run_agent_cli(&["--help"]);
    assert!(out.status.success(), "--help: {}", out.status);
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in ["--listen", "--hw", "--cold", "--stats-interval", "--tick", "--board", "--version"] {
        assert!(help.contains(opt), "--help does not mention {opt}:\n{help}");
    }
    let out = run_agent_cli(&["--no-such-option"]);
    assert_eq!(out.status.code(), Some(2), "unknown option exit status");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option"));
    let out = run_agent_cli(&["--board"]);
    assert!(out.status.success());
    let board = String::from_utf8_lossy(&out.stdout);
    assert!(board.contains("board qemu-virt") && board.contains("ecmp members 16"), "{board}");
}
