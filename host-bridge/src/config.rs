//! Which links and tables are offloaded: `host-bridge --config FILE`.
//!
//! ```toml
//! [offload]
//! # Links whose addresses, neighbours, FDB entries and VLANs go to the DPU;
//! # a trailing * matches a prefix. Absent: every link.
//! links = ["eth*", "br0", "vxlan100"]
//! # Routing tables whose routes go to the DPU (254 is main, 255 local).
//! # Absent: every table.
//! tables = [254, 255, 100]
//! ```

use dpu_wire::Object;
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub offload: Offload,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Offload {
    pub links: Option<Vec<String>>,
    pub tables: Option<Vec<u32>>,
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// True if the link called `name` is offloaded.
    pub fn link_offloaded(&self, name: &str) -> bool {
        match &self.offload.links {
            None => true,
            Some(pats) => pats.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            }),
        }
    }

    /// True if `o` goes to the DPU; `name_of` gives a link's name.
    pub fn offloaded(&self, o: &Object, name_of: impl Fn(u32) -> Option<String>) -> bool {
        let link_ok = |ifindex: u32| {
            self.offload.links.is_none() || name_of(ifindex).is_some_and(|n| self.link_offloaded(&n))
        };
        match o {
            Object::Link(l) => self.link_offloaded(l.name.as_str()),
            Object::Address(a) => link_ok(a.ifindex),
            Object::Neighbour(n) => link_ok(n.ifindex),
            Object::Fdb(f) => link_ok(f.ifindex),
            Object::Vlan(v) => link_ok(v.ifindex),
            Object::Flow(f) => link_ok(f.ifindex),
            Object::BridgeAgeing(a) => link_ok(a.ifindex),
            Object::PortStp(p) => link_ok(p.ifindex),
            Object::Route(r) => self.offload.tables.as_ref().is_none_or(|t| t.contains(&r.key.table)),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpu_wire::*;

    #[test]
    fn filters_links_and_tables() {
        let c: Config =
            toml::from_str("[offload]\nlinks = [\"eth*\", \"br0\"]\ntables = [254]\n").expect("parses");
        assert!(c.link_offloaded("eth3") && c.link_offloaded("br0") && !c.link_offloaded("br1"));
        let names = |i: u32| Some(if i == 2 { "eth0".to_string() } else { "wlan0".to_string() });
        let neigh = |ifindex| {
            Object::Neighbour(Neighbour {
                ifindex,
                ip: Ip::V4([1, 1, 1, 1]),
                mac: None,
                state: 2,
                router: false,
            })
        };
        assert!(c.offloaded(&neigh(2), names));
        assert!(!c.offloaded(&neigh(3), names));
        let route = |table| {
            Object::Route(Route {
                key: RouteKey { table, dst: Prefix::new(Ip::V4([10, 0, 0, 0]), 8), metric: 0, ifindex: 0 },
                kind: RouteType::Blackhole,
                protocol: 0,
                scope: 0,
                nexthops: RouteNexthops::None,
            })
        };
        assert!(c.offloaded(&route(254), names) && !c.offloaded(&route(100), names));
        assert!(toml::from_str::<Config>("[offload]\nlinkz = []\n").is_err(), "typos are errors");
        assert_eq!(Config::default().offload.links, None);
    }
}
