//! The output bounds the transport's flow control rests on: no input frame
//! produces more than `MAX_OUT_PER_FRAME` bytes of output, no stats step
//! more than `MAX_OUT_PER_PUMP`, measured against the worst cases.

mod common;

use common::*;
use dpu_agent::session::{MAX_OUT_PER_FRAME, MAX_OUT_PER_PUMP};
use dpu_agent::Agent;
use dpu_wire::framing::max_encoded_len;
use dpu_wire::*;

fn encode(seq: u32, msg: HostMsg, ops: &mut dyn Iterator<Item = Op>) -> (Vec<u8>, usize) {
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    b.start(&HostHeader { seq, msg }).expect("header");
    let mut n = 0;
    for op in ops {
        if b.push(&op).is_err() {
            break;
        }
        n += 1;
    }
    let mut enc = vec![0u8; max_encoded_len(MAX_FRAME)];
    let len = b.finish(&mut enc).expect("finish");
    enc.truncate(len);
    (enc, n)
}

fn started() -> Agent<dpu_hw::MmioHal> {
    let mut a = Agent::new(engine(), 0);
    let (hello, _) = encode(
        0,
        HostMsg::Hello(HostHello { version: VERSION, name: heapless::String::new() }),
        &mut std::iter::empty(),
    );
    a.on_bytes(&hello, &mut |_| {});
    assert!(a.session_up());
    a
}

/// Output bytes of one input frame.
fn output_of(a: &mut Agent<dpu_hw::MmioHal>, frame: &[u8]) -> usize {
    let mut n = 0;
    a.on_bytes(frame, &mut |f| n += f.len());
    n
}

#[test]
fn a_frame_of_the_smallest_refused_updates_stays_within_the_bound() {
    let mut a = started();
    // Nexthop 1 in use by a route: every delete of it is refused (InUse),
    // and the delete is the smallest update there is (3 bytes) against a
    // failure of 6: the highest output per input byte.
    let (setup, _) = encode(
        1,
        HostMsg::Batch,
        &mut [nexthop(1, 2, v4(10, 0, 0, 1)), route_obj(254, v4(10, 1, 0, 0), 16, 1)].into_iter(),
    );
    assert!(output_of(&mut a, &setup) > 0);
    let (frame, n) = encode(2, HostMsg::Batch, &mut std::iter::repeat(Op::Delete(Key::Nexthop(1))));
    let out = output_of(&mut a, &frame);
    eprintln!("{n} refused deletes in {} bytes: {out} bytes out (bound {MAX_OUT_PER_FRAME})", frame.len());
    assert!(n > 5000, "a frame holds thousands of deletes ({n})");
    assert!(out > frame.len(), "the refusals take more room than the updates");
    assert!(out <= MAX_OUT_PER_FRAME, "{out} > {MAX_OUT_PER_FRAME}");
}

#[test]
fn a_frame_of_routes_into_a_full_table_stays_within_the_bound() {
    let mut a = started();
    let mut seq = 1;
    let nh = encode(seq, HostMsg::Batch, &mut std::iter::once(nexthop(1, 2, v4(10, 0, 0, 1)))).0;
    output_of(&mut a, &nh);
    let mut i = 0u32;
    let mut route = move || {
        i += 1;
        route_obj(254, v4(10, (i >> 16) as u8, (i >> 8) as u8, i as u8), 32, 1)
    };
    let mut worst = 0;
    for _ in 0..4 {
        seq += 1;
        let (frame, _) = encode(seq, HostMsg::Batch, &mut std::iter::from_fn(|| Some(route())));
        worst = worst.max(output_of(&mut a, &frame));
    }
    assert!(worst <= MAX_OUT_PER_FRAME, "{worst} > {MAX_OUT_PER_FRAME}");
}

#[test]
fn a_stats_step_over_full_counted_tables_stays_within_the_bound() {
    let mut a = started();
    let mut ops = vec![nexthop(1, 2, v4(10, 0, 0, 1))];
    for i in 0..2000u32 {
        ops.push(route_obj(254, v4(10, (i >> 8) as u8, i as u8, 0), 24, 1));
        ops.push(Op::Upsert(Object::Route(Route {
            key: RouteKey {
                table: u32::MAX,
                dst: Prefix::new(Ip::V6([0xff; 16]), 128 - (i % 64) as u8),
                metric: u32::MAX - i,
                ifindex: 0,
            },
            kind: RouteType::Unicast,
            protocol: 4,
            scope: 0,
            nexthops: RouteNexthops::Object(1),
        })));
    }
    let mut seq = 1;
    let mut it = ops.into_iter().peekable();
    while it.peek().is_some() {
        let (frame, _) = encode(seq, HostMsg::Batch, &mut it.by_ref().take(200));
        output_of(&mut a, &frame);
        seq += 1;
    }
    // A requested pass reports every counted entry, moved or not.
    a.request_stats(true);
    let mut steps = 0;
    let mut worst = 0;
    loop {
        let mut n = 0;
        let more = a.pump(&mut |f| n += f.len());
        worst = worst.max(n);
        steps += 1;
        if !more {
            break;
        }
    }
    eprintln!("stats pass: {steps} steps, largest {worst} bytes (bound {MAX_OUT_PER_PUMP})");
    assert!(worst > 0);
    assert!(worst <= MAX_OUT_PER_PUMP, "{worst} > {MAX_OUT_PER_PUMP}");
}
