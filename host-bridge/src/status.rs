//! The status output: what host-bridge mirrors and what the DPU reports,
//! as JSON (served on a Unix socket) and as text.

use crate::dpu::DpuState;
use crate::kernel::Shared;
use crate::netlink::Kind;
use dpu_wire::*;
use serde_json::{json, Value};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
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
        // A per-device (IPv6 link-local) route's device: the DPU matches
        // it on packets from that port only.
        "iif": (r.key.ifindex != 0).then_some(r.key.ifindex),
        "type": format!("{:?}", r.kind).to_lowercase(),
        "protocol": r.protocol,
        "scope": r.scope,
        "nexthops": nexthops,
        "offload": refused.map(|s| format!("{s:?}")).unwrap_or_else(|| "ok".into()),
        "packets": stats.map(|s| s.packets),
        "bytes": stats.map(|s| s.bytes),
    })
}

/// Objects decoded per hold of the mirror lock while the status is
/// written: the lock is never held for the whole mirror.
const CHUNK: usize = 4096;

fn object_json(o: &Object, d: &DpuState) -> Option<Value> {
    Some(match o {
        Object::Nexthop(n) => json!({
            "id": n.id, "dev": n.ifindex, "gateway": n.gateway.as_ref().map(ip), "blackhole": n.blackhole,
            "packets": d.stats.get(&StatKey::Nexthop(n.id)).map(|s| s.packets),
        }),
        Object::NexthopGroup(g) => json!({
            "id": g.id,
            "group": g.members.iter().map(|m| json!({"id": m.id, "weight": m.weight})).collect::<Vec<_>>(),
        }),
        Object::Neighbour(n) => json!({
            "dev": n.ifindex, "dst": ip(&n.ip), "lladdr": n.mac.map(|m| m.to_string()), "state": n.state,
        }),
        Object::Fdb(f) => json!({
            "dev": f.ifindex, "mac": f.mac.to_string(), "vlan": f.vid, "master": f.master, "static": f.is_static,
            "dst": f.remote.as_ref().map(ip),
        }),
        Object::Link(l) => json!({
            "ifindex": l.ifindex, "name": l.name.as_str(), "kind": format!("{:?}", l.kind).to_lowercase(),
            "mtu": l.mtu, "up": l.admin_up, "master": l.master,
        }),
        Object::Address(a) => json!({
            "dev": a.ifindex, "local": a.prefix.to_string(), "scope": a.scope,
        }),
        Object::Vlan(v) => json!({
            "dev": v.ifindex, "vlan": v.vid_start, "vlan_end": v.vid_end, "pvid": v.pvid, "untagged": v.untagged,
        }),
        Object::Flow(f) => {
            let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
            if let Some(st) = d.stats.get(&StatKey::Flow(f.cookie)) {
                v["packets"] = json!(st.packets);
                v["bytes"] = json!(st.bytes);
            }
            v
        }
        Object::EcmpHash(h) => json!({
            "ecmp_hash": format!("{:?}", h.family).to_lowercase(), "policy": h.policy, "fields": h.fields,
        }),
        Object::BridgeAgeing(a) => json!({ "bridge": a.ifindex, "ageing_cs": a.ageing_cs }),
        Object::PortStp(p) => json!({ "port": p.ifindex, "stp_state": p.state }),
        Object::Route(_) => return None,
    })
}

/// The status without the object lists: counters, counts, the DPU, the
/// firmware and what the DPU refused.
/// Most entries of each list in the status head (refused, not
/// offloaded, qualified); their counts are in "mirror".
const LIST_MAX: usize = 1000;

