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
    // A path's gateway: RTA_GATEWAY, or RTA_VIA (an IPv4 route through an
    // IPv6 gateway).
    let gw_of = |h: &Value| gw(&h["gateway"]).or_else(|| gw(&h["via"]["host"]));
    // Paths the kernel's lookup passes over: dead ones, and linkdown ones
    // where ignore_routes_with_linkdown is set.
    let ignore_linkdown = [4, 6]
        .map(|v| sysctl(ns, &format!("net.ipv{v}.conf.all.ignore_routes_with_linkdown")).unwrap_or(0) != 0);
    let unusable = |h: &Value, v6: bool| {
        let flags: Vec<&str> =
            h["flags"].as_array().into_iter().flatten().filter_map(|f| f.as_str()).collect();
        flags.contains(&"dead") || (flags.contains(&"linkdown") && ignore_linkdown[v6 as usize])
    };
    let mut out = BTreeSet::new();
    // Prefixes with a route qualified by TOS or source prefix, which the
    // DPU cannot match on: trapped to the host while one exists.
    let mut trapped = BTreeSet::new();
    // Routes per (table, dst, metric, ingress device of a link-local
    // route): two live routes of one key (an address in one subnet on two
    // links, `ip route append`) trap their prefix too.
    let mut per_key: HashMap<(u32, String, u32, String), u32> = HashMap::new();
    for (fam, v6) in [("-4", false), ("-6", true)] {
        for r in json(ns, &[fam, "route", "show", "table", "all"]).as_array().into_iter().flatten() {
            // A route through a blackhole nexthop object shows as a
            // blackhole route; the mirror keeps it as a route through it.
            let kind = if r["nhid"].is_u64() { "unicast" } else { r["type"].as_str().unwrap_or("unicast") };
            if !matches!(kind, "unicast" | "local" | "blackhole" | "unreachable" | "prohibit") {
                continue;
            }
            let dst = canonical(r["dst"].as_str().unwrap_or("default"), v6);
            let table = table_id(&r["table"]);
            let tos = r["tos"].as_str().is_some_and(|t| t != "0" && t != "0x00" && t != "default");
            if tos || r["from"].is_string() {
                trapped.insert((table, dst));
                continue;
            }
            // Not offloaded: lightweight-tunnel encaps, more paths than
            // the wire carries.
            let mp = r["nexthops"].as_array();
            if r["encap"].is_string() || mp.is_some_and(|v| v.iter().any(|h| h["encap"].is_string())) {
                continue;
            }
            if mp.is_some_and(|v| v.len() > dpu_wire::MAX_PATHS) {
                continue;
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
                } else if let Some(mp) = mp {
                    for h in mp.iter().filter(|h| !unusable(h, v6)) {
                        hops.push((gw_of(h), dev(&h["dev"]), h["weight"].as_u64().unwrap_or(1) as u16));
                    }
                } else if !unusable(r, v6) {
                    hops.push((gw_of(r), dev(&r["dev"]), 1));
                }
                if hops.is_empty() {
                    continue; // every path dead: the lookup passes over it
                }
                if let [one] = &mut hops[..] {
                    one.2 = 1; // one path left: its weight means nothing
                }
            }
            hops.sort();
            let metric = r["metric"].as_u64().unwrap_or(0) as u32;
            let per_device = v6
                && dst.starts_with("fe80:")
                && matches!(kind, "unicast" | "local")
                && mp.is_none()
                && r["nhid"].is_null();
            let dev_key =
                if per_device { r["dev"].as_str().unwrap_or("").to_string() } else { String::new() };
            let n = per_key.entry((table, dst.clone(), metric, dev_key)).or_default();
            *n += 1;
            if *n > 1 {
                trapped.insert((table, dst.clone()));
            }
            out.insert((table, dst, metric, kind.to_string(), hops));
        }
    }
    out.retain(|(table, dst, ..)| !trapped.contains(&(*table, dst.clone())));
    for (table, dst) in trapped {
        out.insert((table, dst, 0, "local".to_string(), Vec::new()));
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

/// One flow rule in a form both sides can produce: `(ifindex, chain,
/// prio, match keys, actions)`, keys and actions as tc words.
pub type FlowRow = (u32, u32, u16, BTreeSet<String>, Vec<String>);

/// Keys the DPU's flow table can match; a filter with any other key is
/// not expected on the DPU.
const FLOW_KEYS: [&str; 10] = [
    "eth_type",
    "vlan_id",
    "vlan_ethtype",
    "src_mac",
    "dst_mac",
    "ip_proto",
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
];

fn eth_type_word(t: u16) -> String {
    match t {
        0x0800 => "ipv4".into(),
        0x86dd => "ipv6".into(),
        0x0806 => "arp".into(),
        t => format!("{t:04x}"),
    }
}

fn ip_proto_word(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        p => p.to_string(),
    }
}

