//! The status output: what host-bridge mirrors and what the DPU reports,
//! as JSON (served on a Unix socket) and as text.

use crate::dpu::DpuState;
use crate::kernel::Shared;
use crate::netlink::Kind;
use dpu_wire::*;
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn ip(i: &Ip) -> String {
    i.to_string()
}

fn route_json(r: &Route, refused: Option<&Status>, stats: Option<&StatEntry>) -> Value {
    let nexthops: Vec<Value> = match &r.nexthops {
        RouteNexthops::None => vec![],
        RouteNexthops::Object(id) => vec![json!({ "id": id })],
        RouteNexthops::Paths(p) => p
            .iter()
            .map(|p| json!({ "gateway": p.gateway.as_ref().map(ip), "dev": p.ifindex, "weight": p.weight }))
            .collect(),
    };
    json!({
        "table": r.key.table,
        "dst": r.key.dst.to_string(),
        "metric": r.key.metric,
        "type": format!("{:?}", r.kind).to_lowercase(),
        "protocol": r.protocol,
        "scope": r.scope,
        "nexthops": nexthops,
        "offload": refused.map(|s| format!("{s:?}")).unwrap_or_else(|| "ok".into()),
        "packets": stats.map(|s| s.packets),
        "bytes": stats.map(|s| s.bytes),
    })
}

/// The full status as JSON.
pub fn status(shared: &Shared, dpu: &Mutex<DpuState>) -> Value {
    let m = shared.lock();
    let d = dpu.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let c = m.counters;
    let mut routes = Vec::new();
    let mut nexthops = Vec::new();
    let mut neighbours = Vec::new();
    let mut fdb = Vec::new();
    let mut links = Vec::new();
    let mut refused = Vec::new();
    for (k, o) in m.objects() {
        let k = &k;
        let rf = m.refused.get(k);
        match &o {
            Object::Route(r) => routes.push(route_json(r, rf, d.stats.get(&StatKey::Route(r.key)))),
            Object::Nexthop(n) => nexthops.push(json!({
                "id": n.id, "dev": n.ifindex, "gateway": n.gateway.as_ref().map(ip), "blackhole": n.blackhole,
                "packets": d.stats.get(&StatKey::Nexthop(n.id)).map(|s| s.packets),
            })),
            Object::NexthopGroup(g) => nexthops.push(json!({
                "id": g.id,
                "group": g.members.iter().map(|m| json!({"id": m.id, "weight": m.weight})).collect::<Vec<_>>(),
            })),
            Object::Neighbour(n) => neighbours.push(json!({
                "dev": n.ifindex, "dst": ip(&n.ip), "lladdr": n.mac.map(|m| m.to_string()), "state": n.state,
            })),
            Object::Fdb(f) => fdb.push(json!({
                "dev": f.ifindex, "mac": f.mac.to_string(), "vlan": f.vid, "master": f.master, "static": f.is_static,
                "dst": f.remote.as_ref().map(ip),
            })),
            Object::Link(l) => links.push(json!({
                "ifindex": l.ifindex, "name": l.name.as_str(), "kind": format!("{:?}", l.kind).to_lowercase(),
                "mtu": l.mtu, "up": l.admin_up, "master": l.master,
            })),
            _ => {}
        }
        if let Some(s) = rf {
            refused.push(json!({ "key": format!("{k:?}"), "status": format!("{s:?}") }));
        }
    }
    routes.sort_by_key(|r| (r["table"].as_u64(), r["dst"].as_str().map(String::from), r["metric"].as_u64()));
    let count = |k| m.count(k);
    json!({
        "host_bridge": {
            "version": env!("CARGO_PKG_VERSION"),
            "pending": m.pending_len(),
            "counters": {
                "events": c.events, "changes": c.changes, "collapsed": c.collapsed,
                "parse_errors": c.parse_errors, "resyncs": c.resyncs, "overflows": c.overflows,
                "sent": c.sent, "refused": c.refused, "retried": c.retried,
                "filters_not_offloaded": c.not_offloaded,
            },
        },
        "mirror": {
            "links": count(Kind::Link), "addresses": count(Kind::Address), "routes": count(Kind::Route),
            "nexthops": count(Kind::Nexthop), "neighbours": count(Kind::Neighbour), "fdb": count(Kind::Fdb),
            "vlans": count(Kind::Vlan), "flows": count(Kind::Filter),
        },
        "dpu": {
            "connected": d.connected,
            "board": d.hello.as_ref().map(|h| h.board.as_str().to_string()),
            "capacities": d.hello.as_ref().map(|h| format!("{:?}", h.capacities)),
            "sessions": d.sessions,
            "snapshots": d.snapshots,
            "last_snapshot": d.last_snapshot.map(|(g, u, w, r)| json!({"generation": g, "unchanged": u, "written": w, "removed": r})),
            "resync_requests": d.resync_requests,
            "wire_bytes": d.wire_bytes,
            "last_error": d.last_error,
        },
        "firmware": d.firmware.map(|f| json!({
            "capacity": d.firmware_capacity, "flows": f.flows, "replaced": f.replaced,
            "destroyed": f.destroyed, "stats_calls": f.stats_calls, "refused_full": f.refused_full,
            "refused_unsupported": f.refused_unsupported, "lost_events": f.lost_events,
        })),
        "refused": refused,
        "links": links,
        "routes": routes,
        "nexthops": nexthops,
        "neighbours": neighbours,
        "fdb": fdb,
    })
}

/// Text rendering of [`status`].
pub fn text(v: &Value) -> String {
    let mut s = String::new();
    let hb = &v["host_bridge"];
    let d = &v["dpu"];
    s += &format!(
        "host-bridge {}: {} pending, counters {}\n",
        hb["version"].as_str().unwrap_or("?"),
        hb["pending"],
        hb["counters"]
    );
    s += &format!("mirror: {}\n", v["mirror"]);
    s += &format!(
        "dpu: connected {} board {} snapshots {} last {} wire bytes {}{}\n",
        d["connected"],
        d["board"].as_str().unwrap_or("-"),
        d["snapshots"],
        d["last_snapshot"],
        d["wire_bytes"],
        d["last_error"].as_str().map(|e| format!(" last error: {e}")).unwrap_or_default()
    );
    for r in v["refused"].as_array().into_iter().flatten() {
        s += &format!(
            "refused by the DPU: {} {}\n",
            r["status"].as_str().unwrap_or("?"),
            r["key"].as_str().unwrap_or("?")
        );
    }
    for r in v["routes"].as_array().into_iter().flatten() {
        let nhs: Vec<String> = r["nexthops"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| match n["id"].as_u64() {
                Some(id) => format!("nhid {id}"),
                None => format!(
                    "{}dev {} weight {}",
                    n["gateway"].as_str().map(|g| format!("via {g} ")).unwrap_or_default(),
                    n["dev"],
                    n["weight"]
                ),
            })
            .collect();
        s += &format!(
            "route table {} {} metric {} {} {} [{}]{}\n",
            r["table"],
            r["dst"].as_str().unwrap_or("?"),
            r["metric"],
            r["type"].as_str().unwrap_or("?"),
            nhs.join(", "),
            r["offload"].as_str().unwrap_or("?"),
            r["packets"].as_u64().map(|p| format!(" {p} packets")).unwrap_or_default()
        );
    }
    s
}

/// Serves the JSON status to every client of `path`.
pub fn serve(path: &Path, shared: Arc<Shared>, dpu: Arc<Mutex<DpuState>>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let mut c = c;
            let v = status(&shared, &dpu);
            let _ = c.write_all(v.to_string().as_bytes());
        }
    });
    Ok(())
}
