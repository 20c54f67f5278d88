//! The kernel's state as `ip -j` and `bridge -j` dump it, and the DPU
//! hardware's (through the independent reader), in one comparable form.

use dpu_hw::reader::{self, ResolvedNexthop};
use dpu_wire::{Ip, Prefix};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::process::Command;

pub fn sh(ns: &str, cmd: &str) {
    let out = Command::new("ip").args(["netns", "exec", ns, "sh", "-ec", cmd]).output().expect("run ip");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn json(ns: &str, args: &[&str]) -> Value {
    let out = Command::new("ip").args(["-n", ns, "-j"]).args(args).output().expect("run ip -j");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

/// `bridge -n NS -j ARGS`.
pub fn bridge_json(ns: &str, args: &[&str]) -> Value {
    let out = Command::new("bridge").args(["-n", ns, "-j"]).args(args).output().expect("run bridge -j");
    assert!(out.status.success(), "bridge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

/// Link name to ifindex.
pub fn ifindexes(ns: &str) -> HashMap<String, u32> {
    json(ns, &["link"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["ifname"].as_str().unwrap_or("").to_string(), l["ifindex"].as_u64().unwrap_or(0) as u32))
        .collect()
}

/// (port ifindex, MAC, VLAN) of every FDB entry.
pub fn kernel_fdb(ns: &str) -> BTreeSet<(u32, String, u16)> {
    let idx = ifindexes(ns);
    bridge_json(ns, &["fdb", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                idx.get(f["ifname"].as_str().unwrap_or("")).copied().unwrap_or(0),
                f["mac"].as_str().unwrap_or("").to_string(),
                f["vlan"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect()
}

pub fn hw_fdb(hw: &reader::HwTables) -> BTreeSet<(u32, String, u16)> {
    hw.fdb.iter().map(|f| (f.entry.ifindex, f.entry.mac.to_string(), f.entry.vid)).collect()
}

/// (port ifindex, VID, PVID, untagged) of every bridge VLAN membership.
pub fn kernel_vlans(ns: &str) -> BTreeSet<(u32, u16, bool, bool)> {
    let idx = ifindexes(ns);
    let mut out = BTreeSet::new();
    for port in bridge_json(ns, &["vlan", "show"]).as_array().into_iter().flatten() {
        let ifindex = idx.get(port["ifname"].as_str().unwrap_or("")).copied().unwrap_or(0);
        for v in port["vlans"].as_array().into_iter().flatten() {
            let flags: Vec<&str> =
                v["flags"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).collect();
            let start = v["vlan"].as_u64().unwrap_or(0) as u16;
            let end = v["vlanEnd"].as_u64().map(|e| e as u16).unwrap_or(start);
            for vid in start..=end {
                out.insert((ifindex, vid, flags.contains(&"PVID"), flags.contains(&"Egress Untagged")));
            }
        }
    }
    out
}

pub fn hw_vlans(hw: &reader::HwTables) -> BTreeSet<(u32, u16, bool, bool)> {
    hw.vlans.iter().map(|v| (v.entry.ifindex, v.entry.vid, v.entry.pvid, v.entry.untagged)).collect()
}

pub type RouteRow = (u32, String, u32, String, Vec<(Option<String>, u32, u16)>);

fn table_id(v: &Value) -> u32 {
    match v.as_str() {
        Some("main") | None => 254,
        Some("local") => 255,
        Some("default") => 253,
        Some(s) => s.parse().unwrap_or(0),
    }
}

fn canonical(dst: &str, v6: bool) -> String {
    let dst = if dst == "default" {
        if v6 {
            "::/0"
        } else {
            "0.0.0.0/0"
        }
    } else {
        dst
    };
    let (a, l) = match dst.split_once('/') {
        Some((a, l)) => (a.to_string(), l.parse().unwrap_or(0)),
        None => (dst.to_string(), if v6 { 128 } else { 32 }),
    };
    let ip: std::net::IpAddr = a.parse().expect("address");
    Prefix::new(Ip::from(ip), l).to_string()
}

pub fn kernel_routes(ns: &str) -> BTreeSet<RouteRow> {
    let links: HashMap<String, u32> = json(ns, &["link"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["ifname"].as_str().unwrap_or("").to_string(), l["ifindex"].as_u64().unwrap_or(0) as u32))
        .collect();
    let nhs: HashMap<u64, Value> = json(ns, &["nexthop"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| (n["id"].as_u64().unwrap_or(0), n.clone()))
        .collect();
    let dev = |v: &Value| links.get(v.as_str().unwrap_or("")).copied().unwrap_or(0);
    let gw = |v: &Value| v.as_str().map(|g| g.to_string());
    let mut out = BTreeSet::new();
    for (fam, v6) in [("-4", false), ("-6", true)] {
        for r in json(ns, &[fam, "route", "show", "table", "all"]).as_array().into_iter().flatten() {
            // A route through a blackhole nexthop object shows as a
            // blackhole route; the mirror keeps it as a route through it.
            let kind = if r["nhid"].is_u64() { "unicast" } else { r["type"].as_str().unwrap_or("unicast") };
            if !matches!(kind, "unicast" | "local" | "blackhole" | "unreachable" | "prohibit") {
                continue;
            }
            let dst = canonical(r["dst"].as_str().unwrap_or("default"), v6);
            if kind == "unicast" && dst.starts_with("fe80::/") {
                continue; // link-local: not forwarded, not mirrored
            }
            let mut hops: Vec<(Option<String>, u32, u16)> = Vec::new();
            if kind == "unicast" {
                if let Some(id) = r["nhid"].as_u64() {
                    let n = &nhs[&id];
                    match n["group"].as_array() {
                        Some(g) => {
                            for m in g {
                                let mn = &nhs[&m["id"].as_u64().unwrap_or(0)];
                                hops.push((
                                    gw(&mn["gateway"]),
                                    dev(&mn["dev"]),
                                    m["weight"].as_u64().unwrap_or(1) as u16,
                                ));
                            }
                        }
                        None => hops.push((gw(&n["gateway"]), dev(&n["dev"]), 1)),
                    }
                } else if let Some(mp) = r["nexthops"].as_array() {
                    for h in mp {
                        hops.push((
                            gw(&h["gateway"]),
                            dev(&h["dev"]),
                            h["weight"].as_u64().unwrap_or(1) as u16,
                        ));
                    }
                } else {
                    hops.push((gw(&r["gateway"]), dev(&r["dev"]), 1));
                }
            }
            hops.sort();
            let metric = r["metric"].as_u64().unwrap_or(0) as u32;
            out.insert((table_id(&r["table"]), dst, metric, kind.to_string(), hops));
        }
    }
    out
}

pub fn hw_routes(hw: &reader::HwTables) -> BTreeSet<RouteRow> {
    hw.routes
        .iter()
        .map(|r| {
            let e = &r.entry;
            let kind = match e.rtype {
                0 => "unicast",
                1 => "blackhole",
                2 => "unreachable",
                3 => "prohibit",
                _ => "local",
            };
            let mut hops: Vec<_> = hw
                .resolve(e)
                .into_iter()
                .map(|ResolvedNexthop { gateway, ifindex, weight, .. }| {
                    (gateway.map(|g| g.to_string()), ifindex, weight)
                })
                .collect();
            hops.sort();
            (e.table, Prefix::new(e.dst, e.plen).to_string(), e.metric, kind.to_string(), hops)
        })
        .collect()
}

pub fn kernel_neighbours(ns: &str) -> BTreeSet<(String, String)> {
    json(ns, &["neigh", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["lladdr"].is_string())
        .map(|n| {
            (n["dst"].as_str().unwrap_or("").to_string(), n["lladdr"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

pub fn hw_neighbours(hw: &reader::HwTables) -> BTreeSet<(String, String)> {
    hw.neighs.iter().filter_map(|n| n.entry.mac.map(|m| (n.entry.ip.to_string(), m.to_string()))).collect()
}