/// `value/prefix-length` when the mask is a prefix, else `value/mask`.
fn masked_bytes(v: &[u8], m: &[u8], show: impl Fn(&[u8]) -> String) -> String {
    let ones: u32 = m.iter().map(|b| b.count_ones()).sum();
    let prefix = m.iter().enumerate().all(|(i, b)| {
        let want = (ones as usize).saturating_sub(i * 8).min(8);
        *b == (0xffu16 << (8 - want)) as u8
    });
    if prefix {
        format!("{}/{}", show(v), ones)
    } else {
        format!("{}/{}", show(v), show(m))
    }
}

fn mac_text(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

fn ip_text(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        _ => {
            let a: [u8; 16] = b.try_into().unwrap_or([0; 16]);
            std::net::Ipv6Addr::from(a).to_string()
        }
    }
}

/// tc's `addr` or `addr/len` as `addr/len`.
fn with_len(s: &str, full: u32) -> String {
    if s.contains('/') {
        s.to_string()
    } else {
        format!("{s}/{full}")
    }
}

/// The clsact/ingress flower filters of every link of `ns` that the DPU
/// can hold (all keys and actions expressible, not `skip_hw`), from
/// `tc -j filter show`.
pub fn kernel_flows(ns: &str) -> BTreeSet<FlowRow> {
    let idx = ifindexes(ns);
    let mut out = BTreeSet::new();
    for (name, &ifindex) in &idx {
        let o = Command::new("tc")
            .args(["-n", ns, "-j", "filter", "show", "dev", name, "ingress"])
            .output()
            .expect("run tc -j");
        if !o.status.success() {
            continue;
        }
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Array(vec![]));
        'filter: for f in v.as_array().into_iter().flatten() {
            let opts = &f["options"];
            // skip_hw: never offloaded; in_hw or skip_sw: a driver's, not
            // the mirror's.
            if f["kind"] != "flower"
                || opts.is_null()
                || opts["skip_hw"] == true
                || opts["skip_sw"] == true
                || opts["in_hw"] == true
            {
                continue;
            }
            let mut keys = BTreeSet::new();
            for (k, val) in opts["keys"].as_object().into_iter().flatten() {
                if !FLOW_KEYS.contains(&k.as_str()) {
                    continue 'filter;
                }
                let text = match (k.as_str(), val) {
                    ("vlan_ethtype", _) => continue,
                    ("eth_type", Value::String(s)) => match s.as_str() {
                        "ipv4" | "ipv6" | "arp" => s.clone(),
                        s => format!("{:04x}", u16::from_str_radix(s, 16).unwrap_or(0)),
                    },
                    ("ip_proto", Value::String(s)) => s.clone(),
                    ("src_ip" | "dst_ip", Value::String(s)) => {
                        with_len(s, if s.contains(':') { 128 } else { 32 })
                    }
                    ("src_mac" | "dst_mac", Value::String(s)) => with_len(s, 48),
                    (_, Value::String(s)) => s.clone(),
                    (_, v) => v.to_string(),
                };
                keys.insert(format!("{k} {text}"));
            }
            let mut acts = Vec::new();
            for a in opts["actions"].as_array().into_iter().flatten() {
                let ctl = a["control_action"]["type"].as_str().unwrap_or("");
                match a["kind"].as_str().unwrap_or("") {
                    "gact" => match ctl {
                        "drop" | "pass" => acts.push(ctl.to_string()),
                        "goto" => acts.push(format!("goto chain {}", a["control_action"]["chain"])),
                        "pipe" => {}
                        _ => continue 'filter,
                    },
                    "mirred" if a["direction"] == "egress" => {
                        let to = idx.get(a["to_dev"].as_str().unwrap_or("")).copied().unwrap_or(0);
                        acts.push(format!("{} if{to}", a["mirred_action"].as_str().unwrap_or("")));
                    }
                    "vlan" => match a["vlan_action"].as_str() {
                        Some("pop") => acts.push("vlan pop".into()),
                        Some("push") => acts.push(format!("vlan push {} {}", a["id"], a["protocol"])),
                        _ => continue 'filter,
                    },
                    _ => continue 'filter,
                }
            }
            let chain = f["chain"].as_u64().unwrap_or(0) as u32;
            out.insert((ifindex, chain, f["pref"].as_u64().unwrap_or(0) as u16, keys, acts));
        }
    }
    out
}

