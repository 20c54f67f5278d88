//! A region file mapped twice in one process: what one mapping writes,
//! the other sees (MAP_SHARED), as between the agent and a test tool.

use dpu_hw::layout::*;
use dpu_hw::lookup::{process, Packet, Verdict};
use dpu_hw::{reader, Hal, Layout, MmioHal, Region, TableId};
use dpu_wire::types::{Ip, Mac};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// A temp file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("dpu-hw-it-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn layout(board: &str) -> Layout {
    Layout { board: board.into(), capacity: [8, 8, 16, 16, 16, 4, 16, 16, 16, 16, 8], ecmp_members: 4 }
}

const P1: Mac = Mac([2, 0, 0, 0, 0, 1]);
const P2: Mac = Mac([2, 0, 0, 0, 0, 2]);
const NB: Mac = Mac([2, 0, 0, 0, 9, 9]);

fn write(hal: &mut MmioHal, t: TableId, slot: u32, encode: impl FnOnce(&mut [u8])) {
    let mut b = vec![0u8; hal.entry_size(t)];
    encode(&mut b);
    hal.write_entry(t, slot, &b);
}

fn program(hal: &mut MmioHal) {
    for (slot, (ifindex, mac)) in [(1, P1), (2, P2)].into_iter().enumerate() {
        let mut name = [0u8; 16];
        name[..4].copy_from_slice(format!("eth{ifindex}").as_bytes());
        let p = PortEntry {
            ifindex,
            admin_up: true,
            oper_up: true,
            mtu: 1500,
            mac: Some(mac),
            name,
            ..Default::default()
        };
        write(hal, TableId::Port, slot as u32, |b| p.encode(b));
    }
    let gw = Ip::V4([10, 0, 0, 1]);
    let nh =
        NexthopEntry { id: 1, ifindex: 2, gateway: Some(gw), onlink: false, blackhole: false, fdb: false };
    write(hal, TableId::Nexthop, 3, |b| nh.encode(b));
    let n = NeighEntry { ifindex: 2, ip: gw, mac: Some(NB), state: 2, router: true };
    write(hal, TableId::Neigh, 0, |b| n.encode(b));
    let r = RouteEntry {
        table: 254,
        dst: Ip::V4([198, 51, 100, 0]),
        plen: 24,
        metric: 0,
        in_ifindex: 0,
        rtype: 0,
        proto: 4,
        scope: 0,
        action: route_action::NEXTHOP,
        action_index: 3,
    };
    write(hal, TableId::Route4, 5, |b| r.encode(b));
}

fn packet() -> Packet {
    Packet::ip(1, P1, Ip::V4([192, 0, 2, 1]), Ip::V4([198, 51, 100, 7]), 17, 1000, 53)
}

#[test]
fn second_mapping_sees_entries_and_counters() {
    let f = TempFile::new("shared");
    let (region, warm) = Region::create(&f.0, &layout("shared"), false).expect("create");
    assert!(!warm, "a new file is formatted");
    let mut hal = MmioHal::new(region);
    program(&mut hal);

    let other = Region::open(&f.0).expect("open");
    assert_eq!(other.board(), "shared");
    assert_eq!(other.len(), hal.region().len());
    assert_eq!(other.len() as u64, std::fs::metadata(&f.0).expect("stat").len());
    for t in TableId::ALL {
        assert_eq!(other.desc(t), hal.region().desc(t));
    }
    let t = reader::read(&other);
    assert_eq!(t.ports.len(), 2);
    assert_eq!(t.routes.len(), 1);
    assert_eq!(t.routes[0].slot, 5);
    assert_eq!(t.stats(TableId::Port).writes, 2);
    assert_eq!(
        t.resolve(&t.routes[0].entry),
        vec![reader::ResolvedNexthop { gateway: Some(Ip::V4([10, 0, 0, 1])), ifindex: 2, weight: 1, id: 1 }]
    );

    // Traffic through the second mapping counts in the first.
    for _ in 0..3 {
        let o = process(&other, &packet());
        assert_eq!(
            o.verdict,
            Verdict::Forward { ifindex: 2, dst_mac: NB, src_mac: P2, vlan: None, tunnel_dst: None }
        );
    }
    assert_eq!(hal.read_counters(TableId::Route4, 5)[..2], [3, 300]);
    assert_eq!(hal.read_counters(TableId::Nexthop, 3)[..2], [3, 300]);
    assert_eq!(hal.read_counters(TableId::Port, 0), [3, 300, 0, 0]);
    assert_eq!(hal.read_counters(TableId::Port, 1), [0, 0, 3, 300]);
    let hit = hal.read_counters(TableId::Route4, 5)[2];
    assert!(hit > 0 && hit <= dpu_hw::hal::monotonic_ms(), "last hit in CLOCK_MONOTONIC ms");

    // Changes through the first mapping show in the second at once.
    hal.invalidate(TableId::Route4, 5);
    assert!(!other.is_valid(TableId::Route4, 5));
    assert_eq!(
        process(&other, &packet()).verdict,
        dpu_hw::lookup::Verdict::Drop(dpu_hw::lookup::DropReason::NoRoute)
    );
    assert_eq!(other.invalidates_reg(TableId::Route4).load(Ordering::Relaxed), 1);
    hal.clear_counters(TableId::Port, 0);
    assert_eq!(other.counter(TableId::Port, 0, 0).map(|c| c.load(Ordering::Relaxed)), Some(0));

    // And the other way round: a write through the second mapping's bytes.
    let mut b = vec![0u8; 32];
    NeighEntry { ifindex: 1, ip: Ip::V4([192, 0, 2, 1]), mac: Some(P1), state: 2, router: false }
        .encode(&mut b);
    b[0] = VALID;
    other.write(other.entry_off(TableId::Neigh, 7), &b);
    let mut out = vec![0u8; 32];
    assert!(hal.read_entry(TableId::Neigh, 7, &mut out));
    assert_eq!(NeighEntry::decode(&out).and_then(|n| n.mac), Some(P1));
}