fn head(shared: &Shared, dpu: &Mutex<DpuState>) -> Value {
    let m = shared.lock();
    let d = dpu.lock().unwrap_or_else(|p| p.into_inner());
    let c = m.counters;
    // The first LIST_MAX refusals; the count is in the counters.
    let refused: Vec<Value> = m
        .refused
        .iter()
        .take(LIST_MAX)
        .map(|(k, s)| json!({ "key": format!("{k:?}"), "status": format!("{s:?}") }))
        .collect();
    // What the DPU cannot represent exactly; the first LIST_MAX of each,
    // the counts in "mirror".
    let not_offloaded: Vec<Value> = m
        .not_offloaded
        .iter()
        .take(LIST_MAX)
        .map(|(k, why)| json!({ "key": format!("{k:?}"), "why": why }))
        .collect();
    let qualified: Vec<Value> = m
        .quals
        .routes()
        .take(LIST_MAX)
        .map(|(q, paths)| {
            json!({
                "table": q.key.table, "dst": q.key.dst.to_string(), "metric": q.key.metric,
                "tos": q.tos, "from": (q.src.len > 0).then(|| q.src.to_string()), "paths": paths.len(),
                "why": "the DPU matches on the destination only: its prefix is trapped to the host",
            })
        })
        .collect();
    let count = |k| m.count(k);
    json!({
        "host_bridge": {
            "version": env!("CARGO_PKG_VERSION"),
            "events_via": m.events_via,
            "pending": m.pending_len(),
            "counters": {
                "events": c.events, "changes": c.changes, "collapsed": c.collapsed,
                "parse_errors": c.parse_errors, "resyncs": c.resyncs, "overflows": c.overflows,
                "sent": c.sent, "refused": c.refused, "retried": c.retried,
                "not_offloaded": c.not_offloaded,
                "redumps": c.redumps, "tap_deletes": c.tap_deletes, "dead_routes": c.dead_routes,
                "tap_loss_resyncs": c.tap_loss_resyncs, "tap_settings": c.tap_settings,
                "link_fdb_dumps": c.link_fdb_dumps,
            },
        },
        "mirror": {
            "links": count(Kind::Link), "addresses": count(Kind::Address), "routes": count(Kind::Route),
            "nexthops": count(Kind::Nexthop), "neighbours": count(Kind::Neighbour), "fdb": count(Kind::Fdb),
            "vlans": count(Kind::Vlan), "flows": count(Kind::Filter), "settings": count(Kind::Setting),
            "refused": m.refused.len(), "waiting_for_room": m.waiting_for_room(),
            "not_offloaded": m.not_offloaded.len(), "qualified_routes": m.quals.len(),
            "trapped_prefixes": m.quals.prefixes(), "hidden_routes": m.quals.hidden_len(),
            "shared_keys": m.quals.shared().count(),
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
        "not_offloaded": not_offloaded,
        "qualified": qualified,
        "taps": shared.taps().as_ref().map(|t| serde_json::to_value(t).unwrap_or(Value::Null)),
        "fib_firmware": shared.fib().as_ref().map(|t| serde_json::to_value(t).unwrap_or(Value::Null)),
    })
}

/// Writes the full status as one JSON object: the [`head`] fields, then
/// every mirrored kind: "links", "addresses", "routes" (sorted by table,
/// destination, metric), "nexthops", "neighbours", "fdb", "vlans",
/// "flows" (tc filters and the firmware's rules) and "settings". The lists are streamed: only their keys are
/// collected, and objects are decoded and written [`CHUNK`] at a time,
/// each chunk under its own hold of the mirror lock, so neither memory nor
/// the lock scale with the mirror (a million routes cost their keys,
/// about 32 bytes each). Objects that change while it is written show in
/// their state when their chunk is read.
pub fn write_status(w: &mut impl Write, shared: &Shared, dpu: &Mutex<DpuState>) -> io::Result<()> {
    let head = head(shared, dpu);
    let (mut links, mut routes, mut nexthops, mut neighbours, mut fdb) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut addresses, mut vlans, mut flows, mut settings) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in shared.lock().keys() {
        match k {
            Key::Link(_) => links.push(*k),
            Key::Address(_) => addresses.push(*k),
            Key::Route(_) => routes.push(*k),
            Key::Nexthop(_) | Key::NexthopGroup(_) => nexthops.push(*k),
            Key::Neighbour(_) => neighbours.push(*k),
            Key::Fdb(_) => fdb.push(*k),
            Key::Vlan(_) => vlans.push(*k),
            Key::Flow(_) => flows.push(*k),
            Key::EcmpHash(_) | Key::BridgeAgeing(_) | Key::PortStp(_) => settings.push(*k),
        }
    }
    routes.sort_unstable_by_key(|k| {
        if let Key::Route(r) = k {
            Some((r.table, r.dst, r.metric, r.ifindex))
        } else {
            None
        }
    });
    let Value::Object(fields) = head else { return Ok(()) };
    w.write_all(b"{")?;
    for (i, (name, v)) in fields.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        serde_json::to_writer(&mut *w, name)?;
        w.write_all(b":")?;
        serde_json::to_writer(&mut *w, v)?;
    }
    for (name, keys) in [
        ("links", links),
        ("addresses", addresses),
        ("routes", routes),
        ("nexthops", nexthops),
        ("neighbours", neighbours),
        ("fdb", fdb),
        ("vlans", vlans),
        ("flows", flows),
        ("settings", settings),
    ] {
        write!(w, ",\"{name}\":[")?;
        let mut first = true;
        for chunk in keys.chunks(CHUNK) {
            let mut out = Vec::with_capacity(chunk.len());
            {
                let m = shared.lock();
                let d = dpu.lock().unwrap_or_else(|p| p.into_inner());
                for k in chunk {
                    let Some(o) = m.get(k) else { continue }; // deleted meanwhile
                    let v = match &o {
                        Object::Route(r) => {
                            Some(route_json(r, m.refused.get(k), d.stats.get(&StatKey::Route(r.key))))
                        }
                        o => object_json(o, &d),
                    };
                    out.extend(v);
                }
            }
            for v in out {
                if !first {
                    w.write_all(b",")?;
                }
                first = false;
                serde_json::to_writer(&mut *w, &v)?;
            }
        }
        w.write_all(b"]")?;
    }
    w.write_all(b"}")?;
    w.flush()
}

