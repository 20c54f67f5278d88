//! `dpu-agent-bench`: how fast the agent decodes updates and applies them
//! to the hardware model, for the board it was built for.
//!
//! Encodes N IPv4 route updates (through 16 nexthop objects) into frames
//! up front, then times the agent's whole input path (deframing, CRC,
//! decoding, validation, programming the hardware region, results) for
//! four phases: install, identical resync, replace, delete.
//!
//!     dpu-agent-bench [--routes N] [--v6 N]

use dpu_agent::{board, Agent, Engine};
use dpu_hw::{MmioHal, Region};
use dpu_wire::framing::max_encoded_len;
use dpu_wire::*;
use std::time::Instant;

/// Encodes `msgs` and then `ops` in batches of as many as fit a frame.
fn frames(msgs: &[HostMsg], ops: impl Iterator<Item = Op>, seq: &mut u32) -> Vec<u8> {
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    let mut enc = vec![0u8; max_encoded_len(MAX_FRAME)];
    let mut out = Vec::new();
    let mut one = |b: &mut FrameBuilder<Vec<u8>>, out: &mut Vec<u8>| {
        let n = b.finish(&mut enc).expect("frame");
        out.extend_from_slice(&enc[..n]);
    };
    for m in msgs {
        b.start(&HostHeader { seq: *seq, msg: m.clone() }).expect("header");
        *seq += 1;
        one(&mut b, &mut out);
    }
    let mut ops = ops.peekable();
    while ops.peek().is_some() {
        b.start(&HostHeader { seq: *seq, msg: HostMsg::Batch }).expect("header");
        *seq += 1;
        while let Some(op) = ops.peek() {
            if b.push(op).is_err() {
                break;
            }
            ops.next();
        }
        one(&mut b, &mut out);
    }
    out
}

fn route(i: u32, v6: bool, nh: u32) -> Op {
    let dst = if v6 {
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[2..6].copy_from_slice(&i.to_be_bytes());
        Prefix::new(Ip::V6(a), 48)
    } else {
        let a = (i << 8).to_be_bytes();
        Prefix::new(Ip::V4([a[0].wrapping_add(1), a[1], a[2], 0]), 24)
    };
    Op::Upsert(Object::Route(Route {
        key: RouteKey { table: 254, dst, metric: 0, ifindex: 0 },
        kind: RouteType::Unicast,
        protocol: 4,
        scope: 0,
        nexthops: RouteNexthops::Object(nh),
    }))
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut n4 = (board::ROUTES_V4 as u64 * 95 / 100).min(1_000_000) as u32;
    let mut n6 = (board::ROUTES_V6 as u64 * 95 / 100).min(200_000) as u32;
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse().ok());
        match (a.as_str(), v) {
            ("--routes", Some(v)) => n4 = v,
            ("--v6", Some(v)) => n6 = v,
            _ => {
                eprintln!("usage: dpu-agent-bench [--routes N] [--v6 N]");
                std::process::exit(2);
            }
        }
    }
    let region = Region::anonymous(&board::layout()).expect("hardware region");
    let mut agent = Agent::new(Engine::new(MmioHal::new(region), false), 0);
    let mut seq = 0u32;
    let hello = HostMsg::Hello(HostHello { version: VERSION, name: heapless::String::new() });
    agent.on_connect();
    agent.on_bytes(&frames(&[hello], std::iter::empty(), &mut seq), &mut |_| {});

    let nhs: Vec<Op> = (1..=32)
        .map(|id| {
            Op::Upsert(Object::Nexthop(Nexthop {
                id,
                ifindex: 2 + id % 2,
                gateway: Some(Ip::V4([192, 0, 2, id as u8])),
                blackhole: false,
                onlink: false,
                fdb: false,
            }))
        })
        .collect();
    // Routes are generated while encoding: the benchmark holds only the
    // encoded frames of one phase, so its peak RSS is the agent's own plus
    // those frames.
    let routes = |nh_base: u32| {
        (0..n4)
            .map(move |i| route(i, false, nh_base + i % 16))
            .chain((0..n6).map(move |i| route(i, true, nh_base + i % 16)))
    };
    let updates = (n4 + n6) as f64;
    println!(
        "board {} ({} IPv4 + {} IPv6 route slots), {n4} IPv4 + {n6} IPv6 routes",
        board::NAME,
        board::ROUTES_V4,
        board::ROUTES_V6,
    );
    println!(
        "wire: {} bytes per IPv4 route upsert (postcard, before framing)",
        encoded_len(&route(1, false, 1))
    );
    type Phase<'a> = (&'static str, Box<dyn Fn(&mut u32) -> Vec<u8> + 'a>);
    let phases: [Phase; 4] = [
        (
            "install",
            Box::new(|seq| {
                frames(&[HostMsg::SnapshotBegin { generation: 1 }], nhs.iter().cloned().chain(routes(1)), seq)
            }),
        ),
        (
            "resync (identical)",
            Box::new(|seq| {
                let m = [HostMsg::SnapshotEnd { generation: 1 }, HostMsg::SnapshotBegin { generation: 2 }];
                frames(&m, nhs.iter().cloned().chain(routes(1)), seq)
            }),
        ),
        (
            "replace nexthop",
            Box::new(|seq| frames(&[HostMsg::SnapshotEnd { generation: 2 }], routes(17), seq)),
        ),
        ("delete", Box::new(|seq| frames(&[], routes(17).map(|o| Op::Delete(o.key())), seq))),
    ];
    let rss_start = peak_rss_kb();
    for (name, make) in &phases {
        let bytes = make(&mut seq);
        let before = agent.counters.refused;
        let t = Instant::now();
        for chunk in bytes.chunks(4096) {
            agent.on_bytes(chunk, &mut |_| {});
        }
        let dt = t.elapsed().as_secs_f64();
        let w = agent.engine.counters;
        println!(
            "{name:<20} {:>10.0} updates/s {:>6.0} ns/update {:>6.2} wire bytes/update, refused {}, \
             hw writes {} unchanged {} invalidates {} (cumulative)",
            updates / dt,
            dt * 1e9 / updates,
            bytes.len() as f64 / updates,
            agent.counters.refused - before,
            w.writes,
            w.unchanged,
            w.invalidates
        );
    }
    println!(
        "peak RSS {} kB (after start-up {rss_start} kB; includes one phase of encoded frames)",
        peak_rss_kb()
    );
}

/// Encoded size of one item.
fn encoded_len(op: &Op) -> usize {
    let mut b = FrameBuilder::new(vec![0u8; 512]);
    let _ = b.push(op);
    b.len()
}