#[test]
fn warm_start_keeps_entries_and_counters() {
    let f = TempFile::new("warm");
    let l = layout("warm");
    {
        let (region, _) = Region::create(&f.0, &l, false).expect("create");
        let mut hal = MmioHal::new(region);
        program(&mut hal);
        process(hal.region(), &packet());
    }
    let (region, warm) = Region::create(&f.0, &l, false).expect("re-create");
    assert!(warm, "same layout: contents kept");
    let t = reader::read(&region);
    assert_eq!(t.routes.len(), 1);
    assert_eq!(t.routes[0].counters[0], 1);
    assert_eq!(t.stats(TableId::Route4).writes, 1);
    drop(region);

    // A different layout is refused, and formatted only when asked (--cold).
    let mut l2 = l.clone();
    l2.capacity[TableId::Route4 as usize] = 32;
    assert!(Region::create(&f.0, &l2, false).is_err(), "another layout is not erased");
    let (region, warm) = Region::create(&f.0, &l2, true).expect("--cold formats (and sizes) a plain file");
    assert!(!warm);
    let t = reader::read(&region);
    assert!(t.routes.is_empty() && t.ports.is_empty());
    assert_eq!(t.stats(TableId::Route4).capacity, 32);
    assert_eq!(t.stats(TableId::Route4).writes, 0);
}

#[test]
fn open_rejects_missing_and_truncated_files() {
    let f = TempFile::new("bad");
    assert!(Region::open(&f.0).is_err(), "missing");
    std::fs::write(&f.0, [0u8; 100]).expect("write");
    assert!(Region::open(&f.0).is_err(), "smaller than a header");
    assert!(Region::create(&f.0, &layout("x"), false).is_err(), "never resized without --cold");
    std::fs::remove_file(&f.0).expect("remove");
    let (region, _) = Region::create(&f.0, &layout("x"), false).expect("create");
    let len = region.len();
    drop(region);
    // Cut the tables off: the header now points past the end.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f.0)
        .expect("open")
        .set_len(len as u64 / 2)
        .expect("truncate");
    let e = Region::open(&f.0).err().expect("must fail");
    assert!(e.to_string().contains("outside"), "{e}");
}

#[test]
fn bump_counts_on_every_flow_entry() {
    let f = TempFile::new("bump");
    let (region, _) = Region::create(&f.0, &layout("bump"), false).expect("create");
    let mut hal = MmioHal::new(region);
    for (slot, cookie) in [(2u32, 7u64), (9, 8)] {
        let e = FlowEntry {
            cookie,
            ifindex: 1,
            chain: 0,
            prio: 1,
            key: FlowKey::default(),
            mask: FlowKey::default(),
            actions: vec![],
        };
        write(&mut hal, TableId::Flow, slot, |b| e.encode(b));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dpu-hw"))
        .arg("bump")
        .arg(&f.0)
        .args(["--packets", "2", "--len", "50", "--every", "1", "--rounds", "3"])
        .output()
        .expect("run dpu-hw");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3 round(s), last over 2 flow entries");
    for slot in [2, 9] {
        let c = hal.read_counters(TableId::Flow, slot);
        assert_eq!(c[..2], [6, 300], "slot {slot}");
        assert!(c[2] > 0 && c[2] <= dpu_hw::hal::monotonic_ms(), "last hit in CLOCK_MONOTONIC ms");
    }
    assert_eq!(hal.read_counters(TableId::Flow, 3)[..2], [0, 0], "an empty slot is not counted");

    // --rounds without --every: that many rounds back to back.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dpu-hw"))
        .arg("bump")
        .arg(&f.0)
        .args(["--rounds", "2"])
        .output()
        .expect("run dpu-hw");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2 round(s), last over 2 flow entries");
    assert_eq!(hal.read_counters(TableId::Flow, 2)[..2], [8, 500]);
}