/// Text rendering of the status JSON ([`write_status`]).
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
    let t = &v["taps"];
    if !t.is_null() {
        let attached: Vec<String> = t["states"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|st| {
                st["attached"].as_str().map(|m| format!("{} {m}", st["name"].as_str().unwrap_or("?")))
            })
            .collect();
        let off: Vec<&str> = t["states"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|st| st["attached"].is_null())
            .filter_map(|st| st["name"].as_str())
            .collect();
        s += &format!(
            "taps: {} (unavailable: {}) ring {} records {} drops {}\n",
            attached.join(", "),
            if off.is_empty() { "none".to_string() } else { off.join(", ") },
            t["ring_bytes"],
            t["counts"]["events"],
            t["counts"]["drops"]
        );
    }
    let f = &v["fib_firmware"];
    if !f.is_null() {
        s += &format!(
            "fib firmware: devices {} route events {} asks {} unanswered {} flags sent {} applied {} runs {} errors {} lost {}\n",
            f["devices"],
            f["firmware"]["routes"],
            f["asks"],
            f["unanswered"],
            f["flags_sent"],
            f["flags_applied"],
            f["runs"],
            f["run_errors"],
            f["firmware"]["lost_events"]
        );
    }
    for r in v["not_offloaded"].as_array().into_iter().flatten() {
        s += &format!(
            "not offloaded: {} ({})\n",
            r["key"].as_str().unwrap_or("?"),
            r["why"].as_str().unwrap_or("?")
        );
    }
    for r in v["qualified"].as_array().into_iter().flatten() {
        s += &format!(
            "not offloaded: route table {} {} metric {} tos {} from {}: {} trapped to the host\n",
            r["table"],
            r["dst"].as_str().unwrap_or("?"),
            r["metric"],
            r["tos"],
            r["from"].as_str().unwrap_or("-"),
            r["dst"].as_str().unwrap_or("?")
        );
    }
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
            "route table {} {} metric {}{} {} {} [{}]{}\n",
            r["table"],
            r["dst"].as_str().unwrap_or("?"),
            r["metric"],
            r["iif"].as_u64().map(|i| format!(" iif {i}")).unwrap_or_default(),
            r["type"].as_str().unwrap_or("?"),
            nhs.join(", "),
            r["offload"].as_str().unwrap_or("?"),
            r["packets"].as_u64().map(|p| format!(" {p} packets")).unwrap_or_default()
        );
    }
    s
}

/// What a client of the status socket may ask for, in a first line: the
/// summary ([`head`] only) or everything. A client that sends nothing
/// within [`REQUEST_WAIT`] (`socat - UNIX:…`) gets everything.
pub const SUMMARY_REQUEST: &[u8] = b"summary\n";
pub const FULL_REQUEST: &[u8] = b"full\n";
const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Reads the client's request line; true for a summary.
fn wants_summary(c: &mut UnixStream) -> bool {
    let _ = c.set_read_timeout(Some(REQUEST_WAIT));
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 16 {
        match c.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            _ => break,
        }
    }
    line == SUMMARY_REQUEST[..SUMMARY_REQUEST.len() - 1]
}

/// Serves the JSON status to every client of `path`.
pub fn serve(path: &Path, shared: Arc<Shared>, dpu: Arc<Mutex<DpuState>>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            // Each client on its own thread, so that one that stops
            // reading holds up nobody else; a client that reads nothing
            // for WRITE_WAIT is dropped; at most CLIENTS at once.
            if busy.load(std::sync::atomic::Ordering::Relaxed) >= CLIENTS {
                let _ = c.write_all(b"{\"error\":\"busy: too many status clients\"}");
                continue;
            }
            let _ = c.set_write_timeout(Some(WRITE_WAIT));
            busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (shared, dpu, busy) = (shared.clone(), dpu.clone(), busy.clone());
            std::thread::spawn(move || {
                serve_one(c, &shared, &dpu);
                busy.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    Ok(())
}

/// Status clients served at once.
const CLIENTS: usize = 16;
/// How long a status client may leave a write unread.
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn serve_one(mut c: UnixStream, shared: &Shared, dpu: &Mutex<DpuState>) {
    let summary = wants_summary(&mut c);
    let t = std::time::Instant::now();
    let mut w = std::io::BufWriter::with_capacity(1 << 16, c);
    let r = if summary {
        serde_json::to_writer(&mut w, &head(shared, dpu)).map_err(io::Error::from).and_then(|_| w.flush())
    } else {
        write_status(&mut w, shared, dpu)
    };
    let what = if summary { "summary" } else { "full" };
    match r {
        Ok(()) => crate::debug!("status: {what} served in {} ms", t.elapsed().as_millis()),
        Err(e) => crate::debug!("status: {what} not served: {e}"),
    }
}
