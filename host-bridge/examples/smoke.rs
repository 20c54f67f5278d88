use dpu_wire::*;
use host_bridge::AgentLink;
fn main() {
    let path = std::env::args().nth(1).expect("socket");
    let mut l = AgentLink::connect_unix(std::path::Path::new(&path)).expect("connect");
    let h = l.hello("smoke").expect("hello");
    println!("{h:?}");
    let mut ops = vec![];
    ops.push(Op::Upsert(Object::Nexthop(Nexthop {
        id: 1,
        ifindex: 2,
        gateway: Some(Ip::V4([10, 0, 0, 1])),
        blackhole: false,
        onlink: false,
        fdb: false,
    })));
    for i in 0..2000u32 {
        ops.push(Op::Upsert(Object::Route(Route {
            key: RouteKey {
                table: 254,
                dst: Prefix::new(Ip::V4([10, (i >> 8) as u8, i as u8, 0]), 24),
                metric: 0,
            },
            kind: RouteType::Unicast,
            protocol: 4,
            scope: 0,
            nexthops: RouteNexthops::Object(1),
        })));
    }
    let r = l.snapshot(1, &ops).expect("snap");
    println!(
        "ok {} failures {} report {:?}",
        r.0.ok,
        r.0.failures.len(),
        r.1
    );
    let r = l.snapshot(2, &ops).expect("snap");
    println!(
        "ok {} failures {} report {:?}",
        r.0.ok,
        r.0.failures.len(),
        r.1
    );
    println!("stats {}", l.stats().expect("stats").len());
}