/// The mirror's flow rules in the DPU hardware (bit 63 of the cookie
/// clear; the firmware's own are left out), in the same words.
pub fn hw_flows(hw: &reader::HwTables) -> BTreeSet<FlowRow> {
    use dpu_hw::layout::flow_action as fa;
    let mut out = BTreeSet::new();
    for row in &hw.flows {
        let e = &row.entry;
        if e.cookie >> 63 != 0 {
            continue;
        }
        let (k, m) = (&e.key, &e.mask);
        let mut keys = BTreeSet::new();
        if m.eth_type != 0 {
            keys.insert(format!("eth_type {}", eth_type_word(k.eth_type)));
        }
        if m.vlan_id != 0 {
            keys.insert(format!("vlan_id {}", k.vlan_id));
        }
        for (name, v, mk) in [("src_mac", &k.src_mac, &m.src_mac), ("dst_mac", &k.dst_mac, &m.dst_mac)] {
            if mk.iter().any(|b| *b != 0) {
                keys.insert(format!("{name} {}", masked_bytes(v, mk, mac_text)));
            }
        }
        if m.ip_proto != 0 {
            keys.insert(format!("ip_proto {}", ip_proto_word(k.ip_proto)));
        }
        let len = if k.ip_family == 6 { 16 } else { 4 };
        for (name, v, mk) in [("src_ip", &k.src_ip, &m.src_ip), ("dst_ip", &k.dst_ip, &m.dst_ip)] {
            if mk.iter().any(|b| *b != 0) {
                keys.insert(format!("{name} {}", masked_bytes(&v[..len], &mk[..len], ip_text)));
            }
        }
        for (name, v, mk) in [("src_port", k.src_port, m.src_port), ("dst_port", k.dst_port, m.dst_port)] {
            match mk {
                0 => {}
                0xffff => {
                    keys.insert(format!("{name} {v}"));
                }
                mk => {
                    keys.insert(format!("{name} {v}/0x{mk:x}"));
                }
            }
        }
        let acts = e
            .actions
            .iter()
            .map(|a| match a.kind {
                fa::DROP => "drop".to_string(),
                fa::PASS => "pass".to_string(),
                fa::GOTO => format!("goto chain {}", a.arg),
                fa::REDIRECT => format!("redirect if{}", a.arg),
                fa::MIRROR => format!("mirror if{}", a.arg),
                fa::VLAN_POP => "vlan pop".to_string(),
                fa::VLAN_PUSH => format!(
                    "vlan push {} \"{}\"",
                    a.vid,
                    match a.arg {
                        0x88a8 => "802.1ad".to_string(),
                        0x8100 => "802.1Q".to_string(),
                        t => format!("{t:04x}"),
                    }
                ),
                k => format!("action{k}"),
            })
            .collect();
        out.insert((e.ifindex, e.chain, e.prio, keys, acts));
    }
    out
}

/// The kernel's or the hardware's state in the comparable form, whole:
/// routes, neighbours, FDB, VLANs and flows. It travels as JSON when the
/// kernel and the hardware are on different machines (the two-VM system
/// test compares the host VM's kernel with the DPU's memory outside both).
pub type View = (
    BTreeSet<RouteRow>,
    BTreeSet<(String, String)>,
    BTreeSet<(u32, String, u16)>,
    BTreeSet<(u32, u16, bool, bool)>,
    BTreeSet<FlowRow>,
    BTreeSet<SettingRow>,
);

/// A switch setting: ("ecmp_hash", family 4/6, policy, fields),
/// ("ageing", bridge ifindex, centiseconds, 0), ("stp", port ifindex,
/// BR_STATE_*, 0). The kernel's defaults (hash policy 0, a forwarding
/// port) are not rows on either side.
pub type SettingRow = (String, u32, u32, u32);

