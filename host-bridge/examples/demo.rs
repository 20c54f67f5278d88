//! Demo client: connects to an agent, sends a small topology as a
//! snapshot, changes it, and prints what the agent answered.
//!
//!     cargo run -p host-bridge --example demo -- /path/to/agent.sock

use dpu_wire::*;
use host_bridge::AgentLink;

fn ip4(a: u8, b: u8, c: u8, d: u8) -> Ip {
    Ip::V4([a, b, c, d])
}

fn link(ifindex: u32, name: &str, kind: LinkKind, master: u32) -> Op {
    let mut n = IfName::new();
    let _ = n.push_str(name);
    Op::Upsert(Object::Link(Link {
        ifindex,
        name: n,
        kind,
        mtu: 1500,
        mac: Some(Mac([2, 0, 0, 0, 0, ifindex as u8])),
        oper: OperState::Up,
        admin_up: true,
        master,
        parent: 0,
        vlan_id: None,
        vni: None,
    }))
}

fn route(dst: Ip, len: u8, nh: u32) -> Op {
    Op::Upsert(Object::Route(Route {
        key: RouteKey { table: 254, dst: Prefix::new(dst, len), metric: 0, ifindex: 0 },
        kind: RouteType::Unicast,
        protocol: 4,
        scope: 0,
        nexthops: RouteNexthops::Object(nh),
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: demo AGENT_SOCKET")?;
    let mut l = AgentLink::connect_unix(std::path::Path::new(&path))?;
    let h = l.hello("host-bridge demo")?;
    println!(
        "agent: board {} protocol {}.{}, routes v4 {} v6 {}, ecmp {}",
        h.board,
        h.version.major,
        h.version.minor,
        h.capacities.routes_v4,
        h.capacities.routes_v6,
        h.capacities.ecmp_members
    );
    let mut ops = vec![
        link(2, "p0", LinkKind::Device, 0),
        link(3, "p1", LinkKind::Device, 0),
        Op::Upsert(Object::Nexthop(Nexthop {
            id: 10,
            ifindex: 3,
            gateway: Some(ip4(192, 0, 2, 1)),
            blackhole: false,
            onlink: false,
            fdb: false,
        })),
        Op::Upsert(Object::Neighbour(Neighbour {
            ifindex: 3,
            ip: ip4(192, 0, 2, 1),
            mac: Some(Mac([2, 0xaa, 0, 0, 0, 1])),
            state: 0x02,
            router: true,
        })),
    ];
    ops.extend((0..100u8).map(|i| route(ip4(10, i, 0, 0), 16, 10)));
    let (r, (unchanged, written, removed)) = l.snapshot(1, &ops)?;
    println!("snapshot 1: {} ok, {} refused; hardware: {unchanged} unchanged, {written} written, {removed} removed", r.ok, r.failures.len());
    let (r, (unchanged, written, removed)) = l.snapshot(2, &ops)?;
    println!(
        "snapshot 2 (same): {} ok; hardware: {unchanged} unchanged, {written} written, {removed} removed",
        r.ok
    );
    // More routes than the table holds: refused per entry.
    let many: Vec<Op> = (0..2000u32).map(|i| route(ip4(20, (i >> 8) as u8, i as u8, 0), 24, 10)).collect();
    let r = l.apply(&many)?;
    println!("2000 more routes: {} ok, {} refused", r.ok, r.failures.len());
    if let Some((i, s, k)) = r.failures.first() {
        println!("  first refused: update {i}: {s:?} {k:?}");
    }
    println!("stats entries: {}", l.stats()?.len());
    Ok(())
}
