//! Refusals against the real engine, in process: host-bridge's mirror
//! sends to the agent's engine on the qemu-virt board's tables, and
//! records its answers, as dpu.rs does over the wire.
//!
//! - Retries are bounded by the room that freed: with 100,000 routes
//!   refused by a full route table, 1,000 deletes retry about 1,000
//!   upserts (before: every refused route on every batch that deleted).
//! - A snapshot into a table full of entries the snapshot drops gets them
//!   all in: the sweep's room goes to the entries refused for want of it.

use dpu_agent::{board, Engine};
use dpu_hw::layout::TableId;
use dpu_hw::{MmioHal, Region};
use dpu_wire::*;
use host_bridge::mirror::{Freed, Mirror, Taken};

const BATCH: usize = 512;

fn route(i: u32) -> Object {
    let dst = Ip::V4([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    Object::Route(Route {
        key: RouteKey { table: 254, dst: Prefix::new(dst, 32), metric: 0, ifindex: 0 },
        kind: RouteType::Blackhole,
        protocol: 4,
        scope: 0,
        nexthops: RouteNexthops::None,
    })
}

/// The engine's answers to `ops`, as the agent reports them: the refused.
fn apply(e: &mut Engine<MmioHal>, ops: &[Taken]) -> Vec<(usize, Status, Option<Key>)> {
    ops.iter()
        .enumerate()
        .filter_map(|(i, t)| match e.apply(&t.op().expect("decodes")) {
            Status::Ok => None,
            s => Some((i, s, None)),
        })
        .collect()
}

/// Sends everything pending, as dpu.rs does; returns the upserts sent.
fn drain(m: &mut Mirror, e: &mut Engine<MmioHal>) -> u64 {
    let mut upserts = 0;
    loop {
        let ops = m.take(BATCH);
        if ops.is_empty() {
            return upserts;
        }
        upserts += ops.iter().filter(|o| o.upsert).count() as u64;
        let fails = apply(e, &ops);
        let freed = m.results(&ops, &fails);
        if !freed.is_empty() {
            m.retry_refused(&freed);
        }
    }
}

fn engine() -> Engine<MmioHal> {
    Engine::new(MmioHal::new(Region::anonymous(&board::layout()).expect("region")), false)
}

#[test]
fn retries_are_bounded_by_the_room_that_freed() {
    let mut e = engine();
    let cap = e.capacities();
    let routes = 100_000u32;
    let mut m = Mirror::new();
    for i in 0..routes {
        m.upsert(route(i));
    }
    drain(&mut m, &mut e);
    let held = e.used(TableId::Route4);
    let refused = m.refused.len() as u32;
    assert_eq!(held + refused, routes, "{cap:?}");
    assert!(refused > 90_000, "the table is smaller than the route set: {held} held");
    // 1,000 held routes go.
    let before = m.counters.retried;
    let mut deleted = 0;
    for i in 0..routes {
        if deleted == 1000 {
            break;
        }
        let k = route(i).key();
        if !m.refused.contains_key(&k) {
            m.delete(&k);
            deleted += 1;
        }
    }
    let sent = drain(&mut m, &mut e);
    let retried = m.counters.retried - before;
    eprintln!(
        "{refused} refused by a {held}-route table; 1,000 deletes: {retried} retried, {sent} upserts sent; held {}",
        e.used(TableId::Route4)
    );
    assert_eq!(e.used(TableId::Route4), held, "the freed room is used again");
    assert!(retried <= 1000, "{retried} retried for 1,000 freed entries");
    assert_eq!(m.refused.len() as u32, refused - 1000);
}

#[test]
fn a_snapshot_into_a_full_table_of_stale_entries_gets_everything_in() {
    let mut e = engine();
    // An earlier session filled the table.
    let mut old = Mirror::new();
    for i in 0..200_000 {
        old.upsert(route(i));
    }
    drain(&mut old, &mut e);
    let full = e.used(TableId::Route4);
    assert!(!old.refused.is_empty(), "the table is full");
    // A new host session's snapshot: as many routes, none of them the
    // old ones (the old session's routes are all gone from the kernel).
    let mut m = Mirror::new();
    for i in 500_000..500_000 + full {
        m.upsert(route(i));
    }
    let all = m.snapshot();
    m.clear_pending();
    e.begin_snapshot();
    let mut freed = Freed::default();
    let mut refused = 0;
    for ops in all.chunks(BATCH) {
        let fails = apply(&mut e, ops);
        refused += fails.len();
        let f = m.results(ops, &fails);
        freed.deps |= f.deps;
    }
    let sweep = e.end_snapshot();
    freed.any = sweep.removed;
    assert_eq!(refused as u32, full, "every snapshot entry found the table full of stale ones");
    m.retry_refused(&freed);
    drain(&mut m, &mut e);
    assert!(m.refused.is_empty(), "{} still refused after the sweep", m.refused.len());
    assert_eq!(e.used(TableId::Route4), full);
}
