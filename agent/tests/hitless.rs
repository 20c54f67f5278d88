//! Hitless updates: a lookup running against the hardware region while
//! the agent replaces one route 100,000 times never misses it (never
//! falls back to the shorter default route) and never reads a torn entry.
//! The agent and the lookup each map the region file, as the agent and
//! the forwarding engine do on the board.

mod common;
use common::*;
use dpu_agent::{board, Engine};
use dpu_hw::layout::TableId;
use dpu_hw::lookup::{self, DropReason, Packet, Verdict};
use dpu_hw::{reader, MmioHal, Region};
use dpu_wire::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const REPLACES: u32 = 100_000;

fn route(kind: RouteType, protocol: u8, scope: u8, dst: Ip, len: u8) -> Op {
    Op::Upsert(Object::Route(Route {
        key: RouteKey { table: 254, dst: Prefix::new(dst, len), metric: 0, ifindex: 0 },
        kind,
        protocol,
        scope,
        nexthops: RouteNexthops::None,
    }))
}

#[test]
fn a_lookup_never_misses_a_route_being_replaced() {
    let path = std::env::temp_dir().join(format!("dpu-hitless-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (region, _) = Region::create(&path, &board::layout(), true).expect("region");
    let mut e = Engine::new(MmioHal::new(region), false);
    assert_eq!(e.apply(&link(2, "p0")), Status::Ok);
    // The default route a miss would fall back to, and the route replaced:
    // its two versions differ in type, protocol and scope, so that a torn
    // read shows as neither.
    assert_eq!(e.apply(&route(RouteType::Unreachable, 3, 0, v4(0, 0, 0, 0), 0)), Status::Ok);
    let a = route(RouteType::Blackhole, 4, 0, v4(10, 1, 0, 0), 16);
    let b = route(RouteType::Prohibit, 186, 253, v4(10, 1, 0, 0), 16);
    assert_eq!(e.apply(&b), Status::Ok);
    let hw = reader::read(e.hal().region());
    let slot = hw.routes.iter().find(|r| r.entry.plen == 16).expect("the /16").slot;
    let size = e.hal().region().desc(TableId::Route4).entry_size;
    let mut bytes_b = vec![0u8; size];
    assert!(e.hal().region().read_entry(TableId::Route4, slot, &mut bytes_b));
    assert_eq!(e.apply(&a), Status::Ok);
    let mut bytes_a = vec![0u8; size];
    assert!(e.hal().region().read_entry(TableId::Route4, slot, &mut bytes_a));
    assert_ne!(bytes_a, bytes_b);

    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, lookups, path) = (stop.clone(), lookups.clone(), path.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let r = Region::open(&path).map_err(|e| e.to_string())?;
            let pkt = Packet::ip(2, Mac([2, 0, 0, 0, 0, 2]), v4(192, 0, 2, 1), v4(10, 1, 2, 3), 17, 1, 2);
            let mut buf = vec![0u8; size];
            while !stop.load(Ordering::Relaxed) {
                // Many raw reads per lookup: the lookup walks the whole
                // table, the raw read is the tight race.
                for _ in 0..64 {
                    if !r.read_entry(TableId::Route4, slot, &mut buf) {
                        return Err("the route being replaced read as invalid".into());
                    }
                    if buf != bytes_a && buf != bytes_b {
                        return Err(format!("torn entry {buf:02x?}"));
                    }
                }
                let out = lookup::process(&r, &pkt);
                match out.verdict {
                    Verdict::Drop(DropReason::Blackhole) | Verdict::Drop(DropReason::Prohibit) => {}
                    v => return Err(format!("lookup missed the /16: {v:?} via {:?}", out.route)),
                }
                lookups.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    while lookups.load(Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    for i in 0..REPLACES {
        assert_eq!(e.apply(if i % 2 == 0 { &b } else { &a }), Status::Ok);
    }
    stop.store(true, Ordering::Relaxed);
    let res = reader.join().expect("reader thread");
    let n = lookups.load(Ordering::Relaxed);
    let _ = std::fs::remove_file(&path);
    res.unwrap_or_else(|e| panic!("after {n} lookups: {e}"));
    let writes = e.hal().region().writes_reg(TableId::Route4).load(Ordering::Relaxed);
    assert!(writes >= REPLACES as u64, "{writes} route writes");
    eprintln!("{n} lookups during {REPLACES} replaces: no miss, no torn entry");
}