fn sysctl(ns: &str, name: &str) -> Option<u32> {
    let out = Command::new("ip").args(["netns", "exec", ns, "sysctl", "-n", name]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The kernel's switch settings: sysctl, and `ip -d link` for bridges'
/// ageing times and bridge ports' STP states.
pub fn kernel_settings(ns: &str) -> BTreeSet<SettingRow> {
    let mut out = BTreeSet::new();
    for (fam, v) in [(4, "ipv4"), (6, "ipv6")] {
        let policy = sysctl(ns, &format!("net.{v}.fib_multipath_hash_policy")).unwrap_or(0);
        if policy != 0 {
            let fields = sysctl(ns, &format!("net.{v}.fib_multipath_hash_fields")).unwrap_or(0);
            out.insert(("ecmp_hash".to_string(), fam, policy, fields & 0xfff));
        }
    }
    for l in json(ns, &["-d", "link"]).as_array().into_iter().flatten() {
        let ifindex = l["ifindex"].as_u64().unwrap_or(0) as u32;
        let info = &l["linkinfo"];
        if let Some(t) = info["info_data"]["ageing_time"].as_u64() {
            if info["info_kind"] == "bridge" {
                out.insert(("ageing".to_string(), ifindex, t as u32, 0));
            }
        }
        if info["info_slave_kind"] == "bridge" {
            let state = match info["info_slave_data"]["state"].as_str().unwrap_or("") {
                "disabled" => 0,
                "listening" => 1,
                "learning" => 2,
                "blocking" => 4,
                _ => 3,
            };
            if state != 3 {
                out.insert(("stp".to_string(), ifindex, state, 0));
            }
        }
    }
    out
}

pub fn hw_settings(hw: &reader::HwTables) -> BTreeSet<SettingRow> {
    use dpu_hw::layout::switch_kind;
    hw.switch
        .iter()
        .filter_map(|r| {
            let e = &r.entry;
            Some(match e.kind {
                switch_kind::ECMP_HASH => ("ecmp_hash".to_string(), e.family as u32, e.value, e.value2),
                switch_kind::BRIDGE_AGEING => ("ageing".to_string(), e.ifindex, e.value, 0),
                switch_kind::PORT_STP if e.value != 3 => ("stp".to_string(), e.ifindex, e.value, 0),
                _ => return None,
            })
        })
        .collect()
}

pub fn kernel_view(ns: &str) -> View {
    (
        kernel_routes(ns),
        kernel_neighbours(ns),
        kernel_fdb(ns),
        kernel_vlans(ns),
        kernel_flows(ns),
        kernel_settings(ns),
    )
}

pub fn hw_view(hw: &reader::HwTables) -> View {
    (hw_routes(hw), hw_neighbours(hw), hw_fdb(hw), hw_vlans(hw), hw_flows(hw), hw_settings(hw))
}

fn diff_set<T: Ord + std::fmt::Debug>(what: &str, want: &BTreeSet<T>, got: &BTreeSet<T>, out: &mut String) {
    for x in want.difference(got) {
        out.push_str(&format!("{what} missing from the DPU: {x:?}\n"));
    }
    for x in got.difference(want) {
        out.push_str(&format!("{what} on the DPU only: {x:?}\n"));
    }
}

/// What differs between the kernel's view and the hardware's, a line per
/// object; empty when they are equal.
pub fn diff_views(kernel: &View, hw: &View) -> String {
    let mut out = String::new();
    diff_set("route", &kernel.0, &hw.0, &mut out);
    diff_set("neighbour", &kernel.1, &hw.1, &mut out);
    diff_set("fdb", &kernel.2, &hw.2, &mut out);
    diff_set("vlan", &kernel.3, &hw.3, &mut out);
    diff_set("flow", &kernel.4, &hw.4, &mut out);
    diff_set("setting", &kernel.5, &hw.5, &mut out);
    out
}

/// A one-line summary of a view.
pub fn view_summary(v: &View) -> String {
    format!(
        "{} routes, {} neighbours, {} fdb, {} vlans, {} flows, {} settings",
        v.0.len(),
        v.1.len(),
        v.2.len(),
        v.3.len(),
        v.4.len(),
        v.5.len()
    )
}
